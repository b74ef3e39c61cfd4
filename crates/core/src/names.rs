//! Names people read: which characters a name or a reason may hold, and when two
//! issuer names are the same name.
//!
//! A name is shown to people (answers, audit entries, the CLI) who decide by it, so
//! what they see must be what is stored: control characters, invisible characters
//! (zero-width spaces and joiners, the byte-order mark, word joiners), bidirectional
//! controls (which reorder what follows them: `moc.elpmaxe` shown as
//! `example.com`) and line or paragraph separators are refused ([`forbidden_char`]).
//!
//! An issuer's name also picks its keys for AgentOAuth consent tokens, whose `iss`
//! may be the name or `https://` followed by it. Names that differ only by that
//! prefix, by case or by a trailing dot are therefore one name
//! ([`issuer_name_key`]): the registry holds at most one issuer per key.

/// True for a character no name or reason may hold: Unicode controls (`Cc`), the
/// zero-width and directional marks U+200B–U+200F, the bidirectional embeddings and
/// overrides U+202A–U+202E and isolates U+2066–U+2069, the Arabic letter mark U+061C,
/// the invisible word joiner and operators U+2060–U+2064, the byte-order mark U+FEFF,
/// and the line and paragraph separators U+2028 and U+2029.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// The first character of `text` that [`is_forbidden`], if any.
pub fn forbidden_char(text: &str) -> Option<char> {
    text.chars().find(|&c| is_forbidden(c))
}

/// How a forbidden character is named in an error message: `U+200B` (the character
/// itself would be invisible, or reorder the message).
pub fn describe(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

/// The key under which an issuer name is unique: lowercased, without a leading
/// `https://` or `http://` (in any case) and without trailing dots or slashes.
/// `Example.COM.`, `https://example.com/`, `http://example.com` and `example.com` are
/// one name.
pub fn issuer_name_key(name: &str) -> String {
    let lower = name.to_lowercase();
    let bare = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    bare.trim_end_matches(['.', '/']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_names_that_differ_by_scheme_case_dots_or_slashes_are_one() {
        for twin in [
            "example.com",
            "Example.COM.",
            "https://example.com",
            "HTTPS://example.com/",
            "http://example.com",
            "example.com./",
        ] {
            assert_eq!(issuer_name_key(twin), "example.com", "{twin}");
        }
        assert_ne!(issuer_name_key("example.co"), "example.com");
        assert_ne!(issuer_name_key("ftp://example.com"), "example.com");
    }

    #[test]
    fn invisible_bidi_separator_and_control_characters_are_forbidden() {
        let listed = (0x200B..=0x200F)
            .chain(0x202A..=0x202E)
            .chain(0x2066..=0x2069)
            .chain([
                0xFEFF, 0x2028, 0x2029, 0x061C, 0x2060, 0x0000, 0x001B, 0x007F,
            ]);
        for cp in listed {
            let c = char::from_u32(cp).unwrap_or_default();
            assert!(is_forbidden(c), "{}", describe(c));
            let text = format!("pay{c}bot");
            assert_eq!(forbidden_char(&text), Some(c), "{}", describe(c));
        }
        for ok in [
            "PayBot",
            "apexwealth.com",
            "Zürich Bank",
            "東京",
            "O'Brien & Co — payments",
            "emoji 🤖",
        ] {
            assert_eq!(forbidden_char(ok), None, "{ok}");
        }
        assert_eq!(describe('\u{202E}'), "U+202E");
    }

    #[test]
    fn issuer_names_differing_by_https_case_or_trailing_dot_are_one_name() {
        let key = issuer_name_key("example.com");
        for same in [
            "Example.COM",
            "example.com.",
            "https://example.com",
            "HTTPS://Example.Com.",
            "example.com..",
            "http://example.com",
            "example.com/",
        ] {
            assert_eq!(issuer_name_key(same), key, "{same}");
        }
        for other in ["example.org", "www.example.com"] {
            assert_ne!(issuer_name_key(other), key, "{other}");
        }
        // Unicode case too.
        assert_eq!(
            issuer_name_key("ÄPFEL.example"),
            issuer_name_key("äpfel.example")
        );
    }
}
