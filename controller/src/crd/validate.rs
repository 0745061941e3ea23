//! [`TrustRoot::validate`]: everything the apiserver's CEL rules check, plus what CEL cannot
//! (PEM keys that parse, label selector operators), with field paths in every message.
//!
//! The CEL checks are repeated on purpose: a TrustRoot read from Git is validated here before
//! it is applied, and so is one written before the CRD had a rule.

use std::{
    collections::{BTreeMap, btree_map::Entry},
    time::Duration,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{
    FieldError, Glob, Mode, ObjectKeyRef, TrustRoot, TrustRootIdentity, TrustRootKey, TrustRootSpec, glob,
    parse_duration, selector,
};
use crate::{keys::PublicKey, verify::NamedIdentity};

/// The bounds the CRD schema sets (`maxItems`), repeated for objects that did not pass it.
const MAX_IMAGES: usize = 64;
const MAX_KEYS: usize = 16;
const MIN_REVERIFY: Duration = Duration::from_secs(10);
const MAX_REVERIFY: Duration = Duration::from_secs(24 * 3_600);

/// A TrustRoot spec that passed [`TrustRoot::validate`]: globs compiled, inline keys parsed,
/// durations read.
#[derive(Debug, Clone)]
pub struct ValidatedSpec {
    /// `spec.images`, compiled.
    pub images: Vec<Glob>,
    /// `spec.namespaceSelector`, operators checked.
    pub namespace_selector: Option<LabelSelector>,
    /// `spec.keys`, in declaration order, names unique.
    pub keys: Vec<ValidatedKey>,
    /// `spec.identities`, compiled, names unique among keys and identities.
    pub identities: Vec<NamedIdentity>,
    /// `spec.threshold`, between 1 and the number of keys and identities.
    pub threshold: usize,
    /// `spec.signatureRepository`.
    pub signature_repository: Option<String>,
    /// `spec.reverifyInterval`, between 10s and 24h.
    pub reverify_interval: Duration,
    /// `spec.mode`.
    pub mode: Mode,
    /// `spec.pinToDigest`.
    pub pin_to_digest: bool,
    /// `spec.attestations`, compiled (predicate types resolved, policies parsed).
    pub attestations: Vec<crate::verify::Requirement>,
}

/// A declared key whose syntax is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedKey {
    /// The key's stable name.
    pub name: String,
    /// Where its PEM comes from.
    pub source: KeySource,
}

/// Where a key's PEM comes from. Keys in Secrets and ConfigMaps are read (and can only then be
/// checked) by the controller.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// Inline in the TrustRoot, already parsed.
    Inline(PublicKey),
    /// In a Secret.
    Secret(ObjectKeyRef),
    /// In a ConfigMap.
    ConfigMap(ObjectKeyRef),
}

impl ValidatedSpec {
    /// Whether `image_ref` is governed (see [`TrustRoot::governs`]).
    pub fn governs(&self, image_ref: &str) -> bool {
        let repository = glob::repository(image_ref);
        self.images.iter().any(|g| g.matches(&repository))
    }

    /// Whether a namespace with these labels is selected; no selector selects every namespace.
    pub fn selects_namespace(&self, labels: &BTreeMap<String, String>) -> bool {
        self.namespace_selector
            .as_ref()
            .is_none_or(|s| selector::matches(s, labels))
    }
}

impl TrustRoot {
    /// Checks the spec (see [`TrustRootSpec::validate`]).
    pub fn validate(&self) -> Result<ValidatedSpec, Vec<FieldError>> {
        self.spec.validate()
    }

    /// Whether a namespace with these labels is selected by `spec.namespaceSelector`.
    pub fn selects_namespace(&self, labels: &BTreeMap<String, String>) -> bool {
        self.spec
            .namespace_selector
            .as_ref()
            .is_none_or(|s| selector::matches(s, labels))
    }
}

impl TrustRootSpec {
    /// Checks every field and reports every problem, each with its field path
    /// (`spec.keys[1].publicKey: …`).
    pub fn validate(&self) -> Result<ValidatedSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let images = check_images(&self.images, &mut errors);
        if let Some(s) = &self.namespace_selector {
            selector::check(s, "spec.namespaceSelector", &mut errors);
        }
        let keys = check_keys(&self.keys, !self.identities.is_empty(), &mut errors);
        let identities = check_identities(&self.identities, &self.keys, &mut errors);
        let signers = self.keys.len() + self.identities.len();
        let threshold = check_threshold(self.threshold, signers, &mut errors);
        if let Some(repository) = &self.signature_repository {
            check_signature_repository(repository, &mut errors);
        }
        let reverify_interval = check_reverify_interval(&self.reverify_interval, &mut errors);
        let attestations = super::attestation::check_attestations(&self.attestations, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ValidatedSpec {
            images,
            namespace_selector: self.namespace_selector.clone(),
            keys,
            identities,
            threshold,
            signature_repository: self.signature_repository.clone(),
            reverify_interval,
            mode: self.mode,
            pin_to_digest: self.pin_to_digest,
            attestations,
        })
    }
}

fn check_images(images: &[String], errors: &mut Vec<FieldError>) -> Vec<Glob> {
    if images.is_empty() {
        errors.push(FieldError::new(
            "spec.images",
            "must list at least one image glob, e.g. registry.example.com/team/**",
        ));
    }
    if images.len() > MAX_IMAGES {
        errors.push(FieldError::new(
            "spec.images",
            format!("has {} globs; at most {MAX_IMAGES} are allowed", images.len()),
        ));
    }
    let mut globs = Vec::with_capacity(images.len());
    for (i, pattern) in images.iter().enumerate() {
        match Glob::new(pattern) {
            Ok(g) => globs.push(g),
            Err(e) => errors.push(FieldError::new(format!("spec.images[{i}]"), e)),
        }
    }
    globs
}

fn check_keys(
    keys: &[TrustRootKey],
    has_identities: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<ValidatedKey> {
    if keys.is_empty() && !has_identities {
        errors.push(FieldError::new(
            "spec.keys",
            "must declare at least one public key (or a keyless signer in spec.identities)",
        ));
    }
    if keys.len() > MAX_KEYS {
        errors.push(FieldError::new(
            "spec.keys",
            format!("has {} keys; at most {MAX_KEYS} are allowed", keys.len()),
        ));
    }
    let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut validated = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let at = format!("spec.keys[{i}]");
        match first_index.entry(&key.name) {
            Entry::Vacant(slot) => {
                slot.insert(i);
            }
            // An empty name is reported by check_key_name already.
            Entry::Occupied(first) if !key.name.is_empty() => errors.push(FieldError::new(
                format!("{at}.name"),
                format!(
                    "duplicate key name {:?} (also spec.keys[{}])",
                    key.name,
                    first.get()
                ),
            )),
            Entry::Occupied(_) => {}
        }
        if let Some(key) = check_key(key, &at, errors) {
            validated.push(key);
        }
    }
    validated
}

/// Identity names share the key names' namespace: a threshold or a rotation names either.
fn check_identities(
    identities: &[TrustRootIdentity],
    keys: &[TrustRootKey],
    errors: &mut Vec<FieldError>,
) -> Vec<NamedIdentity> {
    if identities.len() > MAX_KEYS {
        errors.push(FieldError::new(
            "spec.identities",
            format!(
                "has {} identities; at most {MAX_KEYS} are allowed",
                identities.len()
            ),
        ));
    }
    let mut compiled = Vec::with_capacity(identities.len());
    for (i, identity) in identities.iter().enumerate() {
        let at = format!("spec.identities[{i}]");
        let name_ok = check_key_name(&identity.name, &format!("{at}.name"), errors);
        let taken = keys
            .iter()
            .position(|k| k.name == identity.name)
            .map(|k| format!("spec.keys[{k}]"))
            .or_else(|| {
                identities[..i]
                    .iter()
                    .position(|o| o.name == identity.name)
                    .map(|o| format!("spec.identities[{o}]"))
            });
        if let Some(other) = taken.filter(|_| name_ok) {
            errors.push(FieldError::new(
                format!("{at}.name"),
                format!("duplicate signer name {:?} (also {other})", identity.name),
            ));
        }
        match identity.compile(&at) {
            Ok(matcher) if name_ok => compiled.push(NamedIdentity {
                name: identity.name.clone(),
                identity: matcher,
            }),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    compiled
}

fn check_key(key: &TrustRootKey, at: &str, errors: &mut Vec<FieldError>) -> Option<ValidatedKey> {
    let name_ok = check_key_name(&key.name, &format!("{at}.name"), errors);
    let source = match (&key.public_key, &key.secret_ref, &key.config_map_ref) {
        (Some(pem), None, None) => match PublicKey::from_pem(pem) {
            Ok(public_key) => Some(KeySource::Inline(public_key)),
            Err(e) => {
                errors.push(FieldError::new(format!("{at}.publicKey"), e.to_string()));
                None
            }
        },
        (None, Some(r), None) => {
            check_object_ref(r, &format!("{at}.secretRef"), errors).then(|| KeySource::Secret(r.clone()))
        }
        (None, None, Some(r)) => check_object_ref(r, &format!("{at}.configMapRef"), errors)
            .then(|| KeySource::ConfigMap(r.clone())),
        _ => {
            errors.push(FieldError::new(
                at,
                "a key needs exactly one source: set one of publicKey, secretRef or configMapRef",
            ));
            None
        }
    };
    let source = source?;
    name_ok.then(|| ValidatedKey {
        name: key.name.clone(),
        source,
    })
}

/// Key names appear in events, annotations and metrics labels: keep them DNS-label-like.
fn check_key_name(name: &str, path: &str, errors: &mut Vec<FieldError>) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = !name.is_empty()
        && name.len() <= 63
        && alnum(name.chars().next())
        && alnum(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !ok {
        errors.push(FieldError::new(
            path,
            format!(
                "{name:?} is not a key name: use at most 63 lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit (e.g. ci-2026)"
            ),
        ));
    }
    ok
}

fn check_object_ref(r: &ObjectKeyRef, at: &str, errors: &mut Vec<FieldError>) -> bool {
    let before = errors.len();
    let mut require = |field: &str, value: &str, max: usize| {
        if value.is_empty() || value.len() > max {
            errors.push(FieldError::new(
                format!("{at}.{field}"),
                format!("must be 1 to {max} characters long"),
            ));
        }
    };
    require("name", &r.name, 253);
    require("namespace", &r.namespace, 63);
    require("key", &r.key, 253);
    let data_key_char = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    if !r.key.chars().all(data_key_char) {
        errors.push(FieldError::new(
            format!("{at}.key"),
            format!(
                "{:?} is not a data key: use letters, digits, '-', '_' and '.'",
                r.key
            ),
        ));
    }
    errors.len() == before
}

fn check_threshold(threshold: i32, keys: usize, errors: &mut Vec<FieldError>) -> usize {
    let Ok(threshold @ 1..) = usize::try_from(threshold) else {
        errors.push(FieldError::new(
            "spec.threshold",
            format!("{threshold} must be at least 1"),
        ));
        return 0;
    };
    if threshold > keys {
        errors.push(FieldError::new(
            "spec.threshold",
            format!("{threshold} must not exceed the number of keys and identities ({keys})"),
        ));
    }
    threshold
}

fn check_signature_repository(repository: &str, errors: &mut Vec<FieldError>) {
    let path = "spec.signatureRepository";
    // A signature repository is a glob without wildcards, and must have a path.
    if repository.contains(['*', '?']) {
        errors.push(FieldError::new(
            path,
            format!("{repository:?} must be a repository, not a glob"),
        ));
    } else if let Err(e) = Glob::new(repository) {
        errors.push(FieldError::new(path, e));
    } else if !repository.contains('/') {
        errors.push(FieldError::new(
            path,
            format!("{repository:?} must be <registry>/<path>, e.g. registry.example.com/signatures"),
        ));
    }
}

fn check_reverify_interval(value: &str, errors: &mut Vec<FieldError>) -> Duration {
    let path = "spec.reverifyInterval";
    match parse_duration(path, value) {
        Ok(d) if (MIN_REVERIFY..=MAX_REVERIFY).contains(&d) => d,
        Ok(d) => {
            errors.push(FieldError::new(
                path,
                format!("{value:?} must be between 10s and 24h"),
            ));
            d
        }
        Err(e) => {
            errors.push(e);
            Duration::ZERO
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
