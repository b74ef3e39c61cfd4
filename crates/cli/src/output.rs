//! What the CLI prints: text for people by default, the API's JSON with `--json`.

use bonafide_core::keys::Algorithm;
use serde_json::{Value, json};

use bonafide_api::ErrorCode;
use bonafide_api::agents::{AgentRegistered, AgentRevoked, AgentView, PolicyRevoked, TokenRevoked};
use serde::de::DeserializeOwned;

use crate::verify::{Peeked, Verdict};
use crate::{failure, when};

/// Output mode.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// Print JSON.
    pub json: bool,
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

/// The registry's answer read as the API type `T` (`what` names it in the error): the
/// text output is printed from the contract's fields, so an answer that does not
/// keep the contract is an error, never a row of dashes. `--json` prints the answer
/// as received instead, members this CLI does not know included.
pub(crate) fn typed<T: DeserializeOwned>(v: &Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| anyhow::anyhow!("the registry's answer is not {what}: {e}"))
}

impl Out {
    /// The answer as pretty JSON on stdout: every command's `--json` form.
    pub(crate) fn json_out(&self, v: &Value) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    /// A typed answer as pretty JSON: the API type writes what the registry wrote.
    pub(crate) fn json_typed(&self, v: &impl serde::Serialize) {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }

    /// An error, on stderr: `error: …` and `hint: …` lines, or with `--json` one
    /// object `{"error":{"code","message","http_status","request_id"}}` (see
    /// [`failure`]).
    pub fn error(&self, e: &anyhow::Error) {
        let d = failure::describe(e);
        if self.json {
            eprintln!("{}", d.to_json());
        } else {
            eprintln!("error: {}", d.message);
            if let Some(h) = &d.hint {
                eprintln!("hint: {h}");
            }
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

    pub fn agent_registered(&self, v: &Value) -> anyhow::Result<()> {
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let a: AgentRegistered = typed(v, "an agent registration")?;
        println!("agent    {} ({})", a.name, a.agent_id);
        println!("issuer   {}", a.issuer);
        println!("scopes   {}", a.scopes.join(", "));
        println!("jti      {}", a.jti);
        println!("expires  {}", when::rfc3339(&a.expires_at));
        if let Some(key) = &a.key {
            println!(
                "key      {} ({}), expires {}",
                key.jkt,
                key.alg,
                when::rfc3339(&key.key_expires_at)
            );
        }
        if let Some(user) = &a.user {
            println!("user     {user}");
        }
        if let Some(hash) = &a.policy_hash {
            println!("policy   {hash}");
        }
        if a.allow_bearer_tokens {
            println!("bearer   tokens without cnf stay valid once the agent has its own key");
        }
        println!("verify   {}", a.verify_url);
        println!("token\n{}", a.token);
        Ok(())
    }

    pub fn agent_list(&self, agents: &[Value], next: Option<&str>) -> anyhow::Result<()> {
        if self.json {
            let mut v = json!({ "agents": agents });
            if let Some(n) = next {
                v["next_cursor"] = json!(n);
            }
            self.json_out(&v);
            return Ok(());
        }
        if agents.is_empty() {
            println!(
                "no agents yet; register one with `bonafide agent register --name NAME --scope read:x`"
            );
            return Ok(());
        }
        println!("{:<32} {:<8} {:<24} scopes", "agent", "status", "name");
        for a in agents {
            let a: AgentView = typed(a, "an agent")?;
            println!(
                "{:<32} {:<8} {:<24} {}",
                a.agent_id,
                a.status,
                a.name,
                a.scopes.join(", ")
            );
        }
        if next.is_some() {
            println!("(more agents: use --all)");
        }
        Ok(())
    }

    pub fn revoked(&self, v: &Value) -> anyhow::Result<()> {
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        if v.get("jti").is_some() {
            let t: TokenRevoked = typed(v, "a token revocation")?;
            println!(
                "revoked token {} of agent {} at {}",
                t.jti, t.agent_id, t.revoked_at
            );
        } else {
            let a: AgentRevoked = typed(v, "an agent revocation")?;
            println!(
                "revoked agent {} and all its tokens at {}",
                a.agent_id, a.revoked_at
            );
            if let Some(r) = &a.reason {
                println!("reason: {r}");
            }
        }
        Ok(())
    }

    pub fn policy_revoked(&self, v: &Value) -> anyhow::Result<()> {
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let p: PolicyRevoked = typed(v, "a policy revocation")?;
        println!(
            "revoked policy {} at {}: every token of your agents carrying it is refused",
            p.policy_id, p.revoked_at
        );
        Ok(())
    }

    pub fn suspended(&self, v: &Value) -> anyhow::Result<()> {
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let a: AgentView = typed(v, "an agent")?;
        println!(
            "suspended agent {} at {}; its tokens are refused (AGENT_SUSPENDED) until `bonafide agent reactivate`",
            a.agent_id,
            a.suspended_at.as_deref().unwrap_or("-")
        );
        if let Some(r) = &a.suspend_reason {
            println!("reason: {r}");
        }
        Ok(())
    }

    pub fn reactivated(&self, v: &Value) -> anyhow::Result<()> {
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let a: AgentView = typed(v, "an agent")?;
        println!("reactivated agent {}; its tokens verify again", a.agent_id);
        Ok(())
    }

    /// A verify answer (online: the registry's; offline: the same type). Text gives
    /// the verdict, then why: the reason codes and the registry's words, with times
    /// made readable and what to do for a token bound to a key.
    pub fn verified(&self, verdict: &Verdict, token: &Peeked) {
        if self.json {
            return match &verdict.offline {
                Some(v) => self.json_out(v),
                None => self.json_typed(&verdict.answer),
            };
        }
        let v = &verdict.answer;
        let reasons = v.reasons.join(", ");
        if !v.valid {
            let code = v.error.as_ref().map(|e| &e.code);
            println!("INVALID  {}", code.map_or("-", ErrorCode::as_str));
            if !reasons.is_empty() {
                println!("reasons  {reasons}");
            }
            if let Some(r) = &v.reason {
                println!("reason   {}", when::in_reason(r));
            }
            let key_expired = v.reasons.iter().any(|r| r == "KEY_EXPIRED");
            if code == Some(&ErrorCode::TokenExpired)
                && !key_expired
                && let Some(exp) = token.exp
            {
                println!("expired  {}", when::unix(exp));
            }
            let jkt = token.jkt.as_deref().unwrap_or("-");
            match code {
                Some(ErrorCode::ProofRequired) => println!(
                    "hint     the token is bound to a key (cnf.jkt {jkt}); present a proof with --dpop-key FILE --htm METHOD --htu URL (the agent's private key, and the request the proof is for)"
                ),
                Some(ErrorCode::ProofInvalid) => println!(
                    "hint     --dpop-key must be the private key the token is bound to (cnf.jkt {jkt}), and --htm/--htu the request's method and URL"
                ),
                _ => {}
            }
            if let Some(o) = &verdict.offline {
                if o["revocation_checked"] == json!(true) {
                    println!(
                        "note     verified offline: revocation checked against the status list"
                    );
                } else {
                    println!("note     verified offline: revocation NOT checked");
                }
            }
            return;
        }
        let headline = if v.allowed {
            "VALID, ALLOWED"
        } else {
            "VALID, NOT ALLOWED"
        };
        println!("{headline}");
        if let Some(agent) = &v.agent {
            println!("agent    {} ({})", agent.name, agent.id);
            println!("issuer   {}", agent.issuer);
        }
        if !v.delegation.is_empty() {
            println!("via      {}", v.chain().join(" -> "));
        }
        if let Some(user) = &v.user {
            println!("user     {user}");
        }
        let scopes = v.agent.as_ref().map(|a| a.active_scopes.join(", "));
        println!("scopes   {}", scopes.unwrap_or_default());
        println!(
            "expires  {}",
            when::rfc3339(v.expires_at.as_deref().unwrap_or("-"))
        );
        if !reasons.is_empty() {
            println!("reasons  {reasons}");
        }
        if let Some(r) = &v.reason {
            println!("reason   {}", when::in_reason(r));
        }
        if let Some(rem) = &v.remaining {
            println!(
                "budget   {} {} left this {}, whole again {}",
                rem.amount,
                rem.currency,
                rem.period,
                when::rfc3339(&rem.period_ends)
            );
        }
        for w in &v.warnings {
            match w.as_str() {
                "KEY_EXPIRES_SOON" => println!(
                    "warning  KEY_EXPIRES_SOON: the agent key this token is bound to expires within 14 days; rotate it (PUT /v1/agents/{{id}}/keys)"
                ),
                other => println!("warning  {other}"),
            }
        }
        if let Some(r) = &v.receipt_id {
            println!("receipt  {r}");
        }
        if let Some(o) = &verdict.offline {
            let list = &o["status_list"];
            match list["age_s"].as_u64() {
                Some(age) if o["revocation_checked"] == json!(true) => {
                    println!("revocation checked: yes (list age {age}s)");
                    println!(
                        "note     verified offline: signature, times, issuer and status list checked"
                    );
                }
                _ => {
                    let why = if list.is_null() {
                        " (the token names no status list)"
                    } else {
                        " (--no-status)"
                    };
                    println!(
                        "note     verified offline: signature, times and issuer checked; revocation NOT checked{why}"
                    );
                }
            }
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
