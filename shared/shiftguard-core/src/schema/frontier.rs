//! The expand frontier: how far a database may be migrated while the old build still serves.
//!
//! From the revisions a database has applied, a release's expand step applies every revision it
//! can reach without applying a contract revision: an unapplied revision belongs to the expand
//! when it is not a contract and everything it requires is applied or belongs to the expand
//! (branches and merges included). A contract revision, and everything that requires one, waits
//! for the contract gate (`shiftguard migrate contract`).

use crate::schema::compat::DatabaseState;
use crate::schema::graph::{RevisionGraph, RevisionIndex};
use crate::schema::revision::Phase;

/// What the expand step of a release applies, and what waits for a contract gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frontier {
    /// The `alembic upgrade` targets, in topological order: the newest revisions of the expand.
    /// Upgrading to each in turn applies exactly [`Frontier::applies`].
    pub targets: Vec<RevisionIndex>,
    /// Every revision the expand applies, in topological order.
    pub applies: Vec<RevisionIndex>,
    /// Contract revisions whose requirements the expand meets: each is next, after its gate.
    pub contracts: Vec<RevisionIndex>,
    /// Unapplied revisions behind a contract (they wait for it), in topological order.
    pub behind: Vec<RevisionIndex>,
}

impl Frontier {
    /// The expand frontier of a database in `state`.
    pub fn of(graph: &RevisionGraph, state: &DatabaseState) -> Frontier {
        let applied = state.applied();
        let mut expand = graph.empty_set();
        let mut frontier = Frontier {
            targets: Vec::new(),
            applies: Vec::new(),
            contracts: Vec::new(),
            behind: Vec::new(),
        };
        for index in graph.topological() {
            if applied.contains(index) {
                continue;
            }
            let ready = graph
                .requires(index)
                .iter()
                .all(|&r| applied.contains(r) || expand.contains(r));
            match (ready, graph.revision(index).phase) {
                (true, Phase::Contract) => frontier.contracts.push(index),
                (true, _) => {
                    expand.insert(index);
                    frontier.applies.push(index);
                }
                (false, _) => frontier.behind.push(index),
            }
        }
        // A target is a revision of the expand that no other revision of the expand requires.
        let mut required = graph.empty_set();
        for &index in &frontier.applies {
            for &r in graph.requires(index) {
                required.insert(r);
            }
        }
        frontier.targets = frontier
            .applies
            .iter()
            .copied()
            .filter(|&i| !required.contains(i))
            .collect();
        frontier
    }

    /// Whether the expand has nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.applies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::revision::Revision;

    fn ids(graph: &RevisionGraph, indexes: &[RevisionIndex]) -> Vec<String> {
        indexes
            .iter()
            .map(|&i| graph.revision(i).id.clone())
            .collect()
    }

    /// base -> e1 -> m (merge of e1 and b1) -> c (contract) -> after; base -> b1 (branch);
    /// base -> c2 (contract) -> e3 (expand behind it); d depends_on c2.
    fn graph() -> RevisionGraph {
        use Phase::*;
        let mut d = Revision::for_test("d", &["e1"], Expand);
        d.depends_on = vec!["c2".into()];
        RevisionGraph::new(vec![
            Revision::for_test("base", &[], Expand),
            Revision::for_test("e1", &["base"], Expand),
            Revision::for_test("b1", &["base"], Data),
            Revision::for_test("m", &["e1", "b1"], Expand),
            Revision::for_test("c", &["m"], Contract),
            Revision::for_test("after", &["c"], Expand),
            Revision::for_test("c2", &["base"], Contract),
            Revision::for_test("e3", &["c2"], Expand),
            d,
        ])
        .expect("valid graph")
    }

    #[test]
    fn the_expand_stops_at_every_contract_and_what_requires_one() {
        let graph = graph();
        let state = DatabaseState::new(&graph, &["base"]).expect("known");
        let frontier = Frontier::of(&graph, &state);
        assert_eq!(ids(&graph, &frontier.applies), ["e1", "b1", "m"]);
        assert_eq!(ids(&graph, &frontier.targets), ["m"]);
        assert_eq!(ids(&graph, &frontier.contracts), ["c", "c2"]);
        // `d` needs only e1 as its parent, but depends_on a contract: it waits too.
        assert_eq!(ids(&graph, &frontier.behind), ["after", "e3", "d"]);
        // Upgrading to the targets applies exactly the expand.
        let after = DatabaseState::new(&graph, &ids(&graph, &frontier.targets)).expect("known");
        let mut applied: Vec<_> = after
            .applied()
            .iter()
            .filter(|&i| !state.applied().contains(i))
            .collect();
        applied.sort_unstable();
        let mut expected = frontier.applies.clone();
        expected.sort_unstable();
        assert_eq!(applied, expected);
        // From there, nothing more.
        let again = Frontier::of(&graph, &after);
        assert!(again.is_empty() && again.targets.is_empty());
        assert_eq!(ids(&graph, &again.contracts), ["c", "c2"]);
    }

    #[test]
    fn branches_are_targets_of_their_own_and_an_empty_database_starts_at_the_bases() {
        let graph = graph();
        let state = DatabaseState::new::<&str>(&graph, &[]).expect("empty");
        let frontier = Frontier::of(&graph, &state);
        assert_eq!(ids(&graph, &frontier.applies), ["base", "e1", "b1", "m"]);
        assert_eq!(ids(&graph, &frontier.targets), ["m"]);
        // At e1 with the branch not applied yet, and c2's side applied past its contract.
        let state = DatabaseState::new(&graph, &["e1", "c2"]).expect("known");
        let frontier = Frontier::of(&graph, &state);
        assert_eq!(ids(&graph, &frontier.applies), ["b1", "m", "e3", "d"]);
        assert_eq!(ids(&graph, &frontier.targets), ["m", "e3", "d"]);
        assert_eq!(ids(&graph, &frontier.contracts), ["c"]);
        assert_eq!(ids(&graph, &frontier.behind), ["after"]);
    }
}
