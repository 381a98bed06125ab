//! Any bytes as a layer (plain tar, or gzip when the first byte says so):
//! unpacking never panics and never touches anything outside the layer
//! directory. Run as root so ownership, devices and xattrs are exercised.
#![no_main]

use image_store::digest::Algorithm;
use image_store::layer_unpack::{unpack, Compression};
use libfuzzer_sys::fuzz_target;
use std::fs;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, blob)) = data.split_first() else {
        return;
    };
    let compression = match mode % 3 {
        0 => Compression::None,
        1 => Compression::Gzip,
        _ => Compression::Zstd,
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let layer = dir.path().join("layer");
    fs::create_dir(&layer).expect("layer directory");
    fs::write(dir.path().join("sentinel"), b"untouched").expect("sentinel");
    let _ = unpack(blob, compression, &layer, Algorithm::Sha256);
    let mut names: Vec<_> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["layer", "sentinel"], "something escaped the layer");
    assert_eq!(
        fs::read(dir.path().join("sentinel")).expect("sentinel"),
        b"untouched"
    );
});
