//! Project automation, run as `cargo xtask <command>`.
//!
//! Everything CI and a developer need beyond `cargo` itself lives here rather
//! than in shell scripts: installing the machine's packages, the CI pipeline,
//! and (as the crates grow) test fixtures and benchmarks.

mod bench;
mod chaos;
mod ci;
mod command;
mod deb;
mod deps;
mod fixtures;
mod grpc_python;
mod host_leaks;
mod run;
mod setup;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// `cargo xtask`: setup, CI and benchmarks for the workspace.
#[derive(Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install, idempotently, the Debian packages the project needs and the
    /// tests' third-party CRI client (Python's grpcio, under target/).
    Setup,
    /// Build the binaries and run the daemon on its embedded default
    /// configuration (arguments after `--` go to the daemon).
    Run {
        /// Arguments for cri-server, e.g. `--log-level debug`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The whole CI pipeline: setup, fmt, clippy, docs, every test.
    Ci,
    /// Start the local registry and push the test images to it.
    Fixtures,
    /// Cancel, race and kill the daemon under a workload, and check after
    /// every cycle that nothing was lost or leaked.
    Chaos {
        /// How many cycles.
        #[arg(long, default_value_t = 100)]
        cycles: u32,
        /// Seed for the random choices (a failed run prints its seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Arm this fault point in every cycle instead of a random one.
        #[arg(long)]
        fault: Option<String>,
    },
    /// Build the Debian package (release binaries, unit, default config,
    /// man page, completions) under target/deb/, and test-install it into a
    /// scratch root.
    Deb,
    /// Measure performance against the real components.
    Bench {
        /// Which benchmark to run.
        #[arg(value_enum, default_value_t = bench::Which::All)]
        which: bench::Which,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    match cli.command {
        Command::Setup => setup::run().and_then(|()| grpc_python::install(&root)),
        Command::Run { args } => run::run(&root, &args),
        Command::Ci => ci::run(&root),
        Command::Fixtures => fixtures::prepare(&root),
        Command::Bench { which } => bench::run(&root, which),
        Command::Deb => deb::build(&root, deb::Profile::Release).and_then(|deb| deb::check(&deb)),
        Command::Chaos {
            cycles,
            seed,
            fault,
        } => chaos::run(&root, cycles, seed, fault.as_deref()),
    }
}

/// The workspace root: xtask's manifest lives one level below it.
fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}
