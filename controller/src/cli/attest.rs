//! `countersign attest` and `countersign verify-attestation`: what `cosign attest --key` writes
//! and `cosign verify-attestation` reads, in both layouts.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;

use super::{
    registry_args::{RegistryArgs, runtime},
    sign::Format,
    verify::{KeylessArgs, exit, load_keys},
};
use crate::{
    formats::attestation::predicate_type,
    reference::ImageRef,
    sign::{AttestRequest, attest_bundle, attest_legacy},
    verify::{
        AttestationState, AttestationVerification, Attestations, KeySet, Policy, PredicatePolicy,
        Requirement, verify_attestations,
    },
};

#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// Image to attest (a tag is resolved to its digest first; the digest is the subject).
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// The predicate: a JSON file.
    #[arg(long, value_name = "FILE")]
    pub predicate: PathBuf,
    /// Predicate type: a URI, or one of cosign's names (slsaprovenance, slsaprovenance02,
    /// slsaprovenance1, spdx, spdxjson, cyclonedx, link, vuln, openvex, custom).
    #[arg(long = "type", value_name = "TYPE", default_value = "custom")]
    pub kind: String,
    /// cosign private key (password from COSIGN_PASSWORD, else standard input or the terminal).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// `bundle`: a Sigstore bundle referrer, as cosign v3 writes by default. `legacy`: a layer of
    /// the `sha256-<hex>.att` tag, as cosign v2 writes.
    #[arg(long, default_value = "bundle")]
    pub format: Format,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn attest(args: &AttestArgs) -> ExitCode {
    match run_attest(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("countersign attest {}: {e:#}", args.image);
            ExitCode::FAILURE
        }
    }
}

fn run_attest(args: &AttestArgs) -> anyhow::Result<()> {
    let image = ImageRef::parse(&args.image)?;
    let predicate_type = predicate_type(&args.kind).context("--type")?;
    let predicate = read_predicate(&args.predicate)?;
    let key = super::keys::load_signing_key(&args.key)?;
    let request = AttestRequest {
        image: &image,
        key: &key,
        predicate_type,
        predicate,
        signature_repository: args.registry.signature_repository()?,
    };
    let client = args.registry.client()?;
    let written = runtime()?.block_on(async {
        match args.format {
            Format::Bundle => attest_bundle(&client, &request).await,
            Format::Legacy => attest_legacy(&client, &request).await,
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&written).context("printing")?);
    } else {
        eprintln!(
            "Pushed {} attestation of {}@{} to {}",
            request.predicate_type,
            image.repository_name(),
            written.digest,
            written.signature
        );
    }
    Ok(())
}

/// The predicate file, which must be JSON (cosign wraps anything else only for `custom`, which
/// we do not write).
fn read_predicate(path: &std::path::Path) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading predicate {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("predicate {} is not JSON", path.display()))
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 verified, 10 no attestation of the type, 12 invalid (another digest, \
no valid signature, policy failed), 13 registry error (no verdict), 1 bad input."
)]
pub struct VerifyAttestationArgs {
    /// Image whose attestations to verify (by tag or digest).
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// Public key (PEM) that may have signed; repeat for several.
    #[arg(long = "key", value_name = "FILE", required_unless_present_any = ["certificate_identity", "certificate_identity_regexp"])]
    pub keys: Vec<PathBuf>,
    #[command(flatten)]
    pub keyless: KeylessArgs,
    /// Predicate type required: a URI or one of cosign's names (see `attest --help`).
    #[arg(long = "type", value_name = "TYPE", default_value = "custom")]
    pub kind: String,
    /// A CEL expression over the predicate that must be true (variables `predicate`,
    /// `predicateType`, `subject`), e.g. `predicate.buildDefinition.buildType == "…"`.
    #[arg(long, value_name = "CEL")]
    pub policy: Option<String>,
    /// `text` (one line) or `json`.
    #[arg(long, short, default_value = "text")]
    pub output: super::verify::Output,
    /// Give up after this many seconds (the verdict is then an error).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn verify_attestation(args: &VerifyAttestationArgs) -> ExitCode {
    match run_verify(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("countersign verify-attestation: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn run_verify(args: &VerifyAttestationArgs) -> anyhow::Result<u8> {
    let keys = args.keyless.apply(KeySet::new(load_keys(&args.keys)?, 1))?;
    let requirement = Requirement {
        predicate_type: predicate_type(&args.kind).context("--type")?,
        policy: args
            .policy
            .as_deref()
            .map(PredicatePolicy::compile)
            .transpose()
            .context("--policy")?,
    };
    let image = ImageRef::parse(&args.image)?;
    let policy = Policy {
        keys,
        signature_repository: args.registry.signature_repository()?,
    };
    let source = Attestations(Arc::new(args.registry.client()?));
    let deadline = Duration::from_secs(args.timeout);
    let requirements = [requirement];
    let result = runtime()?.block_on(async {
        let verify = verify_attestations(&source, &image, &policy, &requirements);
        tokio::time::timeout(deadline, verify).await
    });
    let result = result.unwrap_or_else(|_| AttestationVerification {
        image: image.to_string(),
        digest: None,
        attestations: vec![crate::verify::AttestationCheck {
            predicate_type: requirements[0].predicate_type.clone(),
            state: AttestationState::Error {
                reason: format!("timed out after {}s", args.timeout),
            },
        }],
    });
    match args.output {
        super::verify::Output::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        super::verify::Output::Text => print_text(&result),
    }
    Ok(result
        .attestations
        .iter()
        .map(|a| exit_code(&a.state))
        .max()
        .unwrap_or(exit::VERIFIED))
}

fn exit_code(state: &AttestationState) -> u8 {
    match state {
        AttestationState::Verified { .. } => exit::VERIFIED,
        AttestationState::Missing => exit::UNSIGNED,
        AttestationState::Error { .. } => exit::ERROR,
        _ => exit::INVALID,
    }
}

fn print_text(v: &AttestationVerification) {
    let at = match &v.digest {
        Some(d) if !v.image.contains('@') => format!("@{d}"),
        _ => String::new(),
    };
    for a in &v.attestations {
        match &a.state {
            AttestationState::Verified { signer } => {
                println!("Verified {}{at}: {} by {signer}", v.image, a.predicate_type)
            }
            state => eprintln!("{} {}{at}: {}", state.name(), v.image, a.reason()),
        }
    }
}
