//! Published JOSE vectors (RFC 7515, 7520, 7638, 8037), read from `tests/data/`.
//!
//! Each file is one case; `fail_` files are negative cases whose signature must not
//! verify. See `tests/data/README.md` for the fields and where every value comes from.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use bonafide_core::b64;
use bonafide_core::json::JsonLimits;
use bonafide_core::jws::{self, Compact};
use bonafide_core::keys::{Algorithm, Jwk, SigningKey, VerifyingKey};
use bonafide_core::token::{self, KeySet, TokenError, VerifyOptions};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    source: String,
    jwk: serde_json::Value,
    alg: String,
    #[serde(default)]
    thumbprint: Option<String>,
    #[serde(default)]
    jws: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    d: Option<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    key_from: Option<String>,
    #[serde(default)]
    change: Option<String>,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn load(name: &str) -> Case {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn key_of(case: &Case) -> (Jwk, VerifyingKey) {
    let jwk: Jwk = serde_json::from_value(case.jwk.clone()).unwrap();
    let key = VerifyingKey::from_jwk(&jwk).unwrap();
    (jwk, key)
}

/// Runs one case file and returns whether its signature (if any) verified.
fn run(name: &str) {
    let case = load(name);
    let negative = name.starts_with("fail_");
    assert!(!case.source.is_empty(), "{name}: no source");
    assert_eq!(
        negative,
        case.derived_from.is_some(),
        "{name}: fail_ cases and only they name the case they derive from"
    );
    let (jwk, key) = key_of(&case);
    assert_eq!(key.alg().as_str(), case.alg, "{name}: inferred algorithm");

    if let Some(want) = &case.thumbprint {
        assert_eq!(&jwk.thumbprint().unwrap(), want, "{name}: thumbprint");
        assert_eq!(key.kid(), want, "{name}: kid is the thumbprint");
    }

    let Some(jws) = &case.jws else {
        assert!(!negative, "{name}: a negative case needs a JWS");
        return;
    };
    let compact = Compact::split(jws, 64 * 1024).unwrap();
    let sig = b64::decode(compact.signature_b64).unwrap();
    let verified = key.verify(compact.signing_input.as_bytes(), &sig);
    if negative {
        assert!(!verified, "{name}: a changed JWS verified");
    } else {
        assert!(verified, "{name}: the published signature does not verify");
    }

    if let Some(want) = &case.payload {
        let bytes = b64::decode(compact.payload_b64).unwrap();
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            want,
            "{name}: payload"
        );
    }

    if let Some(d) = &case.d {
        assert_eq!(key.alg(), Algorithm::EdDSA);
        let signer = ed25519_from_seed(d);
        assert_eq!(signer.kid(), key.kid(), "{name}: d does not match x");
        let again = signer.sign(compact.signing_input.as_bytes()).unwrap();
        assert_eq!(
            b64::encode(&again),
            compact.signature_b64,
            "{name}: re-signing"
        );
    }

    if let Some(base_name) = &case.derived_from {
        check_derivation(name, &case, base_name);
    }
}

/// A `fail_` case must differ from the published case exactly as `change` says:
/// one character of the JWS, or (with `key_from`) only the key.
fn check_derivation(name: &str, case: &Case, base_name: &str) {
    let base = load(base_name);
    assert!(!base_name.starts_with("fail_"));
    assert!(case.change.as_deref().is_some_and(|c| !c.is_empty()));
    let (ours, theirs) = (case.jws.as_deref().unwrap(), base.jws.as_deref().unwrap());
    if let Some(key_from) = &case.key_from {
        assert_eq!(ours, theirs, "{name}: wrong-key case must keep the JWS");
        assert_eq!(case.jwk, load(key_from).jwk, "{name}: key from {key_from}");
        assert_ne!(case.jwk, base.jwk);
    } else {
        assert_eq!(case.jwk, base.jwk, "{name}: key must be unchanged");
        assert_eq!(ours.len(), theirs.len());
        let diffs = ours
            .bytes()
            .zip(theirs.bytes())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            diffs, 1,
            "{name}: must differ from {base_name} in one character"
        );
        // And the published one still verifies, so the change alone is the cause.
        run(base_name);
    }
}

/// An Ed25519 key from its 32-byte seed, via a PKCS#8 v1 wrapper (RFC 8410 §7).
fn ed25519_from_seed(d_b64: &str) -> SigningKey {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let seed = b64::decode(d_b64).unwrap();
    assert_eq!(seed.len(), 32);
    let mut der = PREFIX.to_vec();
    der.extend(seed);
    SigningKey::from_pkcs8_der(Algorithm::EdDSA, &der).unwrap()
}

// One test per published case, so a failure names the vector.

#[test]
fn rfc7638_3_1_rsa_thumbprint() {
    run("rfc7638_3_1_rsa_thumbprint.json");
}

#[test]
fn rfc8037_a4_ed25519() {
    run("rfc8037_a4_ed25519.json");
}

#[test]
fn rfc7515_a2_rs256() {
    run("rfc7515_a2_rs256.json");
}

#[test]
fn rfc7515_a3_es256() {
    run("rfc7515_a3_es256.json");
}

#[test]
fn rfc7520_4_1_rs256() {
    run("rfc7520_4_1_rs256.json");
}

#[test]
fn fail_rfc8037_a4_payload_changed() {
    run("fail_rfc8037_a4_payload_changed.json");
}

#[test]
fn fail_rfc8037_a4_signature_changed() {
    run("fail_rfc8037_a4_signature_changed.json");
}

#[test]
fn fail_rfc8037_a4_header_changed() {
    run("fail_rfc8037_a4_header_changed.json");
}

#[test]
fn fail_rfc7515_a2_rs256_payload_changed() {
    run("fail_rfc7515_a2_rs256_payload_changed.json");
}

#[test]
fn fail_rfc7515_a3_es256_payload_changed() {
    run("fail_rfc7515_a3_es256_payload_changed.json");
}

#[test]
fn fail_rfc7515_a3_es256_signature_changed() {
    run("fail_rfc7515_a3_es256_signature_changed.json");
}

#[test]
fn fail_rfc7520_4_1_rs256_payload_changed() {
    run("fail_rfc7520_4_1_rs256_payload_changed.json");
}

#[test]
fn fail_rfc7520_4_1_rs256_wrong_key() {
    run("fail_rfc7520_4_1_rs256_wrong_key.json");
}

/// Every data file runs, including ones added later without a named test.
#[test]
fn every_data_file() {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 13, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("fail_")));
    for name in &names {
        run(name);
    }
}

/// The same key through a JWKS: `KeySet::from_jwks` indexes it by thumbprint.
#[test]
fn rfc8037_key_through_a_jwks() {
    let case = load("rfc8037_a4_ed25519.json");
    let jwks: bonafide_core::keys::Jwks =
        serde_json::from_value(serde_json::json!({ "keys": [case.jwk] })).unwrap();
    let set = KeySet::from_jwks(&jwks).unwrap();
    assert_eq!(set.len(), 1);
    let thumbprint = case.thumbprint.unwrap();
    assert_eq!(
        set.to_jwks().keys[0].kid.as_deref(),
        Some(thumbprint.as_str())
    );
}

/// The published examples are genuine JWS but not agent tokens: they carry no `kid`
/// (RFC 7515, 8037) or no `typ` (RFC 7520), and `verify` says so precisely.
#[test]
fn published_jws_are_not_agent_tokens() {
    let cases = [
        ("rfc8037_a4_ed25519.json", TokenError::MissingHeader("kid")),
        ("rfc7515_a2_rs256.json", TokenError::MissingHeader("kid")),
        ("rfc7515_a3_es256.json", TokenError::MissingHeader("kid")),
        (
            "rfc7520_4_1_rs256.json",
            TokenError::WrongType {
                found: String::new(),
                expected: "agent+jwt",
            },
        ),
    ];
    for (name, want) in cases {
        let case = load(name);
        let (_, key) = key_of(&case);
        let mut set = KeySet::new();
        set.insert(key);
        let jws = case.jws.unwrap();
        let got = token::verify(&jws, &set, &VerifyOptions::for_issuer("joe"), 1_300_819_000);
        assert_eq!(got.unwrap_err(), want, "{name}");
    }
    // RFC 7520's header names its kid and alg; decode_header reads them as written.
    let case = load("rfc7520_4_1_rs256.json");
    let jws = case.jws.unwrap();
    let header = jws::decode_header(
        Compact::split(&jws, 8192).unwrap().header_b64,
        JsonLimits::default(),
    )
    .unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.kid, "bilbo.baggins@hobbiton.example");
}
