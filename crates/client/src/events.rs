//! Push events for receivers (issue 19): follow the registry's event stream
//! (`GET /v1/events`, Server-Sent Events), verify each Security Event Token with the
//! registry's event JWKS (core `secevent`), and keep a [`RevokedSet`] that the
//! receiver layer consults ([`crate::receiver::Config::revoked`]), so a token or
//! agent revoked (or an agent suspended) is refused offline at once, not when the
//! token expires.
//!
//! ```no_run
//! # async fn run() -> Result<(), bonafide_client::ClientError> {
//! use bonafide_client::events::{RevokedSet, Subscription};
//! let revoked = RevokedSet::new();
//! let stream = Subscription::new("https://registry.example", "bfk_receiver_key")
//!     .issuer("iss_…")
//!     .spawn(revoked.clone())?;
//! stream.connected().await;
//! # Ok(()) }
//! ```
//!
//! The stream resumes after the last event applied (`Last-Event-ID`) when the
//! connection drops. A SET that does not verify is ignored (and counted), never
//! applied. Revoked token ids are kept for the life of the set (SETs do not carry
//! the token's `exp`): memory grows with the revocations followed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bonafide_core::secevent::{self, Event};
use bonafide_core::token::{AgentClaims, KeySet, Revoked, TokenError};

use crate::ClientError;

/// What the event stream said is revoked or suspended, as the receiver layer reads it.
#[derive(Debug)]
pub struct RevokedSet {
    sets: RwLock<Sets>,
    last_event_id: Mutex<Option<String>>,
    /// Events applied so far; [`RevokedSet::watch`] wakes on each.
    applied: tokio::sync::watch::Sender<u64>,
    refused_sets: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for RevokedSet {
    fn default() -> Self {
        RevokedSet {
            sets: RwLock::default(),
            last_event_id: Mutex::default(),
            applied: tokio::sync::watch::Sender::new(0),
            refused_sets: AtomicU64::new(0),
            last_error: Mutex::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Sets {
    tokens: HashSet<String>,
    revoked_agents: HashSet<String>,
    suspended_agents: HashSet<String>,
}

impl RevokedSet {
    /// An empty set.
    pub fn new() -> Arc<Self> {
        Arc::new(RevokedSet::default())
    }

    /// Applies one event (key changes change nothing here: the JWKS refresh handles
    /// them).
    pub fn apply(&self, event: &Event) {
        let mut s = self.sets.write().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::TokenRevoked(jti) => {
                s.tokens.insert(jti.clone());
            }
            Event::AgentRevoked(a) => {
                s.suspended_agents.remove(a);
                s.revoked_agents.insert(a.clone());
            }
            Event::AgentSuspended(a) => {
                s.suspended_agents.insert(a.clone());
            }
            Event::AgentReactivated(a) => {
                s.suspended_agents.remove(a);
            }
            Event::KeysChanged(_) => {}
        }
        drop(s);
        self.applied.send_modify(|n| *n += 1);
    }

    /// Why `claims` must be refused, if the events say so: the token, one of its
    /// ancestors (a delegated token) or any agent of its chain revoked, or suspended.
    pub fn refusal(&self, claims: &AgentClaims) -> Option<TokenError> {
        let s = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let ancestors = claims.ancestor_jtis.iter().flatten();
        // An issuer-signed token's revocation names it by its (issuer, jti) id, the
        // one the registry keeps for it; a registry token's jti is that id already.
        let scoped = bonafide_core::ids::IssuerId::try_from(claims.iss.as_str())
            .ok()
            .map(|issuer| {
                let id = bonafide_core::token::issuer_token_id(&issuer, claims.jti.as_str());
                (issuer, id)
            });
        if s.tokens.contains(claims.jti.as_str())
            || scoped
                .as_ref()
                .is_some_and(|(_, id)| s.tokens.contains(id.as_str()))
            || ancestors.into_iter().any(|j| s.tokens.contains(j.as_str()))
        {
            return Some(TokenError::Revoked(Revoked::Token));
        }
        // A consent policy its issuer revoked travels as a revocation of the policy's
        // revocation id (the issuer's id and `policy.id`), as the registry checks it.
        let policy_id = claims
            .policy
            .as_ref()
            .and_then(|p| p.get("id"))
            .and_then(serde_json::Value::as_str);
        if let (Some((issuer, _)), Some(policy_id)) = (&scoped, policy_id)
            && s.tokens
                .contains(bonafide_core::token::policy_revocation_id(issuer, policy_id).as_str())
        {
            return Some(TokenError::Revoked(Revoked::Policy));
        }
        let mut agents = vec![claims.sub.as_str()];
        let mut actor = claims.act.as_ref();
        while let Some(a) = actor {
            agents.push(a.sub.as_str());
            actor = a.act.as_deref();
        }
        if agents.iter().any(|a| s.revoked_agents.contains(*a)) {
            return Some(TokenError::Revoked(Revoked::Agent));
        }
        if agents.iter().any(|a| s.suspended_agents.contains(*a)) {
            return Some(TokenError::Suspended);
        }
        None
    }

    /// The id of the last event applied (where a reconnection resumes).
    pub fn last_event_id(&self) -> Option<String> {
        self.last_event_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Events applied so far.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Changes each time an event is applied (its value: [`RevokedSet::applied`]).
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// SETs received that did not verify (ignored).
    pub fn refused_sets(&self) -> u64 {
        self.refused_sets.load(Ordering::Relaxed)
    }

    /// The last connection or verification failure, for diagnostics.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

/// What to follow, and how ([`Subscription::spawn`]).
#[derive(Debug, Clone)]
pub struct Subscription {
    base: String,
    api_key: String,
    issuers: Vec<String>,
    agents: Vec<String>,
    after: Option<String>,
    acknowledge: bool,
    reconnect: Duration,
}

impl Subscription {
    /// Follows nothing yet: name issuers or agents. `api_key` is a receiver key.
    pub fn new(registry_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Subscription {
            base: registry_url.into().trim_end_matches('/').to_owned(),
            api_key: api_key.into(),
            issuers: Vec::new(),
            agents: Vec::new(),
            after: None,
            acknowledge: true,
            reconnect: Duration::from_secs(1),
        }
    }

    /// Also follow this issuer's agents and tokens.
    pub fn issuer(mut self, id: impl Into<String>) -> Self {
        self.issuers.push(id.into());
        self
    }

    /// Also follow this agent and its tokens.
    pub fn agent(mut self, id: impl Into<String>) -> Self {
        self.agents.push(id.into());
        self
    }

    /// Start after this event id (default: from now on).
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    /// Acknowledge each event applied (`POST /v1/events/ack`), so the registry can
    /// show when this receiver acted on it. Default on.
    pub fn acknowledge(mut self, on: bool) -> Self {
        self.acknowledge = on;
        self
    }

    /// Starts following in a background task (a tokio runtime must be running).
    pub fn spawn(self, set: Arc<RevokedSet>) -> Result<EventStream, ClientError> {
        if self.issuers.is_empty() && self.agents.is_empty() {
            return Err(ClientError::InvalidUrl {
                url: self.base,
                reason: "a subscription names at least one issuer or agent".into(),
            });
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: self.base.clone(),
                reason: e.to_string(),
            })?;
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(follow(self, http, set, tx));
        Ok(EventStream {
            task,
            connected: rx,
        })
    }
}

/// A running subscription; dropping it stops it.
#[derive(Debug)]
pub struct EventStream {
    task: tokio::task::JoinHandle<()>,
    connected: tokio::sync::watch::Receiver<bool>,
}

impl EventStream {
    /// Waits until the stream is connected (events from then on will arrive).
    pub async fn connected(&self) {
        let mut rx = self.connected.clone();
        let _ = rx.wait_for(|c| *c).await;
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn follow(
    sub: Subscription,
    http: reqwest::Client,
    set: Arc<RevokedSet>,
    connected: tokio::sync::watch::Sender<bool>,
) {
    let mut keys = KeySet::new();
    // The latest id to acknowledge: the acknowledging task sends the newest one when
    // the previous acknowledgement is answered (one in flight, later ids coalesced).
    let (ack_tx, ack_rx) = tokio::sync::watch::channel::<Option<String>>(None);
    let _acker = sub.acknowledge.then(|| {
        AbortOnDrop(tokio::spawn(acknowledge(
            sub.base.clone(),
            sub.api_key.clone(),
            http.clone(),
            Arc::clone(&set),
            ack_rx,
        )))
    });
    let acks = sub.acknowledge.then_some(&ack_tx);
    loop {
        if let Err(e) = follow_once(&sub, &http, &set, &mut keys, &connected, acks).await {
            set.set_error(e.to_string());
        }
        connected.send_replace(false);
        tokio::time::sleep(sub.reconnect).await;
    }
}

/// Aborts its task when dropped (the acknowledging task ends with its subscription).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Acknowledges the latest event applied, one request at a time.
async fn acknowledge(
    base: String,
    api_key: String,
    http: reqwest::Client,
    set: Arc<RevokedSet>,
    mut latest: tokio::sync::watch::Receiver<Option<String>>,
) {
    while latest.changed().await.is_ok() {
        let Some(id) = latest.borrow_and_update().clone() else {
            continue;
        };
        let sent = http
            .post(format!("{base}/v1/events/ack"))
            .bearer_auth(&api_key)
            .json(&serde_json::json!({ "last_event_id": id }))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {}
            Ok(resp) => set.set_error(format!("acknowledging event {id}: {}", resp.status())),
            Err(e) => set.set_error(format!("acknowledging event {id}: {e}")),
        }
    }
}

async fn event_keys(base: &str) -> Result<KeySet, ClientError> {
    let jwks = crate::load_jwks(&format!("{base}/.well-known/event-jwks.json")).await?;
    Ok(KeySet::from_jwks(&jwks)?)
}

/// One connection: reads events until it ends.
async fn follow_once(
    sub: &Subscription,
    http: &reqwest::Client,
    set: &RevokedSet,
    keys: &mut KeySet,
    connected: &tokio::sync::watch::Sender<bool>,
    acks: Option<&tokio::sync::watch::Sender<Option<String>>>,
) -> Result<(), ClientError> {
    let url = format!("{}/v1/events", sub.base);
    let unreachable = |e: reqwest::Error| ClientError::Unreachable {
        url: url.clone(),
        reason: e.without_url().to_string(),
    };
    if keys.is_empty() {
        *keys = event_keys(&sub.base).await?;
    }
    let mut target = reqwest::Url::parse(&url).map_err(|e| ClientError::InvalidUrl {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    {
        let mut pairs = target.query_pairs_mut();
        for i in &sub.issuers {
            pairs.append_pair("issuer", i);
        }
        for a in &sub.agents {
            pairs.append_pair("agent", a);
        }
    }
    let mut req = http
        .get(target)
        .bearer_auth(&sub.api_key)
        .header("accept", "text/event-stream");
    if let Some(last) = set.last_event_id().or_else(|| sub.after.clone()) {
        req = req.header("last-event-id", last);
    }
    let mut resp = req.send().await.map_err(unreachable)?;
    if !resp.status().is_success() {
        return Err(ClientError::Decode {
            url,
            reason: format!("the registry answered {}", resp.status()),
        });
    }
    connected.send_replace(true);
    let mut buf = String::new();
    while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if data.is_empty() {
                continue;
            }
            let claims = match secevent::verify(&data, &*keys) {
                Err(secevent::SetError::Jws(TokenError::UnknownKey)) => {
                    // The event key is new to us: fetch the event JWKS once more.
                    *keys = event_keys(&sub.base).await?;
                    secevent::verify(&data, &*keys)
                }
                other => other,
            };
            match claims.map(|c| c.event()) {
                Ok(Some(event)) => set.apply(&event),
                Ok(None) => {}
                Err(e) => {
                    set.refused_sets.fetch_add(1, Ordering::Relaxed);
                    set.set_error(e.to_string());
                    continue;
                }
            }
            if let Some(id) = id {
                *set.last_event_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
                // After applying: an acknowledgement says the receiver acted. Sent by
                // the acknowledging task, so a slow one never delays the next event.
                if let Some(acks) = acks {
                    acks.send_replace(Some(id));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bonafide_core::ids::IssuerId;

    fn claims(iss: &str, policy_id: Option<&str>) -> AgentClaims {
        let mut v = serde_json::json!({
            "iss": iss, "sub": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "iat": 1, "exp": 2,
            "jti": "tok_bbbbbbbbbbbbbbbbbbbbbbbbbb",
            "agent": {"name": "Bot", "issuer": "acme.example", "scopes": ["payments.send"]},
        });
        if let Some(id) = policy_id {
            v["policy"] = serde_json::json!({"version": "pol.v0.2", "id": id});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_revoked_policy_refuses_the_issuers_tokens_carrying_it_only() {
        let issuer = IssuerId::from_random([1; 16]);
        let other = IssuerId::from_random([2; 16]);
        let set = RevokedSet::new();
        set.apply(&Event::TokenRevoked(
            bonafide_core::token::policy_revocation_id(&issuer, "pol_1").to_string(),
        ));
        assert_eq!(
            set.refusal(&claims(issuer.as_str(), Some("pol_1"))),
            Some(TokenError::Revoked(Revoked::Policy))
        );
        // Another policy of the issuer, the same id of another issuer, no policy.
        assert_eq!(set.refusal(&claims(issuer.as_str(), Some("pol_2"))), None);
        assert_eq!(set.refusal(&claims(other.as_str(), Some("pol_1"))), None);
        assert_eq!(set.refusal(&claims(issuer.as_str(), None)), None);
    }
}
