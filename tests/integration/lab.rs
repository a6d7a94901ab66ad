//! `shiftguard lab`: the whole release rehearsed by the real binary — on its default embedded
//! SQLite file, and on the real PostgreSQL and MariaDB servers — asserting what each stage
//! decided, not only the exit code.

use serde_json::Value;

use crate::support::{ALL_KINDS, Kind, TestDatabase, json, shiftguard};

/// The gates recorded in `stage`, as (gate, verdict).
fn gates_of(record: &Value, stage: u64) -> Vec<(String, String)> {
    gates_where(record, |g| g["stage"] == stage)
}

/// The failing gates of the decision named `decision`.
fn failing_in(record: &Value, decision: &str) -> Vec<String> {
    gates_where(record, |g| {
        g["decision"] == decision && g["verdict"] == "fail"
    })
    .into_iter()
    .map(|(gate, _)| gate)
    .collect()
}

fn gates_where(record: &Value, keep: impl Fn(&Value) -> bool) -> Vec<(String, String)> {
    record["gates"]
        .as_array()
        .expect("gates")
        .iter()
        .filter(|g| keep(g))
        .map(|g| {
            (
                g["gate"].as_str().expect("gate").to_owned(),
                g["verdict"].as_str().expect("verdict").to_owned(),
            )
        })
        .collect()
}

/// What every rehearsal must show, whatever the database.
fn assert_the_story(record: &Value) {
    assert_eq!(record["result"], "pass", "{record:#}");
    let stages = record["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 5);
    for stage in stages {
        assert_eq!(stage["ok"], true, "{stage:#}");
    }
    // Stage 3: the premature flag-on release and the premature contract were both blocked, each
    // for the reason the doctrine gives.
    assert_eq!(
        failing_in(record, "pre-traffic gate (target: v2 with the flag on)"),
        ["backfill:users_display_name"]
    );
    assert_eq!(
        failing_in(record, "contract gate (172e330d1de0)"),
        ["live:users-api:1", "backfill:users_display_name"]
    );
    // Stage 4: health was judged before the 50% and the 100% steps.
    let canary = gates_of(record, 4);
    let judged = canary.iter().filter(|(g, _)| g == "health:errors").count();
    assert_eq!(judged, 2, "{canary:?}");
    let notes = stages[3]["notes"].to_string();
    assert!(notes.contains("where the checkpoint said"), "{notes}");
    // Stage 5: the contract gate failed on v1 first, then passed; v1 was refused afterwards.
    let end = gates_of(record, 5);
    let v1: Vec<&str> = end
        .iter()
        .filter(|(g, _)| g == "live:users-api:1")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        v1,
        ["fail"],
        "v1 is live only in the first contract evaluation"
    );
    assert!(stages[4]["notes"].to_string().contains("v1 cannot run"));
    // The timeline moved v2 from 0 to 100% and the backfill to 100%.
    let timeline = record["timeline"].as_array().expect("timeline");
    let last = timeline.last().expect("samples");
    assert_eq!(last["weights"][1], 1.0);
    assert_eq!(last["backfill_percent"], 100.0);
    assert!(timeline.iter().any(|s| s["weights"][1] == 0.1));
}

#[test]
fn the_lab_rehearses_a_release_on_an_embedded_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("lab.html");
    let report_arg = report.to_str().expect("utf-8");
    let run = shiftguard(&["lab", "--rows", "5000", "--json", "--report", report_arg]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_the_story(&json(&run));
    let html = std::fs::read_to_string(&report).expect("report written");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg") && html.contains("polyline class=\"v2\""));
    assert!(html.contains("circle") && html.contains("class=\"fail\""));
    assert!(
        !html.contains("<script") && !html.contains("http"),
        "self-contained"
    );

    // The narrative names every stage and ends with the verdict.
    let narrative = shiftguard(&["lab", "--rows", "2000"]);
    assert_eq!(narrative.code, 0, "{}", narrative.stderr);
    assert!(
        narrative
            .stdout
            .contains("fail         backfill:users_display_name"),
        "{}",
        narrative.stdout
    );
    assert!(narrative.stdout.contains("backfill [") && narrative.stdout.contains("KILLED"));
    assert!(
        !narrative.stdout.contains("   NOT "),
        "{}",
        narrative.stdout
    );
    assert!(
        narrative
            .stdout
            .contains("lab: every stage behaved as the doctrine says")
    );

    let bad = shiftguard(&["lab", "--rows", "10"]);
    assert_eq!(bad.code, 2);
    assert!(
        bad.stderr.contains("--rows must be at least 1000"),
        "{}",
        bad.stderr
    );
}

#[tokio::test]
async fn the_lab_runs_on_postgresql_and_mariadb() {
    for kind in ALL_KINDS.into_iter().filter(|k| *k != Kind::Sqlite) {
        let database = TestDatabase::create(kind).await;
        let url = database.url();
        let run = shiftguard(&["lab", "--rows", "3000", "--json", "--database-url", &url]);
        assert_eq!(run.code, 0, "{kind:?}: {}{}", run.stdout, run.stderr);
        assert_the_story(&json(&run));
        database.drop_database().await;
    }
}

/// The missing-index variant, on the databases that keep statement statistics: v2 finds users
/// by an unindexed column; at 10% its errors and latency pass, and the per-version database
/// gates fail it with the numbers, so the canary stops there. SQLite is refused.
#[tokio::test]
async fn the_missing_index_variant_stops_the_canary_at_ten_percent() {
    for kind in ALL_KINDS.into_iter().filter(|k| *k != Kind::Sqlite) {
        let database = TestDatabase::create(kind).await;
        if kind == Kind::Postgres {
            database
                .execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .await;
        }
        let url = database.url();
        let args = ["lab", "--variant", "missing-index", "--rows", "20000"];
        let run = shiftguard(&[&args[..], &["--json", "--database-url", &url]].concat());
        assert_eq!(run.code, 0, "{kind:?}: {}{}", run.stdout, run.stderr);
        let record = json(&run);
        let stages = record["stages"].as_array().expect("stages");
        assert_eq!(
            stages.len(),
            4,
            "{kind:?}: the story ends at the stopped canary"
        );
        let notes = stages[3]["notes"].as_array().expect("notes");
        let stopped = notes[1].as_str().expect("a note");
        assert!(
            stopped.starts_with("the canary stayed at 10%: database:")
                && stopped.contains("x version 1's"),
            "{kind:?}: {stopped}"
        );
        let before_50: Vec<(&str, &str)> = record["gates"]
            .as_array()
            .expect("gates")
            .iter()
            .filter(|g| g["decision"] == "gates before v2 -> 50%")
            .map(|g| {
                (
                    g["gate"].as_str().expect("gate"),
                    g["verdict"].as_str().expect("verdict"),
                )
            })
            .collect();
        for health in ["health:errors", "health:p95", "health:p99"] {
            assert!(
                before_50.contains(&(health, "pass")),
                "{kind:?}: {before_50:?}"
            );
        }
        let work = match kind {
            Kind::Postgres => "database:blocks-per-call",
            _ => "database:rows-examined-per-call",
        };
        assert!(
            before_50.contains(&(work, "fail")),
            "{kind:?}: {before_50:?}"
        );
        database.drop_database().await;
    }
    let refused = shiftguard(&["lab", "--variant", "missing-index"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("--variant missing-index needs --database-url of PostgreSQL"),
        "{}",
        refused.stderr
    );
}
