//! The OpenAPI 3.1 document, generated from the handlers' annotations. A golden
//! snapshot test (`tests/suite/openapi.rs`) keeps the contract from drifting unnoticed,
//! and a schema fuzzer (`tests/suite/schema_fuzz.rs`) holds the server to it.
//!
//! The error answers every operation shares (a malformed body, a missing or wrong
//! key, a full store…) are not written on each handler: [`ErrorResponses`] adds them
//! from what the operation declares (its security, parameters and request body), and
//! gives every error answer the one [`ErrorBody`] schema. A handler's own error
//! statuses, with their descriptions, stay in its annotation.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorCode, ErrorDetail};
use crate::routes::{
    accounts, admin, agent_keys, agents, audit, auth_sessions, issuer_keys, meta, policies,
    receipts, verify,
};

/// The API document.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Bonafide", description = "Identity and delegated authority for AI agents: register agents, issue, verify and revoke their tokens, and check the audit log of everything that happened.\n\nEvery error answer is `{\"error\":{\"code\",\"message\",\"request_id\"}}` (`ErrorBody`; `code` is one of `ErrorCode`; token exchange answers RFC 6749 errors, with an `ErrorCode` as `code`). A verify answer whose token is not valid carries the same object as `error`. A 503 is a passing condition (a full or busy store, a timeout): retry after its `Retry-After` seconds. A 429 (`RATE_LIMITED`) means a rate limit was reached: retry after its `Retry-After` seconds; every answer a limit applied to carries `RateLimit-Policy` and `RateLimit` (IETF httpapi draft). A 429 `QUOTA_EXCEEDED` means an organisation's monthly verification quota is used up (its `reset` says when it starts again); a verify answer at or over 80 % of it carries `Bonafide-Quota-Warning: USED/LIMIT; reset=…`."),
    paths(
        admin::create_issuer, admin::create_receiver, admin::set_audiences, admin::rotate_keys,
        admin::admin_keys, admin::revoke_admin_key, admin::revoke_by_hash,
        crate::routes::rate_limits::list, crate::routes::rate_limits::set_key, crate::routes::rate_limits::clear_key,
        crate::routes::usage::usage, crate::routes::usage::set_plan, crate::routes::usage::get_plan,
        policies::lint, policies::revoke,
        agents::register, agents::list, agents::get, agents::issue_token, agents::revoke, agents::suspend, agents::reactivate, agents::revoke_token,
        agent_keys::rotate, agent_keys::did_document, agent_keys::signatures_directory, crate::routes::verify_action::verify_action,
        issuer_keys::me, issuer_keys::add, issuer_keys::list, issuer_keys::revoke,
        crate::routes::issuer_domain::verify_domain,
        crate::routes::token_exchange::exchange,
        verify::verify_get, verify::verify_post, verify::simulate, verify::introspect, receipts::get,
        audit::checkpoint, audit::entries, audit::inclusion, audit::consistency, audit::bundle, audit::tile,
        crate::routes::audit_prune::prune,
        crate::status_lists::get_list, crate::status_lists::allocate, crate::status_lists::jwks,
        crate::routes::events::stream_events, crate::routes::events::ack, crate::routes::events::acks,
        crate::routes::events::create_webhook, crate::routes::events::list_webhooks,
        crate::routes::events::delete_webhook, crate::routes::events::resume_webhook,
        crate::routes::events::ssf_configuration, meta::event_jwks,
        meta::jwks, meta::receipt_jwks, meta::public_key_pem, meta::configuration, meta::scopes, meta::health, meta::health_alias, meta::healthz, meta::metrics, meta::openapi,
        // Organisations, people and sessions (issue 18).
        accounts::create_org, accounts::get_org, accounts::update_org, accounts::members,
        accounts::invite, accounts::set_role, accounts::remove_member, accounts::create_issuer,
        accounts::create_receiver, accounts::owned, accounts::adopt, accounts::org_security_events,
        accounts::all_security_events, accounts::accept,
        auth_sessions::login, auth_sessions::refresh, auth_sessions::logout, auth_sessions::me,
        auth_sessions::sessions, auth_sessions::revoke_session, auth_sessions::change_password,
        auth_sessions::totp_enroll, auth_sessions::totp_confirm, auth_sessions::totp_disable,
        auth_sessions::session_jwks,
        // API keys as objects (issue 18 item 3).
        crate::routes::api_keys::create, crate::routes::api_keys::list,
        crate::routes::api_keys::revoke, crate::routes::api_keys::rotate,
        crate::routes::api_keys::oauth_token,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, ErrorCode,
        // Named by path parameters, which do not register the schemas they name.
        values::AgentId, values::ReceiverId, values::ReceiptId, values::AdminKeyId, values::ApiKeyHashId,
        values::Thumbprint, values::TilePath, values::NamedAudience,
    )),
    modifiers(&Security, &ErrorResponses, &ExactErrorObjects),
    tags(
        (name = "receiver", description = "Verify agents (no key needed)"),
        (name = "issuer", description = "Register and manage agents (issuer key)"),
        (name = "admin", description = "Operate the registry (admin key)"),
        (name = "audit", description = "The tamper-evident audit log: checkpoints, proofs, tiles"),
        (name = "discovery", description = "Keys, catalog, health"),
        (name = "status", description = "Token Status Lists: revocation for receivers that verify offline"),
        (name = "accounts", description = "Organisations, people and sessions (a person's access token)"),
        (name = "keys", description = "API keys: create, list, rotate, revoke (a key, or an organisation admin's access token)"),
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
            components.add_security_scheme(
                "access_token",
                SecurityScheme::Http(
                    utoipa::openapi::security::HttpBuilder::new()
                        .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "a person's access token (RFC 9068 `at+jwt`, 15 minutes) from `POST /v1/auth/login`",
                        ))
                        .build(),
                ),
            );
        }
    }
}

/// `ErrorBody` and `ErrorDetail` hold exactly their members: the server writes no
/// other (the types read answers leniently, so a client keeps working when a later
/// version adds one; the document states what this version sends).
#[derive(Debug)]
struct ExactErrorObjects;

impl Modify for ExactErrorObjects {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        for name in ["ErrorBody", "ErrorDetail"] {
            if let Some(RefOr::T(Schema::Object(o))) = components.schemas.get_mut(name) {
                o.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Adds the error answers an operation shares with others, from what it declares:
///
/// - 400 `BAD_REQUEST`/`MALFORMED_JSON` when it takes parameters or a body;
/// - 401 when it reads a key (its `security` names `api_key`, required or not), and
///   403 when the key is required (a key of another kind);
/// - 408 and 413 when it takes a body; 415 when the body is required JSON; 422 when
///   it is JSON of a named schema (well-formed but invalid);
/// - 503 (with `Retry-After`) for every operation: a full or unavailable store or a
///   request timeout can meet any of them.
///
/// An answer the handler documents itself keeps its description (and its own body,
/// if it names one); every error answer without a body gets [`ErrorBody`].
#[derive(Debug)]
pub struct ErrorResponses;

/// How an operation takes a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// No key read.
    None,
    /// A key is read if given (open endpoints that attribute or widen with a key).
    Optional,
    /// A key of one kind is required.
    Required,
}

fn auth(op: &Operation) -> Auth {
    match &op.security {
        None => Auth::None,
        Some(reqs) if reqs.is_empty() => Auth::None,
        Some(reqs) if reqs.contains(&SecurityRequirement::default()) => Auth::Optional,
        Some(_) => Auth::Required,
    }
}

/// The default description of a shared error answer.
fn describe(status: &str, auth: Auth) -> &'static str {
    match status {
        "400" => {
            "malformed request: a body that is not JSON (`MALFORMED_JSON`), or a path or query parameter of the wrong type (`BAD_REQUEST`)"
        }
        "401" if auth == Auth::Optional => {
            "a key was given but is malformed or unknown (`UNAUTHORIZED`); no key is fine"
        }
        "401" => "no API key, or a malformed or unknown one (`UNAUTHORIZED`)",
        "403" => "an API key of another kind (`FORBIDDEN`)",
        "404" => "not found (`NOT_FOUND`)",
        "408" => "the body did not arrive within the request timeout (`REQUEST_TIMEOUT`)",
        "409" => "conflicts with the registry's state (`CONFLICT`)",
        "413" => "the body is over the size limit (`PAYLOAD_TOO_LARGE`)",
        "415" => {
            "the body is not sent as `Content-Type: application/json` (`UNSUPPORTED_MEDIA_TYPE`)"
        }
        "422" => {
            "well-formed but invalid: an unknown or missing member, a value of the wrong type, or one out of range (`INVALID_REQUEST`, or a more precise code)"
        }
        "429" => {
            "over a rate limit (`RATE_LIMITED`): per API key, or per client address without one (and per token issuer for anonymous verifies). `Retry-After` says when to try again; `RateLimit-Policy` and `RateLimit` (IETF httpapi draft) which limit and how much is left. On verify calls made with an organisation's receiver key, also `QUOTA_EXCEEDED`: the organisation's monthly verification quota is used up; `Retry-After` and the error's `reset` say when the next month (UTC) begins"
        }
        "503" => {
            "a passing condition: the store is full or cannot write (`STORAGE_FULL`, `STORE_UNAVAILABLE`), the audit log is unavailable (`AUDIT_UNAVAILABLE`), or the answer took too long (`TIMEOUT`). Retry after `Retry-After` seconds"
        }
        _ => "error",
    }
}

fn error_content() -> Content {
    Content::new(Some(Ref::from_schema_name("ErrorBody")))
}

fn retry_after() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0)),
        ))
        .description(Some("seconds to wait before retrying (RFC 9110 §10.2.3)"))
        .build()
}

fn ratelimit_header(what: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(what))
        .build()
}

fn body_of(op: &Operation) -> Option<&RequestBody> {
    match op.request_body.as_ref()? {
        RefOr::T(body) => Some(body),
        RefOr::Ref(_) => None,
    }
}

/// utoipa writes an optional body (`request_body = Option<T>`) as "`T` or `null`";
/// what such an endpoint takes is `T` or no body at all (a JSON `null` is refused with
/// 422): the body is not required, and its schema is `T`.
fn optional_body_is_absent_not_null(op: &mut Operation) {
    let Some(RefOr::T(body)) = op.request_body.as_mut() else {
        return;
    };
    if body.required == Some(Required::True) {
        return;
    }
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema else {
            continue;
        };
        let typed: Vec<&RefOr<Schema>> = one_of.items.iter().filter(|s| !is_null(s)).collect();
        if let [only @ RefOr::Ref(_)] = typed.as_slice() {
            content.schema = Some((*only).clone());
        }
    }
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

fn add_shared_errors(op: &mut Operation, add: bool, limited: bool) {
    optional_body_is_absent_not_null(op);
    let auth = auth(op);
    let body = body_of(op);
    let has_body = body.is_some();
    let json = body.and_then(|b| b.content.get("application/json"));
    let json_required = json.is_some() && body.is_some_and(|b| b.required == Some(Required::True));
    // A body of a named schema is parsed into it: it can be well-formed but invalid.
    let typed =
        json.is_some_and(|c| matches!(c, RefOr::T(c) if matches!(c.schema, Some(RefOr::Ref(_)))));
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());

    let mut shared: Vec<&str> = Vec::new();
    if has_params || has_body {
        shared.push("400");
    }
    if auth != Auth::None {
        shared.push("401");
    }
    if auth == Auth::Required {
        shared.push("403");
    }
    if has_body {
        shared.extend(["408", "413"]);
    }
    if typed {
        shared.push("422");
    }
    if json_required {
        shared.push("415");
    }
    shared.push("503");
    if !add {
        shared.clear();
    }
    // Rate limits apply before any handler, whatever its own error format.
    if limited {
        shared.push("429");
    }
    for status in shared {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::T(Response::new("")));
    }

    for (status, response) in &mut op.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        if response.description.is_empty() {
            describe(status, auth).clone_into(&mut response.description);
        }
        if response.content.is_empty() {
            response
                .content
                .insert("application/json".to_owned(), error_content().into());
        }
        if status == "503" || status == "429" {
            response
                .headers
                .entry("Retry-After".to_owned())
                .or_insert_with(|| retry_after().into());
        }
        if status == "429" {
            response
                .headers
                .entry("RateLimit-Policy".to_owned())
                .or_insert_with(|| {
                    ratelimit_header("the limits applied, e.g. `\"ip\";q=100;w=60` (quota per window in seconds)").into()
                });
            response
                .headers
                .entry("RateLimit".to_owned())
                .or_insert_with(|| {
                    ratelimit_header("what is left of each, e.g. `\"ip\";r=0;t=60` (requests remaining, seconds until full)").into()
                });
        }
    }
}

/// Operations that answer errors in their own format (RFC 6749 for token exchange)
/// and document every error answer themselves.
const OWN_ERRORS: &[&str] = &["/v1/token"];

/// Operations rate limits never apply to (health checks).
const NOT_LIMITED: &[&str] = &["/healthz", "/health", "/v1/health"];

impl Modify for ErrorResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut doc.paths.paths {
            let own = OWN_ERRORS.contains(&path.as_str());
            let limited = !NOT_LIMITED.contains(&path.as_str());
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared_errors(op, !own, limited);
            }
        }
    }
}

/// Schemas of the values the server checks by one shared rule: they live with the
/// wire types in `bonafide_api`, named here as the handlers' annotations name them.
pub use bonafide_api::values;
