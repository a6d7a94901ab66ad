//! Loads an Alembic `versions/` directory into a validated [`RevisionGraph`].
//!
//! Which files count follows Alembic: `*.py` files directly in the directory, except
//! `__init__.py` and editor lock files (`.#…`); anything else is ignored, as Alembic ignores it.
//! Every problem in every file is reported, not only the first.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::alembic::{AlembicFileError, parse_revision_file};
use crate::graph::{GraphProblem, RevisionGraph};
use crate::phase::{PhaseError, decide};
use crate::revision::Revision;

/// A migrations directory could not be turned into a graph.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("migrations directory {path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is not a directory (pass the Alembic project or its versions/ directory)")]
    NotADirectory { path: PathBuf },
    #[error("cannot read migrations directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no revision files (*.py) in {path}")]
    Empty { path: PathBuf },
    /// One or more files or graph edges are wrong; each problem is one line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

/// One problem in a migrations directory.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    File { file: String, error: FileError },
    Graph(GraphProblem),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::File { file, error } => match error.line() {
                Some(line) => write!(f, "{file}:{line}: {error}"),
                None => write!(f, "{file}: {error}"),
            },
            Problem::Graph(problem) => write!(f, "{problem}"),
        }
    }
}

/// What is wrong with one revision file.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileError {
    #[error("cannot read file: {0}")]
    Read(String),
    #[error("file is not UTF-8 text")]
    NotUtf8,
    #[error(transparent)]
    Syntax(#[from] AlembicFileError),
    #[error("not an Alembic revision: it sets no `revision` variable")]
    NotARevision,
    #[error(
        "revision {revision} sets no `down_revision` (write `down_revision = None` for a base revision)"
    )]
    NoDownRevision { revision: String, line: u32 },
    #[error(transparent)]
    Phase(#[from] PhaseError),
}

impl FileError {
    fn line(&self) -> Option<u32> {
        match self {
            FileError::Syntax(error) => Some(error.line()),
            FileError::Phase(error) => Some(error.line()),
            FileError::NoDownRevision { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// A loaded migrations directory.
#[derive(Debug)]
pub struct Migrations {
    /// The directory the revision files were read from.
    pub versions_dir: PathBuf,
    pub graph: RevisionGraph,
}

/// Finds the versions directory for `path`: `path/versions` when it exists (an Alembic project),
/// otherwise `path` itself.
pub fn versions_dir(path: &Path) -> Result<PathBuf, LoadError> {
    if !path.exists() {
        return Err(LoadError::Missing {
            path: path.to_owned(),
        });
    }
    if !path.is_dir() {
        return Err(LoadError::NotADirectory {
            path: path.to_owned(),
        });
    }
    let nested = path.join("versions");
    Ok(if nested.is_dir() {
        nested
    } else {
        path.to_owned()
    })
}

/// Loads and validates the revisions under `path` (see [`versions_dir`]).
pub fn load_migrations(path: &Path) -> Result<Migrations, LoadError> {
    let dir = versions_dir(path)?;
    let io = |source| LoadError::Io {
        path: dir.clone(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_revision_file = name.ends_with(".py")
            && name != "__init__.py"
            && !name.starts_with(".#")
            && entry.file_type().map_err(io)?.is_file();
        if is_revision_file {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(LoadError::Empty { path: dir });
    }
    names.sort();

    let mut revisions = Vec::with_capacity(names.len());
    let mut problems = Vec::new();
    for name in names {
        let source = std::fs::read(dir.join(&name))
            .map_err(|e| FileError::Read(e.to_string()))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| FileError::NotUtf8));
        match source.and_then(|source| revision_from_source(&source, &name)) {
            Ok(revision) => revisions.push(revision),
            Err(error) => problems.push(Problem::File { file: name, error }),
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }
    let graph = RevisionGraph::new(revisions).map_err(|error| {
        LoadError::Invalid(error.problems.into_iter().map(Problem::Graph).collect())
    })?;
    Ok(Migrations {
        versions_dir: dir,
        graph,
    })
}

/// Turns the source of one revision file into a [`Revision`] (no graph checks yet).
pub fn revision_from_source(source: &str, file: &str) -> Result<Revision, FileError> {
    let parsed = parse_revision_file(source)?;
    let revision = parsed.revision.as_ref().ok_or(FileError::NotARevision)?;
    let parents = match &parsed.down_revision {
        Some(down) => down.value.clone(),
        None => {
            return Err(FileError::NoDownRevision {
                revision: revision.value.clone(),
                line: revision.line,
            });
        }
    };
    let (phase, phase_source) = decide(&parsed)?;
    Ok(Revision {
        id: revision.value.clone(),
        parents,
        depends_on: parsed.depends_on,
        branch_labels: parsed.branch_labels,
        phase,
        phase_source,
        requires_app_at_least: parsed.requires_app_at_least.map(|r| r.value),
        message: parsed.message,
        file: Some(file.to_owned()),
    })
}
