//! Webhook delivery (RFC 8935 push): each event a webhook's filter follows is POSTed
//! to its URL as `application/secevent+jwt`, one SET per request, in order, signed
//! per RFC 9421 with the event key (`@method`, `@target-uri`, `content-type` and an
//! RFC 9530 `content-digest`; `keyid` the key's thumbprint, `tag` [`SIGNATURE_TAG`]).
//!
//! The URL is called through [`crate::fetch::post`], under the domain fetch's rules
//! (https, every resolved address public, pinned, no redirects, bounded), checked
//! again at every delivery. A 2xx is the target's acknowledgement: the store records
//! it ([`bonafide_store::Store::webhook_delivered`]) and delivery goes on. Anything
//! else is a failure: the next attempt waits [`Config::webhook_retry_base`] × 2^(n−1)
//! (at most an hour), and after [`Config::webhook_max_failures`] failures in a row the
//! webhook is paused with the reason, which its receiver reads in `GET /v1/webhooks`
//! until it resumes it.
//!
//! Only one process delivers when replicas share a database: the one that holds
//! [`bonafide_store::Store::checkpoint_leader`] (the checkpoint signer's lock), so a
//! target never gets the same event from two replicas at once. A leader that dies
//! mid-delivery may leave one event delivered but not recorded: it is sent again
//! (at-least-once; the SET's `jti` tells a repeat).
//!
//! [`Config::webhook_retry_base`]: crate::Config::webhook_retry_base
//! [`Config::webhook_max_failures`]: crate::Config::webhook_max_failures

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bonafide_core::httpsig::{self, Message, SignParams};
use bonafide_store::{ChangePosition, Paused, StoreError, Webhook, WebhookFailure};
use tokio::task::JoinSet;

use super::{Filter, events_after};
use crate::fetch::{self, FetchLimits};
use crate::state::AppState;

/// The `tag` of a delivery's message signature.
pub const SIGNATURE_TAG: &str = "bonafide-event";
/// The media type of a pushed SET (RFC 8935 §2).
pub const SET_MEDIA_TYPE: &str = "application/secevent+jwt";
/// The components a delivery's signature covers.
pub const COVERED: &[&str] = &["@method", "@target-uri", "content-type", "content-digest"];
/// How long a delivery's signature is valid, seconds.
const SIGNATURE_TTL_S: i64 = 300;
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How often due retries are looked for when no event arrives.
const TICK: Duration = Duration::from_millis(250);

/// The delivery task: runs for the process's life.
pub async fn run(state: Arc<AppState>) {
    let mut head = state.events.watch_head();
    // How far each webhook's events were looked through without finding one its
    // filter follows (kept in memory: a store row per unrelated event is not worth it).
    let mut scanned: HashMap<String, ChangePosition> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut deliveries: JoinSet<(String, ChangePosition)> = JoinSet::new();
    loop {
        tokio::select! {
            _ = head.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
            Some(done) = deliveries.join_next() => {
                if let Ok((id, upto)) = done {
                    busy.remove(&id);
                    scanned.insert(id, upto);
                }
                continue;
            }
        }
        if !matches!(state.store.checkpoint_leader().await, Ok(true)) {
            continue;
        }
        let hooks = match state.store.webhooks(None).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "could not read webhooks; retrying");
                continue;
            }
        };
        let now = state.now_ms();
        let published = state.events.head();
        let live: HashSet<&str> = hooks.iter().map(|h| h.id.as_str()).collect();
        scanned.retain(|id, _| live.contains(id.as_str()));
        for hook in hooks {
            if hook.paused.is_some() || hook.next_attempt_ms > now || busy.contains(&hook.id) {
                continue;
            }
            let from = scanned
                .get(&hook.id)
                .copied()
                .unwrap_or_default()
                .max(hook.delivered);
            if from >= published {
                continue;
            }
            busy.insert(hook.id.clone());
            let state = Arc::clone(&state);
            deliveries.spawn(async move {
                let id = hook.id.clone();
                let upto = deliver(&state, hook, from).await;
                (id, upto)
            });
        }
    }
}

/// Delivers `hook`'s events after `from` until one fails or none is left; how far
/// its events were looked through.
async fn deliver(state: &AppState, hook: Webhook, from: ChangePosition) -> ChangePosition {
    let filter: Filter = match serde_json::from_str(&hook.filter) {
        Ok(f) => f,
        Err(e) => {
            // Edited behind the server's back: paused, with the reason, not retried.
            tracing::warn!(webhook = %hook.id, error = %e, "a stored webhook filter does not parse");
            let max = state.config.webhook_max_failures.max(1);
            failed(
                state,
                &hook.id,
                "its stored filter does not parse".into(),
                max,
            )
            .await;
            return from;
        }
    };
    let mut pos = from;
    let mut failures = hook.failures;
    loop {
        let (events, next) = match events_after(state, pos, &filter).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(webhook = %hook.id, error = %e, "could not read events to deliver");
                return pos;
            }
        };
        for event in &events {
            match post(state, &hook.url, &event.set, event.pos).await {
                Ok(()) => {
                    let now = state.now_ms();
                    let audit = match super::ack_audit(
                        &hook.receiver_id,
                        &hook.id,
                        event.pos,
                        &hook.filter,
                        now,
                    ) {
                        Ok(a) => a,
                        Err(e) => {
                            let e = StoreError::Backend(format!("auditing a delivery: {e}"));
                            log_store(&hook.id, &e);
                            return pos;
                        }
                    };
                    if let Err(e) = state
                        .store
                        .webhook_delivered(&hook.id, event.pos, now, &audit)
                        .await
                    {
                        log_store(&hook.id, &e);
                        return pos;
                    }
                    failures = 0;
                    pos = event.pos;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    failed(state, &hook.id, error, failures).await;
                    return pos;
                }
            }
        }
        if next <= pos {
            return pos;
        }
        pos = next;
    }
}

/// Records a failure: the backoff, and the pause once there were too many.
async fn failed(state: &AppState, id: &str, error: String, failures: u32) {
    let now = state.now_ms();
    let max = state.config.webhook_max_failures.max(1);
    let backoff = state
        .config
        .webhook_retry_base
        .saturating_mul(1u32 << failures.saturating_sub(1).min(20))
        .min(MAX_BACKOFF);
    let pause = (failures >= max).then(|| Paused {
        at_ms: now,
        reason: format!("{failures} deliveries in a row failed; the last: {error}"),
    });
    tracing::info!(webhook = %id, failures, paused = pause.is_some(), error = %error, "webhook delivery failed");
    let failure = WebhookFailure {
        error,
        failures,
        next_attempt_ms: now.saturating_add(i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX)),
        pause,
    };
    if let Err(e) = state.store.webhook_failed(id, &failure).await {
        log_store(id, &e);
    }
}

fn log_store(id: &str, e: &StoreError) {
    tracing::warn!(webhook = %id, error = %e, "could not record a webhook delivery");
}

/// One signed POST of `set`; `Err` says why it is not acknowledged.
async fn post(state: &AppState, url: &str, set: &str, pos: ChangePosition) -> Result<(), String> {
    let body = set.as_bytes().to_vec();
    let mut headers = vec![
        ("content-type".to_owned(), SET_MEDIA_TYPE.to_owned()),
        ("content-digest".to_owned(), httpsig::content_digest(&body)),
    ];
    let now_s = state.now_ms() / 1000;
    let nonce = format!("evt-{pos}");
    let signed = httpsig::sign(
        state.events.key(),
        &Message::Request {
            method: "POST",
            url,
            headers: &headers,
        },
        COVERED,
        &SignParams {
            label: "sig1",
            created: now_s,
            expires: Some(now_s + SIGNATURE_TTL_S),
            keyid: None,
            nonce: Some(&nonce),
            tag: Some(SIGNATURE_TAG),
            include_alg: true,
        },
    )
    .map_err(|e| format!("could not sign the delivery: {e}"))?;
    headers.push(("signature-input".to_owned(), signed.signature_input));
    headers.push(("signature".to_owned(), signed.signature));
    headers.push(("accept".to_owned(), "application/json".to_owned()));
    let limits = limits(state);
    check_port(url, &limits).map_err(|e| e.to_string())?;
    match fetch::post(url, &headers, body, &limits).await {
        Ok(status) if (200..300).contains(&status) => Ok(()),
        Ok(status) => Err(format!("the target answered {status}")),
        Err(e) => Err(e.to_string()),
    }
}

/// The bounds of a delivery (the domain fetch's, with its test-only switch).
pub fn limits(state: &AppState) -> FetchLimits {
    FetchLimits {
        timeout: state.config.jwks_fetch_timeout,
        allow_insecure_loopback: state.config.allow_insecure_loopback_fetch,
        max_bytes: 64 * 1024,
        ..FetchLimits::default()
    }
}

/// Why a webhook URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Not https's port: a receiver's webhook is a web server, and no other service
    /// the registry can reach (mail, databases, admin ports of public hosts) may be
    /// made to take its POSTs.
    #[error("webhooks are delivered to port 443 (https) only, not {0}")]
    Port(u16),
    /// The fetch rules (https, a public address).
    #[error(transparent)]
    Fetch(#[from] fetch::FetchError),
}

/// Checks a webhook URL now (refused at creation when not https on port 443 or not
/// public); it is checked again at every delivery.
pub async fn check_url(state: &AppState, url: &str) -> Result<(), UrlError> {
    let limits = limits(state);
    check_port(url, &limits)?;
    Ok(fetch::check_url(url, &limits).await?)
}

/// Port 443 only (stated or https's default). The test-only loopback switch, which
/// lets tests reach their own targets, also lets them use any loopback port; it
/// never opens another port on another host.
fn check_port(url: &str, limits: &fetch::FetchLimits) -> Result<(), UrlError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| fetch::FetchError::BadUrl(url.chars().take(64).collect()))?;
    match parsed.port_or_known_default() {
        Some(443) if parsed.scheme() == "https" => Ok(()),
        _ if limits.allow_insecure_loopback && fetch::loopback_host(&parsed) => Ok(()),
        Some(port) if parsed.scheme() == "https" => Err(UrlError::Port(port)),
        // Another scheme: what the fetch rules say of it (https only).
        _ => Err(fetch::FetchError::Scheme(parsed.scheme().chars().take(16).collect()).into()),
    }
}
