//! `countersign rotation resign NAME --key NEW.key [--dry-run]`.
//!
//! The digests come from what runs (every pod's running digest that the rotation's TrustRoot
//! governs), not from the stragglers in status, which stop at twenty. Each is signed with the
//! new key only after its signatures were checked against the TrustRoot's declared fromKey: a
//! re-sign must never vouch for an image the old key did not.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{Api, Client, ResourceExt, api::ListParams};

use super::super::registry_args::{RegistryArgs, runtime};
use crate::{
    crd::{KeyRotation, TrustRoot, ValidatedSpec},
    keys::{PublicKey, SigningKey},
    operator::{objects::ObjectCache, pods, trust::load_keys},
    reference::ImageRef,
    registry::RegistryClient,
    sign::{SignRequest, sign_bundle, sign_legacy},
    verify::{KeySet, NamedKey, SignatureFormat, check_all, fetch_signatures},
};

#[derive(Debug, clap::Args)]
pub struct ResignArgs {
    /// The KeyRotation whose stragglers to re-sign.
    pub name: String,
    /// The private key of the rotation's toKey (password from COSIGN_PASSWORD, else standard
    /// input or the terminal).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Check everything and say what would be signed, without signing.
    #[arg(long)]
    pub dry_run: bool,
    /// Digests handled at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What became of one digest.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resigned {
    Signed(SignatureFormat),
    WouldSign(SignatureFormat),
    AlreadySigned,
    Failed(String),
}

pub fn resign(args: &ResignArgs) -> ExitCode {
    let outcome = runtime().and_then(|rt| rt.block_on(run(args)));
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("countersign rotation resign {}: {e:#}", args.name);
            ExitCode::FAILURE
        }
    }
}

/// `Ok(false)` when some digest could not be re-signed (each is named with its reason).
async fn run(args: &ResignArgs) -> anyhow::Result<bool> {
    let client = super::client().await?;
    let rotation: KeyRotation = Api::all(client.clone())
        .get(&args.name)
        .await
        .with_context(|| format!("KeyRotation {}", args.name))?;
    let root_name = &rotation.spec.trust_root_ref;
    let root: TrustRoot = Api::all(client.clone()).get(root_name).await.with_context(|| {
        format!(
            "TrustRoot {root_name} (spec.trustRootRef of KeyRotation {})",
            args.name
        )
    })?;
    let spec = root
        .validate()
        .map_err(|e| anyhow::anyhow!("TrustRoot {root_name} is invalid: {}", join(&e)))?;
    let (from, to) = rotation_keys(&client, &root, &rotation).await?;
    let signing = super::super::keys::load_signing_key(&args.key)?;
    if signing.public_key().fingerprint() != to.key.fingerprint() {
        bail!(
            "{} is not the private key of {} (toKey of {}): its public key's fingerprint is {}, {}'s is {}",
            args.key.display(),
            to.name,
            args.name,
            signing.public_key().fingerprint(),
            to.name,
            to.key.fingerprint()
        );
    }
    let digests = running_digests(&client, &spec).await?;
    let registry = args.registry.client()?;
    let signature_repository = spec
        .signature_repository
        .as_deref()
        .map(|r| ImageRef::parse(r).map(|r| r.repository_only()))
        .transpose()
        .context("spec.signatureRepository")?;
    let keys = KeySet::new(vec![from.clone(), to.clone()], 1);
    let bar = progress(digests.len(), args.dry_run);
    let started = Instant::now();
    let work = Worker {
        registry: &registry,
        keys: &keys,
        from: &from.name,
        to: &to.name,
        signing: &signing,
        signature_repository: signature_repository.as_ref(),
        dry_run: args.dry_run,
    };
    let results: Vec<(ImageRef, Resigned)> = stream::iter(digests)
        .map(|image| {
            let (work, bar) = (&work, &bar);
            async move {
                let result = work.one(&image).await;
                bar.inc(1);
                (image, result)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    bar.finish_and_clear();
    Ok(summary(&results, started.elapsed(), &to.name))
}

/// The rotation's fromKey and toKey as the TrustRoot declares them.
async fn rotation_keys(
    client: &Client,
    root: &TrustRoot,
    rotation: &KeyRotation,
) -> anyhow::Result<(NamedKey, NamedKey)> {
    let loaded = load_keys(
        &root.spec.keys,
        &ObjectCache::new(client.clone(), Duration::from_secs(60)),
    )
    .await;
    let find = |name: &str, field: &str| -> anyhow::Result<NamedKey> {
        let (i, _) = root
            .spec
            .keys
            .iter()
            .enumerate()
            .find(|(_, k)| k.name == name)
            .with_context(|| {
                format!(
                    "spec.{field}: TrustRoot {} declares no key {name:?}",
                    root.name_any()
                )
            })?;
        let key: &PublicKey = loaded[i]
            .as_ref()
            .map_err(|e| anyhow::anyhow!("TrustRoot {}: {e}", root.name_any()))?;
        Ok(NamedKey {
            name: name.to_string(),
            key: key.clone(),
        })
    };
    Ok((
        find(&rotation.spec.from_key, "fromKey")?,
        find(&rotation.spec.to_key, "toKey")?,
    ))
}

/// Every running image the TrustRoot governs, each once: `repository@digest` when the kubelet
/// reported the digest it pulled, else the reference the pod spec names (resolved, as the
/// operator does, when signing).
async fn running_digests(client: &Client, spec: &ValidatedSpec) -> anyhow::Result<Vec<ImageRef>> {
    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing pods")?;
    let namespaces: BTreeMap<String, BTreeMap<String, String>> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing namespaces")?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.metadata.labels.unwrap_or_default()))
        .collect();
    let mut out: BTreeSet<String> = BTreeSet::new();
    for pod in &pods.items {
        let labels = namespaces.get(&pod.namespace().unwrap_or_default());
        if !labels.is_some_and(|l| spec.selects_namespace(l)) {
            continue;
        }
        for image in pods::reduce(pod)
            .map(|p| p.shape.images.clone())
            .unwrap_or_default()
        {
            let Ok(reference) = ImageRef::parse(&image.image) else {
                continue;
            };
            if !spec.governs(&image.image) {
                continue;
            }
            out.insert(match image.digest {
                Some(digest) => format!("{}@{digest}", reference.repository_name()),
                None => reference.to_string(),
            });
        }
    }
    out.iter()
        .map(|image| ImageRef::parse(image).context("a running image"))
        .collect()
}

struct Worker<'a> {
    registry: &'a RegistryClient,
    keys: &'a KeySet,
    from: &'a str,
    to: &'a str,
    signing: &'a SigningKey,
    signature_repository: Option<&'a ImageRef>,
    dry_run: bool,
}

impl Worker<'_> {
    async fn one(&self, image: &ImageRef) -> Resigned {
        let digest = match image.digest() {
            Some(d) => d,
            None => match self.registry.resolve(image).await {
                Ok(d) => d,
                Err(e) => return Resigned::Failed(format!("its tag could not be resolved: {e}")),
            },
        };
        let image = &image.at_digest(&digest);
        let repo = self.signature_repository.unwrap_or(image);
        let fetched = fetch_signatures(self.registry, repo, &digest).await;
        let checks = check_all(&digest, &fetched, self.keys);
        if checks.iter().any(|c| c.key.as_deref() == Some(self.to)) {
            return Resigned::AlreadySigned;
        }
        // The format of the old key's signature; a bundle when it left both.
        let Some(format) = checks
            .iter()
            .filter(|c| c.key.as_deref() == Some(self.from))
            .map(|c| c.format)
            .max_by_key(|f| *f == SignatureFormat::Bundle)
        else {
            return Resigned::Failed(match fetched.error() {
                Some(e) => format!("its signatures could not be read: {e}"),
                None => format!("not signed by {} (fromKey): refusing to vouch for it", self.from),
            });
        };
        if self.dry_run {
            return Resigned::WouldSign(format);
        }
        let request = SignRequest {
            image,
            key: self.signing,
            annotations: BTreeMap::new(),
            signature_repository: self.signature_repository.cloned(),
        };
        let signed = match format {
            SignatureFormat::Bundle => sign_bundle(self.registry, &request).await,
            SignatureFormat::Legacy => sign_legacy(self.registry, &request).await,
        };
        match signed {
            Ok(_) => Resigned::Signed(format),
            Err(e) => Resigned::Failed(format!("signing failed: {e}")),
        }
    }
}

fn progress(total: usize, dry_run: bool) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
    let verb = if dry_run { "checking" } else { "re-signing" };
    let template = format!("{verb} {{bar:40}} {{pos}}/{{len}} digests ({{per_sec}}, {{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("#>."));
    }
    bar
}

/// Prints one line per digest that needs attention and a summary; true when nothing failed.
fn summary(results: &[(ImageRef, Resigned)], elapsed: Duration, to: &str) -> bool {
    let mut sorted: Vec<&(ImageRef, Resigned)> = results.iter().collect();
    sorted.sort_by_key(|(image, _)| image.to_string());
    let (mut signed, mut would, mut already, mut failed) = (0, 0, 0, 0);
    for (image, result) in sorted {
        match result {
            Resigned::Signed(format) => {
                signed += 1;
                println!("signed        {image} ({})", format_name(*format));
            }
            Resigned::WouldSign(format) => {
                would += 1;
                println!("would sign    {image} ({})", format_name(*format));
            }
            Resigned::AlreadySigned => already += 1,
            Resigned::Failed(reason) => {
                failed += 1;
                println!("FAILED        {image}: {reason}");
            }
        }
    }
    let rate = f64::from(signed) / elapsed.as_secs_f64().max(0.001);
    println!(
        "{} digest(s): {signed} re-signed with {to} ({rate:.1}/s), {would} to re-sign (dry run), {already} already signed by {to}, {failed} failed, in {:.1}s",
        results.len(),
        elapsed.as_secs_f64()
    );
    failed == 0
}

fn format_name(format: SignatureFormat) -> &'static str {
    match format {
        SignatureFormat::Bundle => "bundle, as cosign v3",
        SignatureFormat::Legacy => "legacy .sig, as cosign v2",
    }
}

fn join(errors: &[crate::crd::FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
