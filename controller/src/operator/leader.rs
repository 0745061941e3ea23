//! Leader election on a `coordination.k8s.io/v1` Lease. (API settled; implementation being written.)

use std::time::Duration;

/// Where the lease lives and who we are.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Unique per replica (pod name, plus a random suffix when run outside a pod).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

/// Held while we lead; renews the lease in the background.
pub struct Leadership {}

impl Leadership {
    /// Resolves if the lease is lost (renewal failed past its duration, or another holder took
    /// it). The caller stops leading then: the process exits and restarts as a standby.
    pub async fn lost(&mut self) {
        std::future::pending::<()>().await
    }

    /// Gives the lease up at once (graceful shutdown), so a standby takes over without waiting
    /// for it to expire.
    pub async fn release(self) {}
}

/// Waits until this replica holds the lease.
pub async fn acquire(_client: kube::Client, _config: LeaseConfig) -> Result<Leadership, kube::Error> {
    Ok(Leadership {})
}
