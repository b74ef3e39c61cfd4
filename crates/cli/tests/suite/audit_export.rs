//! `bonafide audit export` and `bonafide audit verify --tiles` against the real
//! server: an export of more than one tile that verifies offline and from a URL,
//! grows incrementally and consistently, and the tampering, missing files and foreign
//! keys it must refuse.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{json_of, run, serve, text};
use serde_json::{Value, json};

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn get_text(url: &str) -> String {
    block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

fn log_key(url: &str) -> String {
    let v: Value = serde_json::from_str(&get_text(&format!(
        "{url}/.well-known/bonafide-configuration"
    )))
    .unwrap();
    v["audit_log"]["log_key"].as_str().unwrap().to_owned()
}

/// `n` verify decisions (each one audit entry); the last one's index.
fn verify_many(url: &str, token: &str, n: usize) -> u64 {
    block_on(async {
        let client = reqwest::Client::new();
        let mut last = 0;
        for _ in 0..n {
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
        }
        last
    })
}

/// Waits until the signed checkpoint covers `index`; its size.
fn wait_for_checkpoint(url: &str, index: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let note = get_text(&format!("{url}/v1/audit/checkpoint"));
        let size: u64 = note
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if size > index {
            return size;
        }
        assert!(Instant::now() < deadline, "no checkpoint covers {index}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn export(url: &str, key: Option<&str>, to: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["audit", "export", "--to", to.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    run(url, key, &args)
}

/// `audit verify --tiles` with no registry to reach (the URL is a closed port).
fn verify_tiles(location: &str, log_key: &str) -> Output {
    run(
        "http://127.0.0.1:1",
        None,
        &[
            "audit",
            "verify",
            "--tiles",
            location,
            "--log-key",
            log_key,
            "--json",
        ],
    )
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn failed_with(out: &Output, words: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert!(text(out).contains(words), "wanted `{words}`: {}", text(out));
}

#[test]
fn audit_export_writes_tiles_that_verify_offline_and_from_a_url_and_grow_consistently() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "tiles.example", "--json"],
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
    let key = log_key(&s.url);

    // More than one full level-0 tile, so level 1 exists and binds the full tile.
    let last = verify_many(&s.url, &token, 300);
    let size = wait_for_checkpoint(&s.url, last);
    let to = work.path().join("export");
    let out = export(&s.url, Some(&admin), &to, &["--log-key", &key]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    let exported = v["tree_size"].as_u64().unwrap();
    assert!(exported >= size, "{v}");
    assert!(v["written"].as_u64().unwrap() >= 4, "{v}");
    for f in [
        "checkpoint",
        "tile/0/000",
        "tile/entries/000",
        "tile/1/000.p/1",
    ] {
        assert!(to.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::metadata(to.join("tile/0/000")).unwrap().len(),
        256 * 32
    );
    // Nothing half-written is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(to.join("tile/0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Offline, from the directory; and from a URL (the registry's own tile endpoints).
    let out = verify_tiles(to.to_str().unwrap(), &key);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["tree_size"].as_u64().unwrap(), exported);
    let note = std::fs::read_to_string(to.join("checkpoint")).unwrap();
    assert_eq!(v["root"].as_str().unwrap(), note.lines().nth(2).unwrap());
    let out = run(
        &s.url,
        Some(&admin),
        &[
            "audit",
            "verify",
            "--tiles",
            &format!("{}/v1/audit", s.url),
            "--log-key",
            &key,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Without a key, a pinned one from the state file is used only if there is one.
    let out = run(
        "http://127.0.0.1:1",
        None,
        &[
            "audit",
            "verify",
            "--tiles",
            to.to_str().unwrap(),
            "--state",
            work.path().join("none.json").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--log-key"), "{}", text(&out));

    // The log grows: the second export fetches only what is new, leaves complete
    // tiles alone, and checks consistency with the first export.
    let full_tile = std::fs::read(to.join("tile/0/000")).unwrap();
    let mtime = std::fs::metadata(to.join("tile/0/000"))
        .unwrap()
        .modified()
        .unwrap();
    let last = verify_many(&s.url, &token, 5);
    wait_for_checkpoint(&s.url, last);
    let out = export(&s.url, Some(&admin), &to, &["--log-key", &key]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert!(v["tree_size"].as_u64().unwrap() > exported, "{v}");
    assert!(
        v["notes"]
            .to_string()
            .contains("consistent with the exported checkpoint"),
        "{v}"
    );
    // New partial tiles at levels 0 and 1, and the partial entry bundle.
    assert!(v["fetched"].as_u64().unwrap() <= 4, "{v}");
    assert_eq!(std::fs::read(to.join("tile/0/000")).unwrap(), full_tile);
    assert_eq!(
        std::fs::metadata(to.join("tile/0/000"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
    let out = verify_tiles(to.to_str().unwrap(), &key);
    assert!(out.status.success(), "{}", text(&out));
    // Nothing new: nothing fetched or written.
    let out = export(&s.url, Some(&admin), &to, &["--log-key", &key]);
    assert!(out.status.success(), "{}", text(&out));
    let v = json_of(&out);
    assert_eq!(v["fetched"], 0, "{v}");

    // Tampering is caught: a hash tile, an entry bundle, a missing file.
    let bad = work.path().join("bad-tile");
    copy_dir(&to, &bad);
    flip_byte(&bad.join("tile/0/000"), 100);
    failed_with(
        &verify_tiles(bad.to_str().unwrap(), &key),
        "tile/0/000 does not hash to its entry in the tile above",
    );
    // … and export refuses to build on it.
    let out = export(&s.url, Some(&admin), &bad, &["--log-key", &key]);
    failed_with(&out, "damaged");
    let bad = work.path().join("bad-entry");
    copy_dir(&to, &bad);
    flip_byte(&bad.join("tile/entries/000"), 40);
    failed_with(
        &verify_tiles(bad.to_str().unwrap(), &key),
        "tile/entries/000",
    );
    let bad = work.path().join("missing");
    copy_dir(&to, &bad);
    std::fs::remove_file(bad.join("tile/entries/000")).unwrap();
    failed_with(&verify_tiles(bad.to_str().unwrap(), &key), "missing");

    // A file the checkpoint does not cover yet (a run that stopped before writing
    // its checkpoint) that differs from the registry's is never overwritten.
    let orphan = work.path().join("orphan");
    std::fs::create_dir_all(orphan.join("tile/0")).unwrap();
    std::fs::write(orphan.join("tile/0/000"), vec![7u8; 256 * 32]).unwrap();
    let out = export(&s.url, Some(&admin), &orphan, &["--log-key", &key]);
    failed_with(&out, "differs from what the registry serves");
    assert_eq!(
        std::fs::read(orphan.join("tile/0/000")).unwrap(),
        vec![7u8; 256 * 32]
    );
    assert!(!orphan.join("checkpoint").exists());

    // Another log's key: its checkpoint is refused, and the export refuses a
    // registry that does not announce the pinned key.
    let other_dir = tempfile::tempdir().unwrap();
    let other = serve(other_dir.path(), &[]);
    let other_key = log_key(&other.url);
    failed_with(
        &verify_tiles(to.to_str().unwrap(), &other_key),
        "does not verify",
    );
    let foreign = work.path().join("foreign");
    copy_dir(&to, &foreign);
    std::fs::write(
        foreign.join("checkpoint"),
        get_text(&format!("{}/v1/audit/checkpoint", other.url)),
    )
    .unwrap();
    failed_with(
        &verify_tiles(foreign.to_str().unwrap(), &key),
        "does not verify",
    );
    let out = export(
        &s.url,
        Some(&admin),
        &work.path().join("x"),
        &["--log-key", &other_key],
    );
    failed_with(&out, "announces log key");

    // Errors (exit 2): a key that is not one, an unwritable directory, no registry,
    // no admin key for the entry bundles.
    let out = export(
        &s.url,
        Some(&admin),
        &work.path().join("y"),
        &["--log-key", "nonsense"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a log key"), "{}", text(&out));
    let file = work.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = export(
        &s.url,
        Some(&admin),
        &file.join("sub"),
        &["--log-key", &key],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("export directory"), "{}", text(&out));
    let out = export(
        "http://127.0.0.1:1",
        Some(&admin),
        &work.path().join("z"),
        &["--log-key", &key],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = export(
        &s.url,
        None,
        &work.path().join("anon"),
        &["--log-key", &key],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("admin key"), "{}", text(&out));
    assert!(!work.path().join("anon/checkpoint").exists());
}

/// A registry's rate limit met half-way through an export is waited out (its
/// `Retry-After`), not a failure: five exports in a row, with admin keys limited to
/// 3 requests a second, each fetching a checkpoint, a tile and an entry bundle
/// (15 requests: the bucket of 3 runs dry unless they take over 4 s).
#[test]
fn audit_export_waits_out_the_registrys_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let s = common::serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--rate-limits", "on", "--rate-limit", "admin=3/s"],
        &[],
    );
    let admin = s.admin_printed.clone().unwrap();
    let key = log_key(&s.url);
    wait_for_checkpoint(&s.url, 0);
    std::thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    for i in 0..5 {
        let to = work.path().join(format!("e{i}"));
        let out = export(&s.url, Some(&admin), &to, &["--log-key", &key]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(to.join("checkpoint").is_file());
    }
    // Fifteen admin requests at three a second take four seconds at least.
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}
