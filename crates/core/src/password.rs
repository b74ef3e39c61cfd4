//! The password rule for people who log in (issue 18), per NIST SP 800-63B-4 §3.1.1.2:
//! length only, no composition rules, every Unicode character allowed and counted as
//! one, no hint, no periodic change. Hashing (argon2id) is the server's: core only
//! says whether a password is acceptable.

/// Fewest characters (Unicode code points). 800-63B-4 asks 15 for a password that is
/// the only factor; a person's 2FA is optional, so 15 it is.
pub const MIN_CHARS: usize = 15;
/// Most characters; 800-63B asks that at least 64 be allowed.
pub const MAX_CHARS: usize = 128;

/// Why a password was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Fewer than [`MIN_CHARS`] characters.
    #[error("the password must be at least {MIN_CHARS} characters (it has {0})")]
    TooShort(usize),
    /// More than [`MAX_CHARS`] characters.
    #[error("the password must be at most {MAX_CHARS} characters (it has {0})")]
    TooLong(usize),
    /// It is the account's own email address (800-63B's context-specific words).
    #[error("the password must not be your email address")]
    IsEmail,
    /// It contains NUL, which some clients cut passwords at.
    #[error("the password must not contain NUL characters")]
    Nul,
}

/// Checks a new password for the account `email`.
pub fn check(password: &str, email: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError::TooShort(chars));
    }
    if chars > MAX_CHARS {
        return Err(PasswordError::TooLong(chars));
    }
    if password.contains('\0') {
        return Err(PasswordError::Nul);
    }
    if password.trim().eq_ignore_ascii_case(email.trim()) {
        return Err(PasswordError::IsEmail);
    }
    Ok(())
}

/// An email address as accounts key it: trimmed, ASCII-lowercased, with one `@`,
/// a non-empty local part and a domain with a dot; at most 254 bytes (RFC 5321's
/// path limit). `None` for anything else.
pub fn normalise_email(email: &str) -> Option<String> {
    let e = email.trim().to_ascii_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && e.len() <= 254
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && e.chars().all(|c| !c.is_whitespace() && !c.is_control());
    ok.then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_only_counted_in_code_points() {
        assert_eq!(check("short", "a@b.c"), Err(PasswordError::TooShort(5)));
        assert!(check("correct horse battery", "a@b.c").is_ok());
        // No composition rule: all lower case, all digits, all the same are fine.
        assert!(check("aaaaaaaaaaaaaaa", "a@b.c").is_ok());
        // 15 code points of 3 bytes each: counted as 15.
        assert!(check(&"é".repeat(15), "a@b.c").is_ok());
        assert_eq!(
            check(&"é".repeat(14), "a@b.c"),
            Err(PasswordError::TooShort(14))
        );
        assert!(check(&"x".repeat(128), "a@b.c").is_ok());
        assert_eq!(
            check(&"x".repeat(129), "a@b.c"),
            Err(PasswordError::TooLong(129))
        );
        assert_eq!(
            check("ann.longname@example.com", "Ann.Longname@example.com"),
            Err(PasswordError::IsEmail)
        );
        assert_eq!(check("fifteen chars\0!!", "a@b.c"), Err(PasswordError::Nul));
    }

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalise_email(" Ann@Example.COM ").as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "ann@example",
            "a b@c.d",
            "a@.c",
        ] {
            assert_eq!(normalise_email(bad), None, "{bad}");
        }
    }
}
