//! From TrustRoot objects to what verifies: globs compiled, keys loaded (inline, or from a Secret
//! or ConfigMap), the effective key set. And, for status, what is wrong with each, by field.
//!
//! A TrustRoot that does not validate keeps its last valid generation in force (when this process
//! saw one): a typo pushed from Git must not turn every workload it governs into a drift storm,
//! nor silently stop verifying them. Its status says so. A malformed TrustRoot never affects the
//! others: each is compiled on its own.

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};

use kube::{ResourceExt, core::error_boundary::InvalidObject};

use super::{
    index::TrustRootEntry,
    objects::{ObjectKind, ObjectSource},
};
use crate::{
    crd::{
        FieldError, KeyState, KeyStatus, ObjectKeyRef, Tlog, TrustRoot, TrustRootKey, TrustRootSpec,
        ValidatedSpec,
    },
    keys::PublicKey,
    reference::ImageRef,
    sigstore::TrustedRoot,
    verify::{KeySet, NamedKey},
};

/// A TrustRoot as the verification uses it.
#[derive(Debug)]
pub struct CompiledRoot {
    pub name: String,
    pub uid: String,
    /// The generation it was compiled from.
    pub generation: Option<i64>,
    pub spec: ValidatedSpec,
    /// The keys accepted now, and the threshold.
    pub keys: KeySet,
    pub signature_repository: Option<ImageRef>,
    pub interval: Duration,
    /// Changes whenever anything that decides a verdict changes (keys, threshold, repository):
    /// lets evaluations be reused while it stays the same.
    pub version: u64,
}

impl CompiledRoot {
    /// Whether this root declares `key` and it loads. Whether it is accepted right now also
    /// depends on rotations (see `rotation::Acceptance`).
    pub fn declares(&self, key: &str) -> bool {
        self.keys.names().any(|k| k == key)
    }
}

/// One TrustRoot object, as status reports it.
#[derive(Debug)]
pub struct RootReport {
    pub name: String,
    pub generation: Option<i64>,
    /// Problems with the spec outside `spec.keys`, each naming its field.
    pub spec_errors: Vec<FieldError>,
    /// Problems with keys: syntax, or a Secret/ConfigMap that cannot be used.
    pub key_errors: Vec<FieldError>,
    pub keys: Vec<KeyStatus>,
    /// What governs now: this generation, or the last valid one, or nothing.
    pub active: Option<Arc<CompiledRoot>>,
    pub root: Option<Arc<TrustRoot>>,
}

impl RootReport {
    pub fn is_current(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|a| a.generation == self.generation)
    }
}

/// Compiles TrustRoots, remembering the last valid compilation of each.
#[derive(Default)]
pub struct TrustCompiler {
    last_good: HashMap<String, Arc<CompiledRoot>>,
}

impl TrustCompiler {
    /// Compiles every object; `objects` holds both decodable and undecodable ones.
    pub async fn compile(
        &mut self,
        objects: &[TrustRootEntry],
        reader: &impl ObjectSource,
    ) -> Vec<RootReport> {
        let mut reports = Vec::with_capacity(objects.len());
        for object in objects {
            reports.push(match object {
                Ok(root) => self.compile_one(root, reader).await,
                Err(invalid) => undecodable(invalid),
            });
        }
        let present: HashSet<&str> = reports.iter().map(|r| r.name.as_str()).collect();
        self.last_good.retain(|name, _| present.contains(name.as_str()));
        reports
    }

    /// The compilations in force (current or last good), as of the last `compile`.
    pub fn active(&self) -> impl Iterator<Item = &Arc<CompiledRoot>> {
        self.last_good.values()
    }

    async fn compile_one(&mut self, root: &Arc<TrustRoot>, reader: &impl ObjectSource) -> RootReport {
        let name = root.name_any();
        let uid = root.uid().unwrap_or_default();
        let loaded = load_keys(&root.spec.keys, reader).await;
        let mut keys = key_statuses(&root.spec.keys, &loaded);
        let validated = root.validate();
        let trusted_root = match &validated {
            Ok(spec) if !spec.identities.is_empty() || spec_requires_log(&root.spec) => {
                Some(load_trusted_root(&root.spec, reader).await)
            }
            _ => None,
        };
        if let Ok(spec) = &validated {
            keys.extend(identity_statuses(spec, trusted_root.as_ref()));
        }
        let (mut spec_errors, mut key_errors): (Vec<_>, Vec<_>) = match &validated {
            Ok(_) => (Vec::new(), Vec::new()),
            Err(errors) => errors
                .iter()
                .cloned()
                .partition(|e| !e.path.starts_with("spec.keys")),
        };
        // Inline PEM errors come from validate() too; the loader adds the referenced keys'.
        let root_error = trusted_root.as_ref().and_then(|r| r.as_ref().err());
        for error in loaded.iter().filter_map(|l| l.as_ref().err()).chain(root_error) {
            if !key_errors.contains(error) {
                key_errors.push(error.clone());
            }
        }
        let active = match validated {
            Ok(spec) => {
                let trusted_root = trusted_root.and_then(Result::ok);
                let compiled = Arc::new(compiled(root, &name, uid, spec, &loaded, trusted_root));
                self.last_good.insert(name.clone(), compiled.clone());
                Some(compiled)
            }
            Err(_) => self.last_good.get(&name).filter(|g| g.uid == uid).cloned(),
        };
        spec_errors.sort_by(|a, b| a.path.cmp(&b.path));
        RootReport {
            name,
            generation: root.metadata.generation,
            spec_errors,
            key_errors,
            keys,
            active,
            root: Some(root.clone()),
        }
    }
}

fn undecodable(invalid: &InvalidObject) -> RootReport {
    RootReport {
        name: invalid.metadata.name.clone().unwrap_or_default(),
        generation: invalid.metadata.generation,
        spec_errors: vec![FieldError::new(
            "spec",
            format!("cannot be read: {}", invalid.error),
        )],
        key_errors: Vec::new(),
        keys: Vec::new(),
        active: None,
        root: None,
    }
}

fn compiled(
    root: &TrustRoot,
    name: &str,
    uid: String,
    spec: ValidatedSpec,
    loaded: &[Result<PublicKey, FieldError>],
    trusted_root: Option<Arc<TrustedRoot>>,
) -> CompiledRoot {
    let keys: Vec<NamedKey> = root
        .spec
        .keys
        .iter()
        .zip(loaded)
        .filter_map(|(k, l)| {
            l.as_ref().ok().map(|key| NamedKey {
                name: k.name.clone(),
                key: key.clone(),
            })
        })
        .collect();
    let signature_repository = spec
        .signature_repository
        .as_deref()
        .and_then(|r| ImageRef::parse(r).ok())
        .map(|r| r.repository_only());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (
        root.metadata.generation,
        spec.threshold,
        &spec.signature_repository,
    )
        .hash(&mut hasher);
    for k in &keys {
        (&k.name, k.key.fingerprint()).hash(&mut hasher);
    }
    for r in &spec.attestations {
        (&r.predicate_type, r.policy.as_ref().map(|p| p.expression())).hash(&mut hasher);
    }
    let mut key_set = KeySet::new(keys, spec.threshold);
    // Without its trusted root (unreadable), no identity is accepted: its signatures count as
    // invalid, and status says why.
    let tlog = Tlog::policy(root.spec.tlog);
    tlog.hash(&mut hasher);
    if let Some(trusted_root) = trusted_root {
        trusted_root.fingerprint().hash(&mut hasher);
        for i in &spec.identities {
            (&i.name, i.identity.fingerprint()).hash(&mut hasher);
        }
        key_set = key_set
            .with_tlog(tlog, trusted_root.clone())
            .with_identities(spec.identities.clone(), trusted_root);
    } else {
        // Required with an unreadable root: no signature has a log entry that verifies.
        key_set.tlog = tlog;
    }
    CompiledRoot {
        name: name.to_string(),
        uid,
        generation: root.metadata.generation,
        interval: spec.reverify_interval,
        keys: key_set,
        signature_repository,
        spec,
        version: hasher.finish(),
    }
}

/// Each declared key, loaded, or the problem with it at its field.
pub async fn load_keys(
    keys: &[TrustRootKey],
    reader: &impl ObjectSource,
) -> Vec<Result<PublicKey, FieldError>> {
    let mut out = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let at = format!("spec.keys[{i}]");
        out.push(match (&key.public_key, &key.secret_ref, &key.config_map_ref) {
            (Some(pem), None, None) => PublicKey::from_pem(pem)
                .map_err(|e| FieldError::new(format!("{at}.publicKey"), e.to_string())),
            (None, Some(r), None) => {
                referenced(reader, ObjectKind::Secret, r, &format!("{at}.secretRef")).await
            }
            (None, None, Some(r)) => {
                referenced(reader, ObjectKind::ConfigMap, r, &format!("{at}.configMapRef")).await
            }
            _ => Err(FieldError::new(
                at,
                "a key needs exactly one source: set one of publicKey, secretRef or configMapRef",
            )),
        });
    }
    out
}

async fn referenced(
    reader: &impl ObjectSource,
    kind: ObjectKind,
    r: &ObjectKeyRef,
    at: &str,
) -> Result<PublicKey, FieldError> {
    let what = format!("{} {}/{}", kind.as_str(), r.namespace, r.name);
    let data = reader
        .get(kind, &r.namespace, &r.name)
        .await
        .map_err(|e| FieldError::new(at, format!("{what} cannot be read: {e}")))?
        .ok_or_else(|| FieldError::new(at, format!("{what} not found")))?;
    let pem = data
        .get(&r.key)
        .ok_or_else(|| FieldError::new(at, format!("{what} has no key {:?}", r.key)))?;
    let pem = std::str::from_utf8(pem)
        .map_err(|_| FieldError::new(at, format!("{what} key {:?} is not text", r.key)))?;
    PublicKey::from_pem(pem).map_err(|e| FieldError::new(at, format!("{what} key {:?}: {e}", r.key)))
}

/// `spec.tlog: Required`: the log keys of the trusted root are needed for keys too.
fn spec_requires_log(spec: &TrustRootSpec) -> bool {
    spec.tlog == Some(Tlog::Required)
}

/// `spec.trustedRoot` loaded, or the public-good root when unset; a problem is reported at
/// `spec.trustedRoot`.
async fn load_trusted_root(
    spec: &TrustRootSpec,
    reader: &impl ObjectSource,
) -> Result<Arc<TrustedRoot>, FieldError> {
    let at = "spec.trustedRoot";
    let (kind, r, field) = match spec
        .trusted_root
        .as_ref()
        .map(|t| (&t.secret_ref, &t.config_map_ref))
    {
        None => return TrustedRoot::public_good().map_err(|e| FieldError::new(at, e.to_string())),
        Some((Some(r), None)) => (ObjectKind::Secret, r, "secretRef"),
        Some((None, Some(r))) => (ObjectKind::ConfigMap, r, "configMapRef"),
        Some(_) => {
            return Err(FieldError::new(
                at,
                "set exactly one of secretRef or configMapRef (omit trustedRoot for the public-good instance)",
            ));
        }
    };
    let at = format!("{at}.{field}");
    let what = format!("{} {}/{}", kind.as_str(), r.namespace, r.name);
    let data = reader
        .get(kind, &r.namespace, &r.name)
        .await
        .map_err(|e| FieldError::new(&at, format!("{what} cannot be read: {e}")))?
        .ok_or_else(|| FieldError::new(&at, format!("{what} not found")))?;
    let json = data
        .get(&r.key)
        .ok_or_else(|| FieldError::new(&at, format!("{what} has no key {:?}", r.key)))?;
    TrustedRoot::from_json(&format!("{what} key {:?}", r.key), json)
        .map(Arc::new)
        .map_err(|e| FieldError::new(&at, e.to_string()))
}

/// Each identity's state before rotations: Active while its trusted root loads. The fingerprint
/// is the identity's (its patterns), so a rotation retires "this identity", as it does a key.
fn identity_statuses(
    spec: &ValidatedSpec,
    trusted_root: Option<&Result<Arc<TrustedRoot>, FieldError>>,
) -> Vec<KeyStatus> {
    let root_error = trusted_root.and_then(|r| r.as_ref().err());
    spec.identities
        .iter()
        .map(|i| KeyStatus {
            name: i.name.clone(),
            fingerprint: root_error.is_none().then(|| i.identity.fingerprint()),
            state: if root_error.is_none() {
                KeyState::Active
            } else {
                KeyState::Invalid
            },
            since: None,
            rotation: None,
            message: root_error.map(ToString::to_string),
        })
        .collect()
}

/// Every declared key's state before rotations: Active when it loads. `rotation::key_states`
/// turns this into the states rotations give them.
fn key_statuses(keys: &[TrustRootKey], loaded: &[Result<PublicKey, FieldError>]) -> Vec<KeyStatus> {
    keys.iter()
        .zip(loaded)
        .map(|(k, l)| KeyStatus {
            name: k.name.clone(),
            fingerprint: l.as_ref().ok().map(PublicKey::fingerprint),
            state: if l.is_ok() {
                KeyState::Active
            } else {
                KeyState::Invalid
            },
            since: None,
            rotation: None,
            message: l.as_ref().err().map(ToString::to_string),
        })
        .collect()
}

#[cfg(test)]
#[path = "trust_tests.rs"]
pub(crate) mod tests;
