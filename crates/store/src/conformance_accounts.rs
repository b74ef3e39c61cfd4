//! Conformance cases for organisations, people and sessions (issue 18).

use std::sync::Arc;

use bonafide_core::ids::{OrgId, PersonId, SessionId};

use super::{T0_MS, audit_note, issuer, unique};
use crate::{
    ConflictKind, Invitation, NewRefresh, Organisation, Owned, Person, Role, Rotation,
    SecurityEvent, Session, SessionSubject, Store, StoreError,
};

fn org(name: &str) -> Organisation {
    Organisation {
        id: OrgId::from_random(unique()),
        name: format!("{name}-{}", bonafide_core::hex(&unique::<4>())),
        require_2fa: false,
        created_at_ms: T0_MS,
    }
}

fn invitation(org: &OrgId, email: &str, role: Role) -> Invitation {
    Invitation {
        token_hash: unique(),
        org_id: org.clone(),
        email: email.to_owned(),
        role,
        created_at_ms: T0_MS,
        expires_at_ms: T0_MS + 86_400_000,
        accepted_at_ms: None,
    }
}

fn person(email: &str) -> Person {
    Person {
        id: PersonId::from_random(unique()),
        email: email.to_owned(),
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned()),
        totp_secret: None,
        totp_enabled_at_ms: None,
        totp_last_step: None,
        created_at_ms: T0_MS,
    }
}

fn email() -> String {
    format!("p{}@example.com", bonafide_core::hex(&unique::<6>()))
}

/// An organisation with an owner who accepted; the owner.
async fn org_with_owner(store: &dyn Store) -> (Organisation, Person) {
    let o = org("acme");
    let mail = email();
    let inv = invitation(&o.id, &mail, Role::Owner);
    store.create_org(&o, &inv, &audit_note()).await.unwrap();
    let (p, m) = store
        .accept_invitation(&inv.token_hash, &person(&mail), T0_MS + 1, &audit_note())
        .await
        .unwrap();
    assert_eq!(m.role, Role::Owner);
    (o, p)
}

fn session(person: &PersonId) -> Session {
    Session {
        id: SessionId::from_random(unique()),
        subject: SessionSubject::Person(person.clone()),
        client_id: "bonafide".into(),
        two_factor: false,
        ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        created_at_ms: T0_MS,
        last_used_ms: T0_MS,
        expires_at_ms: T0_MS + 7 * 86_400_000,
        revoked_at_ms: None,
        revoke_reason: None,
    }
}

fn refresh(expires_at_ms: i64) -> NewRefresh {
    NewRefresh {
        hash: unique(),
        expires_at_ms,
    }
}

pub async fn accounts_invitations_are_single_use_and_audited(store: Arc<dyn Store>) {
    let before = store.audit_size().await.unwrap();
    let o = org("single-use");
    let mail = email();
    let inv = invitation(&o.id, &mail, Role::Owner);
    store.create_org(&o, &inv, &audit_note()).await.unwrap();
    assert_eq!(store.org(&o.id).await.unwrap(), Some(o.clone()));
    // Same name again: refused.
    let mut twin = org("x");
    twin.name = o.name.clone();
    let twin_inv = invitation(&twin.id, &mail, Role::Owner);
    assert_eq!(
        store.create_org(&twin, &twin_inv, &audit_note()).await,
        Err(StoreError::Conflict(ConflictKind::OrgNameTaken))
    );
    // Another email than the invitation's: refused, nothing written.
    assert_eq!(
        store
            .accept_invitation(&inv.token_hash, &person(&email()), T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    let (p, m) = store
        .accept_invitation(&inv.token_hash, &person(&mail), T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!((m.role, m.email.as_str()), (Role::Owner, mail.as_str()));
    assert_eq!(store.person_by_email(&mail).await.unwrap(), Some(p.clone()));
    assert!(
        store
            .invitation(&inv.token_hash)
            .await
            .unwrap()
            .unwrap()
            .accepted_at_ms
            .is_some()
    );
    // Twice: refused.
    assert_eq!(
        store
            .accept_invitation(&inv.token_hash, &person(&mail), T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    // Expired: refused.
    let late = invitation(&o.id, &email(), Role::Viewer);
    store.create_invitation(&late, &audit_note()).await.unwrap();
    assert_eq!(
        store
            .accept_invitation(
                &late.token_hash,
                &person(&late.email),
                late.expires_at_ms,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
    // The organisation (with its owner's invitation), the acceptance, the second
    // invitation: 3 entries; nothing for the refusals.
    assert_eq!(store.audit_size().await.unwrap(), before + 3);
    // A second invitation for the same person keeps their password and the higher role.
    let again = invitation(&o.id, &mail, Role::Viewer);
    store
        .create_invitation(&again, &audit_note())
        .await
        .unwrap();
    let mut other = person(&mail);
    other.password_hash = Some("other".into());
    let (p2, m2) = store
        .accept_invitation(&again.token_hash, &other, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(p2.id, p.id);
    assert_eq!(p2.password_hash, p.password_hash);
    assert_eq!(m2.role, Role::Owner);
}

pub async fn accounts_an_organisation_keeps_an_owner(store: Arc<dyn Store>) {
    let (o, owner) = org_with_owner(store.as_ref()).await;
    assert_eq!(
        store
            .set_member_role(&o.id, &owner.id, Role::Admin, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::LastOwner))
    );
    assert_eq!(
        store
            .remove_member(&o.id, &owner.id, T0_MS, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::LastOwner))
    );
    let mail = email();
    let inv = invitation(&o.id, &mail, Role::Member);
    store.create_invitation(&inv, &audit_note()).await.unwrap();
    let (second, _) = store
        .accept_invitation(&inv.token_hash, &person(&mail), T0_MS, &audit_note())
        .await
        .unwrap();
    store
        .set_member_role(&o.id, &second.id, Role::Owner, &audit_note())
        .await
        .unwrap();
    store
        .set_member_role(&o.id, &owner.id, Role::Viewer, &audit_note())
        .await
        .unwrap();
    let members = store.members(&o.id).await.unwrap();
    let roles: Vec<_> = members
        .iter()
        .map(|m| (m.person_id.clone(), m.role))
        .collect();
    assert!(roles.contains(&(owner.id.clone(), Role::Viewer)));
    assert!(roles.contains(&(second.id.clone(), Role::Owner)));
    // Removing a member of no other organisation ends their sessions.
    let s = session(&owner.id);
    store
        .create_session(&s, &refresh(s.expires_at_ms), &audit_note())
        .await
        .unwrap();
    store
        .remove_member(&o.id, &owner.id, T0_MS + 5, &audit_note())
        .await
        .unwrap();
    assert!(store.memberships_of(&owner.id).await.unwrap().is_empty());
    let ended = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(ended.revoked_at_ms, Some(T0_MS + 5));
    assert_eq!(
        store
            .remove_member(&o.id, &owner.id, T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    // Ownership of issuers: once, by one organisation.
    let (iss, _) = issuer(store.as_ref()).await;
    let what = Owned::Issuer(iss.id.clone());
    assert_eq!(store.owner_org(&what).await.unwrap(), None);
    store
        .set_owner_org(&what, &o.id, &audit_note())
        .await
        .unwrap();
    store
        .set_owner_org(&what, &o.id, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.owner_org(&what).await.unwrap(), Some(o.id.clone()));
    assert_eq!(store.org_owned(&o.id).await.unwrap(), vec![what.clone()]);
    let (other, _) = org_with_owner(store.as_ref()).await;
    assert_eq!(
        store.set_owner_org(&what, &other.id, &audit_note()).await,
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    );
    let ghost = Owned::Issuer(bonafide_core::ids::IssuerId::from_random(unique()));
    assert_eq!(
        store.set_owner_org(&ghost, &o.id, &audit_note()).await,
        Err(StoreError::NotFound)
    );
}

pub async fn accounts_refresh_tokens_rotate_once(store: Arc<dyn Store>) {
    let (_, p) = org_with_owner(store.as_ref()).await;
    let s = session(&p.id);
    let first = refresh(T0_MS + 1000);
    store
        .create_session(&s, &first, &audit_note())
        .await
        .unwrap();
    let rec = store.refresh_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(rec.session.id, s.id);
    assert_eq!(rec.used_at_ms, None);
    let second = refresh(T0_MS + 2000);
    let before = store.audit_size().await.unwrap();
    assert_eq!(
        store
            .rotate_refresh(&first.hash, &second, T0_MS + 10, &audit_note())
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    let live = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(
        (live.last_used_ms, live.expires_at_ms),
        (T0_MS + 10, T0_MS + 2000)
    );
    // The used one again: reuse, nothing written.
    assert_eq!(
        store
            .rotate_refresh(
                &first.hash,
                &refresh(T0_MS + 3000),
                T0_MS + 11,
                &audit_note()
            )
            .await
            .unwrap(),
        Rotation::AlreadyUsed
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // Expired, unknown: refused.
    assert_eq!(
        store
            .rotate_refresh(&second.hash, &refresh(0), T0_MS + 2000, &audit_note())
            .await
            .unwrap(),
        Rotation::Refused
    );
    assert_eq!(
        store
            .rotate_refresh(&unique(), &refresh(0), T0_MS, &audit_note())
            .await
            .unwrap(),
        Rotation::Refused
    );
    // Concurrent uses of one token: exactly one rotates.
    let s2 = session(&p.id);
    let shared = refresh(T0_MS + 5000);
    store
        .create_session(&s2, &shared, &audit_note())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        let old = shared.hash;
        tasks.spawn(async move {
            store
                .rotate_refresh(&old, &refresh(T0_MS + 6000), T0_MS + 20, &audit_note())
                .await
                .unwrap()
        });
    }
    let mut rotated = 0;
    while let Some(r) = tasks.join_next().await {
        if r.unwrap() == Rotation::Rotated {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1);
    // A revoked session's token is refused; revoking twice changes nothing.
    assert!(
        store
            .revoke_session(&s2.id, T0_MS + 30, "refresh_reuse", &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_session(&s2.id, T0_MS + 31, "logout", &audit_note())
            .await
            .unwrap()
    );
    let ended = store.session(&s2.id).await.unwrap().unwrap();
    assert_eq!(ended.revoke_reason.as_deref(), Some("refresh_reuse"));
    let listed = store.sessions_of(&p.id, T0_MS + 40).await.unwrap();
    assert_eq!(
        listed.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        vec![s.id.clone()]
    );
}

/// An API key's session (client credentials at the token endpoint) is a family like
/// a person's: stored and read back as the key's, rotated by the same rule, not
/// listed among anyone's sessions, and ended when its key is revoked.
pub async fn accounts_key_sessions_rotate_and_end_with_their_key(store: Arc<dyn Store>) {
    let (_, key) = issuer(store.as_ref()).await;
    let mut s = session(&PersonId::from_random(unique()));
    s.subject = SessionSubject::Key(key);
    let first = refresh(T0_MS + 1000);
    store
        .create_session(&s, &first, &audit_note())
        .await
        .unwrap();
    let rec = store.refresh_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(rec.session.subject, SessionSubject::Key(key));
    assert_eq!(
        (rec.session.person(), rec.session.key()),
        (None, Some(&key))
    );
    let second = refresh(T0_MS + 2000);
    assert_eq!(
        store
            .rotate_refresh(&first.hash, &second, T0_MS + 10, &audit_note())
            .await
            .unwrap(),
        Rotation::Rotated
    );
    assert_eq!(
        store
            .rotate_refresh(
                &first.hash,
                &refresh(T0_MS + 3000),
                T0_MS + 11,
                &audit_note()
            )
            .await
            .unwrap(),
        Rotation::AlreadyUsed
    );
    // Revoking the key ends its families in the same transaction.
    store
        .revoke_api_key(&key, T0_MS + 20, &audit_note())
        .await
        .unwrap();
    let ended = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(ended.revoked_at_ms, Some(T0_MS + 20));
    assert_eq!(ended.revoke_reason.as_deref(), Some("key_revoked"));
    assert_eq!(
        store
            .rotate_refresh(
                &second.hash,
                &refresh(T0_MS + 4000),
                T0_MS + 21,
                &audit_note()
            )
            .await
            .unwrap(),
        Rotation::Refused
    );
    // A session names a known key (the schema's reference).
    let mut ghost = session(&PersonId::from_random(unique()));
    ghost.subject = SessionSubject::Key(bonafide_core::apikey::ApiKeyHash(unique()));
    assert!(
        store
            .create_session(&ghost, &refresh(T0_MS + 1000), &audit_note())
            .await
            .is_err()
    );
}

/// An organisation's issuer or receiver created by a person: its first key records
/// that person as its maker (what removing them from the organisation revokes).
pub async fn accounts_an_org_identitys_first_key_is_its_makers(store: Arc<dyn Store>) {
    use bonafide_core::apikey::KeyKind;
    let (o, p) = org_with_owner(store.as_ref()).await;
    let iss = super::new_issuer();
    let ik = super::key_hash(KeyKind::Issuer);
    store
        .create_org_issuer(&iss, &ik, &o.id, &p.id, &audit_note())
        .await
        .unwrap();
    let rcv = super::new_receiver();
    let rk = super::key_hash(KeyKind::Receiver);
    store
        .create_org_receiver(&rcv, &rk, &o.id, &p.id, &audit_note())
        .await
        .unwrap();
    for (kind, owner, hash) in [
        (KeyKind::Issuer, iss.id.to_string(), ik),
        (KeyKind::Receiver, rcv.id.to_string(), rk),
    ] {
        let keys = store.api_keys_of(kind, Some(&owner)).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].hash, hash);
        assert_eq!(keys[0].created_by.as_deref(), Some(p.id.as_str()));
    }
    let made = store.api_keys_created_by(p.id.as_str()).await.unwrap();
    assert_eq!(made.len(), 2);
    // A key whose maker is a person is stored only while they are a member of the
    // organisation owning its identity: checked in the storing transaction.
    let key = |by: &str| {
        crate::ApiKeyRecord::new(
            super::key_hash(KeyKind::Issuer),
            KeyKind::Issuer,
            Some(iss.id.to_string()),
            "k",
            by,
            T0_MS,
        )
    };
    store
        .create_api_key(&key(p.id.as_str()), None, None, &audit_note())
        .await
        .unwrap();
    let (_, stranger) = org_with_owner(store.as_ref()).await;
    let size = store.audit_size().await.unwrap();
    assert_eq!(
        store
            .create_api_key(&key(stranger.id.as_str()), None, None, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::MakerNotMember))
    );
    assert_eq!(
        store
            .rotate_api_key(
                &ik,
                &key(stranger.id.as_str()),
                T0_MS,
                T0_MS,
                None,
                None,
                &audit_note()
            )
            .await,
        Err(StoreError::Conflict(ConflictKind::MakerNotMember))
    );
    assert_eq!(store.audit_size().await.unwrap(), size, "nothing written");
    // A member who made a key and then left: the key is found for the sweep that
    // finishes removals; the remaining owner's are not.
    let mail = email();
    let inv = invitation(&o.id, &mail, Role::Member);
    store.create_invitation(&inv, &audit_note()).await.unwrap();
    let (q, _) = store
        .accept_invitation(&inv.token_hash, &person(&mail), T0_MS + 2, &audit_note())
        .await
        .unwrap();
    let qs = key(q.id.as_str());
    store
        .create_api_key(&qs, None, None, &audit_note())
        .await
        .unwrap();
    assert!(
        store
            .api_keys_of_departed_makers(100)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .remove_member(&o.id, &q.id, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let departed = store.api_keys_of_departed_makers(100).await.unwrap();
    assert_eq!(
        departed.iter().map(|r| r.hash).collect::<Vec<_>>(),
        vec![qs.hash]
    );
    store
        .revoke_api_key(&qs.hash, T0_MS + 4, &audit_note())
        .await
        .unwrap();
    assert!(
        store
            .api_keys_of_departed_makers(100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A cap on an identity's live keys holds in the transaction: creating or rotating
/// past it is `Conflict(TooManyKeys)` with nothing written, a key in its grace period
/// counts until it ends, revoked and expired keys never do, and concurrent creations
/// pass it no more often than it allows.
pub async fn api_keys_live_per_identity_are_capped(store: Arc<dyn Store>) {
    use bonafide_core::apikey::{ApiKey, KeyKind};
    let (iss, first) = issuer(store.as_ref()).await;
    let owner = Some(iss.id.as_str().to_owned());
    let new_key = |at: i64| {
        crate::ApiKeyRecord::new(
            ApiKey::from_random(KeyKind::Issuer, unique()).hash(),
            KeyKind::Issuer,
            owner.clone(),
            "k",
            "test",
            at,
        )
    };
    let second = new_key(T0_MS);
    store
        .create_api_key(&second, Some(2), None, &audit_note())
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    assert_eq!(
        store
            .create_api_key(&new_key(T0_MS), Some(2), None, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::TooManyKeys))
    );
    // A rotation with a grace period adds a live key; without one it does not.
    assert_eq!(
        store
            .rotate_api_key(
                &second.hash,
                &new_key(T0_MS + 1),
                T0_MS + 1000,
                T0_MS + 1,
                Some(2),
                None,
                &audit_note()
            )
            .await,
        Err(StoreError::Conflict(ConflictKind::TooManyKeys))
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert!(
        store
            .api_key(&second.hash)
            .await
            .unwrap()
            .unwrap()
            .expires_at_ms
            .is_none()
    );
    let third = new_key(T0_MS + 2);
    store
        .rotate_api_key(
            &second.hash,
            &third,
            T0_MS + 2,
            T0_MS + 2,
            Some(2),
            None,
            &audit_note(),
        )
        .await
        .unwrap();
    // Revoked keys free their place.
    store
        .revoke_api_key(&first, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        let key = new_key(T0_MS + 4);
        tasks.spawn(async move {
            store
                .create_api_key(&key, Some(2), None, &audit_note())
                .await
        });
    }
    let mut made = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(()) => made += 1,
            Err(e) => assert_eq!(e, StoreError::Conflict(ConflictKind::TooManyKeys)),
        }
    }
    assert_eq!(made, 1);
    // No cap: no limit.
    store
        .create_api_key(&new_key(T0_MS + 5), None, None, &audit_note())
        .await
        .unwrap();
}

pub async fn accounts_password_change_ends_other_sessions(store: Arc<dyn Store>) {
    let (_, p) = org_with_owner(store.as_ref()).await;
    let keep = session(&p.id);
    let other = session(&p.id);
    for s in [&keep, &other] {
        store
            .create_session(s, &refresh(s.expires_at_ms), &audit_note())
            .await
            .unwrap();
    }
    store
        .set_password(&p.id, "new-hash", Some(&keep.id), T0_MS + 1, &audit_note())
        .await
        .unwrap();
    assert_eq!(
        store
            .person(&p.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash
            .as_deref(),
        Some("new-hash")
    );
    let listed = store.sessions_of(&p.id, T0_MS + 2).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, keep.id);
    let gone = store.session(&other.id).await.unwrap().unwrap();
    assert_eq!(gone.revoke_reason.as_deref(), Some("password_changed"));
    store
        .set_password(&p.id, "newer", None, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    assert!(
        store
            .sessions_of(&p.id, T0_MS + 4)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .set_password(
                &PersonId::from_random(unique()),
                "x",
                None,
                T0_MS,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
}

pub async fn accounts_totp_steps_and_recovery_codes_are_single_use(store: Arc<dyn Store>) {
    let (_, p) = org_with_owner(store.as_ref()).await;
    // Not enabled: no step can be claimed.
    assert!(!store.claim_totp_step(&p.id, 5).await.unwrap());
    store.set_totp_pending(&p.id, "sealed-1").await.unwrap();
    store.set_totp_pending(&p.id, "sealed-2").await.unwrap();
    let codes: Vec<[u8; 32]> = (0..3).map(|_| unique()).collect();
    store
        .enable_totp(&p.id, 10, &codes, T0_MS, &audit_note())
        .await
        .unwrap();
    let stored = store.person(&p.id).await.unwrap().unwrap();
    assert!(stored.totp_enabled());
    assert_eq!(stored.totp_secret.as_deref(), Some("sealed-2"));
    assert_eq!(
        store.set_totp_pending(&p.id, "sealed-3").await,
        Err(StoreError::Conflict(ConflictKind::TotpEnabled))
    );
    // The step used at enrolment and earlier ones are refused; a later one once.
    assert!(!store.claim_totp_step(&p.id, 10).await.unwrap());
    assert!(store.claim_totp_step(&p.id, 11).await.unwrap());
    assert!(!store.claim_totp_step(&p.id, 11).await.unwrap());
    assert_eq!(store.recovery_codes_left(&p.id).await.unwrap(), 3);
    assert!(
        store
            .use_recovery_code(&p.id, &codes[0], T0_MS, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&p.id, &codes[0], T0_MS, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .use_recovery_code(&p.id, &unique(), T0_MS, &audit_note())
            .await
            .unwrap()
    );
    assert_eq!(store.recovery_codes_left(&p.id).await.unwrap(), 2);
    store.disable_totp(&p.id, &audit_note()).await.unwrap();
    let off = store.person(&p.id).await.unwrap().unwrap();
    assert!(!off.totp_enabled() && off.totp_secret.is_none());
    assert_eq!(store.recovery_codes_left(&p.id).await.unwrap(), 0);
}

pub async fn accounts_login_throttle_and_security_events(store: Arc<dyn Store>) {
    let subjects = vec!["acct:x".to_owned(), "ip:127.0.0.1".to_owned()];
    let none = store.login_throttle(&subjects).await.unwrap();
    assert!(none.iter().all(|t| t.failures == 0));
    for i in 0..3 {
        store
            .login_attempt(&subjects, true, T0_MS + i, 60_000)
            .await
            .unwrap();
    }
    let counted = store.login_throttle(&subjects).await.unwrap();
    assert_eq!(counted[0].failures, 3);
    assert_eq!(counted[0].last_failure_ms, T0_MS + 2);
    // Past the window, a run starts again.
    store
        .login_attempt(&subjects[..1], true, T0_MS + 120_000, 60_000)
        .await
        .unwrap();
    let restarted = store.login_throttle(&subjects).await.unwrap();
    assert_eq!((restarted[0].failures, restarted[1].failures), (1, 3));
    store
        .login_attempt(&subjects[..1], false, T0_MS, 60_000)
        .await
        .unwrap();
    assert_eq!(
        store.login_throttle(&subjects).await.unwrap()[0].failures,
        0
    );

    let (o, p) = org_with_owner(store.as_ref()).await;
    let (other, _) = org_with_owner(store.as_ref()).await;
    let event =
        |kind: &str, person: Option<&PersonId>, org: Option<&OrgId>, at: i64| SecurityEvent {
            id: 0,
            kind: kind.into(),
            person_id: person.cloned(),
            org_id: org.cloned(),
            ip: Some("192.0.2.1".into()),
            detail: "wrong password".into(),
            created_at_ms: at,
        };
    store
        .add_security_event(&event("login_failed", Some(&p.id), None, T0_MS))
        .await
        .unwrap();
    store
        .add_security_event(&event("login_failed", None, None, T0_MS + 1))
        .await
        .unwrap();
    store
        .add_security_event(&event("refresh_reuse", None, Some(&other.id), T0_MS + 2))
        .await
        .unwrap();
    let mine = store.security_events(Some(&o.id), 0, 100).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].person_id.as_ref(), Some(&p.id));
    let all = store.security_events(None, 0, 100).await.unwrap();
    assert!(all.len() >= 3);
    let after = store.security_events(None, all[0].id, 100).await.unwrap();
    assert_eq!(after.len(), all.len() - 1);
    assert_eq!(store.purge_security_events(T0_MS + 2).await.unwrap(), 2);
    assert_eq!(
        store
            .security_events(Some(&other.id), 0, 100)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The periodic purge deletes sessions that can no longer be used (revoked, or
/// expired with every refresh token, before its time bound) with their refresh tokens,
/// and refresh tokens that expired before it, in chunks; a live session, its tokens
/// not yet expired (used ones too: reuse detection) and a recently ended session stay.
pub async fn accounts_ended_sessions_are_purged_with_their_tokens(store: Arc<dyn Store>) {
    const DAY: i64 = 86_400_000;
    let (_, p) = org_with_owner(store.as_ref()).await;
    let new = |expires_at_ms: i64| Session {
        expires_at_ms,
        ..session(&p.id)
    };
    let make = |s: Session, token_expires_at_ms: i64| {
        let store = Arc::clone(&store);
        async move {
            let t = refresh(token_expires_at_ms);
            store.create_session(&s, &t, &audit_note()).await.unwrap();
            (s, t)
        }
    };
    // Live, rotated once: the used token and the current one stay.
    let (live, a) = make(new(T0_MS + 12 * DAY), T0_MS + 12 * DAY).await;
    let b = refresh(T0_MS + 20 * DAY);
    let rotated = store
        .rotate_refresh(&a.hash, &b, T0_MS + 10, &audit_note())
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    // Live, its first token expired long ago (rotated since): that token goes.
    let (live2, f) = make(new(T0_MS + 1000), T0_MS + 1000).await;
    let g = refresh(T0_MS + 20 * DAY);
    let rotated = store
        .rotate_refresh(&f.hash, &g, T0_MS + 20, &audit_note())
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    // Revoked before the bound: goes, with its token (not expired yet).
    let (revoked, r) = make(new(T0_MS + 7 * DAY), T0_MS + 15 * DAY).await;
    assert!(
        store
            .revoke_session(&revoked.id, T0_MS + 30, "logout", &audit_note())
            .await
            .unwrap()
    );
    // Revoked after the bound: stays (until a later purge).
    let (recent, r2) = make(new(T0_MS + 20 * DAY), T0_MS + 20 * DAY).await;
    assert!(
        store
            .revoke_session(&recent.id, T0_MS + 11 * DAY, "logout", &audit_note())
            .await
            .unwrap()
    );
    // Expired before the bound with its token: goes.
    let (expired, e) = make(new(T0_MS + 7 * DAY), T0_MS + 7 * DAY).await;
    // Expired, but a token of its family still valid after the bound: stays.
    let (odd, e2) = make(new(T0_MS + DAY), T0_MS + 20 * DAY).await;
    // More ended sessions than one chunk: all go.
    let mut many = Vec::new();
    for _ in 0..510 {
        many.push(make(new(T0_MS + 2 * DAY), T0_MS + 2 * DAY).await);
    }
    let before = store.audit_size().await.unwrap();
    store.purge_security_events(T0_MS + 10 * DAY).await.unwrap();
    // Deleting what ended is not a change anyone audits.
    assert_eq!(store.audit_size().await.unwrap(), before);
    for (kept, s) in [
        (true, &live),
        (true, &live2),
        (false, &revoked),
        (true, &recent),
        (false, &expired),
        (true, &odd),
    ] {
        assert_eq!(
            store.session(&s.id).await.unwrap().is_some(),
            kept,
            "session expires {} revoked {:?}",
            s.expires_at_ms - T0_MS,
            store.session(&s.id).await.unwrap().map(|s| s.revoked_at_ms)
        );
    }
    for (kept, t) in [
        (true, &a),
        (true, &b),
        (false, &f),
        (true, &g),
        (false, &r),
        (true, &r2),
        (false, &e),
        (true, &e2),
    ] {
        assert_eq!(
            store.refresh_token(&t.hash).await.unwrap().is_some(),
            kept,
            "token expiring {}",
            t.expires_at_ms - T0_MS
        );
    }
    for (s, t) in &many {
        assert!(store.session(&s.id).await.unwrap().is_none());
        assert!(store.refresh_token(&t.hash).await.unwrap().is_none());
    }
    // The live sessions work on: their current token rotates, a used one is still
    // caught as reuse.
    let rotated = store
        .rotate_refresh(
            &b.hash,
            &refresh(T0_MS + 21 * DAY),
            T0_MS + 10 * DAY,
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    let reused = store
        .rotate_refresh(
            &a.hash,
            &refresh(T0_MS + 21 * DAY),
            T0_MS + 10 * DAY,
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(reused, Rotation::AlreadyUsed);
    let rotated = store
        .rotate_refresh(
            &g.hash,
            &refresh(T0_MS + 21 * DAY),
            T0_MS + 10 * DAY,
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    // Purging again finds nothing more to delete.
    store.purge_security_events(T0_MS + 10 * DAY).await.unwrap();
    assert!(store.session(&live.id).await.unwrap().is_some());
    assert!(store.session(&recent.id).await.unwrap().is_some());
}

pub async fn accounts_any_api_key_is_revoked_by_hash_but_not_the_last_admin(store: Arc<dyn Store>) {
    use bonafide_core::apikey::{ApiKey, KeyKind};
    let (iss, key) = issuer(store.as_ref()).await;
    let before = store.audit_size().await.unwrap();
    let record = store
        .revoke_api_key(&key, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    assert_eq!(record.kind, KeyKind::Issuer);
    assert_eq!(record.owner.as_deref(), Some(iss.id.as_str()));
    assert_eq!(store.api_key(&key).await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // Twice, or a key nobody issued: not found, nothing appended.
    assert_eq!(
        store.revoke_api_key(&key, T0_MS, &audit_note()).await,
        Err(StoreError::NotFound)
    );
    let stranger = ApiKey::from_random(KeyKind::Receiver, unique()).hash();
    assert_eq!(
        store.revoke_api_key(&stranger, T0_MS, &audit_note()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // The change feed carries it, for every replica's cache.
    let feed = store
        .changes_since(crate::ChangePosition::START, 0, 10_000)
        .await
        .unwrap();
    assert!(
        feed.changes.contains(&crate::Change::ApiKeyRevoked(key)),
        "{feed:?}"
    );
    // Admin keys: not the last one.
    let a1 = ApiKey::from_random(KeyKind::Admin, unique()).hash();
    let a2 = ApiKey::from_random(KeyKind::Admin, unique()).hash();
    store
        .add_admin_key(&a1, T0_MS, &audit_note())
        .await
        .unwrap();
    let admins = store.admin_keys().await.unwrap().len();
    store
        .add_admin_key(&a2, T0_MS, &audit_note())
        .await
        .unwrap();
    store
        .revoke_api_key(&a2, T0_MS, &audit_note())
        .await
        .unwrap();
    if admins == 1 {
        assert_eq!(
            store.revoke_api_key(&a1, T0_MS, &audit_note()).await,
            Err(StoreError::Conflict(ConflictKind::LastAdminKey))
        );
    }
}

/// A key's inherited rate limit is decided from the settings as stored in the key's
/// own transaction and written with it (its entry after the key's), or not at all:
/// nothing when the rule says so, and nothing when the key is refused.
pub async fn api_key_inherited_limit_is_set_in_the_keys_transaction(store: Arc<dyn Store>) {
    use bonafide_core::apikey::{ApiKey, KeyKind};
    use std::sync::Mutex;
    let (iss, _) = issuer(store.as_ref()).await;
    let new_key = |at: i64| {
        crate::ApiKeyRecord::new(
            ApiKey::from_random(KeyKind::Issuer, unique()).hash(),
            KeyKind::Issuer,
            Some(iss.id.as_str().to_owned()),
            "k",
            "admin",
            at,
        )
    };
    let seen: Arc<Mutex<Vec<Vec<Option<String>>>>> = Arc::default();
    // The rule under test: the lowest stored count wins; none stored, nothing set.
    let inherit = |name: &str, from: &[&str]| {
        let seen = Arc::clone(&seen);
        crate::InheritedLimit {
            name: name.to_owned(),
            from: from.iter().map(|f| (*f).to_owned()).collect(),
            decide: Box::new(move |stored: &[Option<String>]| {
                seen.lock().unwrap().push(stored.to_vec());
                Ok(stored
                    .iter()
                    .flatten()
                    .min_by_key(|v| v.split('/').next().and_then(|n| n.parse::<u64>().ok()))
                    .map(|v| (v.clone(), audit_note())))
            }),
        }
    };
    store
        .set_rate_limit_setting("key:maker", Some("7/60s"), T0_MS, &audit_note())
        .await
        .unwrap();
    let setting = |name: &'static str| {
        let store = Arc::clone(&store);
        async move {
            store
                .rate_limit_settings()
                .await
                .unwrap()
                .into_iter()
                .find(|s| s.name == name)
                .map(|s| (s.value, s.set_at_ms))
        }
    };
    // Made by a key with a limit: the new key has it, in the same write (2 entries).
    let before = store.audit_size().await.unwrap();
    let made = new_key(T0_MS + 1);
    store
        .create_api_key(
            &made,
            None,
            Some(&inherit("key:made", &["key:maker", "key:none"])),
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), before + 2);
    assert_eq!(setting("key:made").await, Some(("7/60s".into(), T0_MS + 1)));
    assert_eq!(
        seen.lock().unwrap().last().cloned(),
        Some(vec![Some("7/60s".to_owned()), None])
    );
    // Nothing stored to inherit: the key alone.
    let before = store.audit_size().await.unwrap();
    store
        .create_api_key(
            &new_key(T0_MS + 2),
            None,
            Some(&inherit("key:plain", &["key:none"])),
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    assert_eq!(setting("key:plain").await, None);
    // A refused key (its id taken) sets no limit either.
    assert_eq!(
        store
            .create_api_key(
                &made,
                None,
                Some(&inherit("key:twice", &["key:maker"])),
                &audit_note()
            )
            .await,
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    );
    assert_eq!(setting("key:twice").await, None);
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // A rotation reads every bound as stored now (a setting changed since anyone
    // cached it included) and writes the lowest with the new key.
    store
        .set_rate_limit_setting("key:made", Some("50/60s"), T0_MS + 3, &audit_note())
        .await
        .unwrap();
    store
        .set_rate_limit_setting("key:maker", Some("9/60s"), T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let next = new_key(T0_MS + 4);
    let before = store.audit_size().await.unwrap();
    store
        .rotate_api_key(
            &made.hash,
            &next,
            T0_MS + 100,
            T0_MS + 4,
            None,
            Some(&inherit("key:next", &["key:made", "key:maker"])),
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), before + 2);
    assert_eq!(setting("key:next").await, Some(("9/60s".into(), T0_MS + 4)));
    assert_eq!(
        seen.lock().unwrap().last().cloned(),
        Some(vec![Some("50/60s".to_owned()), Some("9/60s".to_owned())])
    );
    // A refused rotation (the old key is no longer live) sets nothing.
    assert_eq!(
        store
            .rotate_api_key(
                &made.hash,
                &new_key(T0_MS + 200),
                T0_MS + 300,
                T0_MS + 200,
                None,
                Some(&inherit("key:late", &["key:made"])),
                &audit_note(),
            )
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(setting("key:late").await, None);
}

pub async fn api_keys_are_objects_created_listed_rotated_and_touched(store: Arc<dyn Store>) {
    use bonafide_core::apikey::{ApiKey, KeyKind};
    let (iss, first) = issuer(store.as_ref()).await;
    let owner = Some(iss.id.as_str().to_owned());
    let key = ApiKey::from_random(KeyKind::Issuer, unique()).hash();
    let mut record = crate::ApiKeyRecord::new(
        key,
        KeyKind::Issuer,
        owner.clone(),
        "ci deploys",
        "key_0123456789abcdef",
        T0_MS + 10,
    );
    record.scopes = Some(vec!["agents:read".into(), "tokens:issue".into()]);
    record.expires_at_ms = Some(T0_MS + 1_000_000);
    let before = store.audit_size().await.unwrap();
    store
        .create_api_key(&record, None, None, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    assert_eq!(store.api_key(&key).await.unwrap(), Some(record.clone()));
    // The same hash, or another hash with the same public id: refused, nothing added.
    assert_eq!(
        store
            .create_api_key(&record, None, None, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    );
    let mut twin = key.0;
    twin[31] ^= 1;
    let mut clash = record.clone();
    clash.hash = bonafide_core::apikey::ApiKeyHash(twin);
    assert_eq!(
        store
            .create_api_key(&clash, None, None, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // Found by its public id's prefix; a prefix nobody holds is nothing.
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&key.0[..8]);
    assert_eq!(
        store.api_key_by_prefix(&prefix).await.unwrap(),
        Some(record.clone())
    );
    prefix[7] ^= 0xff;
    assert_eq!(store.api_key_by_prefix(&prefix).await.unwrap(), None);
    // Listed with the issuer's first key, oldest first; not under another owner.
    let listed = store
        .api_keys_of(KeyKind::Issuer, owner.as_deref())
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.hash).collect::<Vec<_>>(),
        vec![first, key]
    );
    assert!(
        store
            .api_keys_of(KeyKind::Receiver, owner.as_deref())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .api_keys_created_by("key_0123456789abcdef")
            .await
            .unwrap()
            .iter()
            .map(|r| r.hash)
            .collect::<Vec<_>>(),
        vec![key]
    );
    // Touched: only forward.
    store.touch_api_key(&key, T0_MS + 50).await.unwrap();
    store.touch_api_key(&key, T0_MS + 40).await.unwrap();
    assert_eq!(
        store.api_key(&key).await.unwrap().unwrap().last_used_at_ms,
        Some(T0_MS + 50)
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    // Rotated: the new key names the old, the old expires at the grace period's end
    // (never later than it would have), one audit entry, one change for the caches.
    let next = ApiKey::from_random(KeyKind::Issuer, unique()).hash();
    let mut successor = crate::ApiKeyRecord::new(
        next,
        KeyKind::Issuer,
        owner.clone(),
        "ci deploys",
        "key_0123456789abcdef",
        T0_MS + 60,
    );
    successor.rotated_from = Some(key.public_id());
    let old = store
        .rotate_api_key(
            &key,
            &successor,
            T0_MS + 2_000_000,
            T0_MS + 60,
            None,
            None,
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(old.expires_at_ms, Some(T0_MS + 1_000_000));
    assert_eq!(store.api_key(&next).await.unwrap(), Some(successor.clone()));
    assert_eq!(store.audit_size().await.unwrap(), before + 2);
    let old_now = store.api_key(&key).await.unwrap().unwrap();
    assert!(old_now.live_at(T0_MS + 999_999) && !old_now.live_at(T0_MS + 1_000_000));
    // Rotating the new one with a shorter grace shortens it.
    let third = ApiKey::from_random(KeyKind::Issuer, unique()).hash();
    let successor2 = crate::ApiKeyRecord::new(
        third,
        KeyKind::Issuer,
        owner.clone(),
        "ci",
        "key_0123456789abcdef",
        T0_MS + 70,
    );
    let old2 = store
        .rotate_api_key(
            &next,
            &successor2,
            T0_MS + 100,
            T0_MS + 70,
            None,
            None,
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(old2.expires_at_ms, Some(T0_MS + 100));
    // An expired key, a revoked key, an unknown key: not rotated, nothing appended.
    let fourth = crate::ApiKeyRecord::new(
        ApiKey::from_random(KeyKind::Issuer, unique()).hash(),
        KeyKind::Issuer,
        owner.clone(),
        "x",
        "admin",
        T0_MS,
    );
    let size = store.audit_size().await.unwrap();
    assert_eq!(
        store
            .rotate_api_key(
                &next,
                &fourth,
                T0_MS + 500,
                T0_MS + 100,
                None,
                None,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
    store
        .revoke_api_key(&first, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(
        store
            .rotate_api_key(
                &first,
                &fourth,
                T0_MS + 500,
                T0_MS + 1,
                None,
                None,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    // Revoked keys stay listed, with their time.
    let listed = store
        .api_keys_of(KeyKind::Issuer, owner.as_deref())
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0].revoked_at_ms, Some(T0_MS));
    let feed = store
        .changes_since(crate::ChangePosition::START, 0, 10_000)
        .await
        .unwrap();
    assert!(feed.changes.contains(&crate::Change::ApiKeyRevoked(key)));
    assert!(feed.changes.contains(&crate::Change::ApiKeyRevoked(next)));
}

pub async fn api_key_expired_admin_keys_do_not_count_as_the_last(store: Arc<dyn Store>) {
    use bonafide_core::apikey::{ApiKey, KeyKind};
    let a1 = ApiKey::from_random(KeyKind::Admin, unique()).hash();
    store
        .add_admin_key(&a1, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.admin_keys().await.unwrap().len(), 1);
    let mut a2 = crate::ApiKeyRecord::new(
        ApiKey::from_random(KeyKind::Admin, unique()).hash(),
        KeyKind::Admin,
        None,
        "second",
        "admin",
        T0_MS + 1,
    );
    a2.expires_at_ms = Some(T0_MS + 100);
    store
        .create_api_key(&a2, None, None, &audit_note())
        .await
        .unwrap();
    assert_eq!(
        store
            .api_keys_of(KeyKind::Admin, None)
            .await
            .unwrap()
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        vec!["bootstrap admin key", "second"]
    );
    // Before a2 expires, a1 may go; after, a1 is the last live one.
    assert_eq!(
        store.revoke_api_key(&a1, T0_MS + 100, &audit_note()).await,
        Err(StoreError::Conflict(ConflictKind::LastAdminKey))
    );
    store
        .revoke_api_key(&a1, T0_MS + 99, &audit_note())
        .await
        .unwrap();
}

// ---- quotas and usage (issue 18 item 5)

/// Concurrent batches (as replicas make them) admit exactly the limit, count exactly
/// what they admitted, and exactly one take reports the 80 % warning; another month
/// starts from zero.
pub async fn quota_counts_exactly_across_concurrent_batches_and_warns_once(store: Arc<dyn Store>) {
    use crate::QuotaTake;
    let (a, _) = org_with_owner(store.as_ref()).await;
    let (b, _) = org_with_owner(store.as_ref()).await;
    let before = store.audit_size().await.unwrap();
    let take = |org: &OrgId, month: &str, want| QuotaTake {
        org_id: org.clone(),
        month: month.to_owned(),
        limit: 50,
        warn_at: 40,
        want,
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8u64 {
        let store = Arc::clone(&store);
        let (a, b) = (a.id.clone(), b.id.clone());
        tasks.spawn(async move {
            let (mut got, mut warned) = (0, 0);
            for _ in 0..5 {
                // Both organisations per batch, in both orders across tasks.
                let mut takes = vec![take(&a, "2026-12", 2), take(&b, "2026-12", 1)];
                if i % 2 == 1 {
                    takes.reverse();
                }
                let grants = store.quota_take(&takes, T0_MS).await.unwrap();
                for (t, g) in takes.iter().zip(&grants) {
                    assert!(g.granted <= t.want && g.used <= 50);
                    if t.org_id == a {
                        got += g.granted;
                        warned += u64::from(g.warn);
                    }
                }
            }
            (got, warned)
        });
    }
    let (mut got, mut warned) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (g, w) = r.unwrap();
        got += g;
        warned += w;
    }
    // 8 tasks × 5 batches × 2 = 80 asked of `a`: 50 admitted, one warning.
    assert_eq!((got, warned), (50, 1));
    // Each organisation's warning was appended with the take that set its flag: one
    // `quota.warning` entry each (`b` reached its 40 too), nothing else.
    assert_eq!(
        quota_warnings(store.as_ref(), before).await,
        [
            (
                a.id.to_string(),
                "2026-12: 40 of 50 verifications".to_owned()
            ),
            (
                b.id.to_string(),
                "2026-12: 40 of 50 verifications".to_owned()
            ),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
    );
    assert_eq!(store.quota_used(&a.id, "2026-12").await.unwrap(), 50);
    assert_eq!(store.quota_used(&b.id, "2026-12").await.unwrap(), 40);
    let full = store
        .quota_take(&[take(&a.id, "2026-12", 1)], T0_MS)
        .await
        .unwrap();
    assert_eq!(
        (full[0].granted, full[0].used, full[0].warn),
        (0, 50, false)
    );
    assert_eq!(store.quota_used(&a.id, "2027-01").await.unwrap(), 0);
    let next = store
        .quota_take(&[take(&a.id, "2027-01", 1)], T0_MS)
        .await
        .unwrap();
    assert_eq!((next[0].granted, next[0].used), (1, 1));
    assert!(store.quota_take(&[], T0_MS).await.unwrap().is_empty());
}

/// The `quota.warning` entries appended from index `from` on: (org, note), each once.
async fn quota_warnings(
    store: &dyn Store,
    from: u64,
) -> std::collections::BTreeSet<(String, String)> {
    let end = store.audit_size().await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for row in store.audit_entries(from, end).await.unwrap() {
        let v: serde_json::Value = serde_json::from_slice(&row.entry).unwrap_or_default();
        if v["type"] == "quota.warning" {
            let entry = (
                v["org"].as_str().unwrap_or_default().to_owned(),
                v["note"].as_str().unwrap_or_default().to_owned(),
            );
            assert!(seen.insert(entry.clone()), "twice: {entry:?}");
        }
    }
    seen
}

/// Verifications counted in the decision batches that record them (as every replica's
/// committer makes them), mixed with stand-alone takes: exactly the limit admitted,
/// each admitted one with its entry and each refused one with nothing written, one
/// warning.
pub async fn quota_counted_with_decisions_admits_exactly_the_limit(store: Arc<dyn Store>) {
    use crate::{Decided, DecisionItem, DecisionOutcome, QuotaClaim, QuotaTake};
    let (a, _) = org_with_owner(store.as_ref()).await;
    let claim = QuotaClaim {
        org_id: a.id.clone(),
        month: "2026-12".into(),
        limit: 30,
        warn_at: 24,
    };
    let before = store.audit_size().await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6u64 {
        let store = Arc::clone(&store);
        let claim = claim.clone();
        tasks.spawn(async move {
            // (admitted by take, admitted by decision, refused, warned)
            let (mut taken, mut admitted, mut refused, mut warned) = (0u64, 0u64, 0u64, 0u64);
            for round in 0..4u64 {
                if (i + round) % 3 == 0 {
                    let g = store.quota_take(&[claim.take(2)], T0_MS).await.unwrap();
                    taken += g[0].granted;
                    refused += 2 - g[0].granted;
                    warned += u64::from(g[0].warn);
                    continue;
                }
                let items: Vec<DecisionItem> = (0..3)
                    .map(|_| DecisionItem {
                        budget: None,
                        idempotency: None,
                        nonce: None,
                        quota: Some(claim.clone()),
                        decide: Box::new(|_| {
                            Ok(Decided {
                                audit: Some(crate::AuditRecord {
                                    entry: b"{}".to_vec(),
                                    agent_id: None,
                                    issuer_id: None,
                                    created_at_ms: T0_MS,
                                    prepared: None,
                                }),
                                receipt: None,
                                charge: None,
                                answer: Vec::new(),
                            })
                        }),
                    })
                    .collect();
                for o in store.record_decisions(items, T0_MS).await.unwrap() {
                    match o.unwrap() {
                        DecisionOutcome::Recorded {
                            audit_index: Some(_),
                            quota: Some(g),
                            ..
                        } => {
                            assert!(g.granted == 1 && g.used <= 30);
                            admitted += 1;
                            warned += u64::from(g.warn);
                        }
                        DecisionOutcome::QuotaExceeded { used } => {
                            assert_eq!(used, 30);
                            refused += 1;
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            (taken, admitted, refused, warned)
        });
    }
    let (mut taken, mut admitted, mut refused, mut warned) = (0, 0, 0, 0);
    while let Some(r) = tasks.join_next().await {
        let (t, a, r, w) = r.unwrap();
        taken += t;
        admitted += a;
        refused += r;
        warned += w;
    }
    // 8 rounds of takes (2 each) and 16 of decisions (3 each) asked 64: 30 admitted.
    assert_eq!((taken + admitted, refused, warned), (30, 34, 1));
    assert_eq!(store.quota_used(&a.id, "2026-12").await.unwrap(), 30);
    // An entry for each decision admitted, none for the refused, and the month's one
    // `quota.warning`, appended in the transaction that set its flag.
    assert_eq!(store.audit_size().await.unwrap() - before, admitted + 1);
    let warnings = quota_warnings(store.as_ref(), before).await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings.iter().all(|(org, note)| *org == a.id.to_string()
        && note.starts_with("2026-12: ")
        && note.ends_with(" of 30 verifications")));
    let full: QuotaTake = claim.take(1);
    assert_eq!(
        store.quota_take(&[full], T0_MS).await.unwrap()[0].granted,
        0
    );
}

/// A plan assignment is audited only when it changes; an unknown organisation is
/// `NotFound`; usage counts add up per (day, key, route) and read back by day range.
pub async fn org_plans_are_audited_and_usage_adds_up(store: Arc<dyn Store>) {
    use crate::UsageCount;
    let (o, _) = org_with_owner(store.as_ref()).await;
    let before = store.audit_size().await.unwrap();
    assert!(
        store
            .set_org_plan(&o.id, Some("pro"), T0_MS, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_org_plan(&o.id, Some("pro"), T0_MS + 1, &audit_note())
            .await
            .unwrap()
    );
    assert_eq!(
        store.org_plans().await.unwrap(),
        [(o.id.clone(), "pro".to_owned())]
    );
    assert!(
        store
            .set_org_plan(&o.id, None, T0_MS + 2, &audit_note())
            .await
            .unwrap()
    );
    assert!(store.org_plans().await.unwrap().is_empty());
    assert_eq!(store.audit_size().await.unwrap(), before + 2);
    let stranger = OrgId::from_random(unique());
    assert!(matches!(
        store
            .set_org_plan(&stranger, Some("pro"), T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.audit_size().await.unwrap(), before + 2);

    let row = |day: &str, key: &str, route: &str, count| UsageCount {
        org_id: o.id.clone(),
        day: day.to_owned(),
        key: key.to_owned(),
        route: route.to_owned(),
        count,
    };
    store
        .add_usage(&[
            row("2026-12-01", "receiver:rcv_a", "/v1/verify", 3),
            row("2026-12-02", "receiver:rcv_a", "/v1/verify", 1),
        ])
        .await
        .unwrap();
    store
        .add_usage(&[
            row("2026-12-01", "receiver:rcv_a", "/v1/verify", 4),
            row("2026-12-01", "issuer:iss_b", "/v1/agents", 2),
        ])
        .await
        .unwrap();
    store.add_usage(&[]).await.unwrap();
    assert_eq!(
        store
            .usage(&o.id, "2026-12-01", "2026-12-01")
            .await
            .unwrap(),
        [
            row("2026-12-01", "issuer:iss_b", "/v1/agents", 2),
            row("2026-12-01", "receiver:rcv_a", "/v1/verify", 7),
        ]
    );
    assert_eq!(
        store
            .usage(&o.id, "2026-11-01", "2026-12-31")
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .usage(&stranger, "2026-11-01", "2026-12-31")
            .await
            .unwrap()
            .is_empty()
    );
}

/// Parallel login attempts each check the backoff and record their failure in one
/// step: with 3 free failures, exactly 3 of 12 parallel attempts pass; a refused one
/// records nothing; a release takes one reserved failure back.
pub async fn login_reservations_check_and_record_in_one_step(store: Arc<dyn Store>) {
    use crate::accounts::ThrottleRule;
    let rules = vec![
        ThrottleRule {
            subject: "pair:x".into(),
            free: 3,
        },
        ThrottleRule {
            subject: "acct:x".into(),
            free: 100,
        },
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (store, rules) = (Arc::clone(&store), rules.clone());
        tasks.spawn(async move { store.login_reserve(&rules, T0_MS, 3_600_000).await.unwrap() });
    }
    let mut passed = 0;
    while let Some(wait) = tasks.join_next().await {
        let wait = wait.unwrap();
        if wait == 0 {
            passed += 1;
        } else {
            assert_eq!(wait, 1000);
        }
    }
    assert_eq!(passed, 3);
    let subjects: Vec<String> = rules.iter().map(|r| r.subject.clone()).collect();
    let t = store.login_throttle(&subjects).await.unwrap();
    assert_eq!((t[0].failures, t[1].failures), (3, 3));
    store.login_release(&subjects[..1]).await.unwrap();
    assert_eq!(
        store.login_throttle(&subjects).await.unwrap()[0].failures,
        2
    );
    // The backoff passes with time.
    assert_eq!(
        store
            .login_reserve(&rules, T0_MS + 1, 3_600_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .login_reserve(&rules, T0_MS + 2, 3_600_000)
            .await
            .unwrap(),
        999
    );
    assert_eq!(
        store
            .login_reserve(&rules, T0_MS + 1001, 3_600_000)
            .await
            .unwrap(),
        0
    );
    store.login_release(&["nobody".to_owned()]).await.unwrap();
}
