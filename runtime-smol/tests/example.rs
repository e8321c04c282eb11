//! `examples/embedded.rs` runs to its end: the node as a task on the
//! application's executor serves, the application's tasks get timestamps,
//! and the graceful stop returns. (The example's own `main`, compiled here
//! as a module, so the test runs exactly what `cargo run --example
//! embedded` runs.)

#[allow(dead_code)]
#[path = "../examples/embedded.rs"]
mod embedded;

#[test]
fn the_embedded_example_runs() {
    embedded::main().expect("the example failed");
}
