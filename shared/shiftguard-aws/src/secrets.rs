//! The database URL of a Lambda: from `DATABASE_URL`, or from a Secrets Manager secret named by
//! `DATABASE_SECRET_ARN` holding a URL or the JSON document RDS writes.

use anyhow::Context;
use serde::Deserialize;

/// Where the database URL comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseSource {
    /// `DATABASE_URL`.
    Url(String),
    /// `DATABASE_SECRET_ARN`: a Secrets Manager secret holding a URL, or the JSON that RDS
    /// writes (`engine`, `host`, `port`, `username`, `password`, `dbname`).
    Secret(String),
}

impl std::fmt::Debug for DatabaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseSource::Url(_) => f.write_str("Url(***)"),
            DatabaseSource::Secret(arn) => write!(f, "Secret({arn})"),
        }
    }
}

impl DatabaseSource {
    /// `DATABASE_URL` or `DATABASE_SECRET_ARN`, exactly one; the error names the variables.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        match (non_empty("DATABASE_URL"), non_empty("DATABASE_SECRET_ARN")) {
            (Some(url), None) => Ok(DatabaseSource::Url(url)),
            (None, Some(arn)) => Ok(DatabaseSource::Secret(arn)),
            (Some(_), Some(_)) => {
                Err("set one of DATABASE_URL and DATABASE_SECRET_ARN, not both".to_owned())
            }
            (None, None) => Err("set DATABASE_URL or DATABASE_SECRET_ARN".to_owned()),
        }
    }

    /// The URL, reading the secret when there is one. Errors never contain the secret.
    pub async fn resolve(&self, aws: &aws_config::SdkConfig) -> anyhow::Result<String> {
        let arn = match self {
            DatabaseSource::Url(url) => return Ok(url.clone()),
            DatabaseSource::Secret(arn) => arn,
        };
        let secret = aws_sdk_secretsmanager::Client::new(aws)
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    crate::AwsError::from_sdk(&format!("GetSecretValue {arn}"), &e)
                )
            })?;
        let text = secret
            .secret_string()
            .with_context(|| format!("secret {arn} holds no string"))?;
        database_url_from_secret(text).with_context(|| format!("secret {arn}"))
    }
}

/// A secret holds either a database URL or RDS's JSON document.
pub fn database_url_from_secret(text: &str) -> anyhow::Result<String> {
    let text = text.trim();
    if !text.starts_with('{') {
        return Ok(text.to_owned());
    }
    #[derive(Deserialize)]
    struct RdsSecret {
        engine: String,
        host: String,
        port: Option<u16>,
        username: String,
        password: String,
        dbname: Option<String>,
    }
    let secret: RdsSecret = serde_json::from_str(text)
        .map_err(|_| anyhow::anyhow!("not a database URL nor the RDS secret JSON (engine, host, port, username, password, dbname)"))?;
    let scheme = match secret.engine.as_str() {
        "postgres" | "postgresql" | "aurora-postgresql" => "postgres",
        "mysql" | "mariadb" | "aurora-mysql" | "aurora" => "mysql",
        other => anyhow::bail!("engine {other} is not supported (postgres, mysql, mariadb)"),
    };
    let port = secret.port.map(|p| format!(":{p}")).unwrap_or_default();
    let database = secret.dbname.unwrap_or_default();
    let mut url = url::Url::parse(&format!("{scheme}://{}{port}/{database}", secret.host))
        .context("the secret's host is not valid")?;
    url.set_username(&secret.username)
        .and_then(|()| url.set_password(Some(&secret.password)))
        .map_err(|()| anyhow::anyhow!("the secret's username cannot go into a URL"))?;
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hold_a_url_or_rds_json() {
        assert_eq!(
            database_url_from_secret(" postgres://app@db/app \n").expect("url"),
            "postgres://app@db/app"
        );
        let json = r#"{"engine":"postgres","host":"db.internal","port":5432,"username":"app","password":"p@ss/w:rd","dbname":"users"}"#;
        let url = database_url_from_secret(json).expect("rds json");
        assert_eq!(url, "postgres://app:p%40ss%2Fw%3Ard@db.internal:5432/users");
        let error = database_url_from_secret(
            r#"{"engine":"oracle","host":"h","username":"u","password":"p"}"#,
        )
        .expect_err("oracle");
        assert_eq!(
            error.to_string(),
            "engine oracle is not supported (postgres, mysql, mariadb)"
        );
    }

    #[test]
    fn exactly_one_source() {
        let read = |pairs: &'static [(&'static str, &'static str)]| {
            DatabaseSource::from_lookup(crate::environment::fixed(pairs))
        };
        assert_eq!(
            read(&[]),
            Err("set DATABASE_URL or DATABASE_SECRET_ARN".to_owned())
        );
        assert!(read(&[("DATABASE_URL", "a"), ("DATABASE_SECRET_ARN", "b")]).is_err());
        assert!(!format!("{:?}", read(&[("DATABASE_URL", "postgres://u:pw@h/d")])).contains("pw"));
    }
}
