//! Domain-verified issuers: an issuer proves it controls a domain by publishing a
//! JWKS at `https://<domain>/.well-known/jwks.json` that holds one of its registered,
//! unrevoked keys (compared by RFC 7638 thumbprint, computed by the registry; the
//! published `kid` members are not trusted), and proves it holds that key's private
//! half with a domain proof ([`bonafide_core::domain_proof`]) signed by it: a public
//! key is public, so without the proof anyone could register the key a victim
//! publishes and verify the victim's domain. The proof is checked before anything is
//! fetched. The fetch follows [`crate::fetch`]'s SSRF rules. Once verified, verify
//! answers for the issuer's agents say `trust_level: "domain_verified"` (else
//! `"registered"`).
//!
//! This is proof of control of the domain's web server at the time of the fetch, no
//! more, and it says nothing about who owns the domain. It counts for
//! `Config::domain_verification_ttl` (30 days by default) and only while the key
//! found is unrevoked; the issuer renews it by verifying again (the registry does not
//! fetch on its own).
//! One domain per issuer (verifying another replaces it), one issuer per domain.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::domain_proof::{self, DomainProofError, Expected};
use bonafide_core::keys::{Jwk, VerifyingKey};
use bonafide_core::token::KeySet;
use bonafide_store::{IssuerDomain, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit_change;
use crate::auth::IssuerAuth;
use crate::error::{ApiError, ApiJson, ErrorCode};
use crate::fetch::{self, FetchLimits};
use crate::state::AppState;
use crate::time::rfc3339_ms;
use crate::write::{Change, Part};

/// Most keys of a fetched JWKS that are looked at.
const MAX_JWKS_KEYS: usize = 100;

/// `POST /v1/issuer/verify-domain` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyDomain {
    /// A DNS name: ASCII letters, digits and hyphens in dot-separated labels of 1 to
    /// 63 characters, at most 253 in all (lowercased); no IP address, no port, no
    /// trailing dot.
    #[schema(value_type = crate::openapi::values::Domain)]
    pub domain: String,
    /// Where the JWKS is. Must be `https://<domain>/.well-known/jwks.json` (the
    /// default) unless the registry runs with the test-only
    /// `allow_insecure_loopback_fetch` switch, which also allows
    /// `http://127.0.0.1:<port>/…` and `http://localhost:<port>/…`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Required: a domain proof, a compact JWS with header `typ`
    /// `bonafide-domain-proof+jwt` and `kid` the RFC 7638 thumbprint of the
    /// registered key published in the JWKS, signed by that key's private half, over
    /// exactly `{iss: <issuer id>, domain, aud: <registry public URL>, iat, jti?}`
    /// with `iat` within 300 s of the registry's clock. `bonafide issuer
    /// verify-domain --key FILE` makes one.
    #[serde(default)]
    pub proof: Option<String>,
}

/// `POST /v1/issuer/verify-domain` answer: the issuer as it now stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerDomainView {
    /// `iss_…`.
    pub issuer_id: String,
    /// The issuer's registered name.
    pub name: String,
    /// The verified domain.
    pub domain: String,
    /// Always true in this answer.
    pub domain_verified: bool,
    /// RFC 3339.
    pub domain_verified_at: String,
    /// The registered key found in the published JWKS (RFC 7638 thumbprint).
    pub kid: String,
    /// Where the JWKS was fetched.
    pub jwks_url: String,
    /// `domain_verified`: what verify answers for this issuer's agents now say.
    pub trust_level: String,
    /// The domain `trust_level` is about (the verified domain).
    pub issuer_domain: String,
}

fn proof_invalid(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DomainProofInvalid,
        message,
    )
}

fn not_verified(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DomainNotVerified,
        message,
    )
}

/// A DNS name as the registry accepts it: lowercase ASCII LDH labels (RFC 1035
/// §2.3.1, with RFC 1123's leading digits), 1 to 63 characters each, at most 253 in
/// all, not starting or ending with a hyphen; the last label not all digits (so no
/// IPv4 literal, in any of its spellings). No IDNA: an internationalised name is
/// sent as its `xn--` form.
pub fn normalize_domain(input: &str) -> Result<String, String> {
    let d = input.to_ascii_lowercase();
    if d.is_empty() || d.len() > 253 {
        return Err("`domain` must be 1 to 253 characters".into());
    }
    let labels: Vec<&str> = d.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(
                "`domain` must be a DNS name: dot-separated labels of 1 to 63 letters, digits and hyphens (not first or last), without scheme, port, path or trailing dot"
                    .into(),
            );
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("`domain` must be a DNS name, not an IP address".into());
    }
    Ok(d)
}

/// The URL to fetch: the well-known one, or (test switch only) a loopback `http` URL.
fn jwks_url(state: &AppState, domain: &str, asked: Option<&str>) -> Result<String, ApiError> {
    let well_known = format!("https://{domain}/.well-known/jwks.json");
    let Some(asked) = asked else {
        return Ok(well_known);
    };
    if asked == well_known {
        return Ok(well_known);
    }
    let loopback = ["http://127.0.0.1:", "http://localhost:", "http://[::1]:"]
        .iter()
        .any(|p| asked.starts_with(p));
    if state.config.allow_insecure_loopback_fetch && loopback {
        return Ok(asked.to_owned());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::JwksUrlRefused,
        format!("`jwks_url` must be `{well_known}`: a domain is proven by its own well-known JWKS"),
    ))
}

/// The thumbprints of the public keys in a JWKS document (members that are not
/// usable public JWKs are skipped; a published private key never counts).
fn published_thumbprints(body: &[u8]) -> Result<Vec<String>, String> {
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("it has no `keys` array (RFC 7517 §5)")?;
    Ok(keys
        .iter()
        .take(MAX_JWKS_KEYS)
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|jwk| jwk.check_public().is_ok())
        .filter_map(|jwk| jwk.thumbprint().ok())
        .collect())
}

/// Proves the caller controls `domain`: checks the domain proof with the caller's
/// registered, unrevoked key it names, then fetches the domain's JWKS (SSRF-safe, see
/// [`crate::fetch`]) and requires that key in it. On success the issuer is
/// `domain_verified`, audited as `issuer.domain_verified` in the same transaction.
#[utoipa::path(post, path = "/v1/issuer/verify-domain", tag = "issuer",
    request_body = VerifyDomain, security(("api_key" = [])),
    responses((status = 200, body = IssuerDomainView),
              (status = 401), (status = 403),
              (status = 409, description = "another issuer has verified this domain"),
              (status = 422, description = "`domain` is not a DNS name (`DOMAIN_INVALID`), `jwks_url` is not allowed (`JWKS_URL_REFUSED`), `proof` is missing or does not hold (`DOMAIN_PROOF_INVALID`, with why), or the fetch failed or the JWKS lacks the proof's key (`DOMAIN_NOT_VERIFIED`, with which)")))]
pub async fn verify_domain(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<VerifyDomain>,
) -> Result<ApiJson<IssuerDomainView>, ApiError> {
    let domain = normalize_domain(&body.domain).map_err(|m| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::DomainInvalid,
            m,
        )
    })?;
    let url = jwks_url(&state, &domain, body.jwks_url.as_deref())?;
    let taken = || {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("`{domain}` is verified by another issuer"),
        )
    };
    // Before fetching anything; the store checks again when it commits.
    if state
        .store
        .issuer_domains()
        .await?
        .iter()
        .any(|d| d.domain == domain && d.issuer_id != issuer.id)
    {
        return Err(taken());
    }
    let mut live = KeySet::new();
    for k in state.store.issuer_keys(&issuer.id).await? {
        if k.revoked_at_ms.is_some() {
            continue;
        }
        let key = serde_json::from_str::<Jwk>(&k.jwk)
            .ok()
            .and_then(|jwk| VerifyingKey::from_jwk(&jwk).ok())
            .ok_or_else(|| {
                ApiError::internal(format!("stored issuer key `{}` does not parse", k.kid))
            })?;
        live.insert(key);
    }
    if live.is_empty() {
        return Err(not_verified(format!(
            "`{domain}` not verified: no matching key: this issuer has no registered, unrevoked key (register one with POST /v1/issuer/keys and publish it)"
        )));
    }
    // Proof of possession, before anything is fetched.
    let Some(proof) = body.proof.as_deref() else {
        return Err(proof_invalid(format!(
            "`{domain}` not verified: `proof` is required: a `bonafide-domain-proof+jwt` signed by the private key of the registered key you publish (`bonafide issuer verify-domain --key FILE` makes one)"
        )));
    };
    let expected = Expected {
        issuer: issuer.id.as_str(),
        domain: &domain,
        audience: &state.config.public_url,
        now: state.now_ms() / 1000,
    };
    let proven = domain_proof::verify(proof, &live, &expected).map_err(|e| {
        let hint = match e {
            DomainProofError::Mismatch { .. } | DomainProofError::Stale { .. } => {
                " (sign a new proof for this issuer, domain and registry)"
            }
            _ => "",
        };
        proof_invalid(format!("`{domain}` not verified: {e}{hint}"))
    })?;
    let limits = FetchLimits {
        timeout: state.config.jwks_fetch_timeout,
        max_bytes: state.config.jwks_fetch_max_bytes,
        allow_insecure_loopback: state.config.allow_insecure_loopback_fetch,
        ..FetchLimits::default()
    };
    let body = fetch::fetch_json(&url, &limits)
        .await
        .map_err(|e| not_verified(format!("`{domain}` not verified: fetch failed: {e}")))?;
    let published = published_thumbprints(&body).map_err(|e| {
        not_verified(format!(
            "`{domain}` not verified: fetch failed: the body is not a JWKS: {e}"
        ))
    })?;
    if !published.contains(&proven.kid) {
        return Err(not_verified(format!(
            "`{domain}` not verified: no matching key: the JWKS holds {} usable public key(s), not the key `{}` that signed the proof",
            published.len(),
            proven.kid
        )));
    }
    let kid = proven.kid;
    let now = state.now_ms();
    let record = IssuerDomain {
        issuer_id: issuer.id.clone(),
        domain: domain.clone(),
        kid: kid.clone(),
        verified_at_ms: now,
    };
    let audit = audit_change(
        EventType::IssuerDomainVerified,
        now,
        Actor::Issuer {
            id: issuer.id.to_string(),
        },
        None,
        Some(&issuer.id),
        |e| {
            e.kid = Some(kid.clone());
            e.note = Some(domain.clone());
        },
    )?;
    let stored = record.clone();
    let conflict = taken();
    state
        .commit(
            "verify domain",
            Part::IssuerDomains,
            Box::new(move |state| {
                Box::pin(async move {
                    state
                        .store
                        .set_issuer_domain(&stored, &audit)
                        .await
                        .map_err(|e| match e {
                            StoreError::Conflict(_) => conflict,
                            StoreError::NotFound => not_verified(format!(
                                "`{}` not verified: no matching key: key `{}` was revoked meanwhile",
                                stored.domain, stored.kid
                            )),
                            other => other.into(),
                        })?;
                    Ok(((), Change::IssuerDomains))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, domain = %record.domain, kid = %record.kid, "issuer domain verified");
    Ok(ApiJson(IssuerDomainView {
        issuer_id: issuer.id.to_string(),
        name: issuer.name,
        domain: record.domain.clone(),
        domain_verified: true,
        domain_verified_at: rfc3339_ms(now),
        kid: record.kid,
        jwks_url: url,
        trust_level: "domain_verified".into(),
        issuer_domain: record.domain,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_dns_names() {
        for (input, want) in [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("a-b.c0.example", "a-b.c0.example"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("localhost", "localhost"),
            ("1password.com", "1password.com"),
        ] {
            assert_eq!(normalize_domain(input).as_deref(), Ok(want), "{input}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        for bad in [
            "",
            "127.0.0.1",
            "10.0.0.1",
            "0x7f.1",
            "[::1]",
            "::1",
            "example.com:443",
            "example.com.",
            ".example.com",
            "a..b",
            "-a.com",
            "a-.com",
            "exa_mple.com",
            "https://example.com",
            "example.com/path",
            "bücher.example",
            "user@example.com",
            "example .com",
            long_label.as_str(),
            too_long.as_str(),
        ] {
            assert!(normalize_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_usable_public_keys_count() {
        let key = bonafide_core::keys::SigningKey::generate(bonafide_core::keys::Algorithm::EdDSA)
            .unwrap();
        let public = serde_json::to_value(key.verifying_key().jwk()).unwrap();
        let mut private = public.clone();
        private["d"] = serde_json::Value::from("AAAA");
        let doc = serde_json::json!({"keys": [{"kty": "nope"}, private, public, 7]});
        let got = published_thumbprints(doc.to_string().as_bytes()).unwrap();
        assert_eq!(got, vec![key.kid().to_owned()]);
        assert!(published_thumbprints(br#"{"keys": {}}"#).is_err());
        assert!(published_thumbprints(br#"{}"#).is_err());
    }
}
