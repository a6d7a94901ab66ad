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
    /// unknown contract revision, no version to roll back to when one was named).
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
    /// The reason a hook reports with `Failed`: one line that starts with "could not decide".
    pub fn failed_reason(&self) -> String {
        match self {
            DecisionError::Deadline => format!("could not decide {self}"),
            _ => format!("could not decide: {self}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
