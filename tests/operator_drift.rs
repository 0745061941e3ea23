//! Drift, against a real control plane, a real registry and the real cosign: a key removed from
//! the TrustRoot is reflected within seconds (no registry round trip needed); a signature
//! deleted from the registry, and a tag moved away from the running digest, within one
//! re-verification interval. Each is announced once, with its cause.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::{Duration, Instant};

use common::Keys;
use countersign_tests::{
    images::{crane, push_image},
    registry::{Registry, RegistryKind},
};
use operator_common::*;
use serde_json::json;

const NS: &str = "drift";
const WAIT: Duration = Duration::from_secs(60);
/// For the waits that span re-verification sweeps (`reverifyInterval: 10s`, the smallest the
/// CRD allows): several of them, and generous, as a busy machine is slow.
const SWEEPS: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_removed_signature_deleted_and_tag_moved_are_drift() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let keys = blocking(KeyPairs::generate).await;
    let digests = Digests::push_and_sign(&host, &keys);
    create_trust_root(&client, &host, &keys).await;
    namespace(&client, NS, json!({})).await;
    let operator = Operator::start(&cluster, "drift-test");
    create_workloads(&client, &host, &digests).await;
    verifies_every_workload(&client).await;

    a_removed_key_is_drift_without_a_registry_round_trip(&client, &host, &keys.a).await;
    let new_digest = delete_a_signature_and_move_a_tag(&client, &host, &digests.gone).await;
    a_deleted_signature_is_drift(&client).await;
    a_moved_tag_is_drift_while_the_running_digest_verifies(&client, &digests.moved, &new_digest).await;
    a_later_sweep_announces_nothing_twice(&client).await;
    counts_the_drift_in_trust_root_status(&client).await;
    operator.stop().await;
}

/// `a` signs `gone` and `moved`, `b` signs `by-b`; the TrustRoot holds both until b is removed.
struct KeyPairs {
    a: Keys,
    b: Keys,
}

impl KeyPairs {
    fn generate() -> Self {
        KeyPairs {
            a: Keys::generate_named("a"),
            b: Keys::generate_named("b"),
        }
    }
}

/// `<host>/drift/<name>`: the repository of workload `name`.
fn repo(host: &str, name: &str) -> String {
    format!("{host}/drift/{name}")
}

/// The TrustRoot's spec: the `drift/` images, `keys`, re-verified every 10 s.
fn root(host: &str, keys: serde_json::Value) -> serde_json::Value {
    json!({"images": [format!("{host}/drift/**")], "keys": keys, "reverifyInterval": "10s"})
}

/// The digest each workload runs, as first pushed to `<repo>:v1` and signed by the real cosign.
struct Digests {
    by_b: String,
    gone: String,
    moved: String,
}

impl Digests {
    fn push_and_sign(host: &str, keys: &KeyPairs) -> Self {
        let push = |name: &str, content: &str| push_image(&format!("{}:v1", repo(host, name)), content);
        let digests = Digests {
            by_b: push("by-b", "signed by b"),
            gone: push("gone", "signature to be deleted"),
            moved: push("moved", "the tag will move"),
        };
        let sign = |keys: &Keys, name: &str, digest: &str, legacy: bool| {
            let image = format!("{}@{digest}", repo(host, name));
            let run = keys.cosign3.sign(&keys.private, &image, legacy);
            assert!(run.success, "cosign sign {image}: {}", run.stderr);
        };
        sign(&keys.b, "by-b", &digests.by_b, false);
        // cosign v2's format: a `sha256-<hex>.sig` tag that can be deleted.
        sign(&keys.a, "gone", &digests.gone, true);
        sign(&keys.a, "moved", &digests.moved, false);
        digests
    }
}

/// Trusting both keys.
async fn create_trust_root(client: &kube::Client, host: &str, keys: &KeyPairs) {
    trust_root(
        client,
        "drift",
        root(host, json!([key("a", &keys.a.public), key("b", &keys.b.public)])),
    )
    .await
    .expect("TrustRoot drift");
}

/// A Deployment for each image, named for its repository, running its tag at the digest the
/// kubelet reported.
async fn create_workloads(client: &kube::Client, host: &str, digests: &Digests) {
    for (name, digest) in [
        ("by-b", &digests.by_b),
        ("gone", &digests.gone),
        ("moved", &digests.moved),
    ] {
        deployment(
            client,
            NS,
            name,
            &format!("{}:v1", repo(host, name)),
            Some(digest),
        )
        .await;
    }
}

async fn verifies_every_workload(client: &kube::Client) {
    for name in ["by-b", "gone", "moved"] {
        wait_verdict(client, DEPLOYMENT, NS, name, "Verified", WAIT).await;
    }
}

/// Key b removed from the TrustRoot: drift, without a registry round trip. How soon is a
/// figure (printed here, measured by e2e/bench-operator.sh), not a bound a busy machine
/// could miss.
async fn a_removed_key_is_drift_without_a_registry_round_trip(client: &kube::Client, host: &str, a: &Keys) {
    let removed = Instant::now();
    trust_root(client, "drift", root(host, json!([key("a", &a.public)])))
        .await
        .expect("TrustRoot drift without key b");
    let drift = wait_event(client, NS, "Deployment", "by-b", "SignatureDrift", WAIT).await;
    let took = removed.elapsed();
    eprintln!("key removed → SignatureDrift in {:.2}s", took.as_secs_f64());
    assert_eq!(drift.type_, "Warning");
    assert!(drift.note.contains("key drift/b removed"), "{drift:?}");
    let by_b = wait_verdict(client, DEPLOYMENT, NS, "by-b", "Failed", WAIT).await;
    assert!(!by_b.contains_key("verifiedBy"), "{by_b:?}");
}

/// The .sig of `gone` deleted and the tag of `moved` pushed over, together; both are seen
/// within one re-verification interval, i.e. by the first sweep that starts after the change,
/// so this returns (the digest the tag moved to) when two sweeps have finished.
async fn delete_a_signature_and_move_a_tag(client: &kube::Client, host: &str, gone: &str) -> String {
    let swept = last_sweep(client, "drift").await;
    let changed = Instant::now();
    let sig_tag = format!(
        "{}:sha256-{}.sig",
        repo(host, "gone"),
        gone.trim_start_matches("sha256:")
    );
    let moved_repo = repo(host, "moved");
    let new_digest = blocking(move || {
        crane(&["delete", &sig_tag]);
        push_image(&format!("{moved_repo}:v1"), "the tag moved here")
    })
    .await;
    sweeps_after(client, "drift", swept, 2, SWEEPS).await;
    eprintln!(
        "signature deleted, tag moved → two sweeps later after {:.2}s",
        changed.elapsed().as_secs_f64()
    );
    new_digest
}

async fn a_deleted_signature_is_drift(client: &kube::Client) {
    let removed_sig = wait_event(client, NS, "Deployment", "gone", "SignatureDrift", AT_ONCE).await;
    assert!(removed_sig.note.contains("signature removed"), "{removed_sig:?}");
    wait_verdict(client, DEPLOYMENT, NS, "gone", "Unsigned", WAIT).await;
}

/// The Event names both digests; the verdict, of the digest still running, stands, with the
/// digest the tag moved to recorded as drift.
async fn a_moved_tag_is_drift_while_the_running_digest_verifies(
    client: &kube::Client,
    moved: &str,
    new_digest: &str,
) {
    let tag = wait_event(client, NS, "Deployment", "moved", "DigestDrift", AT_ONCE).await;
    assert_eq!(tag.type_, "Warning");
    assert!(
        tag.note.contains(new_digest) && tag.note.contains(moved),
        "{tag:?}"
    );
    let recorded_moved = recorded(client, "Deployment", NS, "moved")
        .await
        .expect("the recorded verdict");
    assert_eq!(
        recorded_moved["verdict"], "Verified",
        "the running digest still verifies"
    );
    assert!(
        recorded_moved["digestDrift"].contains(new_digest),
        "{recorded_moved:?}"
    );
}

/// One more sweep later, nothing was announced twice, and nothing else drifted.
async fn a_later_sweep_announces_nothing_twice(client: &kube::Client) {
    let swept = last_sweep(client, "drift").await;
    sweeps_after(client, "drift", swept, 1, SWEEPS).await;
    for (name, reasons) in [
        ("by-b", vec![("SignatureVerified", 1), ("SignatureDrift", 1)]),
        ("gone", vec![("SignatureVerified", 1), ("SignatureDrift", 1)]),
        ("moved", vec![("SignatureVerified", 1), ("DigestDrift", 1)]),
    ] {
        let seen = by_reason(&events(client, NS, "Deployment", name).await.expect("events"));
        let expected = reasons.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
        assert_eq!(seen, expected, "events of {name}");
    }
}

/// One workload of each verdict, only key a accepted, and the spec changed once (key b removed).
async fn counts_the_drift_in_trust_root_status(client: &kube::Client) {
    let s = status(client, "drift").await.expect("status");
    let w = s.workloads.unwrap_or_default();
    assert_eq!((w.total, w.verified, w.failed, w.unsigned), (3, 1, 1, 1), "{w:?}");
    assert_eq!(s.accepted_keys.as_deref(), Some("a"));
    assert_eq!(s.observed_generation, Some(2));
}
