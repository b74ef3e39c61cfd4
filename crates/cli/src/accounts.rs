//! Organisations, people and sessions (issue 18): `bonafide org create|accept|invite|
//! members`, `bonafide login`, `bonafide sessions list|revoke`, `bonafide logout`.
//!
//! A login is kept in a session file (`--session-file`, `BONAFIDE_SESSION_FILE`, else
//! `$XDG_STATE_HOME/bonafide/session.json` or `~/.local/state/bonafide/session.json`;
//! mode 0600): the registry's URL, the access token and the refresh token. A command
//! that acts as the person uses the access token, and first rotates it with the
//! refresh token when it has less than 30 s left (the file then holds the new pair).
//! Passwords are read from `BONAFIDE_PASSWORD`, else one line of standard input when
//! it is not a terminal: never from a flag, which `ps` would show.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use bonafide_client::Client;
use bonafide_core::apikey::KeyKind;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::failure::Failure;
use crate::output::Out;
use crate::{client, explain};

#[derive(Debug, Subcommand)]
pub enum OrgCmd {
    /// Create an organisation and invite its first owner (admin key in
    /// BONAFIDE_API_KEY): prints the one-time invitation token to give them.
    Create {
        /// The organisation's unique name.
        #[arg(long)]
        name: String,
        /// The first owner's email.
        #[arg(long)]
        owner_email: String,
    },
    /// Accept an invitation: sets your password (BONAFIDE_PASSWORD, or one line on
    /// standard input; 15 to 128 characters) and joins the organisation.
    Accept {
        /// The invitation token (`bfi_…`).
        token: String,
    },
    /// Invite someone into an organisation (your login; admin or owner).
    Invite {
        /// `org_…`.
        org: String,
        /// Their email.
        #[arg(long)]
        email: String,
        /// owner, admin, member or viewer.
        #[arg(long, default_value = "member")]
        role: String,
        #[command(flatten)]
        file: SessionFileArg,
    },
    /// List an organisation's members (your login).
    Members {
        /// `org_…`.
        org: String,
        #[command(flatten)]
        file: SessionFileArg,
    },
    /// Require (`on`) or stop requiring (`off`) a second factor of every member
    /// (owner, from a two-factor login).
    #[command(name = "require-2fa")]
    Require2fa {
        /// `org_…`.
        org: String,
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        file: SessionFileArg,
    },
    /// The organisation's security events: failed logins of its people, refused
    /// refresh-token reuse (admin or owner).
    SecurityEvents {
        /// `org_…`.
        org: String,
        /// Only events after this id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[command(flatten)]
        file: SessionFileArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum TotpCmd {
    /// Start enrolling an authenticator app: prints the secret and its otpauth://
    /// URI (for a QR code).
    Enroll {
        #[command(flatten)]
        file: SessionFileArg,
    },
    /// Confirm with the app's current code: prints 10 recovery codes, once. Log in
    /// again (with a code) for a two-factor session.
    Confirm {
        /// The app's 6-digit code.
        code: String,
        #[command(flatten)]
        file: SessionFileArg,
    },
    /// Turn it off: your password (BONAFIDE_PASSWORD or stdin) and a code.
    Disable {
        /// A current code of the app.
        #[arg(long, conflicts_with = "recovery_code")]
        totp: Option<String>,
        /// Or a recovery code.
        #[arg(long)]
        recovery_code: Option<String>,
        #[command(flatten)]
        file: SessionFileArg,
    },
}

#[derive(Debug, Args)]
pub struct SessionFileArg {
    /// Where the login is kept (default $XDG_STATE_HOME/bonafide/session.json or
    /// ~/.local/state/bonafide/session.json).
    #[arg(long, env = "BONAFIDE_SESSION_FILE")]
    pub session_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your email.
    #[arg(long)]
    pub email: String,
    /// The current code of your authenticator app, if you enrolled one.
    #[arg(long, conflicts_with = "recovery_code")]
    pub totp: Option<String>,
    /// Or one of your recovery codes (each works once).
    #[arg(long)]
    pub recovery_code: Option<String>,
    #[command(flatten)]
    pub file: SessionFileArg,
}

#[derive(Debug, Subcommand)]
pub enum SessionsCmd {
    /// Your live sessions, newest first.
    List {
        #[command(flatten)]
        file: SessionFileArg,
    },
    /// End one of your sessions (its tokens stop at once).
    Revoke {
        /// `ses_…`.
        id: String,
        #[command(flatten)]
        file: SessionFileArg,
    },
}

/// What the session file holds.
#[derive(Serialize, Deserialize)]
struct SessionFile {
    url: String,
    access_token: String,
    /// Unix seconds.
    access_expires_at: i64,
    refresh_token: String,
    session_id: String,
}

fn default_session_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("bonafide/session.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Failure::usage("no HOME: pass --session-file FILE"))?;
    Ok(PathBuf::from(home).join(".local/state/bonafide/session.json"))
}

fn session_path(arg: &SessionFileArg) -> Result<PathBuf> {
    match &arg.session_file {
        Some(p) => Ok(p.clone()),
        None => default_session_path(),
    }
}

/// Writes the session file atomically (temp file + rename), mode 0600.
fn save(path: &Path, file: &SessionFile) -> Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(file)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

fn load(path: &Path) -> Result<SessionFile> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Failure::usage(format!(
                "not logged in (no `{}`): run `bonafide login --email …` first",
                path.display()
            ))
        } else {
            anyhow!("cannot read `{}`: {e}", path.display())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|_| {
        Failure::coded(
            "FILE",
            format!(
                "`{}` is not a session file bonafide wrote: log in again",
                path.display()
            ),
        )
    })
}

/// The password: `BONAFIDE_PASSWORD`, else one line of standard input (not a
/// terminal: nothing would hide it as it is typed).
fn password() -> Result<String> {
    if let Ok(p) = std::env::var("BONAFIDE_PASSWORD") {
        return Ok(p);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::usage(
            "set BONAFIDE_PASSWORD, or pipe the password on standard input",
        ));
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let p = line.trim_end_matches(['\n', '\r']).to_owned();
    if p.is_empty() {
        return Err(Failure::usage(
            "no password on standard input (or set BONAFIDE_PASSWORD)",
        ));
    }
    Ok(p)
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn from_tokens(url: &str, v: &Value) -> Result<SessionFile> {
    let s = |k: &str| {
        v[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::coded("BAD_ANSWER", format!("the answer has no `{k}`")))
    };
    Ok(SessionFile {
        url: url.to_owned(),
        access_token: s("access_token")?,
        access_expires_at: now_s() + v["expires_in"].as_i64().unwrap_or(0),
        refresh_token: s("refresh_token")?,
        session_id: s("session_id")?,
    })
}

/// A client acting as the logged-in person: the file's access token, rotated first
/// when it has less than 30 s left.
pub(crate) async fn person_client(url: &str, arg: &SessionFileArg) -> Result<(Client, PathBuf)> {
    let path = session_path(arg)?;
    let mut file = load(&path)?;
    if file.url.trim_end_matches('/') != url.trim_end_matches('/') {
        return Err(Failure::usage(format!(
            "the login in `{}` is for {}, not {url}: log in there, or pass --url {}",
            path.display(),
            file.url,
            file.url
        )));
    }
    if file.access_expires_at - 30 <= now_s() {
        let anon = Client::new(url, None).map_err(explain)?;
        let v: Value = anon
            .post(
                "/v1/auth/refresh",
                &json!({"refresh_token": file.refresh_token}),
            )
            .await
            .map_err(explain)
            .context("the login has ended: run `bonafide login` again")?;
        file = from_tokens(url, &v)?;
        save(&path, &file)?;
    }
    Ok((
        Client::new(url, Some(file.access_token.clone())).map_err(explain)?,
        path,
    ))
}

fn check_org(org: &str) -> Result<&str> {
    bonafide_core::ids::OrgId::try_from(org).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(org)
}

pub async fn org(url: &str, cmd: OrgCmd, out: Out) -> Result<ExitCode> {
    match cmd {
        OrgCmd::Create { name, owner_email } => {
            let client = client(url, KeyKind::Admin)?;
            let v: Value = client
                .post(
                    "/v1/orgs",
                    &json!({"name": name, "owner_email": owner_email}),
                )
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                let inv = &v["invitation"];
                println!(
                    "organisation {} ({})",
                    v["org_id"].as_str().unwrap_or("-"),
                    v["name"].as_str().unwrap_or("-")
                );
                println!(
                    "invitation for {} (owner), valid until {}; shown once:",
                    inv["email"].as_str().unwrap_or("-"),
                    inv["expires_at"].as_str().unwrap_or("-")
                );
                println!("{}", inv["token"].as_str().unwrap_or("-"));
                println!(
                    "they accept it with: bonafide org accept TOKEN (password in BONAFIDE_PASSWORD or on stdin)"
                );
            }
        }
        OrgCmd::Accept { token } => {
            if !token.trim().starts_with("bfi_") {
                return Err(Failure::usage(
                    "an invitation token starts with `bfi_`: paste it whole",
                ));
            }
            let password = password()?;
            let anon = Client::new(url, None).map_err(explain)?;
            let v: Value = anon
                .post(
                    "/v1/invitations/accept",
                    &json!({"token": token.trim(), "password": password}),
                )
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "{} joined {} as {}; log in with: bonafide login --email {}",
                    v["email"].as_str().unwrap_or("-"),
                    v["org_id"].as_str().unwrap_or("-"),
                    v["role"].as_str().unwrap_or("-"),
                    v["email"].as_str().unwrap_or("-")
                );
            }
        }
        OrgCmd::Invite {
            org,
            email,
            role,
            file,
        } => {
            let org = check_org(&org)?;
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client
                .post(
                    &format!("/v1/orgs/{org}/invitations"),
                    &json!({"email": email, "role": role}),
                )
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "invitation for {} ({}), valid until {}; shown once:",
                    v["email"].as_str().unwrap_or("-"),
                    v["role"].as_str().unwrap_or("-"),
                    v["expires_at"].as_str().unwrap_or("-")
                );
                println!("{}", v["token"].as_str().unwrap_or("-"));
            }
        }
        OrgCmd::Members { org, file } => {
            let org = check_org(&org)?;
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client
                .get(&format!("/v1/orgs/{org}/members"))
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!("{:<30} {:<8} {:<32} joined", "person", "role", "email");
                for m in v["members"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "{:<30} {:<8} {:<32} {}",
                        m["person_id"].as_str().unwrap_or("-"),
                        m["role"].as_str().unwrap_or("-"),
                        m["email"].as_str().unwrap_or("-"),
                        m["joined_at"].as_str().unwrap_or("-")
                    );
                }
            }
        }
        OrgCmd::Require2fa { org, state, file } => {
            let org = check_org(&org)?;
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client
                .patch(
                    &format!("/v1/orgs/{org}"),
                    &json!({"require_2fa": state == "on"}),
                )
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "{}: two-factor authentication {}",
                    v["name"].as_str().unwrap_or("-"),
                    if v["require_2fa"] == true {
                        "required of every member"
                    } else {
                        "not required"
                    }
                );
            }
        }
        OrgCmd::SecurityEvents { org, after, file } => {
            let org = check_org(&org)?;
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client
                .get(&format!(
                    "/v1/orgs/{org}/security-events?after={after}&limit=1000"
                ))
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                for e in v["events"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "{:>6} {} {:<14} {:<30} {:<16} {}",
                        e["id"],
                        e["at"].as_str().unwrap_or("-"),
                        e["kind"].as_str().unwrap_or("-"),
                        e["person_id"].as_str().unwrap_or("-"),
                        e["ip"].as_str().unwrap_or("-"),
                        e["detail"].as_str().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn totp(url: &str, cmd: TotpCmd, out: Out) -> Result<ExitCode> {
    match cmd {
        TotpCmd::Enroll { file } => {
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client
                .post("/v1/auth/totp/enroll", &json!({}))
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!("secret: {}", v["secret"].as_str().unwrap_or("-"));
                println!("{}", v["otpauth_uri"].as_str().unwrap_or("-"));
                println!("then: bonafide totp confirm CODE (the app's current code)");
            }
        }
        TotpCmd::Confirm { code, file } => {
            if code.trim().len() != 6 || !code.trim().bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failure::usage("the code is the app's 6 digits"));
            }
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client
                .post("/v1/auth/totp/confirm", &json!({"code": code.trim()}))
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "two-factor authentication is on. Recovery codes (each works once; shown only now):"
                );
                for c in v["recovery_codes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!("  {}", c.as_str().unwrap_or("-"));
                }
            }
        }
        TotpCmd::Disable {
            totp,
            recovery_code,
            file,
        } => {
            if totp.is_none() && recovery_code.is_none() {
                return Err(Failure::usage("give --totp CODE or --recovery-code CODE"));
            }
            let password = password()?;
            let (client, _) = person_client(url, &file).await?;
            let mut body = json!({"password": password});
            if let Some(c) = totp {
                body["totp_code"] = json!(c);
            }
            if let Some(c) = recovery_code {
                body["recovery_code"] = json!(c);
            }
            client
                .post_no_content("/v1/auth/totp/disable", &body)
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&json!({"two_factor_enabled": false}));
            } else {
                println!("two-factor authentication is off");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn login(url: &str, args: LoginArgs, out: Out) -> Result<ExitCode> {
    let path = session_path(&args.file)?;
    let password = password()?;
    let mut body = json!({"email": args.email, "password": password});
    if let Some(code) = &args.totp {
        body["totp_code"] = json!(code);
    }
    if let Some(code) = &args.recovery_code {
        body["recovery_code"] = json!(code);
    }
    let anon = Client::new(url, None).map_err(explain)?;
    let v: Value = anon.post("/v1/auth/login", &body).await.map_err(explain)?;
    let file = from_tokens(url, &v)?;
    save(&path, &file)?;
    if out.json {
        // The tokens stay in the file; the answer without them.
        out.json_out(&json!({
            "session_id": file.session_id,
            "two_factor": v["two_factor"],
            "session_file": path.display().to_string(),
        }));
    } else {
        println!(
            "logged in as {} (session {}{}); the login is kept in {}",
            args.email,
            file.session_id,
            if v["two_factor"] == true {
                ", two-factor"
            } else {
                ""
            },
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sessions(url: &str, cmd: SessionsCmd, out: Out) -> Result<ExitCode> {
    match cmd {
        SessionsCmd::List { file } => {
            let (client, _) = person_client(url, &file).await?;
            let v: Value = client.get("/v1/auth/sessions").await.map_err(explain)?;
            if out.json {
                out.json_out(&v);
            } else {
                println!(
                    "{:<30} {:<12} {:<26} {:<26} ip",
                    "session", "client", "created", "last used"
                );
                for s in v["sessions"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    println!(
                        "{:<30} {:<12} {:<26} {:<26} {}{}",
                        s["session_id"].as_str().unwrap_or("-"),
                        s["client_id"].as_str().unwrap_or("-"),
                        s["created_at"].as_str().unwrap_or("-"),
                        s["last_used_at"].as_str().unwrap_or("-"),
                        s["ip"].as_str().unwrap_or("-"),
                        if s["current"] == true {
                            "  (this one)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
        SessionsCmd::Revoke { id, file } => {
            bonafide_core::ids::SessionId::try_from(id.as_str())
                .map_err(|e| Failure::usage(e.to_string()))?;
            let (client, _) = person_client(url, &file).await?;
            client
                .delete(&format!("/v1/auth/sessions/{id}"))
                .await
                .map_err(explain)?;
            if out.json {
                out.json_out(&json!({"revoked": id}));
            } else {
                println!("session {id} ended");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn logout(url: &str, file: SessionFileArg, out: Out) -> Result<ExitCode> {
    let (client, path) = person_client(url, &file).await?;
    client
        .post_empty("/v1/auth/logout")
        .await
        .map_err(explain)?;
    std::fs::remove_file(&path)
        .with_context(|| format!("logged out, but `{}` could not be removed", path.display()))?;
    if out.json {
        out.json_out(&json!({"logged_out": true}));
    } else {
        println!("logged out; {} removed", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
