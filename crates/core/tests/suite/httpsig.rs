//! HTTP Message Signature vectors, read from `tests/vectors/httpsig/`.
//!
//! - `rfc9421_*`: RFC 9421 Appendix B.2.6 (ed25519, request) and B.2.4
//!   (ecdsa-p256-sha256, response) verbatim, with their exact signature bases. Their
//!   keyids (`test-key-ed25519`) are names, not thumbprints: the key lookup maps them.
//! - `web_bot_auth_*`: signed by the independent `web-bot-auth` npm package through
//!   `interop/node/web_bot_auth_sign.mjs` (`generate.mjs` beside them remakes them).
//! - `fail_*`: one change each to a good case, with the error it must give.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use bonafide_core::httpsig::{self, Check, HttpSigError, Message, SignParams, Verified};
use bonafide_core::keys::{Algorithm, Jwk, SigningKey, VerifyingKey};
use serde::Deserialize;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/httpsig")
}

fn read<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RfcCase {
    source: String,
    public_key_pem: String,
    #[serde(default)]
    private_key_pem: Option<String>,
    keyid: String,
    label: String,
    now: i64,
    message: RfcMessage,
    signature_base: String,
    covered: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RfcMessage {
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    headers: Vec<(String, String)>,
}

impl RfcMessage {
    fn message(&self) -> Message<'_> {
        match self.status {
            Some(status) => Message::Response {
                status,
                headers: &self.headers,
            },
            None => Message::Request {
                method: self.method.as_deref().unwrap(),
                url: self.url.as_deref().unwrap(),
                headers: &self.headers,
            },
        }
    }
}

/// RFC 9421 examples carry no `tag`, no `expires` and no `@authority` in B.2.4.
fn rfc_check(now: i64) -> Check<'static> {
    Check {
        required_tag: None,
        required_components: &[],
        require_expires: false,
        ..Check::web_bot_auth(now)
    }
}

fn run_rfc(name: &str) -> (RfcCase, Verified) {
    let case: RfcCase = read(name);
    assert!(case.source.starts_with("RFC 9421"));
    let msg = case.message.message();
    let base = httpsig::signature_base(&msg, &case.label).unwrap();
    assert_eq!(base, case.signature_base, "{name}: signature base");
    let verified = httpsig::verify(&msg, &rfc_check(case.now), |keyid| {
        (keyid == case.keyid).then(|| VerifyingKey::from_public_pem(&case.public_key_pem).unwrap())
    })
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(verified.label, case.label);
    assert_eq!(verified.keyid, case.keyid);
    assert_eq!(verified.covered, case.covered);
    assert_eq!(verified.created, 1618884473);
    (case, verified)
}

#[test]
fn rfc9421_b2_6_ed25519_verifies() {
    let (_, v) = run_rfc("rfc9421_b2_6_ed25519.json");
    assert_eq!(v.alg, Algorithm::EdDSA);
    assert_eq!(v.expires, None);
    assert_eq!(v.tag, None);
}

#[test]
fn rfc9421_b2_6_ed25519_is_reproduced_by_sign() {
    // Ed25519 is deterministic: signing the same components and parameters must give
    // the RFC's exact Signature-Input and Signature.
    let case: RfcCase = read("rfc9421_b2_6_ed25519.json");
    let key = SigningKey::from_pkcs8_pem(case.private_key_pem.as_deref().unwrap()).unwrap();
    let unsigned: Vec<(String, String)> = case
        .message
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("Signature"))
        .cloned()
        .collect();
    let msg = Message::Request {
        method: "POST",
        url: case.message.url.as_deref().unwrap(),
        headers: &unsigned,
    };
    let covered: Vec<&str> = case.covered.iter().map(String::as_str).collect();
    let signed = httpsig::sign(
        &key,
        &msg,
        &covered,
        &SignParams {
            label: "sig-b26",
            created: 1618884473,
            expires: None,
            keyid: Some("test-key-ed25519"),
            nonce: None,
            tag: None,
            include_alg: false,
        },
    )
    .unwrap();
    let header = |n: &str| {
        case.message
            .headers
            .iter()
            .find(|(k, _)| k == n)
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(signed.signature_input, header("Signature-Input"));
    assert_eq!(signed.signature, header("Signature"));
}

#[test]
fn rfc9421_b2_4_ecdsa_p256_response_verifies() {
    let (_, v) = run_rfc("rfc9421_b2_4_ecdsa_p256.json");
    assert_eq!(v.alg, Algorithm::ES256);
}

#[test]
fn rfc9421_vectors_fail_when_a_covered_header_changes() {
    for name in ["rfc9421_b2_6_ed25519.json", "rfc9421_b2_4_ecdsa_p256.json"] {
        let mut case: RfcCase = read(name);
        for h in &mut case.message.headers {
            if h.0 == "Content-Type" {
                h.1 = "text/plain".into();
            }
        }
        let err = httpsig::verify(&case.message.message(), &rfc_check(case.now), |_| {
            Some(VerifyingKey::from_public_pem(&case.public_key_pem).unwrap())
        })
        .unwrap_err();
        assert_eq!(err, HttpSigError::BadSignature, "{name}");
    }
}

#[test]
fn rfc9421_b2_6_refuses_the_wrong_algorithm_key() {
    let case: RfcCase = read("rfc9421_b2_6_ed25519.json");
    let p256: RfcCase = read("rfc9421_b2_4_ecdsa_p256.json");
    let err = httpsig::verify(&case.message.message(), &rfc_check(case.now), |_| {
        Some(VerifyingKey::from_public_pem(&p256.public_key_pem).unwrap())
    })
    .unwrap_err();
    assert_eq!(err, HttpSigError::BadSignature);
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WbaCase {
    source: String,
    public_jwk: Jwk,
    now: i64,
    request: WbaRequest,
    #[serde(default)]
    expect: Option<WbaExpect>,
    #[serde(default)]
    expect_error: Option<String>,
    #[serde(default)]
    derived_from: Option<String>,
    #[serde(default)]
    change: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WbaRequest {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WbaExpect {
    label: String,
    keyid: String,
    alg: String,
    created: i64,
    expires: i64,
    nonce: String,
    tag: String,
    covered: Vec<String>,
}

fn verify_wba(
    case: &WbaCase,
    req: &WbaRequest,
    now: i64,
) -> Result<httpsig::Verified, HttpSigError> {
    let key = VerifyingKey::from_jwk(&case.public_jwk).unwrap();
    let msg = Message::Request {
        method: &req.method,
        url: &req.url,
        headers: &req.headers,
    };
    httpsig::verify(&msg, &Check::web_bot_auth(now), |keyid| {
        (keyid == key.kid()).then(|| VerifyingKey::from_jwk(&case.public_jwk).unwrap())
    })
}

const WBA_CASES: &[&str] = &[
    "web_bot_auth_ed25519_signature_agent.json",
    "web_bot_auth_ed25519_default.json",
    "web_bot_auth_ed25519_port.json",
    "web_bot_auth_ecdsa_p256.json",
];

#[test]
fn web_bot_auth_package_signatures_verify() {
    for name in WBA_CASES {
        let case: WbaCase = read(name);
        assert!(case.source.starts_with("web-bot-auth 0.1.3"));
        let expect = case.expect.as_ref().unwrap();
        let v =
            verify_wba(&case, &case.request, case.now).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.label, expect.label, "{name}");
        assert_eq!(v.keyid, expect.keyid, "{name}");
        // The package's keyid is the RFC 7638 thumbprint, as Bonafide computes it.
        assert_eq!(v.keyid, case.public_jwk.thumbprint().unwrap(), "{name}");
        let alg = match expect.alg.as_str() {
            "ed25519" => Algorithm::EdDSA,
            "ecdsa-p256-sha256" => Algorithm::ES256,
            other => panic!("{other}"),
        };
        assert_eq!(v.alg, alg, "{name}");
        assert_eq!(v.created, expect.created, "{name}");
        assert_eq!(v.expires, Some(expect.expires), "{name}");
        assert_eq!(v.nonce.as_deref(), Some(expect.nonce.as_str()), "{name}");
        assert_eq!(v.tag.as_deref(), Some(expect.tag.as_str()), "{name}");
        assert_eq!(v.covered, expect.covered, "{name}");
        let agent = case
            .request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("signature-agent"))
            .map(|(_, v)| v.clone());
        assert_eq!(v.signature_agent, agent, "{name}");
    }
}

#[test]
fn web_bot_auth_vectors_fail_on_each_tampered_component() {
    for name in WBA_CASES {
        let case: WbaCase = read(name);
        let covered = case.expect.as_ref().unwrap().covered.clone();
        for component in &covered {
            let mut req = case.request.clone();
            match component.as_str() {
                "@authority" | "@target-uri" => {
                    req.url = req.url.replacen("example.com", "example.net", 1);
                }
                "@scheme" => {
                    req.url = req.url.replacen("http://", "https://", 1);
                }
                "@method" => req.method = "PUT".into(),
                "@path" | "@request-target" => {
                    req.url = req.url.replacen(".com/", ".com/x", 1).replacen(
                        ".com:8080/",
                        ".com:8080/x",
                        1,
                    );
                }
                "@query" => {
                    req.url = if req.url.contains('?') {
                        format!("{}z", req.url)
                    } else {
                        format!("{}?z", req.url)
                    };
                }
                header => {
                    for h in &mut req.headers {
                        if h.0.eq_ignore_ascii_case(header) {
                            h.1.push('x');
                        }
                    }
                }
            }
            assert_ne!(
                (req.method.as_str(), req.url.as_str(), &req.headers),
                (
                    case.request.method.as_str(),
                    case.request.url.as_str(),
                    &case.request.headers
                ),
                "{name}: {component} not changed"
            );
            let err = verify_wba(&case, &req, case.now).unwrap_err();
            assert_eq!(err, HttpSigError::BadSignature, "{name}: {component}");
        }
        // Dropping a covered header names it.
        if covered.iter().any(|c| c == "content-type") {
            let mut req = case.request.clone();
            req.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("content-type"));
            let err = verify_wba(&case, &req, case.now).unwrap_err();
            assert_eq!(err, HttpSigError::MissingComponent("content-type".into()));
        }
    }
}

#[test]
fn web_bot_auth_fail_vectors() {
    let mut seen = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("fail_") {
            continue;
        }
        seen += 1;
        let case: WbaCase = read(&name);
        assert!(
            case.derived_from.is_some() && case.change.is_some(),
            "{name}"
        );
        let want = case.expect_error.as_deref().unwrap();
        let err = verify_wba(&case, &case.request, case.now).unwrap_err();
        let got = format!("{err:?}");
        assert!(got.starts_with(want), "{name}: want {want}, got {got}");
    }
    assert!(seen >= 4);
}

#[test]
fn web_bot_auth_unknown_key_is_refused() {
    let case: WbaCase = read("web_bot_auth_ed25519_default.json");
    let msg = Message::Request {
        method: &case.request.method,
        url: &case.request.url,
        headers: &case.request.headers,
    };
    let err = httpsig::verify(&msg, &Check::web_bot_auth(case.now), |_| None).unwrap_err();
    assert_eq!(
        err,
        HttpSigError::UnknownKey("poqkLGiymh_W0uP6PZFw-dvez3QJT5SolqXBCW38r0U".into())
    );
}

#[test]
fn bonafide_signature_with_the_package_parameters_verifies() {
    // Bonafide's signer with the key, components and parameters of the package's
    // Signature-Agent case (its own parameter order, so not the same bytes).
    let case: WbaCase = read("web_bot_auth_ed25519_signature_agent.json");
    let rfc: RfcCase = read("rfc9421_b2_6_ed25519.json");
    let key = SigningKey::from_pkcs8_pem(rfc.private_key_pem.as_deref().unwrap()).unwrap();
    let mut headers: Vec<(String, String)> = vec![(
        "Signature-Agent".into(),
        "\"https://signature-agent.test\"".into(),
    )];
    let expect = case.expect.as_ref().unwrap();
    let signed = httpsig::sign(
        &key,
        &Message::Request {
            method: "GET",
            url: &case.request.url,
            headers: &headers,
        },
        &["@authority", "signature-agent"],
        &SignParams {
            label: "sig1",
            created: expect.created,
            expires: Some(expect.expires),
            keyid: None,
            nonce: Some(&expect.nonce),
            tag: Some(httpsig::WEB_BOT_AUTH_TAG),
            include_alg: true,
        },
    )
    .unwrap();
    headers.push(("Signature-Input".into(), signed.signature_input));
    headers.push(("Signature".into(), signed.signature));
    let req = WbaRequest {
        method: "GET".into(),
        url: case.request.url.clone(),
        headers,
    };
    let v = verify_wba(&case, &req, case.now).unwrap();
    assert_eq!(v.keyid, expect.keyid);
    assert_eq!(v.covered, expect.covered);
}
