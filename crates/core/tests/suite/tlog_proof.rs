//! C2SP tlog-proof: the spec's example from `tests/data/tlog_proof/`, and proofs built
//! from a real tree (merkle) and a signed checkpoint (note) that must verify, then
//! every way of breaking one that must not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bonafide_core::merkle::{
    self, Hash, inclusion_proof_len, leaf_hash, prove_record, stored_hashes, tree_hash,
};
use bonafide_core::note::{
    self, Checkpoint, CheckpointProblem, LineProblem, NoteError, NoteSigner, NoteVerifier,
};
use bonafide_core::tlog_proof::{
    self, MAX_PROOF_HASHES, NoteShape, TlogProof, TlogProofError, verify_tlog_proof,
    verify_tlog_proof_leaf, verify_tlog_proof_text,
};

const ORIGIN: &str = "bonafide.example/audit";

/// A log of `size` entries: the entries, their stored hashes and the signed checkpoint.
struct Log {
    entries: Vec<Vec<u8>>,
    store: Vec<Hash>,
    signer: NoteSigner,
    checkpoint: Checkpoint,
    signed: String,
}

impl Log {
    fn new(size: u64) -> Self {
        let entries: Vec<Vec<u8>> = (0..size)
            .map(|i| format!("audit event {i}").into_bytes())
            .collect();
        let mut store: Vec<Hash> = Vec::new();
        for (n, entry) in entries.iter().enumerate() {
            let new = stored_hashes(n as u64, entry, &store).unwrap();
            store.extend(new);
        }
        let signer = NoteSigner::from_seed(ORIGIN, &[7; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size,
            root: tree_hash(size, &store).unwrap(),
            extensions: vec![],
        };
        let signed = note::sign_checkpoint(&checkpoint, &[&signer]).unwrap();
        Log {
            entries,
            store,
            signer,
            checkpoint,
            signed,
        }
    }

    fn verifiers(&self) -> Vec<NoteVerifier> {
        vec![self.signer.verifier().clone()]
    }

    fn proof(&self, index: u64) -> TlogProof {
        TlogProof {
            extra: None,
            index,
            hashes: prove_record(self.checkpoint.size, index, &self.store).unwrap(),
            checkpoint: self.signed.clone(),
        }
    }

    fn entry(&self, index: u64) -> &[u8] {
        &self.entries[index as usize]
    }

    fn verify(&self, proof: &TlogProof, index: u64) -> Result<(), TlogProofError> {
        verify_tlog_proof(proof, self.entry(index), ORIGIN, &self.verifiers()).map(|_| ())
    }

    fn verify_text(&self, text: &str, index: u64) -> Result<(), TlogProofError> {
        verify_tlog_proof_text(text, self.entry(index), ORIGIN, &self.verifiers()).map(|_| ())
    }
}

fn flip_bit(h: &Hash, bit: usize) -> Hash {
    let mut bytes = h.0;
    bytes[bit / 8] ^= 1 << (bit % 8);
    Hash(bytes)
}

// ---------------------------------------------------------------------------------
// The spec's example

#[test]
fn c2sp_example_parses_and_round_trips() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tlog_proof/c2sp_tlog_proof_example.tlog-proof");
    let text = std::fs::read_to_string(path).unwrap();
    let proof = TlogProof::parse(&text).unwrap();
    assert_eq!(proof.index, 73894);
    let extra = proof.extra.as_deref().unwrap();
    assert!(extra.starts_with(b"age-v1.2.1-darwin-arm64.tar.gz"));
    assert_eq!(extra.len(), 39);
    let hashes: Vec<String> = proof.hashes.iter().map(Hash::to_base64).collect();
    assert_eq!(
        hashes,
        [
            "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=",
            "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=",
            "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=",
            "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=",
            "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=",
        ]
    );
    assert!(
        proof
            .checkpoint
            .starts_with("example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u{2014} example.com/fancylog ")
    );
    assert_eq!(proof.checkpoint.lines().count(), 8);
    assert_eq!(proof.to_text(), text);

    // Illustrative only: the signatures are elided, so opening the note stops at the
    // first signature line (whatever key is offered).
    let any = NoteSigner::from_seed("example.com/fancylog", &[1; 32]).unwrap();
    assert_eq!(
        verify_tlog_proof(
            &proof,
            b"",
            "example.com/fancylog",
            &[any.verifier().clone()]
        )
        .unwrap_err(),
        TlogProofError::Checkpoint(NoteError::MalformedSignatureLine {
            line: 1,
            problem: LineProblem::BadBase64
        })
    );
    // And its five hashes are not a whole audit path for that index and size.
    assert_eq!(inclusion_proof_len(73894, 109482), 17);
}

// ---------------------------------------------------------------------------------
// Proofs that verify

#[test]
fn every_index_of_several_sizes_verifies() {
    for size in [1u64, 2, 3, 5, 8, 13, 64, 100] {
        let log = Log::new(size);
        for index in 0..size {
            let proof = log.proof(index);
            assert_eq!(proof.hashes.len(), inclusion_proof_len(index, size));
            let text = proof.to_text();
            assert_eq!(TlogProof::parse(&text).unwrap(), proof);
            let ok = verify_tlog_proof_text(&text, log.entry(index), ORIGIN, &log.verifiers())
                .unwrap_or_else(|e| panic!("size {size} index {index}: {e}"));
            assert_eq!(ok.index(), index);
            assert_eq!(ok.tree_size(), size);
            assert_eq!(ok.leaf_hash(), &leaf_hash(log.entry(index)));
            assert_eq!(ok.checkpoint().checkpoint(), &log.checkpoint);
            assert!(ok.checkpoint().note().is_signed_by(log.signer.verifier()));
        }
    }
}

#[test]
fn leaf_hash_variant_agrees() {
    let log = Log::new(13);
    let proof = log.proof(6);
    let by_leaf =
        verify_tlog_proof_leaf(&proof, &leaf_hash(log.entry(6)), ORIGIN, &log.verifiers()).unwrap();
    let by_entry = verify_tlog_proof(&proof, log.entry(6), ORIGIN, &log.verifiers()).unwrap();
    assert_eq!(by_leaf, by_entry);
}

#[test]
fn extra_data_is_carried_but_not_authenticated() {
    let log = Log::new(5);
    let mut proof = log.proof(3);
    proof.extra = Some(b"vrf proof or context".to_vec());
    let text = proof.to_text();
    assert!(text.contains("\nextra dnJmIHByb29mIG9yIGNvbnRleHQ=\nindex 3\n"));
    assert_eq!(TlogProof::parse(&text).unwrap(), proof);
    log.verify_text(&text, 3).unwrap();
    // Changing it changes nothing the verifier vouches for.
    proof.extra = Some(b"anything else".to_vec());
    log.verify(&proof, 3).unwrap();
}

#[test]
fn a_witness_cosigned_checkpoint_verifies() {
    let log = Log::new(8);
    let witness = NoteSigner::from_seed("witness.example/w1", &[8; 32]).unwrap();
    let cosigned = note::sign_checkpoint(&log.checkpoint, &[&log.signer, &witness]).unwrap();
    let proof = TlogProof {
        checkpoint: cosigned,
        ..log.proof(2)
    };
    // Only the log's key offered: the witness line is carried, unverified.
    let ok = verify_tlog_proof(&proof, log.entry(2), ORIGIN, &log.verifiers()).unwrap();
    assert_eq!(ok.checkpoint().note().unverified().len(), 1);
    // Both keys offered: both verified.
    let both = [log.signer.verifier().clone(), witness.verifier().clone()];
    let ok = verify_tlog_proof(&proof, log.entry(2), ORIGIN, &both).unwrap();
    assert!(ok.checkpoint().note().is_signed_by(witness.verifier()));
    assert!(ok.checkpoint().note().is_signed_by(log.signer.verifier()));
}

// ---------------------------------------------------------------------------------
// Proofs that must not verify

#[test]
fn wrong_entry() {
    let log = Log::new(13);
    let proof = log.proof(4);
    assert_eq!(
        verify_tlog_proof(&proof, b"audit event 5", ORIGIN, &log.verifiers()),
        Err(TlogProofError::ProofMismatch)
    );
    assert_eq!(
        verify_tlog_proof(&proof, b"", ORIGIN, &log.verifiers()),
        Err(TlogProofError::ProofMismatch)
    );
}

#[test]
fn flipped_bit_in_any_hash() {
    let log = Log::new(13);
    let good = log.proof(9);
    for i in 0..good.hashes.len() {
        for bit in [0, 7, 100, 255] {
            let mut proof = good.clone();
            proof.hashes[i] = flip_bit(&proof.hashes[i], bit);
            assert_eq!(
                log.verify(&proof, 9),
                Err(TlogProofError::ProofMismatch),
                "hash {i} bit {bit}"
            );
        }
    }
}

#[test]
fn hashes_reordered_dropped_or_added() {
    let log = Log::new(13);
    let good = log.proof(2);
    assert!(good.hashes.len() >= 3);
    let mut swapped = good.clone();
    swapped.hashes.swap(0, 1);
    assert_eq!(log.verify(&swapped, 2), Err(TlogProofError::ProofMismatch));
    let mut dropped = good.clone();
    dropped.hashes.pop();
    assert_eq!(
        log.verify(&dropped, 2),
        Err(TlogProofError::ProofLength {
            expected: good.hashes.len(),
            got: good.hashes.len() - 1
        })
    );
    let mut added = good.clone();
    added.hashes.push(good.hashes[0]);
    assert_eq!(
        log.verify(&added, 2),
        Err(TlogProofError::ProofLength {
            expected: good.hashes.len(),
            got: good.hashes.len() + 1
        })
    );
    // The same change made in the text: one more hash line.
    let text = good.to_text();
    let line = format!("{}\n", good.hashes[0].to_base64());
    let longer = text.replacen(&line, &format!("{line}{line}"), 1);
    assert!(matches!(
        log.verify_text(&longer, 2),
        Err(TlogProofError::ProofLength { .. })
    ));
}

#[test]
fn wrong_index() {
    let log = Log::new(13);
    let good = log.proof(5);
    for index in [4u64, 6, 0, 12] {
        let proof = TlogProof {
            index,
            ..good.clone()
        };
        let err = log.verify(&proof, 5).unwrap_err();
        assert!(
            matches!(
                err,
                TlogProofError::ProofMismatch | TlogProofError::ProofLength { .. }
            ),
            "index {index}: {err:?}"
        );
    }
}

#[test]
fn index_at_or_beyond_the_tree_size() {
    let log = Log::new(13);
    for index in [13u64, 14, u64::MAX] {
        let proof = TlogProof {
            index,
            ..log.proof(12)
        };
        assert_eq!(
            log.verify(&proof, 12),
            Err(TlogProofError::IndexBeyondCheckpoint { index, size: 13 })
        );
        // Through the text too.
        assert_eq!(
            log.verify_text(&proof.to_text(), 12),
            Err(TlogProofError::IndexBeyondCheckpoint { index, size: 13 })
        );
    }
}

#[test]
fn empty_tree_proves_nothing() {
    let log = Log::new(0);
    let proof = TlogProof {
        extra: None,
        index: 0,
        hashes: vec![],
        checkpoint: log.signed.clone(),
    };
    assert_eq!(
        verify_tlog_proof(&proof, b"x", ORIGIN, &log.verifiers()),
        Err(TlogProofError::IndexBeyondCheckpoint { index: 0, size: 0 })
    );
}

#[test]
fn wrong_key() {
    let log = Log::new(8);
    let other = NoteSigner::from_seed(ORIGIN, &[99; 32]).unwrap();
    assert_eq!(
        verify_tlog_proof(
            &log.proof(1),
            log.entry(1),
            ORIGIN,
            &[other.verifier().clone()]
        ),
        Err(TlogProofError::Checkpoint(NoteError::NoVerifiedSignature))
    );
    assert_eq!(
        verify_tlog_proof(&log.proof(1), log.entry(1), ORIGIN, &[]),
        Err(TlogProofError::Checkpoint(NoteError::NoVerifiedSignature))
    );
}

#[test]
fn wrong_origin() {
    let log = Log::new(8);
    assert_eq!(
        verify_tlog_proof(
            &log.proof(1),
            log.entry(1),
            "bonafide.example/other",
            &log.verifiers()
        ),
        Err(TlogProofError::Checkpoint(NoteError::OriginMismatch {
            expected: "bonafide.example/other".into(),
            found: ORIGIN.into()
        }))
    );
}

#[test]
fn checkpoint_changed_under_its_signature() {
    let log = Log::new(8);
    let good = log.proof(3);
    // Another root, same signature line: the known key's signature no longer verifies.
    let other_root = log.checkpoint.root.to_base64();
    let forged_root = flip_bit(&log.checkpoint.root, 3).to_base64();
    let proof = TlogProof {
        checkpoint: good.checkpoint.replacen(&other_root, &forged_root, 1),
        ..good.clone()
    };
    assert!(matches!(
        log.verify(&proof, 3),
        Err(TlogProofError::Checkpoint(
            NoteError::InvalidSignature { .. }
        ))
    ));
    // A bigger size, so that a later index would pass the range check.
    let proof = TlogProof {
        checkpoint: good.checkpoint.replacen("\n8\n", "\n9\n", 1),
        index: 8,
        ..good.clone()
    };
    assert!(matches!(
        log.verify(&proof, 3),
        Err(TlogProofError::Checkpoint(
            NoteError::InvalidSignature { .. }
        ))
    ));
    // A checkpoint of a larger tree of the same log does not fit this proof.
    let bigger = Log::new(9);
    let proof = TlogProof {
        checkpoint: bigger.signed.clone(),
        ..good
    };
    assert!(matches!(
        log.verify(&proof, 3),
        Err(TlogProofError::ProofLength { .. } | TlogProofError::ProofMismatch)
    ));
}

#[test]
fn truncated_anywhere() {
    let log = Log::new(13);
    let text = log.proof(7).to_text();
    for cut in 0..text.len() {
        let Some(short) = text.get(..cut) else {
            continue; // inside the em dash of a signature line
        };
        assert!(
            log.verify_text(short, 7).is_err(),
            "truncated to {cut} bytes still verifies"
        );
    }
    assert_eq!(
        TlogProof::parse(text.split("\n\n").next().unwrap()),
        Err(TlogProofError::MissingCheckpoint)
    );
}

#[test]
fn extra_lines() {
    let log = Log::new(13);
    let text = log.proof(7).to_text();
    // After the checkpoint's signatures: not a signature line.
    assert_eq!(
        log.verify_text(&format!("{text}trailing garbage\n"), 7),
        Err(TlogProofError::Checkpoint(
            NoteError::MalformedSignatureLine {
                line: 2,
                problem: LineProblem::MissingPrefix
            }
        ))
    );
    // Without a newline.
    assert_eq!(
        TlogProof::parse(&format!("{text}x")),
        Err(TlogProofError::MalformedCheckpoint(
            NoteShape::NotNewlineTerminated
        ))
    );
    // A blank line at the end.
    assert!(log.verify_text(&format!("{text}\n"), 7).is_err());
    // A second proof glued on.
    assert!(log.verify_text(&format!("{text}{text}"), 7).is_err());
    // A second blank line before the checkpoint.
    let doubled = text.replacen("\n\n", "\n\n\n", 1);
    assert_eq!(
        TlogProof::parse(&doubled),
        Err(TlogProofError::MalformedCheckpoint(
            NoteShape::StartsWithBlankLine
        ))
    );
    // An unknown field line where the index belongs.
    let field = text.replacen("\nindex ", "\nfoo bar\nindex ", 1);
    assert_eq!(
        TlogProof::parse(&field),
        Err(TlogProofError::MissingIndex { line: 2 })
    );
    // Two extra lines.
    let twice = text.replacen("\nindex ", "\nextra AA==\nextra AA==\nindex ", 1);
    assert_eq!(
        TlogProof::parse(&twice),
        Err(TlogProofError::MissingIndex { line: 3 })
    );
    // An extra line after the index.
    let late = text.replacen("\n\n", "\nextra AA==\n\n", 1);
    assert!(matches!(
        TlogProof::parse(&late),
        Err(TlogProofError::BadHash { .. })
    ));
    // The checkpoint's own text with an extension line added after signing.
    let ext = text.replacen(
        &format!("{}\n\n", log.checkpoint.root.to_base64()),
        &format!("{}\nextension\n\n", log.checkpoint.root.to_base64()),
        1,
    );
    assert!(matches!(
        log.verify_text(&ext, 7),
        Err(TlogProofError::Checkpoint(
            NoteError::InvalidSignature { .. }
        ))
    ));
}

#[test]
fn bad_base64() {
    let log = Log::new(13);
    let proof = log.proof(7);
    let text = proof.to_text();
    let first = proof.hashes[0].to_base64();
    let cases: Vec<String> = vec![
        first.trim_end_matches('=').to_owned(),          // unpadded
        first.replace('+', "-").replace('/', "_") + "x", // URL alphabet and too long
        format!(" {first}"),                             // leading space
        format!("{first} "),                             // trailing space
        first[..40].to_owned() + "====",                 // wrong length
        Hash([0; 32]).to_base64().replace("A=", "B="),   // non-canonical final bits
        merkle::empty_tree_hash().to_hex(),              // hex, not base64
        "!!notbase64!!".to_owned(),
    ];
    for bad in cases {
        assert_ne!(bad, first);
        let broken = text.replacen(&first, &bad, 1);
        assert_eq!(
            TlogProof::parse(&broken),
            Err(TlogProofError::BadHash { line: 3 }),
            "{bad:?}"
        );
    }
    // A 64-byte hash (Go's test "incorrect hash length").
    let long = STANDARD.encode([1u8; 64]);
    assert_eq!(
        TlogProof::parse(&text.replacen(&first, &long, 1)),
        Err(TlogProofError::BadHash { line: 3 })
    );
    // Extra data: not canonical, not base64.
    for extra in ["AB==", "A", "!!notbase64!!", "AA"] {
        let broken = text.replacen("\nindex ", &format!("\nextra {extra}\nindex "), 1);
        assert_eq!(
            TlogProof::parse(&broken),
            Err(TlogProofError::BadExtra { line: 2 }),
            "{extra:?}"
        );
    }
}

#[test]
fn bad_index_lines() {
    let log = Log::new(13);
    let text = log.proof(7).to_text();
    for bad in [
        "index 07",
        "index +7",
        "index -7",
        "index 7.0",
        "index",
        "index  7",
        "Index 7",
        "index 0x7",
    ] {
        let broken = text.replacen("index 7", bad, 1);
        let err = TlogProof::parse(&broken).unwrap_err();
        assert!(
            matches!(
                err,
                TlogProofError::BadIndex { line: 2 } | TlogProofError::MissingIndex { line: 2 }
            ),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn crlf_line_endings_are_refused() {
    let log = Log::new(5);
    let text = log.proof(1).to_text().replace('\n', "\r\n");
    assert_eq!(TlogProof::parse(&text), Err(TlogProofError::BadHeader));
}

#[test]
fn more_hashes_than_any_tree_needs() {
    let log = Log::new(5);
    let text = log.proof(1).to_text();
    let line = format!("{}\n", Hash([3; 32]).to_base64());
    let many = text.replacen("index 1\n", &format!("index 1\n{}", line.repeat(70)), 1);
    assert_eq!(
        TlogProof::parse(&many),
        Err(TlogProofError::TooManyHashes {
            max: MAX_PROOF_HASHES
        })
    );
}

#[test]
fn size_cap() {
    let log = Log::new(5);
    let text = log.proof(1).to_text();
    let huge = format!(
        "{text}{}",
        "\u{2014} k AAAA\n".repeat(tlog_proof::MAX_PROOF_BYTES / 10)
    );
    assert!(matches!(
        TlogProof::parse(&huge),
        Err(TlogProofError::TooLarge { .. })
    ));
}

#[test]
fn checkpoint_text_must_be_a_checkpoint() {
    // A note signed by the log's key whose text is not a checkpoint.
    let log = Log::new(5);
    let signed = note::sign_note("hello\n", &[&log.signer]).unwrap();
    let proof = TlogProof {
        checkpoint: signed,
        ..log.proof(1)
    };
    assert_eq!(
        log.verify(&proof, 1),
        Err(TlogProofError::Checkpoint(NoteError::MalformedCheckpoint(
            CheckpointProblem::TooFewLines
        )))
    );
}

#[test]
fn merkle_errors_are_not_leaked_as_log_errors() {
    // The Merkle layer's own errors are mapped to proof errors, never wrapped, for
    // the cases a parsed proof can hit.
    let log = Log::new(3);
    let mut proof = log.proof(2);
    proof.hashes.clear();
    let err = log.verify(&proof, 2).unwrap_err();
    assert!(!matches!(err, TlogProofError::Inclusion(_)), "{err:?}");
}
