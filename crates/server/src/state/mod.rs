//! Shared server state: the store (source of truth) and the in-memory hot path
//! (signing keys, issuers' own keys, the revocation sets and the suspended agents)
//! that every verify reads without I/O.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use arc_swap::ArcSwap;
use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::ids::{AgentId, IssuerId, ReceiverId, TokenId};
use bonafide_core::keys::SigningKey;
use bonafide_core::policy::Policy;
use bonafide_core::token::{self, AgentClaims, AudienceRule, TokenError, VerifyOptions};
use bonafide_store::{Agent, AgentStatus, IssuerDomain, KeyState, Store, StoreError};

use crate::Config;
use crate::audit::{AuditLog, AuditLogError};
use crate::bounded::Bounded;

mod agent_keys;
mod keys;
mod revocations;

use self::agent_keys::*;
pub use self::agent_keys::{AgentKeyEntry, bound_key};
use self::keys::*;
pub use self::keys::{IssuerKeyEntry, IssuerKeyRing, KeyRing, new_key_record};
pub use self::revocations::{Revoked, RevokedSet};

/// Serialises every change of the in-memory suspended set: hold it across a store
/// write that suspends or reactivates and the mirroring of its result
/// ([`SuspensionWrite::mirror`]). A refresh holds it across its store read and the
/// replace, so it can never overwrite a newer change with its older snapshot.
#[derive(Debug)]
pub struct SuspensionWrite<'a> {
    state: &'a AppState,
    _serial: tokio::sync::MutexGuard<'a, ()>,
}

impl SuspensionWrite<'_> {
    /// Mirrors an agent's suspension as the store has just committed it: in the set
    /// if `agent` is suspended, out of it otherwise.
    ///
    /// INVARIANT: call only after the store committed, and before answering, so the
    /// next verify anywhere in this process sees the change.
    pub fn mirror(&self, agent: &Agent) {
        let current = self.state.suspended.load();
        let suspended = agent.status == AgentStatus::Suspended;
        if current.contains(&agent.id) == suspended {
            return;
        }
        let mut next = HashSet::clone(&current);
        if suspended {
            next.insert(agent.id.clone());
        } else {
            next.remove(&agent.id);
        }
        // Writers hold the mutex, so nothing changed since the load.
        self.state.suspended.store(Arc::new(next));
    }
}

/// State shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// Source of truth.
    pub store: Arc<dyn Store>,
    /// The audit log: group-committed appends and signed checkpoints.
    pub audit: Arc<AuditLog>,
    /// Settings.
    pub config: Config,
    /// Signing and verifying keys; swapped whole on rotation.
    pub keys: ArcSwap<KeyRing>,
    /// Revocations; written after the store commits, read by every verify.
    pub revoked: RwLock<RevokedSet>,
    /// How far the revocation feed has been read ([`Store::revocations_since`]); the
    /// lock also serialises refreshes of `revoked`.
    revocation_feed: tokio::sync::Mutex<u64>,
    /// Agents suspended now; swapped whole (suspensions are rare, verifies read it
    /// without a lock). Unlike `revoked` it also shrinks: reactivations remove agents
    /// and every refresh replaces it from the store.
    suspended: ArcSwap<HashSet<AgentId>>,
    /// See [`SuspensionWrite`].
    suspension_writes: tokio::sync::Mutex<()>,
    /// Verification settings without an audience, built once (hot path).
    base_options: VerifyOptions,
    /// `did:web:<host>:agents:`, built once (hot path).
    did_prefix: String,
    /// Serialises key refreshes: a slow refresh that read the store before a rotation
    /// must not overwrite the ring a later refresh built after it.
    refresh_lock: tokio::sync::Mutex<()>,
    /// Signs verify receipts (Ed25519; published in the JWKS, never signs tokens).
    pub receipt_key: SigningKey,
    /// Parsed token policies by `policy_hash` (parsing costs as much as a signature).
    policies: Bounded<String, Arc<Policy>>,
    /// Agent records by id, for what never changes after registration (issuer,
    /// name, description, scopes): read by every verify that makes a receipt or
    /// charges a budget, and by every verify of an issuer-signed token. Status
    /// (revoked, suspended) is never read from here.
    agents: Bounded<AgentId, Arc<Agent>>,
    /// Issuers with a verified domain (issuer → domain): their agents' verify answers
    /// say `trust_level: "domain_verified"`. Swapped whole on every change.
    issuer_domains: ArcSwap<HashMap<IssuerId, IssuerDomain>>,
    /// Serialises reloads of `issuer_domains`, like `issuer_key_writes`.
    issuer_domain_writes: tokio::sync::Mutex<()>,
    /// Issuers' own keys (self-custody); swapped whole on every change.
    pub issuer_keys: ArcSwap<IssuerKeyRing>,
    /// Serialises reloads of `issuer_keys`: a local add or revoke holds it across its
    /// commit and the reload, a refresh across its read and swap, so an older snapshot
    /// never replaces a newer one (a revoked key never verifies again).
    issuer_key_writes: tokio::sync::Mutex<()>,
    /// Agents' own keys by agent, each entry read from the store at most
    /// [`Config::key_refresh`] ago (rotations by another process arrive within that);
    /// a local rotation drops its agent's entry after the commit.
    agent_keys: Bounded<AgentId, Arc<[AgentKeyEntry]>>,
    /// Delegated tokens' chains by `jti` (see [`crate::delegation`]).
    pub delegations: Bounded<TokenId, Arc<crate::delegation::Chain>>,
    /// Receivers' audiences by receiver id, each read from the store at most
    /// [`Config::key_refresh`] ago (changes by another process arrive within that);
    /// a local change drops its receiver's entry after the commit.
    receiver_audiences: Bounded<ReceiverId, Arc<[String]>>,
    /// Tokens refused because they did not verify (see [`AppState::count_unverifiable`]).
    unverifiable_tokens: std::sync::atomic::AtomicU64,
}

/// Most parsed policies kept; the cache is emptied when full (policies are few in
/// practice, and a refill costs one parse each).
const MAX_CACHED_POLICIES: usize = 4096;
/// Most agent records kept before the cache is emptied.
const MAX_CACHED_AGENTS: usize = 1 << 18;
/// Most delegation chains kept in memory.
const MAX_CACHED_DELEGATIONS: usize = 1 << 16;

impl AppState {
    /// Loads state from the store, creating the first signing key if there is none.
    pub async fn load(store: Arc<dyn Store>, config: Config) -> Result<Self, AuditLogError> {
        let key_refresh = config.key_refresh;
        let origin = config
            .audit_origin
            .clone()
            .unwrap_or_else(|| crate::audit::default_origin(&config.public_url));
        let audit = AuditLog::open(Arc::clone(&store), &origin).await?;
        // An origin asked for explicitly but not used must not pass unnoticed: the
        // log's name is fixed when it is created (checkpoints already name it).
        if config.audit_origin.is_some() && audit.origin() != origin {
            tracing::warn!(
                asked = %origin,
                origin = %audit.origin(),
                "--audit-origin is ignored: this data dir's audit log was created with another origin, which it keeps"
            );
        }
        let mut records = store.signing_keys().await?;
        if !records.iter().any(|r| r.state == KeyState::Active) {
            let record = new_key_record(config.signing_alg)?;
            let now = config.clock.now_ms();
            let mut entry = AuditEntry::new(EventType::KeyAdded, now, Actor::Registry);
            entry.kid = Some(record.kid.clone());
            let audit_record = crate::audit::record(&entry, None, None)?;
            store
                .rotate_signing_key(&record, now / 1000, &audit_record)
                .await?;
            records = store.signing_keys().await?;
        }
        let ring =
            KeyRing::from_records(&records, config.clock.now_ms() / 1000, config.leeway_secs)?;
        // Tokens already dead are not even read.
        let feed = store
            .revocations_since(
                0,
                (config.clock.now_ms() / 1000).saturating_sub(config.leeway_secs),
            )
            .await?;
        let feed_position = feed.next;
        let mut revoked = RevokedSet::default();
        revoked.apply(feed);
        let suspended: HashSet<AgentId> = store.suspended_agents().await?.into_iter().collect();
        let mut base_options = VerifyOptions::for_issuer(config.public_url.clone());
        base_options.leeway_secs = config.leeway_secs;
        base_options.max_token_bytes = config.max_token_bytes;
        // Every token the registry accepts lives at most `max_token_ttl` from its
        // `iat`, whoever signed it (issue 13: no token lives for ever).
        base_options.max_lifetime_secs = Some(config.max_token_ttl_s);
        let did_prefix = did_prefix(&config.public_url);
        let receipt_key = load_receipt_key(store.as_ref()).await?;
        let issuer_keys = build_issuer_keys(store.as_ref(), None).await?;
        let issuer_domains = domains_by_issuer(store.as_ref()).await?;
        Ok(AppState {
            store,
            audit,
            config,
            keys: ArcSwap::from_pointee(ring),
            revoked: RwLock::new(revoked),
            revocation_feed: tokio::sync::Mutex::new(feed_position),
            suspended: ArcSwap::from_pointee(suspended),
            suspension_writes: tokio::sync::Mutex::new(()),
            base_options,
            did_prefix,
            refresh_lock: tokio::sync::Mutex::new(()),
            receipt_key,
            policies: Bounded::new(MAX_CACHED_POLICIES, None),
            agents: Bounded::new(MAX_CACHED_AGENTS, None),
            issuer_domains: ArcSwap::from_pointee(issuer_domains),
            issuer_domain_writes: tokio::sync::Mutex::new(()),
            issuer_keys: ArcSwap::from_pointee(issuer_keys),
            issuer_key_writes: tokio::sync::Mutex::new(()),
            agent_keys: Bounded::new(MAX_CACHED_AGENTS, Some(key_refresh)),
            receiver_audiences: Bounded::new(MAX_CACHED_AGENTS, Some(key_refresh)),
            unverifiable_tokens: std::sync::atomic::AtomicU64::new(0),
            delegations: Bounded::new(MAX_CACHED_DELEGATIONS, None),
        })
    }

    /// Pipeline step 7 for a token's policy, through the cache: the parsed policy
    /// whose JSON equals the token's and whose hash is the token's `policy_hash`.
    pub fn policy_of(&self, claims: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError> {
        let (Some(value), Some(hash)) = (&claims.policy, &claims.policy_hash) else {
            return token::policy_of(claims).map(|p| p.map(Arc::new));
        };
        // Same hash text and same JSON: the cached parse is this token's policy.
        if let Some(p) = self.policies.get_if(hash, |p| p.as_value() == value) {
            return Ok(Some(p));
        }
        let Some(parsed) = token::policy_of(claims)? else {
            return Ok(None);
        };
        let parsed = Arc::new(parsed);
        self.policies.insert(hash.clone(), Arc::clone(&parsed));
        Ok(Some(parsed))
    }

    /// The issuer of an agent, from memory or else the store; `None` if the agent is
    /// not registered here.
    pub async fn issuer_of(&self, agent: &AgentId) -> Result<Option<IssuerId>, StoreError> {
        Ok(self.agent_record(agent).await?.map(|a| a.issuer_id.clone()))
    }

    /// An agent's record as registered, from memory or else the store; `None` if the
    /// agent is not registered here (not cached: it may be registered later). Only
    /// what never changes may be read from it: not `status`, nor its times.
    pub async fn agent_record(&self, agent: &AgentId) -> Result<Option<Arc<Agent>>, StoreError> {
        if let Some(a) = self.agents.get(agent) {
            return Ok(Some(a));
        }
        let Some(record) = self.store.agent(agent).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.agents.insert(agent.clone(), Arc::clone(&record));
        Ok(Some(record))
    }

    /// An agent's own keys (current and retired, oldest first), from memory if read
    /// from the store less than [`Config::key_refresh`] ago, else from the store.
    pub async fn agent_keys(&self, agent: &AgentId) -> Result<Arc<[AgentKeyEntry]>, StoreError> {
        if let Some(keys) = self.agent_keys.get(agent) {
            return Ok(keys);
        }
        let keys = load_agent_keys(self.store.agent_keys(agent).await?);
        self.agent_keys.insert(agent.clone(), Arc::clone(&keys));
        Ok(keys)
    }

    /// The audiences a receiver verifies as (`None`: no such receiver), through a
    /// cache like [`AppState::agent_keys`]'s.
    pub async fn receiver_audiences(
        &self,
        receiver: &ReceiverId,
    ) -> Result<Option<Arc<[String]>>, StoreError> {
        if let Some(list) = self.receiver_audiences.get(receiver) {
            return Ok(Some(list));
        }
        let Some(record) = self.store.receiver(receiver).await? else {
            return Ok(None);
        };
        let list: Arc<[String]> = record.audiences.into();
        self.receiver_audiences
            .insert(receiver.clone(), Arc::clone(&list));
        Ok(Some(list))
    }

    /// Now, in Unix milliseconds, by the configured [`crate::time::Clock`].
    pub fn now_ms(&self) -> i64 {
        self.config.clock.now_ms()
    }

    /// Counts a token that did not verify (it concerns no agent, so it is kept out of
    /// the permanent log) and says so in the access log, without the token.
    pub fn count_unverifiable(&self, code: &str) {
        self.unverifiable_tokens
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            code,
            "token does not verify: counted, not written to the audit log"
        );
    }

    /// How many tokens that did not verify were refused since start.
    pub fn unverifiable_tokens(&self) -> u64 {
        self.unverifiable_tokens
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drops the cached audiences of a receiver.
    ///
    /// INVARIANT: call after a local change commits and before answering.
    pub fn forget_receiver(&self, receiver: &ReceiverId) {
        self.receiver_audiences.remove(receiver);
    }

    /// Drops the cached keys of an agent.
    ///
    /// INVARIANT: call after a local rotation commits and before answering, so the
    /// next verify in this process reads the new key set.
    pub fn forget_agent_keys(&self, agent: &AgentId) {
        self.agent_keys.remove(agent);
    }

    /// Starts a change of the issuer keys: hold the guard across the store write and
    /// [`AppState::reload_issuer_keys`] (see `issuer_key_writes`).
    pub async fn issuer_key_write(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.issuer_key_writes.lock().await
    }

    /// Re-reads every issuer key from the store and swaps the in-memory ring if
    /// anything changed. The caller holds [`AppState::issuer_key_write`].
    ///
    /// INVARIANT: after a local add or revoke, call this after the commit and before
    /// answering, so the next verify in this process sees the change.
    pub async fn reload_issuer_keys(
        &self,
        _serial: &tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<(), StoreError> {
        let current = self.issuer_keys.load_full();
        let records = self.store.all_issuer_keys().await?;
        let fingerprint: Vec<String> = records.iter().map(issuer_key_fingerprint).collect();
        if fingerprint != current.fingerprint {
            let ring = ring_from_records(self.store.as_ref(), &records, Some(&current)).await?;
            self.issuer_keys.store(Arc::new(ring));
        }
        Ok(())
    }

    /// Keys added or revoked by another process arrive within one refresh period.
    pub async fn refresh_issuer_keys(&self) -> Result<(), StoreError> {
        let serial = self.issuer_key_write().await;
        self.reload_issuer_keys(&serial).await
    }

    /// The domain an issuer has verified, if that verification is in force (memory
    /// only: hot path): verified less than [`Config::domain_verification_ttl`] ago,
    /// with a key that is still the issuer's and unrevoked.
    pub fn verified_domain(&self, issuer: &IssuerId, now_ms: i64) -> Option<String> {
        let domains = self.issuer_domains.load();
        if domains.is_empty() {
            return None;
        }
        let d = domains.get(issuer)?;
        let ttl =
            i64::try_from(self.config.domain_verification_ttl.as_millis()).unwrap_or(i64::MAX);
        if now_ms.saturating_sub(d.verified_at_ms) >= ttl {
            return None;
        }
        // The key that proved it must still be the issuer's and unrevoked.
        let ring = self.issuer_keys.load();
        let live = ring
            .get(&d.kid)
            .is_some_and(|k| k.issuer_id == *issuer && k.revoked_at_ms.is_none());
        live.then(|| d.domain.clone())
    }

    /// `domain_verified` if the agent's issuer has a verified domain in force (see
    /// [`AppState::verified_domain`]), else `registered`; `None` for an agent not
    /// registered here.
    pub async fn trust_level(
        &self,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<Option<&'static str>, StoreError> {
        Ok(self.issuer_of(agent).await?.map(|issuer| {
            if self.verified_domain(&issuer, now_ms).is_some() {
                "domain_verified"
            } else {
                "registered"
            }
        }))
    }

    /// The domain the agent's issuer has verified and that is in force (see
    /// [`AppState::verified_domain`]): what `trust_level: "domain_verified"` is about,
    /// for answers to show beside it as `issuer_domain`. `None` otherwise, and for an
    /// agent not registered here.
    pub async fn issuer_domain(
        &self,
        agent: &AgentId,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(self
            .issuer_of(agent)
            .await?
            .and_then(|issuer| self.verified_domain(&issuer, now_ms)))
    }

    /// Starts a change of an issuer's domain: hold the guard across the store write
    /// and [`AppState::reload_issuer_domains`].
    pub async fn issuer_domain_write(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.issuer_domain_writes.lock().await
    }

    /// Re-reads every verified domain from the store. The caller holds
    /// [`AppState::issuer_domain_write`].
    ///
    /// INVARIANT: after a local verification, call this after the commit and before
    /// answering, so the next verify in this process shows the new trust level.
    pub async fn reload_issuer_domains(
        &self,
        _serial: &tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<(), StoreError> {
        let all = domains_by_issuer(self.store.as_ref()).await?;
        if **self.issuer_domains.load() != all {
            self.issuer_domains.store(Arc::new(all));
        }
        Ok(())
    }

    /// Domains verified through another process arrive within one refresh period.
    pub async fn refresh_issuer_domains(&self) -> Result<(), StoreError> {
        let serial = self.issuer_domain_write().await;
        self.reload_issuer_domains(&serial).await
    }

    /// Re-reads the signing keys if another process (`bonafide keys rotate`) changed
    /// them, or if a retired key's publication window has ended.
    pub async fn refresh_keys(&self) -> Result<(), StoreError> {
        let _serial = self.refresh_lock.lock().await;
        let records = self.store.signing_keys().await?;
        let now_s = self.now_ms() / 1000;
        let current = self.keys.load();
        let fingerprint: Vec<String> = records.iter().map(key_fingerprint).collect();
        let expired = current
            .retired
            .iter()
            .any(|(_, until)| until.saturating_add(self.config.leeway_secs) <= now_s);
        if fingerprint != current.fingerprint || expired {
            let ring = KeyRing::from_records(&records, now_s, self.config.leeway_secs)?;
            self.keys.store(Arc::new(ring));
        }
        Ok(())
    }

    /// Verification options for registry-signed tokens; borrowed when the receiver
    /// names no audience, which is the common case.
    pub fn verify_options(&self, audience: AudienceRule) -> std::borrow::Cow<'_, VerifyOptions> {
        if audience == self.base_options.audience {
            return std::borrow::Cow::Borrowed(&self.base_options);
        }
        let mut opts = self.base_options.clone();
        opts.audience = audience;
        std::borrow::Cow::Owned(opts)
    }

    /// The `did:web` of an agent of this registry.
    pub fn agent_did(&self, agent_id: &str) -> String {
        let mut did = String::with_capacity(self.did_prefix.len() + agent_id.len());
        did.push_str(&self.did_prefix);
        did.push_str(agent_id);
        did
    }

    /// Mirrors a revocation the store has committed.
    ///
    /// INVARIANT: call only after the store committed, and before answering, so the
    /// next verify anywhere in this process sees the revocation.
    pub fn mark_revoked(&self, what: Revoked) {
        let mut set = self
            .revoked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match what {
            Revoked::Agent(id) => {
                set.agents.insert(id);
            }
            Revoked::Token { jti, expires_at_s } => set.insert_token(jti, expires_at_s),
        }
    }

    /// Reads the revocations committed since the last read (the store's revocation
    /// feed) into memory, and forgets revoked tokens past `exp` + leeway: revocations
    /// another process committed (`bonafide` replicas, or a commit whose request was
    /// cut off) arrive within one refresh period, and neither the read nor memory grows
    /// with revocations that no longer matter. Revocation is permanent, so only expiry
    /// removes anything.
    pub async fn refresh_revocations(&self) -> Result<(), StoreError> {
        self.refresh_revocations_at(self.now_ms() / 1000).await
    }

    /// [`AppState::refresh_revocations`] at `now_s`.
    async fn refresh_revocations_at(&self, now_s: i64) -> Result<(), StoreError> {
        let mut position = self.revocation_feed.lock().await;
        let leeway = self.config.leeway_secs;
        let feed = self
            .store
            .revocations_since(*position, now_s.saturating_sub(leeway))
            .await?;
        let next = feed.next;
        {
            let mut set = self
                .revoked
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            set.apply(feed);
            set.forget_expired(now_s, leeway);
        }
        *position = next;
        Ok(())
    }

    /// Starts a change of an agent's suspension (see [`SuspensionWrite`]); waits for
    /// any other change or refresh of the suspended set to finish.
    pub async fn suspensions(&self) -> SuspensionWrite<'_> {
        SuspensionWrite {
            state: self,
            _serial: self.suspension_writes.lock().await,
        }
    }

    /// Replaces the suspended set with the store's: suspensions and reactivations
    /// another process committed arrive within one refresh period. Suspension is
    /// reversible, so merging (as for revocations) would keep ended suspensions.
    pub async fn refresh_suspensions(&self) -> Result<(), StoreError> {
        let _serial = self.suspension_writes.lock().await;
        let all: HashSet<AgentId> = self.store.suspended_agents().await?.into_iter().collect();
        if **self.suspended.load() != all {
            self.suspended.store(Arc::new(all));
        }
        Ok(())
    }

    /// True if the agent is suspended (checked after revocation: a revoked agent's
    /// tokens are revoked, whatever else).
    pub fn is_suspended(&self, agent: &AgentId) -> bool {
        let set = self.suspended.load();
        !set.is_empty() && set.contains(agent)
    }

    /// True if the token or its agent is revoked.
    pub fn is_revoked(
        &self,
        agent: &AgentId,
        jti: &TokenId,
    ) -> Option<bonafide_core::token::Revoked> {
        let set = self
            .revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if set.agents.contains(agent) {
            Some(bonafide_core::token::Revoked::Agent)
        } else if set.contains_token(jti) {
            Some(bonafide_core::token::Revoked::Token)
        } else {
            None
        }
    }
}

/// Every verified domain, by issuer.
async fn domains_by_issuer(
    store: &dyn Store,
) -> Result<HashMap<IssuerId, IssuerDomain>, StoreError> {
    Ok(store
        .issuer_domains()
        .await?
        .into_iter()
        .map(|d| (d.issuer_id.clone(), d))
        .collect())
}

/// `did:web:<host>:agents:` for a registry URL (did:web §3.1: the port's colon is
/// percent-encoded, path `/` becomes `:`).
pub fn did_prefix(public_url: &str) -> String {
    let host = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let host = host.replacen(':', "%3A", 1).replace('/', ":");
    format!("did:web:{host}:agents:")
}

impl crate::verdict::Snapshot for AppState {
    fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<bonafide_core::token::Revoked> {
        self.is_revoked(agent, jti)
    }
    fn suspended(&self, agent: &AgentId) -> bool {
        self.is_suspended(agent)
    }
    fn policy_of(&self, claims: &AgentClaims) -> Result<Option<Arc<Policy>>, TokenError> {
        AppState::policy_of(self, claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonafide_core::keys::{Algorithm, VerifyingKey};
    use bonafide_store::{AgentKey, RevocationFeed, SigningKeyRecord};

    fn record(state: KeyState, publish_until_s: Option<i64>) -> SigningKeyRecord {
        let mut r = new_key_record(Algorithm::EdDSA).unwrap();
        r.state = state;
        r.publish_until_s = publish_until_s;
        r
    }

    #[test]
    fn retired_keys_are_published_until_their_last_token_expires_plus_leeway() {
        let active = record(KeyState::Active, None);
        let live = record(KeyState::Retired, Some(1_000));
        let gone = record(KeyState::Retired, Some(900));
        let ring = KeyRing::from_records(&[active.clone(), live.clone(), gone.clone()], 1_000, 60)
            .unwrap();
        assert_eq!(ring.active.kid(), active.kid);
        assert_eq!(ring.verifying.len(), 2);
        assert_eq!(ring.retired, vec![(live.kid.clone(), 1_000)]);
        // At the edge: until + leeway == now is no longer published.
        let ring = KeyRing::from_records(&[active, live], 1_060, 60).unwrap();
        assert_eq!(ring.verifying.len(), 1);
    }

    #[test]
    fn did_web_encodes_port_and_path() {
        assert_eq!(
            did_prefix("http://127.0.0.1:8080"),
            "did:web:127.0.0.1%3A8080:agents:"
        );
        assert_eq!(
            did_prefix("https://reg.example/"),
            "did:web:reg.example:agents:"
        );
        assert_eq!(
            did_prefix("https://reg.example/bf"),
            "did:web:reg.example:bf:agents:"
        );
    }

    fn agent_key(grace_until_ms: Option<i64>, expires_at_ms: i64) -> AgentKeyEntry {
        let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let key = VerifyingKey::from_jwk(sk.verifying_key().jwk()).unwrap();
        AgentKeyEntry {
            record: AgentKey {
                agent_id: AgentId::from_random([7; 16]),
                jkt: key.kid().to_owned(),
                jwk: serde_json::to_string(key.jwk()).unwrap(),
                alg: key.alg(),
                created_at_ms: 0,
                expires_at_ms,
                retired_at_ms: grace_until_ms.map(|_| 0),
                grace_until_ms,
            },
            key,
        }
    }

    #[test]
    fn a_bound_key_is_usable_until_its_grace_and_its_expiry() {
        use bonafide_core::token::Revoked;
        let current = agent_key(None, 1_000);
        let grace = agent_key(Some(500), 1_000);
        let keys = [current, grace];
        let (cur, old) = (keys[0].record.jkt.clone(), keys[1].record.jkt.clone());
        assert!(bound_key(&keys, &cur, 999).is_ok());
        assert_eq!(
            bound_key(&keys, &cur, 1_000).unwrap_err(),
            TokenError::AgentKeyExpired { expired_at_s: 1 }
        );
        assert!(bound_key(&keys, &old, 499).is_ok());
        // At the edge: grace_until == now is over.
        assert_eq!(
            bound_key(&keys, &old, 500).unwrap_err(),
            TokenError::Revoked(Revoked::AgentKeyRotated)
        );
        assert!(matches!(
            bound_key(&keys, "no-such-key", 0),
            Err(TokenError::Claims(_))
        ));
    }

    fn jti(n: u8) -> TokenId {
        TokenId::from_random([n; 16])
    }

    #[test]
    fn revoked_tokens_are_forgotten_once_past_exp_plus_leeway() {
        let mut set = RevokedSet::default();
        let agent = AgentId::from_random([9; 16]);
        set.agents.insert(agent.clone());
        set.insert_token(jti(1), 1_000);
        set.insert_token(jti(2), 2_000);
        // Core still accepts a token at now - leeway < exp: it must stay revoked.
        assert_eq!(set.forget_expired(1_059, 60), 0);
        assert!(set.contains_token(&jti(1)));
        // At the edge, now - leeway == exp, core refuses it as expired.
        assert_eq!(set.forget_expired(1_060, 60), 1);
        assert!(!set.contains_token(&jti(1)));
        assert!(set.contains_token(&jti(2)));
        assert_eq!(set.token_count(), 1);
        // Agents are never forgotten: their tokens have no single expiry.
        assert_eq!(set.forget_expired(i64::MAX, 0), 1);
        assert_eq!(set.token_count(), 0);
        assert!(set.agents.contains(&agent));
        // Far from the clock's ends, nothing overflows.
        set.insert_token(jti(3), i64::MIN);
        assert_eq!(set.forget_expired(i64::MIN, i64::MAX), 1);
    }

    #[test]
    fn a_jti_revoked_twice_is_kept_until_its_later_expiry() {
        let mut set = RevokedSet::default();
        set.insert_token(jti(1), 2_000);
        set.insert_token(jti(1), 1_000);
        set.insert_token(jti(1), 1_500);
        assert_eq!(set.forget_expired(1_600, 0), 0);
        assert!(set.contains_token(&jti(1)));
        assert_eq!(set.forget_expired(2_000, 0), 1);
        assert!(!set.contains_token(&jti(1)));
        assert_eq!(set.by_expiry.len(), 0);
    }

    #[test]
    fn a_feed_read_adds_agents_and_tokens() {
        let mut set = RevokedSet::default();
        let agent = AgentId::from_random([4; 16]);
        set.apply(RevocationFeed {
            agents: vec![agent.clone()],
            tokens: vec![bonafide_store::RevokedToken {
                jti: jti(5),
                expires_at_s: 500,
            }],
            next: 7,
        });
        assert!(set.agents.contains(&agent));
        assert!(set.contains_token(&jti(5)));
        assert_eq!(set.forget_expired(499, 0), 0);
        assert_eq!(set.forget_expired(500, 0), 1);
    }

    #[test]
    fn a_ring_needs_an_active_key_and_matching_records() {
        let retired = record(KeyState::Retired, Some(i64::MAX));
        assert!(KeyRing::from_records(&[retired], 0, 60).is_err());
        let mut wrong = record(KeyState::Active, None);
        wrong.kid = "not-the-thumbprint".into();
        assert!(KeyRing::from_records(&[wrong], 0, 60).is_err());
    }
}
