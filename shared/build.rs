//! Compiles `proto/push.proto` with protox (pure Rust), so no system `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not compiled in: a build-script binary reused from another checkout of
    // the same sources (a shared target directory) then still finds this checkout's file.
    let proto_dir = format!("{}/../proto", std::env::var("CARGO_MANIFEST_DIR")?);
    let proto = format!("{proto_dir}/push.proto");
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([&proto], [&proto_dir])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
