//! `bonafide usage` (an organisation's requests by day, endpoint and key, and its
//! monthly verification quota) and `bonafide plan get|set` (the registry admin's plan
//! assignment). Usage is read with the organisation's own API key (BONAFIDE_API_KEY),
//! the registry admin's key, or an organisation admin's login.

use std::process::ExitCode;

use anyhow::Result;
use bonafide_core::apikey::KeyKind;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::accounts::{SessionFileArg, person_client};
use crate::failure::Failure;
use crate::output::Out;
use crate::{client, explain};

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// `org_…`: needed with a login or the admin key; with the organisation's own key
    /// it is that organisation.
    #[arg(long)]
    pub org: Option<String>,
    /// First day, YYYY-MM-DD (UTC; default the first of this month).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC, included; default today).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub file: SessionFileArg,
}

#[derive(Debug, Subcommand)]
pub enum PlanCmd {
    /// An organisation's plan and every plan the registry knows (admin key).
    Get {
        /// `org_…`.
        org: String,
    },
    /// Put an organisation on a plan (admin key; audited). `default` puts it back on
    /// the registry's default plan.
    Set {
        /// `org_…`.
        org: String,
        /// A plan the registry runs with (`serve --plan NAME=LIMIT`), or `default`.
        plan: String,
    },
}

fn check_org(org: &str) -> Result<&str> {
    bonafide_core::ids::OrgId::try_from(org).map_err(|e| Failure::usage(e.to_string()))?;
    Ok(org)
}

fn check_day<'a>(day: &'a str, what: &str) -> Result<&'a str> {
    let ok = day.len() == 10 && day.parse::<jiff::civil::Date>().is_ok();
    if !ok {
        return Err(Failure::usage(format!(
            "--{what} must be a day, YYYY-MM-DD"
        )));
    }
    Ok(day)
}

pub async fn usage(url: &str, args: UsageArgs, out: Out) -> Result<ExitCode> {
    let mut query = Vec::new();
    if let Some(org) = &args.org {
        query.push(format!("org={}", check_org(org)?));
    }
    if let Some(from) = &args.from {
        query.push(format!("from={}", check_day(from, "from")?));
    }
    if let Some(to) = &args.to {
        query.push(format!("to={}", check_day(to, "to")?));
    }
    let path = if query.is_empty() {
        "/v1/usage".to_owned()
    } else {
        format!("/v1/usage?{}", query.join("&"))
    };
    // A key when one is set (the organisation's, or the admin's), else the login.
    let client = match std::env::var("BONAFIDE_API_KEY") {
        Ok(key) => {
            bonafide_client::Client::new(url, Some(key.trim().to_owned())).map_err(explain)?
        }
        Err(_) => person_client(url, &args.file).await?.0,
    };
    let v: Value = client.get(&path).await.map_err(explain)?;
    out.usage(&v);
    Ok(ExitCode::SUCCESS)
}

pub async fn plan(url: &str, cmd: PlanCmd, out: Out) -> Result<ExitCode> {
    let client = client(url, KeyKind::Admin)?;
    let v: Value = match cmd {
        PlanCmd::Get { org } => client
            .get(&format!("/v1/admin/orgs/{}/plan", check_org(&org)?))
            .await
            .map_err(explain)?,
        PlanCmd::Set { org, plan } => {
            let plan = (plan != "default").then_some(plan);
            client
                .put(
                    &format!("/v1/admin/orgs/{}/plan", check_org(&org)?),
                    &json!({ "plan": plan }),
                )
                .await
                .map_err(explain)?
        }
    };
    if out.json {
        out.json_out(&v);
    } else {
        println!(
            "{} is on plan {} ({} verifications a month)",
            v["org_id"].as_str().unwrap_or("-"),
            v["plan"].as_str().unwrap_or("-"),
            v["limit"]
        );
        if let Some(plans) = v["plans"].as_object() {
            let all: Vec<String> = plans.iter().map(|(k, n)| format!("{k}={n}")).collect();
            println!("plans: {}", all.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl Out {
    fn usage(&self, v: &Value) {
        if self.json {
            return self.json_out(v);
        }
        let q = &v["quota"];
        println!(
            "{}  {} to {}: {} requests",
            v["org_id"].as_str().unwrap_or("-"),
            v["from"].as_str().unwrap_or("-"),
            v["to"].as_str().unwrap_or("-"),
            v["total"]
        );
        if q["enabled"] == false {
            println!("quota: off (serve --quotas off)");
        } else {
            println!(
                "quota: {} of {} verifications in {} (plan {}); resets {}",
                q["used"],
                q["limit"],
                q["month"].as_str().unwrap_or("-"),
                q["plan"].as_str().unwrap_or("-"),
                q["reset"].as_str().unwrap_or("-")
            );
        }
        let rows = v["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
        if rows.is_empty() {
            println!("no requests with the organisation's keys in this range");
            return;
        }
        println!();
        println!(
            "{:<10}  {:<44}  {:<40}  {:>8}",
            "day", "key", "endpoint", "requests"
        );
        for r in rows {
            println!(
                "{:<10}  {:<44}  {:<40}  {:>8}",
                r["day"].as_str().unwrap_or("-"),
                r["key"].as_str().unwrap_or("-"),
                r["route"].as_str().unwrap_or("-"),
                r["count"]
            );
        }
        for (title, member) in [
            ("endpoint", "by_endpoint"),
            ("key", "by_key"),
            ("day", "by_day"),
        ] {
            if let Some(m) = v[member].as_object() {
                println!();
                println!("{:<44}  {:>8}", format!("by {title}"), "requests");
                for (k, n) in m {
                    println!("{k:<44}  {n:>8}");
                }
            }
        }
    }
}
