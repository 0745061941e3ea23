//! Writing verdict annotations onto workloads: a JSON merge patch of our annotations only,
//! through the metadata API (the answer is metadata only, not the whole object).
//!
//! The patch carries the workload's uid: the API server refuses it when the name now belongs
//! to another object (deleted and re-created), so a verdict never lands on the wrong one.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::{CronJob, Job},
    core::v1::Pod,
};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    core::NamespaceResourceScope,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    annotations::ours,
    error::Error,
    index::Index,
    status::FIELD_MANAGER,
    workload::{WorkloadKind, WorkloadRef},
};

/// Applies `patch` to `workload` and returns our annotations as they are now on it.
pub async fn annotate(
    client: &Client,
    workload: &WorkloadRef,
    patch: &Value,
) -> Result<BTreeMap<String, String>, Error> {
    let mut patch = patch.clone();
    patch["metadata"]["uid"] = Value::String(workload.uid.clone());
    let result = match workload.kind {
        WorkloadKind::Deployment => send::<Deployment>(client, workload, &patch).await,
        WorkloadKind::StatefulSet => send::<StatefulSet>(client, workload, &patch).await,
        WorkloadKind::DaemonSet => send::<DaemonSet>(client, workload, &patch).await,
        WorkloadKind::ReplicaSet => send::<ReplicaSet>(client, workload, &patch).await,
        WorkloadKind::Job => send::<Job>(client, workload, &patch).await,
        WorkloadKind::CronJob => send::<CronJob>(client, workload, &patch).await,
        WorkloadKind::Pod => send::<Pod>(client, workload, &patch).await,
    };
    result.map_err(|source| Error::Annotate {
        workload: workload.to_string(),
        source,
    })
}

async fn send<K>(
    client: &Client,
    workload: &WorkloadRef,
    patch: &Value,
) -> Result<BTreeMap<String, String>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &workload.namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let updated = api
        .patch_metadata(&workload.name, &params, &Patch::Merge(patch))
        .await?;
    Ok(ours(updated.metadata.annotations.as_ref()))
}

/// Puts what was just written into the index at once, so that the next pass compares against
/// it even before the watch delivers the update.
pub fn remember(index: &Index, workload: &WorkloadRef, annotations: BTreeMap<String, String>) {
    let key = (workload.namespace.clone(), workload.name.clone());
    match index.metas(workload.kind) {
        Some(mirror) => mirror.write(|m| {
            if let Some(meta) = m.get_mut(&key).filter(|meta| meta.uid == workload.uid) {
                meta.annotations = annotations;
            }
        }),
        None => index.pods.write(|m| {
            if let Some(pod) = m.get_mut(&key).filter(|p| p.uid == workload.uid) {
                pod.annotations = annotations;
            }
        }),
    }
}
