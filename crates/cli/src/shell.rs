//! `bonafide completions SHELL` and `bonafide man`: generated from the clap definition
//! itself, so they cannot drift from the commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `bonafide.1` and one page per subcommand (`bonafide-agent-register.1`, …)
    /// into this directory (created if missing) instead of printing `bonafide.1`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints the completion script for `args.shell` to stdout.
pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> ExitCode {
    // Into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "bonafide", &mut script);
    crate::stdout::write_bytes(&script);
    ExitCode::SUCCESS
}

/// Prints the man page (roff), or writes every page into `--out DIR`.
pub fn man(args: &ManArgs, cmd: clap::Command) -> Result<ExitCode> {
    match &args.out {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .context("cannot render the man page")?;
            crate::stdout::write_bytes(&page);
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into `{}`", dir.display()))?;
            println!("{}", dir.join("bonafide.1").display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
