//! Registry credentials from docker `config.json` documents: the file `docker login` writes and
//! the content of `kubernetes.io/dockerconfigjson` secrets.

use std::collections::HashMap;

use base64::{Engine, prelude::BASE64_STANDARD};
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// Username/password (or identity token) per registry host. Cloning is cheap enough: it is
/// read once per secret and shared behind an `Arc` by callers that hold many.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_registry: HashMap<String, Credential>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets; the registries are enough to debug with.
        f.debug_set().entries(self.by_registry.keys()).finish()
    }
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

    /// Parses a docker `config.json` (also the `.dockerconfigjson` key of a pull secret).
    pub fn from_docker_config(json: &[u8]) -> Result<Self, CredentialsError> {
        let file: ConfigFile =
            serde_json::from_slice(json).map_err(|e| CredentialsError::Json(e.to_string()))?;
        let mut by_registry = HashMap::new();
        for (server, entry) in file.auths {
            if let Some(credential) = entry.into_credential(&server)? {
                by_registry.insert(normalize_server(&server), credential);
            }
        }
        Ok(Self { by_registry })
    }

    /// Adds `other`'s registries, keeping ours where both have one.
    pub fn merge(&mut self, other: &Credentials) {
        for (k, v) in &other.by_registry {
            self.by_registry.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_registry.is_empty()
    }

    /// Basic credentials for a registry host, by which oci-client also runs the bearer-token
    /// flow when the registry asks for it.
    pub fn for_registry(&self, registry: &str) -> RegistryAuth {
        let key = normalize_server(registry);
        match self.by_registry.get(&key) {
            Some(Credential::Basic { username, password }) => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            // An identity token is exchanged like a refresh token; registries that issue them
            // accept it as the password of the `<token>` user.
            Some(Credential::IdentityToken(token)) => RegistryAuth::Basic("<token>".into(), token.clone()),
            None => RegistryAuth::Anonymous,
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
        let c = Credentials::from_docker_config(json).unwrap();
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
        assert!(Credentials::from_docker_config(b"nope").is_err());
        assert!(Credentials::from_docker_config(br#"{"auths":{"r":{"auth":"!!"}}}"#).is_err());
        assert!(Credentials::from_docker_config(br#"{"auths":{"r":{"auth":"bm9jb2xvbg=="}}}"#).is_err());
    }

    #[test]
    fn debug_never_prints_secrets() {
        let c = Credentials::from_docker_config(br#"{"auths":{"r":{"username":"u","password":"secret"}}}"#)
            .unwrap();
        assert!(!format!("{c:?}").contains("secret"));
    }
}
