//! TrustSource status and Events, built purely from the outcome of a pass and the previous
//! status; written by server-side apply on the status subresource under the gitops field manager,
//! and only when it changed (an unchanged resync writes nothing).

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{
    apply::{FIELD_MANAGER, Why},
    error::Error,
};
use crate::crd::{InventoryEntry, TrustSource, TrustSourceStatus};

pub const SYNCED: &str = "Synced";
pub const SYNC_FAILED: &str = "SyncFailed";
pub const MANUAL_EDIT_REVERTED: &str = "ManualEditReverted";

/// A pass that applied its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub revision: String,
    pub inventory: Vec<InventoryEntry>,
    /// The objects written, and why.
    pub written: Vec<(String, Why)>,
    pub pruned: Vec<String>,
}

/// What a pass came to.
#[derive(Debug)]
pub struct Outcome {
    /// The revision fetched, when the fetch got that far.
    pub attempted: Option<String>,
    pub result: Result<Applied, Error>,
}

/// The status after `outcome`.
pub fn build(
    previous: &TrustSourceStatus,
    generation: Option<i64>,
    requested_at: Option<&str>,
    outcome: &Outcome,
    now: Timestamp,
) -> TrustSourceStatus {
    let (ok, reason, message) = match &outcome.result {
        Ok(a) => (
            true,
            "Synced".to_string(),
            format!("applied {}: {} object(s)", a.revision, a.inventory.len()),
        ),
        Err(e) => {
            let kept = match &previous.last_applied_revision {
                Some(r) => format!("; {r} stays in force"),
                None => "; nothing is applied until it is fixed".into(),
            };
            (false, e.reason().to_string(), format!("{e}{kept}"))
        }
    };
    let status = if ok { "True" } else { "False" };
    let kept_time = previous
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == status)
        .map(|c| c.last_transition_time.clone());
    let ready = Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason,
        message: crate::operator::verdict::truncate_to(&message, 4096),
        observed_generation: generation,
        last_transition_time: kept_time.unwrap_or(Time(now)),
    };
    let mut next = TrustSourceStatus {
        observed_generation: generation,
        conditions: vec![ready],
        last_applied_revision: previous.last_applied_revision.clone(),
        last_attempted_revision: outcome
            .attempted
            .clone()
            .or_else(|| previous.last_attempted_revision.clone()),
        last_handled_requested_at: requested_at
            .map(str::to_string)
            .or_else(|| previous.last_handled_requested_at.clone()),
        failure: None,
        inventory: previous.inventory.clone(),
    };
    match &outcome.result {
        Ok(a) => {
            next.last_applied_revision = Some(a.revision.clone());
            next.inventory = a.inventory.clone();
        }
        Err(e) => next.failure = Some(e.failure()),
    }
    next
}

/// An Event to publish on the TrustSource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub reason: &'static str,
    pub warning: bool,
    pub note: String,
}

/// What to announce: a new revision applied, manual edits reverted (once: after the revert
/// there is no drift left), a failure that is new (not the same one again).
pub fn announcements(
    previous: &TrustSourceStatus,
    next: &TrustSourceStatus,
    outcome: &Outcome,
) -> Vec<Announcement> {
    let mut out = Vec::new();
    match &outcome.result {
        Ok(a) => {
            let drifted: Vec<&str> = a
                .written
                .iter()
                .filter(|(_, why)| *why == Why::Drift)
                .map(|(n, _)| n.as_str())
                .collect();
            if !drifted.is_empty() {
                out.push(Announcement {
                    reason: MANUAL_EDIT_REVERTED,
                    warning: true,
                    note: format!(
                        "reverted manual edits of {} to {}",
                        drifted.join(", "),
                        a.revision
                    ),
                });
            }
            if previous.last_applied_revision.as_deref() != Some(a.revision.as_str()) {
                let changed: Vec<&str> = a.written.iter().map(|(n, _)| n.as_str()).collect();
                let mut note = format!("applied {}", a.revision);
                if !changed.is_empty() {
                    note.push_str(&format!("; wrote {}", changed.join(", ")));
                }
                if !a.pruned.is_empty() {
                    note.push_str(&format!("; pruned {}", a.pruned.join(", ")));
                }
                out.push(Announcement {
                    reason: SYNCED,
                    warning: false,
                    note,
                });
            }
        }
        Err(_) => {
            let same = previous.failure == next.failure
                && previous.last_attempted_revision == next.last_attempted_revision;
            if !same {
                let message = next
                    .conditions
                    .first()
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                out.push(Announcement {
                    reason: SYNC_FAILED,
                    warning: true,
                    note: message,
                });
            }
        }
    }
    out
}

/// Applies `status` to the TrustSource `name`.
pub async fn write(client: &Client, name: &str, status: &TrustSourceStatus) -> Result<(), Error> {
    let body = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "TrustSource",
        "metadata": {"name": name},
        "status": status,
    });
    Api::<TrustSource>::all(client.clone())
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map(drop)
        .map_err(|e| Error::Kube(format!("updating the status of TrustSource {name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitops::error::invalid;

    fn applied(revision: &str, written: Vec<(String, Why)>) -> Outcome {
        Outcome {
            attempted: Some(revision.into()),
            result: Ok(Applied {
                revision: revision.into(),
                inventory: vec![InventoryEntry {
                    kind: "TrustRoot".into(),
                    name: "a".into(),
                }],
                written,
                pruned: vec![],
            }),
        }
    }

    fn reasons(previous: &TrustSourceStatus, outcome: &Outcome) -> (TrustSourceStatus, Vec<&'static str>) {
        let next = build(previous, Some(1), None, outcome, Timestamp::UNIX_EPOCH);
        let r = announcements(previous, &next, outcome)
            .iter()
            .map(|a| a.reason)
            .collect();
        (next, r)
    }

    #[test]
    fn a_broken_commit_keeps_the_last_good_revision_and_says_why_once() {
        let (good, r) = reasons(
            &TrustSourceStatus::default(),
            &applied("main@sha1:1", vec![("a".into(), Why::Create)]),
        );
        assert_eq!(r, [SYNCED]);
        assert_eq!(good.conditions[0].status, "True");
        let broken = Outcome {
            attempted: Some("main@sha1:2".into()),
            result: Err(invalid("a.yaml", Some(0), Some("spec.keys"), "bad")),
        };
        let (failed, r) = reasons(&good, &broken);
        assert_eq!(r, [SYNC_FAILED]);
        assert_eq!(failed.last_applied_revision.as_deref(), Some("main@sha1:1"));
        assert_eq!(failed.last_attempted_revision.as_deref(), Some("main@sha1:2"));
        assert_eq!(failed.conditions[0].reason, "InvalidObject");
        assert!(
            failed.conditions[0]
                .message
                .ends_with("main@sha1:1 stays in force")
        );
        assert_eq!(failed.inventory, good.inventory);
        // The same failure again is not announced again, and the status does not change.
        let (again, r) = reasons(&failed, &broken);
        assert!(r.is_empty());
        assert_eq!(again, failed);
        let (recovered, r) = reasons(&failed, &applied("main@sha1:3", vec![]));
        assert_eq!(r, [SYNCED]);
        assert_eq!(recovered.failure, None);
    }

    #[test]
    fn an_unchanged_resync_changes_nothing_and_drift_is_announced() {
        let (first, _) = reasons(&TrustSourceStatus::default(), &applied("main@sha1:1", vec![]));
        let (second, r) = reasons(&first, &applied("main@sha1:1", vec![]));
        assert!(r.is_empty());
        assert_eq!(second, first);
        let (_, r) = reasons(&first, &applied("main@sha1:1", vec![("a".into(), Why::Drift)]));
        assert_eq!(r, [MANUAL_EDIT_REVERTED]);
    }
}
