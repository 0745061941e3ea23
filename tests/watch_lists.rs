//! How the operator takes its first picture of the cluster. Kubernetes 1.33 ships with WatchList
//! off; there the probe must choose paged lists, and verdicts must come as they do with
//! streaming lists (every other operator test runs with WatchList on, the default of 1.36).

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use common::Keys;
use countersign::operator::watch::{InitialLists, initial_lists};
use countersign_tests::{
    cluster::{ClusterOptions, LocalCluster},
    images::push_image,
    registry::{Registry, RegistryKind},
};
use operator_common::*;
use serde_json::json;

const NS: &str = "paged";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_watch_list_off_the_operator_pages_its_lists_and_verifies() {
    let cluster = cluster_with(ClusterOptions {
        apiserver_args: vec!["--feature-gates=WatchList=false".to_owned()],
        ..ClusterOptions::default()
    })
    .await;
    let client = cluster.client();
    assert_eq!(initial_lists(&client).await, InitialLists::Paged);

    let registry = Registry::start(RegistryKind::Referrers);
    let keys = blocking(|| Keys::generate_named("ci")).await;
    let repo = format!("{}/team/app", registry.host);
    let digest = push_image(&format!("{repo}:v1"), "paged");
    let run = keys
        .cosign3
        .sign(&keys.private, &format!("{repo}@{digest}"), false);
    assert!(run.success, "cosign sign: {}", run.stderr);
    trust_root(
        &client,
        "team",
        json!({"images": [format!("{}/team/**", registry.host)], "keys": [key("ci", &keys.public)]}),
    )
    .await
    .expect("TrustRoot team");
    namespace(&client, NS, json!({})).await;
    let _operator = Operator::start(&cluster, "paged");
    deployment(&client, NS, "app", &format!("{repo}:v1"), Some(&digest)).await;
    let a = wait_verdict(&client, DEPLOYMENT, NS, "app", "Verified", WAIT).await;
    assert_eq!(a["verifiedBy"], "team/ci");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_list_on_the_operator_streams_its_lists() {
    init_logging();
    let cluster = LocalCluster::start()
        .await
        .expect("start the local control plane");
    assert_eq!(initial_lists(&cluster.client()).await, InitialLists::Streamed);
}
