//! DPoP proofs (RFC 9449): an agent's proof, per request, that it holds the key its
//! token is bound to (`cnf.jkt`).
//!
//! [`verify`] checks one proof JWT against the request it came with (RFC 9449 §4.3):
//! its shape and strict encoding, the header (`typ dpop+jwt`, an asymmetric `alg`
//! Bonafide supports, a public `jwk` whose RFC 7638 thumbprint is the token's
//! `cnf.jkt`, no `crit`), the signature under that key, and the claims (`jti`, `htm`,
//! `htu`, `iat` within the window, `ath` the hash of the access token). [`sign`] makes
//! a proof on the agent's side.
//!
//! What this module is not:
//! - not a replay cache: it returns the proof's `jti` and how long to remember it
//!   ([`VerifiedProof::replay_until`], `iat + max_age`: the last second at which
//!   [`verify`] would accept the same proof again); the caller refuses a `jti` it has
//!   already seen (`REPLAY`), keyed by `(jkt, jti)`, until then. Key it by `jti`,
//!   never by the proof text: an ECDSA signature has a second valid form (s and
//!   n - s), so one proof has two spellings;
//! - not a nonce issuer: Bonafide does not send `DPoP-Nonce` (RFC 9449 §8, §9), so a
//!   `nonce` claim, if present, is ignored;
//! - not a clock: `now` is an argument, like everywhere in core.

use crate::b64;
use crate::json::JsonError;
use crate::jws::{self, Compact, JwsError, Key, KeyFrom, Opened, Protected, Rules, Typ};
use crate::keys::{Algorithm, Jwk, KeyError, SigningKey, VerifyingKey};
use crate::token::Segment;

/// `typ` of DPoP proofs (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// Default: how old (by `iat`) a proof may be, in seconds. RFC 9449 §11.1 asks for a
/// short window; five minutes covers slow agents without keeping proofs alive long.
pub const DEFAULT_MAX_AGE_SECS: i64 = 300;
/// Default: how far in the future `iat` may be, in seconds (clock skew between agent
/// and verifier), the same leeway agent tokens get ([`crate::token::DEFAULT_LEEWAY_SECS`]).
pub const DEFAULT_LEEWAY_SECS: i64 = 60;
/// Default cap on a proof's length in bytes. An RS256 proof with an 8192-bit key (the
/// largest Bonafide accepts) is about 3.5 KiB.
pub const DEFAULT_MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` accepted, in bytes. RFC 9449 asks for at least 96 random bits; a
/// UUID is 36 characters.
pub const MAX_JTI_LEN: usize = 256;
/// Longest `htm` or `htu` claim accepted, in bytes.
pub const MAX_CLAIM_LEN: usize = 4096;

/// Why a DPoP proof was refused. Every variant is wire code `PROOF_INVALID`
/// ([`DpopError::code`]); `PROOF_REQUIRED` (no proof) and `REPLAY` (a `jti` seen
/// before) are decided by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// Longer than [`ProofCheck::max_bytes`].
    #[error("DPoP proof is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Proof length.
        size: usize,
        /// Cap.
        max: usize,
    },
    /// Not a compact JWS: three dot-separated segments with a non-empty header and
    /// payload.
    #[error("DPoP proof is not a compact JWS (three base64url segments separated by dots)")]
    Shape,
    /// A segment is not strict base64url.
    #[error("DPoP proof {0} is not strict base64url")]
    Base64(Segment),
    /// A segment's JSON is malformed, has duplicate members or nests too deep.
    #[error("DPoP proof {0} JSON is invalid: {1}")]
    Json(Segment, JsonError),
    /// The header is not a JSON object with strings where strings belong.
    #[error("DPoP proof header is not a valid JOSE header")]
    HeaderNotObject,
    /// A required header parameter (`typ`, `alg`, `jwk`) is missing.
    #[error("DPoP proof header has no `{0}`")]
    MissingHeader(&'static str),
    /// `typ` is not `dpop+jwt`.
    #[error("DPoP proof type `{0}` is not `dpop+jwt`")]
    WrongType(String),
    /// `alg` is not RS256, ES256 or EdDSA (this refuses `none` and every MAC).
    #[error("DPoP proof algorithm `{0}` is not supported (use EdDSA, ES256 or RS256)")]
    UnsupportedAlg(String),
    /// A `crit` header is present (RFC 7515 §4.1.11: we understand no extensions).
    #[error("`crit` header parameter is not supported")]
    CriticalHeader,
    /// A header parameter that names another key or changes the signing input
    /// (`jku`, `x5u`, `x5c`, `x5t`, `x5t#S256`, `b64`): the key is `jwk` and only
    /// `jwk`.
    #[error("header parameter `{0}` is not accepted in a DPoP proof: the key is `jwk`")]
    ForbiddenHeader(&'static str),
    /// `jwk` is not a JSON object with a string `kty`.
    #[error("DPoP proof `jwk` is not a JWK object")]
    MalformedJwk,
    /// `jwk` is not a usable public key: private members, an unsupported type, bad
    /// members, a weak RSA modulus.
    #[error("DPoP proof `jwk` is not usable: {0}")]
    Jwk(KeyError),
    /// The RFC 7638 thumbprint of `jwk` is not the token's `cnf.jkt`.
    #[error("DPoP proof key is not the key the token is bound to (`cnf.jkt`)")]
    ThumbprintMismatch,
    /// `alg` is not the algorithm of the key in `jwk`.
    #[error("DPoP proof algorithm `{alg}` does not fit its `{key}` key")]
    AlgKeyMismatch {
        /// The header's `alg`.
        alg: Algorithm,
        /// The algorithm of the key in `jwk`.
        key: Algorithm,
    },
    /// The signature does not verify with `jwk`.
    #[error("DPoP proof signature does not verify")]
    BadSignature,
    /// The claims are not a JSON object.
    #[error("DPoP proof claims are not a JSON object")]
    ClaimsNotObject,
    /// A required claim is missing (`ath` only when an access token is presented).
    #[error("DPoP proof has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type, is empty, or is too long.
    #[error("DPoP proof claim `{0}` is invalid")]
    InvalidClaim(&'static str),
    /// `htm` is not the request's method (compared exactly: methods are
    /// case-sensitive, RFC 9110 §9.1).
    #[error("DPoP proof `htm` does not match the request method")]
    HtmMismatch,
    /// A URI is not an absolute `http`/`https` URI [`normalize_htu`] accepts.
    #[error("invalid HTTP target URI: {0}")]
    InvalidHtu(&'static str),
    /// `htu` is not the request's URI, after normalisation, ignoring query and
    /// fragment.
    #[error("DPoP proof `htu` does not match the request URI")]
    HtuMismatch,
    /// `iat` is older than `max_age` or further in the future than `leeway`.
    #[error("DPoP proof `iat` {iat} is outside the accepted window around {now}")]
    IatOutOfWindow {
        /// The proof's `iat`.
        iat: i64,
        /// The verifier's clock.
        now: i64,
    },
    /// `ath` is not base64url(SHA-256(access token)).
    #[error("DPoP proof `ath` does not match the access token")]
    AthMismatch,
}

impl DpopError {
    /// The wire code: always `PROOF_INVALID`.
    pub fn code(&self) -> &'static str {
        "PROOF_INVALID"
    }
}

/// What a proof must match: the request it came with and the token it accompanies.
#[derive(Debug, Clone, Copy)]
pub struct ProofCheck<'a> {
    /// The request's HTTP method, e.g. `POST`; compared exactly with `htm`.
    pub htm: &'a str,
    /// The request's target URI; query and fragment are ignored; compared with `htu`
    /// after [`normalize_htu`] on both sides.
    pub htu: &'a str,
    /// The token's `cnf.jkt`: the RFC 7638 thumbprint the proof's `jwk` must have.
    pub jkt: &'a str,
    /// The access token presented with the proof: `ath` must be its hash. `None` only
    /// for a proof that accompanies no access token (an RFC 9449 §5 token request);
    /// `ath` is then not checked. Bonafide's verifiers always pass `Some`.
    pub access_token: Option<&'a str>,
    /// The verifier's clock, Unix seconds.
    pub now: i64,
    /// Oldest accepted `iat`: `now - max_age`. Default [`DEFAULT_MAX_AGE_SECS`] (300).
    pub max_age: i64,
    /// Newest accepted `iat`: `now + leeway`. Default [`DEFAULT_LEEWAY_SECS`] (60).
    pub leeway: i64,
    /// Longest proof accepted, in bytes. Default [`DEFAULT_MAX_PROOF_BYTES`] (8 KiB).
    pub max_bytes: usize,
}

impl<'a> ProofCheck<'a> {
    /// A check for a proof presented with `access_token` (bound to `jkt`) on a
    /// request `htm htu`, with the default window and size cap.
    pub fn new(htm: &'a str, htu: &'a str, jkt: &'a str, access_token: &'a str, now: i64) -> Self {
        ProofCheck {
            htm,
            htu,
            jkt,
            access_token: Some(access_token),
            now,
            max_age: DEFAULT_MAX_AGE_SECS,
            leeway: DEFAULT_LEEWAY_SECS,
            max_bytes: DEFAULT_MAX_PROOF_BYTES,
        }
    }
}

/// A proof that passed every check of [`verify`]. Only replay is left to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The proof's `jti`: the caller's replay cache key, together with `jkt`.
    pub jti: String,
    /// The proof's `iat`, Unix seconds.
    pub iat: i64,
    /// The algorithm the proof was signed with.
    pub alg: Algorithm,
    /// The RFC 7638 thumbprint of the proof's key (equal to [`ProofCheck::jkt`]).
    pub jkt: String,
    /// The last second (Unix, inclusive) at which [`verify`] would accept this proof
    /// again, `iat + max_age`: the caller keeps its replay-cache entry (`jkt`, `jti`)
    /// until then, and may forget it after (the proof is refused as too old anyway).
    pub replay_until: i64,
}

/// The DPoP kind of JWS: `typ dpop+jwt`, the key in `jwk` (the one named exception
/// to [`jws::FORBIDDEN_HEADERS`]), any algorithm Bonafide supports.
fn rules(max_bytes: usize) -> Rules {
    Rules {
        key_from: KeyFrom::EmbeddedJwk,
        ..Rules::kid(Typ::Is(DPOP_TYP), max_bytes)
    }
}

impl From<JwsError> for DpopError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::TooLarge { size, max } => DpopError::TooLarge { size, max },
            JwsError::Shape => DpopError::Shape,
            JwsError::Base64(s) => DpopError::Base64(s),
            JwsError::Json(s, e) => DpopError::Json(s, e),
            JwsError::MissingHeader(m) => DpopError::MissingHeader(m),
            JwsError::WrongType { found: None, .. } => DpopError::MissingHeader("typ"),
            JwsError::WrongType { found: Some(t), .. } => DpopError::WrongType(t),
            JwsError::AlgorithmNotAllowed(a) => DpopError::UnsupportedAlg(a),
            JwsError::CriticalHeader => DpopError::CriticalHeader,
            JwsError::ForbiddenHeader(m) => DpopError::ForbiddenHeader(m),
            JwsError::MalformedJwk => DpopError::MalformedJwk,
            JwsError::Jwk(e) => DpopError::Jwk(e),
            JwsError::AlgorithmKeyMismatch { alg, key } => DpopError::AlgKeyMismatch { alg, key },
            JwsError::BadSignature => DpopError::BadSignature,
            JwsError::ClaimsNotObject | JwsError::Claims(_) => DpopError::ClaimsNotObject,
            // `kid` is not read in a DPoP proof.
            JwsError::HeaderNotObject | JwsError::BadKid => DpopError::HeaderNotObject,
        }
    }
}

/// Verifies a DPoP proof JWT against `check` (RFC 9449 §4.3, all steps but the
/// single-header rule, which is the HTTP layer's, and replay, which is the caller's).
///
/// Order (first failure decides), that of every Bonafide JWS ([`jws::open`]): size
/// and shape; header (`crit` and the forbidden key parameters, `alg`, `typ`, then
/// `jwk`); the key's thumbprint against `check.jkt`, before the key is used; the key
/// itself and its algorithm; the signature; then the claims, before any of which
/// nothing in the payload is read. The result carries the proof's replay window
/// ([`VerifiedProof::replay_until`]).
pub fn verify(proof_jwt: &str, check: &ProofCheck<'_>) -> Result<VerifiedProof, DpopError> {
    verify_inner(proof_jwt, check, None)
}

/// [`verify`] for a caller that already holds the bound key, parsed once (a receiver's
/// cache of the keys it has seen, keyed by thumbprint, or the agent's registered key):
/// the proof's `jwk` header must carry exactly that key's public members, so the
/// thumbprint and the key are not computed again for every proof. `key`'s kid is its
/// RFC 7638 thumbprint and must be [`ProofCheck::jkt`] (else `ThumbprintMismatch`);
/// every other check is the same as [`verify`]'s.
pub fn verify_with_key(
    proof_jwt: &str,
    check: &ProofCheck<'_>,
    key: &VerifyingKey,
) -> Result<VerifiedProof, DpopError> {
    verify_inner(proof_jwt, check, Some(key))
}

/// The key a proof's `jwk` header carries, for a caller building the cache
/// [`verify_with_key`] reads: call it only after [`verify`] accepted the proof (it
/// checks nothing but the header's key).
pub fn proof_key(proof_jwt: &str) -> Result<VerifyingKey, DpopError> {
    let compact =
        Compact::split(proof_jwt, DEFAULT_MAX_PROOF_BYTES).map_err(|_| DpopError::Shape)?;
    let header = jws::check_header(compact.header_b64, &rules(DEFAULT_MAX_PROOF_BYTES))?;
    let jwk = header.jwk().ok_or(DpopError::MissingHeader("jwk"))?;
    VerifyingKey::from_jwk(jwk).map_err(DpopError::Jwk)
}

/// The public members that make a key (RFC 7638 §3.2's required members): equal
/// members, equal thumbprint.
fn same_public_key(a: &Jwk, b: &Jwk) -> bool {
    a.kty == b.kty && a.crv == b.crv && a.x == b.x && a.y == b.y && a.n == b.n && a.e == b.e
}

fn verify_inner(
    proof_jwt: &str,
    check: &ProofCheck<'_>,
    known: Option<&VerifyingKey>,
) -> Result<VerifiedProof, DpopError> {
    // Size, shape, header (`typ`, `alg`, no `crit`, nothing of the forbidden table
    // but `jwk`, a public `jwk`), the key, its algorithm, the signature, then the
    // claims: the one JWS sequence (`jws::open`). The key is the token's before
    // anything is done with it.
    let opened: Opened<'_, serde_json::Map<String, serde_json::Value>> = jws::open(
        proof_jwt,
        &rules(check.max_bytes),
        |header: &Protected| -> Result<Key<'_>, DpopError> {
            let jwk = header.jwk().ok_or(DpopError::MissingHeader("jwk"))?;
            match known {
                // The bound key, already parsed: the header must carry exactly it.
                Some(known) => {
                    if !crate::ct_eq(known.kid().as_bytes(), check.jkt.as_bytes())
                        || !same_public_key(jwk, known.jwk())
                    {
                        return Err(DpopError::ThumbprintMismatch);
                    }
                    Ok(Key::Borrowed(known))
                }
                None => {
                    let jkt = jwk.thumbprint().map_err(DpopError::Jwk)?;
                    if !crate::ct_eq(jkt.as_bytes(), check.jkt.as_bytes()) {
                        return Err(DpopError::ThumbprintMismatch);
                    }
                    // Its kid is that thumbprint.
                    Ok(Key::Owned(Box::new(
                        VerifyingKey::from_jwk(jwk).map_err(DpopError::Jwk)?,
                    )))
                }
            }
        },
    )?;
    let alg = opened.header.alg();
    let jkt = opened.key.kid().to_owned();
    let claims = opened.claims;

    let jti = string_claim(&claims, "jti", MAX_JTI_LEN)?;
    let htm = string_claim(&claims, "htm", MAX_CLAIM_LEN)?;
    let htu = string_claim(&claims, "htu", MAX_CLAIM_LEN)?;
    let iat = match claims.get("iat") {
        None => return Err(DpopError::MissingClaim("iat")),
        Some(v) => v.as_i64().ok_or(DpopError::InvalidClaim("iat"))?,
    };
    let ath = match claims.get("ath") {
        None => None,
        Some(v) => Some(v.as_str().ok_or(DpopError::InvalidClaim("ath"))?),
    };

    if htm != check.htm {
        return Err(DpopError::HtmMismatch);
    }
    let want = normalize_htu(check.htu)?;
    if normalize_htu(htu)? != want {
        return Err(DpopError::HtuMismatch);
    }
    if iat < check.now.saturating_sub(check.max_age) || iat > check.now.saturating_add(check.leeway)
    {
        return Err(DpopError::IatOutOfWindow {
            iat,
            now: check.now,
        });
    }
    if let Some(token) = check.access_token {
        let ath = ath.ok_or(DpopError::MissingClaim("ath"))?;
        if !crate::ct_eq(ath.as_bytes(), access_token_hash(token).as_bytes()) {
            return Err(DpopError::AthMismatch);
        }
    }
    Ok(VerifiedProof {
        jti: jti.to_owned(),
        iat,
        alg,
        jkt,
        // Accepted while `iat >= now - max_age`.
        replay_until: iat.saturating_add(check.max_age),
    })
}

fn string_claim<'c>(
    claims: &'c serde_json::Map<String, serde_json::Value>,
    name: &'static str,
    max: usize,
) -> Result<&'c str, DpopError> {
    let value = claims.get(name).ok_or(DpopError::MissingClaim(name))?;
    let text = value.as_str().ok_or(DpopError::InvalidClaim(name))?;
    if text.is_empty() || text.len() > max {
        return Err(DpopError::InvalidClaim(name));
    }
    Ok(text)
}

/// `ath` for an access token: base64url(SHA-256(ASCII of the token)) (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    b64::encode(&crate::sha256(access_token.as_bytes()))
}

/// Signs a DPoP proof for the request `htm htu`, presented with `access_token`
/// (RFC 9449 §4.2): header `{"typ":"dpop+jwt","alg","jwk"}` with the bare public key
/// (required members only), claims `{"jti","htm","htu","iat","ath"}`. `htu` is written
/// as given: pass it without query and fragment. `jti` must be unique (≥ 96 random
/// bits); core draws no randomness, so the caller supplies it.
pub fn sign(
    key: &SigningKey,
    htm: &str,
    htu: &str,
    access_token: &str,
    iat: i64,
    jti: &str,
) -> Result<String, KeyError> {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        typ: &'a str,
        alg: &'a str,
        jwk: &'a Jwk,
    }
    #[derive(serde::Serialize)]
    struct Claims<'a> {
        jti: &'a str,
        htm: &'a str,
        htu: &'a str,
        iat: i64,
        ath: &'a str,
    }
    let mut jwk = key.verifying_key().jwk().clone();
    jwk.kid = None;
    jwk.alg = None;
    jwk.use_ = None;
    let header = serde_json::to_vec(&Header {
        typ: DPOP_TYP,
        alg: key.alg().as_str(),
        jwk: &jwk,
    })
    .map_err(|_| KeyError::Sign)?;
    let ath = access_token_hash(access_token);
    let claims = serde_json::to_vec(&Claims {
        jti,
        htm,
        htu,
        iat,
        ath: &ath,
    })
    .map_err(|_| KeyError::Sign)?;
    let mut out = b64::encode(&header);
    out.push('.');
    out.push_str(&b64::encode(&claims));
    let sig = key.sign(out.as_bytes())?;
    out.push('.');
    out.push_str(&b64::encode(&sig));
    Ok(out)
}

/// Normalises an HTTP target URI for comparing `htu` (RFC 9449 §4.3 with RFC 3986
/// §6.2.2 syntax-based and §6.2.3 scheme-based normalisation), dropping the query and
/// fragment.
///
/// Accepted: absolute `http` or `https` URIs (scheme in any case) with a host and no
/// userinfo, printable ASCII only. Normalised: scheme and host to lowercase; the
/// default port (80, 443) and an empty port removed, other ports written without
/// leading zeros; an empty path to `/`; percent-encodings to uppercase hex, and those
/// of unreserved characters decoded; dot segments removed (RFC 3986 §5.2.4).
///
/// Not done: IDNA or IPv6 address canonicalisation (`[::1]` and `[0::1]` differ), and
/// percent-encoded hosts are refused.
pub fn normalize_htu(url: &str) -> Result<String, DpopError> {
    if url.len() > MAX_CLAIM_LEN {
        return Err(DpopError::InvalidHtu("longer than 4096 bytes"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DpopError::InvalidHtu(
            "contains whitespace, control or non-ASCII characters",
        ));
    }
    // Query and fragment are not compared (RFC 9449 §4.2 and §4.3 step 9).
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = url.get(..end).unwrap_or_default();

    let (scheme, rest) = url
        .split_once(':')
        .ok_or(DpopError::InvalidHtu("no scheme"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return Err(DpopError::InvalidHtu("scheme is not http or https")),
    };
    let rest = rest
        .strip_prefix("//")
        .ok_or(DpopError::InvalidHtu("no authority"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (
            rest.get(..i).unwrap_or_default(),
            rest.get(i..).unwrap_or_default(),
        ),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(DpopError::InvalidHtu("userinfo is not allowed"));
    }
    let (host, port) = split_host_port(authority)?;
    let mut out = String::with_capacity(url.len() + 1);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port
        && port != default_port
    {
        out.push(':');
        out.push_str(&port.to_string());
    }
    let path = normalize_percent(path)?;
    let path = remove_dot_segments(&path);
    if path.is_empty() {
        out.push('/');
    } else {
        out.push_str(&path);
    }
    Ok(out)
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), DpopError> {
    let (host, port_text) = if let Some(literal) = authority.strip_prefix('[') {
        let (inside, after) = literal
            .split_once(']')
            .ok_or(DpopError::InvalidHtu("unterminated IP literal"))?;
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(DpopError::InvalidHtu("invalid IP literal"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or(DpopError::InvalidHtu("invalid authority"))?,
            ),
        };
        (format!("[{}]", inside.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        // reg-name or IPv4address: unreserved and sub-delims (RFC 3986 §3.2.2);
        // percent-encoded hosts are refused rather than normalised.
        let ok = |b: u8| is_unreserved(b) || b"!$&'()*+,;=".contains(&b);
        if host.is_empty() {
            return Err(DpopError::InvalidHtu("no host"));
        }
        if !host.bytes().all(ok) {
            return Err(DpopError::InvalidHtu("invalid host"));
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port_text {
        // An empty port is the default port (RFC 3986 §6.2.3).
        None | Some("") => None,
        Some(p) => {
            if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DpopError::InvalidHtu("invalid port"));
            }
            Some(
                p.parse::<u16>()
                    .map_err(|_| DpopError::InvalidHtu("invalid port"))?,
            )
        }
    };
    Ok((host, port))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks path characters (RFC 3986 §3.3 `pchar` and `/`), uppercases percent-encoding
/// hex digits and decodes encoded unreserved characters (§6.2.2.1, §6.2.2.2).
fn normalize_percent(path: &str) -> Result<String, DpopError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| -> Result<u8, DpopError> {
                let c = bytes
                    .get(j)
                    .copied()
                    .ok_or(DpopError::InvalidHtu("truncated percent-encoding"))?;
                char::from(c)
                    .to_digit(16)
                    .and_then(|d| u8::try_from(d).ok())
                    .ok_or(DpopError::InvalidHtu("invalid percent-encoding"))
            };
            let value = hex(i + 1)? * 16 + hex(i + 2)?;
            if is_unreserved(value) {
                out.push(char::from(value));
            } else {
                out.push('%');
                out.push_str(&format!("{value:02X}"));
            }
            i += 3;
        } else {
            let allowed = is_unreserved(b) || b"!$&'()*+,;=:@/".contains(&b);
            if !allowed {
                return Err(DpopError::InvalidHtu("invalid character in path"));
            }
            out.push(char::from(b));
            i += 1;
        }
    }
    Ok(out)
}

/// RFC 3986 §5.2.4 `remove_dot_segments`, on a path that is empty or starts with `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let mut input = path;
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest;
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest;
        } else if input.starts_with("/./") {
            input = input.get(2..).unwrap_or_default();
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") {
            input = input.get(3..).unwrap_or_default();
            output.pop();
        } else if input == "/.." {
            input = "/";
            output.pop();
        } else if input == "." || input == ".." {
            input = "";
        } else {
            // Move the first segment (with its leading '/', if any) to the output.
            let start = usize::from(input.starts_with('/'));
            let end = input
                .get(start..)
                .and_then(|s| s.find('/'))
                .map_or(input.len(), |i| i + start);
            output.push(input.get(..end).unwrap_or_default());
            input = input.get(end..).unwrap_or_default();
        }
    }
    output.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HTU: &str = "https://api.example.com/v1/orders";
    const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhZ3RfMSJ9.c2ln";
    const NOW: i64 = 1_750_000_000;

    fn key(alg: Algorithm) -> SigningKey {
        SigningKey::generate(alg).unwrap()
    }

    fn check<'a>(jkt: &'a str) -> ProofCheck<'a> {
        ProofCheck::new("POST", HTU, jkt, TOKEN, NOW)
    }

    /// A proof with the given header and claims JSON, signed by `key`.
    fn forge(key: &SigningKey, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let mut out = b64::encode(&serde_json::to_vec(header).unwrap());
        out.push('.');
        out.push_str(&b64::encode(&serde_json::to_vec(claims).unwrap()));
        let sig = key.sign(out.as_bytes()).unwrap();
        out.push('.');
        out.push_str(&b64::encode(&sig));
        out
    }

    fn good_header(key: &SigningKey) -> serde_json::Value {
        let mut jwk = serde_json::to_value(key.verifying_key().jwk()).unwrap();
        let obj = jwk.as_object_mut().unwrap();
        obj.remove("kid");
        obj.remove("use");
        obj.remove("alg");
        serde_json::json!({"typ": "dpop+jwt", "alg": key.alg().as_str(), "jwk": jwk})
    }

    fn good_claims() -> serde_json::Value {
        serde_json::json!({
            "jti": "p-1", "htm": "POST", "htu": HTU, "iat": NOW,
            "ath": access_token_hash(TOKEN),
        })
    }

    fn with(mut v: serde_json::Value, name: &str, value: serde_json::Value) -> serde_json::Value {
        v[name] = value;
        v
    }

    fn without(mut v: serde_json::Value, name: &str) -> serde_json::Value {
        v.as_object_mut().unwrap().remove(name);
        v
    }

    #[test]
    fn a_known_key_verifies_only_its_own_proofs_with_the_same_checks() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let k = key(alg);
            let other = key(alg);
            let proof = sign(&k, "POST", HTU, TOKEN, NOW, "jti-1").unwrap();
            // The cache a receiver builds: the key taken from an accepted proof.
            let cached = proof_key(&proof).unwrap();
            assert_eq!(cached.kid(), k.kid());
            let plain = verify(&proof, &check(k.kid())).unwrap();
            assert_eq!(verify_with_key(&proof, &check(k.kid()), &cached), Ok(plain));
            // Another key in the cache, or a cached key that is not the bound one.
            let wrong = VerifyingKey::from_jwk(other.verifying_key().jwk()).unwrap();
            assert_eq!(
                verify_with_key(&proof, &check(k.kid()), &wrong),
                Err(DpopError::ThumbprintMismatch)
            );
            assert_eq!(
                verify_with_key(&proof, &check(other.kid()), &cached),
                Err(DpopError::ThumbprintMismatch)
            );
            // Everything after the key is checked as before.
            let mut late = check(k.kid());
            late.now = NOW + 1000;
            assert!(matches!(
                verify_with_key(&proof, &late, &cached),
                Err(DpopError::IatOutOfWindow { .. })
            ));
            let mut elsewhere = check(k.kid());
            elsewhere.htm = "GET";
            assert_eq!(
                verify_with_key(&proof, &elsewhere, &cached),
                Err(DpopError::HtmMismatch)
            );
            let forged = forge(&other, &good_header(&k), &good_claims());
            assert_eq!(
                verify_with_key(&forged, &check(k.kid()), &cached),
                Err(DpopError::BadSignature)
            );
        }
    }

    #[test]
    fn sign_then_verify_every_algorithm() {
        for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
            let k = key(alg);
            let proof = sign(&k, "POST", HTU, TOKEN, NOW, "jti-1").unwrap();
            let got = verify(&proof, &check(k.kid())).unwrap();
            assert_eq!(
                got,
                VerifiedProof {
                    jti: "jti-1".into(),
                    iat: NOW,
                    alg,
                    jkt: k.kid().into(),
                    replay_until: NOW + DEFAULT_MAX_AGE_SECS,
                }
            );
            // Header written as documented: no kid, no alg/use inside jwk.
            let header: serde_json::Value =
                serde_json::from_slice(&b64::decode(proof.split('.').next().unwrap()).unwrap())
                    .unwrap();
            assert_eq!(header["typ"], "dpop+jwt");
            assert!(header.get("kid").is_none());
            assert!(header["jwk"].get("kid").is_none());
            assert!(header["jwk"].get("d").is_none());
        }
    }

    #[test]
    fn verifying_twice_succeeds_replay_is_the_callers_job() {
        let k = key(Algorithm::EdDSA);
        let proof = sign(&k, "POST", HTU, TOKEN, NOW, "same").unwrap();
        let a = verify(&proof, &check(k.kid())).unwrap();
        let b = verify(&proof, &check(k.kid())).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn thumbprint_must_be_the_tokens() {
        let k = key(Algorithm::ES256);
        let other = key(Algorithm::ES256);
        let proof = sign(&k, "POST", HTU, TOKEN, NOW, "j").unwrap();
        assert_eq!(
            verify(&proof, &check(other.kid())),
            Err(DpopError::ThumbprintMismatch)
        );
        assert_eq!(
            verify(&proof, &check("")),
            Err(DpopError::ThumbprintMismatch)
        );
    }

    #[test]
    fn shape_size_and_encoding() {
        let k = key(Algorithm::EdDSA);
        let c = check(k.kid());
        assert_eq!(verify("a.b", &c), Err(DpopError::Shape));
        assert_eq!(verify("a.b.c.d", &c), Err(DpopError::Shape));
        assert_eq!(verify("", &c), Err(DpopError::Shape));
        let proof = sign(&k, "POST", HTU, TOKEN, NOW, "j").unwrap();
        let small = ProofCheck {
            max_bytes: 10,
            ..check(k.kid())
        };
        assert_eq!(
            verify(&proof, &small),
            Err(DpopError::TooLarge {
                size: proof.len(),
                max: 10
            })
        );
        let (h, rest) = proof.split_once('.').unwrap();
        assert_eq!(
            verify(&format!("{h}=.{rest}"), &c),
            Err(DpopError::Base64(Segment::Header))
        );
        let (head, sig) = proof.rsplit_once('.').unwrap();
        assert_eq!(
            verify(&format!("{head}.{sig}="), &c),
            Err(DpopError::Base64(Segment::Signature))
        );
    }

    #[test]
    fn header_rejections() {
        let k = key(Algorithm::ES256);
        let c = check(k.kid());
        let h = good_header(&k);
        let run = |header: serde_json::Value| verify(&forge(&k, &header, &good_claims()), &c);

        assert_eq!(
            run(without(h.clone(), "typ")),
            Err(DpopError::MissingHeader("typ"))
        );
        assert_eq!(
            run(with(h.clone(), "typ", "JWT".into())),
            Err(DpopError::WrongType("JWT".into()))
        );
        assert_eq!(
            run(with(h.clone(), "typ", "agent+jwt".into())),
            Err(DpopError::WrongType("agent+jwt".into()))
        );
        // RFC 7515 §4.1.9 comparison, as for agent tokens.
        run(with(h.clone(), "typ", "application/DPoP+JWT".into())).unwrap();
        assert_eq!(
            run(with(h.clone(), "typ", 1.into())),
            Err(DpopError::HeaderNotObject)
        );
        assert_eq!(
            run(without(h.clone(), "alg")),
            Err(DpopError::MissingHeader("alg"))
        );
        for alg in ["none", "HS256", "ES384", "PS256", "es256"] {
            assert_eq!(
                run(with(h.clone(), "alg", alg.into())),
                Err(DpopError::UnsupportedAlg(alg.into()))
            );
        }
        assert_eq!(
            run(with(h.clone(), "alg", "EdDSA".into())),
            Err(DpopError::AlgKeyMismatch {
                alg: Algorithm::EdDSA,
                key: Algorithm::ES256
            })
        );
        assert_eq!(
            run(with(h.clone(), "crit", serde_json::json!(["exp"]))),
            Err(DpopError::CriticalHeader)
        );
        assert_eq!(
            run(with(h.clone(), "crit", serde_json::Value::Null)),
            Err(DpopError::CriticalHeader)
        );
        for (name, value) in [
            ("jku", "https://attacker.example/jwks"),
            ("x5u", "https://attacker.example/cert"),
            ("x5t", "abc"),
            ("x5t#S256", "abc"),
        ] {
            assert_eq!(
                run(with(h.clone(), name, value.into())),
                Err(DpopError::ForbiddenHeader(name))
            );
        }
        assert_eq!(
            run(with(h.clone(), "b64", false.into())),
            Err(DpopError::ForbiddenHeader("b64"))
        );
        assert_eq!(
            run(without(h.clone(), "jwk")),
            Err(DpopError::MissingHeader("jwk"))
        );
        assert_eq!(
            run(with(h.clone(), "jwk", "not a key".into())),
            Err(DpopError::MalformedJwk)
        );
        assert_eq!(
            run(with(h.clone(), "jwk", serde_json::json!({"crv": "P-256"}))),
            Err(DpopError::MalformedJwk)
        );
        // A kid is allowed (RFC 9449 §4.2: other header parameters MAY appear).
        run(with(h.clone(), "kid", "whatever".into())).unwrap();
    }

    #[test]
    fn private_or_symmetric_keys_are_refused() {
        let k = key(Algorithm::EdDSA);
        let c = check(k.kid());
        let mut h = good_header(&k);
        h["jwk"]["d"] = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A".into();
        assert_eq!(
            verify(&forge(&k, &h, &good_claims()), &c),
            Err(DpopError::Jwk(KeyError::PrivateMaterial("d")))
        );
        let h = with(
            good_header(&k),
            "jwk",
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}),
        );
        assert_eq!(
            verify(&forge(&k, &h, &good_claims()), &c),
            Err(DpopError::Jwk(KeyError::PrivateMaterial("k")))
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let k = key(Algorithm::EdDSA);
        let c = check(k.kid());
        let proof = sign(&k, "POST", HTU, TOKEN, NOW, "j").unwrap();
        let (h, rest) = proof.split_once('.').unwrap();
        let mut header = String::from_utf8(b64::decode(h).unwrap()).unwrap();
        header.insert_str(1, r#""typ":"dpop+jwt","#);
        let forged = format!("{}.{rest}", b64::encode(header.as_bytes()));
        assert_eq!(
            verify(&forged, &c),
            Err(DpopError::Json(
                Segment::Header,
                JsonError::DuplicateKey("typ".into())
            ))
        );
        let claims = r#"{"jti":"a","jti":"b","htm":"POST","htu":"https://api.example.com/v1/orders","iat":1750000000}"#;
        let mut out = format!("{h}.{}", b64::encode(claims.as_bytes()));
        let sig = k.sign(out.as_bytes()).unwrap();
        out = format!("{out}.{}", b64::encode(&sig));
        assert_eq!(
            verify(&out, &c),
            Err(DpopError::Json(
                Segment::Payload,
                JsonError::DuplicateKey("jti".into())
            ))
        );
    }

    #[test]
    fn signature_must_verify() {
        let k = key(Algorithm::EdDSA);
        let c = check(k.kid());
        let proof = sign(&k, "POST", HTU, TOKEN, NOW, "j").unwrap();
        // Claims changed after signing.
        let (h, rest) = proof.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let claims = with(good_claims(), "htm", "GET".into());
        let forged = format!(
            "{h}.{}.{sig}",
            b64::encode(&serde_json::to_vec(&claims).unwrap())
        );
        assert_eq!(verify(&forged, &c), Err(DpopError::BadSignature));
        // Signed by another key than the one in the header.
        let other = key(Algorithm::EdDSA);
        let forged = forge(&other, &good_header(&k), &good_claims());
        assert_eq!(verify(&forged, &c), Err(DpopError::BadSignature));
        // Empty signature.
        assert_eq!(
            verify(&format!("{h}.{}.", rest.split_once('.').unwrap().0), &c),
            Err(DpopError::BadSignature)
        );
    }

    #[test]
    fn claim_rejections() {
        let k = key(Algorithm::ES256);
        let c = check(k.kid());
        let h = good_header(&k);
        let run = |claims: serde_json::Value| verify(&forge(&k, &h, &claims), &c);
        let g = good_claims();

        assert_eq!(
            verify(&forge(&k, &h, &serde_json::json!([1, 2])), &c),
            Err(DpopError::ClaimsNotObject)
        );
        for name in ["jti", "htm", "htu", "iat", "ath"] {
            assert_eq!(
                run(without(g.clone(), name)),
                Err(DpopError::MissingClaim(name))
            );
        }
        assert_eq!(
            run(with(g.clone(), "jti", "".into())),
            Err(DpopError::InvalidClaim("jti"))
        );
        assert_eq!(
            run(with(g.clone(), "jti", "x".repeat(MAX_JTI_LEN + 1).into())),
            Err(DpopError::InvalidClaim("jti"))
        );
        run(with(g.clone(), "jti", "x".repeat(MAX_JTI_LEN).into())).unwrap();
        assert_eq!(
            run(with(g.clone(), "jti", 7.into())),
            Err(DpopError::InvalidClaim("jti"))
        );
        assert_eq!(
            run(with(g.clone(), "iat", "1750000000".into())),
            Err(DpopError::InvalidClaim("iat"))
        );
        assert_eq!(
            run(with(g.clone(), "iat", serde_json::json!(1750000000.5))),
            Err(DpopError::InvalidClaim("iat"))
        );
        assert_eq!(
            run(with(g.clone(), "ath", 1.into())),
            Err(DpopError::InvalidClaim("ath"))
        );
        assert_eq!(
            run(with(g.clone(), "htm", "post".into())),
            Err(DpopError::HtmMismatch)
        );
        assert_eq!(
            run(with(g.clone(), "htm", "GET".into())),
            Err(DpopError::HtmMismatch)
        );
        assert_eq!(
            run(with(
                g.clone(),
                "htu",
                "https://api.example.com/v1/other".into()
            )),
            Err(DpopError::HtuMismatch)
        );
        assert_eq!(
            run(with(
                g.clone(),
                "htu",
                "https://evil.example.com/v1/orders".into()
            )),
            Err(DpopError::HtuMismatch)
        );
        assert_eq!(
            run(with(
                g.clone(),
                "htu",
                "http://api.example.com/v1/orders".into()
            )),
            Err(DpopError::HtuMismatch)
        );
        assert_eq!(
            run(with(g.clone(), "htu", "/v1/orders".into())),
            Err(DpopError::InvalidHtu("no scheme"))
        );
        // Normalised equal, query and fragment ignored.
        run(with(
            g.clone(),
            "htu",
            "HTTPS://API.example.com:443/v1/%6Frders?x=1#f".into(),
        ))
        .unwrap();
        assert_eq!(
            run(with(g.clone(), "ath", access_token_hash("other").into())),
            Err(DpopError::AthMismatch)
        );
        // nonce and unknown claims are ignored.
        run(with(g.clone(), "nonce", "n-1".into())).unwrap();
        run(with(g.clone(), "exp", 1.into())).unwrap();
    }

    #[test]
    fn iat_window_edges() {
        let k = key(Algorithm::EdDSA);
        let c = check(k.kid());
        let at = |iat: i64| verify(&sign(&k, "POST", HTU, TOKEN, iat, "j").unwrap(), &c);
        at(NOW - DEFAULT_MAX_AGE_SECS).unwrap();
        at(NOW + DEFAULT_LEEWAY_SECS).unwrap();
        assert_eq!(
            at(NOW - DEFAULT_MAX_AGE_SECS - 1),
            Err(DpopError::IatOutOfWindow {
                iat: NOW - DEFAULT_MAX_AGE_SECS - 1,
                now: NOW
            })
        );
        assert_eq!(
            at(NOW + DEFAULT_LEEWAY_SECS + 1),
            Err(DpopError::IatOutOfWindow {
                iat: NOW + DEFAULT_LEEWAY_SECS + 1,
                now: NOW
            })
        );
        // Extreme values do not overflow.
        assert!(at(i64::MIN).is_err());
        assert!(at(i64::MAX).is_err());
    }

    #[test]
    fn the_replay_window_is_the_last_second_verify_accepts() {
        let k = key(Algorithm::EdDSA);
        // (iat, max_age, leeway) → replay_until = iat + max_age (the leeway only
        // lets `iat` be ahead of the verifier's clock).
        for (iat, max_age, leeway) in [
            (NOW, DEFAULT_MAX_AGE_SECS, DEFAULT_LEEWAY_SECS),
            (NOW - 100, DEFAULT_MAX_AGE_SECS, DEFAULT_LEEWAY_SECS),
            (NOW + 60, DEFAULT_MAX_AGE_SECS, DEFAULT_LEEWAY_SECS),
            (NOW, 30, 0),
        ] {
            let proof = sign(&k, "POST", HTU, TOKEN, iat, "j").unwrap();
            let at = |now: i64| {
                let c = ProofCheck {
                    max_age,
                    leeway,
                    ..ProofCheck::new("POST", HTU, k.kid(), TOKEN, now)
                };
                verify(&proof, &c)
            };
            let want = iat + max_age;
            assert_eq!(at(NOW).unwrap().replay_until, want, "{iat} {max_age}");
            assert_eq!(at(want).unwrap().replay_until, want);
            assert!(matches!(
                at(want + 1),
                Err(DpopError::IatOutOfWindow { .. })
            ));
        }
        // Saturates rather than wraps.
        let proof = sign(&k, "POST", HTU, TOKEN, NOW, "j").unwrap();
        let c = ProofCheck {
            max_age: i64::MAX,
            ..check(k.kid())
        };
        assert_eq!(verify(&proof, &c).unwrap().replay_until, i64::MAX);
    }

    #[test]
    fn without_an_access_token_ath_is_not_checked() {
        let k = key(Algorithm::EdDSA);
        let proof = forge(&k, &good_header(&k), &without(good_claims(), "ath"));
        let c = ProofCheck {
            access_token: None,
            ..check(k.kid())
        };
        verify(&proof, &c).unwrap();
        assert_eq!(
            verify(&proof, &check(k.kid())),
            Err(DpopError::MissingClaim("ath"))
        );
    }

    #[test]
    fn every_error_is_proof_invalid() {
        assert_eq!(DpopError::BadSignature.code(), "PROOF_INVALID");
        assert_eq!(DpopError::HtuMismatch.code(), "PROOF_INVALID");
        assert_eq!(
            DpopError::Jwk(KeyError::PrivateMaterial("d")).code(),
            "PROOF_INVALID"
        );
    }

    #[test]
    fn htu_normalisation_table() {
        let ok = [
            ("https://example.com", "https://example.com/"),
            ("https://example.com/", "https://example.com/"),
            ("HTTPS://Example.COM/Path", "https://example.com/Path"),
            ("https://example.com:443/a", "https://example.com/a"),
            ("http://example.com:80/a", "http://example.com/a"),
            ("http://example.com:443/a", "http://example.com:443/a"),
            ("https://example.com:80/a", "https://example.com:80/a"),
            ("https://example.com:/a", "https://example.com/a"),
            ("https://example.com:08443/a", "https://example.com:8443/a"),
            ("https://example.com/a?b=c#d", "https://example.com/a"),
            ("https://example.com?b=c", "https://example.com/"),
            ("https://example.com#frag", "https://example.com/"),
            ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
            ("https://example.com/%7Euser", "https://example.com/~user"),
            ("https://example.com/%41%62", "https://example.com/Ab"),
            ("https://example.com/a/./b/../c", "https://example.com/a/c"),
            ("https://example.com/a/%2E%2E/c", "https://example.com/c"),
            ("https://example.com/../a", "https://example.com/a"),
            ("https://example.com/a/..", "https://example.com/"),
            ("https://example.com/a//b", "https://example.com/a//b"),
            ("https://example.com/a/", "https://example.com/a/"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
            ("https://[FE80::1]/x", "https://[fe80::1]/x"),
            ("https://[::1]:443/x", "https://[::1]/x"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
            (
                "https://example.com/v1/agents:verify",
                "https://example.com/v1/agents:verify",
            ),
        ];
        for (input, want) in ok {
            assert_eq!(normalize_htu(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            "",
            "example.com/a",
            "/a",
            "ftp://example.com/a",
            "https:example.com/a",
            "https://",
            "https:///a",
            "https://user@example.com/a",
            "https://user:pw@example.com/a",
            "https://example.com:99999/a",
            "https://example.com:8x/a",
            "https://exa mple.com/a",
            "https://example.com/a b",
            "https://example.com/é",
            "https://example.com/%zz",
            "https://example.com/%4",
            "https://example.com/a\\b",
            "https://exa%6Dple.com/",
            "https://[::1/x",
            "https://[zz]/x",
            "https://[::1]x/",
            "https://example.com/<script>",
        ];
        for input in bad {
            assert!(
                matches!(normalize_htu(input), Err(DpopError::InvalidHtu(_))),
                "{input:?} accepted as {:?}",
                normalize_htu(input)
            );
        }
    }

    #[test]
    fn remove_dot_segments_rfc3986_examples() {
        // RFC 3986 §5.2.4.
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments(""), "");
        assert_eq!(remove_dot_segments("/.."), "/");
    }
}
