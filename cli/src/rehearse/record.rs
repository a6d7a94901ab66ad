//! The rehearsal's record: what `--format json` prints (a stable shape: fields are only ever
//! added), what the human, JUnit and HTML outputs are drawn from.

use serde::Serialize;
use shiftguard_core::rehearsal::{Confirmation, HeldLock};
use shiftguard_core::{PhaseSource, Reason};
use shiftguard_sql::rehearsal::fill::Filled;

#[derive(Debug, Serialize)]
pub struct Record {
    /// `pass` or `fail`.
    pub result: &'static str,
    pub database: String,
    pub dialect: String,
    pub since: Vec<String>,
    pub heads: Vec<String>,
    pub rows: u64,
    pub lock_threshold_ms: u64,
    pub seconds: f64,
    /// One `alembic heads` (no database): what every Alembic command pays before it works.
    pub alembic_startup_ms: f64,
    pub alembic_runs: u32,
    pub filled: Vec<Filled>,
    /// Step 0 is the starting point (`--since`); the others are one revision each.
    pub steps: Vec<Step>,
    pub from_empty: Option<Check>,
    pub alembic_check: Option<Check>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub number: usize,
    /// `None` for step 0.
    pub revision: Option<String>,
    pub message: Option<String>,
    pub phase: Option<String>,
    pub phase_source: Option<PhaseSource>,
    pub alembic_ms: f64,
    /// Every table lock seen held while the step ran (PostgreSQL), strongest first.
    pub locks: Vec<HeldLock>,
    pub lock_samples: u64,
    /// `None` where Alembic succeeded.
    pub error: Option<String>,
    pub backfills: Vec<BackfillRun>,
    pub apps: Vec<AppRun>,
}

#[derive(Debug, Serialize)]
pub struct BackfillRun {
    pub name: String,
    pub rows: u64,
    pub ms: f64,
    pub rows_per_second: f64,
    /// `None` where it completed.
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct AppRun {
    /// The build's revision, as given to --app.
    pub build: String,
    pub command: String,
    pub fits: bool,
    pub reasons: Vec<Reason>,
    pub passed: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub ms: f64,
    pub outcome: Confirmation,
    /// The finding this outcome made (`fits+FAILS`, `refused+passes`), if any.
    pub finding: Option<String>,
    /// The last lines of its output.
    pub output: String,
    /// When its tests failed: the lines of its output that carry the error (a Python
    /// exception and SQLAlchemy's detail, or pytest's summary), bounded.
    pub error_lines: Vec<String>,
}

/// The from-empty upgrade and `alembic check`.
#[derive(Debug, Serialize)]
pub struct Check {
    /// `ok`, `failed` or `skipped`.
    pub status: &'static str,
    pub ms: f64,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Finding {
    /// `rule`, `lock`, `alembic`, `backfill`, `from_empty`, `alembic_check`, `conservative`.
    pub kind: &'static str,
    pub step: Option<usize>,
    pub revision: Option<String>,
    /// A blocking finding fails the rehearsal (exit 1); the others are notes.
    pub blocking: bool,
    pub message: String,
}

impl Record {
    pub fn blocking(&self) -> usize {
        self.findings.iter().filter(|f| f.blocking).count()
    }
}
