//! The audit log over HTTP: signed checkpoints, entries, inclusion and consistency
//! proofs, C2SP `tlog-proof` bundles and C2SP `tlog-tiles`.
//!
//! Anyone may read checkpoints, leaf hashes, proofs and hash tiles: that is what lets
//! anyone check the log. Entries themselves are shown in full only to admins, to the
//! issuer they concern, and to the people of the organisation owning that issuer
//! (viewer and up: the README's role table); everyone else sees their leaf hashes. Hashes in JSON are
//! standard base64 (as in checkpoints). Every size and range is checked against the
//! stored log first, so a bad one is a 400 that says what is wrong.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use bonafide_core::merkle::{self, EntryBundle, Hash, Prefetched, Tile};
use bonafide_core::tlog_proof::TlogProof;
use serde::Deserialize;
use utoipa::IntoParams;

use bonafide_store::StoreError;

use crate::audit::{AuditLogError, SignedCheckpoint};
use crate::audit_archive::ArchiveError;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode};
use crate::state::AppState;
pub use bonafide_api::audit::{ConsistencyProof, Entries, EntryView, InclusionProof};

/// Most entries one `GET /v1/audit/entries` returns.
pub const MAX_ENTRIES: u64 = 1000;
/// Entries returned when `end` is not given.
const DEFAULT_ENTRIES: u64 = 100;

impl From<AuditLogError> for ApiError {
    fn from(e: AuditLogError) -> Self {
        match e {
            AuditLogError::Entry(e) => ApiError::invalid(e.to_string()),
            // A full disk or an unavailable store answers as for any other write.
            AuditLogError::Store(e @ (StoreError::Full(_) | StoreError::Unavailable(_))) => {
                ApiError::from(e)
            }
            // Pruned records come from the log's export: away or unconfigured is a
            // passing condition for the operator to fix; altered is never served.
            AuditLogError::Archive(e @ ArchiveError::Mismatch { .. }) => {
                let mut err = ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    ErrorCode::AuditArchiveMismatch,
                    format!("{e}; nothing of it is served"),
                );
                err.internal = Some(e.to_string());
                err
            }
            AuditLogError::Archive(e) => {
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::AuditArchiveUnavailable,
                    e.to_string(),
                );
                err.internal = Some(e.to_string());
                err
            }
            // The log refuses to sign or to take entries: a state the operator must
            // look at, not the client's fault; 503 so clients retry elsewhere/later.
            other => {
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::AuditUnavailable,
                    "the audit log is unavailable; the request id identifies the cause in the server log",
                );
                err.internal = Some(other.to_string());
                err
            }
        }
    }
}

/// A read of the log failed: the store's errors answer as everywhere (as they did
/// before reads went through the archive), the archive's as above.
pub(crate) fn read_error(e: AuditLogError) -> ApiError {
    match e {
        AuditLogError::Store(e) => ApiError::from(e),
        other => ApiError::from(other),
    }
}

fn text_plain(body: String) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn store_size(state: &AppState) -> Result<u64, ApiError> {
    Ok(state.store.audit_size().await?)
}

/// Reads stored hashes the Merkle math asks for; a missing one means the store lost
/// part of the log, an internal error.
async fn prefetch(state: &AppState, indexes: Vec<u64>) -> Result<Prefetched, ApiError> {
    let hashes = state.audit.hashes(&indexes).await.map_err(|e| match e {
        // Asked for by the Merkle math within the log's size: the store lost it.
        AuditLogError::Store(StoreError::NotFound) => {
            ApiError::internal("audit hashes: a stored hash is missing")
        }
        // The store being away is a 503, as everywhere; the archive's 502/503.
        other => read_error(other),
    })?;
    Prefetched::new(indexes, hashes).map_err(|e| ApiError::internal(e.to_string()))
}

fn beyond(what: &str, value: u64, size: u64) -> ApiError {
    ApiError::bad_request(format!(
        "`{what}` {value} is beyond the log, which has {size} entries"
    ))
}

/// The latest signed checkpoint (C2SP tlog-checkpoint in a C2SP signed note), signed
/// now if none has been yet.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, description = "signed checkpoint note", content_type = "text/plain"),
              (status = 503, description = "the log cannot be signed (see the server log)")))]
pub async fn checkpoint(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let cp = state.audit.checkpoint_covering(0).await?;
    Ok(text_plain(cp.note.clone()))
}

/// `GET /v1/audit/entries` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// First index, inclusive.
    pub start: u64,
    /// Last index, exclusive; at most `start + 1000`. Default `start + 100`, capped at
    /// the log's size.
    #[serde(default)]
    pub end: Option<u64>,
}

/// Who reads the log: a key's caller (or nobody), or a person, with the issuers whose
/// entries they may read: those of every organisation they belong to where their role
/// may `Read` (viewer and up, the organisation's 2FA rule met), which are the entries
/// that organisation's issuer keys read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditReader {
    /// A key, or no credential.
    Key(Caller),
    /// A person, and the issuers they may read as.
    Person(Vec<bonafide_core::ids::IssuerId>),
}

impl AuditReader {
    fn anonymous(&self) -> bool {
        *self == AuditReader::Key(Caller::Anonymous)
    }
}

impl axum::extract::FromRequestParts<Arc<AppState>> for AuditReader {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        use crate::accounts::{Permission, PersonAuth};
        use crate::auth::Credential;
        let token = match crate::auth::credential(parts, state).await? {
            Credential::Nothing => return Ok(AuditReader::Key(Caller::Anonymous)),
            Credential::Key(record) => {
                return crate::auth::caller_of_record(&record).map(AuditReader::Key);
            }
            Credential::Person(token) => token,
        };
        let who = PersonAuth::from_token(state, token).await?;
        crate::request_id::set_acting_person(who.person.id.as_str());
        let mut issuers = Vec::new();
        for m in state.store.memberships_of(&who.person.id).await? {
            match who.require(state, &m.org_id, Permission::Read).await {
                Ok(_) => {}
                // Short of the role or of the organisation's second factor: not
                // this organisation's entries, the others' still.
                Err(e)
                    if e.status == StatusCode::FORBIDDEN || e.status == StatusCode::NOT_FOUND =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
            for owned in state.store.org_owned(&m.org_id).await? {
                if let bonafide_store::Owned::Issuer(id) = owned {
                    issuers.push(id);
                }
            }
        }
        Ok(AuditReader::Person(issuers))
    }
}

fn may_read(reader: &AuditReader, owner: Option<&bonafide_core::ids::IssuerId>) -> bool {
    match reader {
        AuditReader::Key(Caller::Admin) => true,
        AuditReader::Key(Caller::Issuer(id)) => owner == Some(id),
        AuditReader::Key(Caller::Anonymous | Caller::Receiver(_)) => false,
        AuditReader::Person(issuers) => owner.is_some_and(|o| issuers.contains(o)),
    }
}

/// Entries `[start, end)`: in full for admins, for the issuer each concerns and for
/// the people of the organisation owning it (viewer and up), leaf hashes only
/// otherwise.
#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit", params(EntriesQuery),
    security((), ("api_key" = []), ("access_token" = [])),
    responses((status = 200, body = Entries), (status = 400), (status = 401)))]
pub async fn entries(
    State(state): State<Arc<AppState>>,
    caller: AuditReader,
    ApiQuery(q): ApiQuery<EntriesQuery>,
) -> Result<ApiJson<Entries>, ApiError> {
    let size = store_size(&state).await?;
    if q.start >= size {
        return Err(beyond("start", q.start, size));
    }
    let end = match q.end {
        Some(end) if end > size => return Err(beyond("end", end, size)),
        Some(end) if end <= q.start => {
            return Err(ApiError::bad_request("`end` must be greater than `start`"));
        }
        Some(end) if end - q.start > MAX_ENTRIES => {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_ENTRIES} entries at a time: ask for `end` <= {}",
                q.start + MAX_ENTRIES
            )));
        }
        Some(end) => end,
        None => q.start.saturating_add(DEFAULT_ENTRIES).min(size),
    };
    // Whose entries a caller may read depends on their owners only for issuers and
    // people: admins read all, anonymous callers and receivers none.
    let owners = matches!(
        caller,
        AuditReader::Key(Caller::Issuer(_)) | AuditReader::Person(_)
    );
    let rows = state
        .audit
        .entries_read_by(q.start, end, owners)
        .await
        .map_err(read_error)?;
    Ok(ApiJson(Entries {
        entries: rows
            .into_iter()
            .map(|row| EntryView {
                index: row.index,
                leaf_hash: row.leaf_hash.to_base64(),
                entry: may_read(&caller, row.owner.as_ref())
                    .then(|| String::from_utf8_lossy(&row.entry).into_owned()),
            })
            .collect(),
    }))
}

/// `GET /v1/audit/proof/inclusion` query: `index` or `leaf_hash`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The entry's index. Exactly one of `index` and `leaf_hash` (both, or neither,
    /// is a 400).
    #[serde(default)]
    pub index: Option<u64>,
    /// Or its leaf hash (32 bytes, standard base64; URL-encode `+` and `/`). Exactly
    /// one of `index` and `leaf_hash`.
    #[serde(default)]
    #[param(pattern = "^[A-Za-z0-9+/]{43}=$")]
    pub leaf_hash: Option<String>,
    /// The tree to prove inclusion in. Default: the latest signed checkpoint that
    /// contains the entry (one is signed now if needed).
    #[serde(default)]
    pub tree_size: Option<u64>,
}

/// The inclusion proof of one entry (by index or leaf hash) in a tree.
#[utoipa::path(get, path = "/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 400), (status = 404)))]
pub async fn inclusion(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<ApiJson<InclusionProof>, ApiError> {
    let size = store_size(&state).await?;
    let index = match (q.index, q.leaf_hash) {
        (Some(index), None) => index,
        (None, Some(text)) => {
            let leaf = Hash::from_base64(text.trim()).map_err(|_| {
                ApiError::bad_request("`leaf_hash` is not 32 bytes of standard base64")
            })?;
            // Queued behind any other lookup by hash (see `AppState::leaf_lookups`);
            // the request timeout bounds the wait.
            let _one_at_a_time = state
                .leaf_lookups
                .acquire()
                .await
                .map_err(|_| ApiError::internal("leaf-hash lookups closed"))?;
            state
                .audit
                .find(&leaf)
                .await
                .map_err(read_error)?
                .ok_or_else(|| ApiError::not_found("entry with this leaf hash"))?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `index` and `leaf_hash`",
            ));
        }
    };
    if index >= size {
        return Err(beyond("index", index, size));
    }
    let tree_size = match q.tree_size {
        Some(t) if t > size => return Err(beyond("tree_size", t, size)),
        Some(t) if index >= t => {
            return Err(ApiError::bad_request(format!(
                "entry {index} is not in a tree of size {t}"
            )));
        }
        Some(t) => t,
        None => state.audit.checkpoint_covering(index + 1).await?.size,
    };
    let (leaf, hashes) = prove_inclusion(&state, tree_size, index).await?;
    Ok(ApiJson(InclusionProof {
        index,
        tree_size,
        leaf_hash: leaf.to_base64(),
        hashes: hashes.iter().map(Hash::to_base64).collect(),
    }))
}

/// Leaf hash and audit path of `index` in the tree of `tree_size`, in one store read.
async fn prove_inclusion(
    state: &AppState,
    tree_size: u64,
    index: u64,
) -> Result<(Hash, Vec<Hash>), ApiError> {
    let mut indexes = merkle::inclusion_proof_indexes(tree_size, index);
    let leaf_at = merkle::stored_hash_index(0, index);
    indexes.push(leaf_at);
    let pre = prefetch(state, indexes).await?;
    let leaf = merkle::HashReader::read_hashes(&pre, &[leaf_at])
        .ok()
        .and_then(|h| h.first().copied())
        .ok_or_else(|| ApiError::internal("leaf hash missing"))?;
    let proof = merkle::prove_record(tree_size, index, &pre)
        .map_err(|e| ApiError::internal(format!("inclusion proof: {e}")))?;
    Ok((leaf, proof))
}

/// `GET /v1/audit/proof/consistency` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size. Default: the latest signed checkpoint's.
    #[serde(default)]
    pub second: Option<u64>,
}

/// The proof that the tree of `first` entries is a prefix of the tree of `second`.
#[utoipa::path(get, path = "/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400)))]
pub async fn consistency(
    State(state): State<Arc<AppState>>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<ApiJson<ConsistencyProof>, ApiError> {
    let size = store_size(&state).await?;
    let second = match q.second {
        Some(s) if s > size => return Err(beyond("second", s, size)),
        Some(s) => s,
        None => state.audit.checkpoint_covering(0).await?.size,
    };
    if q.first > second {
        return Err(ApiError::bad_request(format!(
            "`first` ({}) must not be larger than `second` ({second})",
            q.first
        )));
    }
    let pre = prefetch(&state, merkle::consistency_proof_indexes(second, q.first)).await?;
    let hashes = merkle::prove_tree(second, q.first, &pre)
        .map_err(|e| ApiError::internal(format!("consistency proof: {e}")))?;
    Ok(ApiJson(ConsistencyProof {
        first: q.first,
        second,
        hashes: hashes.iter().map(Hash::to_base64).collect(),
    }))
}

/// `GET /v1/audit/proof/bundle` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BundleQuery {
    /// The entry's index.
    pub index: u64,
}

/// A C2SP `tlog-proof@v1` for one entry: index, inclusion proof and the signed
/// checkpoint it leads to; checkable offline with the log key
/// (`bonafide audit verify --proof-file`). For callers who may read the entry, the
/// proof's `extra` line carries the canonical entry itself, so the file alone shows
/// what was logged; the proof authenticates it (its hash is the proven leaf).
#[utoipa::path(get, path = "/v1/audit/proof/bundle", tag = "audit", params(BundleQuery),
    security((), ("api_key" = []), ("access_token" = [])),
    responses((status = 200, description = "c2sp.org/tlog-proof@v1", content_type = "text/plain"), (status = 400), (status = 401)))]
pub async fn bundle(
    State(state): State<Arc<AppState>>,
    caller: AuditReader,
    ApiQuery(q): ApiQuery<BundleQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let size = store_size(&state).await?;
    if q.index >= size {
        return Err(beyond("index", q.index, size));
    }
    let cp: Arc<SignedCheckpoint> = state.audit.checkpoint_covering(q.index + 1).await?;
    let (_, hashes) = prove_inclusion(&state, cp.size, q.index).await?;
    let extra = if caller.anonymous() {
        None
    } else {
        state
            .audit
            .entries(q.index, q.index + 1)
            .await
            .map_err(read_error)?
            .into_iter()
            .find(|row| may_read(&caller, row.owner.as_ref()))
            .map(|row| row.entry)
    };
    // With the entry, the answer is for this caller only: no cache may keep it.
    let cache = if extra.is_some() {
        "no-store"
    } else {
        "no-cache"
    };
    let proof = TlogProof {
        extra,
        index: q.index,
        hashes,
        checkpoint: cp.note.clone(),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
        ],
        proof.to_text(),
    ))
}

/// C2SP tlog-tiles: hash tiles `tile/<L>/<N>[.p/<W>]` for everyone, entry bundles
/// `tile/entries/<N>[.p/<W>]` for callers allowed to read every entry in them (admins,
/// the issuer all of them concern, or a person of the organisation owning it).
#[utoipa::path(get, path = "/v1/audit/tile/{path}", tag = "audit",
    params(("path" = crate::openapi::values::TilePath, Path, description = "tile path after `tile/`, e.g. `0/x001/234.p/7` or `entries/000`")),
    security((), ("api_key" = []), ("access_token" = [])),
    responses((status = 200, description = "tile bytes", content_type = "application/octet-stream"),
              (status = 400), (status = 401), (status = 403), (status = 404)))]
pub async fn tile(
    State(state): State<Arc<AppState>>,
    caller: AuditReader,
    ApiPath(path): ApiPath<String>,
) -> Result<impl IntoResponse, ApiError> {
    let full = format!("tile/{path}");
    let size = store_size(&state).await?;
    let (body, partial) = if path.starts_with("entries/") {
        let bundle = EntryBundle::parse_path(&full)
            .map_err(|e| ApiError::bad_request(format!("{e}; see c2sp.org/tlog-tiles")))?;
        (
            entry_bundle(&state, &caller, bundle, size).await?,
            bundle.is_partial(),
        )
    } else {
        let tile = Tile::parse_path(&full)
            .map_err(|e| ApiError::bad_request(format!("{e}; see c2sp.org/tlog-tiles")))?;
        (hash_tile(&state, tile, size).await?, tile.is_partial())
    };
    // A full tile never changes; a partial one is replaced by a wider one. Entry
    // bundles need a key (they hold full entries): only the caller's own cache may
    // keep them, never a shared one.
    let cache = match (path.starts_with("entries/"), partial) {
        (false, false) => "public, max-age=31536000, immutable",
        (false, true) => "public, no-cache",
        (true, false) => "private, max-age=31536000, immutable",
        (true, true) => "private, no-cache",
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    ))
}

/// Records up to and including a tile's last hash; `None` past any possible log.
fn tile_end(level: u8, n: u64, width: u16) -> Option<u64> {
    let shift = u32::from(level).checked_mul(u32::from(merkle::TILE_HEIGHT))?;
    n.checked_mul(u64::from(merkle::TILE_WIDTH))?
        .checked_add(u64::from(width))?
        .checked_mul(1u64.checked_shl(shift)?)
}

async fn hash_tile(state: &AppState, tile: Tile, size: u64) -> Result<Vec<u8>, ApiError> {
    let exists = tile_end(tile.level(), tile.n(), tile.width()).is_some_and(|end| end <= size);
    let indexes = tile
        .stored_hash_indexes()
        .filter(|_| exists)
        .ok_or_else(|| ApiError::not_found("tile"))?;
    let pre = prefetch(state, indexes.clone()).await?;
    let hashes = merkle::HashReader::read_hashes(&pre, &indexes)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(hashes.iter().flat_map(|h| h.0).collect())
}

async fn entry_bundle(
    state: &AppState,
    caller: &AuditReader,
    bundle: EntryBundle,
    size: u64,
) -> Result<Vec<u8>, ApiError> {
    if caller.anonymous() {
        return Err(ApiError::unauthorized(
            "entry bundles hold full entries: use an admin key, or an issuer key for bundles of only that issuer's entries (leaf hashes are public at /v1/audit/entries)",
        ));
    }
    let start = bundle.n().checked_mul(u64::from(merkle::TILE_WIDTH));
    let end = start.and_then(|s| s.checked_add(u64::from(bundle.width())));
    let (Some(start), Some(end)) = (start, end) else {
        return Err(ApiError::not_found("entry bundle"));
    };
    if end > size {
        return Err(ApiError::not_found("entry bundle"));
    }
    let rows = state.audit.entries(start, end).await.map_err(read_error)?;
    if rows.len() as u64 != end - start {
        return Err(ApiError::internal("audit entries missing from the store"));
    }
    if let Some(row) = rows.iter().find(|r| !may_read(caller, r.owner.as_ref())) {
        return Err(ApiError::forbidden(format!(
            "entry {} in this bundle is not yours to read; use /v1/audit/entries for leaf hashes",
            row.index
        )));
    }
    let mut body = Vec::with_capacity(rows.iter().map(|r| r.entry.len() + 2).sum());
    for row in rows {
        let len = u16::try_from(row.entry.len())
            .map_err(|_| ApiError::internal("audit entry over 65535 bytes"))?;
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&row.entry);
    }
    Ok(body)
}
