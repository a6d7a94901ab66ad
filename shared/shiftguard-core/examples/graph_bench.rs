//! Benchmark of the revision graph at scale: `cargo run --release -p shiftguard-core --example
//! graph_bench [REVISIONS]` (default 5,000). Writes that many revision files in Alembic's typed
//! template to a temporary directory, branching and merging every 50 revisions, then times
//! parsing, graph building, one ancestor and one descendant query per revision, and the
//! compatibility rule for every revision as a build.

use std::time::Instant;

use shiftguard_core::lint::{Options, Scope, finish, lint_operations, rule_ran};
use shiftguard_core::schema::scan::{load_migrations, load_project};
use shiftguard_core::{DatabaseState, check_build};

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("REVISIONS must be a number"))
        .unwrap_or(5_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let id_of = |i: usize| format!("\"{i:012x}\"");
    for i in 0..count {
        let id = format!("{i:012x}");
        // Every 50 revisions: fork at 50k into two branches (50k+1..=50k+5 and 50k+6..=50k+10),
        // merged by 50k+11.
        let down = match (i, i % 50) {
            (0, _) => "None".to_owned(),
            (50.., 6) => id_of(i - 6),
            (50.., 11) => format!("({}, {})", id_of(i - 6), id_of(i - 1)),
            _ => id_of(i - 1),
        };
        let body = match i % 10 {
            3 => "    with op.batch_alter_table(\"t\") as batch_op:\n        batch_op.drop_column(\"c\")".to_owned(),
            7 => "    op.execute(\"UPDATE t SET c = d WHERE c IS NULL\")".to_owned(),
            _ => format!("    op.add_column(\"t\", sa.Column(\"c{i}\", sa.String(), nullable=True))"),
        };
        let source = format!(
            "\"\"\"revision {i}\n\nRevision ID: {id}\n\"\"\"\nfrom typing import Sequence, Union\n\nfrom alembic import op\nimport sqlalchemy as sa\n\nrevision: str = \"{id}\"\ndown_revision: Union[str, Sequence[str], None] = {down}\nbranch_labels: Union[str, Sequence[str], None] = None\ndepends_on: Union[str, Sequence[str], None] = None\n\n\ndef upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
        );
        std::fs::write(dir.path().join(format!("{id}_rev.py")), source).expect("write");
    }

    let start = Instant::now();
    let migrations = load_migrations(dir.path()).expect("valid revisions");
    let parse = start.elapsed();
    let graph = migrations.graph;

    let start = Instant::now();
    let mut reached = 0usize;
    for index in 0..graph.len() {
        reached += graph.ancestors([index]).len();
    }
    let ancestors = start.elapsed();

    let start = Instant::now();
    for index in 0..graph.len() {
        reached += graph.descendants([index]).len();
    }
    let descendants = start.elapsed();

    let heads: Vec<String> = graph
        .heads()
        .into_iter()
        .map(|i| graph.revision(i).id.clone())
        .collect();
    let state = DatabaseState::new(&graph, &heads).expect("heads are known");
    let start = Instant::now();
    let mut compatible = 0;
    for build in 0..graph.len() {
        compatible += usize::from(check_build(&graph, build, &state).is_compatible());
    }
    let rule = start.elapsed();

    // The lint's operations layer: the whole graph, then the second half as one release (the
    // cross-revision rules run; every table counts as large, so SG402 is evaluated too).
    let start = Instant::now();
    let project = load_project(dir.path()).expect("valid revisions");
    let load = start.elapsed();
    let lint = |since: Vec<usize>| {
        let options = Options {
            large_tables: vec!["*".to_owned()],
            ..Options::default()
        };
        let start = Instant::now();
        let scope = Scope::new(&project.graph, since);
        let findings = lint_operations(&project, &scope, &options);
        let findings = finish(&project, &scope, findings, |rule| {
            rule_ran(rule, &scope, &options, false)
        })
        .expect("no disables");
        (start.elapsed(), findings.len(), scope.release.len())
    };
    let (whole, whole_findings, _) = lint(Vec::new());
    let middle = project
        .graph
        .topological()
        .nth(graph.len() / 2)
        .expect("a middle");
    let (release, release_findings, release_len) = lint(vec![middle]);

    let per = |total: std::time::Duration| total.as_secs_f64() * 1e6 / graph.len() as f64;
    println!("revisions                       {}", graph.len());
    println!("heads                           {}", heads.len());
    println!(
        "parse + validate (all files)    {:>9.1} ms",
        parse.as_secs_f64() * 1e3
    );
    println!(
        "ancestors, one query each       {:>9.1} ms total, {:>7.1} us per query",
        ancestors.as_secs_f64() * 1e3,
        per(ancestors)
    );
    println!(
        "descendants, one query each     {:>9.1} ms total, {:>7.1} us per query",
        descendants.as_secs_f64() * 1e3,
        per(descendants)
    );
    println!(
        "compatibility rule, every build {:>9.1} ms total, {:>7.1} us per build ({compatible} compatible)",
        rule.as_secs_f64() * 1e3,
        per(rule)
    );
    println!(
        "lint: load (parse + graph)      {:>9.1} ms",
        load.as_secs_f64() * 1e3
    );
    println!(
        "lint: whole graph               {:>9.1} ms ({whole_findings} findings)",
        whole.as_secs_f64() * 1e3
    );
    println!(
        "lint: release of {release_len:>5} revisions {:>9.1} ms ({release_findings} findings)",
        release.as_secs_f64() * 1e3
    );
    std::hint::black_box(reached);
}
