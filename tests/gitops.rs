//! TrustSources against a real Gitea and the real local control plane: the gitops controller
//! (as the leader runs it) and the webhook receiver, in-process. Every wait is on a condition
//! reason, a revision or an event reason, never on text or a fixed sleep.

#[path = "operator_common.rs"]
mod operator_common;

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, ensure};
use countersign::{
    admission::certs,
    crd::{SOURCE_LABEL, TrustRoot, TrustSource, TrustSourceStatus},
    gitops::{self, controller::Context},
    operator::metrics::Metrics,
};
use countersign_tests::{
    cluster::LocalCluster,
    gitea::{self, Gitea, WorkTree, ssh_keygen},
    scratch_dir,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::events::{Recorder, Reporter},
};
use operator_common::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);
const SECRETS_NS: &str = LEASE_NAMESPACE;
const WEBHOOK_TOKEN: &str = "webhook-s3cret";

const PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1WANxE1OU1KaI7tHSDWuz4PfiKs0
1Nh1TN+1r2SbZJ/Su/G7BguCOshPNPi6qkeP1FdW3g9FNTMjBv6rFryLLg==
-----END PUBLIC KEY-----
";

fn trust_root_yaml(name: &str, threshold: u32, interval: &str) -> String {
    let pem: String = PEM.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "apiVersion: countersign.dev/v1alpha1\nkind: TrustRoot\nmetadata:\n  name: {name}\nspec:\n  images: [\"registry.example.com/{name}/**\"]\n  keys:\n    - name: ci\n      publicKey: |\n{pem}    - name: ci-next\n      publicKey: |\n{pem}  threshold: {threshold}\n  reverifyInterval: {interval}\n"
    )
}

const ROTATION: &str = "apiVersion: countersign.dev/v1alpha1\nkind: KeyRotation\nmetadata:\n  name: payments-rotation\nspec:\n  trustRootRef: payments\n  fromKey: ci\n  toKey: ci-next\n  window:\n    start: \"2030-01-01T00:00:00Z\"\n    duration: 72h\n";

/// The gitops controller and receiver, as `countersign run` starts them.
struct Gitops {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    webhook: String,
}

impl Drop for Gitops {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

async fn start_gitops(cluster: &LocalCluster, cache: &Path) -> Gitops {
    let client = cluster.client();
    let config = gitops::Config {
        cache_dir: cache.to_path_buf(),
        namespace: SECRETS_NS.into(),
        webhook_addr: None,
        webhook_secret: "git-webhook".into(),
    };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: countersign::operator::CONTROLLER.into(),
            instance: None,
        },
    );
    let ctx = Context::new(client.clone(), config.clone(), recorder, Metrics::new());
    let listener = gitops::receiver::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let webhook = format!(
        "http://{}{}",
        listener.local_addr().unwrap(),
        gitops::receiver::PATH
    );
    let receiver_client = client.clone();
    let tasks = vec![
        tokio::spawn(gitops::controller::run(ctx)),
        tokio::spawn(async move {
            let router = gitops::receiver::router(receiver_client, &config);
            let served =
                countersign::server::serve("git webhook", listener, router, None, std::future::pending());
            let _ = served.await;
        }),
    ];
    Gitops { tasks, webhook }
}

async fn secret(client: &Client, name: &str, data: Value) {
    let api: Api<Secret> = Api::namespaced(client.clone(), SECRETS_NS);
    let body: Secret =
        serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    api.patch(name, &PatchParams::apply("tests").force(), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("secret {name}: {e}"));
}

async fn trust_source(client: &Client, name: &str, spec: Value) {
    apply(
        client,
        "countersign.dev/v1alpha1",
        "TrustSource",
        None,
        json!({"metadata": {"name": name}, "spec": spec}),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

async fn source_status(client: &Client, name: &str) -> anyhow::Result<TrustSourceStatus> {
    Api::<TrustSource>::all(client.clone())
        .get(name)
        .await?
        .status
        .context("no status yet")
}

/// Waits until the TrustSource's Ready condition has `reason` and `check` holds; returns the status.
async fn wait_ready(
    client: &Client,
    name: &str,
    reason: &str,
    check: impl Fn(&TrustSourceStatus) -> bool,
) -> TrustSourceStatus {
    eventually(&format!("TrustSource {name} to be {reason}"), WAIT, || async {
        let s = source_status(client, name).await?;
        let ready = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .context("no Ready")?;
        ensure!(ready.reason == reason && check(&s), "status {s:?}");
        Ok(s)
    })
    .await
}

fn revision(commit: &str) -> String {
    format!("main@sha1:{commit}")
}

async fn threshold(client: &Client, name: &str) -> anyhow::Result<i32> {
    Ok(Api::<TrustRoot>::all(client.clone())
        .get(name)
        .await?
        .spec
        .threshold)
}

/// Over HTTP with basic auth: wrong password, first sync, a push through the webhook (a
/// KeyRotation arriving), a broken commit, recovery, prune, a manual edit reverted, bomb YAML,
/// force-pushed history, a deleted branch, the server down. Credentials never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trust_source_over_http_follows_its_branch() {
    let mut gitea = blocking(Gitea::start).await;
    let cluster = cluster().await;
    let client = cluster.client();
    let cache = scratch_dir("git-cache");
    let ops = start_gitops(&cluster, cache.path()).await;
    secret(&client, "git-webhook", json!({"token": WEBHOOK_TOKEN})).await;
    let team = Team::new(&client, &gitea, &ops.webhook);
    let first = pushes_a_first_trust_root(&team);

    refuses_a_wrong_password_without_showing_it(&team).await;
    applies_the_branchs_trust_roots(&team, &first).await;
    let second = applies_a_push_the_webhook_announces(&team).await;
    keeps_the_last_good_revision_over_a_broken_commit(&team, &second).await;
    let fixed = recovers_and_prunes_a_removed_file(&team).await;
    reverts_a_manual_edit_and_announces_it_once(&team).await;
    refuses_a_yaml_bomb(&team, &fixed).await;
    let rewritten = follows_force_pushed_history(&team, &fixed).await;
    let after_outage = keeps_its_revision_while_the_server_is_down(&team, &mut gitea, &rewritten).await;
    keeps_everything_when_its_branch_is_deleted(&team, &after_outage).await;
    shows_no_credential(&client).await;
    drop(ops);
    drop(team);
    drop(gitea);
    cluster.stop();
}

/// The `team` TrustSource and what it follows: the `trust` repository on Gitea over HTTP, and a
/// work tree that pushes to it.
struct Team<'a> {
    client: &'a Client,
    tree: WorkTree,
    url: String,
}

impl<'a> Team<'a> {
    /// Creates the repository, with a push webhook to the receiver.
    fn new(client: &'a Client, gitea: &Gitea, webhook: &str) -> Self {
        gitea.create_repo("trust");
        gitea.add_webhook("trust", webhook, WEBHOOK_TOKEN);
        let tree = WorkTree::new(gitea, "trust");
        let url = gitea.http_url("trust");
        Team { client, tree, url }
    }

    /// The `git-http` Secret: Gitea's user with `password`.
    async fn password(&self, password: &str) {
        let data = json!({"username": gitea::USER, "password": password});
        secret(self.client, "git-http", data).await;
    }

    /// Applies the TrustSource: `branch`'s `trust/` folder, fetched every `interval` as `git-http`.
    async fn follow(&self, branch: &str, interval: &str) {
        let spec = json!({"url": self.url, "ref": {"branch": branch}, "path": "trust", "interval": interval, "secretRef": {"name": "git-http"}});
        trust_source(self.client, "team", spec).await;
    }

    /// Commits everything and pushes it to `main`; returns the commit id.
    fn commit_and_push(&self, message: &str) -> String {
        let commit = self.tree.commit(message, None);
        self.tree.push(false);
        commit
    }

    /// Waits until the source is Ready with `reason` and `revision` is the last it applied.
    async fn wait_applied(&self, reason: &str, revision: &str) -> TrustSourceStatus {
        wait_ready(self.client, "team", reason, |s| {
            s.last_applied_revision.as_deref() == Some(revision)
        })
        .await
    }

    /// Waits until the source is Ready with `reason` and `revision` is the last it attempted.
    async fn wait_attempted(&self, reason: &str, revision: &str) -> TrustSourceStatus {
        wait_ready(self.client, "team", reason, |s| {
            s.last_attempted_revision.as_deref() == Some(revision)
        })
        .await
    }
}

/// A TrustRoot under `trust/`, and a README outside it that is never read; returns the commit.
fn pushes_a_first_trust_root(team: &Team<'_>) -> String {
    team.tree
        .write("trust/payments.yaml", &trust_root_yaml("payments", 1, "10m"));
    team.tree.write("README.md", "not YAML, not read\n");
    team.commit_and_push("payments trust root")
}

/// Wrong password: nothing applied, the reason says why, the password is nowhere.
async fn refuses_a_wrong_password_without_showing_it(team: &Team<'_>) {
    team.password("wrong-pa55").await;
    team.follow("main", "1h").await;
    let failed = wait_ready(team.client, "team", "FetchFailed", |s| {
        s.last_applied_revision.is_none()
    })
    .await;
    assert!(!format!("{failed:?}").contains("wrong-pa55"));
}

/// The right password: first sync, the TrustRoot labelled with the source that applied it.
async fn applies_the_branchs_trust_roots(team: &Team<'_>, first: &str) {
    team.password(gitea::PASSWORD).await;
    // A spec change (interval) makes the controller look again at once.
    team.follow("main", "59m").await;
    let synced = team.wait_applied("Synced", &revision(first)).await;
    assert_eq!(synced.inventory.len(), 1);
    let root = Api::<TrustRoot>::all(team.client.clone())
        .get("payments")
        .await
        .unwrap();
    assert_eq!(
        root.metadata
            .labels
            .unwrap()
            .get(SOURCE_LABEL)
            .map(String::as_str),
        Some("team")
    );
    wait_event(team.client, "default", "TrustSource", "team", "Synced", WAIT).await;
}

/// A push arrives through the webhook (the interval is an hour): a KeyRotation comes in.
async fn applies_a_push_the_webhook_announces(team: &Team<'_>) -> String {
    team.tree.write("trust/rotation.yaml", ROTATION);
    let second = team.commit_and_push("rotate payments");
    let pushed = team.wait_applied("Synced", &revision(&second)).await;
    assert!(pushed.last_handled_requested_at.is_some(), "{pushed:?}");
    let rotation = dynamic(team.client, "countersign.dev/v1alpha1", "KeyRotation", None)
        .get("payments-rotation")
        .await
        .unwrap();
    assert_eq!(rotation.data["spec"]["toKey"], "ci-next");
    second
}

/// A broken commit applies nothing: the last good revision stays in force, and the failure
/// names the file, the document and the field.
async fn keeps_the_last_good_revision_over_a_broken_commit(team: &Team<'_>, good: &str) {
    team.tree.write(
        "trust/payments.yaml",
        &trust_root_yaml("payments", 2, "10 minutes"),
    );
    team.tree
        .write("trust/other.yaml", &trust_root_yaml("other", 1, "10m"));
    let broken = team.commit_and_push("broken");
    let status = team.wait_attempted("InvalidObject", &revision(&broken)).await;
    assert_eq!(status.last_applied_revision, Some(revision(good)));
    let failure = status.failure.clone().unwrap();
    assert_eq!(failure.file.as_deref(), Some("trust/payments.yaml"));
    assert_eq!(failure.document, Some(0));
    assert_eq!(failure.field.as_deref(), Some("spec.reverifyInterval"));
    assert_eq!(threshold(team.client, "payments").await.unwrap(), 1);
    assert!(
        Api::<TrustRoot>::all(team.client.clone())
            .get_opt("other")
            .await
            .unwrap()
            .is_none()
    );
    wait_event(team.client, "default", "TrustSource", "team", "SyncFailed", WAIT).await;
}

/// Recovery, and prune: the rotation file is removed, and so is its KeyRotation.
async fn recovers_and_prunes_a_removed_file(team: &Team<'_>) -> String {
    team.tree
        .write("trust/payments.yaml", &trust_root_yaml("payments", 2, "10m"));
    team.tree.remove("trust/rotation.yaml");
    let fixed = team.commit_and_push("fixed; rotation dropped");
    team.wait_applied("Synced", &revision(&fixed)).await;
    assert_eq!(threshold(team.client, "payments").await.unwrap(), 2);
    eventually("the rotation pruned", WAIT, || async {
        let r = dynamic(team.client, "countersign.dev/v1alpha1", "KeyRotation", None)
            .get_opt("payments-rotation")
            .await?;
        ensure!(r.is_none(), "still there");
        Ok(())
    })
    .await;
    fixed
}

/// A manual edit is reverted within one interval and announced once.
async fn reverts_a_manual_edit_and_announces_it_once(team: &Team<'_>) {
    team.follow("main", "5s").await;
    let roots = dynamic(team.client, "countersign.dev/v1alpha1", "TrustRoot", None);
    roots
        .patch(
            "payments",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"threshold": 1}})),
        )
        .await
        .unwrap();
    eventually("the manual edit reverted", WAIT, || async {
        ensure!(
            threshold(team.client, "payments").await? == 2,
            "threshold still edited"
        );
        Ok(())
    })
    .await;
    let reverted = wait_event(
        team.client,
        "default",
        "TrustSource",
        "team",
        "ManualEditReverted",
        WAIT,
    )
    .await;
    assert_eq!(reverted.count, 1);
}

/// Bomb YAML: refused, nothing applied.
async fn refuses_a_yaml_bomb(team: &Team<'_>, fixed: &str) {
    team.tree.write("trust/bomb.yaml", &yaml_bomb());
    let bombed = team.commit_and_push("bomb");
    let status = team.wait_attempted("InvalidObject", &revision(&bombed)).await;
    assert_eq!(status.failure.unwrap().file.as_deref(), Some("trust/bomb.yaml"));
    assert_eq!(status.last_applied_revision, Some(revision(fixed)));
}

/// A few hundred bytes of aliases, nine to a level and ten levels deep: 9^10 scalars expanded.
fn yaml_bomb() -> String {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    bomb
}

/// Force-pushed history: the branch is rewritten to a new commit on top of `fixed`, the bomb
/// dropped.
async fn follows_force_pushed_history(team: &Team<'_>, fixed: &str) -> String {
    team.tree.git(&["reset", "-q", "--hard", fixed]);
    team.tree
        .write("trust/payments.yaml", &trust_root_yaml("payments", 1, "10m"));
    let rewritten = team.tree.commit("rewritten", None);
    team.tree.push(true);
    team.wait_applied("Synced", &revision(&rewritten)).await;
    assert_eq!(threshold(team.client, "payments").await.unwrap(), 1);
    rewritten
}

/// The server down: the last revision stays in force; back up, synced again.
async fn keeps_its_revision_while_the_server_is_down(
    team: &Team<'_>,
    gitea: &mut Gitea,
    rewritten: &str,
) -> String {
    gitea.stop();
    team.wait_applied("FetchFailed", &revision(rewritten)).await;
    assert!(
        Api::<TrustRoot>::all(team.client.clone())
            .get_opt("payments")
            .await
            .unwrap()
            .is_some()
    );
    gitea.restart();
    team.tree
        .write("trust/payments.yaml", &trust_root_yaml("payments", 2, "10m"));
    let after_outage = team.commit_and_push("after the outage");
    team.wait_applied("Synced", &revision(&after_outage)).await;
    after_outage
}

/// The branch deleted: a fetch error, the last revision stays in force, nothing is pruned.
/// (Gitea refuses to delete its default branch, so the source follows another one first.)
async fn keeps_everything_when_its_branch_is_deleted(team: &Team<'_>, after_outage: &str) {
    team.tree.push_to("staging", false);
    team.follow("staging", "5s").await;
    let staging = format!("staging@sha1:{after_outage}");
    team.wait_applied("Synced", &staging).await;
    team.tree.delete_remote_branch("staging");
    let status = team.wait_applied("FetchFailed", &staging).await;
    assert_eq!(status.inventory.len(), 2, "{status:?}");
    assert_eq!(threshold(team.client, "payments").await.unwrap(), 2);
}

/// No credential anywhere a person or a scraper looks: the source's status and its Events.
async fn shows_no_credential(client: &Client) {
    let status = format!("{:?}", source_status(client, "team").await.unwrap());
    let events = format!(
        "{:?}",
        events(client, "default", "TrustSource", "team").await.unwrap()
    );
    for text in [&status, &events] {
        assert!(
            !text.contains(gitea::PASSWORD) && !text.contains(WEBHOOK_TOKEN),
            "{text}"
        );
    }
}

/// Over SSH: the host key must be in the Secret's known_hosts (a wrong one is refused), and with
/// `verify` only commits signed by an allowed signer (SSH signature, made by the real `git`) are
/// applied; an unsigned commit is refused with the last signed one left in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_ssh_host_keys_are_checked_and_commits_must_be_signed() {
    let gitea = blocking(Gitea::start).await;
    let cluster = cluster().await;
    let client = cluster.client();
    let cache = scratch_dir("git-cache");
    let _ops = start_gitops(&cluster, cache.path()).await;
    let keys = scratch_dir("ssh-keys");
    let (deploy_key, deploy_pub) = ssh_keygen(keys.path(), "deploy");
    let (signing_key, signing_pub) = ssh_keygen(keys.path(), "signer");
    let (_, stranger_pub) = ssh_keygen(keys.path(), "stranger");
    gitea.create_repo("signed");
    gitea.add_ssh_key("deploy", &deploy_pub);
    let tree = WorkTree::new(&gitea, "signed");
    tree.write("payments.yaml", &trust_root_yaml("payments", 1, "10m"));
    let signed = tree.commit("signed", Some(&signing_key));
    tree.push(false);

    let identity = std::fs::read_to_string(&deploy_key).unwrap();
    let wrong_host = format!("[127.0.0.1]:{} {stranger_pub}\n", gitea.ssh_port);
    secret(
        &client,
        "git-ssh",
        json!({"identity": identity, "known_hosts": wrong_host}),
    )
    .await;
    create(
        &client,
        "v1",
        "ConfigMap",
        Some(SECRETS_NS),
        json!({"metadata": {"name": "signers"}, "data": {"allowed_signers": format!("platform@example.com {signing_pub}\n")}}),
    )
    .await;
    trust_source(
        &client,
        "signed",
        json!({
            "url": gitea.ssh_url("signed"),
            "ref": {"branch": "main"},
            "interval": "5s",
            "secretRef": {"name": "git-ssh"},
            "verify": {"mode": "SSH", "configMapRef": {"name": "signers"}},
        }),
    )
    .await;
    wait_ready(&client, "signed", "HostKeyMismatch", |s| {
        s.last_applied_revision.is_none()
    })
    .await;
    assert!(
        Api::<TrustRoot>::all(client.clone())
            .get_opt("payments")
            .await
            .unwrap()
            .is_none(),
        "nothing applied from an unverified host"
    );

    // The real host key: the signed commit is applied.
    secret(
        &client,
        "git-ssh",
        json!({"identity": identity, "known_hosts": gitea.known_hosts()}),
    )
    .await;
    wait_ready(&client, "signed", "Synced", |s| {
        s.last_applied_revision.as_deref() == Some(&revision(&signed))
    })
    .await;
    assert_eq!(threshold(&client, "payments").await.unwrap(), 1);

    // An unsigned commit is never applied.
    tree.write("payments.yaml", &trust_root_yaml("payments", 2, "10m"));
    let unsigned = tree.commit("unsigned", None);
    tree.push(false);
    let status = wait_ready(&client, "signed", "SignatureInvalid", |s| {
        s.last_attempted_revision.as_deref() == Some(&revision(&unsigned))
    })
    .await;
    assert_eq!(status.last_applied_revision, Some(revision(&signed)));
    assert_eq!(threshold(&client, "payments").await.unwrap(), 1);
    let text = format!("{status:?}");
    assert!(!text.contains("PRIVATE KEY") && !text.contains(identity.lines().nth(1).unwrap()));

    // Signed again: applied.
    let resigned = tree.commit_amend_signed(&signing_key);
    tree.push(true);
    wait_ready(&client, "signed", "Synced", |s| {
        s.last_applied_revision.as_deref() == Some(&revision(&resigned))
    })
    .await;
    assert_eq!(threshold(&client, "payments").await.unwrap(), 2);
    drop(gitea);
    cluster.stop();
}

/// Over HTTPS (Gitea serving a certificate from a CA the test makes): without `ca.crt` (the
/// system's roots) or with another CA, Ready=False `CertificateInvalid` and nothing applied; with
/// the CA, synced. Then a server that accepts the connection and never answers: the fetch ends at
/// the source's timeout (not libgit2's read timeout), the last good revision stays in force.
/// Credentials never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_https_the_ca_bundle_is_checked_and_a_silent_server_times_out() {
    let gitea = blocking(Gitea::start_https).await;
    let cluster = cluster().await;
    let client = cluster.client();
    let cache = scratch_dir("git-cache");
    let _ops = start_gitops(&cluster, cache.path()).await;
    gitea.create_repo("tls");
    let tree = WorkTree::new(&gitea, "tls");
    tree.write("payments.yaml", &trust_root_yaml("tls-payments", 1, "10m"));
    let first = tree.commit("over https", None);
    tree.push(false);
    let url = gitea.http_url("tls");
    assert!(url.starts_with("https://"), "{url}");
    let ca = gitea.ca_pem.clone().unwrap();
    let other_ca = certs::new_ca("someone-else", SystemTime::now(), Duration::from_secs(3600))
        .unwrap()
        .cert;
    let basic = json!({"username": gitea::USER, "password": gitea::PASSWORD});
    let with_ca = |pem: &str| {
        let mut data = basic.clone();
        data["ca.crt"] = json!(pem);
        data
    };
    secret(&client, "git-https-system", basic.clone()).await;
    secret(&client, "git-https-other", with_ca(&other_ca)).await;
    secret(&client, "git-https", with_ca(&ca)).await;
    let spec = |secret: &str| json!({"url": url, "ref": {"branch": "main"}, "interval": "5s", "secretRef": {"name": secret}});

    // Refused: the system's roots do not know the test's CA; another CA did not issue it.
    trust_source(&client, "tls-system", spec("git-https-system")).await;
    trust_source(&client, "tls-other", spec("git-https-other")).await;
    for name in ["tls-system", "tls-other"] {
        let status = wait_ready(&client, name, "CertificateInvalid", |s| {
            s.last_applied_revision.is_none()
        })
        .await;
        assert_eq!(status.failure.unwrap().reason, "CertificateInvalid");
        wait_event(&client, "default", "TrustSource", name, "SyncFailed", WAIT).await;
    }
    assert!(
        Api::<TrustRoot>::all(client.clone())
            .get_opt("tls-payments")
            .await
            .unwrap()
            .is_none(),
        "nothing applied from an untrusted server"
    );

    // The CA in ca.crt: synced over HTTPS with basic auth.
    trust_source(&client, "tls", spec("git-https")).await;
    wait_ready(&client, "tls", "Synced", |s| {
        s.last_applied_revision.as_deref() == Some(&revision(&first))
    })
    .await;
    assert_eq!(threshold(&client, "tls-payments").await.unwrap(), 1);

    // A server that accepts TCP and never answers (a listener nobody reads from): the fetch ends
    // at the source's 2s timeout, long before libgit2's read timeout would free it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("https://{}/countersign/tls.git", silent.local_addr().unwrap());
    let asked = std::time::Instant::now();
    trust_source(
        &client,
        "tls",
        json!({"url": silent_url, "ref": {"branch": "main"}, "interval": "5s", "timeout": "2s", "secretRef": {"name": "git-https"}}),
    )
    .await;
    let status = wait_ready(&client, "tls", "LimitExceeded", |s| {
        s.last_applied_revision.as_deref() == Some(&revision(&first))
    })
    .await;
    let waited = asked.elapsed();
    assert!(
        waited < gitops::fetch::READ_TIMEOUT,
        "the silent server was given up on after {waited:?}"
    );
    assert_eq!(status.inventory.len(), 1, "{status:?}");
    assert_eq!(threshold(&client, "tls-payments").await.unwrap(), 1);

    for name in ["tls-system", "tls-other", "tls"] {
        let status = format!("{:?}", source_status(&client, name).await.unwrap());
        let events = format!(
            "{:?}",
            events(&client, "default", "TrustSource", name).await.unwrap()
        );
        for text in [&status, &events] {
            assert!(!text.contains(gitea::PASSWORD), "{text}");
        }
    }
    drop(silent);
    drop(gitea);
    cluster.stop();
}
