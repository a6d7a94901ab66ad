//! Operators' holds, one DynamoDB item per deployment group (partition key `group`, a string:
//! `application/deployment group`) holding a map of holders (`holders`: each holder's name to
//! their reason and since when), read strongly consistent. `shiftguard hold` adds one holder
//! and `shiftguard release` removes one (or all), each with a conditional update of that
//! holder's entry alone, so two operators never overwrite each other; the hooks and the gate
//! monitor read them. An item written by an earlier version (one holder, at the top level) is
//! read as one holder and turned into the map by the first write.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use shiftguard_core::release::hold::Hold;

use crate::error::AwsError;

/// How often a write re-reads and tries again when another operator's write came first.
const TRIES: usize = 8;

/// Holds in the DynamoDB table `table`.
#[derive(Clone, Debug)]
pub struct DynamoHolds {
    client: Client,
    table: String,
}

/// What a release did: the holds it removed and the holds that remain on the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub removed: Vec<Hold>,
    pub remaining: Vec<Hold>,
}

type Item = HashMap<String, AttributeValue>;

fn conditional_failure<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

impl DynamoHolds {
    pub fn new(config: &aws_config::SdkConfig, table: &str) -> Self {
        DynamoHolds {
            client: Client::new(config),
            table: table.to_owned(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn failed<E>(&self, doing: &str, group: &str, error: &SdkError<E>) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        AwsError::from_sdk(&format!("{doing} {} {group}", self.table), error)
    }

    async fn item(&self, group: &str) -> Result<Option<Item>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("group", AttributeValue::S(group.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", group, &e))?;
        Ok(output.item)
    }

    /// The holds on `group`, oldest first.
    pub async fn get(&self, group: &str) -> Result<Vec<Hold>, AwsError> {
        match self.item(group).await? {
            Some(item) => from_item(&item),
            None => Ok(Vec::new()),
        }
    }

    /// Every hold, by group, oldest first within a group.
    pub async fn list(&self) -> Result<Vec<Hold>, AwsError> {
        let mut holds = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(&format!("Scan {}", self.table), &e))?;
            for item in output.items() {
                holds.extend(from_item(item)?);
            }
            start = output.last_evaluated_key().cloned();
            if start.is_none() {
                holds.sort_by(|a, b| {
                    (&a.group, a.since_ms, &a.by).cmp(&(&b.group, b.since_ms, &b.by))
                });
                return Ok(holds);
            }
        }
    }

    /// Adds `hold` beside the group's other holders (replacing only the same holder's own);
    /// returns the holder's previous hold, if any.
    pub async fn add(&self, hold: &Hold) -> Result<Option<Hold>, AwsError> {
        let group = hold.group.as_str();
        for _ in 0..TRIES {
            // The holder's entry in the map, where the map exists.
            let updated = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("group", AttributeValue::S(group.to_owned()))
                .update_expression("SET #h.#by = :hold")
                .condition_expression("attribute_exists(#h)")
                .expression_attribute_names("#h", "holders")
                .expression_attribute_names("#by", &hold.by)
                .expression_attribute_values(":hold", entry(hold))
                .return_values(ReturnValue::UpdatedOld)
                .send()
                .await;
            match updated {
                Ok(output) => {
                    let previous = output
                        .attributes()
                        .and_then(|old| old.get("holders"))
                        .and_then(|h| h.as_m().ok())
                        .and_then(|holders| holders.get(&hold.by))
                        .map(|old| held(group, &hold.by, old))
                        .transpose()?;
                    return Ok(previous);
                }
                Err(error) if conditional_failure(&error) => {}
                Err(error) => return Err(self.failed("UpdateItem", group, &error)),
            }
            // No map yet: a new item, or an earlier version's item turned into one.
            match self.item(group).await? {
                None => {
                    let item = HashMap::from([
                        ("group".to_owned(), AttributeValue::S(group.to_owned())),
                        (
                            "holders".to_owned(),
                            AttributeValue::M(HashMap::from([(hold.by.clone(), entry(hold))])),
                        ),
                    ]);
                    let created = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(#g)")
                        .expression_attribute_names("#g", "group")
                        .send()
                        .await;
                    match created {
                        Ok(_) => return Ok(None),
                        Err(error) if conditional_failure(&error) => {}
                        Err(error) => return Err(self.failed("PutItem", group, &error)),
                    }
                }
                Some(item) if !item.contains_key("holders") => self.upgrade(group, &item).await?,
                Some(_) => {}
            }
        }
        Err(self.busy(group))
    }

    /// An earlier version's item (one holder at the top level) as a map of one holder.
    async fn upgrade(&self, group: &str, item: &Item) -> Result<(), AwsError> {
        let holds = from_item(item)?;
        let holders: HashMap<String, AttributeValue> =
            holds.iter().map(|h| (h.by.clone(), entry(h))).collect();
        let since = item
            .get("since_ms")
            .cloned()
            .unwrap_or(AttributeValue::Null(true));
        let upgraded = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("group", AttributeValue::S(group.to_owned()))
            .update_expression("SET #h = :holders REMOVE #by, #reason, #since")
            .condition_expression("attribute_not_exists(#h) AND #since = :since")
            .expression_attribute_names("#h", "holders")
            .expression_attribute_names("#by", "by")
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_names("#since", "since_ms")
            .expression_attribute_values(":holders", AttributeValue::M(holders))
            .expression_attribute_values(":since", since)
            .send()
            .await;
        match upgraded {
            Ok(_) => Ok(()),
            Err(error) if conditional_failure(&error) => Ok(()),
            Err(error) => Err(self.failed("UpdateItem", group, &error)),
        }
    }

    /// Removes `by`'s hold on `group` (the others stay).
    pub async fn remove(&self, group: &str, by: &str) -> Result<Released, AwsError> {
        for _ in 0..TRIES {
            let removed = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("group", AttributeValue::S(group.to_owned()))
                .update_expression("REMOVE #h.#by")
                .condition_expression("attribute_exists(#h.#by)")
                .expression_attribute_names("#h", "holders")
                .expression_attribute_names("#by", by)
                .return_values(ReturnValue::AllOld)
                .send()
                .await;
            match removed {
                Ok(output) => {
                    let old = from_item(output.attributes().unwrap_or(&HashMap::new()))?;
                    let (removed, remaining): (Vec<Hold>, Vec<Hold>) =
                        old.into_iter().partition(|h| h.by == by);
                    if remaining.is_empty() {
                        // Tidying only: an empty map holds nothing, and the release is done.
                        let _ = self.delete_if_empty(group).await;
                    }
                    return Ok(Released { removed, remaining });
                }
                Err(error) if conditional_failure(&error) => {}
                Err(error) => return Err(self.failed("UpdateItem", group, &error)),
            }
            match self.item(group).await? {
                Some(item) if !item.contains_key("holders") => self.upgrade(group, &item).await?,
                // Not held by `by`: nothing removed.
                Some(item) => {
                    return Ok(Released {
                        removed: Vec::new(),
                        remaining: from_item(&item)?,
                    });
                }
                None => return Ok(Released::default()),
            }
        }
        Err(self.busy(group))
    }

    /// Removes every hold on `group`.
    pub async fn remove_all(&self, group: &str) -> Result<Released, AwsError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("group", AttributeValue::S(group.to_owned()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.failed("DeleteItem", group, &e))?;
        let removed = match output.attributes() {
            Some(item) if !item.is_empty() => from_item(item)?,
            _ => Vec::new(),
        };
        Ok(Released {
            removed,
            remaining: Vec::new(),
        })
    }

    /// The group's item once its last holder let go (unless someone held it meanwhile).
    async fn delete_if_empty(&self, group: &str) -> Result<(), AwsError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("group", AttributeValue::S(group.to_owned()))
            .condition_expression("size(#h) = :none")
            .expression_attribute_names("#h", "holders")
            .expression_attribute_values(":none", AttributeValue::N("0".to_owned()))
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            Err(error) if conditional_failure(&error) => Ok(()),
            Err(error) => Err(self.failed("DeleteItem", group, &error)),
        }
    }

    fn busy(&self, group: &str) -> AwsError {
        AwsError::new(format!(
            "{}: the holds on {group} kept changing; try again",
            self.table
        ))
    }
}

/// A holder's entry: reason and since when.
fn entry(hold: &Hold) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("reason".to_owned(), AttributeValue::S(hold.reason.clone())),
        (
            "since_ms".to_owned(),
            AttributeValue::N(hold.since_ms.to_string()),
        ),
    ]))
}

/// `by`'s hold from their entry; an entry missing its fields is an error.
fn held(group: &str, by: &str, entry: &AttributeValue) -> Result<Hold, AwsError> {
    let fields = entry.as_m().ok();
    let reason = fields
        .and_then(|f| f.get("reason"))
        .and_then(|v| v.as_s().ok());
    let since_ms = fields
        .and_then(|f| f.get("since_ms"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok());
    match (reason, since_ms) {
        (Some(reason), Some(since_ms)) => Ok(Hold {
            group: group.to_owned(),
            by: by.to_owned(),
            reason: reason.clone(),
            since_ms,
        }),
        _ => Err(unreadable(group)),
    }
}

fn unreadable(group: &str) -> AwsError {
    AwsError::new(format!(
        "the hold on {group} is unreadable (holders with reason and since_ms expected)"
    ))
}

/// An item's holds, oldest first; an item that cannot be read is an error (a hold that cannot
/// be read must not read as none).
fn from_item(item: &Item) -> Result<Vec<Hold>, AwsError> {
    let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
    let group = text("group").unwrap_or_default();
    let mut holds = match item.get("holders") {
        Some(holders) => {
            let holders = holders.as_m().map_err(|_| unreadable(&group))?;
            holders
                .iter()
                .map(|(by, entry)| held(&group, by, entry))
                .collect::<Result<Vec<_>, _>>()?
        }
        // An earlier version's item: one holder at the top level.
        None => {
            let entry = AttributeValue::M(item.clone());
            vec![held(
                &group,
                &text("by").ok_or_else(|| unreadable(&group))?,
                &entry,
            )?]
        }
    };
    holds.sort_by(|a, b| (a.since_ms, &a.by).cmp(&(b.since_ms, &b.by)));
    Ok(holds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_of_both_shapes_read_as_holds_and_a_broken_one_is_an_error() {
        let hold = |by: &str, since: i64| Hold {
            group: "app/live".to_owned(),
            by: by.to_owned(),
            reason: format!("{by}'s reason"),
            since_ms: since,
        };
        let group = ("group".to_owned(), AttributeValue::S("app/live".to_owned()));
        let map = HashMap::from([
            group.clone(),
            (
                "holders".to_owned(),
                AttributeValue::M(HashMap::from([
                    ("bob".to_owned(), entry(&hold("bob", 20))),
                    ("alice".to_owned(), entry(&hold("alice", 10))),
                ])),
            ),
        ]);
        assert_eq!(
            from_item(&map).expect("read"),
            [hold("alice", 10), hold("bob", 20)]
        );
        let earlier = HashMap::from([
            group.clone(),
            ("by".to_owned(), AttributeValue::S("carol".to_owned())),
            (
                "reason".to_owned(),
                AttributeValue::S("carol's reason".to_owned()),
            ),
            ("since_ms".to_owned(), AttributeValue::N("5".to_owned())),
        ]);
        assert_eq!(from_item(&earlier).expect("read"), [hold("carol", 5)]);
        let broken = HashMap::from([group, ("by".to_owned(), AttributeValue::S("x".to_owned()))]);
        assert!(from_item(&broken).is_err());
    }
}
