//! The webhook's own certificates: a CA (what the webhook configurations' `caBundle` trusts) and
//! the serving certificate it signs, ECDSA P-256, built with RustCrypto's X.509 builder. No
//! I/O: [`super::tls`] stores them in a Secret and decides when to renew.

use std::{
    net::IpAddr,
    str::FromStr,
    time::{Duration, SystemTime},
};

use p256::{
    SecretKey,
    ecdsa::{DerSignature, SigningKey},
    pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding},
};
use x509_cert::{
    Certificate,
    builder::{Builder, CertificateBuilder, Profile},
    der::{
        DecodePem, Encode, EncodePem,
        asn1::{Ia5String, OctetString},
    },
    ext::pkix::{ExtendedKeyUsage, SubjectAltName, name::GeneralName},
    name::Name,
    serial_number::SerialNumber,
    spki::{EncodePublicKey, SubjectPublicKeyInfoOwned},
    time::{Time, Validity},
};

/// A certificate can be presented this long before its `notBefore` says (clock skew between
/// the operator and the API server).
const BACKDATE: Duration = Duration::from_secs(300);
/// id-kp-serverAuth (RFC 5280 §4.2.1.12).
const SERVER_AUTH: x509_cert::der::oid::ObjectIdentifier =
    x509_cert::der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");

/// Why certificates could not be built or read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CertError(String);

impl From<String> for CertError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

fn err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> CertError + '_ {
    move |e| CertError(format!("{what}: {e}"))
}

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// What a serving certificate must name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// A new self-signed CA valid for `validity` from `now`.
pub fn new_ca(common_name: &str, now: SystemTime, validity: Duration) -> Result<Pair, CertError> {
    let key = SecretKey::random(&mut rand_core::OsRng);
    let signer = SigningKey::from(&key);
    let subject =
        Name::from_str(&format!("CN={common_name},O=countersign")).map_err(|e| err("CA name")(&e))?;
    let builder = CertificateBuilder::new(
        Profile::Root,
        serial()?,
        validity_from(now, validity)?,
        subject,
        spki(&key)?,
        &signer,
    )
    .map_err(|e| err("CA")(&e))?;
    let cert = builder
        .build::<DerSignature>()
        .map_err(|e| err("signing the CA")(&e))?;
    pair(&cert, &key)
}

/// A serving certificate for `names`, signed by `ca`, valid for `validity` from `now`.
pub fn issue(ca: &Pair, names: &Names, now: SystemTime, validity: Duration) -> Result<Pair, CertError> {
    let ca_cert = Certificate::from_pem(ca.cert.as_bytes()).map_err(|e| err("CA certificate")(&e))?;
    let ca_key = SecretKey::from_pkcs8_pem(&ca.key).map_err(|e| err("CA key")(&e))?;
    let signer = SigningKey::from(&ca_key);
    let key = SecretKey::random(&mut rand_core::OsRng);
    let common_name = names.dns.first().map_or("countersign-webhook", String::as_str);
    let subject = Name::from_str(&format!("CN={common_name}")).map_err(|e| err("name")(&e))?;
    let profile = Profile::Leaf {
        issuer: ca_cert.tbs_certificate.subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    let mut builder = CertificateBuilder::new(
        profile,
        serial()?,
        validity_from(now, validity)?,
        subject,
        spki(&key)?,
        &signer,
    )
    .map_err(|e| err("certificate")(&e))?;
    let mut alt = Vec::new();
    for dns in &names.dns {
        alt.push(GeneralName::DnsName(
            Ia5String::new(dns).map_err(|e| err("DNS name")(&e))?,
        ));
    }
    for ip in &names.ips {
        let octets = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        alt.push(GeneralName::IpAddress(
            OctetString::new(octets).map_err(|e| err("IP")(&e))?,
        ));
    }
    builder
        .add_extension(&SubjectAltName(alt))
        .map_err(|e| err("subjectAltName")(&e))?;
    builder
        .add_extension(&ExtendedKeyUsage(vec![SERVER_AUTH]))
        .map_err(|e| err("extendedKeyUsage")(&e))?;
    let cert = builder.build::<DerSignature>().map_err(|e| err("signing")(&e))?;
    pair(&cert, &key)
}

/// What a PEM certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DER of the issuer and subject names, to tell which CA signed it.
    pub issuer: Vec<u8>,
    pub subject: Vec<u8>,
    pub names: Names,
}

pub fn facts(pem: &str) -> Result<Facts, CertError> {
    let cert = Certificate::from_pem(pem.as_bytes()).map_err(|e| err("certificate")(&e))?;
    let tbs = &cert.tbs_certificate;
    let mut names = Names::default();
    let alt = tbs
        .get::<SubjectAltName>()
        .map_err(|e| err("subjectAltName")(&e))?;
    for name in alt.map(|(_, a)| a.0).unwrap_or_default() {
        match name {
            GeneralName::DnsName(d) => names.dns.push(d.to_string()),
            GeneralName::IpAddress(o) => match o.as_bytes().len() {
                4 => names
                    .ips
                    .extend(<[u8; 4]>::try_from(o.as_bytes()).ok().map(IpAddr::from)),
                16 => names
                    .ips
                    .extend(<[u8; 16]>::try_from(o.as_bytes()).ok().map(IpAddr::from)),
                _ => {}
            },
            _ => {}
        }
    }
    Ok(Facts {
        not_before: tbs.validity.not_before.to_system_time(),
        not_after: tbs.validity.not_after.to_system_time(),
        issuer: tbs.issuer.to_der().map_err(|e| err("issuer")(&e))?,
        subject: tbs.subject.to_der().map_err(|e| err("subject")(&e))?,
        names,
    })
}

/// The DER of each certificate in a PEM bundle (none in an empty one).
pub fn der_chain(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    // x509-cert 0.2 computes `len - 1` of the input stripped of its trailing newlines: an empty
    // (or newline-only) bundle underflows, a panic wherever overflow checks are on.
    if pem.trim().is_empty() {
        return Ok(Vec::new());
    }
    Certificate::load_pem_chain(pem.as_bytes())
        .map_err(|e| err("certificate")(&e))?
        .iter()
        .map(|c| c.to_der().map_err(|e| err("certificate")(&e)))
        .collect()
}

/// The PKCS#8 DER of a PEM private key.
pub fn key_der(pem: &str) -> Result<Vec<u8>, CertError> {
    let key = SecretKey::from_pkcs8_pem(pem).map_err(|e| err("private key")(&e))?;
    Ok(key
        .to_pkcs8_der()
        .map_err(|e| err("private key")(&e))?
        .as_bytes()
        .to_vec())
}

fn pair(cert: &Certificate, key: &SecretKey) -> Result<Pair, CertError> {
    Ok(Pair {
        cert: cert
            .to_pem(LineEnding::LF)
            .map_err(|e| err("certificate PEM")(&e))?,
        key: key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| err("key PEM")(&e))?
            .to_string(),
    })
}

fn spki(key: &SecretKey) -> Result<SubjectPublicKeyInfoOwned, CertError> {
    let der = key
        .public_key()
        .to_public_key_der()
        .map_err(|e| err("public key")(&e))?;
    SubjectPublicKeyInfoOwned::try_from(der.as_bytes()).map_err(|e| err("public key")(&e))
}

/// A random positive serial number (RFC 5280: at most 20 octets).
fn serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::new(&bytes).map_err(|e| err("serial")(&e))
}

fn validity_from(now: SystemTime, validity: Duration) -> Result<Validity, CertError> {
    let time = |t: SystemTime| Time::try_from(t).map_err(|e| err("validity")(&e));
    Ok(Validity {
        not_before: time(now - BACKDATE)?,
        not_after: time(now + validity)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_certificate_names_what_it_was_asked_and_its_ca() {
        let day = Duration::from_secs(86_400);
        let ca =
            new_ca("countersign-webhook-ca", SystemTime::now(), 10 * day).unwrap_or_else(|e| panic!("{e}"));
        let names = Names {
            dns: vec!["countersign-webhook.countersign-system.svc".into()],
            ips: vec!["127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))],
        };
        let leaf = issue(&ca, &names, SystemTime::now(), day).unwrap_or_else(|e| panic!("{e}"));
        let (ca_facts, leaf_facts) = (
            facts(&ca.cert).unwrap_or_else(|e| panic!("{e}")),
            facts(&leaf.cert).unwrap_or_else(|e| panic!("{e}")),
        );
        assert_eq!(leaf_facts.names, names);
        assert_eq!(leaf_facts.issuer, ca_facts.subject);
        let lifetime = leaf_facts
            .not_after
            .duration_since(leaf_facts.not_before)
            .unwrap_or_default();
        assert_eq!(lifetime, day + BACKDATE);
        assert_eq!(
            der_chain(&format!("{}{}", leaf.cert, ca.cert))
                .map(|c| c.len())
                .ok(),
            Some(2)
        );
        assert!(key_der(&leaf.key).is_ok());
    }

    #[test]
    fn an_empty_bundle_holds_no_certificate() {
        // Found by the `specs` fuzz target: an empty ca.crt panicked inside x509-cert.
        for empty in ["", "\n", "\r\n\r\n", "  "] {
            assert_eq!(der_chain(empty).ok(), Some(Vec::new()), "{empty:?}");
        }
        assert!(der_chain("-----BEGIN CERTIFICATE-----\n").is_err());
    }
}
