//! Image globs: which image repositories a TrustRoot governs.
//!
//! A glob is matched against the *repository* of an image reference, never its tag or digest,
//! after Docker Hub's short names are spelled out (see [`repository`]). The syntax is small on
//! purpose, so that a platform team can read a TrustRoot and know what it covers:
//!
//! - `*` matches any run of characters within one path segment (never a `/`);
//! - `**` matches any run of characters across segments (`/` included, possibly empty);
//! - `**/` at the start of the glob or right after a `/` also matches zero segments, so
//!   `registry.example.com/**/api` matches `registry.example.com/api` too;
//! - `?` matches exactly one character other than `/`;
//! - everything else matches itself.
//!
//! So `registry.example.com/payments/**` governs `registry.example.com/payments/api` and
//! `registry.example.com/payments/team/api`, while `registry.example.com/payments/*` governs
//! only the first.

use std::fmt;

/// The longest glob accepted; the CRD schema says the same (`maxLength`).
pub const MAX_GLOB_LEN: usize = 255;

/// A checked, compiled image glob.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Token {
    /// One byte that matches itself.
    Literal(u8),
    /// `?`: one byte other than `/`.
    One,
    /// `*`: any run of bytes without `/`.
    Star,
    /// `**` inside a segment: any run of bytes.
    AnyPath,
    /// `**/` at a segment start: empty, or any run of bytes that ends with `/`.
    Segments,
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

impl Glob {
    /// Checks the syntax and compiles the glob. The error is a sentence about the glob, meant to
    /// follow a field path (`spec.images[0]: …`).
    pub fn new(pattern: &str) -> Result<Self, String> {
        check_syntax(pattern)?;
        Ok(Self {
            pattern: pattern.to_owned(),
            tokens: compile(pattern.as_bytes()),
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `repository` (no tag, no digest; see [`repository`]) matches the whole glob.
    pub fn matches(&self, repository: &str) -> bool {
        let text = repository.as_bytes();
        let n = text.len();
        // `next[j]`: the tokens after the current one match `text[j..]`. Walking the tokens
        // backwards keeps this a plain O(tokens × length) table with two rows, no recursion and
        // no exponential backtracking on globs like `*a*a*a*`.
        let mut next = vec![false; n + 1];
        next[n] = true;
        for token in self.tokens.iter().rev() {
            let mut cur = vec![false; n + 1];
            // For `Segments`: some `k >= j` with `text[k] == '/'` and `next[k + 1]`.
            let mut slash_then_rest = false;
            for j in (0..=n).rev() {
                let byte = text.get(j).copied();
                if byte == Some(b'/') && next[j + 1] {
                    slash_then_rest = true;
                }
                cur[j] = match *token {
                    Token::Literal(c) => byte == Some(c) && next[j + 1],
                    Token::One => byte.is_some_and(|b| b != b'/') && next[j + 1],
                    Token::Star => next[j] || (byte.is_some_and(|b| b != b'/') && cur[j + 1]),
                    Token::AnyPath => next[j] || (byte.is_some() && cur[j + 1]),
                    Token::Segments => next[j] || slash_then_rest,
                };
            }
            next = cur;
        }
        next[0]
    }
}

fn compile(pattern: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' if pattern.get(i + 1) == Some(&b'*') => {
                let at_segment_start = i == 0 || pattern[i - 1] == b'/';
                if at_segment_start && pattern.get(i + 2) == Some(&b'/') {
                    tokens.push(Token::Segments);
                    i += 3;
                } else {
                    tokens.push(Token::AnyPath);
                    i += 2;
                }
            }
            b'*' => {
                tokens.push(Token::Star);
                i += 1;
            }
            b'?' => {
                tokens.push(Token::One);
                i += 1;
            }
            c => {
                tokens.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    tokens
}

/// The syntax rules, in the order a person fixing a glob wants to hear them. The CRD's CEL rules
/// check the same things (see `trustroot.rs`), so the apiserver and [`Glob::new`] agree.
fn check_syntax(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("must not be empty".into());
    }
    if pattern.len() > MAX_GLOB_LEN {
        return Err(format!("is longer than {MAX_GLOB_LEN} characters"));
    }
    if pattern.chars().any(char::is_whitespace) {
        return Err(format!("{pattern:?} must not contain whitespace"));
    }
    if pattern.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("{pattern:?} must be lowercase (image repositories are)"));
    }
    if pattern.contains('@') {
        return Err(format!(
            "{pattern:?} must name repositories without a digest: remove the '@…' part"
        ));
    }
    if let Some(c) = pattern.chars().find(|&c| !is_glob_char(c)) {
        return Err(format!(
            "{pattern:?} contains {c:?}; allowed are a-z 0-9 . _ - / : and the wildcards * ** ?"
        ));
    }
    if pattern.contains("***") {
        return Err(format!(
            "{pattern:?}: '***' is not a wildcard; use '*' within a path segment or '**' across segments"
        ));
    }
    if pattern.starts_with('/') || pattern.ends_with('/') || pattern.contains("//") {
        return Err(format!(
            "{pattern:?} must not have empty path segments (leading, trailing or double '/')"
        ));
    }
    if has_tag(pattern) {
        return Err(format!(
            "{pattern:?} must name repositories without a tag: remove the ':…' after the last '/'"
        ));
    }
    Ok(())
}

fn is_glob_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:*?".contains(c)
}

/// A `:` is allowed only in the first segment, as a registry port (`localhost:5000/app`).
fn has_tag(pattern: &str) -> bool {
    pattern
        .split_once('/')
        .is_some_and(|(_, rest)| rest.contains(':'))
}

/// The repository of an image reference as globs see it: tag and digest removed, and Docker
/// Hub's short forms spelled out the way the container runtime resolves them
/// (`nginx:1.27` → `docker.io/library/nginx`, `index.docker.io/foo/bar` → `docker.io/foo/bar`).
pub fn repository(image_ref: &str) -> String {
    let name = image_ref.trim();
    let name = name.split_once('@').map_or(name, |(name, _digest)| name);
    let name = match name.rfind(':') {
        // A ':' after the last '/' starts a tag; one before it is a registry port.
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    let (host, path) = match name.split_once('/') {
        Some((first, rest)) if is_registry_host(first) => (first, rest),
        _ => ("docker.io", name),
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    };
    if host == "docker.io" && !path.contains('/') {
        format!("docker.io/library/{path}")
    } else {
        format!("{host}/{path}")
    }
}

/// Docker's rule: the first segment names a registry when it has a `.` or a `:` or is
/// `localhost`; otherwise the reference is a Docker Hub path.
fn is_registry_host(segment: &str) -> bool {
    segment.contains('.') || segment.contains(':') || segment == "localhost"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pattern: &str) -> Glob {
        match Glob::new(pattern) {
            Ok(glob) => glob,
            Err(e) => panic!("{pattern}: {e}"),
        }
    }

    #[test]
    fn literal_globs_match_only_themselves() {
        let g = glob("registry.example.com/payments/api");
        assert!(g.matches("registry.example.com/payments/api"));
        assert!(!g.matches("registry.example.com/payments/api2"));
        assert!(!g.matches("registry.example.com/payments"));
        assert!(!g.matches(""));
    }

    #[test]
    fn star_stays_within_one_segment() {
        let g = glob("registry.example.com/payments/*");
        assert!(g.matches("registry.example.com/payments/api"));
        assert!(g.matches("registry.example.com/payments/"));
        assert!(!g.matches("registry.example.com/payments/team/api"));
        assert!(!g.matches("registry.example.com/other/api"));

        let g = glob("registry.example.com/*-api");
        assert!(g.matches("registry.example.com/payments-api"));
        assert!(!g.matches("registry.example.com/payments-web"));
        assert!(!g.matches("registry.example.com/a/b-api"));
    }

    #[test]
    fn double_star_crosses_segments() {
        let g = glob("registry.example.com/payments/**");
        assert!(g.matches("registry.example.com/payments/api"));
        assert!(g.matches("registry.example.com/payments/team/api"));
        assert!(!g.matches("registry.example.com/payments"));
        assert!(!g.matches("registry.example.com/paymentsx/api"));

        let g = glob("**");
        assert!(g.matches("docker.io/library/nginx"));
        assert!(g.matches(""));

        let g = glob("registry.example.com/**-api");
        assert!(g.matches("registry.example.com/team/sub/payments-api"));
        assert!(!g.matches("registry.example.com/team/payments-web"));
    }

    #[test]
    fn double_star_slash_also_matches_zero_segments() {
        let g = glob("registry.example.com/**/api");
        assert!(g.matches("registry.example.com/api"));
        assert!(g.matches("registry.example.com/a/api"));
        assert!(g.matches("registry.example.com/a/b/api"));
        assert!(!g.matches("registry.example.com/a/xapi"));

        let g = glob("**/nginx");
        assert!(g.matches("docker.io/library/nginx"));
        assert!(g.matches("nginx"));
        assert!(!g.matches("docker.io/library/nginx-unprivileged"));
    }

    #[test]
    fn question_mark_is_one_character_but_never_a_slash() {
        let g = glob("ghcr.io/acme/app?");
        assert!(g.matches("ghcr.io/acme/app1"));
        assert!(!g.matches("ghcr.io/acme/app"));
        assert!(!g.matches("ghcr.io/acme/app12"));
        assert!(!glob("ghcr.io/acme?app").matches("ghcr.io/acme/app"));
    }

    #[test]
    fn registry_ports_are_literal() {
        let g = glob("localhost:5000/**");
        assert!(g.matches("localhost:5000/app"));
        assert!(!g.matches("localhost:5001/app"));
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        let g = glob("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b");
        let text = "a".repeat(200);
        assert!(!g.matches(&text));
    }

    #[test]
    fn syntax_errors_say_what_is_wrong() {
        let cases = [
            ("", "must not be empty"),
            ("registry.example.com/pay ments", "whitespace"),
            ("Registry.example.com/x", "lowercase"),
            ("ghcr.io/acme/app@sha256:abc", "digest"),
            ("ghcr.io/acme/app:v1", "tag"),
            ("ghcr.io/acme/**:v1", "tag"),
            ("ghcr.io/acme/[ab]", "contains '['"),
            ("ghcr.io/***", "'***'"),
            ("/ghcr.io/acme", "empty path segments"),
            ("ghcr.io/acme/", "empty path segments"),
            ("ghcr.io//acme", "empty path segments"),
        ];
        for (pattern, expected) in cases {
            match Glob::new(pattern) {
                Ok(_) => panic!("{pattern:?} was accepted"),
                Err(e) => assert!(e.contains(expected), "{pattern:?}: {e}"),
            }
        }
        let long = format!("ghcr.io/{}", "a".repeat(MAX_GLOB_LEN));
        assert!(Glob::new(&long).is_err());
    }

    #[test]
    fn valid_globs_are_accepted() {
        for pattern in [
            "**",
            "registry.example.com/payments/**",
            "localhost:5000/*",
            "ghcr.io/acme/app-?.v2_x",
            "*.example.com/**",
        ] {
            assert!(Glob::new(pattern).is_ok(), "{pattern}");
        }
    }

    #[test]
    fn repository_drops_tag_and_digest() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(repository("ghcr.io/acme/app:v1"), "ghcr.io/acme/app");
        assert_eq!(
            repository(&format!("ghcr.io/acme/app@{digest}")),
            "ghcr.io/acme/app"
        );
        assert_eq!(
            repository(&format!("ghcr.io/acme/app:v1@{digest}")),
            "ghcr.io/acme/app"
        );
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository("localhost:5000/app:1.0"), "localhost:5000/app");
    }

    #[test]
    fn repository_spells_out_docker_hub() {
        assert_eq!(repository("nginx"), "docker.io/library/nginx");
        assert_eq!(repository("nginx:1.27"), "docker.io/library/nginx");
        assert_eq!(repository("bitnami/redis:7"), "docker.io/bitnami/redis");
        assert_eq!(repository("docker.io/nginx"), "docker.io/library/nginx");
        assert_eq!(
            repository("index.docker.io/library/nginx"),
            "docker.io/library/nginx"
        );
        assert_eq!(repository("localhost/app"), "localhost/app");
    }
}
