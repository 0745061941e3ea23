//! What a pass hands the rotations: each governed workload's images with the declared keys that
//! signed their running digests, gathered from the same plan and signature answers the verdicts
//! come from, and the digests to re-check early while a rotation waits on them.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{Assessed, WorkloadKeys, progress::ImageKeys};
use crate::operator::{
    clients::Tag,
    plan::{self, Planned, SignatureKey, TagKey},
    trust::CompiledRoot,
};

/// One governed workload of a TrustRoot, and where each of its images' signatures are.
pub struct Governed {
    pub keys: WorkloadKeys,
    /// Per image (same order as `keys.images`), the signature lookup behind it.
    pub lookups: Vec<Option<SignatureKey>>,
}

/// The governed workloads of each TrustRoot in `roots`. `signers(key, root)` gives the declared
/// keys with a valid signature on a digest (`None`: no current answer).
pub fn governed(
    planned: &[Planned],
    roots: &HashSet<&str>,
    tags: &HashMap<TagKey, Tag>,
    mut signers: impl FnMut(&SignatureKey, &CompiledRoot) -> Option<BTreeSet<String>>,
) -> HashMap<String, Vec<Governed>> {
    let mut out: HashMap<String, Vec<Governed>> = HashMap::new();
    if roots.is_empty() {
        return out;
    }
    for p in planned {
        let w = &p.workload.workload;
        let mut by_root: HashMap<&str, Governed> = HashMap::new();
        for g in &p.images {
            let digest = plan::digest_of(g, &p.credentials, tags);
            for root in g.roots.iter().filter(|r| roots.contains(r.name.as_str())) {
                let lookup = digest
                    .as_ref()
                    .zip(plan::signature_repository(g, root))
                    .map(|(d, repo)| (p.credentials.clone(), repo.repository_name(), d.clone()));
                let image = ImageKeys {
                    image: g.spec.clone(),
                    digest: digest.as_ref().map(ToString::to_string),
                    signers: lookup.as_ref().and_then(|k| signers(k, root)),
                };
                let entry = by_root.entry(root.name.as_str()).or_insert_with(|| Governed {
                    keys: WorkloadKeys {
                        namespace: w.namespace.clone(),
                        kind: w.kind.as_str().to_string(),
                        name: w.name.clone(),
                        images: Vec::new(),
                    },
                    lookups: Vec::new(),
                });
                entry.keys.images.push(image);
                entry.lookups.push(lookup);
            }
        }
        for (root, governed) in by_root {
            out.entry(root.to_string()).or_default().push(governed);
        }
    }
    out
}

/// The signature lookups to re-check early: those of images not yet signed by the new key of a
/// rotation that is waiting on re-signing.
pub fn rechecks(assessed: &[Assessed], governed: &HashMap<String, Vec<Governed>>) -> HashSet<SignatureKey> {
    let mut out = HashSet::new();
    for a in assessed.iter().filter(|a| a.decision.in_progress()) {
        let to = &a.spec().to_key;
        for g in governed.get(&a.spec().trust_root_ref).into_iter().flatten() {
            for (image, lookup) in g.keys.images.iter().zip(&g.lookups) {
                let lagging = image.signers.as_ref().is_none_or(|s| !s.contains(to));
                if let (true, Some(key)) = (lagging, lookup) {
                    out.insert(key.clone());
                }
            }
        }
    }
    out
}
