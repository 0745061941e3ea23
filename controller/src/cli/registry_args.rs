//! Registry flags shared by `sign` and `verify`.

use std::path::PathBuf;

use anyhow::Context;

use crate::{
    reference::ImageRef,
    registry::{Credentials, RegistryClient, RegistryOptions},
};

#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Repository that holds the signatures instead of the image's own (cosign's COSIGN_REPOSITORY).
    #[arg(long, env = "COSIGN_REPOSITORY", value_name = "REPOSITORY")]
    pub signature_repository: Option<String>,
    /// Reach this registry (host[:port]) over plain HTTP. Loopback registries always are.
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Docker config.json with registry credentials [default: $DOCKER_CONFIG/config.json, then
    /// ~/.docker/config.json, when present].
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// Username for every registry this command reads or writes, instead of config.json (as
    /// cosign's flag of the same name). With --registry-password.
    #[arg(long, value_name = "USER", requires = "registry_password")]
    pub registry_username: Option<String>,
    /// Password (or token) for --registry-username. Prefer the environment variable: a flag's
    /// value is visible to other users in the process list.
    #[arg(
        long,
        env = "COUNTERSIGN_REGISTRY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        requires = "registry_username"
    )]
    pub registry_password: Option<String>,
}

impl RegistryArgs {
    pub fn client(&self) -> anyhow::Result<RegistryClient> {
        Ok(RegistryClient::new(RegistryOptions {
            credentials: self.credentials()?,
            insecure_registries: self.insecure_registry.clone(),
            ..RegistryOptions::default()
        }))
    }

    pub fn signature_repository(&self) -> anyhow::Result<Option<ImageRef>> {
        self.signature_repository
            .as_deref()
            .filter(|r| !r.is_empty())
            .map(|r| ImageRef::parse(r).map(|r| r.repository_only()))
            .transpose()
            .context("--signature-repository")
    }

    /// The flags' credentials, else the docker config file's (cosign's precedence), else none.
    fn credentials(&self) -> anyhow::Result<Credentials> {
        if let (Some(user), Some(password)) = (&self.registry_username, &self.registry_password) {
            return Ok(Credentials::for_every_registry(
                user,
                password,
                "--registry-username/--registry-password",
            ));
        }
        let path = match &self.registry_config {
            Some(p) => Some(p.clone()),
            None => default_docker_config().filter(|p| p.is_file()),
        };
        let Some(path) = path else {
            return Ok(Credentials::anonymous());
        };
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let origin = path.display().to_string();
        Credentials::from_docker_config(&bytes, &origin).with_context(|| origin.clone())
    }
}

fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// A small runtime for one command: the CLI does a handful of requests, so one thread starts
/// fastest.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
