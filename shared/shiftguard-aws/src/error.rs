//! One error type for the AWS adapters: a message that names the call and the resource, and
//! whether a retry could help. Retry policy itself is the SDK's (standard mode), decided once.

// SdkError and its helpers are the same types in every SDK crate (aws-smithy-runtime-api).
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use thiserror::Error;

/// An AWS call that failed.
#[derive(Debug, Error)]
#[error("{message}")]
pub struct AwsError {
    pub message: String,
    /// Throttling, a timeout or a dropped connection.
    pub transient: bool,
}

impl AwsError {
    /// From an SDK error, with what was being done (`GetDeployment d-123`).
    pub fn from_sdk<E>(doing: &str, error: &SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = error.code().unwrap_or_default();
        let transient = matches!(
            error,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) || code.contains("Throttl")
            || code == "TooManyRequestsException"
            || code == "ServiceException";
        let detail = match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            _ => DisplayErrorContext(error).to_string(),
        };
        AwsError {
            message: format!("{doing}: {detail}"),
            transient,
        }
    }

    pub fn new(message: impl Into<String>) -> Self {
        AwsError {
            message: message.into(),
            transient: false,
        }
    }
}
