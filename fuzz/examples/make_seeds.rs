//! Writes the seed inputs under `fuzz/seeds/<target>/` that need a signature from a
//! fuzz fixture key (the other seeds are copied from published vectors; see
//! README.md). Deterministic: running it again writes the same bytes.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`

use std::fs;
use std::path::{Path, PathBuf};

use bonafide_core::httpsig::{self, Message, SignParams};
use bonafide_core::{dpop, note, tlog_proof, token};

fn dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    fs::create_dir_all(&dir).expect("create seeds dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    fs::write(dir(target).join(name), bytes).expect("write seed");
}

fn main() {
    let log = bonafide_fuzz::log();
    // Each signed seed is checked to pass the target's verification before it is written.
    note::open_checkpoint(
        &log.signed,
        bonafide_fuzz::ORIGIN,
        bonafide_fuzz::note_verifiers(),
    )
    .expect("checkpoint opens");
    write("note_open", "fuzz_log_checkpoint", log.signed.as_bytes());
    write(
        "checkpoint_parse",
        "fuzz_log_checkpoint_text",
        log.checkpoint.to_text().expect("text").as_bytes(),
    );
    for (index, extra) in [(0, None), (7, Some(b"context".to_vec())), (20, None)] {
        let proof = bonafide_fuzz::proof(index, extra);
        tlog_proof::verify_tlog_proof(
            &proof,
            &log.entries[index as usize],
            bonafide_fuzz::ORIGIN,
            std::slice::from_ref(log.signer.verifier()),
        )
        .expect("proof verifies");
        write(
            "tlog_proof_parse",
            &format!("fuzz_log_index_{index}.tlog-proof"),
            proof.to_text().as_bytes(),
        );
    }
    // Mode byte 0: verify as is; 1: sign the rest as a payload, then verify.
    let token = token::sign(bonafide_fuzz::token_key(), &bonafide_fuzz::claims()).expect("sign");
    token::verify(
        &token,
        bonafide_fuzz::key_set(),
        &bonafide_fuzz::verify_options(),
        bonafide_fuzz::NOW,
    )
    .expect("token verifies");
    write(
        "jws_verify",
        "genuine_token",
        &[b"\x00", token.as_bytes()].concat(),
    );
    let claims = serde_json::to_vec(&bonafide_fuzz::claims()).expect("json");
    write(
        "jws_verify",
        "genuine_claims",
        &[b"\x01", claims.as_slice()].concat(),
    );
    // The request and token the dpop_verify target checks against.
    let key = bonafide_fuzz::token_key();
    let (htm, htu, tok) = (
        "POST",
        "https://shop.example/v1/orders",
        "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
    );
    let proof = dpop::sign(key, htm, htu, tok, bonafide_fuzz::NOW, "seed-jti").expect("sign");
    dpop::verify(
        &proof,
        &dpop::ProofCheck::new(htm, htu, key.kid(), tok, bonafide_fuzz::NOW),
    )
    .expect("proof verifies");
    write(
        "dpop_verify",
        "genuine_proof",
        &[b"\x00", proof.as_bytes()].concat(),
    );
    let claims = serde_json::json!({"jti": "seed-jti", "htm": htm, "htu": htu,
        "iat": bonafide_fuzz::NOW, "ath": dpop::access_token_hash(tok)});
    write(
        "dpop_verify",
        "genuine_claims",
        &[b"\x01", claims.to_string().as_bytes()].concat(),
    );
    // A request signed in the Web Bot Auth profile, as lines for httpsig_verify.
    let headers = vec![("Host".to_owned(), "shop.example".to_owned())];
    let request = Message::Request {
        method: "GET",
        url: htu,
        headers: &headers,
    };
    let signed = httpsig::sign(
        key,
        &request,
        &["@authority"],
        &SignParams {
            label: "sig1",
            created: bonafide_fuzz::NOW,
            expires: Some(bonafide_fuzz::NOW + 60),
            keyid: None,
            nonce: Some("seed-nonce"),
            tag: Some(httpsig::WEB_BOT_AUTH_TAG),
            include_alg: false,
        },
    )
    .expect("sign request");
    let text = format!(
        "GET\n{htu}\nHost: shop.example\nSignature-Input: {}\nSignature: {}",
        signed.signature_input, signed.signature
    );
    write("httpsig_verify", "genuine_request", text.as_bytes());
    println!("seeds written under {}", dir("").display());
}
