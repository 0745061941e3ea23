//! The report's tables by window: registry requests by kind (from the registry's log), the
//! operator's own count of them, and the API server's requests.

use std::collections::BTreeMap;

use super::{phases::Phase, report::Report, requests::count_requests};

impl Report<'_> {
    pub fn print_registry_kinds(&self, cold: Option<&Phase>, warm: &[&Phase], drift: Option<&Phase>) {
        let n = self.prepared.deployments as f64;
        // name, requests by kind, subject digests, most requests naming one digest, sweeps
        type Column = (String, BTreeMap<String, usize>, usize, usize, f64);
        let mut columns: Vec<Column> = Vec::new();
        for p in cold.into_iter().chain(warm.iter().copied()).chain(drift) {
            let (kinds, digests, max) = count_requests(self.log_of(p));
            columns.push((p.name.clone(), kinds, digests, max, p.sweeps));
        }
        let mut kinds: Vec<&String> = columns.iter().flat_map(|c| c.1.keys()).collect();
        kinds.sort();
        kinds.dedup();
        println!("\n### Registry requests, from the registry's log (count, and per distinct digest)\n");
        let header: Vec<&str> = columns.iter().map(|c| c.0.as_str()).collect();
        println!("| request | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(columns.len()));
        for kind in kinds {
            let cells: Vec<String> = columns
                .iter()
                .map(|c| match c.1.get(kind) {
                    Some(&k) => format!("{k} ({:.2})", k as f64 / n),
                    None => "0".into(),
                })
                .collect();
            println!("| {kind} | {} |", cells.join(" | "));
        }
        let totals: Vec<String> = columns
            .iter()
            .map(|c| {
                let t: usize = c.1.values().sum();
                format!("**{t} ({:.2})**", t as f64 / n)
            })
            .collect();
        println!("| **all** | {} |", totals.join(" | "));
        let subjects: Vec<String> = columns.iter().map(|c| format!("{} / {}", c.2, c.3)).collect();
        println!(
            "| subject digests asked about / most requests naming one digest | {} |",
            subjects.join(" | ")
        );
        let sweeps: Vec<String> = columns.iter().map(|c| format!("{}", c.4)).collect();
        println!(
            "| sweeps the operator finished in the window | {} |",
            sweeps.join(" | ")
        );
    }

    pub fn print_client_requests(&self) {
        let phases = &self.measured.phases;
        let mut ops: Vec<&String> = phases.iter().flat_map(|p| p.client_requests.keys()).collect();
        ops.sort();
        ops.dedup();
        if ops.is_empty() {
            return;
        }
        println!(
            "\n### The operator's own count: `countersign_registry_requests_total` (operation, outcome)\n"
        );
        let header: Vec<&str> = phases.iter().map(|p| p.name.as_str()).collect();
        println!("| operation outcome | {} |", header.join(" | "));
        println!("|---|{}", "---|".repeat(phases.len()));
        for op in ops {
            let cells: Vec<String> = phases
                .iter()
                .map(|p| format!("{}", p.client_requests.get(op).copied().unwrap_or(0.0)))
                .collect();
            println!("| {op} | {} |", cells.join(" | "));
        }
    }

    pub fn print_apiserver(&self) {
        let (b0, b1) = &self.measured.baseline;
        let base_seconds = (b1.at - b0.at).as_secs_f64();
        let base_rate = (b1.total() - b0.total() - (b1.own - b0.own) as f64) / base_seconds;
        println!(
            "\n### API server requests (`apiserver_request_total`, whole cluster, minus this benchmark's own)\n"
        );
        println!("| window | seconds | requests | per second | above the baseline | biggest contributors |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| baseline, before the operator | {base_seconds:.1} | {:.0} | {base_rate:.1} | | |",
            b1.total() - b0.total() - (b1.own - b0.own) as f64
        );
        for p in self.measured.phases.iter().chain([&self.measured.knock_on]) {
            let total: f64 = p.apiserver.values().sum::<f64>() - p.apiserver_own as f64;
            let rate = total / p.apiserver_seconds;
            let mut top: Vec<(&String, &f64)> = p.apiserver.iter().collect();
            top.sort_by(|a, b| b.1.total_cmp(a.1));
            let top: Vec<String> = top.iter().take(4).map(|(k, v)| format!("{k} {v:.0}")).collect();
            println!(
                "| {} | {:.1} | {total:.0} | {rate:.1} | {:+.1}/s | {} |",
                p.name,
                p.apiserver_seconds,
                rate - base_rate,
                top.join(", ")
            );
        }
    }
}
