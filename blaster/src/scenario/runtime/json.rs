//! JSON paths over response bodies: [`lookup`] finds the value at a [`JsonPath`] in one pass
//! of serde_json's parser without building the document. Everything off the path is skipped
//! (`IgnoredAny`); only the value found is materialised. [`equals`] compares a found value
//! with a check's rendered text the way a scenario author means it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::scenario::model::{JsonPath, PathSegment};

/// The value at `path` in the JSON document `body`; `None` when the body is not JSON or the
/// path leads nowhere. With duplicate keys the last one wins, as in `serde_json::Value`.
pub(crate) fn lookup(body: &[u8], path: &JsonPath) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = Seek(&path.segments).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

/// Follows the remaining path segments through one JSON value.
struct Seek<'p>(&'p [PathSegment]);

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0.split_first() {
            None => serde::Deserialize::deserialize(d).map(Some),
            Some((segment, rest)) => d.deserialize_any(Step { segment, rest }),
        }
    }
}

/// One segment of the path, applied to whatever value comes.
struct Step<'p> {
    segment: &'p PathSegment,
    rest: &'p [PathSegment],
}

impl<'de> Visitor<'de> for Step<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(hit) = map.next_key_seed(KeyIs(self.segment))? {
            if hit {
                found = map.next_value_seed(Seek(self.rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let PathSegment::Index(want) = *self.segment else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(None);
        };
        let mut found = None;
        let mut i = 0;
        loop {
            if i == want {
                match seq.next_element_seed(Seek(self.rest))? {
                    Some(v) => found = v,
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            i += 1;
        }
        Ok(found)
    }

    // Scalars: the path goes on, but the value has no members.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// Whether an object key is the segment: a key, or an index written as digits (`$.a.0`
/// reaches `{"a": {"0": …}}` too).
struct KeyIs<'p>(&'p PathSegment);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(match self.0 {
            PathSegment::Key(k) => k == key,
            PathSegment::Index(i) => key.parse::<usize>().is_ok_and(|k| k == *i),
        })
    }
}

/// Whether a JSON value equals a check's expected text (rendered from `equals = …`):
/// strings compare as text; numbers numerically (`200`, `"200"` and `200.0` all match the
/// number 200); booleans and null by their JSON spelling; arrays and objects as parsed JSON.
pub(super) fn equals(found: &Value, expected: &str) -> bool {
    match found {
        Value::String(s) => s == expected,
        Value::Number(n) => {
            let e = expected.trim();
            if let (Some(a), Ok(b)) = (n.as_i64(), e.parse::<i64>()) {
                return a == b;
            }
            if let (Some(a), Ok(b)) = (n.as_u64(), e.parse::<u64>()) {
                return a == b;
            }
            match (n.as_f64(), e.parse::<f64>()) {
                (Some(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        Value::Bool(b) => expected.trim() == if *b { "true" } else { "false" },
        Value::Null => expected.trim() == "null",
        Value::Array(_) | Value::Object(_) => {
            serde_json::from_str::<Value>(expected).is_ok_and(|e| e == *found)
        }
    }
}

/// A found value as a variable's text: strings without quotes, anything else as compact JSON.
pub(super) fn to_var_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::template::json_path;
    use serde_json::json;

    const BODY: &str = r#"{
      "auth": {"ok": true, "token": "eyJhbGciOi.J9", "expires_in": 3600},
      "user": {"id": 42, "name": "Ada \"Countess\" Lovelace", "tags": ["admin", "beta"],
               "score": 97.5, "manager": null, "0": "zero-key"},
      "items": [
        {"sku": "A-1", "price": 12.5, "qty": 2},
        {"sku": "B-2", "price": 7, "qty": 1, "meta": {"color": "red", "sizes": [38, 40]}}
      ],
      "total": 32.5,
      "big": 18446744073709551615,
      "neg": -7,
      "dup": 1, "dup": 2
    }"#;

    fn at(path: &str) -> Option<Value> {
        lookup(BODY.as_bytes(), &json_path(path).unwrap())
    }

    #[test]
    fn finds_values_along_paths() {
        assert_eq!(at("$.auth.token"), Some(json!("eyJhbGciOi.J9")));
        assert_eq!(at("$.auth.ok"), Some(json!(true)));
        assert_eq!(at("$.user.id"), Some(json!(42)));
        assert_eq!(at("$.user.name"), Some(json!("Ada \"Countess\" Lovelace")));
        assert_eq!(at("$.user.tags[1]"), Some(json!("beta")));
        assert_eq!(at("$.user.manager"), Some(Value::Null));
        assert_eq!(at("$.items[1].meta.sizes[0]"), Some(json!(38)));
        assert_eq!(at("items.1.sku"), Some(json!("B-2")));
        assert_eq!(at("$['user']['score']"), Some(json!(97.5)));
        assert_eq!(
            at("$.user.0"),
            Some(json!("zero-key")),
            "index on an object"
        );
        assert_eq!(
            at("$.items[0]"),
            Some(json!({"sku": "A-1", "price": 12.5, "qty": 2}))
        );
        assert_eq!(at("$.big"), Some(json!(u64::MAX)));
        assert_eq!(at("$.dup"), Some(json!(2)), "last duplicate wins");
        assert_eq!(at("$").unwrap()["total"], json!(32.5));
    }

    #[test]
    fn misses_are_none() {
        for path in [
            "$.auth.missing",
            "$.items[2]",
            "$.items[0].sku.deeper",
            "$.user.tags.admin",
            "$.total[0]",
            "$.user.manager.x",
        ] {
            assert_eq!(at(path), None, "{path}");
        }
        let p = json_path("$.a").unwrap();
        assert_eq!(lookup(b"not json", &p), None);
        assert_eq!(lookup(br#"{"a": 1"#, &p), None, "truncated");
        assert_eq!(lookup(br#"{"a": 1} trailing"#, &p), None);
        assert_eq!(lookup(br#"{"a": 1}  "#, &p), Some(json!(1)));
        assert_eq!(lookup(b"", &p), None);
    }

    #[test]
    fn a_broken_document_after_the_value_is_a_miss() {
        let p = json_path("$.a").unwrap();
        assert_eq!(lookup(br#"{"a": 1, "b": [}"#, &p), None);
    }

    #[test]
    fn equality_is_sensible() {
        assert!(equals(&json!("abc"), "abc"));
        assert!(!equals(&json!("abc"), "abd"));
        assert!(equals(&json!("200"), "200"));
        assert!(equals(&json!(200), "200"));
        assert!(equals(&json!(200), "200.0"));
        assert!(equals(&json!(200.0), "200"));
        assert!(!equals(&json!(200), "201"));
        assert!(!equals(&json!(200), "two hundred"));
        assert!(equals(&json!(-7), "-7"));
        assert!(equals(&json!(u64::MAX), "18446744073709551615"));
        assert!(!equals(&json!(u64::MAX), "18446744073709551614"));
        assert!(equals(&json!(12.5), "12.5"));
        assert!(equals(&json!(true), "true"));
        assert!(!equals(&json!(true), "false"));
        assert!(!equals(&json!(false), "0"));
        assert!(equals(&Value::Null, "null"));
        assert!(equals(&json!(["a", 1]), r#"["a",1]"#));
        assert!(equals(&json!({"a": [1, 2]}), r#"{ "a": [1, 2] }"#));
        assert!(!equals(&json!({"a": [1, 2]}), r#"{"a":[2,1]}"#));
    }

    #[test]
    fn variable_text() {
        assert_eq!(to_var_text(&json!("tok")), "tok");
        assert_eq!(to_var_text(&json!(42)), "42");
        assert_eq!(to_var_text(&json!({"a": [1, true]})), r#"{"a":[1,true]}"#);
        assert_eq!(to_var_text(&Value::Null), "null");
    }
}
