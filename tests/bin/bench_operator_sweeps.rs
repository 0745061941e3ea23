//! The operator's sweeps: the cold one, from its start until every Deployment is recorded, and
//! the warm re-verification sweeps, one window each (how the windows are cut: the top of
//! `bench_operator.rs`).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use countersign_tests::bench::{ChildProbe, OperatorProcess, POLL, progress, scrape_metrics, tail, value};
use tokio::sync::watch;

use super::{measure::Bench, phases::Snapshot, trust_root::Sweep, verdicts::Verdicts};

/// Times from the operator's start.
pub struct Cold {
    pub leading: Duration,
    pub first_sweep: Duration,
    pub all_verified: Duration,
}

impl Bench<'_> {
    /// The cold sweep ([`measure_cold`]); when it fails, with the verdicts seen so far and the
    /// end of the operator's log.
    pub async fn cold_sweep(&self) -> Result<Cold> {
        let log = &self.setup.operator_log;
        let expected = (self.setup.prepared.signed, self.setup.args.unsigned);
        let cold = measure_cold(&self.operator, &self.metrics, &self.verdicts, expected, log).await;
        match cold {
            Ok(c) => Ok(c),
            Err(e) => {
                let counts = *self.verdicts.borrow();
                bail!(
                    "{e:#}\nverdicts: {counts:?}\noperator log {}:\n{}",
                    log.display(),
                    tail(log, 30)
                );
            }
        }
    }

    /// `--warm-sweeps` sweeps, each measured from the end of the one before (`after_cold` for
    /// the first).
    pub async fn warm_sweeps(&mut self, after_cold: Snapshot) -> Result<Vec<Sweep>> {
        let mut warm = Vec::new();
        let mut previous = after_cold;
        for n in 1..=self.setup.args.warm_sweeps {
            let (sweep, now) = self.warm_sweep(n, &previous).await?;
            warm.push(sweep);
            previous = now;
        }
        Ok(warm)
    }

    /// Warm sweep `n`: waits for the operator to finish it, then closes its window.
    async fn warm_sweep(&mut self, n: usize, previous: &Snapshot) -> Result<(Sweep, Snapshot)> {
        let want = previous.sweeps() + 1.0;
        let limit = Duration::from_secs(self.setup.args.interval * 3 + 300);
        self.wait_metric(limit, |m| {
            value(m, "countersign_sweep_duration_seconds_count") >= want
        })
        .await
        .with_context(|| format!("warm sweep {n}"))?;
        let now = self.snapshot().await?;
        let sweep = self.last_sweep().await?;
        progress(&format!(
            "warm sweep {n}: {} digests in {} ms",
            sweep.digests, sweep.duration_ms
        ));
        self.record(&format!("warm {n}"), previous, &now);
        Ok((sweep, now))
    }
}

/// From the operator's start until every Deployment is recorded Verified, with the moments it
/// started leading and finished its first sweep (from its /metrics).
async fn measure_cold(
    operator: &OperatorProcess,
    metrics: &str,
    verdicts: &watch::Receiver<Verdicts>,
    (signed, unsigned): (usize, usize),
    log: &Path,
) -> Result<Cold> {
    let deployments = signed + unsigned;
    let deadline = operator.started + Duration::from_secs(900);
    let (mut leading, mut first_sweep, mut all_verified) = (None, None, None);
    let mut probe = ChildProbe(operator.pid());
    loop {
        let now = operator.started.elapsed();
        let seen = *verdicts.borrow();
        if all_verified.is_none()
            && seen.verified >= signed
            && seen.unsigned >= unsigned
            && seen.deployments == deployments
        {
            all_verified = Some(now);
        }
        if let Ok(m) = scrape_metrics(metrics).await {
            if leading.is_none() && value(&m, "countersign_leader") >= 1.0 {
                leading = Some(now);
            }
            if first_sweep.is_none() && value(&m, "countersign_sweep_duration_seconds_count") >= 1.0 {
                first_sweep = Some(now);
            }
        }
        if let (Some(leading), Some(first_sweep), Some(all_verified)) = (leading, first_sweep, all_verified) {
            progress(&format!(
                "cold: leading after {:.2}s, first sweep done after {:.2}s, all {deployments} recorded after {:.2}s",
                leading.as_secs_f64(),
                first_sweep.as_secs_f64(),
                all_verified.as_secs_f64()
            ));
            return Ok(Cold {
                leading,
                first_sweep,
                all_verified,
            });
        }
        probe.check(log)?;
        ensure!(Instant::now() < deadline, "no cold sweep within 15 min");
        tokio::time::sleep(POLL).await;
    }
}
