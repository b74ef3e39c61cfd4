//! `replays.json`: sequences of proofs presented to one verifier, in order, each at
//! its own time: a DPoP `jti` or a message-signature `nonce` used again within its
//! window is refused with `REPLAY`. The core checks each proof; remembering them is
//! the verifier's (here a map from (namespace, key, id) to `replay_until`, as the
//! receiver's replay cache does).

use std::collections::HashMap;

use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::httpsig::{self, Message, SignParams};
use bonafide_core::keys::{SigningKey, VerifyingKey};
use serde_json::{Value, json};

use crate::{VectorError, VectorFile, ed25519, pretty};

const NOW: i64 = 1_800_000_000;
const HTM: &str = "POST";
const HTU: &str = "https://api.example/v1/payments";
const URL: &str = "https://api.example/v1/payments";

/// What one step presents.
enum Proof {
    Dpop { proof: String, htm: &'static str },
    Sig { headers: Vec<(String, String)> },
}

struct Step {
    at: i64,
    proof: Proof,
    /// `None`: accepted; else the wire code.
    expect: Option<&'static str>,
}

struct Sequence {
    name: &'static str,
    rule: &'static str,
    steps: Vec<Step>,
}

fn dpop_proof(
    key: &SigningKey,
    token: &str,
    iat: i64,
    jti: &str,
    htm: &str,
) -> Result<String, VectorError> {
    dpop::sign(key, htm, HTU, token, iat, jti).map_err(|e| VectorError::Build {
        case: jti.to_owned(),
        message: e.to_string(),
    })
}

fn signed(
    key: &SigningKey,
    created: i64,
    nonce: &str,
) -> Result<Vec<(String, String)>, VectorError> {
    let mut headers = vec![("Host".to_owned(), "api.example".to_owned())];
    let out = httpsig::sign(
        key,
        &Message::Request {
            method: "POST",
            url: URL,
            headers: &headers,
        },
        &["@method", "@authority", "@path"],
        &SignParams {
            label: "sig1",
            created,
            expires: Some(created + 300),
            keyid: None,
            nonce: Some(nonce),
            tag: Some(httpsig::WEB_BOT_AUTH_TAG),
            include_alg: false,
        },
    )
    .map_err(|e| VectorError::Build {
        case: nonce.to_owned(),
        message: e.to_string(),
    })?;
    headers.push(("Signature-Input".into(), out.signature_input));
    headers.push(("Signature".into(), out.signature));
    Ok(headers)
}

fn sequences(agent: &SigningKey, token: &str) -> Result<Vec<Sequence>, VectorError> {
    let d = |at, proof: &String, expect| Step {
        at,
        proof: Proof::Dpop {
            proof: proof.clone(),
            htm: HTM,
        },
        expect,
    };
    let s = |at, headers: &Vec<(String, String)>, expect| Step {
        at,
        proof: Proof::Sig {
            headers: headers.clone(),
        },
        expect,
    };
    let once = dpop_proof(agent, token, NOW, "jti-once", HTM)?;
    let a = dpop_proof(agent, token, NOW, "jti-a", HTM)?;
    let b = dpop_proof(agent, token, NOW, "jti-b", HTM)?;
    let same_jti_first = dpop_proof(agent, token, NOW, "jti-same", HTM)?;
    let same_jti_later = dpop_proof(agent, token, NOW + 5, "jti-same", HTM)?;
    let late = dpop_proof(agent, token, NOW, "jti-late", HTM)?;
    let wrong_method = dpop_proof(agent, token, NOW, "jti-refused-first", "GET")?;
    let right_method = dpop_proof(agent, token, NOW, "jti-refused-first", HTM)?;
    let shared_dpop = dpop_proof(agent, token, NOW, "shared-id", HTM)?;
    let sig_once = signed(agent, NOW - 5, "n-once")?;
    let sig_same_first = signed(agent, NOW - 5, "n-same")?;
    let sig_same_later = signed(agent, NOW, "n-same")?;
    let sig_a = signed(agent, NOW - 5, "n-a")?;
    let sig_b = signed(agent, NOW - 5, "n-b")?;
    let sig_shared = signed(agent, NOW - 5, "shared-id")?;
    let sig_late = signed(agent, NOW - 5, "n-late")?;
    Ok(vec![
        Sequence {
            name: "dpop_same_proof_twice",
            rule: "the same DPoP proof presented twice: the second is a replay",
            steps: vec![d(NOW, &once, None), d(NOW + 1, &once, Some("REPLAY"))],
        },
        Sequence {
            name: "dpop_same_jti_new_proof",
            rule: "a new proof (another `iat`, another signature) with a `jti` already used: a replay (the key is (jkt, jti), never the proof text)",
            steps: vec![
                d(NOW, &same_jti_first, None),
                d(NOW + 5, &same_jti_later, Some("REPLAY")),
            ],
        },
        Sequence {
            name: "dpop_distinct_jtis",
            rule: "two proofs with different `jti`s are both accepted",
            steps: vec![d(NOW, &a, None), d(NOW + 1, &b, None)],
        },
        Sequence {
            name: "dpop_again_after_its_window",
            rule: "after `replay_until` (iat + max_age) the proof is refused as too old, not as a replay",
            steps: vec![
                d(NOW, &late, None),
                d(NOW + 300, &late, Some("REPLAY")),
                d(NOW + 301, &late, Some("PROOF_INVALID")),
            ],
        },
        Sequence {
            name: "dpop_refused_proof_is_not_remembered",
            rule: "a proof that fails verification does not use up its `jti`",
            steps: vec![
                d(NOW, &wrong_method, Some("PROOF_INVALID")),
                d(NOW + 1, &right_method, None),
            ],
        },
        Sequence {
            name: "signature_same_request_twice",
            rule: "the same signed request twice: the second is a replay",
            steps: vec![
                s(NOW, &sig_once, None),
                s(NOW + 1, &sig_once, Some("REPLAY")),
            ],
        },
        Sequence {
            name: "signature_same_nonce_new_signature",
            rule: "a new signature (another `created`) with a `nonce` already used by the same `keyid`: a replay",
            steps: vec![
                s(NOW, &sig_same_first, None),
                s(NOW + 1, &sig_same_later, Some("REPLAY")),
            ],
        },
        Sequence {
            name: "signature_distinct_nonces",
            rule: "two signatures with different nonces are both accepted",
            steps: vec![s(NOW, &sig_a, None), s(NOW + 1, &sig_b, None)],
        },
        Sequence {
            name: "signature_again_after_its_window",
            rule: "after `replay_until` (min(created + max_age, expires) + leeway) the signature is refused as too old, not as a replay",
            steps: vec![
                s(NOW, &sig_late, None),
                s(NOW - 5 + 300 + 60, &sig_late, Some("REPLAY")),
                s(NOW - 5 + 300 + 61, &sig_late, Some("PROOF_INVALID")),
            ],
        },
        Sequence {
            name: "dpop_jti_and_signature_nonce_apart",
            rule: "a DPoP `jti` and a signature `nonce` of the same value and key are remembered apart: both accepted",
            steps: vec![d(NOW, &shared_dpop, None), s(NOW + 1, &sig_shared, None)],
        },
    ])
}

/// The core's answer for one step: `Ok((namespace, key, id, replay_until))` if the
/// proof verifies, else the wire code.
fn verify_step(
    token: &str,
    proof: &Proof,
    jkt: &str,
    key: &VerifyingKey,
    at: i64,
) -> Result<(&'static str, String, String, i64), &'static str> {
    match proof {
        Proof::Dpop { proof, htm } => {
            let check = ProofCheck::new(htm, HTU, jkt, token, at);
            let v = dpop::verify(proof, &check).map_err(|e| e.code())?;
            Ok(("dpop", v.jkt, v.jti, v.replay_until))
        }
        Proof::Sig { headers } => {
            let msg = Message::Request {
                method: "POST",
                url: URL,
                headers,
            };
            let mut check = httpsig::Check::web_bot_auth(at);
            check.require_nonce = true;
            let v = httpsig::verify(&msg, &check, |k| {
                (k == jkt)
                    .then(|| VerifyingKey::from_jwk(key.jwk()).ok())
                    .flatten()
            })
            .map_err(|_| "PROOF_INVALID")?;
            Ok((
                "httpsig",
                v.keyid,
                v.nonce.unwrap_or_default(),
                v.replay_until,
            ))
        }
    }
}

pub(crate) fn file() -> Result<VectorFile, VectorError> {
    let agent = ed25519(7)?;
    let jkt = agent.kid().to_owned();
    let public = agent.verifying_key();
    let mut out = Vec::new();
    let (token, jwks) = crate::bound_token(&jkt, 0xd1, NOW, "replays access_token")?;
    for seq in sequences(&agent, &token)? {
        // The verifier's memory: (namespace, key, id) → last second it is kept.
        let mut seen: HashMap<(&str, String, String), i64> = HashMap::new();
        let mut steps = Vec::new();
        for (i, step) in seq.steps.iter().enumerate() {
            let found = match verify_step(&token, &step.proof, &jkt, public, step.at) {
                Err(code) => Some(code),
                Ok((ns, key, id, until)) => {
                    let k = (ns, key, id);
                    match seen.get(&k) {
                        Some(&kept) if step.at <= kept => Some("REPLAY"),
                        _ => {
                            seen.insert(k, until);
                            None
                        }
                    }
                }
            };
            if found != step.expect {
                return Err(VectorError::Disagrees {
                    case: format!("{} step {i}", seq.name),
                    expected: format!("{:?}", step.expect),
                    found: format!("{found:?}"),
                });
            }
            let expect = match step.expect {
                None => json!({"valid": true}),
                Some(code) => json!({"valid": false, "code": code}),
            };
            let mut v = match &step.proof {
                Proof::Dpop { proof, htm } => json!({
                    "kind": "dpop",
                    "proof": proof,
                    "htm": htm,
                    "htu": HTU,
                }),
                Proof::Sig { headers } => {
                    let hs: Vec<Value> = headers.iter().map(|(n, v)| json!([n, v])).collect();
                    json!({
                        "kind": "httpsig",
                        "request": {"method": "POST", "url": URL, "headers": hs},
                    })
                }
            };
            v["now"] = json!(step.at);
            v["expect"] = expect;
            steps.push(v);
        }
        out.push(json!({"name": seq.name, "rule": seq.rule, "steps": steps}));
    }
    let mut keys = serde_json::Map::new();
    keys.insert(jkt.clone(), crate::public_jwk(&agent)?);
    pretty(
        "replays.json",
        &json!({
            "description": "Sequences of proofs presented to one fresh verifier, in order, each at its own `now`. Each step is checked as in `dpop.json` (`kind` dpop: the proof with `htm`, `htu`, `access_token`, bound to `jkt`) or `httpsig.json` (`kind` httpsig: the signed `request`, the key from `keys` by `keyid`), with the same settings (max age 300 s, leeway 60 s, nonce required). A proof that verifies is then looked up in the verifier's memory: DPoP by (`jkt`, `jti`), signatures by (`keyid`, `nonce`), the two kept apart. Seen and still within its `replay_until` (inclusive): refused with `REPLAY`. Otherwise accepted and remembered until its `replay_until` (DPoP: iat + max_age; signature: min(created + max_age, expires) + leeway). A refused proof is not remembered. Every sequence starts with an empty memory. `access_token` is a real agent token of the registry (`issuer`, `jwks`) bound to `jkt`, valid at every step's `now`: a receiver presents it with each proof (`Authorization: DPoP` with the `DPoP` header, or beside the signed request's headers, as `X-Agent-Token`).",
            "access_token": token,
            "issuer": crate::REGISTRY,
            "jwks": jwks,
            "jkt": jkt,
            "max_age_secs": 300,
            "leeway_secs": 60,
            "keys": keys,
            "agent_jwk": crate::private_jwk(&agent)?,
            "sequences": out,
        }),
    )
}
