//! `countersign rotation status [NAME] [--watch] [-o json]`.

use std::{fmt::Write as _, process::ExitCode, time::Duration};

use anyhow::Context;
use jiff::Timestamp;
use kube::{Api, ResourceExt, api::ListParams};

use crate::crd::{KeyRotation, KeyRotationStatus};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The KeyRotation; all of them when omitted.
    pub name: Option<String>,
    /// Print again whenever the status changes (Ctrl-C to stop).
    #[arg(long, short)]
    pub watch: bool,
    /// `text` for people, `json` for scripts (the objects' spec and status).
    #[arg(long, short, default_value = "text")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// How often `--watch` reads the rotations again.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub fn status(args: &StatusArgs) -> ExitCode {
    match super::super::registry_args::runtime().and_then(|rt| rt.block_on(run(args))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("countersign rotation status: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let api: Api<KeyRotation> = Api::all(super::client().await?);
    let mut last = String::new();
    loop {
        let rotations = match &args.name {
            Some(name) => vec![
                api.get(name)
                    .await
                    .with_context(|| format!("KeyRotation {name}"))?,
            ],
            None => {
                api.list(&ListParams::default())
                    .await
                    .context("listing KeyRotations")?
                    .items
            }
        };
        let now = Timestamp::now();
        let shown = match args.output {
            Output::Json => json(&rotations, args.name.is_some())?,
            Output::Text => rotations
                .iter()
                .map(|r| render(r, now))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        // --watch prints a new picture only when something other than the clock changed.
        let without_clock = rotations
            .iter()
            .map(|r| format!("{:?}", r.status))
            .collect::<String>();
        if !args.watch {
            println!("{shown}");
            return Ok(());
        }
        if without_clock != last {
            println!("{shown}");
            last = without_clock;
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

fn json(rotations: &[KeyRotation], one: bool) -> anyhow::Result<String> {
    let values: Vec<serde_json::Value> = rotations
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name_any(),
                "spec": r.spec,
                "status": r.status,
            })
        })
        .collect();
    let value = match (one, values.as_slice()) {
        (true, [only]) => only.clone(),
        _ => serde_json::Value::Array(values),
    };
    serde_json::to_string_pretty(&value).context("printing")
}

/// One rotation as an SRE reads it.
pub fn render(r: &KeyRotation, now: Timestamp) -> String {
    let s = r.status.clone().unwrap_or_default();
    let phase = s.phase.map_or(
        "(not seen by the operator yet)",
        crate::rotation::status::phase_name,
    );
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} → {} on TrustRoot {} — {phase}",
        r.name_any(),
        r.spec.from_key,
        r.spec.to_key,
        r.spec.trust_root_ref
    );
    let _ = writeln!(out, "  window:   {}", window_line(&s, now));
    if let Some(p) = s.progress {
        let _ = writeln!(
            out,
            "  progress: {} {}/{} on {} ({} on {} only, {} on neither, {} unknown)",
            bar(p.on_new_key, p.workloads, 30),
            p.on_new_key,
            p.workloads,
            r.spec.to_key,
            p.on_old_key_only,
            r.spec.from_key,
            p.unverified,
            p.unknown
        );
    }
    if let Some(done) = &s.completed_at {
        let _ = writeln!(out, "  completed: {} ({} retired)", done.0, r.spec.from_key);
    }
    for c in s
        .conditions
        .iter()
        .filter(|c| c.type_ == "Valid" && c.status == "False")
    {
        let _ = writeln!(out, "  invalid:  {}: {}", c.reason, c.message);
    }
    if !s.stragglers.is_empty() {
        let _ = writeln!(out, "  stragglers:");
        for st in &s.stragglers {
            let _ = writeln!(
                out,
                "    {:<10} {}/{} ({}) {}{}",
                format!("{:?}", st.state),
                st.namespace,
                st.name,
                st.kind,
                st.image,
                st.digest.as_deref().map(|d| format!(" @{d}")).unwrap_or_default()
            );
        }
    }
    out.trim_end().to_string()
}

fn window_line(s: &KeyRotationStatus, now: Timestamp) -> String {
    let (Some(start), Some(end)) = (&s.window_start, &s.window_end) else {
        return "unknown".into();
    };
    let (start, end) = (start.0, end.0);
    let left = if now < start {
        format!("opens in {}", human(start.duration_since(now)))
    } else if now < end {
        format!("{} left", human(end.duration_since(now)))
    } else {
        format!("closed {} ago", human(now.duration_since(end)))
    };
    format!("{start} → {end} ({left})")
}

fn human(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86400, secs % 86400 / 3600),
    }
}

/// `[#########.........]`: `done` of `total`, `width` characters inside the brackets.
pub fn bar(done: i32, total: i32, width: usize) -> String {
    let filled = if total <= 0 {
        0
    } else {
        usize::try_from(i64::from(done.clamp(0, total)) * width as i64 / i64::from(total)).unwrap_or(0)
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_in_proportion() {
        assert_eq!(bar(0, 4, 8), "[........]");
        assert_eq!(bar(2, 4, 8), "[####....]");
        assert_eq!(bar(4, 4, 8), "[########]");
        assert_eq!(bar(3, 0, 4), "[....]");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(human(jiff::SignedDuration::from_secs(42)), "42s");
        assert_eq!(human(jiff::SignedDuration::from_secs(3 * 3600 + 120)), "3h02m");
        assert_eq!(human(jiff::SignedDuration::from_secs(2 * 86400 + 3600)), "2d01h");
    }
}
