//! Issuer answers about agents and their tokens: registration, listing and showing
//! agents, issuing and revoking tokens (with the revoke requests), an agent's keys.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/agents/register` answer (ImaRobot shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRegistered {
    /// `agt_…`.
    #[schema(value_type = crate::values::AgentId)]
    pub agent_id: String,
    /// Display name.
    pub name: String,
    /// The issuer's name.
    pub issuer: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The signed agent token.
    pub token: String,
    /// The token's id (`jti`, `tok_…`): what `POST /v1/tokens/revoke` takes.
    #[schema(value_type = crate::values::TokenId)]
    pub jti: String,
    /// When the token expires (RFC 3339).
    pub expires_at: String,
    /// Where receivers verify it by GET, the token in the path (ImaRobot's shape:
    /// `{registry}/v1/verify/{token}`).
    pub verify_url: String,
    /// The registry's public key (PEM) for offline verification.
    pub public_key_url: String,
    /// `policy_hash` of the consent policy its tokens carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// On whose behalf it acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The agent's own key, when one was sent: the token's `cnf.jkt` is its `jkt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<AgentKeyView>,
    /// Whether tokens without `cnf` verify once the agent has its own key (the
    /// issuer's opt-out; false: only bound tokens).
    pub allow_bearer_tokens: bool,
}

/// An agent as its issuer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// `agt_…`.
    #[schema(value_type = crate::values::AgentId)]
    pub agent_id: String,
    /// Display name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The issuer's name.
    pub issuer: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Receivers its tokens are for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<Vec<String>>,
    /// `active`, `suspended` (tokens refused with `AGENT_SUSPENDED` until reactivated)
    /// or `revoked` (for good).
    pub status: String,
    /// Default token lifetime in seconds.
    pub expiry_seconds: i64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Why, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_reason: Option<String>,
    /// RFC 3339, while suspended: when the suspension began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at: Option<String>,
    /// Why, while suspended and if a reason was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend_reason: Option<String>,
    /// The consent policy its tokens carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub policy: Option<serde_json::Value>,
    /// Its `policy_hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// On whose behalf it acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Whether tokens without `cnf` verify once the agent has its own key (set at
    /// registration; false: only bound tokens).
    pub allow_bearer_tokens: bool,
}

/// A page of agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    /// Agents, oldest first.
    pub agents: Vec<AgentView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A newly issued token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenIssued {
    /// `agt_…`.
    #[schema(value_type = crate::values::AgentId)]
    pub agent_id: String,
    /// `tok_…`.
    #[schema(value_type = crate::values::TokenId)]
    pub jti: String,
    /// The signed token.
    pub token: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Where receivers verify it by GET, the token in the path (ImaRobot's shape).
    pub verify_url: String,
}

/// `POST /v1/agents/{id}/revoke` body (may be empty).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeAgent {
    /// Why, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::values::Text512>)]
    pub reason: Option<String>,
}

/// `POST /v1/agents/{id}/revoke` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRevoked {
    /// Always true.
    pub revoked: bool,
    /// `agt_…`.
    #[schema(value_type = crate::values::AgentId)]
    pub agent_id: String,
    /// RFC 3339; the first revocation's time if revoked before.
    pub revoked_at: String,
    /// The reason given.
    pub reason: Option<String>,
}

/// `POST /v1/tokens/revoke` body: exactly one of `jti` and `token` (both, or
/// neither, is a 422); `agent_id` only with `jti`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeToken {
    /// A registry-signed token's `jti` (`tok_…`), or the `jti` of a token the caller
    /// signed itself, of any kind (an agent token, an AgentOAuth consent token: 1 to
    /// 128 visible characters), or the registry's id for such a token (per issuer and
    /// `jti`: the answer's `jti`). Not with `token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub jti: Option<String>,
    /// The token itself (its signature is checked; expiry is not). A token the
    /// caller signed with its own registered key is recorded and revoked. Not with
    /// `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1)]
    pub token: Option<String>,
    /// With `jti`: the agent of a token the caller signed with its own key and the
    /// registry has never seen (`bonafide token sign` prints its `jti`). The
    /// revocation then lasts as long as any token could still verify: the longest
    /// token lifetime, from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::values::AgentId>)]
    pub agent_id: Option<String>,
}

/// `POST /v1/tokens/revoke` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenRevoked {
    /// Always true.
    pub revoked: bool,
    /// `tok_…`: the registry's id for the token, as in audit entries and receipts.
    /// For an issuer-signed token it is derived from (issuer id, the token's own
    /// `jti`), since one issuer's `jti` may be another's.
    #[schema(value_type = crate::values::TokenId)]
    pub jti: String,
    /// Its agent.
    #[schema(value_type = crate::values::AgentId)]
    pub agent_id: String,
    /// RFC 3339.
    pub revoked_at: String,
}

/// `POST /v1/policies/revoke` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokePolicy {
    /// The consent policy's `id` (`pol.v0.2`, the `id` inside a token's `policy`):
    /// 1 to 128 characters, as a policy's own `id`.
    #[schema(min_length = 1, max_length = 128)]
    pub policy_id: String,
}

/// `POST /v1/policies/revoke` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRevoked {
    /// The policy's `id`, as given.
    pub policy_id: String,
    /// RFC 3339: when it was first revoked (a second revocation keeps the first time).
    pub revoked_at: String,
}

/// One of an agent's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentKeyView {
    /// RFC 7638 thumbprint: the `cnf.jkt` of tokens bound to it.
    pub jkt: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// The public JWK, with `kid`, `alg` and `use`.
    #[schema(value_type = Object)]
    pub jwk: Value,
    /// `current`; `grace` (rotated out, its tokens verify until `grace_until`);
    /// `retired` (rotated out, grace over); `expired` (past `key_expires_at`).
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: tokens bound to it are refused from then on.
    pub key_expires_at: String,
    /// RFC 3339, once rotated out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<String>,
    /// RFC 3339, once rotated out: end of its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<String>,
}
