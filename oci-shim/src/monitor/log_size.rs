//! The cap on one container log file (`[runtime] log_size_max`).

use std::fmt;

/// The most bytes one container log file may hold; the monitor starts a new,
/// empty file (renamed over the path, as conmon does) before an entry that
/// would overflow it. See [`super::MonitorConfig::log_size_max`].
///
/// # Examples
///
/// ```
/// use oci_shim::monitor::LogSizeMax;
///
/// assert_eq!(LogSizeMax::from_config(-1), Ok(None));
/// assert_eq!(LogSizeMax::from_config(65536).unwrap().unwrap().bytes(), 65536);
/// assert!(LogSizeMax::new(100).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogSizeMax(u64);

/// A `log_size_max` that is neither unlimited (negative) nor at least
/// [`LogSizeMax::MIN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "log_size_max {bytes} is too small: it must be negative (unlimited) or at least {} bytes",
    LogSizeMax::MIN
)]
pub struct LogSizeMaxTooSmall {
    /// The value refused.
    pub bytes: i64,
}

impl LogSizeMax {
    /// The smallest cap, CRI-O's: there it is conmon's read buffer, so one
    /// read always fits. Here one read's worth of a line is split to fit any
    /// cap, but a file that holds only a few entries would be replaced on
    /// nearly every read, and CRI-O configurations carry over unchanged.
    pub const MIN: u64 = 8192;

    /// A cap of `bytes`, refused below [`LogSizeMax::MIN`].
    pub fn new(bytes: u64) -> Result<Self, LogSizeMaxTooSmall> {
        if bytes < Self::MIN {
            return Err(LogSizeMaxTooSmall {
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
            });
        }
        Ok(LogSizeMax(bytes))
    }

    /// The cap for a configuration value in CRI-O's convention: negative
    /// means unlimited (`None`), anything else must be at least
    /// [`LogSizeMax::MIN`].
    pub fn from_config(value: i64) -> Result<Option<Self>, LogSizeMaxTooSmall> {
        match u64::try_from(value) {
            Err(_) => Ok(None),
            Ok(bytes) => Self::new(bytes)
                .map(Some)
                .map_err(|_| LogSizeMaxTooSmall { bytes: value }),
        }
    }

    /// The cap in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LogSizeMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for LogSizeMax {
    type Err = String;

    /// Parses a number of bytes (the monitor's `--log-size-max`).
    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = text
            .parse::<u64>()
            .map_err(|_| format!("log_size_max {text:?} is not a number of bytes"))?;
        LogSizeMax::new(bytes).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crio_convention() {
        assert_eq!(LogSizeMax::from_config(-1), Ok(None));
        assert_eq!(LogSizeMax::from_config(i64::MIN), Ok(None));
        assert_eq!(
            LogSizeMax::from_config(0),
            Err(LogSizeMaxTooSmall { bytes: 0 })
        );
        assert_eq!(
            LogSizeMax::from_config(8191),
            Err(LogSizeMaxTooSmall { bytes: 8191 })
        );
        assert_eq!(LogSizeMax::from_config(8192), Ok(Some(LogSizeMax(8192))));
    }

    #[test]
    fn parses_the_command_line_value() {
        assert_eq!("65536".parse::<LogSizeMax>(), Ok(LogSizeMax(65536)));
        assert!("-1".parse::<LogSizeMax>().is_err());
        assert!("64k".parse::<LogSizeMax>().unwrap_err().contains("64k"));
        assert!("100".parse::<LogSizeMax>().unwrap_err().contains("8192"));
    }
}
