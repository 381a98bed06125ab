//! Proportional set size (PSS) of processes, from `/proc/<pid>/smaps_rollup`.

use anyhow::{Context, Result};
use std::path::Path;

/// The PSS of process `pid` in KiB.
pub fn pss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    field_kib(&text, "Pss:").with_context(|| format!("{path}: no Pss line"))
}

/// The process ids of the `oci-monitor` processes whose command line
/// mentions `marker` (the daemon's private directory), so that monitors of
/// other daemons or benchmarks on the machine are not counted.
pub fn monitors(marker: &Path) -> Vec<u32> {
    let marker = marker.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            comm.trim_end() == "oci-monitor" && String::from_utf8_lossy(&cmdline).contains(&marker)
        })
        .collect()
}

fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_smaps_rollup_fields() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:   980 kB\nPss:   301 kB\nPss_Anon:   12 kB\n";
        assert_eq!(super::field_kib(text, "Pss:"), Some(301));
        assert_eq!(super::field_kib(text, "Pss_Anon:"), Some(12));
        assert_eq!(super::field_kib(text, "Swap:"), None);
    }

    #[test]
    fn own_process_has_a_pss_and_is_no_monitor() {
        let me = std::process::id();
        assert!(super::pss_kib(me).unwrap() > 0);
        assert!(!super::monitors(std::path::Path::new("/")).contains(&me));
    }
}
