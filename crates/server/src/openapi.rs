//! The OpenAPI 3.1 document, generated from the handlers' annotations. A golden
//! snapshot test (`tests/suite/openapi.rs`) keeps the contract from drifting unnoticed.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    admin, agent_keys, agents, audit, issuer_keys, meta, policies, receipts, verify,
};

/// The API document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Bonafide", description = "Identity and delegated authority for AI agents: register agents, issue, verify and revoke their tokens, and check the audit log of everything that happened."),
    paths(
        admin::create_issuer, admin::create_receiver, admin::set_audiences, admin::rotate_keys,
        admin::admin_keys, admin::revoke_admin_key,
        policies::lint,
        agents::register, agents::list, agents::get, agents::issue_token, agents::revoke, agents::suspend, agents::reactivate, agents::revoke_token,
        agent_keys::rotate, agent_keys::did_document, agent_keys::signatures_directory, crate::routes::verify_action::verify_action,
        issuer_keys::me, issuer_keys::add, issuer_keys::list, issuer_keys::revoke,
        crate::routes::issuer_domain::verify_domain,
        crate::routes::token_exchange::exchange,
        verify::verify_get, verify::verify_post, verify::simulate, verify::introspect, receipts::get,
        audit::checkpoint, audit::entries, audit::inclusion, audit::consistency, audit::bundle, audit::tile,
        meta::jwks, meta::receipt_jwks, meta::public_key_pem, meta::configuration, meta::scopes, meta::health, meta::healthz, meta::openapi,
    ),
    modifiers(&Security),
    tags(
        (name = "receiver", description = "Verify agents (no key needed)"),
        (name = "issuer", description = "Register and manage agents (issuer key)"),
        (name = "admin", description = "Operate the registry (admin key)"),
        (name = "audit", description = "The tamper-evident audit log: checkpoints, proofs, tiles"),
        (name = "discovery", description = "Keys, catalog, health"),
    )
)]
pub struct ApiDoc;

#[derive(Debug)]
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                "api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-API-Key",
                    "`bfk_…` key; `Authorization: Bearer bfk_…` also works",
                ))),
            );
        }
    }
}
