//! The replica modes' servers: a PostgreSQL server (an existing one named by
//! `--database-url`, or a throwaway cluster started with `scripts/pg-test-cluster`)
//! with a fresh database per run, and `bonafide serve` processes on it.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use sqlx::Connection;

use crate::report;
use crate::setup::PUBLIC_URL;

/// The script that starts a throwaway cluster (the tests' own).
const CLUSTER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/pg-test-cluster");

/// A cluster this harness started: stopped (and its dir removed) at the end.
#[derive(Debug)]
struct OwnCluster {
    dir: PathBuf,
    stopped: bool,
}

impl OwnCluster {
    fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let out = Command::new("bash")
            .arg(CLUSTER_SCRIPT)
            .arg("stop")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
            .context("running scripts/pg-test-cluster stop")?;
        ensure!(
            out.status.success(),
            "scripts/pg-test-cluster stop {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        // An error path: stop it anyway, nothing to report to.
        let _ = self.stop();
    }
}

/// The PostgreSQL server the replicas use.
#[derive(Debug)]
pub struct Postgres {
    /// A URL whose role may create databases.
    admin_url: String,
    own: Option<OwnCluster>,
    /// Databases made for this run (dropped at the end on a server not our own).
    databases: Vec<String>,
}

impl Postgres {
    /// `url` (an existing server), or a throwaway cluster under `parent` (default: the
    /// system temp dir) restarted durable: the script runs it with `fsync`,
    /// `synchronous_commit` and `full_page_writes` off, which would make PostgreSQL's
    /// commits free while SQLite's are `synchronous=FULL`.
    pub fn start(url: Option<&str>, parent: Option<&Path>) -> Result<Self> {
        if let Some(url) = url {
            return Ok(Postgres {
                admin_url: url.to_owned(),
                own: None,
                databases: Vec::new(),
            });
        }
        let mut cmd = Command::new("bash");
        cmd.arg(CLUSTER_SCRIPT)
            .arg("start")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(p) = parent {
            cmd.env("TMPDIR", p);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {CLUSTER_SCRIPT} start"))?;
        ensure!(
            out.status.success(),
            "{CLUSTER_SCRIPT} start failed (its messages are above)"
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let export = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{CLUSTER_SCRIPT} start printed no {name}: {text}"))
        };
        let dir = PathBuf::from(export("BONAFIDE_PG_TEST_DIR")?);
        let own = OwnCluster {
            dir,
            stopped: false,
        };
        let admin_url = export("BONAFIDE_TEST_PG_URL")?;
        let port = admin_url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| anyhow!("no port in {admin_url}"))?;
        restart_durable(&own.dir, port)?;
        Ok(Postgres {
            admin_url,
            own: Some(own),
            databases: Vec::new(),
        })
    }

    /// The postmaster's pid, when the cluster is the harness's own (its processes'
    /// CPU is then measured).
    pub fn postmaster_pid(&self) -> Option<u32> {
        let dir = &self.own.as_ref()?.dir;
        let text = std::fs::read_to_string(dir.join("data/postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// A new, empty database: its URL.
    pub async fn fresh_database(&mut self, tag: &str) -> Result<String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "bench_{tag}_{}_{}_{}",
            std::process::id(),
            bonafide_server::time::now_ms() % 1_000_000_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut conn = self.connect().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let _ = conn.close().await;
        self.databases.push(name.clone());
        Ok(url_with_database(&self.admin_url, &name))
    }

    async fn connect(&self) -> Result<sqlx::PgConnection> {
        sqlx::PgConnection::connect(&self.admin_url)
            .await
            .with_context(|| format!("connecting to {}", redact(&self.admin_url)))
    }

    /// Version, durability settings, and where the cluster lives.
    pub async fn describe(&self) -> Result<(String, serde_json::Value)> {
        let mut conn = self.connect().await?;
        let mut settings = Vec::new();
        for name in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "max_connections",
            "shared_buffers",
        ] {
            let (value,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(&mut conn)
                .await
                .with_context(|| format!("SHOW {name}"))?;
            settings.push((name, value));
        }
        let _ = conn.close().await;
        let get = |n: &str| {
            settings
                .iter()
                .find(|(k, _)| *k == n)
                .map_or("?", |(_, v)| v.as_str())
        };
        let place = match &self.own {
            Some(own) => format!(
                "a throwaway cluster started by the harness (scripts/pg-test-cluster, restarted \
                 durable) in {} ({}), its processes' CPU measured",
                own.dir.display(),
                report::file_system(&own.dir)
            ),
            None => format!(
                "{} (--database-url; its CPU not measured)",
                redact(&self.admin_url)
            ),
        };
        let line = format!(
            "PostgreSQL {}, fsync {}, synchronous_commit {}, full_page_writes {}, \
             max_connections {}, shared_buffers {}; {place}",
            get("server_version"),
            get("fsync"),
            get("synchronous_commit"),
            get("full_page_writes"),
            get("max_connections"),
            get("shared_buffers"),
        );
        let mut json = serde_json::Map::new();
        for (k, v) in &settings {
            json.insert((*k).to_owned(), serde_json::Value::String(v.clone()));
        }
        json.insert("where".to_owned(), serde_json::Value::String(place));
        Ok((line, serde_json::Value::Object(json)))
    }

    /// Drops this run's databases (a server not our own) or stops the cluster.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(own) = self.own.as_mut() {
            return own.stop();
        }
        let mut conn = self.connect().await?;
        for name in std::mem::take(&mut self.databases) {
            // FORCE (PostgreSQL 13+): a replica killed on an error path may leave a
            // session behind for a moment.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .with_context(|| format!("dropping database {name}"))?;
        }
        let _ = conn.close().await;
        Ok(())
    }
}

/// Restarts the script's cluster with PostgreSQL's durable defaults: the script's
/// options without `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`.
fn restart_durable(dir: &Path, port: u16) -> Result<()> {
    let pg_ctl = pg_ctl()?;
    let data = dir.join("data");
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
        dir.display()
    );
    // initdb refuses root, so the script runs the cluster as `postgres`; so must we.
    let mut cmd = if running_as_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    cmd.arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .args(["-w", "-t", "60", "-m", "fast", "restart", "-o", &options])
        .stdin(Stdio::null());
    let out = cmd.output().context("running pg_ctl restart")?;
    ensure!(
        out.status.success(),
        "pg_ctl restart (durable) failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `pg_ctl` on PATH, else the newest under /usr/lib/postgresql (as the script looks).
fn pg_ctl() -> Result<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("pg_ctl"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return Ok(p);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("pg_ctl is not on PATH and /usr/lib/postgresql is missing")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let p = e.path().join("bin/pg_ctl");
            p.is_file().then_some((v, p))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| anyhow!("pg_ctl not found"))
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// `url` naming database `name` instead of its own.
fn url_with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base
        .get(scheme_end..)
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{name}", base.get(..host_end).unwrap_or(base));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` without its password, for printing.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = url.get(scheme_end..).unwrap_or_default();
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            url.get(..scheme_end).unwrap_or_default(),
            rest.get(..colon).unwrap_or_default(),
            rest.get(at..).unwrap_or_default()
        ),
        _ => url.to_owned(),
    }
}

/// The `bonafide` binary: `--bonafide-bin`, else next to this executable.
pub fn bonafide_bin(given: Option<&Path>) -> Result<PathBuf> {
    let bin = match given {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()
            .context("locating this executable")?
            .with_file_name("bonafide"),
    };
    ensure!(
        bin.is_file(),
        "{} not found: build it (`cargo build --release -p bonafide`; bench/run-load.sh \
         does) or pass --bonafide-bin",
        bin.display()
    );
    Ok(bin)
}

/// `bonafide ARGS…`'s standard output, trimmed; fails unless it succeeds.
pub fn bonafide_output(bin: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(args)
        .env_remove("BONAFIDE_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} {}", bin.display(), args.join(" ")))?;
    ensure!(
        out.status.success(),
        "{} {} failed: {}",
        bin.display(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One `bonafide serve` process on 127.0.0.1, killed if dropped unstopped.
#[derive(Debug)]
pub struct Replica {
    pub name: String,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub url: String,
    /// Its last lines of standard error (for an error message).
    log: Arc<Mutex<VecDeque<String>>>,
}

/// Lines of a replica's standard error kept for error messages.
const LOG_LINES: usize = 40;

impl Replica {
    /// Starts `bin serve` on 127.0.0.1:0 with the flags every replica shares (EdDSA
    /// key for a new registry, one public URL so one token verifies anywhere, text
    /// logs) and `store` (`--data-dir …` or `--database-url … --key-encryption-key-file
    /// …`), with the admin key `admin` and `RUST_LOG=warn` (the access log off, as in
    /// the in-process modes); waits for the address it announces.
    pub fn spawn(bin: &Path, name: &str, store: &[OsString], admin: &str) -> Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--signing-alg", "EdDSA"])
            .args(["--public-url", PUBLIC_URL, "--log-format", "text"])
            .args(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Nothing from the caller's environment chooses another store or URL.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BONAFIDE_") {
                cmd.env_remove(key);
            }
        }
        // The replica modes measure the registry without rate limits or quotas (as
        // before they existed); `--compare-rate-limits` measures what the limits cost.
        cmd.env("BONAFIDE_ADMIN_KEY", admin)
            .env("BONAFIDE_RATE_LIMITS", "off")
            .env("BONAFIDE_QUOTAS", "off")
            .env("RUST_LOG", "warn");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let stderr = child.stderr.take().context("the replica's stderr")?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = Arc::clone(&log);
        // Drains stderr for the process's life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    if l.len() == LOG_LINES {
                        l.pop_front();
                    }
                    l.push_back(line.clone());
                }
                let _ = tx.send(line);
            }
        });
        let mut replica = Replica {
            name: name.to_owned(),
            child: Some(child),
            addr: ([127, 0, 0, 1], 0).into(),
            url: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(url) = line.trim().strip_prefix("bonafide listening on ") {
                        replica.url = url.to_owned();
                        replica.addr = url
                            .strip_prefix("http://")
                            .and_then(|a| a.parse().ok())
                            .ok_or_else(|| anyhow!("{name} announced {url}"))?;
                        return Ok(replica);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                Err(_) => bail!(
                    "replica {name} did not announce its address within 60 s: {}",
                    replica.last_lines()
                ),
            }
            if let Some(child) = replica.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "replica {name} exited at start ({status}): {}",
                    replica.last_lines()
                );
            }
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn last_lines(&self) -> String {
        self.log
            .lock()
            .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// SIGTERM (it drains and stops), then SIGKILL after 10 s. Fails if it had
    /// already exited: it died during the run.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "replica {} exited during the run ({status}): {}",
                self.name,
                self.last_lines()
            );
        }
        // std has no signals but kill(2)'s SIGKILL; `kill` sends SIGTERM.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("replica {} did not stop within 10 s of SIGTERM", self.name)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Replicas of one registry on a fresh PostgreSQL database.
pub struct ReplicaSet {
    pub replicas: Vec<Replica>,
    pub admin: String,
}

impl ReplicaSet {
    /// `n` replicas on a new database of `pg`, sharing a key-encryption key made in
    /// `dir` and one admin key. The first starts alone (it creates the registry's
    /// keys), then the others.
    pub async fn start(
        pg: &mut Postgres,
        bin: &Path,
        dir: &Path,
        tag: &str,
        n: usize,
    ) -> Result<Self> {
        let db_url = pg.fresh_database(tag).await?;
        let kek = dir.join(format!("kek-{tag}"));
        bonafide_output(
            bin,
            &[
                "keys",
                "new-kek",
                "--out",
                kek.to_str().context("a KEK path that is not UTF-8")?,
            ],
        )?;
        let admin = bonafide_output(bin, &["keys", "new-admin-key"])?;
        let store: Vec<OsString> = vec![
            "--database-url".into(),
            db_url.into(),
            "--key-encryption-key-file".into(),
            kek.into(),
        ];
        let mut replicas = Vec::with_capacity(n);
        for i in 0..n {
            replicas.push(Replica::spawn(bin, &format!("{tag}-{i}"), &store, &admin)?);
        }
        Ok(ReplicaSet { replicas, admin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            url_with_database("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            url_with_database("postgres://u:p@h:1/d?sslmode=require", "b"),
            "postgres://u:p@h:1/b?sslmode=require"
        );
        assert_eq!(
            redact("postgres://u:secret@h:1/d"),
            "postgres://u:***@h:1/d"
        );
        assert_eq!(redact("postgres://u@h:1/d"), "postgres://u@h:1/d");
    }
}
