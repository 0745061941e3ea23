//! The binary with least privilege: `countersign run` through a ServiceAccount token bound by
//! exactly `manifests/rbac.yaml`, doing every part of its job without one refused request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use countersign::crd::{TrustRoot, WorkloadVerdict};
use countersign_tests::admission::deployment;
use countersign_tests::cluster::{Audited, LocalCluster, create};
use countersign_tests::cosign::{Cosign, CosignVersion};
use countersign_tests::http::{http_get, http_request};
use countersign_tests::images::push_image;
use countersign_tests::ports;
use countersign_tests::registry::{Registry, RegistryKind};
use countersign_tests::replica::Replica;
use countersign_tests::{countersign_bin, repo_root, scratch_dir};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{NS, RUN_LEASE, WAIT, create_namespace, eventually, holder, install_crds, namespace};

/// `countersign run` with exactly the permissions of `manifests/rbac.yaml`, as its
/// ServiceAccount (a TokenRequest token in a kubeconfig of its own): it takes the Lease, reads a
/// key from a Secret, writes TrustRoot status, records workloads' verdicts, emits Events, answers
/// a Git push, keeps the webhook's caBundle and writes PolicyReports, and the API server's audit
/// log holds no request of it refused. Each step checks for refusals while it waits, so that a
/// missing permission fails the test at once, naming the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn countersign_run_needs_no_more_than_the_rbac_in_manifests() {
    let bin = tokio::task::spawn_blocking(countersign_bin).await.unwrap();
    let registry = Registry::start(RegistryKind::Referrers);
    let dir = scratch_dir("least-privilege");
    let images = Images::push_and_sign(&registry, dir.path());

    let cluster = LocalCluster::start()
        .await
        .expect("start the local control plane");
    let admin = cluster.client();
    install_crds(&admin).await;
    create_namespace(&admin, NS).await;
    create_namespace(&admin, "apps").await;
    let applied = apply_rbac_manifest(&admin).await;
    eprintln!("applied {}", applied.join(", "));
    let token = service_account_token(&admin).await;
    let refusals = Refusals::of(&cluster, &format!("system:serviceaccount:{NS}:countersign"));
    the_token_is_limited(&cluster, &token, &refusals).await;
    let kubeconfig = token_kubeconfig(cluster.kubeconfig_path(), &token, dir.path());
    create_what_the_operator_works_on(&admin, &registry, &images).await;

    let started = Instant::now();
    let mut args = manifest_run_args();
    // PolicyReports (an optional flag, off in the manifests): on here, so that writing them runs
    // under the same RBAC.
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

    records_both_verdicts(&admin, &refusals).await;
    eprintln!("workloads recorded after {:.1}s", started.elapsed().as_secs_f64());
    answers_a_git_push(&replica, &refusals).await;
    fills_in_the_webhook_ca_bundle(&admin, &refusals).await;
    writes_trust_root_status(&admin, &refusals).await;
    emits_an_unsigned_event(&admin, &refusals).await;
    writes_and_deletes_policy_reports(&admin, &refusals).await;

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

/// Two images in a real registry, one signed by a key cosign made, one not signed at all.
struct Images {
    public_key: PathBuf,
    signed: String,
    unsigned: String,
}

impl Images {
    fn push_and_sign(registry: &Registry, dir: &Path) -> Self {
        let cosign = Cosign::new(CosignVersion::V3);
        let (private, public_key) = cosign.generate_key_pair(dir, "ci");
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
        Self {
            public_key,
            signed,
            unsigned,
        }
    }
}

/// A token of the `countersign` ServiceAccount, from a TokenRequest.
async fn service_account_token(admin: &kube::Client) -> String {
    Api::<ServiceAccount>::namespaced(admin.clone(), NS)
        .create_token_request("countersign", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("a token for the countersign ServiceAccount")
        .status
        .and_then(|s| s.token)
        .expect("a token in the TokenRequest status")
}

/// The token really is limited: it may not, say, create a namespace. And the API server's audit
/// log, which the test reads for refusals, records that refusal.
async fn the_token_is_limited(cluster: &LocalCluster, token: &str, refusals: &Refusals<'_>) {
    let refused = Api::<Namespace>::all(cluster.client_with_token(token))
        .create(&PostParams::default(), &namespace("not-allowed"))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403),
        "{refused:?}"
    );
    eventually("the audit log to record the refusal", WAIT, || async {
        let probes = refusals.all().iter().filter(|r| Refusals::is_probe(r)).count();
        anyhow::ensure!(probes == 1, "{probes} refused namespace creations audited");
        Ok(())
    })
    .await;
}

/// What the operator reads and writes, created as the admin: the key's Secret (read, as cosign's
/// `k8s://` keys are), the TrustRoot, the two Deployments, the Git receiver's Secret, the
/// admission webhook's configuration (its caBundle kept in step) and the PolicyReport CRD.
async fn create_what_the_operator_works_on(admin: &kube::Client, registry: &Registry, images: &Images) {
    let pem = std::fs::read_to_string(&images.public_key).unwrap();
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
    create(&deployments, deployment("signed", &images.signed)).await;
    create(&deployments, deployment("unsigned", &images.unsigned)).await;

    // The webhook receiver's Secret (the manifests' Deployment serves the receiver).
    let webhook =
        json!({"metadata": {"name": "countersign-git-webhook"}, "stringData": {"token": "hook-t0ken"}});
    create(&Api::<Secret>::namespaced(admin.clone(), NS), webhook).await;
    // Ignore instead of Fail: nothing serves the webhook's Service here, and the Deployments'
    // pods must still be created.
    let validating = webhook_configuration_failing_open();
    create(
        &Api::<ValidatingWebhookConfiguration>::all(admin.clone()),
        validating,
    )
    .await;
    install_policy_report_crd(admin).await;
}

async fn records_both_verdicts(admin: &kube::Client, refusals: &Refusals<'_>) {
    let verdicts: Api<WorkloadVerdict> = Api::namespaced(admin.clone(), "apps");
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
}

/// A push webhook call, authenticated with the Secret's token: the receiver reads the Secret and
/// looks for the TrustSources of the repository (none here) under the same RBAC.
async fn answers_a_git_push(replica: &Replica, refusals: &Refusals<'_>) {
    let receiver = eventually("the git webhook receiver to listen", WAIT, || async {
        for port in ports::listening_ports(replica.child.id()) {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            // The metrics server answers /metrics; the receiver only /hooks/git.
            if matches!(http_get(addr, "/metrics").await, Ok((404, _))) {
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
    .await
    .expect("POST /hooks/git");
    let answer: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!((code, &answer["triggered"]), (202, &json!(0)), "{body}");
    refusals.assert_none();
}

/// The webhook certificates: the Secret created, the caBundle filled in.
async fn fills_in_the_webhook_ca_bundle(admin: &kube::Client, refusals: &Refusals<'_>) {
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
}

async fn writes_trust_root_status(admin: &kube::Client, refusals: &Refusals<'_>) {
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
}

async fn emits_an_unsigned_event(admin: &kube::Client, refusals: &Refusals<'_>) {
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
}

/// A PolicyReport with a pass and a fail, and its deletion once the namespace has nothing
/// governed left (the Deployments deleted).
async fn writes_and_deletes_policy_reports(admin: &kube::Client, refusals: &Refusals<'_>) {
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
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "apps");
    for name in ["signed", "unsigned"] {
        deployments
            .delete(name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }
    eventually("the emptied namespace's PolicyReport deleted", WAIT, || async {
        refusals.assert_none();
        let left = reports.get_opt("countersign").await?;
        anyhow::ensure!(left.is_none(), "still there");
        Ok(())
    })
    .await;
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

/// Creates every object of `manifests/rbac.yaml`, namespaced ones in the controller's namespace
/// (as kustomize would). Returns `Kind/name` of each.
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

/// Who holds Lease `name`, if it exists yet; an error is for the caller's poll to retry.
async fn lease_holder(leases: &Api<Lease>, name: &str) -> anyhow::Result<Option<String>> {
    let lease = leases.get_opt(name).await?;
    Ok(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity))
}
