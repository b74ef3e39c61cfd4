//! `--audit-storage N` (issue 17 goal 6): database bytes per audited verify. One real
//! server in this process on a SQLite data dir (the default configuration: every
//! decision audited and given a stored receipt), a receiver key, then N `POST
//! /v1/verify` with the receiver key over `--connections` keep-alive connections;
//! once a checkpoint covers every entry (so the leaf-hash index is extended, as it is
//! in steady state), the server stops and the database is read with SQLite's `dbstat`
//! virtual table: pages per table and index before and after, divided by N.
//!
//! Then the retention path: the full tiles the latest checkpoint covers are exported
//! (entry bundles, level-0 hash tiles and the checkpoint, as `bonafide audit export`
//! writes them) into a directory the server reads as its `--audit-archive`, pruned
//! with `POST /v1/admin/audit/prune {"exported": true}` (which checks every tile
//! against the database first), and the database measured again.
//!
//! Over HTTP and not at the store level, so that the bytes are the real entry, receipt
//! and answers a deployment writes. Not a throughput measurement: the load is only the
//! way to write N decisions (a debug build is enough).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bonafide_server::Config;
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, Row, SqliteConnection};
use tokio::time::Instant;

use crate::report::{self, Machine};
use crate::setup::{self, Local, REQUESTED, call, str_member};
use crate::{Args, Mode};

/// A checkpoint covering every entry must be stored within this.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Usage {
    pages: u64,
    /// Bytes of the pages (`pgsize`), free space included.
    bytes: u64,
    /// Bytes of records stored (`payload`).
    payload: u64,
}

#[derive(Debug, Serialize)]
struct Line {
    name: String,
    bytes_before: u64,
    bytes_after: u64,
    /// After the export and prune.
    bytes_after_prune: u64,
    /// (after − before) / verifies.
    bytes_per_verify: f64,
    payload_per_verify: f64,
}

#[derive(Debug, Serialize)]
struct StorageReport {
    mode: Mode,
    date: String,
    command: String,
    machine: Machine,
    data_dir: String,
    verifies: u64,
    connections: usize,
    seconds: f64,
    page_size: u64,
    audit_rows: u64,
    receipt_rows: u64,
    /// Whole database (all pages in use), after − before, per verify.
    bytes_per_verify: f64,
    /// The database file after a WAL checkpoint, after − before, per verify.
    file_bytes_per_verify: f64,
    goal_bytes_per_verify: u64,
    goal_met: bool,
    /// Records below this were exported and pruned.
    pruned_through: u64,
    /// Whole database (pages in use) after the prune, − before, per verify.
    bytes_per_verify_after_prune: f64,
    /// Pages the prune freed (SQLite's freelist, reused by later writes; the file
    /// shrinks only with `VACUUM`), bytes.
    free_bytes_after_prune: u64,
    /// The database file after the prune, − before, per verify.
    file_bytes_per_verify_after_prune: f64,
    /// The export's files, bytes.
    archive_bytes: u64,
    /// The prune request's wall time (every tile read back and compared, then the
    /// chunks deleted), seconds.
    prune_seconds: f64,
    /// Mean stored bytes of the run's entries and receipts (the `entry` and `claims`
    /// columns).
    entry_stored_mean: f64,
    receipt_claims_stored_mean: f64,
    /// The last entry, canonical (as the log hashes and serves it), and its bytes
    /// stored.
    sample_entry: String,
    sample_entry_stored: usize,
    tables: Vec<Line>,
}

pub fn run(args: &Args, verifies: u64, connections: usize) -> Result<()> {
    ensure!(verifies >= 1, "--audit-storage must be at least 1");
    let command = report::command_line();
    let date = bonafide_server::time::rfc3339_s(bonafide_server::time::now_ms() / 1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let report = rt.block_on(measure(args, verifies, connections, command, date))?;
    print(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

async fn measure(
    args: &Args,
    verifies: u64,
    connections: usize,
    command: String,
    date: String,
) -> Result<StorageReport> {
    let archive_dir = setup::temp_dir(args.data_dir.as_deref())?;
    let archive = bonafide_server::audit_archive::AuditArchive::open(
        archive_dir.path().to_str().context("archive path")?,
    )
    .map_err(anyhow::Error::msg)?;
    let config = Config {
        audit_archive: Some(std::sync::Arc::new(archive)),
        ..Config::default()
    };
    let mut local = Local::start("storage", config, args.data_dir.as_deref()).await?;
    let dir = local.servers.dir.take().context("no data dir")?;
    let data_dir = format!(
        "{} ({})",
        dir.path().display(),
        report::file_system(dir.path())
    );
    let db = dir.path().join("bonafide.db");
    let receiver = call(
        &local.http,
        &format!("{}/v1/receivers", local.base),
        Some(local.admin.expose_secret()),
        Some(json!({"name": "storage-bench"})),
        201,
    )
    .await?;
    let receiver_key = str_member(&receiver, "api_key")?;
    let before = usage(&db).await?;
    let (audit_before, receipts_before) = rows(&db).await?;

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    let per = verifies / connections as u64;
    let extra = verifies % connections as u64;
    for c in 0..connections as u64 {
        let n = per + u64::from(c < extra);
        let http = setup::http_client()?;
        let url = format!("{}/v1/verify", local.base);
        let key = receiver_key.clone();
        let body = json!({"token": local.token, "scopes_requested": [REQUESTED]});
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let answer = http
                    .post(&url)
                    .header("x-api-key", &key)
                    .json(&body)
                    .send()
                    .await
                    .context("sending a verify")?;
                let status = answer.status();
                let text = answer.text().await.context("reading a verify answer")?;
                if status != 200 || !text.contains("\"audit_index\"") {
                    bail!("verify answered {status} without an audit index: {text}");
                }
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await.context("a load task")??;
    }
    let seconds = started.elapsed().as_secs_f64();

    // Steady state: the leaf-hash index covers every entry once a checkpoint is stored.
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    loop {
        let (covered, total) = leaf_index_progress(&db).await?;
        if covered >= total {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no checkpoint covered the log within {CHECKPOINT_WAIT:?} ({covered} of {total})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Measured with the server still up (idle: the log no longer grows), to prune after.
    let (audit_after, receipts_after) = rows(&db).await?;
    let sizes = stored_sizes(&db, audit_before).await?;
    let after = usage(&db).await?;

    let archive_bytes = export_full_tiles(&local, archive_dir.path()).await?;
    let prune_started = Instant::now();
    let pruned = call(
        &local.http,
        &format!("{}/v1/admin/audit/prune", local.base),
        Some(local.admin.expose_secret()),
        Some(json!({"exported": true})),
        200,
    )
    .await?;
    let prune_seconds = prune_started.elapsed().as_secs_f64();
    let pruned_through = pruned["through"].as_u64().context("prune answer")?;
    local.servers.stop().await?;
    let pruned_usage = usage(&db).await?;
    let file_before = before.get("<file>").copied().unwrap_or_default();
    let file_after = after.get("<file>").copied().unwrap_or_default();
    let per_verify = |a: u64, b: u64| (a as f64 - b as f64) / verifies as f64;
    let mut tables: Vec<Line> = after
        .iter()
        .filter(|(name, _)| !name.starts_with('<'))
        .map(|(name, a)| {
            let b = before.get(name).copied().unwrap_or_default();
            Line {
                name: name.clone(),
                bytes_before: b.bytes,
                bytes_after: a.bytes,
                bytes_after_prune: pruned_usage.get(name).map_or(0, |p| p.bytes),
                bytes_per_verify: per_verify(a.bytes, b.bytes),
                payload_per_verify: per_verify(a.payload, b.payload),
            }
        })
        .filter(|l| l.bytes_after != l.bytes_before)
        .collect();
    tables.sort_by(|a, b| b.bytes_per_verify.total_cmp(&a.bytes_per_verify));
    let total_before = before.get("<all>").copied().unwrap_or_default();
    let total_after = after.get("<all>").copied().unwrap_or_default();
    let bytes_per_verify = per_verify(total_after.bytes, total_before.bytes);
    let total_pruned = pruned_usage.get("<all>").copied().unwrap_or_default();
    let file_pruned = pruned_usage.get("<file>").copied().unwrap_or_default();
    drop(dir);
    drop(archive_dir);
    Ok(StorageReport {
        mode: Mode::AuditStorage,
        date,
        command,
        machine: Machine::read(),
        data_dir,
        verifies,
        connections,
        seconds,
        page_size: after.get("<page>").map_or(0, |p| p.bytes),
        audit_rows: audit_after - audit_before,
        receipt_rows: receipts_after - receipts_before,
        bytes_per_verify,
        file_bytes_per_verify: per_verify(file_after.bytes, file_before.bytes),
        goal_bytes_per_verify: 500,
        goal_met: bytes_per_verify <= 500.0,
        pruned_through,
        bytes_per_verify_after_prune: per_verify(total_pruned.bytes, total_before.bytes),
        free_bytes_after_prune: pruned_usage.get("<free>").map_or(0, |f| f.bytes),
        file_bytes_per_verify_after_prune: per_verify(file_pruned.bytes, file_before.bytes),
        archive_bytes,
        prune_seconds,
        entry_stored_mean: sizes.0,
        receipt_claims_stored_mean: sizes.1,
        sample_entry: sizes.2,
        sample_entry_stored: sizes.3,
        tables,
    })
}

/// Writes what a prune needs of the log as `bonafide audit export` lays it out: the
/// latest checkpoint, and each full tile's entry bundle and level-0 hash tile below
/// its size. The bytes written.
async fn export_full_tiles(local: &Local, dir: &Path) -> Result<u64> {
    use bonafide_core::merkle::{EntryBundle, TILE_WIDTH, Tile};
    let get = |path: String| async move {
        let url = format!("{}/v1/audit/{path}", local.base);
        let resp = local
            .http
            .get(&url)
            .bearer_auth(local.admin.expose_secret())
            .send()
            .await
            .with_context(|| format!("fetching {url}"))?;
        ensure!(resp.status() == 200, "{url} answered {}", resp.status());
        Ok::<_, anyhow::Error>(resp.bytes().await?.to_vec())
    };
    let checkpoint = get("checkpoint".to_owned()).await?;
    let size: u64 = std::str::from_utf8(&checkpoint)?
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .context("the checkpoint has no size line")?;
    let mut written = 0u64;
    let mut write = |path: String, bytes: &[u8]| -> Result<()> {
        let file = dir.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
        written += bytes.len() as u64;
        Ok(())
    };
    for n in 0..size / u64::from(TILE_WIDTH) {
        let bundle = EntryBundle::new(n, TILE_WIDTH)?.path();
        let body = get(bundle.clone()).await?;
        write(bundle, &body)?;
        let tile = Tile::new(0, n, TILE_WIDTH)?.path();
        let body = get(tile.clone()).await?;
        write(tile, &body)?;
    }
    write("checkpoint".to_owned(), &checkpoint)?;
    Ok(written)
}

async fn open(db: &Path) -> Result<SqliteConnection> {
    let url = format!("sqlite://{}", db.display());
    SqliteConnection::connect(&url)
        .await
        .with_context(|| format!("opening {}", db.display()))
}

/// Per table and index (`dbstat`); `<all>` the sum, `<file>` the file's size after a
/// WAL checkpoint, `<page>` the page size (in `bytes`).
async fn usage(db: &Path) -> Result<BTreeMap<String, Usage>> {
    let mut conn = open(db).await?;
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .context("checkpointing the WAL")?;
    let rows =
        sqlx::query("SELECT name, COUNT(*), SUM(pgsize), SUM(payload) FROM dbstat GROUP BY name")
            .fetch_all(&mut conn)
            .await
            .context("reading dbstat (SQLite built without SQLITE_ENABLE_DBSTAT_VTAB?)")?;
    let mut out = BTreeMap::new();
    let mut all = Usage::default();
    for row in rows {
        let u = Usage {
            pages: u64::try_from(row.try_get::<i64, _>(1)?)?,
            bytes: u64::try_from(row.try_get::<i64, _>(2)?)?,
            payload: u64::try_from(row.try_get::<i64, _>(3)?)?,
        };
        all.pages += u.pages;
        all.bytes += u.bytes;
        all.payload += u.payload;
        out.insert(row.try_get::<String, _>(0)?, u);
    }
    out.insert("<all>".to_owned(), all);
    let page: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&mut conn)
        .await?;
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(&mut conn)
        .await?;
    out.insert(
        "<free>".to_owned(),
        Usage {
            pages: u64::try_from(free)?,
            bytes: u64::try_from(free.saturating_mul(page))?,
            ..Usage::default()
        },
    );
    out.insert(
        "<page>".to_owned(),
        Usage {
            bytes: u64::try_from(page)?,
            ..Usage::default()
        },
    );
    conn.close().await?;
    let file = std::fs::metadata(db)
        .with_context(|| format!("reading {}", db.display()))?
        .len();
    out.insert(
        "<file>".to_owned(),
        Usage {
            bytes: file,
            ..Usage::default()
        },
    );
    Ok(out)
}

async fn rows(db: &Path) -> Result<(u64, u64)> {
    let mut conn = open(db).await?;
    let audit: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut conn)
        .await?;
    let receipts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receipts")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((u64::try_from(audit)?, u64::try_from(receipts)?))
}

/// Mean stored entry and receipt-claims bytes from audit index `from` on, and the
/// last entry (canonical) with its stored length.
async fn stored_sizes(db: &Path, from: u64) -> Result<(f64, f64, String, usize)> {
    let mut conn = open(db).await?;
    let from = i64::try_from(from)?;
    let entry: f64 = sqlx::query_scalar(
        "SELECT COALESCE(AVG(length(entry)), 0.0) FROM audit_log WHERE idx >= ?",
    )
    .bind(from)
    .fetch_one(&mut conn)
    .await?;
    let claims: f64 = sqlx::query_scalar(
        "SELECT COALESCE(AVG(length(claims)), 0.0) FROM receipts WHERE audit_index >= ?",
    )
    .bind(from)
    .fetch_one(&mut conn)
    .await?;
    let last: Vec<u8> = sqlx::query_scalar("SELECT entry FROM audit_log ORDER BY idx DESC LIMIT 1")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    let canonical = bonafide_core::audit_pack::unpack(&last).context("unpacking an entry")?;
    Ok((
        entry,
        claims,
        String::from_utf8_lossy(&canonical).into_owned(),
        last.len(),
    ))
}

/// (first index not in the leaf-hash index, records in the log).
async fn leaf_index_progress(db: &Path) -> Result<(u64, u64)> {
    let mut conn = open(db).await?;
    let upto: Option<i64> = sqlx::query_scalar("SELECT upto FROM audit_leaf_progress")
        .fetch_optional(&mut conn)
        .await?;
    let total: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((u64::try_from(upto.unwrap_or(0))?, u64::try_from(total)?))
}

fn print(r: &StorageReport) {
    println!("bonafide-load --audit-storage: database bytes per audited verify");
    println!("date: {}", r.date);
    println!("command: {}", r.command);
    println!(
        "machine: {} CPUs, {}, {}",
        r.machine.cpus, r.machine.cpu_model, r.machine.kernel
    );
    println!("data dir: {}", r.data_dir);
    println!(
        "verifies: {} over {} connections in {:.1} s; audit rows +{}, receipt rows +{}; page size {}",
        r.verifies, r.connections, r.seconds, r.audit_rows, r.receipt_rows, r.page_size
    );
    println!();
    println!(
        "{:<34} {:>14} {:>14} {:>10} {:>10} {:>14}",
        "table / index", "bytes before", "bytes after", "B/verify", "payload/v", "after prune"
    );
    for l in &r.tables {
        println!(
            "{:<34} {:>14} {:>14} {:>10.1} {:>10.1} {:>14}",
            l.name,
            l.bytes_before,
            l.bytes_after,
            l.bytes_per_verify,
            l.payload_per_verify,
            l.bytes_after_prune
        );
    }
    println!();
    println!(
        "stored per row: entry {:.1} B, receipt claims {:.1} B; last entry ({} B canonical, {} B stored):\n  {}",
        r.entry_stored_mean,
        r.receipt_claims_stored_mean,
        r.sample_entry.len(),
        r.sample_entry_stored,
        r.sample_entry
    );
    println!(
        "total (pages in use): {:.1} B/verify; file after WAL checkpoint: {:.1} B/verify; goal ≤ {} B: {}",
        r.bytes_per_verify,
        r.file_bytes_per_verify,
        r.goal_bytes_per_verify,
        if r.goal_met { "met" } else { "MISSED" }
    );
    println!(
        "after exporting ({} B of files) and pruning the records below {} ({:.2} s): {:.1} B/verify in pages in use, {} B of pages freed (reused by later writes), file {:.1} B/verify",
        r.archive_bytes,
        r.pruned_through,
        r.prune_seconds,
        r.bytes_per_verify_after_prune,
        r.free_bytes_after_prune,
        r.file_bytes_per_verify_after_prune
    );
}
