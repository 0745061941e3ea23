//! The library: `acquire` and `Leadership` on a real Lease, several candidates at a time.

use std::time::{Duration, Instant};

use countersign::operator::leader::{Leadership, LeaseConfig, LostReason, acquire};
use countersign_tests::cluster::LocalCluster;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::history::{LeaseHistory, first_held_by, holder_of, micros, micros_between, renewed_for};
use super::{NS, WAIT, create_namespace, holder};

/// Short, so that expiry is observable in a test; renewals are well inside it (the renew
/// deadline, 90% of it, leaves a busy machine seconds to spare).
const LEASE: Duration = Duration::from_secs(5);
const RENEW: Duration = Duration::from_millis(500);
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
