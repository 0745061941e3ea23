//! `countersign run`: the operator. Flags and the process around it (logging, signals, exit
//! code); the operator itself is [`crate::operator::run`].

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context;

use crate::operator::{self, Config, leader::LeaseConfig};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Where /metrics, /healthz and /readyz are served.
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR")]
    pub metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease [default: $POD_NAMESPACE, else countersign-system].
    #[arg(long, value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "countersign-controller", value_name = "NAME")]
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events [default: $POD_NAME, else the host name
    /// with a random suffix].
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// A kubernetes.io/dockerconfigjson Secret (namespace/name) whose credentials are used for
    /// every registry, after the pods' own imagePullSecrets.
    #[arg(long, value_name = "NAMESPACE/NAME", value_parser = parse_secret_ref)]
    pub registry_credentials_secret: Option<(String, String)>,
    /// Reach this registry (host or host:port) over plain HTTP. Loopback registries always are.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Digests verified at once.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_concurrent_verifications: usize,
    /// Registry requests in flight at once (per set of registry credentials).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub max_registry_requests: usize,
    /// How long a Lease is held without renewal before another replica may take it.
    #[arg(long, default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub lease_duration: Duration,
    /// Where TrustSource repositories are cached between fetches.
    #[arg(long, value_name = "DIR", default_value_os_t = crate::gitops::Config::default().cache_dir)]
    pub git_cache_dir: std::path::PathBuf,
    /// Serve the Git push webhook receiver (POST /hooks/git) on this address, e.g. 0.0.0.0:9443.
    #[arg(long, value_name = "ADDR")]
    pub git_webhook_addr: Option<SocketAddr>,
    /// The Secret (in the operator's namespace) whose `token` authenticates webhook calls.
    #[arg(long, value_name = "NAME", default_value = "countersign-git-webhook")]
    pub git_webhook_secret: String,
    /// Write a wgpolicyk8s.io/v1alpha2 PolicyReport (named countersign) in every namespace with
    /// governed workloads, for Policy Reporter and other tools that read them. Needs the
    /// PolicyReport CRD installed (Kyverno ships it).
    #[arg(long)]
    pub policy_reports: bool,
    #[command(flatten)]
    pub admission: AdmissionArgs,
}

/// The admission webhooks: served (HTTPS) when `--admission-addr` is given.
#[derive(Debug, Clone, clap::Args)]
pub struct AdmissionArgs {
    /// Serve the validating (/validate) and mutating (/mutate) admission webhooks over HTTPS on
    /// this address, e.g. 0.0.0.0:9443.
    #[arg(long, value_name = "ADDR")]
    pub admission_addr: Option<SocketAddr>,
    /// The ValidatingWebhookConfiguration and MutatingWebhookConfiguration (same name) whose
    /// caBundle is kept in step with the webhook's CA.
    #[arg(long, value_name = "NAME", default_value = "countersign")]
    pub webhook_configuration: String,
    /// The Secret (in the operator's namespace) holding the webhook's CA and certificate.
    #[arg(long, value_name = "NAME", default_value = "countersign-webhook-tls")]
    pub webhook_secret: String,
    /// The Service the API server calls: its DNS names go into the serving certificate.
    #[arg(long, value_name = "NAME", default_value = "countersign-webhook")]
    pub webhook_service: String,
    /// More names (DNS or IP) for the serving certificate, e.g. 127.0.0.1 for a local API server.
    #[arg(long, value_name = "NAME")]
    pub webhook_cert_name: Vec<String>,
    /// Create and renew the certificates (false: the Secret is cert-manager's; read it only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub webhook_manage_certs: bool,
    /// Lifetime of the serving certificate; renewed past two thirds of it.
    #[arg(long, default_value = "2160h", value_parser = parse_duration, value_name = "DURATION")]
    pub webhook_cert_validity: Duration,
    /// Lifetime of the webhook's CA; a new one is trusted past four fifths of it.
    #[arg(long, default_value = "87600h", value_parser = parse_duration, value_name = "DURATION")]
    pub webhook_ca_validity: Duration,
    /// A never-seen digest is verified within this time, else "registry unreachable".
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub admission_deadline: Duration,
    /// While a registry is unreachable, a cached verdict this young still decides.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub admission_max_stale: Duration,
    /// Namespaces never checked, besides kube-system and the operator's own.
    #[arg(long, value_name = "NAMESPACE")]
    pub admission_exclude_namespace: Vec<String>,
    /// Pin every governed, verified image tag to its digest (otherwise per TrustRoot, with
    /// spec.pinToDigest).
    #[arg(long)]
    pub pin_digests: bool,
}

fn parse_secret_ref(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{s:?} is not namespace/name")),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::crd::parse_duration("duration", s).map_err(|e| e.message)
}

pub fn run(args: &RunArgs) -> ExitCode {
    match run_operator(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("countersign run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc's malloc gives each thread that contends for it an arena of its own (up to 8 per core)
/// and raises its mmap and trim thresholds after the first large buffers are freed (a relist's
/// pages), so memory freed after a burst stays in the process. The operator's live heap is about
/// half its RSS (a heap profile at 10,000 pods: 28 MB live, 58 MiB resident). Two arenas for the
/// runtime's threads and fixed 1 MiB thresholds took 2 MiB (4%) off its peak RSS at 10,000 pods
/// (docs/benchmarks.md), at no measured cost in CPU. Must run before any thread starts.
fn bound_allocator_memory() {
    // SAFETY: mallopt only sets allocator parameters, and no other thread exists yet.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
    }
}

fn run_operator(args: &RunArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    bound_allocator_memory();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let client = kube::Client::try_default()
            .await
            .context("connecting to Kubernetes (KUBECONFIG, or in-cluster config)")?;
        tracing::info!(identity = %config.lease.identity, "starting");
        operator::run(client, config, shutdown_signal()).await?;
        Ok(())
    })
}

fn config(args: &RunArgs) -> anyhow::Result<Config> {
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "countersign-system".into());
    let identity = match &args.identity {
        Some(id) => id.clone(),
        None => default_identity()?,
    };
    let lease_duration = args.lease_duration;
    Ok(Config {
        metrics_addr: args.metrics_addr,
        lease: LeaseConfig {
            namespace: namespace.clone(),
            name: args.lease_name.clone(),
            identity,
            lease_duration,
            renew_every: lease_duration / 3,
        },
        registry_credentials: args.registry_credentials_secret.clone(),
        insecure_registries: args.insecure_registry.clone(),
        concurrency: args.max_concurrent_verifications.max(1),
        registry_requests: args.max_registry_requests.max(1),
        gitops: crate::gitops::Config {
            cache_dir: args.git_cache_dir.clone(),
            namespace: namespace.clone(),
            webhook_addr: args.git_webhook_addr,
            webhook_secret: args.git_webhook_secret.clone(),
        },
        admission: admission(&args.admission, &namespace),
        policy_reports: args.policy_reports,
    })
}

fn admission(args: &AdmissionArgs, namespace: &str) -> Option<crate::admission::Config> {
    let addr = args.admission_addr?;
    let service = &args.webhook_service;
    let mut names = crate::admission::certs::Names {
        dns: vec![
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ],
        ips: Vec::new(),
    };
    for name in &args.webhook_cert_name {
        match name.parse() {
            Ok(ip) => names.ips.push(ip),
            Err(_) => names.dns.push(name.clone()),
        }
    }
    let mut excluded = vec!["kube-system".to_string(), namespace.to_string()];
    excluded.extend(args.admission_exclude_namespace.iter().cloned());
    Some(crate::admission::Config {
        addr,
        certs: crate::admission::tls::CertConfig {
            namespace: namespace.to_string(),
            secret: args.webhook_secret.clone(),
            configuration: args.webhook_configuration.clone(),
            names,
            ca_validity: args.webhook_ca_validity,
            cert_validity: args.webhook_cert_validity,
            manage: args.webhook_manage_certs,
        },
        deadline: args.admission_deadline,
        max_stale: args.admission_max_stale,
        excluded_namespaces: excluded,
        pin_all: args.pin_digests,
    })
}

/// The pod's name (downward API) when in a pod; otherwise the host name and a random suffix, so
/// two processes on one machine never share an identity.
fn default_identity() -> anyhow::Result<String> {
    if let Some(pod) = std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()) {
        return Ok(pod);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "countersign".into());
    let mut suffix = [0u8; 4];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut suffix).context("random identity")?;
    Ok(format!("{host}-{}", hex::encode(suffix)))
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = terminate => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn defaults_and_secret_refs() {
        let cli = Cli::try_parse_from(["x", "--identity", "a", "--leader-election-namespace", "ns"])
            .unwrap_or_else(|e| panic!("{e}"));
        let config = config(&cli.run).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.metrics_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(
            (config.lease.namespace.as_str(), config.lease.identity.as_str()),
            ("ns", "a")
        );
        assert_eq!(config.lease.renew_every, Duration::from_secs(5));
        let with_secret = Cli::try_parse_from(["x", "--registry-credentials-secret", "sys/pull"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            with_secret.run.registry_credentials_secret,
            Some(("sys".into(), "pull".into()))
        );
        assert!(Cli::try_parse_from(["x", "--registry-credentials-secret", "nope"]).is_err());
    }

    #[test]
    fn default_identities_differ() {
        let (a, b) = (default_identity(), default_identity());
        assert!(a.is_ok() && b.is_ok());
        if std::env::var("POD_NAME").is_err() {
            assert_ne!(a.ok(), b.ok());
        }
    }
}
