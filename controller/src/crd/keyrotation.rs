//! `KeyRotation`: moves a TrustRoot from one key to another without a broken deployment.
//!
//! Before the window only `fromKey` is accepted, during it both keys are, after it (and once
//! its retirement gate is met) only `toKey`. This module is the schema; the behaviour lives in
//! `crate::rotation` (phases, pure) and the operator's passes (progress, status, events).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DURATION_REGEX, FieldError, parse_duration};

/// The most stragglers kept in status: enough to act on, small enough for a status object.
pub const MAX_STRAGGLERS: usize = 20;

/// What a KeyRotation declares: which TrustRoot, which keys, and when.
// Each `printcolumn(...)` repeats the keys `type_` and `json_path`, which clippy takes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "countersign.dev",
    version = "v1alpha1",
    kind = "KeyRotation",
    status = "KeyRotationStatus",
    shortname = "kr",
    category = "countersign",
    derive = "PartialEq",
    selectable = ".spec.trustRootRef",
    doc = "KeyRotation moves a TrustRoot from one signing key to another through a dual-acceptance window, so that rotating a key never breaks a deployment. Before the window only fromKey is accepted, during it both keys are, and after it only toKey, once the retirement gate is met.\n\nRetirement is durable: once fromKey is retired, the TrustRoot's status records it (status.keys[].state Retired, with the key's fingerprint and this rotation's name), and it stays retired while the TrustRoot declares a key of that name and fingerprint, even if this KeyRotation is deleted or the operator restarts. The TrustRoot's condition RetiredKeysRemoved turns False until the key is removed from its spec.keys. To trust that key again, remove it from spec.keys and declare it anew.",
    printcolumn(
        name = "Trust Root",
        type_ = "string",
        json_path = ".spec.trustRootRef"
    ),
    printcolumn(
        name = "From",
        type_ = "string",
        json_path = ".spec.fromKey",
        priority = 1
    ),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.toKey", priority = 1),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "On New Key",
        type_ = "integer",
        json_path = ".status.progress.onNewKey",
        description = "Governed workloads that verify with toKey"
    ),
    printcolumn(
        name = "Old Key Only",
        type_ = "integer",
        json_path = ".status.progress.onOldKeyOnly",
        description = "Governed workloads that verify with fromKey only: the ones to re-sign"
    ),
    printcolumn(
        name = "Workloads",
        type_ = "integer",
        json_path = ".status.progress.workloads",
        description = "Governed workloads"
    ),
    // A string, not a date: kubectl prints a future date column as "<invalid>".
    printcolumn(name = "Window End", type_ = "string", json_path = ".status.windowEnd"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.fromKey != self.toKey")
        .message("fromKey and toKey must name two different keys")
        .field_path(".toKey"),
    validation = Rule::new("!(has(self.abort) && self.abort && has(self.retireEarly) && self.retireEarly)")
        .message("set either abort or retireEarly, not both")
        .field_path(".retireEarly"),
)]
pub struct KeyRotationSpec {
    /// The name of the TrustRoot whose key rotates. Immutable: to rotate another TrustRoot,
    /// create another KeyRotation.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("trustRootRef is immutable; create a new KeyRotation"))]
    pub trust_root_ref: String,

    /// The name of the key being retired, as declared in the TrustRoot's `spec.keys`. Immutable.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("fromKey is immutable; create a new KeyRotation"))]
    pub from_key: String,

    /// The name of the key taking over, as declared in the TrustRoot's `spec.keys`. Immutable.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("toKey is immutable; create a new KeyRotation"))]
    pub to_key: String,

    /// The dual-acceptance window, during which signatures by either key are accepted.
    pub window: RotationWindow,

    /// When the old key stops being accepted. `WhenResigned` (the default) waits until every
    /// governed running workload verifies with the new key, even past the window's end (the
    /// rotation is then `Stalled` and both keys stay accepted); `AtWindowEnd` retires the old
    /// key when the window closes, whatever still runs.
    #[serde(default)]
    pub retirement: RetirementPolicy,

    /// Stops the rotation: both keys' acceptance returns to what the TrustRoot declares, and the
    /// phase becomes `Aborted` for good (to try again, create a new KeyRotation). Has no effect
    /// once the rotation is `Completed`: a retired key is never accepted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,

    /// Finishes early: retires fromKey as soon as the retirement gate is met (no governed workload
    /// depends on fromKey alone), even before the window ends. Without it a rotation waits for
    /// the window's end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retire_early: bool,
}

/// A time window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationWindow {
    /// When dual acceptance begins, in RFC 3339 (e.g. `2026-12-01T00:00:00Z`).
    pub start: Time,

    /// How long dual acceptance lasts, as a Go duration between 1m and 8760h (a year), e.g.
    /// `72h`.
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(duration_format_rule()).message("window.duration must be a duration like 30m, 72h or 1h30m (units ns, us, ms, s, m, h)"),
        validation = Rule::new(duration_range_rule()).message("window.duration must be between 1m and 8760h"),
    )]
    pub duration: String,
}

/// When a rotation retires its old key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum RetirementPolicy {
    /// Only once every governed running workload verifies with the new key.
    #[default]
    WhenResigned,
    /// When the window ends, whatever still runs.
    AtWindowEnd,
}

/// What countersign observed about this KeyRotation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyRotationStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Where the rotation stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<KeyRotationPhase>,

    /// Governed running workloads, by the keys they verify with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RotationProgress>,

    /// Some of the workloads holding the rotation up (they do not verify with toKey yet), at
    /// most 20; `progress` has the full count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_STRAGGLERS))]
    pub stragglers: Vec<Straggler>,

    /// When dual acceptance began (or begins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<Time>,

    /// When dual acceptance ends (or ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<Time>,

    /// When the old key was retired and the rotation completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,

    /// When the current phase began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,

    /// `Valid` (the TrustRoot and both keys exist and load, no overlapping rotation) and
    /// `Completed` (fromKey retired; its reason is the phase otherwise); each carries the
    /// generation it was computed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The phases of a rotation, derived from spec, status and the clock.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum KeyRotationPhase {
    /// The window has not opened: only fromKey is accepted.
    Scheduled,
    /// Inside the window: both keys are accepted.
    DualAcceptance,
    /// The window closed and the retirement gate is being checked.
    Retiring,
    /// fromKey is retired: only toKey is accepted.
    Completed,
    /// Past the window with the gate not met: both keys stay accepted until someone decides.
    Stalled,
    /// Stopped before completion: fromKey stays accepted.
    Aborted,
    /// The rotation cannot run (unknown TrustRoot or key, overlapping rotation); see conditions.
    Invalid,
}

/// Governed running workloads, by the keys they verify with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RotationProgress {
    /// Workloads governed by the TrustRoot.
    #[serde(default)]
    pub workloads: i32,
    /// Workloads that verify with toKey.
    #[serde(default)]
    pub on_new_key: i32,
    /// Workloads that verify with fromKey but not with toKey: the ones to re-sign.
    #[serde(default)]
    pub on_old_key_only: i32,
    /// Workloads that verify with neither key.
    #[serde(default)]
    pub unverified: i32,
    /// Workloads without a current answer from the registry.
    #[serde(default)]
    pub unknown: i32,
}

/// A running workload that does not verify with toKey yet.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Straggler {
    /// The workload's namespace.
    pub namespace: String,
    /// The workload's kind (Deployment, StatefulSet, DaemonSet, Job, CronJob or Pod).
    pub kind: String,
    /// The workload's name.
    pub name: String,
    /// The image reference as the pod spec writes it.
    pub image: String,
    /// The running digest (`sha256:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Why it holds the rotation up: `OldKeyOnly` (verifies with fromKey only: re-sign it with
    /// toKey), `Neither` (verifies with neither key; does not block retirement, which cannot
    /// break it further) or `Unknown` (no current answer from the registry yet).
    pub state: StragglerState,
}

/// Why a workload is listed as a straggler.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
pub enum StragglerState {
    /// Verifies with fromKey but not toKey: retiring fromKey now would break it.
    OldKeyOnly,
    /// No current answer (the registry could not be asked yet): retirement waits for one.
    Unknown,
    /// Verifies with neither key (unsigned, or signed by another key).
    Neither,
}

impl KeyRotation {
    /// `spec.window.duration` as a duration.
    pub fn window_duration(&self) -> Result<std::time::Duration, FieldError> {
        parse_duration("spec.window.duration", &self.spec.window.duration)
    }
}

fn duration_format_rule() -> String {
    format!("self.matches('{DURATION_REGEX}')")
}

fn duration_range_rule() -> String {
    format!(
        "!self.matches('{DURATION_REGEX}') || (duration(self) >= duration('1m') && duration(self) <= duration('8760h'))"
    )
}
