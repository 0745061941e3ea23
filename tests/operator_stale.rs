//! Registry credentials and registry outages, against a real registry with authentication
//! (distribution with htpasswd): a pod's imagePullSecrets open it for that pod's images, the
//! controller-wide secret for workloads without one (until it is given, their verdict is
//! Unknown, stale `unauthorized`). Stopping the registry marks verdicts stale, keeps them, and
//! announces no drift; starting it again clears the mark without a single new verdict Event.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use anyhow::ensure;
use common::Keys;
use countersign_tests::{
    images::push_image_as,
    registry::{self, Registry, RegistryKind},
    scratch_dir,
};
use operator_common::*;
use serde_json::json;

const NS: &str = "stale";
const WAIT: Duration = Duration::from_secs(60);
/// For the waits that span re-verification sweeps (`reverifyInterval: 10s`): several of them,
/// and generous, as a busy machine is slow.
const SWEEPS: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_registry_keeps_verdicts_stale_without_drift_and_recovers_silently() {
    let cluster = cluster().await;
    let client = cluster.client();
    let mut registry = Registry::start(RegistryKind::Htpasswd);
    let host = registry.host.clone();
    let credentials = registry.docker_config(registry::PASSWORD);
    let docker = scratch_dir("docker-login");
    std::fs::write(docker.path().join("config.json"), &credentials).expect("docker config");
    let keys = blocking(|| Keys::generate_named("private")).await;

    let mut digests = Vec::new();
    for name in ["pulled", "global"] {
        let image = format!("{host}/private/{name}:v1");
        let digest = push_image_as(Some(docker.path()), &image, name);
        keys.sign_as(docker.path(), &format!("{host}/private/{name}@{digest}"));
        digests.push(digest);
    }

    trust_root(
        &client,
        "private",
        json!({"images": [format!("{host}/private/**")], "keys": [key("ci", &keys.public)], "reverifyInterval": "10s"}),
    )
    .await
    .expect("TrustRoot private");
    namespace(&client, NS, json!({})).await;
    pull_secret(&client, NS, "regcred", &credentials).await;
    pull_secret(&client, LEASE_NAMESPACE, "global-cred", &credentials).await;
    // First without the controller-wide secret: only the pod's own pull secret opens the door.
    let operator = Operator::start(&cluster, "pod-secrets-only");
    pod(
        &client,
        NS,
        "pulled",
        &format!("{host}/private/pulled@{}", digests[0]),
        Some("regcred"),
    )
    .await;
    deployment(
        &client,
        NS,
        "global",
        &format!("{host}/private/global:v1"),
        Some(&digests[1]),
    )
    .await;
    wait_verdict(&client, POD, NS, "pulled", "Verified", WAIT).await;
    let a = wait_verdict(&client, DEPLOYMENT, NS, "global", "Unknown", WAIT).await;
    assert_eq!(a["stale"], "unauthorized", "{a:?}");
    operator.stop().await;
    // Then with it: the Deployment without pull secrets is read with the controller-wide one.
    let operator = Operator::start_with(&cluster, "with-global", Some((LEASE_NAMESPACE, "global-cred")));
    let a = wait_verdict(&client, DEPLOYMENT, NS, "global", "Verified", WAIT).await;
    assert!(!a.contains_key("stale"), "{a:?}");

    // Stopped: the first sweep that starts afterwards marks the verdicts stale.
    let swept = last_sweep(&client, "private").await;
    registry.stop();
    sweeps_after(&client, "private", swept, 2, SWEEPS).await;
    for (kind, name) in [(POD, "pulled"), (DEPLOYMENT, "global")] {
        let a = recorded(&client, kind.1, NS, name)
            .await
            .expect("the recorded verdict");
        assert_eq!(a["verdict"], "Verified", "the verdict is kept: {a:?}");
        assert_eq!(
            a.get("stale").map(String::as_str),
            Some("unreachable"),
            "{name} marked stale: {a:?}"
        );
    }
    let e = wait_event(&client, NS, "Pod", "pulled", "VerificationStale", WAIT).await;
    assert_eq!(e.type_, "Warning");
    eventually("the stale count", WAIT, || async {
        let w = status(&client, "private").await?.workloads.unwrap_or_default();
        ensure!((w.total, w.stale, w.verified) == (2, 2, 0), "{w:?}");
        Ok(())
    })
    .await;

    // Started again: the first sweep that starts afterwards clears the mark.
    let swept = last_sweep(&client, "private").await;
    registry.restart();
    sweeps_after(&client, "private", swept, 2, SWEEPS).await;
    for (kind, name) in [(POD, "pulled"), (DEPLOYMENT, "global")] {
        let a = recorded(&client, kind.1, NS, name)
            .await
            .expect("the recorded verdict");
        assert!(!a.contains_key("stale"), "{name} current again: {a:?}");
        assert_eq!(a["verdict"], "Verified", "{a:?}");
    }
    let w = status(&client, "private")
        .await
        .expect("status")
        .workloads
        .unwrap_or_default();
    assert_eq!((w.total, w.stale, w.verified), (2, 0, 2), "{w:?}");
    // The Deployment was stale once already (unauthorized, before the controller-wide secret).
    for (kind, name, stale) in [("Pod", "pulled", 1), ("Deployment", "global", 2)] {
        let seen = by_reason(&events(&client, NS, kind, name).await.expect("events"));
        let expected = [("SignatureVerified", 1), ("VerificationStale", stale)]
            .into_iter()
            .map(|(r, n)| (r.to_string(), n))
            .collect();
        assert_eq!(seen, expected, "events of {kind} {name}: no drift, no repeat");
    }
    operator.stop().await;
}
