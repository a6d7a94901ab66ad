//! Property tests of the graph queries and the compatibility rule over random revision DAGs.

use proptest::prelude::*;
use proptest::sample::Index;

use crate::schema::compat::{DatabaseState, Reason, check_build};
use crate::schema::graph::{RevisionGraph, RevisionIndex};
use crate::schema::revision::{Phase, Revision};

/// One generated revision: parent picks (among earlier revisions), phase, optional tolerance pick,
/// optional `depends_on` pick (among earlier revisions).
type Spec = (Vec<Index>, u8, Option<Index>, Option<Index>);

fn dag() -> impl Strategy<Value = RevisionGraph> {
    prop::collection::vec(
        (
            prop::collection::vec(any::<Index>(), 0..=2),
            0..3u8,
            prop::option::of(any::<Index>()),
            prop::option::of(any::<Index>()),
        ),
        1..40,
    )
    .prop_map(build_graph)
}

fn build_graph(specs: Vec<Spec>) -> RevisionGraph {
    let mut revisions: Vec<Revision> = Vec::with_capacity(specs.len());
    for (i, (parent_picks, phase, tolerance, dependency)) in specs.into_iter().enumerate() {
        let mut parents: Vec<String> = if i == 0 {
            Vec::new()
        } else {
            parent_picks
                .iter()
                .map(|pick| format!("r{}", pick.index(i)))
                .collect()
        };
        parents.sort();
        parents.dedup();
        let depends_on: Vec<String> = dependency
            .filter(|_| i > 0)
            .map(|pick| format!("r{}", pick.index(i)))
            .into_iter()
            .collect();
        let phase = [Phase::Expand, Phase::Data, Phase::Contract][phase as usize];
        revisions.push(Revision {
            parents,
            depends_on,
            ..Revision::for_test(&format!("r{i}"), &[], phase)
        });
        if phase == Phase::Contract
            && let Some(pick) = tolerance
        {
            let graph = RevisionGraph::new(revisions.clone()).expect("generated DAG is valid");
            let ancestors: Vec<RevisionIndex> = graph.ancestors([i]).iter().collect();
            let tolerated = ancestors[pick.index(ancestors.len())];
            revisions[i].requires_app_at_least = Some(format!("r{tolerated}"));
        }
    }
    RevisionGraph::new(revisions).expect("generated DAG is valid")
}

fn state(graph: &RevisionGraph, heads: &[RevisionIndex]) -> DatabaseState {
    let ids: Vec<&str> = heads
        .iter()
        .map(|&i| graph.revision(i).id.as_str())
        .collect();
    DatabaseState::new(graph, &ids).expect("heads come from the graph")
}

/// Reachability over `down_revision` and `depends_on` by repeated relaxation: slow, obviously
/// right.
fn naive_ancestors(graph: &RevisionGraph, root: RevisionIndex) -> Vec<bool> {
    let mut reached = vec![false; graph.len()];
    reached[root] = true;
    let mut changed = true;
    while changed {
        changed = false;
        for index in 0..graph.len() {
            if reached[index] {
                let revision = graph.revision(index);
                let required = revision
                    .parents
                    .iter()
                    .chain(&revision.depends_on)
                    .map(|id| graph.index_of(id).expect("generated ids exist"));
                for parent in required {
                    if !reached[parent] {
                        reached[parent] = true;
                        changed = true;
                    }
                }
            }
        }
    }
    reached
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn ancestors_and_descendants_agree_with_naive_reachability(graph in dag()) {
        for root in 0..graph.len() {
            let expected = naive_ancestors(&graph, root);
            let ancestors = graph.ancestors([root]);
            for (index, &reached) in expected.iter().enumerate() {
                prop_assert_eq!(ancestors.contains(index), reached);
                prop_assert_eq!(graph.descendants([index]).contains(root), reached);
            }
        }
    }

    #[test]
    fn a_build_runs_on_the_schema_it_was_built_against(graph in dag()) {
        for build in 0..graph.len() {
            let verdict = check_build(&graph, build, &state(&graph, &[build]));
            prop_assert!(verdict.is_compatible(), "build r{}: {:?}", build, verdict);
        }
    }

    #[test]
    fn applying_an_expand_never_breaks_a_compatible_build(graph in dag(), picks in prop::collection::vec(any::<Index>(), 1..4)) {
        let heads: Vec<RevisionIndex> = picks.iter().map(|p| p.index(graph.len())).collect();
        let before = state(&graph, &heads);
        for expand in 0..graph.len() {
            let revision = graph.revision(expand);
            // Applicable: everything it requires (parents and depends_on) is applied already.
            let applicable = !before.applied().contains(expand)
                && revision.phase == Phase::Expand
                && revision
                    .parents
                    .iter()
                    .chain(&revision.depends_on)
                    .all(|id| before.applied().contains(graph.index_of(id).expect("known")));
            if !applicable {
                continue;
            }
            let mut after_heads = heads.clone();
            after_heads.push(expand);
            let after = state(&graph, &after_heads);
            for build in 0..graph.len() {
                if check_build(&graph, build, &before).is_compatible() {
                    prop_assert!(
                        check_build(&graph, build, &after).is_compatible(),
                        "expand r{} broke build r{}", expand, build
                    );
                }
            }
        }
    }

    #[test]
    fn an_undeclared_contract_rejects_every_build_before_it(graph in dag(), picks in prop::collection::vec(any::<Index>(), 1..4)) {
        let heads: Vec<RevisionIndex> = picks.iter().map(|p| p.index(graph.len())).collect();
        let db = state(&graph, &heads);
        for contract in db.applied().iter() {
            let revision = graph.revision(contract);
            if revision.phase != Phase::Contract || revision.requires_app_at_least.is_some() {
                continue;
            }
            let at_or_after = graph.descendants([contract]);
            for build in 0..graph.len() {
                if at_or_after.contains(build) {
                    continue;
                }
                let verdict = check_build(&graph, build, &db);
                let rejected_for_it = verdict.reasons().iter().any(|reason| matches!(
                    reason,
                    Reason::ContractNotTolerated { revision: id, .. } if *id == revision.id
                ));
                prop_assert!(rejected_for_it, "build r{} passed despite r{}", build, contract);
            }
        }
    }

    #[test]
    fn a_declared_tolerance_admits_exactly_the_builds_at_or_after_it(graph in dag()) {
        for contract in 0..graph.len() {
            let revision = graph.revision(contract);
            let Some(oldest) = revision.requires_app_at_least.as_deref() else { continue };
            let oldest = graph.index_of(oldest).expect("validated");
            let db = state(&graph, &[contract]);
            for build in 0..graph.len() {
                let blamed = check_build(&graph, build, &db).reasons().iter().any(|reason| matches!(
                    reason,
                    Reason::ContractNotTolerated { revision: id, .. } if *id == revision.id
                ));
                let tolerated = graph.ancestors([build]).contains(oldest)
                    || graph.ancestors([build]).contains(contract);
                prop_assert_eq!(blamed, !tolerated, "contract r{} build r{}", contract, build);
            }
        }
    }
}
