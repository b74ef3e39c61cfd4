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
