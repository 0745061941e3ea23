//! Admission tests and benchmark: the operator with its webhooks on 127.0.0.1 (in-process), the
//! webhook configurations of `manifests/webhooks.yaml` pointed at it, and object creation
//! through the real API server with what it answered (status, message, admission warnings).

use std::{net::SocketAddr, time::Duration};

use crate::{
    bench::{LEASE_NAMESPACE, POLL},
    cluster::LocalCluster,
    repo_root,
};
use countersign::{
    admission::{self, certs::Names, tls::CertConfig},
    operator::{self, Listeners},
};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};

pub const CONFIGURATION: &str = "countersign";
pub const CERT_SECRET: &str = "countersign-webhook-tls";

/// An in-process operator serving the webhooks.
pub struct Replica {
    running: crate::InProcess,
    pub admission: SocketAddr,
    pub metrics: SocketAddr,
}

impl Replica {
    pub async fn start(cluster: &LocalCluster, identity: &str) -> Replica {
        let config = operator::Config {
            admission: Some(admission::Config {
                addr: "127.0.0.1:0".parse().expect("address"),
                certs: CertConfig {
                    namespace: LEASE_NAMESPACE.into(),
                    secret: CERT_SECRET.into(),
                    configuration: CONFIGURATION.into(),
                    names: Names {
                        dns: vec!["countersign-webhook.countersign-system.svc".into()],
                        ips: vec!["127.0.0.1".parse().expect("ip")],
                    },
                    ca_validity: Duration::from_secs(3650 * 86_400),
                    cert_validity: Duration::from_secs(90 * 86_400),
                    manage: true,
                },
                deadline: Duration::from_secs(5),
                max_stale: Duration::from_secs(600),
                excluded_namespaces: vec!["kube-system".into(), LEASE_NAMESPACE.into()],
                pin_all: false,
            }),
            ..crate::operator_config(identity)
        };
        let listeners = Listeners::bind(&config)
            .await
            .expect("bind the operator's addresses");
        let metrics = listeners.metrics.local_addr().expect("metrics address");
        let admission = listeners
            .admission
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .expect("admission address");
        let running = crate::InProcess::start_on(cluster.client(), config, listeners);
        Replica {
            running,
            admission,
            metrics,
        }
    }

    pub async fn stop(self) {
        self.running.stop().await;
    }
}

/// The webhook configuration of `manifests/webhooks.yaml` (and, with `pinning`, the mutating
/// one of `manifests/pin-digests/`), each webhook called at the URL of a replica instead of the
/// in-cluster Service (one copy of every webhook per replica, so that every replica is asked).
pub async fn install_webhooks(client: &Client, replicas: &[SocketAddr], pinning: bool) {
    let mut files = vec!["manifests/webhooks.yaml"];
    if pinning {
        files.push("manifests/pin-digests/mutating-webhook.yaml");
    }
    for file in files {
        let path = repo_root().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        install(client, replicas, docs, &path).await;
    }
}

async fn install(client: &Client, replicas: &[SocketAddr], docs: Vec<Value>, path: &std::path::Path) {
    for mut doc in docs.into_iter().filter(|d| !d.is_null()) {
        let hooks = doc["webhooks"].as_array().cloned().unwrap_or_default();
        let mut out = Vec::new();
        for (i, addr) in replicas.iter().enumerate() {
            for hook in &hooks {
                let mut hook = hook.clone();
                let path = hook["clientConfig"]["service"]["path"]
                    .as_str()
                    .unwrap_or("/")
                    .to_string();
                hook["clientConfig"] = json!({"url": format!("https://{addr}{path}")});
                let name = hook["name"].as_str().unwrap_or_default().to_string();
                hook["name"] = json!(format!("r{i}.{name}"));
                out.push(hook);
            }
        }
        doc["webhooks"] = Value::Array(out);
        match doc["kind"].as_str() {
            Some("ValidatingWebhookConfiguration") => {
                let api = Api::<ValidatingWebhookConfiguration>::all(client.clone());
                let _ = api.delete(CONFIGURATION, &DeleteParams::default()).await;
                let object = serde_json::from_value(doc).expect("a ValidatingWebhookConfiguration");
                api.create(&PostParams::default(), &object)
                    .await
                    .expect("create it");
            }
            Some("MutatingWebhookConfiguration") => {
                let api = Api::<MutatingWebhookConfiguration>::all(client.clone());
                let _ = api.delete(CONFIGURATION, &DeleteParams::default()).await;
                let object = serde_json::from_value(doc).expect("a MutatingWebhookConfiguration");
                api.create(&PostParams::default(), &object)
                    .await
                    .expect("create it");
            }
            other => panic!("{}: unexpected kind {other:?}", path.display()),
        }
    }
}

/// Waits (up to a minute) until the operator has filled in the caBundle of every webhook of the
/// configurations there are.
pub async fn wait_ca_bundles(client: &Client) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .get_opt(CONFIGURATION)
            .await?;
        let m = Api::<MutatingWebhookConfiguration>::all(client.clone())
            .get_opt(CONFIGURATION)
            .await?;
        let validating = v
            .iter()
            .flat_map(|c| c.webhooks.iter().flatten())
            .map(|w| &w.client_config.ca_bundle);
        let mutating = m
            .iter()
            .flat_map(|c| c.webhooks.iter().flatten())
            .map(|w| &w.client_config.ca_bundle);
        let filled = validating
            .chain(mutating)
            .all(|b| b.as_ref().is_some_and(|b| !b.0.is_empty()));
        if filled {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "caBundle not filled in within 60 s"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// What the API server answered to a create.
#[derive(Debug)]
pub struct Created {
    pub code: u16,
    /// The object as stored (2xx) or the Status (errors).
    pub body: Value,
    /// The `Warning` headers' texts (RFC 7234: `299 - "text"`).
    pub warnings: Vec<String>,
}

impl Created {
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

/// POSTs `object` to `path` (e.g. `/api/v1/namespaces/x/pods`) as the admin, with `dry_run`.
pub async fn post(client: &Client, path: &str, object: &Value, dry_run: bool) -> Created {
    let uri = if dry_run {
        format!("{path}?dryRun=All")
    } else {
        path.to_string()
    };
    let request = http::Request::post(uri)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(object.to_string().into_bytes()))
        .expect("a request");
    let response = client.send(request).await.expect("the API server answers");
    let code = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| {
            // 299 - "text": the text between the first and the last quote.
            let text = v.split_once('"').map_or(v, |(_, rest)| rest);
            text.rsplit_once('"')
                .map_or(text, |(t, _)| t)
                .replace("\\\"", "\"")
        })
        .collect();
    let bytes = response.into_body().collect_bytes().await.expect("a body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Created { code, body, warnings }
}

/// A bare pod of `image`.
pub fn pod(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]},
    })
}

/// A Deployment of `image`.
pub fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

pub fn pods_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods")
}

pub fn deployments_path(namespace: &str) -> String {
    format!("/apis/apps/v1/namespaces/{namespace}/deployments")
}

/// A series' value on a replica's `/metrics` (0 when absent).
pub async fn metric(addr: SocketAddr, series: &str) -> f64 {
    let metrics = crate::bench::scrape_metrics(&addr.to_string())
        .await
        .unwrap_or_default();
    crate::bench::value(&metrics, series)
}
