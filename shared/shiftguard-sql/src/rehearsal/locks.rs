//! The table locks other sessions hold on a PostgreSQL database, sampled from `pg_locks` on a
//! connection of its own while a migration step runs: per table and mode, from the first sample
//! that saw it to the last.

use std::collections::BTreeMap;
use std::time::Instant;

use shiftguard_core::rehearsal::{HeldLock, LockMode};

use crate::connection::{Connection, Kind};
use crate::error::SqlError;
use crate::url::{DatabaseUrl, Dialect};

use super::{query_failed, settings};

/// Granted relation locks on this database's tables, held by any session but the sampler's.
const SAMPLE: &str = "SELECT c.relname::text, l.mode::text FROM pg_locks l \
    JOIN pg_class c ON c.oid = l.relation \
    WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() \
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
    AND c.relkind IN ('r', 'p') AND c.relnamespace = current_schema()::regnamespace";

/// A sampler on its own connection.
#[derive(Debug)]
pub struct LockSampler {
    connection: Connection,
    url: DatabaseUrl,
    seen: BTreeMap<(String, LockMode), (Instant, Instant)>,
    samples: u64,
}

impl LockSampler {
    /// `None` on dialects without `pg_locks` (MySQL/MariaDB, SQLite).
    pub async fn open(url: &DatabaseUrl) -> Result<Option<Self>, SqlError> {
        if url.dialect() != Dialect::Postgres {
            return Ok(None);
        }
        Ok(Some(LockSampler {
            connection: Connection::open(url, settings()).await?,
            url: url.clone(),
            seen: BTreeMap::new(),
            samples: 0,
        }))
    }

    /// Takes one sample.
    pub async fn sample(&mut self) -> Result<(), SqlError> {
        let rows = self
            .connection
            .fetch_rows(SAMPLE, &[], &[Kind::Text, Kind::Text])
            .await
            .map_err(|e| query_failed(&self.url, &e))?;
        let now = Instant::now();
        self.samples += 1;
        for row in rows {
            let (Some(table), Some(mode)) =
                (row[0].text(), row[1].text().and_then(LockMode::parse))
            else {
                continue;
            };
            self.seen
                .entry((table.to_owned(), mode))
                .and_modify(|(_, last)| *last = now)
                .or_insert((now, now));
        }
        Ok(())
    }

    /// What was seen since the last call (strongest first), and how many samples saw it.
    pub fn take(&mut self) -> (Vec<HeldLock>, u64) {
        let mut locks: Vec<HeldLock> = std::mem::take(&mut self.seen)
            .into_iter()
            .map(|((table, mode), (first, last))| HeldLock {
                table,
                mode,
                held_ms: (last - first).as_secs_f64() * 1e3,
            })
            .collect();
        locks.sort_by(|a, b| b.mode.cmp(&a.mode).then_with(|| a.table.cmp(&b.table)));
        (locks, std::mem::take(&mut self.samples))
    }

    pub async fn close(self) {
        self.connection.close().await;
    }
}
