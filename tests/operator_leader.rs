//! Leader election on a real Lease, against the real local control plane (kube-apiserver + etcd).
//!
//! - the library: exactly one of several candidates leads; a release hands over at once; a
//!   crashed leader's lease is taken over once it expires; a leader whose lease is taken learns it;
//! - the binary: two `countersign run` replicas elect one leader, and SIGTERM on the leader hands
//!   over within seconds;
//! - least privilege: `countersign run`, with the flags of `manifests/deployment.yaml` and exactly
//!   the RBAC of `manifests/rbac.yaml`, through a ServiceAccount token, leads, answers a Git push
//!   webhook, writes TrustRoot status, annotates workloads and emits Events without a single 403.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign::crd::{TrustRoot, WorkloadVerdict};
use countersign::operator::leader::{Leadership, LeaseConfig, LostReason, acquire};
use countersign_tests::cluster::{Audited, LocalCluster, create};
use countersign_tests::cosign::{Cosign, CosignVersion};
use countersign_tests::images::push_image;
use countersign_tests::ports;
use countersign_tests::registry::{Registry, RegistryKind};
use countersign_tests::replica::Replica;
use countersign_tests::{countersign_bin, repo_root, scratch_dir};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Event, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

const NS: &str = "countersign-system";
/// The Lease `countersign run` uses by default.
const RUN_LEASE: &str = "countersign-controller";
/// Short, so that expiry is observable in a test; renewals are well inside it (the renew
/// deadline, 90% of it, leaves a busy machine seconds to spare).
const LEASE: Duration = Duration::from_secs(5);
const RENEW: Duration = Duration::from_millis(500);
/// The lease duration the binary is run with (`--lease-duration`).
const RUN_LEASE_DURATION: Duration = Duration::from_secs(3);
/// A deadline for things that normally take a second or two: generous, so that only a real
/// failure, not a busy machine, reaches it. Durations that matter are printed, not bounded.
const WAIT: Duration = Duration::from_secs(60);
/// The wall clock (the Lease's fields) and the monotonic clock (a candidate's wait) may tick
/// apart by a hair over a few seconds.
const CLOCKS: Duration = Duration::from_millis(100);

type Candidate = JoinHandle<Result<Leadership, kube::Error>>;

fn config(lease: &str, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: NS.to_owned(),
        name: lease.to_owned(),
        identity: identity.to_owned(),
        lease_duration: LEASE,
        renew_every: RENEW,
    }
}

fn candidate(client: &kube::Client, lease: &str, identity: &str) -> Candidate {
    tokio::spawn(acquire(client.clone(), config(lease, identity)))
}

async fn holder(leases: &Api<Lease>, name: &str) -> Option<String> {
    let lease = leases.get(name).await.expect("read the lease");
    lease.spec.and_then(|s| s.holder_identity)
}

async fn transitions(leases: &Api<Lease>, name: &str) -> i32 {
    let lease = leases.get(name).await.expect("read the lease");
    lease.spec.and_then(|s| s.lease_transitions).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_election_on_a_real_api_server() {
    let started = Instant::now();
    let cluster = LocalCluster::start()
        .await
        .expect("start the local control plane");
    eprintln!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    let client = cluster.client();
    create_namespace(&client, NS).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);

    let t = Instant::now();
    only_one_of_many_simultaneous_candidates_wins(&client, &leases).await;
    eprintln!("race: {:.1}s", t.elapsed().as_secs_f64());

    let handover = LeaseHistory::start(&leases, "handover").await;
    let t = Instant::now();
    let leader = one_leads_the_other_takes_over_on_release(&client, &leases, &handover).await;
    eprintln!("release handover: {:.1}s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let leader =
        a_crashed_leader_is_replaced_once_its_lease_expires(&client, &leases, &handover, leader).await;
    eprintln!("crash takeover: {:.1}s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    a_leader_whose_lease_is_taken_learns_it(&leases, leader).await;
    eprintln!("lost: {:.1}s", t.elapsed().as_secs_f64());

    // Its open watch would hold up the API server's shutdown.
    drop(handover);
    cluster.stop();
}

/// Five candidates start together on a Lease that does not exist yet: the API server lets exactly
/// one create it; the others keep standing by while the winner renews past the lease duration.
async fn only_one_of_many_simultaneous_candidates_wins(client: &kube::Client, leases: &Api<Lease>) {
    let history = LeaseHistory::start(leases, "race").await;
    let ids = ["r1", "r2", "r3", "r4", "r5"];
    let mut candidates: Vec<(&str, Candidate)> = ids
        .iter()
        .map(|id| (*id, candidate(client, "race", id)))
        .collect();
    let first = history.wait("a holder", |v| !v.is_empty()).await;
    let winner = holder_of(&first[0]).expect("the Lease is created with its holder");
    // Not wall time but the Lease itself says when the winner has held it past its duration:
    // had it stopped renewing, a standby would have taken it by then.
    let held = history
        .wait("the winner to renew past the lease duration", |v| {
            renewed_for(v, &winner) >= LEASE
        })
        .await;
    assert!(
        held.iter()
            .all(|s| holder_of(s).as_deref() == Some(winner.as_str())),
        "only {winner} ever held it: {held:?}"
    );
    let winners: Vec<&str> = candidates
        .iter()
        .filter(|(_, c)| c.is_finished())
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(winners, vec![winner.as_str()], "exactly one leader");
    assert_eq!(holder(leases, "race").await.as_deref(), Some(winners[0]));
    assert_eq!(transitions(leases, "race").await, 0);
    // Stop the losers first, so none takes over the released lease.
    let position = candidates.iter().position(|(id, _)| *id == winners[0]).unwrap();
    let (_, winner) = candidates.remove(position);
    for (_, loser) in candidates {
        loser.abort();
        assert!(loser.await.unwrap_err().is_cancelled());
    }
    winner
        .await
        .unwrap()
        .expect("the winner acquired")
        .release()
        .await;
    assert_eq!(holder(leases, "race").await, None, "released");
}

/// Of two candidates one leads and keeps leading (it renews) past the lease duration; when it
/// releases, the other takes over at its next poll: it takes the released Lease, without
/// waiting for it to expire.
async fn one_leads_the_other_takes_over_on_release(
    client: &kube::Client,
    leases: &Api<Lease>,
    history: &LeaseHistory,
) -> Leadership {
    let mut a = candidate(client, "handover", "a");
    let mut b = candidate(client, "handover", "b");
    let (leader, mut standby, leader_id, standby_id) = tokio::select! {
        r = &mut a => (r.unwrap().expect("a acquires"), b, "a", "b"),
        r = &mut b => (r.unwrap().expect("b acquires"), a, "b", "a"),
    };
    assert_eq!(leader.identity(), leader_id);
    history
        .wait("the leader to renew past the lease duration", |v| {
            renewed_for(v, leader_id) >= LEASE
        })
        .await;
    assert!(
        !standby.is_finished(),
        "{standby_id} must stand by while {leader_id} renews"
    );
    assert_eq!(holder(leases, "handover").await.as_deref(), Some(leader_id));
    assert_eq!(leader.lost_reason(), None);

    let released = Instant::now();
    leader.release().await;
    let next = timeout(WAIT, &mut standby)
        .await
        .expect("the standby takes over the released lease")
        .unwrap()
        .expect("the standby acquires");
    eprintln!(
        "handover after release: {:.0} ms",
        released.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(next.identity(), standby_id);
    // What the standby took over was the released Lease (no holder), not an expired one. (The
    // watch may deliver the takeover a moment after the standby learnt of it.)
    let v = history
        .wait("the takeover in the Lease's history", |v| {
            first_held_by(v, standby_id).is_some()
        })
        .await;
    let taken = first_held_by(&v, standby_id).expect("the standby's takeover");
    assert_eq!(
        (holder_of(&v[taken - 1]), holder_of(&v[taken - 2]).as_deref()),
        (None, Some(leader_id)),
        "the leader released, then the standby took it: {v:?}"
    );
    assert_eq!(holder(leases, "handover").await.as_deref(), Some(standby_id));
    assert_eq!(transitions(leases, "handover").await, 1);
    next
}

/// The leader stops renewing without releasing (its process died: dropping the Leadership
/// aborts the renewal task). A standby that has been watching takes over only once the lease
/// has gone unrenewed for its duration.
async fn a_crashed_leader_is_replaced_once_its_lease_expires(
    client: &kube::Client,
    leases: &Api<Lease>,
    history: &LeaseHistory,
    leader: Leadership,
) -> Leadership {
    let leader_id = leader.identity().to_owned();
    let mut standby = candidate(client, "handover", "c");
    // The standby polls as often as the leader renews: two renewals later it has seen the lease
    // held, and stands by.
    let seen = history.versions().len();
    history
        .wait("two renewals while the standby watches", |v| v.len() >= seen + 2)
        .await;
    assert!(!standby.is_finished());

    let crashed = Instant::now();
    drop(leader);
    let next = timeout(WAIT, &mut standby)
        .await
        .expect("the standby takes over an expired lease")
        .unwrap()
        .expect("the standby acquires");
    eprintln!(
        "takeover after crash: {:.0} ms",
        crashed.elapsed().as_secs_f64() * 1000.0
    );
    // Not too early, by the Lease's own record: from the leader's last renewal to the standby's
    // takeover, at least the lease duration went by.
    let v = history
        .wait("the takeover in the Lease's history", |v| {
            first_held_by(v, "c").is_some()
        })
        .await;
    let taken = first_held_by(&v, "c").expect("the standby's takeover");
    let last_renewal = &v[taken - 1];
    assert_eq!(holder_of(last_renewal), Some(leader_id), "{v:?}");
    let unrenewed = micros_between(last_renewal.renew_time.as_ref(), v[taken].acquire_time.as_ref());
    eprintln!(
        "unrenewed for {:.0} ms before the takeover",
        unrenewed as f64 / 1000.0
    );
    assert!(
        unrenewed >= micros(LEASE - CLOCKS),
        "taken over {unrenewed} µs after the last renewal, before the lease expired: {v:?}"
    );
    assert_eq!(holder(leases, "handover").await.as_deref(), Some("c"));
    assert_eq!(transitions(leases, "handover").await, 2);
    next
}

/// Someone else writes the Lease (a force update, as `kubectl edit` would): the leader's next
/// renewal finds it taken, `lost()` resolves, and releasing then leaves the new holder alone.
async fn a_leader_whose_lease_is_taken_learns_it(leases: &Api<Lease>, mut leader: Leadership) {
    let patch = json!({"spec": {"holderIdentity": "intruder"}});
    leases
        .patch("handover", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("force the holder");
    let taken = Instant::now();
    timeout(WAIT, leader.lost())
        .await
        .expect("lost() resolves at the next renewal");
    eprintln!(
        "lost after takeover: {:.0} ms",
        taken.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(
        leader.lost_reason(),
        Some(LostReason::TakenBy("intruder".to_owned()))
    );
    // Still resolves when asked again, at once (on its first poll).
    assert!(leader.lost().now_or_never().is_some(), "lost() stays resolved");
    leader.release().await;
    assert_eq!(holder(leases, "handover").await.as_deref(), Some("intruder"));
}

// === the Lease's history ===

/// Every version of one Lease, in the order the API server stored them, from a watch that
/// starts where a list left off (so before anyone else writes it). A watch misses no write,
/// where polling could miss a release followed at once by a takeover; and the tests decide on
/// the Lease's own fields (holder, renewTime, acquireTime), not on how long they waited.
struct LeaseHistory {
    versions: Arc<Mutex<Result<Vec<LeaseSpec>, String>>>,
    task: JoinHandle<()>,
}

impl LeaseHistory {
    async fn start(leases: &Api<Lease>, name: &str) -> Self {
        let fields = format!("metadata.name={name}");
        let list = leases
            .list(&ListParams::default().fields(&fields))
            .await
            .expect("list the lease");
        let mut version = list.metadata.resource_version.expect("a list's resourceVersion");
        let initial = list.items.into_iter().map(|l| l.spec.unwrap_or_default());
        let versions = Arc::new(Mutex::new(Ok(initial.collect::<Vec<_>>())));
        let (api, seen) = (leases.clone(), Arc::clone(&versions));
        let task = tokio::spawn(async move {
            // The API server ends a watch after a while: resume from the last version seen.
            loop {
                let params = WatchParams::default().fields(&fields);
                let stream = match api.watch(&params, &version).await {
                    Ok(stream) => stream,
                    Err(e) => {
                        *seen.lock().unwrap() = Err(format!("watch: {e}"));
                        return;
                    }
                };
                let mut stream = std::pin::pin!(stream);
                while let Some(event) = stream.next().await {
                    let lease = match event {
                        Ok(WatchEvent::Added(l) | WatchEvent::Modified(l) | WatchEvent::Deleted(l)) => l,
                        Ok(WatchEvent::Bookmark(b)) => {
                            version = b.metadata.resource_version;
                            continue;
                        }
                        Ok(WatchEvent::Error(e)) => {
                            *seen.lock().unwrap() = Err(format!("watch: {e:?}"));
                            return;
                        }
                        Err(e) => {
                            *seen.lock().unwrap() = Err(format!("watch: {e}"));
                            return;
                        }
                    };
                    version = lease.metadata.resource_version.clone().unwrap_or(version);
                    if let Ok(v) = seen.lock().unwrap().as_mut() {
                        v.push(lease.spec.unwrap_or_default());
                    }
                }
            }
        });
        Self { versions, task }
    }

    fn versions(&self) -> Vec<LeaseSpec> {
        self.versions
            .lock()
            .unwrap()
            .clone()
            .expect("the Lease's history")
    }

    /// Waits until `done` holds for the versions so far; returns them.
    async fn wait(&self, what: &str, done: impl Fn(&[LeaseSpec]) -> bool) -> Vec<LeaseSpec> {
        eventually(what, WAIT, || async {
            let v = self.versions();
            anyhow::ensure!(done(&v), "history: {v:?}");
            Ok(v)
        })
        .await
    }
}

impl Drop for LeaseHistory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn holder_of(spec: &LeaseSpec) -> Option<String> {
    spec.holder_identity.clone().filter(|h| !h.is_empty())
}

/// Where `identity` first holds the Lease in `versions` (its acquisition).
fn first_held_by(versions: &[LeaseSpec], identity: &str) -> Option<usize> {
    versions
        .iter()
        .position(|s| holder_of(s).as_deref() == Some(identity))
}

/// How long `identity`, holding the Lease at its latest version, has held it: from its
/// acquireTime to its latest renewTime (zero if it does not hold it now).
fn renewed_for(versions: &[LeaseSpec], identity: &str) -> Duration {
    match versions.last() {
        Some(last) if holder_of(last).as_deref() == Some(identity) => {
            let held = micros_between(last.acquire_time.as_ref(), last.renew_time.as_ref());
            Duration::from_micros(u64::try_from(held).unwrap_or(0))
        }
        _ => Duration::ZERO,
    }
}

/// Microseconds from `from` to `to`, two MicroTime fields of a Lease.
fn micros_between(
    from: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
    to: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>,
) -> i64 {
    let (from, to) = (from.expect("a time field"), to.expect("a time field"));
    to.0.as_microsecond() - from.0.as_microsecond()
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

// === the binary: two replicas ===

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
    assert_eq!(http_get(replicas[standby].metrics, "/healthz").await.0, 200);

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

// === the binary: least privilege ===

/// `countersign run` with exactly the permissions of `manifests/rbac.yaml`, as its
/// ServiceAccount (a TokenRequest token in a kubeconfig of its own): it takes the Lease, reads a
/// key from a Secret, writes TrustRoot status, annotates workloads with their verdicts and emits
/// Events, and its log holds no 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countersign_run_needs_no_more_than_the_rbac_in_manifests() {
    let bin = tokio::task::spawn_blocking(countersign_bin).await.unwrap();
    // Two images in a real registry: one signed by a key cosign made, one not signed at all.
    let registry = Registry::start(RegistryKind::Referrers);
    let cosign = Cosign::new(CosignVersion::V3);
    let dir = scratch_dir("least-privilege");
    let (private, public) = cosign.generate_key_pair(dir.path(), "ci");
    let signed_repo = registry.repo("rbac/signed");
    let signed = format!(
        "{signed_repo}@{}",
        push_image(&format!("{signed_repo}:v1"), "rbac signed")
    );
    let run = cosign.sign(&private, &signed, false);
    assert!(run.success, "cosign sign: {}", run.stderr);
    let unsigned_repo = registry.repo("rbac/unsigned");
    let unsigned = format!(
        "{unsigned_repo}@{}",
        push_image(&format!("{unsigned_repo}:v1"), "rbac unsigned")
    );

    let cluster = LocalCluster::start()
        .await
        .expect("start the local control plane");
    let admin = cluster.client();
    install_crds(&admin).await;
    create_namespace(&admin, NS).await;
    create_namespace(&admin, "apps").await;
    let applied = apply_rbac_manifest(&admin).await;
    eprintln!("applied {}", applied.join(", "));

    let token = Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create_token_request("countersign", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("a token for the countersign ServiceAccount")
        .status
        .and_then(|s| s.token)
        .expect("a token in the TokenRequest status");
    // The token really is limited: it may not, say, create a namespace. And the API server's
    // audit log, which the test reads for refusals, records that refusal.
    let refused = Api::<Namespace>::all(cluster.client_with_token(&token))
        .create(&PostParams::default(), &namespace("not-allowed"))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );
    let refusals = Refusals::of(&cluster, &format!("system:serviceaccount:{NS}:countersign"));
    eventually("the audit log to record the refusal", WAIT, || async {
        let probes = refusals.all().iter().filter(|r| Refusals::is_probe(r)).count();
        anyhow::ensure!(probes == 1, "{probes} refused namespace creations audited");
        Ok(())
    })
    .await;
    let kubeconfig = token_kubeconfig(cluster.kubeconfig_path(), &token, dir.path());

    // The key comes from a Secret, as cosign's `k8s://` keys do: reading it is part of the job.
    let pem = std::fs::read_to_string(&public).unwrap();
    let secret = json!({"metadata": {"name": "ci-key"}, "stringData": {"cosign.pub": pem}});
    create(&Api::<Secret>::namespaced(admin.clone(), NS), secret).await;
    let trust_root = json!({
        "metadata": {"name": "rbac"},
        "spec": {
            "images": [format!("{}/rbac/**", registry.host)],
            "keys": [{"name": "ci", "secretRef": {"name": "ci-key", "namespace": NS, "key": "cosign.pub"}}],
            "threshold": 1,
            "reverifyInterval": "1m",
            "mode": "Audit",
        },
    });
    create(&Api::<TrustRoot>::all(admin.clone()), trust_root).await;
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "apps");
    create(&deployments, deployment("signed", &signed)).await;
    create(&deployments, deployment("unsigned", &unsigned)).await;
    let verdicts: Api<WorkloadVerdict> = Api::namespaced(admin.clone(), "apps");

    // The webhook receiver's Secret (the manifests' Deployment serves the receiver).
    let webhook =
        json!({"metadata": {"name": "countersign-git-webhook"}, "stringData": {"token": "hook-t0ken"}});
    create(&Api::<Secret>::namespaced(admin.clone(), NS), webhook).await;
    // The admission webhook's configuration, so that keeping its caBundle in step (get, patch)
    // runs under the same RBAC. Ignore instead of Fail: nothing serves its Service here, and the
    // Deployments' pods must still be created.
    let validating = webhook_configuration_failing_open();
    create(
        &Api::<ValidatingWebhookConfiguration>::all(admin.clone()),
        validating,
    )
    .await;

    // PolicyReports (an optional flag, off in the manifests): on here, with the upstream CRD,
    // so that writing them runs under the same RBAC.
    install_policy_report_crd(&admin).await;

    let started = Instant::now();
    let mut args = manifest_run_args();
    args.push("--policy-reports".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut replica = Replica::start(&bin, &kubeconfig, "least-privilege", dir.path(), NS, &args);
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NS);
    eventually("the lease", WAIT, || async {
        refusals.assert_none();
        let holder = lease_holder(&leases, RUN_LEASE).await?;
        anyhow::ensure!(holder.as_deref() == Some("least-privilege"), "holder {holder:?}");
        Ok(())
    })
    .await;
    eprintln!("lease acquired after {:.1}s", started.elapsed().as_secs_f64());

    for (name, verdict) in [("signed", "Verified"), ("unsigned", "Unsigned")] {
        eventually(&format!("{name} recorded {verdict}"), WAIT, || async {
            refusals.assert_none();
            let got = verdicts
                .get_opt(&format!("deployment.{name}"))
                .await?
                .map(|v| v.spec.verdict);
            anyhow::ensure!(got.as_deref() == Some(verdict), "verdict {got:?}");
            Ok(())
        })
        .await;
    }
    eprintln!("workloads recorded after {:.1}s", started.elapsed().as_secs_f64());

    // A push webhook call, authenticated with the Secret's token: the receiver reads the Secret
    // and looks for the TrustSources of the repository (none here) under the same RBAC.
    let receiver = eventually("the git webhook receiver to listen", WAIT, || async {
        for port in ports::listening_ports(replica.child.id()) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // The metrics server answers /metrics; the receiver only /hooks/git.
            if http_get(addr, "/metrics").await.0 == 404 {
                return Ok(addr);
            }
        }
        anyhow::bail!("no port answering 404 on /metrics yet")
    })
    .await;
    let push = json!({"project": {"git_http_url": "https://git.example.com/platform/trust.git"}});
    let (code, body) = http_request(
        receiver,
        "POST",
        "/hooks/git",
        "X-Gitlab-Token: hook-t0ken\r\nContent-Type: application/json\r\n",
        &push.to_string(),
    )
    .await;
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!((code, &answer["triggered"]), (202, &json!(0)), "{body}");
    refusals.assert_none();

    // The webhook certificates: the Secret created, the caBundle filled in, under the RBAC.
    let configurations = Api::<ValidatingWebhookConfiguration>::all(admin.clone());
    eventually("the webhook caBundle filled in", WAIT, || async {
        refusals.assert_none();
        let c = configurations.get("countersign").await?;
        let filled = c
            .webhooks
            .iter()
            .flatten()
            .all(|w| w.client_config.ca_bundle.is_some());
        anyhow::ensure!(filled, "no caBundle yet");
        Ok(())
    })
    .await;

    let trust_roots: Api<TrustRoot> = Api::all(admin.clone());
    let status = eventually("TrustRoot status with the counts", WAIT, || async {
        refusals.assert_none();
        let status = trust_roots.get("rbac").await?.status.unwrap_or_default();
        let counts = status.workloads.unwrap_or_default();
        anyhow::ensure!(counts.verified == 1 && counts.unsigned == 1, "status {status:?}");
        Ok(status)
    })
    .await;
    assert_eq!(status.observed_generation, Some(1), "{status:?}");

    let events: Api<Event> = Api::namespaced(admin.clone(), "apps");
    eventually("an Unsigned event on the unsigned Deployment", WAIT, || async {
        refusals.assert_none();
        let list = events.list(&ListParams::default()).await?;
        let found = list.items.iter().any(|e| {
            e.reason.as_deref() == Some("Unsigned") && e.involved_object.name.as_deref() == Some("unsigned")
        });
        let reasons: Vec<_> = list.items.iter().map(|e| e.reason.clone()).collect();
        anyhow::ensure!(found, "events: {reasons:?}");
        Ok(())
    })
    .await;

    let reports = Api::<kube::api::DynamicObject>::namespaced_with(
        admin.clone(),
        "apps",
        &countersign::reports::api_resource(),
    );
    eventually("a PolicyReport with a pass and a fail", WAIT, || async {
        refusals.assert_none();
        let report = reports.get("countersign").await?;
        let summary = &report.data["summary"];
        anyhow::ensure!(summary["pass"] == 1 && summary["fail"] == 1, "summary {summary}");
        Ok(())
    })
    .await;
    // Its deletion (the namespace has nothing governed left) is allowed too.
    deployments
        .delete("signed", &Default::default())
        .await
        .expect("delete signed");
    deployments
        .delete("unsigned", &Default::default())
        .await
        .expect("delete unsigned");
    eventually("the emptied namespace's PolicyReport deleted", WAIT, || async {
        refusals.assert_none();
        let left = reports.get_opt("countersign").await?;
        anyhow::ensure!(left.is_none(), "still there");
        Ok(())
    })
    .await;

    replica.terminate();
    let exit = replica.exit_within(WAIT).await;
    let log = replica.log();
    assert!(exit.success(), "{exit}:\n{log}");
    assert_eq!(holder(&leases, RUN_LEASE).await, None, "released on exit");
    // Everything it sent up to its exit, the lease release included, is audited by now.
    refusals.assert_none();
    let asked = refusals.requests().len();
    eprintln!("--- {asked} requests audited, none refused; log ---\n{log}");
    drop(registry);
    cluster.stop();
}

/// The requests of the operator's ServiceAccount that the API server refused (403).
///
/// Read from the API server's audit log rather than from the operator's own log: the API server
/// is the authority on what it refused, and it records each refusal in fields (user, verb,
/// resource, status code), whether the operator logs the error, retries it quietly or words it
/// in a way no pattern expects. Searching the operator's log for "403" also matched the
/// microseconds of a timestamp (issue 6).
struct Refusals<'a> {
    cluster: &'a LocalCluster,
    user: String,
}

impl<'a> Refusals<'a> {
    fn of(cluster: &'a LocalCluster, user: &str) -> Self {
        Self {
            cluster,
            user: user.to_owned(),
        }
    }

    /// Everything the user asked so far.
    fn requests(&self) -> Vec<Audited> {
        let all = self
            .cluster
            .audited_requests()
            .expect("the API server's audit log");
        all.into_iter().filter(|r| r.user == self.user).collect()
    }

    /// Its refused requests so far, the test's own probe included.
    fn all(&self) -> Vec<Audited> {
        let refused = self.requests().into_iter().filter(|r| r.code == 403);
        refused.collect()
    }

    /// The test's own request that must be refused (creating a namespace).
    fn is_probe(r: &Audited) -> bool {
        r.verb == "create" && r.resource == "namespaces"
    }

    /// Fails the test at once, naming them, if the operator was refused anything: a missing
    /// permission shows here, not later as a wait that timed out.
    fn assert_none(&self) {
        let refused: Vec<String> = self
            .all()
            .iter()
            .filter(|r| !Self::is_probe(r))
            .map(Audited::to_string)
            .collect();
        assert!(
            refused.is_empty(),
            "the API server refused the operator (403):\n{}",
            refused.join("\n")
        );
    }
}

// === helpers ===

async fn create_namespace(client: &kube::Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace(name))
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

fn namespace(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).unwrap()
}

/// Installs the CRDs the binary watches and waits until the API server serves them.
async fn install_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let all = countersign::crd::all();
    for crd in &all {
        crds.create(&PostParams::default(), crd)
            .await
            .expect("create a CRD");
    }
    eventually("the CRDs to be established", WAIT, || async {
        for crd in &all {
            let name = crd.metadata.name.as_deref().unwrap_or_default();
            let served = crds.get(name).await?;
            let established = served
                .status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Established" && c.status == "True");
            anyhow::ensure!(established, "{name} not established");
        }
        Ok(())
    })
    .await;
}

/// The ValidatingWebhookConfiguration of `manifests/webhooks.yaml`, failing open.
fn webhook_configuration_failing_open() -> Value {
    let path = repo_root().join("manifests/webhooks.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut doc: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    for hook in doc["webhooks"].as_array_mut().into_iter().flatten() {
        hook["failurePolicy"] = json!("Ignore");
    }
    doc
}

/// Creates every object of `manifests/rbac.yaml`, namespaced ones in the controller's namespace
/// (as kustomize would). Returns `Kind/name` of each.
/// The flags the Deployment in `manifests/` runs `countersign run` with, listening addresses
/// moved to `127.0.0.1:0` (a port the kernel picks).
fn manifest_run_args() -> Vec<String> {
    let path = repo_root().join("manifests/deployment.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no container args", path.display()));
    let args: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
    assert_eq!(args.first(), Some(&"run"), "{}: {args:?}", path.display());
    args[1..]
        .iter()
        .map(|arg| match arg.split_once('=') {
            Some((flag, _)) if flag.ends_with("-addr") => format!("{flag}=127.0.0.1:0"),
            _ => (*arg).to_owned(),
        })
        .collect()
}

/// The upstream PolicyReport CRD (`e2e/peers.sh policyreport`), applied and served.
async fn install_policy_report_crd(client: &kube::Client) {
    let path = countersign_tests::peer_path("policyreport-crd");
    let text = std::fs::read_to_string(&path).unwrap();
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    Api::<CustomResourceDefinition>::all(client.clone())
        .patch(
            "policyreports.wgpolicyk8s.io",
            &PatchParams::apply("countersign-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply the PolicyReport CRD");
    let reports =
        Api::<kube::api::DynamicObject>::all_with(client.clone(), &countersign::reports::api_resource());
    eventually("the PolicyReport API to be served", WAIT, || async {
        reports.list(&ListParams::default()).await?;
        Ok(())
    })
    .await;
}

async fn apply_rbac_manifest(client: &kube::Client) -> Vec<String> {
    let path = repo_root().join("manifests/rbac.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()));
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        match kind.as_str() {
            "ServiceAccount" => create(&Api::<ServiceAccount>::namespaced(client.clone(), NS), doc).await,
            "Role" => create(&Api::<Role>::namespaced(client.clone(), NS), doc).await,
            "RoleBinding" => create(&Api::<RoleBinding>::namespaced(client.clone(), NS), doc).await,
            "ClusterRole" => create(&Api::<ClusterRole>::all(client.clone()), doc).await,
            "ClusterRoleBinding" => create(&Api::<ClusterRoleBinding>::all(client.clone()), doc).await,
            other => panic!("{} holds a {other}: teach this test to apply it", path.display()),
        }
        applied.push(format!("{kind}/{name}"));
    }
    for kind in [
        "ServiceAccount/",
        "ClusterRole/",
        "ClusterRoleBinding/",
        "Role/",
        "RoleBinding/",
    ] {
        assert!(
            applied.iter().any(|a| a.starts_with(kind)),
            "no {kind} in {applied:?}"
        );
    }
    applied
}

/// The admin kubeconfig with its user replaced by `token`. Written as JSON, which is YAML.
fn token_kubeconfig(admin: &Path, token: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(admin).unwrap();
    let mut config: Value = serde_saphyr::from_str(&text).expect("parse the admin kubeconfig");
    for user in config["users"].as_array_mut().expect("users") {
        user["user"] = json!({ "token": token });
    }
    let path = dir.join("countersign-sa.kubeconfig");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    path
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    })
}

async fn lease_holder(leases: &Api<Lease>, name: &str) -> anyhow::Result<Option<String>> {
    let lease = leases.get_opt(name).await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}

/// Polls `probe` until it succeeds; panics after `limit` with its last error.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {limit:?} waiting for {what}: {e:#}")
            }
            Err(_) => sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One HTTP/1.1 GET over a fresh connection: (status, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, "", "").await
}

/// One HTTP/1.1 request over a fresh connection (`headers`: whole `Name: value\r\n` lines):
/// (status, body).
async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // A TLS listener (the admission webhooks) answers plain HTTP with an alert or a reset: a
    // status of 0 here, not a panic.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes).await;
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// The `countersign_leader` gauge a replica serves.
async fn leader_gauge(addr: SocketAddr) -> f64 {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("countersign_leader "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no countersign_leader in:\n{body}"))
}
