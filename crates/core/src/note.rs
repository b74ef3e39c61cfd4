//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 keys, and the transparency
//! log checkpoints they carry (`c2sp.org/tlog-checkpoint`).
//!
//! The audit log publishes its tree head as a checkpoint signed with this module, in
//! the wire format of Go's `golang.org/x/mod/sumdb/note`, so Go's `note.Open`, the
//! transparency-dev witnesses and Bonafide read each other's notes and keys.
//!
//! A signed note (signed-note §Format) is a text ending in a newline, a blank line,
//! then one or more signature lines `— <key name> <base64(key ID ‖ signature)>`.
//! [`open_note`] follows the spec's verifier rules (signed-note §Signatures): lines
//! from unknown keys are ignored, a line from a known key must verify or the whole
//! note is refused, and at least one known key must have signed. It is stricter than
//! the spec and than Go in three documented ways: base64 must be canonical, a known
//! key may sign only once (Go silently skips the second line unverified), and the note
//! is bounded by [`MAX_NOTE_BYTES`] and [`MAX_SIGNATURES`].
//!
//! This module is not a witness or a log client: it checks signatures and syntax, not
//! consistency between checkpoints (that is the Merkle proofs of [`crate::merkle`]).
//! Only signature type `0x01` (Ed25519) is implemented; other types are ignored as
//! unknown keys when opening, and refused in key strings.

use std::fmt;

use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::sha256;

/// Largest signed note [`open_note`] reads and [`sign_note`] writes, in bytes (1 MiB).
/// Checkpoints are a few hundred bytes; the bound only stops a hostile peer from
/// making a verifier scan or allocate without limit.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

/// Most signature lines a note may carry (Go's limit). The spec asks verifiers to
/// accept at least 16 (signed-note §Format). Lines are counted before any signature
/// is checked, so a note costs at most one Ed25519 verification per known key.
pub const MAX_SIGNATURES: usize = 100;

/// Signature type identifier byte of Ed25519 (signed-note §Signature types).
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// What begins every signature line: em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// What begins a signer key string (Go's `note.GenerateKey` format).
const PRIVATE_PREFIX: &str = "PRIVATE+KEY+";
/// Length of an Ed25519 public key and of its seed.
const ED25519_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
const ED25519_SIG_LEN: usize = 64;
/// Longest piece of untrusted input copied into an error message, in characters.
const SHOWN_CHARS: usize = 64;

/// What went wrong with a note, a note key or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The note is larger than [`MAX_NOTE_BYTES`].
    #[error("note of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the note, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An ASCII control character other than newline (signed-note §Format); this is
    /// also how CRLF line endings fail.
    #[error("control character at byte {offset} (only newline is allowed)")]
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// No blank line separates the text from the signature lines.
    #[error("no blank line separates the note text from its signatures")]
    MissingBlankLine,
    /// The note does not end in a newline, or has nothing after the blank line.
    #[error("the note does not end in a complete signature line")]
    MissingSignatureLine,
    /// A signature line does not have the form `— <key name> <base64>`.
    #[error("signature line {line} is malformed: {problem}")]
    MalformedSignatureLine {
        /// 1-based index among the signature lines.
        line: usize,
        /// What is wrong with it.
        problem: LineProblem,
    },
    /// More signature lines than [`MAX_SIGNATURES`].
    #[error("more than {max} signature lines")]
    TooManySignatures {
        /// The limit.
        max: usize,
    },
    /// A known key signed on more than one line.
    #[error("key `{name}+{key_hash:08x}` signed more than once")]
    DuplicateSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_hash: u32,
    },
    /// A signature line names a known key (name and key ID) but does not verify.
    #[error("invalid signature for key `{name}+{key_hash:08x}`")]
    InvalidSignature {
        /// Key name.
        name: String,
        /// Key ID.
        key_hash: u32,
    },
    /// No signature from a known key (signed-note §Signatures: the note MUST be refused).
    #[error("no signature from a known key")]
    NoVerifiedSignature,
    /// Two of the given verifiers share a key name and key ID.
    #[error("more than one verifier for key `{name}+{key_hash:08x}`")]
    AmbiguousVerifier {
        /// Key name.
        name: String,
        /// Key ID.
        key_hash: u32,
    },
    /// Text to sign is empty or does not end in a newline.
    #[error("note text must end in a newline")]
    TextNotNewlineTerminated,
    /// [`sign_note`] was given no signer, or signers sharing a key.
    #[error("a note needs at least one signer and at most one signature per key")]
    BadSignerList,
    /// A key name is empty or has a Unicode space or `+` (signed-note §Format).
    #[error("invalid key name `{0}` (non-empty, no spaces, no `+`)")]
    InvalidKeyName(String),
    /// A verifier or signer key string does not have the expected shape.
    #[error("malformed note key: {0}")]
    MalformedKey(KeyProblem),
    /// The key ID in a key string is not the one its name and key give.
    #[error("key ID `{0:08x}` does not match the key")]
    KeyHashMismatch(u32),
    /// A key string of a signature type other than Ed25519.
    #[error("unsupported signature type 0x{0:02x} (only Ed25519, 0x01)")]
    UnsupportedSignatureType(u8),
    /// The crypto backend refused the key material.
    #[error("key material rejected")]
    KeyRejected,
    /// The crypto backend failed to sign or to export a key.
    #[error("signing failed")]
    Sign,
    /// The note text is not a checkpoint (tlog-checkpoint §Note text).
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(CheckpointProblem),
    /// The checkpoint is from another log.
    #[error("checkpoint origin `{found}` is not `{expected}`")]
    OriginMismatch {
        /// The origin the caller expects.
        expected: String,
        /// The origin found (shortened if long).
        found: String,
    },
}

/// Why a signature line is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineProblem {
    /// It does not start with em dash and space.
    MissingPrefix,
    /// No space separates the key name from the signature.
    MissingSignature,
    /// The key name is empty or has a space or `+`.
    BadKeyName,
    /// The signature is not canonical standard base64 (RFC 4648 §4, padded).
    BadBase64,
    /// The signature has no bytes after the 4-byte key ID.
    TooShort,
}

impl fmt::Display for LineProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LineProblem::MissingPrefix => "it does not start with an em dash and a space",
            LineProblem::MissingSignature => "no space before the signature",
            LineProblem::BadKeyName => "invalid key name",
            LineProblem::BadBase64 => "signature is not canonical base64",
            LineProblem::TooShort => "signature shorter than a key ID and one byte",
        })
    }
}

/// Why a verifier or signer key string is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// A signer key string does not start with `PRIVATE+KEY+`.
    MissingPrivatePrefix,
    /// The key name is empty or has a space or `+`.
    BadKeyName,
    /// The key ID is not 8 lowercase hex digits.
    BadKeyHash,
    /// The key is not canonical standard base64.
    BadBase64,
    /// The key is not a type byte and 32 key bytes.
    WrongLength,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyProblem::MissingPrivatePrefix => "a signer key starts with `PRIVATE+KEY+`",
            KeyProblem::BadKeyName => "invalid key name",
            KeyProblem::BadKeyHash => "key ID is not 8 lowercase hex digits",
            KeyProblem::BadBase64 => "key is not canonical base64",
            KeyProblem::WrongLength => "key is not a type byte and 32 bytes",
        })
    }
}

/// Why a note text is not a checkpoint (tlog-checkpoint §Note text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointProblem {
    /// Larger than [`MAX_NOTE_BYTES`].
    TooLarge,
    /// The text does not end in a newline.
    NotNewlineTerminated,
    /// Fewer than three lines (origin, tree size, root hash).
    TooFewLines,
    /// A line is empty (every line must be non-empty; `line` is 1-based).
    EmptyLine {
        /// 1-based line number.
        line: usize,
    },
    /// An ASCII control character other than newline.
    ControlCharacter {
        /// Byte offset of the character.
        offset: usize,
    },
    /// The tree size is not a decimal `u64` without leading zeros.
    TreeSize,
    /// The root hash is not canonical standard base64 of exactly 32 bytes.
    RootHash,
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointProblem::TooLarge => write!(f, "larger than {MAX_NOTE_BYTES} bytes"),
            CheckpointProblem::NotNewlineTerminated => {
                f.write_str("text does not end in a newline")
            }
            CheckpointProblem::TooFewLines => f.write_str("fewer than three lines"),
            CheckpointProblem::EmptyLine { line } => write!(f, "line {line} is empty"),
            CheckpointProblem::ControlCharacter { offset } => {
                write!(f, "control character at byte {offset}")
            }
            CheckpointProblem::TreeSize => {
                f.write_str("tree size is not a decimal number without leading zeros")
            }
            CheckpointProblem::RootHash => f.write_str("root hash is not base64 of 32 bytes"),
        }
    }
}

/// Whether `name` may name a key: non-empty, no Unicode white space, no `+`
/// (signed-note §Format). Rust's `char::is_whitespace` is the Unicode `White_Space`
/// property, the same set as Go's `unicode.IsSpace`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// The recommended key ID of an Ed25519 key (signed-note §Ed25519 signatures): the
/// first four bytes, big-endian, of SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key).
pub fn ed25519_key_hash(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut input = Vec::with_capacity(name.len() + 2 + ED25519_KEY_LEN);
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(SIGNATURE_TYPE_ED25519);
    input.extend_from_slice(public_key);
    let digest = sha256(&input);
    let [a, b, c, d, ..] = digest;
    u32::from_be_bytes([a, b, c, d])
}

fn shorten(text: &str) -> String {
    text.chars().take(SHOWN_CHARS).collect()
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName(shorten(name)))
    }
}

/// Parses the `<name>+<8 hex>+<base64>` tail shared by verifier and signer key
/// strings: the name ends at the first `+`, the key ID at the second; base64 may
/// itself contain `+`. Returns the name, the key ID and the 32 key bytes after the
/// Ed25519 type byte.
fn parse_key_parts(text: &str) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let (name, rest) = text
        .split_once('+')
        .ok_or(NoteError::MalformedKey(KeyProblem::BadKeyName))?;
    if !is_valid_key_name(name) {
        return Err(NoteError::MalformedKey(KeyProblem::BadKeyName));
    }
    let (hash_hex, key_b64) = rest
        .split_once('+')
        .ok_or(NoteError::MalformedKey(KeyProblem::BadKeyHash))?;
    // Lowercase only: the spelling every implementation writes (`%08x`).
    if hash_hex.len() != 8
        || !hash_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(NoteError::MalformedKey(KeyProblem::BadKeyHash));
    }
    let key_hash = u32::from_str_radix(hash_hex, 16)
        .map_err(|_| NoteError::MalformedKey(KeyProblem::BadKeyHash))?;
    let key = STANDARD
        .decode(key_b64)
        .map_err(|_| NoteError::MalformedKey(KeyProblem::BadBase64))?;
    let (&alg, bytes) = key
        .split_first()
        .ok_or(NoteError::MalformedKey(KeyProblem::WrongLength))?;
    if alg != SIGNATURE_TYPE_ED25519 {
        return Err(NoteError::UnsupportedSignatureType(alg));
    }
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| NoteError::MalformedKey(KeyProblem::WrongLength))?;
    Ok((name, key_hash, bytes))
}

fn format_key(prefix: &str, name: &str, key_hash: u32, key: &[u8]) -> String {
    let mut typed = Vec::with_capacity(1 + key.len());
    typed.push(SIGNATURE_TYPE_ED25519);
    typed.extend_from_slice(key);
    format!("{prefix}{name}+{key_hash:08x}+{}", STANDARD.encode(typed))
}

/// A public key that checks note signatures: a key name, its key ID and an Ed25519
/// public key. Parsed from a verifier key string `<name>+<key ID>+<base64(0x01 ‖ key)>`
/// (Go's `note.NewVerifier` format), e.g.
/// `PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW`.
///
/// The key string is trusted configuration: the key ID is checked against the key,
/// but the key is not checked for small order (a verifier key an attacker chose lets
/// them sign anything anyway).
#[derive(Clone)]
pub struct NoteVerifier {
    name: String,
    key_hash: u32,
    public_key: [u8; 32],
    parsed: ParsedPublicKey,
}

impl fmt::Debug for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("NoteVerifier")
            .field(&self.key_string())
            .finish()
    }
}

impl PartialEq for NoteVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.key_hash == other.key_hash
            && self.public_key == other.public_key
    }
}

impl Eq for NoteVerifier {}

impl NoteVerifier {
    /// Parses a verifier key string. Strict: lowercase hex key ID, canonical base64,
    /// signature type `0x01` and exactly 32 key bytes, and a key ID that matches.
    pub fn from_key_string(text: &str) -> Result<Self, NoteError> {
        let (name, key_hash, public_key) = parse_key_parts(text)?;
        let verifier = Self::from_ed25519(name, &public_key)?;
        if verifier.key_hash != key_hash {
            return Err(NoteError::KeyHashMismatch(key_hash));
        }
        Ok(verifier)
    }

    /// A verifier for an Ed25519 public key under `name`, with the recommended key ID.
    pub fn from_ed25519(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        // A small-order key would accept forged signatures on any checkpoint.
        if crate::keys::ed25519_small_order(public_key) {
            return Err(NoteError::KeyRejected);
        }
        let parsed = ParsedPublicKey::new(&signature::ED25519, public_key)
            .map_err(|_| NoteError::KeyRejected)?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_hash: ed25519_key_hash(name, public_key),
            public_key: *public_key,
            parsed,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_hash(&self) -> u32 {
        self.key_hash
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// The verifier key string `<name>+<key ID>+<base64(0x01 ‖ key)>`.
    pub fn key_string(&self) -> String {
        format_key("", &self.name, self.key_hash, &self.public_key)
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        sig.len() == ED25519_SIG_LEN && self.parsed.verify_sig(message, sig).is_ok()
    }
}

impl TryFrom<&str> for NoteVerifier {
    type Error = NoteError;
    fn try_from(text: &str) -> Result<Self, NoteError> {
        Self::from_key_string(text)
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;
    fn from_str(text: &str) -> Result<Self, NoteError> {
        Self::from_key_string(text)
    }
}

/// A signer key string `PRIVATE+KEY+<name>+<key ID>+<base64(0x01 ‖ seed)>`. Anyone
/// holding it can sign as the key; `Debug` is redacted.
pub struct SignerKeyString(String);

impl SignerKeyString {
    /// The secret text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SignerKeyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SignerKeyString(<redacted>)")
    }
}

/// A named Ed25519 key that signs notes. `Debug` shows only the name and key ID.
///
/// Randomness: [`NoteSigner::generate`] draws from AWS-LC's DRBG, the one source of
/// randomness core uses (ARCHITECTURE.md); [`NoteSigner::from_seed`] takes the
/// 32-byte seed from the caller instead.
pub struct NoteSigner {
    pair: Ed25519KeyPair,
    verifier: NoteVerifier,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.verifier.name)
            .field("key_hash", &format_args!("{:08x}", self.verifier.key_hash))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Generates a new Ed25519 key named `name`.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        check_name(name)?;
        let pair = Ed25519KeyPair::generate().map_err(|_| NoteError::KeyRejected)?;
        Self::from_pair(name, pair)
    }

    /// The Ed25519 key with private seed `seed` (RFC 8032 §5.1.5), named `name`.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        // "Unchecked" only means no public key is compared: there is none to compare.
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| NoteError::KeyRejected)?;
        Self::from_pair(name, pair)
    }

    /// Parses a signer key string (Go's `note.NewSigner` format), checking that its
    /// key ID matches the public key the seed gives.
    pub fn from_signer_key_string(text: &str) -> Result<Self, NoteError> {
        let rest = text
            .strip_prefix(PRIVATE_PREFIX)
            .ok_or(NoteError::MalformedKey(KeyProblem::MissingPrivatePrefix))?;
        let (name, key_hash, seed) = parse_key_parts(rest)?;
        let signer = Self::from_seed(name, &seed)?;
        if signer.verifier.key_hash != key_hash {
            return Err(NoteError::KeyHashMismatch(key_hash));
        }
        Ok(signer)
    }

    fn from_pair(name: &str, pair: Ed25519KeyPair) -> Result<Self, NoteError> {
        let public_key: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| NoteError::KeyRejected)?;
        let verifier = NoteVerifier::from_ed25519(name, &public_key)?;
        Ok(NoteSigner { pair, verifier })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.verifier.name
    }

    /// The key ID.
    pub fn key_hash(&self) -> u32 {
        self.verifier.key_hash
    }

    /// The matching verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The verifier key string to publish.
    pub fn verifier_key_string(&self) -> String {
        self.verifier.key_string()
    }

    /// The secret signer key string, for storing the key.
    pub fn signer_key_string(&self) -> Result<SignerKeyString, NoteError> {
        let seed = self.pair.seed().map_err(|_| NoteError::Sign)?;
        let seed = seed.as_be_bytes().map_err(|_| NoteError::Sign)?;
        Ok(SignerKeyString(format_key(
            PRIVATE_PREFIX,
            &self.verifier.name,
            self.verifier.key_hash,
            seed.as_ref(),
        )))
    }

    fn signature_line(&self, text: &str) -> String {
        let sig = self.pair.sign(text.as_bytes());
        let mut raw = Vec::with_capacity(4 + ED25519_SIG_LEN);
        raw.extend_from_slice(&self.verifier.key_hash.to_be_bytes());
        raw.extend_from_slice(sig.as_ref());
        format!(
            "{SIG_PREFIX}{} {}\n",
            self.verifier.name,
            STANDARD.encode(raw)
        )
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (the first four bytes of the decoded signature, big-endian).
    pub key_hash: u32,
    /// The signature bytes after the key ID.
    pub signature: Vec<u8>,
}

/// A note whose signatures [`open_note`] checked: its text, the signatures of known
/// keys (all verified), and the lines of unknown keys (not checked, kept for callers
/// that understand them, such as witness cosignatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    text: String,
    verified: Vec<NoteSignature>,
    unverified: Vec<NoteSignature>,
}

impl OpenedNote {
    /// The note text, ending in a newline, without the blank line.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Signatures by the given verifiers, all verified, in note order. Never empty.
    pub fn verified(&self) -> &[NoteSignature] {
        &self.verified
    }

    /// Signatures by unknown keys, not verified, in note order.
    pub fn unverified(&self) -> &[NoteSignature] {
        &self.unverified
    }

    /// Whether `verifier` is among the keys that signed.
    pub fn is_signed_by(&self, verifier: &NoteVerifier) -> bool {
        self.verified
            .iter()
            .any(|s| s.name == verifier.name && s.key_hash == verifier.key_hash)
    }
}

fn control_character(text: &str) -> Option<usize> {
    // Bytes below 0x20 are always ASCII characters in UTF-8, never part of another.
    text.bytes().position(|b| b < 0x20 && b != b'\n')
}

/// Signs `text` with every signer and returns the signed note (signed-note §Format):
/// the text, a blank line, one signature line per signer in the order given.
///
/// `text` must end in a newline and have no control characters other than newline; it
/// may contain blank lines. Refuses an empty signer list, two signers with the same
/// name and key ID, more than [`MAX_SIGNATURES`] signers, and a result larger than
/// [`MAX_NOTE_BYTES`], so that every note this returns is one [`open_note`] accepts.
pub fn sign_note(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    if let Some(offset) = control_character(text) {
        return Err(NoteError::ControlCharacter { offset });
    }
    if signers.is_empty() {
        return Err(NoteError::BadSignerList);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }
    for (i, a) in signers.iter().enumerate() {
        let later = signers.iter().skip(i + 1);
        if later
            .into_iter()
            .any(|b| a.name() == b.name() && a.key_hash() == b.key_hash())
        {
            return Err(NoteError::BadSignerList);
        }
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 120);
    out.push_str(text);
    out.push('\n');
    for signer in signers {
        out.push_str(&signer.signature_line(text));
    }
    if out.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            len: out.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    Ok(out)
}

fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteError> {
    let malformed = |problem| NoteError::MalformedSignatureLine {
        line: number,
        problem,
    };
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(malformed(LineProblem::MissingPrefix))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(malformed(LineProblem::MissingSignature))?;
    if !is_valid_key_name(name) {
        return Err(malformed(LineProblem::BadKeyName));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| malformed(LineProblem::BadBase64))?;
    match raw.as_slice() {
        [a, b, c, d, sig @ ..] if !sig.is_empty() => Ok(NoteSignature {
            name: name.to_owned(),
            key_hash: u32::from_be_bytes([*a, *b, *c, *d]),
            signature: sig.to_vec(),
        }),
        _ => Err(malformed(LineProblem::TooShort)),
    }
}

/// Parses a signed note and checks its signatures against `verifiers`
/// (signed-note §Format and §Signatures).
///
/// Refused: a note larger than [`MAX_NOTE_BYTES`]; any ASCII control character other
/// than newline (so CRLF line endings); no blank line; anything after the blank line
/// that is not a newline-terminated signature line; more than [`MAX_SIGNATURES`]
/// signature lines; two verifiers with the same name and key ID that a line names; a
/// known key (name and key ID both match a verifier) whose signature does not verify
/// or that signs on more than one line; and a note no known key signed.
///
/// The text ends at the last blank line, so the text may itself contain blank lines.
/// Lines from unknown keys (name or key ID differ from every verifier) are ignored,
/// as the spec requires, and returned in [`OpenedNote::unverified`].
pub fn open_note(msg: &str, verifiers: &[NoteVerifier]) -> Result<OpenedNote, NoteError> {
    if msg.len() > MAX_NOTE_BYTES {
        return Err(NoteError::TooLarge {
            len: msg.len(),
            max: MAX_NOTE_BYTES,
        });
    }
    if let Some(offset) = control_character(msg) {
        return Err(NoteError::ControlCharacter { offset });
    }
    let split = msg.rfind("\n\n").ok_or(NoteError::MissingBlankLine)?;
    // INVARIANT: `split` and `split + 2` are char boundaries, both inside `msg`:
    // "\n\n" is two ASCII bytes found at `split`.
    let text = msg.get(..=split).ok_or(NoteError::MissingBlankLine)?;
    let block = msg.get(split + 2..).ok_or(NoteError::MissingBlankLine)?;
    let block = block
        .strip_suffix('\n')
        .ok_or(NoteError::MissingSignatureLine)?;
    // Count before parsing or verifying anything.
    if block.split('\n').count() > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            max: MAX_SIGNATURES,
        });
    }

    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified = Vec::new();
    for (i, line) in block.split('\n').enumerate() {
        let sig = parse_signature_line(line, i + 1)?;
        let mut known = verifiers
            .iter()
            .filter(|v| v.name == sig.name && v.key_hash == sig.key_hash);
        let Some(verifier) = known.next() else {
            unverified.push(sig);
            continue;
        };
        if known.next().is_some() {
            return Err(NoteError::AmbiguousVerifier {
                name: sig.name,
                key_hash: sig.key_hash,
            });
        }
        if verified
            .iter()
            .any(|v| v.name == sig.name && v.key_hash == sig.key_hash)
        {
            return Err(NoteError::DuplicateSignature {
                name: sig.name,
                key_hash: sig.key_hash,
            });
        }
        if !verifier.verify(text.as_bytes(), &sig.signature) {
            return Err(NoteError::InvalidSignature {
                name: sig.name,
                key_hash: sig.key_hash,
            });
        }
        verified.push(sig);
    }
    if verified.is_empty() {
        return Err(NoteError::NoVerifiedSignature);
    }
    Ok(OpenedNote {
        text: text.to_owned(),
        verified,
        unverified,
    })
}

/// A transparency log checkpoint: the note text of a signed tree head
/// (tlog-checkpoint §Note text).
///
/// ```text
/// <origin>\n<tree size>\n<base64 root hash>\n[<extension line>\n…]
/// ```
///
/// This is the text only; [`sign_checkpoint`] and [`open_checkpoint`] wrap it in a
/// signed note. A parsed checkpoint is syntax, not trust: only [`open_checkpoint`]
/// says a known key signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's identity, e.g. `example.com/log42`. Non-empty, one line; the spec
    /// recommends but does not require no spaces and no `+` (Go's sumdb uses
    /// `go.sum database tree`), so any other character is accepted.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 Merkle tree hash of the first `size` leaves.
    pub root: Hash,
    /// Opaque extension lines, each non-empty and without newline. Not recommended
    /// by the spec (monitors cannot audit them); Bonafide writes none.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Parses a checkpoint note text strictly: newline-terminated, at least three
    /// lines, every line non-empty, no control characters, tree size in decimal
    /// without leading zeros (except `0`) and fitting `u64`, root hash canonical
    /// padded standard base64 of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let bad = NoteError::MalformedCheckpoint;
        if text.len() > MAX_NOTE_BYTES {
            return Err(bad(CheckpointProblem::TooLarge));
        }
        if let Some(offset) = control_character(text) {
            return Err(bad(CheckpointProblem::ControlCharacter { offset }));
        }
        let body = text
            .strip_suffix('\n')
            .ok_or(bad(CheckpointProblem::NotNewlineTerminated))?;
        let mut lines = body.split('\n');
        let mut next = |number: usize| match lines.next() {
            None => Err(bad(CheckpointProblem::TooFewLines)),
            Some("") => Err(bad(CheckpointProblem::EmptyLine { line: number })),
            Some(line) => Ok(line),
        };
        let origin = next(1)?;
        let size = parse_tree_size(next(2)?).ok_or(bad(CheckpointProblem::TreeSize))?;
        let root = STANDARD
            .decode(next(3)?)
            .ok()
            .and_then(|r| Hash::try_from(r.as_slice()).ok())
            .ok_or(bad(CheckpointProblem::RootHash))?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                return Err(bad(CheckpointProblem::EmptyLine { line: i + 4 }));
            }
            extensions.push(line.to_owned());
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// The note text. Fails, with the error [`Checkpoint::parse`] would give, if the
    /// origin or an extension line is empty or holds a newline or other control
    /// character, so the text always parses back to `self`.
    pub fn to_text(&self) -> Result<String, NoteError> {
        let mut out = String::with_capacity(self.origin.len() + 70);
        push_line(&mut out, &self.origin, 1)?;
        out.push_str(&self.size.to_string());
        out.push('\n');
        out.push_str(&STANDARD.encode(self.root.as_bytes()));
        out.push('\n');
        for (i, line) in self.extensions.iter().enumerate() {
            push_line(&mut out, line, i + 4)?;
        }
        Ok(out)
    }
}

/// Appends `line` and a newline to `out`, refusing an empty line or one with a
/// control character (newline included).
fn push_line(out: &mut String, line: &str, number: usize) -> Result<(), NoteError> {
    if line.is_empty() {
        return Err(NoteError::MalformedCheckpoint(
            CheckpointProblem::EmptyLine { line: number },
        ));
    }
    if let Some(i) = line.bytes().position(|b| b < 0x20) {
        return Err(NoteError::MalformedCheckpoint(
            CheckpointProblem::ControlCharacter {
                offset: out.len() + i,
            },
        ));
    }
    out.push_str(line);
    out.push('\n');
    Ok(())
}

/// Decimal `u64` without sign or leading zeros (tlog-checkpoint §Note text, item 2).
fn parse_tree_size(line: &str) -> Option<u64> {
    if !line.bytes().all(|b| b.is_ascii_digit()) || (line.len() > 1 && line.starts_with('0')) {
        return None;
    }
    line.parse().ok()
}

/// A checkpoint that [`open_checkpoint`] found signed by a known key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedCheckpoint {
    checkpoint: Checkpoint,
    note: OpenedNote,
}

impl OpenedCheckpoint {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The signed note it came in (text and signatures).
    pub fn note(&self) -> &OpenedNote {
        &self.note
    }
}

/// Signs `checkpoint` as a note. The log's key name should be its origin
/// (tlog-checkpoint §Signatures); this is not enforced.
pub fn sign_checkpoint(
    checkpoint: &Checkpoint,
    signers: &[&NoteSigner],
) -> Result<String, NoteError> {
    sign_note(&checkpoint.to_text()?, signers)
}

/// Opens a signed checkpoint: [`open_note`], then [`Checkpoint::parse`] of its text,
/// then checks the origin is `origin`, so that a checkpoint of another log signed by
/// the same key is refused.
pub fn open_checkpoint(
    msg: &str,
    origin: &str,
    verifiers: &[NoteVerifier],
) -> Result<OpenedCheckpoint, NoteError> {
    let note = open_note(msg, verifiers)?;
    let checkpoint = Checkpoint::parse(note.text())?;
    if checkpoint.origin != origin {
        return Err(NoteError::OriginMismatch {
            expected: origin.to_owned(),
            found: shorten(&checkpoint.origin),
        });
    }
    Ok(OpenedCheckpoint { checkpoint, note })
}

#[cfg(test)]
mod small_order_tests {
    use super::*;

    #[test]
    fn small_order_verifier_keys_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            NoteVerifier::from_ed25519("log", &identity).unwrap_err(),
            NoteError::KeyRejected
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

    #[test]
    fn key_strings_round_trip() {
        let v = NoteVerifier::from_key_string(PETER_VKEY).unwrap();
        assert_eq!(v.name(), "PeterNeumann");
        assert_eq!(v.key_hash(), 0xc74f20a3);
        assert_eq!(v.key_string(), PETER_VKEY);
        let s = NoteSigner::from_signer_key_string(PETER_SKEY).unwrap();
        assert_eq!(s.verifier(), &v);
        assert_eq!(s.signer_key_string().unwrap().expose_secret(), PETER_SKEY);
    }

    #[test]
    fn key_string_errors_are_precise() {
        let hash_changed = PETER_VKEY.replace("c74f20a3", "c74f20a4");
        assert_eq!(
            NoteVerifier::from_key_string(&hash_changed),
            Err(NoteError::KeyHashMismatch(0xc74f20a4))
        );
        let upper = PETER_VKEY.replace("c74f20a3", "C74F20A3");
        assert_eq!(
            NoteVerifier::from_key_string(&upper),
            Err(NoteError::MalformedKey(KeyProblem::BadKeyHash))
        );
        // Go's test: unknown algorithm (type byte 0x65), key ID adjusted.
        assert_eq!(
            NoteVerifier::from_key_string(
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
            ),
            Err(NoteError::UnsupportedSignatureType(0x65))
        );
        // Go's test: wrong key length, key ID adjusted. Its base64 has non-zero unused
        // bits, which Go tolerates and this strict decoder already refuses.
        assert_eq!(
            NoteVerifier::from_key_string(
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
            ),
            Err(NoteError::MalformedKey(KeyProblem::BadBase64))
        );
        let short = format!("PeterNeumann+c74f20a3+{}", STANDARD.encode([1u8; 32]));
        assert_eq!(
            NoteVerifier::from_key_string(&short),
            Err(NoteError::MalformedKey(KeyProblem::WrongLength))
        );
        assert_eq!(
            NoteSigner::from_signer_key_string(PETER_VKEY).map(|_| ()),
            Err(NoteError::MalformedKey(KeyProblem::MissingPrivatePrefix))
        );
    }

    #[test]
    fn every_proper_substring_of_a_key_is_refused() {
        // As Go's TestNewVerifier / TestNewSigner do.
        for key in [PETER_VKEY, PETER_SKEY] {
            for i in 0..key.len() {
                for j in i + 1..=key.len() {
                    if (i, j) == (0, key.len()) {
                        continue;
                    }
                    let part = &key[i..j];
                    assert!(NoteVerifier::from_key_string(part).is_err(), "{part}");
                    assert!(NoteSigner::from_signer_key_string(part).is_err(), "{part}");
                }
            }
        }
    }

    #[test]
    fn key_names() {
        assert!(is_valid_key_name("example.com/log"));
        assert!(is_valid_key_name("go.sum"));
        for bad in ["", "a b", "a+b", "a\u{a0}b", "a\u{3000}b", "a\tb"] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
            assert!(NoteSigner::generate(bad).is_err());
        }
    }

    #[test]
    fn signer_debug_is_redacted() {
        let s = NoteSigner::from_signer_key_string(PETER_SKEY).unwrap();
        assert_eq!(
            format!("{s:?}"),
            r#"NoteSigner { name: "PeterNeumann", key_hash: c74f20a3, .. }"#
        );
        let secret = s.signer_key_string().unwrap();
        assert_eq!(format!("{secret:?}"), "SignerKeyString(<redacted>)");
    }

    #[test]
    fn sign_refuses_bad_input() {
        let s = NoteSigner::from_signer_key_string(PETER_SKEY).unwrap();
        assert_eq!(
            sign_note("abc", &[&s]),
            Err(NoteError::TextNotNewlineTerminated)
        );
        assert_eq!(
            sign_note("", &[&s]),
            Err(NoteError::TextNotNewlineTerminated)
        );
        assert_eq!(
            sign_note("a\r\n", &[&s]),
            Err(NoteError::ControlCharacter { offset: 1 })
        );
        assert_eq!(sign_note("a\n", &[]), Err(NoteError::BadSignerList));
        assert_eq!(sign_note("a\n", &[&s, &s]), Err(NoteError::BadSignerList));
    }

    #[test]
    fn generated_keys_sign_and_verify() {
        let s = NoteSigner::generate("bonafide.example/log").unwrap();
        let v = NoteVerifier::from_key_string(&s.verifier_key_string()).unwrap();
        let again =
            NoteSigner::from_signer_key_string(s.signer_key_string().unwrap().expose_secret())
                .unwrap();
        assert_eq!(again.verifier(), &v);
        let msg = sign_note("hello\n\nworld\n", &[&s]).unwrap();
        let opened = open_note(&msg, std::slice::from_ref(&v)).unwrap();
        assert_eq!(opened.text(), "hello\n\nworld\n");
        assert!(opened.is_signed_by(&v));
    }

    #[test]
    fn tree_size_rules() {
        assert_eq!(parse_tree_size("0"), Some(0));
        assert_eq!(parse_tree_size("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-0",
            " 1",
            "1 ",
            "18446744073709551616",
            "1_0",
        ] {
            assert_eq!(parse_tree_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_to_text_refuses_what_parse_would() {
        let mut cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 3,
            root: Hash([7; 32]),
            extensions: vec![],
        };
        assert!(cp.to_text().is_ok());
        cp.origin = "a\nb".into();
        assert_eq!(
            cp.to_text(),
            Err(NoteError::MalformedCheckpoint(
                CheckpointProblem::ControlCharacter { offset: 1 }
            ))
        );
        cp.origin = String::new();
        assert_eq!(
            cp.to_text(),
            Err(NoteError::MalformedCheckpoint(
                CheckpointProblem::EmptyLine { line: 1 }
            ))
        );
        cp.origin = "o".into();
        cp.extensions = vec!["x".into(), String::new()];
        assert_eq!(
            cp.to_text(),
            Err(NoteError::MalformedCheckpoint(
                CheckpointProblem::EmptyLine { line: 5 }
            ))
        );
    }
}
