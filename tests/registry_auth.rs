//! A registry with real bearer-token auth, as Docker Hub, GHCR, ECR and Harbor hand out: Gitea's,
//! with the repository private (its owner is), so that an anonymous pull is refused. Through the
//! library's client (what the operator reads with) and the CLI:
//!
//! - no credentials, or wrong ones: an error naming the registry and where the credentials came
//!   from (a file, flags), exit code 13, never a verdict;
//! - right ones, from a docker config.json or cosign-style `--registry-username`: verified;
//! - every token Gitea handed out refused at once (its signing key rotated, as when tokens
//!   expire or are revoked): the `401` is answered by fetching a new token, the answer stays;
//! - the password changed under a running client: an authentication error, not a verdict; put
//!   back: verified again, with the same client.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use countersign::{
    keys::PublicKey,
    reference::ImageRef,
    registry::{Credentials, RegistryClient, RegistryError, RegistryOptions},
    verify::{KeySet, NamedKey, Outcome, Policy, Verification, verify_image},
};
use countersign_tests::{
    gitea::{self, Gitea},
    images::push_image_as,
    scratch_dir,
};

/// Every request the client reported, as `(operation, outcome)`.
type Seen = Arc<Mutex<Vec<(&'static str, &'static str)>>>;

fn client(credentials: Credentials, seen: &Seen) -> RegistryClient {
    let seen = seen.clone();
    RegistryClient::new(RegistryOptions {
        credentials,
        observer: Some(Arc::new(move |op, outcome, _| {
            seen.lock().unwrap().push((op, outcome))
        })),
        ..RegistryOptions::default()
    })
}

async fn verify(client: &RegistryClient, image: &str, keys: &Keys) -> Verification {
    let pem = std::fs::read_to_string(&keys.public).unwrap();
    let policy = Policy {
        keys: KeySet::new(
            vec![NamedKey {
                name: "ci".into(),
                key: PublicKey::from_pem(&pem).unwrap(),
            }],
            1,
        ),
        signature_repository: None,
    };
    verify_image(client, &ImageRef::parse(image).unwrap(), &policy).await
}

/// The outcome is an authentication error (never Unsigned or Invalid); its message.
fn unauthorized(v: &Verification) -> String {
    match &v.outcome {
        Outcome::Error {
            error: e @ RegistryError::Unauthorized { .. },
            ..
        } => e.to_string(),
        other => panic!("expected an authentication error, got {other:?}\n{v:#?}"),
    }
}

fn assert_verified(v: &Verification) {
    assert!(
        matches!(v.outcome, Outcome::Verified { .. }),
        "expected Verified, got {v:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_token_registry_needs_credentials_and_survives_losing_its_tokens() {
    let keys = Keys::generate();
    let mut gitea = tokio::task::spawn_blocking(Gitea::start).await.unwrap();
    gitea.make_user_private();
    let host = gitea.registry_host();
    let tag = format!("{host}/{}/app:v1", gitea::USER);

    let dir = scratch_dir("docker");
    let right = dir.path().join("config.json");
    std::fs::write(&right, gitea.docker_config(gitea::PASSWORD)).unwrap();
    let wrong = dir.path().join("wrong.json");
    std::fs::write(&wrong, gitea.docker_config("not-the-password")).unwrap();
    // Pushed and signed with the real tools, logged in through DOCKER_CONFIG.
    push_image_as(Some(dir.path()), &tag, "private token registry");
    keys.sign_as(dir.path(), &tag);

    // The library client: anonymous and wrong credentials are refused, naming the registry and
    // where the credentials came from; the right ones verify.
    let seen = Seen::default();
    let anonymous = client(Credentials::anonymous(), &seen);
    let message = unauthorized(&verify(&anonymous, &tag, &keys).await);
    assert!(
        message.contains(&host) && message.contains("no credentials"),
        "{message}"
    );
    let origin = "Secret team-b/regcred";
    let bad = Credentials::from_docker_config(&gitea.docker_config("nope"), origin).unwrap();
    let message = unauthorized(&verify(&client(bad, &seen), &tag, &keys).await);
    assert!(message.contains(&host) && message.contains(origin), "{message}");
    assert!(!message.contains("nope"), "no password in messages: {message}");

    let good =
        Credentials::from_docker_config(&gitea.docker_config(gitea::PASSWORD), "Secret team-a/regcred")
            .unwrap();
    let reader = client(good, &seen);
    assert_verified(&verify(&reader, &tag, &keys).await);

    // Every token refused from now on: the next requests answer 401 to the cached token, a new
    // token is fetched, and the same answer comes back.
    tokio::task::block_in_place(|| gitea.rotate_token_secret());
    seen.lock().unwrap().clear();
    assert_verified(&verify(&reader, &tag, &keys).await);
    let after = std::mem::take(&mut *seen.lock().unwrap());
    let first_401 = after
        .iter()
        .position(|(_, outcome)| *outcome == "unauthorized")
        .unwrap_or_else(|| panic!("the cached token was refused: {after:?}"));
    assert!(
        after[first_401..].contains(&("token", "ok")),
        "a new token after the 401: {after:?}"
    );

    // The password changed (and tokens lost with it): an authentication error, not a verdict.
    gitea.set_password("changed-pa55");
    tokio::task::block_in_place(|| gitea.rotate_token_secret());
    let message = unauthorized(&verify(&reader, &tag, &keys).await);
    assert!(message.contains("Secret team-a/regcred"), "{message}");
    // Put back: the same client recovers.
    gitea.set_password(gitea::PASSWORD);
    assert_verified(&verify(&reader, &tag, &keys).await);

    // The CLI: config.json, cosign-style flags, wrong and no credentials.
    let cli = |args: &[&str]| {
        let mut all = vec!["verify", "--key", keys.public_str()];
        all.extend_from_slice(args);
        all.push(&tag);
        countersign(&all)
    };
    let run = cli(&["--registry-config", right.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let run = countersign_tests::cosign::Run::from(
        std::process::Command::new(countersign_tests::countersign_bin())
            .args([
                "verify",
                "--key",
                keys.public_str(),
                "--registry-username",
                gitea::USER,
                &tag,
            ])
            .env("COUNTERSIGN_REGISTRY_PASSWORD", gitea::PASSWORD)
            .env("DOCKER_CONFIG", "/nonexistent")
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let run = cli(&["--registry-config", wrong.to_str().unwrap()]);
    assert_eq!(run.code, Some(13), "{}{}", run.stdout, run.stderr);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains(wrong.to_str().unwrap()) && said.contains(&host),
        "{said}"
    );
    assert!(!said.contains("not-the-password"), "{said}");
    let run = cli(&[]);
    assert_eq!(run.code, Some(13), "anonymous: {}{}", run.stdout, run.stderr);
    drop(gitea);
}
