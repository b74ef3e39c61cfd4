//! The conformance vectors (`conformance/` at the repository root), as the receiver
//! layer sees them.

/// The receiver layer's offline verifier passes the conformance token vectors
/// (`conformance/tokens.json`).
#[test]
fn the_offline_verifier_passes_the_conformance_token_vectors() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/tokens.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let jwks: bonafide_core::keys::Jwks = serde_json::from_value(v["jwks"].clone()).unwrap();
    let now = v["now"].as_i64().unwrap();
    for case in v["cases"].as_array().unwrap() {
        let mut verifier =
            bonafide_client::OfflineVerifier::new(&jwks, v["issuer"].as_str().unwrap()).unwrap();
        let opts = verifier.options_mut();
        opts.leeway_secs = v["leeway_secs"].as_i64().unwrap();
        opts.max_lifetime_secs = v["max_lifetime_secs"].as_i64();
        if let Some(a) = case["audience"].as_str() {
            opts.audience = bonafide_core::token::AudienceRule::one(a);
        }
        let got = verifier.verify(case["token"].as_str().unwrap(), now);
        let name = &case["name"];
        match case["expect"]["valid"].as_bool().unwrap() {
            true => assert!(got.is_ok(), "{name}: {got:?}"),
            false => assert_eq!(
                got.err().map(|e| e.code().as_str().to_owned()).as_deref(),
                case["expect"]["code"].as_str(),
                "{name}"
            ),
        }
    }
}
