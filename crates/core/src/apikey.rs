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

fn checksum(body: &str) -> String {
    let d = digest::digest(&digest::SHA256, body.as_bytes());
    base32(d.as_ref().get(..5).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

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
