//! `shiftguard lint`: is this release's set of migrations safe for a progressive rollout?
//!
//! Two layers: the rules of `shiftguard_core::lint` over the parsed `upgrade()` operations, and
//! squawk over the PostgreSQL that Alembic renders offline (`alembic upgrade A:heads --sql`),
//! mapped back to revisions. Rendering is in `lint/output.rs`.

mod output;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::lint::{self, Dialect, Finding, Layer, Level, Options, Scope, sql::segments};
use shiftguard_core::schema::graph::RevisionIndex;
use shiftguard_core::schema::scan::{Project, load_project};

use squawk_syntax::ast::AstNode as _;

use crate::Outcome;

/// Lint a release's migrations for a progressive rollout (expand/contract on a shared database).
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    # The whole graph, human-readable:\n  \
    shiftguard lint --migrations infra/example\n\n  \
    # A pull request: only what is not in production yet, as SARIF for GitHub code scanning:\n  \
    shiftguard lint --migrations infra/example --since \"$PROD_HEAD\" --format sarif > lint.sarif\n\n  \
    # A CI summary (GitHub's job summary, a merge request note):\n  \
    shiftguard lint --migrations . --since \"$PROD_HEAD\" --format markdown >> \"$GITHUB_STEP_SUMMARY\"\n\n  \
    # Every rule with its code, level and fix:\n  \
    shiftguard lint --list-rules\n\n\
    A revision turns a rule off for itself with a module-level declaration naming it:\n  \
    shiftguard_lint_disable = [\"SG301\"]  # or the rule's name, \"index-not-concurrent\"\n\n\
    Exit codes: 0 no error-level finding (warnings too with --deny warnings), 1 findings that \
    fail the lint, 2 could not lint (bad input, Alembic failed to render the SQL).")]
pub struct Args {
    /// Alembic project directory (with alembic.ini; the SQL layer needs it) or its versions/
    /// directory.
    #[arg(long, value_name = "DIR", required_unless_present = "list_rules")]
    migrations: Option<PathBuf>,
    /// The production head: lint only the revisions after it (repeat for several heads). A
    /// unique prefix is enough. Default: the whole graph, without the rules that compare the
    /// revisions of one release.
    #[arg(long, value_name = "REV")]
    since: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    format: Format,
    /// Make warnings fail the lint too.
    #[arg(long, value_enum, value_name = "LEVEL")]
    deny: Option<Deny>,
    /// Project configuration ([[backfill]] jobs, [lint] large_tables). Default: shiftguard.toml
    /// in the migrations directory, when there is one.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The database the migrations run on. Default: from sqlalchemy.url in alembic.ini; when
    /// that does not say, PostgreSQL's rules apply.
    #[arg(long, value_enum)]
    dialect: Option<DialectArg>,
    /// Skip the SQL layer (rendering the SQL with Alembic and linting it with squawk).
    #[arg(long)]
    no_sql: bool,
    /// The Alembic CLI for the SQL layer. Default: `alembic` on PATH.
    #[arg(long, env = "SHIFTGUARD_ALEMBIC", value_name = "PATH")]
    alembic: Option<PathBuf>,
    /// Colour the human output: auto (when stdout is a terminal and NO_COLOR is unset).
    #[arg(long, value_enum, default_value = "auto")]
    color: ColorChoice,
    /// Print every rule (code, name, level, layer, fix) and exit.
    #[arg(long)]
    list_rules: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    Sarif,
    /// A Markdown summary (GitHub's job summary, a merge request note).
    Markdown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Deny {
    Warnings,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DialectArg {
    Postgresql,
    Mysql,
    Sqlite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

/// Everything the renderers need.
#[derive(Debug)]
pub struct Report<'a> {
    project: &'a Project,
    scope: &'a Scope,
    since: Vec<String>,
    dialect: Option<Dialect>,
    findings: Vec<Finding>,
    /// What the lint could not do, said once (a skipped layer, rules that need --since).
    notes: Vec<String>,
    /// How each revision's file is shown (relative to the working directory when under it).
    paths: Vec<String>,
    /// The lint fails: an error, or a warning with `--deny warnings`.
    failed: bool,
}

impl Report<'_> {
    fn count(&self, level: Level) -> usize {
        self.findings
            .iter()
            .filter(|f| f.rule.level == level)
            .count()
    }
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    if args.list_rules {
        output::list_rules();
        return Ok(Outcome::Safe);
    }
    let dir = args
        .migrations
        .as_deref()
        .context("give --migrations DIR")?;
    let project = load_project(dir)?;
    let graph = &project.graph;
    let mut since = Vec::with_capacity(args.since.len());
    for reference in &args.since {
        let index = graph
            .resolve(reference)
            .with_context(|| format!("--since {reference}"))?;
        since.push(index);
    }
    let config = load_config(dir, args.config.as_deref())?;
    let ini = dir.join("alembic.ini");
    let scope = Scope::new(graph, since);
    let mut notes = Vec::new();
    if !scope.knows_production() {
        notes.push(
            "without --since the whole graph is linted and the rules that compare the revisions of one release (SG103, SG104 across revisions, SG402) do not run".to_owned(),
        );
    }
    let rendered = if args.no_sql {
        Err("--no-sql".to_owned())
    } else if args.dialect.is_some_and(|d| d != DialectArg::Postgresql) {
        Err("squawk lints PostgreSQL only".to_owned())
    } else {
        render_sql(&args, &project, &scope, &ini)?
    };
    // Which database: as told; else as the rendered SQL shows (Alembic opens a transaction
    // around the DDL only on PostgreSQL here); else sqlalchemy.url in alembic.ini.
    let dialect = match (args.dialect, &rendered) {
        (Some(DialectArg::Postgresql), _) => Some(Dialect::Postgresql),
        (Some(DialectArg::Mysql), _) => Some(Dialect::Mysql),
        (Some(DialectArg::Sqlite), _) => Some(Dialect::Sqlite),
        (None, Ok(sql)) if is_postgresql(sql) => Some(Dialect::Postgresql),
        (None, Ok(_)) => Some(dialect_from_ini(&ini).unwrap_or(Dialect::Other)),
        (None, Err(_)) => dialect_from_ini(&ini),
    };
    let options = Options {
        dialect,
        large_tables: config.lint.large_tables.clone(),
        backfilled: config
            .backfill
            .iter()
            .map(|job| (job.table.clone(), lint::sql::assigned_columns(&job.set)))
            .collect(),
    };
    let mut findings = lint::lint_operations(&project, &scope, &options);
    let sql_layer_ran = rendered.is_ok() && dialect == Some(Dialect::Postgresql);
    match rendered {
        Ok(sql) if sql_layer_ran => {
            findings.extend(squawk_findings(&project, &scope, &sql));
        }
        Ok(_) => notes.push(format!(
            "SQL layer skipped: the SQL Alembic renders is not PostgreSQL's ({}); squawk lints PostgreSQL only (--dialect postgresql if it is)",
            dialect.map_or("unknown", Dialect::as_str)
        )),
        Err(why) => notes.push(format!("SQL layer skipped: {why}")),
    }
    let findings = lint::finish(&project, &scope, findings, |rule| {
        lint::rule_ran(rule, &scope, &options, sql_layer_ran)
    })?;
    let cwd = std::env::current_dir().unwrap_or_default();
    let paths = project
        .files
        .iter()
        .map(|file| display_path(&file.path, &cwd))
        .collect();
    let failed = findings
        .iter()
        .any(|f| f.rule.level == Level::Error || args.deny == Some(Deny::Warnings));
    let report = Report {
        failed,
        project: &project,
        scope: &scope,
        since: args.since.clone(),
        dialect,
        findings,
        notes,
        paths,
    };
    let color = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            use std::io::IsTerminal;
            std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    };
    match args.format {
        Format::Human => output::human(&report, color),
        Format::Json => output::json(&report),
        Format::Sarif => output::sarif(&report),
        Format::Markdown => output::markdown(&report),
    }
    Ok(if report.failed {
        Outcome::NotSafe
    } else {
        Outcome::Safe
    })
}

fn load_config(dir: &Path, explicit: Option<&Path>) -> anyhow::Result<ProjectConfig> {
    let default = dir.join("shiftguard.toml");
    let path = match explicit {
        Some(path) => path,
        None if default.is_file() => default.as_path(),
        None => return Ok(ProjectConfig::default()),
    };
    crate::read_config(path)
}

/// The dialect of `sqlalchemy.url` in alembic.ini, when it names one (the template's
/// `driver://…` does not).
fn dialect_from_ini(ini: &Path) -> Option<Dialect> {
    let text = std::fs::read_to_string(ini).ok()?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| key.trim() == "sqlalchemy.url")
        .and_then(|(_, url)| Dialect::from_url(url.trim()))
}

fn display_path(path: &Path, cwd: &Path) -> String {
    path.strip_prefix(cwd)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The release's SQL as Alembic renders it offline; `Err(reason)` when it cannot be rendered
/// here (no alembic.ini, no Alembic), which skips the layer with a note.
fn render_sql(
    args: &Args,
    project: &Project,
    scope: &Scope,
    ini: &Path,
) -> anyhow::Result<Result<String, String>> {
    if scope.release.is_empty() {
        return Ok(Ok(String::new()));
    }
    if !ini.is_file() {
        return Ok(Err(format!(
            "no alembic.ini in {} (pass the Alembic project directory to render the SQL)",
            ini.parent().unwrap_or(ini).display()
        )));
    }
    let range = match scope.since.as_slice() {
        [] => "heads".to_owned(),
        [one] => format!("{}:heads", project.graph.revision(*one).id),
        _ => {
            return Ok(Err(
                "Alembic renders from one revision, and --since names several".to_owned(),
            ));
        }
    };
    let Some(alembic) = find_alembic(args.alembic.as_deref()) else {
        return Ok(Err(
            "Alembic is not installed (no `alembic` on PATH; set SHIFTGUARD_ALEMBIC or --alembic)"
                .to_owned(),
        ));
    };
    let project_dir = ini.parent().unwrap_or(Path::new("."));
    let output = Command::new(&alembic)
        .arg("-c")
        .arg(ini.file_name().unwrap_or_default())
        .args(["upgrade", &range, "--sql"])
        .current_dir(project_dir)
        .output()
        .with_context(|| format!("cannot run {}", alembic.display()))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        bail!(
            "`alembic upgrade {range} --sql` failed: {} (--no-sql skips the SQL layer)",
            redact_urls(last.trim())
        );
    }
    let sql = String::from_utf8(output.stdout).context("Alembic's SQL output is not UTF-8")?;
    Ok(Ok(sql))
}

/// Alembic's offline output on PostgreSQL starts with the transaction it opens (`BEGIN;`);
/// MySQL and SQLite have no transactional DDL in Alembic, so theirs does not.
fn is_postgresql(sql: &str) -> bool {
    sql.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with("--"))
        .is_none_or(|first| first == "BEGIN;")
}

fn find_alembic(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return path.is_file().then(|| path.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("alembic"))
        .find(|candidate| candidate.is_file())
}

/// `scheme://user:secret@host` -> `scheme://***@host`, wherever it appears.
fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(user_end) => {
                out.push_str("***");
                rest = &tail[user_end..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// squawk over the whole rendered release (so tables created earlier in it are known), each
/// violation mapped to the revision whose `-- Running upgrade` segment holds it.
fn squawk_findings(project: &Project, scope: &Scope, sql: &str) -> Vec<Finding> {
    let rules: Vec<squawk_linter::Rule> = lint::RULES
        .iter()
        .filter(|rule| rule.layer == Layer::Sql)
        .filter_map(|rule| rule.name.parse().ok())
        .collect();
    let mut linter = squawk_linter::Linter::from(rules);
    // Alembic wraps the offline output in BEGIN/COMMIT on PostgreSQL.
    linter.settings.assume_in_transaction = true;
    let parsed = squawk_syntax::SourceFile::parse(sql);
    let statements: Vec<std::ops::Range<usize>> = parsed
        .tree()
        .stmts()
        .map(|statement| {
            let range = statement.syntax().text_range();
            usize::from(range.start())..usize::from(range.end())
        })
        .collect();
    let segments = segments(sql);
    // (finding, the statement it is about)
    let mut found: Vec<(Finding, &str)> = Vec::new();
    for violation in linter.lint(&parsed, sql) {
        let start = usize::from(violation.text_range.start());
        let statement = statements
            .iter()
            .find(|range| range.contains(&start))
            .map_or(
                &sql[start..usize::from(violation.text_range.end())],
                |range| &sql[range.clone()],
            );
        let Some(segment) = segments.iter().find(|s| s.range.contains(&start)) else {
            continue;
        };
        let Some(index) = project.graph.index_of(&segment.revision) else {
            continue;
        };
        let Some(rule) = lint::RULES
            .iter()
            .find(|r| r.layer == Layer::Sql && r.name == violation.code.to_string())
        else {
            continue;
        };
        // squawk knows tables created in the same transaction for some rules only; none of these
        // hazards touches a table the release creates.
        let new_table = lint::sql::statement_table(statement)
            .is_some_and(|table| lint::is_new_table(project, scope, index, &table));
        if !scope.release.contains(index) || new_table {
            continue;
        }
        let first_line = statement.lines().next().unwrap_or_default().trim();
        let finding = Finding {
            rule,
            revision: index,
            line: header_line(project, index),
            message: format!("{} (`{}`)", violation.message, shorten(first_line, 80)),
        };
        found.push((finding, statement));
    }
    // A UNIQUE or PRIMARY KEY constraint cannot be NOT VALID: for those, SG508/SG509 give the
    // fix (USING INDEX), and squawk's constraint-missing-not-valid on the same statement goes.
    let using_index: Vec<&str> = found
        .iter()
        .filter(|(f, _)| matches!(f.rule.code, "SG508" | "SG509"))
        .map(|(_, statement)| *statement)
        .collect();
    found
        .into_iter()
        .filter(|(f, statement)| !(f.rule.code == "SG505" && using_index.contains(statement)))
        .map(|(finding, _)| finding)
        .collect()
}

/// The line of `revision = …`: where a finding about the rendered SQL points.
fn header_line(project: &Project, index: RevisionIndex) -> u32 {
    project.files[index]
        .parsed
        .revision
        .as_ref()
        .map_or(1, |r| r.line)
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_urls("Could not parse 'postgresql://app:s3cret@db:5432/x' and mysql://h/db"),
            "Could not parse 'postgresql://***@db:5432/x' and mysql://h/db"
        );
    }
}
