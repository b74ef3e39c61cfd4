//! `token::verify` against a fixed key set.
//!
//! The first byte picks the mode. Even: the rest, as UTF-8, is a compact token to
//! verify (size, header and signature checks; the fuzzer cannot forge a signature).
//! Odd: the rest is a payload that the fixed Ed25519 key signs as an `agent+jwt`
//! token, which is then verified, so the claims checks behind the signature are
//! fuzzed too. Properties: nothing panics; a verified token's claims are consistent
//! with the options (issuer accepted, not expired at `NOW`).
#![no_main]

use bonafide_core::jws;
use bonafide_core::token::{self, AGENT_TOKEN_TYP};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = bonafide_fuzz::key_set();
    let opts = bonafide_fuzz::verify_options();
    let token = if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        text.to_owned()
    } else {
        let Ok(token) = jws::sign_compact(bonafide_fuzz::token_key(), AGENT_TOKEN_TYP, rest) else {
            return;
        };
        token
    };
    if let Ok(verified) = token::verify(&token, keys, &opts, bonafide_fuzz::NOW) {
        assert!(opts.issuers.contains(&verified.claims.iss));
        assert!(verified.claims.exp > verified.claims.iat);
    }
});
