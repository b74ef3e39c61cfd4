//! The decision ledger, written once for every backend: the batch of
//! [`Store::record_decisions`](crate::Store::record_decisions) (idempotency, single-use
//! values, budgets and their charge rule, audit indexes, receipts) over a narrow
//! transaction trait, [`LedgerTx`], that a backend implements with its SQL.
//!
//! Every item's outcome is decided in memory, from rows read under the transaction's
//! lock, before anything is written; the writes happen once, at the end, in a few
//! statements per kind of row. So no item relies on a failed statement being undone
//! alone (SQLite does that; PostgreSQL aborts the whole transaction), and a backend may
//! run the whole thing again after a serialization failure: `decide` is `Fn`.
//!
//! Lock order, for every backend: the log head ([`crate::log::lock`]) first (it is
//! the real serialization point: every decision batch and every audited change takes
//! it), then budget rows, then the rest. The audit entries are appended by the one
//! append of [`crate::log`], like every other write's.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use bonafide_core::ids::{AgentId, OrgId, ReceiverId};
use bonafide_core::policy::Decimal;

use crate::log::{self, Head, LogTx};
use crate::{
    AuditRecord, BudgetCharge, BudgetKey, ConflictKind, DecisionItem, DecisionOutcome,
    IdempotencyClaim, NonceClaim, QuotaClaim, QuotaGrant, QuotaTake, ReceiptRecord, StoreError,
    quota,
};

/// An idempotency record: stored, or made earlier in the same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// SHA-256 identifying the request it answered.
    pub request_sha256: [u8; 32],
    /// The answer to give again.
    pub answer: Vec<u8>,
    /// Its decision's audit index.
    pub audit_index: Option<u64>,
    /// When it was made.
    pub created_at_ms: i64,
}

/// A budget row to write: its spending after the batch's charges, its cap and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRow<'a> {
    /// The budget.
    pub key: &'a BudgetKey,
    /// `spent` after the batch.
    pub spent: Decimal,
    /// The period cap.
    pub cap: Decimal,
    /// Time of the last charge.
    pub at_ms: i64,
}

/// What the ledger reads and writes inside one backend write transaction (see the
/// module docs for the lock order), besides the audit log ([`LogTx`]). Reads see the
/// transaction's own writes; the ledger writes only after every read.
#[async_trait]
pub trait LedgerTx: LogTx {
    /// The stored idempotency records these claims name, by (receiver, key).
    async fn read_claims(
        &mut self,
        claims: &[&IdempotencyClaim],
    ) -> Result<HashMap<(ReceiverId, String), Claimed>, StoreError>;
    /// What `key` has spent, if it has a row.
    async fn read_budget(&mut self, key: &BudgetKey) -> Result<Option<Decimal>, StoreError>;
    /// Which of these (agent, value) pairs are stored and still live at the claim's
    /// `now_ms` (a stored value that expired by then gives way).
    async fn live_nonces(
        &mut self,
        nonces: &[&NonceClaim],
    ) -> Result<HashSet<(AgentId, String)>, StoreError>;
    /// Which of these agents exist.
    async fn existing_agents(
        &mut self,
        agents: &[&AgentId],
    ) -> Result<HashSet<AgentId>, StoreError>;
    /// Claims these values (insert, or replace an expired row).
    async fn upsert_nonces(&mut self, nonces: &[&NonceClaim]) -> Result<(), StoreError>;
    /// Writes these budgets' spending (insert or update).
    async fn upsert_budgets(&mut self, rows: &[BudgetRow<'_>]) -> Result<(), StoreError>;
    /// Stores receipts (their `audit_index` filled in).
    async fn insert_receipts(&mut self, receipts: &[ReceiptRecord]) -> Result<(), StoreError>;
    /// Stores new idempotency records.
    async fn insert_claims(
        &mut self,
        claims: &[(&(ReceiverId, String), &Claimed)],
    ) -> Result<(), StoreError>;
    /// The stored count and warning flag of each (organisation, month), locked for
    /// the transaction (`None`: nothing counted yet). `months` is sorted and distinct,
    /// so every writer locks rows in one order.
    async fn read_quotas(
        &mut self,
        months: &[(&OrgId, &str)],
    ) -> Result<Vec<Option<(u64, bool)>>, StoreError>;
    /// Writes each (organisation, month)'s count and warning flag.
    async fn write_quotas(&mut self, rows: &[(&OrgId, &str, u64, bool)]) -> Result<(), StoreError>;
    /// Adds `n` to the month's stored count if its row exists and the count stays
    /// under `below` (so no warning and no refusal is due): the new count, or `None`,
    /// changing nothing, when it does not. One statement, which locks the row it
    /// changes.
    async fn add_quota_below(
        &mut self,
        org: &OrgId,
        month: &str,
        n: u64,
        below: u64,
    ) -> Result<Option<u64>, StoreError>;
}

/// [`Store::record_decisions`](crate::Store::record_decisions) over a backend's write
/// transaction: every outcome decided first, then every row written. `now_ms` is the
/// time of records whose decision carries none.
pub async fn record_decisions<T: LedgerTx + ?Sized>(
    tx: &mut T,
    items: &[DecisionItem],
    now_ms: i64,
) -> Result<Vec<Result<DecisionOutcome, StoreError>>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let head = log::lock(tx).await?;
    let first_index = head.size();
    let claims: Vec<&IdempotencyClaim> = items
        .iter()
        .filter_map(|item| item.idempotency.as_ref())
        .collect();
    let stored_claims = tx.read_claims(&claims).await?;
    let nonces: Vec<&NonceClaim> = items.iter().filter_map(|i| i.nonce.as_ref()).collect();
    let (live, agents) = if nonces.is_empty() {
        (HashSet::new(), HashSet::new())
    } else {
        let agents: Vec<&AgentId> = nonces.iter().map(|n| &n.agent).collect();
        (
            tx.live_nonces(&nonces).await?,
            tx.existing_agents(&agents).await?,
        )
    };
    // The months the batch counts against, in one order.
    let mut months: Vec<(&OrgId, &str)> = items
        .iter()
        .filter_map(|i| i.quota.as_ref())
        .map(|q| (&q.org_id, q.month.as_str()))
        .collect();
    months.sort_unstable();
    months.dedup();
    // A batch counting against one month (the usual case) is first decided without
    // reading the month's row, as if nothing were counted yet, and its count added in
    // one statement that applies only while the month stays under its warning
    // threshold (so no warning or refusal was due, and no decision could differ).
    // Otherwise nothing was written, and the batch is decided again below on the row
    // as read and locked: the same outcomes as if it had been read first.
    if let [(org, month)] = months[..] {
        let provisional =
            HashMap::from([((org.clone(), month.to_owned()), (Some((0, false)), false))]);
        let mut batch = Batch::new(
            first_index,
            provisional,
            stored_claims.clone(),
            live.clone(),
            now_ms,
        );
        let mut outcomes = decide_all(tx, items, &agents, &mut batch, now_ms).await?;
        if let Some(counted) = batch.provisional_count(&outcomes) {
            let below = items
                .iter()
                .filter_map(|i| i.quota.as_ref())
                .map(|q| q.warn_at.min(q.limit))
                .min()
                .unwrap_or(0);
            // Asked even when nothing was counted: an item that passed the
            // provisional check and then failed must still see a used-up month
            // refused, as the read-first path would (the condition reads the row).
            if let Some(after) = tx.add_quota_below(org, month, counted, below).await? {
                batch.confirm_provisional(&mut outcomes, after.saturating_sub(counted));
                batch.write(tx, head).await?;
                return Ok(outcomes);
            }
        }
    }
    // Read and locked once, in one order.
    let quotas = if months.is_empty() {
        HashMap::new()
    } else {
        let stored = tx.read_quotas(&months).await?;
        if stored.len() != months.len() {
            return Err(StoreError::Backend(
                "quota rows: the store answered the wrong number of months".into(),
            ));
        }
        months
            .iter()
            .zip(stored)
            .map(|(&(org, month), row)| ((org.clone(), month.to_owned()), (row, false)))
            .collect()
    };
    let mut batch = Batch::new(first_index, quotas, stored_claims, live, now_ms);
    let outcomes = decide_all(tx, items, &agents, &mut batch, now_ms).await?;
    batch.write(tx, head).await?;
    Ok(outcomes)
}

/// Decides every item of a batch in order, in memory (reading budgets' rows as
/// needed): the outcomes, and in `batch` what is to be written.
async fn decide_all<'i, T: LedgerTx + ?Sized>(
    tx: &mut T,
    items: &'i [DecisionItem],
    agents: &HashSet<AgentId>,
    batch: &mut Batch<'i>,
    now_ms: i64,
) -> Result<Vec<Result<DecisionOutcome, StoreError>>, StoreError> {
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        // 1. A key seen before (stored, or earlier in this batch): nothing written.
        if let Some(seen) = item.idempotency.as_ref().and_then(|c| batch.seen(c)) {
            outcomes.push(Ok(seen));
            continue;
        }
        // A single-use value: refused if stored and live, or claimed earlier in the
        // batch; an unknown agent fails its item. Once the check passes the value is
        // claimed, whatever `decide` then says.
        if let Some(n) = &item.nonce {
            if !agents.contains(&n.agent) {
                outcomes.push(Err(StoreError::NotFound));
                continue;
            }
            if batch
                .nonces_used
                .contains(&(n.agent.clone(), n.nonce.clone()))
            {
                outcomes.push(Ok(DecisionOutcome::NonceReplayed));
                continue;
            }
        }
        // The month's quota: used up, nothing is claimed or written.
        let grant = match &item.quota {
            Some(claim) => match batch.quota_grant(claim)? {
                Ok(grant) => Some(grant),
                Err(used) => {
                    outcomes.push(Ok(DecisionOutcome::QuotaExceeded { used }));
                    continue;
                }
            },
            None => None,
        };
        if let Some(n) = &item.nonce {
            batch.nonces_used.insert((n.agent.clone(), n.nonce.clone()));
            batch.nonces_claimed.push(n);
        }
        // 2. The budget's spending, including this batch's charges so far (the
        // tightest of its own and its ancestors' budgets, for a delegated token).
        let spent = match &item.budget {
            Some(charge) => Some(batch.seen_spent(tx, charge).await?),
            None => None,
        };
        // 3 and 4, in memory; written below. The verification is counted with it.
        let mut outcome = batch.decide(item, spent);
        if let (
            Ok(DecisionOutcome::Recorded {
                quota, audit_index, ..
            }),
            Some(claim),
            Some(grant),
        ) = (&mut outcome, &item.quota, grant)
        {
            batch.count_quota(claim, grant);
            *quota = Some(grant);
            if grant.warn {
                // The month's flag is set by this transaction: its `quota.warning`
                // entry goes in with it, right after the decision's own entry (at
                // the decision's time).
                let at_ms = match audit_index {
                    Some(_) => batch.audits.last().map_or(now_ms, |a| a.created_at_ms),
                    None => now_ms,
                };
                batch.audits.push(quota::warning_record(
                    &claim.org_id,
                    &claim.month,
                    grant.used,
                    claim.limit,
                    at_ms,
                )?);
            }
        }
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// [`Store::quota_take`](crate::Store::quota_take) over a backend's write
/// transaction: every (organisation, month) read and locked once, in one order, the
/// takes applied in the order asked ([`quota::take`]), then each counted row written,
/// and the `quota.warning` entry of each take that set its month's flag appended.
/// The log head is taken first (the lock order of every audited write), so the flag
/// and its entry commit together.
pub async fn quota_take<T: LedgerTx + ?Sized>(
    tx: &mut T,
    takes: &[QuotaTake],
    now_ms: i64,
) -> Result<Vec<QuotaGrant>, StoreError> {
    let head = log::lock(tx).await?;
    let mut months: Vec<(&OrgId, &str)> = takes
        .iter()
        .map(|t| (&t.org_id, t.month.as_str()))
        .collect();
    months.sort_unstable();
    months.dedup();
    let stored = tx.read_quotas(&months).await?;
    if stored.len() != months.len() {
        return Err(StoreError::Backend(
            "quota rows: the store answered the wrong number of months".into(),
        ));
    }
    let mut rows: HashMap<(&OrgId, &str), Option<(u64, bool)>> =
        months.iter().copied().zip(stored).collect();
    let mut grants = Vec::with_capacity(takes.len());
    let mut warnings = Vec::new();
    for t in takes {
        let row = rows
            .get_mut(&(&t.org_id, t.month.as_str()))
            .ok_or_else(|| StoreError::Backend("quota month not read".into()))?;
        let (grant, used, warned) = quota::take(*row, t);
        *row = Some((used, warned));
        if grant.warn {
            warnings.push(quota::warning_record(
                &t.org_id, &t.month, grant.used, t.limit, now_ms,
            )?);
        }
        grants.push(grant);
    }
    let mut written: Vec<(&OrgId, &str, u64, bool)> = rows
        .into_iter()
        .filter_map(|((org, month), row)| row.map(|(used, warned)| (org, month, used, warned)))
        .collect();
    written.sort_unstable();
    tx.write_quotas(&written).await?;
    head.append(tx, &warnings, &[]).await?;
    Ok(grants)
}

/// A month's stored count and warning flag (`None`: nothing counted yet) as the batch
/// sees it, and whether the batch counted any (then it is written back).
type MonthCount = (Option<(u64, bool)>, bool);

/// A budget as the batch sees it.
struct BudgetState {
    /// Stored spending plus the batch's charges so far.
    spent: Decimal,
    /// Set once the batch charges it: the cap and time to store with `spent`.
    charged: Option<(Decimal, i64)>,
}

/// One `record_decisions` call: the rows it reads, read once under the write lock, and
/// what it writes, written once at the end. Per item, only `decide` and map look-ups
/// run, so a batch of thousands costs a few statements per distinct budget and per few
/// hundred rows, not several per item.
struct Batch<'i> {
    /// Index the batch's first audit entry gets (the log size when it started).
    first_index: u64,
    /// The months counted against: stored count and flag (plus the batch's counts
    /// so far), and whether the batch counted any.
    quotas: HashMap<(OrgId, String), MonthCount>,
    /// Stored idempotency records the batch's claims name, and the batch's own.
    claims: HashMap<(ReceiverId, String), Claimed>,
    /// Keys of the records the batch makes, in item order.
    new_claims: Vec<(ReceiverId, String)>,
    /// Budgets read so far.
    budgets: HashMap<BudgetKey, BudgetState>,
    /// Audit entries of the recorded items, in item order: entry `i` gets index
    /// `first_index + i`.
    audits: Vec<AuditRecord>,
    /// Receipts, their `audit_index` filled in.
    receipts: Vec<ReceiptRecord>,
    /// Single-use values stored live, and those the batch claimed.
    nonces_used: HashSet<(AgentId, String)>,
    /// The batch's claims, to write.
    nonces_claimed: Vec<&'i NonceClaim>,
    /// Time for records of decisions with neither audit entry nor receipt.
    now_ms: i64,
}

impl<'i> Batch<'i> {
    fn new(
        first_index: u64,
        quotas: HashMap<(OrgId, String), MonthCount>,
        claims: HashMap<(ReceiverId, String), Claimed>,
        nonces_used: HashSet<(AgentId, String)>,
        now_ms: i64,
    ) -> Self {
        Batch {
            first_index,
            quotas,
            claims,
            new_claims: Vec::new(),
            budgets: HashMap::new(),
            audits: Vec::new(),
            receipts: Vec::new(),
            nonces_used,
            nonces_claimed: Vec::new(),
            now_ms,
        }
    }

    /// After a pass decided on a month counted from zero (see [`record_decisions`]):
    /// how many verifications it counted, or `None` if that pass gave a warning or a
    /// refusal, which only the stored count can decide.
    fn provisional_count(&self, outcomes: &[Result<DecisionOutcome, StoreError>]) -> Option<u64> {
        let refused_or_warned = outcomes.iter().any(|o| {
            matches!(
                o,
                Ok(DecisionOutcome::QuotaExceeded { .. })
                    | Ok(DecisionOutcome::Recorded {
                        quota: Some(QuotaGrant { warn: true, .. }),
                        ..
                    })
            )
        });
        if refused_or_warned {
            return None;
        }
        let [(row, _)] = self.quotas.values().collect::<Vec<_>>()[..] else {
            return None;
        };
        Some(row.map_or(0, |(used, _)| used))
    }

    /// The provisional pass's count was added to the stored one, which was `base`:
    /// each grant's `used` becomes the month's count after it, and the month is not
    /// written again.
    fn confirm_provisional(
        &mut self,
        outcomes: &mut [Result<DecisionOutcome, StoreError>],
        base: u64,
    ) {
        for outcome in outcomes.iter_mut() {
            if let Ok(DecisionOutcome::Recorded {
                quota: Some(grant), ..
            }) = outcome
            {
                grant.used = grant.used.saturating_add(base);
            }
        }
        for (_, counted) in self.quotas.values_mut() {
            *counted = false;
        }
    }

    /// What counting one more verification of `claim` would give: the grant, or the
    /// month's count when it is used up. Counted only by [`Batch::count_quota`].
    fn quota_grant(&self, claim: &QuotaClaim) -> Result<Result<QuotaGrant, u64>, StoreError> {
        let (stored, _) = self
            .quotas
            .get(&(claim.org_id.clone(), claim.month.clone()))
            .ok_or_else(|| StoreError::Backend("quota month not read".into()))?;
        let (grant, _, _) = quota::take(*stored, &claim.take(1));
        Ok(if grant.granted == 1 {
            Ok(grant)
        } else {
            Err(grant.used)
        })
    }

    /// Counts one verification of `claim`, granted as `grant`.
    fn count_quota(&mut self, claim: &QuotaClaim, grant: QuotaGrant) {
        if let Some(row) = self
            .quotas
            .get_mut(&(claim.org_id.clone(), claim.month.clone()))
        {
            let warned = row.0.is_some_and(|(_, w)| w) || grant.warn;
            *row = (Some((grant.used, warned)), true);
        }
    }

    /// The outcome for a claim whose key was used before, if it was.
    fn seen(&self, claim: &IdempotencyClaim) -> Option<DecisionOutcome> {
        // The map is keyed by owned pairs; a claim is looked up once, so one clone.
        let seen = self
            .claims
            .get(&(claim.receiver_id.clone(), claim.key.clone()))?;
        Some(if seen.request_sha256 == claim.request_sha256 {
            DecisionOutcome::Replay {
                answer: seen.answer.clone(),
                audit_index: seen.audit_index,
            }
        } else {
            DecisionOutcome::IdempotencyConflict
        })
    }

    /// What `key` has spent: stored plus this batch's charges (zero if never charged).
    async fn spent<T: LedgerTx + ?Sized>(
        &mut self,
        tx: &mut T,
        key: &BudgetKey,
    ) -> Result<Decimal, StoreError> {
        if let Some(state) = self.budgets.get(key) {
            return Ok(state.spent);
        }
        let spent = tx.read_budget(key).await?.unwrap_or(Decimal::ZERO);
        self.budgets.insert(
            key.clone(),
            BudgetState {
                spent,
                charged: None,
            },
        );
        Ok(spent)
    }

    /// What a decision charging `charge` sees as spent ([`BudgetCharge::seen_spent`]),
    /// every budget it names read (and kept) first.
    async fn seen_spent<T: LedgerTx + ?Sized>(
        &mut self,
        tx: &mut T,
        charge: &BudgetCharge,
    ) -> Result<Decimal, StoreError> {
        self.spent(tx, &charge.key).await?;
        for a in &charge.ancestors {
            self.spent(tx, &a.key).await?;
        }
        Ok(charge.seen_spent(|key| {
            self.budgets
                .get(key)
                .map_or(Decimal::ZERO, |state| state.spent)
        }))
    }

    /// Steps 3 and 4 of `Store::record_decisions` for one item whose budget (if any)
    /// has spent `spent`: runs `decide`, checks its charge, and records it in memory.
    /// An `Err` is the item's; nothing of it is kept.
    fn decide(
        &mut self,
        item: &DecisionItem,
        spent: Option<Decimal>,
    ) -> Result<DecisionOutcome, StoreError> {
        let decided = (item.decide)(spent)?;
        // Every budget the charge goes to (its own, then its ancestors', each once),
        // with its spending after the charge; any over its cap refuses the item.
        let mut charged: Vec<(BudgetKey, Decimal, Decimal)> = Vec::new();
        match (&item.budget, decided.charge) {
            (_, None) => {}
            (Some(budget), Some(amount)) => {
                let targets = std::iter::once((&budget.key, budget.cap))
                    .chain(budget.ancestors.iter().map(|a| (&a.key, a.cap)));
                for (key, cap) in targets {
                    if charged.iter().any(|(k, _, _)| k == key) {
                        continue;
                    }
                    let before = self
                        .budgets
                        .get(key)
                        .map_or(Decimal::ZERO, |state| state.spent);
                    let after = check_charge(cap, before, amount)?;
                    charged.push((key.clone(), cap, after));
                }
            }
            (None, Some(_)) => {
                return Err(StoreError::Conflict(ConflictKind::BudgetCharge));
            }
        }

        // Checked: from here on the item is recorded.
        let at_ms = decided
            .audit
            .as_ref()
            .map(|a| a.created_at_ms)
            .or(decided.receipt.as_ref().map(|r| r.created_at_ms))
            .unwrap_or(self.now_ms);
        for (key, cap, new_spent) in charged {
            self.budgets.insert(
                key,
                BudgetState {
                    spent: new_spent,
                    charged: Some((cap, at_ms)),
                },
            );
        }
        let audit_index = match decided.audit {
            Some(record) => {
                let offset = u64::try_from(self.audits.len())
                    .map_err(|_| StoreError::Backend("too many audit entries".into()))?;
                self.audits.push(record);
                Some(self.first_index + offset)
            }
            None => None,
        };
        if let Some(mut receipt) = decided.receipt {
            receipt.audit_index = audit_index;
            self.receipts.push(receipt);
        }
        if let Some(claim) = &item.idempotency {
            let key = (claim.receiver_id.clone(), claim.key.clone());
            self.claims.insert(
                key.clone(),
                Claimed {
                    request_sha256: claim.request_sha256,
                    answer: decided.answer,
                    audit_index,
                    created_at_ms: at_ms,
                },
            );
            self.new_claims.push(key);
        }
        Ok(DecisionOutcome::Recorded {
            audit_index,
            spent_before: spent,
            quota: None,
        })
    }

    /// Writes what the recorded items made, inside the caller's write transaction.
    async fn write<T: LedgerTx + ?Sized>(self, tx: &mut T, head: Head) -> Result<(), StoreError> {
        if !self.nonces_claimed.is_empty() {
            tx.upsert_nonces(&self.nonces_claimed).await?;
        }
        let budgets: Vec<BudgetRow<'_>> = self
            .budgets
            .iter()
            .filter_map(|(key, state)| {
                state.charged.map(|(cap, at_ms)| BudgetRow {
                    key,
                    spent: state.spent,
                    cap,
                    at_ms,
                })
            })
            .collect();
        if !budgets.is_empty() {
            tx.upsert_budgets(&budgets).await?;
        }
        let mut quotas: Vec<(&OrgId, &str, u64, bool)> = self
            .quotas
            .iter()
            .filter_map(|((org, month), (row, counted))| {
                let (used, warned) = (*row)?;
                counted.then_some((org, month.as_str(), used, warned))
            })
            .collect();
        if !quotas.is_empty() {
            quotas.sort_unstable();
            tx.write_quotas(&quotas).await?;
        }
        // Decisions change nothing a reader mirrors: no change-feed rows.
        let first = head.append(tx, &self.audits, &[]).await?;
        // INVARIANT: the indexes handed out above are the ones the entries got. The log
        // head is held since it was read, so this holds unless the code is wrong.
        if first != self.first_index {
            return Err(StoreError::Backend(format!(
                "audit log: decisions were numbered from {} but appended at {first}",
                self.first_index
            )));
        }
        if !self.receipts.is_empty() {
            tx.insert_receipts(&self.receipts).await?;
        }
        let claims: Vec<(&(ReceiverId, String), &Claimed)> = self
            .new_claims
            .iter()
            .map(|key| {
                let claimed = self
                    .claims
                    .get(key)
                    .ok_or_else(|| StoreError::Backend("idempotency record lost".into()))?;
                Ok((key, claimed))
            })
            .collect::<Result<_, StoreError>>()?;
        if !claims.is_empty() {
            tx.insert_claims(&claims).await?;
        }
        Ok(())
    }
}

/// `spent + amount` if that stays within the charge's cap: a charge that would take
/// the budget above it, or a negative one (which would give spending back), is a
/// `Conflict` for the item.
pub fn check_charge(cap: Decimal, spent: Decimal, amount: Decimal) -> Result<Decimal, StoreError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(StoreError::Conflict(ConflictKind::BudgetCharge));
    }
    spent
        .checked_add(amount)
        .filter(|after| *after <= cap)
        .ok_or(StoreError::Conflict(ConflictKind::BudgetCharge))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{ChangeRow, HashRun, LogRead, LogRow};
    use crate::{Decided, DecisionItem};
    use bonafide_core::merkle::Hash;

    /// A backend in memory that records the order of calls: the ledger's contract is
    /// that every read comes before the first write.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<&'static str>,
        agents: HashSet<AgentId>,
        audits: Vec<AuditRecord>,
        quota: Option<(u64, bool)>,
        quota_written: Vec<(u64, bool)>,
    }

    #[async_trait]
    impl LogRead for Recorder {
        async fn log_head(&mut self) -> Result<u64, StoreError> {
            self.calls.push("read");
            Ok(7)
        }
        async fn read_hash_rows(
            &mut self,
            records: &[u64],
        ) -> Result<HashMap<u64, HashRun>, StoreError> {
            // The frontier of a log of 7: any hashes will do for this test.
            self.calls.push("read");
            let zero = Hash([0; 32]);
            Ok(records
                .iter()
                .map(|&r| {
                    let run = HashRun {
                        leaf: zero,
                        nodes: vec![zero; 8],
                    };
                    (r, run)
                })
                .collect())
        }
        async fn change_head(&mut self) -> Result<u64, StoreError> {
            self.calls.push("read");
            Ok(0)
        }
    }

    #[async_trait]
    impl LogTx for Recorder {
        async fn insert_changes(&mut self, _: &[(u64, ChangeRow)]) -> Result<(), StoreError> {
            self.calls.push("write");
            Ok(())
        }
        async fn insert_audit_rows(&mut self, rows: &[LogRow<'_>]) -> Result<(), StoreError> {
            self.calls.push("write");
            self.audits.extend(rows.iter().map(|r| r.record.clone()));
            Ok(())
        }
    }

    #[async_trait]
    impl LedgerTx for Recorder {
        async fn read_claims(
            &mut self,
            _: &[&IdempotencyClaim],
        ) -> Result<HashMap<(ReceiverId, String), Claimed>, StoreError> {
            self.calls.push("read");
            Ok(HashMap::new())
        }
        async fn read_budget(&mut self, _: &BudgetKey) -> Result<Option<Decimal>, StoreError> {
            self.calls.push("read");
            Ok(None)
        }
        async fn live_nonces(
            &mut self,
            _: &[&NonceClaim],
        ) -> Result<HashSet<(AgentId, String)>, StoreError> {
            self.calls.push("read");
            Ok(HashSet::new())
        }
        async fn existing_agents(
            &mut self,
            agents: &[&AgentId],
        ) -> Result<HashSet<AgentId>, StoreError> {
            self.calls.push("read");
            Ok(agents
                .iter()
                .filter(|a| self.agents.contains(**a))
                .map(|a| (*a).clone())
                .collect())
        }
        async fn upsert_nonces(&mut self, _: &[&NonceClaim]) -> Result<(), StoreError> {
            self.calls.push("write");
            Ok(())
        }
        async fn upsert_budgets(&mut self, _: &[BudgetRow<'_>]) -> Result<(), StoreError> {
            self.calls.push("write");
            Ok(())
        }
        async fn insert_receipts(&mut self, _: &[ReceiptRecord]) -> Result<(), StoreError> {
            self.calls.push("write");
            Ok(())
        }
        async fn insert_claims(
            &mut self,
            _: &[(&(ReceiverId, String), &Claimed)],
        ) -> Result<(), StoreError> {
            self.calls.push("write");
            Ok(())
        }
        async fn read_quotas(
            &mut self,
            months: &[(&OrgId, &str)],
        ) -> Result<Vec<Option<(u64, bool)>>, StoreError> {
            self.calls.push("read");
            self.calls.push("quota-read");
            Ok(months.iter().map(|_| self.quota).collect())
        }
        async fn write_quotas(
            &mut self,
            rows: &[(&OrgId, &str, u64, bool)],
        ) -> Result<(), StoreError> {
            self.calls.push("write");
            self.quota_written = rows.iter().map(|r| (r.2, r.3)).collect();
            Ok(())
        }
        async fn add_quota_below(
            &mut self,
            _: &OrgId,
            _: &str,
            n: u64,
            below: u64,
        ) -> Result<Option<u64>, StoreError> {
            self.calls.push("add");
            let Some((used, warned)) = self.quota else {
                return Ok(None);
            };
            if used + n >= below {
                return Ok(None);
            }
            self.quota = Some((used + n, warned));
            self.quota_written = vec![(used + n, warned)];
            Ok(Some(used + n))
        }
    }

    fn audit(tag: &str) -> AuditRecord {
        AuditRecord {
            entry: tag.as_bytes().to_vec(),
            agent_id: None,
            issuer_id: None,
            created_at_ms: 1,
            prepared: None,
        }
    }

    fn logged(tag: &'static str, nonce: Option<NonceClaim>) -> DecisionItem {
        DecisionItem {
            budget: None,
            idempotency: None,
            nonce,
            quota: None,
            decide: Box::new(move |_| {
                Ok(Decided {
                    audit: Some(audit(tag)),
                    receipt: None,
                    charge: None,
                    answer: Vec::new(),
                })
            }),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    #[test]
    fn every_outcome_is_decided_before_the_first_write() {
        let agent = AgentId::from_random([1; 16]);
        let unknown = AgentId::from_random([2; 16]);
        let nonce = |agent: &AgentId, value: &str| NonceClaim {
            agent: agent.clone(),
            nonce: value.to_owned(),
            expires_at_ms: 100,
            now_ms: 1,
        };
        let mut tx = Recorder {
            agents: HashSet::from([agent.clone()]),
            ..Recorder::default()
        };
        let items = vec![
            logged("a", Some(nonce(&agent, "n1"))),
            logged("b", Some(nonce(&agent, "n1"))),
            logged("c", Some(nonce(&unknown, "n2"))),
            DecisionItem {
                budget: None,
                idempotency: None,
                nonce: None,
                quota: None,
                decide: Box::new(|_| Err(StoreError::Conflict(ConflictKind::BudgetCharge))),
            },
            logged("d", None),
        ];
        let outcomes =
            block_on(record_decisions(&mut tx, &items, 5)).unwrap_or_else(|e| panic!("batch: {e}"));
        assert!(
            matches!(
                outcomes[0],
                Ok(DecisionOutcome::Recorded {
                    audit_index: Some(7),
                    ..
                })
            ),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[1], Ok(DecisionOutcome::NonceReplayed)),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[2], Err(StoreError::NotFound)),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[3], Err(StoreError::Conflict(_))),
            "{outcomes:?}"
        );
        assert!(
            matches!(
                outcomes[4],
                Ok(DecisionOutcome::Recorded {
                    audit_index: Some(8),
                    ..
                })
            ),
            "{outcomes:?}"
        );
        // Only the recorded items' entries, in order.
        let written: Vec<&[u8]> = tx.audits.iter().map(|a| a.entry.as_slice()).collect();
        assert_eq!(written, [&b"a"[..], b"d"]);
        let first_write = tx.calls.iter().position(|c| *c == "write");
        let last_read = tx.calls.iter().rposition(|c| *c == "read");
        assert!(first_write > last_read, "{:?}", tx.calls);
        // `decide` is `Fn`: the same items decided again give the same outcomes.
        let mut again = Recorder {
            agents: HashSet::from([agent]),
            ..Recorder::default()
        };
        let repeated = block_on(record_decisions(&mut again, &items, 5))
            .unwrap_or_else(|e| panic!("batch: {e}"));
        assert_eq!(format!("{outcomes:?}"), format!("{repeated:?}"));
    }

    #[test]
    fn a_quota_is_counted_with_the_decisions_it_admits_and_never_for_the_rest() {
        let agent = AgentId::from_random([1; 16]);
        let claim = QuotaClaim {
            org_id: OrgId::from_random([9; 16]),
            month: "2026-12".into(),
            limit: 10,
            warn_at: 8,
        };
        let counted = |tag: &'static str, nonce: Option<NonceClaim>| DecisionItem {
            quota: Some(claim.clone()),
            ..logged(tag, nonce)
        };
        let nonce = NonceClaim {
            agent: agent.clone(),
            nonce: "n".into(),
            expires_at_ms: 100,
            now_ms: 1,
        };
        // 7 counted already: room for 3, the 8th crosses the warning.
        let mut tx = Recorder {
            agents: HashSet::from([agent.clone()]),
            quota: Some((7, false)),
            ..Recorder::default()
        };
        let items = vec![
            counted("a", Some(nonce.clone())),
            // The same single-use value: refused as a replay, not counted.
            counted("b", Some(nonce.clone())),
            // `decide` fails: not counted.
            DecisionItem {
                budget: None,
                idempotency: None,
                nonce: None,
                quota: Some(claim.clone()),
                decide: Box::new(|_| Err(StoreError::Conflict(ConflictKind::BudgetCharge))),
            },
            counted("c", None),
            counted("d", None),
            // Used up: nothing written, and its value not claimed.
            counted(
                "e",
                Some(NonceClaim {
                    nonce: "m".into(),
                    ..nonce.clone()
                }),
            ),
            // Uncounted items are decided as before.
            logged("f", None),
        ];
        let outcomes =
            block_on(record_decisions(&mut tx, &items, 5)).unwrap_or_else(|e| panic!("batch: {e}"));
        let grant = |o: &Result<DecisionOutcome, StoreError>| match o {
            Ok(DecisionOutcome::Recorded { quota, .. }) => *quota,
            other => panic!("not recorded: {other:?}"),
        };
        let g = |used, warn| {
            Some(QuotaGrant {
                granted: 1,
                used,
                warn,
            })
        };
        assert_eq!(grant(&outcomes[0]), g(8, true), "{outcomes:?}");
        assert!(matches!(outcomes[1], Ok(DecisionOutcome::NonceReplayed)));
        assert!(matches!(outcomes[2], Err(StoreError::Conflict(_))));
        assert_eq!(grant(&outcomes[3]), g(9, false));
        assert_eq!(grant(&outcomes[4]), g(10, false));
        assert!(
            matches!(outcomes[5], Ok(DecisionOutcome::QuotaExceeded { used: 10 })),
            "{outcomes:?}"
        );
        assert_eq!(grant(&outcomes[6]), None);
        // The crossing decision's `quota.warning` is appended right after its own
        // entry, in the same transaction as the month's flag; later indexes follow.
        let written: Vec<&[u8]> = tx.audits.iter().map(|a| a.entry.as_slice()).collect();
        assert_eq!(written.len(), 5, "{written:?}");
        assert_eq!(
            [written[0], written[2], written[3], written[4]],
            [&b"a"[..], b"c", b"d", b"f"]
        );
        let warning = String::from_utf8_lossy(written[1]);
        assert!(
            warning.contains("\"quota.warning\"")
                && warning.contains("2026-12: 8 of 10 verifications"),
            "{warning}"
        );
        assert_eq!(
            tx.audits[1].created_at_ms, 1,
            "at the crossing decision's time"
        );
        let index = |o: &Result<DecisionOutcome, StoreError>| match o {
            Ok(DecisionOutcome::Recorded { audit_index, .. }) => *audit_index,
            other => panic!("not recorded: {other:?}"),
        };
        assert_eq!(
            [
                index(&outcomes[0]),
                index(&outcomes[3]),
                index(&outcomes[6])
            ],
            [Some(7), Some(9), Some(11)]
        );
        assert_eq!(tx.quota_written, [(10, true)]);
        // Nothing counted, nothing written back.
        let mut none = Recorder {
            quota: Some((10, true)),
            ..Recorder::default()
        };
        let outcomes = block_on(record_decisions(&mut none, &[counted("x", None)], 5))
            .unwrap_or_else(|e| panic!("batch: {e}"));
        assert!(matches!(
            outcomes[0],
            Ok(DecisionOutcome::QuotaExceeded { used: 10 })
        ));
        assert!(none.quota_written.is_empty() && none.audits.is_empty());
    }

    #[test]
    fn a_batch_well_under_its_quota_counts_in_one_statement_with_the_same_outcomes() {
        let claim = QuotaClaim {
            org_id: OrgId::from_random([9; 16]),
            month: "2026-12".into(),
            limit: 10,
            warn_at: 8,
        };
        let counted = |tag: &'static str| DecisionItem {
            quota: Some(claim.clone()),
            ..logged(tag, None)
        };
        let items = vec![
            counted("a"),
            DecisionItem {
                budget: None,
                idempotency: None,
                nonce: None,
                quota: Some(claim.clone()),
                decide: Box::new(|_| Err(StoreError::Conflict(ConflictKind::BudgetCharge))),
            },
            counted("b"),
            logged("c", None),
            counted("d"),
        ];
        let used = |outcomes: &[Result<DecisionOutcome, StoreError>]| -> Vec<Option<u64>> {
            outcomes
                .iter()
                .map(|o| match o {
                    Ok(DecisionOutcome::Recorded { quota, .. }) => quota.map(|g| g.used),
                    _ => None,
                })
                .collect()
        };
        // 2 counted: 3 more stay under the warning at 8, so the row is not read
        // first; the grants still say the month's count after each.
        let mut tx = Recorder {
            quota: Some((2, false)),
            ..Recorder::default()
        };
        let outcomes =
            block_on(record_decisions(&mut tx, &items, 5)).unwrap_or_else(|e| panic!("batch: {e}"));
        assert_eq!(used(&outcomes), [Some(3), None, Some(4), None, Some(5)]);
        assert_eq!(tx.quota_written, [(5, false)]);
        assert_eq!(tx.calls.iter().filter(|c| **c == "add").count(), 1);
        assert_eq!(tx.calls.iter().filter(|c| **c == "quota-read").count(), 0);
        // 5 counted: the batch reaches the warning, so it is decided again on the
        // row as read, and the crossing decision's warning goes in with it.
        let mut near = Recorder {
            quota: Some((5, false)),
            ..Recorder::default()
        };
        let outcomes = block_on(record_decisions(&mut near, &items, 5))
            .unwrap_or_else(|e| panic!("batch: {e}"));
        assert_eq!(used(&outcomes), [Some(6), None, Some(7), None, Some(8)]);
        assert_eq!(near.calls.iter().filter(|c| **c == "quota-read").count(), 1);
        assert_eq!(near.quota_written, [(8, true)]);
        let warnings = near
            .audits
            .iter()
            .filter(|a| String::from_utf8_lossy(&a.entry).contains("quota.warning"))
            .count();
        assert_eq!(warnings, 1, "{:?}", near.calls);
        // A used-up month: an item whose `decide` fails is refused for the quota
        // (nothing claimed), as when the row is read first, though it counted none.
        let failing = [DecisionItem {
            budget: None,
            idempotency: None,
            nonce: None,
            quota: Some(claim.clone()),
            decide: Box::new(|_| Err(StoreError::Conflict(ConflictKind::BudgetCharge))),
        }];
        let mut full = Recorder {
            quota: Some((10, true)),
            ..Recorder::default()
        };
        let outcomes = block_on(record_decisions(&mut full, &failing, 5))
            .unwrap_or_else(|e| panic!("batch: {e}"));
        assert!(
            matches!(outcomes[0], Ok(DecisionOutcome::QuotaExceeded { used: 10 })),
            "{outcomes:?}"
        );
        // The month's first verification: no row to add to, so it is read (and
        // written) as before.
        let mut first = Recorder::default();
        let outcomes = block_on(record_decisions(&mut first, &items, 5))
            .unwrap_or_else(|e| panic!("batch: {e}"));
        assert_eq!(used(&outcomes), [Some(1), None, Some(2), None, Some(3)]);
        assert_eq!(first.quota_written, [(3, false)]);
    }
}
