//! TLS without extra parts: every replica keeps the webhook's CA and serving certificate in one
//! Secret, serves the certificate found there, and keeps the webhook configurations' `caBundle`
//! in step. cert-manager can do the same job instead (`manifests/cert-manager/`): then the
//! Secret is cert-manager's and `--webhook-manage-certs=false` leaves it alone.
//!
//! Renewal never breaks a call from the API server, because trust comes before use:
//!
//! ```text
//! serving cert past 2/3 of its life ──► a new one from the current CA (already trusted)
//! CA past 4/5 of its life ──► a new CA added to the bundle (old one kept until it expires)
//!                        ──► configurations patched ──► only then a serving cert from it
//! ```
//!
//! Replicas race through the Secret's `resourceVersion`: one write wins, the others read it.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration},
        core::v1::Secret,
    },
};
use kube::{
    Api, Client,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tokio_rustls::rustls::{
    ServerConfig,
    crypto::ring::{default_provider, sign::any_ecdsa_type},
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::certs::{self, CertError, Names, Pair};

/// How often the Secret and the configurations are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// After a failure (or a lost race), the next look comes sooner.
const RETRY: Duration = Duration::from_secs(2);

/// Where the certificates live and what they must say.
#[derive(Clone, Debug)]
pub struct CertConfig {
    pub namespace: String,
    pub secret: String,
    /// The name of the ValidatingWebhookConfiguration and MutatingWebhookConfiguration whose
    /// `caBundle` is kept in step.
    pub configuration: String,
    pub names: Names,
    pub ca_validity: Duration,
    pub cert_validity: Duration,
    /// `false` when the Secret is someone else's (cert-manager): read and served, never written.
    pub manage: bool,
}

/// What the Secret holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// `ca.crt`: every CA the configurations trust (the current one first).
    pub bundle: String,
    /// `ca.key` + the first certificate of `bundle`: the CA that signs. Absent in a Secret made
    /// by someone else.
    pub ca: Option<Pair>,
    /// `tls.crt`, `tls.key`.
    pub serving: Pair,
}

/// The certificate handed to each TLS handshake: swapped in place when renewed.
#[derive(Debug, Default)]
pub struct Resolver(RwLock<Option<Arc<CertifiedKey>>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Resolver {
    fn load(&self, serving: &Pair) -> Result<(), CertError> {
        let chain = certs::der_chain(&serving.cert)?
            .into_iter()
            .map(CertificateDer::from)
            .collect();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs::key_der(&serving.key)?));
        let signing = any_ecdsa_type(&key).map_err(|e| CertError::from(format!("serving key: {e}")))?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) =
            Some(Arc::new(CertifiedKey::new(chain, signing)));
        Ok(())
    }

    pub fn is_loaded(&self) -> bool {
        self.0.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}

/// The rustls configuration of the webhook listener: TLS 1.2+, HTTP/2 or 1.1 by ALPN.
pub fn server_config(resolver: Arc<Resolver>) -> Result<Arc<ServerConfig>, CertError> {
    let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| CertError::from(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// What to write, given what is stored, the time, and whether the configurations already trust
/// the current CA. `None`: nothing to change.
pub fn plan(
    stored: Option<&Stored>,
    config: &CertConfig,
    now: SystemTime,
    trusted: bool,
) -> Result<Option<Stored>, CertError> {
    let Some(stored) = stored else {
        let ca = certs::new_ca(&ca_name(now), now, config.ca_validity)?;
        let serving = certs::issue(&ca, &config.names, now, config.cert_validity)?;
        return Ok(Some(Stored {
            bundle: ca.cert.clone(),
            ca: Some(ca),
            serving,
        }));
    };
    let Some(ca) = &stored.ca else {
        return Ok(None);
    };
    let ca_facts = certs::facts(&ca.cert)?;
    if renew_due(&ca_facts, config.ca_validity, 5, now) {
        let new = certs::new_ca(&ca_name(now), now, config.ca_validity)?;
        return Ok(Some(Stored {
            bundle: format!("{}{}", new.cert, unexpired(&stored.bundle, now)?),
            ca: Some(new),
            serving: stored.serving.clone(),
        }));
    }
    let bundle = unexpired(&stored.bundle, now)?;
    let serving = certs::facts(&stored.serving.cert)?;
    let stale_names = !config.names.dns.iter().all(|d| serving.names.dns.contains(d))
        || !config.names.ips.iter().all(|i| serving.names.ips.contains(i));
    let other_ca = serving.issuer != ca_facts.subject;
    let reissue = renew_due(&serving, config.cert_validity, 3, now) || stale_names || (other_ca && trusted);
    if !reissue && bundle == stored.bundle {
        return Ok(None);
    }
    Ok(Some(Stored {
        bundle,
        ca: stored.ca.clone(),
        serving: if reissue {
            certs::issue(ca, &config.names, now, config.cert_validity)?
        } else {
            stored.serving.clone()
        },
    }))
}

/// Past `(n-1)/n` of the configured lifetime, or of its own when that is shorter.
fn renew_due(facts: &certs::Facts, validity: Duration, n: u32, now: SystemTime) -> bool {
    let own = facts
        .not_after
        .duration_since(facts.not_before)
        .unwrap_or_default();
    let left = facts.not_after.duration_since(now).unwrap_or_default();
    left < own.min(validity) / n
}

fn unexpired(bundle: &str, now: SystemTime) -> Result<String, CertError> {
    let mut out = String::new();
    for block in bundle.split_inclusive("-----END CERTIFICATE-----\n") {
        if block.trim().is_empty() {
            continue;
        }
        if certs::facts(block)?.not_after > now {
            out.push_str(block);
        }
    }
    Ok(out)
}

fn ca_name(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("countersign-webhook-ca-{secs}")
}

/// Keeps the certificates until dropped; `resolver` serves the current one.
pub async fn keep(client: Client, config: CertConfig, resolver: Arc<Resolver>) {
    loop {
        let wait = match sync(&client, &config, &resolver).await {
            Ok(true) => CHECK_EVERY,
            Ok(false) => RETRY,
            Err(e) => {
                tracing::warn!(secret = %format!("{}/{}", config.namespace, config.secret), error = %e, "webhook certificates");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// One look: `Ok(true)` when everything is in step.
async fn sync(client: &Client, config: &CertConfig, resolver: &Resolver) -> Result<bool, CertError> {
    let secrets = Api::<Secret>::namespaced(client.clone(), &config.namespace);
    let secret = secrets.get_opt(&config.secret).await.map_err(kube_error)?;
    let stored = secret.as_ref().and_then(|s| read(s, &config.secret));
    let trusted = match &stored {
        Some(s) => configurations_trust(client, config, &s.bundle).await?,
        None => false,
    };
    let next = if config.manage {
        plan(stored.as_ref(), config, SystemTime::now(), trusted)?
    } else {
        None
    };
    if let Some(next) = &next {
        let written = write(&secrets, config, secret.as_ref(), next).await?;
        if !written {
            return Ok(false);
        }
    }
    let Some(current) = next.or(stored) else {
        return Ok(false);
    };
    resolver.load(&current.serving)?;
    patch_configurations(client, config, &current.bundle).await?;
    Ok(true)
}

fn read(secret: &Secret, name: &str) -> Option<Stored> {
    let data = secret.data.as_ref()?;
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.0.clone()).ok());
    let (Some(cert), Some(key)) = (text("tls.crt"), text("tls.key")) else {
        tracing::warn!(
            secret = name,
            "the webhook Secret lacks tls.crt or tls.key; making new certificates"
        );
        return None;
    };
    let bundle = text("ca.crt").unwrap_or_default();
    let ca = text("ca.key").and_then(|key| {
        let first = bundle.split_inclusive("-----END CERTIFICATE-----\n").next()?;
        Some(Pair {
            cert: first.to_string(),
            key,
        })
    });
    Some(Stored {
        bundle,
        ca,
        serving: Pair { cert, key },
    })
}

/// Creates or replaces the Secret; `false` when another replica wrote first.
async fn write(
    secrets: &Api<Secret>,
    config: &CertConfig,
    existing: Option<&Secret>,
    next: &Stored,
) -> Result<bool, CertError> {
    let mut data = std::collections::BTreeMap::from([
        ("ca.crt".to_string(), ByteString(next.bundle.clone().into_bytes())),
        (
            "tls.crt".into(),
            ByteString(next.serving.cert.clone().into_bytes()),
        ),
        (
            "tls.key".into(),
            ByteString(next.serving.key.clone().into_bytes()),
        ),
    ]);
    if let Some(ca) = &next.ca {
        data.insert("ca.key".into(), ByteString(ca.key.clone().into_bytes()));
    }
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(config.secret.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: existing.and_then(|s| s.metadata.resource_version.clone()),
            labels: Some([("app.kubernetes.io/name".to_string(), "countersign".to_string())].into()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Secret::default()
    };
    let result = match existing {
        None => secrets.create(&PostParams::default(), &secret).await,
        Some(_) => {
            secrets
                .replace(&config.secret, &PostParams::default(), &secret)
                .await
        }
    };
    match result {
        Ok(_) => {
            tracing::info!(secret = %config.secret, "webhook certificates written");
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(kube_error(e)),
    }
}

/// A webhook's name and caBundle.
type Hook = (String, Option<ByteString>);

fn validating_hooks(c: ValidatingWebhookConfiguration) -> Vec<Hook> {
    let hooks = c.webhooks.unwrap_or_default().into_iter();
    hooks.map(|w| (w.name, w.client_config.ca_bundle)).collect()
}

fn mutating_hooks(c: MutatingWebhookConfiguration) -> Vec<Hook> {
    let hooks = c.webhooks.unwrap_or_default().into_iter();
    hooks.map(|w| (w.name, w.client_config.ca_bundle)).collect()
}

/// The webhooks of configuration `name` of one kind; `None` when there is no such configuration.
async fn hooks<K>(api: &Api<K>, name: &str, of: fn(K) -> Vec<Hook>) -> Result<Option<Vec<Hook>>, CertError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    Ok(api.get_opt(name).await.map_err(kube_error)?.map(of))
}

/// Whether every webhook of both configurations already trusts the first CA of `bundle` (no
/// configuration: nothing to wait for).
async fn configurations_trust(client: &Client, config: &CertConfig, bundle: &str) -> Result<bool, CertError> {
    let first = bundle
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap_or_default();
    let name = &config.configuration;
    let validating = hooks(&Api::all(client.clone()), name, validating_hooks).await?;
    let mutating = hooks(&Api::all(client.clone()), name, mutating_hooks).await?;
    let trusts = |h: &Hook| {
        h.1.as_ref()
            .is_some_and(|b| String::from_utf8_lossy(&b.0).contains(first))
    };
    Ok(validating
        .into_iter()
        .chain(mutating)
        .flatten()
        .all(|h| trusts(&h)))
}

/// Sets `caBundle` on every webhook of both configurations that lacks it, each change guarded
/// by a `test` of the webhook's name (the list may have changed since it was read).
async fn patch_configurations(client: &Client, config: &CertConfig, bundle: &str) -> Result<(), CertError> {
    let name = &config.configuration;
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    if let Some(h) = hooks(&validating, name, validating_hooks).await? {
        patch_bundle(&validating, name, h, bundle).await?;
    }
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone());
    if let Some(h) = hooks(&mutating, name, mutating_hooks).await? {
        patch_bundle(&mutating, name, h, bundle).await?;
    }
    Ok(())
}

async fn patch_bundle<K>(api: &Api<K>, name: &str, webhooks: Vec<Hook>, bundle: &str) -> Result<(), CertError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops = Vec::new();
    for (i, (webhook, current)) in webhooks.into_iter().enumerate() {
        if current.is_some_and(|c| c.0 == bundle.as_bytes()) {
            continue;
        }
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook}));
        ops.push(
            json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}),
        );
    }
    if ops.is_empty() {
        return Ok(());
    }
    let patch: json_patch::Patch =
        serde_json::from_value(json!(ops)).map_err(|e| CertError::from(e.to_string()))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(kube_error)?;
    tracing::info!(configuration = name, "webhook caBundle updated");
    Ok(())
}

fn kube_error(e: kube::Error) -> CertError {
    CertError::from(format!("API server: {e}"))
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
