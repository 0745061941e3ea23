//! Where a workload's verdict is recorded: a `WorkloadVerdict` of its namespace named after it
//! (`deployment.web`), owned by it. Pure: names, and the conversion between the object and the
//! [`Recorded`] state a pass derives. Writing is in `writes.rs`, watching in `watch.rs`.
//!
//! The object is also the operator's memory across restarts: after one, the previous verdict is
//! read back from it, so nothing is announced twice.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::ObjectMeta;
use sha2::{Digest, Sha256};

use super::{
    index::Key,
    verdict::{Recorded, Verdict},
    workload::{WorkloadKind, WorkloadRef},
};
use crate::crd::{VerdictSubject, WorkloadVerdict, WorkloadVerdictFields};

/// An object name is a DNS subdomain: at most 253 characters.
const MAX_NAME: usize = 253;

/// A recorded verdict as watched: about which object (uid) and what it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub workload_uid: String,
    pub recorded: Recorded,
}

/// `<kind>.<name>`, lower-case kind: a Deployment and a Pod of one name get two records. A name
/// too long for that keeps its start and a hash of the whole.
pub fn name(kind: WorkloadKind, workload: &str) -> String {
    let kind = kind.as_str().to_ascii_lowercase();
    let full = format!("{kind}.{workload}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = hex::encode(&Sha256::digest(workload.as_bytes())[..8]);
    // ASCII only: workload names are DNS subdomains themselves.
    let keep = MAX_NAME - kind.len() - hash.len() - 2;
    format!("{kind}.{}.{hash}", workload[..keep].trim_end_matches(['.', '-']))
}

/// Where the record of `workload` is kept in the index: its namespace and [`name`].
pub fn key(workload: &WorkloadRef) -> Key {
    (workload.namespace.clone(), name(workload.kind, &workload.name))
}

/// The object that records `r` on `workload`, ready for server-side apply.
pub fn object(workload: &WorkloadRef, r: &Recorded) -> WorkloadVerdict {
    let kind = workload.kind;
    let owner = OwnerReference {
        api_version: kind.api_version().to_string(),
        kind: kind.as_str().to_string(),
        name: workload.name.clone(),
        uid: workload.uid.clone(),
        ..OwnerReference::default()
    };
    WorkloadVerdict {
        metadata: ObjectMeta {
            name: Some(name(kind, &workload.name)),
            namespace: Some(workload.namespace.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: fields(workload, r),
    }
}

fn fields(workload: &WorkloadRef, r: &Recorded) -> WorkloadVerdictFields {
    WorkloadVerdictFields {
        workload: VerdictSubject {
            api_version: workload.kind.api_version().to_string(),
            kind: workload.kind.as_str().to_string(),
            name: workload.name.clone(),
            uid: workload.uid.clone(),
        },
        verdict: r.verdict.unwrap_or(Verdict::Unknown).as_str().to_string(),
        verified_by: r.verified_by.clone(),
        reason: r.reason.clone(),
        causes: r.causes.clone(),
        digests: r.digests.clone(),
        since: r.since.clone(),
        stale: r.stale.clone(),
        digest_drift: r.drift.clone(),
        changed: r.changed.clone(),
    }
}

/// What a watched object records; `None` when its verdict is unreadable (edited by hand into
/// something else): then it is as if nothing was recorded, and the next pass rewrites it.
pub fn stored(object: &WorkloadVerdict) -> Option<Stored> {
    let f = &object.spec;
    Some(Stored {
        workload_uid: f.workload.uid.clone(),
        recorded: Recorded {
            verdict: Some(Verdict::parse(&f.verdict)?),
            verified_by: f.verified_by.clone(),
            reason: f.reason.clone(),
            causes: f.causes.clone(),
            digests: f.digests.clone(),
            since: f.since.clone(),
            stale: f.stale.clone(),
            drift: f.digest_drift.clone(),
            changed: f.changed.clone(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> WorkloadRef {
        WorkloadRef {
            kind: WorkloadKind::Deployment,
            namespace: "shop".into(),
            name: "web".into(),
            uid: "uid-web".into(),
        }
    }

    #[test]
    fn an_object_reads_back_as_what_it_records() {
        let object = object(&web(), &Recorded::example());
        assert_eq!(object.metadata.name.as_deref(), Some("deployment.web"));
        assert_eq!(object.metadata.namespace.as_deref(), Some("shop"));
        let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "uid-web")
        );
        let stored = stored(&object).unwrap();
        assert_eq!(stored.workload_uid, "uid-web");
        assert_eq!(stored.recorded, Recorded::example());
    }

    #[test]
    fn the_wire_form_has_no_spec_and_omits_what_is_empty() {
        let value = serde_json::to_value(object(&web(), &Recorded::example())).unwrap();
        assert_eq!(value["verdict"], "Verified");
        assert_eq!(value["workload"]["kind"], "Deployment");
        assert_eq!(value["verifiedBy"], serde_json::json!(["prod/a", "prod/b"]));
        assert!(value.get("spec").is_none());
        assert!(value.get("reason").is_none());
    }

    #[test]
    fn an_unreadable_verdict_is_as_if_nothing_was_recorded() {
        let mut object = object(&web(), &Recorded::example());
        object.spec.verdict = "Maybe".into();
        assert_eq!(stored(&object), None);
    }

    #[test]
    fn names_are_per_kind_and_never_too_long() {
        assert_eq!(name(WorkloadKind::Pod, "web"), "pod.web");
        let long = "a".repeat(253);
        let n = name(WorkloadKind::StatefulSet, &long);
        assert!(n.len() <= MAX_NAME, "{}", n.len());
        assert!(n.starts_with("statefulset.aaa"));
        assert_ne!(n, name(WorkloadKind::StatefulSet, &format!("{}b", &long[..252])));
    }
}
