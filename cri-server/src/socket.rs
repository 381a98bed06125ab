//! The daemon's unix socket: created with mode 0660, a stale file left by a
//! dead daemon replaced, a live daemon's socket never taken over.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::net::UnixListener;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another process answers on the socket: two daemons must not share state.
    #[error("socket {0}: another daemon is already serving on it")]
    InUse(PathBuf),
    /// A filesystem or socket call failed.
    #[error("socket {path}: {op}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

/// Binds the gRPC socket at `path`.
///
/// A socket file nobody answers on is the leftover of a daemon that died; it
/// is replaced. One that answers belongs to a running daemon and is refused.
pub async fn bind(path: &Path) -> Result<UnixListener, SocketError> {
    let io_err = |op: &'static str| {
        let path = path.to_path_buf();
        move |source| SocketError::Io { path, op, source }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("create parent directory"))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(_) => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(SocketError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(io_err("remove stale socket"))?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("stat")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io_err("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io_err("chmod 0660"))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[tokio::test]
    async fn stale_socket_is_replaced_and_mode_is_0660() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/cri.sock");
        drop(bind(&path).await.unwrap()); // leaves a socket file nobody serves
        let listener = bind(&path).await.unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        drop(listener);
    }

    #[tokio::test]
    async fn live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cri.sock");
        let _live = bind(&path).await.unwrap();
        let err = bind(&path).await.unwrap_err();
        assert!(matches!(err, SocketError::InUse(_)), "{err}");
    }
}
