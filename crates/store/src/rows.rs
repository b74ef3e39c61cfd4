//! Rows as both SQL backends read them, and their parsing into domain types: one
//! definition, so SQLite and PostgreSQL cannot read a stored row differently. A row
//! that does not parse is `Backend` (the data was edited or corrupted), never a
//! panic.

use bonafide_core::apikey::{ApiKeyHash, KeyKind};
use bonafide_core::keys::Algorithm;
use bonafide_core::merkle::Hash;

use crate::ledger::Claimed;
use crate::{
    Agent, AgentKey, AgentStatus, ApiKeyRecord, AuditRecord, AuditRow, CheckpointRecord, Issuer,
    IssuerKey, KeyState, ReceiptRecord, Receiver, SigningKeyRecord, StoreError, TokenRecord,
};

pub(crate) fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{n} is out of range")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditEntryRow {
    pub(crate) idx: i64,
    pub(crate) leaf_hash: Vec<u8>,
    pub(crate) entry: Vec<u8>,
    pub(crate) owner: Option<String>,
}

impl AuditEntryRow {
    pub(crate) fn into_row(self) -> Result<AuditRow, StoreError> {
        Ok(AuditRow {
            index: u64::try_from(self.idx).map_err(|_| corrupt("audit index"))?,
            leaf_hash: Hash::try_from(self.leaf_hash.as_slice())
                .map_err(|_| corrupt("audit leaf hash"))?,
            // The database holds the packed form (`core::audit_pack`); the log's bytes
            // are the canonical entry.
            entry: match bonafide_core::audit_pack::unpack(&self.entry)
                .map_err(|_| corrupt("audit entry"))?
            {
                std::borrow::Cow::Borrowed(_) => self.entry,
                std::borrow::Cow::Owned(entry) => entry,
            },
            owner: self
                .owner
                .map(|o| parse_id(&o, "audit owner"))
                .transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    pub(crate) size: i64,
    pub(crate) root: Vec<u8>,
    pub(crate) note: String,
    pub(crate) created_at_ms: i64,
}

impl CheckpointRow {
    pub(crate) fn into_record(self) -> Result<CheckpointRecord, StoreError> {
        Ok(CheckpointRecord {
            size: u64::try_from(self.size).map_err(|_| corrupt("checkpoint size"))?,
            root: Hash::try_from(self.root.as_slice()).map_err(|_| corrupt("checkpoint root"))?,
            note: self.note,
            created_at_ms: self.created_at_ms,
        })
    }
}

/// The write's audit record, or none when the write changed nothing (nothing is
/// appended then: see [`Store`]'s docs).
pub(crate) fn audited(changed: bool, audit: &AuditRecord) -> &[AuditRecord] {
    if changed {
        std::slice::from_ref(audit)
    } else {
        &[]
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub(crate) hash: Vec<u8>,
    pub(crate) kind: String,
    pub(crate) owner: Option<String>,
    pub(crate) created_at_ms: i64,
    pub(crate) name: String,
    pub(crate) scopes: Option<String>,
    pub(crate) expires_at_ms: Option<i64>,
    pub(crate) created_by: Option<String>,
    pub(crate) last_used_at_ms: Option<i64>,
    pub(crate) revoked_at_ms: Option<i64>,
    pub(crate) rotated_from: Option<String>,
}

/// The smallest and largest hash with this 8-byte prefix: a key's public id found by
/// a range on the primary key (both backends order bytes as unsigned).
pub(crate) fn prefix_range(prefix: &[u8; 8]) -> ([u8; 32], [u8; 32]) {
    let (mut low, mut high) = ([0u8; 32], [0xffu8; 32]);
    low[..8].copy_from_slice(prefix);
    high[..8].copy_from_slice(prefix);
    (low, high)
}

/// [`prefix_range`] of a key's own prefix.
pub(crate) fn key_prefix_range(hash: &ApiKeyHash) -> ([u8; 32], [u8; 32]) {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&hash.0[..8]);
    prefix_range(&prefix)
}

/// Scopes as stored: space-separated, `NULL` for none.
pub(crate) fn scopes_column(scopes: &Option<Vec<String>>) -> Option<String> {
    scopes.as_ref().map(|s| s.join(" "))
}

impl ApiKeyRow {
    pub(crate) fn into_record(self) -> Result<ApiKeyRecord, StoreError> {
        let hash =
            <[u8; 32]>::try_from(self.hash.as_slice()).map_err(|_| corrupt("api key hash"))?;
        Ok(ApiKeyRecord {
            hash: ApiKeyHash(hash),
            kind: parse_key_kind(&self.kind)?,
            owner: self.owner,
            created_at_ms: self.created_at_ms,
            name: self.name,
            scopes: self
                .scopes
                .map(|s| s.split_whitespace().map(str::to_owned).collect()),
            expires_at_ms: self.expires_at_ms,
            created_by: self.created_by,
            last_used_at_ms: self.last_used_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            rotated_from: self.rotated_from,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IssuerDomainRow {
    pub(crate) issuer_id: String,
    pub(crate) domain: String,
    pub(crate) kid: String,
    pub(crate) verified_at_ms: i64,
}

impl IssuerDomainRow {
    pub(crate) fn into_record(self) -> Result<crate::IssuerDomain, StoreError> {
        Ok(crate::IssuerDomain {
            issuer_id: parse_id(&self.issuer_id, "issuer id")?,
            domain: self.domain,
            kid: self.kid,
            verified_at_ms: self.verified_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRevocationRow {
    pub(crate) issuer_id: String,
    pub(crate) policy_id: String,
    pub(crate) revoked_at_ms: i64,
}

impl PolicyRevocationRow {
    /// The one of `rows` whose revocation id is `id`.
    pub(crate) fn find(
        rows: Vec<Self>,
        id: &bonafide_core::ids::TokenId,
    ) -> Result<Option<crate::PolicyRevocation>, StoreError> {
        for row in rows {
            let record = row.into_record()?;
            if bonafide_core::token::policy_revocation_id(&record.issuer_id, &record.policy_id)
                == *id
            {
                return Ok(Some(record));
            }
        }
        Ok(None)
    }

    pub(crate) fn into_record(self) -> Result<crate::PolicyRevocation, StoreError> {
        Ok(crate::PolicyRevocation {
            issuer_id: parse_id(&self.issuer_id, "issuer id")?,
            policy_id: self.policy_id,
            revoked_at_ms: self.revoked_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IssuerRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) created_at_ms: i64,
}

impl IssuerRow {
    pub(crate) fn into_issuer(self) -> Result<Issuer, StoreError> {
        Ok(Issuer {
            id: parse_id(&self.id, "issuer id")?,
            name: self.name,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReceiverRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) created_at_ms: i64,
}

impl ReceiverRow {
    /// The receiver, its audiences still to be read.
    pub(crate) fn into_receiver(self) -> Result<Receiver, StoreError> {
        Ok(Receiver {
            id: parse_id(&self.id, "receiver id")?,
            audiences: Vec::new(),
            name: self.name,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClaimRow {
    pub(crate) key: String,
    pub(crate) request_sha256: Vec<u8>,
    pub(crate) answer: Vec<u8>,
    pub(crate) audit_index: Option<i64>,
    pub(crate) created_at_ms: i64,
}

impl ClaimRow {
    /// The key and its record.
    pub(crate) fn into_claimed(self) -> Result<(String, Claimed), StoreError> {
        let claimed = Claimed {
            request_sha256: <[u8; 32]>::try_from(self.request_sha256.as_slice())
                .map_err(|_| corrupt("idempotency request hash"))?,
            answer: self.answer,
            audit_index: self
                .audit_index
                .map(|i| u64::try_from(i).map_err(|_| corrupt("idempotency audit index")))
                .transpose()?,
            created_at_ms: self.created_at_ms,
        };
        Ok((self.key, claimed))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReceiptRow {
    pub(crate) id: String,
    pub(crate) receiver_id: Option<String>,
    pub(crate) issuer_id: Option<String>,
    pub(crate) claims: Vec<u8>,
    pub(crate) audit_index: Option<i64>,
    pub(crate) created_at_ms: i64,
}

impl ReceiptRow {
    pub(crate) fn into_record(self) -> Result<ReceiptRecord, StoreError> {
        Ok(ReceiptRecord {
            id: parse_id(&self.id, "receipt id")?,
            receiver_id: self
                .receiver_id
                .map(|id| parse_id(&id, "receipt receiver id"))
                .transpose()?,
            issuer_id: self
                .issuer_id
                .map(|id| parse_id(&id, "receipt issuer id"))
                .transpose()?,
            claims: self.claims,
            audit_index: self
                .audit_index
                .map(|i| u64::try_from(i).map_err(|_| corrupt("receipt audit index")))
                .transpose()?,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
    pub(crate) seq: i64,
    pub(crate) id: String,
    pub(crate) issuer_id: String,
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) scopes: String,
    pub(crate) audience: Option<String>,
    pub(crate) token_ttl_s: i64,
    pub(crate) status: String,
    pub(crate) created_at_ms: i64,
    pub(crate) revoked_at_ms: Option<i64>,
    pub(crate) revoke_reason: Option<String>,
    pub(crate) policy: Option<String>,
    pub(crate) user_ref: Option<String>,
    pub(crate) suspended_at_ms: Option<i64>,
    pub(crate) suspend_reason: Option<String>,
    pub(crate) allow_bearer_tokens: bool,
}

/// The `status` column's value for a status: a suspended agent is `active` there, and
/// suspended by its `suspended_at_ms` (see `0004_suspend.sql`).
pub(crate) fn stored_status(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Active | AgentStatus::Suspended => AgentStatus::Active.as_str(),
        AgentStatus::Revoked => AgentStatus::Revoked.as_str(),
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AgentKeyRow {
    pub(crate) agent_id: String,
    pub(crate) jkt: String,
    pub(crate) jwk: String,
    pub(crate) alg: String,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) retired_at_ms: Option<i64>,
    pub(crate) grace_until_ms: Option<i64>,
}

impl AgentKeyRow {
    pub(crate) fn into_record(self) -> Result<AgentKey, StoreError> {
        Ok(AgentKey {
            agent_id: parse_id(&self.agent_id, "agent id")?,
            alg: Algorithm::parse(&self.alg).ok_or_else(|| corrupt("agent key alg"))?,
            jkt: self.jkt,
            jwk: self.jwk,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            retired_at_ms: self.retired_at_ms,
            grace_until_ms: self.grace_until_ms,
        })
    }
}

impl AgentRow {
    pub(crate) fn into_agent(self) -> Result<Agent, StoreError> {
        let status = match (self.status.as_str(), self.suspended_at_ms) {
            ("active", None) => AgentStatus::Active,
            ("active", Some(_)) => AgentStatus::Suspended,
            ("revoked", None) => AgentStatus::Revoked,
            _ => return Err(corrupt("agent status")),
        };
        Ok(Agent {
            id: parse_id(&self.id, "agent id")?,
            issuer_id: parse_id(&self.issuer_id, "issuer id")?,
            name: self.name,
            description: self.description,
            scopes: from_json(&self.scopes, "agent scopes")?,
            audience: self
                .audience
                .map(|text| from_json(&text, "agent audience"))
                .transpose()?,
            token_ttl_s: self.token_ttl_s,
            status,
            created_at_ms: self.created_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            revoke_reason: self.revoke_reason,
            policy: self.policy,
            user: self.user_ref,
            suspended_at_ms: self.suspended_at_ms,
            suspend_reason: self.suspend_reason,
            allow_bearer_tokens: self.allow_bearer_tokens,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    pub(crate) jti: String,
    pub(crate) agent_id: String,
    pub(crate) issuer_id: String,
    pub(crate) kid: String,
    pub(crate) issued_at_s: i64,
    pub(crate) expires_at_s: i64,
    pub(crate) revoked_at_ms: Option<i64>,
}

impl TokenRow {
    pub(crate) fn into_record(self) -> Result<TokenRecord, StoreError> {
        Ok(TokenRecord {
            jti: parse_id(&self.jti, "token id")?,
            agent_id: parse_id(&self.agent_id, "agent id")?,
            issuer_id: parse_id(&self.issuer_id, "issuer id")?,
            kid: self.kid,
            issued_at_s: self.issued_at_s,
            expires_at_s: self.expires_at_s,
            revoked_at_ms: self.revoked_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SigningKeyRow {
    pub(crate) kid: String,
    pub(crate) alg: String,
    pub(crate) private_pem: String,
    pub(crate) state: String,
    pub(crate) created_at_ms: i64,
    pub(crate) publish_until_s: Option<i64>,
}

impl SigningKeyRow {
    pub(crate) fn into_record(self) -> Result<SigningKeyRecord, StoreError> {
        let state = match self.state.as_str() {
            "active" => KeyState::Active,
            "retired" => KeyState::Retired,
            "next" => KeyState::Next,
            _ => return Err(corrupt("signing key state")),
        };
        Ok(SigningKeyRecord {
            alg: Algorithm::parse(&self.alg).ok_or_else(|| corrupt("signing key alg"))?,
            kid: self.kid,
            private_pem: self.private_pem,
            state,
            created_at_ms: self.created_at_ms,
            publish_until_s: self.publish_until_s,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IssuerKeyRow {
    pub(crate) kid: String,
    pub(crate) issuer_id: String,
    pub(crate) alg: String,
    pub(crate) jwk: String,
    pub(crate) created_at_ms: i64,
    pub(crate) revoked_at_ms: Option<i64>,
    pub(crate) alias: Option<String>,
}

impl IssuerKeyRow {
    pub(crate) fn into_record(self) -> Result<IssuerKey, StoreError> {
        Ok(IssuerKey {
            alg: Algorithm::parse(&self.alg).ok_or_else(|| corrupt("issuer key alg"))?,
            issuer_id: parse_id(&self.issuer_id, "issuer id")?,
            kid: self.kid,
            jwk: self.jwk,
            created_at_ms: self.created_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            alias: self.alias,
        })
    }
}

pub(crate) fn key_state_str(state: KeyState) -> &'static str {
    match state {
        KeyState::Active => "active",
        KeyState::Retired => "retired",
        KeyState::Next => "next",
    }
}

/// Inverse of [`KeyKind::as_str`].
pub(crate) fn parse_key_kind(text: &str) -> Result<KeyKind, StoreError> {
    [KeyKind::Admin, KeyKind::Issuer, KeyKind::Receiver]
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| corrupt("api key kind"))
}

pub(crate) fn parse_id<T: for<'a> TryFrom<&'a str>>(
    text: &str,
    what: &str,
) -> Result<T, StoreError> {
    T::try_from(text).map_err(|_| corrupt(what))
}

pub(crate) fn to_json<T: serde::Serialize>(list: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(list).map_err(|e| StoreError::Backend(format!("cannot encode list: {e}")))
}

pub(crate) fn from_json(text: &str, what: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| corrupt(what))
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("stored {what} does not parse"))
}

/// The columns of `webhooks` a [`WebhookRow`] reads, as a literal for `concat!`.
macro_rules! webhook_columns {
    () => {
        "id, receiver_id, url, filter, created_at_ms, delivered_pos, failures, \
         next_attempt_ms, last_error, paused_at_ms, paused_reason"
    };
}
pub(crate) use webhook_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    pub(crate) id: String,
    pub(crate) receiver_id: String,
    pub(crate) url: String,
    pub(crate) filter: String,
    pub(crate) created_at_ms: i64,
    pub(crate) delivered_pos: i64,
    pub(crate) failures: i64,
    pub(crate) next_attempt_ms: i64,
    pub(crate) last_error: Option<String>,
    pub(crate) paused_at_ms: Option<i64>,
    pub(crate) paused_reason: Option<String>,
}

impl WebhookRow {
    pub(crate) fn into_webhook(self) -> Result<crate::Webhook, StoreError> {
        let paused = match (self.paused_at_ms, self.paused_reason) {
            (Some(at_ms), Some(reason)) => Some(crate::Paused { at_ms, reason }),
            (None, None) => None,
            _ => return Err(corrupt("webhook pause")),
        };
        Ok(crate::Webhook {
            id: self.id,
            receiver_id: parse_id(&self.receiver_id, "webhook receiver")?,
            url: self.url,
            filter: self.filter,
            created_at_ms: self.created_at_ms,
            delivered: crate::ChangePosition::new(
                u64::try_from(self.delivered_pos).map_err(|_| corrupt("webhook position"))?,
            ),
            failures: u32::try_from(self.failures).map_err(|_| corrupt("webhook failures"))?,
            next_attempt_ms: self.next_attempt_ms,
            last_error: self.last_error,
            paused,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventAckRow {
    pub(crate) receiver_id: String,
    pub(crate) upto_pos: i64,
    pub(crate) acked_at_ms: i64,
    pub(crate) via: String,
    pub(crate) filter: Option<String>,
}

impl EventAckRow {
    pub(crate) fn into_ack(self) -> Result<crate::EventAck, StoreError> {
        Ok(crate::EventAck {
            receiver_id: parse_id(&self.receiver_id, "ack receiver")?,
            upto: crate::ChangePosition::new(
                u64::try_from(self.upto_pos).map_err(|_| corrupt("ack position"))?,
            ),
            acked_at_ms: self.acked_at_ms,
            via: self.via,
            filter: self.filter,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StatusEntryDbRow {
    pub(crate) seq: i64,
    pub(crate) list_id: i64,
    pub(crate) idx: i64,
    pub(crate) jti: String,
    pub(crate) agent_id: String,
    pub(crate) issuer_id: String,
    pub(crate) expires_at_s: i64,
    pub(crate) chain: Option<String>,
    pub(crate) created_at_ms: i64,
}

/// The columns of [`StatusEntryDbRow`], in a `SELECT` of `status_entries` as `e`.
pub(crate) const STATUS_ENTRY_COLUMNS: &str = "e.seq, e.list_id, e.idx, e.jti, e.agent_id, \
     e.issuer_id, e.expires_at_s, e.chain, e.created_at_ms";

/// A delegated token's chain as `status_entries.chain` holds it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredChain {
    pub(crate) actors: Vec<String>,
    pub(crate) ancestor_jtis: Vec<String>,
    /// Absent in entries written before keys were recorded (none was).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) keys: Vec<crate::AncestorKey>,
}

impl StoredChain {
    /// The chain's JSON text, `None` for a token without one.
    pub(crate) fn encode(entry: &crate::StatusEntry) -> Result<Option<String>, StoreError> {
        if entry.actors.is_empty() && entry.ancestor_jtis.is_empty() && entry.keys.is_empty() {
            return Ok(None);
        }
        let chain = StoredChain {
            actors: entry.actors.iter().map(ToString::to_string).collect(),
            ancestor_jtis: entry
                .ancestor_jtis
                .iter()
                .map(ToString::to_string)
                .collect(),
            keys: entry.keys.clone(),
        };
        serde_json::to_string(&chain)
            .map(Some)
            .map_err(|e| StoreError::Backend(format!("cannot encode a status chain: {e}")))
    }

    /// The `status_chain` subjects of an entry: every actor and ancestor token, every
    /// issuer key behind it and every agent whose key it is bound to.
    pub(crate) fn subjects(entry: &crate::StatusEntry) -> Vec<String> {
        let actors = entry
            .actors
            .iter()
            .map(|a| subject_key(&crate::StatusSubject::Agent(a.clone())));
        let tokens = entry
            .ancestor_jtis
            .iter()
            .map(|j| subject_key(&crate::StatusSubject::Token(j.clone())));
        let keys = entry.keys.iter().flat_map(|k| {
            let issuer_key = k
                .issuer_kid
                .as_ref()
                .map(|kid| subject_key(&crate::StatusSubject::IssuerKey(kid.clone())));
            let holder = k
                .jkt
                .as_ref()
                .map(|_| subject_key(&crate::StatusSubject::Agent(k.agent.clone())));
            issuer_key.into_iter().chain(holder)
        });
        let mut all: Vec<String> = actors.chain(tokens).chain(keys).collect();
        all.sort();
        all.dedup();
        all
    }
}

/// How `status_chain.subject` names a subject.
pub(crate) fn subject_key(subject: &crate::StatusSubject) -> String {
    match subject {
        crate::StatusSubject::Agent(a) => format!("agent:{a}"),
        crate::StatusSubject::Token(t) => format!("token:{t}"),
        crate::StatusSubject::IssuerKey(kid) => format!("issuer_key:{kid}"),
    }
}

impl StatusEntryDbRow {
    pub(crate) fn into_row(self) -> Result<crate::StatusEntryRow, StoreError> {
        let (actors, ancestor_jtis, keys) = match self.chain.as_deref() {
            None => (Vec::new(), Vec::new(), Vec::new()),
            Some(text) => {
                let chain: StoredChain =
                    serde_json::from_str(text).map_err(|_| corrupt("status chain"))?;
                (
                    chain
                        .actors
                        .iter()
                        .map(|a| parse_id(a, "agent id"))
                        .collect::<Result<_, _>>()?,
                    chain
                        .ancestor_jtis
                        .iter()
                        .map(|j| parse_id(j, "token id"))
                        .collect::<Result<_, _>>()?,
                    chain.keys,
                )
            }
        };
        Ok(crate::StatusEntryRow {
            seq: u64::try_from(self.seq).map_err(|_| corrupt("status entry seq"))?,
            slot: crate::StatusSlot {
                list_id: u32::try_from(self.list_id).map_err(|_| corrupt("status list id"))?,
                idx: u64::try_from(self.idx).map_err(|_| corrupt("status index"))?,
            },
            entry: crate::StatusEntry {
                jti: parse_id(&self.jti, "token id")?,
                agent_id: parse_id(&self.agent_id, "agent id")?,
                issuer_id: parse_id(&self.issuer_id, "issuer id")?,
                expires_at_s: self.expires_at_s,
                actors,
                ancestor_jtis,
                keys,
            },
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StatusListDbRow {
    pub(crate) id: i64,
    pub(crate) bits: i64,
    pub(crate) size: i64,
    pub(crate) allocated: i64,
    pub(crate) created_at_ms: i64,
}

impl StatusListDbRow {
    pub(crate) fn into_record(self) -> Result<crate::StatusListRecord, StoreError> {
        Ok(crate::StatusListRecord {
            id: u32::try_from(self.id).map_err(|_| corrupt("status list id"))?,
            shape: crate::ListShape {
                bits: u8::try_from(self.bits).map_err(|_| corrupt("status list bits"))?,
                size: u64::try_from(self.size).map_err(|_| corrupt("status list size"))?,
            },
            allocated: u64::try_from(self.allocated).map_err(|_| corrupt("status list count"))?,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PublishedListDbRow {
    pub(crate) list_id: i64,
    pub(crate) version: i64,
    pub(crate) token: String,
    pub(crate) issued_at_s: i64,
    pub(crate) expires_at_s: i64,
    pub(crate) audit_index: i64,
}

impl PublishedListDbRow {
    pub(crate) fn into_record(self) -> Result<crate::PublishedStatusList, StoreError> {
        Ok(crate::PublishedStatusList {
            list_id: u32::try_from(self.list_id).map_err(|_| corrupt("status list id"))?,
            version: u64::try_from(self.version).map_err(|_| corrupt("status list version"))?,
            token: self.token,
            issued_at_s: self.issued_at_s,
            expires_at_s: self.expires_at_s,
            audit_index: u64::try_from(self.audit_index)
                .map_err(|_| corrupt("status list audit index"))?,
        })
    }
}

/// SQL made by `format!` from this crate's own constants only (column lists, which
/// column to match), never from input: values are always bound.
pub(crate) fn safe_sql(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// A table holding one optional value per name, set by an audited write that writes
/// (and audits) only a change: rate-limit settings, organisations' plans.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NamedValues {
    /// The table.
    pub table: &'static str,
    /// Its key column.
    pub key: &'static str,
    /// Its value column (beside `set_at_ms`).
    pub value: &'static str,
}

/// `rate_limit_settings (name → value)`.
pub(crate) const RATE_LIMIT_SETTINGS: NamedValues = NamedValues {
    table: "rate_limit_settings",
    key: "name",
    value: "value",
};

/// `org_plans (org_id → plan)`.
pub(crate) const ORG_PLANS: NamedValues = NamedValues {
    table: "org_plans",
    key: "org_id",
    value: "plan",
};

/// A stored slot as the domain type.
pub(crate) fn status_slot(list_id: i64, idx: i64) -> Result<crate::StatusSlot, StoreError> {
    Ok(crate::StatusSlot {
        list_id: u32::try_from(list_id).map_err(|_| corrupt("status list id"))?,
        idx: u64::try_from(idx).map_err(|_| corrupt("status index"))?,
    })
}

/// The slot a jti already has, if the same token asks again (same agent and issuer);
/// another token with that jti is a conflict.
pub(crate) fn same_token_slot(
    list_id: i64,
    idx: i64,
    agent: &str,
    issuer: &str,
    entry: &crate::StatusEntry,
) -> Result<crate::StatusSlot, StoreError> {
    if agent == entry.agent_id.as_str() && issuer == entry.issuer_id.as_str() {
        status_slot(list_id, idx)
    } else {
        Err(StoreError::Conflict(crate::ConflictKind::IdTaken))
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SdkVerificationRow {
    pub(crate) id_sha256: Vec<u8>,
    pub(crate) audit_index: i64,
    pub(crate) agent_id: String,
    pub(crate) created_at_ms: i64,
    pub(crate) result: Option<String>,
    pub(crate) result_at_ms: Option<i64>,
    pub(crate) execution: Option<String>,
    pub(crate) execution_at_ms: Option<i64>,
}

impl SdkVerificationRow {
    pub(crate) fn into_verification(self) -> Result<crate::SdkVerification, StoreError> {
        let report = |body: Option<String>, at_ms: Option<i64>, what: &str| match (body, at_ms) {
            (Some(body), Some(at_ms)) => Ok(Some(crate::SdkReport { body, at_ms })),
            (None, None) => Ok(None),
            _ => Err(corrupt(what)),
        };
        Ok(crate::SdkVerification {
            record: crate::NewSdkVerification {
                id_sha256: <[u8; 32]>::try_from(self.id_sha256.as_slice())
                    .map_err(|_| corrupt("sdk verification id"))?,
                audit_index: u64::try_from(self.audit_index)
                    .map_err(|_| corrupt("sdk verification audit index"))?,
                agent_id: parse_id(&self.agent_id, "sdk verification agent")?,
                created_at_ms: self.created_at_ms,
            },
            result: report(self.result, self.result_at_ms, "sdk verification result")?,
            execution: report(
                self.execution,
                self.execution_at_ms,
                "sdk verification execution status",
            )?,
        })
    }
}

/// The columns of a report kind (static text: never from a request).
pub(crate) fn sdk_report_columns(kind: crate::SdkReportKind) -> (&'static str, &'static str) {
    match kind {
        crate::SdkReportKind::Result => ("result", "result_at_ms"),
        crate::SdkReportKind::Execution => ("execution", "execution_at_ms"),
    }
}
