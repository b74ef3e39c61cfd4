//! Receiver answers: `POST /v1/verify` and `POST /v1/simulate` ([`VerifyResponse`]),
//! `GET /v1/verify/{token}` ([`SimpleVerify`]) and RFC 7662 introspection
//! ([`IntrospectResponse`]).
//!
//! A token that is not valid is answered 200 with `valid: false` and `error`, the
//! same [`ErrorDetail`] object as an error answer's (`{"code","message",
//! "request_id"}`). Introspection answers an inactive token with `{"active": false}`
//! only (RFC 7662 §2.2: nothing more about an inactive token), so it has no `error`.

use bonafide_core::receipt::RemainingClaim;
use bonafide_core::token::Confirmation;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ErrorDetail;

/// One agent of a delegation chain, as verify answers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hop {
    /// `agt_…`.
    #[schema(value_type = crate::values::AgentId)]
    pub agent_id: String,
    /// Its registered name (empty if the agent is not registered here).
    pub name: String,
}

/// What is left of a policy's period budget (`remaining` in answers and receipts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RemainingView {
    /// Left to spend in this period, after this decision: an exact decimal with the
    /// currency's minor units (`"1099.50"`).
    pub amount: String,
    /// ISO 4217 code.
    pub currency: String,
    /// `hour`, `day`, `week` (ISO, Monday first) or `month`, in the policy's zone.
    pub period: String,
    /// When the budget is whole again: the first instant of the next period (RFC 3339).
    pub period_ends: String,
}

impl From<RemainingView> for RemainingClaim {
    fn from(r: RemainingView) -> Self {
        RemainingClaim {
            amount: r.amount,
            currency: r.currency,
            period: r.period,
            period_ends: r.period_ends,
        }
    }
}

/// The agent in a verify answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifiedAgent {
    /// `agt_…`.
    #[schema(value_type = crate::values::AgentId)]
    pub id: String,
    /// `did:web:<registry>:agents:<id>`.
    pub did: String,
    /// Display name.
    pub name: String,
    /// The agent's issuer.
    pub issuer: String,
    /// The requested scopes if all are granted, else every granted scope.
    pub active_scopes: Vec<String>,
}

/// `POST /v1/verify` and `POST /v1/simulate` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerifyResponse {
    /// Genuine, live, not revoked (steps 1–7).
    pub valid: bool,
    /// Valid, and this request is within the token's grant (steps 8–9).
    pub allowed: bool,
    /// When not valid: why (`code` is the token error: `TOKEN_INVALID`,
    /// `TOKEN_EXPIRED`, `TOKEN_REVOKED`, `PROOF_REQUIRED`, …), the same object as an
    /// error answer's `error`. Absent when valid, even if not allowed (`reasons`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// Why, in words, when not allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Machine-readable reasons when not allowed, in check order (`SCOPE_NOT_GRANTED`,
    /// `POLICY_ACTION`, `POLICY_RESOURCE`, `TIME_WINDOW`, `AMOUNT_REQUIRED`,
    /// `CURRENCY_MISMATCH`, `LIMIT_PER_TXN`, `LIMIT_PER_PERIOD`, or the token error
    /// code, then a more precise one such as `KEY_REVOKED` or `BINDING_REQUIRED`).
    pub reasons: Vec<String>,
    /// The agent, when valid. For a delegated token, the subject: the root agent
    /// whose authority was delegated (`delegation` names the agent presenting it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<VerifiedAgent>,
    /// For a valid token made by token exchange (`POST /v1/token`): the delegation
    /// chain, root first, the last being the agent that presents the token. Absent
    /// for a token that was not delegated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation: Vec<Hop>,
    /// When valid, how far the registry vouches for the agent's issuer:
    /// `domain_verified` (it proved control of a domain with
    /// `POST /v1/issuer/verify-domain`) or `registered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level: Option<String>,
    /// With `domain_verified`: the domain the issuer proved, so the receiver sees
    /// what is vouched for (not the issuer's own name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_domain: Option<String>,
    /// On whose behalf the agent acts, when the token says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// RFC 3339 with milliseconds, when valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 with milliseconds.
    pub verified_at: String,
    /// What is left of the policy's period budget after this decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<RemainingView>,
    /// Valid, but something needs attention soon: `KEY_EXPIRES_SOON` when the agent
    /// key the token is bound to (`cnf.jkt`) expires within 14 days (rotate it with
    /// `PUT /v1/agents/{id}/keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The signed receipt of this decision (`GET /v1/receipts/{id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
    /// Index of this decision's entry in the audit log, durable before this answer
    /// was sent (`/v1/audit/proof/inclusion?index=…` proves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_index: Option<u64>,
    /// True for `POST /v1/simulate`: nothing was recorded or spent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

impl VerifyResponse {
    /// The delegation chain's agent ids, root first; for a token that was not
    /// delegated, the agent alone (empty when not valid).
    pub fn chain(&self) -> Vec<&str> {
        if self.delegation.is_empty() {
            self.agent.iter().map(|a| a.id.as_str()).collect()
        } else {
            self.delegation
                .iter()
                .map(|h| h.agent_id.as_str())
                .collect()
        }
    }
}

/// `GET /v1/verify/{token}` answer (ImaRobot shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SimpleVerify {
    /// Whether the token is genuine, live and not revoked.
    pub valid: bool,
    /// When not valid: why (`TOKEN_INVALID`, `TOKEN_EXPIRED`, `TOKEN_REVOKED`,
    /// `PROOF_REQUIRED`, …), the same object as an error answer's `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    /// `agt_…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::values::AgentId>)]
    pub agent_id: Option<String>,
    /// Agent name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The agent's issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Granted scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// What the agent does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// RFC 3339 with milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    /// RFC 3339 with milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 with milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    /// `domain_verified` when the agent's issuer has proved a domain (and that proof
    /// is in force), else `registered`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level: Option<String>,
    /// With `domain_verified`: the domain the issuer proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_domain: Option<String>,
    /// For a token made by token exchange: the delegation chain, root first (the
    /// agent fields above are the root's). Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegation: Vec<Hop>,
}

impl SimpleVerify {
    /// The answer for a token that is not valid.
    pub fn invalid(error: ErrorDetail) -> Self {
        SimpleVerify {
            valid: false,
            error: Some(error),
            agent_id: None,
            name: None,
            issuer: None,
            scopes: None,
            description: None,
            issued_at: None,
            expires_at: None,
            verified_at: None,
            trust_level: None,
            issuer_domain: None,
            delegation: Vec::new(),
        }
    }
}

/// RFC 7662 §2.2 answer. An inactive token answers `{"active": false}` only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntrospectResponse {
    /// Whether the token is currently active.
    pub active: bool,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `agent+jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audiences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    /// The registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The agent's name (RFC 7662 `username`: a human-readable identifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The key the token is bound to (RFC 9449 §6.2): the caller must check the
    /// request's proof of possession against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cnf: Option<Confirmation>,
    /// Extension member (RFC 7662 §2.2): `domain_verified` or `registered`, as in
    /// verify answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_level: Option<String>,
    /// Extension member: with `domain_verified`, the domain the issuer proved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_domain: Option<String>,
}

impl IntrospectResponse {
    /// `{"active": false}`.
    pub fn inactive() -> Self {
        IntrospectResponse {
            active: false,
            scope: None,
            token_type: None,
            exp: None,
            iat: None,
            nbf: None,
            sub: None,
            aud: None,
            iss: None,
            jti: None,
            username: None,
            cnf: None,
            trust_level: None,
            issuer_domain: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn a_denial_carries_the_error_object() {
        let answer: VerifyResponse = serde_json::from_str(
            r#"{"valid":false,"allowed":false,
                "error":{"code":"TOKEN_REVOKED","message":"token revoked","request_id":"req_1"},
                "reason":"token revoked","reasons":["TOKEN_REVOKED","KEY_REVOKED"],
                "verified_at":"2026-01-01T00:00:00.000Z"}"#,
        )
        .unwrap();
        let error = answer.error.as_ref().unwrap();
        assert_eq!(error.code, ErrorCode::TokenRevoked);
        assert_eq!(error.message, "token revoked");
        assert!(answer.chain().is_empty());
        // The old string shape is not this contract's.
        assert!(
            serde_json::from_str::<VerifyResponse>(
                r#"{"valid":false,"allowed":false,"error":"TOKEN_REVOKED","reasons":[],"verified_at":"t"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn an_answer_round_trips_exactly() {
        let text = r#"{"valid":true,"allowed":true,"reasons":[],"agent":{"id":"agt_a","did":"did:web:x","name":"n","issuer":"i","active_scopes":["read:x"]},"delegation":[{"agent_id":"agt_a","name":"n"},{"agent_id":"agt_b","name":""}],"trust_level":"registered","expires_at":"e","verified_at":"v","simulated":true}"#;
        let answer: VerifyResponse = serde_json::from_str(text).unwrap();
        assert_eq!(answer.chain(), ["agt_a", "agt_b"]);
        assert_eq!(serde_json::to_string(&answer).unwrap(), text);
        // A member a newer registry adds is ignored, not refused.
        let newer = text.replace(r#""valid":true"#, r#""valid":true,"later":1"#);
        assert_eq!(
            serde_json::from_str::<VerifyResponse>(&newer).unwrap(),
            answer
        );
    }

    #[test]
    fn introspection_of_an_inactive_token_is_active_false_only() {
        assert_eq!(
            serde_json::to_string(&IntrospectResponse::inactive()).unwrap(),
            r#"{"active":false}"#
        );
    }
}
