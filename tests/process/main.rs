//! The broker binary as operators run it, as a child process: the CLI, SIGKILL
//! with work in flight, the container's config, the crash-and-soak run, one
//! process per database, and a low open-file limit. `cargo test --test process`.

mod cli;
mod cluster;
mod container;
mod durability;
mod open_files;
mod ownership;
mod reload;
mod routes;
mod soak;

use std::path::Path;

use testkit::process::Launch;

/// The broker binary cargo built for these tests.
const BIN: &str = env!("CARGO_BIN_EXE_smpp-broker");

/// How to run this build's broker on `config`.
fn launch(config: &Path) -> Launch {
    Launch::new(BIN, config)
}
