//! Strict JSON for untrusted token segments.
//!
//! `serde_json` keeps the last of two duplicate keys and allows nesting up to 128
//! levels. RFC 8725 §3.2 and RFC 7515 §5.2 ask verifiers to reject duplicate member
//! names; a JWT with two `exp` members would otherwise mean different things to
//! different libraries. [`check`] walks the document once, without building it, and
//! rejects duplicates at any depth and nesting beyond [`JsonLimits::max_depth`]; the
//! caller then parses the same bytes into its typed struct.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Bounds for [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    /// Deepest nesting of arrays and objects accepted. Default 16: agent tokens nest
    /// three levels today; delegation chains (`act`) add one level per hop.
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        Self { max_depth: 16 }
    }
}

/// Why a JSON document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON, or trailing bytes after the value.
    #[error("malformed JSON")]
    Syntax,
    /// A member name appears twice in one object.
    #[error("duplicate member `{0}`")]
    DuplicateKey(String),
    /// Arrays and objects nest deeper than allowed.
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
}

const DUP: &str = "\u{0}dup:";
const DEEP: &str = "\u{0}deep";

/// True if the first non-whitespace byte opens an object. Call after [`check`]: serde's
/// derived structs would otherwise also accept an array in field order (RFC 7515 §4
/// and RFC 7519 §7.2 require an object).
pub fn is_object(bytes: &[u8]) -> bool {
    bytes.trim_ascii_start().first() == Some(&b'{')
}

/// Checks `bytes` is one JSON value with no duplicate member names and bounded depth.
pub fn check(bytes: &[u8], limits: JsonLimits) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let seed = Strict {
        depth: 0,
        max: limits.max_depth,
    };
    seed.deserialize(&mut de)
        .map_err(|e| classify(e, limits.max_depth))?;
    de.end().map_err(|_| JsonError::Syntax)
}

fn classify(err: serde_json::Error, max_depth: usize) -> JsonError {
    let msg = err.to_string();
    if let Some(rest) = msg.strip_prefix(DUP) {
        // serde_json appends " at line X column Y" to custom errors.
        let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
        JsonError::DuplicateKey(key.to_owned())
    } else if msg.starts_with(DEEP) {
        JsonError::TooDeep(max_depth)
    } else {
        JsonError::Syntax
    }
}

struct Strict {
    depth: usize,
    max: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Strict {
    fn deeper<E: de::Error>(&self) -> Result<Strict, E> {
        if self.depth >= self.max {
            return Err(E::custom(DEEP));
        }
        Ok(Strict {
            depth: self.depth + 1,
            max: self.max,
        })
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq
            .next_element_seed(Strict {
                depth: inner.depth,
                max: inner.max,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        // Linear scan for the handful of members a token has; a set past that, so a
        // hostile object with thousands of members stays linear.
        let mut small: Vec<Cow<'de, str>> = Vec::new();
        let mut large: Option<HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let dup = match &mut large {
                Some(set) => !set.insert(key.clone()),
                None => {
                    let dup = small.contains(&key);
                    small.push(key.clone());
                    if small.len() > 16 {
                        large = Some(small.drain(..).collect());
                    }
                    dup
                }
            };
            if dup {
                return Err(de::Error::custom(format_args!("{DUP}{key}")));
            }
            map.next_value_seed(Strict {
                depth: inner.depth,
                max: inner.max,
            })?;
        }
        Ok(())
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Result<(), JsonError> {
        check(s.as_bytes(), JsonLimits::default())
    }

    #[test]
    fn accepts_ordinary_documents() {
        ok(r#"{"a":1,"b":[1,2,{"c":null}],"d":{"e":"f"}}"#).unwrap();
        ok("[]").unwrap();
        ok(r#""x""#).unwrap();
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert_eq!(
            ok(r#"{"exp":1,"exp":2}"#),
            Err(JsonError::DuplicateKey("exp".into()))
        );
        assert_eq!(
            ok(r#"{"agent":{"name":"a","name":"b"}}"#),
            Err(JsonError::DuplicateKey("name".into()))
        );
        assert_eq!(
            ok(r#"{"a":[{"k":1,"k":1}]}"#),
            Err(JsonError::DuplicateKey("k".into()))
        );
    }

    #[test]
    fn duplicates_spelled_with_escapes_are_still_duplicates() {
        assert_eq!(
            ok(r#"{"exp":1,"\u0065xp":2}"#),
            Err(JsonError::DuplicateKey("exp".into()))
        );
    }

    #[test]
    fn many_members_use_the_set_path() {
        let mut doc = String::from("{");
        for i in 0..100 {
            doc.push_str(&format!("\"k{i}\":{i},"));
        }
        doc.push_str("\"k5\":0}");
        assert_eq!(ok(&doc), Err(JsonError::DuplicateKey("k5".into())));
    }

    #[test]
    fn bounds_depth() {
        let deep = "[".repeat(17) + &"]".repeat(17);
        assert!(matches!(ok(&deep), Err(JsonError::TooDeep(_))));
        let fine = "[".repeat(16) + &"]".repeat(16);
        ok(&fine).unwrap();
    }

    #[test]
    fn objects_are_told_from_arrays() {
        assert!(is_object(br#" {"a":1}"#));
        assert!(!is_object(b"[1]"));
        assert!(!is_object(b""));
    }

    #[test]
    fn rejects_trailing_bytes_and_garbage() {
        assert_eq!(ok(r#"{"a":1} x"#), Err(JsonError::Syntax));
        assert_eq!(ok(r#"{"a":1"#), Err(JsonError::Syntax));
        assert_eq!(ok(""), Err(JsonError::Syntax));
    }
}
