//! `TlogProof::parse` on arbitrary UTF-8, then verification against the fuzz log.
//!
//! Properties: nothing panics; a parsed proof is written back byte for byte and
//! parses to itself; a proof that verifies names an index inside the checkpoint and
//! carries exactly the audit path the log would give for it.
#![no_main]

use bonafide_core::tlog_proof::{self, TlogProof};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(proof) = TlogProof::parse(text) else {
        return;
    };
    let written = proof.to_text();
    assert_eq!(written, text);
    assert_eq!(TlogProof::parse(&written).unwrap(), proof);

    let log = bonafide_fuzz::log();
    let entry = usize::try_from(proof.index)
        .ok()
        .and_then(|i| log.entries.get(i))
        .map_or(data, Vec::as_slice);
    let verifiers = std::slice::from_ref(log.signer.verifier());
    if let Ok(verified) =
        tlog_proof::verify_tlog_proof(&proof, entry, bonafide_fuzz::ORIGIN, verifiers)
    {
        assert!(verified.index() < verified.tree_size());
        assert_eq!(verified.checkpoint().checkpoint(), &log.checkpoint);
        assert_eq!(
            proof.hashes,
            bonafide_fuzz::proof(proof.index, None).hashes,
            "a different audit path verified"
        );
    }
});
