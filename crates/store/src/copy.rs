//! Moving a registry from SQLite to PostgreSQL (`bonafide migrate`, issue 16 item 5):
//! every row of every table, byte for byte, in one PostgreSQL transaction.
//!
//! The two schemas are the same tables with the same column meanings
//! (`migrations/postgres/0001_initial.sql` is SQLite's final state), so the copy is
//! generic: each target column's type comes from PostgreSQL's catalogue and each value
//! is read from SQLite as that type. A column or table on one side only is an error
//! naming it (a newer source than this build, or a table [`TABLES`] lacks), never a
//! silent drop.
//!
//! What makes it safe:
//! - **Consistent source.** All reads run in one SQLite read transaction (one WAL
//!   snapshot). A write committed meanwhile (a server still running on the data dir)
//!   is detected afterwards by the log head and the change feed having moved, and the
//!   copy is rolled back: nothing lands half-copied.
//! - **Empty target only.** The target's log head is locked first and every table must
//!   be empty, so a replica started on it, or a second copy, is refused.
//! - **Secrets re-sealed.** The three private-key columns go through the caller's
//!   [`Reseal`] (open under the source's key-encryption key, seal under the target's);
//!   nothing else is changed.
//! - **Target-only columns.** `status_entries.xid` (PostgreSQL's visibility order
//!   for new status entries) is left to its default.
//! - **Identity columns.** `agents.seq` is copied (SQLite has it); the `seq` columns
//!   SQLite orders by `rowid` instead are generated in `rowid` order. Each identity
//!   sequence is moved past the copied rows.

use std::collections::BTreeSet;

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteRow;
use sqlx::{Postgres, QueryBuilder, Row, SqliteConnection};

use crate::{PostgresStore, PrivateKeySlot, Reseal, SqliteStore, StoreError};

/// Every table of a registry, parents before the tables that reference them. The log
/// head is not in it: SQLite has none (its size is the log's), the target's is set.
pub const TABLES: &[&str] = &[
    "api_keys",
    "issuers",
    "receivers",
    "receiver_audiences",
    "agents",
    "tokens",
    "delegations",
    "signing_keys",
    "audit_log",
    "audit_leaf_index",
    "audit_leaf_progress",
    "audit_pruned",
    "audit_checkpoints",
    "audit_log_key",
    "budgets",
    "idempotency",
    "receipts",
    "receipt_key",
    "issuer_keys",
    "agent_keys",
    "action_nonces",
    "issuer_domains",
    "changes",
    "status_lists",
    "status_entries",
    "status_chain",
    "status_list_tokens",
    "status_list_key",
    "event_key",
    "webhooks",
    "event_acks",
    "sdk_verifications",
    "revoked_policies",
    "rate_buckets",
    "rate_limit_settings",
    "session_key",
    "playground_key",
    "organisations",
    "people",
    "memberships",
    "invitations",
    "recovery_codes",
    "sessions",
    "refresh_tokens",
    "org_issuers",
    "org_receivers",
    "login_throttle",
    "security_events",
    "org_plans",
    "quota_usage",
    "usage_daily",
];

/// SQLite's own tables, not copied: what they hold PostgreSQL keeps another way.
/// `receipts_undated` (SQLite 0039) lists receipts whose ids do not date them, for a
/// purge that has no index on age; PostgreSQL's purge reads its `receipts_by_age`
/// index, which the copied `receipts` rows fill.
pub const SQLITE_ONLY: &[&str] = &["receipts_undated"];

/// Rows read from SQLite and inserted into PostgreSQL at a time (well under
/// PostgreSQL's 65,535 bind parameters for the widest table).
const BATCH: usize = 500;

/// Why a copy failed. Nothing was written to the target in any case.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds a registry (or part of one).
    #[error(
        "the target database is not empty (table `{table}` has rows): migrate into a new, empty database, before any replica has started on it"
    )]
    TargetNotEmpty {
        /// The first table found with rows.
        table: String,
    },
    /// The two schemas differ where the copy cannot map one onto the other.
    #[error("the source and target schemas differ: {0}")]
    Schema(String),
    /// A value in the source cannot be stored in the target column.
    #[error("table `{table}`, column `{column}`: {reason}")]
    Value {
        /// Its table.
        table: String,
        /// Its column.
        column: String,
        /// Why, without the value.
        reason: String,
    },
    /// Something wrote to the source while it was being read.
    #[error(
        "the source registry changed during the copy (is a server still running on it?): stop it and run the migration again; nothing was written to the target"
    )]
    SourceChanged,
    /// Either store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was copied: rows per table, in [`TABLES`] order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyReport {
    /// `(table, rows copied)`.
    pub tables: Vec<(String, u64)>,
    /// The audit log's size (the target's log head).
    pub audit_size: u64,
    /// Private keys re-sealed.
    pub keys_resealed: usize,
}

/// A target column's type, as the copy binds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int2,
    Int8,
    Text,
    Bytes,
    Bool,
}

/// One value read from the source, typed for its target column.
#[derive(Debug, Clone)]
enum Value {
    Int2(Option<i16>),
    Int8(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

/// A target column and how it is filled.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
    /// `GENERATED ALWAYS AS IDENTITY`.
    identity: bool,
}

/// Copies the registry in `source` into the empty database of `target`, re-sealing
/// its private keys with `reseal` (`None` from it keeps the stored text). One
/// transaction: on any error the target is left as it was.
pub async fn sqlite_to_postgres(
    source: &SqliteStore,
    target: &PostgresStore,
    reseal: &Reseal<'_>,
) -> Result<CopyReport, CopyError> {
    let mut src = source.reader_connection().await?;
    let before = source_mark(&mut src).await?;
    let mut snapshot = sqlx::Connection::begin(&mut *src)
        .await
        .map_err(crate::sqlite::db_err)?;
    let copied = copy_in_snapshot(&mut snapshot, target, reseal).await;
    // It only read: dropping it ends the snapshot.
    drop(snapshot);
    let (report, tx) = copied?;
    // Compared on the same connection after its snapshot ended: a commit by anyone
    // since the first mark moved the log head or the change feed.
    if source_mark(&mut src).await? != before {
        tx.rollback().await.map_err(crate::postgres::db_err)?;
        return Err(CopyError::SourceChanged);
    }
    tx.commit().await.map_err(crate::postgres::db_err)?;
    Ok(report)
}

/// The source's audit size and change-feed head: every write that matters moves one.
async fn source_mark(conn: &mut SqliteConnection) -> Result<(i64, i64, i64), CopyError> {
    sqlx::query_as(
        "SELECT (SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log), \
                (SELECT COALESCE(MAX(pos), 0) FROM changes), \
                (SELECT COUNT(*) FROM budgets)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| CopyError::Store(crate::sqlite::db_err(e)))
}

async fn copy_in_snapshot(
    src: &mut SqliteConnection,
    target: &PostgresStore,
    reseal: &Reseal<'_>,
) -> Result<(CopyReport, sqlx::Transaction<'static, Postgres>), CopyError> {
    let mut tx = target.begin_write().await?;
    // The head first, as every write does: a replica starting meanwhile waits, then
    // finds the copy.
    let head: i64 = sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *tx)
        .await
        .map_err(crate::postgres::db_err)?;
    if head != 0 {
        return Err(CopyError::TargetNotEmpty {
            table: "log_head".to_owned(),
        });
    }
    check_tables(src, &mut tx).await?;
    let mut report = CopyReport::default();
    for table in TABLES {
        let columns = target_columns(&mut tx, table).await?;
        let occupied: bool = sqlx::query_scalar(safe(format!(
            "SELECT EXISTS (SELECT 1 FROM {})",
            ident(table)
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(crate::postgres::db_err)?;
        if occupied {
            return Err(CopyError::TargetNotEmpty {
                table: (*table).to_owned(),
            });
        }
        let (rows, resealed) = copy_table(src, &mut tx, table, &columns, reseal).await?;
        report.keys_resealed += resealed;
        for column in columns.iter().filter(|c| c.identity) {
            // The next generated value comes after every copied one.
            // pg_get_serial_sequence takes names as text: the table name is one of
            // TABLES and the column one the catalogue listed.
            sqlx::query(safe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{name}'), \
                 COALESCE((SELECT MAX({column}) FROM {tbl}), 0) + 1, false)",
                name = column.name.replace('\'', "''"),
                column = ident(&column.name),
                tbl = ident(table),
            )))
            .execute(&mut *tx)
            .await
            .map_err(crate::postgres::db_err)?;
        }
        report.tables.push(((*table).to_owned(), rows));
    }
    let size: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log")
        .fetch_one(&mut *tx)
        .await
        .map_err(crate::postgres::db_err)?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
        .fetch_one(&mut *tx)
        .await
        .map_err(crate::postgres::db_err)?;
    // A pruned prefix keeps one record of each tile of 256 (`Store::audit_prune`).
    let pruned: i64 =
        sqlx::query_scalar("SELECT COALESCE((SELECT through FROM audit_pruned WHERE id = 1), 0)")
            .fetch_one(&mut *tx)
            .await
            .map_err(crate::postgres::db_err)?;
    if count != size - pruned + pruned / 256 {
        return Err(CopyError::Value {
            table: "audit_log".to_owned(),
            column: "idx".to_owned(),
            reason: format!(
                "the source log has gaps ({count} records, highest index {size} - 1, pruned below {pruned})"
            ),
        });
    }
    sqlx::query("UPDATE log_head SET size = $1 WHERE id = 1")
        .bind(size)
        .execute(&mut *tx)
        .await
        .map_err(crate::postgres::db_err)?;
    report.audit_size = u64::try_from(size).map_err(|_| CopyError::Value {
        table: "audit_log".to_owned(),
        column: "idx".to_owned(),
        reason: "negative size".to_owned(),
    })?;
    Ok((report, tx))
}

/// Every table on either side is one [`TABLES`] names (bookkeeping tables aside).
async fn check_tables(src: &mut SqliteConnection, tx: &mut PgConnection) -> Result<(), CopyError> {
    let known: BTreeSet<&str> = TABLES.iter().copied().collect();
    let source: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *src)
    .await
    .map_err(crate::sqlite::db_err)?;
    let target: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
         AND table_name NOT IN ('_sqlx_migrations', 'log_head')",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(crate::postgres::db_err)?;
    let source: Vec<String> = source
        .into_iter()
        .filter(|n| !SQLITE_ONLY.contains(&n.as_str()))
        .collect();
    for (side, names) in [("source", &source), ("target", &target)] {
        if let Some(extra) = names.iter().find(|n| !known.contains(n.as_str())) {
            return Err(CopyError::Schema(format!(
                "the {side} has a table `{extra}` this build does not copy (a newer registry than this binary?)"
            )));
        }
    }
    for table in TABLES {
        for (side, names) in [("source", &source), ("target", &target)] {
            if !names.iter().any(|n| n == table) {
                return Err(CopyError::Schema(format!(
                    "the {side} has no table `{table}`"
                )));
            }
        }
    }
    Ok(())
}

/// Columns only PostgreSQL has, left out of the copy so that their defaults fill
/// them: `status_entries.xid`, the allocating transaction (SQLite orders entries by
/// `seq` instead; copied rows get the copy's transaction, committed before any
/// replica reads them).
const TARGET_ONLY: &[(&str, &str)] = &[("status_entries", "xid")];

/// The target table's columns in order, with the types the copy binds.
async fn target_columns(tx: &mut PgConnection, table: &str) -> Result<Vec<Column>, CopyError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_identity::text \
         FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *tx)
    .await
    .map_err(crate::postgres::db_err)?;
    rows.into_iter()
        .filter(|(name, _, _)| !TARGET_ONLY.contains(&(table, name.as_str())))
        .map(|(name, data_type, identity)| {
            let kind = match data_type.as_str() {
                "smallint" => Kind::Int2,
                "bigint" | "integer" => Kind::Int8,
                "text" => Kind::Text,
                "bytea" => Kind::Bytes,
                "boolean" => Kind::Bool,
                other => {
                    return Err(CopyError::Schema(format!(
                        "target column `{table}.{name}` has type {other}, which the copy does not map"
                    )));
                }
            };
            Ok(Column {
                name,
                kind,
                identity: identity == "YES",
            })
        })
        .collect()
}

/// Copies one table; returns the rows copied and the private keys re-sealed.
async fn copy_table(
    src: &mut SqliteConnection,
    tx: &mut PgConnection,
    table: &str,
    target: &[Column],
    reseal: &Reseal<'_>,
) -> Result<(u64, usize), CopyError> {
    let source: BTreeSet<String> =
        sqlx::query_scalar::<_, String>("SELECT name FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(&mut *src)
            .await
            .map_err(crate::sqlite::db_err)?
            .into_iter()
            .collect();
    // Identity columns SQLite lacks are generated; every other target column must be
    // in the source, and every source column in the target.
    let columns: Vec<Column> = target
        .iter()
        .filter(|c| !c.identity || source.contains(&c.name))
        .cloned()
        .collect();
    for c in &columns {
        if !source.contains(&c.name) {
            return Err(CopyError::Schema(format!(
                "the source table `{table}` has no column `{}`",
                c.name
            )));
        }
    }
    if let Some(extra) = source
        .iter()
        .find(|n| !columns.iter().any(|c| &c.name == *n))
    {
        return Err(CopyError::Schema(format!(
            "the source column `{table}.{extra}` has no place in the target"
        )));
    }
    let overriding = columns.iter().any(|c| c.identity);
    let list = columns
        .iter()
        .map(|c| ident(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let with_rowid: bool = sqlx::query_scalar("SELECT NOT wr FROM pragma_table_list(?)")
        .bind(table)
        .fetch_one(&mut *src)
        .await
        .map_err(crate::sqlite::db_err)?;

    let mut copied = 0u64;
    let mut resealed = 0usize;
    let mut after_rowid = i64::MIN;
    loop {
        // Pages by rowid (insertion order, which the generated `seq`s follow); a
        // WITHOUT ROWID table (API keys, budgets, nonces: small) is read whole.
        let rows: Vec<SqliteRow> = if with_rowid {
            sqlx::query(safe(format!(
                "SELECT rowid, {list} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT {BATCH}",
                ident(table)
            )))
            .bind(after_rowid)
            .fetch_all(&mut *src)
            .await
        } else {
            sqlx::query(safe(format!("SELECT 0, {list} FROM {}", ident(table))))
                .fetch_all(&mut *src)
                .await
        }
        .map_err(crate::sqlite::db_err)?;
        if rows.is_empty() {
            break;
        }
        let mut values = Vec::with_capacity(rows.len());
        for row in &rows {
            if with_rowid {
                after_rowid = row.try_get(0).map_err(crate::sqlite::db_err)?;
            }
            let mut out = Vec::with_capacity(columns.len());
            for (i, c) in columns.iter().enumerate() {
                out.push(read(row, i + 1, c, table)?);
            }
            resealed += reseal_row(table, &columns, &mut out, reseal)?;
            values.push(out);
        }
        for chunk in values.chunks(BATCH) {
            let mut insert =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO {} ({list}) ", ident(table)));
            if overriding {
                insert.push("OVERRIDING SYSTEM VALUE ");
            }
            insert.push_values(chunk, |mut b, row| {
                for v in row {
                    match v {
                        Value::Int2(x) => b.push_bind(*x),
                        Value::Int8(x) => b.push_bind(*x),
                        Value::Text(x) => b.push_bind(x.clone()),
                        Value::Bytes(x) => b.push_bind(x.clone()),
                        Value::Bool(x) => b.push_bind(*x),
                    };
                }
            });
            insert
                .build()
                .execute(&mut *tx)
                .await
                .map_err(crate::postgres::db_err)?;
        }
        copied += rows.len() as u64;
        if !with_rowid || rows.len() < BATCH {
            break;
        }
    }
    Ok((copied, resealed))
}

/// The source value at `index`, as the target column's type.
fn read(row: &SqliteRow, index: usize, column: &Column, table: &str) -> Result<Value, CopyError> {
    let failed = |e: sqlx::Error| CopyError::Value {
        table: table.to_owned(),
        column: column.name.clone(),
        // sqlx's decode errors name types, not values.
        reason: e.to_string(),
    };
    Ok(match column.kind {
        Kind::Int2 => {
            let v: Option<i64> = row.try_get(index).map_err(failed)?;
            Value::Int2(
                v.map(i16::try_from)
                    .transpose()
                    .map_err(|_| CopyError::Value {
                        table: table.to_owned(),
                        column: column.name.clone(),
                        reason: "out of range for smallint".to_owned(),
                    })?,
            )
        }
        Kind::Int8 => Value::Int8(row.try_get(index).map_err(failed)?),
        Kind::Text => Value::Text(row.try_get(index).map_err(failed)?),
        Kind::Bytes => Value::Bytes(row.try_get(index).map_err(failed)?),
        Kind::Bool => Value::Bool(row.try_get(index).map_err(failed)?),
    })
}

/// A quoted identifier: names come from [`TABLES`] and the two catalogues, quoted
/// all the same.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// SQL built from [`ident`]s and constants only, never from row values.
fn safe(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// Re-seals the private key a row of `table` holds, if it holds one.
fn reseal_row(
    table: &str,
    columns: &[Column],
    row: &mut [Value],
    reseal: &Reseal<'_>,
) -> Result<usize, CopyError> {
    let text_of = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .and_then(|i| match &row[i] {
                Value::Text(Some(t)) => Some((i, t.clone())),
                _ => None,
            })
    };
    let (slot, column) = match table {
        "signing_keys" => {
            let Some((_, kid)) = text_of("kid") else {
                return Ok(0);
            };
            (PrivateKeySlot::SigningKey { kid }, "private_pem")
        }
        "receipt_key" => (PrivateKeySlot::ReceiptKey, "private_pem"),
        "audit_log_key" => (PrivateKeySlot::AuditLogKey, "signer_key"),
        "event_key" => (PrivateKeySlot::EventKey, "private_pem"),
        "status_list_key" => (PrivateKeySlot::StatusListKey, "private_pem"),
        "session_key" => (PrivateKeySlot::SessionKey, "private_pem"),
        "playground_key" => (PrivateKeySlot::PlaygroundKey, "private_pem"),
        "people" => {
            let Some((_, person)) = text_of("id") else {
                return Ok(0);
            };
            if text_of("totp_secret").is_none() {
                return Ok(0);
            }
            (PrivateKeySlot::TotpSecret { person }, "totp_secret")
        }
        _ => return Ok(0),
    };
    let Some((i, stored)) = text_of(column) else {
        return Err(CopyError::Schema(format!(
            "`{table}.{column}` is not a text column"
        )));
    };
    match reseal(&slot, &stored)? {
        Some(new) => {
            row[i] = Value::Text(Some(new));
            Ok(1)
        }
        None => Ok(0),
    }
}
