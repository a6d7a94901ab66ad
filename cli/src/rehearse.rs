//! `shiftguard rehearse`: the user's own release, step by step, on an empty database: Alembic
//! brings it to the production head (`--since`), synthetic rows fill it (`--rows`), then every
//! revision of the release is applied alone, in topological order; after each, the configured
//! backfills run to completion and every app build that must coexist is judged by the rule
//! (predict) and by its own tests (confirm). Finally the migrations also run from nothing on a
//! scratch database, where `alembic check` compares them with the models.

mod output;
mod record;
mod report;

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shiftguard_core::backfill::KeyRange;
use shiftguard_core::config::ProjectConfig;
use shiftguard_core::rehearsal::{self, Confirmation, lock_findings, misjudged};
use shiftguard_core::schema::alembic::RevisionFile;
use shiftguard_core::schema::scan::load_valid_project;
use shiftguard_core::{DatabaseState, RevisionGraph, RevisionIndex, check_build};
use shiftguard_sql::backfill::{
    BackfillError, Checkpoints, LagSource, Outcome as RunOutcome, Runner,
};
use shiftguard_sql::checkpoint::SqlCheckpoints;
use shiftguard_sql::rehearsal::locks::LockSampler;
use shiftguard_sql::rehearsal::{Scratch, fill, scratch_name, settings, tables};
use shiftguard_sql::{Connection, DEFAULT_VERSION_TABLE, DatabaseUrl, Dialect, read_heads};

use crate::Outcome;
use crate::process::{self, Alembic, Finished, alembic_url, command_exists, find_alembic, idle};
use record::{AppRun, BackfillRun, Check, Finding, Record, Step};

/// Rehearse a release on an empty database, with the app builds' own tests after every step.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    # The example, from its first revision, with three builds' tests after every step:\n  \
    shiftguard rehearse --migrations infra/example --config infra/example/shiftguard.toml \\\n      \
    --database-url postgresql+psycopg://postgres@127.0.0.1/rehearsal --since d2ca87e6a2c7 \\\n      \
    --app 'd2ca87e6a2c7=python infra/example/app_tests/v1.py' \\\n      \
    --app '3f55b760f0a3=python infra/example/app_tests/v3.py' --rows 100000\n\n  \
    # In CI, from the live alias's stamp, as JUnit for the CI system to show:\n  \
    shiftguard rehearse --migrations . --database-url sqlite:////tmp/r.db \\\n      \
    --since \"$LIVE_REVISION\" --app \"$LIVE_REVISION=pytest tests/db\" --format junit > rehearsal.xml\n\n  \
    # The builds × steps grid as a CI summary (GitHub's job summary, a merge request note):\n  \
    shiftguard rehearse --migrations . --database-url \"$URL\" --since \"$LIVE_REVISION\" \\\n      \
    --app \"$LIVE_REVISION=pytest tests/db\" --format markdown >> \"$GITHUB_STEP_SUMMARY\"\n\n\
    The database URL is given as SQLAlchemy spells it (postgresql+psycopg://, mysql+pymysql://, \
    sqlite:////absolute/path.db); without a driver, +psycopg and +pymysql are assumed for \
    Alembic. Alembic runs in the project directory and gets the URL as sqlalchemy.url (in a \
    copy of alembic.ini, passed with -c) and in SQLALCHEMY_URL and DATABASE_URL: a stock \
    env.py (which reads sqlalchemy.url) migrates the database given; an env.py that builds its \
    URL elsewhere must read one of those (a pyproject.toml-only project has no alembic.ini to \
    copy). The version table is read back after every step: Alembic migrating another database \
    stops the rehearsal (exit 2). The from-empty check runs on a scratch database created on \
    the same server before the first step (default name: the database's + `_scratch`; \
    --scratch-database NAME) and dropped at the end. Each COMMAND runs in a shell with DATABASE_URL (the URL as \
    given), SHIFTGUARD_REHEARSAL_STEP (the revision just applied, or `start`) and \
    SHIFTGUARD_REHEARSAL_BUILD set.\n\n\
    Exit codes: 0 every step predicted and confirmed; 1 a build the rule said fits failed its \
    tests, a step held a blocking lock on a filled table past --lock-threshold-ms, a backfill \
    or an Alembic command failed, or the models and the migrations disagree; 2 bad input \
    (nothing is written to the database), or the scratch database cannot be created (named, \
    with the privilege it takes).")]
pub struct Args {
    /// The Alembic project directory (holding alembic.ini and/or pyproject.toml).
    #[arg(long, value_name = "DIR")]
    migrations: PathBuf,
    /// The empty database to rehearse on.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    database_url: String,
    /// Production's Alembic head(s): the starting point. Repeat, or separate with commas, for
    /// several heads. A unique prefix is enough.
    #[arg(long, value_name = "REV", required = true, value_delimiter = ',')]
    since: Vec<String>,
    /// An app build made at Alembic revision REV, tested by the shell COMMAND; repeat per build.
    #[arg(long = "app", value_name = "REV=COMMAND")]
    apps: Vec<String>,
    /// Synthetic rows per table at the starting point.
    #[arg(long, default_value_t = 0, value_name = "N")]
    rows: u64,
    /// shiftguard.toml: the backfills to run when their table and columns exist.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Short for --format json.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Also write a self-contained HTML report (timeline of steps, which builds fit).
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// A lock that blocks writes, held this long on a filled table, is a finding (PostgreSQL).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    lock_threshold_ms: u64,
    /// Time limit of each app COMMAND, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    app_timeout: u64,
    /// Skip the check that the migrations also run from an empty database (it needs the right
    /// to create a database beside this one).
    #[arg(long)]
    no_empty_check: bool,
    /// The scratch database for that check, created on the same server before the first step
    /// and dropped at the end; it must not exist (default: the database's name + `_scratch`;
    /// SQLite: a temporary file).
    #[arg(long, value_name = "NAME", conflicts_with = "no_empty_check")]
    scratch_database: Option<String>,
    /// The Alembic executable (default: `alembic` on PATH).
    #[arg(long, env = "SHIFTGUARD_ALEMBIC", value_name = "PATH")]
    alembic: Option<PathBuf>,
    /// Alembic version table name (as `version_table` in env.py).
    #[arg(long, default_value = DEFAULT_VERSION_TABLE, value_name = "TABLE")]
    version_table: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Human,
    Json,
    Junit,
    /// A CI summary: the builds × steps grid and the findings.
    Markdown,
}

/// An app build to test after every step.
#[derive(Debug)]
struct App {
    build: RevisionIndex,
    id: String,
    command: String,
}

/// Everything checked before the database is touched.
#[derive(Debug)]
struct Plan {
    graph: RevisionGraph,
    /// Each revision's parsed file, indexed like the graph.
    files: Vec<RevisionFile>,
    since: Vec<RevisionIndex>,
    apps: Vec<App>,
    config: ProjectConfig,
    url: DatabaseUrl,
    /// As Alembic and the apps take it.
    alembic_url: String,
    given_url: String,
    alembic: Alembic,
    /// The from-empty check's database (`None` with --no-empty-check).
    scratch: Option<Scratch>,
    /// Holds a SQLite scratch file until the rehearsal ends.
    _scratch_dir: tempfile::TempDir,
}

pub fn run(args: Args) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut plan = Plan::check(&args).await?;
        let format = if args.json { Format::Json } else { args.format };
        let record = Rehearsal::new(&args, &plan).run().await;
        if let Some(scratch) = plan.scratch.take() {
            let name = scratch.name.clone();
            if let Err(error) = scratch.drop().await {
                eprintln!(
                    "warning: the scratch database `{name}` is left behind ({error}): drop it (DROP DATABASE), or the next rehearsal cannot create it"
                );
            }
        }
        let record = record?;
        if let Some(path) = &args.report {
            std::fs::write(path, report::html(&record))
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        match format {
            Format::Human => print!("{}", output::human(&record)),
            Format::Json => println!("{}", serde_json::to_string_pretty(&record)?),
            Format::Junit => print!("{}", output::junit(&record)),
            Format::Markdown => print!("{}", output::markdown(&record)),
        }
        Ok(if record.blocking() == 0 {
            Outcome::Safe
        } else {
            Outcome::NotSafe
        })
    })
}

impl Plan {
    async fn check(args: &Args) -> anyhow::Result<Self> {
        let project = &args.migrations;
        let loaded = load_valid_project(project)?;
        let files = loaded.files.into_iter().map(|f| f.parsed).collect();
        let graph = loaded.graph;
        let alembic = Alembic::new(find_alembic(args.alembic.as_deref())?, project)?;
        let url = DatabaseUrl::parse(&args.database_url).context("--database-url")?;
        if url.dialect() == Dialect::Sqlite && !sqlite_path_is_absolute(&args.database_url) {
            bail!(
                "--database-url: give the SQLite file as an absolute path (sqlite:////path/to/file.db): Alembic, the apps and shiftguard must all open the same file"
            );
        }
        let mut since = args
            .since
            .iter()
            .map(|reference| {
                graph
                    .resolve(reference)
                    .with_context(|| format!("--since {reference}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // A head that another one descends from is applied with it: keep the real heads.
        let all = since.clone();
        since.retain(|&head| {
            !all.iter()
                .any(|&other| other != head && graph.ancestors([other]).contains(head))
        });
        since.sort_unstable();
        since.dedup();
        let apps = args
            .apps
            .iter()
            .map(|app| parse_app(&graph, app, &url))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let config = match &args.config {
            Some(path) => crate::read_config(path)?,
            None => ProjectConfig::default(),
        };
        if let Some(path) = &args.report {
            std::fs::File::create(path)
                .with_context(|| format!("--report: cannot write {}", path.display()))?;
        }
        let existing = tables(&url).await?;
        if !existing.is_empty() {
            bail!(
                "{} is not empty ({} table(s): {}): rehearse needs an empty database it may fill and change",
                url.target(),
                existing.len(),
                existing.join(", ")
            );
        }
        let alembic_url = alembic_url(&args.database_url, &url);
        // Last: the one check that writes (the scratch database), so that a role without the
        // right to create it fails here, before the first step, not after the last.
        let scratch_dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let scratch = if args.no_empty_check {
            None
        } else {
            if url.dialect() == Dialect::Sqlite && args.scratch_database.is_some() {
                bail!(
                    "--scratch-database: on SQLite the scratch database is a temporary file; the option names a database on a server"
                );
            }
            let name =
                scratch_name(&url, args.scratch_database.as_deref()).map_err(anyhow::Error::msg)?;
            Some(Scratch::create(&url, &alembic_url, &name, scratch_dir.path()).await?)
        };
        Ok(Plan {
            alembic_url,
            scratch,
            _scratch_dir: scratch_dir,
            given_url: args.database_url.clone(),
            graph,
            files,
            since,
            apps,
            config,
            url,
            alembic,
        })
    }
}

/// `REV=COMMAND`. Messages quote the command without the database's password.
fn parse_app(graph: &RevisionGraph, app: &str, url: &DatabaseUrl) -> anyhow::Result<App> {
    let shown = url.redact(app);
    let Some((revision, command)) = app.split_once('=') else {
        bail!(
            "--app {shown:?}: expected REV=COMMAND (a build's Alembic revision, then its test command)"
        );
    };
    let command = command.trim();
    if revision.trim().is_empty() || command.is_empty() {
        bail!("--app {shown:?}: expected REV=COMMAND with both parts");
    }
    let build = graph
        .resolve(revision.trim())
        .with_context(|| format!("--app {revision}"))?;
    if !command_exists(command) {
        bail!(
            "--app {revision}: command not found: {}",
            command.split_whitespace().next().unwrap_or(command)
        );
    }
    Ok(App {
        build,
        id: graph.revision(build).id.clone(),
        command: command.to_owned(),
    })
}

/// SQLAlchemy's `sqlite:////abs.db` (four slashes); `sqlite:///rel.db` is relative to wherever
/// each program runs.
fn sqlite_path_is_absolute(given: &str) -> bool {
    given
        .split_once("://")
        .is_some_and(|(_, rest)| rest.starts_with("//"))
}

/// The rehearsal under way.
struct Rehearsal<'a> {
    args: &'a Args,
    plan: &'a Plan,
    progress: bool,
    started: Instant,
    alembic_runs: u32,
    filled: BTreeSet<String>,
    findings: Vec<Finding>,
    /// Each build's last test result.
    passed: BTreeMap<String, bool>,
    backfills_run: BTreeSet<String>,
    /// The last reason a backfill could not run, by name.
    backfill_problems: BTreeMap<String, String>,
}

impl<'a> Rehearsal<'a> {
    fn new(args: &'a Args, plan: &'a Plan) -> Self {
        Rehearsal {
            args,
            plan,
            progress: std::io::stderr().is_terminal(),
            started: Instant::now(),
            alembic_runs: 0,
            filled: BTreeSet::new(),
            findings: Vec::new(),
            passed: BTreeMap::new(),
            backfills_run: BTreeSet::new(),
            backfill_problems: BTreeMap::new(),
        }
    }

    fn say(&self, line: &str) {
        if self.progress {
            eprint!("\r\x1b[2Krehearse: {line}");
        }
    }

    async fn run(mut self) -> anyhow::Result<Record> {
        let plan = self.plan;
        let startup = self.alembic(&plan.alembic_url, &["heads"], idle).await?;
        if !startup.succeeded() {
            bail!(
                "`alembic heads` failed in {}: {}",
                plan.alembic.project().display(),
                startup.error_line(&plan.url)
            );
        }
        let steps = rehearsal::steps(&plan.graph, &plan.since);
        let mut record_steps = Vec::with_capacity(steps.len() + 1);
        let (mut start, heads) = self.start().await?;
        let filled = if start.error.is_none() && self.args.rows > 0 {
            self.say("filling tables");
            let skip = [
                self.args.version_table.as_str(),
                plan.config.checkpoint.table.as_str(),
            ];
            let filled = fill::fill(&plan.url, self.args.rows, &skip).await?;
            self.filled = filled.iter().map(|f| f.table.clone()).collect();
            filled
        } else {
            Vec::new()
        };
        let mut ok = start.error.is_none();
        if ok {
            self.after_step(&mut start, None, &heads).await?;
        }
        record_steps.push(start);
        for (n, &revision) in steps.iter().enumerate() {
            if !ok {
                break;
            }
            self.say(&format!(
                "step {}/{} {}",
                n + 1,
                steps.len(),
                plan.graph.revision(revision).id
            ));
            let (mut step, heads) = self.step(n + 1, revision).await?;
            ok = step.error.is_none();
            if ok {
                self.after_step(&mut step, Some(revision), &heads).await?;
            }
            record_steps.push(step);
        }
        let (from_empty, alembic_check) = if self.args.no_empty_check {
            (None, None)
        } else {
            self.say("from an empty database");
            let (empty, check) = self.upgrade_from_empty().await?;
            (Some(empty), check)
        };
        if self.progress {
            eprint!("\r\x1b[2K");
        }
        Ok(self.finish(
            record_steps,
            filled,
            from_empty,
            alembic_check,
            startup.elapsed,
        ))
    }

    /// One Alembic command against `url`; `tick` runs between polls (the lock sampler).
    async fn alembic(
        &mut self,
        url: &str,
        args: &[&str],
        tick: impl AsyncFnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<Finished> {
        self.alembic_runs += 1;
        let command = self.plan.alembic.command(url, args)?;
        process::run(command, Duration::from_secs(3600), tick).await
    }

    /// Step 0: Alembic brings the empty database to `--since`, one head at a time. Returns the
    /// step and the version table's rows after it.
    async fn start(&mut self) -> anyhow::Result<(Step, Vec<String>)> {
        let plan = self.plan;
        let mut step = empty_step(0, None, &plan.graph);
        let started = Instant::now();
        for &head in &plan.since {
            let id = plan.graph.revision(head).id.clone();
            let done = self
                .alembic(&plan.alembic_url, &["upgrade", &id], idle)
                .await?;
            if !done.succeeded() {
                step.error = Some(self.alembic_failed(0, &done, id));
                break;
            }
        }
        step.alembic_ms = millis(started.elapsed());
        if step.error.is_some() {
            return Ok((step, Vec::new()));
        }
        let ids: Vec<&str> = plan
            .since
            .iter()
            .map(|&i| plan.graph.revision(i).id.as_str())
            .collect();
        let heads = self.expect_heads(&ids).await?;
        Ok((step, heads))
    }

    /// One revision, alone, with the locks it takes sampled meanwhile. Returns the step and the
    /// version table's rows after it.
    async fn step(
        &mut self,
        number: usize,
        revision: RevisionIndex,
    ) -> anyhow::Result<(Step, Vec<String>)> {
        let plan = self.plan;
        let mut step = empty_step(number, Some(revision), &plan.graph);
        let id = plan.graph.revision(revision).id.clone();
        let mut sampler = LockSampler::open(&plan.url).await?;
        let done = self
            .alembic(&plan.alembic_url, &["upgrade", &id], async || {
                if let Some(sampler) = sampler.as_mut() {
                    sampler.sample().await?;
                }
                Ok(())
            })
            .await?;
        step.alembic_ms = millis(done.elapsed);
        if let Some(mut sampler) = sampler {
            (step.locks, step.lock_samples) = sampler.take();
            sampler.close().await;
        }
        let threshold = self.args.lock_threshold_ms as f64;
        for (lock, blocks) in lock_findings(&step.locks, |t| self.filled.contains(t), threshold) {
            self.findings.push(Finding {
                kind: "lock",
                step: Some(number),
                revision: Some(id.clone()),
                blocking: true,
                message: format!(
                    "revision {id} held {} on {} ({} rows) for {:.0} ms, blocking {blocks} (threshold {} ms): build it without blocking (CREATE INDEX CONCURRENTLY in an autocommit block, NOT VALID then VALIDATE, a nullable column first)",
                    lock.mode, lock.table, self.args.rows, lock.held_ms, self.args.lock_threshold_ms
                ),
            });
        }
        if !done.succeeded() {
            step.error = Some(self.alembic_failed(number, &done, id));
            return Ok((step, Vec::new()));
        }
        let heads = self.heads().await?;
        if !heads.contains(&id) {
            bail!(
                "after `alembic upgrade {id}` the version table holds {heads:?}: Alembic did not apply it to {}",
                plan.url.target()
            );
        }
        Ok((step, heads))
    }

    fn alembic_failed(&mut self, step: usize, done: &Finished, revision: String) -> String {
        let line = done.error_line(&self.plan.url);
        let message = format!("`alembic upgrade {revision}` failed: {line}");
        self.findings.push(Finding {
            kind: "alembic",
            step: Some(step),
            revision: Some(revision),
            blocking: true,
            message: message.clone(),
        });
        message
    }

    async fn heads(&self) -> anyhow::Result<Vec<String>> {
        let plan = self.plan;
        let mut connection = Connection::open(&plan.url, settings()).await?;
        let heads = read_heads(&mut connection, &plan.url, &self.args.version_table).await;
        connection.close().await;
        Ok(heads?)
    }

    /// Fails closed when env.py migrated some other database than the one given; else the
    /// version table's rows.
    async fn expect_heads(&self, ids: &[&str]) -> anyhow::Result<Vec<String>> {
        let heads = self.heads().await.with_context(|| {
            format!(
                "Alembic did not migrate {}: env.py must take the URL from sqlalchemy.url, SQLALCHEMY_URL or DATABASE_URL (see `shiftguard rehearse --help`)",
                self.plan.url.target()
            )
        })?;
        let mut want: Vec<&str> = ids.to_vec();
        want.sort_unstable();
        want.dedup();
        if heads != want {
            bail!("after upgrading to {want:?} the version table holds {heads:?}");
        }
        Ok(heads)
    }

    /// The backfills that can run now, to completion; then every app build, predicted and tested.
    async fn after_step(
        &mut self,
        step: &mut Step,
        revision: Option<RevisionIndex>,
        heads: &[String],
    ) -> anyhow::Result<()> {
        for backfill in &self.plan.config.backfill {
            match self.backfill(backfill).await? {
                Ok(run) => {
                    if let Some(error) = &run.error {
                        self.findings.push(Finding {
                            kind: "backfill",
                            step: Some(step.number),
                            revision: step.revision.clone(),
                            blocking: true,
                            message: format!("backfill {}: {error}", run.name),
                        });
                    }
                    self.backfills_run.insert(run.name.clone());
                    step.backfills.push(run);
                }
                Err(problem) => {
                    self.backfill_problems
                        .insert(backfill.name.clone(), problem);
                }
            }
        }
        let state = DatabaseState::new(&self.plan.graph, heads)?;
        for app in &self.plan.apps {
            let run = self.test_app(app, step, &state, revision).await?;
            self.passed.insert(app.id.clone(), run.passed);
            step.apps.push(run);
        }
        Ok(())
    }

    /// Runs one backfill to completion; `Err(problem)` when it does not fit the schema as it is
    /// (its table or columns do not exist yet, or no longer).
    async fn backfill(
        &self,
        backfill: &shiftguard_core::backfill::BackfillConfig,
    ) -> anyhow::Result<Result<BackfillRun, String>> {
        let plan = self.plan;
        let runner = Runner {
            url: &plan.url,
            config: backfill,
            checkpoints: Checkpoints::Sql(SqlCheckpoints::new(&plan.config.checkpoint.table)?),
            owner: "shiftguard-rehearse".to_owned(),
            lag: LagSource::None,
            connect_timeout: Duration::from_secs(10),
            range: KeyRange::default(),
        };
        let started = Instant::now();
        let mut rows = 0;
        // A pass, then the verification that nothing is pending: a few runs at most.
        let mut error = Some("did not complete in 8 runs".to_owned());
        for _ in 0..8 {
            match runner
                .run(Instant::now() + Duration::from_secs(3600), &mut |_| {})
                .await
            {
                Ok(summary) => {
                    rows += summary.report.rows_updated;
                    match summary.outcome {
                        RunOutcome::Complete => {
                            error = None;
                            break;
                        }
                        RunOutcome::Swept | RunOutcome::Deadline => {}
                        other => {
                            error = Some(format!("stopped: {other:?}"));
                            break;
                        }
                    }
                }
                Err(BackfillError::Target { problem, .. }) if rows == 0 => return Ok(Err(problem)),
                Err(failed) => {
                    error = Some(plan.url.redact(&failed.to_string()));
                    break;
                }
            }
        }
        let ms = millis(started.elapsed());
        Ok(Ok(BackfillRun {
            name: backfill.name.clone(),
            rows,
            ms,
            rows_per_second: if ms > 0.0 {
                rows as f64 / (ms / 1e3)
            } else {
                0.0
            },
            error,
        }))
    }

    async fn test_app(
        &mut self,
        app: &App,
        step: &Step,
        state: &DatabaseState,
        revision: Option<RevisionIndex>,
    ) -> anyhow::Result<AppRun> {
        let plan = self.plan;
        let verdict = check_build(&plan.graph, app.build, state);
        let mut command = Command::new("sh");
        command
            .args(["-c", &app.command])
            .env("DATABASE_URL", &plan.given_url)
            .env(
                "SHIFTGUARD_REHEARSAL_STEP",
                step.revision.as_deref().unwrap_or("start"),
            )
            .env("SHIFTGUARD_REHEARSAL_BUILD", &app.id);
        let done = process::run(command, Duration::from_secs(self.args.app_timeout), idle).await?;
        let outcome = Confirmation::of(verdict.is_compatible(), done.succeeded());
        let at = step.revision.as_deref().unwrap_or("the starting point");
        let finding = match outcome {
            Confirmation::FitsFails => {
                let passed_before = self.passed.get(&app.id).copied().unwrap_or(false);
                Some(format!(
                    "after {at}: build {} fits by the rule but its tests fail ({}): {}",
                    app.id,
                    failure(&done, &plan.url),
                    misjudged(
                        &plan.graph,
                        &plan.files,
                        app.build,
                        revision,
                        state,
                        passed_before
                    )
                ))
            }
            Confirmation::RefusedPasses => Some(format!(
                "after {at}: build {} is refused by the rule but its tests pass: the window is conservative ({})",
                app.id,
                verdict
                    .reasons()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            _ => None,
        };
        if let Some(message) = &finding {
            self.findings.push(Finding {
                kind: if outcome.is_error() {
                    "rule"
                } else {
                    "conservative"
                },
                step: Some(step.number),
                revision: step.revision.clone(),
                blocking: outcome.is_error(),
                message: message.clone(),
            });
        }
        Ok(AppRun {
            build: app.id.clone(),
            command: plan.url.redact(&app.command),
            fits: verdict.is_compatible(),
            reasons: verdict.reasons().to_vec(),
            passed: done.succeeded(),
            exit_code: done.code,
            timed_out: done.timed_out,
            ms: millis(done.elapsed),
            outcome,
            finding,
            output: plan.url.redact(&done.tail(20)),
            error_lines: if done.succeeded() {
                Vec::new()
            } else {
                done.error_lines(&plan.url)
            },
        })
    }

    /// `alembic upgrade heads` on the scratch database, then `alembic check` there.
    async fn upgrade_from_empty(&mut self) -> anyhow::Result<(Check, Option<Check>)> {
        let plan = self.plan;
        let scratch = plan
            .scratch
            .as_ref()
            .context("no scratch database was created")?;
        let started = Instant::now();
        let upgrade = self
            .alembic(&scratch.alembic_url, &["upgrade", "heads"], idle)
            .await;
        let ms = millis(started.elapsed());
        match upgrade {
            Ok(done) if done.succeeded() => {
                let check = self.alembic_check(&scratch.alembic_url).await;
                Ok((
                    Check {
                        status: "ok",
                        ms,
                        detail: "alembic upgrade heads from an empty database".to_owned(),
                    },
                    Some(check),
                ))
            }
            Ok(done) => {
                let detail = format!(
                    "`alembic upgrade heads` from an empty database failed: {}",
                    scratch.url.redact(&done.error_line(&plan.url))
                );
                self.finding("from_empty", &detail);
                Ok((
                    Check {
                        status: "failed",
                        ms,
                        detail,
                    },
                    None,
                ))
            }
            Err(error) => Err(error),
        }
    }

    /// `alembic check`: the models against the migrated schema. Anything but "no difference" or
    /// "env.py has no models" is a finding: a check that cannot run has not passed.
    async fn alembic_check(&mut self, url: &str) -> Check {
        let started = Instant::now();
        let (status, detail) = match self.alembic(url, &["check"], idle).await {
            Ok(done) if done.succeeded() => {
                ("ok", "the models and the migrated schema agree".to_owned())
            }
            Ok(done) if done.output.contains("does not provide a MetaData object") => (
                "skipped",
                "env.py sets no target_metadata: nothing to compare".to_owned(),
            ),
            Ok(done) if done.output.contains("New upgrade operations detected") => (
                "failed",
                format!(
                    "`alembic check`: the models and the migrated schema disagree: {}",
                    self.plan.url.redact(done.last_line())
                ),
            ),
            Ok(done) => (
                "failed",
                format!(
                    "`alembic check` failed: {}",
                    done.error_line(&self.plan.url)
                ),
            ),
            Err(error) => (
                "failed",
                format!("`alembic check` could not run: {error:#}"),
            ),
        };
        if status == "failed" {
            self.finding("alembic_check", &detail);
        }
        Check {
            status,
            ms: millis(started.elapsed()),
            detail,
        }
    }

    fn finding(&mut self, kind: &'static str, message: &str) {
        self.findings.push(Finding {
            kind,
            step: None,
            revision: None,
            blocking: true,
            message: message.to_owned(),
        });
    }

    fn finish(
        mut self,
        steps: Vec<Step>,
        filled: Vec<shiftguard_sql::rehearsal::fill::Filled>,
        from_empty: Option<Check>,
        alembic_check: Option<Check>,
        startup: Duration,
    ) -> Record {
        let plan = self.plan;
        for (name, problem) in std::mem::take(&mut self.backfill_problems) {
            if !self.backfills_run.contains(&name) {
                self.findings.push(Finding {
                    kind: "backfill",
                    step: None,
                    revision: None,
                    blocking: false,
                    message: format!("backfill {name} never ran: at no step did it fit the schema (last: {problem})"),
                });
            }
        }
        let ids = |indexes: &[RevisionIndex]| -> Vec<String> {
            indexes
                .iter()
                .map(|&i| plan.graph.revision(i).id.clone())
                .collect()
        };
        let mut record = Record {
            result: "pass",
            database: plan.url.target().to_owned(),
            dialect: plan.url.dialect().to_string(),
            since: ids(&plan.since),
            heads: ids(&plan.graph.heads()),
            rows: self.args.rows,
            lock_threshold_ms: self.args.lock_threshold_ms,
            seconds: self.started.elapsed().as_secs_f64(),
            alembic_startup_ms: millis(startup),
            alembic_runs: self.alembic_runs,
            filled,
            steps,
            from_empty,
            alembic_check,
            findings: self.findings,
        };
        if record.blocking() > 0 {
            record.result = "fail";
        }
        record
    }
}

fn empty_step(number: usize, revision: Option<RevisionIndex>, graph: &RevisionGraph) -> Step {
    let revision = revision.map(|i| graph.revision(i));
    Step {
        number,
        revision: revision.map(|r| r.id.clone()),
        message: revision.and_then(|r| r.message.clone()),
        phase: revision.map(|r| r.phase.to_string()),
        phase_source: revision.map(|r| r.phase_source),
        alembic_ms: 0.0,
        locks: Vec::new(),
        lock_samples: 0,
        error: None,
        backfills: Vec::new(),
        apps: Vec::new(),
    }
}

/// `exit 1: <the error's line>` / `timed out`.
fn failure(done: &Finished, url: &DatabaseUrl) -> String {
    if done.timed_out {
        return "timed out".to_owned();
    }
    match done.code {
        Some(code) => format!("exit {code}: {}", done.error_line(url)),
        None => "killed by a signal".to_owned(),
    }
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e3
}
