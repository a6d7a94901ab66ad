//! What shiftguard tells people: a gate verdict that changed between canary steps (an
//! operator's hold among its gates), a backfill that completed, failed or stalled. A [`Notice`] is one readable sentence and a link-free
//! summary (the gates, one line each), sent as an SNS message (email, chat) and as an
//! EventBridge event whose detail also carries the record it came from.

use serde::Serialize;

use crate::release::gate::{GateResult, GateVerdict};
use crate::release::record::GroupReport;

/// SNS's longest subject, in characters.
const MAX_SUBJECT: usize = 99;

/// One thing to tell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Notice {
    /// What happened, EventBridge's `detail-type`: `Gate Verdict Changed`, `Backfill Completed`,
    /// `Backfill Failed` or `Backfill Stalled`.
    pub kind: &'static str,
    /// What it is about: `application/group`, or the backfill's name.
    pub about: String,
    /// One readable sentence.
    pub sentence: String,
    /// The gates (or the run), one line each.
    pub summary: Vec<String>,
    /// The record the notice came from (the group's report, the backfill's run), for
    /// EventBridge.
    pub record: serde_json::Value,
}

impl Notice {
    /// SNS's subject: `shiftguard: <about>: <kind>`, printable ASCII, under 100 characters.
    pub fn subject(&self) -> String {
        let subject = format!("shiftguard: {}: {}", self.about, self.kind.to_lowercase());
        subject
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(MAX_SUBJECT)
            .collect()
    }

    /// SNS's message: the sentence, a blank line, the summary.
    pub fn message(&self) -> String {
        let mut message = self.sentence.clone();
        if !self.summary.is_empty() {
            message.push_str("\n\n");
            message.push_str(&self.summary.join("\n"));
        }
        message
    }
}

/// The group's verdict now against the last one published (`previous`: its `GateFailing`, none
/// when nothing was published lately): a notice when the verdict changed, and for a first
/// verdict only when it fails.
pub fn verdict_change(report: &GroupReport, previous: Option<f64>) -> Option<Notice> {
    let failing = report.gate_failing > 0.0;
    let was_failing = previous.map(|value| value > 0.0);
    if was_failing == Some(failing) || (was_failing.is_none() && !failing) {
        return None;
    }
    let about = format!("{}/{}", report.application, report.deployment_group);
    let mut summary = Vec::new();
    let mut failing_gates = Vec::new();
    if let Some(gate) = &report.hold {
        summary.push(gate.to_string());
        if fails(gate, false) {
            failing_gates.push(gate.gate.clone());
        }
    }
    for evaluation in &report.evaluations {
        for gate in &evaluation.decision.gates {
            if report
                .hold
                .as_ref()
                .is_some_and(|hold| hold.gate == gate.gate)
            {
                continue;
            }
            summary.push(format!("{}: {gate}", evaluation.deployment_id));
            if fails(gate, evaluation.decision.inconclusive_passes) {
                failing_gates.push(gate.gate.clone());
            }
        }
    }
    summary.extend(
        report
            .errors
            .iter()
            .map(|e| format!("could not decide: {e}")),
    );
    let sentence = if failing {
        let why = match (failing_gates.is_empty(), report.errors.is_empty()) {
            (false, _) => format!("failing: {}", failing_gates.join(", ")),
            (true, false) => "the monitor could not decide".to_owned(),
            (true, true) => "failing".to_owned(),
        };
        format!(
            "The gates of {about} now fail ({why}); GateFailing is 1, and the alarm on it stops a deployment in progress (CodeDeploy rolls it back)."
        )
    } else {
        format!(
            "The gates of {about} pass again; GateFailing is 0 (a deployment stopped meanwhile does not resume by itself)."
        )
    };
    Some(Notice {
        kind: "Gate Verdict Changed",
        about,
        sentence,
        summary,
        record: serde_json::to_value(report).unwrap_or(serde_json::Value::Null),
    })
}

/// Whether `gate` fails the decision it is in.
fn fails(gate: &GateResult, inconclusive_passes: bool) -> bool {
    gate.decides()
        && match gate.verdict {
            GateVerdict::Pass => false,
            GateVerdict::Inconclusive(_) => !inconclusive_passes,
            GateVerdict::Fail(_) => true,
        }
}

/// What became of a backfill in a scheduled run that is worth telling.
#[derive(Clone, Debug, PartialEq)]
pub enum BackfillNews {
    /// Verified: no row is left to update.
    Completed { rows_updated: u64 },
    /// The run failed.
    Failed { error: String },
    /// The run updated nothing: a health signal held it throughout.
    Stalled { held_by: String, seconds: f64 },
}

impl BackfillNews {
    /// A name per kind: a runner tells a kind once, until the backfill moves again.
    pub fn kind(&self) -> &'static str {
        match self {
            BackfillNews::Completed { .. } => "Backfill Completed",
            BackfillNews::Failed { .. } => "Backfill Failed",
            BackfillNews::Stalled { .. } => "Backfill Stalled",
        }
    }
}

/// The notice of `news` about `backfill`, with the run's `record`.
pub fn backfill_notice(backfill: &str, news: &BackfillNews, record: serde_json::Value) -> Notice {
    let (sentence, summary) = match news {
        BackfillNews::Completed { rows_updated } => (
            format!("Backfill {backfill} is complete: verified, no row is left to update."),
            vec![format!("rows updated in the last run: {rows_updated}")],
        ),
        BackfillNews::Failed { error } => (
            format!("Backfill {backfill} failed in its scheduled run."),
            vec![format!("error: {error}")],
        ),
        BackfillNews::Stalled { held_by, seconds } => (
            format!(
                "Backfill {backfill} made no progress in a {seconds:.0} s run: a health signal held it."
            ),
            vec![format!("held by: {held_by}")],
        ),
    };
    Notice {
        kind: news.kind(),
        about: backfill.to_owned(),
        sentence,
        summary,
        record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::hold::{Hold, hold_gate};

    fn report(failing: bool, hold: Option<GateResult>, errors: Vec<String>) -> GroupReport {
        GroupReport {
            application: "orders".to_owned(),
            deployment_group: "orders-api".to_owned(),
            gate_failing: if failing { 1.0 } else { 0.0 },
            hold,
            evaluations: Vec::new(),
            errors,
        }
    }

    #[test]
    fn a_notice_only_when_the_verdict_changes() {
        let held = hold_gate(&[Hold {
            group: "orders/orders-api".to_owned(),
            by: "alice".to_owned(),
            reason: "checking the index".to_owned(),
            since_ms: 0,
        }]);
        let failing = report(true, Some(held), Vec::new());
        let passing = report(false, Some(hold_gate(&[])), Vec::new());
        // (report, previous, notified?)
        for (report, previous, notified) in [
            (&failing, None, true),
            (&failing, Some(0.0), true),
            (&failing, Some(1.0), false),
            (&passing, None, false),
            (&passing, Some(0.0), false),
            (&passing, Some(1.0), true),
        ] {
            assert_eq!(
                verdict_change(report, previous).is_some(),
                notified,
                "{previous:?} {}",
                report.gate_failing
            );
        }
        let notice = verdict_change(&failing, None).expect("changed");
        assert_eq!(
            notice.sentence,
            "The gates of orders/orders-api now fail (failing: hold); GateFailing is 1, and the alarm on it stops a deployment in progress (CodeDeploy rolls it back)."
        );
        assert!(
            notice.summary[0].starts_with("hold: FAIL: orders/orders-api held by alice"),
            "{:?}",
            notice.summary
        );
        assert_eq!(
            notice.subject(),
            "shiftguard: orders/orders-api: gate verdict changed"
        );
        assert!(
            notice
                .message()
                .starts_with("The gates of orders/orders-api now fail")
        );
        assert_eq!(notice.record["hold"]["gate"], "hold");
        let back = verdict_change(&passing, Some(1.0)).expect("changed");
        assert_eq!(
            back.sentence,
            "The gates of orders/orders-api pass again; GateFailing is 0 (a deployment stopped meanwhile does not resume by itself)."
        );
        let undecided = report(true, None, vec!["CodeDeploy: throttled".to_owned()]);
        let notice = verdict_change(&undecided, Some(0.0)).expect("changed");
        assert!(
            notice.sentence.contains("(the monitor could not decide)")
                && notice.summary == ["could not decide: CodeDeploy: throttled"],
            "{notice:?}"
        );
    }

    #[test]
    fn backfill_news_reads_as_one_sentence() {
        let stalled = BackfillNews::Stalled {
            held_by: "replica_lag 12 above 5".to_owned(),
            seconds: 840.2,
        };
        let notice = backfill_notice("users_display_name", &stalled, serde_json::json!({}));
        assert_eq!(
            notice.sentence,
            "Backfill users_display_name made no progress in a 840 s run: a health signal held it."
        );
        assert_eq!(notice.summary, ["held by: replica_lag 12 above 5"]);
        assert_eq!(
            notice.subject(),
            "shiftguard: users_display_name: backfill stalled"
        );
        let done = backfill_notice(
            "users_display_name",
            &BackfillNews::Completed { rows_updated: 12 },
            serde_json::json!({}),
        );
        assert_eq!(done.kind, "Backfill Completed");
    }

    #[test]
    fn a_subject_is_printable_ascii_under_100_characters() {
        let notice = Notice {
            kind: "Backfill Stalled",
            about: format!("é{}", "x".repeat(200)),
            sentence: String::new(),
            summary: Vec::new(),
            record: serde_json::Value::Null,
        };
        let subject = notice.subject();
        assert_eq!(subject.chars().count(), 99);
        assert!(subject.starts_with("shiftguard: ?xx"), "{subject}");
    }
}
