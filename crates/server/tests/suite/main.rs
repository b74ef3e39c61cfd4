//! The server's integration tests, one binary: the real server on 127.0.0.1:0 over
//! HTTP (see `common`), outside JOSE clients, the OpenAPI contract (a golden snapshot,
//! and an outside schema fuzzer against the real server), and the
//! security review's regression suite.

mod common;

mod accounts;
mod agent_keys;
mod api;
mod api_keys;
mod audit;
mod compat_agentoauth;
mod compat_aim_sdk;
mod compat_imarobot;
mod compat_kairos;
mod consent_tokens;
mod decisions;
mod delegation;
mod domain;
mod events;
mod httpsig_key;
mod interop;
mod login_backoff;
mod metrics;
mod openapi;
mod policy_tokens;
mod proofs;
mod quotas;
mod rate_limits;
mod rotation;
mod schema_fuzz;
mod security;
mod self_custody;
mod status_lists;
mod suspend;
mod verify_action;
