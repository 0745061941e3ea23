//! The operator (`countersign run`): watches pods and trust roots, verifies what runs, and writes
//! verdicts where people look.
//!
//! ```text
//!            watches (all replicas)                      leader only
//! Pods, ReplicaSets, Jobs, Deployments, …  ──► Index ──► Reconciler passes ──► WorkloadVerdicts,
//! Namespaces, TrustRoots, WorkloadVerdicts      ▲          │                  Events, TrustRoot status
//!                                               │          ▼
//!                          Secrets, ConfigMaps (get + cache)   registries (per-credentials clients
//!                                                              + signature and tag caches)
//! ```
//!
//! Every replica watches (so a standby takes over with warm caches); only the Lease holder
//! verifies and writes. The steps of a pass are in [`reconciler`]; the pure ones ([`world`],
//! [`plan`], [`verdict`], [`records`], [`events`], [`status`]) are unit-tested on their own.

pub mod annotations;
pub mod attestations;
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
pub mod records;
pub mod status;
pub mod tlog;
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
use tokio::{net::TcpListener, sync::watch as signal, task::JoinSet};

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
    /// The admission webhooks (every replica); `None`: not served.
    pub admission: Option<crate::admission::Config>,
    /// Write a `wgpolicyk8s.io/v1alpha2` PolicyReport per namespace (leader only).
    pub policy_reports: bool,
}

/// The addresses of `countersign run`, bound before anything else runs, so that a port taken
/// fails at once, and a caller that asked for port 0 can read the port it got.
pub struct Listeners {
    pub metrics: TcpListener,
    pub admission: Option<TcpListener>,
    pub git: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Self> {
        let metrics = http::bind(config.metrics_addr).await.map_err(Error::Http)?;
        let admission = match &config.admission {
            Some(a) => Some(
                crate::server::bind("admission", a.addr)
                    .await
                    .map_err(Error::Http)?,
            ),
            None => None,
        };
        let git = match config.gitops.webhook_addr {
            Some(addr) => Some(crate::gitops::receiver::bind(addr).await.map_err(Error::Http)?),
            None => None,
        };
        Ok(Self {
            metrics,
            admission,
            git,
        })
    }
}

/// Runs the operator until `shutdown` resolves (then releases the Lease and returns `Ok`), or
/// until something it cannot go on without fails: an address, or the Lease lost.
pub async fn run(client: Client, config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
    let listeners = Listeners::bind(&config).await?;
    run_on(client, config, listeners, shutdown).await
}

/// [`run`] on listeners already bound.
pub async fn run_on(
    client: Client,
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let metrics = Metrics::new();
    let health = Health::default();
    let index = Arc::new(Index::default());
    let recorder = recorder(&client, &config);
    let pool = Arc::new(registry_pool(&config, &metrics));
    let (stop, _) = signal::channel(false);
    let mut servers = JoinSet::new();
    let router = http::router(health.clone(), metrics.clone());
    servers.spawn(serve("metrics", listeners.metrics, router, None, &stop));
    let mut background = JoinSet::new();
    let lists = watch::initial_lists(&client).await;
    for w in watch::all(&client, lists, &index, &metrics) {
        background.spawn(w);
    }
    let feeds = background.len();
    if let (Some(listener), Some(admission)) = (listeners.admission, &config.admission) {
        let shared = crate::admission::Shared {
            client: client.clone(),
            index: index.clone(),
            feeds,
            pool: pool.clone(),
            metrics: metrics.clone(),
            recorder: recorder.clone(),
        };
        let started = crate::admission::start(admission, shared)
            .map_err(|e| Error::Http(std::io::Error::other(e.to_string())))?;
        background.spawn(started.keepers);
        let tls = Some(started.tls);
        servers.spawn(serve("admission", listener, started.router, tls, &stop));
    }
    // The Git webhook receiver answers on every replica (it only annotates TrustSources).
    if let Some(listener) = listeners.git {
        let router = crate::gitops::receiver::router(client.clone(), &config.gitops);
        servers.spawn(serve("git webhook", listener, router, None, &stop));
    }
    let shared = Leading {
        index: &index,
        feeds,
        metrics: &metrics,
        health: &health,
        recorder: &recorder,
        pool: &pool,
    };
    let leading = lead(&client, &config, shared, stop.subscribe());
    let result = until_ended(leading, &mut servers, shutdown, &stop).await;
    background.abort_all();
    let _ = stop.send(true);
    while servers.join_next().await.is_some() {}
    result
}

/// Waits for the first of: the leader's work ending (its result), a server failing, or
/// `shutdown`, which stops the leader's work (releasing the Lease) and returns its result.
async fn until_ended(
    leading: impl Future<Output = Result<()>>,
    servers: &mut JoinSet<std::io::Result<()>>,
    shutdown: impl Future<Output = ()>,
    stop: &signal::Sender<bool>,
) -> Result<()> {
    tokio::pin!(shutdown, leading);
    tokio::select! {
        r = &mut leading => r,
        Some(r) = servers.join_next() => Err(http_error(r)),
        () = &mut shutdown => {
            tracing::info!("shutting down");
            let _ = stop.send(true);
            leading.await
        }
    }
}

/// One server of the shared stack, stopping when `stop` turns true.
fn serve(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    stop: &signal::Sender<bool>,
) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
    crate::server::serve(name, listener, router, tls, stopped(stop.subscribe()))
}

async fn stopped(mut stop: signal::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn http_error(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Error {
    match joined {
        Ok(Err(e)) => Error::Http(e),
        Ok(Ok(())) => Error::Http(std::io::Error::other("a server stopped")),
        Err(e) => Error::Http(std::io::Error::other(e.to_string())),
    }
}

/// What the leader's work shares with the rest of the process.
struct Leading<'a> {
    index: &'a Arc<Index>,
    feeds: usize,
    metrics: &'a Arc<Metrics>,
    health: &'a Health,
    recorder: &'a Recorder,
    pool: &'a Arc<RegistryPool>,
}

/// Waits for the caches, then for the Lease, then reconciles until the Lease is lost or `stop`
/// turns true; on stop, the Lease is released so a standby takes over at once.
async fn lead(
    client: &Client,
    config: &Config,
    shared: Leading<'_>,
    mut stop: signal::Receiver<bool>,
) -> Result<()> {
    let Leading {
        index,
        feeds,
        metrics,
        health,
        recorder,
        pool,
    } = shared;
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
    let parts = Parts {
        client: client.clone(),
        index: index.clone(),
        metrics: metrics.clone(),
        recorder: recorder.clone(),
        instance: config.lease.identity.clone(),
        pool: pool.clone(),
        objects: ObjectCache::new(client.clone(), OBJECT_TTL),
        concurrency: config.concurrency,
        policy_reports: config.policy_reports,
    };
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

/// The one event recorder of the process: the leader's verdicts and every replica's admission
/// Events go through it, under this replica's identity.
fn recorder(client: &Client, config: &Config) -> Recorder {
    let reporter = Reporter {
        controller: CONTROLLER.into(),
        instance: Some(config.lease.identity.clone()),
    };
    Recorder::new(client.clone(), reporter)
}

/// Registry clients and their caches, shared by the leader's passes and admission.
fn registry_pool(config: &Config, metrics: &Arc<Metrics>) -> RegistryPool {
    let options = RegistryOptions {
        limits: Limits {
            max_concurrent_requests: config.registry_requests,
            ..Limits::default()
        },
        insecure_registries: config.insecure_registries.clone(),
        observer: Some(metrics.registry_observer()),
        ..RegistryOptions::default()
    };
    RegistryPool::new(options, config.registry_credentials.clone())
}
