//! Every way a release decision can fail to be made. A decision that cannot be made is never a
//! pass: the hooks report `Failed` with the error as the reason, the monitor publishes
//! `GateFailing` 1, the CLI exits 2. Each variant keeps the message of the call that failed
//! (which call, which resource), never a secret.

use thiserror::Error;

use crate::schema::compat::UnknownDatabaseRevision;

/// Why a decision could not be made.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecisionError {
    /// The hook's event lacks the ids a status is reported with: nothing can be reported.
    #[error("{0}")]
    MalformedEvent(String),
    /// CodeDeploy does not know the deployment.
    #[error("{0}")]
    DeploymentNotFound(String),
    /// CodeDeploy could not be asked (throttling, network, permissions).
    #[error("{0}")]
    Deployment(String),
    /// The deployment's AppSpec is missing or names no Lambda function, alias and versions.
    #[error("{0}")]
    AppSpec(String),
    /// A function, alias or version could not be read from Lambda (missing, or the call failed).
    #[error("{0}")]
    Lambda(String),
    /// The shared database could not be read (connection, query, timeout).
    #[error("{0}")]
    Database(String),
    /// The database has applied a revision the manifest does not contain.
    #[error(transparent)]
    UnknownDatabaseRevision(#[from] UnknownDatabaseRevision),
    /// The per-version metrics could not be read.
    #[error("{0}")]
    Metrics(String),
    /// The configuration or the request cannot serve this decision (an undefined backfill, an
    /// unknown or ambiguous contract revision).
    #[error("{0}")]
    Configuration(String),
    /// The evaluation did not finish before the invocation's deadline (less the margin).
    #[error("before the invocation's deadline")]
    Deadline,
    /// The evaluation panicked (a bug): the payload's text.
    #[error("the evaluation panicked: {0}")]
    Panicked(String),
    /// CodeDeploy refused the report because the hook execution already has a status (the
    /// same event delivered twice); known from the service's error code.
    #[error("duplicate delivery: {0}")]
    DuplicateDelivery(String),
}

impl DecisionError {
    /// A panicked evaluation, from the panic's payload.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        DecisionError::Panicked(panic_text(payload))
    }

    /// The reason a hook reports with `Failed`: one line that starts with "could not decide".
    pub fn failed_reason(&self) -> String {
        match self {
            DecisionError::Deadline => format!("could not decide {self}"),
            _ => format!("could not decide: {self}"),
        }
    }
}

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_keeps_its_message() {
        let literal =
            std::panic::catch_unwind(|| panic!("index out of bounds")).expect_err("panics");
        assert_eq!(panic_text(literal.as_ref()), "index out of bounds");
        let formatted = std::panic::catch_unwind(|| panic!("{} of {}", 3, 2)).expect_err("panics");
        assert_eq!(
            DecisionError::from_panic(formatted.as_ref()),
            DecisionError::Panicked("3 of 2".to_owned())
        );
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).expect_err("panics");
        assert_eq!(panic_text(other.as_ref()), "a non-text panic");
    }

    #[test]
    fn the_reported_reason_names_the_failure() {
        assert_eq!(
            DecisionError::Deadline.failed_reason(),
            "could not decide before the invocation's deadline"
        );
        assert_eq!(
            DecisionError::Panicked("index out of bounds".into()).failed_reason(),
            "could not decide: the evaluation panicked: index out of bounds"
        );
        assert_eq!(
            DecisionError::Deployment("GetDeployment d-1: Throttling: slow down".into())
                .failed_reason(),
            "could not decide: GetDeployment d-1: Throttling: slow down"
        );
    }
}
