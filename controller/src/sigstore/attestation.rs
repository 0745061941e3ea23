//! cosign v2's keyless `.att` attestations, verified as strictly as a keyless `.sig`.
//!
//! A `.att` layer is a DSSE envelope with the `.sig` annotations (certificate, chain,
//! `rfc3161timestamp`), but cosign v2 asks the TSA to timestamp the whole envelope, the layer's
//! bytes (`attest.go`: `GetTimestampedSignature(signedPayload, …)`), and verifies it over them
//! (`VerifyRFC3161Timestamp`: an attestation has no base64 signature, so `sig.Payload()`). A
//! Sigstore bundle's timestamp covers the signature, so the bundle verifier cannot take this one.
//! The same checks, in the same order: the token against the root's TSAs over the envelope bytes
//! (sigstore-tsa's per-authority check, as sigstore-verify calls it), the certificate at that time
//! ([`super::certificate`]), the envelope's signature with the certificate's key
//! (sigstore-crypto), then the identity. Its Rekor entry, if any, is not read: the caller counts
//! it only when the log is optional.

use jiff::Timestamp;
use sigstore_types::{SignatureBytes, TimestampToken};
use sigstore_verify::crypto::{CertificateInfo, verify_signature};

use super::{Failure, Identity, Signer, SigstoreError, TrustedRoot, certificate, legacy, match_identity};

/// One keyless `.att` layer.
#[derive(Debug, Clone, Copy)]
pub struct LegacyAttestation<'a> {
    /// The layer's bytes, as stored: the DSSE envelope JSON, which the timestamp covers.
    pub envelope: &'a [u8],
    /// What the envelope's signatures sign (its PAE).
    pub signed: &'a [u8],
    /// The envelope's signatures, decoded.
    pub signatures: &'a [Vec<u8>],
    /// PEM leaf (`dev.sigstore.cosign/certificate`).
    pub certificate: &'a str,
    /// `{"SignedRFC3161Timestamp": "<base64 DER>"}` (`dev.sigstore.cosign/rfc3161timestamp`).
    pub timestamp: Option<&'a str>,
}

impl TrustedRoot {
    /// Verifies a keyless cosign v2 `.att` layer (see the module) and checks the signer against
    /// `identities`: the first that matches and the signer, or why none does.
    pub fn verify_legacy_attestation<'i, I: AsRef<Identity>>(
        &self,
        attestation: &LegacyAttestation<'_>,
        identities: &'i [I],
    ) -> Result<(&'i I, Signer), SigstoreError> {
        let time = self.envelope_time(attestation)?;
        let leaf = legacy::leaf_der(attestation.certificate)?;
        let info = certificate::verify_at(&self.root, &leaf, time)?;
        verify_envelope_signature(&info, attestation)?;
        let signer = Signer {
            subject: info
                .identity
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            issuer: info.issuer.clone().unwrap_or_default(),
        };
        match_identity(signer, identities)
    }

    /// The time a TSA of the root vouches for, over the envelope bytes.
    fn envelope_time(&self, attestation: &LegacyAttestation<'_>) -> Result<Timestamp, SigstoreError> {
        let Some(json) = attestation.timestamp else {
            return Err(SigstoreError::verification(
                Failure::NoTrustedTime,
                "the attestation has no RFC 3161 timestamp (its log entry is not read)",
            ));
        };
        let untrusted = |detail: String| SigstoreError::verification(Failure::UntrustedTimestamp, detail);
        let token = TimestampToken::from_base64(&legacy::signed_timestamp(json)?)
            .map_err(|e| untrusted(format!("rfc3161timestamp annotation: {e}")))?;
        // sigstore-tsa checks the token's message imprint over the bytes it is given, which it
        // calls the signature; for a cosign v2 attestation they are the envelope.
        let envelope = SignatureBytes::from_bytes(attestation.envelope);
        let mut outside = None;
        let mut last = "the trusted root has no timestamp authority valid now".to_string();
        for authority in self.root.tsa_authorities() {
            match sigstore_verify::tsa::verify_timestamp_for_authority(&token, &envelope, &authority) {
                Ok(time) => return Ok(time),
                Err(sigstore_verify::tsa::Error::TimestampOutsideValidity { time }) => outside = Some(time),
                Err(e) => last = e.to_string(),
            }
        }
        Err(untrusted(match outside {
            Some(time) => format!("{time} is outside the validity of the timestamp authority that signed it"),
            None => format!("no timestamp authority of the trusted root vouches for the envelope: {last}"),
        }))
    }
}

/// One of the envelope's signatures verifies with the certificate's key.
fn verify_envelope_signature(
    info: &CertificateInfo,
    attestation: &LegacyAttestation<'_>,
) -> Result<(), SigstoreError> {
    let scheme = info.key_algorithm.default_signing_scheme();
    let verifies = |sig: &Vec<u8>| {
        verify_signature(
            &info.public_key,
            attestation.signed,
            &SignatureBytes::from_bytes(sig),
            scheme,
        )
        .is_ok()
    };
    match attestation.signatures.iter().any(verifies) {
        true => Ok(()),
        false => Err(SigstoreError::verification(
            Failure::InvalidSignature,
            "no signature of the envelope verifies with the certificate's key",
        )),
    }
}
