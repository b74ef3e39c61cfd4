//! `POST /v1/admin/audit/prune` (issue 17 goal 6): drops exported tiles of the audit
//! log from the database; they are served from the export from then on
//! ([`crate::audit_archive`]).
//!
//! Nothing is dropped that the export does not hold exactly: before each chunk of
//! records is deleted, every one of its tiles is read from the archive (the entry
//! bundle and the level-0 hash tile) and each leaf hash compared with the one the
//! database holds; the archive's checkpoint must be signed by the log's key and its
//! root be the log's root at its size. A difference refuses the prune (409, saying
//! what differs) and deletes nothing of that chunk. Each chunk's deletion, the pruned
//! mark and its `audit.pruned` entry are one transaction (`Store::audit_prune`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::merkle::{self, EntryBundle, Hash, Prefetched, TILE_WIDTH};
use bonafide_core::note;
use bonafide_store::{AUDIT_PRUNE_CHUNK, ConflictKind, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit_change;
use crate::audit::AuditLogError;
use crate::audit_archive::{ArchiveError, ArchivedTile, AuditArchive};
use crate::auth::Admin;
use crate::error::{ApiError, ApiJson, ErrorCode};
use crate::state::AppState;

/// `POST /v1/admin/audit/prune` body: exactly one of `through` and `exported`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Prune the records below this index: a multiple of 256, at most the latest
    /// signed checkpoint's size and the archive's. At or below what is pruned
    /// already: nothing happens.
    #[serde(default)]
    pub through: Option<u64>,
    /// Instead of `through`: every full tile the archive's checkpoint covers (the
    /// largest multiple of 256 at most its size).
    #[serde(default)]
    pub exported: bool,
}

/// `POST /v1/admin/audit/prune` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Pruned {
    /// Where the pruned prefix of the log ends now: records below it are served from
    /// the archive.
    pub through: u64,
    /// Records this call pruned (0 if they were already).
    pub pruned: u64,
    /// The size of the archive's checkpoint.
    pub archive_size: u64,
    /// Whether the prune reached what was asked. A call stops starting new chunks
    /// after about 10 s (so it answers within the request timeout); `false` means ask
    /// again to go on (`bonafide audit prune` does).
    pub complete: bool,
}

fn conflict(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
}

/// An archive that cannot be read (503: try again) or does not match (409) refuses
/// the prune.
fn refused(e: ArchiveError) -> ApiError {
    match e {
        ArchiveError::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AuditArchiveUnavailable,
            format!("{e}; nothing more was pruned"),
        ),
        ArchiveError::NotConfigured { .. } | ArchiveError::Mismatch { .. } => {
            conflict(format!("{e}; nothing more was pruned"))
        }
    }
}

/// How long one prune call goes on starting chunks: well within the request timeout.
const PRUNE_CALL_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Prunes the audit log below `through`: records whose tiles the archive
/// (`serve --audit-archive`) holds, checked against the database, are deleted from it
/// (the hashes at level 8 and above stay) and served from the archive.
#[utoipa::path(post, path = "/v1/admin/audit/prune", tag = "admin", request_body = PruneRequest,
    security(("api_key" = [])),
    responses((status = 200, body = Pruned),
              (status = 400, description = "`through` not a multiple of 256, or not exactly one of `through` and `exported`"),
              (status = 401), (status = 403),
              (status = 409, description = "no archive configured; beyond the latest signed checkpoint or the archive's; the archive lacks a tile or differs from the log (what differs is said); nothing more was pruned"),
              (status = 503, description = "the archive cannot be read now; nothing more was pruned")))]
pub async fn prune(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(body): ApiJson<PruneRequest>,
) -> Result<ApiJson<Pruned>, ApiError> {
    let width = u64::from(TILE_WIDTH);
    if body.through.is_some() == body.exported {
        return Err(ApiError::bad_request(
            "give exactly one of `through` (a multiple of 256) and `exported: true`",
        ));
    }
    if let Some(n) = body.through.filter(|n| !n.is_multiple_of(width)) {
        return Err(ApiError::bad_request(format!(
            "`through` must be a multiple of {width} (whole tiles are pruned): {n} is not; {} is the one below",
            n / width * width
        )));
    }
    let Some(archive) = state.audit.archive().cloned() else {
        return Err(conflict(
            "no audit archive is configured: export the log (`bonafide audit export --to DIR`) and start the server with `--audit-archive DIR_OR_URL` first; nothing was pruned",
        ));
    };
    let (archive_size, archive_root) = archive_checkpoint(&state, &archive).await?;
    let through = body.through.unwrap_or(archive_size / width * width);
    let pruned = state.audit.refresh_pruned().await?;
    if through <= pruned {
        return Ok(ApiJson(Pruned {
            through: pruned,
            pruned: 0,
            archive_size,
            complete: true,
        }));
    }
    let signed = state
        .store
        .audit_latest_checkpoint()
        .await?
        .map_or(0, |cp| cp.size);
    if through > signed {
        return Err(conflict(format!(
            "`through` {through} is beyond the latest signed checkpoint ({signed} records): only a checkpointed log is pruned; nothing was pruned"
        )));
    }
    if through > archive_size {
        return Err(conflict(format!(
            "`through` {through} is beyond the archive's checkpoint ({archive_size} records): export the log again first; nothing was pruned"
        )));
    }
    // The archive's checkpoint is this log's at its size.
    let idx = merkle::tree_hash_indexes(archive_size);
    let hashes = state.audit.hashes(&idx).await.map_err(|e| match e {
        AuditLogError::Store(StoreError::NotFound) => conflict(format!(
            "the archive's checkpoint covers {archive_size} records, more than this log holds: it is another log's; nothing was pruned"
        )),
        other => crate::routes::audit::read_error(other),
    })?;
    let root = Prefetched::new(idx, hashes)
        .and_then(|pre| merkle::tree_hash(archive_size, &pre))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if root != archive_root {
        return Err(conflict(format!(
            "the archive's checkpoint root at size {archive_size} is {}, this log's is {}: the archive is not this log's export; nothing was pruned",
            archive_root.to_base64(),
            root.to_base64()
        )));
    }
    let mut from = pruned;
    let mut done = 0u64;
    let started = std::time::Instant::now();
    while from < through && (done == 0 || started.elapsed() < PRUNE_CALL_BUDGET) {
        let to = through.min(from.saturating_add(AUDIT_PRUNE_CHUNK));
        for n in from / width..to / width {
            check_tile(&state, &archive, n).await.map_err(|e| {
                if done == 0 {
                    e
                } else {
                    ApiError {
                        message: format!("{} (records below {from} were pruned)", e.message),
                        ..e
                    }
                }
            })?;
        }
        let now = state.now_ms();
        let audit = audit_change(EventType::AuditPruned, now, Actor::Admin, None, None, |e| {
            e.target = Some(to.to_string());
            e.note = Some(format!(
                "pruned records {from}..{to} ({} records)",
                to - from
            ));
        })?;
        match state.store.audit_prune(from, to, Some(&audit)).await {
            Ok(count) => done += count,
            Err(StoreError::Conflict(ConflictKind::PruneRange)) => {
                return Err(conflict(format!(
                    "records {from}..{to} cannot be pruned now: another prune ran meanwhile, or the leaf index does not cover them yet (it follows the signed checkpoints); records below {from} are pruned"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        from = to;
    }
    let target = through;
    let through = state.audit.refresh_pruned().await?;
    tracing::info!(through, pruned = done, archive = %archive.location(), "audit log pruned");
    Ok(ApiJson(Pruned {
        through,
        pruned: done,
        archive_size,
        complete: through >= target,
    }))
}

/// The archive's checkpoint, opened with the log's key: its size and root.
async fn archive_checkpoint(
    state: &AppState,
    archive: &AuditArchive,
) -> Result<(u64, Hash), ApiError> {
    let text = archive.require("checkpoint").await.map_err(refused)?;
    let text = String::from_utf8(text)
        .map_err(|_| conflict("the archive's `checkpoint` is not text; nothing was pruned"))?;
    let opened = note::open_checkpoint(
        &text,
        state.audit.origin(),
        &[state.audit.verifier().clone()],
    )
    .map_err(|e| {
        conflict(format!(
            "the archive's `checkpoint` is not signed by this log's key ({e}); nothing was pruned"
        ))
    })?;
    Ok((opened.checkpoint().size, opened.checkpoint().root))
}

/// Full tile `n` as the archive holds it is exactly the database's.
async fn check_tile(state: &AppState, archive: &AuditArchive, n: u64) -> Result<(), ApiError> {
    let width = u64::from(TILE_WIDTH);
    let start = n * width;
    let rows = state.store.audit_entries(start, start + width).await?;
    if rows.len() as u64 != width || rows.first().map(|r| r.index) != Some(start) {
        // Another replica pruned them meanwhile.
        return Err(conflict(format!(
            "audit records {start}..{} are not all stored any more: another prune ran meanwhile; ask again",
            start + width
        )));
    }
    let path = EntryBundle::new(n, TILE_WIDTH)
        .map_err(|e| ApiError::internal(e.to_string()))?
        .path();
    let bundle = archive
        .read(&path)
        .await
        .map_err(refused)?
        .ok_or_else(|| {
            conflict(format!(
                "the archive lacks `{path}` (records {start}..{}): export the log again; nothing was pruned",
                start + width
            ))
        })?;
    let tile = ArchivedTile::from_bundle(n, &bundle).map_err(|reason| {
        conflict(format!(
            "the archive's `{path}` is not a full entry bundle: {reason}; nothing was pruned"
        ))
    })?;
    for (row, leaf) in rows.iter().zip(tile.leaves()) {
        if row.leaf_hash != *leaf {
            return Err(conflict(format!(
                "the archive's `{path}` differs from the log at record {}: its leaf hash is {}, the log's {}; nothing was pruned",
                row.index,
                leaf.to_base64(),
                row.leaf_hash.to_base64()
            )));
        }
    }
    let hashes = archive.hash_tile(n).await.map_err(refused)?;
    let expected: Vec<u8> = tile.leaves().iter().flat_map(|h| h.0).collect();
    if hashes != expected {
        return Err(conflict(format!(
            "the archive's level-0 hash tile {n} differs from the leaf hashes of records {start}..{}; nothing was pruned",
            start + width
        )));
    }
    Ok(())
}
