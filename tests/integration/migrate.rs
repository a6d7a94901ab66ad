//! `shiftguard migrate expand|contract` with the real Alembic CLI on real PostgreSQL, MariaDB
//! and SQLite (the contract gate against the AWS emulator), and the shipped workflows, which
//! must migrate through them and never with a bare `alembic upgrade`.

use crate::gates::{BACKFILL, release};
use crate::support::example::*;
use crate::support::{
    ALL_KINDS, AlembicProject, Kind, Run, TestDatabase, alembic, alembic_binary, json, repo_root,
    shiftguard,
};

/// `orders` -> (`cid` | `audit`) -> `merge` -> `drop` (a contract): the release adds
/// customer_id and an audit table on two branches, merges them, then drops customer_email.
pub(crate) fn orders_project() -> AlembicProject {
    let project = AlembicProject::init();
    project.revision("orders", &[]);
    project.set_upgrade(
        "orders",
        "    op.create_table('orders', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('customer_email', sa.String(200), nullable=False))",
    );
    project.revision("cid", &["--head", "orders"]);
    project.set_upgrade(
        "cid",
        "    op.add_column('orders', sa.Column('customer_id', sa.Integer()))",
    );
    project.revision("audit", &["--head", "orders", "--splice"]);
    project.set_upgrade(
        "audit",
        "    op.create_table('audit', sa.Column('id', sa.Integer(), primary_key=True))",
    );
    alembic(
        project.path(),
        None,
        &["merge", "--rev-id", "merge", "-m", "merge", "cid", "audit"],
    );
    project.revision("drop", &["--head", "merge"]);
    project.set_upgrade("drop", "    op.drop_column('orders', 'customer_email')");
    project
}

fn migrate(project: &AlembicProject, db: &TestDatabase, extra: &[&str]) -> Run {
    let alembic = alembic_binary();
    let mut args = vec![
        "migrate",
        "expand",
        "--alembic",
        alembic.to_str().expect("utf-8 path"),
        "--migrations",
        project.path().to_str().expect("utf-8 path"),
    ];
    let url = db.url();
    args.extend_from_slice(&["--database-url", &url]);
    args.extend_from_slice(extra);
    shiftguard(&args)
}

/// A fresh database of `kind` at the project's first revision, `orders`.
async fn at_orders(project: &AlembicProject, kind: Kind) -> TestDatabase {
    let db = TestDatabase::create(kind).await;
    alembic(
        project.path(),
        Some(&db.sqlalchemy_url()),
        &["upgrade", "orders"],
    );
    db
}

fn ids(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .expect("a list")
        .iter()
        .map(|v| {
            v.get("revision")
                .unwrap_or(v)
                .as_str()
                .expect("an id")
                .to_owned()
        })
        .collect()
}

async fn heads(db: &TestDatabase) -> Vec<String> {
    let url = shiftguard_sql::DatabaseUrl::parse(&db.url()).expect("url");
    let mut connection = shiftguard_sql::Connection::open(&url, Default::default())
        .await
        .expect("connect");
    let heads = shiftguard_sql::read_heads(&mut connection, &url, "alembic_version")
        .await
        .expect("heads");
    connection.close().await;
    heads
}

#[tokio::test]
async fn migrate_expand_applies_up_to_the_merge_and_leaves_the_contract_waiting() {
    let project = orders_project();
    for kind in ALL_KINDS {
        let db = at_orders(&project, kind).await;
        // The plan: both branches and the merge, one target; the drop waits.
        let planned = migrate(&project, &db, &["--dry-run", "--json"]);
        assert_eq!(
            planned.code, 0,
            "{kind:?}: {}{}",
            planned.stdout, planned.stderr
        );
        let plan = json(&planned);
        assert_eq!(plan["result"], "dry_run");
        assert_eq!(ids(&plan["targets"]), ["merge"]);
        let mut applies = ids(&plan["applies"]);
        assert_eq!(applies.pop().as_deref(), Some("merge"));
        applies.sort();
        assert_eq!(applies, ["audit", "cid"]);
        assert_eq!(ids(&plan["contracts"]), ["drop"]);
        assert_eq!(
            heads(&db).await,
            ["orders"],
            "{kind:?}: a dry run applies nothing"
        );
        assert!(!db.table_exists("audit").await);

        // Applied: the database ends at the merge, the dropped column is still there.
        let applied = migrate(&project, &db, &[]);
        assert_eq!(
            applied.code, 0,
            "{kind:?}: {}{}",
            applied.stdout, applied.stderr
        );
        assert!(
            applied
                .stdout
                .contains("applied 3 revision(s); heads now: merge")
                && applied.stdout.contains("waiting for the contract gate")
                && applied
                    .stdout
                    .contains("wait        drop  (contract, inferred"),
            "{}",
            applied.stdout
        );
        assert!(
            applied.stderr.contains("alembic: INFO"),
            "Alembic's log is passed on: {}",
            applied.stderr
        );
        assert_eq!(heads(&db).await, ["merge"], "{kind:?}");
        assert!(db.table_exists("audit").await);
        db.execute(
            "INSERT INTO orders (id, customer_email, customer_id) VALUES (1, 'a@example.com', 7)",
        )
        .await;

        // Again: nothing to apply, and the contract still waits.
        let again = migrate(&project, &db, &["--json"]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        let again = json(&again);
        assert_eq!(again["result"], "nothing_to_apply");
        assert!(ids(&again["applies"]).is_empty());
        assert_eq!(ids(&again["contracts"]), ["drop"]);
        assert_eq!(heads(&db).await, ["merge"]);
        db.drop_database().await;
    }
}

#[tokio::test]
async fn migrate_expand_stops_at_a_failing_revision_and_an_unknown_head_applies_nothing() {
    let project = orders_project();
    project.revision("broken", &["--head", "cid", "--splice"]);
    project.set_upgrade(
        "broken",
        "    op.execute(\"INSERT INTO orders (id) VALUES (1)\")",
    );
    let db = at_orders(&project, Kind::Postgres).await;
    let run = migrate(&project, &db, &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    // The violation itself, not SQLAlchemy's "Background on this error" line.
    assert!(
        run.stdout.contains("FAILED: `alembic upgrade ")
            && run.stdout.contains("NotNullViolation")
            && run.stdout.contains("heads now:"),
        "{}",
        run.stdout
    );
    // PostgreSQL rolled the whole upgrade back; listed as applied is what the version table
    // shows (nothing), not what was planned.
    assert_eq!(heads(&db).await, ["orders"]);
    let failed = json(&migrate(&project, &db, &["--json"]));
    assert_eq!(failed["result"], "failed");
    assert!(ids(&failed["applies"]).is_empty(), "{failed}");
    // A database at a revision the migrations do not have: exit 2, nothing applied.
    db.execute("UPDATE alembic_version SET version_num = 'feedface'")
        .await;
    let run = migrate(&project, &db, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("feedface"), "{}", run.stderr);
    assert_eq!(heads(&db).await, ["feedface"]);
    db.drop_database().await;

    // Tables but no version table (`--version-table` names another): refused before Alembic
    // runs, not migrated from the bases.
    let db = TestDatabase::create(Kind::Postgres).await;
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .await;
    let run = migrate(&project, &db, &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("no version table `alembic_version`"),
        "{}",
        run.stderr
    );
    assert!(!db.table_exists("alembic_version").await, "nothing applied");
    db.drop_database().await;
}

#[tokio::test]
async fn migrate_contract_applies_nothing_while_an_old_build_runs_and_applies_it_after() {
    // The database has every expand; version 1 was built before them, version 2 after.
    let r = release(MERGE, &[CREATE_USERS, MERGE], BACKFILL).await;
    let (v1, v2) = (r.versions[0].as_str(), r.versions[1].as_str());
    let alembic = alembic_binary();
    let alembic = alembic.to_str().expect("utf-8 path");
    let contract = [
        "migrate",
        "contract",
        "--revision",
        DROP_FULL_NAME,
        "--alembic",
        alembic,
    ];
    // Mid-shift: version 1 still takes traffic.
    r.alias("live", v1, Some((v2, 0.5))).await;
    let blocked = r.shiftguard(&contract).await;
    assert_eq!(blocked.code, 1, "{}{}", blocked.stdout, blocked.stderr);
    assert!(
        blocked.stdout.contains("result: FAIL")
            && blocked
                .stdout
                .contains("not applied: the gate did not pass"),
        "{}",
        blocked.stdout
    );
    assert!(r.db.try_raw("SELECT full_name FROM users").await.is_ok());
    assert_eq!(heads(&r.db).await, [MERGE]);

    // Nothing old is left: the gate passes and the contract is applied.
    r.alias("live", v2, None).await;
    let mut args = contract.to_vec();
    args.push("--json");
    let applied = r.shiftguard(&args).await;
    assert_eq!(applied.code, 0, "{}{}", applied.stdout, applied.stderr);
    let record = json(&applied);
    assert_eq!(record["result"], "applied");
    assert_eq!(record["gate"]["result"], "pass");
    assert_eq!(ids(&record["applied"]), [DROP_FULL_NAME]);
    assert_eq!(heads(&r.db).await, [DROP_FULL_NAME]);
    assert!(r.db.try_raw("SELECT full_name FROM users").await.is_err());

    // A manifest cannot be applied: Alembic needs the project.
    let run = shiftguard(&[
        "migrate",
        "contract",
        "--revision",
        DROP_FULL_NAME,
        "--manifest",
        "m.json",
        "--database-url",
        "sqlite:///x.db",
        "--function",
        "f",
        "--alias",
        "live",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("give --migrations DIR"),
        "{}",
        run.stderr
    );
}

/// Every `run:` of every step in the shipped workflows.
fn workflow_steps() -> Vec<(String, String, String)> {
    let dir = repo_root().join("infra/github");
    let mut steps = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("infra/github") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("workflow");
        let workflow: serde_json::Value = serde_saphyr::from_str(&text).expect("workflow YAML");
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for (job, body) in workflow["jobs"].as_object().expect("jobs") {
            for step in body["steps"].as_array().expect("steps") {
                if let Some(run) = step["run"].as_str() {
                    steps.push((file.clone(), job.clone(), run.to_owned()));
                }
            }
        }
    }
    assert!(steps.len() > 10, "the workflows were read: {steps:?}");
    steps
}

#[test]
fn no_workflow_applies_migrations_with_a_bare_alembic_upgrade() {
    let steps = workflow_steps();
    for (file, job, run) in &steps {
        // Joined continuation lines, then each shell word after `alembic`.
        let script = run.replace("\\\n", " ");
        for line in script.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let alembic = words.iter().position(|w| w.ends_with("alembic"));
            let upgrade = alembic.and_then(|at| words[at..].iter().position(|w| *w == "upgrade"));
            assert!(
                upgrade.is_none(),
                "{file}, job {job}: `{line}` applies migrations with Alembic directly: use shiftguard migrate expand|contract"
            );
        }
    }
    let runs = |file: &str, needle: &str| {
        steps
            .iter()
            .any(|(f, _, run)| f == file && run.contains(needle))
    };
    assert!(runs("deploy.yml", "shiftguard migrate expand"));
    assert!(runs("contract.yml", "shiftguard migrate contract"));
}

#[tokio::test]
async fn a_second_migrate_on_the_same_database_waits_its_turn() {
    use sqlx::Connection as _;
    let project = orders_project();
    for kind in ALL_KINDS {
        let db = at_orders(&project, kind).await;
        // Another `shiftguard migrate` holds the database: its lock, taken as it takes it.
        let holder: Box<dyn std::any::Any> = match kind {
            Kind::Postgres => {
                let mut c = sqlx::PgConnection::connect(&db.url())
                    .await
                    .expect("connect");
                sqlx::query("SELECT pg_advisory_lock(hashtextextended('shiftguard:migrate', 0))")
                    .execute(&mut c)
                    .await
                    .expect("lock");
                Box::new(c)
            }
            Kind::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&db.url())
                    .await
                    .expect("connect");
                sqlx::query(&format!(
                    "SELECT GET_LOCK('shiftguard:migrate:{}', 0)",
                    db.name
                ))
                .execute(&mut c)
                .await
                .expect("lock");
                Box::new(c)
            }
            Kind::Sqlite => {
                let path = db.url().trim_start_matches("sqlite://").to_owned();
                let file = std::fs::File::create(format!("{path}.shiftguard-migrate.lock"))
                    .expect("lock file");
                file.try_lock().expect("lock");
                Box::new(file)
            }
        };
        let waiting = migrate(&project, &db, &["--json"]);
        assert_eq!(
            waiting.code, 75,
            "{kind:?}: {}{}",
            waiting.stdout, waiting.stderr
        );
        assert_eq!(json(&waiting)["result"], "busy");
        assert!(
            waiting
                .stderr
                .contains("another `shiftguard migrate` is migrating"),
            "{}",
            waiting.stderr
        );
        assert_eq!(heads(&db).await, ["orders"], "{kind:?}: nothing applied");
        // A dry run only reads: it does not wait.
        assert_eq!(migrate(&project, &db, &["--dry-run"]).code, 0);
        drop(holder);
        let applied = migrate(&project, &db, &[]);
        assert_eq!(
            applied.code, 0,
            "{kind:?}: {}{}",
            applied.stdout, applied.stderr
        );
        assert_eq!(heads(&db).await, ["merge"]);
        db.drop_database().await;
    }
}
