//! The audit log as static C2SP tlog-tiles: `bonafide audit export --to DIR` writes
//! the registry's latest signed checkpoint and every tile it covers into a directory
//! any web server or object store can serve; `bonafide audit verify --tiles` checks
//! such an export, from a directory or from an http(s) base URL.
//!
//! Layout (c2sp.org/tlog-tiles): `checkpoint`, `tile/<L>/<N>[.p/<W>]`,
//! `tile/entries/<N>[.p/<W>]`. Full tiles and the partial tiles the checkpoint needs
//! are written, so the directory verifies on its own against its checkpoint. Every
//! tile file is immutable (a partial tile's path names its width), so a file is never
//! rewritten; only `checkpoint` is replaced, last, once every tile it covers is on
//! disk. Partial tiles of earlier checkpoints stay (they still verify against those).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_api::audit::ConsistencyProof;
use bonafide_client::Client;
use bonafide_core::merkle::{self, EntryBundle, HASH_SIZE, Hash, TILE_HEIGHT, TILE_WIDTH, Tile};
use bonafide_core::note::{Checkpoint, NoteVerifier};
use clap::Args;
use serde_json::{Value, json};

use crate::audit::{Failed, failed, open_cp, parse_log_key};
use crate::output::Out;
use crate::progress;

/// Largest checkpoint accepted, bytes.
const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;
/// Largest entry bundle accepted: 256 entries of at most 65,535 bytes each.
const MAX_BUNDLE_BYTES: usize = 256 * (2 + 65_535);

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The directory to write the tiles to (created if missing). Run again to add
    /// what the log gained since: only new tiles are fetched and written.
    #[arg(long)]
    pub to: PathBuf,
    /// The registry's log key (`<origin>+<hex id>+<base64>`). Without it, the key
    /// `audit verify` pinned for this registry (state file), else the one the
    /// registry announces (trust on first use, said in the output).
    #[arg(long)]
    pub log_key: Option<String>,
    /// The `audit verify` state file to read a pinned key from (never written here).
    #[arg(long, env = "BONAFIDE_AUDIT_STATE")]
    pub state: Option<PathBuf>,
}

/// Where tiles are read from: an export directory or an http(s) base URL.
enum Source {
    Dir(PathBuf),
    Http {
        http: reqwest::Client,
        base: String,
        bearer: Option<String>,
    },
}

impl Source {
    fn parse(text: &str, registry: &str) -> Result<Source> {
        if text.starts_with("http://") || text.starts_with("https://") {
            // The API key goes only to the registry it is for, never to another host.
            let registry = registry.trim_end_matches('/');
            let bearer = (text == registry || text.starts_with(&format!("{registry}/")))
                .then(api_key)
                .flatten();
            Ok(Source::Http {
                http: http_client()?,
                base: text.trim_end_matches('/').to_owned(),
                bearer,
            })
        } else {
            Ok(Source::Dir(PathBuf::from(text)))
        }
    }

    /// The registry's own tile endpoints, with the caller's key (entry bundles need one).
    fn registry(url: &str) -> Result<Source> {
        Ok(Source::Http {
            http: http_client()?,
            base: format!("{}/v1/audit", url.trim_end_matches('/')),
            bearer: api_key(),
        })
    }

    fn describe(&self) -> String {
        match self {
            Source::Dir(d) => d.display().to_string(),
            Source::Http { base, .. } => base.clone(),
        }
    }

    /// The bytes at `path` (`checkpoint`, `tile/…`); `None` if there is none.
    async fn get(&self, path: &str, max: usize) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Dir(dir) => read_file(&dir.join(path), max),
            Source::Http { http, base, bearer } => {
                let url = format!("{base}/{path}");
                let mut waited = 0;
                let resp = loop {
                    let mut req = http.get(&url);
                    if let Some(k) = bearer {
                        req = req.bearer_auth(k);
                    }
                    let resp = req
                        .send()
                        .await
                        .with_context(|| format!("cannot reach {url}"))?;
                    // A large export can meet the registry's rate limit: wait as told
                    // (bounded), rather than fail half-way.
                    let wait = retry_after(&resp);
                    match wait {
                        Some(secs) if waited + secs <= MAX_RETRY_WAIT_SECS => {
                            waited += secs;
                            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
                        }
                        _ => break resp,
                    }
                };
                let status = resp.status();
                if status == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    let body = resp.text().await.unwrap_or_default();
                    bail!(
                        "{url} refused ({status}): entry bundles need an admin key in BONAFIDE_API_KEY ({})",
                        body.trim()
                    );
                }
                if !status.is_success() {
                    let body = resp.text().await.unwrap_or_default();
                    bail!("{url} answered {status}: {}", body.trim());
                }
                if resp.content_length().is_some_and(|l| l > max as u64) {
                    bail!("{url} is over {max} bytes");
                }
                let bytes = resp
                    .bytes()
                    .await
                    .with_context(|| format!("cannot read {url}"))?;
                if bytes.len() > max {
                    bail!("{url} is over {max} bytes");
                }
                Ok(Some(bytes.to_vec()))
            }
        }
    }

    /// Like [`Source::get`], a missing file being a failed check: the export does
    /// not hold what its checkpoint covers.
    async fn need(&self, path: &str, max: usize) -> Result<Vec<u8>> {
        self.get(path, max).await?.ok_or_else(|| {
            failed(format!(
                "{path} is missing from {} (its checkpoint covers it)",
                self.describe()
            ))
        })
    }
}

/// Longest an export waits in all on one file's `429`/`503` answers.
const MAX_RETRY_WAIT_SECS: u64 = 300;

/// Seconds to wait before asking again, for a `429` or `503` answer (its
/// `Retry-After`, at least 1 s, default 1 s); `None` for any other answer.
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    let status = resp.status();
    if status != reqwest::StatusCode::TOO_MANY_REQUESTS
        && status != reqwest::StatusCode::SERVICE_UNAVAILABLE
    {
        return None;
    }
    let secs = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1);
    Some(secs.clamp(1, 60))
}

fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .context("cannot build an HTTP client")
}

fn api_key() -> Option<String> {
    std::env::var("BONAFIDE_API_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
}

fn read_file(path: &Path, max: usize) -> Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > max as u64 => bail!("`{}` is over {max} bytes", path.display()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!("cannot read `{}`: {e}", path.display())),
    }
    std::fs::read(path)
        .map(Some)
        .with_context(|| format!("cannot read `{}`", path.display()))
}

// ---------------------------------------------------------------------------------
// Checks (pure: bytes in, verdict out)

/// The hash tiles of one tree, by (level, index).
#[derive(Default)]
struct HashTiles(HashMap<(u8, u64), Vec<u8>>);

impl HashTiles {
    /// Adds `tile`'s bytes, checked to be `width` hashes long.
    fn insert(&mut self, tile: Tile, bytes: Vec<u8>) -> Result<()> {
        if bytes.len() != tile.byte_len() {
            return Err(failed(format!(
                "{} has {} bytes, not {} ({} hashes)",
                tile.path(),
                bytes.len(),
                tile.byte_len(),
                tile.width()
            )));
        }
        self.0.insert((tile.level(), tile.n()), bytes);
        Ok(())
    }

    fn hash(&self, level: u8, n: u64, at: usize) -> Option<Hash> {
        let bytes = self.0.get(&(level, n))?;
        let start = at.checked_mul(HASH_SIZE)?;
        let chunk = bytes.get(start..start.checked_add(HASH_SIZE)?)?;
        <[u8; HASH_SIZE]>::try_from(chunk).ok().map(Hash)
    }

    /// The node at Merkle level `k`, index `i`: from the tile at level `k / 8`,
    /// hashing the `2^(k mod 8)` hashes under it.
    fn node(&self, k: u8, i: u64) -> Option<Hash> {
        self.subtree(k / TILE_HEIGHT, k % TILE_HEIGHT, i)
    }

    /// The root of tile (`level`, `n`) computed from its own 256 hashes: the node
    /// its parent tile holds.
    fn tile_root(&self, level: u8, n: u64) -> Option<Hash> {
        self.subtree(level, TILE_HEIGHT, n)
    }

    /// The node `r` levels above the hashes of tile level `level`, index `i`, from
    /// the `2^r` hashes under it (`r <= 8`, so they lie in one tile).
    fn subtree(&self, level: u8, r: u8, i: u64) -> Option<Hash> {
        let first = i.checked_shl(u32::from(r))?;
        let n = first / u64::from(TILE_WIDTH);
        let offset = usize::try_from(first % u64::from(TILE_WIDTH)).ok()?;
        let mut row = (0..1usize << r)
            .map(|j| self.hash(level, n, offset + j))
            .collect::<Option<Vec<Hash>>>()?;
        while row.len() > 1 {
            row = row
                .chunks(2)
                .map(|p| match p {
                    [l, r] => merkle::node_hash(l, r),
                    [one] => *one,
                    _ => merkle::empty_tree_hash(),
                })
                .collect();
        }
        row.first().copied()
    }
}

/// The leaf hashes of an entry bundle (`u16` big-endian length, then the entry, per
/// entry), checked to hold exactly `width` entries and nothing more.
fn bundle_leaves(bundle: EntryBundle, bytes: &[u8]) -> Result<Vec<Hash>> {
    let mut leaves = Vec::with_capacity(usize::from(bundle.width()));
    let mut rest = bytes;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| failed(format!("{} is cut short", bundle.path())))?;
        let len = usize::from(u16::from_be_bytes(*len));
        let entry = tail
            .get(..len)
            .ok_or_else(|| failed(format!("{} is cut short", bundle.path())))?;
        leaves.push(merkle::leaf_hash(entry));
        rest = tail.get(len..).unwrap_or_default();
    }
    if leaves.len() != usize::from(bundle.width()) {
        return Err(failed(format!(
            "{} holds {} entries, not {}",
            bundle.path(),
            leaves.len(),
            bundle.width()
        )));
    }
    Ok(leaves)
}

/// Checks an entry bundle against its level-0 tile: leaf hash `i` of the tile is
/// SHA-256(0x00 ‖ entry `i`).
fn check_bundle(tiles: &HashTiles, bundle: EntryBundle, bytes: &[u8]) -> Result<()> {
    for (i, leaf) in bundle_leaves(bundle, bytes)?.iter().enumerate() {
        if tiles.hash(0, bundle.n(), i) != Some(*leaf) {
            let index = bundle.n() * u64::from(TILE_WIDTH) + i as u64;
            return Err(failed(format!(
                "{}: entry {index} does not hash to its leaf in {} (altered entry or tile)",
                bundle.path(),
                bundle.tile().path()
            )));
        }
    }
    Ok(())
}

/// Checks the hash tiles of a tree against its checkpoint: every full tile hashes to
/// its entry in the tile above, and the tiles' right edge gives the signed root. With
/// the entry bundles checked against level 0, every byte is bound to the signature.
fn check_hash_tiles(tiles: &HashTiles, cp: &Checkpoint) -> Result<()> {
    for tile in merkle::tiles_for_size(cp.size).filter(|t| !t.is_partial()) {
        let top = tile.level() + 1;
        let root = tiles.tile_root(tile.level(), tile.n());
        let parent_n = tile.n() / u64::from(TILE_WIDTH);
        let at = usize::try_from(tile.n() % u64::from(TILE_WIDTH)).unwrap_or(usize::MAX);
        if root.is_none() || root != tiles.hash(top, parent_n, at) {
            return Err(failed(format!(
                "{} does not hash to its entry in the tile above (tile/{top}/…): altered tile",
                tile.path()
            )));
        }
    }
    let mut nodes = HashMap::new();
    for index in merkle::tree_hash_indexes(cp.size) {
        let (k, i) = merkle::split_stored_hash_index(index);
        let h = tiles
            .node(k, i)
            .ok_or_else(|| failed(format!("the tiles lack node ({k}, {i}) of the tree")))?;
        nodes.insert(index, h);
    }
    let root = merkle::tree_hash(cp.size, &nodes)
        .map_err(|e| failed(format!("the tiles do not make a tree: {e}")))?;
    if root != cp.root {
        return Err(failed(format!(
            "the tiles hash to root {}, but the checkpoint of size {} signs {}: altered tiles",
            root.to_base64(),
            cp.size,
            cp.root.to_base64()
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Keys

/// The key to trust, as `audit verify` pins it: `--log-key`, else the state file's
/// key for `registry`, else (only when `announced` is given) the announced one.
fn pinned_key(
    log_key: Option<&str>,
    state: Option<&Path>,
    registry: Option<&str>,
    origin: Option<&str>,
    announced: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<NoteVerifier> {
    if let Some(k) = log_key {
        return parse_log_key(k);
    }
    let path = match state {
        Some(p) => p.to_owned(),
        None => crate::audit::default_state_path()?,
    };
    let file = crate::audit::load_state(&path)?;
    if let Some(r) = registry
        && let Some(s) = file.logs.get(r)
    {
        return parse_log_key(&s.log_key);
    }
    // By the log's name: offline, the state file's entry for the log it names.
    if let Some(origin) = origin {
        let mut keys: Vec<&str> = file
            .logs
            .values()
            .map(|s| s.log_key.as_str())
            .filter(|k| k.split('+').next() == Some(origin))
            .collect();
        keys.dedup();
        if let [one] = keys.as_slice() {
            return parse_log_key(one);
        }
    }
    match announced {
        Some(k) => {
            notes.push(format!(
                "trusted the log key the registry announced, on first use: {k} (pass --log-key to pin one you got elsewhere)"
            ));
            parse_log_key(k)
        }
        None => bail!(
            "no log key to check against: pass --log-key (`bonafide audit log-key` prints the registry's; compare it with one published elsewhere)"
        ),
    }
}

fn origin_of(note_text: &str) -> Option<&str> {
    note_text.lines().next()
}

// ---------------------------------------------------------------------------------
// verify --tiles

/// What a full check of an export found.
struct Checked {
    cp: Checkpoint,
    note_text: String,
    tiles: HashTiles,
    hash_tiles: usize,
    bundles: usize,
}

/// Checks everything a checkpoint covers, read from `source`.
async fn check_source(source: &Source, verifier: &NoteVerifier) -> Result<Checked> {
    let note_bytes = source.need("checkpoint", MAX_CHECKPOINT_BYTES).await?;
    let note_text = String::from_utf8(note_bytes)
        .map_err(|_| failed(format!("{}/checkpoint is not text", source.describe())))?;
    let cp = open_cp(&note_text, verifier)
        .map_err(|e| {
            failed(format!(
                "{}/checkpoint does not verify with log key {}: {e}",
                source.describe(),
                verifier.key_string()
            ))
        })?
        .checkpoint()
        .clone();
    let mut tiles = HashTiles::default();
    let mut hash_tiles = 0;
    for tile in merkle::tiles_for_size(cp.size) {
        let bytes = source.need(&tile.path(), tile.byte_len()).await?;
        tiles.insert(tile, bytes)?;
        hash_tiles += 1;
    }
    check_hash_tiles(&tiles, &cp)?;
    let mut bundles = 0;
    for bundle in merkle::tiles_for_size(cp.size).filter_map(|t| t.entry_bundle()) {
        let bytes = source.need(&bundle.path(), MAX_BUNDLE_BYTES).await?;
        check_bundle(&tiles, bundle, &bytes)?;
        bundles += 1;
    }
    Ok(Checked {
        cp,
        note_text,
        tiles,
        hash_tiles,
        bundles,
    })
}

/// `bonafide audit verify --tiles DIR_OR_URL`.
pub async fn verify(
    registry: &str,
    location: &str,
    log_key: Option<&str>,
    state: Option<&Path>,
    out: Out,
) -> Result<ExitCode> {
    let source = Source::parse(location, registry)?;
    let result = async {
        // The key is needed before anything is trusted; the checkpoint's first line
        // names the log, to find its key in the state file when none is given.
        let mut notes = Vec::new();
        let verifier = if log_key.is_some() {
            pinned_key(log_key, state, None, None, None, &mut notes)?
        } else {
            let note = source.need("checkpoint", MAX_CHECKPOINT_BYTES).await?;
            let text = String::from_utf8_lossy(&note).into_owned();
            pinned_key(None, state, None, origin_of(&text), None, &mut notes)?
        };
        let started = Instant::now();
        let c = progress::during(
            &format!("checking the tiles in {}", source.describe()),
            check_source(&source, &verifier),
        )
        .await?;
        let root = c.cp.root.to_base64();
        if out.json {
            println!(
                "{}",
                json!({
                    "ok": true,
                    "origin": c.cp.origin,
                    "tree_size": c.cp.size,
                    "root": root,
                    "hash_tiles": c.hash_tiles,
                    "entry_bundles": c.bundles,
                    "seconds": started.elapsed().as_secs_f64(),
                })
            );
        } else {
            println!(
                "tiles OK: log {} has {} entries, root {} ({} hash tiles and {} entry bundles checked in {})",
                c.cp.origin,
                c.cp.size,
                root,
                c.hash_tiles,
                c.bundles,
                source.describe()
            );
        }
        Ok(())
    }
    .await;
    crate::audit::run_checked(result, out)
}

// ---------------------------------------------------------------------------------
// export

/// Writes `bytes` to `path` crash-safely: a temp file beside it, fsync, rename. The
/// rename is durable once its directory is fsync'ed: [`sync_dir`], once per
/// directory after a batch (before the checkpoint that needs the batch is written).
fn write_durably(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("`{}` has no directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(dir.to_owned())
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directories open read-only on Unix; fsync makes the new name durable.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync `{}`", dir.display()))
}

/// Whether tile or bundle `t` is among those a tree of `size` records is served as
/// (so already checked against an earlier checkpoint of that size).
fn covered(t: Tile, size: u64) -> bool {
    t.belongs_to(size)
}

/// `bonafide audit export --to DIR`.
pub async fn export(url: &str, args: ExportArgs, out: Out) -> Result<ExitCode> {
    let result = export_checked(url, &args, out).await;
    crate::audit::run_checked(result, out)
}

async fn export_checked(url: &str, args: &ExportArgs, out: Out) -> Result<()> {
    let started = Instant::now();
    let dir = &args.to;
    // 0. The directory must be writable before anything is fetched.
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the export directory `{}`", dir.display()))?;
    let probe = dir.join(format!(".bonafide-export-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("cannot write to the export directory `{}`", dir.display()))?;

    // 1. The key.
    // Discovery and proofs are public: the key is spent only on tiles (rate limits).
    let client = Client::new(url, None).map_err(crate::explain)?;
    let discovery: Value = progress::during(
        "asking the registry for its log key",
        client.get("/.well-known/bonafide-configuration"),
    )
    .await
    .map_err(crate::explain)?;
    let announced = discovery["audit_log"]["log_key"].as_str();
    let mut notes = Vec::new();
    let verifier = pinned_key(
        args.log_key.as_deref(),
        args.state.as_deref(),
        Some(client.base()),
        None,
        announced,
        &mut notes,
    )?;
    if announced.is_some_and(|a| a != verifier.key_string()) {
        return Err(failed(format!(
            "the registry announces log key {} but {} is pinned",
            announced.unwrap_or_default(),
            verifier.key_string()
        )));
    }

    // 2. What is already exported: checked whole against its own checkpoint.
    let local = Source::Dir(dir.clone());
    let old = if dir.join("checkpoint").exists() {
        let c = progress::during(
            "checking what is already exported",
            check_source(&local, &verifier),
        )
        .await
        .map_err(|e| match e.downcast_ref::<Failed>() {
            Some(f) => failed(format!(
                "the export in `{}` is damaged, nothing written: {}",
                dir.display(),
                f.0
            )),
            None => e,
        })?;
        Some(c)
    } else {
        None
    };

    // 3. The registry's latest checkpoint, and that it extends the exported one.
    let registry = Source::registry(url)?;
    let note_bytes = registry
        .get("checkpoint", MAX_CHECKPOINT_BYTES)
        .await?
        .ok_or_else(|| anyhow!("{url} serves no audit checkpoint"))?;
    let note_text = String::from_utf8(note_bytes)
        .map_err(|_| failed("the registry's checkpoint is not text"))?;
    let cp = open_cp(&note_text, &verifier)
        .map_err(|e| {
            failed(format!(
                "the registry's latest checkpoint does not verify: {e}"
            ))
        })?
        .checkpoint()
        .clone();
    let old_size = old.as_ref().map_or(0, |o| o.cp.size);
    if let Some(o) = &old {
        if cp.size < o.cp.size {
            return Err(failed(format!(
                "the log shrank: the registry's latest checkpoint has {} entries, the export has {} (rolled back or rewritten); nothing written",
                cp.size, o.cp.size
            )));
        }
        if cp.size == o.cp.size && cp.root != o.cp.root {
            return Err(failed(format!(
                "split view: the registry signs root {} for size {}, the export holds {}; nothing written",
                cp.root.to_base64(),
                cp.size,
                o.cp.root.to_base64()
            )));
        }
        if cp.size > o.cp.size && o.cp.size > 0 {
            let v: ConsistencyProof = client
                .get(&format!(
                    "/v1/audit/proof/consistency?first={}&second={}",
                    o.cp.size, cp.size
                ))
                .await
                .map_err(crate::explain)?;
            let proof = crate::audit::hashes_of(&v.hashes)?;
            merkle::check_tree(&proof, cp.size, &cp.root, o.cp.size, &o.cp.root).map_err(|e| {
                failed(format!(
                    "split view: the registry's checkpoint of size {} does not extend the exported one of size {} ({e}); nothing written",
                    cp.size, o.cp.size
                ))
            })?;
            notes.push(format!(
                "consistent with the exported checkpoint of size {}",
                o.cp.size
            ));
        }
    }

    // 4. Gather every tile: what the old export covers from disk (checked in 2 and
    // bound to the new root by the consistency proof); the rest from the registry.
    // A file on disk the old checkpoint does not cover (a run that stopped before
    // its checkpoint) is compared with what the registry serves.
    let mut tiles = match old {
        Some(o) if o.cp.size == cp.size && o.note_text == note_text => {
            print_result(out, &cp, 0, 0, &notes, dir, started);
            return Ok(());
        }
        Some(o) => o.tiles,
        None => HashTiles::default(),
    };
    let mut to_write: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut fetched = 0usize;
    let wanted: Vec<Tile> = merkle::tiles_for_size(cp.size).collect();
    let fetching = format!("fetching the tiles of {} entries", cp.size);
    progress::during(&fetching, async {
        for &tile in &wanted {
            if covered(tile, old_size) {
                continue;
            }
            let path = tile.path();
            let bytes = registry.get(&path, tile.byte_len()).await?.ok_or_else(|| {
                failed(format!(
                    "the registry does not serve {path}, which its checkpoint covers"
                ))
            })?;
            fetched += 1;
            keep(dir, &path, bytes.clone(), &mut to_write)?;
            tiles
                .insert(tile, bytes)
                .map_err(|e| failed(format!("the registry serves a malformed tile: {e}")))?;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await?;
    check_hash_tiles(&tiles, &cp).map_err(|e| match e.downcast_ref::<Failed>() {
        Some(f) => failed(format!(
            "the registry serves tiles that do not match its own checkpoint, nothing written: {}",
            f.0
        )),
        None => e,
    })?;
    progress::during("fetching the entry bundles", async {
        for bundle in wanted.iter().filter_map(|t| t.entry_bundle()) {
            if covered(bundle.tile(), old_size) {
                continue;
            }
            let path = bundle.path();
            let bytes = registry.get(&path, MAX_BUNDLE_BYTES).await?.ok_or_else(|| {
                failed(format!(
                    "the registry does not serve {path}, which its checkpoint covers"
                ))
            })?;
            fetched += 1;
            check_bundle(&tiles, bundle, &bytes).map_err(|e| match e.downcast_ref::<Failed>() {
                Some(f) => failed(format!(
                    "the registry serves an entry bundle that does not match its checkpoint, nothing written: {}",
                    f.0
                )),
                None => e,
            })?;
            keep(dir, &path, bytes, &mut to_write)?;
        }
        Ok::<(), anyhow::Error>(())
    })
    .await?;

    // 5. Write: tiles first, the checkpoint last, so a reader never sees a
    // checkpoint whose tiles are missing.
    let written = to_write.len();
    let mut dirs = std::collections::BTreeSet::new();
    for (path, bytes) in &to_write {
        // The file's directory and those above it, up to DIR: a directory made
        // for this tile (`tile/0/x001`) is itself a new name in its parent.
        let mut d = write_durably(&dir.join(path), bytes)?;
        while d.starts_with(dir) && dirs.insert(d.clone()) {
            match d.parent() {
                Some(p) => d = p.to_owned(),
                None => break,
            }
        }
    }
    // Every tile's name durable before the checkpoint naming them is written.
    for d in &dirs {
        sync_dir(d)?;
    }
    sync_dir(&write_durably(
        &dir.join("checkpoint"),
        note_text.as_bytes(),
    )?)?;
    notes.push(format!("fetched {fetched} files from the registry"));
    print_result(out, &cp, written, fetched, &notes, dir, started);
    Ok(())
}

/// Queues `bytes` for `path` unless the file already holds exactly them; a file
/// holding something else is never overwritten.
fn keep(
    dir: &Path,
    path: &str,
    bytes: Vec<u8>,
    to_write: &mut BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    match read_file(&dir.join(path), MAX_BUNDLE_BYTES)? {
        Some(existing) if existing == bytes => Ok(()),
        Some(_) => Err(failed(format!(
            "`{}` differs from what the registry serves now: split view or tampering; it is not overwritten, nothing written",
            dir.join(path).display()
        ))),
        None => {
            to_write.insert(path.to_owned(), bytes);
            Ok(())
        }
    }
}

fn print_result(
    out: Out,
    cp: &Checkpoint,
    written: usize,
    fetched: usize,
    notes: &[String],
    dir: &Path,
    started: Instant,
) {
    let seconds = started.elapsed().as_secs_f64();
    if out.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "origin": cp.origin,
                "tree_size": cp.size,
                "root": cp.root.to_base64(),
                "written": written,
                "fetched": fetched,
                "to": dir.display().to_string(),
                "seconds": seconds,
                "notes": notes,
            })
        );
    } else {
        println!(
            "exported log {} ({} entries, root {}) to {}: {written} files written in {seconds:.2} s",
            cp.origin,
            cp.size,
            cp.root.to_base64(),
            dir.display()
        );
        for n in notes {
            println!("{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    /// The tiles of a log of `size` made-up entries, built from the stored hashes
    /// core's appender writes, and the checkpoint core computes for it.
    fn log(size: u64) -> (HashTiles, Vec<(EntryBundle, Vec<u8>)>, Checkpoint) {
        let mut frontier = merkle::Frontier::empty();
        let mut stored: Vec<Hash> = Vec::new();
        let mut entries = Vec::new();
        for i in 0..size {
            let entry = format!("entry {i}").into_bytes();
            stored.extend(frontier.append(merkle::leaf_hash(&entry)).unwrap());
            entries.push(entry);
        }
        let mut tiles = HashTiles::default();
        let mut bundles = Vec::new();
        for tile in merkle::tiles_for_size(size) {
            let idx = tile.stored_hash_indexes().unwrap();
            let bytes: Vec<u8> = idx.iter().flat_map(|&i| stored[i as usize].0).collect();
            tiles.insert(tile, bytes).unwrap();
            if let Some(b) = tile.entry_bundle() {
                let start = (b.n() * 256) as usize;
                let mut body = Vec::new();
                for e in &entries[start..start + usize::from(b.width())] {
                    body.extend_from_slice(&(e.len() as u16).to_be_bytes());
                    body.extend_from_slice(e);
                }
                bundles.push((b, body));
            }
        }
        let cp = Checkpoint {
            origin: "test/log".to_owned(),
            size,
            root: frontier.root(),
            extensions: Vec::new(),
        };
        (tiles, bundles, cp)
    }

    #[test]
    fn tiles_of_every_shape_check_against_the_root() {
        for size in [
            1,
            2,
            3,
            255,
            256,
            257,
            511,
            512,
            513,
            700,
            65_536,
            65_536 + 300,
        ] {
            let (tiles, bundles, cp) = log(size);
            check_hash_tiles(&tiles, &cp).unwrap_or_else(|e| panic!("{size}: {e}"));
            for (b, body) in &bundles {
                check_bundle(&tiles, *b, body).unwrap();
            }
        }
    }

    #[test]
    fn any_altered_hash_or_entry_is_caught() {
        let (tiles, bundles, cp) = log(513);
        // Every hash of every tile, one at a time.
        let keys: Vec<(u8, u64)> = tiles.0.keys().copied().collect();
        for key in keys {
            for at in 0..tiles.0[&key].len() / HASH_SIZE {
                let mut bad = HashTiles(tiles.0.clone());
                bad.0.get_mut(&key).unwrap()[at * HASH_SIZE] ^= 1;
                let caught = check_hash_tiles(&bad, &cp).is_err()
                    || (key.0 == 0
                        && bundles
                            .iter()
                            .any(|(b, body)| check_bundle(&bad, *b, body).is_err()));
                assert!(caught, "tile {key:?} hash {at} altered unnoticed");
            }
        }
        let (b, body) = &bundles[0];
        let mut bad = body.clone();
        bad[5] ^= 1;
        assert!(check_bundle(&tiles, *b, &bad).is_err());
        // A bundle with an entry too many or cut short.
        let mut long = body.clone();
        long.extend_from_slice(&[0, 1, b'x']);
        assert!(check_bundle(&tiles, *b, &long).is_err());
        assert!(check_bundle(&tiles, *b, &body[..body.len() - 1]).is_err());
        // Another root.
        let mut other = cp.clone();
        other.root = merkle::empty_tree_hash();
        assert!(check_hash_tiles(&tiles, &other).is_err());
    }
}
