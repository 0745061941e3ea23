//! Keyless signatures end to end: real cosign v3 and v2 sign against a local Sigstore stack
//! (Fulcio with a file CA, TesseraCT for SCTs, the timestamp authority, Rekor v2, and the API
//! server as OIDC issuer), and countersign verifies them offline from the stack's trusted root,
//! in the CLI and in the operator on the same control plane. One stack for the whole file: it
//! takes a few seconds to start, each signature a fraction of one.

#[path = "keyless/attestations.rs"]
mod attestations;
mod common;
mod operator_common;

use std::time::Duration;

use anyhow::ensure;

use common::countersign;
use countersign::{
    formats::simple_signing::Evidence,
    reference::Digest,
    sigstore::TlogPolicy,
    verify::{
        AttestationState, Candidate, Fetched, Found, KeySet, NamedIdentity, Outcome, Requirement,
        check_attestations, evaluate,
    },
};
use countersign_tests::{
    bench::{scrape_metrics, value},
    cosign::{Cosign, CosignVersion, Run},
    http::http_get,
    images::{crane, push_image},
    registry::{Registry, RegistryKind},
    sigstore::{SigstoreStack, keyless_args},
};
use operator_common::*;
use serde_json::{Value, json};

const NS: &str = "ci";
const BUILDER: &str = "builder";

struct Signed {
    /// cosign v3: bundle referrer with a Rekor v2 entry and a TSA timestamp.
    v3: String,
    /// cosign v2: `.sig` with certificate, chain and TSA timestamp, not logged.
    v2: String,
    /// cosign v2 without a timestamp: nothing says when it was signed.
    v2_untimed: String,
    /// cosign v3 `sign` and `attest` (a SLSA provenance statement in a keyless DSSE bundle
    /// referrer), in a repository of its own: a TrustRoot requires the attestation there.
    attested: String,
    /// cosign v2 `sign` and `attest` (`.sig` and `.att`, certificate and TSA timestamp, not
    /// logged) in a repository of its own: see [`attestations::keyless_v2_attestation_verdicts`].
    attested_v2: String,
}

const SLSA1: &str = "slsaprovenance1";
/// What [`SLSA1`] stands for: the predicate type metrics and statements name.
const SLSA1_URI: &str = "https://slsa.dev/provenance/v1";
const POLICY_OK: &str = "predicate.buildDefinition.externalParameters.ref == 'refs/heads/main'";
const POLICY_FAILS: &str = "predicate.buildDefinition.externalParameters.ref == 'refs/heads/release'";
const PREDICATE: &str = r#"{"buildDefinition":{"buildType":"https://example.com/ci/v1","externalParameters":{"ref":"refs/heads/main"}},"runDetails":{"builder":{"id":"https://example.com/builder"}}}"#;

fn verify(stack: &SigstoreStack, image: &str, identity: &str, issuer: &str, extra: &[&str]) -> Run {
    keyless_command("verify", stack, image, identity, issuer, extra)
}

/// `countersign <command>` with the identity flags, the stack's trusted root and JSON output.
fn keyless_command(
    command: &str,
    stack: &SigstoreStack,
    image: &str,
    identity: &str,
    issuer: &str,
    extra: &[&str],
) -> Run {
    let root = stack.trusted_root().to_str().expect("utf-8 path");
    countersign(&keyless_args(command, identity, issuer, root, extra, image))
}

/// The verdict countersign printed, and each signature's rejection category (`None` for one
/// that verified).
fn verdict(run: &Run) -> (String, Vec<Option<String>>) {
    let v: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("JSON from countersign verify ({e}): {run:?}"));
    let categories = v["signatures"]
        .as_array()
        .map(|s| {
            s.iter()
                .map(|c| c["rejectedCategory"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    (v["verdict"].as_str().unwrap_or_default().to_string(), categories)
}

/// Invalid, its one signature rejected for `category` (`SigstoreError::category()`'s names).
fn assert_invalid(run: &Run, category: &str) {
    let (verdict, categories) = verdict(run);
    assert_eq!(
        (verdict.as_str(), categories),
        ("invalid", vec![Some(category.to_string())]),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_signatures_verify_in_the_cli_and_the_operator() {
    let cluster = cluster().await;
    let client = cluster.client();
    namespace(&client, NS, json!({})).await;
    let stack = SigstoreStack::start(&cluster).await.expect("the Sigstore stack");
    let token = SigstoreStack::token(&cluster, NS, BUILDER)
        .await
        .expect("an ID token");
    let registry = Registry::start(RegistryKind::Referrers);
    let repo = registry.repo("app");
    let sign = |tag: &str, how: &dyn Fn(&str) -> Run| {
        let digest = push_image(&format!("{repo}:{tag}"), tag);
        let image = format!("{repo}@{digest}");
        let run = how(&image);
        assert!(run.success, "signing {tag}: {}", run.stderr);
        image
    };
    let (cosign3, cosign2) = (Cosign::new(CosignVersion::V3), Cosign::new(CosignVersion::V2));
    let signed = Signed {
        v3: sign("v3", &|i| stack.sign_v3(&cosign3, &token, i)),
        v2: sign("v2", &|i| stack.sign_v2(&cosign2, &token, i, true)),
        v2_untimed: sign("v2-untimed", &|i| stack.sign_v2(&cosign2, &token, i, false)),
        attested: signed_and_attested(&stack, &cosign3, &token, &registry.repo("attested"), "v3"),
        attested_v2: signed_and_attested(&stack, &cosign2, &token, &registry.repo("attested-v2"), "v2"),
    };
    let id = SigstoreStack::identity(NS, BUILDER);

    cli_verdicts(&stack, &signed, &id);
    attestations::attestation_verdicts(&stack, &signed.attested, &id);
    attestations::keyless_v2_attestation_verdicts(&stack, &cosign2, &signed.attested_v2, &id);
    attestations::tampered_v2_attestation(&stack, &signed.attested_v2, &id);
    tampered_log_entry(&stack, &registry, &signed.v3, &id).await;
    operator_verdicts(&cluster, &stack, &signed, &id).await;
}

/// An image in `repo` (tagged `tag`) signed and attested keylessly with `cosign`, v3 or v2.
fn signed_and_attested(stack: &SigstoreStack, cosign: &Cosign, token: &str, repo: &str, tag: &str) -> String {
    let digest = push_image(&format!("{repo}:{tag}"), &format!("attested-{tag}"));
    let image = format!("{repo}@{digest}");
    let predicate = stack.dir().join("provenance.json");
    std::fs::write(&predicate, PREDICATE).expect("write the predicate");
    let (signed, attested) = match cosign.version {
        CosignVersion::V3 => (
            stack.sign_v3(cosign, token, &image),
            stack.attest_v3(cosign, token, &predicate, SLSA1, &image),
        ),
        CosignVersion::V2 => (
            stack.sign_v2(cosign, token, &image, true),
            stack.attest_v2(cosign, token, &predicate, SLSA1, &image),
        ),
    };
    assert!(signed.success, "signing {image}: {}", signed.stderr);
    assert!(attested.success, "attesting {image}: {}", attested.stderr);
    image
}

fn cli_verdicts(stack: &SigstoreStack, signed: &Signed, id: &str) {
    let issuer = stack.issuer.as_str();
    // cosign v3: Fulcio chain, SCT, Rekor v2 inclusion proof under a signed checkpoint, TSA time.
    let run = verify(stack, &signed.v3, id, issuer, &[]);
    assert_eq!(verdict(&run).0, "verified", "{run:?}");
    let run = verify(stack, &signed.v3, id, issuer, &["--tlog", "required"]);
    assert_eq!(verdict(&run).0, "verified", "{run:?}");
    let run = verify(
        stack,
        &signed.v3,
        "^https://kubernetes.io/namespaces/ci/",
        issuer,
        &[],
    );
    assert_invalid(&run, "identity_mismatch");
    let run = countersign(&[
        "verify",
        "--certificate-identity-regexp",
        "^https://kubernetes\\.io/namespaces/ci/serviceaccounts/",
        "--certificate-oidc-issuer",
        issuer,
        "--trusted-root",
        stack.trusted_root().to_str().expect("utf-8"),
        &signed.v3,
    ]);
    assert!(run.success, "identity regexp: {run:?}");
    // Wrong identity, wrong issuer: everything verifies but who signed.
    let run = verify(
        stack,
        &signed.v3,
        &SigstoreStack::identity(NS, "intruder"),
        issuer,
        &[],
    );
    assert_invalid(&run, "identity_mismatch");
    let run = verify(
        stack,
        &signed.v3,
        id,
        "https://token.actions.githubusercontent.com",
        &[],
    );
    assert_invalid(&run, "identity_mismatch");

    // cosign v2 `.sig`: the TSA's timestamp is the trusted time; no log entry, so only when the
    // log is optional.
    let run = verify(stack, &signed.v2, id, issuer, &["--tlog", "optional"]);
    assert_eq!(verdict(&run).0, "verified", "{run:?}");
    let run = verify(stack, &signed.v2, id, issuer, &[]);
    assert_invalid(&run, "no_tlog_entry");
    let run = verify(
        stack,
        &signed.v2,
        &SigstoreStack::identity(NS, "intruder"),
        issuer,
        &["--tlog", "optional"],
    );
    assert_invalid(&run, "identity_mismatch");
    // Neither a log entry nor a timestamp: the certificate (valid 10 minutes) cannot be checked
    // at any trusted time, as it could not once expired.
    let run = verify(stack, &signed.v2_untimed, id, issuer, &["--tlog", "optional"]);
    assert_invalid(&run, "no_trusted_time");
}

/// The stack's trusted root.
fn stack_root(stack: &SigstoreStack) -> std::sync::Arc<countersign::sigstore::TrustedRoot> {
    let json = std::fs::read(stack.trusted_root()).expect("trusted root");
    std::sync::Arc::new(
        countersign::sigstore::TrustedRoot::from_json("stack", &json).expect("a trusted root"),
    )
}

/// The engine's key set trusting only `id` from the stack's issuer.
fn keyless_keys(stack: &SigstoreStack, id: &str) -> KeySet {
    let identity = countersign::sigstore::Identity {
        subject: countersign::sigstore::Pattern::Exact(id.into()),
        issuer: countersign::sigstore::Pattern::Exact(stack.issuer.clone()),
    };
    KeySet::new(Vec::new(), 1).with_identities(
        vec![NamedIdentity {
            name: "builder".into(),
            identity,
        }],
        stack_root(stack),
    )
}

/// The v3 bundle with its inclusion proof tampered with, through the engine: "untrusted log".
async fn tampered_log_entry(stack: &SigstoreStack, registry: &Registry, image: &str, id: &str) {
    let (repo, digest) = image.split_once('@').expect("a digest reference");
    let path = repo.split_once('/').expect("host/repo").1;
    let addr = registry.host.parse().expect("host:port");
    let (_, index) = http_get(addr, &format!("/v2/{path}/referrers/{digest}"))
        .await
        .expect("referrers");
    let index: Value = serde_json::from_str(&index).expect("an index");
    let referrer = index["manifests"][0]["digest"]
        .as_str()
        .expect("a referrer")
        .to_string();
    let manifest: Value =
        serde_json::from_str(&crane(&["manifest", &format!("{repo}@{referrer}")])).expect("a manifest");
    let layer = manifest["layers"][0]["digest"].as_str().expect("a layer");
    let bundle = crane(&["blob", &format!("{repo}@{layer}")]);
    let mut bundle: Value = serde_json::from_str(&bundle).expect("a bundle");
    let proof = &mut bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"];
    assert!(proof.is_object(), "cosign v3 logged to Rekor v2: {bundle}");
    // Another leaf: the proof no longer leads to the root the checkpoint signs.
    proof["logIndex"] = json!("1");
    bundle["verificationMaterial"]["tlogEntries"][0]["logIndex"] = json!("1");
    let keys = keyless_keys(stack, id);
    let fetched = Fetched {
        legacy: Ok(Found::default()),
        bundles: Ok(Found {
            revision: referrer.clone(),
            candidates: vec![Candidate::Bundle {
                manifest: referrer,
                bundle: serde_json::to_vec(&bundle).expect("JSON").into(),
            }],
        }),
    };
    let digest = Digest::parse(digest).expect("a digest");
    let (outcome, checks) = evaluate(&digest, &fetched, &keys);
    assert!(
        matches!(outcome, Outcome::Invalid { .. }),
        "a tampered inclusion proof must not verify: {outcome:?}"
    );
    let categories: Vec<_> = checks.iter().map(|c| c.rejected_category).collect();
    assert_eq!(categories, [Some("untrusted_log")], "{checks:?}");
}

/// The operator verifies the v3 and v2 keyless images running on the control plane, from a
/// TrustRoot whose identity is certified under the stack's root (a ConfigMap).
async fn operator_verdicts(
    cluster: &countersign_tests::cluster::LocalCluster,
    stack: &SigstoreStack,
    signed: &Signed,
    id: &str,
) {
    let client = cluster.client();
    let root = std::fs::read_to_string(stack.trusted_root()).expect("trusted root");
    create(
        &client,
        "v1",
        "ConfigMap",
        Some(NS),
        json!({
            "metadata": {"name": "sigstore-root"}, "data": {"trusted_root.json": root}
        }),
    )
    .await;
    let registry_host = signed.v3.split('/').next().expect("host");
    let identity =
        |name: &str, subject: &str| json!({"name": name, "subject": subject, "issuer": stack.issuer});
    trust_root(
        &client,
        "keyless",
        json!({
            "images": [format!("{registry_host}/app")],
            "identities": [identity("builder", id)],
            "trustedRoot": {"configMapRef": {"name": "sigstore-root", "namespace": NS}},
            "tlog": "Optional",
            "threshold": 1,
        }),
    )
    .await
    .expect("TrustRoot keyless");
    // The keyless attestation, required (with a CEL policy) by the operator.
    trust_root(
        &client,
        "keyless-attested",
        json!({
            "images": [format!("{registry_host}/attested")],
            "identities": [identity("builder", id)],
            "trustedRoot": {"configMapRef": {"name": "sigstore-root", "namespace": NS}},
            "attestations": [{"predicateType": SLSA1, "policy": POLICY_OK}],
        }),
    )
    .await
    .expect("TrustRoot keyless-attested");
    // The keyless cosign v2 `.att`, timestamped and not logged: it counts only where the log is
    // optional, its TSA timestamp being the trusted time, as for its `.sig`.
    trust_root(
        &client,
        "keyless-attested-v2",
        json!({
            "images": [format!("{registry_host}/attested-v2")],
            "identities": [identity("builder", id)],
            "trustedRoot": {"configMapRef": {"name": "sigstore-root", "namespace": NS}},
            "tlog": "Optional",
            "attestations": [{"predicateType": SLSA1, "policy": POLICY_OK}],
        }),
    )
    .await
    .expect("TrustRoot keyless-attested-v2");
    let (operator, metrics) = Operator::start_with_metrics(cluster, "keyless").await;
    let within = Duration::from_secs(60);
    for (name, image) in [
        ("v3", &signed.v3),
        ("v2", &signed.v2),
        ("untimed", &signed.v2_untimed),
        ("attested", &signed.attested),
        ("attested-v2", &signed.attested_v2),
    ] {
        let digest = image.split_once('@').expect("digest").1;
        let tag = format!("{}:{name}", image.split_once('@').expect("digest").0);
        deployment(&client, NS, name, &tag, Some(digest)).await;
    }
    wait_verdict(&client, DEPLOYMENT, NS, "v3", "Verified", within).await;
    wait_verdict(&client, DEPLOYMENT, NS, "v2", "Verified", within).await;
    wait_verdict(&client, DEPLOYMENT, NS, "attested", "Verified", within).await;
    wait_verdict(&client, DEPLOYMENT, NS, "attested-v2", "Verified", within).await;
    let a = wait_verdict(&client, DEPLOYMENT, NS, "untimed", "Failed", within).await;
    assert_eq!(a["causes"], "no_trusted_time", "{a:?}");
    assert!(a["reason"].contains("no trusted time"), "{a:?}");
    // Transparency-log coverage (M7): v3 was logged in Rekor v2, v2 only timestamped (allowed by
    // `tlog: Optional`); `untimed` verifies not at all and is not counted.
    for (root, logged, unlogged) in [
        ("keyless", 1.0, 1.0),
        ("keyless-attested", 1.0, 0.0),
        ("keyless-attested-v2", 0.0, 1.0),
    ] {
        let series =
            |state: &str| format!("countersign_trust_root_tlog{{trust_root=\"{root}\",state=\"{state}\"}}");
        let scraped = scrape_metrics(&metrics).await.expect("metrics");
        let seen = (
            value(&scraped, &series("Logged")),
            value(&scraped, &series("Unlogged")),
        );
        assert_eq!(seen, (logged, unlogged), "M7 of TrustRoot {root}");
    }
    // Attestation coverage (M5): each attested image's required provenance verified. The gauges
    // are set once the pass is over, which may be after the verdicts are written.
    for root in ["keyless-attested", "keyless-attested-v2"] {
        let series = |state: &str| {
            format!(
                "countersign_trust_root_attestations{{trust_root=\"{root}\",predicate_type=\"{SLSA1_URI}\",state=\"{state}\"}}"
            )
        };
        eventually(&format!("M5 of TrustRoot {root}"), within, || async {
            let scraped = scrape_metrics(&metrics).await?;
            let seen = (
                value(&scraped, &series("Verified")),
                value(&scraped, &series("Missing")),
            );
            ensure!(seen == (1.0, 0.0), "Verified, Missing: {seen:?}");
            Ok(())
        })
        .await;
    }
    operator.stop().await;
}
