//! `shiftguard check` on real databases moved by the real `alembic upgrade`: the expected verdicts
//! come from the compatibility rule, written as a table.

use crate::support::example::*;
use crate::support::{ALL_KINDS, Kind, TestDatabase, alembic, example_project, json, shiftguard};

/// Every build of the example, oldest first.
const BUILDS: [&str; 6] = [
    CREATE_USERS,
    ADD_DISPLAY_NAME,
    INDEX_EMAIL,
    CREATE_AUDIT_LOG,
    MERGE,
    DROP_FULL_NAME,
];

/// One row: the `alembic upgrade` targets applied in order, the `alembic_version` rows that
/// result, and the builds (by position in BUILDS) that can run.
struct Stage {
    upgrade_to: &'static [&'static str],
    heads: &'static [&'static str],
    compatible: [bool; 6],
}

const STAGES: &[Stage] = &[
    // Expand applied: the old build and the dual-writing build both fit; later builds need more.
    Stage {
        upgrade_to: &[ADD_DISPLAY_NAME],
        heads: &[ADD_DISPLAY_NAME],
        compatible: [true, true, false, false, false, false],
    },
    // Both branches applied, not merged: two rows in alembic_version. Builds on either branch
    // fit; a build at the merge needs the (empty) merge revision itself.
    Stage {
        upgrade_to: &[INDEX_EMAIL, CREATE_AUDIT_LOG],
        heads: &[CREATE_AUDIT_LOG, INDEX_EMAIL],
        compatible: [true, true, true, true, false, false],
    },
    // Contract applied: it tolerates builds at or after the merge (declared), which no longer
    // touch full_name; the dual-writing build and everything older break.
    Stage {
        upgrade_to: &["heads"],
        heads: &[DROP_FULL_NAME],
        compatible: [false, false, false, false, true, true],
    },
];

async fn walk_the_example(kind: Kind) {
    let db = TestDatabase::create(kind).await;
    let project = example_project();
    let mut args = vec![
        "check",
        "--migrations",
        project.to_str().expect("utf-8"),
        "--json",
    ];
    let url = db.url();
    args.extend(["--database-url", &url]);
    for build in BUILDS {
        args.extend(["--app-revision", build]);
    }

    for stage in STAGES {
        for target in stage.upgrade_to {
            alembic(&project, Some(&db.sqlalchemy_url()), &["upgrade", target]);
        }
        let run = shiftguard(&args);
        let decision = json(&run);
        let heads: Vec<&str> = decision["database"]["heads"]
            .as_array()
            .expect("heads")
            .iter()
            .map(|h| h.as_str().expect("head id"))
            .collect();
        assert_eq!(heads, stage.heads, "{kind:?}");
        let compatible: Vec<bool> = decision["builds"]
            .as_array()
            .expect("builds")
            .iter()
            .map(|b| b["compatible"].as_bool().expect("bool"))
            .collect();
        assert_eq!(
            compatible, stage.compatible,
            "{kind:?} at {:?}: {}",
            stage.heads, run.stdout
        );
        let all = stage.compatible.iter().all(|&c| c);
        assert_eq!(
            run.code,
            if all { 0 } else { 1 },
            "{kind:?}: {}",
            run.stderr
        );
        assert_eq!(
            decision["result"],
            if all { "compatible" } else { "incompatible" }
        );
    }

    // The human report names revision, build and rule for the oldest build.
    let run = shiftguard(&[
        "check",
        "--migrations",
        project.to_str().expect("utf-8"),
        "--database-url",
        &url,
        "--app-revision",
        &CREATE_USERS[..6],
    ]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains(&format!(
            "database has applied contract revision {DROP_FULL_NAME}, which tolerates builds at or after {MERGE}; build {CREATE_USERS} is older (rule b: contract tolerance)"
        )),
        "{}",
        run.stdout
    );
    db.drop_database().await;
}

#[tokio::test]
async fn check_follows_the_rule_on_postgres() {
    walk_the_example(Kind::Postgres).await;
}

#[tokio::test]
async fn check_follows_the_rule_on_mariadb() {
    walk_the_example(Kind::MariaDb).await;
}

#[tokio::test]
async fn check_follows_the_rule_on_sqlite() {
    walk_the_example(Kind::Sqlite).await;
}

#[tokio::test]
async fn check_reads_the_graph_from_a_manifest_and_the_url_from_the_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("manifest.json");
    let project = example_project();
    let written = shiftguard(&[
        "manifest",
        "--migrations",
        project.to_str().expect("utf-8"),
        "--output",
        manifest.to_str().expect("utf-8"),
    ]);
    assert_eq!(written.code, 0, "{}", written.stderr);
    assert_eq!(written.stdout, "", "--output writes the file, not stdout");

    for kind in ALL_KINDS {
        let db = TestDatabase::create(kind).await;
        alembic(
            &project,
            Some(&db.sqlalchemy_url()),
            &["upgrade", ADD_DISPLAY_NAME],
        );
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_shiftguard"))
            .args(["check", "--manifest", manifest.to_str().expect("utf-8")])
            .args([
                "--app-revision",
                CREATE_USERS,
                "--app-revision",
                DROP_FULL_NAME,
            ])
            .env("DATABASE_URL", db.url())
            .output()
            .expect("run shiftguard");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(run.status.code(), Some(1), "{kind:?}: {stdout}");
        assert!(
            stdout.contains(&format!("build {CREATE_USERS}  compatible")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "build {DROP_FULL_NAME} needs expand revision {INDEX_EMAIL}, which the database has not applied (rule a"
            )),
            "{stdout}"
        );
        db.drop_database().await;
    }
}

#[tokio::test]
async fn an_empty_alembic_version_means_nothing_applied() {
    let db = TestDatabase::create(Kind::Postgres).await;
    db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        .await;
    let url = db.url();
    let project = example_project();
    let run = shiftguard(&[
        "check",
        "--migrations",
        project.to_str().expect("utf-8"),
        "--database-url",
        &url,
        "--app-revision",
        CREATE_USERS,
        "--json",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let decision = json(&run);
    assert_eq!(decision["database"]["heads"], serde_json::json!([]));
    assert_eq!(
        decision["builds"][0]["reasons"][0]["rule"],
        "missing_revision"
    );
    assert_eq!(
        decision["builds"][0]["reasons"][0]["revision"],
        CREATE_USERS
    );
    db.drop_database().await;
}
