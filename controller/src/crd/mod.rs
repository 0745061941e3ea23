//! The Kubernetes API of countersign (group `countersign.dev`, version `v1alpha1`).
//!
//! - [`TrustRoot`]: which keys may sign which images, and how strictly;
//! - [`KeyRotation`]: moves a TrustRoot from one key to another through a dual-acceptance window;
//! - [`TrustSource`]: a Git repository declaring TrustRoots and KeyRotations, synced by the operator;
//! - [`WorkloadVerdict`]: the verdict on one workload, written by the operator (namespaced).
//!
//! The types carry their own schema: doc comments become the descriptions `kubectl explain`
//! shows, and CEL rules (`x-kubernetes-validations`) let the apiserver refuse what is obviously
//! wrong with a message that names the field. What CEL cannot check (a PEM that parses, …) is
//! checked by [`TrustRoot::validate`], which also repeats the CEL checks so that objects read
//! from Git can be refused before they are applied.
//!
//! The generated YAML is committed under `crds/` (one file per CRD, see [`files`]); the test
//! `controller/tests/crds_up_to_date.rs` fails when it is stale.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

mod attestation;
mod duration;
pub mod glob;
mod identity;
mod keyrotation;
mod selector;
mod trustroot;
mod trustsource;
mod validate;
mod workloadverdict;

pub use attestation::TrustRootAttestation;
pub use duration::{DURATION_REGEX, parse_duration};
pub use glob::Glob;
pub use identity::{TrustRootIdentity, TrustedRootRef, TrustedRootSource};
pub use keyrotation::{
    KeyRotation, KeyRotationPhase, KeyRotationSpec, KeyRotationStatus, MAX_STRAGGLERS, RetirementPolicy,
    RotationProgress, RotationWindow, Straggler, StragglerState,
};
pub use trustroot::{
    KeyState, KeyStatus, Mode, ObjectKeyRef, SweepSummary, Tlog, TrustRoot, TrustRootKey, TrustRootSpec,
    TrustRootStatus, WorkloadCounts,
};
pub use trustsource::{
    CommitVerification, GitRef, InventoryEntry, LocalObjectRef, MAX_OBJECTS, REQUESTED_AT_ANNOTATION,
    SOURCE_LABEL, SyncFailure, TrustSource, TrustSourceSpec, TrustSourceStatus, VerificationMode,
};
pub use validate::{KeySource, ValidatedKey, ValidatedSpec};
pub use workloadverdict::{VerdictSubject, WorkloadVerdict, WorkloadVerdictFields};

/// The API group of every countersign resource.
pub const GROUP: &str = "countersign.dev";
/// The one API version served so far.
pub const VERSION: &str = "v1alpha1";

/// A problem with one field of an object, e.g. `spec.keys[1].publicKey: not a PEM public key`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct FieldError {
    /// Where the problem is, as the apiserver spells field paths (`spec.keys[1].publicKey`).
    pub path: String,
    /// What is wrong there, as a sentence fragment.
    pub message: String,
}

impl FieldError {
    /// A problem `message` at the field `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// All CustomResourceDefinitions of countersign, in a stable order, as `crds/` holds them.
/// Prefer these to `TrustRoot::crd()`: their descriptions are unwrapped for `kubectl explain`.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        TrustRoot::crd(),
        KeyRotation::crd(),
        TrustSource::crd(),
        WorkloadVerdict::crd(),
    ]
    .into_iter()
    .map(unwrap_descriptions)
    .collect()
}

/// Doc comments are wrapped at ~100 columns, and `kubectl explain` would keep those breaks on
/// top of its own wrapping; so single newlines become spaces, blank lines (paragraphs) stay.
fn unwrap_descriptions(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    unwrap_descriptions_in(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
}

fn unwrap_descriptions_in(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    serde_json::Value::String(text) if key == "description" => {
                        *text = unwrap_text(text);
                    }
                    _ => unwrap_descriptions_in(child),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions_in),
        _ => {}
    }
}

fn unwrap_text(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// One CRD as a YAML document (no `---` separator).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// All CRDs as one multi-document YAML stream, as `countersign crds` prints it.
pub fn all_to_yaml() -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string_multiple(&all())
}

/// A generated file of the `crds/` folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrdFile {
    /// `<group>_<plural>.yaml`, the name kubebuilder-style projects use.
    pub name: String,
    /// The YAML document with a header saying how to regenerate it.
    pub contents: String,
}

/// What `crds/` must hold: one file per CRD.
pub fn files() -> Result<Vec<CrdFile>, serde_saphyr::SerializeError> {
    all()
        .iter()
        .map(|crd| {
            Ok(CrdFile {
                name: format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural),
                contents: format!("{}{}", FILE_HEADER, to_yaml(crd)?),
            })
        })
        .collect()
}

/// The first lines of every generated file.
pub const FILE_HEADER: &str = "# Generated from controller/src/crd by `cargo run -p countersign -- crds --write crds/`.\n\
     # Do not edit: change the Rust types and regenerate.\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_is_in_our_group_and_only_verdicts_are_namespaced() {
        for crd in all() {
            assert_eq!(crd.spec.group, GROUP);
            let namespaced = crd.spec.names.kind == "WorkloadVerdict";
            assert_eq!(crd.spec.scope, if namespaced { "Namespaced" } else { "Cluster" });
            assert_eq!(crd.spec.versions.len(), 1);
            assert_eq!(crd.spec.versions[0].name, VERSION);
        }
    }

    #[test]
    fn files_are_named_after_group_and_plural() {
        let names: Vec<String> = files().unwrap_or_default().into_iter().map(|f| f.name).collect();
        assert_eq!(
            names,
            [
                "countersign.dev_trustroots.yaml",
                "countersign.dev_keyrotations.yaml",
                "countersign.dev_trustsources.yaml",
                "countersign.dev_workloadverdicts.yaml"
            ]
        );
    }

    #[test]
    fn descriptions_are_unwrapped_but_keep_paragraphs() {
        assert_eq!(unwrap_text("one\ntwo\n\nthree\n four"), "one two\n\nthree four");
        let yaml = all_to_yaml().unwrap_or_default();
        assert!(yaml.contains("`registry.example.com/payments/**` governs"));
        let crd = &all()[0];
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref());
        let images = schema
            .and_then(|s| {
                s.properties
                    .as_ref()?
                    .get("spec")?
                    .properties
                    .as_ref()?
                    .get("images")
            })
            .and_then(|p| p.description.as_deref())
            .unwrap_or_default();
        assert!(images.starts_with("Globs of the image repositories"), "{images}");
        assert!(!images.contains('\n'), "{images}");
    }

    #[test]
    fn the_stream_holds_every_crd() {
        let yaml = all_to_yaml().unwrap_or_default();
        assert_eq!(
            yaml.matches("kind: CustomResourceDefinition").count(),
            all().len()
        );
    }
}
