//! The lab's HTML report: one self-contained page (inline CSS and SVG, no script, nothing
//! fetched) with the timeline chart and the record of every stage and gate.

use std::fmt::Write as _;

use super::Record;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;

/// Escaped for HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn html(record: &Record) -> String {
    let end_ms = record
        .timeline
        .last()
        .map_or(1.0, |s| s.t_ms)
        .max(record.gates.last().map_or(1.0, |g| g.t_ms))
        .max(1.0);
    let x = |t_ms: f64| LEFT + (t_ms / end_ms) * (WIDTH - LEFT - RIGHT);
    let y = |share: f64| TOP + (1.0 - share) * (HEIGHT - TOP - BOTTOM);
    let line = |value: &dyn Fn(&super::Sample) -> f64| -> String {
        record
            .timeline
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t_ms), y(value(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="timeline">"##
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="axis" text-anchor="end">{:.0}%</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(tick) + 4.0,
            tick * 100.0,
            y = y(tick)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{}" y="{}" class="axis" text-anchor="end">{:.1} s</text>"##,
        WIDTH - RIGHT,
        HEIGHT - 8.0,
        end_ms / 1e3
    );
    for (class, points) in [
        ("v1", line(&|s| s.weights.first().copied().unwrap_or(0.0))),
        ("v2", line(&|s| s.weights.get(1).copied().unwrap_or(0.0))),
        ("backfill", line(&|s| s.backfill_percent / 100.0)),
    ] {
        let _ = write!(svg, r##"<polyline class="{class}" points="{points}"/>"##);
    }
    for gate in &record.gates {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" class="{}"><title>{}: {}{}</title></circle>"##,
            x(gate.t_ms),
            TOP - 12.0,
            gate.verdict,
            escape(&gate.gate),
            gate.verdict,
            gate.reason
                .as_deref()
                .map(|r| format!(" ({})", escape(r)))
                .unwrap_or_default()
        );
    }
    svg.push_str("</svg>");

    let mut stages = String::new();
    for stage in &record.stages {
        let _ = write!(
            stages,
            "<li class=\"{}\"><b>{}. {}</b> — <i>expected: {}</i><ul>{}</ul></li>",
            if stage.ok { "ok" } else { "bad" },
            stage.number,
            escape(&stage.title),
            escape(&stage.expected),
            stage
                .notes
                .iter()
                .map(|n| format!("<li>{}</li>", escape(n)))
                .collect::<String>()
        );
    }
    let mut gates = String::new();
    for gate in &record.gates {
        let _ = write!(
            gates,
            "<tr class=\"{}\"><td>{:.2} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            gate.verdict,
            gate.t_ms / 1e3,
            gate.stage,
            escape(&gate.gate),
            gate.verdict,
            gate.value.map(|v| v.to_string()).unwrap_or_default(),
            escape(gate.threshold.as_deref().unwrap_or_default()),
            escape(gate.reason.as_deref().unwrap_or_default())
        );
    }
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>shiftguard lab: {result}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
h1 {{ font-size: 1.4em; }} .pass, .ok {{ color: #1a7f37; }} .fail, .bad {{ color: #cf222e; }}
.inconclusive {{ color: #9a6700; }}
svg .grid {{ stroke: #ddd; }} svg .axis {{ font-size: 11px; fill: #666; }}
polyline {{ fill: none; stroke-width: 2; }} polyline.v1 {{ stroke: #0969da; }}
polyline.v2 {{ stroke: #bc4c00; }} polyline.backfill {{ stroke: #1a7f37; stroke-dasharray: 5 3; }}
circle.pass {{ fill: #1a7f37; }} circle.fail {{ fill: #cf222e; }} circle.inconclusive {{ fill: #9a6700; }}
.legend span {{ margin-right: 1.5em; }} table {{ border-collapse: collapse; width: 100%; font-size: 12px; }}
td, th {{ border-bottom: 1px solid #eee; padding: 3px 6px; text-align: left; vertical-align: top; }}
</style></head><body>
<h1>shiftguard lab — <span class="{result}">{result}</span></h1>
<p>{rows} rows on {database}; {seconds:.1} s. The running example's release: expand, canary with the
backfill between the steps (killed half-way, resumed), cutover, contract.</p>
<p class="legend"><span style="color:#0969da">— v1 traffic share</span><span style="color:#bc4c00">— v2 traffic share</span><span style="color:#1a7f37">- - backfill progress</span><span>● gate verdicts (hover: reason)</span></p>
{svg}
<h2>Stages</h2><ol style="list-style:none;padding-left:0">{stages}</ol>
<h2>Gates</h2><table><tr><th>time</th><th>stage</th><th>gate</th><th>verdict</th><th>value</th><th>threshold</th><th>reason</th></tr>{gates}</table>
</body></html>
"##,
        result = record.result,
        rows = record.rows,
        database = escape(&record.database),
        seconds = record.seconds,
    )
}
