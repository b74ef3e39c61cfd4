//! Fixed keys and a small signed log shared by the fuzz targets and by
//! `examples/make_seeds.rs`, so that the signed seeds verify inside the targets.
//!
//! Everything here is deterministic: keys come from fixed seeds or published test
//! vectors, never from a random generator, so a crash found once reproduces.

use std::sync::OnceLock;

use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::keys::{Algorithm, Jwk, SigningKey, VerifyingKey};
use bonafide_core::merkle::{Hash, prove_record, stored_hashes, tree_hash};
use bonafide_core::note::{self, Checkpoint, NoteSigner, NoteVerifier};
use bonafide_core::tlog_proof::TlogProof;
use bonafide_core::token::{AgentClaims, AgentInfo, Audience, KeySet, VerifyOptions};

/// Origin of the fuzz log.
pub const ORIGIN: &str = "bonafide.example/fuzz";
/// Entries in the fuzz log.
pub const LOG_SIZE: u64 = 21;

/// Go's `golang.org/x/mod/sumdb/note` test key (tests/data/note/go_peterneumann.json).
pub const PETER_NEUMANN: &str =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
/// sum.golang.org's key (tests/data/note/sumdb_checkpoint_49189689.json).
pub const SUM_GOLANG_ORG: &str =
    "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";

/// Issuer accepted by [`verify_options`].
pub const ISSUER: &str = "https://registry.example";
/// "Now" for token checks: 2025-01-01T00:00:00Z.
pub const NOW: i64 = 1_735_689_600;

/// A signed log of [`LOG_SIZE`] entries.
#[derive(Debug)]
pub struct Log {
    /// The entries, `entry <n>`.
    pub entries: Vec<Vec<u8>>,
    /// Their stored hashes.
    pub store: Vec<Hash>,
    /// The checkpoint of all entries.
    pub checkpoint: Checkpoint,
    /// The checkpoint signed by the log key.
    pub signed: String,
    /// The log key.
    pub signer: NoteSigner,
}

/// The fuzz log, built once.
pub fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let entries: Vec<Vec<u8>> = (0..LOG_SIZE)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let mut store = Vec::new();
        for (n, entry) in entries.iter().enumerate() {
            let new = stored_hashes(n as u64, entry, &store).expect("append");
            store.extend(new);
        }
        let signer = NoteSigner::from_seed(ORIGIN, &[0x42; 32]).expect("signer");
        let checkpoint = Checkpoint {
            origin: ORIGIN.to_owned(),
            size: LOG_SIZE,
            root: tree_hash(LOG_SIZE, &store).expect("root"),
            extensions: vec![],
        };
        let signed = note::sign_checkpoint(&checkpoint, &[&signer]).expect("sign");
        Log {
            entries,
            store,
            checkpoint,
            signed,
            signer,
        }
    })
}

/// The proof of entry `index` of the fuzz log.
pub fn proof(index: u64, extra: Option<Vec<u8>>) -> TlogProof {
    let log = log();
    TlogProof {
        extra,
        index,
        hashes: prove_record(LOG_SIZE, index, &log.store).expect("prove"),
        checkpoint: log.signed.clone(),
    }
}

/// Note verifiers: the fuzz log key, Go's PeterNeumann and sum.golang.org.
pub fn note_verifiers() -> &'static [NoteVerifier] {
    static V: OnceLock<Vec<NoteVerifier>> = OnceLock::new();
    V.get_or_init(|| {
        vec![
            log().signer.verifier().clone(),
            NoteVerifier::from_key_string(PETER_NEUMANN).expect("go key"),
            NoteVerifier::from_key_string(SUM_GOLANG_ORG).expect("sumdb key"),
        ]
    })
}

/// The Ed25519 token key: RFC 8037 Appendix A.1's private key, as PKCS#8 v1.
pub fn token_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        // RFC 8037 A.1 `d`, base64url nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A.
        const SEED: [u8; 32] = [
            0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec,
            0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03,
            0x1c, 0xae, 0x7f, 0x60,
        ];
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&SEED);
        SigningKey::from_pkcs8_der(Algorithm::EdDSA, &der).expect("RFC 8037 key")
    })
}

/// The token key set: [`token_key`]'s public key and RFC 7515 A.3's ES256 key.
pub fn key_set() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys = KeySet::new();
        let ed = VerifyingKey::from_jwk(token_key().verifying_key().jwk()).expect("own key");
        keys.insert(ed);
        let case: serde_json::Value = serde_json::from_str(include_str!(
            "../../crates/core/tests/data/rfc7515_a3_es256.json"
        ))
        .expect("vector");
        let es: Jwk = serde_json::from_value(case["jwk"].clone()).expect("jwk");
        keys.insert(VerifyingKey::from_jwk(&es).expect("RFC 7515 A.3 key"));
        keys
    })
}

/// Options accepting [`ISSUER`].
pub fn verify_options() -> VerifyOptions {
    VerifyOptions::for_issuer(ISSUER)
}

/// Claims valid at [`NOW`].
pub fn claims() -> AgentClaims {
    AgentClaims {
        iss: ISSUER.to_owned(),
        sub: AgentId::from_random([0x11; 16]),
        aud: Some(Audience::One("https://api.receiver.example".to_owned())),
        iat: NOW - 10,
        nbf: Some(NOW - 10),
        exp: NOW + 890,
        jti: TokenId::from_random([0x22; 16]),
        agent: AgentInfo {
            name: "Portfolio assistant".to_owned(),
            issuer: "apexwealth.com".to_owned(),
            scopes: vec!["read:portfolio".to_owned()],
            description: None,
        },
        scope: Some("read:portfolio".to_owned()),
        user: None,
        policy: None,
        policy_hash: None,
        cnf: None,
        act: None,
        ancestor_jtis: None,
    }
}
