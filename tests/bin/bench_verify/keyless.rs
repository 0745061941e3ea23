//! `bench-verify --keyless`: images signed keylessly by real cosign against the local Sigstore
//! stack (`tests/harness/sigstore.rs`), verified offline from its trusted root.

use std::{sync::Arc, time::Instant};

use anyhow::{Context, ensure};
use countersign::{
    reference::{Digest, ImageRef},
    sigstore::{Identity, Pattern, TlogPolicy, TrustedRoot},
    verify::{KeySet, NamedIdentity, Policy},
};
use countersign_tests::{
    bench::progress,
    cluster::LocalCluster,
    cosign::{Cosign, CosignVersion},
    images::push_image,
    registry::Registry,
    scratch_dir,
    sigstore::SigstoreStack,
};

use crate::{Kind, Prepared, Target, args, ms};

/// The ServiceAccount whose token signs: identity
/// `https://kubernetes.io/namespaces/default/serviceaccounts/bench`.
const NAMESPACE: &str = "default";
const ACCOUNT: &str = "bench";

/// Starts a control plane (the OIDC issuer) and the Sigstore stack, pushes `n` images and signs
/// even ones with cosign v3 (bundle referrer, logged in Rekor v2, TSA timestamp) and odd ones with
/// cosign v2 (`.sig`, TSA timestamp, not logged: Rekor v2 does not speak v2's protocol). Then
/// stops both: verification is offline, and their idle work (checkpoints every 200 ms, the
/// control plane's loops) would only add noise to the timings.
pub async fn prepare(registry: &Registry, n: usize) -> anyhow::Result<Prepared> {
    progress("starting the control plane (OIDC issuer) and the Sigstore stack");
    let cluster = LocalCluster::start().await?;
    let stack = SigstoreStack::start(&cluster).await?;
    let token = SigstoreStack::token(&cluster, NAMESPACE, ACCOUNT).await?;
    let (cosign3, cosign2) = (Cosign::new(CosignVersion::V3), Cosign::new(CosignVersion::V2));
    progress(&format!("signing {n} images keylessly with cosign v3 and v2"));
    let mut images = Vec::new();
    for i in 0..n {
        let repo = registry.repo("keyless");
        let digest = Digest::parse(&push_image(
            &format!("{repo}:v{i}"),
            &format!("keyless bench image {i}"),
        ))?;
        let image = ImageRef::parse(&repo)?.at_digest(&digest);
        let kind = Kind::of_index(i);
        let run = if kind == Kind::Bundle {
            stack.sign_v3(&cosign3, &token, &image.to_string())
        } else {
            stack.sign_v2(&cosign2, &token, &image.to_string(), true)
        };
        ensure!(run.success, "signing {image}: {}", run.stderr);
        images.push((image, kind));
    }
    // The trusted root outlives the stack (its folder goes with it).
    let dir = scratch_dir("bench-keyless");
    let root_path = dir.path().join("trusted_root.json");
    std::fs::copy(stack.trusted_root(), &root_path)?;
    let issuer = stack.issuer.clone();
    drop(stack);
    drop(cluster);

    let identity = SigstoreStack::identity(NAMESPACE, ACCOUNT);
    let root_file = root_path.to_str().context("utf-8 path")?;
    let common = args(&[
        "--certificate-identity",
        &identity,
        "--certificate-oidc-issuer",
        &issuer,
        "--trusted-root",
        root_file,
    ]);
    let targets = images
        .into_iter()
        .map(|(image, kind)| {
            // The `.sig` has no log entry: both verifiers take the TSA's timestamp as the trusted
            // time instead (the bundle's entry is verified all the same).
            let (ours, theirs): (&[&str], &[&str]) = match kind {
                Kind::Bundle => (&[], &[]),
                Kind::Legacy => (&["--tlog", "optional"], &["--insecure-ignore-tlog=true"]),
            };
            Target {
                image,
                kind,
                ours: [common.clone(), args(ours)].concat(),
                theirs: [common.clone(), args(theirs)].concat(),
            }
        })
        .collect();
    let json = std::fs::read(&root_path)?;
    let root = Arc::new(TrustedRoot::from_json(root_file, &json)?);
    let notes = vec![root_parse_cost(&json)?];
    let keys = KeySet::new(Vec::new(), 1)
        .with_identities(
            vec![NamedIdentity {
                name: ACCOUNT.into(),
                identity: Identity {
                    subject: Pattern::Exact(identity.clone()),
                    issuer: Pattern::Exact(issuer),
                },
            }],
            root.clone(),
        )
        .with_tlog(TlogPolicy::Optional, root);
    Ok(Prepared {
        targets,
        policy: Policy {
            keys,
            signature_repository: None,
        },
        cosign_label: "cosign v3.1.2 verify --certificate-identity … --trusted-root …",
        notes,
        _keep: vec![Box::new(dir)],
    })
}

/// What parsing the trusted root costs: once per `countersign verify` process, once per
/// TrustRoot (and change of its root) in the operator, not per digest.
fn root_parse_cost(json: &[u8]) -> anyhow::Result<String> {
    const RUNS: u32 = 50;
    let started = Instant::now();
    for _ in 0..RUNS {
        TrustedRoot::from_json("bench", json)?;
    }
    let each = started.elapsed() / RUNS;
    Ok(format!(
        "parsing the trusted root ({} bytes; once per CLI process, not per digest): {:.3} ms",
        json.len(),
        ms(each)
    ))
}
