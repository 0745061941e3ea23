//! Image references and digests, named the way cosign names them.
//!
//! Parsing follows the Docker reference grammar through oci-client's parser (`alpine` is
//! `index.docker.io/library/alpine:latest`); this module adds what cosign needs on top: the
//! repository string that goes into a signature payload, the `sha256-<hex>` tag forms, and the
//! signature-repository override.

use std::fmt;

use oci_client::Reference;

/// A content digest. Only `sha256` is accepted: it is the only algorithm cosign signs with and
/// the only one whose tag forms (`sha256-<hex>.sig`) are defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| ReferenceError::Digest(s.to_string()))?;
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if valid {
            Ok(Self(s.to_string()))
        } else {
            Err(ReferenceError::Digest(s.to_string()))
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// `sha256-<hex>`: the OCI referrers fallback tag.
    pub fn fallback_tag(&self) -> String {
        format!("sha256-{}", self.hex())
    }

    /// `sha256-<hex>.sig`: where cosign v2 stores signatures.
    pub fn signature_tag(&self) -> String {
        format!("sha256-{}.sig", self.hex())
    }

    /// `sha256-<hex>.att`: where cosign v2 stores attestations.
    pub fn attestation_tag(&self) -> String {
        format!("sha256-{}.att", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parsed image reference: registry, repository, and a tag and/or a digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    inner: Reference,
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ImageRef({self})")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repository_name())?;
        if let Some(tag) = self.inner.tag() {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = self.inner.digest() {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let s = s.trim();
        let error = |reason: &str| ReferenceError::Image {
            image: s.to_string(),
            reason: reason.to_string(),
        };
        let parsed = parse_docker_reference(s).map_err(error)?;
        let digest = parsed.digest.map(Digest::parse).transpose()?;
        let inner = match (parsed.tag, digest) {
            (Some(tag), Some(d)) => {
                Reference::with_tag_and_digest(parsed.registry, parsed.repository, tag.into(), d.0)
            }
            (None, Some(d)) => Reference::with_digest(parsed.registry, parsed.repository, d.0),
            (tag, None) => {
                Reference::with_tag(parsed.registry, parsed.repository, tag.unwrap_or("latest").into())
            }
        };
        Ok(Self { inner })
    }

    /// The registry host (and port) requests go to; Docker Hub is `index.docker.io`.
    pub fn registry(&self) -> &str {
        self.inner.resolve_registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<Digest> {
        self.inner.digest().and_then(|d| Digest::parse(d).ok())
    }

    /// `registry/repository` without tag or digest: cosign's `docker-reference`, and the string
    /// trust-root globs are matched against.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry(), self.repository())
    }

    /// The same repository at `digest` (the tag is dropped: a digest reference is exact).
    pub fn at_digest(&self, digest: &Digest) -> Self {
        self.with(Reference::with_digest(
            self.inner.registry().to_string(),
            self.repository().to_string(),
            digest.to_string(),
        ))
    }

    /// The same repository at `tag`.
    pub fn at_tag(&self, tag: &str) -> Self {
        self.with(Reference::with_tag(
            self.inner.registry().to_string(),
            self.repository().to_string(),
            tag.to_string(),
        ))
    }

    /// Another repository on possibly another registry, keeping nothing of this one's tag or
    /// digest: where signatures live when a signature repository (cosign's `COSIGN_REPOSITORY`)
    /// is set.
    pub fn repository_only(&self) -> Self {
        self.at_tag("latest")
    }

    fn with(&self, inner: Reference) -> Self {
        Self { inner }
    }

    /// Registries reached over plain HTTP without a flag, as cosign (go-containerregistry) does:
    /// loopback hosts only.
    pub fn is_loopback_registry(&self) -> bool {
        is_loopback_host(self.registry())
    }

    pub(crate) fn oci(&self) -> &Reference {
        &self.inner
    }
}

struct Parsed<'a> {
    registry: String,
    repository: String,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// The Docker reference grammar (distribution's `reference` package), by hand: oci-client's
/// parser compiles a large regular expression on first use, which cost 25 ms of a 35 ms
/// `countersign verify`.
fn parse_docker_reference(s: &str) -> Result<Parsed<'_>, &'static str> {
    let (name, digest) = match s.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (s, None),
    };
    // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    if let Some(tag) = tag {
        valid_tag(tag)?;
    }
    if name.is_empty() || name.len() > 255 {
        return Err("repository name must be 1 to 255 characters");
    }
    let (registry, repository) = split_registry(name);
    valid_registry(registry)?;
    if !repository.split('/').all(valid_path_component) {
        return Err("repository path components must be lowercase letters, digits and separators (. _ __ -)");
    }
    let repository = if registry == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_string()
    };
    Ok(Parsed {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    })
}

/// Docker's rule: the first component is a registry when it looks like a host (has a `.` or a
/// `:`, is `localhost`, or has uppercase letters, which repositories never do).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            match first {
                "index.docker.io" | "registry-1.docker.io" => ("docker.io", rest),
                _ => (first, rest),
            }
        }
        _ => ("docker.io", name),
    }
}

fn valid_registry(registry: &str) -> Result<(), &'static str> {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(h, port)| {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                ""
            } else {
                h
            }
        }),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let ipv6 = registry.starts_with('[') && host.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    if ipv6 || (!host.is_empty() && host.split('.').all(label_ok)) {
        Ok(())
    } else {
        Err("invalid registry host")
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            let ok = separator.is_empty()
                || matches!(separator.as_str(), "." | "_" | "__")
                || separator.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = matches!(tag.as_bytes().first(), Some(&b) if word(b))
        && tag.len() <= 128
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok { Ok(()) } else { Err("invalid tag") }
}

/// `localhost`, `*.localhost`, `127.0.0.0/8` and `[::1]`, with or without a port.
pub fn is_loopback_host(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {image:?}: {reason}")]
    Image { image: String, reason: String },
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    Digest(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "4a5e1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8";

    #[test]
    fn docker_hub_defaults_match_cosign() {
        let r = ImageRef::parse("alpine").unwrap();
        assert_eq!(r.repository_name(), "index.docker.io/library/alpine");
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn registry_with_port_tag_and_digest() {
        let s = format!("127.0.0.1:5000/team/app:v1@sha256:{HEX}");
        let r = ImageRef::parse(&s).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.digest().unwrap().hex(), HEX);
        assert_eq!(r.to_string(), s);
        assert!(r.is_loopback_registry());
    }

    #[test]
    fn digest_forms() {
        let d = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        assert_eq!(d.signature_tag(), format!("sha256-{HEX}.sig"));
        assert_eq!(d.fallback_tag(), format!("sha256-{HEX}"));
        assert!(Digest::parse("sha512:abc").is_err());
        assert!(Digest::parse(&format!("sha256:{}", HEX.to_uppercase())).is_err());
        assert!(Digest::parse("sha256:").is_err());
    }

    #[test]
    fn at_digest_drops_the_tag() {
        let r = ImageRef::parse("localhost:5000/app:v1").unwrap();
        let d = Digest::of(b"x");
        assert_eq!(r.at_digest(&d).to_string(), format!("localhost:5000/app@{d}"));
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:1",
            "[::1]:5000",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["registry.example.com", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for s in [
            "",
            "Upper",
            "a@sha256:zz",
            ":::",
            "a/b:c:d",
            "a b",
            "a/-b",
            "a/b-",
            "a/b..c",
            "a/b___c",
            "host:port/x",
            "a:-tag",
            "@sha256:",
            "/a",
            "a//b",
        ] {
            assert!(ImageRef::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn grammar_accepts_what_docker_accepts() {
        for (s, repo) in [
            ("nginx", "index.docker.io/library/nginx"),
            ("docker.io/nginx:1.27", "index.docker.io/library/nginx"),
            ("index.docker.io/team/app", "index.docker.io/team/app"),
            ("ghcr.io/o/r/a_b__c-d--e.f:v1.2-rc_3", "ghcr.io/o/r/a_b__c-d--e.f"),
            ("localhost/app", "localhost/app"),
            ("[::1]:5000/app", "[::1]:5000/app"),
            ("Registry.Example/app", "Registry.Example/app"),
            ("team/app", "index.docker.io/team/app"),
        ] {
            assert_eq!(ImageRef::parse(s).unwrap().repository_name(), repo, "{s}");
        }
    }
}
