//! `bonafide`: run the registry, and talk to it.
//!
//! Exit codes: 0 success (for `verify`: valid and allowed), 1 the token is not valid or
//! not allowed (for `audit verify` and `receipt verify`: a check failed; for
//! `policy lint`: the policy is invalid), 2 any other error (bad usage, unreadable
//! file, unreachable registry, refused request). A reader that closes stdout early
//! (`| head -1`) does not change the code; any other failure to write stdout is 2.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_client::{Client, ClientError};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::keys::Algorithm;
use bonafide_server::{Config, Server};
use bonafide_store::{AuditRecord, Location, Store};
use clap::{Args, CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};

// Every `println!`, `print!` and `eprintln!` below (and in the modules, declared after
// these) goes through `stdout`, so that a closed pipe never panics (exit 101).
macro_rules! println {
    () => { $crate::stdout::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::write(format_args!("{}\n", format_args!($($arg)*))) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::stdout::write(format_args!($($arg)*)) };
}
macro_rules! eprintln {
    () => { $crate::stdout::write_err(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::stdout::write_err(format_args!("{}\n", format_args!($($arg)*))) };
}

mod accounts;
mod agent;
mod aim;
mod apikeys;
mod audit;
mod audit_tiles;
mod duration;
mod emit;
mod failure;
mod kek;
mod migrate;
mod output;
mod policy;
mod progress;
mod ratelimits;
mod receipt;
mod scan;
mod self_custody;
mod shell;
mod stdout;
mod usage;
mod verify;
mod when;

use failure::Failure;
use output::Out;

#[derive(Debug, Parser)]
#[command(
    name = "bonafide",
    version,
    about = "Identity and delegated authority for AI agents"
)]
struct Cli {
    /// Registry URL for client commands.
    #[arg(
        long,
        global = true,
        env = "BONAFIDE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry (embedded SQLite under --data-dir).
    Serve(ServeArgs),
    /// Manage issuers (admin key in BONAFIDE_API_KEY; `verify-domain`: issuer key).
    #[command(subcommand)]
    Issuer(IssuerCmd),
    /// Manage receivers, the APIs that verify agents (admin key in BONAFIDE_API_KEY).
    #[command(subcommand)]
    Receiver(ReceiverCmd),
    /// Manage agents (issuer key in BONAFIDE_API_KEY).
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Consent policies (`pol.v0.2`).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Revoke an agent (and all its tokens) or one token.
    Revoke(RevokeArgs),
    /// Verify a token online (POST /v1/verify: scopes, an action with its resource and
    /// amount, a proof of possession), or offline with a JWKS. Exit 0 if valid and
    /// allowed, 1 if not (with the reasons), 2 on errors.
    Verify(VerifyArgs),
    /// Decide a request as `verify` would (scopes, action, resource, amount), with
    /// nothing recorded or spent; prints the verdict and its reasons. Exit 0 if
    /// allowed, 1 if not, 2 on errors. BONAFIDE_API_KEY is sent when set (a receiver
    /// key is needed for --amount).
    Simulate(agent::SimulateArgs),
    /// Registry keys, and generating your own issuer signing key.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Agent tokens: sign one offline with your own issuer key, or exchange one for a
    /// narrower child (delegation).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Register your issuer's public keys (issuer key in BONAFIDE_API_KEY).
    #[command(subcommand)]
    IssuerKey(IssuerKeyCmd),
    /// Check the registry's audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Fetch and check verify receipts.
    #[command(subcommand)]
    Receipt(ReceiptCmd),
    /// API keys: create, list, rotate and revoke them by id, never showing a secret
    /// but once (any API key in BONAFIDE_API_KEY: its own identity's keys; an admin
    /// key: any identity's, with --owner).
    #[command(subcommand)]
    ApiKey(apikeys::ApiKeyCmd),
    /// Rate limits: list them, give one API key a limit of its own or clear it (admin
    /// key in BONAFIDE_API_KEY).
    #[command(subcommand)]
    RateLimit(ratelimits::RateLimitCmd),
    /// Organisations and their people: create one with its first owner's invitation
    /// (admin key), accept an invitation, invite, list members (your login).
    #[command(subcommand)]
    Org(accounts::OrgCmd),
    /// An organisation's usage (requests by day, endpoint and key) and its monthly
    /// verification quota: with its own API key (BONAFIDE_API_KEY), the admin key, or
    /// an organisation admin's login. A table, or `--json`.
    Usage(usage::UsageArgs),
    /// Organisations' plans (monthly verification quotas): show or assign one (admin
    /// key in BONAFIDE_API_KEY).
    #[command(subcommand)]
    Plan(usage::PlanCmd),
    /// Log in as a person (password in BONAFIDE_PASSWORD or on stdin): keeps the
    /// session's tokens in a 0600 file for `org`, `sessions` and `logout`.
    Login(accounts::LoginArgs),
    /// Your sessions: list them, end one.
    #[command(subcommand)]
    Sessions(accounts::SessionsCmd),
    /// End this login's session and remove its file.
    Logout(accounts::SessionFileArg),
    /// Two-factor authentication (TOTP) for your login: enroll, confirm, disable.
    #[command(subcommand)]
    Totp(accounts::TotpCmd),
    /// Make an agent for AIM's Python SDK (aim-sdk; issuer key in BONAFIDE_API_KEY):
    /// its Ed25519 key is made here (the registry never sees the private half), the
    /// agent is registered with it, and the SDK's credentials file is written
    /// (~/.aim/agents/NAME.json, 0600), after which the SDK's `secure(NAME)` works
    /// unchanged against --url. An existing file is never overwritten.
    AimCredentials(aim::AimCredentialsArgs),
    /// Copy a SQLite registry (a data dir) into a new, empty PostgreSQL database:
    /// keys, issuers, agents, tokens, revocations, budgets, receipts and the audit log
    /// with its checkpoints, in one transaction; the private keys re-sealed under the
    /// replicas' key-encryption key. Stop the SQLite server first.
    Migrate(migrate::MigrateArgs),
    /// Print a shell completion script for every command and flag.
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff: `bonafide man | man -l -`), or write all pages with --out DIR.
    Man(shell::ManArgs),
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Check a policy as registration would, locally (no registry, no key): prints
    /// its policy_hash and canonical form, or every problem with its JSON path. Exit 1
    /// if it is invalid, 2 on errors.
    Lint(policy::LintArgs),
}

#[derive(Debug, Subcommand)]
enum ReceiptCmd {
    /// Verify a receipt offline: its signature against the registry's receipt JWKS
    /// (/.well-known/receipt-jwks.json) and, with
    /// --request, that it was issued for that verify request. Prints the claims;
    /// exit 1 if a check fails (forged, altered, not a receipt, unknown key, another
    /// request), 2 on errors.
    Verify(receipt::VerifyArgs),
    /// Fetch a receipt (`GET /v1/receipts/{id}`) with the issuer key of its agent or
    /// the key of the receiver that asked; `--json` prints the answer, which
    /// `receipt verify` checks.
    Get(agent::ReceiptGetArgs),
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Verify the latest signed checkpoint against a pinned log key and the checkpoint
    /// seen last time (state file); with --index / --entry-file, that an entry is in
    /// the log; with --proof-file, a tlog-proof offline. Exit 1 if the log fails a
    /// check (rewritten, rolled back, altered entry), 2 on errors.
    Verify(audit::VerifyArgs),
    /// Write the log, as of the registry's latest signed checkpoint, to a directory
    /// in the C2SP tlog-tiles layout (any static web server or object store can serve
    /// it); checked against the checkpoint and the pinned log key before anything is
    /// written; run again to add only what is new. Needs an admin key
    /// (BONAFIDE_API_KEY) for the entry bundles. Exit 1 on a split view or tampering.
    Export(audit_tiles::ExportArgs),
    /// Print the audit log key the registry announces (to pin with --log-key; compare
    /// it with one published elsewhere).
    LogKey,
    /// Print entry N's canonical text as logged (for --entry-file); needs
    /// BONAFIDE_API_KEY of an admin or of the issuer it concerns.
    Entry {
        /// The entry's index.
        index: u64,
    },
    /// Print a C2SP tlog-proof of entry N (for --proof-file, offline); with the entry
    /// itself when BONAFIDE_API_KEY may read it.
    Proof {
        /// The entry's index.
        index: u64,
    },
    /// Drop the records below N from the registry's database: they are served from
    /// the export the server reads (`serve --audit-archive`), which is checked tile by
    /// tile against the database first (a difference refuses, nothing dropped). The
    /// hashes at level 8 and above stay. Needs an admin key (BONAFIDE_API_KEY).
    Prune {
        /// Prune below this index: a multiple of 256, within the latest signed
        /// checkpoint and the archive's.
        #[arg(
            long,
            required_unless_present = "exported",
            conflicts_with = "exported"
        )]
        through: Option<u64>,
        /// Prune every full tile the archive's checkpoint covers.
        #[arg(long)]
        exported: bool,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    store: StoreArgs,
    /// Public base URL (token `iss`), http:// or https://; default http://<listen
    /// address>.
    #[arg(long, env = "BONAFIDE_PUBLIC_URL", value_parser = public_url)]
    public_url: Option<String>,
    /// Algorithm of the first signing key of a new registry: RS256 (default), ES256
    /// or EdDSA. An existing registry keeps its key (`keys rotate --alg` changes it).
    #[arg(long)]
    signing_alg: Option<Algorithm>,
    /// Log format: json or text.
    #[arg(long, default_value = "json")]
    log_format: String,
    /// Add BONAFIDE_ADMIN_KEY as another admin key when the registry has admin keys
    /// and not this one. Without it, such a start is refused: a changed environment
    /// must not silently grant admin (make admin keys with `bonafide api-key create
    /// --owner admin` instead).
    #[arg(long)]
    add_admin_key: bool,
    /// Do not write verify decisions to the audit log. Only for measuring what the
    /// log costs: verify answers then carry no `audit_index` and no `receipt_id`
    /// (a receipt is stored with its audit entry). State changes are logged anyway.
    #[arg(long)]
    no_audit_verify: bool,
    /// Origin (name) of the audit log, used when the log is first created; default
    /// the public URL's host and path + `/audit`.
    #[arg(long)]
    audit_origin: Option<String>,
    /// Longest a client may take to send a request's headers, counted from its
    /// connection's start (first request) or the request's first byte (later ones);
    /// then the connection is closed. Default 10s.
    #[arg(long, value_parser = duration::timeout)]
    header_read_timeout: Option<std::time::Duration>,
    /// Longest a keep-alive connection may wait for its next request. Default 75s.
    #[arg(long, value_parser = duration::timeout)]
    idle_timeout: Option<std::time::Duration>,
    /// Longest from a request's headers to its answer: a body not received by then
    /// is answered 408, an answer not ready 503. Default 30s.
    #[arg(long, value_parser = duration::timeout)]
    request_timeout: Option<std::time::Duration>,
    /// Most connections served at once; more wait until one closes. Keep it below the
    /// file-descriptor limit (ulimit -n). Default 512.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Longest token lifetime an issuer may ask for (`expiry_seconds`), and the
    /// longest any token the registry accepts may live: 60s to 365d. Default 30d.
    /// Receivers verifying offline must allow as much (their own `max_token_ttl`).
    #[arg(long, env = "BONAFIDE_MAX_TOKEN_TTL", value_parser = max_token_ttl)]
    max_token_ttl: Option<i64>,
    /// Keep stored verify receipts this long (at least 1h), then drop them, hourly;
    /// their audit entries stay, so every decision remains provable. Default: kept for
    /// ever.
    #[arg(long, env = "BONAFIDE_RECEIPT_RETENTION", value_parser = duration::retention)]
    receipt_retention: Option<std::time::Duration>,
    /// Where the audit log's pruned records are read from: the export `bonafide audit
    /// export --to` wrote, as a directory or the http(s) base URL serving it. Needed
    /// to prune (`bonafide audit prune`) and, once pruned, to serve the pruned
    /// entries, proofs and tiles. Default: none.
    #[arg(long, env = "BONAFIDE_AUDIT_ARCHIVE", value_name = "DIR_OR_URL")]
    audit_archive: Option<String>,
    /// How long receivers may cache a status list (its `ttl` and `Cache-Control:
    /// max-age`): 1s to 30m. Default 60s. Shorter: revocations reach offline
    /// receivers sooner, for more fetches.
    #[arg(long, env = "BONAFIDE_STATUS_LIST_TTL", value_parser = duration::status_list_ttl)]
    status_list_ttl: Option<std::time::Duration>,
    /// Most push-event streams (`GET /v1/events`, SSE) one receiver may hold open at
    /// once on this replica; more are refused 429. 1 to 10000. Default 8.
    #[arg(long, env = "BONAFIDE_MAX_EVENT_STREAMS", value_parser = clap::value_parser!(u16).range(1..=10_000))]
    max_event_streams: Option<u16>,
    /// Let anyone create an organisation (`POST /v1/orgs` without a key), becoming its
    /// owner. Off by default: the admin invites each organisation's first owner.
    #[arg(long, env = "BONAFIDE_OPEN_SIGNUP")]
    open_signup: bool,
    /// Most live API keys one issuer or receiver may have, keys in a rotation's grace
    /// period included (each key has its own rate-limit bucket: this bounds how far an
    /// identity multiplies its limit). 1 to 100000. Default 100.
    #[arg(long, env = "BONAFIDE_MAX_KEYS_PER_IDENTITY", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_keys_per_identity: Option<u32>,
    /// Serve AgentOAuth's playground demo-token issuance
    /// (`/compat/agentoauth/playground/issue-demo-token`): a demo issuer whose key this
    /// registry holds signs consent tokens for anyone who asks, 100 an hour per client
    /// address (`--rate-limit playground=N/h`). Off by default.
    #[arg(long, env = "BONAFIDE_PLAYGROUND")]
    playground: bool,
    /// Keep security events (failed logins, refused refresh-token reuse) this long,
    /// then drop them, hourly (at least 1h). Default 30d.
    #[arg(long, env = "BONAFIDE_SECURITY_EVENT_RETENTION", value_parser = duration::retention)]
    security_event_retention: Option<std::time::Duration>,
    /// Also serve `GET /metrics` (Prometheus) on this address, without a key; on the
    /// main address it needs an admin key. Keep it on a private network.
    #[arg(long, env = "BONAFIDE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Rate limits: `on` (API keys 5000/min each, people 1000/min, calls without a key
    /// 100/min per client address, anonymous verifies 1000/min per token issuer,
    /// status-list allocations 1000/min per issuer) or `off` (nothing limited or
    /// counted: only for comparison).
    #[arg(long, env = "BONAFIDE_RATE_LIMITS", default_value = "on", value_parser = ["on", "off"])]
    rate_limits: String,
    /// A limit other than its default, POLICY=N/WINDOW: POLICY is admin, issuer,
    /// receiver, api-key (all three), person, ip, iss or allocations; WINDOW s, min, h, d or
    /// <n>s (e.g. ip=300/min). Repeatable (or comma-separated in the variable).
    #[arg(long = "rate-limit", env = "BONAFIDE_RATE_LIMIT", value_delimiter = ',', value_parser = rate_limit_assignment)]
    rate_limit: Vec<String>,
    /// A proxy (address or CIDR block) whose X-Forwarded-For names the client, for
    /// limits by client address. Repeatable (comma-separated in the variable).
    /// Default none: X-Forwarded-For is never believed.
    #[arg(long = "trusted-proxy", env = "BONAFIDE_TRUSTED_PROXIES", value_delimiter = ',', value_parser = trusted_proxy)]
    trusted_proxy: Vec<bonafide_server::ratelimit::Cidr>,
    /// Monthly verification quotas per organisation: `on` (verify calls made with an
    /// organisation's receiver key are counted; 429 QUOTA_EXCEEDED past its plan's
    /// limit) or `off` (nothing counted: only for comparison).
    #[arg(long, env = "BONAFIDE_QUOTAS", default_value = "on", value_parser = ["on", "off"])]
    quotas: String,
    /// A plan, NAME=LIMIT (verifications a month, e.g. pro=1000000); `free` (10,000)
    /// is the default plan every organisation is on until the admin assigns another
    /// (`bonafide plan set`). Repeatable (or comma-separated in the variable).
    #[arg(long = "plan", env = "BONAFIDE_PLANS", value_delimiter = ',', value_parser = plan_assignment)]
    plan: Vec<String>,
    /// Rotate the registry's signing key on a schedule: once the active key is this
    /// old (1h to 3650d, e.g. 90d), the next key, published in the JWKS at least 5
    /// minutes before, starts signing. Default: rotated only when asked.
    #[arg(long, env = "BONAFIDE_SIGNING_KEY_LIFETIME", value_parser = duration::key_lifetime)]
    signing_key_lifetime: Option<std::time::Duration>,
}

/// `--rate-limit POLICY=LIMIT`, checked as `serve` will apply it.
fn rate_limit_assignment(text: &str) -> Result<String, String> {
    bonafide_server::ratelimit::RateLimits::seeds().apply(text)?;
    Ok(text.to_owned())
}

/// `--plan NAME=LIMIT`, checked as `serve` will apply it.
fn plan_assignment(text: &str) -> Result<String, String> {
    bonafide_server::quota::Plans::seeds().apply(text)?;
    Ok(text.to_owned())
}

/// `--trusted-proxy ADDR[/PREFIX]`.
fn trusted_proxy(text: &str) -> Result<bonafide_server::ratelimit::Cidr, String> {
    bonafide_server::ratelimit::Cidr::parse(text)
}

/// `--max-token-ttl`: a lifetime from 60s to 365d.
fn max_token_ttl(text: &str) -> Result<i64, String> {
    duration::ttl(text).map_err(|e| e.to_string())
}

/// Where the registry keeps its data: `serve` and every command that opens the store
/// directly take the same flags, so they agree on the backend.
#[derive(Debug, Args)]
struct StoreArgs {
    /// Where the SQLite database lives (created if missing).
    #[arg(long, env = "BONAFIDE_DATA_DIR", default_value = "./bonafide-data")]
    data_dir: PathBuf,
    /// A PostgreSQL database instead of the data dir:
    /// postgres://USER:PASSWORD@HOST:PORT/DB (libpq parameters such as sslmode and
    /// sslrootcert honoured). Its tables are created or migrated on start.
    #[arg(
        long,
        env = "BONAFIDE_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "data_dir"
    )]
    database_url: Option<String>,
    /// The key-encryption key the registry's private keys are sealed under: a file
    /// holding 32 random bytes as base64 (`bonafide keys new-kek --out FILE`) or raw,
    /// not readable by other users. Default with a data dir:
    /// `<data-dir>/key-encryption.key`, made on first start; required with
    /// --database-url.
    #[arg(long, env = "BONAFIDE_KEY_ENCRYPTION_KEY_FILE")]
    key_encryption_key_file: Option<PathBuf>,
}

impl StoreArgs {
    /// The KEK for these flags' store (see [`kek`]).
    fn kek(&self, location: &Location) -> Result<std::sync::Arc<bonafide_core::sealed::Kek>> {
        kek::for_store(location, self.key_encryption_key_file.as_deref())
    }

    /// The store these flags name. `--database-url` must be a postgres:// or
    /// postgresql:// URL; checked here rather than by clap, whose message would repeat
    /// the value (and its password).
    fn location(&self) -> Result<Location> {
        match &self.database_url {
            Some(url) if bonafide_store::is_postgres_url(url) => {
                Ok(Location::Postgres(url.clone()))
            }
            Some(_) => Err(Failure::usage(
                "--database-url (BONAFIDE_DATABASE_URL) must start with postgres:// or postgresql://",
            )),
            None => Ok(Location::DataDir(self.data_dir.clone())),
        }
    }
}

#[derive(Debug, Subcommand)]
enum IssuerCmd {
    /// Create an issuer; prints its API key once (`--quiet`: only the key;
    /// `--output env`: BONAFIDE_ISSUER_ID and BONAFIDE_ISSUER_KEY).
    Create {
        /// Unique name, usually the organisation's domain.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        emit: emit::EmitArgs,
    },
    /// Prove your issuer controls a domain (issuer key in BONAFIDE_API_KEY): publish
    /// the public JWK of a registered key at https://DOMAIN/.well-known/jwks.json; this
    /// signs a domain proof with its private key, locally, and asks the registry to
    /// check both.
    VerifyDomain(self_custody::VerifyDomainArgs),
}

#[derive(Debug, Subcommand)]
enum ReceiverCmd {
    /// Create a receiver; prints its API key once (`--quiet`: only the key;
    /// `--output env`: BONAFIDE_RECEIVER_ID and BONAFIDE_RECEIVER_KEY).
    Create {
        /// Unique name, usually the receiving API's host (`api.shop.example`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        emit: emit::EmitArgs,
    },
}

#[derive(Debug, Subcommand)]
enum AgentCmd {
    /// Register an agent and print its first token with its id (jti) and expiry
    /// (`--quiet`: only the token; `--output env`: AGENT_ID, TOKEN, JTI, EXPIRES_AT).
    Register {
        #[command(flatten)]
        emit: emit::EmitArgs,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Scope to grant (repeat, or separate with commas).
        #[arg(long = "scope", required = true, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Token lifetime: 3600, 90s, 30m, 24h, 7d.
        #[arg(long)]
        ttl: Option<String>,
        /// What the agent does.
        #[arg(long)]
        description: Option<String>,
        /// Receiver the tokens are for (repeatable).
        #[arg(long = "aud")]
        audience: Vec<String>,
        /// Consent policy file (`pol.v0.2` JSON; `-` reads stdin) the tokens carry;
        /// check one first with `bonafide policy lint FILE`.
        #[arg(long)]
        policy: Option<String>,
        /// On whose behalf the agent acts (`user` claim): a DID, an email or an id.
        #[arg(long)]
        user: Option<String>,
        /// Keep accepting tokens without `cnf` (bearer tokens) once the agent has its
        /// own key. Without it, an agent with a key accepts only tokens bound to it.
        /// Only at registration: it never changes.
        #[arg(long)]
        allow_bearer_tokens: bool,
    },
    /// List your agents.
    List {
        /// Page size.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Follow cursors and print every page.
        #[arg(long)]
        all: bool,
    },
    /// Suspend an agent: its tokens are refused (`AGENT_SUSPENDED`) until it is
    /// reactivated. Unlike `revoke`, this can be undone.
    Suspend {
        /// Agent id (`agt_…`).
        agent_id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reactivate a suspended agent: its tokens verify again (a revoked agent stays
    /// revoked).
    Reactivate {
        /// Agent id (`agt_…`).
        agent_id: String,
    },
    /// Show one of your agents: status, scopes, audiences, policy, dates.
    Show(agent::ShowArgs),
    /// Issue another token for an active agent (bound to its key if it has one);
    /// prints the token, its jti and expiry (`--quiet`: the token only).
    IssueToken(agent::IssueTokenArgs),
    /// An agent's own key pair: register or rotate its public half.
    #[command(subcommand)]
    Keys(agent::KeysCmd),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct RevokeTarget {
    /// Agent id (`agt_…`): revokes the agent and all its tokens.
    #[arg(long)]
    agent: Option<String>,
    /// A token's id (`tok_…`, the `jti` that `agent register`, `agent issue-token`
    /// and `token sign` print) or the token itself.
    #[arg(long)]
    token: Option<String>,
    /// A consent policy's `id` (`policy.id`): every token of your agents carrying a
    /// policy of that id is refused from now on, whoever signed it (AgentOAuth consent
    /// tokens too). For good; another issuer's policy of the same id is not touched.
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    policy: Option<String>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    target: RevokeTarget,
    /// Why (recorded with an agent revocation).
    #[arg(long, conflicts_with = "policy")]
    reason: Option<String>,
    /// With --token JTI of a token you signed yourself (`token sign`) and never
    /// showed the registry: its agent. (A token given whole names its agent.)
    #[arg(long, requires = "token", value_name = "AGENT_ID")]
    for_agent: Option<String>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The token (or `-` to read it from stdin).
    token: String,
    /// Scope the request needs (repeatable).
    #[arg(long = "scope", value_delimiter = ',')]
    scopes: Vec<String>,
    /// Your receiver identifier (checked against `aud`).
    #[arg(long)]
    audience: Option<String>,
    /// Verify locally with --jwks; no registry call.
    #[arg(long, requires = "jwks")]
    offline: bool,
    /// JWKS file or URL for --offline.
    #[arg(long)]
    jwks: Option<String>,
    /// Expected `iss` for --offline (default: the JWKS URL's origin).
    #[arg(long)]
    issuer: Option<String>,
    /// With --offline: a status list URI prefix to trust (repeatable), such as
    /// `https://registry.example/v1/status-lists/`. Default: the lists of the registry
    /// the --jwks URL belongs to, or of --issuer when it is a URL. A token naming a
    /// list elsewhere is refused (STATUS_LIST_UNTRUSTED), never fetched.
    #[arg(long, value_name = "URL", requires = "offline")]
    status_list_prefix: Vec<String>,
    /// With --offline: do not fetch the token's status list (revocation is then NOT
    /// checked).
    #[arg(long, requires = "offline", conflicts_with = "status_list_prefix")]
    no_status: bool,
    /// The action the agent asks to take (`payments.send`): the token's consent
    /// policy decides it (a token with a policy allows named actions only).
    #[arg(long)]
    action: Option<String>,
    /// What the action acts on, TYPE/ID (`merchant/airbnb`; the type ends at the
    /// first `/`).
    #[arg(long, requires = "action")]
    resource: Option<String>,
    /// Amount the action spends, an exact decimal (`12.50`), checked against the
    /// policy's limits and charged to its budget. Needs --currency, --action and a
    /// receiver key (bfk_rcv_…) in BONAFIDE_API_KEY.
    #[arg(long, requires_all = ["currency", "action"])]
    amount: Option<String>,
    /// ISO 4217 code of --amount (`USD`).
    #[arg(long, requires = "amount")]
    currency: Option<String>,
    /// Proof of possession for a token bound to the agent's key (`cnf.jkt`): the
    /// agent's private key file (PKCS#8 PEM) signs a DPoP proof (RFC 9449) here, for
    /// the request --htm --htu; the key is never sent.
    #[arg(long, requires_all = ["htm", "htu"])]
    dpop_key: Option<PathBuf>,
    /// The method of the request the proof is for (`POST`).
    #[arg(long, requires = "dpop_key")]
    htm: Option<String>,
    /// The URL of the request the proof is for, as the receiver sees it
    /// (`https://api.shop.example/orders`).
    #[arg(long, requires = "dpop_key")]
    htu: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCmd {
    /// Rotate the registry signing key in a data dir or database (a running server
    /// picks it up within seconds). Old tokens keep verifying until they expire.
    Rotate {
        /// The server's store (the same flags, defaults and variables as `serve`).
        #[command(flatten)]
        store: StoreArgs,
        /// Algorithm of the new key (default: the current key's).
        #[arg(long)]
        alg: Option<Algorithm>,
    },
    /// Re-seal the registry's private keys under a new key-encryption key, in one
    /// transaction (the current KEK comes from the same flags as `serve`). Stop the
    /// server (or every replica) first and start it with the new KEK afterwards.
    RotateKek {
        /// The server's store and its current KEK.
        #[command(flatten)]
        store: StoreArgs,
        /// The new KEK (`bonafide keys new-kek --out FILE`). Optional when the current
        /// one is the data dir's default file: a new one is made in its place.
        #[arg(long, value_name = "FILE")]
        new_key_encryption_key_file: Option<PathBuf>,
    },
    /// Print a fresh admin API key, e.g. for BONAFIDE_ADMIN_KEY.
    NewAdminKey,
    /// Find `bfk_` API keys in files by their checksum, as secret scanners do; with
    /// --revoke (admin key in BONAFIDE_API_KEY) revoke each one this registry issued.
    /// Exit 0 none found, 1 keys found, 2 on errors.
    Scan(scan::ScanArgs),
    /// Make a key-encryption key for --key-encryption-key-file: 32 random bytes as
    /// base64url, written to FILE (mode 0600, never over an existing file) or printed.
    NewKek {
        /// Write it here instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Generate an issuer signing key on this machine: the private key to FILE
    /// (PKCS#8 PEM, mode 0600, never printed or sent), the public JWK to
    /// FILE.pub.jwk. Prints the kid and the public JWK.
    Generate(self_custody::GenerateArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Sign an agent token offline with your issuer key (no network): `iss` is your
    /// issuer id. Prints only the token. Register the key first with
    /// `bonafide issuer-key add`, or the registry will not know it.
    Sign(self_custody::SignArgs),
    /// Exchange an agent's token for a narrower child token for a sub-agent (RFC 8693
    /// delegation, issuer key in BONAFIDE_API_KEY); prints the child, its jti and
    /// expiry (`--quiet`: the token only).
    Exchange(agent::ExchangeArgs),
}

#[derive(Debug, Subcommand)]
enum IssuerKeyCmd {
    /// Register a public JWK as one of your signing keys; prints its kid. Its private
    /// half (FILE for FILE.pub.jwk, or --key) signs the proof of possession the
    /// registry requires, locally. A file with private members is refused before any
    /// request.
    Add(self_custody::AddArgs),
    /// List your registered keys.
    List,
    /// Revoke a key: tokens it signed stop verifying (TOKEN_REVOKED).
    Revoke {
        /// The key's kid (RFC 7638 thumbprint). Base64url may start with `-`: such a
        /// kid is still the argument, never an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

// mimalloc: allocation-heavy request handling costs markedly less than with glibc
// malloc under concurrent load (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let out = Out { json: cli.json };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&anyhow!("cannot start the async runtime: {e}"));
            return ExitCode::from(2);
        }
    };
    let code = match runtime.block_on(run(cli, out)) {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            ExitCode::from(2)
        }
    };
    match stdout::finish() {
        Some(e) => {
            out.error(&Failure::coded(
                "OUTPUT",
                format!("cannot write the output: {e}"),
            ));
            ExitCode::from(2)
        }
        None => code,
    }
}

/// A command line clap refuses: clap's own text, or with `--json` one `USAGE` error
/// object on stderr like every other error. Help and version print as usual.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if informational || !json {
        e.exit();
    }
    let text = e.render().to_string();
    let message = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
    Out { json: true }.error(&Failure::usage(message));
    ExitCode::from(2)
}

async fn run(cli: Cli, out: Out) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await.map(|()| ExitCode::SUCCESS),
        Command::Issuer(IssuerCmd::Create { name, emit }) => {
            let usual = emit.usual(out.json)?;
            let client = client(&cli.url, KeyKind::Admin)?;
            let v: Value = client
                .post("/v1/issuers", &json!({ "name": name }))
                .await
                .map_err(explain)?;
            match usual {
                Some(json) => Out { json }.issuer_created(&v),
                None => emit.emit(
                    &v,
                    "api_key",
                    &[
                        ("BONAFIDE_ISSUER_ID", "issuer_id"),
                        ("BONAFIDE_ISSUER_KEY", "api_key"),
                    ],
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Issuer(IssuerCmd::VerifyDomain(args)) => {
            self_custody::verify_domain(&cli.url, args, out).await
        }
        Command::Receiver(ReceiverCmd::Create { name, emit }) => {
            let usual = emit.usual(out.json)?;
            let client = client(&cli.url, KeyKind::Admin)?;
            let v: Value = client
                .post("/v1/receivers", &json!({ "name": name }))
                .await
                .map_err(explain)?;
            match usual {
                Some(json) => Out { json }.receiver_created(&v),
                None => emit.emit(
                    &v,
                    "api_key",
                    &[
                        ("BONAFIDE_RECEIVER_ID", "receiver_id"),
                        ("BONAFIDE_RECEIVER_KEY", "api_key"),
                    ],
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy(PolicyCmd::Lint(args)) => policy::lint(args, out),
        Command::Agent(AgentCmd::Register {
            emit,
            name,
            scopes,
            ttl,
            description,
            audience,
            policy,
            user,
            allow_bearer_tokens,
        }) => {
            let usual = emit.usual(out.json)?;
            let client = client(&cli.url, KeyKind::Issuer)?;
            let mut body = json!({ "name": name, "scopes": scopes });
            if allow_bearer_tokens {
                body["allow_bearer_tokens"] = json!(true);
            }
            if let Some(ttl) = ttl {
                body["expiry_seconds"] = json!(duration::ttl(&ttl)?);
            }
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            if !audience.is_empty() {
                body["audience"] = json!(audience);
            }
            // Read before any request: a bad file is a local error (exit 2).
            if let Some(file) = policy {
                body["policy"] = policy::read_json(&file)?;
            }
            if let Some(u) = user {
                body["user"] = json!(u);
            }
            let v: Value = client
                .post("/v1/agents/register", &body)
                .await
                .map_err(explain)?;
            match usual {
                Some(json) => Out { json }.agent_registered(&v)?,
                None => emit.emit(
                    &v,
                    "token",
                    &[
                        ("AGENT_ID", "agent_id"),
                        ("TOKEN", "token"),
                        ("JTI", "jti"),
                        ("EXPIRES_AT", "expires_at"),
                    ],
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCmd::List { limit, all }) => {
            let client = client(&cli.url, KeyKind::Issuer)?;
            let mut agents = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let path = match &cursor {
                    Some(c) => format!("/v1/agents?limit={limit}&cursor={c}"),
                    None => format!("/v1/agents?limit={limit}"),
                };
                let fetching = format!("fetching agents ({} so far)", agents.len());
                let page: Value = progress::during(&fetching, client.get(&path))
                    .await
                    .map_err(explain)?;
                agents.extend(page["agents"].as_array().cloned().unwrap_or_default());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
                if !all || cursor.is_none() {
                    break;
                }
            }
            out.agent_list(&agents, cursor.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCmd::Suspend { agent_id, reason }) => {
            let path = format!("/v1/agents/{}/suspend", path_segment(&agent_id)?);
            let client = client(&cli.url, KeyKind::Issuer)?;
            let body = match &reason {
                Some(r) => json!({ "reason": r }),
                None => json!({}),
            };
            let v: Value = client.post(&path, &body).await.map_err(explain)?;
            out.suspended(&v)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCmd::Reactivate { agent_id }) => {
            let path = format!("/v1/agents/{}/reactivate", path_segment(&agent_id)?);
            let client = client(&cli.url, KeyKind::Issuer)?;
            let v: Value = client.post(&path, &json!({})).await.map_err(explain)?;
            out.reactivated(&v)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Agent(AgentCmd::Show(args)) => agent::show(&cli.url, args, out).await,
        Command::Agent(AgentCmd::IssueToken(args)) => agent::issue_token(&cli.url, args, out).await,
        Command::Agent(AgentCmd::Keys(cmd)) => agent::keys(&cli.url, cmd, out).await,
        Command::Token(TokenCmd::Exchange(args)) => agent::exchange(&cli.url, args, out).await,
        Command::Receipt(ReceiptCmd::Get(args)) => agent::receipt_get(&cli.url, args, out).await,
        Command::Simulate(args) => agent::simulate(&cli.url, args, out).await,
        Command::Revoke(args) => {
            let client = client(&cli.url, KeyKind::Issuer)?;
            let named_token = args.target.token.clone();
            if let Some(policy_id) = &args.target.policy {
                let v = client
                    .post("/v1/policies/revoke", &json!({ "policy_id": policy_id }))
                    .await
                    .map_err(explain)?;
                out.policy_revoked(&v)?;
                return Ok(ExitCode::SUCCESS);
            }
            let v: Value = match (args.target.agent, args.target.token) {
                (Some(agent), _) => {
                    let body = match &args.reason {
                        Some(r) => json!({ "reason": r }),
                        None => json!({}),
                    };
                    client
                        .post(
                            &format!("/v1/agents/{}/revoke", path_segment(&agent)?),
                            &body,
                        )
                        .await
                        .map_err(explain)?
                }
                (None, Some(token)) => {
                    let token = verify::read_token(&token)?;
                    // A compact JWS has two dots; an id never has one.
                    let mut body = if token.matches('.').count() == 2 {
                        json!({ "token": token })
                    } else {
                        json!({ "jti": token })
                    };
                    if let Some(agent) = &args.for_agent {
                        if body.get("token").is_some() {
                            bail!(
                                "--for-agent goes with a token id; the token itself names its agent"
                            );
                        }
                        body["agent_id"] = json!(path_segment(agent)?);
                    }
                    match client.post("/v1/tokens/revoke", &body).await {
                        Err(ClientError::Api { status: 404, .. })
                            if body.get("jti").is_some() && args.for_agent.is_none() =>
                        {
                            bail!(
                                "no token `{token}` of yours is known to the registry; for a token you signed yourself (`token sign`), give its agent (`--for-agent agt_…`) or the token itself (`--token \"$TOKEN\"`)"
                            )
                        }
                        other => other.map_err(explain)?,
                    }
                }
                (None, None) => bail!("give --agent ID, --token JTI or --policy ID"),
            };
            if let (Some(jti), Some(agent), false) = (&named_token, &args.for_agent, out.json) {
                // The registry cannot tell a typo from a token it never saw: say what
                // was recorded, in the user's own terms.
                println!(
                    "revoked jti {} of agent {agent} at {}: a token you signed with this jti is refused from now on (the registry never saw it, so it cannot confirm one exists; a token signed with a future `iat` may outlive this: revoke it by the token itself)",
                    jti.trim(),
                    v["revoked_at"].as_str().unwrap_or("-")
                );
                return Ok(ExitCode::SUCCESS);
            }
            out.revoked(&v)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => verify(&cli.url, args, out).await,
        Command::Audit(AuditCmd::Verify(args)) => audit::verify(&cli.url, args, out).await,
        Command::Audit(AuditCmd::Export(args)) => audit_tiles::export(&cli.url, args, out).await,
        Command::Audit(AuditCmd::LogKey) => audit::log_key(&cli.url, out).await,
        Command::Audit(AuditCmd::Entry { index }) => audit::entry(&cli.url, index, out).await,
        Command::Audit(AuditCmd::Proof { index }) => audit::proof(&cli.url, index).await,
        Command::Audit(AuditCmd::Prune { through, exported }) => {
            let client = client(&cli.url, KeyKind::Admin)?;
            let body = match through {
                Some(through) => json!({ "through": through }),
                None => json!({ "exported": exported }),
            };
            // A call prunes for about 10 s and says whether it is done: asked again
            // while it makes progress.
            let mut body = body;
            let mut total = 0u64;
            let v = loop {
                let mut v: Value = client
                    .post("/v1/admin/audit/prune", &body)
                    .await
                    .map_err(explain)?;
                let pruned = v["pruned"].as_u64().unwrap_or(0);
                total += pruned;
                if v["complete"] != json!(false) {
                    v["pruned"] = json!(total);
                    break v;
                }
                if pruned == 0 {
                    // Stopped short without progress: say so, never a silent success.
                    bail!(
                        "the prune stopped at record {} and made no progress ({} records pruned by this command); run `bonafide audit prune` again, and check the server's log if it persists",
                        v["through"],
                        total
                    );
                }
                if through.is_none() {
                    // The same target as the first call, even if the archive grew.
                    body =
                        json!({ "through": v["archive_size"].as_u64().unwrap_or(0) / 256 * 256 });
                }
            };
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "pruned {} records: records below {} are served from the archive (its checkpoint covers {})",
                    v["pruned"], v["through"], v["archive_size"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Receipt(ReceiptCmd::Verify(args)) => receipt::verify(args, out).await,
        Command::Keys(KeysCmd::NewKek { out: Some(path) }) => {
            kek::create(&path)?;
            eprintln!(
                "wrote a new key-encryption key to {} (keep a copy apart from the database)",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCmd::Scan(args)) => scan::run(&cli.url, args, out).await,
        Command::Keys(KeysCmd::NewKek { out: None }) => {
            println!("{}", kek::new_text()?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCmd::Rotate { store: args, alg }) => {
            // Never create a fresh registry by mistake: after a key compromise, rotating
            // the wrong directory would leave the real server signing with the old key.
            let location = args.location()?;
            if !location
                .exists()
                .await
                .with_context(|| format!("cannot open {location}"))?
            {
                match &location {
                    Location::DataDir(dir) => bail!(
                        "no Bonafide database in `{}`: pass the server's --data-dir",
                        dir.display()
                    ),
                    _ => bail!(
                        "no Bonafide registry in {location}: pass the server's --database-url"
                    ),
                }
            }
            let store = bonafide_store::open(&location)
                .await
                .with_context(|| format!("cannot open {location}"))?;
            let kek = args.kek(&location)?;
            // Checks the KEK opens the stored keys before a key is written that the
            // server could not open (and seals a plaintext database).
            bonafide_server::sealing::seal_stored_keys(&*store, &kek).await?;
            let keys = store.signing_keys().await?;
            let current = keys
                .iter()
                .find(|k| k.state == bonafide_store::KeyState::Active)
                .map(|k| k.alg);
            let alg = alg.or(current).unwrap_or(Algorithm::RS256);
            let now = bonafide_server::time::now_ms();
            let record = bonafide_server::state::new_key_record(alg, now, &kek)?;
            // The CLI acts with the data dir's file access, the registry's own power.
            let audit = audit_record(EventType::KeyRotated, now, Some(record.kid.clone()))?;
            store
                .rotate_signing_key(&record, now / 1000, &audit)
                .await?;
            out.rotated(&record.kid, alg);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCmd::Generate(args)) => self_custody::generate(args, out),
        Command::Token(TokenCmd::Sign(args)) => self_custody::sign(&cli.url, args, out).await,
        Command::IssuerKey(IssuerKeyCmd::Add(args)) => self_custody::add(&cli.url, args, out).await,
        Command::IssuerKey(IssuerKeyCmd::List) => self_custody::list(&cli.url, out).await,
        Command::IssuerKey(IssuerKeyCmd::Revoke { kid }) => {
            self_custody::revoke(&cli.url, &kid, out).await
        }
        Command::ApiKey(cmd) => apikeys::run(&cli.url, cmd, out).await,
        Command::RateLimit(cmd) => ratelimits::run(&cli.url, cmd, out).await,
        Command::Org(cmd) => accounts::org(&cli.url, cmd, out).await,
        Command::Usage(args) => usage::usage(&cli.url, args, out).await,
        Command::Plan(cmd) => usage::plan(&cli.url, cmd, out).await,
        Command::Login(args) => accounts::login(&cli.url, args, out).await,
        Command::Sessions(cmd) => accounts::sessions(&cli.url, cmd, out).await,
        Command::Logout(args) => accounts::logout(&cli.url, args, out).await,
        Command::Totp(cmd) => accounts::totp(&cli.url, cmd, out).await,
        Command::Migrate(args) => migrate::run(args, &out).await,
        Command::AimCredentials(args) => {
            let client = client(&cli.url, KeyKind::Issuer)?;
            aim::credentials(&cli.url, client, args, out).await
        }
        Command::Completions(args) => Ok(shell::completions(&args, Cli::command())),
        Command::Man(args) => shell::man(&args, Cli::command()),
        Command::Keys(KeysCmd::RotateKek {
            store: args,
            new_key_encryption_key_file: new,
        }) => {
            let location = args.location()?;
            if !location
                .exists()
                .await
                .with_context(|| format!("cannot open {location}"))?
            {
                bail!(
                    "no Bonafide registry in {location}: pass the server's --data-dir or --database-url"
                );
            }
            let store = bonafide_store::open(&location)
                .await
                .with_context(|| format!("cannot open {location}"))?;
            kek::rotate(
                &*store,
                &location,
                args.key_encryption_key_file.as_deref(),
                new.as_deref(),
                &out,
            )
            .await
        }
        Command::Keys(KeysCmd::NewAdminKey) => {
            let key = ApiKey::from_random(KeyKind::Admin, random20()?);
            println!("{}", key.expose_secret());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn random20() -> Result<[u8; 20]> {
    let mut b = [0u8; 20];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| anyhow!("the system random source failed"))?;
    Ok(b)
}

/// Agent ids go into a URL path: refuse anything that is not an id.
fn path_segment(id: &str) -> Result<&str> {
    bonafide_core::ids::AgentId::try_from(id).map_err(|e| anyhow!("{e}"))?;
    Ok(id)
}

fn client(url: &str, kind: KeyKind) -> Result<Client> {
    let key = std::env::var("BONAFIDE_API_KEY").map_err(|_| {
        Failure::usage(format!(
            "set BONAFIDE_API_KEY to your {} API key (bfk_{}_…)",
            kind.as_str(),
            match kind {
                KeyKind::Admin => "adm",
                KeyKind::Issuer => "iss",
                KeyKind::Receiver => "rcv",
            }
        ))
    })?;
    let parsed =
        ApiKey::parse(key.trim()).map_err(|e| Failure::usage(format!("BONAFIDE_API_KEY: {e}")))?;
    if parsed.kind() != kind {
        return Err(Failure::usage(format!(
            "BONAFIDE_API_KEY is an {} key; this command needs an {} key",
            parsed.kind().as_str(),
            kind.as_str()
        )));
    }
    Client::new(url, Some(key.trim().to_owned())).map_err(explain)
}

/// A client error, kept whole inside the `anyhow::Error`: `Out::error` finds it again
/// for its code, HTTP status, request id and hint (`failure::describe`).
fn explain(e: ClientError) -> anyhow::Error {
    anyhow::Error::new(e)
}

async fn verify(url: &str, args: VerifyArgs, out: Out) -> Result<ExitCode> {
    verify::run(url, args, out).await
}

/// `--public-url`: an absolute http(s) URL with a host. It becomes every token's `iss`
/// and the base of every URL the registry hands out, so a mistake is refused at start
/// rather than baked into tokens.
fn public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "the public URL must start with http:// or https:// (for example https://{text})"
            )
        })?;
    if rest.split(['/', '?', '#']).next().is_none_or(str::is_empty) {
        return Err("the public URL has no host".to_owned());
    }
    Ok(text.to_owned())
}

async fn serve(args: ServeArgs) -> Result<()> {
    init_logging(&args.log_format)?;
    let location = args.store.location()?;
    // PostgreSQL's KEK is checked before connecting; a data dir's may be made in it.
    let early = match location {
        Location::Postgres(_) => Some(args.store.kek(&location)?),
        _ => None,
    };
    let store = bonafide_store::open(&location)
        .await
        .with_context(|| format!("cannot open {location}"))?;
    let kek = match early {
        Some(kek) => kek,
        None => args.store.kek(&location)?,
    };
    bootstrap_admin(&*store, &location, args.add_admin_key).await?;
    let defaults = Config::default();
    let mut rate_limits = bonafide_server::ratelimit::RateLimits::seeds();
    rate_limits.enabled = args.rate_limits == "on";
    for assignment in &args.rate_limit {
        rate_limits
            .apply(assignment)
            .map_err(|e| Failure::usage(format!("--rate-limit {e}")))?;
    }
    let mut plans = bonafide_server::quota::Plans::seeds();
    plans.enabled = args.quotas == "on";
    for assignment in &args.plan {
        plans
            .apply(assignment)
            .map_err(|e| Failure::usage(format!("--plan {e}")))?;
    }
    let audit_archive = match &args.audit_archive {
        Some(location) => Some(std::sync::Arc::new(
            bonafide_server::audit_archive::AuditArchive::open(location).map_err(Failure::usage)?,
        )),
        None => None,
    };
    let config = Config {
        audit_archive,
        rate_limits,
        plans,
        trusted_proxies: args.trusted_proxy.clone(),
        signing_key_lifetime: args.signing_key_lifetime,
        public_url: args.public_url.clone().unwrap_or_default(),
        signing_alg: args.signing_alg.unwrap_or(Algorithm::RS256),
        audit_verify: !args.no_audit_verify,
        audit_origin: args.audit_origin.clone(),
        header_read_timeout: args
            .header_read_timeout
            .unwrap_or(defaults.header_read_timeout),
        idle_timeout: args.idle_timeout.unwrap_or(defaults.idle_timeout),
        request_timeout: args.request_timeout.unwrap_or(defaults.request_timeout),
        max_connections: args.max_connections.map_or(defaults.max_connections, |n| {
            usize::try_from(n).unwrap_or(usize::MAX)
        }),
        max_token_ttl_s: args.max_token_ttl.unwrap_or(defaults.max_token_ttl_s),
        receipt_retention: args.receipt_retention,
        status_list_ttl: args.status_list_ttl.unwrap_or(defaults.status_list_ttl),
        max_event_streams_per_receiver: args
            .max_event_streams
            .map_or(defaults.max_event_streams_per_receiver, usize::from),
        // A maximum under a day shortens the default lifetime with it.
        default_token_ttl_s: args
            .max_token_ttl
            .map_or(defaults.default_token_ttl_s, |max| {
                defaults.default_token_ttl_s.min(max)
            }),
        kek: Some(kek),
        open_signup: args.open_signup,
        max_keys_per_identity: args
            .max_keys_per_identity
            .or(defaults.max_keys_per_identity),
        playground: args.playground,
        security_event_retention: args
            .security_event_retention
            .unwrap_or(defaults.security_event_retention),
        ..defaults
    };
    let mut server = Server::bind(args.listen, config, store).await?;
    if let Some(at) = args.metrics_listen {
        let bound = server.bind_metrics(at).await?;
        tracing::info!(addr = %bound, "metrics listening (GET /metrics, no key)");
        eprintln!("bonafide metrics on http://{bound}/metrics");
    }
    let shutdown = shutdown_signal()?;
    let addr = server.local_addr()?;
    say_what_was_kept(&server.state(), &args);
    tracing::info!(%addr, store = %location, "bonafide listening");
    eprintln!("bonafide listening on http://{addr}");
    server.run(shutdown).await?;
    tracing::info!("bonafide stopped");
    Ok(())
}

/// An existing registry keeps its signing key and its audit log's name: a flag that
/// asks for something else is said to have changed nothing, rather than ignored.
fn say_what_was_kept(state: &bonafide_server::AppState, args: &ServeArgs) {
    let active = state.keys().active.alg();
    if let Some(asked) = args.signing_alg
        && asked != active
    {
        eprintln!(
            "note: this registry keeps its signing key ({}); --signing-alg {} applies to a new registry only: `bonafide keys rotate --alg {}` changes it",
            active.as_str(),
            asked.as_str(),
            asked.as_str()
        );
    }
    if let Some(url) = &args.public_url
        && args.audit_origin.is_none()
    {
        let wanted = bonafide_server::audit::default_origin(url);
        let kept = state.audit.origin();
        if wanted != kept {
            eprintln!(
                "note: the audit log keeps its name `{kept}` (fixed when it was created); --public-url {url} would name a new one `{wanted}`"
            );
        }
    }
}

/// First start: create an admin key, print it once to stderr and keep it in
/// `<data-dir>/admin.key` (0600; with PostgreSQL there is no data dir: printed only).
/// `BONAFIDE_ADMIN_KEY` supplies it instead: on a registry without admin keys, or
/// one that has it already (every replica's environment); a key the registry does not
/// have is added beside its admin keys only with `--add-admin-key`, else the start is
/// refused (exit 2), so a changed environment never silently grants admin.
async fn bootstrap_admin(store: &dyn Store, location: &Location, add: bool) -> Result<()> {
    if let Ok(text) = std::env::var("BONAFIDE_ADMIN_KEY") {
        let key = ApiKey::parse(text.trim()).map_err(|e| {
            anyhow!("BONAFIDE_ADMIN_KEY: {e}; make one with `bonafide keys new-admin-key`")
        })?;
        if key.kind() != KeyKind::Admin {
            bail!(
                "BONAFIDE_ADMIN_KEY must be an admin key (bfk_adm_…); make one with `bonafide keys new-admin-key`"
            );
        }
        // Known revoked keys fall through to the store's refusal, which says so. The
        // registry's admin keys are read before this key is looked up: replicas
        // starting together with the same key, one adding it while another checks,
        // then see it as known rather than as a stranger beside an admin key.
        let has_admin = store.has_admin_key().await?;
        let hash = key.hash();
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&hash.0[..8]);
        let known = store
            .api_key_by_prefix(&prefix)
            .await?
            .is_some_and(|r| r.hash == hash);
        if !known && !add && has_admin {
            bail!(
                "BONAFIDE_ADMIN_KEY is not one of this registry's admin keys, and the registry has admin keys already: \
                 start with --add-admin-key to add it as another one, or unset it (make admin keys with `bonafide api-key create --owner admin`)"
            );
        }
        match add_admin_key(store, &key).await {
            Err(e)
                if e.downcast_ref::<bonafide_store::StoreError>()
                    == Some(&bonafide_store::StoreError::Conflict(
                        bonafide_store::ConflictKind::KeyRevoked,
                    )) =>
            {
                bail!(
                    "BONAFIDE_ADMIN_KEY was revoked (`bonafide api-key revoke`) and never becomes valid again: make a new one with `bonafide keys new-admin-key`"
                );
            }
            other => other?,
        }
        return Ok(());
    }
    if store.has_admin_key().await? {
        return Ok(());
    }
    let key = ApiKey::from_random(KeyKind::Admin, random20()?);
    let Location::DataDir(data_dir) = location else {
        // Replicas share the database, not a directory: nowhere to keep it but the
        // operator's hands (set BONAFIDE_ADMIN_KEY on every replica instead).
        add_admin_key(store, &key).await?;
        eprintln!(
            "created the admin API key (shown once, not saved anywhere; give replicas BONAFIDE_ADMIN_KEY instead):\n  {}",
            key.expose_secret()
        );
        return Ok(());
    };
    let path = data_dir.join("admin.key");
    write_private(&path, &format!("{}\n", key.expose_secret()))?;
    add_admin_key(store, &key).await?;
    eprintln!(
        "created the admin API key (shown once; also saved to {}):\n  {}",
        path.display(),
        key.expose_secret()
    );
    Ok(())
}

/// Stores an admin key with its audit entry (the key's SHA-256 prefix as its id,
/// never the key).
async fn add_admin_key(store: &dyn Store, key: &ApiKey) -> Result<()> {
    let now = bonafide_server::time::now_ms();
    let hash = key.hash();
    let kid = hash.key_id();
    let audit = audit_record(EventType::KeyAdded, now, Some(kid))?;
    store.add_admin_key(&hash, now, &audit).await?;
    Ok(())
}

/// The audit record of a change the CLI makes directly in the data dir.
fn audit_record(event: EventType, now_ms: i64, kid: Option<String>) -> Result<AuditRecord> {
    let mut entry = AuditEntry::new(event, now_ms, Actor::Registry);
    entry.kid = kid;
    Ok(bonafide_server::audit::record(&entry, None, None)?)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into a file or a collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("--log-format `{other}`: use json or text"),
    }
    Ok(())
}

/// Installs the SIGINT/SIGTERM handlers now (before the address is announced, so a
/// signal that arrives right after start-up is never met by the default action) and
/// returns the future that resolves when one arrives.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}
