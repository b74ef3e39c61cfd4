//! API keys: `bfk_<kind>_<random><checksum>`.
//!
//! `kind` is `adm` (admin), `iss` (issuer) or `rcv` (receiver). The random part is
//! 160 bits in base32 (32 characters); the checksum is the first 5 bytes of
//! SHA-256 over everything before it, in base32 (8 characters), so a secret scanner
//! can tell a real key from a look-alike without asking the registry. The registry
//! stores only SHA-256 of the whole key ([`ApiKey::hash`]) and compares hashes in
//! constant time. [`ApiKey`]'s `Debug` never prints the secret.

use std::fmt;

use aws_lc_rs::digest;

use crate::ids::{base32, is_base32};

const RANDOM_CHARS: usize = 32;
const CHECK_CHARS: usize = 8;

/// Who an API key speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// Operator of the registry.
    Admin,
    /// An organisation that owns agents.
    Issuer,
    /// An API that verifies agents.
    Receiver,
}

impl KeyKind {
    fn tag(self) -> &'static str {
        match self {
            KeyKind::Admin => "adm",
            KeyKind::Issuer => "iss",
            KeyKind::Receiver => "rcv",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "adm" => Some(KeyKind::Admin),
            "iss" => Some(KeyKind::Issuer),
            "rcv" => Some(KeyKind::Receiver),
            _ => None,
        }
    }

    /// The kind as stored (`admin`, `issuer`, `receiver`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Admin => "admin",
            KeyKind::Issuer => "issuer",
            KeyKind::Receiver => "receiver",
        }
    }
}

/// Why text is not an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// Not of the form `bfk_<kind>_<random><checksum>`.
    #[error("not a Bonafide API key (expected `bfk_adm_…`, `bfk_iss_…` or `bfk_rcv_…`)")]
    Format,
    /// The shape is right but the checksum is not: a typo or a truncated key.
    #[error("API key checksum does not match (typo or truncated key)")]
    Checksum,
}

/// SHA-256 of an API key: what the registry stores and compares.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash(pub [u8; 32]);

impl ApiKeyHash {
    /// The key's public id, `sha256:` and the hash's first 8 bytes in hex: what lists,
    /// revocations and audit entries name it by (never the key).
    pub fn key_id(&self) -> String {
        format!("sha256:{}", crate::hex(self.0.get(..8).unwrap_or_default()))
    }
}

impl ApiKeyHash {
    /// The key's public id, `key_` and the hash's first 8 bytes in hex: what the API
    /// names a key by (lists, revocation, rotation, OAuth `client_id`, usage). Derived
    /// from the hash, so every key ever stored has one and no column can disagree.
    pub fn public_id(&self) -> String {
        format!("key_{}", crate::hex(self.0.get(..8).unwrap_or_default()))
    }
}

/// The hash prefix a public id (`key_` + 16 lowercase hex digits) names; `None` for
/// any other text.
pub fn parse_public_id(id: &str) -> Option<[u8; 8]> {
    let hex = id.strip_prefix("key_")?;
    if hex.len() != 16 {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let digit = |b: u8| match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        };
        let (hi, lo) = (digit(*pair.first()?)?, digit(*pair.get(1)?)?);
        *out.get_mut(i)? = hi << 4 | lo;
    }
    Some(out)
}

/// What a key may do when its scopes narrow it; a key without scopes has its kind's
/// full rights. Each endpoint needs one scope (the server's route table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyScope {
    /// Read what the key's identity may read (GET).
    Read,
    /// Change it: agents, issuer keys, receivers, webhooks, settings.
    Write,
    /// Issue and exchange tokens (`POST /v1/agents/{id}/tokens`, `/v1/token`).
    TokensIssue,
    /// Verify tokens, actions and introspect.
    Verify,
    /// Read and acknowledge events, manage webhooks.
    Events,
    /// Read the audit log with the key's visibility.
    AuditRead,
    /// Create, list, rotate and revoke API keys.
    KeysManage,
}

impl KeyScope {
    /// Every scope, in order.
    pub const ALL: [KeyScope; 7] = [
        KeyScope::Read,
        KeyScope::Write,
        KeyScope::TokensIssue,
        KeyScope::Verify,
        KeyScope::Events,
        KeyScope::AuditRead,
        KeyScope::KeysManage,
    ];

    /// Its name (`read`, `write`, `tokens:issue`, `verify`, `events`, `audit:read`,
    /// `keys:manage`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Write => "write",
            KeyScope::TokensIssue => "tokens:issue",
            KeyScope::Verify => "verify",
            KeyScope::Events => "events",
            KeyScope::AuditRead => "audit:read",
            KeyScope::KeysManage => "keys:manage",
        }
    }

    /// The scope with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ApiKeyHash({})",
            crate::hex(self.0.get(..4).unwrap_or_default())
        )
    }
}

/// A plaintext API key. Shown once at creation, never stored or logged.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    kind: KeyKind,
    text: String,
}

impl ApiKey {
    /// Makes a key of `kind` from 20 caller-supplied random bytes.
    pub fn from_random(kind: KeyKind, random: [u8; 20]) -> Self {
        let body = format!("bfk_{}_{}", kind.tag(), base32(&random));
        let text = format!("{body}{}", checksum(&body));
        ApiKey { kind, text }
    }

    /// Parses and checks a key presented by a client.
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        let rest = text.strip_prefix("bfk_").ok_or(ApiKeyError::Format)?;
        let (tag, tail) = rest.split_once('_').ok_or(ApiKeyError::Format)?;
        let kind = KeyKind::from_tag(tag).ok_or(ApiKeyError::Format)?;
        if tail.len() != RANDOM_CHARS + CHECK_CHARS || !is_base32(tail) {
            return Err(ApiKeyError::Format);
        }
        let split = text.len() - CHECK_CHARS;
        let (body, check) = (text.get(..split), text.get(split..));
        match (body, check) {
            (Some(body), Some(check)) if checksum(body) == check => Ok(ApiKey {
                kind,
                text: text.to_owned(),
            }),
            (Some(_), Some(_)) => Err(ApiKeyError::Checksum),
            _ => Err(ApiKeyError::Format),
        }
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The secret text, to show once.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// SHA-256 of the key text.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash(crate::sha256(self.text.as_bytes()))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(bfk_{}_<redacted>)", self.kind.tag())
    }
}

/// A `bfk_` key found in text by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Byte offset of the key in the text.
    pub offset: usize,
    /// The key, when its checksum holds; a look-alike (the right shape, a wrong
    /// checksum: an example, a typo, a redaction) is the error.
    pub key: Result<ApiKey, ApiKeyError>,
}

/// Every API-key-shaped string in `text`, as secret scanners find them: `bfk_`, a
/// kind, `_`, 40 base32 characters, not inside a longer word. The checksum tells a
/// real key from a look-alike without asking anyone.
pub fn scan(text: &str) -> Vec<Found> {
    const LEN: usize = 4 + 3 + 1 + RANDOM_CHARS + CHECK_CHARS;
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text.get(from..).and_then(|t| t.find("bfk_")) {
        let start = from + at;
        from = start + 4;
        if start > 0 && bytes.get(start - 1).copied().is_some_and(word) {
            continue;
        }
        let end = start + LEN;
        let Some(candidate) = text.get(start..end) else {
            continue;
        };
        if bytes.get(end).copied().is_some_and(word) {
            continue;
        }
        let key = ApiKey::parse(candidate);
        if key != Err(ApiKeyError::Format) {
            found.push(Found { offset: start, key });
            from = end;
        }
    }
    found
}

fn checksum(body: &str) -> String {
    let d = digest::digest(&digest::SHA256, body.as_bytes());
    base32(d.as_ref().get(..5).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_real_keys_and_tells_look_alikes_by_their_checksum() {
        let real = ApiKey::from_random(KeyKind::Issuer, [3; 20]);
        let admin = ApiKey::from_random(KeyKind::Admin, [4; 20]);
        let mut fake = real.expose_secret().to_owned();
        fake.replace_range(10..11, if &fake[10..11] == "a" { "b" } else { "a" });
        let text = format!(
            "export BONAFIDE_API_KEY={}\n# example: {fake}\nkey=\"{}\" \
             xbfk_iss_{} {}zz bfk_iss_short",
            real.expose_secret(),
            admin.expose_secret(),
            &real.expose_secret()[8..],
            real.expose_secret(),
        );
        let found = scan(&text);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].key.as_ref().unwrap(), &real);
        assert_eq!(found[0].offset, text.find("bfk_").unwrap());
        assert_eq!(found[1].key, Err(ApiKeyError::Checksum));
        assert_eq!(found[2].key.as_ref().unwrap(), &admin);
        assert!(scan("").is_empty() && scan("bfk_").is_empty());
        // Multi-byte text around a key.
        let around = format!("é{}é", real.expose_secret());
        assert_eq!(scan(&around).len(), 1);
    }

    #[test]
    fn public_ids_round_trip_and_refuse_anything_else() {
        let hash = ApiKey::from_random(KeyKind::Issuer, [7; 20]).hash();
        let id = hash.public_id();
        assert_eq!(id.len(), 4 + 16);
        assert_eq!(parse_public_id(&id).unwrap(), hash.0[..8]);
        for bad in [
            "",
            "key_",
            "key_0123456789abcde",
            "key_0123456789abcdef0",
            "key_0123456789ABCDEF",
            "sha256:0123456789abcdef",
            "key_0123456789abcdeg",
            "key_é123456789abcde",
        ] {
            assert_eq!(parse_public_id(bad), None, "{bad}");
        }
        for scope in KeyScope::ALL {
            assert_eq!(KeyScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(KeyScope::parse("admin"), None);
    }

    #[test]
    fn keys_round_trip() {
        for kind in [KeyKind::Admin, KeyKind::Issuer, KeyKind::Receiver] {
            let key = ApiKey::from_random(kind, [9; 20]);
            let parsed = ApiKey::parse(key.expose_secret()).unwrap();
            assert_eq!(parsed, key);
            assert_eq!(parsed.kind(), kind);
        }
    }

    #[test]
    fn checksum_catches_typos() {
        let key = ApiKey::from_random(KeyKind::Issuer, [1; 20]);
        let mut text = key.expose_secret().to_owned();
        // Flip one character of the random part.
        let i = 10;
        let c = if &text[i..=i] == "a" { "b" } else { "a" };
        text.replace_range(i..=i, c);
        assert_eq!(ApiKey::parse(&text), Err(ApiKeyError::Checksum));
    }

    #[test]
    fn rejects_malformed_keys() {
        for bad in [
            "",
            "bfk_",
            "bfk_xxx_aaaa",
            "bfk_iss_short",
            "sk_live_abc",
            "bfk_iss_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert_eq!(ApiKey::parse(bad), Err(ApiKeyError::Format), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = ApiKey::from_random(KeyKind::Admin, [3; 20]);
        let shown = format!("{key:?}");
        assert_eq!(shown, "ApiKey(bfk_adm_<redacted>)");
        assert!(!shown.contains(&key.expose_secret()[8..]));
    }
}
