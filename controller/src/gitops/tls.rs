//! HTTPS servers checked against a TrustSource's own CA bundle (`ca.crt` in its Secret).
//!
//! libgit2 (through git2) hands the `certificate_check` callback only the server's leaf
//! certificate, never the intermediates it sent. So the leaf is verified here, with rustls'
//! WebPKI verifier (rustls-webpki, already in the tree through rustls and kube): chained to a
//! certificate of the bundle, valid for the host name or IP address of the URL, valid now, for
//! TLS server authentication. Every certificate of the bundle is a trust anchor, so a server
//! whose leaf is issued by an intermediate CA is trusted when that intermediate is listed in
//! `ca.crt` (listing only the root is not enough: the intermediate never reaches us).
//!
//! Without `ca.crt`, libgit2's own check against the system's roots stays in force.

use std::sync::Arc;

use rustls::{
    CertificateError, RootCertStore,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};

/// The trust anchors of one TrustSource, ready to check server certificates with.
#[derive(Clone)]
pub struct CaBundle {
    verifier: Arc<WebPkiServerVerifier>,
    /// Where the bundle comes from (`ca.crt of Secret ns/name`), for messages.
    origin: String,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle").field("origin", &self.origin).finish()
    }
}

impl CaBundle {
    /// Reads a PEM bundle; `origin` names it in messages. Refused when no certificate of it can
    /// be a trust anchor.
    pub fn parse(pem: &[u8], origin: &str) -> Result<Self, String> {
        let text = std::str::from_utf8(pem).map_err(|_| format!("{origin} is not PEM text"))?;
        let ders = crate::admission::certs::der_chain(text)
            .map_err(|e| format!("{origin} is not a PEM certificate bundle: {e}"))?;
        if ders.is_empty() {
            return Err(format!("{origin} holds no certificate"));
        }
        let mut roots = RootCertStore::empty();
        for (i, der) in ders.into_iter().enumerate() {
            roots
                .add(CertificateDer::from(der))
                .map_err(|e| format!("{origin}: certificate {i} cannot be a trust anchor: {e}"))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("{origin}: {e}"))?;
        Ok(Self {
            verifier,
            origin: origin.to_string(),
        })
    }

    /// Whether `leaf` (DER) is a valid certificate for `host` now, issued by the bundle.
    pub fn check(&self, leaf: &[u8], host: &str) -> Result<(), String> {
        self.check_at(leaf, host, UnixTime::now())
    }

    fn check_at(&self, leaf: &[u8], host: &str, now: UnixTime) -> Result<(), String> {
        // libgit2 passes an IPv6 host with its URL brackets.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_string())
            .map_err(|_| format!("{host:?} is not a host name or IP address"))?;
        let leaf = CertificateDer::from(leaf.to_vec());
        self.verifier
            .verify_server_cert(&leaf, &[], &name, &[], now)
            .map(|_| ())
            .map_err(|e| match e {
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                    "the certificate of {host} is not issued by a CA in {} (an intermediate CA must be listed there too: libgit2 passes only the server's own certificate)",
                    self.origin
                ),
                rustls::Error::InvalidCertificate(why) => {
                    format!("the certificate of {host} is refused ({}): {why}", self.origin)
                }
                other => format!("the certificate of {host} is refused ({}): {other}", self.origin),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::admission::certs::{self, Names, Pair};

    const DAY: Duration = Duration::from_secs(86_400);

    fn ca(name: &str) -> Pair {
        certs::new_ca(name, SystemTime::now(), DAY).unwrap()
    }

    fn leaf(ca: &Pair, dns: &str, ip: &str, now: SystemTime) -> Vec<u8> {
        let names = Names {
            dns: vec![dns.into()],
            ips: vec![ip.parse().unwrap()],
        };
        let pair = certs::issue(ca, &names, now, DAY).unwrap();
        certs::der_chain(&pair.cert).unwrap().remove(0)
    }

    fn bundle(pem: &str) -> CaBundle {
        CaBundle::parse(pem.as_bytes(), "ca.crt of Secret ns/git").unwrap()
    }

    #[test]
    fn a_leaf_from_the_bundle_is_trusted_for_its_names_only() {
        let ca = ca("git-ca");
        let cert = leaf(&ca, "git.example.com", "127.0.0.1", SystemTime::now());
        let b = bundle(&ca.cert);
        b.check(&cert, "git.example.com").unwrap();
        b.check(&cert, "127.0.0.1").unwrap();
        let e = b.check(&cert, "other.example.com").unwrap_err();
        assert!(e.contains("other.example.com"), "{e}");
        assert!(b.check(&cert, "127.0.0.2").is_err());
    }

    #[test]
    fn another_ca_names_the_bundle() {
        let cert = leaf(&ca("real"), "git.example.com", "127.0.0.1", SystemTime::now());
        let e = bundle(&ca("other").cert).check(&cert, "127.0.0.1").unwrap_err();
        assert!(e.contains("not issued by a CA in ca.crt of Secret ns/git"), "{e}");
    }

    #[test]
    fn time_is_checked() {
        let ca = ca("git-ca");
        let cert = leaf(&ca, "git.example.com", "127.0.0.1", SystemTime::now());
        let later = UnixTime::since_unix_epoch(
            (SystemTime::now() + 2 * DAY)
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap(),
        );
        let e = bundle(&ca.cert).check_at(&cert, "127.0.0.1", later).unwrap_err();
        assert!(e.contains("expired"), "{e}");
    }

    #[test]
    fn garbage_is_refused_when_read() {
        let e = CaBundle::parse(b"not a certificate", "ca.crt of Secret ns/git").unwrap_err();
        assert!(e.contains("ca.crt of Secret ns/git"), "{e}");
    }
}
