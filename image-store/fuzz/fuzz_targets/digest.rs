//! Any string: a digest parses exactly when it is `sha256:` and 64, or
//! `sha512:` and 128, lowercase hex characters, and prints back unchanged.
#![no_main]

use image_store::digest::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    let grammar = match input.split_once(':') {
        Some(("sha256", hex)) => hex.len() == 64,
        Some(("sha512", hex)) => hex.len() == 128,
        _ => false,
    } && input
        .split_once(':')
        .is_some_and(|(_, hex)| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    match input.parse::<Digest>() {
        Ok(d) => {
            assert!(grammar, "accepted {input:?}");
            assert_eq!(d.to_string(), input);
        }
        Err(_) => assert!(!grammar, "refused {input:?}"),
    }
});
