//! Leader election on a real Lease, against the real local control plane (kube-apiserver + etcd).
//!
//! - the library: exactly one of several candidates leads; a release hands over at once; a
//!   crashed leader's lease is taken over once it expires; a leader whose lease is taken learns it;
//! - the binary: two `countersign run` replicas elect one leader, and SIGTERM on the leader hands
//!   over within seconds;
//! - least privilege: `countersign run`, with the flags of `manifests/deployment.yaml` and exactly
//!   the RBAC of `manifests/rbac.yaml`, through a ServiceAccount token, leads, answers a Git push
//!   webhook, writes TrustRoot status, annotates workloads and emits Events without a single 403.

#[path = "operator_leader/history.rs"]
mod history;
#[path = "operator_leader/lease.rs"]
mod lease;
#[path = "operator_leader/least_privilege.rs"]
mod least_privilege;
#[path = "operator_leader/replicas.rs"]
mod replicas;

use std::time::Duration;

use countersign_tests::eventually;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use serde_json::json;

const NS: &str = "countersign-system";
/// The Lease `countersign run` uses by default.
const RUN_LEASE: &str = "countersign-controller";
/// A deadline for things that normally take a second or two: generous, so that only a real
/// failure, not a busy machine, reaches it. Durations that matter are printed, not bounded.
const WAIT: Duration = Duration::from_secs(60);

/// Who holds Lease `name` now.
async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get(name).await.expect("read the lease");
    lease.spec.and_then(|s| s.holder_identity)
}

async fn create_namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace(name))
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

/// Installs the CRDs the binary watches and waits until the API server serves them.
async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let all = countersign::crd::all();
    for crd in &all {
        crds.create(&PostParams::default(), crd)
            .await
            .expect("create a CRD");
    }
    eventually("the CRDs to be established", WAIT, || async {
        for crd in &all {
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            let served = crds.get(name).await?;
            let established = served
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Established" && c.status == "True");
            anyhow::ensure!(established, "{name} not established");
        }
        Ok(())
    })
    .await;
}
