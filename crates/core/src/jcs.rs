//! RFC 8785 (JCS) canonical JSON written directly, for the two objects every verify
//! decision canonicalises (its audit entry and its request's facts): a general
//! canonicalizer sorts every object through a map, and costs several microseconds a
//! decision. The writers call [`Object`] with their members already in RFC 8785 order
//! (byte order of their names, which are ASCII), and each writer is held byte for byte
//! to the general canonicalizer by a property test.

/// A JSON object being written: members go in the order they are given.
#[derive(Debug)]
pub(crate) struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Object<'a> {
    /// Opens an object on `out`.
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Object { out, first: true }
    }

    /// Starts member `name` (ASCII, needing no escape) and hands back the output for
    /// its value.
    pub(crate) fn member(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    /// Member `name` with a string value.
    pub(crate) fn string(&mut self, name: &str, value: &str) {
        string(self.member(name), value);
    }

    /// Member `name` with a string value, left out when `None`.
    pub(crate) fn opt_string(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.string(name, v);
        }
    }

    /// Member `name` with an array of strings, left out when empty.
    pub(crate) fn strings<'s>(&mut self, name: &str, values: impl IntoIterator<Item = &'s str>) {
        let mut values = values.into_iter().peekable();
        if values.peek().is_none() {
            return;
        }
        let out = self.member(name);
        out.push(b'[');
        for (i, v) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, v);
        }
        out.push(b']');
    }

    /// Closes the object.
    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON string as RFC 8785 §3.2.2.2 writes it (ECMAScript `JSON.stringify`): `"` and
/// `\` escaped, the five control characters with a short form by it, the other
/// controls below U+0020 as `\u00xx` in lowercase hex, everything else as is.
pub(crate) fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        // Escaped bytes are ASCII: the run before one ends on a character boundary.
        out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
        if short.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'));
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Any text, as the general canonicalizer writes it.
        #[test]
        fn strings_are_written_as_jcs_writes_them(s in "(?s).{0,40}") {
            let mut out = Vec::new();
            string(&mut out, &s);
            proptest::prop_assert_eq!(out, serde_json_canonicalizer::to_vec(&s).unwrap());
        }
    }

    #[test]
    fn every_control_character_and_the_specials() {
        let s: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\/\u{7f}\u{2028}é😀".chars())
            .collect();
        let mut out = Vec::new();
        string(&mut out, &s);
        assert_eq!(out, serde_json_canonicalizer::to_vec(&s).unwrap());
    }
}
