//! cosign's private keys: the encrypted PEM that `cosign generate-key-pair` writes, and the
//! unencrypted PKCS#8 / SEC1 PEM that `cosign import-key-pair` accepts.
//!
//! The encrypted format is go-securesystemslib's "encrypted" package, which cosign uses as is:
//! a PEM block whose body is the JSON
//! `{"kdf":{"name":"scrypt","params":{"N":…,"r":8,"p":1},"salt":"…"},"cipher":{"name":"nacl/secretbox","nonce":"…"},"ciphertext":"…"}`
//! where the secretbox key is scrypt(password, salt) and the plaintext is the PKCS#8 DER of the
//! key. We write exactly what cosign writes (same label, field order, work factor and PKCS#8
//! layout), so our keys and cosign's differ only in their random bytes.

use base64::{Engine, prelude::BASE64_STANDARD};
use crypto_secretbox::{
    KeyInit, XSalsa20Poly1305,
    aead::{Aead, generic_array::GenericArray},
};
use p256::{
    NistP256,
    elliptic_curve::zeroize::Zeroizing,
    pkcs8::{AssociatedOid, DecodePrivateKey, EncodePrivateKey, ObjectIdentifier, PrivateKeyInfo},
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use super::{KeyError, PublicKey};

/// The label cosign ≥ 2.2 writes, and the one we write.
const SIGSTORE_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The label cosign ≤ 2.1 wrote; still read by cosign and still the only one some readers know.
const COSIGN_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";

const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// The scrypt work factors go-securesystemslib accepts (log2 N): legacy 2^15 (cosign ≤ 2.1),
/// standard 2^16 (cosign's default since 2.2) and OWASP 2^17, always with r = 8, p = 1. N and r
/// come from the key file and scrypt needs 128·r·N bytes of memory, so anything else is refused
/// before any work is done: a hostile key file must not be able to make us allocate gigabytes.
const LEGACY_LOG_N: u8 = 15;
const STANDARD_LOG_N: u8 = 16;
const OWASP_LOG_N: u8 = 17;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;

/// id-ecPublicKey: the PKCS#8 algorithm of every ECDSA key, whatever its curve.
const EC_PUBLIC_KEY_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// An ECDSA P-256 signing key.
pub struct SigningKey {
    key: p256::ecdsa::SigningKey,
}

impl std::fmt::Debug for SigningKey {
    /// Shows whose key it is, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public_key().fingerprint())
    }
}

impl SigningKey {
    /// A fresh random P-256 key, as `cosign generate-key-pair` makes.
    pub fn generate() -> Self {
        Self {
            key: p256::ecdsa::SigningKey::random(&mut OsRng),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(*self.key.verifying_key())
    }

    /// ASN.1 DER ECDSA signature over SHA-256(`message`).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        use p256::ecdsa::{Signature, signature::Signer};
        let signature: Signature = self.key.sign(message);
        signature.to_der().as_bytes().to_vec()
    }

    /// Reads an encrypted cosign private key (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the older
    /// `ENCRYPTED COSIGN PRIVATE KEY`). A wrong password gives [`KeyError::Decrypt`].
    pub fn from_encrypted_pem(pem: &str, password: &[u8]) -> Result<Self, KeyError> {
        let (label, body) = decode_pem(pem)?;
        if !is_encrypted_label(&label) {
            return Err(KeyError::PrivatePem(format!(
                "expected an \"{SIGSTORE_LABEL}\" PEM block, found \"{label}\""
            )));
        }
        Self::from_pkcs8_der(&decrypt(&body, password)?)
    }

    /// Reads any private key cosign can sign with that we support: an encrypted cosign key
    /// (needs `password`, else [`KeyError::PasswordRequired`]), or an unencrypted P-256 key as
    /// PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`). `password` is ignored for unencrypted
    /// keys, so a caller can ask for a password only when this says it needs one.
    pub fn from_pem(pem: &str, password: Option<&[u8]>) -> Result<Self, KeyError> {
        let (label, body) = decode_pem(pem)?;
        match label.as_str() {
            label if is_encrypted_label(label) => match password {
                Some(password) => Self::from_pkcs8_der(&decrypt(&body, password)?),
                None => Err(KeyError::PasswordRequired),
            },
            PKCS8_LABEL => Self::from_pkcs8_der(&body),
            SEC1_LABEL => Self::from_sec1_der(&body),
            other => Err(KeyError::PrivatePem(format!(
                "unsupported PEM block \"{other}\" (expected \"{SIGSTORE_LABEL}\", \
                 \"{PKCS8_LABEL}\" or \"{SEC1_LABEL}\")"
            ))),
        }
    }

    /// The key encrypted under `password` exactly as current cosign writes it:
    /// `ENCRYPTED SIGSTORE PRIVATE KEY`, scrypt N = 65536.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        self.encrypt_as(password, SIGSTORE_LABEL, STANDARD_LOG_N)
    }

    /// The key encrypted as cosign ≤ 2.1 wrote it: `ENCRYPTED COSIGN PRIVATE KEY`, scrypt
    /// N = 32768. Every cosign reads it; older readers (skopeo 1.9, containers/image ≤ 5.22)
    /// read only this.
    pub fn to_legacy_encrypted_pem(&self, password: &[u8]) -> Result<String, KeyError> {
        self.encrypt_as(password, COSIGN_LABEL, LEGACY_LOG_N)
    }

    fn encrypt_as(&self, password: &[u8], label: &str, log_n: u8) -> Result<String, KeyError> {
        // RustCrypto's PKCS#8 is byte for byte Go's x509.MarshalPKCS8PrivateKey: the curve in the
        // algorithm identifier, an inner ECPrivateKey with the public key and no parameters.
        let der = self
            .key
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encrypt(format!("encoding PKCS#8: {e}")))?;
        let json = encrypt(der.as_bytes(), password, log_n)?;
        Ok(encode_pem(label, json.as_bytes()))
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let info = PrivateKeyInfo::try_from(der)
            .map_err(|e| KeyError::PrivatePem(format!("not a PKCS#8 private key: {e}")))?;
        check_p256(&info)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(der)
            .map_err(|e| KeyError::PrivatePem(format!("invalid P-256 private key: {e}")))?;
        Ok(Self { key })
    }

    fn from_sec1_der(der: &[u8]) -> Result<Self, KeyError> {
        // The parser rejects another curve named in the key, and the 32-byte scalar of P-256 does
        // not fit a key of another curve that names none, so any failure may be either.
        let secret = p256::SecretKey::from_sec1_der(der).map_err(|_| {
            KeyError::PrivatePem(format!(
                "\"{SEC1_LABEL}\" is not a valid P-256 key (only ECDSA P-256 is supported)"
            ))
        })?;
        Ok(Self { key: secret.into() })
    }
}

/// Generates a key pair: (encrypted private key PEM, public key PEM), as
/// `cosign generate-key-pair` writes them to cosign.key and cosign.pub.
pub fn generate_key_pair(password: &[u8]) -> Result<(String, String), KeyError> {
    let key = SigningKey::generate();
    let private_pem = key.to_encrypted_pem(password)?;
    Ok((private_pem, key.public_key().to_pem()))
}

fn is_encrypted_label(label: &str) -> bool {
    label == SIGSTORE_LABEL || label == COSIGN_LABEL
}

/// Refuses, with a word a user can act on, PKCS#8 keys that are not ECDSA P-256 (cosign can hold
/// RSA, Ed25519 and other curves in the same envelope).
fn check_p256(info: &PrivateKeyInfo<'_>) -> Result<(), KeyError> {
    let algorithm = info.algorithm.oid;
    if algorithm != EC_PUBLIC_KEY_OID {
        return Err(KeyError::Unsupported(algorithm_name(algorithm)));
    }
    match info.algorithm.parameters_oid() {
        Ok(curve) if curve == NistP256::OID => Ok(()),
        Ok(curve) => Err(KeyError::Unsupported(format!("ECDSA {}", algorithm_name(curve)))),
        Err(_) => Err(KeyError::PrivatePem("PKCS#8 EC key without a named curve".into())),
    }
}

/// A readable name for the algorithms and curves cosign supports, else the dotted OID.
fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.132.0.34" => "P-384".into(),
        "1.3.132.0.35" => "P-521".into(),
        other => other.into(),
    }
}

/// The JSON document inside the PEM, fields in go-securesystemslib's order so that what we write
/// has the same shape as cosign's. Unknown fields are ignored, as Go does.
#[derive(Serialize, Deserialize)]
struct Envelope {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u64,
    p: u64,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Encrypts `plaintext` under `password`: the JSON document go-securesystemslib's
/// `encrypted.Encrypt` makes.
fn encrypt(plaintext: &[u8], password: &[u8], log_n: u8) -> Result<String, KeyError> {
    let salt = random_bytes::<SALT_LEN>()?;
    let nonce = random_bytes::<NONCE_LEN>()?;
    let key = derive_key(password, &salt, log_n)?;
    // Like NaCl and Go's secretbox.Seal, crypto_secretbox puts the Poly1305 tag before the box.
    let ciphertext = XSalsa20Poly1305::new(GenericArray::from_slice(&key[..]))
        .encrypt(GenericArray::from_slice(&nonce), plaintext)
        .map_err(|_| KeyError::Encrypt("secretbox encryption failed".into()))?;
    let envelope = Envelope {
        kdf: Kdf {
            name: KDF_NAME.into(),
            params: ScryptParams {
                n: 1 << log_n,
                r: SCRYPT_R.into(),
                p: SCRYPT_P.into(),
            },
            salt: BASE64_STANDARD.encode(salt),
        },
        cipher: Cipher {
            name: CIPHER_NAME.into(),
            nonce: BASE64_STANDARD.encode(nonce),
        },
        ciphertext: BASE64_STANDARD.encode(ciphertext),
    };
    serde_json::to_string(&envelope).map_err(|e| KeyError::Encrypt(e.to_string()))
}

/// Decrypts the JSON document of an encrypted key. Everything is checked before scrypt runs, so
/// a malformed or hostile file costs nothing; only a wrong password (or a corrupt ciphertext)
/// gives [`KeyError::Decrypt`].
fn decrypt(json: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let envelope: Envelope = serde_json::from_slice(json)
        .map_err(|e| KeyError::PrivatePem(format!("not an encrypted cosign key: {e}")))?;
    if envelope.kdf.name != KDF_NAME {
        return Err(KeyError::PrivatePem(format!(
            "unsupported key derivation \"{}\" (expected \"{KDF_NAME}\")",
            envelope.kdf.name
        )));
    }
    if envelope.cipher.name != CIPHER_NAME {
        return Err(KeyError::PrivatePem(format!(
            "unsupported cipher \"{}\" (expected \"{CIPHER_NAME}\")",
            envelope.cipher.name
        )));
    }
    let log_n = scrypt_log_n(&envelope.kdf.params)?;
    // Go does not check the salt's length, so neither do we: any salt cosign reads, we read.
    let salt = decode_field("salt", &envelope.kdf.salt)?;
    let nonce = decode_field("nonce", &envelope.cipher.nonce)?;
    if nonce.len() != NONCE_LEN {
        return Err(KeyError::PrivatePem(format!(
            "nonce is {} bytes, expected {NONCE_LEN}",
            nonce.len()
        )));
    }
    let ciphertext = decode_field("ciphertext", &envelope.ciphertext)?;

    let key = derive_key(password, &salt, log_n)?;
    XSalsa20Poly1305::new(GenericArray::from_slice(&key[..]))
        .decrypt(GenericArray::from_slice(&nonce), ciphertext.as_slice())
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Decrypt)
}

/// log2 N for the three parameter sets go-securesystemslib accepts; a clear error otherwise.
fn scrypt_log_n(params: &ScryptParams) -> Result<u8, KeyError> {
    let log_n = match params.n {
        32768 => LEGACY_LOG_N,
        65536 => STANDARD_LOG_N,
        131072 => OWASP_LOG_N,
        _ => 0,
    };
    if log_n == 0 || params.r != u64::from(SCRYPT_R) || params.p != u64::from(SCRYPT_P) {
        return Err(KeyError::PrivatePem(format!(
            "unsupported scrypt parameters N={}, r={}, p={} (cosign uses N=32768, 65536 or \
             131072 with r=8, p=1)",
            params.n, params.r, params.p
        )));
    }
    Ok(log_n)
}

fn derive_key(password: &[u8], salt: &[u8], log_n: u8) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let params = scrypt::Params::new(log_n, SCRYPT_R, SCRYPT_P, KEY_LEN)
        .map_err(|e| KeyError::Encrypt(format!("scrypt parameters: {e}")))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    scrypt::scrypt(password, salt, &params, &mut key[..])
        .map_err(|e| KeyError::Encrypt(format!("scrypt: {e}")))?;
    Ok(key)
}

fn decode_field(name: &str, value: &str) -> Result<Vec<u8>, KeyError> {
    BASE64_STANDARD
        .decode(value)
        .map_err(|e| KeyError::PrivatePem(format!("{name} is not base64: {e}")))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], KeyError> {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| KeyError::Encrypt(format!("no randomness from the OS: {e}")))?;
    Ok(bytes)
}

/// The first PEM block of `text`: (label, decoded body). As lenient as Go's encoding/pem, which
/// cosign uses: text before the block, CRLF line ends and any line length are fine.
fn decode_pem(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let not_pem = |why: &str| KeyError::PrivatePem(format!("not a PEM private key: {why}"));
    let start = text
        .find("-----BEGIN ")
        .ok_or_else(|| not_pem("no \"-----BEGIN\" line"))?;
    let after_begin = &text[start + "-----BEGIN ".len()..];
    let (label, rest) = after_begin
        .split_once("-----")
        .filter(|(label, _)| !label.contains('\n'))
        .ok_or_else(|| not_pem("unterminated \"-----BEGIN\" line"))?;
    let end_line = format!("-----END {label}-----");
    let (body, _) = rest
        .split_once(&end_line)
        .ok_or_else(|| not_pem(&format!("no \"{end_line}\" line")))?;
    let body: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = BASE64_STANDARD
        .decode(body)
        .map_err(|e| not_pem(&format!("body is not base64: {e}")))?;
    Ok((label.to_string(), bytes))
}

/// A PEM block as Go's pem.Encode writes it: 64-column base64, LF line ends, final newline.
fn encode_pem(label: &str, bytes: &[u8]) -> String {
    let body = BASE64_STANDARD.encode(bytes);
    let mut pem = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so cutting every 64 bytes never splits a character.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &[u8] = b"correct horse";

    /// A real `cosign generate-key-pair` (v3.1.2) key, password "test".
    const COSIGN_KEY: &str = include_str!("../../tests/fixtures/keys/cosign.key");
    const COSIGN_PUB: &str = include_str!("../../tests/fixtures/keys/cosign.pub");

    fn private_message(result: Result<SigningKey, KeyError>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    /// Re-encodes the JSON inside `pem` after `edit`, keeping the label.
    fn edit_envelope(pem: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let (label, body) = decode_pem(pem).expect("pem");
        let mut json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        edit(&mut json);
        encode_pem(&label, json.to_string().as_bytes())
    }

    #[test]
    fn reads_a_real_cosign_key() {
        let key = SigningKey::from_encrypted_pem(COSIGN_KEY, b"test").expect("decrypts");
        assert_eq!(key.public_key().to_pem(), COSIGN_PUB);
        // What we encrypt is byte for byte what Go's x509.MarshalPKCS8PrivateKey made.
        let (_, body) = decode_pem(COSIGN_KEY).expect("pem");
        let go_pkcs8 = decrypt(&body, b"test").expect("decrypts");
        let ours = key.key.to_pkcs8_der().expect("pkcs8");
        assert_eq!(ours.as_bytes(), go_pkcs8.as_slice());
    }

    #[test]
    fn round_trip_signs_and_verifies() {
        let (private_pem, public_pem) = generate_key_pair(PASSWORD).expect("generates");
        assert!(private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
        let key = SigningKey::from_encrypted_pem(&private_pem, PASSWORD).expect("decrypts");
        assert_eq!(key.public_key().to_pem(), public_pem);
        let public = PublicKey::from_pem(&public_pem).expect("public key");
        public
            .verify(b"payload", &key.sign(b"payload"))
            .expect("verifies");
    }

    #[test]
    fn writes_what_cosign_writes() {
        let pem = SigningKey::generate().to_encrypted_pem(b"").expect("encrypts");
        let (_, body) = decode_pem(&pem).expect("pem");
        let (_, cosign_body) = decode_pem(COSIGN_KEY).expect("pem");
        // Same field order, same parameters, same lengths: only the random bytes differ.
        let shape = |body: &[u8]| {
            let json: serde_json::Value = serde_json::from_slice(body).expect("json");
            let mut text = String::from_utf8_lossy(body).into_owned();
            for value in [
                &json["kdf"]["salt"],
                &json["cipher"]["nonce"],
                &json["ciphertext"],
            ] {
                let value = value.as_str().expect("a string");
                text = text.replace(value, &format!("<{} chars>", value.len()));
            }
            text
        };
        assert_eq!(shape(&body), shape(&cosign_body));
        assert_eq!(pem.len(), COSIGN_KEY.len());
    }

    #[test]
    fn legacy_label_and_work_factor_round_trip() {
        let key = SigningKey::generate();
        let pem = key.to_legacy_encrypted_pem(PASSWORD).expect("encrypts");
        assert!(pem.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"));
        let (_, body) = decode_pem(&pem).expect("pem");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["kdf"]["params"]["N"], 32768);
        let read = SigningKey::from_pem(&pem, Some(PASSWORD)).expect("decrypts");
        assert_eq!(read.public_key(), key.public_key());
    }

    #[test]
    fn wrong_password_is_a_decrypt_error() {
        let result = SigningKey::from_encrypted_pem(COSIGN_KEY, b"wrong");
        assert!(matches!(result, Err(KeyError::Decrypt)), "{result:?}");
        let result = SigningKey::from_encrypted_pem(COSIGN_KEY, b"");
        assert!(matches!(result, Err(KeyError::Decrypt)), "{result:?}");
    }

    #[test]
    fn empty_password_is_a_password() {
        let key = SigningKey::generate();
        let pem = key.to_legacy_encrypted_pem(b"").expect("encrypts");
        let read = SigningKey::from_encrypted_pem(&pem, b"").expect("decrypts");
        assert_eq!(read.public_key(), key.public_key());
    }

    #[test]
    fn truncated_and_garbage_pem_are_refused() {
        let truncated = &COSIGN_KEY[..COSIGN_KEY.len() / 2];
        for bad in ["", "garbage", "-----BEGIN ", truncated] {
            let message = private_message(SigningKey::from_encrypted_pem(bad, b"test"));
            assert!(message.contains("not a PEM private key"), "{bad:?}: {message}");
        }
        let not_base64 = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n!!!\n\
                          -----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        let message = private_message(SigningKey::from_encrypted_pem(not_base64, b"test"));
        assert!(message.contains("not base64"), "{message}");
        let not_json = encode_pem(SIGSTORE_LABEL, b"{\"kdf\":");
        let message = private_message(SigningKey::from_encrypted_pem(&not_json, b"test"));
        assert!(message.contains("not an encrypted cosign key"), "{message}");
    }

    #[test]
    fn corrupt_fields_are_refused() {
        let short_nonce = edit_envelope(COSIGN_KEY, |j| j["cipher"]["nonce"] = "AAAA".into());
        let message = private_message(SigningKey::from_encrypted_pem(&short_nonce, b"test"));
        assert!(message.contains("nonce is 3 bytes"), "{message}");
        let short_box = edit_envelope(COSIGN_KEY, |j| j["ciphertext"] = "AAAA".into());
        let result = SigningKey::from_encrypted_pem(&short_box, b"test");
        assert!(matches!(result, Err(KeyError::Decrypt)), "{result:?}");
        let other_kdf = edit_envelope(COSIGN_KEY, |j| j["kdf"]["name"] = "argon2".into());
        let message = private_message(SigningKey::from_encrypted_pem(&other_kdf, b"test"));
        assert!(message.contains("unsupported key derivation"), "{message}");
    }

    #[test]
    fn unbounded_work_factors_are_refused_before_any_work() {
        for (n, r, p) in [(1u64 << 30, 8, 1), (65536, 1024, 1), (65536, 8, 16), (1024, 8, 1)] {
            let hostile = edit_envelope(COSIGN_KEY, |j| {
                j["kdf"]["params"] = serde_json::json!({"N": n, "r": r, "p": p});
            });
            let message = private_message(SigningKey::from_encrypted_pem(&hostile, b"test"));
            assert!(message.contains("unsupported scrypt parameters"), "{message}");
        }
        let negative = edit_envelope(COSIGN_KEY, |j| j["kdf"]["params"]["N"] = (-1).into());
        let message = private_message(SigningKey::from_encrypted_pem(&negative, b"test"));
        assert!(message.contains("not an encrypted cosign key"), "{message}");
    }

    #[test]
    fn other_labels_are_refused() {
        let public = private_message(SigningKey::from_encrypted_pem(COSIGN_PUB, b"test"));
        assert!(public.contains("found \"PUBLIC KEY\""), "{public}");
        let public = private_message(SigningKey::from_pem(COSIGN_PUB, None));
        assert!(
            public.contains("unsupported PEM block \"PUBLIC KEY\""),
            "{public}"
        );
        let relabelled = COSIGN_KEY.replace("SIGSTORE", "SOMEONE ELSES");
        let message = private_message(SigningKey::from_encrypted_pem(&relabelled, b"test"));
        assert!(message.contains("SOMEONE ELSES"), "{message}");
    }

    #[test]
    fn encrypted_key_without_password_asks_for_one() {
        let result = SigningKey::from_pem(COSIGN_KEY, None);
        assert!(matches!(result, Err(KeyError::PasswordRequired)), "{result:?}");
    }

    #[test]
    fn reads_unencrypted_pkcs8_and_sec1() {
        use p256::pkcs8::LineEnding;
        let key = SigningKey::generate();
        let pkcs8 = key.key.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
        let read = SigningKey::from_pem(&pkcs8, None).expect("pkcs8 reads");
        assert_eq!(read.public_key(), key.public_key());
        let sec1 = p256::SecretKey::from(&key.key)
            .to_sec1_pem(LineEnding::CRLF)
            .expect("sec1");
        let read = SigningKey::from_pem(&sec1, Some(b"ignored")).expect("sec1 reads");
        assert_eq!(read.public_key(), key.public_key());
    }

    #[test]
    fn other_algorithms_are_unsupported() {
        // PKCS#8 Ed25519 key from RFC 8410 section 10.3.
        let ed25519 = "-----BEGIN PRIVATE KEY-----\n\
                       MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
                       -----END PRIVATE KEY-----\n";
        let result = SigningKey::from_pem(ed25519, None);
        assert!(
            matches!(&result, Err(KeyError::Unsupported(name)) if name == "Ed25519"),
            "{result:?}"
        );
        let garbage_sec1 = encode_pem(SEC1_LABEL, b"\x30\x03\x02\x01\x01");
        let message = private_message(SigningKey::from_pem(&garbage_sec1, None));
        assert!(message.contains("not a valid P-256 key"), "{message}");
    }

    #[test]
    fn pem_reader_is_as_lenient_as_go() {
        let crlf = format!("leading text\r\n{}", COSIGN_PUB.replace('\n', "\r\n"));
        let (label, body) = decode_pem(&crlf).expect("pem");
        assert_eq!(label, "PUBLIC KEY");
        assert_eq!(encode_pem(&label, &body), COSIGN_PUB);
    }
}
