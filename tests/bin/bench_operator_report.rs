//! The markdown report on stdout: a heading, the table of headline measures (here), then the
//! tables of registry and API server requests by window (`bench_operator_tables.rs`).

use std::time::Duration;

use super::{Args, churn, measure::Measured, phases::Phase, prepare::Prepared, requests::count_requests};

pub struct Report<'a> {
    pub args: &'a Args,
    /// The registry's `host:port`.
    pub host: &'a str,
    pub prepared: &'a Prepared,
    pub measured: Measured,
    /// The registry's log, one request a line.
    pub log: Vec<&'a str>,
}

impl Report<'_> {
    pub fn print(&self) {
        self.print_heading();
        println!("| measure | value |\n|---|---|");
        self.print_sweeps();
        self.print_drift();
        let cold = self.phase("cold");
        let warm: Vec<&Phase> = self
            .measured
            .phases
            .iter()
            .filter(|p| p.name.starts_with("warm"))
            .collect();
        let drift = self.phase("drift");
        self.print_requests_per_digest(cold, &warm, drift);
        self.print_rotation();
        self.print_memory();
        self.print_one_pod();
        self.print_churn();
        self.print_end();
        self.print_registry_kinds(cold, &warm, drift);
        self.print_client_requests();
        self.print_apiserver();
    }

    fn print_heading(&self) {
        let a = self.args;
        let deployments = self.prepared.deployments;
        println!(
            "## Operator: {} pods over {} digests ({} Deployments in {} namespaces, {} fake node(s))\n",
            a.pods,
            a.digests,
            deployments,
            deployments.div_ceil(a.per_namespace.max(1)),
            a.nodes()
        );
        println!(
            "Registry {} (go-containerregistry, referrers API); {} images signed, half as bundle \
             referrers, half as `.sig` tags, {} unsigned; TrustRoot `reverifyInterval: {}s`; \
             operator flags: {}. Prepared (push + sign) in {:.1}s.\n",
            self.host,
            self.prepared.signed,
            a.unsigned,
            a.interval,
            if a.operator_args.is_empty() {
                "defaults".to_string()
            } else {
                format!("`{}`", a.operator_args.join(" "))
            },
            self.prepared.prepare_time.as_secs_f64()
        );
    }

    fn print_sweeps(&self) {
        let (a, m) = (self.args, &self.measured);
        println!(
            "| cold sweep: operator start → all {} Deployments recorded ({}) | **{:.2} s** |",
            self.prepared.deployments,
            if a.unsigned == 0 {
                "Verified".to_string()
            } else {
                format!("{} Verified, {} Unsigned", self.prepared.signed, a.unsigned)
            },
            m.cold.all_verified.as_secs_f64()
        );
        println!(
            "| ↳ operator start → leading (caches synced, Lease taken) | {:.2} s |",
            m.cold.leading.as_secs_f64()
        );
        println!(
            "| ↳ first sweep, `status.lastSweep.durationMs` ({} digests) | {} ms |",
            m.cold_sweep.digests, m.cold_sweep.duration_ms
        );
        println!(
            "| ↳ operator start → first sweep seen finished (`/metrics`) | {:.2} s |",
            m.cold.first_sweep.as_secs_f64()
        );
        let warm: Vec<String> = m.warm.iter().map(|s| format!("{} ms", s.duration_ms)).collect();
        println!(
            "| warm re-verification sweep, `status.lastSweep.durationMs` (each) | **{}** |",
            warm.join(", ")
        );
    }

    fn print_drift(&self) {
        let signed = self.prepared.signed;
        println!(
            "| key removed from the TrustRoot → all {} signed Deployments recorded Failed | **{:.2} s** |",
            signed,
            self.measured.drift.recorded.as_secs_f64()
        );
        println!(
            "| key removed → {} `SignatureDrift` events emitted | {:.2} s |",
            signed,
            self.measured.drift.events.as_secs_f64()
        );
    }

    fn print_requests_per_digest(&self, cold: Option<&Phase>, warm: &[&Phase], drift: Option<&Phase>) {
        let n = self.prepared.deployments as f64;
        if let Some(p) = cold {
            println!(
                "| registry requests per digest, cold (all kinds) | **{:.2}** ({} requests) |",
                self.requests(p) as f64 / n,
                self.requests(p)
            );
        }
        if !warm.is_empty() {
            let each: Vec<String> = warm
                .iter()
                .map(|p| format!("{:.2}", self.requests(p) as f64 / n))
                .collect();
            println!(
                "| registry requests per digest, per warm sweep (all kinds) | **{}** |",
                each.join(", ")
            );
        }
        if let Some(p) = drift {
            println!(
                "| registry requests while reacting to the key removal | {} |",
                self.requests(p)
            );
        }
    }

    fn print_rotation(&self) {
        let (Some(r), Some(p)) = (&self.measured.rotation, self.phase("rotation")) else {
            return;
        };
        let signed = self.prepared.signed;
        println!(
            "| rotation: `countersign rotation resign` of all {} digests | **{:.2} s** ({:.0} digests/s) |",
            signed,
            r.resign.as_secs_f64(),
            signed as f64 / r.resign.as_secs_f64().max(0.001)
        );
        println!(
            "| rotation: last signature pushed → KeyRotation `Completed` | **{:.2} s** |",
            r.completed_after.as_secs_f64()
        );
        println!(
            "| rotation: KeyRotation created → `Completed` | {:.2} s |",
            r.total.as_secs_f64()
        );
        println!(
            "| rotation: registry requests, resign's and the operator's (all kinds) | {} |",
            self.requests(p)
        );
        println!(
            "| rotation: most Deployments ever recorded other than Verified | **{}** |",
            r.worst_not_verified
        );
        println!("| rotation: resign's summary | {} |", r.summary);
    }

    fn print_memory(&self) {
        let m = &self.measured;
        println!(
            "| operator peak RSS (`VmHWM`): after the cold sweep / at the end | **{:.1} MiB** / **{:.1} MiB** |",
            mib(m.rss_after_cold.peak_kib),
            mib(m.memory.peak_kib)
        );
        println!(
            "| operator RSS (`VmRSS`) at the end | {:.1} MiB |",
            mib(m.memory.rss_kib)
        );
    }

    fn print_one_pod(&self) {
        let (one_pod, runs) = (&self.measured.one_pod, &self.measured.one_pod_runs);
        println!(
            "| one pod deleted and replaced, {} times → the median run's passes (of them over every workload; workloads they assessed); CPU (whole process, the benchmark's polling of `/metrics` taken off) and wall per pass; every run's CPU per pass | {} ({}; {}); **{:.1} ms** CPU ({:.1} ms with the polling), {:.1} ms wall; {} ms |",
            runs.len(),
            one_pod.passes,
            one_pod.full,
            one_pod.workloads,
            ms(one_pod.cpu_per_pass),
            ms(one_pod.raw_cpu_per_pass),
            ms(one_pod.wall_per_pass),
            millis(runs)
        );
    }

    fn print_churn(&self) {
        let Some(c) = &self.measured.churned else {
            return;
        };
        let p = |q| ms(churn::percentile(&c.latencies, q));
        println!(
            "| churn: {} rollouts in {} rounds over {:.0} s → new digest in the Deployment's WorkloadVerdict, p50 / p95 / max | **{:.0} / {:.0} / {:.0} ms**; {} not seen; {} to a digest already named (not timed) |",
            c.rollouts,
            c.rounds,
            c.elapsed.as_secs_f64(),
            p(50.0),
            p(95.0),
            p(100.0),
            c.unseen,
            c.already_named
        );
        let r = |q| ms(churn::percentile(&c.after_running, q));
        println!(
            "| churn: the operator's share: first pod of the new digest Running → new digest in the WorkloadVerdict, p50 / p95 / max ({} rollouts) | **{:.0} / {:.0} / {:.0} ms** |",
            c.after_running.len(),
            r(50.0),
            r(95.0),
            r(100.0)
        );
        let first = c.rss_kib.first().copied().unwrap_or_default();
        let last = c.rss_kib.last().copied().unwrap_or_default();
        let max = c.rss_kib.iter().copied().max().unwrap_or_default();
        println!(
            "| churn: operator RSS at the first / last round, highest | {:.1} / {:.1} MiB, {:.1} MiB |",
            mib(first),
            mib(last),
            mib(max)
        );
        println!(
            "| churn: Events emitted (no verdict changes, so 0 expected); passes; operator CPU | {}; {}; {:.1} s |",
            c.events,
            c.passes,
            c.cpu.as_secs_f64()
        );
    }

    fn print_end(&self) {
        println!("| operator stop | {} |", self.measured.stopped);
        if let Some(w) = self.measured.status.as_ref().and_then(|s| s.workloads.as_ref()) {
            println!(
                "| TrustRoot `status.workloads` at the end | total {}, verified {}, failed {}, unsigned {}, stale {} |",
                w.total, w.verified, w.failed, w.unsigned, w.stale
            );
        }
    }

    /// The window the report names `name`.
    fn phase(&self, name: &str) -> Option<&Phase> {
        self.measured.phases.iter().find(|p| p.name == name)
    }

    /// Registry requests of every kind in the window.
    fn requests(&self, p: &Phase) -> usize {
        let (kinds, _, _) = count_requests(self.log_of(p));
        kinds.values().sum::<usize>()
    }

    /// The registry log's lines of the window.
    pub fn log_of(&self, p: &Phase) -> &[&str] {
        &self.log[p.log.0..p.log.1]
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `4.1 / 5.0 / 7.3`: durations in milliseconds, one decimal.
pub fn millis(all: &[Duration]) -> String {
    let each: Vec<String> = all
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    each.join(" / ")
}
