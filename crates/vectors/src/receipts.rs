//! `receipts.json`: signed decision receipts (`typ receipt+jwt`) with the receipt key
//! set, and whether a verifier must accept them; for some, the verify request they
//! were issued for (or another), and whether the receipt's `request_sha256` matches
//! it.

use bonafide_core::audit::{self, Decision};
use bonafide_core::b64;
use bonafide_core::ids::{AgentId, ReceiptId, TokenId};
use bonafide_core::keys::{SigningKey, VerifyingKey};
use bonafide_core::receipt::{self, ReceiptClaims, RemainingClaim, RequestFacts};
use bonafide_core::token::KeySet;
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty, raw_jws};

fn build<E: std::fmt::Display>(case: &str) -> impl Fn(E) -> VectorError + '_ {
    move |e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    }
}

/// The verify request the allow receipt decided.
fn request() -> Value {
    json!({
        "token": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZ3RfeCJ9.c2lnbmF0dXJl",
        "audience": "https://api.example",
        "scopes_requested": ["read:portfolio", "payments:write"],
        "action": "payments.send",
        "resource": {"type": "merchant", "id": "m-42"},
        "amount": "10",
        "currency": "EUR"
    })
}

fn allow_claims(request: &Value) -> Result<ReceiptClaims, VectorError> {
    let facts =
        RequestFacts::from_request_json(request.to_string().as_bytes()).map_err(build("allow"))?;
    let id = ReceiptId::from_random([0x11; 16]);
    Ok(ReceiptClaims {
        iss: "https://registry.example".into(),
        iat: 1_800_000_000,
        sub: id.clone(),
        receipt_id: id,
        decision: Decision::Allow,
        valid: true,
        reasons: Vec::new(),
        token_sha256: audit::token_sha256(request["token"].as_str().unwrap_or_default()),
        agent_id: Some(AgentId::from_random([0x22; 16])),
        jti: Some(TokenId::from_random([0x33; 16])),
        policy_hash: None,
        request_sha256: facts.sha256_hex(),
        verified_at: "2027-01-15T08:00:00.123Z".into(),
        remaining: Some(RemainingClaim {
            amount: "90.00".into(),
            currency: "EUR".into(),
            period: "day".into(),
            period_ends: "2027-01-16T00:00:00Z".into(),
        }),
        audit_index: Some(42),
        receiver: None,
    })
}

struct Case {
    name: &'static str,
    why: Option<&'static str>,
    receipt: String,
    /// A verify request body, and whether the receipt is for it.
    request: Option<(Value, bool)>,
}

fn cases(key: &SigningKey, other: &SigningKey) -> Result<Vec<Case>, VectorError> {
    let req = request();
    let allow = allow_claims(&req)?;
    let allow_jws = receipt::sign(key, &allow).map_err(build("valid_allow"))?;
    let mut deny = allow.clone();
    deny.decision = Decision::Deny;
    deny.reasons = vec!["SCOPE_NOT_GRANTED".into(), "LIMIT_EXCEEDED".into()];
    deny.remaining = None;
    let header = json!({"alg": "EdDSA", "typ": "receipt+jwt", "kid": key.kid()});
    let claims_json = |c: &ReceiptClaims, name: &str| serde_json::to_value(c).map_err(build(name));
    let with = |name: &str, f: &dyn Fn(&mut Value)| -> Result<String, VectorError> {
        let mut v = claims_json(&allow, name)?;
        f(&mut v);
        raw_jws(key, &header, v.to_string().as_bytes(), name)
    };
    // The payload changed after signing: `decision` deny → allow would need a new
    // signature; here the amount left is raised.
    let tampered = {
        let parts: Vec<&str> = allow_jws.split('.').collect();
        let mut v = claims_json(&allow, "tampered_field")?;
        v["remaining"]["amount"] = json!("9990.00");
        format!(
            "{}.{}.{}",
            parts[0],
            b64::encode(v.to_string().as_bytes()),
            parts[2]
        )
    };
    let mut bad_sig = allow_jws.clone();
    let last = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.pop();
    bad_sig.push(last);
    let mut other_req = req.clone();
    other_req["amount"] = json!("1000");
    Ok(vec![
        Case {
            name: "valid_allow",
            why: None,
            receipt: allow_jws.clone(),
            request: Some((req.clone(), true)),
        },
        Case {
            name: "valid_allow_same_request_other_spelling",
            why: None,
            receipt: allow_jws.clone(),
            request: Some((
                {
                    // `10.00` for `10`, scopes reordered, the token left out: one request.
                    let mut r = req.clone();
                    r["amount"] = json!("10.00");
                    r["scopes_requested"] = json!(["payments:write", "read:portfolio"]);
                    if let Some(o) = r.as_object_mut() {
                        o.remove("token");
                    }
                    r
                },
                true,
            )),
        },
        Case {
            name: "valid_allow_other_request",
            why: None,
            receipt: allow_jws.clone(),
            request: Some((other_req, false)),
        },
        Case {
            name: "valid_deny",
            why: None,
            receipt: receipt::sign(key, &deny).map_err(build("valid_deny"))?,
            request: None,
        },
        Case {
            name: "tampered_field",
            why: Some("a claim (`remaining.amount`) changed after signing"),
            receipt: tampered,
            request: None,
        },
        Case {
            name: "bad_signature",
            why: Some("the signature does not verify"),
            receipt: bad_sig,
            request: None,
        },
        Case {
            name: "wrong_key",
            why: Some("signed by a key the receipt key set does not hold"),
            receipt: receipt::sign(other, &allow).map_err(build("wrong_key"))?,
            request: None,
        },
        Case {
            name: "wrong_key_same_kid",
            why: Some("signed by another key under the receipt key's `kid`"),
            receipt: raw_jws(
                other,
                &header,
                claims_json(&allow, "wrong_key_same_kid")?
                    .to_string()
                    .as_bytes(),
                "wrong_key_same_kid",
            )?,
            request: None,
        },
        Case {
            name: "wrong_typ",
            why: Some("`typ` is `agent+jwt`: not a receipt"),
            receipt: raw_jws(
                key,
                &json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": key.kid()}),
                claims_json(&allow, "wrong_typ")?.to_string().as_bytes(),
                "wrong_typ",
            )?,
            request: None,
        },
        Case {
            name: "sub_not_receipt_id",
            why: Some("`sub` is not the receipt's own `receipt_id`"),
            receipt: with("sub_not_receipt_id", &|v| {
                v["sub"] = json!(ReceiptId::from_random([0x44; 16]).as_str())
            })?,
            request: None,
        },
        Case {
            name: "unknown_claim",
            why: Some("a claim receipts do not have"),
            receipt: with("unknown_claim", &|v| v["extra"] = json!(true))?,
            request: None,
        },
        Case {
            name: "allow_of_invalid_token",
            why: Some("`decision` allow with `valid` false"),
            receipt: with("allow_of_invalid_token", &|v| v["valid"] = json!(false))?,
            request: None,
        },
        Case {
            name: "request_sha256_not_hex",
            why: Some("`request_sha256` is not 64 lowercase hex digits"),
            receipt: with("request_sha256_not_hex", &|v| {
                v["request_sha256"] = json!("A".repeat(64))
            })?,
            request: None,
        },
    ])
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let key = ed25519(8)?;
    let other = ed25519(9)?;
    let mut keys = KeySet::new();
    keys.insert(VerifyingKey::from_jwk(key.verifying_key().jwk()).map_err(build("jwks"))?);
    let mut out = Vec::new();
    for case in cases(&key, &other)? {
        let found = receipt::verify(&case.receipt, &keys);
        if found.is_ok() != case.why.is_none() {
            return Err(VectorError::Disagrees {
                case: case.name.into(),
                expected: format!("{:?}", case.why),
                found: format!("{found:?}"),
            });
        }
        let mut v = json!({"name": case.name, "receipt": case.receipt});
        match (found, case.why) {
            (Ok(claims), None) => {
                let mut expect = json!({
                    "valid": true,
                    "claims": serde_json::to_value(&claims).map_err(build(case.name))?,
                });
                if let Some((request, matches)) = &case.request {
                    let facts = RequestFacts::from_request_json(request.to_string().as_bytes())
                        .map_err(build(case.name))?;
                    let found = receipt::check_request(&claims, &facts).is_ok();
                    if found != *matches {
                        return Err(VectorError::Disagrees {
                            case: case.name.into(),
                            expected: format!("request matches: {matches}"),
                            found: format!("{found}"),
                        });
                    }
                    v["request"] = request.clone();
                    expect["request_canonical"] =
                        json!(String::from_utf8_lossy(&facts.canonical()));
                    expect["request_sha256"] = json!(facts.sha256_hex());
                    expect["request_matches"] = json!(matches);
                }
                v["expect"] = expect;
            }
            (_, why) => v["expect"] = json!({"valid": false, "why": why}),
        }
        out.push(v);
    }
    pretty(
        "receipts.json",
        &json!({
            "description": "Decision receipts of `POST /v1/verify` (`typ receipt+jwt`, compact JWS), verified with `jwks` (the registry's receipt keys, by `kid`; not the token JWKS). A receipt is valid when its header is as for agent tokens (no `crit`, no key material, `alg` the key's) with `typ` receipt+jwt, its signature verifies, and its claims are exactly the receipt members, with `sub` = `receipt_id`, `token_sha256` and `request_sha256` 64 lowercase hex digits, `verified_at` RFC 3339, and no allow with `valid` false. Time is not checked. `expect.claims` is what a valid receipt says. Where a case has `request` (a verify request body), `expect.request_canonical` is its RFC 8785 form as the receipt binds it (`token` and `proof` left out, `amount` with the currency's minor units, scopes sorted and deduplicated), `request_sha256` its lowercase hex SHA-256, and `request_matches` whether the receipt's `request_sha256` equals it. A refusal has no wire code; `why` is for people.",
            "jwks": keys.to_jwks(),
            "cases": out,
        }),
    )
}
