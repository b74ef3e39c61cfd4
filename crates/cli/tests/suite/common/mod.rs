//! Shared by the CLI integration tests: the real `bonafide serve` process on
//! 127.0.0.1:0, and running client commands against it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_bonafide");

pub struct Served {
    pub child: Child,
    pub url: String,
    pub admin_printed: Option<String>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data_dir: &Path, extra_env: &[(&str, &str)]) -> Served {
    serve_at(data_dir, "127.0.0.1:0", extra_env)
}

/// Like [`serve`], on a given address (to restart a server where clients know it).
pub fn serve_at(data_dir: &Path, listen: &str, extra_env: &[(&str, &str)]) -> Served {
    serve_with_args(data_dir, listen, &[], extra_env)
}

/// Like [`serve_at`], with more `serve` flags.
pub fn serve_with_args(
    data_dir: &Path,
    listen: &str,
    extra_args: &[&str],
    extra_env: &[(&str, &str)],
) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        listen,
        "--signing-alg",
        "EdDSA",
        "--data-dir",
    ])
    .arg(data_dir)
    .args(extra_args)
    .env_remove("BONAFIDE_ADMIN_KEY")
    .env_remove("BONAFIDE_PUBLIC_URL")
    // Tests load a registry from one address far past 100 calls a minute; the limits
    // have their own tests (`rate_limits`), which turn them on.
    .env("BONAFIDE_RATE_LIMITS", "off")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    spawn_served(cmd)
}

/// Starts `cmd` (a `bonafide serve` with its flags, stderr piped) and waits for the
/// address it announces; stderr keeps being collected into [`Served::log`].
pub fn spawn_served(mut cmd: Command) -> Served {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
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
    let mut admin = None;
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not announce its address");
        };
        log.lock().unwrap().push(line.clone());
        if let Some(k) = line.trim().strip_prefix("bfk_adm_") {
            admin = Some(format!("bfk_adm_{k}"));
        }
        if let Some(url) = line.strip_prefix("bonafide listening on ") {
            // Keep draining stderr so the server never blocks on a full pipe.
            let sink = std::sync::Arc::clone(&log);
            std::thread::spawn(move || {
                while let Ok(line) = rx.recv() {
                    sink.lock().unwrap().push(line);
                }
            });
            return Served {
                child,
                url: url.trim().to_owned(),
                admin_printed: admin,
                log,
            };
        }
    }
}

pub fn run(url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--url")
        .arg(url)
        .args(args)
        .env_remove("BONAFIDE_URL");
    match key {
        Some(k) => cmd.env("BONAFIDE_API_KEY", k),
        None => cmd.env_remove("BONAFIDE_API_KEY"),
    };
    cmd.output().expect("run bonafide")
}

pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): stdout={} stderr={}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
