//! Each declared key's state, from the TrustRoot, the rotations on it and what its status
//! recorded; and from that, which keys a pass accepts. Pure.
//!
//! | rotation phase | fromKey | toKey |
//! |---|---|---|
//! | Scheduled | Active | Pending (not accepted) |
//! | DualAcceptance, Retiring, Stalled | DualAcceptance | DualAcceptance |
//! | Completed | Retired (not accepted) | Active |
//! | Aborted, Invalid | as declared | as declared |
//!
//! Retirement is durable: a key recorded `Retired` in the TrustRoot's status stays retired while
//! the TrustRoot declares a key of that name *and* fingerprint, whatever happens to the rotation
//! (deleted, or the operator restarted). Nothing else remembers it, so the record is kept in the
//! object it is about, where `kubectl get trustroot -o yaml` shows it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::phase::Decision;
use crate::crd::{KeyRotationPhase, KeyRotationSpec, KeyState, KeyStatus, TrustRootStatus};

/// Which declared keys a pass must not accept now, and why (for reasons and drift causes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acceptance {
    refused: BTreeMap<String, String>,
}

impl Acceptance {
    /// Why `key` is not accepted now; `None` when it is.
    pub fn refusal(&self, key: &str) -> Option<&str> {
        self.refused.get(key).map(String::as_str)
    }

    pub fn accepts(&self, key: &str) -> bool {
        self.refusal(key).is_none()
    }
}

/// One rotation of this TrustRoot and its phase now.
pub struct Rotating<'a> {
    pub name: &'a str,
    pub spec: &'a KeyRotationSpec,
    pub decision: &'a Decision,
}

/// Every declared key's state (`declared` as the TrustRoot compiler reports them: Active or
/// Invalid), and what is not accepted because of it.
pub fn key_states(
    declared: &[KeyStatus],
    rotations: &[Rotating<'_>],
    previous: Option<&TrustRootStatus>,
) -> (Vec<KeyStatus>, Acceptance) {
    let mut refused = BTreeMap::new();
    let keys = declared
        .iter()
        .map(|key| {
            let next = state_of(key, rotations, previous);
            if let Some(why) = refusal(&next) {
                refused.insert(key.name.clone(), why);
            }
            next
        })
        .collect();
    (keys, Acceptance { refused })
}

fn state_of(key: &KeyStatus, rotations: &[Rotating<'_>], previous: Option<&TrustRootStatus>) -> KeyStatus {
    if key.state == KeyState::Invalid {
        return key.clone();
    }
    let with = |state, since: Option<Timestamp>, rotation: &str, message: String| KeyStatus {
        state,
        since: since.map(Time),
        rotation: Some(rotation.to_string()),
        message: Some(message),
        ..key.clone()
    };
    // A retirement recorded earlier, for this very key (same fingerprint), stands.
    if let Some(recorded) = previous
        .into_iter()
        .flat_map(|p| &p.keys)
        .find(|k| k.name == key.name && k.state == KeyState::Retired)
        .filter(|k| k.fingerprint.is_some() && k.fingerprint == key.fingerprint)
    {
        return KeyStatus {
            fingerprint: key.fingerprint.clone(),
            ..recorded.clone()
        };
    }
    for r in rotations {
        let (from, to) = (r.spec.from_key == key.name, r.spec.to_key == key.name);
        if !from && !to {
            continue;
        }
        let d = r.decision;
        match d.phase {
            KeyRotationPhase::Completed if from => {
                let at = d.completed_at.map(|t| t.to_string()).unwrap_or_default();
                return with(
                    KeyState::Retired,
                    d.completed_at,
                    r.name,
                    format!(
                        "retired by KeyRotation {} at {at}; remove it from spec.keys",
                        r.name
                    ),
                );
            }
            KeyRotationPhase::Scheduled if to => {
                return with(
                    KeyState::Pending,
                    None,
                    r.name,
                    format!(
                        "not accepted until KeyRotation {}'s window opens at {}",
                        r.name, d.window_start
                    ),
                );
            }
            _ if d.dual() => {
                let end = d.window_end.map(|t| t.to_string()).unwrap_or_default();
                return with(
                    KeyState::DualAcceptance,
                    Some(d.window_start),
                    r.name,
                    format!(
                        "accepted with the other key of KeyRotation {} (window ends {end})",
                        r.name
                    ),
                );
            }
            _ => {}
        }
    }
    key.clone()
}

/// Why a key in this state is not accepted, in words that read after "key NAME".
fn refusal(key: &KeyStatus) -> Option<String> {
    let rotation = key.rotation.as_deref().unwrap_or("(deleted)");
    match key.state {
        KeyState::Retired => Some(format!("retired by KeyRotation {rotation}")),
        KeyState::Pending => Some(format!("held back until KeyRotation {rotation}'s window opens")),
        KeyState::Active | KeyState::DualAcceptance | KeyState::Invalid => None,
    }
}

/// The keys still declared although a rotation retired them, for the `RetiredKeysRemoved`
/// condition.
pub fn retired_but_declared(keys: &[KeyStatus]) -> Vec<&KeyStatus> {
    keys.iter().filter(|k| k.state == KeyState::Retired).collect()
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
