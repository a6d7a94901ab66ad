//! The CodeDeploy `BeforeAllowTraffic` hook: configuration and clients once per cold start, then one
//! [`shiftguard_hooks::handle`] per invocation with the invocation's deadline less a margin.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use shiftguard_aws::deadline_instant;
use shiftguard_hooks::config::HookConfig;
use shiftguard_hooks::{Deps, Phase, handle};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .with_current_span(false)
        .with_ansi(false)
        .init();
    let config = HookConfig::from_lookup(|name| std::env::var(name).ok())?;
    let aws = aws_config::load_from_env().await;
    let deps = Arc::new(Deps::build(&config, &aws).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let deps = Arc::clone(&deps);
        async move {
            let deadline = deadline_instant(event.context.deadline, deps.deadline_margin);
            let reported = handle(Phase::PreTraffic, event.payload, deadline, deps).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "status": format!("{:?}", reported.status),
                "reason": reported.reason,
            }))
        }
    }))
    .await
}
