//! What policy reads of a request body: the body as one JSON document, for
//! `match.json` (see [`crate::policy::json`]).
//!
//! Only the bytes that are relayed are read, once: the door collects the body (bounded),
//! reads it here, and relays those same bytes. The reading is strict where backends
//! disagree: a duplicate key (`{"amount":10,"amount":5000}`, which one parser reads as
//! 10 and another as 5000) makes the body unreadable, as do trailing data, invalid
//! UTF-8, numbers out of range and nesting deeper than 128. An unreadable body puts
//! every `json` condition in doubt, which only restricting rules match (fail closed).

use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::policy::JsonBody;

/// The body for policy: absent when empty, unreadable when larger than `max` bytes or
/// not exactly one JSON document without duplicate keys.
pub fn json_body(body: &[u8], max: usize) -> JsonBody {
    if body.is_empty() {
        return JsonBody::Absent;
    }
    if body.len() > max {
        return JsonBody::Unreadable;
    }
    match strict(body) {
        Ok(value) => JsonBody::Parsed(Arc::new(value)),
        Err(_) => JsonBody::Unreadable,
    }
}

/// One JSON document, refusing duplicate keys.
pub fn strict(body: &[u8]) -> serde_json::Result<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A [`Value`] seed whose objects refuse a key they already have.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("a number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(Strict)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::{json_body, strict};
    use crate::policy::JsonBody;

    #[test]
    fn duplicate_keys_anywhere_make_the_body_unreadable() {
        assert!(strict(br#"{"amount":10,"amount":5000}"#).is_err());
        assert!(strict(br#"{"a":{"b":1,"b":2}}"#).is_err());
        assert!(strict(br#"[{"x":1},{"x":1,"y":2,"x":3}]"#).is_err());
        // An escape spelling the same key is the same key.
        assert!(strict(br#"{"amount":10,"am\u006funt":5000}"#).is_err());
        assert_eq!(strict(br#"{"a":1,"b":{"a":2}}"#).unwrap()["b"]["a"], 2);
    }

    #[test]
    fn anything_but_one_json_document_is_unreadable() {
        for body in [
            &b"amount=5000"[..],
            br#"{"amount":10} {"amount":5000}"#,
            br#"{"amount":10"#,
            b"{\"a\":\"\xff\"}",
            br#"{"a":1e400}"#,
            br#"{"a":"\ud800"}"#,
        ] {
            assert_eq!(json_body(body, 1 << 20), JsonBody::Unreadable, "{}", String::from_utf8_lossy(body));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(json_body(deep.as_bytes(), 1 << 20), JsonBody::Unreadable);
    }

    #[test]
    fn too_large_is_unreadable_and_empty_is_absent() {
        assert_eq!(json_body(br#"{"amount":10}"#, 5), JsonBody::Unreadable);
        assert_eq!(json_body(b"", 5), JsonBody::Absent);
        assert!(matches!(json_body(b" {\"amount\": 10}\n", 100), JsonBody::Parsed(_)));
    }
}
