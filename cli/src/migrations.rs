//! Where a command gets its revision graph: an Alembic migrations directory or a manifest file.

use std::path::PathBuf;

use anyhow::Context;
use shiftguard_core::schema::manifest::Manifest;
use shiftguard_core::schema::scan::load_migrations;
use shiftguard_core::{PhaseSource, RevisionGraph};

/// `--migrations DIR` or `--manifest FILE`, exactly one.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// Alembic project directory (or its versions/ directory) to read revisions from.
    #[arg(long, value_name = "DIR")]
    pub migrations: Option<PathBuf>,
    /// Manifest written by `shiftguard manifest`, instead of the migrations directory.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
}

impl Source {
    pub fn load(&self) -> anyhow::Result<RevisionGraph> {
        match (&self.migrations, &self.manifest) {
            (Some(dir), _) => Ok(load_migrations(dir)?.graph),
            (None, Some(file)) => {
                let json = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read manifest {}", file.display()))?;
                Manifest::parse(&json).with_context(|| format!("manifest {}", file.display()))
            }
            (None, None) => anyhow::bail!("give --migrations DIR or --manifest FILE"),
        }
    }
}

/// Warnings a person should see about a graph: several heads, and phases that were assumed
/// rather than known.
pub fn print_warnings(graph: &RevisionGraph) {
    let heads = graph.heads();
    if heads.len() > 1 {
        let ids: Vec<&str> = heads
            .iter()
            .map(|&i| graph.revision(i).id.as_str())
            .collect();
        eprintln!(
            "warning: the migrations have {} heads ({}); `alembic upgrade head` refuses them, `alembic merge heads` joins them",
            ids.len(),
            ids.join(", ")
        );
    }
    for index in graph.topological() {
        let revision = graph.revision(index);
        if revision.phase_source == PhaseSource::Assumed {
            eprintln!(
                "warning: {}: revision {} has an operation whose phase cannot be inferred; assumed contract (declare shiftguard_phase to say otherwise)",
                revision.file.as_deref().unwrap_or("manifest"),
                revision.id
            );
        }
    }
}
