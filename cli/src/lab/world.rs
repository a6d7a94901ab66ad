//! The lab's in-process stand-ins for what AWS provides in production: a weighted alias between
//! app versions, the versions' data code (the sample app's, v1 and v2), a traffic generator that
//! sends reads and writes through the alias by weight, and per-version invocation, error and
//! latency counters (what CloudWatch reports per `ExecutedVersion`).

use std::time::Instant;

use shiftguard_core::gate::{VersionMetrics, VersionStamp};
use shiftguard_sql::Connection;
use shiftguard_sql::connection::{Bind, Kind};

/// One app version: its stamp and how its data code behaves.
#[derive(Clone, Debug)]
pub struct Version {
    pub stamp: VersionStamp,
    pub code: Code,
}

/// The data code of the running example's app versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// v1, built before the expand: writes and reads `full_name`.
    OldOnly,
    /// v2, flag off: writes both columns, reads `full_name`.
    DualWrite,
    /// v2, flag on (after the cutover): writes and reads `display_name` only.
    NewOnly,
}

/// A weighted alias: the primary version and at most one additional version with its weight.
#[derive(Clone, Debug)]
pub struct Alias {
    pub primary: usize,
    pub additional: Option<(usize, f64)>,
}

impl Alias {
    /// Each version's share of the traffic.
    pub fn weights(&self, versions: usize) -> Vec<f64> {
        let mut weights = vec![0.0; versions];
        let extra = self.additional.map_or(0.0, |(_, w)| w);
        weights[self.primary] = 1.0 - extra;
        if let Some((version, weight)) = self.additional {
            weights[version] += weight;
        }
        weights
    }
}

/// What one version did in a window.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub invocations: u64,
    pub errors: u64,
    pub latencies_ms: Vec<f64>,
}

impl Counters {
    pub fn metrics(&self, version: &str) -> VersionMetrics {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let percentile = |p: f64| {
            (!sorted.is_empty()).then(|| {
                let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1]
            })
        };
        VersionMetrics {
            version: version.to_owned(),
            invocations: self.invocations as f64,
            errors: self.errors as f64,
            p95_ms: percentile(0.95),
            p99_ms: percentile(0.99),
        }
    }
}

/// Sends requests through the alias: 30% writes (new users), 70% reads of existing ones.
#[derive(Debug)]
pub struct Traffic {
    state: u64,
    pub next_id: i64,
}

impl Traffic {
    pub fn new(next_id: i64) -> Self {
        Traffic {
            state: 0x9E37_79B9_7F4A_7C15,
            next_id,
        }
    }

    /// A deterministic pseudo-random number in [0, 1) (xorshift64*).
    fn uniform(&mut self) -> f64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sends `requests` requests; counts them per version in `counters`.
    pub async fn send(
        &mut self,
        connection: &mut Connection,
        versions: &[Version],
        alias: &Alias,
        requests: usize,
        counters: &mut [Counters],
    ) {
        let weights = alias.weights(versions.len());
        for _ in 0..requests {
            let pick = self.uniform();
            let mut cumulative = 0.0;
            let version = weights
                .iter()
                .position(|w| {
                    cumulative += w;
                    pick < cumulative
                })
                .unwrap_or(alias.primary);
            let write = self.uniform() < 0.3;
            let started = Instant::now();
            let result = if write {
                let id = self.next_id;
                self.next_id += 1;
                write_user(connection, versions[version].code, id).await
            } else {
                let id = 1 + (self.uniform() * (self.next_id - 1) as f64) as i64;
                read_user(connection, versions[version].code, id).await
            };
            let counter = &mut counters[version];
            counter.invocations += 1;
            counter
                .latencies_ms
                .push(started.elapsed().as_secs_f64() * 1e3);
            if result.is_err() {
                counter.errors += 1;
            }
        }
    }
}

/// A version's `POST /users`.
pub async fn write_user(connection: &mut Connection, code: Code, id: i64) -> Result<(), String> {
    let (sql, binds) = match code {
        Code::OldOnly => (
            "INSERT INTO users (id, email, full_name) VALUES (?, ?, ?)",
            vec![
                Bind::Int(Some(id)),
                Bind::Text(Some(format!("u{id}@example.com"))),
                Bind::Text(Some(format!("User {id}"))),
            ],
        ),
        Code::DualWrite => (
            "INSERT INTO users (id, email, full_name, display_name) VALUES (?, ?, ?, ?)",
            vec![
                Bind::Int(Some(id)),
                Bind::Text(Some(format!("u{id}@example.com"))),
                Bind::Text(Some(format!("User {id}"))),
                Bind::Text(Some(format!("User {id}"))),
            ],
        ),
        Code::NewOnly => (
            "INSERT INTO users (id, email, display_name) VALUES (?, ?, ?)",
            vec![
                Bind::Int(Some(id)),
                Bind::Text(Some(format!("u{id}@example.com"))),
                Bind::Text(Some(format!("User {id}"))),
            ],
        ),
    };
    let sql = placeholders(connection, sql);
    connection
        .execute(&sql, &binds)
        .await
        .map(|_| ())
        .map_err(|e| one_line(&e.to_string()))
}

/// A version's `GET /users/{id}`: the name it shows must not be missing.
pub async fn read_user(connection: &mut Connection, code: Code, id: i64) -> Result<(), String> {
    let column = match code {
        Code::OldOnly | Code::DualWrite => "full_name",
        Code::NewOnly => "display_name",
    };
    let sql = placeholders(
        connection,
        &format!("SELECT {column} FROM users WHERE id = ?"),
    );
    let row = connection
        .fetch_row(&sql, &[Bind::Int(Some(id))], &[Kind::Text])
        .await
        .map_err(|e| one_line(&e.to_string()))?;
    match row {
        Some(row) if row[0].text().is_none() => Err(format!("user {id} has no {column}")),
        _ => Ok(()),
    }
}

/// `?` placeholders as the connection's dialect writes them.
fn placeholders(connection: &Connection, sql: &str) -> String {
    if connection.dialect() == shiftguard_sql::Dialect::Postgres {
        let mut n = 0;
        sql.chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        sql.to_owned()
    }
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}
