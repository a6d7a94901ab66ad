//! `shiftguard rehearse` against real PostgreSQL, MariaDB and SQLite with the real Alembic CLI:
//! the example rehearsed with its three builds' own tests, a revision the rule misjudges, a
//! step Alembic cannot apply to a filled table, a blocking index build, and bad input.

use std::path::{Path, PathBuf};

use crate::support::example::*;
use crate::support::{
    AlembicProject, Kind, Run, TestDatabase, alembic_binary, example_project, json, repo_root,
    shiftguard,
};

/// The venv's Python, which has SQLAlchemy and the drivers the example builds' tests use.
fn python() -> PathBuf {
    alembic_binary().with_file_name("python")
}

fn app(build: &str, script: &Path) -> String {
    format!("--app={build}={} {}", python().display(), script.display())
}

fn rehearse(project: &Path, url: &str, since: &str, extra: &[&str]) -> Run {
    let alembic = alembic_binary();
    let mut args = vec![
        "rehearse",
        "--alembic",
        alembic.to_str().expect("utf-8 path"),
        "--migrations",
        project.to_str().expect("utf-8 path"),
        "--database-url",
        url,
        "--since",
        since,
    ];
    args.extend_from_slice(extra);
    shiftguard(&args)
}

fn outcomes(record: &serde_json::Value, build: &str) -> Vec<String> {
    record["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| {
            step["apps"]
                .as_array()
                .expect("apps")
                .iter()
                .find(|a| a["build"] == build)
                .map(|a| a["outcome"].as_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[tokio::test]
async fn the_example_is_rehearsed_and_every_step_confirmed_on_each_database() {
    let tests = repo_root().join("infra/example/app_tests");
    let config = example_project().join("shiftguard.toml");
    for kind in [Kind::Postgres, Kind::MariaDb, Kind::Sqlite] {
        let db = TestDatabase::create(kind).await;
        let report = tempfile::tempdir().expect("tempdir");
        let html = report.path().join("rehearsal.html");
        let run = rehearse(
            &example_project(),
            &db.sqlalchemy_url(),
            CREATE_USERS,
            &[
                &app(CREATE_USERS, &tests.join("v1.py")),
                &app(ADD_DISPLAY_NAME, &tests.join("v2.py")),
                &app(MERGE, &tests.join("v3.py")),
                "--rows",
                "300",
                "--config",
                config.to_str().expect("path"),
                "--report",
                html.to_str().expect("path"),
                "--json",
            ],
        );
        assert_eq!(run.code, 0, "{kind:?}: {}\n{}", run.stdout, run.stderr);
        let record = json(&run);
        assert_eq!(record["result"], "pass", "{record}");
        assert_eq!(
            record["steps"].as_array().map(Vec::len),
            Some(6),
            "{record}"
        );
        assert_eq!(record["filled"][0]["table"], "users");
        assert_eq!(record["filled"][0]["rows"], 300);
        // v1 runs until the contract drops the column it writes: predicted and confirmed.
        assert_eq!(
            outcomes(&record, CREATE_USERS),
            [
                "fits_passes",
                "fits_passes",
                "fits_passes",
                "fits_passes",
                "fits_passes",
                "refused_fails"
            ]
        );
        // v2 needs the expand; the contract is not for it either.
        let v2 = outcomes(&record, ADD_DISPLAY_NAME);
        assert_eq!(v2[0], "refused_fails");
        assert_eq!(v2[5], "refused_fails");
        assert!(v2[1..5].iter().all(|o| o == "fits_passes"), "{v2:?}");
        // v3 writes audit_log: fails before it exists, fits from the merge on.
        let v3 = outcomes(&record, MERGE);
        assert_eq!(v3[..2], ["refused_fails", "refused_fails"]);
        assert_eq!(v3[4..], ["fits_passes", "fits_passes"]);
        assert!(
            record["findings"]
                .as_array()
                .expect("findings")
                .iter()
                .all(|f| f["blocking"] == false),
            "{record}"
        );
        // The backfill ran as soon as display_name existed, over every synthetic row.
        let expand = &record["steps"][1];
        assert_eq!(expand["revision"], ADD_DISPLAY_NAME);
        assert_eq!(expand["backfills"][0]["name"], "users_display_name");
        assert_eq!(expand["backfills"][0]["rows"], 300);
        assert_eq!(record["from_empty"]["status"], "ok");
        assert_eq!(record["alembic_check"]["status"], "skipped");
        if kind == Kind::Postgres {
            // The concurrent index build takes no lock that blocks writes.
            let index = &record["steps"][3];
            assert_eq!(index["revision"], INDEX_EMAIL);
            assert!(index["lock_samples"].as_u64() > Some(0), "{index}");
            assert!(
                index["locks"]
                    .as_array()
                    .expect("locks")
                    .iter()
                    .all(|l| l["mode"] != "SHARE"),
                "{index}"
            );
        }
        let page = std::fs::read_to_string(&html).expect("report written");
        assert!(page.contains("every step predicted and confirmed") && page.contains(MERGE));
        db.drop_database().await;
    }
}

/// A project: revision `items` creates the table `items`, then each `(id, body)` revision in order.
fn project(revisions: &[(&str, &str)]) -> AlembicProject {
    let project = AlembicProject::init();
    project.revision("items", &[]);
    project.set_upgrade(
        "items",
        "    op.create_table('items', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('code', sa.String(50), nullable=False))",
    );
    let mut parent = "items";
    for (id, body) in revisions {
        project.revision(id, &["--head", parent]);
        project.set_upgrade(id, body);
        parent = id;
    }
    project
}

/// The old build's test: it writes the same code twice, as it always has (and rolls back).
fn old_build_test(dir: &Path) -> PathBuf {
    let script = dir.join("old_build.py");
    std::fs::write(
        &script,
        "import os, sys\nimport sqlalchemy as sa\nengine = sa.create_engine(os.environ['DATABASE_URL'])\ntry:\n    with engine.connect() as c:\n        t = c.begin()\n        c.execute(sa.text(\"INSERT INTO items (code) VALUES ('dup'), ('dup')\"))\n        t.rollback()\nexcept Exception as e:\n    print('old build: FAIL:', str(e).splitlines()[0]); sys.exit(1)\nprint('old build: ok')\n",
    )
    .expect("write test");
    script
}

#[tokio::test]
async fn a_revision_the_rule_calls_expand_that_breaks_the_old_build_is_named() {
    let project = project(&[(
        "uniq",
        "    op.create_unique_constraint('uq_items_code', 'items', ['code'])",
    )]);
    let test = old_build_test(project.path());
    for kind in [Kind::Postgres, Kind::MariaDb] {
        let db = TestDatabase::create(kind).await;
        let run = rehearse(
            project.path(),
            &db.sqlalchemy_url(),
            "items",
            &[&app("items", &test), "--json"],
        );
        assert_eq!(run.code, 1, "{kind:?}: {}\n{}", run.stdout, run.stderr);
        let record = json(&run);
        assert_eq!(outcomes(&record, "items"), ["fits_passes", "fits_fails"]);
        let finding = record["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .find(|f| f["kind"] == "rule")
            .unwrap_or_else(|| panic!("a rule finding: {record}"));
        let message = finding["message"].as_str().unwrap_or_default();
        assert_eq!(finding["revision"], "uniq");
        assert!(
            message
                .contains("revision uniq (expand, inferred from its operations) broke build items")
                && message.contains("declare shiftguard_phase = \"contract\""),
            "{message}"
        );
        // The human narrative says the same.
        let human = rehearse(
            project.path(),
            &fresh(&db).await,
            "items",
            &[&app("items", &test)],
        );
        assert_eq!(human.code, 1);
        assert!(human.stdout.contains("fits+FAILS"), "{}", human.stdout);
        db.drop_database().await;
    }
}

#[tokio::test]
async fn a_stock_env_py_migrates_the_database_given_not_the_one_in_alembic_ini() {
    let project = AlembicProject::init_stock();
    project.revision("items", &[]);
    project.set_upgrade(
        "items",
        "    op.create_table('items', sa.Column('id', sa.Integer(), primary_key=True))",
    );
    let decoy = project.path().join("decoy.db");
    let ini = project.path().join("alembic.ini");
    let text = std::fs::read_to_string(&ini).expect("alembic.ini");
    let text = text.replacen(
        "sqlalchemy.url = driver://user:pass@localhost/dbname",
        &format!("sqlalchemy.url = sqlite:///{}", decoy.display()),
        1,
    );
    std::fs::write(&ini, text).expect("write alembic.ini");
    let db = TestDatabase::create(Kind::Sqlite).await;
    let run = rehearse(project.path(), &db.sqlalchemy_url(), "items", &["--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        db.table_exists("items").await,
        "the database given was migrated"
    );
    assert!(!decoy.exists(), "alembic.ini's own database was left alone");
    db.drop_database().await;
}

/// The database emptied again, for a second rehearsal.
async fn fresh(db: &TestDatabase) -> String {
    db.execute("DROP TABLE IF EXISTS items").await;
    db.execute("DROP TABLE IF EXISTS alembic_version").await;
    db.sqlalchemy_url()
}

#[tokio::test]
async fn a_not_null_column_without_a_default_fails_its_step_on_a_filled_table() {
    let project = project(&[(
        "qty",
        "    op.add_column('items', sa.Column('qty', sa.Integer(), nullable=False))",
    )]);
    let db = TestDatabase::create(Kind::Postgres).await;
    let run = rehearse(
        project.path(),
        &db.sqlalchemy_url(),
        "items",
        &["--rows", "50", "--format", "junit"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .contains("<testcase name=\"step 1 qty: migrate\"")
            && run.stdout.contains("`alembic upgrade qty` failed")
            && run.stdout.contains("failures=\"1\""),
        "{}",
        run.stdout
    );
    db.drop_database().await;
    // MariaDB gives the filled rows the type's implicit default, so the step succeeds; the old
    // build's insert then fails, as the rule predicts (NOT NULL without a default: contract).
    let db = TestDatabase::create(Kind::MariaDb).await;
    let test = old_build_test(project.path());
    let run = rehearse(
        project.path(),
        &db.sqlalchemy_url(),
        "items",
        &[&app("items", &test), "--rows", "50", "--json"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let record = json(&run);
    assert_eq!(outcomes(&record, "items"), ["fits_passes", "refused_fails"]);
    assert_eq!(record["steps"][1]["phase"], "contract");
    db.drop_database().await;
}

#[tokio::test]
async fn a_blocking_index_build_is_a_lock_finding_and_the_concurrent_one_is_not() {
    let blocking = project(&[(
        "ix",
        "    op.create_index('ix_items_code', 'items', ['code'])",
    )]);
    let concurrent = project(&[(
        "ix",
        "    with op.get_context().autocommit_block():\n        op.create_index('ix_items_code', 'items', ['code'], postgresql_concurrently=True)",
    )]);
    let db = TestDatabase::create(Kind::Postgres).await;
    let args = [
        "--rows",
        "200000",
        "--lock-threshold-ms",
        "20",
        "--no-empty-check",
        "--json",
    ];
    let run = rehearse(blocking.path(), &db.sqlalchemy_url(), "items", &args);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let record = json(&run);
    let finding = &record["findings"][0];
    assert_eq!(finding["kind"], "lock", "{record}");
    let message = finding["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("revision ix held SHARE on items (200000 rows) for ")
            && message.contains("blocking writes"),
        "{message}"
    );
    let share = record["steps"][1]["locks"]
        .as_array()
        .expect("locks")
        .iter()
        .find(|l| l["mode"] == "SHARE" && l["table"] == "items")
        .cloned()
        .unwrap_or_else(|| panic!("the SHARE lock: {record}"));
    assert!(share["held_ms"].as_f64() >= Some(20.0), "{share}");

    let run = rehearse(concurrent.path(), &fresh(&db).await, "items", &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let record = json(&run);
    assert_eq!(record["findings"], serde_json::json!([]), "{record}");
    assert!(
        record["steps"][1]["locks"]
            .as_array()
            .expect("locks")
            .iter()
            .any(|l| l["mode"] == "SHARE_UPDATE_EXCLUSIVE" && l["table"] == "items"),
        "{record}"
    );
    db.drop_database().await;
}

/// env.py's `target_metadata` set to a model of `items`, with `extra` columns.
fn set_models(project: &AlembicProject, extra: &str) {
    let env = project.path().join("migrations/env.py");
    let source = std::fs::read_to_string(&env).expect("env.py");
    let models = format!(
        "import sqlalchemy as sa\ntarget_metadata = sa.MetaData()\nsa.Table('items', target_metadata, sa.Column('id', sa.Integer(), primary_key=True), sa.Column('code', sa.String(50), nullable=False){extra})"
    );
    assert!(
        source.contains("target_metadata = None"),
        "the template's env.py"
    );
    std::fs::write(env, source.replacen("target_metadata = None", &models, 1)).expect("env.py");
}

#[tokio::test]
async fn alembic_check_compares_the_models_with_the_migrated_schema() {
    // The models agree with the migrations: the check passes.
    let agrees = project(&[]);
    set_models(&agrees, "");
    let db = TestDatabase::create(Kind::Sqlite).await;
    let run = rehearse(agrees.path(), &db.sqlalchemy_url(), "items", &["--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(json(&run)["alembic_check"]["status"], "ok");
    db.drop_database().await;
    // A model column no migration creates: a finding, exit 1.
    let differs = project(&[]);
    set_models(&differs, ", sa.Column('note', sa.Text())");
    let db = TestDatabase::create(Kind::Sqlite).await;
    let run = rehearse(differs.path(), &db.sqlalchemy_url(), "items", &["--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let record = json(&run);
    assert_eq!(record["alembic_check"]["status"], "failed", "{record}");
    let detail = record["alembic_check"]["detail"]
        .as_str()
        .unwrap_or_default();
    assert!(
        detail.contains("the models and the migrated schema disagree"),
        "{detail}"
    );
    assert!(
        record["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|f| f["kind"] == "alembic_check" && f["blocking"] == true),
        "{record}"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let example = example_project();
    let db = TestDatabase::create(Kind::Sqlite).await;
    let url = db.sqlalchemy_url();
    let v1 = format!("{CREATE_USERS}=true");
    let cases = [
        ("feedface", "", "--since feedface"),
        (CREATE_USERS, "--app=d2ca87e6a2c7", "expected REV=COMMAND"),
        (
            CREATE_USERS,
            "--app=d2ca87e6a2c7=no-such-test-runner --all",
            "command not found: no-such-test-runner",
        ),
        (CREATE_USERS, "--app=nosuchrev=true", "--app nosuchrev"),
    ];
    for (since, app, expected) in cases {
        let extra: &[&str] = if app.is_empty() { &[] } else { &[app] };
        let run = rehearse(&example, &url, since, extra);
        assert_eq!(run.code, 2, "{since} {app}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(run.stderr.contains(expected), "{expected}: {}", run.stderr);
        assert!(!db.table_exists("alembic_version").await, "nothing written");
    }
    // A relative SQLite path would be a different file for Alembic and for the apps.
    let run = rehearse(&example, "sqlite:///relative.db", CREATE_USERS, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("absolute path"), "{}", run.stderr);
    // A database that is not empty is left as it is.
    db.execute("CREATE TABLE precious (id INTEGER PRIMARY KEY)")
        .await;
    let run = rehearse(&example, &url, CREATE_USERS, &[&format!("--app={v1}")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("is not empty (1 table(s): precious)"),
        "{}",
        run.stderr
    );
    assert!(!db.table_exists("alembic_version").await && !db.table_exists("users").await);
    db.drop_database().await;
}

/// The build made at the contract `drop` of the orders project: it no longer writes
/// customer_email, and raises (a traceback) when the insert fails.
fn new_build_test(dir: &Path) -> PathBuf {
    let script = dir.join("new_build.py");
    std::fs::write(
        &script,
        "import os\nimport sqlalchemy as sa\nengine = sa.create_engine(os.environ['DATABASE_URL'])\nwith engine.connect() as c:\n    t = c.begin()\n    c.execute(sa.text('INSERT INTO orders (id, customer_id) VALUES (1, 7)'))\n    t.rollback()\nprint('new build: ok')\n",
    )
    .expect("write test");
    script
}

#[tokio::test]
async fn a_build_that_needs_a_waiting_contract_shows_its_error_and_advice_that_passes_validation() {
    let project = crate::migrate::orders_project();
    let test = new_build_test(project.path());
    let db = TestDatabase::create(Kind::Postgres).await;
    let run = rehearse(
        project.path(),
        &db.sqlalchemy_url(),
        "orders",
        &[&app("drop", &test), "--no-empty-check"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    // The violation, under the build's line (not SQLAlchemy's last line alone).
    assert!(
        run.stdout.contains("fits+FAILS\n    | sqlalchemy.exc.IntegrityError: (psycopg.errors.NotNullViolation) null value in column \"customer_email\"")
            && run.stdout.contains("    | DETAIL:"),
        "{}",
        run.stdout
    );
    // The advice is what shiftguard accepts: not "declare the drop an expand".
    assert!(
        !run.stdout.contains("shiftguard_phase = \"expand\""),
        "{}",
        run.stdout
    );
    let marker = "make it optional in an expand revision before drop: `";
    let start = run
        .stdout
        .find(marker)
        .unwrap_or_else(|| panic!("{}", run.stdout))
        + marker.len();
    let call = &run.stdout[start..start + run.stdout[start..].find('`').expect("closing `")];
    assert!(
        call.starts_with("op.alter_column(\"orders\", \"customer_email\""),
        "{call}"
    );

    // Followed as printed, in the expand before the drop: `shiftguard manifest` accepts it, and
    // the rehearsal confirms every step.
    let file = project.file_of("cid");
    let source = std::fs::read_to_string(&file).expect("read cid");
    let added = "    op.add_column('orders', sa.Column('customer_id', sa.Integer()))";
    std::fs::write(
        &file,
        source.replacen(added, &format!("{added}\n    {call}"), 1),
    )
    .expect("write cid");
    let manifest = crate::support::shiftguard(&[
        "manifest",
        "--migrations",
        project.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(manifest.code, 0, "{}", manifest.stderr);
    let revisions = json(&manifest)["revisions"].clone();
    let cid = revisions
        .as_array()
        .expect("revisions")
        .iter()
        .find(|r| r["id"] == "cid")
        .expect("cid");
    assert_eq!(cid["phase"], "expand", "{cid}");
    let again = TestDatabase::create(Kind::Postgres).await;
    let run = rehearse(
        project.path(),
        &again.sqlalchemy_url(),
        "orders",
        &[
            &app("drop", &test),
            "--no-empty-check",
            "--format",
            "markdown",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // As a CI summary: the builds × steps grid (timings and the database's name vary).
    let mut summary = run
        .stdout
        .replace(&again.name.replace('_', "\\_"), "rehearsal");
    while let Some(at) = summary.find(" ms |") {
        let start = summary[..at].rfind("| ").expect("a cell") + 2;
        summary.replace_range(start..at + 3, "<ms>");
    }
    crate::support::assert_golden("rehearse.md", &summary);
    db.drop_database().await;
    again.drop_database().await;
}

#[tokio::test]
async fn a_role_that_may_not_create_the_scratch_database_stops_before_the_first_step() {
    let project = project(&[]);
    for kind in [Kind::Postgres, Kind::MariaDb] {
        let db = TestDatabase::create(kind).await;
        let role = format!(
            "sg_nocreate_{}",
            crate::support::unique_suffix().replace('-', "_")
        );
        match kind {
            Kind::Postgres => {
                db.execute(&format!("CREATE ROLE {role} LOGIN")).await;
                db.execute(&format!("ALTER DATABASE {} OWNER TO {role}", db.name))
                    .await;
                db.execute(&format!("GRANT ALL ON SCHEMA public TO {role}"))
                    .await;
            }
            _ => {
                db.execute(&format!("CREATE USER '{role}'@'%'")).await;
                db.execute(&format!("GRANT ALL ON `{}`.* TO '{role}'@'%'", db.name))
                    .await;
            }
        }
        let mut url = url::Url::parse(&db.sqlalchemy_url()).expect("url");
        url.set_username(&role).expect("user");
        let run = rehearse(project.path(), url.as_str(), "items", &[]);
        assert_eq!(run.code, 2, "{kind:?}: {}\n{}", run.stdout, run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        let scratch = format!("`{}_scratch`", db.name);
        let privilege = match kind {
            Kind::Postgres => "CREATEDB",
            _ => "CREATE and DROP privileges",
        };
        assert!(
            run.stderr
                .contains(&format!("cannot create the scratch database {scratch}"))
                && run.stderr.contains(privilege),
            "{}",
            run.stderr
        );
        assert!(!db.table_exists("alembic_version").await, "nothing written");
        // Named, and created by someone who may: the rehearsal runs, and drops it after.
        let named = format!("{}_other", db.name);
        let run = rehearse(
            project.path(),
            &db.sqlalchemy_url(),
            "items",
            &["--scratch-database", &named, "--json"],
        );
        assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
        assert_eq!(json(&run)["from_empty"]["status"], "ok");
        let left = match kind {
            Kind::Postgres => format!("SELECT count(*) FROM pg_database WHERE datname = '{named}'"),
            _ => format!(
                "SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{named}'"
            ),
        };
        assert_eq!(db.scalar(&left).await, 0, "the scratch database is dropped");
        db.drop_database().await;
        match kind {
            Kind::Postgres => crate::support::admin_postgres(&format!("DROP ROLE {role}")).await,
            _ => crate::support::admin_mysql(&format!("DROP USER '{role}'@'%'")).await,
        }
    }
}
