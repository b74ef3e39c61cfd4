//! Key proofs: the proof of possession that goes with registering an issuer key
//! (`POST /v1/issuer/keys`).
//!
//! A public key is public: without a proof, anyone could register the key another
//! party publishes (squat it), and from then on the registry would take that party's
//! signatures for the squatter's. So the issuer signs a short-lived statement with
//! the private half of the key it registers — "issuer `iss` registers key `jkt` at
//! registry `aud`, now" — and the registry checks it with exactly that key.
//!
//! The proof is a compact JWS (RFC 7515), hardened like every Bonafide JWS ([`jws`]):
//! header `{"alg","typ":"bonafide-key-proof+jwt","kid"}` with `kid` the key's RFC 7638
//! thumbprint; claims exactly `iss` (the issuer id), `aud` (the registry's public
//! URL), `iat`, `jkt` (the thumbprint again, inside the signed claims) and optionally
//! `jti`. Accepted when `iat` is within [`MAX_SKEW_SECS`] of the registry's clock. It
//! is a sibling of [`crate::domain_proof`], with its own `typ`, so neither can stand
//! for the other. It is not a bearer credential: it only lets the issuer who signed it
//! register that key at that registry, with its own API key, so the registry keeps no
//! record of `jti`s.

use serde::{Deserialize, Serialize};

use crate::jws;
use crate::keys::{KeyError, SigningKey, VerifyingKey};
use crate::token::{Segment, TokenError};

/// The `typ` header of a key proof.
pub const KEY_PROOF_TYP: &str = "bonafide-key-proof+jwt";

/// Largest proof accepted, bytes (an RS256 signature of an 8192-bit key is 1366
/// characters; the claims are a few hundred).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// How far `iat` may be from the verifier's clock, either way: 300 s.
pub const MAX_SKEW_SECS: i64 = 300;

/// What a key proof states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyProofClaims {
    /// The issuer id (`iss_…`) that registers the key.
    pub iss: String,
    /// The registry's public URL (compared without a trailing `/`).
    pub aud: String,
    /// When it was signed, seconds since the epoch.
    pub iat: i64,
    /// The RFC 7638 thumbprint of the key registered (the signer).
    pub jkt: String,
    /// Optional; not checked (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// What the verifier expects a proof to state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The issuer asking (its id).
    pub issuer: &'a str,
    /// The registry's public URL.
    pub audience: &'a str,
    /// The verifier's clock, seconds since the epoch.
    pub now: i64,
}

/// Why a key proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProofError {
    /// Size, framing, header or signature.
    #[error("the proof does not verify: {0}")]
    Jws(TokenError),
    /// The header's `typ` is not [`KEY_PROOF_TYP`].
    #[error("not a key proof: its type is `{found}`, not `bonafide-key-proof+jwt`")]
    WrongType {
        /// What the header said (empty if absent), at most 64 characters.
        found: String,
    },
    /// The header's `kid` is not the key being registered.
    #[error(
        "the proof is signed by key `{kid}`, not by the key being registered: sign it with that key's private half"
    )]
    OtherKey {
        /// The header's `kid`, at most 128 characters.
        kid: String,
    },
    /// The claims are malformed.
    #[error("the proof's claims are invalid: {0}")]
    Claims(String),
    /// A claim names something else than what was asked.
    #[error("the proof is for {claim} `{found}`, not `{expected}`")]
    Mismatch {
        /// `iss`, `aud` or `jkt`.
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

impl From<jws::JwsError> for KeyProofError {
    /// Framing, header and signature as the agent-token error; the type; the claims
    /// as text.
    fn from(e: jws::JwsError) -> Self {
        match e {
            jws::JwsError::WrongType { found, .. } => KeyProofError::WrongType {
                found: found.unwrap_or_default(),
            },
            jws::JwsError::Json(Segment::Payload, e) => KeyProofError::Claims(e.to_string()),
            jws::JwsError::ClaimsNotObject => {
                KeyProofError::Claims("claims are not a JSON object".into())
            }
            jws::JwsError::Claims(m) => KeyProofError::Claims(m),
            e => KeyProofError::Jws(e.into()),
        }
    }
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// Signs a key proof with `key`, the private half of the key being registered.
/// `claims.jkt` should be `key.kid()`.
pub fn sign(key: &SigningKey, claims: &KeyProofClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, KEY_PROOF_TYP, &payload)
}

/// Verifies a key proof with `key`, the key being registered (never a key the proof
/// offers), in the order of every Bonafide JWS: size and shape; header (no `crit`, no
/// key-carrying members), `typ`, `kid` equal to `key`'s thumbprint, `key`'s algorithm
/// equal to `alg`; the signature, before the payload is read; then the claims (strict
/// JSON, exactly the members of [`KeyProofClaims`]), which must name `expected`'s
/// issuer and audience and `key`'s thumbprint, with `iat` within [`MAX_SKEW_SECS`] of
/// `expected.now`.
pub fn verify(
    proof: &str,
    key: &VerifyingKey,
    expected: &Expected<'_>,
) -> Result<KeyProofClaims, KeyProofError> {
    let rules = jws::Rules::kid(jws::Typ::Is(KEY_PROOF_TYP), MAX_PROOF_BYTES);
    let claims = jws::open::<KeyProofClaims, _>(proof, &rules, |h: &jws::Protected| {
        if h.kid() == key.kid() {
            Ok(jws::Key::Borrowed(key))
        } else {
            Err(KeyProofError::OtherKey {
                kid: clip(h.kid(), 128),
            })
        }
    })?
    .claims;
    let mismatch = |claim, expected: &str, found: &str| KeyProofError::Mismatch {
        claim,
        expected: expected.to_owned(),
        found: clip(found, 256),
    };
    if claims.iss != expected.issuer {
        return Err(mismatch("iss", expected.issuer, &claims.iss));
    }
    if claims.aud.trim_end_matches('/') != expected.audience.trim_end_matches('/') {
        return Err(mismatch("aud", expected.audience, &claims.aud));
    }
    if claims.jkt != key.kid() {
        return Err(mismatch("jkt", key.kid(), &claims.jkt));
    }
    let skew = expected.now.saturating_sub(claims.iat).saturating_abs();
    if skew > MAX_SKEW_SECS {
        return Err(KeyProofError::Stale {
            iat: claims.iat,
            now: expected.now,
            skew,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;
    use crate::b64;
    use crate::keys::Algorithm;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "iss_a",
            audience: "https://registry.example",
            now: NOW,
        }
    }

    fn claims(key: &SigningKey) -> KeyProofClaims {
        KeyProofClaims {
            iss: "iss_a".into(),
            aud: "https://registry.example".into(),
            iat: NOW,
            jkt: key.kid().to_owned(),
            jti: None,
        }
    }

    fn public(key: &SigningKey) -> VerifyingKey {
        VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap()
    }

    #[test]
    fn a_proof_by_each_algorithm_verifies_with_the_key_it_registers() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = SigningKey::generate(alg).unwrap();
            let proof = sign(&key, &claims(&key)).unwrap();
            assert_eq!(
                verify(&proof, &public(&key), &expected()).unwrap(),
                claims(&key)
            );
        }
        // A trailing slash on the audience does not matter; `iat` may be up to 300 s
        // either way.
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        for iat in [NOW - MAX_SKEW_SECS, NOW + MAX_SKEW_SECS] {
            let c = KeyProofClaims {
                aud: "https://registry.example/".into(),
                iat,
                jti: Some("x".into()),
                ..claims(&key)
            };
            verify(&sign(&key, &c).unwrap(), &public(&key), &expected()).unwrap();
        }
    }

    #[test]
    fn only_the_private_half_of_the_registered_key_makes_a_proof() {
        let registered = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let squatter = SigningKey::generate(Algorithm::EdDSA).unwrap();
        // Signed by another key, even one that claims the registered key's jkt.
        let proof = sign(&squatter, &claims(&registered)).unwrap();
        assert_eq!(
            verify(&proof, &public(&registered), &expected()),
            Err(KeyProofError::OtherKey {
                kid: squatter.kid().to_owned()
            })
        );
        // The squatter names the registered key's kid but cannot sign for it.
        let payload = serde_json::to_vec(&claims(&registered)).unwrap();
        let mut forged =
            jws::header_b64(Algorithm::EdDSA, KEY_PROOF_TYP, registered.kid()).unwrap();
        forged.push('.');
        forged.push_str(&b64::encode(&payload));
        let sig = squatter.sign(forged.as_bytes()).unwrap();
        forged.push('.');
        forged.push_str(&b64::encode(&sig));
        assert_eq!(
            verify(&forged, &public(&registered), &expected()),
            Err(KeyProofError::Jws(TokenError::BadSignature))
        );
    }

    #[test]
    fn another_issuer_registry_or_key_and_stale_proofs_are_refused() {
        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let other = SigningKey::generate(Algorithm::ES256).unwrap();
        let cases = [
            (
                KeyProofClaims {
                    iss: "iss_b".into(),
                    ..claims(&key)
                },
                "iss",
            ),
            (
                KeyProofClaims {
                    aud: "https://other.example".into(),
                    ..claims(&key)
                },
                "aud",
            ),
            (
                KeyProofClaims {
                    jkt: other.kid().to_owned(),
                    ..claims(&key)
                },
                "jkt",
            ),
        ];
        for (c, which) in cases {
            let proof = sign(&key, &c).unwrap();
            match verify(&proof, &public(&key), &expected()) {
                Err(KeyProofError::Mismatch { claim, .. }) => assert_eq!(claim, which),
                other => panic!("{which}: {other:?}"),
            }
        }
        for iat in [NOW - MAX_SKEW_SECS - 1, NOW + MAX_SKEW_SECS + 1, i64::MIN] {
            let proof = sign(
                &key,
                &KeyProofClaims {
                    iat,
                    ..claims(&key)
                },
            )
            .unwrap();
            assert!(
                matches!(
                    verify(&proof, &public(&key), &expected()),
                    Err(KeyProofError::Stale { .. })
                ),
                "{iat}"
            );
        }
    }

    #[test]
    fn other_types_members_and_headers_are_refused() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let vk = public(&key);
        // A domain proof (or any other JWS) by the same key is not a key proof.
        let body = serde_json::to_vec(&claims(&key)).unwrap();
        for typ in ["bonafide-domain-proof+jwt", "agent+jwt", "JWT"] {
            let other = jws::sign_compact(&key, typ, &body).unwrap();
            assert!(
                matches!(
                    verify(&other, &vk, &expected()),
                    Err(KeyProofError::WrongType { .. })
                ),
                "{typ}"
            );
        }
        // Unknown members and duplicate members.
        let mut extra = serde_json::to_value(claims(&key)).unwrap();
        extra["exp"] = NOW.into();
        let proof = jws::sign_compact(&key, KEY_PROOF_TYP, extra.to_string().as_bytes()).unwrap();
        assert!(matches!(
            verify(&proof, &vk, &expected()),
            Err(KeyProofError::Claims(_))
        ));
        let dup = format!(
            r#"{{"iss":"iss_a","iss":"iss_a","aud":"https://registry.example","iat":{NOW},"jkt":"{}"}}"#,
            key.kid()
        );
        let proof = jws::sign_compact(&key, KEY_PROOF_TYP, dup.as_bytes()).unwrap();
        assert!(matches!(
            verify(&proof, &vk, &expected()),
            Err(KeyProofError::Claims(_))
        ));
        // Garbage and oversize.
        for bad in ["", "a.b", "a.b.c.d", &"a".repeat(MAX_PROOF_BYTES + 1)] {
            assert!(matches!(
                verify(bad, &vk, &expected()),
                Err(KeyProofError::Jws(_))
            ));
        }
    }
}
