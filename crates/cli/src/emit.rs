//! `--quiet` and `--output env`: the forms of a command's answer that a script takes
//! without `jq`. `--quiet` prints the one value a command exists to give (an API key,
//! a token); `--output env` prints `NAME='value'` lines for `eval "$(…)"`.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use serde_json::Value;

/// What to print instead of the text for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Form {
    /// The text for people (default).
    Text,
    /// The API's JSON (as --json).
    Json,
    /// `NAME='value'` lines, for `eval "$(bonafide …)"`.
    Env,
}

#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Print only the main value (the API key, the token), for `$(…)`.
    #[arg(long, short = 'q', conflicts_with = "output")]
    pub quiet: bool,
    /// text, json (as --json) or env (`NAME='value'` lines for `eval "$(…)"`).
    #[arg(long, value_enum)]
    pub output: Option<Form>,
}

impl EmitArgs {
    /// Whether the caller prints its usual text or JSON (`--output json` is `--json`).
    /// Refuses `--quiet` or `--output env` together with `--json` (a global flag,
    /// which clap's `conflicts_with` does not see before the subcommand).
    pub fn usual(&self, json: bool) -> Result<Option<bool>> {
        if json && (self.quiet || self.output == Some(Form::Env)) {
            bail!("--json goes with neither --quiet nor --output env: choose one form");
        }
        Ok(match (self.quiet, self.output) {
            (true, _) | (false, Some(Form::Env)) => None,
            (false, Some(Form::Json)) => Some(true),
            (false, Some(Form::Text)) => Some(json),
            (false, None) => Some(json),
        })
    }

    /// Prints the quiet or env form of `answer`: `main` is the member `--quiet`
    /// prints; `vars` are (variable name, member) pairs for `--output env`.
    pub fn emit(&self, answer: &Value, main: &str, vars: &[(&str, &str)]) -> Result<()> {
        if self.quiet {
            let Some(v) = answer[main].as_str() else {
                bail!("the registry's answer has no `{main}`");
            };
            println!("{v}");
            return Ok(());
        }
        for (name, member) in vars {
            match answer[*member].as_str() {
                Some(v) => println!("{name}={}", quote(v)),
                // Never leave an earlier run's value in place for `eval`.
                None => println!("unset {name}"),
            }
        }
        Ok(())
    }
}

/// A POSIX shell single-quoted word: `'` becomes `'\''`.
fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_the_shell() {
        assert_eq!(quote("bfk_iss_abc"), "'bfk_iss_abc'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn json_with_quiet_or_env_is_refused() {
        let a = EmitArgs {
            quiet: true,
            output: None,
        };
        assert!(a.usual(true).is_err());
        assert_eq!(a.usual(false).ok(), Some(None));
        let e = EmitArgs {
            quiet: false,
            output: Some(Form::Env),
        };
        assert!(e.usual(true).is_err());
        let j = EmitArgs {
            quiet: false,
            output: Some(Form::Json),
        };
        assert_eq!(j.usual(false).ok(), Some(Some(true)));
    }
}
