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
    images::push_image,
    registry::{Registry, RegistryKind},
};
use operator_common::*;
use serde_json::{Value, json};

const NS: &str = "shop";
const WAIT: Duration = Duration::from_secs(60);

/// The report's results by workload name, when it has exactly `expected` of them.
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
    let push = |repo: &str| {
        let digest = push_image(&format!("{host}/{repo}:v1"), repo);
        (format!("{host}/{repo}"), digest)
    };
    let (signed_repo, signed) = push("shop/signed");
    let (unsigned_repo, unsigned) = push("shop/unsigned");
    let run = trusted
        .cosign3
        .sign(&trusted.private, &format!("{signed_repo}@{signed}"), false);
    assert!(run.success, "cosign sign: {}", run.stderr);

    trust_root(
        &client,
        "shop",
        json!({"images": [format!("{host}/shop/**")], "keys": [key("trusted", &trusted.public)]}),
    )
    .await
    .expect("TrustRoot shop");
    namespace(&client, NS, json!({})).await;
    let mut config = config("reports", None);
    config.policy_reports = true;
    let operator = Operator::start_config(&cluster, config);
    deployment(&client, NS, "signed", &format!("{signed_repo}:v1"), Some(&signed)).await;
    deployment(
        &client,
        NS,
        "unsigned",
        &format!("{unsigned_repo}@{unsigned}"),
        None,
    )
    .await;

    let reports = policy_reports(&client, Some(NS));
    let get = || async {
        let report = reports.get("countersign").await.context("get the PolicyReport")?;
        serde_json::to_value(report).context("as JSON")
    };
    let report = eventually("a pass and a fail in the report", WAIT, || async {
        let report = get().await?;
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
    let results = results_by_name(&report).unwrap();
    let pass = &results["signed"];
    assert_eq!(pass["policy"], "countersign");
    assert_eq!(pass["source"], "countersign");
    assert_eq!(pass["rule"], "shop");
    assert_eq!(pass["message"], "verified by trusted");
    let deployment_uid = |name: &str| {
        let client = client.clone();
        let name = name.to_string();
        async move {
            dynamic(&client, "apps/v1", "Deployment", Some(NS))
                .get(&name)
                .await
                .expect("the Deployment")
                .metadata
                .uid
                .expect("a uid")
        }
    };
    assert_eq!(
        pass["resources"][0],
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "namespace": NS,
            "name": "signed",
            "uid": deployment_uid("signed").await,
        })
    );
    assert_eq!(pass["properties"]["digest"], signed);
    assert_eq!(pass["properties"]["image"], format!("{signed_repo}@{signed}"));
    assert!(
        pass["timestamp"]["seconds"].as_i64().is_some_and(|s| s > 0),
        "{pass}"
    );
    // Only a change is written: a pass that another namespace's new workload starts writes
    // that namespace's report and leaves this one as it was.
    let written = report["metadata"]["resourceVersion"].clone();
    namespace(&client, "other", json!({})).await;
    deployment(
        &client,
        "other",
        "unsigned",
        &format!("{unsigned_repo}@{unsigned}"),
        None,
    )
    .await;
    eventually("the other namespace's report", WAIT, || async {
        let other = policy_reports(&client, Some("other")).get("countersign").await?;
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
    let fail = &results["unsigned"];
    assert_eq!(fail["message"], "no signature");
    assert_eq!(fail["properties"]["digest"], unsigned);
    assert_eq!(fail["resources"][0]["uid"], deployment_uid("unsigned").await);

    // The key that signed is taken out of the TrustRoot: the signed Deployment fails too.
    trust_root(
        &client,
        "shop",
        json!({"images": [format!("{host}/shop/**")], "keys": [key("other", &other.public)]}),
    )
    .await
    .expect("TrustRoot shop without the key");
    let report = eventually("the signed result to turn fail", WAIT, || async {
        let report = get().await?;
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

    // Deleted workloads leave the report; the last one takes the report with it.
    let deployments = dynamic(&client, "apps/v1", "Deployment", Some(NS));
    deployments
        .delete("unsigned", &Default::default())
        .await
        .expect("delete unsigned");
    let report = eventually("the unsigned result to go", WAIT, || async {
        let report = get().await?;
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
    operator.stop().await;
}
