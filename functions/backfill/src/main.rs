//! Lambda entry point: configuration and clients once per cold start, then one [`backfill::handle`]
//! per invocation with the invocation's deadline.

use backfill::config::FunctionConfig;
use backfill::{BackfillEvent, Deps, handle};
use lambda_runtime::{LambdaEvent, service_fn};
use shiftguard_aws::deadline_instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shiftguard_aws::init_json_logging();
    let config = FunctionConfig::from_lookup(|name| std::env::var(name).ok())?;
    let aws = aws_config::load_from_env().await;
    let deps = Deps::build(&config, &aws, |name| std::env::var(name).ok()).await?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<BackfillEvent>| async move {
            let deadline = deadline_instant(event.context.deadline, deps.deadline_margin);
            let owner = format!("lambda:{}", event.context.request_id);
            let records = handle(event.payload, deadline, deps, &owner).await?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(records)?)
        },
    ))
    .await
}
