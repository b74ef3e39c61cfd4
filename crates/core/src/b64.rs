//! Strict base64url without padding (RFC 7515 §2, RFC 4648 §5).
//!
//! Strict means: only the 64 URL-safe characters, no `=` padding, no whitespace, and
//! no non-canonical final character (unused low bits must be zero), so every byte string
//! has exactly one accepted encoding. Token segments are public, so the decoder need
//! not be constant-time; the `base64` crate's URL-safe, no-padding engine is strict in
//! exactly these ways by default.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A base64url segment that is not strictly canonical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid base64url (padding, a character outside the URL-safe alphabet, or non-canonical bits)"
)]
pub struct Base64Error;

/// Encodes `bytes` as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes strict unpadded base64url.
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| Base64Error)
}

/// Decodes strict unpadded base64url into `out`, as strictly as [`decode`]: the decoded
/// bytes, or `Ok(None)` if `out` may be too small (it must hold the decoder's
/// estimate, up to two bytes more than the result), without allocating.
pub fn decode_into<'o>(text: &str, out: &'o mut [u8]) -> Result<Option<&'o [u8]>, Base64Error> {
    match URL_SAFE_NO_PAD.decode_slice(text, out) {
        Ok(len) => Ok(out.get(..len)),
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => Ok(None),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(Base64Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn decode_into_agrees_with_decode() {
        let mut buf = [0u8; 64];
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let text = encode(&bytes);
            assert_eq!(decode_into(&text, &mut buf).unwrap(), Some(&bytes[..]));
        }
        for bad in ["YQ==", "YQ=", "Y Q", "+/8", "YQ\n", "YR", "YWJjZ"] {
            assert_eq!(decode_into(bad, &mut buf), Err(Base64Error), "{bad}");
            assert_eq!(decode(bad), Err(Base64Error), "{bad}");
        }
        // Too small a buffer is not an error: the caller decodes into a Vec instead.
        let text = encode(&[7; 100]);
        assert_eq!(decode_into(&text, &mut buf), Ok(None));
        // An invalid segment is invalid whatever the buffer.
        let mut small = [0u8; 1];
        assert_eq!(decode_into("YR", &mut small), Err(Base64Error));
    }

    #[test]
    fn rejects_padding_whitespace_and_standard_alphabet() {
        assert_eq!(decode("YQ=="), Err(Base64Error));
        assert_eq!(decode("YQ="), Err(Base64Error));
        assert_eq!(decode("Y Q"), Err(Base64Error));
        assert_eq!(decode("+/8"), Err(Base64Error));
        assert_eq!(decode("YQ\n"), Err(Base64Error));
    }

    #[test]
    fn rejects_non_canonical_trailing_bits() {
        // "YQ" is the canonical encoding of "a"; "YR" carries a set unused bit.
        assert_eq!(decode("YQ").unwrap(), b"a");
        assert_eq!(decode("YR"), Err(Base64Error));
        // A single leftover character can never be valid.
        assert_eq!(decode("YWJjZ"), Err(Base64Error));
    }
}
