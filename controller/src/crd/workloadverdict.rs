//! `WorkloadVerdict`: the verdict on one running workload, written by the operator.
//!
//! Why an object of its own and not annotations on the workload (as before): the
//! controller-manager copies a Deployment's annotations onto its ReplicaSet, so every verdict
//! written there cost the API server about three more writes (a ReplicaSet update, its conflict,
//! a Deployment status update), the main cost of a key removed at 50,000 pods (issue 11). Nothing
//! copies this object. It is owned by its workload (garbage-collected with it), named after it
//! (`deployment.web`), and read with `kubectl get wv`, one row per workload, like Kyverno's and
//! the Trivy operator's per-resource reports.
//!
//! Its properties sit at the top level (no `spec`): it is a record, not a desired state.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The verdict on one workload, as the operator last assessed it. Written only by the operator,
/// and only when something in it changes; deleted with its workload (owner reference) or when no
/// TrustRoot governs the workload any more.
// Each `printcolumn(...)` repeats the keys `type_` and `json_path`, which clippy takes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "countersign.dev",
    version = "v1alpha1",
    kind = "WorkloadVerdict",
    namespaced,
    no_spec,
    shortname = "wv",
    category = "countersign",
    derive = "PartialEq",
    selectable = ".verdict",
    selectable = ".workload.kind",
    doc = "WorkloadVerdict records whether what one workload runs is signed by keys its TrustRoots accept, as the countersign operator last assessed it: the digests the kubelet pulled, checked against the signatures in the registry. The operator writes it, only when it changes, and names it <kind>.<name> after its workload (deployment.web); it is garbage-collected with its workload.\n\nRead them with `kubectl get wv -A`; the failing ones with `kubectl get wv -A --field-selector verdict=Failed`.",
    printcolumn(name = "Kind", type_ = "string", json_path = ".workload.kind"),
    printcolumn(name = "Workload", type_ = "string", json_path = ".workload.name"),
    printcolumn(name = "Verdict", type_ = "string", json_path = ".verdict"),
    printcolumn(name = "Causes", type_ = "string", json_path = ".causes"),
    printcolumn(name = "Stale", type_ = "string", json_path = ".stale"),
    printcolumn(name = "Since", type_ = "date", json_path = ".since"),
    printcolumn(
        name = "Verified By",
        type_ = "string",
        json_path = ".verifiedBy",
        priority = 1
    ),
    printcolumn(name = "Reason", type_ = "string", json_path = ".reason", priority = 1)
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadVerdictFields {
    /// The workload this verdict is about.
    pub workload: VerdictSubject,
    /// `Verified`, `Unsigned` (no signature), `Failed` (signatures, none valid for the accepted
    /// keys) or `Unknown` (never verified: the registry could not be asked yet).
    pub verdict: String,
    /// `trustroot/key`, sorted: the keys whose signatures verified (when Verified).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verified_by: Vec<String>,
    /// Why it is not Verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it is not Verified, as low-cardinality names, sorted: what scripts and alerts match
    /// on instead of `reason`. `no_signature`, `below_threshold`, `refused_signer` (a retired
    /// key), `invalid_reference`, a rejected signature's category (`no_trusted_key`,
    /// `identity_mismatch`, `untrusted_log`, `no_tlog_entry`, `no_trusted_time`, …), or a
    /// required attestation's state (`attestation_missing`, `attestation_policy_failed`,
    /// `attestation_other_digest`, `attestation_identity_mismatch`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// `repo@sha256:…` of the governed images the verdict is about, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
    /// When the verdict last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Present while the verdict is kept from an earlier answer because the registry could not be
    /// asked: the error's category (`unreachable`, `timeout`, `unauthorized`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<String>,
    /// Present while a tag points away from the running digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest_drift: Option<String>,
    /// When anything here last changed (verdict, stale mark, drift), to the millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<String>,
}

/// A workload, by kind, name and uid (its namespace is the verdict's).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerdictSubject {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    /// Tells a re-created workload of the same name apart.
    pub uid: String,
}
