//! Benchmark of the verification engine (issue: "each verify at least 10× faster than cosign's").
//!
//!   e2e/bench-verify.sh [IMAGES]            (keys)
//!   e2e/bench-verify.sh [IMAGES] --keyless  (Fulcio certificates, Rekor v2, TSA)
//!
//! On one loopback registry (go-containerregistry with the referrers API) and one set of signed
//! images, it measures:
//! 1. `countersign verify` against `cosign verify` (v3.1.2), as processes, side by side on the
//!    same images, and reports the ratio;
//! 2. the engine in process: digests verified per second cold (a new client per digest: new
//!    connections, no token) and warm (one client, connections reused);
//! 3. how much of a warm verification is our own code (parsing and signature checks), not the
//!    round trips.
//!
//! With keys, half the images are cosign v3 bundles and half legacy `.sig` (signed by our library
//! as cosign does), and cosign verifies with `--key --insecure-ignore-tlog`. With `--keyless`, a
//! control plane (the OIDC issuer) and the local Sigstore stack are started, real cosign v3 signs
//! even images (bundle referrer: Fulcio certificate, Rekor v2 entry, TSA timestamp) and real
//! cosign v2 odd ones (`.sig` with certificate and TSA timestamp, not logged), and both verifiers
//! check identity, issuer, chain, SCT and trusted time offline from the stack's trusted root.

mod keyless;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use countersign::{
    keys::{PublicKey, SigningKey},
    reference::{Digest, ImageRef},
    registry::{RegistryClient, RegistryOptions},
    sign::{SignRequest, sign_bundle, sign_legacy},
    verify::{KeySet, NamedKey, Policy, evaluate, fetch_signatures, verify_image},
};
use countersign_tests::{
    cosign::{Cosign, CosignVersion},
    images::push_image,
    registry::{Registry, RegistryKind},
    scratch_dir,
};

/// One image to verify, and the flags (before the image) each verifier is given for it.
pub struct Target {
    pub image: ImageRef,
    pub kind: Kind,
    pub ours: Vec<String>,
    pub theirs: Vec<String>,
}

/// How an image is signed: the two layouts are fetched and checked differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A Sigstore bundle as an OCI referrer (cosign v3).
    Bundle,
    /// A `.sig` tag (cosign v2, or v3 with `--new-bundle-format=false`).
    Legacy,
}

impl Kind {
    pub fn of_index(i: usize) -> Kind {
        if i.is_multiple_of(2) {
            Kind::Bundle
        } else {
            Kind::Legacy
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Bundle => "bundle",
            Kind::Legacy => ".sig",
        }
    }
}

/// What a mode (keys or keyless) prepared: the signed images and the policy they verify under.
pub struct Prepared {
    pub targets: Vec<Target>,
    pub policy: Policy,
    /// How cosign is run, for the table.
    pub cosign_label: &'static str,
    /// Figures of the mode's own, printed at the end.
    pub notes: Vec<String>,
    /// Servers and files the verifications need until the end (dropped last).
    pub _keep: Vec<Box<dyn std::any::Any>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keyless = args.iter().any(|a| a == "--keyless");
    let hold = args.iter().any(|a| a == "--hold");
    let images: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(40), |a| a.parse())?;
    let countersign = std::env::var("COUNTERSIGN_BIN").map(PathBuf::from)?;
    let registry = Registry::start(RegistryKind::Referrers);
    let prepared = if keyless {
        keyless::prepare(&registry, images).await?
    } else {
        with_keys(&registry, images).await?
    };
    let mode = if keyless { "keyless" } else { "keys" };
    println!(
        "# countersign verification benchmark, {mode} ({images} images on {})\n",
        registry.host
    );
    let targets = &prepared.targets[..prepared.targets.len().min(20)];
    if hold {
        hold_for_profiling(&countersign, targets)?;
    }
    compare_processes(&registry, &countersign, prepared.cosign_label, targets)?;
    let refs: Vec<ImageRef> = prepared.targets.iter().map(|t| t.image.clone()).collect();
    in_process(&refs, &prepared.policy).await;
    prepared.notes.iter().for_each(|n| println!("{n}\n"));
    Ok(())
}

/// A cosign key pair; images signed with countersign's library.
async fn with_keys(registry: &Registry, images: usize) -> anyhow::Result<Prepared> {
    let dir = scratch_dir("bench");
    let cosign = Cosign::new(CosignVersion::V3);
    let (private, public) = cosign.generate_key_pair(dir.path(), "bench");
    let key = SigningKey::from_encrypted_pem(&std::fs::read_to_string(&private)?, b"test")?;
    let policy = Policy {
        keys: KeySet::new(
            vec![NamedKey {
                name: "bench".into(),
                key: PublicKey::from_pem(&std::fs::read_to_string(&public)?)?,
            }],
            1,
        ),
        signature_repository: None,
    };
    let public = public.to_str().unwrap_or_default().to_owned();
    let targets = prepare(registry, &key, images)
        .await?
        .into_iter()
        .enumerate()
        .map(|(i, image)| Target {
            image,
            kind: Kind::of_index(i),
            ours: args(&["--key", &public]),
            theirs: args(&["--key", &public, "--insecure-ignore-tlog=true"]),
        })
        .collect();
    Ok(Prepared {
        targets,
        policy,
        cosign_label: "cosign v3.1.2 verify --key --insecure-ignore-tlog",
        notes: Vec::new(),
        _keep: vec![Box::new(dir), Box::new(cosign)],
    })
}

pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Pushes `n` images and signs them with countersign's library: even ones as bundles, odd ones
/// as legacy `.sig` (what cosign v3 and v2 write by default).
async fn prepare(registry: &Registry, key: &SigningKey, n: usize) -> anyhow::Result<Vec<ImageRef>> {
    let client = RegistryClient::new(RegistryOptions::default());
    let mut refs = Vec::new();
    for i in 0..n {
        let tag = format!("{}:v{i}", registry.repo("bench"));
        let digest = Digest::parse(&push_image(&tag, &format!("bench image {i}")))?;
        let image = ImageRef::parse(&tag)?.at_digest(&digest);
        let request = SignRequest {
            image: &image,
            key,
            annotations: Default::default(),
            signature_repository: None,
        };
        if Kind::of_index(i) == Kind::Bundle {
            sign_bundle(&client, &request).await?;
        } else {
            sign_legacy(&client, &request).await?;
        }
        refs.push(image);
    }
    Ok(refs)
}

/// `--hold`: prints the verify commands of the first two images (keyless: a bundle and a `.sig`)
/// and waits for a line on stdin, so that they can be profiled (`perf stat`, `strace`) against
/// the running registry.
fn hold_for_profiling(countersign: &Path, targets: &[Target]) -> anyhow::Result<()> {
    let cosign = Cosign::new(CosignVersion::V3);
    for t in targets.iter().take(2) {
        let line = |program: &Path, flags: &[String]| {
            let quoted: Vec<String> = flags.iter().map(|f| format!("'{f}'")).collect();
            format!("{} verify {} {}", program.display(), quoted.join(" "), t.image)
        };
        eprintln!("{}", line(countersign, &t.ours));
        eprintln!("{}", line(cosign.binary(), &t.theirs));
    }
    eprintln!("[bench] holding: press Enter to go on");
    std::io::stdin().read_line(&mut String::new())?;
    Ok(())
}

fn time_process(program: &Path, args: &[String], env: &[(&str, &Path)]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "{program:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(elapsed)
}

/// Requests the registry has logged so far (go-containerregistry: one line per request, the
/// method third): the load-independent half of the comparison.
fn logged_requests(registry: &Registry) -> usize {
    // The registry logs a request once it has answered: give the last line time to land.
    std::thread::sleep(Duration::from_millis(20));
    registry
        .log()
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(2)
                .is_some_and(|m| matches!(m, "GET" | "HEAD" | "POST" | "PUT"))
        })
        .count()
}

fn compare_processes(
    registry: &Registry,
    countersign: &Path,
    cosign_label: &str,
    targets: &[Target],
) -> anyhow::Result<()> {
    let cosign = Cosign::new(CosignVersion::V3);
    let home = scratch_dir("bench-cosign-home");
    let env = [("HOME", home.path()), ("TUF_ROOT", home.path())];
    let with_image = |flags: &[String], image: &ImageRef| {
        let mut a = vec!["verify".to_owned()];
        a.extend_from_slice(flags);
        a.push(image.to_string());
        a
    };
    let ours_args = |t: &Target| with_image(&t.ours, &t.image);
    let theirs_args = |t: &Target| with_image(&t.theirs, &t.image);
    let mut times = Vec::new();
    for t in targets {
        let ours = time_process(countersign, &ours_args(t), &[])?;
        times.push((ours, time_process(cosign.binary(), &theirs_args(t), &env)?));
    }
    // Requests are counted in a pass of their own: waiting for the registry's log between
    // timed runs would let the CPU idle down before each one.
    let mut requests = Vec::new();
    for t in targets {
        let before = logged_requests(registry);
        time_process(countersign, &ours_args(t), &[])?;
        let between = logged_requests(registry);
        time_process(cosign.binary(), &theirs_args(t), &env)?;
        requests.push((between - before, logged_requests(registry) - between));
    }
    println!(
        "## One `verify` process per image ({} images, paired, median wall time)\n",
        targets.len()
    );
    println!("countersign verify against {cosign_label}\n");
    println!(
        "| images | countersign | cosign | ratio | registry requests per verify (countersign, cosign) |"
    );
    println!("|---|---|---|---|---|");
    let kinds = [None, Some(Kind::Bundle), Some(Kind::Legacy)];
    for kind in kinds {
        let of_kind = |i: &usize| kind.is_none_or(|k| targets[*i].kind == k);
        let picked: Vec<usize> = (0..targets.len()).filter(of_kind).collect();
        if picked.is_empty() {
            continue;
        }
        let ours = median(&mut picked.iter().map(|&i| times[i].0).collect::<Vec<_>>());
        let theirs = median(&mut picked.iter().map(|&i| times[i].1).collect::<Vec<_>>());
        let n = picked.len() as f64;
        let (our_requests, their_requests): (usize, usize) = picked
            .iter()
            .map(|&i| requests[i])
            .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
        println!(
            "| {} ({}) | {:.1} ms | {:.1} ms | {:.1}× | {:.2}, {:.2} |",
            kind.map_or("all", Kind::name),
            picked.len(),
            ms(ours),
            ms(theirs),
            theirs.as_secs_f64() / ours.as_secs_f64(),
            our_requests as f64 / n,
            their_requests as f64 / n
        );
    }
    println!();
    Ok(())
}

async fn in_process(refs: &[ImageRef], policy: &Policy) {
    // Cold: a new client per digest, so every verification opens connections and pings /v2/.
    let started = Instant::now();
    for image in refs {
        let client = RegistryClient::new(RegistryOptions::default());
        assert_verified(&verify_image(&client, image, policy).await);
    }
    let cold = started.elapsed();
    // Warm: one client, connections kept; sequential, then 16 at a time.
    let client = Arc::new(RegistryClient::new(RegistryOptions::default()));
    assert_verified(&verify_image(client.as_ref(), &refs[0], policy).await);
    let started = Instant::now();
    for image in refs {
        assert_verified(&verify_image(client.as_ref(), image, policy).await);
    }
    let warm = started.elapsed();
    let started = Instant::now();
    let all = futures::future::join_all(
        refs.iter()
            .map(|image| verify_image(client.as_ref(), image, policy)),
    )
    .await;
    all.iter().for_each(assert_verified);
    let warm_parallel = started.elapsed();
    let ours = our_own_cost(&client, refs, policy).await;
    let n = refs.len() as f64;
    println!("## In process ({} digests)\n", refs.len());
    println!("| mode | digests/s | per digest |\n|---|---|---|");
    for (mode, t) in [
        ("cold (new client each)", cold),
        ("warm, sequential", warm),
        ("warm, concurrent", warm_parallel),
    ] {
        println!("| {mode} | {:.0} | {:.2} ms |", n / t.as_secs_f64(), ms(t) / n);
    }
    println!(
        "\nour own code (parsing and signature checks, no I/O): {:.3} ms per digest, {:.1}% of a warm sequential verification\n",
        ms(ours) / n,
        100.0 * ours.as_secs_f64() / warm.as_secs_f64()
    );
}

/// Time spent evaluating already-fetched signatures: everything but the registry round trips.
async fn our_own_cost(client: &RegistryClient, refs: &[ImageRef], policy: &Policy) -> Duration {
    let mut fetched = Vec::new();
    for image in refs {
        let digest = image.digest().unwrap_or_else(|| Digest::of(b""));
        fetched.push((digest.clone(), fetch_signatures(client, image, &digest).await));
    }
    let started = Instant::now();
    for (digest, f) in &fetched {
        let (outcome, _) = evaluate(digest, f, &policy.keys);
        assert_eq!(outcome.name(), "Verified");
    }
    started.elapsed()
}

fn assert_verified(v: &countersign::verify::Verification) {
    assert_eq!(v.outcome.name(), "Verified", "{v:#?}");
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
