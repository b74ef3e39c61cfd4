//! The disk's own durable-write latency, measured by the harness in the same run as
//! the load: a loop of 4 KiB appends, each followed by `fdatasync`
//! (`File::sync_data`), on a file under `--data-dir` (the store's disk), before and
//! after the load. An audited answer waits for a durable commit, so its latency over
//! the unaudited answer is judged against this floor (`--compare-audit`'s latency
//! goal, issue 17): the figure moves with the disk and with whatever else writes to
//! it, so it is only meaningful measured beside the load it bounds.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::report::{self, Latency, Run, Section};

/// Bytes written before each sync: one page, as a small commit writes.
pub const BLOCK: usize = 4096;

/// What one loop does, for the report.
pub const METHOD: &str = "write 4 KiB at the end of a file, then fdatasync (File::sync_data), \
                          timed together; the file grows, as a WAL does between checkpoints";

/// `iterations` timed appends + fdatasync on a fresh file in `dir` (removed after),
/// after one untimed one (the file's creation). Each sample in µs, in order.
pub fn measure(dir: &Path, iterations: usize) -> Result<Vec<u32>> {
    let mut file = tempfile::Builder::new()
        .prefix(".bonafide-load-fsync-")
        .tempfile_in(dir)
        .with_context(|| format!("creating the fsync file in {}", dir.display()))?;
    let block = [0x5a_u8; BLOCK];
    let f = file.as_file_mut();
    let mut append = || -> Result<()> {
        f.write_all(&block).context("writing the fsync file")?;
        f.sync_data().context("fdatasync of the fsync file")
    };
    append()?;
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        append()?;
        samples.push(u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX));
    }
    file.close().context("removing the fsync file")?;
    Ok(samples)
}

/// Percentiles of samples in any order.
pub fn latency(samples: &[u32]) -> Latency {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    Latency::from_sorted(&sorted)
}

/// The fsync loop's figures as reported: before and after the load, and both
/// together (what the latency checks use).
#[derive(Debug, Serialize)]
pub struct Fsync {
    /// The directory the file was in, and its file system.
    pub dir: String,
    pub method: &'static str,
    pub block_bytes: usize,
    /// Timed appends per measurement.
    pub iterations: usize,
    pub before_us: Latency,
    /// After the load, with the servers stopped.
    pub after_us: Latency,
    /// Before and after together.
    pub all_us: Latency,
    /// The comparison's latency goal against these figures, when it has one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<LatencyCheck>,
}

/// One latency goal: the subject's percentile over the baseline's at most `factor` ×
/// the disk's fsync at the same percentile.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyCheck {
    /// `p50` or `p99`.
    pub percentile: &'static str,
    pub factor: f64,
    /// The fsync loop's percentile (before and after together), µs.
    pub fsync_us: u32,
    /// `factor` × `fsync_us`.
    pub bound_us: f64,
    /// Subject − baseline within each round (paired in time), µs.
    pub round_deltas_us: Vec<i64>,
    /// Median of `round_deltas_us`: what the goal is judged on.
    pub median_delta_us: f64,
    /// Subject − baseline of the best runs (highest throughput of each), µs.
    pub best_runs_delta_us: i64,
    pub met: bool,
}

/// The two checks (p50, p99) of `subject` against `baseline` over `runs`, bounded by
/// `factor` × the fsync percentiles in `fsync`. Rounds missing either target are
/// skipped; with no paired round the check is not met.
pub fn checks(
    runs: &[Run],
    baseline: &str,
    subject: &str,
    fsync: &Latency,
    factor: f64,
) -> Vec<LatencyCheck> {
    let pick = |l: &Latency, p: &str| if p == "p50" { l.p50 } else { l.p99 };
    let best = |name: &str| {
        runs.iter()
            .filter(|r| r.target == name)
            .max_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps))
    };
    let paired: Vec<(&Run, &Run)> = runs
        .iter()
        .filter(|r| r.target == baseline)
        .filter_map(|b| {
            runs.iter()
                .find(|s| s.target == subject && s.round == b.round)
                .map(|s| (b, s))
        })
        .collect();
    ["p50", "p99"]
        .into_iter()
        .map(|p| {
            let delta = |b: &Run, s: &Run| {
                i64::from(pick(&s.latency_us, p)) - i64::from(pick(&b.latency_us, p))
            };
            let round_deltas_us: Vec<i64> = paired.iter().map(|(b, s)| delta(b, s)).collect();
            let as_f64: Vec<f64> = round_deltas_us.iter().map(|&d| d as f64).collect();
            let median_delta_us = report::median(&as_f64).unwrap_or(f64::NAN);
            let fsync_us = pick(fsync, p);
            let bound_us = factor * f64::from(fsync_us);
            LatencyCheck {
                percentile: p,
                factor,
                fsync_us,
                bound_us,
                best_runs_delta_us: best(baseline)
                    .zip(best(subject))
                    .map_or(0, |(b, s)| delta(b, s)),
                met: median_delta_us <= bound_us,
                round_deltas_us,
                median_delta_us,
            }
        })
        .collect()
}

/// The report's `fsync` section: the figures in the header, the checks at the end.
pub fn section(fsync: Fsync, subject: &str, baseline: &str) -> Result<Section> {
    let line = |l: &Latency| {
        format!(
            "p50 {} µs, p90 {} µs, p99 {} µs, max {} µs, mean {:.0} µs",
            l.p50, l.p90, l.p99, l.max, l.mean
        )
    };
    let mut header = vec![
        format!(
            "fsync:    {} × ({}) in {}",
            fsync.iterations, METHOD, fsync.dir
        ),
        format!("  before the load: {}", line(&fsync.before_us)),
    ];
    header.push(format!("  after the load:  {}", line(&fsync.after_us)));
    header.push(format!("  both:            {}", line(&fsync.all_us)));
    let footer = fsync
        .checks
        .iter()
        .map(|c| {
            let rounds: Vec<String> = c.round_deltas_us.iter().map(|d| format!("{d:+}")).collect();
            format!(
                "latency {subject} − {baseline} {}: {:+.0} µs median of rounds ({} µs; best runs \
                 {:+} µs)  (goal ≤ {:.0}× the disk's fsync {} = {:.0} µs: {})",
                c.percentile,
                c.median_delta_us,
                rounds.join(", "),
                c.best_runs_delta_us,
                c.factor,
                c.percentile,
                c.bound_us,
                if c.met { "met" } else { "NOT met" }
            )
        })
        .collect();
    Ok(Section {
        header,
        footer,
        ..Section::json("fsync", &fsync)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &'static str, round: usize, rps: f64, p50: u32, p99: u32) -> Run {
        Run {
            target,
            round,
            measured_s: 1.0,
            requests: 1,
            errors: 0,
            first_error: None,
            spends: None,
            throughput_rps: rps,
            latency_us: Latency {
                p50,
                p90: p50,
                p99,
                max: p99,
                mean: f64::from(p50),
            },
            client_cpu_pct_of_core: None,
            process_cpu_pct_of_core: None,
            others_cpu_pct_of_core: None,
            server_cpu_us_per_request: None,
            processes: None,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank_of_any_order() {
        let samples: Vec<u32> = (1..=200).rev().collect();
        let l = latency(&samples);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (100, 180, 198, 200));
        assert!((l.mean - 100.5).abs() < 1e-9);
        let one = latency(&[7]);
        assert_eq!((one.p50, one.p99, one.max), (7, 7, 7));
        let none = latency(&[]);
        assert_eq!((none.p50, none.p99, none.max), (0, 0, 0));
    }

    #[test]
    fn checks_pair_rounds_and_judge_the_median() {
        let runs = vec![
            run("unaudited", 1, 100.0, 1_000, 5_000),
            run("audited", 1, 90.0, 2_000, 9_000),
            run("unaudited", 2, 120.0, 1_000, 5_000),
            run("audited", 2, 80.0, 1_500, 20_000),
            run("unaudited", 3, 110.0, 1_000, 5_000),
            run("audited", 3, 95.0, 2_600, 8_000),
        ];
        let fsync = latency(&[500; 10]);
        let c = checks(&runs, "unaudited", "audited", &fsync, 3.0);
        assert_eq!(c.len(), 2);
        let (p50, p99) = (&c[0], &c[1]);
        assert_eq!(p50.percentile, "p50");
        assert_eq!(p50.round_deltas_us, vec![1_000, 500, 1_600]);
        assert_eq!(p50.median_delta_us, 1_000.0);
        assert_eq!(p50.bound_us, 1_500.0);
        assert!(p50.met);
        // Best runs: unaudited round 2 (120 req/s), audited round 3 (95 req/s).
        assert_eq!(p50.best_runs_delta_us, 1_600);
        assert_eq!(p99.round_deltas_us, vec![4_000, 15_000, 3_000]);
        assert_eq!(p99.median_delta_us, 4_000.0);
        assert!(!p99.met, "4,000 µs > 3 × 500 µs");
    }

    #[test]
    fn checks_without_a_paired_round_are_not_met() {
        let runs = vec![run("unaudited", 1, 100.0, 1_000, 5_000)];
        let c = checks(&runs, "unaudited", "audited", &latency(&[500]), 3.0);
        assert!(c.iter().all(|c| !c.met && c.round_deltas_us.is_empty()));
    }

    #[test]
    fn measures_and_removes_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let samples = measure(dir.path(), 5).expect("fsync loop");
        assert_eq!(samples.len(), 5);
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
