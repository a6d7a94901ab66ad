//! Loads an Alembic project's revision files into a validated [`RevisionGraph`].
//!
//! The path may be the project directory (holding `alembic.ini`, whose `script_location` and
//! `version_locations` are followed), the script directory (holding `versions/`), or a versions
//! directory itself. Which files count follows Alembic: `*.py` files directly in a versions
//! directory, except `__init__.py` and editor lock files (`.#…`); anything else is ignored, as
//! Alembic ignores it. Every problem in every file is reported, not only the first.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::schema::alembic::{AlembicFileError, RevisionFile, parse_revision_file};
use crate::schema::graph::{GraphProblem, RevisionGraph};
use crate::schema::phase::{PhaseError, decide};
use crate::schema::revision::{Phase, PhaseSource, Revision};

/// A migrations directory could not be turned into a graph.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("migrations directory {path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path} is not a directory (pass the Alembic project or its versions/ directory)")]
    NotADirectory { path: PathBuf },
    #[error("cannot read migrations directory {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} has no script_location (configuration in pyproject.toml is not read yet): pass the versions directory instead"
    )]
    NoScriptLocation { path: PathBuf },
    #[error("no revision files (*.py) in {}", display_paths(paths))]
    Empty { paths: Vec<PathBuf> },
    /// One or more files or graph edges are wrong; each problem is one line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
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
    /// The directories the revision files were read from.
    pub versions_dirs: Vec<PathBuf>,
    pub graph: RevisionGraph,
}

/// Finds the versions directories for `path`: from `alembic.ini` when `path` holds one, else
/// `path/versions` when it exists, else `path` itself.
pub fn versions_dirs(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
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
    let ini = path.join("alembic.ini");
    if ini.is_file() {
        let text = std::fs::read_to_string(&ini).map_err(|source| LoadError::Io {
            path: ini.clone(),
            source,
        })?;
        let here = std::path::absolute(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        return locations_from_ini(&text, &here).ok_or(LoadError::NoScriptLocation { path: ini });
    }
    let nested = path.join("versions");
    Ok(vec![if nested.is_dir() {
        nested
    } else {
        path.to_owned()
    }])
}

/// `version_locations` when set, else `script_location/versions`, from the `[alembic]` section.
/// `%(here)s` is the ini file's directory (absolute), and so is the base of relative paths.
/// `None` when the file has no `script_location`.
fn locations_from_ini(text: &str, here: &Path) -> Option<Vec<PathBuf>> {
    // configparser: `key = value`, where indented lines continue the previous value.
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut section = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            if section == "alembic"
                && let Some((_, value)) = entries.last_mut()
            {
                value.push('\n');
                value.push_str(line);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        if section == "alembic"
            && let Some((key, value)) = line.split_once('=')
        {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let (mut script_location, mut version_locations, mut separator) = (None, None, None);
    for (key, value) in entries {
        let value = value.replace("%(here)s", &here.to_string_lossy());
        match key.as_str() {
            "script_location" => script_location = Some(value),
            "version_locations" => version_locations = Some(value),
            "path_separator" | "version_path_separator" => separator = Some(value),
            _ => {}
        }
    }
    let resolve = |location: &str| here.join(location);
    let script_location = script_location?;
    Some(match version_locations {
        Some(list) => {
            let parts: Vec<&str> = match separator.as_deref() {
                Some(";") => list.split(';').collect(),
                Some("space") => list.split(' ').collect(),
                Some("newline") => list.lines().collect(),
                // `os` and `:` on Unix; with no separator configured Alembic splits on spaces
                // and commas.
                Some("os" | ":") => list.split(':').collect(),
                _ => list.split([' ', ',', '\n']).collect(),
            };
            parts
                .into_iter()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(resolve)
                .collect()
        }
        None => vec![resolve(&script_location).join("versions")],
    })
}

/// Loads and validates the revisions under `path` (see [`versions_dirs`]).
pub fn load_migrations(path: &Path) -> Result<Migrations, LoadError> {
    let project = load(path, false)?;
    Ok(Migrations {
        versions_dirs: project.versions_dirs,
        graph: project.graph,
    })
}

/// A migrations directory read for the lint: the graph and, per revision, its parsed file.
#[derive(Debug)]
pub struct Project {
    pub versions_dirs: Vec<PathBuf>,
    pub graph: RevisionGraph,
    /// Indexed like the graph's revisions.
    pub files: Vec<ProjectFile>,
}

/// One revision file of a [`Project`].
#[derive(Debug)]
pub struct ProjectFile {
    pub path: PathBuf,
    pub parsed: RevisionFile,
    /// A declaration the operations contradict; the revision then counts as contract.
    pub phase_error: Option<PhaseError>,
}

/// Like [`load_migrations`], but a phase declaration that contradicts the operations is kept as a
/// finding for the lint (the revision counts as contract) instead of failing the load.
pub fn load_project(path: &Path) -> Result<Project, LoadError> {
    load(path, true)
}

fn load(path: &Path, keep_phase_errors: bool) -> Result<Project, LoadError> {
    let dirs = versions_dirs(path)?;
    let mut files = Vec::new();
    for dir in &dirs {
        let io = |source| LoadError::Io {
            path: dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
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
        names.sort();
        files.extend(names.into_iter().map(|name| (dir.join(&name), name)));
    }
    if files.is_empty() {
        return Err(LoadError::Empty { paths: dirs });
    }

    let mut revisions = Vec::with_capacity(files.len());
    let mut project_files = Vec::with_capacity(files.len());
    let mut problems = Vec::new();
    for (path, name) in files {
        let source = std::fs::read(&path)
            .map_err(|e| FileError::Read(e.to_string()))
            .and_then(|bytes| String::from_utf8(bytes).map_err(|_| FileError::NotUtf8));
        match source.and_then(|source| read_revision(&source, &name, keep_phase_errors)) {
            Ok((revision, parsed, phase_error)) => {
                revisions.push(revision);
                project_files.push(ProjectFile {
                    path,
                    parsed,
                    phase_error,
                });
            }
            Err(error) => problems.push(Problem::File { file: name, error }),
        }
    }
    if !problems.is_empty() {
        return Err(LoadError::Invalid(problems));
    }
    let graph = RevisionGraph::new(revisions).map_err(|error| {
        LoadError::Invalid(error.problems.into_iter().map(Problem::Graph).collect())
    })?;
    Ok(Project {
        versions_dirs: dirs,
        graph,
        files: project_files,
    })
}

/// Turns the source of one revision file into a [`Revision`] (no graph checks yet).
pub fn revision_from_source(source: &str, file: &str) -> Result<Revision, FileError> {
    read_revision(source, file, false).map(|(revision, _, _)| revision)
}

fn read_revision(
    source: &str,
    file: &str,
    keep_phase_errors: bool,
) -> Result<(Revision, RevisionFile, Option<PhaseError>), FileError> {
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
    let (phase, phase_source, phase_error) = match decide(&parsed) {
        Ok((phase, source)) => (phase, source, None),
        Err(error) if keep_phase_errors => (Phase::Contract, PhaseSource::Assumed, Some(error)),
        Err(error) => return Err(error.into()),
    };
    let revision = Revision {
        id: revision.value.clone(),
        parents,
        depends_on: parsed.depends_on.clone(),
        branch_labels: parsed.branch_labels.clone(),
        phase,
        phase_source,
        requires_app_at_least: parsed
            .requires_app_at_least
            .as_ref()
            .map(|r| r.value.clone()),
        message: parsed.message.clone(),
        file: Some(file.to_owned()),
    };
    Ok((revision, parsed, phase_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_locations() {
        let here = Path::new("/p");
        let cases: &[(&str, &[&str])] = &[
            (
                "[alembic]\nscript_location = %(here)s/migrations\n",
                &["/p/migrations/versions"],
            ),
            (
                "[alembic]\nscript_location = alembic\n",
                &["/p/alembic/versions"],
            ),
            (
                "[alembic]\nscript_location = a\nversion_locations =\n    %(here)s/v1\n    v2\npath_separator = newline\n",
                &["/p/v1", "/p/v2"],
            ),
            (
                "[alembic]\nscript_location = a\nversion_locations = %(here)s/v1:%(here)s/v2\npath_separator = os\n",
                &["/p/v1", "/p/v2"],
            ),
            (
                "[alembic]\nscript_location = a\nversion_locations = v1 v2\n# path_separator = os\n",
                &["/p/v1", "/p/v2"],
            ),
        ];
        for (ini, expected) in cases {
            let found = locations_from_ini(ini, here).expect("script_location");
            let expected: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
            assert_eq!(found, expected, "{ini}");
        }
        assert_eq!(
            locations_from_ini("[loggers]\nscript_location = x\n", here),
            None
        );
    }
}
