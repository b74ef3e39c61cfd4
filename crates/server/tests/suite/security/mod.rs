//! The regression suite of the outside security review: one module per rule, each
//! test named after what must hold. Every test talks HTTP to the real server on
//! 127.0.0.1:0 (see `common`).

mod audience;
mod delegation;
mod full_disk;
mod hygiene;
mod key_behind_token;
mod lifetimes;
mod log_amplification;
mod receipts_did;
mod registration;
mod replay;
mod slow_clients;
