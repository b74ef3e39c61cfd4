//! Identifiers: `agt_…` agents, `tok_…` token ids, `iss_…` issuers, `rcv_…` receivers.
//!
//! Each is a prefix and 128 random bits in lowercase RFC 4648 base32 without padding
//! (26 characters). Core draws no randomness: callers pass the 16 random bytes in.
//! Parsing is strict (prefix, length, alphabet) so an id taken from a path or a token
//! can be used as a lookup key without further checks.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters of base32 text for 16 bytes (128 bits → 26 × 5 bits).
const RANDOM_CHARS: usize = 26;

/// Lowercase RFC 4648 base32 without padding.
pub(crate) fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(alphabet_char((acc >> bits) & 31));
        }
    }
    if bits > 0 {
        out.push(alphabet_char((acc << (5 - bits)) & 31));
    }
    out
}

fn alphabet_char(v: u32) -> char {
    // INVARIANT: callers mask `v` to 0..32.
    ALPHABET.get(v as usize).map_or('a', |&c| char::from(c))
}

pub(crate) fn is_base32(text: &str) -> bool {
    // The ranges of ALPHABET (a range test, not a scan of it: ids are checked on every
    // token verified).
    text.bytes().all(|c| matches!(c, b'a'..=b'z' | b'2'..=b'7'))
}

/// Why an identifier did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}` and 26 base32 characters)")]
pub struct IdError {
    /// What kind of id was expected (`agent`, `token`, …).
    pub kind: &'static str,
    /// The expected prefix.
    pub prefix: &'static str,
    /// The rejected text, truncated to 64 characters.
    pub value: String,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Makes an id from 16 caller-supplied random bytes.
            pub fn from_random(bytes: [u8; 16]) -> Self {
                Self(format!("{}{}", $prefix, base32(&bytes)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(value: &str) -> Result<Self, IdError> {
                match value.strip_prefix($prefix) {
                    Some(rest) if rest.len() == RANDOM_CHARS && is_base32(rest) => {
                        Ok(Self(value.to_owned()))
                    }
                    _ => Err(IdError {
                        kind: $kind,
                        prefix: $prefix,
                        value: value.chars().take(64).collect(),
                    }),
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::try_from(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Self::try_from(text.as_ref()).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// An agent: `agt_…`.
    AgentId, "agt_", "agent"
);
id_type!(
    /// A token id (`jti`): `tok_…`.
    TokenId, "tok_", "token"
);
id_type!(
    /// An issuer: `iss_…`.
    IssuerId, "iss_", "issuer"
);
id_type!(
    /// A receiver: `rcv_…`.
    ReceiverId, "rcv_", "receiver"
);
id_type!(
    /// A verify receipt: `rcp_…`.
    ReceiptId, "rcp_", "receipt"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10, lowercased and without padding.
        let cases = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (input, want) in cases {
            assert_eq!(base32(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn ids_round_trip_and_parse_strictly() {
        let id = AgentId::from_random([7; 16]);
        assert!(id.as_str().starts_with("agt_"));
        assert_eq!(id.as_str().len(), 4 + 26);
        assert_eq!(AgentId::try_from(id.as_str()).unwrap(), id);
        assert!(AgentId::try_from("agt_").is_err());
        assert!(AgentId::try_from("tok_aaaaaaaaaaaaaaaaaaaaaaaaaa").is_err());
        assert!(AgentId::try_from("agt_AAAAAAAAAAAAAAAAAAAAAAAAAA").is_err());
        assert!(AgentId::try_from("agt_aaaaaaaaaaaaaaaaaaaaaaaaa'").is_err());
        assert!(AgentId::try_from("agt_../../../etc/passwd0000000").is_err());
    }

    #[test]
    fn serde_refuses_malformed_ids() {
        let ok: AgentId = serde_json::from_str("\"agt_aaaaaaaaaaaaaaaaaaaaaaaaaa\"").unwrap();
        assert_eq!(ok.as_str(), "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(serde_json::from_str::<AgentId>("\"agt_x\"").is_err());
    }
}
