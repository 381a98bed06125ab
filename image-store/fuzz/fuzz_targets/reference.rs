//! Any string: parsing never panics, and what parses prints back to the
//! same reference.
#![no_main]

use image_store::ImageReference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &str| {
    if let Ok(reference) = input.parse::<ImageReference>() {
        let again: ImageReference = reference
            .to_string()
            .parse()
            .expect("a printed reference parses");
        assert_eq!(again, reference);
    }
    let _ = image_store::reference::image_id_of(input);
});
