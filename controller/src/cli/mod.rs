//! The `countersign` command line. Each subcommand lives in its own module; this one only parses
//! and dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod attest;
pub mod crds;
pub mod keys;
mod registry_args;
pub mod rotation;
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
    /// Attest an image (an in-toto statement, signed), as `cosign attest --key` would.
    Attest(attest::AttestArgs),
    /// Verify an image's attestations of a predicate type, as `cosign verify-attestation`.
    VerifyAttestation(attest::VerifyAttestationArgs),
    /// Run the operator.
    Run(Box<run::RunArgs>),
    /// Follow and drive key rotations (status, resign).
    #[command(subcommand)]
    Rotation(rotation::RotationCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // An operator's log is read by people after the fact, so it says what it decided (info);
    // at a terminal only warnings. oci-client's warnings about registries that bend the spec
    // are noise either way.
    match cli.command {
        Command::Run(_) => init_logging("info,oci_client=error,kube=warn"),
        _ => init_logging("warn,oci_client=error"),
    }
    // rustls is compiled with two crypto providers (kube: ring; reqwest: aws-lc-rs) and then
    // refuses to pick one by itself. ring, for every command: it is the one ECDSA is checked
    // with, so a `verify` initialises one crypto library, not two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Crds(args) => crds::print_crds(&args),
        Command::GenerateKeyPair(args) => keys::generate_key_pair(&args),
        Command::Sign(args) => sign::sign(&args),
        Command::Verify(args) => verify::verify(&args),
        Command::Attest(args) => attest::attest(&args),
        Command::VerifyAttestation(args) => attest::verify_attestation(&args),
        Command::Run(args) => run::run(&args),
        Command::Rotation(command) => rotation::rotation(&command),
    }
}

/// Logs to stderr (stdout stays for results), filtered by RUST_LOG or else `default`; colours
/// only on a terminal, so log files and `kubectl logs` stay plain text.
fn init_logging(default: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
