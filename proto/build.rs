//! Compiles the vendored etcd and CRI protos and Keelson's own with protox, so no
//! system `protoc` is needed to build this crate.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "etcd/api/etcdserverpb/rpc.proto",
        "keelson/peer.proto",
        "cri/runtime/v1/api.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".keelson.peer.v1.RaftBatch.messages")
        .compile_fds(fds)?;
    Ok(())
}
