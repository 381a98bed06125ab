//! Any bytes as a `.sig` manifest: parsing never panics and never yields
//! more signature layers than the limit.
#![no_main]

use image_signature::{parse_signature_manifest, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        signatures: 4,
        ..Limits::default()
    };
    if let Ok(layers) = parse_signature_manifest(data, "fuzz", &limits) {
        assert!(layers.len() <= 4);
    }
});
