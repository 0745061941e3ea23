//! Writing verdicts: server-side apply of a workload's `WorkloadVerdict` (see `records`), its
//! deletion when no TrustRoot governs the workload any more, and the removal of the annotations
//! earlier versions wrote on workloads.
//!
//! The record names its workload's uid and is owned by it: a workload deleted and re-created
//! under the same name gets its own verdict, and the garbage collector removes the old one.
//! The annotation patch carries the workload's uid, so the API server refuses it when the name
//! now belongs to another object.

use std::collections::BTreeMap;

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::{CronJob, Job},
    core::v1::Pod,
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, Patch, PatchParams},
    core::NamespaceResourceScope,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{
    annotations::ours,
    error::Error,
    index::Index,
    records::{self, Stored},
    status::FIELD_MANAGER,
    verdict::Recorded,
    workload::{WorkloadKind, WorkloadRef},
};
use crate::crd::WorkloadVerdict;

/// Records `r` as the verdict of `workload` (creates or updates its WorkloadVerdict) and
/// returns what the API server now holds.
pub async fn record(client: &Client, workload: &WorkloadRef, r: &Recorded) -> Result<Option<Stored>, Error> {
    let object = records::object(workload, r);
    let api: Api<WorkloadVerdict> = Api::namespaced(client.clone(), &workload.namespace);
    let name = object.metadata.name.as_deref().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch(name, &params, &Patch::Apply(&object)).await {
        Ok(applied) => Ok(records::stored(&applied)),
        Err(source) => Err(Error::Record {
            workload: workload.to_string(),
            source,
        }),
    }
}

/// Deletes the WorkloadVerdict of `workload`; one already gone is fine.
pub async fn unrecord(client: &Client, workload: &WorkloadRef) -> Result<(), Error> {
    let api: Api<WorkloadVerdict> = Api::namespaced(client.clone(), &workload.namespace);
    let name = records::name(workload.kind, &workload.name);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::Record {
            workload: workload.to_string(),
            source,
        }),
    }
}

/// Puts what was just recorded (or deleted: `None`) into the index at once, so that the next
/// pass compares against it even before the watch delivers it.
pub fn remember_record(index: &Index, workload: &WorkloadRef, stored: Option<Stored>) {
    let key = records::key(workload);
    index.verdicts.write(|m| match stored {
        Some(s) => m.insert(key, s),
        None => m.remove(&key),
    });
}

/// Applies `patch` (removing the annotations of earlier versions) to `workload` and returns our
/// annotations as they are now on it.
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

/// Puts the annotations just written into the index at once, so that the next pass compares
/// against them even before the watch delivers the update.
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
