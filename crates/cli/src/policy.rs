//! Consent-policy files: `bonafide policy lint` and the `--policy FILE` of
//! `agent register`.
//!
//! A policy (`pol.v0.2`) is judged by `bonafide_core::policy`, the code the registry
//! runs: `policy lint` runs it here on the file's bytes exactly as written (duplicate
//! members, size and syntax included), with no registry and no key, and gives the
//! answer of `POST /v1/policies/lint`; `agent register --policy` must embed the policy in a JSON
//! body, so it refuses locally (exit 2, before any request) a file that is not one
//! JSON value, that repeats a member name (serde_json would keep the last one, and so
//! does the registry's request parser: it would register a policy other than the one
//! in the file, which lint refuses), or that nests deeper than a policy may.
//!
//! Exit codes of `policy lint`: 0 the registry would accept the policy, 1 it would
//! not (every problem is printed with its JSON path), 2 anything else (an unreadable
//! file).

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bonafide_core::json::{self, JsonLimits};
use bonafide_core::policy::{MAX_POLICY_BYTES, MAX_POLICY_DEPTH};
use clap::Args;
use serde_json::Value;

use crate::output::Out;

/// Largest policy file read, bytes: four times what a policy may be
/// ([`MAX_POLICY_BYTES`]), room for indentation, while a wrong file (a log, an
/// image) is refused before it is read whole.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// The nesting `POST /v1/policies/lint` and tokens accept ([`MAX_POLICY_DEPTH`]).
/// Checked here because registration does not check it itself: a deeper policy
/// (in `meta`) is accepted in the request, then refused when the token is minted,
/// and the caller gets a bare HTTP 500.
const LOCAL_JSON_LIMITS: JsonLimits = JsonLimits {
    max_depth: MAX_POLICY_DEPTH,
};

#[derive(Debug, Args)]
pub struct LintArgs {
    /// The policy: a JSON file (`pol.v0.2`); `-` reads stdin.
    pub file: String,
}

/// `bonafide policy lint FILE`: the registry's own check (core's `Policy::lint`), run
/// here; no registry, no key.
pub fn lint(args: LintArgs, out: Out) -> Result<ExitCode> {
    let bytes = read(&args.file)?;
    let answer = serde_json::to_value(bonafide_server::routes::policies::lint_result(&bytes))
        .context("cannot show the lint result")?;
    out.policy_linted(&answer);
    Ok(if answer["valid"] == true {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The policy of `agent register --policy FILE`, as a JSON value to send.
pub fn read_json(arg: &str) -> Result<Value> {
    let bytes = read(arg)?;
    let name = display(arg);
    // serde_json first: its syntax errors say where (line and column).
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("the policy file {name} is not valid JSON: {e}"))?;
    json::check(&bytes, LOCAL_JSON_LIMITS)
        .map_err(|e| anyhow!("the policy file {name} is not valid JSON: {e}"))?;
    Ok(value)
}

/// `` `path` `` or `stdin`, for messages.
fn display(arg: &str) -> String {
    if arg == "-" {
        "stdin".to_owned()
    } else {
        format!("`{arg}`")
    }
}

/// The bytes of a policy file, or of stdin for `-`, at most [`MAX_FILE_BYTES`].
fn read(arg: &str) -> Result<Vec<u8>> {
    let name = display(arg);
    let too_large = || {
        anyhow!(
            "the policy file {name} is over {MAX_FILE_BYTES} bytes (a policy is at most {MAX_POLICY_BYTES})"
        )
    };
    let mut bytes = Vec::new();
    if arg == "-" {
        std::io::stdin()
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .context("cannot read the policy from stdin")?;
    } else {
        let path = Path::new(arg);
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot read the policy file {name}"))?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot read the policy file {name}"))?;
        if meta.is_dir() {
            bail!("the policy file {name} is a directory");
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_large());
        }
        // Bounded again while reading: the file may grow, or be a pipe.
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read the policy file {name}"))?;
    }
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    if bytes.trim_ascii().is_empty() {
        bail!("the policy file {name} is empty");
    }
    Ok(bytes)
}
