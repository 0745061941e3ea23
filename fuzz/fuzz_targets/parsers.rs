//! Everything a registry (or a user) hands us, fed arbitrary bytes: no input may panic. What
//! users and Git repositories hand the operator is fuzzed by `specs`.
#![no_main]

use countersign::{
    formats::{
        bundle::Bundle,
        dsse::{Envelope, Statement},
        oci::{Index, Manifest},
        simple_signing::Payload,
    },
    keys::{PublicKey, SigningKey},
    reference::{Digest, ImageRef},
    registry::Credentials,
    verify::{Candidate, Fetched, Found, KeySet, NamedKey, evaluate},
};
use libfuzzer_sys::fuzz_target;

const TRUSTED: &str = include_str!("../../controller/tests/fixtures/keys/cosign.pub");

fuzz_target!(|data: &[u8]| {
    let _ = Manifest::parse(data);
    let _ = Index::parse(data);
    let _ = Payload::parse(data);
    let _ = Bundle::parse(data);
    let _ = Statement::parse(data);
    let _ = serde_json::from_slice::<Envelope>(data);
    let _ = Credentials::from_docker_config(data, "fuzz");
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ImageRef::parse(text);
        let _ = PublicKey::from_pem(text);
        // Without a password: an encrypted key stops before scrypt, which would cost the fuzzer
        // tens of milliseconds per input (hostile scrypt parameters are in the corpus).
        let _ = SigningKey::from_pem(text, None);
        let _ = Digest::parse(text);
    }
    // The whole evaluation, with the input as a legacy payload, a signature and a bundle.
    let split = data.len() / 2;
    let candidates = vec![
        Candidate::Legacy {
            layer: "sha256:0".into(),
            payload: bytes::Bytes::copy_from_slice(&data[..split]),
            signature: String::from_utf8_lossy(&data[split..]).into_owned(),
            evidence: countersign::formats::simple_signing::Evidence::default(),
        },
        Candidate::Bundle {
            manifest: "sha256:1".into(),
            bundle: bytes::Bytes::copy_from_slice(data),
        },
    ];
    let fetched = Fetched {
        legacy: Ok(Found {
            revision: String::new(),
            candidates,
        }),
        bundles: Ok(Found::default()),
    };
    let key = PublicKey::from_pem(TRUSTED).expect("fixture key");
    let keys = KeySet::new(
        vec![NamedKey {
            name: "fixture".into(),
            key,
        }],
        1,
    );
    let _ = evaluate(&Digest::of(data), &fetched, &keys);
});
