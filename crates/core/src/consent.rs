//! AgentOAuth consent tokens (`ver` `act.v0.2` and `act.v0.3`), verified with a key
//! the caller chose from its own registrations, and turned into [`AgentClaims`] so
//! that a verifier applies every rule of agent tokens to them unchanged.
//!
//! What this is: a second reader for the claims AgentOAuth's SDK (`issueConsent`)
//! writes — `ver`, `iss`, `user`, `agent`, `scope`, `policy` (`pol.v0.2`),
//! `policy_hash`, `exp`, `jti`, and optionally `iat`, `nbf` and `aud` — in a compact
//! JWS signed with EdDSA. Other members (`nonce`, the legacy `limit`, and the
//! `act.v0.3` `intent` block, a WebAuthn approval) are ignored: `intent` is not
//! checked here, so an `act.v0.3` token is worth exactly what an `act.v0.2` one is.
//!
//! What this is not: a way to trust a key named by the token. The header's `kid` is
//! the issuer's own name for its key (e.g. `key-001`), not a thumbprint, so the caller
//! picks candidate keys from what it registered (see [`dangerous::candidate`]) and
//! passes each to [`verify`]; `crit` and every member of
//! [`crate::jws::FORBIDDEN_HEADERS`] (`jwk`, `jku`, `x5u`, `x5c`, …) are refused by
//! [`crate::jws::open`] exactly as for agent tokens.
//!
//! Typing: RFC 8725 §3.11 asks for explicit `typ`, but AgentOAuth writes `typ: JWT`
//! (or nothing), so these tokens cannot be typed. They are told apart from agent
//! tokens by the combination of `alg` EdDSA, `typ` absent or `JWT`, and `ver`; an
//! `agent+jwt` token is never read as a consent token and a consent token is never
//! read as an agent token (its `typ` is not `agent+jwt`).

use std::fmt;

use serde::Deserialize;

use crate::b64;
use crate::ids::{AgentId, IssuerId, TokenId};
use crate::json;
use crate::jws::{self, Compact, Header};
use crate::keys::{Algorithm, VerifyingKey};
use crate::policy::Policy;
#[cfg(test)]
use crate::token::AudienceRule;
use crate::token::{AgentClaims, AgentInfo, Audience, TimeCheck, TokenError, VerifyOptions};

/// The `typ` AgentOAuth writes, when it writes one.
pub const CONSENT_TYP: &str = "JWT";
/// Longest `jti` accepted, in characters.
pub const MAX_JTI_CHARS: usize = 128;

/// The rule for an issuer's own `jti` (a consent token's, or one named to revoke a
/// token by it): 1 to [`MAX_JTI_CHARS`] characters, none a control or whitespace.
pub fn acceptable_jti(jti: &str) -> bool {
    let chars = jti.chars().count();
    chars > 0 && chars <= MAX_JTI_CHARS && !jti.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// A consent token version this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActVersion {
    /// `act.v0.2`: policy-bearing consent.
    V0_2,
    /// `act.v0.3`: `act.v0.2` plus an `intent` block, which is not checked.
    V0_3,
}

impl ActVersion {
    /// Parses `ver`.
    pub fn parse(ver: &str) -> Option<Self> {
        match ver {
            "act.v0.2" => Some(ActVersion::V0_2),
            "act.v0.3" => Some(ActVersion::V0_3),
            _ => None,
        }
    }

    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            ActVersion::V0_2 => "act.v0.2",
            ActVersion::V0_3 => "act.v0.3",
        }
    }
}

impl fmt::Display for ActVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Unverified reading of a token, only to choose keys. Nothing read here is trusted:
/// [`verify`] checks the signature with the chosen key before any claim is used.
pub mod dangerous {
    use super::*;

    /// What an unverified consent token says about itself.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Candidate {
        /// The checked header (`alg` EdDSA, `typ` absent or `JWT`).
        pub header: Header,
        /// The unverified `ver`.
        pub version: ActVersion,
        /// The unverified `iss`, if it is a string: only to pick a candidate issuer.
        pub iss: Option<String>,
    }

    #[derive(Deserialize)]
    struct Peek {
        ver: Option<String>,
        iss: Option<String>,
    }

    /// `Some` if `text` looks like a consent token: a compact JWS whose header passes
    /// the header checks of [`jws::open`] with `alg` EdDSA and `typ` absent or `JWT`, and whose
    /// (unverified) payload is an object with `ver` `act.v0.2` or `act.v0.3`. `None`
    /// for anything else, which the caller verifies as an agent token instead (and
    /// which is then refused with that pipeline's precise error).
    pub fn candidate(text: &str, opts: &VerifyOptions) -> Option<Candidate> {
        let compact = Compact::split(text, opts.max_token_bytes).ok()?;
        let header = jws::check_header(compact.header_b64, &rules(opts))
            .ok()?
            .into_header();
        let payload = b64::decode(compact.payload_b64).ok()?;
        json::check(&payload, opts.json).ok()?;
        if !json::is_object(&payload) {
            return None;
        }
        let peek: Peek = serde_json::from_slice(&payload).ok()?;
        let version = ActVersion::parse(peek.ver.as_deref()?)?;
        Some(Candidate {
            header,
            version,
            iss: peek.iss,
        })
    }
}

/// The consent-token kind of JWS: EdDSA only, `typ` `JWT` or none, the key chosen by
/// the caller, the bounds of `opts`.
fn rules(opts: &VerifyOptions) -> jws::Rules {
    jws::Rules {
        algs: &[Algorithm::EdDSA],
        json: opts.json,
        ..jws::Rules::kid(jws::Typ::IsOrAbsent(CONSENT_TYP), opts.max_token_bytes)
    }
}

/// The claims of a verified consent token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentClaims {
    /// `ver`.
    pub version: ActVersion,
    /// `iss`: one of [`VerifyOptions::issuers`].
    pub iss: String,
    /// On whose behalf the agent acts (a DID, an email or an opaque id).
    pub user: String,
    /// The agent, as the issuer names it (see [`ConsentToken::agent_id`]).
    pub agent: String,
    /// Space-separated scopes (an array in the token is joined with spaces); they
    /// can only narrow the agent's registered scopes.
    pub scope: Option<String>,
    /// The consent policy (`pol.v0.2`), its hash already checked.
    pub policy: serde_json::Value,
    /// `sha256:<hex>` of the policy's RFC 8785 form.
    pub policy_hash: String,
    /// Issued at, if the issuer wrote it (the SDK often does not).
    pub iat: Option<i64>,
    /// Not before.
    pub nbf: Option<i64>,
    /// Expires.
    pub exp: i64,
    /// The issuer's token id, free text (see [`ConsentToken::token_id`]).
    pub jti: String,
    /// Receivers the token is for.
    pub aud: Option<Audience>,
}

/// A consent token whose signature, header and claims have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentToken {
    /// The checked header; `kid` is the issuer's own key name.
    pub header: Header,
    /// The checked claims.
    pub claims: ConsentClaims,
}

impl ConsentToken {
    /// The internal token id of this token for `issuer`: the one id every token an
    /// issuer signed itself has ([`crate::token::issuer_token_id`] of its `jti`), so
    /// the same token maps to the same id for revocation, audit and receipts, a
    /// revocation by the token's own `jti` finds it, and two issuers' equal `jti`s
    /// never collide.
    pub fn token_id(&self, issuer: &IssuerId) -> TokenId {
        crate::token::issuer_token_id(issuer, &self.claims.jti)
    }

    /// The agent id `agent` names: an `agt_…` id, or `did_prefix` followed by one
    /// (the registry's `did:web:<host>:agents:` form). `None` for anything else,
    /// such as AgentOAuth's `did:agent:…` names, which no registration matches.
    pub fn agent_id(&self, did_prefix: &str) -> Option<AgentId> {
        let agent = self.claims.agent.as_str();
        let bare = match agent.strip_prefix(did_prefix) {
            Some(rest) if !did_prefix.is_empty() => rest,
            _ => agent,
        };
        AgentId::try_from(bare).ok()
    }

    /// The claims in the agent-token shape, so every downstream rule applies: `iss`
    /// is the issuer's id, `sub` the agent, `agent` what the caller read from its
    /// registrations, `iat` the token's or else `now`. `scope` is left out (it would
    /// have to equal `agent.scopes`); the registered scopes are in `agent.scopes`.
    ///
    /// Built through serde so that members [`AgentClaims`] gains later take their
    /// defaults rather than being forgotten here.
    pub fn into_agent_claims(
        self,
        issuer: &IssuerId,
        agent_id: AgentId,
        agent: AgentInfo,
        now: i64,
    ) -> Result<AgentClaims, TokenError> {
        let jti = self.token_id(issuer);
        let c = self.claims;
        let mut value = serde_json::json!({
            "iss": issuer.as_str(),
            "sub": agent_id,
            "iat": c.iat.unwrap_or(now),
            "exp": c.exp,
            "jti": jti,
            "agent": agent,
            "user": c.user,
            "policy": c.policy,
            "policy_hash": c.policy_hash,
        });
        if let Some(obj) = value.as_object_mut() {
            if let Some(nbf) = c.nbf {
                obj.insert("nbf".into(), nbf.into());
            }
            if let Some(aud) = c.aud {
                obj.insert("aud".into(), serde_json::to_value(aud).unwrap_or_default());
            }
        }
        serde_json::from_value(value)
            .map_err(|e| TokenError::Claims(format!("consent claims do not convert: {e}")))
    }
}

/// The id consent tokens had before every issuer-signed token had one
/// ([`crate::token::issuer_token_id`]): `tok_` + the first 16 bytes of
/// SHA-256(`"act\0"` ‖ issuer id ‖ `"\0"` ‖ `jti`). Read only: a consent token
/// revoked under it before the change stays revoked (verifiers check both ids); nothing
/// is recorded under it any more.
pub fn legacy_token_id(issuer: &IssuerId, jti: &str) -> TokenId {
    let mut input = Vec::with_capacity(5 + issuer.as_str().len() + jti.len());
    input.extend_from_slice(b"act\0");
    input.extend_from_slice(issuer.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(jti.as_bytes());
    let digest = crate::sha256(&input);
    let mut first = [0u8; 16];
    for (out, byte) in first.iter_mut().zip(digest) {
        *out = byte;
    }
    TokenId::from_random(first)
}

#[derive(Deserialize)]
struct RawClaims {
    ver: String,
    #[serde(default)]
    iss: Option<String>,
    user: String,
    agent: String,
    #[serde(default)]
    scope: Option<ScopeClaim>,
    #[serde(default)]
    policy: Option<serde_json::Value>,
    #[serde(default)]
    policy_hash: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
}

/// `scope` as AgentOAuth writes it: a space-separated string, or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Text(String),
    List(Vec<String>),
}

impl ScopeClaim {
    /// The space-separated form; an array item that is empty or holds whitespace
    /// would change what the list says once joined, so it is refused.
    fn into_text(self) -> Result<String, TokenError> {
        match self {
            ScopeClaim::Text(t) => Ok(t),
            ScopeClaim::List(items) => {
                if items
                    .iter()
                    .any(|i| i.is_empty() || i.chars().any(char::is_whitespace))
                {
                    return Err(TokenError::Claims(
                        "`scope` array items must be non-empty and hold no whitespace".into(),
                    ));
                }
                Ok(items.join(" "))
            }
        }
    }
}

/// Verifies a consent token with `key`: size and shape, header (`alg` EdDSA and the
/// key's algorithm, `typ` absent or `JWT`, no `crit` or key-carrying members), the
/// signature, then the claims: strict JSON (no duplicate members, bounded depth),
/// a supported `ver`, `exp` (required) and `nbf`/`iat` if present against `now` with
/// the leeway, `aud` if the receiver names one, `iss` among [`VerifyOptions::issuers`],
/// a `jti` of 1–128 visible characters, and a `policy` that parses and whose hash is
/// `policy_hash` (both required: these are consent tokens). The header `kid` is not
/// compared with the key: the caller chose the key.
pub fn verify(
    text: &str,
    key: &VerifyingKey,
    opts: &VerifyOptions,
    now: i64,
) -> Result<ConsentToken, TokenError> {
    verify_with(text, key, opts, now, None)
}

/// [`verify`], where a token without `iss` is the issuer `key_issuer`'s: for a caller
/// that chose `key` by the registered thumbprint the header's `kid` names (AgentOAuth's
/// SDK leaves `iss` out by default), so the key alone says whose token it is. With
/// `None`, `iss` is required.
pub fn verify_with(
    text: &str,
    key: &VerifyingKey,
    opts: &VerifyOptions,
    now: i64,
    key_issuer: Option<&str>,
) -> Result<ConsentToken, TokenError> {
    // Size and shape, header (no `crit`, nothing of the forbidden table, EdDSA, `typ`
    // `JWT` or none), the key's algorithm, the signature, then strict JSON claims:
    // the one JWS sequence (`jws::open`).
    let opened = jws::open::<RawClaims, _>(text, &rules(opts), |_: &jws::Protected| {
        Ok::<_, TokenError>(jws::Key::Borrowed(key))
    })?;
    let (header, raw) = (opened.header.into_header(), opened.claims);
    let version = ActVersion::parse(&raw.ver).ok_or_else(|| {
        TokenError::Claims(format!(
            "`ver` `{}` is not `act.v0.2` or `act.v0.3`",
            raw.ver.chars().take(32).collect::<String>()
        ))
    })?;
    let exp = raw
        .exp
        .ok_or_else(|| TokenError::Claims("`exp` is required".into()))?;
    if opts.time == TimeCheck::Enforce {
        check_times(exp, raw.nbf, raw.iat, opts.leeway_secs, now)?;
    }
    crate::token::check_lifetime(raw.iat, exp, opts.max_lifetime_secs, now)?;
    opts.audience.check(raw.aud.as_ref())?;
    let iss = match (raw.iss, key_issuer) {
        (Some(iss), _) => iss,
        (None, Some(issuer)) => issuer.to_owned(),
        (None, None) => return Err(TokenError::Claims("`iss` is required".into())),
    };
    if !opts.issuers.contains(&iss) {
        return Err(TokenError::IssuerUnknown(iss.chars().take(128).collect()));
    }
    let scope = raw.scope.map(ScopeClaim::into_text).transpose()?;
    let jti = raw
        .jti
        .ok_or_else(|| TokenError::Claims("`jti` is required".into()))?;
    if !acceptable_jti(&jti) {
        return Err(TokenError::Claims(format!(
            "`jti` must be 1 to {MAX_JTI_CHARS} visible characters"
        )));
    }
    if raw.user.is_empty() || raw.agent.is_empty() {
        return Err(TokenError::Claims(
            "`user` and `agent` must not be empty".into(),
        ));
    }
    let (Some(policy), Some(policy_hash)) = (raw.policy, raw.policy_hash) else {
        return Err(TokenError::Claims(
            "a consent token needs `policy` and `policy_hash`".into(),
        ));
    };
    let parsed = Policy::from_value(policy.clone())
        .map_err(|e| TokenError::Claims(format!("`policy` is invalid: {e}")))?;
    if !parsed.hash_matches(&policy_hash) {
        return Err(TokenError::Claims(
            "`policy_hash` does not match `policy`".into(),
        ));
    }
    Ok(ConsentToken {
        header,
        claims: ConsentClaims {
            version,
            iss,
            user: raw.user,
            agent: raw.agent,
            scope,
            policy,
            policy_hash,
            iat: raw.iat,
            nbf: raw.nbf,
            exp,
            jti,
            aud: raw.aud,
        },
    })
}

fn check_times(
    exp: i64,
    nbf: Option<i64>,
    iat: Option<i64>,
    leeway: i64,
    now: i64,
) -> Result<(), TokenError> {
    if now.saturating_sub(leeway) >= exp {
        return Err(TokenError::Expired { exp });
    }
    for not_before in [nbf, iat].into_iter().flatten() {
        if now.saturating_add(leeway) < not_before {
            return Err(TokenError::NotYetValid { not_before });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::keys::SigningKey;
    use crate::token::Segment;

    const NOW: i64 = 1_800_000_000;
    const ISS: &str = "https://travel.example";

    fn policy() -> Value {
        json!({
            "version": "pol.v0.2",
            "id": "pol_travel_001",
            "actions": ["payments.send"],
            "resources": [],
            "limits": {"per_txn": {"amount": 500, "currency": "USD"}}
        })
    }

    fn claims() -> Value {
        let hash = Policy::from_value(policy()).unwrap().hash().to_owned();
        json!({
            "ver": "act.v0.2",
            "iss": ISS,
            "user": "did:user:alice",
            "agent": "did:agent:travel-ai",
            "scope": "payments.send",
            "policy": policy(),
            "policy_hash": hash,
            "iat": NOW - 10,
            "exp": NOW + 600,
            "jti": "act_unique_id",
        })
    }

    fn sign_with(sk: &SigningKey, header: &Value, payload: &[u8]) -> String {
        let mut out = b64::encode(header.to_string().as_bytes());
        out.push('.');
        out.push_str(&b64::encode(payload));
        let sig = sk.sign(out.as_bytes()).unwrap();
        out.push('.');
        out.push_str(&b64::encode(&sig));
        out
    }

    fn sign(sk: &SigningKey, claims: &Value) -> String {
        let header = json!({"alg": "EdDSA", "kid": "key-001", "typ": "JWT"});
        sign_with(sk, &header, claims.to_string().as_bytes())
    }

    fn opts() -> VerifyOptions {
        VerifyOptions::for_issuer(ISS)
    }

    fn key() -> SigningKey {
        SigningKey::generate(Algorithm::EdDSA).unwrap()
    }

    #[test]
    fn a_consent_token_verifies_and_converts() {
        let sk = key();
        let token = sign(&sk, &claims());
        let c = dangerous::candidate(&token, &opts()).unwrap();
        assert_eq!(c.header.kid, "key-001");
        assert_eq!(c.version, ActVersion::V0_2);
        assert_eq!(c.iss.as_deref(), Some(ISS));
        let t = verify(&token, sk.verifying_key(), &opts(), NOW).unwrap();
        assert_eq!(t.claims.user, "did:user:alice");
        assert_eq!(t.claims.scope.as_deref(), Some("payments.send"));
        assert_eq!(t.claims.jti, "act_unique_id");
        // Not a registry agent: no agent id.
        assert_eq!(t.agent_id("did:web:r.example:agents:"), None);

        let issuer = IssuerId::from_random([1; 16]);
        let agent = AgentId::from_random([2; 16]);
        let mut named = claims();
        named["agent"] = format!("did:web:r.example:agents:{agent}").into();
        named["ver"] = "act.v0.3".into();
        named["intent"] = json!({"type": "webauthn"});
        let t = verify(&sign(&sk, &named), sk.verifying_key(), &opts(), NOW).unwrap();
        assert_eq!(t.claims.version, ActVersion::V0_3);
        assert_eq!(t.agent_id("did:web:r.example:agents:"), Some(agent.clone()));
        assert_eq!(t.agent_id("did:web:other.example:agents:"), None);
        let info = AgentInfo {
            name: "Travel".into(),
            issuer: "travel.example".into(),
            scopes: vec!["payments.send".into()],
            description: None,
        };
        let expected_id = crate::token::issuer_token_id(&issuer, "act_unique_id");
        let ac = t
            .into_agent_claims(&issuer, agent.clone(), info, NOW)
            .unwrap();
        assert_eq!(ac.sub, agent);
        assert_eq!(ac.iss, issuer.as_str());
        assert_eq!(ac.jti, expected_id);
        assert_eq!(ac.iat, NOW - 10);
        assert_eq!(ac.user.as_deref(), Some("did:user:alice"));
        assert!(crate::token::policy_of(&ac).unwrap().is_some());
    }

    #[test]
    fn token_ids_are_deterministic_and_scoped_by_issuer() {
        let a = IssuerId::from_random([1; 16]);
        let b = IssuerId::from_random([3; 16]);
        assert_eq!(
            crate::token::issuer_token_id(&a, "x"),
            crate::token::issuer_token_id(&a, "x")
        );
        assert_ne!(
            crate::token::issuer_token_id(&a, "x"),
            crate::token::issuer_token_id(&b, "x")
        );
        assert_ne!(
            crate::token::issuer_token_id(&a, "x"),
            crate::token::issuer_token_id(&a, "y")
        );
        assert!(
            crate::token::issuer_token_id(&a, "x")
                .as_str()
                .starts_with("tok_")
        );
    }

    #[test]
    fn refusals() {
        let sk = key();
        let vk = sk.verifying_key();
        let refused = |claims: &Value| verify(&sign(&sk, claims), vk, &opts(), NOW).unwrap_err();

        let mut c = claims();
        c["ver"] = "act.v0.1".into();
        assert!(matches!(refused(&c), TokenError::Claims(m) if m.contains("ver")));
        // And it is not even a candidate.
        assert_eq!(dangerous::candidate(&sign(&sk, &c), &opts()), None);

        let mut c = claims();
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(refused(&c), TokenError::Claims("`exp` is required".into()));

        let mut c = claims();
        c["exp"] = (NOW - 120).into();
        assert_eq!(refused(&c), TokenError::Expired { exp: NOW - 120 });

        let mut c = claims();
        c.as_object_mut().unwrap().remove("policy");
        assert!(matches!(refused(&c), TokenError::Claims(m) if m.contains("policy")));

        let mut c = claims();
        c["policy_hash"] = format!("sha256:{}", "0".repeat(64)).into();
        assert_eq!(
            refused(&c),
            TokenError::Claims("`policy_hash` does not match `policy`".into())
        );
        assert_eq!(refused(&c).code().as_str(), "TOKEN_INVALID");

        let mut c = claims();
        c["iss"] = "https://other.example".into();
        assert_eq!(
            refused(&c),
            TokenError::IssuerUnknown("https://other.example".into())
        );

        let mut c = claims();
        c["jti"] = "has space".into();
        assert!(matches!(refused(&c), TokenError::Claims(m) if m.contains("jti")));
        c["jti"] = "x".repeat(129).into();
        assert!(matches!(refused(&c), TokenError::Claims(m) if m.contains("jti")));

        let mut c = claims();
        c["aud"] = "merchant.example".into();
        let mut o = opts();
        o.audience = AudienceRule::one("other.example");
        assert_eq!(
            verify(&sign(&sk, &c), vk, &o, NOW).unwrap_err(),
            TokenError::AudienceMismatch("other.example".into())
        );
        o.audience = AudienceRule::one("merchant.example");
        assert!(verify(&sign(&sk, &c), vk, &o, NOW).is_ok());
        // RFC 7519 §4.1.3: a verifier that names no audience refuses a token with `aud`.
        o.audience = AudienceRule::Unnamed;
        assert_eq!(
            verify(&sign(&sk, &c), vk, &o, NOW).unwrap_err(),
            TokenError::AudienceUnnamed
        );
        o.audience = AudienceRule::Unchecked;
        assert!(verify(&sign(&sk, &c), vk, &o, NOW).is_ok());

        // Another key's signature.
        assert_eq!(
            verify(&sign(&sk, &claims()), key().verifying_key(), &opts(), NOW).unwrap_err(),
            TokenError::BadSignature
        );
    }

    #[test]
    fn headers_that_are_not_consent_headers() {
        let sk = key();
        let vk = sk.verifying_key();
        let payload = claims().to_string();
        // RS256 in the header: not a candidate, and refused outright.
        let rs = sign_with(
            &sk,
            &json!({"alg": "RS256", "kid": "key-001", "typ": "JWT"}),
            payload.as_bytes(),
        );
        assert_eq!(dangerous::candidate(&rs, &opts()), None);
        assert_eq!(
            verify(&rs, vk, &opts(), NOW).unwrap_err(),
            TokenError::AlgorithmNotAllowed("RS256".into())
        );
        // An agent token type is never a consent token.
        let agent = sign_with(
            &sk,
            &json!({"alg": "EdDSA", "kid": "key-001", "typ": "agent+jwt"}),
            payload.as_bytes(),
        );
        assert_eq!(dangerous::candidate(&agent, &opts()), None);
        assert!(matches!(
            verify(&agent, vk, &opts(), NOW).unwrap_err(),
            TokenError::WrongType { .. }
        ));
        // No `typ`, or `typ` in another case: a consent token.
        let bare = sign_with(
            &sk,
            &json!({"alg": "EdDSA", "kid": "k"}),
            payload.as_bytes(),
        );
        assert!(dangerous::candidate(&bare, &opts()).is_some());
        assert!(verify(&bare, vk, &opts(), NOW).is_ok());
        let lower = sign_with(
            &sk,
            &json!({"alg": "EdDSA", "kid": "k", "typ": "jwt"}),
            payload.as_bytes(),
        );
        assert!(verify(&lower, vk, &opts(), NOW).is_ok());
        // Keys offered by the header are refused as for agent tokens.
        let jku = sign_with(
            &sk,
            &json!({"alg": "EdDSA", "kid": "k", "jku": "https://attacker.example/jwks"}),
            payload.as_bytes(),
        );
        assert_eq!(dangerous::candidate(&jku, &opts()), None);
        assert_eq!(
            verify(&jku, vk, &opts(), NOW).unwrap_err(),
            TokenError::ForbiddenHeader("jku")
        );
        let crit = sign_with(
            &sk,
            &json!({"alg": "EdDSA", "kid": "k", "crit": ["exp"]}),
            payload.as_bytes(),
        );
        assert_eq!(
            verify(&crit, vk, &opts(), NOW).unwrap_err(),
            TokenError::CriticalHeader
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let sk = key();
        let text = claims().to_string();
        // A second `exp`, far in the future, after the first.
        let dup = format!("{},\"exp\":{}}}", &text[..text.len() - 1], NOW + 999_999);
        let token = sign_with(
            &sk,
            &json!({"alg": "EdDSA", "kid": "key-001", "typ": "JWT"}),
            dup.as_bytes(),
        );
        assert_eq!(dangerous::candidate(&token, &opts()), None);
        assert!(matches!(
            verify(&token, sk.verifying_key(), &opts(), NOW).unwrap_err(),
            TokenError::Json(Segment::Payload, json::JsonError::DuplicateKey(k)) if k == "exp"
        ));
    }

    #[test]
    fn scope_may_be_an_array_of_scopes() {
        let sk = key();
        let mut c = claims();
        c["scope"] = json!(["payments.send", "read:files"]);
        let t = verify(&sign(&sk, &c), sk.verifying_key(), &opts(), NOW).unwrap();
        assert_eq!(t.claims.scope.as_deref(), Some("payments.send read:files"));
        for bad in [json!(["a b"]), json!([""]), json!([1]), json!(7)] {
            c["scope"] = bad.clone();
            assert!(
                matches!(
                    verify(&sign(&sk, &c), sk.verifying_key(), &opts(), NOW),
                    Err(TokenError::Claims(_) | TokenError::Json(..))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn iss_may_be_left_out_only_when_the_key_says_whose_token_it_is() {
        let sk = key();
        let mut c = claims();
        c.as_object_mut().unwrap().remove("iss");
        let token = sign(&sk, &c);
        assert_eq!(
            verify(&token, sk.verifying_key(), &opts(), NOW).unwrap_err(),
            TokenError::Claims("`iss` is required".into())
        );
        let t = verify_with(&token, sk.verifying_key(), &opts(), NOW, Some(ISS)).unwrap();
        assert_eq!(t.claims.iss, ISS);
        // The key's issuer must still be one the verifier accepts.
        assert!(matches!(
            verify_with(
                &token,
                sk.verifying_key(),
                &opts(),
                NOW,
                Some("https://other.example")
            ),
            Err(TokenError::IssuerUnknown(_))
        ));
        // An `iss` the token does carry is what counts, key or not.
        let mut other = claims();
        other["iss"] = json!("https://other.example");
        assert!(matches!(
            verify_with(
                &sign(&sk, &other),
                sk.verifying_key(),
                &opts(),
                NOW,
                Some(ISS)
            ),
            Err(TokenError::IssuerUnknown(_))
        ));
    }
}
