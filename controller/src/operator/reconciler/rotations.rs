//! The rotations' step of a pass (see `crate::rotation`): tallies from the pass' own answers,
//! phases, what each TrustRoot accepts now, and the rotations' status and Events.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use k8s_openapi::jiff::Timestamp;

use super::{EDGE_SLACK, Reconciler};
use crate::{
    crd::{KeyRotationPhase, KeyStatus},
    operator::{
        clients::Tag,
        events,
        lookup::Fetched,
        plan::{Planned, SignatureKey, TagKey},
        trust::RootReport,
    },
    rotation::{self, Assessed},
};

impl Reconciler {
    /// The rotations' step of a pass: their tallies from this pass' answers, their phases, and
    /// from those what each TrustRoot accepts now (kept for `evaluate`) and its key states.
    pub(super) fn rotations(
        &mut self,
        reports: &[RootReport],
        planned: &[Planned],
        tags: &HashMap<TagKey, Tag>,
        signatures: &HashMap<SignatureKey, Fetched>,
        now: Timestamp,
    ) -> (Vec<Assessed>, HashMap<String, Vec<KeyStatus>>) {
        let rotations = self.parts.index.key_rotations();
        let live: HashSet<&str> = rotations
            .iter()
            .filter(|r| rotation::is_live(r))
            .map(|r| r.spec.trust_root_ref.as_str())
            .collect();
        let governed = rotation::pass::governed(planned, &live, tags, |key, root| {
            self.signers(key, root, signatures)
        });
        let tallies = rotations
            .iter()
            .filter(|r| rotation::is_live(r))
            .filter_map(|r| {
                let workloads: Vec<rotation::WorkloadKeys> = governed
                    .get(&r.spec.trust_root_ref)?
                    .iter()
                    .map(|g| g.keys.clone())
                    .collect();
                let tally = rotation::tally(&workloads, &r.spec.from_key, &r.spec.to_key);
                Some((kube::ResourceExt::name_any(r.as_ref()), tally))
            })
            .collect();
        let declared = rotation::roots::declared(reports);
        let assessed = rotation::assess(&rotations, &declared, &tallies, now);
        self.rechecks = rotation::pass::rechecks(&assessed, &governed);
        self.next_edge = assessed
            .iter()
            .filter_map(|a| a.decision.next_edge)
            .min()
            .map(|edge| instant_at(edge, now) + EDGE_SLACK);
        let statuses = &self.statuses;
        let accepted = rotation::roots::accepted(reports, &assessed, |report| {
            let on_object = report.root.as_ref().and_then(|r| r.status.as_ref());
            statuses.get(&report.name).or(on_object)
        });
        let mut key_states = HashMap::new();
        self.acceptance.clear();
        for (name, (keys, acceptance)) in accepted {
            self.acceptance.insert(name.clone(), acceptance);
            key_states.insert(name, keys);
        }
        (assessed, key_states)
    }

    /// Writes each rotation's status when it changed, and its Events on phase changes.
    pub(super) async fn write_rotations(&mut self, assessed: &[Assessed], now: Timestamp) {
        let mut phases = Vec::with_capacity(assessed.len());
        let mut states = [0i64; 4];
        for a in assessed {
            let name = a.name();
            let previous = self.rotation_statuses.get(&name).or(a.rotation.status.as_ref());
            let status = rotation::status::build(a, previous, now);
            phases.push(rotation::status::phase_name(a.decision.phase));
            if let (true, Some(t)) = (a.decision.in_progress(), &a.tally) {
                let p = t.progress;
                for (n, v) in
                    states
                        .iter_mut()
                        .zip([p.on_new_key, p.on_old_key_only, p.unverified, p.unknown])
                {
                    *n += i64::from(v);
                }
            }
            if previous == Some(&status) {
                self.rotation_statuses.insert(name, status);
                continue;
            }
            let before = previous.and_then(|p| p.phase);
            if let Err(e) = rotation::status::apply(&self.parts.client, &name, &status).await {
                tracing::warn!(error = %e, "rotation status update failed; retrying soon");
                self.parts.metrics.reconcile_error(e.category());
                self.retry = true;
                continue;
            }
            self.announce_rotation(a, before).await;
            self.rotation_statuses.insert(name, status);
        }
        let in_progress = assessed.iter().filter(|a| a.decision.in_progress()).count();
        self.parts.metrics.set_rotations(&phases, in_progress, states);
        let present: HashSet<String> = assessed.iter().map(Assessed::name).collect();
        self.rotation_statuses.retain(|name, _| present.contains(name));
    }

    /// Events on the KeyRotation for its phase change (status written first: a lost Event is
    /// better than a duplicate).
    async fn announce_rotation(&self, a: &Assessed, before: Option<KeyRotationPhase>) {
        let announcements = rotation::status::announcements(a, before);
        if announcements.is_empty() {
            return;
        }
        if let (Some(at), true) = (a.decision.completed_at, before != Some(a.decision.phase)) {
            let elapsed = at.duration_since(a.decision.window_start);
            self.parts
                .metrics
                .rotation_completed(Duration::try_from(elapsed).unwrap_or_default());
        }
        let object = kube::Resource::object_ref(a.rotation.as_ref(), &());
        let what = format!("KeyRotation {}", a.name());
        for announcement in &announcements {
            match events::publish_on(&self.parts.recorder, &object, &what, announcement).await {
                Ok(()) => self.parts.metrics.event_emitted(announcement.reason),
                Err(e) => {
                    tracing::warn!(error = %e, "event not published");
                    self.parts.metrics.reconcile_error(e.category());
                }
            }
        }
        tracing::info!(
            rotation = %a.name(),
            phase = rotation::status::phase_name(a.decision.phase),
            events = ?announcements.iter().map(|a| a.reason).collect::<Vec<_>>(),
            "rotation"
        );
    }
}

/// The `Instant` at which the wall clock reads `at` (now, when `at` is past).
fn instant_at(at: Timestamp, now: Timestamp) -> Instant {
    let ahead = Duration::try_from(at.duration_since(now)).unwrap_or_default();
    Instant::now() + ahead
}
