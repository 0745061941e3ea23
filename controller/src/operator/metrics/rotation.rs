//! KeyRotations: how many in each phase, the workloads of those in progress, how long they took.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// The phases of a KeyRotation, exported as 0 from the start.
const PHASES: [&str; 7] = [
    "Scheduled",
    "DualAcceptance",
    "Retiring",
    "Stalled",
    "Completed",
    "Aborted",
    "Invalid",
];

/// Where a rotation's governed workloads stand.
pub const ROTATION_STATES: [&str; 4] = ["new_key", "old_key_only", "neither", "unknown"];

/// A rotation lasts from minutes (a test, an emergency) to weeks (a planned window of 72 h that
/// stalls on a straggler): the buckets span a minute to a month.
const ROTATION_BUCKETS: [f64; 10] = [
    60.0,
    300.0,
    900.0,
    3600.0,
    14_400.0,
    43_200.0,
    86_400.0,
    259_200.0,
    604_800.0,
    2_592_000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

pub(super) struct RotationMetrics {
    rotations: Family<PhaseLabels, Gauge>,
    in_progress: Gauge,
    workloads: Family<StateLabels, Gauge>,
    duration: Histogram,
}

impl RotationMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let rotations = Family::<PhaseLabels, Gauge>::default();
        registry.register("rotations", "KeyRotations by phase", rotations.clone());
        for phase in PHASES {
            rotations.get_or_create(&PhaseLabels { phase }).set(0);
        }
        let in_progress = Gauge::default();
        registry.register(
            "rotation_in_progress",
            "KeyRotations holding two keys in dual acceptance right now (DualAcceptance, Retiring, \
             Stalled): alert rules use it to silence signature alerts during a planned rotation",
            in_progress.clone(),
        );
        let workloads = Family::<StateLabels, Gauge>::default();
        registry.register(
            "rotation_workloads",
            "Workloads governed by rotations in progress, by where they stand (new_key, \
             old_key_only, neither, unknown)",
            workloads.clone(),
        );
        for state in ROTATION_STATES {
            workloads.get_or_create(&StateLabels { state }).set(0);
        }
        let duration = Histogram::new(ROTATION_BUCKETS);
        registry.register_with_unit(
            "rotation_duration",
            "Time from a KeyRotation's window start to its completion (the old key retired)",
            Unit::Seconds,
            duration.clone(),
        );
        Self {
            rotations,
            in_progress,
            workloads,
            duration,
        }
    }

    pub(super) fn set(&self, phases: &[&'static str], in_progress: usize, states: [i64; 4]) {
        for phase in PHASES {
            let n = phases.iter().filter(|p| **p == phase).count();
            self.rotations
                .get_or_create(&PhaseLabels { phase })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.in_progress
            .set(i64::try_from(in_progress).unwrap_or(i64::MAX));
        for (state, n) in ROTATION_STATES.into_iter().zip(states) {
            self.workloads.get_or_create(&StateLabels { state }).set(n);
        }
    }

    pub(super) fn completed(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }
}
