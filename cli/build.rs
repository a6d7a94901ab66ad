//! The commit `shiftguard --version` names: `SHIFTGUARD_COMMIT` when the build sets it (the
//! release workflow; a build from the source distribution, which has no `.git`), else the
//! checkout's `git rev-parse HEAD`, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SHIFTGUARD_COMMIT");
    let commit = std::env::var("SHIFTGUARD_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(checkout_commit)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SHIFTGUARD_COMMIT={commit}");
}

/// The checkout's commit (12 digits), watched so that a new commit rebuilds with it.
fn checkout_commit() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
        let output = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/packed-refs");
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{branch}");
        }
    }
    Some(commit)
}
