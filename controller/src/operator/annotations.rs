//! The `countersign.dev/…` annotations earlier versions wrote on workloads, and the key-value
//! form of a verdict. Verdicts are now recorded in `WorkloadVerdict` objects (see `records`):
//! the controller-manager copied a Deployment's annotations onto its ReplicaSet, which made every
//! verdict cost several writes. What an older version recorded is read once, so that its verdict
//! and `since` carry over without announcing anything twice, then removed. Events' names are still
//! derived from this form (see `events::transition_name`), so they stay the same across versions.
//! Pure: encoding, decoding and the merge patch between two sets.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::verdict::{Recorded, Verdict};

pub const PREFIX: &str = "countersign.dev/";
/// `Verified`, `Unsigned`, `Failed` or `Unknown`.
pub const VERDICT: &str = "countersign.dev/verdict";
/// `trustroot/key,…`: the keys that verified.
pub const VERIFIED_BY: &str = "countersign.dev/verified-by";
/// Why it is not Verified.
pub const REASON: &str = "countersign.dev/reason";
/// `repo@sha256:…,…`: the governed digests the verdict is about.
pub const DIGESTS: &str = "countersign.dev/digests";
/// When the verdict last changed.
pub const SINCE: &str = "countersign.dev/since";
/// Present while the verdict is kept because the registry could not be asked: its error category.
pub const STALE: &str = "countersign.dev/stale";
/// Present while a tag points away from the running digest.
pub const DIGEST_DRIFT: &str = "countersign.dev/digest-drift";
/// When any of these last changed (verdict, stale mark, drift), to the millisecond.
pub const CHANGED: &str = "countersign.dev/changed";

/// Only our annotations of an object.
pub fn ours(annotations: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    annotations
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The annotations that record `r`.
pub fn encode(r: &Recorded) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |key: &str, value: Option<String>| {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            out.insert(key.to_string(), v);
        }
    };
    put(VERDICT, r.verdict.map(|v| v.as_str().to_string()));
    put(VERIFIED_BY, Some(r.verified_by.join(",")));
    put(REASON, r.reason.clone());
    put(DIGESTS, Some(r.digests.join(",")));
    put(SINCE, r.since.clone());
    put(STALE, r.stale.clone());
    put(DIGEST_DRIFT, r.drift.clone());
    put(CHANGED, r.changed.clone());
    out
}

/// What the annotations record; `None` when they hold no verdict (never verified, or edited
/// into something unreadable: then it is as if nothing was recorded).
pub fn decode(annotations: &BTreeMap<String, String>) -> Option<Recorded> {
    let verdict = Verdict::parse(annotations.get(VERDICT)?)?;
    let list = |key| {
        annotations
            .get(key)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let text = |key| annotations.get(key).cloned();
    Some(Recorded {
        verdict: Some(verdict),
        verified_by: list(VERIFIED_BY),
        reason: text(REASON),
        // The versions that wrote annotations had no causes: the next pass derives them.
        causes: Vec::new(),
        digests: list(DIGESTS),
        since: text(SINCE),
        stale: text(STALE),
        drift: text(DIGEST_DRIFT),
        changed: text(CHANGED),
    })
}

/// The JSON merge patch that turns our annotations `current` into `desired` (other annotations
/// are untouched); `None` when they are equal.
pub fn merge_patch(current: &BTreeMap<String, String>, desired: &BTreeMap<String, String>) -> Option<Value> {
    let mut changes = Map::new();
    for (k, v) in desired {
        if current.get(k) != Some(v) {
            changes.insert(k.clone(), Value::String(v.clone()));
        }
    }
    for k in current.keys().filter(|k| k.starts_with(PREFIX)) {
        if !desired.contains_key(k) {
            changes.insert(k.clone(), Value::Null);
        }
    }
    (!changes.is_empty()).then(|| json!({ "metadata": { "annotations": changes } }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn encode_then_decode_is_identity() {
        let r = Recorded::example();
        let encoded = encode(&r);
        assert_eq!(
            encoded.get(VERIFIED_BY).map(String::as_str),
            Some("prod/a,prod/b")
        );
        assert!(!encoded.contains_key(REASON));
        assert!(!encoded.contains_key(DIGEST_DRIFT));
        assert_eq!(decode(&encoded), Some(r));
    }

    #[test]
    fn no_or_unreadable_verdict_decodes_to_nothing() {
        assert_eq!(decode(&map(&[])), None);
        assert_eq!(decode(&map(&[(VERDICT, "Maybe")])), None);
    }

    #[test]
    fn ours_keeps_only_our_prefix() {
        let all = map(&[(VERDICT, "Verified"), ("deployment.kubernetes.io/revision", "3")]);
        assert_eq!(ours(Some(&all)), map(&[(VERDICT, "Verified")]));
        assert!(ours(None).is_empty());
    }

    #[test]
    fn the_patch_sets_changes_and_removes_what_is_gone() {
        let current = map(&[(VERDICT, "Verified"), (STALE, "timeout"), (SINCE, "t1")]);
        let desired = map(&[(VERDICT, "Verified"), (SINCE, "t1"), (REASON, "x")]);
        assert_eq!(
            merge_patch(&current, &desired),
            Some(json!({"metadata": {"annotations": {REASON: "x", STALE: null}}}))
        );
        assert_eq!(merge_patch(&desired, &desired), None);
        // Removing every annotation (a workload no TrustRoot governs any more).
        assert_eq!(
            merge_patch(&map(&[(VERDICT, "Failed")]), &BTreeMap::new()),
            Some(json!({"metadata": {"annotations": {VERDICT: null}}}))
        );
    }
}
