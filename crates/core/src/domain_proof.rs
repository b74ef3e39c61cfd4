//! Domain proofs: the proof of possession that goes with a domain verification
//! (`POST /v1/issuer/verify-domain`).
//!
//! Publishing a public key at `https://<domain>/.well-known/jwks.json` proves control
//! of the domain's web server, but a public key is public: anyone can register a key
//! that someone else publishes. So the issuer also signs a short-lived statement with
//! the private half of the key it publishes — "issuer `iss` claims `domain` at
//! registry `aud`, now" — and the registry checks it with that registered key. A
//! party that registered someone else's public key cannot make one.
//!
//! The proof is a compact JWS (RFC 7515), hardened like every Bonafide JWS ([`jws`]):
//! header `{"alg","typ":"bonafide-domain-proof+jwt","kid"}` with `kid` the key's
//! RFC 7638 thumbprint; claims exactly `iss` (the issuer id), `domain`, `aud` (the
//! registry's public URL), `iat`, and optionally `jti`. Accepted when `iat` is within
//! [`MAX_SKEW_SECS`] of the registry's clock. It is not a bearer credential: it only
//! lets the issuer who signed it verify that domain at that registry, with its own
//! API key, so the registry keeps no record of `jti`s.
//!
//! Not a general JWT: no `exp`/`nbf`, no other members.

use serde::{Deserialize, Serialize};

use crate::jws;
use crate::keys::{KeyError, SigningKey};
use crate::token::{KeyResolver, Segment, TokenError};

/// The `typ` header of a domain proof.
pub const DOMAIN_PROOF_TYP: &str = "bonafide-domain-proof+jwt";

/// Largest proof accepted, bytes (an RS256 signature of an 8192-bit key is 1366
/// characters; the claims are a few hundred).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// How far `iat` may be from the verifier's clock, either way: 300 s.
pub const MAX_SKEW_SECS: i64 = 300;

/// What a domain proof states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainProofClaims {
    /// The issuer id (`iss_…`) that claims the domain.
    pub iss: String,
    /// The domain claimed (compared case-insensitively).
    pub domain: String,
    /// The registry's public URL (compared without a trailing `/`).
    pub aud: String,
    /// When it was signed, seconds since the epoch.
    pub iat: i64,
    /// Optional; not checked (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What the verifier expects a proof to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The issuer asking (its id).
    pub issuer: &'a str,
    /// The domain it asks for, normalised (lowercase).
    pub domain: &'a str,
    /// The registry's public URL.
    pub audience: &'a str,
    /// The verifier's clock, seconds since the epoch.
    pub now: i64,
}

/// A proof that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainProof {
    /// The key that signed it (RFC 7638 thumbprint).
    pub kid: String,
    /// What it states.
    pub claims: DomainProofClaims,
}

/// Why a domain proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainProofError {
    /// Size, framing, header or signature.
    #[error("the proof does not verify: {0}")]
    Jws(TokenError),
    /// The header's `typ` is not [`DOMAIN_PROOF_TYP`].
    #[error("not a domain proof: its type is `{found}`, not `bonafide-domain-proof+jwt`")]
    WrongType {
        /// What the header said (empty if absent), at most 64 characters.
        found: String,
    },
    /// The header's `kid` is none of the keys the verifier accepts.
    #[error(
        "the proof is signed by key `{kid}`, which is not a registered, unrevoked key of this issuer"
    )]
    UnknownKey {
        /// The header's `kid`, at most 128 characters.
        kid: String,
    },
    /// The claims are malformed.
    #[error("the proof's claims are invalid: {0}")]
    Claims(String),
    /// A claim names something else than what was asked.
    #[error("the proof is for {claim} `{found}`, not `{expected}`")]
    Mismatch {
        /// `iss`, `domain` or `aud`.
        claim: &'static str,
        /// What the verifier expected.
        expected: String,
        /// What the proof says, at most 256 characters.
        found: String,
    },
    /// `iat` is more than [`MAX_SKEW_SECS`] from the verifier's clock.
    #[error(
        "the proof's `iat` ({iat}) is {skew} s from the registry's clock ({now}); at most 300 s are accepted: sign a new proof"
    )]
    Stale {
        /// The proof's `iat`.
        iat: i64,
        /// The verifier's clock.
        now: i64,
        /// `|now - iat|`, seconds.
        skew: i64,
    },
}

impl From<jws::JwsError> for DomainProofError {
    /// Framing, header and signature as the agent-token error; the type; the claims
    /// as text.
    fn from(e: jws::JwsError) -> Self {
        match e {
            jws::JwsError::WrongType { found, .. } => DomainProofError::WrongType {
                found: found.unwrap_or_default(),
            },
            jws::JwsError::Json(Segment::Payload, e) => DomainProofError::Claims(e.to_string()),
            jws::JwsError::ClaimsNotObject => {
                DomainProofError::Claims("claims are not a JSON object".into())
            }
            jws::JwsError::Claims(m) => DomainProofError::Claims(m),
            e => DomainProofError::Jws(e.into()),
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Signs a domain proof with `key` (the private half of the key the issuer registered
/// and publishes).
pub fn sign(key: &SigningKey, claims: &DomainProofClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, DOMAIN_PROOF_TYP, &payload)
}

/// Verifies a domain proof with the key its header `kid` names among `keys` (the
/// issuer's registered, unrevoked keys: never a key the proof offers), in the order
/// of every Bonafide JWS: size and shape; header (no `crit`, no key-carrying members),
/// `typ`, `kid` known, the key's algorithm equal to `alg`; the signature, before the
/// payload is read; then the claims (strict JSON, exactly the members of
/// [`DomainProofClaims`]), which must name `expected`'s issuer, domain and audience,
/// with `iat` within [`MAX_SKEW_SECS`] of `expected.now`.
pub fn verify(
    proof: &str,
    keys: &impl KeyResolver,
    expected: &Expected<'_>,
) -> Result<DomainProof, DomainProofError> {
    let rules = jws::Rules::kid(jws::Typ::Is(DOMAIN_PROOF_TYP), MAX_PROOF_BYTES);
    let opened = jws::open::<DomainProofClaims, _>(proof, &rules, |h: &jws::Protected| {
        keys.key(h.kid())
            .map(jws::Key::Borrowed)
            .ok_or_else(|| DomainProofError::UnknownKey {
                kid: clip(h.kid(), 128),
            })
    })?;
    // The key that verified the proof, by its own thumbprint.
    let kid = opened.key.kid().to_owned();
    let claims = opened.claims;
    let mismatch = |claim, expected: &str, found: &str| DomainProofError::Mismatch {
        claim,
        expected: expected.to_owned(),
        found: clip(found, 256),
    };
    if claims.iss != expected.issuer {
        return Err(mismatch("iss", expected.issuer, &claims.iss));
    }
    if !claims.domain.eq_ignore_ascii_case(expected.domain) {
        return Err(mismatch("domain", expected.domain, &claims.domain));
    }
    if claims.aud.trim_end_matches('/') != expected.audience.trim_end_matches('/') {
        return Err(mismatch("aud", expected.audience, &claims.aud));
    }
    let skew = expected.now.saturating_sub(claims.iat).saturating_abs();
    if skew > MAX_SKEW_SECS {
        return Err(DomainProofError::Stale {
            iat: claims.iat,
            now: expected.now,
            skew,
        });
    }
    Ok(DomainProof { kid, claims })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use crate::b64;
    use crate::keys::{Algorithm, VerifyingKey};
    use crate::token::KeySet;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "iss_a",
            domain: "a.example",
            audience: "https://registry.example",
            now: NOW,
        }
    }

    fn claims() -> DomainProofClaims {
        DomainProofClaims {
            iss: "iss_a".into(),
            domain: "a.example".into(),
            aud: "https://registry.example".into(),
            iat: NOW,
            jti: None,
        }
    }

    fn set(keys: &[&SigningKey]) -> KeySet {
        let mut set = KeySet::new();
        for k in keys {
            set.insert(VerifyingKey::from_jwk(k.verifying_key().jwk()).unwrap());
        }
        set
    }

    #[test]
    fn a_proof_by_each_algorithm_verifies_with_its_key() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = SigningKey::generate(alg).unwrap();
            let proof = sign(&key, &claims()).unwrap();
            let got = verify(&proof, &set(&[&key]), &expected()).unwrap();
            assert_eq!(got.kid, key.kid());
            assert_eq!(got.claims, claims());
        }
        // Case of the domain and a trailing slash on the audience do not matter;
        // `iat` may be up to 300 s either way.
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        for iat in [NOW - MAX_SKEW_SECS, NOW + MAX_SKEW_SECS] {
            let c = DomainProofClaims {
                domain: "A.Example".into(),
                aud: "https://registry.example/".into(),
                iat,
                jti: Some("x".into()),
                ..claims()
            };
            let proof = sign(&key, &c).unwrap();
            verify(&proof, &set(&[&key]), &expected()).unwrap();
        }
    }

    #[test]
    fn only_the_registered_private_key_makes_a_proof() {
        let registered = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let squatter = SigningKey::generate(Algorithm::EdDSA).unwrap();
        // Signed by a key that is not among the accepted ones.
        let proof = sign(&squatter, &claims()).unwrap();
        assert_eq!(
            verify(&proof, &set(&[&registered]), &expected()),
            Err(DomainProofError::UnknownKey {
                kid: squatter.kid().to_owned()
            })
        );
        // The squatter names the registered key's kid but cannot sign for it.
        let payload = serde_json::to_vec(&claims()).unwrap();
        let mut forged =
            jws::header_b64(Algorithm::EdDSA, DOMAIN_PROOF_TYP, registered.kid()).unwrap();
        forged.push('.');
        forged.push_str(&b64::encode(&payload));
        let sig = squatter.sign(forged.as_bytes()).unwrap();
        forged.push('.');
        forged.push_str(&b64::encode(&sig));
        assert_eq!(
            verify(&forged, &set(&[&registered]), &expected()),
            Err(DomainProofError::Jws(TokenError::BadSignature))
        );
    }

    #[test]
    fn another_issuer_domain_or_registry_and_stale_proofs_are_refused() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let keys = set(&[&key]);
        let cases: [(DomainProofClaims, &str); 3] = [
            (
                DomainProofClaims {
                    iss: "iss_b".into(),
                    ..claims()
                },
                "iss",
            ),
            (
                DomainProofClaims {
                    domain: "b.example".into(),
                    ..claims()
                },
                "domain",
            ),
            (
                DomainProofClaims {
                    aud: "https://other.example".into(),
                    ..claims()
                },
                "aud",
            ),
        ];
        for (c, which) in cases {
            let proof = sign(&key, &c).unwrap();
            match verify(&proof, &keys, &expected()) {
                Err(DomainProofError::Mismatch { claim, .. }) => assert_eq!(claim, which),
                other => panic!("{which}: {other:?}"),
            }
        }
        for iat in [NOW - MAX_SKEW_SECS - 1, NOW + MAX_SKEW_SECS + 1, i64::MIN] {
            let proof = sign(&key, &DomainProofClaims { iat, ..claims() }).unwrap();
            assert!(
                matches!(
                    verify(&proof, &keys, &expected()),
                    Err(DomainProofError::Stale { .. })
                ),
                "{iat}"
            );
        }
    }

    #[test]
    fn other_types_members_and_headers_are_refused() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let keys = set(&[&key]);
        // An agent token (or any other JWS) by the same key is not a domain proof.
        let other =
            jws::sign_compact(&key, "agent+jwt", &serde_json::to_vec(&claims()).unwrap()).unwrap();
        assert!(matches!(
            verify(&other, &keys, &expected()),
            Err(DomainProofError::WrongType { .. })
        ));
        // Unknown members and duplicate members.
        let mut extra = serde_json::to_value(claims()).unwrap();
        extra["exp"] = NOW.into();
        let proof =
            jws::sign_compact(&key, DOMAIN_PROOF_TYP, extra.to_string().as_bytes()).unwrap();
        assert!(matches!(
            verify(&proof, &keys, &expected()),
            Err(DomainProofError::Claims(_))
        ));
        let dup = br#"{"iss":"iss_a","iss":"iss_a","domain":"a.example","aud":"https://registry.example","iat":1800000000}"#;
        let proof = jws::sign_compact(&key, DOMAIN_PROOF_TYP, dup).unwrap();
        assert!(matches!(
            verify(&proof, &keys, &expected()),
            Err(DomainProofError::Claims(_))
        ));
        // Garbage and oversize.
        for bad in ["", "a.b", "a.b.c.d", &"a".repeat(MAX_PROOF_BYTES + 1)] {
            assert!(matches!(
                verify(bad, &keys, &expected()),
                Err(DomainProofError::Jws(_))
            ));
        }
    }
}
