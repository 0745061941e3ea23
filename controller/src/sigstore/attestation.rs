//! cosign v2's keyless `.att` attestations, verified as strictly as a keyless `.sig`.
//!
//! A `.att` layer is a DSSE envelope with the `.sig` annotations (certificate, chain, Rekor v1
//! entry, `rfc3161timestamp`), but cosign v2 asks the TSA to timestamp the whole envelope, the
//! layer's bytes (`attest.go`: `GetTimestampedSignature(signedPayload, …)`), and verifies it over
//! them (`VerifyRFC3161Timestamp`: an attestation has no base64 signature, so `sig.Payload()`);
//! and its log entry is of the envelope too ([`super::att_entry`]). A Sigstore bundle's
//! timestamp covers the signature, so the bundle verifier cannot take this layout. The same
//! checks, in the same order: the trusted times (the log entry's SET under a log of the root,
//! the entry bound to this envelope and certificate; the token against the root's TSAs over the
//! envelope bytes, sigstore-tsa's per-authority check as sigstore-verify calls it), the
//! certificate at each ([`super::certificate`]), the envelope's signature with the certificate's
//! key (sigstore-crypto), then the identity.

use jiff::Timestamp;
use sigstore_types::{SignatureBytes, TimestampToken};
use sigstore_verify::crypto::{CertificateInfo, verify_signature};

use super::{
    Failure, Identity, Signer, SigstoreError, TlogPolicy, TrustedRoot,
    att_entry::{Logged, LoggedSigner},
    certificate, legacy, match_identity,
};

/// One `.att` layer.
#[derive(Debug, Clone, Copy)]
pub struct LegacyAttestation<'a> {
    /// The layer's bytes, as stored: the DSSE envelope JSON, which the timestamp and the log
    /// entry cover.
    pub envelope: &'a [u8],
    /// The envelope's payload, decoded (the statement).
    pub payload: &'a [u8],
    /// What the envelope's signatures sign (its PAE).
    pub signed: &'a [u8],
    /// The envelope's signatures, decoded.
    pub signatures: &'a [Vec<u8>],
    /// PEM leaf (`dev.sigstore.cosign/certificate`); `None` for a key-signed attestation.
    pub certificate: Option<&'a str>,
    /// The Rekor v1 entry and SET, JSON (`dev.sigstore.cosign/bundle`).
    pub rekor_bundle: Option<&'a str>,
    /// `{"SignedRFC3161Timestamp": "<base64 DER>"}` (`dev.sigstore.cosign/rfc3161timestamp`).
    pub timestamp: Option<&'a str>,
}

impl TrustedRoot {
    /// Verifies a keyless cosign v2 `.att` layer (see the module) and checks the signer against
    /// `identities`: the first that matches and the signer, or why none does. `tlog` as for a
    /// keyless `.sig`: the log entry is needed unless the log is optional, and verified whenever
    /// it is there.
    pub fn verify_legacy_attestation<'i, I: AsRef<Identity>>(
        &self,
        attestation: &LegacyAttestation<'_>,
        identities: &'i [I],
        tlog: TlogPolicy,
    ) -> Result<(&'i I, Signer), SigstoreError> {
        let Some(pem) = attestation.certificate else {
            return Err(SigstoreError::Bundle("the attestation has no certificate".into()));
        };
        let times = self.trusted_times(attestation, pem, tlog)?;
        let leaf = legacy::leaf_der(pem)?;
        // cosign v2 checks the certificate at the log's time and at the TSA's, when both are
        // there: so does this.
        let mut info = None;
        for time in times {
            info = Some(certificate::verify_at(&self.root, &leaf, time)?);
        }
        let info =
            info.ok_or_else(|| SigstoreError::verification(Failure::NoTrustedTime, "no trusted time"))?;
        verify_envelope_signature(&info, attestation)?;
        let signer = Signer::from_claims(info.identity.as_ref().map(|s| s.as_str()), info.issuer.as_deref());
        match_identity(signer, identities)
    }

    /// The log entry of a key-signed cosign v2 `.att` layer, verified against this root's logs:
    /// it must name the key `spki_der` (DER SubjectPublicKeyInfo) and this envelope. For
    /// [`TlogPolicy::Required`].
    pub fn verify_legacy_attestation_with_key(
        &self,
        attestation: &LegacyAttestation<'_>,
        spki_der: &[u8],
    ) -> Result<(), SigstoreError> {
        let Some(json) = attestation.rekor_bundle else {
            return Err(no_entry());
        };
        let logged = Logged {
            envelope: attestation.envelope,
            payload: attestation.payload,
            signatures: attestation.signatures,
            signer: LoggedSigner::Key(spki_der),
        };
        self.verify_attestation_entry(json, &logged).map(|_| ())
    }

    /// The times something trusted vouches the keyless attestation `attestation` (certificate
    /// `pem`) was made at: its log entry's integrated time, its TSA's time. None is a refusal,
    /// as a log entry that `tlog` needs and the layer lacks.
    fn trusted_times(
        &self,
        attestation: &LegacyAttestation<'_>,
        pem: &str,
        tlog: TlogPolicy,
    ) -> Result<Vec<Timestamp>, SigstoreError> {
        let logged = match attestation.rekor_bundle {
            Some(json) => {
                let leaf = legacy::leaf_der(pem)?;
                let logged = Logged {
                    envelope: attestation.envelope,
                    payload: attestation.payload,
                    signatures: attestation.signatures,
                    signer: LoggedSigner::Certificate(&leaf),
                };
                Some(self.verify_attestation_entry(json, &logged)?)
            }
            None if tlog == TlogPolicy::Optional => None,
            None => return Err(no_entry()),
        };
        let stamped = match attestation.timestamp {
            Some(json) => Some(self.envelope_time(attestation, json)?),
            None => None,
        };
        let times: Vec<Timestamp> = logged.into_iter().chain(stamped).collect();
        if times.is_empty() {
            return Err(SigstoreError::verification(
                Failure::NoTrustedTime,
                "the attestation has neither a log entry nor an RFC 3161 timestamp",
            ));
        }
        Ok(times)
    }

    /// The time a TSA of the root vouches for, over the envelope bytes (`json`: the timestamp
    /// annotation).
    fn envelope_time(
        &self,
        attestation: &LegacyAttestation<'_>,
        json: &str,
    ) -> Result<Timestamp, SigstoreError> {
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

fn no_entry() -> SigstoreError {
    SigstoreError::verification(
        Failure::NoTlogEntry,
        "the attestation has no transparency log entry",
    )
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
