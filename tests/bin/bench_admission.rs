//! Benchmark of admission: pod creations through the real kube-apiserver, first without the
//! webhooks, then with them calling `countersign run`'s admission webhooks over TLS with a
//! TrustRoot in `Enforce` (the operator in this process, release build).
//!
//!   e2e/bench-admission.sh [--pods 300] [--cold 20] [--concurrency 8]
//!
//! It measures, each as request latency seen by the client (p50, p99) and throughput:
//!
//! 1. PODS creations without webhooks, one at a time, then CONCURRENCY in flight;
//! 2. the same with the webhooks and a warm cache (one signed digest, verified once before);
//! 3. COLD creations of digests never seen (each one verified against the registry);
//!
//! and the added latency (2 − 1, 3 − 1). Markdown on stdout; progress on stderr.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Parser;
use countersign_tests::{
    admission::{self, Replica, pod, pods_path, post},
    bench::{create_namespace, install, progress},
    cluster::LocalCluster,
    cosign::{Cosign, CosignVersion},
    images::push_image,
    registry::{Registry, RegistryKind},
    scratch_dir,
};
use futures::{StreamExt, stream};
use kube::Client;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Pods created per measurement.
    #[arg(long, default_value_t = 300)]
    pods: usize,
    /// Never-seen digests created with the webhooks on.
    #[arg(long, default_value_t = 20)]
    cold: usize,
    /// Requests in flight for the throughput runs.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// Latencies of one run, and its wall time.
struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).copied().unwrap_or_default()
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Creates a pod for each image, `concurrency` at a time, each one admitted. A dry run goes
/// through the whole admission chain without storing anything: admissions alone.
async fn create(
    client: &Client,
    namespace: &str,
    images: &[String],
    concurrency: usize,
    dry_run: bool,
) -> Result<Run> {
    let path = pods_path(namespace);
    let started = Instant::now();
    let results: Vec<Result<Duration>> = stream::iter(images.iter().enumerate())
        .map(|(i, image)| {
            let path = path.clone();
            async move {
                let sent = Instant::now();
                let created = post(client, &path, &pod(&format!("p{i}"), image), dry_run).await;
                ensure!(created.code == 201, "pod {i}: {created:?}");
                Ok(sent.elapsed())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let latencies = results.into_iter().collect::<Result<Vec<_>>>()?;
    Ok(Run {
        latencies,
        wall: started.elapsed(),
    })
}

/// p50 and p99 (as bucket upper bounds) and the count of the admission duration histogram.
async fn admission_percentiles(metrics: std::net::SocketAddr) -> (String, String, f64) {
    let scraped = countersign_tests::bench::scrape_metrics(&metrics.to_string())
        .await
        .unwrap_or_default();
    let prefix = "countersign_admission_duration_seconds_bucket{le=\"";
    let mut buckets: Vec<(f64, f64)> = scraped
        .iter()
        .filter_map(|(series, count)| {
            let le = series.strip_prefix(prefix)?.trim_end_matches("\"}");
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, *count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let at = |p: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= p * total)
            .map_or_else(|| "?".to_string(), |(le, _)| format!("{:.1} ms", le * 1000.0))
    };
    (at(0.5), at(0.99), total)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let cluster = LocalCluster::start().await?;
    let client = cluster.client();
    install(&client).await?;
    let registry = Registry::start(RegistryKind::Referrers);
    let cosign = Cosign::new(CosignVersion::V3);
    let dir = scratch_dir("bench-admission");
    let (private, public) = cosign.generate_key_pair(dir.path(), "bench");
    let repo = registry.repo("bench/app");
    progress(&format!("pushing and signing 1 + {} images", args.cold));
    let mut signed = Vec::new();
    for i in 0..=args.cold {
        let digest = push_image(&format!("{repo}:v{i}"), &format!("bench image {i}"));
        let image = format!("{repo}@{digest}");
        let run = cosign.sign(&private, &image, false);
        ensure!(run.success, "cosign sign {image}: {}", run.stderr);
        signed.push(image);
    }
    let (warm, cold) = signed.split_first().expect("images");
    let pem = std::fs::read_to_string(&public)?;
    let root = json!({"apiVersion": "countersign.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "bench"},
        "spec": {"images": [format!("{}/bench/**", registry.host)], "keys": [{"name": "bench", "publicKey": pem}], "mode": "Enforce"}});
    let created = post(&client, "/apis/countersign.dev/v1alpha1/trustroots", &root, false).await;
    ensure!(created.code == 201, "TrustRoot: {created:?}");
    for ns in ["base", "base-c", "base-d", "warm", "warm-c", "warm-d", "cold"] {
        create_namespace(&client, ns).await?;
    }
    let replica = Replica::start(&cluster, "bench").await;
    let same = vec![warm.clone(); args.pods];

    progress("without webhooks");
    let base = create(&client, "base", &same, 1, false).await?;
    let base_c = create(&client, "base-c", &same, args.concurrency, false).await?;
    let base_dry = create(&client, "base-d", &same, args.concurrency, true).await?;

    progress("with webhooks, warm");
    // As `kubectl apply -k manifests` installs them: the validating webhook (pinning is opt-in).
    admission::install_webhooks(&client, &[replica.admission], false).await;
    admission::wait_ca_bundles(&client).await?;
    // The API server reloads the configuration on its own time, and the first call verifies
    // the digest: wait until a creation was admitted by a call to the webhook.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        post(&client, &pods_path("warm"), &pod("warm-up", warm), true).await;
        let series = r#"countersign_admission_requests_total{decision="allowed",reason="verified"}"#;
        if admission::metric(replica.metrics, series).await >= 1.0 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the webhook was not called within 60 s"
        );
    }
    let on = create(&client, "warm", &same, 1, false).await?;
    let on_c = create(&client, "warm-c", &same, args.concurrency, false).await?;
    let on_dry = create(&client, "warm-d", &same, args.concurrency, true).await?;
    let server_side = admission_percentiles(replica.metrics).await;

    progress("with webhooks, never-seen digests");
    let cold_run = create(&client, "cold", cold, 1, false).await?;
    let misses = admission::metric(
        replica.metrics,
        r#"countersign_admission_cache_total{result="miss"}"#,
    )
    .await;

    println!(
        "| creations ({} pods each) | p50 | p99 | added p50 | added p99 | creations/s ({} in flight) | dry-run admissions/s |",
        args.pods, args.concurrency
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| no webhooks | {} | {} | | | {:.0} | {:.0} |",
        ms(base.percentile(0.5)),
        ms(base.percentile(0.99)),
        base_c.per_second(),
        base_dry.per_second()
    );
    let added = |r: &Run, p: f64| ms(r.percentile(p).saturating_sub(base.percentile(p)));
    println!(
        "| webhooks, Enforce, warm cache | {} | {} | {} | {} | {:.0} | {:.0} |",
        ms(on.percentile(0.5)),
        ms(on.percentile(0.99)),
        added(&on, 0.5),
        added(&on, 0.99),
        on_c.per_second(),
        on_dry.per_second()
    );
    println!(
        "| webhooks, Enforce, never-seen digests ({}) | {} | {} | {} | {} | | |",
        args.cold,
        ms(cold_run.percentile(0.5)),
        ms(cold_run.percentile(0.99)),
        added(&cold_run, 0.5),
        added(&cold_run, 0.99),
    );
    let (p50, p99, count) = server_side;
    println!(
        "\ncountersign's own time per admission (countersign_admission_duration_seconds over the \
         warm runs, {count:.0} reviews): p50 ≤ {p50}, p99 ≤ {p99} (histogram bucket bounds). \
         Cache misses at admission: {misses:.0} (the never-seen digests; the warm digest was \
         cached by the operator's own sweep of the pods created without webhooks)."
    );
    replica.stop().await;
    cluster.stop();
    Ok(())
}
