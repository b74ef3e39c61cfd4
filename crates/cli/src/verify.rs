//! `bonafide verify`: what `POST /v1/verify` decides, online (token, scopes, audience,
//! action, resource, amount, proof of possession), or offline with a JWKS (signature,
//! times, issuer, audience, scopes, and the proof against the token's `cnf.jkt`).
//!
//! A DPoP proof (`--dpop-key FILE --htm METHOD --htu URL`) is made here with the
//! agent's private key (core `dpop::sign`; the key file is read as `token sign` reads
//! one), for the request the receiver would see; the key never leaves this machine.
//! Offline, the proof is checked with core `dpop::verify` against the token's
//! `cnf.jkt`, as a receiver would check it; online it is sent as `proof` and the
//! registry checks it (and claims its `jti`, so each run makes a new one).
//!
//! Offline, a token that names its entry in a status list is checked against that
//! list with the client's [`StatusLists`] (one fetch; only URIs under the trusted
//! prefixes: `--status-list-prefix`, else the registry the JWKS URL or `--issuer`
//! names), as the receiver layer checks it: revoked and suspended refuse with the
//! registry's codes, a list that cannot be fetched or verified is an error
//! (`STATUS_LIST_UNAVAILABLE`, failing closed), `--no-status` skips it.

use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use bonafide_api::verify::{VerifiedAgent, VerifyResponse};
use bonafide_api::{ErrorCode, ErrorDetail};
use bonafide_client::status::{
    StatusCheck, StatusError, StatusListConfig, StatusLists, TrustedLists,
};
use bonafide_client::{Client, OfflineVerifier, Proof, Resource, VerifyRequest, load_jwks};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::keys::SigningKey;
use bonafide_core::token::{AgentClaims, DEFAULT_MAX_TOKEN_BYTES, TokenError};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::Out;
use crate::{VerifyArgs, explain, self_custody};

/// What the token says about itself, read without verifying it, only to explain an
/// answer in text (when it expired, which key it is bound to). Never decides anything.
#[derive(Debug, Default)]
pub struct Peeked {
    /// `exp`, Unix seconds.
    pub exp: Option<i64>,
    /// `cnf.jkt`.
    pub jkt: Option<String>,
}

impl Peeked {
    fn of(token: &str) -> Self {
        if token.len() > DEFAULT_MAX_TOKEN_BYTES {
            return Peeked::default();
        }
        let claims: Value = token
            .split('.')
            .nth(1)
            .and_then(|p| bonafide_core::b64::decode(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null);
        Peeked {
            exp: claims["exp"].as_i64(),
            jkt: claims["cnf"]["jkt"].as_str().map(str::to_owned),
        }
    }
}

/// A DPoP proof to present: the JWT and the request it is for.
struct DpopProof {
    jwt: String,
    htm: String,
    htu: String,
}

/// `bonafide verify`.
pub async fn run(url: &str, args: VerifyArgs, out: Out) -> Result<ExitCode> {
    let token = read_token(&args.token)?;
    let resource = args.resource.as_deref().map(resource).transpose()?;
    // Local mistakes first (exit 2), the key file last: a typo costs no read of it.
    let proof = match (&args.dpop_key, &args.htm, &args.htu) {
        (Some(file), Some(htm), Some(htu)) => {
            check_htm(htm)?;
            dpop::normalize_htu(htu).map_err(|e| Failure::usage(format!("--htu `{htu}`: {e}")))?;
            let key = self_custody::read_signing_key(file)?;
            Some(dpop_proof(&key, htm, htu, &token)?)
        }
        (None, None, None) => None,
        // clap's `requires` makes this unreachable; say it anyway rather than panic.
        _ => {
            return Err(Failure::usage(
                "--dpop-key, --htm and --htu go together: the key, and the method and URL of the request the proof is for",
            ));
        }
    };
    let peeked = Peeked::of(&token);
    let answer = if args.offline {
        offline(&args, &token, proof.as_ref()).await?
    } else {
        let client = Client::new(url, receiver_key(args.amount.is_some())?).map_err(explain)?;
        let request = VerifyRequest {
            token,
            scopes: args.scopes.clone(),
            audience: args.audience.clone(),
            action: args.action.clone(),
            resource,
            amount: args.amount.clone(),
            currency: args.currency.clone(),
            proof: proof.map(|p| Proof::Dpop {
                jwt: p.jwt,
                htm: p.htm,
                htu: p.htu,
            }),
            ..VerifyRequest::default()
        };
        Verdict::online(client.verify_request(&request).await.map_err(explain)?)
    };
    out.verified(&answer, &peeked);
    Ok(exit_for(&answer.answer))
}

/// What `bonafide verify` found: the registry's answer, or the offline check's in the
/// same type (for the text), with the offline check's own JSON (`--json`: it has no
/// request id, DID or receipt, and says `offline: true`).
#[derive(Debug)]
pub struct Verdict {
    /// The answer, typed.
    pub answer: VerifyResponse,
    /// Offline: what `--json` prints.
    pub offline: Option<Value>,
}

impl Verdict {
    fn online(answer: VerifyResponse) -> Self {
        Verdict {
            answer,
            offline: None,
        }
    }
}

/// Offline: core's checks with the JWKS, then the scopes and the proof of possession.
async fn offline(args: &VerifyArgs, token: &str, proof: Option<&DpopProof>) -> Result<Verdict> {
    if args.action.is_some() || args.resource.is_some() || args.amount.is_some() {
        return Err(Failure::usage(
            "--action, --resource, --amount and --currency are decided by the registry (the consent policy and its budget): verify online, without --offline",
        ));
    }
    let source = args
        .jwks
        .as_deref()
        .ok_or_else(|| Failure::usage("--offline needs --jwks FILE_OR_URL"))?;
    let jwks = load_jwks(source)
        .await
        .map_err(explain)
        .with_context(|| format!("cannot load the JWKS `{source}`"))?;
    let issuer = match (&args.issuer, origin(source)) {
        (Some(i), _) => i.clone(),
        (None, Some(o)) => o,
        (None, None) => {
            return Err(Failure::usage(
                "--offline with a JWKS file needs --issuer URL (the registry's `iss`)",
            ));
        }
    };
    let mut verifier = OfflineVerifier::new(&jwks, &issuer)
        .map_err(explain)
        .with_context(|| format!("the JWKS `{source}` is unusable"))?;
    verifier.options_mut().audience = args.audience.clone().into();
    let now = bonafide_server::time::now_ms() / 1000;
    let verdict = match verifier.verify(token, now) {
        Ok(v) => v,
        Err(e) => return Ok(invalid(&e, false)),
    };
    let c = &verdict.token.claims;
    // Pipeline step 5 before the proof, as the receiver layer orders it.
    let status = if args.no_status {
        None
    } else {
        match status(args, source, &issuer, c).await? {
            Ok(check) => Some(check),
            Err(refused) => return Ok(refused),
        }
    };
    let checked = status.as_ref().is_some_and(StatusCheck::revocation_checked);
    // Pipeline step 6, as a receiver checks it: a bound token needs a proof by its key.
    match (c.cnf.as_ref().map(|cnf| cnf.jkt.as_str()), proof) {
        (Some(_), None) => {
            return Ok(invalid(&TokenError::ProofRequired, checked));
        }
        (Some(jkt), Some(p)) => {
            let check = ProofCheck::new(&p.htm, &p.htu, jkt, token, now);
            if let Err(e) = dpop::verify(&p.jwt, &check) {
                return Ok(invalid(&TokenError::ProofInvalid(e.to_string()), checked));
            }
        }
        (None, Some(_)) => {
            return Err(Failure::usage(
                "the token is not bound to a key (no `cnf.jkt`): it takes no proof, drop --dpop-key (the registry would answer PROOF_NOT_APPLICABLE)",
            ));
        }
        (None, None) => {}
    }
    let missing: Vec<&str> = args
        .scopes
        .iter()
        .filter(|s| !c.agent.scopes.contains(s))
        .map(String::as_str)
        .collect();
    let mut answer = json!({
        "valid": true,
        "allowed": missing.is_empty(),
        "reasons": if missing.is_empty() { json!([]) } else { json!(["SCOPE_NOT_GRANTED"]) },
        "agent": { "id": c.sub, "name": c.agent.name, "issuer": c.agent.issuer, "scopes": c.agent.scopes },
        "expires_at": bonafide_server::time::rfc3339_s(c.exp),
        "offline": true,
        "revocation_checked": checked,
        "status_list": status_json(status.as_ref(), c),
    });
    if !missing.is_empty() {
        // The registry's words for the same refusal.
        let names: Vec<String> = missing.iter().map(|s| format!("`{s}`")).collect();
        answer["reason"] = json!(format!(
            "scope {} not granted to this agent",
            names.join(", ")
        ));
    }
    if let Some(u) = &c.user {
        answer["user"] = json!(u);
    }
    let typed = VerifyResponse {
        valid: true,
        allowed: missing.is_empty(),
        error: None,
        reason: answer["reason"].as_str().map(str::to_owned),
        reasons: if missing.is_empty() {
            Vec::new()
        } else {
            vec!["SCOPE_NOT_GRANTED".to_owned()]
        },
        agent: Some(VerifiedAgent {
            id: c.sub.to_string(),
            did: String::new(),
            name: c.agent.name.clone(),
            issuer: c.agent.issuer.clone(),
            active_scopes: c.agent.scopes.clone(),
        }),
        delegation: Vec::new(),
        trust_level: None,
        issuer_domain: None,
        user: c.user.clone(),
        expires_at: Some(bonafide_server::time::rfc3339_s(c.exp)),
        verified_at: String::new(),
        remaining: None,
        warnings: Vec::new(),
        receipt_id: None,
        audit_index: None,
        simulated: false,
    };
    Ok(Verdict {
        answer: typed,
        offline: Some(answer),
    })
}

/// The token's status list entry (offline): the check, or the refusal to print.
/// A list that cannot be fetched or verified is an error (`STATUS_LIST_UNAVAILABLE`,
/// `STATUS_LIST_STALE`): the CLI fails closed, as the receiver layer does by default.
async fn status(
    args: &VerifyArgs,
    jwks_source: &str,
    issuer: &str,
    claims: &AgentClaims,
) -> Result<std::result::Result<StatusCheck, Verdict>> {
    let named = claims
        .status
        .as_ref()
        .is_some_and(|s| s.status_list.is_some());
    if !named {
        return Ok(Ok(StatusCheck::NoStatus));
    }
    let config = if args.status_list_prefix.is_empty() {
        let registry = StatusListConfig::registry_of_jwks(jwks_source)
            .filter(|_| jwks_source.contains("://"))
            .or_else(|| {
                (issuer.starts_with("https://") || issuer.starts_with("http://"))
                    .then(|| issuer.to_owned())
            });
        let Some(registry) = registry else {
            return Err(Failure::usage(
                "the token names a status list, and with a JWKS file and an issuer id there is no registry to trust it from: give --status-list-prefix URL (the registry's …/v1/status-lists/), or --no-status to skip the revocation check",
            ));
        };
        StatusListConfig::for_registry(&registry)
    } else {
        let mut c = StatusListConfig::for_registry("https://unused.invalid");
        c.trusted = args
            .status_list_prefix
            .iter()
            .map(|p| {
                TrustedLists::prefix(p).ok_or_else(|| {
                    Failure::usage(format!(
                        "--status-list-prefix `{p}` must be a registry's status lists, ending in /v1/status-lists/ (their keys are read from the same registry's /.well-known/status-list-jwks.json)"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        c
    };
    let lists = StatusLists::new(config)
        .map_err(|e| Failure::usage(format!("--status-list-prefix: {e}")))?;
    match lists.check(claims, bonafide_server::time::now_ms()).await {
        Ok(check) => Ok(Ok(check)),
        // Revoked or suspended: read from the list, so revocation was checked.
        Err(StatusError::Refused(e)) => Ok(Err(invalid(&e, true))),
        Err(e @ StatusError::Untrusted { .. }) => Ok(Err(refused(e.code(), &e.to_string()))),
        Err(e) => Err(Failure::coded(e.code(), e.to_string())),
    }
}

/// What `--json` says of the status list: `null` when the token names none.
fn status_json(check: Option<&StatusCheck>, claims: &AgentClaims) -> Value {
    let Some(r) = claims.status.as_ref().and_then(|s| s.status_list.as_ref()) else {
        return Value::Null;
    };
    match check {
        None => json!({"uri": r.uri, "idx": r.idx, "checked": false}),
        Some(c) => json!({
            "uri": r.uri, "idx": r.idx, "checked": c.revocation_checked(),
            "age_s": c.age().map(|a| a.as_secs()),
            "version": match c { StatusCheck::Valid { version, .. } => *version, _ => None },
        }),
    }
}

/// An offline refusal, in the shape of the registry's: `error` is the object of the
/// registry's answers, without a request id (no request was made);
/// `revocation_checked`: whether a status list was read before it.
fn invalid(e: &TokenError, revocation_checked: bool) -> Verdict {
    let code = ErrorCode::from(e);
    let mut v = refused(code.as_str(), &e.to_string());
    let checked = revocation_checked;
    if let Some(json) = v.offline.as_mut() {
        json["revocation_checked"] = json!(checked);
    }
    v
}

/// An offline refusal with `code` and `message`.
fn refused(code: &str, message: &str) -> Verdict {
    let code = ErrorCode::from_wire(code);
    let json = json!({
        "valid": false, "allowed": false,
        "error": {"code": code, "message": message},
        "reason": message,
        "reasons": [code], "offline": true, "revocation_checked": false,
    });
    let answer = VerifyResponse {
        valid: false,
        allowed: false,
        error: Some(ErrorDetail {
            code: code.clone(),
            message: message.to_owned(),
            request_id: String::new(),
            reset: None,
        }),
        reason: Some(message.to_owned()),
        reasons: vec![code.as_str().to_owned()],
        agent: None,
        delegation: Vec::new(),
        trust_level: None,
        issuer_domain: None,
        user: None,
        expires_at: None,
        verified_at: String::new(),
        remaining: None,
        warnings: Vec::new(),
        receipt_id: None,
        audit_index: None,
        simulated: false,
    };
    Verdict {
        answer,
        offline: Some(json),
    }
}

/// Makes the proof for `htm htu` with `key`, for this token (`ath`).
fn dpop_proof(key: &SigningKey, htm: &str, htu: &str, token: &str) -> Result<DpopProof> {
    // RFC 9449 §4.2: `htu` without query and fragment.
    let bare = htu.split(['?', '#']).next().unwrap_or(htu);
    let jti = bonafide_core::b64::encode(&self_custody::random16()?);
    let jwt = dpop::sign(key, htm, bare, token, self_custody::unix_now()?, &jti)
        .map_err(|e| anyhow!("cannot sign the DPoP proof: {e}"))?;
    Ok(DpopProof {
        jwt,
        htm: htm.to_owned(),
        htu: htu.to_owned(),
    })
}

/// `--htm`: an HTTP method token (`GET`, `POST`), compared exactly by the verifier.
fn check_htm(htm: &str) -> Result<()> {
    let ok = !htm.is_empty()
        && htm.len() <= 32
        && htm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "--htm `{htm}` is not an HTTP method: give the request's, such as GET or POST"
        )))
    }
}

/// `--resource TYPE/ID` (`merchant/airbnb`, `account/acct/12/sub`): the type is what
/// comes before the first `/`.
fn resource(text: &str) -> Result<Resource> {
    match text.split_once('/') {
        Some((kind, id)) if !kind.is_empty() && !id.is_empty() => Ok(Resource {
            kind: kind.to_owned(),
            id: id.to_owned(),
        }),
        _ => Err(Failure::usage(format!(
            "--resource `{text}` is not TYPE/ID: write the resource's type, a slash and its id, such as merchant/airbnb"
        ))),
    }
}

/// The key `POST /v1/verify` is sent with: a receiver key in `BONAFIDE_API_KEY`
/// (what a spend needs, and what makes the receiver the decision's actor); any other
/// key stays here, as it always did.
fn receiver_key(spends: bool) -> Result<Option<String>> {
    let raw = std::env::var("BONAFIDE_API_KEY")
        .ok()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let needed = "--amount spends the policy's budget, which needs a receiver key (bfk_rcv_…, made by `bonafide receiver create`) in BONAFIDE_API_KEY";
    let Some(raw) = raw else {
        return if spends {
            Err(Failure::usage(needed))
        } else {
            Ok(None)
        };
    };
    if raw.starts_with("bfk_rcv_") {
        ApiKey::parse(&raw).map_err(|e| Failure::usage(format!("BONAFIDE_API_KEY: {e}")))?;
        return Ok(Some(raw));
    }
    if spends {
        let kind = ApiKey::parse(&raw).map(|k| k.kind());
        return Err(Failure::usage(match kind {
            Ok(kind) if kind != KeyKind::Receiver => {
                format!("{needed}; it holds an {} key", kind.as_str())
            }
            _ => needed.to_owned(),
        }));
    }
    Ok(None)
}

pub(crate) fn read_token(arg: &str) -> Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .context("cannot read the token from stdin")?;
        Ok(s.trim().to_owned())
    } else {
        Ok(arg.trim().to_owned())
    }
}

pub(crate) fn exit_for(answer: &VerifyResponse) -> ExitCode {
    if answer.valid && answer.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `scheme://host[:port]` of a URL, if it is one.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split('/').next()?;
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_split_at_the_first_slash() {
        let r = resource("merchant/acct/12/sub").unwrap();
        assert_eq!(
            (r.kind.as_str(), r.id.as_str()),
            ("merchant", "acct/12/sub")
        );
        for bad in ["airbnb", "/x", "merchant/", ""] {
            assert!(resource(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods_are_http_tokens() {
        for ok in ["GET", "POST", "PATCH"] {
            assert!(check_htm(ok).is_ok(), "{ok}");
        }
        for bad in ["", "GE T", "POST\n", "ÄÖ"] {
            assert!(check_htm(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_peek_reads_exp_and_the_binding_without_trusting_them() {
        let claims = json!({"exp": 1_733_306_400, "cnf": {"jkt": "abc"}});
        let payload = bonafide_core::b64::encode(claims.to_string().as_bytes());
        let p = Peeked::of(&format!("e30.{payload}.sig"));
        assert_eq!(p.exp, Some(1_733_306_400));
        assert_eq!(p.jkt.as_deref(), Some("abc"));
        let p = Peeked::of("garbage");
        assert!(p.exp.is_none() && p.jkt.is_none());
    }
}
