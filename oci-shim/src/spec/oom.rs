//! Clamping `oom_score_adj` to what this host lets us set.
//!
//! Lowering `oom_score_adj` below the current value needs `CAP_SYS_RESOURCE`.
//! Without it runc's init gets EACCES and runc dies with the unhelpful
//! "can't get final child's PID from pipe", so we never ask for less than the
//! daemon's own value.

/// Reads this process's `oom_score_adj`.
pub fn current_oom_score_adj() -> std::io::Result<i32> {
    let text = std::fs::read_to_string("/proc/self/oom_score_adj")?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Returns the value to put in the OCI config for a `requested` score when
/// the daemon runs with `own` and may (`can_lower`) or may not lower it.
///
/// # Examples
///
/// ```
/// use oci_shim::spec::clamp_oom_score_adj;
///
/// assert_eq!(clamp_oom_score_adj(-998, 0, false), 0);
/// assert_eq!(clamp_oom_score_adj(-998, 0, true), -998);
/// assert_eq!(clamp_oom_score_adj(500, 0, false), 500);
/// ```
pub fn clamp_oom_score_adj(requested: i32, own: i32, can_lower: bool) -> i32 {
    let requested = requested.clamp(-1000, 1000);
    if requested < own && !can_lower {
        tracing::debug!(
            requested,
            own,
            "oom_score_adj clamped to the daemon's own value: lowering it needs CAP_SYS_RESOURCE"
        );
        own
    } else {
        requested
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_below_own_without_capability(req in any::<i32>(), own in -1000i32..=1000) {
            let v = clamp_oom_score_adj(req, own, false);
            prop_assert!(v >= own);
            prop_assert!((-1000..=1000).contains(&v));
        }

        #[test]
        fn unchanged_when_allowed(req in -1000i32..=1000, own in -1000i32..=1000) {
            prop_assert_eq!(clamp_oom_score_adj(req, own, true), req);
        }
    }
}
