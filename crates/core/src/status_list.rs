//! Token Status Lists (draft-ietf-oauth-status-list): a list of 1-, 2-, 4- or 8-bit
//! statuses, one per token, published DEFLATE-compressed (zlib format) and base64url
//! encoded inside a signed Status List Token (`typ statuslist+jwt`), so that a
//! receiver verifying offline can see a token's revocation or suspension.
//!
//! Bit order is the draft's: status `i` occupies bits `(i * bits) % 8` upwards of byte
//! `(i * bits) / 8`, the least significant bits first. Decompression is bounded
//! ([`MAX_LIST_BYTES`]): a small `lst` that inflates to gigabytes is refused, not
//! inflated.

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditEntry, EventType};
use crate::b64;
use crate::jws::{self, JwsError};
use crate::keys::{KeyError, SigningKey};
use crate::token::{KeyResolver, Revoked, Segment, TokenError};

/// The `typ` of a Status List Token.
pub const STATUS_LIST_TYP: &str = "statuslist+jwt";
/// The media type a Status List Token is served as.
pub const STATUS_LIST_MEDIA_TYPE: &str = "application/statuslist+jwt";
/// Largest uncompressed list accepted: 16 MiB (128 Mi one-bit entries).
pub const MAX_LIST_BYTES: usize = 16 * 1024 * 1024;
/// Largest Status List Token accepted, in bytes (a compressed list of a million mostly
/// valid entries is a few KiB; a list full of random revocations is at most its raw
/// size).
pub const MAX_TOKEN_BYTES: usize = 4 * 1024 * 1024;

/// The status of a token, as this registry writes it (2 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 0x00: valid.
    Valid,
    /// 0x01: revoked; irreversible.
    Invalid,
    /// 0x02: suspended; reversible.
    Suspended,
    /// Any other value (0x03 is application-specific in the draft).
    Other(u8),
}

impl Status {
    /// The value written in the list.
    pub fn value(self) -> u8 {
        match self {
            Status::Valid => 0,
            Status::Invalid => 1,
            Status::Suspended => 2,
            Status::Other(v) => v,
        }
    }

    /// The status a value stands for.
    pub fn from_value(v: u8) -> Self {
        match v {
            0 => Status::Valid,
            1 => Status::Invalid,
            2 => Status::Suspended,
            v => Status::Other(v),
        }
    }

    /// What a verifier makes of a token whose entry reads this status: the one mapping
    /// from a list's value to a refusal, with the codes the registry answers online
    /// (`TOKEN_REVOKED`, `AGENT_SUSPENDED`). A value this registry does not write
    /// (0x03 and up) is refused too: a status nobody can interpret is not "valid".
    pub fn check(self) -> Result<(), TokenError> {
        match self {
            Status::Valid => Ok(()),
            Status::Invalid => Err(TokenError::Revoked(Revoked::Token)),
            Status::Suspended => Err(TokenError::Suspended),
            Status::Other(v) => Err(TokenError::Claims(format!(
                "the token's status list entry is {v:#04x}, a status this verifier does not know"
            ))),
        }
    }
}

/// What can be wrong with a status list or its token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusListError {
    /// `bits` is not 1, 2, 4 or 8.
    #[error("`bits` must be 1, 2, 4 or 8, not {0}")]
    Bits(u64),
    /// An index beyond the list.
    #[error("index {idx} is beyond the list's {len} entries")]
    OutOfRange {
        /// The index asked.
        idx: u64,
        /// How many entries the list has.
        len: u64,
    },
    /// A status that does not fit in `bits`.
    #[error("status {value} does not fit in {bits} bits")]
    TooWide {
        /// The value.
        value: u8,
        /// The list's width.
        bits: u8,
    },
    /// `lst` is not base64url, not zlib, or inflates beyond [`MAX_LIST_BYTES`].
    #[error("`lst` is not a compressed status list: {0}")]
    Encoding(String),
    /// The list would be larger than [`MAX_LIST_BYTES`].
    #[error("a status list holds at most {MAX_LIST_BYTES} bytes")]
    TooLarge,
    /// The token's signature, header or framing.
    #[error(transparent)]
    Jws(#[from] TokenError),
    /// The token is not a Status List Token (`typ`).
    #[error("not a status list token (`typ` {found:?})")]
    WrongType {
        /// The `typ` found.
        found: String,
    },
    /// The token's claims are malformed, or not those of the list asked for.
    #[error("status list token claims: {0}")]
    Claims(String),
    /// The token has expired.
    #[error("the status list token expired at {exp}")]
    Expired {
        /// Its `exp`.
        exp: i64,
    },
}

/// Bits per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits(u8);

impl Bits {
    /// One bit: valid or invalid.
    pub const ONE: Bits = Bits(1);
    /// Two bits: valid, invalid, suspended (and one more).
    pub const TWO: Bits = Bits(2);

    /// `bits`, if it is 1, 2, 4 or 8.
    pub fn new(bits: u64) -> Result<Self, StatusListError> {
        match bits {
            1 | 2 | 4 | 8 => Ok(Bits(bits as u8)),
            other => Err(StatusListError::Bits(other)),
        }
    }

    /// The width.
    pub fn get(self) -> u8 {
        self.0
    }

    fn per_byte(self) -> u64 {
        8 / u64::from(self.0)
    }

    fn mask(self) -> u8 {
        // 1 → 0b1, 2 → 0b11, 4 → 0xF, 8 → 0xFF.
        u8::MAX >> (8 - self.0)
    }
}

/// A status list: the raw, uncompressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusList {
    bits: Bits,
    bytes: Vec<u8>,
}

/// The `status_list` claim: the list as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodedList {
    /// Bits per status.
    pub bits: u64,
    /// The bytes, zlib-compressed, base64url without padding.
    pub lst: String,
    /// Where the aggregation of all this issuer's lists is (optional in the draft).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation_uri: Option<String>,
}

impl StatusList {
    /// A list of `len` entries, all valid.
    pub fn new(bits: Bits, len: u64) -> Result<Self, StatusListError> {
        let bytes = len.div_ceil(bits.per_byte());
        let bytes = usize::try_from(bytes).map_err(|_| StatusListError::TooLarge)?;
        if bytes > MAX_LIST_BYTES {
            return Err(StatusListError::TooLarge);
        }
        Ok(StatusList {
            bits,
            bytes: vec![0; bytes],
        })
    }

    /// A list over raw bytes.
    pub fn from_bytes(bits: Bits, bytes: Vec<u8>) -> Result<Self, StatusListError> {
        if bytes.len() > MAX_LIST_BYTES {
            return Err(StatusListError::TooLarge);
        }
        Ok(StatusList { bits, bytes })
    }

    /// Bits per status.
    pub fn bits(&self) -> Bits {
        self.bits
    }

    /// How many entries it has (every bit of its bytes counts).
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64 * self.bits.per_byte()
    }

    /// True if it has no entries.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn place(&self, idx: u64) -> Result<(usize, u8), StatusListError> {
        let out = || StatusListError::OutOfRange {
            idx,
            len: self.len(),
        };
        let byte = usize::try_from(idx / self.bits.per_byte()).map_err(|_| out())?;
        if byte >= self.bytes.len() {
            return Err(out());
        }
        // At most 7: the remainder is below `per_byte` ≤ 8, times bits ≤ 8.
        let shift = ((idx % self.bits.per_byte()) * u64::from(self.bits.0)) as u8;
        Ok((byte, shift))
    }

    /// The status at `idx`.
    pub fn get(&self, idx: u64) -> Result<Status, StatusListError> {
        let (byte, shift) = self.place(idx)?;
        let b = self.bytes.get(byte).copied().unwrap_or(0);
        Ok(Status::from_value((b >> shift) & self.bits.mask()))
    }

    /// Sets the status at `idx`.
    pub fn set(&mut self, idx: u64, status: Status) -> Result<(), StatusListError> {
        let value = status.value();
        if value > self.bits.mask() {
            return Err(StatusListError::TooWide {
                value,
                bits: self.bits.0,
            });
        }
        let (byte, shift) = self.place(idx)?;
        if let Some(b) = self.bytes.get_mut(byte) {
            *b = (*b & !(self.bits.mask() << shift)) | (value << shift);
        }
        Ok(())
    }

    /// The list as published: zlib at the best compression, base64url.
    pub fn encode(&self) -> EncodedList {
        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&self.bytes, 9);
        EncodedList {
            bits: u64::from(self.bits.0),
            lst: b64::encode(&compressed),
            aggregation_uri: None,
        }
    }

    /// Reads a published list, inflating at most [`MAX_LIST_BYTES`].
    pub fn decode(encoded: &EncodedList) -> Result<Self, StatusListError> {
        let bits = Bits::new(encoded.bits)?;
        let compressed = b64::decode(&encoded.lst)
            .map_err(|e| StatusListError::Encoding(format!("base64url: {e}")))?;
        let bytes =
            miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&compressed, MAX_LIST_BYTES)
                .map_err(|e| match e.status {
                    miniz_oxide::inflate::TINFLStatus::HasMoreOutput => StatusListError::TooLarge,
                    s => StatusListError::Encoding(format!("zlib: {s:?}")),
                })?;
        Ok(StatusList { bits, bytes })
    }
}

/// The claims of a Status List Token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusListClaims {
    /// Who publishes it (the registry's URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The list's own URI: what a token's `status.status_list.uri` names.
    pub sub: String,
    /// When it was issued, Unix seconds.
    pub iat: i64,
    /// When it stops being valid, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// How long it may be cached, seconds (positive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// The list.
    pub status_list: EncodedList,
    /// Every other claim (a registry's own, such as the list's version).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A referenced token's `status` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClaim {
    /// The status list mechanism; `None` when the token names only other mechanisms
    /// (which this crate does not read: the token is then as if it had no status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_list: Option<StatusRef>,
}

/// Where a token's status is: an index in the list at `uri`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRef {
    /// The index.
    pub idx: u64,
    /// The Status List Token's URI (its `sub`).
    pub uri: String,
}

/// Where a published list version is committed in the registry's audit log: Bonafide's
/// private claim `audit` of a Status List Token, with `version` beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    /// The index of the list's `status_list.published` entry ([`published_entry`]).
    pub index: u64,
    /// A signed checkpoint's tree size that includes the entry (signed before the
    /// list was served).
    pub tree_size: u64,
}

/// The private claim naming a list's version (increasing per list).
pub const VERSION_CLAIM: &str = "version";
/// The private claim naming where the list is logged ([`LogPosition`]).
pub const AUDIT_CLAIM: &str = "audit";

/// A Bonafide Status List Token's `version` and `audit` claims; `None` when either
/// is absent or malformed (a list from another publisher).
pub fn log_claims(claims: &StatusListClaims) -> Option<(u64, LogPosition)> {
    let version = claims.extra.get(VERSION_CLAIM)?.as_u64()?;
    let position = serde_json::from_value(claims.extra.get(AUDIT_CLAIM)?.clone()).ok()?;
    Some((version, position))
}

/// The audit entry that commits version `version` of the list at `uri`, issued at
/// `iat_s`: the one rule both the registry (appending it before serving the list) and
/// a receiver checking what it was served (`bonafide audit verify --status-list`)
/// build it with, so the same list always makes the same leaf.
pub fn published_entry(uri: &str, version: u64, iat_s: i64, list: &StatusList) -> AuditEntry {
    let mut entry = AuditEntry::new(
        EventType::StatusListPublished,
        iat_s.saturating_mul(1000),
        Actor::Registry,
    );
    entry.target = Some(uri.to_owned());
    entry.note = Some(format!(
        "version {version}: {} entries of {} bits",
        list.len(),
        list.bits().get()
    ));
    entry.list_sha256 = Some(crate::hex(&crate::sha256(list.as_bytes())));
    entry
}

/// Signs a Status List Token.
pub fn sign(key: &SigningKey, claims: &StatusListClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, STATUS_LIST_TYP, &payload)
}

/// Verifies a Status List Token with a key `keys` holds (by `kid`), then its claims:
/// `sub` must be `uri` (the list the token asked for), `ttl` positive if present, and
/// `exp`, if present, after `now_s - leeway_s`. Returns the claims and the decoded
/// list.
pub fn verify(
    jws: &str,
    keys: &impl KeyResolver,
    uri: &str,
    now_s: i64,
    leeway_s: i64,
) -> Result<(StatusListClaims, StatusList), StatusListError> {
    let rules = jws::Rules::kid(jws::Typ::Is(STATUS_LIST_TYP), MAX_TOKEN_BYTES);
    let opened = jws::open::<StatusListClaims, _>(jws, &rules, |h: &jws::Protected| {
        keys.key(h.kid())
            .map(jws::Key::Borrowed)
            .ok_or(StatusListError::Jws(TokenError::UnknownKey))
    })?;
    let claims = opened.claims;
    if claims.sub != uri {
        return Err(StatusListError::Claims(format!(
            "`sub` is not the list asked for ({uri})"
        )));
    }
    if claims.ttl == Some(0) {
        return Err(StatusListError::Claims("`ttl` must be positive".into()));
    }
    if let Some(exp) = claims.exp
        && exp <= now_s.saturating_sub(leeway_s)
    {
        return Err(StatusListError::Expired { exp });
    }
    let list = StatusList::decode(&claims.status_list)?;
    Ok((claims, list))
}

impl From<JwsError> for StatusListError {
    fn from(e: JwsError) -> Self {
        match e {
            JwsError::WrongType { found, .. } => StatusListError::WrongType {
                found: found.unwrap_or_default(),
            },
            JwsError::Json(Segment::Payload, e) => StatusListError::Claims(e.to_string()),
            JwsError::ClaimsNotObject => {
                StatusListError::Claims("claims are not a JSON object".into())
            }
            JwsError::Claims(m) => StatusListError::Claims(m),
            e => StatusListError::Jws(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Algorithm, VerifyingKey};
    use crate::token::KeySet;

    fn list(bits: Bits, statuses: &[u8]) -> StatusList {
        let mut l = StatusList::new(bits, statuses.len() as u64).unwrap();
        for (i, s) in statuses.iter().enumerate() {
            l.set(i as u64, Status::from_value(*s)).unwrap();
        }
        l
    }

    /// The draft's examples (§4.1 and "Further Examples"): the statuses, the bytes
    /// they pack into, and the published `lst`, decoded.
    #[test]
    fn the_draft_s_examples_pack_and_decode() {
        let one = list(Bits::ONE, &[1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1]);
        assert_eq!(one.as_bytes(), [0xb9, 0xa3]);
        let two = list(Bits::TWO, &[1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3]);
        assert_eq!(two.as_bytes(), [0xc9, 0x44, 0xf9]);
        for (bits, lst, bytes) in [
            (1, "eNrbuRgAAhcBXQ", vec![0xb9, 0xa3]),
            (2, "eNo76fITAAPfAgc", vec![0xc9, 0x44, 0xf9]),
        ] {
            let decoded = StatusList::decode(&EncodedList {
                bits,
                lst: lst.into(),
                aggregation_uri: None,
            })
            .unwrap();
            assert_eq!(decoded.as_bytes(), bytes.as_slice());
        }
        assert_eq!(two.get(1).unwrap(), Status::Suspended);
        assert_eq!(two.get(3).unwrap(), Status::Other(3));
        // Whatever our compressor writes, it decodes to the same bytes.
        assert_eq!(StatusList::decode(&two.encode()).unwrap(), two);
    }

    #[test]
    fn statuses_map_to_the_registry_s_refusals() {
        use crate::token::ErrorCode;
        assert_eq!(Status::Valid.check(), Ok(()));
        let code = |s: Status| s.check().unwrap_err().code();
        assert_eq!(code(Status::Invalid), ErrorCode::TokenRevoked);
        assert_eq!(code(Status::Suspended), ErrorCode::AgentSuspended);
        assert_eq!(code(Status::Other(3)), ErrorCode::TokenInvalid);
    }

    #[test]
    fn setting_one_entry_leaves_its_neighbours() {
        for bits in [1, 2, 4, 8] {
            let bits = Bits::new(bits).unwrap();
            let mut l = StatusList::new(bits, 64).unwrap();
            l.set(9, Status::Invalid).unwrap();
            l.set(10, Status::Invalid).unwrap();
            l.set(9, Status::Valid).unwrap();
            assert_eq!(l.get(9).unwrap(), Status::Valid);
            assert_eq!(l.get(10).unwrap(), Status::Invalid);
            assert_eq!(l.get(11).unwrap(), Status::Valid);
        }
    }

    #[test]
    fn bad_widths_indices_and_values_are_errors() {
        assert_eq!(Bits::new(3), Err(StatusListError::Bits(3)));
        let mut l = StatusList::new(Bits::ONE, 8).unwrap();
        assert!(matches!(
            l.get(8),
            Err(StatusListError::OutOfRange { idx: 8, len: 8 })
        ));
        assert!(matches!(
            l.set(u64::MAX, Status::Invalid),
            Err(StatusListError::OutOfRange { .. })
        ));
        assert_eq!(
            l.set(0, Status::Suspended),
            Err(StatusListError::TooWide { value: 2, bits: 1 })
        );
        assert_eq!(
            StatusList::new(Bits::ONE, u64::MAX),
            Err(StatusListError::TooLarge)
        );
    }

    #[test]
    fn a_list_that_inflates_too_far_or_is_not_zlib_is_refused() {
        let bomb = miniz_oxide::deflate::compress_to_vec_zlib(&vec![0u8; MAX_LIST_BYTES + 1], 9);
        let encoded = EncodedList {
            bits: 1,
            lst: b64::encode(&bomb),
            aggregation_uri: None,
        };
        assert_eq!(StatusList::decode(&encoded), Err(StatusListError::TooLarge));
        for lst in ["not base64!", "AAAA", ""] {
            let e = StatusList::decode(&EncodedList {
                bits: 1,
                lst: lst.into(),
                aggregation_uri: None,
            });
            assert!(matches!(e, Err(StatusListError::Encoding(_))), "{lst}");
        }
    }

    fn claims(uri: &str, l: &StatusList) -> StatusListClaims {
        StatusListClaims {
            iss: Some("https://registry.example".into()),
            sub: uri.into(),
            iat: 1_000,
            exp: Some(2_000),
            ttl: Some(60),
            status_list: l.encode(),
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn a_signed_list_verifies_for_its_uri_only_and_until_it_expires() {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let mut keys = KeySet::new();
        keys.insert(VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
        let uri = "https://registry.example/v1/status-lists/1";
        let l = list(Bits::TWO, &[0, 1, 2, 0]);
        let token = sign(&key, &claims(uri, &l)).unwrap();
        let (c, decoded) = verify(&token, &keys, uri, 1_500, 0).unwrap();
        assert_eq!(c.ttl, Some(60));
        assert_eq!(decoded.get(2).unwrap(), Status::Suspended);
        assert!(matches!(
            verify(
                &token,
                &keys,
                "https://registry.example/v1/status-lists/2",
                1_500,
                0
            ),
            Err(StatusListError::Claims(_))
        ));
        assert_eq!(
            verify(&token, &keys, uri, 2_000, 0).unwrap_err(),
            StatusListError::Expired { exp: 2_000 }
        );
        // Another typ is not a status list, even signed by the same key.
        let other = jws::sign_compact(&key, "agent+jwt", b"{}").unwrap();
        assert!(matches!(
            verify(&other, &keys, uri, 1_500, 0),
            Err(StatusListError::WrongType { .. })
        ));
        // An unknown key verifies nothing.
        let stranger = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let forged = sign(&stranger, &claims(uri, &l)).unwrap();
        assert!(matches!(
            verify(&forged, &keys, uri, 1_500, 0),
            Err(StatusListError::Jws(_))
        ));
    }
}
