//! Lambda entry point: configuration and clients once per cold start, then one
//! [`pre_traffic_hook::handle`] per invocation, with the invocation's deadline less a margin.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{LambdaEvent, service_fn};
use pre_traffic_hook::config::HookConfig;
use pre_traffic_hook::{Deps, handle};

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
            let deadline = instant_of(event.context.deadline)
                .checked_sub(deps.deadline_margin)
                .unwrap_or_else(Instant::now);
            let reported = handle(event.payload, deadline, deps).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::json!({
                "status": format!("{:?}", reported.status),
                "reason": reported.reason,
            }))
        }
    }))
    .await
}

/// The invocation deadline (Unix milliseconds) as an `Instant`.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
