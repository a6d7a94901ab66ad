//! The SQL checkpoint store: one row per backfill in a table of the backfilled database, created
//! on first use. The runner writes it inside each batch's transaction, so progress is exactly
//! once; every write is conditional on the row's `version`, so an operator's pause or cancel (which
//! bumps it) makes the runner's next batch roll back and stop. A single integer key's cursor is
//! kept in `cursor_value`; any other key's as typed JSON in `cursor_key` (added in place to a
//! table an older shiftguard created).

use shiftguard_core::backfill::{Checkpoint, Key, KeyRange, Status};
use shiftguard_core::names::is_table_name;

use crate::connection::{Bind, Cell, Connection, Kind};
use crate::error::SqlError;
use crate::url::Dialect;

/// Checkpoints in the table `table` of one database.
#[derive(Clone, Debug)]
pub struct SqlCheckpoints {
    table: String,
}

const COLUMNS: &str = "name, status, cursor_value, rows_updated, batches, passes, lease_owner, \
    lease_expires_at, last_error, started_at, updated_at, completed_at, version, cursor_key, key_range";

const SHAPE: [Kind; 15] = [
    Kind::Text,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Text,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Int,
    Kind::Text,
    Kind::Text,
];

/// `$n` on PostgreSQL, `?` elsewhere.
pub(crate) fn placeholder(dialect: Dialect, n: usize) -> String {
    match dialect {
        Dialect::Postgres => format!("${n}"),
        Dialect::MySql | Dialect::Sqlite => "?".to_owned(),
    }
}

impl SqlCheckpoints {
    pub fn new(table: &str) -> Result<Self, SqlError> {
        if !is_table_name(table) {
            return Err(SqlError::InvalidTableName {
                name: table.to_owned(),
            });
        }
        Ok(SqlCheckpoints {
            table: table.to_owned(),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist (portable DDL: the same on every dialect).
    pub async fn ensure_table(&self, connection: &mut Connection) -> Result<(), sqlx::Error> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
             name VARCHAR(200) NOT NULL PRIMARY KEY, \
             status VARCHAR(20) NOT NULL, \
             cursor_value BIGINT NULL, \
             rows_updated BIGINT NOT NULL, \
             batches BIGINT NOT NULL, \
             passes BIGINT NOT NULL, \
             lease_owner VARCHAR(200) NULL, \
             lease_expires_at BIGINT NULL, \
             last_error TEXT NULL, \
             started_at BIGINT NOT NULL, \
             updated_at BIGINT NOT NULL, \
             completed_at BIGINT NULL, \
             version BIGINT NOT NULL, \
             cursor_key TEXT NULL, \
             key_range TEXT NULL)",
            self.table
        );
        connection.create_table(&ddl, &self.table).await?;
        self.upgrade(connection).await
    }

    /// Adds what a table created by an older shiftguard lacks: `cursor_key` and `key_range`
    /// (every cursor then was an integer and no backfill had shards, so rows need nothing).
    pub async fn upgrade(&self, connection: &mut Connection) -> Result<(), sqlx::Error> {
        for column in ["cursor_key", "key_range"] {
            let probe = format!("SELECT {column} FROM {} WHERE 1 = 0", self.table);
            if connection.execute(&probe, &[]).await.is_ok() {
                continue;
            }
            let alter = format!("ALTER TABLE {} ADD COLUMN {column} TEXT NULL", self.table);
            if let Err(error) = connection.raw(&alter).await {
                // Another runner may have added it meanwhile.
                connection.execute(&probe, &[]).await.map_err(|_| error)?;
            }
        }
        Ok(())
    }

    /// The checkpoint of `name`, if the backfill has ever run.
    pub async fn load(
        &self,
        connection: &mut Connection,
        name: &str,
    ) -> Result<Option<Checkpoint>, sqlx::Error> {
        let p = placeholder(connection.dialect(), 1);
        let sql = format!("SELECT {COLUMNS} FROM {} WHERE name = {p}", self.table);
        let row = connection
            .fetch_row(&sql, &[Bind::Text(Some(name.to_owned()))], &SHAPE)
            .await?;
        Ok(row.map(|cells| from_cells(&cells)))
    }

    /// Every checkpoint, by name.
    pub async fn load_all(
        &self,
        connection: &mut Connection,
    ) -> Result<Vec<Checkpoint>, sqlx::Error> {
        let sql = format!("SELECT {COLUMNS} FROM {} ORDER BY name", self.table);
        let rows = connection.fetch_rows(&sql, &[], &SHAPE).await?;
        Ok(rows.iter().map(|cells| from_cells(cells)).collect())
    }

    /// Inserts `checkpoint` unless a row for its name exists.
    pub async fn insert_if_absent(
        &self,
        connection: &mut Connection,
        checkpoint: &Checkpoint,
    ) -> Result<(), sqlx::Error> {
        let dialect = connection.dialect();
        let values: Vec<String> = (1..=15).map(|n| placeholder(dialect, n)).collect();
        let values = values.join(", ");
        let sql = match dialect {
            Dialect::Postgres => format!(
                "INSERT INTO {} ({COLUMNS}) VALUES ({values}) ON CONFLICT (name) DO NOTHING",
                self.table
            ),
            Dialect::MySql => format!(
                "INSERT IGNORE INTO {} ({COLUMNS}) VALUES ({values})",
                self.table
            ),
            Dialect::Sqlite => {
                format!(
                    "INSERT OR IGNORE INTO {} ({COLUMNS}) VALUES ({values})",
                    self.table
                )
            }
        };
        connection.execute(&sql, &binds(checkpoint)).await?;
        Ok(())
    }

    /// Writes `checkpoint` if the stored row still has `checkpoint.version - 1`; returns whether
    /// it did. Callers bump `version` before calling.
    pub async fn write(
        &self,
        connection: &mut Connection,
        checkpoint: &Checkpoint,
    ) -> Result<bool, sqlx::Error> {
        let dialect = connection.dialect();
        let p = |n| placeholder(dialect, n);
        let sql = format!(
            "UPDATE {} SET status = {}, cursor_value = {}, rows_updated = {}, batches = {}, \
             passes = {}, lease_owner = {}, lease_expires_at = {}, last_error = {}, \
             started_at = {}, updated_at = {}, completed_at = {}, version = {}, cursor_key = {}, \
             key_range = {} WHERE name = {} AND version = {}",
            self.table,
            p(1),
            p(2),
            p(3),
            p(4),
            p(5),
            p(6),
            p(7),
            p(8),
            p(9),
            p(10),
            p(11),
            p(12),
            p(13),
            p(14),
            p(15),
            p(16),
        );
        let mut values = binds(checkpoint);
        let name = values.remove(0);
        values.push(name);
        values.push(Bind::Int(Some(checkpoint.version as i64 - 1)));
        Ok(connection.execute(&sql, &values).await? == 1)
    }

    /// Deletes the checkpoint of `name`; returns whether there was one.
    pub async fn delete(
        &self,
        connection: &mut Connection,
        name: &str,
    ) -> Result<bool, sqlx::Error> {
        let p = placeholder(connection.dialect(), 1);
        let sql = format!("DELETE FROM {} WHERE name = {p}", self.table);
        Ok(connection
            .execute(&sql, &[Bind::Text(Some(name.to_owned()))])
            .await?
            > 0)
    }
}

fn binds(c: &Checkpoint) -> Vec<Bind> {
    let int = |v: u64| Bind::Int(Some(v as i64));
    vec![
        Bind::Text(Some(c.name.clone())),
        Bind::Text(Some(c.status.as_str().to_owned())),
        Bind::Int(c.cursor.as_ref().and_then(Key::as_int)),
        int(c.rows_updated),
        int(c.batches),
        int(c.passes),
        Bind::Text(c.lease_owner.clone()),
        Bind::Int(c.lease_expires_at),
        Bind::Text(c.last_error.clone()),
        Bind::Int(Some(c.started_at)),
        Bind::Int(Some(c.updated_at)),
        Bind::Int(c.completed_at),
        int(c.version),
        Bind::Text(
            c.cursor
                .as_ref()
                .filter(|k| k.as_int().is_none())
                .map(|k| k.to_json().to_string()),
        ),
        Bind::Text(c.range.as_ref().map(|r| r.to_json().to_string())),
    ]
}

fn from_cells(cells: &[Cell]) -> Checkpoint {
    let count = |i: usize| cells[i].int().unwrap_or(0).max(0) as u64;
    let cursor = match cells[13].text() {
        Some(text) => Key::parse(text).map(Some),
        None => Ok(cells[2].int().map(Key::int)),
    };
    let range = cells[14].text().map(KeyRange::parse).transpose();
    let mut checkpoint = Checkpoint {
        name: cells[0].text().unwrap_or_default().to_owned(),
        // An unreadable status is treated as failed: nothing runs until an operator looks.
        status: cells[1]
            .text()
            .and_then(Status::parse)
            .unwrap_or(Status::Failed),
        cursor: cursor.clone().unwrap_or(None),
        rows_updated: count(3),
        batches: count(4),
        passes: count(5),
        lease_owner: cells[6].text().map(str::to_owned),
        lease_expires_at: cells[7].int(),
        last_error: cells[8].text().map(str::to_owned),
        started_at: cells[9].int().unwrap_or(0),
        updated_at: cells[10].int().unwrap_or(0),
        completed_at: cells[11].int(),
        version: count(12),
        range: range.clone().unwrap_or(None),
    };
    // An unreadable cursor stops the backfill too: resuming from the start would be safe but
    // silently redo the work; an operator resets it.
    if let Err(problem) = cursor.and(range) {
        checkpoint.status = Status::Failed;
        checkpoint.last_error = Some(format!("unreadable cursor: {problem}"));
    }
    checkpoint
}
