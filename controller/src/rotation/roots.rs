//! From the TrustRoots as compiled and the rotations as assessed, what each TrustRoot accepts
//! now. The leader's pass and every replica's admission webhook both go through here, so they
//! agree on which keys a rotation lets in.

use std::collections::HashMap;

use super::{Assessed, RootKeysOf, keys::Rotating};
use crate::{
    crd::{KeyStatus, TrustRootStatus},
    operator::trust::RootReport,
    rotation::{Acceptance, key_states},
};

/// What each TrustRoot declares about its keys (name → whether it loads), for [`super::assess`].
pub fn declared(reports: &[RootReport]) -> HashMap<String, RootKeysOf> {
    reports
        .iter()
        .filter(|r| r.root.is_some())
        .map(|r| {
            let keys = r
                .keys
                .iter()
                .map(|k| (k.name.clone(), k.fingerprint.is_some()))
                .collect();
            (r.name.clone(), RootKeysOf(keys))
        })
        .collect()
}

/// Each TrustRoot's key states and acceptance. `previous(name)` is the status last recorded for
/// it (durable retirements are read from there).
pub fn accepted<'a>(
    reports: &'a [RootReport],
    assessed: &[Assessed],
    previous: impl Fn(&'a RootReport) -> Option<&'a TrustRootStatus>,
) -> HashMap<String, (Vec<KeyStatus>, Acceptance)> {
    let mut out = HashMap::with_capacity(reports.len());
    for report in reports {
        let rotating: Vec<Rotating<'_>> = assessed
            .iter()
            .filter(|a| a.spec().trust_root_ref == report.name)
            .map(|a| Rotating {
                name: a.rotation.metadata.name.as_deref().unwrap_or_default(),
                spec: a.spec(),
                decision: &a.decision,
            })
            .collect();
        out.insert(
            report.name.clone(),
            key_states(&report.keys, &rotating, previous(report)),
        );
    }
    out
}
