//! What admission accepts, kept current on every replica: the TrustRoots compiled and each one's
//! acceptance under the KeyRotations, rebuilt whenever a TrustRoot or KeyRotation changes
//! (status included: a retirement recorded by the leader), at every rotation window edge, and
//! every [`REFRESH`] for keys held in Secrets and ConfigMaps.
//!
//! Rotations are assessed without a retirement gate (only the leader tallies re-signing), so a
//! replica follows the clock on its own (a window opening or closing `AtWindowEnd`) and the
//! leader's recorded phase for the rest (a `WhenResigned` or early retirement counts once the
//! leader has written `Completed`). Until then both keys stay accepted, the safe side.

use std::{collections::HashMap, sync::Arc, time::Duration};

use jiff::Timestamp;
use tokio::sync::watch;

use crate::{
    operator::{
        index::Index,
        objects::ObjectCache,
        trust::{CompiledRoot, TrustCompiler},
    },
    rotation::{self, Acceptance},
};

/// Keys in Secrets or ConfigMaps are read again at least this often (the object cache's TTL).
const REFRESH: Duration = Duration::from_secs(30);
/// A window edge rebuilds this long after it, so that the clock reads past it.
const EDGE_SLACK: Duration = Duration::from_millis(20);

/// One consistent picture of what is accepted.
#[derive(Default)]
pub struct Trust {
    /// The TrustRoots in force (current generation, or the last valid one).
    pub roots: Vec<Arc<CompiledRoot>>,
    /// By TrustRoot name: the keys rotations hold back or retired.
    pub acceptance: HashMap<String, Acceptance>,
    next_edge: Option<Timestamp>,
}

impl Trust {
    /// Why `root` does not accept `key` now (`None`: it does).
    pub fn refusal(&self, root: &str, key: &str) -> Option<String> {
        self.acceptance
            .get(root)
            .and_then(|a| a.refusal(key))
            .map(str::to_string)
    }
}

/// Builds the picture from the index as it is now.
pub async fn build(compiler: &mut TrustCompiler, index: &Index, objects: &ObjectCache) -> Trust {
    let reports = compiler.compile(&index.trust_roots(), objects).await;
    let now = Timestamp::now();
    let assessed = rotation::assess(
        &index.key_rotations(),
        &rotation::roots::declared(&reports),
        &HashMap::new(),
        now,
    );
    let accepted = rotation::roots::accepted(&reports, &assessed, |r| {
        r.root.as_ref().and_then(|r| r.status.as_ref())
    });
    Trust {
        roots: reports.iter().filter_map(|r| r.active.clone()).collect(),
        acceptance: accepted.into_iter().map(|(name, (_, a))| (name, a)).collect(),
        next_edge: assessed.iter().filter_map(|a| a.decision.next_edge).min(),
    }
}

/// Keeps `current` up to date until dropped, from the moment the `feeds` watches have synced
/// (`None` until then: an index half-listed would admit what it has not seen yet).
pub async fn keep(
    (index, feeds): (Arc<Index>, usize),
    objects: Arc<ObjectCache>,
    current: watch::Sender<Option<Arc<Trust>>>,
) {
    index.synced().wait_for(feeds).await;
    let mut compiler = TrustCompiler::default();
    let mut changes = index.trust_changes.subscribe();
    loop {
        changes.mark_unchanged();
        let trust = build(&mut compiler, &index, &objects).await;
        let wait = trust
            .next_edge
            .and_then(|edge| Duration::try_from(edge.duration_since(Timestamp::now())).ok())
            .map_or(REFRESH, |d| (d + EDGE_SLACK).min(REFRESH));
        current.send_replace(Some(Arc::new(trust)));
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
    }
}
