//! shiftguard's AWS adapters, on the official AWS SDK for Rust. Endpoints are overridden only
//! through the SDK's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.
//!
//! **API boundary:** callers get core types (`Checkpoint`, `LambdaTarget`, `VersionStamp`) and
//! [`AwsError`]; no SDK type crosses into decision code. The adapters implement the release
//! decisions' ports (`shiftguard_core::release::ports`): `CodeDeployAdapter` the deployments,
//! `LambdaAdapter` the function versions, `CloudWatchAdapter` the health signals, `LiveOnAws`
//! the live-version evidence; their errors become `DecisionError`s there.

pub mod cloudwatch;
pub mod codedeploy;
pub mod dynamodb;
pub mod environment;
pub mod error;
pub mod lambda;
pub mod live;
pub mod secrets;

pub use cloudwatch::{CloudWatchAdapter, MetricPoint};
pub use codedeploy::{CodeDeployAdapter, HookStatus};
pub use dynamodb::DynamoCheckpoints;
pub use environment::Environment;
pub use error::AwsError;
pub use lambda::{LambdaAdapter, deadline_instant, init_json_logging};
pub use live::LiveOnAws;
