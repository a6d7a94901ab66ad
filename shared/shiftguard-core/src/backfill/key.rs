//! A position in a backfill's key order: one typed value per key column. The cursor of a
//! checkpoint, the first pending row and the bounds of a batch are all `Key`s. A key survives
//! every store without loss: in JSON a single integer key is a bare number (as it always was), and
//! any other key is tagged with its type (`{"uuid": …}`, `{"text": …}`, `{"bytes": "<hex>"}`),
//! a composite key an array of those, so a UUID stays a UUID and a text key keeps its bytes.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

/// One value of one key column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyValue {
    Int(i64),
    /// A UUID in its canonical text form, as the database prints it.
    Uuid(String),
    Text(String),
    Bytes(Vec<u8>),
}

/// One value per key column, in the key's column order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key(Vec<KeyValue>);

impl Key {
    /// A key of these values (at least one).
    pub fn new(values: Vec<KeyValue>) -> Option<Key> {
        (!values.is_empty()).then_some(Key(values))
    }

    /// A single integer key.
    pub fn int(value: i64) -> Key {
        Key(vec![KeyValue::Int(value)])
    }

    pub fn values(&self) -> &[KeyValue] {
        &self.0
    }

    /// The value of a single integer key.
    pub fn as_int(&self) -> Option<i64> {
        match self.0.as_slice() {
            [KeyValue::Int(value)] => Some(*value),
            _ => None,
        }
    }

    /// The key as JSON: a bare number for a single integer key, else tagged values.
    pub fn to_json(&self) -> Value {
        match self.0.as_slice() {
            [KeyValue::Int(value)] => Value::from(*value),
            [value] => tagged(value),
            values => Value::Array(values.iter().map(tagged).collect()),
        }
    }

    /// Reads what [`Key::to_json`] wrote; the problem when it is not a key.
    pub fn from_json(value: &Value) -> Result<Key, String> {
        match value {
            Value::Array(values) if !values.is_empty() => values
                .iter()
                .map(untagged)
                .collect::<Result<Vec<_>, _>>()
                .map(Key),
            value => untagged(value).map(|v| Key(vec![v])),
        }
    }

    /// Parses the JSON text of a stored key.
    pub fn parse(text: &str) -> Result<Key, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("a stored key is not JSON: {e}"))?;
        Key::from_json(&value)
    }
}

fn tagged(value: &KeyValue) -> Value {
    let (tag, value) = match value {
        KeyValue::Int(v) => return Value::from(*v),
        KeyValue::Uuid(v) => ("uuid", Value::from(v.as_str())),
        KeyValue::Text(v) => ("text", Value::from(v.as_str())),
        KeyValue::Bytes(v) => ("bytes", Value::from(hex(v))),
    };
    serde_json::json!({ tag: value })
}

fn untagged(value: &Value) -> Result<KeyValue, String> {
    if let Some(int) = value.as_i64() {
        return Ok(KeyValue::Int(int));
    }
    let unknown = || format!("`{value}` is not a key value");
    let Some((tag, inner)) = value
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.iter().next())
    else {
        return Err(unknown());
    };
    let text = inner.as_str().ok_or_else(unknown)?;
    match tag.as_str() {
        "uuid" => Ok(KeyValue::Uuid(text.to_owned())),
        "text" => Ok(KeyValue::Text(text.to_owned())),
        "bytes" => unhex(text).map(KeyValue::Bytes).ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The keys of one shard of a backfill: those after `after` (from the first key when `None`)
/// up to `until` inclusive (to the last when `None`). Shards of one backfill are contiguous and
/// together cover every key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyRange {
    pub after: Option<Key>,
    pub until: Option<Key>,
}

impl KeyRange {
    /// `[after, until]` as JSON, `null` for an open end.
    pub fn to_json(&self) -> Value {
        let end = |key: &Option<Key>| key.as_ref().map_or(Value::Null, Key::to_json);
        Value::Array(vec![end(&self.after), end(&self.until)])
    }

    /// Reads what [`KeyRange::to_json`] wrote.
    pub fn parse(text: &str) -> Result<KeyRange, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("a stored key range is not JSON: {e}"))?;
        let end = |v: &Value| match v {
            Value::Null => Ok(None),
            v => Key::from_json(v).map(Some),
        };
        match value.as_array().map(Vec::as_slice) {
            Some([after, until]) => Ok(KeyRange {
                after: end(after)?,
                until: end(until)?,
            }),
            _ => Err(format!("`{value}` is not a key range")),
        }
    }

    /// The ranges of `n` shards split at `boundaries` (n - 1 keys in order).
    pub fn split(boundaries: &[Key]) -> Vec<KeyRange> {
        let mut ranges = Vec::with_capacity(boundaries.len() + 1);
        let mut after = None;
        for boundary in boundaries {
            ranges.push(KeyRange {
                after: after.clone(),
                until: Some(boundary.clone()),
            });
            after = Some(boundary.clone());
        }
        ranges.push(KeyRange { after, until: None });
        ranges
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// A key as logs, EMF lines, notices and gate reasons show it: a key of integers as it is; any
/// other only where the backfill's `show_keys` allows (a text key may be an e-mail address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShownKey {
    Shown(Key),
    Hidden,
}

impl ShownKey {
    pub fn new(key: Key, show_keys: bool) -> ShownKey {
        let integers = key.0.iter().all(|v| matches!(v, KeyValue::Int(_)));
        if show_keys || integers {
            ShownKey::Shown(key)
        } else {
            ShownKey::Hidden
        }
    }

    /// `key` as shown, `none` when there is none.
    pub fn text(key: Option<&Key>, show_keys: bool) -> String {
        key.map_or_else(
            || "none".to_owned(),
            |k| ShownKey::new(k.clone(), show_keys).to_string(),
        )
    }
}

impl fmt::Display for ShownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShownKey::Shown(key) => key.fmt(f),
            ShownKey::Hidden => f.write_str("(hidden; show_keys = true shows it)"),
        }
    }
}

impl Serialize for ShownKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ShownKey::Shown(key) => key.serialize(serializer),
            ShownKey::Hidden => serializer.serialize_str("hidden"),
        }
    }
}

impl fmt::Display for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyValue::Int(v) => write!(f, "{v}"),
            KeyValue::Uuid(v) => f.write_str(v),
            KeyValue::Text(v) => write!(f, "{v:?}"),
            KeyValue::Bytes(v) => write!(f, "x'{}'", hex(v)),
        }
    }
}

/// `42`, `0b6f…`, `"smith"`, `x'00ff'`; a composite key as `(acme, 42)`.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [value] => value.fmt(f),
            values => {
                f.write_str("(")?;
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    value.fmt(f)?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(key: &Key) -> Key {
        let text = serde_json::to_string(key).expect("serialize");
        Key::parse(&text).expect("parse")
    }

    #[test]
    fn a_single_integer_key_is_a_bare_number_as_before() {
        let key = Key::int(42);
        assert_eq!(serde_json::to_string(&key).expect("json"), "42");
        assert_eq!(round_trip(&key), key);
        assert_eq!(key.as_int(), Some(42));
        assert_eq!(key.to_string(), "42");
    }

    #[test]
    fn every_kind_of_key_survives_json_without_loss() {
        let keys = [
            Key(vec![KeyValue::Uuid(
                "0b6f3e1c-2d4a-4f8e-9a1b-3c5d7e9f1a2b".into(),
            )]),
            Key(vec![KeyValue::Text(
                "Ünïcode \"quoted\" \u{0}\n end ".into(),
            )]),
            Key(vec![KeyValue::Bytes(vec![0, 1, 0xfe, 0xff])]),
            Key(vec![KeyValue::Text("acme".into()), KeyValue::Int(i64::MIN)]),
            Key(vec![KeyValue::Int(7), KeyValue::Int(-1)]),
        ];
        for key in keys {
            assert_eq!(round_trip(&key), key, "{key}");
            assert_eq!(key.as_int(), None);
        }
        let uuid = Key(vec![KeyValue::Uuid("u".into())]);
        assert_eq!(uuid.to_json(), serde_json::json!({"uuid": "u"}));
        let composite = Key(vec![KeyValue::Text("acme".into()), KeyValue::Int(42)]);
        assert_eq!(
            composite.to_json(),
            serde_json::json!([{"text": "acme"}, 42])
        );
        assert_eq!(composite.to_string(), "(\"acme\", 42)");
    }

    #[test]
    fn shard_ranges_are_contiguous_and_survive_json() {
        let boundaries = [Key::int(25), Key::int(50), Key::int(75)];
        let ranges = KeyRange::split(&boundaries);
        assert_eq!(ranges.len(), 4);
        assert_eq!(ranges[0].after, None);
        assert_eq!(ranges[3].until, None);
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].until, pair[1].after);
        }
        for range in &ranges {
            let text = range.to_json().to_string();
            assert_eq!(&KeyRange::parse(&text).expect("range"), range);
        }
        assert_eq!(KeyRange::split(&[]), [KeyRange::default()]);
        assert!(KeyRange::parse("[1]").is_err());
    }

    #[test]
    fn what_is_not_a_key_is_refused_with_the_reason() {
        for bad in [
            "[]",
            "{}",
            "\"x\"",
            "{\"bytes\": \"0\"}",
            "{\"float\": \"1\"}",
            "1.5",
        ] {
            assert!(Key::parse(bad).is_err(), "{bad}");
        }
        assert!(Key::parse("not json").unwrap_err().contains("not JSON"));
        assert_eq!(Key::new(Vec::new()), None);
    }
}
