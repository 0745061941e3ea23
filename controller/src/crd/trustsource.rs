//! `TrustSource`: a Git repository whose YAML declares TrustRoots and KeyRotations, synced by
//! the operator (see `crate::gitops`). This module is the schema; the behaviour lives there.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{DURATION_REGEX, FieldError, parse_duration};

/// The most objects one TrustSource may declare (and so the largest inventory in status).
pub const MAX_OBJECTS: usize = 1000;

/// The label that ties an applied object to the TrustSource that declared it.
pub const SOURCE_LABEL: &str = "countersign.dev/trust-source";

/// Set (to any new value, e.g. a timestamp) to ask for a fetch now; the webhook receiver does.
pub const REQUESTED_AT_ANNOTATION: &str = "countersign.dev/requested-at";

/// What a TrustSource declares: where the YAML lives and how to fetch and trust it.
// Each `printcolumn(...)` repeats the keys `type_` and `json_path`, which clippy takes for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "countersign.dev",
    version = "v1alpha1",
    kind = "TrustSource",
    status = "TrustSourceStatus",
    shortname = "ts",
    category = "countersign",
    derive = "PartialEq",
    doc = "TrustSource points at a Git repository whose YAML declares TrustRoots and KeyRotations. countersign fetches it, validates the whole revision, applies it all or nothing, prunes what was removed, reverts manual edits of what it applied, and reports the commit in force.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.lastAppliedRevision",
        description = "The revision in force"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TrustSourceSpec {
    /// The repository: `https://host/path`, `ssh://user@host[:port]/path`, scp-like
    /// `user@host:path`, or `file:///path` (a repository on the operator's own file system, for
    /// local use). `http://` is accepted for loopback hosts only (a Git server on the same
    /// machine, as in tests and demos).
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new(URL_RULE).message(
        "url must start with https://, ssh://, file:// (or http:// on 127.0.0.1, localhost or [::1]), or be scp-like user@host:path"
    ))]
    pub url: String,

    /// Which revision to sync: exactly one of a branch, a tag, a semver range over tags, or a
    /// commit.
    #[serde(rename = "ref")]
    pub git_ref: GitRef,

    /// The folder inside the repository whose `*.yaml` and `*.yml` files (recursively) are
    /// read. Empty or unset: the whole repository. Relative, without `..`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.matches('(^|/)\\\\.\\\\.(/|$)')")
        .message("path must be relative to the repository root, without '..'"))]
    pub path: Option<String>,

    /// How often the repository is fetched, as a Go duration between 5s and 24h (e.g. `1m`).
    /// A push webhook (see the operator's `--git-webhook-addr`) triggers a fetch at once.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(duration_format_rule()).message("interval must be a duration like 30s, 5m or 1h (units ns, us, ms, s, m, h)"),
        validation = Rule::new(duration_range_rule("5s", "24h")).message("interval must be between 5s and 24h"),
    )]
    pub interval: String,

    /// How long one fetch may take, as a Go duration between 1s and 10m.
    #[serde(default = "default_timeout")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(duration_format_rule()).message("timeout must be a duration like 30s or 2m (units ns, us, ms, s, m, h)"),
        validation = Rule::new(duration_range_rule("1s", "10m")).message("timeout must be between 1s and 10m"),
    )]
    pub timeout: String,

    /// A Secret in the operator's namespace with the credentials: for SSH, `identity` (the
    /// private key) and `known_hosts` (required: host keys are never trusted on first use);
    /// for HTTPS, `username` and `password`, or `bearerToken`; optionally `ca.crt`, a PEM
    /// bundle to verify the server's certificate instead of the system's roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectRef>,

    /// Whether objects this TrustSource applied and that are no longer in the repository are
    /// deleted. Default true.
    #[serde(default = "default_true")]
    pub prune: bool,

    /// Stops syncing (nothing is fetched, applied or pruned) until set back to false.
    #[serde(default)]
    pub suspend: bool,

    /// Requires the commit in force to be signed by one of the allowed signers. An unsigned or
    /// badly signed commit is never applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<CommitVerification>,
}

/// A revision of the repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.semver) ? 1 : 0) + (has(self.commit) ? 1 : 0) == 1")
    .message("ref needs exactly one of branch, tag, semver or commit"))]
pub struct GitRef {
    /// A branch, e.g. `main`: its newest commit is synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new(REF_NAME_RULE).message("branch must be a valid Git ref name"))]
    pub branch: Option<String>,

    /// A tag, e.g. `v1.2.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    #[x_kube(validation = Rule::new(REF_NAME_RULE).message("tag must be a valid Git ref name"))]
    pub tag: Option<String>,

    /// A semver range over the repository's tags (e.g. `>=1.0.0, <2.0.0` or `^1.2`): the
    /// highest matching tag is synced (a leading `v` on tags is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub semver: Option<String>,

    /// A full commit id (40 hex digits). It must be reachable from a branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 40, max = 40))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{40}$')").message("commit must be 40 lowercase hex digits"))]
    pub commit: Option<String>,
}

/// A Secret or ConfigMap in the operator's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Its name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// How commits are verified.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.secretRef) ? 1 : 0) + (has(self.configMapRef) ? 1 : 0) == 1")
    .message("verify needs exactly one of secretRef or configMapRef holding the allowed signers"))]
pub struct CommitVerification {
    /// The signature format. `SSH`: signatures made by `git commit -S` with `gpg.format=ssh`.
    pub mode: VerificationMode,

    /// A Secret in the operator's namespace whose `allowed_signers` key lists the allowed
    /// signers, in the format of `ssh-keygen`'s allowed signers file (`gpg.ssh.allowedSignersFile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectRef>,

    /// A ConfigMap in the operator's namespace whose `allowed_signers` key lists the allowed
    /// signers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<LocalObjectRef>,
}

/// Commit signature formats.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum VerificationMode {
    /// SSH signatures (SSHSIG, namespace `git`), Ed25519 or ECDSA P-256 keys.
    #[default]
    SSH,
}

/// What countersign observed about this TrustSource.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrustSourceStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`: the last attempt applied its revision. When False, its reason is the error
    /// category and its message the failing file, document and field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// The revision in force (`<ref>@sha1:<commit>`): the last one applied in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,

    /// The revision of the last attempt; differs from `lastAppliedRevision` when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,

    /// The last `countersign.dev/requested-at` annotation value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,

    /// Why the last attempt failed, when it did: where and what.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<SyncFailure>,

    /// The objects applied from the revision in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_OBJECTS))]
    pub inventory: Vec<InventoryEntry>,
}

/// Where and why a sync failed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SyncFailure {
    /// The error category (also the Ready condition's reason), e.g. `InvalidObject`.
    pub reason: String,
    /// The file, relative to the repository root, when one is at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The document's index in that file (0 for the first), when one is at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<i32>,
    /// The field at fault, as the apiserver spells field paths (`spec.keys[0].publicKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, for people.
    pub message: String,
}

/// One applied object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// `TrustRoot` or `KeyRotation`.
    pub kind: String,
    /// The object's name (both kinds are cluster-scoped).
    pub name: String,
}

impl TrustSource {
    /// `spec.interval` as a duration.
    pub fn interval(&self) -> Result<std::time::Duration, FieldError> {
        parse_duration("spec.interval", &self.spec.interval)
    }

    /// `spec.timeout` as a duration.
    pub fn timeout(&self) -> Result<std::time::Duration, FieldError> {
        parse_duration("spec.timeout", &self.spec.timeout)
    }
}

/// https, ssh, file, scp-like; plain http only on loopback.
const URL_RULE: &str = "self.matches('^(https://|ssh://|file:///)[^ ]+$') || self.matches('^http://(127\\\\.0\\\\.0\\\\.1|localhost|\\\\[::1\\\\])(:[0-9]+)?/[^ ]+$') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/ ][^ ]*$')";

/// The gist of `git check-ref-format`: no spaces, `..`, `~^:?*[\`, leading `-` or `/`.
const REF_NAME_RULE: &str = "self.matches('^[^-/ ~^:?*\\\\[\\\\\\\\][^ ~^:?*\\\\[\\\\\\\\]*$') && !self.contains('..') && !self.endsWith('/') && !self.endsWith('.lock')";

fn default_interval() -> String {
    "5m".into()
}

fn default_timeout() -> String {
    "60s".into()
}

fn default_true() -> bool {
    true
}

fn duration_format_rule() -> String {
    format!("self.matches('{DURATION_REGEX}')")
}

fn duration_range_rule(min: &str, max: &str) -> String {
    format!(
        "!self.matches('{DURATION_REGEX}') || (duration(self) >= duration('{min}') && duration(self) <= duration('{max}'))"
    )
}
