//! One Alembic revision as the compatibility rule sees it: its place in the graph and its phase.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a revision does to the running application, in expand/contract terms.
///
/// The order is strictness: a revision's declared phase may be stricter than its operations show,
/// never looser (see [`crate::schema::phase`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Additive only: old code keeps working once it is applied, new code needs it.
    Expand,
    /// A small data fix: new code needs it, old code is unaffected.
    Data,
    /// Removes or narrows something: old code may break once it is applied.
    Contract,
}

impl Phase {
    /// The declaration spelling, as written in a revision file and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Expand => "expand",
            Phase::Data => "data",
            Phase::Contract => "contract",
        }
    }

    /// Parses the declaration spelling.
    pub fn parse(text: &str) -> Option<Phase> {
        match text {
            "expand" => Some(Phase::Expand),
            "data" => Some(Phase::Data),
            "contract" => Some(Phase::Contract),
            _ => None,
        }
    }

    /// Whether code built after this revision needs it applied (rule (a) of the compatibility model).
    pub fn is_needed_by_later_builds(self) -> bool {
        matches!(self, Phase::Expand | Phase::Data)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a revision's phase came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseSource {
    /// The file declares `shiftguard_phase = "…"`.
    Declared,
    /// Inferred from the `op.*` calls in `upgrade()`.
    Inferred,
    /// Nothing could be inferred and nothing was declared; the phase was assumed (contract).
    Assumed,
}

/// A revision: identity, edges, phase and tolerance declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// The full revision id, as stored in `alembic_version`.
    pub id: String,
    /// `down_revision`: empty for a base, several for a merge.
    pub parents: Vec<String>,
    /// `depends_on`: revision ids (or branch labels) that must be applied first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// `branch_labels`.
    #[serde(default)]
    pub branch_labels: Vec<String>,
    /// The phase that the compatibility rule uses.
    pub phase: Phase,
    /// Where [`Revision::phase`] came from.
    pub phase_source: PhaseSource,
    /// For a contract revision: the oldest build revision that tolerates it being applied.
    #[serde(default)]
    pub requires_app_at_least: Option<String>,
    /// The revision message (the docstring's first line, as `alembic history` shows it).
    #[serde(default)]
    pub message: Option<String>,
    /// The file the revision came from, relative to the versions directory.
    #[serde(default)]
    pub file: Option<String>,
}

#[cfg(test)]
impl Revision {
    /// A declared revision with only the fields most tests care about.
    pub(crate) fn for_test(id: &str, parents: &[&str], phase: Phase) -> Self {
        Revision {
            id: id.to_owned(),
            parents: parents.iter().map(|p| (*p).to_owned()).collect(),
            depends_on: Vec::new(),
            branch_labels: Vec::new(),
            phase,
            phase_source: PhaseSource::Declared,
            requires_app_at_least: None,
            message: None,
            file: None,
        }
    }
}
