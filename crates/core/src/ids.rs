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
// Organisations, people and sessions (issue 18).
id_type!(
    /// An organisation: `org_…`.
    OrgId, "org_", "organisation"
);
id_type!(
    /// A person who logs in: `usr_…`.
    PersonId, "usr_", "person"
);
id_type!(
    /// A login session (one refresh-token family): `ses_…`.
    SessionId, "ses_", "session"
);

impl ReceiptId {
    /// Bytes of randomness in a [`ReceiptId::from_time_and_random`] id (80 bits).
    pub const TIMED_RANDOM_BYTES: usize = 10;
    /// The first time (ms) an id's 48 bits of time cannot hold (the year 10889):
    /// [`ReceiptId::from_time_and_random`] keeps the low 48 bits of a later one.
    pub const TIME_LIMIT_MS: u64 = 1 << 48;

    /// A receipt id whose first 48 bits are `time_ms` (big-endian) and whose other 80
    /// are the caller's random bytes: ids made close in time share a prefix, so the
    /// receipts a group commit writes land on a few pages of the store's primary-key
    /// index instead of one page each (a random key costs a page write per row). The
    /// text form and parsing are those of every id; 80 random bits keep ids
    /// unguessable, and the time they reveal is the receipt's own `iat`.
    pub fn from_time_and_random(time_ms: u64, random: [u8; Self::TIMED_RANDOM_BYTES]) -> Self {
        let mut bytes = [0u8; 16];
        let (time, rest) = bytes.split_at_mut(6);
        // The low 48 bits: milliseconds until the year 10889.
        time.copy_from_slice(&time_ms.to_be_bytes()[2..]);
        rest.copy_from_slice(&random);
        Self::from_random(bytes)
    }

    /// The id's first 48 bits read as a time in milliseconds: the time it was made
    /// with, for an id of [`ReceiptId::from_time_and_random`]; for any other id, a
    /// meaningless number (its random bits).
    pub fn time_ms(&self) -> u64 {
        let digits = self.0.bytes().skip(Self::PREFIX.len());
        let mut time = 0u64;
        for (i, c) in digits.take(10).enumerate() {
            let value = u64::from(digit_value(c));
            // Nine whole characters (45 bits), then the tenth's top 3 bits.
            time = if i < 9 {
                (time << 5) | value
            } else {
                (time << 3) | (value >> 2)
            };
        }
        time
    }

    /// The half-open text ranges `[lo, hi)` that hold exactly the ids of
    /// [`ReceiptId::from_time_and_random`] whose time is before `time_ms`, so that a
    /// store keyed by the id text (byte order) finds them without an index on age.
    /// One range is not enough: the alphabet's digits (`2`–`7`, values 26–31) sort
    /// before its letters (`a`, value 0), so text order is time order only digit by
    /// digit. For each of the time's ten characters: the ids that agree with
    /// `time_ms` before it and are smaller at it, a letters range and, where the
    /// character is past `z`, a digits range: at most 20. An id made otherwise
    /// ([`ReceiptId::from_random`]) falls in them by chance (its first 48 bits read
    /// as a time): a store must check the row's own age as well.
    pub fn ranges_before(time_ms: u64) -> Vec<(String, String)> {
        if time_ms >= Self::TIME_LIMIT_MS {
            // Every id's time is before it: the range of every id (`{` follows `z`).
            return vec![(Self::PREFIX.to_owned(), format!("{}{{", Self::PREFIX))];
        }
        let limit = Self::from_time_and_random(time_ms, [0; Self::TIMED_RANDOM_BYTES]);
        let text = limit.as_str();
        let prefix_len = Self::PREFIX.len();
        // 48 bits of time are 9 whole characters and the top 3 bits of the tenth; the
        // tenth's low 2 bits are random, here 0, so "smaller at it" stays `< value`.
        let mut ranges = Vec::new();
        for (i, c) in text.bytes().skip(prefix_len).take(10).enumerate() {
            let Some(head) = text.get(..prefix_len + i) else {
                break;
            };
            let value = digit_value(c);
            let letters_end = value.min(26);
            if letters_end > 0 {
                ranges.push(range_of(head, b'a', b'a' + letters_end as u8));
            }
            if value > 26 {
                ranges.push(range_of(head, b'2', b'2' + (value - 26) as u8));
            }
        }
        ranges
    }
}

/// The value (0–31) of a character of [`ALPHABET`].
fn digit_value(c: u8) -> u32 {
    match c {
        b'a'..=b'z' => u32::from(c - b'a'),
        b'2'..=b'7' => 26 + u32::from(c - b'2'),
        // INVARIANT: only called on text `base32` wrote.
        _ => 0,
    }
}

/// `[head + first, head + end)`: every text starting with `head` and then a
/// character from `first` up to (not including) `end`.
fn range_of(head: &str, first: u8, end: u8) -> (String, String) {
    let mut lo = String::with_capacity(head.len() + 1);
    lo.push_str(head);
    lo.push(char::from(first));
    let mut hi = String::with_capacity(head.len() + 1);
    hi.push_str(head);
    hi.push(char::from(end));
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_receipt_ids_share_a_prefix_in_time_order_and_parse_as_any() {
        let t = 1_764_900_000_000u64;
        let a = ReceiptId::from_time_and_random(t, [0xff; 10]);
        let b = ReceiptId::from_time_and_random(t + 1, [0; 10]);
        let later = ReceiptId::from_time_and_random(t + 86_400_000, [0; 10]);
        for id in [&a, &b, &later] {
            assert_eq!(ReceiptId::try_from(id.as_str()).as_ref(), Ok(id));
            assert_eq!(id.as_str().len(), 4 + 26);
        }
        // 48 bits of time are 9.6 base32 characters: a millisecond apart, the first
        // eight agree; a day apart, fewer do.
        assert_eq!(a.as_str()[..12], b.as_str()[..12]);
        assert_ne!(a.as_str()[..12], later.as_str()[..12]);
        // The random part is all of the rest.
        assert_ne!(
            ReceiptId::from_time_and_random(t, [1; 10]),
            ReceiptId::from_time_and_random(t, [2; 10])
        );
        assert_eq!(
            ReceiptId::from_time_and_random(t, [7; 10]),
            ReceiptId::from_random({
                let mut bytes = [7u8; 16];
                bytes[..6].copy_from_slice(&t.to_be_bytes()[2..]);
                bytes
            })
        );
    }

    /// An id is in `ranges_before(t)` exactly when its time is before `t`: times on
    /// both sides of limits with every kind of digit (letters only, past `z`, at the
    /// edges), random bytes all ones and all zeros, and a pseudo-random sweep.
    #[test]
    fn ranges_before_hold_exactly_the_earlier_timed_ids() {
        let inside = |ranges: &[(String, String)], id: &ReceiptId| {
            ranges
                .iter()
                .any(|(lo, hi)| lo.as_str() <= id.as_str() && id.as_str() < hi.as_str())
        };
        let max = (1u64 << 48) - 1;
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            // splitmix64: enough spread for a sweep, no dependency.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut limits = vec![0, 1, 31, 32, max, max - 1, 1_764_900_000_000, 1u64 << 47];
        limits.extend((0..40).map(|_| next() & max));
        for limit in limits {
            let ranges = ReceiptId::ranges_before(limit);
            assert!(ranges.len() <= 20, "{limit}: {}", ranges.len());
            let mut times = vec![0, max, limit, limit.saturating_sub(1), (limit + 1).min(max)];
            // Near the limit in every digit: one step of each 5 bits either way.
            for shift in (3..48).step_by(5) {
                times.push(limit.saturating_sub(1 << shift));
                times.push((limit + (1 << shift)).min(max));
            }
            times.extend((0..200).map(|_| next() & max));
            for t in times {
                for random in [[0u8; 10], [0xff; 10], [0x5a; 10]] {
                    let id = ReceiptId::from_time_and_random(t, random);
                    assert_eq!(
                        inside(&ranges, &id),
                        t < limit,
                        "limit {limit}, time {t}, id {id}, ranges {ranges:?}"
                    );
                }
            }
        }
        // Nothing is before time 0; everything is before the last time ids hold.
        assert!(ReceiptId::ranges_before(0).is_empty());
        for beyond in [ReceiptId::TIME_LIMIT_MS, u64::MAX] {
            let all = ReceiptId::ranges_before(beyond);
            for t in [0, 1_764_900_000_000, max] {
                for random in [[0u8; 10], [0xff; 10]] {
                    let id = ReceiptId::from_time_and_random(t, random);
                    assert!(inside(&all, &id), "{beyond}: {id}");
                }
            }
        }
        // The time is read back from the id, whatever its random part.
        for t in [0, 1, 1_764_900_000_000, max - 1, max] {
            for random in [[0u8; 10], [0xff; 10]] {
                assert_eq!(ReceiptId::from_time_and_random(t, random).time_ms(), t);
            }
        }
    }

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
