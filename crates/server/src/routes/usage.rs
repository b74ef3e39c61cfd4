//! Usage and quota (issue 18 item 5): `GET /v1/usage` for an organisation's admins and
//! owners and its own keys, and the registry admin's plan assignment.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::ids::{OrgId, ReceiverId};
use bonafide_store::{Owned, UsageCount};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::accounts::{Permission, PersonAuth};
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::quota;
use crate::state::AppState;

/// Longest range `GET /v1/usage` answers, days.
pub const MAX_RANGE_DAYS: i64 = 366;

/// `GET /v1/usage` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// The organisation (`org_…`): needed with a person's access token or an admin
    /// key; with an organisation's own key it is that organisation (another is 404).
    pub org: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC; default the first of this month).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC, included; default today). At most 366 days after
    /// `from`.
    pub to: Option<String>,
}

/// Requests on one day, with one key, on one route.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// The key: its kind and owner (`receiver:rcv_…`).
    pub key: String,
    /// The route template (`/v1/verify`).
    pub route: String,
    /// Requests.
    pub count: u64,
}

/// The organisation's quota this month.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaView {
    /// The plan's name.
    pub plan: String,
    /// Verifications a month.
    pub limit: u64,
    /// Counted this month (exact).
    pub used: u64,
    /// `YYYY-MM` (UTC).
    pub month: String,
    /// When the next month starts (RFC 3339).
    pub reset: String,
    /// False when the registry runs with `--quotas off` (nothing is counted).
    pub enabled: bool,
}

/// `GET /v1/usage` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The organisation.
    pub org_id: String,
    /// First day (UTC).
    pub from: String,
    /// Last day (UTC, included).
    pub to: String,
    /// Requests in the range.
    pub total: u64,
    /// By day.
    pub by_day: BTreeMap<String, u64>,
    /// By route template.
    pub by_endpoint: BTreeMap<String, u64>,
    /// By key.
    pub by_key: BTreeMap<String, u64>,
    /// Every (day, key, route) count, by day, key and route.
    pub rows: Vec<UsageRow>,
    /// The monthly verification quota.
    pub quota: QuotaView,
}

/// Who may read an organisation's usage: the registry admin, the organisation's own
/// issuer or receiver keys, or its admins and owners.
enum Reader {
    Admin,
    Org(OrgId),
    Person(Box<PersonAuth>),
}

async fn reader(parts: &mut Parts, state: &Arc<AppState>) -> Result<Reader, ApiError> {
    // The one credential rule: a person's token, or a key (or an access token issued
    // for one: worth what the key is).
    let caller = match crate::auth::credential(parts, state).await? {
        crate::auth::Credential::Person(token) => {
            return Ok(Reader::Person(Box::new(
                PersonAuth::from_token(state, token).await?,
            )));
        }
        crate::auth::Credential::Key(record) => crate::auth::caller_of_record(&record)?,
        crate::auth::Credential::Nothing => Caller::Anonymous,
    };
    let owned = match caller {
        Caller::Admin => return Ok(Reader::Admin),
        Caller::Anonymous => {
            return Err(ApiError::unauthorized(
                "usage needs an organisation admin's access token, or an API key of the organisation or the registry admin",
            ));
        }
        Caller::Issuer(id) => Owned::Issuer(id),
        Caller::Receiver(id) => Owned::Receiver(
            ReceiverId::try_from(id.as_str()).map_err(|e| ApiError::internal(e.to_string()))?,
        ),
    };
    let org = state
        .quotas
        .org_of(state.store.as_ref(), owned, state.now_ms())
        .await?
        .ok_or_else(|| {
            ApiError::forbidden("this key's issuer or receiver belongs to no organisation")
        })?;
    Ok(Reader::Org(org))
}

fn day(text: &str, what: &str) -> Result<jiff::civil::Date, ApiError> {
    let bad = || ApiError::bad_request(format!("`{what}` must be a day, `YYYY-MM-DD`"));
    if text.len() != 10 {
        return Err(bad());
    }
    text.parse::<jiff::civil::Date>().map_err(|_| bad())
}

/// Days since 1970-01-01 of a (valid) day.
fn day_number(d: jiff::civil::Date) -> i64 {
    jiff::tz::Offset::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .map_or(0, |t| t.as_second().div_euclid(86_400))
}

/// Requests made with the organisation's API keys, by day, route template and key,
/// over a range of days (UTC), and its monthly verification quota. The counts of the
/// last few seconds may be missing (each replica adds its counts every `key_refresh`);
/// the quota's count is exact.
#[utoipa::path(get, path = "/v1/usage", tag = "accounts", params(UsageQuery),
    security(("access_token" = []), ("api_key" = [])),
    responses((status = 200, body = UsageView),
              (status = 400, description = "a day that is not `YYYY-MM-DD`, `from` after `to`, or a range over 366 days"),
              (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn usage(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<ApiJson<UsageView>, ApiError> {
    let mut parts = parts;
    let reader = reader(&mut parts, &state).await?;
    let named = q
        .org
        .as_deref()
        .map(|o| OrgId::try_from(o).map_err(|_| ApiError::not_found("organisation")))
        .transpose()?;
    let org = match (reader, named) {
        (Reader::Org(own), None) => own,
        (Reader::Org(own), Some(named)) if named == own => own,
        (Reader::Org(_), Some(_)) => return Err(ApiError::not_found("organisation")),
        (Reader::Admin | Reader::Person(_), None) => {
            return Err(ApiError::bad_request("name the organisation: `?org=org_…`"));
        }
        (Reader::Admin, Some(org)) => {
            state
                .store
                .org(&org)
                .await?
                .ok_or_else(|| ApiError::not_found("organisation"))?;
            org
        }
        (Reader::Person(who), Some(org)) => {
            who.require(&state, &org, Permission::ReadUsage).await?;
            org
        }
    };
    let now = state.now_ms();
    let today = jiff::tz::Offset::UTC
        .to_datetime(crate::time::timestamp_ms(now))
        .date();
    let to = match &q.to {
        Some(t) => day(t, "to")?,
        None => today,
    };
    let from = match &q.from {
        Some(f) => day(f, "from")?,
        None => today.first_of_month(),
    };
    if from > to {
        return Err(ApiError::bad_request("`from` is after `to`"));
    }
    if day_number(to) - day_number(from) >= MAX_RANGE_DAYS {
        return Err(ApiError::bad_request(format!(
            "a range of at most {MAX_RANGE_DAYS} days"
        )));
    }
    let (from, to) = (from.to_string(), to.to_string());
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let stored = state.store.usage(&org, &from, &to).await?;
    let pending = state.quotas.pending_of(&org);
    for UsageCount {
        day,
        key,
        route,
        count,
        ..
    } in stored.into_iter().chain(pending)
    {
        if day >= from && day <= to {
            *counts.entry((day, key, route)).or_insert(0) += count;
        }
    }
    let mut view = UsageView {
        org_id: org.to_string(),
        from,
        to,
        total: 0,
        by_day: BTreeMap::new(),
        by_endpoint: BTreeMap::new(),
        by_key: BTreeMap::new(),
        rows: Vec::with_capacity(counts.len()),
        quota: quota_view(&state, &org, now).await?,
    };
    for ((day, key, route), count) in counts {
        view.total += count;
        *view.by_day.entry(day.clone()).or_insert(0) += count;
        *view.by_endpoint.entry(route.clone()).or_insert(0) += count;
        *view.by_key.entry(key.clone()).or_insert(0) += count;
        view.rows.push(UsageRow {
            day,
            key,
            route,
            count,
        });
    }
    Ok(ApiJson(view))
}

async fn quota_view(state: &AppState, org: &OrgId, now: i64) -> Result<QuotaView, ApiError> {
    let (plan, limit) = state.quotas.plan_of(org);
    let (month, reset_ms) = quota::month_of(now);
    let used = state.store.quota_used(org, &month).await?;
    Ok(QuotaView {
        plan,
        limit,
        used,
        month,
        reset: crate::time::rfc3339_s(reset_ms / 1000),
        enabled: state.quotas.plans().enabled,
    })
}

/// `PUT /v1/admin/orgs/{id}/plan` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    /// A plan the registry is configured with (`serve --plan NAME=LIMIT`); `null`
    /// puts the organisation back on the default plan.
    pub plan: Option<String>,
}

/// An organisation's plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    /// The organisation.
    pub org_id: String,
    /// Its plan.
    pub plan: String,
    /// Verifications a month.
    pub limit: u64,
    /// Every plan the registry knows, name → verifications a month.
    pub plans: BTreeMap<String, u64>,
}

/// Assigns an organisation a plan (registry admin). Audited (`org.updated`, `note`
/// `plan=…`); this replica applies it at once, others within `key_refresh`. The count
/// of the month so far is kept: a smaller plan may refuse at once.
#[utoipa::path(put, path = "/v1/admin/orgs/{id}/plan", tag = "admin", request_body = SetPlan,
    params(("id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses((status = 200, body = PlanView), (status = 400), (status = 401), (status = 403), (status = 404),
              (status = 422, description = "a plan the registry is not configured with")))]
pub async fn set_plan(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetPlan>,
) -> Result<ApiJson<PlanView>, ApiError> {
    let org = OrgId::try_from(id.as_str()).map_err(|_| ApiError::not_found("organisation"))?;
    let plans = state.quotas.plans();
    if let Some(p) = &body.plan
        && plans.limit(p).is_none()
    {
        return Err(ApiError::invalid(format!(
            "no plan `{p}`: the registry's plans are {} (serve --plan NAME=LIMIT adds one)",
            plans.all().keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    // The default plan is what no assignment means: stored as none.
    let stored = body.plan.as_deref().filter(|p| *p != quota::DEFAULT_PLAN);
    let now = state.now_ms();
    let audit = crate::routes::accounts::account_audit(
        EventType::OrgUpdated,
        now,
        Actor::Admin,
        Some(&org),
        None,
        |e| e.note = Some(format!("plan={}", stored.unwrap_or(quota::DEFAULT_PLAN))),
    )?;
    state
        .store
        .set_org_plan(&org, stored, now, &audit)
        .await
        .map_err(|e| match e {
            bonafide_store::StoreError::NotFound => ApiError::not_found("organisation"),
            e => e.into(),
        })?;
    state.quotas.load_plans(state.store.as_ref()).await?;
    let (plan, limit) = state.quotas.plan_of(&org);
    Ok(ApiJson(PlanView {
        org_id: org.to_string(),
        plan,
        limit,
        plans: plans.all().clone(),
    }))
}

/// An organisation's plan (registry admin).
#[utoipa::path(get, path = "/v1/admin/orgs/{id}/plan", tag = "admin",
    params(("id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses((status = 200, body = PlanView), (status = 401), (status = 403), (status = 404)))]
pub async fn get_plan(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<PlanView>, ApiError> {
    let org = OrgId::try_from(id.as_str()).map_err(|_| ApiError::not_found("organisation"))?;
    state
        .store
        .org(&org)
        .await?
        .ok_or_else(|| ApiError::not_found("organisation"))?;
    let (plan, limit) = state.quotas.plan_of(&org);
    Ok(ApiJson(PlanView {
        org_id: org.to_string(),
        plan,
        limit,
        plans: state.quotas.plans().all().clone(),
    }))
}
