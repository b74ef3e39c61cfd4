//! API operations that had no command: `agent show`, `agent issue-token`, `agent keys
//! register|rotate`, `token exchange`, `receipt get` and `simulate`.
//!
//! Each is one request through [`bonafide_client::Client`]: the registry decides, this
//! module reads local input (ids, durations, key and policy files), presents the
//! answer, and with `--json` prints the API's JSON as it came. What is refused here,
//! before any request, is only what must not leave this machine or cannot be sent: an
//! id that is not one (it would go into a URL path), a key file with private
//! material, an unreadable file.
//!
//! Exit codes: 0 success; for `simulate`, 0 valid and allowed, 1 not (the reasons are
//! printed), as for `verify`; 2 any other error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use bonafide_api::agents::{AgentView, TokenIssued};
use bonafide_api::tokens::TokenExchangeResponse;
use bonafide_api::verify::VerifyResponse;
use bonafide_client::{Client, Resource, VerifyRequest};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::ids::ReceiptId;
use bonafide_core::keys::VerifyingKey;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::output::{Out, typed};
use crate::verify::{exit_for, read_token};
use crate::{client, duration, explain, path_segment, policy, self_custody};

/// `grant_type` of RFC 8693 token exchange.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type of an agent token (RFC 8693 §3).
const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Agent id (`agt_…`).
    pub agent_id: String,
}

#[derive(Debug, Args)]
pub struct IssueTokenArgs {
    /// Agent id (`agt_…`): an active agent of your issuer.
    pub agent_id: String,
    /// Token lifetime (default: the agent's): 3600, 90s, 30m, 24h, 7d.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Receiver the token is for (repeatable; default the agent's audiences, and
    /// within them when it has some).
    #[arg(long = "aud")]
    pub audience: Vec<String>,
    /// Print only the token, one line (`TOKEN=$(bonafide agent issue-token agt_… --quiet)`).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Give an agent its own key (its tokens are then bound to it, `cnf.jkt`): the
    /// public half only, which the registry requires no proof for. Prints the agent's
    /// keys and a fresh token bound to the key. On an agent that already has a key
    /// this is a rotation with the default grace (24h): see `rotate`.
    Register(KeyArgs),
    /// Rotate an agent's key, keeping its id: the new key becomes current and the
    /// previous one verifies its tokens for --grace more. Prints the agent's keys and
    /// a fresh token bound to the new key.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    /// Agent id (`agt_…`).
    pub agent_id: String,
    /// The agent's public key: a public JWK (OKP Ed25519 or EC P-256, such as the
    /// FILE.pub.jwk of `bonafide keys generate --alg EdDSA --out FILE`) or a PEM
    /// public key (SubjectPublicKeyInfo). A private key, or a JWK with private
    /// members, is refused before any request.
    #[arg(long)]
    pub public_key: PathBuf,
    /// Lifetime of the key, 1d to 365d (default 90d): tokens bound to it are refused
    /// after it.
    #[arg(long)]
    pub key_expires_in: Option<String>,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// How long tokens bound to the previous key keep verifying, 0 to 30d (default
    /// 24h); 0 cuts them off at once (a leaked key).
    #[arg(long)]
    pub grace: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExchangeArgs {
    /// The parent agent's token (`-` reads stdin).
    #[arg(long)]
    pub subject_token: String,
    /// The sub-agent's own token (not a delegated one), an agent of your issuer: the
    /// child is for it, bound to its key if it has one (`-` reads stdin).
    #[arg(long)]
    pub actor_token: String,
    /// Scope of the child (repeat, or separate with commas), each one the parent
    /// holds; default the parent's.
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Lifetime of the child, not past the parent's expiry; default until it.
    #[arg(long)]
    pub ttl: Option<String>,
    /// Receiver the child is for (repeatable), among the parent's; default the
    /// parent's.
    #[arg(long = "aud")]
    pub audience: Vec<String>,
    /// Consent policy file of the child (`pol.v0.2`, no wider than the parent's; `-`
    /// reads stdin); default the parent's.
    #[arg(long)]
    pub policy: Option<String>,
    /// Print only the child token, one line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ReceiptGetArgs {
    /// Receipt id (`rcp_…`, the `receipt_id` of a verify answer).
    pub receipt_id: String,
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The token (or `-` to read it from stdin). A token bound to an agent key (`cnf`)
    /// needs the agent's proof of possession, which this command does not send: it
    /// answers PROOF_REQUIRED.
    pub token: String,
    /// Scope the request needs (repeatable).
    #[arg(long = "scope", value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// The action asked for (`payments.send`), checked against the token's policy.
    #[arg(long)]
    pub action: Option<String>,
    /// What the action is on, TYPE/ID (`merchant/airbnb`; the id may hold more `/`).
    #[arg(long)]
    pub resource: Option<String>,
    /// Amount to spend, an exact decimal (`12.50`); needs --currency, --action and a
    /// receiver key in BONAFIDE_API_KEY.
    #[arg(long)]
    pub amount: Option<String>,
    /// ISO 4217 code of --amount (`USD`).
    #[arg(long)]
    pub currency: Option<String>,
    /// Your receiver identifier (checked against `aud`).
    #[arg(long)]
    pub audience: Option<String>,
}

/// `bonafide agent show AGENT_ID`: `GET /v1/agents/{id}`.
pub async fn show(url: &str, args: ShowArgs, out: Out) -> Result<ExitCode> {
    let path = format!("/v1/agents/{}", path_segment(&args.agent_id)?);
    let client = client(url, KeyKind::Issuer)?;
    let v: Value = client.get(&path).await.map_err(explain)?;
    out.agent_shown(&v)?;
    Ok(ExitCode::SUCCESS)
}

/// `bonafide agent issue-token AGENT_ID`: `POST /v1/agents/{id}/issue-token`.
pub async fn issue_token(url: &str, args: IssueTokenArgs, out: Out) -> Result<ExitCode> {
    one_output(args.quiet, out)?;
    let path = format!("/v1/agents/{}/issue-token", path_segment(&args.agent_id)?);
    let mut body = json!({});
    if let Some(ttl) = &args.ttl {
        body["expiry_seconds"] = json!(duration::parse(ttl)?);
    }
    if !args.audience.is_empty() {
        body["audience"] = json!(args.audience);
    }
    let client = client(url, KeyKind::Issuer)?;
    let v: Value = client.post(&path, &body).await.map_err(explain)?;
    out.token_issued(&v, args.quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// `bonafide agent keys register|rotate AGENT_ID --public-key FILE`:
/// `PUT /v1/agents/{id}/keys`. The id and the file are checked before the API key is
/// looked at, so a private key is refused whatever else is wrong.
pub async fn keys(url: &str, cmd: KeysCmd, out: Out) -> Result<ExitCode> {
    let (key, grace, rotating) = match cmd {
        KeysCmd::Register(key) => (key, None, false),
        KeysCmd::Rotate(RotateArgs { key, grace }) => (key, grace, true),
    };
    let path = format!("/v1/agents/{}/keys", path_segment(&key.agent_id)?);
    let mut body = read_agent_key(&key.public_key)?;
    if let Some(life) = &key.key_expires_in {
        body["key_expires_in"] = json!(duration::parse(life)?);
    }
    if let Some(grace) = &grace {
        body["grace_seconds"] = json!(duration::parse(grace)?);
    }
    let client = client(url, KeyKind::Issuer)?;
    let v: Value = client.put(&path, &body).await.map_err(explain)?;
    out.agent_keys_set(&v, rotating);
    Ok(ExitCode::SUCCESS)
}

/// The key members of a `PUT /v1/agents/{id}/keys` body from a public key file: a
/// JWK as `public_key`, a PEM as `signing_key_pub` with its `key_algorithm` (read
/// from the key itself: the registry checks the pair).
fn read_agent_key(path: &Path) -> Result<Value> {
    let text = self_custody::read_key_file(path, "public key file")?;
    if !text.trim_start().starts_with("-----BEGIN") {
        return Ok(json!({ "public_key": self_custody::public_jwk(&text, path)? }));
    }
    self_custody::refuse_private_pem(&text, path)?;
    let key = VerifyingKey::from_public_pem(&text).map_err(|e| {
        anyhow!(
            "`{}` is not a PEM public key (SubjectPublicKeyInfo) nor a JWK: {e}",
            path.display()
        )
    })?;
    Ok(json!({ "signing_key_pub": text, "key_algorithm": key.alg().as_str() }))
}

/// The agent public key in a key file (a JWK, or a PEM public key), as
/// `agent keys register` sends it: `token sign --bind` binds a token to its
/// thumbprint (`cnf.jkt`). A private key is refused before it is parsed.
pub(crate) fn agent_public_key(path: &Path) -> Result<VerifyingKey> {
    let body = read_agent_key(path)?;
    let parsed = match (body.get("public_key"), body.get("signing_key_pub")) {
        (Some(jwk), _) => serde_json::from_value(jwk.clone())
            .map_err(|e| anyhow!("`{}` is not a JWK: {e}", path.display()))
            .and_then(|jwk| VerifyingKey::from_jwk(&jwk).map_err(anyhow::Error::from)),
        (None, Some(Value::String(pem))) => {
            VerifyingKey::from_public_pem(pem).map_err(anyhow::Error::from)
        }
        _ => bail!("`{}` holds no public key", path.display()),
    };
    parsed.map_err(|e| anyhow!("`{}` is not a usable agent key: {e}", path.display()))
}

/// `bonafide token exchange`: `POST /v1/token` (RFC 8693), as a JSON object with the
/// form's members. Its errors are OAuth's shape, which the client reads.
pub async fn exchange(url: &str, args: ExchangeArgs, out: Out) -> Result<ExitCode> {
    one_output(args.quiet, out)?;
    let stdin_users = [
        Some(args.subject_token.as_str()),
        Some(args.actor_token.as_str()),
        args.policy.as_deref(),
    ]
    .iter()
    .filter(|a| **a == Some("-"))
    .count();
    if stdin_users > 1 {
        bail!("only one of --subject-token, --actor-token and --policy can read stdin (`-`)");
    }
    let subject = read_token(&args.subject_token)?;
    let actor = read_token(&args.actor_token)?;
    let mut body = json!({
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject,
        "subject_token_type": TOKEN_TYPE_JWT,
        "actor_token": actor,
        "actor_token_type": TOKEN_TYPE_JWT,
    });
    if !args.scopes.is_empty() {
        body["scope"] = json!(args.scopes.join(" "));
    }
    if !args.audience.is_empty() {
        body["audience"] = json!(args.audience);
    }
    if let Some(ttl) = &args.ttl {
        body["expires_in"] = json!(duration::parse(ttl)?.to_string());
    }
    // Sent as JSON text (the token endpoint's `policy` is a string); read first so a
    // bad file is a local error.
    if let Some(file) = &args.policy {
        body["policy"] = json!(policy::read_json(file)?.to_string());
    }
    let client = client(url, KeyKind::Issuer)?;
    let v: Value = client.post("/v1/token", &body).await.map_err(explain)?;
    out.token_exchanged(&v, args.quiet)?;
    Ok(ExitCode::SUCCESS)
}

/// `bonafide receipt get RCP_ID`: `GET /v1/receipts/{id}`, readable by the agent's
/// issuer and the receiver that asked for the decision.
pub async fn receipt_get(url: &str, args: ReceiptGetArgs, out: Out) -> Result<ExitCode> {
    let id = ReceiptId::try_from(args.receipt_id.as_str()).map_err(|e| anyhow!("{e}"))?;
    let who = "the issuer key of the receipt's agent (bfk_iss_…) or the key of the receiver that asked (bfk_rcv_…)";
    let client = match env_client(url)? {
        Some((KeyKind::Issuer | KeyKind::Receiver, client)) => client,
        Some((kind, _)) => bail!(
            "BONAFIDE_API_KEY is an {} key; this command needs {who}",
            kind.as_str()
        ),
        None => bail!("set BONAFIDE_API_KEY to {who}"),
    };
    let v: Value = client
        .get(&format!("/v1/receipts/{id}"))
        .await
        .map_err(explain)?;
    out.receipt_shown(&v);
    Ok(ExitCode::SUCCESS)
}

/// `bonafide simulate TOKEN`: `POST /v1/simulate`, the decision `POST /v1/verify`
/// would make, with nothing recorded or spent. BONAFIDE_API_KEY is sent when set (a
/// receiver key verifies as that receiver, and is needed for an amount).
pub async fn simulate(url: &str, args: SimulateArgs, out: Out) -> Result<ExitCode> {
    let token = read_token(&args.token)?;
    let resource = match &args.resource {
        None => None,
        Some(r) => {
            let (kind, id) = r.split_once('/').ok_or_else(|| {
                anyhow!("--resource `{r}`: give TYPE/ID, such as merchant/airbnb")
            })?;
            Some(Resource {
                kind: kind.to_owned(),
                id: id.to_owned(),
            })
        }
    };
    let request = VerifyRequest {
        token,
        scopes: args.scopes.clone(),
        audience: args.audience.clone(),
        action: args.action.clone(),
        resource,
        amount: args.amount.clone(),
        currency: args.currency.clone(),
        ..VerifyRequest::default()
    };
    let client = match env_client(url)? {
        Some((_, client)) => client,
        None => Client::new(url, None).map_err(explain)?,
    };
    let answer = client.simulate(&request).await.map_err(explain)?;
    out.simulated(&answer);
    Ok(exit_for(&answer))
}

/// For commands that take more than one kind of key: a client with BONAFIDE_API_KEY
/// and the key's kind when it is set (`None` when it is not or is empty), refused
/// here when it is malformed.
fn env_client(url: &str) -> Result<Option<(KeyKind, Client)>> {
    let Ok(text) = std::env::var("BONAFIDE_API_KEY") else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let key = ApiKey::parse(text).map_err(|e| anyhow!("BONAFIDE_API_KEY: {e}"))?;
    let client = Client::new(url, Some(text.to_owned())).map_err(explain)?;
    Ok(Some((key.kind(), client)))
}

/// `--quiet` and `--json` ask for two outputs: refused before any request (clap
/// cannot tell, `--json` being global and allowed before the subcommand).
fn one_output(quiet: bool, out: Out) -> Result<()> {
    if quiet && out.json {
        bail!("--quiet prints the token alone and --json the whole answer: give one");
    }
    Ok(())
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn list(v: &Value, sep: &str) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(sep)
        })
        .unwrap_or_default()
}

/// A token printed alone, checked to be one line: `$(…)` must capture the token and
/// nothing else.
fn token_line(v: &Value, member: &str) -> Result<String> {
    match v[member].as_str() {
        Some(t) if !t.is_empty() && !t.contains(char::is_whitespace) => Ok(t.to_owned()),
        _ => bail!("the registry's answer has no `{member}` token"),
    }
}

impl Out {
    /// `agent show`: the agent as its issuer sees it.
    pub fn agent_shown(&self, v: &Value) -> Result<()> {
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let a: AgentView = typed(v, "an agent")?;
        println!("agent    {} ({})", a.name, a.agent_id);
        println!("status   {}", a.status);
        println!("issuer   {}", a.issuer);
        println!("scopes   {}", a.scopes.join(", "));
        if let Some(audience) = &a.audience {
            println!("audience {}", audience.join(", "));
        }
        if let Some(d) = &a.description {
            println!("about    {d}");
        }
        if let Some(u) = &a.user {
            println!("user     {u}");
        }
        if let Some(h) = &a.policy_hash {
            println!("policy   {h}");
        }
        println!("ttl      {}s (default token lifetime)", a.expiry_seconds);
        println!(
            "bearer   {}",
            if a.allow_bearer_tokens {
                "tokens without cnf stay valid once the agent has its own key"
            } else {
                "refused once the agent has its own key (only bound tokens)"
            }
        );
        println!("created  {}", a.created_at);
        if let Some(at) = &a.suspended_at {
            match &a.suspend_reason {
                Some(r) => println!("suspended {at}: {r}"),
                None => println!("suspended {at}"),
            }
        }
        if let Some(at) = &a.revoked_at {
            match &a.revoke_reason {
                Some(r) => println!("revoked  {at}: {r}"),
                None => println!("revoked  {at}"),
            }
        }
        Ok(())
    }

    /// `agent issue-token`.
    pub fn token_issued(&self, v: &Value, quiet: bool) -> Result<()> {
        if quiet {
            println!("{}", token_line(v, "token")?);
            return Ok(());
        }
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let t: TokenIssued = typed(v, "an issued token")?;
        println!("agent    {}", t.agent_id);
        println!("jti      {}", t.jti);
        println!("expires  {}", t.expires_at);
        println!("token\n{}", t.token);
        Ok(())
    }

    /// `agent keys register|rotate`: the agent's keys, oldest first, and the token
    /// bound to the new one.
    pub fn agent_keys_set(&self, v: &Value, rotating: bool) {
        if self.json {
            return self.json_out(v);
        }
        let keys = v["keys"].as_array().map(Vec::as_slice).unwrap_or_default();
        println!("agent    {}", s(&v["agent_id"]));
        println!(
            "{:<44} {:<6} {:<8} {:<25} {:<25} grace until",
            "jkt", "alg", "status", "created", "expires"
        );
        for k in keys {
            println!(
                "{:<44} {:<6} {:<8} {:<25} {:<25} {}",
                s(&k["jkt"]),
                s(&k["alg"]),
                s(&k["status"]),
                s(&k["created_at"]),
                s(&k["key_expires_at"]),
                s(&k["grace_until"])
            );
        }
        if !rotating && keys.len() > 1 {
            println!(
                "note     the agent already had a key: this was a rotation with the default grace (see the previous key's grace until)"
            );
        }
        match v["token"].as_str() {
            Some(token) => {
                println!("jti      {}", s(&v["jti"]));
                println!("expires  {}", s(&v["expires_at"]));
                println!("token (bound to the new key)\n{token}");
            }
            None => println!(
                "token    none: the agent is suspended; reactivate it, then `bonafide agent issue-token {}`",
                s(&v["agent_id"])
            ),
        }
    }

    /// `token exchange`: the child token (RFC 8693 §2.2.1 answer).
    pub fn token_exchanged(&self, v: &Value, quiet: bool) -> Result<()> {
        if quiet {
            println!("{}", token_line(v, "access_token")?);
            return Ok(());
        }
        if self.json {
            self.json_out(v);
            return Ok(());
        }
        let t: TokenExchangeResponse = typed(v, "a token exchange answer")?;
        println!("jti      {}", t.jti);
        println!("scope    {}", t.scope);
        let at = bonafide_server::time::now_ms() / 1000 + t.expires_in;
        println!(
            "expires  {} (in {}s)",
            bonafide_server::time::rfc3339_s(at),
            t.expires_in
        );
        println!("token\n{}", t.access_token);
        Ok(())
    }

    /// `receipt get`: the main claims (as the registry decoded them: `receipt verify`
    /// checks the signature).
    pub fn receipt_shown(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        let c = &v["receipt"];
        println!("receipt  {}", s(&v["receipt_id"]));
        println!("decision {}", s(&c["decision"]));
        println!("valid    {}", c["valid"]);
        let reasons = list(&c["reasons"], ", ");
        if !reasons.is_empty() {
            println!("reasons  {reasons}");
        }
        if let Some(a) = c["agent_id"].as_str() {
            println!("agent    {a}");
        }
        if let Some(j) = c["jti"].as_str() {
            println!("jti      {j}");
        }
        if let Some(h) = c["policy_hash"].as_str() {
            println!("policy   {h}");
        }
        if let Some(r) = c["receiver"].as_str() {
            println!("receiver {r}");
        }
        let left = &c["remaining"];
        if left.is_object() {
            println!(
                "remaining {} {} this {}, until {}",
                s(&left["amount"]),
                s(&left["currency"]),
                s(&left["period"]),
                s(&left["period_ends"])
            );
        }
        println!("request  sha256:{}", s(&c["request_sha256"]));
        println!("at       {}", s(&c["verified_at"]));
        if let Some(i) = c["audit_index"].as_u64() {
            println!("audit    entry {i}");
        }
        println!("issuer   {}", s(&c["iss"]));
        eprintln!(
            "note: not checked here; to check its signature: `bonafide receipt get {} --json > receipt.json && bonafide receipt verify receipt.json --jwks {}/.well-known/receipt-jwks.json`",
            s(&v["receipt_id"]),
            s(&c["iss"])
        );
    }

    /// `simulate`: the verdict, its reason codes and what the answer says of the
    /// agent; nothing was recorded or spent.
    pub fn simulated(&self, v: &VerifyResponse) {
        if self.json {
            return self.json_typed(v);
        }
        let verdict = match &v.error {
            Some(e) if !v.valid => format!("INVALID  {}", e.code),
            _ if !v.valid => "INVALID".to_owned(),
            _ if v.allowed => "VALID, ALLOWED".to_owned(),
            _ => "VALID, NOT ALLOWED".to_owned(),
        };
        println!("{verdict} (simulated: nothing recorded or spent)");
        if !v.reasons.is_empty() {
            println!("reasons  {}", v.reasons.join(", "));
        }
        if let Some(r) = &v.reason {
            println!("reason   {r}");
        }
        if let Some(agent) = &v.agent {
            println!("agent    {} ({})", agent.name, agent.id);
            println!("issuer   {}", agent.issuer);
            println!("scopes   {}", agent.active_scopes.join(", "));
        }
        if !v.delegation.is_empty() {
            println!("chain    {}", v.chain().join(" -> "));
        }
        if let Some(at) = &v.expires_at {
            println!("expires  {at}");
        }
        if let Some(left) = &v.remaining {
            println!(
                "remaining {} {} this {}, until {}",
                left.amount, left.currency, left.period, left.period_ends
            );
        }
        if !v.warnings.is_empty() {
            println!("warnings {}", v.warnings.join(", "));
        }
    }
}
