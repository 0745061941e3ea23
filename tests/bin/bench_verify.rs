//! Benchmark of the verification engine (issue: "each verify at least 10× faster than cosign's").
//!
//!   e2e/bench-verify.sh [IMAGES]
//!
//! On one loopback registry (go-containerregistry with the referrers API) and one set of signed
//! images (half cosign v3 bundles, half legacy `.sig`), it measures:
//! 1. `countersign verify` against `cosign verify --key --insecure-ignore-tlog`, as processes,
//!    side by side on the same images, and reports the ratio;
//! 2. the engine in process: digests verified per second cold (a new client per digest: new
//!    connections, no token) and warm (one client, connections reused);
//! 3. how much of a warm verification is our own code (parsing and ECDSA), not the round trips.

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let images: usize = std::env::args().nth(1).map_or(Ok(40), |a| a.parse())?;
    let countersign = std::env::var("COUNTERSIGN_BIN").map(PathBuf::from)?;
    let registry = Registry::start(RegistryKind::Referrers);
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
    let refs = prepare(&registry, &key, images).await?;
    println!(
        "# countersign verification benchmark ({images} images on {})\n",
        registry.host
    );
    compare_processes(
        &registry,
        &countersign,
        &cosign,
        &public,
        &refs[..refs.len().min(20)],
    )?;
    in_process(&refs, &policy).await;
    Ok(())
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
        if i % 2 == 0 {
            sign_bundle(&client, &request).await?;
        } else {
            sign_legacy(&client, &request).await?;
        }
        refs.push(image);
    }
    Ok(refs)
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
    cosign: &Cosign,
    public: &Path,
    refs: &[ImageRef],
) -> anyhow::Result<()> {
    let public = public.to_str().unwrap_or_default();
    let home = scratch_dir("bench-cosign-home");
    let env = [("HOME", home.path()), ("TUF_ROOT", home.path())];
    let ours_args = |image: &str| ["verify", "--key", public, image].map(String::from);
    let theirs_args =
        |image: &str| ["verify", "--key", public, "--insecure-ignore-tlog=true", image].map(String::from);
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for image in refs {
        let image = image.to_string();
        ours.push(time_process(countersign, &ours_args(&image), &[])?);
        theirs.push(time_process(cosign.binary(), &theirs_args(&image), &env)?);
    }
    // Requests are counted in a pass of their own: waiting for the registry's log between
    // timed runs would let the CPU idle down before each one.
    let (mut our_requests, mut their_requests) = (0, 0);
    for image in refs {
        let image = image.to_string();
        let before = logged_requests(registry);
        time_process(countersign, &ours_args(&image), &[])?;
        let between = logged_requests(registry);
        time_process(cosign.binary(), &theirs_args(&image), &env)?;
        our_requests += between - before;
        their_requests += logged_requests(registry) - between;
    }
    let (ours, theirs) = (median(&mut ours), median(&mut theirs));
    println!(
        "## One `verify` process per image ({} images, median wall time)\n",
        refs.len()
    );
    println!("| verifier | median |\n|---|---|");
    println!("| countersign verify | {:.1} ms |", ms(ours));
    println!(
        "| cosign v3.1.2 verify --insecure-ignore-tlog | {:.1} ms |",
        ms(theirs)
    );
    println!(
        "\nratio: countersign is {:.1}× faster\n",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    let n = refs.len() as f64;
    println!(
        "registry requests per verify (the registry's log): countersign {:.2}, cosign {:.2}\n",
        our_requests as f64 / n,
        their_requests as f64 / n
    );
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
        "\nour own code (parse + ECDSA, no I/O): {:.3} ms per digest, {:.1}% of a warm sequential verification\n",
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
