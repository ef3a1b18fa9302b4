//! The HTTP layer's request body decoding, and what the handlers do with a body next.

use serde_json::Value;

use crate::http::decode_json_body;
use crate::scim::error::ScimType;
use crate::scim::patch;
use crate::scim::resource::{normalize_resource, validate};
use crate::scim::schema::ResourceKind;

/// Input: a request body, raw bytes. At the default depth limit (32) and at the least
/// and most a configuration allows (4, 128): decoding never panics; a refusal is a 400
/// `invalidSyntax`; what is accepted was UTF-8, nests no deeper than the limit, and is
/// exactly what a JSON parser reads; every valid body within the limit is accepted unless
/// an object names a member twice (in any case).
/// Whatever is accepted then goes through what POST/PUT (normalise, validate) and PATCH
/// (parse the operations) do with a body, which never panic either.
pub fn http_body(data: &[u8]) {
    // `json_depth_over` counts brackets; serde_json's own limit (128) is the backstop.
    let plain = serde_json::from_slice::<Value>(data).ok();
    for max_depth in [32, 4, 128] {
        match decode_json_body(data, max_depth) {
            Ok(value) => {
                assert!(
                    std::str::from_utf8(data).is_ok(),
                    "accepted bytes that are not UTF-8"
                );
                assert!(
                    depth(&value) <= max_depth,
                    "accepted nesting deeper than {max_depth}"
                );
                assert_eq!(
                    Some(&value),
                    plain.as_ref(),
                    "decoded differently than JSON reads"
                );
            }
            Err(e) => {
                assert_eq!(e.status, 400, "{e:?}");
                assert_eq!(e.scim_type, Some(ScimType::InvalidSyntax), "{e:?}");
                if let Some(value) = &plain {
                    assert!(
                        depth(value) > max_depth || e.detail.contains(" is given twice"),
                        "refused a valid body nesting {} deep (limit {max_depth}) without a repeated member: {e:?}",
                        depth(value)
                    );
                }
            }
        }
    }
    let Some(value) = plain else {
        return;
    };
    for kind in [ResourceKind::User, ResourceKind::Group] {
        if let Ok(doc) = normalize_resource(kind, &value) {
            let _ = validate(kind, &doc);
        }
    }
    let _ = patch::parse_request(&value);
}

/// How deep arrays and objects nest: 0 for a scalar, 1 for `[]` or `{}`.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
