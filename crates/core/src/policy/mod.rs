//! Consent policies (AgentOAuth `pol.v0.2` field names) and their pure evaluation.
//!
//! A policy says which actions an agent may take on which resources, up to what
//! amount per transaction and per calendar period, in which weekly time window. It
//! travels inside a token (`policy` + `policy_hash`, docs/design.md, "Token"), is parsed
//! once into a [`Policy`] and evaluated by [`Policy::evaluate`] at pipeline step 8.
//! This module decides; it stores nothing. Charging a budget is the caller's job: a
//! [`Decision`] that allows a spend carries a [`Spend`] naming the period and the
//! cap, which a store applies atomically (docs/design.md, pipeline step 9).
//!
//! ```json
//! {
//!   "version": "pol.v0.2",
//!   "id": "pol_travel_001",
//!   "actions": ["payments.send"],
//!   "resources": [{"type": "merchant", "match": {"ids": ["airbnb"], "prefixes": ["acct/12"]}}],
//!   "limits": {
//!     "per_txn": {"amount": "500", "currency": "USD"},
//!     "per_period": {"amount": "1500", "currency": "USD", "period": "week"}
//!   },
//!   "constraints": {"time": {"dow": ["Mon", "Fri"], "start": "22:00", "end": "06:00", "tz": "America/New_York"}},
//!   "strict": false,
//!   "meta": {"note": "free JSON, at most 4 KiB"}
//! }
//! ```
//!
//! # Parsing
//!
//! [`Policy::parse`] runs [`crate::json::check`] (duplicate members, depth) on the
//! bytes, then walks the value field by field: every object refuses members it does
//! not know (like serde's `deny_unknown_fields`), and every error names the JSON path
//! of the problem (`limits.per_txn.amount: JSON floats are refused…`). The walk is
//! written out rather than derived because serde_json reports line and column, not
//! paths, and cannot tell the policy's author which of two amounts was wrong.
//!
//! Rules (each one an error at registration, never silently ignored):
//! - `version` is exactly `"pol.v0.2"`.
//! - `id`: 1–128 characters, none of the characters [`crate::names`] refuses
//!   (controls, invisible, bidirectional-control, line separators).
//! - `actions`: 1–64 entries, each 1–128 characters of `[a-zA-Z0-9_:.-]`, no repeats.
//!   Actions compare exactly (no wildcards, case-sensitive).
//! - `resources` (optional, at most 64): `type` as an action, and `match` with `ids`
//!   and/or `prefixes` (together 1–256 entries, each 1–256 characters, none of the
//!   characters [`crate::names`] refuses).
//! - `limits` (optional): at least one of `per_txn {amount, currency}` and
//!   `per_period {amount, currency, period}`; both in the same currency. Amounts and
//!   currencies follow [`money`].
//! - `constraints.time` (optional): `tz` (required; an IANA name spelled exactly as
//!   in the tz database, e.g. `America/New_York`), `dow` (optional, 1–7 distinct
//!   days of `Mon Tue Wed Thu Fri Sat Sun`), `start`/`end` (optional, together,
//!   `"HH:MM"` with `00`–`23` and `00`–`59`, not equal).
//! - `strict` (optional boolean, default false), `meta` (optional object, at most
//!   4 KiB as compact JSON).
//! - The whole policy is at most [`MAX_POLICY_BYTES`].
//!
//! # Matching
//!
//! Resource prefixes match on a segment boundary: the separators are `/` and `:`, and
//! prefix `acct/12` matches `acct/12`, `acct/12/x` and `acct/12:x` but not `acct/123`
//! (a prefix that itself ends in a separator, such as `acct/`, matches whatever
//! follows). An id with an empty, `.` or `..` segment (`acct/12/../13`) matches no
//! prefix, only an exact entry of `ids`.
//!
//! The policy's zone is `constraints.time.tz`, or UTC when there is no time
//! constraint; both the time window and the budget periods are read in it.
//!
//! # Hash
//!
//! `policy_hash` is `"sha256:"` and the lowercase hex SHA-256 of the RFC 8785 (JCS)
//! form of the policy as given, so reformatting or reordering members never changes
//! it, and AgentOAuth-style integer amounts (`500`) hash as they were written.

mod eval;
// For delegation's narrowing checks: one prefix rule for evaluation and narrowing.
pub(crate) use self::eval::{SEPARATORS, prefix_matches};
pub mod money;
mod period;

use std::collections::HashSet;

use jiff::tz::TimeZoneDatabase;
use serde_json::{Map, Value};

pub use self::eval::{
    Decision, Money, PolicyRequest, Reason, ReasonCode, Remaining, ResourceRef, Spend,
    money_from_json,
};
pub use self::money::{AmountError, CurrencyError};
pub use self::period::{BudgetPeriod, PeriodWindow, period_of};
use crate::json::{self, JsonError, JsonLimits};
pub use iso_currency::Currency;
pub use jiff::{Timestamp, tz::TimeZone};
pub use rust_decimal::Decimal;

/// The only policy version accepted.
pub const POLICY_VERSION: &str = "pol.v0.2";
/// Largest policy accepted, in bytes (as given, and in canonical form).
pub const MAX_POLICY_BYTES: usize = 16 * 1024;
/// Largest `meta` object, in bytes of its compact JSON form.
pub const MAX_META_BYTES: usize = 4 * 1024;
/// Deepest JSON nesting accepted (the policy itself uses 4 levels; the rest is `meta`).
pub const MAX_POLICY_DEPTH: usize = 12;
const MAX_ID: usize = 128;
const MAX_ACTIONS: usize = 64;
const MAX_RESOURCES: usize = 64;
const MAX_MATCHES: usize = 256;
const MAX_MATCH_LEN: usize = 256;

/// Why a policy (or the money of a request) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not JSON, a duplicate member, or nested too deep.
    #[error("policy: {0}")]
    Json(#[from] JsonError),
    /// Larger than [`MAX_POLICY_BYTES`].
    #[error("policy: {size} bytes, at most {max}")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// One field is wrong; `path` is its JSON path (`limits.per_txn.amount`).
    #[error("{path}: {problem}")]
    Field {
        /// JSON path of the field (`policy` for the document itself).
        path: String,
        /// What is wrong with it.
        problem: Problem,
    },
    /// An instant too close to the ends of the representable time range.
    #[error("time out of range")]
    TimeOutOfRange,
}

impl PolicyError {
    /// The JSON path of the problem, when it is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Field { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// What is wrong with one field of a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A member this version does not define.
    #[error("unknown field (expected one of {expected})")]
    UnknownField {
        /// The members allowed here, comma separated.
        expected: &'static str,
    },
    /// A required member is absent.
    #[error("missing")]
    Missing,
    /// A member of the wrong JSON type.
    #[error("must be {0}")]
    WrongType(&'static str),
    /// A `version` other than `pol.v0.2`.
    #[error("unsupported version `{0}` (only `pol.v0.2`)")]
    Version(String),
    /// Empty, too long, or a character outside the allowed set.
    #[error("{0}")]
    BadText(String),
    /// A list with too few or too many entries.
    #[error("must have {min} to {max} entries")]
    Count {
        /// Fewest entries.
        min: usize,
        /// Most entries.
        max: usize,
    },
    /// The same entry twice in a list.
    #[error("`{0}` appears twice")]
    Repeated(String),
    /// An object that needs at least one of some members.
    #[error("needs at least one of {0}")]
    NeedsOneOf(&'static str),
    /// A bad amount.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// A bad currency code.
    #[error(transparent)]
    Currency(#[from] CurrencyError),
    /// `per_txn` and `per_period` in different currencies.
    #[error("`{found}` differs from `limits.per_txn.currency` `{expected}`")]
    CurrencyDiffers {
        /// The `per_txn` currency.
        expected: String,
        /// This currency.
        found: String,
    },
    /// Not one of `hour`, `day`, `week`, `month`.
    #[error("`{0}` is not a period (use hour, day, week or month)")]
    Period(String),
    /// Not an IANA time zone name.
    #[error("`{0}` is not an IANA time zone name (such as `America/New_York`)")]
    TimeZone(String),
    /// An IANA name in the wrong case.
    #[error("`{given}`: time zone names are case-sensitive, use `{canonical}`")]
    TimeZoneCase {
        /// As given.
        given: String,
        /// As the tz database spells it.
        canonical: String,
    },
    /// Not `"HH:MM"` on a 24-hour clock.
    #[error("`{0}` is not a time of day `HH:MM` (00:00 to 23:59)")]
    TimeOfDay(String),
    /// `start` without `end` or the reverse.
    #[error("`start` and `end` go together")]
    HalfWindow,
    /// `start` equal to `end`: empty or all day, ambiguous.
    #[error("`start` equals `end`; omit both for the whole day")]
    EmptyWindow,
    /// Not a day of the week.
    #[error("`{0}` is not a day (use Mon, Tue, Wed, Thu, Fri, Sat or Sun)")]
    Weekday(String),
    /// An object beyond its size bound.
    #[error("{size} bytes, at most {max}")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// Limit.
        max: usize,
    },
}

/// A parsed, validated `pol.v0.2` consent policy.
#[derive(Debug, Clone)]
pub struct Policy {
    id: String,
    actions: Vec<String>,
    resources: Vec<ResourceRule>,
    limits: Option<Limits>,
    time: Option<TimeWindow>,
    zone: TimeZone,
    strict: bool,
    value: Value,
    canonical: String,
    hash: String,
}

/// One entry of `resources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRule {
    /// Resource type (`merchant`).
    pub kind: String,
    /// Ids matched exactly.
    pub ids: Vec<String>,
    /// Ids matched by prefix on a segment boundary.
    pub prefixes: Vec<String>,
}

/// `limits`: at least one of the two, in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The currency of every limit.
    pub currency: Currency,
    /// Most one request may spend.
    pub per_txn: Option<Decimal>,
    /// Most all requests of one calendar period may spend together.
    pub per_period: Option<(Decimal, BudgetPeriod)>,
}

/// `constraints.time`: when, in the policy's zone, requests are allowed.
///
/// The window is `[start, end)` on the local wall clock (end exclusive: 08:00–20:00
/// allows 19:59:59 and refuses 20:00:00). `start > end` crosses midnight (22:00–06:00).
/// `dow` lists the days a window *starts* on: with `dow: ["Fri"]` and 22:00–06:00,
/// Saturday 02:00 is inside (Friday night's window) and Friday 02:00 is not. Without
/// `start`/`end`, the listed days are allowed whole. Times are read on the wall clock,
/// so a window over a skipped hour is shorter that day and one over a repeated hour
/// is longer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeWindow {
    /// Allowed days as a bit set, bit 0 = Monday; `0x7f` when `dow` is absent.
    pub days: u8,
    /// Start and end in minutes after local midnight, when given.
    pub hours: Option<(u16, u16)>,
}

impl Policy {
    /// Parses and validates a policy from untrusted bytes.
    pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                size: bytes.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        json::check(
            bytes,
            JsonLimits {
                max_depth: MAX_POLICY_DEPTH,
            },
        )?;
        let value: Value = serde_json::from_slice(bytes).map_err(|_| JsonError::Syntax)?;
        Self::from_value(value)
    }

    /// Validates a policy already parsed as JSON.
    ///
    /// The caller must have run [`crate::json::check`] on the bytes `value` came from
    /// (token claims do, in [`crate::token`]): a `Value` has already lost duplicate
    /// members.
    pub fn from_value(value: Value) -> Result<Policy, PolicyError> {
        let canonical =
            serde_json_canonicalizer::to_string(&value).map_err(|_| PolicyError::Field {
                path: "policy".into(),
                problem: Problem::WrongType("JSON that RFC 8785 can canonicalize"),
            })?;
        if canonical.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                size: canonical.len(),
                max: MAX_POLICY_BYTES,
            });
        }
        let parsed = parse_policy(&value)?;
        let hash = format!(
            "sha256:{}",
            crate::hex(&crate::sha256(canonical.as_bytes()))
        );
        Ok(Policy {
            value,
            canonical,
            hash,
            ..parsed
        })
    }

    /// `id`.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `actions`.
    pub fn actions(&self) -> &[String] {
        &self.actions
    }
    /// `resources`.
    pub fn resources(&self) -> &[ResourceRule] {
        &self.resources
    }
    /// `limits`.
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_ref()
    }
    /// `constraints.time`, without its zone (see [`Policy::zone`]).
    pub fn time_window(&self) -> Option<&TimeWindow> {
        self.time.as_ref()
    }
    /// The policy's zone: `constraints.time.tz`, or UTC.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }
    /// `strict`.
    pub fn strict(&self) -> bool {
        self.strict
    }
    /// The policy as given (for embedding in a token).
    pub fn as_value(&self) -> &Value {
        &self.value
    }
    /// The RFC 8785 canonical JSON text of the policy.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }
    /// `policy_hash`: `"sha256:"` + lowercase hex of SHA-256 of [`Policy::canonical`].
    pub fn hash(&self) -> &str {
        &self.hash
    }
    /// True if `claimed` (a token's `policy_hash`) is this policy's hash.
    pub fn hash_matches(&self, claimed: &str) -> bool {
        crate::ct_eq(self.hash.as_bytes(), claimed.as_bytes())
    }
}

/// Looks up an IANA zone in the tzdb compiled into the binary (no filesystem access).
/// The name must be spelled exactly as the database does.
pub fn time_zone(name: &str) -> Result<TimeZone, Problem> {
    let shown = || name.chars().take(64).collect::<String>();
    if name.is_empty() || name.len() > 64 {
        return Err(Problem::TimeZone(shown()));
    }
    let tz = TimeZoneDatabase::bundled()
        .get(name)
        .map_err(|_| Problem::TimeZone(shown()))?;
    match tz.iana_name() {
        Some(canonical) if canonical == name => Ok(tz),
        Some("Etc/Unknown") | None => Err(Problem::TimeZone(shown())),
        Some(canonical) => Err(Problem::TimeZoneCase {
            given: shown(),
            canonical: canonical.to_owned(),
        }),
    }
}

// ---- the walk -------------------------------------------------------------------

fn field(path: &str, problem: impl Into<Problem>) -> PolicyError {
    PolicyError::Field {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// An object whose members are all in `allowed`.
fn object<'v>(
    v: &'v Value,
    path: &str,
    allowed: &[&str],
    expected: &'static str,
) -> Result<&'v Map<String, Value>, PolicyError> {
    let shown = if path.is_empty() { "policy" } else { path };
    let map = v
        .as_object()
        .ok_or_else(|| field(shown, Problem::WrongType("an object")))?;
    if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let k: String = k.chars().take(64).collect();
        return Err(field(&join(path, &k), Problem::UnknownField { expected }));
    }
    Ok(map)
}

fn required<'v>(
    map: &'v Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'v Value, PolicyError> {
    map.get(key)
        .ok_or_else(|| field(&join(path, key), Problem::Missing))
}

fn string<'v>(v: &'v Value, path: &str) -> Result<&'v str, PolicyError> {
    v.as_str()
        .ok_or_else(|| field(path, Problem::WrongType("a string")))
}

fn array<'v>(v: &'v Value, path: &str, min: usize, max: usize) -> Result<&'v [Value], PolicyError> {
    let a = v
        .as_array()
        .ok_or_else(|| field(path, Problem::WrongType("an array")))?;
    if a.len() < min || a.len() > max {
        return Err(field(path, Problem::Count { min, max }));
    }
    Ok(a)
}

fn text(v: &Value, path: &str, max: usize) -> Result<String, PolicyError> {
    let s = string(v, path)?;
    if s.is_empty() || s.chars().count() > max {
        return Err(field(
            path,
            Problem::BadText(format!("must be 1 to {max} characters")),
        ));
    }
    if let Some(c) = crate::names::forbidden_char(s) {
        return Err(field(
            path,
            Problem::BadText(format!(
                "{} is refused (control, invisible, bidirectional-control and line-separator characters are)",
                crate::names::describe(c)
            )),
        ));
    }
    Ok(s.to_owned())
}

/// `[a-zA-Z0-9_:.-]+`, at most 128 characters.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'.' | b'-'))
}

fn name(v: &Value, path: &str) -> Result<String, PolicyError> {
    let s = string(v, path)?;
    if !is_name(s) {
        let shown: String = s.chars().take(64).collect();
        return Err(field(
            path,
            Problem::BadText(format!(
                "`{shown}` must be 1 to 128 characters of a-z A-Z 0-9 _ : . -"
            )),
        ));
    }
    Ok(s.to_owned())
}

fn distinct(items: &[String], path: &str) -> Result<(), PolicyError> {
    let mut seen = HashSet::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        if !seen.insert(it.as_str()) {
            return Err(field(
                &format!("{path}[{i}]"),
                Problem::Repeated(it.clone()),
            ));
        }
    }
    Ok(())
}

const TOP: &str = "version, id, actions, resources, limits, constraints, strict, meta";

fn parse_policy(v: &Value) -> Result<Policy, PolicyError> {
    let map = object(
        v,
        "",
        &[
            "version",
            "id",
            "actions",
            "resources",
            "limits",
            "constraints",
            "strict",
            "meta",
        ],
        TOP,
    )?;
    let version = string(required(map, "", "version")?, "version")?;
    if version != POLICY_VERSION {
        let shown: String = version.chars().take(32).collect();
        return Err(field("version", Problem::Version(shown)));
    }
    let id = text(required(map, "", "id")?, "id", MAX_ID)?;

    let actions = array(required(map, "", "actions")?, "actions", 1, MAX_ACTIONS)?
        .iter()
        .enumerate()
        .map(|(i, a)| name(a, &format!("actions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    distinct(&actions, "actions")?;

    let resources = match map.get("resources") {
        None => Vec::new(),
        Some(r) => array(r, "resources", 0, MAX_RESOURCES)?
            .iter()
            .enumerate()
            .map(|(i, r)| resource(r, &format!("resources[{i}]")))
            .collect::<Result<Vec<_>, _>>()?,
    };

    let limits = map.get("limits").map(limits).transpose()?;

    let (time, zone) = match map.get("constraints") {
        None => (None, TimeZone::UTC),
        Some(c) => {
            let c = object(c, "constraints", &["time"], "time")?;
            match c.get("time") {
                None => (None, TimeZone::UTC),
                Some(t) => {
                    let (w, z) = time_constraint(t)?;
                    (w, z)
                }
            }
        }
    };

    let strict = match map.get("strict") {
        None => false,
        Some(s) => s
            .as_bool()
            .ok_or_else(|| field("strict", Problem::WrongType("a boolean")))?,
    };

    if let Some(meta) = map.get("meta") {
        if !meta.is_object() {
            return Err(field("meta", Problem::WrongType("an object")));
        }
        // Compact serde_json output: within a few bytes of the canonical form, and
        // without a second RFC 8785 pass (the slowest step of parsing).
        let size = serde_json::to_vec(meta).map_or(usize::MAX, |b| b.len());
        if size > MAX_META_BYTES {
            return Err(field(
                "meta",
                Problem::TooLarge {
                    size,
                    max: MAX_META_BYTES,
                },
            ));
        }
    }

    Ok(Policy {
        id,
        actions,
        resources,
        limits,
        time,
        zone,
        strict,
        value: Value::Null,
        canonical: String::new(),
        hash: String::new(),
    })
}

fn resource(v: &Value, path: &str) -> Result<ResourceRule, PolicyError> {
    let map = object(v, path, &["type", "match"], "type, match")?;
    let kind = name(required(map, path, "type")?, &join(path, "type"))?;
    let mpath = join(path, "match");
    let m = object(
        required(map, path, "match")?,
        &mpath,
        &["ids", "prefixes"],
        "ids, prefixes",
    )?;
    let list = |key: &str| -> Result<Vec<String>, PolicyError> {
        let p = join(&mpath, key);
        let items = match m.get(key) {
            None => return Ok(Vec::new()),
            Some(v) => array(v, &p, 0, MAX_MATCHES)?,
        };
        let out = items
            .iter()
            .enumerate()
            .map(|(i, s)| text(s, &format!("{p}[{i}]"), MAX_MATCH_LEN))
            .collect::<Result<Vec<_>, _>>()?;
        distinct(&out, &p)?;
        Ok(out)
    };
    let ids = list("ids")?;
    let prefixes = list("prefixes")?;
    let total = ids.len() + prefixes.len();
    if total == 0 {
        return Err(field(
            &mpath,
            Problem::NeedsOneOf("`ids` or `prefixes` (non-empty)"),
        ));
    }
    if total > MAX_MATCHES {
        return Err(field(
            &mpath,
            Problem::Count {
                min: 1,
                max: MAX_MATCHES,
            },
        ));
    }
    Ok(ResourceRule {
        kind,
        ids,
        prefixes,
    })
}

fn money_of(map: &Map<String, Value>, path: &str) -> Result<(Decimal, Currency), PolicyError> {
    let cpath = join(path, "currency");
    let code = required(map, path, "currency")?
        .as_str()
        .ok_or_else(|| field(&cpath, CurrencyError::WrongType))?;
    let currency = money::parse_currency(code).map_err(|e| field(&cpath, e))?;
    let apath = join(path, "amount");
    let amount = money::parse_amount(required(map, path, "amount")?, currency)
        .map_err(|e| field(&apath, e))?;
    Ok((amount, currency))
}

fn limits(v: &Value) -> Result<Limits, PolicyError> {
    let map = object(
        v,
        "limits",
        &["per_txn", "per_period"],
        "per_txn, per_period",
    )?;
    let per_txn = match map.get("per_txn") {
        None => None,
        Some(t) => {
            let t = object(
                t,
                "limits.per_txn",
                &["amount", "currency"],
                "amount, currency",
            )?;
            Some(money_of(t, "limits.per_txn")?)
        }
    };
    let per_period = match map.get("per_period") {
        None => None,
        Some(p) => {
            let path = "limits.per_period";
            let p = object(
                p,
                path,
                &["amount", "currency", "period"],
                "amount, currency, period",
            )?;
            let (amount, currency) = money_of(p, path)?;
            let ppath = join(path, "period");
            let s = string(required(p, path, "period")?, &ppath)?;
            let period = BudgetPeriod::parse(s)
                .ok_or_else(|| field(&ppath, Problem::Period(s.chars().take(32).collect())))?;
            Some((amount, currency, period))
        }
    };
    let currency = match (&per_txn, &per_period) {
        (Some((_, a)), Some((_, b, _))) if a != b => {
            return Err(field(
                "limits.per_period.currency",
                Problem::CurrencyDiffers {
                    expected: a.code().to_owned(),
                    found: b.code().to_owned(),
                },
            ));
        }
        (Some((_, c)), _) | (None, Some((_, c, _))) => *c,
        (None, None) => {
            return Err(field(
                "limits",
                Problem::NeedsOneOf("`per_txn`, `per_period`"),
            ));
        }
    };
    Ok(Limits {
        currency,
        per_txn: per_txn.map(|(a, _)| a),
        per_period: per_period.map(|(a, _, p)| (a, p)),
    })
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn time_constraint(v: &Value) -> Result<(Option<TimeWindow>, TimeZone), PolicyError> {
    let path = "constraints.time";
    let map = object(
        v,
        path,
        &["dow", "start", "end", "tz"],
        "dow, start, end, tz",
    )?;
    let tzpath = join(path, "tz");
    let tz = string(required(map, path, "tz")?, &tzpath)?;
    let zone = time_zone(tz).map_err(|p| field(&tzpath, p))?;

    let days = match map.get("dow") {
        None => 0x7f,
        Some(d) => {
            let dpath = join(path, "dow");
            let mut mask = 0u8;
            for (i, day) in array(d, &dpath, 1, 7)?.iter().enumerate() {
                let p = format!("{dpath}[{i}]");
                let s = string(day, &p)?;
                let bit = DAYS
                    .iter()
                    .position(|d| *d == s)
                    .ok_or_else(|| field(&p, Problem::Weekday(s.chars().take(16).collect())))?;
                let bit = 1u8 << bit;
                if mask & bit != 0 {
                    return Err(field(&p, Problem::Repeated(s.to_owned())));
                }
                mask |= bit;
            }
            mask
        }
    };

    let clock = |key: &str| -> Result<Option<u16>, PolicyError> {
        let p = join(path, key);
        map.get(key)
            .map(|v| {
                let s = string(v, &p)?;
                hh_mm(s).ok_or_else(|| field(&p, Problem::TimeOfDay(s.chars().take(16).collect())))
            })
            .transpose()
    };
    let hours = match (clock("start")?, clock("end")?) {
        (None, None) => None,
        (Some(s), Some(e)) if s == e => {
            return Err(field(&join(path, "end"), Problem::EmptyWindow));
        }
        (Some(s), Some(e)) => Some((s, e)),
        (Some(_), None) => return Err(field(&join(path, "end"), Problem::HalfWindow)),
        (None, Some(_)) => return Err(field(&join(path, "start"), Problem::HalfWindow)),
    };
    let window = (days != 0x7f || hours.is_some()).then_some(TimeWindow { days, hours });
    Ok((window, zone))
}

/// `"HH:MM"`, 00:00 to 23:59, exactly five characters.
fn hh_mm(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    let [h1, h0, b':', m1, m0] = *b else {
        return None;
    };
    let digit = |c: u8| c.is_ascii_digit().then(|| u16::from(c - b'0'));
    let h = digit(h1)? * 10 + digit(h0)?;
    let m = digit(m1)? * 10 + digit(m0)?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hh_mm_is_strict() {
        assert_eq!(hh_mm("00:00"), Some(0));
        assert_eq!(hh_mm("23:59"), Some(23 * 60 + 59));
        for bad in [
            "24:00", "7:00", "07:0", "07-00", "07:60", " 07:00", "0700", "０7:00",
        ] {
            assert_eq!(hh_mm(bad), None, "{bad}");
        }
    }

    #[test]
    fn policy_text_refuses_what_names_refuse() {
        let policy = |id: &str| serde_json::json!({"version": "pol.v0.2", "id": id, "actions": ["payments.send"]});
        assert!(Policy::from_value(policy("pol_travel")).is_ok());
        for c in ['\u{202E}', '\u{200B}', '\u{2028}', '\u{FEFF}', '\u{7}'] {
            let err = Policy::from_value(policy(&format!("pol{c}travel")))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(&crate::names::describe(c)), "{err}");
        }
    }

    #[test]
    fn zones_are_looked_up_exactly() {
        assert!(time_zone("America/New_York").is_ok());
        assert!(time_zone("UTC").is_ok());
        assert!(matches!(
            time_zone("america/new_york"),
            Err(Problem::TimeZoneCase { .. })
        ));
        assert!(matches!(
            time_zone("Mars/Olympus"),
            Err(Problem::TimeZone(_))
        ));
        assert!(matches!(
            time_zone("Etc/Unknown"),
            Err(Problem::TimeZone(_))
        ));
        assert!(matches!(time_zone(""), Err(Problem::TimeZone(_))));
    }
}
