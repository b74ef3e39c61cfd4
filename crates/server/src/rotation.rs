//! Scheduled rotation of the registry's signing key (issue 18 item 7, `serve
//! --signing-key-lifetime 90d`).
//!
//! A key signs for its lifetime. Ahead of its end the next key is stored as `next`:
//! published in the JWKS at once (every replica within `key_refresh`), signing
//! nothing. The rotation itself waits until the next key has been published for at
//! least the JWKS cache lifetime (300 s, the `max-age` receivers cache it for) plus
//! `key_refresh`, so no receiver holding a cached key set meets a token signed by a
//! key it does not know. The old key stays in the JWKS until the last token it signed
//! expires (as after a manual rotation). Only the process holding the checkpoint
//! signer's lease (`Store::checkpoint_leader`) acts, and the store makes each step
//! happen once even so (one `next` key at most; activating a kid that is no longer
//! the next key changes nothing). Each step is an audit entry: `key.added` (the next
//! key published) and `key.rotated` (it signs from now on), with the registry as
//! actor.

use std::sync::Arc;
use std::time::Duration;

use bonafide_core::audit::{Actor, AuditEntry, EventType};

use crate::error::ApiError;
use crate::state::{AppState, new_key_record};
use crate::time::{human_duration, rfc3339_ms};
use crate::write::{Change, Part};

/// How long receivers may cache the JWKS (`Cache-Control: max-age`), seconds.
pub const PUBLISH_AHEAD_S: u64 = 300;

/// Shortest `--signing-key-lifetime`.
pub const MIN_LIFETIME: Duration = Duration::from_secs(3600);

/// How long before it signs the next key is published: the JWKS cache lifetime, plus
/// the longest another replica takes to serve it (`key_refresh`).
pub fn publish_ahead(key_refresh: Duration) -> Duration {
    Duration::from_secs(PUBLISH_AHEAD_S) + key_refresh
}

/// Shortest lifetime accepted: an hour, and at least twice the publication lead.
pub fn min_lifetime(key_refresh: Duration) -> Duration {
    MIN_LIFETIME.max(publish_ahead(key_refresh) * 2)
}

/// What the schedule asks for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing yet.
    Wait,
    /// Publish a next key.
    Publish,
    /// Make the next key (this kid) the signing key.
    Activate(String),
}

/// The schedule, purely: the active key was stored at `active_ms`, the next key (if
/// any) at `next`'s time; `ahead_ms` is [`publish_ahead`].
pub fn step(
    active_ms: i64,
    next: Option<(&str, i64)>,
    now_ms: i64,
    lifetime_ms: i64,
    ahead_ms: i64,
) -> Step {
    let due = active_ms.saturating_add(lifetime_ms);
    match next {
        None if now_ms >= due.saturating_sub(ahead_ms) => Step::Publish,
        None => Step::Wait,
        Some((kid, published)) if now_ms >= due && now_ms >= published.saturating_add(ahead_ms) => {
            Step::Activate(kid.to_owned())
        }
        Some(_) => Step::Wait,
    }
}

/// How often the schedule is looked at.
const TICK: Duration = Duration::from_secs(1);

/// Runs the schedule until the server stops (nothing without a lifetime).
pub async fn run(state: Arc<AppState>) {
    let Some(lifetime) = state.config.signing_key_lifetime else {
        return;
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match once(&state, lifetime).await {
            Ok(()) if failing => {
                tracing::info!("scheduled key rotation works again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e.message, detail = ?e.internal, "scheduled key rotation failed; retrying");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// One look at the schedule: publish or activate when due, on the leader only.
pub async fn once(state: &Arc<AppState>, lifetime: Duration) -> Result<(), ApiError> {
    let lifetime_ms = i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX);
    let ahead = publish_ahead(state.config.key_refresh);
    let ahead_ms = i64::try_from(ahead.as_millis()).unwrap_or(i64::MAX);
    let ring = state.keys();
    let now = state.now_ms();
    let next = ring.next.as_ref().map(|(kid, at)| (kid.as_str(), *at));
    let step = step(ring.active_created_at_ms, next, now, lifetime_ms, ahead_ms);
    if step == Step::Wait || !state.store.checkpoint_leader().await.unwrap_or(false) {
        return Ok(());
    }
    match step {
        Step::Wait => Ok(()),
        Step::Publish => {
            let alg = ring.active.alg();
            let record = new_key_record(alg, now, state.kek())?;
            let due = ring
                .active_created_at_ms
                .saturating_add(lifetime_ms)
                .max(now.saturating_add(ahead_ms));
            let mut entry = AuditEntry::new(EventType::KeyAdded, now, Actor::Registry);
            entry.kid = Some(record.kid.clone());
            entry.note = Some(format!(
                "next signing key, published ahead of the scheduled rotation (lifetime {}); signs from {} at the earliest",
                human_duration(lifetime),
                rfc3339_ms(due)
            ));
            let audit = crate::audit::record(&entry, None, None)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let kid = record.kid.clone();
            let stored = state
                .commit(
                    "next signing key",
                    Part::SigningKeys,
                    Box::new(move |state| {
                        Box::pin(async move {
                            let stored = state
                                .store
                                .publish_next_signing_key(&record, &audit)
                                .await?;
                            Ok((stored, Change::SigningKeys))
                        })
                    }),
                )
                .await?;
            if stored {
                tracing::info!(kid = %kid, "next signing key published ahead of its rotation");
            }
            Ok(())
        }
        Step::Activate(kid) => {
            let mut entry = AuditEntry::new(EventType::KeyRotated, now, Actor::Registry);
            entry.kid = Some(kid.clone());
            entry.note = Some(format!(
                "scheduled rotation: the active key reached its lifetime of {}",
                human_duration(lifetime)
            ));
            let audit = crate::audit::record(&entry, None, None)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let activated_kid = kid.clone();
            let activated = state
                .commit(
                    "scheduled key rotation",
                    Part::SigningKeys,
                    Box::new(move |state| {
                        Box::pin(async move {
                            let done = state
                                .store
                                .activate_next_signing_key(&activated_kid, now / 1000, &audit)
                                .await?;
                            Ok((done, Change::SigningKeys))
                        })
                    }),
                )
                .await?;
            if activated {
                tracing::info!(kid = %kid, "registry signing key rotated on schedule");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_next_key_is_published_ahead_and_signs_only_once_published_long_enough() {
        let ahead = 305_000;
        let life = 90 * DAY;
        assert_eq!(step(0, None, life - ahead - 1, life, ahead), Step::Wait);
        assert_eq!(step(0, None, life - ahead, life, ahead), Step::Publish);
        // Published at its time: activated exactly at the end of the lifetime.
        let published = life - ahead;
        assert_eq!(
            step(0, Some(("n", published)), life - 1, life, ahead),
            Step::Wait
        );
        assert_eq!(
            step(0, Some(("n", published)), life, life, ahead),
            Step::Activate("n".into())
        );
        // Published late (the registry was down): it waits its full lead anyway.
        let late = life + DAY;
        assert_eq!(step(0, None, late, life, ahead), Step::Publish);
        assert_eq!(
            step(0, Some(("n", late)), late + ahead - 1, life, ahead),
            Step::Wait
        );
        assert_eq!(
            step(0, Some(("n", late)), late + ahead, life, ahead),
            Step::Activate("n".into())
        );
    }

    #[test]
    fn lifetimes_have_a_floor() {
        assert_eq!(publish_ahead(Duration::from_secs(5)).as_secs(), 305);
        assert_eq!(min_lifetime(Duration::from_secs(5)), MIN_LIFETIME);
        assert_eq!(
            min_lifetime(Duration::from_secs(3600)),
            Duration::from_secs(2 * 3900)
        );
    }
}
