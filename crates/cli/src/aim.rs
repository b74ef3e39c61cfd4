//! `bonafide aim-credentials`: an agent for AIM's Python SDK (aim-sdk). The agent's
//! Ed25519 key is made here, so the registry only ever holds its public half; the
//! agent is registered with it, and the SDK's credentials file is written where and
//! as the SDK reads it (`~/.aim/agents/<name>.json`: `agent_id`, the raw key pair in
//! standard base64, `aim_url`), after which `secure(name)` loads it unchanged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use bonafide_client::Client;
use bonafide_core::keys::{Algorithm, SigningKey};
use clap::Args;
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::Out;

#[derive(Debug, Args)]
pub struct AimCredentialsArgs {
    /// The agent's name: the name `secure(NAME)` is called with.
    #[arg(long)]
    pub name: String,
    /// Scope to grant (repeat, or separate with commas): what `@perform_action`
    /// capabilities the agent may use.
    #[arg(long = "scope", required = true, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// What the agent does.
    #[arg(long)]
    pub description: Option<String>,
}

/// The SDK's file name for an agent: what it keeps of the name
/// (`credentials.get_agent_credentials_path`: alphanumerics, `-` and `_`).
fn file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}.json")
}

/// `~/.aim/agents`, where the SDK looks (`Path.home() / ".aim" / "agents"`).
fn agents_dir() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Failure::usage("HOME is not set: the SDK reads ~/.aim/agents"))?;
    Ok(Path::new(&home).join(".aim").join("agents"))
}

/// Standard, padded base64: the SDK's encoding of keys.
fn std_base64(bytes: &[u8]) -> String {
    let mut out: String = bonafide_core::b64::encode(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !out.len().is_multiple_of(4) {
        out.push('=');
    }
    out
}

pub async fn credentials(
    url: &str,
    client: Client,
    args: AimCredentialsArgs,
    out: Out,
) -> Result<ExitCode> {
    // Everything local first: an existing file is never overwritten, and nothing is
    // registered unless the file can be written.
    let dir = agents_dir()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(file_name(&args.name));
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::usage(format!(
                "{} already exists: the SDK would load that agent; remove the file or choose another --name",
                path.display()
            )));
        }
        Err(e) => return Err(anyhow!(e).context(format!("cannot create {}", path.display()))),
    };
    let written = register_and_write(url, client, &args, &mut file).await;
    match written {
        Ok(agent_id) => {
            if out.json {
                println!(
                    "{}",
                    json!({ "agent_id": agent_id, "credentials_file": path.display().to_string() })
                );
            } else {
                println!("agent {agent_id} registered");
                println!(
                    "credentials written to {} (aim-sdk: secure({:?}))",
                    path.display(),
                    args.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Nothing usable was written: leave no half file for the SDK to load.
            drop(file);
            let _ = fs::remove_file(&path);
            Err(e)
        }
    }
}

async fn register_and_write(
    url: &str,
    client: Client,
    args: &AimCredentialsArgs,
    file: &mut fs::File,
) -> Result<String> {
    let key = SigningKey::generate(Algorithm::EdDSA).map_err(|e| anyhow!("key: {e}"))?;
    let seed = key
        .ed25519_seed()
        .ok_or_else(|| anyhow!("an Ed25519 key has no seed"))?;
    let public = key
        .verifying_key()
        .jwk()
        .x
        .as_deref()
        .and_then(|x| bonafide_core::b64::decode(x).ok())
        .ok_or_else(|| anyhow!("an Ed25519 JWK has no `x`"))?;
    let mut body = json!({
        "name": args.name,
        "scopes": args.scopes,
        "public_key": key.verifying_key().jwk(),
    });
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    let v: Value = client
        .post("/v1/agents/register", &body)
        .await
        .map_err(crate::explain)?;
    let agent_id = v["agent_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the registry's answer has no agent_id"))?
        .to_owned();
    // The SDK's layout: 64 bytes (seed then public key), as Go's ed25519 writes it.
    let mut pair = Vec::with_capacity(64);
    pair.extend_from_slice(&seed);
    pair.extend_from_slice(&public);
    let creds = json!({
        "agent_id": agent_id,
        "public_key": std_base64(&public),
        "private_key": std_base64(&pair),
        "aim_url": url.trim_end_matches('/'),
        "status": "active",
        "trust_score": null,
        "registered_at": jiff::Timestamp::now().to_string(),
        "schemaVersion": "1.0",
        "type": "agent",
        "name": args.name,
    });
    let text = serde_json::to_string_pretty(&creds)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| {
            format!(
                "agent {agent_id} was registered but its credentials could not be written; revoke it with `bonafide revoke {agent_id}`"
            )
        })?;
    Ok(agent_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_the_sdks() {
        assert_eq!(file_name("my-agent_1"), "my-agent_1.json");
        assert_eq!(file_name("a b/c.d"), "a_b_c_d.json");
    }

    #[test]
    fn keys_are_standard_padded_base64() {
        assert_eq!(std_base64(&[0xfb, 0xff]), "+/8=");
    }
}
