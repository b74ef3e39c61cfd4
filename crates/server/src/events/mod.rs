//! Push events (issue 19 item 4): what the registry tells subscribed receivers.
//!
//! An event is a row of the store's change feed ([`bonafide_store::Store::changes_since`])
//! that a receiver can act on (a token or agent revoked, an agent suspended or
//! reactivated, keys changed), shaped as a Security Event Token (core `secevent`,
//! signed by the event key, which signs nothing else). **Its id is its feed
//! position**: every replica reads the same feed, so every replica serves the same ids
//! and `Last-Event-ID` resumes on any of them, with no second copy of the events.
//!
//! [`Hub`] is the one reader per process: [`run`] wakes with [`AppState::feed_wake`]
//! (this process's commits, the store's signal from other replicas, or the refresh
//! tick), turns each new change into an event once (one store read for its issuer or
//! agent, one signature) and keeps the latest [`RING`] events in memory; subscribers
//! (SSE streams, webhook deliveries) read from there, or from the store when they are
//! further behind ([`events_after`]). Events are not stored apart from the feed, so
//! a SET's `iat` is when its replica signed it; its `jti` (`evt-<position>`) and its
//! content are the same everywhere.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_core::keys::SigningKey;
use bonafide_core::secevent::{self, Event, SetClaims, Subject};
use bonafide_store::{Change, ChangePosition, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::state::AppState;

pub mod webhooks;

/// Events kept in memory for subscribers that are not far behind.
pub const RING: usize = 4096;
/// Most events one read hands out.
const PAGE: usize = 1000;

/// One event, as every subscriber reads it.
#[derive(Debug)]
pub struct PushEvent {
    /// Its id: the change's feed position.
    pub pos: ChangePosition,
    /// Its short name (the SSE `event:` field).
    pub name: &'static str,
    /// The issuer it concerns, if known.
    pub issuer: Option<IssuerId>,
    /// The agent it concerns, if any.
    pub agent: Option<AgentId>,
    /// It concerns everyone (the registry's own keys).
    pub everyone: bool,
    /// The signed SET.
    pub set: String,
}

/// What a subscriber follows: the events of these issuers and of these agents (the
/// registry's own key changes always). Checked by [`Filter::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Issuer ids: every event of their agents and tokens, and of their keys.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub issuers: Vec<IssuerId>,
    /// Agent ids: every event of these agents and their tokens.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<AgentId>,
}

/// Most ids of each kind in one filter.
pub const MAX_FILTER_IDS: usize = 100;

impl Filter {
    /// Why the filter is unusable: empty (follow something), or too long.
    pub fn check(&self) -> Result<(), String> {
        if self.issuers.is_empty() && self.agents.is_empty() {
            return Err("name what to follow: at least one `issuer` or `agent`".into());
        }
        if self.issuers.len() > MAX_FILTER_IDS || self.agents.len() > MAX_FILTER_IDS {
            return Err(format!(
                "at most {MAX_FILTER_IDS} issuers and {MAX_FILTER_IDS} agents"
            ));
        }
        Ok(())
    }

    /// Whether `event` is one this filter follows.
    pub fn matches(&self, event: &PushEvent) -> bool {
        self.follows(event.issuer.as_ref(), event.agent.as_ref(), event.everyone)
    }

    /// Whether an event concerning `issuer` and `agent` (or `everyone`) is followed.
    fn follows(&self, issuer: Option<&IssuerId>, agent: Option<&AgentId>, everyone: bool) -> bool {
        everyone
            || issuer.is_some_and(|i| self.issuers.contains(i))
            || agent.is_some_and(|a| self.agents.contains(a))
    }
}

#[derive(Debug)]
struct Ring {
    /// Every event after this position is in `events` (up to `head`).
    floor: ChangePosition,
    /// The feed position read up to.
    head: ChangePosition,
    events: VecDeque<Arc<PushEvent>>,
}

/// The process's one reader of events, and what subscribers wait on.
#[derive(Debug)]
pub struct Hub {
    key: SigningKey,
    ring: RwLock<Ring>,
    head: watch::Sender<ChangePosition>,
    closing: watch::Sender<bool>,
}

impl Hub {
    /// A hub signing with `key`, starting after feed position `start` (what the read
    /// model was current at when the process started).
    pub fn new(key: SigningKey, start: ChangePosition) -> Self {
        Hub {
            key,
            ring: RwLock::new(Ring {
                floor: start,
                head: start,
                events: VecDeque::new(),
            }),
            head: watch::Sender::new(start),
            closing: watch::Sender::new(false),
        }
    }

    /// The event key (its public half is in `/.well-known/event-jwks.json`).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The feed position events are published up to.
    pub fn head(&self) -> ChangePosition {
        *self.head.borrow()
    }

    /// Changes whenever events are published.
    pub fn watch_head(&self) -> watch::Receiver<ChangePosition> {
        self.head.subscribe()
    }

    /// Becomes true when the server shuts down: streams end so connections drain.
    pub fn watch_closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every stream (server shutdown).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn publish(&self, events: Vec<Arc<PushEvent>>, next: ChangePosition) {
        {
            let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
            for e in events {
                ring.events.push_back(e);
            }
            while ring.events.len() > RING {
                if let Some(old) = ring.events.pop_front() {
                    ring.floor = old.pos;
                }
            }
            ring.head = ring.head.max(next);
        }
        self.head.send_if_modified(|h| {
            let moved = next > *h;
            *h = (*h).max(next);
            moved
        });
    }

    /// The events after `after` held in memory and the position read to, or `None`
    /// when `after` is older than what memory holds.
    fn in_memory(&self, after: ChangePosition) -> Option<(Vec<Arc<PushEvent>>, ChangePosition)> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        if after < ring.floor {
            return None;
        }
        if after >= ring.head {
            return Some((Vec::new(), after));
        }
        let start = ring.events.partition_point(|e| e.pos <= after);
        let events: Vec<_> = ring.events.iter().skip(start).take(PAGE).cloned().collect();
        let next = if start + events.len() < ring.events.len() {
            events.last().map_or(ring.head, |e| e.pos)
        } else {
            ring.head
        };
        Some((events, next))
    }
}

/// The events after `after` that `filter` follows (from at most a page of the feed)
/// and the position to read from next: from memory when it holds them, else from the
/// store's feed (a subscriber resuming from far back), where only the events the
/// filter follows are signed: resuming from the start costs a lookup per change, not
/// a signature per change of every issuer.
pub async fn events_after(
    state: &AppState,
    after: ChangePosition,
    filter: &Filter,
) -> Result<(Vec<Arc<PushEvent>>, ChangePosition), StoreError> {
    if let Some((mut found, next)) = state.events.in_memory(after) {
        found.retain(|e| filter.matches(e));
        return Ok((found, next));
    }
    let head = state.events.head();
    let feed = state
        .store
        .changes_since(after, expired_by_s(state), PAGE as u32)
        .await?;
    let mut events = Vec::new();
    for (change, pos) in feed.changes.iter().zip(&feed.positions) {
        if let Some(u) = resolve(state, *pos, change).await?
            && filter.follows(u.issuer.as_ref(), u.agent.as_ref(), u.everyone)
        {
            events.push(Arc::new(u.sign(state)?));
        }
    }
    // Never past what this process has published: the rest comes from memory.
    let next = feed.next.min(head).max(after);
    events.retain(|e| e.pos <= next);
    Ok((events, next))
}

fn expired_by_s(state: &AppState) -> i64 {
    (state.now_ms() / 1000).saturating_sub(state.config.leeway_secs)
}

/// An event before it is signed: what it is and whom it concerns.
struct Unsigned {
    pos: ChangePosition,
    event: Event,
    issuer: Option<IssuerId>,
    agent: Option<AgentId>,
    everyone: bool,
    toe_ms: Option<i64>,
}

impl Unsigned {
    /// The event with its SET signed by the event key.
    fn sign(self, state: &AppState) -> Result<PushEvent, StoreError> {
        let claims = SetClaims::new(
            &self.event,
            &state.config.public_url,
            format!("evt-{}", self.pos),
            state.now_ms() / 1000,
            self.toe_ms.map(|ms| ms / 1000),
        );
        let set = secevent::sign(state.events.key(), &claims)
            .map_err(|e| StoreError::Backend(format!("signing an event: {e}")))?;
        Ok(PushEvent {
            pos: self.pos,
            name: self.event.name(),
            issuer: self.issuer,
            agent: self.agent,
            everyone: self.everyone,
            set,
        })
    }
}

/// The event a change makes, signed, if it makes one ([`resolve`]).
async fn build(
    state: &AppState,
    pos: ChangePosition,
    change: &Change,
) -> Result<Option<PushEvent>, StoreError> {
    resolve(state, pos, change)
        .await?
        .map(|u| u.sign(state))
        .transpose()
}

/// The event a change makes, if it makes one (domain, receiver and API-key changes
/// concern no receiver's decisions and make none), and whom it concerns.
async fn resolve(
    state: &AppState,
    pos: ChangePosition,
    change: &Change,
) -> Result<Option<Unsigned>, StoreError> {
    let (event, issuer, agent, toe_ms) = match change {
        Change::TokenRevoked { jti, expires_at_s } => match state.store.token(jti).await? {
            Some(t) => (
                Event::TokenRevoked(jti.to_string()),
                Some(t.issuer_id),
                Some(t.agent_id),
                t.revoked_at_ms,
            ),
            // A consent policy revoked by its issuer travels as a revocation of its
            // revocation id, which has no token record: the issuer is the policy's,
            // so subscribers following that issuer receive it.
            None if *expires_at_s == bonafide_store::POLICY_REVOCATION_EXPIRES_AT_S => {
                let revoked = state.store.policy_revocation_by_id(jti).await?;
                (
                    Event::TokenRevoked(jti.to_string()),
                    revoked.as_ref().map(|r| r.issuer_id.clone()),
                    None,
                    revoked.map(|r| r.revoked_at_ms),
                )
            }
            None => (Event::TokenRevoked(jti.to_string()), None, None, None),
        },
        Change::AgentRevoked(a) | Change::AgentSuspended(a) | Change::AgentReactivated(a) => {
            // The record's status fields are never read from the cache: the store.
            let record = state.store.agent(a).await?;
            let (event, toe) = match change {
                Change::AgentRevoked(_) => (
                    Event::AgentRevoked(a.to_string()),
                    record.as_ref().and_then(|r| r.revoked_at_ms),
                ),
                Change::AgentSuspended(_) => (
                    Event::AgentSuspended(a.to_string()),
                    record.as_ref().and_then(|r| r.suspended_at_ms),
                ),
                _ => (Event::AgentReactivated(a.to_string()), None),
            };
            (event, record.map(|r| r.issuer_id), Some(a.clone()), toe)
        }
        Change::AgentKeysChanged(a) => {
            let issuer = state.agent_record(a).await?.map(|r| r.issuer_id.clone());
            (
                Event::KeysChanged(Subject::Opaque { id: a.to_string() }),
                issuer,
                Some(a.clone()),
                None,
            )
        }
        Change::IssuerKeysChanged(i) => (
            Event::KeysChanged(Subject::Opaque { id: i.to_string() }),
            Some(i.clone()),
            None,
            None,
        ),
        Change::SigningKeysChanged => (
            Event::KeysChanged(Subject::Uri {
                uri: state.config.public_url.clone(),
            }),
            None,
            None,
            None,
        ),
        _ => return Ok(None),
    };
    Ok(Some(Unsigned {
        pos,
        event,
        issuer,
        agent,
        everyone: matches!(change, Change::SigningKeysChanged),
        toe_ms,
    }))
}

/// The hub's reader: turns each change after the start position into an event once,
/// as soon as [`AppState::feed_wake`] fires (and at least every `key_refresh`).
pub async fn run(state: Arc<AppState>) {
    let mut wake = state.feed_wake();
    let mut failing = false;
    loop {
        let position = state.events.head();
        match read_into_ring(&state, position).await {
            Ok(more) => {
                if failing {
                    tracing::info!("push events are read again");
                    failing = false;
                }
                if more {
                    continue;
                }
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "could not read push events; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        wake.wait(state.config.key_refresh).await;
    }
}

/// Reads one page of the feed after `position` into the ring; true if more follow.
async fn read_into_ring(state: &AppState, position: ChangePosition) -> Result<bool, StoreError> {
    let feed = state
        .store
        .changes_since(position, expired_by_s(state), PAGE as u32)
        .await?;
    let mut events = Vec::new();
    for (change, pos) in feed.changes.iter().zip(&feed.positions) {
        if let Some(e) = build(state, *pos, change).await? {
            events.push(Arc::new(e));
        }
    }
    state.events.publish(events, feed.next);
    Ok(feed.more)
}
