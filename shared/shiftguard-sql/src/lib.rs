//! shiftguard's SQL adapters over sqlx: connections to PostgreSQL, MySQL/MariaDB and SQLite, the
//! reader of a database's Alembic state, the release decisions' view of the database
//! ([`SqlDatabase`]), the backfill executor and its SQL checkpoint store. SQL
//! differs per dialect only where it must.
//!
//! **API boundary:** callers get plain values (revision ids) and [`SqlError`]; no sqlx type
//! crosses into decision code, and no error message carries a password.

pub mod alembic_version;
pub mod backfill;
pub mod checkpoint;
pub mod connection;
pub mod error;
pub mod load;
pub mod measure;
pub mod migrate_lock;
pub mod rehearsal;
pub mod shared_database;
pub mod url;

pub use alembic_version::{DEFAULT_VERSION_TABLE, read_heads};
pub use connection::{ConnectSettings, Connection};
pub use error::SqlError;
pub use shared_database::SqlDatabase;
pub use url::{DatabaseUrl, Dialect};
