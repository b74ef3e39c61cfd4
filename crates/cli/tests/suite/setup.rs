//! What the README's set-up and `serve` options promise about flags and files:
//! `serve --public-url` takes only http(s) URLs, `keys rotate` finds the data dir
//! the way `serve` does (`BONAFIDE_DATA_DIR`), and a JWKS file is held to the same
//! 1 MiB as a JWKS URL.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::{BIN, json_of, run, serve, serve_with_args, text};

fn http_get(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

/// `bonafide serve` with a public URL given by flag or by `BONAFIDE_PUBLIC_URL`,
/// expected to stop by itself: a server that starts instead is killed after 20 s and
/// the test fails, rather than hanging.
fn serve_with_public_url(dir: &Path, by_env: bool, url: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env_remove("BONAFIDE_ADMIN_KEY")
        .env_remove("BONAFIDE_PUBLIC_URL");
    if by_env {
        cmd.env("BONAFIDE_PUBLIC_URL", url);
    } else {
        cmd.args(["--public-url", url]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve --public-url {url} started instead of refusing: {}",
                text(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn serve_refuses_a_public_url_without_http_or_https() {
    let dir = tempfile::tempdir().unwrap();
    for (url, by_env, says) in [
        (
            "registry.example",
            false,
            "must start with http:// or https://",
        ),
        (
            "registry.example",
            true,
            "must start with http:// or https://",
        ),
        (
            "ftp://registry.example",
            false,
            "must start with http:// or https://",
        ),
        ("https://", false, "has no host"),
        ("http:///path", false, "has no host"),
    ] {
        let out = serve_with_public_url(dir.path(), by_env, url);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{url}: {t}");
        assert!(t.contains("--public-url") && t.contains(says), "{url}: {t}");
    }
    // Refused before anything was created.
    assert!(!dir.path().join("admin.key").exists());
    assert!(!dir.path().join("bonafide.db").exists());
}

#[test]
fn serve_takes_an_https_public_url_as_its_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve_with_args(
        dir.path(),
        "127.0.0.1:0",
        &["--public-url", "https://registry.example"],
        &[],
    );
    let discovery: Value = serde_json::from_str(&http_get(&format!(
        "{}/.well-known/bonafide-configuration",
        s.url
    )))
    .unwrap();
    assert_eq!(discovery["issuer"], "https://registry.example");
}

#[test]
fn keys_rotate_finds_the_data_dir_in_bonafide_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    drop(serve(dir.path(), &[]));
    // Run where no ./bonafide-data exists, so only the variable can name the dir.
    let elsewhere = tempfile::tempdir().unwrap();
    let rotate = |data_dir: &Path| {
        Command::new(BIN)
            .args(["--json", "keys", "rotate"])
            .current_dir(elsewhere.path())
            .env("BONAFIDE_DATA_DIR", data_dir)
            .output()
            .unwrap()
    };
    let out = rotate(dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let kid = json_of(&out)["kid"].as_str().unwrap().to_owned();
    let s = serve(dir.path(), &[]);
    let jwks = http_get(&format!("{}/.well-known/jwks.json", s.url));
    assert!(jwks.contains(&kid), "the rotated key is served: {jwks}");
    drop(s);

    // A variable naming a dir without a registry: refused, naming that dir.
    let empty = tempfile::tempdir().unwrap();
    let out = rotate(empty.path());
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains(&empty.path().display().to_string()), "{t}");
    assert!(!empty.path().join("bonafide.db").exists());
}

#[test]
fn offline_verify_holds_a_jwks_file_to_1_mib() {
    let dir = tempfile::tempdir().unwrap();
    let s = serve(dir.path(), &[]);
    let admin = s.admin_printed.clone().unwrap();
    let out = run(
        &s.url,
        Some(&admin),
        &["issuer", "create", "--name", "size.example", "--json"],
    );
    let key = json_of(&out)["api_key"].as_str().unwrap().to_owned();
    let out = run(
        &s.url,
        Some(&key),
        &[
            "agent", "register", "--name", "S", "--scope", "read:x", "--json",
        ],
    );
    let token = json_of(&out)["token"].as_str().unwrap().to_owned();
    let jwks = http_get(&format!("{}/.well-known/jwks.json", s.url));
    let at_limit = dir.path().join("at-limit.json");
    let over = dir.path().join("over.json");
    write_padded(&at_limit, &jwks, 1024 * 1024);
    write_padded(&over, &jwks, 1024 * 1024 + 1);
    let verify = |file: &Path| {
        run(
            "http://127.0.0.1:1",
            None,
            &[
                "verify",
                &token,
                "--offline",
                "--jwks",
                file.to_str().unwrap(),
                "--issuer",
                &s.url,
            ],
        )
    };
    let out = verify(&at_limit);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = verify(&over);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("larger than 1048576 bytes"), "{t}");
}

/// The JWKS text followed by spaces (still the same JSON) up to exactly `len` bytes.
fn write_padded(path: &Path, jwks: &str, len: usize) {
    let mut text = jwks.to_owned();
    text.push_str(&" ".repeat(len - jwks.len()));
    std::fs::write(path, text).unwrap();
}

/// Starts `serve` on an existing data dir with `flags`, and returns what it wrote
/// on stderr up to "bonafide listening" (then stops it).
fn start_output(dir: &Path, flags: &[&str]) -> String {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--data-dir",
        ])
        .arg(dir)
        .args(flags)
        .env_remove("BONAFIDE_ADMIN_KEY")
        .env_remove("BONAFIDE_PUBLIC_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("bonafide listening on") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    seen.expect("serve did not start within 30 s")
}

/// A second `serve` on an existing registry says what it kept instead of silently
/// ignoring `--signing-alg` or a `--public-url` that would name another audit log.
#[test]
fn a_second_serve_says_what_the_registry_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = start_output(
        &data,
        &[
            "--signing-alg",
            "EdDSA",
            "--public-url",
            "http://first.example",
        ],
    );
    assert!(!first.contains("note:"), "{first}");
    // The same flags again: nothing to say.
    let same = start_output(
        &data,
        &[
            "--signing-alg",
            "EdDSA",
            "--public-url",
            "http://first.example",
        ],
    );
    assert!(!same.contains("note:"), "{same}");
    let other = start_output(
        &data,
        &[
            "--signing-alg",
            "ES256",
            "--public-url",
            "https://second.example",
        ],
    );
    assert!(
        other.contains("keeps its signing key (EdDSA)")
            && other.contains("keys rotate --alg ES256"),
        "{other}"
    );
    assert!(
        other.contains("audit log keeps its name `first.example/audit`"),
        "{other}"
    );
}
