//! One rotation's phase, derived from its spec, its recorded status, its TrustRoot and the
//! clock. Pure and idempotent: the same inputs give the same phase, so a restart or a new
//! leader picks up exactly where the last one was, and a window edge needs no state of its own,
//! only a timer (see [`Decision::next_edge`]).
//!
//! ```text
//!            start                      end
//! Scheduled ──┼── DualAcceptance ────────┼──► AtWindowEnd: Completed
//!             │   (retireEarly + gate ──►│    WhenResigned: gate met ──► Completed
//!             │    Completed)            │                  gate unknown ► Retiring
//!                                                           gate not met ► Stalled (both keys)
//! abort ──► Aborted (any time before Completed)        Invalid: see `Invalid`
//! ```
//!
//! `Completed` and `Aborted` are recorded in status and never left: a retired key never comes
//! back by a change of spec, and an aborted rotation is not resumed by unsetting `abort`.

use jiff::{SignedDuration, Timestamp};

use crate::crd::{KeyRotationPhase, KeyRotationSpec, KeyRotationStatus, RetirementPolicy, parse_duration};

/// Whether every governed workload that depends on `fromKey` also verifies with `toKey`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// No workload verifies with fromKey alone, and every one has a current answer.
    Met,
    /// Some workload verifies with fromKey alone: retiring it now would break that workload.
    NotMet,
    /// No workload is known to depend on fromKey alone, but some have no current answer.
    Unknown,
}

/// Why a rotation cannot run, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// A CamelCase reason for the `Valid` condition and the Event.
    pub reason: &'static str,
    pub message: String,
}

/// What the TrustRoot declares about the rotation's two keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootKeys {
    /// No TrustRoot of that name.
    Missing,
    /// Each key: `None` when not declared, `Some(false)` when declared but unusable.
    Found { from: Option<bool>, to: Option<bool> },
}

/// The rotation's phase now, and what it says about time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub phase: KeyRotationPhase,
    pub window_start: Timestamp,
    /// `None` when the duration cannot be read (the rotation is then Invalid).
    pub window_end: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    /// When the clock alone will change the phase next (a window edge).
    pub next_edge: Option<Timestamp>,
    pub invalid: Option<Invalid>,
}

impl Decision {
    /// Whether the rotation holds both keys in dual acceptance right now.
    pub fn dual(&self) -> bool {
        matches!(
            self.phase,
            KeyRotationPhase::DualAcceptance | KeyRotationPhase::Retiring | KeyRotationPhase::Stalled
        )
    }

    /// Whether stragglers matter now: the rotation waits on re-signing.
    pub fn in_progress(&self) -> bool {
        self.dual()
    }
}

/// Whether a recorded phase is final.
pub fn is_terminal(phase: Option<KeyRotationPhase>) -> bool {
    matches!(
        phase,
        Some(KeyRotationPhase::Completed | KeyRotationPhase::Aborted)
    )
}

/// The phase of the rotation `spec` (recorded `status`) given its TrustRoot's keys, the name of
/// an earlier rotation it conflicts with, the retirement gate, and the time.
pub fn decide(
    spec: &KeyRotationSpec,
    status: Option<&KeyRotationStatus>,
    keys: &RootKeys,
    conflict: Option<&str>,
    gate: Gate,
    now: Timestamp,
) -> Decision {
    let window_start = spec.window.start.0;
    let duration = parse_duration("spec.window.duration", &spec.window.duration);
    let window_end = duration
        .as_ref()
        .ok()
        .and_then(|d| SignedDuration::try_from(*d).ok())
        .and_then(|d| window_start.checked_add(d).ok());
    let decision = |phase, completed_at, next_edge, invalid| Decision {
        phase,
        window_start,
        window_end,
        completed_at,
        next_edge,
        invalid,
    };
    let recorded = status.and_then(|s| s.phase);
    let recorded_completion = status.and_then(|s| s.completed_at.as_ref()).map(|t| t.0);
    match recorded {
        Some(KeyRotationPhase::Completed) => {
            let at = recorded_completion.unwrap_or(now);
            return decision(KeyRotationPhase::Completed, Some(at), None, None);
        }
        Some(KeyRotationPhase::Aborted) => return decision(KeyRotationPhase::Aborted, None, None, None),
        _ => {}
    }
    if spec.abort {
        return decision(KeyRotationPhase::Aborted, None, None, None);
    }
    let invalid = match (&duration, window_end) {
        (Err(e), _) => Some(Invalid {
            reason: "InvalidWindow",
            message: e.to_string(),
        }),
        (Ok(_), None) => Some(Invalid {
            reason: "InvalidWindow",
            message: "spec.window: the window ends past the end of time".into(),
        }),
        _ => invalid_reference(spec, keys, conflict),
    };
    let Some(window_end) = window_end.filter(|_| invalid.is_none()) else {
        return decision(KeyRotationPhase::Invalid, None, None, invalid);
    };
    if now < window_start {
        return decision(KeyRotationPhase::Scheduled, None, Some(window_start), None);
    }
    if now < window_end {
        if spec.retire_early && gate == Gate::Met {
            return decision(KeyRotationPhase::Completed, Some(now), None, None);
        }
        return decision(KeyRotationPhase::DualAcceptance, None, Some(window_end), None);
    }
    let phase = match (spec.retirement, gate) {
        (RetirementPolicy::AtWindowEnd, _) => {
            return decision(KeyRotationPhase::Completed, Some(window_end), None, None);
        }
        (RetirementPolicy::WhenResigned, Gate::Met) => {
            return decision(KeyRotationPhase::Completed, Some(now), None, None);
        }
        (RetirementPolicy::WhenResigned, Gate::Unknown) => KeyRotationPhase::Retiring,
        (RetirementPolicy::WhenResigned, Gate::NotMet) => KeyRotationPhase::Stalled,
    };
    decision(phase, None, None, None)
}

fn invalid_reference(spec: &KeyRotationSpec, keys: &RootKeys, conflict: Option<&str>) -> Option<Invalid> {
    let (from, to) = match keys {
        RootKeys::Missing => {
            return Some(Invalid {
                reason: "TrustRootNotFound",
                message: format!("spec.trustRootRef: TrustRoot {:?} not found", spec.trust_root_ref),
            });
        }
        RootKeys::Found { from, to } => (from, to),
    };
    let key_problem = |field: &str, name: &str, state: &Option<bool>| match state {
        None => Some(Invalid {
            reason: "KeyNotDeclared",
            message: format!(
                "spec.{field}: TrustRoot {:?} declares no key {name:?} in spec.keys",
                spec.trust_root_ref
            ),
        }),
        Some(false) => Some(Invalid {
            reason: "KeyInvalid",
            message: format!(
                "spec.{field}: key {name:?} of TrustRoot {:?} cannot be used (see its KeysValid condition)",
                spec.trust_root_ref
            ),
        }),
        Some(true) => None,
    };
    key_problem("fromKey", &spec.from_key, from)
        .or_else(|| key_problem("toKey", &spec.to_key, to))
        .or_else(|| {
            conflict.map(|other| Invalid {
                reason: "Overlaps",
                message: format!(
                    "overlaps KeyRotation {other:?} on TrustRoot {:?} (a shared key or overlapping windows); it runs first, this one waits until it completes or is aborted",
                    spec.trust_root_ref
                ),
            })
        })
}

#[cfg(test)]
#[path = "phase_tests.rs"]
mod tests;
