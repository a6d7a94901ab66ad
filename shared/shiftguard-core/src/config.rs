//! The project configuration file, `shiftguard.toml`: backfill definitions and where their
//! checkpoints live. Unknown keys are errors, never silently ignored.
//!
//! ```toml
//! [checkpoint]
//! store = "sql"                      # "sql" (same database, same transaction) or "dynamodb"
//! table = "shiftguard_backfill"      # SQL table, or DynamoDB table name
//!
//! [[backfill]]
//! name    = "users_display_name"
//! table   = "users"
//! key     = "id"
//! pending = "display_name IS NULL"
//! set     = "display_name = full_name"
//! ```

use std::collections::HashSet;

use serde::Deserialize;
use thiserror::Error;

use crate::names::{is_identifier, is_name, is_table_name};
use crate::release::checks::{CheckConfig, GateKind, GatesConfig, MAX_WINDOW_MINUTES};

/// The whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    #[serde(default)]
    pub backfill: Vec<BackfillConfig>,
    /// Named checks of the cutover and contract gates (see [`crate::release::checks`]).
    #[serde(default)]
    pub check: Vec<CheckConfig>,
    #[serde(default)]
    pub gates: GatesConfig,
    #[serde(default)]
    pub lint: LintConfig,
}

/// `[lint]`: what `shiftguard lint` cannot see in the revision files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LintConfig {
    /// Tables too large for a data change inside a migration (rule SG402); `"*"` for all.
    #[serde(default)]
    pub large_tables: Vec<String>,
}

/// Where backfill checkpoints are kept.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    #[serde(default)]
    pub store: CheckpointStoreKind,
    /// The SQL table (created on first use) or the DynamoDB table.
    #[serde(default = "default_checkpoint_table")]
    pub table: String,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            store: CheckpointStoreKind::default(),
            table: default_checkpoint_table(),
        }
    }
}

fn default_checkpoint_table() -> String {
    "shiftguard_backfill".to_owned()
}

/// The checkpoint store technologies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointStoreKind {
    /// A table in the backfilled database, written in each batch's transaction.
    #[default]
    Sql,
    /// A DynamoDB item, written with a conditional update after each batch.
    Dynamodb,
}

/// One backfill: which rows are pending and how to fix them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(from = "RawBackfill")]
pub struct BackfillConfig {
    /// Unique name; the checkpoint's key.
    pub name: String,
    /// Table to update (`table` or `schema.table`).
    pub table: String,
    /// Unique, orderable integer key column the batches walk.
    pub key: String,
    /// SQL predicate of rows still to do; also the guard that makes every batch idempotent.
    pub pending: String,
    /// SQL assignments (`col = expr, …`) that fix a pending row.
    pub set: String,
    /// Optional keys beside the required ones.
    pub tuning: Tuning,
}

/// How hard a backfill may push the database. Every field has a default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Rows per batch at the start of a run.
    pub batch_size: u64,
    pub min_batch_size: u64,
    pub max_batch_size: u64,
    /// The batch duration the sizer aims for, in milliseconds.
    pub target_batch_ms: u64,
    /// Sleep between batches, in milliseconds.
    pub pause_ms: u64,
    /// Wait while replica lag is above this, in milliseconds.
    pub max_replica_lag_ms: u64,
    /// SQL returning the replica lag in milliseconds (one row, one number), run on the primary.
    /// Overrides the dialect's own source (`pg_stat_replication` on PostgreSQL).
    pub replica_lag_query: Option<String>,
    /// Name of the environment variable holding a MySQL/MariaDB replica's URL, whose
    /// `SHOW REPLICA STATUS` gives the lag. (The URL itself never goes into this file.)
    pub replica_url_env: Option<String>,
    /// Lock wait limit per statement, in milliseconds.
    pub lock_timeout_ms: u64,
    /// Statement time limit, in milliseconds.
    pub statement_timeout_ms: u64,
    /// Cap on rows scanned per second (none by default).
    pub max_rows_per_second: Option<u64>,
    /// Attempts for one batch that fails with a transient error before the run gives up.
    pub max_retries: u32,
    /// Lifetime of the lease in an external checkpoint store (DynamoDB), in milliseconds;
    /// every batch renews it. A runner killed with -9 holds the backfill up for at most this.
    pub lease_ttl_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            batch_size: 1_000,
            min_batch_size: 100,
            max_batch_size: 100_000,
            target_batch_ms: 100,
            pause_ms: 0,
            max_replica_lag_ms: 1_500,
            replica_lag_query: None,
            replica_url_env: None,
            lock_timeout_ms: 2_000,
            statement_timeout_ms: 10_000,
            max_rows_per_second: None,
            max_retries: 8,
            lease_ttl_ms: 30_000,
        }
    }
}

/// A `[[backfill]]` table as written: tuning keys sit beside the required ones. (serde cannot
/// combine `flatten` with `deny_unknown_fields`, hence this flat twin of [`BackfillConfig`].)
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackfill {
    name: String,
    table: String,
    key: String,
    pending: String,
    set: String,
    batch_size: Option<u64>,
    min_batch_size: Option<u64>,
    max_batch_size: Option<u64>,
    target_batch_ms: Option<u64>,
    pause_ms: Option<u64>,
    max_replica_lag_ms: Option<u64>,
    replica_lag_query: Option<String>,
    replica_url_env: Option<String>,
    lock_timeout_ms: Option<u64>,
    statement_timeout_ms: Option<u64>,
    max_rows_per_second: Option<u64>,
    max_retries: Option<u32>,
    lease_ttl_ms: Option<u64>,
}

impl From<RawBackfill> for BackfillConfig {
    fn from(raw: RawBackfill) -> Self {
        let d = Tuning::default();
        BackfillConfig {
            name: raw.name,
            table: raw.table,
            key: raw.key,
            pending: raw.pending,
            set: raw.set,
            tuning: Tuning {
                batch_size: raw.batch_size.unwrap_or(d.batch_size),
                min_batch_size: raw.min_batch_size.unwrap_or(d.min_batch_size),
                max_batch_size: raw.max_batch_size.unwrap_or(d.max_batch_size),
                target_batch_ms: raw.target_batch_ms.unwrap_or(d.target_batch_ms),
                pause_ms: raw.pause_ms.unwrap_or(d.pause_ms),
                max_replica_lag_ms: raw.max_replica_lag_ms.unwrap_or(d.max_replica_lag_ms),
                replica_lag_query: raw.replica_lag_query,
                replica_url_env: raw.replica_url_env,
                lock_timeout_ms: raw.lock_timeout_ms.unwrap_or(d.lock_timeout_ms),
                statement_timeout_ms: raw.statement_timeout_ms.unwrap_or(d.statement_timeout_ms),
                max_rows_per_second: raw.max_rows_per_second,
                max_retries: raw.max_retries.unwrap_or(d.max_retries),
                lease_ttl_ms: raw.lease_ttl_ms.unwrap_or(d.lease_ttl_ms),
            },
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{0}")]
    Syntax(String),
    /// A backfill definition that would be unsafe or cannot work.
    #[error("backfill {name}: {problem}")]
    Backfill { name: String, problem: String },
    /// A check that cannot be used.
    #[error("check {name}: {problem}")]
    Check { name: String, problem: String },
    /// The file could not be read.
    #[error("cannot read configuration {path}: {reason}")]
    Read { path: String, reason: String },
    /// A problem in the named file.
    #[error("{path}: {error}")]
    In {
        path: String,
        error: Box<ConfigError>,
    },
}

impl ProjectConfig {
    /// Reads and validates a configuration file; errors name the file.
    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        ProjectConfig::parse(&text).map_err(|e| ConfigError::In {
            path: path.display().to_string(),
            error: Box::new(e),
        })
    }

    /// Parses and validates the text of a configuration file.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: ProjectConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(one_line(&e.to_string())))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        for backfill in &self.backfill {
            backfill.validate()?;
            if !names.insert(backfill.name.as_str()) {
                return Err(backfill.problem("is defined twice"));
            }
        }
        let mut checks = HashSet::new();
        for check in &self.check {
            let problem = check.problem().or_else(|| {
                (!checks.insert(check.name.as_str())).then(|| "is defined twice".to_owned())
            });
            if let Some(problem) = problem {
                return Err(ConfigError::Check {
                    name: check.name.clone(),
                    problem,
                });
            }
        }
        for (key, list) in [
            ("gates.cutover_backfills", &self.gates.cutover_backfills),
            ("gates.contract_backfills", &self.gates.contract_backfills),
        ] {
            if let Some(unknown) = list.iter().flatten().find(|n| self.backfill(n).is_none()) {
                return Err(ConfigError::Syntax(format!(
                    "{key} names `{unknown}`, which no [[backfill]] defines"
                )));
            }
        }
        if self.gates.cutover_health_minutes > MAX_WINDOW_MINUTES {
            return Err(ConfigError::Syntax(format!(
                "gates.cutover_health_minutes must be between 0 and {MAX_WINDOW_MINUTES} (30 days)"
            )));
        }
        if !(1..=MAX_WINDOW_MINUTES).contains(&self.gates.observation_minutes) {
            return Err(ConfigError::Syntax(format!(
                "gates.observation_minutes must be between 1 and {MAX_WINDOW_MINUTES} (30 days)"
            )));
        }
        let table = &self.checkpoint.table;
        let valid = match self.checkpoint.store {
            CheckpointStoreKind::Sql => is_table_name(table),
            // DynamoDB's own rule: 3-255 of letters, digits, `_`, `-` and `.`.
            CheckpointStoreKind::Dynamodb => {
                (3..=255).contains(&table.len())
                    && table
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            }
        };
        if !valid {
            return Err(ConfigError::Syntax(format!(
                "checkpoint.table `{table}` is not a valid {} table name",
                match self.checkpoint.store {
                    CheckpointStoreKind::Sql => "SQL",
                    CheckpointStoreKind::Dynamodb => "DynamoDB",
                }
            )));
        }
        Ok(())
    }

    /// The backfill called `name`.
    pub fn backfill(&self, name: &str) -> Option<&BackfillConfig> {
        self.backfill.iter().find(|b| b.name == name)
    }

    /// The backfills `gate` requires complete: as listed in `[gates]`, else every backfill.
    pub fn gate_backfills(&self, gate: GateKind) -> Vec<String> {
        let listed = match gate {
            GateKind::Cutover => &self.gates.cutover_backfills,
            GateKind::Contract => &self.gates.contract_backfills,
        };
        listed
            .clone()
            .unwrap_or_else(|| self.backfill.iter().map(|b| b.name.clone()).collect())
    }

    /// The checks `gate` runs.
    pub fn checks_for(&self, gate: GateKind) -> impl Iterator<Item = &CheckConfig> {
        self.check.iter().filter(move |c| c.gates.contains(&gate))
    }
}

impl BackfillConfig {
    fn problem(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError::Backfill {
            name: self.name.clone(),
            problem: problem.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !is_name(&self.name) {
            return Err(self.problem("name must be 1-100 letters, digits, `_` or `-`"));
        }
        if !is_table_name(&self.table) {
            return Err(self.problem(format!(
                "table `{}` is not a plain table name (letters, digits, `_`, optionally schema.table)",
                self.table
            )));
        }
        if !is_identifier(&self.key) {
            return Err(self.problem(format!("key `{}` is not a plain column name", self.key)));
        }
        let pending = self.pending.trim();
        let trivially_true = ["", "true", "1", "1=1", "1 = 1", "(true)", "not false"]
            .contains(&pending.to_ascii_lowercase().as_str());
        if trivially_true {
            return Err(self.problem(
                "`pending` must select only the rows still to do: it is the guard that makes re-running a batch harmless",
            ));
        }
        if self.set.trim().is_empty() {
            return Err(self.problem("`set` is empty"));
        }
        for (field, fragment) in [("pending", &self.pending), ("set", &self.set)] {
            if fragment.contains(';') || fragment.contains("--") || fragment.contains("/*") {
                return Err(self.problem(format!(
                    "`{field}` must be one SQL expression: no `;` or comments"
                )));
            }
            if !balanced(fragment) {
                return Err(self.problem(format!(
                    "`{field}` has unbalanced parentheses or quotes: it must be one SQL expression"
                )));
            }
        }
        if has_top_level_word(&self.set, "WHERE") {
            return Err(
                self.problem("`set` must hold only assignments: the WHERE clause is `pending`")
            );
        }
        let t = &self.tuning;
        if !(1 <= t.min_batch_size
            && t.min_batch_size <= t.batch_size
            && t.batch_size <= t.max_batch_size)
        {
            return Err(self.problem(format!(
                "batch sizes must satisfy 1 <= min_batch_size ({}) <= batch_size ({}) <= max_batch_size ({})",
                t.min_batch_size, t.batch_size, t.max_batch_size
            )));
        }
        if t.target_batch_ms == 0 || t.lock_timeout_ms == 0 || t.statement_timeout_ms == 0 {
            return Err(self.problem(
                "target_batch_ms, lock_timeout_ms and statement_timeout_ms must be positive",
            ));
        }
        if t.lease_ttl_ms < 1_000 {
            return Err(self.problem("lease_ttl_ms must be at least 1000"));
        }
        if t.lease_ttl_ms < 2 * t.statement_timeout_ms {
            return Err(self.problem(format!(
                "lease_ttl_ms ({}) must be at least twice statement_timeout_ms ({}): a batch must never outlive the lease it renews",
                t.lease_ttl_ms, t.statement_timeout_ms
            )));
        }
        if t.max_rows_per_second == Some(0) {
            return Err(self.problem("max_rows_per_second must be positive when set"));
        }
        if let Some(query) = &t.replica_lag_query
            && query.contains(';')
        {
            return Err(self.problem("replica_lag_query must be one statement"));
        }
        Ok(())
    }
}

/// The characters of a SQL fragment outside quoted text, each with the parenthesis depth it
/// stands at (quoted text becomes one space). `None` when a quote is left open.
fn unquoted(fragment: &str) -> Option<Vec<(char, i32)>> {
    let mut out = Vec::with_capacity(fragment.len());
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in fragment.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push((' ', depth));
            }
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, '(') => {
                out.push((c, depth));
                depth += 1;
            }
            (None, ')') => {
                depth -= 1;
                out.push((c, depth));
            }
            (None, c) => out.push((c, depth)),
        }
    }
    quote.is_none().then_some(out)
}

/// Whether parentheses nest properly and quotes close, so a fragment cannot close the
/// parenthesis the engine wraps it in (`x) OR (1=1`).
fn balanced(fragment: &str) -> bool {
    let Some(chars) = unquoted(fragment) else {
        return false;
    };
    let opened = chars.iter().filter(|&&(c, _)| c == '(').count();
    let closed = chars.iter().filter(|&&(c, _)| c == ')').count();
    opened == closed && chars.iter().all(|&(_, depth)| depth >= 0)
}

/// Whether `word` appears outside quotes and parentheses, as a whole word, in any case.
fn has_top_level_word(fragment: &str, word: &str) -> bool {
    let Some(chars) = unquoted(fragment) else {
        return false;
    };
    let top: String = chars
        .iter()
        .map(|&(c, depth)| {
            if depth == 0 && c != '(' && c != ')' {
                c
            } else {
                ' '
            }
        })
        .collect();
    top.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w.eq_ignore_ascii_case(word))
}

fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "|")
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[[backfill]]
name    = "users_display_name"
table   = "users"
key     = "id"
pending = "display_name IS NULL"
set     = "display_name = full_name"
"#;

    #[test]
    fn defaults_fill_what_is_not_given() {
        let config = ProjectConfig::parse(MINIMAL).expect("valid");
        assert_eq!(config.checkpoint, CheckpointConfig::default());
        let backfill = config.backfill("users_display_name").expect("defined");
        assert_eq!(backfill.tuning, Tuning::default());
    }

    #[test]
    fn fragments_may_quote_what_they_like() {
        assert!(balanced("name = 'a)b' AND (x IS NULL)"));
        assert!(!balanced("name = 'open"));
        assert!(!balanced("(a) OR b("));
        assert!(!balanced("a) OR (b"));
        assert!(!has_top_level_word(
            "note = 'where' || where_clause",
            "WHERE"
        ));
        assert!(has_top_level_word("a = b where c", "WHERE"));
        assert!(!has_top_level_word(
            "a = (SELECT x FROM t WHERE t.id = id)",
            "WHERE"
        ));
    }

    #[test]
    fn tuning_and_checkpoint_are_read() {
        let text = format!(
            "[checkpoint]\nstore = \"dynamodb\"\ntable = \"shiftguard-checkpoints\"\n{MINIMAL}batch_size = 500\nmax_rows_per_second = 10000\n"
        );
        let config = ProjectConfig::parse(&text).expect("valid");
        assert_eq!(config.checkpoint.store, CheckpointStoreKind::Dynamodb);
        assert_eq!(config.backfill[0].tuning.batch_size, 500);
        assert_eq!(config.backfill[0].tuning.max_rows_per_second, Some(10_000));
    }

    #[test]
    fn rejects_unsafe_or_unknown() {
        let with = |line: &str| format!("{MINIMAL}{line}\n");
        let cases = [
            (with("batchsize = 10"), "unknown field `batchsize`"),
            (
                MINIMAL.replace("display_name IS NULL", "1=1"),
                "backfill users_display_name: `pending` must select only the rows still to do",
            ),
            (
                MINIMAL.replace("pending = \"display_name IS NULL\"\n", ""),
                "missing field `pending`",
            ),
            (
                MINIMAL.replace("\"users\"", "\"users; drop table x\""),
                "table `users; drop table x` is not a plain table name",
            ),
            (
                MINIMAL.replace("\"id\"", "\"id desc\""),
                "key `id desc` is not a plain column name",
            ),
            (
                MINIMAL.replace("full_name\"", "full_name; DELETE FROM users\""),
                "`set` must be one SQL expression",
            ),
            (
                with("min_batch_size = 5000"),
                "batch sizes must satisfy 1 <= min_batch_size (5000) <= batch_size (1000)",
            ),
            (format!("{MINIMAL}{MINIMAL}"), "is defined twice"),
            (
                MINIMAL.replace("display_name IS NULL", "display_name IS NULL) OR (1=1"),
                "`pending` has unbalanced parentheses or quotes",
            ),
            (
                MINIMAL.replace("= full_name\"", "= full_name WHERE id > 0\""),
                "`set` must hold only assignments",
            ),
            (
                with("lease_ttl_ms = 5000"),
                "lease_ttl_ms (5000) must be at least twice statement_timeout_ms (10000)",
            ),
            (
                "[checkpoint]\nstore = \"redis\"\n".to_owned(),
                "unknown variant `redis`",
            ),
        ];
        for (text, expected) in cases {
            let error = ProjectConfig::parse(&text).expect_err(&text).to_string();
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
            assert!(!error.contains('\n'), "one line: {error:?}");
        }
    }
}
