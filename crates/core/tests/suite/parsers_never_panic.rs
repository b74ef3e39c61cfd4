//! The parsers the fuzz targets in `fuzz/` exercise, run as property tests so that CI
//! (which does not fuzz) checks them on every change: signed notes and checkpoints,
//! tile and entry-bundle paths, tlog-proofs, compact JWS tokens and domain proofs.
//!
//! For each parser: arbitrary text and mutations of valid inputs never panic, and
//! whatever parses is written back byte for byte. For the signed formats, a mutated
//! input that still verifies carries exactly what the original carried.
//!
//! Case counts stay modest (≤ 256) so the whole core test run stays fast in debug.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use bonafide_core::domain_proof::{self, DomainProofClaims, Expected};
use bonafide_core::keys::{Algorithm, SigningKey, VerifyingKey};
use bonafide_core::merkle::{EntryBundle, Hash, Tile, prove_record, stored_hashes, tree_hash};
use bonafide_core::note::{self, Checkpoint, NoteSigner, NoteVerifier};
use bonafide_core::tlog_proof::{self, TlogProof};
use bonafide_core::token::{self, KeySet, VerifyOptions};
use proptest::prelude::*;

const ORIGIN: &str = "bonafide.example/audit";
const LOG_SIZE: u64 = 37;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A small signed log, built once: entries, the signed checkpoint (also cosigned by a
/// second key, to have an unknown-key line), and the verifier of the log key.
struct Fixture {
    entries: Vec<Vec<u8>>,
    store: Vec<Hash>,
    checkpoint: Checkpoint,
    signed: String,
    verifier: NoteVerifier,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let entries: Vec<Vec<u8>> = (0..LOG_SIZE)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let mut store = Vec::new();
        for (n, entry) in entries.iter().enumerate() {
            let new = stored_hashes(n as u64, entry, &store).unwrap();
            store.extend(new);
        }
        let log = NoteSigner::from_seed(ORIGIN, &[5; 32]).unwrap();
        let witness = NoteSigner::from_seed("witness.example", &[6; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size: LOG_SIZE,
            root: tree_hash(LOG_SIZE, &store).unwrap(),
            extensions: vec![],
        };
        let signed = note::sign_checkpoint(&checkpoint, &[&log, &witness]).unwrap();
        Fixture {
            entries,
            store,
            checkpoint,
            signed,
            verifier: log.verifier().clone(),
        }
    })
}

fn proof(index: u64, extra: Option<Vec<u8>>) -> TlogProof {
    let f = fixture();
    TlogProof {
        extra,
        index,
        hashes: prove_record(LOG_SIZE, index, &f.store).unwrap(),
        checkpoint: f.signed.clone(),
    }
}

/// One change to a text.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero value.
    Flip(usize, u8),
    /// Cut at a position.
    Truncate(usize),
    /// Insert a character at a position.
    Insert(usize, char),
    /// Remove one byte.
    Remove(usize),
    /// Repeat the line that holds a position.
    DuplicateLine(usize),
    /// Remove the line that holds a position.
    RemoveLine(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            prop_oneof![
                Just('\n'),
                Just('\r'),
                Just('='),
                Just(' '),
                Just('0'),
                Just('\u{2014}'),
                any::<char>()
            ]
        )
            .prop_map(|(i, c)| Mutation::Insert(i, c)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::RemoveLine),
    ]
}

/// Applies `m`; total on every input (non-UTF-8 results are repaired lossily, which
/// is still a valid test input).
fn apply(text: &str, m: &Mutation) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let pos = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *m {
        Mutation::Flip(i, x) => {
            if !bytes.is_empty() {
                let at = pos(i, bytes.len());
                bytes[at] ^= x;
            }
        }
        Mutation::Truncate(i) => bytes.truncate(pos(i, bytes.len() + 1)),
        Mutation::Insert(i, c) => {
            let at = pos(i, bytes.len() + 1);
            let mut buf = [0u8; 4];
            bytes.splice(at..at, c.encode_utf8(&mut buf).bytes());
        }
        Mutation::Remove(i) => {
            if !bytes.is_empty() {
                bytes.remove(pos(i, bytes.len()));
            }
        }
        Mutation::DuplicateLine(i) | Mutation::RemoveLine(i) => {
            let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
            if !lines.is_empty() {
                let at = pos(i, lines.len());
                if matches!(m, Mutation::DuplicateLine(_)) {
                    lines.insert(at, lines[at]);
                } else {
                    lines.remove(at);
                }
            }
            return lines.concat();
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn mutated(base: String) -> impl Strategy<Value = (String, String)> {
    prop::collection::vec(mutation(), 1..4).prop_map(move |ms| {
        let out = ms.iter().fold(base.clone(), |t, m| apply(&t, m));
        (base.clone(), out)
    })
}

/// Text with the characters these formats are made of, plus intruders.
fn noteish() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-z0-9./+=@ \n\u{2014}\r\tA-Z-]{0,300}").unwrap()
}

/// A valid domain proof and the key set that verifies it, built once.
fn domain_fixture() -> &'static (String, KeySet) {
    static FIXTURE: OnceLock<(String, KeySet)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let claims = DomainProofClaims {
            iss: "iss_a".into(),
            domain: "a.example".into(),
            aud: "https://registry.example".into(),
            iat: 1_800_000_000,
            jti: Some("j".into()),
        };
        let proof = domain_proof::sign(&key, &claims).unwrap();
        let mut keys = KeySet::new();
        keys.insert(VerifyingKey::from_jwk(key.verifying_key().jwk()).unwrap());
        (proof, keys)
    })
}

fn domain_expected() -> Expected<'static> {
    Expected {
        issuer: "iss_a",
        domain: "a.example",
        audience: "https://registry.example",
        now: 1_800_000_000,
    }
}

// ---------------------------------------------------------------------------------
// Checks shared by arbitrary and mutated inputs

fn check_checkpoint_parse(text: &str) {
    if let Ok(c) = Checkpoint::parse(text) {
        assert_eq!(c.to_text().unwrap(), text);
    }
}

fn check_note_open(text: &str) {
    let f = fixture();
    if let Ok(opened) = note::open_note(text, std::slice::from_ref(&f.verifier)) {
        // A known key signed it, so the text is the one that was signed.
        assert_eq!(opened.text(), f.checkpoint.to_text().unwrap());
        assert_eq!(
            Checkpoint::parse(opened.text()).unwrap(),
            f.checkpoint,
            "signed text changed"
        );
    }
    check_checkpoint_parse(text);
}

fn check_tlog_proof(text: &str, original: Option<&TlogProof>) {
    let Ok(parsed) = TlogProof::parse(text) else {
        return;
    };
    assert_eq!(parsed.to_text(), text);
    assert!(parsed.hashes.len() <= tlog_proof::MAX_PROOF_HASHES);
    let f = fixture();
    let Some(entry) = usize::try_from(parsed.index)
        .ok()
        .and_then(|i| f.entries.get(i))
    else {
        return;
    };
    let verified =
        tlog_proof::verify_tlog_proof(&parsed, entry, ORIGIN, std::slice::from_ref(&f.verifier));
    if let (Ok(v), Some(original)) = (verified, original) {
        // Only the unauthenticated `extra` and unknown-key signature lines may differ.
        assert_eq!(v.index(), original.index);
        assert_eq!(parsed.hashes, original.hashes);
        assert_eq!(v.checkpoint().checkpoint(), &f.checkpoint);
    }
}

fn check_tile_paths(path: &str) {
    if let Ok(tile) = Tile::parse_path(path) {
        assert_eq!(tile.path(), path);
        assert_eq!(Tile::parse_path(&tile.path()).unwrap(), tile);
    }
    if let Ok(bundle) = EntryBundle::parse_path(path) {
        assert_eq!(bundle.path(), path);
        assert_eq!(EntryBundle::parse_path(&bundle.path()).unwrap(), bundle);
    }
}

// ---------------------------------------------------------------------------------

#[test]
fn fixtures_are_valid() {
    let f = fixture();
    note::open_checkpoint(&f.signed, ORIGIN, std::slice::from_ref(&f.verifier)).unwrap();
    for index in 0..LOG_SIZE {
        let text = proof(index, None).to_text();
        tlog_proof::verify_tlog_proof_text(
            &text,
            &f.entries[index as usize],
            ORIGIN,
            std::slice::from_ref(&f.verifier),
        )
        .unwrap();
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_never_panics(text in noteish()) {
        check_note_open(&text);
        check_tlog_proof(&text, None);
        check_tlog_proof(&format!("{}\nindex 0\n{text}", tlog_proof::HEADER), None);
        check_tile_paths(&text);
    }

    #[test]
    fn arbitrary_unicode_never_panics(text in any::<String>()) {
        check_note_open(&text);
        check_tlog_proof(&text, None);
        check_tile_paths(&text);
    }

    #[test]
    fn mutated_checkpoints((original, text) in mutated(fixture().signed.clone())) {
        prop_assume!(original != text);
        check_note_open(&text);
        // The note text alone, as a checkpoint.
        let note_text = text.split("\n\n").next().unwrap_or_default();
        check_checkpoint_parse(&format!("{note_text}\n"));
    }

    #[test]
    fn mutated_tlog_proofs(
        index in 0..LOG_SIZE,
        extra in proptest::option::of(prop::collection::vec(any::<u8>(), 0..20)),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let original = proof(index, extra);
        let text = muts.iter().fold(original.to_text(), |t, m| apply(&t, m));
        check_tlog_proof(&text, Some(&original));
    }

    #[test]
    fn tlog_proof_values_round_trip(
        index in any::<u64>(),
        extra in proptest::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        hashes in prop::collection::vec(any::<[u8; 32]>(), 0..=tlog_proof::MAX_PROOF_HASHES),
    ) {
        let p = TlogProof {
            extra,
            index,
            hashes: hashes.into_iter().map(Hash).collect(),
            checkpoint: fixture().signed.clone(),
        };
        prop_assert_eq!(TlogProof::parse(&p.to_text()).unwrap(), p);
    }

    #[test]
    fn tile_path_like_text(text in "tile/(entries/|[0-9]{1,3}/)?[x0-9]{0,4}(/[x0-9]{0,4}){0,7}(\\.p/[0-9]{0,4})?") {
        check_tile_paths(&text);
    }

    #[test]
    fn mutated_tile_paths(
        level in 0u8..=63,
        n in any::<u64>(),
        width in 1u16..=256,
        muts in prop::collection::vec(mutation(), 1..3),
    ) {
        let tile = Tile::new(level, n, width).unwrap();
        prop_assert_eq!(Tile::parse_path(&tile.path()).unwrap(), tile);
        let bundle = EntryBundle::new(n, width).unwrap();
        prop_assert_eq!(EntryBundle::parse_path(&bundle.path()).unwrap(), bundle);
        for path in [tile.path(), bundle.path()] {
            let text = muts.iter().fold(path, |t, m| apply(&t, m));
            check_tile_paths(&text);
        }
    }

    #[test]
    fn arbitrary_domain_proofs_never_panic(text in "[A-Za-z0-9_.=+/ -]{0,300}") {
        let (_, keys) = domain_fixture();
        prop_assert!(domain_proof::verify(&text, keys, &domain_expected()).is_err());
    }

    #[test]
    fn mutated_domain_proofs((original, text) in mutated(domain_fixture().0.clone())) {
        let (_, keys) = domain_fixture();
        let verified = domain_proof::verify(&text, keys, &domain_expected());
        // A mutation that still verifies states exactly what the original stated.
        if let Ok(v) = verified {
            let first = domain_proof::verify(&original, keys, &domain_expected()).unwrap();
            prop_assert_eq!(v, first);
        }
    }

    #[test]
    fn arbitrary_tokens_never_panic(text in "[A-Za-z0-9_.=+/ -]{0,300}") {
        let keys = KeySet::new();
        let opts = VerifyOptions::for_issuer("https://registry.example");
        prop_assert!(token::verify(&text, &keys, &opts, 0).is_err());
    }
}
