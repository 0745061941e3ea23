//! kwok: the fake nodes and the pods on them (Pending → Running with the `imageID` a kubelet
//! would report), configured with the Stages `kwokctl` would hand it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};

use super::component::{Component, start_with_retry, wait_http};
use super::{COMPONENT_TIMEOUT, ClientContext, ClusterOptions, KWOK_NODE_ANNOTATION};

/// Pod IPs handed out by kwok; a /16 so a benchmark can run tens of thousands of pods.
const POD_CIDR: &str = "10.244.0.1/16";
/// The fake nodes' address. Loopback, so that anything that ever dials a node (logs, exec) stays
/// on this machine and reaches kwok's own server.
const NODE_IP: &str = "127.0.0.1";
const NODE_TIMEOUT: Duration = Duration::from_secs(60);

/// kwok, faking the nodes annotated `kwok.x-k8s.io/node=fake` and the pods scheduled onto them.
/// kwok alone applies no Stage at all ("no stages found"): kwokctl normally hands it its
/// defaults, so we hand it the same ones, see [`KWOK_STAGES`].
pub(super) async fn start_kwok(binary: &Path, ctx: &ClientContext<'_>) -> Result<Component> {
    let config = ctx.dir.join("kwok.yaml");
    std::fs::write(&config, KWOK_STAGES).with_context(|| format!("write {}", config.display()))?;
    let kubeconfig = ctx.kubeconfig.display().to_string();
    start_with_retry(
        1,
        |ports| {
            let args = vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--config={}", config.display()),
                "--manage-all-nodes=false".to_owned(),
                format!("--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake"),
                format!("--cidr={POD_CIDR}"),
                format!("--node-ip={NODE_IP}"),
                // The port a node advertises as its kubelet's, and kwok's own (plain HTTP) server.
                format!("--node-port={}", ports[0]),
                format!("--server-address=127.0.0.1:{}", ports[0]),
                // kwok renews a Lease per node, as kubelets do, so the node-lifecycle controller
                // never marks a fake node unreachable (and evicts its pods) in a long test.
                "--node-lease-duration-seconds=40".to_owned(),
            ];
            Component::spawn("kwok", binary, &args, ctx.dir)
        },
        |component, ports| {
            // kwok's server is plain HTTP.
            let url = format!("http://127.0.0.1:{}", ports[0]);
            wait_http(component, url, "/healthz", COMPONENT_TIMEOUT)
        },
    )
    .await
    .map(|(component, ())| component)
}

/// Creates the fake nodes: no taints, the annotation kwok selects on, and allocatable resources
/// (kwok's node stage keeps what the node declares).
pub(super) async fn create_nodes(client: &kube::Client, options: &ClusterOptions) -> Result<Vec<String>> {
    let api: Api<Node> = Api::all(client.clone());
    let mut names = Vec::with_capacity(options.nodes);
    for index in 0..options.nodes {
        let name = format!("kwok-node-{index}");
        let resources = serde_json::json!({
            "cpu": "1000",
            "memory": "1Ti",
            "pods": options.pods_per_node.to_string(),
        });
        let node: Node = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {
                    KWOK_NODE_ANNOTATION: "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                },
                "labels": {
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": resources, "capacity": resources},
        }))
        .context("build a Node")?;
        api.create(&PostParams::default(), &node)
            .await
            .with_context(|| format!("create node {name}"))?;
        names.push(name);
    }
    Ok(names)
}

/// Waits until kwok has made every node Ready (kwok's log is the one that explains a failure).
pub(super) async fn wait_nodes_ready(
    client: &kube::Client,
    names: &[String],
    kwok: &mut Component,
) -> Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    kwok.wait_until("making the nodes Ready", NODE_TIMEOUT, || async {
        for name in names {
            let node = api.get(name).await.with_context(|| format!("get node {name}"))?;
            let ready = node
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            if !ready {
                bail!("node {name} is not Ready");
            }
        }
        Ok(())
    })
    .await
}

/// The Stages kwok runs, as `kwokctl create cluster` configures them for kwok v0.8.0: node
/// initialisation and lease-based heartbeat (`kustomize/stage/node/{fast,heartbeat-with-lease}`)
/// and the fast pod lifecycle (`kustomize/stage/pod/fast`: Pending → Running, Job pods →
/// Succeeded, deletion). One addition, in pod-ready: kwok's own stage never sets
/// `containerStatuses[].imageID`; ours sets it from the pod annotation
/// `kwok.countersign.dev/image-id.<container>` when present, else to the image itself when that
/// is pinned by digest (as a kubelet reports it), else leaves it out like kwok does.
const KWOK_STAGES: &str = include_str!("kwok-stages.yaml");
