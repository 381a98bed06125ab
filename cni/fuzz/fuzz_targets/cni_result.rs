//! Feeds arbitrary bytes to CNI result parsing, as a plugin's standard
//! output or a cached attachment reaches it. Nothing may panic; a parsed
//! result serializes and parses back to itself, and every pod IP is one of
//! the result's addresses.

#![no_main]

use cni::CniResult;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(result) = CniResult::from_slice(data) else {
        return;
    };
    let again = serde_json::to_vec(&result).expect("a parsed result serializes");
    assert_eq!(CniResult::from_slice(&again).ok(), Some(result.clone()));
    let all: Vec<_> = result.ips.iter().filter_map(|ip| ip.ip()).collect();
    for ip in result.pod_ips() {
        assert!(all.contains(&ip));
    }
    let _ = result.sandbox_interfaces();
});
