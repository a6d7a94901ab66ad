//! Architectural invariants that would otherwise rot silently.

use std::process::Command;

/// `shiftguard-core` knows nothing of async runtimes, SQL drivers, AWS or Lambda: not directly,
/// not through any dependency.
#[test]
fn core_depends_on_no_io_crate() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "shiftguard-core",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--locked",
        ])
        .current_dir(crate::support::repo_root())
        .output()
        .expect("cargo tree");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"ruff_python_parser"),
        "the tree lists the core's real dependencies"
    );
    let forbidden: Vec<&str> = crates
        .into_iter()
        .filter(|name| {
            [
                "tokio", "sqlx", "aws-", "aws_", "lambda", "hyper", "reqwest", "mio",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "shiftguard-core reaches {forbidden:?}"
    );
}

/// The release decisions are assembled in one place, `shiftguard_core::release::decide`: the
/// lab, `shiftguard gate`, `shiftguard status` and the hooks call it and never gather a gate's
/// inputs or call a pure gate function themselves, so the lab runs the code the Lambdas run and
/// a new gate input is wired once. (The rule itself, `check_build`, is not a gate: the lab and
/// `shiftguard check` apply it to a build directly.)
#[test]
fn only_the_orchestration_calls_the_gate_functions() {
    let root = crate::support::repo_root();
    let mut files = vec![
        root.join("cli/src/lab.rs"),
        root.join("cli/src/gate.rs"),
        root.join("cli/src/status.rs"),
    ];
    for folder in ["cli/src/lab", "shared/shiftguard-hooks/src"] {
        for entry in std::fs::read_dir(root.join(folder)).expect(folder) {
            files.push(entry.expect("entry").path());
        }
    }
    let functions = [
        "pre_traffic",
        "post_traffic",
        "between_steps",
        "health_gates",
        "schema_gate",
        "version_fits",
        "backfill_gates",
        "smoke_gate",
        "cutover",
        "contract",
        "state_after",
        "first_pending_key",
        "live_versions",
    ];
    let mut calls = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source");
        for function in functions {
            let call = format!("{function}(");
            for (at, _) in text.match_indices(&call) {
                let before = &text[..at];
                // Part of a longer name, the orchestration itself, its definition, or the
                // gate command's own methods that call it (`loaded.cutover(…)`).
                let own_method =
                    before.ends_with('.') && ["cutover", "contract"].contains(&function);
                let allowed = before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
                    || before.ends_with("decide::")
                    || before.ends_with("fn ")
                    || own_method;
                if !allowed {
                    let line = before.lines().count();
                    calls.push(format!("{}:{line}: {function}", file.display()));
                }
            }
        }
        for method in [".judge(", ".judge_metrics("] {
            if let Some(at) = text.find(method) {
                let line = text[..at].lines().count();
                calls.push(format!("{}:{line}: {method}", file.display()));
            }
        }
    }
    assert!(files.len() > 5, "the files to check were found: {files:?}");
    assert!(
        calls.is_empty(),
        "gate flows assembled outside shiftguard_core::release::decide: {calls:#?}"
    );
}
