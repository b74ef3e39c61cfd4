//! Conformance vectors: what every implementation of a Bonafide verifier (the Rust
//! core and receiver layer, the TypeScript and Python SDKs, anyone's) must answer for
//! a given input, as JSON files under `conformance/` at the repository root.
//!
//! The vectors are made here, from the Rust core, deterministically (fixed Ed25519
//! keys from fixed seeds, fixed clocks; Ed25519 signatures are deterministic), so
//! `gen-vectors` writes the same bytes every time and a test fails when the checked-in
//! files and the generator disagree. Every case states its expected outcome by hand
//! (the rule it exercises); generating checks the core agrees, so a vector is never
//! just "whatever the core did".

use std::path::{Path, PathBuf};

mod delegation;
mod dpop;
mod httpsig;
mod policies;
mod receipts;
mod replays;
mod status_lists;
mod tokens;

/// Something went wrong making a vector: a bug in the generator or a disagreement
/// between a case's stated outcome and the core.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// The core does not give the outcome the case states.
    #[error("vector `{case}`: expected {expected}, the core says {found}")]
    Disagrees {
        /// The case.
        case: String,
        /// What the case states.
        expected: String,
        /// What the core answered.
        found: String,
    },
    /// A key, a signature or JSON could not be made.
    #[error("vector `{case}`: {message}")]
    Build {
        /// The case.
        case: String,
        /// What failed.
        message: String,
    },
    /// A source file (the core's policy cases) could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// One generated file: its path under `conformance/` and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorFile {
    /// Relative to `conformance/`, `/`-separated.
    pub path: String,
    /// Pretty JSON, one trailing newline.
    pub text: String,
}

/// The repository root (this crate lives at `crates/vectors`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every vector file, in a fixed order.
pub fn generate() -> Result<Vec<VectorFile>, VectorError> {
    let mut files = vec![
        tokens::file()?,
        dpop::file()?,
        httpsig::file()?,
        replays::file()?,
        delegation::file()?,
        status_lists::file()?,
        receipts::file()?,
    ];
    files.extend(policies::files(&repo_root())?);
    Ok(files)
}

pub(crate) fn pretty(path: &str, value: &serde_json::Value) -> Result<VectorFile, VectorError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| VectorError::Build {
        case: path.to_owned(),
        message: e.to_string(),
    })?;
    text.push('\n');
    Ok(VectorFile {
        path: path.to_owned(),
        text,
    })
}

/// An Ed25519 key from a fixed 32-byte seed (PKCS#8 v1, RFC 8410 §7): the same key,
/// and so the same signatures, on every run.
pub(crate) fn ed25519(seed: u8) -> Result<bonafide_core::keys::SigningKey, VectorError> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    bonafide_core::keys::SigningKey::from_pkcs8_der(bonafide_core::keys::Algorithm::EdDSA, &der)
        .map_err(|e| VectorError::Build {
            case: format!("key {seed}"),
            message: e.to_string(),
        })
}

/// A compact JWS over `header` and `payload` as given (any header, tampered or
/// not), signed by `key`.
pub(crate) fn raw_jws(
    key: &bonafide_core::keys::SigningKey,
    header: &serde_json::Value,
    payload: &[u8],
    case: &str,
) -> Result<String, VectorError> {
    use bonafide_core::b64;
    let mut out = b64::encode(header.to_string().as_bytes());
    out.push('.');
    out.push_str(&b64::encode(payload));
    let sig = key.sign(out.as_bytes()).map_err(|e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    })?;
    out.push('.');
    out.push_str(&b64::encode(&sig));
    Ok(out)
}

/// A compact JWS over header and payload given as exact JSON text (to carry what a
/// JSON serialiser would not write: a duplicate member, a chosen order), signed by
/// `key`.
pub(crate) fn raw_jws_text(
    key: &bonafide_core::keys::SigningKey,
    header: &str,
    payload: &str,
    case: &str,
) -> Result<String, VectorError> {
    use bonafide_core::b64;
    let mut out = b64::encode(header.as_bytes());
    out.push('.');
    out.push_str(&b64::encode(payload.as_bytes()));
    let sig = key.sign(out.as_bytes()).map_err(|e| VectorError::Build {
        case: case.to_owned(),
        message: e.to_string(),
    })?;
    out.push('.');
    out.push_str(&b64::encode(&sig));
    Ok(out)
}

/// The public JWK of `key` as JSON (`kty`, `crv`, `x`, `kid` …).
pub(crate) fn public_jwk(
    key: &bonafide_core::keys::SigningKey,
) -> Result<serde_json::Value, VectorError> {
    serde_json::to_value(key.verifying_key().jwk()).map_err(|e| VectorError::Build {
        case: format!("jwk {}", key.kid()),
        message: e.to_string(),
    })
}

/// The private JWK of an Ed25519 key made by [`ed25519`] (RFC 8037 §2: `d` is the
/// 32-byte seed, base64url), for vectors where an implementation must sign.
pub(crate) fn private_jwk(
    key: &bonafide_core::keys::SigningKey,
) -> Result<serde_json::Value, VectorError> {
    let mut jwk = public_jwk(key)?;
    let seed = key.ed25519_seed().ok_or_else(|| VectorError::Build {
        case: format!("jwk {}", key.kid()),
        message: "not an Ed25519 key".into(),
    })?;
    jwk["d"] = serde_json::Value::from(bonafide_core::b64::encode(&seed));
    Ok(jwk)
}

/// The vectors' registry: `iss` of its agent tokens, whose key is seed 1 (`jwks` of
/// `tokens.json`).
pub(crate) const REGISTRY: &str = "https://registry.example";

/// A real agent token of the vectors' registry bound to the agent key whose RFC 7638
/// thumbprint is `jkt` (`cnf.jkt`), valid from `now − 10` to `now + 3600`: the token a
/// DPoP proof or message signature accompanies, so that a receiver can run those
/// vectors end to end (token, then proof). Returned with the registry's JWKS; checked
/// with the core before it is used.
pub(crate) fn bound_token(
    jkt: &str,
    jti_seed: u8,
    now: i64,
    case: &str,
) -> Result<(String, bonafide_core::keys::Jwks), VectorError> {
    use bonafide_core::keys::VerifyingKey;
    use bonafide_core::token::{self, KeySet, VerifyOptions};
    let build = |message: String| VectorError::Build {
        case: case.to_owned(),
        message,
    };
    let registry = ed25519(1)?;
    let claims = serde_json::json!({
        "iss": REGISTRY,
        "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "iat": now - 10,
        "exp": now + 3600,
        "jti": bonafide_core::ids::TokenId::from_random([jti_seed; 16]).as_str(),
        "agent": {"name": "PortfolioBot", "issuer": "apexwealth.example", "scopes": ["payments:write"]},
        "cnf": {"jkt": jkt},
    });
    let claims = serde_json::from_value(claims).map_err(|e| build(e.to_string()))?;
    let text = token::sign(&registry, &claims).map_err(|e| build(e.to_string()))?;
    let mut keys = KeySet::new();
    keys.insert(
        VerifyingKey::from_jwk(registry.verifying_key().jwk()).map_err(|e| build(e.to_string()))?,
    );
    let verified = token::verify(&text, &keys, &VerifyOptions::for_issuer(REGISTRY), now)
        .map_err(|e| build(format!("the bound token does not verify: {e}")))?;
    if verified.claims.cnf.as_ref().map(|c| c.jkt.as_str()) != Some(jkt) {
        return Err(build(
            "the bound token is not bound to the agent key".into(),
        ));
    }
    Ok((text, keys.to_jwks()))
}
