//! One connection to PostgreSQL, MySQL/MariaDB or SQLite, opened with a timeout.

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection as _, Database, Decode, Encode, Row, Type};

use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

/// An open connection, by dialect. Code that runs the same SQL on every dialect matches once
/// through [`Connection::fetch_strings`]; dialect-specific SQL matches on the variant.
#[derive(Debug)]
pub enum Connection {
    Postgres(PgConnection),
    MySql(MySqlConnection),
    Sqlite(SqliteConnection),
}

/// PostgreSQL's `application_name` of every session shiftguard opens.
pub const APPLICATION_NAME: &str = "shiftguard";

/// How to open a connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectSettings {
    pub timeout: Duration,
    /// A session that cannot write: SQLite files opened read-only, PostgreSQL sessions with
    /// `default_transaction_read_only`, MySQL/MariaDB ones with `TRANSACTION READ ONLY`.
    pub read_only: bool,
    /// How long SQLite waits for another writer before failing with SQLITE_BUSY.
    pub sqlite_busy_timeout: Duration,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        ConnectSettings {
            timeout: Duration::from_secs(10),
            read_only: true,
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// A statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Bind {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

/// The type to read a result column as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Float,
    Text,
    Bytes,
}

/// One result column.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Int(Option<i64>),
    Float(Option<f64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

impl Cell {
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(v) => *v,
            _ => None,
        }
    }

    pub fn float(&self) -> Option<f64> {
        match self {
            Cell::Float(v) => *v,
            Cell::Int(v) => v.map(|v| v as f64),
            _ => None,
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(v) => v.as_deref(),
            _ => None,
        }
    }

    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Cell::Bytes(v) => v.as_deref(),
            _ => None,
        }
    }
}

/// Makes every later transaction of a MySQL/MariaDB session read-only.
async fn set_read_only(connection: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET SESSION TRANSACTION READ ONLY")
        .execute(connection)
        .await
        .map(|_| ())
}

/// Runs the same generic sqlx code on whichever driver connection is open.
macro_rules! on_each {
    ($connection:expr, $c:ident => $body:expr) => {
        match $connection {
            Connection::Postgres($c) => $body,
            Connection::MySql($c) => $body,
            Connection::Sqlite($c) => $body,
        }
    };
}

fn bind_all<'q, DB: Database>(
    mut query: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    binds: &'q [Bind],
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    Option<i64>: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<&'q [u8]>: Encode<'q, DB> + Type<DB>,
{
    for bind in binds {
        query = match bind {
            Bind::Int(value) => query.bind(*value),
            Bind::Text(value) => query.bind(value.as_deref()),
            Bind::Bytes(value) => query.bind(value.as_deref()),
        };
    }
    query
}

fn cells<'r, R: Row>(row: &'r R, shape: &[Kind]) -> Result<Vec<Cell>, sqlx::Error>
where
    Option<i64>: Decode<'r, R::Database> + Type<R::Database>,
    Option<f64>: Decode<'r, R::Database> + Type<R::Database>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    Option<Vec<u8>>: Decode<'r, R::Database> + Type<R::Database>,
    usize: sqlx::ColumnIndex<R>,
{
    shape
        .iter()
        .enumerate()
        .map(|(index, kind)| {
            Ok(match kind {
                Kind::Int => Cell::Int(row.try_get(index)?),
                Kind::Float => Cell::Float(row.try_get(index)?),
                Kind::Text => Cell::Text(row.try_get(index)?),
                Kind::Bytes => Cell::Bytes(row.try_get(index)?),
            })
        })
        .collect()
}

impl Connection {
    /// Opens a connection; errors name the target, never the URL.
    pub async fn open(url: &DatabaseUrl, settings: ConnectSettings) -> Result<Self, SqlError> {
        let failed = |error: sqlx::Error| SqlError::Connect {
            target: url.target().to_owned(),
            reason: url.redact(&error.to_string()),
        };
        if let Some(path) = url.sqlite_path().filter(|p| !p.exists()) {
            return Err(SqlError::SqliteFileMissing {
                path: path.display().to_string(),
            });
        }
        let connecting = async {
            Ok(match url.dialect() {
                Dialect::Postgres => {
                    // Named, so that an operator sees shiftguard's sessions in pg_stat_activity.
                    let options = PgConnectOptions::from_str(&url.driver_url)?
                        .application_name(APPLICATION_NAME);
                    let mut connection = options.connect().await?;
                    // A statement, not a startup parameter: poolers (PgBouncer) refuse those.
                    if settings.read_only {
                        sqlx::query("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                            .execute(&mut connection)
                            .await?;
                    }
                    Connection::Postgres(connection)
                }
                Dialect::MySql => {
                    let options = MySqlConnectOptions::from_str(&url.driver_url)?;
                    let mut connection = options.connect().await?;
                    if settings.read_only {
                        set_read_only(&mut connection).await?;
                    }
                    Connection::MySql(connection)
                }
                Dialect::Sqlite => {
                    let options = SqliteConnectOptions::from_str(&url.driver_url)?
                        .read_only(settings.read_only)
                        .create_if_missing(false)
                        .busy_timeout(settings.sqlite_busy_timeout);
                    Connection::Sqlite(SqliteConnection::connect_with(&options).await?)
                }
            })
        };
        match tokio::time::timeout(settings.timeout, connecting).await {
            Ok(connected) => connected.map_err(failed),
            Err(_) => Err(SqlError::ConnectTimeout {
                target: url.target().to_owned(),
                seconds: settings.timeout.as_secs(),
            }),
        }
    }

    /// Limits every statement of the session from now on to `limit`, lock waits included, on
    /// the server: a statement still running then is cancelled by the database itself, even when
    /// its client has gone. (SQLite, in process, has its busy timeout.) Prepared statements:
    /// `raw` futures are not `Send` for every lifetime, and the decisions' are.
    pub async fn limit_statements(&mut self, limit: Duration) -> Result<(), sqlx::Error> {
        let ms = limit.as_millis().max(1);
        let seconds = ms.div_ceil(1000);
        match self.dialect() {
            Dialect::Postgres => {
                // Both in one round trip: every read of a decision pays it.
                let limit = Bind::Text(Some(format!("{ms}ms")));
                self.execute(
                    "SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $1, false)",
                    &[limit],
                )
                .await?;
            }
            // MariaDB's max_statement_time (seconds) bounds every statement; MySQL's
            // max_execution_time (ms) bounds SELECT, which is all a read-only session runs.
            Dialect::MySql => {
                let locks = format!(
                    "SESSION lock_wait_timeout = {seconds}, SESSION innodb_lock_wait_timeout = {seconds}"
                );
                let mariadb = format!(
                    "SET SESSION max_statement_time = {}, {locks}",
                    ms as f64 / 1000.0
                );
                if self.execute(&mariadb, &[]).await.is_err() {
                    let mysql = format!("SET SESSION max_execution_time = {ms}, {locks}");
                    self.execute(&mysql, &[]).await?;
                }
            }
            Dialect::Sqlite => {}
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Connection::Postgres(_) => Dialect::Postgres,
            Connection::MySql(_) => Dialect::MySql,
            Connection::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a query whose one column is text and returns every row's value.
    pub async fn fetch_strings(&mut self, sql: &str) -> Result<Vec<String>, sqlx::Error> {
        on_each!(self, c => sqlx::query_scalar(sql).fetch_all(c).await)
    }

    /// Runs SQL unprepared (it may hold several statements): BEGIN, COMMIT, SET and DDL.
    pub async fn raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        on_each!(self, c => sqlx::raw_sql(sql).execute(c).await.map(|_| ()))
    }

    /// Runs `CREATE TABLE IF NOT EXISTS …` for `table`. Runners creating it at the same instant
    /// can collide even so (PostgreSQL: a unique violation on the catalogue's type names); a
    /// failure after which the table exists is the other runner's success.
    pub async fn create_table(&mut self, ddl: &str, table: &str) -> Result<(), sqlx::Error> {
        match self.raw(ddl).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let probe = format!("SELECT 1 FROM {table} WHERE 1 = 0");
                match self.execute(&probe, &[]).await {
                    Ok(_) => Ok(()),
                    Err(_) => Err(error),
                }
            }
        }
    }

    /// Runs one prepared statement; returns the rows it affected.
    pub async fn execute(&mut self, sql: &str, binds: &[Bind]) -> Result<u64, sqlx::Error> {
        on_each!(self, c => bind_all(sqlx::query(sql), binds).execute(c).await.map(|r| r.rows_affected()))
    }

    /// Runs one prepared query; returns its first row read as `shape`, if any.
    pub async fn fetch_row(
        &mut self,
        sql: &str,
        binds: &[Bind],
        shape: &[Kind],
    ) -> Result<Option<Vec<Cell>>, sqlx::Error> {
        on_each!(self, c => {
            let row = bind_all(sqlx::query(sql), binds).fetch_optional(c).await?;
            row.map(|row| cells(&row, shape)).transpose()
        })
    }

    /// Runs one prepared query; returns every row read as `shape`.
    pub async fn fetch_rows(
        &mut self,
        sql: &str,
        binds: &[Bind],
        shape: &[Kind],
    ) -> Result<Vec<Vec<Cell>>, sqlx::Error> {
        on_each!(self, c => {
            let rows = bind_all(sqlx::query(sql), binds).fetch_all(c).await?;
            rows.iter().map(|row| cells(row, shape)).collect()
        })
    }

    /// MySQL/MariaDB: runs an unprepared statement (such as `SHOW REPLICA STATUS`) and reads the
    /// first of `names` that its first row has, as an integer. `None` for no row or NULL.
    pub async fn fetch_row_named(
        &mut self,
        sql: &str,
        names: &[&str],
    ) -> Result<Option<i64>, sqlx::Error> {
        let Connection::MySql(c) = self else {
            return Ok(None);
        };
        // (sqlx 0.8's RawSql::fetch_optional errors on no row, hence fetch_all.)
        let rows = sqlx::raw_sql(sql).fetch_all(c).await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        for name in names {
            use sqlx::ValueRef as _;
            // Absent column: try the next name (MariaDB and MySQL name it differently).
            let Ok(raw) = row.try_get_raw(*name) else {
                continue;
            };
            if raw.is_null() {
                return Ok(None);
            }
            // The servers report it UNSIGNED; older versions or proxies may not; SHOW STATUS
            // reports every value as text.
            if let Ok(value) = row.try_get::<u64, _>(*name) {
                return Ok(Some(value.min(i64::MAX as u64) as i64));
            }
            if let Ok(text) = row.try_get::<String, _>(*name) {
                return Ok(text.trim().parse().ok());
            }
            return row.try_get::<i64, _>(*name).map(Some);
        }
        Ok(None)
    }

    /// Closes the connection cleanly (errors on close are of no interest to the caller).
    pub async fn close(self) {
        let _ = on_each!(self, c => c.close().await);
    }
}
