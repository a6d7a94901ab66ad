//! Notices out: an SNS message (the topic's subscribers: email, chat) and an EventBridge event
//! (`source` `shiftguard`, `detail-type` the notice's kind, `detail` the notice with its
//! record), each where configured.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use shiftguard_core::release::notify::Notice;

use crate::error::AwsError;

/// The events' `source`.
pub const EVENT_SOURCE: &str = "shiftguard";

/// EventBridge's largest event (256 KiB), less room for the envelope: a larger detail goes
/// without its record.
const MAX_DETAIL_BYTES: usize = 240 * 1024;

/// SNS's largest message (256 KiB), less room for the attributes: a longer one is cut.
const MAX_MESSAGE_BYTES: usize = 250 * 1024;

/// Where notices go, as configured: `SHIFTGUARD_NOTIFY_TOPIC_ARN` (an SNS topic) and
/// `SHIFTGUARD_NOTIFY_EVENT_BUS` (an EventBridge bus's name or ARN; `default` is the account's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyTargets {
    pub topic_arn: Option<String>,
    pub event_bus: Option<String>,
}

impl NotifyTargets {
    /// Reads and checks both variables; the error names the one at fault.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let topic_arn = get("SHIFTGUARD_NOTIFY_TOPIC_ARN");
        if let Some(arn) = &topic_arn {
            let parts: Vec<&str> = arn.split(':').collect();
            if parts.len() != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5].is_empty() {
                return Err(format!(
                    "SHIFTGUARD_NOTIFY_TOPIC_ARN is `{arn}`: expected an SNS topic ARN (arn:aws:sns:<region>:<account>:<topic>)"
                ));
            }
        }
        let event_bus = get("SHIFTGUARD_NOTIFY_EVENT_BUS");
        if let Some(bus) = &event_bus {
            let fits = bus.len() <= 1_600
                && bus
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c));
            if !fits {
                return Err(format!(
                    "SHIFTGUARD_NOTIFY_EVENT_BUS is `{bus}`: expected an EventBridge bus name or ARN"
                ));
            }
        }
        Ok(NotifyTargets {
            topic_arn,
            event_bus,
        })
    }
}

/// Where notices go: an SNS topic, an EventBridge bus, or both.
#[derive(Clone, Debug)]
pub struct Notifier {
    sns: Option<(aws_sdk_sns::Client, String)>,
    events: Option<(aws_sdk_eventbridge::Client, String)>,
}

impl Notifier {
    /// A notifier for `targets`; none when there are none.
    pub fn new(config: &aws_config::SdkConfig, targets: &NotifyTargets) -> Option<Notifier> {
        if targets.topic_arn.is_none() && targets.event_bus.is_none() {
            return None;
        }
        Some(Notifier {
            sns: targets
                .topic_arn
                .clone()
                .map(|arn| (aws_sdk_sns::Client::new(config), arn)),
            events: targets
                .event_bus
                .clone()
                .map(|bus| (aws_sdk_eventbridge::Client::new(config), bus)),
        })
    }

    /// Sends `notice` everywhere configured, at once; tries each even when the other fails.
    pub async fn send(&self, notice: &Notice) -> Result<(), AwsError> {
        let sns = async {
            let Some((client, topic)) = &self.sns else {
                return None;
            };
            let mut message = notice.message();
            if message.len() > MAX_MESSAGE_BYTES {
                let mut end = MAX_MESSAGE_BYTES;
                while !message.is_char_boundary(end) {
                    end -= 1;
                }
                message.truncate(end);
            }
            let sent = client
                .publish()
                .topic_arn(topic)
                .subject(notice.subject())
                .message(message)
                .send()
                .await;
            sent.err()
                .map(|e| AwsError::from_sdk(&format!("SNS Publish to {topic}"), &e).message)
        };
        let events = async {
            let (client, bus) = self.events.as_ref()?;
            let doing = format!("EventBridge PutEvents on {bus}");
            let entry = PutEventsRequestEntry::builder()
                .source(EVENT_SOURCE)
                .detail_type(notice.kind)
                .detail(detail(notice))
                .event_bus_name(bus)
                .build();
            match client.put_events().entries(entry).send().await {
                Err(error) => Some(AwsError::from_sdk(&doing, &error).message),
                Ok(output) if output.failed_entry_count() > 0 => {
                    let why = output
                        .entries()
                        .iter()
                        .find_map(|e| e.error_message())
                        .unwrap_or("no reason given");
                    Some(format!("{doing}: the event was refused: {why}"))
                }
                Ok(_) => None,
            }
        };
        // Both at once: a caller near its deadline waits for the slower, not for the sum.
        let (sns, events) = tokio::join!(sns, events);
        let problems: Vec<String> = sns.into_iter().chain(events).collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(AwsError::new(problems.join("; ")))
        }
    }
}

/// The event's detail: the notice, with its record while the whole fits an event.
fn detail(notice: &Notice) -> String {
    let whole = serde_json::to_string(notice).unwrap_or_default();
    if whole.len() <= MAX_DETAIL_BYTES {
        return whole;
    }
    let mut without = notice.clone();
    without.record = serde_json::json!({"omitted": "larger than an event may be"});
    without.summary.truncate(50);
    serde_json::to_string(&without).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::fixed;

    #[test]
    fn targets_are_checked_and_name_the_variable() {
        assert_eq!(
            NotifyTargets::from_lookup(fixed(&[])),
            Ok(NotifyTargets::default())
        );
        let both = NotifyTargets::from_lookup(fixed(&[
            (
                "SHIFTGUARD_NOTIFY_TOPIC_ARN",
                "arn:aws:sns:eu-west-1:123456789012:releases",
            ),
            ("SHIFTGUARD_NOTIFY_EVENT_BUS", "default"),
        ]))
        .expect("valid");
        assert_eq!(both.event_bus.as_deref(), Some("default"));
        for (name, value) in [
            ("SHIFTGUARD_NOTIFY_TOPIC_ARN", "releases"),
            (
                "SHIFTGUARD_NOTIFY_TOPIC_ARN",
                "arn:aws:sqs:eu-west-1:123456789012:releases",
            ),
            ("SHIFTGUARD_NOTIFY_EVENT_BUS", "my bus"),
        ] {
            let error = NotifyTargets::from_lookup(fixed(&[(name, value)])).expect_err(value);
            assert!(
                error.starts_with(&format!("{name} is `{value}`")),
                "{error}"
            );
        }
    }

    #[test]
    fn a_detail_too_large_for_an_event_goes_without_its_record() {
        let notice = Notice {
            kind: "Gate Verdict Changed",
            about: "orders/orders-api".to_owned(),
            sentence: "The gates of orders/orders-api now fail.".to_owned(),
            summary: vec!["hold: FAIL".to_owned()],
            record: serde_json::json!({"big": "x".repeat(300 * 1024)}),
        };
        let detail = detail(&notice);
        assert!(detail.len() < MAX_DETAIL_BYTES, "{}", detail.len());
        let parsed: serde_json::Value = serde_json::from_str(&detail).expect("json");
        assert_eq!(parsed["sentence"], notice.sentence.as_str());
        assert_eq!(parsed["record"]["omitted"], "larger than an event may be");
    }
}
