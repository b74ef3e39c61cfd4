//! `tokens.json`: agent tokens and the verification pipeline's answer for each
//! (valid with its subject and scopes, or refused with the wire code).

use bonafide_core::keys::{Jwks, SigningKey, VerifyingKey};
use bonafide_core::token::{self, AudienceRule, KeySet, VerifyOptions};
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty, raw_jws};

const NOW: i64 = 1_800_000_000;
const REGISTRY: &str = "https://registry.example";
const MAX_LIFETIME: i64 = 86_400;
const LEEWAY: i64 = 60;

fn claims() -> Value {
    json!({
        "iss": REGISTRY,
        "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "iat": NOW - 10,
        "exp": NOW + 600,
        "jti": "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "agent": {
            "name": "PortfolioBot",
            "issuer": "apexwealth.example",
            "scopes": ["read:portfolio", "read:transactions"]
        }
    })
}

fn header(key: &SigningKey) -> Value {
    json!({"alg": key.alg().as_str(), "typ": "agent+jwt", "kid": key.kid()})
}

/// What a case states the verifier must answer.
enum Expect {
    Valid,
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    rule: &'static str,
    token: String,
    audience: Option<&'static str>,
    expect: Expect,
}

fn sign(
    key: &SigningKey,
    header: &Value,
    claims: &Value,
    name: &str,
) -> Result<String, VectorError> {
    raw_jws(key, header, claims.to_string().as_bytes(), name)
}

fn cases(registry: &SigningKey, stranger: &SigningKey) -> Result<Vec<Case>, VectorError> {
    let h = header(registry);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    let valid = sign(registry, &h, &claims(), "valid")?;
    let mut bad_sig = valid.clone();
    // Flip the last signature character to another base64url character.
    let last = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.pop();
    bad_sig.push(last);
    let mut jwk_header = h.clone();
    jwk_header["jwk"] =
        serde_json::to_value(registry.verifying_key().jwk()).map_err(|e| VectorError::Build {
            case: "forbidden_jwk_header".into(),
            message: e.to_string(),
        })?;
    let mut none_header = h.clone();
    none_header["alg"] = json!("none");
    let mut wrong_typ = h.clone();
    wrong_typ["typ"] = json!("JWT");
    let duplicate = {
        let body = claims().to_string();
        // The same member twice: strict JSON refuses it, whichever copy a lax parser keeps.
        let dup = body.replacen("{", r#"{"sub":"agt_bbbbbbbbbbbbbbbbbbbbbbbbbb","#, 1);
        raw_jws(registry, &h, dup.as_bytes(), "duplicate_claim")?
    };
    Ok(vec![
        Case {
            name: "valid",
            rule: "a registry token within its lifetime, no audience",
            token: valid.clone(),
            audience: None,
            expect: Expect::Valid,
        },
        Case {
            name: "valid_with_audience",
            rule: "a token naming the verifier in `aud`",
            token: sign(
                registry,
                &h,
                &with(&|c| c["aud"] = json!(["https://api.example"])),
                "valid_with_audience",
            )?,
            audience: Some("https://api.example"),
            expect: Expect::Valid,
        },
        Case {
            name: "expired",
            rule: "`exp` at or before now minus the leeway",
            token: sign(
                registry,
                &h,
                &with(&|c| {
                    c["iat"] = json!(NOW - 700);
                    c["exp"] = json!(NOW - LEEWAY);
                }),
                "expired",
            )?,
            audience: None,
            expect: Expect::Refused("TOKEN_EXPIRED"),
        },
        Case {
            name: "not_yet_valid",
            rule: "`nbf` after now plus the leeway",
            token: sign(
                registry,
                &h,
                &with(&|c| c["nbf"] = json!(NOW + LEEWAY + 1)),
                "not_yet_valid",
            )?,
            audience: None,
            expect: Expect::Refused("TOKEN_NOT_YET_VALID"),
        },
        Case {
            name: "other_issuer",
            rule: "`iss` is not the registry",
            token: sign(
                registry,
                &h,
                &with(&|c| c["iss"] = json!("https://evil.example")),
                "other_issuer",
            )?,
            audience: None,
            expect: Expect::Refused("ISSUER_UNKNOWN"),
        },
        Case {
            name: "audience_mismatch",
            rule: "`aud` does not name the verifier",
            token: sign(
                registry,
                &h,
                &with(&|c| c["aud"] = json!(["https://other.example"])),
                "audience_mismatch",
            )?,
            audience: Some("https://api.example"),
            expect: Expect::Refused("AUDIENCE_MISMATCH"),
        },
        Case {
            name: "audience_unnamed",
            rule: "a token with `aud` and a verifier that names no audience",
            token: sign(
                registry,
                &h,
                &with(&|c| c["aud"] = json!(["https://api.example"])),
                "audience_unnamed",
            )?,
            audience: None,
            expect: Expect::Refused("AUDIENCE_MISMATCH"),
        },
        Case {
            name: "lifetime_too_long",
            rule: "`exp` minus `iat` beyond the verifier's maximum lifetime",
            token: sign(
                registry,
                &h,
                &with(&|c| c["exp"] = json!(NOW - 10 + MAX_LIFETIME + 1)),
                "lifetime_too_long",
            )?,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
        Case {
            name: "bad_signature",
            rule: "the signature does not verify",
            token: bad_sig,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
        Case {
            name: "unknown_key",
            rule: "signed by a key the JWKS does not hold",
            token: sign(stranger, &header(stranger), &claims(), "unknown_key")?,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
        Case {
            name: "alg_none",
            rule: "`alg` none is never accepted",
            token: sign(registry, &none_header, &claims(), "alg_none")?,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
        Case {
            name: "forbidden_jwk_header",
            rule: "a key carried in the header (`jwk`) is refused, whatever it is",
            token: sign(registry, &jwk_header, &claims(), "forbidden_jwk_header")?,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
        Case {
            name: "wrong_typ",
            rule: "`typ` is not `agent+jwt`",
            token: sign(registry, &wrong_typ, &claims(), "wrong_typ")?,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
        Case {
            name: "duplicate_claim",
            rule: "a claim that appears twice",
            token: duplicate,
            audience: None,
            expect: Expect::Refused("TOKEN_INVALID"),
        },
    ])
}

/// The verifier settings a case runs with.
pub fn options(audience: Option<&str>) -> VerifyOptions {
    let mut opts = VerifyOptions::for_issuer(REGISTRY);
    opts.leeway_secs = LEEWAY;
    opts.max_lifetime_secs = Some(MAX_LIFETIME);
    if let Some(a) = audience {
        opts.audience = AudienceRule::one(a);
    }
    opts
}

/// The core's answer for `token`: `None` if valid, else the wire code.
pub fn core_answer(keys: &KeySet, token: &str, audience: Option<&str>, now: i64) -> Option<String> {
    match token::verify(token, keys, &options(audience), now) {
        Ok(_) => None,
        Err(e) => Some(e.code().as_str().to_owned()),
    }
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let registry = ed25519(1)?;
    let stranger = ed25519(2)?;
    let public =
        VerifyingKey::from_jwk(registry.verifying_key().jwk()).map_err(|e| VectorError::Build {
            case: "jwks".into(),
            message: e.to_string(),
        })?;
    let mut keys = KeySet::new();
    keys.insert(public);
    let jwks: Jwks = keys.to_jwks();
    let mut out = Vec::new();
    for case in cases(&registry, &stranger)? {
        let found = core_answer(&keys, &case.token, case.audience, NOW);
        let (expected, expect) = match case.expect {
            Expect::Valid => (
                None,
                json!({"valid": true, "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "scopes": ["read:portfolio", "read:transactions"]}),
            ),
            Expect::Refused(code) => (Some(code.to_owned()), json!({"valid": false, "code": code})),
        };
        if found != expected {
            return Err(VectorError::Disagrees {
                case: case.name.into(),
                expected: format!("{expected:?}"),
                found: format!("{found:?}"),
            });
        }
        out.push(json!({
            "name": case.name,
            "rule": case.rule,
            "token": case.token,
            "audience": case.audience,
            "expect": expect,
        }));
    }
    pretty(
        "tokens.json",
        &json!({
            "description": "Agent tokens (`typ agent+jwt`) and what a verifier must answer at `now` with `jwks`, `issuer`, `leeway_secs` and `max_lifetime_secs`; `audience` is who the verifier is (null: it names none). `code` is the wire code of the refusal.",
            "now": NOW,
            "issuer": REGISTRY,
            "leeway_secs": LEEWAY,
            "max_lifetime_secs": MAX_LIFETIME,
            "jwks": jwks,
            "cases": out,
        }),
    )
}
