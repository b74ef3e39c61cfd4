//! `--compare-policy` (issue 5): ONE real server in the default configuration (every
//! decision audited and given a signed receipt), a receiver and two agents: the
//! baseline `no-policy` verifies a token without a policy, the subject `policy-spend`
//! asks the token of an agent with a `pol.v0.2` consent policy for a spend of
//! [`SPEND`], charged to a monthly budget that cannot run out during a run. After the
//! load the budget must have spent exactly [`SPEND`] per allowed spend answered, read
//! back with `POST /v1/simulate`. The same pieces serve `--replica-spends`.

use anyhow::{Context, Result, anyhow, ensure};
use bonafide_core::policy::Decimal;
use bonafide_server::Config;
use bytes::Bytes;
use hyper::header::HeaderValue;
use serde::Serialize;
use serde_json::{Value, json};

use crate::load::Target;
use crate::pair::{Bench, Ctx};
use crate::report::{Goal, Run, Section, Spec};
use crate::setup::{self, GRANTED, Local, REQUESTED, call, call_as_receiver, decimal, str_member};

/// The target that spends under a consent policy, and its baseline.
pub const POLICY_SUBJECT: &str = "policy-spend";
pub const NO_POLICY: &str = "no-policy";
/// The consent policy (`pol.v0.2`) and the spend asked of it.
pub const POLICY_ID: &str = "pol_bench";
pub const ACTION: &str = "payments.send";
pub const RESOURCE_TYPE: &str = "merchant";
pub const RESOURCE_ID: &str = "acct/42";
pub const SPEND: &str = "0.01";
pub const CURRENCY: &str = "USD";
pub const PER_TXN: &str = "100.00";
/// The policy's monthly budget: 10^10 spends of [`SPEND`], more than any run makes.
pub const PER_PERIOD_CAP: &str = "100000000.00";

pub const SPEC: Spec = Spec {
    baseline: NO_POLICY,
    subject: POLICY_SUBJECT,
    title: "POST /v1/verify with a consent policy and a spend vs without a policy (same server)",
    goal: Goal::AtLeast(0.8),
    p99_goal_us: None,
    record_baseline_p99: true,
    fsync_latency_factor: None,
};

pub async fn setup(ctx: &Ctx<'_>) -> Result<Bench> {
    let local = Local::start(
        SPEC.subject,
        Config::default(),
        ctx.args.data_dir.as_deref(),
    )
    .await?;
    setup::check_bonafide(&local.http, &local.base, &local.token, true).await?;
    let spends = Spends::setup(
        &local.http,
        std::slice::from_ref(&local.base),
        local.admin.expose_secret(),
        &local.issuer_key,
        &local.token,
        "PaymentsBot",
        PER_PERIOD_CAP,
    )
    .await?;
    let targets = vec![
        spends.no_policy_target(Target::new(
            NO_POLICY,
            local.addr,
            "/v1/verify",
            Bytes::new(),
        ))?,
        spends.spend_target(Target::new(
            POLICY_SUBJECT,
            local.addr,
            "/v1/verify",
            Bytes::new(),
        ))?,
    ];
    let mut bench = Bench::new(
        SPEC,
        targets,
        local.servers,
        requests_line("to one server in the default configuration"),
    );
    let budget = spends.budget;
    bench.after.push(Box::new(move |runs| {
        Box::pin(async move { budget.final_check(&runs).await?.section() })
    }));
    Ok(bench)
}

/// The `requests:` line, the servers described by `where_`.
pub fn requests_line(where_: &str) -> String {
    format!(
        "both POST /v1/verify with a receiver key (X-API-Key) {where_} (decisions audited, \
         receipts signed); no-policy {{token, scopes_requested:[\"{REQUESTED}\"]}} of a token \
         without a policy; policy-spend {{token, scopes_requested:[\"{REQUESTED}\"], \
         action:\"{ACTION}\", resource:{{type:\"{RESOURCE_TYPE}\", id:\"{RESOURCE_ID}\"}}, \
         amount:\"{SPEND}\", currency:\"{CURRENCY}\"}} of a token with policy {POLICY_ID} \
         (per_txn {PER_TXN}, per_period {PER_PERIOD_CAP} {CURRENCY}/month), each allowed one \
         charging the budget; all must be valid and allowed with audit_index and receipt_id, \
         spends also with remaining"
    )
}

/// A receiver, an agent with a consent policy, and the requests of both targets,
/// checked once through the real endpoint before loading.
pub struct Spends {
    pub receiver_key: String,
    header: HeaderValue,
    plain: Value,
    spend: Value,
    pub budget: PolicyBudget,
}

impl Spends {
    /// On the registry at `bases` (the first creates; each checks): the admin creates a
    /// receiver, the issuer registers an agent named `agent_name` with [`bench_policy`]
    /// of monthly cap `cap`; one request of each target is checked (the spend's
    /// `remaining` must be cap − amount), and `POST /v1/simulate` on every base must
    /// then imply one spend.
    pub async fn setup(
        http: &reqwest::Client,
        bases: &[String],
        admin: &str,
        issuer_key: &str,
        plain_token: &str,
        agent_name: &str,
        cap: &str,
    ) -> Result<Self> {
        let base = bases.first().ok_or_else(|| anyhow!("no server"))?;
        let receiver = call(
            http,
            &format!("{base}/v1/receivers"),
            Some(admin),
            Some(json!({"name": "shop.bench.example"})),
            201,
        )
        .await?;
        let receiver_key = str_member(&receiver, "api_key")?;
        Self::with_receiver(
            http,
            bases,
            receiver_key,
            issuer_key,
            plain_token,
            agent_name,
            cap,
        )
        .await
    }

    /// As [`Spends::setup`], with an existing receiver.
    pub async fn with_receiver(
        http: &reqwest::Client,
        bases: &[String],
        receiver_key: String,
        issuer_key: &str,
        plain_token: &str,
        agent_name: &str,
        cap: &str,
    ) -> Result<Self> {
        let base = bases.first().ok_or_else(|| anyhow!("no server"))?;
        let agent = call(
            http,
            &format!("{base}/v1/agents/register"),
            Some(issuer_key),
            Some(json!({
                "name": agent_name,
                "description": "Pays merchants within its monthly budget",
                "scopes": GRANTED,
                "policy": bench_policy(cap),
            })),
            201,
        )
        .await?;
        ensure!(
            agent["policy_hash"].is_string(),
            "the agent registered with a policy has no `policy_hash`: {agent}"
        );
        let policy_token = str_member(&agent, "token")?;
        let plain = json!({"token": plain_token, "scopes_requested": [REQUESTED]});
        let spend = spend_request(&policy_token);
        let header = HeaderValue::from_str(&receiver_key)
            .context("the receiver key is not a header value")?;

        // One checked request of each, with the receiver key, before loading.
        check_decision(http, base, &receiver_key, &plain, false).await?;
        let first = check_decision(http, base, &receiver_key, &spend, true).await?;
        let budget = PolicyBudget {
            bases: bases.to_vec(),
            receiver_key: receiver_key.clone(),
            request: spend.clone(),
            cap: decimal(cap)?,
            amount: decimal(SPEND)?,
            setup_spends: 1,
            period_ends: str_member(&first["remaining"], "period_ends")?,
        };
        // The first spend of a fresh budget leaves exactly cap − amount.
        let left = decimal(&str_member(&first["remaining"], "amount")?)?;
        ensure!(
            left == budget.cap - budget.amount,
            "the first spend of {SPEND} {CURRENCY} left `remaining` {left}, not {}: {first}",
            budget.cap - budget.amount
        );
        for base in bases {
            let before = budget.simulate(http, base).await?;
            ensure!(
                before.spent == budget.amount,
                "after one spend of {SPEND} {CURRENCY}, POST /v1/simulate on {base} implies {} \
                 spent (remaining {}, simulated spend {}allowed)",
                before.spent,
                before.remaining,
                if before.allowed { "" } else { "not " }
            );
        }
        Ok(Spends {
            receiver_key,
            header,
            plain,
            spend,
            budget,
        })
    }

    /// `target` sending the plain verify with the receiver key.
    pub fn no_policy_target(&self, target: Target) -> Result<Target> {
        Ok(Target {
            body: Bytes::from(
                serde_json::to_vec(&self.plain).context("encoding the no-policy request")?,
            ),
            expect_audit_index: Some(true),
            api_key: Some(self.header.clone()),
            expect_receipt: true,
            ..target
        })
    }

    /// `target` sending the spend with the receiver key.
    pub fn spend_target(&self, target: Target) -> Result<Target> {
        Ok(Target {
            body: Bytes::from(
                serde_json::to_vec(&self.spend).context("encoding the policy-spend request")?,
            ),
            expect_remaining: true,
            ..self.no_policy_target(target)?
        })
    }
}

/// The consent policy of a spending agent, monthly cap `cap`. No time window, so its
/// zone (and the month of its budget) is UTC.
pub fn bench_policy(cap: &str) -> Value {
    json!({
        "version": "pol.v0.2",
        "id": POLICY_ID,
        "actions": [ACTION],
        "resources": [{"type": RESOURCE_TYPE, "match": {"prefixes": ["acct/"]}}],
        "limits": {
            "per_txn": {"amount": PER_TXN, "currency": CURRENCY},
            "per_period": {"amount": cap, "currency": CURRENCY, "period": "month"},
        },
    })
}

/// The `policy-spend` request (and the simulated one).
fn spend_request(token: &str) -> Value {
    json!({
        "token": token,
        "scopes_requested": [REQUESTED],
        "action": ACTION,
        "resource": {"type": RESOURCE_TYPE, "id": RESOURCE_ID},
        "amount": SPEND,
        "currency": CURRENCY,
    })
}

/// One verify through the real endpoint with the receiver key; it must be valid and
/// allowed, carry `audit_index` and `receipt_id`, and carry a `remaining` in
/// `CURRENCY` per month exactly when it is a spend. Returns the answer.
async fn check_decision(
    http: &reqwest::Client,
    base: &str,
    receiver_key: &str,
    body: &Value,
    spend: bool,
) -> Result<Value> {
    let what = if spend { POLICY_SUBJECT } else { NO_POLICY };
    let url = format!("{base}/v1/verify");
    let answer = call_as_receiver(http, &url, receiver_key, body, 200).await?;
    ensure!(
        answer["valid"] == true && answer["allowed"] == true,
        "{what}: the check request was not valid and allowed: {answer}"
    );
    ensure!(
        answer["audit_index"].is_u64(),
        "{what}: the answer has no `audit_index`: {answer}"
    );
    ensure!(
        answer["receipt_id"]
            .as_str()
            .is_some_and(|r| r.starts_with("rcp_")),
        "{what}: the answer has no `receipt_id`: {answer}"
    );
    let remaining = &answer["remaining"];
    if spend {
        ensure!(
            remaining["currency"] == CURRENCY
                && remaining["period"] == "month"
                && remaining["amount"].is_string()
                && remaining["period_ends"].is_string(),
            "{what}: the answer has no monthly `remaining` in {CURRENCY}: {answer}"
        );
    } else {
        ensure!(
            remaining.is_null(),
            "{what}: a request without a policy answered a `remaining`: {answer}"
        );
    }
    Ok(answer)
}

/// The budget the `policy-spend` target charges, and how to read it back.
#[derive(Debug, Clone)]
pub struct PolicyBudget {
    /// The registry's base URLs (several replicas: each reads it back).
    pub bases: Vec<String>,
    /// The receiver's API key.
    pub receiver_key: String,
    /// The spend request, also the one simulated.
    pub request: Value,
    /// The policy's `per_period` amount.
    pub cap: Decimal,
    /// One spend.
    pub amount: Decimal,
    /// Spends made before the load (the setup's check).
    pub setup_spends: u64,
    /// `remaining.period_ends` of the setup's check: the budget's period.
    pub period_ends: String,
}

/// What `POST /v1/simulate` says about the budget.
#[derive(Debug)]
pub struct Simulated {
    /// Whether the simulated spend would be allowed.
    pub allowed: bool,
    /// `remaining.amount`: what would be left after the simulated spend if allowed.
    pub remaining: Decimal,
    /// `remaining.period_ends`.
    pub period_ends: String,
    /// Spent in the period so far: cap − remaining, less the simulated spend when it
    /// would be allowed.
    pub spent: Decimal,
}

impl PolicyBudget {
    /// `POST /v1/simulate` of the spend request on `base`: the same evaluation,
    /// nothing spent.
    pub async fn simulate(&self, http: &reqwest::Client, base: &str) -> Result<Simulated> {
        let url = format!("{base}/v1/simulate");
        let answer = call_as_receiver(http, &url, &self.receiver_key, &self.request, 200).await?;
        ensure!(
            answer["simulated"] == true,
            "POST /v1/simulate answered without `simulated: true`: {answer}"
        );
        let r = &answer["remaining"];
        ensure!(
            r["currency"] == CURRENCY && r["period"] == "month",
            "POST /v1/simulate: no monthly `remaining` in {CURRENCY}: {answer}"
        );
        let allowed = answer["allowed"] == true;
        let remaining = decimal(&str_member(r, "amount")?)?;
        let simulated_spend = if allowed { self.amount } else { Decimal::ZERO };
        Ok(Simulated {
            allowed,
            remaining,
            period_ends: str_member(r, "period_ends")?,
            spent: self.cap - remaining - simulated_spend,
        })
    }

    /// After the load: the budget spent must be `amount` × every allowed spend
    /// answer (the load's, warm-up included, and the setup's check), read back on
    /// every base.
    pub async fn final_check(&self, runs: &[Run]) -> Result<BudgetCheck> {
        let in_load: u64 = runs.iter().filter_map(|r| r.spends).sum();
        self.check(in_load).await
    }

    /// The budget spent must be `amount` × (`in_load` + the setup's spends).
    pub async fn check(&self, in_load: u64) -> Result<BudgetCheck> {
        let http = setup::http_client()?;
        let counted = in_load + self.setup_spends;
        let expected = self.amount * Decimal::from(counted);
        let mut sims = Vec::new();
        for base in &self.bases {
            let sim = self.simulate(&http, base).await?;
            ensure!(
                sim.period_ends == self.period_ends,
                "the budget's month changed during the run (period ends {} at the start, {} \
                 now): its spending restarted, so it cannot be checked; run again",
                self.period_ends,
                sim.period_ends
            );
            sims.push(sim);
        }
        let sim = sims.first().ok_or_else(|| anyhow!("no server"))?;
        Ok(BudgetCheck {
            cap: self.cap.to_string(),
            spend: self.amount.to_string(),
            currency: CURRENCY,
            spends_in_load: in_load,
            setup_spends: self.setup_spends,
            spends_counted: counted,
            expected_spent: expected.to_string(),
            simulated_remaining: sim.remaining.to_string(),
            simulated_allowed: sim.allowed,
            spent: sim.spent.to_string(),
            period_ends: sim.period_ends.clone(),
            consistent: sims.iter().all(|s| s.spent == expected),
            spent_per_replica: (sims.len() > 1)
                .then(|| sims.iter().map(|s| s.spent.to_string()).collect()),
        })
    }
}

/// The budget after the run, read back with `POST /v1/simulate`.
#[derive(Debug, Serialize)]
pub struct BudgetCheck {
    /// The policy's monthly `per_period` amount.
    pub cap: String,
    /// One spend.
    pub spend: String,
    pub currency: &'static str,
    /// Allowed spend answers under load, warm-up included, every round.
    pub spends_in_load: u64,
    /// Allowed spends made by the setup's check request.
    pub setup_spends: u64,
    /// `spends_in_load + setup_spends`.
    pub spends_counted: u64,
    /// `spend × spends_counted`.
    pub expected_spent: String,
    /// `remaining.amount` of `POST /v1/simulate` with the spend request: what would be
    /// left after one more spend, if it would be allowed.
    pub simulated_remaining: String,
    /// Whether that simulated spend would be allowed.
    pub simulated_allowed: bool,
    /// Spent this month: `cap − simulated_remaining − (spend if simulated_allowed)`.
    pub spent: String,
    /// When the budget's month ends.
    pub period_ends: String,
    /// `spent == expected_spent` (on every replica). False fails the run.
    pub consistent: bool,
    /// Several replicas: `spent` as each read it back, in replica order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spent_per_replica: Option<Vec<String>>,
}

impl BudgetCheck {
    /// The report's `budget` member, its line, and a failure when inconsistent.
    pub fn section(self) -> Result<Section> {
        let c = &self;
        let cur = c.currency;
        let mut line = format!(
            "budget: {} allowed spends counted ({} under load, warm-up included, + {} setup \
             check) × {} {cur} = {} {cur} expected; POST /v1/simulate: remaining {} {cur} after \
             a further spend ({}), so {} {cur} spent of {} {cur} this month (ends {}): {}",
            c.spends_counted,
            c.spends_in_load,
            c.setup_spends,
            c.spend,
            c.expected_spent,
            c.simulated_remaining,
            if c.simulated_allowed {
                "allowed"
            } else {
                "NOT allowed: nothing subtracted"
            },
            c.spent,
            c.cap,
            c.period_ends,
            if c.consistent {
                "consistent"
            } else {
                "MISMATCH"
            },
        );
        if let Some(each) = &c.spent_per_replica {
            line.push_str(&format!(
                " (spent as read on each replica: {})",
                each.join(", ")
            ));
        }
        let failure = (!c.consistent).then(|| {
            format!(
                "the budget spent {} {CURRENCY}, but the harness counted {} allowed spends of \
                 {SPEND} {CURRENCY} = {} {CURRENCY}; the figures above are not valid",
                c.spent_per_replica
                    .as_ref()
                    .map_or_else(|| c.spent.clone(), |each| each.join(" / ")),
                c.spends_counted,
                c.expected_spent
            )
        });
        Ok(Section {
            footer: vec![line],
            failure,
            ..Section::json("budget", &self)?
        })
    }
}
