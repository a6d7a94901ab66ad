//! The operations rules on revision files written as real projects write them (autogenerate's
//! forms included): precise negatives first, since the lint runs on histories it has never seen.

use std::collections::BTreeSet;

use super::*;
use crate::schema::scan::load_project;

/// Production is a1 (a `users` table); `release` follows it in a line: (id, declarations, body).
fn lint(release: &[(&str, &str, &str)], options: Options) -> BTreeSet<&'static str> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = vec![(
        "a1",
        "",
        "    op.create_table('users', sa.Column('id', sa.Integer(), nullable=False), sa.Column('email', sa.String(length=200), nullable=True), sa.PrimaryKeyConstraint('id'))",
    )];
    files.extend_from_slice(release);
    let mut parent = "None".to_owned();
    for (id, declarations, body) in &files {
        let source = format!(
            "from alembic import op\nimport sqlalchemy as sa\n\nrevision = '{id}'\ndown_revision = {parent}\n{declarations}\n\ndef upgrade():\n{body}\n"
        );
        std::fs::write(dir.path().join(format!("{id}_x.py")), source).expect("write");
        parent = format!("'{id}'");
    }
    let project = load_project(dir.path()).expect("loads");
    let since = vec![project.graph.index_of("a1").expect("a1")];
    let scope = Scope::new(&project.graph, since);
    let findings = lint_operations(&project, &scope, &options);
    let findings = finish(&project, &scope, findings, |rule| {
        rule_ran(rule, &scope, &options, false)
    })
    .expect("finish");
    findings.iter().map(|f| f.rule.code).collect()
}

fn codes(list: &[&'static str]) -> BTreeSet<&'static str> {
    list.iter().copied().collect()
}

#[test]
fn autogenerate_forms_are_read_without_false_positives() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "batch mode names its index with batch_op.f()",
            "    with op.batch_alter_table('users', schema=None) as batch_op:\n        batch_op.create_index(batch_op.f('ix_users_email'), ['email'], unique=False)",
            &["SG301"],
        ),
        (
            "a new table and its index",
            "    op.create_table('teams', sa.Column('id', sa.Integer(), nullable=False), sa.Column('name', sa.String(), nullable=False), sa.PrimaryKeyConstraint('id'))\n    op.create_index(op.f('ix_teams_name'), 'teams', ['name'], unique=False)",
            &[],
        ),
        (
            "a generated NOT NULL column fills itself",
            "    op.add_column('users', sa.Column('seq', sa.BigInteger(), sa.Identity(), nullable=False))",
            &[],
        ),
        (
            "the autocommit block through a name",
            "    ctx = op.get_context()\n    with ctx.autocommit_block():\n        op.create_index('ix_e', 'users', ['email'], postgresql_concurrently=True)",
            &[],
        ),
        (
            "keyword arguments",
            "    op.add_column(table_name='users', column=sa.Column('age', sa.Integer(), nullable=False))",
            &["SG107"],
        ),
        (
            "a DO block's DELETE is not a statement of the migration",
            "    op.execute(\"DO $$ BEGIN DELETE FROM users; END $$\")",
            &["SG110"],
        ),
        (
            "a trigger function with semicolons and a session setting",
            "    op.execute(\"SET lock_timeout = '2s'\")\n    op.execute(\"CREATE FUNCTION touch() RETURNS trigger AS $$ BEGIN NEW.x = now(); RETURN NEW; END; $$ LANGUAGE plpgsql\")",
            &[],
        ),
        (
            "table names differ in case only",
            "    op.create_table('UserEvent', sa.Column('id', sa.Integer(), primary_key=True))\n    op.execute('UPDATE \"UserEvent\" SET id = id')",
            &[],
        ),
        (
            "a column renamed on a table this revision creates",
            "    op.create_table('teams', sa.Column('id', sa.Integer(), primary_key=True), sa.Column('nm', sa.Text()))\n    op.alter_column('teams', 'nm', new_column_name='name')",
            &[],
        ),
    ];
    for (name, body, expected) in cases {
        assert_eq!(
            lint(&[("b2", "", body)], Options::default()),
            codes(expected),
            "{name}"
        );
    }
}

#[test]
fn not_null_needs_evidence_that_nothing_is_null() {
    let alter = "    op.alter_column(table_name='users', column_name='email', nullable=False)";
    assert_eq!(
        lint(&[("b2", "", alter)], Options::default()),
        codes(&["SG108"])
    );
    let backfilled = Options {
        backfilled: vec![("USERS".into(), vec!["email".into()])],
        ..Options::default()
    };
    assert_eq!(lint(&[("b2", "", alter)], backfilled), codes(&[]));
    // A column added with a server default holds no NULLs; the later NOT NULL is safe (the
    // contract is declared tolerated by production: no SG103 either).
    let with_default = [
        (
            "b2",
            "",
            "    op.add_column('users', sa.Column('status', sa.String(), server_default='active'))",
        ),
        (
            "c3",
            "shiftguard_phase = 'contract'\nshiftguard_requires_app_at_least = 'a1'",
            "    op.alter_column('users', 'status', nullable=False)",
        ),
    ];
    assert_eq!(lint(&with_default, Options::default()), codes(&[]));
}

#[test]
fn declared_tolerance_and_rules_that_did_not_run() {
    // Drop + add of the same type, but the drop is declared tolerated by production.
    let tolerated = [
        (
            "b2",
            "",
            "    op.add_column('users', sa.Column('mail', sa.String(200)))",
        ),
        (
            "c3",
            "shiftguard_phase = 'contract'\nshiftguard_requires_app_at_least = 'a1'",
            "    op.drop_column('users', 'email')",
        ),
    ];
    assert_eq!(lint(&tolerated, Options::default()), codes(&[]));
    // Without the declaration: a rename in disguise (and not also SG103).
    let untolerated = [
        tolerated[0],
        ("c3", "", "    op.drop_column('users', 'email')"),
    ];
    assert_eq!(lint(&untolerated, Options::default()), codes(&["SG104"]));
    // A disabled SQL rule when the SQL layer did not run is not "unused"; SG301 on MySQL neither.
    let disabled = [(
        "b2",
        "shiftguard_lint_disable = ['SG503', 'SG301']",
        "    op.create_index('ix', 'users', ['email'])",
    )];
    let mysql = Options {
        dialect: Some(Dialect::Mysql),
        ..Options::default()
    };
    assert_eq!(lint(&disabled, mysql), codes(&[]));
    assert_eq!(lint(&disabled, Options::default()), codes(&[]));
    // A table dropped and created again later is not "new" for the drop.
    let recreated = [
        (
            "b2",
            "",
            "    op.add_column('users', sa.Column('age', sa.Integer()))",
        ),
        ("c3", "", "    op.drop_table('users')"),
        (
            "d4",
            "",
            "    op.create_table('users', sa.Column('id', sa.Integer(), primary_key=True))",
        ),
    ];
    assert_eq!(lint(&recreated, Options::default()), codes(&["SG103"]));
}
