//! Organisations and their people (issue 18): create an organisation with its first
//! owner's invitation, accept invitations, members and roles, issuers and receivers
//! an organisation owns, and its security events. What each role may do is
//! [`Permission`], checked by [`PersonAuth::require`].

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::ids::{IssuerId, OrgId, PersonId, ReceiverId};
use bonafide_store::{
    AuditRecord, ConflictKind, Invitation, Issuer, Organisation, Owned, Person, Receiver, Role,
    SecurityEvent, StoreError,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{check_text, random16, random20};
use crate::accounts::{self, Permission, PersonAuth};
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode};
use crate::state::AppState;
use crate::time::rfc3339_ms;

/// The routes of this module.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/orgs", post(create_org))
        .route("/v1/orgs/{id}", get(get_org).patch(update_org))
        .route("/v1/orgs/{id}/members", get(members))
        .route(
            "/v1/orgs/{id}/members/{person}",
            put(set_role).delete(remove_member),
        )
        .route("/v1/orgs/{id}/invitations", post(invite))
        .route("/v1/orgs/{id}/issuers", post(create_issuer))
        .route("/v1/orgs/{id}/receivers", post(create_receiver))
        .route("/v1/orgs/{id}/owned", get(owned))
        .route("/v1/orgs/{id}/adopt", post(adopt))
        .route("/v1/orgs/{id}/security-events", get(org_security_events))
        .route("/v1/admin/security-events", get(all_security_events))
        .route("/v1/invitations/accept", post(accept))
        .merge(super::auth_sessions::routes())
}

/// An audit record of an account event: the organisation and person it concerns.
pub(crate) fn account_audit(
    event: EventType,
    now_ms: i64,
    actor: Actor,
    org: Option<&OrgId>,
    person: Option<&PersonId>,
    fill: impl FnOnce(&mut AuditEntry),
) -> Result<AuditRecord, ApiError> {
    let mut entry = AuditEntry::new(event, now_ms, actor);
    entry.org = org.map(ToString::to_string);
    entry.person = person.map(ToString::to_string);
    entry.request_id = Some(crate::request_id::current().to_string());
    fill(&mut entry);
    crate::audit::record(&entry, None, None)
        .map_err(|e| ApiError::invalid(format!("this change cannot be audited: {e}")))
}

fn org_id(text: &str) -> Result<OrgId, ApiError> {
    OrgId::try_from(text).map_err(|_| ApiError::not_found("organisation"))
}

fn email(text: &str) -> Result<String, ApiError> {
    bonafide_core::password::normalise_email(text)
        .ok_or_else(|| ApiError::invalid("`email` is not an email address"))
}

fn parse_role(text: &str) -> Result<Role, ApiError> {
    Role::parse(text)
        .ok_or_else(|| ApiError::invalid("`role` must be owner, admin, member or viewer"))
}

fn store_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(kind @ (ConflictKind::OrgNameTaken | ConflictKind::LastOwner)) => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, kind.message())
        }
        other => other.into(),
    }
}

/// An invitation as shown once to whoever made it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationCreated {
    /// The one-time invitation token (`bfi_…`): give it to the person, who accepts it
    /// with `POST /v1/invitations/accept` (`bonafide org accept TOKEN`) and sets their
    /// password. Shown once; stored only as its SHA-256.
    pub token: String,
    /// For whom.
    pub email: String,
    /// With which role.
    pub role: String,
    /// Into which organisation.
    pub org_id: String,
    /// RFC 3339; not accepted after.
    pub expires_at: String,
}

fn new_invitation(
    org: &OrgId,
    email: String,
    role: Role,
    now_ms: i64,
) -> Result<(Invitation, InvitationCreated), ApiError> {
    let (token, hash) = accounts::new_secret("bfi_")?;
    let expires_at_ms = now_ms + accounts::INVITATION_TTL_MS;
    let shown = InvitationCreated {
        token,
        email: email.clone(),
        role: role.as_str().to_owned(),
        org_id: org.to_string(),
        expires_at: rfc3339_ms(expires_at_ms),
    };
    Ok((
        Invitation {
            token_hash: hash,
            org_id: org.clone(),
            email,
            role,
            created_at_ms: now_ms,
            expires_at_ms,
            accepted_at_ms: None,
        },
        shown,
    ))
}

/// `POST /v1/orgs` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Unique name (1–200 characters).
    pub name: String,
    /// The first owner's email: the answer holds their one-time invitation.
    pub owner_email: String,
}

/// `POST /v1/orgs` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgCreated {
    /// `org_…`.
    pub org_id: String,
    /// The name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// The first owner's invitation (shown once).
    pub invitation: InvitationCreated,
}

/// Creates an organisation and its first owner's invitation: with the admin key, or
/// with no key when the registry runs with `--open-signup`.
#[utoipa::path(post, path = "/v1/orgs", tag = "accounts", request_body = CreateOrg,
    security((), ("api_key" = [])),
    responses((status = 201, body = OrgCreated),
              (status = 401, description = "no admin key and open sign-up is off (`UNAUTHORIZED`)"),
              (status = 403, description = "a key other than the admin key"),
              (status = 409, description = "an organisation with this name exists (`CONFLICT`)"),
              (status = 422)))]
pub async fn create_org(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateOrg>,
) -> Result<(StatusCode, ApiJson<OrgCreated>), ApiError> {
    let actor = match caller {
        Caller::Admin => Actor::Admin,
        Caller::Anonymous if state.config.open_signup => Actor::Anonymous,
        Caller::Anonymous => {
            return Err(ApiError::unauthorized(
                "creating an organisation needs the admin key (this registry does not allow open sign-up)",
            ));
        }
        _ => {
            return Err(ApiError::forbidden(
                "creating an organisation needs the admin key",
            ));
        }
    };
    let name = check_text("name", &body.name, 200)?;
    let owner = email(&body.owner_email)?;
    let now_ms = state.now_ms();
    let org = Organisation {
        id: OrgId::from_random(random16()?),
        name,
        require_2fa: false,
        created_at_ms: now_ms,
    };
    let (invitation, shown) = new_invitation(&org.id, owner, Role::Owner, now_ms)?;
    let audit = account_audit(
        EventType::OrgCreated,
        now_ms,
        actor,
        Some(&org.id),
        None,
        |e| {
            e.note = Some(org.name.clone());
        },
    )?;
    state
        .store
        .create_org(&org, &invitation, &audit)
        .await
        .map_err(store_conflict)?;
    tracing::info!(org_id = %org.id, "organisation created");
    Ok((
        StatusCode::CREATED,
        ApiJson(OrgCreated {
            org_id: org.id.to_string(),
            name: org.name,
            created_at: rfc3339_ms(now_ms),
            invitation: shown,
        }),
    ))
}

/// An organisation as its members see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrgView {
    /// `org_…`.
    pub org_id: String,
    /// The name.
    pub name: String,
    /// Every member needs a second factor to act in it.
    pub require_2fa: bool,
    /// RFC 3339.
    pub created_at: String,
    /// The caller's role.
    pub your_role: String,
}

fn view(org: Organisation, role: Role) -> OrgView {
    OrgView {
        org_id: org.id.to_string(),
        name: org.name,
        require_2fa: org.require_2fa,
        created_at: rfc3339_ms(org.created_at_ms),
        your_role: role.as_str().to_owned(),
    }
}

/// An organisation (any member).
#[utoipa::path(get, path = "/v1/orgs/{id}", tag = "accounts",
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 200, body = OrgView), (status = 401), (status = 403), (status = 404)))]
pub async fn get_org(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<OrgView>, ApiError> {
    let (org, role) = who.require(&state, &org_id(&id)?, Permission::Read).await?;
    Ok(ApiJson(view(org, role)))
}

/// `PATCH /v1/orgs/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    /// Require a second factor of every member (sessions without one are refused
    /// in this organisation with 403 `TWO_FACTOR_REQUIRED`).
    pub require_2fa: bool,
}

/// Changes an organisation's settings (owner).
#[utoipa::path(patch, path = "/v1/orgs/{id}", tag = "accounts", request_body = UpdateOrg,
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 200, body = OrgView), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn update_org(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateOrg>,
) -> Result<ApiJson<OrgView>, ApiError> {
    let id = org_id(&id)?;
    let (mut org, role) = who.require(&state, &id, Permission::ManageOrg).await?;
    if body.require_2fa && !who.session.two_factor {
        // Or the owner would lock themselves out of the setting they just made.
        return Err(accounts::two_factor_required(
            "enrol in two-factor authentication and log in with a code before requiring it of everyone",
        ));
    }
    let audit = account_audit(
        EventType::OrgUpdated,
        state.now_ms(),
        who.actor(),
        Some(&id),
        None,
        |e| e.note = Some(format!("require_2fa={}", body.require_2fa)),
    )?;
    state
        .store
        .set_org_require_2fa(&id, body.require_2fa, &audit)
        .await?;
    org.require_2fa = body.require_2fa;
    Ok(ApiJson(view(org, role)))
}

/// One member.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    /// `usr_…`.
    pub person_id: String,
    /// Their email.
    pub email: String,
    /// owner, admin, member or viewer.
    pub role: String,
    /// RFC 3339.
    pub joined_at: String,
}

/// `GET /v1/orgs/{id}/members` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    /// Oldest first.
    pub members: Vec<MemberView>,
}

/// An organisation's members (any member).
#[utoipa::path(get, path = "/v1/orgs/{id}/members", tag = "accounts",
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 200, body = MemberList), (status = 401), (status = 403), (status = 404)))]
pub async fn members(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<MemberList>, ApiError> {
    let id = org_id(&id)?;
    who.require(&state, &id, Permission::Read).await?;
    let members = state
        .store
        .members(&id)
        .await?
        .into_iter()
        .map(|m| MemberView {
            person_id: m.person_id.to_string(),
            email: m.email,
            role: m.role.as_str().to_owned(),
            joined_at: rfc3339_ms(m.created_at_ms),
        })
        .collect();
    Ok(ApiJson(MemberList { members }))
}

/// `POST /v1/orgs/{id}/invitations` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Invite {
    /// Whom.
    pub email: String,
    /// owner (by an owner only), admin, member or viewer.
    pub role: String,
}

/// Invites a person (admin or owner; an owner only by an owner).
#[utoipa::path(post, path = "/v1/orgs/{id}/invitations", tag = "accounts", request_body = Invite,
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 201, body = InvitationCreated), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn invite(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Invite>,
) -> Result<(StatusCode, ApiJson<InvitationCreated>), ApiError> {
    let id = org_id(&id)?;
    let role = parse_role(&body.role)?;
    let need = if role == Role::Owner {
        Permission::ManageOrg
    } else {
        Permission::ManageMembers
    };
    who.require(&state, &id, need).await?;
    let now_ms = state.now_ms();
    let (invitation, shown) = new_invitation(&id, email(&body.email)?, role, now_ms)?;
    let audit = account_audit(
        EventType::PersonInvited,
        now_ms,
        who.actor(),
        Some(&id),
        None,
        |e| e.note = Some(role.as_str().to_owned()),
    )?;
    state.store.create_invitation(&invitation, &audit).await?;
    Ok((StatusCode::CREATED, ApiJson(shown)))
}

/// `PUT /v1/orgs/{id}/members/{person}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// The new role.
    pub role: String,
}

async fn target_role(state: &AppState, org: &OrgId, person: &PersonId) -> Result<Role, ApiError> {
    state
        .store
        .members(org)
        .await?
        .into_iter()
        .find(|m| &m.person_id == person)
        .map(|m| m.role)
        .ok_or_else(|| ApiError::not_found("member"))
}

/// Changes a member's role (admin or owner; making or unmaking an owner: owner).
#[utoipa::path(put, path = "/v1/orgs/{id}/members/{person}", tag = "accounts", request_body = SetRole,
    params(("id" = String, Path, description = "`org_…`"), ("person" = String, Path, description = "`usr_…`")),
    security(("access_token" = [])),
    responses((status = 200, body = MemberView), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "the last owner cannot stop being one"), (status = 422)))]
pub async fn set_role(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath((id, person)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<SetRole>,
) -> Result<ApiJson<MemberView>, ApiError> {
    let id = org_id(&id)?;
    let role = parse_role(&body.role)?;
    who.require(&state, &id, Permission::ManageMembers).await?;
    let person = PersonId::try_from(person.as_str()).map_err(|_| ApiError::not_found("member"))?;
    let current = target_role(&state, &id, &person).await?;
    if current == Role::Owner || role == Role::Owner {
        who.require(&state, &id, Permission::ManageOrg).await?;
    }
    let audit = account_audit(
        EventType::MemberRoleChanged,
        state.now_ms(),
        who.actor(),
        Some(&id),
        Some(&person),
        |e| e.note = Some(format!("{current}->{role}")),
    )?;
    state
        .store
        .set_member_role(&id, &person, role, &audit)
        .await
        .map_err(store_conflict)?;
    let m = state
        .store
        .members(&id)
        .await?
        .into_iter()
        .find(|m| m.person_id == person)
        .ok_or_else(|| ApiError::not_found("member"))?;
    Ok(ApiJson(MemberView {
        person_id: m.person_id.to_string(),
        email: m.email,
        role: m.role.as_str().to_owned(),
        joined_at: rfc3339_ms(m.created_at_ms),
    }))
}

/// Removes a member (admin or owner; an owner: owner). A person left in no
/// organisation has every session ended.
#[utoipa::path(delete, path = "/v1/orgs/{id}/members/{person}", tag = "accounts",
    params(("id" = String, Path, description = "`org_…`"), ("person" = String, Path, description = "`usr_…`")),
    security(("access_token" = [])),
    responses((status = 204, description = "removed"), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "the last owner cannot be removed")))]
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath((id, person)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let id = org_id(&id)?;
    who.require(&state, &id, Permission::ManageMembers).await?;
    let person = PersonId::try_from(person.as_str()).map_err(|_| ApiError::not_found("member"))?;
    if target_role(&state, &id, &person).await? == Role::Owner {
        who.require(&state, &id, Permission::ManageOrg).await?;
    }
    let now_ms = state.now_ms();
    let audit = account_audit(
        EventType::MemberRemoved,
        now_ms,
        who.actor(),
        Some(&id),
        Some(&person),
        |_| {},
    )?;
    state
        .store
        .remove_member(&id, &person, now_ms, &audit)
        .await
        .map_err(store_conflict)?;
    let actor = who.actor();
    if let Err(e) =
        crate::routes::api_keys::revoke_created_by(&state, &id, &person, actor.clone(), now_ms)
            .await
    {
        // The removal is committed and cannot be asked again: the keys left are revoked
        // in the background, with backoff, so a failing store delays them, never
        // leaves them live for good. (Their maker can make no more keys meanwhile:
        // the store refuses a key whose maker is not a member.)
        tracing::error!(%person, error = %e.message, "revoking a removed member's keys failed; retrying in the background");
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut wait = std::time::Duration::from_secs(1);
            for _ in 0..12 {
                tokio::time::sleep(wait).await;
                let now_ms = state.now_ms();
                match crate::routes::api_keys::revoke_created_by(
                    &state,
                    &id,
                    &person,
                    actor.clone(),
                    now_ms,
                )
                .await
                {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(%person, error = %e.message, "revoking a removed member's keys failed again")
                    }
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(300));
            }
            tracing::error!(%person, "a removed member's keys could not be revoked: revoke them by hand (`bonafide api-key list`)");
        });
        return Err(e);
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/orgs/{id}/issuers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgIssuer {
    /// As for `POST /v1/issuers`.
    pub name: String,
}

/// Creates an issuer the organisation owns (admin or owner); as `POST /v1/issuers`,
/// its API key shown once.
#[utoipa::path(post, path = "/v1/orgs/{id}/issuers", tag = "accounts", request_body = CreateOrgIssuer,
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 201, body = crate::routes::admin::IssuerCreated), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create_issuer(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateOrgIssuer>,
) -> Result<(StatusCode, ApiJson<crate::routes::admin::IssuerCreated>), ApiError> {
    let id = org_id(&id)?;
    who.require(&state, &id, Permission::CreateResources)
        .await?;
    let name = super::check_issuer_name(&body.name)?;
    let issuer = Issuer {
        id: IssuerId::from_random(random16()?),
        name,
        created_at_ms: state.now_ms(),
    };
    let key = ApiKey::from_random(KeyKind::Issuer, random20()?);
    let mut entry = AuditEntry::new(EventType::IssuerCreated, issuer.created_at_ms, who.actor());
    entry.issuer = Some(issuer.id.to_string());
    entry.org = Some(id.to_string());
    entry.note = Some(issuer.name.clone());
    entry.request_id = Some(crate::request_id::current().to_string());
    let audit = crate::audit::record(&entry, None, Some(&issuer.id))
        .map_err(|e| ApiError::invalid(format!("this change cannot be audited: {e}")))?;
    state
        .store
        .create_org_issuer(&issuer, &key.hash(), &id, &who.person.id, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("an issuer named `{}` already exists", issuer.name),
            ),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        ApiJson(crate::routes::admin::IssuerCreated {
            issuer_id: issuer.id.to_string(),
            name: issuer.name,
            api_key: key.expose_secret().to_owned(),
            created_at: rfc3339_ms(issuer.created_at_ms),
        }),
    ))
}

/// `POST /v1/orgs/{id}/receivers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrgReceiver {
    /// As for `POST /v1/receivers`.
    pub name: String,
    /// As for `POST /v1/receivers` (default `[name]`).
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
}

/// Creates a receiver the organisation owns (admin or owner); its key shown once.
#[utoipa::path(post, path = "/v1/orgs/{id}/receivers", tag = "accounts", request_body = CreateOrgReceiver,
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 201, body = crate::routes::admin::ReceiverCreated), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
pub async fn create_receiver(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateOrgReceiver>,
) -> Result<(StatusCode, ApiJson<crate::routes::admin::ReceiverCreated>), ApiError> {
    let id = org_id(&id)?;
    who.require(&state, &id, Permission::CreateResources)
        .await?;
    let name = check_text("name", &body.name, 253)?;
    let audiences = match &body.audiences {
        Some(list) => crate::routes::admin::check_audiences(list)?,
        None => vec![name.clone()],
    };
    let receiver = Receiver {
        id: ReceiverId::from_random(random16()?),
        name,
        audiences,
        created_at_ms: state.now_ms(),
    };
    let key = ApiKey::from_random(KeyKind::Receiver, random20()?);
    let audit = account_audit(
        EventType::ReceiverCreated,
        receiver.created_at_ms,
        who.actor(),
        Some(&id),
        None,
        |e| {
            e.target = Some(receiver.id.to_string());
            e.note = Some(receiver.name.clone());
        },
    )?;
    state
        .store
        .create_org_receiver(&receiver, &key.hash(), &id, &who.person.id, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(kind) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, kind.message())
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        ApiJson(crate::routes::admin::ReceiverCreated {
            receiver_id: receiver.id.to_string(),
            name: receiver.name,
            audiences: receiver.audiences,
            api_key: key.expose_secret().to_owned(),
            created_at: rfc3339_ms(receiver.created_at_ms),
        }),
    ))
}

/// `GET /v1/orgs/{id}/owned` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnedList {
    /// `iss_…` the organisation owns.
    pub issuers: Vec<String>,
    /// `rcv_…` it owns.
    pub receivers: Vec<String>,
}

/// The issuers and receivers an organisation owns (any member).
#[utoipa::path(get, path = "/v1/orgs/{id}/owned", tag = "accounts",
    params(("id" = String, Path, description = "`org_…`")),
    security(("access_token" = [])),
    responses((status = 200, body = OwnedList), (status = 401), (status = 403), (status = 404)))]
pub async fn owned(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<OwnedList>, ApiError> {
    let id = org_id(&id)?;
    who.require(&state, &id, Permission::Read).await?;
    owned_list(&state, &id).await.map(ApiJson)
}

/// What organisation `id` owns.
async fn owned_list(state: &AppState, id: &OrgId) -> Result<OwnedList, ApiError> {
    let mut out = OwnedList {
        issuers: Vec::new(),
        receivers: Vec::new(),
    };
    for o in state.store.org_owned(id).await? {
        match o {
            Owned::Issuer(i) => out.issuers.push(i.to_string()),
            Owned::Receiver(r) => out.receivers.push(r.to_string()),
        }
    }
    Ok(out)
}

/// `POST /v1/orgs/{id}/adopt` body: exactly one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adopt {
    /// An issuer made before organisations (or by the admin), not yet owned.
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// A receiver, likewise.
    #[serde(default)]
    pub receiver_id: Option<String>,
}

/// Gives an organisation an issuer or receiver that has no owner (admin key): how
/// rows from before organisations join one. Its API keys keep working.
#[utoipa::path(post, path = "/v1/orgs/{id}/adopt", tag = "admin", request_body = Adopt,
    params(("id" = String, Path, description = "`org_…`")),
    security(("api_key" = [])),
    responses((status = 200, body = OwnedList), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "another organisation owns it"), (status = 422)))]
pub async fn adopt(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<Adopt>,
) -> Result<ApiJson<OwnedList>, ApiError> {
    let id = org_id(&id)?;
    state
        .store
        .org(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("organisation"))?;
    let (what, target) = match (&body.issuer_id, &body.receiver_id) {
        (Some(i), None) => (
            Owned::Issuer(
                IssuerId::try_from(i.as_str()).map_err(|_| ApiError::not_found("issuer"))?,
            ),
            i.clone(),
        ),
        (None, Some(r)) => (
            Owned::Receiver(
                ReceiverId::try_from(r.as_str()).map_err(|_| ApiError::not_found("receiver"))?,
            ),
            r.clone(),
        ),
        _ => {
            return Err(ApiError::invalid(
                "send exactly one of `issuer_id` and `receiver_id`",
            ));
        }
    };
    let audit = account_audit(
        EventType::OrgUpdated,
        state.now_ms(),
        Actor::Admin,
        Some(&id),
        None,
        |e| {
            e.target = Some(target);
            e.note = Some("adopted".into());
        },
    )?;
    state
        .store
        .set_owner_org(&what, &id, &audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                "another organisation owns it",
            ),
            StoreError::NotFound => ApiError::not_found("issuer or receiver"),
            other => other.into(),
        })?;
    owned_list(&state, &id).await.map(ApiJson)
}

/// Security events query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this `id` (default 0: from the oldest kept).
    #[serde(default)]
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// At most this many, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// One security event.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityEventView {
    /// Its number; pass the last as `after` for the next page.
    pub id: i64,
    /// `login_failed`, `totp_failed`, `refresh_reuse`.
    pub kind: String,
    /// The person it concerns, when the email was an account's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    /// The organisation it concerns, when one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// The client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// What happened.
    pub detail: String,
    /// RFC 3339.
    pub at: String,
}

/// `GET …/security-events` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityEventList {
    /// Oldest first.
    pub events: Vec<SecurityEventView>,
}

fn event_list(events: Vec<SecurityEvent>) -> SecurityEventList {
    SecurityEventList {
        events: events
            .into_iter()
            .map(|e| SecurityEventView {
                id: e.id,
                kind: e.kind,
                person_id: e.person_id.map(|p| p.to_string()),
                org_id: e.org_id.map(|o| o.to_string()),
                ip: e.ip,
                detail: e.detail,
                at: rfc3339_ms(e.created_at_ms),
            })
            .collect(),
    }
}

fn page(q: &EventsQuery) -> Result<(i64, u32), ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be between 1 and 1000"));
    }
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("`after` must not be negative"));
    }
    Ok((after, limit))
}

/// The security events of an organisation's people (admin or owner): failed logins,
/// refused refresh-token reuse; kept for the registry's retention
/// period, not in the permanent log.
#[utoipa::path(get, path = "/v1/orgs/{id}/security-events", tag = "accounts",
    params(("id" = String, Path, description = "`org_…`"), EventsQuery),
    security(("access_token" = [])),
    responses((status = 200, body = SecurityEventList), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
pub async fn org_security_events(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<ApiJson<SecurityEventList>, ApiError> {
    let id = org_id(&id)?;
    let (after, limit) = page(&q)?;
    who.require(&state, &id, Permission::ReadSecurityEvents)
        .await?;
    let events = state.store.security_events(Some(&id), after, limit).await?;
    Ok(ApiJson(event_list(events)))
}

/// Every security event (admin key), including failures for emails that are no
/// account's.
#[utoipa::path(get, path = "/v1/admin/security-events", tag = "admin",
    params(EventsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = SecurityEventList), (status = 400), (status = 401), (status = 403), (status = 422)))]
pub async fn all_security_events(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<ApiJson<SecurityEventList>, ApiError> {
    let (after, limit) = page(&q)?;
    let events = state.store.security_events(None, after, limit).await?;
    Ok(ApiJson(event_list(events)))
}

/// `POST /v1/invitations/accept` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// The invitation token (`bfi_…`).
    pub token: String,
    /// The password to set (15 to 128 characters, any characters, no other rule); a
    /// person who has an account already gives their current one.
    pub password: String,
}

/// `POST /v1/invitations/accept` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// `usr_…`.
    pub person_id: String,
    /// The account's email.
    pub email: String,
    /// The organisation joined.
    pub org_id: String,
    /// The role held there.
    pub role: String,
}

/// Accepts an invitation: sets the password (a new account) and joins the
/// organisation. Single use; then log in with `POST /v1/auth/login`.
#[utoipa::path(post, path = "/v1/invitations/accept", tag = "accounts", request_body = Accept,
    responses((status = 200, body = Accepted),
              (status = 401, description = "an existing account's password is wrong (`INVALID_CREDENTIALS`)"),
              (status = 404, description = "no such invitation, or used, or expired"),
              (status = 422, description = "the password breaks the length rule")))]
pub async fn accept(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<Accept>,
) -> Result<ApiJson<Accepted>, ApiError> {
    let gone = || ApiError::not_found("invitation (or it was used, or it expired)");
    let hash = accounts::sha256(body.token.trim());
    let now_ms = state.now_ms();
    let invitation = state
        .store
        .invitation(&hash)
        .await?
        .filter(|i| bonafide_core::ct_eq(&i.token_hash, &hash))
        .filter(|i| i.accepted_at_ms.is_none() && now_ms < i.expires_at_ms)
        .ok_or_else(gone)?;
    let existing = state.store.person_by_email(&invitation.email).await?;
    let person = match existing {
        Some(p) if p.password_hash.is_some() => {
            if !accounts::verify_password(p.password_hash.clone(), body.password).await? {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::InvalidCredentials,
                    "you have an account already: give its current password",
                ));
            }
            p
        }
        other => {
            bonafide_core::password::check(&body.password, &invitation.email)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            let hash = accounts::hash_password(body.password).await?;
            match other {
                Some(mut p) => {
                    p.password_hash = Some(hash);
                    p
                }
                None => Person {
                    id: PersonId::from_random(random16()?),
                    email: invitation.email.clone(),
                    password_hash: Some(hash),
                    totp_secret: None,
                    totp_enabled_at_ms: None,
                    totp_last_step: None,
                    created_at_ms: now_ms,
                },
            }
        }
    };
    let audit = account_audit(
        EventType::PersonJoined,
        now_ms,
        Actor::Person {
            id: person.id.to_string(),
        },
        Some(&invitation.org_id),
        Some(&person.id),
        |e| e.note = Some(invitation.role.as_str().to_owned()),
    )?;
    let (person, membership) = state
        .store
        .accept_invitation(&hash, &person, now_ms, &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => gone(),
            other => other.into(),
        })?;
    Ok(ApiJson(Accepted {
        person_id: person.id.to_string(),
        email: person.email,
        org_id: membership.org_id.to_string(),
        role: membership.role.as_str().to_owned(),
    }))
}
