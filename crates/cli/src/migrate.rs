//! `bonafide migrate`: moves a SQLite registry (a data dir) into a new PostgreSQL
//! database (issue 16 item 5). The copy itself is `bonafide_store::copy`; this command
//! finds both key-encryption keys, re-seals the private keys from the source's KEK to
//! the target's, and checks the result before saying it is done.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bonafide_core::merkle::{self, Prefetched};
use bonafide_core::sealed::{self, Kek};
use bonafide_store::copy::{self, CopyReport};
use bonafide_store::{PostgresStore, PrivateKeySlot, SqliteStore, Store, StoreError};
use clap::Args;
use serde_json::json;

use crate::failure::Failure;
use crate::kek;
use crate::output::Out;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The SQLite registry's data dir (the server's --data-dir). Stop its server
    /// first: a write during the copy aborts it.
    #[arg(long, value_name = "DATA_DIR")]
    from: PathBuf,
    /// The new PostgreSQL database: postgres://USER:PASSWORD@HOST:PORT/DB. It must
    /// hold no registry yet (its tables are created here); start the replicas on it
    /// afterwards.
    #[arg(long, value_name = "POSTGRES_URL")]
    to: String,
    /// The key-encryption key the source's private keys are sealed under. Default:
    /// `<DATA_DIR>/key-encryption.key` (a registry older than sealing has none).
    #[arg(long, value_name = "FILE")]
    from_key_encryption_key_file: Option<PathBuf>,
    /// The key-encryption key the replicas will start with (`bonafide keys new-kek
    /// --out FILE`; it may be the source's file): the private keys are re-sealed
    /// under it.
    #[arg(long, env = "BONAFIDE_KEY_ENCRYPTION_KEY_FILE", value_name = "FILE")]
    key_encryption_key_file: PathBuf,
}

pub async fn run(args: MigrateArgs, out: &Out) -> Result<ExitCode> {
    if !bonafide_store::is_postgres_url(&args.to) {
        return Err(Failure::usage(
            "--to must be a postgres:// or postgresql:// URL (the new database)",
        ));
    }
    if !SqliteStore::exists_in(&args.from) {
        bail!(
            "no Bonafide database in `{}`: --from takes the SQLite registry's data dir (the server's --data-dir)",
            args.from.display()
        );
    }
    let target_kek = kek::read(&args.key_encryption_key_file)?;
    let source_kek = source_kek(&args.from, args.from_key_encryption_key_file.as_deref())?;
    let shown = bonafide_store::redact_url(&args.to);

    let source = SqliteStore::open(&args.from)
        .await
        .with_context(|| format!("cannot open the registry in `{}`", args.from.display()))?;
    let target = PostgresStore::open(&args.to)
        .await
        .with_context(|| format!("cannot open {shown}"))?;

    let reseal = |slot: &PrivateKeySlot, stored: &str| -> Result<Option<String>, StoreError> {
        let identity = slot.identity();
        let sealing = |plain: &str| {
            target_kek
                .seal(&identity, plain)
                .map(Some)
                .map_err(|e| StoreError::Backend(format!("sealing the {identity}: {e}")))
        };
        if !sealed::is_sealed(stored) {
            // A registry older than sealing: its keys are stored in plaintext.
            return sealing(stored);
        }
        let Some(kek) = &source_kek else {
            return Err(StoreError::Backend(format!(
                "the source's {identity} is sealed, and its key-encryption key was not found: pass --from-key-encryption-key-file"
            )));
        };
        let opened = kek.open(&identity, stored).map_err(|e| {
            StoreError::Backend(format!(
                "the source's {identity} does not open with its key-encryption key: {e}"
            ))
        })?;
        sealing(opened.expose_secret())
    };
    let report = copy::sqlite_to_postgres(&source, &target, &reseal)
        .await
        .with_context(|| format!("migrating `{}` to {shown}", args.from.display()))?;
    source.close().await;

    check(&target, &target_kek, &report)
        .await
        .with_context(|| format!("checking the copy in {shown}"))?;
    target.close().await;
    print(out, &args, &shown, &report);
    Ok(ExitCode::SUCCESS)
}

/// The source's KEK: the file given, else the data dir's default if it exists.
fn source_kek(dir: &Path, file: Option<&Path>) -> Result<Option<Kek>> {
    if let Some(path) = file {
        return kek::read(path).map(Some);
    }
    let default = dir.join(kek::DEFAULT_FILE);
    if default.exists() {
        return kek::read(&default).map(Some);
    }
    Ok(None)
}

/// What the replicas will rely on, read back through the store as they read it: the
/// keys open under the target's KEK, the log has the source's size, and the latest
/// checkpoint's root is the root of the copied hashes.
async fn check(target: &PostgresStore, kek: &Kek, report: &CopyReport) -> Result<()> {
    let resealed = bonafide_server::sealing::seal_stored_keys(target, kek).await?;
    if resealed != 0 {
        bail!("{resealed} private keys were copied unsealed");
    }
    let size = target.audit_size().await?;
    if size != report.audit_size {
        bail!(
            "the copied log has {size} records, the source {}",
            report.audit_size
        );
    }
    if let Some(checkpoint) = target.audit_latest_checkpoint().await? {
        let idx = merkle::tree_hash_indexes(checkpoint.size);
        let hashes = target.audit_hashes(&idx).await?;
        let root = merkle::tree_hash(checkpoint.size, &Prefetched::new(idx, hashes)?)?;
        if root != checkpoint.root {
            bail!(
                "the copied log's root at size {} is not the one its checkpoint signed",
                checkpoint.size
            );
        }
    }
    Ok(())
}

fn print(out: &Out, args: &MigrateArgs, shown: &str, report: &CopyReport) {
    if out.json {
        let tables: serde_json::Map<String, serde_json::Value> = report
            .tables
            .iter()
            .map(|(t, n)| (t.clone(), json!(n)))
            .collect();
        return out.json_out(&json!({
            "from": args.from.display().to_string(),
            "to": shown,
            "audit_size": report.audit_size,
            "keys_resealed": report.keys_resealed,
            "tables": tables,
        }));
    }
    println!("copied `{}` to {shown}:", args.from.display());
    for (table, rows) in &report.tables {
        println!("  {table:<20} {rows:>10}");
    }
    println!(
        "audit log: {} records; {} private keys re-sealed under {}",
        report.audit_size,
        report.keys_resealed,
        args.key_encryption_key_file.display()
    );
    println!(
        "start the replicas with --database-url and --key-encryption-key-file {}; keep `{}` until you have checked the new registry (`bonafide audit verify` with the state file you used against the old one)",
        args.key_encryption_key_file.display(),
        args.from.display()
    );
}
