//! Audit log answers a client checks: entries and proofs (checkpoints, tiles and
//! proof bundles are text or bytes in their own formats, not JSON).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    /// Index in the log.
    pub index: u64,
    /// `SHA-256(0x00 ‖ entry)`, standard base64.
    pub leaf_hash: String,
    /// The RFC 8785 canonical JSON text, for callers allowed to see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
}

/// `GET /v1/audit/entries` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entries {
    /// The entries, in order.
    pub entries: Vec<EntryView>,
}

/// An inclusion proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InclusionProof {
    /// The entry's index.
    pub index: u64,
    /// The tree the proof is for.
    pub tree_size: u64,
    /// The entry's leaf hash (base64).
    pub leaf_hash: String,
    /// The RFC 6962 audit path, leaf side first (base64).
    pub hashes: Vec<String>,
}

/// A consistency proof.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// RFC 6962 §2.1.2 proof (base64); empty when `first` is 0 or equals `second`.
    pub hashes: Vec<String>,
}
