//! The per-stage sandbox helper, spawned by the runner library; see `runner::helper_main`.
//! Kept tiny on purpose: no argument parsing, no logging, nothing but the sandbox.

fn main() {
    runner::helper_main()
}
