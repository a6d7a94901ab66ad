//! The programs a rehearsal runs: the project's own Alembic CLI and each app build's test
//! command. Output goes to files (a chatty test can never block on a full pipe), and the wait
//! polls, so the caller can sample locks meanwhile and stop a command at its time limit.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// How often a running program is polled (and locks are sampled).
const POLL: Duration = Duration::from_millis(5);

/// What a finished program left.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was stopped at its time limit or killed by a signal.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub elapsed: Duration,
    /// stdout then stderr.
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
    command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?);
    let program = command.get_program().to_string_lossy().into_owned();
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot run {program}"))?;
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait()? {
            break (Some(status), false);
        }
        if started.elapsed() >= limit {
            let _ = child.kill();
            let _ = child.wait();
            break (None, true);
        }
        if let Err(error) = tick().await {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
        tokio::time::sleep(POLL).await;
    };
    let elapsed = started.elapsed();
    let mut output = String::new();
    for file in [&mut stdout, &mut stderr] {
        file.rewind()?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        output.push_str(&String::from_utf8_lossy(&bytes));
    }
    Ok(Finished {
        code: status.and_then(|s| s.code()),
        timed_out,
        elapsed,
        output,
    })
}

/// Nothing to do between polls.
pub async fn idle() -> anyhow::Result<()> {
    Ok(())
}

/// The project's Alembic, run in the project directory against one database: the URL is given
/// to env.py as `SQLALCHEMY_URL` and `DATABASE_URL`, the two names env.py files read it from.
#[derive(Debug)]
pub struct Alembic {
    pub program: PathBuf,
    pub project: PathBuf,
}

impl Alembic {
    pub fn command(&self, url: &str, args: &[&str]) -> Command {
        let mut command = Command::new(&self.program);
        command
            .args(args)
            .current_dir(&self.project)
            .env("SQLALCHEMY_URL", url)
            .env("DATABASE_URL", url);
        command
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
        let mut slow = Command::new("sh");
        slow.args(["-c", "sleep 5"]);
        let done = run(slow, Duration::from_millis(100), idle)
            .await
            .expect("ran");
        assert!(done.timed_out && done.code.is_none());
    }
}
