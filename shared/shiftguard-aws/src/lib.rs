//! shiftguard's AWS adapters, on the official AWS SDK for Rust. Endpoints are overridden only
//! through the SDK's standard `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.
//!
//! **API boundary:** callers get core types (`Checkpoint`, `StoreError`); no SDK type crosses
//! into decision code.

pub mod dynamodb;

pub use dynamodb::DynamoCheckpoints;
