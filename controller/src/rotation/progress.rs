//! Where a rotation's governed workloads stand: on the new key, on the old key only, on neither,
//! or unknown; the stragglers to act on; and from that the retirement gate. Pure: the pass
//! hands in, for each governed image, which declared keys have a valid signature on its running
//! digest (whether or not they are accepted right now), so progress is the same before, during
//! and after the window.

use std::collections::BTreeSet;

use super::phase::Gate;
use crate::crd::{MAX_STRAGGLERS, RotationProgress, Straggler, StragglerState};

/// One governed workload, as a rotation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadKeys {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    pub images: Vec<ImageKeys>,
}

/// One governed image of a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageKeys {
    /// The image as the pod spec writes it.
    pub image: String,
    pub digest: Option<String>,
    /// The declared keys with a valid signature on the digest; `None` without a current answer.
    pub signers: Option<BTreeSet<String>>,
}

/// A rotation's progress, its stragglers (at most [`MAX_STRAGGLERS`], the most urgent first)
/// and its gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    pub progress: RotationProgress,
    pub stragglers: Vec<Straggler>,
    pub gate: Gate,
}

/// Where one image, or one workload, stands. Ordered from most to least urgent for stragglers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Standing {
    OldKeyOnly,
    Unknown,
    Neither,
    NewKey,
}

fn image_standing(image: &ImageKeys, from: &str, to: &str) -> Standing {
    match &image.signers {
        None => Standing::Unknown,
        Some(s) if s.contains(to) => Standing::NewKey,
        Some(s) if s.contains(from) => Standing::OldKeyOnly,
        Some(_) => Standing::Neither,
    }
}

/// A workload stands where its worst image does, except that one image on neither key makes it
/// `Neither`: it fails already, and retiring fromKey cannot break it further.
fn workload_standing<'w>(w: &'w WorkloadKeys, from: &str, to: &str) -> (Standing, Option<&'w ImageKeys>) {
    let standings = w.images.iter().map(|i| (image_standing(i, from, to), i));
    let neither = standings.clone().find(|(s, _)| *s == Standing::Neither);
    let worst = neither.or_else(|| standings.min_by_key(|(s, _)| *s));
    match worst {
        Some((s, i)) if s != Standing::NewKey => (s, Some(i)),
        _ => (Standing::NewKey, None),
    }
}

/// The tally of the rotation `from` → `to` over the workloads its TrustRoot governs.
pub fn tally(workloads: &[WorkloadKeys], from: &str, to: &str) -> Tally {
    let mut progress = RotationProgress::default();
    let mut stragglers: Vec<(Standing, Straggler)> = Vec::new();
    for w in workloads {
        progress.workloads += 1;
        let (standing, image) = workload_standing(w, from, to);
        match standing {
            Standing::NewKey => progress.on_new_key += 1,
            Standing::OldKeyOnly => progress.on_old_key_only += 1,
            Standing::Neither => progress.unverified += 1,
            Standing::Unknown => progress.unknown += 1,
        }
        if let Some(image) = image {
            stragglers.push((standing, straggler(w, image, standing)));
        }
    }
    stragglers.sort_by(|(a, x), (b, y)| {
        (a, &x.namespace, &x.kind, &x.name).cmp(&(b, &y.namespace, &y.kind, &y.name))
    });
    let gate = if progress.on_old_key_only > 0 {
        Gate::NotMet
    } else if progress.unknown > 0 {
        Gate::Unknown
    } else {
        Gate::Met
    };
    Tally {
        progress,
        stragglers: stragglers
            .into_iter()
            .take(MAX_STRAGGLERS)
            .map(|(_, s)| s)
            .collect(),
        gate,
    }
}

fn straggler(w: &WorkloadKeys, image: &ImageKeys, standing: Standing) -> Straggler {
    Straggler {
        namespace: w.namespace.clone(),
        kind: w.kind.clone(),
        name: w.name.clone(),
        image: image.image.clone(),
        digest: image.digest.clone(),
        state: match standing {
            Standing::OldKeyOnly => StragglerState::OldKeyOnly,
            Standing::Unknown => StragglerState::Unknown,
            Standing::Neither | Standing::NewKey => StragglerState::Neither,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, signers: Option<&[&str]>) -> ImageKeys {
        ImageKeys {
            image: format!("registry.test/{name}:v1"),
            digest: Some(format!("sha256:{name}")),
            signers: signers.map(|s| s.iter().map(|k| (*k).to_string()).collect()),
        }
    }

    fn workload(name: &str, images: Vec<ImageKeys>) -> WorkloadKeys {
        WorkloadKeys {
            namespace: "team".into(),
            kind: "Deployment".into(),
            name: name.into(),
            images,
        }
    }

    #[test]
    fn every_workload_on_the_new_key_meets_the_gate() {
        let t = tally(
            &[
                workload("a", vec![image("a", Some(&["new"]))]),
                workload("b", vec![image("b", Some(&["old", "new"]))]),
            ],
            "old",
            "new",
        );
        assert_eq!(t.gate, Gate::Met);
        assert_eq!((t.progress.workloads, t.progress.on_new_key), (2, 2));
        assert!(t.stragglers.is_empty());
    }

    #[test]
    fn one_image_on_the_old_key_only_holds_the_rotation() {
        let t = tally(
            &[workload(
                "a",
                vec![image("a", Some(&["new"])), image("sidecar", Some(&["old"]))],
            )],
            "old",
            "new",
        );
        assert_eq!(t.gate, Gate::NotMet);
        assert_eq!(t.progress.on_old_key_only, 1);
        assert_eq!(t.stragglers.len(), 1);
        assert_eq!(t.stragglers[0].state, StragglerState::OldKeyOnly);
        assert_eq!(t.stragglers[0].digest.as_deref(), Some("sha256:sidecar"));
    }

    #[test]
    fn an_unsigned_workload_does_not_block_but_an_unknown_one_does() {
        let unsigned = workload("u", vec![image("u", Some(&[]))]);
        let t = tally(std::slice::from_ref(&unsigned), "old", "new");
        assert_eq!((t.gate, t.progress.unverified), (Gate::Met, 1));
        assert_eq!(t.stragglers[0].state, StragglerState::Neither);
        let unknown = workload("x", vec![image("x", None)]);
        let t = tally(&[unsigned, unknown], "old", "new");
        assert_eq!((t.gate, t.progress.unknown), (Gate::Unknown, 1));
    }

    #[test]
    fn a_workload_failing_already_counts_as_neither() {
        let w = workload(
            "a",
            vec![image("a", Some(&["old"])), image("b", Some(&["other"]))],
        );
        let t = tally(&[w], "old", "new");
        assert_eq!((t.gate, t.progress.unverified), (Gate::Met, 1));
    }

    #[test]
    fn stragglers_are_bounded_and_the_most_urgent_come_first() {
        let mut workloads: Vec<WorkloadKeys> = (0..30)
            .map(|i| workload(&format!("n{i:02}"), vec![image("n", Some(&[]))]))
            .collect();
        workloads.push(workload("z-old", vec![image("z", Some(&["old"]))]));
        let t = tally(&workloads, "old", "new");
        assert_eq!(t.stragglers.len(), MAX_STRAGGLERS);
        assert_eq!(t.stragglers[0].name, "z-old");
        assert_eq!(t.stragglers[1].name, "n00");
        assert_eq!(t.progress.workloads, 31);
    }
}
