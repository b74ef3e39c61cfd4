//! C2SP transparency log proofs (`c2sp.org/tlog-proof@v1`): an offline-verifiable
//! proof that an entry is in a log, made of the entry's index, its RFC 6962 inclusion
//! proof and a signed checkpoint of the tree it is in.
//!
//! Spec: <https://c2sp.org/tlog-proof>, read as `tlog-proof.md` of the C2SP/C2SP
//! repository at commit `0065ea5b716154a2dd48508e3f905012a16ce5e9` (section "Format"
//! and the example at the top, which is kept verbatim as
//! `tests/data/tlog_proof/c2sp_tlog_proof_example.tlog-proof`). The format, one item a
//! line, each line ending in a newline (U+000A):
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64 opaque data>]
//! index <decimal index, no leading zeroes>
//! <base64 hash>            zero or more: the audit path, leaf's sibling first
//! <blank line>
//! <signed checkpoint note, verbatim (c2sp.org/tlog-checkpoint)>
//! ```
//!
//! Base64 is standard padded base64 (RFC 4648 §4), as the spec's "Conventions" say.
//! The hashes are the RFC 6962 §2.1.1 audit path that [`crate::merkle::check_record`]
//! checks, in the same order. The same wire format is written and read by Go's
//! `github.com/transparency-dev/formats/proof` (`TLogProof.Marshal`/`Unmarshal`).
//!
//! [`TlogProof::parse`] is stricter than the spec and than Go in these documented ways,
//! so that every accepted text has exactly one spelling and [`TlogProof::to_text`]
//! gives it back byte for byte:
//!
//! - the whole proof is at most [`MAX_PROOF_BYTES`] (1 MiB, the signed-note limit);
//! - base64 must be canonical (padding present, unused bits zero), for `extra` too;
//! - at most [`MAX_PROOF_HASHES`] hashes (63): enough for any tree of up to 2^63
//!   entries, so proofs in trees larger than that cannot be expressed;
//! - the index is ASCII digits without sign or leading zeroes and fits `u64` (Go
//!   accepts `+5` and `007`);
//! - the checkpoint must look like a signed note: non-empty, not starting with a blank
//!   line, newline-terminated, no control character other than newline, and with the
//!   blank line that separates a note's text from its signatures. Its signatures and
//!   its checkpoint text are only checked by [`verify_tlog_proof`], so a proof whose
//!   signature lines are elided (like the spec's example) still parses.
//!
//! What this is not: a trust decision by itself. A parsed [`TlogProof`] is syntax;
//! only [`verify_tlog_proof`] (or [`verify_tlog_proof_leaf`]) says that a known key
//! signed a checkpoint whose tree contains the entry at the index. The `extra` data is
//! never authenticated (the spec: applications "MUST NOT implicitly trust" it), so
//! [`VerifiedTlogProof`] does not carry it. Witness cosignatures (`cosignature/v1`,
//! type 0x04) are not checked: [`crate::note`] verifies Ed25519 (0x01) note
//! signatures only, and other lines are returned unverified in
//! [`OpenedNote::unverified`](crate::note::OpenedNote::unverified).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::{self, Hash, LogError};
use crate::note::{self, NoteError, NoteVerifier, OpenedCheckpoint};

/// The first line of every proof (tlog-proof §Format).
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Largest proof [`TlogProof::parse`] reads, in bytes (1 MiB). A proof is a few
/// hundred bytes plus its checkpoint, itself bounded by [`note::MAX_NOTE_BYTES`].
pub const MAX_PROOF_BYTES: usize = 1 << 20;

/// Most hashes a proof may carry: the audit path of a tree of up to 2^63 entries.
pub const MAX_PROOF_HASHES: usize = 63;

/// What begins the optional second line.
const EXTRA_PREFIX: &str = "extra ";
/// What begins the index line.
const INDEX_PREFIX: &str = "index ";

/// What went wrong with a proof: its syntax, its checkpoint or its inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlogProofError {
    /// The proof is larger than [`MAX_PROOF_BYTES`].
    #[error("proof of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the proof, in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The first line is not exactly [`HEADER`] followed by a newline.
    #[error("first line is not `c2sp.org/tlog-proof@v1`")]
    BadHeader,
    /// The `extra` line's data is not canonical standard base64.
    #[error("line {line}: extra data is not canonical standard base64")]
    BadExtra {
        /// 1-based line number in the proof.
        line: usize,
    },
    /// Where the index belongs there is no line starting with `index `.
    #[error("line {line}: expected `index <decimal>`")]
    MissingIndex {
        /// 1-based line number in the proof.
        line: usize,
    },
    /// The index is not ASCII decimal without sign or leading zeroes fitting `u64`.
    #[error("line {line}: index is not a decimal number without leading zeroes below 2^64")]
    BadIndex {
        /// 1-based line number in the proof.
        line: usize,
    },
    /// A proof hash line is not 32 bytes of canonical standard base64.
    #[error("line {line}: not a proof hash (want 32 bytes of canonical standard base64)")]
    BadHash {
        /// 1-based line number in the proof.
        line: usize,
    },
    /// More than [`MAX_PROOF_HASHES`] proof hashes.
    #[error("more than {max} proof hashes")]
    TooManyHashes {
        /// The limit.
        max: usize,
    },
    /// The text ends before the blank line that precedes the checkpoint, or nothing
    /// follows that blank line.
    #[error("no blank line followed by a checkpoint after the proof hashes")]
    MissingCheckpoint,
    /// What follows the blank line cannot be a signed note.
    #[error("checkpoint is not a signed note: {0}")]
    MalformedCheckpoint(NoteShape),
    /// The checkpoint did not open: no known key signed it, a known key's signature is
    /// invalid, its text is not a checkpoint, or it is from another origin.
    #[error("checkpoint: {0}")]
    Checkpoint(NoteError),
    /// The index is not below the checkpoint's tree size.
    #[error("index {index} is beyond the checkpoint's tree of size {size}")]
    IndexBeyondCheckpoint {
        /// The proof's index.
        index: u64,
        /// The checkpoint's tree size.
        size: u64,
    },
    /// The proof has the wrong number of hashes for its index and the tree size.
    #[error("inclusion proof has {got} hashes, index and tree size need {expected}")]
    ProofLength {
        /// Hashes the proof must have.
        expected: usize,
        /// Hashes it has.
        got: usize,
    },
    /// The inclusion proof does not lead from the entry to the checkpoint's root hash:
    /// wrong entry, wrong index or a changed hash.
    #[error("inclusion proof does not match the checkpoint's root hash")]
    ProofMismatch,
    /// Any other failure of the Merkle check (not expected from a parsed proof).
    #[error("inclusion proof: {0}")]
    Inclusion(LogError),
}

/// Why the checkpoint part of a proof cannot be a signed note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NoteShape {
    /// It begins with a blank line, where the origin line should be.
    StartsWithBlankLine,
    /// It does not end in a newline.
    NotNewlineTerminated,
    /// An ASCII control character other than newline (so also CRLF line endings).
    ControlCharacter {
        /// Byte offset of the character in the whole proof.
        offset: usize,
    },
    /// No blank line separates a note text from signature lines.
    NoSignatureBlock,
}

impl fmt::Display for NoteShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteShape::StartsWithBlankLine => f.write_str("it begins with a blank line"),
            NoteShape::NotNewlineTerminated => f.write_str("it does not end in a newline"),
            NoteShape::ControlCharacter { offset } => write!(
                f,
                "control character at byte {offset} (only newline is allowed)"
            ),
            NoteShape::NoSignatureBlock => {
                f.write_str("no blank line separates its text from signatures")
            }
        }
    }
}

/// A `c2sp.org/tlog-proof@v1` proof: syntax only, not yet verified.
///
/// [`TlogProof::parse`] and [`TlogProof::to_text`] are inverse on every text `parse`
/// accepts. `to_text` writes the fields as they are; a value built by hand parses
/// back to itself when it keeps the rules `parse` checks (at most
/// [`MAX_PROOF_HASHES`] hashes, a checkpoint shaped like a signed note, at most
/// [`MAX_PROOF_BYTES`] in all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Optional opaque application data from the `extra` line (`None`: no such line;
    /// `Some(empty)`: the line `extra ` with no data). Not authenticated by anything.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// The RFC 6962 §2.1.1 inclusion proof, from the leaf's sibling up to the root's
    /// child.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint note, verbatim (ends in a newline).
    pub checkpoint: String,
}

impl TlogProof {
    /// Parses a proof strictly (see the module documentation for the exact rules).
    pub fn parse(text: &str) -> Result<Self, TlogProofError> {
        if text.len() > MAX_PROOF_BYTES {
            return Err(TlogProofError::TooLarge {
                len: text.len(),
                max: MAX_PROOF_BYTES,
            });
        }
        let mut lines = Lines::new(text);

        match lines.next() {
            Some((HEADER, _)) => {}
            _ => return Err(TlogProofError::BadHeader),
        }

        let (mut line, mut number) = lines
            .next()
            .ok_or(TlogProofError::MissingIndex { line: 2 })?;
        let extra = match line.strip_prefix(EXTRA_PREFIX) {
            Some(data) => {
                let extra = STANDARD
                    .decode(data)
                    .map_err(|_| TlogProofError::BadExtra { line: number })?;
                (line, number) = lines
                    .next()
                    .ok_or(TlogProofError::MissingIndex { line: number + 1 })?;
                Some(extra)
            }
            None => None,
        };

        let digits = line
            .strip_prefix(INDEX_PREFIX)
            .ok_or(TlogProofError::MissingIndex { line: number })?;
        let index = parse_index(digits).ok_or(TlogProofError::BadIndex { line: number })?;

        let mut hashes = Vec::new();
        loop {
            let (line, number) = lines.next().ok_or(TlogProofError::MissingCheckpoint)?;
            if line.is_empty() {
                break;
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyHashes {
                    max: MAX_PROOF_HASHES,
                });
            }
            let hash =
                Hash::from_base64(line).map_err(|_| TlogProofError::BadHash { line: number })?;
            hashes.push(hash);
        }

        let (offset, checkpoint) = lines.rest();
        check_note_shape(checkpoint, offset)?;
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// The proof as text, in the only spelling [`TlogProof::parse`] accepts.
    pub fn to_text(&self) -> String {
        let extra = self.extra.as_ref().map(|e| STANDARD.encode(e));
        let mut out = String::with_capacity(
            HEADER.len()
                + 30
                + extra.as_ref().map_or(0, |e| e.len() + 7)
                + self.hashes.len() * 45
                + self.checkpoint.len(),
        );
        out.push_str(HEADER);
        out.push('\n');
        if let Some(extra) = extra {
            out.push_str(EXTRA_PREFIX);
            out.push_str(&extra);
            out.push('\n');
        }
        out.push_str(INDEX_PREFIX);
        out.push_str(&self.index.to_string());
        out.push('\n');
        for hash in &self.hashes {
            out.push_str(&hash.to_base64());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }
}

impl fmt::Display for TlogProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for TlogProof {
    type Err = TlogProofError;

    fn from_str(text: &str) -> Result<Self, TlogProofError> {
        TlogProof::parse(text)
    }
}

/// Newline-terminated lines of a text, numbered from 1, with the unread rest.
struct Lines<'a> {
    rest: &'a str,
    offset: usize,
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            rest: text,
            offset: 0,
            number: 0,
        }
    }

    /// The next line without its newline, and its 1-based number; `None` if no
    /// newline-terminated line is left.
    fn next(&mut self) -> Option<(&'a str, usize)> {
        let (line, rest) = self.rest.split_once('\n')?;
        self.rest = rest;
        self.offset += line.len() + 1;
        self.number += 1;
        Some((line, self.number))
    }

    /// The unread rest and its byte offset in the text.
    fn rest(&self) -> (usize, &'a str) {
        (self.offset, self.rest)
    }
}

/// Decimal `u64` without sign or leading zeroes, except `0` itself (tlog-proof §Format:
/// "an ASCII decimal with no leading zeroes (unless the index is `0`)").
fn parse_index(digits: &str) -> Option<u64> {
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// The checks on a note's shape that need no key: what [`note::open_note`] would
/// refuse before looking at any signature line. `offset` is where `note` begins in
/// the proof, for error positions.
fn check_note_shape(note: &str, offset: usize) -> Result<(), TlogProofError> {
    let bad = TlogProofError::MalformedCheckpoint;
    if note.is_empty() {
        return Err(TlogProofError::MissingCheckpoint);
    }
    if note.starts_with('\n') {
        return Err(bad(NoteShape::StartsWithBlankLine));
    }
    if let Some(at) = note.bytes().position(|b| b < 0x20 && b != b'\n') {
        return Err(bad(NoteShape::ControlCharacter {
            offset: offset + at,
        }));
    }
    if !note.ends_with('\n') {
        return Err(bad(NoteShape::NotNewlineTerminated));
    }
    // The text ends at the last blank line; a signature line must follow it.
    match note.rfind("\n\n") {
        Some(at) if at + 2 < note.len() => Ok(()),
        _ => Err(bad(NoteShape::NoSignatureBlock)),
    }
}

/// A proof that [`verify_tlog_proof`] accepted: the entry is at [`index`](Self::index)
/// in the tree of [`tree_size`](Self::tree_size) entries of a checkpoint a known key
/// signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTlogProof {
    index: u64,
    leaf_hash: Hash,
    checkpoint: OpenedCheckpoint,
}

impl VerifiedTlogProof {
    /// The entry's index in the log.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The size of the checkpointed tree that contains the entry.
    pub fn tree_size(&self) -> u64 {
        self.checkpoint.checkpoint().size
    }

    /// The entry's RFC 6962 leaf hash.
    pub fn leaf_hash(&self) -> &Hash {
        &self.leaf_hash
    }

    /// The opened checkpoint, with the keys that signed it.
    pub fn checkpoint(&self) -> &OpenedCheckpoint {
        &self.checkpoint
    }
}

/// Verifies that `proof` shows `entry` in the log `origin`: [`verify_tlog_proof_leaf`]
/// of the entry's [`merkle::leaf_hash`].
pub fn verify_tlog_proof(
    proof: &TlogProof,
    entry: &[u8],
    origin: &str,
    verifiers: &[NoteVerifier],
) -> Result<VerifiedTlogProof, TlogProofError> {
    verify_tlog_proof_leaf(proof, &merkle::leaf_hash(entry), origin, verifiers)
}

/// [`TlogProof::parse`] of `text`, then [`verify_tlog_proof`].
pub fn verify_tlog_proof_text(
    text: &str,
    entry: &[u8],
    origin: &str,
    verifiers: &[NoteVerifier],
) -> Result<VerifiedTlogProof, TlogProofError> {
    verify_tlog_proof(&TlogProof::parse(text)?, entry, origin, verifiers)
}

/// Verifies that `proof` shows the record with leaf hash `leaf` in the log `origin`.
///
/// In order: the checkpoint is opened with [`note::open_checkpoint`] (at least one of
/// `verifiers` signed it, every signature of a known key verifies, the text is a
/// checkpoint, its origin is `origin`); the index is below its tree size; and the
/// hashes are the inclusion proof of `leaf` at the index up to the checkpoint's root
/// ([`merkle::check_record`]). Which of `verifiers` signed is in
/// [`VerifiedTlogProof::checkpoint`]; a caller that needs a particular key (the log's)
/// and a quorum of witnesses must check that there.
pub fn verify_tlog_proof_leaf(
    proof: &TlogProof,
    leaf: &Hash,
    origin: &str,
    verifiers: &[NoteVerifier],
) -> Result<VerifiedTlogProof, TlogProofError> {
    // A hand-built proof may break the parser's bound; refuse before any work.
    if proof.hashes.len() > MAX_PROOF_HASHES {
        return Err(TlogProofError::TooManyHashes {
            max: MAX_PROOF_HASHES,
        });
    }
    let opened = note::open_checkpoint(&proof.checkpoint, origin, verifiers)
        .map_err(TlogProofError::Checkpoint)?;
    let size = opened.checkpoint().size;
    if proof.index >= size {
        return Err(TlogProofError::IndexBeyondCheckpoint {
            index: proof.index,
            size,
        });
    }
    merkle::check_record(
        &proof.hashes,
        size,
        &opened.checkpoint().root,
        proof.index,
        leaf,
    )
    .map_err(|e| match e {
        LogError::ProofLength { expected, got } => TlogProofError::ProofLength { expected, got },
        LogError::ProofMismatch => TlogProofError::ProofMismatch,
        LogError::IndexOutOfRange { index, size } => {
            TlogProofError::IndexBeyondCheckpoint { index, size }
        }
        other => TlogProofError::Inclusion(other),
    })?;
    Ok(VerifiedTlogProof {
        index: proof.index,
        leaf_hash: *leaf,
        checkpoint: opened,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, node_hash};
    use crate::note::{Checkpoint, NoteSigner, sign_checkpoint};

    const ORIGIN: &str = "example.com/log";
    const NOTE: &str = "example.com/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\u{2014} example.com/log AAAAAAAA\n";

    fn h(byte: u8) -> Hash {
        Hash([byte; 32])
    }

    fn proof() -> TlogProof {
        TlogProof {
            extra: None,
            index: 5,
            hashes: vec![h(1), h(2)],
            checkpoint: NOTE.to_owned(),
        }
    }

    #[test]
    fn writes_the_spec_layout() {
        let text = proof().to_text();
        let want = format!(
            "c2sp.org/tlog-proof@v1\nindex 5\n{}\n{}\n\n{NOTE}",
            h(1).to_base64(),
            h(2).to_base64()
        );
        assert_eq!(text, want);
        assert_eq!(TlogProof::parse(&text).unwrap(), proof());
    }

    #[test]
    fn extra_line_comes_before_the_index() {
        let p = TlogProof {
            extra: Some(b"extra information".to_vec()),
            ..proof()
        };
        let text = p.to_text();
        assert!(
            text.starts_with("c2sp.org/tlog-proof@v1\nextra ZXh0cmEgaW5mb3JtYXRpb24=\nindex 5\n")
        );
        assert_eq!(TlogProof::parse(&text).unwrap(), p);
        let empty = TlogProof {
            extra: Some(Vec::new()),
            ..proof()
        };
        assert!(empty.to_text().contains("\nextra \nindex 5\n"));
        assert_eq!(TlogProof::parse(&empty.to_text()).unwrap(), empty);
    }

    #[test]
    fn zero_hashes() {
        let p = TlogProof {
            index: 0,
            hashes: vec![],
            ..proof()
        };
        assert_eq!(
            p.to_text(),
            format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{NOTE}")
        );
        assert_eq!(TlogProof::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn index_spelling() {
        let with = |digits: &str| format!("c2sp.org/tlog-proof@v1\nindex {digits}\n\n{NOTE}");
        assert_eq!(TlogProof::parse(&with("0")).unwrap().index, 0);
        assert_eq!(
            TlogProof::parse(&with("18446744073709551615"))
                .unwrap()
                .index,
            u64::MAX
        );
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1a",
            "18446744073709551616",
            "٣",
        ] {
            assert_eq!(
                TlogProof::parse(&with(bad)),
                Err(TlogProofError::BadIndex { line: 2 }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn line_numbers_in_errors() {
        let good = h(1).to_base64();
        let text =
            format!("c2sp.org/tlog-proof@v1\nextra AA==\nindex 3\n{good}\n{good}x\n\n{NOTE}");
        assert_eq!(
            TlogProof::parse(&text),
            Err(TlogProofError::BadHash { line: 5 })
        );
        assert_eq!(
            TlogProof::parse("c2sp.org/tlog-proof@v1\nextra AA=\nindex 3\n\nx"),
            Err(TlogProofError::BadExtra { line: 2 })
        );
        assert_eq!(
            TlogProof::parse("c2sp.org/tlog-proof@v1\nextra AA==\nindex: 3\n"),
            Err(TlogProofError::MissingIndex { line: 3 })
        );
        assert_eq!(
            TlogProof::parse("c2sp.org/tlog-proof@v1\nextra AA==\n"),
            Err(TlogProofError::MissingIndex { line: 3 })
        );
    }

    #[test]
    fn header_must_be_exact() {
        for bad in [
            "",
            "c2sp.org/tlog-proof@v1",
            "c2sp.org/tlog-proof@v2\nindex 0\n",
            "c2sp.org/tlog-proof@v1 \nindex 0\n",
            "c2sp.org/tlog-proof@v1\r\nindex 0\r\n",
            "\u{feff}c2sp.org/tlog-proof@v1\nindex 0\n",
        ] {
            assert_eq!(
                TlogProof::parse(bad),
                Err(TlogProofError::BadHeader),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn checkpoint_shape() {
        let with =
            |note: &str| TlogProof::parse(&format!("c2sp.org/tlog-proof@v1\nindex 0\n\n{note}"));
        assert_eq!(with(""), Err(TlogProofError::MissingCheckpoint));
        assert_eq!(
            with("\nexample.com/log\n"),
            Err(TlogProofError::MalformedCheckpoint(
                NoteShape::StartsWithBlankLine
            ))
        );
        assert_eq!(
            with("a\n\n\u{2014} k AAAA"),
            Err(TlogProofError::MalformedCheckpoint(
                NoteShape::NotNewlineTerminated
            ))
        );
        assert_eq!(
            with("a\r\n\n\u{2014} k AAAA\n"),
            Err(TlogProofError::MalformedCheckpoint(
                NoteShape::ControlCharacter { offset: 33 }
            ))
        );
        assert_eq!(
            with("a\nb\n"),
            Err(TlogProofError::MalformedCheckpoint(
                NoteShape::NoSignatureBlock
            ))
        );
        assert_eq!(
            with("a\n\n"),
            Err(TlogProofError::MalformedCheckpoint(
                NoteShape::NoSignatureBlock
            ))
        );
        assert_eq!(
            TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 0\n"),
            Err(TlogProofError::MissingCheckpoint)
        );
    }

    #[test]
    fn too_many_hashes_and_too_large() {
        let line = format!("{}\n", h(7).to_base64());
        let text = |n: usize| {
            format!(
                "c2sp.org/tlog-proof@v1\nindex 0\n{}\n{NOTE}",
                line.repeat(n)
            )
        };
        assert_eq!(TlogProof::parse(&text(63)).unwrap().hashes.len(), 63);
        assert_eq!(
            TlogProof::parse(&text(64)),
            Err(TlogProofError::TooManyHashes { max: 63 })
        );
        let big = format!("{HEADER}\n{}", "a".repeat(MAX_PROOF_BYTES));
        assert_eq!(
            TlogProof::parse(&big),
            Err(TlogProofError::TooLarge {
                len: big.len(),
                max: MAX_PROOF_BYTES
            })
        );
    }

    #[test]
    fn verifies_a_two_entry_log() {
        let signer = NoteSigner::from_seed(ORIGIN, &[9; 32]).unwrap();
        let verifiers = [signer.verifier().clone()];
        let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size: 2,
            root: node_hash(&a, &b),
            extensions: vec![],
        };
        let signed = sign_checkpoint(&checkpoint, &[&signer]).unwrap();
        let p = TlogProof {
            extra: None,
            index: 1,
            hashes: vec![a],
            checkpoint: signed,
        };
        let ok = verify_tlog_proof_text(&p.to_text(), b"b", ORIGIN, &verifiers).unwrap();
        assert_eq!((ok.index(), ok.tree_size()), (1, 2));
        assert_eq!(ok.leaf_hash(), &b);
        assert_eq!(
            verify_tlog_proof(&p, b"a", ORIGIN, &verifiers).unwrap_err(),
            TlogProofError::ProofMismatch
        );
        let too_many = TlogProof {
            hashes: vec![a; 64],
            ..p
        };
        assert_eq!(
            verify_tlog_proof(&too_many, b"b", ORIGIN, &verifiers).unwrap_err(),
            TlogProofError::TooManyHashes { max: 63 }
        );
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            TlogProofError::BadHash { line: 4 }.to_string(),
            "line 4: not a proof hash (want 32 bytes of canonical standard base64)"
        );
        assert_eq!(
            TlogProofError::IndexBeyondCheckpoint { index: 9, size: 3 }.to_string(),
            "index 9 is beyond the checkpoint's tree of size 3"
        );
        assert_eq!(
            TlogProofError::MalformedCheckpoint(NoteShape::NoSignatureBlock).to_string(),
            "checkpoint is not a signed note: no blank line separates its text from signatures"
        );
    }
}
