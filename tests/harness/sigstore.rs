//! A local Sigstore stack for keyless signing end to end, every part a real program built by
//! `e2e/peers.sh sigstore`, on 127.0.0.1:
//!
//! - the OIDC issuer is the local control plane's kube-apiserver: a ServiceAccount token with the
//!   audience `sigstore` (TokenRequest), Fulcio's `kubernetes` issuer type, identity
//!   `https://kubernetes.io/namespaces/<ns>/serviceaccounts/<name>`;
//! - Fulcio with a file CA made here;
//! - TesseraCT (a static-ct log, POSIX storage) for the certificates' SCTs;
//! - the timestamp authority (in-memory signer);
//! - Rekor v2 (rekor-tiles, POSIX storage).
//!
//! It writes the `trusted_root.json` every verifier reads (Fulcio CA, CT log key, TSA chain, Rekor
//! key) and cosign v3's signing config, and signs keylessly with real cosign v3 (bundle referrer)
//! and v2 (`.sig` with the certificate annotations).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::{Context, Result, anyhow, bail};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use k8s_openapi::api::{
    authentication::v1::TokenRequest, core::v1::ServiceAccount, rbac::v1::ClusterRoleBinding,
};
use kube::api::{Api, PostParams};
use p256::{
    elliptic_curve::sec1::ToEncodedPoint,
    pkcs8::{EncodePublicKey, LineEnding},
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    cluster::{Component, LocalCluster, start_with_retry},
    cosign::{Cosign, CosignVersion, Run},
    http::http_get,
    peer_path, scratch_dir,
};

/// The audience Fulcio accepts tokens for (its `ClientID`).
pub const AUDIENCE: &str = "sigstore";
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Signed notes (checkpoints) are published this often; signing waits for one.
const CHECKPOINT_INTERVAL: &str = "200ms";
/// Since when the stack's keys are declared valid in the trusted root.
const VALID_FROM: &str = "2020-01-01T00:00:00Z";

/// The running stack. Dropping it stops every process.
pub struct SigstoreStack {
    /// The OIDC issuer URL (the API server's service-account issuer).
    pub issuer: String,
    pub fulcio_url: String,
    pub tsa_url: String,
    pub rekor_url: String,
    pub ct_url: String,
    trusted_root: PathBuf,
    signing_config: PathBuf,
    fulcio_ca: PathBuf,
    ct_public_key: PathBuf,
    tsa_chain: PathBuf,
    /// Stopped when dropped.
    _components: Vec<Component>,
    dir: tempfile::TempDir,
}

impl SigstoreStack {
    /// Starts CT log, Fulcio (trusting `cluster`'s API server as its OIDC issuer), TSA and Rekor,
    /// each waited for on its own readiness endpoint.
    pub async fn start(cluster: &LocalCluster) -> Result<Self> {
        let dir = scratch_dir("sigstore");
        let d = dir.path();
        allow_anonymous_discovery(cluster).await?;
        let keys = Keys::generate(d)?;
        let (ct, ct_url) = start_ct(d).await?;
        let issuer = cluster.apiserver_url().to_owned();
        let apiserver_ca = cluster.dir().join("apiserver-certs/apiserver.crt");
        let (fulcio, fulcio_url) = start_fulcio(d, &issuer, &ct_url, &apiserver_ca).await?;
        let (tsa, tsa_url) = start_tsa(d).await?;
        let (rekor, rekor_url) = start_rekor(d).await?;
        let addr = |url: &str| -> Result<SocketAddr> { Ok(url.trim_start_matches("http://").parse()?) };
        let (_, chain) = http_get(addr(&tsa_url)?, "/api/v1/timestamp/certchain").await?;
        let tsa_chain = d.join("tsa-chain.pem");
        std::fs::write(&tsa_chain, &chain)?;
        let urls = Urls {
            fulcio: &fulcio_url,
            ct: &ct_url,
            tsa: &tsa_url,
            rekor: &rekor_url,
        };
        let trusted_root = d.join("trusted_root.json");
        let root = trusted_root_json(&keys, &urls, &chain)?;
        std::fs::write(&trusted_root, serde_json::to_vec_pretty(&root)?)?;
        let signing_config = d.join("signing_config.json");
        std::fs::write(
            &signing_config,
            serde_json::to_vec_pretty(&signing_config_json(&urls))?,
        )?;
        Ok(Self {
            issuer,
            fulcio_url,
            tsa_url,
            rekor_url,
            ct_url,
            trusted_root,
            signing_config,
            fulcio_ca: keys.fulcio_ca,
            ct_public_key: keys.ct_public,
            tsa_chain,
            _components: vec![ct, fulcio, tsa, rekor],
            dir,
        })
    }

    /// The `trusted_root.json` of this stack.
    pub fn trusted_root(&self) -> &Path {
        &self.trusted_root
    }

    /// Adds `tlog` (a log as the trusted root lists one: [`log_json`]) to this stack's
    /// `trusted_root.json`, beside its own Rekor: for a log started apart from the stack
    /// ([`crate::rekor_v1::RekorV1`]).
    pub fn trust_log(&self, tlog: Value) -> Result<()> {
        let mut root: Value = serde_json::from_slice(&std::fs::read(&self.trusted_root)?)?;
        let tlogs = root["tlogs"].as_array_mut().context("the trusted root's tlogs")?;
        tlogs.push(tlog);
        std::fs::write(&self.trusted_root, serde_json::to_vec_pretty(&root)?)?;
        Ok(())
    }

    /// The TSA's certificate chain (PEM), for cosign v2's `--timestamp-certificate-chain`.
    pub fn tsa_chain(&self) -> &Path {
        &self.tsa_chain
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The certificate identity Fulcio gives the ServiceAccount `namespace/name`.
    pub fn identity(namespace: &str, name: &str) -> String {
        format!("https://kubernetes.io/namespaces/{namespace}/serviceaccounts/{name}")
    }

    /// An OIDC ID token for the ServiceAccount `namespace/name` (created if missing), from the
    /// API server's TokenRequest API, audience [`AUDIENCE`].
    pub async fn token(cluster: &LocalCluster, namespace: &str, name: &str) -> Result<String> {
        let client = cluster.client();
        let accounts: Api<ServiceAccount> = Api::namespaced(client, namespace);
        if accounts.get_opt(name).await?.is_none() {
            let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}}))?;
            accounts.create(&PostParams::default(), &account).await?;
        }
        let request: TokenRequest = serde_json::from_value(json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [AUDIENCE], "expirationSeconds": 600}
        }))?;
        let answer: TokenRequest = accounts
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for {namespace}/{name}"))?;
        answer
            .status
            .and_then(|s| s.token)
            .context("TokenRequest answered without a token")
    }

    /// Signs `image` keylessly with cosign v3 through the signing config: Fulcio certificate, TSA
    /// timestamp, Rekor v2 entry, stored as a bundle referrer.
    pub fn sign_v3(&self, cosign: &Cosign, token: &str, image: &str) -> Run {
        assert_eq!(cosign.version, CosignVersion::V3);
        let token = self.token_file(token);
        cosign.run(&[
            "sign",
            "--identity-token",
            path_str(&token),
            "--signing-config",
            path_str(&self.signing_config),
            "--trusted-root",
            path_str(&self.trusted_root),
            "-y",
            image,
        ])
    }

    /// Attests `image` keylessly with cosign v3 (`cosign attest`): an in-toto statement of
    /// predicate type `kind` (cosign's names) over the predicate file, in a DSSE bundle referrer
    /// certified by Fulcio, timestamped and logged in Rekor v2 as [`Self::sign_v3`].
    pub fn attest_v3(&self, cosign: &Cosign, token: &str, predicate: &Path, kind: &str, image: &str) -> Run {
        assert_eq!(cosign.version, CosignVersion::V3);
        let token = self.token_file(token);
        cosign.run(&[
            "attest",
            "--identity-token",
            path_str(&token),
            "--signing-config",
            path_str(&self.signing_config),
            "--trusted-root",
            path_str(&self.trusted_root),
            "--predicate",
            path_str(predicate),
            "--type",
            kind,
            "-y",
            image,
        ])
    }

    /// Signs `image` keylessly with cosign v2 (`.sig` layer with the certificate and chain
    /// annotations), not logged (Rekor v2 does not speak cosign v2's protocol), timestamped by
    /// the TSA when `timestamp` (without it, nothing vouches for when it was signed).
    pub fn sign_v2(&self, cosign: &Cosign, token: &str, image: &str, timestamp: bool) -> Run {
        self.keyless_v2(cosign, "sign", token, timestamp, &[], image)
    }

    /// Attests `image` keylessly with cosign v2 (`.att` layer: a DSSE envelope of the in-toto
    /// statement, with the certificate, chain and TSA timestamp annotations), not logged, as
    /// [`Self::sign_v2`] signs.
    pub fn attest_v2(&self, cosign: &Cosign, token: &str, predicate: &Path, kind: &str, image: &str) -> Run {
        let extra = ["--predicate", path_str(predicate), "--type", kind];
        self.keyless_v2(cosign, "attest", token, true, &extra, image)
    }

    /// `cosign <command>` of cosign v2, keyless against this stack: Fulcio, no log, the TSA when
    /// `timestamp`, then `extra` and `image`.
    fn keyless_v2(
        &self,
        cosign: &Cosign,
        command: &str,
        token: &str,
        timestamp: bool,
        extra: &[&str],
        image: &str,
    ) -> Run {
        assert_eq!(cosign.version, CosignVersion::V2);
        let tsa = format!("{}/api/v1/timestamp", self.tsa_url);
        let token = self.token_file(token);
        let mut args = vec![
            command,
            "--identity-token",
            path_str(&token),
            "--fulcio-url",
            &self.fulcio_url,
            "--tlog-upload=false",
            "-y",
        ];
        if timestamp {
            args.extend(["--timestamp-server-url", &tsa]);
        }
        args.extend_from_slice(extra);
        args.push(image);
        // cosign v2 checks Fulcio's chain and SCT as it signs: the CA and the CT log's key are
        // handed to it directly, as there is no TUF repository here.
        cosign.run_with_env(&self.v2_env(), &args)
    }

    /// The token in a file: cosign opens `--identity-token` as a path first and fails on a JWT
    /// longer than a file name may be ("file name too long").
    pub(crate) fn token_file(&self, token: &str) -> PathBuf {
        let path = self
            .dir()
            .join(format!("token-{}", hex::encode(&Sha256::digest(token)[..8])));
        std::fs::write(&path, token).expect("write the token file");
        path
    }

    /// The environment cosign v2 needs to trust this stack without TUF.
    pub fn v2_env(&self) -> Vec<(&str, &str)> {
        vec![
            ("SIGSTORE_ROOT_FILE", path_str(&self.fulcio_ca)),
            ("SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", path_str(&self.ct_public_key)),
        ]
    }
}

/// The arguments of `countersign <command>` (`verify`, `verify-attestation`): `signers` (the
/// flags that say who may have signed), the trusted root `root`, JSON output, then `extra` and
/// `image`.
pub fn verify_args<'a>(
    command: &'a str,
    signers: &[&'a str],
    root: &'a str,
    extra: &[&'a str],
    image: &'a str,
) -> Vec<&'a str> {
    let mut args = vec![command];
    args.extend_from_slice(signers);
    args.extend(["--trusted-root", root, "--output", "json"]);
    args.extend_from_slice(extra);
    args.push(image);
    args
}

/// [`verify_args`] for a keyless signer: the identity flags.
pub fn keyless_args<'a>(
    command: &'a str,
    identity: &'a str,
    issuer: &'a str,
    root: &'a str,
    extra: &[&'a str],
    image: &'a str,
) -> Vec<&'a str> {
    let identity = [
        "--certificate-identity",
        identity,
        "--certificate-oidc-issuer",
        issuer,
    ];
    verify_args(command, &identity, root, extra, image)
}

pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Fulcio fetches the issuer's discovery document and keys without credentials: the API server
/// serves them to `system:serviceaccounts` only, unless bound for anonymous requests too (what
/// clusters that federate their service-account identity do).
async fn allow_anonymous_discovery(cluster: &LocalCluster) -> Result<()> {
    let bindings: Api<ClusterRoleBinding> = Api::all(cluster.client());
    let name = "countersign-test-oidc-discovery";
    if bindings.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:service-account-issuer-discovery"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                      "name": "system:unauthenticated"}]
    }))?;
    bindings.create(&PostParams::default(), &binding).await?;
    Ok(())
}

/// The stack's key material, as files the servers read.
struct Keys {
    fulcio_ca: PathBuf,
    fulcio_ca_der: Vec<u8>,
    ct_public: PathBuf,
    ct_spki: Vec<u8>,
    rekor_spki: Vec<u8>,
}

impl Keys {
    fn generate(dir: &Path) -> Result<Self> {
        let ca = countersign::admission::certs::new_ca(
            "fulcio",
            SystemTime::now(),
            Duration::from_secs(24 * 3600),
        )
        .map_err(|e| anyhow!("Fulcio CA: {e}"))?;
        let fulcio_ca = dir.join("fulcio-ca.pem");
        std::fs::write(&fulcio_ca, &ca.cert)?;
        std::fs::write(dir.join("fulcio-ca-key.pem"), &ca.key)?;
        let fulcio_ca_der = countersign::admission::certs::der_chain(&ca.cert)
            .map_err(|e| anyhow!("Fulcio CA: {e}"))?
            .remove(0);
        let (ct_public, ct_spki) = ec_key(dir, "ct")?;
        let (_, rekor_spki) = ec_key(dir, "rekor")?;
        Ok(Self {
            fulcio_ca,
            fulcio_ca_der,
            ct_public,
            ct_spki,
            rekor_spki,
        })
    }
}

/// A P-256 key as `<name>-key.pem` (SEC 1, what TesseraCT reads) and `<name>.pub`; returns the
/// public key's path and DER SubjectPublicKeyInfo.
pub(crate) fn ec_key(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let private = dir.join(format!("{name}-key.pem"));
    std::fs::write(&private, sec1_pem(&key))?;
    let public = dir.join(format!("{name}.pub"));
    std::fs::write(&public, key.public_key().to_public_key_pem(LineEnding::LF)?)?;
    let spki = key.public_key().to_public_key_der()?.into_vec();
    Ok((public, spki))
}

/// The key as OpenSSL writes it (`EC PRIVATE KEY` with the named curve): Go's
/// `x509.ParseECPrivateKey`, which TesseraCT uses, refuses one without the curve's OID, and
/// RustCrypto's SEC 1 encoder leaves it out.
fn sec1_pem(key: &p256::SecretKey) -> String {
    let mut der = vec![0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
    der.extend_from_slice(&key.to_bytes());
    // [0] namedCurve prime256v1 (1.2.840.10045.3.1.7)
    der.extend_from_slice(&[
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ]);
    // [1] the uncompressed public point
    der.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
    der.extend_from_slice(key.public_key().to_encoded_point(false).as_bytes());
    let body = B64.encode(&der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64"))
        .collect();
    format!(
        "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// A server on one port the kernel picks, ready when `path` answers 200.
pub(crate) async fn start_on_port_zero(
    name: &'static str,
    binary: &Path,
    args: &[String],
    dir: &Path,
    path: &str,
) -> Result<(Component, String)> {
    let mut component = Component::spawn(name, binary, args, dir)?;
    let port = component.wait_listening(START_TIMEOUT)?;
    let url = format!("http://127.0.0.1:{port}");
    wait_http(&mut component, port, path).await?;
    Ok((component, url))
}

/// Waits until GET `path` on `port` answers 200.
pub(crate) async fn wait_http(component: &mut Component, port: u16, path: &str) -> Result<()> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    component
        .wait_until(&format!("serving {path}"), START_TIMEOUT, || async move {
            match http_get(addr, path).await? {
                (200, _) => Ok(()),
                (status, body) => bail!("{status}: {body}"),
            }
        })
        .await
}

async fn start_ct(dir: &Path) -> Result<(Component, String)> {
    let args = vec![
        "--http_endpoint=127.0.0.1:0".to_owned(),
        "--origin=ct.countersign.test".to_owned(),
        format!("--storage_dir={}", dir.join("ct").display()),
        format!("--roots_pem_file={}", dir.join("fulcio-ca.pem").display()),
        format!("--private_key={}", dir.join("ct-key.pem").display()),
        format!("--checkpoint_interval={CHECKPOINT_INTERVAL}"),
    ];
    start_on_port_zero(
        "tesseract",
        &peer_path("tesseract"),
        &args,
        dir,
        "/ct/v1/get-roots",
    )
    .await
}

async fn start_tsa(dir: &Path) -> Result<(Component, String)> {
    let args = vec!["127.0.0.1:0".to_owned()];
    start_on_port_zero("tsa", &peer_path("tsa-server"), &args, dir, "/ping").await
}

/// Fulcio on three ports (HTTP, gRPC, metrics) it must be told, with the file CA, the API server
/// as its only OIDC issuer (trusting the API server's CA for discovery), logging to `ct_url`.
async fn start_fulcio(
    dir: &Path,
    issuer: &str,
    ct_url: &str,
    apiserver_ca: &Path,
) -> Result<(Component, String)> {
    let config = dir.join("fulcio-config.json");
    let issuers = json!({"OIDCIssuers": {issuer: {
        "IssuerURL": issuer, "ClientID": AUDIENCE, "Type": "kubernetes"
    }}});
    std::fs::write(&config, serde_json::to_vec(&issuers)?)?;
    let binary = peer_path("fulcio");
    start_with_retry(
        3,
        |p| {
            let args = vec![
                "serve".to_owned(),
                "--host=127.0.0.1".to_owned(),
                format!("--port={}", p[0]),
                "--grpc-host=127.0.0.1".to_owned(),
                format!("--grpc-port={}", p[1]),
                format!("--metrics-port={}", p[2]),
                format!(
                    "--legacy-unix-domain-socket={}",
                    dir.join("fulcio.sock").display()
                ),
                "--ca=fileca".to_owned(),
                format!("--fileca-cert={}", dir.join("fulcio-ca.pem").display()),
                format!("--fileca-key={}", dir.join("fulcio-ca-key.pem").display()),
                // The key file is not encrypted; Fulcio insists on the flag all the same.
                "--fileca-key-passwd=unused".to_owned(),
                "--fileca-watch=false".to_owned(),
                format!("--ct-log-url={ct_url}"),
                format!("--config-path={}", config.display()),
            ];
            Component::spawn_with_env("fulcio", &binary, &args, dir, &[("SSL_CERT_FILE", apiserver_ca)])
        },
        |mut component, p| async move {
            let outcome = wait_http(&mut component, p[0], "/api/v2/trustBundle").await;
            (component, outcome.map(|()| format!("http://127.0.0.1:{}", p[0])))
        },
    )
    .await
}

/// Rekor v2 on three ports (HTTP, gRPC, metrics), its log in a folder.
async fn start_rekor(dir: &Path) -> Result<(Component, String)> {
    let binary = peer_path("rekor-server");
    start_with_retry(
        3,
        |p| {
            let args = vec![
                "serve".to_owned(),
                "--http-address=127.0.0.1".to_owned(),
                format!("--http-port={}", p[0]),
                "--grpc-address=127.0.0.1".to_owned(),
                format!("--grpc-port={}", p[1]),
                format!("--http-metrics-port={}", p[2]),
                // The checkpoint origin, which names the key that signs checkpoints. sigstore-go
                // (cosign v3) verifies a Rekor v2 checkpoint with a note verifier named after
                // `url.Parse(baseUrl).Hostname()` of the trusted root's log: the host *without*
                // its port. With `127.0.0.1:<port>` here no signature on the note has the
                // verifier's name, and cosign refuses the entry ("note has no verifiable
                // signatures"). See [`rekor_origin`].
                format!("--hostname={}", rekor_origin()),
                format!("--storage-dir={}", dir.join("rekor").display()),
                format!("--signer-filepath={}", dir.join("rekor-key.pem").display()),
                format!("--checkpoint-interval={CHECKPOINT_INTERVAL}"),
            ];
            Component::spawn("rekor", &binary, &args, dir)
        },
        |mut component, p| async move {
            let outcome = wait_http(&mut component, p[0], "/healthz").await;
            (component, outcome.map(|()| format!("http://127.0.0.1:{}", p[0])))
        },
    )
    .await
}

/// The origin line of the local Rekor's checkpoints: the host of its URL, as sigstore-go derives
/// it from the trusted root's `baseUrl` (no scheme, no port). Every Rekor here is on 127.0.0.1;
/// their checkpoints are told apart by key (the note's key hint), not by name.
pub fn rekor_origin() -> &'static str {
    "127.0.0.1"
}

struct Urls<'a> {
    fulcio: &'a str,
    ct: &'a str,
    tsa: &'a str,
    rekor: &'a str,
}

/// A log (CT or Rekor) in the trusted root: its key and its ID, the SHA-256 of the key.
pub(crate) fn log_json(url: &str, spki: &[u8]) -> Value {
    json!({
        "baseUrl": url,
        "hashAlgorithm": "SHA2_256",
        "publicKey": {
            "rawBytes": B64.encode(spki),
            "keyDetails": "PKIX_ECDSA_P256_SHA_256",
            "validFor": {"start": VALID_FROM}
        },
        "logId": {"keyId": B64.encode(Sha256::digest(spki))}
    })
}

fn authority_json(url: &str, common_name: &str, chain_der: &[Vec<u8>]) -> Value {
    let certificates: Vec<Value> = chain_der
        .iter()
        .map(|der| json!({"rawBytes": B64.encode(der)}))
        .collect();
    json!({
        "subject": {"organization": "countersign", "commonName": common_name},
        "uri": url,
        "certChain": {"certificates": certificates},
        "validFor": {"start": VALID_FROM}
    })
}

/// Sigstore's `trusted_root.json` for this stack.
fn trusted_root_json(keys: &Keys, urls: &Urls<'_>, tsa_chain_pem: &str) -> Result<Value> {
    let tsa_chain =
        countersign::admission::certs::der_chain(tsa_chain_pem).map_err(|e| anyhow!("TSA chain: {e}"))?;
    Ok(json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [log_json(urls.rekor, &keys.rekor_spki)],
        "certificateAuthorities": [authority_json(urls.fulcio, "fulcio", std::slice::from_ref(&keys.fulcio_ca_der))],
        "ctlogs": [log_json(urls.ct, &keys.ct_spki)],
        "timestampAuthorities": [authority_json(urls.tsa, "tsa", &tsa_chain)]
    }))
}

/// cosign v3's signing config: where to get a certificate, a timestamp and a log entry.
fn signing_config_json(urls: &Urls<'_>) -> Value {
    let service = |url: String, version: u32| {
        json!({"url": url, "majorApiVersion": version, "validFor": {"start": VALID_FROM},
               "operator": "countersign-test"})
    };
    json!({
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls": [service(urls.fulcio.to_owned(), 1)],
        "oidcUrls": [],
        "rekorTlogUrls": [service(urls.rekor.to_owned(), 2)],
        "rekorTlogConfig": {"selector": "ANY"},
        "tsaUrls": [service(format!("{}/api/v1/timestamp", urls.tsa), 1)],
        "tsaConfig": {"selector": "ANY"}
    })
}
