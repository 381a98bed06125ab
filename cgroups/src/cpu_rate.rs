//! CPU usage as a rate: cgroups count cumulative CPU time, and a rate
//! (kubelet's `usage_nano_cores`) needs two readings.

use std::collections::HashMap;
use std::sync::Mutex;

/// The previous CPU reading of each cgroup, by a key of the caller's (a
/// container id, say), turning cumulative readings into rates.
///
/// # Examples
///
/// ```
/// use cgroups::CpuRates;
///
/// let rates = CpuRates::default();
/// // The first reading has nothing to compare with.
/// assert_eq!(rates.rate("c1", 1_000_000_000, 5_000_000_000), None);
/// // Half a CPU second over one second: half a core, in nanocores.
/// assert_eq!(rates.rate("c1", 2_000_000_000, 5_500_000_000), Some(500_000_000));
/// ```
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// Nanocores since the previous reading of `key`, which `(now, cpu_ns)`
    /// replaces; `None` for the first reading.
    pub fn rate(&self, key: &str, now: i64, cpu_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let previous = last.insert(key.to_string(), (now, cpu_ns));
        let (then, before) = previous?;
        let elapsed = now.checked_sub(then).filter(|e| *e > 0)?;
        Some(((cpu_ns.saturating_sub(before)) as u128 * 1_000_000_000 / elapsed as u128) as u64)
    }

    /// Forgets `key` (its container is gone).
    pub fn forget(&self, key: &str) {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_cores_need_two_readings() {
        let rates = CpuRates::default();
        assert_eq!(rates.rate("c", 1_000_000_000, 0), None);
        // Half a core over one second.
        assert_eq!(
            rates.rate("c", 2_000_000_000, 500_000_000),
            Some(500_000_000)
        );
        rates.forget("c");
        assert_eq!(rates.rate("c", 3_000_000_000, 900_000_000), None);
    }
}
