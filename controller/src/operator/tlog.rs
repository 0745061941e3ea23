//! Transparency-log coverage (the M7 SLI): per TrustRoot, of the governed digests that verify,
//! how many have an accepted signature whose log entry was verified. Pure.
//!
//! A key-based signature counts as logged only under `tlog: Required` (otherwise its log entry is
//! not looked up, as cosign's `--insecure-ignore-tlog`); a keyless one always, unless
//! `tlog: Optional` and it has no entry. Each digest's state is kept from the pass that last
//! assessed it, as for attestations (see `reconciler::scope`).

use std::collections::{BTreeMap, HashMap};

use super::{plan::SignatureKey, trust::CompiledRoot};
use crate::verify::SignatureCheck;

/// Both states, exported from 0 for every TrustRoot so that the ratio always has its series.
pub const STATES: [&str; 2] = ["Logged", "Unlogged"];

/// The state of a verified digest: `Logged` when one of the signatures it is verified by had its
/// log entry verified. `accepted(key)` says whether a signer counts now (rotations).
pub fn state(checks: &[SignatureCheck], accepted: impl Fn(&str) -> bool) -> &'static str {
    let logged = checks
        .iter()
        .any(|c| c.logged && c.key.as_deref().is_some_and(&accepted));
    if logged { STATES[0] } else { STATES[1] }
}

/// One TrustRoot's verified digests by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub trust_root: String,
    pub states: [(&'static str, i64); 2],
}

/// By digest and TrustRoot, the state of each verified digest.
#[derive(Default)]
pub struct Tally {
    states: HashMap<(SignatureKey, String), &'static str>,
}

impl Tally {
    /// Starts a pass; `everything`: one that assesses every workload, so nothing is kept.
    pub fn begin(&mut self, everything: bool) {
        if everything {
            self.states.clear();
        }
    }

    /// Records the digest `key` under `root`: its state when it verifies, else none.
    pub fn record(&mut self, key: &SignatureKey, root: &str, state: Option<&'static str>) {
        let at = (key.clone(), root.to_string());
        match state {
            Some(state) => self.states.insert(at, state),
            None => self.states.remove(&at),
        };
    }

    /// Every root of `roots` with its count in each state (0 included).
    pub fn coverage<'r>(&self, roots: impl IntoIterator<Item = &'r CompiledRoot>) -> Vec<Coverage> {
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for ((_, root), state) in &self.states {
            *counts.entry((root, state)).or_default() += 1;
        }
        roots
            .into_iter()
            .map(|r| Coverage {
                trust_root: r.name.clone(),
                states: STATES.map(|s| (s, counts.get(&(r.name.as_str(), s)).copied().unwrap_or(0))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::SignatureFormat;

    fn check(key: Option<&str>, logged: bool) -> SignatureCheck {
        SignatureCheck {
            format: SignatureFormat::Bundle,
            source: "sha256:00".into(),
            key: key.map(str::to_string),
            fingerprint: None,
            signer: None,
            rejected: key.is_none().then(|| "no trusted key verifies it".to_string()),
            rejected_category: key.is_none().then_some("no_trusted_key"),
            logged,
        }
    }

    #[test]
    fn logged_only_through_an_accepted_signer_whose_entry_verified() {
        let all = |_: &str| true;
        assert_eq!(state(&[check(Some("ci"), true)], all), "Logged");
        assert_eq!(state(&[check(Some("ci"), false)], all), "Unlogged");
        // A logged signature by a signer no longer accepted does not make the digest logged.
        let both = [check(Some("old"), true), check(Some("new"), false)];
        assert_eq!(state(&both, |k| k == "new"), "Unlogged");
        assert_eq!(state(&[check(None, true)], all), "Unlogged");
    }
}
