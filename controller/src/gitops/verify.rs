//! Commit signatures made with SSH keys (`git commit -S` with `gpg.format=ssh`): an SSHSIG over
//! the commit object without its `gpgsig` header, in the namespace `git`, checked against an
//! allowed signers list in the format of `ssh-keygen -Y verify` (`gpg.ssh.allowedSignersFile`).
//! Pure: [`check`] takes the signature and signed bytes that git2 extracts from the commit.

use ssh_key::{PublicKey, SshSig};

/// The SSHSIG namespace git signs commits in.
const NAMESPACE: &str = "git";

/// One line of an allowed signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigner {
    pub principals: String,
    pub key: PublicKey,
}

/// Parses an allowed signers file: `principals [options] keytype base64 [comment]` per line.
/// Lines restricted by `namespaces=` to namespaces other than `git`, and `cert-authority`
/// lines, are left out; a line that does not parse is an error naming it.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = tokens.iter().skip(1).position(|t| is_key_type(t)).map(|p| p + 1) else {
            return Err(format!("allowed signers line {n}: no public key"));
        };
        let options = tokens[1..at].join(" ");
        if options.contains("cert-authority") || !namespaces_allow_git(&options) {
            continue;
        }
        let blob = tokens
            .get(at + 1)
            .ok_or(format!("allowed signers line {n}: no key after {}", tokens[at]))?;
        let key = PublicKey::from_openssh(&format!("{} {blob}", tokens[at]))
            .map_err(|e| format!("allowed signers line {n}: {e}"))?;
        out.push(AllowedSigner {
            principals: tokens[0].to_string(),
            key,
        });
    }
    Ok(out)
}

fn is_key_type(token: &str) -> bool {
    token.starts_with("ssh-") || token.starts_with("ecdsa-sha2-") || token.starts_with("sk-")
}

fn namespaces_allow_git(options: &str) -> bool {
    let Some(rest) = options.split("namespaces=").nth(1) else {
        return true;
    };
    let list = rest.trim_start_matches('"').split('"').next().unwrap_or_default();
    list.split(',').any(|n| n == NAMESPACE || n == "*")
}

/// Who signed, when the signature is valid and by an allowed signer; otherwise why not, in
/// words for status.
pub fn check(signature: Option<&[u8]>, signed: &[u8], allowed: &[AllowedSigner]) -> Result<String, String> {
    let Some(signature) = signature else {
        return Err("the commit is not signed".into());
    };
    let text = String::from_utf8_lossy(signature);
    if text.contains("BEGIN PGP SIGNATURE") {
        return Err("the commit is signed with OpenPGP; only SSH signatures are verified".into());
    }
    let sig =
        SshSig::from_pem(text.trim()).map_err(|e| format!("the signature is not an SSH signature: {e}"))?;
    if sig.namespace() != NAMESPACE {
        return Err(format!(
            "the signature is for the namespace {:?}, not {NAMESPACE:?}",
            sig.namespace()
        ));
    }
    let signer = PublicKey::from(sig.public_key().clone());
    let fingerprint = signer.fingerprint(ssh_key::HashAlg::Sha256);
    let Some(allowed) = allowed.iter().find(|a| a.key.key_data() == sig.public_key()) else {
        return Err(format!("signed by {fingerprint}, which is not an allowed signer"));
    };
    allowed
        .key
        .verify(NAMESPACE, signed, &sig)
        .map(|()| allowed.principals.clone())
        .map_err(|e| {
            format!(
                "the signature by {} ({fingerprint}) does not verify: {e}",
                allowed.principals
            )
        })
}

#[cfg(test)]
mod tests {
    use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, rand_core::OsRng};

    use super::*;

    fn key() -> PrivateKey {
        PrivateKey::random(&mut OsRng, Algorithm::Ed25519).unwrap()
    }

    fn sign(key: &PrivateKey, namespace: &str, msg: &[u8]) -> Vec<u8> {
        SshSig::sign(key, namespace, HashAlg::Sha512, msg)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
            .into_bytes()
    }

    fn signers(line: &str) -> Vec<AllowedSigner> {
        parse_allowed_signers(line).unwrap()
    }

    #[test]
    fn a_signature_by_an_allowed_signer_verifies() {
        let alice = key();
        let line = format!("alice@example.com {}", alice.public_key().to_openssh().unwrap());
        let sig = sign(&alice, "git", b"tree 1\n");
        assert_eq!(
            check(Some(&sig), b"tree 1\n", &signers(&line)).unwrap(),
            "alice@example.com"
        );
        let restricted = format!(
            "alice@example.com namespaces=\"git,file\" {}",
            alice.public_key().to_openssh().unwrap()
        );
        assert!(check(Some(&sig), b"tree 1\n", &signers(&restricted)).is_ok());
    }

    #[test]
    fn unsigned_tampered_unknown_and_wrong_namespace_are_refused() {
        let (alice, mallory) = (key(), key());
        let allowed = signers(&format!("alice {}", alice.public_key().to_openssh().unwrap()));
        let e = check(None, b"x", &allowed).unwrap_err();
        assert!(e.contains("not signed"), "{e}");
        let e = check(Some(&sign(&alice, "git", b"x")), b"y", &allowed).unwrap_err();
        assert!(e.contains("does not verify"), "{e}");
        let e = check(Some(&sign(&mallory, "git", b"x")), b"x", &allowed).unwrap_err();
        assert!(e.contains("not an allowed signer"), "{e}");
        let e = check(Some(&sign(&alice, "file", b"x")), b"x", &allowed).unwrap_err();
        assert!(e.contains("namespace"), "{e}");
        let only_file = signers(&format!(
            "alice namespaces=\"file\" {}",
            alice.public_key().to_openssh().unwrap()
        ));
        assert!(only_file.is_empty());
        let e = check(Some(b"-----BEGIN PGP SIGNATURE-----\n"), b"x", &allowed).unwrap_err();
        assert!(e.contains("OpenPGP"), "{e}");
    }

    #[test]
    fn bad_lines_are_named() {
        let e = parse_allowed_signers("# comment\n\nalice no-key-here\n").unwrap_err();
        assert!(e.starts_with("allowed signers line 3"), "{e}");
    }
}
