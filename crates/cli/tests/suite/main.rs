//! The CLI's integration tests, one binary: each module runs the real `bonafide`
//! binary as a process (most against a real `bonafide serve` on 127.0.0.1:0).

mod common;

mod accounts;
mod agent;
mod aim_sdk;
mod apikeys;
mod audit;
mod audit_export;
mod audit_prune;
mod basics;
mod domain;
mod durability;
mod errors;
mod migrate;
mod msrv;
mod policy;
mod push_events;
mod rate_limits;
mod readme;
mod receipt;
mod replicas;
mod secrets;
mod self_custody;
mod setup;
mod shell;
mod status;
mod status_lists;
mod suspend;
mod usage;
mod verify;
