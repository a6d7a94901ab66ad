//! The manifest: the revision graph with phases as a JSON document, written at build time by
//! `shiftguard manifest` and read by the hooks and `shiftguard check --manifest`, so nothing at
//! run time needs the Python sources.
//!
//! Schema (`format` = `shiftguard-manifest/1`; fields are always present, `null` when empty):
//!
//! ```json
//! {
//!   "format": "shiftguard-manifest/1",
//!   "heads": ["c3d4"],
//!   "revisions": [
//!     {"id": "a1b2", "parents": [], "depends_on": [], "branch_labels": [],
//!      "phase": "expand", "phase_source": "inferred", "requires_app_at_least": null,
//!      "message": "create users", "file": "a1b2_create_users.py"}
//!   ]
//! }
//! ```
//!
//! Revisions are listed parents first; the document is deterministic, so it can be committed and
//! diffed.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::schema::graph::{GraphError, RevisionGraph};
use crate::schema::revision::Revision;

/// The format tag of the current schema.
pub const FORMAT: &str = "shiftguard-manifest/1";

/// The manifest document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// Informational: recomputed from the revisions when the manifest is read.
    pub heads: Vec<String>,
    pub revisions: Vec<Revision>,
}

/// A manifest that cannot be used. The message holds the cause's own, so the cause is not a
/// `source` too (an error chain would print it twice).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("manifest is not valid JSON of format {FORMAT}: {0}")]
    Json(serde_json::Error),
    #[error("manifest format {found} is not supported (expected {FORMAT})")]
    Format { found: String },
    #[error("manifest holds no revisions")]
    Empty,
    #[error("manifest revision graph is invalid: {0}")]
    Graph(GraphError),
}

impl From<serde_json::Error> for ManifestError {
    fn from(error: serde_json::Error) -> Self {
        ManifestError::Json(error)
    }
}

impl From<GraphError> for ManifestError {
    fn from(error: GraphError) -> Self {
        ManifestError::Graph(error)
    }
}

impl Manifest {
    /// Describes a graph.
    pub fn from_graph(graph: &RevisionGraph) -> Self {
        Manifest {
            format: FORMAT.to_owned(),
            heads: graph
                .heads()
                .into_iter()
                .map(|i| graph.revision(i).id.clone())
                .collect(),
            revisions: graph
                .topological()
                .map(|i| graph.revision(i).clone())
                .collect(),
        }
    }

    /// Reads and validates a manifest document.
    pub fn parse(json: &str) -> Result<RevisionGraph, ManifestError> {
        let manifest: Manifest = serde_json::from_str(json)?;
        if manifest.format != FORMAT {
            return Err(ManifestError::Format {
                found: manifest.format,
            });
        }
        if manifest.revisions.is_empty() {
            return Err(ManifestError::Empty);
        }
        Ok(RevisionGraph::new(manifest.revisions)?)
    }

    /// The document as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
        json.push('\n');
        json
    }
}
