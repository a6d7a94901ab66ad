//! `shiftguard lint` on real Alembic projects: one hazard per project (and precise negatives, a
//! clean project with no findings at all), through both layers — the operations rules and squawk
//! over the SQL the real Alembic renders offline for PostgreSQL. Golden files pin the three output
//! formats; the SARIF output is validated against the SARIF 2.1.0 schema.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::support::{AlembicProject, Run, alembic_binary, assert_golden, json, repo_root};

/// Offline rendering only needs the dialect; no server is contacted.
const POSTGRES_URL: &str = "postgresql+psycopg://app@127.0.0.1/none";

/// The production schema every hazard project starts from (revision a1, the `--since`).
const BASE: &str = "    op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('email', sa.String(200)), sa.Column('full_name', sa.String(200)))";

/// A helper that builds SQL at run time (Alembic's offline rendering calls it).
const BUILD_STATEMENT: &str = "def build_statement():\n    return 'SELECT 1'\n";

/// A project whose production head is a1 (BASE) and whose release is `release`: (id, upgrade
/// body, module-level declarations).
fn project(release: &[(&str, &str, &str)]) -> AlembicProject {
    let project = AlembicProject::init();
    project.revision("a1", &[]);
    project.set_upgrade("a1", BASE);
    for (id, body, declarations) in release {
        project.revision(id, &[]);
        project.set_upgrade(id, body);
        if !declarations.is_empty() {
            declare(&project, id, declarations);
        }
    }
    project
}

/// Adds module-level lines after the header of revision `id`.
fn declare(project: &AlembicProject, id: &str, lines: &str) {
    let file = project.file_of(id);
    let source = std::fs::read_to_string(&file).expect("read revision");
    let anchor = "depends_on: Union[str, Sequence[str], None] = None\n";
    assert!(source.contains(anchor), "template changed");
    let source = source.replacen(anchor, &format!("{anchor}{lines}\n"), 1);
    std::fs::write(file, source).expect("write revision");
}

/// Runs `shiftguard lint` in the project directory, the SQL rendered for PostgreSQL.
fn lint_in(dir: &Path, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_shiftguard"))
        .arg("lint")
        .args(["--migrations", "."])
        .args(args)
        .current_dir(dir)
        .env("SHIFTGUARD_ALEMBIC", alembic_binary())
        .env("SQLALCHEMY_URL", POSTGRES_URL)
        .env_remove("NO_COLOR")
        .output()
        .expect("run shiftguard lint")
        .into()
}

/// The codes reported, and the lint's JSON record.
fn codes(dir: &Path, args: &[&str]) -> (BTreeSet<String>, serde_json::Value, Run) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let run = lint_in(dir, &all);
    let record = json(&run);
    let found = record["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["code"].as_str().expect("code").to_owned())
        .collect();
    (found, record, run)
}

fn set(codes: &[&str]) -> BTreeSet<String> {
    codes.iter().map(|c| (*c).to_owned()).collect()
}

/// Each hazard alone in a release after a1, and the precise negatives beside it: (case, release,
/// extra arguments, expected codes, expected exit code).
#[test]
fn each_rule_fires_on_its_hazard_and_only_there() {
    let autocommit_index = "    with op.get_context().autocommit_block():\n        op.create_index('ix_users_email', 'users', ['email'], postgresql_concurrently=True)";
    let cases: &[Case] = &[
        (
            "SG101 declared expand, drops a column",
            &[(
                "b2",
                "    op.drop_column('users', 'email')",
                "shiftguard_phase = \"expand\"",
            )],
            &[],
            &["SG101"],
            1,
        ),
        (
            "SG102 one revision expands and contracts",
            &[(
                "b2",
                "    op.add_column('users', sa.Column('age', sa.Integer()))\n    op.drop_column('users', 'email')",
                "",
            )],
            &[],
            &["SG102"],
            1,
        ),
        (
            "SG103 contract with its expand in one release",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('nickname', sa.Text()))",
                    "",
                ),
                ("c3", "    op.drop_column('users', 'full_name')", ""),
            ],
            &[],
            &["SG103"],
            1,
        ),
        (
            "SG103 negative: the contract declares the running build tolerates it",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('nickname', sa.Text()))",
                    "",
                ),
                (
                    "c3",
                    "    op.drop_column('users', 'full_name')",
                    "shiftguard_phase = \"contract\"\nshiftguard_requires_app_at_least = \"a1\"",
                ),
            ],
            &[],
            &[],
            0,
        ),
        (
            "SG104 drop + add of the same type across the release",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('display_name', sa.String(length=200)))",
                    "",
                ),
                ("c3", "    op.drop_column('users', 'full_name')", ""),
            ],
            &[],
            &["SG104"],
            1,
        ),
        (
            "SG105 alter_column(new_column_name=...)",
            &[(
                "b2",
                "    op.alter_column('users', 'full_name', new_column_name='name')",
                "",
            )],
            &[],
            &["SG105"],
            1,
        ),
        (
            "SG106 rename_table",
            &[("b2", "    op.rename_table('users', 'accounts')", "")],
            &[],
            &["SG106"],
            1,
        ),
        (
            "SG107 NOT NULL column without default on an existing table",
            &[(
                "b2",
                "    op.add_column('users', sa.Column('age', sa.Integer(), nullable=False))",
                "",
            )],
            &[],
            &["SG107"],
            1,
        ),
        (
            "SG107 negative: server_default, or a table the release creates (same or earlier revision)",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('age', sa.Integer(), nullable=False, server_default='0'))\n    op.create_table('teams', sa.Column('id', sa.Integer(), primary_key=True))\n    op.add_column('teams', sa.Column('name', sa.Text(), nullable=False))",
                    "",
                ),
                (
                    "c3",
                    "    op.add_column('teams', sa.Column('slug', sa.Text(), nullable=False))",
                    "",
                ),
            ],
            &[],
            &[],
            0,
        ),
        (
            "SG108 NOT NULL on an existing column nothing filled",
            &[(
                "b2",
                "    op.alter_column('users', 'email', existing_type=sa.String(200), nullable=False)",
                "",
            )],
            &[],
            &["SG108"],
            1,
        ),
        (
            "SG108 negative: a data revision filled it first, the running build always writes it (the SQL layer still warns of the lock)",
            &[
                (
                    "b2",
                    "    op.execute(\"UPDATE users SET email = 'x' WHERE email IS NULL\")",
                    "",
                ),
                (
                    "c3",
                    "    op.alter_column('users', 'email', existing_type=sa.String(200), nullable=False)",
                    "shiftguard_phase = \"contract\"\nshiftguard_requires_app_at_least = \"a1\"",
                ),
            ],
            &[],
            &["SG502"],
            0,
        ),
        (
            "SG301 index on an existing table, not concurrent",
            &[(
                "b2",
                "    op.create_index('ix_users_email', 'users', ['email'])",
                "",
            )],
            &[],
            &["SG301"],
            1,
        ),
        (
            "SG301 negative: concurrent in an autocommit block",
            &[("b2", autocommit_index, "")],
            &[],
            &[],
            0,
        ),
        (
            "SG301 negative: MySQL builds indexes online (and squawk is PostgreSQL's)",
            &[(
                "b2",
                "    op.create_index('ix_users_email', 'users', ['email'])",
                "",
            )],
            &["--dialect", "mysql"],
            &[],
            0,
        ),
        (
            "SG302 concurrent index inside the migration's transaction",
            &[(
                "b2",
                "    op.create_index('ix_users_email', 'users', ['email'], postgresql_concurrently=True)",
                "",
            )],
            &[],
            &["SG302"],
            1,
        ),
        (
            "SG401 UPDATE of every row",
            &[(
                "b2",
                "    op.execute('UPDATE users SET full_name = email')",
                "",
            )],
            &[],
            &["SG401"],
            1,
        ),
        (
            "SG402 data change of a large table after its expand in one release",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('nickname', sa.Text()))",
                    "",
                ),
                (
                    "c3",
                    "    op.execute('UPDATE users SET nickname = full_name WHERE nickname IS NULL')",
                    "",
                ),
            ],
            &["--config", "large.toml"],
            &["SG402"],
            1,
        ),
        (
            "SG402 negative: the table is not configured large",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('nickname', sa.Text()))",
                    "",
                ),
                (
                    "c3",
                    "    op.execute('UPDATE users SET nickname = full_name WHERE nickname IS NULL')",
                    "",
                ),
            ],
            &[],
            &[],
            0,
        ),
        (
            "SG109 tolerance declared on an expand",
            &[(
                "b2",
                "    op.add_column('users', sa.Column('age', sa.Integer()))",
                "shiftguard_requires_app_at_least = \"a1\"",
            )],
            &[],
            &["SG109"],
            1,
        ),
        (
            "SG110 SQL built at run time (a warning: exit 0)",
            &[("b2", "    op.execute(build_statement())", BUILD_STATEMENT)],
            &[],
            &["SG110"],
            0,
        ),
        (
            "SG110 with --deny warnings fails",
            &[("b2", "    op.execute(build_statement())", BUILD_STATEMENT)],
            &["--deny", "warnings"],
            &["SG110"],
            1,
        ),
        (
            "SG001 a disable that disables nothing; a disable by name that works",
            &[
                (
                    "b2",
                    "    op.add_column('users', sa.Column('age', sa.Integer()))",
                    "shiftguard_lint_disable = [\"SG301\"]",
                ),
                (
                    "c3",
                    "    op.create_index('ix_users_email', 'users', ['email'])",
                    "shiftguard_lint_disable = [\"index-not-concurrent\"]",
                ),
            ],
            &[],
            &["SG001"],
            0,
        ),
        (
            "SG503 squawk: an index in raw SQL, mapped back to its revision",
            &[(
                "b2",
                "    op.execute('CREATE INDEX ix_raw ON users (email)')",
                "",
            )],
            &[],
            &["SG503"],
            1,
        ),
        (
            "SG505/SG506 squawk: a foreign key added without NOT VALID",
            &[(
                "b2",
                "    op.create_table('teams', sa.Column('id', sa.Integer(), primary_key=True))\n    op.add_column('users', sa.Column('team_id', sa.Integer()))\n    op.create_foreign_key('fk_users_team', 'users', 'teams', ['team_id'], ['id'])",
                "",
            )],
            &[],
            &["SG505", "SG506"],
            0,
        ),
    ];
    run_cases(cases);
}

/// (case, release, extra arguments, expected codes, expected exit code).
type Case<'a> = (
    &'a str,
    &'a [(&'a str, &'a str, &'a str)],
    &'a [&'a str],
    &'a [&'a str],
    i32,
);

/// Runs each case in its own project; every mismatch is reported, not only the first.
fn run_cases(cases: &[Case]) {
    let mut failures = Vec::new();
    for (name, release, args, expected, exit) in cases {
        let project = project(release);
        std::fs::write(
            project.path().join("large.toml"),
            "[lint]\nlarge_tables = [\"users\"]\n",
        )
        .expect("write config");
        let mut all = vec!["--since", "a1"];
        all.extend_from_slice(args);
        let (found, record, run) = codes(project.path(), &all);
        if found != set(expected) || run.code != *exit {
            failures.push(format!(
                "{name}: expected {expected:?} exit {exit}, got {found:?} exit {}\n{}{}",
                run.code, run.stdout, run.stderr
            ));
            continue;
        }
        // Every finding points at a line of its revision's file that exists.
        for finding in record["findings"].as_array().expect("findings") {
            let file = project.path().join(finding["file"].as_str().expect("file"));
            let line = finding["line"].as_u64().expect("line") as usize;
            let source = std::fs::read_to_string(&file).expect("finding's file exists");
            assert!(source.lines().nth(line - 1).is_some(), "{name}: {finding}");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The SQL layer: hazards only the rendered SQL shows (raw `op.execute`, lock behaviour of DDL),
/// each mapped back to the revision that renders it.
#[test]
fn sql_layer_rules_fire_on_the_rendered_sql() {
    let raw = |sql: &'static str| -> String { format!("    op.execute({sql:?})") };
    let bodies: Vec<(&str, String, &[&str], i32)> = vec![
        ("SG501", raw("ALTER TABLE users ADD COLUMN age int NOT NULL"), &["SG501"], 1),
        ("SG504", raw("CREATE INDEX CONCURRENTLY ix_c ON users (email)"), &["SG504"], 1),
        (
            "SG507",
            "    op.alter_column('users', 'email', type_=sa.Text(), existing_type=sa.String(200))".to_owned(),
            &["SG507"],
            0,
        ),
        (
            "SG508",
            "    op.create_unique_constraint('uq_users_email', 'users', ['email'])".to_owned(),
            &["SG508"],
            0,
        ),
        ("SG509", raw("ALTER TABLE users ADD PRIMARY KEY (email)"), &["SG509"], 0),
        (
            "SG510",
            "    op.add_column('users', sa.Column('token', sa.Text(), server_default=sa.text('gen_random_uuid()')))".to_owned(),
            &["SG510"],
            0,
        ),
        ("SG511", raw("ALTER TABLE users RENAME COLUMN email TO mail"), &["SG511"], 1),
        ("SG512", raw("ALTER TABLE users RENAME TO accounts"), &["SG512"], 1),
        ("SG513", raw("DROP DATABASE other"), &["SG513"], 1),
        ("SG514", raw("TRUNCATE users CASCADE"), &["SG514"], 1),
    ];
    let releases: Vec<[(&str, &str, &str); 1]> = bodies
        .iter()
        .map(|(_, body, _, _)| [("b2", body.as_str(), "")])
        .collect();
    let cases: Vec<Case> = bodies
        .iter()
        .zip(&releases)
        .map(|((name, _, expected, exit), release)| {
            (*name, &release[..], &[][..], *expected, *exit)
        })
        .collect();
    run_cases(&cases);
}

/// A release with no hazard: nothing from either layer, and the SQL layer did run.
#[test]
fn a_clean_release_has_no_findings() {
    let project = project(&[
        (
            "b2",
            "    op.add_column('users', sa.Column('display_name', sa.Text(), nullable=True))\n    op.create_table('teams', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('name', sa.Text(), nullable=False))\n    op.create_index('ix_teams_name', 'teams', ['name'])",
            "",
        ),
        (
            "c3",
            "    with op.get_context().autocommit_block():\n        op.create_index('ix_users_display_name', 'users', ['display_name'], postgresql_concurrently=True)",
            "",
        ),
    ]);
    for since in [&["--since", "a1"][..], &[]] {
        let (found, record, run) = codes(project.path(), since);
        assert_eq!(found, BTreeSet::new(), "{}", run.stdout);
        assert_eq!(run.code, 0);
        assert_eq!(record["dialect"], "postgresql", "the SQL was rendered");
        let notes = record["notes"].as_array().expect("notes");
        assert!(
            notes
                .iter()
                .all(|n| !n.as_str().unwrap_or_default().contains("SQL layer")),
            "{notes:?}"
        );
    }
}

/// Without Alembic the lint says the SQL layer was skipped, and still runs the other layer.
#[test]
fn without_alembic_the_sql_layer_is_skipped_out_loud() {
    let project = project(&[(
        "b2",
        "    op.create_index('ix_users_email', 'users', ['email'])",
        "",
    )]);
    let run: Run = Command::new(env!("CARGO_BIN_EXE_shiftguard"))
        .args(["lint", "--migrations", ".", "--since", "a1"])
        .current_dir(project.path())
        .env("PATH", "/nonexistent")
        .env_remove("SHIFTGUARD_ALEMBIC")
        .output()
        .expect("run")
        .into();
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("SG301"), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("note: SQL layer skipped: Alembic is not installed"),
        "{}",
        run.stderr
    );
}

/// Bad input: a clear one-line error and exit 2.
#[test]
fn bad_input_is_a_clear_error() {
    let project = project(&[(
        "b2",
        "    op.add_column('users', sa.Column('age', sa.Integer()))",
        "",
    )]);
    let unknown = lint_in(project.path(), &["--since", "zzz"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.starts_with("error: --since zzz:"),
        "{}",
        unknown.stderr
    );

    declare(&project, "b2", "shiftguard_lint_disable = [\"SG999\"]");
    let unknown_rule = lint_in(project.path(), &[]);
    assert_eq!(unknown_rule.code, 2, "{}", unknown_rule.stderr);
    assert!(
        unknown_rule
            .stderr
            .contains("shiftguard_lint_disable names unknown rule `SG999`"),
        "{}",
        unknown_rule.stderr
    );

    let file = project.file_of("b2");
    std::fs::write(
        &file,
        "revision = 'b2'\ndown_revision = 'a1'\ndef upgrade(:\n    pass\n",
    )
    .expect("write");
    let syntax = lint_in(project.path(), &[]);
    assert_eq!(syntax.code, 2);
    assert_eq!(syntax.stderr.lines().count(), 1, "{}", syntax.stderr);
    assert!(
        syntax.stderr.contains("b2_b2.py:3: python syntax error"),
        "{}",
        syntax.stderr
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let run = lint_in(empty.path(), &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("no revision files (*.py)"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

/// The golden project: a rename in disguise, an index that blocks writes, and a warning.
fn golden_project() -> AlembicProject {
    project(&[
        (
            "b2",
            "    op.add_column('users', sa.Column('display_name', sa.String(200)))\n    op.create_index('ix_users_email', 'users', ['email'])",
            "",
        ),
        (
            "c3",
            "    op.drop_column('users', 'full_name')",
            "shiftguard_lint_disable = [\"SG107\"]",
        ),
    ])
}

#[test]
fn the_three_formats_match_their_golden_files_and_sarif_validates() {
    let project = golden_project();
    let human = lint_in(project.path(), &["--since", "a1", "--color", "never"]);
    assert_eq!(human.code, 1, "{}", human.stderr);
    assert_golden("lint.txt", &human.stdout);
    let coloured = lint_in(project.path(), &["--since", "a1", "--color", "always"]);
    assert!(coloured.stdout.contains("\x1b[31;1merror\x1b[0m"));

    let json_run = lint_in(project.path(), &["--since", "a1", "--format", "json"]);
    assert_eq!(json_run.code, 1);
    assert_golden("lint.json", &json_run.stdout);

    let markdown = lint_in(project.path(), &["--since", "a1", "--format", "markdown"]);
    assert_eq!(markdown.code, 1);
    assert_golden("lint.md", &markdown.stdout);

    let sarif = lint_in(project.path(), &["--since", "a1", "--format", "sarif"]);
    assert_eq!(sarif.code, 1);
    assert_golden("lint.sarif", &sarif.stdout);

    let file = project.path().join("lint.sarif");
    let schema = repo_root().join(".venv/share/sarif-schema-2.1.0.json");
    assert!(
        schema.is_file(),
        "{} missing: run scripts/python-env",
        schema.display()
    );
    // The published schema has a pattern (run.language) that ECMAScript's unicode mode rejects;
    // Python's regex dialect reads it as its authors meant.
    let validate = |log: &str| -> Run {
        std::fs::write(&file, log).expect("write sarif");
        Command::new(repo_root().join(".venv/bin/check-jsonschema"))
            .args(["--regex-variant", "python", "--schemafile"])
            .arg(&schema)
            .arg(&file)
            .output()
            .expect("run check-jsonschema")
            .into()
    };
    let validated = validate(&sarif.stdout);
    assert_eq!(
        validated.code, 0,
        "SARIF invalid:\n{}{}",
        validated.stdout, validated.stderr
    );
    // The same validation rejects a log that breaks the schema, so it can fail.
    let broken = validate(&sarif.stdout.replacen(
        "\"level\": \"error\"",
        "\"level\": \"fatal\"",
        1,
    ));
    assert_ne!(broken.code, 0, "{}", broken.stdout);
}
