//! Agent tokens: `typ agent+jwt` JWTs (RFC 7519) with the claims of docs/design.md, and
//! the verification pipeline (steps 1–4; revocation and suspension are the caller's
//! step 5).
//!
//! An [`UnverifiedToken`] cannot be read; only [`verify`] turns token text into a
//! [`VerifiedToken`]. Errors are [`TokenError`] values whose [`TokenError::code`] is the
//! stable wire code (`TOKEN_INVALID`, `TOKEN_EXPIRED`, …).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{AgentId, IssuerId, TokenId};
use crate::json::{JsonError, JsonLimits};
use crate::jws::{self, Header};
use crate::keys::{Jwks, KeyError, SigningKey, VerifyingKey};

/// `typ` of agent tokens.
pub const AGENT_TOKEN_TYP: &str = "agent+jwt";
/// Default cap on token length in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Default clock-skew leeway in seconds.
pub const DEFAULT_LEEWAY_SECS: i64 = 60;

/// Which part of a token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The protected header.
    Header,
    /// The claims.
    Payload,
    /// The signature.
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// The stable, machine-readable outcome of a failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed, badly signed, or otherwise not a genuine token.
    TokenInvalid,
    /// Past `exp` (plus leeway).
    TokenExpired,
    /// Before `nbf` or `iat` (minus leeway).
    TokenNotYetValid,
    /// The token, its agent or its key has been revoked.
    TokenRevoked,
    /// The receiver named an audience the token is not for.
    AudienceMismatch,
    /// `iss` is not an issuer this verifier knows.
    IssuerUnknown,
    /// The agent is suspended by its issuer; its tokens verify again once it is
    /// reactivated (unlike [`ErrorCode::TokenRevoked`], which is permanent).
    AgentSuspended,
    /// An issuer-signed token names an agent that its issuer has not registered
    /// (unknown, or another issuer's).
    AgentUnknown,
    /// The token is bound to a key (`cnf.jkt`) and came without a proof of
    /// possession (DPoP or an HTTP message signature).
    ProofRequired,
    /// The proof of possession does not hold (signature, key, method, URL, time,
    /// access-token hash, covered components).
    ProofInvalid,
    /// The proof was already used (its DPoP `jti` or signature `nonce`).
    Replay,
}

impl ErrorCode {
    /// The wire form, e.g. `TOKEN_INVALID`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::TokenInvalid => "TOKEN_INVALID",
            ErrorCode::TokenExpired => "TOKEN_EXPIRED",
            ErrorCode::TokenNotYetValid => "TOKEN_NOT_YET_VALID",
            ErrorCode::TokenRevoked => "TOKEN_REVOKED",
            ErrorCode::AudienceMismatch => "AUDIENCE_MISMATCH",
            ErrorCode::IssuerUnknown => "ISSUER_UNKNOWN",
            ErrorCode::AgentSuspended => "AGENT_SUSPENDED",
            ErrorCode::AgentUnknown => "AGENT_UNKNOWN",
            ErrorCode::ProofRequired => "PROOF_REQUIRED",
            ErrorCode::ProofInvalid => "PROOF_INVALID",
            ErrorCode::Replay => "REPLAY",
        }
    }
}

/// What is revoked, when a token fails for revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// This token (`jti`).
    Token,
    /// The agent the token names.
    Agent,
    /// The issuer key that signed the token (self-custody): every token it signed.
    Key,
    /// The agent key the token is bound to (`cnf.jkt`) was rotated out and its grace
    /// period is over.
    AgentKeyRotated,
    /// The consent policy the token carries (`policy.id`) was revoked by the agent's
    /// issuer: every token of its agents carrying that policy
    /// ([`policy_revocation_id`]).
    Policy,
}

impl Revoked {
    /// What follows "token has been revoked" in the error's message.
    fn detail(self) -> &'static str {
        match self {
            Revoked::Policy => ": its consent policy (`policy.id`) was revoked by its issuer",
            Revoked::Token | Revoked::Agent | Revoked::Key | Revoked::AgentKeyRotated => "",
        }
    }
}

/// Why a token was refused. Ordered as the pipeline: the first failure decides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Longer than the configured cap.
    #[error("token is {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Token length.
        size: usize,
        /// Cap.
        max: usize,
    },
    /// Not three dot-separated segments.
    #[error("token is not a compact JWS (three base64url segments separated by dots)")]
    Shape,
    /// A segment is not strict base64url.
    #[error("token {0} is not strict base64url")]
    Base64(Segment),
    /// A segment's JSON is malformed, has duplicate members or nests too deep.
    #[error("token {0} JSON is invalid: {1}")]
    Json(Segment, JsonError),
    /// The header is not a JSON object of strings where strings belong.
    #[error("token header is not a valid JOSE header")]
    HeaderNotObject,
    /// A required header parameter is missing.
    #[error("token header has no `{0}`")]
    MissingHeader(&'static str),
    /// `alg` is not RS256, ES256 or EdDSA.
    #[error("algorithm `{0}` is not allowed")]
    AlgorithmNotAllowed(String),
    /// A `crit` header is present (RFC 7515 §4.1.11: we understand no extensions).
    #[error("`crit` header parameter is not supported")]
    CriticalHeader,
    /// The header offers a key or key URL, which is never trusted.
    #[error("header parameter `{0}` is not accepted: keys come only from the registry")]
    ForbiddenHeader(&'static str),
    /// `typ` is not the expected media type.
    #[error("token type `{found}` is not `{expected}`")]
    WrongType {
        /// What the header said (empty if absent).
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// No key with this `kid`.
    #[error("no key with this `kid`")]
    UnknownKey,
    /// `alg` is not the algorithm of the key named by `kid`.
    #[error("algorithm does not match the key's algorithm")]
    AlgorithmKeyMismatch,
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// Claims are missing, of the wrong type, or inconsistent.
    #[error("token claims are invalid: {0}")]
    Claims(String),
    /// Past `exp`.
    #[error("token expired at {exp}")]
    Expired {
        /// The `exp` claim.
        exp: i64,
    },
    /// Before `nbf`, or issued in the future.
    #[error("token is not valid before {not_before}")]
    NotYetValid {
        /// `nbf`, or `iat` if that is what failed.
        not_before: i64,
    },
    /// The receiver's audience is not in `aud`.
    #[error("token is not intended for audience `{0}`")]
    AudienceMismatch(String),
    /// `exp` is further from `iat` than the verifier accepts. Wire code
    /// `TOKEN_INVALID`.
    #[error(
        "the token's lifetime (`exp` − `iat`) of {lifetime} s is over this verifier's maximum of {max} s (max_token_ttl)"
    )]
    LifetimeTooLong {
        /// `exp` − `iat`, seconds.
        lifetime: i64,
        /// The verifier's maximum, seconds.
        max: i64,
    },
    /// The token names its audiences (`aud`) and the verifier named none of them
    /// (RFC 7519 §4.1.3). Wire code `AUDIENCE_MISMATCH`.
    #[error(
        "the token is for named audiences (`aud`): the verifier must name one of them (`audience`)"
    )]
    AudienceUnnamed,
    /// `iss` is not a known issuer.
    #[error("issuer `{0}` is not known")]
    IssuerUnknown(String),
    /// Revoked (decided by the caller's status check).
    #[error("token has been revoked{}", .0.detail())]
    Revoked(Revoked),
    /// The agent is suspended (decided by the caller's status check, after
    /// revocation: a revoked agent's token is [`TokenError::Revoked`]).
    #[error("agent is suspended by its issuer")]
    Suspended,
    /// An issuer-signed token names an agent its issuer has not registered (decided
    /// by the caller, who holds the registrations).
    #[error("the token's agent is not registered by the issuer whose key signed it")]
    AgentUnknown,
    /// The agent key the token is bound to (`cnf.jkt`) is past its `key_expires_at`
    /// (decided by the caller, who holds the agent's keys). Wire code `TOKEN_EXPIRED`.
    #[error("the agent key this token is bound to expired at {expired_at_s}")]
    AgentKeyExpired {
        /// The key's expiry, Unix seconds.
        expired_at_s: i64,
    },
    /// Bound to a key (`cnf.jkt`) and presented without a proof of possession
    /// (decided by the caller, who sees the request).
    #[error(
        "the token is bound to the agent's key (`cnf.jkt`): a proof of possession (DPoP or an HTTP message signature) is required"
    )]
    ProofRequired,
    /// Not bound to a key (no `cnf`), for an agent that has its own key and whose
    /// issuer did not opt out of bound-only tokens at registration (decided by the
    /// caller, who holds the agent's keys and registration). Wire code
    /// `TOKEN_INVALID`: no proof can make a bearer token bound.
    #[error(
        "this agent has its own key and accepts only tokens bound to it (`cnf.jkt`); this token is not bound: use a token the registry issued for the agent, with a proof of possession"
    )]
    BindingRequired,
    /// The proof of possession does not hold; the text says why.
    #[error("proof of possession is invalid: {0}")]
    ProofInvalid(String),
    /// The proof was already used.
    #[error("this proof was already used (its `{0}`): make a new one for each request")]
    Replay(&'static str),
}

impl TokenError {
    /// The wire code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::Expired { .. } | TokenError::AgentKeyExpired { .. } => {
                ErrorCode::TokenExpired
            }
            TokenError::NotYetValid { .. } => ErrorCode::TokenNotYetValid,
            TokenError::AudienceMismatch(_) | TokenError::AudienceUnnamed => {
                ErrorCode::AudienceMismatch
            }
            TokenError::IssuerUnknown(_) => ErrorCode::IssuerUnknown,
            TokenError::Revoked(_) => ErrorCode::TokenRevoked,
            TokenError::Suspended => ErrorCode::AgentSuspended,
            TokenError::AgentUnknown => ErrorCode::AgentUnknown,
            TokenError::ProofRequired => ErrorCode::ProofRequired,
            TokenError::ProofInvalid(_) => ErrorCode::ProofInvalid,
            TokenError::Replay(_) => ErrorCode::Replay,
            _ => ErrorCode::TokenInvalid,
        }
    }
}

/// `aud`: one string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// True if `name` is among the audiences.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Audience::One(a) => a == name,
            Audience::Many(list) => list.iter().any(|a| a == name),
        }
    }

    /// The audiences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Audience::One(a) => vec![a.clone()],
            Audience::Many(list) => list.clone(),
        }
    }
}

/// Who the verifier is, for the `aud` check (RFC 7519 §4.1.3: a principal that does
/// not identify itself with a value in a present `aud` must reject the token). A
/// token without `aud` is for any verifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AudienceRule {
    /// The verifier names no audience: a token with `aud` is refused.
    #[default]
    Unnamed,
    /// The verifier is each of these: a token with `aud` must contain one of them.
    AnyOf(Vec<String>),
    /// Not checked: the verifier is not the token's recipient (a registry asked to
    /// exchange the token for a narrower child, which keeps or narrows `aud`).
    Unchecked,
}

impl AudienceRule {
    /// The verifier is `name`.
    pub fn one(name: impl Into<String>) -> Self {
        AudienceRule::AnyOf(vec![name.into()])
    }

    /// The first name the verifier goes by, if it names any.
    pub fn first(&self) -> Option<&str> {
        match self {
            AudienceRule::AnyOf(names) => names.first().map(String::as_str),
            _ => None,
        }
    }

    /// Checks a token's `aud` against the rule.
    pub fn check(&self, aud: Option<&Audience>) -> Result<(), TokenError> {
        let Some(aud) = aud else { return Ok(()) };
        match self {
            AudienceRule::Unchecked => Ok(()),
            AudienceRule::Unnamed => Err(TokenError::AudienceUnnamed),
            AudienceRule::AnyOf(names) if names.iter().any(|n| aud.contains(n)) => Ok(()),
            AudienceRule::AnyOf(names) => Err(TokenError::AudienceMismatch(
                names.join(", ").chars().take(128).collect(),
            )),
        }
    }
}

impl From<Option<String>> for AudienceRule {
    fn from(name: Option<String>) -> Self {
        name.map_or(AudienceRule::Unnamed, |n| AudienceRule::AnyOf(vec![n]))
    }
}

/// The `agent` claim (ImaRobot shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Display name.
    pub name: String,
    /// The issuer's name (e.g. `apexwealth.com`).
    pub issuer: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// What the agent does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `cnf` (RFC 7800 §3.1): the key the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the agent's own public key (RFC 9449 §6.1 `jkt`).
    pub jkt: String,
}

/// Claims of an agent token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentClaims {
    /// Registry URL, or the issuer's identifier for self-signed tokens.
    pub iss: String,
    /// The agent.
    pub sub: AgentId,
    /// Receivers the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expires (Unix seconds).
    pub exp: i64,
    /// Token id.
    pub jti: TokenId,
    /// Agent description (ImaRobot shape).
    pub agent: AgentInfo,
    /// Space-separated scopes (RFC 9068), equal to `agent.scopes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// On whose behalf the agent acts (AgentOAuth): a DID, an email or an opaque id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Consent policy (`pol.v0.2`, [`crate::policy`]); checked by [`policy_of`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<serde_json::Value>,
    /// `"sha256:<hex of RFC 8785 JCS of policy>"`; present exactly when `policy` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// Binding to the agent's own key (`{"jkt": …}`), when the agent registered one.
    /// Proof of possession is not checked by [`verify`]: the verifier checks the
    /// request's proof against it ([`crate::dpop`], [`crate::httpsig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Delegation (RFC 8693 §4.1): the agent acting for `sub`, with prior actors
    /// nested inside. Present only on tokens made by token exchange
    /// ([`crate::delegation`]); absent on every token of an agent acting for itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Bonafide private claim, present exactly when `act` is: the `jti` of every
    /// ancestor token, root first, the last being the token this one was exchanged
    /// from. One entry per `act` level. Carried in the token (rather than a parent
    /// pointer the server would follow in its store) so a verifier checks every
    /// ancestor's revocation in one lookup, without walking a chain. Not inside `act`:
    /// RFC 8693 §4.1 reserves `act` members for claims that identify the actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestor_jtis: Option<Vec<TokenId>>,
    /// Where the token's status is published (draft-ietf-oauth-status-list §6.1):
    /// an index in a Status List Token, for receivers that verify offline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::status_list::StatusClaim>,
}

/// Deepest `act` nesting a token may carry at all (RFC 8693 sets no bound). The
/// configured delegation cap (default 4, [`crate::delegation::DEFAULT_MAX_DEPTH`]) is
/// enforced when a token is exchanged; this bound only keeps hostile or corrupt claims
/// small.
pub const MAX_ACT_DEPTH: usize = 8;

/// `act` (RFC 8693 §4.1): the party acting for the token's subject.
///
/// Bonafide keeps the RFC's shape: the token's `sub` stays the subject (the root
/// agent whose authority is delegated), the outermost `act.sub` is the current actor
/// (the sub-agent that presents the token and whose key `cnf` binds, if any), and
/// each nested `act` is a prior actor, the least recent most deeply nested:
///
/// ```json
/// {"sub": "agt_root…", "act": {"sub": "agt_current…", "act": {"sub": "agt_prior…"}}}
/// ```
///
/// Members are only `sub` (a registered agent) and `act`; anything else is refused,
/// since RFC 8693 allows only identifying claims here and Bonafide needs no other.
/// RFC 8693 §4.1 says access control considers only the top-level claims and the
/// current actor; on top of that, a verifier refuses the token if any agent of the
/// chain, or any token of `ancestor_jtis`, is revoked or suspended (its status check,
/// pipeline step 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The acting agent.
    pub sub: AgentId,
    /// The actor before this one, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// An actor with no prior actor.
    pub fn new(sub: AgentId) -> Self {
        Actor { sub, act: None }
    }

    /// The actors, outermost (current) first. Iterative: never recurses.
    pub fn iter(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }

    /// Levels of nesting: 1 for a single actor.
    pub fn depth(&self) -> usize {
        self.iter().count()
    }
}

impl AgentClaims {
    pub(crate) fn check_consistent(&self) -> Result<(), TokenError> {
        // `scope` and `agent.scopes` must name the same set: each contains the other
        // (quadratic, without allocating; both are at most a few dozen entries).
        if let Some(scope) = &self.scope {
            // Split as bytes: a space is ASCII, and at a few short scopes this beats
            // the `char` searcher.
            let listed = || {
                scope
                    .as_bytes()
                    .split(|&b| b == b' ')
                    .filter(|s| !s.is_empty())
            };
            let same = listed().all(|s| self.agent.scopes.iter().any(|g| g.as_bytes() == s))
                && self
                    .agent
                    .scopes
                    .iter()
                    .all(|g| listed().any(|s| s == g.as_bytes()));
            if !same {
                return Err(TokenError::Claims(
                    "`scope` does not match `agent.scopes`".into(),
                ));
            }
        }
        if self.exp <= self.iat {
            return Err(TokenError::Claims("`exp` is not after `iat`".into()));
        }
        match (&self.policy, &self.policy_hash) {
            (Some(_), None) => {
                return Err(TokenError::Claims("`policy` without `policy_hash`".into()));
            }
            (None, Some(_)) => {
                return Err(TokenError::Claims("`policy_hash` without `policy`".into()));
            }
            _ => {}
        }
        self.check_act()
    }

    /// `act` and `ancestor_jtis`: bounded, the same depth, no agent or token twice.
    fn check_act(&self) -> Result<(), TokenError> {
        let bad = |m: &str| Err(TokenError::Claims(m.into()));
        let (act, jtis) = match (&self.act, &self.ancestor_jtis) {
            (None, None) => return Ok(()),
            (Some(act), Some(jtis)) => (act, jtis),
            (Some(_), None) => return bad("`act` without `ancestor_jtis`"),
            (None, Some(_)) => return bad("`ancestor_jtis` without `act`"),
        };
        let depth = act.depth();
        if depth > MAX_ACT_DEPTH {
            return bad("`act` is nested too deep");
        }
        if jtis.len() != depth {
            return bad("`ancestor_jtis` does not have one entry per `act` level");
        }
        // Quadratic over at most 9 entries, without allocating.
        let agents = || std::iter::once(&self.sub).chain(act.iter().map(|a| &a.sub));
        if agents()
            .enumerate()
            .any(|(i, a)| agents().skip(i + 1).any(|b| b == a))
        {
            return bad("`act` names an agent twice in the delegation chain");
        }
        let tokens = || std::iter::once(&self.jti).chain(jtis.iter());
        if tokens()
            .enumerate()
            .any(|(i, a)| tokens().skip(i + 1).any(|b| b == a))
        {
            return bad("`ancestor_jtis` names a token twice");
        }
        Ok(())
    }
}

/// Pipeline step 7 for the policy: parses the token's `policy` and checks that
/// `policy_hash` is its hash. `Ok(None)` for a token without a policy. A policy that
/// does not parse, or a hash that does not match, makes the token `TOKEN_INVALID`.
///
/// Parsing and hashing cost about as much as the signature check; a verifier that
/// sees the same policy often caches the result by `policy_hash` (after comparing the
/// cached policy's JSON with the token's, which is cheap).
pub fn policy_of(claims: &AgentClaims) -> Result<Option<crate::policy::Policy>, TokenError> {
    let (Some(value), Some(claimed)) = (&claims.policy, &claims.policy_hash) else {
        return Ok(None);
    };
    let policy = crate::policy::Policy::from_value(value.clone())
        .map_err(|e| TokenError::Claims(format!("`policy` is invalid: {e}")))?;
    if !policy.hash_matches(claimed) {
        return Err(TokenError::Claims(
            "`policy_hash` does not match `policy`".into(),
        ));
    }
    Ok(Some(policy))
}

/// Whether to check `exp`, `nbf` and `iat` against `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    /// Check them (the default).
    Enforce,
    /// Skip them: only to identify a genuine token, e.g. to revoke an expired one.
    Skip,
}

/// Verification settings. Every field has a safe default.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Longest token accepted, in bytes. Default 8 KiB.
    pub max_token_bytes: usize,
    /// Clock-skew leeway for `exp`, `nbf` and `iat`, in seconds. Default 60.
    pub leeway_secs: i64,
    /// JSON bounds for header and claims. Default depth 16.
    pub json: JsonLimits,
    /// Who the verifier is, for `aud`. Default [`AudienceRule::Unnamed`]: a token
    /// with `aud` is refused unless the verifier names one of its audiences.
    pub audience: AudienceRule,
    /// Issuers accepted in `iss`. Empty means none: every token is `ISSUER_UNKNOWN`.
    pub issuers: Vec<String>,
    /// Whether times are checked. Default [`TimeCheck::Enforce`].
    pub time: TimeCheck,
    /// Longest lifetime accepted, seconds from `iat` (or from now, for a token
    /// without `iat`) to `exp`; a longer one is `TOKEN_INVALID`. Default none.
    pub max_lifetime_secs: Option<i64>,
}

impl VerifyOptions {
    /// Defaults, accepting tokens from `issuer`.
    pub fn for_issuer(issuer: impl Into<String>) -> Self {
        VerifyOptions {
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            json: JsonLimits::default(),
            audience: AudienceRule::Unnamed,
            issuers: vec![issuer.into()],
            time: TimeCheck::Enforce,
            max_lifetime_secs: None,
        }
    }
}

/// Keys by `kid`.
pub trait KeyResolver {
    /// The key with this `kid`, if known.
    fn key(&self, kid: &str) -> Option<&VerifyingKey>;

    /// Fast path: the header and key for a base64url header segment that is exactly
    /// one this resolver already knows to be valid (the header Bonafide itself writes
    /// for one of its keys). `None` means "decode and check it the normal way".
    fn known_header(&self, _header_b64: &str) -> Option<(&Header, &VerifyingKey)> {
        None
    }
}

/// A set of verifying keys indexed by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
    /// The exact header segment [`sign`] writes for each key, already checked: a token
    /// whose header is byte-for-byte one of these skips header decoding.
    headers: HashMap<String, (Header, String)>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key under its thumbprint.
    pub fn insert(&mut self, key: VerifyingKey) {
        let header = Header {
            alg: key.alg(),
            kid: key.kid().to_owned(),
            typ: Some(AGENT_TOKEN_TYP.to_owned()),
        };
        if let Ok(b64) = jws::header_b64(key.alg(), AGENT_TOKEN_TYP, key.kid()) {
            self.headers.insert(b64, (header, key.kid().to_owned()));
        }
        self.keys.insert(key.kid().to_owned(), key);
    }

    /// Builds a set from a JWKS, refusing it whole if any key is unusable.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        let mut set = KeySet::new();
        for jwk in &jwks.keys {
            set.insert(VerifyingKey::from_jwk(jwk)?);
        }
        Ok(set)
    }

    /// The keys as a JWKS, sorted by kid for stable output.
    pub fn to_jwks(&self) -> Jwks {
        let mut keys: Vec<_> = self.keys.values().map(|k| k.jwk().clone()).collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Jwks { keys }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl KeyResolver for KeySet {
    fn key(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    fn known_header(&self, header_b64: &str) -> Option<(&Header, &VerifyingKey)> {
        let (header, kid) = self.headers.get(header_b64)?;
        Some((header, self.keys.get(kid)?))
    }
}

/// Token text not yet verified. It offers no access to its claims.
#[derive(Clone, Copy)]
pub struct UnverifiedToken<'a>(&'a str);

impl fmt::Debug for UnverifiedToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UnverifiedToken(sha256:{})",
            crate::hex(&crate::sha256(self.0.as_bytes())[..6])
        )
    }
}

impl<'a> UnverifiedToken<'a> {
    /// Wraps token text.
    pub fn new(text: &'a str) -> Self {
        UnverifiedToken(text)
    }

    /// Runs the pipeline: size, shape, header, signature, claims.
    pub fn verify(
        self,
        keys: &impl KeyResolver,
        opts: &VerifyOptions,
        now: i64,
    ) -> Result<VerifiedToken, TokenError> {
        verify(self.0, keys, opts, now)
    }
}

/// A token whose signature, header and claims have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The checked header.
    pub header: Header,
    /// The checked claims.
    pub claims: AgentClaims,
}

/// Verifies an agent token (pipeline steps 1–4 of docs/design.md).
pub fn verify(
    token: &str,
    keys: &impl KeyResolver,
    opts: &VerifyOptions,
    now: i64,
) -> Result<VerifiedToken, TokenError> {
    // 1–4: size and shape, header (a header this key set wrote itself is already
    // known good), the key by `kid` and its algorithm, the signature, then the claims
    // as strict JSON: the one JWS sequence of every kind (`jws::open`).
    let rules = jws::Rules {
        json: opts.json,
        ..jws::Rules::kid(jws::Typ::Is(AGENT_TOKEN_TYP), opts.max_token_bytes)
    };
    let opened = jws::open::<AgentClaims, _>(token, &rules, jws::ByKid(keys))?;
    let (header, claims) = (opened.header.into_header(), opened.claims);
    claims.check_consistent()?;
    if opts.time == TimeCheck::Enforce {
        check_times(&claims, opts.leeway_secs, now)?;
    }
    check_lifetime(Some(claims.iat), claims.exp, opts.max_lifetime_secs, now)?;
    opts.audience.check(claims.aud.as_ref())?;
    if !opts.issuers.contains(&claims.iss) {
        return Err(TokenError::IssuerUnknown(
            claims.iss.chars().take(128).collect(),
        ));
    }
    Ok(VerifiedToken { header, claims })
}

fn check_times(claims: &AgentClaims, leeway: i64, now: i64) -> Result<(), TokenError> {
    if now.saturating_sub(leeway) >= claims.exp {
        return Err(TokenError::Expired { exp: claims.exp });
    }
    if let Some(nbf) = claims.nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(TokenError::NotYetValid { not_before: nbf });
    }
    if now.saturating_add(leeway) < claims.iat {
        return Err(TokenError::NotYetValid {
            not_before: claims.iat,
        });
    }
    Ok(())
}

/// The longest lifetime a Bonafide verifier accepts by default, seconds (30 days):
/// the registry's `max_token_ttl` and the offline verifiers' bound.
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 30 * 86_400;

/// A token lives at most `max` seconds from its `iat` (from `now` when it has none)
/// to its `exp`: a verifier never accepts a token that outlives its own bound.
pub fn check_lifetime(
    iat: Option<i64>,
    exp: i64,
    max: Option<i64>,
    now: i64,
) -> Result<(), TokenError> {
    let Some(max) = max else { return Ok(()) };
    let from = iat.unwrap_or(now);
    let lifetime = exp.saturating_sub(from);
    if lifetime > max {
        return Err(TokenError::LifetimeTooLong { lifetime, max });
    }
    Ok(())
}

/// Signs agent claims as a `typ agent+jwt` token.
pub fn sign(key: &SigningKey, claims: &AgentClaims) -> Result<String, KeyError> {
    let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?;
    jws::sign_compact(key, AGENT_TOKEN_TYP, &payload)
}

/// The registry's id for a token an issuer signed itself, of any kind (an agent token
/// signed with a registered key, an AgentOAuth consent token): `tok_` + the first 16
/// bytes of SHA-256(`"iss\0"` ‖ issuer id ‖ `"\0"` ‖ `jti`).
///
/// An issuer chooses its own tokens' `jti`, so a `jti` alone names nothing: another
/// issuer can sign a token with the same one. Revocation, audit entries, receipts and
/// status-list slots use this id instead, so two issuers' equal `jti`s never collide
/// (nor collide with the registry's own random ids), and the same token always maps
/// to the same id. It is the one derivation: a revocation by the token's own `jti`
/// finds the token whatever its kind.
pub fn issuer_token_id(issuer: &IssuerId, jti: &str) -> TokenId {
    let mut input = Vec::with_capacity(5 + issuer.as_str().len() + jti.len());
    input.extend_from_slice(b"iss\0");
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

/// The id under which an issuer's revocation of one of its consent policies is
/// recorded, and that every token of that issuer's agents carrying a policy with this
/// `id` is checked against: `tok_` + the first 16 bytes of SHA-256(`"pol\0"` ‖ issuer
/// id ‖ `"\0"` ‖ policy id).
///
/// It is a token id so the revocation travels as one (the change feed, the read
/// model's revoked set, the status lists' ancestors), and it is domain-separated from
/// [`issuer_token_id`] (`"iss\0"`), so no token's own id can equal it. Scoped by the
/// issuer: another issuer's policy of the same `id` is another policy.
pub fn policy_revocation_id(issuer: &IssuerId, policy_id: &str) -> TokenId {
    let mut input = Vec::with_capacity(5 + issuer.as_str().len() + policy_id.len());
    input.extend_from_slice(b"pol\0");
    input.extend_from_slice(issuer.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(policy_id.as_bytes());
    let digest = crate::sha256(&input);
    let mut first = [0u8; 16];
    for (out, byte) in first.iter_mut().zip(digest) {
        *out = byte;
    }
    TokenId::from_random(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_revocation_ids_are_scoped_and_never_a_token_id() {
        let a = IssuerId::from_random([1; 16]);
        let b = IssuerId::from_random([2; 16]);
        let id = policy_revocation_id(&a, "pol_travel");
        assert_eq!(id, policy_revocation_id(&a, "pol_travel"));
        assert_ne!(id, policy_revocation_id(&b, "pol_travel"));
        assert_ne!(id, policy_revocation_id(&a, "pol_travel2"));
        // Domain-separated from the issuer-signed token ids of the same text.
        assert_ne!(id, issuer_token_id(&a, "pol_travel"));
        let mut input = b"pol\0".to_vec();
        input.extend_from_slice(a.as_str().as_bytes());
        input.push(0);
        input.extend_from_slice(b"pol_travel");
        let mut first = [0u8; 16];
        first.copy_from_slice(&crate::sha256(&input)[..16]);
        assert_eq!(id, TokenId::from_random(first));
        assert_eq!(
            TokenError::Revoked(Revoked::Policy).to_string(),
            "token has been revoked: its consent policy (`policy.id`) was revoked by its issuer"
        );
        assert_eq!(
            TokenError::Revoked(Revoked::Token).to_string(),
            "token has been revoked"
        );
    }

    #[test]
    fn issuer_token_ids_are_scoped_by_issuer_and_one_for_every_kind() {
        let a = IssuerId::from_random([1; 16]);
        let b = IssuerId::from_random([2; 16]);
        let jti = TokenId::from_random([3; 16]);
        let id = issuer_token_id(&a, jti.as_str());
        assert_eq!(id, issuer_token_id(&a, jti.as_str()));
        assert_ne!(id, issuer_token_id(&b, jti.as_str()));
        assert_ne!(id, jti);
        assert_ne!(id, issuer_token_id(&a, id.as_str()));
        // The construction ids were stored under before it served every kind: an
        // issuer-signed token revoked or given a status slot then keeps its id.
        let mut input = b"iss\0".to_vec();
        input.extend_from_slice(a.as_str().as_bytes());
        input.push(0);
        input.extend_from_slice(jti.as_str().as_bytes());
        let mut first = [0u8; 16];
        first.copy_from_slice(&crate::sha256(&input)[..16]);
        assert_eq!(id, TokenId::from_random(first));
        // A consent token's `jti` (AgentOAuth's are UUIDs or `act_…`) maps the same way.
        let own = "7d3c1f0e-5b7a-4c8e-9a51-2f6f0c1d9e42";
        let mut input = b"iss\0".to_vec();
        input.extend_from_slice(a.as_str().as_bytes());
        input.push(0);
        input.extend_from_slice(own.as_bytes());
        first.copy_from_slice(&crate::sha256(&input)[..16]);
        assert_eq!(issuer_token_id(&a, own), TokenId::from_random(first));
    }

    #[test]
    fn status_errors_have_their_own_wire_codes() {
        assert_eq!(TokenError::Suspended.code(), ErrorCode::AgentSuspended);
        assert_eq!(TokenError::Suspended.code().as_str(), "AGENT_SUSPENDED");
        assert_eq!(
            TokenError::Revoked(Revoked::Agent).code().as_str(),
            "TOKEN_REVOKED"
        );
        assert_eq!(
            TokenError::Revoked(Revoked::Key).code().as_str(),
            "TOKEN_REVOKED"
        );
        assert_eq!(TokenError::AgentUnknown.code().as_str(), "AGENT_UNKNOWN");
        assert_eq!(
            TokenError::Revoked(Revoked::AgentKeyRotated)
                .code()
                .as_str(),
            "TOKEN_REVOKED"
        );
        assert_eq!(
            TokenError::AgentKeyExpired { expired_at_s: 1 }
                .code()
                .as_str(),
            "TOKEN_EXPIRED"
        );
        // The serde form is the wire form.
        assert_eq!(
            serde_json::to_value(ErrorCode::AgentSuspended).unwrap(),
            serde_json::Value::from("AGENT_SUSPENDED")
        );
    }
}
