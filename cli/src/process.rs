//! The programs shiftguard runs: the project's own Alembic CLI (`rehearse`, `migrate`) and each
//! app build's test command. Output goes to files (a chatty test can never block on a full
//! pipe), and the wait polls, so the caller can sample locks meanwhile and stop a command at its
//! time limit.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use shiftguard_sql::{DatabaseUrl, Dialect};

/// How often a running program is polled (and locks are sampled).
const POLL: Duration = Duration::from_millis(5);

/// The most of each stream kept in memory: its end, where the error is (a test suite's 60 MB of
/// output is read as its last 16 KiB).
const TAIL_BYTES: u64 = 16 * 1024;

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was stopped at its time limit or killed by a signal.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// The end of stdout, then the end of stderr (at most [`TAIL_BYTES`] of each).
    pub output: String,
}

impl Finished {
    pub fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// The last non-empty line, for one-line messages.
    pub fn last_line(&self) -> &str {
        self.output
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no output")
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.output.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The line that names the error, for one-line messages: a Python exception's own line (not
    /// SQLAlchemy's "Background on this error" after it), else the last line. Without `url`'s
    /// password (removed before the line is cut, so no part of it is left).
    pub fn error_line(&self, url: &DatabaseUrl) -> String {
        let line = located_error(&self.output)
            .first()
            .copied()
            .unwrap_or_else(|| self.last_line());
        clipped(&url.redact(line))
    }

    /// The lines that carry the error, at most [`ERROR_LINES`], each at most [`ERROR_LINE_CHARS`]
    /// characters: the last Python traceback's exception and what follows it (SQLAlchemy's
    /// DETAIL and statement), else pytest's FAILED/ERROR summary or its `E` lines, else the last
    /// lines of the output. Without `url`'s password, as [`Finished::error_line`].
    pub fn error_lines(&self, url: &DatabaseUrl) -> Vec<String> {
        let mut lines = located_error(&self.output);
        if lines.is_empty() {
            lines = self
                .output
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            lines.drain(..lines.len().saturating_sub(3));
        }
        lines.truncate(ERROR_LINES);
        lines.into_iter().map(|l| clipped(&url.redact(l))).collect()
    }
}

/// The most lines [`Finished::error_lines`] gives.
pub const ERROR_LINES: usize = 8;
/// The longest line [`Finished::error_lines`] gives (a `[parameters: …]` line can be megabytes).
pub const ERROR_LINE_CHARS: usize = 300;

fn clipped(line: &str) -> String {
    let line = line.trim_end();
    match line.char_indices().nth(ERROR_LINE_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// The error lines of a Python program's output, if it has any: the exception line of the last
/// traceback and the lines after it up to a blank line; else pytest's summary lines (`FAILED …`,
/// `ERROR …`); else its `E   ` lines.
fn located_error(output: &str) -> Vec<&str> {
    let lines: Vec<&str> = output.lines().collect();
    if let Some(start) = lines
        .iter()
        .rposition(|l| l.starts_with("Traceback (most recent call last):"))
    {
        // The frames are indented; the exception is the first line that is not.
        let exception = lines[start + 1..]
            .iter()
            .position(|l| !l.is_empty() && !l.starts_with([' ', '\t']))
            .map(|at| start + 1 + at);
        if let Some(first) = exception {
            return lines[first..]
                .iter()
                .take_while(|l| !l.trim().is_empty())
                .copied()
                .collect();
        }
    }
    let summary: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("FAILED ") || l.starts_with("ERROR "))
        .copied()
        .collect();
    if !summary.is_empty() {
        return summary;
    }
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("E ").map(str::trim_start))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs `command` to its end or `limit`, calling `tick` between polls (errors from `tick` are
/// the caller's: the program is killed and the error returned).
pub async fn run(
    mut command: Command,
    limit: Duration,
    mut tick: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Finished> {
    let mut stdout = tempfile::tempfile().context("cannot create a file for the output")?;
    let mut stderr = tempfile::tempfile().context("cannot create a file for the output")?;
    // Its own process group, so that a time limit stops what the shell started as well.
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .process_group(0);
    let program = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            // What it left running in the background goes with it (`sleep 77 &`).
            kill_group(child.id());
            break (Some(status), false);
        }
        if started.elapsed() >= limit {
            stop(&mut child);
            break (None, true);
        }
        if let Err(error) = tick().await {
            stop(&mut child);
            return Err(error);
        }
        tokio::time::sleep(POLL).await;
    };
    let elapsed = started.elapsed();
    let mut output = String::new();
    for file in [&mut stdout, &mut stderr] {
        output.push_str(&tail_of(file)?);
    }
    Ok(Finished {
        code: status.and_then(|s| s.code()),
        timed_out,
        elapsed,
        output,
    })
}

/// The last [`TAIL_BYTES`] of an output file, from the start of a line when it was cut.
fn tail_of(file: &mut std::fs::File) -> std::io::Result<String> {
    let length = file.seek(SeekFrom::End(0))?;
    let start = length.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((length - start) as usize);
    file.take(TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(match (start > 0, text.find('\n')) {
        (true, Some(first)) => text[first + 1..].to_owned(),
        _ => text.into_owned(),
    })
}

/// Kills a process group (a shell's children too); a group already gone is nothing to do.
fn kill_group(leader: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{leader}")])
        .stderr(Stdio::null())
        .status();
}

/// Kills the program's whole process group, then reaps it.
fn stop(child: &mut Child) {
    kill_group(child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// Nothing to do between polls.
pub async fn idle() -> anyhow::Result<()> {
    Ok(())
}

/// The project's Alembic, run in the project directory against one database. The URL reaches
/// env.py three ways, so that any conventional env.py migrates the database given and no other:
/// as `sqlalchemy.url` in a copy of the project's alembic.ini (its `%(here)s` spelled out, so
/// every path in it still resolves), and as `SQLALCHEMY_URL` and `DATABASE_URL`.
#[derive(Debug)]
pub struct Alembic {
    program: PathBuf,
    project: PathBuf,
    /// The project's alembic.ini, `None` for a pyproject.toml-only project.
    ini: Option<String>,
    dir: tempfile::TempDir,
}

impl Alembic {
    /// The Alembic `program` for the project in `project` (a directory holding alembic.ini
    /// and/or pyproject.toml; `--migrations` names it in messages).
    pub fn new(program: PathBuf, project: &Path) -> anyhow::Result<Self> {
        if !project.join("alembic.ini").is_file() && !project.join("pyproject.toml").is_file() {
            anyhow::bail!(
                "--migrations {}: not an Alembic project directory (no alembic.ini or pyproject.toml); Alembic runs there",
                project.display()
            );
        }
        let project = std::path::absolute(project)?;
        let path = project.join("alembic.ini");
        let ini = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text.replace("%(here)s", &project.to_string_lossy())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Alembic {
            program,
            project,
            ini,
            dir: tempfile::tempdir().context("cannot create a temporary directory")?,
        })
    }

    pub fn project(&self) -> &Path {
        &self.project
    }

    pub fn command(&self, url: &str, args: &[&str]) -> anyhow::Result<Command> {
        let mut command = Command::new(&self.program);
        if let Some(ini) = &self.ini {
            let path = self.dir.path().join("alembic.ini");
            std::fs::write(&path, with_url(ini, url))
                .with_context(|| format!("cannot write {}", path.display()))?;
            command.arg("-c").arg(path);
        }
        command
            .args(args)
            .current_dir(&self.project)
            .env("SQLALCHEMY_URL", url)
            .env("DATABASE_URL", url);
        Ok(command)
    }
}

/// `ini` with `sqlalchemy.url` in `[alembic]` set to `url` (configparser: `%` doubled; a value
/// continued on indented lines is dropped with its key).
fn with_url(ini: &str, url: &str) -> String {
    let setting = format!("sqlalchemy.url = {}\n", url.replace('%', "%%"));
    let mut out = String::with_capacity(ini.len() + setting.len());
    let (mut section, mut skipping, mut placed) = (String::new(), false, false);
    for line in ini.lines() {
        let trimmed = line.trim();
        if skipping && line.starts_with([' ', '\t']) && !trimmed.is_empty() {
            continue;
        }
        skipping = false;
        if let Some(name) = trimmed.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            out.push_str(line);
            out.push('\n');
            if section == "alembic" && !placed {
                out.push_str(&setting);
                placed = true;
            }
            continue;
        }
        let key = trimmed.split_once(['=', ':']).map(|(k, _)| k.trim());
        if section == "alembic" && key == Some("sqlalchemy.url") {
            skipping = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if placed {
        out
    } else {
        format!("[alembic]\n{setting}{out}")
    }
}

/// The URL for Alembic: SQLAlchemy needs a driver it has (`postgresql+psycopg`,
/// `mysql+pymysql`); a URL that names its driver (`postgresql+asyncpg://…`) is kept as given.
/// A SQLite file is named by the absolute path shiftguard reads (SQLAlchemy's `sqlite:///x`
/// is relative, and Alembic runs in the project directory), so both open the same file.
pub fn alembic_url(given: &str, url: &DatabaseUrl) -> String {
    if let Some(path) = url.sqlite_path() {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let path = path.to_string_lossy();
        return format!("sqlite:////{}", path.trim_start_matches('/'));
    }
    let (scheme, rest) = given.split_once("://").unwrap_or((given, ""));
    if scheme.contains('+') {
        return given.to_owned();
    }
    match url.dialect() {
        Dialect::Postgres => format!("postgresql+psycopg://{rest}"),
        Dialect::MySql => format!("mysql+pymysql://{rest}"),
        Dialect::Sqlite => given.to_owned(),
    }
}

/// The Alembic to run: `explicit` (--alembic / SHIFTGUARD_ALEMBIC), else `alembic` on PATH.
pub fn find_alembic(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        anyhow::ensure!(path.is_file(), "Alembic not found at {}", path.display());
        // Alembic runs in the project directory: a relative path must still find it.
        return Ok(std::path::absolute(path)?);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("alembic"))
                .find(|candidate| candidate.is_file())
        })
        .context(
            "Alembic is not installed (no `alembic` on PATH; set SHIFTGUARD_ALEMBIC or --alembic)",
        )
}

/// Whether the shell finds the program `command` starts with (a path, a builtin, or on PATH).
pub fn command_exists(command: &str) -> bool {
    let Some(first) = command
        .split_whitespace()
        .find(|word| !word.contains('=') || word.starts_with(['"', '\'']))
    else {
        return false;
    };
    Command::new("sh")
        .args(["-c", "command -v -- \"$1\" >/dev/null", "sh", first])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_the_way_the_shell_finds_them() {
        assert!(command_exists("sh -c true"));
        assert!(command_exists("FOO=1 true"));
        assert!(command_exists("/bin/sh -c true"));
        assert!(!command_exists("no-such-program-here --flag"));
        assert!(!command_exists("   "));
    }

    #[test]
    fn the_url_replaces_the_ini_s_own() {
        let ini = "[alembic]\nscript_location = /p/migrations\nsqlalchemy.url = sqlite:///dev.db\n    continued\n[loggers]\nkeys = root\n";
        assert_eq!(
            with_url(ini, "postgresql+psycopg://u:p%40ss@db/x"),
            "[alembic]\nsqlalchemy.url = postgresql+psycopg://u:p%%40ss@db/x\nscript_location = /p/migrations\n[loggers]\nkeys = root\n"
        );
        assert_eq!(
            with_url("[loggers]\nkeys = root\n", "sqlite:////x.db"),
            "[alembic]\nsqlalchemy.url = sqlite:////x.db\n[loggers]\nkeys = root\n"
        );
    }

    fn finished(output: &str) -> Finished {
        Finished {
            code: Some(1),
            timed_out: false,
            elapsed: Duration::ZERO,
            output: output.to_owned(),
        }
    }

    #[test]
    fn the_error_lines_are_the_exception_not_sqlalchemy_s_last_line() {
        let url = DatabaseUrl::parse("postgres://u:hunter2@db/app").expect("url");
        let traceback = "running the build's tests\n\
            Traceback (most recent call last):\n  File \"t.py\", line 3, in <module>\n    c.execute(x)\n    ^^^^^^^^^^^^\n\
            ValueError: an earlier error\n\n\
            The above exception was the direct cause of the following exception:\n\n\
            Traceback (most recent call last):\n  File \"t.py\", line 5, in <module>\n    raise\n\
            sqlalchemy.exc.IntegrityError: (psycopg.errors.NotNullViolation) null value in column \"customer_email\" violates not-null constraint\n\
            DETAIL:  Failing row contains (1, null).\n\
            [SQL: INSERT INTO orders (customer_id) VALUES (%(customer_id)s)]\n\
            (Background on this error at: https://sqlalche.me/e/20/gkpj)\n";
        let done = finished(traceback);
        assert_eq!(
            done.last_line(),
            "(Background on this error at: https://sqlalche.me/e/20/gkpj)"
        );
        assert!(
            done.error_line(&url)
                .starts_with("sqlalchemy.exc.IntegrityError: (psycopg.errors.NotNullViolation)")
        );
        let lines = done.error_lines(&url);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[1].starts_with("DETAIL:") && lines[3].starts_with("(Background"));
        // pytest: the summary lines, else its E lines.
        let pytest = "tests/test_db.py F\n\
            E       sqlalchemy.exc.IntegrityError: (psycopg.errors.NotNullViolation) null value\n\
            =========================== short test summary info ============================\n\
            FAILED tests/test_db.py::test_insert - sqlalchemy.exc.IntegrityError: (psycopg.errors.NotNullViolation) null value\n\
            ============================== 1 failed in 0.12s ===============================\n";
        assert_eq!(
            finished(pytest).error_lines(&url),
            [
                "FAILED tests/test_db.py::test_insert - sqlalchemy.exc.IntegrityError: (psycopg.errors.NotNullViolation) null value"
            ]
        );
        let e_only =
            finished("E       AssertionError: 3 != 4\nE        +  where 3 = f()\n1 failed\n");
        assert_eq!(
            e_only.error_lines(&url),
            ["AssertionError: 3 != 4", "+  where 3 = f()"]
        );
        // Anything else: its last three lines; and every line is bounded.
        let plain = finished(&format!("one\ntwo\n\nthree\nfour {}\n", "x".repeat(1000)));
        let lines = plain.error_lines(&url);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "two");
        assert_eq!(lines[2].chars().count(), ERROR_LINE_CHARS + 1);
        assert_eq!(plain.error_line(&url), lines[2]);
        let many = finished(&format!(
            "Traceback (most recent call last):\n  File x\nE: boom\n{}",
            "more\n".repeat(50)
        ));
        assert_eq!(many.error_lines(&url).len(), ERROR_LINES);
        // The password is removed before a line is cut: no part of it is left.
        let long = finished(&format!("{}hunter2\n", "x".repeat(ERROR_LINE_CHARS - 3)));
        assert!(
            !long.error_line(&url).contains("hun"),
            "{}",
            long.error_line(&url)
        );
    }

    #[tokio::test]
    async fn output_exit_code_and_the_time_limit() {
        let mut shell = Command::new("sh");
        shell.args(["-c", "echo out; echo err >&2; exit 3"]);
        let done = run(shell, Duration::from_secs(10), idle)
            .await
            .expect("ran");
        assert_eq!(done.code, Some(3));
        assert!(!done.succeeded() && !done.timed_out);
        assert_eq!(done.output, "out\nerr\n");
        assert_eq!(done.last_line(), "err");
        // The shell's child is stopped with it: nothing writes the marker afterwards.
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("late");
        let mut slow = Command::new("sh");
        slow.args([
            "-c",
            &format!("(sleep 1; touch {}) & wait", marker.display()),
        ]);
        let done = run(slow, Duration::from_millis(100), idle)
            .await
            .expect("ran");
        assert!(done.timed_out && done.code.is_none());
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            !marker.exists(),
            "the shell's child outlived the time limit"
        );
    }

    #[tokio::test]
    async fn a_command_leaves_nothing_running_and_its_output_is_read_as_a_bounded_tail() {
        // A child the shell leaves behind when it exits is stopped with it.
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("late");
        let mut detached = Command::new("sh");
        detached.args([
            "-c",
            &format!("(sleep 1; touch {}) & exit 0", marker.display()),
        ]);
        let done = run(detached, Duration::from_secs(10), idle)
            .await
            .expect("ran");
        assert!(done.succeeded());
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!marker.exists(), "a background child outlived its command");

        // 20 MB of output: only its end is read, whole lines, the last one included.
        let mut chatty = Command::new("sh");
        chatty.args([
            "-c",
            "yes 'a line of a chatty test suite' | head -c 20000000; echo; echo 'the error at the end' >&2",
        ]);
        let done = run(chatty, Duration::from_secs(30), idle)
            .await
            .expect("ran");
        assert!(
            done.output.len() as u64 <= 2 * TAIL_BYTES,
            "{}",
            done.output.len()
        );
        assert_eq!(done.last_line(), "the error at the end");
        assert!(done.output.starts_with("a line of a chatty test suite\n"));
    }
}
