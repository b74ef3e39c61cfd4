//! An API that agents call, authenticated offline by Bonafide: the token is checked
//! with the registry's cached JWKS, a bound token's DPoP proof or message signature
//! with the layer's own replay cache.
//!
//! `BONAFIDE_URL=http://127.0.0.1:8080 PUBLIC_URL=http://127.0.0.1:3000 \
//!  cargo run -p bonafide-client --example receiver`
use axum::{Router, routing::get};
use bonafide_client::receiver::{Config, JwksSource, Receiver, VerifiedAgent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = std::env::var("BONAFIDE_URL").unwrap_or("http://127.0.0.1:8080".into());
    let public = std::env::var("PUBLIC_URL").unwrap_or("http://127.0.0.1:3000".into());
    let jwks = JwksSource::url(format!("{registry}/.well-known/jwks.json"));
    let config = Config::offline(jwks, &registry) // trust tokens this registry signed
        .public_base_url(&public) // what DPoP `htu` and signatures must name
        .agent_keys_from_registry(&registry); // agents' keys for message signatures
    let receiver = Receiver::new(config).await?;
    let app = Router::new()
        .route("/hello", get(hello))
        .layer(receiver.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hello(agent: VerifiedAgent) -> String {
    format!(
        "hello {} ({}), acting for {:?}\n",
        agent.name, agent.agent_id, agent.user
    )
}
