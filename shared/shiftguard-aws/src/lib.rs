//! shiftguard's AWS adapters, on the official AWS SDK for Rust. Endpoints are overridden only
//! through the SDK's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.
//!
//! **API boundary:** callers get core types (`Checkpoint`, `LambdaTarget`, `VersionStamp`) and
//! [`AwsError`]; no SDK type crosses into decision code. The adapters implement the release
//! decisions' ports (`shiftguard_core::release::ports`): `CodeDeployAdapter` the deployments,
//! `LambdaAdapter` the function versions, `CloudWatchAdapter` the health signals, `LiveOnAws`
//! the live-version evidence; their errors become `DecisionError`s there. `Notifier` sends the
//! notices core's `release::notify` words (SNS, EventBridge).

pub mod cloudwatch;
pub mod codedeploy;
pub mod dynamodb;
pub mod environment;
pub mod error;
pub mod holds;
pub mod lambda;
pub mod live;
pub mod notify;
pub mod secrets;

pub use cloudwatch::{CloudWatchAdapter, MetricPoint};
pub use codedeploy::{CodeDeployAdapter, HookStatus};
pub use dynamodb::DynamoCheckpoints;
pub use environment::Environment;
pub use error::AwsError;
pub use holds::DynamoHolds;
pub use lambda::{LambdaAdapter, deadline_instant, init_json_logging};
pub use live::LiveOnAws;
pub use notify::{Notifier, NotifyTargets};

use std::time::Duration;

/// `config` with every call bounded: a whole operation, retries included, ends within `within`,
/// and each attempt (and connecting) within a third of it, so a hung endpoint costs at most one
/// attempt's share and the SDK's retries still fit; but an attempt is allowed a second at least
/// (up to `within`), or a short margin would time every call out.
pub fn bounded(config: &aws_config::SdkConfig, within: Duration) -> aws_config::SdkConfig {
    let attempt = (within / 3).max(Duration::from_secs(1)).min(within);
    config
        .to_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_timeout(within)
                .operation_attempt_timeout(attempt)
                .connect_timeout(attempt)
                .build(),
        )
        .build()
}
