//! The local control plane is real: a Deployment becomes a ReplicaSet and Running pods on a kwok
//! node (controller-manager, scheduler and kwok at work), kwok reports the image IDs our stage
//! promises, and RBAC refuses a ServiceAccount until a Role grants it.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use countersign_tests::cluster::{IMAGE_ID_ANNOTATION_PREFIX, LocalCluster, create};
use countersign_tests::eventually;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const NS: &str = "smoke";
const IMAGE: &str = "127.0.0.1:5000/demo:v1";
const PULLED: &str =
    "127.0.0.1:5000/demo@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn local_control_plane_schedules_runs_and_enforces_rbac() {
    let started = Instant::now();
    let cluster = LocalCluster::start()
        .await
        .expect("start the local control plane");
    eprintln!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    let client = cluster.client();
    create(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {"name": NS}}),
    )
    .await;

    let deployed = Instant::now();
    create(&Api::<Deployment>::namespaced(client.clone(), NS), deployment()).await;
    let replicasets: Api<ReplicaSet> = Api::namespaced(client.clone(), NS);
    eventually("a ReplicaSet owned by Deployment web", WAIT, || async {
        let list = replicasets.list(&ListParams::default().labels("app=web")).await?;
        let owned = list.items.iter().any(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Deployment" && o.name == "web")
        });
        ensure!(owned, "{} ReplicaSets, none owned by web", list.items.len());
        Ok(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let running = eventually("3 Running pods of web on a kwok node", WAIT, || async {
        let list = pods.list(&ListParams::default().labels("app=web")).await?;
        let running: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| is_running_on(p, cluster.node_names()))
            .collect();
        ensure!(
            running.len() == 3,
            "{} of 3 Running on a kwok node",
            running.len()
        );
        Ok(running)
    })
    .await;
    eprintln!("deployment running in {:.1}s", deployed.elapsed().as_secs_f64());
    for pod in &running {
        assert_eq!(
            image_ids(pod),
            vec![PULLED.to_owned()],
            "imageID from the annotation"
        );
    }

    // A pod pinned by digest reports that digest, as a kubelet would; no annotation needed.
    create(&pods.clone(), bare_pod("pinned", PULLED)).await;
    let pinned = eventually("pod pinned Running", WAIT, || async {
        let pod = pods.get("pinned").await?;
        ensure!(is_running_on(&pod, cluster.node_names()), "not Running yet");
        Ok(pod)
    })
    .await;
    assert_eq!(
        image_ids(&pinned),
        vec![PULLED.to_owned()],
        "imageID of a digest-pinned image"
    );

    check_rbac(&cluster).await;
    let stopping = Instant::now();
    cluster.stop();
    eprintln!("cluster stopped in {:.1}s", stopping.elapsed().as_secs_f64());
}

/// A ServiceAccount without a binding is forbidden to list pods; with a Role bound, it may.
async fn check_rbac(cluster: &LocalCluster) {
    let client = cluster.client();
    create(
        &Api::<ServiceAccount>::namespaced(client.clone(), NS),
        json!({"metadata": {"name": "reader"}}),
    )
    .await;
    let token = Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create_token_request("reader", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("issue a ServiceAccount token")
        .status
        .expect("token status")
        .token
        .expect("a token in the status");
    let as_reader: Api<Pod> = Api::namespaced(cluster.client_with_token(&token), NS);

    match as_reader.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("an unbound ServiceAccount must be forbidden to list pods, got {other:?}"),
    }

    let role = json!({
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
    });
    create(&Api::<Role>::namespaced(client.clone(), NS), role).await;
    let binding = json!({
        "metadata": {"name": "reader-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}],
    });
    create(&Api::<RoleBinding>::namespaced(client.clone(), NS), binding).await;
    eventually("the bound ServiceAccount to list pods", WAIT, || async {
        as_reader
            .list(&ListParams::default())
            .await
            .map(drop)
            .context("list pods as reader")
    })
    .await;
}

fn deployment() -> serde_json::Value {
    json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {
                    "labels": {"app": "web"},
                    // What the kubelet would report having pulled for the tag.
                    "annotations": {format!("{IMAGE_ID_ANNOTATION_PREFIX}app"): PULLED},
                },
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        },
    })
}

fn bare_pod(name: &str, image: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]},
    })
}

fn is_running_on(pod: &Pod, nodes: &[String]) -> bool {
    let on_node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_ref())
        .is_some_and(|n| nodes.contains(n));
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    on_node && phase == Some("Running")
}

fn image_ids(pod: &Pod) -> Vec<String> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| c.image_id.clone())
        .collect()
}
