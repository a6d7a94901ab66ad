//! The `shiftguard` wheel (`pyproject.toml`, built by maturin: `scripts/wheel`, which
//! `scripts/test` runs first): its metadata, and the CLI it installs, run from a fresh venv
//! with no Rust toolchain on `PATH`, on the example project and a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::example::*;
use crate::support::{
    AlembicProject, Kind, Run, TestDatabase, alembic, alembic_binary, example_project, repo_root,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Alembic renders the SQL the lint reads offline: only the dialect matters, nothing is contacted.
const OFFLINE_URL: &str = "postgresql+psycopg://lint@localhost/none";

/// The one wheel of this version in `target/wheels`.
fn wheel() -> PathBuf {
    let dir = repo_root().join("target/wheels");
    let prefix = format!("shiftguard-{VERSION}-");
    let wheels: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run scripts/wheel (scripts/test does)",
                dir.display()
            )
        })
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    assert_eq!(
        wheels.len(),
        1,
        "one wheel of {VERSION} in {}: {wheels:?}",
        dir.display()
    );
    wheels.into_iter().next().expect("a wheel")
}

/// The files a wheel holds, and the text of its METADATA and WHEEL (Python's zipfile reads it).
fn contents(wheel: &Path) -> serde_json::Value {
    let script = "import json, sys, zipfile\n\
        z = zipfile.ZipFile(sys.argv[1])\n\
        names = z.namelist()\n\
        info = [n for n in names if n.endswith('.dist-info/METADATA')][0].rsplit('/', 1)[0]\n\
        print(json.dumps({'names': names, 'metadata': z.read(info + '/METADATA').decode(), 'wheel': z.read(info + '/WHEEL').decode(), 'mode': z.getinfo([n for n in names if n.endswith('/scripts/shiftguard')][0]).external_attr >> 16}))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(wheel)
        .output()
        .expect("run python3");
    let run = Run::from(output);
    assert_eq!(run.code, 0, "{}", run.stderr);
    serde_json::from_str(&run.stdout).expect("JSON")
}

#[test]
fn the_wheel_carries_the_binary_as_its_script_with_the_project_s_metadata() {
    let wheel = wheel();
    let name = wheel.file_name().and_then(|n| n.to_str()).expect("name");
    // No Python ABI: one wheel serves every Python; the platform is this machine's.
    let arch = std::env::consts::ARCH;
    assert!(
        name.starts_with(&format!("shiftguard-{VERSION}-py3-none-")) && name.contains(arch),
        "{name}"
    );
    let contents = contents(&wheel);
    let names: Vec<&str> = contents["names"]
        .as_array()
        .expect("names")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    let script = format!("shiftguard-{VERSION}.data/scripts/shiftguard");
    assert!(names.contains(&script.as_str()), "{names:?}");
    assert_eq!(
        contents["mode"].as_u64().map(|m| m & 0o111),
        Some(0o111),
        "the script is executable"
    );
    let metadata = contents["metadata"].as_str().expect("METADATA");
    for line in [
        "Name: shiftguard".to_owned(),
        format!("Version: {VERSION}"),
        "Requires-Python: >=3.9".to_owned(),
        "Classifier: Programming Language :: Rust".to_owned(),
        "Project-URL: Repository, https://github.com/shiftguard/shiftguard".to_owned(),
    ] {
        assert!(
            metadata.lines().any(|l| l == line),
            "{line} in:\n{metadata}"
        );
    }
    let tags = contents["wheel"].as_str().expect("WHEEL");
    assert!(
        tags.lines()
            .any(|l| l.starts_with("Tag: py3-none-") && l.contains(arch)),
        "{tags}"
    );
}

/// A fresh venv with the wheel installed (no index, no dependencies: it has none).
fn venv_with_the_wheel(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .expect("python3 -m venv");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let installed = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
        ])
        .arg(wheel())
        .output()
        .expect("pip install");
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    venv
}

/// `shiftguard ARGS` as the venv installed it, with only the venv and the system on PATH.
fn installed(venv: &Path, args: &[&str]) -> Run {
    let path = format!("{}:/usr/bin:/bin", venv.join("bin").display());
    Command::new(venv.join("bin/shiftguard"))
        .args(args)
        .env("PATH", path)
        .env("SHIFTGUARD_ALEMBIC", alembic_binary())
        .env("SQLALCHEMY_URL", OFFLINE_URL)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run the installed shiftguard")
        .into()
}

#[tokio::test]
async fn the_installed_cli_runs_without_a_rust_toolchain() {
    let dir = tempfile::tempdir().expect("dir");
    let venv = venv_with_the_wheel(dir.path());
    // Nothing on that PATH can build Rust: what runs is what the wheel installed.
    let toolchain = Command::new("sh")
        .args(["-c", "command -v cargo rustc"])
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", venv.join("bin").display()),
        )
        .output()
        .expect("sh");
    assert!(toolchain.stdout.is_empty(), "a Rust toolchain on the PATH");

    let version = installed(&venv, &["--version"]);
    assert_eq!(version.code, 0, "{}", version.stderr);
    let built: Run = Command::new(env!("CARGO_BIN_EXE_shiftguard"))
        .arg("--version")
        .output()
        .expect("run shiftguard")
        .into();
    assert!(
        version
            .stdout
            .starts_with(&format!("shiftguard {VERSION} (")),
        "{}",
        version.stdout
    );
    assert_eq!(version.stdout, built.stdout, "the wheel carries this build");

    // The lint of the example, as the workspace's binary gives it.
    let example = example_project();
    let example = example.to_str().expect("utf-8 path");
    let lint = installed(
        &venv,
        &["lint", "--migrations", example, "--format", "json"],
    );
    let expected: Run = Command::new(env!("CARGO_BIN_EXE_shiftguard"))
        .args(["lint", "--migrations", example, "--format", "json"])
        .env("SHIFTGUARD_ALEMBIC", alembic_binary())
        .env("SQLALCHEMY_URL", OFFLINE_URL)
        .output()
        .expect("run shiftguard")
        .into();
    assert_eq!(
        (lint.code, &lint.stdout),
        (expected.code, &expected.stdout),
        "{}",
        lint.stderr
    );
    assert!(lint.stdout.contains("\"findings\""), "{}", lint.stdout);

    // `check` on PostgreSQL: both builds fit the expand; after the contract the old one does not.
    let db = TestDatabase::create(Kind::Postgres).await;
    alembic(
        &example_project(),
        Some(&db.sqlalchemy_url()),
        &["upgrade", MERGE],
    );
    let url = db.url();
    let check = |venv: &Path| {
        installed(
            venv,
            &[
                "check",
                "--migrations",
                example,
                "--database-url",
                &url,
                "--app-revision",
                CREATE_USERS,
                "--app-revision",
                MERGE,
            ],
        )
    };
    let fits = check(&venv);
    assert_eq!(fits.code, 0, "{}{}", fits.stdout, fits.stderr);
    alembic(
        &example_project(),
        Some(&db.sqlalchemy_url()),
        &["upgrade", DROP_FULL_NAME],
    );
    let refused = check(&venv);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains(CREATE_USERS), "{}", refused.stdout);
    db.drop_database().await;
}

#[test]
fn the_pre_commit_hook_fails_on_a_hazard_and_passes_on_a_safe_revision() {
    let wheel = wheel();
    let project = AlembicProject::init();
    let dir = project.path();
    let git = |args: &[&str]| {
        let run: Run = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git")
            .into();
        assert_eq!(run.code, 0, "git {args:?}: {}", run.stderr);
    };
    git(&["init", "--quiet"]);
    // The hook README's "Install" shows, with this repository's wheel for the published one.
    std::fs::write(
        dir.join(".pre-commit-config.yaml"),
        format!(
            "repos:\n  - repo: local\n    hooks:\n      - id: shiftguard-lint\n        name: shiftguard lint\n        language: python\n        additional_dependencies: [\"{}\"]\n        entry: shiftguard lint --migrations .\n        files: (^|/)versions/.+\\.py$\n        pass_filenames: false\n",
            wheel.display()
        ),
    )
    .expect("write config");
    project.revision("items", &[]);
    project.set_upgrade(
        "items",
        "    op.create_table('items', sa.Column('id', sa.Integer(), primary_key=True))",
    );
    let cache = tempfile::tempdir().expect("cache");
    // As on a developer's machine without the project's venv active: no Alembic on PATH, so
    // the lint's SQL layer is skipped (with a note) and the operations layer decides.
    let pre_commit = |files: &Path| -> Run {
        Command::new(repo_root().join(".venv/bin/pre-commit"))
            .args(["run", "--color", "never", "--files"])
            .arg(files)
            .current_dir(dir)
            .env("PRE_COMMIT_HOME", cache.path())
            .env("PATH", "/usr/bin:/bin")
            .env_remove("SHIFTGUARD_ALEMBIC")
            .env_remove("SQLALCHEMY_URL")
            .output()
            .expect("pre-commit")
            .into()
    };
    git(&["add", "-A"]);
    let safe = pre_commit(&project.file_of("items"));
    assert_eq!(safe.code, 0, "{}{}", safe.stdout, safe.stderr);
    assert!(
        safe.stdout.contains("shiftguard lint") && safe.stdout.contains("Passed"),
        "{}",
        safe.stdout
    );

    // A NOT NULL column without a default on a table the running build writes.
    project.revision("qty", &["--head", "items"]);
    project.set_upgrade(
        "qty",
        "    op.add_column('items', sa.Column('qty', sa.Integer(), nullable=False))",
    );
    git(&["add", "-A"]);
    let hazard = pre_commit(&project.file_of("qty"));
    assert_eq!(hazard.code, 1, "{}{}", hazard.stdout, hazard.stderr);
    assert!(
        hazard.stdout.contains("Failed") && hazard.stdout.contains("SG107"),
        "{}",
        hazard.stdout
    );
}

/// Runs the shell steps of `action.yml` as a runner would (`bash -eo pipefail`, each step's
/// `env:` with the inputs given or their defaults, `$GITHUB_PATH` carried to the next step), with
/// files for `$GITHUB_OUTPUT` and `$GITHUB_STEP_SUMMARY`. Returns each step's exit code.
fn run_action(inputs: &[(&str, &str)], runner: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(repo_root().join("action.yml")).expect("action.yml");
    let action: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let input = |name: &str| -> String {
        inputs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| {
                action["inputs"][name]["default"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    let mut codes = Vec::new();
    for step in action["runs"]["steps"].as_array().expect("steps") {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        assert_eq!(step["shell"], "bash", "{step}");
        assert!(
            !script.contains("${{"),
            "inputs reach the script as variables only: {script}"
        );
        let added = std::fs::read_to_string(runner.join("path")).unwrap_or_default();
        let mut path: Vec<&str> = added.lines().rev().collect();
        path.extend(["/usr/bin", "/bin"]);
        let mut command = Command::new("bash");
        command
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .env_clear()
            .env("PATH", path.join(":"))
            .env("HOME", runner)
            .env("RUNNER_TEMP", runner)
            .env("GITHUB_PATH", runner.join("path"))
            .env("GITHUB_OUTPUT", runner.join("output"))
            .env("GITHUB_STEP_SUMMARY", runner.join("summary.md"))
            .env("SHIFTGUARD_ALEMBIC", alembic_binary())
            .env("SQLALCHEMY_URL", OFFLINE_URL);
        if let Some(env) = step["env"].as_object() {
            for (key, value) in env {
                let value = value.as_str().expect("an env value");
                let name = value
                    .strip_prefix("${{ inputs.")
                    .and_then(|v| v.strip_suffix(" }}"))
                    .unwrap_or_else(|| panic!("{key}: {value}"));
                command.env(key, input(name));
            }
        }
        let run: Run = command.output().expect("bash").into();
        eprintln!("--- step {}:\n{}{}", step["name"], run.stdout, run.stderr);
        codes.push(run.code);
    }
    codes
}

#[test]
fn the_action_installs_the_wheel_runs_the_lint_and_writes_the_summary() {
    let schema_check: Run = Command::new(repo_root().join(".venv/bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.github-actions"])
        .arg(repo_root().join("action.yml"))
        .output()
        .expect("check-jsonschema")
        .into();
    assert_eq!(
        schema_check.code, 0,
        "{}{}",
        schema_check.stdout, schema_check.stderr
    );

    let project = AlembicProject::init();
    project.revision("items", &[]);
    project.set_upgrade(
        "items",
        "    op.create_table('items', sa.Column('id', sa.Integer(), primary_key=True))",
    );
    project.revision("qty", &["--head", "items"]);
    project.set_upgrade(
        "qty",
        "    op.add_column('items', sa.Column('qty', sa.Integer(), nullable=False))",
    );
    let runner = tempfile::tempdir().expect("runner");
    let wheel = wheel();
    let args = format!("--migrations '{}' --since items", project.path().display());
    let codes = run_action(
        &[
            ("command", "lint"),
            ("args", &args),
            ("version", wheel.to_str().expect("utf-8 path")),
        ],
        runner.path(),
    );
    // Installed, then the lint fails on the hazard.
    assert_eq!(codes, [0, 1]);
    let output = std::fs::read_to_string(runner.path().join("output")).expect("GITHUB_OUTPUT");
    assert!(
        output.contains("exit-code=1\n") && output.contains("sarif="),
        "{output}"
    );
    let summary = std::fs::read_to_string(runner.path().join("summary.md")).expect("summary");
    assert!(
        summary.starts_with("### shiftguard lint: FAIL")
            && summary.contains("| Rule | Where | Finding | Fix |\n|---|---|---|---|---|")
            && summary.contains("`SG107`"),
        "{summary}"
    );
    let path = std::fs::read_to_string(runner.path().join("path")).expect("GITHUB_PATH");
    assert_eq!(
        path.trim(),
        runner.path().join("shiftguard-bin").display().to_string(),
        "only the command goes on PATH, not the venv's python and pip"
    );
    let sarif =
        std::fs::read_to_string(runner.path().join("shiftguard-lint.sarif")).expect("sarif");
    assert!(sarif.contains("\"ruleId\": \"SG107\""), "{sarif}");

    // `args` is split like a shell would, but nothing in it runs.
    let marker = runner.path().join("marker");
    let injected = format!(
        "--migrations '{}' $(touch {}) `touch {}`",
        project.path().display(),
        marker.display(),
        marker.display()
    );
    let codes = run_action(
        &[
            ("command", "lint"),
            ("args", &injected),
            ("version", wheel.to_str().expect("utf-8 path")),
        ],
        runner.path(),
    );
    assert_eq!(codes, [0, 2], "an unexpected argument");
    assert!(!marker.exists(), "nothing in args was run");

    // An unknown command: an error annotation, exit 2, nothing run.
    let codes = run_action(
        &[
            ("command", "deploy"),
            ("version", wheel.to_str().expect("utf-8 path")),
        ],
        runner.path(),
    );
    assert_eq!(codes, [0, 2]);
}
