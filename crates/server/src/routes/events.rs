//! Push events (issue 19 item 4): `GET /v1/events` (Server-Sent Events, or one JSON
//! page without `Accept: text/event-stream`), acknowledgements, webhooks, and the
//! Shared Signals Framework transmitter metadata. The events themselves are
//! [`crate::events`]'s.
//!
//! Receivers subscribe with their receiver key to the events of issuers or agents
//! they name (`issuer=…`, `agent=…`, each repeatable, at least one; the registry's
//! own key changes always come). Event ids are change-feed positions, the same on
//! every replica: `Last-Event-ID` (or `after`) resumes anywhere.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bonafide_core::ids::{AgentId, IssuerId, ReceiverId};
use bonafide_store::{ChangePosition, EventAck, Webhook};
use futures_util::stream::{self, Stream};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::events::{self, Filter, PushEvent};
use crate::state::AppState;
use crate::time::rfc3339_ms;

/// How often an idle stream sends a comment, so proxies and clients see it alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most webhooks one receiver may have.
pub const MAX_WEBHOOKS: usize = 10;
/// Longest webhook URL.
const MAX_URL_BYTES: usize = 2048;

/// The receiver a key belongs to, or the refusal for any other caller.
fn receiver_of(caller: &Caller) -> Result<ReceiverId, ApiError> {
    match caller {
        Caller::Receiver(id) => ReceiverId::try_from(id.as_str())
            .map_err(|e| ApiError::internal(format!("receiver key owner: {e}"))),
        Caller::Anonymous => Err(ApiError::unauthorized(
            "this endpoint needs a receiver API key in `Authorization: Bearer …` or `X-API-Key`",
        )),
        _ => Err(ApiError::forbidden(
            "this endpoint needs a receiver API key",
        )),
    }
}

/// An event id as a receiver sends it back: a feed position.
fn parse_event_id(text: &str, what: &str) -> Result<ChangePosition, ApiError> {
    text.trim()
        .parse::<u64>()
        .map(ChangePosition::new)
        .map_err(|_| {
            ApiError::bad_request(format!(
                "`{what}` must be an event id (a number) this registry sent"
            ))
        })
}

/// The filter of a subscription's query: `issuer` and `agent`, each repeatable, and
/// `after` (an event id); anything else is refused.
fn parse_query(pairs: &[(String, String)]) -> Result<(Filter, Option<ChangePosition>), ApiError> {
    let mut filter = Filter::default();
    let mut after = None;
    for (name, value) in pairs {
        match name.as_str() {
            "issuer" => filter.issuers.push(
                IssuerId::try_from(value.as_str())
                    .map_err(|e| ApiError::bad_request(format!("`issuer`: {e}")))?,
            ),
            "agent" => filter.agents.push(
                AgentId::try_from(value.as_str())
                    .map_err(|e| ApiError::bad_request(format!("`agent`: {e}")))?,
            ),
            "after" => after = Some(parse_event_id(value, "after")?),
            other => {
                let shown: String = other.chars().take(32).collect();
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{shown}`: a subscription takes `issuer`, `agent` (each repeatable) and `after`"
                )));
            }
        }
    }
    filter.check().map_err(ApiError::invalid)?;
    Ok((filter, after))
}

/// `GET /v1/events` query (documentation; the handler reads the pairs itself, since
/// `issuer` and `agent` repeat).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventsQuery {
    /// An issuer id to follow (repeatable).
    issuer: Option<String>,
    /// An agent id to follow (repeatable).
    agent: Option<String>,
    /// Resume after this event id (as `Last-Event-ID`, which wins when both are sent).
    after: Option<String>,
}

/// One event in a JSON page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventItem {
    /// The event id (a change-feed position; the same on every replica).
    pub id: String,
    /// `token.revoked`, `agent.revoked`, `agent.suspended`, `agent.reactivated`,
    /// `keys.changed`.
    pub event: String,
    /// The Security Event Token (`typ secevent+jwt`), verifiable with
    /// `/.well-known/event-jwks.json`.
    pub set: String,
}

/// A page of events (`GET /v1/events` without `Accept: text/event-stream`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events after `after` that the filter follows, oldest first.
    pub events: Vec<EventItem>,
    /// Pass as `after` next time.
    pub next: String,
}

/// Events about the tokens and agents of the issuers and agents named: a stream of
/// Server-Sent Events (`Accept: text/event-stream`; `id` the event id, `event` its
/// name, `data` the SET) that resumes after `Last-Event-ID`, or else one JSON page.
#[utoipa::path(get, path = "/v1/events", tag = "receiver", params(EventsQuery), security(("api_key" = [])),
    responses((status = 200, description = "Server-Sent Events (`text/event-stream`), or a JSON page", body = EventPage),
              (status = 400, description = "an unknown parameter, an id that is not one, or an event id that is not a number (`BAD_REQUEST`)"),
              (status = 401), (status = 403, description = "not a receiver key (`FORBIDDEN`)"),
              (status = 422, description = "no `issuer` or `agent` named, or more than 100 of either (`INVALID_REQUEST`)"),
              (status = 429, description = "the receiver holds `max_event_streams_per_receiver` (default 8) streams open on this replica already (`RATE_LIMITED`)")))]
pub async fn stream_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let receiver = receiver_of(&caller)?;
    let (filter, after) = parse_query(&pairs)?;
    let last_event_id = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("`Last-Event-ID` must be an event id"))
                .and_then(|t| parse_event_id(t, "Last-Event-ID"))
        })
        .transpose()?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let from = last_event_id.or(after);
    if !wants_stream {
        let after = from.unwrap_or(ChangePosition::START);
        let (found, next) = events::events_after(&state, after, &filter).await?;
        let events = found
            .iter()
            .map(|e| EventItem {
                id: e.pos.to_string(),
                event: e.name.to_owned(),
                set: e.set.clone(),
            })
            .collect();
        return Ok(ApiJson(EventPage {
            events,
            next: next.to_string(),
        })
        .into_response());
    }
    let max = state.config.max_event_streams_per_receiver;
    let slot = state.events.open_stream(&receiver, max).ok_or_else(|| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            crate::error::ErrorCode::RateLimited,
            format!(
                "this receiver has {max} event streams open already (the most one receiver may hold): close one, or follow several issuers and agents in one stream"
            ),
        )
    })?;
    // A new subscriber starts at what is published now.
    let pos = from.unwrap_or_else(|| state.events.head());
    let sub = Subscription {
        _slot: slot,
        head: state.events.watch_head(),
        closing: state.events.watch_closing(),
        state,
        filter,
        pos,
        pending: VecDeque::new(),
    };
    Ok(Sse::new(subscription_stream(sub))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

struct Subscription {
    /// Counts the stream against its receiver's cap while it lives.
    _slot: events::StreamSlot,
    state: Arc<AppState>,
    filter: Filter,
    pos: ChangePosition,
    pending: VecDeque<Arc<PushEvent>>,
    head: watch::Receiver<ChangePosition>,
    closing: watch::Receiver<bool>,
}

fn subscription_stream(sub: Subscription) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(sub, |mut sub| async move {
        loop {
            if let Some(e) = sub.pending.pop_front() {
                let event = SseEvent::default()
                    .id(e.pos.to_string())
                    .event(e.name)
                    .data(e.set.as_str());
                return Some((Ok(event), sub));
            }
            if *sub.closing.borrow() {
                return None;
            }
            // Marked before reading, so a publication during the read wakes the wait.
            sub.head.borrow_and_update();
            match events::events_after(&sub.state, sub.pos, &sub.filter).await {
                Ok((found, next)) => {
                    let moved = next > sub.pos;
                    sub.pos = next.max(sub.pos);
                    sub.pending.extend(found);
                    if !sub.pending.is_empty() || moved {
                        continue;
                    }
                }
                Err(e) => {
                    // The client reconnects with its Last-Event-ID and misses nothing.
                    tracing::warn!(error = %e, "an event stream could not read; closing it");
                    return None;
                }
            }
            tokio::select! {
                changed = sub.head.changed() => if changed.is_err() { return None },
                _ = sub.closing.changed() => {}
            }
        }
    })
}

/// `POST /v1/events/ack` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The id of the last event received and acted on: it and every earlier one the
    /// stream follows are acknowledged.
    pub last_event_id: String,
    /// The issuers the acknowledging stream follows (as subscribed): the
    /// acknowledgement covers only the events its stream follows.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub issuers: Vec<IssuerId>,
    /// The agents the acknowledging stream follows (as subscribed).
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<AgentId>,
}

/// One acknowledgement.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AckView {
    /// The receiver.
    pub receiver_id: String,
    /// Every event up to this id is acknowledged.
    pub last_event_id: String,
    /// When the registry recorded it (RFC 3339).
    pub acked_at: String,
    /// `sse` (this endpoint) or the webhook whose target answered 2xx.
    pub via: String,
    /// What the acknowledging stream or webhook follows: the events it covers.
    /// Absent for acknowledgements recorded before filters were (they cover none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<Filter>,
}

impl From<&EventAck> for AckView {
    fn from(a: &EventAck) -> Self {
        AckView {
            receiver_id: a.receiver_id.to_string(),
            last_event_id: a.upto.to_string(),
            acked_at: rfc3339_ms(a.acked_at_ms),
            via: a.via.clone(),
            follows: stored_filter(a),
        }
    }
}

/// An acknowledgement's filter, if it has one that parses (the server wrote it).
fn stored_filter(a: &EventAck) -> Option<Filter> {
    a.filter
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok())
}

/// A filter in one stored form whatever the order its ids were named in, so the
/// same stream's acknowledgements are recognised as one stream's.
fn normalised(mut filter: Filter) -> Filter {
    filter.issuers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    filter.issuers.dedup();
    filter.agents.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    filter.agents.dedup();
    filter
}

/// Most streams' first acknowledgements of an event read to find those that cover it.
const ACKS_SCANNED: u32 = 1000;

/// How long an acknowledgement of an event this replica has not read yet waits for it.
const ACK_WAIT: Duration = Duration::from_secs(2);

/// Records that the caller (a receiver) received and acted on every event up to
/// `last_event_id` that its stream (`issuers`, `agents`, as subscribed) follows, with
/// an `event.acknowledged` audit entry, so "revoked at T, acknowledged by R at T+Δ"
/// can be proven later from the log.
#[utoipa::path(post, path = "/v1/events/ack", tag = "receiver", request_body = AckRequest, security(("api_key" = [])),
    responses((status = 200, description = "recorded (or already acknowledged as far)", body = AckView),
              (status = 403, description = "not a receiver key (`FORBIDDEN`)"),
              (status = 422, description = "an event id that is not a number or that the registry has not sent, or no stream filter (`issuers`/`agents`) named (`INVALID_REQUEST`)")))]
pub async fn ack(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<AckRequest>,
) -> Result<ApiJson<AckView>, ApiError> {
    let receiver = receiver_of(&caller)?;
    let upto = body
        .last_event_id
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(ChangePosition::new)
        .ok_or_else(|| {
            ApiError::invalid("`last_event_id` must be an event id this registry sent")
        })?;
    let filter = normalised(Filter {
        issuers: body.issuers,
        agents: body.agents,
    });
    filter.check().map_err(|e| {
        ApiError::invalid(format!(
            "the acknowledging stream's filter, as subscribed (`issuers`, `agents`): {e}"
        ))
    })?;
    let filter_json = serde_json::to_string(&filter)
        .map_err(|e| ApiError::internal(format!("ack filter: {e}")))?;
    // Another replica may have sent it a moment before this one read it.
    let mut head = state.events.watch_head();
    // (The guard `wait_for` returns is dropped within the statement: not held across
    // the store write.)
    let reached = matches!(
        tokio::time::timeout(ACK_WAIT, head.wait_for(|h| *h >= upto)).await,
        Ok(Ok(_))
    );
    if !reached {
        return Err(ApiError::invalid(
            "`last_event_id` names an event the registry has not sent",
        ));
    }
    let now = state.now_ms();
    let audit = events::ack_audit(&receiver, "sse", upto, &filter_json, now)
        .map_err(|e| ApiError::internal(format!("auditing an acknowledgement: {e}")))?;
    let ack = EventAck {
        receiver_id: receiver,
        upto,
        acked_at_ms: now,
        via: "sse".into(),
        filter: Some(filter_json),
    };
    state.store.record_event_ack(&ack, &audit).await?;
    Ok(ApiJson(AckView::from(&ack)))
}

/// `GET /v1/events/acks` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AcksQuery {
    /// The receiver (admin keys only; a receiver key reads its own).
    pub receiver: Option<String>,
    /// Only the acknowledgements covering this event id: the first of each stream or
    /// webhook whose filter follows the event, earliest first (the first is when the
    /// receiver first acknowledged it).
    pub event: Option<String>,
}

/// Acknowledgements.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AckList {
    /// Latest first, or, with `event`, earliest first (at most 100).
    pub acks: Vec<AckView>,
}

/// A receiver's acknowledgements: its own (receiver key), or any receiver's (admin).
#[utoipa::path(get, path = "/v1/events/acks", tag = "receiver", params(AcksQuery), security(("api_key" = [])),
    responses((status = 200, body = AckList),
              (status = 400, description = "an unknown parameter, or an event id that is not a number (`BAD_REQUEST`)"),
              (status = 403, description = "an issuer key, or a receiver key naming another receiver (`FORBIDDEN`)"),
              (status = 404, description = "`event` names no event (`NOT_FOUND`)"),
              (status = 422, description = "an admin key without `receiver`, or a `receiver` that is not a receiver id (`INVALID_REQUEST`)")))]
pub async fn acks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AcksQuery>,
) -> Result<ApiJson<AckList>, ApiError> {
    let named = q
        .receiver
        .as_deref()
        .map(|r| ReceiverId::try_from(r).map_err(|e| ApiError::invalid(format!("`receiver`: {e}"))))
        .transpose()?;
    let receiver = match (&caller, named) {
        (Caller::Admin, Some(r)) => r,
        (Caller::Admin, None) => return Err(ApiError::invalid("name the `receiver`")),
        (Caller::Receiver(_), named) => {
            let own = receiver_of(&caller)?;
            if named.is_some_and(|n| n != own) {
                return Err(ApiError::forbidden(
                    "a receiver reads only its own acknowledgements",
                ));
            }
            own
        }
        _ => {
            return Err(receiver_of(&caller)
                .err()
                .unwrap_or_else(|| ApiError::forbidden("a receiver or admin key is needed")));
        }
    };
    let covering = q
        .event
        .as_deref()
        .map(|e| parse_event_id(e, "event"))
        .transpose()?;
    let Some(event) = covering else {
        let found = state.store.event_acks(&receiver, None, 100).await?;
        return Ok(ApiJson(AckList {
            acks: found.iter().map(AckView::from).collect(),
        }));
    };
    let (issuer, agent, everyone) = events::concerns(&state, event)
        .await?
        .ok_or_else(|| ApiError::not_found("event"))?;
    // The first reaching the event of each stream or webhook (few per receiver), of
    // which only those whose filter follows it acknowledged it.
    let found = state
        .store
        .event_acks(&receiver, Some(event), ACKS_SCANNED)
        .await?;
    Ok(ApiJson(AckList {
        acks: found
            .iter()
            .filter(|a| {
                stored_filter(a)
                    .is_some_and(|f| f.follows(issuer.as_ref(), agent.as_ref(), everyone))
            })
            .take(100)
            .map(AckView::from)
            .collect(),
    }))
}

/// `POST /v1/webhooks` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where events are POSTed: https, to a public address.
    pub url: String,
    /// Issuer ids to follow.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub issuers: Vec<IssuerId>,
    /// Agent ids to follow.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub agents: Vec<AgentId>,
}

/// A webhook and how its delivery stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// `whk_…`.
    pub id: String,
    /// The target.
    pub url: String,
    /// What it follows.
    pub filter: Filter,
    /// `active` or `paused`.
    pub state: String,
    /// The last event its target acknowledged (2xx).
    pub delivered_event_id: String,
    /// Failed deliveries in a row.
    pub failures: u32,
    /// The last failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Why it was paused (it kept failing); resume it with `POST …/resume`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// When it was paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<String>,
    /// When it was created.
    pub created_at: String,
}

fn view(w: &Webhook) -> WebhookView {
    WebhookView {
        id: w.id.clone(),
        url: w.url.clone(),
        filter: serde_json::from_str(&w.filter).unwrap_or_default(),
        state: if w.paused.is_some() {
            "paused"
        } else {
            "active"
        }
        .into(),
        delivered_event_id: w.delivered.to_string(),
        failures: w.failures,
        last_error: w.last_error.clone(),
        paused_reason: w.paused.as_ref().map(|p| p.reason.clone()),
        paused_at: w.paused.as_ref().map(|p| rfc3339_ms(p.at_ms)),
        created_at: rfc3339_ms(w.created_at_ms),
    }
}

/// Creates a webhook: events its filter follows, from now on, are POSTed to `url`
/// as signed SETs (RFC 8935 push; RFC 9421 signature by the event key).
#[utoipa::path(post, path = "/v1/webhooks", tag = "receiver", request_body = CreateWebhook, security(("api_key" = [])),
    responses((status = 201, body = WebhookView),
              (status = 403, description = "not a receiver key (`FORBIDDEN`)"),
              (status = 409, description = "the receiver has 10 webhooks already (`CONFLICT`)"),
              (status = 422, description = "no issuer or agent named, or a URL that is not https, not on port 443, not public, or not a URL (`INVALID_REQUEST`)")))]
pub async fn create_webhook(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, ApiJson<WebhookView>), ApiError> {
    let receiver = receiver_of(&caller)?;
    let filter = Filter {
        issuers: body.issuers,
        agents: body.agents,
    };
    filter.check().map_err(ApiError::invalid)?;
    if body.url.len() > MAX_URL_BYTES {
        return Err(ApiError::invalid(format!(
            "`url` is longer than {MAX_URL_BYTES} bytes"
        )));
    }
    events::webhooks::check_url(&state, &body.url)
        .await
        .map_err(|e| ApiError::invalid(format!("`url` refused: {e}")))?;
    if state.store.webhooks(Some(&receiver)).await?.len() >= MAX_WEBHOOKS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            crate::error::ErrorCode::Conflict,
            format!("a receiver has at most {MAX_WEBHOOKS} webhooks: delete one first"),
        ));
    }
    let now = state.now_ms();
    let hook = Webhook {
        id: format!("whk_{}", bonafide_core::b64::encode(&super::random16()?)),
        receiver_id: receiver,
        url: body.url,
        filter: serde_json::to_string(&filter)
            .map_err(|e| ApiError::internal(format!("webhook filter: {e}")))?,
        created_at_ms: now,
        delivered: state.events.head(),
        failures: 0,
        next_attempt_ms: now,
        last_error: None,
        paused: None,
    };
    state.store.create_webhook(&hook).await?;
    Ok((StatusCode::CREATED, ApiJson(view(&hook))))
}

/// The caller's webhooks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub webhooks: Vec<WebhookView>,
}

/// The caller's webhooks with their state, last error and why any is paused.
#[utoipa::path(get, path = "/v1/webhooks", tag = "receiver", security(("api_key" = [])),
    responses((status = 200, body = WebhookList),
              (status = 403, description = "not a receiver key (`FORBIDDEN`)")))]
pub async fn list_webhooks(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<ApiJson<WebhookList>, ApiError> {
    let receiver = receiver_of(&caller)?;
    let hooks = state.store.webhooks(Some(&receiver)).await?;
    Ok(ApiJson(WebhookList {
        webhooks: hooks.iter().map(view).collect(),
    }))
}

/// A webhook id as given in a path: only the shape ids have (anything else is simply
/// not found).
fn webhook_id(id: &str) -> Result<&str, ApiError> {
    if id.len() <= 64 && id.starts_with("whk_") {
        Ok(id)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// Deletes one of the caller's webhooks (another receiver's is not found).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "receiver", params(("id" = String, Path)), security(("api_key" = [])),
    responses((status = 204, description = "deleted"),
              (status = 403, description = "not a receiver key (`FORBIDDEN`)"),
              (status = 404, description = "no such webhook of the caller (`NOT_FOUND`)")))]
pub async fn delete_webhook(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let receiver = receiver_of(&caller)?;
    if state
        .store
        .delete_webhook(&receiver, webhook_id(&id)?)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("webhook"))
    }
}

/// Resumes a paused webhook: delivery starts again at once, from the last event its
/// target acknowledged.
#[utoipa::path(post, path = "/v1/webhooks/{id}/resume", tag = "receiver", params(("id" = String, Path)), security(("api_key" = [])),
    responses((status = 200, body = WebhookView),
              (status = 403, description = "not a receiver key (`FORBIDDEN`)"),
              (status = 404, description = "no such webhook of the caller (`NOT_FOUND`)")))]
pub async fn resume_webhook(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<WebhookView>, ApiError> {
    let receiver = receiver_of(&caller)?;
    let id = webhook_id(&id)?;
    if !state
        .store
        .resume_webhook(&receiver, id, state.now_ms())
        .await?
    {
        return Err(ApiError::not_found("webhook"));
    }
    let hooks = state.store.webhooks(Some(&receiver)).await?;
    let hook = hooks
        .iter()
        .find(|h| h.id == id)
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(ApiJson(view(hook)))
}

/// Shared Signals Framework transmitter metadata: the issuer, the event JWKS and the
/// delivery methods (RFC 8935 push to webhooks; Bonafide's SSE stream and JSON pages
/// at `events_endpoint`). Stream management is Bonafide's own (`/v1/webhooks`), not
/// SSF's configuration endpoint.
#[utoipa::path(get, path = "/.well-known/ssf-configuration", tag = "discovery",
    responses((status = 200, description = "SSF transmitter configuration metadata", content_type = "application/json")))]
pub async fn ssf_configuration(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let base = &state.config.public_url;
    ApiJson(json!({
        "spec_version": "1_0",
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/event-jwks.json"),
        "delivery_methods_supported": ["urn:ietf:rfc:8935"],
        "authorization_schemes": [{"spec_urn": "urn:ietf:rfc:6750"}],
        "events_endpoint": format!("{base}/v1/events"),
        "webhooks_endpoint": format!("{base}/v1/webhooks"),
        "ack_endpoint": format!("{base}/v1/events/ack"),
        "events_supported": [
            bonafide_core::secevent::SESSION_REVOKED,
            bonafide_core::secevent::ACCOUNT_PURGED,
            bonafide_core::secevent::ACCOUNT_DISABLED,
            bonafide_core::secevent::ACCOUNT_ENABLED,
            bonafide_core::secevent::CREDENTIAL_CHANGE,
        ],
    }))
}
