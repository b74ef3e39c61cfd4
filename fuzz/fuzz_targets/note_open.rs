//! `note::open_note` and `Checkpoint::parse` on arbitrary UTF-8.
//!
//! Properties: nothing panics; a note that opens was signed by one of the fixed keys
//! and its text is what `sign_note` signed; text that `sign_note` accepts opens again
//! to the same text; a checkpoint text that parses is written back byte for byte.
#![no_main]

use bonafide_core::note::{self, Checkpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let verifiers = bonafide_fuzz::note_verifiers();
    if let Ok(opened) = note::open_note(text, verifiers) {
        assert!(!opened.verified().is_empty());
        assert!(text.starts_with(opened.text()));
        if let Ok(checkpoint) = Checkpoint::parse(opened.text()) {
            assert_eq!(checkpoint.to_text().unwrap(), opened.text());
        }
    }
    if let Ok(checkpoint) = Checkpoint::parse(text) {
        assert_eq!(checkpoint.to_text().unwrap(), text);
    }
    // The signing side: whatever sign_note writes, open_note reads back.
    let signer = &bonafide_fuzz::log().signer;
    if let Ok(signed) = note::sign_note(text, &[signer]) {
        let opened = note::open_note(&signed, verifiers).expect("own note opens");
        assert_eq!(opened.text(), text);
    }
});
