//! `receipt::verify` and `RequestFacts::from_request_json`.
//!
//! The first byte picks the mode. 0: the rest is a receipt JWS to verify against the
//! fixed key set. 1: the rest is a payload that the fixed Ed25519 key signs as a
//! `receipt+jwt`, which is then verified, so the claims checks behind the signature
//! are fuzzed too. Otherwise: the rest is a verify request body; when it parses, its
//! canonical form must parse back to a request with the same digest. Nothing may panic.
#![no_main]

use bonafide_core::jws;
use bonafide_core::receipt::{self, RECEIPT_TYP, RequestFacts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = receipt::verify(text, bonafide_fuzz::key_set());
            }
        }
        1 => {
            if let Ok(jws) = jws::sign_compact(bonafide_fuzz::token_key(), RECEIPT_TYP, rest) {
                if let Ok(claims) = receipt::verify(&jws, bonafide_fuzz::key_set()) {
                    assert_eq!(claims.request_sha256.len(), 64);
                }
            }
        }
        _ => {
            if let Ok(facts) = RequestFacts::from_request_json(rest) {
                // The canonical form is itself a request body meaning the same thing.
                let canonical = facts.canonical();
                let again = RequestFacts::from_request_json(&canonical)
                    .expect("the canonical form of a request parses as a request");
                assert_eq!(again.sha256_hex(), facts.sha256_hex());
            }
        }
    }
});
