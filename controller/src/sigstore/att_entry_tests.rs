//! A cosign v2 `.att` layer's log entry, of either kind, from the tests' own log: bound to this
//! envelope, payload, signature and signer, under a log of the root, or `untrusted_log`.

use serde_json::{Value, json};
use x509_cert::der::pem::{LineEnding, encode_string};

use super::*;
use crate::{
    keys::SigningKey,
    sigstore::test_log::{TestLog, dsse_body, intoto_body},
};

/// A layer: its one signature is `sig`.
const ENVELOPE: &[u8] =
    br#"{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"c2ln"}]}"#;
const PAYLOAD: &[u8] = b"{}";
const SIGNATURE: &[u8] = b"sig";

#[derive(Debug, Clone, Copy)]
enum Kind {
    Dsse,
    Intoto,
}

const KINDS: [Kind; 2] = [Kind::Dsse, Kind::Intoto];

/// The body of `kind` for `envelope`, `payload` and `signer_pem` (and [`SIGNATURE`]).
fn body(kind: Kind, envelope: &[u8], payload: &[u8], signer_pem: &str) -> Value {
    match kind {
        Kind::Dsse => dsse_body(envelope, payload, SIGNATURE, signer_pem),
        Kind::Intoto => intoto_body(envelope, payload, signer_pem),
    }
}

struct Case {
    log: TestLog,
    key: SigningKey,
}

impl Case {
    fn new() -> Self {
        Self {
            log: TestLog::new(),
            key: SigningKey::generate(),
        }
    }

    fn spki(&self) -> Vec<u8> {
        self.key.public_key().spki_der().to_vec()
    }

    fn pem(&self) -> String {
        self.key.public_key().to_pem()
    }

    /// The entry cosign v2 would log for [`ENVELOPE`] signed by this key.
    fn entry(&self, kind: Kind) -> String {
        self.log.entry(&body(kind, ENVELOPE, PAYLOAD, &self.pem()))
    }

    /// What verifying `entry` against [`ENVELOPE`] and `signer` under `root` says: the category
    /// of its refusal, or `None`.
    fn verify(&self, root: &TrustedRoot, entry: &str, signer: LoggedSigner<'_>) -> Option<&'static str> {
        let logged = Logged {
            envelope: ENVELOPE,
            payload: PAYLOAD,
            signatures: &[SIGNATURE.to_vec()],
            signer,
        };
        root.verify_attestation_entry(entry, &logged)
            .err()
            .map(|e| e.category())
    }

    fn by_key(&self, entry: &str) -> Option<&'static str> {
        self.verify(&self.log.root, entry, LoggedSigner::Key(&self.spki()))
    }
}

#[test]
fn an_entry_of_this_envelope_by_this_key_verifies_at_its_integrated_time() {
    let case = Case::new();
    for kind in KINDS {
        let logged = Logged {
            envelope: ENVELOPE,
            payload: PAYLOAD,
            signatures: &[SIGNATURE.to_vec()],
            signer: LoggedSigner::Key(&case.spki()),
        };
        let time = case
            .log
            .root
            .verify_attestation_entry(&case.entry(kind), &logged)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let ago = Timestamp::now().as_second() - time.as_second();
        assert!((60..120).contains(&ago), "integrated a minute ago: {time}");
    }
}

/// An entry of the same log, signed, about something else: another envelope (or the same JSON
/// with a byte more), another payload, another key, a certificate where a key was expected.
#[test]
fn an_entry_about_another_envelope_payload_or_signer_is_untrusted_log() {
    let case = Case::new();
    let pem = case.pem();
    let certificate = encode_string("CERTIFICATE", LineEnding::LF, &case.spki()).unwrap_or_default();
    let other_key = SigningKey::generate().public_key().to_pem();
    let longer = [ENVELOPE, b"\n"].concat();
    for kind in KINDS {
        let bodies = [
            body(kind, b"{}", PAYLOAD, &pem),
            body(kind, &longer, PAYLOAD, &pem),
            body(kind, ENVELOPE, b"{\"other\":1}", &pem),
            body(kind, ENVELOPE, PAYLOAD, &other_key),
            body(kind, ENVELOPE, PAYLOAD, &certificate),
        ];
        for body in bodies {
            let entry = case.log.entry(&body);
            assert_eq!(case.by_key(&entry), Some("untrusted_log"), "{body}");
        }
    }
}

/// A dsse entry names the one signature Rekor verified: another, or more than one, do not bind.
#[test]
fn a_dsse_entry_binds_its_one_signature() {
    let case = Case::new();
    let other = dsse_body(ENVELOPE, PAYLOAD, b"another signature", &case.pem());
    assert_eq!(case.by_key(&case.log.entry(&other)), Some("untrusted_log"));
    let mut two = dsse_body(ENVELOPE, PAYLOAD, SIGNATURE, &case.pem());
    let signature = two["spec"]["signatures"][0].clone();
    two["spec"]["signatures"] = json!([signature.clone(), signature]);
    assert_eq!(case.by_key(&case.log.entry(&two)), Some("untrusted_log"));
}

/// A keyless entry names the certificate: the same certificate binds, another does not.
#[test]
fn a_keyless_entry_binds_its_certificate() {
    let case = Case::new();
    let (leaf, other) = (b"leaf certificate DER".to_vec(), b"another certificate".to_vec());
    let pem = encode_string("CERTIFICATE", LineEnding::LF, &leaf).unwrap_or_default();
    let root = &case.log.root;
    for kind in KINDS {
        let entry = case.log.entry(&body(kind, ENVELOPE, PAYLOAD, &pem));
        assert_eq!(case.verify(root, &entry, LoggedSigner::Certificate(&leaf)), None);
        assert_eq!(
            case.verify(root, &entry, LoggedSigner::Certificate(&other)),
            Some("untrusted_log")
        );
        assert_eq!(
            case.verify(root, &entry, LoggedSigner::Key(&leaf)),
            Some("untrusted_log"),
            "a certificate is not a key"
        );
    }
}

/// intoto entries logged before Rekor recorded the payload's hash bind by the envelope and the
/// key.
#[test]
fn an_intoto_entry_without_a_payload_hash_binds_by_envelope_and_key() {
    let case = Case::new();
    let mut body = intoto_body(ENVELOPE, PAYLOAD, &case.pem());
    body["spec"]["content"]
        .as_object_mut()
        .map(|c| c.remove("payloadHash"));
    assert_eq!(case.by_key(&case.log.entry(&body)), None);
}

/// The SET changed, the body changed under it, an integrated time it did not sign, a log the
/// root does not list, an entry of another kind: each is `untrusted_log`. An annotation that
/// is not one is `bundle`, as for a `.sig`.
#[test]
fn a_changed_set_an_unknown_log_or_another_kind_is_untrusted_log() {
    let case = Case::new();
    for kind in KINDS {
        let entry: Value = serde_json::from_str(&case.entry(kind)).unwrap_or_default();
        let changed = |edit: &dyn Fn(&mut Value)| {
            let mut entry = entry.clone();
            edit(&mut entry);
            case.by_key(&entry.to_string())
        };
        let set = entry["SignedEntryTimestamp"].as_str().unwrap_or_default();
        let mut flipped = B64.decode(set).unwrap_or_default();
        flipped[10] ^= 1;
        let flipped = B64.encode(flipped);
        assert_eq!(
            changed(&|e| e["SignedEntryTimestamp"] = json!(flipped)),
            Some("untrusted_log")
        );
        let other = B64.encode(body(kind, b"{}", PAYLOAD, &case.pem()).to_string());
        assert_eq!(
            changed(&|e| e["Payload"]["body"] = json!(other)),
            Some("untrusted_log")
        );
        let time = entry["Payload"]["integratedTime"].as_i64().unwrap_or_default();
        assert_eq!(
            changed(&|e| e["Payload"]["integratedTime"] = json!(time - 1)),
            Some("untrusted_log")
        );
        assert_eq!(
            changed(&|e| e["Payload"]["logID"] = json!("00".repeat(32))),
            Some("untrusted_log")
        );
        let elsewhere = TestLog::new();
        assert_eq!(
            case.verify(
                &elsewhere.root,
                &case.entry(kind),
                LoggedSigner::Key(&case.spki())
            ),
            Some("untrusted_log")
        );
    }
    for (kind, version) in [("intoto", "0.0.2"), ("hashedrekord", "0.0.1"), ("dsse", "0.0.2")] {
        let mut body = intoto_body(ENVELOPE, PAYLOAD, &case.pem());
        body["kind"] = json!(kind);
        body["apiVersion"] = json!(version);
        assert_eq!(
            case.by_key(&case.log.entry(&body)),
            Some("untrusted_log"),
            "{kind} {version}"
        );
    }
    assert_eq!(case.by_key("not JSON"), Some("bundle"));
}
