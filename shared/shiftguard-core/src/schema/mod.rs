//! The revision graph and the compatibility rule: what a migrations directory says (revision
//! files parsed without running them, each revision's phase declared or inferred), the graph
//! they form, the database's applied set, and the rule that decides whether a build made at one
//! revision can run on it. The manifest carries the graph to where there are no revision files
//! (the hooks).

pub mod alembic;
pub mod compat;
pub mod frontier;
pub mod graph;
pub mod manifest;
pub mod phase;
pub mod revision;
pub mod scan;
pub mod sqltext;

#[cfg(test)]
mod properties;
