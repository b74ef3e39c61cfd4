//! Property tests for the parsers of untrusted bytes: `token::verify`,
//! `jws::decode_header`, `b64`, `json::check` and JWK/JWKS loading never panic, and
//! the strict encodings have exactly one accepted form.
//!
//! Case counts stay modest (≤ 256) so the whole core test run stays fast in debug.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use bonafide_core::b64;
use bonafide_core::json::{self, JsonLimits};
use bonafide_core::jws;
use bonafide_core::keys::{Jwk, Jwks, VerifyingKey};
use bonafide_core::token::{self, KeySet};
use common::*;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The three genuine tokens, one per algorithm, signed once.
fn genuine() -> &'static [String; 3] {
    static TOKENS: std::sync::OnceLock<[String; 3]> = std::sync::OnceLock::new();
    TOKENS.get_or_init(|| ALGS.map(good_token))
}

/// Text that looks like a token: the base64url alphabet, dots, and a few intruders.
fn tokenish() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[A-Za-z0-9_.=+/ -]{0,400}").unwrap()
}

/// A base64url JSON segment from arbitrary JSON-ish text.
fn json_segment() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[{}\[\]":,0-9a-z \\.eE+-]{0,80}"#)
        .unwrap()
        .prop_map(|s| enc(&s))
}

/// A mutation of a token string.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte (kept only if the result is still UTF-8).
    Flip(usize, u8),
    /// Cut the token at a position.
    Truncate(usize),
    /// Insert a character at a position.
    Insert(usize, char),
    /// Remove one byte.
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop_oneof![Just('.'), Just('='), Just(' '), Just('A'), any::<char>()]
        )
            .prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(token: &str, m: &Mutation) -> String {
    // Total over any input: an earlier mutation may have emptied the token or made it
    // non-ASCII, so positions are taken modulo the length and moved to char boundaries.
    let bytes = token.as_bytes();
    let boundary = |i: usize| {
        let mut i = i.min(token.len());
        while !token.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match *m {
        Mutation::Flip(_, _) | Mutation::Truncate(_) | Mutation::Remove(_) if bytes.is_empty() => {
            String::new()
        }
        Mutation::Flip(i, mask) => {
            let mut b = bytes.to_vec();
            let i = i % b.len();
            b[i] ^= mask;
            String::from_utf8_lossy(&b).into_owned()
        }
        Mutation::Truncate(i) => token[..boundary(i % bytes.len())].to_owned(),
        Mutation::Insert(i, c) => {
            let mut s = token.to_owned();
            s.insert(boundary(i % (bytes.len() + 1)), c);
            s
        }
        Mutation::Remove(i) => {
            let mut s = token.to_owned();
            let at = boundary(i % bytes.len());
            if at < s.len() {
                s.remove(at);
            }
            s
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn verify_never_panics_on_arbitrary_strings(s in any::<String>()) {
        let _ = check(&s);
    }

    #[test]
    fn verify_never_panics_on_tokenish_strings(s in tokenish()) {
        let _ = check(&s);
    }

    #[test]
    fn verify_never_panics_on_three_json_segments(
        h in json_segment(), p in json_segment(), sig in "[A-Za-z0-9_-]{0,90}"
    ) {
        let _ = check(&format!("{h}.{p}.{sig}"));
    }

    #[test]
    fn any_change_to_a_genuine_token_is_refused(
        alg in 0usize..3, m in mutation()
    ) {
        let original = &genuine()[alg];
        let mutated = apply(original, &m);
        let got = check(&mutated);
        if mutated == *original {
            prop_assert!(got.is_ok());
        } else {
            // Strict base64url and a signature over the exact text: every change fails.
            prop_assert!(got.is_err(), "accepted {m:?}: {mutated}");
        }
    }

    #[test]
    fn two_mutations_are_refused_too(
        alg in 0usize..3, a in mutation(), b in mutation()
    ) {
        let original = &genuine()[alg];
        let mutated = apply(&apply(original, &a), &b);
        if mutated != *original {
            prop_assert!(check(&mutated).is_err());
        }
    }

    #[test]
    fn decode_header_never_panics(s in any::<String>(), t in json_segment()) {
        let _ = jws::decode_header(&s, JsonLimits::default());
        let _ = jws::decode_header(&t, JsonLimits::default());
    }

    #[test]
    fn b64_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = b64::encode(&bytes);
        prop_assert!(!text.contains(['=', '+', '/']));
        prop_assert_eq!(b64::decode(&text).unwrap(), bytes);
    }

    #[test]
    fn b64_accepts_exactly_one_encoding(s in "[A-Za-z0-9_-]{0,64}|[A-Za-z0-9_=+/ -]{0,16}") {
        // Whatever decodes must be the canonical encoding of what it decodes to.
        if let Ok(bytes) = b64::decode(&s) {
            prop_assert_eq!(b64::encode(&bytes), s);
        }
    }

    #[test]
    fn b64_decode_never_panics(s in any::<String>()) {
        let _ = b64::decode(&s);
    }

    #[test]
    fn json_check_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = json::check(&bytes, JsonLimits::default());
    }

    #[test]
    fn json_check_never_panics_on_json_like_text(s in r#"[{}\[\]":,0-9a-z \\]{0,200}"#) {
        let _ = json::check(s.as_bytes(), JsonLimits::default());
        let _ = json::check(s.as_bytes(), JsonLimits { max_depth: 0 });
    }

    #[test]
    fn json_check_agrees_with_serde_on_valid_documents(v in json_value()) {
        // Generated from a map type, so there are no duplicates; depth ≤ 4.
        let text = serde_json::to_vec(&v).unwrap();
        prop_assert_eq!(json::check(&text, JsonLimits::default()), Ok(()));
    }

    #[test]
    fn json_check_finds_an_injected_duplicate(
        keys in proptest::collection::btree_set("[a-z]{1,6}", 1..20), pick in any::<usize>()
    ) {
        let keys: Vec<String> = keys.into_iter().collect();
        let dup = &keys[pick % keys.len()];
        let mut doc = String::from("{");
        for k in &keys {
            doc.push_str(&format!("\"{k}\":1,"));
        }
        doc.push_str(&format!("\"{dup}\":2}}"));
        prop_assert_eq!(
            json::check(doc.as_bytes(), JsonLimits::default()),
            Err(json::JsonError::DuplicateKey(dup.clone()))
        );
    }

    #[test]
    fn jwk_loading_never_panics(jwk in jwk_value()) {
        if let Ok(jwk) = serde_json::from_value::<Jwk>(jwk.clone()) {
            let _ = jwk.thumbprint();
            if let Ok(key) = VerifyingKey::from_jwk(&jwk) {
                let _ = key.verify(b"message", &[0u8; 64]);
                let _ = key.public_pem();
            }
        }
        if let Ok(jwks) = serde_json::from_value::<Jwks>(serde_json::json!({"keys": [jwk]})) {
            let _ = KeySet::from_jwks(&jwks);
        }
    }

    #[test]
    fn public_pem_parsing_never_panics(body in "[A-Za-z0-9+/=\n]{0,200}") {
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
        let _ = VerifyingKey::from_public_pem(&pem);
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn genuine_tokens_with_arbitrary_claim_text_verify(
        name in any::<String>(), description in proptest::option::of(any::<String>())
    ) {
        // Any Unicode in string claims survives signing and verification unchanged.
        let mut c = claims();
        c.agent.name = name;
        c.agent.description = description;
        let t = token::sign(&fixture().ed, &c).unwrap();
        if t.len() <= 8192 {
            prop_assert_eq!(check(&t).unwrap().claims, c);
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn b64_of_len() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        (0usize..70).prop_map(|n| serde_json::Value::from(b64::encode(&vec![0x5a; n]))),
        Just(serde_json::Value::from(b64::encode(&[0xff; 32]))),
        Just(serde_json::Value::from(b64::encode(&[0u8; 32]))),
        Just(serde_json::Value::from("AQAB")),
        Just(serde_json::Value::from("AQ")),
        "[A-Za-z0-9_=+/-]{0,50}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
    ]
}

fn jwk_value() -> impl Strategy<Value = serde_json::Value> {
    (
        prop_oneof![
            Just("RSA"),
            Just("EC"),
            Just("OKP"),
            Just("oct"),
            Just(""),
            Just("rsa")
        ],
        proptest::option::of(prop_oneof![
            Just("P-256"),
            Just("Ed25519"),
            Just("P-384"),
            Just("X25519")
        ]),
        proptest::option::of(prop_oneof![
            Just("RS256"),
            Just("ES256"),
            Just("EdDSA"),
            Just("none"),
            Just("HS256")
        ]),
        b64_of_len(),
        b64_of_len(),
        b64_of_len(),
        b64_of_len(),
        proptest::option::of(b64_of_len()),
    )
        .prop_map(|(kty, crv, alg, x, y, n, e, d)| {
            let mut m = serde_json::Map::new();
            m.insert("kty".into(), kty.into());
            if let Some(crv) = crv {
                m.insert("crv".into(), crv.into());
            }
            if let Some(alg) = alg {
                m.insert("alg".into(), alg.into());
            }
            m.insert("x".into(), x);
            m.insert("y".into(), y);
            m.insert("n".into(), n);
            m.insert("e".into(), e);
            if let Some(d) = d {
                m.insert("d".into(), d);
            }
            serde_json::Value::Object(m)
        })
}

/// Found by CI: a truncation to nothing followed by a flip used to divide by zero in
/// the test's own mutation code.
#[test]
fn mutations_of_an_emptied_token_are_total() {
    for alg in 0..3 {
        let original = &genuine()[alg];
        let emptied = apply(original, &Mutation::Truncate(0));
        assert_eq!(emptied, "");
        assert_eq!(apply(&emptied, &Mutation::Flip(0, 1)), "");
        assert_eq!(apply(&emptied, &Mutation::Remove(3)), "");
        assert_eq!(apply("é", &Mutation::Truncate(1)), "");
        assert!(check(&apply(&emptied, &Mutation::Insert(5, 'x'))).is_err());
    }
}
