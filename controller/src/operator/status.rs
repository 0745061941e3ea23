//! TrustRoot status: built purely from what the pass saw, written by server-side apply on the
//! status subresource under our field manager (only the fields we send are ours, and fields we
//! stop sending are removed).
//!
//! Conditions, each with the generation it was computed from:
//! - `KeysValid`: every declared key can be used; otherwise the message names each bad field
//!   (`spec.keys[1].publicKey: not a PEM public key: …`).
//! - `Ready`: the spec is valid, enough keys are accepted for the threshold, and a sweep ran.
//!   When the spec is invalid, the message names the fields and says which generation (if any)
//!   stays in force.
//!
//! `lastTransitionTime` and each key's `since` only move when the status they describe flips.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};
use serde_json::json;

use super::{error::Error, trust::RootReport};
use crate::crd::{FieldError, KeyState, KeyStatus, SweepSummary, TrustRoot, TrustRootStatus, WorkloadCounts};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = super::CONTROLLER;

/// Builds conditions for one object: each carries the generation it was computed from, and keeps
/// its `lastTransitionTime` while its status stays what it was.
pub struct Conditions<'a> {
    pub previous: &'a [Condition],
    pub generation: Option<i64>,
    pub now: Timestamp,
}

impl Conditions<'_> {
    pub fn set(&self, type_: &str, ok: bool, reason: &str, message: String) -> Condition {
        let status = if ok { "True" } else { "False" };
        let kept = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone());
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: truncate_message(&message),
            observed_generation: self.generation,
            last_transition_time: kept.unwrap_or(Time(self.now)),
        }
    }
}

/// What a pass observed about one TrustRoot besides its report.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    pub counts: WorkloadCounts,
    /// The last sweep of this root, when one ran.
    pub last_sweep: Option<SweepSummary>,
    /// Each declared key's state with rotations applied (`rotation::key_states`); the report's
    /// own when `None`.
    pub keys: Option<Vec<KeyStatus>>,
}

/// The status to write.
pub fn build(
    report: &RootReport,
    observed: &Observed,
    previous: Option<&TrustRootStatus>,
    now: Timestamp,
) -> TrustRootStatus {
    let conditions = Conditions {
        previous: previous.map(|p| p.conditions.as_slice()).unwrap_or_default(),
        generation: report.generation,
        now,
    };
    let keys = key_states(report, observed, previous, now);
    let (ready_ok, reason, message) = readiness(report, observed, &keys);
    let keys_ok = report.key_errors.is_empty();
    let keys_valid = if keys_ok {
        let message = format!("{} key(s) loaded", report.keys.len());
        conditions.set("KeysValid", true, "KeysLoaded", message)
    } else {
        conditions.set("KeysValid", false, "InvalidKey", join(&report.key_errors))
    };
    let retired = retired_keys(&keys);
    let retired_removed = if retired.is_empty() {
        let message = "no retired key is declared".into();
        conditions.set("RetiredKeysRemoved", true, "NoRetiredKeys", message)
    } else {
        let message = format!(
            "remove from spec.keys: {}; retired keys are never accepted again while declared",
            retired.join(", ")
        );
        conditions.set("RetiredKeysRemoved", false, "RetiredKeyDeclared", message)
    };
    let accepted = accepted_keys(report, &keys);
    TrustRootStatus {
        observed_generation: report.generation,
        conditions: vec![
            conditions.set("Ready", ready_ok, reason, message),
            keys_valid,
            retired_removed,
        ],
        accepted_keys: (!accepted.is_empty()).then(|| accepted.join(",")),
        keys,
        workloads: Some(observed.counts),
        last_sweep: observed.last_sweep.clone(),
    }
}

/// Each declared key's state (with rotations applied when the pass observed them), and since
/// when: a rotation says when its states began; otherwise a state began when it was first seen.
fn key_states(
    report: &RootReport,
    observed: &Observed,
    previous: Option<&TrustRootStatus>,
    now: Timestamp,
) -> Vec<KeyStatus> {
    let mut keys = observed.keys.clone().unwrap_or_else(|| report.keys.clone());
    for key in &mut keys {
        let before = previous.and_then(|p| p.keys.iter().find(|k| k.name == key.name));
        key.since = key.since.clone().or_else(|| match before {
            Some(b) if b.state == key.state && b.fingerprint == key.fingerprint => b.since.clone(),
            _ => Some(Time(now)),
        });
    }
    keys
}

/// What verifies now: the keys of the generation in force (which may be an earlier one), less
/// those a rotation holds back or retired.
fn accepted_keys<'r>(report: &'r RootReport, keys: &[KeyStatus]) -> Vec<&'r str> {
    report
        .active
        .iter()
        .flat_map(|a| a.keys.names())
        .filter(|name| {
            keys.iter()
                .find(|k| k.name == *name)
                .is_none_or(|k| is_accepted(k.state))
        })
        .collect()
}

/// The retired keys still declared, each with the KeyRotation that retired it.
fn retired_keys(keys: &[KeyStatus]) -> Vec<String> {
    keys.iter()
        .filter(|k| k.state == KeyState::Retired)
        .map(|k| {
            format!(
                "{} (retired by KeyRotation {})",
                k.name,
                k.rotation.as_deref().unwrap_or("(deleted)")
            )
        })
        .collect()
}

/// Whether signatures by a key in this state are accepted.
pub fn is_accepted(state: KeyState) -> bool {
    matches!(state, KeyState::Active | KeyState::DualAcceptance)
}

fn readiness(report: &RootReport, observed: &Observed, keys: &[KeyStatus]) -> (bool, &'static str, String) {
    let errors: Vec<FieldError> = report
        .spec_errors
        .iter()
        .chain(&report.key_errors)
        .cloned()
        .collect();
    if !report.is_current() {
        let in_force = match &report.active {
            Some(a) => format!("; generation {} stays in force", a.generation.unwrap_or_default()),
            None => "; nothing is verified against this TrustRoot until it is fixed".into(),
        };
        return (false, "InvalidSpec", format!("{}{in_force}", join(&errors)));
    }
    let accepted = keys.iter().filter(|k| is_accepted(k.state)).count();
    let threshold = report.active.as_ref().map_or(1, |a| a.keys.threshold);
    if accepted < threshold {
        let message = format!(
            "{accepted} key(s) accepted, fewer than the threshold {threshold}: nothing can verify. {}",
            join(&errors)
        );
        return (false, "KeysUnavailable", message);
    }
    match &observed.last_sweep {
        None => (false, "Verifying", "the first sweep has not finished yet".into()),
        Some(_) => (
            true,
            "Verifying",
            format!(
                "{accepted} key(s) accepted; {} governed workload(s)",
                observed.counts.total
            ),
        ),
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Condition messages are limited to 32 kB by the API; ours stay far shorter.
fn truncate_message(message: &str) -> String {
    super::verdict::truncate_to(message, 4096)
}

/// Applies `status` to the TrustRoot `name` (server-side apply, forced: the status is ours).
pub async fn apply(client: &Client, name: &str, status: &TrustRootStatus) -> Result<(), Error> {
    let api: Api<TrustRoot> = Api::all(client.clone());
    let body = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(drop)
    .map_err(|source| Error::Status {
        name: name.to_string(),
        source,
    })
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
