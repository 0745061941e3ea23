//! `local-gitea up [--repo NAME]…`: runs a real Gitea (see `countersign_tests::gitea`) on
//! 127.0.0.1 with ephemeral ports for the demo and the e2e scripts until SIGINT or SIGTERM.
//!
//! Creates the user and the private, empty repositories asked for, prints shell lines naming them
//! (`export GITEA_URL=…`, `GITEA_USER`, `GITEA_PASSWORD`, and `GITEA_REPO_<NAME>` per
//! repository), then one line `ready:` on stdout, and stays up. On a signal it stops Gitea and
//! removes its data.

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use countersign_tests::gitea::{self, Gitea};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
#[command(about = "A real local Gitea: Git over HTTP (basic auth) and SSH, push webhooks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start Gitea and keep it running until SIGINT or SIGTERM.
    Up {
        /// A private, empty repository of the user to create (repeatable).
        #[arg(long = "repo", value_name = "NAME")]
        repos: Vec<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let Cmd::Up { repos } = Cli::parse().command;
    // Listen before starting, so a signal during the start-up is not lost.
    let mut interrupt = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("listen for SIGTERM")?;

    let start = tokio::task::spawn_blocking(move || {
        let gitea = Gitea::start();
        for repo in &repos {
            gitea.create_repo(repo);
        }
        (gitea, repos)
    });
    let (gitea, repos) = tokio::select! {
        started = start => started.context("starting gitea")?,
        _ = interrupt.recv() => return Ok(()),
        _ = terminate.recv() => return Ok(()),
    };

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "export GITEA_URL={}", gitea.http)?;
    writeln!(stdout, "export GITEA_USER={}", gitea::USER)?;
    writeln!(stdout, "export GITEA_PASSWORD={}", gitea::PASSWORD)?;
    writeln!(stdout, "export GITEA_SSH_PORT={}", gitea.ssh_port)?;
    for repo in &repos {
        let var = repo
            .to_uppercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        writeln!(stdout, "export GITEA_REPO_{var}={}", gitea.http_url(repo))?;
    }
    writeln!(stdout, "ready: {}", gitea.http)?;
    stdout.flush().context("flush stdout")?;
    drop(stdout);
    eprintln!("[local-gitea] up; Ctrl-C stops it");

    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("[local-gitea] stopping");
    drop(gitea);
    Ok(())
}
