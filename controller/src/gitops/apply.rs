//! Applying a revision all or nothing. [`plan`] is pure: from the revision and the objects in
//! the cluster to the writes needed (none when nothing changed, so an unchanged resync costs no
//! API write). [`execute`] first sends every write as a server-side dry run (so the apiserver's
//! schema and CEL rules judge the whole revision before anything changes), then for real, then
//! prunes.
//!
//! Writes use the field manager [`FIELD_MANAGER`], not the operator's: the operator writes
//! TrustRoot status under its own, so neither ever takes the other's fields.
//!
//! A manual edit is drift: a declared field that no longer has its declared value, or spec
//! fields owned by another field manager (a `kubectl edit` that added something). Drift is
//! reverted by replacing the object's spec with the declared one (a server-side apply cannot
//! remove fields another manager owns).

use std::collections::BTreeMap;

use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::ApiResource,
};
use serde_json::Value;

use super::{
    error::{Error, Location},
    read::{Declared, Kind, Revision},
};
use crate::crd::{KeyRotation, SOURCE_LABEL, TrustRoot};

/// The field manager of everything a TrustSource applies.
pub const FIELD_MANAGER: &str = "countersign-gitops";

/// An object of one of our kinds, as the cluster has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub kind: Kind,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: Value,
    /// Other field managers own fields of the spec.
    pub foreign_spec_owner: bool,
    /// The whole object, for a replace.
    pub object: Value,
}

/// Why an object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Create,
    /// Git changed it.
    Update,
    /// Someone changed it in the cluster.
    Drift,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub declared: Declared,
    pub why: Why,
    /// Replace the whole spec (drift with fields owned by others) rather than apply.
    pub replace: Option<Value>,
}

/// What a pass does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub prunes: Vec<(Kind, String)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.prunes.is_empty()
    }
}

/// The writes that make the cluster match `revision`. `source` is the TrustSource's name;
/// `unchanged_commit` says the commit is the one applied last time (so a difference is drift,
/// not a new commit).
pub fn plan(
    source: &str,
    revision: &Revision,
    live: &[Live],
    prune: bool,
    unchanged_commit: bool,
) -> Result<Plan, Error> {
    let index: BTreeMap<(Kind, &str), &Live> = live.iter().map(|l| ((l.kind, l.name.as_str()), l)).collect();
    let mut out = Plan::default();
    for declared in revision {
        let Some(current) = index.get(&(declared.kind, declared.name.as_str())) else {
            out.writes.push(Write {
                declared: declared.clone(),
                why: Why::Create,
                replace: None,
            });
            continue;
        };
        if let Some(owner) = current.labels.get(SOURCE_LABEL).filter(|o| o.as_str() != source) {
            return Err(Error::Invalid {
                location: Location {
                    file: Some(declared.file.clone()),
                    document: Some(declared.document),
                    field: Some("metadata.name".into()),
                },
                message: format!(
                    "{} {} is managed by the TrustSource {owner}",
                    declared.kind.as_str(),
                    declared.name
                ),
            });
        }
        let labelled = current.labels.get(SOURCE_LABEL).is_some_and(|o| o == source);
        let in_sync = contains(&current.spec, &declared.body["spec"])
            && contains(
                &serde_json::to_value(&current.labels).unwrap_or_default(),
                &declared.body["metadata"]["labels"],
            );
        if in_sync && !current.foreign_spec_owner {
            continue;
        }
        let why = if unchanged_commit && labelled {
            Why::Drift
        } else {
            Why::Update
        };
        let replace = current
            .foreign_spec_owner
            .then(|| replacement(&current.object, &declared.body));
        out.writes.push(Write {
            declared: declared.clone(),
            why,
            replace,
        });
    }
    if prune {
        for l in live {
            let ours = l.labels.get(SOURCE_LABEL).is_some_and(|o| o == source);
            if ours && !revision.iter().any(|d| d.kind == l.kind && d.name == l.name) {
                out.prunes.push((l.kind, l.name.clone()));
            }
        }
    }
    Ok(out)
}

/// Whether every field of `wanted` has the same value in `have` (objects: recursively; lists:
/// same length, item by item). Fields the apiserver defaulted are in `have` only, which is fine.
pub fn contains(have: &Value, wanted: &Value) -> bool {
    match (have, wanted) {
        (Value::Object(h), Value::Object(w)) => w
            .iter()
            .all(|(k, wv)| wv.is_null() || h.get(k).is_some_and(|hv| contains(hv, wv))),
        (Value::Array(h), Value::Array(w)) => {
            h.len() == w.len() && h.iter().zip(w).all(|(a, b)| contains(a, b))
        }
        (h, w) => h == w,
    }
}

/// The live object with the declared spec, labels and annotations: what a replace sends.
fn replacement(live: &Value, declared: &Value) -> Value {
    let mut object = live.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        // Drop the other managers' claims on the spec, or they would still own (and keep
        // flagging as drift) the fields this replace sets back.
        if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
            entries.retain(|m| {
                m["manager"] == FIELD_MANAGER || m.get("subresource").is_some_and(|s| !s.is_null())
            });
        }
        for field in ["labels", "annotations"] {
            let mut merged = meta
                .get(field)
                .cloned()
                .unwrap_or_else(|| Value::Object(Default::default()));
            if let (Some(m), Some(d)) = (merged.as_object_mut(), declared["metadata"][field].as_object()) {
                m.extend(d.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            meta.insert(field.into(), merged);
        }
    }
    object["spec"] = declared["spec"].clone();
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    object
}

/// Our two kinds in the cluster.
pub async fn list_live(client: &Client) -> Result<Vec<Live>, Error> {
    let mut out = Vec::new();
    for kind in [Kind::TrustRoot, Kind::KeyRotation] {
        let list = api(client, kind)
            .list(&ListParams::default())
            .await
            .map_err(|e| Error::Kube(format!("listing {}s: {e}", kind.as_str())))?;
        out.extend(list.items.into_iter().map(|o| live(kind, o)));
    }
    Ok(out)
}

fn live(kind: Kind, o: DynamicObject) -> Live {
    let foreign_spec_owner = o.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() != Some(FIELD_MANAGER)
            && m.subresource.is_none()
            && m.fields_v1.as_ref().is_some_and(|f| f.0.get("f:spec").is_some())
    });
    Live {
        kind,
        name: o.metadata.name.clone().unwrap_or_default(),
        labels: o.metadata.labels.clone().unwrap_or_default(),
        spec: o.data.get("spec").cloned().unwrap_or(Value::Null),
        foreign_spec_owner,
        object: serde_json::to_value(&o).unwrap_or(Value::Null),
    }
}

fn api(client: &Client, kind: Kind) -> Api<DynamicObject> {
    let resource = match kind {
        Kind::TrustRoot => ApiResource::erase::<TrustRoot>(&()),
        Kind::KeyRotation => ApiResource::erase::<KeyRotation>(&()),
    };
    Api::all_with(client.clone(), &resource)
}

/// Dry-runs every write, then writes, then prunes. A dry-run refusal writes nothing.
pub async fn execute(client: &Client, plan: &Plan) -> Result<(), Error> {
    for w in &plan.writes {
        write(client, w, true).await?;
    }
    for w in &plan.writes {
        write(client, w, false).await?;
    }
    for (kind, name) in &plan.prunes {
        match api(client, *kind).delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Kube(format!("pruning {} {name}: {e}", kind.as_str()))),
        }
    }
    Ok(())
}

async fn write(client: &Client, w: &Write, dry_run: bool) -> Result<(), Error> {
    let d = &w.declared;
    let api = api(client, d.kind);
    let result = match &w.replace {
        None => {
            let mut params = PatchParams::apply(FIELD_MANAGER).force();
            params.dry_run = dry_run;
            api.patch(&d.name, &params, &Patch::Apply(&d.body))
                .await
                .map(drop)
        }
        Some(object) => {
            let params = PostParams {
                dry_run,
                field_manager: Some(FIELD_MANAGER.into()),
            };
            match serde_json::from_value::<DynamicObject>(object.clone()) {
                Ok(o) => api.replace(&d.name, &params, &o).await.map(drop),
                Err(e) => {
                    return Err(Error::Kube(format!(
                        "replacing {} {}: {e}",
                        d.kind.as_str(),
                        d.name
                    )));
                }
            }
        }
    };
    result.map_err(|e| refused(d, &e, dry_run))
}

/// The apiserver's refusal, at the declared object's file and document, with the field it names.
fn refused(d: &Declared, e: &kube::Error, dry_run: bool) -> Error {
    let (field, message) = match e {
        kube::Error::Api(s) => (
            s.details
                .as_ref()
                .and_then(|d| d.causes.first())
                .map(|c| c.field.clone())
                .filter(|f| !f.is_empty()),
            s.message.clone(),
        ),
        other => (None, other.to_string()),
    };
    let location = Location {
        file: Some(d.file.clone()),
        document: Some(d.document),
        field,
    };
    let what = if dry_run {
        "refused by the API server (dry run)"
    } else {
        "refused by the API server"
    };
    Error::Apply {
        location,
        message: format!("{} {}: {what}: {message}", d.kind.as_str(), d.name),
    }
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
