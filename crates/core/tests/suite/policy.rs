//! Consent policies: table-driven evaluation cases, period windows and parse errors
//! from `tests/data/policy/`, plus property tests.
//!
//! Data layout (described in `tests/data/policy/README.md`):
//! - `eval/*.json`: one policy and the requests evaluated against it;
//! - `periods.json`: calendar periods (`period_of`) at DST changes and boundaries;
//! - `fail/*.json`: one refused policy a file, verbatim bytes; `fail/expected.json`
//!   maps each file to the exact error message;
//! - `request_errors.json`: refused request amounts and currencies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use bonafide_core::policy::{
    BudgetPeriod, Currency, Decimal, Money, Policy, PolicyRequest, ResourceRef, Timestamp,
    money_from_json, period_of, time_zone,
};
use jiff::tz::TimeZoneDatabase;
use jiff::{SignedDuration, ToSpan};
use proptest::prelude::*;
use serde_json::{Value, json};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/policy")
        .join(rel)
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ts(s: &str) -> Timestamp {
    s.parse()
        .unwrap_or_else(|e| panic!("bad timestamp `{s}`: {e}"))
}

fn files(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(data(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    out
}

/// Runs one request of an eval file; returns a description of the mismatch, if any.
fn run_case(policy: &Policy, case: &Value) -> Result<(), String> {
    let req = &case["request"];
    let action = req["action"].as_str().unwrap_or("");
    let resource = req.get("resource").map(|r| ResourceRef {
        kind: r["type"].as_str().unwrap(),
        id: r["id"].as_str().unwrap(),
    });
    let money = match (req.get("amount"), req.get("currency")) {
        (Some(a), Some(c)) => Some(money_from_json(a, c).map_err(|e| format!("request: {e}"))?),
        (None, None) => None,
        _ => return Err("request: amount and currency go together".into()),
    };
    let request = PolicyRequest {
        action,
        resource,
        money,
    };
    let now = ts(case["now"].as_str().unwrap());
    let spent: Decimal = case
        .get("spent")
        .and_then(Value::as_str)
        .unwrap_or("0")
        .parse()
        .unwrap();
    let d = policy.evaluate(&request, now, spent);

    let mut problems = Vec::new();
    let want_allowed = case["allowed"].as_bool().unwrap();
    if d.allowed != want_allowed {
        problems.push(format!("allowed: got {}, want {want_allowed}", d.allowed));
    }
    let want_reasons: Vec<&str> = case["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    if d.codes() != want_reasons {
        problems.push(format!(
            "reasons: got {:?}, want {want_reasons:?} ({})",
            d.codes(),
            d.message()
        ));
    }
    if d.allowed != d.reasons.is_empty() {
        problems.push("allowed disagrees with reasons".into());
    }
    if let Some(want) = case.get("remaining") {
        let got = d.remaining.as_ref().map(|r| {
            json!({
                "amount": r.amount.to_string(),
                "currency": r.currency.code(),
                "period": r.period.as_str(),
                "period_ends": r.period_ends.to_string(),
            })
        });
        let got = got.unwrap_or(Value::Null);
        if &got != want {
            problems.push(format!("remaining: got {got}, want {want}"));
        }
    }
    if let Some(want) = case.get("spend_key") {
        let got = d
            .spend
            .as_ref()
            .map_or(Value::Null, |s| json!(s.period.key));
        if &got != want {
            problems.push(format!("spend_key: got {got}, want {want}"));
        }
    }
    if let Some(s) = &d.spend {
        if !d.allowed {
            problems.push("a denied decision carries a spend".into());
        }
        if Some(s.amount) != request.money.map(|m| m.amount) {
            problems.push("spend amount differs from the request".into());
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

#[test]
fn evaluation_cases() {
    let mut failures = Vec::new();
    let mut count = 0;
    let mut codes_seen = std::collections::BTreeSet::new();
    for path in files("eval") {
        let file = read_json(&path);
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = serde_json::to_vec(&file["policy"]).unwrap();
        let policy = match Policy::parse(&bytes) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: policy refused: {e}"));
                continue;
            }
        };
        for case in file["cases"].as_array().unwrap() {
            count += 1;
            for r in case["reasons"].as_array().unwrap() {
                codes_seen.insert(r.as_str().unwrap().to_owned());
            }
            if let Err(e) = run_case(&policy, case) {
                failures.push(format!(
                    "{name} / {}:\n    {e}",
                    case["name"].as_str().unwrap_or("?")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let every = [
        "POLICY_ACTION",
        "POLICY_RESOURCE",
        "TIME_WINDOW",
        "AMOUNT_REQUIRED",
        "AMOUNT_NOT_ALLOWED",
        "CURRENCY_MISMATCH",
        "LIMIT_PER_TXN",
        "LIMIT_PER_PERIOD",
    ];
    for code in every {
        assert!(codes_seen.contains(code), "no data case produces {code}");
    }
    assert!(count >= 60, "only {count} cases");
    eprintln!("{count} evaluation cases");
}

#[test]
fn period_cases() {
    let cases = read_json(&data("periods.json"));
    let mut failures = Vec::new();
    for c in cases.as_array().unwrap() {
        let period = BudgetPeriod::parse(c["period"].as_str().unwrap()).unwrap();
        let tz = time_zone(c["tz"].as_str().unwrap()).unwrap();
        let now = ts(c["now"].as_str().unwrap());
        let w = period_of(period, &tz, now).unwrap();
        let got = json!({"key": w.key, "start": w.start.to_string(), "end": w.end.to_string()});
        let want = json!({"key": c["key"], "start": c["start"], "end": c["end"]});
        if got != want {
            failures.push(format!(
                "{}: got {got}, want {want}",
                c["name"].as_str().unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parse_error_cases() {
    let expected: BTreeMap<String, String> =
        serde_json::from_value(read_json(&data("fail/expected.json"))).unwrap();
    let mut failures = Vec::new();
    let mut seen = 0;
    for path in files("fail") {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "expected" {
            continue;
        }
        seen += 1;
        let Some(want) = expected.get(&name) else {
            failures.push(format!("{name}: no entry in fail/expected.json"));
            continue;
        };
        match Policy::parse(&fs::read(&path).unwrap()) {
            Ok(_) => failures.push(format!("{name}: accepted")),
            Err(e) if &e.to_string() != want => {
                failures.push(format!("{name}:\n    got  {e}\n    want {want}"))
            }
            Err(_) => {}
        }
    }
    assert_eq!(
        seen,
        expected.len(),
        "fail/expected.json names files that do not exist"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn request_error_cases() {
    let cases = read_json(&data("request_errors.json"));
    for c in cases.as_array().unwrap() {
        let got = money_from_json(&c["amount"], &c["currency"]).map_err(|e| e.to_string());
        assert_eq!(
            got,
            Err(c["error"].as_str().unwrap().to_owned()),
            "{}",
            c["name"]
        );
    }
}

#[test]
fn policy_hash_is_sha256_of_jcs() {
    let text = fs::read_to_string(data("eval/travel_agentoauth_example.json")).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    let p = Policy::parse(&serde_json::to_vec(&file["policy"]).unwrap()).unwrap();
    let jcs = serde_json_canonicalizer::to_vec(&file["policy"]).unwrap();
    let want = format!(
        "sha256:{}",
        bonafide_core::hex(&bonafide_core::sha256(&jcs))
    );
    assert_eq!(p.hash(), want);
    assert_eq!(p.canonical().as_bytes(), &jcs[..]);
    assert!(p.hash_matches(&want));
    assert!(!p.hash_matches(&want.replace("sha256:", "sha256:0")));
}

/// Walks each zone's periods across every transition between 1990 and 2040 and checks
/// the invariant of `period_of`: `start <= now < end`, no gaps, and overlaps only where
/// a zone's clocks fell back across midnight.
#[test]
fn periods_tile_time_in_every_zone() {
    let db = TimeZoneDatabase::bundled();
    let from = ts("1990-01-01T00:00:00Z");
    let to = ts("2040-01-01T00:00:00Z");
    let all = [
        BudgetPeriod::Hour,
        BudgetPeriod::Day,
        BudgetPeriod::Week,
        BudgetPeriod::Month,
    ];
    let mut checked = 0u64;
    let mut overlapping = std::collections::BTreeSet::new();
    for name in db.available() {
        let tz = db.get(name.as_str()).unwrap();
        let mut transitions: Vec<Timestamp> = tz
            .following(from)
            .map(|t| t.timestamp())
            .take_while(|t| *t < to)
            .collect();
        transitions.push(ts("2028-02-29T12:00:00Z"));
        for t in transitions {
            // Every kind, just around the transition.
            for period in all {
                for delta in [-3600, -1, 0, 1, 60, 3600] {
                    let at = t.checked_add(SignedDuration::from_secs(delta)).unwrap();
                    let w = period_of(period, &tz, at).unwrap();
                    assert!(
                        w.start <= at && at < w.end,
                        "{name} {period:?} at {at}: {w:?}"
                    );
                    let next = period_of(period, &tz, w.end).unwrap();
                    assert!(
                        next.start <= w.end,
                        "{name} {period:?}: gap before {}",
                        w.end
                    );
                    assert_ne!(
                        next.key, w.key,
                        "{name} {period:?}: key repeats at {}",
                        w.end
                    );
                    if next.start < w.end {
                        overlapping.insert(name.as_str().to_owned());
                    }
                    checked += 1;
                }
            }
            // Hours and days walked end to end.
            for (period, span, longest) in [(BudgetPeriod::Hour, 3, 1), (BudgetPeriod::Day, 50, 48)]
            {
                let mut now = t.checked_sub(SignedDuration::from_hours(span)).unwrap();
                let stop = t.checked_add(SignedDuration::from_hours(span)).unwrap();
                let mut last_key = String::new();
                while now < stop {
                    let w = period_of(period, &tz, now).unwrap();
                    assert!(
                        w.start <= now && now < w.end,
                        "{name} {period:?} at {now}: {w:?}"
                    );
                    assert!(
                        w.end.duration_since(w.start) <= SignedDuration::from_hours(longest),
                        "{name} {period:?} at {now}: {w:?}"
                    );
                    assert_ne!(w.key, last_key, "{name} {period:?} at {now}: key repeats");
                    if period == BudgetPeriod::Hour && !last_key.is_empty() {
                        assert_eq!(w.start, now, "{name}: hours overlap at {now}");
                    }
                    let mid = w
                        .start
                        .checked_add(w.end.duration_since(w.start) / 2)
                        .unwrap();
                    assert_eq!(
                        period_of(period, &tz, mid).unwrap(),
                        w,
                        "{name} {period:?} at {mid}"
                    );
                    last_key = w.key;
                    now = w.end;
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} periods checked; overlaps in {overlapping:?}");
    assert!(checked > 100_000, "only {checked} periods checked");
    for zone in [
        "America/New_York",
        "Europe/Paris",
        "Asia/Tokyo",
        "Australia/Lord_Howe",
        "UTC",
    ] {
        assert!(
            !overlapping.contains(zone),
            "{zone} has overlapping periods"
        );
    }
    assert!(
        overlapping.len() < 20,
        "too many zones with overlaps: {overlapping:?}"
    );
}

// ---- property tests ------------------------------------------------------------

const BUDGET_POLICY: &str = r#"{
  "version": "pol.v0.2", "id": "pol_prop", "actions": ["payments.send"],
  "limits": {"per_txn": {"amount": "120.00", "currency": "EUR"},
             "per_period": {"amount": "1000", "currency": "EUR", "period": "day"}},
  "constraints": {"time": {"tz": "Europe/Berlin", "dow": ["Mon","Tue","Wed","Thu","Fri","Sat"], "start": "22:00", "end": "20:00"}},
  "meta": {"owner": "tests", "n": [1, 2.5, {"deep": true}]}
}"#;

fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Re-serializes `v` with members in an order given by `seed` and random whitespace.
fn reformat(v: &Value, seed: &mut u64, out: &mut String) {
    let ws = |n: u64| [" ", "\n", "\t", "", "  "][(n % 5) as usize];
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            let k = keys.len();
            for i in (1..k).rev() {
                keys.swap(i, (next(seed) as usize) % (i + 1));
            }
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws(next(seed)));
                out.push_str(&serde_json::to_string(key).unwrap());
                out.push_str(ws(next(seed)));
                out.push(':');
                out.push_str(ws(next(seed)));
                reformat(&m[key], seed, out);
            }
            out.push_str(ws(next(seed)));
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(ws(next(seed)));
                reformat(x, seed, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn policy_hash_is_stable_under_reformatting(seed in any::<u64>()) {
        let base = Policy::parse(BUDGET_POLICY.as_bytes()).unwrap();
        let v: Value = serde_json::from_str(BUDGET_POLICY).unwrap();
        let mut s = seed;
        let mut text = String::new();
        reformat(&v, &mut s, &mut text);
        let again = Policy::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(again.hash(), base.hash());
        prop_assert_eq!(again.canonical(), base.canonical());
    }

    #[test]
    fn evaluate_never_panics(
        action in "[a-z.:_-]{0,20}",
        kind in proptest::option::of("[a-z]{0,8}"),
        id in "[a-z0-9/:.]{0,16}",
        mantissa in any::<i64>(),
        scale in 0u32..=28,
        currency in proptest::sample::select(vec![Currency::EUR, Currency::USD, Currency::JPY, Currency::KWD]),
        with_money in any::<bool>(),
        secs in -377_705_116_800i64..=253_402_207_200i64,
        spent_m in any::<i64>(),
        spent_scale in 0u32..=28,
    ) {
        let policy = Policy::parse(BUDGET_POLICY.as_bytes()).unwrap();
        let resource = kind.as_deref().map(|k| ResourceRef { kind: k, id: &id });
        let money = with_money.then(|| Money { amount: Decimal::new(mantissa, scale), currency });
        let req = PolicyRequest { action: &action, resource, money };
        let now = Timestamp::from_second(secs).unwrap();
        let d = policy.evaluate(&req, now, Decimal::new(spent_m, spent_scale));
        prop_assert_eq!(d.allowed, d.reasons.is_empty());
        prop_assert!(d.spend.is_none() || d.allowed);
        if let Some(r) = &d.remaining {
            prop_assert!(r.amount >= Decimal::ZERO);
        }
    }

    #[test]
    fn spends_never_exceed_the_cap(
        amounts in proptest::collection::vec((0u64..15_000, 0u32..=2), 1..60),
        start_min in 0i64..(60 * 24 * 3),
        step_min in 0i64..240,
    ) {
        let policy = Policy::parse(BUDGET_POLICY.as_bytes()).unwrap();
        let cap = Decimal::from(1000);
        let mut now = ts("2026-11-23T00:00:00Z").checked_add(start_min.minutes()).unwrap();
        let mut spent: BTreeMap<String, Decimal> = BTreeMap::new();
        for (m, s) in amounts {
            let amount = Decimal::new(i64::try_from(m).unwrap(), s);
            let req = PolicyRequest {
                action: "payments.send",
                resource: None,
                money: Some(Money { amount, currency: Currency::EUR }),
            };
            let key = period_of(BudgetPeriod::Day, policy.zone(), now).unwrap().key;
            let before = spent.get(&key).copied().unwrap_or(Decimal::ZERO);
            let d = policy.evaluate(&req, now, before);
            if let Some(sp) = &d.spend {
                prop_assert_eq!(&sp.period.key, &key);
                prop_assert_eq!(sp.cap, cap);
                let after = before + sp.amount;
                prop_assert!(after <= cap, "{} > {}", after, cap);
                spent.insert(key.clone(), after);
                let r = d.remaining.as_ref().unwrap();
                prop_assert_eq!(r.amount, cap - after);
            } else {
                prop_assert!(!d.allowed);
                prop_assert_eq!(d.remaining.as_ref().map(|r| r.amount), Some(cap - before));
            }
            now = now.checked_add(step_min.minutes()).unwrap();
        }
        for total in spent.values() {
            prop_assert!(*total <= cap);
        }
    }
}
