//! `shiftguard`: the operator CLI. Parses arguments, runs one command, maps its outcome to an
//! exit code. Decisions live in `shiftguard-core`; I/O in the adapter crates.

mod backfill;
mod check;
mod gate;
mod hold;
mod lab;
mod lint;
mod manifest;
mod markdown;
mod migrate;
mod migrations;
mod process;
mod rehearse;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes shared by every command, so pipelines can branch on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 0: everything asked about is safe.
    Safe,
    /// 1: shiftguard decided, and the answer is "not safe" (for `backfill run`: it failed).
    NotSafe,
    /// 3: a gate had nothing to judge on (too few invocations, a check without a value).
    Inconclusive,
    /// 75 (EX_TEMPFAIL): another runner holds the backfill; try again later.
    Busy,
}

/// `0.1.0 (3f2a9c1d0b7e)`: the version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("SHIFTGUARD_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "shiftguard",
    version = VERSION,
    about = "Keeps a shared database safe while Lambda traffic shifts between app versions",
    long_about = "Keeps a shared database safe while Lambda traffic shifts between app versions.\n\n\
        Exit codes: 0 safe, 1 not safe (reasons printed), 2 could not decide (bad input, \
        unreachable database, unknown revision), 3 inconclusive (gates: nothing to judge on)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Manifest(manifest::Args),
    Lint(lint::Args),
    Lab(lab::Args),
    Rehearse(rehearse::Args),
    Migrate(migrate::Args),
    Check(check::Args),
    Backfill(backfill::Args),
    Gate(gate::Args),
    Status(status::Args),
    Hold(hold::HoldArgs),
    Release(hold::ReleaseArgs),
}

fn main() -> ExitCode {
    // A bug must still end as "could not decide" (2) with one line, never as a pass.
    std::panic::set_hook(Box::new(|info| {
        let message = shiftguard_core::release::error::panic_text(info.payload());
        let location = info
            .location()
            .map(|l| format!(" at {l}"))
            .unwrap_or_default();
        eprintln!("error: internal error{location}: {message}");
        std::process::exit(2);
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Manifest(args) => manifest::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Rehearse(args) => rehearse::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Check(args) => check::run(args),
        Command::Backfill(args) => backfill::run(args),
        Command::Gate(args) => gate::run(args),
        Command::Status(args) => status::run(args),
        Command::Hold(args) => hold::hold(args),
        Command::Release(args) => hold::release(args),
    };
    match result {
        Ok(Outcome::Safe) => ExitCode::SUCCESS,
        Ok(Outcome::NotSafe) => ExitCode::from(1),
        Ok(Outcome::Inconclusive) => ExitCode::from(3),
        Ok(Outcome::Busy) => ExitCode::from(75),
        Err(error) => {
            for line in error_lines(&error) {
                eprintln!("error: {line}");
            }
            ExitCode::from(2)
        }
    }
}

/// Reads and validates a configuration file (`shiftguard.toml`).
pub fn read_config(
    path: &std::path::Path,
) -> anyhow::Result<shiftguard_core::config::ProjectConfig> {
    Ok(shiftguard_core::config::ProjectConfig::read(path)?)
}

/// One line per problem: a migrations directory with three bad files gives three lines.
fn error_lines(error: &anyhow::Error) -> Vec<String> {
    use shiftguard_core::schema::scan::LoadError;
    match error.downcast_ref::<LoadError>() {
        Some(LoadError::Invalid(problems)) => problems.iter().map(ToString::to_string).collect(),
        _ => vec![format!("{error:#}")],
    }
}
