//! `bonafide receipt verify`: check a verify receipt offline, against the registry's
//! published keys.
//!
//! The receipt is read from a file (or stdin): the compact JWS, or the JSON answer of
//! `GET /v1/receipts/{id}`, of which only the `jws` member is used (a decoded form
//! next to it is not trusted, nor looked at). The keys come from `--jwks`, the
//! registry's receipt JWKS (`/.well-known/receipt-jwks.json`: the receipt key is not
//! in the token JWKS) as an https URL (plain http only to this machine) or a file.
//! With `--request`, the `POST /v1/verify` body kept by the receiver is checked to be
//! the one the receipt decided (its `request_sha256`).
//!
//! Exit codes, as `audit verify`: 0 every check held; 1 a check failed (the receipt
//! is forged, altered, not a receipt, signed by a key not in the JWKS, or for another
//! request); 2 anything else (unreadable files, unreachable URL, malformed JWKS or
//! request file), so a script can tell "not genuine" from "could not tell".

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_client::load_jwks;
use bonafide_core::audit::Decision;
use bonafide_core::json::{self, JsonLimits};
use bonafide_core::jws::{self, Compact};
use bonafide_core::receipt::{self, ReceiptClaims, ReceiptError, RequestFacts};
use bonafide_core::token::{KeySet, TokenError};
use clap::Args;
use serde_json::{Value, json};

use crate::output::Out;

/// Largest receipt or request file read, bytes.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The receipt: a file holding its compact JWS or the JSON answer of
    /// `GET /v1/receipts/{id}` (`{"jws": …}`); `-` reads stdin.
    pub file: String,
    /// The registry's receipt JWKS (`receipt_jwks_uri` in its discovery document; not
    /// the token JWKS): an https URL (http only to localhost) or a file, e.g.
    /// https://registry.example/.well-known/receipt-jwks.json.
    #[arg(long)]
    pub jwks: String,
    /// The `POST /v1/verify` body the receipt should be for (JSON file): checks that
    /// the receipt's `request_sha256` is its digest.
    #[arg(long)]
    pub request: Option<PathBuf>,
}

pub async fn verify(args: VerifyArgs, out: Out) -> Result<ExitCode> {
    // Everything that can only be an error (exit 2) is read before anything is judged.
    let jws = read_receipt(&args.file)?;
    let jwks = load_jwks(&args.jwks)
        .await
        .map_err(crate::explain)
        .context("cannot load the JWKS")?;
    let keys = KeySet::from_jwks(&jwks)
        .map_err(|e| anyhow!("the JWKS `{}` is unusable: {e}", args.jwks))?;
    if keys.is_empty() {
        bail!("the JWKS `{}` holds no keys", args.jwks);
    }
    let facts = args.request.as_deref().map(read_request).transpose()?;

    let claims = match receipt::verify(&jws, &keys) {
        Ok(c) => c,
        Err(e) => return Ok(failed(out, None, &explain(&e, &jws, &args.jwks))),
    };
    if let Some(facts) = &facts
        && let Err(e) = receipt::check_request(&claims, facts)
    {
        return Ok(failed(out, Some(&claims), &explain(&e, &jws, &args.jwks)));
    }

    let kid = kid_of(&jws).unwrap_or_default();
    if out.json {
        println!(
            "{}",
            json!({
                "ok": true,
                "kid": kid,
                "request_checked": facts.is_some(),
                "receipt": claims,
            })
        );
    } else {
        print_claims(&claims);
        let decision = match claims.decision {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        };
        eprintln!(
            "receipt OK: {} ({}) signed by key `{kid}` of {}; {}",
            claims.receipt_id,
            decision,
            args.jwks,
            if facts.is_some() {
                "the request matches its request_sha256"
            } else {
                "request not checked (give --request FILE to check it)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports a failed check (exit 1): the claims when the signature held, and the
/// problem.
fn failed(out: Out, claims: Option<&ReceiptClaims>, problem: &str) -> ExitCode {
    if out.json {
        println!(
            "{}",
            json!({ "ok": false, "problem": problem, "receipt": claims })
        );
    } else {
        if let Some(c) = claims {
            print_claims(c);
        }
        eprintln!("RECEIPT CHECK FAILED: {problem}");
    }
    ExitCode::from(1)
}

fn print_claims(claims: &ReceiptClaims) {
    println!(
        "{}",
        serde_json::to_string_pretty(claims).unwrap_or_default()
    );
}

/// The receipt error, with what it means for the person holding the receipt.
fn explain(e: &ReceiptError, jws: &str, source: &str) -> String {
    match e {
        ReceiptError::Jws(TokenError::BadSignature) => {
            format!("{e}: the receipt was altered after it was signed")
        }
        ReceiptError::Jws(TokenError::UnknownKey) => format!(
            "{e} (`{}`): the receipt is signed by a key that is not in the JWKS `{source}` (receipts are signed by the registry's receipt key, published at its `receipt_jwks_uri`, /.well-known/receipt-jwks.json, not in the token JWKS)",
            kid_of(jws).unwrap_or_default()
        ),
        ReceiptError::WrongType { found } if found.eq_ignore_ascii_case("agent+jwt") => {
            format!("{e}: this is an agent token, not a receipt")
        }
        _ => e.to_string(),
    }
}

/// The `kid` of a receipt's header, for messages only (nothing is trusted from it).
fn kid_of(jws: &str) -> Option<String> {
    let compact = Compact::split(jws, receipt::MAX_RECEIPT_BYTES).ok()?;
    let header = jws::decode_header(compact.header_b64, JsonLimits::default()).ok()?;
    Some(header.kid.chars().take(64).collect())
}

fn read_limited(path: &Path, what: &str) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read {what} `{}`", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        bail!("{what} `{}` is over {MAX_FILE_BYTES} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("cannot read {what} `{}`", path.display()))
}

/// The compact JWS from a receipt file or stdin: the text itself, or the `jws` member
/// of a JSON object.
fn read_receipt(arg: &str) -> Result<String> {
    let (bytes, name) = if arg == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the receipt from stdin")?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            bail!("the receipt on stdin is over {MAX_FILE_BYTES} bytes");
        }
        (bytes, "stdin".to_owned())
    } else {
        let path = Path::new(arg);
        (
            read_limited(path, "the receipt file")?,
            format!("`{}`", path.display()),
        )
    };
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("the receipt in {name} is not text"))?;
    let text = text.trim();
    if !text.starts_with('{') {
        return Ok(text.to_owned());
    }
    // The answer of GET /v1/receipts/{id}. Duplicate members are refused: a viewer
    // and this check must not read two different `jws`.
    json::check(text.as_bytes(), JsonLimits::default())
        .map_err(|e| anyhow!("the receipt in {name} is not valid JSON: {e}"))?;
    let answer: Value = serde_json::from_str(text)
        .map_err(|e| anyhow!("the receipt in {name} is not valid JSON: {e}"))?;
    answer["jws"]
        .as_str()
        .map(|s| s.trim().to_owned())
        .ok_or_else(|| {
            anyhow!(
                "the JSON in {name} has no `jws` string: give the receipt's compact JWS or the answer of GET /v1/receipts/{{id}}"
            )
        })
}

/// The facts of a `POST /v1/verify` body file.
fn read_request(path: &Path) -> Result<RequestFacts> {
    let bytes = read_limited(path, "the request file")?;
    RequestFacts::from_request_json(&bytes)
        .map_err(|e| anyhow!("the request file `{}` is malformed: {e}", path.display()))
}
