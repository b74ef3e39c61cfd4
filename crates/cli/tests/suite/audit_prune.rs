//! `bonafide audit prune` against the real server: exported tiles are dropped from
//! the database and served from the export (`serve --audit-archive`), every read as
//! before; the prune refuses what it must, and a tampered or missing archive tile is
//! refused on read, never served.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use bonafide_store::Store;
use common::{json_of, run, serve_with_args, text};
use serde_json::{Value, json};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// GET with an optional key: status and body text.
fn get(url: &str, key: Option<&str>) -> (u16, String) {
    block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    })
}

fn get_ok(url: &str, key: Option<&str>) -> String {
    let (status, body) = get(url, key);
    assert_eq!(status, 200, "{url}: {body}");
    body
}

fn get_bytes(url: &str, key: Option<&str>) -> Vec<u8> {
    block_on(async {
        let mut req = reqwest::Client::new().get(url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        resp.bytes().await.unwrap().to_vec()
    })
}

/// `n` anonymous verify decisions; the first answer and the last index.
fn verify_many(url: &str, token: &str, n: usize) -> (Value, u64) {
    block_on(async {
        let client = reqwest::Client::new();
        let mut first = Value::Null;
        let mut last = 0;
        for i in 0..n {
            let v: Value = client
                .post(format!("{url}/v1/verify"))
                .json(&json!({ "token": token }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            last = v["audit_index"].as_u64().expect("audit_index");
            if i == 0 {
                first = v;
            }
        }
        (first, last)
    })
}

fn checkpoint_size(url: &str) -> u64 {
    get_ok(&format!("{url}/v1/audit/checkpoint"), None)
        .lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .unwrap_or(0)
}

fn wait_for_checkpoint(url: &str, index: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let size = checkpoint_size(url);
        if size > index {
            return size;
        }
        assert!(Instant::now() < deadline, "no checkpoint covers {index}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every entry `[0, size)` as `key` sees it.
fn all_entries(url: &str, key: Option<&str>, size: u64) -> Vec<Value> {
    let mut all = Vec::new();
    let mut start = 0;
    while start < size {
        let end = (start + 1000).min(size);
        let page: Value = serde_json::from_str(&get_ok(
            &format!("{url}/v1/audit/entries?start={start}&end={end}"),
            key,
        ))
        .unwrap();
        all.extend(page["entries"].as_array().unwrap().iter().cloned());
        start = end;
    }
    assert_eq!(all.len() as u64, size);
    all
}

/// `http://host:port` of a URL.
fn base(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    format!("http://{}", rest.split('/').next().unwrap())
}

fn prune(url: &str, admin: &str, args: &[&str]) -> Output {
    let mut all = vec!["audit", "prune", "--json"];
    all.extend_from_slice(args);
    run(url, Some(admin), &all)
}

fn refused(out: &Output, words: &str) {
    assert!(!out.status.success(), "{}", text(out));
    assert!(text(out).contains(words), "wanted `{words}`: {}", text(out));
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Serves the files under `root` over HTTP/1.1 on a loopback port (GET only, one
/// connection at a time, closed after each answer): a static web server holding an
/// export. Runs until the test process ends.
fn serve_files(root: &Path) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Headers up to the blank line.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let file = (!path.contains("..")).then(|| root.join(path));
            let answer = match file.and_then(|f| std::fs::read(f).ok()) {
                Some(body) => {
                    let mut a = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    a.extend_from_slice(&body);
                    a
                }
                None => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&answer);
        }
    });
    format!("http://{addr}")
}

fn error_code(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_pruned_log_serves_every_read_from_its_export_and_refuses_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("export");
    std::fs::create_dir_all(&archive).unwrap();
    let archive_arg = archive.to_str().unwrap().to_owned();
    let s = serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--audit-archive", &archive_arg],
        &[],
    );
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "prune.example", "--json"],
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
    let v: Value = serde_json::from_str(&get_ok(
        &format!("{}/.well-known/bonafide-configuration", s.url),
        None,
    ))
    .unwrap();
    let key = v["audit_log"]["log_key"].as_str().unwrap().to_owned();

    // Two full tiles and some: the first decision's receipt will be pruned.
    let (first, last) = verify_many(&s.url, &token, 600);
    let receipt_id = first["receipt_id"].as_str().unwrap().to_owned();
    let receipt_index = first["audit_index"].as_u64().unwrap();
    assert!(receipt_index < 256);
    let size = wait_for_checkpoint(&s.url, last);
    assert!((512..768).contains(&size), "{size}");

    // What every read answers before the prune.
    let admin_view = all_entries(&s.url, Some(&admin), size);
    let issuer_view = all_entries(&s.url, Some(&issuer_key), size);
    assert!(
        issuer_view[300]["entry"].is_string(),
        "the issuer reads its agent's entries"
    );
    let anonymous_view = all_entries(&s.url, None, size);
    let proofs = |url: &str| {
        [
            format!("{url}/v1/audit/proof/inclusion?index=10&tree_size={size}"),
            format!("{url}/v1/audit/proof/inclusion?index=300&tree_size={size}"),
            format!("{url}/v1/audit/proof/inclusion?index=511&tree_size={size}"),
            format!("{url}/v1/audit/proof/consistency?first=100&second={size}"),
            format!("{url}/v1/audit/proof/consistency?first=300&second={size}"),
            format!("{url}/v1/audit/proof/consistency?first=512&second={size}"),
        ]
        .map(|u| get_ok(&u, None))
    };
    let proofs_before = proofs(&s.url);
    let receipt_url = format!("{}/v1/receipts/{receipt_id}", s.url);
    let receipt_before = get_ok(&receipt_url, Some(&issuer_key));
    let tile0_before = get_bytes(&format!("{}/v1/audit/tile/0/000", s.url), None);
    let bundle1_before = get_bytes(
        &format!("{}/v1/audit/tile/entries/001", s.url),
        Some(&admin),
    );

    // Refused before there is an export: the archive has no checkpoint.
    refused(&prune(&s.url, &admin, &["--through", "256"]), "checkpoint");
    // Not whole tiles: refused whatever the archive.
    refused(
        &prune(&s.url, &admin, &["--through", "300"]),
        "multiple of 256",
    );

    let out = run(
        &s.url,
        Some(&admin),
        &[
            "audit",
            "export",
            "--to",
            &archive_arg,
            "--log-key",
            &key,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let exported = json_of(&out)["tree_size"].as_u64().unwrap();
    assert!(exported >= size);

    // More refusals, nothing pruned: beyond the signed log; a tile the archive
    // lacks; a tile that differs (one byte of one entry).
    refused(
        &prune(&s.url, &admin, &["--through", "768"]),
        "beyond the latest signed checkpoint",
    );
    let bundle0 = archive.join("tile/entries/000");
    let aside = work.path().join("aside");
    std::fs::rename(&bundle0, &aside).unwrap();
    refused(
        &prune(&s.url, &admin, &["--through", "512"]),
        "lacks `tile/entries/000`",
    );
    std::fs::rename(&aside, &bundle0).unwrap();
    let bundle1 = archive.join("tile/entries/001");
    flip_byte(&bundle1, 40);
    refused(
        &prune(&s.url, &admin, &["--through", "512"]),
        "differs from the log at record 256",
    );
    flip_byte(&bundle1, 40);
    let tile1 = archive.join("tile/0/001");
    flip_byte(&tile1, 7);
    refused(
        &prune(&s.url, &admin, &["--through", "512"]),
        "level-0 hash tile 1 differs",
    );
    flip_byte(&tile1, 7);
    // Nothing went: the first tile is still in the database (whose reads never
    // touch the archive).
    assert_eq!(all_entries(&s.url, Some(&admin), size), admin_view);

    // The prune: every full tile the export covers.
    let out = prune(&s.url, &admin, &["--exported"]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["through"], 512, "{v}");
    assert_eq!(v["pruned"], 512, "{v}");
    // Again, or below: nothing to do.
    let out = prune(&s.url, &admin, &["--through", "256"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json_of(&out)["pruned"], 0);

    // Every read answers as before.
    assert_eq!(all_entries(&s.url, Some(&admin), size), admin_view);
    assert_eq!(all_entries(&s.url, Some(&issuer_key), size), issuer_view);
    assert_eq!(all_entries(&s.url, None, size), anonymous_view);
    assert_eq!(proofs(&s.url), proofs_before);
    assert_eq!(get_ok(&receipt_url, Some(&issuer_key)), receipt_before);
    assert_eq!(
        get_bytes(&format!("{}/v1/audit/tile/0/000", s.url), None),
        tile0_before
    );
    assert_eq!(
        get_bytes(
            &format!("{}/v1/audit/tile/entries/001", s.url),
            Some(&admin)
        ),
        bundle1_before
    );
    // By leaf hash (URL-encoded base64).
    let leaf = admin_view[10]["leaf_hash"].as_str().unwrap();
    let encoded = leaf
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    let v: Value = serde_json::from_str(&get_ok(
        &format!("{}/v1/audit/proof/inclusion?leaf_hash={encoded}", s.url),
        None,
    ))
    .unwrap();
    assert_eq!(v["index"], 10, "{v}");
    // The CLI: an entry, its proof, the online check with an entry and the export.
    let out = run(&s.url, Some(&admin), &["audit", "entry", "10"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        admin_view[10]["entry"].as_str().unwrap()
    );
    let out = run(&s.url, Some(&admin), &["audit", "proof", "300"]);
    assert!(out.status.success(), "{}", text(&out));
    let proof_file = work.path().join("proof.txt");
    std::fs::write(&proof_file, &out.stdout).unwrap();
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "audit",
            "verify",
            "--proof-file",
            proof_file.to_str().unwrap(),
            "--log-key",
            &key,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let state = work.path().join("state.json");
    for index in ["10", "300", "600"] {
        let out = run(
            &s.url,
            Some(&admin),
            &[
                "audit",
                "verify",
                "--log-key",
                &key,
                "--state",
                state.to_str().unwrap(),
                "--index",
                index,
            ],
        );
        assert!(out.status.success(), "{index}: {}", text(&out));
    }
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "audit",
            "verify",
            "--tiles",
            &archive_arg,
            "--log-key",
            &key,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The log goes on: new decisions, checkpoints consistent with the pruned one.
    let (_, last) = verify_many(&s.url, &token, 5);
    let grown = wait_for_checkpoint(&s.url, last);
    let out = run(
        &s.url,
        Some(&admin),
        &[
            "audit",
            "verify",
            "--log-key",
            &key,
            "--state",
            state.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    drop(s);

    // A fresh server (nothing cached) reading the export from a web server: one
    // missing tile is 503, one altered 502, never served; the records it keeps are
    // served as ever.
    let archive_url = serve_files(&archive);
    let s = serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--audit-archive", &archive_url],
        &[],
    );
    assert_eq!(
        get_ok(
            &receipt_url.replace(&base(&receipt_url), &s.url),
            Some(&issuer_key)
        ),
        receipt_before
    );
    let entries_of_tile1 = format!("{}/v1/audit/entries?start=256&end=260", s.url);
    std::fs::rename(&bundle1, &aside).unwrap();
    let (status, body) = get(&entries_of_tile1, Some(&admin));
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_code(&body), "AUDIT_ARCHIVE_UNAVAILABLE", "{body}");
    std::fs::rename(&aside, &bundle1).unwrap();
    flip_byte(&bundle1, 40);
    for url in [
        entries_of_tile1.clone(),
        format!(
            "{}/v1/audit/proof/inclusion?index=300&tree_size={size}",
            s.url
        ),
        format!("{}/v1/audit/tile/0/001", s.url),
    ] {
        let (status, body) = get(&url, Some(&admin));
        assert_eq!(status, 502, "{url}: {body}");
        assert_eq!(error_code(&body), "AUDIT_ARCHIVE_MISMATCH", "{body}");
    }
    let (status, _) = get(
        &format!("{}/v1/audit/entries?start=512&end=520", s.url),
        None,
    );
    assert_eq!(status, 200);
    flip_byte(&bundle1, 40);
    assert_eq!(all_entries(&s.url, Some(&admin), size), admin_view);
    drop(s);

    // Without an archive: pruned records are a clear 503, the rest served; no prune.
    let s = serve_with_args(dir.path(), "127.0.0.1:0", &[], &[]);
    let (status, body) = get(&format!("{}/v1/audit/entries?start=0&end=5", s.url), None);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("--audit-archive"), "{body}");
    let (status, _) = get(
        &format!("{}/v1/audit/entries?start=512&end=520", s.url),
        None,
    );
    assert_eq!(status, 200);
    let (status, body) = get(
        &format!("{}/v1/receipts/{receipt_id}", s.url),
        Some(&issuer_key),
    );
    assert_eq!(status, 503, "{body}");
    // Callers who read no receipt get the one 404, not the archive's error (which
    // would tell that the receipt exists).
    for key in [None, Some(admin.as_str())] {
        let (status, body) = get(&format!("{}/v1/receipts/{receipt_id}", s.url), key);
        assert_eq!(status, 404, "{body}");
    }
    refused(
        &prune(&s.url, &admin, &["--through", "512"]),
        "no audit archive is configured",
    );
    drop(s);

    // The database no longer holds the pruned entries.
    block_on(async {
        let store = bonafide_store::SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.audit_pruned().await.unwrap(), 512);
        assert!(store.audit_entries(0, 512).await.unwrap().is_empty());
        assert_eq!(
            store.audit_entries(512, grown).await.unwrap().len() as u64,
            grown - 512
        );
        assert!(store.audit_size().await.unwrap() >= grown);
    });
}
