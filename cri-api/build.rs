//! Generates the CRI bindings from the vendored upstream `api.proto`.

use std::path::PathBuf;

/// The field option protoc learnt in protobuf 22; Debian 12's protoc (3.21)
/// refuses the file with it. It only affects Debug, which src/redact.rs
/// provides by hand for the messages that carry it.
const DEBUG_REDACT: &str = " [debug_redact = true]";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    let upstream = std::fs::read_to_string("proto/api.proto")?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("proto");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("api.proto"), upstream.replace(DEBUG_REDACT, ""))?;
    tonic_prost_build::configure()
        .skip_debug(["runtime.v1.AuthConfig"])
        .compile_protos(&[out.join("api.proto")], &[out])?;
    Ok(())
}
