//! `domain_proof::verify` against a fixed key set.
//!
//! The first byte picks the mode. Even: the rest, as UTF-8, is a compact proof to
//! verify (size, header, type and signature checks; the fuzzer cannot forge a
//! signature). Odd: the rest is a payload that the fixed Ed25519 key signs as a
//! `bonafide-domain-proof+jwt`, which is then verified, so the claims checks behind
//! the signature are fuzzed too. Properties: nothing panics; a verified proof states
//! the expected issuer, domain and audience, with `iat` within the allowed skew.
#![no_main]

use bonafide_core::domain_proof::{self, DOMAIN_PROOF_TYP, Expected, MAX_SKEW_SECS};
use bonafide_core::jws;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = bonafide_fuzz::key_set();
    let expected = Expected {
        issuer: "iss_fuzz",
        domain: "fuzz.example",
        audience: bonafide_fuzz::ISSUER,
        now: bonafide_fuzz::NOW,
    };
    let proof = if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        let Ok(proof) = jws::sign_compact(bonafide_fuzz::token_key(), DOMAIN_PROOF_TYP, rest)
        else {
            return;
        };
        proof
    };
    if let Ok(v) = domain_proof::verify(&proof, keys, &expected) {
        assert_eq!(v.claims.iss, expected.issuer);
        assert!(v.claims.domain.eq_ignore_ascii_case(expected.domain));
        assert!((v.claims.iat - expected.now).abs() <= MAX_SKEW_SECS);
    }
});
