//! The CodeDeploy `AfterAllowTraffic` hook (see `shiftguard_hooks`: gates, exactly-once report, fail closed).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shiftguard_hooks::run_hook(shiftguard_hooks::DecisionPoint::PostTraffic, |name| {
        std::env::var(name).ok()
    })
    .await
}
