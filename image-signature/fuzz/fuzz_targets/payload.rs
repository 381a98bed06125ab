//! Any bytes as a simple-signing payload: parsing never panics, and what
//! parses has a digest of the `algorithm:hex` form.
#![no_main]

use image_signature::SimpleSigningPayload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = SimpleSigningPayload::parse(data) {
        let (algorithm, hex) = payload
            .manifest_digest
            .split_once(':')
            .expect("a parsed digest has an algorithm");
        assert!(algorithm.starts_with("sha"));
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }
});
