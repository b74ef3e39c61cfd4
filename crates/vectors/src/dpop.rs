//! `dpop.json`: DPoP proofs (RFC 9449) with the request and token they accompany, and
//! whether a verifier must accept them. A refusal is always `PROOF_INVALID`; `why`
//! names the rule, for people.

use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::keys::SigningKey;
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty, raw_jws};

const NOW: i64 = 1_800_000_000;
const HTM: &str = "POST";
const HTU: &str = "https://api.example/v1/payments";
/// The access token the proofs accompany (its content does not matter to the proof,
/// only its hash `ath`).
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZ3RfeCJ9.c2lnbmF0dXJl";

struct Case {
    name: &'static str,
    why: Option<&'static str>,
    proof: String,
    htm: &'static str,
    htu: &'static str,
}

fn build(
    case: &str,
    key: &SigningKey,
    htm: &str,
    htu: &str,
    iat: i64,
    token: &str,
) -> Result<String, VectorError> {
    dpop::sign(key, htm, htu, token, iat, &format!("jti-{case}")).map_err(|e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    })
}

fn cases(agent: &SigningKey, other: &SigningKey) -> Result<Vec<Case>, VectorError> {
    let mut typ_header: Value = json!({
        "typ": "JWT",
        "alg": agent.alg().as_str(),
        "jwk": serde_json::to_value(agent.verifying_key().jwk()).map_err(|e| VectorError::Build {
            case: "wrong_typ".into(),
            message: e.to_string(),
        })?,
    });
    let payload = json!({
        "htm": HTM, "htu": HTU, "iat": NOW, "jti": "jti-wrong_typ",
        "ath": dpop::access_token_hash(TOKEN),
    });
    let wrong_typ = raw_jws(
        agent,
        &typ_header,
        payload.to_string().as_bytes(),
        "wrong_typ",
    )?;
    typ_header["typ"] = json!("dpop+jwt");
    Ok(vec![
        Case {
            name: "valid",
            why: None,
            proof: build("valid", agent, HTM, HTU, NOW, TOKEN)?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "query_and_fragment_ignored",
            why: None,
            proof: build(
                "query",
                agent,
                HTM,
                "https://api.example/v1/payments?x=1",
                NOW,
                TOKEN,
            )?,
            htm: HTM,
            htu: "https://api.example/v1/payments#f",
        },
        Case {
            name: "wrong_method",
            why: Some("`htm` is not the request's method"),
            proof: build("wrong_method", agent, "GET", HTU, NOW, TOKEN)?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "wrong_uri",
            why: Some("`htu` is not the request's URI"),
            proof: build(
                "wrong_uri",
                agent,
                HTM,
                "https://api.example/v1/other",
                NOW,
                TOKEN,
            )?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "too_old",
            why: Some("`iat` more than 300 s before now"),
            proof: build("too_old", agent, HTM, HTU, NOW - 301, TOKEN)?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "from_the_future",
            why: Some("`iat` more than 60 s after now"),
            proof: build("from_the_future", agent, HTM, HTU, NOW + 61, TOKEN)?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "other_token",
            why: Some("`ath` is the hash of another access token"),
            proof: build("other_token", agent, HTM, HTU, NOW, "another.access.token")?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "other_key",
            why: Some("the proof's key is not the one the token is bound to (`cnf.jkt`)"),
            proof: build("other_key", other, HTM, HTU, NOW, TOKEN)?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "wrong_typ",
            why: Some("`typ` is not `dpop+jwt`"),
            proof: wrong_typ,
            htm: HTM,
            htu: HTU,
        },
    ])
}

/// The core's answer: `None` if accepted, else the error's text.
pub fn core_answer(proof: &str, htm: &str, htu: &str, jkt: &str) -> Option<String> {
    let check = ProofCheck::new(htm, htu, jkt, TOKEN, NOW);
    dpop::verify(proof, &check).err().map(|e| e.to_string())
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let agent = ed25519(3)?;
    let other = ed25519(4)?;
    let jkt = agent.kid().to_owned();
    let mut out = Vec::new();
    for case in cases(&agent, &other)? {
        let found = core_answer(&case.proof, case.htm, case.htu, &jkt);
        if found.is_some() != case.why.is_some() {
            return Err(VectorError::Disagrees {
                case: case.name.into(),
                expected: format!("{:?}", case.why),
                found: format!("{found:?}"),
            });
        }
        let expect = match case.why {
            None => json!({"valid": true}),
            Some(why) => json!({"valid": false, "code": "PROOF_INVALID", "why": why}),
        };
        out.push(json!({
            "name": case.name,
            "proof": case.proof,
            "htm": case.htm,
            "htu": case.htu,
            "expect": expect,
        }));
    }
    pretty(
        "dpop.json",
        &json!({
            "description": "DPoP proofs (RFC 9449) presented with `access_token` on a request `htm htu`, for a token bound to `jkt` (`cnf.jkt`), checked at `now` with a 300 s maximum age and 60 s leeway. Replays are the verifier's state, not a vector: a verifier keeps each accepted proof's `jti` until `iat + max_age`.",
            "now": NOW,
            "access_token": TOKEN,
            "jkt": jkt,
            "max_age_secs": 300,
            "leeway_secs": 60,
            "cases": out,
        }),
    )
}
