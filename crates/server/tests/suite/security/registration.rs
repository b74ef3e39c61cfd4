//! Rules of registration (item 9 of the review): an issuer name is one name whatever
//! its case, `https://` or trailing dot, and a consent token's `iss` picks exactly one
//! issuer's keys; names and reasons hold no invisible, bidirectional-control or
//! line-separator characters; a domain verification says the same words whether the
//! host does not resolve or resolves to a non-public address; and registering an
//! issuer key takes proof of possession of its private half.

use std::time::Duration;

use bonafide_core::domain_proof::{self, DomainProofClaims};
use bonafide_core::jws;
use bonafide_core::key_proof::{self, KeyProofClaims};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_server::token_check::MAX_CONSENT_KEYS;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness, now_s};

/// The characters no name or reason may hold, as the review lists them.
const FORBIDDEN: [char; 17] = [
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}',
    '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{FEFF}', '\u{2028}',
    '\u{2029}',
];

/// An issuer's key registered with its proof of possession.
async fn add_key(h: &Harness, iss: &common::CreatedIssuer, sk: &SigningKey) {
    let (st, v) = h.add_issuer_key(&iss.key, &iss.id, sk).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// A consent token (AgentOAuth `act.v0.2`, header `typ` `JWT`) naming its key by the
/// issuer's own name for it (`key-001`), not by thumbprint: the registry then picks
/// the keys to try by `iss`.
fn consent_token(sk: &SigningKey, iss: &str, agent: &str) -> String {
    let now = now_s();
    let policy = json!({"version": "pol.v0.2", "id": "pol_crowd", "actions": ["payments.send"]});
    let hash = bonafide_core::policy::Policy::from_value(policy.clone())
        .unwrap()
        .hash()
        .to_owned();
    let claims = json!({
        "ver": "act.v0.2", "iss": iss, "user": "did:user:alice", "agent": agent,
        "scope": "read:x", "iat": now, "exp": now + 600,
        "policy": policy, "policy_hash": hash,
        "jti": format!("act_{}", bonafide_core::hex(&common::rand20()[..8])),
    });
    let mut token = jws::header_b64(Algorithm::EdDSA, "JWT", "key-001").unwrap();
    token.push('.');
    token.push_str(&bonafide_core::b64::encode(claims.to_string().as_bytes()));
    let sig = sk.sign(token.as_bytes()).unwrap();
    token.push('.');
    token.push_str(&bonafide_core::b64::encode(&sig));
    token
}

async fn db(h: &Harness) -> sqlx::sqlite::SqliteConnection {
    use sqlx::Connection;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&h.db_path)
        .busy_timeout(Duration::from_secs(10));
    sqlx::sqlite::SqliteConnection::connect_with(&options)
        .await
        .unwrap()
}

#[tokio::test]
async fn issuer_names_that_differ_only_by_https_case_or_a_trailing_dot_are_one_name() {
    let h = common::start().await;
    let first = h.issuer_full("apex.example").await;
    for same in [
        "Apex.Example",
        "apex.example.",
        "https://apex.example",
        "HTTPS://APEX.EXAMPLE.",
        // Found by the second review: also `http://` and a trailing slash.
        "http://apex.example",
        "apex.example/",
    ] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/issuers",
                Some(&h.admin),
                Some(json!({"name": same})),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{same}: {v}");
        assert_eq!(v["error"]["code"], "CONFLICT", "{v}");
    }
    // The other way round: the `https://` spelling first.
    h.issuer_full("https://Bolt.example.").await;
    let (st, v) = h
        .call(
            "POST",
            "/v1/issuers",
            Some(&h.admin),
            Some(json!({"name": "bolt.example"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // A name that is an issuer id would make a consent token's `iss` name two
    // issuers: refused.
    for id_like in [first.id.clone(), format!("https://{}", first.id)] {
        let (st, v) = h
            .call(
                "POST",
                "/v1/issuers",
                Some(&h.admin),
                Some(json!({"name": id_like})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{id_like}: {v}");
    }
    // A different name is still welcome.
    h.issuer_full("apex.example.org").await;
}

#[tokio::test]
async fn a_consent_token_iss_picks_one_issuer_whose_keys_no_other_issuer_crowds_out() {
    let h = common::start().await;
    let a = h.issuer_full("crowd.example").await;
    // A's key sorts after everything the crowding issuer registers.
    let a_key = loop {
        let k = SigningKey::generate(Algorithm::EdDSA).unwrap();
        if k.kid().starts_with('z') {
            break k;
        }
    };
    add_key(&h, &a, &a_key).await;
    let agent = h
        .register(&a.key, json!({"name": "CrowdBot", "scopes": ["read:x"]}))
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = h.issuer_full("crowder.example").await;
    let mut b_keys = Vec::new();
    while b_keys.len() < MAX_CONSENT_KEYS {
        let k = SigningKey::generate(Algorithm::EdDSA).unwrap();
        if k.kid() < a_key.kid() {
            add_key(&h, &b, &k).await;
            b_keys.push(k);
        }
    }
    let b_agent = h
        .register(&b.key, json!({"name": "Crowder", "scopes": ["read:x"]}))
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // B as a registry from before the rule could hold it: named `https://` + A's
    // name (the name key is what a second registration of the name would have left:
    // none, since A holds it).
    {
        let mut db = db(&h).await;
        sqlx::query("UPDATE issuers SET name = ?, name_key = NULL WHERE id = ?")
            .bind("https://crowd.example")
            .bind(&b.id)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let h = h.restart().await;

    // A's token, `iss` by name in either spelling: A's key is tried, B's are not.
    for iss in ["https://crowd.example", "crowd.example", "Crowd.Example."] {
        let v = h.verify_token(&consent_token(&a_key, iss, &agent)).await;
        assert_eq!(v["valid"], true, "{iss}: {v}");
        assert_eq!(v["agent"]["id"], agent, "{v}");
        assert_eq!(v["agent"]["issuer"], "crowd.example", "{v}");
    }
    // B's keys do not speak for A's name...
    let v = h
        .verify_token(&consent_token(
            &b_keys[0],
            "https://crowd.example",
            &b_agent,
        ))
        .await;
    assert_eq!(v["valid"], false, "{v}");
    // ...while B's tokens by its id still verify.
    let v = h
        .verify_token(&consent_token(&b_keys[0], &b.id, &b_agent))
        .await;
    assert_eq!(v["valid"], true, "{v}");

    // B named as A's id (no longer possible through the API): an `iss` that is an
    // issuer id names that issuer only.
    {
        let mut db = db(&h).await;
        sqlx::query("UPDATE issuers SET name = ?, name_key = NULL WHERE id = ?")
            .bind(&a.id)
            .bind(&b.id)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let h = h.restart().await;
    let v = h.verify_token(&consent_token(&a_key, &a.id, &agent)).await;
    assert_eq!(v["valid"], true, "{v}");
    let v = h
        .verify_token(&consent_token(&b_keys[0], &a.id, &b_agent))
        .await;
    assert_eq!(v["valid"], false, "{v}");
}

#[tokio::test]
async fn names_and_reasons_refuse_invisible_bidi_and_line_separator_characters() {
    let h = common::start().await;
    let iss = h.issuer_full("names.example").await;
    let agent = h
        .register(&iss.key, json!({"name": "NameBot", "scopes": ["read:x"]}))
        .await["agent_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shown = |c: char| format!("U+{:04X}", u32::from(c));
    for c in FORBIDDEN {
        let cases = [
            (
                "/v1/issuers",
                h.admin.clone(),
                json!({"name": format!("evil{c}.example")}),
            ),
            (
                "/v1/receivers",
                h.admin.clone(),
                json!({"name": format!("shop{c}.example")}),
            ),
            (
                "/v1/agents/register",
                iss.key.clone(),
                json!({"name": format!("Pay{c}Bot"), "scopes": ["read:x"]}),
            ),
            (
                &format!("/v1/agents/{agent}/revoke"),
                iss.key.clone(),
                json!({"reason": format!("leaked{c}key")}),
            ),
            (
                &format!("/v1/agents/{agent}/suspend"),
                iss.key.clone(),
                json!({"reason": format!("under{c}review")}),
            ),
        ];
        for (path, key, body) in cases {
            let (st, v) = h.call("POST", path, Some(&key), Some(body)).await;
            assert_eq!(
                st,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {}: {v}",
                shown(c)
            );
            let message = v["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&shown(c)), "{path}: {v}");
            assert!(!message.contains(c), "{path}: the character is echoed: {v}");
        }
    }
    // Nothing was revoked or suspended on the way.
    let (st, v) = h
        .call("GET", &format!("/v1/agents/{agent}"), Some(&iss.key), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "active", "{v}");
}

#[tokio::test]
async fn a_domain_that_does_not_resolve_and_one_on_a_private_address_answer_the_same() {
    let h = common::start().await;
    let iss = h.issuer_full("dns.example").await;
    let sk = SigningKey::generate(Algorithm::EdDSA).unwrap();
    add_key(&h, &iss, &sk).await;
    let mut answers = Vec::new();
    // `localhost` resolves to loopback; `.invalid` never resolves (RFC 6761).
    for domain in ["localhost", "no-such-host.invalid"] {
        let claims = DomainProofClaims {
            iss: iss.id.clone(),
            domain: domain.into(),
            aud: h.state.config.public_url.clone(),
            iat: now_s(),
            jti: None,
        };
        let proof = domain_proof::sign(&sk, &claims).unwrap();
        let (st, mut v) = h
            .call(
                "POST",
                "/v1/issuer/verify-domain",
                Some(&iss.key),
                Some(json!({"domain": domain, "proof": proof})),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{domain}: {v}");
        // Only the domain (the caller's own words) and the request id may differ.
        let message = v["error"]["message"].as_str().unwrap().replace(domain, "D");
        v["error"]["message"] = Value::from(message);
        v["error"]["request_id"] = Value::Null;
        answers.push(v);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["error"]["code"], "DOMAIN_NOT_VERIFIED");
}

/// A key proof as `bonafide issuer-key add` makes it, with what a test changes.
fn key_proof_with(sk: &SigningKey, iss: &str, aud: &str, iat: i64, jkt: &str) -> String {
    let claims = KeyProofClaims {
        iss: iss.into(),
        aud: aud.into(),
        iat,
        jkt: jkt.into(),
        jti: None,
    };
    key_proof::sign(sk, &claims).unwrap()
}

#[tokio::test]
async fn registering_an_issuer_key_takes_proof_of_possession_of_its_private_half() {
    let h = common::start().await;
    let aud = h.state.config.public_url.clone();
    let victim = h.issuer_full("victim.example").await;
    let squatter = h.issuer_full("squatter.example").await;
    let published = SigningKey::generate(Algorithm::ES256).unwrap();
    let jwk = serde_json::to_value(published.verifying_key().jwk()).unwrap();
    let mine = SigningKey::generate(Algorithm::ES256).unwrap();
    let now = now_s();
    let attempt = |body: Value| {
        let h = &h;
        let key = squatter.key.clone();
        async move {
            h.call("POST", "/v1/issuer/keys", Some(&key), Some(body))
                .await
        }
    };
    let cases = [
        ("no proof", json!({"jwk": jwk})),
        (
            "a proof by another key",
            json!({"jwk": jwk, "proof": key_proof_with(&mine, &squatter.id, &aud, now, published.kid())}),
        ),
        (
            "a proof by another key naming the registered kid",
            json!({"jwk": jwk, "proof": key_proof_with(&mine, &squatter.id, &aud, now, mine.kid())}),
        ),
        (
            "a stale proof",
            json!({"jwk": jwk, "proof": key_proof_with(&published, &squatter.id, &aud, now - 301, published.kid())}),
        ),
        (
            "a proof from the future",
            json!({"jwk": jwk, "proof": key_proof_with(&published, &squatter.id, &aud, now + 301, published.kid())}),
        ),
        (
            "a proof for another issuer",
            json!({"jwk": jwk, "proof": key_proof_with(&published, &victim.id, &aud, now, published.kid())}),
        ),
        (
            "a proof for another registry",
            json!({"jwk": jwk, "proof": key_proof_with(&published, &squatter.id, "https://other.example", now, published.kid())}),
        ),
        (
            "a domain proof in its place",
            json!({"jwk": jwk, "proof": domain_proof::sign(&published, &DomainProofClaims {
                iss: squatter.id.clone(), domain: "victim.example".into(), aud: aud.clone(), iat: now, jti: None,
            }).unwrap()}),
        ),
        ("garbage", json!({"jwk": jwk, "proof": "a.b.c"})),
    ];
    for (what, body) in cases {
        let (st, v) = attempt(body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {v}");
        assert_eq!(v["error"]["code"], "KEY_PROOF_INVALID", "{what}: {v}");
    }
    let (_, list) = h
        .call("GET", "/v1/issuer/keys", Some(&squatter.key), None)
        .await;
    assert_eq!(list["keys"], json!([]), "{list}");

    // The holder registers it; then nobody, not even the holder again, learns who
    // holds it from the conflict, and a prover for another issuer gets the same 409.
    add_key(&h, &victim, &published).await;
    let mut conflicts = Vec::new();
    for (key, id) in [(&victim.key, &victim.id), (&squatter.key, &squatter.id)] {
        let proof = key_proof_with(&published, id, &aud, now_s(), published.kid());
        let (st, mut v) = h
            .call(
                "POST",
                "/v1/issuer/keys",
                Some(key),
                Some(json!({"jwk": jwk, "proof": proof})),
            )
            .await;
        assert_eq!(st, StatusCode::CONFLICT, "{v}");
        let text = v.to_string();
        assert!(!text.contains(&victim.id), "{v}");
        assert!(!text.contains("victim.example"), "{v}");
        v["error"]["request_id"] = Value::Null;
        conflicts.push(v);
    }
    assert_eq!(conflicts[0], conflicts[1]);
    // Without a proof, a registered key answers like any other: 422, not 409, so a
    // published key cannot be probed for registration.
    let (st, v) = attempt(json!({"jwk": jwk})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // `GET /v1/issuer` tells an issuer its own id (what the proof's `iss` must be).
    let (st, v) = h.call("GET", "/v1/issuer", Some(&squatter.key), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["issuer_id"], squatter.id, "{v}");
    assert_eq!(v["name"], "squatter.example", "{v}");
    let (st, _) = h.call("GET", "/v1/issuer", None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = h.call("GET", "/v1/issuer", Some(&h.admin), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

/// An agent's public key belongs to one issuer: another issuer cannot register it for
/// its own agent, at registration or by rotation (409, nothing registered), so the
/// first agent's signatures never count as the squatter's; the same issuer may reuse it.
#[tokio::test]
async fn another_issuers_agent_key_cannot_be_squatted() {
    let h = common::start().await;
    let owner = h.issuer_full("owner.example").await;
    let squatter = h.issuer_full("squatter.example").await;
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    let jwk = serde_json::to_value(key.verifying_key().jwk()).unwrap();
    let register = |api_key: String, body: Value| {
        let h = &h;
        async move {
            h.call("POST", "/v1/agents/register", Some(&api_key), Some(body))
                .await
        }
    };
    let (st, v) = register(
        owner.key.clone(),
        json!({"name": "Owned", "scopes": ["read:x"], "public_key": jwk}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = register(
        squatter.key.clone(),
        json!({"name": "Squat", "scopes": ["read:x"], "public_key": jwk}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("another issuer's agent")),
        "{v}"
    );
    let (_, list) = h.call("GET", "/v1/agents", Some(&squatter.key), None).await;
    assert_eq!(list["agents"], json!([]), "nothing registered");
    // By rotation: refused too.
    let (st, v) = register(
        squatter.key.clone(),
        json!({"name": "Plain", "scopes": ["read:x"]}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let plain = v["agent_id"].as_str().unwrap().to_owned();
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/agents/{plain}/keys"),
            Some(&squatter.key),
            Some(json!({"public_key": jwk})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // The owner's other agent may share it.
    let (st, v) = register(
        owner.key.clone(),
        json!({"name": "Sibling", "scopes": ["read:x"], "public_key": jwk}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}
