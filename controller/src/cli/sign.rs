//! `countersign sign`: what cosign v3 (bundle) or cosign v2 (legacy) would write.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};

use super::registry_args::{RegistryArgs, runtime};
use crate::{
    reference::ImageRef,
    sign::{SignRequest, sign_bundle, sign_legacy},
};

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Image to sign (a tag is resolved to its digest first; the digest is what gets signed).
    #[arg(value_name = "IMAGE")]
    pub image: String,
    /// cosign private key (password from COSIGN_PASSWORD, else standard input or the terminal).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// `bundle`: a Sigstore bundle referrer, as cosign v3 writes by default. `legacy`: the
    /// `sha256-<hex>.sig` tag cosign v2 reads.
    #[arg(long, default_value = "bundle")]
    pub format: Format,
    /// Annotation added to what is signed (repeatable).
    #[arg(short = 'a', long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Bundle,
    Legacy,
}

pub fn sign(args: &SignArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("countersign sign {}: {e:#}", args.image);
            ExitCode::FAILURE
        }
    }
}

fn run(args: &SignArgs) -> anyhow::Result<()> {
    let image = ImageRef::parse(&args.image)?;
    let key = super::keys::load_signing_key(&args.key)?;
    let request = SignRequest {
        image: &image,
        key: &key,
        annotations: parse_annotations(&args.annotations)?,
        signature_repository: args.registry.signature_repository()?,
    };
    let client = args.registry.client()?;
    let signed = runtime()?.block_on(async {
        match args.format {
            Format::Bundle => sign_bundle(&client, &request).await,
            Format::Legacy => sign_legacy(&client, &request).await,
        }
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&signed).context("printing")?);
    } else if signed.written {
        eprintln!(
            "Pushed signature of {}@{} to {}",
            image.repository_name(),
            signed.digest,
            signed.signature
        );
    } else {
        eprintln!(
            "{}@{} is already signed by this key at {}",
            image.repository_name(),
            signed.digest,
            signed.signature
        );
    }
    Ok(())
}

fn parse_annotations(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    raw.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("annotation {a:?} is not KEY=VALUE"),
        })
        .collect()
}
