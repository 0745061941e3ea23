//! The operator (`countersign run`): watches pods and trust roots, verifies what runs, and writes
//! verdicts where people look.
//!
//! ```text
//!            watches (all replicas)                      leader only
//! Pods, ReplicaSets, Jobs, Deployments, …  ──► Index ──► Reconciler passes ──► annotations, Events,
//! Namespaces, TrustRoots                        ▲          │                  TrustRoot status
//!                                               │          ▼
//!                          Secrets, ConfigMaps (get + cache)   registries (per-credentials clients
//!                                                              + signature and tag caches)
//! ```
//!
//! Every replica watches (so a standby takes over with warm caches); only the Lease holder
//! verifies and writes. The steps of a pass are in [`reconciler`]; the pure ones ([`world`],
//! [`plan`], [`verdict`], [`annotations`], [`events`], [`status`]) are unit-tested on their own.

pub mod annotations;
pub mod clients;
pub mod error;
pub mod events;
pub mod http;
pub mod index;
pub mod leader;
pub mod lookup;
pub mod metrics;
pub mod objects;
pub mod plan;
pub mod pods;
pub mod reconciler;
pub mod status;
pub mod trust;
pub mod verdict;
pub mod watch;
pub mod workload;
pub mod world;
pub mod writes;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use kube::{
    Client,
    runtime::events::{Recorder, Reporter},
};
use tokio::{sync::watch as signal, task::JoinSet};

pub use error::{Error, Result};

use self::{
    clients::{RegistryPool, SecretRef},
    http::Health,
    index::Index,
    leader::LeaseConfig,
    metrics::Metrics,
    objects::ObjectCache,
    reconciler::{Parts, Reconciler},
};
use crate::registry::{Limits, RegistryOptions};

/// The name Events and field managers carry.
pub const CONTROLLER: &str = "countersign";

/// How long Secrets and ConfigMaps (keys, pull secrets) are trusted before being read again.
const OBJECT_TTL: Duration = Duration::from_secs(30);

/// Everything `countersign run` can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub metrics_addr: SocketAddr,
    pub lease: LeaseConfig,
    /// A `kubernetes.io/dockerconfigjson` secret used for every registry, after the pods' own.
    pub registry_credentials: Option<SecretRef>,
    /// Registries reached over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// Digests verified at once.
    pub concurrency: usize,
    /// Registry requests in flight at once, per set of credentials.
    pub registry_requests: usize,
    /// TrustSources: cache folder, namespace of their Secrets, webhook receiver.
    pub gitops: crate::gitops::Config,
}

/// Runs the operator until `shutdown` resolves (then releases the Lease and returns `Ok`), or
/// until something it cannot go on without fails: the metrics address, or the Lease lost.
pub async fn run(client: Client, config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let metrics = Metrics::new();
    let health = Health::default();
    let index = Arc::new(Index::default());
    let (stop, _) = signal::channel(false);
    let mut http = tokio::spawn(http::serve(
        config.metrics_addr,
        health.clone(),
        metrics.clone(),
        stopped(stop.subscribe()),
    ));
    let mut watches = JoinSet::new();
    for w in watch::all(&client, &index, &metrics) {
        watches.spawn(w);
    }
    // The Git webhook receiver answers on every replica (it only annotates TrustSources).
    let mut receiver = JoinSet::new();
    if let Some(addr) = config.gitops.webhook_addr {
        let listener = crate::gitops::receiver::bind(addr).await.map_err(Error::Http)?;
        let (client, gitops) = (client.clone(), config.gitops.clone());
        receiver.spawn(async move { crate::gitops::receiver::serve(listener, client, &gitops).await });
    }
    let feeds = watches.len();
    let leading = lead(
        &client,
        &config,
        (&index, feeds),
        &metrics,
        &health,
        stop.subscribe(),
    );
    tokio::pin!(shutdown, leading);
    enum Ended {
        Leading(Result<()>),
        Http(Error),
        Shutdown,
    }
    let ended = tokio::select! {
        r = &mut leading => Ended::Leading(r),
        r = &mut http => Ended::Http(http_error(r)),
        () = &mut shutdown => Ended::Shutdown,
    };
    let result = match ended {
        Ended::Leading(r) => r,
        Ended::Http(e) => Err(e),
        Ended::Shutdown => {
            tracing::info!("shutting down");
            let _ = stop.send(true);
            leading.await
        }
    };
    watches.abort_all();
    receiver.abort_all();
    let _ = stop.send(true);
    if !http.is_finished() {
        let _ = http.await;
    }
    result
}

async fn stopped(mut stop: signal::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn http_error(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Error {
    match joined {
        Ok(Err(e)) => Error::Http(e),
        Ok(Ok(())) => Error::Http(std::io::Error::other("the metrics server stopped")),
        Err(e) => Error::Http(std::io::Error::other(e.to_string())),
    }
}

/// Waits for the caches, then for the Lease, then reconciles until the Lease is lost or `stop`
/// turns true; on stop, the Lease is released so a standby takes over at once.
async fn lead(
    client: &Client,
    config: &Config,
    (index, feeds): (&Arc<Index>, usize),
    metrics: &Arc<Metrics>,
    health: &Health,
    mut stop: signal::Receiver<bool>,
) -> Result<()> {
    tokio::select! {
        () = index.synced().wait_for(feeds) => {}
        _ = stop.wait_for(|s| *s) => return Ok(()),
    }
    tracing::info!(identity = %config.lease.identity, "caches synced; waiting for the lease");
    // A standby is ready: it can take over.
    health.set_ready(true);
    let acquired = tokio::select! {
        r = leader::acquire(client.clone(), config.lease.clone()) => r,
        _ = stop.wait_for(|s| *s) => return Ok(()),
    };
    let mut leadership = acquired.map_err(|e| Error::Leadership(e.to_string()))?;
    tracing::info!(identity = %config.lease.identity, "leading");
    metrics.set_leader(true);
    health.set_ready(false);
    let parts = parts(client, config, index, metrics);
    let sources = crate::gitops::controller::Context::new(
        client.clone(),
        config.gitops.clone(),
        parts.recorder.clone(),
        metrics.clone(),
    );
    let reconciler = Reconciler::new(parts);
    let work = futures::future::join(
        reconciler.run(health.clone()),
        crate::gitops::controller::run(sources),
    );
    let lost = tokio::select! {
        _ = work => false,
        () = leadership.lost() => true,
        _ = stop.wait_for(|s| *s) => false,
    };
    metrics.set_leader(false);
    if lost {
        let why = leadership
            .lost_reason()
            .map_or_else(|| "the lease was lost".to_string(), |r| r.to_string());
        return Err(Error::Leadership(why));
    }
    leadership.release().await;
    tracing::info!("lease released");
    Ok(())
}

fn parts(client: &Client, config: &Config, index: &Arc<Index>, metrics: &Arc<Metrics>) -> Parts {
    let reporter = Reporter {
        controller: CONTROLLER.into(),
        instance: Some(config.lease.identity.clone()),
    };
    let options = RegistryOptions {
        limits: Limits {
            max_concurrent_requests: config.registry_requests,
            ..Limits::default()
        },
        insecure_registries: config.insecure_registries.clone(),
        observer: Some(metrics.registry_observer()),
        ..RegistryOptions::default()
    };
    Parts {
        client: client.clone(),
        index: index.clone(),
        metrics: metrics.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        pool: RegistryPool::new(options, config.registry_credentials.clone()),
        objects: ObjectCache::new(client.clone(), OBJECT_TTL),
        concurrency: config.concurrency,
    }
}
