//! `bonafide rate-limit list|set|clear`: the registry's rate limits, and a limit of its
//! own for one API key (admin key in BONAFIDE_API_KEY). A key is named by its id
//! (`sha256:…`) or by the key itself, whose id is computed here: the key never
//! leaves this machine.

use std::process::ExitCode;

use anyhow::Result;
use bonafide_core::apikey::{ApiKey, KeyKind};
use clap::Subcommand;
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::Out;
use crate::{client, explain};

#[derive(Debug, Subcommand)]
pub enum RateLimitCmd {
    /// The limits in force: each policy's, the trusted proxies, and every key with a
    /// limit of its own.
    List,
    /// Give one API key a limit of its own instead of its kind's default (audited).
    Set {
        /// The key's id (`sha256:` and 16 hex digits) or the key itself (`bfk_…`,
        /// turned into its id here; never sent).
        key: String,
        /// N requests per window: N/min, N/h, N/s, N/d or N/<n>s (e.g. 100/min).
        limit: String,
    },
    /// Remove a key's own limit: its kind's default applies again (audited).
    Clear {
        /// The key's id or the key itself, as for `set`.
        key: String,
    },
}

/// The id of a key given by id or as the key itself; anything else never reaches a
/// URL (exit 2).
fn key_id(text: &str) -> Result<String> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix("sha256:")
        && hex.len() == 16
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Ok(text.to_owned());
    }
    if text.starts_with("bfk_") {
        return ApiKey::parse(text)
            .map(|k| k.hash().key_id())
            .map_err(|e| Failure::usage(format!("not a valid API key: {e}")));
    }
    Err(Failure::usage(format!(
        "`{text}` is neither an API key id (`sha256:` and 16 hex digits) nor an API key (`bfk_…`)"
    )))
}

pub async fn run(url: &str, cmd: RateLimitCmd, out: Out) -> Result<ExitCode> {
    match cmd {
        RateLimitCmd::List => {
            let client = client(url, KeyKind::Admin)?;
            let v: Value = client.get("/v1/admin/rate-limits").await.map_err(explain)?;
            out.rate_limits(&v);
        }
        RateLimitCmd::Set { key, limit } => {
            let id = key_id(&key)?;
            let limit = bonafide_server::ratelimit::Limit::parse(&limit)
                .map_err(|e| Failure::usage(e.to_string()))?;
            let client = client(url, KeyKind::Admin)?;
            let v: Value = client
                .put(
                    &format!("/v1/admin/rate-limits/keys/{id}"),
                    &json!({ "limit": limit.to_string() }),
                )
                .await
                .map_err(explain)?;
            out.key_limit(&v);
        }
        RateLimitCmd::Clear { key } => {
            let id = key_id(&key)?;
            let client = client(url, KeyKind::Admin)?;
            let v: Value = client
                .delete_json(&format!("/v1/admin/rate-limits/keys/{id}"))
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "rate limit of {} cleared: its kind's default applies again",
                    v["key_id"].as_str().unwrap_or("-")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Out {
    fn rate_limits(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        if v["enabled"] == false {
            println!("rate limits are off (serve --rate-limits off)");
        }
        println!("{:<10} limit", "policy");
        if let Some(defaults) = v["defaults"].as_object() {
            for (policy, limit) in defaults {
                println!("{policy:<10} {}", limit.as_str().unwrap_or("-"));
            }
        }
        let proxies: Vec<&str> = v["trusted_proxies"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "trusted proxies: {}",
            if proxies.is_empty() {
                "none".to_owned()
            } else {
                proxies.join(" ")
            }
        );
        let keys = v["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
        if !keys.is_empty() {
            println!();
            println!("{:<24} {:<14} set", "key", "limit");
            for k in keys {
                println!(
                    "{:<24} {:<14} {}",
                    k["key_id"].as_str().unwrap_or("-"),
                    k["limit"].as_str().unwrap_or("-"),
                    k["set_at"].as_str().unwrap_or("-")
                );
            }
        }
    }

    fn key_limit(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "rate limit of {} set to {}",
            v["key_id"].as_str().unwrap_or("-"),
            v["limit"].as_str().unwrap_or("-")
        );
    }
}
