//! What the warm operator is measured reacting to: one pod replaced, Deployments rolled to
//! another digest (`--churn`), the key rotated (`--rotation`), and a key removed from the
//! TrustRoot (drift).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countersign_tests::bench::{progress, settle_within, value};

use super::{
    churn,
    images::Image,
    measure::Bench,
    phases::{Phase, Snapshot},
    report::millis,
    rotation,
    trust_root::apply_trust_root,
};

/// How many times one pod is changed to measure what a pass over it costs (the median is kept).
const ONE_POD_RUNS: usize = 5;
/// How long the API server is still watched after the drift, for what it sets off.
const KNOCK_ON: Duration = Duration::from_secs(15);
/// The operator's count of the `SignatureDrift` events it emitted.
const DRIFT_EVENTS: &str = r#"countersign_events_total{reason="SignatureDrift"}"#;

/// From the key's removal until every signed Deployment was recorded Failed, and until a
/// `SignatureDrift` event was emitted for each.
pub struct Drift {
    pub recorded: Duration,
    pub events: Duration,
}

impl Bench<'_> {
    /// One pod changed: what the passes it starts cost (the median of [`ONE_POD_RUNS`] runs,
    /// and every run's CPU per pass).
    pub async fn one_pod_changed(&self) -> Result<(churn::OnePod, Vec<Duration>)> {
        let (one_pod, one_pod_runs) = churn::one_pod_median(
            self.setup.client,
            &self.operator,
            &self.metrics,
            "bench-0",
            ONE_POD_RUNS,
        )
        .await?;
        progress(&format!(
            "one pod changed ({ONE_POD_RUNS} times; CPU per pass of each: {}), the median: {} passes \
             ({} over every workload, {} workloads assessed), {:.1} ms CPU ({:.1} ms before taking \
             off {:.1} ms/s of polling) and {:.1} ms wall each",
            millis(&one_pod_runs),
            one_pod.passes,
            one_pod.full,
            one_pod.workloads,
            one_pod.cpu_per_pass.as_secs_f64() * 1e3,
            one_pod.raw_cpu_per_pass.as_secs_f64() * 1e3,
            one_pod.idle_cpu_per_second.as_secs_f64() * 1e3,
            one_pod.wall_per_pass.as_secs_f64() * 1e3
        ));
        Ok((one_pod, one_pod_runs))
    }

    /// `--churn`: Deployments rolled back and forth between two signed digests.
    pub async fn churn(&mut self) -> Result<churn::Churn> {
        let args = self.setup.args;
        let targets = churn_targets(&self.setup.prepared.images, args.per_namespace);
        let timing = (
            Duration::from_secs(args.churn_every),
            Duration::from_secs(args.churn),
        );
        let before = self.snapshot().await?;
        let c = churn::churn(self.setup.client, &self.operator, &self.metrics, &targets, timing).await?;
        let after = self.snapshot().await?;
        self.record("churn", &before, &after);
        progress(&format!(
            "churn: {} rollouts in {} rounds, p50 {:?} to the new digest",
            c.rollouts,
            c.rounds,
            churn::percentile(&c.latencies, 50.0)
        ));
        Ok(c)
    }

    /// `--rotation`: the TrustRoot's key rotated and every digest re-signed.
    pub async fn rotate_key(&mut self) -> Result<rotation::Rotation> {
        let setup = self.setup;
        let before = self.snapshot().await?;
        let keys = rotation::Keys {
            ci: setup.keys.ci,
            spare: setup.keys.spare,
        };
        let rotated = rotation::rotate(
            setup.client,
            setup.countersign,
            setup.cluster.kubeconfig_path(),
            setup.cluster.dir(),
            (&setup.prepared.glob, setup.args.interval),
            keys,
            &self.verdicts,
        )
        .await?;
        let after = self.snapshot().await?;
        self.record("rotation", &before, &after);
        Ok(rotated)
    }

    /// A key removed from the TrustRoot: every signed workload must drift. Returns the times
    /// and the snapshot that closes the window.
    pub async fn remove_key(&mut self) -> Result<(Drift, Snapshot)> {
        let args = self.setup.args;
        // Churn and rotation leave the control plane busy finishing rollouts; the drift is
        // measured once it has settled.
        if args.churn > 0 || args.rotation {
            settle_within(self.setup.client, &mut self.own, Duration::from_secs(600)).await?;
        }
        let before_drift = self.snapshot().await?;
        let drift_events_before = value(&before_drift.operator, DRIFT_EVENTS);
        let removed = Instant::now();
        let spare = self.setup.keys.spare;
        apply_trust_root(
            self.setup.client,
            &self.setup.prepared.glob,
            &[("spare", spare)],
            args.interval,
        )
        .await?;
        self.own.count(1);
        let drift = self.wait_drift(removed, drift_events_before).await?;
        let after_drift = self.snapshot().await?;
        self.record("drift", &before_drift, &after_drift);
        Ok((drift, after_drift))
    }

    /// From the key's removal until every signed Deployment is recorded Failed, then until the
    /// operator counts a `SignatureDrift` event for each (beyond the `events_before` it had).
    async fn wait_drift(&self, removed: Instant, events_before: f64) -> Result<Drift> {
        let signed = self.setup.prepared.signed;
        let mut rx = self.verdicts.clone();
        tokio::time::timeout(Duration::from_secs(300), rx.wait_for(|c| c.failed >= signed))
            .await
            .context("every Deployment Failed after the key was removed")??;
        let recorded = removed.elapsed();
        self.wait_metric(Duration::from_secs(300), |m| {
            value(m, DRIFT_EVENTS) - events_before >= signed as f64
        })
        .await
        .context("a SignatureDrift event per Deployment")?;
        let events = removed.elapsed();
        progress(&format!(
            "key removed → {signed} Failed in {:.2}s, {signed} SignatureDrift events in {:.2}s",
            recorded.as_secs_f64(),
            events.as_secs_f64()
        ));
        Ok(Drift { recorded, events })
    }

    /// What the verdict writes set off after the drift in the controller-manager, for the API
    /// server table only (when verdicts were Deployment annotations, it copied them to the
    /// ReplicaSets).
    pub async fn knock_on(&mut self, after_drift: &Snapshot) -> Result<Phase> {
        tokio::time::sleep(KNOCK_ON).await;
        let knock_on = self.snapshot().await?;
        Ok(Phase::new(
            &format!("the {}s after drift", KNOCK_ON.as_secs()),
            after_drift,
            &knock_on,
        ))
    }
}

/// Each Deployment rolls between its own image and the one half the images further on.
fn churn_targets(images: &[Image], per_namespace: usize) -> churn::Targets {
    let n = images.len();
    let per_namespace = per_namespace.max(1);
    (0..n)
        .map(|i| {
            let other = &images[(i + n / 2) % n].pinned;
            let ns = format!("bench-{}", i / per_namespace);
            (ns, format!("app-{i}"), [images[i].pinned.clone(), other.clone()])
        })
        .collect()
}
