//! `--policy-reports` against a real control plane with the upstream PolicyReport CRD (as Kyverno
//! ships it), a real registry and signatures made by the real cosign: the namespace's report has
//! a `pass` for the signed Deployment and a `fail` for the unsigned one, with their summary; then
//! the key that signed is taken out of the TrustRoot and the signed one's result turns `fail`;
//! a pass that changes another namespace leaves this report untouched; the Deployments deleted one by one, their results go, and the emptied namespace's report too.
//! Everything is read back through the API server, by the report's structured fields.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::Keys;
use countersign_tests::{
    images::Pushed,
    registry::{Registry, RegistryKind},
};
use kube::{Api, Client, api::DynamicObject};
use operator_common::*;
use serde_json::{Value, json};

const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(60);

/// The report's results by workload name.
fn results_by_name(report: &Value) -> anyhow::Result<std::collections::BTreeMap<String, Value>> {
    report["results"]
        .as_array()
        .context("results")?
        .iter()
        .map(|r| {
            let name = r["resources"][0]["name"].as_str().context("resources[0].name")?;
            Ok((name.to_string(), r.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_report_per_namespace_that_follows_the_verdicts() {
    let cluster = cluster().await;
    let client = cluster.client();
    install_policy_report_crd(&client).await;
    let registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let (trusted, other) =
        blocking(|| (Keys::generate_named("trusted"), Keys::generate_named("other"))).await;
    let images = Images::push_and_sign(&host, &trusted);
    shop_trust_root(&client, &host, key("trusted", &trusted.public))
        .await
        .expect("TrustRoot shop");
    namespace(&client, NS, json!({})).await;
    let mut config = config("reports", None);
    config.policy_reports = true;
    let operator = Operator::start_config(&cluster, config);
    create_deployments(&client, &images).await;

    let reports = policy_reports(&client, Some(NS));
    let report = reports_a_pass_and_a_fail(&reports).await;
    let results = results_by_name(&report).unwrap();
    describes_the_pass(&client, &results["signed"], &images.signed).await;
    leaves_an_unchanged_report_unwritten(&client, &reports, &report, &images.unsigned).await;
    describes_the_fail(&client, &results["unsigned"], &images.unsigned).await;
    fails_the_signed_deployment_without_its_key(&client, &reports, &host, &other).await;
    drops_deleted_workloads_then_the_report(&client, &reports).await;
    operator.stop().await;
}

/// Pushes `<host>/<repo>:v1`, its content the repository's name.
fn push(host: &str, repo: &str) -> Pushed {
    Pushed::push(&format!("{host}/{repo}"), repo)
}

/// `signed`, signed by digest with the real cosign v3 and the `trusted` key; `unsigned`, not.
struct Images {
    signed: Pushed,
    unsigned: Pushed,
}

impl Images {
    fn push_and_sign(host: &str, trusted: &Keys) -> Self {
        let signed = push(host, "shop/signed");
        let unsigned = push(host, "shop/unsigned");
        let run = trusted.cosign3.sign(&trusted.private, &signed.pinned(), false);
        assert!(run.success, "cosign sign: {}", run.stderr);
        Images { signed, unsigned }
    }
}

/// TrustRoot `shop`: the registry's `shop/` images, verified by `trusted_key` alone.
async fn shop_trust_root(client: &Client, host: &str, trusted_key: Value) -> anyhow::Result<()> {
    trust_root(
        client,
        "shop",
        json!({"images": [format!("{host}/shop/**")], "keys": [trusted_key]}),
    )
    .await
}

/// `signed` runs its tag (the kubelet reported the digest); `unsigned` runs its digest.
async fn create_deployments(client: &Client, images: &Images) {
    let signed = &images.signed;
    let tagged = format!("{}:v1", signed.repo);
    deployment(client, NS, "signed", &tagged, Some(&signed.digest)).await;
    deployment(client, NS, "unsigned", &images.unsigned.pinned(), None).await;
}

/// The namespace's PolicyReport as JSON.
async fn report_json(reports: &Api<DynamicObject>) -> anyhow::Result<Value> {
    let report = reports.get("countersign").await.context("get the PolicyReport")?;
    serde_json::to_value(report).context("as JSON")
}

/// The uid of Deployment `name` in [`NS`].
async fn deployment_uid(client: &Client, name: &str) -> String {
    dynamic(client, "apps/v1", "Deployment", Some(NS))
        .get(name)
        .await
        .expect("the Deployment")
        .metadata
        .uid
        .expect("a uid")
}

/// The report, labelled as countersign's, with a result and a summary for each Deployment.
async fn reports_a_pass_and_a_fail(reports: &Api<DynamicObject>) -> Value {
    let report = eventually("a pass and a fail in the report", WAIT, || async {
        let report = report_json(reports).await?;
        let results = results_by_name(&report)?;
        ensure!(results.len() == 2, "results {results:?}");
        ensure!(
            results["signed"]["result"] == "pass",
            "signed {}",
            results["signed"]
        );
        ensure!(
            results["unsigned"]["result"] == "fail",
            "unsigned {}",
            results["unsigned"]
        );
        Ok(report)
    })
    .await;
    assert_eq!(
        report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "countersign"
    );
    assert_eq!(
        report["summary"],
        json!({"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    report
}

/// The signed Deployment's `pass`: the TrustRoot as its rule, the key that verified it, the
/// workload by uid, the image it runs and when.
async fn describes_the_pass(client: &Client, pass: &Value, signed: &Pushed) {
    assert_eq!(pass["policy"], "countersign");
    assert_eq!(pass["source"], "countersign");
    assert_eq!(pass["rule"], "shop");
    assert_eq!(pass["message"], "verified by trusted");
    assert_eq!(
        pass["resources"][0],
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": NS,
            "name": "signed",
            "uid": deployment_uid(client, "signed").await,
        })
    );
    assert_eq!(pass["properties"]["digest"], signed.digest);
    assert_eq!(pass["properties"]["image"], signed.pinned());
    assert!(
        pass["timestamp"]["seconds"].as_i64().is_some_and(|s| s > 0),
        "{pass}"
    );
}

/// Only a change is written: a pass that another namespace's new workload starts writes
/// that namespace's report and leaves this one as it was.
async fn leaves_an_unchanged_report_unwritten(
    client: &Client,
    reports: &Api<DynamicObject>,
    report: &Value,
    unsigned: &Pushed,
) {
    let written = report["metadata"]["resourceVersion"].clone();
    namespace(client, "other", json!({})).await;
    deployment(client, "other", "unsigned", &unsigned.pinned(), None).await;
    eventually("the other namespace's report", WAIT, || async {
        let other = policy_reports(client, Some("other")).get("countersign").await?;
        ensure!(
            other.data["summary"]["fail"] == 1,
            "summary {}",
            other.data["summary"]
        );
        Ok(())
    })
    .await;
    assert_eq!(
        serde_json::to_value(reports.get("countersign").await.unwrap()).unwrap()["metadata"]["resourceVersion"],
        written,
        "an unchanged report is not written again"
    );
}

/// The unsigned Deployment's `fail`: why, the digest and the workload by uid.
async fn describes_the_fail(client: &Client, fail: &Value, unsigned: &Pushed) {
    assert_eq!(fail["message"], "no signature");
    assert_eq!(fail["properties"]["digest"], unsigned.digest);
    assert_eq!(
        fail["resources"][0]["uid"],
        deployment_uid(client, "unsigned").await
    );
}

/// The key that signed is taken out of the TrustRoot: the signed Deployment fails too.
async fn fails_the_signed_deployment_without_its_key(
    client: &Client,
    reports: &Api<DynamicObject>,
    host: &str,
    other: &Keys,
) {
    shop_trust_root(client, host, key("other", &other.public))
        .await
        .expect("TrustRoot shop without the key");
    let report = eventually("the signed result to turn fail", WAIT, || async {
        let report = report_json(reports).await?;
        let results = results_by_name(&report)?;
        ensure!(
            results["signed"]["result"] == "fail",
            "signed {}",
            results["signed"]
        );
        Ok(report)
    })
    .await;
    assert_eq!(
        report["summary"],
        json!({"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0})
    );
    let results = results_by_name(&report).unwrap();
    assert!(
        results["signed"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no trusted key verifies it")),
        "{}",
        results["signed"]
    );
}

/// Deleted workloads leave the report; the last one takes the report with it.
async fn drops_deleted_workloads_then_the_report(client: &Client, reports: &Api<DynamicObject>) {
    let deployments = dynamic(client, "apps/v1", "Deployment", Some(NS));
    deployments
        .delete("unsigned", &Default::default())
        .await
        .expect("delete unsigned");
    let report = eventually("the unsigned result to go", WAIT, || async {
        let report = report_json(reports).await?;
        let results = results_by_name(&report)?;
        ensure!(results.keys().eq(["signed"]), "results {results:?}");
        Ok(report)
    })
    .await;
    assert_eq!(
        report["summary"],
        json!({"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0})
    );
    deployments
        .delete("signed", &Default::default())
        .await
        .expect("delete signed");
    eventually("the emptied namespace's report to be deleted", WAIT, || async {
        match reports.get_opt("countersign").await? {
            None => Ok(()),
            Some(r) => anyhow::bail!("still there: {:?}", r.data["results"]),
        }
    })
    .await;
}
