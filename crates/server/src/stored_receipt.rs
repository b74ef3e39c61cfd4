//! How a verify receipt is stored (issue 17 goal 6): only what its decision's audit
//! entry does not already say.
//!
//! A receipt's claims repeat its audit entry (decision, reasons, agent, token, digests,
//! time, receipt id, the receiver that asked) and every receipt's decision is audited,
//! so the store keeps the claims the entry lacks ([`StoredReceipt`]: `iss`, `valid`,
//! `remaining`) and `GET /v1/receipts/{id}` rebuilds the rest from the entry at the
//! receipt's `audit_index`: the same claims, so the same (deterministic) signature.
//! Its readers come from the entry too (the actor, the agent's issuer), so the
//! receipt row's `receiver_id` and `issuer_id` stay empty. Receipts stored with all
//! their claims (before this form) are read as they are, with their stored readers.

use bonafide_core::audit::AuditEntry;
use bonafide_core::ids::{AgentId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::receipt::{ReceiptClaims, RemainingClaim};
use serde::{Deserialize, Serialize};

use crate::time::rfc3339_ms;

/// The form's mark: a stored receipt with `"f":1` is this form (member names are
/// short: one is stored per verify).
const FORM: u8 = 1;

/// The claims of a receipt that its audit entry does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredReceipt {
    /// Always [`FORM`].
    #[serde(rename = "f")]
    form: u8,
    /// The registry URL when decided (it may be configured otherwise later).
    iss: String,
    /// Whether the token was genuine and live.
    #[serde(rename = "v")]
    valid: bool,
    /// The period budget after the decision.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    remaining: Option<RemainingClaim>,
}

/// A stored receipt, as read.
#[derive(Debug)]
pub enum Stored {
    /// All the claims (a receipt stored before [`StoredReceipt`]).
    Full(serde_json::Map<String, serde_json::Value>),
    /// Only what the audit entry lacks.
    FromEntry(StoredReceipt),
}

impl StoredReceipt {
    /// What is stored of `claims`.
    pub fn of(claims: &ReceiptClaims) -> Self {
        StoredReceipt {
            form: FORM,
            iss: claims.iss.clone(),
            valid: claims.valid,
            remaining: claims.remaining.clone(),
        }
    }

    /// Reads a stored receipt's bytes (either form).
    pub fn parse(bytes: &[u8]) -> Result<Stored, String> {
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !map.contains_key("f") {
            return Ok(Stored::Full(map));
        }
        let stored: StoredReceipt =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(|e| e.to_string())?;
        if stored.form != FORM {
            return Err(format!("unknown receipt form {}", stored.form));
        }
        Ok(Stored::FromEntry(stored))
    }

    /// The receipt's claims (without `audit_index`), rebuilt from its decision's audit
    /// entry: exactly those `Deciding::receipt_claims` made. An entry that is not
    /// this receipt's decision is an error.
    pub fn claims(
        self,
        id: &ReceiptId,
        receiver: Option<ReceiverId>,
        entry: &AuditEntry,
    ) -> Result<ReceiptClaims, String> {
        if entry.receipt.as_deref() != Some(id.as_str()) {
            return Err("the audit entry is not this receipt's decision".to_owned());
        }
        let missing = |what: &str| format!("the receipt's audit entry has no {what}");
        let agent_id = entry
            .agent
            .as_deref()
            .map(|a| AgentId::try_from(a).map_err(|e| e.to_string()))
            .transpose()?;
        let jti = entry
            .jti
            .as_deref()
            .map(|j| TokenId::try_from(j).map_err(|e| e.to_string()))
            .transpose()?;
        Ok(ReceiptClaims {
            iss: self.iss,
            iat: entry.time_ms.div_euclid(1000),
            sub: id.clone(),
            receipt_id: id.clone(),
            decision: entry.decision.ok_or_else(|| missing("decision"))?,
            valid: self.valid,
            reasons: entry.reasons.clone(),
            token_sha256: entry
                .token_sha256
                .clone()
                .ok_or_else(|| missing("token_sha256"))?,
            agent_id,
            jti,
            policy_hash: entry.policy_hash.clone(),
            request_sha256: entry
                .request_sha256
                .clone()
                .ok_or_else(|| missing("request_sha256"))?,
            verified_at: rfc3339_ms(entry.time_ms),
            remaining: self.remaining,
            audit_index: None,
            receiver,
        })
    }
}

#[cfg(test)]
mod tests {
    use bonafide_core::audit::{Actor, Decision, EventType};

    use super::*;

    const ID: &str = "rcp_agreoljclr5u4qyjgguzbsgtvi";

    fn entry() -> AuditEntry {
        let mut e = AuditEntry::new(
            EventType::Verify,
            1_796_490_469_980,
            Actor::Receiver {
                id: "rcv_xdwz3gwnb5lbtx5c5cuvva5zwe".into(),
            },
        );
        e.agent = Some("agt_wp7rnpgjko3mldxfuxtytivgwi".into());
        e.jti = Some("tok_j3mfh4zqdzxuxn7zyedjdxhiqy".into());
        e.token_sha256 = Some("ab".repeat(32));
        e.request_sha256 = Some("cd".repeat(32));
        e.decision = Some(Decision::Deny);
        e.reasons = vec!["BUDGET_EXCEEDED".into()];
        e.policy_hash = Some(format!("sha256:{}", "ef".repeat(32)));
        e.receipt = Some(ID.into());
        e
    }

    fn claims() -> ReceiptClaims {
        let id = ReceiptId::try_from(ID).unwrap();
        ReceiptClaims {
            iss: "https://registry.example".into(),
            iat: 1_796_490_469,
            sub: id.clone(),
            receipt_id: id,
            decision: Decision::Deny,
            valid: true,
            reasons: vec!["BUDGET_EXCEEDED".into()],
            token_sha256: "ab".repeat(32),
            agent_id: Some(AgentId::try_from("agt_wp7rnpgjko3mldxfuxtytivgwi").unwrap()),
            jti: Some(TokenId::try_from("tok_j3mfh4zqdzxuxn7zyedjdxhiqy").unwrap()),
            policy_hash: Some(format!("sha256:{}", "ef".repeat(32))),
            request_sha256: "cd".repeat(32),
            verified_at: "2026-12-05T17:07:49.980Z".into(),
            remaining: Some(RemainingClaim {
                amount: "12.50".into(),
                currency: "USD".into(),
                period: "month".into(),
                period_ends: "2027-01-01T00:00:00Z".into(),
            }),
            audit_index: None,
            receiver: Some(ReceiverId::try_from("rcv_xdwz3gwnb5lbtx5c5cuvva5zwe").unwrap()),
        }
    }

    #[test]
    fn the_claims_come_back_from_the_entry() {
        let claims = claims();
        let bytes = serde_json::to_vec(&StoredReceipt::of(&claims)).unwrap();
        let Stored::FromEntry(stored) = StoredReceipt::parse(&bytes).unwrap() else {
            panic!("not the entry form");
        };
        let id = ReceiptId::try_from(ID).unwrap();
        let back = stored
            .claims(&id, claims.receiver.clone(), &entry())
            .unwrap();
        assert_eq!(back, claims);
        // What is stored is only what the entry lacks.
        let full = serde_json::to_vec(&claims).unwrap();
        assert!(
            bytes.len() * 4 < full.len(),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
    }

    #[test]
    fn another_decisions_entry_is_refused() {
        let stored = StoredReceipt::of(&claims());
        let mut other = entry();
        other.receipt = Some("rcp_zzzzzljclr5u4qyjgguzbsgtvi".into());
        let id = ReceiptId::try_from(ID).unwrap();
        assert!(stored.clone().claims(&id, None, &other).is_err());
        other.receipt = Some(ID.into());
        other.token_sha256 = None;
        assert!(stored.claims(&id, None, &other).is_err());
    }

    #[test]
    fn full_claims_and_unknown_forms_are_told_apart() {
        let full = serde_json::to_vec(&claims()).unwrap();
        assert!(matches!(StoredReceipt::parse(&full), Ok(Stored::Full(_))));
        assert!(StoredReceipt::parse(br#"{"f":2,"iss":"x","v":true}"#).is_err());
        assert!(StoredReceipt::parse(br#"{"f":1,"iss":"x","v":true,"z":1}"#).is_err());
        assert!(StoredReceipt::parse(b"not json").is_err());
    }
}
