//! The conformance vectors (`conformance/` at the repository root), as the receiver
//! layer sees them: its offline verifier, its push-event revocation set and its
//! replay cache, at each vector's fixed clock.

use bonafide_client::events::RevokedSet;
use bonafide_client::receiver::replay::{ProofNamespace, ReplayCache, ReplayError};
use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::httpsig;
use bonafide_core::keys::{Jwk, Jwks, VerifyingKey};
use bonafide_core::secevent::Event;
use serde_json::Value;

fn read(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The receiver layer's offline verifier passes the conformance token vectors
/// (`conformance/tokens.json`).
#[test]
fn the_offline_verifier_passes_the_conformance_token_vectors() {
    let v = read("tokens.json");
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let now = v["now"].as_i64().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let mut verifier =
            bonafide_client::OfflineVerifier::new(&jwks, v["issuer"].as_str().unwrap()).unwrap();
        let opts = verifier.options_mut();
        opts.leeway_secs = v["leeway_secs"].as_i64().unwrap();
        opts.max_lifetime_secs = v["max_lifetime_secs"].as_i64();
        opts.max_token_bytes = usize::try_from(v["max_token_bytes"].as_u64().unwrap()).unwrap();
        opts.json.max_depth = usize::try_from(v["max_json_depth"].as_u64().unwrap()).unwrap();
        if let Some(a) = case["audience"].as_str() {
            opts.audience = bonafide_core::token::AudienceRule::one(a);
        }
        let got = verifier.verify(case["token"].as_str().unwrap(), now);
        let name = &case["name"];
        match case["expect"]["valid"].as_bool().unwrap() {
            true => {
                let t = got.unwrap_or_else(|e| panic!("{name}: {e}")).token;
                assert_eq!(t.claims.sub.as_str(), case["expect"]["sub"], "{name}");
            }
            false => assert_eq!(
                got.err().map(|e| e.code().as_str().to_owned()).as_deref(),
                case["expect"]["code"].as_str(),
                "{name}"
            ),
        }
    }
}

/// Delegated tokens (`conformance/delegation.json`, `tokens`): the offline verifier,
/// then the revocations and suspensions as push events would deliver them.
#[test]
fn the_receiver_passes_the_delegated_token_vectors() {
    let v = read("delegation.json");
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let now = v["now"].as_i64().unwrap();
    for case in v["tokens"].as_array().unwrap() {
        let name = &case["name"];
        let mut verifier =
            bonafide_client::OfflineVerifier::new(&jwks, v["issuer"].as_str().unwrap()).unwrap();
        verifier.options_mut().audience =
            bonafide_core::token::AudienceRule::one(v["audience"].as_str().unwrap());
        let set = RevokedSet::new();
        let each = |member: &str| {
            case[member]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        for jti in each("revoked_jtis") {
            set.apply(&Event::TokenRevoked(jti));
        }
        for a in each("revoked_agents") {
            set.apply(&Event::AgentRevoked(a));
        }
        for a in each("suspended_agents") {
            set.apply(&Event::AgentSuspended(a));
        }
        let got = verifier
            .verify(case["token"].as_str().unwrap(), now)
            .and_then(|verdict| match set.refusal(&verdict.token.claims) {
                Some(e) => Err(e),
                None => Ok(verdict.token.claims),
            });
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let claims = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let chain: Vec<&str> = bonafide_core::delegation::chain(&claims)
                    .iter()
                    .map(|a| a.as_str())
                    .collect();
                assert_eq!(serde_json::json!(chain), expect["chain"], "{name}");
                assert_eq!(
                    bonafide_core::delegation::current_actor(&claims).as_str(),
                    expect["actor"],
                    "{name}"
                );
            }
            false => assert_eq!(
                got.err().map(|e| e.code().as_str()),
                expect["code"].as_str(),
                "{name}"
            ),
        }
    }
}

/// Replay sequences (`conformance/replays.json`) through the receiver's replay
/// cache, each proof checked as the layer checks it.
#[test]
fn the_replay_cache_passes_the_replay_sequences() {
    let v = read("replays.json");
    let token = v["access_token"].as_str().unwrap();
    let jkt = v["jkt"].as_str().unwrap();
    let max_age = v["max_age_secs"].as_i64().unwrap();
    let leeway = v["leeway_secs"].as_i64().unwrap();
    let key_for = |keyid: &str| {
        let jwk: Jwk = serde_json::from_value(v["keys"].get(keyid)?.clone()).ok()?;
        VerifyingKey::from_jwk(&jwk).ok()
    };
    for seq in v["sequences"].as_array().unwrap() {
        let name = &seq["name"];
        let cache = ReplayCache::new(1_000);
        for step in seq["steps"].as_array().unwrap() {
            let now = step["now"].as_i64().unwrap();
            let verified = match step["kind"].as_str().unwrap() {
                "dpop" => {
                    let mut check = ProofCheck::new(
                        step["htm"].as_str().unwrap(),
                        step["htu"].as_str().unwrap(),
                        jkt,
                        token,
                        now,
                    );
                    check.max_age = max_age;
                    check.leeway = leeway;
                    dpop::verify(step["proof"].as_str().unwrap(), &check)
                        .map(|p| (ProofNamespace::Dpop, p.jkt, p.jti, p.replay_until))
                        .ok()
                }
                _ => {
                    let r = &step["request"];
                    let headers: Vec<(String, String)> = r["headers"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| {
                            (
                                p[0].as_str().unwrap().to_owned(),
                                p[1].as_str().unwrap().to_owned(),
                            )
                        })
                        .collect();
                    let msg = httpsig::Message::Request {
                        method: r["method"].as_str().unwrap(),
                        url: r["url"].as_str().unwrap(),
                        headers: &headers,
                    };
                    let mut check = httpsig::Check::web_bot_auth(now);
                    check.max_age = max_age;
                    check.leeway = leeway;
                    check.require_nonce = true;
                    httpsig::verify(&msg, &check, key_for)
                        .map(|s| {
                            let nonce = s.nonce.unwrap_or_default();
                            (
                                ProofNamespace::HttpSignature,
                                s.keyid,
                                nonce,
                                s.replay_until,
                            )
                        })
                        .ok()
                }
            };
            let got = match verified {
                None => Some("PROOF_INVALID"),
                Some((ns, id, unique, until)) => match cache.claim(ns, &id, &unique, until, now) {
                    Ok(()) => None,
                    Err(ReplayError::Replay) => Some("REPLAY"),
                    Err(ReplayError::Full) => panic!("{name}: cache full"),
                },
            };
            assert_eq!(got, step["expect"]["code"].as_str(), "{name} at {now}");
        }
    }
}
