//! shiftguard's pure domain, in four concerns:
//!
//! * [`schema`]: the Alembic revision graph, revision phases, and the rule that decides whether
//!   an app build can run on a database's schema;
//! * [`lint`]: whether a release's revisions are safe for a progressive rollout;
//! * [`release`]: the gates before every traffic step, the cutover and the contract, the ports
//!   they read their facts through, and the one orchestration per decision;
//! * [`backfill`]: the backfill engine's decisions (checkpoints, status, batch sizing, throttles)
//!   and its configuration.
//!
//! [`rehearsal`] holds the decisions of `shiftguard rehearse`, which exercises all four on an
//! ephemeral database.
//!
//! [`config`] is the file that configures them (`shiftguard.toml`): it composes each concern's
//! own section and validates the references between them.
//!
//! **Invariant:** this crate does no network or database I/O and depends on no async runtime,
//! SQL driver or AWS crate; decisions here are tested without I/O. Its I/O is reading a
//! migrations directory ([`schema::scan`]) and the configuration file from the local disk. The
//! orchestration in [`release::decide`] is async but runs only what its ports give it.

pub mod backfill;
pub mod config;
pub mod lint;
pub mod names;
pub mod rehearsal;
pub mod release;
pub mod schema;
pub mod settings;
pub mod sql_fragments;

pub use schema::compat::{DatabaseState, Reason, Verdict, check_build};
pub use schema::graph::{RevisionGraph, RevisionIndex, RevisionSet};
pub use schema::manifest::Manifest;
pub use schema::revision::{Phase, PhaseSource, Revision};
