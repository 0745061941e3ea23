//! `countersign rotation`: what an SRE running a key rotation needs at a terminal.
//!
//! - `status [NAME] [--watch] [-o json]`: phase, time left in the window, a progress bar of the
//!   governed workloads on the new key, and the stragglers.
//! - `resign NAME --key NEW.key [--dry-run]`: re-signs, with the new key, every running digest
//!   the rotation's TrustRoot governs that the new key has not signed yet, only after checking
//!   that the old key signed it (never vouch for what the old key did not), in the format of
//!   that existing signature.

mod resign;
mod status;

use std::process::ExitCode;

use anyhow::Context;

pub use resign::ResignArgs;
pub use status::StatusArgs;

#[derive(Debug, clap::Subcommand)]
pub enum RotationCommand {
    /// Show where rotations stand: phase, window, progress, stragglers.
    Status(StatusArgs),
    /// Re-sign with the new key every running digest the old key signed and the new key has not.
    Resign(ResignArgs),
}

pub fn rotation(command: &RotationCommand) -> ExitCode {
    match command {
        RotationCommand::Status(args) => status::status(args),
        RotationCommand::Resign(args) => resign::resign(args),
    }
}

/// A client from the kubeconfig (or the in-cluster service account), as kubectl finds it.
async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("connecting to the cluster (KUBECONFIG, ~/.kube/config or in-cluster)")
}
