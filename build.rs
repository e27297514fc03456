//! Compiles the protos with protox (pure Rust: no system protoc needed) and
//! keeps the encoded descriptors for server reflection and proto3 JSON.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/annals/v1/timeline.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("annals_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .btree_map(".")
        // Written by hand (src/wire.rs), so that the server can encode a
        // page of relations straight from its index, and a page of events
        // straight from the log's bytes.
        .extern_path(
            ".annals.v1.ListRelationsResponse",
            "crate::wire::ListRelationsResponse",
        )
        .extern_path(
            ".annals.v1.ListEventsResponse",
            "crate::wire::ListEventsResponse",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
