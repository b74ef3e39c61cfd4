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
