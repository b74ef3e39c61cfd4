//! What push events (issue 19 item 4) store: receivers' webhooks and their
//! acknowledgements. The events themselves are change-feed rows
//! ([`crate::Store::changes_since`]); an event's id is its feed position.

use bonafide_core::ids::ReceiverId;

use crate::ChangePosition;

/// A receiver's webhook: where its events are POSTed, which ones, and how delivery
/// stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// `whk_…`, made by the server.
    pub id: String,
    /// The receiver that owns it.
    pub receiver_id: ReceiverId,
    /// The target URL (checked by the server when created, and at every delivery).
    pub url: String,
    /// Which events, as JSON the server wrote (opaque to the store).
    pub filter: String,
    /// When it was created.
    pub created_at_ms: i64,
    /// The last event its target acknowledged (2xx); delivery resumes after it.
    pub delivered: ChangePosition,
    /// Failed attempts since the last acknowledgement.
    pub failures: u32,
    /// No attempt before this time (backoff after a failure).
    pub next_attempt_ms: i64,
    /// The last failure, as the receiver's admins may read it.
    pub last_error: Option<String>,
    /// Paused (it kept failing): when, and why. Nothing is sent until resumed.
    pub paused: Option<Paused>,
}

/// Why and when a webhook was paused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// When.
    pub at_ms: i64,
    /// Why, as the receiver's admins read it.
    pub reason: String,
}

/// A failed delivery attempt ([`crate::Store::webhook_failed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookFailure {
    /// What went wrong (shown to the receiver).
    pub error: String,
    /// Failed attempts since the last acknowledgement, this one included.
    pub failures: u32,
    /// The next attempt, not before.
    pub next_attempt_ms: i64,
    /// Set when this failure pauses the webhook.
    pub pause: Option<Paused>,
}

/// One acknowledgement: the receiver acknowledged every event up to `upto`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventAck {
    /// Who.
    pub receiver_id: ReceiverId,
    /// Every event up to this position.
    pub upto: ChangePosition,
    /// When the registry recorded it.
    pub acked_at_ms: i64,
    /// How: `sse` (`POST /v1/events/ack`) or the webhook's id (its target's 2xx).
    pub via: String,
    /// What the acknowledging stream or webhook followed, as JSON the server wrote
    /// (opaque to the store): the acknowledgement covers only the events it follows.
    /// `None` for acknowledgements recorded before filters were (they cover nothing).
    pub filter: Option<String>,
}
