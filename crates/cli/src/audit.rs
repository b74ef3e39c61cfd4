//! `bonafide audit verify`: check a registry's audit log from the outside.
//!
//! Online: fetch the latest signed checkpoint, check its signature against a pinned
//! log key, check it is consistent with the checkpoint seen last time (kept in a state
//! file), and optionally that one entry is in it (`--index`, `--entry-file`). Offline:
//! check a C2SP tlog-proof file (`--proof-file`) against the log key, no network.
//!
//! Trust: the log key is pinned. `--log-key` pins it explicitly; otherwise the key
//! pinned in the state file is used; on first contact without either, the key the
//! registry announces is pinned and the output says so (trust on first use). A state
//! file is only updated after every check passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_api::audit::{ConsistencyProof, Entries, InclusionProof};
use bonafide_client::Client;
use bonafide_core::audit::AuditEntry;
use bonafide_core::merkle::{self, Hash};
use bonafide_core::note::{self, NoteVerifier, OpenedCheckpoint};
use bonafide_core::status_list;
use bonafide_core::tlog_proof::{self, TlogProof};
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::output::Out;
use crate::progress;

/// Largest entry or proof file read, bytes.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The registry's log key (`<origin>+<hex id>+<base64>`, from its discovery
    /// document). Pins the key; without it the state file's pinned key is used.
    #[arg(long)]
    pub log_key: Option<String>,
    /// Where the last checkpoint seen is kept (default:
    /// $XDG_STATE_HOME/bonafide/audit-state.json or ~/.local/state/bonafide/…).
    #[arg(long, env = "BONAFIDE_AUDIT_STATE")]
    pub state: Option<PathBuf>,
    /// Also check that the entry at this index is in the log.
    #[arg(long)]
    pub index: Option<u64>,
    /// Also check that this entry (its canonical JSON bytes) is in the log.
    #[arg(long)]
    pub entry_file: Option<PathBuf>,
    /// Check this C2SP tlog-proof file offline (needs --log-key; the entry comes from
    /// the proof's `extra` line or --entry-file).
    #[arg(long, conflicts_with = "index")]
    pub proof_file: Option<PathBuf>,
    /// Also check that the status list served at this URL (one of this registry's,
    /// `…/v1/status-lists/<id>`) is the version the registry logged: what every
    /// receiver was served, so a list shown to one receiver only is caught.
    #[arg(long, conflicts_with = "proof_file")]
    pub status_list: Option<String>,
    /// Also check a Status List Token saved earlier (a receiver's copy): that the
    /// registry logged it, so what it said then is provable now.
    #[arg(long, conflicts_with = "proof_file")]
    pub status_list_file: Option<PathBuf>,
    /// Verify a log exported with `audit export` (C2SP tlog-tiles), from a directory
    /// or an http(s) base URL: checkpoint signature, every tile against its root,
    /// every entry bundle against its leaf hashes. Needs --log-key, or the key the
    /// state file pinned for the log the checkpoint names.
    #[arg(long, value_name = "DIR_OR_URL", conflicts_with_all = ["proof_file", "index", "entry_file", "status_list", "status_list_file"])]
    pub tiles: Option<String>,
}

/// A check failed: the log is not what it claims. Exit code 1, unlike errors (2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Failed(pub String);

pub(crate) fn failed(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failed(message.into()))
}

/// What the state file remembers per log origin.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogState {
    /// The pinned verifier key string.
    pub(crate) log_key: String,
    /// The last checkpoint that passed every check (signed note text).
    checkpoint: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateFile {
    /// By registry URL.
    pub(crate) logs: BTreeMap<String, LogState>,
}

pub async fn verify(url: &str, args: VerifyArgs, out: Out) -> Result<ExitCode> {
    if let Some(tiles) = &args.tiles {
        return crate::audit_tiles::verify(
            url,
            tiles,
            args.log_key.as_deref(),
            args.state.as_deref(),
            out,
        )
        .await;
    }
    let result = if let Some(proof_file) = &args.proof_file {
        verify_proof_file(proof_file, &args, out)
    } else {
        verify_online(url, &args, out).await
    };
    run_checked(result, out)
}

/// A check's result as the command's exit: a failed check (`Failed`) is exit 1 with
/// what failed, any other error is the caller's (exit 2).
pub(crate) fn run_checked(result: Result<()>, out: Out) -> Result<ExitCode> {
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => match e.downcast_ref::<Failed>() {
            Some(f) => {
                if out.json {
                    println!("{}", json!({ "ok": false, "problem": f.0 }));
                } else {
                    eprintln!("AUDIT CHECK FAILED: {}", f.0);
                }
                Ok(ExitCode::from(1))
            }
            None => Err(e),
        },
    }
}

fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!("{what} `{}` is over {MAX_FILE_BYTES} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} `{}`", path.display()))
}

pub(crate) fn parse_log_key(text: &str) -> Result<NoteVerifier> {
    NoteVerifier::from_key_string(text.trim())
        .map_err(|e| anyhow!("--log-key is not a log key (`<origin>+<hex id>+<base64>`): {e}"))
}

/// Reads an entry file: canonical JSON bytes, a trailing newline tolerated.
fn read_entry(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = read_limited(path, "entry file")?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    AuditEntry::from_canonical(&bytes).map_err(|e| {
        anyhow!(
            "`{}` is not a canonical audit entry ({e}); save the `entry` text from /v1/audit/entries as is",
            path.display()
        )
    })?;
    Ok(bytes)
}

fn verify_proof_file(path: &Path, args: &VerifyArgs, out: Out) -> Result<()> {
    let key = args
        .log_key
        .as_deref()
        .ok_or_else(|| anyhow!("--proof-file needs --log-key (offline: nothing else to trust)"))?;
    let verifier = parse_log_key(key)?;
    let text = String::from_utf8(read_limited(path, "proof file")?)
        .map_err(|_| anyhow!("`{}` is not text", path.display()))?;
    let proof = TlogProof::parse(&text).map_err(|e| {
        failed(format!(
            "`{}` is not a valid tlog-proof: {e}",
            path.display()
        ))
    })?;
    let entry = match (&args.entry_file, &proof.extra) {
        (Some(file), extra) => {
            let entry = read_entry(file)?;
            if extra.as_ref().is_some_and(|x| *x != entry) {
                return Err(failed(
                    "the entry file differs from the entry carried in the proof",
                ));
            }
            entry
        }
        (None, Some(extra)) => {
            AuditEntry::from_canonical(extra).map_err(|e| {
                failed(format!(
                    "the entry carried in the proof is not a canonical entry: {e}"
                ))
            })?;
            extra.clone()
        }
        (None, None) => bail!(
            "this proof carries no entry (it was fetched without a key allowed to read it): give --entry-file"
        ),
    };
    let verified = tlog_proof::verify_tlog_proof(
        &proof,
        &entry,
        verifier.name(),
        std::slice::from_ref(&verifier),
    )
    .map_err(|e| failed(format!("the proof does not hold: {e}")))?;
    let cp = verified.checkpoint().checkpoint();
    if out.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "origin": cp.origin,
                "tree_size": cp.size,
                "root": cp.root.to_base64(),
                "index": verified.index(),
                "entry": String::from_utf8_lossy(&entry),
            })
        );
    } else {
        println!(
            "entry {} is in log {} (checkpoint of size {}, root {})",
            verified.index(),
            cp.origin,
            cp.size,
            cp.root.to_base64()
        );
        println!("entry: {}", String::from_utf8_lossy(&entry));
    }
    Ok(())
}

pub(crate) fn default_state_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("bonafide/audit-state.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| anyhow!("no HOME: pass --state FILE"))?;
    Ok(PathBuf::from(home).join(".local/state/bonafide/audit-state.json"))
}

pub(crate) fn load_state(path: &Path) -> Result<StateFile> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "the state file `{}` is not one bonafide wrote; move it away to start over",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(anyhow!(
            "cannot read the state file `{}`: {e}",
            path.display()
        )),
    }
}

/// Writes the state file atomically (temp file + rename), mode 0600.
fn save_state(path: &Path, state: &StateFile) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(state)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

pub(crate) fn open_cp(
    note_text: &str,
    verifier: &NoteVerifier,
) -> Result<OpenedCheckpoint, note::NoteError> {
    note::open_checkpoint(note_text, verifier.name(), std::slice::from_ref(verifier))
}

/// A proof's hashes, each checked to be one (base64 of 32 bytes).
pub(crate) fn hashes_of(hashes: &[String]) -> Result<Vec<Hash>> {
    hashes
        .iter()
        .map(|h| {
            Hash::from_base64(h).map_err(|_| anyhow!("the registry's answer has a malformed hash"))
        })
        .collect()
}

fn api(e: bonafide_client::ClientError) -> anyhow::Error {
    crate::explain(e)
}

async fn verify_online(url: &str, args: &VerifyArgs, out: Out) -> Result<()> {
    let key = std::env::var("BONAFIDE_API_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let client = Client::new(url, key).map_err(api)?;
    let state_path = match &args.state {
        Some(p) => p.clone(),
        None => default_state_path()?,
    };
    let mut state = load_state(&state_path)?;
    let log_id = client.base().to_owned();
    let previous = state.logs.get(&log_id).cloned();
    let mut notes: Vec<String> = Vec::new();

    // 1. The key: pinned by --log-key, else by the state file, else on first use.
    let discovery: Value = progress::during(
        "asking the registry for its log key",
        client.get("/.well-known/bonafide-configuration"),
    )
    .await
    .map_err(api)?;
    let announced = discovery["audit_log"]["log_key"]
        .as_str()
        .map(str::to_owned);
    let pinned = match (&args.log_key, &previous) {
        (Some(k), _) => k.trim().to_owned(),
        (None, Some(p)) => p.log_key.clone(),
        (None, None) => {
            let k = announced
                .clone()
                .ok_or_else(|| anyhow!("the registry announces no audit log key"))?;
            notes.push(format!(
                "pinned the log key the registry announced, on first use: {k} (pass --log-key to pin one you got elsewhere)"
            ));
            k
        }
    };
    let verifier = parse_log_key(&pinned)?;
    if let Some(p) = &previous
        && p.log_key != pinned
    {
        return Err(failed(format!(
            "the log key differs from the one pinned in {} ({}); if the registry really changed its key, remove that entry from the state file",
            state_path.display(),
            p.log_key
        )));
    }
    if announced.as_deref().is_some_and(|a| a != pinned) {
        return Err(failed(format!(
            "the registry announces log key {} but {} is pinned",
            announced.as_deref().unwrap_or_default(),
            pinned
        )));
    }

    // 2. The latest checkpoint, signed by that key.
    let note_text = progress::during(
        "fetching the latest checkpoint",
        client.get_text("/v1/audit/checkpoint"),
    )
    .await
    .map_err(api)?;
    let opened = open_cp(&note_text, &verifier)
        .map_err(|e| failed(format!("the latest checkpoint does not verify: {e}")))?;
    let cp = opened.checkpoint().clone();

    // 3. Consistent with what we saw before.
    if let Some(old_text) = previous.as_ref().and_then(|p| p.checkpoint.as_deref()) {
        let old = open_cp(old_text, &verifier)
            .map_err(|e| anyhow!("the checkpoint in the state file does not verify: {e}"))?;
        let old = old.checkpoint();
        if cp.size < old.size {
            return Err(failed(format!(
                "the log shrank: its latest checkpoint has {} entries, but one with {} was seen before (rolled back or rewritten)",
                cp.size, old.size
            )));
        }
        if cp.size == old.size {
            if cp.root != old.root {
                return Err(failed(format!(
                    "the log was rewritten: two different signed roots for size {} ({} before, {} now)",
                    cp.size,
                    old.root.to_base64(),
                    cp.root.to_base64()
                )));
            }
        } else {
            let checking = format!(
                "checking that {} entries extend the {} seen before",
                cp.size, old.size
            );
            let v: ConsistencyProof = progress::during(
                &checking,
                client.get(&format!(
                    "/v1/audit/proof/consistency?first={}&second={}",
                    old.size, cp.size
                )),
            )
            .await
            .map_err(api)?;
            let proof = hashes_of(&v.hashes)?;
            merkle::check_tree(&proof, cp.size, &cp.root, old.size, &old.root).map_err(|e| {
                failed(format!(
                    "the log was rewritten: the checkpoint of size {} does not extend the one of size {} seen before ({e})",
                    cp.size, old.size
                ))
            })?;
        }
        notes.push(format!(
            "consistent with the checkpoint of size {} seen before",
            old.size
        ));
    }

    // 4. Entries asked about.
    let mut checked = Vec::new();
    if let Some(index) = args.index {
        checked.push(check_index(&client, &cp, index).await?);
    }
    if let Some(file) = &args.entry_file {
        let entry = read_entry(file)?;
        checked.push(check_entry(&client, &cp, &entry).await?);
    }
    if let Some(uri) = &args.status_list {
        let path = uri
            .strip_prefix(client.base())
            .filter(|p| p.starts_with("/v1/status-lists/"))
            .ok_or_else(|| {
                anyhow!(
                    "`{uri}` is not a status list of {} (…/v1/status-lists/<id>); pass --url with the registry that serves it",
                    client.base()
                )
            })?;
        let token = progress::during("fetching the status list", client.get_text(path))
            .await
            .map_err(api)?;
        checked.push(check_status_list(&client, &cp, &token, Some(uri)).await?);
    }
    if let Some(file) = &args.status_list_file {
        let bytes = read_limited(file, "status list token")?;
        let token =
            String::from_utf8(bytes).map_err(|_| anyhow!("{} is not text", file.display()))?;
        checked.push(check_status_list(&client, &cp, token.trim(), None).await?);
    }

    // 5. Everything held: remember this checkpoint.
    state.logs.insert(
        log_id,
        LogState {
            log_key: pinned,
            checkpoint: Some(note_text),
        },
    );
    save_state(&state_path, &state)?;

    if out.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "origin": cp.origin,
                "tree_size": cp.size,
                "root": cp.root.to_base64(),
                "notes": notes,
                "entries": checked,
            })
        );
    } else {
        println!(
            "checkpoint OK: log {} has {} entries, root {}",
            cp.origin,
            cp.size,
            cp.root.to_base64()
        );
        for n in &notes {
            println!("{n}");
        }
        for c in &checked {
            println!(
                "entry {} is in the log{}",
                c["index"],
                c["entry"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Checks entry `index` against the checkpoint: the entry text (when the caller may
/// read it) hashes to its leaf, and the leaf is included under the signed root.
async fn check_index(client: &Client, cp: &note::Checkpoint, index: u64) -> Result<Value> {
    if index >= cp.size {
        // Past the signed tree: either logged and not yet checkpointed (a second
        // away), or not logged at all. Say which.
        let logged = client
            .get::<Entries>(&format!(
                "/v1/audit/entries?start={index}&end={}",
                index + 1
            ))
            .await
            .is_ok();
        if logged {
            bail!(
                "entry {index} is not in the latest checkpoint yet (it has {} entries); try again in a second",
                cp.size
            );
        }
        bail!(
            "entry {index} does not exist yet: the log is shorter (its latest checkpoint has {} entries)",
            cp.size
        );
    }
    let page: Entries = progress::during(
        &format!("fetching entry {index}"),
        client.get(&format!(
            "/v1/audit/entries?start={index}&end={}",
            index + 1
        )),
    )
    .await
    .map_err(api)?;
    let row = page
        .entries
        .into_iter()
        .find(|e| e.index == index)
        .ok_or_else(|| anyhow!("the registry returned no entry {index}"))?;
    let served_leaf = Hash::from_base64(&row.leaf_hash)
        .map_err(|_| anyhow!("the registry's entry {index} has no valid leaf hash"))?;
    let entry = row.entry;
    let leaf = match &entry {
        Some(text) => {
            let leaf = merkle::leaf_hash(text.as_bytes());
            if leaf != served_leaf {
                return Err(failed(format!(
                    "entry {index} was altered: its text hashes to {} but the log's leaf is {}",
                    leaf.to_base64(),
                    served_leaf.to_base64()
                )));
            }
            AuditEntry::from_canonical(text.as_bytes()).map_err(|e| {
                failed(format!("entry {index} is not a canonical audit entry: {e}"))
            })?;
            leaf
        }
        None => served_leaf,
    };
    prove(client, cp, index, &leaf).await?;
    Ok(json!({ "index": index, "leaf_hash": leaf.to_base64(), "entry": entry }))
}

/// Checks that `entry` is in the log under the signed root.
async fn check_entry(client: &Client, cp: &note::Checkpoint, entry: &[u8]) -> Result<Value> {
    let leaf = merkle::leaf_hash(entry);
    let encoded: String = leaf
        .to_base64()
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let v: InclusionProof = match progress::during(
        "looking the entry up in the log",
        client.get(&format!(
            "/v1/audit/proof/inclusion?leaf_hash={encoded}&tree_size={}",
            cp.size
        )),
    )
    .await
    {
        Ok(v) => v,
        Err(bonafide_client::ClientError::Api { status: 404, .. }) => {
            return Err(failed(format!(
                "this entry is not in the log (no leaf {})",
                leaf.to_base64()
            )));
        }
        Err(bonafide_client::ClientError::Api {
            status: 400,
            message,
            ..
        }) => {
            return Err(failed(format!(
                "this entry is not in the checkpoint of size {}: {message}",
                cp.size
            )));
        }
        Err(e) => return Err(api(e)),
    };
    let index = v.index;
    check_proof(&v, cp, index, &leaf)?;
    Ok(
        json!({ "index": index, "leaf_hash": leaf.to_base64(), "entry": String::from_utf8_lossy(entry) }),
    )
}

/// Checks a Status List Token: signed by the registry's status-list key, and its
/// `status_list.published` entry (rebuilt from the token by core's one rule) in the
/// log at the index the token names, under the verified checkpoint.
async fn check_status_list(
    client: &Client,
    cp: &note::Checkpoint,
    token: &str,
    fetched_from: Option<&str>,
) -> Result<Value> {
    let jwks: bonafide_core::keys::Jwks = progress::during(
        "fetching the status-list key",
        client.get("/.well-known/status-list-jwks.json"),
    )
    .await
    .map_err(api)?;
    let keys = bonafide_core::token::KeySet::from_jwks(&jwks)
        .map_err(|e| anyhow!("the registry's status-list key set does not parse: {e}"))?;
    // What it says of itself, read before the signature check names the list.
    let unverified: status_list::StatusListClaims = token
        .split('.')
        .nth(1)
        .and_then(|p| bonafide_core::b64::decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| failed("this is not a Status List Token (a JWS with a status list)"))?;
    let uri = fetched_from.unwrap_or(&unverified.sub);
    // Checked as of its own `iat`: a list saved long ago is still evidence.
    let (claims, list) = status_list::verify(token, &keys, uri, unverified.iat, 0)
        .map_err(|e| failed(format!("the status list does not verify: {e}")))?;
    let (version, position) = status_list::log_claims(&claims).ok_or_else(|| {
        failed("the status list names no log position (`version`, `audit`): not one this registry published")
    })?;
    let entry = status_list::published_entry(&claims.sub, version, claims.iat, &list)
        .to_canonical()
        .map_err(|e| anyhow!("the status list's audit entry: {e}"))?;
    let found = check_entry(client, cp, &entry).await.map_err(|e| match e.downcast_ref::<Failed>() {
        Some(f) => failed(format!(
            "status list {} version {version} is NOT the one the registry logged ({}): the registry served a list it did not commit to",
            claims.sub, f.0
        )),
        None => e,
    })?;
    if found["index"] != position.index {
        return Err(failed(format!(
            "status list {} version {version} names log index {}, but its entry is at {}",
            claims.sub, position.index, found["index"]
        )));
    }
    Ok(json!({
        "index": position.index,
        "leaf_hash": found["leaf_hash"],
        "entry": found["entry"],
        "status_list": claims.sub,
        "version": version,
    }))
}

async fn prove(client: &Client, cp: &note::Checkpoint, index: u64, leaf: &Hash) -> Result<()> {
    let v: InclusionProof = progress::during(
        &format!("fetching the inclusion proof of entry {index}"),
        client.get(&format!(
            "/v1/audit/proof/inclusion?index={index}&tree_size={}",
            cp.size
        )),
    )
    .await
    .map_err(api)?;
    check_proof(&v, cp, index, leaf)
}

fn check_proof(v: &InclusionProof, cp: &note::Checkpoint, index: u64, leaf: &Hash) -> Result<()> {
    if v.tree_size != cp.size || v.index != index {
        bail!("the registry answered a proof for another tree size or entry");
    }
    let proof = hashes_of(&v.hashes)?;
    merkle::check_record(&proof, cp.size, &cp.root, index, leaf).map_err(|e| {
        failed(format!(
            "entry {index} is not in the signed log: its inclusion proof fails against the checkpoint of size {} ({e}); the stored log was altered",
            cp.size
        ))
    })
}

/// A client with `BONAFIDE_API_KEY` if it is set (any kind: what it may read is the
/// registry's decision), anonymous otherwise.
fn reader(url: &str) -> Result<Client> {
    let key = std::env::var("BONAFIDE_API_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    Client::new(url, key).map_err(crate::explain)
}

/// `bonafide audit log-key`: the log key the registry announces, alone on a line, to
/// pin (`--log-key`). It is what the registry says: compare it with one published
/// elsewhere before trusting it.
pub async fn log_key(url: &str, out: Out) -> Result<ExitCode> {
    let client = reader(url)?;
    let config: Value = client
        .get("/.well-known/bonafide-configuration")
        .await
        .map_err(crate::explain)?;
    let log = &config["audit_log"];
    let Some(key) = log["log_key"].as_str() else {
        bail!("{url} announces no audit log key (no `audit_log.log_key` in its configuration)");
    };
    if out.json {
        out.json_out(log);
    } else {
        println!("{key}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bonafide audit entry N`: entry N's canonical text exactly as logged (for
/// `audit verify --entry-file`), when the key in `BONAFIDE_API_KEY` may read it (an
/// admin's, or the issuer's it concerns); its leaf hash otherwise is not an entry.
pub async fn entry(url: &str, index: u64, out: Out) -> Result<ExitCode> {
    let client = reader(url)?;
    let end = index
        .checked_add(1)
        .ok_or_else(|| anyhow!("entry {index} does not exist"))?;
    let page: Entries = match client
        .get(&format!("/v1/audit/entries?start={index}&end={end}"))
        .await
    {
        Err(bonafide_client::ClientError::Api {
            status: 400,
            message,
            ..
        }) => bail!("entry {index} does not exist yet: {message}"),
        other => other.map_err(crate::explain)?,
    };
    let Some(row) = page.entries.iter().find(|e| e.index == index) else {
        bail!("entry {index} does not exist yet: the log is shorter");
    };
    let Some(text) = &row.entry else {
        bail!(
            "entry {index} is not yours to read: set BONAFIDE_API_KEY to an admin key or to the key of the issuer it concerns (its leaf hash is {})",
            row.leaf_hash
        );
    };
    if out.json {
        out.json_typed(row);
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bonafide audit proof N`: a C2SP tlog-proof of entry N (with the entry itself when
/// `BONAFIDE_API_KEY` may read it), for `audit verify --proof-file` offline.
pub async fn proof(url: &str, index: u64) -> Result<ExitCode> {
    let client = reader(url)?;
    let text = client
        .get_text(&format!("/v1/audit/proof/bundle?index={index}"))
        .await
        .map_err(crate::explain)?;
    // Checked before it is handed on: a file that does not parse is no proof.
    TlogProof::parse(&text)
        .map_err(|e| anyhow!("{url} answered something that is not a tlog-proof: {e}"))?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
