//! Repository URLs: what transport, which host (for `known_hosts`), a form safe to print, and a
//! form to match webhook payloads against. Pure.

/// How a repository is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// `https://`, or `http://` on a loopback host.
    Http,
    /// `ssh://` or scp-like `user@host:path`: `known_hosts` is checked for `host`/`port`.
    Ssh {
        user: Option<String>,
        host: String,
        port: u16,
    },
    /// `file://`: a repository on this machine.
    File,
}

/// A repository URL, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    /// What libgit2 is given (scp-like URLs are rewritten as `ssh://`).
    pub fetch_url: String,
    pub transport: Transport,
}

impl RepoUrl {
    /// Parses the URLs the CRD accepts; the error says why (for `spec.url`).
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("ssh://") {
            let (authority, path) = rest.split_once('/').ok_or("an ssh:// URL needs a path")?;
            if path.is_empty() {
                return Err("an ssh:// URL needs a path".into());
            }
            let (user, host_port) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u.to_string()), h),
                None => (None, authority),
            };
            let (host, port) = split_port(host_port)?;
            return Ok(Self {
                fetch_url: url.to_string(),
                transport: Transport::Ssh { user, host, port },
            });
        }
        if let Some(rest) = url.strip_prefix("http://") {
            // Plain HTTP lets anyone on the path rewrite the trust configuration: only on this
            // machine, as the CRD's rule says (repeated for objects stored without the rule).
            let authority = rest.split('/').next().unwrap_or_default();
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            if !crate::reference::is_loopback_host(host) {
                return Err(format!(
                    "{:?}: plain http:// only on 127.0.0.1, localhost or [::1]; use https://",
                    redact(url)
                ));
            }
        }
        if url.starts_with("https://") || url.starts_with("http://") {
            return Ok(Self {
                fetch_url: url.to_string(),
                transport: Transport::Http,
            });
        }
        if url.starts_with("file://") {
            return Ok(Self {
                fetch_url: url.to_string(),
                transport: Transport::File,
            });
        }
        // scp-like: user@host:path
        if let Some((authority, path)) = url.split_once(':')
            && let Some((user, host)) = authority.split_once('@')
            && !path.is_empty()
            && !host.is_empty()
        {
            let path = path.trim_start_matches('/');
            return Ok(Self {
                fetch_url: format!("ssh://{user}@{host}/{path}"),
                transport: Transport::Ssh {
                    user: Some(user.to_string()),
                    host: host.to_string(),
                    port: 22,
                },
            });
        }
        Err(format!(
            "{:?} is not an https, ssh, scp-like or file URL",
            redact(url)
        ))
    }
}

fn split_port(host_port: &str) -> Result<(String, u16), String> {
    // [::1]:2222, host:2222, host
    if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port {p:?}"))?,
            None => 22,
        };
        return Ok((host.to_string(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, p)) => Ok((
            host.to_string(),
            p.parse().map_err(|_| format!("bad port {p:?}"))?,
        )),
        None => Ok((host_port.to_string(), 22)),
    }
}

/// The URL without a password or token in its user-info (`https://user:secret@host/` →
/// `https://user@host/`): safe for status, events and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}/{path}")
        }
        None => url.to_string(),
    }
}

/// The same repository whatever the spelling: host (lowercase, without user and default port)
/// and path (without a trailing `.git` or `/`), e.g. `git.example.com/team/trust`. Webhook
/// payloads list a repository's clone URLs (HTTPS and SSH); a TrustSource matches when its own
/// URL has the same key as one of them.
pub fn match_key(url: &str) -> Option<String> {
    let (host, path) = if let Some((_, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = host
            .strip_suffix(":443")
            .or_else(|| host.strip_suffix(":80"))
            .or_else(|| host.strip_suffix(":22"))
            .unwrap_or(host);
        (host.to_string(), path.to_string())
    } else {
        let (authority, path) = url.split_once(':')?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (host.to_string(), path.to_string())
    };
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{}/{}", host.to_ascii_lowercase(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports() {
        let ssh = RepoUrl::parse("ssh://git@127.0.0.1:2222/org/repo.git").unwrap();
        assert_eq!(
            ssh.transport,
            Transport::Ssh {
                user: Some("git".into()),
                host: "127.0.0.1".into(),
                port: 2222
            }
        );
        let scp = RepoUrl::parse("git@github.com:org/repo.git").unwrap();
        assert_eq!(scp.fetch_url, "ssh://git@github.com/org/repo.git");
        assert_eq!(
            scp.transport,
            Transport::Ssh {
                user: Some("git".into()),
                host: "github.com".into(),
                port: 22
            }
        );
        assert_eq!(
            RepoUrl::parse("https://h/o/r").unwrap().transport,
            Transport::Http
        );
        assert_eq!(
            RepoUrl::parse("file:///srv/r").unwrap().transport,
            Transport::File
        );
        assert!(RepoUrl::parse("ftp://h/r").is_err());
        // Plain HTTP only to this machine, as the CRD's rule: a TrustSource stored without the
        // rule must not fetch trust over the network unauthenticated.
        assert!(RepoUrl::parse("http://127.0.0.1:3000/o/r.git").is_ok());
        assert!(RepoUrl::parse("http://[::1]/o/r.git").is_ok());
        assert!(RepoUrl::parse("http://git.example/o/r.git").is_err());
        assert!(RepoUrl::parse("http://localhost.evil.example/r").is_err());
        assert!(RepoUrl::parse("http://u@git.example:80/r").is_err());
        assert!(RepoUrl::parse("ssh://h").is_err());
    }

    #[test]
    fn redaction_keeps_the_user_only() {
        assert_eq!(redact("https://bob:hunter2@h/o/r.git"), "https://bob@h/o/r.git");
        assert_eq!(redact("https://h/o/r"), "https://h/o/r");
        assert_eq!(redact("git@h:o/r"), "git@h:o/r");
    }

    #[test]
    fn the_same_repository_in_every_spelling() {
        let key = Some("git.example.com/team/trust".to_string());
        for url in [
            "https://git.example.com/team/trust.git",
            "https://Git.Example.com:443/team/trust/",
            "ssh://git@git.example.com/team/trust.git",
            "ssh://git@git.example.com:22/team/trust",
            "git@git.example.com:team/trust.git",
        ] {
            assert_eq!(match_key(url), key, "{url}");
        }
        assert_ne!(match_key("ssh://git@git.example.com:2222/team/trust"), key);
        assert_ne!(match_key("https://git.example.com/team/other"), key);
    }
}
