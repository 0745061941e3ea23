//! Private keys against the real cosign, v3 and v2: keys cosign writes, we read; keys we write
//! (current and legacy format), cosign decrypts. The cosign binaries are built by
//! `e2e/peers.sh`; when one is missing the test fails and says so, it never skips.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use countersign::keys::{KeyError, PublicKey, SigningKey};

const PASSWORD: &str = "test";

/// The cosign binary `name` (`cosign3` or `cosign2`): from `COUNTERSIGN_PEER_<NAME>` if set,
/// otherwise where `e2e/peers.sh` caches it.
fn cosign(name: &str) -> PathBuf {
    countersign_tests::peer_path(name)
}

/// A scratch directory with its own HOME and TUF_ROOT, so cosign neither reads nor writes the
/// user's. Removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("countersign-keys-cosign-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for sub in ["home", "tuf"] {
            fs::create_dir_all(dir.join(sub)).expect("create scratch dir");
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).expect("read scratch file")
    }

    /// A command run in the scratch dir with nothing from our environment but PATH, and
    /// COSIGN_PASSWORD set to `password` unless it is `None`.
    fn command(&self, program: &Path, args: &[&str], password: Option<&str>) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("TUF_ROOT", self.path("tuf"))
            .stdin(Stdio::null());
        if let Some(password) = password {
            command.env("COSIGN_PASSWORD", password);
        }
        command
    }

    fn run(&self, program: &Path, args: &[&str], password: Option<&str>) -> Output {
        self.command(program, args, password)
            .output()
            .expect("start command")
    }

    fn countersign(&self, args: &[&str], password: Option<&str>) -> Output {
        self.run(&countersign_tests::countersign_bin(), args, password)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

/// `cosign public-key --key <key>`: cosign decrypts the key and prints its public half.
fn cosign_public_key(scratch: &Scratch, cosign_name: &str, key: &str, password: &str) -> Output {
    scratch.run(
        &cosign(cosign_name),
        &["public-key", "--key", key],
        Some(password),
    )
}

fn reads_a_key_cosign_generated(cosign_name: &str) {
    let scratch = Scratch::new(&format!("read-{cosign_name}"));
    let output = scratch.run(&cosign(cosign_name), &["generate-key-pair"], Some(PASSWORD));
    assert_success("cosign generate-key-pair", &output);

    let private_pem = scratch.read("cosign.key");
    assert!(private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    let key =
        SigningKey::from_encrypted_pem(&private_pem, PASSWORD.as_bytes()).expect("we decrypt cosign's key");
    assert_eq!(key.public_key().to_pem(), scratch.read("cosign.pub"));

    let wrong = SigningKey::from_encrypted_pem(&private_pem, b"wrong");
    assert!(matches!(wrong, Err(KeyError::Decrypt)), "{wrong:?}");
}

#[test]
fn reads_a_key_cosign_v3_generated() {
    reads_a_key_cosign_generated("cosign3");
}

#[test]
fn reads_a_key_cosign_v2_generated() {
    reads_a_key_cosign_generated("cosign2");
}

#[test]
fn cosign_reads_a_key_we_generated() {
    let scratch = Scratch::new("generate");
    let output = scratch.countersign(
        &["generate-key-pair", "--output-key-prefix", "ours"],
        Some(PASSWORD),
    );
    assert_success("countersign generate-key-pair", &output);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "Private key written to ours.key\nPublic key written to ours.pub\n"
    );
    assert!(output.stdout.is_empty());
    assert_eq!(mode(&scratch.path("ours.key")), 0o600);
    assert_eq!(mode(&scratch.path("ours.pub")), 0o644);

    let public_pem = scratch.read("ours.pub");
    for cosign_name in ["cosign3", "cosign2"] {
        let output = cosign_public_key(&scratch, cosign_name, "ours.key", PASSWORD);
        assert_success(&format!("{cosign_name} public-key"), &output);
        assert_eq!(String::from_utf8_lossy(&output.stdout), public_pem);

        let output = cosign_public_key(&scratch, cosign_name, "ours.key", "wrong");
        assert!(!output.status.success(), "{cosign_name} took a wrong password");
    }
}

#[test]
fn cosign_reads_a_legacy_key_we_wrote() {
    let scratch = Scratch::new("legacy");
    let key = SigningKey::generate();
    let legacy_pem = key
        .to_legacy_encrypted_pem(PASSWORD.as_bytes())
        .expect("encrypts");
    assert!(legacy_pem.starts_with("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n"));
    fs::write(scratch.path("legacy.key"), &legacy_pem).expect("write key");

    let read = SigningKey::from_encrypted_pem(&legacy_pem, PASSWORD.as_bytes()).expect("decrypts");
    assert_eq!(read.public_key(), key.public_key());

    let public_pem = key.public_key().to_pem();
    for cosign_name in ["cosign3", "cosign2"] {
        let output = cosign_public_key(&scratch, cosign_name, "legacy.key", PASSWORD);
        assert_success(&format!("{cosign_name} public-key"), &output);
        assert_eq!(String::from_utf8_lossy(&output.stdout), public_pem);
    }
}

#[test]
fn generate_key_pair_never_overwrites() {
    let scratch = Scratch::new("overwrite");
    fs::write(scratch.path("cosign.pub"), "precious").expect("write");
    let output = scratch.countersign(&["generate-key-pair"], Some(PASSWORD));
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cosign.pub already exists"), "{stderr}");
    assert_eq!(scratch.read("cosign.pub"), "precious");
    assert!(!scratch.path("cosign.key").exists());
}

#[test]
fn generate_key_pair_takes_passwords_where_cosign_does() {
    let scratch = Scratch::new("passwords");

    // An empty COSIGN_PASSWORD is a password, not a missing one.
    let output = scratch.countersign(&["generate-key-pair", "--output-key-prefix", "empty"], Some(""));
    assert_success("countersign generate-key-pair", &output);
    let output = cosign_public_key(&scratch, "cosign3", "empty.key", "");
    assert_success("cosign3 public-key", &output);
    assert_eq!(String::from_utf8_lossy(&output.stdout), scratch.read("empty.pub"));

    // Without COSIGN_PASSWORD and with stdin not a terminal, all of stdin is the password.
    let mut child = scratch
        .command(
            &countersign_tests::countersign_bin(),
            &["generate-key-pair", "--output-key-prefix", "piped"],
            None,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start countersign");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"from stdin")
        .expect("write password");
    let output = child.wait_with_output().expect("countersign ends");
    assert_success("countersign generate-key-pair < password", &output);
    let key = SigningKey::from_encrypted_pem(&scratch.read("piped.key"), b"from stdin")
        .expect("the password was stdin");
    let public = PublicKey::from_pem(&scratch.read("piped.pub")).expect("public key");
    assert_eq!(key.public_key(), public);
}
