//! `bonafide api-key list|revoke`: the registry's admin API keys, by id (never the
//! key). Issuer and receiver keys get their lifecycle with accounts.

use std::process::ExitCode;

use anyhow::{Result, bail};
use bonafide_core::apikey::KeyKind;
use clap::Subcommand;
use serde_json::{Value, json};

use crate::output::Out;
use crate::{client, explain};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// List the admin API keys by id (`sha256:…`), oldest first (admin key in
    /// BONAFIDE_API_KEY).
    List,
    /// Revoke an admin API key by its id from `list`: it authenticates nothing from
    /// the next request on. The last admin key cannot be revoked (exit 2).
    Revoke {
        /// The key's id, `sha256:` and 16 hex digits.
        id: String,
    },
}

/// `sha256:` and 16 lowercase hex digits: anything else never reaches a URL.
fn key_id(id: &str) -> Result<&str> {
    let ok = id.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if !ok {
        bail!(
            "`{id}` is not an API key id: `sha256:` and 16 hex digits, as `bonafide api-key list` prints"
        );
    }
    Ok(id)
}

pub async fn run(url: &str, cmd: ApiKeyCmd, out: Out) -> Result<ExitCode> {
    match cmd {
        ApiKeyCmd::List => {
            let client = client(url, KeyKind::Admin)?;
            let v: Value = client.get("/v1/admin/api-keys").await.map_err(explain)?;
            out.admin_keys(&v);
        }
        ApiKeyCmd::Revoke { id } => {
            let id = key_id(&id)?;
            let client = client(url, KeyKind::Admin)?;
            let v: Value = client
                .post(&format!("/v1/admin/api-keys/{id}/revoke"), &json!({}))
                .await
                .map_err(explain)?;
            out.admin_key_revoked(&v);
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Out {
    fn admin_keys(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("{:<24} created", "id");
        for k in v["keys"].as_array().map(Vec::as_slice).unwrap_or_default() {
            println!(
                "{:<24} {}",
                k["id"].as_str().unwrap_or("-"),
                k["created_at"].as_str().unwrap_or("-")
            );
        }
    }

    fn admin_key_revoked(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "revoked admin key {}; it authenticates nothing from now on",
            v["id"].as_str().unwrap_or("-")
        );
    }
}
