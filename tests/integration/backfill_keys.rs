//! Backfills keyed by something other than one integer column — a UUID, text in a non-binary
//! collation, a (text, integer) pair — and by an integer for comparison, on PostgreSQL, MariaDB
//! and SQLite: 100,000 rows, the runner killed with -9 six times at random points while an old
//! writer keeps inserting pending rows; a trigger counts every update of every row.

use std::time::Duration;

use shiftguard_core::backfill::{Key, KeyValue};

use crate::backfill::{Lcg, NAME, backfill, run_until_complete, spawn};
use crate::support::{ALL_KINDS, Kind, TestDatabase, dynamodb, dynamodb_table};

const ROWS: u64 = 100_000;
/// Keys of the writer's rows start here (their place in key order is the key's business).
const WRITER_FROM: u64 = 1_000_001;

#[derive(Clone, Copy, Debug)]
enum Shape {
    Int,
    Uuid,
    /// Text in a collation that is not byte order: ICU on PostgreSQL, a case-insensitive
    /// Unicode collation on MariaDB, NOCASE on SQLite.
    Text,
    /// (tenant text, n integer).
    Composite,
}

impl Shape {
    fn key_toml(self) -> &'static str {
        match self {
            Shape::Composite => "[\"tenant\", \"n\"]",
            _ => "\"id\"",
        }
    }

    /// The key's column definitions, then its table constraint (SQLite wants constraints after
    /// every column).
    fn key_columns(self, kind: Kind) -> (&'static str, &'static str) {
        match (self, kind) {
            (Shape::Int, _) => ("id BIGINT NOT NULL", "PRIMARY KEY (id)"),
            (Shape::Uuid, Kind::Sqlite) => ("id CHAR(36) NOT NULL", "PRIMARY KEY (id)"),
            (Shape::Uuid, _) => ("id UUID NOT NULL", "PRIMARY KEY (id)"),
            (Shape::Text, Kind::Postgres) => (
                "id TEXT COLLATE \"en-US-x-icu\" NOT NULL",
                "PRIMARY KEY (id)",
            ),
            (Shape::Text, Kind::MariaDb) => (
                "id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL",
                "PRIMARY KEY (id)",
            ),
            (Shape::Text, Kind::Sqlite) => ("id TEXT COLLATE NOCASE NOT NULL", "PRIMARY KEY (id)"),
            (Shape::Composite, _) => (
                "tenant VARCHAR(20) NOT NULL, n BIGINT NOT NULL",
                "PRIMARY KEY (tenant, n)",
            ),
        }
    }

    /// The key's value(s) for row number `n` (an SQL expression over `n`).
    fn key_values(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (Shape::Int, _) => "n",
            (Shape::Uuid, Kind::Postgres) => "CAST(md5(CAST(n AS TEXT)) AS UUID)",
            // MariaDB wants a well-formed UUID: version 4, variant 1.
            (Shape::Uuid, Kind::MariaDb) => {
                "CAST(CONCAT(LEFT(MD5(n), 8), '-', SUBSTR(MD5(n), 9, 4), '-4', SUBSTR(MD5(n), 14, 3), '-a', SUBSTR(MD5(n), 18, 3), '-', RIGHT(MD5(n), 12)) AS UUID)"
            }
            // No md5 in SQLite: a scrambled prefix keeps the order far from n's.
            (Shape::Uuid, Kind::Sqlite) => {
                "printf('%08x-%04x-4000-8000-%012x', (n * 2654435761) % 4294967296, n % 65536, n)"
            }
            // Mixed case and an accent: byte order and the collation disagree.
            (Shape::Text, Kind::MariaDb) => "CONCAT(ELT(n % 3 + 1, 'a', 'B', 'é'), n)",
            (Shape::Text, _) => "CASE n % 3 WHEN 0 THEN 'a' WHEN 1 THEN 'B' ELSE 'é' END || n",
            (Shape::Composite, Kind::MariaDb) => "CONCAT('t', n % 7), n",
            (Shape::Composite, _) => "'t' || (n % 7), n",
        }
    }

    fn key_names(self) -> &'static str {
        match self {
            Shape::Composite => "tenant, n",
            _ => "id",
        }
    }
}

/// A number series `n` from `from` to `to`, as a FROM clause.
fn series(kind: Kind, from: u64, to: u64) -> String {
    match kind {
        Kind::Postgres => format!("generate_series({from}, {to}) AS s(n)"),
        Kind::MariaDb => format!("(SELECT seq AS n FROM seq_{from}_to_{to}) s"),
        Kind::Sqlite => format!(
            "(WITH RECURSIVE s(n) AS (SELECT {from} UNION ALL SELECT n + 1 FROM s WHERE n < {to}) SELECT n FROM s) s"
        ),
    }
}

async fn insert(db: &TestDatabase, shape: Shape, from: u64, count: u64, origin: u8) {
    let (kind, names) = (db.kind, shape.key_names());
    let full_name = match kind {
        Kind::MariaDb => "CONCAT('User ', n)",
        _ => "'User ' || n",
    };
    let insert = format!(
        "INSERT INTO items ({names}, full_name, origin) SELECT {}, {full_name}, {origin} FROM {}",
        shape.key_values(kind),
        series(kind, from, from + count - 1)
    );
    // SQLite: take the write lock first; a plain INSERT reads, then asks to write, and SQLite
    // answers BUSY at once (no waiting) when the runner is committing meanwhile. InnoDB may pick
    // the insert as a deadlock's victim against a batch's range locks. Either is tried again,
    // as an app would.
    let sql = match kind {
        Kind::Sqlite => format!("BEGIN IMMEDIATE; {insert}; COMMIT"),
        _ => insert,
    };
    for attempt in 1.. {
        match db.try_raw(&sql).await {
            Ok(()) => break,
            Err(e)
                if attempt < 50
                    && ["locked", "Deadlock"]
                        .iter()
                        .any(|w| e.to_string().contains(w)) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("insert: {e}"),
        }
    }
}

/// The items table, `ROWS` pending rows, and a trigger that counts each row's updates.
async fn items_table(db: &TestDatabase, shape: Shape) {
    let (columns, constraint) = shape.key_columns(db.kind);
    db.execute(&format!(
        "CREATE TABLE items ({columns}, full_name VARCHAR(200), display_name VARCHAR(200), origin INT NOT NULL DEFAULT 0, updates INT NOT NULL DEFAULT 0, {constraint})"
    ))
    .await;
    let trigger = match db.kind {
        Kind::Postgres => {
            "CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$; \
             CREATE TRIGGER count_update BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION count_update()"
        }
        Kind::MariaDb => {
            "CREATE TRIGGER count_update BEFORE UPDATE ON items FOR EACH ROW SET NEW.updates = OLD.updates + 1"
        }
        Kind::Sqlite => {
            "CREATE TRIGGER count_update AFTER UPDATE OF display_name ON items BEGIN UPDATE items SET updates = updates + 1 WHERE rowid = NEW.rowid; END"
        }
    };
    db.raw(trigger).await;
    insert(db, shape, 1, ROWS, 0).await;
}

/// `value` as an SQL literal.
fn literal(value: &KeyValue) -> String {
    match value {
        KeyValue::Int(v) => v.to_string(),
        KeyValue::Uuid(v) | KeyValue::Text(v) => format!("'{}'", v.replace('\'', "''")),
        KeyValue::Bytes(_) => unreachable!("no binary keys here"),
    }
}

/// Rows of the original table still pending at or before `cursor` in key order (the
/// database's own comparison, in the column's collation).
async fn pending_behind(db: &TestDatabase, shape: Shape, cursor: &Key) -> i64 {
    let values: Vec<String> = cursor.values().iter().map(literal).collect();
    db.scalar(&format!(
        "SELECT count(*) FROM items WHERE origin = 0 AND display_name IS NULL AND ({}) <= ({})",
        shape.key_names(),
        values.join(", ")
    ))
    .await
}

async fn killed_while_an_old_writer_inserts(kind: Kind, shape: Shape) {
    let db = TestDatabase::create(kind).await;
    items_table(&db, shape).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!(
            "[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = {}\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nbatch_size = 500\nmax_batch_size = 2000\ntarget_batch_ms = 20\nmax_rows_per_second = 10000\n",
            shape.key_toml()
        ),
    )
    .expect("write config");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut random = Lcg(seed);
    let url = db.url();
    let label = format!("{kind:?} {shape:?} seed {seed}");
    let (mut kills, mut written) = (0, 0);
    let updated = "SELECT count(*) FROM items WHERE updates > 0";
    let mut before = 0;
    for _ in 0..6 {
        let mut child = spawn(&config, &url, &["run", NAME]);
        // The old writer inserts pending rows while the runner works: until the runner has
        // committed a batch (however slowly it starts on a busy machine), then a random while.
        let mut until = std::time::Instant::now() + Duration::from_secs(20);
        let mut committed = false;
        while std::time::Instant::now() < until {
            insert(&db, shape, WRITER_FROM + written, 20, 1).await;
            written += 20;
            tokio::time::sleep(Duration::from_millis(25)).await;
            if !committed && db.scalar(updated).await > before {
                committed = true;
                until = std::time::Instant::now() + Duration::from_millis(random.next(400));
            }
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        db.wait_until_alone().await;
        let done = db.scalar(updated).await;
        before = done;
        let twice = db
            .scalar("SELECT count(*) FROM items WHERE updates > 1")
            .await;
        assert_eq!(twice, 0, "{label}: no row updated twice");
        let (_, rows_updated, _) = db
            .checkpoint(NAME)
            .await
            .unwrap_or((None, 0, String::new()));
        assert_eq!(
            rows_updated, done,
            "{label}: checkpoint count = rows changed"
        );
        if let Some(cursor) = db.checkpoint_cursor(NAME).await {
            assert_eq!(
                pending_behind(&db, shape, &cursor).await,
                0,
                "{label}: the checkpoint (cursor {cursor}) is never ahead of the data"
            );
        }
        // A kill counts when it interrupted the pass: some rows done, some of the table's own
        // still pending (the writer's rows may be anywhere).
        let left = db
            .scalar("SELECT count(*) FROM items WHERE origin = 0 AND display_name IS NULL")
            .await;
        kills += usize::from(done > 0 && left > 0);
    }
    assert!(
        kills >= 3,
        "{label}: the kills must land mid-pass ({kills})"
    );

    let runs = run_until_complete(&config, &url);
    let last = runs.last().expect("a run");
    assert!(last.stderr.contains("complete"), "{label}: {}", last.stderr);
    let total = ROWS as i64 + written as i64;
    let counts = db
        .scalar("SELECT count(*) FROM items WHERE updates = 1 AND display_name = full_name")
        .await;
    assert_eq!(counts, total, "{label}: every row updated exactly once");
    let (_, rows_updated, status) = db.checkpoint(NAME).await.expect("checkpoint");
    assert_eq!(
        (rows_updated, status.as_str()),
        (total, "complete"),
        "{label}"
    );

    // Status reads as one backfill, with an estimate marked as such for other keys.
    let status = backfill(&config, &url, &["status", NAME, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(report[0]["first_pending_key"], serde_json::Value::Null);
    assert_eq!(
        report[0]["percent_estimated"],
        !matches!(shape, Shape::Int),
        "{label}"
    );
    db.drop_database().await;
}

async fn every_database(shape: Shape) {
    for kind in ALL_KINDS {
        killed_while_an_old_writer_inserts(kind, shape).await;
    }
}

#[tokio::test]
async fn an_integer_key_survives_kills_and_an_old_writer() {
    every_database(Shape::Int).await;
}

#[tokio::test]
async fn a_uuid_key_survives_kills_and_an_old_writer() {
    every_database(Shape::Uuid).await;
}

#[tokio::test]
async fn a_collated_text_key_survives_kills_and_an_old_writer() {
    every_database(Shape::Text).await;
}

#[tokio::test]
async fn a_composite_key_survives_kills_and_an_old_writer() {
    every_database(Shape::Composite).await;
}

/// A typed cursor is kept exactly: the first pending key of a text key comes back with its
/// bytes, a UUID as a UUID, and a rerun after new pending rows behind the cursor starts from
/// the key before the first of them.
#[tokio::test]
async fn typed_keys_are_reported_exactly() {
    let db = TestDatabase::create(Kind::Postgres).await;
    items_table(&db, Shape::Text).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!("[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nbatch_size = 20000\nmax_batch_size = 50000\n"),
    )
    .expect("write config");
    let url = db.url();
    run_until_complete(&config, &url);
    // In the ICU collation 'a3' sorts before 'B4'; in byte order 'B4' comes first.
    db.execute("UPDATE items SET display_name = NULL WHERE id IN ('B4', 'a3')")
        .await;
    let status = backfill(&config, &url, &["status", NAME, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    assert_eq!(
        report[0]["first_pending_key"],
        serde_json::json!({"text": "a3"})
    );
    // A text key may be an e-mail address: what an operator reads (and CI logs keep) hides it
    // unless the backfill says `show_keys = true`.
    let human = backfill(&config, &url, &["status", NAME]);
    assert!(
        human
            .stdout
            .contains("yes (from key (hidden; show_keys = true shows it))")
            && !human.stdout.contains("a3"),
        "{}",
        human.stdout
    );
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, format!("{text}show_keys = true\n")).expect("write config");
    let human = backfill(&config, &url, &["status", NAME]);
    assert!(
        human.stdout.contains("yes (from key \"a3\")"),
        "{}",
        human.stdout
    );
    let runs = run_until_complete(&config, &url);
    assert!(
        runs[0]
            .stderr
            .contains("pending rows found again from key \"a3\""),
        "{}",
        runs[0].stderr
    );
    // The trigger counted the reset too: 1 (backfill) + 1 (reset) + 1 (backfilled again).
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 3")
            .await,
        2,
        "the two reset rows, updated once more each"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates <> 1")
            .await,
        2
    );
    db.drop_database().await;
}

/// The DynamoDB store keeps a composite cursor typed (a JSON array in `cursor_key`), never ahead
/// of the data, across a kill -9.
#[tokio::test]
async fn dynamodb_keeps_a_composite_cursor_typed() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let db = TestDatabase::create(Kind::MariaDb).await;
    items_table(&db, Shape::Composite).await;
    let table = dynamodb_table().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!("[checkpoint]\nstore = \"dynamodb\"\ntable = \"{table}\"\n[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = [\"tenant\", \"n\"]\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nmax_rows_per_second = 20000\nstatement_timeout_ms = 1000\nlease_ttl_ms = 2000\n"),
    )
    .expect("write config");
    let url = db.url();
    let mut child = spawn(&config, &url, &["run", NAME]);
    std::thread::sleep(Duration::from_millis(1_200));
    child.kill().expect("kill -9");
    let _ = child.wait();
    db.wait_until_alone().await;
    let item = dynamodb()
        .await
        .get_item()
        .table_name(&table)
        .key("name", AttributeValue::S(NAME.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item")
        .item
        .expect("a checkpoint item after 1.2 s of work");
    assert!(!item.contains_key("cursor"), "no integer cursor: {item:?}");
    let json = item
        .get("cursor_key")
        .and_then(|v| v.as_s().ok())
        .expect("cursor_key");
    let cursor = Key::parse(json).expect("typed cursor");
    assert!(
        matches!(cursor.values(), [KeyValue::Text(_), KeyValue::Int(_)]),
        "{json}"
    );
    assert_eq!(pending_behind(&db, Shape::Composite, &cursor).await, 0);
    assert!(
        db.scalar("SELECT count(*) FROM items WHERE updates > 0")
            .await
            > 0
    );
    // The killed runner's lease expires (its TTL and the allowance for clocks that disagree);
    // then the work goes on from the cursor.
    std::thread::sleep(Duration::from_millis(
        2_100 + shiftguard_core::backfill::LEASE_CLOCK_SKEW_MS as u64,
    ));
    run_until_complete(&config, &url);
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 1")
            .await,
        ROWS as i64,
        "every row updated exactly once"
    );
    db.drop_database().await;
}

/// Has the trigger also note which database session updated each row, and when (PostgreSQL
/// and MariaDB): each run of a shard updates through one session of its own.
async fn track_sessions(db: &TestDatabase) {
    match db.kind {
        Kind::Postgres => {
            db.raw(
                "ALTER TABLE items ADD COLUMN by_session BIGINT, ADD COLUMN at_time TIMESTAMPTZ",
            )
            .await;
            db.raw("CREATE OR REPLACE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updates := OLD.updates + 1; NEW.by_session := pg_backend_pid(); NEW.at_time := clock_timestamp(); RETURN NEW; END $$")
                .await;
        }
        Kind::MariaDb => {
            db.raw(
                "ALTER TABLE items ADD COLUMN by_session BIGINT, ADD COLUMN at_time DATETIME(6)",
            )
            .await;
            db.raw("DROP TRIGGER count_update").await;
            db.raw("CREATE TRIGGER count_update BEFORE UPDATE ON items FOR EACH ROW BEGIN SET NEW.updates = OLD.updates + 1; SET NEW.by_session = CONNECTION_ID(); SET NEW.at_time = NOW(6); END")
                .await;
        }
        Kind::Sqlite => unreachable!("SQLite has one writer at a time anyway"),
    }
}

/// Each session's updates: its first and last key (as a place in key order) and time.
fn sessions(shape: Shape) -> String {
    format!(
        "WITH o AS (SELECT by_session AS s, at_time AS t, row_number() OVER (ORDER BY {}) AS k FROM items WHERE by_session IS NOT NULL), \
         g AS (SELECT s, min(k) AS lo, max(k) AS hi, min(t) AS t0, max(t) AS t1 FROM o GROUP BY s)",
        shape.key_names()
    )
}

/// Pairs of sessions that updated the same stretch of keys (one shard: each run of a shard
/// stays inside its range) during overlapping times: two runners in one shard at once.
async fn shards_worked_twice_at_once(db: &TestDatabase, shape: Shape) -> i64 {
    db.scalar(&format!(
        "{} SELECT count(*) FROM g a JOIN g b ON a.s < b.s AND a.lo <= b.hi AND b.lo <= a.hi AND a.t0 <= b.t1 AND b.t0 <= a.t1",
        sessions(shape)
    ))
    .await
}

/// The most sessions that were updating rows at one time.
async fn most_sessions_at_once(db: &TestDatabase, shape: Shape) -> i64 {
    db.scalar(&format!(
        "{} SELECT coalesce(max(c), 0) FROM (SELECT (SELECT count(*) FROM g b WHERE b.t0 <= a.t0 AND a.t0 <= b.t1) AS c FROM g a) AS x",
        sessions(shape)
    ))
    .await
}

/// Writes a configuration of one backfill of `items` (`set` copies `full_name`; `settings` give
/// its key, guard and tuning) on the checkpoint store `store`: `sql` or `dynamodb` (a new table
/// in the emulator).
async fn write_config(config: &std::path::Path, store: &str, settings: &str) {
    let checkpoint = match store {
        "dynamodb" => format!(
            "[checkpoint]\nstore = \"dynamodb\"\ntable = \"{}\"\n",
            dynamodb_table().await
        ),
        _ => String::new(),
    };
    std::fs::write(
        config,
        format!("{checkpoint}[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nset = \"display_name = full_name\"\n{settings}\n"),
    )
    .expect("write config");
}

/// Four shards, two runner processes at once and a third started late, an old writer inserting
/// throughout and again after the shards are done: no row is updated twice, every shard and the
/// backfill end complete, and the whole-table verification catches the late rows.
async fn sharded(kind: Kind, shape: Shape, store: &str) {
    let db = TestDatabase::create(kind).await;
    items_table(&db, shape).await;
    track_sessions(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    let settings = format!(
        "key = {}\npending = \"display_name IS NULL\"\nshards = 4\nbatch_size = 500\nmax_batch_size = 2000\nmax_rows_per_second = 40000\nstatement_timeout_ms = 2000\nlease_ttl_ms = 5000",
        shape.key_toml()
    );
    write_config(&config, store, &settings).await;
    let url = db.url();
    let label = format!("{kind:?} {shape:?} {store}");
    let mut runners = vec![
        spawn(&config, &url, &["run", NAME]),
        spawn(&config, &url, &["run", NAME]),
    ];
    let mut written = 0;
    let started = std::time::Instant::now();
    while runners
        .iter_mut()
        .any(|r| r.try_wait().expect("try_wait").is_none())
    {
        if runners.len() == 2 && started.elapsed() > Duration::from_millis(1_500) {
            runners.push(spawn(&config, &url, &["run", NAME]));
        }
        insert(&db, shape, WRITER_FROM + written, 20, 1).await;
        written += 20;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{label}: runners still at work"
        );
    }
    for runner in runners {
        let run: crate::support::Run = runner.wait_with_output().expect("runner").into();
        assert!(
            run.code == 0 || run.code == 75,
            "{label}: a runner ended {}: {}",
            run.code,
            run.stderr
        );
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates > 1")
            .await,
        0,
        "{label}: no row updated twice"
    );
    assert_eq!(
        shards_worked_twice_at_once(&db, shape).await,
        0,
        "{label}: no shard worked by two runners at once"
    );
    assert!(
        most_sessions_at_once(&db, shape).await >= 2,
        "{label}: the runners worked at once"
    );
    // The late writer: rows behind every shard's cursor, after the shards are done.
    insert(&db, shape, WRITER_FROM + written, 100, 1).await;
    written += 100;
    let runs = run_until_complete(&config, &url);
    assert!(
        runs.iter()
            .any(|r| r.stderr.contains("pending rows found again")),
        "{label}: the whole-table verification found the late rows: {:?}",
        runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );
    let total = ROWS as i64 + written as i64;
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 1 AND display_name = full_name")
            .await,
        total,
        "{label}: every row updated exactly once"
    );
    let status = backfill(&config, &url, &["status", NAME, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let shards = report[0]["shards"]
        .as_array()
        .expect("shards in the status");
    assert_eq!(shards.len(), 4, "{label}: {}", status.stdout);
    for shard in shards {
        assert_eq!(
            shard["checkpoint"]["status"], "complete",
            "{label}: {shard}"
        );
        assert!(
            shard["checkpoint"]["rows_updated"].as_i64() > Some(0),
            "{label}: {shard}"
        );
    }
    assert_eq!(report[0]["checkpoint"]["status"], "complete", "{label}");
    if store == "sql" {
        // The figures add up to one backfill: every row counted once.
        assert_eq!(report[0]["checkpoint"]["rows_updated"], total, "{label}");
    }
    db.drop_database().await;
}

#[tokio::test]
async fn four_shards_on_three_runners_with_sql_checkpoints() {
    sharded(Kind::Postgres, Shape::Uuid, "sql").await;
    sharded(Kind::MariaDb, Shape::Int, "sql").await;
}

#[tokio::test]
async fn four_shards_on_three_runners_with_dynamodb_checkpoints() {
    sharded(Kind::Postgres, Shape::Composite, "dynamodb").await;
}

/// `max_concurrency = 2` over four shards: two runners work at once, a third that arrives
/// after a lease's TTL (the slots' leases are renewed) finds both slots taken and does nothing.
async fn capped(kind: Kind, store: &str) {
    let db = TestDatabase::create(kind).await;
    items_table(&db, Shape::Int).await;
    track_sessions(&db).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    write_config(
        &config,
        store,
        "key = \"id\"\npending = \"display_name IS NULL\"\nshards = 4\nmax_concurrency = 2\nmax_rows_per_second = 16000\nstatement_timeout_ms = 1000\nlease_ttl_ms = 3000",
    )
    .await;
    let (url, label) = (db.url(), format!("{kind:?} {store}"));
    let mut runners = vec![
        spawn(&config, &url, &["run", NAME]),
        spawn(&config, &url, &["run", NAME]),
    ];
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    for runner in &mut runners {
        assert!(
            runner.try_wait().expect("try_wait").is_none(),
            "{label}: the first two still work"
        );
    }
    let third = backfill(&config, &url, &["run", NAME]);
    assert_eq!(third.code, 75, "{label}: {}", third.stderr);
    assert!(
        third
            .stderr
            .contains("skipped: max_concurrency = 2 runners work its shards already"),
        "{label}: {}",
        third.stderr
    );
    for runner in runners {
        let run: crate::support::Run = runner.wait_with_output().expect("runner").into();
        assert!(run.code == 0 || run.code == 75, "{label}: {}", run.stderr);
    }
    run_until_complete(&config, &url);
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 1")
            .await,
        ROWS as i64,
        "{label}: every row updated once"
    );
    assert_eq!(
        most_sessions_at_once(&db, Shape::Int).await,
        2,
        "{label}: two runners at once, never three"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn max_concurrency_caps_the_runners_on_every_store() {
    capped(Kind::Postgres, "sql").await;
    capped(Kind::MariaDb, "dynamodb").await;
}

/// `--parallel` works the shards from one process; the rate cap is shared, not multiplied.
#[tokio::test]
async fn parallel_shards_from_one_process() {
    let db = TestDatabase::create(Kind::Sqlite).await;
    items_table(&db, Shape::Text).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!("[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nshards = 4\nmax_rows_per_second = 50000\n"),
    )
    .expect("write config");
    let started = std::time::Instant::now();
    let run = backfill(&config, &db.url(), &["run", NAME, "--parallel", "4"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("complete: nothing is pending"),
        "{}",
        run.stderr
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 1")
            .await,
        ROWS as i64
    );
    // 100,000 rows at 50,000 rows/s for the whole backfill: at least 2 s, though 4 shards ran.
    assert!(
        took >= Duration::from_millis(1_900),
        "{took:?}: the cap was multiplied"
    );
    let status = backfill(&config, &db.url(), &["status", NAME]);
    assert_eq!(
        status.stdout.matches(".shard").count(),
        4,
        "{}",
        status.stdout
    );
    db.drop_database().await;
}

/// A MySQL `BIGINT UNSIGNED` key past 2^63 − 1 cannot be read as a 64-bit integer: the backfill
/// fails with the reason instead of walking in circles.
#[tokio::test]
async fn an_unsigned_key_past_the_signed_range_fails_closed() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    db.execute("CREATE TABLE items (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, full_name VARCHAR(200), display_name VARCHAR(200))")
        .await;
    db.execute("INSERT INTO items (id, full_name) SELECT 9223372036854775000 + seq, 'x' FROM seq_1_to_2000")
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!("[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nbatch_size = 500\nmin_batch_size = 500\nmax_batch_size = 500\n"),
    )
    .expect("write config");
    let run = backfill(&config, &db.url(), &["run", NAME]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the key went backwards"),
        "{}",
        run.stderr
    );
    // The first batch (500 keys below 2^63) committed; the one whose last key wrapped did not.
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE display_name IS NOT NULL")
            .await,
        500
    );
    db.drop_database().await;
}

/// Sends `signal` (`-STOP`, `-CONT`) to a runner process.
fn signal(runner: &std::process::Child, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &runner.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal}");
}

/// A runner frozen (SIGSTOP) past its lease while another takes the backfill over, then thawed,
/// with a deliberately inexact `pending` guard (always true, so a batch done twice updates its
/// rows twice): with DynamoDB the thawed runner's next batch is rolled back by the fence in the
/// backfilled database, and the one that took over resumed from the fence, so after one pass
/// every row was updated exactly once. With the SQL store the frozen runner's session lock keeps
/// the other out until it thaws.
async fn stale_runner(kind: Kind, store: &str) {
    let db = TestDatabase::create(kind).await;
    items_table(&db, Shape::Int).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    write_config(
        &config,
        store,
        "key = \"id\"\npending = \"display_name IS NULL OR origin >= 0\"\nbatch_size = 5000\nmin_batch_size = 5000\nmax_batch_size = 5000\npause_ms = 300\nstatement_timeout_ms = 500\nlease_ttl_ms = 1000",
    )
    .await;
    let (url, label) = (db.url(), format!("{kind:?} {store}"));
    let updated = "SELECT count(*) FROM items WHERE updates > 0";
    let stale = spawn(&config, &url, &["run", NAME]);
    let started = std::time::Instant::now();
    while db.scalar(updated).await < 10_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{label}: no batches"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&stale, "-STOP");
    // Past the lease (1 s) and the allowance for clocks that disagree.
    tokio::time::sleep(Duration::from_millis(
        1_300 + shiftguard_core::backfill::LEASE_CLOCK_SKEW_MS as u64,
    ))
    .await;
    let frozen_at = db.scalar(updated).await;
    let other = spawn(&config, &url, &["run", NAME]);
    let took_over = std::time::Instant::now();
    while store == "dynamodb"
        && db.scalar(updated).await == frozen_at
        && took_over.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&stale, "-CONT");
    let stale: crate::support::Run = stale.wait_with_output().expect("stale runner").into();
    let other: crate::support::Run = other.wait_with_output().expect("other runner").into();
    match store {
        "dynamodb" => {
            assert!(
                db.scalar(updated).await > frozen_at,
                "{label}: the other runner worked while the first was frozen"
            );
            assert_eq!(stale.code, 75, "{label}: {}", stale.stderr);
            assert!(
                stale.stderr.contains("skipped: another runner"),
                "{label}: the thawed runner was fenced out: {}",
                stale.stderr
            );
        }
        _ => {
            assert_eq!(other.code, 75, "{label}: {}", other.stderr);
            assert_eq!(stale.code, 0, "{label}: {}", stale.stderr);
        }
    }
    // Finish the pass (not the verification: with this guard every row is always pending).
    let mut ends = vec![stale.stderr, other.stderr];
    while !ends
        .iter()
        .any(|e| e.contains("swept: the pass is finished"))
    {
        assert!(ends.len() < 10, "{label}: no end of the pass: {ends:?}");
        let run = backfill(&config, &url, &["run", NAME]);
        assert!(run.code == 0 || run.code == 75, "{label}: {}", run.stderr);
        ends.push(run.stderr);
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates > 1")
            .await,
        0,
        "{label}: no row updated twice: {ends:?}"
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 1")
            .await,
        ROWS as i64,
        "{label}: every row updated once"
    );
    // A reset starts over: the next pass covers every row again (nothing of the fence's
    // progress from before carries over).
    let reset = backfill(&config, &url, &["reset", NAME]);
    assert_eq!(reset.code, 0, "{label}: {}", reset.stderr);
    let again = backfill(&config, &url, &["run", NAME]);
    assert!(
        again.stderr.contains("swept: the pass is finished"),
        "{label}: {}",
        again.stderr
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates = 2")
            .await,
        ROWS as i64,
        "{label}: every row updated again after the reset"
    );
    db.drop_database().await;
}

/// A runner held by a health signal keeps renewing its lease while it waits; when the checkpoint
/// changes meanwhile (an operator's pause here, as a runner taking the lease over would) the
/// run ends as that change says, not as an error.
#[tokio::test]
async fn a_pause_while_the_runner_waits_ends_the_run_cleanly() {
    let db = TestDatabase::create(Kind::Postgres).await;
    items_table(&db, Shape::Int).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    write_config(
        &config,
        "dynamodb",
        "key = \"id\"\npending = \"display_name IS NULL\"\nthrottle_query = \"SELECT 100\"\nthrottle_max = 1\nstatement_timeout_ms = 500\nlease_ttl_ms = 1000",
    )
    .await;
    let url = db.url();
    let held = spawn(&config, &url, &["run", NAME, "--max-seconds", "20"]);
    // Held from its first batch on: wait until its lease is stored, then pause.
    let started = std::time::Instant::now();
    loop {
        let status = backfill(&config, &url, &["status", NAME, "--json"]);
        if status.stdout.contains("\"lease_owner\"")
            && !status.stdout.contains("\"lease_owner\": null")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no lease: {}{}",
            status.stdout,
            status.stderr
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let paused = backfill(&config, &url, &["pause", NAME]);
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    let held: crate::support::Run = held.wait_with_output().expect("runner").into();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the run went on to its time limit"
    );
    assert_eq!(held.code, 0, "{}", held.stderr);
    assert!(
        held.stderr
            .contains("stopped: an operator changed it to paused"),
        "{}",
        held.stderr
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_runner_frozen_past_its_lease_is_fenced_out() {
    stale_runner(Kind::Postgres, "dynamodb").await;
    stale_runner(Kind::MariaDb, "dynamodb").await;
    stale_runner(Kind::MariaDb, "sql").await;
}

/// MySQL's `max_execution_time` bounds SELECT only, and a session's limits cannot follow a
/// run's deadline: a batch whose UPDATE outlasts its budget is killed (`KILL QUERY`) by the
/// runner's watchdog, rolled back, and the run ends at its deadline instead of when the
/// statement would have. Shown on MariaDB, whose own session limit here is far longer (10 s).
#[tokio::test]
async fn a_mysql_batch_outlasting_its_budget_is_killed_by_the_watchdog() {
    let db = TestDatabase::create(Kind::MariaDb).await;
    items_table(&db, Shape::Int).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    // 1,000 rows sleeping 10 ms each: one batch would take 10 s.
    std::fs::write(
        &config,
        format!("[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = CONCAT(full_name, SLEEP(0.01))\"\nbatch_size = 1000\nmin_batch_size = 1000\nmax_batch_size = 1000\nstatement_timeout_ms = 10000\nlease_ttl_ms = 30000\n"),
    )
    .expect("write config");
    let started = std::time::Instant::now();
    let run = backfill(&config, &db.url(), &["run", NAME, "--max-seconds", "2"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("stopped before the time limit"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(5), "{took:?}: {}", run.stderr);
    assert_eq!(
        db.scalar("SELECT count(*) FROM items WHERE updates > 0")
            .await,
        0,
        "the killed batch rolled back"
    );
    assert_eq!(
        db.scalar(
            "SELECT count(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'UPDATE items%'"
        )
        .await,
        0,
        "nothing left running"
    );
    db.drop_database().await;
}

/// An analyzed PostgreSQL table is split at its statistics' histogram, not by reading the index
/// up to each offset: four shards of a table whose keys crowd at the start (150,000 dense,
/// 50,000 spread over a billion) each get about a quarter of the rows.
#[tokio::test]
async fn an_analyzed_postgresql_table_is_split_at_its_histogram() {
    let db = TestDatabase::create(Kind::Postgres).await;
    db.execute("CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, full_name VARCHAR(200), display_name VARCHAR(200))")
        .await;
    db.execute("INSERT INTO items (id, full_name) SELECT n, 'User ' || n FROM generate_series(1, 150000) AS n")
        .await;
    db.execute("INSERT INTO items (id, full_name) SELECT 1000000 + n * 20000, 'User ' || n FROM generate_series(1, 50000) AS n")
        .await;
    db.execute("ANALYZE items").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shiftguard.toml");
    std::fs::write(
        &config,
        format!("[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nshards = 4\nbatch_size = 5000\n"),
    )
    .expect("write config");
    let run = backfill(&config, &db.url(), &["run", NAME, "--parallel", "4"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("planned 4 shards from the table's statistics (pg_stats histogram)"),
        "{}",
        run.stderr
    );
    let status = backfill(&config, &db.url(), &["status", NAME, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let rows: Vec<i64> = report[0]["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|shard| shard["checkpoint"]["rows_updated"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(rows.iter().sum::<i64>(), 200_000, "{rows:?}");
    for shard in &rows {
        assert!(
            (45_000..=55_000).contains(shard),
            "a quarter each, give or take ANALYZE's sample: {rows:?}"
        );
    }
    db.drop_database().await;

    // UUIDs, and text in an ICU collation (the bounds compare as the index does); a composite
    // key is split at exact offsets.
    for shape in [Shape::Uuid, Shape::Text, Shape::Composite] {
        let db = TestDatabase::create(Kind::Postgres).await;
        items_table(&db, shape).await;
        db.execute("ANALYZE items").await;
        std::fs::write(
            &config,
            format!("[[backfill]]\nname = \"{NAME}\"\ntable = \"items\"\nkey = {}\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\nshards = 4\nbatch_size = 5000\n", shape.key_toml()),
        )
        .expect("write config");
        let run = backfill(&config, &db.url(), &["run", NAME, "--parallel", "4"]);
        assert_eq!(run.code, 0, "{shape:?}: {}", run.stderr);
        let planned = match shape {
            Shape::Composite => "planned 4 shards at exact row offsets",
            _ => "planned 4 shards from the table's statistics (pg_stats histogram)",
        };
        assert!(run.stderr.contains(planned), "{shape:?}: {}", run.stderr);
        let status = backfill(&config, &db.url(), &["status", NAME, "--json"]);
        let report: serde_json::Value = serde_json::from_str(&status.stdout).expect("status");
        for shard in report[0]["shards"].as_array().expect("shards") {
            let rows = shard["checkpoint"]["rows_updated"].as_i64().unwrap_or(0);
            assert!((20_000..=30_000).contains(&rows), "{shape:?}: {shard}");
        }
        assert_eq!(
            db.scalar("SELECT count(*) FROM items WHERE updates = 1")
                .await,
            ROWS as i64,
            "{shape:?}"
        );
        db.drop_database().await;
    }
}
