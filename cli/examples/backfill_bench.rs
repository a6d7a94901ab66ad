//! The backfill benchmark, in one run on PostgreSQL:
//!
//! (a) one `UPDATE … WHERE display_name IS NULL` over the whole table (the limit),
//! (b) shiftguard's backfill with default settings,
//! (c) the row-by-row loop (select a keyset page of 1,000 ids, update each by id, commit per page),
//! (d) the backfill split into `SHARDS` shards, worked at once from one process (`--parallel`).
//!
//! (a), (b) and (d) run twice: on a `BIGINT` key (in heap order) and on a `UUID` key (random against
//! the heap). Each starts from a freshly loaded table. Prints rows/s, the ratios, the batch
//! transaction percentiles of (b) and the peak resident memory of (b).
//!
//! ```sh
//! cargo run --release -p shiftguard-cli --example backfill_bench -- \
//!     postgres://postgres@127.0.0.1/postgres 1000000 100000
//! ```
//! Arguments: database URL, rows (default 1,000,000), rows for (c) (default 100,000: the loop is
//! slow; its rate is what counts). It creates and drops the table `shiftguard_bench_users` and the
//! checkpoint table `shiftguard_bench_checkpoints`. With `SHIFTGUARD_BENCH_TRACE` set, (d) prints
//! every event but batches with its time (where a sharded run spends what is not batches).

use std::time::{Duration, Instant};

use shiftguard_core::backfill::KeyRange;
use shiftguard_core::config::ProjectConfig;
use shiftguard_sql::DatabaseUrl;
use shiftguard_sql::backfill::{Checkpoints, Event, LagSource, Runner};
use shiftguard_sql::checkpoint::SqlCheckpoints;
use sqlx::{Connection, PgConnection};

const TABLE: &str = "shiftguard_bench_users";

/// The key the table is walked by.
#[derive(Clone, Copy, Debug)]
enum KeyType {
    /// `BIGINT`, in the heap's order.
    Int,
    /// `UUID` (md5 of the row number): key order is random against the heap's.
    Uuid,
}

impl KeyType {
    fn column(self) -> (&'static str, &'static str) {
        match self {
            KeyType::Int => ("BIGINT", "g"),
            KeyType::Uuid => ("UUID", "CAST(md5(CAST(g AS TEXT)) AS UUID)"),
        }
    }
}

/// Shards of (d).
const SHARDS: u32 = 2;

/// (a), (b) and (d) on one key type: their durations, the batch durations and peak memory.
struct Measured {
    single: Duration,
    engine: Duration,
    batches: Vec<f64>,
    peak_kib: u64,
    sharded: Duration,
    sharded_batches: Vec<f64>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1/postgres".to_owned());
    let rows: i64 = args.next().map_or(1_000_000, |n| n.parse().expect("rows"));
    let loop_rows: i64 = args
        .next()
        .map_or(100_000.min(rows), |n| n.parse().expect("row-by-row rows"));
    let mut db = PgConnection::connect(&url).await.expect("connect");
    let int = measure(&mut db, &url, rows, KeyType::Int).await;
    let uuid = measure(&mut db, &url, rows, KeyType::Uuid).await;

    load(&mut db, loop_rows, KeyType::Int).await;
    let started = Instant::now();
    let mut last = 0i64;
    loop {
        let mut tx = db.begin().await.expect("begin");
        let ids: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM {TABLE} WHERE id > $1 ORDER BY id LIMIT 1000"
        ))
        .bind(last)
        .fetch_all(&mut *tx)
        .await
        .expect("page");
        let Some(&page_end) = ids.last() else { break };
        for id in ids {
            sqlx::query(&format!(
                "UPDATE {TABLE} SET display_name = full_name WHERE id = $1 AND display_name IS NULL"
            ))
            .bind(id)
            .execute(&mut *tx)
            .await
            .expect("row update");
        }
        tx.commit().await.expect("commit");
        last = page_end;
    }
    let row_by_row = started.elapsed();

    sqlx::raw_sql(&format!(
        "DROP TABLE {TABLE}; DROP TABLE IF EXISTS shiftguard_bench_checkpoints"
    ))
    .execute(&mut db)
    .await
    .expect("clean up");

    let rate = |n: i64, d: Duration| n as f64 / d.as_secs_f64();
    let c = rate(loop_rows, row_by_row);
    println!("rows                               {rows}");
    for (key, measured) in [(KeyType::Int, &int), (KeyType::Uuid, &uuid)] {
        let (a, b) = (rate(rows, measured.single), rate(rows, measured.engine));
        let mut batches = measured.batches.clone();
        batches.sort_by(f64::total_cmp);
        let percentile = |p: f64| batches[((batches.len() - 1) as f64 * p).round() as usize];
        println!("key {key:?}");
        println!(
            "  (a) single UPDATE                  {:>9.0} rows/s  ({:.2} s)",
            a,
            measured.single.as_secs_f64()
        );
        println!(
            "  (b) shiftguard backfill, defaults  {:>9.0} rows/s  ({:.2} s, {} batches)",
            b,
            measured.engine.as_secs_f64(),
            batches.len()
        );
        println!(
            "  (b) / (a)                          {:>9.2}   (target >= 0.8)",
            b / a
        );
        println!(
            "  (b) batch transaction ms           p50 {:.1}  p99 {:.1}  max {:.1}   (target p99 <= 250)",
            percentile(0.5),
            percentile(0.99),
            batches.last().copied().unwrap_or_default()
        );
        println!(
            "  (b) peak resident memory           {:.1} MiB",
            measured.peak_kib as f64 / 1024.0
        );
        println!(
            "  (b) time in batch transactions     {:.2} s of {:.2} s",
            batches.iter().sum::<f64>() / 1e3,
            measured.engine.as_secs_f64()
        );
        let d = rate(rows, measured.sharded);
        let mut sharded = measured.sharded_batches.clone();
        sharded.sort_by(f64::total_cmp);
        let percentile = |p: f64| sharded[((sharded.len() - 1) as f64 * p).round() as usize];
        println!(
            "  (d) {SHARDS} shards in parallel           {:>9.0} rows/s  ({:.2} s, {} batches)",
            d,
            measured.sharded.as_secs_f64(),
            sharded.len()
        );
        println!(
            "  (d) / (a)                          {:>9.2}   (target >= 1.0)",
            d / a
        );
        println!(
            "  (d) batch transaction ms           p50 {:.1}  p99 {:.1}  max {:.1}",
            percentile(0.5),
            percentile(0.99),
            sharded.last().copied().unwrap_or_default()
        );
    }
    println!(
        "(c) row by row, commit per 1,000   {:>9.0} rows/s  ({:.2} s for {loop_rows} rows)",
        c,
        row_by_row.as_secs_f64()
    );
    println!(
        "(b) / (c), integer key             {:>9.1}   (target >= 20)",
        rate(rows, int.engine) / c
    );
}

/// (a) then (b) over `rows` rows keyed by `key`, each from a freshly loaded table.
async fn measure(db: &mut PgConnection, url: &str, rows: i64, key: KeyType) -> Measured {
    load(db, rows, key).await;
    let started = Instant::now();
    let updated = sqlx::query(&format!(
        "UPDATE {TABLE} SET display_name = full_name WHERE display_name IS NULL"
    ))
    .execute(&mut *db)
    .await
    .expect("single update")
    .rows_affected();
    let single = started.elapsed();
    assert_eq!(updated, rows as u64);

    load(db, rows, key).await;
    sqlx::raw_sql("DROP TABLE IF EXISTS shiftguard_bench_checkpoints")
        .execute(&mut *db)
        .await
        .expect("drop checkpoints");
    let config = ProjectConfig::parse(&format!(
        "[checkpoint]\ntable = \"shiftguard_bench_checkpoints\"\n[[backfill]]\nname = \"bench\"\ntable = \"{TABLE}\"\nkey = \"id\"\npending = \"display_name IS NULL\"\nset = \"display_name = full_name\"\n"
    ))
    .expect("config");
    let parsed_url = DatabaseUrl::parse(url).expect("url");
    let runner = Runner {
        url: &parsed_url,
        config: &config.backfill[0],
        checkpoints: Checkpoints::Sql(
            SqlCheckpoints::new(&config.checkpoint.table).expect("table"),
        ),
        owner: "bench".to_owned(),
        lag: LagSource::PostgresReplication,
        connect_timeout: Duration::from_secs(10),
        range: KeyRange::default(),
    };
    reset_peak_memory();
    let mut batches: Vec<f64> = Vec::new();
    let started = Instant::now();
    let summary = runner
        .run(Instant::now() + Duration::from_secs(3600), &mut |event| {
            if let Event::Batch { report, .. } = event {
                batches.push(report.batch_ms);
            }
        })
        .await
        .expect("backfill");
    let engine = started.elapsed();
    let peak_kib = peak_memory_kib();
    assert_eq!(summary.report.rows_updated, rows as u64);
    drop(runner);

    load(db, rows, key).await;
    sqlx::raw_sql("DROP TABLE IF EXISTS shiftguard_bench_checkpoints")
        .execute(&mut *db)
        .await
        .expect("drop checkpoints");
    let mut config = config.backfill[0].clone();
    config.tuning.shards = SHARDS;
    let runner = Runner {
        url: &parsed_url,
        config: &config,
        checkpoints: Checkpoints::Sql(
            SqlCheckpoints::new("shiftguard_bench_checkpoints").expect("table"),
        ),
        owner: "bench".to_owned(),
        lag: LagSource::PostgresReplication,
        connect_timeout: Duration::from_secs(10),
        range: KeyRange::default(),
    };
    let mut sharded_batches: Vec<f64> = Vec::new();
    let trace = std::env::var_os("SHIFTGUARD_BENCH_TRACE").is_some();
    let started = Instant::now();
    let run = runner
        .run_parallel(
            SHARDS,
            0,
            Instant::now() + Duration::from_secs(3600),
            &mut |event| match event {
                Event::Batch { report, .. } => sharded_batches.push(report.batch_ms),
                other if trace => eprintln!(
                    "  (d) {:>7.0} ms  {}",
                    started.elapsed().as_secs_f64() * 1e3,
                    format!("{other:?}").chars().take(160).collect::<String>()
                ),
                _ => {}
            },
        )
        .await
        .expect("sharded backfill");
    let sharded = started.elapsed();
    assert_eq!(run.report.rows_updated, rows as u64, "{:?}", run.outcome);
    let remaining: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {TABLE} WHERE display_name IS NULL"
    ))
    .fetch_one(&mut *db)
    .await
    .expect("count");
    assert_eq!(remaining, 0);
    Measured {
        single,
        engine,
        batches,
        peak_kib,
        sharded,
        sharded_batches,
    }
}

async fn load(db: &mut PgConnection, rows: i64, key: KeyType) {
    let (key_type, key_value) = key.column();
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {TABLE}; \
         CREATE TABLE {TABLE} (id {key_type} PRIMARY KEY, full_name TEXT NOT NULL, email TEXT NOT NULL, display_name TEXT); \
         INSERT INTO {TABLE} (id, full_name, email) \
           SELECT {key_value}, 'User ' || g, 'user' || g || '@example.com' FROM generate_series(1, {rows}) g"
    ))
    .execute(&mut *db)
    .await
    .expect("load table");
    // Separately: VACUUM cannot run inside the implicit transaction of a multi-statement query.
    for statement in [format!("VACUUM ANALYZE {TABLE}"), "CHECKPOINT".to_owned()] {
        sqlx::raw_sql(&statement)
            .execute(&mut *db)
            .await
            .expect("vacuum");
    }
}

/// Resets the process's peak RSS counter (Linux: writing 5 to clear_refs).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}
