//! The binary: two `countersign run` replicas elect one leader and hand over on SIGTERM.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use countersign_tests::cluster::LocalCluster;
use countersign_tests::http::http_get;
use countersign_tests::replica::Replica;
use countersign_tests::{countersign_bin, scratch_dir};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use super::history::{LeaseHistory, first_held_by, holder_of, renewed_for};
use super::{NS, RUN_LEASE, WAIT, create_namespace, eventually, holder, install_crds};

/// The lease duration the binary is run with (`--lease-duration`).
const RUN_LEASE_DURATION: Duration = Duration::from_secs(3);

/// Two `countersign run` processes against one API server: one leads (the Lease says which, and
/// so does each one's `countersign_leader` gauge); SIGTERM on the leader makes it release the
/// Lease and exit 0 at once, and the other takes over within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_of_countersign_run_elect_one_leader_and_hand_over_on_sigterm() {
    let bin = tokio::task::spawn_blocking(countersign_bin).await.unwrap();
    let cluster = LocalCluster::start()
        .await
        .expect("start the local control plane");
    let client = cluster.client();
    install_crds(&client).await;
    create_namespace(&client, NS).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let history = LeaseHistory::start(&leases, RUN_LEASE).await;
    let dir = scratch_dir("replicas");
    let kubeconfig = cluster.kubeconfig_path();
    // A short lease so the test is quick; `run` renews every third of it.
    let lease_duration = format!("{}s", RUN_LEASE_DURATION.as_secs());
    let extra = ["--lease-duration", lease_duration.as_str()];
    let mut replicas = [
        Replica::start(&bin, kubeconfig, "replica-a", dir.path(), NS, &extra),
        Replica::start(&bin, kubeconfig, "replica-b", dir.path(), NS, &extra),
    ];

    let started = Instant::now();
    let first = history
        .wait("a replica to hold the lease", |v| !v.is_empty())
        .await;
    let leader_id = holder_of(&first[0]).expect("the Lease is created with its holder");
    assert!(
        replicas.iter().any(|r| r.identity == leader_id),
        "holder {leader_id}"
    );
    eprintln!("{leader_id} leads after {:.1}s", started.elapsed().as_secs_f64());
    let (leader, standby) = if replicas[0].identity == leader_id {
        (0, 1)
    } else {
        (1, 0)
    };

    // Renewals past its lease duration later, the same leader; both processes up; each says
    // what it is.
    history
        .wait("the leader to renew past its lease duration", |v| {
            renewed_for(v, &leader_id) >= RUN_LEASE_DURATION
        })
        .await;
    assert_eq!(
        holder(&leases, RUN_LEASE).await.as_deref(),
        Some(leader_id.as_str())
    );
    for r in &mut replicas {
        assert!(r.is_running(), "{} exited:\n{}", r.identity, r.log());
    }
    assert_eq!(leader_gauge(replicas[leader].metrics).await, 1.0);
    assert_eq!(leader_gauge(replicas[standby].metrics).await, 0.0);
    assert_eq!(
        http_get(replicas[standby].metrics, "/healthz").await.unwrap().0,
        200
    );

    let terminated = Instant::now();
    replicas[leader].terminate();
    let status = replicas[leader].exit_within(WAIT).await;
    let exited = terminated.elapsed();
    assert!(
        status.success(),
        "the leader exits 0 on SIGTERM, got {status}:\n{}",
        replicas[leader].log()
    );
    let standby_id = replicas[standby].identity.clone();
    let v = history
        .wait("the standby to take the lease over", |v| {
            first_held_by(v, &standby_id).is_some()
        })
        .await;
    let takeover = terminated.elapsed();
    eprintln!(
        "SIGTERM → leader exited in {} ms, {standby_id} took over after {} ms",
        exited.as_millis(),
        takeover.as_millis()
    );
    // The leader released the Lease on its way out (a version without a holder), and that is
    // what the standby took over: it did not wait for the Lease to expire.
    let taken = first_held_by(&v, &standby_id).expect("the standby's takeover");
    assert_eq!(
        (holder_of(&v[taken - 1]), holder_of(&v[taken - 2])),
        (None, Some(leader_id.clone())),
        "released by the leader, then taken by the standby: {v:?}"
    );
    eventually("the new leader's gauge", WAIT, || async {
        let gauge = leader_gauge(replicas[standby].metrics).await;
        anyhow::ensure!(gauge == 1.0, "countersign_leader {gauge}");
        Ok(())
    })
    .await;

    replicas[standby].terminate();
    let status = replicas[standby].exit_within(WAIT).await;
    assert!(status.success(), "{status}:\n{}", replicas[standby].log());
    assert_eq!(holder(&leases, RUN_LEASE).await, None, "released on exit");
    drop(history);
    cluster.stop();
}

/// The `countersign_leader` gauge a replica serves.
async fn leader_gauge(addr: SocketAddr) -> f64 {
    let (status, body) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("countersign_leader "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no countersign_leader in:\n{body}"))
}
