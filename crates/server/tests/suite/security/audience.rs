//! Rule: a receiver verifies as itself. A receiver has registered audiences (its name
//! by default); with a receiver key the token's `aud` must contain one of the
//! caller's own audiences, and a body `audience` that is not one of them is a 403.
//! Without a receiver key, a token that carries `aud` is refused unless the request
//! names one of its audiences (RFC 7519 §4.1.3), on every verify path.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{self, Harness};

/// A receiver: its id and key.
async fn receiver(h: &Harness, body: Value) -> (String, String, Value) {
    let (st, v) = h
        .call("POST", "/v1/receivers", Some(&h.admin), Some(body))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    (
        v["receiver_id"].as_str().unwrap().to_owned(),
        v["api_key"].as_str().unwrap().to_owned(),
        v,
    )
}

/// A token for `aud` (none: no `aud` claim).
async fn token_for(h: &Harness, aud: Option<Value>) -> String {
    let name = format!("aud-{}.example", bonafide_core::hex(&common::rand20()[..4]));
    let iss = h.issuer(&name).await;
    let mut body = json!({"name": "Shopper", "scopes": ["read:account"]});
    if let Some(a) = aud {
        body["audience"] = a;
    }
    h.register(&iss, body).await["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn verify_as(h: &Harness, key: Option<&str>, body: Value) -> (StatusCode, Value) {
    h.call("POST", "/v1/verify", key, Some(body)).await
}

#[tokio::test]
async fn a_receiver_cannot_verify_a_token_meant_for_another_receiver() {
    let h = common::start().await;
    let (_, bank, created) = receiver(&h, json!({"name": "bank"})).await;
    assert_eq!(created["audiences"], json!(["bank"]), "{created}");
    let (_, shop, _) = receiver(&h, json!({"name": "shop"})).await;
    let for_shop = token_for(&h, Some(json!("shop"))).await;

    // The bank's key, no body audience: the token is not for the bank.
    let (st, v) = verify_as(&h, Some(&bank), json!({"token": for_shop})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["reasons"][0], "AUDIENCE_MISMATCH", "{v}");
    // The bank's key naming the shop's audience: not the bank's to name.
    let (st, v) = verify_as(
        &h,
        Some(&bank),
        json!({"token": for_shop, "audience": "shop"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "AUDIENCE_FORBIDDEN", "{v}");
    let (st, v) = verify_as(
        &h,
        Some(&bank),
        json!({"token": for_shop, "target_resource": "shop"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // The shop itself, with or without naming itself.
    let (_, v) = verify_as(&h, Some(&shop), json!({"token": for_shop})).await;
    assert_eq!(v["valid"], true, "{v}");
    let (_, v) = verify_as(
        &h,
        Some(&shop),
        json!({"token": for_shop, "audience": "shop"}),
    )
    .await;
    assert_eq!(v["valid"], true, "{v}");
    // A token without `aud` is for any receiver.
    let anyone = token_for(&h, None).await;
    let (_, v) = verify_as(&h, Some(&bank), json!({"token": anyone})).await;
    assert_eq!(v["valid"], true, "{v}");
}

#[tokio::test]
async fn without_a_receiver_key_a_token_with_aud_needs_one_of_its_audiences_named() {
    let h = common::start().await;
    let t = token_for(&h, Some(json!(["shop", "https://api.shop.example"]))).await;
    let (_, v) = verify_as(&h, None, json!({"token": t})).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["reasons"][0], "AUDIENCE_MISMATCH", "{v}");
    let (_, v) = verify_as(
        &h,
        None,
        json!({"token": t, "audience": "https://api.shop.example"}),
    )
    .await;
    assert_eq!(v["valid"], true, "{v}");
    let (_, v) = verify_as(&h, None, json!({"token": t, "audience": "bank"})).await;
    assert_eq!(v["valid"], false, "{v}");

    // GET verify and introspection take `?audience=`.
    let (_, v) = h.call("GET", &format!("/v1/verify/{t}"), None, None).await;
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["error"]["code"], "AUDIENCE_MISMATCH", "{v}");
    let (_, v) = h
        .call("GET", &format!("/v1/verify/{t}?audience=shop"), None, None)
        .await;
    assert_eq!(v["valid"], true, "{v}");
    let introspect = |query: &'static str| {
        let req = h
            .http
            .post(format!("{}/v1/introspect{query}", h.base))
            .form(&[("token", t.as_str())]);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(introspect("").await["active"], false);
    assert_eq!(introspect("?audience=shop").await["active"], true);
    assert_eq!(introspect("?audience=bank").await["active"], false);
    let v: Value = h
        .http
        .post(format!("{}/v1/introspect", h.base))
        .form(&[("token", t.as_str()), ("audience", "shop")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["active"], true, "{v}");
}

#[tokio::test]
async fn a_receivers_audiences_are_registered_and_can_be_changed() {
    let h = common::start().await;
    let (id, key, created) = receiver(
        &h,
        json!({"name": "bank", "audiences": ["https://api.bank.example", "bank-eu"]}),
    )
    .await;
    assert_eq!(
        created["audiences"],
        json!(["https://api.bank.example", "bank-eu"])
    );
    let t = token_for(&h, Some(json!("bank-eu"))).await;
    assert_eq!(
        verify_as(&h, Some(&key), json!({"token": t})).await.1["valid"],
        true
    );
    // Its name alone is no longer one of its audiences.
    let by_name = token_for(&h, Some(json!("bank"))).await;
    assert_eq!(
        verify_as(&h, Some(&key), json!({"token": by_name})).await.1["valid"],
        false
    );

    let path = format!("/v1/receivers/{id}/audiences");
    let (st, v) = h
        .call(
            "PUT",
            &path,
            Some(&h.admin),
            Some(json!({"audiences": ["bank"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["audiences"], json!(["bank"]), "{v}");
    assert_eq!(
        verify_as(&h, Some(&key), json!({"token": by_name})).await.1["valid"],
        true
    );
    assert_eq!(
        verify_as(&h, Some(&key), json!({"token": t})).await.1["valid"],
        false
    );
    // A receiver may not change its own (it could claim an API it does not run).
    let (st, v) = h
        .call(
            "PUT",
            &path,
            Some(&key),
            Some(json!({"audiences": ["bank", "bank-eu"]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    // An audience belongs to one receiver: neither a change nor a new receiver takes
    // another's, and nothing of the refused change is kept.
    let (shop_id, shop_key, _) = receiver(&h, json!({"name": "shop"})).await;
    let for_bank = token_for(&h, Some(json!("bank"))).await;
    let (st, v) = h
        .call(
            "PUT",
            &format!("/v1/receivers/{shop_id}/audiences"),
            Some(&h.admin),
            Some(json!({"audiences": ["shop", "bank"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "AUDIENCE_TAKEN", "{v}");
    assert!(!v.to_string().contains(&id), "names no receiver: {v}");
    let (st, v) = h
        .call(
            "POST",
            "/v1/receivers",
            Some(&h.admin),
            Some(json!({"name": "evil", "audiences": ["bank"]})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let (st, v) = verify_as(
        &h,
        Some(&shop_key),
        json!({"token": for_bank, "audience": "bank"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let (_, v) = verify_as(&h, Some(&shop_key), json!({"token": for_bank})).await;
    assert_eq!(v["valid"], false, "{v}");
    let (st, v) = h
        .call(
            "PUT",
            &path,
            Some(&h.admin),
            Some(json!({"audiences": ["bank", "bank-eu"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        verify_as(&h, Some(&key), json!({"token": t})).await.1["valid"],
        true
    );

    // Failure cases.
    let too_long = "a".repeat(257);
    let many: Vec<String> = (0..17).map(|i| format!("aud-{i}")).collect();
    for bad in [
        json!({"audiences": []}),
        json!({"audiences": [""]}),
        json!({"audiences": [too_long]}),
        json!({"audiences": many}),
        json!({"audiences": "bank"}),
        json!({"audiences": ["bank\u{202e}"]}),
        json!({}),
    ] {
        let (st, v) = h
            .call("PUT", &path, Some(&h.admin), Some(bad.clone()))
            .await;
        assert!(
            st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::BAD_REQUEST,
            "{bad} → {st} {v}"
        );
        let (st, v) = h
            .call(
                "POST",
                "/v1/receivers",
                Some(&h.admin),
                Some(json!({"name": "x", "audiences": bad["audiences"]})),
            )
            .await;
        if !bad["audiences"].is_null() {
            assert!(st.is_client_error(), "{bad} → {st} {v}");
        }
    }
    let (st, _) = h
        .call("PUT", &path, None, Some(json!({"audiences": ["x"]})))
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (_, other, _) = receiver(&h, json!({"name": "other"})).await;
    let (st, _) = h
        .call(
            "PUT",
            &path,
            Some(&other),
            Some(json!({"audiences": ["x"]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let issuer = h.issuer("nosy.example").await;
    let (st, _) = h
        .call(
            "PUT",
            &path,
            Some(&issuer),
            Some(json!({"audiences": ["x"]})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = h
        .call(
            "PUT",
            "/v1/receivers/rcv_0000000000000000000000000000/audiences",
            Some(&h.admin),
            Some(json!({"audiences": ["x"]})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}
