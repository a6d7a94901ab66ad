//! Bad input: each case gets one clear error line naming what is wrong, exit code 2, and nothing
//! written.

use std::path::Path;

use crate::support::example::*;
use crate::support::{ALL_KINDS, AlembicProject, Run, TestDatabase, example_project, shiftguard};

/// Asserts exit 2 and exactly the expected `error: …` lines (each given as a substring).
fn assert_errors(run: &Run, expected: &[&str]) {
    assert_eq!(
        run.code, 2,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "stderr: {}", run.stderr);
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains(expected), "expected {expected:?} in {line:?}");
    }
}

fn manifest_of(dir: &Path) -> Run {
    shiftguard(&["manifest", "--migrations", dir.to_str().expect("utf-8")])
}

const HEADER: &str = "from alembic import op\nimport sqlalchemy as sa\n";

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents).expect("write file");
}

#[test]
fn broken_migrations_directories() {
    let root = tempfile::tempdir().expect("tempdir");
    let case = |name: &str| {
        let dir = root.path().join(name);
        std::fs::create_dir(&dir).expect("mkdir");
        dir
    };

    let empty = case("empty");
    assert_errors(
        &manifest_of(&empty),
        &[&format!("no revision files (*.py) in {}", empty.display())],
    );

    let missing = root.path().join("nowhere");
    assert_errors(&manifest_of(&missing), &["does not exist"]);

    let not_a_dir = root.path().join("notes.txt");
    write(root.path(), "notes.txt", "hello");
    assert_errors(&manifest_of(&not_a_dir), &["notes.txt is not a directory"]);

    let syntax = case("syntax");
    write(
        &syntax,
        "a1_x.py",
        &format!("{HEADER}revision = 'a1'\ndown_revision = None\ndef upgrade(:\n    pass\n"),
    );
    assert_errors(&manifest_of(&syntax), &["a1_x.py:5: python syntax error"]);

    let binary = case("binary");
    std::fs::write(binary.join("a1_x.py"), [0xff, 0xfe, 0x00, 0x41]).expect("write");
    assert_errors(&manifest_of(&binary), &["a1_x.py: file is not UTF-8 text"]);

    let helper = case("helper");
    write(
        &helper,
        "a1_x.py",
        "revision = 'a1'\ndown_revision = None\n",
    );
    write(&helper, "helpers.py", "def shared():\n    return 1\n");
    assert_errors(
        &manifest_of(&helper),
        &["helpers.py: not an Alembic revision: it sets no `revision` variable"],
    );

    let orphan = case("no-down-revision");
    write(&orphan, "a1_x.py", "revision = 'a1'\n");
    assert_errors(
        &manifest_of(&orphan),
        &["a1_x.py:1: revision a1 sets no `down_revision`"],
    );

    let duplicate = case("duplicate");
    write(
        &duplicate,
        "a1_x.py",
        "revision = 'a1'\ndown_revision = None\n",
    );
    write(
        &duplicate,
        "a1_y.py",
        "revision = 'a1'\ndown_revision = None\n",
    );
    assert_errors(
        &manifest_of(&duplicate),
        &["revision id a1 is declared by more than one file: a1_x.py, a1_y.py"],
    );

    let dangling = case("dangling");
    write(
        &dangling,
        "b1_x.py",
        "revision = 'b1'\ndown_revision = 'a0'\n",
    );
    assert_errors(
        &manifest_of(&dangling),
        &["b1_x.py: down_revision a0 of revision b1 points at no known revision"],
    );

    let cycle = case("cycle");
    write(&cycle, "a1.py", "revision = 'a1'\ndown_revision = None\n");
    write(
        &cycle,
        "b1.py",
        "revision = 'b1'\ndown_revision = ('a1', 'c1')\n",
    );
    write(&cycle, "c1.py", "revision = 'c1'\ndown_revision = 'b1'\n");
    assert_errors(
        &manifest_of(&cycle),
        &["revisions form a cycle: b1 -> c1 -> b1"],
    );

    let contradiction = case("contradiction");
    write(
        &contradiction,
        "a1.py",
        &format!(
            "{HEADER}revision = 'a1'\ndown_revision = None\nshiftguard_phase = 'expand'\n\ndef upgrade():\n    op.drop_column('users', 'full_name')\n"
        ),
    );
    assert_errors(
        &manifest_of(&contradiction),
        &["a1.py:5: declared expand, but `op.drop_column` at line 8 is a contract operation"],
    );

    // Several broken files: one line each.
    let several = case("several");
    write(&several, "a1.py", "revision = 'a1'\n");
    write(
        &several,
        "b1.py",
        "revision = ('b1',)\ndown_revision = None\n",
    );
    assert_errors(
        &manifest_of(&several),
        &[
            "a1.py:1: revision a1 sets no `down_revision`",
            "b1.py:1: `revision` must be a string literal",
        ],
    );
}

#[test]
fn manifest_output_is_not_written_on_error() {
    let root = tempfile::tempdir().expect("tempdir");
    let output = root.path().join("manifest.json");
    let run = shiftguard(&[
        "manifest",
        "--migrations",
        root.path().to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    assert_errors(&run, &["no revision files"]);
    assert!(!output.exists());
}

#[test]
fn an_unclassifiable_revision_is_assumed_contract_with_a_warning() {
    let project = AlembicProject::init();
    project.revision("a1", &[]);
    project.set_upgrade("a1", "    op.execute(build_statement())");
    let run = manifest_of(&project.versions());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("warning: a1_a1.py: revision a1 has an operation whose phase cannot be inferred; assumed contract"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("\"phase_source\": \"assumed\""));
}

fn check(url: &str, app_revisions: &[&str]) -> Run {
    let project = example_project();
    let mut args = vec![
        "check",
        "--migrations",
        project.to_str().expect("utf-8"),
        "--database-url",
        url,
    ];
    for revision in app_revisions {
        args.extend(["--app-revision", revision]);
    }
    shiftguard(&args)
}

#[test]
fn unreachable_databases_are_named_without_their_password() {
    let run = check("postgres://app:hunter2@127.0.0.1:1/users", &[CREATE_USERS]);
    assert_errors(
        &run,
        &["cannot connect to postgres database users on 127.0.0.1:1"],
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);

    let run = check("mysql://root:hunter2@127.0.0.1:1/shop", &[CREATE_USERS]);
    assert_errors(
        &run,
        &["cannot connect to mysql database shop on 127.0.0.1:1"],
    );
    assert!(!run.stderr.contains("hunter2"));

    let missing = tempfile::tempdir().expect("tempdir");
    let file = missing.path().join("absent.db");
    let run = check(&format!("sqlite://{}", file.display()), &[CREATE_USERS]);
    assert_errors(
        &run,
        &[&format!(
            "sqlite database file {} does not exist",
            file.display()
        )],
    );
    assert!(!file.exists(), "check must not create a database file");

    assert_errors(
        &check("redis://127.0.0.1", &[CREATE_USERS]),
        &["unsupported database URL scheme `redis`"],
    );
}

#[test]
fn an_unknown_app_revision_is_named() {
    let run = check("sqlite::memory:", &["ffff"]);
    assert_errors(
        &run,
        &["--app-revision `ffff`: revision ffff is not in the migrations"],
    );
}

#[tokio::test]
async fn wrong_database_states_cannot_be_decided() {
    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        let url = db.url();
        let run = check(&url, &[CREATE_USERS]);
        assert_errors(
            &run,
            &["is not under Alembic control: table alembic_version does not exist"],
        );

        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
            .await;
        db.execute("INSERT INTO alembic_version (version_num) VALUES ('deadbeef0000')")
            .await;
        let run = check(&url, &[CREATE_USERS]);
        assert_errors(
            &run,
            &["database is at revision deadbeef0000 which the migrations do not contain"],
        );

        let mut args = vec![
            "check",
            "--migrations",
            "/nonexistent",
            "--database-url",
            &url,
        ];
        args.extend(["--app-revision", CREATE_USERS, "--json"]);
        let run = shiftguard(&args);
        assert_eq!(run.code, 2);
        let record: serde_json::Value =
            serde_json::from_str(&run.stdout).expect("JSON error record");
        assert_eq!(record["result"], "error");
        assert!(
            record["error"]
                .as_str()
                .expect("message")
                .contains("does not exist")
        );
        db.drop_database().await;
    }
}

#[test]
fn usage_errors_exit_2_and_help_has_examples() {
    let run = shiftguard(&["check", "--migrations", "x"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--database-url"), "{}", run.stderr);

    let help = shiftguard(&["check", "--help"]);
    assert_eq!(help.code, 0);
    assert!(help.stdout.contains("Examples:"));
    assert!(help.stdout.contains("Exit codes: 0"));
    let help = shiftguard(&["manifest", "--help"]);
    assert!(help.stdout.contains("Examples:"));
}

/// The catalogue: every command's flags with malformed values. Each gets exit 2 and a usage
/// error that names the flag, before anything is read or written; every command's help has
/// examples and its exit codes.
#[test]
fn every_command_refuses_malformed_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example_project();
    let example = example.to_str().expect("utf-8");
    let report = dir.path().join("missing/lab.html");
    let report = report.to_str().expect("utf-8");
    // A manifest past the 64 MiB read limit (sparse: no disk is used).
    let huge = dir.path().join("huge.json");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(65 * 1024 * 1024))
        .expect("huge file");
    let huge = huge.to_str().expect("utf-8");
    let check = |source: &'static str, path: &'static str, revision: &'static str| {
        [
            "check",
            source,
            path,
            "--database-url",
            "sqlite:///x.db",
            "--app-revision",
            revision,
        ]
    };
    let device = check("--manifest", "/dev/zero", "abcd");
    let mut one_character = check("--migrations", "", "1");
    one_character[2] = example;
    let mut empty = check("--migrations", "", "");
    empty[2] = example;
    let cases: &[(&[&str], &str)] = &[
        (&["manifest"], "--migrations"),
        (&["lint"], "--migrations"),
        (
            &["lint", "--migrations", example, "--format", "xml"],
            "--format",
        ),
        (
            &["lint", "--migrations", example, "--deny", "errors"],
            "--deny",
        ),
        (
            &["lint", "--migrations", example, "--dialect", "oracle"],
            "--dialect",
        ),
        (
            &["lint", "--migrations", example, "--color", "sometimes"],
            "--color",
        ),
        (
            &[
                "lint",
                "--migrations",
                example,
                "--config",
                "/nonexistent/sg.toml",
            ],
            "cannot read configuration /nonexistent/sg.toml",
        ),
        (&["lab", "--rows", "many"], "--rows"),
        (&["lab", "--rows", "10"], "--rows must be at least 1000"),
        (&["lab", "--report", report], "--report: directory"),
        (
            &["lab", "--database-url", "oracle://db/x"],
            "--database-url",
        ),
        (
            &[
                "check",
                "--migrations",
                example,
                "--database-url",
                "sqlite:///x.db",
                "--app-revision",
                "a",
                "--connect-timeout",
                "soon",
            ],
            "--connect-timeout",
        ),
        (
            &[
                "gate",
                "contract",
                "--migrations",
                example,
                "--database-url",
                "sqlite:///x.db",
                "--function",
                "f",
                "--alias",
                "live",
            ],
            "--revision",
        ),
        (
            &[
                "gate",
                "contract",
                "--migrations",
                example,
                "--database-url",
                "sqlite:///x.db",
                "--function",
                "f",
                "--alias",
                "live",
                "--revision",
                "r",
                "--observation-minutes=-5",
            ],
            "--observation-minutes",
        ),
        (
            &[
                "status",
                "--migrations",
                example,
                "--database-url",
                "sqlite:///x.db",
                "--function",
                "f",
                "--alias",
                "live",
                "--watch",
                "never",
            ],
            "--watch",
        ),
        (&["backfill", "run"], "required"),
        // Reading stops: a device never ends, and a file may be huge.
        (&device, "manifest /dev/zero is not a regular file"),
        (
            &[
                "check",
                "--manifest",
                huge,
                "--database-url",
                "sqlite:///x.db",
                "--app-revision",
                "abcd",
            ],
            "is larger than 64 MiB",
        ),
        // A revision is named by its id or a prefix of at least 4 characters.
        (
            &one_character,
            "revision `1` is not in the migrations, and a prefix needs at least 4 characters",
        ),
        (
            &empty,
            "--app-revision ``: the revision is empty: give a revision id or a prefix of at least 4 characters",
        ),
    ];
    for (args, expected) in cases {
        let run = shiftguard(args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{args:?}: expected {expected:?} in {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?} printed: {}", run.stdout);
    }
    assert!(!dir.path().join("missing").exists(), "nothing written");
    for command in [
        "manifest", "lint", "lab", "check", "backfill", "gate", "status",
    ] {
        let help = shiftguard(&[command, "--help"]);
        assert_eq!(help.code, 0, "{command}");
        assert!(
            help.stdout.contains("Examples:"),
            "{command} --help has examples"
        );
    }
}

/// `[gates] observe` cannot silence a gate that always decides: the operator's hold, the
/// compatibility rule's gates, or every gate at once (`*` made the hold and `schema:*`
/// non-deciding). Exit 2, the pattern and the reason named.
#[test]
fn observe_cannot_silence_the_hold_or_the_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let example = example_project();
    for (observe, why) in [
        (
            "\"hold\"",
            "`hold` would make the operator's `hold` gate observe-only",
        ),
        ("\"*\"", "`*` would make every gate observe-only"),
        (
            "\"schema:*\"",
            "`schema:*` would make the compatibility rule's gates",
        ),
        (
            "\"health:p99\", \"s*\"",
            "`s*` would make the compatibility rule's gates",
        ),
    ] {
        let config = dir.path().join("shiftguard.toml");
        write(
            dir.path(),
            "shiftguard.toml",
            &format!("[gates]\nobserve = [{observe}]\n"),
        );
        let run = shiftguard(&[
            "lint",
            "--migrations",
            example.to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
            "--no-sql",
        ]);
        assert_errors(&run, &[&format!("gates.observe: {why}")]);
    }
    write(
        dir.path(),
        "shiftguard.toml",
        "[gates]\nobserve = [\"database:*\", \"health:*\"]\n",
    );
    let run = shiftguard(&[
        "lint",
        "--migrations",
        example.to_str().expect("utf-8"),
        "--config",
        dir.path().join("shiftguard.toml").to_str().expect("utf-8"),
        "--no-sql",
    ]);
    assert_ne!(
        run.code, 2,
        "prefixes of gates that may be observed: {}",
        run.stderr
    );
}
