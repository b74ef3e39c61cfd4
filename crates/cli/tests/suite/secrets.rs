//! The registry's private keys at rest (issue 16 item 6): sealed under a
//! key-encryption key kept outside the database, on SQLite here (the store's
//! conformance suite covers resealing on both backends).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::note::NoteSigner;
use bonafide_store::{
    AuditRecord, KeyState, LogKeyRecord, ReceiptKeyRecord, SigningKeyRecord, SqliteStore, Store,
};

use crate::common::{self, BIN, serve, serve_with_args};

/// Everything SQLite wrote in the data dir (the database and its WAL), as bytes.
fn dump(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("bonafide.db") {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// No private key in any form the registry stores: PEM, or the log's C2SP key.
fn assert_no_private_key(dir: &Path) {
    let bytes = dump(dir);
    assert!(!bytes.is_empty());
    assert!(
        !holds(&bytes, "PRIVATE KEY"),
        "a PEM private key in the database"
    );
    assert!(!holds(&bytes, "PRIVATE+KEY"), "the log key in the database");
    assert!(holds(&bytes, "bfk-sealed-v1:"), "sealed keys expected");
}

fn jwks_kids(url: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let body: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{url}/.well-known/jwks.json"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    let mut kids: Vec<String> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// Runs a command that must exit by itself (a server that refuses to start).
fn run_to_exit(mut cmd: Command) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn serve_cmd(dir: &Path, kek: Option<&Path>) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("BONAFIDE_ADMIN_KEY")
        .env_remove("BONAFIDE_KEY_ENCRYPTION_KEY_FILE");
    if let Some(kek) = kek {
        cmd.arg("--key-encryption-key-file").arg(kek);
    }
    cmd
}

fn new_kek(path: &Path) {
    let out = Command::new(BIN)
        .args(["keys", "new-kek", "--out"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
}

/// A new data dir gets its KEK (0600) beside the database, every key is stored
/// sealed, a restart finds it, and another KEK is refused with a clear error, as is
/// `keys rotate` with it; `keys rotate` with the right one works.
#[test]
fn keys_are_sealed_at_rest_and_open_only_with_their_kek() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let first_kids = {
        let served = serve(&dir, &[]);
        jwks_kids(&served.url)
    };
    let kek = dir.join("key-encryption.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_no_private_key(&dir);

    // Restart: the KEK is found again, the same keys are served.
    {
        let served = serve(&dir, &[]);
        assert_eq!(jwks_kids(&served.url), first_kids);
    }
    // Named explicitly, the same file works too.
    {
        let served = serve_with_args(
            &dir,
            "127.0.0.1:0",
            &["--key-encryption-key-file", kek.to_str().unwrap()],
            &[],
        );
        assert_eq!(jwks_kids(&served.url), first_kids);
    }

    // Another KEK: a clear refusal, nothing created in its place.
    let other = tmp.path().join("other.kek");
    new_kek(&other);
    let out = run_to_exit(serve_cmd(&dir, Some(&other)));
    assert!(!out.status.success());
    let said = common::text(&out);
    assert!(
        said.contains("this key-encryption key does not open the registry's keys"),
        "{said}"
    );
    let out = run_to_exit({
        let mut cmd = Command::new(BIN);
        cmd.args(["keys", "rotate", "--data-dir"])
            .arg(&dir)
            .arg("--key-encryption-key-file")
            .arg(&other);
        cmd
    });
    assert!(!out.status.success());
    assert!(
        common::text(&out).contains("does not open the registry's keys"),
        "{}",
        common::text(&out)
    );
    // A KEK file others may read is refused before anything is opened.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run_to_exit(serve_cmd(&dir, Some(&other)));
        assert!(!out.status.success());
        assert!(
            common::text(&out).contains("accessible to other users"),
            "{}",
            common::text(&out)
        );
    }

    // The right KEK rotates; the server still starts and serves both keys.
    let out = Command::new(BIN)
        .args(["keys", "rotate", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    assert_no_private_key(&dir);
    let served = serve(&dir, &[]);
    let kids = jwks_kids(&served.url);
    assert_eq!(kids.len(), first_kids.len() + 1, "{kids:?}");
}

/// PostgreSQL needs a KEK: `serve --database-url` without one says how to make it
/// (before connecting: the URL here leads nowhere).
#[test]
fn postgres_requires_a_kek() {
    let out = run_to_exit({
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://u@127.0.0.1:1/db",
        ])
        .env_remove("BONAFIDE_KEY_ENCRYPTION_KEY_FILE")
        .env_remove("BONAFIDE_DATA_DIR");
        cmd
    });
    assert!(!out.status.success());
    let said = common::text(&out);
    assert!(said.contains("needs --key-encryption-key-file"), "{said}");
    assert!(said.contains("bonafide keys new-kek"), "{said}");
}

/// A database made before sealing (plaintext keys) is sealed in place on start,
/// keeping the same keys.
#[test]
fn a_plaintext_database_is_sealed_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kid = rt.block_on(async {
        let store = SqliteStore::open(&dir).await.unwrap();
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let record = SigningKeyRecord {
            kid: key.kid().to_owned(),
            alg: key.alg(),
            private_pem: key.to_pkcs8_pem().unwrap().expose_secret().to_owned(),
            state: KeyState::Active,
            created_at_ms: 1,
            publish_until_s: None,
        };
        let entry = bonafide_core::audit::AuditEntry::new(
            bonafide_core::audit::EventType::KeyAdded,
            1,
            bonafide_core::audit::Actor::Registry,
        );
        let audit = AuditRecord {
            entry: entry.to_canonical().unwrap(),
            agent_id: None,
            issuer_id: None,
            created_at_ms: 1,
            prepared: None,
        };
        store.rotate_signing_key(&record, 0, &audit).await.unwrap();
        let receipt = SigningKey::generate(Algorithm::EdDSA).unwrap();
        store
            .receipt_key(&ReceiptKeyRecord {
                private_pem: receipt.to_pkcs8_pem().unwrap().expose_secret().to_owned(),
                created_at_ms: 1,
            })
            .await
            .unwrap();
        let origin = "127.0.0.1/audit";
        let signer = NoteSigner::generate(origin).unwrap();
        store
            .audit_log_key(&LogKeyRecord {
                origin: origin.to_owned(),
                signer_key: signer
                    .signer_key_string()
                    .unwrap()
                    .expose_secret()
                    .to_owned(),
                created_at_ms: 1,
            })
            .await
            .unwrap();
        store.close().await;
        key.kid().to_owned()
    });
    assert!(holds(&dump(&dir), "PRIVATE KEY"));
    let served = serve(&dir, &[]);
    assert!(
        jwks_kids(&served.url).contains(&kid),
        "the same key, now sealed"
    );
    drop(served);
    assert_no_private_key(&dir);
    // And it opens again.
    let served = serve(&dir, &[]);
    assert!(jwks_kids(&served.url).contains(&kid));
}

fn rotate_kek(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["keys", "rotate-kek", "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("BONAFIDE_KEY_ENCRYPTION_KEY_FILE")
        .env_remove("BONAFIDE_DATABASE_URL");
    run_to_exit(cmd)
}

/// `keys rotate-kek`: the keys are re-sealed under a new KEK (made in place of the
/// data dir's default file, or given), the old KEK no longer opens them, the same keys
/// are served; a wrong current KEK, a missing new one, and an interrupted earlier
/// rotation are refused with nothing changed.
#[test]
fn the_kek_rotates_and_the_old_one_stops_opening_the_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let kids = {
        let served = serve(&dir, &[]);
        jwks_kids(&served.url)
    };
    let default = dir.join("key-encryption.key");
    let old = tmp.path().join("old.kek");
    std::fs::copy(&default, &old).unwrap();

    // A wrong current KEK: refused, nothing changed.
    let other = tmp.path().join("other.kek");
    new_kek(&other);
    let out = rotate_kek(
        &dir,
        &["--key-encryption-key-file", other.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("does not open the registry's keys"),
        "{}",
        common::text(&out)
    );
    // A current KEK given by flag needs the new one named.
    let out = rotate_kek(&dir, &["--key-encryption-key-file", old.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("--new-key-encryption-key-file is required"),
        "{}",
        common::text(&out)
    );
    // An interrupted earlier rotation's staged file is never overwritten.
    let staged = dir.join("key-encryption.key.new");
    std::fs::write(&staged, "left over").unwrap();
    let out = rotate_kek(&dir, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("an earlier rotation was interrupted"),
        "{}",
        common::text(&out)
    );
    std::fs::remove_file(&staged).unwrap();
    assert_eq!(
        std::fs::read(&default).unwrap(),
        std::fs::read(&old).unwrap()
    );

    // Made in place of the default file: the signing, receipt, audit-log, event,
    // status-list and session keys.
    let out = rotate_kek(&dir, &[]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("re-sealed 6 private keys"),
        "{}",
        common::text(&out)
    );
    assert_ne!(
        std::fs::read(&default).unwrap(),
        std::fs::read(&old).unwrap()
    );
    assert!(!staged.exists());
    assert_no_private_key(&dir);
    {
        let served = serve(&dir, &[]);
        assert_eq!(jwks_kids(&served.url), kids, "the same keys");
    }
    let out = run_to_exit(serve_cmd(&dir, Some(&old)));
    assert!(
        !out.status.success(),
        "the old KEK no longer opens the keys"
    );
    assert!(
        common::text(&out).contains("does not open the registry's keys"),
        "{}",
        common::text(&out)
    );

    // Given: the keys move under it, and the default file becomes a copy of it.
    let given = tmp.path().join("given.kek");
    new_kek(&given);
    let out = rotate_kek(
        &dir,
        &["--new-key-encryption-key-file", given.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(
        std::fs::read(&default).unwrap(),
        std::fs::read(&given).unwrap()
    );
    let served = serve_with_args(
        &dir,
        "127.0.0.1:0",
        &["--key-encryption-key-file", given.to_str().unwrap()],
        &[],
    );
    assert_eq!(jwks_kids(&served.url), kids);
}

/// The playground's demo key (`serve --playground`) is made once, sealed like the
/// registry's other keys, the same after a restart and after a KEK rotation (which
/// re-seals it with the six others); a registry without `--playground` says the
/// playground is off.
#[test]
fn the_playground_key_is_sealed_and_kept_across_restarts_and_kek_rotations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let demo_kid = |url: &str| -> (u16, serde_json::Value) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let resp = reqwest::get(format!(
                "{url}/compat/agentoauth/playground/.well-known/jwks.json"
            ))
            .await
            .unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    };
    let first = {
        let served = common::serve_with_args(&dir, "127.0.0.1:0", &["--playground"], &[]);
        let (status, jwks) = demo_kid(&served.url);
        assert_eq!(status, 200, "{jwks}");
        jwks["keys"][0]["kid"].as_str().unwrap().to_owned()
    };
    assert_no_private_key(&dir);
    {
        let served = common::serve_with_args(&dir, "127.0.0.1:0", &["--playground"], &[]);
        assert_eq!(demo_kid(&served.url).1["keys"][0]["kid"], first.as_str());
    }
    {
        let served = serve(&dir, &[]);
        let (status, body) = demo_kid(&served.url);
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["code"], "NOT_FOUND", "{body}");
    }
    let out = rotate_kek(&dir, &[]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("re-sealed 7 private keys"),
        "{}",
        common::text(&out)
    );
    assert_no_private_key(&dir);
    let served = common::serve_with_args(&dir, "127.0.0.1:0", &["--playground"], &[]);
    assert_eq!(demo_kid(&served.url).1["keys"][0]["kid"], first.as_str());
}
