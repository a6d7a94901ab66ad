//! The workspace's one integration-test binary (one binary links once: it matters on 2 cores).
//! Real PostgreSQL, MariaDB, SQLite files and the real Alembic CLI; `scripts/test` starts them.

mod architecture;
mod backfill;
mod backfill_keys;
mod bad_input;
mod check;
mod data_safety;
mod database_load;
mod endpoint;
mod gates;
mod graph;
mod hooks;
mod lab;
mod lambda_backfill;
mod lint;
mod migrate;
mod rehearsal;
mod rehearse;
mod sample_app;
mod support;
mod template;
mod wheel;
