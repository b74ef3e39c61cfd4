//! Self-custody: an issuer's own signing key. `keys generate` makes one locally,
//! `token sign` signs agent tokens with it offline, `issuer-key add|list|revoke`
//! registers its public half with the registry (with a key proof signed by the
//! private half: the registry takes no key its registrant cannot sign with), and
//! `issuer verify-domain` signs the domain proof that shows the registry the issuer
//! holds the key it publishes.
//!
//! The private key never leaves this machine: it is written once, to a new file of
//! mode 0600, and read back only to sign. It is never printed, never sent (the
//! registry only ever sees the public JWK), and `issuer-key add` refuses, before
//! any request, a file that holds private members.
//!
//! What this is not: a key store. There is no passphrase encryption of the PEM (keep
//! it on an encrypted disk or in a secrets manager), and no rotation schedule.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_client::ClientError;
use bonafide_core::domain_proof::{self, DomainProofClaims};
use bonafide_core::ids::{AgentId, IssuerId, TokenId};
use bonafide_core::json::{self, JsonLimits};
use bonafide_core::key_proof::{self, KeyProofClaims};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::policy::Policy;
use bonafide_core::token::{
    self, AgentClaims, AgentInfo, Audience, Confirmation, DEFAULT_MAX_TOKEN_BYTES,
};
use bonafide_core::{apikey::KeyKind, scopes};
use clap::Args;
use serde_json::{Value, json};

use crate::output::Out;
use crate::{client, duration, explain, policy};

/// Largest key file read, bytes: a PKCS#8 PEM of an 8192-bit RSA key is about 6.5 KB,
/// a public JWK under 2 KB; anything far larger is the wrong file.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

/// JWK members that carry private key material (RFC 7518 §6.2.2, §6.3.2, §6.4.1;
/// RFC 8037 §2). `oth` (multi-prime RSA) goes with `d`.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

/// Suffix of the public JWK file written next to the private key.
const PUB_SUFFIX: &str = ".pub.jwk";

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Algorithm: EdDSA (Ed25519), ES256 (P-256) or RS256 (RSA 2048).
    #[arg(long)]
    pub alg: Algorithm,
    /// Where to write the private key (PKCS#8 PEM, mode 0600); the public JWK goes
    /// to FILE.pub.jwk.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace FILE and FILE.pub.jwk if they exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key file (PKCS#8 PEM, as `bonafide keys generate` writes it).
    #[arg(long)]
    pub key: PathBuf,
    /// Your issuer id (`iss_…`): the token's `iss`. Default: the one
    /// `bonafide issuer-key add FILE.pub.jwk` recorded beside the key (`FILE.issuer`).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The agent (`agt_…`), one your issuer registered: the token's `sub`.
    #[arg(long)]
    pub agent: String,
    /// Scope to grant (repeat, or separate with commas).
    #[arg(long = "scope", required = true, value_delimiter = ',')]
    pub scopes: Vec<String>,
    /// Token lifetime, 60s to 30d: 3600, 90s, 30m, 24h, 7d.
    #[arg(long)]
    pub ttl: String,
    /// Receiver the token is for (repeatable).
    #[arg(long = "aud")]
    pub audience: Vec<String>,
    /// Consent policy file (`pol.v0.2` JSON; `-` reads stdin) the token carries.
    #[arg(long)]
    pub policy: Option<String>,
    /// On whose behalf the agent acts (`user` claim): a DID, an email or an id.
    #[arg(long)]
    pub user: Option<String>,
    /// The agent's display name in the token (default: the agent id).
    #[arg(long)]
    pub name: Option<String>,
    /// The agent's public key file (JWK or PEM, as registered with `bonafide agent
    /// keys register`): the token is bound to it (`cnf.jkt`, the key's RFC 7638
    /// thumbprint), so only the holder of its private half can present it, with a
    /// DPoP proof or a signed request. Required for an agent that has keys and was
    /// registered without `allow_bearer_tokens`: its unbound tokens never verify.
    #[arg(long, value_name = "FILE")]
    pub bind: Option<PathBuf>,
    /// Sign without a status-list slot. By default, when BONAFIDE_API_KEY holds your
    /// issuer key, the registry at --url allocates one (`status` claim), so receivers
    /// verifying offline see the token's revocation; without a key the token has none.
    #[arg(long)]
    pub no_status: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The public JWK file (`FILE.pub.jwk` from `bonafide keys generate`).
    pub file: PathBuf,
    /// The private key file (PKCS#8 PEM) of that public key: it signs the proof of
    /// possession the registry requires, here, and is never sent. Default: FILE for
    /// FILE.pub.jwk.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The algorithm the key is allowed to sign with (default: the JWK's `alg`, or
    /// the only one its key type allows).
    #[arg(long)]
    pub alg: Option<Algorithm>,
}

#[derive(Debug, Args)]
pub struct VerifyDomainArgs {
    /// The domain (`apexwealth.com`): a DNS name, no scheme, port or path.
    #[arg(long)]
    pub domain: String,
    /// Where the registry fetches the JWKS (default and, on a production registry,
    /// the only one allowed: https://DOMAIN/.well-known/jwks.json).
    #[arg(long)]
    pub jwks_url: Option<String>,
    /// The private key file (PKCS#8 PEM from `bonafide keys generate`) of the
    /// registered key published in that JWKS: it signs the domain proof here and is
    /// never sent.
    #[arg(long)]
    pub key: PathBuf,
}

/// `bonafide keys generate`.
pub fn generate(args: GenerateArgs, out: Out) -> Result<ExitCode> {
    let pub_path = pub_path(&args.out);
    if !args.force {
        // Both checked before anything is written; `create_new` below closes the race.
        for p in [&args.out, &pub_path] {
            if p.symlink_metadata().is_ok() {
                bail!(
                    "`{}` exists; pass --force to replace it (the old key is then lost)",
                    p.display()
                );
            }
        }
    }
    let key = SigningKey::generate(args.alg).context("cannot generate the key")?;
    let pem = key
        .to_pkcs8_pem()
        .context("cannot encode the private key")?;
    let jwk = serde_json::to_value(key.verifying_key().jwk())?;
    let mut jwk_text = serde_json::to_string_pretty(&jwk)?;
    jwk_text.push('\n');
    write_file(&args.out, pem.expose_secret(), Mode::Private, args.force)?;
    if let Err(e) = write_file(&pub_path, &jwk_text, Mode::Public, args.force) {
        // No private key without its public half: the pair is written or neither is.
        let _ = std::fs::remove_file(&args.out);
        return Err(e);
    }
    out.key_generated(&json!({
        "kid": key.kid(),
        "alg": key.alg().as_str(),
        "jwk": jwk,
        "private_key_file": args.out.display().to_string(),
        "public_jwk_file": pub_path.display().to_string(),
    }));
    Ok(ExitCode::SUCCESS)
}

/// `bonafide token sign`: builds and signs the claims; no network.
pub async fn sign(url: &str, args: SignArgs, out: Out) -> Result<ExitCode> {
    // Arguments first, the key file last: a typo costs no read of the secret.
    let issuer_text = match &args.issuer {
        Some(i) => i.clone(),
        None => match recorded_issuer(&args.key) {
            Ok(i) => i,
            // A wrong key file is the real problem, and explains the missing record
            // beside it: say what is wrong with the file first.
            Err(e) => {
                read_signing_key(&args.key)?;
                return Err(e);
            }
        },
    };
    let issuer = IssuerId::try_from(issuer_text.as_str()).map_err(|e| anyhow!("--issuer: {e}"))?;
    let agent = AgentId::try_from(args.agent.as_str()).map_err(|e| anyhow!("--agent: {e}"))?;
    let scopes = scopes::validate_all(&args.scopes).map_err(|e| anyhow!("--scope: {e}"))?;
    // 60s to 30d (`duration::ttl`): an offline-signed token cannot be re-issued by
    // the registry, so its lifetime is what bounds a leak.
    let ttl = duration::ttl(&args.ttl)?;
    if let Some(a) = args.audience.iter().find(|a| a.trim().is_empty()) {
        bail!("--aud `{a}` is empty");
    }
    if args.user.as_deref().is_some_and(|u| u.trim().is_empty()) {
        bail!("--user is empty");
    }
    if args.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        bail!("--name is empty");
    }
    let (policy, policy_hash) = match &args.policy {
        Some(file) => {
            // `read_json` refuses non-JSON, duplicate members and deep nesting;
            // `from_value` is the registry's own check and hash.
            let value = policy::read_json(file)?;
            let parsed = Policy::from_value(value)
                .map_err(|e| anyhow!("the policy file `{file}` is invalid: {e}"))?;
            (
                Some(parsed.as_value().clone()),
                Some(parsed.hash().to_owned()),
            )
        }
        None => (None, None),
    };
    // The agent's public key is read before the issuer's private one, as every
    // argument is.
    let cnf = match &args.bind {
        Some(path) => Some(Confirmation {
            jkt: crate::agent::agent_public_key(path)
                .context("--bind")?
                .kid()
                .to_owned(),
        }),
        None => None,
    };
    let key = read_signing_key(&args.key)?;

    let now = bonafide_server::time::now_ms() / 1000;
    let aud = match args.audience.as_slice() {
        [] => None,
        [one] => Some(Audience::One(one.clone())),
        many => Some(Audience::Many(many.to_vec())),
    };
    let scope = scopes.join(" ");
    let claims = AgentClaims {
        iss: issuer.as_str().to_owned(),
        sub: agent.clone(),
        aud,
        iat: now,
        nbf: Some(now),
        exp: now + ttl,
        jti: TokenId::from_random(random16()?),
        agent: AgentInfo {
            name: args.name.unwrap_or_else(|| agent.as_str().to_owned()),
            issuer: issuer.as_str().to_owned(),
            scopes,
            description: None,
        },
        scope: Some(scope),
        user: args.user,
        policy,
        policy_hash,
        cnf,
        act: None,
        ancestor_jtis: None,
        status: None,
    };
    let status = if args.no_status {
        None
    } else {
        allocate_status(url, &claims, key.kid()).await?
    };
    let claims = AgentClaims { status, ..claims };
    let token = token::sign(&key, &claims).context("cannot sign the token")?;
    if token.len() > DEFAULT_MAX_TOKEN_BYTES {
        bail!(
            "the token is {} bytes, over the {DEFAULT_MAX_TOKEN_BYTES} verifiers accept: use a smaller policy or fewer scopes",
            token.len()
        );
    }
    out.token_signed(&json!({
        "token": token,
        "jti": claims.jti.as_str(),
        "expires_at": bonafide_server::time::rfc3339_s(claims.exp),
        "kid": key.kid(),
    }));
    if !out.json {
        // stdout stays the token alone, for `$(…)`; its id goes where a person sees it.
        eprintln!(
            "jti {} (expires {}); revoke it with `bonafide revoke --token {} --for-agent {}`",
            claims.jti.as_str(),
            bonafide_server::time::rfc3339_s(claims.exp),
            claims.jti.as_str(),
            claims.sub.as_str()
        );
    }
    if claims.status.is_none() && !args.no_status {
        eprintln!(
            "note: the token has no status-list slot, so receivers verifying offline cannot see its revocation; set BONAFIDE_API_KEY to your issuer key to get one (or pass --no-status)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The token's status-list slot from the registry (`POST /v1/status-lists/allocations`)
/// when BONAFIDE_API_KEY holds an issuer key; `None`, said on stderr, without one.
/// `kid` is the signing key's: revoking that key revokes the token in its list too.
async fn allocate_status(
    url: &str,
    claims: &AgentClaims,
    kid: &str,
) -> Result<Option<bonafide_core::status_list::StatusClaim>> {
    let has_key = std::env::var("BONAFIDE_API_KEY").is_ok_and(|k| !k.trim().is_empty());
    if !has_key {
        // Said after the token's id (see `sign`): scripts read that line first.
        return Ok(None);
    }
    let client = client(url, KeyKind::Issuer)?;
    let mut body = json!({
        "agent_id": claims.sub.as_str(),
        "jti": claims.jti.as_str(),
        "expires_at": claims.exp,
        "kid": kid,
    });
    // A bound token: that key rotated out turns its slot invalid too. The registry
    // refuses a slot without it for an agent whose tokens must be bound.
    if let Some(cnf) = &claims.cnf {
        body["jkt"] = json!(cnf.jkt);
    }
    // A token carrying a policy: revoking that policy turns its slot invalid too.
    if let Some(id) = claims
        .policy
        .as_ref()
        .and_then(|p| p.get("id"))
        .and_then(Value::as_str)
    {
        body["policy_id"] = json!(id);
    }
    let answer: Value = crate::progress::during(
        "asking the registry for a status-list slot",
        client.post("/v1/status-lists/allocations", &body),
    )
    .await
    .map_err(|e| {
        // Binding is the fix only for a request the registry found invalid; an agent
        // suspended or revoked (409) or a limit reached (429) is not fixed by it.
        let hint = match &e {
            ClientError::Api { status: 422, .. } if claims.cnf.is_none() => {
                "no status-list slot (pass --bind AGENT_KEY.pub.jwk if the agent's tokens must be bound to its key, or --no-status to sign without a slot)"
            }
            _ => "no status-list slot (pass --no-status to sign without one)",
        };
        explain(e).context(hint)
    })?;
    let status = serde_json::from_value(answer["status"].clone())
        .map_err(|e| anyhow!("the registry's status-list slot does not parse: {e}"))?;
    Ok(Some(status))
}

/// `bonafide issuer-key add FILE`: registers a public JWK, with a key proof
/// (`bonafide-key-proof+jwt`) signed by its private half, which the registry requires
/// so that nobody registers a key someone else holds. The file is checked for private
/// members before anything else, even before the API key is looked at; the private
/// key must be the public key's other half before any request. The proof's `iss` is
/// the caller's issuer id (`GET /v1/issuer`), its `aud` the registry's URL as its
/// discovery document names it.
pub async fn add(url: &str, args: AddArgs, out: Out) -> Result<ExitCode> {
    let jwk = read_public_jwk(&args.file)?;
    let key_file = match (&args.key, private_key_path(&args.file)) {
        (Some(k), _) => k.clone(),
        (None, Some(k)) => k,
        (None, None) => bail!(
            "`{}` is not named FILE{PUB_SUFFIX}: pass the private key with --key FILE (it signs the proof of possession here and is never sent)",
            args.file.display()
        ),
    };
    let key = read_signing_key(&key_file)?;
    let public: bonafide_core::keys::Jwk = serde_json::from_value(jwk.clone())
        .map_err(|e| anyhow!("`{}` is not a JWK: {e}", args.file.display()))?;
    let thumbprint = public
        .thumbprint()
        .map_err(|e| anyhow!("`{}` is not a usable JWK: {e}", args.file.display()))?;
    if thumbprint != key.kid() {
        bail!(
            "the private key `{}` (kid {}) is not the other half of `{}` (kid {thumbprint}): pass the matching key with --key",
            key_file.display(),
            key.kid(),
            args.file.display()
        );
    }
    let client = client(url, KeyKind::Issuer)?;
    let me: Value = client.get("/v1/issuer").await.map_err(explain)?;
    let issuer = me["issuer_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the registry's GET /v1/issuer answer has no `issuer_id`"))?;
    let config: Value = client
        .get("/.well-known/bonafide-configuration")
        .await
        .map_err(explain)?;
    let audience = config["issuer"].as_str().unwrap_or(url);
    let claims = KeyProofClaims {
        iss: issuer.to_owned(),
        aud: audience.to_owned(),
        iat: unix_now()?,
        jkt: key.kid().to_owned(),
        jti: Some(TokenId::from_random(random16()?).to_string()),
    };
    let proof = key_proof::sign(&key, &claims).map_err(|e| anyhow!("cannot sign: {e}"))?;
    let mut body = json!({ "jwk": jwk, "proof": proof });
    if let Some(alg) = args.alg {
        body["alg"] = json!(alg.as_str());
    }
    let v: Value = client
        .post("/v1/issuer/keys", &body)
        .await
        .map_err(explain)?;
    // Beside the private key (FILE for FILE.pub.jwk): which issuer the key signs
    // for, so `token sign --key FILE` needs no `--issuer`. Public, not a secret.
    if let (Some(private), Some(issuer)) = (private_key_path(&args.file), v["issuer_id"].as_str()) {
        let sidecar = issuer_sidecar(&private);
        if let Err(e) = std::fs::write(&sidecar, format!("{issuer}\n")) {
            eprintln!(
                "note: could not record the issuer in `{}` ({e}): pass `--issuer {issuer}` to `bonafide token sign`",
                sidecar.display()
            );
        }
    }
    out.issuer_key_added(&v);
    Ok(ExitCode::SUCCESS)
}

/// The private key file of a `FILE.pub.jwk` written by `bonafide keys generate`.
fn private_key_path(public: &Path) -> Option<PathBuf> {
    let name = public.file_name()?.to_str()?;
    let stem = name.strip_suffix(PUB_SUFFIX)?;
    (!stem.is_empty()).then(|| public.with_file_name(stem))
}

/// `FILE.issuer`: the issuer id recorded for the private key `FILE`.
fn issuer_sidecar(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".issuer");
    PathBuf::from(name)
}

/// The issuer id `bonafide issuer-key add` recorded beside `key`.
fn recorded_issuer(key: &Path) -> Result<String> {
    let sidecar = issuer_sidecar(key);
    let text = std::fs::read_to_string(&sidecar).map_err(|_| {
        anyhow!(
            "no --issuer, and no `{}`: pass your issuer id (`--issuer iss_…`), or register the key with `bonafide issuer-key add {}{PUB_SUFFIX}`, which records it",
            sidecar.display(),
            key.display()
        )
    })?;
    let id = text.trim();
    if id.is_empty() || id.len() > 128 {
        bail!("`{}` does not hold an issuer id", sidecar.display());
    }
    Ok(id.to_owned())
}

/// `bonafide issuer-key list`.
pub async fn list(url: &str, out: Out) -> Result<ExitCode> {
    let client = client(url, KeyKind::Issuer)?;
    let v: Value = client.get("/v1/issuer/keys").await.map_err(explain)?;
    out.issuer_keys(&v);
    Ok(ExitCode::SUCCESS)
}

/// `bonafide issuer-key revoke KID`.
pub async fn revoke(url: &str, kid: &str, out: Out) -> Result<ExitCode> {
    // The kid goes into a URL path: only an RFC 7638 thumbprint's alphabet passes.
    let well_formed = !kid.is_empty()
        && kid.len() <= 128
        && kid
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if !well_formed {
        bail!("`{kid}` is not a key id (base64url, as `bonafide issuer-key list` shows it)");
    }
    let client = client(url, KeyKind::Issuer)?;
    let v: Value = client
        .post(&format!("/v1/issuer/keys/{kid}/revoke"), &json!({}))
        .await
        .map_err(explain)?;
    out.issuer_key_revoked(&v);
    Ok(ExitCode::SUCCESS)
}

/// `bonafide issuer verify-domain`: signs a domain proof (`bonafide-domain-proof+jwt`)
/// with `--key` for this issuer, the domain and the registry, and asks the registry
/// to verify the domain. The issuer id comes from the registered key (which also
/// checks `--key` is registered, before the proof is made), the audience from the
/// registry's discovery document (its `issuer`, the URL it calls itself).
pub async fn verify_domain(url: &str, args: VerifyDomainArgs, out: Out) -> Result<ExitCode> {
    let key = read_signing_key(&args.key)?;
    let client = client(url, KeyKind::Issuer)?;
    let keys: Value = client.get("/v1/issuer/keys").await.map_err(explain)?;
    let registered = keys["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == key.kid()))
        .ok_or_else(|| {
            anyhow!(
                "the key in `{}` (kid {}) is not registered by this issuer: register its public half first (`bonafide issuer-key add FILE.pub.jwk`) and publish it in the domain's JWKS",
                args.key.display(),
                key.kid()
            )
        })?;
    if registered["revoked_at"].is_string() {
        bail!(
            "the key in `{}` (kid {}) is revoked: it proves nothing; register a new one",
            args.key.display(),
            key.kid()
        );
    }
    let issuer = registered["issuer_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the registry's key list has no `issuer_id`"))?;
    let config: Value = client
        .get("/.well-known/bonafide-configuration")
        .await
        .map_err(explain)?;
    let audience = config["issuer"].as_str().unwrap_or(url);
    let claims = DomainProofClaims {
        iss: issuer.to_owned(),
        domain: args.domain.to_ascii_lowercase(),
        aud: audience.to_owned(),
        iat: unix_now()?,
        jti: Some(TokenId::from_random(random16()?).to_string()),
    };
    let proof = domain_proof::sign(&key, &claims).map_err(|e| anyhow!("cannot sign: {e}"))?;
    let mut body = json!({ "domain": args.domain, "proof": proof });
    if let Some(u) = args.jwks_url {
        body["jwks_url"] = json!(u);
    }
    // The registry fetches the domain's JWKS before it answers: seconds, at worst.
    let checking = format!("the registry is checking https://{}", args.domain);
    let v: Value =
        crate::progress::during(&checking, client.post("/v1/issuer/verify-domain", &body))
            .await
            .map_err(explain)?;
    out.domain_verified(&v);
    Ok(ExitCode::SUCCESS)
}

/// Who may read a file [`write_file`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// 0600: the owner only.
    Private,
    /// 0644.
    Public,
}

/// Writes a new file with its mode set at creation (`open(O_CREAT | O_EXCL, mode)`),
/// so a private key is never readable by others, not even between create and chmod.
/// With `replace`, the text goes to a new temporary file in the same directory that
/// is then renamed over `path`: an existing file's looser mode is never inherited,
/// and a crash leaves the old file or the new one, not half of either.
fn write_file(path: &Path, text: &str, mode: Mode, replace: bool) -> Result<()> {
    let target = if replace {
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("`{}` is not a file name", path.display()))?;
        let mut tmp = std::ffi::OsString::from(".");
        tmp.push(name);
        tmp.push(format!(".tmp-{}", bonafide_core::hex(&random16()?[..8])));
        path.with_file_name(tmp)
    } else {
        path.to_path_buf()
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(
        &mut opts,
        match mode {
            Mode::Private => 0o600,
            Mode::Public => 0o644,
        },
    );
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(&target).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow!(
                "`{}` exists; pass --force to replace it (the old key is then lost)",
                target.display()
            )
        } else {
            anyhow!("cannot create `{}`: {e}", target.display())
        }
    })?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| {
            if replace {
                std::fs::rename(&target, path)
            } else {
                Ok(())
            }
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&target);
        bail!("cannot write `{}`: {e}", path.display());
    }
    Ok(())
}

/// `FILE.pub.jwk` for `FILE`.
fn pub_path(private: &Path) -> PathBuf {
    let mut p = private.as_os_str().to_owned();
    p.push(PUB_SUFFIX);
    PathBuf::from(p)
}

/// A key file's text, at most [`MAX_KEY_FILE_BYTES`].
pub(crate) fn read_key_file(path: &Path, what: &str) -> Result<String> {
    let shown = path.display();
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read the {what} `{shown}`"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the {what} `{shown}`"))?;
    if meta.is_dir() {
        bail!("the {what} `{shown}` is a directory");
    }
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the {what} `{shown}`"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        bail!("the {what} `{shown}` is over {MAX_KEY_FILE_BYTES} bytes: not a key file");
    }
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("the {what} `{shown}` is not text: not a key file"))
}

/// The signing key of `token sign --key FILE`, with a message for each wrong file.
pub(crate) fn read_signing_key(path: &Path) -> Result<SigningKey> {
    let text = read_key_file(path, "key file")?;
    let shown = path.display();
    let t = text.trim_start();
    if t.starts_with('{') {
        bail!(
            "`{shown}` is a JWK: --key takes the private key file (PKCS#8 PEM) that `bonafide keys generate --out` wrote"
        );
    }
    if t.contains("-----BEGIN PUBLIC KEY-----") {
        bail!("`{shown}` is a public key: --key takes the private key (PKCS#8 PEM)");
    }
    if t.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        bail!(
            "`{shown}` is an encrypted PKCS#8 key: decrypt it first (`openssl pkcs8 -in {shown} -out plain.pem`)"
        );
    }
    if t.contains("-----BEGIN RSA PRIVATE KEY-----") || t.contains("-----BEGIN EC PRIVATE KEY-----")
    {
        bail!(
            "`{shown}` is a PKCS#1/SEC1 key, not PKCS#8: convert it with `openssl pkcs8 -topk8 -nocrypt -in {shown}`"
        );
    }
    let key = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
        anyhow!("`{shown}` is not a PKCS#8 PEM private key (Ed25519, P-256 or RSA ≥ 2048): {e}")
    })?;
    // Only once it is a private key: a public key readable by others is no news.
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: the private key `{shown}` is readable by others (mode {mode:o}); run `chmod 600 {shown}`"
            );
        }
    }
    Ok(key)
}

/// The JWK of `issuer-key add FILE`, refused if it holds private material.
fn read_public_jwk(path: &Path) -> Result<Value> {
    let text = read_key_file(path, "JWK file")?;
    public_jwk(&text, path)
}

/// What to do instead of sending a private key.
const KEEP_LOCAL: &str = "the private key must stay local: register the public JWK (`FILE.pub.jwk` from `bonafide keys generate`)";

/// Refuses the text of a key file that holds a private PEM key (PKCS#8, PKCS#1,
/// SEC1, encrypted or not), before it can be sent anywhere.
pub(crate) fn refuse_private_pem(text: &str, path: &Path) -> Result<()> {
    if text.contains("PRIVATE KEY-----") {
        bail!("`{}` is a private key; {KEEP_LOCAL}", path.display());
    }
    Ok(())
}

/// The public JWK in the text of the key file `path` (`issuer-key add`, `agent keys
/// register|rotate`), refused if it holds private material (a private PEM, or a JWK,
/// or any key of a JWK Set, with a private member) or is not one JWK object.
pub(crate) fn public_jwk(text: &str, path: &Path) -> Result<Value> {
    let shown = path.display();
    refuse_private_pem(text, path)?;
    json::check(text.as_bytes(), JsonLimits::default())
        .map_err(|e| anyhow!("`{shown}` is not a JWK: {e}"))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow!("`{shown}` is not a JWK: {e}"))?;
    let Some(obj) = value.as_object() else {
        bail!("`{shown}` is not a JWK: not a JSON object");
    };
    // A JWK Set's keys are checked too, so the message names the real problem.
    let nested = obj
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for jwk in std::iter::once(&value).chain(nested) {
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.get(**m).is_some()) {
            bail!("`{shown}` contains the private member `{m}`; {KEEP_LOCAL}");
        }
    }
    if obj.contains_key("keys") {
        bail!("`{shown}` is a JWK Set: give one public JWK");
    }
    Ok(value)
}

/// Seconds since the epoch, for a proof's `iat`.
pub(crate) fn unix_now() -> Result<i64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs();
    i64::try_from(now).context("the system clock is out of range")
}

pub(crate) fn random16() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| anyhow!("the system random source failed"))?;
    Ok(b)
}
