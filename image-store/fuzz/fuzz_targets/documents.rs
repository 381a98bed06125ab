//! Any bytes as a registry document (the first byte picks manifest/index or
//! image config): parsing never panics, and everything that parses names
//! only paths strictly inside the store: each digest's blob path is a
//! direct child of its algorithm's directory, each chain id's layer path a
//! direct child of `layers/`, read back from its name to the same chain id.
#![no_main]

use image_store::blob_store::BlobStore;
use image_store::digest::Digest;
use image_store::layer_store::{chain_ids, ChainId, LayerStore};
use image_store::oci::{Document, ImageConfig};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn blob_inside(digest: &Digest) {
    let blobs = BlobStore::new(Path::new("/store"));
    let path = blobs.path(digest);
    assert_eq!(path.parent(), Some(blobs.algorithm_dir(digest.algorithm()).as_path()));
    assert_eq!(path.file_name().and_then(|n| n.to_str()), Some(digest.hex()));
}

fn layers_inside(diff_ids: &[Digest]) {
    let layers = LayerStore::new(Path::new("/store"));
    for chain in chain_ids(diff_ids) {
        let path = layers.path(&chain);
        assert_eq!(path.parent(), Some(layers.dir()));
        let name = path.file_name().and_then(|n| n.to_str()).expect("hex name");
        assert_eq!(ChainId::from_dir_name(name).as_ref(), Some(&chain));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    if kind % 2 == 0 {
        match Document::parse(bytes) {
            Ok(Document::Manifest(m)) => {
                for d in std::iter::once(&m.config).chain(&m.layers) {
                    blob_inside(&d.digest);
                }
            }
            Ok(Document::Index(i)) => i.manifests.iter().for_each(|d| blob_inside(&d.digest)),
            Err(_) => {}
        }
    } else if let Ok(config) = ImageConfig::parse(bytes) {
        config.diff_ids.iter().for_each(blob_inside);
        layers_inside(&config.diff_ids);
    }
});
