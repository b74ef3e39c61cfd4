//! The Bonafide HTTP API's wire contract: the request and answer types the server
//! writes, the Rust SDK (`bonafide-client`) and the CLI read, and the error codes
//! all three branch on. One definition each, so a change to an answer is a change to
//! all of them (and to the OpenAPI document, which is generated from these types).
//!
//! - [`error`]: [`ErrorCode`], the error body [`ErrorBody`] and its [`ErrorDetail`],
//!   which is also the `error` of a verify answer whose token is not valid.
//! - [`verify`]: verify, simulate, `GET /v1/verify/{token}` and introspection answers.
//! - [`agents`]: agent registration, listing, tokens, revocation, agent keys.
//! - [`tokens`]: token exchange answers.
//! - [`receipts`], [`audit`]: receipts, audit entries and proofs.
//! - [`values`]: schemas of the values the server checks by one rule (ids, names,
//!   scopes…), named by the types' `#[schema(value_type = …)]`.
//!
//! Answers deserialise leniently (members a newer registry adds are ignored, an
//! unknown error code is [`ErrorCode::Unknown`]); requests the server parses refuse
//! unknown members.

pub mod agents;
pub mod audit;
pub mod error;
pub mod receipts;
pub mod tokens;
pub mod values;
pub mod verify;

pub use error::{ErrorBody, ErrorCode, ErrorDetail, UnknownCode};
