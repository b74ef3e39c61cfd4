//! DPoP proofs from outside Bonafide, read from `tests/vectors/dpop/`: the RFC 9449
//! examples (verbatim) and proofs made by jwcrypto and jose (`make_interop.sh`).
//!
//! Each file is one case; `fail_` files are negative cases carrying the exact error
//! (`Debug` form) [`dpop::verify`] must return. See `tests/vectors/dpop/README.md`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use bonafide_core::dpop::{self, DpopError, ProofCheck, VerifiedProof};
use bonafide_core::keys::{Algorithm, Jwk};
use bonafide_core::{b64, json};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    source: String,
    proof: String,
    /// The token's `cnf.jkt`: published by the RFC, or computed by the library.
    jkt: String,
    alg: Algorithm,
    htm: String,
    htu: String,
    access_token: Option<String>,
    iat: i64,
    jti: String,
    /// The `ath` the RFC publishes for `access_token`.
    #[serde(default)]
    ath: Option<String>,
    /// The verifier's clock; default `iat`.
    #[serde(default)]
    now: Option<i64>,
    /// `fail_` cases: the expected error, as `format!("{:?}")`.
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    change: Option<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/dpop")
}

fn load(name: &str) -> Case {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn cases() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn check(case: &Case) -> ProofCheck<'_> {
    ProofCheck {
        access_token: case.access_token.as_deref(),
        ..ProofCheck::new(
            &case.htm,
            &case.htu,
            &case.jkt,
            "",
            case.now.unwrap_or(case.iat),
        )
    }
}

fn run(name: &str) -> Result<VerifiedProof, DpopError> {
    let case = load(name);
    dpop::verify(&case.proof, &check(&case))
}

/// The thumbprint of the proof's `jwk`, computed from the header directly.
fn header_jkt(proof: &str) -> String {
    let header: serde_json::Value =
        serde_json::from_slice(&b64::decode(proof.split('.').next().unwrap()).unwrap()).unwrap();
    let jwk: Jwk = serde_json::from_value(header["jwk"].clone()).unwrap();
    jwk.thumbprint().unwrap()
}

#[test]
fn every_case_gives_its_expected_outcome() {
    let names = cases();
    assert!(names.len() >= 16, "vectors missing: {names:?}");
    for name in names {
        let case = load(&name);
        let got = dpop::verify(&case.proof, &check(&case));
        match (&case.error, name.starts_with("fail_")) {
            (None, false) => {
                let proof = got.unwrap_or_else(|e| panic!("{name} ({}): {e}", case.source));
                assert_eq!(
                    proof,
                    VerifiedProof {
                        jti: case.jti.clone(),
                        iat: case.iat,
                        alg: case.alg,
                        jkt: case.jkt.clone(),
                        replay_until: case.iat + dpop::DEFAULT_MAX_AGE_SECS,
                    },
                    "{name}"
                );
                assert_eq!(header_jkt(&case.proof), case.jkt, "{name}");
            }
            (Some(want), true) => {
                assert!(
                    case.derived_from.is_some() && case.change.is_some(),
                    "{name}"
                );
                let err = got.expect_err(&name);
                assert_eq!(&format!("{err:?}"), want, "{name}");
                assert_eq!(err.code(), "PROOF_INVALID");
            }
            _ => panic!("{name}: `fail_` files, and only they, carry `error`"),
        }
    }
}

#[test]
fn rfc9449_examples_with_the_published_thumbprint_and_ath() {
    // §6.1 Figure 9: the jkt of the key in the §5 (and §7.1) proofs.
    const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    for name in [
        "rfc9449_5_fig5_token_request.json",
        "rfc9449_5_fig7_refresh_request.json",
        "rfc9449_7_1_fig13_resource_request.json",
    ] {
        let case = load(name);
        assert_eq!(case.jkt, RFC_JKT);
        assert_eq!(header_jkt(&case.proof), RFC_JKT, "{name}");
        assert_eq!(run(name).unwrap().jkt, RFC_JKT);
    }
    let fig13 = load("rfc9449_7_1_fig13_resource_request.json");
    let token = fig13.access_token.as_deref().unwrap();
    assert_eq!(token, "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU");
    assert_eq!(
        dpop::access_token_hash(token),
        fig13.ath.as_deref().unwrap(),
        "RFC 9449 Figure 14 ath"
    );
    assert_eq!(
        dpop::access_token_hash(token),
        "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    );
}

#[test]
fn rfc9449_fig13_claims_as_figure_14_shows_them() {
    let case = load("rfc9449_7_1_fig13_resource_request.json");
    let payload = b64::decode(case.proof.split('.').nth(1).unwrap()).unwrap();
    json::check(&payload, json::JsonLimits::default()).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims,
        serde_json::json!({
            "jti": "e1j3V_bKic8-LAEB",
            "htm": "GET",
            "htu": "https://resource.example.org/protectedresource",
            "iat": 1562262618,
            "ath": "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        })
    );
}

#[test]
fn jwcrypto_and_jose_proofs_cover_every_algorithm() {
    for lib in ["jwcrypto", "jose"] {
        for (suffix, alg) in [
            ("eddsa", Algorithm::EdDSA),
            ("es256", Algorithm::ES256),
            ("rs256", Algorithm::RS256),
        ] {
            let name = format!("{lib}_{suffix}.json");
            let got = run(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got.alg, alg, "{name}");
        }
    }
    // make_interop.sh gives both libraries the same three keys: the thumbprints
    // jwcrypto and jose computed independently must agree.
    for suffix in ["eddsa", "es256", "rs256"] {
        assert_eq!(
            load(&format!("jwcrypto_{suffix}.json")).jkt,
            load(&format!("jose_{suffix}.json")).jkt,
            "{suffix}"
        );
    }
}

#[test]
fn every_valid_case_fails_once_changed() {
    for name in cases().into_iter().filter(|n| !n.starts_with("fail_")) {
        let case = load(&name);
        let c = check(&case);

        // A flipped bit in the signature.
        let (head, sig) = case.proof.rsplit_once('.').unwrap();
        let mut raw = b64::decode(sig).unwrap();
        raw[0] ^= 1;
        let forged = format!("{head}.{}", b64::encode(&raw));
        assert_eq!(
            dpop::verify(&forged, &c),
            Err(DpopError::BadSignature),
            "{name}"
        );

        // Another method, URI, token, key, or time.
        let other_htm = ProofCheck {
            htm: "PATCH",
            ..check(&case)
        };
        assert_eq!(
            dpop::verify(&case.proof, &other_htm),
            Err(DpopError::HtmMismatch)
        );
        let other_htu = ProofCheck {
            htu: "https://other.example/",
            ..check(&case)
        };
        assert_eq!(
            dpop::verify(&case.proof, &other_htu),
            Err(DpopError::HtuMismatch)
        );
        if case.access_token.is_some() {
            let other_token = ProofCheck {
                access_token: Some("another-token"),
                ..check(&case)
            };
            assert_eq!(
                dpop::verify(&case.proof, &other_token),
                Err(DpopError::AthMismatch)
            );
        }
        let other_key = ProofCheck {
            jkt: "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
            ..check(&case)
        };
        assert_eq!(
            dpop::verify(&case.proof, &other_key),
            Err(DpopError::ThumbprintMismatch)
        );
        let later = ProofCheck {
            now: case.iat + 3600,
            ..check(&case)
        };
        assert!(matches!(
            dpop::verify(&case.proof, &later),
            Err(DpopError::IatOutOfWindow { .. })
        ));

        // Equivalent spellings of the request URI still match (RFC 3986 §6.2.2-3).
        let (scheme, rest) = case.htu.split_once("://").unwrap();
        let shouting = format!(
            "{}://{rest}?query=ignored#and-fragment",
            scheme.to_ascii_uppercase()
        );
        let same = ProofCheck {
            htu: &shouting,
            ..check(&case)
        };
        assert_eq!(dpop::verify(&case.proof, &same), run(&name), "{name}");
    }
}
