//! [`PullOptions`]: how the image store runs pulls (when one has stalled,
//! how many layers it downloads at once), each option checked when it is
//! set.

use crate::platform::{Platform, PlatformChoice};
use std::time::Duration;

/// The default stall timeout (containerd's default progress timeout is of
/// the same order; a minute without 64 KiB is no pull in progress).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest stall timeout accepted: shorter windows would fail a pull
/// on one slow round trip.
pub const MIN_STALL_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest stall timeout accepted: a pull allowed to hold its locks an
/// hour without progress is one the watch no longer protects against.
pub const MAX_STALL_TIMEOUT: Duration = Duration::from_secs(3600);
/// Layers one pull downloads at once by default (containerd's
/// `max_concurrent_downloads`).
pub const DEFAULT_CONCURRENT_DOWNLOADS: usize = 3;
/// The most layers one pull may download at once: each holds a connection,
/// a blocking thread and a few MiB of chunks in flight.
pub const MAX_CONCURRENT_DOWNLOADS: usize = 32;

/// How the image store runs pulls.
///
/// # Examples
///
/// ```
/// use image_store::PullOptions;
/// use std::time::Duration;
///
/// let options = PullOptions::default()
///     .with_stall_timeout(Duration::from_secs(30))?
///     .with_max_concurrent_downloads(5)?;
/// assert_eq!(options.stall_timeout(), Duration::from_secs(30));
/// assert_eq!(options.max_concurrent_downloads(), 5);
/// assert!(PullOptions::default().with_stall_timeout(Duration::ZERO).is_err());
/// assert!(PullOptions::default().with_max_concurrent_downloads(0).is_err());
/// # Ok::<(), image_store::PullOptionsError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullOptions {
    stall_timeout: Duration,
    max_concurrent_downloads: usize,
    platforms: PlatformChoice,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            max_concurrent_downloads: DEFAULT_CONCURRENT_DOWNLOADS,
            platforms: PlatformChoice::default(),
        }
    }
}

impl PullOptions {
    /// These options with the stall timeout `timeout`: a pull fails when,
    /// for that long, fewer than [`crate::MIN_PROGRESS_BYTES`] arrive and no
    /// request completes. It must be within [`MIN_STALL_TIMEOUT`] and
    /// [`MAX_STALL_TIMEOUT`].
    pub fn with_stall_timeout(self, timeout: Duration) -> Result<Self, PullOptionsError> {
        if !(MIN_STALL_TIMEOUT..=MAX_STALL_TIMEOUT).contains(&timeout) {
            return Err(PullOptionsError::StallTimeout { given: timeout });
        }
        Ok(Self {
            stall_timeout: timeout,
            ..self
        })
    }

    /// The stall timeout: see [`PullOptions::with_stall_timeout`].
    pub fn stall_timeout(&self) -> Duration {
        self.stall_timeout
    }

    /// These options with at most `downloads` layers of one pull fetched
    /// (and unpacked) at once; from 1 to [`MAX_CONCURRENT_DOWNLOADS`].
    pub fn with_max_concurrent_downloads(self, downloads: usize) -> Result<Self, PullOptionsError> {
        if !(1..=MAX_CONCURRENT_DOWNLOADS).contains(&downloads) {
            return Err(PullOptionsError::ConcurrentDownloads { given: downloads });
        }
        Ok(Self {
            max_concurrent_downloads: downloads,
            ..self
        })
    }

    /// How many layers of one pull are fetched at once: see
    /// [`PullOptions::with_max_concurrent_downloads`].
    pub fn max_concurrent_downloads(&self) -> usize {
        self.max_concurrent_downloads
    }

    /// These options with `fallbacks` tried, in order, after the host's own
    /// platform when an image index is chosen from.
    pub fn with_platform_fallbacks(self, fallbacks: Vec<Platform>) -> Self {
        Self {
            platforms: PlatformChoice::new(fallbacks),
            ..self
        }
    }

    /// The platforms a pull takes from an index, best first.
    pub fn platforms(&self) -> &PlatformChoice {
        &self.platforms
    }
}

/// Options the image store cannot run pulls with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PullOptionsError {
    /// A stall timeout out of range.
    #[error(
        "stall timeout {given:?}: must be from {MIN_STALL_TIMEOUT:?} to {MAX_STALL_TIMEOUT:?}"
    )]
    StallTimeout {
        /// The timeout given.
        given: Duration,
    },
    /// A number of concurrent downloads out of range.
    #[error("{given} concurrent downloads: must be from 1 to {MAX_CONCURRENT_DOWNLOADS}")]
    ConcurrentDownloads {
        /// The number given.
        given: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn stall_timeouts_out_of_range_are_refused() {
        let options = PullOptions::default();
        assert_eq!(options.stall_timeout(), DEFAULT_STALL_TIMEOUT);
        for bad in [Duration::ZERO, SECOND / 2, MAX_STALL_TIMEOUT + SECOND] {
            let err = options.clone().with_stall_timeout(bad).unwrap_err();
            assert!(
                err.to_string().contains("must be from 1s to 3600s"),
                "{err}"
            );
        }
        for good in [MIN_STALL_TIMEOUT, MAX_STALL_TIMEOUT] {
            assert!(options.clone().with_stall_timeout(good).is_ok());
        }
    }

    #[test]
    fn concurrent_downloads_out_of_range_are_refused_and_options_compose() {
        let options = PullOptions::default();
        assert_eq!(options.max_concurrent_downloads(), 3);
        for bad in [0, MAX_CONCURRENT_DOWNLOADS + 1] {
            let err = options
                .clone()
                .with_max_concurrent_downloads(bad)
                .unwrap_err();
            assert!(err.to_string().contains("must be from 1 to 32"), "{err}");
        }
        let both = options
            .with_max_concurrent_downloads(MAX_CONCURRENT_DOWNLOADS)
            .and_then(|o| o.with_stall_timeout(SECOND))
            .unwrap();
        assert_eq!(
            (both.max_concurrent_downloads(), both.stall_timeout()),
            (MAX_CONCURRENT_DOWNLOADS, SECOND)
        );
    }
}
