//! Shared server state: the store (source of truth), the read model (one immutable
//! snapshot of what every verify reads without I/O, [`read_model`]) and the caches of
//! store records that never change once written.

use std::sync::Arc;

use bonafide_core::ids::{AgentId, ReceiverId, TokenId};
use bonafide_core::keys::SigningKey;
use bonafide_core::policy::Policy;
use bonafide_core::sealed::Kek;
use bonafide_core::token::{AudienceRule, VerifyOptions};
use bonafide_store::{Agent, KeyState, Store, StoreError};

use crate::audit::AuditLog;
use crate::bounded::Bounded;
use crate::sealing::KeysError;
use crate::{Config, ServerError};

mod agent_keys;
mod caches;
mod keys;
pub mod read_model;
mod revocations;
mod trust;
mod view;

pub(crate) use self::agent_keys::load_agent_keys;
#[cfg(test)]
pub(crate) use self::agent_keys::test_entry;
pub use self::agent_keys::{AgentKeyEntry, bound_key};
pub use self::keys::{KeyRing, new_key_record};
use self::keys::{load_event_key, load_receipt_key};
pub use self::read_model::{Change, ReadModel, Snapshot};
pub use self::revocations::{Revoked, RevokedSet};
pub use self::view::View;

/// State shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// Source of truth.
    pub store: Arc<dyn Store>,
    /// The audit log: group-committed appends and signed checkpoints.
    pub audit: Arc<AuditLog>,
    /// Settings.
    pub config: Config,
    /// What every verify reads without I/O, swapped whole.
    pub model: ReadModel,
    /// Verification settings without an audience, built once (hot path).
    base_options: VerifyOptions,
    /// `did:web:<host>:agents:`, built once (hot path).
    did_prefix: String,
    /// Signs verify receipts (Ed25519; published in the JWKS, never signs tokens).
    pub receipt_key: SigningKey,
    /// Allocates status-list slots and holds the key that signs the lists
    /// ([`crate::status_lists`]).
    pub status_lists: crate::status_lists::StatusLists,
    /// Push events (issue 19): the event key and what subscribers read.
    pub events: crate::events::Hub,
    /// The key that signs people's access tokens (issue 18), and its JWKS.
    pub sessions: crate::accounts::SessionKeys,
    /// The AgentOAuth playground, set at start with `--playground` (empty otherwise).
    pub playground: std::sync::OnceLock<crate::compat::playground::Playground>,
    /// Seals the private keys this process stores ([`crate::sealing`]).
    kek: Arc<Kek>,
    /// Parsed token policies by `policy_hash` (parsing costs as much as a signature).
    policies: Bounded<String, Arc<Policy>>,
    /// Agent records by id, for what never changes after registration (issuer,
    /// name, description, scopes): read by every verify that makes a receipt or
    /// charges a budget, and by every verify of an issuer-signed token. Status
    /// (revoked, suspended) is never read from here but from the snapshot.
    agents: Bounded<AgentId, Arc<Agent>>,
    /// Agents' own keys by agent, each entry read from the store at most
    /// [`Config::key_refresh`] ago (rotations by another process arrive within that);
    /// a local registration or rotation drops its agent's entry after the commit, and
    /// with it any fill read before ([`Bounded::fill`]).
    agent_keys: Bounded<AgentId, Arc<[AgentKeyEntry]>>,
    /// Delegated tokens' chains by `jti` (see [`crate::delegation`]).
    pub delegations: Bounded<TokenId, Arc<crate::delegation::Chain>>,
    /// Receivers' audiences by receiver id, like `agent_keys`; a local change drops
    /// its receiver's entry after the commit.
    receiver_audiences: Bounded<ReceiverId, Arc<[String]>>,
    /// API keys by hash, until revoked: every authenticated request looks its key
    /// up. Revocations (local, or from the change feed) drop the entry, which also
    /// refuses any lookup's fill read before ([`Bounded::fill`]).
    api_keys: Bounded<bonafide_core::apikey::ApiKeyHash, Arc<bonafide_store::ApiKeyRecord>>,
    /// When this process last wrote each key's `last_used_at` ([`AppState::note_key_use`]).
    key_uses: std::sync::Mutex<std::collections::HashMap<bonafide_core::apikey::ApiKeyHash, i64>>,
    /// What `/metrics` serves.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Rate limits ([`crate::ratelimit`]).
    pub limiter: crate::ratelimit::Limiter,
    /// Quotas and usage ([`crate::quota`]).
    pub quotas: crate::quota::Quotas,
    /// One lookup by leaf hash at a time: it is public and costs a seek per 32,768
    /// records plus a scan of the records since the last checkpoint, so several at
    /// once could hold every store reader.
    pub leaf_lookups: tokio::sync::Semaphore,
    /// Tokens refused because they did not verify (see [`AppState::count_unverifiable`]).
    unverifiable_tokens: std::sync::atomic::AtomicU64,
    /// Bumped after every change this process commits ([`AppState::commit`]): wakes
    /// readers of the change feed at once instead of at their next tick.
    committed: tokio::sync::watch::Sender<u64>,
}

/// Wakes a reader of the store's change feed ([`AppState::feed_wake`]) when this
/// process committed a change, or another process may have (the store's signal).
/// Only a hint, like [`bonafide_store::ChangeSignal`]: the feed stays the truth.
#[derive(Debug)]
pub struct FeedWake {
    local: tokio::sync::watch::Receiver<u64>,
    store: bonafide_store::ChangeSignal,
}

impl FeedWake {
    /// Waits for a wake or `timeout`; `true` when woken early. A wake that came while
    /// the caller was busy is kept for the next wait.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> bool {
        tokio::select! {
            changed = self.local.changed() => {
                if changed.is_err() {
                    // The state is gone (shutting down): time out as asked.
                    tokio::time::sleep(timeout).await;
                    return false;
                }
                true
            }
            woken = self.store.wait(timeout) => woken,
        }
    }
}

/// Most parsed policies kept; the cache is emptied when full (policies are few in
/// practice, and a refill costs one parse each).
const MAX_CACHED_POLICIES: usize = 4096;
/// Most agent records kept before the cache is emptied.
const MAX_CACHED_AGENTS: usize = 1 << 18;
/// Most delegation chains kept in memory.
const MAX_CACHED_DELEGATIONS: usize = 1 << 16;

impl AppState {
    /// Loads state from the store: seals keys stored in plaintext and checks the KEK
    /// opens every key (a wrong one is [`ServerError::Keys`], before anything is
    /// created), then creates the first signing key if there is none.
    pub async fn load(store: Arc<dyn Store>, config: Config) -> Result<Self, ServerError> {
        let kek = match &config.kek {
            Some(kek) => Arc::clone(kek),
            None => crate::sealing::ephemeral_kek().map_err(|reason| KeysError::Unusable {
                slot: "key-encryption key".into(),
                reason,
            })?,
        };
        crate::sealing::seal_stored_keys(store.as_ref(), &kek).await?;
        let origin = config
            .audit_origin
            .clone()
            .unwrap_or_else(|| crate::audit::default_origin(&config.public_url));
        let audit = AuditLog::open(Arc::clone(&store), &origin, &kek).await?;
        if let Some(archive) = &config.audit_archive {
            audit.set_archive(Arc::clone(archive));
        }
        // An origin asked for explicitly but not used must not pass unnoticed: the
        // log's name is fixed when it is created (checkpoints already name it).
        if config.audit_origin.is_some() && audit.origin() != origin {
            tracing::warn!(
                asked = %origin,
                origin = %audit.origin(),
                "--audit-origin is ignored: this data dir's audit log was created with another origin, which it keeps"
            );
        }
        let now_ms = config.clock.now_ms();
        let mut records = store.signing_keys().await?;
        if !records.iter().any(|r| r.state == KeyState::Active) {
            let record = new_key_record(config.signing_alg, now_ms, &kek)?;
            let mut entry = bonafide_core::audit::AuditEntry::new(
                bonafide_core::audit::EventType::KeyAdded,
                now_ms,
                bonafide_core::audit::Actor::Registry,
            );
            entry.kid = Some(record.kid.clone());
            let audit_record = crate::audit::record(&entry, None, None)
                .map_err(crate::audit::AuditLogError::from)?;
            // Only if still none: replicas starting together on a new database
            // agree on the first key stored.
            store
                .create_first_signing_key(&record, &audit_record)
                .await?;
            records = store.signing_keys().await?;
        }
        let ring = KeyRing::from_records(&records, &kek, now_ms / 1000, config.leeway_secs)?;
        let at = read_model::RefreshAt {
            now_s: now_ms / 1000,
            leeway_s: config.leeway_secs,
        };
        let (snapshot, position) = Snapshot::load(store.as_ref(), ring, at).await?;
        let mut base_options = VerifyOptions::for_issuer(config.public_url.clone());
        base_options.leeway_secs = config.leeway_secs;
        base_options.max_token_bytes = config.max_token_bytes;
        // Every token the registry accepts lives at most `max_token_ttl` from its
        // `iat`, whoever signed it (issue 13: no token lives for ever).
        base_options.max_lifetime_secs = Some(config.max_token_ttl_s);
        let receipt_key = load_receipt_key(store.as_ref(), &kek, now_ms).await?;
        let status_lists = crate::status_lists::StatusLists::load(
            store.as_ref(),
            &kek,
            config.status_list_size,
            now_ms,
        )
        .await?;
        let events = crate::events::Hub::new(
            load_event_key(store.as_ref(), &kek, now_ms).await?,
            position,
        );
        let sessions = crate::accounts::SessionKeys::load(store.as_ref(), &kek, now_ms).await?;
        let key_refresh = config.key_refresh;
        let mut metrics = crate::metrics::Metrics::new();
        let commits = audit.commit_metrics();
        metrics.register_audit(commits.batch_entries, commits.commit_seconds);
        let metrics = Arc::new(metrics);
        let limiter = crate::ratelimit::Limiter::new(
            config.rate_limits.clone(),
            config.trusted_proxies.clone(),
            Arc::clone(&store),
            Arc::clone(&config.clock),
            Arc::clone(&metrics),
        );
        if config.rate_limits.enabled {
            limiter.load_overrides(store.as_ref()).await?;
        }
        let quotas =
            crate::quota::Quotas::new(config.plans.clone(), Arc::clone(&store), config.key_refresh);
        if config.plans.enabled {
            quotas.load_plans(store.as_ref()).await?;
        }
        crate::ratelimit::record_defaults(
            store.as_ref(),
            &config.rate_limits,
            &config.trusted_proxies,
            now_ms,
        )
        .await?;
        Ok(AppState {
            limiter,
            quotas,
            store,
            audit,
            did_prefix: did_prefix(&config.public_url),
            config,
            model: ReadModel::new(snapshot, position, Arc::clone(&kek)),
            kek,
            base_options,
            receipt_key,
            status_lists,
            events,
            sessions,
            playground: std::sync::OnceLock::new(),
            policies: Bounded::new(MAX_CACHED_POLICIES, None)
                .counted(metrics.cache_counters("policies")),
            agents: Bounded::new(MAX_CACHED_AGENTS, None).counted(metrics.cache_counters("agents")),
            agent_keys: Bounded::new(MAX_CACHED_AGENTS, Some(key_refresh))
                .counted(metrics.cache_counters("agent_keys")),
            receiver_audiences: Bounded::new(MAX_CACHED_AGENTS, Some(key_refresh))
                .counted(metrics.cache_counters("receiver_audiences")),
            unverifiable_tokens: std::sync::atomic::AtomicU64::new(0),
            api_keys: Bounded::new(MAX_CACHED_AGENTS, None)
                .counted(metrics.cache_counters("api_keys")),
            key_uses: std::sync::Mutex::new(std::collections::HashMap::new()),
            delegations: Bounded::new(MAX_CACHED_DELEGATIONS, None)
                .counted(metrics.cache_counters("delegations")),
            metrics,
            leaf_lookups: tokio::sync::Semaphore::new(1),
            committed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A wake-up for a task that reads the change feed (status lists, events): fires
    /// after this process commits a change and when the store signals one by another.
    pub fn feed_wake(&self) -> FeedWake {
        let mut local = self.committed.subscribe();
        local.mark_unchanged();
        FeedWake {
            local,
            store: self.store.change_signal(),
        }
    }

    /// Says that this process committed a change (see [`AppState::feed_wake`]).
    pub fn note_committed(&self) {
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The read model's current snapshot (one atomic load): take it once per
    /// decision.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.model.snapshot_full()
    }

    /// The key-encryption key the registry's private keys are sealed under.
    pub fn kek(&self) -> &Kek {
        &self.kek
    }

    /// The registry's signing keys as of now.
    pub fn keys(&self) -> Arc<KeyRing> {
        Arc::clone(&self.model.snapshot().keys)
    }

    /// Reads into the read model what other processes committed (see
    /// [`ReadModel::refresh`]).
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let at = read_model::RefreshAt {
            now_s: self.now_ms() / 1000,
            leeway_s: self.config.leeway_secs,
        };
        let stale = self.model.refresh(self.store.as_ref(), at).await?;
        for agent in &stale.agent_keys {
            self.forget_agent_keys(agent);
        }
        for receiver in &stale.receivers {
            self.forget_receiver(receiver);
        }
        for key in &stale.api_keys {
            self.forget_api_key(key);
        }
        Ok(())
    }

    /// Drops the receipts (and AIM SDK verification records) older than
    /// [`crate::Config::receipt_retention`] (none without one); how many. Their audit
    /// entries stay. Run hourly by the server.
    pub async fn purge_receipts(&self) -> Result<u64, StoreError> {
        let Some(retention) = self.config.receipt_retention else {
            return Ok(0);
        };
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = self.now_ms().saturating_sub(retention_ms);
        // AIM SDK verifications are the SDK's receipts: kept as long.
        let verifications = self.store.purge_sdk_verifications(before).await?;
        Ok(self.store.purge_receipts(before).await? + verifications)
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

    /// Verification settings for registry-signed tokens; borrowed when the receiver
    /// names no audience, which is the common case.
    pub fn verify_options(&self, audience: AudienceRule) -> std::borrow::Cow<'_, VerifyOptions> {
        if audience == self.base_options.audience {
            return std::borrow::Cow::Borrowed(&self.base_options);
        }
        let mut opts = self.base_options.clone();
        opts.audience = audience;
        std::borrow::Cow::Owned(opts)
    }

    /// `did:web:<host>:agents:`.
    pub fn did_prefix(&self) -> &str {
        &self.did_prefix
    }

    /// The `did:web` of an agent of this registry.
    pub fn agent_did(&self, agent_id: &str) -> String {
        let mut did = String::with_capacity(self.did_prefix.len() + agent_id.len());
        did.push_str(&self.did_prefix);
        did.push_str(agent_id);
        did
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
