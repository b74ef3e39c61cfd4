//! `Checkpoint::parse` on arbitrary UTF-8, and `open_checkpoint` of it signed.
//!
//! Properties: nothing panics; a parsed checkpoint is written back byte for byte and
//! parses to itself; signed with the fuzz key, it opens under its own origin to the
//! same checkpoint.
#![no_main]

use bonafide_core::note::{self, Checkpoint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(checkpoint) = Checkpoint::parse(text) else {
        return;
    };
    let written = checkpoint.to_text().expect("a parsed checkpoint writes");
    assert_eq!(written, text);
    assert_eq!(Checkpoint::parse(&written).unwrap(), checkpoint);
    let log = bonafide_fuzz::log();
    if let Ok(signed) = note::sign_checkpoint(&checkpoint, &[&log.signer]) {
        let opened = note::open_checkpoint(
            &signed,
            &checkpoint.origin,
            std::slice::from_ref(log.signer.verifier()),
        )
        .expect("own checkpoint opens");
        assert_eq!(opened.checkpoint(), &checkpoint);
    }
});
