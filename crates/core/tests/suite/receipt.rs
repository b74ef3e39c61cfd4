//! Verify receipts: the canonical request form and its digest from request files, and
//! receipts written by an independent implementation (`tests/data/receipts/`, see its
//! README), verified, reproduced byte for byte, refused, and checked against requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bonafide_core::b64;
use bonafide_core::keys::{Algorithm, Jwk, SigningKey, VerifyingKey};
use bonafide_core::receipt::{self, ReceiptClaims, ReceiptError, RequestFacts};
use bonafide_core::token::{KeySet, TokenError};
use serde_json::Value;

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/receipts")
        .join(rel)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected() -> BTreeMap<String, Value> {
    serde_json::from_value(read_json(&data("expected.json"))).unwrap()
}

fn request_bytes(name: &str) -> Vec<u8> {
    fs::read(data(&format!("requests/{name}.json"))).unwrap()
}

fn facts(name: &str) -> RequestFacts {
    RequestFacts::from_request_json(&request_bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The names of the JSON files in `dir` (without `.json`), sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn every_request_file_gives_its_canonical_form_or_its_error() {
    let expected = expected();
    let files = names(&data("requests"));
    assert_eq!(
        files,
        expected.keys().cloned().collect::<Vec<_>>(),
        "requests/ and expected.json must name the same cases"
    );
    let (mut accepted, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for name in &files {
        let want = &expected[name];
        let got = RequestFacts::from_request_json(&request_bytes(name));
        match (name.starts_with("fail_"), got) {
            (false, Ok(f)) => {
                accepted += 1;
                let canonical = String::from_utf8(f.canonical()).unwrap();
                if canonical != want["canonical"].as_str().unwrap() {
                    failures.push(format!("{name}: canonical form {canonical}"));
                }
                if f.sha256_hex() != want["sha256"].as_str().unwrap() {
                    failures.push(format!("{name}: digest {}", f.sha256_hex()));
                }
            }
            (true, Err(e)) => {
                refused += 1;
                if e.to_string() != want["error"].as_str().unwrap() {
                    failures.push(format!("{name}: refused with `{e}`"));
                }
            }
            (false, Err(e)) => failures.push(format!("{name}: refused with `{e}`")),
            (true, Ok(f)) => failures.push(format!("{name}: accepted as {f:?}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(accepted >= 15 && refused >= 20, "{accepted} / {refused}");
}

#[test]
fn ten_ten_point_zero_zero_and_the_integer_ten_are_one_request() {
    let one = facts("usd_amount_string_10").sha256_hex();
    for name in [
        "usd_amount_integer_10",
        "usd_amount_string_10_00",
        "usd_amount_reordered_pretty",
    ] {
        assert_eq!(facts(name).sha256_hex(), one, "{name}");
    }
    assert_ne!(facts("usd_amount_10_01").sha256_hex(), one);
    assert_eq!(
        facts("jpy_amount_5").sha256_hex(),
        facts("jpy_amount_integer_5").sha256_hex()
    );
}

#[test]
fn target_resource_stands_for_a_missing_audience() {
    let given = facts("audience_given");
    assert_eq!(facts("target_resource_fallback"), given);
    assert_eq!(facts("audience_wins_over_target_resource"), given);
    assert_eq!(
        given.audience.as_deref(),
        Some("https://api.shop.example"),
        "{given:?}"
    );
}

#[test]
fn the_token_is_not_part_of_the_request_digest() {
    assert_eq!(facts("token_only"), RequestFacts::default());
    assert_eq!(facts("empty_object"), RequestFacts::default());
    assert_eq!(facts("null_members_absent"), RequestFacts::default());
}

/// The RFC 8037 A.1 Ed25519 private key, as PKCS#8 v1 DER (RFC 8410 §7).
fn rfc8037_signing_key() -> SigningKey {
    let d = b64::decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A").unwrap();
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&d);
    SigningKey::from_pkcs8_der(Algorithm::EdDSA, &der).unwrap()
}

fn keys_of(case: &Value) -> KeySet {
    let jwk: Jwk = serde_json::from_value(case["jwk"].clone()).unwrap();
    let mut keys = KeySet::new();
    keys.insert(VerifyingKey::from_jwk(&jwk).unwrap());
    keys
}

fn receipt_cases(prefix: &str) -> Vec<(String, Value)> {
    let cases: Vec<(String, Value)> = names(&data(""))
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .map(|n| {
            let v = read_json(&data(&format!("{n}.json")));
            (n, v)
        })
        .collect();
    assert!(!cases.is_empty(), "no `{prefix}` files");
    cases
}

#[test]
fn receipts_from_an_independent_signer_verify_and_reproduce() {
    let key = rfc8037_signing_key();
    assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    for (name, case) in receipt_cases("receipt_") {
        let jws = case["jws"].as_str().unwrap();
        let want: ReceiptClaims = serde_json::from_value(case["claims"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = receipt::verify(jws, &keys_of(&case)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
        // Same claims, same key, Ed25519: the very same bytes, so the member order
        // and the omission of absent members are what the other implementation wrote.
        assert_eq!(receipt::sign(&key, &want).unwrap(), jws, "{name}");
    }
}

#[test]
fn forged_and_foreign_receipts_are_refused_with_the_first_failure() {
    for (name, case) in receipt_cases("fail_receipt_") {
        let jws = case["jws"].as_str().unwrap();
        let err = receipt::verify(jws, &keys_of(&case))
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(err.to_string(), case["error"].as_str().unwrap(), "{name}");
    }
    let payload_changed = read_json(&data("fail_receipt_payload_changed.json"));
    assert_eq!(
        receipt::verify(
            payload_changed["jws"].as_str().unwrap(),
            &keys_of(&payload_changed)
        ),
        Err(ReceiptError::Jws(TokenError::BadSignature))
    );
}

#[test]
fn a_receipt_binds_the_request_it_decided() {
    let case = read_json(&data("receipt_allow.json"));
    let claims = receipt::verify(case["jws"].as_str().unwrap(), &keys_of(&case)).unwrap();
    assert_eq!(
        receipt::check_request(&claims, &facts("full_request")),
        Ok(())
    );
    // The same request with its members reordered, another token and no proof.
    let mut body: serde_json::Map<String, Value> =
        serde_json::from_slice(&request_bytes("full_request")).unwrap();
    body.remove("proof");
    body.insert("token".into(), "another.token.text".into());
    body.insert("amount".into(), "250.50".into());
    let reordered: Vec<(String, Value)> = body.into_iter().rev().collect();
    let text = format!(
        "{{{}}}",
        reordered
            .iter()
            .map(|(k, v)| format!("{}: {v}", Value::String(k.clone())))
            .collect::<Vec<_>>()
            .join(",\n ")
    );
    let same = RequestFacts::from_request_json(text.as_bytes()).unwrap();
    assert_eq!(receipt::check_request(&claims, &same), Ok(()));

    // Anything the request asked, changed, is another request.
    let mut more = facts("full_request");
    more.money = more.money.map(|mut m| {
        m.amount += bonafide_core::policy::Decimal::new(1, 2);
        m
    });
    let mut other_resource = facts("full_request");
    other_resource.resource = Some(("merchant".into(), "acct/12/airbnb2".into()));
    let mut no_key = facts("full_request");
    no_key.idempotency_key = None;
    let mut fewer_scopes = facts("full_request");
    fewer_scopes.scopes_requested.pop();
    for (what, f) in [
        ("amount", more),
        ("resource", other_resource),
        ("idempotency key", no_key),
        ("scopes", fewer_scopes),
        ("everything", facts("usd_amount_string_10")),
    ] {
        assert_eq!(
            receipt::check_request(&claims, &f),
            Err(ReceiptError::RequestMismatch {
                expected: claims.request_sha256.clone(),
                found: f.sha256_hex(),
            }),
            "{what}"
        );
    }
}

mod properties {
    use bonafide_core::policy::{Currency, Decimal, Money};
    use bonafide_core::receipt::{self, RequestFacts};
    use bonafide_core::token::KeySet;
    use proptest::prelude::*;

    fn money() -> impl Strategy<Value = Money> {
        (
            0u64..10_000_000_000,
            prop::sample::select(vec![Currency::USD, Currency::JPY, Currency::KWD]),
        )
            .prop_map(|(minor, currency)| {
                let scale = bonafide_core::policy::money::minor_units(currency);
                Money {
                    amount: Decimal::from_i128_with_scale(i128::from(minor), scale),
                    currency,
                }
            })
    }

    fn facts() -> impl Strategy<Value = RequestFacts> {
        (
            proptest::option::of(".{0,12}"),
            proptest::option::of((".{0,8}", ".{0,8}")),
            proptest::option::of(money()),
            proptest::option::of(".{0,12}"),
            proptest::collection::vec("[a-cA-C:é\u{1F600}]{0,4}", 0..5),
            proptest::option::of(".{0,12}"),
        )
            .prop_map(
                |(action, resource, money, audience, scopes_requested, idempotency_key)| {
                    RequestFacts {
                        action,
                        resource,
                        money,
                        audience,
                        scopes_requested,
                        idempotency_key,
                    }
                },
            )
    }

    proptest! {
        /// The canonical form is a verify request body itself, and reading it back
        /// gives the same form: nothing is lost or reinterpreted on the way.
        #[test]
        fn canonical_form_reads_back_to_itself(f in facts()) {
            let canonical = f.canonical();
            let again = RequestFacts::from_request_json(&canonical)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&canonical))))?;
            prop_assert_eq!(again.canonical(), canonical);
            prop_assert_eq!(again.money, f.money);
        }

        /// Reordering or repeating scopes is the same request.
        #[test]
        fn scope_order_and_repeats_do_not_matter(f in facts()) {
            let mut g = f.clone();
            g.scopes_requested.reverse();
            g.scopes_requested.extend(f.scopes_requested.iter().take(2).cloned());
            prop_assert_eq!(g.sha256_hex(), f.sha256_hex());
        }

        #[test]
        fn request_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = RequestFacts::from_request_json(&bytes);
        }

        #[test]
        fn receipt_verification_never_panics(text in "[A-Za-z0-9_.-]{0,300}") {
            let _ = receipt::verify(&text, &KeySet::new());
        }
    }
}
