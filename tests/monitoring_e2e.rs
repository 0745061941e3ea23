//! The alerts and dashboards of `manifests/monitoring/` against a real Prometheus scraping a real
//! `countersign run` on the local control plane, with a real registry and cosign signatures.
//!
//! Prometheus loads the real rules with every duration cut 60 times (`for: 30m` → `30s`,
//! `[15m]` → `[15s]`: `monitoring::accelerated`), scrapes and evaluates every second. The
//! scenario: an unsigned workload (M1 under its objective), a key removed (drift, a failing
//! workload), a planned rotation that silences those and then stalls, its abort (the silence ends),
//! everything fixed (every alert resolves), the operator stopped (down). Every dashboard query
//! returns data while the alerts fire. Each step waits on Prometheus' `/api/v1/alerts`.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, ensure};
use common::Keys;
use countersign_tests::{
    bench::{OperatorProcess, scrape_metrics},
    countersign_bin,
    images::push_image,
    monitoring,
    prometheus::Prometheus,
    registry::{Registry, RegistryKind},
    scratch_dir,
};
use jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams};
use operator_common::*;
use serde_json::{Value, json};

const NS: &str = "shop";
const KR: &str = "countersign.dev/v1alpha1";
/// Generous: the shortened `for:` are at most 30 s, sweeps 10 s apart, on a busy machine.
const WAIT: Duration = Duration::from_secs(120);
/// The alerts a planned rotation silences (drift holds only 15 s here, so it is not among those
/// checked while silenced).
const SILENCED: [&str; 2] = [
    "CountersignSignedWorkloadsBelowObjective",
    "CountersignWorkloadsFailing",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alerts_fire_are_silenced_by_a_rotation_resolve_and_dashboards_have_data() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::Referrers);
    let shop = Shop::push_and_sign(&registry.host).await;
    deploy_web_and_api_trusting_a_and_b(&client, &shop).await;
    let dir = scratch_dir("monitoring-e2e");
    let log = dir.path().join("operator.log");
    let (operator, metrics, prometheus) = start_operator_and_prometheus(cluster.kubeconfig_path(), &log);
    let scene = Scene {
        client: &client,
        prometheus: &prometheus,
        shop: &shop,
    };
    verifies_web_and_api_with_no_alert_active(&scene).await;

    an_unsigned_workload_fires_below_objective(&scene).await;
    removing_a_key_fires_drift_then_failing(&scene).await;
    dashboards_have_data(&prometheus, &metrics).await;
    a_planned_rotation_silences_the_signature_alerts(&scene).await;
    its_closed_window_fires_stalled_and_keeps_the_silence(&scene).await;
    aborting_the_rotation_resolves_the_stall_and_ends_the_silence(&scene).await;
    fixing_everything_resolves_every_alert(&scene).await;
    stopping_the_operator_fires_operator_down(operator, &prometheus).await;
}

/// The `shop/` images in the registry and the keys: `web` is signed by `a`, `api` by `b`, `tool`
/// by none; `c` is the key a rotation brings in.
struct Shop {
    host: String,
    keys: HashMap<&'static str, Arc<Keys>>,
    digests: HashMap<&'static str, String>,
}

impl Shop {
    async fn push_and_sign(host: &str) -> Self {
        let keys: HashMap<_, _> = blocking(|| {
            ["a", "b", "c"]
                .map(|name| (name, Arc::new(Keys::generate_named(name))))
                .into()
        })
        .await;
        let mut digests = HashMap::new();
        for (name, signer) in [("web", Some("a")), ("api", Some("b")), ("tool", None)] {
            let (repo, signer) = (
                format!("{host}/shop/{name}"),
                signer.map(|k| Arc::clone(&keys[k])),
            );
            let digest = blocking(move || {
                let digest = push_image(&format!("{repo}:v1"), name);
                if let Some(keys) = signer {
                    let run = keys
                        .cosign3
                        .sign(&keys.private, &format!("{repo}@{digest}"), false);
                    assert!(run.success, "cosign sign {name}: {}", run.stderr);
                }
                digest
            })
            .await;
            digests.insert(name, digest);
        }
        let host = host.to_string();
        Shop { host, keys, digests }
    }

    /// `<host>/shop/<name>:v1`, the reference its workload runs.
    fn image(&self, name: &str) -> String {
        format!("{}/shop/{name}:v1", self.host)
    }

    /// `<host>/shop/<name>@<digest>`.
    fn pinned(&self, name: &str) -> String {
        format!("{}/shop/{name}@{}", self.host, self.digests[name])
    }

    /// The spec of TrustRoot `shop`: every `shop/` image, under the keys `names`, re-verified
    /// every 10 s.
    fn trust_root(&self, names: &[&str]) -> Value {
        let keys: Vec<Value> = names
            .iter()
            .map(|&name| key(name, &self.keys[name].public))
            .collect();
        json!({"images": [format!("{}/shop/**", self.host)], "keys": keys, "reverifyInterval": "10s"})
    }

    /// The Deployment `name`, running its image, whose digest the kubelet reported.
    async fn deploy(&self, client: &kube::Client, name: &str) {
        deployment(client, NS, name, &self.image(name), Some(&self.digests[name])).await;
    }
}

async fn deploy_web_and_api_trusting_a_and_b(client: &kube::Client, shop: &Shop) {
    trust_root(client, "shop", shop.trust_root(&["a", "b"]))
        .await
        .expect("TrustRoot shop");
    namespace(client, NS, json!({})).await;
    for name in ["web", "api"] {
        shop.deploy(client, name).await;
    }
}

/// `countersign run`, logging to `log`, and Prometheus scraping it with the real rules
/// accelerated: returns the operator, its metrics address and Prometheus.
fn start_operator_and_prometheus(kubeconfig: &Path, log: &Path) -> (OperatorProcess, String, Prometheus) {
    let mut operator =
        OperatorProcess::start(&countersign_bin(), kubeconfig, log, &[]).expect("start countersign run");
    let metrics = operator.metrics_addr(log).expect("metrics address");
    let rules = monitoring::accelerated(&monitoring::load_yaml(&monitoring::rules_path()));
    let prometheus = Prometheus::start(std::slice::from_ref(&metrics), &rules).expect("start prometheus");
    eprintln!("prometheus on {}, scraping {metrics}", prometheus.addr);
    (operator, metrics, prometheus)
}

/// What the steps after the start act on and wait on.
struct Scene<'a> {
    client: &'a kube::Client,
    prometheus: &'a Prometheus,
    shop: &'a Shop,
}

async fn verifies_web_and_api_with_no_alert_active(scene: &Scene<'_>) {
    for name in ["web", "api"] {
        wait_verdict(scene.client, DEPLOYMENT, NS, name, "Verified", WAIT).await;
    }
    quiet(scene.prometheus).await;
}

/// An unsigned workload: M1 under its objective (2 of 3 verify).
async fn an_unsigned_workload_fires_below_objective(scene: &Scene<'_>) {
    scene.shop.deploy(scene.client, "tool").await;
    wait_verdict(scene.client, DEPLOYMENT, NS, "tool", "Unsigned", WAIT).await;
    wait_alert(
        scene.prometheus,
        "CountersignSignedWorkloadsBelowObjective",
        "firing",
    )
    .await;
}

/// Key b removed: api drifts (the alert holds 15 s here, so it is awaited first) and fails.
async fn removing_a_key_fires_drift_then_failing(scene: &Scene<'_>) {
    trust_root(scene.client, "shop", scene.shop.trust_root(&["a"]))
        .await
        .expect("TrustRoot without b");
    wait_alert(scene.prometheus, "CountersignSignatureDrift", "firing").await;
    wait_verdict(scene.client, DEPLOYMENT, NS, "api", "Failed", WAIT).await;
    wait_alert(scene.prometheus, "CountersignWorkloadsFailing", "firing").await;
}

/// A planned rotation a → c: while it holds two keys, the signature alerts are silent, though a
/// workload still fails.
async fn a_planned_rotation_silences_the_signature_alerts(scene: &Scene<'_>) {
    trust_root(scene.client, "shop", scene.shop.trust_root(&["a", "c"]))
        .await
        .expect("TrustRoot with c");
    apply(
        scene.client,
        KR,
        "KeyRotation",
        None,
        json!({"metadata": {"name": "shop-c"}, "spec": {"trustRootRef": "shop", "fromKey": "a", "toKey": "c", "window": window(-30, "1h")}}),
    )
    .await
    .expect("KeyRotation shop-c");
    wait_phase(scene.client, "shop-c", "DualAcceptance").await;
    for name in SILENCED {
        wait_inactive(scene.prometheus, name).await;
    }
}

/// The rotation's window closes with web on a alone: Stalled fires, and the signature alerts
/// stay silent though a workload still fails.
async fn its_closed_window_fires_stalled_and_keeps_the_silence(scene: &Scene<'_>) {
    patch_rotation(scene.client, json!({"window": window(-120, "1m")})).await;
    wait_phase(scene.client, "shop-c", "Stalled").await;
    wait_alert(scene.prometheus, "CountersignRotationStalled", "firing").await;
    let failed = scene
        .prometheus
        .query(r#"job:countersign_workloads:max{verdict="Failed"} > 0"#)
        .await
        .expect("query");
    assert_eq!(
        failed.len(),
        1,
        "a workload still fails while silenced: {failed:?}"
    );
    for name in SILENCED {
        let state = scene.prometheus.alert_state(name).await.expect("alerts");
        assert_eq!(state, None, "{name} is silenced during the rotation");
    }
}

/// The rotation aborted: the stall resolves, the silence ends.
async fn aborting_the_rotation_resolves_the_stall_and_ends_the_silence(scene: &Scene<'_>) {
    patch_rotation(scene.client, json!({"abort": true})).await;
    wait_phase(scene.client, "shop-c", "Aborted").await;
    wait_inactive(scene.prometheus, "CountersignRotationStalled").await;
    wait_alert(scene.prometheus, "CountersignWorkloadsFailing", "firing").await;
}

/// Fixed: b declared again, the unsigned image signed. Every alert resolves.
async fn fixing_everything_resolves_every_alert(scene: &Scene<'_>) {
    let (signer, tool) = (Arc::clone(&scene.shop.keys["a"]), scene.shop.pinned("tool"));
    let run = blocking(move || signer.cosign3.sign(&signer.private, &tool, false)).await;
    assert!(run.success, "cosign sign tool: {}", run.stderr);
    trust_root(scene.client, "shop", scene.shop.trust_root(&["a", "b", "c"]))
        .await
        .expect("TrustRoot fixed");
    for name in ["web", "api", "tool"] {
        wait_verdict(scene.client, DEPLOYMENT, NS, name, "Verified", WAIT).await;
    }
    quiet(scene.prometheus).await;
}

/// The operator stopped: no replica is scraped.
async fn stopping_the_operator_fires_operator_down(operator: OperatorProcess, prometheus: &Prometheus) {
    let how = blocking(move || operator.stop()).await;
    eprintln!("operator stopped: {how}");
    wait_alert(prometheus, "CountersignOperatorDown", "firing").await;
}

/// A KeyRotation window that started `start` seconds from now (negative: in the past) and lasts
/// `duration`.
fn window(start: i64, duration: &str) -> Value {
    json!({"start": (Timestamp::now() + SignedDuration::from_secs(start)).to_string(), "duration": duration})
}

/// Waits until alert `name` is in `state` (`pending`, `firing`).
async fn wait_alert(prometheus: &Prometheus, name: &str, state: &str) {
    eventually(&format!("alert {name} {state}"), WAIT, || async {
        let alerts = prometheus.alerts().await?;
        let got = alerts.iter().find(|a| a.name == name).map(|a| a.state.as_str());
        ensure!(got == Some(state), "{name} is {got:?}; active: {alerts:?}");
        Ok(())
    })
    .await;
}

/// Waits until alert `name` is neither pending nor firing.
async fn wait_inactive(prometheus: &Prometheus, name: &str) {
    eventually(&format!("alert {name} inactive"), WAIT, || async {
        let state = prometheus.alert_state(name).await?;
        ensure!(state.is_none(), "{name} is {state:?}");
        Ok(())
    })
    .await;
}

/// Waits until no alert is pending or firing.
async fn quiet(prometheus: &Prometheus) {
    eventually("no active alert", WAIT, || async {
        let alerts = prometheus.alerts().await?;
        ensure!(alerts.is_empty(), "active: {alerts:?}");
        Ok(())
    })
    .await;
}

async fn wait_phase(client: &kube::Client, name: &str, phase: &str) {
    eventually(&format!("KeyRotation {name} {phase}"), WAIT, || async {
        let rotation = dynamic(client, KR, "KeyRotation", None).get(name).await?;
        let got = rotation.data["status"]["phase"].as_str().map(str::to_string);
        ensure!(got.as_deref() == Some(phase), "phase {got:?}");
        Ok(())
    })
    .await;
}

async fn patch_rotation(client: &kube::Client, spec: Value) {
    dynamic(client, KR, "KeyRotation", None)
        .patch(
            "shop-c",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .expect("patch KeyRotation shop-c");
}

/// The admission webhook's metric families: built on another branch; until the operator exports
/// them, the panels on them cannot have data here.
const ADMISSION: &str = "countersign_admission_";

/// Every panel query of every dashboard, its variables expanded (all TrustRoots), returns at
/// least one sample; only queries on admission families the operator does not export yet are
/// skipped, and listed.
async fn dashboards_have_data(prometheus: &Prometheus, metrics: &str) {
    let exported = scrape_metrics(metrics).await.expect("scrape the operator");
    let families = |expr: &str| -> Vec<String> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.starts_with("countersign_"))
            .map(|w| w.trim_end_matches("_bucket").to_string())
            .collect()
    };
    let mut skipped = Vec::new();
    let mut checked = 0;
    for (name, dashboard) in monitoring::dashboards() {
        for q in monitoring::panel_queries(&name, &dashboard) {
            let missing: Vec<String> = families(&q.expr)
                .into_iter()
                .filter(|f| f.starts_with(ADMISSION) && !exported.keys().any(|s| s.starts_with(f.as_str())))
                .collect();
            if !missing.is_empty() {
                skipped.push(format!("{} (not exported: {missing:?})", q.place));
                continue;
            }
            let expr = monitoring::expand(&q.expr, ".*");
            eventually(&format!("data for {}: {expr}", q.place), WAIT, || async {
                let samples = prometheus.query(&expr).await.context("query")?;
                ensure!(!samples.is_empty(), "no sample");
                Ok(())
            })
            .await;
            checked += 1;
        }
    }
    eprintln!("dashboard queries with data: {checked}; skipped: {skipped:#?}");
    assert!(checked >= 20, "{checked} queries checked");
}
