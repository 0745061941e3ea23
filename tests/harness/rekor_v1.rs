//! Rekor v1, the log cosign v2 uploads to (its SET is the `.sig` layer's
//! `dev.sigstore.cosign/bundle` annotation), on 127.0.0.1 with every part a real program:
//!
//! - PostgreSQL, the machine's (Debian's package), in a folder of its own: `initdb` there, its
//!   unix socket there too, TCP on 127.0.0.1 only;
//! - Trillian's log server and log signer on its PostgreSQL storage, the schema loaded from the
//!   Trillian module (`e2e/peers.sh rekor-v1` copies it beside the binaries);
//! - Rekor v1's REST API (`rekor-v1-server`, see `e2e/peers.sh`), which creates its Trillian tree
//!   itself, signing SETs and checkpoints with a key made here.
//!
//! Apart from [`crate::sigstore::SigstoreStack`]: only the tests that ask for it pay for its start
//! (a few seconds). [`RekorV1::tlog`] is its entry for a trusted root
//! ([`crate::sigstore::SigstoreStack::trust_log`]).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{
    cluster::{Component, start_with_retry},
    cosign::{Cosign, CosignVersion, Run},
    peer_path, scratch_dir,
    sigstore::{SigstoreStack, ec_key, log_json, path_str, start_on_port_zero, wait_http},
};

/// The database role and database Trillian uses.
const DB_USER: &str = "trillian";
const DB_NAME: &str = "trillian";
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the signer integrates queued entries; cosign waits for its entry to be integrated.
const SEQUENCER_INTERVAL: &str = "50ms";

/// The running log. Dropping it stops every process.
pub struct RekorV1 {
    pub url: String,
    /// The log's public key (PEM), for cosign v2's `SIGSTORE_REKOR_PUBLIC_KEY`.
    public_key: PathBuf,
    /// The same key, DER SubjectPublicKeyInfo: the log ID is its SHA-256.
    spki: Vec<u8>,
    _rekor: Component,
    /// The log server and the signer.
    trillian: [Component; 2],
    /// Stopped last (fields drop in this order), once its clients are gone.
    _postgres: Component,
    _dir: tempfile::TempDir,
}

impl Drop for RekorV1 {
    /// Trillian's servers sleep 5 s after SIGTERM before they exit (`serverutil.Main.Run` and
    /// the signer's `main`: "give things a few seconds to tidy up"), 10 s for nothing as the
    /// data is thrown away: they are killed. The others stop as usual, when their fields drop.
    fn drop(&mut self) {
        for component in &mut self.trillian {
            component.end(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl RekorV1 {
    /// Starts PostgreSQL with Trillian's schema, Trillian's log server and signer, and Rekor,
    /// each waited for on its readiness condition.
    pub async fn start() -> Result<Self> {
        let dir = scratch_dir("rekor-v1");
        let d = dir.path();
        let (postgres, port) = start_postgres(d).await?;
        let uri = format!("postgresql://{DB_USER}@127.0.0.1:{port}/{DB_NAME}");
        let (log_server, rpc_port) =
            start_trillian("trillian-log-server", &uri, &["--tree_gc=false"], d).await?;
        let signer_flags = [
            "--force_master",
            &format!("--sequencer_interval={SEQUENCER_INTERVAL}"),
        ];
        let (log_signer, _) = start_trillian("trillian-log-signer", &uri, &signer_flags, d).await?;
        let (public_key, spki) = ec_key(d, "rekor-v1")?;
        let args = vec![
            "127.0.0.1:0".to_owned(),
            format!("127.0.0.1:{rpc_port}"),
            d.join("rekor-v1-key.pem").display().to_string(),
        ];
        // Its API answers once the tree exists: it creates one before it listens.
        let (rekor, url) =
            start_on_port_zero("rekor-v1", &peer_path("rekor-v1-server"), &args, d, "/api/v1/log").await?;
        Ok(Self {
            url,
            public_key,
            spki,
            _rekor: rekor,
            trillian: [log_signer, log_server],
            _postgres: postgres,
            _dir: dir,
        })
    }

    /// This log as a trusted root lists it: URL, key, log ID (SHA-256 of the key), valid since.
    pub fn tlog(&self) -> Value {
        log_json(&self.url, &self.spki)
    }

    /// The log ID (hex), as the SET payload's `logID` names it.
    pub fn log_id(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(&self.spki))
    }

    /// The environment cosign v2 needs to trust this log without TUF.
    pub fn cosign_env(&self) -> Vec<(&str, &str)> {
        vec![("SIGSTORE_REKOR_PUBLIC_KEY", path_str(&self.public_key))]
    }

    /// `cosign sign --key` of cosign v2, logged here: a `.sig` layer with the SET annotation.
    pub fn sign_v2_with_key(&self, cosign: &Cosign, key: &Path, image: &str) -> Run {
        self.v2_with_key(cosign, "sign", key, &[], image)
    }

    /// `cosign attest --key` of cosign v2 (predicate file `predicate` of type `kind`, then
    /// `extra`), logged here: a `.att` layer (the DSSE envelope) whose SET annotation is of a
    /// dsse entry (with `--rekor-entry-type intoto` in `extra`, an intoto entry).
    pub fn attest_v2_with_key(
        &self,
        cosign: &Cosign,
        key: &Path,
        (predicate, kind): (&Path, &str),
        extra: &[&str],
        image: &str,
    ) -> Run {
        let args = [&["--predicate", path_str(predicate), "--type", kind], extra].concat();
        self.v2_with_key(cosign, "attest", key, &args, image)
    }

    /// Keyless `cosign sign` of cosign v2 with `stack`'s Fulcio, logged here and not
    /// timestamped: the SET's integrated time is the only trusted time of the signature.
    pub fn sign_v2_keyless(&self, stack: &SigstoreStack, cosign: &Cosign, token: &str, image: &str) -> Run {
        self.v2_keyless(stack, cosign, "sign", token, &[], image)
    }

    /// Keyless `cosign attest` of cosign v2, logged here and not timestamped, as
    /// [`Self::sign_v2_keyless`] signs.
    pub fn attest_v2_keyless(
        &self,
        stack: &SigstoreStack,
        cosign: &Cosign,
        token: &str,
        predicate: &Path,
        kind: &str,
        image: &str,
    ) -> Run {
        let extra = ["--predicate", path_str(predicate), "--type", kind];
        self.v2_keyless(stack, cosign, "attest", token, &extra, image)
    }

    /// `cosign <command> --key` of cosign v2 uploading to this log, then `extra` and `image`.
    fn v2_with_key(&self, cosign: &Cosign, command: &str, key: &Path, extra: &[&str], image: &str) -> Run {
        assert_eq!(cosign.version, CosignVersion::V2);
        let mut args = vec![command, "--key", path_str(key), "--rekor-url", &self.url, "-y"];
        args.extend_from_slice(extra);
        args.push(image);
        cosign.run_with_env(&self.cosign_env(), &args)
    }

    /// Keyless `cosign <command>` of cosign v2 with `stack`'s Fulcio, uploading to this log, no
    /// TSA, then `extra` and `image`.
    fn v2_keyless(
        &self,
        stack: &SigstoreStack,
        cosign: &Cosign,
        command: &str,
        token: &str,
        extra: &[&str],
        image: &str,
    ) -> Run {
        assert_eq!(cosign.version, CosignVersion::V2);
        let token = stack.token_file(token);
        let mut args = vec![
            command,
            "--identity-token",
            path_str(&token),
            "--fulcio-url",
            &stack.fulcio_url,
            "--rekor-url",
            &self.url,
            "-y",
        ];
        args.extend_from_slice(extra);
        args.push(image);
        let mut env = stack.v2_env();
        env.extend(self.cosign_env());
        cosign.run_with_env(&env, &args)
    }
}

/// The folder of PostgreSQL's server programs: where the `initdb` on PATH really lives (Debian
/// links it from /usr/lib/postgresql/<major>/bin, if at all), else the newest of those.
fn postgres_bin_dir() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("initdb"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    if let Some(initdb) = on_path {
        let real = std::fs::canonicalize(&initdb)?;
        return Ok(real.parent().context("initdb's folder")?.to_path_buf());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL not found (no initdb on PATH or in /usr/lib/postgresql/*/bin): install Debian's postgresql"
        ),
    }
}

/// PostgreSQL refuses to run as root: as root, its programs run as `nobody` (through util-linux's
/// `setpriv`, which execs, so the process the harness holds is PostgreSQL itself), in a folder
/// given to that user.
struct ServerUser(Option<(u32, u32)>);

impl ServerUser {
    fn for_postgres() -> Result<Self> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(Self(None));
        }
        let user =
            nix::unistd::User::from_name("nobody")?.context("no user `nobody` to run PostgreSQL as")?;
        Ok(Self(Some((user.uid.as_raw(), user.gid.as_raw()))))
    }

    /// A folder this user owns, inside `parent` (which it may then traverse).
    fn folder(&self, parent: &Path, name: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let folder = parent.join(name);
        std::fs::create_dir(&folder)?;
        if let Some((uid, gid)) = self.0 {
            std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711))?;
            std::os::unix::fs::chown(&folder, Some(uid), Some(gid))?;
        }
        Ok(folder)
    }

    /// The program and arguments that run `program` with `args` as this user.
    fn command(&self, program: &Path, args: &[String]) -> (PathBuf, Vec<String>) {
        let Some((uid, gid)) = self.0 else {
            return (program.to_path_buf(), args.to_vec());
        };
        let mut all = vec![
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
            program.display().to_string(),
        ];
        all.extend_from_slice(args);
        (PathBuf::from("setpriv"), all)
    }
}

/// Runs a command to its end; its output in the error when it fails.
fn run(what: &str, program: &Path, args: &[String]) -> Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("{what}: start {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// PostgreSQL in `<dir>/postgres` (data, unix socket), on a fresh port of 127.0.0.1, with the
/// database [`DB_NAME`] holding Trillian's schema. Durability is off: the data is thrown away.
async fn start_postgres(dir: &Path) -> Result<(Component, u16)> {
    let bin = postgres_bin_dir()?;
    let user = ServerUser::for_postgres()?;
    let home = user.folder(dir, "postgres")?;
    let data = home.join("data");
    let initdb = [
        "-D",
        path_str(&data),
        "-U",
        DB_USER,
        "--auth=trust",
        "--no-sync",
        "--no-instructions",
        "-E",
        "UTF8",
    ]
    .map(str::to_owned);
    let (program, args) = user.command(&bin.join("initdb"), &initdb);
    run("initdb", &program, &args)?;
    let (postgres, port) = start_with_retry(
        1,
        |p| {
            let args = [
                "-D",
                path_str(&data),
                "-p",
                &p[0].to_string(),
                "-k",
                path_str(&home),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
            .map(str::to_owned);
            let (program, args) = user.command(&bin.join("postgres"), &args);
            Component::spawn("postgres", &program, &args, dir)
        },
        |mut component, p| {
            let bin = bin.clone();
            async move {
                let outcome = component
                    .wait_until("accepting connections", START_TIMEOUT, || {
                        let ready = pg_isready(&bin, p[0]);
                        async move { ready }
                    })
                    .await;
                (component, outcome.map(|()| p[0]))
            }
        },
    )
    .await?;
    psql(
        &bin,
        port,
        "postgres",
        &["-c", &format!("CREATE DATABASE {DB_NAME}")],
    )?;
    let schema = peer_path("trillian-schema");
    psql(&bin, port, DB_NAME, &["-f", path_str(&schema)])?;
    Ok((postgres, port))
}

/// Whether the server on `port` accepts connections (`pg_isready`'s exit code 0).
fn pg_isready(bin: &Path, port: u16) -> Result<()> {
    let status = Command::new(bin.join("pg_isready"))
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            DB_USER,
            "-d",
            "postgres",
        ])
        .status()?;
    if !status.success() {
        bail!("pg_isready: {status}");
    }
    Ok(())
}

/// `psql` on database `db`, stopping at the first error.
fn psql(bin: &Path, port: u16, db: &str, extra: &[&str]) -> Result<()> {
    let mut args: Vec<String> = [
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        DB_USER,
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(["-p".to_owned(), port.to_string(), "-d".to_owned(), db.to_owned()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    run("psql", &bin.join("psql"), &args)
}

/// A Trillian server (`trillian-log-server` or `trillian-log-signer`) on PostgreSQL at `uri`, on
/// two fresh ports (gRPC, HTTP), ready when its /healthz (which asks the database) answers 200.
/// Returns its gRPC port.
async fn start_trillian(
    name: &'static str,
    uri: &str,
    extra: &[&str],
    dir: &Path,
) -> Result<(Component, u16)> {
    let binary = peer_path(&name.replace('-', "_"));
    start_with_retry(
        2,
        |p| {
            let mut args = vec![
                format!("--rpc_endpoint=127.0.0.1:{}", p[0]),
                format!("--http_endpoint=127.0.0.1:{}", p[1]),
                "--storage_system=postgresql".to_owned(),
                format!("--postgresql_uri={uri}"),
                // The quota systems keep their tokens in MySQL, etcd or Redis.
                "--quota_system=noop".to_owned(),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            Component::spawn(name, &binary, &args, dir)
        },
        |mut component, p| async move {
            let outcome = wait_http(&mut component, p[1], "/healthz").await;
            (component, outcome.map(|()| p[0]))
        },
    )
    .await
}
