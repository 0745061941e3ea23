//! TrustSources: TrustRoots and KeyRotations declared in Git, synced by the operator with git2.
//!
//! One commit from Git to an applied TrustRoot, in the order a reconcile runs:
//!
//! ```text
//! TrustSource ──► fetch (git2, one ref, cache repo per source) ──► verify (SSH commit signature)
//!             ──► read (tree at the path, serde-saphyr, only our two kinds, validated)
//!             ──► apply (plan vs cluster; dry run of all, then server-side apply; prune)
//!             ──► status (Ready, lastAppliedRevision vs lastAttemptedRevision, inventory) + Events
//! ```
//!
//! [`controller`] runs on the leader only (kube-runtime's `Controller`, one reconcile per
//! TrustSource, requeued at its interval, backoff on error). [`receiver`] runs on every replica:
//! a Git host's push webhook sets an annotation on the matching TrustSources, which wakes the
//! leader's controller. The TrustRoots and KeyRotations it writes are picked up by the
//! operator's own watches like any others.

pub mod apply;
pub mod controller;
pub mod credentials;
pub mod error;
pub mod fetch;
pub mod read;
pub mod receiver;
pub mod status;
pub mod tls;
pub mod url;
pub mod verify;

use std::{net::SocketAddr, path::PathBuf};

pub use error::{Error, Result};

/// What the Git side of the operator is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where each TrustSource's repository is cached between passes.
    pub cache_dir: PathBuf,
    /// The operator's namespace: TrustSource Secrets and ConfigMaps are read there only.
    pub namespace: String,
    /// Where the webhook receiver listens (every replica); `None`: no receiver.
    pub webhook_addr: Option<SocketAddr>,
    /// The Secret (in `namespace`) whose `token` key authenticates webhook calls.
    pub webhook_secret: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cache_dir: std::env::temp_dir().join("countersign-git"),
            namespace: "countersign-system".into(),
            webhook_addr: None,
            webhook_secret: "countersign-git-webhook".into(),
        }
    }
}
