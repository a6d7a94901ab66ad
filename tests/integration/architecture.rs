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
