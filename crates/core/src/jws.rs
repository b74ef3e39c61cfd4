//! JWS Compact Serialization (RFC 7515 §7.1), hardened per RFC 8725: the one place
//! every kind of Bonafide JWS is opened.
//!
//! This is deliberately small: one signature, three algorithms. It is not a general
//! JOSE library: no JSON serialization, no unencoded payloads (`b64`), no `crit`
//! extensions, no keys taken from the header (with one named exception, DPoP's
//! `jwk`: [`KeyFrom::EmbeddedJwk`]).
//!
//! [`open`] is the one verify sequence of agent tokens, consent tokens, DPoP proofs,
//! receipts, domain proofs and key proofs, in this order (the first failure decides):
//!
//! 1. size, then shape (three segments, non-empty header and payload);
//! 2. the protected header: strict base64url and JSON, `alg`, `typ` (and `kid`)
//!    strings; no `crit`; none of [`FORBIDDEN_HEADERS`] (the one table, for every
//!    kind); `alg` one Bonafide supports; `kid` present (unless the key is embedded);
//!    then the kind's [`Rules`]: its `alg` allow-list, its `typ`, and for DPoP the
//!    embedded public `jwk`;
//! 3. the key, chosen by the caller from the header ([`Keys`]), and its algorithm
//!    equal to `alg` — the one place that comparison is made;
//! 4. the signature, before anything in the payload is read;
//! 5. the claims: strict JSON (no duplicate members, bounded depth), an object,
//!    parsed into the caller's type.
//!
//! What legitimately differs between kinds is in [`Rules`]; errors are [`JwsError`],
//! which each kind converts into its own typed error (`From<JwsError>`).

use std::borrow::Cow;
use std::ops::Deref;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::b64;
use crate::json::{self, JsonError, JsonLimits, ParseError};
use crate::keys::{Algorithm, Jwk, KeyError, SigningKey, VerifyingKey};
use crate::token::{KeyResolver, Segment, TokenError};

/// The header members no Bonafide JWS may carry, for every kind: those that name or
/// carry a key or certificate (RFC 7515 §4.1.3–4.1.8: `jwk`, `jku`, `x5u`, `x5c`,
/// `x5t`, `x5t#S256`) — a key comes from the verifier, never from the token — and
/// `b64` (RFC 7797), which would change what the signature covers. The one exception
/// is named, not listed twice: [`KeyFrom::EmbeddedJwk`] (DPoP, RFC 9449 §4.2)
/// requires `jwk`. `crit` is refused too ([`JwsError::CriticalHeader`]).
pub const FORBIDDEN_HEADERS: [&str; 7] = ["jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64"];

/// Every algorithm Bonafide verifies: the default allow-list of [`Rules::algs`].
pub const ALL_ALGS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Longest `kid` accepted. Bonafide kids are 43-character thumbprints.
pub const MAX_KID_LEN: usize = 128;

/// Where the key that checks a JWS comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFrom {
    /// From the verifier, chosen by the header's `kid` (required, 1–128 bytes) or by
    /// the caller alone; `jwk` is forbidden like every member of
    /// [`FORBIDDEN_HEADERS`]. Every kind but DPoP.
    Kid,
    /// The named exception to [`FORBIDDEN_HEADERS`]: the header's `jwk` (required, a
    /// public key: private members refused) is the key, as RFC 9449 §4.2 requires of
    /// DPoP proofs. The caller must tie it to a key it already trusts (the token's
    /// `cnf.jkt`) before [`open`] uses it. `kid` is not read.
    EmbeddedJwk,
}

impl KeyFrom {
    /// Whether a member of [`FORBIDDEN_HEADERS`] is this source's own (only `jwk`, only
    /// for [`KeyFrom::EmbeddedJwk`]).
    fn exempts(self, member: &str) -> bool {
        self == KeyFrom::EmbeddedJwk && member == "jwk"
    }
}

/// The `typ` a kind of JWS must carry, compared as [`typ_matches`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Typ {
    /// Exactly this media type (explicit typing, RFC 8725 §3.11).
    Is(&'static str),
    /// This media type, or no `typ` at all (AgentOAuth consent tokens, which cannot be
    /// explicitly typed).
    IsOrAbsent(&'static str),
}

impl Typ {
    /// The media type named.
    pub fn expected(self) -> &'static str {
        match self {
            Typ::Is(t) | Typ::IsOrAbsent(t) => t,
        }
    }

    /// Whether a header's `typ` is acceptable.
    pub fn accepts(self, typ: Option<&str>) -> bool {
        match self {
            Typ::Is(t) => typ_matches(typ, t),
            Typ::IsOrAbsent(t) => typ.is_none() || typ_matches(typ, t),
        }
    }
}

/// What one kind of JWS expects: the only things that differ between kinds. The
/// forbidden-header table, the `alg`-against-key check and the order of the checks
/// are [`open`]'s and the same for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// The `typ` it carries.
    pub typ: Typ,
    /// Where its key comes from.
    pub key_from: KeyFrom,
    /// The algorithms it may use ([`ALL_ALGS`], or fewer: consent tokens are EdDSA).
    pub algs: &'static [Algorithm],
    /// Longest JWS accepted, in bytes.
    pub max_bytes: usize,
    /// JSON bounds for header and claims.
    pub json: JsonLimits,
}

impl Rules {
    /// A kind of `typ` whose key the verifier chooses ([`KeyFrom::Kid`]), any of
    /// [`ALL_ALGS`], at most `max_bytes`, default JSON bounds.
    pub fn kid(typ: Typ, max_bytes: usize) -> Self {
        Rules {
            typ,
            key_from: KeyFrom::Kid,
            algs: ALL_ALGS,
            max_bytes,
            json: JsonLimits::default(),
        }
    }
}

/// Why a JWS could not be opened. Each kind converts it into its own error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than [`Rules::max_bytes`].
    #[error("JWS is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Length.
        size: usize,
        /// Cap.
        max: usize,
    },
    /// Not three dot-separated segments with a non-empty header and payload.
    #[error("not a compact JWS (three base64url segments separated by dots)")]
    Shape,
    /// A segment is not strict base64url.
    #[error("JWS {0} is not strict base64url")]
    Base64(Segment),
    /// A segment's JSON is malformed, has duplicate members or nests too deep.
    #[error("JWS {0} JSON is invalid: {1}")]
    Json(Segment, JsonError),
    /// The header is not a JSON object with strings where strings belong.
    #[error("JWS header is not a valid JOSE header")]
    HeaderNotObject,
    /// A required header member (`alg`, `kid`, `jwk`) is missing.
    #[error("JWS header has no `{0}`")]
    MissingHeader(&'static str),
    /// `crit` is present (RFC 7515 §4.1.11: no extensions are understood).
    #[error("`crit` header parameter is not supported")]
    CriticalHeader,
    /// A member of [`FORBIDDEN_HEADERS`] is present.
    #[error("header parameter `{0}` is not accepted")]
    ForbiddenHeader(&'static str),
    /// `alg` is not one Bonafide supports, or not one of this kind's
    /// ([`Rules::algs`]); at most 32 characters.
    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    /// `kid` is empty or longer than [`MAX_KID_LEN`]: it names no key.
    #[error("`kid` names no key")]
    BadKid,
    /// `typ` is not this kind's.
    #[error("type `{}` is not `{expected}`", found.as_deref().unwrap_or_default())]
    WrongType {
        /// What the header said (`None` if absent), at most 64 characters.
        found: Option<String>,
        /// What the kind expects.
        expected: &'static str,
    },
    /// The embedded `jwk` is not a JWK object with a string `kty`.
    #[error("`jwk` is not a JWK object")]
    MalformedJwk,
    /// The embedded `jwk` carries private members.
    #[error("`jwk` is not usable: {0}")]
    Jwk(KeyError),
    /// `alg` is not the algorithm of the key chosen.
    #[error("algorithm `{alg}` does not match the key's algorithm `{key}`")]
    AlgorithmKeyMismatch {
        /// The header's `alg`.
        alg: Algorithm,
        /// The key's algorithm.
        key: Algorithm,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// The claims are not a JSON object.
    #[error("claims are not a JSON object")]
    ClaimsNotObject,
    /// The claims are not of the expected shape (serde's message, without position).
    #[error("claims are invalid: {0}")]
    Claims(String),
}

impl From<JwsError> for TokenError {
    /// The agent-token reading (also consent tokens', and the framing errors of
    /// receipts and proofs).
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLarge { size, max } => TokenError::TooLarge { size, max },
            JwsError::Shape => TokenError::Shape,
            JwsError::Base64(s) => TokenError::Base64(s),
            JwsError::Json(s, e) => TokenError::Json(s, e),
            JwsError::HeaderNotObject | JwsError::MalformedJwk | JwsError::Jwk(_) => {
                TokenError::HeaderNotObject
            }
            JwsError::MissingHeader(m) => TokenError::MissingHeader(m),
            JwsError::CriticalHeader => TokenError::CriticalHeader,
            JwsError::ForbiddenHeader(m) => TokenError::ForbiddenHeader(m),
            JwsError::AlgorithmNotAllowed(a) => TokenError::AlgorithmNotAllowed(a),
            JwsError::BadKid => TokenError::UnknownKey,
            JwsError::WrongType { found, expected } => TokenError::WrongType {
                found: found.unwrap_or_default(),
                expected,
            },
            JwsError::AlgorithmKeyMismatch { .. } => TokenError::AlgorithmKeyMismatch,
            JwsError::BadSignature => TokenError::BadSignature,
            JwsError::ClaimsNotObject => TokenError::Claims("claims are not a JSON object".into()),
            JwsError::Claims(m) => TokenError::Claims(m),
        }
    }
}

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
        Self::split_checked(token, max_bytes).map_err(Into::into)
    }

    fn split_checked(token: &'a str, max_bytes: usize) -> Result<Self, JwsError> {
        if token.len() > max_bytes {
            return Err(JwsError::TooLarge {
                size: token.len(),
                max: max_bytes,
            });
        }
        let mut parts = token.splitn(4, '.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Shape);
        };
        if h.is_empty() || p.is_empty() {
            return Err(JwsError::Shape);
        }
        let signing_input = token.get(..h.len() + 1 + p.len()).ok_or(JwsError::Shape)?;
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

/// A protected header that passed the header checks of [`open`], as the key lookup
/// ([`Keys`]) sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    alg: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    jwk: Option<Jwk>,
}

impl Protected {
    /// `alg`.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// `kid`: 1–128 bytes with [`KeyFrom::Kid`]; empty with [`KeyFrom::EmbeddedJwk`],
    /// where it is not read.
    pub fn kid(&self) -> &str {
        self.kid.as_deref().unwrap_or_default()
    }

    /// `typ`, if present.
    pub fn typ(&self) -> Option<&str> {
        self.typ.as_deref()
    }

    /// The embedded public key: always with [`KeyFrom::EmbeddedJwk`], never otherwise.
    pub fn jwk(&self) -> Option<&Jwk> {
        self.jwk.as_ref()
    }

    /// As a [`Header`] (`alg`, `kid`, `typ`).
    pub fn into_header(self) -> Header {
        Header {
            alg: self.alg,
            kid: self.kid.unwrap_or_default(),
            typ: self.typ,
        }
    }
}

impl From<&Header> for Protected {
    fn from(h: &Header) -> Self {
        Protected {
            alg: h.alg,
            kid: Some(h.kid.clone()),
            typ: h.typ.clone(),
            jwk: None,
        }
    }
}

/// The key [`open`] checks a JWS with: one of the caller's, or one the caller built
/// from the header's embedded `jwk` after tying it to a key it trusts.
#[derive(Debug)]
pub enum Key<'k> {
    /// A key the caller holds.
    Borrowed(&'k VerifyingKey),
    /// A key parsed for this JWS.
    Owned(Box<VerifyingKey>),
}

impl Deref for Key<'_> {
    type Target = VerifyingKey;
    fn deref(&self) -> &VerifyingKey {
        match self {
            Key::Borrowed(k) => k,
            Key::Owned(k) => k,
        }
    }
}

/// How [`open`] gets the key for a JWS: any `FnOnce(&Protected) -> Result<Key, E>`
/// (the key `kid` names, a key the caller chose, or the embedded key tied to the
/// token's `cnf.jkt`), or [`ByKid`] for a [`KeyResolver`] with its known-header fast
/// path. Never a key the JWS offers, but through [`KeyFrom::EmbeddedJwk`].
pub trait Keys<'k> {
    /// The caller's error, into which [`JwsError`] converts.
    type Error: From<JwsError>;

    /// Fast path: the header and key for a header segment that is byte for byte one
    /// the caller already checked against these rules (the header Bonafide writes for
    /// one of its own keys). `None`: decode and check it.
    fn known(&self, _header_b64: &str) -> Option<(&'k Header, &'k VerifyingKey)> {
        None
    }

    /// The key for a header that passed the header checks.
    fn key(self, header: &Protected) -> Result<Key<'k>, Self::Error>;
}

impl<'k, E, F> Keys<'k> for F
where
    E: From<JwsError>,
    F: FnOnce(&Protected) -> Result<Key<'k>, E>,
{
    type Error = E;

    fn key(self, header: &Protected) -> Result<Key<'k>, E> {
        self(header)
    }
}

/// A [`KeyResolver`]'s keys by `kid`, with its known-header fast path (agent tokens).
/// No key for the `kid` is [`TokenError::UnknownKey`].
#[derive(Debug)]
pub struct ByKid<'k, R: ?Sized>(pub &'k R);

impl<'k, R: KeyResolver + ?Sized> Keys<'k> for ByKid<'k, R> {
    type Error = TokenError;

    fn known(&self, header_b64: &str) -> Option<(&'k Header, &'k VerifyingKey)> {
        self.0.known_header(header_b64)
    }

    fn key(self, header: &Protected) -> Result<Key<'k>, TokenError> {
        self.0
            .key(header.kid())
            .map(Key::Borrowed)
            .ok_or(TokenError::UnknownKey)
    }
}

/// A JWS that [`open`] verified.
#[derive(Debug)]
pub struct Opened<'k, T> {
    /// The checked header.
    pub header: Protected,
    /// The key whose signature it carries (its algorithm is the header's `alg`).
    pub key: Key<'k>,
    /// The claims, strict JSON parsed into `T`.
    pub claims: T,
}

/// Opens a compact JWS of the kind `rules` describes, with the key `keys` chooses:
/// the one verify sequence of every Bonafide JWS (see the module docs for the order).
/// Nothing in the payload is read before the signature verified. Errors are
/// [`JwsError`] converted into the caller's error, or the caller's own from `keys`.
pub fn open<'k, T, K>(jws: &str, rules: &Rules, keys: K) -> Result<Opened<'k, T>, K::Error>
where
    T: DeserializeOwned,
    K: Keys<'k>,
{
    let compact = Compact::split_checked(jws, rules.max_bytes)?;
    let (header, key) = match keys.known(compact.header_b64) {
        Some((header, key)) => (Protected::from(header), Key::Borrowed(key)),
        None => {
            let header = check_header(compact.header_b64, rules)?;
            let key = keys.key(&header)?;
            (header, key)
        }
    };
    // The one place `alg` is checked against the key: a token never chooses how it
    // is verified.
    if key.alg() != header.alg {
        return Err(JwsError::AlgorithmKeyMismatch {
            alg: header.alg,
            key: key.alg(),
        }
        .into());
    }
    let mut sig_buf = [0u8; SIG_INLINE];
    let sig = decode_segment(compact.signature_b64, &mut sig_buf, Segment::Signature)?;
    if !key.verify(compact.signing_input.as_bytes(), &sig) {
        return Err(JwsError::BadSignature.into());
    }
    let mut payload_buf = [0u8; PAYLOAD_INLINE];
    let payload = decode_segment(compact.payload_b64, &mut payload_buf, Segment::Payload)?;
    let claims = parse_claims(&payload, rules.json)?;
    Ok(Opened {
        header,
        key,
        claims,
    })
}

/// Signatures up to this many bytes (RSA 4096) and payloads up to this many (a
/// typical agent token's is about 400) are decoded on the stack; longer ones into a
/// `Vec`, as strictly.
const SIG_INLINE: usize = 512;
const PAYLOAD_INLINE: usize = 1024;

/// Decodes a base64url segment into `buf` if it fits, else onto the heap.
fn decode_segment<'b>(
    text: &str,
    buf: &'b mut [u8],
    segment: Segment,
) -> Result<Cow<'b, [u8]>, JwsError> {
    let bad = |_| JwsError::Base64(segment);
    match b64::decode_into(text, buf).map_err(bad)? {
        Some(bytes) => Ok(Cow::Borrowed(bytes)),
        None => b64::decode(text).map(Cow::Owned).map_err(bad),
    }
}

/// Step 5: strict JSON (no duplicate members, bounded depth), an object, parsed into
/// `T`, in one pass ([`json::from_slice`]); a refusal is reported as the separate
/// checks would, in their order: strict JSON, then an object, then `T`.
fn parse_claims<T: DeserializeOwned>(payload: &[u8], limits: JsonLimits) -> Result<T, JwsError> {
    if !json::is_object(payload) {
        json::check(payload, limits).map_err(|e| JwsError::Json(Segment::Payload, e))?;
        return Err(JwsError::ClaimsNotObject);
    }
    json::from_slice(payload, limits).map_err(|e| match e {
        ParseError::Json(e) => JwsError::Json(Segment::Payload, e),
        ParseError::Type(m) => JwsError::Claims(m),
    })
}

/// Step 2 of [`open`] on its own: decodes the protected header and applies the header
/// checks and `rules`' allow-list, `typ` and key source. For a caller that must look
/// at a header before choosing keys (consent tokens' unverified candidates).
pub fn check_header(header_b64: &str, rules: &Rules) -> Result<Protected, JwsError> {
    let (mut header, jwk) = decode(header_b64, rules.json, rules.key_from)?;
    if !rules.algs.contains(&header.alg) {
        return Err(JwsError::AlgorithmNotAllowed(header.alg.as_str().into()));
    }
    if !rules.typ.accepts(header.typ.as_deref()) {
        return Err(JwsError::WrongType {
            found: header.typ.as_deref().map(|t| t.chars().take(64).collect()),
            expected: rules.typ.expected(),
        });
    }
    if rules.key_from == KeyFrom::EmbeddedJwk {
        let value = jwk.ok_or(JwsError::MissingHeader("jwk"))?;
        if !value.is_object() {
            return Err(JwsError::MalformedJwk);
        }
        let jwk: Jwk = serde_json::from_value(value).map_err(|_| JwsError::MalformedJwk)?;
        jwk.check_public().map_err(JwsError::Jwk)?;
        header.jwk = Some(jwk);
    }
    Ok(header)
}

/// Decodes and checks the protected header (pipeline step 2) of a JWS whose key is
/// named by `kid`, whatever its `typ`: strict encoding, no `crit`, none of
/// [`FORBIDDEN_HEADERS`], a supported `alg`, a `kid` of 1–128 bytes.
pub fn decode_header(header_b64: &str, limits: JsonLimits) -> Result<Header, TokenError> {
    decode(header_b64, limits, KeyFrom::Kid)
        .map(|(h, _)| h.into_header())
        .map_err(Into::into)
}

/// The header checks every kind shares, in their order; also returns the embedded
/// `jwk` member (non-null) for [`KeyFrom::EmbeddedJwk`].
fn decode(
    header_b64: &str,
    limits: JsonLimits,
    key_from: KeyFrom,
) -> Result<(Protected, Option<Value>), JwsError> {
    let bytes = b64::decode(header_b64).map_err(|_| JwsError::Base64(Segment::Header))?;
    if !json::is_object(&bytes) {
        json::check(&bytes, limits).map_err(|e| JwsError::Json(Segment::Header, e))?;
        return Err(JwsError::HeaderNotObject);
    }
    let mut members: Map<String, Value> =
        json::from_slice(&bytes, limits).map_err(|e| match e {
            ParseError::Json(e) => JwsError::Json(Segment::Header, e),
            ParseError::Type(_) => JwsError::HeaderNotObject,
        })?;
    // Members read as strings must be strings (`null` reads as absent).
    let alg = string_member(&members, "alg")?;
    let typ = string_member(&members, "typ")?;
    let kid = match key_from {
        KeyFrom::Kid => string_member(&members, "kid")?,
        KeyFrom::EmbeddedJwk => None,
    };
    // Present with any value, `null` included, counts.
    if members.contains_key("crit") {
        return Err(JwsError::CriticalHeader);
    }
    if let Some(name) = FORBIDDEN_HEADERS
        .iter()
        .find(|name| members.contains_key(**name) && !key_from.exempts(name))
    {
        return Err(JwsError::ForbiddenHeader(name));
    }
    let alg_text = alg.ok_or(JwsError::MissingHeader("alg"))?;
    let alg = Algorithm::parse(&alg_text)
        .ok_or_else(|| JwsError::AlgorithmNotAllowed(alg_text.chars().take(32).collect()))?;
    let kid = match key_from {
        KeyFrom::Kid => {
            let kid = kid.ok_or(JwsError::MissingHeader("kid"))?;
            if kid.is_empty() || kid.len() > MAX_KID_LEN {
                return Err(JwsError::BadKid);
            }
            Some(kid)
        }
        KeyFrom::EmbeddedJwk => None,
    };
    let jwk = match key_from {
        KeyFrom::EmbeddedJwk => members.remove("jwk").filter(|v| !v.is_null()),
        KeyFrom::Kid => None,
    };
    Ok((
        Protected {
            alg,
            kid,
            typ,
            jwk: None,
        },
        jwk,
    ))
}

fn string_member(members: &Map<String, Value>, name: &str) -> Result<Option<String>, JwsError> {
    match members.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwsError::HeaderNotObject),
    }
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

    /// One kind of Bonafide JWS for the table-driven tests: the key that signs it, a
    /// genuine one, and its own verifier, whose error is read as an [`Outcome`].
    struct Kind {
        name: &'static str,
        key: SigningKey,
        genuine: String,
        verify: Box<dyn Fn(&str) -> Outcome>,
    }

    /// What a kind's verifier said, in terms common to all kinds.
    #[derive(Debug, PartialEq, Eq)]
    enum Outcome {
        Accepted,
        Forbidden(&'static str),
        Critical,
        AlgKeyMismatch,
        /// Anything else, as its `Debug` text.
        Other(String),
    }

    fn outcome<E: std::fmt::Debug>(
        r: Result<(), E>,
        read: impl Fn(&E) -> Option<Outcome>,
    ) -> Outcome {
        match r {
            Ok(()) => Outcome::Accepted,
            Err(e) => read(&e).unwrap_or_else(|| Outcome::Other(format!("{e:?}"))),
        }
    }

    /// The agent-token reading of a [`TokenError`] (also inside receipts' and proofs'
    /// errors).
    fn token_outcome(e: &TokenError) -> Option<Outcome> {
        match e {
            TokenError::ForbiddenHeader(m) => Some(Outcome::Forbidden(m)),
            TokenError::CriticalHeader => Some(Outcome::Critical),
            TokenError::AlgorithmKeyMismatch => Some(Outcome::AlgKeyMismatch),
            _ => None,
        }
    }

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://registry.example";
    const HTU: &str = "https://api.example/orders";

    fn public(key: &SigningKey) -> VerifyingKey {
        VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap()
    }

    fn key_set(key: &SigningKey) -> crate::token::KeySet {
        let mut set = crate::token::KeySet::new();
        set.insert(public(key));
        set
    }

    /// Every kind: agent token, DPoP proof, receipt, domain proof, consent token, key
    /// proof.
    fn kinds() -> Vec<Kind> {
        use crate::{consent, domain_proof, dpop, key_proof, receipt, token};
        let mut out = Vec::new();

        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let claims: token::AgentClaims = serde_json::from_value(serde_json::json!({
            "iss": ISS, "sub": crate::ids::AgentId::from_random([1; 16]),
            "iat": NOW, "exp": NOW + 600, "jti": crate::ids::TokenId::from_random([2; 16]),
            "agent": {"name": "A", "issuer": "i.example", "scopes": []},
        }))
        .unwrap();
        let genuine = token::sign(&key, &claims).unwrap();
        let keys = key_set(&key);
        let opts = token::VerifyOptions::for_issuer(ISS);
        out.push(Kind {
            name: "agent token",
            key,
            genuine,
            verify: Box::new(move |t| {
                outcome(
                    token::verify(t, &keys, &opts, NOW).map(|_| ()),
                    token_outcome,
                )
            }),
        });

        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let genuine = dpop::sign(&key, "POST", HTU, "a.b.c", NOW, "jti-1").unwrap();
        let jkt = key.kid().to_owned();
        out.push(Kind {
            name: "DPoP proof",
            key,
            genuine,
            verify: Box::new(move |t| {
                let check = dpop::ProofCheck::new("POST", HTU, &jkt, "a.b.c", NOW);
                outcome(dpop::verify(t, &check).map(|_| ()), |e| match e {
                    dpop::DpopError::ForbiddenHeader(m) => Some(Outcome::Forbidden(m)),
                    dpop::DpopError::CriticalHeader => Some(Outcome::Critical),
                    dpop::DpopError::AlgKeyMismatch { .. } => Some(Outcome::AlgKeyMismatch),
                    _ => None,
                })
            }),
        });

        let key = SigningKey::generate(Algorithm::RS256).unwrap();
        let claims: receipt::ReceiptClaims = serde_json::from_value(serde_json::json!({
            "iss": ISS, "iat": NOW,
            "sub": crate::ids::ReceiptId::from_random([3; 16]),
            "receipt_id": crate::ids::ReceiptId::from_random([3; 16]),
            "decision": "allow", "valid": true, "reasons": [],
            "token_sha256": crate::hex(&crate::sha256(b"a.b.c")),
            "request_sha256": receipt::RequestFacts::default().sha256_hex(),
            "verified_at": "2027-01-15T08:00:00.000Z",
        }))
        .unwrap();
        let genuine = receipt::sign(&key, &claims).unwrap();
        let keys = key_set(&key);
        out.push(Kind {
            name: "receipt",
            key,
            genuine,
            verify: Box::new(move |t| {
                outcome(receipt::verify(t, &keys).map(|_| ()), |e| match e {
                    receipt::ReceiptError::Jws(e) => token_outcome(e),
                    _ => None,
                })
            }),
        });

        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let claims = domain_proof::DomainProofClaims {
            iss: "iss_a".into(),
            domain: "example.com".into(),
            aud: ISS.into(),
            iat: NOW,
            jti: None,
        };
        let genuine = domain_proof::sign(&key, &claims).unwrap();
        let keys = key_set(&key);
        out.push(Kind {
            name: "domain proof",
            key,
            genuine,
            verify: Box::new(move |t| {
                let expected = domain_proof::Expected {
                    issuer: "iss_a",
                    domain: "example.com",
                    audience: ISS,
                    now: NOW,
                };
                outcome(
                    domain_proof::verify(t, &keys, &expected).map(|_| ()),
                    |e| match e {
                        domain_proof::DomainProofError::Jws(e) => token_outcome(e),
                        _ => None,
                    },
                )
            }),
        });

        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let policy = serde_json::json!({
            "version": "pol.v0.2", "id": "pol_1", "actions": ["payments.send"], "resources": [],
        });
        let hash = crate::policy::Policy::from_value(policy.clone())
            .unwrap()
            .hash()
            .to_owned();
        let claims = serde_json::json!({
            "ver": "act.v0.2", "iss": ISS, "user": "did:user:alice", "agent": "did:agent:a",
            "policy": policy, "policy_hash": hash, "exp": NOW + 600, "jti": "act-1",
        });
        let genuine = sign_compact(&key, "JWT", claims.to_string().as_bytes()).unwrap();
        let verifying = public(&key);
        out.push(Kind {
            name: "consent token",
            key,
            genuine,
            verify: Box::new(move |t| {
                let opts = crate::token::VerifyOptions::for_issuer(ISS);
                outcome(
                    consent::verify(t, &verifying, &opts, NOW).map(|_| ()),
                    token_outcome,
                )
            }),
        });

        let key = SigningKey::generate(Algorithm::ES256).unwrap();
        let claims = key_proof::KeyProofClaims {
            iss: "iss_a".into(),
            aud: ISS.into(),
            iat: NOW,
            jkt: key.kid().to_owned(),
            jti: None,
        };
        let genuine = key_proof::sign(&key, &claims).unwrap();
        let verifying = public(&key);
        out.push(Kind {
            name: "key proof",
            key,
            genuine,
            verify: Box::new(move |t| {
                let expected = key_proof::Expected {
                    issuer: "iss_a",
                    audience: ISS,
                    now: NOW,
                };
                outcome(
                    key_proof::verify(t, &verifying, &expected).map(|_| ()),
                    |e| match e {
                        key_proof::KeyProofError::Jws(e) => token_outcome(e),
                        _ => None,
                    },
                )
            }),
        });
        out
    }

    /// `kind`'s genuine JWS with its header changed by `edit`, signed again by its key
    /// (so only the header can be what is refused).
    fn resigned(kind: &Kind, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut parts = kind.genuine.split('.');
        let (h, p) = (parts.next().unwrap(), parts.next().unwrap());
        let mut header: Map<String, Value> =
            serde_json::from_slice(&b64::decode(h).unwrap()).unwrap();
        edit(&mut header);
        let mut out = b64::encode(&serde_json::to_vec(&header).unwrap());
        out.push('.');
        out.push_str(p);
        let sig = kind.key.sign(out.as_bytes()).unwrap();
        out.push('.');
        out.push_str(&b64::encode(&sig));
        out
    }

    #[test]
    fn every_kind_accepts_its_genuine_jws() {
        for kind in kinds() {
            assert_eq!(
                (kind.verify)(&kind.genuine),
                Outcome::Accepted,
                "{}",
                kind.name
            );
            // Signed again over the same header: the re-signing itself is harmless.
            let same = resigned(&kind, |_| {});
            assert_eq!((kind.verify)(&same), Outcome::Accepted, "{}", kind.name);
        }
    }

    #[test]
    fn the_forbidden_header_table_applies_to_every_kind() {
        // The members the table must hold, at least.
        for name in ["jwk", "jku", "x5u", "x5c", "x5t"] {
            assert!(FORBIDDEN_HEADERS.contains(&name), "{name}");
        }
        let kinds = kinds();
        assert_eq!(kinds.len(), 6);
        for kind in &kinds {
            let own_jwk = serde_json::to_value(kind.key.verifying_key().jwk()).unwrap();
            for name in FORBIDDEN_HEADERS {
                let value = match name {
                    // The signer's own key: offering even the right key is refused.
                    "jwk" => own_jwk.clone(),
                    "x5c" => serde_json::json!(["MIIBszCCAVmgAwIBAgIU"]),
                    "b64" => Value::Bool(false),
                    _ => Value::String("https://attacker.example/k".into()),
                };
                let offered = resigned(kind, |h| {
                    h.insert(name.into(), value.clone());
                });
                let null = resigned(kind, |h| {
                    h.insert(name.into(), Value::Null);
                });
                let got = (kind.verify)(&offered);
                // The one named exception: a DPoP proof's key is its `jwk`.
                if kind.name == "DPoP proof" && name == "jwk" {
                    assert_eq!(got, Outcome::Accepted, "{}: {name}", kind.name);
                    assert_eq!(
                        (kind.verify)(&null),
                        Outcome::Other("MissingHeader(\"jwk\")".into()),
                        "{}: a null `jwk`",
                        kind.name
                    );
                    continue;
                }
                assert_eq!(got, Outcome::Forbidden(name), "{}: {name}", kind.name);
                // Present with a `null` value is present.
                assert_eq!(
                    (kind.verify)(&null),
                    Outcome::Forbidden(name),
                    "{}: {name}: null",
                    kind.name
                );
            }
            let crit = resigned(kind, |h| {
                h.insert("crit".into(), serde_json::json!(["exp"]));
            });
            assert_eq!((kind.verify)(&crit), Outcome::Critical, "{}", kind.name);
        }
        // And DPoP requires the member the others refuse.
        let dpop = kinds.iter().find(|k| k.name == "DPoP proof").unwrap();
        let without = resigned(dpop, |h| {
            h.remove("jwk");
        });
        assert_eq!(
            (dpop.verify)(&without),
            Outcome::Other("MissingHeader(\"jwk\")".into())
        );
    }

    #[test]
    fn every_kind_checks_alg_against_its_key() {
        for kind in kinds() {
            let other = match kind.key.alg() {
                Algorithm::EdDSA => Algorithm::ES256,
                _ => Algorithm::EdDSA,
            };
            let lying = resigned(&kind, |h| {
                h.insert("alg".into(), other.as_str().into());
            });
            let want = if kind.name == "consent token" {
                // EdDSA only: refused before any key is looked at.
                Outcome::Other(format!("AlgorithmNotAllowed({:?})", other.as_str()))
            } else {
                Outcome::AlgKeyMismatch
            };
            assert_eq!((kind.verify)(&lying), want, "{}", kind.name);
        }
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
