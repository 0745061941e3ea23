//! The hostile-input corpus of `tests/corpus/<kind>/`: loading its `cases.json`, generating the
//! cases too big to commit, and running one case through the library parser of its kind.

// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use countersign::{
    crd::TrustSource,
    formats::{
        FormatError,
        bundle::{Bundle, statement_for},
        dsse::{Envelope, Statement},
        oci::{Index, Manifest},
        simple_signing::Payload,
    },
    gitops::{self, read::Limits, url::RepoUrl},
    keys::{KeyError, PublicKey, SigningKey},
    reference::{Digest, ImageRef, ReferenceError},
    registry::{Credentials, CredentialsError},
    sigstore::TrustedRoot,
};
use serde::Deserialize;

/// Every case of every kind gets this long, generously: a parser that is linear in its input
/// takes milliseconds even for the generated megabytes on a loaded debug build.
pub const TIME_LIMIT: Duration = Duration::from_secs(20);

/// One entry of a `cases.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    /// The file holding the bytes, next to `cases.json`.
    #[serde(default)]
    pub file: Option<String>,
    /// The bytes inline (image references).
    #[serde(default)]
    pub input: Option<String>,
    /// Or the name of a generator in [`generate`] (cases too big to commit).
    #[serde(default)]
    pub generate: Option<String>,
    /// What the case is, for people.
    pub what: String,
    /// The error category the library gives (`ok` when the input must be accepted).
    pub error: String,
    /// The object the error names (`manifest`, `DSSE payload`, a registry).
    #[serde(default)]
    pub names: Option<String>,
    /// The field the error names (CRD specs: `spec.keys[0].publicKey`).
    #[serde(default)]
    pub field: Option<String>,
    /// The YAML document the error names (multi-document files).
    #[serde(default)]
    pub document: Option<usize>,
    /// What the CLI's rejection says when it differs from the library's (`declares`).
    #[serde(default)]
    pub registry: Option<String>,
    /// For size cases: how much the process may grow while parsing, in MiB.
    #[serde(default)]
    pub max_mib: Option<u64>,
    /// The field the apiserver names when it refuses the object (CRD schema or CEL).
    #[serde(default)]
    pub apiserver: Option<String>,
    /// The field the object's status names when the apiserver accepts it.
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
struct Manifest_ {
    cases: Vec<Case>,
}

pub fn dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(kind)
}

pub fn cases(kind: &str) -> Vec<Case> {
    let path = dir(kind).join("cases.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: Manifest_ =
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    manifest.cases
}

impl Case {
    pub fn bytes(&self, kind: &str) -> Vec<u8> {
        match (&self.file, &self.input, &self.generate) {
            (Some(file), None, None) => {
                let path = dir(kind).join(file);
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            }
            (None, Some(input), None) => input.clone().into_bytes(),
            (None, None, Some(generator)) => generate(generator),
            _ => panic!("{kind}/{}: exactly one of file, input, generate", self.name),
        }
    }
}

const DEEP: usize = 100_000;
const MIB: usize = 1 << 20;

/// The cases too big (or too repetitive) to commit.
pub fn generate(name: &str) -> Vec<u8> {
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let manifest = |annotations: &str, layers: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"a","size":2,"digest":"sha256:0"}},"layers":[{layers}],"annotations":{{{annotations}}}}}"#
        )
    };
    let statement = |predicate: &str| {
        format!(
            r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[],"predicateType":"p","predicate":{predicate}}}"#
        )
    };
    let text = match name {
        "deep-nesting" => nested(DEEP),
        "huge-annotation" => manifest(&format!(r#""a":"{}""#, "x".repeat(8 * MIB)), ""),
        "many-layers" => {
            let layer = r#"{"mediaType":"a","size":1,"digest":"sha256:0"}"#;
            manifest("", &vec![layer; 200_000].join(","))
        }
        "long-number" => format!(r#"{{"schemaVersion":{}}}"#, "9".repeat(MIB)),
        "deep-optional" => format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"d"}},"type":"cosign container image signature"}},"optional":{{"a":{}}}}}"#,
            nested(DEEP)
        ),
        "huge-optional" => {
            let entries: Vec<String> = (0..100_000).map(|i| format!(r#""k{i}":"v""#)).collect();
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"d"}},"type":"cosign container image signature"}},"optional":{{{}}}}}"#,
                entries.join(",")
            )
        }
        "deep-predicate" => {
            let payload = countersign::formats::encode_base64(statement(&nested(DEEP)).as_bytes());
            format!(r#"{{"payloadType":"t","payload":"{payload}","signatures":[]}}"#)
        }
        "deep-certificate" => format!(
            r#"{{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{{"certificate":{}}}}}"#,
            nested(DEEP)
        ),
        "huge-pem" => format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            "QUFB".repeat(2 * MIB)
        ),
        "many-registries" => {
            let entries: Vec<String> = (0..100_000)
                .map(|i| format!(r#""r{i}.example":{{"username":"u","password":"p"}}"#))
                .collect();
            format!(r#"{{"auths":{{{}}}}}"#, entries.join(","))
        }
        "huge-auth" => format!(r#"{{"auths":{{"r":{{"auth":"{}!"}}}}}}"#, "A".repeat(8 * MIB)),
        "huge-ref" => format!("registry.example/{}", "a".repeat(MIB)),
        "huge-cert" => format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            "QUFB".repeat(2 * MIB)
        ),
        "deep-yaml" => format!(
            "apiVersion: countersign.dev/v1alpha1\nkind: TrustRoot\nmetadata: {{name: deep}}\nspec: {{images: {}}}\n",
            nested(10_000)
        ),
        "huge-yaml" => format!(
            "apiVersion: countersign.dev/v1alpha1\nkind: TrustRoot\nmetadata: {{name: huge}}\n# {}\n",
            "x".repeat(2 * MIB)
        ),
        "many-aliases" => format!(
            "apiVersion: countersign.dev/v1alpha1\nkind: TrustRoot\nmetadata: {{name: &n aliases}}\nspec: {{images: [{}]}}\n",
            vec!["*n"; 10_000].join(", ")
        ),
        other => panic!("no generator {other:?}"),
    };
    text.into_bytes()
}

/// What a parser said about one case, in the corpus' terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `ok` or the error category.
    pub category: String,
    /// The object or registry the error names.
    pub names: Option<String>,
    /// The field the error names.
    pub field: Option<String>,
    pub document: Option<usize>,
    /// The whole message, for the failure output.
    pub message: String,
}

impl Outcome {
    fn ok() -> Self {
        Self::error("ok", None, String::new())
    }

    fn error(category: &str, names: Option<&str>, message: String) -> Self {
        Self {
            category: category.into(),
            names: names.map(str::to_string),
            field: None,
            document: None,
            message,
        }
    }
}

/// The digest the statement of a hostile bundle must name (never does).
pub fn subject_digest() -> Digest {
    Digest::of(b"hostile")
}

/// Runs `bytes` through the library parser of `kind`.
pub fn parse(kind: &str, bytes: &[u8]) -> Outcome {
    let text = || std::str::from_utf8(bytes);
    match kind {
        "oci-manifest" => format_outcome(Manifest::parse(bytes).map(drop)),
        "oci-index" => format_outcome(Index::parse(bytes).map(drop)),
        "simple-signing" => format_outcome(Payload::parse(bytes).map(drop)),
        "dsse" => match serde_json::from_slice::<Envelope>(bytes) {
            Err(e) => Outcome::error("json", Some("DSSE envelope"), e.to_string()),
            Ok(envelope) => format_outcome(
                envelope
                    .payload_bytes()
                    .and_then(|p| Statement::parse(&p))
                    .map(drop),
            ),
        },
        "bundle" => {
            format_outcome(Bundle::parse(bytes).and_then(|b| statement_for(&b, &subject_digest()).map(drop)))
        }
        "public-key" => match text() {
            Err(e) => Outcome::error("not_utf8", None, e.to_string()),
            Ok(pem) => key_outcome(PublicKey::from_pem(pem).map(drop)),
        },
        "private-key" => match text() {
            Err(e) => Outcome::error("not_utf8", None, e.to_string()),
            Ok(pem) => key_outcome(SigningKey::from_pem(pem, Some(b"hostile")).map(drop)),
        },
        "docker-config" => match Credentials::from_docker_config(bytes, "config.json") {
            Ok(_) => Outcome::ok(),
            Err(e @ CredentialsError::Json(_)) => Outcome::error("json", None, e.to_string()),
            Err(CredentialsError::Auth(registry)) => {
                Outcome::error("auth", Some(&registry), format!("registry {registry}"))
            }
        },
        "image-ref" => match text().map(ImageRef::parse) {
            Err(e) => Outcome::error("not_utf8", None, e.to_string()),
            Ok(Ok(_)) => Outcome::ok(),
            Ok(Err(e @ ReferenceError::Image { .. })) => Outcome::error("image", None, e.to_string()),
            Ok(Err(e @ ReferenceError::Digest(_))) => Outcome::error("digest", None, e.to_string()),
        },
        "trusted-root" => match TrustedRoot::from_json("hostile.json", bytes) {
            Ok(_) => Outcome::ok(),
            Err(e) => Outcome::error(e.category(), None, e.to_string()),
        },
        "trustroot" | "keyrotation" => {
            gitops_outcome(gitops::read::parse_file("hostile.yaml", bytes, Limits::default()))
        }
        "trustsource" => trust_source_outcome(bytes),
        "ca-bundle" => match gitops::tls::CaBundle::parse(bytes, "ca.crt of Secret ns/git") {
            Ok(_) => Outcome::ok(),
            Err(m) => {
                let names = m.starts_with("ca.crt of Secret ns/git").then_some("ca.crt");
                Outcome::error("invalid", names, m)
            }
        },
        other => panic!("no parser for kind {other:?}"),
    }
}

fn format_outcome(result: Result<(), FormatError>) -> Outcome {
    match result {
        Ok(()) => Outcome::ok(),
        Err(e) => {
            let (category, what) = match &e {
                FormatError::Json { what, .. } => ("json", *what),
                FormatError::Invalid { what, .. } => ("invalid", *what),
                FormatError::Base64 { what } => ("base64", *what),
            };
            Outcome::error(category, Some(what), e.to_string())
        }
    }
}

fn key_outcome(result: Result<(), KeyError>) -> Outcome {
    let Err(e) = result else {
        return Outcome::ok();
    };
    let category = match &e {
        KeyError::PublicPem(_) => "public_pem",
        KeyError::Unsupported(_) => "unsupported",
        KeyError::PrivatePem(_) => "private_pem",
        KeyError::Decrypt => "decrypt",
        KeyError::PasswordRequired => "password_required",
        KeyError::Encrypt(_) => "encrypt",
    };
    Outcome::error(category, None, e.to_string())
}

fn gitops_outcome<T>(result: Result<T, gitops::Error>) -> Outcome {
    match result {
        Ok(_) => Outcome::ok(),
        Err(e) => {
            let mut outcome = Outcome::error(e.category(), None, e.to_string());
            if let gitops::Error::Invalid { location, .. } = &e {
                outcome.field = location.field.clone();
                outcome.document = location.document;
            }
            outcome
        }
    }
}

/// A TrustSource comes from the apiserver, not from a file: its YAML is read as the apiserver
/// would hand it over, then checked in the order the controller checks it before a sync
/// (`gitops::controller::sync_steps`: timeout, interval, url).
fn trust_source_outcome(bytes: &[u8]) -> Outcome {
    let field_error = |e: countersign::crd::FieldError| {
        let mut o = Outcome::error("spec", None, e.to_string());
        o.field = Some(e.path);
        o
    };
    let text = String::from_utf8_lossy(bytes);
    let source: TrustSource = match serde_saphyr::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            let mut o = Outcome::error("spec", None, e.to_string());
            o.field = Some("spec".into());
            return o;
        }
    };
    if let Err(e) = source.timeout().and_then(|_| source.interval()) {
        return field_error(e);
    }
    match RepoUrl::parse(&source.spec.url) {
        Ok(_) => Outcome::ok(),
        Err(m) => field_error(countersign::crd::FieldError::new("spec.url", m)),
    }
}

/// Current and peak resident memory of this process, in KiB; the peak is reset first, so that
/// what follows is measured alone (Linux: `/proc/self/clear_refs`).
pub fn reset_peak_rss() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    proc_status("VmRSS")
}

pub fn peak_rss() -> u64 {
    proc_status("VmHWM")
}

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
