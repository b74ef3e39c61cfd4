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
//! - `constraints.time` (optional): `tz` (optional, UTC when absent as pol.v0.2 says;
//!   an IANA name spelled exactly as in the tz database, e.g. `America/New_York`),
//!   `dow` (optional, 1–7 distinct
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
//! constraint or it names no zone; both the time window and the budget periods are
//! read in it.
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
    money_from_json, money_from_literal,
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
    /// More problems than a lint answer lists ([`MAX_PROBLEMS`]).
    #[error("and {more} more problems (fix these first)")]
    MoreProblems {
        /// How many were left out.
        more: usize,
    },
}

impl PolicyError {
    /// The JSON path of the problem, when it is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Field { path, .. } => Some(path),
            _ => None,
        }
    }

    /// What is wrong, without the path (which [`PolicyError::path`] gives): lint
    /// answers show the two apart.
    pub fn message(&self) -> String {
        match self {
            Self::Field { problem, .. } => problem.to_string(),
            other => other.to_string(),
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
    /// Parses and validates a policy from untrusted bytes; the first problem found.
    pub fn parse(bytes: &[u8]) -> Result<Policy, PolicyError> {
        Self::lint(bytes).map_err(first)
    }

    /// Like [`Policy::parse`], with every problem found, in document order: the walk
    /// goes on past a bad field to its siblings (a field it cannot read, such as a
    /// `limits` that is not an object, hides only its own members).
    pub fn lint(bytes: &[u8]) -> Result<Policy, Vec<PolicyError>> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(vec![PolicyError::TooLarge {
                size: bytes.len(),
                max: MAX_POLICY_BYTES,
            }]);
        }
        json::check(
            bytes,
            JsonLimits {
                max_depth: MAX_POLICY_DEPTH,
            },
        )
        .map_err(|e| vec![e.into()])?;
        let value: Value =
            serde_json::from_slice(bytes).map_err(|_| vec![JsonError::Syntax.into()])?;
        Self::lint_value(value)
    }

    /// Validates a policy already parsed as JSON; the first problem found.
    ///
    /// The caller must have run [`crate::json::check`] on the bytes `value` came from
    /// (token claims do, in [`crate::token`]): a `Value` has already lost duplicate
    /// members.
    pub fn from_value(value: Value) -> Result<Policy, PolicyError> {
        Self::lint_value(value).map_err(first)
    }

    /// Like [`Policy::from_value`], with every problem found.
    pub fn lint_value(value: Value) -> Result<Policy, Vec<PolicyError>> {
        let canonical = serde_json_canonicalizer::to_string(&value).map_err(|_| {
            vec![PolicyError::Field {
                path: "policy".into(),
                problem: Problem::WrongType("JSON that RFC 8785 can canonicalize"),
            }]
        })?;
        if canonical.len() > MAX_POLICY_BYTES {
            return Err(vec![PolicyError::TooLarge {
                size: canonical.len(),
                max: MAX_POLICY_BYTES,
            }]);
        }
        let mut sink = Sink::default();
        let parsed = parse_policy(&value, &mut sink);
        let parsed = match parsed {
            Some(p) if sink.0.is_empty() => p,
            _ => return Err(sink.into_errors()),
        };
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
//
// Every problem is kept (`Sink`), so that lint can show them all: a function returns
// `None` when its own value cannot be built, after recording why; siblings are still
// checked. Small readers (`string`, `array`, ...) stay `Result`: one value, one error.

/// Most problems one lint answer lists; the rest are counted.
pub const MAX_PROBLEMS: usize = 100;

/// The problems found so far (at most [`MAX_PROBLEMS`], then only counted).
#[derive(Default)]
struct Sink(Vec<PolicyError>, usize);

impl Sink {
    fn keep<T>(&mut self, r: Result<T, PolicyError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    fn push(&mut self, e: PolicyError) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(e);
        } else {
            self.1 += 1;
        }
    }

    /// The problems, with a last one counting those left out.
    fn into_errors(mut self) -> Vec<PolicyError> {
        if self.1 > 0 {
            self.0.push(PolicyError::MoreProblems { more: self.1 });
        }
        self.0
    }
}

/// The first problem of a non-empty list (an empty one cannot come from a walk that
/// failed; it reads as the document being wrong).
fn first(mut errors: Vec<PolicyError>) -> PolicyError {
    if errors.is_empty() {
        return field("policy", Problem::WrongType("a valid policy"));
    }
    errors.swap_remove(0)
}

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

/// An object; each member not in `allowed` is a problem (the others are still read).
fn object<'v>(
    v: &'v Value,
    path: &str,
    allowed: &[&str],
    expected: &'static str,
    sink: &mut Sink,
) -> Option<&'v Map<String, Value>> {
    let shown = if path.is_empty() { "policy" } else { path };
    let Some(map) = v.as_object() else {
        sink.push(field(shown, Problem::WrongType("an object")));
        return None;
    };
    for k in map.keys().filter(|k| !allowed.contains(&k.as_str())) {
        let k: String = k.chars().take(64).collect();
        sink.push(field(&join(path, &k), Problem::UnknownField { expected }));
    }
    Some(map)
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

/// Checks a policy `id` given apart from its policy (a revocation by `policy_id`)
/// with the rule a policy's own `id` is parsed by: 1 to 128 characters, none of them
/// control, invisible or bidirectional-control characters.
pub fn check_id(id: &str) -> Result<(), PolicyError> {
    text(&Value::String(id.to_owned()), "id", MAX_ID).map(|_| ())
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

/// Each entry of a list through `each`, every bad entry recorded; `None` if any was.
fn each<T>(
    items: &[Value],
    path: &str,
    sink: &mut Sink,
    mut one: impl FnMut(&Value, &str, &mut Sink) -> Option<T>,
) -> Option<Vec<T>> {
    let mut out = Vec::with_capacity(items.len());
    let mut all = true;
    for (i, it) in items.iter().enumerate() {
        match one(it, &format!("{path}[{i}]"), sink) {
            Some(v) => out.push(v),
            None => all = false,
        }
    }
    all.then_some(out)
}

/// A list of names or texts: every bad entry and every repeat is recorded.
fn strings(
    items: &[Value],
    path: &str,
    sink: &mut Sink,
    read: impl Fn(&Value, &str) -> Result<String, PolicyError>,
) -> Option<Vec<String>> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut out = Vec::with_capacity(items.len());
    let mut all = true;
    for (i, it) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match read(it, &p) {
            Ok(s) if !seen.insert(s.clone()) => {
                sink.push(field(&p, Problem::Repeated(s)));
                all = false;
            }
            Ok(s) => out.push(s),
            Err(e) => {
                sink.push(e);
                all = false;
            }
        }
    }
    all.then_some(out)
}

const TOP: &str = "version, id, actions, resources, limits, constraints, strict, meta";

fn parse_policy(v: &Value, sink: &mut Sink) -> Option<Policy> {
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
        sink,
    )?;
    let version = sink.keep((|| {
        let version = string(required(map, "", "version")?, "version")?;
        if version != POLICY_VERSION {
            let shown: String = version.chars().take(32).collect();
            return Err(field("version", Problem::Version(shown)));
        }
        Ok(())
    })());
    let id = sink.keep(required(map, "", "id").and_then(|v| text(v, "id", MAX_ID)));

    let actions = sink
        .keep(required(map, "", "actions").and_then(|a| array(a, "actions", 1, MAX_ACTIONS)))
        .and_then(|items| strings(items, "actions", sink, name));

    let resources = match map.get("resources") {
        None => Some(Vec::new()),
        Some(r) => sink
            .keep(array(r, "resources", 0, MAX_RESOURCES))
            .and_then(|items| each(items, "resources", sink, resource)),
    };

    let limits = match map.get("limits") {
        None => Some(None),
        Some(l) => limits(l, sink).map(Some),
    };

    let time = match map.get("constraints") {
        None => Some((None, TimeZone::UTC)),
        Some(c) => {
            object(c, "constraints", &["time"], "time", sink).and_then(|c| match c.get("time") {
                None => Some((None, TimeZone::UTC)),
                Some(t) => time_constraint(t, sink),
            })
        }
    };

    let strict = match map.get("strict") {
        None => Some(false),
        Some(s) => sink.keep(
            s.as_bool()
                .ok_or_else(|| field("strict", Problem::WrongType("a boolean"))),
        ),
    };

    if let Some(meta) = map.get("meta") {
        if !meta.is_object() {
            sink.push(field("meta", Problem::WrongType("an object")));
        } else {
            // Compact serde_json output: within a few bytes of the canonical form, and
            // without a second RFC 8785 pass (the slowest step of parsing).
            let size = serde_json::to_vec(meta).map_or(usize::MAX, |b| b.len());
            if size > MAX_META_BYTES {
                sink.push(field(
                    "meta",
                    Problem::TooLarge {
                        size,
                        max: MAX_META_BYTES,
                    },
                ));
            }
        }
    }

    let ((), id, actions, resources, limits, (time, zone), strict) =
        (version?, id?, actions?, resources?, limits?, time?, strict?);
    Some(Policy {
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

fn resource(v: &Value, path: &str, sink: &mut Sink) -> Option<ResourceRule> {
    let map = object(v, path, &["type", "match"], "type, match", sink)?;
    let kind = sink.keep(required(map, path, "type").and_then(|t| name(t, &join(path, "type"))));
    let mpath = join(path, "match");
    let m = sink
        .keep(required(map, path, "match"))
        .and_then(|m| object(m, &mpath, &["ids", "prefixes"], "ids, prefixes", sink));
    let (ids, prefixes) = match m {
        None => (None, None),
        Some(m) => {
            let mut list = |key: &str| -> Option<Vec<String>> {
                let p = join(&mpath, key);
                match m.get(key) {
                    None => Some(Vec::new()),
                    Some(v) => sink.keep(array(v, &p, 0, MAX_MATCHES)).and_then(|items| {
                        strings(items, &p, sink, |v, p| text(v, p, MAX_MATCH_LEN))
                    }),
                }
            };
            (list("ids"), list("prefixes"))
        }
    };
    let (kind, ids, prefixes) = (kind?, ids?, prefixes?);
    let total = ids.len() + prefixes.len();
    if total == 0 {
        sink.push(field(
            &mpath,
            Problem::NeedsOneOf("`ids` or `prefixes` (non-empty)"),
        ));
        return None;
    }
    if total > MAX_MATCHES {
        sink.push(field(
            &mpath,
            Problem::Count {
                min: 1,
                max: MAX_MATCHES,
            },
        ));
        return None;
    }
    Some(ResourceRule {
        kind,
        ids,
        prefixes,
    })
}

/// Amount and currency of a limit; both are checked (an amount is read in its
/// currency's minor units, so a bad currency hides only the amount's precision check).
fn money_of(map: &Map<String, Value>, path: &str, sink: &mut Sink) -> Option<(Decimal, Currency)> {
    let cpath = join(path, "currency");
    let currency = sink.keep(required(map, path, "currency").and_then(|c| {
        let code = c
            .as_str()
            .ok_or_else(|| field(&cpath, CurrencyError::WrongType))?;
        money::parse_currency(code).map_err(|e| field(&cpath, e))
    }));
    let apath = join(path, "amount");
    let amount = sink.keep(required(map, path, "amount"));
    let amount = match (amount, currency) {
        (Some(a), Some(c)) => sink.keep(money::parse_amount(a, c).map_err(|e| field(&apath, e))),
        _ => None,
    };
    Some((amount?, currency?))
}

fn limits(v: &Value, sink: &mut Sink) -> Option<Limits> {
    let map = object(
        v,
        "limits",
        &["per_txn", "per_period"],
        "per_txn, per_period",
        sink,
    )?;
    let per_txn = match map.get("per_txn") {
        None => Some(None),
        Some(t) => object(
            t,
            "limits.per_txn",
            &["amount", "currency"],
            "amount, currency",
            sink,
        )
        .and_then(|t| money_of(t, "limits.per_txn", sink))
        .map(Some),
    };
    let per_period = match map.get("per_period") {
        None => Some(None),
        Some(p) => {
            let path = "limits.per_period";
            object(
                p,
                path,
                &["amount", "currency", "period"],
                "amount, currency, period",
                sink,
            )
            .and_then(|p| {
                let money = money_of(p, path, sink);
                let ppath = join(path, "period");
                let period = sink.keep(required(p, path, "period").and_then(|s| {
                    let s = string(s, &ppath)?;
                    BudgetPeriod::parse(s)
                        .ok_or_else(|| field(&ppath, Problem::Period(s.chars().take(32).collect())))
                }));
                let ((amount, currency), period) = (money?, period?);
                Some((amount, currency, period))
            })
            .map(Some)
        }
    };
    let (per_txn, per_period) = (per_txn?, per_period?);
    let currency = match (&per_txn, &per_period) {
        (Some((_, a)), Some((_, b, _))) if a != b => {
            sink.push(field(
                "limits.per_period.currency",
                Problem::CurrencyDiffers {
                    expected: a.code().to_owned(),
                    found: b.code().to_owned(),
                },
            ));
            return None;
        }
        (Some((_, c)), _) | (None, Some((_, c, _))) => *c,
        (None, None) => {
            sink.push(field(
                "limits",
                Problem::NeedsOneOf("`per_txn`, `per_period`"),
            ));
            return None;
        }
    };
    Some(Limits {
        currency,
        per_txn: per_txn.map(|(a, _)| a),
        per_period: per_period.map(|(a, _, p)| (a, p)),
    })
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn time_constraint(v: &Value, sink: &mut Sink) -> Option<(Option<TimeWindow>, TimeZone)> {
    let path = "constraints.time";
    let map = object(
        v,
        path,
        &["dow", "start", "end", "tz"],
        "dow, start, end, tz",
        sink,
    )?;
    let tzpath = join(path, "tz");
    // `tz` is optional in pol.v0.2: a window without one is in UTC, as AgentOAuth's
    // SDK writes them.
    let zone = match map.get("tz") {
        None => Some(TimeZone::UTC),
        Some(tz) => sink
            .keep(string(tz, &tzpath).and_then(|tz| time_zone(tz).map_err(|p| field(&tzpath, p)))),
    };

    let days = match map.get("dow") {
        None => Some(0x7f),
        Some(d) => {
            let dpath = join(path, "dow");
            sink.keep(array(d, &dpath, 1, 7)).and_then(|items| {
                let mut mask = 0u8;
                let mut all = true;
                for (i, day) in items.iter().enumerate() {
                    let p = format!("{dpath}[{i}]");
                    let bit = sink.keep(string(day, &p).and_then(|s| {
                        let bit = DAYS.iter().position(|d| *d == s).ok_or_else(|| {
                            field(&p, Problem::Weekday(s.chars().take(16).collect()))
                        })?;
                        let bit = 1u8 << bit;
                        if mask & bit != 0 {
                            return Err(field(&p, Problem::Repeated(s.to_owned())));
                        }
                        Ok(bit)
                    }));
                    match bit {
                        Some(b) => mask |= b,
                        None => all = false,
                    }
                }
                all.then_some(mask)
            })
        }
    };

    let mut clock = |key: &str| -> Option<Option<u16>> {
        let p = join(path, key);
        match map.get(key) {
            None => Some(None),
            Some(v) => sink
                .keep(string(v, &p).and_then(|s| {
                    hh_mm(s)
                        .ok_or_else(|| field(&p, Problem::TimeOfDay(s.chars().take(16).collect())))
                }))
                .map(Some),
        }
    };
    let (start, end) = (clock("start"), clock("end"));
    let hours = match (start?, end?) {
        (None, None) => None,
        (Some(s), Some(e)) if s == e => {
            sink.push(field(&join(path, "end"), Problem::EmptyWindow));
            return None;
        }
        (Some(s), Some(e)) => Some((s, e)),
        (Some(_), None) => {
            sink.push(field(&join(path, "end"), Problem::HalfWindow));
            return None;
        }
        (None, Some(_)) => {
            sink.push(field(&join(path, "start"), Problem::HalfWindow));
            return None;
        }
    };
    let (days, zone) = (days?, zone?);
    let window = (days != 0x7f || hours.is_some()).then_some(TimeWindow { days, hours });
    Some((window, zone))
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
    fn lint_reports_every_problem_in_document_order() {
        let bad = serde_json::json!({
            "version": "pol.v0.1",
            "id": "",
            "actions": ["ok", "bad action", "ok"],
            "resources": [{"type": "merchant", "match": {"ids": []}}, {"type": 3, "match": {"ids": ["m"]}}],
            "limits": {"per_txn": {"amount": "1.001", "currency": "USD"}, "per_period": {"amount": "5", "currency": "usd", "period": "fortnight"}},
            "constraints": {"time": {"tz": "Mars/Olympus", "dow": ["Mon", "Mon"], "start": "25:00"}},
            "strict": "yes",
            "meta": [],
            "colour": "red"
        });
        let errors = Policy::lint_value(bad.clone()).err().unwrap_or_default();
        let paths: Vec<&str> = errors.iter().filter_map(PolicyError::path).collect();
        assert_eq!(
            paths,
            [
                "colour",
                "version",
                "id",
                "actions[1]",
                "actions[2]",
                "resources[0].match",
                "resources[1].type",
                "limits.per_txn.amount",
                "limits.per_period.currency",
                "limits.per_period.period",
                "constraints.time.tz",
                "constraints.time.dow[1]",
                "constraints.time.start",
                "strict",
                "meta",
            ],
            "{errors:#?}"
        );
        // The first-error API gives the first of them.
        let first = Policy::from_value(bad).err().map(|e| e.to_string());
        assert_eq!(first.as_deref(), Some(errors[0].to_string().as_str()));
    }

    #[test]
    fn lint_lists_at_most_max_problems_and_counts_the_rest() {
        let ids: Vec<serde_json::Value> = (0..250).map(serde_json::Value::from).collect();
        let bad = serde_json::json!({
            "version": "pol.v0.2", "id": "p", "actions": ["pay"],
            "resources": [{"type": "m", "match": {"ids": ids}}],
        });
        let errors = Policy::lint_value(bad).err().unwrap_or_default();
        assert_eq!(errors.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            errors.last(),
            Some(&PolicyError::MoreProblems {
                more: 250 - MAX_PROBLEMS
            })
        );
    }

    #[test]
    fn a_policy_id_alone_is_checked_as_in_a_policy() {
        assert!(check_id("pol_travel.v1").is_ok());
        assert!(check_id(&"x".repeat(MAX_ID)).is_ok());
        assert!(check_id("").is_err());
        assert!(check_id(&"x".repeat(MAX_ID + 1)).is_err());
        assert!(check_id("a\u{202e}b").is_err());
        assert!(check_id("a\nb").is_err());
    }

    #[test]
    fn lint_of_a_valid_policy_is_the_parse() {
        let good = br#"{"version":"pol.v0.2","id":"p","actions":["pay"],"limits":{"per_txn":{"amount":"10","currency":"USD"}}}"#;
        let linted = Policy::lint(good).ok().map(|p| p.hash().to_owned());
        let parsed = Policy::parse(good).ok().map(|p| p.hash().to_owned());
        assert!(linted.is_some());
        assert_eq!(linted, parsed);
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
