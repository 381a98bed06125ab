//! Files of the node the store reads on an operator's word (the auth file,
//! registry certificates and keys): regular files only, opened without
//! blocking (a FIFO put there cannot hang the open), and read under a cap.

use std::io::Read;
use std::path::Path;

/// Why a node file could not be read.
#[derive(Debug)]
pub(crate) enum NodeFileError {
    /// Opening, inspecting or reading it failed.
    Io(std::io::Error),
    /// Not a regular file (a FIFO, a device, a directory).
    NotAFile,
    /// Larger than the cap.
    TooLarge,
}

/// The content of the regular file `path`, if it is at most `limit` bytes.
/// Blocking: call it off the async workers.
pub(crate) fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, NodeFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(NodeFileError::Io)?;
    if !file.metadata().map_err(NodeFileError::Io)?.is_file() {
        return Err(NodeFileError::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(NodeFileError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(NodeFileError::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_capped(&file, 5).unwrap(), b"12345");
        assert!(matches!(
            read_capped(&file, 4),
            Err(NodeFileError::TooLarge)
        ));
        assert!(matches!(
            read_capped(dir.path(), 5),
            Err(NodeFileError::NotAFile)
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            read_capped(&fifo, 5),
            Err(NodeFileError::NotAFile)
        ));
        let missing = read_capped(&dir.path().join("missing"), 5);
        assert!(
            matches!(missing, Err(NodeFileError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
