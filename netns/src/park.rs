//! The ledger of pins that could not be unlinked yet.
//!
//! When the kernel refuses to unlink a pin (`EBUSY`) or a peer has stacked
//! more layers on it than one removal peels, the pod must not wait: its
//! namespace is (or will be, once the layers are gone) released, and only
//! the pin is stuck. We note its name as an empty marker
//! file in `<pin dir>/.parked/` so a later [`PinDir::retry_parked`] (or a
//! restart's [`PinDir::cleanup_stale`]) can finish the job, and the pod's
//! removal goes on. A marker is one `open(O_CREAT)`, which is atomic, so a
//! crash never leaves a half-written ledger entry.
//!
//! [`PinDir::retry_parked`]: crate::PinDir::retry_parked
//! [`PinDir::cleanup_stale`]: crate::PinDir::cleanup_stale

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Op, Result};
use crate::syscall::Syscall;

/// Name of the ledger directory inside a pin directory; pin names cannot
/// start with `.`, so it never collides with a pin.
pub(crate) const PARKED_DIR: &str = ".parked";

fn marker(pin: &Path) -> Option<PathBuf> {
    let name: &OsStr = pin.file_name()?;
    Some(pin.parent()?.join(PARKED_DIR).join(name))
}

/// Records `pin` as parked.
pub(crate) fn park(sys: &dyn Syscall, pin: &Path) -> Result<()> {
    let marker = marker(pin).ok_or_else(|| Error::sys(pin, Op::Park, Errno::EINVAL))?;
    if let Some(ledger) = marker.parent() {
        sys.create_dir_all(ledger)
            .map_err(|e| Error::sys(pin, Op::Park, e))?;
    }
    sys.open(
        &marker,
        OFlag::O_WRONLY | OFlag::O_CREAT,
        Mode::from_bits_truncate(0o600),
    )
    .map(drop)
    .map_err(|e| Error::sys(pin, Op::Park, e))
}

/// Forgets `pin` in the ledger; not being parked is fine.
pub(crate) fn unpark(sys: &dyn Syscall, pin: &Path) -> Result<()> {
    let Some(marker) = marker(pin) else {
        return Ok(());
    };
    match sys.unlink(&marker) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::sys(pin, Op::Park, e)),
    }
}

/// Names recorded in the ledger of `dir`, sorted; no ledger means none.
pub(crate) fn parked_names(sys: &dyn Syscall, dir: &Path) -> Result<Vec<String>> {
    let ledger = dir.join(PARKED_DIR);
    let names = match sys.read_dir(&ledger) {
        Ok(names) => names,
        Err(Errno::ENOENT) => return Ok(Vec::new()),
        Err(e) => return Err(Error::dir(ledger, Op::ReadDir, e)),
    };
    let mut names: Vec<String> = names
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| crate::name::validate(n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::RecordingSyscall;

    #[test]
    fn park_unpark_round_trip() {
        let sys = RecordingSyscall::new();
        sys.add_file("/pins/a");
        let dir = Path::new("/pins");
        assert!(parked_names(&sys, dir).unwrap().is_empty());
        park(&sys, Path::new("/pins/a")).unwrap();
        park(&sys, Path::new("/pins/a")).unwrap();
        assert_eq!(parked_names(&sys, dir).unwrap(), ["a"]);
        unpark(&sys, Path::new("/pins/a")).unwrap();
        unpark(&sys, Path::new("/pins/a")).unwrap();
        assert!(parked_names(&sys, dir).unwrap().is_empty());
    }

    #[test]
    fn ledger_failure_names_the_pin() {
        let sys = RecordingSyscall::new();
        sys.fail_next(crate::syscall::CallKind::CreateDirAll, Errno::EROFS);
        let err = park(&sys, Path::new("/pins/a")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "network namespace pin /pins/a: park: EROFS: Read-only file system"
        );
    }
}
