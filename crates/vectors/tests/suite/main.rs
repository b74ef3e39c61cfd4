//! The checked-in vectors are what the generator makes, and the core passes them,
//! read back from the files (so an edit to a file, not only to the generator, is
//! caught).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::httpsig;
use bonafide_core::keys::{Jwk, Jwks, VerifyingKey};
use bonafide_core::token::{self, AudienceRule, KeySet, VerifyOptions};
use serde_json::Value;

fn read(name: &str) -> Value {
    let path = bonafide_vectors::repo_root().join("conformance").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn the_checked_in_vectors_are_what_the_generator_makes() {
    let dir = bonafide_vectors::repo_root().join("conformance");
    let generated = bonafide_vectors::generate().unwrap();
    for file in &generated {
        let on_disk = std::fs::read_to_string(dir.join(&file.path)).unwrap_or_default();
        assert!(
            on_disk == file.text,
            "conformance/{} differs from the generator's output: run `cargo run -p bonafide-vectors --bin gen-vectors`",
            file.path
        );
    }
    // No stray file the generator no longer makes.
    let made: BTreeSet<String> = generated.iter().map(|f| f.path.clone()).collect();
    let mut found = BTreeSet::new();
    for entry in walk(&dir) {
        let rel = entry
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.ends_with(".json") {
            found.insert(rel);
        }
    }
    assert_eq!(
        found, made,
        "files under conformance/ the generator does not make"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn the_core_passes_the_token_vectors() {
    let v = read("tokens.json");
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let keys = KeySet::from_jwks(&jwks).unwrap();
    let now = v["now"].as_i64().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let mut opts = VerifyOptions::for_issuer(v["issuer"].as_str().unwrap());
        opts.leeway_secs = v["leeway_secs"].as_i64().unwrap();
        opts.max_lifetime_secs = v["max_lifetime_secs"].as_i64();
        opts.max_token_bytes = v["max_token_bytes"].as_u64().unwrap() as usize;
        opts.json.max_depth = v["max_json_depth"].as_u64().unwrap() as usize;
        if let Some(a) = case["audience"].as_str() {
            opts.audience = AudienceRule::one(a);
        }
        let got = token::verify(case["token"].as_str().unwrap(), &keys, &opts, now);
        let name = &case["name"];
        match case["expect"]["valid"].as_bool().unwrap() {
            true => {
                let t = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(t.claims.sub.as_str(), case["expect"]["sub"], "{name}");
                assert_eq!(
                    serde_json::to_value(&t.claims.agent.scopes).unwrap(),
                    case["expect"]["scopes"],
                    "{name}"
                );
            }
            false => {
                let e = got.err().unwrap_or_else(|| panic!("{name}: accepted"));
                assert_eq!(e.code().as_str(), case["expect"]["code"], "{name}");
            }
        }
    }
}

#[test]
fn the_core_passes_the_dpop_vectors() {
    let v = read("dpop.json");
    let now = v["now"].as_i64().unwrap();
    let token = v["access_token"].as_str().unwrap();
    let jkt = v["jkt"].as_str().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let mut check = ProofCheck::new(
            case["htm"].as_str().unwrap(),
            case["htu"].as_str().unwrap(),
            jkt,
            token,
            now,
        );
        check.max_age = v["max_age_secs"].as_i64().unwrap();
        check.leeway = v["leeway_secs"].as_i64().unwrap();
        let got = dpop::verify(case["proof"].as_str().unwrap(), &check);
        let name = &case["name"];
        assert_eq!(
            got.is_ok(),
            case["expect"]["valid"].as_bool().unwrap(),
            "{name}: {got:?}"
        );
        if let Err(e) = got {
            assert_eq!(e.code(), case["expect"]["code"], "{name}");
        }
    }
}

/// A request of `httpsig.json` or `replays.json`: method, URL and headers.
fn request(r: &Value) -> (String, String, Vec<(String, String)>) {
    let headers = r["headers"]
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
    (
        r["method"].as_str().unwrap().to_owned(),
        r["url"].as_str().unwrap().to_owned(),
        headers,
    )
}

/// The verifier settings of `httpsig.json`.
fn httpsig_check(v: &Value, now: i64) -> httpsig::Check<'static> {
    assert_eq!(v["required_tag"], httpsig::WEB_BOT_AUTH_TAG);
    assert_eq!(v["required_components"], serde_json::json!(["@authority"]));
    let mut check = httpsig::Check::web_bot_auth(now);
    check.leeway = v["leeway_secs"].as_i64().unwrap();
    check.max_age = v["max_age_secs"].as_i64().unwrap();
    check.require_expires = v["require_expires"].as_bool().unwrap();
    check.require_nonce = v["require_nonce"].as_bool().unwrap();
    check
}

fn keys_by_id(v: &Value) -> impl Fn(&str) -> Option<VerifyingKey> + '_ {
    move |keyid: &str| {
        let jwk: Jwk = serde_json::from_value(v["keys"].get(keyid)?.clone()).ok()?;
        VerifyingKey::from_jwk(&jwk).ok()
    }
}

#[test]
fn the_core_passes_the_message_signature_vectors() {
    let v = read("httpsig.json");
    let now = v["now"].as_i64().unwrap();
    let check = httpsig_check(&v, now);
    for case in v["cases"].as_array().unwrap() {
        let name = &case["name"];
        let (method, url, headers) = request(&case["request"]);
        let msg = httpsig::Message::Request {
            method: &method,
            url: &url,
            headers: &headers,
        };
        let got = httpsig::verify(&msg, &check, keys_by_id(&v));
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(got.keyid, expect["keyid"], "{name}");
                assert_eq!(got.created, expect["created"], "{name}");
                assert_eq!(got.nonce.as_deref(), expect["nonce"].as_str(), "{name}");
                assert_eq!(
                    serde_json::to_value(&got.covered).unwrap(),
                    expect["covered"],
                    "{name}"
                );
                assert_eq!(got.replay_until, expect["replay_until"], "{name}");
                assert_eq!(
                    httpsig::signature_base(&msg, &got.label).unwrap(),
                    expect["signature_base"].as_str().unwrap(),
                    "{name}"
                );
            }
            false => {
                assert!(got.is_err(), "{name}: accepted");
                assert_eq!(expect["code"], "PROOF_INVALID", "{name}");
            }
        }
    }
}

#[test]
fn the_core_passes_the_replay_sequences() {
    let v = read("replays.json");
    let token = v["access_token"].as_str().unwrap();
    let jkt = v["jkt"].as_str().unwrap();
    for seq in v["sequences"].as_array().unwrap() {
        let name = &seq["name"];
        // The verifier's memory: (kind, key, id) → last second it is kept.
        let mut seen: std::collections::HashMap<(String, String, String), i64> = Default::default();
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
                    check.max_age = v["max_age_secs"].as_i64().unwrap();
                    check.leeway = v["leeway_secs"].as_i64().unwrap();
                    dpop::verify(step["proof"].as_str().unwrap(), &check)
                        .map(|p| ("dpop", p.jkt, p.jti, p.replay_until))
                        .map_err(|e| e.code())
                }
                _ => {
                    let (method, url, headers) = request(&step["request"]);
                    let msg = httpsig::Message::Request {
                        method: &method,
                        url: &url,
                        headers: &headers,
                    };
                    let mut check = httpsig::Check::web_bot_auth(now);
                    check.max_age = v["max_age_secs"].as_i64().unwrap();
                    check.leeway = v["leeway_secs"].as_i64().unwrap();
                    check.require_nonce = true;
                    httpsig::verify(&msg, &check, keys_by_id(&v))
                        .map(|s| ("httpsig", s.keyid, s.nonce.unwrap(), s.replay_until))
                        .map_err(|_| "PROOF_INVALID")
                }
            };
            let got = match verified {
                Err(code) => Some(code),
                Ok((kind, key, id, until)) => {
                    let k = (kind.to_owned(), key, id);
                    match seen.get(&k) {
                        Some(&kept) if now <= kept => Some("REPLAY"),
                        _ => {
                            seen.insert(k, until);
                            None
                        }
                    }
                }
            };
            assert_eq!(got, step["expect"]["code"].as_str(), "{name} at {now}");
            assert_eq!(got.is_none(), step["expect"]["valid"].as_bool().unwrap());
        }
    }
}

#[test]
fn the_core_passes_the_receipt_vectors() {
    use bonafide_core::receipt::{self, RequestFacts};
    let v = read("receipts.json");
    let jwks: Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let keys = KeySet::from_jwks(&jwks).unwrap();
    for case in v["cases"].as_array().unwrap() {
        let name = &case["name"];
        let got = receipt::verify(case["receipt"].as_str().unwrap(), &keys);
        let expect = &case["expect"];
        if !expect["valid"].as_bool().unwrap() {
            assert!(got.is_err(), "{name}: accepted");
            continue;
        }
        let claims = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            serde_json::to_value(&claims).unwrap(),
            expect["claims"],
            "{name}"
        );
        if let Some(request) = case.get("request") {
            let facts = RequestFacts::from_request_json(request.to_string().as_bytes()).unwrap();
            assert_eq!(
                String::from_utf8(facts.canonical()).unwrap(),
                expect["request_canonical"].as_str().unwrap(),
                "{name}"
            );
            assert_eq!(facts.sha256_hex(), expect["request_sha256"], "{name}");
            assert_eq!(
                receipt::check_request(&claims, &facts).is_ok(),
                expect["request_matches"].as_bool().unwrap(),
                "{name}"
            );
        }
    }
}

#[test]
fn the_core_passes_the_status_list_vectors() {
    use bonafide_core::status_list;
    let v = read("status_lists.json");
    let now = v["now"].as_i64().unwrap();
    let leeway = v["leeway_secs"].as_i64().unwrap();
    let token_keys =
        KeySet::from_jwks(&serde_json::from_value(v["jwks"].clone()).unwrap()).unwrap();
    let list_keys =
        KeySet::from_jwks(&serde_json::from_value(v["status_list_jwks"].clone()).unwrap()).unwrap();
    let lists = v["lists"].as_array().unwrap();
    for l in lists {
        let name = &l["name"];
        let got = status_list::verify(
            l["token"].as_str().unwrap(),
            &list_keys,
            l["uri"].as_str().unwrap(),
            now,
            leeway,
        );
        match l["expect"]["valid"].as_bool().unwrap() {
            false => assert!(got.is_err(), "{name}: accepted"),
            true => {
                let (_, list) = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(list.bits().get(), l["expect"]["bits"], "{name}");
                let statuses = l["expect"]["statuses"].as_array().unwrap();
                assert_eq!(list.len(), statuses.len() as u64, "{name}");
                for (i, want) in statuses.iter().enumerate() {
                    let got = list.get(i as u64).unwrap();
                    let value = match want.as_str() {
                        Some("valid") => 0,
                        Some("revoked") => 1,
                        Some("suspended") => 2,
                        _ => want.as_u64().unwrap() as u8,
                    };
                    assert_eq!(got.value(), value, "{name} entry {i}");
                }
            }
        }
    }
    for case in v["cases"].as_array().unwrap() {
        let name = &case["name"];
        let mut opts = VerifyOptions::for_issuer(v["issuer"].as_str().unwrap());
        opts.leeway_secs = leeway;
        let t = token::verify(case["token"].as_str().unwrap(), &token_keys, &opts, now).unwrap();
        let entry = t
            .claims
            .status
            .as_ref()
            .and_then(|s| s.status_list.as_ref());
        let got: Result<&str, String> = match entry {
            None => Ok("unchecked"),
            Some(r) => {
                let served = lists.iter().find(|l| l["name"] == case["list"]).unwrap();
                match status_list::verify(
                    served["token"].as_str().unwrap(),
                    &list_keys,
                    &r.uri,
                    now,
                    leeway,
                ) {
                    Err(_) => Err("STATUS_LIST_UNAVAILABLE".into()),
                    Ok((_, list)) => match list.get(r.idx) {
                        Err(_) => Err("TOKEN_INVALID".into()),
                        Ok(s) => s
                            .check()
                            .map(|()| "valid")
                            .map_err(|e| e.code().as_str().to_owned()),
                    },
                }
            }
        };
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => assert_eq!(got, Ok(expect["status"].as_str().unwrap()), "{name}"),
            false => assert_eq!(
                got,
                Err(expect["code"].as_str().unwrap().to_owned()),
                "{name}"
            ),
        }
    }
}

#[test]
fn the_core_passes_the_delegation_vectors() {
    use bonafide_core::delegation::{self, DelegationError, Issue, Request};
    use bonafide_core::token::{AgentClaims, Revoked, TokenError};
    let v = read("delegation.json");
    let now = v["now"].as_i64().unwrap();
    let max_depth = v["max_depth"].as_u64().unwrap() as usize;
    for e in v["exchanges"].as_array().unwrap() {
        let name = &e["name"];
        let parent: AgentClaims = serde_json::from_value(e["parent"].clone()).unwrap();
        let r = &e["request"];
        let req = Request {
            scopes: serde_json::from_value(r["scopes"].clone()).unwrap(),
            audience: serde_json::from_value(r["audience"].clone()).unwrap(),
            exp: r["exp"].as_i64().unwrap(),
            policy: (!r["policy"].is_null())
                .then(|| bonafide_core::policy::Policy::from_value(r["policy"].clone()).unwrap()),
            cnf: serde_json::from_value(r["cnf"].clone()).unwrap(),
        };
        let issue = Issue {
            iss: e["issue"]["iss"].as_str().unwrap().to_owned(),
            jti: serde_json::from_value(e["issue"]["jti"].clone()).unwrap(),
            iat: e["issue"]["iat"].as_i64().unwrap(),
        };
        let actor = serde_json::from_value(e["actor"].clone()).unwrap();
        let got = delegation::child_claims(&parent, None, &actor, &req, issue, max_depth);
        let expect = &e["expect"];
        match got {
            Ok(child) => {
                assert!(expect["valid"].as_bool().unwrap(), "{name}: minted");
                assert_eq!(
                    serde_json::to_value(child).unwrap(),
                    expect["claims"],
                    "{name}"
                );
            }
            Err(DelegationError::Widens(w)) => {
                assert_eq!(expect["code"], "DELEGATION_WIDENS", "{name}");
                assert_eq!(
                    serde_json::json!(w.dimensions()),
                    expect["widened"],
                    "{name}"
                );
            }
            Err(DelegationError::ActorInChain(_)) => {
                assert_eq!(expect["code"], "DELEGATION_LOOP", "{name}")
            }
            Err(DelegationError::Scope(_)) => assert_eq!(expect["code"], "SCOPE_INVALID", "{name}"),
            Err(other) => panic!("{name}: {other}"),
        }
    }
    let keys = KeySet::from_jwks(&serde_json::from_value(v["jwks"].clone()).unwrap()).unwrap();
    let listed =
        |case: &Value, set: &str, id: &str| case[set].as_array().unwrap().iter().any(|x| x == id);
    for case in v["tokens"].as_array().unwrap() {
        let name = &case["name"];
        let mut opts = VerifyOptions::for_issuer(v["issuer"].as_str().unwrap());
        opts.audience = AudienceRule::one(v["audience"].as_str().unwrap());
        let got = token::verify(case["token"].as_str().unwrap(), &keys, &opts, now).and_then(|t| {
            let c = t.claims;
            let chain: Vec<String> = delegation::chain(&c)
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect();
            if std::iter::once(&c.jti)
                .chain(c.ancestor_jtis.iter().flatten())
                .any(|j| listed(case, "revoked_jtis", j.as_str()))
            {
                return Err(TokenError::Revoked(Revoked::Token));
            }
            if chain.iter().any(|a| listed(case, "revoked_agents", a)) {
                return Err(TokenError::Revoked(Revoked::Agent));
            }
            if chain.iter().any(|a| listed(case, "suspended_agents", a)) {
                return Err(TokenError::Suspended);
            }
            Ok((c.sub.as_str().to_owned(), chain))
        });
        let expect = &case["expect"];
        match expect["valid"].as_bool().unwrap() {
            true => {
                let (sub, chain) = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(sub, expect["sub"].as_str().unwrap(), "{name}");
                assert_eq!(serde_json::json!(chain), expect["chain"], "{name}");
                assert_eq!(
                    chain.last().unwrap(),
                    expect["actor"].as_str().unwrap(),
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
