//! A TrustRoot's required attestations in a verdict: pure.
//!
//! A digest whose signatures verify is `Failed` while one of its required attestations is not
//! verified, and the reason names each such predicate type and what is wrong with it. Signature
//! verdicts other than Verified stand as they are (the attestations cannot make them better).
//! Attestations that could not be read are a registry problem: no new verdict, as for
//! signatures. Each pass also tallies, per TrustRoot and predicate type, how many governed
//! digests are in each state: the attestation-coverage metric (M5).
//!
//! Admission asks the same questions ([`check`], [`requirements`]) of the same cached lookups,
//! so that what it admits is what the operator would call Verified.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{
    lookup::Fetched,
    plan::{Evaluation, SignatureKey},
    trust::CompiledRoot,
    verdict::Check,
};
use crate::{
    reference::Digest,
    verify::{AttestationCheck, AttestationState, Signatures, check_attestations},
};

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
    let checks = check(&key.2, root, attestations, refusal);
    let stale = signatures
        .1
        .or_else(|| attestations.error.as_ref().map(|e| e.category()));
    let evaluation = match (signatures.0, requirements(&checks)) {
        // An attestation that could not be read might be the one that verifies: no verdict.
        (Some(Check::Verified { .. }), Requirements::Unread) => {
            let error = attestations.error.as_ref().or(attestations.fetched.error());
            (None, Some(error.map_or("error", |e| e.category())))
        }
        (Some(Check::Verified { .. }), Requirements::Unmet(failing)) => {
            let reasons: Vec<String> = failing.iter().map(|c| c.reason()).collect();
            let reason = reasons.join("; ");
            let causes: BTreeSet<String> = failing.iter().filter_map(|c| c.state.cause()).collect();
            let causes = causes.into_iter().collect();
            (Some(Check::Failed { reason, causes }), stale)
        }
        (other, _) => (other, stale),
    };
    (evaluation, checks)
}

/// `root`'s required attestations of `digest` against the attestations read.
pub fn check(
    digest: &Digest,
    root: &CompiledRoot,
    attestations: &Signatures,
    refusal: impl Fn(&str) -> Option<String>,
) -> Vec<AttestationCheck> {
    check_attestations(
        digest,
        &attestations.fetched,
        &root.keys,
        &root.spec.attestations,
        refusal,
    )
}

/// What a digest's required attestations come to.
#[derive(Debug, PartialEq, Eq)]
pub enum Requirements<'c> {
    /// Every one verified (or none required).
    Met,
    /// One could not be read: no verdict, it might be the one that verifies.
    Unread,
    /// The ones not verified, each with its reason.
    Unmet(Vec<&'c AttestationCheck>),
}

pub fn requirements(checks: &[AttestationCheck]) -> Requirements<'_> {
    if checks
        .iter()
        .any(|c| matches!(c.state, AttestationState::Error { .. }))
    {
        return Requirements::Unread;
    }
    let failing: Vec<&AttestationCheck> = checks.iter().filter(|c| !c.is_verified()).collect();
    if failing.is_empty() {
        Requirements::Met
    } else {
        Requirements::Unmet(failing)
    }
}

/// One required predicate type of a TrustRoot and how many governed digests are in each state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub trust_root: String,
    pub predicate_type: String,
    pub states: [(&'static str, i64); 6],
}

/// Governed digests per (TrustRoot, predicate type, state). Each digest's states are kept from
/// the pass that last assessed it: a pass over a few namespaces (see `reconciler::scope`) updates
/// the digests it saw and keeps the others; a pass over everything starts afresh.
#[derive(Default)]
pub struct Tally {
    /// Counted in this pass already.
    seen: HashSet<(SignatureKey, String)>,
    /// By digest and TrustRoot: each required predicate type and its state.
    states: HashMap<(SignatureKey, String), Vec<(String, &'static str)>>,
}

impl Tally {
    /// Starts a pass; `everything`: one that assesses every workload, so nothing is kept.
    pub fn begin(&mut self, everything: bool) {
        self.seen.clear();
        if everything {
            self.states.clear();
        }
    }

    /// Records `checks` for `key` under `root`, unless this pass recorded them already.
    pub fn add(&mut self, key: &SignatureKey, root: &CompiledRoot, checks: &[AttestationCheck]) {
        let at = (key.clone(), root.name.clone());
        if checks.is_empty() || self.seen.contains(&at) {
            return;
        }
        let states = checks
            .iter()
            .map(|c| (c.predicate_type.clone(), c.state.name()))
            .collect();
        self.seen.insert(at.clone());
        self.states.insert(at, states);
    }

    /// Every required (TrustRoot, predicate type) of `roots` with its count in each state (0
    /// included).
    pub fn coverage<'r>(&self, roots: impl IntoIterator<Item = &'r CompiledRoot>) -> Vec<Coverage> {
        let mut counts: BTreeMap<(&str, &str), BTreeMap<&'static str, i64>> = BTreeMap::new();
        for ((_, root), states) in &self.states {
            for (predicate_type, state) in states {
                let by_state = counts.entry((root, predicate_type)).or_default();
                *by_state.entry(state).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        for root in roots {
            for r in &root.spec.attestations {
                let found = counts.get(&(root.name.as_str(), r.predicate_type.as_str()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(state: AttestationState) -> AttestationCheck {
        AttestationCheck {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            state,
        }
    }

    #[test]
    fn an_unread_attestation_outweighs_a_missing_one_and_none_required_is_met() {
        let verified = check(AttestationState::Verified { signer: "ci".into() });
        let missing = check(AttestationState::Missing);
        let unread = check(AttestationState::Error {
            reason: "timeout".into(),
        });
        assert_eq!(requirements(&[]), Requirements::Met);
        assert_eq!(requirements(std::slice::from_ref(&verified)), Requirements::Met);
        let both = [verified.clone(), missing.clone()];
        assert_eq!(requirements(&both), Requirements::Unmet(vec![&missing]));
        assert_eq!(requirements(&[missing, unread]), Requirements::Unread);
    }
}
