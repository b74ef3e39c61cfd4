//! Rule: a full disk is survived, not a wedge. While the data dir's file system is
//! full, writes answer 503 `STORAGE_FULL` (never 500) and `/v1/health` and `/healthz`
//! say the store cannot write; once space is back, writes resume by themselves (no
//! restart) and health is ok again; everything answered 2xx is still there, also after
//! a restart.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness};

/// A tmpfs of `size_kib` mounted on a fresh temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts it, or fails the test: it needs root (or CAP_SYS_ADMIN) to mount, and a
    /// skipped test would prove nothing.
    fn mount(size_kib: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_kib}k,mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs root to mount a tmpfs, and `mount` could not run: {e}")
            });
        assert!(
            out.status.success(),
            "this test needs root (CAP_SYS_ADMIN) to mount a tmpfs; `mount -t tmpfs` said: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open: detach it now, freed when released.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Fills the file system holding `dir` with one file until it refuses another byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    // Big writes first, then page-sized ones for what is left (tmpfs counts pages).
    for chunk in [64 * 1024, 4096, 512] {
        let buf = vec![0x5a_u8; chunk];
        loop {
            match file.write_all(&buf) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
    path
}

async fn create_issuer(h: &Harness, name: &str) -> (StatusCode, Value) {
    h.call(
        "POST",
        "/v1/issuers",
        Some(&h.admin),
        Some(json!({"name": name})),
    )
    .await
}

/// `/v1/health` and `/healthz`: their statuses and `/v1/health`'s body.
async fn health(h: &Harness) -> (StatusCode, StatusCode, Value) {
    let (st, v) = h.call("GET", "/v1/health", None, None).await;
    let (stz, _) = h.call("GET", "/healthz", None, None).await;
    (st, stz, v)
}

fn assert_storage_full(st: StatusCode, v: &Value, what: &str) {
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{what}: {v}");
    assert_eq!(v["error"]["code"], "STORAGE_FULL", "{what}: {v}");
}

/// What the registry answered 2xx for: it must all still be there.
#[derive(Default)]
struct Acknowledged {
    /// Issuer keys (their issuers exist and the keys authenticate).
    issuer_keys: Vec<String>,
    /// (issuer key, agent id).
    agents: Vec<(String, String)>,
    /// Audit indexes verify answers carried.
    audit_indexes: Vec<u64>,
}

impl Acknowledged {
    async fn assert_present(&self, h: &Harness, when: &str) {
        for key in &self.issuer_keys {
            let (st, v) = h.call("GET", "/v1/agents", Some(key), None).await;
            assert_eq!(st, StatusCode::OK, "{when}: an acknowledged issuer: {v}");
        }
        for (key, agent) in &self.agents {
            let (st, v) = h
                .call("GET", &format!("/v1/agents/{agent}"), Some(key), None)
                .await;
            assert_eq!(
                st,
                StatusCode::OK,
                "{when}: acknowledged agent {agent}: {v}"
            );
        }
        for &i in &self.audit_indexes {
            let (st, v) = h
                .call(
                    "GET",
                    &format!("/v1/audit/entries?start={i}&end={}", i + 1),
                    Some(&h.admin),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{when}: {v}");
            let entry = v["entries"][0]["entry"].as_str().unwrap_or_default();
            assert!(
                v["entries"][0]["index"] == i && entry.contains("\"verify\""),
                "{when}: acknowledged audit entry {i}: {v}"
            );
            // And provable: a checkpoint covering it is signed and stored.
            let (st, v) = h
                .call(
                    "GET",
                    &format!("/v1/audit/proof/bundle?index={i}"),
                    Some(&h.admin),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{when}: a proof of entry {i}: {v}");
        }
    }
}

/// A registration, kept in `ack`.
async fn register(h: &Harness, key: &str, name: &str, ack: &mut Acknowledged) -> String {
    let reg = h
        .register(key, json!({"name": name, "scopes": ["read:x"]}))
        .await;
    ack.agents
        .push((key.to_owned(), reg["agent_id"].as_str().unwrap().to_owned()));
    reg["token"].as_str().unwrap().to_owned()
}

/// An audited verify, its index kept in `ack`.
async fn verify(h: &Harness, token: &str, ack: &mut Acknowledged) {
    let v = h.verify_token(token).await;
    assert_eq!(v["valid"], true, "{v}");
    ack.audit_indexes
        .push(v["audit_index"].as_u64().unwrap_or_else(|| panic!("{v}")));
}

#[tokio::test]
async fn a_full_disk_is_survived_not_a_wedge() {
    // Declared first, dropped last: the server and its files go before the unmount.
    let fs = Tmpfs::mount(8 * 1024);
    let h = common::start_in(fs.path(), common::config()).await;
    let mut ack = Acknowledged::default();

    let key = h.issuer("before.example").await;
    ack.issuer_keys.push(key.clone());
    let token = register(&h, &key, "Before", &mut ack).await;
    verify(&h, &token, &mut ack).await;
    let (st, stz, v) = health(&h).await;
    assert_eq!((st, stz), (StatusCode::OK, StatusCode::OK), "{v}");

    let filler = fill(fs.path());

    // Every kind of write is refused with 503, and keeps being refused the same way.
    let (st, v) = create_issuer(&h, "during.example").await;
    assert_storage_full(st, &v, "an issuer while the disk is full");
    let (st, v) = h
        .call(
            "POST",
            "/v1/agents/register",
            Some(&key),
            Some(json!({"name": "During", "scopes": ["read:x"]})),
        )
        .await;
    assert_storage_full(st, &v, "a registration while the disk is full");
    // A verify's decision goes through the audit committer's batch.
    let (st, v) = h
        .call("POST", "/v1/verify", None, Some(json!({"token": token})))
        .await;
    assert_storage_full(st, &v, "an audited verify while the disk is full");
    let (st, v) = create_issuer(&h, "during.example").await;
    assert_storage_full(st, &v, "a second issuer while the disk is full");
    // Reads still answer.
    let (st, v) = h.call("GET", "/v1/agents", Some(&key), None).await;
    assert_eq!(st, StatusCode::OK, "a read while the disk is full: {v}");

    // Health says the store cannot write, also after its probe has had time to run.
    for _ in 0..2 {
        let (st, stz, v) = health(&h).await;
        assert_storage_full(st, &v, "/v1/health while the disk is full");
        assert_eq!(stz, StatusCode::SERVICE_UNAVAILABLE, "/healthz while full");
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }

    std::fs::remove_file(&filler).unwrap();

    // Health recovers by itself, before any write has succeeded.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, stz, v) = health(&h).await;
        if st == StatusCode::OK && stz == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health still not ok 10 s after space was freed: {st} {stz} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Writes resume without a restart; the refused issuer was never written.
    let (st, v) = create_issuer(&h, "during.example").await;
    assert_eq!(st, StatusCode::CREATED, "an issuer once space is back: {v}");
    let after = v["api_key"].as_str().unwrap().to_owned();
    ack.issuer_keys.push(after.clone());
    let token2 = register(&h, &after, "After", &mut ack).await;
    verify(&h, &token, &mut ack).await;
    verify(&h, &token2, &mut ack).await;
    let (st, stz, v) = health(&h).await;
    assert_eq!((st, stz), (StatusCode::OK, StatusCode::OK), "{v}");

    ack.assert_present(&h, "once space is back").await;
    let h = h.restart().await;
    ack.assert_present(&h, "after a restart").await;
    drop(h);
    drop(fs);
}

/// A database whose write lock another process holds answers 503
/// `STORE_UNAVAILABLE` with `Retry-After` once SQLite's busy timeout passes (never
/// 500), writes nothing, `/v1/health` and `/healthz` (readiness) answer 503 until the
/// lock is released, and it takes writes again afterwards.
#[tokio::test]
async fn a_locked_database_answers_503_with_retry_after_and_recovers() {
    use sqlx::Connection;
    let h = common::start().await;
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", h.db_path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let size = h.state.store.audit_size().await.unwrap();
    let res = h
        .http
        .post(format!("{}/v1/issuers", h.base))
        .bearer_auth(&h.admin)
        .json(&json!({"name": "while-locked.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        res.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "STORE_UNAVAILABLE", "{v}");
    // Health and readiness say so, and keep saying so once the store probes again
    // (its data dir takes files; the database's lock is what is missing).
    let health = |path: &'static str| {
        let h = &h;
        async move {
            let res = h
                .http
                .get(format!("{}{path}", h.base))
                .send()
                .await
                .unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    for round in 0..2 {
        for path in ["/v1/health", "/healthz"] {
            let (st, body) = health(path).await;
            assert_eq!(
                st,
                StatusCode::SERVICE_UNAVAILABLE,
                "{round} {path}: {body}"
            );
            assert!(body.contains("STORE_UNAVAILABLE"), "{round} {path}: {body}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    other.close().await.unwrap();
    assert_eq!(h.state.store.audit_size().await.unwrap(), size);
    // Released: ready again within a probe interval or two, with no write needed.
    let mut ready = false;
    for _ in 0..30 {
        if health("/healthz").await.0 == StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ready, "/healthz stays 503 after the lock is released");
    assert_eq!(health("/v1/health").await.0, StatusCode::OK);
    let (st, v) = create_issuer(&h, "while-locked.example").await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "the same request succeeds afterwards: {v}"
    );
}
