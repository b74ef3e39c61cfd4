//! The registry's private keys at rest (issue 16 item 6): sealed with AES-256-GCM
//! under a key-encryption key (KEK) that is never stored with them, so a copy of the
//! database alone cannot sign.
//!
//! Format: `bfk-sealed-v1:` + base64url(nonce ‖ ciphertext ‖ tag), with a random
//! 96-bit nonce per seal (aws-lc-rs's `RandomizedNonceKey`; a KEK seals a handful of
//! keys in its life, far below GCM's random-nonce bound). The associated data names the
//! row the key belongs to (its [`sealed identity`](Kek::seal)), so a sealed key moved
//! to another row does not open. The version prefix leaves room for another scheme.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};

use crate::b64;

/// Prefix of every sealed value of this version.
pub const SEALED_V1: &str = "bfk-sealed-v1:";
/// Prefix of a sealed value of any version (what tells sealed from plaintext).
const SEALED_ANY: &str = "bfk-sealed-";
/// Length of a KEK, bytes.
pub const KEK_LEN: usize = 32;
/// Domain separation of the associated data: nothing else Bonafide seals can be
/// mistaken for a key row.
const AAD_PREFIX: &[u8] = b"bonafide sealed private key v1\n";
const TAG_LEN: usize = 16;

/// Why sealing or opening failed. None of them carries secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A KEK must be exactly 32 bytes.
    #[error("a key-encryption key is {KEK_LEN} bytes, not {0}")]
    KekLength(usize),
    /// The value is not sealed at all (plaintext).
    #[error("the value is not sealed")]
    NotSealed,
    /// Sealed by a version this build does not know.
    #[error("sealed with an unknown version")]
    UnknownVersion,
    /// Not valid base64url, or too short to hold a nonce and a tag.
    #[error("the sealed value is malformed")]
    Malformed,
    /// Authentication failed: another KEK, another row's key, or altered bytes.
    #[error("the sealed value does not open with this key-encryption key for this row")]
    DoesNotOpen,
    /// The opened bytes are not UTF-8 text.
    #[error("the opened value is not text")]
    NotText,
    /// The system random source or AES-GCM failed.
    #[error("sealing failed")]
    Crypto,
}

/// A key-encryption key. `Debug` shows nothing of it.
pub struct Kek {
    key: RandomizedNonceKey,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

/// An opened private key's text. `Debug` is redacted.
pub struct Opened(String);

impl Opened {
    /// The text (PKCS#8 PEM, or a C2SP signer key string).
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Opened(<redacted>)")
    }
}

/// Whether `stored` is a sealed value (of any version), as opposed to plaintext from a
/// database made before sealing.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_ANY)
}

/// 32 fresh random bytes for a new KEK.
pub fn random_kek_bytes() -> Result<[u8; KEK_LEN], SealError> {
    let mut bytes = [0u8; KEK_LEN];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| SealError::Crypto)?;
    Ok(bytes)
}

fn aad(identity: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + identity.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(identity.as_bytes());
    aad
}

impl Kek {
    /// A KEK from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != KEK_LEN {
            return Err(SealError::KekLength(bytes.len()));
        }
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::Crypto)?;
        Ok(Kek { key })
    }

    /// Seals `plaintext` for the row named by `identity` (e.g. `signing-key/<kid>`).
    pub fn seal(&self, identity: &str, plaintext: &str) -> Result<String, SealError> {
        let mut in_out = plaintext.as_bytes().to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad(identity)), &mut in_out)
            .map_err(|_| SealError::Crypto)?;
        let mut blob = Vec::with_capacity(NONCE_LEN + in_out.len());
        blob.extend_from_slice(nonce.as_ref());
        blob.extend_from_slice(&in_out);
        Ok(format!("{SEALED_V1}{}", b64::encode(&blob)))
    }

    /// Opens a value sealed for the row named by `identity`.
    pub fn open(&self, identity: &str, sealed: &str) -> Result<Opened, SealError> {
        let Some(body) = sealed.strip_prefix(SEALED_V1) else {
            return Err(if is_sealed(sealed) {
                SealError::UnknownVersion
            } else {
                SealError::NotSealed
            });
        };
        let mut blob = b64::decode(body).map_err(|_| SealError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed);
        }
        let mut in_out = blob.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&blob).map_err(|_| SealError::Malformed)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad(identity)), &mut in_out)
            .map_err(|_| SealError::DoesNotOpen)?;
        let text = std::str::from_utf8(plain).map_err(|_| SealError::NotText)?;
        Ok(Opened(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> Kek {
        Kek::from_bytes(&random_kek_bytes().unwrap()).unwrap()
    }

    #[test]
    fn round_trips_with_a_fresh_nonce_each_time() {
        let k = kek();
        let a = k
            .seal("signing-key/abc", "-----BEGIN PRIVATE KEY-----")
            .unwrap();
        let b = k
            .seal("signing-key/abc", "-----BEGIN PRIVATE KEY-----")
            .unwrap();
        assert!(a.starts_with(SEALED_V1) && is_sealed(&a));
        assert_ne!(a, b, "a random nonce per seal");
        assert!(!a.contains("PRIVATE KEY"));
        for s in [&a, &b] {
            let opened = k.open("signing-key/abc", s).unwrap();
            assert_eq!(opened.expose_secret(), "-----BEGIN PRIVATE KEY-----");
        }
        assert_eq!(
            format!("{:?}", k.open("signing-key/abc", &a).unwrap()),
            "Opened(<redacted>)"
        );
        assert_eq!(format!("{k:?}"), "Kek(<redacted>)");
    }

    #[test]
    fn refuses_another_kek_another_row_and_altered_bytes() {
        let k = kek();
        let sealed = k.seal("signing-key/abc", "secret").unwrap();
        assert_eq!(
            kek().open("signing-key/abc", &sealed).unwrap_err(),
            SealError::DoesNotOpen
        );
        // Swapped into another row: the associated data differs.
        assert_eq!(
            k.open("signing-key/abd", &sealed).unwrap_err(),
            SealError::DoesNotOpen
        );
        assert_eq!(
            k.open("receipt-key", &sealed).unwrap_err(),
            SealError::DoesNotOpen
        );
        // Every byte of nonce, ciphertext and tag is authenticated.
        let blob = b64::decode(sealed.strip_prefix(SEALED_V1).unwrap()).unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            let text = format!("{SEALED_V1}{}", b64::encode(&bad));
            assert_eq!(
                k.open("signing-key/abc", &text).unwrap_err(),
                SealError::DoesNotOpen
            );
        }
        // Cut short, not base64url, another version, plaintext.
        let short = format!(
            "{SEALED_V1}{}",
            b64::encode(&blob[..NONCE_LEN + TAG_LEN - 1])
        );
        assert_eq!(
            k.open("signing-key/abc", &short).unwrap_err(),
            SealError::Malformed
        );
        assert_eq!(
            k.open("x", "bfk-sealed-v1:***").unwrap_err(),
            SealError::Malformed
        );
        assert_eq!(
            k.open("x", "bfk-sealed-v9:AAAA").unwrap_err(),
            SealError::UnknownVersion
        );
        assert_eq!(
            k.open("x", "-----BEGIN PRIVATE KEY-----").unwrap_err(),
            SealError::NotSealed
        );
    }

    #[test]
    fn a_kek_is_32_bytes() {
        assert_eq!(
            Kek::from_bytes(&[0; 31]).unwrap_err(),
            SealError::KekLength(31)
        );
        assert_eq!(
            Kek::from_bytes(&[0; 33]).unwrap_err(),
            SealError::KekLength(33)
        );
        assert!(Kek::from_bytes(&[0; 32]).is_ok());
    }
}
