//! Where a command gets its revision graph: an Alembic migrations directory or a manifest file.

use std::io::Read;
use std::path::{Path, PathBuf};

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
                let json = read_manifest(file)?;
                Manifest::parse(&json).with_context(|| format!("manifest {}", file.display()))
            }
            (None, None) => anyhow::bail!("give --migrations DIR or --manifest FILE"),
        }
    }
}

/// The largest manifest read: a real one is a few hundred KiB, and a device or a runaway file
/// must not hang the command or fill its memory.
const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// A manifest file's text: a regular file of at most [`MAX_MANIFEST_BYTES`].
fn read_manifest(file: &Path) -> anyhow::Result<String> {
    let shown = file.display();
    let metadata =
        std::fs::metadata(file).with_context(|| format!("cannot read manifest {shown}"))?;
    if !metadata.is_file() {
        anyhow::bail!("manifest {shown} is not a regular file");
    }
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read manifest {shown}"))?;
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        anyhow::bail!("manifest {shown} is larger than 64 MiB: not a shiftguard manifest");
    }
    Ok(text)
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
