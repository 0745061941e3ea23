//! Helpers shared by the operator tests (`operator_*.rs`): a local control plane with the CRDs,
//! the operator started in-process (the library entry point `countersign run` calls), and
//! polling helpers that read WorkloadVerdicts, Events and TrustRoot status the way a person would.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result, bail, ensure};
use countersign::{
    crd::{TrustRoot, TrustRootStatus, WorkloadVerdict},
    operator,
};
use countersign_tests::cluster::{ClusterOptions, IMAGE_ID_ANNOTATION_PREFIX, LocalCluster};
/// Polls a condition (one helper for every test, in the harness).
pub use countersign_tests::eventually;
use k8s_openapi::{
    api::events::v1::Event, apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, GroupVersionKind},
};
use serde_json::{Value, json};

pub const LEASE_NAMESPACE: &str = "countersign-system";
const MANAGER: &str = "countersign-tests";

/// Logs of the operator in the test output when RUST_LOG is set (e.g. `RUST_LOG=countersign=debug`).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// A control plane with the CRDs installed and the Lease namespace created.
pub async fn cluster() -> LocalCluster {
    cluster_with(ClusterOptions::default()).await
}

/// [`cluster`], started with `options`.
pub async fn cluster_with(options: ClusterOptions) -> LocalCluster {
    init_logging();
    let cluster = LocalCluster::start_with(options)
        .await
        .expect("start the local control plane");
    let client = cluster.client();
    install_crds(&client, countersign::crd::all()).await;
    create(
        &client,
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": LEASE_NAMESPACE}}),
    )
    .await;
    cluster
}

/// Server-side applies `crds` and waits until each is Established and TrustRoots can be listed.
/// (A watch started on a CRD not yet Established may be cut when the API server replaces the
/// resource's storage, and a test's own watch of WorkloadVerdicts must see every version.)
pub async fn install_crds(client: &Client, crds: Vec<CustomResourceDefinition>) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut names = Vec::new();
    for crd in crds {
        let name = crd.metadata.name.clone().expect("named CRD");
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
        names.push(name);
    }
    eventually("every CRD to be Established", Duration::from_secs(30), || async {
        for name in &names {
            let crd = api.get(name).await?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            ensure!(established, "{name} not Established yet");
        }
        Ok(())
    })
    .await;
    let roots: Api<TrustRoot> = Api::all(client.clone());
    eventually(
        "the TrustRoot API to be served",
        Duration::from_secs(30),
        || async { roots.list(&ListParams::default()).await.map(drop).context("list") },
    )
    .await;
}

/// Installs the upstream PolicyReport CRD (`e2e/peers.sh policyreport` fetches it from
/// Kyverno's module) and waits until PolicyReports can be listed.
pub async fn install_policy_report_crd(client: &Client) {
    let path = countersign_tests::peer_path("policyreport-crd");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        "policyreports.wgpolicyk8s.io",
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the PolicyReport CRD");
    let reports = policy_reports(client, None);
    eventually(
        "the PolicyReport API to be served",
        Duration::from_secs(30),
        || async {
            reports
                .list(&ListParams::default())
                .await
                .map(drop)
                .context("list")
        },
    )
    .await;
}

/// PolicyReports (`wgpolicyk8s.io/v1alpha2`), in one namespace or all.
pub fn policy_reports(client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
    let resource = countersign::reports::api_resource();
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

/// What the operator tests run with: the test Lease, nothing optional switched on.
pub fn config(identity: &str, registry_credentials: Option<(&str, &str)>) -> operator::Config {
    operator::Config {
        registry_credentials: registry_credentials.map(|(ns, n)| (ns.to_string(), n.to_string())),
        ..countersign_tests::operator_config(identity)
    }
}

/// The operator, running in-process as `countersign run` runs it.
pub struct Operator {
    running: countersign_tests::InProcess,
    pub identity: String,
}

impl Operator {
    pub fn start(cluster: &LocalCluster, identity: &str) -> Operator {
        Self::start_with(cluster, identity, None)
    }

    /// With `registry_credentials`, the controller-wide pull secret (namespace, name).
    pub fn start_with(
        cluster: &LocalCluster,
        identity: &str,
        registry_credentials: Option<(&str, &str)>,
    ) -> Operator {
        Self::start_config(cluster, config(identity, registry_credentials))
    }

    /// With a configuration of its own (start from [`config`]).
    pub fn start_config(cluster: &LocalCluster, config: operator::Config) -> Operator {
        let identity = config.lease.identity.clone();
        let running = countersign_tests::InProcess::start(cluster.client(), config);
        Operator { running, identity }
    }

    /// Started with the test configuration, and the address of its `/metrics`.
    pub async fn start_with_metrics(cluster: &LocalCluster, identity: &str) -> (Operator, String) {
        let config = config(identity, None);
        let listeners = countersign::operator::Listeners::bind(&config)
            .await
            .expect("bind the operator's listeners");
        let metrics = listeners
            .metrics
            .local_addr()
            .expect("metrics address")
            .to_string();
        let identity = config.lease.identity.clone();
        let running = countersign_tests::InProcess::start_on(cluster.client(), config, listeners);
        (Operator { running, identity }, metrics)
    }

    /// Stops it as SIGTERM would, and checks it ended cleanly.
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// Creates an object from JSON with the admin client.
pub async fn create(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    mut object: Value,
) {
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    let api = dynamic(client, api_version, kind, namespace);
    let obj: DynamicObject = serde_json::from_value(object).expect("an object");
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
}

/// Server-side applies an object (creates or updates) with the tests' field manager.
pub async fn apply(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    mut object: Value,
) -> Result<()> {
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    let name = object["metadata"]["name"]
        .as_str()
        .context("metadata.name")?
        .to_string();
    dynamic(client, api_version, kind, namespace)
        .patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .with_context(|| format!("apply {kind} {name}"))?;
    Ok(())
}

pub fn dynamic(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    }
}

pub async fn namespace(client: &Client, name: &str, labels: Value) {
    create(
        client,
        "v1",
        "Namespace",
        None,
        json!({"metadata": {"name": name, "labels": labels}}),
    )
    .await;
}

/// A TrustRoot from its spec.
pub async fn trust_root(client: &Client, name: &str, spec: Value) -> Result<()> {
    apply(
        client,
        "countersign.dev/v1alpha1",
        "TrustRoot",
        None,
        json!({"metadata": {"name": name}, "spec": spec}),
    )
    .await
}

/// A key entry of a TrustRoot from a cosign public key file.
pub fn key(name: &str, public_key: &Path) -> Value {
    json!({"name": name, "publicKey": std::fs::read_to_string(public_key).expect("public key")})
}

/// A Deployment of one pod running `image`, reporting `running` (a digest) as its imageID when
/// given, as a kubelet would after pulling a tag.
pub async fn deployment(client: &Client, namespace: &str, name: &str, image: &str, running: Option<&str>) {
    deployment_pulling(client, namespace, name, image, running, None).await;
}

/// [`deployment`], its pods pulling with `pull_secret` (`spec.imagePullSecrets`) when given.
pub async fn deployment_pulling(
    client: &Client,
    namespace: &str,
    name: &str,
    image: &str,
    running: Option<&str>,
    pull_secret: Option<&str>,
) {
    let annotations = pod_annotations(image, running);
    let secrets = pull_secret.map_or(json!([]), |s| json!([{"name": s}]));
    create(
        client,
        "apps/v1",
        "Deployment",
        Some(namespace),
        json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {"containers": [{"name": "app", "image": image}], "imagePullSecrets": secrets},
                },
            },
        }),
    )
    .await;
}

/// The kwok annotation that makes `running` the container `app`'s imageID.
pub fn pod_annotations(image: &str, running: Option<&str>) -> Value {
    match running {
        Some(digest) => {
            let repo = image.rsplit_once(':').map_or(image, |(r, _)| r);
            json!({format!("{IMAGE_ID_ANNOTATION_PREFIX}app"): format!("{repo}@{digest}")})
        }
        None => json!({}),
    }
}

/// A bare pod of one container.
pub async fn pod(client: &Client, namespace: &str, name: &str, image: &str, pull_secret: Option<&str>) {
    let secrets = pull_secret.map_or(json!([]), |s| json!([{"name": s}]));
    create(
        client,
        "v1",
        "Pod",
        Some(namespace),
        json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": image}], "imagePullSecrets": secrets},
        }),
    )
    .await;
}

/// A `kubernetes.io/dockerconfigjson` Secret, created or (applied again) updated.
pub async fn pull_secret(client: &Client, namespace: &str, name: &str, docker_config: &[u8]) {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(docker_config);
    apply(
        client,
        "v1",
        "Secret",
        Some(namespace),
        json!({
            "metadata": {"name": name},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": encoded},
        }),
    )
    .await
    .unwrap_or_else(|e| panic!("apply Secret {namespace}/{name}: {e:#}"));
}

/// The verdict recorded for a workload (its WorkloadVerdict `<kind>.<name>`), field by field as
/// `kubectl get wv -o yaml` shows them (`verdict`, `verifiedBy`, `reason`, `digests`, `since`,
/// `stale`, `digestDrift`, `changed`; lists joined by commas). Empty when there is none.
pub async fn recorded(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, String>> {
    let api: Api<WorkloadVerdict> = Api::namespaced(client.clone(), namespace);
    let record = format!("{}.{name}", kind.to_ascii_lowercase());
    let Some(object) = api.get_opt(&record).await? else {
        return Ok(BTreeMap::new());
    };
    Ok(verdict_fields(&object))
}

/// A WorkloadVerdict's fields as text, as [`recorded`] returns them.
pub fn verdict_fields(object: &WorkloadVerdict) -> BTreeMap<String, String> {
    let value = serde_json::to_value(&object.spec).unwrap_or_default();
    let Value::Object(fields) = value else {
        return BTreeMap::new();
    };
    fields
        .into_iter()
        .filter_map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                _ => return None,
            };
            Some((k, text))
        })
        .collect()
}

/// Waits until the workload's recorded verdict is `verdict`; returns its fields (see [`recorded`]).
pub async fn wait_verdict(
    client: &Client,
    (_, kind): (&str, &str),
    namespace: &str,
    name: &str,
    verdict: &str,
    within: Duration,
) -> BTreeMap<String, String> {
    eventually(
        &format!("{kind} {namespace}/{name} to be {verdict}"),
        within,
        || async {
            let a = recorded(client, kind, namespace, name).await?;
            let got = a.get("verdict").cloned().unwrap_or_default();
            ensure!(got == verdict, "verdict {got:?}; recorded {a:?}");
            Ok(a)
        },
    )
    .await
}

pub const DEPLOYMENT: (&str, &str) = ("apps/v1", "Deployment");
pub const POD: (&str, &str) = ("v1", "Pod");
pub const JOB: (&str, &str) = ("batch/v1", "Job");
pub const STATEFULSET: (&str, &str) = ("apps/v1", "StatefulSet");

/// One Event as a person reads it in `kubectl get events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub reason: String,
    pub type_: String,
    pub note: String,
    /// How many times it was emitted (the EventSeries count, 1 for a single event).
    pub count: i32,
}

/// The Events countersign published regarding `name` (of `kind`) in `namespace`.
pub async fn events(client: &Client, namespace: &str, kind: &str, name: &str) -> Result<Vec<Seen>> {
    let list = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some(countersign::operator::CONTROLLER))
        .filter(|e| {
            e.regarding
                .as_ref()
                .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
        })
        .map(|e| Seen {
            reason: e.reason.unwrap_or_default(),
            type_: e.type_.unwrap_or_default(),
            note: e.note.unwrap_or_default(),
            count: e.series.map_or(1, |s| s.count),
        })
        .collect())
}

/// Emissions by reason.
pub fn by_reason(events: &[Seen]) -> HashMap<String, i32> {
    let mut out = HashMap::new();
    for e in events {
        *out.entry(e.reason.clone()).or_default() += e.count;
    }
    out
}

/// Waits for an Event `reason` on the workload; returns it.
pub async fn wait_event(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
    reason: &str,
    within: Duration,
) -> Seen {
    eventually(
        &format!("a {reason} event on {kind} {namespace}/{name}"),
        within,
        || async {
            let all = events(client, namespace, kind, name).await?;
            match all.iter().find(|e| e.reason == reason) {
                Some(e) => Ok(e.clone()),
                None => bail!("events so far: {all:?}"),
            }
        },
    )
    .await
}

pub async fn status(client: &Client, name: &str) -> Result<TrustRootStatus> {
    Api::<TrustRoot>::all(client.clone())
        .get(name)
        .await?
        .status
        .context("no status yet")
}

/// When TrustRoot `name` last finished a re-verification sweep (`status.lastSweep.finishedAt`),
/// if it has.
pub async fn last_sweep(client: &Client, name: &str) -> Option<Time> {
    let status = status(client, name).await.ok()?;
    status.last_sweep.map(|s| s.finished_at)
}

/// Waits until TrustRoot `name` has finished `n` sweeps after the one `since` was read from
/// [`last_sweep`]. Something that changed after `since` is seen by the second sweep at the
/// latest (the first may have been under way already): waiting for sweeps, not for a number of
/// seconds, is what "within one re-verification interval" means on a machine of any speed.
///
/// Sweeps are at least 10 s apart (the smallest `reverifyInterval`) and `finishedAt` has a
/// resolution of one second, so each shows as a new value; a poll that misses one only waits
/// for one more.
pub async fn sweeps_after(client: &Client, name: &str, since: Option<Time>, n: usize, within: Duration) {
    let seen = std::cell::RefCell::new(Vec::<Time>::new());
    eventually(
        &format!("{n} sweeps of TrustRoot {name} after {since:?}"),
        within,
        || async {
            if let Some(t) = last_sweep(client, name).await {
                let mut seen = seen.borrow_mut();
                if Some(&t) > since.as_ref() && !seen.contains(&t) {
                    seen.push(t);
                }
            }
            let seen = seen.borrow();
            ensure!(seen.len() >= n, "sweeps seen: {seen:?}");
            Ok(())
        },
    )
    .await;
}

/// For the `wait_*` helpers: no waiting, it must hold already (checked once).
pub const AT_ONCE: Duration = Duration::ZERO;

pub fn condition<'a>(
    status: &'a TrustRootStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// Runs a blocking helper (crane, cosign) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking helper")
}
