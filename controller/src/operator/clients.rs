//! Registry clients, one per distinct set of credentials.
//!
//! A workload's pods name their pull secrets; the controller-wide secret (`--registry-credentials-
//! secret`) comes after them. Each distinct list of secrets gets its own [`Verifier`]: a
//! `RegistryClient` with those credentials merged, and the signature and tag caches that go with
//! it. So namespace A's credentials are never used to read for namespace B, and most clusters,
//! where few distinct pull secrets exist, get few clients. A client is rebuilt (with empty
//! caches) when the content of one of its secrets changes.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::objects::{ObjectKind, ObjectSource};
use crate::{
    reference::{Digest, ImageRef},
    registry::{Credentials, RegistryClient, RegistryError, RegistryOptions},
    verify::{Attestations, SignatureCache},
};

/// A secret by namespace and name.
pub type SecretRef = (String, String);

/// Which secrets make up a credential set, in order of precedence.
pub type CredentialsKey = Vec<SecretRef>;

/// Reads and caches through one set of credentials.
pub struct Verifier {
    credentials: Credentials,
    /// When a pass or an admission last asked for it.
    used_at: Mutex<Instant>,
    pub signatures: SignatureCache<RegistryClient>,
    /// Attestations (`.att` tags, bundle referrers of other predicate types), through the same
    /// client; only asked for digests whose TrustRoots require attestations.
    pub attestations: SignatureCache<Attestations>,
    pub tags: TagCache,
}

impl Verifier {
    fn new(options: &RegistryOptions, credentials: Credentials) -> Self {
        let client = RegistryClient::new(RegistryOptions {
            credentials: credentials.clone(),
            ..options.clone()
        });
        let client = Arc::new(client);
        Self {
            credentials,
            used_at: Mutex::new(Instant::now()),
            attestations: SignatureCache::new(Arc::new(Attestations(client.clone()))),
            signatures: SignatureCache::new(client),
            tags: TagCache::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        self.signatures.source()
    }
}

pub struct RegistryPool {
    options: RegistryOptions,
    global: Option<SecretRef>,
    verifiers: Mutex<HashMap<CredentialsKey, Arc<Verifier>>>,
}

impl RegistryPool {
    /// `options` without credentials; `global` is the controller-wide secret.
    pub fn new(options: RegistryOptions, global: Option<SecretRef>) -> Self {
        Self {
            options,
            global,
            verifiers: Mutex::new(HashMap::new()),
        }
    }

    /// The key of the credentials for pods in `namespace` with these pull secrets.
    pub fn key(&self, namespace: &str, pull_secrets: &[String]) -> CredentialsKey {
        let mut key: CredentialsKey = pull_secrets
            .iter()
            .map(|name| (namespace.to_string(), name.clone()))
            .collect();
        key.dedup();
        key.extend(self.global.iter().cloned());
        key
    }

    /// The verifier for `key`, built (or rebuilt, when a secret's content changed) as needed.
    pub async fn verifier(&self, key: &CredentialsKey, objects: &impl ObjectSource) -> Arc<Verifier> {
        let credentials = credentials(key, objects).await;
        let mut verifiers = lock(&self.verifiers);
        match verifiers.get(key) {
            Some(v) if v.credentials == credentials => {
                *lock(&v.used_at) = Instant::now();
                v.clone()
            }
            _ => {
                let v = Arc::new(Verifier::new(&self.options, credentials));
                verifiers.insert(key.clone(), v.clone());
                v
            }
        }
    }

    /// Drops the verifiers no workload uses any more and nothing asked for within `recent`.
    pub fn retain(&self, recent: Duration, used: &HashSet<CredentialsKey>) {
        lock(&self.verifiers).retain(|k, v| used.contains(k) || lock(&v.used_at).elapsed() < recent);
    }
}

/// The credentials of `key`'s secrets, merged (earlier secrets win per registry). A secret that
/// cannot be read or parsed is skipped with a warning: anonymous access may still work.
async fn credentials(key: &CredentialsKey, objects: &impl ObjectSource) -> Credentials {
    let mut merged = Credentials::anonymous();
    for (namespace, name) in key {
        let data = match objects.get(ObjectKind::Secret, namespace, name).await {
            Ok(Some(data)) => data,
            Ok(None) => {
                tracing::debug!(%namespace, %name, "pull secret not found");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "pull secret unreadable");
                continue;
            }
        };
        match docker_config(&data, &format!("Secret {namespace}/{name}")) {
            Some(Ok(c)) => merged.merge(&c),
            Some(Err(e)) => tracing::warn!(%namespace, %name, error = %e, "pull secret unusable"),
            None => tracing::debug!(%namespace, %name, "secret is not a docker config"),
        }
    }
    merged
}

/// A `kubernetes.io/dockerconfigjson` secret (`.dockerconfigjson`), or the older
/// `kubernetes.io/dockercfg` (`.dockercfg`: the `auths` map alone).
fn docker_config(
    data: &std::collections::BTreeMap<String, Vec<u8>>,
    origin: &str,
) -> Option<Result<Credentials, crate::registry::CredentialsError>> {
    if let Some(json) = data.get(".dockerconfigjson") {
        return Some(Credentials::from_docker_config(json, origin));
    }
    let old = data.get(".dockercfg")?;
    let wrapped = serde_json::from_slice::<serde_json::Value>(old)
        .map(|auths| serde_json::json!({ "auths": auths }).to_string().into_bytes())
        .unwrap_or_else(|_| old.clone());
    Some(Credentials::from_docker_config(&wrapped, origin))
}

/// Where tags point, checked at most once per `max_age`, with the last good answer kept through
/// registry errors (as the signature cache does).
#[derive(Default)]
pub struct TagCache {
    entries: Mutex<HashMap<String, TagEntry>>,
}

#[derive(Clone)]
struct TagEntry {
    digest: Option<Digest>,
    checked_at: Instant,
    error: Option<RegistryError>,
}

/// What a tag points at: the last digest known, and the error of the latest check when it failed.
#[derive(Clone, Debug)]
pub struct Tag {
    pub digest: Option<Digest>,
    pub error: Option<RegistryError>,
}

impl TagCache {
    pub async fn resolve(&self, client: &RegistryClient, image: &ImageRef, max_age: Duration) -> Tag {
        let key = image.to_string();
        let cached = lock(&self.entries).get(&key).cloned();
        if let Some(e) = cached
            .as_ref()
            .filter(|e| e.error.is_none() && e.checked_at.elapsed() < max_age)
        {
            return Tag {
                digest: e.digest.clone(),
                error: None,
            };
        }
        let entry = match client.resolve(image).await {
            Ok(digest) => TagEntry {
                digest: Some(digest),
                checked_at: Instant::now(),
                error: None,
            },
            Err(error) => TagEntry {
                digest: cached.as_ref().and_then(|e| e.digest.clone()),
                checked_at: cached.as_ref().map_or_else(Instant::now, |e| e.checked_at),
                error: Some(error),
            },
        };
        lock(&self.entries).insert(key, entry.clone());
        Tag {
            digest: entry.digest,
            error: entry.error,
        }
    }

    /// Forgets tags no running image uses, unless checked within `recent` (admission).
    pub fn retain(&self, recent: Duration, keep: &HashSet<String>) {
        lock(&self.entries).retain(|k, e| keep.contains(k) || e.checked_at.elapsed() < recent);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use oci_client::secrets::RegistryAuth;

    use super::*;

    #[test]
    fn both_pull_secret_formats_are_read() {
        let new = BTreeMap::from([(
            ".dockerconfigjson".to_string(),
            br#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#.to_vec(),
        )]);
        let old = BTreeMap::from([(
            ".dockercfg".to_string(),
            br#"{"r.example":{"username":"u","password":"p"}}"#.to_vec(),
        )]);
        for data in [new, old] {
            let c = docker_config(&data, "Secret ns/pull")
                .and_then(Result::ok)
                .unwrap_or_default();
            assert_eq!(
                c.for_registry("r.example"),
                RegistryAuth::Basic("u".into(), "p".into())
            );
        }
        assert!(docker_config(&BTreeMap::new(), "Secret ns/pull").is_none());
    }

    #[test]
    fn keys_put_pod_secrets_before_the_global_one() {
        let pool = RegistryPool::new(
            RegistryOptions::default(),
            Some(("system".into(), "global".into())),
        );
        assert_eq!(
            pool.key("ns", &["a".into(), "a".into(), "b".into()]),
            vec![
                ("ns".to_string(), "a".to_string()),
                ("ns".into(), "b".into()),
                ("system".into(), "global".into())
            ]
        );
        assert_eq!(pool.key("ns", &[]), vec![("system".into(), "global".into())]);
    }
}
