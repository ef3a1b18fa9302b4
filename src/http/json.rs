//! JSON request bodies read strictly: an object may not name a member twice.
//!
//! RFC 8259 leaves duplicate names to the parser ("the behavior of software that receives
//! such an object is unpredictable"); serde_json keeps the last one. A body like
//! `{"userName":"alice","userName":"root"}` would then mean one thing to us and possibly
//! another to a proxy, an audit tool or a WAF that read it first — and SCIM makes the
//! case worse: attribute names are case-insensitive (RFC 7643 §2.1), so `userName` and
//! `USERNAME` are the same attribute given twice. Both are refused, at every depth, with
//! the two spellings and the position in the message.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON value, refusing duplicate member names (compared
/// ASCII-case-insensitively). Errors carry serde_json's line and column.
pub(crate) fn from_slice_strict(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Objects with more members than this index their lowercased names in a set; smaller
/// ones compare with each member (no allocation for the usual resource).
const LINEAR_SCAN_MEMBERS: usize = 16;

#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
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
        // serde_json never hands over a non-finite float from text.
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        let mut folded: Option<HashSet<String>> = None;
        while let Some(name) = access.next_key::<String>()? {
            let taken = match &mut folded {
                Some(set) => (!set.insert(name.to_ascii_lowercase())).then(|| earlier(&map, &name)),
                None => map.keys().find(|k| k.eq_ignore_ascii_case(&name)).cloned(),
            };
            if let Some(first) = taken {
                return Err(de::Error::custom(duplicate(&first, &name)));
            }
            let value = access.next_value_seed(StrictValue)?;
            map.insert(name, value);
            if folded.is_none() && map.len() > LINEAR_SCAN_MEMBERS {
                folded = Some(map.keys().map(|k| k.to_ascii_lowercase()).collect());
            }
        }
        Ok(Value::Object(map))
    }
}

/// The earlier spelling of `name` in `map` (case-insensitively).
fn earlier(map: &Map<String, Value>, name: &str) -> String {
    map.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn duplicate(first: &str, second: &str) -> String {
    if first == second {
        format!("the member \"{}\" is given twice", printable(first))
    } else {
        format!(
            "the member \"{}\" is given twice (as \"{}\" and \"{}\"; attribute names are case-insensitive)",
            printable(first),
            printable(first),
            printable(second)
        )
    }
}

/// A name as it goes into an error message: control characters escaped, at most 64
/// characters.
fn printable(name: &str) -> String {
    let mut out: String = name.chars().take(64).flat_map(char::escape_debug).collect();
    if name.chars().nth(64).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::from_slice_strict;

    #[test]
    fn reads_what_serde_json_reads_when_no_name_repeats() {
        let text = r#"{"a":[1,-2,3.5,true,null,"x",{"b":{}}],"B":"é","c":18446744073709551615}"#;
        let strict = from_slice_strict(text.as_bytes()).expect("valid");
        let plain: serde_json::Value = serde_json::from_str(text).expect("valid");
        assert_eq!(strict, plain);
    }

    #[test]
    fn a_member_given_twice_is_refused_with_its_name_and_position() {
        let e = from_slice_strict(br#"{"userName":"a","userName":"b"}"#).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("\"userName\" is given twice"), "{message}");
        assert!(message.contains("line 1 column"), "{message}");
    }

    #[test]
    fn names_differing_only_in_case_are_the_same_attribute() {
        let e = from_slice_strict(br#"{"name":{"givenName":"a","GIVENNAME":"b"}}"#).unwrap_err();
        let message = e.to_string();
        assert!(
            message.contains("as \"givenName\" and \"GIVENNAME\""),
            "{message}"
        );
    }

    #[test]
    fn duplicates_are_found_in_large_objects_too() {
        let mut text = String::from("{");
        for i in 0..100 {
            text.push_str(&format!("\"k{i}\":{i},"));
        }
        text.push_str("\"K57\":0}");
        let e = from_slice_strict(text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("as \"k57\" and \"K57\""), "{e}");
    }

    #[test]
    fn the_same_name_in_sibling_objects_is_fine() {
        let value = from_slice_strict(br#"[{"value":"1"},{"value":"2"}]"#).expect("valid");
        assert_eq!(value, json!([{"value":"1"},{"value":"2"}]));
    }

    #[test]
    fn trailing_bytes_after_the_value_are_refused() {
        assert!(from_slice_strict(br#"{} {}"#).is_err());
        assert!(from_slice_strict(b"{}  \n").is_ok());
    }
}
