//! The rehearsal's HTML report: one self-contained page (inline CSS and SVG, nothing fetched):
//! a timeline of the steps' durations, and a grid of which builds fit and passed after each.

use std::fmt::Write as _;

use super::record::Record;
use crate::lab::report::escape;

pub fn html(record: &Record) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>shiftguard rehearsal</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.ok{{background:#d9f2d9}}\
         .bad{{background:#f8d0d0}}.note{{background:#fff1c2}}.dim{{background:#eee}}code{{font-size:13px}}\
         </style></head><body><h1>Rehearsal: {}</h1><p>{} on {}, from {} to {}, {} rows per table, {:.1} s.</p>",
        if record.result == "pass" {
            "every step predicted and confirmed"
        } else {
            "FAILED"
        },
        escape(&record.dialect),
        escape(&record.database),
        escape(&record.since.join(", ")),
        escape(&record.heads.join(", ")),
        record.rows,
        record.seconds
    );
    timeline(&mut page, record);
    grid(&mut page, record);
    if !record.findings.is_empty() {
        page.push_str("<h2>Findings</h2><ul>");
        for finding in &record.findings {
            let class = if finding.blocking { "bad" } else { "note" };
            let _ = write!(
                page,
                "<li class=\"{class}\">{}</li>",
                escape(&finding.message)
            );
        }
        page.push_str("</ul>");
    }
    page.push_str("</body></html>\n");
    page
}

/// One bar per step: Alembic's time, then the backfills' and the tests'.
fn timeline(page: &mut String, record: &Record) {
    let total = |s: &super::record::Step| {
        s.alembic_ms
            + s.backfills.iter().map(|b| b.ms).sum::<f64>()
            + s.apps.iter().map(|a| a.ms).sum::<f64>()
    };
    let longest = record.steps.iter().map(total).fold(1.0, f64::max);
    let (width, row) = (720.0, 22.0);
    let height = row * record.steps.len() as f64 + 10.0;
    let _ = write!(
        page,
        "<h2>Timeline</h2><svg width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"step durations\">",
        width + 260.0
    );
    for (n, step) in record.steps.iter().enumerate() {
        let y = n as f64 * row + 4.0;
        let mut x = 160.0;
        for (ms, color) in [
            (
                step.alembic_ms,
                if step.error.is_some() {
                    "#c33"
                } else {
                    "#4a7bd0"
                },
            ),
            (step.backfills.iter().map(|b| b.ms).sum::<f64>(), "#e0a030"),
            (step.apps.iter().map(|a| a.ms).sum::<f64>(), "#5aa55a"),
        ] {
            let w = ms / longest * width;
            let _ = write!(
                page,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"16\" fill=\"{color}\"/>"
            );
            x += w;
        }
        let label = step.revision.as_deref().unwrap_or("start (--since)");
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{:.1}\">{} {}</text><text x=\"{:.1}\" y=\"{:.1}\">{:.0} ms</text>",
            y + 13.0,
            step.number,
            escape(label),
            x + 6.0,
            y + 13.0,
            total(step)
        );
    }
    page.push_str("</svg><p>blue: Alembic, amber: backfills, green: the builds' tests.</p>");
}

/// Builds × steps: which fit (the rule) and which passed (their tests).
fn grid(page: &mut String, record: &Record) {
    let Some(first) = record.steps.first() else {
        return;
    };
    page.push_str(
        "<h2>Steps</h2><table><tr><th>step</th><th>phase</th><th>alembic</th><th>locks</th>",
    );
    for app in &first.apps {
        let _ = write!(page, "<th>build {}</th>", escape(&app.build));
    }
    page.push_str("</tr>");
    for step in &record.steps {
        let locks = step
            .locks
            .first()
            .map(|l| format!("{} on {} {:.0} ms", l.mode, l.table, l.held_ms))
            .unwrap_or_default();
        let _ = write!(
            page,
            "<tr><td><code>{} {}</code></td><td>{}</td><td class=\"{}\">{:.0} ms</td><td>{}</td>",
            step.number,
            escape(step.revision.as_deref().unwrap_or("start")),
            escape(step.phase.as_deref().unwrap_or("")),
            if step.error.is_some() { "bad" } else { "ok" },
            step.alembic_ms,
            escape(&locks)
        );
        for app in &step.apps {
            let class = match (app.fits, app.passed) {
                (true, true) => "ok",
                (true, false) => "bad",
                (false, true) => "note",
                (false, false) => "dim",
            };
            let _ = write!(page, "<td class=\"{class}\">{}</td>", app.outcome);
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
}
