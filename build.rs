//! Generates the etcd v3 gRPC server and client stubs and the messages of the
//! OpenAPI v2 protobuf encoding (gnostic's `openapi.v2`) from `proto/`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/etcd/rpc.proto"], &["proto/etcd"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(false)
        .compile_protos(&["proto/gnostic/openapiv2.proto"], &["proto/gnostic"])?;
    Ok(())
}
