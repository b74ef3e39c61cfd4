//! Strict JSON for untrusted token segments.
//!
//! `serde_json` keeps the last of two duplicate keys and allows nesting up to 128
//! levels. RFC 8725 §3.2 and RFC 7515 §5.2 ask verifiers to reject duplicate member
//! names; a JWT with two `exp` members would otherwise mean different things to
//! different libraries. [`check`] walks the document once, without building it, and
//! rejects duplicates at any depth and nesting beyond [`JsonLimits::max_depth`]; the
//! caller then parses the same bytes into its typed struct. [`from_slice`] does both
//! in one pass: the typed parse itself refuses duplicates and bounds depth, with the
//! same outcome as [`check`] followed by `serde_json::from_slice`.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::Deserialize;
use serde::de::value::{
    BorrowedStrDeserializer, MapAccessDeserializer, StrDeserializer, StringDeserializer,
};
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};

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

/// Why [`from_slice`] refused a document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// What [`check`] refuses: malformed, a duplicate member, nested too deep.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// Strict JSON, but not of the expected type (serde's message, without its
    /// position).
    #[error("{0}")]
    Type(String),
}

/// [`check`] and `serde_json::from_slice` in one pass: parses `bytes` into `T` while
/// refusing duplicate member names at any depth (compared after unescaping) and
/// nesting beyond `limits`, and trailing bytes.
///
/// Exactly as strict as the two passes, with the same errors: a document the one pass
/// refuses is run through [`check`] and then `serde_json::from_slice` to tell why, so
/// a duplicate or too deep a nesting anywhere is [`ParseError::Json`] even when the
/// typed parse failed first. (That also covers a `T` the one pass does not read, such
/// as one holding a `RawValue`: the two passes decide.) Does not require an object:
/// see [`is_object`].
pub fn from_slice<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limits: JsonLimits,
) -> Result<T, ParseError> {
    if let Ok(value) = one_pass(bytes, limits) {
        return Ok(value);
    }
    check(bytes, limits)?;
    serde_json::from_slice(bytes).map_err(|e| ParseError::Type(without_position(&e)))
}

fn one_pass<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limits: JsonLimits,
) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(Checked {
        de: &mut de,
        depth: 0,
        max: limits.max_depth,
    })?;
    de.end()?;
    Ok(value)
}

/// serde's message names the member and the problem; its position is noise.
pub(crate) fn without_position(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    match msg.rsplit_once(" at line ") {
        Some((m, _)) => m.to_owned(),
        None => msg,
    }
}

/// One more level of nesting below `depth` containers, or [`DEEP`].
fn enter<E: de::Error>(depth: usize, max: usize) -> Result<usize, E> {
    if depth >= max {
        return Err(E::custom(DEEP));
    }
    Ok(depth + 1)
}

/// A deserializer for one value `depth` containers deep that hands every visitor a
/// [`Wrap`]: each array or object below it is counted and each object's members
/// checked for duplicates as the caller's type is built.
struct Checked<D> {
    de: D,
    depth: usize,
    max: usize,
}

impl<D> Checked<D> {
    fn wrap<V>(&self, visitor: V) -> Wrap<V> {
        Wrap {
            visitor,
            depth: self.depth,
            max: self.max,
        }
    }
}

macro_rules! forward_wrapped {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.wrap(visitor);
            self.de.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Checked<D> {
    type Error = D::Error;

    forward_wrapped! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier
    }

    /// serde_json skips an ignored value without showing it to a visitor: walk it
    /// instead, so an unknown member's value is checked like any other.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        // serde_json's private newtypes (`RawValue`) take the text unread: refuse them
        // here, and `from_slice` falls back to the two passes.
        if name.starts_with("$serde_json::") {
            return Err(de::Error::custom("not read in one pass"));
        }
        let visitor = self.wrap(visitor);
        self.de.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.wrap(visitor);
        self.de.deserialize_struct(name, fields, visitor)
    }

    /// serde_json hands an enum's content to the caller's visitor through its own
    /// deserializer: read the value as any value instead (a string is a unit variant,
    /// an object of one member a variant with content), so the content is checked too.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(AsEnum {
            visitor,
            depth: self.depth,
            max: self.max,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// The caller's visitor, given [`Checked`] arrays and objects.
struct Wrap<V> {
    visitor: V,
    depth: usize,
    max: usize,
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Checked {
            de,
            depth: self.depth,
            max: self.max,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Checked {
            de,
            depth: self.depth,
            max: self.max,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let depth = enter(self.depth, self.max)?;
        self.visitor.visit_seq(CheckedSeq {
            seq,
            depth,
            max: self.max,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let depth = enter(self.depth, self.max)?;
        self.visitor.visit_map(CheckedMap {
            map,
            depth,
            max: self.max,
            seen: Seen::new(),
        })
    }

    /// serde_json's `deserialize_any` never offers an enum ([`Checked`] reads enums
    /// through [`AsEnum`]); refused, `from_slice` falls back to the two passes.
    fn visit_enum<A: EnumAccess<'de>>(self, _data: A) -> Result<V::Value, A::Error> {
        Err(de::Error::custom("not read in one pass"))
    }
}

/// An enum read as any value: a string names a unit variant, an object of one member
/// a variant and its content.
struct AsEnum<V> {
    visitor: V,
    depth: usize,
    max: usize,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for AsEnum<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.visitor.visit_enum(StrDeserializer::<E>::new(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.visitor
            .visit_enum(BorrowedStrDeserializer::<E>::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.visitor.visit_enum(StringDeserializer::<E>::new(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let depth = enter(self.depth, self.max)?;
        self.visitor
            .visit_enum(MapAccessDeserializer::new(CheckedMap {
                map,
                depth,
                max: self.max,
                seen: Seen::new(),
            }))
    }
}

/// Passes [`Checked`] to the caller's seed.
struct CheckedSeed<S> {
    seed: S,
    depth: usize,
    max: usize,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for CheckedSeed<S> {
    type Value = S::Value;
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Checked {
            de,
            depth: self.depth,
            max: self.max,
        })
    }
}

/// An array's elements, each [`Checked`].
struct CheckedSeq<A> {
    seq: A,
    depth: usize,
    max: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for CheckedSeq<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.seq.next_element_seed(CheckedSeed {
            seed,
            depth: self.depth,
            max: self.max,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

/// An object's members: each name checked against the ones before it, each value
/// [`Checked`].
struct CheckedMap<'de, A> {
    map: A,
    depth: usize,
    max: usize,
    seen: Seen<'de>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for CheckedMap<'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.map.next_key_seed(KeySeed)? else {
            return Ok(None);
        };
        if !self.seen.insert(&key) {
            return Err(de::Error::custom(format_args!("{DUP}{key}")));
        }
        match key {
            Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::new(k)),
            Cow::Owned(k) => seed.deserialize(StringDeserializer::new(k)),
        }
        .map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(CheckedSeed {
            seed,
            depth: self.depth,
            max: self.max,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// Member names already in one object: the names read without unescaping (all of a
/// token's) kept inline and scanned, without allocating, for the handful an object
/// has; past [`INLINE_KEYS`] of them, or at the first unescaped name, all go into a
/// set, so a hostile object with thousands of members stays linear.
struct Seen<'de> {
    inline: [&'de str; INLINE_KEYS],
    len: usize,
    set: Option<HashSet<Cow<'de, str>>>,
}

const INLINE_KEYS: usize = 16;

impl<'de> Seen<'de> {
    fn new() -> Self {
        Seen {
            inline: [""; INLINE_KEYS],
            len: 0,
            set: None,
        }
    }

    /// Records `key`: false if it was already there.
    #[allow(
        clippy::ptr_arg,
        reason = "whether the name borrows from the input decides where it is kept"
    )]
    fn insert(&mut self, key: &Cow<'de, str>) -> bool {
        if let (None, Cow::Borrowed(name)) = (&self.set, key) {
            // Lengths first: most names differ in length, and a token's short names
            // (`iss`, `sub`, `exp`, …) compare faster byte by byte than through memcmp.
            let same = |seen: &&str| {
                seen.len() == name.len() && seen.bytes().zip(name.bytes()).all(|(a, b)| a == b)
            };
            let inline = self.inline.get(..self.len).unwrap_or_default();
            if inline.iter().any(same) {
                return false;
            }
            if let Some(slot) = self.inline.get_mut(self.len) {
                *slot = name;
                self.len += 1;
                return true;
            }
        }
        let inline = self.inline.get(..self.len).unwrap_or_default();
        let set = self
            .set
            .get_or_insert_with(|| inline.iter().map(|&k| Cow::Borrowed(k)).collect());
        set.insert(key.clone())
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

    // The one pass ([`from_slice`]). Each refusal is asserted on `one_pass` itself
    // too: `from_slice` falls back to the two passes on any refusal, which would hide
    // a one-pass check that is missing.

    use proptest::prelude::*;
    use serde_json::{Map, Value};

    const LIMITS: JsonLimits = JsonLimits { max_depth: 16 };

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Agent {
        name: String,
        #[serde(default)]
        scopes: Vec<String>,
    }

    #[derive(Debug, Clone, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Unit,
        Wrapped(Value),
        Pair(u8, u8),
        Named { inner: Option<Box<Kind>> },
    }

    /// A claims-like type: required and optional members, a nested struct, a list of
    /// them, arbitrary JSON, an enum; unknown members ignored.
    #[derive(Debug, Clone, PartialEq, Deserialize)]
    struct Claims {
        iss: String,
        #[serde(default)]
        exp: Option<i64>,
        #[serde(default)]
        agent: Option<Agent>,
        #[serde(default)]
        agents: Option<Vec<Agent>>,
        #[serde(default)]
        policy: Option<Value>,
        #[serde(default)]
        kind: Option<Kind>,
    }

    /// What the two passes say: [`check`], then serde_json.
    fn two_passes<'de, T: Deserialize<'de>>(
        text: &'de str,
        limits: JsonLimits,
    ) -> Result<T, ParseError> {
        check(text.as_bytes(), limits)?;
        serde_json::from_slice(text.as_bytes()).map_err(|e| ParseError::Type(without_position(&e)))
    }

    /// The one pass refuses `text` by itself, and `from_slice` says why as the two
    /// passes do.
    fn refused<'de, T: Deserialize<'de> + fmt::Debug>(text: &'de str) -> ParseError {
        assert!(
            one_pass::<T>(text.as_bytes(), LIMITS).is_err(),
            "one pass accepted {text}"
        );
        let e = from_slice::<T>(text.as_bytes(), LIMITS).unwrap_err();
        assert_eq!(Err(e.clone()), two_passes::<T>(text, LIMITS).map(|_| ()));
        e
    }

    fn dup(key: &str) -> ParseError {
        ParseError::Json(JsonError::DuplicateKey(key.into()))
    }

    #[test]
    fn one_pass_reads_what_two_passes_read() {
        let text = r#"{"iss":"a","exp":5,"agent":{"name":"n","scopes":["x","y"]},
            "agents":[{"name":"m"}],"policy":{"p":[1,{"q":null}]},"kind":{"wrapped":[1]},
            "unknown":{"deep":[{"k":1}]}}"#;
        let one: Claims = one_pass(text.as_bytes(), LIMITS).unwrap();
        assert_eq!(one, two_passes::<Claims>(text, LIMITS).unwrap());
        assert_eq!(one.agent.unwrap().scopes, ["x", "y"]);
        for kind in [
            r#""unit""#,
            r#"{"unit":null}"#,
            r#"{"pair":[1,2]}"#,
            r#"{"named":{"inner":{"named":{"inner":"unit"}}}}"#,
        ] {
            let text = format!(r#"{{"iss":"a","kind":{kind}}}"#);
            let one: Claims = one_pass(text.as_bytes(), LIMITS).unwrap();
            assert_eq!(one, two_passes::<Claims>(&text, LIMITS).unwrap(), "{kind}");
        }
        let value: Value = one_pass(text.as_bytes(), LIMITS).unwrap();
        assert_eq!(value, two_passes::<Value>(text, LIMITS).unwrap());
    }

    #[test]
    fn one_pass_refuses_duplicates_at_every_depth() {
        // Top level, a nested struct, a list of structs, arbitrary JSON, an enum's
        // content, and a member the type ignores.
        assert_eq!(refused::<Claims>(r#"{"iss":"a","iss":"b"}"#), dup("iss"));
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","agent":{"name":"n","name":"m"}}"#),
            dup("name")
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","agents":[{"name":"n"},{"name":"n","name":"m"}]}"#),
            dup("name")
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","policy":{"p":[{"q":1,"q":2}]}}"#),
            dup("q")
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","kind":{"wrapped":{"k":1,"k":2}}}"#),
            dup("k")
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","kind":{"named":{"inner":null,"inner":null}}}"#),
            dup("inner")
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","unknown":{"x":[{"k":1,"k":2}]}}"#),
            dup("k")
        );
        assert_eq!(refused::<Value>(r#"{"a":{"b":1,"b":1}}"#), dup("b"));
        assert_eq!(refused::<Map<String, Value>>(r#"{"a":1,"a":1}"#), dup("a"));
        // A duplicate of a member the type does not know is still one.
        assert_eq!(refused::<Claims>(r#"{"iss":"a","x":1,"x":2}"#), dup("x"));
    }

    #[test]
    fn one_pass_compares_names_after_unescaping() {
        // Escaped after plain, plain after escaped, both escaped, in a nested object.
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","\u0069ss":"b"}"#),
            dup("iss")
        );
        assert_eq!(
            refused::<Claims>(r#"{"\u0069ss":"a","iss":"b"}"#),
            dup("iss")
        );
        assert_eq!(refused::<Value>(r#"{"\u0061":1,"\u0061":2}"#), dup("a"));
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","agent":{"name":"n","n\u0061me":"m"}}"#),
            dup("name")
        );
        assert_eq!(refused::<Value>(r#"{"a":1,"\u0061":2}"#), dup("a"));
        // Names that only look alike are different names.
        let text = r#"{"a":1,"\u0041":2,"a\u0000":3}"#;
        let one: Value = one_pass(text.as_bytes(), LIMITS).unwrap();
        assert_eq!(one.as_object().unwrap().len(), 3);
    }

    #[test]
    fn one_pass_refuses_duplicates_past_the_inline_names() {
        for n in [15, 16, 17, 40] {
            for escaped in [false, true] {
                let mut doc = String::from(r#"{"iss":"a","#);
                for i in 0..n {
                    doc.push_str(&format!("\"k{i}\":{i},"));
                }
                // The first name again, last, plain or escaped.
                doc.push_str(if escaped {
                    r#""\u006b0":0}"#
                } else {
                    r#""k0":0}"#
                });
                assert_eq!(refused::<Claims>(&doc), dup("k0"), "{n} {escaped}");
                assert_eq!(refused::<Value>(&doc), dup("k0"), "{n} {escaped}");
            }
        }
        // An escaped name early, then many plain ones, then its duplicate.
        let mut doc = String::from(r#"{"\u0078":0,"#);
        for i in 0..20 {
            doc.push_str(&format!("\"k{i}\":{i},"));
        }
        doc.push_str(r#""x":1}"#);
        assert_eq!(refused::<Value>(&doc), dup("x"));
    }

    #[test]
    fn one_pass_bounds_depth_at_and_past_the_limit() {
        let nested = |n: usize| "[".repeat(n) + &"]".repeat(n);
        // The top-level object is one level: 15 more arrays are 16.
        for (member, depth_ok) in [(15, true), (16, false), (100, false)] {
            for field in ["policy", "unknown"] {
                let text = format!(r#"{{"iss":"a","{field}":{}}}"#, nested(member));
                let one = one_pass::<Claims>(text.as_bytes(), LIMITS);
                assert_eq!(one.is_ok(), depth_ok, "{field} {member}");
                if depth_ok {
                    from_slice::<Claims>(text.as_bytes(), LIMITS).unwrap();
                } else {
                    assert_eq!(
                        refused::<Claims>(&text),
                        ParseError::Json(JsonError::TooDeep(16))
                    );
                }
            }
        }
        let objects = |n: usize| "{\"a\":".repeat(n) + "1" + &"}".repeat(n);
        one_pass::<Value>(objects(16).as_bytes(), LIMITS).unwrap();
        assert_eq!(
            refused::<Value>(&objects(17)),
            ParseError::Json(JsonError::TooDeep(16))
        );
        // Through an enum's content: the enum's object is a level.
        let kinds = |n: usize| "{\"named\":{\"inner\":".repeat(n) + "\"unit\"" + &"}}".repeat(n);
        let text = |n: usize| format!(r#"{{"iss":"a","kind":{}}}"#, kinds(n));
        one_pass::<Claims>(text(7).as_bytes(), LIMITS).unwrap();
        assert_eq!(
            refused::<Claims>(&text(8)),
            ParseError::Json(JsonError::TooDeep(16))
        );
        // A zero bound refuses any container, even an empty one.
        let zero = JsonLimits { max_depth: 0 };
        assert!(one_pass::<Value>(b"{}", zero).is_err());
        assert_eq!(
            from_slice::<Value>(b"[]", zero),
            Err(ParseError::Json(JsonError::TooDeep(0)))
        );
        assert_eq!(from_slice::<Value>(b"1", zero), Ok(Value::from(1)));
    }

    #[test]
    fn one_pass_errors_come_in_the_two_passes_order() {
        // A type error before a duplicate or a syntax error: the JSON error wins, as
        // when the JSON was checked first.
        assert_eq!(
            refused::<Claims>(r#"{"iss":1,"x":{"k":1,"k":2}}"#),
            dup("k")
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":1} x"#),
            ParseError::Json(JsonError::Syntax)
        );
        // Only a type error: serde's message, without a position.
        assert_eq!(
            refused::<Claims>(r#"{"exp":1}"#),
            ParseError::Type("missing field `iss`".into())
        );
        assert_eq!(
            refused::<Claims>(r#"{"iss":"a","kind":{"unit":null,"pair":[1,2]}}"#),
            two_passes::<Claims>(r#"{"iss":"a","kind":{"unit":null,"pair":[1,2]}}"#, LIMITS)
                .unwrap_err()
        );
        assert!(matches!(
            refused::<Claims>(r#"{"iss":"a","kind":{}}"#),
            ParseError::Type(_)
        ));
    }

    #[test]
    fn raw_values_are_read_by_the_two_passes() {
        use serde_json::value::RawValue;
        // The one pass does not read a RawValue (it would take the text unchecked).
        assert!(one_pass::<Box<RawValue>>(br#"{"a":1}"#, LIMITS).is_err());
        let raw: Box<RawValue> = from_slice(br#"{"a":1}"#, LIMITS).unwrap();
        assert_eq!(raw.get(), r#"{"a":1}"#);
        assert_eq!(
            from_slice::<Box<RawValue>>(br#"{"a":1,"a":2}"#, LIMITS).unwrap_err(),
            dup("a")
        );
    }

    /// JSON-like text: objects and arrays over a few names (some escaped, some
    /// colliding after unescaping) and scalars, sometimes broken.
    fn doc() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("\"iss\""),
            Just("\"\\u0069ss\""),
            Just("\"exp\""),
            Just("\"agent\""),
            Just("\"name\""),
            Just("\"policy\""),
            Just("\"kind\""),
            Just("\"wrapped\""),
            Just("\"unit\""),
            Just("\"x\""),
        ];
        let leaf = prop_oneof![
            Just("1".to_owned()),
            Just("\"a\"".to_owned()),
            Just("\"unit\"".to_owned()),
            Just("null".to_owned()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
        ];
        let value = leaf.prop_recursive(6, 48, 5, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(","))),
                proptest::collection::vec((name.clone(), inner), 0..5).prop_map(|members| {
                    let members: Vec<String> =
                        members.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        });
        (
            value,
            prop_oneof![Just(""), Just(" "), Just("x"), Just("}")],
        )
            .prop_map(|(v, tail)| v + tail)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn one_pass_accepts_exactly_what_two_passes_accept(text in doc(), max in 0usize..6) {
            let limits = JsonLimits { max_depth: max };
            let value = two_passes::<Value>(&text, limits);
            prop_assert_eq!(one_pass::<Value>(text.as_bytes(), limits).ok(), value.clone().ok());
            prop_assert_eq!(from_slice::<Value>(text.as_bytes(), limits), value);
            let claims = two_passes::<Claims>(&text, limits);
            prop_assert_eq!(one_pass::<Claims>(text.as_bytes(), limits).ok(), claims.clone().ok());
            prop_assert_eq!(from_slice::<Claims>(text.as_bytes(), limits), claims);
        }
    }
}
