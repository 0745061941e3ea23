//! The `countersign` command line. Each subcommand lives in its own module; this one only parses
//! and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod crds;
pub mod keys;
mod registry_args;
pub mod run;
pub mod sign;
pub mod verify;

/// Keeps a Kubernetes cluster honest about the images it runs.
#[derive(Debug, Parser)]
#[command(name = "countersign", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (or write them into a folder with --write).
    Crds(crds::CrdsArgs),
    /// Generate a cosign-compatible key pair (cosign.key, cosign.pub); password from COSIGN_PASSWORD.
    GenerateKeyPair(keys::GenerateKeyPairArgs),
    /// Sign an image with a cosign key, as cosign v3 (bundle) or cosign v2 (legacy) would.
    Sign(sign::SignArgs),
    /// Verify an image's cosign signatures against public keys.
    Verify(verify::VerifyArgs),
    /// Run the operator.
    Run(run::RunArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(_) => run::init_logging(),
        _ => init_logging(),
    }
    match cli.command {
        Command::Crds(args) => crds::print_crds(&args),
        Command::GenerateKeyPair(args) => keys::generate_key_pair(&args),
        Command::Sign(args) => sign::sign(&args),
        Command::Verify(args) => verify::verify(&args),
        Command::Run(args) => run::run(&args),
    }
}

/// Logs to stderr, filtered by RUST_LOG (default: warnings; oci-client's warnings about
/// registries that bend the spec are noise to a person at a terminal), so stdout stays for results.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,oci_client=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
