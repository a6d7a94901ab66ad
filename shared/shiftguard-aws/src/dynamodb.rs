//! The DynamoDB checkpoint store: one item per backfill (partition key `name`, a string), every
//! write conditional on the stored `version`, reads strongly consistent.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use shiftguard_core::backfill::{
    Checkpoint, CheckpointStore, Key, KeyRange, Status, StoreError, StoreFuture,
};

/// Checkpoints in the DynamoDB table `table`.
#[derive(Clone, Debug)]
pub struct DynamoCheckpoints {
    client: Client,
    table: String,
}

impl DynamoCheckpoints {
    pub fn new(client: Client, table: &str) -> Self {
        DynamoCheckpoints {
            client,
            table: table.to_owned(),
        }
    }

    /// A client from an SDK configuration.
    pub fn from_config(config: &aws_config::SdkConfig, table: &str) -> Self {
        DynamoCheckpoints::new(Client::new(config), table)
    }

    /// A client configured the SDK's standard way (credentials chain, region, and endpoint
    /// overrides through `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_DYNAMODB`).
    pub async fn from_environment(table: &str) -> Self {
        DynamoCheckpoints::from_config(&aws_config::load_from_env().await, table)
    }

    fn error<E>(&self, error: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = error.code().unwrap_or_default().to_owned();
        let transient = matches!(
            error,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ) || matches!(
            code.as_str(),
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
        );
        let message = if code == "ResourceNotFoundException" {
            format!("DynamoDB table {} does not exist", self.table)
        } else {
            format!(
                "DynamoDB table {}: {}",
                self.table,
                DisplayErrorContext(&error)
            )
        };
        StoreError { message, transient }
    }
}

fn is_conditional_failure<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn to_item(c: &Checkpoint) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("name".to_owned(), AttributeValue::S(c.name.clone())),
        (
            "status".to_owned(),
            AttributeValue::S(c.status.as_str().to_owned()),
        ),
        ("rows_updated".to_owned(), number(c.rows_updated)),
        ("batches".to_owned(), number(c.batches)),
        ("passes".to_owned(), number(c.passes)),
        ("started_at".to_owned(), number(c.started_at)),
        ("updated_at".to_owned(), number(c.updated_at)),
        ("version".to_owned(), number(c.version)),
    ]);
    let optional = [
        // A single integer key stays a number, as before; any other key is typed JSON.
        (
            "cursor",
            c.cursor.as_ref().and_then(Key::as_int).map(number),
        ),
        (
            "cursor_key",
            c.cursor
                .as_ref()
                .filter(|k| k.as_int().is_none())
                .map(|k| AttributeValue::S(k.to_json().to_string())),
        ),
        (
            "key_range",
            c.range
                .as_ref()
                .map(|r| AttributeValue::S(r.to_json().to_string())),
        ),
        ("lease_owner", c.lease_owner.clone().map(AttributeValue::S)),
        ("lease_expires_at", c.lease_expires_at.map(number)),
        ("last_error", c.last_error.clone().map(AttributeValue::S)),
        ("completed_at", c.completed_at.map(number)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            item.insert(key.to_owned(), value);
        }
    }
    item
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Checkpoint {
    let text = |key: &str| item.get(key).and_then(|v| v.as_s().ok()).cloned();
    let int = |key: &str| {
        item.get(key)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i64>().ok())
    };
    let count = |key: &str| int(key).unwrap_or(0).max(0) as u64;
    let cursor = match text("cursor_key") {
        Some(json) => Key::parse(&json).map(Some),
        None => Ok(int("cursor").map(Key::int)),
    };
    let range = text("key_range")
        .as_deref()
        .map(KeyRange::parse)
        .transpose();
    let mut checkpoint = Checkpoint {
        name: text("name").unwrap_or_default(),
        // An unreadable status is treated as failed: nothing runs until an operator looks.
        status: text("status")
            .as_deref()
            .and_then(Status::parse)
            .unwrap_or(Status::Failed),
        cursor: cursor.clone().unwrap_or(None),
        rows_updated: count("rows_updated"),
        batches: count("batches"),
        passes: count("passes"),
        lease_owner: text("lease_owner"),
        lease_expires_at: int("lease_expires_at"),
        last_error: text("last_error"),
        started_at: int("started_at").unwrap_or(0),
        updated_at: int("updated_at").unwrap_or(0),
        completed_at: int("completed_at"),
        version: count("version"),
        range: range.clone().unwrap_or(None),
    };
    // An unreadable cursor stops the backfill: an operator resets it.
    if let Err(problem) = cursor.and(range) {
        checkpoint.status = Status::Failed;
        checkpoint.last_error = Some(format!("unreadable cursor: {problem}"));
    }
    checkpoint
}

impl CheckpointStore for DynamoCheckpoints {
    fn describe(&self) -> String {
        format!("dynamodb table {}", self.table)
    }

    fn load<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Checkpoint>> {
        Box::pin(async move {
            let item = self.item(name).await?;
            Ok(item.filter(|i| !is_tombstone(i)).as_ref().map(from_item))
        })
    }

    /// A new checkpoint where there is none, or where a reset left a tombstone: then with the
    /// version after the tombstone's, so versions keep rising across a reset.
    fn create<'a>(&'a self, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let existing = self.item(&checkpoint.name).await?;
            let request = self.client.put_item().table_name(&self.table);
            let request = match existing.as_ref().filter(|i| is_tombstone(i)) {
                Some(tombstone) => {
                    let version = version_of(tombstone);
                    let mut next = checkpoint.clone();
                    next.version = next.version.max(version + 1);
                    request
                        .set_item(Some(to_item(&next)))
                        .condition_expression("attribute_exists(#r) AND #v = :tombstone")
                        .expression_attribute_names("#r", TOMBSTONE)
                        .expression_attribute_names("#v", "version")
                        .expression_attribute_values(":tombstone", number(version))
                }
                None if existing.is_some() => return Ok(()),
                None => request
                    .set_item(Some(to_item(checkpoint)))
                    .condition_expression("attribute_not_exists(#n)")
                    .expression_attribute_names("#n", "name"),
            };
            match request.send().await {
                Ok(_) => Ok(()),
                Err(error) if is_conditional_failure(&error) => Ok(()),
                Err(error) => Err(self.error(error)),
            }
        })
    }

    fn write<'a>(&'a self, checkpoint: &'a Checkpoint) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let previous = checkpoint.version.saturating_sub(1);
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(to_item(checkpoint)))
                .condition_expression(
                    "attribute_exists(#n) AND attribute_not_exists(#r) AND #v = :previous",
                )
                .expression_attribute_names("#n", "name")
                .expression_attribute_names("#r", TOMBSTONE)
                .expression_attribute_names("#v", "version")
                .expression_attribute_values(":previous", number(previous))
                .send()
                .await;
            match result {
                Ok(_) => Ok(true),
                Err(error) if is_conditional_failure(&error) => Ok(false),
                Err(error) => Err(self.error(error)),
            }
        })
    }

    /// Replaces the checkpoint with a tombstone of the next version (never deletes it): a
    /// runner frozen before the reset holds an old version, and no later checkpoint may take
    /// that version again and accept its write.
    fn delete<'a>(&'a self, name: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            for _ in 0..TOMBSTONE_TRIES {
                let Some(item) = self.item(name).await?.filter(|i| !is_tombstone(i)) else {
                    return Ok(false);
                };
                let version = version_of(&item);
                let tombstone = HashMap::from([
                    ("name".to_owned(), AttributeValue::S(name.to_owned())),
                    ("version".to_owned(), number(version + 1)),
                    (TOMBSTONE.to_owned(), number(now_ms())),
                ]);
                let result = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(tombstone))
                    .condition_expression("attribute_not_exists(#r) AND #v = :version")
                    .expression_attribute_names("#r", TOMBSTONE)
                    .expression_attribute_names("#v", "version")
                    .expression_attribute_values(":version", number(version))
                    .send()
                    .await;
                match result {
                    Ok(_) => return Ok(true),
                    // A runner's batch wrote first: read again.
                    Err(error) if is_conditional_failure(&error) => continue,
                    Err(error) => return Err(self.error(error)),
                }
            }
            Err(StoreError {
                message: format!(
                    "{}: the checkpoint of {name} kept changing; try again",
                    self.describe()
                ),
                transient: true,
            })
        })
    }
}

/// The attribute that marks a reset checkpoint's tombstone (its value: when, in Unix ms).
const TOMBSTONE: &str = "reset_at";
const TOMBSTONE_TRIES: usize = 20;

fn is_tombstone(item: &HashMap<String, AttributeValue>) -> bool {
    item.contains_key(TOMBSTONE)
}

fn version_of(item: &HashMap<String, AttributeValue>) -> u64 {
    item.get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl DynamoCheckpoints {
    /// The stored item of `name` (a checkpoint or a tombstone), read consistently.
    async fn item(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("name", AttributeValue::S(name.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(output.item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let mut checkpoint = Checkpoint::new("users_display_name", 1_700_000_000_000);
        checkpoint.cursor = Some(Key::int(42));
        checkpoint.rows_updated = 40;
        checkpoint.lease_owner = Some("host:1".into());
        checkpoint.lease_expires_at = Some(1_700_000_015_000);
        checkpoint.version = 7;
        assert_eq!(from_item(&to_item(&checkpoint)), checkpoint);
        let fresh = Checkpoint::new("b", 5);
        assert_eq!(
            from_item(&to_item(&fresh)),
            fresh,
            "absent options stay absent"
        );
    }

    #[test]
    fn typed_cursors_round_trip_and_an_unreadable_one_fails_the_backfill() {
        use shiftguard_core::backfill::KeyValue;
        let mut checkpoint = Checkpoint::new("b", 5);
        checkpoint.cursor = Key::new(vec![
            KeyValue::Text("Ä tenant".into()),
            KeyValue::Uuid("0b6f3e1c-2d4a-4f8e-9a1b-3c5d7e9f1a2b".into()),
        ]);
        let item = to_item(&checkpoint);
        assert!(item.contains_key("cursor_key") && !item.contains_key("cursor"));
        assert_eq!(from_item(&item), checkpoint);
        let mut broken = item;
        broken.insert("cursor_key".into(), AttributeValue::S("{".into()));
        let read = from_item(&broken);
        assert_eq!(read.status, Status::Failed);
        assert!(
            read.last_error
                .is_some_and(|e| e.starts_with("unreadable cursor"))
        );
    }
}
