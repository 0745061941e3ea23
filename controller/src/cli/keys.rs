//! `countersign generate-key-pair`, and reading a private key for the commands that sign.
//!
//! Passwords come from where cosign takes them, in the same order: the `COSIGN_PASSWORD`
//! environment variable when it is set (even to the empty string, which is a valid password);
//! otherwise a prompt when stdin is a terminal; otherwise all of stdin, byte for byte. Like
//! cosign, a piped password is not trimmed: `echo test |` gives the password "test\n".

use std::{
    fs::{self, OpenOptions},
    io::{self, BufRead, IsTerminal, Read, Write},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{Context, anyhow, bail};
use p256::elliptic_curve::zeroize::Zeroizing;

use crate::keys::{self, KeyError, SigningKey};

/// The environment variable cosign reads the private key's password from.
const PASSWORD_VAR: &str = "COSIGN_PASSWORD";

#[derive(Debug, clap::Args)]
pub struct GenerateKeyPairArgs {
    /// Write <prefix>.key and <prefix>.pub.
    #[arg(long, default_value = "cosign")]
    pub output_key_prefix: String,
}

pub fn generate_key_pair(args: &GenerateKeyPairArgs) -> ExitCode {
    match write_key_pair(&args.output_key_prefix) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the private key at `path` for signing, asking for a password only if it is encrypted.
/// Errors are one line that names the file.
pub fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    load_signing_key_with(path, || read_password(false))
}

fn load_signing_key_with(
    path: &Path,
    password: impl FnOnce() -> anyhow::Result<Zeroizing<Vec<u8>>>,
) -> anyhow::Result<SigningKey> {
    let pem = fs::read_to_string(path).map_err(|e| anyhow!("reading private key {}: {e}", path.display()))?;
    let key_error = |e: KeyError| anyhow!("private key {}: {e}", path.display());
    match SigningKey::from_pem(&pem, None) {
        Err(KeyError::PasswordRequired) => {
            let password = password()
                .map_err(|e| anyhow!("reading the password of private key {}: {e:#}", path.display()))?;
            SigningKey::from_pem(&pem, Some(&password)).map_err(key_error)
        }
        other => other.map_err(key_error),
    }
}

/// What `cosign generate-key-pair` does, except that existing files are never overwritten.
fn write_key_pair(prefix: &str) -> anyhow::Result<()> {
    let private_path = PathBuf::from(format!("{prefix}.key"));
    let public_path = PathBuf::from(format!("{prefix}.pub"));
    // Checked before asking for a password, so nobody types one for nothing.
    for path in [&private_path, &public_path] {
        if path.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; refusing to overwrite it (move it away or pick another \
                 --output-key-prefix)",
                path.display()
            );
        }
    }
    let password = read_password(true).context("reading the password for the new key")?;
    let (private_pem, public_pem) = keys::generate_key_pair(&password)?;

    write_new_file(&private_path, private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new_file(&public_path, public_pem.as_bytes(), 0o644) {
        // A private key without its public half is only confusing; take it back.
        let _ = fs::remove_file(&private_path);
        return Err(e);
    }
    eprintln!("Private key written to {}", private_path.display());
    eprintln!("Public key written to {}", public_path.display());
    Ok(())
}

/// Creates `path` with `mode` (less the umask, as cosign's os.WriteFile) and writes `contents`.
/// `create_new` makes the no-overwrite promise hold even if the file appears after our check.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

/// The password, from where cosign would take it. `confirm` asks twice on a terminal, as cosign
/// does for a new key.
fn read_password(confirm: bool) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(password) = std::env::var_os(PASSWORD_VAR) {
        return Ok(Zeroizing::new(password.into_encoded_bytes()));
    }
    if io::stdin().is_terminal() {
        return prompt_password(confirm);
    }
    let mut password = Zeroizing::new(Vec::new());
    io::stdin()
        .read_to_end(&mut password)
        .context("reading the password from stdin")?;
    Ok(password)
}

/// Prompts on stderr and reads a line from the terminal on stdin, with the same words as cosign.
fn prompt_password(confirm: bool) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let password = prompt_line("Enter password for private key: ")?;
    if confirm {
        let again = prompt_line("Enter password for private key again: ")?;
        if again != password {
            bail!("passwords do not match");
        }
    }
    Ok(password)
}

fn prompt_line(prompt: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    eprint!("{prompt}");
    let mut line = Zeroizing::new(Vec::new());
    {
        let _no_echo = NoEcho::new();
        io::stdin()
            .lock()
            .read_until(b'\n', &mut line)
            .context("reading the password from the terminal")?;
    }
    // The Enter key was not echoed either.
    eprintln!();
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// Turns terminal echo off while it lives. Uses stty(1) on the terminal on stdin rather than
/// termios, which would need unsafe code or a crate; if stty is missing the password is merely
/// echoed.
struct NoEcho {
    active: bool,
}

impl NoEcho {
    fn new() -> Self {
        Self {
            active: stty("-echo"),
        }
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if self.active {
            stty("echo");
        }
    }
}

fn stty(setting: &str) -> bool {
    Command::new("stty")
        .arg(setting)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("countersign-cli-keys-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("temp dir");
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn password(p: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        Ok(Zeroizing::new(p.as_bytes().to_vec()))
    }

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keys/cosign.key")
    }

    #[test]
    fn loads_an_encrypted_key_with_its_password() {
        let key = load_signing_key_with(&fixture(), || password("test")).expect("loads");
        let public = fs::read_to_string(fixture().with_extension("pub")).expect("pub");
        assert_eq!(key.public_key().to_pem(), public);
    }

    #[test]
    fn errors_are_one_line_naming_the_file() {
        let path = fixture();
        let message = load_signing_key_with(&path, || password("wrong"))
            .expect_err("wrong password")
            .to_string();
        assert_eq!(
            message,
            format!(
                "private key {}: wrong password or corrupt private key",
                path.display()
            )
        );
        let missing = path.with_file_name("missing.key");
        let message = format!(
            "{:#}",
            load_signing_key_with(&missing, || password("test")).expect_err("missing")
        );
        assert!(message.starts_with(&format!("reading private key {}: ", missing.display())));
        assert!(!message.contains('\n'), "{message}");
        let message = format!(
            "{:#}",
            load_signing_key_with(&path, || Err(anyhow!("no terminal"))).expect_err("no password")
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.ends_with("no terminal"), "{message}");
    }

    #[test]
    fn unencrypted_keys_need_no_password() {
        use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let dir = TempDir::new("unencrypted");
        let path = dir.0.join("plain.key");
        let secret = p256::SecretKey::random(&mut rand_core::OsRng);
        let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
        fs::write(&path, pem.as_bytes()).expect("write");
        let read = load_signing_key_with(&path, || panic!("asked for a password")).expect("loads");
        let public = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("spki");
        assert_eq!(read.public_key().to_pem(), public);
    }
}
