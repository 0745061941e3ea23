//! Benchmark of the operator (`countersign run`) on a loaded local control plane.
//!
//!   e2e/bench-operator.sh [PODS] [DIGESTS]      (default 5000 pods over 500 digests)
//!
//! It starts the real local control plane (etcd, kube-apiserver, controller-manager, scheduler,
//! kwok) and one go-containerregistry registry with the referrers API; pushes DIGESTS small images
//! and signs them in process (even ones as Sigstore bundle referrers, odd ones as cosign v2 `.sig`
//! tags); creates one Deployment per digest, pinned by digest (so kwok reports it as the
//! containers' `imageID`), PODS replicas in all; applies a TrustRoot governing them; waits until
//! every pod runs; and only then starts `countersign run` as a process. It measures:
//!
//! 1. the cold sweep: operator start → every Deployment recorded `Verified` (watched, not polled);
//! 2. the warm sweeps: each re-verification sweep's `status.lastSweep.durationMs`;
//! 3. a key removed from the TrustRoot → every Deployment recorded `Failed`, and every
//!    `SignatureDrift` event emitted (from the operator's `countersign_events_total`);
//! 4. registry requests, from the registry's own log (one line per request), by kind, per
//!    distinct digest: cold, per warm sweep, and during the reaction to the key removal; next to
//!    the operator's own `countersign_registry_requests_total`;
//! 5. the operator's peak RSS (`VmHWM` of `/proc/<pid>/status`);
//! 6. the API server's request rate (its own `apiserver_request_total`, whole cluster, with a
//!    window before the operator starts as the baseline).
//!
//! With `--rotation`, a key rotation runs between the warm sweeps and the key removal: every
//! digest re-signed by `countersign rotation resign`, then the time to `Completed` (see
//! `bench_rotation.rs`).
//!
//! Phase boundaries come from the operator's sweep counter (`countersign_sweep_duration_seconds`
//! count): the registry log is cut the moment a sweep is seen finished, and the next sweep starts
//! a `reverifyInterval` later, so each warm window holds exactly one sweep's requests.
//!
//! Everything it prints on stdout is markdown; progress goes to stderr.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use countersign::{
    crd::{TrustRoot, WorkloadVerdict},
    formats::oci::{OCI_CONFIG, OCI_MANIFEST},
    keys::SigningKey,
    reference::{Digest, ImageRef},
    registry::{RegistryClient, RegistryOptions},
    sign::{SignRequest, sign_bundle, sign_legacy},
};
use countersign_tests::{
    bench::{
        ApiServer, ChildProbe, MANAGER, Memory, OperatorProcess, OwnRequests, POLL, create_namespace,
        install, progress, prometheus_label, scrape_metrics, settle, settle_within, tail, value, wait_metric,
    },
    cluster::{ClusterOptions, LocalCluster},
    registry::{Registry, RegistryKind},
};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
    core::PartialObjectMeta,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use tokio::sync::watch;

#[path = "bench_churn.rs"]
mod churn;
#[path = "bench_rotation.rs"]
mod rotation;

const TRUST_ROOT: &str = "bench";
/// The label every benchmark Deployment carries, to watch them and nothing else.
const BENCH_LABEL: &str = "countersign.dev/bench";
/// Pushes and signatures in flight at once while preparing.
const PREPARE_CONCURRENCY: usize = 8;
/// The baseline window of the API server's request rate, before the operator starts.
const BASELINE: Duration = Duration::from_secs(10);
/// How many times one pod is changed to measure what a pass over it costs (the median is kept).
const ONE_POD_RUNS: usize = 5;
/// How long the API server is still watched after the drift, for what it sets off.
const KNOCK_ON: Duration = Duration::from_secs(15);

#[derive(Parser)]
#[command(about = "Benchmark of `countersign run` on a real local control plane and registry")]
struct Args {
    /// Pods in all, spread evenly over the Deployments.
    #[arg(default_value_t = 5000)]
    pods: usize,
    /// Distinct digests; one Deployment (and one image) per digest.
    #[arg(default_value_t = 500)]
    digests: usize,
    /// The TrustRoot's reverifyInterval, in seconds (the CRD allows 10s to 24h).
    #[arg(long, default_value_t = 30)]
    interval: u64,
    /// Warm sweeps to measure.
    #[arg(long, default_value_t = 3)]
    warm_sweeps: usize,
    /// Digests per repository (tags v0, v1, … of `bench/app-N`).
    #[arg(long, default_value_t = 10)]
    per_repo: usize,
    /// Of the DIGESTS, how many are pushed but left unsigned (the last ones): their workloads
    /// stay `Unsigned`, and each of their warm re-checks looks at both formats.
    #[arg(long, default_value_t = 0)]
    unsigned: usize,
    /// Deployments per namespace.
    #[arg(long, default_value_t = 100)]
    per_namespace: usize,
    /// Also rotate the TrustRoot's key and re-sign every digest (after the warm sweeps).
    #[arg(long)]
    rotation: bool,
    /// After the warm sweeps, roll a tenth of the Deployments to another signed digest every
    /// `--churn-every` seconds, for this many seconds (0: no churn).
    #[arg(long, default_value_t = 0)]
    churn: u64,
    #[arg(long, default_value_t = 5)]
    churn_every: u64,
    /// Flags handed to `countersign run` as they are (after `--`), e.g.
    /// `-- --max-concurrent-verifications 32`.
    #[arg(last = true)]
    operator_args: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.digests > 0 && args.pods >= args.digests,
        "need PODS >= DIGESTS > 0"
    );
    ensure!(
        args.unsigned < args.digests,
        "--unsigned must leave at least one signed digest"
    );
    ensure!(
        args.interval >= 10,
        "the CRD accepts a reverifyInterval of 10s or more"
    );
    let countersign = std::env::var("COUNTERSIGN_BIN")
        .map(PathBuf::from)
        .context("COUNTERSIGN_BIN: the countersign binary to benchmark (e2e/bench-operator.sh sets it)")?;
    let started = Instant::now();

    // The control plane, sized for the pods: up to 5,000 per fake node, with room to spare.
    let nodes = args.pods.div_ceil(5000).max(1);
    let pods_per_node = u32::try_from(args.pods.div_ceil(nodes) + 110)?;
    let registry = Registry::start(RegistryKind::Referrers);
    let cluster = LocalCluster::start_with(ClusterOptions {
        dir: None,
        nodes,
        pods_per_node,
        ..ClusterOptions::default()
    })
    .await?;
    let client = cluster.client();
    install(&client).await?;

    // Images, signatures, workloads, trust root.
    let trusted = SigningKey::generate();
    let spare = SigningKey::generate();
    let t = Instant::now();
    let images = prepare_images(&registry.host, &args, &trusted).await?;
    let prepare_time = t.elapsed();
    progress(&format!(
        "pushed and signed {} images in {:.1}s",
        images.len(),
        prepare_time.as_secs_f64()
    ));
    let glob = format!("{}/bench/**", registry.host);
    apply_trust_root(
        &client,
        &glob,
        &[("ci", &trusted), ("spare", &spare)],
        args.interval,
    )
    .await?;
    let t = Instant::now();
    let deployments = create_workloads(&client, &images, &args, cluster.node_names()).await?;
    wait_pods_running(&client, args.pods).await?;
    progress(&format!(
        "{} pods of {} Deployments Running in {:.1}s",
        args.pods,
        deployments,
        t.elapsed().as_secs_f64()
    ));
    let verdicts = watch_verdicts(client.clone());
    let signed = deployments - args.unsigned;

    // Baseline of the API server once the controller-manager has caught up with the Deployments
    // (their status), while nothing but the cluster itself runs.
    let mut own = OwnRequests::default();
    settle(&client, &mut own).await?;
    let baseline_start = ApiServer::scrape(&client, &mut own).await?;
    tokio::time::sleep(BASELINE).await;

    // The operator.
    let log_path = cluster.dir().join("operator.log");
    let mut phases = Vec::new();
    let op_start = snapshot(&registry, &client, "", &mut own, false).await?;
    let mut operator = OperatorProcess::start(
        &countersign,
        cluster.kubeconfig_path(),
        &log_path,
        &args.operator_args,
    )?;
    let metrics_addr = operator.metrics_addr(&log_path)?;
    let cold = measure_cold(
        &operator,
        &metrics_addr,
        &verdicts,
        (signed, args.unsigned),
        &log_path,
    )
    .await;
    let cold = match cold {
        Ok(c) => c,
        Err(e) => {
            let counts = *verdicts.borrow();
            bail!(
                "{e:#}\nverdicts: {counts:?}\noperator log {}:\n{}",
                log_path.display(),
                tail(&log_path, 30)
            );
        }
    };
    let rss_after_cold = operator.memory();
    let after_cold = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
    let cold_sweep = last_sweep(&client, &mut own).await?;
    phases.push(Phase::new("cold", &op_start, &after_cold));

    // Warm sweeps: each window ends when the operator reports the next sweep finished.
    let mut warm = Vec::new();
    let mut previous = after_cold;
    for n in 1..=args.warm_sweeps {
        let want = previous.sweeps() + 1.0;
        let limit = Duration::from_secs(args.interval * 3 + 300);
        wait_metric(&metrics_addr, limit, &operator, &log_path, |m| {
            value(m, "countersign_sweep_duration_seconds_count") >= want
        })
        .await
        .with_context(|| format!("warm sweep {n}"))?;
        let now = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
        let sweep = last_sweep(&client, &mut own).await?;
        progress(&format!(
            "warm sweep {n}: {} digests in {} ms",
            sweep.digests, sweep.duration_ms
        ));
        phases.push(Phase::new(&format!("warm {n}"), &previous, &now));
        warm.push(sweep);
        previous = now;
    }

    // One pod changed: what the passes it starts cost.
    let (one_pod, one_pod_runs) =
        churn::one_pod_median(&client, &operator, &metrics_addr, "bench-0", ONE_POD_RUNS).await?;
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
    let churned = if args.churn > 0 {
        let n = images.len();
        let per_namespace = args.per_namespace.max(1);
        let targets = (0..n)
            .map(|i| {
                let other = &images[(i + n / 2) % n].pinned;
                let ns = format!("bench-{}", i / per_namespace);
                (ns, format!("app-{i}"), [images[i].pinned.clone(), other.clone()])
            })
            .collect();
        let timing = (
            Duration::from_secs(args.churn_every),
            Duration::from_secs(args.churn),
        );
        let before = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
        let c = churn::churn(&client, &operator, &metrics_addr, &targets, timing).await?;
        let after = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
        phases.push(Phase::new("churn", &before, &after));
        progress(&format!(
            "churn: {} rollouts in {} rounds, p50 {:?} to the new digest",
            c.rollouts,
            c.rounds,
            churn::percentile(&c.latencies, 50.0)
        ));
        Some(c)
    } else {
        None
    };

    let rotation = if args.rotation {
        let before = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
        let keys = rotation::Keys {
            ci: &trusted,
            spare: &spare,
        };
        let rotated = rotation::rotate(
            &client,
            &countersign,
            cluster.kubeconfig_path(),
            cluster.dir(),
            (&glob, args.interval),
            keys,
            &verdicts,
        )
        .await?;
        let after = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
        phases.push(Phase::new("rotation", &before, &after));
        Some(rotated)
    } else {
        None
    };

    // A key removed from the TrustRoot: every workload must drift. Churn and rotation leave the
    // control plane busy finishing rollouts; the drift is measured once it has settled.
    if args.churn > 0 || args.rotation {
        settle_within(&client, &mut own, Duration::from_secs(600)).await?;
    }
    let before_drift = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
    let drift_events_before = value(
        &before_drift.operator,
        r#"countersign_events_total{reason="SignatureDrift"}"#,
    );
    let t = Instant::now();
    apply_trust_root(&client, &glob, &[("spare", &spare)], args.interval).await?;
    own.count(1);
    let mut rx = verdicts.clone();
    tokio::time::timeout(Duration::from_secs(300), rx.wait_for(|c| c.failed >= signed))
        .await
        .context("every Deployment Failed after the key was removed")??;
    let drift_recorded = t.elapsed();
    wait_metric(
        &metrics_addr,
        Duration::from_secs(300),
        &operator,
        &log_path,
        |m| {
            value(m, r#"countersign_events_total{reason="SignatureDrift"}"#) - drift_events_before
                >= signed as f64
        },
    )
    .await
    .context("a SignatureDrift event per Deployment")?;
    let drift_events = t.elapsed();
    progress(&format!(
        "key removed → {signed} Failed in {:.2}s, {signed} SignatureDrift events in {:.2}s",
        drift_recorded.as_secs_f64(),
        drift_events.as_secs_f64()
    ));
    let after_drift = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
    phases.push(Phase::new("drift", &before_drift, &after_drift));
    // What the verdict writes set off afterwards in the controller-manager, for the API server
    // table only (when verdicts were Deployment annotations, it copied them to the ReplicaSets).
    tokio::time::sleep(KNOCK_ON).await;
    let knock_on = snapshot(&registry, &client, &metrics_addr, &mut own, true).await?;
    let knock_on = Phase::new(
        &format!("the {}s after drift", KNOCK_ON.as_secs()),
        &after_drift,
        &knock_on,
    );
    let memory = operator.memory();
    let status = get_trust_root(&client).await?.status;
    let stopped = operator.stop();

    let log = registry.log();
    let _ = std::fs::write(cluster.dir().join("registry.log"), &log);
    let report = Report {
        args: &args,
        host: &registry.host,
        nodes,
        deployments,
        prepare_time,
        cold,
        cold_sweep,
        warm,
        drift_recorded,
        drift_events,
        rss_after_cold,
        memory,
        baseline: (baseline_start, op_start.apiserver.clone()),
        knock_on,
        signed,
        phases,
        log: log.lines().collect(),
        status,
        stopped,
        rotation,
        one_pod,
        one_pod_runs,
        churned,
    };
    report.print();
    progress(&format!(
        "done in {:.0}s (operator log: {}; COUNTERSIGN_KEEP_CLUSTER=1 keeps it)",
        started.elapsed().as_secs_f64(),
        log_path.display()
    ));
    drop(cluster);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Preparation: CRDs, images, signatures, workloads.

/// A pushed, signed image.
struct Image {
    /// `host/bench/app-N@sha256:…`: what the pods run.
    pinned: String,
}

/// Pushes `args.digests` one-layer images and signs them with `key`: even ones as bundle
/// referrers (cosign v3's default), odd ones as `.sig` tags (cosign v2's format).
async fn prepare_images(host: &str, args: &Args, key: &SigningKey) -> Result<Vec<Image>> {
    let client = RegistryClient::new(RegistryOptions::default());
    let per_repo = args.per_repo.max(1);
    stream::iter(0..args.digests)
        .map(|i| {
            let client = &client;
            async move {
                let tagged =
                    ImageRef::parse(&format!("{host}/bench/app-{}:v{}", i / per_repo, i % per_repo))?;
                let digest = push_image(client, &tagged, i).await?;
                let image = tagged.at_digest(&digest);
                let request = SignRequest {
                    image: &image,
                    key,
                    annotations: BTreeMap::new(),
                    signature_repository: None,
                };
                if i >= args.digests - args.unsigned {
                    // left unsigned
                } else if i % 2 == 0 {
                    sign_bundle(client, &request).await?;
                } else {
                    sign_legacy(client, &request).await?;
                }
                anyhow::Ok((
                    i,
                    Image {
                        pinned: image.to_string(),
                    },
                ))
            }
        })
        .buffer_unordered(PREPARE_CONCURRENCY)
        .try_collect::<BTreeMap<usize, Image>>()
        .await
        .map(|m| m.into_values().collect())
}

/// One image of one uncompressed layer (a tar holding one small file unique to `i`), pushed in
/// process: a few requests instead of a `crane` process per image.
async fn push_image(client: &RegistryClient, tagged: &ImageRef, i: usize) -> Result<Digest> {
    let layer = tar_of_one_file("app", format!("countersign bench image {i}\n").as_bytes());
    let layer_digest = client.push_blob(tagged, &layer).await?;
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/app"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest.to_string()]},
    }))?;
    let config_digest = client.push_blob(tagged, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest.to_string(),
            "size": layer.len(),
        }],
    }))?;
    Ok(client.push_manifest(tagged, &manifest, OCI_MANIFEST).await?)
}

/// A ustar archive of one regular file.
fn tar_of_one_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut put = |offset: usize, field: &[u8]| header[offset..offset + field.len()].copy_from_slice(field);
    put(0, name.as_bytes());
    put(100, b"0000755\0");
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{:011o}\0", content.len()).as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, b"0");
    put(257, b"ustar\0");
    put(263, b"00");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut tar = header.to_vec();
    tar.extend_from_slice(content);
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

/// One Deployment per image, `pods` replicas in all, `per_namespace` Deployments per namespace,
/// each pinned to a fake node in turn (`nodeName` in its pod template). Pinned, because the
/// scheduler was the control plane's largest CPU consumer while the pods came up (its default
/// spreading looks at the pods already placed, so each pod costs more as the cluster fills):
/// in a 150,000-pod run it held pod creation to about 1,000 a minute on these 2 cores. The operator
/// reads no scheduling, so what it is measured on is the same.
async fn create_workloads(client: &Client, images: &[Image], args: &Args, nodes: &[String]) -> Result<usize> {
    let n = images.len();
    let per_namespace = args.per_namespace.max(1);
    for ns in 0..n.div_ceil(per_namespace) {
        create_namespace(client, &format!("bench-{ns}")).await?;
    }
    stream::iter(images.iter().enumerate())
        .map(|(i, image)| async move {
            // The first `pods % n` Deployments get one replica more.
            let replicas = args.pods / n + usize::from(i < args.pods % n);
            let name = format!("app-{i}");
            let deployment: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {BENCH_LABEL: "1"}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "nodeName": nodes[i % nodes.len()],
                            "containers": [{"name": "app", "image": image.pinned}],
                            "terminationGracePeriodSeconds": 0,
                        },
                    },
                },
            }))?;
            Api::<Deployment>::namespaced(client.clone(), &format!("bench-{}", i / per_namespace))
                .create(&PostParams::default(), &deployment)
                .await
                .with_context(|| format!("create Deployment {name}"))?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .try_collect::<()>()
        .await?;
    Ok(n)
}

/// Waits until `pods` pods are Running (kwok sets the phase and the `imageID` in one step).
async fn wait_pods_running(client: &Client, pods: usize) -> Result<()> {
    let api: Api<Pod> = Api::all(client.clone());
    let running = ListParams::default().fields("status.phase=Running");
    // kwok runs a few dozen pods a second on a busy 2-core machine, fewer as etcd grows (100,000
    // took 40 min): 15 min, and 40 ms per pod more.
    let limit = Duration::from_secs(900) + Duration::from_millis(40) * u32::try_from(pods)?;
    let deadline = Instant::now() + limit;
    let mut last = 0;
    loop {
        let n = api.list_metadata(&running).await?.items.len();
        if n >= pods {
            return Ok(());
        }
        if n / 1000 != last / 1000 {
            progress(&format!("{n} pods Running"));
        }
        last = n;
        ensure!(
            Instant::now() < deadline,
            "only {n} of {pods} pods Running after {limit:?}"
        );
        // Each look lists every Running pod: less often for large clusters, to leave the API
        // server to kwok.
        tokio::time::sleep(Duration::from_secs(2 + pods as u64 / 5000)).await;
    }
}

/// The TrustRoot governing every benchmark image, with `keys` (threshold 1).
async fn apply_trust_root(
    client: &Client,
    glob: &str,
    keys: &[(&str, &SigningKey)],
    interval: u64,
) -> Result<()> {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(name, key)| json!({"name": name, "publicKey": key.public_key().to_pem()}))
        .collect();
    let object = json!({
        "apiVersion": "countersign.dev/v1alpha1",
        "kind": "TrustRoot",
        "metadata": {"name": TRUST_ROOT},
        "spec": {
            "images": [glob],
            "keys": keys,
            "threshold": 1,
            "reverifyInterval": format!("{interval}s"),
        },
    });
    Api::<TrustRoot>::all(client.clone())
        .patch(
            TRUST_ROOT,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .context("apply the TrustRoot")?;
    Ok(())
}

async fn get_trust_root(client: &Client) -> Result<TrustRoot> {
    Ok(Api::<TrustRoot>::all(client.clone()).get(TRUST_ROOT).await?)
}

/// The TrustRoot's `status.lastSweep`.
async fn last_sweep(client: &Client, own: &mut OwnRequests) -> Result<Sweep> {
    own.count(1);
    let root = get_trust_root(client).await?;
    let sweep = root
        .status
        .and_then(|s| s.last_sweep)
        .context("the TrustRoot has no status.lastSweep")?;
    Ok(Sweep {
        digests: i64::from(sweep.digests),
        duration_ms: sweep.duration_ms,
    })
}

#[derive(Debug, Clone, Copy)]
struct Sweep {
    digests: i64,
    duration_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// Watching the verdicts.

#[derive(Debug, Default, Clone, Copy)]
struct Verdicts {
    deployments: usize,
    verified: usize,
    failed: usize,
    unsigned: usize,
    other: usize,
    unrecorded: usize,
}

/// The recorded verdicts of the benchmark Deployments, from two watches (one long request
/// each instead of polling thousands of objects): the Deployments' metadata, and the
/// WorkloadVerdicts by their workload's uid.
fn watch_verdicts(client: Client) -> watch::Receiver<Verdicts> {
    let (tx, rx) = watch::channel(Verdicts::default());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deployments: Api<PartialObjectMeta<Deployment>> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("{BENCH_LABEL}=1"));
    let (s, t) = (seen.clone(), tx.clone());
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher::watcher(deployments, config).default_backoff());
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let mut seen = s.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    seen.deployments.insert(o.metadata.uid.unwrap_or_default());
                }
                watcher::Event::Delete(o) => {
                    seen.deployments.remove(&o.metadata.uid.unwrap_or_default());
                }
                watcher::Event::Init => seen.deployments.clear(),
                watcher::Event::InitDone => {}
            }
            let _ = t.send(seen.counts());
        }
    });
    let records: Api<WorkloadVerdict> = Api::all(client);
    tokio::spawn(async move {
        let mut events =
            std::pin::pin!(watcher::watcher(records, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
            match event {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    seen.verdicts.insert(o.spec.workload.uid, o.spec.verdict);
                }
                watcher::Event::Delete(o) => {
                    seen.verdicts.remove(&o.spec.workload.uid);
                }
                watcher::Event::Init => seen.verdicts.clear(),
                watcher::Event::InitDone => {}
            }
            let _ = tx.send(seen.counts());
        }
    });
    rx
}

/// What the two watches of [`watch_verdicts`] have seen.
#[derive(Default)]
struct Seen {
    /// Benchmark Deployments by uid.
    deployments: HashSet<String>,
    /// Verdicts by their workload's uid.
    verdicts: HashMap<String, String>,
}

impl Seen {
    fn counts(&self) -> Verdicts {
        let mut counts = Verdicts {
            deployments: self.deployments.len(),
            ..Verdicts::default()
        };
        for uid in &self.deployments {
            match self.verdicts.get(uid).map(String::as_str) {
                Some("Verified") => counts.verified += 1,
                Some("Failed") => counts.failed += 1,
                Some("Unsigned") => counts.unsigned += 1,
                Some(_) => counts.other += 1,
                None => counts.unrecorded += 1,
            }
        }
        counts
    }
}

// ---------------------------------------------------------------------------------------------
// The operator process.

struct Cold {
    leading: Duration,
    first_sweep: Duration,
    all_verified: Duration,
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

// ---------------------------------------------------------------------------------------------
// Metrics: the operator's, and the API server's.

/// Everything read at a phase boundary.
struct Snapshot {
    log_lines: usize,
    operator: HashMap<String, f64>,
    apiserver: ApiServer,
}

impl Snapshot {
    fn sweeps(&self) -> f64 {
        value(&self.operator, "countersign_sweep_duration_seconds_count")
    }
}

async fn snapshot(
    registry: &Registry,
    client: &Client,
    metrics: &str,
    own: &mut OwnRequests,
    operator_running: bool,
) -> Result<Snapshot> {
    // The registry log first: it is what the window boundaries must be exact for.
    let log_lines = registry.log().lines().count();
    let operator = if operator_running {
        scrape_metrics(metrics).await?
    } else {
        HashMap::new()
    };
    let apiserver = ApiServer::scrape(client, own).await?;
    Ok(Snapshot {
        log_lines,
        operator,
        apiserver,
    })
}

/// What happened between two snapshots.
struct Phase {
    name: String,
    log: (usize, usize),
    /// `countersign_registry_requests_total` deltas by `operation/outcome`.
    client_requests: BTreeMap<String, f64>,
    apiserver: BTreeMap<String, f64>,
    apiserver_own: u64,
    apiserver_seconds: f64,
    /// Sweeps the operator finished in the window.
    sweeps: f64,
}

impl Phase {
    fn new(name: &str, from: &Snapshot, to: &Snapshot) -> Self {
        let mut client_requests = BTreeMap::new();
        for (series, v) in &to.operator {
            let Some(labels) = series.strip_prefix("countersign_registry_requests_total{") else {
                continue;
            };
            let delta = v - from.operator.get(series).copied().unwrap_or(0.0);
            if delta > 0.0 {
                let label = |name: &str| prometheus_label(labels, name);
                client_requests.insert(format!("{} {}", label("operation"), label("outcome")), delta);
            }
        }
        let apiserver = to
            .apiserver
            .by_kind
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v - from.apiserver.by_kind.get(k).copied().unwrap_or(0.0),
                )
            })
            .filter(|(_, v)| *v > 0.0)
            .collect();
        Self {
            name: name.to_string(),
            log: (from.log_lines, to.log_lines),
            client_requests,
            apiserver,
            apiserver_own: to.apiserver.own - from.apiserver.own,
            apiserver_seconds: (to.apiserver.at - from.apiserver.at).as_secs_f64(),
            sweeps: to.sweeps() - from.sweeps(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The registry's log.

/// What one line of go-containerregistry's log was (`2025/01/02 15:04:05 GET /v2/… [status code
/// message]`; the status appears only on errors): `METHOD kind`, `→ status` when it failed.
/// `None` for lines that are not requests.
fn classify(line: &str) -> Option<(String, Option<String>)> {
    let mut parts = line.split_whitespace();
    let (_date, _time, method, url) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if !matches!(method, "GET" | "HEAD" | "PUT" | "POST" | "PATCH" | "DELETE") {
        return None;
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()));
    let path = url.split('?').next()?;
    let mut digest = None;
    let kind = if path == "/v2/" || path == "/v2" {
        "/v2/ (ping)"
    } else if let Some((_, reference)) = path.rsplit_once("/manifests/") {
        if let Some(hex) = reference.strip_prefix("sha256-") {
            digest = Some(hex.trim_end_matches(".sig").to_string());
            if reference.ends_with(".sig") {
                "manifest, .sig tag"
            } else {
                "manifest, referrers fallback tag"
            }
        } else if reference.starts_with("sha256:") {
            "manifest, by digest"
        } else {
            "manifest, by tag"
        }
    } else if let Some((_, subject)) = path.rsplit_once("/referrers/") {
        digest = Some(subject.trim_start_matches("sha256:").to_string());
        "referrers"
    } else if path.contains("/blobs/uploads") {
        "blob upload"
    } else if path.contains("/blobs/") {
        "blob"
    } else {
        "other"
    };
    let status = status.map_or_else(String::new, |s| format!(" → {s}"));
    Some((format!("{method} {kind}{status}"), digest))
}

/// Requests by kind in `lines`, and the most any one subject digest got (pings and blobs
/// name no subject).
fn count_requests(lines: &[&str]) -> (BTreeMap<String, usize>, usize, usize) {
    let mut kinds = BTreeMap::new();
    let mut per_digest: HashMap<String, usize> = HashMap::new();
    for line in lines {
        if let Some((kind, digest)) = classify(line) {
            *kinds.entry(kind).or_insert(0) += 1;
            if let Some(d) = digest {
                *per_digest.entry(d).or_insert(0) += 1;
            }
        }
    }
    let max = per_digest.values().copied().max().unwrap_or(0);
    (kinds, per_digest.len(), max)
}

// ---------------------------------------------------------------------------------------------
// The report.

struct Report<'a> {
    args: &'a Args,
    host: &'a str,
    nodes: usize,
    deployments: usize,
    prepare_time: Duration,
    cold: Cold,
    cold_sweep: Sweep,
    warm: Vec<Sweep>,
    drift_recorded: Duration,
    drift_events: Duration,
    rss_after_cold: Memory,
    memory: Memory,
    baseline: (ApiServer, ApiServer),
    phases: Vec<Phase>,
    knock_on: Phase,
    signed: usize,
    log: Vec<&'a str>,
    status: Option<countersign::crd::TrustRootStatus>,
    stopped: String,
    rotation: Option<rotation::Rotation>,
    one_pod: churn::OnePod,
    /// CPU per pass of every one-pod run, sorted.
    one_pod_runs: Vec<Duration>,
    churned: Option<churn::Churn>,
}

impl Report<'_> {
    fn print(&self) {
        let a = self.args;
        let n = self.deployments as f64;
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "## Operator: {} pods over {} digests ({} Deployments in {} namespaces, {} fake node(s))\n",
            a.pods,
            a.digests,
            self.deployments,
            self.deployments.div_ceil(a.per_namespace.max(1)),
            self.nodes
        );
        println!(
            "Registry {} (go-containerregistry, referrers API); {} images signed, half as bundle \
             referrers, half as `.sig` tags, {} unsigned; TrustRoot `reverifyInterval: {}s`; \
             operator flags: {}. Prepared (push + sign) in {:.1}s.\n",
            self.host,
            self.signed,
            a.unsigned,
            a.interval,
            if a.operator_args.is_empty() {
                "defaults".to_string()
            } else {
                format!("`{}`", a.operator_args.join(" "))
            },
            self.prepare_time.as_secs_f64()
        );
        println!("| measure | value |\n|---|---|");
        println!(
            "| cold sweep: operator start → all {} Deployments recorded ({}) | **{:.2} s** |",
            self.deployments,
            if a.unsigned == 0 {
                "Verified".to_string()
            } else {
                format!("{} Verified, {} Unsigned", self.signed, a.unsigned)
            },
            self.cold.all_verified.as_secs_f64()
        );
        println!(
            "| ↳ operator start → leading (caches synced, Lease taken) | {:.2} s |",
            self.cold.leading.as_secs_f64()
        );
        println!(
            "| ↳ first sweep, `status.lastSweep.durationMs` ({} digests) | {} ms |",
            self.cold_sweep.digests, self.cold_sweep.duration_ms
        );
        println!(
            "| ↳ operator start → first sweep seen finished (`/metrics`) | {:.2} s |",
            self.cold.first_sweep.as_secs_f64()
        );
        let warm: Vec<String> = self
            .warm
            .iter()
            .map(|s| format!("{} ms", s.duration_ms))
            .collect();
        println!(
            "| warm re-verification sweep, `status.lastSweep.durationMs` (each) | **{}** |",
            warm.join(", ")
        );
        println!(
            "| key removed from the TrustRoot → all {} signed Deployments recorded Failed | **{:.2} s** |",
            self.signed,
            self.drift_recorded.as_secs_f64()
        );
        println!(
            "| key removed → {} `SignatureDrift` events emitted | {:.2} s |",
            self.signed,
            self.drift_events.as_secs_f64()
        );
        let requests = |p: &Phase| {
            let (kinds, _, _) = count_requests(&self.log[p.log.0..p.log.1]);
            kinds.values().sum::<usize>()
        };
        let cold = self.phases.iter().find(|p| p.name == "cold");
        let warm: Vec<&Phase> = self
            .phases
            .iter()
            .filter(|p| p.name.starts_with("warm"))
            .collect();
        let drift = self.phases.iter().find(|p| p.name == "drift");
        if let Some(p) = cold {
            println!(
                "| registry requests per digest, cold (all kinds) | **{:.2}** ({} requests) |",
                requests(p) as f64 / n,
                requests(p)
            );
        }
        if !warm.is_empty() {
            let each: Vec<String> = warm
                .iter()
                .map(|p| format!("{:.2}", requests(p) as f64 / n))
                .collect();
            println!(
                "| registry requests per digest, per warm sweep (all kinds) | **{}** |",
                each.join(", ")
            );
        }
        if let Some(p) = drift {
            println!(
                "| registry requests while reacting to the key removal | {} |",
                requests(p)
            );
        }
        if let (Some(r), Some(p)) = (&self.rotation, self.phases.iter().find(|p| p.name == "rotation")) {
            println!(
                "| rotation: `countersign rotation resign` of all {} digests | **{:.2} s** ({:.0} digests/s) |",
                self.signed,
                r.resign.as_secs_f64(),
                self.signed as f64 / r.resign.as_secs_f64().max(0.001)
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
                requests(p)
            );
            println!(
                "| rotation: most Deployments ever recorded other than Verified | **{}** |",
                r.worst_not_verified
            );
            println!("| rotation: resign's summary | {} |", r.summary);
        }
        println!(
            "| operator peak RSS (`VmHWM`): after the cold sweep / at the end | **{:.1} MiB** / **{:.1} MiB** |",
            mib(self.rss_after_cold.peak_kib),
            mib(self.memory.peak_kib)
        );
        println!(
            "| operator RSS (`VmRSS`) at the end | {:.1} MiB |",
            mib(self.memory.rss_kib)
        );
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| one pod deleted and replaced, {} times → the median run's passes (of them over every workload; workloads they assessed); CPU (whole process, the benchmark's polling of `/metrics` taken off) and wall per pass; every run's CPU per pass | {} ({}; {}); **{:.1} ms** CPU ({:.1} ms with the polling), {:.1} ms wall; {} ms |",
            self.one_pod_runs.len(),
            self.one_pod.passes,
            self.one_pod.full,
            self.one_pod.workloads,
            ms(self.one_pod.cpu_per_pass),
            ms(self.one_pod.raw_cpu_per_pass),
            ms(self.one_pod.wall_per_pass),
            millis(&self.one_pod_runs)
        );
        if let Some(c) = &self.churned {
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
        println!("| operator stop | {} |", self.stopped);
        if let Some(w) = self.status.as_ref().and_then(|s| s.workloads.as_ref()) {
            println!(
                "| TrustRoot `status.workloads` at the end | total {}, verified {}, failed {}, unsigned {}, stale {} |",
                w.total, w.verified, w.failed, w.unsigned, w.stale
            );
        }
        self.print_registry_kinds(cold, &warm, drift);
        self.print_client_requests();
        self.print_apiserver();
    }

    fn print_registry_kinds(&self, cold: Option<&Phase>, warm: &[&Phase], drift: Option<&Phase>) {
        let n = self.deployments as f64;
        // name, requests by kind, subject digests, most requests naming one digest, sweeps
        type Column = (String, BTreeMap<String, usize>, usize, usize, f64);
        let mut columns: Vec<Column> = Vec::new();
        for p in cold.into_iter().chain(warm.iter().copied()).chain(drift) {
            let (kinds, digests, max) = count_requests(&self.log[p.log.0..p.log.1]);
            columns.push((p.name.clone(), kinds, digests, max, p.sweeps));
        }
        let mut kinds: Vec<&String> = columns.iter().flat_map(|c| c.1.keys()).collect();
        kinds.sort();
        kinds.dedup();
        println!("\n### Registry requests, from the registry's log (count, and per distinct digest)\n");
        let header: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
        println!("| request | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(columns.len()));
        for kind in kinds {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| match c.1.get(kind) {
                    Some(&k) => format!("{k} ({:.2})", k as f64 / n),
                    None => "0".into(),
                })
                .collect();
            println!("| {kind} | {} |", cells.join(" | "));
        }
        let totals: Vec<String> = columns
            .iter()
            .map(|c| {
                let t: usize = c.1.values().sum();
                format!("**{t} ({:.2})**", t as f64 / n)
            })
            .collect();
        println!("| **all** | {} |", totals.join(" | "));
        let subjects: Vec<String> = columns.iter().map(|c| format!("{} / {}", c.2, c.3)).collect();
        println!(
            "| subject digests asked about / most requests naming one digest | {} |",
            subjects.join(" | ")
        );
        let sweeps: Vec<String> = columns.iter().map(|c| format!("{}", c.4)).collect();
        println!(
            "| sweeps the operator finished in the window | {} |",
            sweeps.join(" | ")
        );
    }

    fn print_client_requests(&self) {
        let mut ops: Vec<&String> = self
            .phases
            .iter()
            .flat_map(|p| p.client_requests.keys())
            .collect();
        ops.sort();
        ops.dedup();
        if ops.is_empty() {
            return;
        }
        println!(
            "\n### The operator's own count: `countersign_registry_requests_total` (operation, outcome)\n"
        );
        let header: Vec<&str> = self.phases.iter().map(|p| p.name.as_str()).collect();
        println!("| operation outcome | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(self.phases.len()));
        for op in ops {
            let cells: Vec<String> = self
                .phases
                .iter()
                .map(|p| format!("{}", p.client_requests.get(op).copied().unwrap_or(0.0)))
                .collect();
            println!("| {op} | {} |", cells.join(" | "));
        }
    }

    fn print_apiserver(&self) {
        let (b0, b1) = &self.baseline;
        let base_seconds = (b1.at - b0.at).as_secs_f64();
        let base_rate = (b1.total() - b0.total() - (b1.own - b0.own) as f64) / base_seconds;
        println!(
            "\n### API server requests (`apiserver_request_total`, whole cluster, minus this benchmark's own)\n"
        );
        println!("| window | seconds | requests | per second | above the baseline | biggest contributors |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| baseline, before the operator | {base_seconds:.1} | {:.0} | {base_rate:.1} | | |",
            b1.total() - b0.total() - (b1.own - b0.own) as f64
        );
        for p in self.phases.iter().chain([&self.knock_on]) {
            let total: f64 = p.apiserver.values().sum::<f64>() - p.apiserver_own as f64;
            let rate = total / p.apiserver_seconds;
            let mut top: Vec<(&String, &f64)> = p.apiserver.iter().collect();
            top.sort_by(|a, b| b.1.total_cmp(a.1));
            let top: Vec<String> = top.iter().take(4).map(|(k, v)| format!("{k} {v:.0}")).collect();
            println!(
                "| {} | {:.1} | {total:.0} | {rate:.1} | {:+.1}/s | {} |",
                p.name,
                p.apiserver_seconds,
                rate - base_rate,
                top.join(", ")
            );
        }
    }
}

/// `4.1 / 5.0 / 7.3`: durations in milliseconds, one decimal.
fn millis(all: &[Duration]) -> String {
    let each: Vec<String> = all
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1e3))
        .collect();
    each.join(" / ")
}
