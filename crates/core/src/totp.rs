//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), for people's
//! second factor (issue 18), and the `otpauth://` enrolment URI authenticator apps
//! read. HMAC from aws-lc-rs. The time is the caller's (core reads no clock), and
//! so is the secret's randomness.
//!
//! The registry enrols SHA-1, 6 digits, 30-second steps: the parameters every
//! authenticator app supports (RFC 6238 §4 allows SHA-256/512, which many apps
//! ignore in the URI and then show wrong codes). SHA-256 and SHA-512 are here for the
//! RFC's own test vectors.

use aws_lc_rs::hmac;

/// The HMAC behind the codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAlg {
    /// HMAC-SHA-1 (the default of RFC 6238 and of every app).
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl TotpAlg {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            TotpAlg::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            TotpAlg::Sha256 => hmac::HMAC_SHA256,
            TotpAlg::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// The name the `otpauth://` URI uses.
    pub fn uri_name(self) -> &'static str {
        match self {
            TotpAlg::Sha1 => "SHA1",
            TotpAlg::Sha256 => "SHA256",
            TotpAlg::Sha512 => "SHA512",
        }
    }
}

/// Seconds per time step (RFC 6238's X; 30 s everywhere).
pub const STEP_S: i64 = 30;
/// Digits of the codes the registry enrols.
pub const DIGITS: u32 = 6;
/// Bytes of a secret the registry makes (160 bits, RFC 4226 §4's recommendation).
pub const SECRET_BYTES: usize = 20;

/// RFC 4226 §5.3: the HOTP value of `counter`, `digits` long (6 to 9).
pub fn hotp(secret: &[u8], counter: u64, digits: u32, alg: TotpAlg) -> u32 {
    let key = hmac::Key::new(alg.hmac(), secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // Dynamic truncation: the low nibble of the last byte is the offset.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(|b| u32::from_be_bytes(b) & 0x7fff_ffff)
        .unwrap_or(0);
    word % 10u32.pow(digits.clamp(6, 9))
}

/// The time step of `time_s` (RFC 6238's T, with T0 = 0); negative times are step 0.
pub fn step_of(time_s: i64) -> u64 {
    u64::try_from(time_s.max(0) / STEP_S).unwrap_or(0)
}

/// The TOTP value at `time_s` with `step_s`-second steps.
pub fn totp_at(secret: &[u8], time_s: i64, step_s: i64, digits: u32, alg: TotpAlg) -> u32 {
    let t = u64::try_from(time_s.max(0) / step_s.max(1)).unwrap_or(0);
    hotp(secret, t, digits, alg)
}

/// The code as it is shown: zero-padded to `digits`.
pub fn format_code(code: u32, digits: u32) -> String {
    format!("{code:0width$}", width = digits as usize)
}

/// Checks a 6-digit code against the registry's parameters at `now_s`, allowing one
/// step of clock drift either way (RFC 6238 §5.2). Returns the step it matched, so
/// the caller refuses that step and earlier ones next time (a code is single use).
/// Steps at or before `last_used` never match. Every candidate is compared in
/// constant time.
pub fn check(secret: &[u8], code: &str, now_s: i64, last_used: Option<u64>) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(now_s);
    let mut matched = None;
    for step in [now.saturating_sub(1), now, now.saturating_add(1)] {
        let want = format_code(hotp(secret, step, DIGITS, TotpAlg::Sha1), DIGITS);
        let fresh = last_used.is_none_or(|used| step > used);
        if crate::ct_eq(want.as_bytes(), code.as_bytes()) && fresh && matched.is_none() {
            matched = Some(step);
        }
    }
    matched
}

/// RFC 4648 base32 (upper case, no padding): how `otpauth://` carries the secret.
pub fn base32_encode(bytes: &[u8]) -> String {
    crate::ids::base32(bytes).to_ascii_uppercase()
}

/// Reads RFC 4648 base32 (either case, padding and spaces ignored); `None` for any
/// other character or a non-canonical tail.
pub fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in text.bytes().filter(|c| !matches!(c, b'=' | b' ')) {
        let v = match c.to_ascii_uppercase() {
            b @ b'A'..=b'Z' => b - b'A',
            b @ b'2'..=b'7' => b - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    // Leftover bits must be zero padding.
    (acc == 0).then_some(out)
}

/// The enrolment URI (Google Authenticator's Key Uri Format): `otpauth://totp/
/// ISSUER:ACCOUNT?secret=…&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm={}&digits={}&period={}",
        percent_encode(issuer),
        percent_encode(account),
        base32_encode(secret),
        percent_encode(issuer),
        TotpAlg::Sha1.uri_name(),
        DIGITS,
        STEP_S
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4226_appendix_d_hotp_values() {
        // RFC 4226 Appendix D: secret "12345678901234567890", counters 0..9.
        let want = [
            755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489,
        ];
        for (c, w) in want.iter().enumerate() {
            assert_eq!(
                hotp(b"12345678901234567890", c as u64, 6, TotpAlg::Sha1),
                *w
            );
        }
    }

    #[test]
    fn check_allows_one_step_of_drift_and_refuses_reuse() {
        let secret = b"12345678901234567890";
        let now = 1_111_111_111;
        let code = |t: i64| format_code(totp_at(secret, t, STEP_S, 6, TotpAlg::Sha1), 6);
        assert_eq!(check(secret, &code(now), now, None), Some(step_of(now)));
        assert!(check(secret, &code(now - 30), now, None).is_some());
        assert!(check(secret, &code(now + 30), now, None).is_some());
        assert_eq!(check(secret, &code(now - 90), now, None), None);
        // Single use: the step matched is refused afterwards, and earlier ones too.
        assert_eq!(check(secret, &code(now), now, Some(step_of(now))), None);
        assert_eq!(
            check(secret, &code(now - 30), now, Some(step_of(now))),
            None
        );
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(check(secret, bad, now, None), None, "{bad}");
        }
    }

    #[test]
    fn base32_round_trips_and_refuses_garbage() {
        // RFC 4648 §10.
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI======").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(base32_decode("MZXW6YTBO1"), None);
        assert_eq!(base32_decode("MZXW6YTBOJ"), None, "non-zero padding bits");
        let s = [0xa5u8; 20];
        assert_eq!(base32_decode(&base32_encode(&s)).unwrap(), s);
    }

    #[test]
    fn otpauth_uri_names_every_parameter() {
        let uri = otpauth_uri("Bonafide reg", "ann@example.com", b"foobar");
        assert_eq!(
            uri,
            "otpauth://totp/Bonafide%20reg:ann%40example.com?secret=MZXW6YTBOI&issuer=Bonafide%20reg&algorithm=SHA1&digits=6&period=30"
        );
    }
}
