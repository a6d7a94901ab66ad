//! The revision graph: revisions as nodes, `down_revision` and `depends_on` as edges, with
//! ancestor and descendant queries in O(V+E) each.
//!
//! "Ancestor" follows both kinds of edge, because `alembic upgrade` applies a revision's
//! `depends_on` targets before the revision itself: the set a database has applied is the
//! ancestor-or-equal closure of its `alembic_version` rows over both. "Head" follows Alembic's
//! meaning: no other revision names it as `down_revision` (a `depends_on` does not count).

use std::collections::{BinaryHeap, HashMap};
use std::fmt;

use thiserror::Error;

use crate::schema::revision::Revision;

/// Index of a revision in a [`RevisionGraph`].
pub type RevisionIndex = usize;

/// Something wrong with a set of revisions that keeps it from being a graph.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphProblem {
    #[error("revision id {id} is declared by more than one file: {}", files.join(", "))]
    DuplicateId { id: String, files: Vec<String> },
    #[error(
        "{}: down_revision {parent} of revision {id} points at no known revision",
        file_name(file)
    )]
    UnknownParent {
        id: String,
        parent: String,
        file: Option<String>,
    },
    #[error(
        "{}: depends_on {dependency} of revision {id} is neither a revision id nor a branch label",
        file_name(file)
    )]
    UnknownDependency {
        id: String,
        dependency: String,
        file: Option<String>,
    },
    #[error("branch label {label} is declared by more than one revision: {}", ids.join(", "))]
    DuplicateBranchLabel { label: String, ids: Vec<String> },
    #[error("revisions form a cycle: {}", ids.join(" -> "))]
    Cycle { ids: Vec<String> },
    #[error(
        "{}: shiftguard_requires_app_at_least {tolerated} of contract revision {id} is not an ancestor of it",
        file_name(file)
    )]
    ToleranceNotAncestor {
        id: String,
        tolerated: String,
        file: Option<String>,
    },
}

fn file_name(file: &Option<String>) -> &str {
    file.as_deref().unwrap_or("manifest")
}

/// Every problem found while building a graph (never just the first).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub struct GraphError {
    pub problems: Vec<GraphProblem>,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut problems = self.problems.iter();
        if let Some(first) = problems.next() {
            write!(f, "{first}")?;
        }
        for problem in problems {
            write!(f, "; {problem}")?;
        }
        Ok(())
    }
}

/// A revision reference that does not name exactly one revision.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("revision {0} is not in the migrations")]
    Unknown(String),
    #[error("revision prefix {prefix} is ambiguous: {}", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<String>,
    },
    /// Not a revision id and too short to be taken as a prefix of one (a one-character
    /// "prefix" names a revision by accident, not on purpose).
    #[error(
        "revision `{0}` is not in the migrations, and a prefix needs at least {MIN_PREFIX} characters"
    )]
    TooShort(String),
    /// An empty reference (an unset variable in a pipeline, most likely).
    #[error(
        "the revision is empty: give a revision id or a prefix of at least {MIN_PREFIX} characters"
    )]
    Empty,
}

/// The shortest revision prefix taken for a revision (git's shortest abbreviation).
pub const MIN_PREFIX: usize = 4;

/// A set of revisions of one graph, as a bit set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionSet {
    words: Vec<u64>,
}

impl RevisionSet {
    fn empty(len: usize) -> Self {
        RevisionSet {
            words: vec![0; len.div_ceil(64)],
        }
    }

    pub fn contains(&self, index: RevisionIndex) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// Adds `index`; returns whether it was new.
    pub fn insert(&mut self, index: RevisionIndex) -> bool {
        let word = &mut self.words[index / 64];
        let bit = 1 << (index % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Members in index order.
    pub fn iter(&self) -> impl Iterator<Item = RevisionIndex> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(i * 64 + bit)
            })
        })
    }
}

/// A validated revision graph.
#[derive(Clone, Debug)]
pub struct RevisionGraph {
    revisions: Vec<Revision>,
    by_id: HashMap<String, RevisionIndex>,
    /// `down_revision` edges, resolved.
    parents: Vec<Vec<RevisionIndex>>,
    /// `down_revision` and `depends_on` edges: what must be applied before each revision.
    requires: Vec<Vec<RevisionIndex>>,
    /// The reverse of `requires`.
    required_by: Vec<Vec<RevisionIndex>>,
    /// Parents before children; among revisions that are ready together, input order.
    topological: Vec<RevisionIndex>,
}

impl RevisionGraph {
    /// Builds and validates a graph; reports every problem found.
    pub fn new(revisions: Vec<Revision>) -> Result<Self, GraphError> {
        let mut problems = Vec::new();
        let mut by_id: HashMap<String, RevisionIndex> = HashMap::with_capacity(revisions.len());
        let mut duplicates: Vec<(String, Vec<String>)> = Vec::new();
        for (index, revision) in revisions.iter().enumerate() {
            if let Some(&first) = by_id.get(&revision.id) {
                let file = |r: &Revision| file_name(&r.file).to_owned();
                match duplicates.iter_mut().find(|(id, _)| *id == revision.id) {
                    Some((_, files)) => files.push(file(revision)),
                    None => duplicates.push((
                        revision.id.clone(),
                        vec![file(&revisions[first]), file(revision)],
                    )),
                }
            } else {
                by_id.insert(revision.id.clone(), index);
            }
        }
        problems.extend(
            duplicates
                .into_iter()
                .map(|(id, files)| GraphProblem::DuplicateId { id, files }),
        );

        let mut labels: HashMap<&str, RevisionIndex> = HashMap::new();
        for (index, revision) in revisions.iter().enumerate() {
            for label in &revision.branch_labels {
                if let Some(&first) = labels.get(label.as_str()) {
                    problems.push(GraphProblem::DuplicateBranchLabel {
                        label: label.clone(),
                        ids: vec![revisions[first].id.clone(), revision.id.clone()],
                    });
                } else if by_id.contains_key(label) {
                    problems.push(GraphProblem::DuplicateBranchLabel {
                        label: label.clone(),
                        ids: vec![label.clone(), revision.id.clone()],
                    });
                } else {
                    labels.insert(label.as_str(), index);
                }
            }
        }

        let mut parents = vec![Vec::new(); revisions.len()];
        let mut requires = vec![Vec::new(); revisions.len()];
        for (index, revision) in revisions.iter().enumerate() {
            for parent in &revision.parents {
                match by_id.get(parent) {
                    Some(&p) => {
                        parents[index].push(p);
                        requires[index].push(p);
                    }
                    None => problems.push(GraphProblem::UnknownParent {
                        id: revision.id.clone(),
                        parent: parent.clone(),
                        file: revision.file.clone(),
                    }),
                }
            }
            for dependency in &revision.depends_on {
                let target = by_id
                    .get(dependency)
                    .or_else(|| labels.get(dependency.as_str()));
                match target {
                    Some(&d) if !requires[index].contains(&d) => requires[index].push(d),
                    Some(_) => {}
                    None => problems.push(GraphProblem::UnknownDependency {
                        id: revision.id.clone(),
                        dependency: dependency.clone(),
                        file: revision.file.clone(),
                    }),
                }
            }
        }
        let mut required_by = vec![Vec::new(); revisions.len()];
        for (index, edges) in requires.iter().enumerate() {
            for &target in edges {
                required_by[target].push(index);
            }
        }

        let topological = topological_order(&requires, &required_by);
        if topological.len() < revisions.len() {
            let cycle = find_cycle(&requires, &topological);
            problems.push(GraphProblem::Cycle {
                ids: cycle.iter().map(|&i| revisions[i].id.clone()).collect(),
            });
        }

        let mut graph = RevisionGraph {
            revisions,
            by_id,
            parents,
            requires,
            required_by,
            topological,
        };
        if problems.is_empty() {
            problems.extend(graph.tolerance_problems());
        }
        if problems.is_empty() {
            graph.revisions.shrink_to_fit();
            Ok(graph)
        } else {
            Err(GraphError { problems })
        }
    }

    fn tolerance_problems(&self) -> Vec<GraphProblem> {
        let mut problems = Vec::new();
        for (index, revision) in self.revisions.iter().enumerate() {
            let Some(tolerated) = &revision.requires_app_at_least else {
                continue;
            };
            let is_ancestor = self
                .by_id
                .get(tolerated)
                .is_some_and(|&t| self.ancestors([index]).contains(t));
            if !is_ancestor {
                problems.push(GraphProblem::ToleranceNotAncestor {
                    id: revision.id.clone(),
                    tolerated: tolerated.clone(),
                    file: revision.file.clone(),
                });
            }
        }
        problems
    }

    pub fn len(&self) -> usize {
        self.revisions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revisions.is_empty()
    }

    pub fn revision(&self, index: RevisionIndex) -> &Revision {
        &self.revisions[index]
    }

    /// The index of an exact revision id.
    pub fn index_of(&self, id: &str) -> Option<RevisionIndex> {
        self.by_id.get(id).copied()
    }

    /// Resolves a full revision id or a unique prefix of one (as Alembic's commands accept).
    pub fn resolve(&self, reference: &str) -> Result<RevisionIndex, ResolveError> {
        if let Some(index) = self.index_of(reference) {
            return Ok(index);
        }
        if reference.trim().is_empty() {
            return Err(ResolveError::Empty);
        }
        if reference.chars().count() < MIN_PREFIX {
            return Err(ResolveError::TooShort(reference.to_owned()));
        }
        let mut candidates: Vec<RevisionIndex> = self
            .revisions
            .iter()
            .enumerate()
            .filter(|(_, r)| r.id.starts_with(reference))
            .map(|(i, _)| i)
            .collect();
        match candidates.len() {
            0 => Err(ResolveError::Unknown(reference.to_owned())),
            1 => Ok(candidates[0]),
            _ => {
                candidates.sort_by(|&a, &b| self.revisions[a].id.cmp(&self.revisions[b].id));
                Err(ResolveError::Ambiguous {
                    prefix: reference.to_owned(),
                    candidates: candidates
                        .into_iter()
                        .map(|i| self.revisions[i].id.clone())
                        .collect(),
                })
            }
        }
    }

    /// Revisions in topological order: every revision after all it requires.
    pub fn topological(&self) -> impl Iterator<Item = RevisionIndex> + '_ {
        self.topological.iter().copied()
    }

    /// Resolved `down_revision` edges of a revision.
    pub fn parents(&self, index: RevisionIndex) -> &[RevisionIndex] {
        &self.parents[index]
    }

    /// What must be applied before a revision: its `down_revision` and `depends_on` targets.
    pub fn requires(&self, index: RevisionIndex) -> &[RevisionIndex] {
        &self.requires[index]
    }

    /// Revisions that no other revision names as `down_revision`, in topological order.
    pub fn heads(&self) -> Vec<RevisionIndex> {
        let mut has_child = vec![false; self.len()];
        for parents in &self.parents {
            for &parent in parents {
                has_child[parent] = true;
            }
        }
        self.topological().filter(|&i| !has_child[i]).collect()
    }

    /// Revisions without a `down_revision`.
    pub fn bases(&self) -> Vec<RevisionIndex> {
        self.topological()
            .filter(|&i| self.parents[i].is_empty())
            .collect()
    }

    /// The revisions in `roots` and everything they require, transitively. O(V+E).
    pub fn ancestors(&self, roots: impl IntoIterator<Item = RevisionIndex>) -> RevisionSet {
        self.closure(roots, &self.requires)
    }

    /// The revisions in `roots` and everything that requires them, transitively. O(V+E).
    pub fn descendants(&self, roots: impl IntoIterator<Item = RevisionIndex>) -> RevisionSet {
        self.closure(roots, &self.required_by)
    }

    /// An empty set sized for this graph.
    pub fn empty_set(&self) -> RevisionSet {
        RevisionSet::empty(self.len())
    }

    fn closure(
        &self,
        roots: impl IntoIterator<Item = RevisionIndex>,
        edges: &[Vec<RevisionIndex>],
    ) -> RevisionSet {
        let mut seen = RevisionSet::empty(self.len());
        let mut stack: Vec<RevisionIndex> = roots.into_iter().filter(|&r| seen.insert(r)).collect();
        while let Some(index) = stack.pop() {
            for &next in &edges[index] {
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        seen
    }

    /// Consumes the graph, giving back its revisions in input order.
    pub fn into_revisions(self) -> Vec<Revision> {
        self.revisions
    }
}

/// Kahn's algorithm; revisions left out are on or behind a cycle.
fn topological_order(
    requires: &[Vec<RevisionIndex>],
    required_by: &[Vec<RevisionIndex>],
) -> Vec<RevisionIndex> {
    let mut waiting_on: Vec<usize> = requires.iter().map(Vec::len).collect();
    let mut ready: BinaryHeap<std::cmp::Reverse<RevisionIndex>> = waiting_on
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n == 0)
        .map(|(i, _)| std::cmp::Reverse(i))
        .collect();
    let mut order = Vec::with_capacity(requires.len());
    while let Some(std::cmp::Reverse(index)) = ready.pop() {
        order.push(index);
        for &next in &required_by[index] {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(std::cmp::Reverse(next));
            }
        }
    }
    order
}

/// One cycle among the revisions that Kahn's algorithm could not order, as a closed path.
fn find_cycle(requires: &[Vec<RevisionIndex>], ordered: &[RevisionIndex]) -> Vec<RevisionIndex> {
    let mut in_order = vec![false; requires.len()];
    for &index in ordered {
        in_order[index] = true;
    }
    // Every unordered revision requires at least one unordered revision, so walking such
    // edges from any of them must revisit one: the walk from there on is a cycle.
    let Some(start) = (0..requires.len()).find(|&i| !in_order[i]) else {
        return Vec::new();
    };
    let mut position = vec![usize::MAX; requires.len()];
    let mut path = Vec::new();
    let mut current = start;
    while position[current] == usize::MAX {
        position[current] = path.len();
        path.push(current);
        current = requires[current]
            .iter()
            .copied()
            .find(|&next| !in_order[next])
            .unwrap_or(current);
    }
    let mut cycle = path.split_off(position[current]);
    cycle.push(current);
    // Written child -> parent above; show it in upgrade order.
    cycle.reverse();
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::revision::{Phase, PhaseSource};

    fn rev(id: &str, parents: &[&str]) -> Revision {
        Revision {
            phase_source: PhaseSource::Inferred,
            file: Some(format!("{id}.py")),
            ..Revision::for_test(id, parents, Phase::Expand)
        }
    }

    fn ids(graph: &RevisionGraph, set: impl IntoIterator<Item = RevisionIndex>) -> Vec<String> {
        let mut ids: Vec<String> = set
            .into_iter()
            .map(|i| graph.revision(i).id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn branches_merges_and_dependencies() {
        let mut c1 = rev("c1", &["a1"]);
        c1.branch_labels = vec!["side".into()];
        let mut d1 = rev("d1", &["b1"]);
        d1.depends_on = vec!["side".into()];
        let graph = RevisionGraph::new(vec![
            rev("a1", &[]),
            rev("b1", &["a1"]),
            c1,
            rev("m1", &["b1", "c1"]),
            d1,
            rev("x1", &[]),
        ])
        .expect("valid");
        assert_eq!(ids(&graph, graph.heads()), ["d1", "m1", "x1"]);
        assert_eq!(ids(&graph, graph.bases()), ["a1", "x1"]);
        let d1 = graph.index_of("d1").expect("d1");
        assert_eq!(
            ids(&graph, graph.ancestors([d1]).iter()),
            ["a1", "b1", "c1", "d1"]
        );
        let c1 = graph.index_of("c1").expect("c1");
        assert_eq!(
            ids(&graph, graph.descendants([c1]).iter()),
            ["c1", "d1", "m1"]
        );
        let order: Vec<&str> = graph
            .topological()
            .map(|i| graph.revision(i).id.as_str())
            .collect();
        assert_eq!(order, ["a1", "b1", "c1", "m1", "d1", "x1"]);
    }

    #[test]
    fn reports_every_problem() {
        let error = RevisionGraph::new(vec![
            rev("a1", &[]),
            rev("a1", &[]),
            rev("b1", &["zz"]),
            rev("c1", &["d1"]),
            rev("d1", &["c1"]),
        ])
        .expect_err("invalid");
        let messages: Vec<String> = error.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "revision id a1 is declared by more than one file: a1.py, a1.py",
                "b1.py: down_revision zz of revision b1 points at no known revision",
                "revisions form a cycle: c1 -> d1 -> c1",
            ]
        );
    }

    #[test]
    fn branch_labels_are_unique() {
        let mut a = rev("a1", &[]);
        a.branch_labels = vec!["core".into()];
        let mut b = rev("b1", &[]);
        b.branch_labels = vec!["core".into()];
        let error = RevisionGraph::new(vec![a, b]).expect_err("duplicate label");
        assert_eq!(
            error.to_string(),
            "branch label core is declared by more than one revision: a1, b1"
        );
    }

    #[test]
    fn tolerance_must_name_an_ancestor() {
        let mut c = rev("c1", &["a1"]);
        c.phase = Phase::Contract;
        c.requires_app_at_least = Some("b1".into());
        let error = RevisionGraph::new(vec![rev("a1", &[]), rev("b1", &["a1"]), c])
            .expect_err("b1 is a sibling");
        assert_eq!(
            error.to_string(),
            "c1.py: shiftguard_requires_app_at_least b1 of contract revision c1 is not an ancestor of it"
        );
    }

    #[test]
    fn resolves_unique_prefixes() {
        let graph =
            RevisionGraph::new(vec![rev("abcd1", &[]), rev("abce2", &["abcd1"])]).expect("valid");
        assert_eq!(graph.resolve("abce"), Ok(1));
        assert_eq!(graph.resolve("abcd1"), Ok(0));
        assert_eq!(
            graph.resolve("abc1").map_err(|e| e.to_string()),
            Err("revision abc1 is not in the migrations".to_owned())
        );
        let short =
            RevisionGraph::new(vec![rev("abc1", &[]), rev("abd2", &["abc1"])]).expect("valid");
        assert_eq!(
            short.resolve("ab").map_err(|e| e.to_string()),
            Err(
                "revision `ab` is not in the migrations, and a prefix needs at least 4 characters"
                    .to_owned()
            )
        );
        assert_eq!(short.resolve("abc1"), Ok(0), "an exact id of any length");
        assert_eq!(
            short.resolve("").map_err(|e| e.to_string()),
            Err(
                "the revision is empty: give a revision id or a prefix of at least 4 characters"
                    .to_owned()
            )
        );
        let graph =
            RevisionGraph::new(vec![rev("abcd1", &[]), rev("abcd2", &["abcd1"])]).expect("valid");
        assert_eq!(
            graph.resolve("abcd").map_err(|e| e.to_string()),
            Err("revision prefix abcd is ambiguous: abcd1, abcd2".to_owned())
        );
        assert_eq!(
            graph.resolve("zzzz").map_err(|e| e.to_string()),
            Err("revision zzzz is not in the migrations".to_owned())
        );
    }
}
