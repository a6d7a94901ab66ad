//! The operator's hold: `shiftguard hold <application>/<group>` stops a canary between steps
//! (the monitor publishes the group's `hold` gate failing, so the alarm stops the shift before
//! the next step) and the pre-traffic hook refuses while it stands; `shiftguard release` lets it
//! go. Several operators may hold one group at once, each with a reason; the group stays held
//! until every one has let go. CodeDeploy has no pause between steps; Argo Rollouts and Flagger
//! do.

use serde::{Deserialize, Serialize};

use crate::release::gate::{GateResult, GateVerdict};

/// One operator's hold on one deployment group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// `application/deployment group`.
    pub group: String,
    /// Who set it.
    pub by: String,
    /// Why.
    pub reason: String,
    /// When, in milliseconds since the Unix epoch.
    pub since_ms: i64,
}

impl Hold {
    /// The hold as one line: `app/group held by alice since 2026-12-04T21:20:00Z: reason`.
    pub fn describe(&self) -> String {
        format!(
            "{} held by {} since {}: {}",
            self.group,
            self.by,
            utc(self.since_ms),
            self.reason
        )
    }
}

/// The `hold` gate of a deployment group: fails while any operator holds it, naming every
/// holder, since when and why.
pub fn hold_gate(holds: &[Hold]) -> GateResult {
    let verdict = match holds {
        [] => GateVerdict::Pass,
        [hold] => GateVerdict::Fail(format!(
            "{} (`shiftguard release {} --by {}` lets it go)",
            hold.describe(),
            hold.group,
            hold.by
        )),
        [first, ..] => {
            let others: Vec<String> = holds[1..]
                .iter()
                .map(|h| format!("held by {} since {}: {}", h.by, utc(h.since_ms), h.reason))
                .collect();
            GateVerdict::Fail(format!(
                "{}; {} (each holder's `shiftguard release {} --by NAME` lets theirs go; `--all` every one)",
                first.describe(),
                others.join("; "),
                first.group
            ))
        }
    };
    GateResult::new("hold", verdict)
}

/// `ms` since the epoch as an RFC 3339 UTC time, to the second.
pub fn utc(ms: i64) -> String {
    let seconds = ms.div_euclid(1_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3_600,
        second_of_day % 3_600 / 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_fails_its_gate_with_who_when_and_why() {
        assert!(hold_gate(&[]).passed());
        let hold = Hold {
            group: "users-api/live".to_owned(),
            by: "alice".to_owned(),
            reason: "checking the replica lag".to_owned(),
            since_ms: 1_764_883_200_000,
        };
        assert_eq!(
            hold_gate(std::slice::from_ref(&hold)).to_string(),
            "hold: FAIL: users-api/live held by alice since 2025-12-04T21:20:00Z: checking the replica lag (`shiftguard release users-api/live --by alice` lets it go)"
        );
        let bob = Hold {
            by: "bob".to_owned(),
            reason: "a migration runs".to_owned(),
            since_ms: 1_764_883_260_000,
            ..hold.clone()
        };
        assert_eq!(
            hold_gate(&[hold, bob]).to_string(),
            "hold: FAIL: users-api/live held by alice since 2025-12-04T21:20:00Z: checking the replica lag; held by bob since 2025-12-04T21:21:00Z: a migration runs (each holder's `shiftguard release users-api/live --by NAME` lets theirs go; `--all` every one)"
        );
    }

    #[test]
    fn times_are_utc_to_the_second() {
        for (ms, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
            (1_798_761_599_999, "2026-12-31T23:59:59Z"),
            (-1_000, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(utc(ms), expected, "{ms}");
        }
    }
}
