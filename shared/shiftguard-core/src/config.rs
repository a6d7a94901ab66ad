//! The project configuration file, `shiftguard.toml`: it composes each concern's own section
//! (`[[backfill]]` and `[checkpoint]` from [`crate::backfill`], `[[check]]` and `[gates]` from
//! [`crate::release::checks`], `[lint]` from [`crate::lint`]), validates each, and the
//! references between them. Unknown keys are errors, never silently ignored.
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

use crate::backfill::{BackfillConfig, CheckpointConfig, CheckpointStoreKind};
use crate::lint::LintConfig;
use crate::names::is_table_name;
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
            let problem = backfill.problem().or_else(|| {
                (!names.insert(backfill.name.as_str())).then(|| "is defined twice".to_owned())
            });
            if let Some(problem) = problem {
                return Err(ConfigError::Backfill {
                    name: backfill.name.clone(),
                    problem,
                });
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
        if let Some(problem) = self.gates.observe.problem() {
            return Err(ConfigError::Syntax(format!("gates.observe: {problem}")));
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
    use crate::backfill::Tuning;

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
                "`set` holds a `;`: it must be one SQL expression",
            ),
            (
                with("min_batch_size = 5000"),
                "batch sizes must satisfy min_batch_size (5000) <= batch_size (1000)",
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
