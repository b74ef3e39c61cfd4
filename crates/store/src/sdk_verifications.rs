//! Verifications made through AIM's SDK surface (`/api/v1/sdk-api/verifications`),
//! and what the SDK reports about them afterwards.
//!
//! The decision itself is an audit entry. This record maps the random id the SDK was
//! given to that entry, so the SDK's unsigned `result` and `execution-status` reports
//! can be taken from whoever holds the id (only the agent was told it) and kept beside
//! the decision. At most one report of each kind per verification: a second report
//! that differs is refused, never overwrites the first.

use bonafide_core::ids::AgentId;

/// A verification as first written: the id's SHA-256 (the id itself is never stored),
/// the decision's audit entry and the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSdkVerification {
    /// SHA-256 of the verification id.
    pub id_sha256: [u8; 32],
    /// The decision's audit entry.
    pub audit_index: u64,
    /// The agent that signed the verification.
    pub agent_id: AgentId,
    /// When it was decided.
    pub created_at_ms: i64,
}

/// A stored verification with the reports made about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkVerification {
    /// What was first written.
    pub record: NewSdkVerification,
    /// The `result` report (its JSON as recorded).
    pub result: Option<SdkReport>,
    /// The `execution-status` report (its JSON as recorded).
    pub execution: Option<SdkReport>,
}

/// One report: its JSON text, as the server normalised it, and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdkReport {
    /// The report's JSON text.
    pub body: String,
    /// When it was recorded.
    pub at_ms: i64,
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkReportKind {
    /// `POST …/verifications/{id}/result`: how the action went.
    Result,
    /// `POST …/verifications/{id}/execution-status`: whether it ran at all.
    Execution,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Recorded now.
    Recorded,
    /// The same report was already recorded (a retry): nothing changed.
    AlreadyRecorded,
    /// A different report of this kind was recorded first; it stays.
    Conflict,
    /// No such verification (never made, or purged).
    UnknownVerification,
}

/// What a report that was not recorded met: `first` is the row's column (`None`: no
/// such verification). An empty column here means another report of this kind won a
/// race a moment ago: a conflict, which a retry of the same report then sees as
/// [`ReportOutcome::AlreadyRecorded`] if it was its twin.
pub(crate) fn outcome_of(first: Option<Option<String>>, body: &str) -> ReportOutcome {
    match first {
        None => ReportOutcome::UnknownVerification,
        Some(Some(first)) if first == body => ReportOutcome::AlreadyRecorded,
        Some(_) => ReportOutcome::Conflict,
    }
}
