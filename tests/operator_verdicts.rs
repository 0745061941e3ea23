//! The operator against a real control plane, a real registry and signatures made by the real
//! cosign: a signed workload is Verified, an unsigned one Unsigned, one signed by an untrusted
//! key Failed, one short of a threshold of two Failed; each with its WorkloadVerdict, its Event and
//! the TrustRoot's counts. Then the operator is restarted and announces nothing again.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::ensure;
use common::Keys;
use countersign::{crd::WorkloadVerdict, operator};
use countersign_tests::{
    images::Pushed,
    registry::{Registry, RegistryKind},
};
use k8s_openapi::{api::apps::v1::Deployment, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use operator_common::*;
use serde_json::json;

const NS: &str = "apps";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verdicts_events_and_status_then_a_restart_repeats_nothing() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::Referrers);
    let keys = blocking(KeyPairs::generate).await;
    let images = Images::push_and_sign(&registry, &keys);
    create_trust_roots(&client, &registry.host, &keys).await;
    namespace(&client, NS, json!({})).await;

    let started = Instant::now();
    let operator = Operator::start(&cluster, "first");
    create_workloads(&client, &images).await;
    records_a_verdict_for_each_workload(&client, &images, started).await;
    emits_an_event_for_each_verdict(&client).await;
    counts_the_verdicts_in_trust_root_status(&client).await;
    gives_an_ungoverned_image_no_verdict(&client).await;
    lists_failed_verdicts_by_field(&client).await;

    // Restart: the verdicts are read back from their records, so nothing is announced again.
    let announced = Announced::read(&client).await;
    operator.stop().await;
    records_signed_as_an_earlier_version_did(&client).await;
    let swept_before = last_sweep(&client, "team").await;
    wait_for_a_later_second(swept_before.as_ref()).await;
    let operator = Operator::start(&cluster, "second");
    restarts_without_repeating_events(&client, swept_before, &announced).await;
    removes_the_earlier_versions_annotations(&client).await;
    collects_a_deleted_workloads_record(&client).await;
    operator.stop().await;
    eprintln!("test done in {:.1}s", started.elapsed().as_secs_f64());
}

/// The workloads that get a verdict, and so an Event, as (kind, name).
const ANNOUNCED: [(&str, &str); 4] = [
    ("Deployment", "signed"),
    ("Pod", "unsigned"),
    ("Deployment", "untrusted"),
    ("StatefulSet", "strict"),
];

/// `trusted` is held by both TrustRoots, `second` only by `strict` (which requires two keys),
/// `untrusted` by none.
struct KeyPairs {
    trusted: Keys,
    second: Keys,
    untrusted: Keys,
}

impl KeyPairs {
    fn generate() -> Self {
        KeyPairs {
            trusted: Keys::generate_named("trusted"),
            second: Keys::generate_named("second"),
            untrusted: Keys::generate_named("untrusted"),
        }
    }
}

/// An image for each verdict; all but `unsigned` signed by the real cosign v3 (bundle) by digest.
struct Images {
    signed: Pushed,
    unsigned: Pushed,
    untrusted: Pushed,
    strict: Pushed,
}

impl Images {
    fn push_and_sign(registry: &Registry, keys: &KeyPairs) -> Self {
        // The content names the repository, so each image has a digest of its own.
        let push = |repo: &str| Pushed::push(&registry.repo(repo), &format!("{repo} v1"));
        let images = Images {
            signed: push("team/signed"),
            unsigned: push("team/unsigned"),
            untrusted: push("team/untrusted"),
            strict: push("strict/app"),
        };
        for (keys, image) in [
            (&keys.trusted, &images.signed.pinned()),
            (&keys.untrusted, &images.untrusted.pinned()),
            (&keys.trusted, &images.strict.pinned()),
        ] {
            let run = keys.cosign3.sign(&keys.private, image, false);
            assert!(run.success, "cosign sign {image}: {}", run.stderr);
        }
        images
    }
}

/// `team` (the `team/` images, one key) and `strict` (the `strict/` images, a threshold of two).
async fn create_trust_roots(client: &kube::Client, host: &str, keys: &KeyPairs) {
    trust_root(
        client,
        "team",
        json!({"images": [format!("{host}/team/**")], "keys": [key("trusted", &keys.trusted.public)]}),
    )
    .await
    .expect("TrustRoot team");
    trust_root(
        client,
        "strict",
        json!({
            "images": [format!("{host}/strict/**")],
            "keys": [key("trusted", &keys.trusted.public), key("second", &keys.second.public)],
            "threshold": 2,
        }),
    )
    .await
    .expect("TrustRoot strict");
}

async fn create_workloads(client: &kube::Client, images: &Images) {
    // Signed, running a tag whose digest the kubelet reported (imageID).
    let signed = &images.signed;
    deployment(client, NS, "signed", &signed.tagged(), Some(&signed.digest)).await;
    // Unsigned, pinned by digest: a bare pod.
    pod(client, NS, "unsigned", &images.unsigned.pinned(), None).await;
    // Signed by a key no TrustRoot trusts; no imageID yet, so the tag is resolved.
    deployment(client, NS, "untrusted", &images.untrusted.tagged(), None).await;
    // One signature where two distinct keys are required: a StatefulSet. (Not a Job: kwok
    // completes Job pods at once, and a completed pod runs nothing to verify.)
    create(
        client,
        "apps/v1",
        "StatefulSet",
        Some(NS),
        json!({
            "metadata": {"name": "strict"},
            "spec": {
                "serviceName": "strict",
                "selector": {"matchLabels": {"app": "strict"}},
                "template": {
                    "metadata": {"labels": {"app": "strict"}},
                    "spec": {"containers": [{"name": "app", "image": images.strict.pinned()}]},
                },
            },
        }),
    )
    .await;
    // Governed by nothing.
    pod(client, NS, "ungoverned", "docker.io/library/nginx:1.27", None).await;
}

/// Each verdict with its cause, its reason and the digests verified.
async fn records_a_verdict_for_each_workload(client: &kube::Client, images: &Images, started: Instant) {
    let a = wait_verdict(client, DEPLOYMENT, NS, "signed", "Verified", WAIT).await;
    eprintln!("first verdict after {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(a["verifiedBy"], "team/trusted");
    assert_eq!(a["digests"], images.signed.pinned());
    assert!(a.contains_key("since"));
    assert!(!a.contains_key("stale"));

    let a = wait_verdict(client, POD, NS, "unsigned", "Unsigned", WAIT).await;
    assert_eq!(a["causes"], "no_signature", "{a:?}");
    assert!(a["reason"].contains("no signature"), "{a:?}");
    let a = wait_verdict(client, DEPLOYMENT, NS, "untrusted", "Failed", WAIT).await;
    assert_eq!(a["causes"], "no_trusted_key", "{a:?}");
    assert!(a["reason"].contains("no trusted key verifies it"), "{a:?}");
    assert!(
        a["digests"].contains(&images.untrusted.digest),
        "resolved from the tag: {a:?}"
    );
    let a = wait_verdict(client, STATEFULSET, NS, "strict", "Failed", WAIT).await;
    assert_eq!(a["causes"], "below_threshold", "{a:?}");
    // The reason names the keys that did verify.
    assert!(
        a["reason"].contains("signed by 1 of the 2 distinct keys required (trusted)"),
        "{a:?}"
    );
}

async fn emits_an_event_for_each_verdict(client: &kube::Client) {
    let verified = wait_event(client, NS, "Deployment", "signed", "SignatureVerified", WAIT).await;
    assert_eq!(verified.type_, "Normal");
    assert!(verified.note.contains("team/trusted"), "{verified:?}");
    let e = wait_event(client, NS, "Pod", "unsigned", "Unsigned", WAIT).await;
    assert_eq!(e.type_, "Warning");
    let e = wait_event(client, NS, "Deployment", "untrusted", "VerificationFailed", WAIT).await;
    assert_eq!(e.type_, "Warning");
    wait_event(client, NS, "StatefulSet", "strict", "VerificationFailed", WAIT).await;
}

/// Each TrustRoot's counts, and `team`'s conditions and keys.
async fn counts_the_verdicts_in_trust_root_status(client: &kube::Client) {
    let team = eventually("TrustRoot team's counts", WAIT, || async {
        let s = status(client, "team").await?;
        let w = s.workloads.unwrap_or_default();
        ensure!(
            (w.total, w.verified, w.unsigned, w.failed, w.stale) == (3, 1, 1, 1, 0),
            "{w:?}"
        );
        Ok(s)
    })
    .await;
    assert_eq!(team.observed_generation, Some(1));
    let ready = condition(&team, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.observed_generation),
        ("True", Some(1))
    );
    assert_eq!(
        condition(&team, "KeysValid").map(|c| c.status.as_str()),
        Some("True")
    );
    assert_eq!(team.accepted_keys.as_deref(), Some("trusted"));
    assert_eq!(team.keys[0].fingerprint.as_ref().map(String::len), Some(64));
    // The first sweep may have run before every pod existed (passes after it update the counts,
    // not lastSweep); the restarted operator's sweep below sees all three digests.
    assert!(team.last_sweep.is_some(), "{team:?}");
    let strict_status = status(client, "strict").await.expect("strict status");
    let w = strict_status.workloads.unwrap_or_default();
    assert_eq!((w.total, w.failed), (1, 1), "{w:?}");
}

async fn gives_an_ungoverned_image_no_verdict(client: &kube::Client) {
    assert!(
        recorded(client, "Pod", NS, "ungoverned")
            .await
            .expect("pod")
            .is_empty(),
        "an image no TrustRoot governs gets no verdict"
    );
}

/// `kubectl get wv --field-selector verdict=Failed`: the CRD's selectable field.
async fn lists_failed_verdicts_by_field(client: &kube::Client) {
    let records: Api<WorkloadVerdict> = Api::namespaced(client.clone(), NS);
    let failed = records
        .list(&ListParams::default().fields("verdict=Failed"))
        .await
        .expect("list by field");
    let mut names: Vec<String> = failed.items.into_iter().filter_map(|v| v.metadata.name).collect();
    names.sort();
    assert_eq!(names, ["deployment.untrusted", "statefulset.strict"]);
}

/// What was announced before the restart: the Events of each of [`ANNOUNCED`] by reason, and
/// since when `signed` has been Verified.
struct Announced {
    events: Vec<HashMap<String, i32>>,
    since: String,
}

impl Announced {
    async fn read(client: &kube::Client) -> Self {
        let mut events_by_reason = Vec::new();
        for (kind, name) in ANNOUNCED {
            events_by_reason.push(by_reason(&events(client, NS, kind, name).await.expect("events")));
        }
        let signed_before = recorded(client, "Deployment", NS, "signed")
            .await
            .expect("record");
        Announced {
            events: events_by_reason,
            since: signed_before["since"].clone(),
        }
    }
}

/// An upgrade from a version that recorded verdicts as annotations on the workload: the record
/// of `signed` is replaced by those annotations, which must be read back (no Event again, the
/// same `since`), turned into a record and removed. They are written by the encoder that
/// earlier version used, which the operator keeps for reading them.
async fn records_signed_as_an_earlier_version_did(client: &kube::Client) {
    let records: Api<WorkloadVerdict> = Api::namespaced(client.clone(), NS);
    let record = records.get("deployment.signed").await.expect("the record");
    let stored = operator::records::stored(&record).expect("a readable record");
    let legacy = operator::annotations::encode(&stored.recorded);
    records
        .delete("deployment.signed", &Default::default())
        .await
        .expect("delete the record");
    Api::<Deployment>::namespaced(client.clone(), NS)
        .patch(
            "signed",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": legacy}})),
        )
        .await
        .expect("annotate as an earlier version did");
}

/// lastSweep.finishedAt has a resolution of one second: the next sweep must start in a later
/// one than `swept_before`, so that it shows as a new value.
async fn wait_for_a_later_second(swept_before: Option<&Time>) {
    if let Some(before) = swept_before {
        eventually("the clock to pass the last sweep's second", WAIT, || async {
            let now = Timestamp::now().as_second();
            ensure!(now > before.0.as_second(), "still {now}");
            Ok(())
        })
        .await;
    }
}

/// The restarted operator's sweep (of all three digests) announces nothing again, and `signed`,
/// read back from the earlier version's annotations, keeps its `since`.
async fn restarts_without_repeating_events(
    client: &kube::Client,
    swept_before: Option<Time>,
    announced: &Announced,
) {
    // A sweep writes its workloads' records and Events before the TrustRoot status that
    // reports it finished, so once its lastSweep shows, any (wrong) re-announcement is there.
    let swept = eventually("a sweep by the restarted operator", WAIT, || async {
        let s = status(client, "team").await?;
        let swept = s
            .last_sweep
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no lastSweep"))?;
        ensure!(
            Some(&swept.finished_at) > swept_before.as_ref(),
            "last sweep {swept:?}"
        );
        Ok(swept)
    })
    .await;
    assert_eq!(swept.digests, 3, "{swept:?}");
    for ((kind, name), before) in ANNOUNCED.iter().zip(&announced.events) {
        let after = by_reason(&events(client, NS, kind, name).await.expect("events"));
        assert_eq!(&after, before, "events of {kind} {name} after the restart");
    }
    let since_after = recorded(client, "Deployment", NS, "signed")
        .await
        .expect("the record of signed")["since"]
        .clone();
    assert_eq!(
        since_after, announced.since,
        "an unchanged verdict keeps its since"
    );
}

async fn removes_the_earlier_versions_annotations(client: &kube::Client) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    eventually("the earlier version's annotations removed", WAIT, || async {
        let d = deployments.get("signed").await?;
        let left: Vec<String> = d
            .metadata
            .annotations
            .unwrap_or_default()
            .into_keys()
            .filter(|k| k.starts_with("countersign.dev/"))
            .collect();
        ensure!(left.is_empty(), "still {left:?}");
        Ok(())
    })
    .await;
}

/// A record is owned by its workload: the garbage collector removes it with the workload.
async fn collects_a_deleted_workloads_record(client: &kube::Client) {
    Api::<Deployment>::namespaced(client.clone(), NS)
        .delete("untrusted", &Default::default())
        .await
        .expect("delete a workload");
    let records: Api<WorkloadVerdict> = Api::namespaced(client.clone(), NS);
    eventually("the deleted workload's record collected", WAIT, || async {
        let left = records.get_opt("deployment.untrusted").await?;
        ensure!(left.is_none(), "still there");
        Ok(())
    })
    .await;
}
