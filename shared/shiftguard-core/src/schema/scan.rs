//! Loads an Alembic project's revision files into a validated [`RevisionGraph`].
//!
//! The path may be the project directory, the script directory (holding `versions/`), or a
//! versions directory itself. A project directory holds `alembic.ini`, or a `pyproject.toml` with
//! a `[tool.alembic]` table (Alembic 1.16+), or both; a `pyproject.toml` without that table is
//! ignored. As in Alembic, each option is taken from the ini's `[alembic]` section, else from
//! `[tool.alembic]`. The options followed are `script_location`, `version_locations` (in the ini
//! a string split on `path_separator`, in TOML a list of strings; when unset,
//! `script_location/versions`) and `recursive_version_locations` (in the ini the string `true`, in
//! TOML a boolean). `%(here)s` is the project directory (absolute), which is also the base of
//! relative paths. A `pyproject.toml` that is not TOML, or whose options have the wrong type, is
//! an error.
//!
//! Which files count follows Alembic: `*.py` files directly in a versions directory, or, with
//! `recursive_version_locations`, also in all its subdirectories (but `__pycache__`), except
//! `__init__.py` and editor lock files (`.#…`); anything else is ignored, as Alembic ignores it. A
//! file in a subdirectory is named by its path relative to the versions directory
//! (`2024/abc_add.py`). Every problem in every file is reported, not only the first.

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
    /// Neither alembic.ini nor pyproject.toml sets `script_location`; `path` is the project.
    #[error(
        "{path}: no script_location in alembic.ini's [alembic] or pyproject.toml's [tool.alembic]: pass the versions directory instead"
    )]
    NoScriptLocation { path: PathBuf },
    /// pyproject.toml is not TOML, or its `[tool.alembic]` holds a value of the wrong type.
    #[error("{path}: {problem}")]
    Pyproject { path: PathBuf, problem: String },
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

/// Finds the versions directories for `path` (see the module documentation).
pub fn versions_dirs(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    layout(path).map(|layout| layout.dirs)
}

/// Where the revision files under a path are.
#[derive(Debug)]
struct Layout {
    dirs: Vec<PathBuf>,
    /// `recursive_version_locations`: subdirectories of `dirs` count too.
    recursive: bool,
}

/// The configured locations when `path` holds an Alembic configuration, else `path/versions`
/// when it exists, else `path` itself.
fn layout(path: &Path) -> Result<Layout, LoadError> {
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
    let here = std::path::absolute(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Some(options) = project_options(path, &here.to_string_lossy())? {
        let recursive = options.recursive.unwrap_or(false);
        let dirs = options
            .locations(&here)
            .ok_or_else(|| LoadError::NoScriptLocation {
                path: path.to_owned(),
            })?;
        return Ok(Layout { dirs, recursive });
    }
    let nested = path.join("versions");
    let dir = if nested.is_dir() {
        nested
    } else {
        path.to_owned()
    };
    Ok(Layout {
        dirs: vec![dir],
        recursive: false,
    })
}

/// The options shiftguard follows, as one configuration file sets them (`None`: not set there).
/// `%(here)s` is already replaced.
#[derive(Debug, Default)]
struct Options {
    script_location: Option<String>,
    version_locations: Option<Vec<String>>,
    recursive: Option<bool>,
}

impl Options {
    /// Each option from `self` when set, else from `fallback` (Alembic: the ini, then the TOML).
    fn fallback_to(self, fallback: Options) -> Options {
        Options {
            script_location: self.script_location.or(fallback.script_location),
            version_locations: self.version_locations.or(fallback.version_locations),
            recursive: self.recursive.or(fallback.recursive),
        }
    }

    /// `version_locations` when set, else `script_location/versions`, relative to `here`.
    /// `None` without `script_location`, which Alembic requires.
    fn locations(self, here: &Path) -> Option<Vec<PathBuf>> {
        let script_location = self.script_location?;
        Some(match self.version_locations {
            Some(list) => list.iter().map(|location| here.join(location)).collect(),
            None => vec![here.join(script_location).join("versions")],
        })
    }
}

/// The options of the project in directory `path` (whose absolute form is `here`), from
/// alembic.ini, then pyproject.toml's `[tool.alembic]`; `None` when neither configures Alembic.
fn project_options(path: &Path, here: &str) -> Result<Option<Options>, LoadError> {
    let ini = read_if_file(&path.join("alembic.ini"))?.map(|text| ini_options(&text, here));
    let pyproject = path.join("pyproject.toml");
    let toml = match read_if_file(&pyproject)? {
        Some(text) => toml_options(&text, &pyproject, here)?,
        None => None,
    };
    Ok(match (ini, toml) {
        (Some(ini), Some(toml)) => Some(ini.fallback_to(toml)),
        (ini, toml) => ini.or(toml),
    })
}

/// The text of `file`, or `None` when there is no such file.
fn read_if_file(file: &Path) -> Result<Option<String>, LoadError> {
    if !file.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(file)
        .map(Some)
        .map_err(|source| LoadError::Io {
            path: file.to_owned(),
            source,
        })
}

/// The options in the `[alembic]` section of alembic.ini `text`; `here` replaces `%(here)s`.
fn ini_options(text: &str, here: &str) -> Options {
    let mut options = Options::default();
    let (mut version_locations, mut separator) = (None, None);
    for (key, value) in ini_section(text, "alembic") {
        let value = value.replace("%(here)s", here);
        match key.as_str() {
            "script_location" => options.script_location = Some(value),
            "version_locations" => version_locations = Some(value),
            // configparser's value, compared as Alembic does.
            "recursive_version_locations" => options.recursive = Some(value == "true"),
            "path_separator" | "version_path_separator" => separator = Some(value),
            _ => {}
        }
    }
    // Alembic falls back (to the TOML, then to script_location) when the list is empty.
    options.version_locations = version_locations
        .filter(|list| !list.is_empty())
        .map(|list| split_locations(&list, separator.as_deref()));
    options
}

/// The `(key, value)` entries of `section`, as configparser reads them: `key = value`, where
/// indented lines continue the previous value.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut current = "";
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            if current == section
                && let Some((_, value)) = entries.last_mut()
            {
                value.push('\n');
                value.push_str(line);
            }
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name;
            continue;
        }
        if current == section
            && let Some((key, value)) = line.split_once('=')
        {
            entries.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    entries
}

/// An ini `version_locations` split as Alembic splits it for `path_separator`.
fn split_locations(list: &str, separator: Option<&str>) -> Vec<String> {
    let parts: Vec<&str> = match separator {
        Some(";") => list.split(';').collect(),
        Some("space") => list.split(' ').collect(),
        Some("newline") => list.lines().collect(),
        // `os` and `:` on Unix; with no separator configured Alembic splits on spaces and commas.
        Some("os" | ":") => list.split(':').collect(),
        _ => list.split([' ', ',', '\n']).collect(),
    };
    parts
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The options in the `[tool.alembic]` table of pyproject.toml `text` (read from `file`); `None`
/// when there is no such table. `here` replaces `%(here)s` in strings.
fn toml_options(text: &str, file: &Path, here: &str) -> Result<Option<Options>, LoadError> {
    let bad = |problem: String| LoadError::Pyproject {
        path: file.to_owned(),
        problem,
    };
    let document: toml::Table = text
        .parse()
        .map_err(|error: toml::de::Error| bad(toml_problem(text, &error)))?;
    let Some(table) = document.get("tool").and_then(|tool| tool.get("alembic")) else {
        return Ok(None);
    };
    let table = table
        .as_table()
        .ok_or_else(|| bad("[tool.alembic] is not a table".to_owned()))?;
    alembic_table_options(table, here).map(Some).map_err(bad)
}

/// The problem in a pyproject.toml that is not TOML, on one line.
fn toml_problem(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let line = text[..span.start].matches('\n').count() + 1;
            format!("not valid TOML (line {line}): {message}")
        }
        None => format!("not valid TOML: {message}"),
    }
}

/// The options in a `[tool.alembic]` table, or what is wrong with one.
fn alembic_table_options(table: &toml::Table, here: &str) -> Result<Options, String> {
    let with_here = |value: &toml::Value| value.as_str().map(|s| s.replace("%(here)s", here));
    Ok(Options {
        script_location: toml_option(table, "script_location", "a string", with_here)?,
        version_locations: toml_option(table, "version_locations", "a list of strings", |v| {
            v.as_array()?.iter().map(with_here).collect()
        })?,
        recursive: toml_option(
            table,
            "recursive_version_locations",
            "a boolean (true or false)",
            toml::Value::as_bool,
        )?,
    })
}

/// `key` of `table` as `read` takes it; `None` when unset, an error when `read` rejects it.
fn toml_option<T>(
    table: &toml::Table,
    key: &str,
    expected: &str,
    read: impl Fn(&toml::Value) -> Option<T>,
) -> Result<Option<T>, String> {
    let Some(value) = table.get(key) else {
        return Ok(None);
    };
    let found = value.type_str();
    read(value)
        .map(Some)
        .ok_or_else(|| format!("{key} in [tool.alembic] must be {expected}, found a TOML {found}"))
}

/// Loads and validates the revisions under `path` (see [`versions_dirs`]).
pub fn load_migrations(path: &Path) -> Result<Migrations, LoadError> {
    let project = load(path, false)?;
    Ok(Migrations {
        versions_dirs: project.versions_dirs,
        graph: project.graph,
    })
}

/// Like [`load_migrations`], with each revision's parsed file (for advice that must pass the
/// same validation).
pub fn load_valid_project(path: &Path) -> Result<Project, LoadError> {
    load(path, false)
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
    let Layout { dirs, recursive } = layout(path)?;
    let mut files = Vec::new();
    for dir in &dirs {
        collect_revision_files(dir, Path::new(""), recursive, &mut files)?;
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

/// Appends to `files` the revision files in `dir`, sorted, each with the name messages give it:
/// `shown` (its directory relative to the versions directory) joined with the file name. With
/// `recursive`, then those of each subdirectory, in order, as Alembic walks them.
fn collect_revision_files(
    dir: &Path,
    shown: &Path,
    recursive: bool,
    files: &mut Vec<(PathBuf, String)>,
) -> Result<(), LoadError> {
    let io = |source| LoadError::Io {
        path: dir.to_owned(),
        source,
    };
    let (mut names, mut subdirs) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let kind = entry.file_type().map_err(io)?;
        if kind.is_file() && is_revision_file_name(&name.to_string_lossy()) {
            names.push(name);
        } else if recursive && kind.is_dir() && name != "__pycache__" {
            subdirs.push(name);
        }
    }
    names.sort();
    for name in names {
        let file = shown.join(&name).to_string_lossy().into_owned();
        files.push((dir.join(name), file));
    }
    subdirs.sort();
    for name in subdirs {
        collect_revision_files(&dir.join(&name), &shown.join(&name), true, files)?;
    }
    Ok(())
}

/// Alembic's rule: `*.py`, except `__init__.py` and editor lock files (`.#…`).
fn is_revision_file_name(name: &str) -> bool {
    name.ends_with(".py") && name != "__init__.py" && !name.starts_with(".#")
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
            let found = ini_options(ini, "/p")
                .locations(here)
                .expect("script_location");
            let expected: Vec<PathBuf> = expected.iter().map(PathBuf::from).collect();
            assert_eq!(found, expected, "{ini}");
        }
        assert_eq!(
            ini_options("[loggers]\nscript_location = x\n", "/p").locations(here),
            None
        );
    }

    /// Writes `text` to `dir/file`, creating the directories on the way.
    fn write(dir: &Path, file: &str, text: &str) {
        let path = dir.join(file);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// Writes revision `id` (child of `parent`, or a base) to `dir/file`.
    fn revision(dir: &Path, file: &str, id: &str, parent: Option<&str>) {
        let down = parent.map_or("None".to_owned(), |p| format!("'{p}'"));
        let source =
            format!("revision = '{id}'\ndown_revision = {down}\n\ndef upgrade():\n    pass\n");
        write(dir, file, &source);
    }

    /// The files of the loaded revisions, as messages name them, sorted.
    fn files(path: &Path) -> Vec<String> {
        let graph = load_migrations(path).expect("loads").graph;
        let mut files: Vec<String> = graph
            .topological()
            .filter_map(|i| graph.revision(i).file.clone())
            .collect();
        files.sort();
        files
    }

    fn error(path: &Path) -> String {
        load_migrations(path).expect_err("fails").to_string()
    }

    #[test]
    fn pyproject_only_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(
            root,
            "pyproject.toml",
            "[project]\nname = \"app\"\n\n[tool.alembic]\nscript_location = \"%(here)s/migrations\"\n",
        );
        revision(root, "migrations/versions/a1_base.py", "a1", None);
        assert_eq!(
            versions_dirs(root).expect("dirs"),
            [root.join("migrations/versions")]
        );
        assert_eq!(files(root), ["a1_base.py"]);
    }

    #[test]
    fn pyproject_without_tool_alembic_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "pyproject.toml", "[project]\nname = \"app\"\n");
        revision(root, "versions/a1_base.py", "a1", None);
        assert_eq!(versions_dirs(root).expect("dirs"), [root.join("versions")]);

        write(
            root,
            "pyproject.toml",
            "[tool.alembic]\nversion_locations = [\"v\"]\n",
        );
        let message = error(root);
        assert!(message.contains("no script_location"), "{message}");
    }

    #[test]
    fn ini_option_wins_and_a_missing_one_comes_from_toml() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(
            root,
            "alembic.ini",
            "[alembic]\nscript_location = from_ini\n",
        );
        write(
            root,
            "pyproject.toml",
            "[tool.alembic]\nscript_location = \"from_toml\"\nrecursive_version_locations = true\n",
        );
        revision(root, "from_ini/versions/a1_base.py", "a1", None);
        revision(root, "from_ini/versions/2024/b1_next.py", "b1", Some("a1"));
        revision(root, "from_toml/versions/z9_other.py", "z9", None);
        assert_eq!(
            versions_dirs(root).expect("dirs"),
            [root.join("from_ini/versions")]
        );
        assert_eq!(files(root), ["2024/b1_next.py", "a1_base.py"]);
    }

    #[test]
    fn ini_recursive_flag_is_the_string_true() {
        for (value, recursive) in [("true", true), ("True", false), ("false", false)] {
            let ini = format!("[alembic]\nrecursive_version_locations = {value}\n");
            let toml = Options {
                recursive: Some(true),
                ..Options::default()
            };
            let options = ini_options(&ini, "/p").fallback_to(toml);
            assert_eq!(options.recursive, Some(recursive), "{value}");
        }
    }

    #[test]
    fn here_in_toml_is_the_project_directory() {
        let toml = "[tool.alembic]\nscript_location = \"%(here)s/migrations\"\nversion_locations = [\"%(here)s/v1\", \"v2\"]\n";
        let options = toml_options(toml, Path::new("/p/pyproject.toml"), "/p")
            .expect("valid")
            .expect("[tool.alembic]");
        assert_eq!(options.script_location.as_deref(), Some("/p/migrations"));
        assert_eq!(
            options.locations(Path::new("/p")).expect("script_location"),
            [PathBuf::from("/p/v1"), PathBuf::from("/p/v2")]
        );
    }

    #[test]
    fn recursive_locations_load_nested_revisions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        revision(root, "alembic/versions/a1_base.py", "a1", None);
        revision(root, "alembic/versions/2024/b1_next.py", "b1", Some("a1"));
        revision(
            root,
            "alembic/versions/2024/q3/c1_last.py",
            "c1",
            Some("b1"),
        );
        write(root, "alembic/versions/2024/__init__.py", "");
        write(root, "alembic/versions/__pycache__/x.py", "not a revision");

        write(
            root,
            "alembic.ini",
            "[alembic]\nscript_location = alembic\n",
        );
        assert_eq!(files(root), ["a1_base.py"]);

        write(
            root,
            "alembic.ini",
            "[alembic]\nscript_location = alembic\nrecursive_version_locations = true\n",
        );
        assert_eq!(
            files(root),
            ["2024/b1_next.py", "2024/q3/c1_last.py", "a1_base.py"]
        );

        write(root, "alembic/versions/2024/q3/d1_bad.py", "x = 1\n");
        let message = error(root);
        assert!(
            message.starts_with("2024/q3/d1_bad.py: not an Alembic revision"),
            "{message}"
        );
    }

    #[test]
    fn bad_pyproject_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        revision(root, "alembic/versions/a1_base.py", "a1", None);
        let file = root.join("pyproject.toml");
        let cases = [
            (
                "[tool.alembic]\nscript_location = \"alembic\"\nrecursive_version_locations = \"true\"\n",
                "recursive_version_locations in [tool.alembic] must be a boolean (true or false), found a TOML string",
            ),
            (
                "[tool.alembic]\nscript_location = \"alembic\"\nversion_locations = \"v1\"\n",
                "version_locations in [tool.alembic] must be a list of strings, found a TOML string",
            ),
            (
                "[tool.alembic\nscript_location = 1\n",
                "not valid TOML (line 1)",
            ),
            ("[tool]\nalembic = 1\n", "[tool.alembic] is not a table"),
        ];
        for (toml, problem) in cases {
            std::fs::write(&file, toml).expect("write");
            let message = error(root);
            let expected = format!("{}: {problem}", file.display());
            assert!(message.starts_with(&expected), "{message}");
        }
    }
}
