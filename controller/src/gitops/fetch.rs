//! Fetching one ref with git2 into a bare repository that persists across passes (one folder per
//! TrustSource), so that a fetch of an unchanged ref only negotiates and transfers no objects.
//!
//! Blocking (libgit2 is): run it on a blocking thread. Bounded three ways: libgit2's own connect
//! and read timeouts ([`set_process_timeouts`], process-wide) free a thread stuck on a silent
//! server; the transfer-progress and side-band callbacks abort the transfer past the source's
//! deadline or past the size limit; and the caller stops waiting at the deadline with a timer.
//!
//! Trust: an SSH host key must be listed in the Secret's `known_hosts` (no trust on first
//! use); an HTTPS certificate is verified against the Secret's `ca.crt` when it has one
//! ([`super::tls`]), else by libgit2 against the system's roots.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, Once},
    time::{Duration, Instant},
};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, FetchOptions, Oid,
    RemoteCallbacks, Repository,
};

use super::{
    credentials::{Credentials, known_host},
    error::Error,
    tls::CaBundle,
    url::{RepoUrl, Transport, redact},
};
use crate::crd::GitRef;

/// Limits of one fetch.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes received in one fetch.
    pub max_bytes: usize,
}

/// What to fetch, and where to keep it.
#[derive(Debug)]
pub struct Request<'a> {
    pub url: &'a RepoUrl,
    pub git_ref: &'a GitRef,
    pub credentials: &'a Credentials,
    /// The Secret's `ca.crt`, read: HTTPS servers must chain to it instead of the system's roots.
    pub ca: Option<&'a CaBundle>,
    /// The TrustSource's own cache folder (a bare repository, created when missing).
    pub dir: &'a Path,
    pub limits: Limits,
}

/// The commit the ref points to, fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub commit: Oid,
    /// `<ref>@sha1:<commit>`, as status shows it.
    pub revision: String,
    /// Objects received by this fetch: 0 when the ref did not move.
    pub received_objects: usize,
    pub received_bytes: usize,
}

/// Why a callback aborted the transfer, to tell a timeout, a host key or a certificate from a
/// network error.
#[derive(Debug, Default)]
struct Abort {
    host_key: Option<String>,
    certificate: Option<String>,
    limit: Option<String>,
}

/// How long libgit2 waits for a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long libgit2 waits on one socket read or write. A Git server computing a large pack sends
/// keep-alive progress every few seconds (`uploadpack.keepAlive`, 5 s by default), so this long
/// without a byte means the server hangs.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets libgit2's connect and read timeouts (it has none by default, so a server that accepts
/// the connection and never answers would hold a blocking thread, and the source's cache lock,
/// forever). Process-wide in libgit2; set once, before the first fetch.
pub fn set_process_timeouts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: these write two C globals of libgit2 without synchronisation; they are read
        // when a socket is opened. The `Once` runs this before the TrustSource controller starts
        // its first fetch (no other code of the process uses libgit2), so nothing reads them
        // concurrently. The only unsafe code in the crate (the lint is `deny`, not `forbid`, for
        // it): git2 exposes these options only as `unsafe fn`.
        #[allow(unsafe_code)]
        let set = unsafe {
            git2::opts::set_server_connect_timeout_in_milliseconds(ms(CONNECT_TIMEOUT))
                .and_then(|()| git2::opts::set_server_timeout_in_milliseconds(ms(READ_TIMEOUT)))
        };
        if let Err(e) = set {
            tracing::warn!(error = %e.message(), "setting libgit2's timeouts failed");
        }
    });
}

/// Fetches `request.git_ref` and returns its commit. The repository stays open for reading
/// through [`open`].
pub fn fetch(request: &Request<'_>) -> Result<Fetched, Error> {
    let url = redact(&request.url.fetch_url);
    let repo = open_or_init(request.dir).map_err(|e| fetch_error(&url, &e))?;
    let abort = Arc::new(Mutex::new(Abort::default()));
    let deadline = Instant::now() + request.limits.timeout;
    let wrap = |e: git2::Error| classify(&url, &e, &abort);
    let (refspec, local, label) = match resolve(request, &repo, deadline, &abort) {
        Ok(r) => r,
        Err(Resolve::Git(e)) => return Err(wrap(e)),
        Err(Resolve::Other(e)) => return Err(e),
    };
    let mut remote = repo.remote_anonymous(&request.url.fetch_url).map_err(wrap)?;
    let mut options = FetchOptions::new();
    options
        .remote_callbacks(callbacks(request, deadline, &abort))
        .download_tags(AutotagOption::None)
        .update_fetchhead(false);
    // Shallow where libgit2 allows (not for local repositories, and not when a commit is looked
    // for among every branch).
    if request.url.transport != Transport::File && request.git_ref.commit.is_none() {
        options.depth(1);
    }
    let headers = bearer_header(request);
    if let Some(h) = &headers {
        options.custom_headers(&[h.as_str()]);
    }
    remote
        .fetch(&[refspec.as_str()], Some(&mut options), None)
        .map_err(wrap)?;
    // libgit2 fetches nothing, without an error, for a ref the remote does not have: a deleted
    // branch would otherwise look unchanged (its last fetched commit is still cached).
    if let Some(wanted) = refspec.strip_prefix('+').and_then(|r| r.split(':').next())
        && !wanted.contains('*')
        && !remote.list().map_err(wrap)?.iter().any(|h| h.name() == wanted)
    {
        if let Ok(mut stale) = repo.find_reference(&local) {
            let _ = stale.delete();
        }
        return Err(Error::Fetch {
            url,
            message: format!("{wanted} does not exist on the remote (deleted?)"),
        });
    }
    let stats = remote.stats();
    let (received_objects, received_bytes) = (stats.received_objects(), stats.received_bytes());
    let commit = match &request.git_ref.commit {
        Some(hex) => {
            let oid = Oid::from_str(hex).map_err(wrap)?;
            repo.find_commit(oid).map_err(|_| Error::Fetch {
                url: url.clone(),
                message: format!("commit {hex} is not on any branch"),
            })?;
            oid
        }
        None => repo
            .find_reference(&local)
            .and_then(|r| r.peel_to_commit())
            .map_err(wrap)?
            .id(),
    };
    Ok(Fetched {
        commit,
        revision: match label {
            Some(name) => format!("{name}@sha1:{commit}"),
            None => format!("sha1:{commit}"),
        },
        received_objects,
        received_bytes,
    })
}

/// The cache repository of a TrustSource, for reading a fetched commit.
pub fn open(dir: &Path) -> Result<Repository, git2::Error> {
    Repository::open_bare(dir)
}

/// The cache folder of the TrustSource `name` with `uid` (a new object with the same name gets
/// a fresh one).
pub fn cache_dir(root: &Path, name: &str, uid: &str) -> PathBuf {
    root.join(format!("{name}-{uid}"))
}

fn open_or_init(dir: &Path) -> Result<Repository, git2::Error> {
    match Repository::open_bare(dir) {
        Ok(repo) => Ok(repo),
        Err(_) => {
            // Missing or damaged: start over (the next fetch downloads the ref again).
            let _ = std::fs::remove_dir_all(dir);
            Repository::init_bare(dir)
        }
    }
}

enum Resolve {
    Git(git2::Error),
    Other(Error),
}

/// The refspec to fetch, the local ref it lands in, and the ref's name for the revision.
fn resolve(
    request: &Request<'_>,
    repo: &Repository,
    deadline: Instant,
    abort: &Arc<Mutex<Abort>>,
) -> Result<(String, String, Option<String>), Resolve> {
    let r = request.git_ref;
    if let Some(branch) = &r.branch {
        let local = format!("refs/remotes/origin/{branch}");
        return Ok((
            format!("+refs/heads/{branch}:{local}"),
            local,
            Some(branch.clone()),
        ));
    }
    if let Some(tag) = &r.tag {
        let local = format!("refs/tags/{tag}");
        return Ok((format!("+{local}:{local}"), local, Some(tag.clone())));
    }
    if r.commit.is_some() {
        return Ok(("+refs/heads/*:refs/remotes/origin/*".into(), String::new(), None));
    }
    let range = r.semver.as_deref().unwrap_or_default();
    let req = semver::VersionReq::parse(range).map_err(|e| {
        Resolve::Other(Error::Spec(crate::crd::FieldError::new(
            "spec.ref.semver",
            format!("{range:?} is not a semver range: {e}"),
        )))
    })?;
    // List the remote's tags (no objects are transferred) and pick the highest match.
    let mut remote = repo
        .remote_anonymous(&request.url.fetch_url)
        .map_err(Resolve::Git)?;
    let headers = bearer_header(request);
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    let connection = remote
        .connect_auth(Direction::Fetch, Some(callbacks(request, deadline, abort)), None)
        .map_err(Resolve::Git)?;
    let _ = header_refs;
    let tags: Vec<String> = connection
        .list()
        .map_err(Resolve::Git)?
        .iter()
        .filter_map(|h| h.name().strip_prefix("refs/tags/").map(str::to_string))
        .filter(|t| !t.ends_with("^{}"))
        .collect();
    let best = highest_match(&req, &tags).ok_or_else(|| {
        Resolve::Other(Error::Fetch {
            url: redact(&request.url.fetch_url),
            message: format!("no tag matches the semver range {range:?}"),
        })
    })?;
    let local = format!("refs/tags/{best}");
    Ok((format!("+{local}:{local}"), local, Some(best)))
}

/// The highest tag (a leading `v` ignored) that `req` matches.
pub fn highest_match(req: &semver::VersionReq, tags: &[String]) -> Option<String> {
    tags.iter()
        .filter_map(|t| {
            let v = semver::Version::parse(t.strip_prefix('v').unwrap_or(t)).ok()?;
            req.matches(&v).then_some((v, t))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t.clone())
}

fn bearer_header(request: &Request<'_>) -> Option<String> {
    request
        .credentials
        .bearer_token
        .as_ref()
        .map(|t| format!("Authorization: Bearer {t}"))
}

fn callbacks<'a>(
    request: &'a Request<'_>,
    deadline: Instant,
    abort: &Arc<Mutex<Abort>>,
) -> RemoteCallbacks<'a> {
    let mut cb = RemoteCallbacks::new();
    let credentials = request.credentials;
    let mut attempts = 0;
    cb.credentials(move |_url, username, allowed| {
        // libgit2 asks again after a refusal; asking once with the same answer is enough.
        attempts += 1;
        if attempts > 1 {
            return Err(git2::Error::from_str("authentication failed"));
        }
        credential(credentials, username, allowed)
    });
    let max_bytes = request.limits.max_bytes;
    let progress_abort = abort.clone();
    cb.transfer_progress(move |p| {
        keep_going(
            &progress_abort,
            over_limit(deadline, p.received_bytes(), max_bytes),
        )
    });
    let sideband_abort = abort.clone();
    cb.sideband_progress(move |_| keep_going(&sideband_abort, timed_out(deadline)));
    let transport = request.url.transport.clone();
    let known_hosts = credentials.known_hosts.clone();
    let ca = request.ca.cloned();
    let cert_abort = abort.clone();
    cb.certificate_check(move |cert, host| {
        // Each refusal is also kept in `Abort`, so that the error says which check refused.
        if let Some(hostkey) = cert.as_hostkey() {
            return check_host_key(&transport, known_hosts.as_deref(), hostkey.hostkey())
                .map_err(|why| refused(&mut lock(&cert_abort).host_key, why));
        }
        check_tls(ca.as_ref(), cert.as_x509().map(|x509| x509.data()), host)
            .map_err(|why| refused(&mut lock(&cert_abort).certificate, why))
    });
    cb
}

/// Whether a transfer goes on: it stops (libgit2 aborts when a callback returns false) when it
/// must, saying why in `Abort`.
fn keep_going(abort: &Mutex<Abort>, stop: Option<String>) -> bool {
    match stop {
        Some(why) => {
            lock(abort).limit = Some(why);
            false
        }
        None => true,
    }
}

fn timed_out(deadline: Instant) -> Option<String> {
    (Instant::now() > deadline).then(|| "timed out".to_string())
}

/// Why a transfer must stop, if it must: past its deadline, or more than `max_bytes` received.
fn over_limit(deadline: Instant, received_bytes: usize, max_bytes: usize) -> Option<String> {
    timed_out(deadline).or_else(|| {
        (received_bytes > max_bytes).then(|| format!("the repository is larger than {max_bytes} bytes"))
    })
}

/// A refused certificate or host key: the reason kept in `slot` of `Abort`, and the error that
/// makes libgit2 stop.
fn refused(slot: &mut Option<String>, why: String) -> git2::Error {
    let e = git2::Error::from_str(&why);
    *slot = Some(why);
    e
}

/// An SSH server's host key, checked against the Secret's `known_hosts`: never trusted on first
/// use. (A host key over another transport is libgit2's to judge.)
fn check_host_key(
    transport: &Transport,
    known_hosts: Option<&str>,
    key: Option<&[u8]>,
) -> Result<CertificateCheckStatus, String> {
    let Transport::Ssh { host, port, .. } = transport else {
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    match (known_hosts, key) {
        (None, _) => {
            Err("the Secret has no known_hosts: SSH host keys are never trusted on first use".into())
        }
        (_, None) => Err("the server sent no host key".into()),
        (Some(kh), Some(key)) => known_host(kh, host, *port, key),
    }
    .map(|()| CertificateCheckStatus::CertificateOk)
}

/// An HTTPS server's certificate: with the Secret's `ca.crt`, checked against it alone (libgit2's
/// own verdict against the system's roots is overridden either way); without one, libgit2 checks
/// the chain and host name against the system's roots (and fails with an SSL-class error, which
/// `classify` names, when they do not hold).
fn check_tls(
    ca: Option<&CaBundle>,
    der: Option<&[u8]>,
    host: &str,
) -> Result<CertificateCheckStatus, String> {
    let Some(ca) = ca else {
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    match der {
        Some(der) => ca.check(der, host),
        None => Err("the server presented no X.509 certificate".into()),
    }
    .map(|()| CertificateCheckStatus::CertificateOk)
}

fn credential(c: &Credentials, username: Option<&str>, allowed: CredentialType) -> Result<Cred, git2::Error> {
    if allowed.contains(CredentialType::SSH_KEY)
        && let Some(identity) = &c.identity
    {
        return Cred::ssh_key_from_memory(username.unwrap_or("git"), None, identity, None);
    }
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
        && let (Some(user), Some(password)) = (&c.username, &c.password)
    {
        return Cred::userpass_plaintext(user, password);
    }
    if allowed.contains(CredentialType::USERNAME) {
        return Cred::username(username.unwrap_or("git"));
    }
    Err(git2::Error::from_str(
        "no credentials in the Secret for this kind of URL",
    ))
}

fn classify(url: &str, e: &git2::Error, abort: &Mutex<Abort>) -> Error {
    let abort = lock(abort);
    if let Some(why) = &abort.host_key {
        return Error::HostKey {
            url: url.into(),
            message: why.clone(),
        };
    }
    if let Some(why) = &abort.certificate {
        return Error::Certificate {
            url: url.into(),
            message: why.clone(),
        };
    }
    if e.class() == ErrorClass::Ssl {
        // libgit2 refused the certificate against the system's roots ("the SSL certificate is
        // invalid", "hostname does not match certificate").
        return Error::Certificate {
            url: url.into(),
            message: format!(
                "{} (checked against the system's roots: put the server's CA in the Secret's ca.crt to trust a private CA)",
                redact(e.message())
            ),
        };
    }
    if let Some(why) = &abort.limit {
        return Error::Limit {
            url: url.into(),
            message: why.clone(),
        };
    }
    fetch_error(url, e)
}

fn fetch_error(url: &str, e: &git2::Error) -> Error {
    Error::Fetch {
        url: url.into(),
        // libgit2's messages name the ref or the HTTP status; they never echo credentials.
        message: redact(e.message()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_matching_tag_wins() {
        let tags: Vec<String> = ["v1.0.0", "v1.2.0", "1.10.1", "v2.0.0", "latest", "v1.3.0-rc.1"]
            .map(String::from)
            .to_vec();
        let req = semver::VersionReq::parse(">=1.0.0, <2.0.0").unwrap();
        assert_eq!(highest_match(&req, &tags).as_deref(), Some("1.10.1"));
        let req = semver::VersionReq::parse("^3").unwrap();
        assert_eq!(highest_match(&req, &tags), None);
    }
}
