//! A real Gitea (built by `e2e/peers.sh gitea`) on 127.0.0.1 with ephemeral ports: Git over
//! smart HTTP with basic auth, over SSH from its built-in server (a real host key), and push
//! webhooks signed like GitHub's. One user, private repositories; stopped on drop.
//!
//! [`Gitea::start_https`] serves HTTP over TLS instead (Gitea's `PROTOCOL = https`), with a
//! serving certificate for 127.0.0.1 issued by a CA the test makes (the operator's own
//! certificate code, `admission::certs`); the CA's PEM is [`Gitea::ca_pem`].
//!
//! Blocking (it runs processes and waits on them): call it from `spawn_blocking` in async tests.
//! Commits are made and pushed with the real `git` CLI, signed with `ssh-keygen` keys.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use std::sync::Arc;

use base64::Engine;
use countersign::admission::certs::{self, Pair};

use crate::{peer_path, ports, ports::listening_ports, scratch_dir};

/// A free port on 127.0.0.1 (see [`ports::free_port`]). Gitea must be told its ports (its
/// ROOT_URL names the HTTP one), so it cannot start on port 0; `start` detects a port taken
/// meanwhile (Gitea does not hold it) and retries on fresh ports.
fn free_port() -> u16 {
    ports::free_port().expect("a free port on 127.0.0.1")
}

pub const USER: &str = "countersign";
pub const PASSWORD: &str = "gitea-pa55-w0rd";

pub struct Gitea {
    /// `http://127.0.0.1:<port>` (`https://` with [`Gitea::start_https`]).
    pub http: String,
    pub http_port: u16,
    pub ssh_port: u16,
    /// The CA that issued the HTTPS certificate (PEM), when serving HTTPS.
    pub ca_pem: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The certificate files of an HTTPS Gitea.
struct Tls {
    ca: Pair,
    client: Arc<rustls::ClientConfig>,
}

impl Gitea {
    /// Starts Gitea and creates the user. A port taken between choosing and binding makes it
    /// start again on fresh ports.
    pub fn start() -> Gitea {
        Self::start_with(None)
    }

    /// Starts Gitea serving HTTPS with a certificate for 127.0.0.1 from a fresh CA.
    pub fn start_https() -> Gitea {
        let now = std::time::SystemTime::now();
        let ca = certs::new_ca("gitea-test-ca", now, Duration::from_secs(86_400)).expect("a CA");
        let mut roots = rustls::RootCertStore::empty();
        for der in certs::der_chain(&ca.cert).expect("the CA's DER") {
            roots.add(der.into()).expect("the CA as a root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::start_with(Some(Tls {
            ca,
            client: Arc::new(client),
        }))
    }

    fn start_with(tls: Option<Tls>) -> Gitea {
        let dir = scratch_dir("gitea");
        let mut dir = Some(dir);
        for attempt in 1..=3 {
            let (http_port, ssh_port) = (free_port(), free_port());
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut gitea = Gitea {
                http: format!("{scheme}://127.0.0.1:{http_port}"),
                http_port,
                ssh_port,
                ca_pem: tls.as_ref().map(|t| t.ca.cert.clone()),
                tls: tls.as_ref().map(|t| t.client.clone()),
                dir: dir.take().expect("the scratch folder"),
                child: None,
            };
            let path = gitea.dir.path().to_path_buf();
            let server_lines = tls.as_ref().map(|t| serving_files(&t.ca, &path));
            gitea.write_config(&path, server_lines.as_deref());
            match gitea.spawn(&path) {
                Ok(()) => {
                    gitea.create_user();
                    return gitea;
                }
                Err(log) if attempt < 3 => {
                    eprintln!("[gitea] did not come up holding its ports; retrying on other ports:\n{log}");
                    let _ = std::fs::remove_file(path.join("gitea.log"));
                    dir = Some(std::mem::replace(&mut gitea.dir, scratch_dir("gitea-spare")));
                }
                Err(log) => panic!("gitea did not start:\n{log}"),
            }
        }
        unreachable!("three attempts")
    }

    /// `protocol`: Gitea's `[server]` lines for HTTPS, `None` for plain HTTP.
    fn write_config(&self, dir: &Path, protocol: Option<&str>) {
        let random = |n: usize| {
            let mut b = vec![0u8; n];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
            b
        };
        let user = whoami();
        let root_lines = if user == "root" {
            "I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true\n"
        } else {
            ""
        };
        // `[queue] TYPE = channel`: Gitea's default persistent queue holds each webhook delivery
        // about three seconds (docs/benchmarks.md, "Push → applied, taken apart"); the in-memory
        // one delivers at once, and a test peer has nothing to persist.
        let protocol = protocol.unwrap_or("PROTOCOL = http\n");
        let ini = format!(
            "APP_NAME = countersign-tests\nRUN_USER = {user}\nRUN_MODE = prod\nWORK_PATH = {d}\n{root_lines}\
             [server]\n{protocol}HTTP_ADDR = 127.0.0.1\nHTTP_PORT = {hp}\nROOT_URL = {root}/\n\
             DOMAIN = 127.0.0.1\nSTART_SSH_SERVER = true\nSSH_DOMAIN = 127.0.0.1\nSSH_LISTEN_HOST = 127.0.0.1\n\
             SSH_PORT = {sp}\nSSH_LISTEN_PORT = {sp}\nOFFLINE_MODE = true\nSTATIC_ROOT_PATH = {st}\n\
             APP_DATA_PATH = {d}/data\nLFS_START_SERVER = false\n\
             [database]\nDB_TYPE = sqlite3\nPATH = {d}/gitea.db\n\
             [repository]\nROOT = {d}/repos\nDEFAULT_BRANCH = main\n\
             [security]\nINSTALL_LOCK = true\nSECRET_KEY = {sk}\nINTERNAL_TOKEN = {it}\n\
             [oauth2]\nJWT_SECRET = {jwt}\n\
             [webhook]\nALLOWED_HOST_LIST = loopback\nDELIVER_TIMEOUT = 5\n\
             [queue]\nTYPE = channel\n\
             [service]\nDISABLE_REGISTRATION = true\n\
             [session]\nPROVIDER = memory\n[cache]\nADAPTER = memory\n\
             [cron]\nENABLED = false\n[mailer]\nENABLED = false\n\
             [log]\nMODE = console\nLEVEL = Warn\n",
            d = dir.display(),
            hp = self.http_port,
            root = self.http,
            sp = self.ssh_port,
            st = peer_static().display(),
            sk = hex::encode(random(32)),
            it = hex::encode(random(48)),
            jwt = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random(32)),
        );
        std::fs::write(dir.join("app.ini"), ini).expect("write app.ini");
    }

    fn command(&self, dir: &Path) -> Command {
        let mut c = Command::new(peer_path("gitea"));
        c.env("GITEA_WORK_DIR", dir)
            .arg("--config")
            .arg(dir.join("app.ini"))
            .current_dir(dir);
        c
    }

    /// Starts the process and waits for its API; `Err(log)` when it exits first.
    fn spawn(&mut self, dir: &Path) -> Result<(), String> {
        let log_path = dir.join("gitea.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("gitea log");
        let child = self
            .command(dir)
            .arg("web")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start gitea");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            // Unauthenticated: the user does not exist yet on the first start. An answer counts
            // only when it is our Gitea that holds both ports, not whoever took one first.
            if matches!(self.send("GET", "/api/v1/version", None, false), Ok((200, _)))
                && TcpStream::connect(("127.0.0.1", self.ssh_port)).is_ok()
            {
                let pid = self.child.as_ref().map_or(0, std::process::Child::id);
                let held = listening_ports(pid);
                if held.contains(&self.http_port) && held.contains(&self.ssh_port) {
                    return Ok(());
                }
                self.stop();
                return Err(format!(
                    "another process answers on port {} or {} (gitea holds {held:?})",
                    self.http_port, self.ssh_port
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not answering after 120s:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn create_user(&self) {
        let out = self
            .command(self.dir.path())
            .args([
                "admin",
                "user",
                "create",
                "--username",
                USER,
                "--password",
                PASSWORD,
            ])
            .args([
                "--email",
                "countersign@example.com",
                "--admin",
                "--must-change-password=false",
            ])
            .output()
            .expect("gitea admin user create");
        assert!(
            out.status.success(),
            "gitea admin user create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the process; ports and data stay for [`Gitea::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        let dir = self.dir.path().to_path_buf();
        self.spawn(&dir)
            .unwrap_or_else(|log| panic!("gitea did not restart:\n{log}"));
    }

    /// Restarts with a new `[oauth2] JWT_SECRET`, the key Gitea signs its registry tokens with:
    /// every token handed out so far is refused from then on, as an expired or revoked one is
    /// (Gitea's tokens last 24 hours, and no setting shortens them).
    pub fn rotate_token_secret(&mut self) {
        let ini = self.dir.path().join("app.ini");
        let text = std::fs::read_to_string(&ini).expect("app.ini");
        let mut fresh = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut fresh);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fresh);
        let rotated: String = text
            .lines()
            .map(|l| {
                if l.starts_with("JWT_SECRET = ") {
                    format!("JWT_SECRET = {secret}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_ne!(rotated, text, "app.ini has a JWT_SECRET line");
        std::fs::write(&ini, rotated).expect("write app.ini");
        self.restart();
    }

    /// The OCI registry's host (`127.0.0.1:<port>`): Gitea serves it on its HTTP port, with
    /// bearer tokens from `/v2/token`; the user's images are `<host>/<USER>/<name>`.
    pub fn registry_host(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    /// A docker `config.json` (or a `.dockerconfigjson` pull secret) logging in to the registry
    /// as [`USER`] with `password`.
    pub fn docker_config(&self, password: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "auths": { self.registry_host(): { "username": USER, "password": password } }
        }))
        .expect("a docker config")
    }

    /// Makes the user private: its packages (registry repositories) refuse anonymous pulls.
    pub fn make_user_private(&self) {
        self.api(
            "PATCH",
            &format!("/api/v1/admin/users/{USER}"),
            serde_json::json!({"login_name": USER, "source_id": 0, "visibility": "private"}),
        );
    }

    /// Sets the user's password (Gitea's CLI, straight into its database): the registry's token
    /// server refuses the old one at once; the API calls of this harness need [`PASSWORD`].
    pub fn set_password(&self, password: &str) {
        let out = self
            .command(self.dir.path())
            .args(["admin", "user", "change-password", "--username", USER])
            .args(["--password", password, "--must-change-password=false"])
            .output()
            .expect("gitea admin user change-password");
        assert!(
            out.status.success(),
            "gitea admin user change-password: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One HTTP/1.1 request to the API as the user (basic auth); the status and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        json: Option<&serde_json::Value>,
    ) -> std::io::Result<(u16, String)> {
        self.send(method, path, json, true)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        json: Option<&serde_json::Value>,
        auth: bool,
    ) -> std::io::Result<(u16, String)> {
        let stream = TcpStream::connect(("127.0.0.1", self.http_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        let auth = if auth {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
            format!("Authorization: Basic {basic}\r\n")
        } else {
            String::new()
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{auth}\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.http_port,
            body.len()
        );
        let raw = match &self.tls {
            None => exchange(stream, &head, &body)?,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("an IP");
                let tls =
                    rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
                exchange(rustls::StreamOwned::new(tls, stream), &head, &body)?
            }
        };
        let status = raw.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = raw
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Where the CA's PEM is written, for `git -c http.sslCAInfo=…`.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca_pem.as_ref().map(|_| self.dir.path().join("ca.pem"))
    }

    fn api(&self, method: &str, path: &str, json: serde_json::Value) {
        let (status, body) = self.request(method, path, Some(&json)).expect("gitea API");
        assert!((200..300).contains(&status), "{method} {path}: {status} {body}");
    }

    /// A private, empty repository of the user.
    pub fn create_repo(&self, name: &str) {
        self.api(
            "POST",
            "/api/v1/user/repos",
            serde_json::json!({"name": name, "private": true, "auto_init": false, "default_branch": "main"}),
        );
    }

    /// Lets `public_key` (an OpenSSH public key line) read and write over SSH.
    pub fn add_ssh_key(&self, title: &str, public_key: &str) {
        self.api(
            "POST",
            "/api/v1/user/keys",
            serde_json::json!({"title": title, "key": public_key.trim()}),
        );
    }

    /// A push webhook to `url`, signed with `secret` (`X-Hub-Signature-256`).
    pub fn add_webhook(&self, repo: &str, url: &str, secret: &str) {
        self.api(
            "POST",
            &format!("/api/v1/repos/{USER}/{repo}/hooks"),
            serde_json::json!({
                "type": "gitea",
                "config": {"url": url, "content_type": "json", "secret": secret},
                "events": ["push"],
                "active": true,
            }),
        );
    }

    /// The repository over HTTP, without credentials.
    pub fn http_url(&self, repo: &str) -> String {
        format!("{}/{USER}/{repo}.git", self.http)
    }

    /// The repository over SSH (the built-in server's user is the one running Gitea).
    pub fn ssh_url(&self, repo: &str) -> String {
        format!("ssh://{}@127.0.0.1:{}/{USER}/{repo}.git", whoami(), self.ssh_port)
    }

    /// The server's SSH host keys as `known_hosts` lines (`ssh-keyscan`).
    pub fn known_hosts(&self) -> String {
        let out = Command::new("ssh-keyscan")
            .args(["-p", &self.ssh_port.to_string(), "127.0.0.1"])
            .output()
            .expect("ssh-keyscan");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.trim().is_empty(),
            "ssh-keyscan: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes a serving certificate for 127.0.0.1 (and the CA, for `git`) into `dir`; Gitea's
/// `[server]` lines that serve it.
fn serving_files(ca: &Pair, dir: &Path) -> String {
    let names = certs::Names {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().expect("an IP")],
    };
    let serving = certs::issue(
        ca,
        &names,
        std::time::SystemTime::now(),
        Duration::from_secs(86_400),
    )
    .expect("a serving certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &serving.cert).expect("write cert.pem");
    std::fs::write(&key, &serving.key).expect("write key.pem");
    std::fs::write(dir.join("ca.pem"), &ca.cert).expect("write ca.pem");
    format!(
        "PROTOCOL = https\nCERT_FILE = {}\nKEY_FILE = {}\n",
        cert.display(),
        key.display()
    )
}

/// Writes the request, reads the whole answer (the server closes: `Connection: close`).
fn exchange(mut stream: impl Read + Write, head: &str, body: &str) -> std::io::Result<String> {
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => {}
        // A TLS peer closing without close_notify, after the whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

fn peer_static() -> PathBuf {
    let gitea = peer_path("gitea");
    let dir = std::env::var_os("COUNTERSIGN_PEER_GITEA_STATIC")
        .map_or_else(|| gitea.with_file_name("static"), PathBuf::from);
    assert!(
        dir.join("options").is_dir(),
        "gitea static files not at {}: run e2e/peers.sh gitea",
        dir.display()
    );
    dir
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A working copy pushing to a Gitea repository over HTTP with the real `git` CLI.
pub struct WorkTree {
    pub dir: tempfile::TempDir,
    remote: String,
    /// The HTTPS server's CA (`GIT_SSL_CAINFO`), when it serves HTTPS.
    ca: Option<PathBuf>,
}

impl WorkTree {
    /// A fresh repository on branch `main` whose `origin` is `repo` on `gitea`.
    pub fn new(gitea: &Gitea, repo: &str) -> WorkTree {
        let dir = scratch_dir("worktree");
        let remote = gitea
            .http_url(repo)
            .replacen("://", &format!("://{USER}:{PASSWORD}@"), 1);
        let tree = WorkTree {
            dir,
            remote,
            ca: gitea.ca_file(),
        };
        tree.git(&["init", "-q", "-b", "main"]);
        tree.git(&["config", "user.name", "Platform Team"]);
        tree.git(&["config", "user.email", "platform@example.com"]);
        tree.git(&["config", "commit.gpgsign", "false"]);
        tree
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `git ARGS` here; panics with its output when it fails.
    pub fn git(&self, args: &[&str]) -> String {
        let mut git = Command::new("git");
        git.args(args)
            .current_dir(self.dir.path())
            .env("GIT_TERMINAL_PROMPT", "0");
        if let Some(ca) = &self.ca {
            git.env("GIT_SSL_CAINFO", ca);
        }
        let out = git.output().expect("git");
        assert!(
            out.status.success(),
            "git {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes `contents` at `path` (folders created).
    pub fn write(&self, path: &str, contents: &str) {
        let file = self.dir.path().join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(file, contents).expect("write");
    }

    pub fn remove(&self, path: &str) {
        self.git(&["rm", "-q", path]);
    }

    /// Commits everything (signed with the SSH key `signing_key` when given) and returns the
    /// commit id.
    pub fn commit(&self, message: &str, signing_key: Option<&Path>) -> String {
        self.git(&["add", "-A"]);
        match signing_key {
            Some(key) => {
                let key = format!("user.signingkey={}", key.display());
                self.git(&[
                    "-c",
                    "gpg.format=ssh",
                    "-c",
                    &key,
                    "commit",
                    "-q",
                    "-S",
                    "-m",
                    message,
                ]);
            }
            None => {
                self.git(&["commit", "-q", "-m", message]);
            }
        }
        self.git(&["rev-parse", "HEAD"])
    }

    /// Signs the last commit again (amended, so a new id) with the SSH key `signing_key`.
    pub fn commit_amend_signed(&self, signing_key: &Path) -> String {
        let key = format!("user.signingkey={}", signing_key.display());
        self.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &key,
            "commit",
            "-q",
            "--amend",
            "--no-edit",
            "-S",
        ]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Pushes HEAD to `main` (force when asked).
    pub fn push(&self, force: bool) {
        self.push_to("main", force);
    }

    /// Pushes HEAD to `branch`.
    pub fn push_to(&self, branch: &str, force: bool) {
        let target = format!("HEAD:refs/heads/{branch}");
        let mut args = vec!["push", "-q", self.remote.as_str(), target.as_str()];
        if force {
            args.insert(2, "--force");
        }
        self.git(&args);
    }

    /// Deletes `branch` on the server (Gitea refuses to delete the default branch, `main`).
    pub fn delete_remote_branch(&self, branch: &str) {
        self.git(&[
            "push",
            "-q",
            self.remote.as_str(),
            &format!(":refs/heads/{branch}"),
        ]);
    }
}

/// An ed25519 key pair made by `ssh-keygen` in `dir`: (private key path, public key line).
pub fn ssh_keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let private = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .output()
        .expect("ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(private.with_extension("pub")).expect("public key");
    (private, public.trim().to_string())
}
