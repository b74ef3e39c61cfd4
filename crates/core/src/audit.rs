//! Audit log entries: what the registry writes down for every state change and every
//! verify decision, as RFC 8785 (JCS) canonical JSON.
//!
//! Canonical JSON makes an entry's bytes a function of its content alone, so anyone
//! holding the content can recompute the leaf hash (`SHA-256(0x00 ‖ entry)`, see
//! [`crate::merkle::leaf_hash`]) and check it against the log. Entries hold no token
//! and no secret: tokens appear as their SHA-256 ([`token_sha256`]).
//!
//! Entries are at most [`MAX_ENTRY_BYTES`], so that each fits a C2SP tlog-tiles entry
//! bundle (a 16-bit length prefix per entry); [`AuditEntry::to_canonical`] refuses
//! larger ones rather than cut them.

use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, leaf_hash};

/// Largest canonical entry, in bytes (tlog-tiles entry bundles use `uint16` lengths).
pub const MAX_ENTRY_BYTES: usize = 65_535;

/// Version of the entry format, the `v` member.
pub const ENTRY_VERSION: u8 = 1;

/// What went wrong building or reading an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The canonical entry would exceed [`MAX_ENTRY_BYTES`].
    #[error("audit entry is {0} bytes; the most is 65535")]
    TooLarge(usize),
    /// The entry could not be encoded (never expected for well-formed entries).
    #[error("audit entry cannot be encoded: {0}")]
    Encode(String),
    /// The bytes are not an audit entry of this version.
    #[error("not an audit entry: {0}")]
    Malformed(String),
    /// The bytes are an entry but not in RFC 8785 canonical form, so their hash is not
    /// the hash a third party would compute from the content.
    #[error("audit entry is not in RFC 8785 canonical form")]
    NotCanonical,
}

/// The kind of event an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EventType {
    /// An issuer was created (admin).
    #[serde(rename = "issuer.created")]
    IssuerCreated,
    /// An agent was registered, with its first token.
    #[serde(rename = "agent.registered")]
    AgentRegistered,
    /// A further token was issued for an agent.
    #[serde(rename = "token.issued")]
    TokenIssued,
    /// An agent and all its tokens were revoked.
    #[serde(rename = "agent.revoked")]
    AgentRevoked,
    /// One token was revoked.
    #[serde(rename = "token.revoked")]
    TokenRevoked,
    /// A key was added (an admin API key, or the registry's first signing key).
    #[serde(rename = "key.added")]
    KeyAdded,
    /// The registry signing key was rotated.
    #[serde(rename = "key.rotated")]
    KeyRotated,
    /// A key was revoked.
    #[serde(rename = "key.revoked")]
    KeyRevoked,
    /// A receiver asked whether a token is valid and allowed; `decision` says.
    #[serde(rename = "verify")]
    Verify,
    /// A receiver (an API that verifies with a key) was created (admin).
    #[serde(rename = "receiver.created")]
    ReceiverCreated,
    /// A receiver's audiences were changed (admin, or the receiver itself).
    #[serde(rename = "receiver.updated")]
    ReceiverUpdated,
    /// An agent was suspended: its tokens stop verifying until it is reactivated.
    #[serde(rename = "agent.suspended")]
    AgentSuspended,
    /// A suspended agent was reactivated: its tokens verify again.
    #[serde(rename = "agent.reactivated")]
    AgentReactivated,
    /// An issuer proved it controls a domain (its JWKS there holds a registered key);
    /// `note` is the domain.
    #[serde(rename = "issuer.domain_verified")]
    IssuerDomainVerified,
    /// A delegated token was made by token exchange (RFC 8693, `POST /v1/token`):
    /// `agent` is its subject, `jti` the child token, `note` names the actor and the
    /// token it was exchanged from.
    #[serde(rename = "token.delegated")]
    TokenDelegated,
    /// A version of a Token Status List was published (`target` its URI, `note` its
    /// version and shape, `list_sha256` its statuses): what every receiver was
    /// served, committed before it is served
    /// ([`crate::status_list::published_entry`]).
    #[serde(rename = "status_list.published")]
    StatusListPublished,
    /// An issuer revoked one of its consent policies: every token of its agents
    /// carrying a policy of that `id` stops verifying. `issuer` is the issuer,
    /// `target` the policy id, `jti` the revocation's id
    /// ([`crate::token::policy_revocation_id`]).
    #[serde(rename = "policy.revoked")]
    PolicyRevoked,
    /// A rate limit was set or cleared (`target` what it applies to, `note` the
    /// limit, or `cleared`), by an admin or by `serve` starting with other defaults.
    #[serde(rename = "rate_limit.set")]
    RateLimitSet,
    /// A receiver acknowledged push events (one entry per acknowledgement, not per
    /// event): `actor` the receiver, `target` how (`sse` or the webhook's id), `jti`
    /// the last event acknowledged (`evt-<id>`, the SET's `jti`), `note` what the
    /// acknowledging stream or webhook follows. With the event's own entry, it proves
    /// "revoked at T, receiver R acknowledged at T+Δ".
    #[serde(rename = "event.acknowledged")]
    EventAcknowledged,
    /// An organisation used 80 % of its monthly verification quota (`org`; `note`:
    /// the month, the count and the limit). Once per organisation and month.
    #[serde(rename = "quota.warning")]
    QuotaWarning,
    // ---- organisations, people and sessions (issue 18); `org` and `person` say
    // whom, `note` what changed (a role, a reason), never a secret.
    /// An organisation was created (registry admin, or open sign-up).
    #[serde(rename = "org.created")]
    OrgCreated,
    /// An organisation's settings changed (`note`: which, e.g. `require_2fa=true`).
    #[serde(rename = "org.updated")]
    OrgUpdated,
    /// A person was invited into an organisation (`note`: the role).
    #[serde(rename = "person.invited")]
    PersonInvited,
    /// An invitation was accepted: the person has a password and a membership.
    #[serde(rename = "person.joined")]
    PersonJoined,
    /// A member's role changed (`note`: `old->new`).
    #[serde(rename = "member.role_changed")]
    MemberRoleChanged,
    /// A member was removed from an organisation; their sessions there end.
    #[serde(rename = "member.removed")]
    MemberRemoved,
    /// A person logged in: a session began (`target`: the session id).
    #[serde(rename = "session.created")]
    SessionCreated,
    /// A session's refresh token was rotated.
    #[serde(rename = "session.refreshed")]
    SessionRefreshed,
    /// A session ended (logout, revoked, refresh-token reuse; `note` says which).
    #[serde(rename = "session.revoked")]
    SessionRevoked,
    /// A person changed their password (their other sessions end).
    #[serde(rename = "password.changed")]
    PasswordChanged,
    /// TOTP two-factor authentication was enabled (recovery codes issued).
    #[serde(rename = "totp.enabled")]
    TotpEnabled,
    /// TOTP was turned off, or a recovery code was used (`note` says which).
    #[serde(rename = "totp.changed")]
    TotpChanged,
    /// Records of the log were pruned from the registry's database (they are served
    /// from its export): `target` the end of the pruned prefix, `note` how many.
    #[serde(rename = "audit.pruned")]
    AuditPruned,
}

impl EventType {
    /// The wire name (`agent.registered`, `verify`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::IssuerCreated => "issuer.created",
            EventType::AgentRegistered => "agent.registered",
            EventType::TokenIssued => "token.issued",
            EventType::AgentRevoked => "agent.revoked",
            EventType::TokenRevoked => "token.revoked",
            EventType::KeyAdded => "key.added",
            EventType::KeyRotated => "key.rotated",
            EventType::KeyRevoked => "key.revoked",
            EventType::Verify => "verify",
            EventType::ReceiverCreated => "receiver.created",
            EventType::ReceiverUpdated => "receiver.updated",
            EventType::AgentSuspended => "agent.suspended",
            EventType::AgentReactivated => "agent.reactivated",
            EventType::IssuerDomainVerified => "issuer.domain_verified",
            EventType::TokenDelegated => "token.delegated",
            EventType::StatusListPublished => "status_list.published",
            EventType::PolicyRevoked => "policy.revoked",
            EventType::RateLimitSet => "rate_limit.set",
            EventType::EventAcknowledged => "event.acknowledged",
            EventType::QuotaWarning => "quota.warning",
            EventType::OrgCreated => "org.created",
            EventType::OrgUpdated => "org.updated",
            EventType::PersonInvited => "person.invited",
            EventType::PersonJoined => "person.joined",
            EventType::MemberRoleChanged => "member.role_changed",
            EventType::MemberRemoved => "member.removed",
            EventType::SessionCreated => "session.created",
            EventType::SessionRefreshed => "session.refreshed",
            EventType::SessionRevoked => "session.revoked",
            EventType::PasswordChanged => "password.changed",
            EventType::TotpEnabled => "totp.enabled",
            EventType::TotpChanged => "totp.changed",
            EventType::AuditPruned => "audit.pruned",
        }
    }
}

/// Who caused the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Actor {
    /// Someone holding an admin key.
    Admin,
    /// An issuer, by id (`iss_…`).
    Issuer {
        /// The issuer id.
        id: String,
    },
    /// A receiver, by id (`rcv_…`).
    Receiver {
        /// The receiver id.
        id: String,
    },
    /// The registry itself (start-up, key generation).
    Registry,
    /// A caller that presented no key.
    Anonymous,
    /// A person logged in (issue 18), by id (`usr_…`).
    Person {
        /// The person id.
        id: String,
    },
}

/// A verify decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Valid and within the grant.
    Allow,
    /// Anything else.
    Deny,
}

/// One audit log entry. Optional members are left out when absent, and lists when
/// empty, so the canonical form holds only what is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Format version, [`ENTRY_VERSION`].
    pub v: u8,
    /// What happened.
    #[serde(rename = "type")]
    pub event: EventType,
    /// When, Unix milliseconds.
    pub time_ms: i64,
    /// Who did it.
    pub actor: Actor,
    /// The agent concerned (`agt_…`); for verify decisions only when the token's
    /// signature checked out, so a forged token cannot write into an agent's history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The issuer concerned (`iss_…`), where the event is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Lowercase hex SHA-256 of the token text; never the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// The token's `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// A key id (registry signing key `kid`, or the SHA-256 prefix of an API key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Allow or deny, for verify decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Machine-readable reasons (error codes) for a deny.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Scopes: requested (verify) or granted (registration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// The audience or target resource the request named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Free text the actor gave (a revocation reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The request id of the HTTP request that caused it, to match server logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The receipt of a verify decision (`rcp_…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// Lowercase hex SHA-256 of the verify request's canonical form
    /// (`bonafide_core::receipt::RequestFacts`): what was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<String>,
    /// The `policy_hash` of the token's consent policy, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// The amount a verify request asked to spend, `"12.50 USD"`; with `decision`
    /// allow and a per-period limit, the amount charged to the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    /// Lowercase hex SHA-256 of a published status list's uncompressed bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_sha256: Option<String>,
    /// The organisation concerned (`org_…`), for account and session events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The person concerned (`usr_…`), for account and session events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
}

impl AuditEntry {
    /// A new entry with only the mandatory members set.
    pub fn new(event: EventType, time_ms: i64, actor: Actor) -> Self {
        AuditEntry {
            v: ENTRY_VERSION,
            event,
            time_ms,
            actor,
            agent: None,
            issuer: None,
            token_sha256: None,
            jti: None,
            kid: None,
            decision: None,
            reasons: Vec::new(),
            scopes: Vec::new(),
            target: None,
            note: None,
            request_id: None,
            receipt: None,
            request_sha256: None,
            policy_hash: None,
            amount: None,
            list_sha256: None,
            org: None,
            person: None,
        }
    }

    /// The RFC 8785 canonical JSON bytes: what is stored and hashed.
    ///
    /// Written directly, members in their sorted order, rather than through a
    /// canonicalizer that sorts every object through a map: every verify decision
    /// makes one. `tests::the_direct_writer_is_rfc_8785` holds it to the general
    /// canonicalizer, which still writes a `time_ms` beyond 2^53 (an ECMAScript
    /// number's exact range, where JCS formatting differs from the integer's digits).
    pub fn to_canonical(&self) -> Result<Vec<u8>, AuditError> {
        const EXACT: i64 = 1 << 53;
        let bytes = if (-EXACT..=EXACT).contains(&self.time_ms) {
            self.write_canonical()
        } else {
            serde_json_canonicalizer::to_vec(self).map_err(|e| AuditError::Encode(e.to_string()))?
        };
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(AuditError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }

    /// The canonical bytes, members in RFC 8785 order (byte order of their names, all
    /// ASCII): `actor`, `agent`, `amount`, `decision`, `issuer`, `jti`, `kid`,
    /// `list_sha256`, `note`, `org`, `person`, `policy_hash`, `reasons`, `receipt`,
    /// `request_id`, `request_sha256`, `scopes`, `target`, `time_ms`, `token_sha256`,
    /// `type`, `v`; absent options and empty lists left out, as serde does.
    fn write_canonical(&self) -> Vec<u8> {
        // Every member named: a member added to the struct must be added here too.
        let AuditEntry {
            v,
            event,
            time_ms,
            actor,
            agent,
            issuer,
            token_sha256,
            jti,
            kid,
            decision,
            reasons,
            scopes,
            target,
            note,
            request_id,
            receipt,
            request_sha256,
            policy_hash,
            amount,
            list_sha256,
            org,
            person,
        } = self;
        let mut out = Vec::with_capacity(384);
        let mut o = crate::jcs::Object::open(&mut out);
        let (kind, id) = match actor {
            Actor::Admin => ("admin", None),
            Actor::Issuer { id } => ("issuer", Some(id)),
            Actor::Receiver { id } => ("receiver", Some(id)),
            Actor::Registry => ("registry", None),
            Actor::Anonymous => ("anonymous", None),
            Actor::Person { id } => ("person", Some(id)),
        };
        let mut a = crate::jcs::Object::open(o.member("actor"));
        a.opt_string("id", id.map(String::as_str));
        a.string("kind", kind);
        a.close();
        o.opt_string("agent", agent.as_deref());
        o.opt_string("amount", amount.as_deref());
        o.opt_string(
            "decision",
            decision.map(|d| match d {
                Decision::Allow => "allow",
                Decision::Deny => "deny",
            }),
        );
        o.opt_string("issuer", issuer.as_deref());
        o.opt_string("jti", jti.as_deref());
        o.opt_string("kid", kid.as_deref());
        o.opt_string("list_sha256", list_sha256.as_deref());
        o.opt_string("note", note.as_deref());
        o.opt_string("org", org.as_deref());
        o.opt_string("person", person.as_deref());
        o.opt_string("policy_hash", policy_hash.as_deref());
        o.strings("reasons", reasons.iter().map(String::as_str));
        o.opt_string("receipt", receipt.as_deref());
        o.opt_string("request_id", request_id.as_deref());
        o.opt_string("request_sha256", request_sha256.as_deref());
        o.strings("scopes", scopes.iter().map(String::as_str));
        o.opt_string("target", target.as_deref());
        o.member("time_ms")
            .extend_from_slice(time_ms.to_string().as_bytes());
        o.opt_string("token_sha256", token_sha256.as_deref());
        o.string("type", event.as_str());
        o.member("v").extend_from_slice(v.to_string().as_bytes());
        o.close();
        out
    }

    /// Parses stored entry bytes and checks they are canonical (so that
    /// `leaf_hash(bytes)` is the hash of this content).
    pub fn from_canonical(bytes: &[u8]) -> Result<Self, AuditError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(AuditError::TooLarge(bytes.len()));
        }
        crate::json::check(bytes, crate::json::JsonLimits::default())
            .map_err(|e| AuditError::Malformed(e.to_string()))?;
        let entry: AuditEntry =
            serde_json::from_slice(bytes).map_err(|e| AuditError::Malformed(e.to_string()))?;
        if entry.v != ENTRY_VERSION {
            return Err(AuditError::Malformed(format!(
                "version {} (this is version {ENTRY_VERSION})",
                entry.v
            )));
        }
        if entry.to_canonical()? != bytes {
            return Err(AuditError::NotCanonical);
        }
        Ok(entry)
    }
}

/// The leaf hash of canonical entry bytes (re-exported here for the reader's sake).
pub fn entry_leaf_hash(canonical: &[u8]) -> Hash {
    leaf_hash(canonical)
}

/// Lowercase hex SHA-256 of a token, as entries and logs carry it.
pub fn token_sha256(token: &str) -> String {
    crate::hex(&crate::sha256(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEntry {
        let mut e = AuditEntry::new(
            EventType::Verify,
            1_764_052_418_123,
            Actor::Receiver { id: "rcv_x".into() },
        );
        e.agent = Some("agt_a".into());
        e.token_sha256 = Some(token_sha256("abc"));
        e.decision = Some(Decision::Deny);
        e.reasons = vec!["SCOPE_NOT_GRANTED".into()];
        e.scopes = vec!["read:data".into(), "write:ä".into()];
        e.target = Some("https://api.example".into());
        e
    }

    fn any_entry() -> impl proptest::strategy::Strategy<Value = AuditEntry> {
        use proptest::prelude::*;
        // Text with quotes, backslashes, every control character, DEL, U+2028 and
        // characters beyond the BMP: what JSON escaping treats differently.
        let text = || {
            proptest::collection::vec(
                prop_oneof![
                    0u32..0x80,
                    Just(0x2028u32),
                    Just(0x7fu32),
                    0x80u32..0x800,
                    0x1_0000u32..0x1_0400
                ],
                0..12,
            )
            .prop_map(|cs| {
                cs.into_iter()
                    .filter_map(char::from_u32)
                    .collect::<String>()
            })
        };
        let opt = move || proptest::option::of(text());
        let actor = prop_oneof![
            Just(Actor::Admin),
            Just(Actor::Registry),
            Just(Actor::Anonymous),
            text().prop_map(|id| Actor::Issuer { id }),
            text().prop_map(|id| Actor::Receiver { id }),
            text().prop_map(|id| Actor::Person { id }),
        ];
        let events = [
            EventType::Verify,
            EventType::AgentRegistered,
            EventType::QuotaWarning,
        ];
        (
            (
                actor,
                0..events.len(),
                -(1i64 << 53)..=(1i64 << 53),
                any::<u8>(),
            ),
            (opt(), opt(), opt(), opt(), opt(), opt(), opt()),
            (opt(), opt(), opt(), opt(), opt(), opt(), opt(), opt()),
            (
                proptest::option::of(any::<bool>()),
                proptest::collection::vec(text(), 0..3),
                proptest::collection::vec(text(), 0..3),
            ),
        )
            .prop_map(
                move |((actor, ev, time_ms, v), a, b, (decision, reasons, scopes))| {
                    let mut e = AuditEntry::new(events[ev], time_ms, actor);
                    e.v = v;
                    (
                        e.agent,
                        e.issuer,
                        e.token_sha256,
                        e.jti,
                        e.kid,
                        e.target,
                        e.note,
                    ) = a;
                    (
                        e.request_id,
                        e.receipt,
                        e.request_sha256,
                        e.policy_hash,
                        e.amount,
                        e.list_sha256,
                        e.org,
                        e.person,
                    ) = b;
                    e.decision = decision.map(|d| if d { Decision::Allow } else { Decision::Deny });
                    e.reasons = reasons;
                    e.scopes = scopes;
                    e
                },
            )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The direct writer's bytes are the general RFC 8785 canonicalizer's, byte
        /// for byte, for any content.
        #[test]
        fn the_direct_writer_is_rfc_8785(e in any_entry()) {
            let general = serde_json_canonicalizer::to_vec(&e).unwrap();
            let direct = e.write_canonical();
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&general)
            );
            proptest::prop_assert_eq!(e.to_canonical().unwrap(), general);
        }
    }

    #[test]
    fn a_time_beyond_the_exact_range_is_written_as_jcs_writes_it() {
        let e = AuditEntry::new(EventType::Verify, i64::MAX, Actor::Admin);
        assert_eq!(
            e.to_canonical().unwrap(),
            serde_json_canonicalizer::to_vec(&e).unwrap()
        );
    }

    #[test]
    fn canonical_form_is_sorted_compact_and_round_trips() {
        let bytes = sample().to_canonical().unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            text,
            r#"{"actor":{"id":"rcv_x","kind":"receiver"},"agent":"agt_a","decision":"deny","reasons":["SCOPE_NOT_GRANTED"],"scopes":["read:data","write:ä"],"target":"https://api.example","time_ms":1764052418123,"token_sha256":"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","type":"verify","v":1}"#
        );
        assert_eq!(AuditEntry::from_canonical(&bytes).unwrap(), sample());
    }

    #[test]
    fn non_canonical_or_foreign_bytes_are_refused() {
        let bytes = sample().to_canonical().unwrap();
        let pretty = serde_json::to_vec_pretty(&sample()).unwrap();
        assert_eq!(
            AuditEntry::from_canonical(&pretty),
            Err(AuditError::NotCanonical)
        );
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["extra"] = 1.into();
        let extra = serde_json_canonicalizer::to_vec(&v).unwrap();
        assert!(matches!(
            AuditEntry::from_canonical(&extra),
            Err(AuditError::Malformed(_))
        ));
        v = serde_json::from_slice(&bytes).unwrap();
        v["v"] = 2.into();
        let v2 = serde_json_canonicalizer::to_vec(&v).unwrap();
        assert!(matches!(
            AuditEntry::from_canonical(&v2),
            Err(AuditError::Malformed(_))
        ));
        let dup = br#"{"v":1,"v":1}"#;
        assert!(matches!(
            AuditEntry::from_canonical(dup),
            Err(AuditError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_entries_are_refused_not_cut() {
        let mut e = sample();
        e.note = Some("x".repeat(MAX_ENTRY_BYTES));
        assert!(matches!(e.to_canonical(), Err(AuditError::TooLarge(_))));
    }

    #[test]
    fn event_names_match_their_serde_form() {
        for event in [
            EventType::AgentRevoked,
            EventType::AgentSuspended,
            EventType::AgentReactivated,
            EventType::IssuerDomainVerified,
            EventType::TokenDelegated,
        ] {
            assert_eq!(
                serde_json::to_value(event).unwrap(),
                serde_json::Value::from(event.as_str())
            );
        }
        assert_eq!(EventType::AgentSuspended.as_str(), "agent.suspended");
        assert_eq!(EventType::AgentReactivated.as_str(), "agent.reactivated");
    }

    #[test]
    fn actors_serialise_with_their_kind() {
        for (actor, want) in [
            (Actor::Admin, r#"{"kind":"admin"}"#),
            (Actor::Anonymous, r#"{"kind":"anonymous"}"#),
            (Actor::Registry, r#"{"kind":"registry"}"#),
            (
                Actor::Issuer { id: "iss_1".into() },
                r#"{"id":"iss_1","kind":"issuer"}"#,
            ),
        ] {
            assert_eq!(
                String::from_utf8(serde_json_canonicalizer::to_vec(&actor).unwrap()).unwrap(),
                want
            );
        }
    }
}
