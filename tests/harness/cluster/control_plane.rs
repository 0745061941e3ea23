//! The control plane's servers and controllers: etcd, kube-apiserver (its credentials and admin
//! kubeconfig), kube-controller-manager and kube-scheduler, each on fresh ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::component::{Component, probe_get, start_with_retry, wait_healthz, wait_http};
use super::{APISERVER_TIMEOUT, AUDIT_LOG, AUDIT_POLICY};

/// Service IPs. Kept apart from the pod range so neither hides the other in a test's output.
const SERVICE_CIDR: &str = "10.96.0.0/16";
const ETCD_TIMEOUT: Duration = Duration::from_secs(30);

/// Files every component shares: the static token file and the service-account key pair.
pub(super) struct Credentials {
    token_file: PathBuf,
    sa_private: PathBuf,
    sa_public: PathBuf,
}

/// Writes the admin token file (`token,user,uid,"groups"`) and an ECDSA P-256 service-account
/// key pair (PKCS#8 / SPKI PEM), which kube-apiserver signs and checks ServiceAccount tokens with.
pub(super) fn write_credentials(dir: &Path, admin_token: &str) -> Result<Credentials> {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    let token_file = dir.join("tokens.csv");
    write_private(
        &token_file,
        format!("{admin_token},admin,admin,\"system:masters\"\n").as_bytes(),
    )?;

    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encode service-account key")?;
    let public = key
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encode service-account public key")?;
    let sa_private = dir.join("sa.key");
    let sa_public = dir.join("sa.pub");
    write_private(&sa_private, private.as_bytes())?;
    std::fs::write(&sa_public, public).with_context(|| format!("write {}", sa_public.display()))?;
    Ok(Credentials {
        token_file,
        sa_private,
        sa_public,
    })
}

/// Writes a file only its owner may read: it holds a credential.
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("write {}", path.display()))
}

/// etcd on a client and a peer port, with fsync off (test data is disposable).
pub(super) async fn start_etcd(binary: &Path, dir: &Path) -> Result<(Component, String)> {
    let data = dir.join("etcd");
    start_with_retry(
        2,
        |ports| {
            let client = format!("http://127.0.0.1:{}", ports[0]);
            let peer = format!("http://127.0.0.1:{}", ports[1]);
            let args = vec![
                "--name=default".to_owned(),
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster=default={peer}"),
                "--unsafe-no-fsync".to_owned(),
                "--log-level=warn".to_owned(),
            ];
            Component::spawn("etcd", binary, &args, dir)
        },
        |component, ports| async move {
            let url = format!("http://127.0.0.1:{}", ports[0]);
            let (component, outcome) = wait_http(component, url.clone(), "/health", ETCD_TIMEOUT).await;
            (component, outcome.map(|()| url))
        },
    )
    .await
}

/// kube-apiserver, its URL, its admin kubeconfig and the matching client configuration.
pub(super) struct ApiServer {
    pub(super) component: Component,
    pub(super) url: String,
    pub(super) kubeconfig: PathBuf,
    pub(super) config: kube::Config,
}

/// kube-apiserver with envtest's flags, RBAC authorization and static-token authentication. It
/// generates its own self-signed serving certificate in its cert dir; the kubeconfig trusts that
/// certificate's CA, so clients verify TLS for real.
pub(super) async fn start_apiserver(
    binary: &Path,
    dir: &Path,
    files: &Credentials,
    etcd_url: &str,
    admin_token: &str,
    extra_args: &[String],
) -> Result<ApiServer> {
    let cert_dir = dir.join("apiserver-certs");
    let kubeconfig = dir.join("kubeconfig");
    let (cert_dir, kubeconfig) = (&cert_dir, &kubeconfig);
    let audit_policy = dir.join("audit-policy.yaml");
    std::fs::write(&audit_policy, AUDIT_POLICY)
        .with_context(|| format!("write {}", audit_policy.display()))?;
    let audit_log = dir.join(AUDIT_LOG);
    let (component, (url, config)) = start_with_retry(
        1,
        |ports| {
            let port = ports[0];
            let args = vec![
                format!("--etcd-servers={etcd_url}"),
                format!("--cert-dir={}", cert_dir.display()),
                format!("--secure-port={port}"),
                "--bind-address=127.0.0.1".to_owned(),
                "--advertise-address=127.0.0.1".to_owned(),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--allow-privileged=true".to_owned(),
                // As envtest: with it on, a pod in a namespace whose `default` ServiceAccount the
                // controller-manager has not created yet is refused, a race in every test.
                "--disable-admission-plugins=ServiceAccount".to_owned(),
                "--authorization-mode=Node,RBAC".to_owned(),
                format!("--token-auth-file={}", files.token_file.display()),
                format!("--service-account-issuer=https://127.0.0.1:{port}"),
                format!("--service-account-key-file={}", files.sa_public.display()),
                format!(
                    "--service-account-signing-key-file={}",
                    files.sa_private.display()
                ),
                "--profiling=false".to_owned(),
                format!("--audit-policy-file={}", audit_policy.display()),
                format!("--audit-log-path={}", audit_log.display()),
                // Each event is written before the response is finished, so a client that got
                // its answer finds the request in the log.
                "--audit-log-mode=blocking".to_owned(),
                // Its lease-based reconciler would publish 127.0.0.1 as the `kubernetes`
                // Service's endpoint, which validation refuses (loopback), every 10 seconds.
                "--endpoint-reconciler-type=none".to_owned(),
            ];
            let args = [args.as_slice(), extra_args].concat();
            Component::spawn("kube-apiserver", binary, &args, dir)
        },
        |mut component, ports| async move {
            let url = format!("https://127.0.0.1:{}", ports[0]);
            let outcome = wait_apiserver(&mut component, &url, cert_dir, kubeconfig, admin_token).await;
            (component, outcome.map(|config| (url, config)))
        },
    )
    .await?;
    Ok(ApiServer {
        component,
        url,
        kubeconfig: kubeconfig.to_path_buf(),
        config,
    })
}

/// Waits for kube-apiserver's certificate, writes the kubeconfig that trusts it, then waits for
/// /readyz (which includes RBAC's bootstrap roles) through that kubeconfig's client.
async fn wait_apiserver(
    component: &mut Component,
    url: &str,
    cert_dir: &Path,
    kubeconfig: &Path,
    admin_token: &str,
) -> Result<kube::Config> {
    let cert = cert_dir.join("apiserver.crt");
    // The certificate appears before the port serves. The file exists (empty) a moment before
    // it is written: wait for a whole PEM bundle, not for the file.
    component
        .wait_until("writing its serving certificate", APISERVER_TIMEOUT, || {
            let pem = std::fs::read_to_string(&cert).unwrap_or_default();
            let outcome = if pem.trim_end().ends_with("-----END CERTIFICATE-----") {
                ca_of(&pem).map(drop)
            } else {
                Err(anyhow!("no certificate in {} yet", cert.display()))
            };
            std::future::ready(outcome)
        })
        .await?;
    let config = write_kubeconfig(kubeconfig, url, &cert, admin_token).await?;
    let client = kube::Client::try_from(config.clone()).context("build the admin client")?;
    component
        .wait_until("ready (/readyz)", APISERVER_TIMEOUT, || {
            probe_get(&client, "/readyz")
        })
        .await?;
    Ok(config)
}

/// Writes the admin kubeconfig and loads it the way any kube client would.
async fn write_kubeconfig(path: &Path, url: &str, cert: &Path, token: &str) -> Result<kube::Config> {
    use base64::Engine;

    let pem = std::fs::read_to_string(cert).with_context(|| format!("read {}", cert.display()))?;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_of(&pem)?);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: countersign-local
  cluster:
    server: {url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: countersign-local
  context:
    cluster: countersign-local
    user: admin
current-context: countersign-local
"
    );
    write_private(path, text.as_bytes())?;
    let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("read {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("load {}", path.display()))
}

/// The CA of kube-apiserver's self-signed bundle: the file holds the serving certificate followed
/// by the CA that signed it; a lone certificate is its own CA.
fn ca_of(bundle: &str) -> Result<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let start = bundle
        .rfind(BEGIN)
        .context("no certificate in the API server's bundle")?;
    Ok(bundle[start..].to_owned())
}

/// What the API server's clients share.
pub(super) struct ClientContext<'a> {
    pub(super) dir: &'a Path,
    pub(super) kubeconfig: &'a Path,
    pub(super) files: &'a Credentials,
}

/// kube-controller-manager with every default controller, acting as the admin (no per-controller
/// ServiceAccount credentials: fewer moving parts, same controllers), and a high client QPS so a
/// benchmark's thousands of pods are created promptly.
pub(super) async fn start_controller_manager(binary: &Path, ctx: &ClientContext<'_>) -> Result<Component> {
    let kubeconfig = ctx.kubeconfig.display().to_string();
    let cert_dir = ctx.dir.join("kcm-certs");
    let ca = ctx.dir.join("ca.crt");
    write_ca_file(ctx.kubeconfig, &ca)?;
    start_with_retry(
        1,
        |ports| {
            let args = vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                // Client certificates are not in use, so there is no CA to look up in
                // kube-system/extension-apiserver-authentication (and the lookup logs errors).
                "--authentication-skip-lookup=true".to_owned(),
                "--leader-elect=false".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", ports[0]),
                format!("--cert-dir={}", cert_dir.display()),
                "--controllers=*".to_owned(),
                "--use-service-account-credentials=false".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    ctx.files.sa_private.display()
                ),
                format!("--root-ca-file={}", ca.display()),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--kube-api-qps=1000".to_owned(),
                "--kube-api-burst=2000".to_owned(),
                "--profiling=false".to_owned(),
            ];
            Component::spawn("kube-controller-manager", binary, &args, ctx.dir)
        },
        wait_healthz,
    )
    .await
    .map(|(component, ())| component)
}

/// The API server's CA as a PEM file (for `--root-ca-file`, published in every namespace's
/// `kube-root-ca.crt` ConfigMap), taken from the kubeconfig.
fn write_ca_file(kubeconfig: &Path, out: &Path) -> Result<()> {
    use base64::Engine;

    let config =
        Kubeconfig::read_from(kubeconfig).with_context(|| format!("read {}", kubeconfig.display()))?;
    let data = config
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_deref())
        .context("the kubeconfig has no CA")?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(data)
        .context("decode the CA")?;
    std::fs::write(out, pem).with_context(|| format!("write {}", out.display()))
}

/// kube-scheduler; its client settings come from a config file (the flags for them are
/// deprecated and ignored once a config file is given).
pub(super) async fn start_scheduler(binary: &Path, ctx: &ClientContext<'_>) -> Result<Component> {
    let kubeconfig = ctx.kubeconfig.display().to_string();
    let config = ctx.dir.join("scheduler.yaml");
    let text = format!(
        "apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
  qps: 1000
  burst: 2000
leaderElection:
  leaderElect: false
"
    );
    std::fs::write(&config, text).with_context(|| format!("write {}", config.display()))?;
    let cert_dir = ctx.dir.join("scheduler-certs");
    start_with_retry(
        1,
        |ports| {
            let args = vec![
                format!("--config={}", config.display()),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
                "--authentication-skip-lookup=true".to_owned(),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", ports[0]),
                format!("--cert-dir={}", cert_dir.display()),
            ];
            Component::spawn("kube-scheduler", binary, &args, ctx.dir)
        },
        wait_healthz,
    )
    .await
    .map(|(component, ())| component)
}
