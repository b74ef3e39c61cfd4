//! CPU time from `/proc`: this thread, this process, other processes (replicas and
//! a PostgreSQL cluster), and the whole machine.

use std::path::Path;
use std::time::Duration;

fn first_field(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (ns) of this thread, and of the whole process, from `schedstat`.
pub fn self_ns() -> (Option<u64>, Option<u64>) {
    let thread = first_field(Path::new("/proc/thread-self/schedstat"));
    (thread, process_ns_at(Path::new("/proc/self")))
}

/// CPU time (ns) of process `pid`: the sum of its threads' `schedstat` (ns-precise,
/// unlike the tick-counted `stat`; a thread that has exited no longer counts, which
/// the servers' long-lived worker threads make negligible).
pub fn process_ns(pid: u32) -> Option<u64> {
    process_ns_at(&Path::new("/proc").join(pid.to_string()))
}

fn process_ns_at(proc_dir: &Path) -> Option<u64> {
    let dir = std::fs::read_dir(proc_dir.join("task")).ok()?;
    Some(
        dir.filter_map(|e| e.ok())
            .filter_map(|e| first_field(&e.path().join("schedstat")))
            .sum(),
    )
}

/// CPU time (ns) of process `root` and its direct children: a PostgreSQL postmaster
/// and its backends and workers (one process each). Children are looked up afresh
/// each time, since a pool may open connections during a run.
pub fn tree_ns(root: u32) -> Option<u64> {
    let mut total = process_ns(root)?;
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if parent_of(pid) == Some(root) {
            total += process_ns(pid).unwrap_or(0);
        }
    }
    Some(total)
}

/// The parent pid from `/proc/PID/stat` (the field after the parenthesised name and
/// the state; the name may itself hold spaces or parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Busy CPU time of the whole machine (ns), from the `cpu` line of `/proc/stat`:
/// user, nice, system, irq, softirq and steal, in USER_HZ (100 on Linux) ticks.
pub fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .map(|&i| f.get(i).copied().unwrap_or(0))
        .sum::<u64>();
    Some(busy.saturating_mul(10_000_000))
}

pub fn pct_of_core(used_ns: Option<u64>, window: Duration) -> Option<f64> {
    Some(used_ns? as f64 / window.as_nanos() as f64 * 100.0)
}

/// CPU per request, µs.
pub fn us_per_request(ns: Option<u64>, requests: u64) -> Option<f64> {
    let ns = ns?;
    (requests > 0).then(|| ns as f64 / 1000.0 / requests as f64)
}

/// Server CPU per request, µs, for servers in this process: process CPU minus the
/// load generator's.
pub fn server_us_per_request(
    client_ns: Option<u64>,
    process_ns: Option<u64>,
    requests: u64,
) -> Option<f64> {
    us_per_request(process_ns?.checked_sub(client_ns?), requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_its_parent_link() {
        let me = std::process::id();
        assert!(process_ns(me).is_some_and(|ns| ns > 0));
        let parent = parent_of(me).expect("a parent");
        assert!(parent > 0);
        // This process is a child of its parent: its tree counts at least as much.
        assert!(tree_ns(parent).is_some());
    }
}
