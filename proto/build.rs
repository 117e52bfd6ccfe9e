//! Generates the Rust types and tonic services from `proto/`, with the
//! vendored `protoc` so that no system protobuf compiler is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment while we set it.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        // `bytes` fields decode into `Bytes`, sharing the request buffer
        // instead of copying keys and values.
        .bytes(".")
        .compile_protos(
            &[
                "proto/ringkv/v1/kv.proto",
                "proto/ringkv/v1/admin.proto",
                "proto/ringkv/internal/v2/peer.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
