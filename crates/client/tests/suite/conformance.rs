//! The conformance vectors (`conformance/` at the repository root), as the receiver
//! layer sees them: every file through the layer's public API at each vector's fixed
//! clock ([`Receiver::authenticate_at`]) — tokens, DPoP proofs, message signatures,
//! replays, delegated tokens with push-event revocations, status lists (handed to the
//! receiver with [`StatusLists::offer`], which verifies them as a fetch would) — and
//! the offline verifier and replay cache on their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use bonafide_client::events::RevokedSet;
use bonafide_client::receiver::replay::{ProofNamespace, ReplayCache, ReplayError};
use bonafide_client::receiver::{Config, JwksSource, ProofKind, Receiver, VerifiedAgent};
use bonafide_client::status::{ListKeys, StatusCheck, StatusListConfig, StatusLists};
use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::httpsig;
use bonafide_core::keys::{Jwk, Jwks, VerifyingKey};
use bonafide_core::secevent::Event;
use bonafide_core::status_list::Status;
use serde_json::{Value, json};

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

/// A vector's Unix seconds as a clock reading.
fn at(v: &Value) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(v.as_u64().unwrap())
}

/// Headers from `[name, value]` pairs, in order.
fn header_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

/// An absolute URL as the receiver sees it: its public base URL (the origin) and the
/// request target (path and query; a fragment never reaches a server).
fn split_url(url: &str) -> (String, Uri) {
    let u = reqwest::Url::parse(url).unwrap();
    let target = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    (u.origin().ascii_serialization(), target.parse().unwrap())
}

/// The receiver a file's settings make: the registry's `jwks` and `issuer`, the
/// file's leeway and proof age, `base` as its public URL, agents' keys from `keys`.
async fn receiver_for(v: &Value, base: Option<&str>) -> Receiver {
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let mut config = Config::offline(JwksSource::Static(jwks), v["issuer"].as_str().unwrap());
    if let Some(l) = v["leeway_secs"].as_i64() {
        config.leeway_secs = l;
    }
    if let Some(a) = v["max_age_secs"].as_i64() {
        config.proof_max_age_secs = a;
    }
    if let Some(base) = base {
        config = config.public_base_url(base);
    }
    let keys: std::collections::HashMap<String, Jwk> = match v.get("keys") {
        Some(k) => serde_json::from_value(k.clone()).unwrap(),
        None => Default::default(),
    };
    let config = config
        .agent_key_resolver(move |_agent, keyid| VerifyingKey::from_jwk(keys.get(keyid)?).ok());
    Receiver::new(config).await.unwrap()
}

/// The layer's answer: `Ok(agent)` or the refusal's wire code.
async fn answer(
    r: &Receiver,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    now: SystemTime,
) -> Result<VerifiedAgent, String> {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    r.authenticate_at(&method, uri, headers, now)
        .await
        .map_err(|e| e.code().to_owned())
}

/// Agent tokens (`conformance/tokens.json`) presented to the layer as
/// `Authorization: Bearer`, with the file's verifier settings.
#[tokio::test]
async fn the_receiver_passes_the_conformance_token_vectors() {
    let v = read("tokens.json");
    // The layer has no nesting setting: it uses the core's, which the file states.
    assert_eq!(
        v["max_json_depth"].as_u64(),
        Some(bonafide_core::json::JsonLimits::default().max_depth as u64)
    );
    let now = at(&v["now"]);
    let mut ran = 0;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        // HTTP strips whitespace around a field value (RFC 9110 §5.5): a token with
        // trailing space cannot reach a receiver as such.
        if token.trim() != token {
            assert_eq!(name, "whitespace");
            continue;
        }
        let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
        let mut config = Config::offline(JwksSource::Static(jwks), v["issuer"].as_str().unwrap());
        config.leeway_secs = v["leeway_secs"].as_i64().unwrap();
        config.max_token_ttl_secs = v["max_lifetime_secs"].as_i64().unwrap();
        config.max_token_bytes = usize::try_from(v["max_token_bytes"].as_u64().unwrap()).unwrap();
        if let Some(a) = case["audience"].as_str() {
            config = config.audience(a);
        }
        let r = Receiver::new(config).await.unwrap();
        let h = header_map([("authorization", format!("Bearer {token}").as_str())]);
        let got = answer(&r, "GET", &"/".parse().unwrap(), &h, now).await;
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let agent = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(agent.agent_id.as_str(), expect["sub"], "{name}");
                assert_eq!(json!(agent.scopes), expect["scopes"], "{name}");
                assert!(agent.proof.is_none(), "{name}");
                // `authenticate` reads the system clock, far from the vector's.
                let method = Method::GET;
                let real = r.authenticate(&method, &"/".parse().unwrap(), &h).await;
                let code = real.err().map(|e| e.code().to_owned());
                assert!(
                    matches!(
                        code.as_deref(),
                        Some("TOKEN_NOT_YET_VALID" | "TOKEN_EXPIRED")
                    ),
                    "{name}: {code:?}"
                );
            }
            false => assert_eq!(got.err().as_deref(), expect["code"].as_str(), "{name}"),
        }
        ran += 1;
    }
    assert!(ran > 50, "{ran}");
}

/// DPoP proofs (`conformance/dpop.json`): the file's bound `access_token` as
/// `Authorization: DPoP` and the proof as `DPoP`, on `htm` to `htu`, to a receiver
/// whose public URL is `htu`'s origin; each case to a fresh receiver, and all in
/// order to one (whose key cache is warm after the first valid proof).
#[tokio::test]
async fn the_receiver_passes_the_dpop_vectors() {
    let v = read("dpop.json");
    let now = at(&v["now"]);
    let token = v["access_token"].as_str().unwrap();
    let jkt = v["jkt"].as_str().unwrap();
    let shared = receiver_for(&v, Some("https://api.example")).await;
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (base, uri) = split_url(case["htu"].as_str().unwrap());
        assert_eq!(base, "https://api.example", "{name}");
        let h = header_map([
            ("authorization", format!("DPoP {token}").as_str()),
            ("dpop", case["proof"].as_str().unwrap()),
        ]);
        let fresh = receiver_for(&v, Some(&base)).await;
        for r in [&fresh, &shared] {
            let got = answer(r, case["htm"].as_str().unwrap(), &uri, &h, now).await;
            match case["expect"]["valid"].as_bool().unwrap() {
                true => {
                    let agent = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(agent.proof, Some(ProofKind::Dpop), "{name}");
                    assert_eq!(agent.bound_key.as_deref(), Some(jkt), "{name}");
                }
                false => assert_eq!(
                    got.err().as_deref(),
                    case["expect"]["code"].as_str(),
                    "{name}"
                ),
            }
        }
    }
}

/// A request of `httpsig.json` or `replays.json` with the file's bound token added as
/// `X-Agent-Token` (no signature covers it): method, public base URL, target, headers.
fn signed_request(r: &Value, token: &str) -> (String, String, Uri, HeaderMap) {
    let (base, uri) = split_url(r["url"].as_str().unwrap());
    let pairs = r["headers"].as_array().unwrap();
    let mut h = header_map(
        pairs
            .iter()
            .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap())),
    );
    h.append("x-agent-token", HeaderValue::from_str(token).unwrap());
    (r["method"].as_str().unwrap().to_owned(), base, uri, h)
}

/// HTTP message signatures (`conformance/httpsig.json`): each request, with the
/// file's bound token, to a fresh receiver whose public URL is the request's origin
/// and which finds the agent's key in `keys`.
#[tokio::test]
async fn the_receiver_passes_the_message_signature_vectors() {
    let v = read("httpsig.json");
    // The layer's profile is fixed: the file's settings must be it.
    assert_eq!(v["required_tag"], httpsig::WEB_BOT_AUTH_TAG);
    assert_eq!(v["required_components"], json!(["@authority"]));
    assert_eq!(
        (v["require_expires"].as_bool(), v["require_nonce"].as_bool()),
        (Some(true), Some(true))
    );
    let now = at(&v["now"]);
    let token = v["access_token"].as_str().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (method, base, uri, h) = signed_request(&case["request"], token);
        let r = receiver_for(&v, Some(&base)).await;
        let got = answer(&r, &method, &uri, &h, now).await;
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let agent = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(agent.proof, Some(ProofKind::HttpSignature), "{name}");
                assert_eq!(
                    agent.bound_key.as_deref(),
                    expect["keyid"].as_str(),
                    "{name}"
                );
            }
            false => assert_eq!(got.err().as_deref(), expect["code"].as_str(), "{name}"),
        }
    }
}

/// Replay sequences (`conformance/replays.json`): each sequence to one fresh
/// receiver, step by step at the step's time, DPoP and signed requests alike.
#[tokio::test]
async fn the_receiver_passes_the_replay_sequences() {
    let v = read("replays.json");
    let token = v["access_token"].as_str().unwrap();
    for seq in v["sequences"].as_array().unwrap() {
        let name = &seq["name"];
        let r = receiver_for(&v, Some("https://api.example")).await;
        for step in seq["steps"].as_array().unwrap() {
            let now = at(&step["now"]);
            let got = match step["kind"].as_str().unwrap() {
                "dpop" => {
                    let (base, uri) = split_url(step["htu"].as_str().unwrap());
                    assert_eq!(base, "https://api.example");
                    let h = header_map([
                        ("authorization", format!("DPoP {token}").as_str()),
                        ("dpop", step["proof"].as_str().unwrap()),
                    ]);
                    answer(&r, step["htm"].as_str().unwrap(), &uri, &h, now).await
                }
                "httpsig" => {
                    let (method, base, uri, h) = signed_request(&step["request"], token);
                    assert_eq!(base, "https://api.example");
                    answer(&r, &method, &uri, &h, now).await
                }
                other => panic!("{name}: unknown step kind {other}"),
            };
            assert_eq!(
                got.err().as_deref(),
                step["expect"]["code"].as_str(),
                "{name} at {}",
                step["now"]
            );
        }
    }
}

/// Delegated tokens (`conformance/delegation.json`, `tokens`) through the layer,
/// with the file's revocations and suspensions in its push-event set
/// ([`Config::revoked`]). `exchanges` are the registry's minting rule, not a
/// receiver's (conformance/README.md): they are run by the core's suite.
#[tokio::test]
async fn the_receiver_passes_the_delegated_token_vectors_through_the_layer() {
    let v = read("delegation.json");
    let now = at(&v["now"]);
    for case in v["tokens"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
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
        let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
        let mut config = Config::offline(JwksSource::Static(jwks), v["issuer"].as_str().unwrap())
            .audience(v["audience"].as_str().unwrap());
        config.revoked = Some(set);
        let r = Receiver::new(config).await.unwrap();
        let token = case["token"].as_str().unwrap();
        let h = header_map([("authorization", format!("Bearer {token}").as_str())]);
        let got = answer(&r, "GET", &"/".parse().unwrap(), &h, now).await;
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let agent = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let chain: Vec<&str> = agent.delegation.iter().map(|a| a.as_str()).collect();
                assert_eq!(json!(chain), expect["chain"], "{name}");
                assert_eq!(agent.actor.as_str(), expect["actor"], "{name}");
                assert_eq!(agent.agent_id.as_str(), expect["sub"], "{name}");
            }
            false => assert_eq!(got.err().as_deref(), expect["code"].as_str(), "{name}"),
        }
    }
}

/// A receiver trusting the registry's lists (`status_lists.json`), their keys given
/// (`status_list_jwks`), never fetching within the test (the list URIs are not
/// served: every list is offered).
async fn status_receiver(v: &Value) -> Receiver {
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let issuer = v["issuer"].as_str().unwrap();
    let mut lists = StatusListConfig::for_registry(issuer).min_refetch(Duration::from_secs(3600));
    lists.leeway_secs = v["leeway_secs"].as_i64().unwrap();
    lists.trusted[0].keys =
        ListKeys::Static(serde_json::from_value(v["status_list_jwks"].clone()).unwrap());
    let mut config = Config::offline(JwksSource::Static(jwks), issuer).status_lists(lists);
    config.leeway_secs = v["leeway_secs"].as_i64().unwrap();
    Receiver::new(config).await.unwrap()
}

fn status_name(s: Status) -> Value {
    match s {
        Status::Valid => json!("valid"),
        Status::Invalid => json!("revoked"),
        Status::Suspended => json!("suspended"),
        Status::Other(n) => json!(n),
    }
}

/// Status lists (`conformance/status_lists.json`): each list offered to the
/// receiver's status-list cache at its `uri` (verified as a fetched list is), then
/// each token, its list offered first, through the layer.
#[tokio::test]
async fn the_receiver_passes_the_status_list_vectors() {
    let v = read("status_lists.json");
    let now = at(&v["now"]);
    let now_ms = v["now"].as_i64().unwrap() * 1000;
    let lists = v["lists"].as_array().unwrap();
    for l in lists {
        let name = l["name"].as_str().unwrap();
        let r = status_receiver(&v).await;
        let cache: &StatusLists = r.status_lists().unwrap();
        let got = cache
            .offer(
                l["uri"].as_str().unwrap(),
                l["token"].as_str().unwrap(),
                now_ms,
            )
            .await;
        let expect = &l["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let list = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(json!(list.bits().get()), expect["bits"], "{name}");
                assert_eq!(json!(list.len()), expect["len"], "{name}");
                let statuses: Vec<Value> = (0..list.len())
                    .map(|i| status_name(list.get(i).unwrap()))
                    .collect();
                assert_eq!(json!(statuses), expect["statuses"], "{name}");
            }
            false => {
                let e = got.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(e.code(), "STATUS_LIST_UNAVAILABLE", "{name}");
            }
        }
    }
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let r = status_receiver(&v).await;
        if let Some(served) = case["list"].as_str() {
            let l = lists.iter().find(|l| l["name"] == served).unwrap();
            // Accepted or not, the offer is recorded as a fetch would be.
            let _ = r
                .status_lists()
                .unwrap()
                .offer(
                    l["uri"].as_str().unwrap(),
                    l["token"].as_str().unwrap(),
                    now_ms,
                )
                .await;
        }
        let token = case["token"].as_str().unwrap();
        let h = header_map([("authorization", format!("Bearer {token}").as_str())]);
        let got = answer(&r, "GET", &"/".parse().unwrap(), &h, now).await;
        let expect = &case["expect"];
        match (
            expect["valid"].as_bool().unwrap(),
            expect["status"].as_str(),
        ) {
            (true, Some("valid")) => {
                let agent = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(agent.revocation_checked, "{name}");
                assert!(
                    matches!(agent.status_list, Some(StatusCheck::Valid { .. })),
                    "{name}: {:?}",
                    agent.status_list
                );
            }
            (true, Some("unchecked")) => {
                let agent = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!agent.revocation_checked, "{name}");
                assert_eq!(agent.status_list, Some(StatusCheck::NoStatus), "{name}");
            }
            (true, other) => panic!("{name}: unknown status {other:?}"),
            (false, _) => assert_eq!(got.err().as_deref(), expect["code"].as_str(), "{name}"),
        }
    }
}

/// Receipts (`conformance/receipts.json`) through the client's receipt check
/// (`bonafide_client::receipts`): the signature and claims with the receipt keys,
/// then, where the case has one, the verify request it binds.
#[test]
fn the_client_passes_the_receipt_vectors() {
    use bonafide_client::receipts;
    use bonafide_core::receipt::ReceiptError;
    let v = read("receipts.json");
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let got = receipts::verify(case["receipt"].as_str().unwrap(), &jwks);
        let expect = &case["expect"];
        if !expect["valid"].as_bool().unwrap() {
            assert!(got.is_err(), "{name}: accepted");
            continue;
        }
        let receipt = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            serde_json::to_value(&receipt.claims).unwrap(),
            expect["claims"],
            "{name}"
        );
        let Some(request) = case.get("request") else {
            continue;
        };
        let body = request.to_string();
        match receipt.check_request(body.as_bytes()) {
            Ok(facts) => {
                assert_eq!(expect["request_matches"], true, "{name}");
                assert_eq!(
                    String::from_utf8(facts.canonical()).unwrap(),
                    expect["request_canonical"],
                    "{name}"
                );
                assert_eq!(facts.sha256_hex(), expect["request_sha256"], "{name}");
            }
            Err(ReceiptError::RequestMismatch { found, .. }) => {
                assert_eq!(expect["request_matches"], false, "{name}");
                assert_eq!(found, expect["request_sha256"], "{name}");
            }
            Err(e) => panic!("{name}: {e}"),
        }
    }
}
