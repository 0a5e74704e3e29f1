//! Generates the gRPC code from `proto/` with protox (pure Rust), so building
//! Tessera needs no `protoc` binary. Also writes the encoded descriptor set
//! that gRPC server reflection serves.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "proto/tessera/v1/peer.proto",
    "proto/tessera/v1/cluster.proto",
    "proto/tessera/v1/admin.proto",
    "proto/tessera/v1/auth.proto",
    "proto/tessera/v1/identity.proto",
    "proto/tessera/v1/sync.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("tessera_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Ordered maps: clippy bans HashMap crate-wide (ARCHITECTURE.md §2.1).
        .btree_map(".")
        // Lets the CLI print any response as JSON.
        .type_attribute(".tessera.v1", "#[derive(serde::Serialize)]")
        .compile_fds(fds)?;
    Ok(())
}
