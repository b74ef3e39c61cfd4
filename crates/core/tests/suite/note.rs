//! C2SP signed notes and checkpoints: published vectors from `tests/data/note/`, the
//! negative cases derived from them, checkpoint syntax, and property tests.
//!
//! See `tests/data/note/README.md` for the case fields and where each value comes from.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bonafide_core::merkle::Hash;
use bonafide_core::note::{
    self, Checkpoint, CheckpointProblem, LineProblem, NoteError, NoteSigner, NoteVerifier,
};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    source: String,
    verifier_keys: Vec<String>,
    #[serde(default)]
    signer_keys: Vec<String>,
    note: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    signed_by: Vec<String>,
    #[serde(default)]
    unverified: Vec<String>,
    #[serde(default)]
    checkpoint: Option<CaseCheckpoint>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    change: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseCheckpoint {
    origin: String,
    size: u64,
    root: String,
    extensions: Vec<String>,
}

impl CaseCheckpoint {
    fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            origin: self.origin.clone(),
            size: self.size,
            root: Hash(STANDARD.decode(&self.root).unwrap().try_into().unwrap()),
            extensions: self.extensions.clone(),
        }
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/note")
}

fn load(name: &str) -> Case {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn case_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn verifiers(case: &Case) -> Vec<NoteVerifier> {
    case.verifier_keys
        .iter()
        .map(|k| NoteVerifier::from_key_string(k).unwrap_or_else(|e| panic!("{k}: {e}")))
        .collect()
}

/// The name a case file uses for an error.
fn code(e: &NoteError) -> &'static str {
    match e {
        NoteError::TooLarge { .. } => "too_large",
        NoteError::ControlCharacter { .. } => "control_character",
        NoteError::MissingBlankLine => "missing_blank_line",
        NoteError::MissingSignatureLine => "missing_signature_line",
        NoteError::MalformedSignatureLine { .. } => "malformed_signature_line",
        NoteError::TooManySignatures { .. } => "too_many_signatures",
        NoteError::DuplicateSignature { .. } => "duplicate_signature",
        NoteError::InvalidSignature { .. } => "invalid_signature",
        NoteError::NoVerifiedSignature => "no_verified_signature",
        NoteError::AmbiguousVerifier { .. } => "ambiguous_verifier",
        other => panic!("unexpected error for a case file: {other:?}"),
    }
}

fn key_id(name: &str, key_hash: u32) -> String {
    format!("{name}+{key_hash:08x}")
}

/// Runs one case file: a positive case must open with its text and signers (and
/// re-sign byte for byte when its private key is published); a `fail_` case must be
/// refused with its error.
fn run(name: &str) {
    let case = load(name);
    assert!(!case.source.is_empty(), "{name}: no source");
    let verifiers = verifiers(&case);
    let opened = note::open_note(&case.note, &verifiers);

    if let (Some(cp), Some(text)) = (&case.checkpoint, &case.text) {
        assert_eq!(
            Checkpoint::parse(text).unwrap(),
            cp.to_checkpoint(),
            "{name}"
        );
        assert_eq!(cp.to_checkpoint().to_text().unwrap(), *text, "{name}");
    }
    if let Some(text) = &case.text {
        assert!(case.note.starts_with(&format!("{text}\n")), "{name}");
    }

    if name.starts_with("fail_") {
        let want = case
            .error
            .as_deref()
            .unwrap_or_else(|| panic!("{name}: no error"));
        let err = opened.expect_err(name);
        assert_eq!(code(&err), want, "{name}: {err}");
        if let Some(base) = &case.derived_from {
            assert!(case.change.is_some(), "{name}: derived without `change`");
            let base = load(base);
            assert_ne!(base.note, case.note, "{name}: identical to its base");
            assert!(
                note::open_note(&base.note, &verifiers).is_ok(),
                "{name}: base"
            );
        }
        return;
    }

    assert!(case.error.is_none(), "{name}: positive case with an error");
    let opened = opened.unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(Some(opened.text()), case.text.as_deref(), "{name}");
    let signed: Vec<String> = opened
        .verified()
        .iter()
        .map(|s| key_id(&s.name, s.key_hash))
        .collect();
    assert_eq!(signed, case.signed_by, "{name}");
    let unverified: Vec<String> = opened
        .unverified()
        .iter()
        .map(|s| key_id(&s.name, s.key_hash))
        .collect();
    assert_eq!(unverified, case.unverified, "{name}");
    for v in &verifiers {
        assert!(opened.is_signed_by(v), "{name}: {v:?}");
    }

    if let Some(cp) = &case.checkpoint {
        let origin = cp.origin.as_str();
        let opened = note::open_checkpoint(&case.note, origin, &verifiers).unwrap();
        assert_eq!(*opened.checkpoint(), cp.to_checkpoint(), "{name}");
    }

    // Ed25519 is deterministic: the published private key reproduces the note.
    if !case.signer_keys.is_empty() {
        let signers: Vec<NoteSigner> = case
            .signer_keys
            .iter()
            .map(|k| NoteSigner::from_signer_key_string(k).unwrap())
            .collect();
        let refs: Vec<&NoteSigner> = signers.iter().collect();
        let text = case.text.as_deref().unwrap();
        assert_eq!(note::sign_note(text, &refs).unwrap(), case.note, "{name}");
        for (signer, key) in signers.iter().zip(&case.signer_keys) {
            assert_eq!(signer.signer_key_string().unwrap().expose_secret(), key);
            assert!(case.verifier_keys.contains(&signer.verifier_key_string()));
        }
    }
}

#[test]
fn go_peterneumann() {
    run("go_peterneumann.json");
}

#[test]
fn go_peterneumann_enochroot() {
    run("go_peterneumann_enochroot.json");
}

#[test]
fn go_peterneumann_unknown_enochroot() {
    run("go_peterneumann_unknown_enochroot.json");
}

#[test]
fn sumdb_checkpoint_49189689() {
    run("sumdb_checkpoint_49189689.json");
}

#[test]
fn every_fail_case_is_refused() {
    let fails: Vec<String> = case_names()
        .into_iter()
        .filter(|n| n.starts_with("fail_"))
        .collect();
    assert!(fails.len() >= 15, "{fails:?}");
    for name in &fails {
        run(name);
    }
}

#[test]
fn every_case_file_runs() {
    let names = case_names();
    assert!(names.len() >= 19, "{names:?}");
    for name in &names {
        run(name);
    }
}

#[test]
fn fail_case_errors_are_exact() {
    let peter = verifiers(&load("go_peterneumann.json"));
    let open = |name: &str| note::open_note(&load(name).note, &peter).unwrap_err();
    assert_eq!(
        open("fail_go_text_byte_changed.json"),
        NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_hash: 0xc74f20a3
        }
    );
    assert_eq!(
        open("fail_go_duplicated_signature_line.json"),
        NoteError::DuplicateSignature {
            name: "PeterNeumann".into(),
            key_hash: 0xc74f20a3
        }
    );
    assert_eq!(
        open("fail_go_crlf_line_endings.json"),
        NoteError::ControlCharacter { offset: 56 }
    );
    assert_eq!(
        open("fail_go_extra_trailing_line.json"),
        NoteError::MalformedSignatureLine {
            line: 2,
            problem: LineProblem::MissingPrefix
        }
    );
    assert_eq!(
        open("fail_go_too_many_signatures.json"),
        NoteError::TooManySignatures { max: 100 }
    );
    assert_eq!(
        open("fail_go_wrong_key_hash.json"),
        NoteError::NoVerifiedSignature
    );
}

const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";

fn peter() -> NoteSigner {
    NoteSigner::from_signer_key_string(PETER_SKEY).unwrap()
}

#[test]
fn signature_lines_are_checked_strictly() {
    let v = [peter().verifier().clone()];
    let text = "a\n";
    let good = note::sign_note(text, &[&peter()]).unwrap();
    let (_, line) = good.split_once("\n\n").unwrap();
    let b64 = line.rsplit_once(' ').unwrap().1.trim_end();
    let cases = [
        (
            format!("{text}\n- PeterNeumann {b64}\n"),
            LineProblem::MissingPrefix,
        ),
        (
            format!("{text}\n— PeterNeumann\n"),
            LineProblem::MissingSignature,
        ),
        (format!("{text}\n—  {b64}\n"), LineProblem::BadKeyName),
        (
            format!("{text}\n— Peter+Neumann {b64}\n"),
            LineProblem::BadKeyName,
        ),
        (
            format!("{text}\n— PeterNeumann {b64} \n"),
            LineProblem::BadBase64,
        ),
        (
            format!("{text}\n— PeterNeumann {}\n", b64.trim_end_matches('=')),
            LineProblem::BadBase64,
        ),
        (
            format!("{text}\n— PeterNeumann AAAAAA==\n"),
            LineProblem::TooShort,
        ),
    ];
    for (msg, problem) in cases {
        assert_eq!(
            note::open_note(&msg, &v),
            Err(NoteError::MalformedSignatureLine { line: 1, problem }),
            "{msg:?}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let v = [peter().verifier().clone()];
    let big = format!("{}\n", "a".repeat(note::MAX_NOTE_BYTES));
    // The text, the blank line and one 110-byte signature line.
    assert_eq!(
        note::sign_note(&big, &[&peter()]),
        Err(NoteError::TooLarge {
            len: big.len() + 1 + 110,
            max: note::MAX_NOTE_BYTES
        })
    );
    let msg = format!("{big}\n— PeterNeumann AAAA\n");
    assert!(matches!(
        note::open_note(&msg, &v),
        Err(NoteError::TooLarge { .. })
    ));

    // 100 signature lines are accepted (16 must be, by the spec); 101 are not.
    let signers: Vec<NoteSigner> = (0..100)
        .map(|i| NoteSigner::from_seed(&format!("k{i}"), &[i as u8; 32]).unwrap())
        .collect();
    let refs: Vec<&NoteSigner> = signers.iter().collect();
    let msg = note::sign_note("t\n", &refs).unwrap();
    let opened = note::open_note(&msg, &[signers[99].verifier().clone()]).unwrap();
    assert_eq!(opened.unverified().len(), 99);
    let extra = NoteSigner::from_seed("k100", &[100; 32]).unwrap();
    let mut too_many = refs.clone();
    too_many.push(&extra);
    assert_eq!(
        note::sign_note("t\n", &too_many),
        Err(NoteError::TooManySignatures { max: 100 })
    );
}

#[test]
fn verifier_rules() {
    let p = peter();
    let other = NoteSigner::from_seed("PeterNeumann", &[9; 32]).unwrap();
    let msg = note::sign_note("hi\n", &[&p]).unwrap();

    // Two verifiers for the same name and key ID cannot be told apart.
    let dup = [p.verifier().clone(), p.verifier().clone()];
    assert_eq!(
        note::open_note(&msg, &dup),
        Err(NoteError::AmbiguousVerifier {
            name: "PeterNeumann".into(),
            key_hash: 0xc74f20a3
        })
    );
    // Same name, other key: an unknown key, ignored.
    assert_eq!(
        note::open_note(&msg, &[other.verifier().clone()]),
        Err(NoteError::NoVerifiedSignature)
    );
    // A known key's bad signature refuses the note even when another key verifies.
    let both = note::sign_note("hi\n", &[&other, &p]).unwrap();
    let forged = {
        let (text, sigs) = both.split_once("\n\n").unwrap();
        let mut lines: Vec<&str> = sigs.lines().collect();
        let p_line = note::sign_note("bye\n", &[&p]).unwrap();
        let p_sig = p_line.split_once("\n\n").unwrap().1.trim_end().to_owned();
        lines[1] = &p_sig;
        format!("{text}\n\n{}\n", lines.join("\n"))
    };
    let vs = [other.verifier().clone(), p.verifier().clone()];
    assert!(note::open_note(&both, &vs).is_ok());
    assert_eq!(
        note::open_note(&forged, &vs),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_hash: 0xc74f20a3
        })
    );
}

#[test]
fn checkpoint_round_trip_and_origin() {
    let signer = NoteSigner::from_seed("example.com/log", &[3; 32]).unwrap();
    let cp = Checkpoint {
        origin: "example.com/log".into(),
        size: 0,
        root: Hash(bonafide_core::sha256(b"")),
        extensions: vec!["ext one".into()],
    };
    let msg = note::sign_checkpoint(&cp, &[&signer]).unwrap();
    let v = [signer.verifier().clone()];
    let opened = note::open_checkpoint(&msg, "example.com/log", &v).unwrap();
    assert_eq!(opened.checkpoint(), &cp);
    assert!(opened.note().is_signed_by(&v[0]));
    assert_eq!(
        note::open_checkpoint(&msg, "example.com/other", &v),
        Err(NoteError::OriginMismatch {
            expected: "example.com/other".into(),
            found: "example.com/log".into()
        })
    );
}

#[test]
fn checkpoint_parse_is_strict() {
    let root = STANDARD.encode([0u8; 32]);
    let bad = |text: String, problem: CheckpointProblem| {
        assert_eq!(
            Checkpoint::parse(&text),
            Err(NoteError::MalformedCheckpoint(problem)),
            "{text:?}"
        );
    };
    assert!(Checkpoint::parse(&format!("o\n0\n{root}\n")).is_ok());
    bad(
        format!("o\n0\n{root}"),
        CheckpointProblem::NotNewlineTerminated,
    );
    bad("o\n0\n".into(), CheckpointProblem::TooFewLines);
    bad(
        format!("\n0\n{root}\n"),
        CheckpointProblem::EmptyLine { line: 1 },
    );
    bad(
        format!("o\n\n{root}\n"),
        CheckpointProblem::EmptyLine { line: 2 },
    );
    bad(
        format!("o\n0\n{root}\n\n"),
        CheckpointProblem::EmptyLine { line: 4 },
    );
    bad(
        format!("o\n0\n{root}\na\n\nb\n"),
        CheckpointProblem::EmptyLine { line: 5 },
    );
    bad(
        format!("o\r\n0\n{root}\n"),
        CheckpointProblem::ControlCharacter { offset: 1 },
    );
    for size in ["00", "01", "+1", "-1", " 1", "1e3", "18446744073709551616"] {
        bad(format!("o\n{size}\n{root}\n"), CheckpointProblem::TreeSize);
    }
    let long = STANDARD.encode([0u8; 33]);
    let short = STANDARD.encode([0u8; 31]);
    let unpadded = root.trim_end_matches('=').to_owned();
    // Same bytes as `root` but with a non-zero unused bit: not canonical.
    let non_canonical = format!("{}B=", &root[..42]);
    let url_safe = STANDARD
        .encode([0xfb; 32])
        .replace('+', "-")
        .replace('/', "_");
    for r in [
        long,
        short,
        unpadded,
        non_canonical,
        url_safe,
        String::from("?"),
    ] {
        bad(format!("o\n1\n{r}\n"), CheckpointProblem::RootHash);
    }
    let max = Checkpoint::parse(&format!(
        "go.sum database tree\n18446744073709551615\n{root}\n"
    ))
    .unwrap();
    assert_eq!(max.size, u64::MAX);
    assert_eq!(max.origin, "go.sum database tree");
}

#[test]
fn debug_output_is_locked() {
    let s = peter();
    assert_eq!(
        format!("{s:?}"),
        r#"NoteSigner { name: "PeterNeumann", key_hash: c74f20a3, .. }"#
    );
    assert_eq!(
        format!("{:?}", s.verifier()),
        r#"NoteVerifier("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")"#
    );
    assert_eq!(
        format!("{:?}", s.signer_key_string().unwrap()),
        "SignerKeyString(<redacted>)"
    );
}

#[test]
fn error_messages_quote_input_and_stay_lowercase() {
    let e = NoteError::InvalidSignature {
        name: "PeterNeumann".into(),
        key_hash: 0xc74f20a3,
    };
    assert_eq!(
        e.to_string(),
        "invalid signature for key `PeterNeumann+c74f20a3`"
    );
    let long = "x".repeat(500);
    let e = NoteSigner::generate(&format!("{long} y")).unwrap_err();
    assert_eq!(e, NoteError::InvalidKeyName("x".repeat(64)));
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Note-like strings: pieces of real notes shuffled with noise, so the parser gets
/// past its early checks more often than with uniform random text.
fn note_like() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\n".to_owned()),
        Just("\n\n".to_owned()),
        Just("— ".to_owned()),
        Just("— PeterNeumann ".to_owned()),
        Just("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=".to_owned()),
        Just("If you think cryptography is the answer to your problem,\n".to_owned()),
        Just("=".to_owned()),
        Just("+".to_owned()),
        Just(" ".to_owned()),
        "\\PC{0,12}",
        "[A-Za-z0-9+/=]{0,12}",
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn open_note_never_panics(msg in prop_oneof![".{0,300}", note_like()]) {
        let v = [peter().verifier().clone()];
        let _ = note::open_note(&msg, &v);
        let _ = note::open_note(&msg, &[]);
    }

    #[test]
    fn checkpoint_parse_never_panics(
        text in prop_oneof![
            ".{0,200}",
            ("\\PC{0,20}", "[0-9]{0,22}", "[A-Za-z0-9+/=]{0,48}", "[a-z\n]{0,10}")
                .prop_map(|(o, s, r, x)| format!("{o}\n{s}\n{r}\n{x}")),
        ]
    ) {
        if let Ok(cp) = Checkpoint::parse(&text) {
            prop_assert_eq!(cp.to_text().unwrap(), text);
        }
    }

    #[test]
    fn key_strings_never_panic(text in prop_oneof![".{0,100}", "[A-Za-z0-9+/=]{0,80}"]) {
        let _ = NoteVerifier::from_key_string(&text);
        let _ = NoteSigner::from_signer_key_string(&format!("PRIVATE+KEY+{text}"));
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn sign_then_open_round_trips(
        lines in prop::collection::vec("[^\\x00-\\x1f]{0,40}", 1..6),
        seed in any::<[u8; 32]>(),
        name in "[a-z0-9./\u{e9}-]{1,20}",
    ) {
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        let signer = NoteSigner::from_seed(&name, &seed).unwrap();
        let other = NoteSigner::from_seed("other.example", &[7; 32]).unwrap();
        let msg = note::sign_note(&text, &[&signer, &other]).unwrap();
        let opened = note::open_note(&msg, &[signer.verifier().clone()]).unwrap();
        prop_assert_eq!(opened.text(), text.as_str());
        prop_assert!(opened.is_signed_by(signer.verifier()));
        prop_assert_eq!(opened.unverified().len(), 1);
        let reparsed = NoteVerifier::from_key_string(&signer.verifier_key_string()).unwrap();
        prop_assert_eq!(&reparsed, signer.verifier());
    }

    #[test]
    fn checkpoint_sign_then_open_round_trips(
        origin in "[^\\x00-\\x1f]{1,30}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in prop::collection::vec("[^\\x00-\\x1f]{1,20}", 0..3),
    ) {
        let signer = NoteSigner::from_seed("log.example", &[1; 32]).unwrap();
        let cp = Checkpoint { origin: origin.clone(), size, root: Hash(root), extensions };
        let msg = note::sign_checkpoint(&cp, &[&signer]).unwrap();
        let opened = note::open_checkpoint(&msg, &origin, &[signer.verifier().clone()]).unwrap();
        prop_assert_eq!(opened.checkpoint(), &cp);
    }
}
