//! The three renderings of a lint report: human (grouped by revision), JSON, SARIF 2.1.0.

use serde_json::{Value, json};
use shiftguard_core::lint::{Finding, Level, RULES};

use super::Report;

/// Notes go to stderr in every format, so a pipeline's log shows a skipped layer.
fn print_notes(report: &Report) {
    for note in &report.notes {
        eprintln!("note: {note}");
    }
}

pub fn list_rules() {
    for rule in RULES {
        println!(
            "{}  {:<44} {:<7} {:<10} {}\n       fix: {}",
            rule.code,
            rule.name,
            rule.level.as_str(),
            rule.layer.as_str(),
            rule.summary,
            rule.fix
        );
    }
}

pub fn human(report: &Report, color: bool) {
    let paint = |code: &str, text: &str| {
        if color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    };
    let graph = &report.project.graph;
    let mut current = None;
    for finding in &report.findings {
        if current != Some(finding.revision) {
            current = Some(finding.revision);
            let revision = graph.revision(finding.revision);
            let title = format!(
                "{} ({}, {}{})",
                report.paths[finding.revision],
                revision.id,
                revision.phase,
                revision
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            println!("{}", paint("1", &title));
        }
        let level = match finding.rule.level {
            Level::Error => paint("31;1", "error"),
            Level::Warning => paint("33;1", "warning"),
        };
        println!(
            "  {}:{} {level} {} {}: {}",
            report.paths[finding.revision],
            finding.line,
            finding.rule.code,
            finding.rule.name,
            finding.message
        );
        println!(
            "      {}",
            paint("2", &format!("fix: {}", finding.rule.fix))
        );
    }
    print_notes(report);
    let errors = report.count(Level::Error);
    let warnings = report.count(Level::Warning);
    let revisions: std::collections::HashSet<_> =
        report.findings.iter().map(|f| f.revision).collect();
    let since = since_text(report);
    println!(
        "shiftguard lint: {errors} error{}, {warnings} warning{} in {} of {} revisions ({since})",
        plural(errors),
        plural(warnings),
        revisions.len(),
        report.scope.release.len(),
    );
}

/// What was linted: `after <heads>`, or the whole graph.
fn since_text(report: &Report) -> String {
    if report.since.is_empty() {
        "the whole graph".to_owned()
    } else {
        format!("after {}", report.since.join(", "))
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn finding_json(report: &Report, finding: &Finding) -> Value {
    json!({
        "code": finding.rule.code,
        "rule": finding.rule.name,
        "level": finding.rule.level.as_str(),
        "layer": finding.rule.layer.as_str(),
        "revision": report.project.graph.revision(finding.revision).id,
        "file": report.paths[finding.revision],
        "line": finding.line,
        "message": finding.message,
        "fix": finding.rule.fix,
    })
}

pub fn json(report: &Report) {
    print_notes(report);
    let record = json!({
        "result": if report.failed { "fail" } else { "pass" },
        "since": report.since,
        "dialect": report.dialect.map(|d| d.as_str()),
        "revisions": report.scope.release.len(),
        "errors": report.count(Level::Error),
        "warnings": report.count(Level::Warning),
        "findings": report.findings.iter().map(|f| finding_json(report, f)).collect::<Vec<_>>(),
        "notes": report.notes,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&record).unwrap_or_default()
    );
}

/// SARIF 2.1.0, as GitHub code scanning reads it: every rule in the driver, one result per
/// finding with the file relative to the working directory (the repository root in CI).
pub fn sarif(report: &Report) {
    print_notes(report);
    let level = |level: Level| match level {
        Level::Error => "error",
        Level::Warning => "warning",
    };
    let rules: Vec<Value> = RULES
        .iter()
        .map(|rule| {
            json!({
                "id": rule.code,
                "name": rule.name,
                "shortDescription": { "text": rule.summary },
                "help": { "text": rule.fix },
                "defaultConfiguration": { "level": level(rule.level) },
                "properties": { "layer": rule.layer.as_str() },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| {
            let index = RULES
                .iter()
                .position(|r| r == finding.rule)
                .unwrap_or_default();
            json!({
                "ruleId": finding.rule.code,
                "ruleIndex": index,
                "level": level(finding.rule.level),
                "message": { "text": format!("{}. Fix: {}", finding.message, finding.rule.fix) },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&report.paths[finding.revision]) },
                        "region": { "startLine": finding.line },
                    }
                }],
                "properties": {
                    "revision": report.project.graph.revision(finding.revision).id,
                },
            })
        })
        .collect();
    let notifications: Vec<Value> = report
        .notes
        .iter()
        .map(|note| json!({ "level": "note", "message": { "text": note } }))
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "shiftguard",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "invocations": [{
                "executionSuccessful": true,
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }]
    });
    println!("{}", serde_json::to_string_pretty(&log).unwrap_or_default());
}

/// A relative path as a URI reference: forward slashes, reserved characters escaped.
fn uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.replace('\\', "/").bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A Markdown summary: the verdict line, then one table row per finding (level, rule, where,
/// what, the fix), then the notes.
pub fn markdown(report: &Report) {
    use crate::markdown::{cell, code, table};
    print_notes(report);
    let errors = report.count(Level::Error);
    let warnings = report.count(Level::Warning);
    let since = since_text(report);
    println!(
        "### shiftguard lint: {}\n\n{errors} error{}, {warnings} warning{} in {} revision{} ({})\n",
        if report.failed { "FAIL" } else { "pass" },
        plural(errors),
        plural(warnings),
        report.scope.release.len(),
        plural(report.scope.release.len()),
        cell(&since)
    );
    if !report.findings.is_empty() {
        let graph = &report.project.graph;
        let rows: Vec<Vec<String>> = report
            .findings
            .iter()
            .map(|finding| {
                let revision = graph.revision(finding.revision);
                vec![
                    match finding.rule.level {
                        Level::Error => ":x: error".to_owned(),
                        Level::Warning => ":warning: warning".to_owned(),
                    },
                    format!("{} {}", code(finding.rule.code), cell(finding.rule.name)),
                    format!(
                        "{} ({})",
                        code(&format!(
                            "{}:{}",
                            report.paths[finding.revision], finding.line
                        )),
                        cell(&format!("{}, {}", revision.id, revision.phase))
                    ),
                    cell(&finding.message),
                    cell(finding.rule.fix),
                ]
            })
            .collect();
        print!("{}", table(&["", "Rule", "Where", "Finding", "Fix"], &rows));
    }
    for note in &report.notes {
        println!("\n> {}", cell(note));
    }
}
