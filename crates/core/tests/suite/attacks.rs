//! Known attacks on JWT/JWS verifiers, one test each, against `token::verify`.
//!
//! Each hostile token must be refused with the exact [`TokenError`] the pipeline of
//! docs/design.md ("Verification pipeline") puts first, and the right wire code. Where an
//! attack needs a valid signature to reach a later step (duplicate claims, deep
//! nesting, typed-claims errors), the crafted bytes are signed with the real key, so
//! the test proves the later check, not the signature, refuses them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use aws_lc_rs::hmac;
use bonafide_core::b64;
use bonafide_core::json::JsonError;
use bonafide_core::jws::{self, Compact};
use bonafide_core::keys::{Algorithm, Jwk, KeyError, SigningKey, VerifyingKey};
use bonafide_core::token::{
    self, Audience, ErrorCode, KeySet, Segment, TimeCheck, TokenError, VerifyOptions,
};
use common::*;

/// Asserts `token` is refused with exactly `want` and that error's wire code is `code`.
#[track_caller]
fn refused(token: &str, want: TokenError, code: ErrorCode) {
    let got = check(token).expect_err("hostile token was accepted");
    assert_eq!(got, want, "token: {token}");
    assert_eq!(got.code(), code, "{got}");
}

/// Shorthand for refusals coded `TOKEN_INVALID`.
#[track_caller]
fn invalid(token: &str, want: TokenError) {
    refused(token, want, ErrorCode::TokenInvalid);
}

/// A header/payload/signature token from raw segment texts.
fn join(h: &str, p: &str, s: &str) -> String {
    format!("{h}.{p}.{s}")
}

// ---------------------------------------------------------------------------------
// Positive controls: if these fail, every refusal below proves nothing.

#[test]
fn control_eddsa_token_verifies() {
    let v = check(&good_token(Algorithm::EdDSA)).unwrap();
    assert_eq!(v.claims, claims());
    assert_eq!(v.header.alg, Algorithm::EdDSA);
    assert_eq!(v.header.kid, fixture().ed.kid());
}

#[test]
fn control_es256_token_verifies() {
    let v = check(&good_token(Algorithm::ES256)).unwrap();
    assert_eq!(v.claims, claims());
    assert_eq!(v.header.alg, Algorithm::ES256);
}

#[test]
fn control_rs256_token_verifies() {
    let v = check(&good_token(Algorithm::RS256)).unwrap();
    assert_eq!(v.claims, claims());
    assert_eq!(v.header.alg, Algorithm::RS256);
}

#[test]
fn control_hand_signed_token_verifies() {
    // The crafting helpers themselves produce acceptable tokens when nothing is wrong.
    for alg in ALGS {
        let key = fixture().key(alg);
        check(&signed_payload(key, &claims_json())).unwrap();
    }
}

#[test]
fn control_typ_with_application_prefix_and_other_case_verifies() {
    // RFC 7515 §4.1.9: media type names are case-insensitive, "application/" optional.
    let key = &fixture().ed;
    for typ in ["application/agent+jwt", "Agent+JWT"] {
        let header = format!(r#"{{"alg":"EdDSA","typ":"{typ}","kid":"{}"}}"#, key.kid());
        check(&signed_raw(key, &header, claims_json().as_bytes())).unwrap();
    }
}

#[test]
fn control_time_check_skip_accepts_an_expired_genuine_token() {
    let mut c = claims();
    c.exp = NOW - 3600;
    c.iat = NOW - 7200;
    c.nbf = None;
    let t = token::sign(&fixture().ed, &c).unwrap();
    let mut o = opts();
    o.time = TimeCheck::Skip;
    token::verify(&t, &fixture().keys, &o, NOW).unwrap();
}

// ---------------------------------------------------------------------------------
// alg "none" and friends (RFC 8725 §2.1, §3.1).

fn none_token(alg: &str, sig: &str) -> String {
    let h = enc(&format!(
        r#"{{"alg":"{alg}","typ":"agent+jwt","kid":"{}"}}"#,
        fixture().ed.kid()
    ));
    join(&h, &enc(&claims_json()), sig)
}

#[test]
fn alg_none_lowercase_with_empty_signature() {
    invalid(
        &none_token("none", ""),
        TokenError::AlgorithmNotAllowed("none".into()),
    );
}

#[test]
fn alg_none_capitalised_with_empty_signature() {
    invalid(
        &none_token("None", ""),
        TokenError::AlgorithmNotAllowed("None".into()),
    );
}

#[test]
fn alg_none_uppercase_with_empty_signature() {
    invalid(
        &none_token("NONE", ""),
        TokenError::AlgorithmNotAllowed("NONE".into()),
    );
}

#[test]
fn alg_none_with_a_real_signature_segment() {
    // Keep a genuine EdDSA signature in place: "none" must still be refused.
    let (_, _, sig) = parts(&good_token(Algorithm::EdDSA));
    for alg in ["none", "None", "NONE", "nOnE"] {
        invalid(
            &none_token(alg, &sig),
            TokenError::AlgorithmNotAllowed(alg.into()),
        );
    }
}

#[test]
fn alg_names_are_case_sensitive() {
    for alg in [
        "eddsa", "EDDSA", "es256", "rs256", "Ed25519", "ES256K", "PS256", "RS512",
    ] {
        invalid(
            &none_token(alg, "AAAA"),
            TokenError::AlgorithmNotAllowed(alg.into()),
        );
    }
}

#[test]
fn missing_alg() {
    let h = enc(&format!(
        r#"{{"typ":"agent+jwt","kid":"{}"}}"#,
        fixture().ed.kid()
    ));
    invalid(
        &join(&h, &enc(&claims_json()), "AAAA"),
        TokenError::MissingHeader("alg"),
    );
}

// ---------------------------------------------------------------------------------
// Key confusion: HS256 keyed with the public key (CVE-2015-9235 family).

#[test]
fn hs256_keyed_with_the_rsa_public_key_pem() {
    let rs = fixture().rs.verifying_key();
    let pem = rs.public_pem().unwrap();
    let input = format!(
        "{}.{}",
        enc(&format!(
            r#"{{"alg":"HS256","typ":"agent+jwt","kid":"{}"}}"#,
            rs.kid()
        )),
        enc(&claims_json())
    );
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, pem.as_bytes()),
        input.as_bytes(),
    );
    let t = format!("{input}.{}", b64::encode(mac.as_ref()));
    invalid(&t, TokenError::AlgorithmNotAllowed("HS256".into()));
}

#[test]
fn hs256_keyed_with_the_eddsa_public_key_bytes() {
    let ed = fixture().ed.verifying_key();
    let x = b64::decode(ed.jwk().x.as_deref().unwrap()).unwrap();
    let input = format!(
        "{}.{}",
        enc(&format!(
            r#"{{"alg":"HS256","typ":"agent+jwt","kid":"{}"}}"#,
            ed.kid()
        )),
        enc(&claims_json())
    );
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &x), input.as_bytes());
    let t = format!("{input}.{}", b64::encode(mac.as_ref()));
    invalid(&t, TokenError::AlgorithmNotAllowed("HS256".into()));
}

// ---------------------------------------------------------------------------------
// Keys offered by the token itself (RFC 8725 §3.10; CVE-2018-0114).

fn attacker_jwk_json(attacker: &SigningKey) -> String {
    serde_json::to_string(attacker.verifying_key().jwk()).unwrap()
}

#[test]
fn embedded_jwk_with_our_kid() {
    let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","jwk":{}}}"#,
        fixture().ed.kid(),
        attacker_jwk_json(&attacker)
    );
    invalid(
        &signed_raw(&attacker, &header, claims_json().as_bytes()),
        TokenError::ForbiddenHeader("jwk"),
    );
}

#[test]
fn embedded_jwk_with_a_fresh_kid() {
    let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","jwk":{}}}"#,
        attacker.kid(),
        attacker_jwk_json(&attacker)
    );
    invalid(
        &signed_raw(&attacker, &header, claims_json().as_bytes()),
        TokenError::ForbiddenHeader("jwk"),
    );
}

#[test]
fn embedded_jwk_even_when_it_is_our_own_key() {
    // Offering a key is refused outright, even a key the registry knows.
    let key = &fixture().ed;
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","jwk":{}}}"#,
        key.kid(),
        attacker_jwk_json(key)
    );
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::ForbiddenHeader("jwk"),
    );
}

#[test]
fn attacker_key_without_embedding_is_simply_unknown() {
    let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
    invalid(
        &token::sign(&attacker, &claims()).unwrap(),
        TokenError::UnknownKey,
    );
}

fn with_header_member(member: &str, value: &str) -> String {
    let key = &fixture().ed;
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","{member}":{value}}}"#,
        key.kid()
    );
    signed_raw(key, &header, claims_json().as_bytes())
}

#[test]
fn jku_pointing_at_attacker() {
    invalid(
        &with_header_member("jku", r#""https://attacker.example/jwks.json""#),
        TokenError::ForbiddenHeader("jku"),
    );
}

#[test]
fn x5u_pointing_at_attacker() {
    invalid(
        &with_header_member("x5u", r#""https://attacker.example/cert.pem""#),
        TokenError::ForbiddenHeader("x5u"),
    );
}

#[test]
fn x5c_certificate_chain() {
    invalid(
        &with_header_member("x5c", r#"["MIIBszCCAVmgAwIBAgIUSelfSigned"]"#),
        TokenError::ForbiddenHeader("x5c"),
    );
}

#[test]
fn x5t_thumbprints() {
    invalid(
        &with_header_member("x5t", r#""dGhpcyBpcyBub3QgYSB0aHVtYnByaW50""#),
        TokenError::ForbiddenHeader("x5t"),
    );
    invalid(
        &with_header_member("x5t#S256", r#""dGhpcyBpcyBub3QgYSB0aHVtYnByaW50""#),
        TokenError::ForbiddenHeader("x5t#S256"),
    );
}

#[test]
fn unencoded_payload_b64_false() {
    // RFC 7797: would change what the signature covers.
    invalid(
        &with_header_member("b64", "false"),
        TokenError::ForbiddenHeader("b64"),
    );
}

#[test]
fn forbidden_member_with_null_value_is_still_forbidden() {
    // A member that is present with a `null` value is present: `Option<_>` in serde
    // reads `null` as absent, which must not let these through.
    invalid(
        &with_header_member("jku", "null"),
        TokenError::ForbiddenHeader("jku"),
    );
    invalid(
        &with_header_member("jwk", "null"),
        TokenError::ForbiddenHeader("jwk"),
    );
}

#[test]
fn crit_with_null_value_is_refused() {
    // RFC 7515 §4.1.11: `crit` is an array of names; `null` is not "absent".
    invalid(
        &with_header_member("crit", "null"),
        TokenError::CriticalHeader,
    );
}

// ---------------------------------------------------------------------------------
// kid abuse.

fn with_kid(kid: &str) -> String {
    let key = &fixture().ed;
    let header = serde_json::json!({"alg": "EdDSA", "typ": "agent+jwt", "kid": kid}).to_string();
    signed_raw(key, &header, claims_json().as_bytes())
}

#[test]
fn kid_path_traversal() {
    invalid(&with_kid("../../../../etc/passwd"), TokenError::UnknownKey);
    invalid(&with_kid("/dev/null"), TokenError::UnknownKey);
}

#[test]
fn kid_sql_injection() {
    invalid(&with_kid("' OR 1=1 --"), TokenError::UnknownKey);
    invalid(&with_kid("x'; DROP TABLE keys; --"), TokenError::UnknownKey);
}

#[test]
fn kid_longer_than_128_chars() {
    invalid(&with_kid(&"a".repeat(129)), TokenError::UnknownKey);
    invalid(&with_kid(&"a".repeat(1000)), TokenError::UnknownKey);
}

#[test]
fn kid_empty_missing_or_not_a_string() {
    invalid(&with_kid(""), TokenError::UnknownKey);
    let key = &fixture().ed;
    invalid(
        &signed_raw(
            key,
            r#"{"alg":"EdDSA","typ":"agent+jwt"}"#,
            claims_json().as_bytes(),
        ),
        TokenError::MissingHeader("kid"),
    );
    invalid(
        &signed_raw(
            key,
            r#"{"alg":"EdDSA","typ":"agent+jwt","kid":42}"#,
            claims_json().as_bytes(),
        ),
        TokenError::HeaderNotObject,
    );
}

#[test]
fn kid_our_thumbprint_with_different_case_or_padding() {
    let kid = fixture().ed.kid().to_owned();
    invalid(&with_kid(&kid.to_uppercase()), TokenError::UnknownKey);
    invalid(&with_kid(&format!("{kid}=")), TokenError::UnknownKey);
    invalid(&with_kid(&format!(" {kid}")), TokenError::UnknownKey);
}

// ---------------------------------------------------------------------------------
// Tampering.

#[test]
fn signature_stripped() {
    for alg in ALGS {
        let (h, p, _) = parts(&good_token(alg));
        invalid(&join(&h, &p, ""), TokenError::BadSignature);
        // Without the trailing dot it is not a JWS at all.
        invalid(&format!("{h}.{p}"), TokenError::Shape);
    }
}

#[test]
fn payload_changed_after_signing_scopes_widened() {
    for alg in ALGS {
        let (h, _, s) = parts(&good_token(alg));
        let mut c = claims();
        c.agent.scopes.push("write:transfers".into());
        c.scope = Some("read:portfolio read:transactions write:transfers".into());
        let p = enc(&serde_json::to_string(&c).unwrap());
        invalid(&join(&h, &p, &s), TokenError::BadSignature);
    }
}

#[test]
fn payload_changed_after_signing_expiry_extended() {
    for alg in ALGS {
        let (h, _, s) = parts(&good_token(alg));
        let mut c = claims();
        c.exp += 365 * 24 * 3600;
        let p = enc(&serde_json::to_string(&c).unwrap());
        invalid(&join(&h, &p, &s), TokenError::BadSignature);
    }
}

#[test]
fn header_changed_after_signing() {
    for alg in ALGS {
        let key = fixture().key(alg);
        let (_, p, s) = parts(&good_token(alg));
        // Same alg and kid, member order changed and an extra member: different bytes.
        let h = enc(&format!(
            r#"{{"kid":"{}","typ":"agent+jwt","alg":"{}","x":1}}"#,
            key.kid(),
            alg.as_str()
        ));
        invalid(&join(&h, &p, &s), TokenError::BadSignature);
    }
}

#[test]
fn signature_from_another_token_spliced_in() {
    for alg in ALGS {
        let (h, p, _) = parts(&good_token(alg));
        let mut c = claims();
        c.jti = bonafide_core::ids::TokenId::from_random([0x33; 16]);
        let other = token::sign(fixture().key(alg), &c).unwrap();
        let (_, _, s) = parts(&other);
        invalid(&join(&h, &p, &s), TokenError::BadSignature);
    }
}

#[test]
fn token_signed_by_a_different_eddsa_key_with_our_kid() {
    let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let header = header_json(&fixture().ed); // names our kid
    invalid(
        &signed_raw(&attacker, &header, claims_json().as_bytes()),
        TokenError::BadSignature,
    );
}

#[test]
fn token_signed_by_a_different_es256_key_with_our_kid() {
    let attacker = SigningKey::generate(Algorithm::ES256).unwrap();
    let header = header_json(&fixture().es);
    invalid(
        &signed_raw(&attacker, &header, claims_json().as_bytes()),
        TokenError::BadSignature,
    );
}

// ---------------------------------------------------------------------------------
// ECDSA signature encodings.

/// The order n of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

fn es_with_signature(sig: &[u8]) -> String {
    let (h, p, _) = parts(&good_token(Algorithm::ES256));
    join(&h, &p, &b64::encode(sig))
}

fn es_signature() -> Vec<u8> {
    let (_, _, s) = parts(&good_token(Algorithm::ES256));
    let sig = b64::decode(&s).unwrap();
    assert_eq!(sig.len(), 64);
    sig
}

#[test]
fn ecdsa_psychic_signature_r_and_s_zero() {
    // CVE-2022-21449: r = s = 0 verified anything in Java 15-18.
    invalid(&es_with_signature(&[0u8; 64]), TokenError::BadSignature);
}

#[test]
fn ecdsa_r_or_s_zero_alone() {
    let sig = es_signature();
    let mut r_zero = sig.clone();
    r_zero[..32].fill(0);
    invalid(&es_with_signature(&r_zero), TokenError::BadSignature);
    let mut s_zero = sig;
    s_zero[32..].fill(0);
    invalid(&es_with_signature(&s_zero), TokenError::BadSignature);
}

/// DER `INTEGER` of a big-endian unsigned value.
fn der_int(v: &[u8]) -> Vec<u8> {
    let first = v.iter().position(|&b| b != 0).unwrap_or(v.len() - 1);
    let mut body = v[first..].to_vec();
    if body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    let mut out = vec![0x02, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out
}

#[test]
fn ecdsa_signature_der_encoded_instead_of_r_s() {
    let sig = es_signature();
    let mut seq = der_int(&sig[..32]);
    seq.extend(der_int(&sig[32..]));
    let mut der = vec![0x30, u8::try_from(seq.len()).unwrap()];
    der.extend(seq);
    // Sanity: this DER is what an ASN.1 ECDSA verifier would accept.
    assert!(der.len() >= 8 && der.len() <= 72);
    invalid(&es_with_signature(&der), TokenError::BadSignature);
}

#[test]
fn ecdsa_r_or_s_equal_to_curve_order() {
    let sig = es_signature();
    let mut r_n = sig.clone();
    r_n[..32].copy_from_slice(&P256_N);
    invalid(&es_with_signature(&r_n), TokenError::BadSignature);
    let mut s_n = sig.clone();
    s_n[32..].copy_from_slice(&P256_N);
    invalid(&es_with_signature(&s_n), TokenError::BadSignature);
    let mut both = [0u8; 64];
    both[..32].copy_from_slice(&P256_N);
    both[32..].copy_from_slice(&P256_N);
    invalid(&es_with_signature(&both), TokenError::BadSignature);
}

#[test]
fn ecdsa_r_or_s_all_ones() {
    // Above the order: must not be reduced mod n and accepted.
    let sig = es_signature();
    let mut s_big = sig;
    s_big[32..].fill(0xff);
    invalid(&es_with_signature(&s_big), TokenError::BadSignature);
}

#[test]
fn ecdsa_signature_wrong_length() {
    let sig = es_signature();
    invalid(&es_with_signature(&sig[..63]), TokenError::BadSignature);
    let mut longer = sig.clone();
    longer.push(0);
    invalid(&es_with_signature(&longer), TokenError::BadSignature);
    let mut prefixed = vec![0u8];
    prefixed.extend(&sig);
    invalid(&es_with_signature(&prefixed), TokenError::BadSignature);
}

// ---------------------------------------------------------------------------------
// Ed25519 and RSA signature encodings.

/// The order L of the Ed25519 group, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

#[test]
fn ed25519_malleated_s_plus_order() {
    // (R, S + L) satisfies the group equation; RFC 8032 §5.1.7 requires S < L.
    let (h, p, s) = parts(&good_token(Algorithm::EdDSA));
    let mut sig = b64::decode(&s).unwrap();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(ED25519_L[i]) + carry;
        sig[32 + i] = (v & 0xff) as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    invalid(&join(&h, &p, &b64::encode(&sig)), TokenError::BadSignature);
}

#[test]
fn ed25519_zero_signature() {
    let (h, p, _) = parts(&good_token(Algorithm::EdDSA));
    invalid(
        &join(&h, &p, &b64::encode(&[0u8; 64])),
        TokenError::BadSignature,
    );
}

/// Encodings of the Ed25519 points of small order (libsodium's blocklist in
/// `ge25519_has_small_order`, plus the sign-bit twins): y = 0, 1, the two order-8
/// y values, p - 1, and the non-canonical p and p + 1.
fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut ys: Vec<[u8; 32]> = Vec::new();
    ys.push([0; 32]);
    let mut one = [0u8; 32];
    one[0] = 1;
    ys.push(one);
    ys.push([
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ]);
    ys.push([
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ]);
    for low in [0xec, 0xed, 0xee] {
        let mut p = [0xffu8; 32];
        p[0] = low;
        p[31] = 0x7f;
        ys.push(p);
    }
    let mut all = ys.clone();
    for y in ys {
        let mut twin = y;
        twin[31] |= 0x80;
        all.push(twin);
    }
    all
}

#[test]
fn ed25519_small_order_public_keys_cannot_verify_everything() {
    // With a small-order public key A, the signature R = identity, S = 0 satisfies
    // [S]B = R + [k]A whenever ord(A) divides k: for the identity, for every message.
    // Anyone could then mint tokens under such a key; it must be refused when it is
    // registered (preferred) or never verify.
    let mut sig = [0u8; 64];
    sig[0] = 1; // R = encoding of the identity (0, 1)
    for x in small_order_encodings() {
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "OKP", "crv": "Ed25519", "x": b64::encode(&x)
        }))
        .unwrap();
        if let Ok(key) = VerifyingKey::from_jwk(&jwk) {
            for i in 0u8..16 {
                let msg = [b'm', i];
                assert!(
                    !key.verify(&msg, &sig),
                    "small-order key {} verified a universal forgery",
                    b64::encode(&x)
                );
            }
        }
    }
}

#[test]
fn rsa_signature_wrong_length_or_zero() {
    let (h, p, s) = parts(&good_token(Algorithm::RS256));
    let sig = b64::decode(&s).unwrap();
    assert_eq!(sig.len(), 256);
    invalid(
        &join(&h, &p, &b64::encode(&sig[1..])),
        TokenError::BadSignature,
    );
    let mut prefixed = vec![0u8];
    prefixed.extend(&sig);
    invalid(
        &join(&h, &p, &b64::encode(&prefixed)),
        TokenError::BadSignature,
    );
    invalid(
        &join(&h, &p, &b64::encode(&[0u8; 256])),
        TokenError::BadSignature,
    );
    invalid(
        &join(&h, &p, &b64::encode(&[1u8])),
        TokenError::BadSignature,
    );
}

// ---------------------------------------------------------------------------------
// RSA key sizes and exponents.

/// RFC 7515 Appendix A.2 RSA modulus (2048 bits).
const RFC7515_A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";

fn rsa_jwk(n: &[u8], e: &str) -> Jwk {
    serde_json::from_value(serde_json::json!({"kty": "RSA", "n": b64::encode(n), "e": e})).unwrap()
}

/// A 1024-bit odd modulus with the top bit set: the first 128 octets of the RFC 7515
/// A.2 modulus, low bit forced. Not a product of two primes, which does not matter:
/// the size check must come before the backend ever sees the key.
fn modulus_1024() -> Vec<u8> {
    let mut n = b64::decode(RFC7515_A2_N).unwrap()[..128].to_vec();
    assert!(n[0] & 0x80 != 0);
    n[127] |= 1;
    n
}

#[test]
fn rsa_1024_bit_key_refused() {
    assert_eq!(
        VerifyingKey::from_jwk(&rsa_jwk(&modulus_1024(), "AQAB")).unwrap_err(),
        KeyError::RsaSize(1024)
    );
}

#[test]
fn rsa_1024_bit_key_refused_for_size_before_anything_else() {
    // An exponent the backend would reject (even), and a declared kid: size decides.
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "RSA", "kid": "legacy", "alg": "RS256",
        "n": b64::encode(&modulus_1024()), "e": "Ag"
    }))
    .unwrap();
    assert_eq!(
        VerifyingKey::from_jwk(&jwk).unwrap_err(),
        KeyError::RsaSize(1024)
    );
}

#[test]
fn rsa_1024_bit_key_with_leading_zero_octets_is_still_1024_bits() {
    let mut n = vec![0u8; 4];
    n.extend(modulus_1024());
    assert_eq!(
        VerifyingKey::from_jwk(&rsa_jwk(&n, "AQAB")).unwrap_err(),
        KeyError::RsaSize(1024)
    );
}

#[test]
fn rsa_2047_bit_key_refused() {
    let mut n = b64::decode(RFC7515_A2_N).unwrap();
    n[0] = 0x7f; // top bit cleared: 2047 bits
    assert_eq!(
        VerifyingKey::from_jwk(&rsa_jwk(&n, "AQAB")).unwrap_err(),
        KeyError::RsaSize(2047)
    );
}

#[test]
fn rsa_2048_bit_key_accepted() {
    let key =
        VerifyingKey::from_jwk(&rsa_jwk(&b64::decode(RFC7515_A2_N).unwrap(), "AQAB")).unwrap();
    assert_eq!(key.alg(), Algorithm::RS256);
    // And a generated 2048-bit key round-trips through its JWK.
    let generated = fixture().rs.verifying_key().jwk().clone();
    assert_eq!(
        b64::decode(generated.n.as_deref().unwrap()).unwrap().len(),
        256
    );
    VerifyingKey::from_jwk(&generated).unwrap();
}

#[test]
fn rsa_key_above_8192_bits_refused() {
    let mut n = vec![0xffu8; 8200 / 8];
    n[0] = 0xc1;
    assert_eq!(
        VerifyingKey::from_jwk(&rsa_jwk(&n, "AQAB")).unwrap_err(),
        KeyError::RsaSize(8200)
    );
}

/// EMSA-PKCS1-v1_5 encoding of SHA-256(`msg`) for a 256-octet modulus.
fn emsa_pkcs1_sha256(msg: &[u8]) -> Vec<u8> {
    const DIGEST_INFO: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let mut em = vec![0x00, 0x01];
    em.extend(std::iter::repeat_n(0xff, 256 - 3 - 19 - 32));
    em.push(0x00);
    em.extend(DIGEST_INFO);
    em.extend(bonafide_core::sha256(msg));
    assert_eq!(em.len(), 256);
    em
}

#[test]
fn rsa_public_exponent_one_cannot_forge() {
    // With e = 1, s^e mod n = s, so the encoded message itself is a "signature".
    let n = b64::decode(RFC7515_A2_N).unwrap();
    let msg = b"eyJhbGciOiJSUzI1NiJ9.forged";
    let forged = emsa_pkcs1_sha256(msg);
    if let Ok(key) = VerifyingKey::from_jwk(&rsa_jwk(&n, "AQ")) {
        assert!(!key.verify(msg, &forged), "e = 1 key accepted a forgery");
    }
}

#[test]
fn rsa_even_or_huge_exponent_refused_or_useless() {
    let n = b64::decode(RFC7515_A2_N).unwrap();
    for e in ["Ag", "AAEAAQ", "_____w", "AQAAAAAAAAAB"] {
        if let Ok(key) = VerifyingKey::from_jwk(&rsa_jwk(&n, e)) {
            assert!(!key.verify(b"m", &[1u8; 256]), "e = {e}");
        }
    }
}

// ---------------------------------------------------------------------------------
// Header rules.

#[test]
fn crit_header() {
    invalid(
        &with_header_member("crit", r#"["exp"]"#),
        TokenError::CriticalHeader,
    );
    invalid(
        &with_header_member("crit", "[]"),
        TokenError::CriticalHeader,
    );
}

#[test]
fn duplicate_header_alg() {
    let key = &fixture().ed;
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","alg":"none"}}"#,
        key.kid()
    );
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::Json(Segment::Header, JsonError::DuplicateKey("alg".into())),
    );
}

#[test]
fn duplicate_header_kid_spelled_with_an_escape() {
    let key = &fixture().ed;
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","\u006bid":"other"}}"#,
        key.kid()
    );
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::Json(Segment::Header, JsonError::DuplicateKey("kid".into())),
    );
}

#[test]
fn header_not_a_json_object() {
    for header in ["null", "\"EdDSA\"", "42", "[]", "true"] {
        let t = join(&enc(header), &enc(&claims_json()), "AAAA");
        invalid(&t, TokenError::HeaderNotObject);
    }
}

#[test]
fn header_as_a_json_array_in_field_order() {
    // serde's derived `Deserialize` for structs also accepts a JSON array of the
    // fields in declaration order. A JOSE header is a JSON object (RFC 7515 §4);
    // `["EdDSA", kid, "agent+jwt", null, …]` must not be read as one, even signed.
    let key = &fixture().ed;
    let header = format!(
        r#"["EdDSA","{}","agent+jwt",null,null,null,null,null,null,null,null]"#,
        key.kid()
    );
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::HeaderNotObject,
    );
}

#[test]
fn header_nested_too_deep() {
    let key = &fixture().ed;
    let deep = "[".repeat(100) + &"]".repeat(100);
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","x":{deep}}}"#,
        key.kid()
    );
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::Json(Segment::Header, JsonError::TooDeep(16)),
    );
}

#[test]
fn header_not_json() {
    let t = join(&enc("{alg:EdDSA}"), &enc(&claims_json()), "AAAA");
    invalid(&t, TokenError::Json(Segment::Header, JsonError::Syntax));
    let t = join(
        &enc(&(header_json(&fixture().ed) + " x")),
        &enc("{}"),
        "AAAA",
    );
    invalid(&t, TokenError::Json(Segment::Header, JsonError::Syntax));
}

#[test]
fn wrong_typ_jwt() {
    let key = &fixture().ed;
    let header = format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{}"}}"#, key.kid());
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::WrongType {
            found: "JWT".into(),
            expected: "agent+jwt",
        },
    );
}

#[test]
fn missing_typ() {
    let key = &fixture().ed;
    let header = format!(r#"{{"alg":"EdDSA","kid":"{}"}}"#, key.kid());
    invalid(
        &signed_raw(key, &header, claims_json().as_bytes()),
        TokenError::WrongType {
            found: String::new(),
            expected: "agent+jwt",
        },
    );
}

#[test]
fn typ_lookalikes() {
    let key = &fixture().ed;
    for typ in [
        "agent+jwt ",
        "application/agent+jwt+x",
        "at+jwt",
        "dpop+jwt",
        "text/agent+jwt",
        "application/",
    ] {
        let header = serde_json::json!({"alg": "EdDSA", "typ": typ, "kid": key.kid()}).to_string();
        invalid(
            &signed_raw(key, &header, claims_json().as_bytes()),
            TokenError::WrongType {
                found: typ.into(),
                expected: "agent+jwt",
            },
        );
    }
}

#[test]
fn alg_key_mismatch_eddsa_header_with_es256_kid() {
    // The attacker signs with any EdDSA key; the header names our ES256 key.
    let attacker = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let header = format!(
        r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}"}}"#,
        fixture().es.kid()
    );
    invalid(
        &signed_raw(&attacker, &header, claims_json().as_bytes()),
        TokenError::AlgorithmKeyMismatch,
    );
}

#[test]
fn alg_key_mismatch_every_pair() {
    let f = fixture();
    for key_alg in ALGS {
        for header_alg in ALGS {
            if key_alg == header_alg {
                continue;
            }
            let header = format!(
                r#"{{"alg":"{}","typ":"agent+jwt","kid":"{}"}}"#,
                header_alg.as_str(),
                f.key(key_alg).kid()
            );
            // Signed by the header's algorithm's key, as an attacker would.
            invalid(
                &signed_raw(f.key(header_alg), &header, claims_json().as_bytes()),
                TokenError::AlgorithmKeyMismatch,
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// Duplicate claims and claim types (signed with the real key).

fn dup_claim(name: &str, extra: &str) -> String {
    let json = claims_json();
    let needle = format!("\"{name}\":");
    let at = json.find(&needle).unwrap();
    format!("{}\"{name}\":{extra},{}", &json[..at], &json[at..])
}

#[test]
fn duplicate_exp_claim() {
    for alg in ALGS {
        let payload = dup_claim("exp", &(NOW + 10 * 365 * 24 * 3600).to_string());
        let t = jws::sign_compact(fixture().key(alg), "agent+jwt", payload.as_bytes()).unwrap();
        invalid(
            &t,
            TokenError::Json(Segment::Payload, JsonError::DuplicateKey("exp".into())),
        );
    }
}

#[test]
fn duplicate_sub_claim() {
    let other = bonafide_core::ids::AgentId::from_random([0x99; 16]);
    let payload = dup_claim("sub", &format!("\"{other}\""));
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", payload.as_bytes()).unwrap();
    invalid(
        &t,
        TokenError::Json(Segment::Payload, JsonError::DuplicateKey("sub".into())),
    );
}

#[test]
fn duplicate_nested_scopes_claim() {
    let json = claims_json().replace("\"scopes\":", "\"scopes\":[\"admin:all\"],\"scopes\":");
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(
        &t,
        TokenError::Json(Segment::Payload, JsonError::DuplicateKey("scopes".into())),
    );
}

#[test]
fn claims_nested_100_deep() {
    let deep = "{\"a\":".repeat(100) + "1" + &"}".repeat(100);
    let json = claims_json().replacen('{', &format!("{{\"deep\":{deep},"), 1);
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(
        &t,
        TokenError::Json(Segment::Payload, JsonError::TooDeep(16)),
    );
}

/// The genuine claims with `extra` (`"name":value` members) inserted first, signed.
fn with_claims(extra: &str) -> String {
    let json = claims_json().replacen('{', &format!("{{{extra},"), 1);
    jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap()
}

fn payload_dup(name: &str) -> TokenError {
    TokenError::Json(Segment::Payload, JsonError::DuplicateKey(name.into()))
}

#[test]
fn duplicate_member_inside_the_agent_claim() {
    let json = claims_json().replace("\"name\":", "\"name\":\"Someone else\",\"name\":");
    assert_ne!(json, claims_json());
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(&t, payload_dup("name"));
}

#[test]
fn duplicate_claims_spelled_with_escapes() {
    // `\u0065xp` is `exp`: the same member, after it and before it.
    let later = NOW + 10 * 365 * 24 * 3600;
    let json = claims_json().replacen('{', &format!("{{\"\\u0065xp\":{later},"), 1);
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(&t, payload_dup("exp"));
    let json = claims_json().replace("\"exp\":", &format!("\"exp\":{later},\"\\u0065xp\":"));
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(&t, payload_dup("exp"));
    // Inside the `agent` claim: `n\u0061me` is `name`.
    let json = claims_json().replace("\"name\":", "\"n\\u0061me\":\"Someone else\",\"name\":");
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(&t, payload_dup("name"));
    // Names that differ after unescaping are not duplicates: an unknown `\u0045xp`
    // (`Exp`) is ignored like any unknown claim.
    check(&with_claims(r#""\u0045xp":1"#)).unwrap();
}

#[test]
fn duplicate_members_inside_claims_the_verifier_does_not_read() {
    // An unknown claim is ignored, but still strict JSON: its duplicates are refused.
    invalid(&with_claims(r#""x":{"k":1,"k":2}"#), payload_dup("k"));
    invalid(&with_claims(r#""x":[[{"k":1,"k":2}]]"#), payload_dup("k"));
    invalid(&with_claims(r#""x":1,"x":2"#), payload_dup("x"));
    // Inside the policy (read as arbitrary JSON), before `policy_hash` is looked at.
    invalid(
        &with_claims(r#""policy":{"rules":[{"a":1,"a":1}]}"#),
        payload_dup("a"),
    );
}

#[test]
fn duplicate_claim_after_many_claims() {
    // Past the handful of names the duplicate check keeps inline.
    let many: Vec<String> = (0..40).map(|i| format!("\"x{i}\":{i}")).collect();
    check(&with_claims(&many.join(","))).unwrap();
    invalid(
        &with_claims(&format!("{},\"x3\":0", many.join(","))),
        payload_dup("x3"),
    );
    invalid(
        &with_claims(&format!("{},\"\\u0078\\u0033\":0", many.join(","))),
        payload_dup("x3"),
    );
    // And a duplicate of a claim the verifier reads, after them.
    invalid(
        &with_claims(&format!(
            "{},\"iss\":\"https://evil.example\"",
            many.join(",")
        )),
        payload_dup("iss"),
    );
}

#[test]
fn claims_nested_exactly_to_the_depth_bound_and_one_past() {
    // The claims object is level 1: fifteen more levels are the bound of 16.
    let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
    check(&with_claims(&format!("\"deep\":{}", nested(15)))).unwrap();
    invalid(
        &with_claims(&format!("\"deep\":{}", nested(16))),
        TokenError::Json(Segment::Payload, JsonError::TooDeep(16)),
    );
    let objects = |n: usize| "{\"a\":".repeat(n) + "1" + &"}".repeat(n);
    check(&with_claims(&format!("\"deep\":{}", objects(15)))).unwrap();
    invalid(
        &with_claims(&format!("\"deep\":{}", objects(16))),
        TokenError::Json(Segment::Payload, JsonError::TooDeep(16)),
    );
}

#[test]
fn strict_json_errors_come_before_claim_type_errors() {
    // `exp` as a string would be a typed-claims error, but the duplicate after it is
    // found first, as the JSON check precedes the typed parse.
    let json = claims_json().replacen('{', r#"{"exp":"soon","x":{"k":1,"k":2},"#, 1);
    let json = json.replacen(&format!(",\"exp\":{}", claims().exp), "", 1);
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(&t, payload_dup("k"));
    // The same typed-claims error, then bytes after the claims object.
    let json = claims_json().replace(
        &format!("\"exp\":{}", claims().exp),
        &format!("\"exp\":\"{}\"", claims().exp),
    ) + " x";
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    invalid(&t, TokenError::Json(Segment::Payload, JsonError::Syntax));
}

#[test]
fn claims_exp_as_string() {
    let json = claims_json().replace(
        &format!("\"exp\":{}", claims().exp),
        &format!("\"exp\":\"{}\"", claims().exp),
    );
    assert_ne!(json, claims_json());
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    assert!(
        matches!(check(&t), Err(TokenError::Claims(_))),
        "{:?}",
        check(&t)
    );
    assert_eq!(check(&t).unwrap_err().code(), ErrorCode::TokenInvalid);
}

#[test]
fn claims_exp_as_float() {
    let json = claims_json().replace(
        &format!("\"exp\":{}", claims().exp),
        &format!("\"exp\":{}.5", claims().exp),
    );
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    assert!(
        matches!(check(&t), Err(TokenError::Claims(_))),
        "{:?}",
        check(&t)
    );
    let json = claims_json().replace(&format!("\"exp\":{}", claims().exp), "\"exp\":1e300");
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    assert!(
        matches!(check(&t), Err(TokenError::Claims(_))),
        "{:?}",
        check(&t)
    );
}

#[test]
fn claims_exp_beyond_i64() {
    let json = claims_json().replace(
        &format!("\"exp\":{}", claims().exp),
        "\"exp\":18446744073709551615",
    );
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", json.as_bytes()).unwrap();
    assert!(
        matches!(check(&t), Err(TokenError::Claims(_))),
        "{:?}",
        check(&t)
    );
}

#[test]
fn claims_sub_not_an_agent_id() {
    for sub in [
        "admin",
        "tok_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "agt_",
        "agt_AAAAAAAAAAAAAAAAAAAAAAAAAA",
        "agt_../../../../etc/passwd00000",
    ] {
        let mut v = serde_json::to_value(claims()).unwrap();
        v["sub"] = sub.into();
        let t = jws::sign_compact(&fixture().ed, "agent+jwt", v.to_string().as_bytes()).unwrap();
        assert!(matches!(check(&t), Err(TokenError::Claims(_))), "{sub}");
    }
}

#[test]
fn claims_missing_required_members() {
    for member in ["iss", "sub", "iat", "exp", "jti", "agent"] {
        let mut v = serde_json::to_value(claims()).unwrap();
        v.as_object_mut().unwrap().remove(member);
        let t = jws::sign_compact(&fixture().ed, "agent+jwt", v.to_string().as_bytes()).unwrap();
        assert!(matches!(check(&t), Err(TokenError::Claims(_))), "{member}");
    }
}

#[test]
fn claims_as_a_json_array_in_field_order() {
    // Same serde quirk as the header: claims must be a JSON object (RFC 7519 §7.2).
    let c = claims();
    let v = serde_json::json!([
        c.iss, c.sub, c.aud, c.iat, c.nbf, c.exp, c.jti, c.agent, c.scope
    ]);
    let t = jws::sign_compact(&fixture().ed, "agent+jwt", v.to_string().as_bytes()).unwrap();
    assert!(
        matches!(check(&t), Err(TokenError::Claims(_))),
        "{:?}",
        check(&t)
    );
}

#[test]
fn claims_scope_wider_than_agent_scopes() {
    let mut c = claims();
    c.scope = Some("read:portfolio read:transactions write:transfers".into());
    let t = token::sign(&fixture().ed, &c).unwrap();
    assert!(matches!(check(&t), Err(TokenError::Claims(_))));
}

#[test]
fn claims_exp_not_after_iat() {
    let mut c = claims();
    c.exp = c.iat;
    let t = token::sign(&fixture().ed, &c).unwrap();
    assert!(matches!(check(&t), Err(TokenError::Claims(_))));
}

// ---------------------------------------------------------------------------------
// Time (leeway 60 s).

fn at(t: &str, now: i64) -> Result<token::VerifiedToken, TokenError> {
    token::verify(t, &fixture().keys, &opts(), now)
}

#[test]
fn expired() {
    let c = claims();
    let t = good_token(Algorithm::EdDSA);
    let err = at(&t, c.exp + 3600).unwrap_err();
    assert_eq!(err, TokenError::Expired { exp: c.exp });
    assert_eq!(err.code(), ErrorCode::TokenExpired);
    assert_eq!(err.code().as_str(), "TOKEN_EXPIRED");
}

#[test]
fn expired_but_within_leeway_is_valid() {
    let c = claims();
    let t = good_token(Algorithm::EdDSA);
    at(&t, c.exp).unwrap();
    at(&t, c.exp + 59).unwrap();
    assert_eq!(
        at(&t, c.exp + 60).unwrap_err(),
        TokenError::Expired { exp: c.exp }
    );
}

#[test]
fn not_yet_valid_nbf() {
    let mut c = claims();
    c.nbf = Some(NOW + 3600);
    c.exp = NOW + 7200;
    let t = token::sign(&fixture().ed, &c).unwrap();
    refused(
        &t,
        TokenError::NotYetValid {
            not_before: NOW + 3600,
        },
        ErrorCode::TokenNotYetValid,
    );
    // Within leeway of nbf it is valid.
    at(&t, NOW + 3600 - 60).unwrap();
    assert!(at(&t, NOW + 3600 - 61).is_err());
}

#[test]
fn issued_in_the_future() {
    let mut c = claims();
    c.iat = NOW + 3600;
    c.nbf = None;
    c.exp = NOW + 7200;
    let t = token::sign(&fixture().ed, &c).unwrap();
    refused(
        &t,
        TokenError::NotYetValid {
            not_before: NOW + 3600,
        },
        ErrorCode::TokenNotYetValid,
    );
    assert_eq!(
        check(&t).unwrap_err().code().as_str(),
        "TOKEN_NOT_YET_VALID"
    );
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut c = claims();
    c.exp = i64::MAX;
    let t = token::sign(&fixture().ed, &c).unwrap();
    check(&t).unwrap();
    at(&t, i64::MIN).unwrap_err(); // before iat
    let mut c = claims();
    c.iat = i64::MIN;
    c.nbf = Some(i64::MIN);
    let t = token::sign(&fixture().ed, &c).unwrap();
    check(&t).unwrap();
}

// ---------------------------------------------------------------------------------
// Audience and issuer.

fn opts_for_audience(aud: &str) -> VerifyOptions {
    let mut o = opts();
    o.audience = token::AudienceRule::one(aud);
    o
}

#[test]
fn a_token_with_aud_is_refused_by_a_verifier_that_names_no_audience() {
    let t = good_token(Algorithm::EdDSA);
    let mut o = opts();
    o.audience = token::AudienceRule::Unnamed;
    let e = token::verify(&t, &fixture().keys, &o, NOW).unwrap_err();
    assert_eq!(e, TokenError::AudienceUnnamed);
    assert_eq!(e.code().as_str(), "AUDIENCE_MISMATCH");
    o.audience = token::AudienceRule::AnyOf(vec!["x".into(), AUD.into()]);
    token::verify(&t, &fixture().keys, &o, NOW).unwrap();
    o.audience = token::AudienceRule::Unchecked;
    token::verify(&t, &fixture().keys, &o, NOW).unwrap();
}

#[test]
fn wrong_audience() {
    let t = good_token(Algorithm::EdDSA);
    let err = token::verify(
        &t,
        &fixture().keys,
        &opts_for_audience("https://other.example"),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        TokenError::AudienceMismatch("https://other.example".into())
    );
    assert_eq!(err.code(), ErrorCode::AudienceMismatch);
    assert_eq!(err.code().as_str(), "AUDIENCE_MISMATCH");
    // The right one passes.
    token::verify(&t, &fixture().keys, &opts_for_audience(AUD), NOW).unwrap();
}

#[test]
fn audience_list() {
    let mut c = claims();
    c.aud = Some(Audience::Many(vec!["a".into(), AUD.into()]));
    let t = token::sign(&fixture().ed, &c).unwrap();
    token::verify(&t, &fixture().keys, &opts_for_audience(AUD), NOW).unwrap();
    assert!(token::verify(&t, &fixture().keys, &opts_for_audience("b"), NOW).is_err());
    c.aud = Some(Audience::Many(vec![]));
    let t = token::sign(&fixture().ed, &c).unwrap();
    assert_eq!(
        token::verify(&t, &fixture().keys, &opts_for_audience(AUD), NOW).unwrap_err(),
        TokenError::AudienceMismatch(AUD.into())
    );
}

#[test]
fn audience_is_not_a_prefix_or_case_match() {
    let t = good_token(Algorithm::EdDSA);
    for aud in [
        "https://api.receiver.exampl",
        "HTTPS://API.RECEIVER.EXAMPLE",
        "",
    ] {
        assert!(token::verify(&t, &fixture().keys, &opts_for_audience(aud), NOW).is_err());
    }
}

#[test]
fn token_without_aud_accepted_when_receiver_names_one() {
    let mut c = claims();
    c.aud = None;
    let t = token::sign(&fixture().ed, &c).unwrap();
    token::verify(&t, &fixture().keys, &opts_for_audience(AUD), NOW).unwrap();
}

#[test]
fn unknown_issuer() {
    let mut c = claims();
    c.iss = "https://attacker.example".into();
    let t = token::sign(&fixture().ed, &c).unwrap();
    refused(
        &t,
        TokenError::IssuerUnknown("https://attacker.example".into()),
        ErrorCode::IssuerUnknown,
    );
    assert_eq!(check(&t).unwrap_err().code().as_str(), "ISSUER_UNKNOWN");
}

#[test]
fn issuer_lookalikes() {
    for iss in [
        "https://registry.example/",
        "https://registry.example.attacker.example",
        "HTTPS://REGISTRY.EXAMPLE",
        "https://registry.example\u{0}",
    ] {
        let mut c = claims();
        c.iss = iss.into();
        let t = token::sign(&fixture().ed, &c).unwrap();
        assert_eq!(
            check(&t).unwrap_err().code(),
            ErrorCode::IssuerUnknown,
            "{iss:?}"
        );
    }
}

#[test]
fn no_issuers_configured_means_none_accepted() {
    let t = good_token(Algorithm::EdDSA);
    let mut o = opts();
    o.issuers.clear();
    assert_eq!(
        token::verify(&t, &fixture().keys, &o, NOW).unwrap_err(),
        TokenError::IssuerUnknown(ISS.into())
    );
}

// ---------------------------------------------------------------------------------
// Encoding strictness (pipeline step 1).

#[test]
fn padded_base64url_segments() {
    for alg in ALGS {
        let (h, p, s) = parts(&good_token(alg));
        invalid(
            &join(&format!("{h}="), &p, &s),
            TokenError::Base64(Segment::Header),
        );
        invalid(
            &join(&h, &p, &format!("{s}=")),
            TokenError::Base64(Segment::Signature),
        );
        invalid(
            &join(&h, &p, &format!("{s}==")),
            TokenError::Base64(Segment::Signature),
        );
    }
}

#[test]
fn padded_payload_even_when_signed() {
    // The signer signed the padded text: the signature holds, the encoding must not.
    let key = &fixture().ed;
    let mut payload = claims_json();
    while payload.len().is_multiple_of(3) {
        payload.push(' ');
    }
    let p = enc(&payload);
    let padding = "=".repeat((4 - p.len() % 4) % 4);
    assert!(!padding.is_empty());
    let input = format!("{}.{p}{padding}", enc(&header_json(key)));
    invalid(
        &signed_input(key, &input),
        TokenError::Base64(Segment::Payload),
    );
}

#[test]
fn standard_alphabet_characters() {
    // Find a signature containing '-' or '_' (most do) and swap to '+' / '/'.
    for i in 0u8..=255 {
        let mut c = claims();
        c.jti = bonafide_core::ids::TokenId::from_random([i; 16]);
        let t = token::sign(&fixture().ed, &c).unwrap();
        let (h, p, s) = parts(&t);
        if s.contains(['-', '_']) {
            let std = s.replace('-', "+").replace('_', "/");
            invalid(&join(&h, &p, &std), TokenError::Base64(Segment::Signature));
            return;
        }
    }
    panic!("no signature with '-' or '_' in 256 tries");
}

#[test]
fn standard_alphabet_header_even_when_signed() {
    let key = &fixture().ed;
    // Pad the header until its encoding has a '-' or '_'.
    for n in 0..64 {
        let header = format!(
            r#"{{"alg":"EdDSA","typ":"agent+jwt","kid":"{}","pad":"{}"}}"#,
            key.kid(),
            "~".repeat(n)
        );
        let h = enc(&header);
        if h.contains(['-', '_']) {
            let std = h.replace('-', "+").replace('_', "/");
            let input = format!("{std}.{}", enc(&claims_json()));
            invalid(
                &signed_input(key, &input),
                TokenError::Base64(Segment::Header),
            );
            return;
        }
    }
    panic!("no header encoding with '-' or '_'");
}

#[test]
fn non_canonical_trailing_bits_in_signature() {
    for alg in ALGS {
        let (h, p, s) = parts(&good_token(alg));
        let sig_len = b64::decode(&s).unwrap().len();
        // 64- and 256-octet signatures leave 4 unused bits in the last character.
        assert_ne!(sig_len % 3, 0);
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = *s.as_bytes().last().unwrap();
        let v = ALPHABET.iter().position(|&c| c == last).unwrap();
        let tweaked = char::from(ALPHABET[v | 1]);
        let s2 = format!("{}{tweaked}", &s[..s.len() - 1]);
        assert_ne!(s2, s);
        // Same signature bytes to a lenient decoder; one encoding only for us.
        invalid(&join(&h, &p, &s2), TokenError::Base64(Segment::Signature));
    }
}

#[test]
fn non_canonical_trailing_bits_in_payload_even_when_signed() {
    let key = &fixture().ed;
    let mut payload = claims_json();
    while payload.len().is_multiple_of(3) {
        payload.push(' ');
    }
    let p = enc(&payload);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *p.as_bytes().last().unwrap();
    let v = ALPHABET.iter().position(|&c| c == last).unwrap();
    let p2 = format!("{}{}", &p[..p.len() - 1], char::from(ALPHABET[v | 1]));
    assert_ne!(p2, p);
    let input = format!("{}.{p2}", enc(&header_json(key)));
    invalid(
        &signed_input(key, &input),
        TokenError::Base64(Segment::Payload),
    );
}

#[test]
fn whitespace_inside_the_token() {
    let (h, p, s) = parts(&good_token(Algorithm::EdDSA));
    let mid = |x: &str, ws: &str| format!("{}{ws}{}", &x[..x.len() / 2], &x[x.len() / 2..]);
    for ws in ["\n", " ", "\t", "\r\n"] {
        invalid(
            &join(&mid(&h, ws), &p, &s),
            TokenError::Base64(Segment::Header),
        );
        invalid(
            &join(&h, &p, &mid(&s, ws)),
            TokenError::Base64(Segment::Signature),
        );
        // The payload text is covered by the signature, which is checked before the
        // payload is decoded (pipeline step 3 before 4).
        invalid(&join(&h, &mid(&p, ws), &s), TokenError::BadSignature);
        // Around the token: not trimmed.
        invalid(
            &format!("{ws}{h}.{p}.{s}"),
            TokenError::Base64(Segment::Header),
        );
        invalid(
            &format!("{h}.{p}.{s}{ws}"),
            TokenError::Base64(Segment::Signature),
        );
    }
}

#[test]
fn whitespace_in_payload_even_when_signed() {
    let key = &fixture().ed;
    let p = enc(&claims_json());
    let input = format!(
        "{}.{}\n{}",
        enc(&header_json(key)),
        &p[..p.len() / 2],
        &p[p.len() / 2..]
    );
    invalid(
        &signed_input(key, &input),
        TokenError::Base64(Segment::Payload),
    );
}

// ---------------------------------------------------------------------------------
// Shape and size.

#[test]
fn oversized_token() {
    let t = format!("{}{}", good_token(Algorithm::EdDSA), "A".repeat(8192));
    let size = t.len();
    invalid(&t, TokenError::TooLarge { size, max: 8192 });
    // A huge one is refused before anything is decoded.
    let huge = "A".repeat(10 * 1024 * 1024);
    invalid(
        &huge,
        TokenError::TooLarge {
            size: huge.len(),
            max: 8192,
        },
    );
}

#[test]
fn size_cap_boundary_is_8192_bytes() {
    // Grow the description until the token crosses 8 KiB: the last one at or under
    // the cap verifies, the first over it is refused for size.
    let key = &fixture().ed;
    let mut last_ok = None;
    for n in 5000..6500 {
        let mut c = claims();
        c.agent.description = Some("d".repeat(n));
        let t = token::sign(key, &c).unwrap();
        if t.len() <= 8192 {
            last_ok = Some(t);
        } else {
            let ok = last_ok.expect("start below the cap");
            assert!(ok.len() > 8180, "{}", ok.len());
            check(&ok).unwrap();
            let size = t.len();
            invalid(&t, TokenError::TooLarge { size, max: 8192 });
            return;
        }
    }
    panic!("never crossed the cap");
}

#[test]
fn four_segments() {
    let t = good_token(Algorithm::EdDSA);
    invalid(&format!("{t}.AAAA"), TokenError::Shape);
    invalid(&format!("{t}."), TokenError::Shape);
    let (h, p, s) = parts(&t);
    invalid(&format!("{h}.{p}.{p}.{s}"), TokenError::Shape);
}

#[test]
fn two_segments() {
    let (h, p, _) = parts(&good_token(Algorithm::EdDSA));
    invalid(&format!("{h}.{p}"), TokenError::Shape);
    invalid(&h, TokenError::Shape);
}

#[test]
fn empty_segments() {
    let (h, p, s) = parts(&good_token(Algorithm::EdDSA));
    invalid(&join("", &p, &s), TokenError::Shape);
    invalid(&join(&h, "", &s), TokenError::Shape);
    invalid("..", TokenError::Shape);
    invalid(".", TokenError::Shape);
}

#[test]
fn empty_token() {
    invalid("", TokenError::Shape);
}

#[test]
fn jwe_shaped_token() {
    // Five segments, as a JWE would have.
    invalid("eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", TokenError::Shape);
}

#[test]
fn garbage_unicode() {
    invalid("é.ü.ß", TokenError::Base64(Segment::Header));
    invalid("\u{0}\u{ffff}\u{10ffff}", TokenError::Shape);
    invalid("🦀🦀.🦀.🦀", TokenError::Base64(Segment::Header));
    invalid("\u{202e}abc.def.ghi", TokenError::Base64(Segment::Header));
    invalid(
        "eyJhbGciOiJFZERTQSJ9\u{ff0e}e30\u{ff0e}AAAA", // fullwidth dots
        TokenError::Shape,
    );
}

#[test]
fn bearer_prefix_is_not_stripped() {
    let t = good_token(Algorithm::EdDSA);
    invalid(&format!("Bearer {t}"), TokenError::Base64(Segment::Header));
}

#[test]
fn compact_split_signing_input_is_exact() {
    let t = good_token(Algorithm::ES256);
    let c = Compact::split(&t, 8192).unwrap();
    assert_eq!(
        c.signing_input,
        format!("{}.{}", c.header_b64, c.payload_b64)
    );
    assert_eq!(format!("{}.{}", c.signing_input, c.signature_b64), t);
}

// ---------------------------------------------------------------------------------
// Key sets.

#[test]
fn empty_key_set_knows_nothing() {
    let t = good_token(Algorithm::EdDSA);
    assert_eq!(
        token::verify(&t, &KeySet::new(), &opts(), NOW).unwrap_err(),
        TokenError::UnknownKey
    );
}

#[test]
fn jwk_declared_kid_is_replaced_by_thumbprint() {
    // A JWKS entry cannot claim someone else's kid.
    let mut v = serde_json::to_value(fixture().ed.verifying_key().jwk()).unwrap();
    v["kid"] = fixture().es.kid().into();
    let jwk: Jwk = serde_json::from_value(v).unwrap();
    let key = VerifyingKey::from_jwk(&jwk).unwrap();
    assert_eq!(key.kid(), fixture().ed.kid());
}

#[test]
fn jwks_with_private_key_member_is_refused() {
    let mut v = serde_json::to_value(fixture().es.verifying_key().jwk()).unwrap();
    v["d"] = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI".into();
    let jwks: bonafide_core::keys::Jwks =
        serde_json::from_value(serde_json::json!({"keys": [v]})).unwrap();
    assert_eq!(
        KeySet::from_jwks(&jwks).unwrap_err(),
        KeyError::PrivateMaterial("d")
    );
}

#[test]
fn ec_point_not_on_curve_is_refused() {
    let mut v = serde_json::to_value(fixture().es.verifying_key().jwk()).unwrap();
    let mut y = b64::decode(v["y"].as_str().unwrap()).unwrap();
    y[31] ^= 1;
    v["y"] = b64::encode(&y).into();
    let jwk: Jwk = serde_json::from_value(v).unwrap();
    assert!(matches!(
        VerifyingKey::from_jwk(&jwk),
        Err(KeyError::Rejected(_))
    ));
}

#[test]
fn symmetric_jwk_is_refused() {
    let jwk: Jwk = serde_json::from_value(serde_json::json!({
        "kty": "oct", "k": "hJtXIZ2uSN5kbQfbtTNWbpdmhkV8FJG-Onbc6mxCcYg", "alg": "HS256"
    }))
    .unwrap();
    assert!(VerifyingKey::from_jwk(&jwk).is_err());
}

// ---- consent policy inside a token (pipeline step 7)

fn policy_json() -> serde_json::Value {
    serde_json::json!({
        "version": "pol.v0.2",
        "id": "pol_travel_001",
        "actions": ["payments.send"],
        "limits": {"per_txn": {"amount": "500", "currency": "USD"}}
    })
}

fn signed_with_policy(policy: serde_json::Value, hash: Option<String>) -> String {
    let mut c = common::claims();
    c.policy = Some(policy);
    c.policy_hash = hash;
    token::sign(&common::fixture().ed, &c).unwrap()
}

#[test]
fn control_a_policy_with_its_hash_verifies_and_parses() {
    let p = bonafide_core::policy::Policy::from_value(policy_json()).unwrap();
    let t = signed_with_policy(policy_json(), Some(p.hash().to_owned()));
    let v = common::check(&t).unwrap();
    let parsed = token::policy_of(&v.claims).unwrap().unwrap();
    assert_eq!(parsed.id(), "pol_travel_001");
    assert_eq!(parsed.hash(), p.hash());
}

#[test]
fn a_policy_hash_of_another_policy_is_token_invalid() {
    let mut other = policy_json();
    other["limits"]["per_txn"]["amount"] = "5000".into();
    let other_hash = bonafide_core::policy::Policy::from_value(other)
        .unwrap()
        .hash()
        .to_owned();
    // Genuinely signed, but the hash names a policy with ten times the limit.
    let t = signed_with_policy(policy_json(), Some(other_hash));
    let v = common::check(&t).unwrap();
    let err = token::policy_of(&v.claims).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TokenInvalid);
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn a_policy_without_its_hash_or_a_hash_without_a_policy_is_token_invalid() {
    let t = signed_with_policy(policy_json(), None);
    let err = common::check(&t).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TokenInvalid);
    let mut c = common::claims();
    c.policy_hash = Some(format!("sha256:{}", "0".repeat(64)));
    let t = token::sign(&common::fixture().ed, &c).unwrap();
    assert_eq!(
        common::check(&t).unwrap_err().code(),
        ErrorCode::TokenInvalid
    );
}

#[test]
fn an_invalid_policy_in_a_signed_token_is_token_invalid() {
    let mut bad = policy_json();
    bad["limits"]["per_txn"]["amount"] = serde_json::json!(10.5);
    let t = signed_with_policy(bad, Some(format!("sha256:{}", "0".repeat(64))));
    let v = common::check(&t).unwrap();
    let err = token::policy_of(&v.claims).unwrap_err();
    assert_eq!(err.code(), ErrorCode::TokenInvalid);
    assert!(err.to_string().contains("policy"), "{err}");
}

// ---------------------------------------------------------------------------------
// Lifetime.

#[test]
fn a_token_outliving_the_verifiers_maximum_lifetime_is_invalid() {
    let mut o = opts();
    o.max_lifetime_secs = Some(3600);
    let mut c = claims();
    c.exp = c.iat + 3600;
    let t = token::sign(&fixture().ed, &c).unwrap();
    token::verify(&t, &fixture().keys, &o, NOW).unwrap();
    for exp in [c.iat + 3601, i64::MAX, 1 << 53] {
        c.exp = exp;
        let t = token::sign(&fixture().ed, &c).unwrap();
        let e = token::verify(&t, &fixture().keys, &o, NOW).unwrap_err();
        assert_eq!(e.code().as_str(), "TOKEN_INVALID", "{e}");
        assert!(e.to_string().contains("max_token_ttl"), "{e}");
    }
    // No maximum set: the library's default accepts it (the registry sets one).
    token::verify(&t, &fixture().keys, &opts(), NOW).unwrap();
}
