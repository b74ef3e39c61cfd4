//! Crash durability of the audit log, with a real `kill -9`.
//!
//! The `bonafide` binary serves on a data dir while clients hammer `POST /v1/verify`
//! and poll `GET /v1/audit/checkpoint`; the process is SIGKILLed mid-load, restarted
//! on the same data dir, and everything any client was ever told is checked against
//! the restarted log: every `audit_index` answered has its entry (a `verify` entry for
//! that very token and decision) with a valid inclusion proof in the latest signed
//! checkpoint, and that checkpoint is consistent with every checkpoint served before.
//! Several rounds on the same data dir; what every round saw is re-checked after every
//! later restart.
//!
//! What a process kill can and cannot show: SIGKILL leaves the kernel's page cache
//! alone, so this checks the ordering promises (an index is answered only after its
//! entry is committed, a checkpoint is served only after it is stored), not whether
//! the commit was fsynced (`synchronous=FULL` matters for power loss, which a process
//! kill does not simulate).

#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bonafide_core::audit::token_sha256;
use bonafide_core::merkle::{self, Frontier, Hash};
use bonafide_core::note::{self, NoteVerifier};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_bonafide");

/// Kill/restart rounds on one data dir.
const ROUNDS: usize = 4;
/// Concurrent verify clients.
const CLIENTS: usize = 16;
/// Concurrent requests while checking proofs.
const CHECKERS: usize = 16;
/// Fewest answers a round must get for its kill to mean anything.
const MIN_ANSWERS: usize = 50;

/// A running `bonafide serve`; killed (SIGKILL) and reaped when dropped, so no
/// process outlives a failing test.
struct Served {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Served {
    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let from = log.len().saturating_sub(30);
        log[from..].join("\n")
    }

    /// `kill -9`; returns once the process is gone, and checks it died of the signal
    /// (not some clean exit that would make the test meaningless).
    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL bonafide");
        let status = self.child.wait().expect("reap bonafide");
        assert_eq!(
            status.signal(),
            Some(9),
            "bonafide did not die of SIGKILL: {status}\n{}",
            self.log_tail()
        );
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--signing-alg",
        "EdDSA",
        "--log-format",
        "text",
        "--data-dir",
    ])
    .arg(data_dir)
    .env_remove("BONAFIDE_ADMIN_KEY")
    .env_remove("BONAFIDE_PUBLIC_URL")
    .env("BONAFIDE_RATE_LIMITS", "off")
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn bonafide serve");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let log = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "server did not announce its address:\n{}",
                log.lock().unwrap().join("\n")
            );
        };
        log.lock().unwrap().push(line.clone());
        if let Some(url) = line.strip_prefix("bonafide listening on ") {
            let url = url.trim().to_owned();
            assert!(url.starts_with("http://127.0.0.1:"), "{url}");
            // Keep draining stderr so the server never blocks on a full pipe.
            let sink = Arc::clone(&log);
            std::thread::spawn(move || {
                while let Ok(line) = rx.recv() {
                    sink.lock().unwrap().push(line);
                }
            });
            return Served { child, url, log };
        }
    }
}

/// What one answered verify told its client.
#[derive(Debug, Clone)]
struct Answer {
    token: String,
    allowed: bool,
    reasons: Vec<String>,
    round: usize,
}

/// A checkpoint a client was served, opened and checked against the log key.
#[derive(Debug, Clone)]
struct Seen {
    root: Hash,
    /// First round it was served in.
    round: usize,
}

/// Everything any client was ever told, over all rounds.
#[derive(Default)]
struct Told {
    answers: BTreeMap<u64, Answer>,
    checkpoints: BTreeMap<u64, Seen>,
    /// Problems found while recording (an index answered twice, two roots for one
    /// size): each is a durability failure in itself.
    conflicts: Vec<String>,
}

impl Told {
    fn answer(&mut self, index: u64, a: Answer) {
        if let Some(old) = self.answers.get(&index) {
            self.conflicts.push(format!(
                "audit_index {index} answered twice: round {} (token sha256 {}) and round {} \
                 (token sha256 {}); the first entry was lost and its index reused",
                old.round,
                token_sha256(&old.token),
                a.round,
                token_sha256(&a.token)
            ));
            return;
        }
        self.answers.insert(index, a);
    }

    fn checkpoint(&mut self, size: u64, root: Hash, round: usize) {
        match self.checkpoints.get(&size) {
            Some(seen) if seen.root != root => self.conflicts.push(format!(
                "two checkpoints of size {size} with different roots: {} (round {}) and {} \
                 (round {round})",
                seen.root.to_base64(),
                seen.round,
                root.to_base64()
            )),
            Some(_) => {}
            None => {
                self.checkpoints.insert(size, Seen { root, round });
            }
        }
    }
}

/// The log's identity, from the discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LogId {
    origin: String,
    log_key: String,
}

impl LogId {
    fn verifiers(&self) -> Vec<NoteVerifier> {
        vec![NoteVerifier::from_key_string(&self.log_key).expect("log key string")]
    }

    /// Opens a checkpoint note: signed by the log key, for this origin.
    fn open(&self, note_text: &str) -> (u64, Hash) {
        let opened = note::open_checkpoint(note_text, &self.origin, &self.verifiers())
            .unwrap_or_else(|e| panic!("checkpoint does not open ({e}):\n{note_text}"));
        (opened.checkpoint().size, opened.checkpoint().root)
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = http.get(url);
    if let Some(key) = bearer {
        req = req.bearer_auth(key);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"));
    (status, value)
}

async fn get_ok(http: &reqwest::Client, url: &str, bearer: Option<&str>) -> Value {
    let (status, value) = get_json(http, url, bearer).await;
    assert_eq!(status, 200, "GET {url}: {value}");
    value
}

async fn post_ok(http: &reqwest::Client, url: &str, bearer: &str, body: Value) -> Value {
    let resp = http
        .post(url)
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(
        status == 200 || status == 201,
        "POST {url}: {status} {text}"
    );
    serde_json::from_str(&text).unwrap()
}

async fn log_id(http: &reqwest::Client, base: &str) -> LogId {
    let doc = get_ok(
        http,
        &format!("{base}/.well-known/bonafide-configuration"),
        None,
    )
    .await;
    LogId {
        origin: doc["audit_log"]["origin"].as_str().unwrap().to_owned(),
        log_key: doc["audit_log"]["log_key"].as_str().unwrap().to_owned(),
    }
}

async fn latest_checkpoint(http: &reqwest::Client, base: &str, id: &LogId) -> (u64, Hash) {
    let url = format!("{base}/v1/audit/checkpoint");
    let resp = http.get(&url).send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "GET {url}: {text}");
    id.open(&text)
}

fn hash(value: &Value) -> Hash {
    Hash::from_base64(value.as_str().expect("base64 hash")).expect("32-byte base64 hash")
}

fn hashes(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .expect("hash list")
        .iter()
        .map(hash)
        .collect()
}

/// Counts of what one load phase did.
#[derive(Debug, Default)]
struct LoadStats {
    answers: usize,
    failed: u64,
    checkpoints: usize,
}

/// Verify load with `tokens`, checkpoint polling, and a SIGKILL after `kill_after`
/// while requests are in flight. Only answers actually received are recorded.
async fn load_and_kill(
    http: &reqwest::Client,
    server: &mut Served,
    id: &LogId,
    tokens: &[String],
    round: usize,
    kill_after: Duration,
    told: &Arc<Mutex<Told>>,
) -> LoadStats {
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let (stop, failed, answered, told) = (
            Arc::clone(&stop),
            Arc::clone(&failed),
            Arc::clone(&answered),
            Arc::clone(told),
        );
        let tokens = tokens.to_vec();
        let url = format!("{}/v1/verify", server.url);
        let http = http.clone();
        tasks.spawn(async move {
            let mut n: usize = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // Mostly the round's valid token; also tokens of earlier rounds and
                // garbage (answered, not logged: they do not verify here) and
                // ungranted scopes.
                let (token, scope) = match (n + client) % 8 {
                    0 => (format!("garbage.{round}.{client}.{n}"), "read:data"),
                    1 => (tokens[tokens.len() - 1].clone(), "write:email"),
                    2 => (tokens[n % tokens.len()].clone(), "read:data"),
                    _ => (tokens[tokens.len() - 1].clone(), "read:data"),
                };
                let sent = http
                    .post(&url)
                    .json(&json!({"token": token, "scopes_requested": [scope]}))
                    .send()
                    .await;
                let body = match sent {
                    Ok(resp) if resp.status().is_success() => resp.json::<Value>().await,
                    Ok(resp) => {
                        // Not an answer with an index: nothing was promised.
                        let _ = resp.text().await;
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => Err(e),
                };
                let Ok(body) = body else {
                    // The server died under this request: fine, nothing was promised.
                    failed.fetch_add(1, Ordering::Relaxed);
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                if body.get("audit_index").is_none() {
                    // Garbage, or an earlier round's token whose `iss` (the URL of
                    // that round's server) is not this one's: it does not verify,
                    // concerns no agent, and is answered but never logged.
                    assert!(
                        body["error"]["code"] == "TOKEN_INVALID"
                            || body["error"]["code"] == "ISSUER_UNKNOWN",
                        "verify answered without audit_index: {body}"
                    );
                    continue;
                }
                let index = body["audit_index"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("verify answered without audit_index: {body}"));
                let answer = Answer {
                    token,
                    allowed: body["allowed"].as_bool().unwrap(),
                    reasons: body["reasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_owned())
                        .collect(),
                    round,
                };
                told.lock().unwrap().answer(index, answer);
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let polled = Arc::new(AtomicU64::new(0));
    {
        let (stop, told, polled, id) = (
            Arc::clone(&stop),
            Arc::clone(told),
            Arc::clone(&polled),
            id.clone(),
        );
        let url = format!("{}/v1/audit/checkpoint", server.url);
        let http = http.clone();
        tasks.spawn(async move {
            let mut last = None;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(resp) = http.get(&url).send().await
                    && resp.status().is_success()
                    && let Ok(text) = resp.text().await
                {
                    let (size, root) = id.open(&text);
                    if last != Some(size) {
                        last = Some(size);
                        told.lock().unwrap().checkpoint(size, root, round);
                        polled.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    tokio::time::sleep(kill_after).await;
    // On a slow or busy machine, give the load time to matter before the kill (not a
    // timing assertion: the kill only waits; the round's checks come afterwards).
    let patience = Instant::now() + Duration::from_secs(15);
    while (answered.load(Ordering::Relaxed) < 2 * MIN_ANSWERS as u64
        || polled.load(Ordering::Relaxed) == 0)
        && Instant::now() < patience
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.sigkill();
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = tasks.join_next().await {
        done.expect("load task panicked");
    }
    LoadStats {
        answers: answered.load(Ordering::Relaxed) as usize,
        failed: failed.load(Ordering::Relaxed),
        checkpoints: polled.load(Ordering::Relaxed) as usize,
    }
}

/// What one check after a restart covered.
#[derive(Debug)]
struct Checked {
    tree_size: u64,
    indexes: usize,
    checkpoints: usize,
}

/// Checks everything in `told` against the restarted server.
async fn check_all(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    id: &LogId,
    told: &Told,
    after_round: usize,
) -> Checked {
    assert!(
        told.conflicts.is_empty(),
        "after round {after_round}: {}",
        told.conflicts.join("\n")
    );

    // Every index anyone was given must be in the stored log: ask for the largest.
    let max = *told.answers.keys().next_back().expect("indexes");
    let (status, body) = get_json(
        http,
        &format!("{base}/v1/audit/entries?start={max}&end={}", max + 1),
        Some(admin),
    )
    .await;
    if status != 200 {
        // The 400 names the stored size: "... beyond the log, which has N entries".
        let message = body["error"]["message"].as_str().unwrap_or_default();
        let stored: Option<u64> = message
            .split("which has ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok());
        let lost: Vec<String> = told
            .answers
            .range(stored.unwrap_or(0)..)
            .map(|(i, a)| format!("{i} (round {})", a.round))
            .collect();
        panic!(
            "DURABILITY: after the restart following round {after_round}, the log holds \
             {stored:?} entries, but clients received audit_index up to {max}; {} indexes \
             received are missing: {}; server said: {body}",
            lost.len(),
            lost.join(", ")
        );
    }

    // A signed checkpoint covering all of them: asking for a proof without a tree size
    // makes the server sign one if needed; then take the latest.
    get_ok(
        http,
        &format!("{base}/v1/audit/proof/inclusion?index={max}"),
        None,
    )
    .await;
    let (tree_size, root) = latest_checkpoint(http, base, id).await;
    assert!(
        tree_size > max,
        "after round {after_round}: the latest checkpoint has {tree_size} entries, but \
         clients were told about index {max}"
    );

    // Every entry of that tree, read in full as admin (`/v1/audit/entries` in chunks of
    // its 1000-entry maximum), with the root recomputed from their leaf hashes.
    let mut entries: Vec<(String, Hash)> = Vec::with_capacity(tree_size as usize);
    let mut frontier = Frontier::empty();
    let mut start = 0;
    while start < tree_size {
        let end = (start + 1000).min(tree_size);
        let page = get_ok(
            http,
            &format!("{base}/v1/audit/entries?start={start}&end={end}"),
            Some(admin),
        )
        .await;
        let list = page["entries"].as_array().unwrap();
        assert_eq!(list.len() as u64, end - start, "entries [{start}, {end})");
        for (k, e) in list.iter().enumerate() {
            let i = start + k as u64;
            assert_eq!(e["index"].as_u64(), Some(i));
            let text = e["entry"]
                .as_str()
                .unwrap_or_else(|| panic!("admin cannot read entry {i}: {e}"))
                .to_owned();
            let leaf = hash(&e["leaf_hash"]);
            assert_eq!(
                merkle::leaf_hash(text.as_bytes()),
                leaf,
                "entry {i}: leaf hash is not SHA-256(0x00 ‖ entry)"
            );
            frontier.append(leaf).unwrap();
            // Every checkpoint ever served must be the root of this log's prefix.
            if let Some(seen) = told.checkpoints.get(&frontier.size()) {
                assert_eq!(
                    frontier.root(),
                    seen.root,
                    "DURABILITY: after the restart following round {after_round}, the first \
                     {} entries no longer hash to the root of the checkpoint served in round {}",
                    frontier.size(),
                    seen.round
                );
            }
            entries.push((text, leaf));
        }
        start = end;
    }
    assert_eq!(
        frontier.root(),
        root,
        "the latest checkpoint's root is not the root of the stored entries"
    );

    // Each index a client was given: the verify entry of that token and decision.
    for (&i, a) in &told.answers {
        let (text, _) = &entries[i as usize];
        let entry: Value = serde_json::from_str(text).unwrap();
        let ctx = || {
            format!(
                "DURABILITY: after the restart following round {after_round}, audit_index {i} \
                 (answered in round {}) holds {text}",
                a.round
            )
        };
        assert_eq!(entry["type"], "verify", "{}", ctx());
        assert_eq!(
            entry["token_sha256"].as_str(),
            Some(token_sha256(&a.token).as_str()),
            "{}",
            ctx()
        );
        let decision = if a.allowed { "allow" } else { "deny" };
        assert_eq!(entry["decision"], decision, "{}", ctx());
        let reasons: Vec<String> = entry["reasons"]
            .as_array()
            .map(|r| r.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        assert_eq!(reasons, a.reasons, "{}", ctx());
    }

    // Each index: its inclusion proof in the latest checkpoint, from the server.
    let indexes: Vec<u64> = told.answers.keys().copied().collect();
    let leaves: Arc<Vec<Hash>> = Arc::new(entries.iter().map(|(_, l)| *l).collect());
    let mut set = tokio::task::JoinSet::new();
    for part in indexes.chunks(indexes.len().div_ceil(CHECKERS)) {
        let part = part.to_vec();
        let (http, base, leaves) = (http.clone(), base.to_owned(), Arc::clone(&leaves));
        set.spawn(async move {
            for i in part {
                let proof = get_ok(
                    &http,
                    &format!("{base}/v1/audit/proof/inclusion?index={i}&tree_size={tree_size}"),
                    None,
                )
                .await;
                assert_eq!(proof["index"].as_u64(), Some(i));
                assert_eq!(proof["tree_size"].as_u64(), Some(tree_size));
                let leaf = hash(&proof["leaf_hash"]);
                assert_eq!(leaf, leaves[i as usize], "index {i}: proof's leaf hash");
                merkle::check_record(&hashes(&proof["hashes"]), tree_size, &root, i, &leaf)
                    .unwrap_or_else(|e| {
                        panic!(
                            "DURABILITY: after the restart following round {after_round}, \
                             index {i} has no valid inclusion proof in checkpoint \
                             {tree_size}: {e}"
                        )
                    });
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("inclusion checker panicked");
    }

    // Each checkpoint ever served: a consistency proof into the latest one.
    for (&old, seen) in &told.checkpoints {
        let (status, proof) = get_json(
            http,
            &format!("{base}/v1/audit/proof/consistency?first={old}&second={tree_size}"),
            None,
        )
        .await;
        assert_eq!(
            status, 200,
            "DURABILITY: after the restart following round {after_round}, no consistency \
             proof from checkpoint {old} (round {}) to {tree_size}: {proof}",
            seen.round
        );
        merkle::check_tree(&hashes(&proof["hashes"]), tree_size, &root, old, &seen.root)
            .unwrap_or_else(|e| {
                panic!(
                    "DURABILITY: after the restart following round {after_round}, checkpoint \
                     {old} (round {}) is not consistent with checkpoint {tree_size}: {e}",
                    seen.round
                )
            });
    }

    Checked {
        tree_size,
        indexes: told.answers.len(),
        checkpoints: told.checkpoints.len(),
    }
}

/// A kill delay in 300..900 ms that differs between rounds and between runs.
fn kill_delay(round: usize) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let spread = (nanos / 1000 + round as u64 * 211) % 600;
    Duration::from_millis(300 + spread)
}

#[test]
fn audit_log_survives_kill_9_under_load() {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One client for everything: building one is slow in a debug build.
    let http = rt.block_on(async { http() });
    let told = Arc::new(Mutex::new(Told::default()));
    let mut id: Option<LogId> = None;
    let mut admin = String::new();
    let mut issuer_key = String::new();
    let mut tokens: Vec<String> = Vec::new();

    for round in 0..=ROUNDS {
        let mut server = serve(dir.path());
        let base = server.url.clone();
        if round == 0 {
            admin = std::fs::read_to_string(dir.path().join("admin.key"))
                .unwrap()
                .trim()
                .to_owned();
        }
        let now_id = rt.block_on(log_id(&http, &base));
        match &id {
            None => id = Some(now_id),
            Some(before) => assert_eq!(
                &now_id, before,
                "the audit log's origin or key changed across the restart"
            ),
        }
        let id = id.clone().unwrap();

        if round > 0 {
            let snapshot = std::mem::take(&mut *told.lock().unwrap());
            let checked = rt.block_on(check_all(&http, &base, &admin, &id, &snapshot, round - 1));
            eprintln!(
                "restart after round {}: tree {} entries; {} indexes and {} checkpoints \
                 checked ({:.1?} elapsed)",
                round - 1,
                checked.tree_size,
                checked.indexes,
                checked.checkpoints,
                started.elapsed()
            );
            *told.lock().unwrap() = snapshot;
            // The latest checkpoint, now served, is one more to keep consistent with.
            let (size, root) = rt.block_on(latest_checkpoint(&http, &base, &id));
            told.lock().unwrap().checkpoint(size, root, round);
        }
        if round == ROUNDS {
            // The final restart: a few entries readable, anonymous readers get leaf
            // hashes only, and the log key is still the one published at the start.
            rt.block_on(async {
                let page = get_ok(
                    &http,
                    &format!("{base}/v1/audit/entries?start=0&end=5"),
                    Some(&admin),
                )
                .await;
                let list = page["entries"].as_array().unwrap();
                assert_eq!(list.len(), 5);
                for e in list {
                    let text = e["entry"].as_str().expect("entry text for admin");
                    assert_eq!(merkle::leaf_hash(text.as_bytes()), hash(&e["leaf_hash"]));
                    let parsed: Value = serde_json::from_str(text).unwrap();
                    assert_eq!(parsed["v"], 1, "{text}");
                }
                let page = get_ok(
                    &http,
                    &format!("{base}/v1/audit/entries?start=0&end=5"),
                    None,
                )
                .await;
                for e in page["entries"].as_array().unwrap() {
                    assert!(e.get("entry").is_none(), "anonymous reader saw {e}");
                }
                assert_eq!(log_id(&http, &base).await, id);
            });
            break;
        }

        // Set up the round's token. The public URL follows the port, so earlier
        // rounds' tokens now name another issuer URL: they still make entries.
        let token = rt.block_on(async {
            if round == 0 {
                let issuer = post_ok(
                    &http,
                    &format!("{base}/v1/issuers"),
                    &admin,
                    json!({"name": "durability.example"}),
                )
                .await;
                issuer_key = issuer["api_key"].as_str().unwrap().to_owned();
            }
            let reg = post_ok(
                &http,
                &format!("{base}/v1/agents/register"),
                &issuer_key,
                json!({"name": format!("Durable{round}"), "scopes": ["read:data"]}),
            )
            .await;
            reg["token"].as_str().unwrap().to_owned()
        });
        tokens.push(token);

        let delay = kill_delay(round);
        let stats = rt.block_on(load_and_kill(
            &http,
            &mut server,
            &id,
            &tokens,
            round,
            delay,
            &told,
        ));
        eprintln!(
            "round {round}: SIGKILL after {delay:?}: {} answers received, {} requests cut \
             off or refused, {} distinct checkpoints seen",
            stats.answers, stats.failed, stats.checkpoints
        );
        assert!(
            stats.answers > MIN_ANSWERS,
            "round {round}: only {} verify answers before the kill; the test would be vacuous",
            stats.answers
        );
        assert!(
            stats.checkpoints > 0,
            "round {round}: no checkpoint was seen before the kill"
        );
        drop(server);
    }
    eprintln!("durability test done in {:.1?}", started.elapsed());
}
