//! What the integration tests stand on: the real `shiftguard` binary, the real Alembic CLI, and one
//! fresh database per test on the real PostgreSQL and MariaDB servers (or a SQLite file).
//!
//! Nothing here skips: a missing Alembic or an unreachable server fails the test with a message
//! saying how to start it (`scripts/test` does all of it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Connection as _;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_owned()
}

/// The example Alembic project shipped in the repository.
pub fn example_project() -> PathBuf {
    repo_root().join("infra/example")
}

/// The example's revisions, by role in the running example.
pub mod example {
    pub const CREATE_USERS: &str = "d2ca87e6a2c7";
    pub const ADD_DISPLAY_NAME: &str = "836a014c0874";
    pub const INDEX_EMAIL: &str = "569d43d582d6";
    pub const CREATE_AUDIT_LOG: &str = "448b4040d6f2";
    pub const MERGE: &str = "3f55b760f0a3";
    pub const DROP_FULL_NAME: &str = "172e330d1de0";
}

/// The result of running a command: exit code and text output.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// Runs the real `shiftguard` binary with a clean environment for the variables it reads.
pub fn shiftguard(args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_shiftguard"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run shiftguard")
        .into()
}

/// Parses a `--json` output.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            run.stdout, run.stderr
        )
    })
}

/// The Alembic CLI from the project's venv (or `SHIFTGUARD_ALEMBIC`).
pub fn alembic_binary() -> PathBuf {
    let path = std::env::var_os("SHIFTGUARD_ALEMBIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/alembic"));
    assert!(
        path.exists(),
        "alembic not found at {}: run scripts/python-env (or scripts/test)",
        path.display()
    );
    path
}

/// Runs Alembic in `dir` (the directory holding alembic.ini), with `url` as the database.
pub fn alembic(dir: &Path, url: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new(alembic_binary());
    command.current_dir(dir).args(args);
    if let Some(url) = url {
        command.env("SQLALCHEMY_URL", url);
    }
    let run = Run::from(command.output().expect("run alembic"));
    assert_eq!(
        run.code, 0,
        "alembic {args:?} failed:\n{}{}",
        run.stdout, run.stderr
    );
    run.stdout
}

/// An Alembic project made by `alembic init` in a temporary directory, whose env.py takes the
/// database from SQLALCHEMY_URL like the example's.
pub struct AlembicProject {
    dir: tempfile::TempDir,
}

impl AlembicProject {
    pub fn init() -> Self {
        let project = Self::init_stock();
        let env = project.path().join("migrations/env.py");
        let source = std::fs::read_to_string(&env).expect("env.py");
        let source = source.replacen(
            "config = context.config\n",
            "config = context.config\nimport os\nif os.environ.get('SQLALCHEMY_URL'):\n    config.set_main_option('sqlalchemy.url', os.environ['SQLALCHEMY_URL'])\n",
            1,
        );
        std::fs::write(env, source).expect("write env.py");
        project
    }

    /// As `alembic init` leaves it: env.py reads the URL from alembic.ini only.
    pub fn init_stock() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        alembic(dir.path(), None, &["init", "migrations"]);
        AlembicProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn versions(&self) -> PathBuf {
        self.path().join("migrations/versions")
    }

    /// `alembic revision --rev-id ID -m MESSAGE EXTRA…`; returns the file written.
    pub fn revision(&self, id: &str, extra: &[&str]) -> PathBuf {
        let mut args = vec!["revision", "--rev-id", id, "-m", id];
        args.extend_from_slice(extra);
        alembic(self.path(), None, &args);
        self.file_of(id)
    }

    /// The file of revision `id`.
    pub fn file_of(&self, id: &str) -> PathBuf {
        std::fs::read_dir(self.versions())
            .expect("versions dir")
            .map(|e| e.expect("entry").path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{id}_")))
            })
            .unwrap_or_else(|| panic!("no file for revision {id}"))
    }

    /// Replaces the `pass` of `upgrade()` in revision `id` with `body` (indented Python).
    pub fn set_upgrade(&self, id: &str, body: &str) {
        let file = self.file_of(id);
        let source = std::fs::read_to_string(&file).expect("read revision");
        let marker = "    \"\"\"Upgrade schema.\"\"\"\n    pass";
        assert!(
            source.contains(marker),
            "unexpected template in {}",
            file.display()
        );
        let source = source.replacen(
            marker,
            &format!("    \"\"\"Upgrade schema.\"\"\"\n{body}"),
            1,
        );
        std::fs::write(file, source).expect("write revision");
    }

    /// Switches the project's template to the classic header form (`revision = '…'`) that older
    /// Alembic versions wrote, so later `alembic revision` calls produce it.
    pub fn use_classic_template(&self) {
        let mako = self.path().join("migrations/script.py.mako");
        let source = std::fs::read_to_string(&mako).expect("script.py.mako");
        let classic = source
            .replace(
                "revision: str = ${repr(up_revision)}",
                "revision = ${repr(up_revision)}",
            )
            .replace(
                "down_revision: Union[str, Sequence[str], None] = ${repr(down_revision)}",
                "down_revision = ${repr(down_revision)}",
            )
            .replace(
                "branch_labels: Union[str, Sequence[str], None] = ${repr(branch_labels)}",
                "branch_labels = ${repr(branch_labels)}",
            )
            .replace(
                "depends_on: Union[str, Sequence[str], None] = ${repr(depends_on)}",
                "depends_on = ${repr(depends_on)}",
            );
        assert_ne!(source, classic, "template did not change");
        std::fs::write(mako, classic).expect("write template");
    }
}

/// The AWS emulator (moto server) that `scripts/services` starts.
pub fn aws_endpoint() -> String {
    std::env::var("SHIFTGUARD_TEST_AWS_ENDPOINT")
        .unwrap_or_else(|_| "http://127.0.0.1:4566".to_owned())
}

/// Points a command at the emulator the standard way: `AWS_ENDPOINT_URL` and dummy credentials.
pub fn with_aws_emulator(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ENDPOINT_URL", aws_endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
}

/// A DynamoDB client for setting up the emulator (the code under test configures its own).
pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&emulator_config().await)
}

/// Creates a DynamoDB checkpoint table (partition key `name`) with a unique name.
pub async fn dynamodb_table() -> String {
    keyed_dynamodb_table("checkpoints", "name").await
}

/// Creates a DynamoDB table `<unique>-<what>` whose partition key is the string `key`.
pub async fn keyed_dynamodb_table(what: &str, key: &str) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let name = format!("{}-{what}", unique_name());
    dynamodb()
        .await
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(key)
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the AWS emulator at {} is required (scripts/services starts it): {e:?}",
                aws_endpoint()
            )
        });
    name
}

static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// The emulator's configuration, as tests set up resources with it.
pub async fn emulator_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(aws_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "tests",
        ))
        .load()
        .await
}

/// Where notices land in the emulator: an SNS topic and an EventBridge bus of their own, each
/// delivering to an SQS queue the test reads, as an email or chat subscriber and an event rule
/// would.
pub struct NoticeSink {
    pub topic_arn: String,
    pub event_bus: String,
    sqs: aws_sdk_sqs::Client,
    topic_queue: String,
    bus_queue: String,
}

impl NoticeSink {
    pub async fn create() -> NoticeSink {
        let config = emulator_config().await;
        let (sns, sqs) = (
            aws_sdk_sns::Client::new(&config),
            aws_sdk_sqs::Client::new(&config),
        );
        let events = aws_sdk_eventbridge::Client::new(&config);
        let name = unique_suffix();
        let queue = |what: &'static str| {
            let sqs = sqs.clone();
            let name = format!("notices-{name}-{what}");
            async move {
                let url = sqs
                    .create_queue()
                    .queue_name(&name)
                    .send()
                    .await
                    .expect("queue")
                    .queue_url
                    .expect("queue url");
                let arn = sqs
                    .get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .expect("queue attributes")
                    .attributes
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                            .cloned()
                    })
                    .expect("queue arn");
                (url, arn)
            }
        };
        let (topic_queue, topic_queue_arn) = queue("sns").await;
        let (bus_queue, bus_queue_arn) = queue("events").await;
        let topic_arn = sns
            .create_topic()
            .name(format!("notices-{name}"))
            .send()
            .await
            .expect("topic")
            .topic_arn
            .expect("topic arn");
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(topic_queue_arn)
            .send()
            .await
            .expect("subscribe");
        let event_bus = format!("notices-{name}");
        events
            .create_event_bus()
            .name(&event_bus)
            .send()
            .await
            .expect("bus");
        events
            .put_rule()
            .name("shiftguard")
            .event_bus_name(&event_bus)
            .event_pattern(r#"{"source": ["shiftguard"]}"#)
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule("shiftguard")
            .event_bus_name(&event_bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(bus_queue_arn)
                    .build()
                    .expect("target"),
            )
            .send()
            .await
            .expect("targets");
        NoticeSink {
            topic_arn,
            event_bus,
            sqs,
            topic_queue,
            bus_queue,
        }
    }

    /// The environment that sends a function's notices here.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("SHIFTGUARD_NOTIFY_TOPIC_ARN", self.topic_arn.clone()),
            ("SHIFTGUARD_NOTIFY_EVENT_BUS", self.event_bus.clone()),
        ]
    }

    /// The SNS messages (their JSON envelopes: `Subject`, `Message`) and the EventBridge events
    /// delivered since the last call.
    async fn take(&self) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        (
            self.drain(&self.topic_queue).await,
            self.drain(&self.bus_queue).await,
        )
    }

    /// The one SNS message and the one event delivered since the last call; fails on any other
    /// count.
    pub async fn take_one(&self) -> (serde_json::Value, serde_json::Value) {
        let (mut messages, mut events) = self.take().await;
        assert_eq!(
            (messages.len(), events.len()),
            (1, 1),
            "{messages:?} {events:?}"
        );
        (messages.remove(0), events.remove(0))
    }

    /// Fails when anything was delivered since the last call.
    pub async fn assert_quiet(&self) {
        let (messages, events) = self.take().await;
        assert!(
            messages.is_empty() && events.is_empty(),
            "{messages:?} {events:?}"
        );
    }

    async fn drain(&self, queue: &str) -> Vec<serde_json::Value> {
        let mut bodies = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                let body = message.body.as_deref().expect("a body");
                bodies.push(serde_json::from_str(body).expect("a JSON body"));
                self.sqs
                    .delete_message()
                    .queue_url(queue)
                    .receipt_handle(message.receipt_handle.expect("receipt"))
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}

/// A suffix unique within this test run (process id and a counter).
pub fn unique_suffix() -> String {
    unique_name().trim_start_matches("sg_").replace('_', "-")
}

fn unique_name() -> String {
    format!(
        "sg_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database kind the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    MariaDb,
    Sqlite,
}

pub const ALL_KINDS: [Kind; 3] = [Kind::Postgres, Kind::MariaDb, Kind::Sqlite];

fn postgres_admin_url() -> String {
    std::env::var("SHIFTGUARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn mysql_admin_url() -> String {
    std::env::var("SHIFTGUARD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
}

/// A fresh, empty database; dropped (or deleted) by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub kind: Kind,
    pub name: String,
    /// For SQLite: the directory holding the file.
    dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create(kind: Kind) -> Self {
        let name = unique_name();
        let dir = match kind {
            Kind::Postgres => {
                admin_postgres(&format!("CREATE DATABASE {name}")).await;
                None
            }
            Kind::MariaDb => {
                admin_mysql(&format!("CREATE DATABASE {name}")).await;
                None
            }
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                std::fs::File::create(dir.path().join(format!("{name}.db"))).expect("db file");
                Some(dir)
            }
        };
        TestDatabase { kind, name, dir }
    }

    /// The URL shiftguard (sqlx) takes.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Postgres => replace_database(&postgres_admin_url(), &self.name),
            Kind::MariaDb => replace_database(&mysql_admin_url(), &self.name),
            Kind::Sqlite => format!("sqlite://{}", self.sqlite_path().display()),
        }
    }

    /// The database user the URL connects as (what the per-version database gates trust).
    pub fn user(&self) -> String {
        let url = url::Url::parse(&self.url()).expect("url");
        url.username().to_owned()
    }

    /// The URL Alembic (SQLAlchemy) takes.
    pub fn sqlalchemy_url(&self) -> String {
        match self.kind {
            Kind::Postgres => self
                .url()
                .replacen("postgres://", "postgresql+psycopg://", 1),
            Kind::MariaDb => self.url().replacen("mysql://", "mysql+pymysql://", 1),
            Kind::Sqlite => format!("sqlite:///{}", self.sqlite_path().display()),
        }
    }

    fn sqlite_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("sqlite database has a directory")
            .path()
            .join(format!("{}.db", self.name))
    }

    /// Runs one statement in this database.
    pub async fn execute(&self, sql: &str) {
        let url = self.url();
        match self.kind {
            Kind::Postgres => run_postgres(&url, sql).await,
            Kind::MariaDb => run_mysql(&url, sql).await,
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("connect sqlite");
                sqlx::query(sql)
                    .execute(&mut c)
                    .await
                    .expect("sqlite statement");
            }
        }
    }

    /// Runs SQL unprepared (DDL such as a trigger, which MariaDB does not prepare).
    pub async fn raw(&self, sql: &str) {
        self.try_raw(sql).await.expect("sql");
    }

    /// Runs SQL unprepared; the database's error, if any.
    pub async fn try_raw(&self, sql: &str) -> Result<(), sqlx::Error> {
        let url = self.url();
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
            }
            Kind::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await.map(|_| ())
            }
        }
    }

    /// The SQL checkpoint's cursor, typed (`None`: no checkpoint or no cursor yet).
    pub async fn checkpoint_cursor(&self, name: &str) -> Option<shiftguard_core::backfill::Key> {
        use shiftguard_core::backfill::Key;
        if !self.table_exists("shiftguard_backfill").await {
            return None;
        }
        let sql = format!(
            "SELECT cursor_key, cursor_value FROM shiftguard_backfill WHERE name = '{name}'"
        );
        let row: Option<(Option<String>, Option<i64>)> = self.optional_row(&sql).await;
        match row? {
            (Some(json), _) => Some(Key::parse(&json).expect("a typed cursor")),
            (None, value) => value.map(Key::int),
        }
    }

    /// Waits until no other session is connected to this database. After a client is killed
    /// its server session can still finish what it had sent (a COMMIT); reads that straddle
    /// that moment would see the rows before and the checkpoint after.
    pub async fn wait_until_alone(&self) {
        let others = match self.kind {
            Kind::Postgres => {
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            }
            Kind::MariaDb => {
                "SELECT count(*) FROM information_schema.processlist WHERE db = database() AND id <> connection_id()"
            }
            Kind::Sqlite => return,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.scalar(others).await > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a killed client's session is still open after 20 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Runs a query returning one integer.
    pub async fn scalar(&self, sql: &str) -> i64 {
        let url = self.url();
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url)
                    .await
                    .expect("connect postgres");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("postgres scalar")
            }
            Kind::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&url)
                    .await
                    .expect("connect mysql");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("mysql scalar")
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("connect sqlite");
                sqlx::query_scalar(sql)
                    .fetch_one(&mut c)
                    .await
                    .expect("sqlite scalar")
            }
        }
    }

    /// Whether a table exists.
    pub async fn table_exists(&self, table: &str) -> bool {
        let sql = match self.kind {
            Kind::Postgres => format!("SELECT count(*) FROM pg_tables WHERE tablename = '{table}'"),
            Kind::MariaDb => format!(
                "SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'"
            ),
            Kind::Sqlite => format!(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'"
            ),
        };
        self.scalar(&sql).await > 0
    }

    /// The SQL checkpoint of a backfill: (cursor, rows_updated, status).
    pub async fn checkpoint(&self, name: &str) -> Option<(Option<i64>, i64, String)> {
        if !self.table_exists("shiftguard_backfill").await {
            return None;
        }
        let sql = format!(
            "SELECT cursor_value, rows_updated, status FROM shiftguard_backfill WHERE name = '{name}'"
        );
        self.optional_row(&sql).await
    }

    /// The first row of `sql`, if any, read as `T`.
    async fn optional_row<T>(&self, sql: &str) -> Option<T>
    where
        T: Send
            + Unpin
            + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
            + for<'r> sqlx::FromRow<'r, sqlx::mysql::MySqlRow>
            + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
    {
        let url = self.url();
        match self.kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
                sqlx::query_as(sql)
                    .fetch_optional(&mut c)
                    .await
                    .expect("row")
            }
            Kind::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&url).await.expect("connect");
                sqlx::query_as(sql)
                    .fetch_optional(&mut c)
                    .await
                    .expect("row")
            }
            Kind::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&url)
                    .await
                    .expect("connect");
                sqlx::query_as(sql)
                    .fetch_optional(&mut c)
                    .await
                    .expect("row")
            }
        }
    }

    pub async fn drop_database(self) {
        match self.kind {
            Kind::Postgres => {
                admin_postgres(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await
            }
            Kind::MariaDb => admin_mysql(&format!("DROP DATABASE IF EXISTS {}", self.name)).await,
            Kind::Sqlite => {}
        }
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (server, _) = url.rsplit_once('/').expect("URL has a database path");
    format!("{server}/{database}")
}

pub async fn admin_postgres(sql: &str) {
    run_postgres(&postgres_admin_url(), sql).await;
}

pub async fn admin_mysql(sql: &str) {
    run_mysql(&mysql_admin_url(), sql).await;
}

async fn run_postgres(url: &str, sql: &str) {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {url} is required (scripts/services starts it): {e}")
    });
    sqlx::query(sql)
        .execute(&mut c)
        .await
        .expect("postgres statement");
}

async fn run_mysql(url: &str, sql: &str) {
    let mut c = sqlx::MySqlConnection::connect(url)
        .await
        .unwrap_or_else(|e| {
            panic!("MariaDB at {url} is required (scripts/services starts it): {e}")
        });
    sqlx::query(sql)
        .execute(&mut c)
        .await
        .expect("mysql statement");
}

pub fn credentials() -> aws_sdk_lambda::config::Credentials {
    aws_sdk_lambda::config::Credentials::new("test", "test", None, None, "tests")
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(credentials())
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}

/// An empty zip archive: all moto needs as function code.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// A function with published versions, one per environment given (each a version's stamp).
pub async fn publish_versions(
    aws: &aws_config::SdkConfig,
    name: &str,
    envs: &[&[(&str, &str)]],
) -> Vec<String> {
    use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime};
    let iam = aws_sdk_iam::Client::new(aws);
    let role = iam
        .create_role()
        .role_name(format!("{name}-role"))
        .assume_role_policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .expect("create role")
        .role
        .expect("role")
        .arn;
    let lambda = aws_sdk_lambda::Client::new(aws);
    let environment = |pairs: &[(&str, &str)]| {
        let mut env = Environment::builder();
        for (k, v) in pairs {
            env = env.variables(*k, *v);
        }
        env.build()
    };
    lambda
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(role)
        .code(
            FunctionCode::builder()
                .zip_file(aws_sdk_lambda::primitives::Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .environment(environment(envs[0]))
        .send()
        .await
        .expect("create function");
    let mut versions = Vec::new();
    for (i, env) in envs.iter().enumerate() {
        if i > 0 {
            lambda
                .update_function_configuration()
                .function_name(name)
                .environment(environment(env))
                .send()
                .await
                .expect("update configuration");
        }
        let version = lambda
            .publish_version()
            .function_name(name)
            .send()
            .await
            .expect("publish version")
            .version
            .expect("version");
        versions.push(version);
    }
    versions
}

/// Compares `actual` with `tests/integration/golden/NAME` (the crate's version written as
/// `<version>`); `UPDATE_GOLDEN=1` rewrites the file instead.
pub fn assert_golden(name: &str, actual: &str) {
    let path = repo_root().join("tests/integration/golden").join(name);
    let actual = actual.replace(env!("CARGO_PKG_VERSION"), "<version>");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    assert_eq!(
        actual, expected,
        "{name} differs (UPDATE_GOLDEN=1 rewrites it)"
    );
}
