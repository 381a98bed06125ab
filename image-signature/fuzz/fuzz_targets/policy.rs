//! Any bytes as a policy.json: loading never panics (nor hangs: a keyPath
//! naming a device or FIFO is refused unread), and a policy that loads
//! answers scope lookups for any reference.
#![no_main]

use image_signature::SignaturePolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(policy) = SignaturePolicy::from_json(data) {
        for image in [
            "busybox",
            "quay.io/ns/app:v1",
            "localhost:5000/a/b@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "a.b.example.com:443/x",
        ] {
            let image: image_store::ImageReference = image.parse().expect("a fixed reference");
            let (_, requirements) = policy.requirements_for(&image);
            assert!(!requirements.is_empty());
        }
    }
});
