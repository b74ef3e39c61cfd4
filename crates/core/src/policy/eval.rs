//! Evaluating a policy against one request (docs/design.md, pipeline step 8).
//!
//! The checks run in a fixed order, and every failing check adds its reason in that
//! order, so `reasons[0]` is always the first failure:
//!
//! 1. `POLICY_ACTION`: the action is one of `actions`.
//! 2. `POLICY_RESOURCE`: with `resources`, the request names a resource of a listed
//!    type whose id is in `ids` or under one of `prefixes`; a request that names none
//!    is refused (deny by default). Without `resources`, any resource or none is
//!    allowed, unless `strict`, where a policy that lists no resource grants none: a
//!    request naming one is refused.
//! 3. `TIME_WINDOW`: `now` is inside `constraints.time` in the policy's zone.
//! 4. Money: `AMOUNT_REQUIRED` when the policy has `limits` and the request has no
//!    amount (otherwise omitting the amount would bypass every limit);
//!    `AMOUNT_NOT_ALLOWED` when the request has an amount and the policy no `limits`
//!    (the policy grants no spending; a server answers 422); `AMOUNT_INVALID` for an
//!    amount that is negative, too large or too precise for its currency (only
//!    possible when the caller built it without [`money_from_json`]);
//!    `CURRENCY_MISMATCH` when its currency is not the limits' currency.
//! 5. `LIMIT_PER_TXN`: amount ≤ `per_txn`.
//! 6. `LIMIT_PER_PERIOD`: `spent_in_period` + amount ≤ `per_period` for the calendar
//!    period containing `now`.
//!
//! Steps 5 and 6 run only when the amount is comparable (step 4 passed). Nothing is
//! charged unless every check passed: only then does the decision carry a [`Spend`].
//! AgentOAuth's verifier charged the budget before checking the time window, so a
//! request refused for the hour still used up money; here a refusal never spends.

use iso_currency::Currency;
use jiff::Timestamp;
use rust_decimal::Decimal;
use serde_json::Value;

use super::money::{self, check_amount};
use super::{BudgetPeriod, PeriodWindow, Policy, PolicyError, TimeWindow, period_of};

/// Separators of resource-id segments for prefix matching.
pub(crate) const SEPARATORS: [char; 2] = ['/', ':'];

/// What a request asks to do, as evaluation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyRequest<'a> {
    /// The action (`payments.send`).
    pub action: &'a str,
    /// The resource acted on, if the request names one.
    pub resource: Option<ResourceRef<'a>>,
    /// The amount and its currency, if the request spends.
    pub money: Option<Money>,
}

/// `resource {type, id}` of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    /// Resource type.
    pub kind: &'a str,
    /// Resource id.
    pub id: &'a str,
}

/// An exact amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money {
    /// Amount, at most the currency's minor units of decimals.
    pub amount: Decimal,
    /// Active ISO 4217 currency.
    pub currency: Currency,
}

/// Parses a request's `amount` and `currency` members with the policy's rules
/// ([`super::money`]); errors name the member (`amount: negative amounts are refused`).
pub fn money_from_json(amount: &Value, currency: &Value) -> Result<Money, PolicyError> {
    let field = |path: &str, problem: super::Problem| PolicyError::Field {
        path: path.to_owned(),
        problem,
    };
    let code = currency
        .as_str()
        .ok_or_else(|| field("currency", money::CurrencyError::WrongType.into()))?;
    let currency = money::parse_currency(code).map_err(|e| field("currency", e.into()))?;
    let amount = money::parse_amount(amount, currency).map_err(|e| field("amount", e.into()))?;
    // A limit may be zero; a request's spend may not (issue 13: `remaining` is not
    // to be read for free through a spend of nothing).
    if amount.is_zero() {
        return Err(field("amount", money::AmountError::Zero.into()));
    }
    Ok(Money { amount, currency })
}

/// [`money_from_json`] for an amount given as its JSON text (a string or a number
/// literal, read exactly: [`money::parse_amount_literal`]).
pub fn money_from_literal(amount: &str, currency: &Value) -> Result<Money, PolicyError> {
    let field = |path: &str, problem: super::Problem| PolicyError::Field {
        path: path.to_owned(),
        problem,
    };
    let code = currency
        .as_str()
        .ok_or_else(|| field("currency", money::CurrencyError::WrongType.into()))?;
    let currency = money::parse_currency(code).map_err(|e| field("currency", e.into()))?;
    let amount =
        money::parse_amount_literal(amount, currency).map_err(|e| field("amount", e.into()))?;
    if amount.is_zero() {
        return Err(field("amount", money::AmountError::Zero.into()));
    }
    Ok(Money { amount, currency })
}

/// A machine-readable denial reason (docs/design.md, "Verification pipeline").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReasonCode {
    /// The action is not in `actions`.
    PolicyAction,
    /// The resource is not granted (or missing when the policy lists resources).
    PolicyResource,
    /// Outside `constraints.time`.
    TimeWindow,
    /// The policy has limits and the request no amount.
    AmountRequired,
    /// The request has an amount and the policy no limits.
    AmountNotAllowed,
    /// The amount breaks the amount rules (negative, too large, too precise).
    AmountInvalid,
    /// The request's currency is not the limits' currency.
    CurrencyMismatch,
    /// Above `per_txn`.
    LimitPerTxn,
    /// Would take the period's spending above `per_period`.
    LimitPerPeriod,
}

impl ReasonCode {
    /// The wire code (`POLICY_ACTION`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PolicyAction => "POLICY_ACTION",
            Self::PolicyResource => "POLICY_RESOURCE",
            Self::TimeWindow => "TIME_WINDOW",
            Self::AmountRequired => "AMOUNT_REQUIRED",
            Self::AmountNotAllowed => "AMOUNT_NOT_ALLOWED",
            Self::AmountInvalid => "AMOUNT_INVALID",
            Self::CurrencyMismatch => "CURRENCY_MISMATCH",
            Self::LimitPerTxn => "LIMIT_PER_TXN",
            Self::LimitPerPeriod => "LIMIT_PER_PERIOD",
        }
    }
}

/// One reason a request was refused: a code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Machine-readable code.
    pub code: ReasonCode,
    /// Human explanation (user input in backticks).
    pub message: String,
}

/// What is left of the period budget after this decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remaining {
    /// Left to spend in this period, after this request if it was allowed; never
    /// negative; written with the currency's minor units (`"1099.50"`).
    pub amount: Decimal,
    /// The budget's currency.
    pub currency: Currency,
    /// The budget's period.
    pub period: BudgetPeriod,
    /// First instant of the next period (when the budget is whole again).
    pub period_ends: Timestamp,
}

/// A budget charge that an allowing decision asks the caller to record.
///
/// The store must apply it atomically and conditionally (`spent + amount <= cap` for
/// the budget keyed by issuer, policy id and `period.key`), because `spent_in_period`
/// may be stale by the time it commits: that condition is what keeps concurrent
/// requests under the cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spend {
    /// The calendar period charged.
    pub period: PeriodWindow,
    /// Amount to add.
    pub amount: Decimal,
    /// Currency of the amount and the cap.
    pub currency: Currency,
    /// `per_period` amount: the store refuses a charge that would exceed it.
    pub cap: Decimal,
}

/// The outcome of [`Policy::evaluate`]: deny unless every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True if and only if `reasons` is empty.
    pub allowed: bool,
    /// Every failed check, in check order.
    pub reasons: Vec<Reason>,
    /// The period budget after this decision, when the policy has `per_period`.
    pub remaining: Option<Remaining>,
    /// The charge to record, when allowed and the policy has `per_period`.
    pub spend: Option<Spend>,
}

impl Decision {
    /// One human sentence: `"allowed"`, or the reasons' messages joined by `; `.
    pub fn message(&self) -> String {
        if self.allowed {
            return "allowed".to_owned();
        }
        let parts: Vec<&str> = self.reasons.iter().map(|r| r.message.as_str()).collect();
        parts.join("; ")
    }

    /// The wire codes of `reasons`, in order.
    pub fn codes(&self) -> Vec<&'static str> {
        self.reasons.iter().map(|r| r.code.as_str()).collect()
    }
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

fn fmt_money(d: Decimal, c: Currency) -> String {
    let mut d = d;
    d.rescale(money::minor_units(c));
    format!("{d} {}", c.code())
}

impl Policy {
    /// Evaluates `req` at `now`, given what the current period's budget has already
    /// spent. Pure and total: never panics, never reads a clock or a store.
    pub fn evaluate(
        &self,
        req: &PolicyRequest<'_>,
        now: Timestamp,
        spent_in_period: Decimal,
    ) -> Decision {
        let mut reasons = Vec::new();
        let mut deny = |code, message: String| reasons.push(Reason { code, message });

        // 1. action
        if !self.actions.iter().any(|a| a == req.action) {
            deny(
                ReasonCode::PolicyAction,
                format!(
                    "action `{}` is not granted by policy `{}`",
                    shown(req.action),
                    shown(&self.id)
                ),
            );
        }

        // 2. resource
        match (&req.resource, self.resources.is_empty()) {
            (None, false) => deny(
                ReasonCode::PolicyResource,
                "the policy grants named resources only and the request names none".into(),
            ),
            (Some(r), true) if self.strict => deny(
                ReasonCode::PolicyResource,
                format!(
                    "resource `{}` `{}` is not granted: the strict policy names no resource",
                    shown(r.kind),
                    shown(r.id)
                ),
            ),
            (Some(r), false) if !self.resource_granted(r) => deny(
                ReasonCode::PolicyResource,
                format!(
                    "resource `{}` `{}` is not granted",
                    shown(r.kind),
                    shown(r.id)
                ),
            ),
            _ => {}
        }

        // 3. time window
        if let Some(w) = &self.time
            && !w.contains(&self.zone, now)
        {
            deny(
                ReasonCode::TimeWindow,
                "outside the policy's time window".into(),
            );
        }

        // 4. money
        let mut comparable = None;
        match (&self.limits, &req.money) {
            (None, None) => {}
            (None, Some(_)) => deny(
                ReasonCode::AmountNotAllowed,
                "the policy has no limits, so it grants no spending".into(),
            ),
            (Some(_), None) => deny(
                ReasonCode::AmountRequired,
                "the policy has limits: the request must state an amount and currency".into(),
            ),
            (Some(l), Some(m)) => {
                if let Err(e) = check_amount(m.amount, m.currency) {
                    deny(ReasonCode::AmountInvalid, format!("amount: {e}"));
                } else if m.currency != l.currency {
                    deny(
                        ReasonCode::CurrencyMismatch,
                        format!(
                            "currency `{}` differs from the policy's `{}`",
                            m.currency.code(),
                            l.currency.code()
                        ),
                    );
                } else {
                    comparable = Some(m.amount);
                }
            }
        }

        // 5. per transaction
        if let (Some(l), Some(amount)) = (&self.limits, comparable)
            && let Some(cap) = l.per_txn
            && amount > cap
        {
            deny(
                ReasonCode::LimitPerTxn,
                format!(
                    "{} is above the per-transaction limit of {}",
                    fmt_money(amount, l.currency),
                    fmt_money(cap, l.currency)
                ),
            );
        }

        // 6. per period
        let mut remaining = None;
        let mut charge = None;
        if let Some((l, (cap, period))) = self
            .limits
            .as_ref()
            .and_then(|l| l.per_period.map(|p| (l, p)))
        {
            match period_of(period, &self.zone, now) {
                Err(_) => deny(
                    ReasonCode::LimitPerPeriod,
                    "the budget period cannot be computed".into(),
                ),
                Ok(window) => {
                    if spent_in_period.is_sign_negative() && !spent_in_period.is_zero() {
                        // Only a caller bug gives a negative total; refuse rather than
                        // let it raise the budget.
                        deny(
                            ReasonCode::LimitPerPeriod,
                            "the recorded spending is invalid".into(),
                        );
                    } else if let Some(amount) = comparable {
                        match spent_in_period.checked_add(amount) {
                            Some(total) if total <= cap => charge = Some((window.clone(), amount)),
                            _ => deny(
                                ReasonCode::LimitPerPeriod,
                                format!(
                                    "{} would take this {}'s spending above its limit of {} ({} left)",
                                    fmt_money(amount, l.currency),
                                    period.as_str(),
                                    fmt_money(cap, l.currency),
                                    fmt_money(left(cap, spent_in_period), l.currency)
                                ),
                            ),
                        }
                    }
                    remaining = Some(Remaining {
                        amount: Decimal::ZERO,
                        currency: l.currency,
                        period,
                        period_ends: window.end,
                    });
                }
            }
        }

        let allowed = reasons.is_empty();
        let spent_after = match (&charge, allowed) {
            (Some((_, amount)), true) => spent_in_period.checked_add(*amount),
            _ => Some(spent_in_period),
        };
        let spend = match (charge, allowed, &self.limits) {
            (Some((period, amount)), true, Some(l)) => l.per_period.map(|(cap, _)| Spend {
                period,
                amount,
                currency: l.currency,
                cap,
            }),
            _ => None,
        };
        if let (Some(r), Some(l)) = (&mut remaining, &self.limits)
            && let Some((cap, _)) = l.per_period
        {
            let mut left = spent_after.map_or(Decimal::ZERO, |s| left(cap, s));
            left.rescale(money::minor_units(l.currency));
            r.amount = left;
        }
        Decision {
            allowed,
            reasons,
            remaining,
            spend,
        }
    }

    fn resource_granted(&self, r: &ResourceRef<'_>) -> bool {
        self.resources.iter().any(|rule| {
            rule.kind == r.kind
                && (rule.ids.iter().any(|id| id == r.id)
                    || rule.prefixes.iter().any(|p| prefix_matches(p, r.id)))
        })
    }
}

/// `cap - spent`, floored at zero.
fn left(cap: Decimal, spent: Decimal) -> Decimal {
    cap.checked_sub(spent)
        .map_or(Decimal::ZERO, |d| d.max(Decimal::ZERO))
}

/// Segment-boundary prefix match (see the module docs of [`super`]).
pub(crate) fn prefix_matches(prefix: &str, id: &str) -> bool {
    let Some(rest) = id.strip_prefix(prefix) else {
        return false;
    };
    let on_boundary =
        rest.is_empty() || prefix.ends_with(SEPARATORS) || rest.starts_with(SEPARATORS);
    // `acct/12/../13` must not pass for something under `acct/12`.
    let clean = id
        .split(SEPARATORS)
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    on_boundary && clean
}

impl TimeWindow {
    /// True if `now`, read on the wall clock of `zone`, is inside the window.
    pub fn contains(&self, zone: &jiff::tz::TimeZone, now: Timestamp) -> bool {
        let local = zone.to_datetime(now);
        let today = local.weekday().to_monday_zero_offset();
        let day_on = |offset: i8| {
            let bit = u32::try_from(offset.rem_euclid(7)).unwrap_or(0);
            self.days & (1u8 << bit) != 0
        };
        let Some((start, end)) = self.hours else {
            return day_on(today);
        };
        let minute =
            u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
        if start < end {
            day_on(today) && start <= minute && minute < end
        } else {
            // Crosses midnight: the evening part belongs to today's window, the
            // morning part to yesterday's.
            (minute >= start && day_on(today)) || (minute < end && day_on(today - 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("acct/12", "acct/12"));
        assert!(prefix_matches("acct/12", "acct/12/x"));
        assert!(prefix_matches("acct/12", "acct/12:x"));
        assert!(!prefix_matches("acct/12", "acct/123"));
        assert!(!prefix_matches("acct/12", "acct/1"));
        assert!(prefix_matches("acct/", "acct/9"));
        assert!(!prefix_matches("acct/12", "acct/12/../13"));
        assert!(!prefix_matches("acct/12", "acct/12//x"));
        assert!(!prefix_matches("acct/12", "acct/12/./x"));
        assert!(!prefix_matches("acct", "account"));
    }

    #[test]
    fn a_request_spend_of_zero_is_refused() {
        let usd = serde_json::json!("USD");
        for zero in [
            serde_json::json!("0"),
            serde_json::json!("0.00"),
            serde_json::json!(0),
        ] {
            let e = money_from_json(&zero, &usd).unwrap_err();
            assert!(e.to_string().contains("spend of 0"), "{e}");
        }
        assert!(money_from_json(&serde_json::json!("0.01"), &usd).is_ok());
    }
}
