//! What the CLI prints: text for people by default, the API's JSON with `--json`.

use bonafide_core::keys::Algorithm;
use serde_json::{Value, json};

/// Output mode.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Print JSON.
    pub json: bool,
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn list(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

impl Out {
    fn json_out(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    pub fn error(&self, e: &anyhow::Error) {
        if self.json {
            eprintln!("{}", json!({ "error": format!("{e:#}") }));
        } else {
            eprintln!("error: {e:#}");
        }
    }

    pub fn issuer_created(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("issuer   {} ({})", s(&v["name"]), s(&v["issuer_id"]));
        println!("api key  {}", s(&v["api_key"]));
        println!("\nThe API key is shown only once. Keep it secret; use it as BONAFIDE_API_KEY.");
    }

    pub fn receiver_created(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("receiver {} ({})", s(&v["name"]), s(&v["receiver_id"]));
        println!("api key  {}", s(&v["api_key"]));
        println!(
            "\nThe API key is shown only once. Keep it secret; the receiving API sends it as a Bearer token to POST /v1/verify (needed to spend budgets and for idempotency keys)."
        );
    }

    pub fn agent_registered(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("agent    {} ({})", s(&v["name"]), s(&v["agent_id"]));
        println!("issuer   {}", s(&v["issuer"]));
        println!("scopes   {}", list(&v["scopes"]));
        println!("jti      {}", s(&v["jti"]));
        println!("expires  {}", s(&v["expires_at"]));
        if let Some(user) = v["user"].as_str() {
            println!("user     {user}");
        }
        if let Some(hash) = v["policy_hash"].as_str() {
            println!("policy   {hash}");
        }
        if v["allow_bearer_tokens"] == true {
            println!("bearer   tokens without cnf stay valid once the agent has its own key");
        }
        println!("verify   {}", s(&v["verify_url"]));
        println!("token\n{}", s(&v["token"]));
    }

    pub fn agent_list(&self, agents: &[Value], next: Option<&str>) {
        if self.json {
            let mut v = json!({ "agents": agents });
            if let Some(n) = next {
                v["next_cursor"] = json!(n);
            }
            return self.json_out(&v);
        }
        if agents.is_empty() {
            println!(
                "no agents yet; register one with `bonafide agent register --name NAME --scope read:x`"
            );
            return;
        }
        println!("{:<32} {:<8} {:<24} scopes", "agent", "status", "name");
        for a in agents {
            println!(
                "{:<32} {:<8} {:<24} {}",
                s(&a["agent_id"]),
                s(&a["status"]),
                s(&a["name"]),
                list(&a["scopes"])
            );
        }
        if next.is_some() {
            println!("(more agents: use --all)");
        }
    }

    pub fn revoked(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        if let Some(jti) = v["jti"].as_str() {
            println!(
                "revoked token {jti} of agent {} at {}",
                s(&v["agent_id"]),
                s(&v["revoked_at"])
            );
        } else {
            println!(
                "revoked agent {} and all its tokens at {}",
                s(&v["agent_id"]),
                s(&v["revoked_at"])
            );
            if let Some(r) = v["reason"].as_str() {
                println!("reason: {r}");
            }
        }
    }

    pub fn suspended(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "suspended agent {} at {}; its tokens are refused (AGENT_SUSPENDED) until `bonafide agent reactivate`",
            s(&v["agent_id"]),
            s(&v["suspended_at"])
        );
        if let Some(r) = v["suspend_reason"].as_str() {
            println!("reason: {r}");
        }
    }

    pub fn reactivated(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "reactivated agent {}; its tokens verify again",
            s(&v["agent_id"])
        );
    }

    pub fn verified(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        if v["valid"] != json!(true) {
            println!("INVALID  {}", s(&v["error"]));
            if let Some(r) = v["reason"].as_str() {
                println!("reason   {r}");
            }
            return;
        }
        let agent = &v["agent"];
        let verdict = if v["allowed"] == json!(true) {
            "VALID, ALLOWED"
        } else {
            "VALID, NOT ALLOWED"
        };
        println!("{verdict}");
        println!("agent    {} ({})", s(&agent["name"]), s(&agent["id"]));
        println!("issuer   {}", s(&agent["issuer"]));
        let scopes = if agent["active_scopes"].is_array() {
            &agent["active_scopes"]
        } else {
            &agent["scopes"]
        };
        println!("scopes   {}", list(scopes));
        println!("expires  {}", s(&v["expires_at"]));
        if let Some(r) = v["reason"].as_str() {
            println!("reason   {r}");
        }
        if v["offline"] == json!(true) {
            println!(
                "note     verified offline: signature, times and issuer checked; revocation NOT checked"
            );
        }
    }

    /// The answer of `POST /v1/policies/lint`: the hash and canonical form of a valid
    /// policy, or each problem with its JSON path.
    pub fn policy_linted(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        if v["valid"] == json!(true) {
            println!("VALID    pol.v0.2");
            println!("hash     {}", s(&v["policy_hash"]));
            println!("canonical\n{}", s(&v["canonical"]));
            return;
        }
        println!("INVALID");
        let errors = v["errors"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for e in errors {
            match e["path"].as_str() {
                Some(path) => println!("error    {path}: {}", s(&e["message"])),
                None => println!("error    {}", s(&e["message"])),
            }
        }
        if errors.is_empty() {
            println!("error    (the registry gave no reason)");
        }
    }

    pub fn rotated(&self, kid: &str, alg: Algorithm) {
        if self.json {
            return self.json_out(&json!({ "kid": kid, "alg": alg.as_str() }));
        }
        println!(
            "new signing key {kid} ({alg}); the old key keeps verifying its tokens until they expire"
        );
    }

    /// `keys generate`: the kid and public JWK; the private key is never shown.
    pub fn key_generated(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("kid      {}", s(&v["kid"]));
        println!("alg      {}", s(&v["alg"]));
        println!(
            "private  {} (mode 0600: keep it on this machine, never send it anywhere)",
            s(&v["private_key_file"])
        );
        println!(
            "public   {} (register it: `bonafide issuer-key add {}`)",
            s(&v["public_jwk_file"]),
            s(&v["public_jwk_file"])
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&v["jwk"]).unwrap_or_default()
        );
    }

    /// `token sign`: only the token, so that `$(bonafide token sign …)` captures it.
    pub fn token_signed(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("{}", s(&v["token"]));
    }

    /// `issuer verify-domain`.
    pub fn domain_verified(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "{} verified for {} ({}) with key {}: trust_level {}",
            s(&v["domain"]),
            s(&v["name"]),
            s(&v["issuer_id"]),
            s(&v["kid"]),
            s(&v["trust_level"])
        );
    }

    /// `issuer-key add`: only the kid, so that it can be captured.
    pub fn issuer_key_added(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!("{}", s(&v["kid"]));
    }

    pub fn issuer_keys(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        let keys = v["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
        if keys.is_empty() {
            println!(
                "no issuer keys yet; register one with `bonafide issuer-key add FILE.pub.jwk`"
            );
            return;
        }
        println!("{:<44} {:<6} {:<25} status", "kid", "alg", "created");
        for k in keys {
            let status = match k["revoked_at"].as_str() {
                Some(at) => format!("revoked {at}"),
                None => "active".to_owned(),
            };
            println!(
                "{:<44} {:<6} {:<25} {status}",
                s(&k["kid"]),
                s(&k["alg"]),
                s(&k["created_at"])
            );
        }
    }

    pub fn issuer_key_revoked(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        println!(
            "revoked issuer key {} at {}; tokens it signed no longer verify (TOKEN_REVOKED)",
            s(&v["kid"]),
            s(&v["revoked_at"])
        );
    }
}
