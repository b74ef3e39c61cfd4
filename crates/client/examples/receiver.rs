//! An API that agents call, authenticated offline by Bonafide: the token is checked
//! with the registry's cached JWKS, a bound token's DPoP proof or message signature
//! with the layer's own replay cache.
//!
//! ```sh
//! BONAFIDE_URL=http://127.0.0.1:8080 LISTEN=127.0.0.1:3000 PUBLIC_URL=http://127.0.0.1:3000 \
//!   cargo run -p bonafide-client --example receiver
//! curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3000/hello
//! ```
use axum::{Router, routing::get};
use bonafide_client::receiver::{Config, JwksSource, Receiver, VerifiedAgent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = std::env::var("BONAFIDE_URL").unwrap_or("http://127.0.0.1:8080".into());
    let listen = std::env::var("LISTEN").unwrap_or("127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let local = listener.local_addr()?;
    // Agents address the receiver by its public URL (DPoP `htu` names it), which is
    // where it listens unless it sits behind a proxy.
    let public = std::env::var("PUBLIC_URL").unwrap_or(format!("http://{local}"));
    let jwks = JwksSource::url(format!("{registry}/.well-known/jwks.json"));
    let config = Config::offline(jwks, &registry) // trust tokens this registry signed
        .public_base_url(&public) // what DPoP `htu` and signatures must name
        .agent_keys_from_registry(&registry); // agents' keys for message signatures
    let receiver = Receiver::new(config).await?;
    let app = Router::new()
        .route("/hello", get(hello))
        .layer(receiver.layer());
    println!("receiver listening on http://{local} (public URL {public}), trusting {registry}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hello(agent: VerifiedAgent) -> String {
    match &agent.user {
        Some(user) => format!(
            "hello {} ({}), acting for {user}\n",
            agent.name, agent.agent_id
        ),
        None => format!("hello {} ({})\n", agent.name, agent.agent_id),
    }
}
