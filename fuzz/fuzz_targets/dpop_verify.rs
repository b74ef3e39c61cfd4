//! `dpop::verify` with a fixed bound thumbprint and request.
//!
//! The first byte picks the mode. Even: the rest, as UTF-8, is a proof to verify
//! (shape, header, thumbprint and signature checks; the fuzzer cannot forge a
//! signature). Odd: the rest is a claims payload that the fixed Ed25519 key signs
//! under a well-formed `dpop+jwt` header carrying its own `jwk`, so the claims checks
//! (`jti`, `htm`, `htu` normalisation, `iat` window, `ath`) behind the signature are
//! fuzzed too. Properties: nothing panics; a verified proof is bound to the fixed key,
//! within the window, with a non-empty `jti`.
#![no_main]

use bonafide_core::b64;
use bonafide_core::dpop::{self, ProofCheck};
use libfuzzer_sys::fuzz_target;

const HTM: &str = "POST";
const HTU: &str = "https://shop.example/v1/orders";
const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = bonafide_fuzz::token_key();
    let jkt = key.kid();
    let proof = if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        let Ok(jwk) = serde_json::to_string(key.verifying_key().jwk()) else {
            return;
        };
        let header = format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{jwk}}}"#);
        let input = format!("{}.{}", b64::encode(header.as_bytes()), b64::encode(rest));
        let Ok(sig) = key.sign(input.as_bytes()) else {
            return;
        };
        format!("{input}.{}", b64::encode(&sig))
    };
    let check = ProofCheck::new(HTM, HTU, jkt, TOKEN, bonafide_fuzz::NOW);
    if let Ok(v) = dpop::verify(&proof, &check) {
        assert_eq!(v.jkt, jkt);
        assert!(!v.jti.is_empty());
        assert!(v.iat >= bonafide_fuzz::NOW - check.max_age);
        assert!(v.iat <= bonafide_fuzz::NOW + check.leeway);
    }
    // Normalisation is total and idempotent.
    if let Ok(text) = std::str::from_utf8(rest)
        && let Ok(once) = dpop::normalize_htu(text)
    {
        assert_eq!(dpop::normalize_htu(&once).as_deref(), Ok(once.as_str()));
    }
});
