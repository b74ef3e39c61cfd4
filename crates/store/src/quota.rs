//! What quotas and usage (issue 18 item 5) store: each organisation's plan (by name;
//! the limits are the server's configuration), the verifications counted against its
//! monthly quota ([`crate::Store::quota_take`]), and daily usage counts per key and
//! route ([`crate::Store::add_usage`]). The counting rule is written here once, for
//! both backends; each keeps only its SQL.

use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::ids::OrgId;

use crate::{AuditRecord, StoreError};

/// Verifications asked of one organisation's quota for one month, in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaTake {
    /// The organisation.
    pub org_id: OrgId,
    /// The UTC month, `YYYY-MM`.
    pub month: String,
    /// Most verifications the month allows (its plan's limit).
    pub limit: u64,
    /// The count at which the month's one warning is due (80 % of the limit).
    pub warn_at: u64,
    /// Verifications wanted now.
    pub want: u64,
}

/// One verification counted in the transaction that records it
/// ([`crate::DecisionItem::quota`]): admitted only while the month is under `limit`,
/// and then counted with the decision it allowed, durable together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaClaim {
    /// The organisation.
    pub org_id: OrgId,
    /// The UTC month, `YYYY-MM`.
    pub month: String,
    /// Most verifications the month allows (its plan's limit).
    pub limit: u64,
    /// The count at which the month's one warning is due (80 % of the limit).
    pub warn_at: u64,
}

impl QuotaClaim {
    /// This claim as a take of `want` verifications.
    pub fn take(&self, want: u64) -> QuotaTake {
        QuotaTake {
            org_id: self.org_id.clone(),
            month: self.month.clone(),
            limit: self.limit,
            warn_at: self.warn_at,
            want,
        }
    }
}

/// What a take got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaGrant {
    /// Verifications admitted (and counted): at most `want`, only while under the limit.
    pub granted: u64,
    /// The month's count after this take.
    pub used: u64,
    /// This take crossed `warn_at` first: exactly one take per organisation and month
    /// gets `true`, whichever replica made it.
    pub warn: bool,
}

/// The month's one `quota.warning` audit entry (`org`, `note` the month and count),
/// for the take that first reached `warn_at`: the store appends it in the
/// transaction that sets the month's flag, so the flag and the entry are durable
/// together or not at all (a warning owed by a later write could be lost).
pub fn warning_record(
    org: &OrgId,
    month: &str,
    used: u64,
    limit: u64,
    at_ms: i64,
) -> Result<AuditRecord, StoreError> {
    let mut entry = AuditEntry::new(EventType::QuotaWarning, at_ms, Actor::Registry);
    entry.org = Some(org.to_string());
    entry.note = Some(format!("{month}: {used} of {limit} verifications"));
    let entry = entry
        .to_canonical()
        .map_err(|e| StoreError::Backend(format!("quota warning entry: {e}")))?;
    Ok(AuditRecord {
        entry,
        agent_id: None,
        issuer_id: None,
        created_at_ms: at_ms,
        prepared: None,
    })
}

/// One day's requests with one key on one route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    /// The organisation owning the key.
    pub org_id: OrgId,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The server's stable name of the key (never its secret or hash).
    pub key: String,
    /// The route template (`/v1/verify`).
    pub route: String,
    /// Requests.
    pub count: u64,
}

/// Longest key name or route template stored, bytes.
pub const MAX_USAGE_TEXT_BYTES: usize = 200;

/// A take applied to a month's stored count and warning flag (`None`: nothing
/// counted yet): the grant and the new count and flag to store. Pure: both backends
/// call it inside their write transaction on the row they locked.
pub fn take(stored: Option<(u64, bool)>, take: &QuotaTake) -> (QuotaGrant, u64, bool) {
    let (used, warned) = stored.unwrap_or((0, false));
    let granted = take.want.min(take.limit.saturating_sub(used));
    let after = used.saturating_add(granted);
    let warn = !warned && take.warn_at > 0 && after >= take.warn_at;
    (
        QuotaGrant {
            granted,
            used: after,
            warn,
        },
        after,
        warned || warn,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(limit: u64, want: u64) -> QuotaTake {
        QuotaTake {
            org_id: OrgId::from_random([7; 16]),
            month: "2026-12".into(),
            limit,
            warn_at: limit * 8 / 10,
            want,
        }
    }

    #[test]
    fn a_take_admits_up_to_the_limit_and_warns_once() {
        let (g, used, warned) = take(None, &t(10, 3));
        assert_eq!(
            (g.granted, g.used, g.warn, used, warned),
            (3, 3, false, 3, false)
        );
        let (g, used, warned) = take(Some((7, false)), &t(10, 2));
        assert_eq!((g.granted, g.warn, used, warned), (2, true, 9, true));
        let (g, used, warned) = take(Some((9, true)), &t(10, 5));
        assert_eq!((g.granted, g.warn, used, warned), (1, false, 10, true));
        let (g, used, _) = take(Some((10, true)), &t(10, 1));
        assert_eq!((g.granted, used), (0, 10));
        // A lowered limit admits nothing and counts nothing more.
        let (g, used, _) = take(Some((12, true)), &t(10, 1));
        assert_eq!((g.granted, used), (0, 12));
    }
}
