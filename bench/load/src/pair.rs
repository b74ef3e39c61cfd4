//! The paired comparisons' one flow: set up (the mode's module), load every target
//! for `--rounds` rounds (alone or interleaved), run the mode's checks while its
//! servers still run, stop them, report.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::load::{self, Target, Watched};
use crate::report::{self, Machine, Report, Run, Section, Settings, Spec};
use crate::setup::Servers;
use crate::{Args, Mode, fsync, modes};

/// A check run after the load while the servers still run (only after a completed
/// load: otherwise its counts mean nothing); what it found goes into the report.
pub type AfterLoad =
    Box<dyn FnOnce(Vec<Run>) -> Pin<Box<dyn Future<Output = Result<Section>> + Send>> + Send>;

/// What a comparison's setup hands to the common flow.
pub struct Bench {
    pub spec: Spec,
    /// In the order they are loaded each round; the spec's baseline and subject among
    /// them.
    pub targets: Vec<Target>,
    pub servers: Servers,
    /// The report's `requests:` line: what is sent and what each answer must say.
    pub requests: String,
    /// Report sections known once set up.
    pub sections: Vec<Section>,
    pub after: Vec<AfterLoad>,
    /// The PostgreSQL postmaster whose processes' CPU is measured, when known.
    pub db_root: Option<u32>,
    /// The `servers:` line for server processes; `None`: in this process.
    pub processes: Option<String>,
}

impl Bench {
    /// A comparison with nothing but targets.
    pub fn new(spec: Spec, targets: Vec<Target>, servers: Servers, requests: String) -> Self {
        Bench {
            spec,
            targets,
            servers,
            requests,
            sections: Vec::new(),
            after: Vec::new(),
            db_root: None,
            processes: None,
        }
    }
}

/// What a mode's setup may need beyond the arguments.
pub struct Ctx<'a> {
    pub args: &'a Args,
    pub connections: usize,
}

pub fn run(mode: Mode, args: &Args, connections: usize) -> Result<()> {
    let command = report::command_line();
    let date = bonafide_server::time::rfc3339_s(bonafide_server::time::now_ms() / 1000);
    let machine = Machine::read();

    // Servers: one multi-thread runtime, default worker count (= CPUs).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("server")
        .build()
        .context("building the server runtime")?;
    let server_workers = server_rt.metrics().num_workers();
    let ctx = Ctx { args, connections };
    let Bench {
        spec,
        targets,
        servers,
        requests,
        mut sections,
        after,
        db_root,
        processes,
    } = server_rt.block_on(modes::setup(mode, &ctx))?;
    let data_dir = servers.data_dir();
    let watched = Watched::new(&targets, db_root);

    // The disk's own fsync latency, before the load (servers set up and idle).
    let fsync_samples = args
        .fsync_samples
        .unwrap_or(if spec.fsync_latency_factor.is_some() {
            500
        } else {
            0
        });
    let fsync_dir = args.data_dir.clone().unwrap_or_else(std::env::temp_dir);
    let fsync_before = if fsync_samples > 0 {
        eprintln!(
            "fsync: {fsync_samples} × 4 KiB append + fdatasync in {} (before the load)…",
            fsync_dir.display()
        );
        Some(fsync::measure(&fsync_dir, fsync_samples)?)
    } else {
        None
    };

    // Load generator: a single-threaded runtime on this thread.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the client runtime")?;
    let warmup = Duration::from_secs(args.warmup);
    let window = Duration::from_secs(args.seconds);
    let mut runs = Vec::new();
    let slice = Duration::from_millis(args.slice_ms);
    let load: Result<()> = client_rt.block_on(async {
        for round in 1..=args.rounds {
            let groups: Vec<&[Target]> = if args.interleave {
                vec![&targets[..]]
            } else {
                targets.chunks(1).collect()
            };
            for group in groups {
                let names: Vec<&str> = group.iter().map(|t| t.name).collect();
                eprintln!(
                    "round {round}/{}: {} ({} connections each, {}s warm-up + {}s{})…",
                    args.rounds,
                    names.join(" + "),
                    connections,
                    args.warmup,
                    args.seconds,
                    if group.len() > 1 {
                        format!(", interleaved in {} ms slices", args.slice_ms)
                    } else {
                        String::new()
                    }
                );
                let group_runs =
                    load::run_group(group, round, connections, warmup, window, slice, &watched)
                        .await?;
                for r in group_runs {
                    eprintln!(
                        "  {}: {:.0} req/s, p50 {} µs, p99 {} µs, errors {}",
                        r.target, r.throughput_rps, r.latency_us.p50, r.latency_us.p99, r.errors
                    );
                    runs.push(r);
                }
            }
        }
        Ok(())
    });
    drop(client_rt);
    // The mode's checks, while the servers still run.
    let mut checked = Ok(());
    if load.is_ok() {
        for check in after {
            match server_rt.block_on(check(runs.clone())) {
                Ok(section) => sections.push(section),
                Err(e) => {
                    checked = Err(e);
                    break;
                }
            }
        }
    }
    // Stop the servers whatever happened to the load.
    let stopped = server_rt.block_on(servers.stop());
    load?;
    checked?;
    stopped?;
    // And the disk's fsync latency again, with the servers stopped.
    if let Some(before) = fsync_before {
        eprintln!("fsync: again, after the load…");
        let after = fsync::measure(&fsync_dir, fsync_samples)?;
        let all: Vec<u32> = before.iter().chain(&after).copied().collect();
        let all_us = fsync::latency(&all);
        let checks = spec
            .fsync_latency_factor
            .map(|factor| fsync::checks(&runs, spec.baseline, spec.subject, &all_us, factor))
            .unwrap_or_default();
        let measured = fsync::Fsync {
            dir: format!(
                "{} ({})",
                fsync_dir.display(),
                report::file_system(&fsync_dir)
            ),
            method: fsync::METHOD,
            block_bytes: fsync::BLOCK,
            iterations: fsync_samples,
            before_us: fsync::latency(&before),
            after_us: fsync::latency(&after),
            all_us,
            checks,
        };
        sections.push(fsync::section(measured, spec.subject, spec.baseline)?);
    }

    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    let settings = Settings {
        connections,
        warmup_s: args.warmup,
        seconds: args.seconds,
        rounds: args.rounds,
        schedule: if args.interleave {
            format!(
                "interleaved: each round opens every target's connections at once and lets one \
                 target send at a time ({}), switching every {} ms through warm-up and window; \
                 throughput is over each target's share of the window",
                names.join(", "),
                args.slice_ms
            )
        } else {
            format!(
                "sequential: each round loads {} one after the other, each alone with fresh \
                 connections and its own warm-up",
                names.join(", then ")
            )
        },
        in_process: processes.is_none(),
        server_runtime: processes
            .unwrap_or_else(|| format!("tokio multi-thread, {server_workers} workers")),
        client_runtime: "tokio current-thread (1 thread), hyper 1 HTTP/1.1 client connection \
                         per task, closed loop"
            .to_owned(),
        selection: "best throughput of each target over the rounds".to_owned(),
        logging: if mode.uses_postgres() {
            "replicas run with RUST_LOG=warn, so their per-request access log (info) is off"
                .to_owned()
        } else {
            "off: no tracing subscriber installed, so the server's access-log `tracing::info!` \
             callsites are disabled"
                .to_owned()
        },
        data_dir,
    };
    let report = Report::new(
        mode, spec, date, command, machine, settings, runs, requests, sections,
    )?;
    report.print();
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
        println!("\nJSON written to {}", path.display());
    }
    let errors: u64 = report.runs.iter().map(|r| r.errors).sum();
    if errors > 0 {
        let first = report
            .runs
            .iter()
            .find_map(|r| r.first_error.clone())
            .unwrap_or_default();
        bail!("{errors} failed requests (first: {first}); the figures above are not valid");
    }
    if let Some(failure) = report.failures.first() {
        bail!("{failure}");
    }
    Ok(())
}
