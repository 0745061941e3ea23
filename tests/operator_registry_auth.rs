//! The operator against a registry with real bearer-token auth (Gitea's, the user private so
//! that anonymous pulls are refused), on the real control plane, through pull secrets per
//! namespace:
//!
//! - namespace `with-secret`, pods pulling with a `kubernetes.io/dockerconfigjson` Secret:
//!   Verified;
//! - every token Gitea handed out refused at once (its signing key rotated), then a sweep: the
//!   `401` is answered by a new token (the request metrics show both), the verdict stays, no
//!   stale mark, no Event;
//! - the Secret's password made wrong: the next client built from it is refused, the verdict is
//!   kept and marked `stale: unauthorized` (one `VerificationStale`, no drift); put right: the
//!   mark goes, without an Event;
//! - namespace `without-secret`, the same image, no pull secret: `Unknown`, stale
//!   `unauthorized`, counted stale by the TrustRoot; never Unsigned or Failed, sweep after sweep.

mod common;
#[path = "operator_common.rs"]
mod operator_common;

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::ensure;
use common::Keys;
use countersign_tests::{
    bench::scrape_metrics,
    gitea::{self, Gitea},
    images::push_image_as,
    scratch_dir,
};
use operator_common::*;
use serde_json::json;

const ROOT: &str = "gitea";
const WITH: &str = "with-secret";
const WITHOUT: &str = "without-secret";
const WAIT: Duration = Duration::from_secs(60);
/// For the waits that span sweeps, or the Secret cache (30 s) and then a sweep: generous, as a
/// busy machine is slow.
const SWEEPS: Duration = Duration::from_secs(180);
/// How long countersign keeps a Gitea token (Gitea gives no `expires_in`: 60 s less 5 s).
const TOKEN_KEPT: Duration = Duration::from_secs(55);

/// `countersign_registry_requests_total` by (operation, outcome).
async fn requests(metrics: &str) -> HashMap<(String, String), f64> {
    let scraped = scrape_metrics(metrics).await.expect("metrics");
    let prefix = "countersign_registry_requests_total{";
    let mut out = HashMap::new();
    for (series, v) in &scraped {
        let Some(labels) = series.strip_prefix(prefix) else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches(['"', '}']).to_string())
                .unwrap_or_default()
        };
        out.insert((label("operation"), label("outcome")), *v);
    }
    out
}

/// Requests of `after` not in `before`, by (operation, outcome); only those that grew.
fn grown(
    before: &HashMap<(String, String), f64>,
    after: &HashMap<(String, String), f64>,
) -> HashMap<(String, String), f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d > 0.0)
        .collect()
}

fn outcome(op: &str, outcome: &str) -> (String, String) {
    (op.to_string(), outcome.to_string())
}

/// The TrustRoot, re-verifying every `interval`.
async fn root(client: &kube::Client, host: &str, keys: &Keys, interval: &str) {
    trust_root(
        client,
        ROOT,
        json!({
            "images": [format!("{host}/{}/**", gitea::USER)],
            "keys": [key("ci", &keys.public)],
            "reverifyInterval": interval,
        }),
    )
    .await
    .expect("TrustRoot gitea");
}

/// The verdict recorded for Deployment `app` in `namespace` (see [`recorded`]).
async fn app(client: &kube::Client, namespace: &str) -> anyhow::Result<BTreeMap<String, String>> {
    recorded(client, "Deployment", namespace, "app").await
}

/// Waits until the TrustRoot counts `expected` (total, verified, stale), and none unsigned or failed.
async fn counts(client: &kube::Client, expected: (i32, i32, i32)) {
    eventually("the TrustRoot's counts", WAIT, || async {
        let w = status(client, ROOT).await?.workloads.unwrap_or_default();
        ensure!(
            (w.total, w.verified, w.stale) == expected && (w.unsigned, w.failed) == (0, 0),
            "{w:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pull_secrets_per_namespace_open_a_token_registry_and_a_401_is_answered_by_a_new_token() {
    let (cluster, mut gitea, keys) = tokio::join!(
        cluster(),
        blocking(Gitea::start),
        blocking(|| Keys::generate_named("gitea"))
    );
    let f = Fixture::push_and_sign(cluster.client(), &gitea, keys);

    // No sweep before the one this test asks for (below): tokens are fetched by the first
    // verification only, and Gitea's restart is seen by no request.
    root(&f.client, &f.host, &f.keys, "24h").await;
    namespace(&f.client, WITH, json!({})).await;
    pull_secret(&f.client, WITH, "regcred", &f.right).await;
    let (operator, metrics) = Operator::start_with_metrics(&cluster, "registry-auth").await;
    let token_fetched = verifies_through_the_pull_secret(&f).await;
    let (grew, age) = refuse_every_token_then_sweep(&f, &mut gitea, &metrics, token_fetched).await;
    answers_the_401_with_a_new_token(&grew, age);
    keeps_the_verdict_without_an_event(&f.client).await;
    a_wrong_password_marks_the_verdict_stale(&f, &gitea).await;
    the_right_password_removes_the_mark_silently(&f).await;
    without_a_pull_secret_never_a_verdict(&f).await;
    the_namespace_with_the_secret_is_not_disturbed(&f.client).await;
    operator.stop().await;
    drop(gitea);
}

/// What the steps share: the image, pushed to Gitea as its user (made private) and signed.
struct Fixture {
    client: kube::Client,
    /// Gitea's registry (see [`Gitea::registry_host`]).
    host: String,
    keys: Keys,
    /// A docker `config.json` with the right password.
    right: Vec<u8>,
    /// `<host>/<user>/app:v1`.
    tag: String,
    digest: String,
}

impl Fixture {
    /// Makes Gitea's user private, then pushes `app:v1` as the user and signs it by digest.
    fn push_and_sign(client: kube::Client, gitea: &Gitea, keys: Keys) -> Self {
        tokio::task::block_in_place(|| gitea.make_user_private());
        let host = gitea.registry_host();
        let right = gitea.docker_config(gitea::PASSWORD);
        let docker = scratch_dir("docker-login");
        std::fs::write(docker.path().join("config.json"), &right).expect("docker config");
        let image = format!("{host}/{}/app", gitea::USER);
        let digest = tokio::task::block_in_place(|| {
            let digest = push_image_as(Some(docker.path()), &format!("{image}:v1"), "gitea app");
            keys.sign_as(docker.path(), &format!("{image}@{digest}"));
            digest
        });
        let tag = format!("{image}:v1");
        Fixture {
            client,
            host,
            keys,
            right,
            tag,
            digest,
        }
    }
}

/// `app` in [`WITH`], pulling with the pull secret, is Verified; returns when, which is when
/// its registry token was fetched.
async fn verifies_through_the_pull_secret(f: &Fixture) -> Instant {
    let client = &f.client;
    deployment_pulling(client, WITH, "app", &f.tag, Some(&f.digest), Some("regcred")).await;
    let a = wait_verdict(client, DEPLOYMENT, WITH, "app", "Verified", WAIT).await;
    let token_fetched = Instant::now();
    assert_eq!(a["verifiedBy"], "gitea/ci", "{a:?}");
    assert!(!a.contains_key("stale"), "{a:?}");
    counts(client, (1, 1, 0)).await;
    token_fetched
}

/// Every token refused from now on; then a sweep. Returns the registry requests made since,
/// and how old the cached token was by the end of the sweep.
async fn refuse_every_token_then_sweep(
    f: &Fixture,
    gitea: &mut Gitea,
    metrics: &str,
    token_fetched: Instant,
) -> (HashMap<(String, String), f64>, Duration) {
    let before = requests(metrics).await;
    let swept = last_sweep(&f.client, ROOT).await;
    tokio::task::block_in_place(|| gitea.rotate_token_secret());
    root(&f.client, &f.host, &f.keys, "10s").await;
    sweeps_after(&f.client, ROOT, swept, 1, SWEEPS).await;
    let age = token_fetched.elapsed();
    eprintln!("sweep after the rotation: the token was {age:.1?} old");
    (grown(&before, &requests(metrics).await), age)
}

/// The cached token gets a 401 that is answered by a new token.
fn answers_the_401_with_a_new_token(grew: &HashMap<(String, String), f64>, age: Duration) {
    assert!(
        grew.iter()
            .any(|((op, out), _)| op != "token" && out == "unauthorized"),
        "the cached token was refused (it was {age:?} old; kept {TOKEN_KEPT:?}): {grew:?}"
    );
    assert!(
        grew.contains_key(&outcome("token", "ok")),
        "a new token: {grew:?}"
    );
    assert!(!grew.contains_key(&outcome("token", "unauthorized")), "{grew:?}");
}

/// After the refused token, the verdict stands: not stale, and no Event but the first.
async fn keeps_the_verdict_without_an_event(client: &kube::Client) {
    let a = app(client, WITH).await.expect("the recorded verdict");
    assert_eq!(a["verdict"], "Verified", "{a:?}");
    assert!(!a.contains_key("stale"), "{a:?}");
    let seen = by_reason(&events(client, WITH, "Deployment", "app").await.expect("events"));
    assert_eq!(seen, HashMap::from([("SignatureVerified".to_string(), 1)]));
}

/// The pull secret's password made wrong: once the Secret is read again (cached 30 s), the
/// client built from it is refused; the verdict is kept, marked stale.
async fn a_wrong_password_marks_the_verdict_stale(f: &Fixture, gitea: &Gitea) {
    let client = &f.client;
    let changed = Instant::now();
    pull_secret(client, WITH, "regcred", &gitea.docker_config("not-the-password")).await;
    let a = eventually("the verdict kept, marked stale", SWEEPS, || async {
        let a = app(client, WITH).await?;
        ensure!(a.contains_key("stale"), "{a:?}");
        Ok(a)
    })
    .await;
    eprintln!("wrong password → stale after {:.1?}", changed.elapsed());
    assert_eq!(a["stale"], "unauthorized", "{a:?}");
    assert_eq!(a["verdict"], "Verified", "{a:?}");
    let e = wait_event(client, WITH, "Deployment", "app", "VerificationStale", WAIT).await;
    assert_eq!(e.type_, "Warning");
    counts(client, (1, 0, 1)).await;
}

/// Put right: the mark goes at a later sweep, silently.
async fn the_right_password_removes_the_mark_silently(f: &Fixture) {
    let client = &f.client;
    let changed = Instant::now();
    pull_secret(client, WITH, "regcred", &f.right).await;
    let a = eventually("the stale mark gone", SWEEPS, || async {
        let a = app(client, WITH).await?;
        ensure!(!a.contains_key("stale"), "{a:?}");
        Ok(a)
    })
    .await;
    eprintln!("password put right → current after {:.1?}", changed.elapsed());
    assert_eq!(a["verdict"], "Verified", "{a:?}");
    counts(client, (1, 1, 0)).await;
}

/// Another namespace, the same image, no pull secret: never a verdict, sweep after sweep.
async fn without_a_pull_secret_never_a_verdict(f: &Fixture) {
    let client = &f.client;
    namespace(client, WITHOUT, json!({})).await;
    deployment_pulling(client, WITHOUT, "app", &f.tag, Some(&f.digest), None).await;
    let a = wait_verdict(client, DEPLOYMENT, WITHOUT, "app", "Unknown", WAIT).await;
    assert_eq!(a["stale"], "unauthorized", "{a:?}");
    let swept = last_sweep(client, ROOT).await;
    sweeps_after(client, ROOT, swept, 2, SWEEPS).await;
    let a = app(client, WITHOUT).await.expect("the recorded verdict");
    assert_eq!(
        (a["verdict"].as_str(), a["stale"].as_str()),
        ("Unknown", "unauthorized"),
        "{a:?}"
    );
    counts(client, (2, 1, 1)).await;
    let seen = by_reason(
        &events(client, WITHOUT, "Deployment", "app")
            .await
            .expect("events"),
    );
    assert_eq!(seen, HashMap::from([("VerificationStale".to_string(), 1)]));
}

/// The namespace with the secret was not disturbed by the one without.
async fn the_namespace_with_the_secret_is_not_disturbed(client: &kube::Client) {
    let seen = by_reason(&events(client, WITH, "Deployment", "app").await.expect("events"));
    let expected = [("SignatureVerified", 1), ("VerificationStale", 1)]
        .into_iter()
        .map(|(r, n)| (r.to_string(), n))
        .collect();
    assert_eq!(seen, expected, "no drift, no repeat");
}
