//! `bonafide keys scan PATH… [--revoke]`: finds `bfk_` API keys in files by their
//! checksum, as secret scanners do (a look-alike with a wrong checksum, an example or
//! a redaction, is not a key and is only counted), and with `--revoke` has the
//! registry revoke each one it issued (admin key in BONAFIDE_API_KEY). Only the key's
//! SHA-256 is sent; the key itself never leaves this machine and is never printed in
//! full.
//!
//! Exit codes, like a scanner's in CI: 0 no key found, 1 keys found (revoked or not),
//! 2 an error (an unreadable path, a refused request).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use bonafide_core::apikey::{self, ApiKey, KeyKind};
use clap::Args;
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::Out;
use crate::{client, explain};

/// Largest file read; larger ones are skipped, saying so.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most files visited under the paths given.
const MAX_FILES: usize = 100_000;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories (walked, symbolic links not followed).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Revoke every key found that this registry issued (admin key in
    /// BONAFIDE_API_KEY): it authenticates nothing from the next request on.
    #[arg(long)]
    pub revoke: bool,
}

struct Hit {
    path: PathBuf,
    line: usize,
    key: ApiKey,
}

fn walk(path: &Path, files: &mut Vec<PathBuf>, skipped: &mut Vec<String>) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| Failure::coded("FILE", format!("cannot read `{}`: {e}", path.display())))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| Failure::coded("FILE", format!("cannot read `{}`: {e}", path.display())))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for entry in entries {
            if files.len() >= MAX_FILES {
                skipped.push(format!("{}: more than {MAX_FILES} files", path.display()));
                return Ok(());
            }
            walk(&entry, files, skipped)?;
        }
    } else if meta.is_file() {
        if meta.len() > MAX_FILE_BYTES {
            skipped.push(format!("{}: over 16 MiB", path.display()));
        } else {
            files.push(path.to_path_buf());
        }
    }
    Ok(())
}

/// The first 12 characters of a key: enough to find it, not enough to use it.
fn redacted(key: &ApiKey) -> String {
    let text = key.expose_secret();
    format!("{}…", text.get(..12).unwrap_or(text))
}

pub async fn run(url: &str, args: ScanArgs, out: Out) -> Result<ExitCode> {
    // The key first: a scan that cannot revoke must say so before it reads anything.
    let admin = if args.revoke {
        Some(client(url, KeyKind::Admin)?)
    } else {
        None
    };
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in &args.paths {
        walk(p, &mut files, &mut skipped)?;
    }
    let mut hits = Vec::new();
    let mut look_alikes = 0usize;
    for file in &files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        for found in apikey::scan(&text) {
            match found.key {
                Ok(key) => {
                    let line = text
                        .get(..found.offset)
                        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
                        + 1;
                    hits.push(Hit {
                        path: file.clone(),
                        line,
                        key,
                    });
                }
                Err(_) => look_alikes += 1,
            }
        }
    }
    let mut rows = Vec::new();
    for hit in &hits {
        let hash = hit.key.hash();
        let mut row = json!({
            "path": hit.path.display().to_string(),
            "line": hit.line,
            "kind": hit.key.kind().as_str(),
            "id": hash.key_id(),
            "key": redacted(&hit.key),
        });
        if let Some(admin) = &admin {
            let asked: Result<Value, _> = admin
                .post(
                    "/v1/admin/api-keys/revoke",
                    &json!({
                        "key_sha256": bonafide_core::hex(&hash.0),
                        "reason": format!("found by keys scan in {}", hit.path.display()),
                    }),
                )
                .await;
            row["revoke"] = match asked {
                Ok(v) => json!({"revoked": true, "owner": v["owner"]}),
                Err(bonafide_client::ClientError::Api { status: 404, .. }) => {
                    json!({"revoked": false, "why": "not a key of this registry, or revoked already"})
                }
                Err(bonafide_client::ClientError::Api { status: 409, .. }) => {
                    json!({"revoked": false, "why": "the registry's last admin key: add another admin key, then revoke it"})
                }
                Err(e) => return Err(explain(e)),
            };
        }
        rows.push(row);
    }
    if out.json {
        out.json_out(&json!({
            "keys": rows,
            "look_alikes": look_alikes,
            "files_scanned": files.len(),
            "skipped": skipped,
        }));
    } else {
        for r in &rows {
            let revoke = match r.get("revoke") {
                None => String::new(),
                Some(v) if v["revoked"] == true => match v["owner"].as_str() {
                    Some(o) => format!("  REVOKED (was {o}'s)"),
                    None => "  REVOKED".to_owned(),
                },
                Some(v) => format!("  not revoked: {}", v["why"].as_str().unwrap_or("-")),
            };
            println!(
                "{}:{}: {} key {} ({}){revoke}",
                r["path"].as_str().unwrap_or("-"),
                r["line"],
                r["kind"].as_str().unwrap_or("-"),
                r["key"].as_str().unwrap_or("-"),
                r["id"].as_str().unwrap_or("-"),
            );
        }
        for s in &skipped {
            eprintln!("skipped {s}");
        }
        println!(
            "{} key(s) in {} file(s){}",
            rows.len(),
            files.len(),
            if look_alikes > 0 {
                format!("; {look_alikes} look-alike(s) with a wrong checksum ignored")
            } else {
                String::new()
            }
        );
    }
    Ok(if rows.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
