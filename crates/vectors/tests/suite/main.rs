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
use bonafide_core::keys::Jwks;
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
        let check = ProofCheck::new(
            case["htm"].as_str().unwrap(),
            case["htu"].as_str().unwrap(),
            jkt,
            token,
            now,
        );
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
