//! The rehearsal's human narrative (one block per step) and its JUnit XML (one testcase per
//! build per step, one per migration step, one per check), for CI systems to show natively.

use std::fmt::Write as _;

use shiftguard_core::rehearsal::described;

use super::record::{Record, Step};

pub fn human(record: &Record) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rehearsal on {} from {} to {} ({} rows per table)",
        record.database,
        record.since.join(", "),
        record.heads.join(", "),
        record.rows
    );
    for filled in &record.filled {
        let _ = writeln!(
            out,
            "  filled {:<24} {:>9} rows  {:>8.0} ms",
            filled.table, filled.rows, filled.ms
        );
    }
    for step in &record.steps {
        step_block(&mut out, step);
    }
    for (name, check) in [
        ("from empty", &record.from_empty),
        ("alembic check", &record.alembic_check),
    ] {
        if let Some(check) = check {
            let _ = writeln!(
                out,
                "\n{name}: {} ({:.0} ms): {}",
                check.status, check.ms, check.detail
            );
        }
    }
    if !record.findings.is_empty() {
        let _ = writeln!(out, "\nfindings:");
        for finding in &record.findings {
            let mark = if finding.blocking { "FAIL" } else { "note" };
            let _ = writeln!(out, "  {mark}  {}", finding.message);
        }
    }
    let _ = writeln!(
        out,
        "\nrehearse: {} ({} steps, {} blocking finding(s), {:.1} s; {} Alembic runs at ~{:.0} ms start-up each)",
        if record.result == "pass" {
            "every step predicted and confirmed"
        } else {
            "FAILED"
        },
        record.steps.len().saturating_sub(1),
        record.blocking(),
        record.seconds,
        record.alembic_runs,
        record.alembic_startup_ms
    );
    out
}

fn step_block(out: &mut String, step: &Step) {
    match (&step.revision, &step.phase) {
        (Some(revision), Some(_)) => {
            let _ = writeln!(
                out,
                "\nstep {}  {revision}  {}  ({})",
                step.number,
                step.message.as_deref().unwrap_or(""),
                phase_text(step)
            );
        }
        _ => {
            let _ = writeln!(out, "\nstep 0  the starting point (--since)");
        }
    }
    let _ = writeln!(
        out,
        "  alembic   {:.0} ms{}",
        step.alembic_ms,
        step.error
            .as_ref()
            .map(|e| format!("  FAILED: {e}"))
            .unwrap_or_default()
    );
    if let Some(strongest) = step.locks.first() {
        let others = step.locks.len() - 1;
        let _ = writeln!(
            out,
            "  locks     {} on {} for {:.0} ms{}",
            strongest.mode,
            strongest.table,
            strongest.held_ms,
            if others > 0 {
                format!(" (+{others} weaker)")
            } else {
                String::new()
            }
        );
    }
    for backfill in &step.backfills {
        match &backfill.error {
            None if backfill.rows == 0 => {
                let _ = writeln!(out, "  backfill  {}: nothing pending", backfill.name);
            }
            None => {
                let _ = writeln!(
                    out,
                    "  backfill  {}: {} rows in {:.0} ms ({:.0} rows/s)",
                    backfill.name, backfill.rows, backfill.ms, backfill.rows_per_second
                );
            }
            Some(error) => {
                let _ = writeln!(out, "  backfill  {}: FAILED: {error}", backfill.name);
            }
        }
    }
    for app in &step.apps {
        let _ = writeln!(
            out,
            "  build {}  {:<7}  tests {:<6} {:>6.0} ms  {}",
            app.build,
            if app.fits { "fits" } else { "refused" },
            if app.passed { "pass" } else { "fail" },
            app.ms,
            app.outcome
        );
        // A failure the rule did not predict: the lines that say why, not only the last one.
        if app.outcome.is_error() {
            for line in &app.error_lines {
                let _ = writeln!(out, "    | {line}");
            }
        }
    }
}

fn phase_text(step: &Step) -> String {
    match (step.phase.as_deref(), step.phase_source) {
        (Some(phase), Some(source)) => shiftguard_core::Phase::parse(phase)
            .map_or_else(|| phase.to_owned(), |p| described(p, source)),
        _ => String::new(),
    }
}

/// Escaped for XML 1.0, which has no place for control characters (a test's ANSI colours).
fn xml(text: &str) -> String {
    text.replace(|c: char| c.is_control() && !matches!(c, '\n' | '\t'), "")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One testsuite: a testcase per migration step, per build per step, per check.
pub fn junit(record: &Record) -> String {
    let mut cases = String::new();
    let mut tests = 0;
    let mut failures = 0;
    let mut case =
        |name: String, classname: &str, ms: f64, failure: Option<String>, output: &str| {
            tests += 1;
            let _ = write!(
                cases,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\">",
                xml(&name),
                xml(classname),
                ms / 1e3
            );
            if let Some(message) = failure {
                failures += 1;
                let _ = write!(
                    cases,
                    "<failure message=\"{}\">{}</failure>",
                    xml(&message),
                    xml(output)
                );
            } else if !output.is_empty() {
                let _ = write!(cases, "<system-out>{}</system-out>", xml(output));
            }
            cases.push_str("</testcase>\n");
        };
    for step in &record.steps {
        let at = step.revision.as_deref().unwrap_or("start");
        let step_findings: Vec<&str> = record
            .findings
            .iter()
            .filter(|f| {
                f.blocking && f.step == Some(step.number) && matches!(f.kind, "lock" | "backfill")
            })
            .map(|f| f.message.as_str())
            .collect();
        let failure = step
            .error
            .clone()
            .or_else(|| (!step_findings.is_empty()).then(|| step_findings.join("; ")));
        case(
            format!("step {} {at}: migrate", step.number),
            "rehearse.migrations",
            step.alembic_ms,
            failure,
            "",
        );
        for app in &step.apps {
            let failure = app.outcome.is_error().then(|| {
                app.finding
                    .clone()
                    .unwrap_or_else(|| app.outcome.to_string())
            });
            case(
                format!("step {} {at}: build {}", step.number, app.build),
                &format!("rehearse.build.{}", app.build),
                app.ms,
                failure,
                &app.output,
            );
        }
    }
    for (name, check) in [
        ("from empty", &record.from_empty),
        ("alembic check", &record.alembic_check),
    ] {
        if let Some(check) = check {
            let failure = (check.status == "failed").then(|| check.detail.clone());
            case(
                name.to_owned(),
                "rehearse.checks",
                check.ms,
                failure,
                &check.detail,
            );
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"shiftguard rehearse\" tests=\"{tests}\" failures=\"{failures}\" time=\"{:.3}\">\n{cases}  </testsuite>\n</testsuites>\n",
        record.seconds
    )
}

/// A CI summary: the verdict, a row per step with each build's outcome in its column (the
/// builds × steps grid), the from-empty checks, then the findings.
pub fn markdown(record: &Record) -> String {
    use crate::markdown::{cell, code, table};
    let mut builds: Vec<&str> = Vec::new();
    for app in record.steps.iter().flat_map(|s| &s.apps) {
        if !builds.contains(&app.build.as_str()) {
            builds.push(&app.build);
        }
    }
    let mut header = vec!["Step", "Revision", "Phase", "Alembic"];
    let columns: Vec<String> = builds
        .iter()
        .map(|b| format!("build {}", code(b)))
        .collect();
    header.extend(columns.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = record
        .steps
        .iter()
        .map(|step| {
            let mut row = vec![
                step.number.to_string(),
                step.revision.as_deref().map_or("start".to_owned(), code),
                cell(&phase_text(step)),
                match &step.error {
                    Some(error) => format!(":x: {}", cell(error)),
                    None => format!("{:.0} ms", step.alembic_ms),
                },
            ];
            for build in &builds {
                row.push(match step.apps.iter().find(|a| a.build == *build) {
                    Some(app) if app.outcome.is_error() => format!(":x: **{}**", app.outcome),
                    Some(app) => app.outcome.to_string(),
                    None => String::new(),
                });
            }
            row
        })
        .collect();
    let mut out = format!(
        "### shiftguard rehearse: {}\n\n{} from {} to {} ({} rows per table): {} step{}, {} blocking finding{}\n\n{}",
        if record.result == "pass" {
            "every step predicted and confirmed"
        } else {
            "FAILED"
        },
        cell(&record.database),
        cell(&record.since.join(", ")),
        cell(&record.heads.join(", ")),
        record.rows,
        record.steps.len().saturating_sub(1),
        if record.steps.len() == 2 { "" } else { "s" },
        record.blocking(),
        if record.blocking() == 1 { "" } else { "s" },
        table(&header, &rows)
    );
    for (name, check) in [
        ("From empty", &record.from_empty),
        ("alembic check", &record.alembic_check),
    ] {
        if let Some(check) = check {
            let _ = write!(
                out,
                "\n{name}: {} ({})\n",
                check.status,
                cell(&check.detail)
            );
        }
    }
    if !record.findings.is_empty() {
        out.push_str("\n**Findings**\n\n");
        for finding in &record.findings {
            let mark = if finding.blocking {
                ":x:"
            } else {
                ":information_source:"
            };
            let _ = writeln!(out, "- {mark} {}", cell(&finding.message));
        }
    }
    out
}
