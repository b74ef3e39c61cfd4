//! Results: per-run figures, the paired report (best runs, ratios, goals) and its
//! text and JSON forms. What a comparison adds (a budget check, the tokens loaded…)
//! comes in as [`Section`]s, so the report knows no comparison by name.

use std::path::Path;

use anyhow::{Context, Result, anyhow, ensure};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::Mode;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: u32,
    pub p90: u32,
    pub p99: u32,
    pub max: u32,
    pub mean: f64,
}

impl Latency {
    /// Nearest-rank percentiles of sorted samples.
    pub fn from_sorted(sorted: &[u32]) -> Self {
        let rank = |p: f64| -> u32 {
            if sorted.is_empty() {
                return 0;
            }
            let idx = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            sorted
                .get(idx.saturating_sub(1).min(sorted.len() - 1))
                .copied()
                .unwrap_or(0)
        };
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / sorted.len() as f64
        };
        Latency {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted.last().copied().unwrap_or(0),
            mean,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub target: &'static str,
    pub round: usize,
    /// Seconds this target was loaded in the measured window (all of it when run
    /// alone; its share of the slices when interleaved).
    pub measured_s: f64,
    /// Successful responses completed in the measured window.
    pub requests: u64,
    /// Failed requests (warm-up included). Any makes the run invalid.
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// Targets that spend (`policy-spend`): answers that said allowed, each of which
    /// charged the budget, at any time (warm-up included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spends: Option<u64>,
    pub throughput_rps: f64,
    pub latency_us: Latency,
    /// CPU used by the load generator thread during the window, % of one core.
    pub client_cpu_pct_of_core: Option<f64>,
    /// CPU used by the whole process (servers + load generator), % of one core; with
    /// server processes, this process plus every server process watched.
    pub process_cpu_pct_of_core: Option<f64>,
    /// CPU used by everything else on the machine during the window (other processes,
    /// hypervisor steal), % of one core. High values mean the run was disturbed.
    pub others_cpu_pct_of_core: Option<f64>,
    /// Server CPU time per request, µs (process minus load generator, over the window;
    /// with server processes: the target's replicas plus, on PostgreSQL, the
    /// cluster's processes when known).
    pub server_cpu_us_per_request: Option<f64>,
    /// Targets on server processes: the CPU of each, and of the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessUse>,
}

/// The server processes behind a target, over the intervals it was active.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessUse {
    pub replicas: Vec<ReplicaUse>,
    /// The PostgreSQL cluster's processes (postmaster and its children), % of one
    /// core; `None` when not on PostgreSQL or the cluster is not the harness's own.
    pub db_cpu_pct_of_core: Option<f64>,
    pub db_cpu_us_per_request: Option<f64>,
}

/// One `bonafide serve` process behind a target.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaUse {
    pub addr: String,
    pub pid: Option<u32>,
    /// Requests it answered in the window.
    pub requests: u64,
    pub cpu_pct_of_core: Option<f64>,
    /// Its CPU over the requests it answered, µs.
    pub cpu_us_per_request: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.to_owned());
        Machine {
            cpus,
            cpu_model,
            kernel,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Settings {
    pub connections: usize,
    pub warmup_s: u64,
    pub seconds: u64,
    pub rounds: usize,
    pub schedule: String,
    pub server_runtime: String,
    pub client_runtime: String,
    pub selection: String,
    pub logging: String,
    /// The store's temporary data dir and its file system.
    pub data_dir: String,
    /// Whether the servers run in this process (else as `bonafide serve` processes).
    #[serde(skip)]
    pub in_process: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// `baseline` (Bonafide vs the one-verify endpoint), `compare-audit`,
    /// `compare-policy`… (the flag without its dashes).
    mode: Mode,
    /// The floor: `baseline`, `unaudited`, `no-policy`…
    baseline: &'static str,
    /// What is measured against it: `bonafide`, `audited`, `policy-spend`…
    subject: &'static str,
    date: String,
    command: String,
    machine: Machine,
    settings: Settings,
    pub runs: Vec<Run>,
    best_baseline: Run,
    best_subject: Run,
    /// Subject / baseline throughput, best runs.
    ratio: f64,
    /// Subject / baseline throughput within each round (paired in time).
    round_ratios: Vec<f64>,
    /// Median of `round_ratios`.
    median_round_ratio: f64,
    /// Baseline / subject server CPU per request, best runs: the throughput ratio if
    /// server CPU were the only limit. Less sensitive to other load on the machine.
    cpu_per_request_ratio: Option<f64>,
    /// `compare-issuer-signed`: the cost of the subject relative to the baseline,
    /// baseline / subject throughput, best runs (1 / `ratio`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_ratio: Option<f64>,
    /// `compare-issuer-signed`: baseline / subject throughput within each round.
    #[serde(skip_serializing_if = "Option::is_none")]
    round_cost_ratios: Option<Vec<f64>>,
    /// `compare-issuer-signed`: median of `round_cost_ratios`.
    #[serde(skip_serializing_if = "Option::is_none")]
    median_round_cost_ratio: Option<f64>,
    /// `compare-issuer-signed`: subject / baseline server CPU per request, best runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_cost_ratio: Option<f64>,
    /// `compare-issuer-signed`: subject / baseline server CPU per request within each
    /// round.
    #[serde(skip_serializing_if = "Option::is_none")]
    round_cpu_cost_ratios: Option<Vec<f64>>,
    /// `compare-issuer-signed`: median of `round_cpu_cost_ratios`.
    #[serde(skip_serializing_if = "Option::is_none")]
    median_round_cpu_cost_ratio: Option<f64>,
    /// What `goal` bounds: `ratio` (at least `goal`) or, for `compare-issuer-signed`,
    /// `cost_ratio` (at most `goal`).
    goal_on: &'static str,
    /// The goal: `ratio` ≥ this, or `cost_ratio` ≤ this (see `goal_on`).
    goal: f64,
    goal_met: bool,
    /// Latency goal (`compare-audit`): the subject's p99 at most this in every run.
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_goal_us: Option<u32>,
    /// The subject's highest p99 over its runs.
    worst_subject_p99_us: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    p99_goal_met: Option<bool>,
    /// The baseline's highest p99 over its runs (`compare-policy`, which records both).
    #[serde(skip_serializing_if = "Option::is_none")]
    worst_baseline_p99_us: Option<u32>,
    /// What the comparison adds (`budget`, `tokens`, `actions`, `database`,
    /// `cap_burst`…), each under its own member.
    #[serde(flatten)]
    sections: Members,
    /// Lines printed after the `requests:` line, from the sections.
    #[serde(skip)]
    header: Vec<String>,
    /// Lines printed at the end, from the sections.
    #[serde(skip)]
    footer: Vec<String>,
    /// Why a section's check failed (fails the run after printing).
    #[serde(skip)]
    pub failures: Vec<String>,
    /// The `requests:` line.
    #[serde(skip)]
    requests: String,
    #[serde(skip)]
    title: &'static str,
}

/// What a comparison's goal bounds.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// subject / baseline throughput at least this.
    AtLeast(f64),
    /// The subject's cost, baseline / subject throughput, at most this.
    CostAtMost(f64),
    /// None: the figures are recorded.
    None,
}

/// A paired comparison: its targets' names, what is printed about it, its goals.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The floor, and what is measured against it.
    pub baseline: &'static str,
    pub subject: &'static str,
    /// The report's first line, after "Bonafide load harness: ".
    pub title: &'static str,
    pub goal: Goal,
    /// The subject's p99 at most this in every run, µs.
    pub p99_goal_us: Option<u32>,
    /// Whether the baseline's p99 is recorded beside the subject's.
    pub record_baseline_p99: bool,
    /// Latency goal against the disk (`--compare-audit`): subject − baseline p50 and
    /// p99 at most this × the fsync loop's p50 and p99 (`fsync`), measured in the same
    /// run; the loop runs by default when set.
    pub fsync_latency_factor: Option<f64>,
}

/// JSON members in the order they were added, each value encoded already (in its
/// own struct's member order, as the report had before sections existed).
#[derive(Debug, Default)]
struct Members(Vec<(&'static str, Box<RawValue>)>);

impl Serialize for Members {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Something a comparison adds to the report.
#[derive(Debug, Default)]
pub struct Section {
    /// The JSON report's member, and its value; `None`: none.
    pub json: Option<(&'static str, Box<RawValue>)>,
    /// Printed after the `requests:` line.
    pub header: Vec<String>,
    /// Printed at the end.
    pub footer: Vec<String>,
    /// Set when the section's check failed: the run fails with it, after printing.
    pub failure: Option<String>,
}

impl Section {
    /// A JSON member only.
    pub fn json(key: &'static str, value: impl Serialize) -> Result<Self> {
        let value = serde_json::value::to_raw_value(&value)
            .with_context(|| format!("encoding the report's `{key}`"))?;
        Ok(Section {
            json: Some((key, value)),
            ..Section::default()
        })
    }
}

/// CPU used by the rest of the machine above which a run is flagged as disturbed.
const DISTURBED_PCT: f64 = 20.0;

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Mode,
        spec: Spec,
        date: String,
        command: String,
        machine: Machine,
        settings: Settings,
        runs: Vec<Run>,
        requests: String,
        sections: Vec<Section>,
    ) -> Result<Self> {
        let best = |name: &str| -> Result<Run> {
            runs.iter()
                .filter(|r| r.target == name)
                .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
                .cloned()
                .ok_or_else(|| anyhow!("no {name} run"))
        };
        let (baseline, subject) = (spec.baseline, spec.subject);
        let best_baseline = best(baseline)?;
        let best_subject = best(subject)?;
        ensure!(
            best_baseline.throughput_rps > 0.0,
            "the {baseline} target completed no requests"
        );
        let ratio = best_subject.throughput_rps / best_baseline.throughput_rps;
        // Per round: (baseline, subject) throughput and server CPU per request.
        let mut paired = Vec::new();
        for round in 1..=settings.rounds {
            let get = |name: &str| runs.iter().find(|r| r.round == round && r.target == name);
            if let (Some(b), Some(f)) = (get(baseline), get(subject)) {
                paired.push((b, f));
            }
        }
        let round_ratios: Vec<f64> = paired
            .iter()
            .filter(|(b, _)| b.throughput_rps > 0.0)
            .map(|(b, f)| f.throughput_rps / b.throughput_rps)
            .collect();
        let median_round_ratio = median(&round_ratios).unwrap_or(ratio);
        let cpu_per_request_ratio = best_baseline
            .server_cpu_us_per_request
            .zip(best_subject.server_cpu_us_per_request)
            .map(|(b, f)| b / f);
        let on_cost = matches!(spec.goal, Goal::CostAtMost(_));
        let cost_ratio =
            on_cost.then(|| best_baseline.throughput_rps / best_subject.throughput_rps);
        let round_cost_ratios: Option<Vec<f64>> = on_cost.then(|| {
            paired
                .iter()
                .filter(|(_, f)| f.throughput_rps > 0.0)
                .map(|(b, f)| b.throughput_rps / f.throughput_rps)
                .collect()
        });
        let median_round_cost_ratio = round_cost_ratios.as_deref().and_then(median);
        let cpu_cost_ratio = cpu_per_request_ratio.filter(|_| on_cost).map(|r| 1.0 / r);
        let round_cpu_cost_ratios: Option<Vec<f64>> = on_cost.then(|| {
            paired
                .iter()
                .filter_map(|(b, f)| {
                    let (b, f) = b
                        .server_cpu_us_per_request
                        .zip(f.server_cpu_us_per_request)?;
                    (b > 0.0).then(|| f / b)
                })
                .collect()
        });
        let median_round_cpu_cost_ratio = round_cpu_cost_ratios.as_deref().and_then(median);
        let (goal_on, goal, goal_met) = match spec.goal {
            Goal::CostAtMost(g) => ("cost_ratio", g, cost_ratio.is_some_and(|c| c <= g)),
            Goal::None => ("none", 0.0, true),
            Goal::AtLeast(g) => ("ratio", g, ratio >= g),
        };
        let worst_subject_p99_us = runs
            .iter()
            .filter(|r| r.target == subject)
            .map(|r| r.latency_us.p99)
            .max()
            .unwrap_or(0);
        let worst_baseline_p99_us = spec.record_baseline_p99.then(|| {
            runs.iter()
                .filter(|r| r.target == baseline)
                .map(|r| r.latency_us.p99)
                .max()
                .unwrap_or(0)
        });
        let p99_goal_us = spec.p99_goal_us;
        let mut members = Members::default();
        let (mut header, mut footer, mut failures) = (Vec::new(), Vec::new(), Vec::new());
        for section in sections {
            members.0.extend(section.json);
            header.extend(section.header);
            footer.extend(section.footer);
            failures.extend(section.failure);
        }
        Ok(Report {
            mode,
            baseline,
            subject,
            date,
            command,
            machine,
            settings,
            runs,
            best_baseline,
            best_subject,
            ratio,
            round_ratios,
            median_round_ratio,
            cpu_per_request_ratio,
            cost_ratio,
            round_cost_ratios,
            median_round_cost_ratio,
            cpu_cost_ratio,
            round_cpu_cost_ratios,
            median_round_cpu_cost_ratio,
            goal_on,
            goal,
            goal_met,
            p99_goal_us,
            worst_subject_p99_us,
            p99_goal_met: p99_goal_us.map(|g| worst_subject_p99_us <= g),
            worst_baseline_p99_us,
            sections: members,
            header,
            footer,
            failures,
            requests,
            title: spec.title,
        })
    }

    pub fn print(&self) {
        let s = &self.settings;
        let (baseline, subject) = (self.baseline, self.subject);
        println!();
        println!("Bonafide load harness: {}", self.title);
        println!("date:     {}", self.date);
        println!("command:  {}", self.command);
        println!(
            "machine:  {} CPUs, {}, {}",
            self.machine.cpus, self.machine.cpu_model, self.machine.kernel
        );
        if s.in_process {
            println!("servers:  {} (all servers, same process)", s.server_runtime);
        } else {
            println!("servers:  {}", s.server_runtime);
        }
        println!("client:   {}", s.client_runtime);
        println!(
            "load:     {} connections per target, {} s warm-up + {} s measured, {} round(s); {}",
            s.connections, s.warmup_s, s.seconds, s.rounds, s.selection
        );
        println!("schedule: {}", s.schedule);
        println!("logging:  {}", s.logging);
        println!("data dir: {}", s.data_dir);
        println!("requests: {}", self.requests);
        for line in &self.header {
            println!("{line}");
        }
        // Target column: 9 wide, or the longest name (`policy-spend`).
        let w = self
            .runs
            .iter()
            .map(|r| r.target.chars().count())
            .max()
            .unwrap_or(0)
            .max(9);
        println!();
        println!(
            "{:>5}  {:<w$}  {:>9}  {:>10}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8}  {:>6}  {:>6}  {:>6}  {:>10}",
            "round",
            "target",
            "requests",
            "req/s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "max µs",
            "mean µs",
            "client",
            "total",
            "others",
            "srv µs/req"
        );
        for r in &self.runs {
            println!(
                "{:>5}  {:<w$}  {:>9}  {:>10.0}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8.1}  {:>6}  {:>6}  {:>6}  {:>10}{}",
                r.round,
                r.target,
                r.requests,
                r.throughput_rps,
                r.latency_us.p50,
                r.latency_us.p90,
                r.latency_us.p99,
                r.latency_us.max,
                r.latency_us.mean,
                pct(r.client_cpu_pct_of_core),
                pct(r.process_cpu_pct_of_core),
                pct(r.others_cpu_pct_of_core),
                r.server_cpu_us_per_request
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
                if r.errors > 0 {
                    format!("  ERRORS: {}", r.errors)
                } else {
                    String::new()
                }
            );
            if let Some(p) = &r.processes {
                println!("{:>5}  {:<w$}  {}", "", "", processes_line(p));
            }
        }
        if s.in_process {
            println!(
                "(client / total / others: CPU of the load-generator thread / this whole process / \
                 everything else on the machine, % of one core;\n srv µs/req: server CPU per \
                 request = (total - client) / requests)"
            );
        } else {
            println!(
                "(client / total / others: CPU of the load-generator thread / this process and \
                 every server process (replicas, PostgreSQL) / everything else on the machine, % \
                 of one core;\n srv µs/req: CPU of the target's replicas, plus PostgreSQL's for a \
                 target on it, per request; per replica: its CPU over the requests it answered)"
            );
        }
        let disturbed: Vec<String> = self
            .runs
            .iter()
            .filter(|r| r.others_cpu_pct_of_core.is_some_and(|p| p > DISTURBED_PCT))
            .map(|r| format!("{} round {}", r.target, r.round))
            .collect();
        if !disturbed.is_empty() {
            println!(
                "WARNING: other load on the machine (> {DISTURBED_PCT:.0}% of a core) during: {}; \
                 their throughput is understated. Re-run on a quiet machine, or compare srv µs/req.",
                disturbed.join(", ")
            );
        }
        println!();
        let mut names: Vec<&str> = Vec::new();
        for r in &self.runs {
            if !names.contains(&r.target) {
                names.push(r.target);
            }
        }
        for name in names {
            let best = self
                .runs
                .iter()
                .filter(|r| r.target == name)
                .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
            if let Some(r) = best {
                println!(
                    "{name:<w$} (best, round {}): {:>6.0} req/s, p50 {} µs, p99 {} µs, \
                     server CPU {} µs/request",
                    r.round,
                    r.throughput_rps,
                    r.latency_us.p50,
                    r.latency_us.p99,
                    r.server_cpu_us_per_request
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
                );
            }
        }
        let verdict = if self.goal_met { "met" } else { "NOT met" };
        if let Some(cost) = self.cost_ratio {
            println!(
                "ratio {subject}/{baseline} throughput: {:.3}×  (within each round: {}; median \
                 {:.3}×)",
                self.ratio,
                ratios(&self.round_ratios),
                self.median_round_ratio
            );
            println!(
                "cost of {subject} = {baseline}/{subject} throughput: {cost:.3}×  (goal ≤ {:.2}×: \
                 {verdict})",
                self.goal
            );
            if let (Some(rounds), Some(med)) =
                (&self.round_cost_ratios, self.median_round_cost_ratio)
            {
                println!(
                    "cost within each round: {}  (median {med:.3}×)",
                    ratios(rounds)
                );
            }
            if let Some(c) = self.cpu_cost_ratio {
                let per_round = match (
                    &self.round_cpu_cost_ratios,
                    self.median_round_cpu_cost_ratio,
                ) {
                    (Some(r), Some(m)) => {
                        format!("; within each round: {} (median {m:.3}×)", ratios(r))
                    }
                    _ => String::new(),
                };
                println!(
                    "server CPU per request, {subject}/{baseline}: {c:.3}× best runs{per_round}"
                );
            }
        } else if self.goal_on == "none" {
            println!(
                "ratio {subject}/{baseline} throughput: {:.3}×  (best runs; no goal)",
                self.ratio
            );
            println!(
                "ratio within each round: {}  (median {:.3}×)",
                ratios(&self.round_ratios),
                self.median_round_ratio
            );
            if let Some(r) = self.cpu_per_request_ratio {
                println!(
                    "server CPU per request, {baseline}/{subject}: {r:.3}×  (the throughput ratio \
                     if server CPU were the only limit)"
                );
            }
        } else {
            println!(
                "ratio {subject}/{baseline} throughput: {:.3}×  (goal ≥ {}×: {verdict})",
                self.ratio, self.goal,
            );
            println!(
                "ratio within each round: {}  (median {:.3}×)",
                ratios(&self.round_ratios),
                self.median_round_ratio
            );
            if let Some(r) = self.cpu_per_request_ratio {
                println!(
                    "server CPU per request, {baseline}/{subject}: {r:.3}×  (the throughput ratio \
                     if server CPU were the only limit)"
                );
            }
        }
        let (b, f) = (
            &self.best_baseline.latency_us,
            &self.best_subject.latency_us,
        );
        println!(
            "latency {subject}/{baseline}, best runs: p50 {:.2}×, p99 {:.2}×",
            f64::from(f.p50) / f64::from(b.p50.max(1)),
            f64::from(f.p99) / f64::from(b.p99.max(1))
        );
        if let (Some(goal), Some(met)) = (self.p99_goal_us, self.p99_goal_met) {
            println!(
                "{subject} p99, worst run: {} µs  (goal ≤ {goal} µs in every run: {})",
                self.worst_subject_p99_us,
                if met { "met" } else { "NOT met" }
            );
        }
        if let Some(worst_baseline) = self.worst_baseline_p99_us {
            println!(
                "p99 (recorded, no goal): {baseline} {} µs best run, {worst_baseline} µs worst \
                 run; {subject} {} µs best run, {} µs worst run",
                b.p99, f.p99, self.worst_subject_p99_us
            );
        }
        for line in &self.footer {
            println!("{line}");
        }
    }
}

/// The per-process line under a run on server processes.
fn processes_line(p: &ProcessUse) -> String {
    let mut parts: Vec<String> = p
        .replicas
        .iter()
        .map(|r| {
            format!(
                "{} (pid {}): {} req, {} of a core, {} µs/req",
                r.addr,
                r.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                r.requests,
                pct(r.cpu_pct_of_core),
                r.cpu_us_per_request
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
            )
        })
        .collect();
    if p.db_cpu_pct_of_core.is_some() {
        parts.push(format!(
            "PostgreSQL: {} of a core, {} µs/req",
            pct(p.db_cpu_pct_of_core),
            p.db_cpu_us_per_request
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
        ));
    }
    format!("└ {}", parts.join("; "))
}

/// Median of `values` (mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let hi = sorted.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((sorted.get(n / 2 - 1).copied()? + hi) / 2.0)
    }
}

fn ratios(values: &[f64]) -> String {
    values
        .iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |p| format!("{p:.0}%"))
}

pub fn write_json(path: &Path, report: &Report) -> Result<()> {
    let mut text = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The command line as run, shell-quoted where needed.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The file system `path` is on, from the longest matching mount point in
/// `/proc/self/mounts`: `ext4 (/dev/vda on /)`.
pub fn file_system(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .filter(|(_, mount, _)| path.starts_with(mount))
        .max_by_key(|(_, mount, _)| mount.len())
        .map_or_else(
            || "file system unknown".to_owned(),
            |(device, mount, fs)| format!("{fs}, {device} on {mount}"),
        )
}
