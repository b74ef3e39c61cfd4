//! Shared fixtures for the integration tests: one key per algorithm, a key set holding
//! their public halves, typical agent claims, and helpers to hand-craft tokens.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use bonafide_core::b64;
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::token::{
    self, AgentClaims, AgentInfo, Audience, KeySet, TokenError, VerifiedToken, VerifyOptions,
};

/// The registry the test tokens come from.
pub const ISS: &str = "https://registry.example";
/// A receiver named in `aud`.
pub const AUD: &str = "https://api.receiver.example";
/// "Now" for every test: 2025-01-01T00:00:00Z.
pub const NOW: i64 = 1_735_689_600;
/// Token lifetime used by [`claims`].
pub const TTL: i64 = 900;

/// One signing key per algorithm and a key set with their public keys.
pub struct Fixture {
    pub ed: SigningKey,
    pub es: SigningKey,
    pub rs: SigningKey,
    pub keys: KeySet,
}

impl Fixture {
    /// The signing key for `alg`.
    pub fn key(&self, alg: Algorithm) -> &SigningKey {
        match alg {
            Algorithm::EdDSA => &self.ed,
            Algorithm::ES256 => &self.es,
            Algorithm::RS256 => &self.rs,
        }
    }
}

/// The shared fixture (RSA key generation is slow; do it once per test binary).
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let ed = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let es = SigningKey::generate(Algorithm::ES256).unwrap();
        let rs = SigningKey::generate(Algorithm::RS256).unwrap();
        let mut keys = KeySet::new();
        for k in [&ed, &es, &rs] {
            let jwk = k.verifying_key().jwk().clone();
            keys.insert(bonafide_core::keys::VerifyingKey::from_jwk(&jwk).unwrap());
        }
        Fixture { ed, es, rs, keys }
    })
}

pub const ALGS: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// Typical claims, shaped as docs/design.md ("Token") describes, valid at [`NOW`].
pub fn claims() -> AgentClaims {
    AgentClaims {
        iss: ISS.to_owned(),
        sub: AgentId::from_random([0x11; 16]),
        aud: Some(Audience::One(AUD.to_owned())),
        iat: NOW - 10,
        nbf: Some(NOW - 10),
        exp: NOW - 10 + TTL,
        jti: TokenId::from_random([0x22; 16]),
        agent: AgentInfo {
            name: "Portfolio assistant".to_owned(),
            issuer: "apexwealth.com".to_owned(),
            scopes: vec!["read:portfolio".to_owned(), "read:transactions".to_owned()],
            description: Some("Summarises the user's portfolio and transactions".to_owned()),
        },
        scope: Some("read:portfolio read:transactions".to_owned()),
        user: None,
        policy: None,
        policy_hash: None,
        cnf: None,
        act: None,
        ancestor_jtis: None,
        status: None,
    }
}

/// Default options for [`ISS`].
pub fn opts() -> VerifyOptions {
    // The fixture's tokens carry `aud`: the verifier is that receiver.
    let mut o = VerifyOptions::for_issuer(ISS);
    o.audience = bonafide_core::token::AudienceRule::one(AUD);
    o
}

/// Verifies with the fixture's keys, default options, at [`NOW`].
pub fn check(token: &str) -> Result<VerifiedToken, TokenError> {
    token::verify(token, &fixture().keys, &opts(), NOW)
}

/// A genuine agent token signed by the fixture key for `alg`.
pub fn good_token(alg: Algorithm) -> String {
    token::sign(fixture().key(alg), &claims()).unwrap()
}

/// The JSON text of [`claims`].
pub fn claims_json() -> String {
    serde_json::to_string(&claims()).unwrap()
}

/// The usual header JSON for `key`.
pub fn header_json(key: &SigningKey) -> String {
    format!(
        r#"{{"alg":"{}","typ":"agent+jwt","kid":"{}"}}"#,
        key.alg().as_str(),
        key.kid()
    )
}

/// base64url of a UTF-8 text.
pub fn enc(text: &str) -> String {
    b64::encode(text.as_bytes())
}

/// A compact JWS with exactly this header and payload text, genuinely signed by
/// `key` over `b64(header) '.' b64(payload)`.
pub fn signed_raw(key: &SigningKey, header: &str, payload: &[u8]) -> String {
    let input = format!("{}.{}", enc(header), b64::encode(payload));
    signed_input(key, &input)
}

/// Signs an already-assembled signing input (segments as the caller wrote them).
pub fn signed_input(key: &SigningKey, input: &str) -> String {
    let sig = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64::encode(&sig))
}

/// A token with the usual header and this payload text, genuinely signed by `key`.
pub fn signed_payload(key: &SigningKey, payload: &str) -> String {
    signed_raw(key, &header_json(key), payload.as_bytes())
}

/// The three segments of a token.
pub fn parts(token: &str) -> (String, String, String) {
    let v: Vec<&str> = token.split('.').collect();
    assert_eq!(v.len(), 3, "{token}");
    (v[0].to_owned(), v[1].to_owned(), v[2].to_owned())
}
