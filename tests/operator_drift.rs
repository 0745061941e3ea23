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
    let (a, b) = blocking(|| (Keys::generate_named("a"), Keys::generate_named("b"))).await;

    let push = |repo: &str, content: &str| push_image(&format!("{host}/drift/{repo}:v1"), content);
    let by_b = push("by-b", "signed by b");
    let gone = push("gone", "signature to be deleted");
    let moved = push("moved", "the tag will move");
    let sign = |keys: &Keys, repo: &str, digest: &str, legacy: bool| {
        let image = format!("{host}/drift/{repo}@{digest}");
        let run = keys.cosign3.sign(&keys.private, &image, legacy);
        assert!(run.success, "cosign sign {image}: {}", run.stderr);
    };
    sign(&b, "by-b", &by_b, false);
    // cosign v2's format: a `sha256-<hex>.sig` tag that can be deleted.
    sign(&a, "gone", &gone, true);
    sign(&a, "moved", &moved, false);

    let root = |keys: serde_json::Value| json!({"images": [format!("{host}/drift/**")], "keys": keys, "reverifyInterval": "10s"});
    trust_root(
        &client,
        "drift",
        root(json!([key("a", &a.public), key("b", &b.public)])),
    )
    .await
    .expect("TrustRoot drift");
    namespace(&client, NS, json!({})).await;
    let operator = Operator::start(&cluster, "drift-test");
    for (name, digest) in [("by-b", &by_b), ("gone", &gone), ("moved", &moved)] {
        deployment(
            &client,
            NS,
            name,
            &format!("{host}/drift/{name}:v1"),
            Some(digest),
        )
        .await;
    }
    for name in ["by-b", "gone", "moved"] {
        wait_verdict(&client, DEPLOYMENT, NS, name, "Verified", WAIT).await;
    }

    // 1. Key b removed from the TrustRoot: drift, without a registry round trip. How soon is a
    // figure (printed here, measured by e2e/bench-operator.sh), not a bound a busy machine
    // could miss.
    let removed = Instant::now();
    trust_root(&client, "drift", root(json!([key("a", &a.public)])))
        .await
        .expect("TrustRoot drift without key b");
    let drift = wait_event(&client, NS, "Deployment", "by-b", "SignatureDrift", WAIT).await;
    let took = removed.elapsed();
    eprintln!("key removed → SignatureDrift in {:.2}s", took.as_secs_f64());
    assert_eq!(drift.type_, "Warning");
    assert!(drift.note.contains("key drift/b removed"), "{drift:?}");
    let a_by_b = wait_verdict(&client, DEPLOYMENT, NS, "by-b", "Failed", WAIT).await;
    assert!(!a_by_b.contains_key("verifiedBy"), "{a_by_b:?}");

    // 2 and 3 together: the .sig of `gone` deleted, the tag of `moved` pushed over; both seen
    // within one re-verification interval, i.e. by the first sweep that starts after the change.
    let swept = last_sweep(&client, "drift").await;
    let changed = Instant::now();
    let repo = |name: &str| format!("{host}/drift/{name}");
    let sig_tag = format!(
        "{}:sha256-{}.sig",
        repo("gone"),
        gone.trim_start_matches("sha256:")
    );
    let moved_repo = repo("moved");
    let new_digest = blocking(move || {
        crane(&["delete", &sig_tag]);
        push_image(&format!("{moved_repo}:v1"), "the tag moved here")
    })
    .await;
    sweeps_after(&client, "drift", swept, 2, SWEEPS).await;
    eprintln!(
        "signature deleted, tag moved → two sweeps later after {:.2}s",
        changed.elapsed().as_secs_f64()
    );
    let removed_sig = wait_event(&client, NS, "Deployment", "gone", "SignatureDrift", AT_ONCE).await;
    assert!(removed_sig.note.contains("signature removed"), "{removed_sig:?}");
    wait_verdict(&client, DEPLOYMENT, NS, "gone", "Unsigned", WAIT).await;

    let tag = wait_event(&client, NS, "Deployment", "moved", "DigestDrift", AT_ONCE).await;
    assert_eq!(tag.type_, "Warning");
    assert!(
        tag.note.contains(&new_digest) && tag.note.contains(&moved),
        "{tag:?}"
    );
    let a_moved = recorded(&client, "Deployment", NS, "moved")
        .await
        .expect("annotations");
    assert_eq!(
        a_moved["verdict"], "Verified",
        "the running digest still verifies"
    );
    assert!(a_moved["digestDrift"].contains(&new_digest), "{a_moved:?}");

    // One more sweep later, nothing was announced twice, and nothing else drifted.
    let swept = last_sweep(&client, "drift").await;
    sweeps_after(&client, "drift", swept, 1, SWEEPS).await;
    for (name, reasons) in [
        ("by-b", vec![("SignatureVerified", 1), ("SignatureDrift", 1)]),
        ("gone", vec![("SignatureVerified", 1), ("SignatureDrift", 1)]),
        ("moved", vec![("SignatureVerified", 1), ("DigestDrift", 1)]),
    ] {
        let seen = by_reason(&events(&client, NS, "Deployment", name).await.expect("events"));
        let expected = reasons.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
        assert_eq!(seen, expected, "events of {name}");
    }
    let s = status(&client, "drift").await.expect("status");
    let w = s.workloads.unwrap_or_default();
    assert_eq!((w.total, w.verified, w.failed, w.unsigned), (3, 1, 1, 1), "{w:?}");
    assert_eq!(s.accepted_keys.as_deref(), Some("a"));
    assert_eq!(s.observed_generation, Some(2));
    operator.stop().await;
}
