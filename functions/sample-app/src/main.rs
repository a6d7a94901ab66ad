//! The sample users API as a Lambda function (see the library for what it does).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use std::str::FromStr;

use sample_app::{Request, Settings, database_url, handle, session_tag};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let lookup = |name: &str| std::env::var(name).ok();
    let settings = Settings::from_lookup(lookup);
    let aws = aws_config::load_from_env().await;
    let url = database_url(lookup, &aws).await?;
    // One connection per execution environment, opened on first use, tagged with the version
    // so that shiftguard's gates can tell what each version costs the database.
    let mut options = PgConnectOptions::from_str(&url)?;
    if let Some(tag) = session_tag(lookup) {
        options = options.application_name(&tag);
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Request>| {
        let (pool, settings) = (&pool, &settings);
        async move { Ok::<_, Error>(handle(pool, settings, event.payload).await?) }
    }))
    .await
}
