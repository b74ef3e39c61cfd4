//! Core's integration tests, one binary: published vectors (data files under
//! `tests/data` and `tests/vectors`), attacks and properties against the public API.

mod common;

mod attacks;
mod delegation;
mod dpop;
mod httpsig;
mod merkle;
mod note;
mod parsers_never_panic;
mod policy;
mod properties;
mod receipt;
mod status_list;
mod tlog_proof;
mod totp;
mod vectors;
