//! The gate monitor, invoked on a schedule (every minute): publishes the gates of every active
//! deployment of `SHIFTGUARD_DEPLOYMENT_GROUPS` as `Shiftguard/GateFailing` metrics, because between
//! canary steps CodeDeploy listens only to alarms (see `shiftguard_hooks::monitor`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    shiftguard_hooks::run_monitor(|name| std::env::var(name).ok()).await
}
