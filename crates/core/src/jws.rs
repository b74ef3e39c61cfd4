//! JWS Compact Serialization (RFC 7515 §7.1), hardened per RFC 8725.
//!
//! This is deliberately small: one signature, one key chosen by `kid`, three
//! algorithms. It is not a general JOSE library: no JSON serialization, no
//! unencoded payloads (`b64`), no `crit` extensions, no keys taken from the header.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::b64;
use crate::json::{self, JsonLimits};
use crate::keys::{Algorithm, KeyError, SigningKey};
use crate::token::{Segment, TokenError};

/// Header parameters that name or carry a key (RFC 7515 §4.1.2–4.1.6). Bonafide never
/// takes a key from a token, so a token that offers one is refused outright.
pub const FORBIDDEN_HEADERS: [&str; 5] = ["jwk", "jku", "x5u", "x5c", "x5t"];

/// The parts of a compact JWS, borrowed from the token text.
#[derive(Debug, Clone, Copy)]
pub struct Compact<'a> {
    /// Base64url header.
    pub header_b64: &'a str,
    /// Base64url payload.
    pub payload_b64: &'a str,
    /// Base64url signature.
    pub signature_b64: &'a str,
    /// `header_b64 '.' payload_b64`: the bytes that were signed.
    pub signing_input: &'a str,
}

impl<'a> Compact<'a> {
    /// Splits a token into exactly three non-empty-header segments, after the size cap.
    pub fn split(token: &'a str, max_bytes: usize) -> Result<Self, TokenError> {
        if token.len() > max_bytes {
            return Err(TokenError::TooLarge {
                size: token.len(),
                max: max_bytes,
            });
        }
        let mut parts = token.splitn(4, '.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Shape);
        };
        if h.is_empty() || p.is_empty() {
            return Err(TokenError::Shape);
        }
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(TokenError::Shape)?;
        Ok(Compact {
            header_b64: h,
            payload_b64: p,
            signature_b64: s,
            signing_input,
        })
    }
}

/// A JOSE header as read from an untrusted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Signature algorithm.
    pub alg: Algorithm,
    /// Key id: always present.
    pub kid: String,
    /// Media type of the whole token.
    pub typ: Option<String>,
}

// Presence flags are `bool` via `present`, not `Option<IgnoredAny>`: serde reads
// `"crit": null` as `None`, and a member that is present with any value must count.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    typ: Option<String>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    x5t: bool,
    #[serde(default, rename = "x5t#S256", deserialize_with = "present")]
    x5t256: bool,
    #[serde(default, deserialize_with = "present")]
    b64: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// Longest `kid` accepted. Bonafide kids are 43-character thumbprints.
pub const MAX_KID_LEN: usize = 128;

/// Decodes and checks the protected header (pipeline step 2).
pub fn decode_header(header_b64: &str, limits: JsonLimits) -> Result<Header, TokenError> {
    let bytes = b64::decode(header_b64).map_err(|_| TokenError::Base64(Segment::Header))?;
    json::check(&bytes, limits).map_err(|e| TokenError::Json(Segment::Header, e))?;
    if !json::is_object(&bytes) {
        return Err(TokenError::HeaderNotObject);
    }
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| TokenError::HeaderNotObject)?;
    if raw.crit {
        return Err(TokenError::CriticalHeader);
    }
    let forbidden = [
        ("jwk", raw.jwk),
        ("jku", raw.jku),
        ("x5u", raw.x5u),
        ("x5c", raw.x5c),
        ("x5t", raw.x5t),
        ("x5t#S256", raw.x5t256),
        ("b64", raw.b64),
    ];
    if let Some((name, _)) = forbidden.iter().find(|(_, present)| *present) {
        return Err(TokenError::ForbiddenHeader(name));
    }
    let alg_text = raw.alg.ok_or(TokenError::MissingHeader("alg"))?;
    let alg = Algorithm::parse(&alg_text)
        .ok_or_else(|| TokenError::AlgorithmNotAllowed(alg_text.chars().take(32).collect()))?;
    let kid = raw.kid.ok_or(TokenError::MissingHeader("kid"))?;
    if kid.is_empty() || kid.len() > MAX_KID_LEN {
        return Err(TokenError::UnknownKey);
    }
    Ok(Header {
        alg,
        kid,
        typ: raw.typ,
    })
}

/// True if `typ` names `expected`, compared as RFC 7515 §4.1.9 says: case-insensitive,
/// with the `application/` prefix optional.
pub fn typ_matches(typ: Option<&str>, expected: &str) -> bool {
    let Some(typ) = typ else { return false };
    let bare = match typ.get(..12) {
        Some(p) if p.eq_ignore_ascii_case("application/") => typ.get(12..).unwrap_or_default(),
        _ => typ,
    };
    bare.eq_ignore_ascii_case(expected)
}

/// The base64url header segment Bonafide writes: `{"alg","typ","kid"}` in that order.
pub fn header_b64(alg: Algorithm, typ: &str, kid: &str) -> Result<String, KeyError> {
    #[derive(serde::Serialize)]
    struct Out<'a> {
        alg: &'a str,
        typ: &'a str,
        kid: &'a str,
    }
    let header = serde_json::to_vec(&Out {
        alg: alg.as_str(),
        typ,
        kid,
    })
    .map_err(|_| KeyError::Sign)?;
    Ok(b64::encode(&header))
}

/// Signs `payload` (already-serialised JSON claims) as a compact JWS with header
/// `{"alg","typ","kid"}`.
pub fn sign_compact(key: &SigningKey, typ: &str, payload: &[u8]) -> Result<String, KeyError> {
    let mut out = header_b64(key.alg(), typ, key.kid())?;
    out.push('.');
    out.push_str(&b64::encode(payload));
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64::encode(&sig));
    Ok(out)
}

/// Why a small signed proof (a domain or key proof) could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofOpenError {
    /// Size, framing, header, algorithm or signature.
    Jws(TokenError),
    /// `typ` is not the proof's, at most 64 characters.
    WrongType(String),
    /// No key for the header's `kid` (at most 128 characters).
    NoKey(String),
    /// The claims are not strict JSON of the expected shape.
    Claims(String),
}

/// Opens a small signed proof in the order of every Bonafide JWS: size and shape;
/// header (no `crit`, no key-carrying members); `typ`; the key `pick` chooses by the
/// header (never a key the proof offers) and its algorithm equal to `alg`; the
/// signature, before the payload is read; then the claims as strict JSON (duplicate
/// members and depth refused) parsed into `T`.
pub fn open_proof<'k, T: serde::de::DeserializeOwned>(
    proof: &str,
    max_bytes: usize,
    typ: &str,
    pick: impl FnOnce(&Header) -> Option<&'k crate::keys::VerifyingKey>,
) -> Result<T, ProofOpenError> {
    let limits = JsonLimits::default();
    let compact = Compact::split(proof, max_bytes).map_err(ProofOpenError::Jws)?;
    let header = decode_header(compact.header_b64, limits).map_err(ProofOpenError::Jws)?;
    if !typ_matches(header.typ.as_deref(), typ) {
        return Err(ProofOpenError::WrongType(
            header
                .typ
                .as_deref()
                .unwrap_or_default()
                .chars()
                .take(64)
                .collect(),
        ));
    }
    let key = pick(&header)
        .ok_or_else(|| ProofOpenError::NoKey(header.kid.chars().take(128).collect()))?;
    if key.alg() != header.alg {
        return Err(ProofOpenError::Jws(TokenError::AlgorithmKeyMismatch));
    }
    let sig = b64::decode(compact.signature_b64)
        .map_err(|_| ProofOpenError::Jws(TokenError::Base64(Segment::Signature)))?;
    if !key.verify(compact.signing_input.as_bytes(), &sig) {
        return Err(ProofOpenError::Jws(TokenError::BadSignature));
    }
    let payload = b64::decode(compact.payload_b64)
        .map_err(|_| ProofOpenError::Jws(TokenError::Base64(Segment::Payload)))?;
    json::check(&payload, limits).map_err(|e| ProofOpenError::Claims(e.to_string()))?;
    if !json::is_object(&payload) {
        return Err(ProofOpenError::Claims(
            "claims are not a JSON object".into(),
        ));
    }
    serde_json::from_slice(&payload).map_err(|e| {
        let msg = e.to_string();
        // serde's position is noise to the caller; the member name is what helps.
        ProofOpenError::Claims(match msg.rsplit_once(" at line ") {
            Some((m, _)) => m.to_owned(),
            None => msg,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_requires_three_segments() {
        assert!(Compact::split("a.b.c", 100).is_ok());
        assert_eq!(Compact::split("a.b", 100).unwrap_err(), TokenError::Shape);
        assert_eq!(
            Compact::split("a.b.c.d", 100).unwrap_err(),
            TokenError::Shape
        );
        assert_eq!(Compact::split(".b.c", 100).unwrap_err(), TokenError::Shape);
        assert_eq!(
            Compact::split("a.b.c", 4).unwrap_err(),
            TokenError::TooLarge { size: 5, max: 4 }
        );
    }

    #[test]
    fn typ_comparison() {
        assert!(typ_matches(Some("agent+jwt"), "agent+jwt"));
        assert!(typ_matches(Some("Agent+JWT"), "agent+jwt"));
        assert!(typ_matches(Some("application/agent+jwt"), "agent+jwt"));
        assert!(!typ_matches(Some("JWT"), "agent+jwt"));
        assert!(!typ_matches(None, "agent+jwt"));
    }
}
