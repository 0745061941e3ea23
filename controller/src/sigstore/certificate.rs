//! A Fulcio certificate at a trusted time: it chains to a CA of the trusted root that was valid
//! then, with the code-signing usage, it was itself valid then, and its embedded SCT verifies
//! against a CT log of the root.
//!
//! sigstore-verify does exactly this inside `Verifier::verify`, at the times it establishes
//! itself (timestamps over the signature, SETs); its steps (`verify_impl::helpers::
//! verify_certificate_chain`, `verify_impl::sct::verify_sct`) are not public in 0.15. The one
//! caller with a trusted time from elsewhere is a cosign v2 `.att` layer ([`super::attestation`]),
//! so these are the same steps with the same crates: rustls-webpki with sigstore-crypto's
//! algorithms for the chain, x509-cert's SCT types and tls_codec for RFC 6962's signed structure,
//! sigstore-crypto's keyring (the root's CT keys, by log ID, valid when the SCT was issued) for
//! its signature. Nothing here is cryptography of our own.

use jiff::Timestamp;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sigstore_types::{DerCertificate, Sha256Hash, SignatureBytes};
use sigstore_verify::crypto::{
    CertificateInfo, SigningScheme, WEBPKI_VERIFICATION_ALGS, parse_certificate_info,
};
use tls_codec::{Serialize as _, TlsByteSliceU16, TlsByteSliceU24};
use x509_cert::{
    Certificate,
    der::{
        Decode as _, Encode as _, oid::db::rfc5912::ID_KP_CODE_SIGNING, oid::db::rfc6962::CT_PRECERT_SCTS,
    },
    ext::pkix::sct::{
        HashAlgorithm, SignatureAlgorithm, SignedCertificateTimestamp, SignedCertificateTimestampList,
    },
};

use super::{Failure, SigstoreError};

fn untrusted(detail: impl Into<String>) -> SigstoreError {
    SigstoreError::verification(Failure::UntrustedCertificate, detail)
}

/// Verifies the leaf certificate `leaf` (DER) at `time` against `root`, and returns what it says.
pub(super) fn verify_at(
    root: &sigstore_trust_root::TrustedRoot,
    leaf: &[u8],
    time: Timestamp,
) -> Result<CertificateInfo, SigstoreError> {
    let info = parse_certificate_info(&DerCertificate::from_bytes(leaf))
        .map_err(|e| untrusted(format!("certificate: {e}")))?;
    if time < info.not_before || time > info.not_after {
        return Err(untrusted(format!(
            "the certificate is valid from {} to {}, not at the trusted time {time}",
            info.not_before, info.not_after
        )));
    }
    let issuer_spki = verify_chain(root, leaf, time)?;
    verify_sct(root, leaf, &issuer_spki)?;
    Ok(info)
}

/// The chain from `leaf` to a CA of the root valid at `time`, with the code-signing usage; the
/// SPKI of the leaf's issuer on the verified path (what its SCT was computed with). Only the
/// root's certificates complete the path, as for a cosign v2 `.sig` (a v0.3 bundle).
fn verify_chain(
    root: &sigstore_trust_root::TrustedRoot,
    leaf: &[u8],
    time: Timestamp,
) -> Result<Vec<u8>, SigstoreError> {
    let anchors = fulcio_anchors(root, time)?;
    if anchors.is_empty() {
        return Err(untrusted(format!(
            "no certificate authority of the trusted root is valid at {time}"
        )));
    }
    let leaf = CertificateDer::from(leaf);
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf).map_err(|e| untrusted(format!("certificate: {e}")))?;
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(time.as_second()).unwrap_or_default(),
    ));
    let path = end_entity
        .verify_for_usage(
            WEBPKI_VERIFICATION_ALGS,
            &anchors,
            &[],
            at,
            webpki::KeyUsage::required(ID_KP_CODE_SIGNING.as_bytes()),
            None,
            None,
        )
        .map_err(|e| untrusted(format!("certificate chain: {e}")))?;
    match path.intermediate_certificates().next() {
        Some(issuer) => Ok(issuer.subject_public_key_info().as_ref().to_vec()),
        // webpki keeps an anchor's SPKI without its SEQUENCE header: put it back.
        None => x509_cert::der::Any::new(
            x509_cert::der::Tag::Sequence,
            path.anchor().subject_public_key_info.as_ref(),
        )
        .and_then(|spki| spki.to_der())
        .map_err(|e| untrusted(format!("issuer key: {e}"))),
    }
}

/// Every certificate of the root's CAs whose validity window holds `time`, as a trust anchor
/// (Fulcio intermediates are anchors too, as sigstore-verify has them).
fn fulcio_anchors(
    root: &sigstore_trust_root::TrustedRoot,
    time: Timestamp,
) -> Result<Vec<TrustAnchor<'static>>, SigstoreError> {
    let current = root
        .certificate_authorities
        .iter()
        .filter(|ca| ca.valid_for.is_none_or(|w| w.contains(time)));
    current
        .flat_map(|ca| &ca.cert_chain.certificates)
        .map(|cert| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(cert.raw_bytes.as_bytes()))
                .map(|a| a.to_owned())
                .map_err(|e| SigstoreError::verification(Failure::Invalid, format!("trusted root CA: {e}")))
        })
        .collect()
}

/// The certificate's one embedded SCT, signed by a CT log of the root over the precertificate
/// (RFC 6962 §3.2): the TBS certificate without the SCT extension, and the issuer's key hash.
fn verify_sct(
    root: &sigstore_trust_root::TrustedRoot,
    leaf: &[u8],
    issuer_spki: &[u8],
) -> Result<(), SigstoreError> {
    let sct_error = |detail: String| untrusted(format!("SCT: {detail}"));
    let cert = Certificate::from_der(leaf).map_err(|e| untrusted(format!("certificate: {e}")))?;
    let sct = embedded_sct(&cert).map_err(sct_error)?;
    let scheme = sct_scheme(&sct).map_err(sct_error)?;
    let signed = precert_signed_data(&cert, &sct, issuer_spki).map_err(sct_error)?;
    let issued = i64::try_from(sct.timestamp)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .ok_or_else(|| sct_error(format!("timestamp {} is out of range", sct.timestamp)))?;
    let keys = root
        .ctfe_keys(scheme)
        .map_err(|e| SigstoreError::verification(Failure::Invalid, format!("trusted root CT logs: {e}")))?;
    let signature = SignatureBytes::from_bytes(sct.signature.signature.as_slice());
    keys.verify_with_key_id_at(&Sha256Hash::new(sct.log_id.key_id), issued, &signed, &signature)
        .map_err(|e| sct_error(format!("no CT log of the trusted root signed it: {e}")))
}

/// Exactly one SCT, as Fulcio embeds.
fn embedded_sct(cert: &Certificate) -> Result<SignedCertificateTimestamp, String> {
    let list: SignedCertificateTimestampList = match cert.tbs_certificate.get() {
        Ok(Some((_, list))) => list,
        _ => return Err("the certificate embeds none".into()),
    };
    let scts = list.parse_timestamps().map_err(|e| format!("{e:?}"))?;
    match scts.as_slice() {
        [one] => one.parse_timestamp().map_err(|e| format!("{e:?}")),
        [] => Err("the certificate embeds none".into()),
        _ => Err("the certificate embeds more than one".into()),
    }
}

/// The signing scheme its TLS `SignatureAndHashAlgorithm` names.
fn sct_scheme(sct: &SignedCertificateTimestamp) -> Result<SigningScheme, String> {
    let algorithm = &sct.signature.algorithm;
    match (&algorithm.signature, &algorithm.hash) {
        (SignatureAlgorithm::Ecdsa, HashAlgorithm::Sha256) => Ok(SigningScheme::EcdsaP256Sha256),
        (SignatureAlgorithm::Ecdsa, HashAlgorithm::Sha384) => Ok(SigningScheme::EcdsaP384Sha384),
        (SignatureAlgorithm::Rsa, HashAlgorithm::Sha256) => Ok(SigningScheme::RsaPkcs1Sha256),
        (SignatureAlgorithm::Rsa, HashAlgorithm::Sha384) => Ok(SigningScheme::RsaPkcs1Sha384),
        (SignatureAlgorithm::Rsa, HashAlgorithm::Sha512) => Ok(SigningScheme::RsaPkcs1Sha512),
        (signature, hash) => Err(format!("unsupported algorithm {signature:?} with {hash:?}")),
    }
}

/// RFC 6962 §3.2's `digitally-signed` structure of a precertificate entry, TLS-encoded: version,
/// signature type (certificate_timestamp), timestamp, entry type (precert_entry), issuer key
/// hash, the TBS certificate without the SCT extension, the SCT's extensions.
fn precert_signed_data(
    cert: &Certificate,
    sct: &SignedCertificateTimestamp,
    issuer_spki: &[u8],
) -> Result<Vec<u8>, String> {
    const CERTIFICATE_TIMESTAMP: u8 = 0;
    const PRECERT_ENTRY: u16 = 1;
    let mut tbs = cert.tbs_certificate.clone();
    tbs.extensions = tbs
        .extensions
        .map(|e| e.into_iter().filter(|e| e.extn_id != CT_PRECERT_SCTS).collect());
    let tbs = tbs.to_der().map_err(|e| format!("precertificate: {e}"))?;
    let issuer_key_hash = sigstore_verify::crypto::sha256(issuer_spki);
    let mut out = Vec::new();
    let encoded = (|| {
        out.extend(tls_codec::SerializeBytes::tls_serialize(&sct.version)?);
        CERTIFICATE_TIMESTAMP.tls_serialize(&mut out)?;
        sct.timestamp.tls_serialize(&mut out)?;
        PRECERT_ENTRY.tls_serialize(&mut out)?;
        out.extend_from_slice(issuer_key_hash.as_bytes());
        TlsByteSliceU24(&tbs).tls_serialize(&mut out)?;
        TlsByteSliceU16(sct.extensions.as_slice()).tls_serialize(&mut out)
    })();
    encoded.map_err(|e| format!("encoding: {e:?}"))?;
    Ok(out)
}
