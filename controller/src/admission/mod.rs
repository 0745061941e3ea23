//! Admission enforcement: the same engine and caches that re-verify what runs, asked by the API
//! server before anything runs. Every replica serves it (not only the leader), over TLS with
//! certificates it manages itself.
//!
//! ```text
//! API server ──TLS──► /validate ─review (pure)─► subject: kind, namespace, images + pointers
//!                                 ─judge─► per image × governing TrustRoot: Answer
//!                                          (tag cache, signature cache, check_all + decide,
//!                                           rotations' acceptance, deadline, max_stale;
//!                                           required attestations as the operator checks them)
//!                                 ─decide (pure)─► allowed / warned / denied + message
//!            ──TLS──► /mutate   ─same judging─► JSON Patch: verified tags pinned to digests
//! watches ─► trust (per replica): TrustRoots compiled + rotation acceptance, rebuilt on change
//! Secret ◄─► tls: CA + serving certificate, renewed before expiry; webhook caBundle in step
//! ```

pub mod certs;
pub mod decide;
pub mod judge;
pub mod review;
pub mod tls;
pub mod trust;
pub mod webhook;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use kube::{Client, runtime::events::Recorder};
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;

use self::{judge::Judge, tls::CertConfig, webhook::Webhook};
use crate::operator::{clients::RegistryPool, index::Index, metrics::Metrics, objects::ObjectCache};

/// Secrets and ConfigMaps (keys, pull secrets) read for admission are trusted this long.
const OBJECT_TTL: Duration = Duration::from_secs(30);

/// What `countersign run` is told about admission.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the webhooks are served (HTTPS).
    pub addr: SocketAddr,
    pub certs: CertConfig,
    /// A digest never seen is verified within this time; past it the answer is "registry
    /// unreachable". Below the webhook's `timeoutSeconds`, so the API server gets our reason.
    pub deadline: Duration,
    /// A cached verdict this young stands in for a registry that cannot be reached.
    pub max_stale: Duration,
    /// Namespaces never checked.
    pub excluded_namespaces: Vec<String>,
    /// Pin every governed, verified tag to its digest (the mutating webhook).
    pub pin_all: bool,
}

/// What the operator serves and runs for admission.
pub struct Admission {
    pub router: Router,
    pub tls: Arc<ServerConfig>,
    /// Keeps trust and certificates current; runs until dropped.
    pub keepers: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// The parts shared with the operator.
pub struct Shared {
    pub client: Client,
    pub index: Arc<Index>,
    /// How many watches feed `index` (admission answers once all have synced).
    pub feeds: usize,
    pub pool: Arc<RegistryPool>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
}

pub fn start(config: &Config, shared: Shared) -> Result<Admission, certs::CertError> {
    let objects = Arc::new(ObjectCache::new(shared.client.clone(), OBJECT_TTL));
    let (trust_tx, trust_rx) = watch::channel(None);
    let resolver = Arc::new(tls::Resolver::default());
    let tls = tls::server_config(resolver.clone())?;
    let webhook = Arc::new(Webhook {
        judge: Judge {
            pool: shared.pool,
            objects: objects.clone(),
            metrics: shared.metrics.clone(),
            deadline: config.deadline,
            max_stale: config.max_stale,
        },
        trust: trust_rx,
        index: shared.index.clone(),
        recorder: shared.recorder,
        metrics: shared.metrics,
        excluded: config.excluded_namespaces.clone(),
        pin_all: config.pin_all,
    });
    let keep_trust = trust::keep((shared.index, shared.feeds), objects, trust_tx);
    let keep_certs = tls::keep(shared.client, config.certs.clone(), resolver);
    let keepers = Box::pin(async move {
        futures::future::join(keep_trust, keep_certs).await;
    });
    Ok(Admission {
        router: webhook::router(webhook),
        tls,
        keepers,
    })
}
