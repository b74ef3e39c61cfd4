//! The API contract as a golden file: any change to routes, bodies or answers shows up
//! as a snapshot diff to review (`cargo insta review`, or INSTA_UPDATE=always).

use bonafide_server::openapi::ApiDoc;
use utoipa::OpenApi;

#[test]
fn openapi_document_matches_golden_snapshot() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for path in [
        "/v1/issuers",
        "/v1/agents/register",
        "/v1/agents",
        "/v1/agents/{id}",
        "/v1/agents/{id}/issue-token",
        "/v1/agents/{id}/revoke",
        "/v1/tokens/revoke",
        "/v1/verify",
        "/v1/verify/{token}",
        "/v1/introspect",
        "/.well-known/jwks.json",
        "/.well-known/receipt-jwks.json",
        "/.well-known/public-key.pem",
        "/.well-known/bonafide-configuration",
        "/v1/scopes",
        "/v1/health",
        "/healthz",
        "/openapi.json",
        "/v1/admin/keys/rotate",
    ] {
        assert!(doc["paths"].get(path).is_some(), "missing {path}");
    }
    insta::assert_json_snapshot!("openapi", doc);
}

/// What the document says of a request the server once accepted against it: a lint
/// without a body is refused (the body is required), with a message that says so.
#[tokio::test]
async fn lint_without_a_body_is_refused_as_the_document_says() {
    let h = crate::common::start().await;
    for body in [&b""[..], b"  \n"] {
        let resp = h
            .http
            .post(format!("{}/v1/policies/lint", h.base))
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::BAD_REQUEST);
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "BAD_REQUEST", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("request body"),
            "{v}"
        );
    }
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let lint = &doc["paths"]["/v1/policies/lint"]["post"];
    assert_eq!(lint["requestBody"]["required"], true);
    assert!(lint["responses"].get("400").is_some());
}

/// Every error answer of every operation has a body schema: `ErrorBody`, or for
/// token exchange its RFC 6749 error; every 503 says when to retry.
#[test]
fn every_error_answer_is_documented_with_its_body() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("503"), "{method} {path}: no 503");
            for (status, resp) in responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let content = resp["content"].as_object();
                assert!(
                    content.is_some_and(|c| !c.is_empty()),
                    "{method} {path} {status}: no body schema"
                );
                assert!(
                    !resp["description"].as_str().unwrap().is_empty(),
                    "{method} {path} {status}: no description"
                );
                if status == "503" {
                    assert!(
                        resp["headers"].get("Retry-After").is_some(),
                        "{method} {path}: 503 without Retry-After"
                    );
                }
            }
            // A query parameter is never documented as a path parameter.
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    let name = p["name"].as_str().unwrap();
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: {p}"
                    );
                }
            }
        }
    }
    assert!(doc["components"]["schemas"].get("ErrorBody").is_some());
}

/// Every code the server can send is in the document, as the enum of the error
/// object's `code` (the server constructs known `ErrorCode` variants only), and the
/// verify answers' `error` is that same object.
#[test]
fn error_codes_are_one_enum_and_error_is_one_object() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let listed: Vec<&str> = schemas["ErrorCode"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", schemas["ErrorCode"]))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let known: Vec<&str> = bonafide_api::ErrorCode::ALL
        .iter()
        .map(bonafide_api::ErrorCode::as_str)
        .collect();
    assert_eq!(listed, known);
    for code in [
        "TOKEN_REVOKED",
        "DELEGATION_WIDENS",
        "STORAGE_FULL",
        "AUDIENCE_FORBIDDEN",
    ] {
        assert!(listed.contains(&code), "{code}");
    }
    let detail = &schemas["ErrorDetail"];
    assert_eq!(
        detail["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
    assert_eq!(detail["additionalProperties"], false, "{detail}");
    assert_eq!(schemas["ErrorBody"]["additionalProperties"], false);
    let error_of = |schema: &str| {
        let e = &schemas[schema]["properties"]["error"];
        e.to_string()
    };
    for answer in ["VerifyResponse", "SimpleVerify"] {
        assert!(
            error_of(answer).contains("#/components/schemas/ErrorDetail"),
            "{answer}: {}",
            error_of(answer)
        );
    }
    // Token exchange's RFC 6749 errors carry an `ErrorCode` as `code` too.
    assert_eq!(
        schemas["OAuthErrorBody"]["properties"]["code"]["$ref"],
        "#/components/schemas/ErrorCode"
    );
}
