//! Bonafide core: the pure part of verifying AI agents.
//!
//! Keys and JWKS ([`keys`]), the hardened compact JWS ([`jws`]), agent tokens and their
//! verification pipeline ([`token`]), AgentOAuth consent tokens ([`consent`]),
//! identifiers ([`ids`]), API keys ([`apikey`]) and scopes ([`scopes`]), the RFC 6962
//! Merkle tree of the audit log ([`merkle`]) and its C2SP signed checkpoints ([`note`]),
//! and the canonical entries it holds ([`audit`]), and consent policies with their
//! pure evaluation ([`policy`]).
//!
//! Architecture invariant: this crate does no I/O, spawns nothing, is not async and
//! never reads the clock: `now` is an argument. Random bytes for identifiers and API
//! keys are passed in. The one exception is AWS-LC's internal DRBG for key generation
//! and ECDSA nonces, which cannot be injected.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_token;
pub mod apikey;
pub mod audit;
pub mod audit_pack;
pub mod b64;
pub mod consent;
pub mod delegation;
pub mod domain_proof;
pub mod dpop;
pub mod httpsig;
pub mod ids;
mod jcs;
pub mod json;
pub mod jws;
pub mod key_proof;
pub mod keys;
pub mod merkle;
pub mod names;
pub mod note;
pub mod password;
pub mod policy;
pub mod receipt;
pub mod scopes;
pub mod sealed;
pub mod secevent;
pub mod status_list;
pub mod tlog_proof;
pub mod token;
pub mod totp;
pub mod verifier;

use aws_lc_rs::digest;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lowercase hex of `data`.
pub fn hex(data: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(data.len() * 2);
    for &b in data {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Constant-time equality of two byte strings (AWS-LC's `CRYPTO_memcmp`).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
