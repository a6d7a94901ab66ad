//! One reader of a Lambda function's environment for every function's `config.rs`. Taken
//! through a lookup function, so tests pass a map instead of changing the process environment;
//! every error names the variable at fault and the value it had.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use shiftguard_core::settings::within;

use crate::secrets::DatabaseSource;

/// A lookup over fixed `(name, value)` pairs, as tests (and callers that already hold the
/// values) pass it to the readers.
pub fn fixed<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// A function's environment variables.
#[derive(Debug)]
pub struct Environment<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Environment<F> {
    pub fn new(lookup: F) -> Self {
        Environment { lookup }
    }

    /// The variable's value as set, even empty.
    pub fn raw(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
    }

    /// The variable's value, when set to something other than blanks.
    pub fn get(&self, name: &str) -> Option<String> {
        self.raw(name).filter(|v| !v.trim().is_empty())
    }

    /// Milliseconds in `range`, or `default` when unset.
    pub fn millis(
        &self,
        name: &str,
        default: Duration,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, String> {
        let Some(ms) = self.get(name) else {
            return Ok(default);
        };
        let ms: u64 = ms
            .parse()
            .map_err(|_| format!("{name} is `{ms}`: expected milliseconds"))?;
        within(name, ms, range)?;
        Ok(Duration::from_millis(ms))
    }

    /// A number in `range`, when set.
    pub fn number(&self, name: &str, range: RangeInclusive<f64>) -> Result<Option<f64>, String> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let n = v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| format!("{name} is `{v}`: expected a non-negative number"))?;
        if !range.contains(&n) {
            return Err(format!(
                "{name} = {v} is out of range: it must be between {} and {}",
                range.start(),
                range.end()
            ));
        }
        Ok(Some(n))
    }

    /// A file packaged with the function: the path in `variable`, else `file` in
    /// `$LAMBDA_TASK_ROOT`, else `file` in the working directory.
    pub fn task_file(&self, variable: &str, file: &str) -> PathBuf {
        self.get(variable)
            .map(PathBuf::from)
            .or_else(|| {
                self.get("LAMBDA_TASK_ROOT")
                    .map(|root| PathBuf::from(root).join(file))
            })
            .unwrap_or_else(|| PathBuf::from(file))
    }

    /// An optional packaged file: the path in `variable`, else `file` in `$LAMBDA_TASK_ROOT`
    /// when it exists there.
    pub fn optional_task_file(&self, variable: &str, file: &str) -> Option<PathBuf> {
        self.get(variable).map(PathBuf::from).or_else(|| {
            self.get("LAMBDA_TASK_ROOT")
                .map(|root| PathBuf::from(root).join(file))
                .filter(|path| path.exists())
        })
    }

    /// `DATABASE_URL` or `DATABASE_SECRET_ARN`, exactly one.
    pub fn database(&self) -> Result<DatabaseSource, String> {
        DatabaseSource::from_lookup(&self.lookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(
        pairs: &'static [(&'static str, &'static str)],
    ) -> Environment<impl Fn(&str) -> Option<String>> {
        Environment::new(fixed(pairs))
    }

    #[test]
    fn values_defaults_and_errors_name_the_variable() {
        let env = environment(&[
            ("A_MS", "250"),
            ("BAD_MS", "soon"),
            ("N", "-1"),
            ("BLANK", "  "),
        ]);
        assert_eq!(
            env.millis("A_MS", Duration::ZERO, 250..=300),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            env.millis("A_MS", Duration::ZERO, 0..=249),
            Err("A_MS = 250 is out of range: it must be between 0 and 249".to_owned())
        );
        assert_eq!(
            env.millis("UNSET", Duration::from_secs(3), 0..=1),
            Ok(Duration::from_secs(3))
        );
        assert_eq!(
            env.millis("BAD_MS", Duration::ZERO, 0..=1),
            Err("BAD_MS is `soon`: expected milliseconds".to_owned())
        );
        assert_eq!(
            env.number("N", 0.0..=1.0),
            Err("N is `-1`: expected a non-negative number".to_owned())
        );
        assert_eq!(env.number("A_MS", 0.0..=250.0), Ok(Some(250.0)));
        assert_eq!(
            env.number("A_MS", 0.0..=249.5),
            Err("A_MS = 250 is out of range: it must be between 0 and 249.5".to_owned())
        );
        assert_eq!(env.number("UNSET", 0.0..=1.0), Ok(None));
        assert_eq!(env.get("BLANK"), None);
        assert_eq!(env.raw("BLANK").as_deref(), Some("  "));
    }

    #[test]
    fn packaged_files_come_from_the_variable_or_the_task_root() {
        let env = environment(&[("LAMBDA_TASK_ROOT", "/var/task")]);
        assert_eq!(
            env.task_file("SHIFTGUARD_MANIFEST", "manifest.json"),
            PathBuf::from("/var/task/manifest.json")
        );
        assert_eq!(
            env.optional_task_file("SHIFTGUARD_CONFIG", "surely-absent.toml"),
            None
        );
        let env = environment(&[("SHIFTGUARD_MANIFEST", "/opt/m.json")]);
        assert_eq!(
            env.task_file("SHIFTGUARD_MANIFEST", "manifest.json"),
            PathBuf::from("/opt/m.json")
        );
        assert_eq!(
            environment(&[]).task_file("X", "manifest.json"),
            PathBuf::from("manifest.json")
        );
    }
}
