//! The credentials of a TrustSource, read from its Secret (in the operator's namespace), and the
//! `known_hosts` check of SSH host keys. Nothing here is ever formatted into a message: `Debug`
//! prints which credentials are present, never their values.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::error::Error;

/// The data keys of the Secret, as Flux names them (so a Flux Git secret works as is).
pub const IDENTITY: &str = "identity";
pub const KNOWN_HOSTS: &str = "known_hosts";
pub const USERNAME: &str = "username";
pub const PASSWORD: &str = "password";
pub const BEARER_TOKEN: &str = "bearerToken";
pub const CA: &str = "ca.crt";

/// What the Secret holds.
#[derive(Clone, Default)]
pub struct Credentials {
    /// An OpenSSH private key (unencrypted).
    pub identity: Option<String>,
    /// `known_hosts` lines.
    pub known_hosts: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
    /// PEM certificates to verify the HTTPS server with, instead of the system's roots.
    pub ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity.is_some())
            .field("known_hosts", &self.known_hosts.is_some())
            .field("username", &self.username.is_some())
            .field("password", &self.password.is_some())
            .field("bearer_token", &self.bearer_token.is_some())
            .field("ca", &self.ca.is_some())
            .finish()
    }
}

impl Credentials {
    /// From a Secret's data.
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Self {
        let text = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .filter(|s| !s.trim().is_empty())
        };
        Self {
            identity: text(IDENTITY),
            known_hosts: text(KNOWN_HOSTS),
            username: text(USERNAME).map(|s| s.trim().to_string()),
            password: text(PASSWORD),
            bearer_token: text(BEARER_TOKEN).map(|s| s.trim().to_string()),
            ca: data.get(CA).cloned().filter(|c| !c.is_empty()),
        }
    }
}

/// The data of the Secret `namespace/name`; a missing Secret is an error naming it.
pub async fn read_secret(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<BTreeMap<String, Vec<u8>>, Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| Error::Credentials(format!("reading Secret {namespace}/{name}: {e}")))?
        .ok_or_else(|| Error::Credentials(format!("Secret {namespace}/{name} does not exist")))?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// Whether `known_hosts` lists `key` (the SSH wire encoding of the server's host key, as libgit2
/// hands it over) for `host` on `port`. Entries are matched as OpenSSH does for plain host
/// patterns: `host` on port 22, `[host]:port` otherwise, comma-separated lists, `*` and `?`
/// wildcards and `!` negations. Hashed entries (`ssh-keyscan -H`) and `@cert-authority` lines
/// are not supported and never match; `@revoked` keys are refused.
pub fn known_host(known_hosts: &str, host: &str, port: u16, key: &[u8]) -> Result<(), String> {
    let name = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    let mut listed_for_host = false;
    for line in known_hosts.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else { continue };
        let revoked = first == "@revoked";
        if first.starts_with('@') {
            if !revoked {
                continue;
            }
            let Some(next) = fields.next() else { continue };
            first = next;
        }
        let (Some(_kind), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !patterns_match(first, &name) {
            continue;
        }
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(blob) else {
            continue;
        };
        if revoked && blob == key {
            return Err(format!(
                "the host key of {name} is marked @revoked in known_hosts"
            ));
        }
        listed_for_host |= !revoked;
        if !revoked && blob == key {
            return Ok(());
        }
    }
    Err(if listed_for_host {
        format!(
            "the host key of {name} is not the one in known_hosts (a different server, or its key changed)"
        )
    } else {
        format!("known_hosts has no entry for {name}")
    })
}

fn patterns_match(patterns: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard(negated, name) {
                return false;
            }
        } else if wildcard(pattern, name) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive (host names are).
fn wildcard(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x01A";

    fn line(hosts: &str) -> String {
        format!(
            "{hosts} ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(KEY)
        )
    }

    #[test]
    fn matches_host_and_port_as_openssh_writes_them() {
        assert!(known_host(&line("[127.0.0.1]:2222"), "127.0.0.1", 2222, KEY).is_ok());
        assert!(known_host(&line("git.example.com,10.0.0.1"), "git.example.com", 22, KEY).is_ok());
        assert!(known_host(&line("*.example.com"), "git.example.com", 22, KEY).is_ok());
        assert!(
            known_host(
                &line("*.example.com,!git.example.com"),
                "git.example.com",
                22,
                KEY
            )
            .is_err()
        );
        // Port 22 is written without brackets; another port must be.
        assert!(known_host(&line("127.0.0.1"), "127.0.0.1", 2222, KEY).is_err());
    }

    #[test]
    fn another_key_or_no_entry_is_refused_with_the_reason() {
        let other = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x01B";
        let e = known_host(&line("[h]:2"), "h", 2, other).unwrap_err();
        assert!(e.contains("not the one in known_hosts"), "{e}");
        let e = known_host(&line("[h]:2"), "g", 2, KEY).unwrap_err();
        assert!(e.contains("no entry for [g]:2"), "{e}");
        let e = known_host(&format!("@revoked {}", line("[h]:2")), "h", 2, KEY).unwrap_err();
        assert!(e.contains("revoked"), "{e}");
        assert!(known_host("", "h", 22, KEY).is_err());
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let c = Credentials {
            password: Some("hunter2".into()),
            ..Credentials::default()
        };
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("password: true"), "{text}");
    }
}
