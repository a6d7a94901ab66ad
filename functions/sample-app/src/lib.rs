//! The sample users API: what the *compatible deploy* step of an expand/contract change looks
//! like in app code. The expand added `users.display_name` (nullable) beside `full_name`; this
//! version
//!
//! * writes both columns on every create and rename (dual write), so no new row needs the
//!   backfill and old versions still find `full_name`;
//! * reads `display_name` only behind a flag (`READ_DISPLAY_NAME`, off by default), falling
//!   back to `full_name` while a row is not backfilled yet — flipping the flag is the cutover,
//!   and flipping it back is the rollback before the contract.
//!
//! Invoked directly (or through a function URL) with a JSON event:
//! `{"action": "create", "email": "…", "name": "…"}`, `{"action": "get", "id": 1}`,
//! `{"action": "rename", "id": 1, "name": "…"}`, `{"action": "ping"}` (for smoke tests).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// What one request asks.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Request {
    Create { email: String, name: String },
    Get { id: i64 },
    Rename { id: i64, name: String },
    Ping,
}

/// A user as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
}

/// The app's settings, from its environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `READ_DISPLAY_NAME`: read the new column (`true`/`1`/`on`); default off.
    pub read_display_name: bool,
    /// `SHIFTGUARD_SCHEMA_REVISION`: the Alembic head this build was made against (answered by
    /// `ping`, so a smoke test can see which build answered).
    pub schema_revision: String,
}

impl Settings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let flag = lookup("READ_DISPLAY_NAME").unwrap_or_default();
        Settings {
            read_display_name: matches!(
                flag.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "on" | "yes"
            ),
            schema_revision: lookup("SHIFTGUARD_SCHEMA_REVISION").unwrap_or_default(),
        }
    }
}

/// Answers one request. An unknown user is `{"error": "not found"}`, not a failure.
pub async fn handle(
    pool: &PgPool,
    settings: &Settings,
    request: Request,
) -> Result<serde_json::Value, sqlx::Error> {
    let name_column = if settings.read_display_name {
        "COALESCE(display_name, full_name)"
    } else {
        "full_name"
    };
    let user = match request {
        Request::Ping => {
            return Ok(serde_json::json!({
                "ok": true,
                "schema_revision": settings.schema_revision,
            }));
        }
        Request::Create { email, name } => {
            sqlx::query_as::<_, (i64, String, String)>(
                "INSERT INTO users (email, full_name, display_name) VALUES ($1, $2, $2) RETURNING id::bigint, email, full_name",
            )
            .bind(email)
            .bind(name)
            .fetch_optional(pool)
            .await?
        }
        Request::Rename { id, name } => {
            sqlx::query_as::<_, (i64, String, String)>(
                "UPDATE users SET full_name = $2, display_name = $2 WHERE id = $1 RETURNING id::bigint, email, full_name",
            )
            .bind(id)
            .bind(name)
            .fetch_optional(pool)
            .await?
        }
        Request::Get { id } => {
            sqlx::query_as::<_, (i64, String, String)>(&format!(
                "SELECT id::bigint, email, {name_column} FROM users WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
        }
    };
    Ok(match user {
        Some((id, email, name)) => serde_json::to_value(User { id, email, name })
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() })),
        None => serde_json::json!({ "error": "not found" }),
    })
}

/// The tag of this version's database sessions, shiftguard's convention for the per-version
/// database gates: `v<version>:<function>` from the Lambda's own environment
/// (`AWS_LAMBDA_FUNCTION_VERSION`, `AWS_LAMBDA_FUNCTION_NAME`), at most 63 bytes (PostgreSQL
/// keeps no more of `application_name`), cut at the function's end. `None` outside Lambda.
pub fn session_tag(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    let function = lookup("AWS_LAMBDA_FUNCTION_NAME")?;
    let version = lookup("AWS_LAMBDA_FUNCTION_VERSION")?;
    let mut tag = format!("v{version}:{function}");
    let mut end = tag.len().min(63);
    while !tag.is_char_boundary(end) {
        end -= 1;
    }
    tag.truncate(end);
    Some(tag)
}

/// The database URL: `DATABASE_URL`, or the secret `DATABASE_SECRET_ARN` names (a URL, or the
/// JSON that RDS keeps: username, password, host, port, dbname).
pub async fn database_url(
    lookup: impl Fn(&str) -> Option<String>,
    aws: &aws_config::SdkConfig,
) -> anyhow::Result<String> {
    if let Some(url) = lookup("DATABASE_URL").filter(|u| !u.is_empty()) {
        return Ok(url);
    }
    let arn = lookup("DATABASE_SECRET_ARN")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| anyhow::anyhow!("set DATABASE_URL or DATABASE_SECRET_ARN"))?;
    let secret = aws_sdk_secretsmanager::Client::new(aws)
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot read secret {arn}: {e}"))?;
    let text = secret.secret_string().unwrap_or_default().trim().to_owned();
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return Ok(text);
    }
    #[derive(Deserialize)]
    struct Rds {
        username: String,
        password: String,
        host: String,
        port: Option<u16>,
        dbname: Option<String>,
    }
    let rds: Rds = serde_json::from_str(&text)
        .map_err(|_| anyhow::anyhow!("secret {arn} holds neither a URL nor RDS's JSON"))?;
    let escape = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    Ok(format!(
        "postgres://{}:{}@{}:{}/{}",
        escape(&rds.username),
        escape(&rds.password),
        rds.host,
        rds.port.unwrap_or(5432),
        rds.dbname.as_deref().unwrap_or("postgres")
    ))
}
