//! The read model: one immutable [`Snapshot`] of everything a verify reads without
//! I/O (the registry's signing keys, issuers' keys, revocations, suspensions, verified
//! domains), swapped whole.
//!
//! A verify loads the current snapshot once (one atomic load) and decides against it:
//! it never sees half of a change. A change builds the next snapshot from the current
//! one (cheap: keys and domains are shared `Arc`s, revocations and suspensions
//! persistent collections) and swaps it in, holding the model's one lock, which also
//! serialises refreshes: an older read of the store never replaces a newer snapshot.
//! Changes arrive two ways, both under that lock: a local write's [`Change`]
//! ([`crate::write`]), and [`ReadModel::refresh`], which reads what any process
//! committed from the store's change feed (`Store::changes_since`, in commit order,
//! from where the last read ended): only what changed is read, which is what several
//! replicas on one database need. Applying a change twice is harmless (a local write
//! is seen again in the feed), and the lock keeps an older read from landing after a
//! newer local change.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use bonafide_core::ids::{AgentId, IssuerId, ReceiverId, TokenId};
use bonafide_core::token;
use bonafide_core::verifier::{IssuerKeyRing, Verifier};
use bonafide_store::{
    Agent, AgentStatus, ChangePosition, IssuerDomain, IssuerKey, SigningKeyRecord, Store,
    StoreError,
};

use super::keys::{KeyRing, issuer_key_fingerprint, key_fingerprint, ring_from_records};
use super::revocations::{Revoked, RevokedSet};
use bonafide_core::sealed::Kek;

/// Everything a verify reads from memory, as of one moment. Immutable: cloning it
/// costs a few reference counts.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The registry's signing and verifying keys.
    pub keys: Arc<KeyRing>,
    /// Issuers' own keys (self-custody and consent tokens), revoked ones included.
    pub issuer_keys: Arc<IssuerKeyRing>,
    /// `kid:revoked_at` of the issuer keys in store order: what they were built from.
    issuer_key_fingerprint: Arc<[String]>,
    /// Revoked agents, and revoked tokens until they expire.
    revoked: RevokedSet,
    /// Agents suspended now.
    suspended: imbl::HashSet<AgentId>,
    /// Issuers with a verified domain (issuer → domain).
    issuer_domains: Arc<HashMap<IssuerId, IssuerDomain>>,
}

impl Snapshot {
    /// The snapshot a registry starts from, and the feed position it is current at:
    /// revocations and suspensions replayed from the start of the change feed (tokens
    /// already dead left out), then the signing keys, issuer keys and domains read
    /// whole. The feed is read first, so whatever commits meanwhile is read again
    /// from the position returned, never missed.
    pub async fn load(
        store: &dyn Store,
        keys: KeyRing,
        at: RefreshAt,
    ) -> Result<(Self, ChangePosition), StoreError> {
        let mut snapshot = Snapshot {
            keys: Arc::new(keys),
            issuer_keys: Arc::new(IssuerKeyRing::default()),
            issuer_key_fingerprint: Arc::from(Vec::new()),
            revoked: RevokedSet::default(),
            suspended: imbl::HashSet::new(),
            issuer_domains: Arc::new(HashMap::new()),
        };
        let (changes, position) = read_feed(store, ChangePosition::START, at).await?;
        snapshot.apply_feed(&changes);
        let records = store.all_issuer_keys().await?;
        snapshot.issuer_keys = Arc::new(ring_from_records(store, &records, None).await?);
        snapshot.issuer_key_fingerprint = records.iter().map(issuer_key_fingerprint).collect();
        snapshot.issuer_domains = Arc::new(domains_by_issuer(store).await?);
        Ok((snapshot, position))
    }

    /// Applies feed entries that change the snapshot itself (revocations and
    /// suspensions), in order; what says "read again" is left to the caller.
    fn apply_feed(&mut self, changes: &[bonafide_store::Change]) {
        use bonafide_store::Change as C;
        for change in changes {
            match change {
                C::AgentRevoked(id) => {
                    self.revoked.agents.insert(id.clone());
                    // Revocation ends a suspension.
                    self.suspended.remove(id);
                }
                C::TokenRevoked { jti, expires_at_s } => {
                    self.revoked.insert_token(jti.clone(), *expires_at_s);
                }
                C::AgentSuspended(id) => {
                    self.suspended.insert(id.clone());
                }
                C::AgentReactivated(id) => {
                    self.suspended.remove(id);
                }
                _ => {}
            }
        }
    }

    /// Token-kind dispatch over this snapshot's key sets.
    pub fn verifier<'a>(&'a self, agent_did_prefix: &'a str) -> Verifier<'a> {
        Verifier {
            registry: &self.keys.verifying,
            issuers: &self.issuer_keys,
            agent_did_prefix,
        }
    }

    /// Whether the token or its agent is revoked.
    pub fn revoked(&self, agent: &AgentId, jti: &TokenId) -> Option<token::Revoked> {
        if self.revoked.agents.contains(agent) {
            Some(token::Revoked::Agent)
        } else if self.revoked.contains_token(jti) {
            Some(token::Revoked::Token)
        } else {
            None
        }
    }

    /// Whether the agent is revoked (whatever its tokens).
    pub fn agent_revoked(&self, agent: &AgentId) -> bool {
        self.revoked.agents.contains(agent)
    }

    /// Whether the agent is suspended.
    pub fn suspended(&self, agent: &AgentId) -> bool {
        !self.suspended.is_empty() && self.suspended.contains(agent)
    }

    /// How many revoked tokens are held (live ones only).
    pub fn revoked_tokens(&self) -> usize {
        self.revoked.token_count()
    }

    /// The domain an issuer verified, if that verification is in force at `now_ms`:
    /// less than `ttl_ms` old, with a key that is still the issuer's and unrevoked.
    pub fn verified_domain(&self, issuer: &IssuerId, now_ms: i64, ttl_ms: i64) -> Option<String> {
        if self.issuer_domains.is_empty() {
            return None;
        }
        let d = self.issuer_domains.get(issuer)?;
        if now_ms.saturating_sub(d.verified_at_ms) >= ttl_ms {
            return None;
        }
        let live = self
            .issuer_keys
            .get(&d.kid)
            .is_some_and(|k| k.issuer_id == *issuer && k.revoked_at_ms.is_none());
        live.then(|| d.domain.clone())
    }
}

/// What a committed write changed, for the read model.
#[derive(Debug)]
pub enum Change {
    /// Nothing the read model holds.
    None,
    /// An agent or a token revoked.
    Revoked(Revoked),
    /// An agent's suspension state as stored now.
    Suspension(Box<Agent>),
    /// Issuers' keys changed: read them again.
    IssuerKeys,
    /// A verified domain changed: read them again.
    IssuerDomains,
    /// The registry's signing keys changed (a rotation): read them again.
    SigningKeys,
}

/// How far the store's change feed has been read.
#[derive(Debug)]
struct Position {
    changes: ChangePosition,
}

/// The current snapshot and the one lock every change of it takes.
#[derive(Debug)]
pub struct ReadModel {
    current: ArcSwap<Snapshot>,
    writer: tokio::sync::Mutex<Position>,
    /// Opens the signing keys read again after a rotation.
    kek: Arc<Kek>,
}

/// Held while a write commits and its change is applied (see [`ReadModel::lock`]).
#[derive(Debug)]
pub struct Writer<'a> {
    model: &'a ReadModel,
    position: tokio::sync::MutexGuard<'a, Position>,
}

/// When a refresh runs and which settings it needs.
#[derive(Debug, Clone, Copy)]
pub struct RefreshAt {
    /// Now, Unix seconds.
    pub now_s: i64,
    /// Clock leeway, seconds: revoked tokens are kept until `exp` + leeway.
    pub leeway_s: i64,
}

impl ReadModel {
    /// A model starting at `snapshot`, current at feed position `position`.
    pub fn new(snapshot: Snapshot, position: ChangePosition, kek: Arc<Kek>) -> Self {
        ReadModel {
            current: ArcSwap::from_pointee(snapshot),
            writer: tokio::sync::Mutex::new(Position { changes: position }),
            kek,
        }
    }

    /// The current snapshot: one atomic load; hold it for one decision.
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot, owned (to keep across awaits).
    pub fn snapshot_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Takes the model's one lock: hold it across a store write and applying its
    /// change, so no refresh or other write interleaves.
    pub async fn lock(&self) -> Writer<'_> {
        Writer {
            model: self,
            position: self.writer.lock().await,
        }
    }

    /// Reads what any process committed since the last read (the store's change
    /// feed) and applies it in one swap: revocations and suspensions as they are;
    /// signing keys, issuer keys and verified domains read again only when the feed
    /// says they changed (signing keys also when a retired key's publication has
    /// ended); revoked tokens past `exp` + leeway forgotten. Returns the agents and
    /// receivers whose cached records the caller must drop.
    pub async fn refresh(&self, store: &dyn Store, at: RefreshAt) -> Result<Stale, StoreError> {
        use bonafide_store::Change as C;
        let mut writer = self.lock().await;
        let (changes, next) = read_feed(store, writer.position.changes, at).await?;
        let current = writer.model.snapshot_full();
        let mut stale = Stale::default();
        let (mut signing, mut issuer_keys, mut domains) = (false, false, false);
        for change in &changes {
            match change {
                C::SigningKeysChanged => signing = true,
                C::IssuerKeysChanged(_) => issuer_keys = true,
                C::IssuerDomainChanged(_) => domains = true,
                C::AgentKeysChanged(id) => stale.agent_keys.push(id.clone()),
                C::ReceiverChanged(id) => stale.receivers.push(id.clone()),
                C::ApiKeyRevoked(hash) => stale.api_keys.push(*hash),
                _ => {}
            }
        }
        let retired_ended = current
            .keys
            .retired
            .iter()
            .any(|(_, until)| until.saturating_add(at.leeway_s) <= at.now_s);
        let keys = if signing || retired_ended {
            signing_keys_if_changed(&current.keys, &store.signing_keys().await?, &self.kek, at)?
        } else {
            None
        };
        let issuer_ring = if issuer_keys {
            let records = store.all_issuer_keys().await?;
            issuer_keys_if_changed(store, &current, &records).await?
        } else {
            None
        };
        let domains = if domains {
            Some(domains_by_issuer(store).await?)
        } else {
            None
        };
        writer.position.changes = next;
        let expired = current
            .revoked
            .earliest_expiry()
            .is_some_and(|exp| exp <= at.now_s.saturating_sub(at.leeway_s));
        let nothing = changes.is_empty() && keys.is_none() && !expired;
        if !nothing || issuer_ring.is_some() || domains.is_some() {
            writer.apply(|next| {
                next.apply_feed(&changes);
                next.revoked.forget_expired(at.now_s, at.leeway_s);
                if let Some(keys) = keys {
                    next.keys = Arc::new(keys);
                }
                if let Some((ring, fingerprint)) = issuer_ring {
                    next.issuer_keys = Arc::new(ring);
                    next.issuer_key_fingerprint = fingerprint;
                }
                if let Some(domains) = domains
                    && *next.issuer_domains != domains
                {
                    next.issuer_domains = Arc::new(domains);
                }
            });
        }
        Ok(stale)
    }
}

/// Cached store records a refresh found changed: the caller drops them.
#[derive(Debug, Default)]
pub struct Stale {
    /// Agents whose keys changed.
    pub agent_keys: Vec<AgentId>,
    /// Receivers whose audiences changed.
    pub receivers: Vec<ReceiverId>,
    /// API keys revoked.
    pub api_keys: Vec<bonafide_core::apikey::ApiKeyHash>,
}

/// Most changes read from the feed per call; a reader that was away pages through.
const FEED_PAGE: u32 = 10_000;

/// Every change after `after`, in commit order, paging through, and the position
/// after the last.
async fn read_feed(
    store: &dyn Store,
    after: ChangePosition,
    at: RefreshAt,
) -> Result<(Vec<bonafide_store::Change>, ChangePosition), StoreError> {
    let mut position = after;
    let mut changes = Vec::new();
    loop {
        let feed = store
            .changes_since(position, at.now_s.saturating_sub(at.leeway_s), FEED_PAGE)
            .await?;
        changes.extend(feed.changes);
        position = feed.next;
        if !feed.more {
            return Ok((changes, position));
        }
    }
}

impl Writer<'_> {
    /// Swaps in the snapshot `change` makes of the current one.
    pub fn apply(&mut self, change: impl FnOnce(&mut Snapshot)) {
        let mut next = Snapshot::clone(&self.model.current.load());
        change(&mut next);
        self.model.current.store(Arc::new(next));
    }

    /// Applies a committed write's change, reading the store where the change says
    /// a part must be read again.
    pub async fn apply_change(
        &mut self,
        store: &dyn Store,
        change: Change,
        at: RefreshAt,
    ) -> Result<(), StoreError> {
        match change {
            Change::None => {}
            Change::Revoked(Revoked::Agent(id)) => self.apply(|s| {
                s.revoked.agents.insert(id);
            }),
            Change::Revoked(Revoked::Token { jti, expires_at_s }) => {
                self.apply(|s| s.revoked.insert_token(jti, expires_at_s));
            }
            Change::Suspension(agent) => {
                let suspended = agent.status == AgentStatus::Suspended;
                if self.model.snapshot().suspended.contains(&agent.id) != suspended {
                    self.apply(|s| {
                        if suspended {
                            s.suspended.insert(agent.id.clone());
                        } else {
                            s.suspended.remove(&agent.id);
                        }
                    });
                }
            }
            Change::IssuerKeys => {
                let current = self.model.snapshot_full();
                let records = store.all_issuer_keys().await?;
                if let Some((ring, fingerprint)) =
                    issuer_keys_if_changed(store, &current, &records).await?
                {
                    self.apply(|s| {
                        s.issuer_keys = Arc::new(ring);
                        s.issuer_key_fingerprint = fingerprint;
                    });
                }
            }
            Change::SigningKeys => {
                let records = store.signing_keys().await?;
                let current = self.model.snapshot_full();
                if let Some(keys) =
                    signing_keys_if_changed(&current.keys, &records, &self.model.kek, at)?
                {
                    self.set_keys(keys);
                }
            }
            Change::IssuerDomains => {
                let domains = domains_by_issuer(store).await?;
                if *self.model.snapshot().issuer_domains != domains {
                    self.apply(|s| s.issuer_domains = Arc::new(domains));
                }
            }
        }
        Ok(())
    }

    /// Replaces the signing keys (after a rotation this process made).
    pub fn set_keys(&mut self, keys: KeyRing) {
        self.apply(|s| s.keys = Arc::new(keys));
    }
}

/// A new signing key ring if the stored keys differ from `current`'s or a retired
/// key's publication window (plus leeway) has ended.
fn signing_keys_if_changed(
    current: &KeyRing,
    records: &[SigningKeyRecord],
    kek: &Kek,
    at: RefreshAt,
) -> Result<Option<KeyRing>, StoreError> {
    let fingerprint: Vec<String> = records.iter().map(key_fingerprint).collect();
    let expired = current
        .retired
        .iter()
        .any(|(_, until)| until.saturating_add(at.leeway_s) <= at.now_s);
    if fingerprint == current.fingerprint && !expired {
        return Ok(None);
    }
    KeyRing::from_records(records, kek, at.now_s, at.leeway_s).map(Some)
}

/// A new issuer key ring and its fingerprint if `records` differ from what
/// `current`'s was built from. Issuer names come from the current ring where known
/// (an issuer's name never changes, nor who holds it).
async fn issuer_keys_if_changed(
    store: &dyn Store,
    current: &Snapshot,
    records: &[IssuerKey],
) -> Result<Option<(IssuerKeyRing, Arc<[String]>)>, StoreError> {
    let fingerprint: Arc<[String]> = records.iter().map(issuer_key_fingerprint).collect();
    if fingerprint == current.issuer_key_fingerprint {
        return Ok(None);
    }
    let ring = ring_from_records(store, records, Some(&current.issuer_keys)).await?;
    Ok(Some((ring, fingerprint)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use bonafide_core::keys::Algorithm;
    use bonafide_store::SqliteStore;

    async fn model() -> (tempfile::TempDir, SqliteStore, ReadModel) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let kek = crate::sealing::ephemeral_kek().unwrap();
        let record = super::super::new_key_record(Algorithm::EdDSA, 0, &kek).unwrap();
        let entry = bonafide_core::audit::AuditEntry::new(
            bonafide_core::audit::EventType::KeyAdded,
            0,
            bonafide_core::audit::Actor::Registry,
        );
        let audit = crate::audit::record(&entry, None, None).unwrap();
        store.rotate_signing_key(&record, 0, &audit).await.unwrap();
        let keys = KeyRing::from_records(&[record], &kek, 0, 60).unwrap();
        let (snapshot, position) = Snapshot::load(&store, keys, AT).await.unwrap();
        (dir, store, ReadModel::new(snapshot, position, kek))
    }

    const AT: RefreshAt = RefreshAt {
        now_s: 1_000,
        leeway_s: 60,
    };

    fn agent(n: u8) -> AgentId {
        AgentId::from_random([n; 16])
    }

    #[tokio::test]
    async fn a_held_snapshot_never_changes_and_the_next_one_has_the_change() {
        let (_dir, store, model) = model().await;
        let before = model.snapshot_full();
        let jti = TokenId::from_random([3; 16]);
        let mut writer = model.lock().await;
        let revoke = Revoked::Token {
            jti: jti.clone(),
            expires_at_s: 2_000,
        };
        writer
            .apply_change(&store, Change::Revoked(revoke), AT)
            .await
            .unwrap();
        writer
            .apply_change(&store, Change::Revoked(Revoked::Agent(agent(1))), AT)
            .await
            .unwrap();
        drop(writer);
        // Whoever holds the old snapshot decides as of then, whole.
        assert!(before.revoked(&agent(2), &jti).is_none());
        assert!(!before.agent_revoked(&agent(1)));
        let after = model.snapshot_full();
        assert_eq!(after.revoked(&agent(2), &jti), Some(token::Revoked::Token));
        assert_eq!(
            after.revoked(&agent(1), &TokenId::from_random([4; 16])),
            Some(token::Revoked::Agent)
        );
        // Keys are shared between the two, not copied.
        assert!(Arc::ptr_eq(&before.keys, &after.keys));
    }

    #[tokio::test]
    async fn a_suspension_and_its_end_are_mirrored_as_stored() {
        let (_dir, store, model) = model().await;
        let mut record = Agent {
            id: agent(5),
            issuer_id: IssuerId::from_random([6; 16]),
            name: "a".into(),
            description: None,
            scopes: Vec::new(),
            audience: None,
            token_ttl_s: 60,
            status: AgentStatus::Suspended,
            created_at_ms: 0,
            revoked_at_ms: None,
            revoke_reason: None,
            suspended_at_ms: Some(0),
            suspend_reason: None,
            policy: None,
            user: None,
            allow_bearer_tokens: false,
        };
        let mut writer = model.lock().await;
        writer
            .apply_change(&store, Change::Suspension(Box::new(record.clone())), AT)
            .await
            .unwrap();
        assert!(model.snapshot().suspended(&agent(5)));
        record.status = AgentStatus::Active;
        writer
            .apply_change(&store, Change::Suspension(Box::new(record)), AT)
            .await
            .unwrap();
        assert!(!model.snapshot().suspended(&agent(5)));
    }

    #[tokio::test]
    async fn a_refresh_waits_for_a_write_in_progress() {
        let (_dir, store, model) = model().await;
        let model = Arc::new(model);
        let store: Arc<dyn Store> = Arc::new(store);
        let writer = model.lock().await;
        let refresh = {
            let (model, store) = (Arc::clone(&model), Arc::clone(&store));
            tokio::spawn(async move { model.refresh(store.as_ref(), AT).await })
        };
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!refresh.is_finished(), "a refresh ran beside a write");
        drop(writer);
        refresh.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn the_feed_is_applied_in_commit_order() {
        use bonafide_store::Change as C;
        let (_dir, _store, model) = model().await;
        let mut snapshot = Snapshot::clone(&model.snapshot());
        let jti = TokenId::from_random([8; 16]);
        snapshot.apply_feed(&[
            C::AgentSuspended(agent(1)),
            C::AgentSuspended(agent(2)),
            C::AgentReactivated(agent(2)),
            C::TokenRevoked {
                jti: jti.clone(),
                expires_at_s: 5_000,
            },
            // A revocation ends a suspension.
            C::AgentRevoked(agent(1)),
            C::SigningKeysChanged,
        ]);
        assert!(!snapshot.suspended(&agent(1)) && !snapshot.suspended(&agent(2)));
        assert!(snapshot.agent_revoked(&agent(1)));
        assert_eq!(
            snapshot.revoked(&agent(3), &jti),
            Some(token::Revoked::Token)
        );
        // Seen again (a local write the feed also carries): nothing changes.
        snapshot.apply_feed(&[C::AgentSuspended(agent(2)), C::AgentReactivated(agent(2))]);
        assert!(!snapshot.suspended(&agent(2)));
    }
}
