//! A TrustRoot's required attestations in a verdict: pure.
//!
//! A digest whose signatures verify is `Failed` while one of its required attestations is not
//! verified, and the reason names each such predicate type and what is wrong with it. Signature
//! verdicts other than Verified stand as they are (the attestations cannot make them better).
//! Attestations that could not be read are a registry problem: no new verdict, as for
//! signatures. Each pass also tallies, per TrustRoot and predicate type, how many governed
//! digests are in each state: the attestation-coverage metric (M5).

use std::collections::{BTreeMap, HashSet};

use super::{
    lookup::Fetched,
    plan::{Evaluation, SignatureKey},
    trust::CompiledRoot,
    verdict::Check,
};
use crate::verify::{AttestationCheck, AttestationState, check_attestations};

/// Every state, exported from 0 for each required predicate type so that ratios always have
/// their series.
pub const STATES: [&str; 6] = [
    "Verified",
    "Missing",
    "PolicyFailed",
    "OtherDigest",
    "BadSignature",
    "Error",
];

/// The signature evaluation of `key` under `root`, with its required attestations applied.
/// `refusal(signer)` says why a signer is not accepted now (rotations).
pub fn apply(
    key: &SignatureKey,
    root: &CompiledRoot,
    fetched: &Fetched,
    signatures: Evaluation,
    refusal: impl Fn(&str) -> Option<String>,
) -> (Evaluation, Vec<AttestationCheck>) {
    if root.spec.attestations.is_empty() {
        return (signatures, Vec::new());
    }
    let Some(attestations) = &fetched.attestations else {
        return ((None, Some("error")), Vec::new());
    };
    let checks = check_attestations(
        &key.2,
        &attestations.fetched,
        &root.keys,
        &root.spec.attestations,
        refusal,
    );
    let stale = signatures
        .1
        .or_else(|| attestations.error.as_ref().map(|e| e.category()));
    let unread = checks
        .iter()
        .any(|c| matches!(c.state, AttestationState::Error { .. }));
    let evaluation = match signatures.0 {
        // An attestation that could not be read might be the one that verifies: no verdict.
        Some(Check::Verified { .. }) if unread => {
            let error = attestations.error.as_ref().or(attestations.fetched.error());
            (None, Some(error.map_or("error", |e| e.category())))
        }
        Some(Check::Verified { keys }) => match failing(&checks) {
            Some(reason) => (Some(Check::Failed { reason }), stale),
            None => (Some(Check::Verified { keys }), stale),
        },
        other => (other, stale),
    };
    (evaluation, checks)
}

/// The reasons of the attestations not verified, joined; `None` when all are.
fn failing(checks: &[AttestationCheck]) -> Option<String> {
    let reasons: Vec<String> = checks
        .iter()
        .filter(|c| !c.is_verified())
        .map(AttestationCheck::reason)
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// One required predicate type of a TrustRoot and how many governed digests are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub trust_root: String,
    pub predicate_type: String,
    pub states: [(&'static str, i64); 6],
}

/// Governed digests per (TrustRoot, predicate type, state), counted once per digest in a pass.
#[derive(Default)]
pub struct Tally {
    seen: HashSet<(SignatureKey, String)>,
    counts: BTreeMap<(String, String), BTreeMap<&'static str, i64>>,
}

impl Tally {
    /// Counts `checks` for `key` under `root`, unless this pass counted them already.
    pub fn add(&mut self, key: &SignatureKey, root: &CompiledRoot, checks: &[AttestationCheck]) {
        if checks.is_empty() || !self.seen.insert((key.clone(), root.name.clone())) {
            return;
        }
        for c in checks {
            let by_state = self
                .counts
                .entry((root.name.clone(), c.predicate_type.clone()))
                .or_default();
            *by_state.entry(c.state.name()).or_default() += 1;
        }
    }

    /// Every required (TrustRoot, predicate type) of `roots` with its count in each state (0
    /// included), and the tally emptied for the next pass.
    pub fn take<'r>(&mut self, roots: impl IntoIterator<Item = &'r CompiledRoot>) -> Vec<Coverage> {
        let counts = std::mem::take(&mut self.counts);
        self.seen.clear();
        let mut out = Vec::new();
        for root in roots {
            for r in &root.spec.attestations {
                let found = counts.get(&(root.name.clone(), r.predicate_type.clone()));
                let n = |state: &str| found.and_then(|f| f.get(state)).copied().unwrap_or(0);
                out.push(Coverage {
                    trust_root: root.name.clone(),
                    predicate_type: r.predicate_type.clone(),
                    states: STATES.map(|s| (s, n(s))),
                });
            }
        }
        out
    }
}
