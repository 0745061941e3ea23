//! `/metrics`, `/healthz`, `/readyz`. (API settled; implementation being written.)

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use super::metrics::Metrics;

/// What the probes report. `ready` turns true once the caches are synced and (for the leader) the
/// first sweep ran; a standby replica is ready too (it can take over).
#[derive(Clone, Default)]
pub struct Health {
    pub ready: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    _addr: SocketAddr,
    _health: Health,
    _metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    shutdown.await;
    Ok(())
}
