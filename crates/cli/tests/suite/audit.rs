//! `bonafide audit verify` against the real server: pinned key and state file,
//! inclusion by index and by entry, offline tlog-proofs, and the two attacks it must
//! catch: an entry edited in the database behind the server's back, and the database
//! rolled back to an older copy.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Served, json_of, run, serve, text};
use serde_json::{Value, json};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `GET url` with an optional key: status and body.
fn get(url: &str, key: Option<&str>) -> (u16, String) {
    block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn post(url: &str, body: &Value) -> Value {
    block_on(async {
        reqwest::Client::new()
            .post(url)
            .json(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

/// A registry with an issuer and an agent: (server, admin key, issuer key, token).
fn registry(dir: &Path) -> (Served, String, String, String) {
    let s = serve(dir, &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "audit.example", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let issuer_key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&issuer_key),
        &[
            "agent",
            "register",
            "--name",
            "bot",
            "--scope",
            "read:data",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let token = json_of(&out)["token"].as_str().unwrap().to_owned();
    (s, admin, issuer_key, token)
}

/// Verifies the token once; the audit index of the decision.
fn verify_once(url: &str, token: &str) -> u64 {
    let v = post(&format!("{url}/v1/verify"), &json!({ "token": token }));
    assert_eq!(v["valid"], true, "{v}");
    v["audit_index"].as_u64().expect("audit_index")
}

fn log_key(url: &str) -> String {
    let (status, body) = get(&format!("{url}/.well-known/bonafide-configuration"), None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    v["audit_log"]["log_key"].as_str().unwrap().to_owned()
}

fn audit_verify(url: &str, key: Option<&str>, state: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "verify", "--state", state.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(url, key, &args)
}

/// `audit verify --proof-file` with no registry to reach (the URL is a closed port).
fn offline_check(proof: &Path, entry: Option<&Path>, log_key: Option<&str>) -> Output {
    let mut args = vec!["audit", "verify", "--proof-file", proof.to_str().unwrap()];
    if let Some(e) = entry {
        args.extend(["--entry-file", e.to_str().unwrap()]);
    }
    if let Some(k) = log_key {
        args.extend(["--log-key", k]);
    }
    run("http://127.0.0.1:1", None, &args)
}

/// Waits until the signed checkpoint covers `index` (one is signed every 500 ms).
fn wait_for_checkpoint(url: &str, index: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, note) = get(&format!("{url}/v1/audit/checkpoint"), None);
        let size: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if size > index {
            return;
        }
        assert!(Instant::now() < deadline, "no checkpoint covers {index}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn audit_verify_pins_the_key_tracks_checkpoints_and_proves_entries() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.json");
    let (s, admin, issuer_key, token) = registry(dir.path());
    let index = verify_once(&s.url, &token);
    wait_for_checkpoint(&s.url, index);

    // First contact: the announced key is pinned, and says so.
    let out = audit_verify(&s.url, None, &state, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pinned the log key"), "{}", text(&out));
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["logs"][&s.url]["log_key"], log_key(&s.url));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The log grows; the next run checks consistency with the last checkpoint.
    let later = verify_once(&s.url, &token);
    wait_for_checkpoint(&s.url, later);
    let out = audit_verify(&s.url, None, &state, &["--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["ok"], true);
    assert!(v["tree_size"].as_u64().unwrap() > later);
    assert!(
        v["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("consistent with the checkpoint of size"),
        "{v}"
    );

    // By index: anonymous callers check the leaf hash; the issuer also gets the text.
    let out = audit_verify(
        &s.url,
        None,
        &state,
        &["--index", &index.to_string(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)["entries"][0]["entry"], Value::Null);
    let out = audit_verify(
        &s.url,
        Some(&issuer_key),
        &state,
        &["--index", &index.to_string(), "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let entry = json_of(&out)["entries"][0]["entry"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(entry.contains("\"type\":\"verify\""), "{entry}");
    assert!(!entry.contains(&token), "entries never hold the token");

    // By entry file.
    let entry_file = write(work.path(), "entry.json", entry.as_bytes());
    let out = audit_verify(
        &s.url,
        None,
        &state,
        &["--entry-file", entry_file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    // An entry that was never logged is reported as such (exit 1).
    let forged = entry.replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    assert_ne!(forged, entry);
    let forged_file = write(work.path(), "forged.json", forged.as_bytes());
    let out = audit_verify(
        &s.url,
        None,
        &state,
        &["--entry-file", forged_file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not in the log"), "{}", text(&out));

    // An explicitly pinned key that is not the log's fails; so does a wrong index.
    let other = "other.example/audit+0badc0de+AQwJxG1zRgkTZRq+0jXY1GjXCbjjVQVnxsD1aa1uIN7s";
    let out = audit_verify(
        &s.url,
        None,
        &work.path().join("other.json"),
        &["--log-key", other],
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    // Far past the log: it says the entry does not exist, not "try again".
    let out = audit_verify(&s.url, None, &state, &["--index", "999999"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("entry 999999 does not exist yet"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("try again"), "{}", text(&out));

    // A tlog-proof fetched with the issuer's key carries the entry; it checks offline.
    let key = log_key(&s.url);
    let (status, proof) = get(
        &format!("{}/v1/audit/proof/bundle?index={index}", s.url),
        Some(&issuer_key),
    );
    assert_eq!(status, 200, "{proof}");
    assert!(
        proof.starts_with("c2sp.org/tlog-proof@v1\nextra "),
        "{proof}"
    );
    let (status, anonymous_proof) = get(
        &format!("{}/v1/audit/proof/bundle?index={index}", s.url),
        None,
    );
    assert_eq!(status, 200);
    assert!(!anonymous_proof.contains("extra "));
    drop(s);
    let proof_file = write(work.path(), "entry.tlog-proof", proof.as_bytes());
    let out = offline_check(&proof_file, None, Some(&key));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("entry {index} is in log")),
        "{}",
        text(&out)
    );
    // Without the entry in the proof, the entry file supplies it.
    let bare = write(work.path(), "bare.tlog-proof", anonymous_proof.as_bytes());
    let out = offline_check(&bare, None, Some(&key));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--entry-file"), "{}", text(&out));
    let out = offline_check(&bare, Some(&entry_file), Some(&key));
    assert!(out.status.success(), "{}", text(&out));
    // A forged entry, a tampered proof and a wrong key all fail with exit 1.
    let out = offline_check(&bare, Some(&forged_file), Some(&key));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut lines: Vec<String> = anonymous_proof.lines().map(str::to_owned).collect();
    let hash_line = lines
        .iter()
        .position(|l| l.len() == 44 && l.ends_with('='))
        .expect("a proof hash");
    lines[hash_line] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    let tampered = write(
        work.path(),
        "tampered.tlog-proof",
        format!("{}\n", lines.join("\n")).as_bytes(),
    );
    let out = offline_check(&tampered, Some(&entry_file), Some(&key));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = offline_check(&proof_file, None, Some(other));
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    // Offline needs a key; a garbage file is a clear failure.
    let out = offline_check(&proof_file, None, None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--log-key"), "{}", text(&out));
    let junk = write(work.path(), "junk", b"not a proof\n");
    let out = offline_check(&junk, None, Some(&key));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let _ = admin;
}

/// Runs SQL against the server's database while it runs (WAL allows it).
fn sql(dir: &Path, statement: &str, binds: &[Vec<u8>]) {
    block_on(async {
        use sqlx::ConnectOptions;
        let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.join("bonafide.db"))
            .busy_timeout(Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let mut q = sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()));
        for b in binds {
            q = q.bind(b.clone());
        }
        let done = q.execute(&mut conn).await.unwrap();
        assert_eq!(done.rows_affected(), 1, "{statement}");
    });
}

fn leaf_hash(entry: &[u8]) -> Vec<u8> {
    bonafide_core::merkle::leaf_hash(entry).0.to_vec()
}

#[test]
fn audit_verify_catches_an_entry_edited_behind_the_servers_back() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.json");
    let (s, admin, _, token) = registry(dir.path());
    let index = verify_once(&s.url, &token);
    wait_for_checkpoint(&s.url, index);
    let out = audit_verify(
        &s.url,
        Some(&admin),
        &state,
        &["--index", &index.to_string()],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Someone with the database rewrites history: the allowed request was "denied".
    let (_, page) = get(
        &format!("{}/v1/audit/entries?start={index}&end={}", s.url, index + 1),
        Some(&admin),
    );
    let page: Value = serde_json::from_str(&page).unwrap();
    let original = page["entries"][0]["entry"].as_str().unwrap().to_owned();
    let edited = original.replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
    assert_ne!(edited, original);
    sql(
        dir.path(),
        &format!("UPDATE audit_log SET entry = ? WHERE idx = {index}"),
        &[edited.clone().into_bytes()],
    );
    let out = audit_verify(
        &s.url,
        Some(&admin),
        &state,
        &["--index", &index.to_string()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("was altered"), "{}", text(&out));

    // A more careful forger also rewrites the stored leaf hash: the inclusion proof
    // then no longer leads to the signed root.
    sql(
        dir.path(),
        &format!("UPDATE audit_log SET leaf_hash = ? WHERE idx = {index}"),
        &[leaf_hash(edited.as_bytes())],
    );
    let out = audit_verify(
        &s.url,
        Some(&admin),
        &state,
        &["--index", &index.to_string()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not in the signed log"),
        "{}",
        text(&out)
    );
    // And the server refuses to sign a checkpoint over the rewritten history.
    let grown = verify_once(&s.url, &token);
    std::thread::sleep(Duration::from_millis(1500));
    let (_, note) = get(&format!("{}/v1/audit/checkpoint", s.url), None);
    let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
    assert!(
        size <= grown,
        "no checkpoint over the edited log (size {size})"
    );
    let out = audit_verify(&s.url, None, &state, &[]);
    assert!(
        out.status.success(),
        "the old checkpoint still verifies: {}",
        text(&out)
    );
}

#[test]
fn audit_verify_catches_a_database_rolled_back_to_an_older_copy() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state.json");
    let (s, admin, _, token) = registry(dir.path());
    // Restarts keep the address: tokens name their registry's URL.
    let addr = s.url.trim_start_matches("http://").to_owned();
    let first = verify_once(&s.url, &token);
    wait_for_checkpoint(&s.url, first);
    drop(s);
    // An old copy of the whole data dir.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), backup.path().join(f.file_name())).unwrap();
    }

    // The registry goes on; the auditor sees a larger checkpoint.
    let s = common::serve_at(dir.path(), &addr, &[("BONAFIDE_ADMIN_KEY", &admin)]);
    let mut last = 0;
    for _ in 0..5 {
        last = verify_once(&s.url, &token);
    }
    wait_for_checkpoint(&s.url, last);
    let out = audit_verify(&s.url, None, &state, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let seen: u64 = {
        let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        let note = saved["logs"][&s.url]["checkpoint"]
            .as_str()
            .unwrap()
            .to_owned();
        note.lines().nth(1).unwrap().parse().unwrap()
    };
    let url = s.url.clone();
    drop(s);

    // Roll the database back, restart on the same address, and write a different
    // history: first shorter than what the auditor saw, then longer.
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("bonafide.db") {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    for f in std::fs::read_dir(backup.path()).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dir.path().join(f.file_name())).unwrap();
    }
    let s = common::serve_at(dir.path(), &addr, &[("BONAFIDE_ADMIN_KEY", &admin)]);
    assert_eq!(s.url, url);
    let out = audit_verify(&s.url, None, &state, &[]);
    // The restarted registry may have appended start-up entries; either way it is
    // behind (or beside) what was seen.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("shrank") || text(&out).contains("rewritten"),
        "{}",
        text(&out)
    );
    // Grown with decisions about a genuine token (a forged one is not logged).
    let mut grown = 0;
    while grown <= seen + 2 {
        let v = post(&format!("{}/v1/verify", s.url), &json!({ "token": token }));
        grown = v["audit_index"]
            .as_u64()
            .unwrap_or_else(|| panic!("not logged: {v}"));
    }
    wait_for_checkpoint(&s.url, grown);
    let out = audit_verify(&s.url, None, &state, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("rewritten"), "{}", text(&out));
    // The state file still holds the checkpoint seen before the rollback.
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let note = saved["logs"][&s.url]["checkpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(note.lines().nth(1).unwrap().parse::<u64>().unwrap(), seen);
}

/// `audit log-key`, `audit entry N` and `audit proof N`: the announced key alone on a
/// line; an entry as logged for a key that may read it, and a clear refusal otherwise;
/// a proof anyone may fetch; indexes past the log refused with exit 2.
#[test]
fn audit_log_key_entry_and_proof_give_what_verify_takes() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = serve(data.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let code = |o: &Output| o.status.code().unwrap_or(-1);

    let out = run(&s.url, None, &["audit", "log-key"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let key = String::from_utf8(out.stdout).unwrap();
    assert_eq!(key.lines().count(), 1, "{key}");
    let key = key.trim().to_owned();
    let (_, config) = get(
        &format!("{}/.well-known/bonafide-configuration", s.url),
        None,
    );
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["audit_log"]["log_key"], key.as_str());

    // Entry 0 (the admin key's) as logged, for the admin; an anonymous reader gets a
    // refusal that says what key it needs, and no file content.
    let out = run(&s.url, Some(&admin), &["audit", "entry", "0"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let entry = String::from_utf8(out.stdout).unwrap();
    let entry_file = work.path().join("e0.json");
    std::fs::write(&entry_file, &entry).unwrap();
    let out = run(&s.url, None, &["audit", "entry", "0"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("not yours to read"), "{}", text(&out));
    assert!(out.stdout.is_empty());
    let out = run(&s.url, Some(&admin), &["audit", "entry", "999999"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    assert!(text(&out).contains("does not exist yet"), "{}", text(&out));

    // The proof of entry 0 checks offline against the key, with the entry file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let proof = loop {
        let out = run(&s.url, None, &["audit", "proof", "0"]);
        if code(&out) == 0 {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(Instant::now() < deadline, "no proof: {}", text(&out));
        std::thread::sleep(Duration::from_millis(200));
    };
    let proof_file = work.path().join("e0.tlog-proof");
    std::fs::write(&proof_file, &proof).unwrap();
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "audit",
            "verify",
            "--proof-file",
            proof_file.to_str().unwrap(),
            "--entry-file",
            entry_file.to_str().unwrap(),
            "--log-key",
            &key,
        ],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));
    let out = run(&s.url, None, &["audit", "proof", "999999"]);
    assert_eq!(code(&out), 2, "{}", text(&out));
}
