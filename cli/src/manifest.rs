//! `shiftguard manifest`: the revision graph with phases as JSON.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use shiftguard_core::schema::manifest::Manifest;

use crate::Outcome;
use crate::migrations::{Source, print_warnings};

/// Print the revision graph with phases as JSON (the manifest the hooks ship with).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shiftguard manifest --migrations infra/example/migrations\n  \
    shiftguard manifest --migrations alembic --output build/manifest.json\n\n\
    The schema is documented in README.md (\"Manifest format\"). Exit 0 when the migrations \
    form a valid graph, 2 otherwise (every problem is printed, one per line).")]
pub struct Args {
    #[command(flatten)]
    source: Source,
    /// Write the manifest to FILE instead of standard output (only when it is valid).
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let graph = args.source.load()?;
    print_warnings(&graph);
    let json = Manifest::from_graph(&graph).to_json();
    match &args.output {
        Some(path) => write_atomically(path, &json)
            .with_context(|| format!("cannot write manifest {}", path.display()))?,
        None => std::io::stdout().write_all(json.as_bytes())?,
    }
    Ok(Outcome::Safe)
}

/// Writes through a temporary file in the same directory, so a reader never sees half a file.
fn write_atomically(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path)
}
