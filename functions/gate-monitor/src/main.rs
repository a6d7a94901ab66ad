//! The gate monitor, invoked on a schedule (every minute): evaluates the gates of every active
//! deployment of the configured deployment groups and publishes `GateFailing` metrics, because
//! between canary steps CodeDeploy listens only to alarms. Configuration and clients once per
//! cold start; [`shiftguard_hooks::monitor`] per invocation.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use shiftguard_hooks::config::HookConfig;
use shiftguard_hooks::{Deps, deployment_groups, monitor};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .with_current_span(false)
        .with_ansi(false)
        .init();
    let config = HookConfig::from_lookup(|name| std::env::var(name).ok())?;
    let groups =
        deployment_groups(&std::env::var("SHIFTGUARD_DEPLOYMENT_GROUPS").unwrap_or_default())?;
    let aws = aws_config::load_from_env().await;
    let deps = Arc::new(Deps::build(&config, &aws).await?);
    let groups = Arc::new(groups);
    lambda_runtime::run(service_fn(move |_event: LambdaEvent<serde_json::Value>| {
        let (deps, groups) = (Arc::clone(&deps), Arc::clone(&groups));
        async move {
            let reports = monitor(deps, &groups).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(reports)?)
        }
    }))
    .await
}
