//! Keys: public keys that verify, and cosign's encrypted private keys that sign.
//!
//! Only ECDSA P-256 with SHA-256 is supported, which is what `cosign generate-key-pair` makes
//! and what cosign uses by default; other key types are refused with a clear error.

mod private;
mod public;

pub use private::{SigningKey, generate_key_pair};
pub use public::{PublicKey, SignatureError, check_signature_encoding};

/// Everything that can go wrong reading or using a key. Messages name the problem; callers add
/// which file or object the key came from.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM public key: {0}")]
    PublicPem(String),
    #[error("unsupported key type: {0} (only ECDSA P-256 is supported)")]
    Unsupported(String),
    #[error("not a cosign private key: {0}")]
    PrivatePem(String),
    #[error("wrong password or corrupt private key")]
    Decrypt,
    /// The key is encrypted and no password was given: the caller should ask for one and retry.
    #[error("the private key is encrypted and needs a password")]
    PasswordRequired,
    #[error("private key: {0}")]
    Encrypt(String),
}
