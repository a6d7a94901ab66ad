//! The backfill Lambda (see [`backfill::run`]: configuration once, one run per scheduled event).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    backfill::run(|name| std::env::var(name).ok()).await
}
