//! Generates the PD door's messages and its server and client glue from the
//! project's own `proto/pdpb.proto`, parsed by protox (pure Rust): the
//! build needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/pdpb.proto");
    let fds = protox::compile(["proto/pdpb.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
