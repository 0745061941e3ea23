//! Secrets and ConfigMaps, read on demand and cached for a short while: TrustRoot keys held in
//! them, and registry pull secrets. Few objects are involved, so watching every Secret of the
//! cluster (and keeping them all in memory) would cost far more than the occasional GET.
//!
//! A failed read keeps the last good content: an API server hiccup must not make a key vanish
//! (every workload it verifies would drift).

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use super::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Secret,
    ConfigMap,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::ConfigMap => "ConfigMap",
        }
    }
}

/// An object's data (`data` and `binaryData` of a ConfigMap, `data` of a Secret), as bytes.
pub type Data = Arc<BTreeMap<String, Vec<u8>>>;

type Key = (ObjectKind, String, String);

/// Where Secrets and ConfigMaps are read from: the cache below; fixtures in unit tests.
pub trait ObjectSource: Sync {
    /// The data of `namespace/name`; `None` when it does not exist.
    fn get(
        &self,
        kind: ObjectKind,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<Data>, Error>> + Send;
}

struct Entry {
    read_at: Instant,
    /// `None`: the object does not exist.
    data: Option<Data>,
}

pub struct ObjectCache {
    client: Client,
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl ObjectCache {
    pub fn new(client: Client, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The data of `namespace/name`, read at most `ttl` ago; `None` when it does not exist.
    async fn cached(&self, kind: ObjectKind, namespace: &str, name: &str) -> Result<Option<Data>, Error> {
        let key = (kind, namespace.to_string(), name.to_string());
        let cached = {
            let entries = lock(&self.entries);
            entries
                .get(&key)
                .map(|e| (e.read_at.elapsed() < self.ttl, e.data.clone()))
        };
        if let Some((true, data)) = cached {
            return Ok(data);
        }
        match self.read(kind, namespace, name).await {
            Ok(data) => {
                lock(&self.entries).insert(
                    key,
                    Entry {
                        read_at: Instant::now(),
                        data: data.clone(),
                    },
                );
                Ok(data)
            }
            Err(e) => match cached {
                Some((_, data)) => {
                    tracing::warn!(error = %e, "keeping the last content read");
                    Ok(data)
                }
                None => Err(e),
            },
        }
    }

    async fn read(&self, kind: ObjectKind, namespace: &str, name: &str) -> Result<Option<Data>, Error> {
        let error = |source| Error::ReadObject {
            kind: kind.as_str(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        };
        let data = match kind {
            ObjectKind::Secret => Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(error)?
                .map(secret_data),
            ObjectKind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await
                .map_err(error)?
                .map(config_map_data),
        };
        Ok(data.map(Arc::new))
    }

    /// Forgets what was not read within `keep`: objects nobody refers to any more.
    pub fn prune(&self, keep: Duration) {
        lock(&self.entries).retain(|_, e| e.read_at.elapsed() < keep);
    }
}

impl ObjectSource for ObjectCache {
    async fn get(&self, kind: ObjectKind, namespace: &str, name: &str) -> Result<Option<Data>, Error> {
        self.cached(kind, namespace, name).await
    }
}

fn secret_data(s: Secret) -> BTreeMap<String, Vec<u8>> {
    s.data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

fn config_map_data(c: ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let text = c
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.into_bytes()));
    let binary = c
        .binary_data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0));
    text.chain(binary).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Secrets and ConfigMaps from a map, for unit tests.
#[cfg(test)]
#[derive(Default)]
pub struct Fixture(pub HashMap<Key, Data>);

#[cfg(test)]
impl ObjectSource for Fixture {
    async fn get(&self, kind: ObjectKind, namespace: &str, name: &str) -> Result<Option<Data>, Error> {
        Ok(self
            .0
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned())
    }
}
