//! shiftguard's pure domain: the Alembic revision graph, revision phases, the rule that decides
//! whether an app build can run on a database's schema, the configuration file, and the
//! decisions of the backfill engine.
//!
//! **Invariant:** this crate does no network or database I/O and depends on no async runtime,
//! SQL driver or AWS crate; decisions here are tested without I/O. Its one I/O is reading a
//! migrations directory from the local disk ([`scan`]).

pub mod alembic;
pub mod backfill;
pub mod compat;
pub mod config;
pub mod graph;
pub mod lint;
pub mod manifest;
pub mod release;
pub mod phase;
pub mod revision;
pub mod scan;
pub mod sqltext;

pub use compat::{DatabaseState, Reason, Verdict, check_build};
pub use graph::{RevisionGraph, RevisionIndex, RevisionSet};
pub use manifest::Manifest;
pub use revision::{Phase, PhaseSource, Revision};

#[cfg(test)]
mod properties;
