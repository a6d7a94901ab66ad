//! Operators' holds, one DynamoDB item per deployment group (partition key `group`, a string:
//! `application/deployment group`), read strongly consistent: `shiftguard hold` writes one,
//! `shiftguard release` deletes it, the hooks and the gate monitor read them.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use shiftguard_core::release::hold::Hold;

use crate::error::AwsError;

/// Holds in the DynamoDB table `table`.
#[derive(Clone, Debug)]
pub struct DynamoHolds {
    client: Client,
    table: String,
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

    /// The hold on `group`, if any.
    pub async fn get(&self, group: &str) -> Result<Option<Hold>, AwsError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("group", AttributeValue::S(group.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&format!("GetItem {} {group}", self.table), &e))?;
        output.item().map(from_item).transpose()
    }

    /// Every hold, in the order of their groups.
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
                holds.push(from_item(item)?);
            }
            start = output.last_evaluated_key().cloned();
            if start.is_none() {
                holds.sort_by(|a, b| a.group.cmp(&b.group));
                return Ok(holds);
            }
        }
    }

    /// Sets (or replaces) the hold on its group.
    pub async fn put(&self, hold: &Hold) -> Result<(), AwsError> {
        let item = HashMap::from([
            ("group".to_owned(), AttributeValue::S(hold.group.clone())),
            ("by".to_owned(), AttributeValue::S(hold.by.clone())),
            ("reason".to_owned(), AttributeValue::S(hold.reason.clone())),
            (
                "since_ms".to_owned(),
                AttributeValue::N(hold.since_ms.to_string()),
            ),
        ]);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk(&format!("PutItem {} {}", self.table, hold.group), &e))
    }

    /// Removes the hold on `group`; the hold that was there, if any.
    pub async fn delete(&self, group: &str) -> Result<Option<Hold>, AwsError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("group", AttributeValue::S(group.to_owned()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(&format!("DeleteItem {} {group}", self.table), &e))?;
        output.attributes().map(from_item).transpose()
    }
}

/// An item as a hold; an item missing its fields is an error (a hold that cannot be read must
/// not read as none).
fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Hold, AwsError> {
    let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
    let group = text("group").unwrap_or_default();
    let since_ms = item
        .get("since_ms")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok());
    match (text("by"), text("reason"), since_ms) {
        (Some(by), Some(reason), Some(since_ms)) => Ok(Hold {
            group,
            by,
            reason,
            since_ms,
        }),
        _ => Err(AwsError::new(format!(
            "the hold on {group} is unreadable (by, reason, since_ms expected)"
        ))),
    }
}
