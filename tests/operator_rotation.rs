//! Key rotations on a real control plane, with real registries (one with the referrers API, one
//! without) and signatures made by the real cosign: the whole happy path through `countersign
//! rotation resign`, a restart and a leader change mid-window, deletion after completion (no
//! resurrection); AtWindowEnd with a straggler, abort, early finish, overlapping rotations and
//! invalid references.
//!
//! Window edges are moved by editing `spec.window` (a window may be edited mid-rotation), so each
//! phase is reached when the test asks for it, not by racing the clock; the operator must still
//! act on the edge by its own timer, since nothing else changes then.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::{process::Command, time::Duration};

use anyhow::{Context, Result, ensure};
use common::Keys;
use countersign::crd::{KeyRotation, KeyRotationStatus, KeyState, TrustRootStatus};
use countersign_tests::{
    cluster::LocalCluster,
    cosign::{self, Cosign, CosignVersion},
    countersign_bin,
    images::push_image,
    registry::{Registry, RegistryKind},
};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
};
use operator_common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const KR: &str = "countersign.dev/v1alpha1";

fn at(offset_secs: i64) -> String {
    (Timestamp::now() + SignedDuration::from_secs(offset_secs)).to_string()
}

async fn rotation(client: &Client, name: &str, spec: Value) {
    apply(
        client,
        KR,
        "KeyRotation",
        None,
        json!({"metadata": {"name": name}, "spec": spec}),
    )
    .await
    .expect("KeyRotation applied");
}

async fn patch_rotation(client: &Client, name: &str, spec: Value) {
    Api::<KeyRotation>::all(client.clone())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .unwrap_or_else(|e| panic!("patch KeyRotation {name}: {e}"));
}

async fn rotation_status(client: &Client, name: &str) -> Result<KeyRotationStatus> {
    Api::<KeyRotation>::all(client.clone())
        .get(name)
        .await?
        .status
        .context("no status yet")
}

/// Waits until the rotation is in `phase`; returns its status.
async fn wait_phase(client: &Client, name: &str, phase: &str) -> KeyRotationStatus {
    eventually(&format!("KeyRotation {name} to be {phase}"), WAIT, || async {
        let s = rotation_status(client, name).await?;
        let got = s.phase.map(countersign::rotation::status::phase_name);
        ensure!(got == Some(phase), "phase {got:?}; status {s:?}");
        Ok(s)
    })
    .await
}

/// The state of `key` in the TrustRoot's status.
fn key_state(status: &TrustRootStatus, key: &str) -> Option<KeyState> {
    status.keys.iter().find(|k| k.name == key).map(|k| k.state)
}

async fn wait_key(client: &Client, root: &str, key: &str, state: KeyState) -> TrustRootStatus {
    eventually(&format!("key {root}/{key} to be {state:?}"), WAIT, || async {
        let s = status(client, root).await?;
        ensure!(key_state(&s, key) == Some(state), "keys {:?}", s.keys);
        Ok(s)
    })
    .await
}

/// Events countersign published on the KeyRotation `name`, by reason.
async fn rotation_events(client: &Client, name: &str) -> std::collections::HashMap<String, i32> {
    by_reason(
        &events(client, "default", "KeyRotation", name)
            .await
            .expect("events"),
    )
}

async fn wait_rotation_event(client: &Client, name: &str, reason: &str) {
    eventually(
        &format!("a {reason} event on KeyRotation {name}"),
        WAIT,
        || async {
            let seen = rotation_events(client, name).await;
            ensure!(seen.contains_key(reason), "events so far: {seen:?}");
            Ok(())
        },
    )
    .await;
}

/// `countersign rotation …` against the local cluster.
fn countersign_rotation(cluster: &LocalCluster, args: &[&str]) -> cosign::Run {
    Command::new(countersign_bin())
        .arg("rotation")
        .args(args)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("COSIGN_PASSWORD", cosign::PASSWORD)
        .env("DOCKER_CONFIG", "/nonexistent")
        .output()
        .expect("running countersign rotation")
        .into()
}

/// No Deployment in `namespace` was ever announced as failing or drifting.
async fn never_failed(client: &Client, namespace: &str, names: &[&str]) {
    for name in names {
        let seen = by_reason(
            &events(client, namespace, "Deployment", name)
                .await
                .expect("events"),
        );
        for bad in ["SignatureDrift", "VerificationFailed", "Unsigned"] {
            assert!(!seen.contains_key(bad), "{name}: {seen:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotation_from_schedule_to_retirement_through_resign() {
    let cluster = cluster().await;
    let client = cluster.client();
    let with_referrers = Registry::start(RegistryKind::Referrers);
    let without = Registry::start(RegistryKind::NoReferrers);
    let (old, new) = blocking(|| (Keys::generate_named("old"), Keys::generate_named("new"))).await;
    let pay = PayImages::push_and_sign(&with_referrers, &without, &old, &new).await;
    create_the_pay_trust_root_and_deployments(&client, &pay, &old, &new).await;
    let operator = Operator::start(&cluster, "rotation-a");
    for (name, _, _) in &pay.images {
        wait_verdict(&client, DEPLOYMENT, "pay", name, "Verified", WAIT).await;
    }

    schedules_holding_the_new_key_back(&client).await;
    opens_the_window_by_its_own_timer(&client).await;
    // A leader change mid-window: the new leader derives the same phase and announces nothing again.
    operator.stop().await;
    let operator = Operator::start(&cluster, "rotation-b");
    stalls_at_window_end_naming_the_stragglers(&client).await;
    rotation_status_shows_it_stalled(&cluster);
    resign_dry_run_and_the_old_key_sign_nothing(&cluster, &old, &new);
    resign_re_signs_both_stragglers_in_their_formats(&cluster, &pay, &new);
    completes_retiring_the_old_key(&client).await;

    // A restart changes nothing; deleting the completed rotation resurrects nothing.
    operator.stop().await;
    let operator = Operator::start(&cluster, "rotation-c");
    delete_rotation(&client, "pay-new").await;
    refuses_a_workload_signed_by_the_retired_key(&client, &pay.with_referrers, &old).await;
    resurrects_nothing(&client).await;
    operator.stop().await;
}

/// The `pay` workloads' images. api: a bundle by the old key (referrers API); worker: a .sig by
/// the old key (no referrers API); both: already signed by both keys.
struct PayImages {
    /// The host of the registry with the referrers API (`api`, `both`).
    with_referrers: String,
    /// The host of the registry without it (`worker`).
    without_referrers: String,
    /// (workload, tagged image, signed as a legacy .sig), in the order of `digests`.
    images: [(&'static str, String, bool); 3],
    digests: Vec<String>,
}

impl PayImages {
    async fn push_and_sign(with_referrers: &Registry, without: &Registry, old: &Keys, new: &Keys) -> Self {
        let (a, b) = (with_referrers.host.clone(), without.host.clone());
        let images = [
            ("api", format!("{a}/pay/api:v1"), false),
            ("worker", format!("{b}/pay/worker:v1"), true),
            ("both", format!("{a}/pay/both:v1"), false),
        ];
        let mut digests = Vec::new();
        for (name, image, legacy) in &images {
            let (image, legacy, name) = (image.clone(), *legacy, name.to_string());
            let (old_private, new_private) = (old.private.clone(), new.private.clone());
            let digest = blocking(move || {
                let digest = push_image(&image, &name);
                let pinned = format!("{}@{digest}", image.rsplit_once(':').expect("tag").0);
                let signer = Cosign::new(CosignVersion::V3);
                let run = signer.sign(&old_private, &pinned, legacy);
                assert!(run.success, "{}", run.stderr);
                if name == "both" {
                    let run = signer.sign(&new_private, &pinned, legacy);
                    assert!(run.success, "{}", run.stderr);
                }
                digest
            })
            .await;
            digests.push(digest);
        }
        PayImages {
            with_referrers: a,
            without_referrers: b,
            images,
            digests,
        }
    }
}

/// The TrustRoot `pay` (both registries, both keys) and a Deployment in `pay` for each image,
/// running its tag with the digest pushed reported as its imageID.
async fn create_the_pay_trust_root_and_deployments(client: &Client, pay: &PayImages, old: &Keys, new: &Keys) {
    let (a, b) = (&pay.with_referrers, &pay.without_referrers);
    trust_root(
        client,
        "pay",
        json!({
            "images": [format!("{a}/pay/**"), format!("{b}/pay/**")],
            "keys": [key("old", &old.public), key("new", &new.public)],
            "reverifyInterval": "30s",
        }),
    )
    .await
    .expect("TrustRoot pay");
    namespace(client, "pay", json!({})).await;
    for ((name, image, _), digest) in pay.images.iter().zip(&pay.digests) {
        deployment(client, "pay", name, image, Some(digest)).await;
    }
}

/// Scheduled: the new key is held back; progress is known before the window.
async fn schedules_holding_the_new_key_back(client: &Client) {
    rotation(
        client,
        "pay-new",
        json!({"trustRootRef": "pay", "fromKey": "old", "toKey": "new",
               "window": {"start": at(3600), "duration": "1h"}, "retirement": "WhenResigned"}),
    )
    .await;
    let scheduled = wait_phase(client, "pay-new", "Scheduled").await;
    let progress = scheduled.progress.expect("progress");
    assert_eq!(
        (progress.workloads, progress.on_new_key, progress.on_old_key_only),
        (3, 1, 2)
    );
    let root = wait_key(client, "pay", "new", KeyState::Pending).await;
    assert_eq!(root.accepted_keys.as_deref(), Some("old"));
}

/// The window opens a few seconds from now: by the operator's own timer.
async fn opens_the_window_by_its_own_timer(client: &Client) {
    patch_rotation(client, "pay-new", json!({"window": {"start": at(3)}})).await;
    let open = wait_phase(client, "pay-new", "DualAcceptance").await;
    wait_rotation_event(client, "pay-new", "RotationStarted").await;
    let opened_at = open.phase_since.expect("phase since").0;
    let late = opened_at.duration_since(open.window_start.expect("window start").0);
    eprintln!(
        "window opened → DualAcceptance recorded {:.2}s after the edge",
        late.as_secs_f64()
    );
    let root = wait_key(client, "pay", "old", KeyState::DualAcceptance).await;
    assert_eq!(key_state(&root, "new"), Some(KeyState::DualAcceptance));
    assert_eq!(root.accepted_keys.as_deref(), Some("old,new"));
}

/// The window closes with two stragglers: Stalled, both keys still accepted.
async fn stalls_at_window_end_naming_the_stragglers(client: &Client) {
    patch_rotation(
        client,
        "pay-new",
        json!({"window": {"start": at(-120), "duration": "1m"}}),
    )
    .await;
    let stalled = wait_phase(client, "pay-new", "Stalled").await;
    wait_rotation_event(client, "pay-new", "RotationStalled").await;
    let names: Vec<&str> = stalled.stragglers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["api", "worker"], "{:?}", stalled.stragglers);
    assert!(stalled.stragglers.iter().all(|s| s.digest.is_some()));
}

/// `countersign rotation status -o json` shows the phase and the progress.
fn rotation_status_shows_it_stalled(cluster: &LocalCluster) {
    let shown = countersign_rotation(cluster, &["status", "pay-new", "-o", "json"]);
    assert!(shown.success, "{}", shown.stderr);
    let json: Value = serde_json::from_str(&shown.stdout).expect("status JSON");
    assert_eq!(json["status"]["phase"], "Stalled");
    assert_eq!(json["status"]["progress"]["onOldKeyOnly"], 2);
}

/// resign: the dry run signs nothing, and the old key (not toKey) is refused.
fn resign_dry_run_and_the_old_key_sign_nothing(cluster: &LocalCluster, old: &Keys, new: &Keys) {
    let new_key = new.private_str();
    let dry = countersign_rotation(cluster, &["resign", "pay-new", "--key", new_key, "--dry-run"]);
    assert!(dry.success, "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(dry.stdout.matches("would sign").count(), 2, "{}", dry.stdout);
    let wrong = countersign_rotation(cluster, &["resign", "pay-new", "--key", old.private_str()]);
    assert!(!wrong.success, "the old key is not toKey: {}", wrong.stdout);
}

/// The real resign re-signs both stragglers, each in its format.
fn resign_re_signs_both_stragglers_in_their_formats(cluster: &LocalCluster, pay: &PayImages, new: &Keys) {
    let (a, b) = (&pay.with_referrers, &pay.without_referrers);
    let resigned = countersign_rotation(cluster, &["resign", "pay-new", "--key", new.private_str()]);
    assert!(resigned.success, "{}\n{}", resigned.stdout, resigned.stderr);
    assert!(
        resigned
            .stdout
            .contains(&format!("{a}/pay/api@{} (bundle", pay.digests[0])),
        "{}",
        resigned.stdout
    );
    assert!(
        resigned
            .stdout
            .contains(&format!("{b}/pay/worker@{} (legacy", pay.digests[1])),
        "{}",
        resigned.stdout
    );
}

/// Completed within seconds: the old key retired, nothing ever failed.
async fn completes_retiring_the_old_key(client: &Client) {
    let done = wait_phase(client, "pay-new", "Completed").await;
    let completed_after = done
        .completed_at
        .expect("completedAt")
        .0
        .duration_since(Timestamp::now());
    eprintln!("last re-sign → Completed: {:.2}s", -completed_after.as_secs_f64());
    assert!(done.stragglers.is_empty());
    wait_rotation_event(client, "pay-new", "RotationCompleted").await;
    let root = wait_key(client, "pay", "old", KeyState::Retired).await;
    assert_eq!(root.accepted_keys.as_deref(), Some("new"));
    let asked = condition(&root, "RetiredKeysRemoved").expect("condition");
    assert_eq!(
        (asked.status.as_str(), asked.reason.as_str()),
        ("False", "RetiredKeyDeclared")
    );
    never_failed(client, "pay", &["api", "worker", "both"]).await;
}

async fn delete_rotation(client: &Client, name: &str) {
    Api::<KeyRotation>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete the KeyRotation");
}

/// `late`, signed by the retired key alone, is Failed as a refused signer.
async fn refuses_a_workload_signed_by_the_retired_key(client: &Client, host: &str, old: &Keys) {
    let old_only = blocking({
        let (image, key, host) = (
            format!("{host}/pay/late:v1"),
            old.private.clone(),
            host.to_string(),
        );
        move || {
            let digest = push_image(&image, "late");
            let run = Cosign::new(CosignVersion::V3).sign(&key, &format!("{host}/pay/late@{digest}"), false);
            assert!(run.success, "{}", run.stderr);
            digest
        }
    })
    .await;
    deployment(
        client,
        "pay",
        "late",
        &format!("{host}/pay/late:v1"),
        Some(&old_only),
    )
    .await;
    let late = wait_verdict(client, DEPLOYMENT, "pay", "late", "Failed", WAIT).await;
    assert_eq!(late["causes"], "refused_signer", "{late:?}");
    // The reason names the rotation that retired the key: what on-call needs to read.
    assert!(
        late["reason"].contains("retired by KeyRotation pay-new"),
        "{late:?}"
    );
}

/// After the restart and the deletion: the old key stays retired, the rotated workloads stay
/// Verified, and each step of the rotation was announced once.
async fn resurrects_nothing(client: &Client) {
    let root = status(client, "pay").await.expect("status");
    assert_eq!(key_state(&root, "old"), Some(KeyState::Retired));
    for name in ["api", "worker", "both"] {
        wait_verdict(client, DEPLOYMENT, "pay", name, "Verified", WAIT).await;
    }
    let seen = rotation_events(client, "pay-new").await;
    for reason in [
        "RotationStarted",
        "RotationStalled",
        "KeyRetired",
        "RotationCompleted",
    ] {
        assert_eq!(seen.get(reason), Some(&1), "{reason} once: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn window_end_abort_early_finish_overlaps_and_invalid_references() {
    let cluster = cluster().await;
    let client = cluster.client();
    let registry = Registry::start(RegistryKind::Referrers);
    let host = registry.host.clone();
    let (old, new) = blocking(|| (Keys::generate_named("old"), Keys::generate_named("new"))).await;
    namespace(&client, "team", json!({})).await;
    let roots = create_a_trust_root_and_deployment_for_each_edge(&client, &host, &old, &new).await;
    let operator = Operator::start(&cluster, "rotation-edges");
    for root in &roots {
        wait_verdict(&client, DEPLOYMENT, "team", root, "Verified", WAIT).await;
    }

    at_window_end_fails_the_straggler_naming_the_rotation(&client).await;
    an_overlapping_rotation_is_invalid_naming_the_other(&client).await;
    abort_frees_the_overlap_and_restores_the_declared_keys(&client).await;
    early_finish_retires_the_old_key_before_the_window_ends(&client).await;
    // Invalid references, each naming its field.
    a_missing_trust_root_is_named_by_its_field(&client).await;
    a_key_removed_mid_rotation_is_named_by_its_field(&client, &host, &old).await;
    operator.stop().await;
}

/// A TrustRoot per edge case (`end`, `abort`, `early`), each governing one image signed by the
/// old key only, or by both, and a Deployment in `team` running it; returns the TrustRoots'
/// names, which are also the Deployments'.
async fn create_a_trust_root_and_deployment_for_each_edge(
    client: &Client,
    host: &str,
    old: &Keys,
    new: &Keys,
) -> Vec<&'static str> {
    let mut roots = Vec::new();
    for (root, both) in [("end", false), ("abort", false), ("early", true)] {
        // `abort` also declares a third key (the new key's PEM under another name), for a
        // second rotation that overlaps the first.
        let mut keys = vec![key("old", &old.public), key("new", &new.public)];
        if root == "abort" {
            keys.push(key("third", &new.public));
        }
        let image = format!("{host}/{root}/app:v1");
        let digest = push_signed_by_old_or_both(image.clone(), old, new, both).await;
        trust_root(
            client,
            root,
            json!({"images": [format!("{host}/{root}/**")], "keys": keys, "reverifyInterval": "30s"}),
        )
        .await
        .expect("TrustRoot");
        deployment(client, "team", root, &image, Some(&digest)).await;
        roots.push(root);
    }
    roots
}

/// Pushes `image` and signs it by digest with the old key, and with the new one too if `both`;
/// returns its digest.
async fn push_signed_by_old_or_both(pushed: String, old: &Keys, new: &Keys, both: bool) -> String {
    let (old_private, new_private) = (old.private.clone(), new.private.clone());
    blocking(move || {
        let digest = push_image(&pushed, "app");
        let pinned = format!("{}@{digest}", pushed.rsplit_once(':').expect("tag").0);
        let signer = Cosign::new(CosignVersion::V3);
        assert!(signer.sign(&old_private, &pinned, false).success);
        if both {
            assert!(signer.sign(&new_private, &pinned, false).success);
        }
        digest
    })
    .await
}

/// AtWindowEnd: the straggler turns Failed, and the drift names the rotation.
async fn at_window_end_fails_the_straggler_naming_the_rotation(client: &Client) {
    rotation(
        client,
        "end-rot",
        json!({"trustRootRef": "end", "fromKey": "old", "toKey": "new",
               "window": {"start": at(-30), "duration": "1h"}, "retirement": "AtWindowEnd"}),
    )
    .await;
    wait_phase(client, "end-rot", "DualAcceptance").await;
    patch_rotation(
        client,
        "end-rot",
        json!({"window": {"start": at(-57), "duration": "1m"}}),
    )
    .await;
    let done = wait_phase(client, "end-rot", "Completed").await;
    assert_eq!(
        done.completed_at, done.window_end,
        "completed when the window closed"
    );
    let drift = wait_event(client, "team", "Deployment", "end", "SignatureDrift", WAIT).await;
    assert!(
        drift.note.contains("key end/old retired by KeyRotation end-rot"),
        "{drift:?}"
    );
    wait_verdict(client, DEPLOYMENT, "team", "end", "Failed", WAIT).await;
}

/// abort-rot, in its window on `abort`, and a second rotation on `abort` that overlaps it.
async fn an_overlapping_rotation_is_invalid_naming_the_other(client: &Client) {
    rotation(
        client,
        "abort-rot",
        json!({"trustRootRef": "abort", "fromKey": "old", "toKey": "new",
               "window": {"start": at(-30), "duration": "1h"}}),
    )
    .await;
    wait_key(client, "abort", "new", KeyState::DualAcceptance).await;
    // Overlapping: shares a key with abort-rot, created later: Invalid, naming it.
    rotation(
        client,
        "abort-rot-2",
        json!({"trustRootRef": "abort", "fromKey": "new", "toKey": "third",
               "window": {"start": at(7200), "duration": "1h"}}),
    )
    .await;
    let overlapping = wait_phase(client, "abort-rot-2", "Invalid").await;
    let valid = valid_condition(&overlapping);
    assert_eq!(valid.reason, "Overlaps");
    assert!(valid.message.contains("\"abort-rot\""), "{valid:?}");
}

/// Abort during the window: both keys back to what the TrustRoot declares.
async fn abort_frees_the_overlap_and_restores_the_declared_keys(client: &Client) {
    patch_rotation(client, "abort-rot", json!({"abort": true})).await;
    wait_phase(client, "abort-rot", "Aborted").await;
    wait_rotation_event(client, "abort-rot", "RotationAborted").await;
    // With abort-rot out of the way, the other one is valid (and scheduled, holding `third`
    // back); old and new are back to what the TrustRoot declares.
    wait_phase(client, "abort-rot-2", "Scheduled").await;
    let root = wait_key(client, "abort", "third", KeyState::Pending).await;
    assert_eq!(key_state(&root, "old"), Some(KeyState::Active));
    assert_eq!(key_state(&root, "new"), Some(KeyState::Active));
}

/// Early finish: every workload already on the new key, retireEarly set.
async fn early_finish_retires_the_old_key_before_the_window_ends(client: &Client) {
    rotation(
        client,
        "early-rot",
        json!({"trustRootRef": "early", "fromKey": "old", "toKey": "new",
               "window": {"start": at(-30), "duration": "1h"}, "retireEarly": true}),
    )
    .await;
    let early = wait_phase(client, "early-rot", "Completed").await;
    assert!(early.completed_at.expect("completedAt").0 < early.window_end.expect("end").0);
    wait_key(client, "early", "old", KeyState::Retired).await;
    never_failed(client, "team", &["early", "abort"]).await;
}

/// A rotation of a TrustRoot that does not exist.
async fn a_missing_trust_root_is_named_by_its_field(client: &Client) {
    rotation(
        client,
        "no-root",
        json!({"trustRootRef": "missing", "fromKey": "old", "toKey": "new",
               "window": {"start": at(60), "duration": "1h"}}),
    )
    .await;
    let missing = wait_phase(client, "no-root", "Invalid").await;
    let valid = valid_condition(&missing);
    assert_eq!(valid.reason, "TrustRootNotFound");
    assert!(valid.message.starts_with("spec.trustRootRef"), "{valid:?}");
    wait_rotation_event(client, "no-root", "RotationInvalid").await;
}

/// The TrustRoot edited mid-rotation so that a rotation's key disappears.
async fn a_key_removed_mid_rotation_is_named_by_its_field(client: &Client, host: &str, old: &Keys) {
    trust_root(
        client,
        "abort",
        json!({"images": [format!("{host}/abort/**")], "keys": [key("old", &old.public)],
               "reverifyInterval": "30s"}),
    )
    .await
    .expect("TrustRoot abort without the new key");
    let unknown = wait_phase(client, "abort-rot-2", "Invalid").await;
    let valid = valid_condition(&unknown);
    assert_eq!(valid.reason, "KeyNotDeclared");
    assert!(valid.message.starts_with("spec.fromKey"), "{valid:?}");
}

/// The rotation's `Valid` condition.
fn valid_condition(status: &KeyRotationStatus) -> &Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "Valid")
        .expect("Valid")
}
