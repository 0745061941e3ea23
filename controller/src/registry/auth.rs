//! Registry credentials from docker `config.json` documents: the file `docker login` writes and
//! the content of `kubernetes.io/dockerconfigjson` secrets.

use std::collections::HashMap;

use base64::{Engine, prelude::BASE64_STANDARD};
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// Username/password (or identity token) per registry host, each with where it came from (a
/// pull secret, a config.json, flags) so that a refusal can name it. Cloning is cheap enough: it
/// is read once per secret and shared behind an `Arc` by callers that hold many.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_registry: HashMap<String, Sourced>,
    /// Used for every registry without its own entry (cosign's `--registry-username`).
    everywhere: Option<Sourced>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets; the registries and origins are enough to debug with.
        let mut set = f.debug_set();
        set.entries(
            self.by_registry
                .iter()
                .map(|(r, s)| format!("{r} from {}", s.origin)),
        );
        if let Some(s) = &self.everywhere {
            set.entry(&format!("* from {}", s.origin));
        }
        set.finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
struct Sourced {
    credential: Credential,
    /// `Secret ns/name`, a file path, `--registry-username`: never a secret itself.
    origin: String,
}

#[derive(Clone, PartialEq, Eq)]
enum Credential {
    Basic { username: String, password: String },
    IdentityToken(String),
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("not a docker config.json: {0}")]
    Json(String),
    #[error("registry {0:?}: \"auth\" is not base64 of user:password")]
    Auth(String),
}

impl Credentials {
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// Parses a docker `config.json` (also the `.dockerconfigjson` key of a pull secret);
    /// `origin` says where it was read (`Secret ns/name`, a path), for messages.
    pub fn from_docker_config(json: &[u8], origin: &str) -> Result<Self, CredentialsError> {
        let file: ConfigFile =
            serde_json::from_slice(json).map_err(|e| CredentialsError::Json(e.to_string()))?;
        let mut by_registry = HashMap::new();
        for (server, entry) in file.auths {
            if let Some(credential) = entry.into_credential(&server)? {
                let sourced = Sourced {
                    credential,
                    origin: origin.to_string(),
                };
                by_registry.insert(normalize_server(&server), sourced);
            }
        }
        Ok(Self {
            by_registry,
            everywhere: None,
        })
    }

    /// One username and password for every registry (cosign's `--registry-username` and
    /// `--registry-password`); `origin` names them in messages.
    pub fn for_every_registry(username: &str, password: &str, origin: &str) -> Self {
        Self {
            by_registry: HashMap::new(),
            everywhere: Some(Sourced {
                credential: Credential::Basic {
                    username: username.to_string(),
                    password: password.to_string(),
                },
                origin: origin.to_string(),
            }),
        }
    }

    /// Adds `other`'s registries, keeping ours where both have one.
    pub fn merge(&mut self, other: &Credentials) {
        for (k, v) in &other.by_registry {
            self.by_registry.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if self.everywhere.is_none() {
            self.everywhere.clone_from(&other.everywhere);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty() && self.everywhere.is_none()
    }

    fn get(&self, registry: &str) -> Option<&Sourced> {
        self.by_registry
            .get(&normalize_server(registry))
            .or(self.everywhere.as_ref())
    }

    /// Basic credentials for a registry host, by which oci-client also runs the bearer-token
    /// flow when the registry asks for it.
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.get(registry).map(|s| &s.credential) {
            Some(Credential::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            // An identity token is exchanged like a refresh token; registries that issue them
            // accept it as the password of the `<token>` user.
            Some(Credential::IdentityToken(token)) => RegistryAuth::Basic("<token>".into(), token.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// Where the credentials for `registry` come from, for a refusal's message: `credentials
    /// from Secret ns/name`, or `no credentials` (anonymous).
    pub fn describe(&self, registry: &str) -> String {
        match self.get(registry) {
            Some(s) => format!("credentials from {}", s.origin),
            None => "no credentials (anonymous)".into(),
        }
    }
}

impl AuthEntry {
    fn into_credential(self, server: &str) -> Result<Option<Credential>, CredentialsError> {
        if let Some(token) = self.identitytoken.filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token)));
        }
        if let (Some(username), Some(password)) = (self.username.clone(), self.password.clone()) {
            return Ok(Some(Credential::Basic { username, password }));
        }
        let Some(auth) = self.auth.filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let decoded = BASE64_STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| CredentialsError::Auth(server.to_string()))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| CredentialsError::Auth(server.to_string()))?;
        Ok(Some(Credential::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }))
    }
}

/// `https://index.docker.io/v1/`, `docker.io` and `index.docker.io` are one registry; keys may
/// carry a scheme and a path.
fn normalize_server(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default().to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "registry-1.docker.io" | "index.docker.io" => "index.docker.io".into(),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auth_username_password_and_docker_hub_aliases() {
        let json = br#"{"auths":{
            "https://index.docker.io/v1/":{"auth":"dXNlcjpwYTpzcw=="},
            "127.0.0.1:5000":{"username":"u","password":"p"},
            "empty.example":{}
        }}"#;
        let c = Credentials::from_docker_config(json, "config.json").unwrap();
        assert_eq!(
            c.for_registry("docker.io"),
            RegistryAuth::Basic("user".into(), "pa:ss".into())
        );
        assert_eq!(
            c.for_registry("127.0.0.1:5000"),
            RegistryAuth::Basic("u".into(), "p".into())
        );
        assert_eq!(c.for_registry("empty.example"), RegistryAuth::Anonymous);
        assert_eq!(c.for_registry("other"), RegistryAuth::Anonymous);
    }

    #[test]
    fn bad_documents_are_errors() {
        let parse = |json: &[u8]| Credentials::from_docker_config(json, "config.json");
        assert!(parse(b"nope").is_err());
        assert!(parse(br#"{"auths":{"r":{"auth":"!!"}}}"#).is_err());
        assert!(parse(br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let mut c = Credentials::from_docker_config(
            br#"{"auths":{"r":{"username":"u","password":"secret"}}}"#,
            "Secret ns/pull",
        )
        .unwrap();
        c.merge(&Credentials::for_every_registry(
            "u",
            "hunter2",
            "--registry-password",
        ));
        let text = format!("{c:?}");
        assert!(!text.contains("secret\"") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("r from Secret ns/pull"), "{text}");
    }

    #[test]
    fn refusals_can_name_where_the_credentials_came_from() {
        let mut c = Credentials::from_docker_config(
            br#"{"auths":{"r.example":{"username":"u","password":"p"}}}"#,
            "Secret team/pull",
        )
        .unwrap();
        assert_eq!(c.describe("r.example"), "credentials from Secret team/pull");
        assert_eq!(c.describe("other.example"), "no credentials (anonymous)");
        // A registry's own entry wins over the credentials for every registry.
        c.merge(&Credentials::for_every_registry("x", "y", "--registry-username"));
        assert_eq!(c.describe("r.example"), "credentials from Secret team/pull");
        assert_eq!(
            c.describe("other.example"),
            "credentials from --registry-username"
        );
        assert_eq!(
            c.for_registry("other.example"),
            RegistryAuth::Basic("x".into(), "y".into())
        );
    }
}
