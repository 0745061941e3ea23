//! The operator against a real control plane, a real registry and attestations made by the real
//! cosign: under a TrustRoot that requires SLSA provenance v1 passing a CEL policy, a signed and
//! attested workload is Verified; a signed one without the attestation is Failed until it is
//! attested, then Verified; one whose provenance fails the policy is Failed naming the predicate
//! type and the expression. A TrustRoot with an invalid CEL policy is not Ready, naming the field.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use anyhow::ensure;
use common::Keys;
use countersign_tests::{
    cosign::{CosignVersion, slsa_provenance_v1},
    images::push_image,
    registry::{Registry, RegistryKind},
    scratch_dir,
};
use operator_common::*;
use serde_json::json;

const NS: &str = "attested";
const WAIT: Duration = Duration::from_secs(60);
const SLSA1: &str = "https://slsa.dev/provenance/v1";
const POLICY: &str = "predicate.buildDefinition.externalParameters.ref == 'refs/heads/main'";

/// `cosign attest` v3 (bundle referrer) or v2 (`.att`) of a SLSA provenance v1, offline.
fn attest(keys: &Keys, version: CosignVersion, predicate: &std::path::Path, image: &str) {
    keys.attest(version, predicate, "slsaprovenance1", image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workload_is_verified_only_with_its_attestation_passing_the_policy() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let keys = blocking(|| Keys::generate_named("ci")).await;
    let dir = scratch_dir("provenance");
    let main = dir.path().join("main.json");
    let release = dir.path().join("release.json");
    std::fs::write(&main, slsa_provenance_v1("refs/heads/main")).expect("write");
    std::fs::write(&release, slsa_provenance_v1("refs/heads/release")).expect("write");

    let push = |name: &str| {
        let repo = format!("{host}/prov/{name}");
        let digest = push_image(&format!("{repo}:v1"), name);
        let run = keys
            .cosign3
            .sign(&keys.private, &format!("{repo}@{digest}"), false);
        assert!(run.success, "cosign sign: {}", run.stderr);
        (repo, digest)
    };
    let (attested_repo, attested) = push("attested");
    let (late_repo, late) = push("late");
    let (policy_repo, policy) = push("policy");
    attest(
        &keys,
        CosignVersion::V3,
        &main,
        &format!("{attested_repo}@{attested}"),
    );
    attest(
        &keys,
        CosignVersion::V2,
        &release,
        &format!("{policy_repo}@{policy}"),
    );

    trust_root(
        &client,
        "provenance",
        json!({
            "images": [format!("{host}/prov/**")],
            "keys": [key("ci", &keys.public)],
            "reverifyInterval": "10s",
            "attestations": [{"predicateType": "slsaprovenance1", "policy": POLICY}],
        }),
    )
    .await
    .expect("TrustRoot provenance");
    trust_root(
        &client,
        "bad-cel",
        json!({
            "images": ["nowhere.example/**"],
            "keys": [key("ci", &keys.public)],
            "attestations": [{"predicateType": SLSA1, "policy": "predicate.ref =="}],
        }),
    )
    .await
    .expect("the apiserver cannot parse CEL policies: countersign says so in status");
    namespace(&client, NS, json!({})).await;
    let operator = Operator::start(&cluster, "attestations");
    for (name, repo, digest) in [
        ("attested", &attested_repo, &attested),
        ("late", &late_repo, &late),
        ("policy", &policy_repo, &policy),
    ] {
        deployment(&client, NS, name, &format!("{repo}:v1"), Some(digest)).await;
    }

    let a = wait_verdict(&client, DEPLOYMENT, NS, "attested", "Verified", WAIT).await;
    assert_eq!(a["verifiedBy"], "provenance/ci");
    let a = wait_verdict(&client, DEPLOYMENT, NS, "late", "Failed", WAIT).await;
    assert_eq!(a["causes"], "attestation_missing", "{a:?}");
    assert!(
        a["reason"].contains(&format!("attestation {SLSA1} missing")),
        "{a:?}"
    );
    let a = wait_verdict(&client, DEPLOYMENT, NS, "policy", "Failed", WAIT).await;
    assert_eq!(a["causes"], "attestation_policy_failed", "{a:?}");
    // The reason names the expression that failed.
    let reason = &a["reason"];
    assert!(
        reason.contains(&format!("attestation {SLSA1} fails policy")) && reason.contains(POLICY),
        "{a:?}"
    );
    let e = wait_event(&client, NS, "Deployment", "late", "VerificationFailed", WAIT).await;
    assert!(e.note.contains(SLSA1), "{e:?}");

    // The missing attestation arrives: the next re-check (reverifyInterval 10s) verifies it.
    attest(&keys, CosignVersion::V3, &main, &format!("{late_repo}@{late}"));
    wait_verdict(&client, DEPLOYMENT, NS, "late", "Verified", WAIT).await;
    wait_event(&client, NS, "Deployment", "late", "SignatureVerified", WAIT).await;

    let bad = eventually("TrustRoot bad-cel not Ready", WAIT, || async {
        let s = status(&client, "bad-cel").await?;
        let ready = condition(&s, "Ready").ok_or_else(|| anyhow::anyhow!("no Ready"))?;
        ensure!(ready.status == "False", "{ready:?}");
        Ok(ready.clone())
    })
    .await;
    assert_eq!(bad.reason, "InvalidSpec");
    assert!(
        bad.message
            .contains("spec.attestations[0].policy: invalid CEL expression"),
        "{bad:?}"
    );
    operator.stop().await;
}
