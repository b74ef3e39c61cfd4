//! Monthly verification quotas and usage (issue 18 item 5).
//!
//! **What counts.** A verification (`POST /v1/verify`, `GET /v1/verify/{token}`,
//! `POST /v1/introspect`, `POST /v1/agents/{id}/verify-action` and the compatibility
//! surfaces' verify calls, and `/v1/simulate`) made with the key of a receiver or an
//! issuer an organisation owns counts against that organisation's quota, whatever the
//! token turns out to be (a verification was asked and answered). Anonymous verifies,
//! and those made with an admin key or the key of an identity no organisation owns,
//! count against no quota: they have no organisation to bill, and the rate limits
//! (per address, per token issuer) bound them instead.
//!
//! **Exactly, in the decision's transaction.** A counted verification is counted in
//! the same store transaction that records its decision (the audit committer's
//! batch: `DecisionItem::quota`, [`Counting::claim`]): per organisation and month
//! the stored count is read under its row lock (SQLite: the one writer), and each
//! decision of the batch is admitted, in order, only while it is under the plan's
//! limit; an admitted one is counted with its entry, receipt and budget charge, and a
//! refused one writes nothing. So the stored count is the number of verifications
//! admitted, on every replica and across restarts, at no commit of its own. A
//! verification that writes nothing (a token that concerns no agent, decisions not
//! audited) is counted on its own first ([`Counting::alone`]: the quota task gathers
//! every such ask made meanwhile into one transaction, [`Store::quota_take`]). A
//! request refused before its decision (a malformed one, an unknown agent) is not a
//! verification and is not counted, and neither is an idempotent replay (the same
//! answer given again). The one way a counted verification goes unanswered is a
//! failure after the commit (the client going away), which is counted as the
//! verification it was.
//!
//! **Warning.** The take that first reaches 80 % of the limit in a month is told so
//! by the store (a flag set in the same transaction, so once per organisation and
//! month across replicas), and that transaction appends the month's `quota.warning`
//! audit entry with it: the flag and the entry are durable together or not at all.
//! Its request counts it in `/metrics`. Every counted answer at or over 80 % carries
//! `Bonafide-Quota-Warning: USED/LIMIT; reset=…`. Over the limit: 429
//! `QUOTA_EXCEEDED` with `Retry-After` and `reset`, the next month's start (UTC).
//!
//! **Usage.** Requests made with an organisation's API keys are counted in memory,
//! per UTC day, key (its public id, `key_…`) and route template, and added to the store every `key_refresh`
//! (and when the server stops): a crash loses at most that interval's counts of this
//! replica (the quota is never among them: it is counted as above).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::http::StatusCode;
use axum::response::Response;
use bonafide_core::apikey::ApiKeyHash;
use bonafide_core::ids::{OrgId, ReceiverId};
use bonafide_store::{Owned, QuotaClaim, QuotaGrant, QuotaTake, Store, StoreError, UsageCount};
use tokio::sync::{mpsc, oneshot};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The plan organisations are on until an admin assigns another.
pub const DEFAULT_PLAN: &str = "free";
/// The default plan's monthly verifications (KairosAI's free tier).
pub const DEFAULT_PLAN_LIMIT: u64 = 10_000;
/// Most verifications a plan may allow a month.
pub const MAX_PLAN_LIMIT: u64 = 1_000_000_000_000;

/// The plans: name → verifications a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    /// Quotas counted and enforced (`serve --quotas off` turns them off).
    pub enabled: bool,
    plans: BTreeMap<String, u64>,
}

impl Default for Plans {
    /// Off (the library's default; `bonafide serve` turns them on), with the default
    /// plan.
    fn default() -> Self {
        Plans {
            enabled: false,
            plans: BTreeMap::from([(DEFAULT_PLAN.to_owned(), DEFAULT_PLAN_LIMIT)]),
        }
    }
}

impl Plans {
    /// On, with `free` = 10,000 a month.
    pub fn seeds() -> Self {
        Plans {
            enabled: true,
            ..Self::default()
        }
    }

    /// Adds or changes a plan from `NAME=LIMIT` (`pro=1000000`, `_` allowed in the
    /// number). Names: 1 to 32 of `a-z 0-9 - _`.
    pub fn apply(&mut self, assignment: &str) -> Result<(), String> {
        let (name, limit) = assignment
            .split_once('=')
            .ok_or_else(|| format!("`{assignment}`: write NAME=LIMIT, e.g. pro=1000000"))?;
        let name = check_plan_name(name.trim())?;
        let limit: u64 = limit
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PLAN_LIMIT).contains(n))
            .ok_or_else(|| {
                format!("`{assignment}`: the limit must be a whole number of verifications a month, from 1 to {MAX_PLAN_LIMIT}")
            })?;
        self.plans.insert(name.to_owned(), limit);
        Ok(())
    }

    /// A plan's monthly limit.
    pub fn limit(&self, plan: &str) -> Option<u64> {
        self.plans.get(plan).copied()
    }

    /// Every plan, by name.
    pub fn all(&self) -> &BTreeMap<String, u64> {
        &self.plans
    }
}

/// A plan name as it may be written: 1 to 32 of `a-z 0-9 - _`.
pub fn check_plan_name(name: &str) -> Result<&str, String> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "`{name}` is not a plan name: 1 to 32 of a-z, 0-9, `-` and `_`"
        ))
    }
}

/// The UTC month of `ms`, `YYYY-MM`, and when the next one starts (Unix ms).
pub fn month_of(ms: i64) -> (String, i64) {
    let utc = jiff::tz::Offset::UTC;
    let date = utc.to_datetime(crate::time::timestamp_ms(ms)).date();
    let next = date
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .ok()
        .and_then(|d| {
            utc.to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                .ok()
        })
        .map_or(i64::MAX, |t| t.as_millisecond());
    (format!("{:04}-{:02}", date.year(), date.month()), next)
}

/// The UTC day of `ms`, `YYYY-MM-DD`.
pub fn day_of(ms: i64) -> String {
    let date = jiff::tz::Offset::UTC
        .to_datetime(crate::time::timestamp_ms(ms))
        .date();
    format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day())
}

const DAY_MS: i64 = 86_400_000;

/// A usage row while in memory: organisation, UTC day (days since the epoch), key
/// (its hash: the public id is made when the row is written) and route template.
type UsageKey = (OrgId, i64, ApiKeyHash, String);

/// A usage row as stored.
fn usage_count((org, day, key, route): &UsageKey, count: u64) -> UsageCount {
    UsageCount {
        org_id: org.clone(),
        day: day_of(day.saturating_mul(DAY_MS)),
        key: key.public_id(),
        route: route.clone(),
        count,
    }
}

/// The count at which a month's warning is due: 80 % of `limit`, rounded up.
pub fn warn_at(limit: u64) -> u64 {
    limit.saturating_mul(4).div_ceil(5)
}

/// One verification asked of the quota task.
struct Ask {
    org: OrgId,
    month: String,
    limit: u64,
    /// When it was asked (the time of a `quota.warning` entry it may bring).
    now_ms: i64,
    answer: oneshot::Sender<Result<QuotaGrant, StoreError>>,
}

/// How long an organisation found (or not) for an issuer or receiver is believed
/// before the store is asked again, at most (adoption moves them between
/// organisations; the server's `key_refresh` when shorter).
const OWNER_TTL_MS: i64 = 5_000;
/// Most owners remembered; past it the memory starts over.
const MAX_OWNERS: usize = 100_000;
/// Most distinct usage rows held between flushes; past it the rest of the interval
/// is flushed early.
const MAX_PENDING_USAGE: usize = 50_000;

/// Quotas and usage: the plans, the organisations' assignments, the quota task, and
/// this replica's unflushed usage counts.
#[derive(Debug)]
pub struct Quotas {
    plans: Plans,
    assigned: ArcSwap<HashMap<OrgId, String>>,
    owners: Mutex<HashMap<Owned, (Option<OrgId>, i64)>>,
    asks: mpsc::UnboundedSender<Ask>,
    pending: Mutex<HashMap<UsageKey, u64>>,
    owner_ttl_ms: i64,
}

impl std::fmt::Debug for Ask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ask").field("org", &self.org).finish()
    }
}

impl Quotas {
    /// Quotas over `store`, starting the quota task when they are on.
    pub fn new(plans: Plans, store: Arc<dyn Store>, key_refresh: std::time::Duration) -> Self {
        let (asks, rx) = mpsc::unbounded_channel();
        if plans.enabled {
            tokio::spawn(quota_task(rx, store));
        }
        Quotas {
            plans,
            assigned: ArcSwap::from_pointee(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            asks,
            pending: Mutex::new(HashMap::new()),
            owner_ttl_ms: i64::try_from(key_refresh.as_millis())
                .unwrap_or(OWNER_TTL_MS)
                .min(OWNER_TTL_MS),
        }
    }

    /// The plans.
    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    /// Reads the organisations' plan assignments from the store.
    pub async fn load_plans(&self, store: &dyn Store) -> Result<(), StoreError> {
        let map: HashMap<OrgId, String> = store.org_plans().await?.into_iter().collect();
        self.assigned.store(Arc::new(map));
        Ok(())
    }

    /// An organisation's plan and its limit. A plan assigned but no longer in the
    /// configuration falls back to the default plan (logged), never to no limit.
    pub fn plan_of(&self, org: &OrgId) -> (String, u64) {
        let default = || {
            (
                DEFAULT_PLAN.to_owned(),
                self.plans.limit(DEFAULT_PLAN).unwrap_or(DEFAULT_PLAN_LIMIT),
            )
        };
        match self.assigned.load().get(org) {
            Some(plan) => match self.plans.limit(plan) {
                Some(limit) => (plan.clone(), limit),
                None => {
                    tracing::warn!(%org, plan, "assigned plan is not configured; the default plan applies");
                    default()
                }
            },
            None => default(),
        }
    }

    /// The organisation owning an issuer or receiver (cached briefly).
    pub async fn org_of(
        &self,
        store: &dyn Store,
        what: Owned,
        now_ms: i64,
    ) -> Result<Option<OrgId>, StoreError> {
        if let Some((org, at)) = self.lock_owners().get(&what)
            && now_ms.saturating_sub(*at) < self.owner_ttl_ms
            && now_ms >= *at
        {
            return Ok(org.clone());
        }
        let org = store.owner_org(&what).await?;
        let mut owners = self.lock_owners();
        if owners.len() >= MAX_OWNERS {
            owners.clear();
        }
        owners.insert(what, (org.clone(), now_ms));
        Ok(org)
    }

    fn lock_owners(&self) -> std::sync::MutexGuard<'_, HashMap<Owned, (Option<OrgId>, i64)>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<UsageKey, u64>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request of `key` (an organisation's) on `route` at `now_ms`; whether
    /// the pending counts should be flushed now (too many rows).
    pub fn count_usage(&self, org: OrgId, key: ApiKeyHash, route: String, now_ms: i64) -> bool {
        let mut pending = self.lock_pending();
        *pending
            .entry((org, now_ms.div_euclid(DAY_MS), key, route))
            .or_insert(0) += 1;
        pending.len() >= MAX_PENDING_USAGE
    }

    /// This replica's counts not yet in the store, of `org`.
    pub fn pending_of(&self, org: &OrgId) -> Vec<UsageCount> {
        self.lock_pending()
            .iter()
            .filter(|((o, ..), _)| o == org)
            .map(|(k, n)| usage_count(k, *n))
            .collect()
    }

    /// Adds the pending counts to the store; on failure they are kept for the next
    /// flush.
    pub async fn flush_usage(&self, store: &dyn Store) -> Result<(), StoreError> {
        let taken: Vec<_> = self.lock_pending().drain().collect();
        if taken.is_empty() {
            return Ok(());
        }
        let rows: Vec<UsageCount> = taken.iter().map(|(k, n)| usage_count(k, *n)).collect();
        if let Err(e) = store.add_usage(&rows).await {
            let mut pending = self.lock_pending();
            for (k, n) in taken {
                *pending.entry(k).or_insert(0) += n;
            }
            return Err(e);
        }
        Ok(())
    }
}

/// One verification to count against an organisation's quota, resolved before it is
/// decided (its organisation, plan and month) and counted with what the request
/// writes: in the decision's own transaction ([`Counting::claim`] on its
/// `DecisionItem`), or on its own when the request writes nothing ([`Counting::alone`]).
#[derive(Debug, Clone, Default)]
pub struct Counting {
    quota: Option<Counted>,
}

#[derive(Debug, Clone)]
struct Counted {
    claim: QuotaClaim,
    plan: String,
    now_ms: i64,
    reset_ms: i64,
}

/// The verification `caller` asks, to be counted when it is one that counts (see the
/// module docs). Reads no store row beyond the owner look-up (cached).
pub async fn counting(state: &AppState, caller: &Caller) -> Result<Counting, ApiError> {
    let quotas = &state.quotas;
    if !quotas.plans.enabled {
        return Ok(Counting::default());
    }
    // Whichever of an organisation's identities asks (a receiver, or one of its
    // issuers verifying), the organisation is billed.
    let owned = match caller {
        Caller::Receiver(id) => match ReceiverId::try_from(id.as_str()) {
            Ok(r) => Owned::Receiver(r),
            Err(_) => return Ok(Counting::default()),
        },
        Caller::Issuer(id) => Owned::Issuer(id.clone()),
        Caller::Admin | Caller::Anonymous => return Ok(Counting::default()),
    };
    let now_ms = state.now_ms();
    // The front layer found the presented key's organisation already (the same
    // credential rule as the caller's): asked again only when it did not.
    let known = crate::front::usage_org(caller);
    let org = match known {
        Some(org) => Some(org),
        None => quotas.org_of(state.store.as_ref(), owned, now_ms).await?,
    };
    let Some(org) = org else {
        return Ok(Counting::default());
    };
    let (plan, limit) = quotas.plan_of(&org);
    let (month, reset_ms) = month_of(now_ms);
    Ok(Counting {
        quota: Some(Counted {
            claim: QuotaClaim {
                org_id: org,
                month,
                limit,
                warn_at: warn_at(limit),
            },
            plan,
            now_ms,
            reset_ms,
        }),
    })
}

impl Counting {
    /// What the decision's transaction counts (`None`: this verification counts
    /// against no quota).
    pub fn claim(&self) -> Option<QuotaClaim> {
        self.quota.as_ref().map(|q| q.claim.clone())
    }

    /// Counts it on its own, for a request that writes nothing (a token that concerns
    /// no agent, verify decisions not audited): `Err` 429 over the limit.
    pub async fn alone(&self, state: &AppState) -> Result<(), ApiError> {
        let Some(q) = &self.quota else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        state
            .quotas
            .asks
            .send(Ask {
                org: q.claim.org_id.clone(),
                month: q.claim.month.clone(),
                limit: q.claim.limit,
                now_ms: q.now_ms,
                answer: tx,
            })
            .map_err(|_| ApiError::from(StoreError::Unavailable("quota task gone".into())))?;
        let grant = rx
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("quota task gone".into())))?;
        if grant.granted == 0 {
            return Err(self.exceeded(state, grant.used));
        }
        if grant.warn {
            // Its `quota.warning` entry was appended in the take's transaction.
            state.metrics.quota_warned();
            tracing::info!(org = %q.claim.org_id, month = q.claim.month, used = grant.used, "quota: 80 % reached");
        }
        self.warning_header(grant);
        Ok(())
    }

    /// What the transaction that counted it in a decision's batch granted: the
    /// answer's warning header from 80 % (the month's one `quota.warning` entry was
    /// appended by that same transaction).
    pub fn granted(&self, state: &AppState, grant: Option<QuotaGrant>) {
        let Some(grant) = grant else {
            return;
        };
        if grant.warn {
            state.metrics.quota_warned();
        }
        self.warning_header(grant);
    }

    /// The answer's `Bonafide-Quota-Warning` from 80 %.
    fn warning_header(&self, grant: QuotaGrant) {
        let Some(q) = &self.quota else {
            return;
        };
        let limit = q.claim.limit;
        if grant.used >= q.claim.warn_at {
            let reset = crate::time::rfc3339_s(q.reset_ms / 1000);
            crate::front::set_quota_warning(format!("{}/{limit}; reset={reset}", grant.used));
        }
    }

    /// The 429 `QUOTA_EXCEEDED` for a month used up (`used` counted).
    pub fn exceeded(&self, state: &AppState, used: u64) -> ApiError {
        state.metrics.quota_refused();
        let Some(q) = &self.quota else {
            return ApiError::internal(
                "a quota refusal for a verification that counts against none",
            );
        };
        let (org, plan, limit) = (&q.claim.org_id, &q.plan, q.claim.limit);
        tracing::info!(%org, plan, used, "quota: refused");
        let reset = crate::time::rfc3339_s(q.reset_ms / 1000);
        let wait_s = u64::try_from(q.reset_ms.saturating_sub(q.now_ms))
            .unwrap_or(0)
            .div_ceil(1000)
            .max(1);
        ApiError {
            retry: Some(Box::new(crate::error::Retry {
                after_s: wait_s,
                reset: Some(reset.clone()),
            })),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::QuotaExceeded,
                format!(
                    "the organisation's monthly quota of {limit} verifications (plan `{plan}`) is used up; it resets at {reset}"
                ),
            )
        }
    }
}

/// Counts an answered request of an organisation's key in the usage table (called by
/// the front layer, [`crate::front`], when quotas are on): by day, key and the route
/// template the request matched (an unrouted one is not counted).
pub(crate) fn count_usage(state: &Arc<AppState>, usage: Subject, resp: &mut Response) {
    // Taken: no layer outside this one reads it.
    let Some(route) = resp.extensions_mut().remove::<crate::RouteTemplate>() else {
        return;
    };
    if state.quotas.count_usage(
        usage.org,
        usage.key,
        route.0.as_str().to_owned(),
        state.now_ms(),
    ) {
        let state = Arc::clone(state);
        tokio::spawn(async move {
            if let Err(e) = state.quotas.flush_usage(state.store.as_ref()).await {
                tracing::warn!(error = %e, "usage counts not flushed; kept for the next try");
            }
        });
    }
}

/// The organisation and usage name of the key a request presents (as the front layer
/// resolved it: the credential authentication uses), when an organisation owns it and
/// the key is live. A key is named by its public id (`key_…`, as `GET /v1/api-keys`
/// lists it), an access token issued for a key by that key's id, never by a secret or
/// hash.
pub(crate) async fn usage_subject(
    state: &AppState,
    resolved: Option<&crate::auth::ResolvedKey>,
) -> Option<Subject> {
    let record = resolved?.live_record(state.now_ms())?;
    let caller = crate::auth::caller_of_record(record).ok()?;
    let owned = match &caller {
        Caller::Issuer(id) => Owned::Issuer(id.clone()),
        Caller::Receiver(id) => Owned::Receiver(ReceiverId::try_from(id.as_str()).ok()?),
        Caller::Admin | Caller::Anonymous => return None,
    };
    let org = state
        .quotas
        .org_of(state.store.as_ref(), owned, state.now_ms())
        .await
        .ok()??;
    Some(Subject {
        caller,
        org,
        key: record.hash,
    })
}

/// Whose key a request presents, as [`usage_subject`] found it.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) caller: Caller,
    pub(crate) org: OrgId,
    key: ApiKeyHash,
}

/// Keeps plan assignments current (every `key_refresh`, so one made on another
/// replica applies here within it) and flushes usage counts as often.
pub async fn maintain(state: Arc<AppState>) {
    if !state.quotas.plans.enabled {
        return;
    }
    let mut tick = tokio::time::interval(state.config.key_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = state.quotas.load_plans(state.store.as_ref()).await {
            tracing::debug!(error = %e, "plan assignments not reread; keeping the last read");
        }
        if let Err(e) = state.quotas.flush_usage(state.store.as_ref()).await {
            tracing::warn!(error = %e, "usage counts not flushed; kept for the next try");
        }
    }
}

/// Takes every verification asked while the previous batch was in the store in one
/// call; the asks of one organisation and month are summed into one take and
/// admitted in order.
async fn quota_task(mut rx: mpsc::UnboundedReceiver<Ask>, store: Arc<dyn Store>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(ask) => batch.push(ask),
                Err(_) => break,
            }
        }
        let mut takes: Vec<QuotaTake> = Vec::new();
        let mut index: HashMap<(OrgId, String), usize> = HashMap::new();
        let mut of_ask = Vec::with_capacity(batch.len());
        for ask in &batch {
            let i = *index
                .entry((ask.org.clone(), ask.month.clone()))
                .or_insert_with(|| {
                    takes.push(QuotaTake {
                        org_id: ask.org.clone(),
                        month: ask.month.clone(),
                        limit: ask.limit,
                        warn_at: warn_at(ask.limit),
                        want: 0,
                    });
                    takes.len() - 1
                });
            if let Some(t) = takes.get_mut(i) {
                t.want += 1;
            }
            of_ask.push(i);
        }
        let now_ms = batch.iter().map(|a| a.now_ms).max().unwrap_or(0);
        match store.quota_take(&takes, now_ms).await {
            Ok(grants) => {
                // Admitted in order: the first `granted` asks of each take; the warning
                // goes to the first of them.
                let mut given = vec![0u64; takes.len()];
                for (ask, i) in batch.into_iter().zip(of_ask) {
                    let Some(g) = grants.get(i) else {
                        let _ = ask.answer.send(Err(StoreError::Backend(
                            "the store answered fewer grants than takes".into(),
                        )));
                        continue;
                    };
                    let n = given[i];
                    given[i] += 1;
                    let _ = ask.answer.send(Ok(QuotaGrant {
                        granted: u64::from(n < g.granted),
                        used: g.used,
                        warn: g.warn && n == 0,
                    }));
                }
            }
            Err(e) => {
                for ask in batch {
                    let _ = ask.answer.send(Err(e.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_days_are_utc_and_the_next_month_starts_at_midnight() {
        // 2026-12-31T23:59:59.999Z
        let ms = 1_798_761_599_999;
        assert_eq!(day_of(ms), "2026-12-31");
        let (month, next) = month_of(ms);
        assert_eq!(month, "2026-12");
        assert_eq!(crate::time::rfc3339_ms(next), "2027-01-01T00:00:00.000Z");
        assert_eq!(month_of(next).0, "2027-01");
        assert_eq!(
            crate::time::rfc3339_ms(month_of(1_772_323_200_000).1),
            "2026-04-01T00:00:00.000Z"
        );
    }

    #[test]
    fn plans_parse_and_refuse_the_rest() {
        let mut p = Plans::seeds();
        assert_eq!(p.limit("free"), Some(10_000));
        p.apply("pro=1_000_000").unwrap();
        p.apply("free=5").unwrap();
        assert_eq!(
            (p.limit("pro"), p.limit("free")),
            (Some(1_000_000), Some(5))
        );
        for bad in ["pro", "Pro=1", "=1", "pro=0", "pro=x", "pro=-1", "a b=1"] {
            assert!(p.apply(bad).is_err(), "{bad}");
        }
        assert_eq!(warn_at(10_000), 8000);
        assert_eq!(warn_at(3), 3);
        assert_eq!(warn_at(1), 1);
    }
}
