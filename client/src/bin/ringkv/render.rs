//! How results look: text for people, JSON for scripts.

use ringkv_client::{NodeInfo, Value};
use serde_json::json;

/// What a command produced.
#[derive(Debug)]
pub enum Outcome {
    Read { key: String, found: Option<Value> },
    Written { key: String, timestamp_micros: i64 },
    Deleted { key: String, timestamp_micros: i64 },
    Info(NodeInfo),
}

/// Bytes as text when they are UTF-8, otherwise as `0x` and hex digits.
pub fn bytes_for_display(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("0x{}", hex::encode(bytes)),
    }
}

/// Text form.
pub fn text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Read {
            found: Some(value), ..
        } => bytes_for_display(&value.value),
        Outcome::Read { found: None, .. } => "(not found)".to_owned(),
        Outcome::Written { .. } | Outcome::Deleted { .. } => "OK".to_owned(),
        Outcome::Info(info) => format!(
            "node id:            {}\nnode name:          {}\nversion:            {}\nuptime:             {}s\nreplication factor: {}",
            info.id, info.name, info.version, info.uptime_seconds, info.replication_factor
        ),
    }
}

/// JSON form, one object.
pub fn json(outcome: &Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Read { key, found: None } => json!({ "key": key, "found": false }),
        Outcome::Read {
            key,
            found: Some(value),
        } => {
            let mut object = json!({
                "key": key,
                "found": true,
                "timestamp_micros": value.timestamp_micros,
                "expires_at": value.expires_at,
            });
            match std::str::from_utf8(&value.value) {
                Ok(text) => object["value"] = json!(text),
                Err(_) => object["value_hex"] = json!(hex::encode(&value.value)),
            }
            object
        }
        Outcome::Written {
            key,
            timestamp_micros,
        } => {
            json!({ "key": key, "written": true, "timestamp_micros": timestamp_micros })
        }
        Outcome::Deleted {
            key,
            timestamp_micros,
        } => {
            json!({ "key": key, "deleted": true, "timestamp_micros": timestamp_micros })
        }
        Outcome::Info(info) => json!({
            "node_id": info.id,
            "node_name": info.name,
            "version": info.version,
            "uptime_seconds": info.uptime_seconds,
            "replication_factor": info.replication_factor,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn values_print_as_text_or_hex() {
        assert_eq!(bytes_for_display(b"hello"), "hello");
        assert_eq!(bytes_for_display(&[0xff, 0x00, 0x10]), "0xff0010");
        let outcome = Outcome::Read {
            key: "k".into(),
            found: Some(Value {
                value: Bytes::from_static(&[0xff]),
                timestamp_micros: 7,
                expires_at: None,
            }),
        };
        assert_eq!(text(&outcome), "0xff");
        let object = json(&outcome);
        assert_eq!(object["value_hex"], "ff");
        assert_eq!(object["found"], true);
        assert!(object.get("value").is_none());
    }
}
