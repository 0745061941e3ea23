//! `TrustRoot`: which keys may sign which images.
//!
//! CEL rules keep their cost estimate low by bounding every list and string they walk
//! (`maxItems`, `maxLength`): the apiserver refuses a CRD whose rules could exceed its budget
//! on unbounded input.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DURATION_REGEX, TrustRootAttestation, TrustRootIdentity, TrustedRootSource, glob};

/// How many signers a spec declares, in CEL (both lists may be absent).
const SIGNERS: &str =
    "((has(self.keys) ? size(self.keys) : 0) + (has(self.identities) ? size(self.identities) : 0))";

/// Globs use this alphabet: what image repositories use, plus the wildcards.
const GLOB_CHARS_RULE: &str = "self.all(g, g.matches('^[a-z0-9._:/*?-]+$'))";

/// What a TrustRoot declares: which images it governs and which keys may sign them.
// Each `printcolumn(...)` repeats the keys `type_` and `json_path`, which clippy takes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "countersign.dev",
    version = "v1alpha1",
    kind = "TrustRoot",
    status = "TrustRootStatus",
    shortname = "tr",
    category = "countersign",
    derive = "PartialEq",
    doc = "TrustRoot declares which keys may sign which images. countersign continuously re-verifies the cosign signatures of every running image the TrustRoot governs and reports the verdicts on the workloads and in this object's status.",
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "What a failed verification means (Enforce, Warn or Audit)"
    ),
    printcolumn(
        name = "Threshold",
        type_ = "integer",
        json_path = ".spec.threshold",
        description = "How many distinct keys must have signed"
    ),
    printcolumn(
        name = "Accepted Keys",
        type_ = "string",
        json_path = ".status.acceptedKeys",
        description = "Keys accepted right now"
    ),
    printcolumn(
        name = "Verified",
        type_ = "integer",
        json_path = ".status.workloads.verified",
        description = "Governed workloads whose images verify"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.workloads.failed",
        description = "Governed workloads with signatures, none valid"
    ),
    printcolumn(
        name = "Unsigned",
        type_ = "integer",
        json_path = ".status.workloads.unsigned",
        description = "Governed workloads without signatures"
    ),
    printcolumn(
        name = "Stale",
        type_ = "integer",
        json_path = ".status.workloads.stale",
        description = "Verdicts kept while the registry is unreachable",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(format!("{SIGNERS} >= 1"))
        .message("declare at least one signer: a public key in keys or a keyless signer in identities"),
    validation = Rule::new(format!("self.threshold <= {SIGNERS}"))
        .message("threshold must not exceed the number of keys and identities")
        .field_path(".threshold"),
    validation = Rule::new("!has(self.keys) || !has(self.identities) || self.identities.all(i, !self.keys.exists(k, k.name == i.name))")
        .message("identity names and key names share one namespace: an identity must not have the name of a key")
        .field_path(".identities"),
)]
pub struct TrustRootSpec {
    /// Globs of the image repositories this TrustRoot governs, matched against the repository of
    /// each running image without its tag or digest. Docker Hub short names are spelled out
    /// first (`nginx` is `docker.io/library/nginx`), so write globs with the registry host.
    /// `*` matches within one path segment, `**` matches across segments (`/` included), `**/`
    /// also matches zero segments, `?` matches one character other than `/`. Example:
    /// `registry.example.com/payments/**` governs `registry.example.com/payments/api` and
    /// `registry.example.com/payments/team/api`; `registry.example.com/payments/*` only the first.
    #[schemars(length(max = 64), inner(length(min = 1, max = 255)))]
    #[x_kube(
        validation = Rule::new("size(self) >= 1").message("images must list at least one image glob, e.g. registry.example.com/team/**"),
        validation = Rule::new(GLOB_CHARS_RULE).message("every image glob must use only lowercase letters, digits, '.', '_', '-', '/', ':' and the wildcards '*', '**', '?' (no spaces, tags or digests)"),
        validation = Rule::new("self.all(g, !g.contains('***'))").message("'***' is not a wildcard in an image glob: use '*' within a path segment or '**' across segments"),
        validation = Rule::new("self.all(g, !g.startsWith('/') && !g.endsWith('/') && !g.contains('//'))").message("image globs must not have empty path segments (leading, trailing or double '/')"),
        validation = Rule::new("self.all(g, !g.matches('/.*:'))").message("image globs match repositories without a tag: ':' is allowed only as the registry port in the first segment"),
    )]
    pub images: Vec<String>,

    /// Limits the TrustRoot to workloads in the namespaces whose labels match. Unset or empty
    /// selects every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,

    /// The public keys that may sign the governed images. Each has a stable name that rotations,
    /// events and status refer to, and exactly one source: an inline PEM, a Secret or a
    /// ConfigMap.
    /// May be empty when `identities` declares keyless signers.
    #[serde(default)]
    #[schemars(length(max = 16))]
    #[x_kube(
        // A map keyed by name: the apiserver refuses duplicate names ("spec.keys[1]: Duplicate
        // value: {"name":"a"}") and server-side apply merges keys by name.
        merge_strategy = ListMerge::Map(vec!["name".into()]),
    )]
    pub keys: Vec<TrustRootKey>,

    /// Keyless signers: a Fulcio certificate identity and OIDC issuer, each exact or a regular
    /// expression. A keyless signature counts only when its certificate chains to the trusted
    /// root's CAs, carries a valid SCT, was logged (Rekor inclusion proof or SET) or timestamped
    /// (RFC 3161) within the certificate's validity, and verifies over the image digest; all of
    /// it offline, from `trustedRoot`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub identities: Vec<TrustRootIdentity>,

    /// The Sigstore `trusted_root.json` (Fulcio CAs, CT logs, Rekor keys, timestamp
    /// authorities) keyless signatures are verified against, from a Secret or ConfigMap. Unset:
    /// the Sigstore public-good instance's, shipped in countersign.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_root: Option<TrustedRootSource>,

    /// How many distinct accepted signers (keys and identities) must have signed an image for it
    /// to verify. At least 1, at most the number of keys and identities.
    #[serde(default = "default_threshold")]
    #[schemars(range(min = 1, max = 16))]
    pub threshold: i32,

    /// The repository that holds the signatures, when they are not stored next to the images
    /// (what cosign calls `COSIGN_REPOSITORY`), e.g. `registry.example.com/signatures`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(
        validation = Rule::new("self.matches('^[a-z0-9._:/-]+$')").message("signatureRepository must be a lowercase repository name like registry.example.com/signatures (no wildcards, spaces, tags or digests)"),
        validation = Rule::new("self.contains('/') && !self.startsWith('/') && !self.endsWith('/') && !self.contains('//') && !self.matches('/.*:')").message("signatureRepository must be <registry>/<path> without a tag, e.g. registry.example.com/signatures"),
    )]
    pub signature_repository: Option<String>,

    /// How often the signatures of running digests are re-checked, as a Go duration between 10s
    /// and 24h such as `30s`, `10m` or `1h30m`. A verdict is also refreshed whenever a workload
    /// or this TrustRoot changes.
    #[serde(default = "default_reverify_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(duration_format_rule()).message("reverifyInterval must be a duration like 30s, 10m or 1h30m (units ns, us, ms, s, m, h)"),
        validation = Rule::new(duration_range_rule()).message("reverifyInterval must be between 10s and 24h"),
    )]
    pub reverify_interval: String,

    /// What a failed verification means at admission. Verdicts, annotations, events and metrics
    /// of running workloads are written in every mode; the mode tells the admission webhook what
    /// to do with a workload whose governed images do not verify: `Enforce` refuses it (naming
    /// image, digest, TrustRoot and why); `Warn` admits it with an admission warning; `Audit`
    /// (the default) admits it with a warning and records an Event for on-call.
    #[serde(default)]
    pub mode: Mode,

    /// Whether the admission webhook rewrites the governed images of admitted workloads from a
    /// tag to the digest it verified (`registry/app:1.2` becomes `registry/app:1.2@sha256:…`),
    /// so that the kubelet pulls exactly what was checked even if the tag moves in between.
    /// Needs the mutating webhook (the `manifests/pin-digests` component); also set for every
    /// TrustRoot by `countersign run --pin-digests`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin_to_digest: bool,

    /// The transparency log (Rekor). `Required`: every signature, by a key too, counts only
    /// with a log entry that verifies against the trusted root's logs (inclusion proof under a
    /// signed checkpoint, or a SET); the trusted root is then read even without identities.
    /// `Optional`: a keyless signature without a log entry counts when RFC 3161 timestamps from
    /// the trusted root's TSAs say when it was signed (entries that are there are verified all
    /// the same). Unset: as cosign, keyless signatures need a log entry and key-based signatures
    /// are not looked up in a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog: Option<Tlog>,

    /// Attestations every governed image must carry besides its signatures: in-toto statements
    /// of these predicate types (SLSA provenance, SBOMs, vulnerability scans), signed by the
    /// keys or identities above (any one of them: `threshold` counts image signatures), naming
    /// the image's digest, each optionally passing a CEL policy over its predicate. An image
    /// whose signatures verify but whose attestations do not is `Failed`, and the reason names
    /// the predicate type and what is wrong (missing, policy failed, another digest, no valid
    /// signature). cosign v2 `.att` tags and cosign v3 bundle referrers are both read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub attestations: Vec<TrustRootAttestation>,
}

/// What the transparency log must show (`spec.tlog`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Tlog {
    /// Every signature needs a verified log entry.
    Required,
    /// Keyless signatures may be timestamped instead of logged.
    Optional,
}

impl Tlog {
    /// The verification policy `tlog` (unset: the default) stands for.
    pub fn policy(tlog: Option<Self>) -> crate::sigstore::TlogPolicy {
        use crate::sigstore::TlogPolicy;
        match tlog {
            None => TlogPolicy::Default,
            Some(Self::Required) => TlogPolicy::Required,
            Some(Self::Optional) => TlogPolicy::Optional,
        }
    }
}

/// One public key of a TrustRoot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.publicKey) ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1")
    .message("a key needs exactly one source: set one of publicKey, secretRef or configMapRef"))]
pub struct TrustRootKey {
    /// A stable name for the key (e.g. `ci-2026`), used by KeyRotations, events and status:
    /// lowercase letters, digits, '-' and '.', starting and ending with a letter or digit.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')")
        .message("key name must be lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (e.g. ci-2026)"))]
    pub name: String,

    /// The public key in PEM (`-----BEGIN PUBLIC KEY-----`), as `cosign generate-key-pair`
    /// writes `cosign.pub`. ECDSA P-256 keys are supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 8192))]
    #[x_kube(validation = Rule::new("self.contains('-----BEGIN PUBLIC KEY-----') && self.contains('-----END PUBLIC KEY-----')")
        .message("publicKey must be a PEM block from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----"))]
    pub public_key: Option<String>,

    /// A Secret that holds the PEM public key (what `cosign generate-key-pair k8s://ns/name`
    /// creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<ObjectKeyRef>,

    /// A ConfigMap that holds the PEM public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ObjectKeyRef>,
}

/// A key of a namespaced Secret or ConfigMap.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKeyRef {
    /// The name of the Secret or ConfigMap.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Its namespace (TrustRoots are cluster-scoped, so there is no default).
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,

    /// The data key holding the PEM; defaults to `cosign.pub`, where cosign puts it.
    #[serde(default = "default_data_key")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[-._a-zA-Z0-9]+$')")
        .message("key must be a valid Secret/ConfigMap data key: letters, digits, '-', '_' and '.'"))]
    pub key: String,
}

/// What a failed verification means for the admission webhook. Verdicts of running workloads
/// are written in every mode.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Mode {
    /// Refuse workloads whose images do not verify.
    Enforce,
    /// Admit them with an admission warning (what `kubectl` prints), nothing recorded.
    Warn,
    /// Admit them with an admission warning, and record an Event for on-call. The default, so
    /// that adding a TrustRoot never blocks a deployment before its owners chose to.
    #[default]
    Audit,
}

/// What countersign observed about this TrustRoot.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustRootStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (keys loaded and a sweep finished), `KeysValid` (every key parses),
    /// `RetiredKeysRemoved` (False while spec.keys still declares a key a rotation retired: remove
    /// it); each carries the generation it was computed from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The names of the keys accepted right now, comma-separated (`ci-2025,ci-2026` during a
    /// rotation's dual-acceptance window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_keys: Option<String>,

    /// The state of each declared key, computed from the spec, rotations and the clock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub keys: Vec<KeyStatus>,

    /// Governed workloads by their last verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<WorkloadCounts>,

    /// The last complete re-verification of every running digest this TrustRoot governs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sweep: Option<SweepSummary>,
}

/// The observed state of one key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The key's name in `spec.keys`.
    pub name: String,

    /// Lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo; unset while the key cannot
    /// be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,

    /// Whether signatures by this key are accepted right now.
    pub state: KeyState,

    /// When the key entered its current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,

    /// The KeyRotation that put the key in this state (Pending, DualAcceptance, Retired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,

    /// Why the key is in this state, for people (e.g. why it is Invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The lifecycle of a key, computed from the spec, KeyRotations and the clock.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum KeyState {
    /// Accepted.
    Active,
    /// The `toKey` of a rotation whose window has not opened: not accepted yet.
    Pending,
    /// Accepted alongside another key during a rotation window.
    DualAcceptance,
    /// The `fromKey` of a completed rotation: no longer accepted, for as long as the TrustRoot
    /// declares this key (same name and fingerprint), even if the rotation is deleted.
    Retired,
    /// The key could not be read (bad PEM, missing Secret, …): not accepted.
    Invalid,
}

/// Governed workloads by verdict. A workload counts once, by its worst image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadCounts {
    /// Workloads governed by this TrustRoot.
    #[serde(default)]
    pub total: i32,
    /// Workloads whose every governed image verifies with the accepted keys.
    #[serde(default)]
    pub verified: i32,
    /// Workloads with an image whose signatures are present but none valid for the accepted keys.
    #[serde(default)]
    pub failed: i32,
    /// Workloads with an image that has no signature at all.
    #[serde(default)]
    pub unsigned: i32,
    /// Workloads whose last verdict is kept because the registry could not be reached.
    #[serde(default)]
    pub stale: i32,
}

/// One complete pass over the running digests.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SweepSummary {
    /// When the sweep finished.
    pub finished_at: Time,
    /// Distinct image digests verified.
    #[serde(default)]
    pub digests: i32,
    /// How long the sweep took, in milliseconds.
    #[serde(default)]
    pub duration_ms: i64,
}

impl TrustRoot {
    /// Whether this TrustRoot governs the image `image_ref` (any form a pod spec may hold: tag,
    /// digest, Docker Hub short name). Globs that do not parse govern nothing; `validate`
    /// reports them.
    pub fn governs(&self, image_ref: &str) -> bool {
        let repository = glob::repository(image_ref);
        self.spec
            .images
            .iter()
            .filter_map(|pattern| glob::Glob::new(pattern).ok())
            .any(|glob| glob.matches(&repository))
    }

    /// `spec.reverifyInterval` as a duration.
    pub fn reverify_interval(&self) -> Result<std::time::Duration, super::FieldError> {
        super::parse_duration("spec.reverifyInterval", &self.spec.reverify_interval)
    }
}

fn default_threshold() -> i32 {
    1
}

fn default_reverify_interval() -> String {
    "10m".into()
}

fn default_data_key() -> String {
    "cosign.pub".into()
}

fn duration_format_rule() -> String {
    format!("self.matches('{DURATION_REGEX}')")
}

/// Guarded by the format so that a malformed value reports the format message only, instead
/// of a CEL evaluation error from `duration()`.
fn duration_range_rule() -> String {
    format!(
        "!self.matches('{DURATION_REGEX}') || (duration(self) >= duration('10s') && duration(self) <= duration('24h'))"
    )
}
