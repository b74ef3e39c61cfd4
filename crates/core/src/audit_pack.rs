//! A lossless, compact storage form of audit entries (issue 17 goal 6: the audit log
//! is most of the database, and most of an entry is member names and hex digests).
//!
//! The log's bytes are the RFC 8785 canonical entry: its leaf hash, proofs, tiles and
//! `bonafide audit verify` all see exactly those bytes. Only the database holds the
//! packed form, and [`unpack`] gives back the canonical bytes exactly.
//!
//! Canonical JSON never holds a byte below 0x20 (RFC 8785 escapes U+0000–U+001F, and
//! UTF-8 encodes every other character with bytes ≥ 0x20), so those bytes are free to
//! be codes:
//!
//! - a packed entry starts with [`PACKED`] (an unpacked one starts with `{`, so a
//!   stored entry of either form reads back, including entries stored before packing);
//! - then, at each position, the first that applies: [`HEX64`] and 32 bytes stand for
//!   64 lowercase hex digits (digests), [`HEX32`] and 16 bytes for 32 (request ids),
//!   [`BASE32_26`] and 17 bytes for 26 lowercase base32 characters (the random part of
//!   `agt_…`, `tok_…`, `rcp_…`, `rcv_…` ids), [`DECIMAL`] and a LEB128 varint for a
//!   run of 4 to 19 digits without a leading zero (times), a code `0x04..=0x1F` for
//!   [`DICTIONARY`]`[code - 4]` (the member names and values that recur in entries),
//!   and any other byte is itself.
//!
//! [`pack`] refuses nothing: bytes that hold a control byte, or are not an entry at
//! all, are kept as they are.

use std::borrow::Cow;

use crate::audit::AuditError;

/// First byte of a packed entry.
pub const PACKED: u8 = 0x01;
/// Code for 32 lowercase hex digits, followed by their 16 bytes.
pub const HEX32: u8 = 0x00;
/// Code for 26 lowercase RFC 4648 base32 characters, followed by their 130 bits in 17
/// bytes (the last 6 bits zero).
pub const BASE32_26: u8 = 0x01;
/// Code for 64 lowercase hex digits, followed by their 32 bytes.
pub const HEX64: u8 = 0x02;
/// Code for a decimal number (4–19 digits, no leading zero), followed by its value as
/// an unsigned LEB128 varint.
pub const DECIMAL: u8 = 0x03;
/// First dictionary code.
const FIRST_WORD: u8 = 0x04;

/// Fragments of canonical entries (members in RFC 8785 order), each coded as one byte.
/// Where one fragment is a prefix of another, the longer one comes first: the first
/// match is taken. The list is part of the stored format: never reorder or change an
/// entry; there is no free code left.
pub const DICTIONARY: [&str; 28] = [
    "{\"actor\":{\"id\":\"rcv_",
    "{\"actor\":{\"id\":\"",
    "{\"actor\":{\"kind\":\"",
    "\",\"kind\":\"receiver\"},\"agent\":\"agt_",
    "\",\"kind\":\"issuer\"},\"agent\":\"agt_",
    "\"},\"agent\":\"agt_",
    "\",\"decision\":\"allow\",\"jti\":\"tok_",
    "\",\"decision\":\"deny\",\"jti\":\"tok_",
    "\",\"decision\":\"",
    "\",\"receipt\":\"rcp_",
    "\",\"request_id\":\"req_",
    "\",\"request_sha256\":\"",
    "\",\"scopes\":[\"",
    "\"],\"time_ms\":",
    ",\"token_sha256\":\"",
    "\",\"type\":\"verify\",\"v\":1}",
    "\",\"type\":\"",
    "\",\"v\":1}",
    "\"reasons\":[\"",
    "\",\"policy_hash\":\"sha256:",
    "\",\"target\":\"",
    "\",\"amount\":\"",
    "\",\"issuer\":\"iss_",
    "\",\"note\":\"",
    ",\"time_ms\":",
    "anonymous\"},",
    "registry\"},",
    "\",\"jti\":\"",
];

/// Every first byte of a [`DICTIONARY`] word: a position starting with another byte
/// is not looked up (`tests::dictionary_first_bytes_are_complete`).
const DICTIONARY_FIRST_BYTES: [u8; 5] = [b'{', b'"', b',', b'a', b'r'];

const HEX: &[u8; 16] = b"0123456789abcdef";
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn base32_value(b: u8) -> Option<u8> {
    match b {
        b'a'..=b'z' => Some(b - b'a'),
        b'2'..=b'7' => Some(b - b'2' + 26),
        _ => None,
    }
}

fn push_hex(out: &mut Vec<u8>, digits: &[u8]) {
    for pair in digits.chunks_exact(2) {
        if let [hi, lo] = pair {
            // Both are hex digits (checked by the caller).
            out.push(hex_value(*hi).unwrap_or(0) << 4 | hex_value(*lo).unwrap_or(0));
        }
    }
}

fn push_base32(out: &mut Vec<u8>, chars: &[u8]) {
    let (mut acc, mut bits) = (0u16, 0u32);
    for &c in chars {
        acc = acc << 5 | u16::from(base32_value(c).unwrap_or(0));
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // 26 × 5 = 130 bits: 2 left, in the top of the last byte.
    out.push((acc << (8 - bits)) as u8);
}

/// The first `n` bytes of `rest` when each is a digit of the alphabet `ok` reads.
fn run(rest: &[u8], n: usize, ok: fn(u8) -> Option<u8>) -> Option<&[u8]> {
    rest.get(..n)
        .filter(|run| run.iter().all(|&b| ok(b).is_some()))
}

/// The decimal run at the start of `rest` worth coding: its length and value.
fn decimal(rest: &[u8]) -> Option<(usize, u64)> {
    // Tried at every position not coded otherwise: no allocation.
    let len = rest
        .iter()
        .take(19)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let digits = rest.get(..len)?;
    if len < 4 || digits.first() == Some(&b'0') {
        return None;
    }
    let value = digits.iter().try_fold(0u64, |v, &d| {
        v.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some((len, value))
}

/// The stored form of `entry`: packed, unless it holds a byte below 0x20 (then it is
/// not canonical JSON and is kept as it is) or packing would not make it shorter.
pub fn pack(entry: &[u8]) -> Cow<'_, [u8]> {
    if entry.iter().any(|&b| b < 0x20) {
        return Cow::Borrowed(entry);
    }
    let mut out = Vec::with_capacity(entry.len() / 2 + 16);
    out.push(PACKED);
    let mut rest = entry;
    'next: while let Some(&first) = rest.first() {
        let used = if let Some(digits) = run(rest, 64, hex_value) {
            out.push(HEX64);
            push_hex(&mut out, digits);
            64
        } else if let Some(digits) = run(rest, 32, hex_value) {
            out.push(HEX32);
            push_hex(&mut out, digits);
            32
        } else if let Some(chars) = run(rest, 26, base32_value) {
            out.push(BASE32_26);
            push_base32(&mut out, chars);
            26
        } else if let Some((len, mut value)) = decimal(rest) {
            out.push(DECIMAL);
            loop {
                let low = (value & 0x7f) as u8;
                value >>= 7;
                if value == 0 {
                    out.push(low);
                    break;
                }
                out.push(low | 0x80);
            }
            len
        } else if DICTIONARY_FIRST_BYTES.contains(&first) {
            for (code, word) in (FIRST_WORD..).zip(DICTIONARY) {
                if let Some(after) = rest.strip_prefix(word.as_bytes()) {
                    out.push(code);
                    rest = after;
                    continue 'next;
                }
            }
            out.push(first);
            1
        } else {
            out.push(first);
            1
        };
        rest = rest.get(used..).unwrap_or_default();
    }
    if out.len() < entry.len() {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(entry)
    }
}

/// The entry's canonical bytes from its stored form (packed or not).
pub fn unpack(stored: &[u8]) -> Result<Cow<'_, [u8]>, AuditError> {
    let Some((&PACKED, body)) = stored.split_first() else {
        return Ok(Cow::Borrowed(stored));
    };
    let malformed = |what: &str| AuditError::Malformed(format!("packed entry: {what}"));
    let mut out = Vec::with_capacity(body.len() * 2 + 64);
    let mut rest = body;
    while let Some((&b, after)) = rest.split_first() {
        rest = after;
        let mut take = |n: usize| -> Result<&[u8], AuditError> {
            if rest.len() < n {
                return Err(malformed("truncated"));
            }
            let (taken, after) = rest.split_at(n);
            rest = after;
            Ok(taken)
        };
        match b {
            HEX64 | HEX32 => {
                for &byte in take(if b == HEX64 { 32 } else { 16 })? {
                    for nibble in [byte >> 4, byte & 0x0f] {
                        out.extend(HEX.get(usize::from(nibble)));
                    }
                }
            }
            BASE32_26 => {
                let (mut acc, mut bits) = (0u16, 0u32);
                let mut chars = 0;
                for &byte in take(17)? {
                    acc = acc << 8 | u16::from(byte);
                    bits += 8;
                    while bits >= 5 && chars < 26 {
                        bits -= 5;
                        out.extend(BASE32.get(usize::from(acc >> bits) & 31));
                        acc &= (1 << bits) - 1;
                        chars += 1;
                    }
                }
                if acc != 0 {
                    return Err(malformed("base32 padding"));
                }
            }
            DECIMAL => {
                let mut value = 0u64;
                let mut shift = 0;
                loop {
                    let [byte] = take(1)? else {
                        return Err(malformed("truncated"));
                    };
                    if shift > 63 {
                        return Err(malformed("number too large"));
                    }
                    value |= u64::from(byte & 0x7f) << shift;
                    shift += 7;
                    if byte & 0x80 == 0 {
                        break;
                    }
                }
                out.extend_from_slice(value.to_string().as_bytes());
            }
            FIRST_WORD..=0x1f => {
                let word = DICTIONARY
                    .get(usize::from(b - FIRST_WORD))
                    .ok_or_else(|| malformed("unknown code"))?;
                out.extend_from_slice(word.as_bytes());
            }
            _ => out.push(b),
        }
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, AuditEntry, Decision, EventType};

    #[test]
    fn dictionary_first_bytes_are_complete() {
        for word in DICTIONARY {
            assert!(
                word.bytes()
                    .next()
                    .is_some_and(|b| DICTIONARY_FIRST_BYTES.contains(&b)),
                "{word}"
            );
        }
    }

    fn verify_entry(actor: Actor, decision: Decision) -> Vec<u8> {
        let mut e = AuditEntry::new(EventType::Verify, 1_764_950_400_123, actor);
        e.agent = Some("agt_wp7rnpgjko3mldxfuxtytivgwi".into());
        e.jti = Some("tok_j3mfh4zqdzxuxn7zyedjdxhiqy".into());
        e.token_sha256 = Some("0f".repeat(32));
        e.request_sha256 = Some("a1b2c3d4e5f60718".repeat(4));
        e.decision = Some(decision);
        e.scopes = vec!["read:portfolio".into()];
        e.receipt = Some("rcp_agreoljclr5u4qyjgguzbsgtvi".into());
        e.request_id = Some("req_7682a9d290562466ac83c25045ab3e80".into());
        if decision == Decision::Deny {
            e.reasons = vec!["SCOPE_NOT_GRANTED".into()];
        }
        e.to_canonical().unwrap()
    }

    #[test]
    fn verify_entries_round_trip_and_shrink() {
        for actor in [
            Actor::Receiver {
                id: "rcv_xdwz3gwnb5lbtx5c5cuvva5zwe".into(),
            },
            Actor::Anonymous,
            Actor::Issuer {
                id: "iss_zdwz3gwnb5lbtx5c5cuvva5zwe".into(),
            },
            Actor::Admin,
        ] {
            for decision in [Decision::Allow, Decision::Deny] {
                let entry = verify_entry(actor.clone(), decision);
                let packed = pack(&entry);
                assert_eq!(packed[0], PACKED, "{}", String::from_utf8_lossy(&entry));
                assert!(
                    packed.len() * 10 < entry.len() * 5,
                    "{} of {} bytes",
                    packed.len(),
                    entry.len()
                );
                assert_eq!(unpack(&packed).unwrap(), entry.as_slice());
            }
        }
    }

    #[test]
    fn every_byte_and_awkward_text_round_trips() {
        // Hex runs of every length around 64, uppercase hex, dictionary fragments cut
        // short, every printable byte and multi-byte UTF-8.
        let mut cases: Vec<Vec<u8>> = (0..=130)
            .map(|n| {
                format!(
                    "{{\"note\":\"{}\"}}",
                    "ab".repeat(n / 2) + &"c".repeat(n % 2)
                )
            })
            .map(String::into_bytes)
            .collect();
        cases.push(format!("{{\"x\":\"{}\"}}", "AB".repeat(40)).into_bytes());
        cases.push(b"{\"actor\":{\"id".to_vec());
        cases.push(b"\",\"type\":\"verify\",\"v\":1".to_vec());
        cases.push((0x20..=0xff).collect());
        cases.push(
            "{\"note\":\"caf\u{e9} \u{1f512} \\u0001\"}"
                .as_bytes()
                .to_vec(),
        );
        cases.push(Vec::new());
        // Numbers: leading zeros, 3 to 21 digits, u64::MAX and past it.
        for n in [
            "0123456",
            "123",
            "1234",
            "1796490469980",
            "18446744073709551615",
            "18446744073709551616",
            "999999999999999999999",
            "10000000000000000000",
        ] {
            cases.push(format!("{{\"time_ms\":{n},\"n\":\"{n}{n}\"}}").into_bytes());
        }
        // Base32 runs of 25 to 27 characters, and ids.
        for n in 24..=54 {
            let run: String = (0..n)
                .map(|k| char::from(BASE32[(k * 7 + n) % 32]))
                .collect();
            cases.push(format!("{{\"agent\":\"agt_{run}\"}}").into_bytes());
        }
        for dict in DICTIONARY {
            cases.push(format!("{dict}{dict}x{dict}").into_bytes());
        }
        for case in cases {
            let packed = pack(&case);
            assert!(packed.len() <= case.len());
            assert_eq!(unpack(&packed).unwrap(), case.as_slice());
        }
    }

    #[test]
    fn control_bytes_are_kept_as_they_are() {
        let odd = b"{\"a\":\"\x01\x02\"}";
        assert_eq!(pack(odd), odd.as_slice());
        // Not packed: read back as stored, without decoding.
        assert_eq!(unpack(b"{\"a\":1}").unwrap(), b"{\"a\":1}".as_slice());
    }

    #[test]
    fn damaged_packed_entries_are_errors() {
        let entry = verify_entry(Actor::Anonymous, Decision::Allow);
        let packed = pack(&entry).into_owned();
        let hex_at = packed.iter().position(|&b| b == HEX64).unwrap();
        assert!(matches!(
            unpack(&packed[..hex_at + 10]),
            Err(AuditError::Malformed(_))
        ));
        for damaged in [
            &[PACKED, b'{', HEX32][..],
            &[PACKED, BASE32_26, 0, 0],
            &[PACKED, DECIMAL, 0x80, 0x80],
            &[
                PACKED, DECIMAL, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 1,
            ],
        ] {
            assert!(
                matches!(unpack(damaged), Err(AuditError::Malformed(_))),
                "{damaged:?}"
            );
        }
        // Base32 padding bits must be zero.
        let mut padded = vec![PACKED, BASE32_26];
        padded.extend_from_slice(&[0; 16]);
        padded.push(1);
        assert!(matches!(unpack(&padded), Err(AuditError::Malformed(_))));
    }

    #[test]
    fn dictionary_codes_fit_below_the_printable_range() {
        assert_eq!(usize::from(FIRST_WORD) + DICTIONARY.len(), 0x20);
        assert!(
            [HEX32, BASE32_26, HEX64, DECIMAL]
                .iter()
                .all(|&c| c < FIRST_WORD)
        );
        for (i, a) in DICTIONARY.iter().enumerate() {
            assert!(a.bytes().all(|b| b >= 0x20));
            // A longer fragment sharing a prefix must come first.
            for b in &DICTIONARY[..i] {
                assert!(!a.starts_with(b), "{a:?} is shadowed by {b:?}");
            }
        }
    }
}
