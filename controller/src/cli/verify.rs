//! `countersign verify`: exit codes and JSON for terminals and CI.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;

use super::registry_args::{RegistryArgs, runtime};
use crate::{
    keys::PublicKey,
    reference::ImageRef,
    registry::RegistryError,
    sigstore::{Identity, Pattern, TlogPolicy, TrustedRoot},
    verify::{KeySet, NamedIdentity, NamedKey, Outcome, Policy, Verification, verify_image},
};

/// Exit codes, one per verdict (documented in the README and in `--help`).
pub mod exit {
    pub const VERIFIED: u8 = 0;
    /// Bad input: a key file, a reference, a flag.
    pub const USAGE: u8 = 1;
    /// No signatures at all (cosign uses 10 too).
    pub const UNSIGNED: u8 = 10;
    /// Signatures, none valid for the keys (cosign's "no matching signatures" is 12 too).
    pub const INVALID: u8 = 12;
    /// The registry could not be asked: unknown, not a verdict.
    pub const ERROR: u8 = 13;
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 verified, 10 unsigned, 12 invalid (signatures, none valid), \
13 registry error (no verdict), 1 bad input. With several images, the highest code wins."
)]
pub struct VerifyArgs {
    /// Images to verify (by tag or digest).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Public key (PEM) that may have signed; repeat for several.
    #[arg(long = "key", value_name = "FILE", required_unless_present_any = ["certificate_identity", "certificate_identity_regexp"])]
    pub keys: Vec<PathBuf>,
    #[command(flatten)]
    pub keyless: KeylessArgs,
    /// Distinct keys that must have signed.
    #[arg(long, default_value_t = 1)]
    pub threshold: usize,
    /// `text` (one line per image) or `json` (an object; an array for several images).
    #[arg(long, short, default_value = "text")]
    pub output: Output,
    /// Give up on an image after this many seconds (its verdict is then an error).
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The keyless flags, as cosign's (shared by `verify` and `verify-attestation`).
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("subject").args(["certificate_identity", "certificate_identity_regexp"]))]
pub struct KeylessArgs {
    /// Keyless: the signing certificate's identity (SAN: an email or a URI), exactly.
    #[arg(
        long,
        value_name = "IDENTITY",
        conflicts_with = "certificate_identity_regexp",
        requires = "issuer"
    )]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the certificate's identity must match (unanchored, as
    /// cosign's: write `^…$` to match all of it).
    #[arg(long, value_name = "REGEXP", requires = "issuer")]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the certificate's OIDC issuer, exactly (e.g. https://token.actions.githubusercontent.com).
    #[arg(
        long,
        value_name = "URL",
        group = "issuer",
        conflicts_with = "certificate_oidc_issuer_regexp",
        requires = "subject"
    )]
    pub certificate_oidc_issuer: Option<String>,
    /// Keyless: a regular expression the certificate's OIDC issuer must match (unanchored).
    #[arg(long, value_name = "REGEXP", group = "issuer", requires = "subject")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Keyless: the Sigstore `trusted_root.json` (Fulcio CAs, CT logs, Rekor keys, TSAs) to verify
    /// against, offline. Default: the public-good instance's, shipped in countersign.
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// The transparency log: `required` (every signature, by key too, needs a log entry that
    /// verifies against the trusted root's logs) or `optional` (a keyless signature may do with
    /// RFC 3161 timestamps instead, as cosign's `--insecure-ignore-tlog` with a TSA). Unset: as
    /// cosign, keyless signatures need one and key-based ones are not looked up.
    #[arg(long, value_name = "POLICY")]
    pub tlog: Option<Tlog>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Tlog {
    Required,
    Optional,
}

impl From<Tlog> for TlogPolicy {
    fn from(t: Tlog) -> Self {
        match t {
            Tlog::Required => Self::Required,
            Tlog::Optional => Self::Optional,
        }
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

pub fn verify(args: &VerifyArgs) -> ExitCode {
    match run(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("countersign verify: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}

fn run(args: &VerifyArgs) -> anyhow::Result<u8> {
    let mut keys = KeySet::new(load_keys(&args.keys)?, args.threshold);
    keys = args.keyless.apply(keys)?;
    let images = args
        .images
        .iter()
        .map(|i| ImageRef::parse(i))
        .collect::<Result<Vec<_>, _>>()?;
    let policy = Policy {
        keys,
        signature_repository: args.registry.signature_repository()?,
    };
    let client = args.registry.client()?;
    let deadline = Duration::from_secs(args.timeout);
    let results: Vec<Verification> = runtime()?.block_on(async {
        let each = images.iter().map(|image| async {
            tokio::time::timeout(deadline, verify_image(&client, image, &policy))
                .await
                .unwrap_or_else(|_| timed_out(image))
        });
        futures::future::join_all(each).await
    });
    print(&results, args.output)?;
    Ok(results
        .iter()
        .map(|v| exit_code(&v.outcome))
        .max()
        .unwrap_or(exit::VERIFIED))
}

fn timed_out(image: &ImageRef) -> Verification {
    Verification::unresolved(
        image,
        RegistryError::Timeout {
            registry: image.registry().to_string(),
        },
    )
}

/// Reads each `--key`; the key is named after its file (`ci-2026.pub` is `ci-2026`).
pub fn load_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<NamedKey>> {
    paths
        .iter()
        .map(|path| {
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
            let key = PublicKey::from_pem(&pem).with_context(|| format!("key {}", path.display()))?;
            let name = path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            Ok(NamedKey { name, key })
        })
        .collect()
}

impl KeylessArgs {
    /// The identity of `--certificate-identity[-regexp]` and `--certificate-oidc-issuer[-regexp]`,
    /// named after what it matches; `None` without them (clap requires both halves together).
    pub fn identity(&self) -> anyhow::Result<Option<NamedIdentity>> {
        let subject = self.certificate_identity.as_deref();
        let subject_regexp = self.certificate_identity_regexp.as_deref();
        if subject.is_none() && subject_regexp.is_none() {
            return Ok(None);
        }
        let identity = Identity {
            subject: Pattern::new(subject, subject_regexp, "--certificate-identity-regexp")?,
            issuer: Pattern::new(
                self.certificate_oidc_issuer.as_deref(),
                self.certificate_oidc_issuer_regexp.as_deref(),
                "--certificate-oidc-issuer-regexp",
            )?,
        };
        let name = subject.or(subject_regexp).unwrap_or_default().to_string();
        Ok(Some(NamedIdentity { name, identity }))
    }

    pub fn trusted_root(&self) -> anyhow::Result<Arc<TrustedRoot>> {
        trusted_root(self.trusted_root.as_deref())
    }

    /// `keys` with the identity and the `--tlog` policy of these flags. The trusted root is read
    /// only when one of them needs it, so key-only runs work without one.
    pub fn apply(&self, mut keys: KeySet) -> anyhow::Result<KeySet> {
        let identity = self.identity()?;
        if identity.is_none() && self.tlog.is_none() {
            return Ok(keys);
        }
        let root = self.trusted_root()?;
        let tlog = self.tlog.map_or(TlogPolicy::Default, TlogPolicy::from);
        keys = keys.with_tlog(tlog, root.clone());
        if let Some(identity) = identity {
            keys = keys.with_identities(vec![identity], root);
        }
        Ok(keys)
    }
}

/// `--trusted-root FILE`, or the public-good root shipped in the binary.
pub fn trusted_root(path: Option<&std::path::Path>) -> anyhow::Result<Arc<TrustedRoot>> {
    let Some(path) = path else {
        return Ok(TrustedRoot::public_good()?);
    };
    let json = std::fs::read(path).with_context(|| format!("reading trusted root {}", path.display()))?;
    Ok(Arc::new(TrustedRoot::from_json(
        &path.display().to_string(),
        &json,
    )?))
}

pub fn exit_code(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Verified { .. } => exit::VERIFIED,
        Outcome::Unsigned => exit::UNSIGNED,
        Outcome::Invalid { .. } => exit::INVALID,
        Outcome::Error { .. } => exit::ERROR,
    }
}

fn print(results: &[Verification], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json if results.len() == 1 => {
            println!("{}", serde_json::to_string_pretty(&results[0])?)
        }
        Output::Json => println!("{}", serde_json::to_string_pretty(results)?),
        Output::Text => results.iter().for_each(print_text),
    }
    Ok(())
}

fn print_text(v: &Verification) {
    // Name the digest that was checked, unless the reference already does.
    let at = match &v.digest {
        Some(d) if !v.image.contains('@') => format!("@{d}"),
        _ => String::new(),
    };
    match &v.outcome {
        Outcome::Verified { keys } => {
            let how: Vec<String> = v
                .signatures
                .iter()
                .filter_map(|s| {
                    s.key
                        .as_ref()
                        .map(|k| format!("{k} ({:?})", s.format).to_lowercase())
                })
                .collect();
            println!(
                "Verified {}{at}: {} [{}]",
                v.image,
                keys.join(", "),
                how.join(", ")
            );
        }
        Outcome::Unsigned => eprintln!("Unsigned {}{at}: no signatures found", v.image),
        Outcome::Invalid { reason, .. } => eprintln!("Invalid {}{at}: {reason}", v.image),
        Outcome::Error { reason, .. } => eprintln!("Error {}{at}: {reason}", v.image),
    }
}
