//! Compatibility surfaces: other products' paths and answer shapes, so that a user of
//! ImaRobot or KairosAI (and AIM's signed-action call) changes only a base URL and a
//! key (issue 21).
//!
//! Every handler here is a thin adapter: it parses the product's request, calls the
//! native handler or the shared function the native handler calls (token check,
//! verdict, ledger, audit, registration), and reshapes the answer. No rule lives here:
//! a compatibility route refuses whatever the native route refuses, and where the
//! product's shape cannot say why, it refuses anyway (a 4xx, or `valid: false`).
//!
//! These routes are not in the OpenAPI document (`/openapi.json` describes Bonafide's
//! own contract; these are other products' contracts, described in the README's
//! "Moving from another product").

use std::sync::Arc;

use axum::Router;

use crate::state::AppState;

pub mod agentoauth;
pub mod aim;
pub mod aim_sdk;
pub mod imarobot;
pub mod kairos;
pub mod playground;

/// The compatibility routes, merged into [`crate::router`].
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(agentoauth::routes())
        .merge(aim::routes())
        .merge(aim_sdk::routes())
        .merge(imarobot::routes())
        .merge(kairos::routes())
}
