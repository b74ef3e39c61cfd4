//! `httpsig::verify` of a fuzzed request against the fixed Ed25519 key.
//!
//! The input, as UTF-8, is lines: the method, the URL, then `name: value` headers
//! (`Signature-Input`, `Signature` and covered ones). The key resolver answers the
//! fixed key for its thumbprint only. Properties: nothing panics (structured-field
//! parsing, component derivation, the signature base); a verified signature names the
//! fixed key, covers `@authority` and has a `created` within the window.
#![no_main]

use bonafide_core::httpsig::{self, Check, Message};
use bonafide_core::keys::VerifyingKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let (Some(method), Some(url)) = (lines.next(), lines.next()) else {
        return;
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let key = bonafide_fuzz::token_key();
    let message = Message::Request {
        method,
        url,
        headers: &headers,
    };
    let check = Check::web_bot_auth(bonafide_fuzz::NOW);
    let resolve = |keyid: &str| {
        (keyid == key.kid())
            .then(|| VerifyingKey::from_jwk(key.verifying_key().jwk()).ok())
            .flatten()
    };
    if let Ok(v) = httpsig::verify(&message, &check, resolve) {
        assert_eq!(v.keyid, key.kid());
        assert!(v.covered.iter().any(|c| c == "@authority" || c == "@target-uri"));
        assert!(v.created <= bonafide_fuzz::NOW + check.leeway);
    }
    let _ = httpsig::signature_base(&message, "sig1");
});
