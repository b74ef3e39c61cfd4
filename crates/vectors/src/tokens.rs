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
const MAX_TOKEN_BYTES: usize = bonafide_core::token::DEFAULT_MAX_TOKEN_BYTES;
const MAX_JSON_DEPTH: usize = 16;

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

fn case(
    name: &'static str,
    rule: &'static str,
    token: String,
    audience: Option<&'static str>,
    expect: Expect,
) -> Case {
    Case {
        name,
        rule,
        token,
        audience,
        expect,
    }
}

fn cases(registry: &SigningKey, stranger: &SigningKey) -> Result<Vec<Case>, VectorError> {
    use Expect::{Refused, Valid};
    let h = header(registry);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        c
    };
    let header_with = |f: &dyn Fn(&mut Value)| {
        let mut v = h.clone();
        f(&mut v);
        v
    };
    let signed = |header: &Value, name: &str| sign(registry, header, &claims(), name);
    let claims_with = |name: &str, f: &dyn Fn(&mut Value)| sign(registry, &h, &with(f), name);
    let valid = sign(registry, &h, &claims(), "valid")?;
    let mut bad_sig = valid.clone();
    // Flip the last signature character to another base64url character.
    let last = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.pop();
    bad_sig.push(last);
    let segments: Vec<&str> = valid.split('.').collect();
    let (h64, p64, s64) = (segments[0], segments[1], segments[2]);
    let jwk = crate::public_jwk(registry)?;
    let kid = registry.kid();
    let claims_text = claims().to_string();
    let duplicate = {
        // The same member twice: strict JSON refuses it, whichever copy a lax parser keeps.
        let dup = claims_text.replacen('{', r#"{"sub":"agt_bbbbbbbbbbbbbbbbbbbbbbbbbb","#, 1);
        raw_jws(registry, &h, dup.as_bytes(), "duplicate_claim")?
    };
    let duplicate_header = crate::raw_jws_text(
        registry,
        &format!(r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{kid}","typ":"JWT"}}"#),
        &claims_text,
        "duplicate_header_member",
    )?;
    // 17 levels of arrays inside the claims object: 18 in all, over the limit of 16.
    let deep = {
        let mut c = claims();
        let mut v = json!(1);
        for _ in 0..17 {
            v = json!([v]);
        }
        c["x"] = v;
        sign(registry, &h, &c, "json_too_deep")?
    };
    let oversized = claims_with("oversized", &|c| {
        c["agent"]["description"] = json!("a".repeat(MAX_TOKEN_BYTES))
    })?;
    Ok(vec![
        case(
            "valid",
            "a registry token within its lifetime, no audience",
            valid.clone(),
            None,
            Valid,
        ),
        case(
            "valid_with_audience",
            "a token naming the verifier in `aud`",
            claims_with("valid_with_audience", &|c| {
                c["aud"] = json!(["https://api.example"])
            })?,
            Some("https://api.example"),
            Valid,
        ),
        case(
            "valid_audience_string",
            "`aud` as one string (RFC 7519 §4.1.3) naming the verifier",
            claims_with("valid_audience_string", &|c| {
                c["aud"] = json!("https://api.example")
            })?,
            Some("https://api.example"),
            Valid,
        ),
        case(
            "valid_typ_media_type",
            "`typ` compared case-insensitively, `application/` prefix optional (RFC 7515 §4.1.9)",
            signed(
                &header_with(&|v| v["typ"] = json!("application/AGENT+JWT")),
                "valid_typ_media_type",
            )?,
            None,
            Valid,
        ),
        case(
            "valid_expiry_within_leeway",
            "`exp` one second after now minus the leeway",
            claims_with("valid_expiry_within_leeway", &|c| {
                c["iat"] = json!(NOW - 700);
                c["exp"] = json!(NOW - LEEWAY + 1);
            })?,
            None,
            Valid,
        ),
        case(
            "valid_nbf_within_leeway",
            "`nbf` exactly now plus the leeway",
            claims_with("valid_nbf_within_leeway", &|c| {
                c["nbf"] = json!(NOW + LEEWAY)
            })?,
            None,
            Valid,
        ),
        case(
            "valid_lifetime_at_maximum",
            "`exp` minus `iat` exactly the verifier's maximum lifetime",
            claims_with("valid_lifetime_at_maximum", &|c| {
                c["exp"] = json!(NOW - 10 + MAX_LIFETIME)
            })?,
            None,
            Valid,
        ),
        case(
            "valid_unknown_claim_ignored",
            "a claim the verifier does not know is ignored",
            claims_with("valid_unknown_claim_ignored", &|c| {
                c["x-extra"] = json!({"any": [1, 2]})
            })?,
            None,
            Valid,
        ),
        case(
            "valid_json_depth_at_limit",
            "claims nested exactly `max_json_depth` deep (the object, then 15 arrays)",
            {
                let mut c = claims();
                let mut v = json!(1);
                for _ in 0..15 {
                    v = json!([v]);
                }
                c["x"] = v;
                sign(registry, &h, &c, "valid_json_depth_at_limit")?
            },
            None,
            Valid,
        ),
        case(
            "expired",
            "`exp` at or before now minus the leeway",
            claims_with("expired", &|c| {
                c["iat"] = json!(NOW - 700);
                c["exp"] = json!(NOW - LEEWAY);
            })?,
            None,
            Refused("TOKEN_EXPIRED"),
        ),
        case(
            "not_yet_valid",
            "`nbf` after now plus the leeway",
            claims_with("not_yet_valid", &|c| c["nbf"] = json!(NOW + LEEWAY + 1))?,
            None,
            Refused("TOKEN_NOT_YET_VALID"),
        ),
        case(
            "iat_in_future",
            "`iat` after now plus the leeway (no `nbf`)",
            claims_with("iat_in_future", &|c| {
                c["iat"] = json!(NOW + LEEWAY + 1);
                c["exp"] = json!(NOW + 600);
            })?,
            None,
            Refused("TOKEN_NOT_YET_VALID"),
        ),
        case(
            "other_issuer",
            "`iss` is not the registry",
            claims_with("other_issuer", &|c| {
                c["iss"] = json!("https://evil.example")
            })?,
            None,
            Refused("ISSUER_UNKNOWN"),
        ),
        case(
            "audience_mismatch",
            "`aud` does not name the verifier",
            claims_with("audience_mismatch", &|c| {
                c["aud"] = json!(["https://other.example"])
            })?,
            Some("https://api.example"),
            Refused("AUDIENCE_MISMATCH"),
        ),
        case(
            "audience_unnamed",
            "a token with `aud` and a verifier that names no audience",
            claims_with("audience_unnamed", &|c| {
                c["aud"] = json!(["https://api.example"])
            })?,
            None,
            Refused("AUDIENCE_MISMATCH"),
        ),
        case(
            "lifetime_too_long",
            "`exp` minus `iat` beyond the verifier's maximum lifetime",
            claims_with("lifetime_too_long", &|c| {
                c["exp"] = json!(NOW - 10 + MAX_LIFETIME + 1)
            })?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "exp_not_after_iat",
            "`exp` not after `iat`",
            claims_with("exp_not_after_iat", &|c| {
                c["iat"] = json!(NOW);
                c["exp"] = json!(NOW);
            })?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "bad_signature",
            "the signature does not verify",
            bad_sig,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "empty_signature",
            "an empty signature segment",
            format!("{h64}.{p64}."),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "unknown_key",
            "signed by a key the JWKS does not hold",
            sign(stranger, &header(stranger), &claims(), "unknown_key")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "kid_of_another_key",
            "signed by another key under the registry key's `kid`",
            sign(stranger, &h, &claims(), "kid_of_another_key")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "alg_none",
            "`alg` none is never accepted",
            signed(&header_with(&|v| v["alg"] = json!("none")), "alg_none")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "alg_none_unsigned",
            "`alg` none with an empty signature (RFC 7519 §6.1 unsecured JWT)",
            format!(
                "{}.{p64}.",
                bonafide_core::b64::encode(
                    header_with(&|v| v["alg"] = json!("none"))
                        .to_string()
                        .as_bytes()
                )
            ),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "alg_hs256",
            "`alg` HS256 (a MAC keyed with the public key) is not allowed",
            signed(&header_with(&|v| v["alg"] = json!("HS256")), "alg_hs256")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "alg_not_the_keys",
            "`alg` ES256 for an Ed25519 (EdDSA) key: the key decides the algorithm",
            signed(
                &header_with(&|v| v["alg"] = json!("ES256")),
                "alg_not_the_keys",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "alg_missing",
            "no `alg`",
            signed(
                &header_with(&|v| {
                    v.as_object_mut().map(|o| o.remove("alg"));
                }),
                "alg_missing",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "kid_missing",
            "no `kid`",
            signed(
                &header_with(&|v| {
                    v.as_object_mut().map(|o| o.remove("kid"));
                }),
                "kid_missing",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "kid_empty",
            "an empty `kid`",
            signed(&header_with(&|v| v["kid"] = json!("")), "kid_empty")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "kid_not_string",
            "`kid` is a number",
            signed(&header_with(&|v| v["kid"] = json!(7)), "kid_not_string")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "wrong_typ",
            "`typ` is not `agent+jwt`",
            signed(&header_with(&|v| v["typ"] = json!("JWT")), "wrong_typ")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "typ_missing",
            "no `typ` (explicit typing is required, RFC 8725 §3.11)",
            signed(
                &header_with(&|v| {
                    v.as_object_mut().map(|o| o.remove("typ"));
                }),
                "typ_missing",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "crit_header",
            "a `crit` header: no extension is understood (RFC 7515 §4.1.11)",
            signed(&header_with(&|v| v["crit"] = json!(["exp"])), "crit_header")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "b64_header",
            "`b64` (RFC 7797) would change what the signature covers",
            signed(&header_with(&|v| v["b64"] = json!(true)), "b64_header")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "forbidden_jwk_header",
            "a key carried in the header (`jwk`) is refused, whatever it is",
            signed(
                &header_with(&|v| v["jwk"] = jwk.clone()),
                "forbidden_jwk_header",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "forbidden_jku_header",
            "a key URL in the header (`jku`) is refused",
            signed(
                &header_with(&|v| {
                    v["jku"] = json!("https://registry.example/.well-known/jwks.json")
                }),
                "forbidden_jku_header",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "forbidden_x5c_header",
            "a certificate chain in the header (`x5c`) is refused",
            signed(
                &header_with(&|v| v["x5c"] = json!(["MIIB"])),
                "forbidden_x5c_header",
            )?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "duplicate_header_member",
            "a header member that appears twice",
            duplicate_header,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "duplicate_claim",
            "a claim that appears twice",
            duplicate,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "json_too_deep",
            "claims nested deeper than `max_json_depth`",
            deep,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "claim_missing",
            "a required claim (`jti`) is absent",
            claims_with("claim_missing", &|c| {
                c.as_object_mut().map(|o| o.remove("jti"));
            })?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "claim_wrong_type",
            "`exp` is a string",
            claims_with("claim_wrong_type", &|c| {
                c["exp"] = json!((NOW + 600).to_string())
            })?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "scope_not_agent_scopes",
            "`scope` names other scopes than `agent.scopes`",
            claims_with("scope_not_agent_scopes", &|c| {
                c["scope"] = json!("read:portfolio write:payments")
            })?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "policy_without_hash",
            "`policy` without `policy_hash`",
            claims_with("policy_without_hash", &|c| {
                c["policy"] = json!({"version": "pol.v0.2", "actions": ["read"]})
            })?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "claims_not_object",
            "the payload is a JSON array",
            raw_jws(registry, &h, b"[1,2]", "claims_not_object")?,
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "header_not_json",
            "the header segment is not JSON",
            format!("{}.{p64}.{s64}", bonafide_core::b64::encode(b"alg=EdDSA")),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "two_segments",
            "two segments",
            format!("{h64}.{p64}"),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "four_segments",
            "four segments",
            format!("{valid}.{s64}"),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "empty_header",
            "an empty header segment",
            format!(".{p64}.{s64}"),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "base64_padding",
            "`=` padding is not base64url (RFC 7515 §2)",
            format!("{h64}=.{p64}.{s64}"),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "base64_standard_alphabet",
            "`+` or `/` (the standard alphabet) is not base64url",
            format!(
                "{}.{p64}.{s64}",
                h64.replacen(|c: char| c.is_ascii_alphanumeric(), "+", 1)
            ),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "whitespace",
            "a token with a trailing space",
            format!("{valid} "),
            None,
            Refused("TOKEN_INVALID"),
        ),
        case(
            "oversized",
            "longer than `max_token_bytes`",
            oversized,
            None,
            Refused("TOKEN_INVALID"),
        ),
    ])
}

/// The verifier settings a case runs with.
pub fn options(audience: Option<&str>) -> VerifyOptions {
    let mut opts = VerifyOptions::for_issuer(REGISTRY);
    opts.leeway_secs = LEEWAY;
    opts.max_lifetime_secs = Some(MAX_LIFETIME);
    opts.max_token_bytes = MAX_TOKEN_BYTES;
    opts.json.max_depth = MAX_JSON_DEPTH;
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
            "description": "Agent tokens (`typ agent+jwt`) and what a verifier must answer at `now` with `jwks`, `issuer`, `leeway_secs`, `max_lifetime_secs`, `max_token_bytes` and `max_json_depth` (arrays and objects nested at most this deep, the claims object counting as 1); `audience` is who the verifier is (null: it names none). `code` is the wire code of the refusal; `rule` says why, for people.",
            "now": NOW,
            "issuer": REGISTRY,
            "leeway_secs": LEEWAY,
            "max_lifetime_secs": MAX_LIFETIME,
            "max_token_bytes": MAX_TOKEN_BYTES,
            "max_json_depth": MAX_JSON_DEPTH,
            "jwks": jwks,
            "cases": out,
        }),
    )
}
