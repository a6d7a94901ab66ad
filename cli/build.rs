//! The commit `shiftguard --version` names (12 digits): `SHIFTGUARD_COMMIT` when the build sets
//! it, else `GITHUB_SHA` (a GitHub Actions build, which maturin's container passes through,
//! unlike git's view of a checkout another user owns), else the checkout's `git rev-parse
//! HEAD`, else `unknown` (a build from the source distribution).

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SHIFTGUARD_COMMIT");
    println!("cargo:rerun-if-env-changed=GITHUB_SHA");
    let given = ["SHIFTGUARD_COMMIT", "GITHUB_SHA"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|commit| commit.trim().to_owned())
        .find(|commit| !commit.is_empty());
    let commit = given
        .or_else(checkout_commit)
        .map(|commit| commit.chars().take(12).collect::<String>())
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SHIFTGUARD_COMMIT={commit}");
}

/// The checkout's commit, with the files a new commit or checkout changes watched (those that
/// exist: cargo reruns a build script whose watched file is missing, on every build).
fn checkout_commit() -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&dir)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"])?;
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        // `--git-path` knows where a worktree keeps each file (HEAD its own, refs shared).
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && Path::new(&path).is_file()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}
