//! Times as CRI carries them: signed nanoseconds since the Unix epoch.
//!
//! An `i64` is what the wire format and the persisted JSON both want, and it
//! reaches the year 2262, which is far enough.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time in nanoseconds since the Unix epoch.
///
/// # Examples
///
/// ```
/// let t = sandbox_core::timestamp::now();
/// assert!(t > 1_600_000_000_000_000_000); // after September 2020
/// ```
pub fn now() -> i64 {
    from_system_time(SystemTime::now())
}

/// Converts `time` to nanoseconds since the Unix epoch, saturating at the
/// ends of the `i64` range instead of wrapping.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use sandbox_core::timestamp::from_system_time;
///
/// assert_eq!(from_system_time(UNIX_EPOCH + Duration::from_secs(2)), 2_000_000_000);
/// assert_eq!(from_system_time(UNIX_EPOCH - Duration::from_nanos(5)), -5);
/// ```
pub fn from_system_time(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos())
            .map(|n| -n)
            .unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn saturates_far_in_the_future() {
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000);
        assert_eq!(from_system_time(far), i64::MAX);
    }

    #[test]
    fn now_agrees_with_the_system_clock() {
        // Within a minute, so a clock step between the two readings cannot
        // fail the test, while a wrong unit (µs, s) or epoch would.
        let reference = from_system_time(SystemTime::now());
        assert!((now() - reference).abs() < 60_000_000_000);
    }

    #[test]
    fn counts_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        assert_eq!(from_system_time(t), 1_700_000_000_000_000_123);
    }
}
