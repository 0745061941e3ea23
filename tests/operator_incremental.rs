//! Passes over what changed, on a real control plane: a workload created or deleted is assessed
//! without a pass over every workload (`countersign_pass_duration_seconds{scope}`) and without
//! the other workloads of its namespace (`countersign_pass_workloads_total{scope}`), and the
//! TrustRoot's counts still include the workloads those passes did not look at.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use common::Keys;
use countersign::crd::WorkloadCounts;
use countersign_tests::{
    bench::{scrape_metrics, value},
    images::push_image,
    registry::{Registry, RegistryKind},
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{Api, api::DeleteParams};
use operator_common::*;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// Passes of `scope` the operator finished so far, and the workloads they assessed.
async fn passes(metrics: &str, scope: &str) -> (f64, f64) {
    let scraped = scrape_metrics(metrics).await.expect("metrics");
    let series = |name: &str| value(&scraped, &format!("{name}{{scope=\"{scope}\"}}"));
    (
        series("countersign_pass_duration_seconds_count"),
        series("countersign_pass_workloads_total"),
    )
}

/// Waits until the TrustRoot counts (total, verified, unsigned).
async fn wait_counts(client: &kube::Client, expected: (i32, i32, i32)) -> WorkloadCounts {
    eventually(&format!("TrustRoot counts {expected:?}"), WAIT, || async {
        let w = status(client, "incremental").await?.workloads.unwrap_or_default();
        let seen = (w.total, w.verified, w.unsigned);
        anyhow::ensure!(seen == expected, "counts are {seen:?}");
        Ok(w)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_in_one_namespace_is_assessed_without_a_full_pass() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let keys = blocking(|| Keys::generate_named("a")).await;
    let repo = format!("{host}/incremental");
    let (signed, unsigned) = blocking({
        let repo = repo.clone();
        move || {
            let signed = push_image(&format!("{repo}/signed:v1"), "signed");
            let unsigned = push_image(&format!("{repo}/unsigned:v1"), "never signed");
            (signed, unsigned)
        }
    })
    .await;
    let image = format!("{repo}/signed@{signed}");
    let run = keys.cosign3.sign(&keys.private, &image, false);
    assert!(run.success, "cosign sign {image}: {}", run.stderr);

    // A long interval: no sweep comes between the changes below and their passes.
    let spec =
        json!({"images": [format!("{repo}/**")], "keys": [key("a", &keys.public)], "reverifyInterval": "1h"});
    trust_root(&client, "incremental", spec).await.expect("TrustRoot");
    for ns in ["inc-a", "inc-b"] {
        namespace(&client, ns, json!({})).await;
    }
    let (operator, metrics) = Operator::start_with_metrics(&cluster, "incremental-test").await;
    let signed_image = format!("{repo}/signed:v1");
    let unsigned_image = format!("{repo}/unsigned:v1");
    deployment(&client, "inc-a", "web", &signed_image, Some(&signed)).await;
    deployment(&client, "inc-b", "api", &signed_image, Some(&signed)).await;
    deployment(&client, "inc-b", "tool", &unsigned_image, Some(&unsigned)).await;
    wait_verdict(&client, DEPLOYMENT, "inc-a", "web", "Verified", WAIT).await;
    wait_verdict(&client, DEPLOYMENT, "inc-b", "api", "Verified", WAIT).await;
    wait_verdict(&client, DEPLOYMENT, "inc-b", "tool", "Unsigned", WAIT).await;
    wait_counts(&client, (3, 2, 1)).await;

    // A workload created in inc-a: its passes look at it alone (not at inc-a/web, nor inc-b),
    // and the others are still counted.
    let full_before = passes(&metrics, "full").await;
    let scoped_before = passes(&metrics, "changed").await;
    deployment(&client, "inc-a", "fresh", &unsigned_image, Some(&unsigned)).await;
    wait_verdict(&client, DEPLOYMENT, "inc-a", "fresh", "Unsigned", WAIT).await;
    wait_counts(&client, (4, 2, 2)).await;

    // And deleted again: its pods go, the counts follow.
    Api::<Deployment>::namespaced(client.clone(), "inc-a")
        .delete("fresh", &DeleteParams::background())
        .await
        .expect("delete Deployment fresh");
    wait_counts(&client, (3, 2, 1)).await;

    let scoped = passes(&metrics, "changed").await;
    let (scoped_passes, assessed) = (scoped.0 - scoped_before.0, scoped.1 - scoped_before.1);
    assert!(scoped_passes > 0.0, "no pass over what changed");
    assert!(
        assessed <= scoped_passes,
        "{scoped_passes} passes over what changed assessed {assessed} workloads: more than the one that changed"
    );
    assert_eq!(
        passes(&metrics, "full").await,
        full_before,
        "a change in one namespace started a pass over every workload"
    );
    operator.stop().await;
}
