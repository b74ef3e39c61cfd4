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

/// `token` is the access token the proofs accompany (a proof reads only its hash,
/// `ath`; a receiver verifies it first).
fn cases(agent: &SigningKey, other: &SigningKey, token: &str) -> Result<Vec<Case>, VectorError> {
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
        "ath": dpop::access_token_hash(token),
    });
    let wrong_typ = raw_jws(
        agent,
        &typ_header,
        payload.to_string().as_bytes(),
        "wrong_typ",
    )?;
    typ_header["typ"] = json!("dpop+jwt");
    // A proof from its parts, signed by the agent: `header` and `claims` changed by
    // the case.
    let raw = |name: &str,
               h: &dyn Fn(&mut Value),
               c: &dyn Fn(&mut Value)|
     -> Result<String, VectorError> {
        let mut header = typ_header.clone();
        h(&mut header);
        let mut claims = json!({
            "jti": format!("jti-{name}"), "htm": HTM, "htu": HTU, "iat": NOW,
            "ath": dpop::access_token_hash(token),
        });
        c(&mut claims);
        raw_jws(agent, &header, claims.to_string().as_bytes(), name)
    };
    let keep = |_: &mut Value| {};
    let remove = |v: &mut Value, member: &str| {
        if let Some(o) = v.as_object_mut() {
            o.remove(member);
        }
    };
    let mut bad_sig = build("bad_signature", agent, HTM, HTU, NOW, token)?;
    let last = if bad_sig.ends_with('A') { 'B' } else { 'A' };
    bad_sig.pop();
    bad_sig.push(last);
    let private = crate::private_jwk(agent)?;
    let duplicate = {
        let text = format!(
            r#"{{"jti":"jti-duplicate_claim","htm":"GET","htm":"{HTM}","htu":"{HTU}","iat":{NOW},"ath":"{}"}}"#,
            dpop::access_token_hash(token)
        );
        crate::raw_jws_text(agent, &typ_header.to_string(), &text, "duplicate_claim")?
    };
    let case = |name: &'static str, why: Option<&'static str>, proof: String| Case {
        name,
        why,
        proof,
        htm: HTM,
        htu: HTU,
    };
    Ok(vec![
        Case {
            name: "valid",
            why: None,
            proof: build("valid", agent, HTM, HTU, NOW, token)?,
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
                token,
            )?,
            htm: HTM,
            htu: "https://api.example/v1/payments#f",
        },
        Case {
            name: "wrong_method",
            why: Some("`htm` is not the request's method"),
            proof: build("wrong_method", agent, "GET", HTU, NOW, token)?,
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
                token,
            )?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "too_old",
            why: Some("`iat` more than 300 s before now"),
            proof: build("too_old", agent, HTM, HTU, NOW - 301, token)?,
            htm: HTM,
            htu: HTU,
        },
        Case {
            name: "from_the_future",
            why: Some("`iat` more than 60 s after now"),
            proof: build("from_the_future", agent, HTM, HTU, NOW + 61, token)?,
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
            proof: build("other_key", other, HTM, HTU, NOW, token)?,
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
        case(
            "valid_iat_oldest",
            None,
            build("valid_iat_oldest", agent, HTM, HTU, NOW - 300, token)?,
        ),
        case(
            "valid_iat_newest",
            None,
            build("valid_iat_newest", agent, HTM, HTU, NOW + 60, token)?,
        ),
        Case {
            name: "htu_normalized",
            why: None,
            proof: build(
                "htu_normalized",
                agent,
                HTM,
                "HTTPS://API.Example:443/v1/./%70ayments",
                NOW,
                token,
            )?,
            htm: HTM,
            htu: HTU,
        },
        case(
            "htm_lowercase",
            Some("`htm` is compared exactly: `post` is not `POST`"),
            build("htm_lowercase", agent, "post", HTU, NOW, token)?,
        ),
        case(
            "wrong_scheme",
            Some("`htu` has another scheme (http, not https)"),
            build(
                "wrong_scheme",
                agent,
                HTM,
                "http://api.example/v1/payments",
                NOW,
                token,
            )?,
        ),
        case(
            "wrong_host",
            Some("`htu` names another host"),
            build(
                "wrong_host",
                agent,
                HTM,
                "https://evil.example/v1/payments",
                NOW,
                token,
            )?,
        ),
        case(
            "wrong_port",
            Some("`htu` names another port"),
            build(
                "wrong_port",
                agent,
                HTM,
                "https://api.example:8443/v1/payments",
                NOW,
                token,
            )?,
        ),
        case(
            "bad_signature",
            Some("the signature does not verify"),
            bad_sig,
        ),
        case(
            "alg_none",
            Some("`alg` none is never accepted"),
            raw("alg_none", &|h| h["alg"] = json!("none"), &keep)?,
        ),
        case(
            "alg_hs256",
            Some("`alg` HS256 (symmetric) is not allowed"),
            raw("alg_hs256", &|h| h["alg"] = json!("HS256"), &keep)?,
        ),
        case(
            "jwk_missing",
            Some("no `jwk` in the header"),
            raw("jwk_missing", &|h| remove(h, "jwk"), &keep)?,
        ),
        case(
            "jwk_private",
            Some("`jwk` carries the private key (`d`)"),
            raw("jwk_private", &|h| h["jwk"] = private.clone(), &keep)?,
        ),
        case(
            "crit_header",
            Some("a `crit` header"),
            raw("crit_header", &|h| h["crit"] = json!(["htm"]), &keep)?,
        ),
        case(
            "jku_header",
            Some("a key URL (`jku`) in the header"),
            raw(
                "jku_header",
                &|h| h["jku"] = json!("https://agent.example/jwks"),
                &keep,
            )?,
        ),
        case(
            "jti_missing",
            Some("no `jti`"),
            raw("jti_missing", &keep, &|c| remove(c, "jti"))?,
        ),
        case(
            "jti_empty",
            Some("an empty `jti`"),
            raw("jti_empty", &keep, &|c| c["jti"] = json!(""))?,
        ),
        case(
            "iat_missing",
            Some("no `iat`"),
            raw("iat_missing", &keep, &|c| remove(c, "iat"))?,
        ),
        case(
            "iat_string",
            Some("`iat` is a string"),
            raw("iat_string", &keep, &|c| c["iat"] = json!(NOW.to_string()))?,
        ),
        case(
            "ath_missing",
            Some("no `ath`, with an access token presented"),
            raw("ath_missing", &keep, &|c| remove(c, "ath"))?,
        ),
        case(
            "htm_missing",
            Some("no `htm`"),
            raw("htm_missing", &keep, &|c| remove(c, "htm"))?,
        ),
        case(
            "duplicate_claim",
            Some("a claim (`htm`) that appears twice"),
            duplicate,
        ),
        case(
            "not_a_jws",
            Some("not three base64url segments"),
            "not-a-proof".to_owned(),
        ),
    ])
}

/// The core's answer: `None` if accepted, else the error's text.
pub fn core_answer(proof: &str, htm: &str, htu: &str, jkt: &str, token: &str) -> Option<String> {
    let check = ProofCheck::new(htm, htu, jkt, token, NOW);
    dpop::verify(proof, &check).err().map(|e| e.to_string())
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let agent = ed25519(3)?;
    let other = ed25519(4)?;
    let jkt = agent.kid().to_owned();
    let (token, jwks) = crate::bound_token(&jkt, 0xd0, NOW, "dpop access_token")?;
    let mut out = Vec::new();
    for case in cases(&agent, &other, &token)? {
        let found = core_answer(&case.proof, case.htm, case.htu, &jkt, &token);
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
            "description": "DPoP proofs (RFC 9449) presented with `access_token` on a request `htm htu`, for a token bound to `jkt` (`cnf.jkt`), checked at `now`: accepted while `now - max_age_secs <= iat <= now + leeway_secs`. `htm` is compared exactly; `htu` after RFC 3986 §6.2.2–6.2.3 normalisation (scheme and host lowercased, default port dropped, unreserved percent-escapes decoded, dot segments removed), query and fragment ignored. `agent_jwk` is the agent's key (private, Ed25519, RFC 8037), for implementations that make proofs. `access_token` is a real agent token of the registry (`issuer`, `jwks`) bound to `jkt` and valid at `now`, so a receiver can run each case whole: the token as `Authorization: DPoP`, the proof as the `DPoP` header, on a request `htm` to `htu`, its own public URL being `htu`'s origin. Replays are in `replays.json`.",
            "now": NOW,
            "access_token": token,
            "issuer": crate::REGISTRY,
            "jwks": jwks,
            "jkt": jkt,
            "max_age_secs": 300,
            "leeway_secs": 60,
            "agent_jwk": crate::private_jwk(&agent)?,
            "cases": out,
        }),
    )
}
