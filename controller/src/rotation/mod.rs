//! Key rotations: the phases of every `KeyRotation` (pure, from spec, status and the clock), the
//! effective key set they give each TrustRoot, their progress and stragglers, and their status
//! and Events.
//!
//! Rotations change what a pass sees, not how it runs:
//!
//! ```text
//! pass: plan + lookup ─► signers per governed image (crypto, kept while signatures stay)
//!   ─► tally per rotation (progress, stragglers, gate)    [progress]
//!   ─► phase per rotation (spec, status, gate, clock)     [phase]
//!   ─► key states and acceptance per TrustRoot            [keys]
//!   ─► verdicts with that acceptance, statuses, Events    (the operator's writers)
//! ```
//!
//! The pass also wakes at the next window edge ([`phase::Decision::next_edge`]), so a window
//! opens and closes on time, and re-checks stragglers' digests every few seconds while a
//! rotation waits on them, so that completion follows a re-sign within seconds.

pub mod keys;
pub mod pass;
pub mod phase;
pub mod progress;
pub mod roots;
pub mod status;

use std::{collections::HashMap, sync::Arc};

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

pub use keys::{Acceptance, key_states};
pub use phase::{Decision, Gate, RootKeys, decide, is_terminal};
pub use progress::{ImageKeys, Tally, WorkloadKeys, tally};

use crate::crd::{KeyRotation, KeyRotationSpec, parse_duration};

/// One rotation, its phase now, and its tally (when its TrustRoot is in force).
#[derive(Clone, Debug)]
pub struct Assessed {
    pub rotation: Arc<KeyRotation>,
    pub decision: Decision,
    pub tally: Option<Tally>,
}

impl Assessed {
    pub fn name(&self) -> String {
        self.rotation.name_any()
    }

    pub fn spec(&self) -> &KeyRotationSpec {
        &self.rotation.spec
    }
}

/// The phase of every rotation. `roots` says what each TrustRoot declares about keys (absent:
/// no such TrustRoot); `tallies` are by rotation name.
pub fn assess(
    rotations: &[Arc<KeyRotation>],
    roots: &HashMap<String, RootKeysOf>,
    tallies: &HashMap<String, Tally>,
    now: Timestamp,
) -> Vec<Assessed> {
    let conflicts = conflicts(rotations, now);
    rotations
        .iter()
        .map(|r| {
            let name = r.name_any();
            let keys = roots
                .get(&r.spec.trust_root_ref)
                .map_or(RootKeys::Missing, |k| k.for_rotation(&r.spec));
            let tally = tallies.get(&name).cloned();
            let gate = tally.as_ref().map_or(Gate::Unknown, |t| t.gate);
            let conflict = conflicts.get(&name).map(String::as_str);
            let decision = decide(&r.spec, r.status.as_ref(), &keys, conflict, gate, now);
            Assessed {
                rotation: r.clone(),
                decision,
                tally,
            }
        })
        .collect()
}

/// A TrustRoot's declared keys: name → whether it loads.
#[derive(Clone, Debug, Default)]
pub struct RootKeysOf(pub HashMap<String, bool>);

impl RootKeysOf {
    fn for_rotation(&self, spec: &KeyRotationSpec) -> RootKeys {
        RootKeys::Found {
            from: self.0.get(&spec.from_key).copied(),
            to: self.0.get(&spec.to_key).copied(),
        }
    }
}

/// Whether the rotation still has a say over its keys: not finished, not being aborted.
pub fn is_live(r: &KeyRotation) -> bool {
    !is_terminal(r.status.as_ref().and_then(|s| s.phase)) && !r.spec.abort
}

/// For each rotation that conflicts with an earlier live one on the same TrustRoot (a shared
/// key, or windows that overlap; a rotation past its window and not finished holds its keys
/// until it is), the name of that earlier one. Earlier: created first, then by name, so the
/// answer is the same on every replica and after every restart.
fn conflicts(rotations: &[Arc<KeyRotation>], now: Timestamp) -> HashMap<String, String> {
    let mut live: Vec<&Arc<KeyRotation>> = rotations.iter().filter(|r| is_live(r)).collect();
    live.sort_by_key(|r| (r.metadata.creation_timestamp.as_ref().map(|t| t.0), r.name_any()));
    let mut out = HashMap::new();
    let mut running: Vec<&Arc<KeyRotation>> = Vec::new();
    for r in live {
        let other = running
            .iter()
            .find(|e| e.spec.trust_root_ref == r.spec.trust_root_ref && overlap(&e.spec, &r.spec, now));
        match other {
            Some(e) => {
                out.insert(r.name_any(), e.name_any());
            }
            None => running.push(r),
        }
    }
    out
}

fn overlap(earlier: &KeyRotationSpec, later: &KeyRotationSpec, now: Timestamp) -> bool {
    let keys = [&earlier.from_key, &earlier.to_key];
    if keys.contains(&&later.from_key) || keys.contains(&&later.to_key) {
        return true;
    }
    let (Some((a0, a1)), Some((b0, b1))) = (window(earlier), window(later)) else {
        return false;
    };
    // Not finished past its end: it holds on until it is.
    let a1 = a1.max(now);
    a0 < b1 && b0 < a1
}

/// `[start, end)` of a rotation's window, when its duration reads.
pub fn window(spec: &KeyRotationSpec) -> Option<(Timestamp, Timestamp)> {
    let start = spec.window.start.0;
    let duration = parse_duration("spec.window.duration", &spec.window.duration).ok()?;
    let end = start.checked_add(SignedDuration::try_from(duration).ok()?).ok()?;
    Some((start, end))
}

#[cfg(test)]
#[path = "mod_tests.rs"]
mod tests;
