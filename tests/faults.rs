//! The fault campaign, on the real control plane (etcd, kube-apiserver, controller-manager,
//! scheduler, kwok), a real registry and the real cosign. Each test breaks one thing while the
//! operator runs and asserts, for every workload:
//!
//! - **no false verdict**, in any version of its annotations the API server stored (a watch
//!   records them all, so a wrong verdict shown for a moment is caught): a validly signed image is
//!   never Unsigned or Failed, an unsigned one never Verified (Unknown claims nothing);
//! - **each Event once**: the Events published equal, reason by reason, those that the
//!   transitions the watch recorded call for (none missing, none twice);
//! - **status and annotations agree** afterwards (the TrustRoot's counts);
//! - and prints the **time to recover** as `fault=<name> recovered_in_ms=<n>` (`e2e/faults.sh`
//!   gathers these lines into a table).
//!
//! Registry outages (a stopped registry) are in `operator_stale.rs`; leader election's own
//! properties in `operator_leader.rs`.

mod common;
#[path = "faults_fixture.rs"]
mod fixture;
#[path = "operator_common.rs"]
mod operator_common;

use std::time::{Duration, Instant};

use countersign_tests::{
    cluster::{ClusterOptions, LocalCluster, Signal},
    faults::{Fault, FaultProxy},
    http::http_get,
    partition::Partition,
    registry::{Registry, RegistryKind},
};
use fixture::*;
use operator_common::*;
use serde_json::json;

const NS: &str = "faults";
const ROOT: &str = "faults";
/// Deadlines for what normally takes seconds: generous, so only a real failure reaches them.
const WAIT: Duration = Duration::from_secs(90);
/// The in-process operator's lease: longer than an API server restart on a busy machine, so
/// the leader keeps leading across it (a shorter one would end the process, as designed, and a
/// Deployment would start it again: that path is the leader tests').
const LONG_LEASE: Duration = Duration::from_secs(120);

/// Images of each kind (`COUNTERSIGN_FAULTS_IMAGES`, default 2; `e2e/faults.sh` sets more).
fn images_per_kind() -> usize {
    scale("COUNTERSIGN_FAULTS_IMAGES", 2)
}

fn scale(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A cluster with the CRDs, a registry with the images, the TrustRoot accepting key `a`, and
/// the namespace. `apiserver_args` go to kube-apiserver.
async fn setup(apiserver_args: &[&str], n: usize) -> (LocalCluster, Registry, Images) {
    init_logging();
    let options = ClusterOptions {
        apiserver_args: apiserver_args.iter().map(|a| a.to_string()).collect(),
        ..ClusterOptions::default()
    };
    let cluster = LocalCluster::start_with(options)
        .await
        .expect("start the control plane");
    let client = cluster.client();
    install_crds(&client, countersign::crd::all()).await;
    namespace(&client, LEASE_NAMESPACE, json!({})).await;
    namespace(&client, NS, json!({})).await;
    let registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let images = blocking(move || Images::push(&host, n)).await;
    (cluster, registry, images)
}

/// One Deployment per image: `a-*` Verified, `b-*` Failed (signed by a key not accepted),
/// `unsigned-*` Unsigned, all reached at `host`.
fn workloads(images: &Images, host: &str) -> Vec<Workload> {
    let w = |list: &[String], truth, unsigned| {
        list.iter()
            .map(move |image| {
                let name = image.split('@').next().unwrap().trim_start_matches("faults/");
                Workload::new(name, format!("{host}/{image}"), truth, unsigned)
            })
            .collect::<Vec<_>>()
    };
    let mut all = w(&images.by_a, Truth::Signed, false);
    all.extend(w(&images.by_b, Truth::NotSigned, false));
    all.extend(w(&images.unsigned, Truth::NotSigned, true));
    all
}

async fn deploy(client: &kube::Client, workloads: &[Workload]) {
    for w in workloads {
        deployment(client, NS, &w.name, &w.image, None).await;
    }
}

fn long_lease(identity: &str) -> countersign::operator::Config {
    let mut c = config(identity, None);
    c.lease.lease_duration = LONG_LEASE;
    c
}

/// The operator's `countersign_watch_lists_total`, summed over resources.
async fn watch_lists(metrics: std::net::SocketAddr) -> f64 {
    let (_, body) = http_get(metrics, "/metrics").await.expect("GET /metrics");
    body.lines()
        .filter(|l| l.starts_with("countersign_watch_lists_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// kube-apiserver restarted (SIGTERM, as a rolling update does), then etcd killed (SIGKILL)
/// and started again, under a running operator: verdicts stay true throughout, new workloads
/// made after each restart get theirs, each Event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apiserver_and_etcd_restarts_change_no_verdict() {
    let (mut cluster, registry, images) = setup(&[], images_per_kind()).await;
    let client = cluster.client();
    let host = registry.host.clone();
    let all = workloads(&images, &host);
    trust_root(
        &client,
        ROOT,
        root_spec(&host, json!([key("a", &images.a.public)])),
    )
    .await
    .expect("TrustRoot");
    let history = History::start(&client, DEPLOYMENT, NS).await;
    let (first, later) = all.split_at(all.len() - 2);
    let (first, later) = (first.to_vec(), later.to_vec());
    deploy(&client, &first).await;
    let operator = Operator::start_config(&cluster, long_lease("restarts"));
    wait_all_correct(&client, DEPLOYMENT, NS, &first, WAIT).await;

    for (component, signal, fault, new) in [
        ("kube-apiserver", Signal::SIGTERM, "apiserver-restart", &later[0]),
        ("etcd", Signal::SIGKILL, "etcd-restart", &later[1]),
    ] {
        let started = Instant::now();
        let away = cluster
            .restart_component(component, signal)
            .await
            .unwrap_or_else(|e| panic!("restart {component}: {e:#}"));
        // Something new to verify, so recovery means the watches are live again, not only that
        // nothing was lost.
        let client = cluster.client();
        eventually("the API server to take writes", WAIT, || async {
            deployment_if_absent(&client, new).await
        })
        .await;
        let shown = &all[..all.iter().position(|w| w.name == new.name).unwrap() + 1];
        wait_all_correct(&client, DEPLOYMENT, NS, shown, WAIT).await;
        let recovered = started.elapsed();
        report(fault, recovered, &format!("away_ms={}", away.as_millis()));
        let falses = history.false_verdicts(&all);
        assert!(falses.is_empty(), "after {fault}: false verdicts {falses:?}");
    }
    assert_invariants(&client, &history, DEPLOYMENT, NS, ROOT, &all).await;
    operator.stop().await;
    drop(history);
}

/// Creates the Deployment of `w` unless it exists (a create retried after an error that hid
/// its success must not fail).
async fn deployment_if_absent(client: &kube::Client, w: &Workload) -> anyhow::Result<()> {
    let api = dynamic(client, "apps/v1", "Deployment", Some(NS));
    if api.get_opt(&w.name).await?.is_none() {
        let pods = pod_annotations(&w.image, None);
        let object = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": w.name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": w.name}},
                "template": {
                    "metadata": {"labels": {"app": w.name}, "annotations": pods},
                    "spec": {"containers": [{"name": "app", "image": w.image}]},
                },
            },
        });
        let object = serde_json::from_value(object)?;
        api.create(&Default::default(), &object).await?;
    }
    Ok(())
}

/// The operator's connection to the API server is cut (a partition: its watches end, its
/// reconnections hang). Meanwhile workloads are deleted and created, the TrustRoot accepts a
/// second key, and kube-apiserver restarts, so its watch cache starts after the operator's last
/// resourceVersion (and etcd compacts every 10 s): the resumed watches get 410 Gone and list
/// again. Afterwards every verdict is true and complete: nothing deleted keeps a verdict
/// written, nothing created lacks one, and the key added counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watch_that_must_relist_misses_nothing() {
    let (mut cluster, registry, images) = setup(&["--etcd-compaction-interval=10s"], images_per_kind()).await;
    let client = cluster.client();
    let host = registry.host.clone();
    let mut all = workloads(&images, &host);
    trust_root(
        &client,
        ROOT,
        root_spec(&host, json!([key("a", &images.a.public)])),
    )
    .await
    .expect("TrustRoot");
    let history = History::start(&client, DEPLOYMENT, NS).await;
    let added = all.split_off(all.len() - 2);
    let removed = all.remove(0);
    deploy(&client, &all).await;
    deploy(&client, std::slice::from_ref(&removed)).await;

    let apiserver = cluster.apiserver_url().trim_start_matches("https://").to_string();
    let partition = Partition::start(&apiserver);
    let mut config = cluster.config();
    config.cluster_url = format!("https://{}", partition.addr).parse().expect("URL");
    let client_through = kube::Client::try_from(config).expect("client");
    let operator_config = long_lease("relist");
    let listeners = countersign::operator::Listeners::bind(&operator_config)
        .await
        .expect("bind");
    let metrics = listeners.metrics.local_addr().expect("metrics address");
    let operator = countersign_tests::InProcess::start_on(client_through, operator_config, listeners);
    let mut before_cut = all.clone();
    before_cut.push(removed.clone());
    wait_all_correct(&client, DEPLOYMENT, NS, &before_cut, WAIT).await;
    let lists_before = watch_lists(metrics).await;

    partition.cut();
    dynamic(&client, "apps/v1", "Deployment", Some(NS))
        .delete(&removed.name, &Default::default())
        .await
        .expect("delete");
    deploy(&client, &added).await;
    let both = json!([key("a", &images.a.public), key("b", &images.b.public)]);
    trust_root(&client, ROOT, root_spec(&host, both))
        .await
        .expect("TrustRoot a+b");
    let away = cluster
        .restart_component("kube-apiserver", Signal::SIGTERM)
        .await
        .expect("restart kube-apiserver");
    let healed = Instant::now();
    partition.heal();

    all.extend(added);
    // Key b is accepted now: b-* are Verified.
    let all: Vec<Workload> = all
        .into_iter()
        .map(|mut w| {
            if w.name.starts_with("b-") {
                w.truth = Truth::Signed;
            }
            w
        })
        .collect();
    let client = cluster.client();
    wait_all_correct(&client, DEPLOYMENT, NS, &all, WAIT).await;
    let recovered = healed.elapsed();
    let relists = watch_lists(metrics).await - lists_before;
    report(
        "watch-relist",
        recovered,
        &format!("away_ms={} relists={relists}", away.as_millis()),
    );
    assert!(
        relists >= 1.0,
        "the operator's watches listed again after the cut"
    );
    // The b-* went Failed → Verified (a real transition); the others never changed.
    let steady: Vec<Workload> = all
        .iter()
        .filter(|w| !w.name.starts_with("b-"))
        .cloned()
        .collect();
    let falses = history.false_verdicts(&steady);
    assert!(falses.is_empty(), "false verdicts {falses:?}");
    assert_invariants(&client, &history, DEPLOYMENT, NS, ROOT, &steady).await;
    let events = event_counts(&client, NS, "Deployment").await.expect("events");
    for w in all.iter().filter(|w| w.name.starts_with("b-")) {
        let expected = [("SignatureVerified", 1), ("VerificationFailed", 1)];
        let expected = expected.into_iter().map(|(r, n)| (r.to_string(), n)).collect();
        assert_eq!(events.get(&w.name), Some(&expected), "events of {}", w.name);
    }
    operator.stop().await;
    drop(history);
}

/// The registry misbehaves behind a proxy while the operator sweeps every 10 s: connections
/// that hang (a partition), then a storm of 429s with `Retry-After: 20`; and one image's
/// registry host never resolves (DNS). Verdicts are kept and marked stale, never turned into
/// Unsigned or Failed; the image that was never verified stays Unknown; the storm is asked at
/// most once per Retry-After; each fault lifted, the marks clear within a sweep or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_partition_dns_failure_and_429_storm_are_stale_never_false() {
    const RETRY_AFTER: u64 = 20;
    let (cluster, registry, images) = setup(&[], 1).await;
    let client = cluster.client();
    let proxy = FaultProxy::start(&registry.host);
    let host = proxy.host.clone();
    let all = workloads(&images, &host);
    let mut spec = root_spec(&host, json!([key("a", &images.a.public)]));
    spec["images"]
        .as_array_mut()
        .unwrap()
        .push(json!("registry.invalid/**"));
    trust_root(&client, ROOT, spec).await.expect("TrustRoot");
    let history = History::start(&client, DEPLOYMENT, NS).await;
    deploy(&client, &all).await;
    // Signed, but its registry's host does not resolve: never verifiable, never false.
    let dns = Workload::new(
        "dns",
        format!("registry.invalid/{}", images.by_a[0]),
        Truth::Signed,
        false,
    );
    deploy(&client, std::slice::from_ref(&dns)).await;
    let operator = Operator::start(&cluster, "registry-faults");
    wait_all_correct(&client, DEPLOYMENT, NS, &all, WAIT).await;
    let a = wait_verdict(&client, DEPLOYMENT, NS, "dns", "Unknown", WAIT).await;
    assert_eq!(a.get(STALE).map(String::as_str), Some("unreachable"), "{a:?}");

    for (fault, rule) in [
        ("registry-partition", Fault::Stall),
        (
            "registry-429-storm",
            Fault::TooManyRequests {
                retry_after_secs: RETRY_AFTER,
            },
        ),
    ] {
        let begun = Instant::now();
        proxy.rules.set("/v2/", rule);
        eventually(
            &format!("{fault}: every verdict kept and marked stale"),
            WAIT,
            || async {
                let now = fixture::current(&client, DEPLOYMENT, NS).await?;
                let fresh: Vec<&String> = all
                    .iter()
                    .filter(|w| !now.get(&w.name).is_some_and(|a| a.contains_key(STALE)))
                    .map(|w| &w.name)
                    .collect();
                anyhow::ensure!(fresh.is_empty(), "not stale yet: {fresh:?}");
                Ok(())
            },
        )
        .await;
        let falses = history.false_verdicts(&all);
        assert!(falses.is_empty(), "{fault}: false verdicts {falses:?}");
        if fault == "registry-429-storm" {
            // Let the storm last past one Retry-After, so a second round of requests is due.
            tokio::time::sleep_until((begun + Duration::from_secs(RETRY_AFTER + 5)).into()).await;
        }
        proxy.rules.clear();
        let lifted = Instant::now();
        wait_all_correct(&client, DEPLOYMENT, NS, &all, WAIT).await;
        let seen: Vec<_> = proxy
            .rules
            .seen()
            .into_iter()
            .filter(|s| s.at >= begun && s.at < lifted)
            .collect();
        report(
            fault,
            lifted.elapsed(),
            &format!("requests_during_fault={}", seen.len()),
        );
        if fault == "registry-429-storm" {
            assert_retry_after_honoured(&seen, Duration::from_secs(RETRY_AFTER));
        }
    }
    let a = fixture::current(&client, DEPLOYMENT, NS)
        .await
        .expect("the recorded verdict");
    assert_eq!(
        a["dns"].get(VERDICT).map(String::as_str),
        Some("Unknown"),
        "{:?}",
        a["dns"]
    );
    let mut with_dns = all.clone();
    with_dns.push(dns);
    assert_invariants(&client, &history, DEPLOYMENT, NS, ROOT, &with_dns).await;
    operator.stop().await;
    drop(history);
}

/// After a 429 that said `Retry-After: after`, the registry is not asked again before that
/// time has passed, whatever the digest (a second of slack on each side for requests already on
/// their way).
fn assert_retry_after_honoured(seen: &[countersign_tests::faults::Seen], after: Duration) {
    let slack = Duration::from_secs(1);
    let throttled: Vec<_> = seen.iter().filter(|s| s.faulted).collect();
    assert!(!throttled.is_empty(), "the storm answered nothing");
    for t in &throttled {
        let early: Vec<&str> = seen
            .iter()
            .filter(|s| s.at > t.at + slack && s.at + slack < t.at + after)
            .map(|s| s.request_line.as_str())
            .collect();
        assert!(
            early.is_empty(),
            "{} requests within Retry-After of a 429 ({}): {early:?}",
            early.len(),
            t.request_line
        );
    }
}

/// Two `countersign run` replicas; the TrustRoot starts governing 200 pods at once, and the
/// leader is killed with SIGKILL as soon as the first verdicts appear, in the middle of
/// writing them. The standby takes over once the Lease expires and finishes: every pod ends
/// with its true verdict and exactly one verdict Event (none lost with the leader, none
/// repeated by its successor).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_mid_write_is_replaced_without_losing_or_repeating_events() {
    // `e2e/faults.sh` runs it with more.
    let pods_n = scale("COUNTERSIGN_FAULTS_PODS", 200);
    let bin = tokio::task::spawn_blocking(countersign_tests::countersign_bin)
        .await
        .unwrap();
    let (cluster, registry, images) = setup(&[], 1).await;
    let client = cluster.client();
    let host = registry.host.clone();
    // Governs nothing yet.
    let nothing = json!({"images": [format!("{host}/none/**")], "keys": [key("a", &images.a.public)], "reverifyInterval": "10s"});
    trust_root(&client, ROOT, nothing).await.expect("TrustRoot");
    let pods: Vec<Workload> = (0..pods_n)
        .map(|i| match i % 2 {
            0 => Workload::new(
                format!("signed-{i}"),
                format!("{host}/{}", images.by_a[0]),
                Truth::Signed,
                false,
            ),
            _ => Workload::new(
                format!("unsigned-{i}"),
                format!("{host}/{}", images.unsigned[0]),
                Truth::NotSigned,
                true,
            ),
        })
        .collect();
    for w in &pods {
        pod(&client, NS, &w.name, &w.image, None).await;
    }
    let history = History::start(&client, POD, NS).await;
    let dir = countersign_tests::scratch_dir("faults-replicas");
    let extra = ["--lease-duration", "3s"];
    let kubeconfig = cluster.kubeconfig_path();
    let mut replicas = [
        countersign_tests::replica::Replica::start(
            &bin,
            kubeconfig,
            "replica-a",
            dir.path(),
            LEASE_NAMESPACE,
            &extra,
        ),
        countersign_tests::replica::Replica::start(
            &bin,
            kubeconfig,
            "replica-b",
            dir.path(),
            LEASE_NAMESPACE,
            &extra,
        ),
    ];
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let leader = eventually("a replica to lead", WAIT, || async {
        let lease = leases.get("countersign-controller").await?;
        let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        replicas
            .iter()
            .position(|r| r.identity == holder)
            .ok_or_else(|| anyhow::anyhow!("holder {holder:?}"))
    })
    .await;

    trust_root(
        &client,
        ROOT,
        root_spec(&host, json!([key("a", &images.a.public)])),
    )
    .await
    .expect("TrustRoot governing the pods");
    let annotated = || {
        history
            .states()
            .values()
            .filter(|s| s.last().is_some_and(|s| !s.verdict.is_empty()))
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while annotated() == 0 {
        assert!(
            Instant::now() < deadline,
            "no verdict written:\n{}",
            replicas[leader].log()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    replicas[leader].kill();
    let killed = Instant::now();
    let at_kill = annotated();
    assert!(
        at_kill < pods_n,
        "killed after every write ({at_kill}): not in the middle"
    );

    wait_all_correct(&client, POD, NS, &pods, WAIT).await;
    report(
        "leader-kill-9",
        killed.elapsed(),
        &format!("pods={pods_n} annotated_at_kill={at_kill}"),
    );
    let standby = 1 - leader;
    assert!(replicas[standby].is_running(), "{}", replicas[standby].log());
    assert_invariants(&client, &history, POD, NS, ROOT, &pods).await;
    // Each pod: exactly its one verdict Event.
    let events = event_counts(&client, NS, "Pod").await.expect("events");
    for w in &pods {
        let expected = [(w.first_event().to_string(), 1)].into_iter().collect();
        assert_eq!(events.get(&w.name), Some(&expected), "events of {}", w.name);
    }
    drop(history);
}

/// A Lease holder whose clock is an hour off (behind, then ahead) writes renewTime values an
/// hour in the past (in the future) while renewing on time. A countersign candidate never takes
/// the Lease while the renewals go on (it decides on its own monotonic clock, not on the
/// holder's timestamps), and takes it about one lease duration after they stop: never two
/// leaders, never a lease held by nobody for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skewed_clock_never_makes_two_leaders() {
    use countersign::operator::leader::{LeaseConfig, acquire};
    use k8s_openapi::api::coordination::v1::Lease;
    use std::sync::{Arc, Mutex};

    const LEASE: Duration = Duration::from_secs(3);
    const RENEW: Duration = Duration::from_millis(500);
    init_logging();
    let cluster = LocalCluster::start().await.expect("start the control plane");
    let client = cluster.client();
    namespace(&client, LEASE_NAMESPACE, json!({})).await;
    let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), LEASE_NAMESPACE);

    for (fault, skew_secs) in [("clock-skew-behind", -3600i64), ("clock-skew-ahead", 3600)] {
        let name = fault.to_string();
        let skewed = move || {
            let now = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(skew_secs);
            k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)
        };
        let lease: Lease = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"holderIdentity": "skewed", "leaseDurationSeconds": LEASE.as_secs(), "leaseTransitions": 0},
        }))
        .unwrap();
        let mut lease = leases
            .create(&Default::default(), &lease)
            .await
            .expect("create the lease");
        // The skewed holder: renews on time, with its own (wrong) clock.
        let renewals = Arc::new(Mutex::new((0usize, Instant::now())));
        let (api, count, lease_name) = (leases.clone(), renewals.clone(), name.clone());
        let holder = tokio::spawn(async move {
            loop {
                let spec = lease.spec.get_or_insert_with(Default::default);
                spec.renew_time = Some(skewed());
                spec.acquire_time.get_or_insert_with(skewed);
                match api.replace(&lease_name, &Default::default(), &lease).await {
                    Ok(renewed) => {
                        lease = renewed;
                        let mut c = count.lock().unwrap();
                        *c = (c.0 + 1, Instant::now());
                    }
                    Err(e) => panic!("the skewed holder could not renew: {e}"),
                }
                tokio::time::sleep(RENEW).await;
            }
        });
        let config = LeaseConfig {
            namespace: LEASE_NAMESPACE.into(),
            name: name.clone(),
            identity: "countersign".into(),
            lease_duration: LEASE,
            renew_every: RENEW,
        };
        let mut candidate = tokio::spawn(acquire(client.clone(), config));
        // Four lease durations of renewals: long past any expiry the timestamps suggest.
        let needed = 4 * (LEASE.as_millis() / RENEW.as_millis()) as usize;
        eventually(
            "the skewed holder to renew for four lease durations",
            WAIT,
            || async {
                let n = renewals.lock().unwrap().0;
                anyhow::ensure!(n >= needed, "{n} renewals");
                Ok(())
            },
        )
        .await;
        assert!(
            !candidate.is_finished(),
            "{fault}: the candidate took a lease that was being renewed"
        );
        holder.abort();
        let _ = holder.await;
        let last_renewal = renewals.lock().unwrap().1;
        let leadership = tokio::time::timeout(WAIT, &mut candidate)
            .await
            .expect("the candidate takes over once renewals stop")
            .unwrap()
            .expect("acquired");
        let took = last_renewal.elapsed();
        report(fault, took, &format!("lease_ms={}", LEASE.as_millis()));
        assert!(
            took + Duration::from_millis(100) >= LEASE,
            "{fault}: taken over {took:?} after the last renewal, before the lease expired"
        );
        // About one lease duration: its poll interval and a busy machine on top, no more.
        assert!(took < 3 * LEASE, "{fault}: taken over only after {took:?}");
        let now = leases.get(&name).await.expect("lease");
        assert_eq!(
            now.spec.and_then(|s| s.holder_identity).as_deref(),
            Some("countersign")
        );
        leadership.release().await;
    }
}

/// A TrustRoot patched back and forth between key `a` and key `b` 21 times: 6 flips each as
/// soon as the previous one shows, then 15 as fast as the API server takes them. What is asserted about Events, precisely: every change of a workload's
/// recorded verdict (each version the API server stored, seen by a watch) is announced by
/// exactly the Event the transition calls for, once; versions never recorded (flips the
/// operator coalesced within one pass) announce nothing. So there are never more Events than
/// recorded transitions, and never more transitions than flips plus one. And at the end the
/// verdicts are those of the last key set, the unsigned images never verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flapping_trust_root_ends_true_with_one_event_per_transition() {
    const FLIPS: usize = 21;
    const PACED: usize = 6;
    let (cluster, registry, images) = setup(&[], images_per_kind()).await;
    let client = cluster.client();
    let host = registry.host.clone();
    let all = workloads(&images, &host);
    let keys_a = json!([key("a", &images.a.public)]);
    let keys_b = json!([key("b", &images.b.public)]);
    trust_root(&client, ROOT, root_spec(&host, keys_a.clone()))
        .await
        .expect("TrustRoot");
    let history = History::start(&client, DEPLOYMENT, NS).await;
    deploy(&client, &all).await;
    let operator = Operator::start(&cluster, "flapping");
    wait_all_correct(&client, DEPLOYMENT, NS, &all, WAIT).await;

    // Paced: each flip as soon as the operator recorded the previous one on a-0, so every flip
    // is a real transition, a few hundred milliseconds apart (the since of consecutive
    // transitions differ by less than a second).
    for i in 0..PACED {
        let (keys, a0) = if i % 2 == 0 {
            (&keys_b, "Failed")
        } else {
            (&keys_a, "Verified")
        };
        trust_root(&client, ROOT, root_spec(&host, keys.clone()))
            .await
            .expect("flip the TrustRoot");
        wait_verdict(&client, DEPLOYMENT, NS, "a-0", a0, WAIT).await;
    }
    // Then as fast as the API server takes them: the operator coalesces what it cannot see.
    for i in PACED..FLIPS {
        let keys = if i % 2 == 0 { &keys_b } else { &keys_a };
        trust_root(&client, ROOT, root_spec(&host, keys.clone()))
            .await
            .expect("flip the TrustRoot");
    }
    let last = Instant::now();
    // The last set is b's: b-* verify, a-* are signed by a key no longer accepted.
    let end: Vec<Workload> = all
        .iter()
        .cloned()
        .map(|mut w| {
            if !w.unsigned {
                w.truth = if w.name.starts_with("b-") {
                    Truth::Signed
                } else {
                    Truth::NotSigned
                };
            }
            w
        })
        .collect();
    wait_all_correct(&client, DEPLOYMENT, NS, &end, WAIT).await;
    let recovered = last.elapsed();
    let unsigned: Vec<Workload> = end.iter().filter(|w| w.unsigned).cloned().collect();
    let falses = history.false_verdicts(&unsigned);
    assert!(falses.is_empty(), "false verdicts {falses:?}");
    assert_events_and_status(&client, &history, DEPLOYMENT, NS, ROOT, &end).await;
    let states = history.states();
    let transitions: usize = end
        .iter()
        .map(|w| states.get(&w.name).map_or(0, |s| s.len().saturating_sub(1)))
        .sum();
    for w in &end {
        let n = states.get(&w.name).map_or(0, Vec::len);
        assert!(n <= FLIPS + 2, "{}: {n} states for {FLIPS} flips", w.name);
    }
    report(
        "trustroot-flap",
        recovered,
        &format!("flips={FLIPS} transitions={transitions}"),
    );
    operator.stop().await;
    drop(history);
}
