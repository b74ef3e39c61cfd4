//! `bonafide api-key create|list|rotate|revoke`: API keys as objects, by their public
//! id (`key_…`), over HTTP (`/v1/api-keys`). Any API key in BONAFIDE_API_KEY manages
//! its own identity's keys; an admin key any identity's (`--owner`). A secret is
//! printed once, when made. `revoke sha256:…` still takes the admin-key ids older
//! registries listed.

use std::process::ExitCode;

use anyhow::{Result, bail};
use bonafide_client::Client;
use bonafide_core::apikey::{ApiKey, KeyScope, parse_public_id};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::Out;
use crate::{duration, explain};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key; its secret is printed once.
    Create {
        /// A label for people (at most 100 characters).
        #[arg(long)]
        name: String,
        /// Whose key: `admin`, `iss_…` or `rcv_…` (default: the calling key's own
        /// identity).
        #[arg(long)]
        owner: Option<String>,
        /// A scope narrowing it (repeat): read, write, tokens:issue, verify, events,
        /// audit:read, keys:manage. None: its kind's full rights.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// Expires after this long (`3600`, `90d`); default: never.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
    },
    /// List an identity's API keys (never a secret), with their state (active,
    /// rotating, expired, revoked).
    List {
        /// Whose keys: `admin`, `iss_…` or `rcv_…` (default: the calling key's own).
        #[arg(long)]
        owner: Option<String>,
    },
    /// Rotate an API key: a new key (printed once) with the same name and scopes; the
    /// old one keeps working for the grace period.
    Rotate {
        /// The key's id (`key_…`, from `list`).
        id: String,
        /// How long the old key keeps working (`0`, `24h`, up to `30d`; default 24h).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Revoke an API key by its id: it authenticates nothing from the next request on.
    /// The last admin key cannot be revoked (exit 2).
    Revoke {
        /// The key's id: `key_…` from `list` (or an admin key's older `sha256:…` id).
        id: String,
    },
}

/// A `key_…` id, or an older `sha256:` admin-key id: anything else never reaches a URL.
fn key_id(id: &str) -> Result<&str> {
    let legacy = id.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if parse_public_id(id).is_none() && !legacy {
        bail!(
            "`{id}` is not an API key id: `key_` and 16 hex digits, as `bonafide api-key list` prints"
        );
    }
    Ok(id)
}

/// A client with whatever API key BONAFIDE_API_KEY holds (the registry decides what
/// it may manage).
fn client(url: &str) -> Result<Client> {
    let key = std::env::var("BONAFIDE_API_KEY")
        .map_err(|_| Failure::usage("set BONAFIDE_API_KEY to an API key (bfk_…)"))?;
    ApiKey::parse(key.trim()).map_err(|e| Failure::usage(format!("BONAFIDE_API_KEY: {e}")))?;
    Client::new(url, Some(key.trim().to_owned())).map_err(explain)
}

fn seconds(flag: &str, text: &str) -> Result<u64> {
    let secs = duration::parse(text)?;
    u64::try_from(secs).map_err(|_| Failure::usage(format!("{flag} `{text}` is negative")))
}

fn owner_query(owner: Option<&str>) -> Result<String> {
    let Some(owner) = owner else {
        return Ok(String::new());
    };
    // Ids are `[a-z0-9_]`; anything else is refused here rather than escaped.
    if owner.is_empty()
        || !owner
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        bail!("--owner `{owner}`: `admin`, an issuer id (`iss_…`) or a receiver id (`rcv_…`)");
    }
    Ok(format!("?owner={owner}"))
}

pub async fn run(url: &str, cmd: ApiKeyCmd, out: Out) -> Result<ExitCode> {
    match cmd {
        ApiKeyCmd::Create {
            name,
            owner,
            scopes,
            expires_in,
        } => {
            if let Some(bad) = scopes.iter().find(|s| KeyScope::parse(s).is_none()) {
                bail!(
                    "--scope `{bad}`: one of {}",
                    KeyScope::ALL.map(KeyScope::as_str).join(", ")
                );
            }
            let mut body = json!({ "name": name });
            if let Some(owner) = owner {
                owner_query(Some(&owner))?;
                body["owner"] = json!(owner);
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            if let Some(text) = expires_in {
                let secs = seconds("--expires-in", &text)?;
                if secs == 0 {
                    bail!("--expires-in `{text}`: at least 1s");
                }
                body["expires_in_seconds"] = json!(secs);
            }
            let v: Value = client(url)?
                .post("/v1/api-keys", &body)
                .await
                .map_err(explain)?;
            out.key_made(&v, "created");
        }
        ApiKeyCmd::List { owner } => {
            let q = owner_query(owner.as_deref())?;
            let v: Value = client(url)?
                .get(&format!("/v1/api-keys{q}"))
                .await
                .map_err(explain)?;
            out.keys(&v);
        }
        ApiKeyCmd::Rotate { id, grace } => {
            let id = key_id(&id)?;
            if id.starts_with("sha256:") {
                bail!("rotate takes a `key_…` id (`bonafide api-key list` prints them)");
            }
            let mut body = json!({});
            if let Some(text) = grace {
                body["grace_seconds"] = json!(seconds("--grace", &text)?);
            }
            let v: Value = client(url)?
                .post(&format!("/v1/api-keys/{id}/rotate"), &body)
                .await
                .map_err(explain)?;
            out.key_made(&v, "rotated");
        }
        ApiKeyCmd::Revoke { id } => {
            let id = key_id(&id)?;
            if id.starts_with("sha256:") {
                let v: Value = client(url)?
                    .post(&format!("/v1/admin/api-keys/{id}/revoke"), &json!({}))
                    .await
                    .map_err(explain)?;
                out.key_revoked(v["id"].as_str().unwrap_or(id), &v);
            } else {
                let v: Value = client(url)?
                    .post(&format!("/v1/api-keys/{id}/revoke"), &json!({}))
                    .await
                    .map_err(explain)?;
                out.key_revoked(id, &v);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Out {
    fn keys(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "{:<20} {:<9} {:<8} {:<24} {:<24} name",
            "id", "state", "kind", "created", "expires"
        );
        for k in v["keys"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let s = |f: &str| k[f].as_str().unwrap_or("-").to_owned();
            println!(
                "{:<20} {:<9} {:<8} {:<24} {:<24} {}{}",
                s("id"),
                s("state"),
                s("kind"),
                s("created_at"),
                s("expires_at"),
                s("name"),
                k["scopes"]
                    .as_array()
                    .map(|a| format!(
                        " [{}]",
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ))
                    .unwrap_or_default()
            );
        }
    }

    fn key_made(&self, v: &Value, what: &str) {
        if self.json {
            return self.json_out(v);
        }
        let id = v["key"]["id"].as_str().unwrap_or("-");
        println!(
            "{what} API key {id} (shown once, store it now):\n  {}",
            v["secret"].as_str().unwrap_or("-")
        );
        if let Some(prev) = v["previous"]["id"].as_str() {
            println!(
                "the old key {prev} works until {}",
                v["previous"]["expires_at"].as_str().unwrap_or("-")
            );
        }
    }

    fn key_revoked(&self, id: &str, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("revoked API key {id}; it authenticates nothing from now on");
    }
}
