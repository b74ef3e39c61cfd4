//! Signing and verification keys for RS256, ES256 and EdDSA (Ed25519), their JWK
//! (RFC 7517, RFC 7518 §6, RFC 8037) and PEM forms, and RFC 7638 thumbprints.
//!
//! A key has exactly one algorithm: the per-key allow-list of RFC 8725 §3.1 is the key
//! itself, so a token can never choose how its signature is checked.
//!
//! Randomness: key generation and ECDSA nonces come from AWS-LC's own DRBG, which
//! cannot be injected; this is the one place core draws randomness (ARCHITECTURE.md).

use std::fmt;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, ParsedPublicKey, RsaKeyPair,
};
use serde::{Deserialize, Serialize};

use crate::b64;

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 and NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits; bounds the cost of one verify.
pub const MAX_RSA_BITS: usize = 8192;

const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// y-coordinates (little-endian, sign bit of x cleared) of Ed25519 points of small
/// order, and non-canonical spellings of them: libsodium's `ge25519_has_small_order`
/// blocklist. With such a public key a forged signature (R = identity, S = 0) verifies
/// for any message, so anyone could mint tokens under it.
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 7] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    ed25519_y_near_p(0xec),
    ed25519_y_near_p(0xed),
    ed25519_y_near_p(0xee),
];

/// `p - 1`, `p`, `p + 1` for p = 2^255 - 19, by their lowest byte.
const fn ed25519_y_near_p(low: u8) -> [u8; 32] {
    let mut y = [0xff; 32];
    y[0] = low;
    y[31] = 0x7f;
    y
}

pub(crate) fn ed25519_small_order(x: &[u8]) -> bool {
    let mut y = [0u8; 32];
    if x.len() != 32 {
        return false;
    }
    y.copy_from_slice(x);
    y[31] &= 0x7f;
    ED25519_SMALL_ORDER_Y.contains(&y)
}

/// A JWS algorithm Bonafide signs or verifies with. Nothing else is accepted: not
/// `none`, not HMAC, not RSA-PSS or other curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256, modulus 2048..=8192 bits.
    RS256,
    /// ECDSA P-256 with SHA-256, signature as fixed-size R‖S (RFC 7518 §3.4).
    ES256,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Parses an `alg` value; exact, case-sensitive match (RFC 7515 §4.1.1).
    pub fn parse(alg: &str) -> Option<Self> {
        match alg {
            "RS256" => Some(Algorithm::RS256),
            "ES256" => Some(Algorithm::ES256),
            "EdDSA" => Some(Algorithm::EdDSA),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Algorithm::parse(s)
            .ok_or_else(|| KeyError::UnsupportedAlgorithm(s.chars().take(32).collect()))
    }
}

/// What went wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `alg` is not RS256, ES256 or EdDSA.
    #[error("unsupported algorithm `{0}` (use RS256, ES256 or EdDSA)")]
    UnsupportedAlgorithm(String),
    /// The JWK's `kty`/`crv` is not one Bonafide uses.
    #[error("unsupported key type `{0}` (use RSA, EC P-256 or OKP Ed25519)")]
    UnsupportedKeyType(String),
    /// A required JWK member is missing or not base64url.
    #[error("JWK member `{0}` is missing or not valid base64url")]
    BadMember(&'static str),
    /// The JWK carries private material where a public key was expected.
    #[error("JWK contains private key member `{0}`; register public keys only")]
    PrivateMaterial(&'static str),
    /// The key's `alg` does not fit its type.
    #[error("algorithm `{alg}` does not fit a `{kty}` key")]
    AlgorithmMismatch {
        /// Declared algorithm.
        alg: String,
        /// Key type.
        kty: String,
    },
    /// RSA modulus outside 2048..=8192 bits.
    #[error("RSA modulus of {0} bits is outside 2048..=8192")]
    RsaSize(usize),
    /// The crypto backend refused the key material.
    #[error("key material rejected: {0}")]
    Rejected(String),
    /// PEM armour or label is wrong.
    #[error("not a PEM `{0}`")]
    Pem(&'static str),
    /// Signing failed in the backend.
    #[error("signing failed")]
    Sign,
}

/// A public JWK as Bonafide reads and writes it. Unknown members are ignored, as RFC
/// 7517 §4 requires; private members are refused by [`Jwk::check_public`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Key id (RFC 7638 thumbprint for keys Bonafide makes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Intended algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use (`sig`).
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Curve (`P-256`, `Ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// EC x coordinate or OKP public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// RSA modulus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private members, kept only to refuse them.
    #[serde(default, skip_serializing)]
    d: Option<Present>,
    #[serde(default, skip_serializing)]
    p: Option<Present>,
    #[serde(default, skip_serializing)]
    q: Option<Present>,
    #[serde(default, skip_serializing)]
    dp: Option<Present>,
    #[serde(default, skip_serializing)]
    dq: Option<Present>,
    #[serde(default, skip_serializing)]
    qi: Option<Present>,
    #[serde(default, skip_serializing)]
    oth: Option<Present>,
    /// Symmetric key value (`kty` `oct`): a secret, never registered.
    #[serde(default, skip_serializing)]
    k: Option<Present>,
}

impl Jwk {
    fn public(kty: &str) -> Self {
        Jwk {
            kty: kty.to_owned(),
            kid: None,
            alg: None,
            use_: None,
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
            d: None,
            p: None,
            q: None,
            dp: None,
            dq: None,
            qi: None,
            oth: None,
            k: None,
        }
    }

    /// Refuses JWKs with private or secret members: `d` (EC, OKP, RSA), `p`, `q`,
    /// `dp`, `dq`, `qi`, `oth` (RSA, RFC 7518 §6.3.2) and `k` (symmetric, §6.4.1).
    pub fn check_public(&self) -> Result<(), KeyError> {
        let private = [
            (self.d.is_some(), "d"),
            (self.p.is_some(), "p"),
            (self.q.is_some(), "q"),
            (self.dp.is_some(), "dp"),
            (self.dq.is_some(), "dq"),
            (self.qi.is_some(), "qi"),
            (self.oth.is_some(), "oth"),
            (self.k.is_some(), "k"),
        ];
        match private.iter().find(|(present, _)| *present) {
            Some((_, name)) => Err(KeyError::PrivateMaterial(name)),
            None => Ok(()),
        }
    }

    /// RFC 7638 thumbprint: base64url(SHA-256(required members, sorted, no spaces)).
    pub fn thumbprint(&self) -> Result<String, KeyError> {
        // Member values are base64url or fixed names; JSON-escape anyway so a hostile
        // value cannot change the structure being hashed.
        let s = |v: &Option<String>, name: &'static str| -> Result<String, KeyError> {
            let v = v.as_deref().ok_or(KeyError::BadMember(name))?;
            serde_json::to_string(v).map_err(|_| KeyError::BadMember(name))
        };
        let canonical = match self.kty.as_str() {
            "RSA" => format!(
                r#"{{"e":{},"kty":"RSA","n":{}}}"#,
                s(&self.e, "e")?,
                s(&self.n, "n")?
            ),
            "EC" => format!(
                r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
                s(&self.crv, "crv")?,
                s(&self.x, "x")?,
                s(&self.y, "y")?
            ),
            "OKP" => format!(
                r#"{{"crv":{},"kty":"OKP","x":{}}}"#,
                s(&self.crv, "crv")?,
                s(&self.x, "x")?
            ),
            other => {
                return Err(KeyError::UnsupportedKeyType(
                    other.chars().take(16).collect(),
                ));
            }
        };
        Ok(b64::encode(&crate::sha256(canonical.as_bytes())))
    }
}

/// Marks a JWK member that was present; its value is discarded unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present)
    }
}

/// When a registered key may be used: the one key-validity rule, for agent keys and
/// issuer keys alike ([`KeyValidity::check`]).
///
/// A key is usable at `now` unless it is revoked, or was rotated out and its grace
/// period is over, or is past its expiry. Times are Unix milliseconds, and each end is
/// exclusive: at `grace_until_ms` or `expires_at_ms` itself the key is no longer
/// usable. A recorded revocation counts whatever its time: it takes effect when it is
/// recorded, even if the clock that stamped it runs ahead of this one. Agent keys have
/// an expiry (`key_expires_at`) and, once a rotation retires them, a grace period;
/// issuer keys have neither, only revocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyValidity {
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<i64>,
    /// Set when a rotation retired it: usable until then.
    pub grace_until_ms: Option<i64>,
    /// Unusable from then on.
    pub expires_at_ms: Option<i64>,
}

/// Why a key is not usable, in the order [`KeyValidity::check`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyUnusable {
    /// Revoked.
    #[error("the key was revoked")]
    Revoked {
        /// When.
        at_ms: i64,
    },
    /// Rotated out, and its grace period is over.
    #[error("the key was rotated out; its grace period ended at {grace_until_ms} ms")]
    RotatedOut {
        /// The end of its grace period.
        grace_until_ms: i64,
    },
    /// Past its expiry.
    #[error("the key expired at {expires_at_ms} ms")]
    Expired {
        /// Its expiry.
        expires_at_ms: i64,
    },
}

impl KeyValidity {
    /// An agent's key: its expiry, and its grace period once rotated out.
    pub fn agent_key(expires_at_ms: i64, grace_until_ms: Option<i64>) -> Self {
        KeyValidity {
            revoked_at_ms: None,
            grace_until_ms,
            expires_at_ms: Some(expires_at_ms),
        }
    }

    /// An issuer's key: usable until revoked.
    pub fn issuer_key(revoked_at_ms: Option<i64>) -> Self {
        KeyValidity {
            revoked_at_ms,
            ..KeyValidity::default()
        }
    }

    /// `Ok` if the key is usable at `now_ms`; else the first reason, in this order:
    /// revoked, rotated out past its grace, expired.
    pub fn check(&self, now_ms: i64) -> Result<(), KeyUnusable> {
        if let Some(at_ms) = self.revoked_at_ms {
            return Err(KeyUnusable::Revoked { at_ms });
        }
        if let Some(grace_until_ms) = self.grace_until_ms
            && grace_until_ms <= now_ms
        {
            return Err(KeyUnusable::RotatedOut { grace_until_ms });
        }
        if let Some(expires_at_ms) = self.expires_at_ms
            && expires_at_ms <= now_ms
        {
            return Err(KeyUnusable::Expired { expires_at_ms });
        }
        Ok(())
    }

    /// True if the key is usable at `now_ms` ([`KeyValidity::check`]).
    pub fn usable(&self, now_ms: i64) -> bool {
        self.check(now_ms).is_ok()
    }

    /// True if the key is past its expiry at `now_ms`, whatever else holds (a listing
    /// that names expiry before rotation).
    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|e| e <= now_ms)
    }
}

/// A JWK Set (RFC 7517 §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// A public key ready to verify signatures of one algorithm.
pub struct VerifyingKey {
    alg: Algorithm,
    kid: String,
    jwk: Jwk,
    parsed: ParsedPublicKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn decode_member(v: &Option<String>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    let text = v.as_deref().ok_or(KeyError::BadMember(name))?;
    b64::decode(text).map_err(|_| KeyError::BadMember(name))
}

fn rejected(e: impl fmt::Display) -> KeyError {
    KeyError::Rejected(e.to_string())
}

fn rsa_bits(n: &[u8]) -> usize {
    let trimmed: &[u8] = match n.iter().position(|&b| b != 0) {
        Some(i) => n.get(i..).unwrap_or_default(),
        None => &[],
    };
    match trimmed.first() {
        Some(&top) => (trimmed.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
        None => 0,
    }
}

impl VerifyingKey {
    /// Builds a verifying key from a public JWK. The algorithm is the JWK's `alg` if
    /// present, else the only one its key type allows; `kid` is the RFC 7638
    /// thumbprint (a differing `kid` in the JWK is replaced).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        jwk.check_public()?;
        let declared = jwk
            .alg
            .as_deref()
            .map(|a| {
                Algorithm::parse(a)
                    .ok_or_else(|| KeyError::UnsupportedAlgorithm(a.chars().take(32).collect()))
            })
            .transpose()?;
        let mismatch = |alg: Algorithm| KeyError::AlgorithmMismatch {
            alg: alg.to_string(),
            kty: jwk.kty.clone(),
        };
        let (alg, parsed) = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("RSA", _) => {
                let alg = declared.unwrap_or(Algorithm::RS256);
                if alg != Algorithm::RS256 {
                    return Err(mismatch(alg));
                }
                let n = decode_member(&jwk.n, "n")?;
                let e = decode_member(&jwk.e, "e")?;
                let bits = rsa_bits(&n);
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(KeyError::RsaSize(bits));
                }
                let parsed = PublicKeyComponents {
                    n: n.as_slice(),
                    e: e.as_slice(),
                }
                .to_parsed_public_key(&signature::RSA_PKCS1_2048_8192_SHA256)
                .map_err(rejected)?;
                (alg, parsed)
            }
            ("EC", Some("P-256")) => {
                let alg = declared.unwrap_or(Algorithm::ES256);
                if alg != Algorithm::ES256 {
                    return Err(mismatch(alg));
                }
                let x = decode_member(&jwk.x, "x")?;
                let y = decode_member(&jwk.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::BadMember(if x.len() != 32 { "x" } else { "y" }));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let parsed = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .map_err(rejected)?;
                (alg, parsed)
            }
            ("OKP", Some("Ed25519")) => {
                let alg = declared.unwrap_or(Algorithm::EdDSA);
                if alg != Algorithm::EdDSA {
                    return Err(mismatch(alg));
                }
                let x = decode_member(&jwk.x, "x")?;
                if x.len() != 32 {
                    return Err(KeyError::BadMember("x"));
                }
                if ed25519_small_order(&x) {
                    return Err(KeyError::Rejected(
                        "Ed25519 public key of small order".into(),
                    ));
                }
                let parsed = ParsedPublicKey::new(&signature::ED25519, x).map_err(rejected)?;
                (alg, parsed)
            }
            (kty, crv) => {
                let shown = match crv {
                    Some(c) => format!("{kty}/{c}"),
                    None => kty.to_owned(),
                };
                return Err(KeyError::UnsupportedKeyType(
                    shown.chars().take(32).collect(),
                ));
            }
        };
        let kid = jwk.thumbprint()?;
        let mut clean = Jwk::public(&jwk.kty);
        clean.crv.clone_from(&jwk.crv);
        clean.x.clone_from(&jwk.x);
        clean.y.clone_from(&jwk.y);
        clean.n.clone_from(&jwk.n);
        clean.e.clone_from(&jwk.e);
        clean.kid = Some(kid.clone());
        clean.alg = Some(alg.as_str().to_owned());
        clean.use_ = Some("sig".to_owned());
        Ok(VerifyingKey {
            alg,
            kid,
            jwk: clean,
            parsed,
        })
    }

    /// Builds a verifying key from a PEM `PUBLIC KEY` (X.509 SubjectPublicKeyInfo).
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|_| KeyError::Pem("PUBLIC KEY"))?;
        if label != "PUBLIC KEY" {
            return Err(KeyError::Pem("PUBLIC KEY"));
        }
        Self::from_spki_der(&der)
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let mut jwk;
        if let Some(x) = der.strip_prefix(&ED25519_SPKI_PREFIX) {
            jwk = Jwk::public("OKP");
            jwk.crv = Some("Ed25519".into());
            jwk.x = Some(b64::encode(x));
        } else if let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX) {
            let (tag, xy) = point.split_first().ok_or(KeyError::BadMember("x"))?;
            if *tag != 0x04 || xy.len() != 64 {
                return Err(KeyError::Rejected(
                    "only uncompressed P-256 points are accepted".into(),
                ));
            }
            let (x, y) = xy.split_at(32);
            jwk = Jwk::public("EC");
            jwk.crv = Some("P-256".into());
            jwk.x = Some(b64::encode(x));
            jwk.y = Some(b64::encode(y));
        } else {
            let rsa = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(rejected)?;
            jwk = Jwk::public("RSA");
            jwk.n = Some(b64::encode(rsa.modulus().big_endian_without_leading_zero()));
            jwk.e = Some(b64::encode(
                rsa.exponent().big_endian_without_leading_zero(),
            ));
        }
        Self::from_jwk(&jwk)
    }

    /// The algorithm this key verifies.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The RFC 7638 thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK, with `kid`, `alg` and `use` set.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The public key as PEM SubjectPublicKeyInfo.
    pub fn public_pem(&self) -> Result<String, KeyError> {
        let der = self.parsed.as_der().map_err(rejected)?;
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, der.as_ref())
            .map_err(|_| KeyError::Pem("PUBLIC KEY"))
    }

    /// Checks `signature` over `message`. Wrong-length or malformed signatures
    /// (DER ECDSA, r = s = 0) are simply invalid.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.parsed.verify_sig(message, sig).is_ok()
    }
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// A private signing key of one algorithm. `Debug` shows only the algorithm and kid.
pub struct SigningKey {
    pair: Pair,
    verifying: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.verifying.alg)
            .field("kid", &self.verifying.kid)
            .finish_non_exhaustive()
    }
}

/// PKCS#8 private key text. `Debug` is redacted; write it only to 0600 files.
pub struct PrivatePem(String);

impl PrivatePem {
    /// The PEM text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PrivatePem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivatePem(<redacted>)")
    }
}

impl SigningKey {
    /// Generates a new key (RSA keys are 2048 bits).
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        let pair = match alg {
            Algorithm::RS256 => {
                Pair::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).map_err(rejected)?)
            }
            Algorithm::ES256 => Pair::Ec(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(rejected)?,
            ),
            Algorithm::EdDSA => Pair::Ed(Ed25519KeyPair::generate().map_err(rejected)?),
        };
        Self::from_pair(pair)
    }

    /// Loads a PKCS#8 DER private key of the given algorithm.
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let pair = match alg {
            Algorithm::RS256 => Pair::Rsa(RsaKeyPair::from_pkcs8(der).map_err(rejected)?),
            Algorithm::ES256 => Pair::Ec(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?,
            ),
            Algorithm::EdDSA => Pair::Ed(Ed25519KeyPair::from_pkcs8(der).map_err(rejected)?),
        };
        Self::from_pair(pair)
    }

    /// Loads a PEM `PRIVATE KEY` (PKCS#8), working out its algorithm.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let (label, der) = pem_rfc7468::decode_vec(pem.trim().as_bytes())
            .map_err(|_| KeyError::Pem("PRIVATE KEY"))?;
        if label != "PRIVATE KEY" {
            return Err(KeyError::Pem("PRIVATE KEY"));
        }
        [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256]
            .into_iter()
            .find_map(|alg| Self::from_pkcs8_der(alg, &der).ok())
            .ok_or_else(|| KeyError::Rejected("not an Ed25519, P-256 or RSA PKCS#8 key".into()))
    }

    fn from_pair(pair: Pair) -> Result<Self, KeyError> {
        let der = match &pair {
            Pair::Rsa(k) => {
                let bits = k.public_modulus_len() * 8;
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    return Err(KeyError::RsaSize(bits));
                }
                k.public_key().as_der().map_err(rejected)?
            }
            Pair::Ec(k) => k.public_key().as_der().map_err(rejected)?,
            Pair::Ed(k) => k.public_key().as_der().map_err(rejected)?,
        };
        let verifying = VerifyingKey::from_spki_der(der.as_ref())?;
        Ok(SigningKey { pair, verifying })
    }

    /// The key as PEM PKCS#8.
    pub fn to_pkcs8_pem(&self) -> Result<PrivatePem, KeyError> {
        let der: Vec<u8> = match &self.pair {
            Pair::Rsa(k) => AsDer::<Pkcs8V1Der>::as_der(k)
                .map_err(rejected)?
                .as_ref()
                .to_vec(),
            Pair::Ec(k) => k.to_pkcs8v1().map_err(rejected)?.as_ref().to_vec(),
            Pair::Ed(k) => k.to_pkcs8v1().map_err(rejected)?.as_ref().to_vec(),
        };
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &der)
            .map(PrivatePem)
            .map_err(|_| KeyError::Pem("PRIVATE KEY"))
    }

    /// An Ed25519 key's 32-byte private seed (RFC 8032), for formats that store it
    /// raw (AIM's SDK credentials file); `None` for other algorithms. A secret:
    /// write it only to 0600 files.
    pub fn ed25519_seed(&self) -> Option<[u8; 32]> {
        /// PKCS#8 v1 of an Ed25519 key (RFC 8410 §7): these 16 bytes, then the seed.
        const PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let Pair::Ed(k) = &self.pair else {
            return None;
        };
        let der = k.to_pkcs8v1().ok()?;
        der.as_ref()
            .strip_prefix(PREFIX.as_slice())
            .and_then(|seed| <[u8; 32]>::try_from(seed).ok())
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.verifying.alg
    }

    /// The kid (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.verifying.kid
    }

    /// Signs `message` (JWS signing input) and returns the raw JWS signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.pair {
            Pair::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut sig,
                )
                .map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Pair::Ec(k) => Ok(k
                .sign(&SystemRandom::new(), message)
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec()),
            Pair::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ed25519_seed_makes_the_same_key_again() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let seed = key.ed25519_seed().unwrap();
        // RFC 8410: the seed is the whole private key; rebuilt from it, the same key.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let again = SigningKey::from_pkcs8_der(Algorithm::EdDSA, &der).unwrap();
        assert_eq!(again.kid(), key.kid());
        let es = SigningKey::generate(Algorithm::ES256).unwrap();
        assert_eq!(es.ed25519_seed(), None);
    }

    #[test]
    fn key_validity_at_its_boundaries() {
        // An agent's current key: usable until the millisecond it expires.
        let current = KeyValidity::agent_key(1_000, None);
        assert_eq!(current.check(i64::MIN), Ok(()));
        assert_eq!(current.check(999), Ok(()));
        assert_eq!(
            current.check(1_000),
            Err(KeyUnusable::Expired {
                expires_at_ms: 1_000
            })
        );
        assert!(!current.usable(1_001));
        assert!(!current.expired(999) && current.expired(1_000));

        // Rotated out: usable until its grace ends, then refused as rotated, also
        // once it is past its expiry (rotation is named first).
        let rotated = KeyValidity::agent_key(1_000, Some(500));
        assert!(rotated.usable(499));
        assert_eq!(
            rotated.check(500),
            Err(KeyUnusable::RotatedOut {
                grace_until_ms: 500
            })
        );
        assert_eq!(
            rotated.check(1_000),
            Err(KeyUnusable::RotatedOut {
                grace_until_ms: 500
            })
        );
        assert!(!rotated.expired(999) && rotated.expired(1_000));
        // A grace longer than the key's life: its expiry still ends it.
        let long_grace = KeyValidity::agent_key(1_000, Some(5_000));
        assert!(long_grace.usable(999));
        assert_eq!(
            long_grace.check(1_000),
            Err(KeyUnusable::Expired {
                expires_at_ms: 1_000
            })
        );

        // An issuer key: usable until revoked, and a revocation counts whatever its
        // time (even one stamped ahead of this clock).
        assert!(KeyValidity::issuer_key(None).usable(i64::MAX));
        for at_ms in [0, 1_000, i64::MAX] {
            assert_eq!(
                KeyValidity::issuer_key(Some(at_ms)).check(500),
                Err(KeyUnusable::Revoked { at_ms })
            );
        }
        // Revocation is named before anything else.
        let all = KeyValidity {
            revoked_at_ms: Some(1),
            grace_until_ms: Some(1),
            expires_at_ms: Some(1),
        };
        assert_eq!(all.check(10), Err(KeyUnusable::Revoked { at_ms: 1 }));
        // Nothing set: always usable.
        assert!(KeyValidity::default().usable(i64::MAX));
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 §3.1.
        let jwk: Jwk = serde_json::from_str(
            r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(
            jwk.thumbprint().unwrap(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.alg(), Algorithm::RS256);
    }

    #[test]
    fn generate_sign_verify_and_round_trip_every_algorithm() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let key = SigningKey::generate(alg).unwrap();
            let sig = key.sign(b"hello").unwrap();
            assert!(key.verifying_key().verify(b"hello", &sig), "{alg}");
            assert!(!key.verifying_key().verify(b"hellp", &sig), "{alg}");

            let pem = key.to_pkcs8_pem().unwrap();
            let again = SigningKey::from_pkcs8_pem(pem.expose_secret()).unwrap();
            assert_eq!(again.kid(), key.kid());
            assert_eq!(again.alg(), alg);

            let public_pem = key.verifying_key().public_pem().unwrap();
            let from_pem = VerifyingKey::from_public_pem(&public_pem).unwrap();
            assert_eq!(from_pem.jwk(), key.verifying_key().jwk());

            let jwk_json = serde_json::to_string(key.verifying_key().jwk()).unwrap();
            let jwk: Jwk = serde_json::from_str(&jwk_json).unwrap();
            let from_jwk = VerifyingKey::from_jwk(&jwk).unwrap();
            assert_eq!(from_jwk.kid(), key.kid());
            assert!(from_jwk.verify(b"hello", &sig));
            assert!(!format!("{key:?}").contains("PRIVATE"));
            assert_eq!(format!("{pem:?}"), "PrivatePem(<redacted>)");
        }
    }

    #[test]
    fn refuses_private_members_and_wrong_algorithms() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let mut v = serde_json::to_value(key.verifying_key().jwk()).unwrap();
        v["d"] = "AAAA".into();
        let jwk: Jwk = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(
            VerifyingKey::from_jwk(&jwk).unwrap_err(),
            KeyError::PrivateMaterial("d")
        );
        v.as_object_mut().unwrap().remove("d");
        v["alg"] = "RS256".into();
        let jwk: Jwk = serde_json::from_value(v.clone()).unwrap();
        assert!(matches!(
            VerifyingKey::from_jwk(&jwk),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
        v["alg"] = "HS256".into();
        let jwk: Jwk = serde_json::from_value(v).unwrap();
        assert!(matches!(
            VerifyingKey::from_jwk(&jwk),
            Err(KeyError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn refuses_small_rsa_keys() {
        // A 1024-bit modulus (all ones is not a real key, but size is checked first).
        let mut jwk = Jwk::public("RSA");
        jwk.n = Some(b64::encode(&[0xff; 128]));
        jwk.e = Some("AQAB".into());
        assert_eq!(
            VerifyingKey::from_jwk(&jwk).unwrap_err(),
            KeyError::RsaSize(1024)
        );
    }

    #[test]
    fn rsa_bit_counting() {
        assert_eq!(rsa_bits(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(rsa_bits(&[0x01]), 1);
        assert_eq!(rsa_bits(&[]), 0);
    }
}
