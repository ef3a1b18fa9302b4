//! The pure SCIM protocol: filters, attribute and PATCH paths, the PATCH engine.

use serde_json::{Value, json};

use super::kind_line;
use crate::scim::filter::{MAX_FILTER_LEN, parse_filter};
use crate::scim::patch::{self, OpKind, Operation};
use crate::scim::path::{parse_attr_path, parse_patch_path};
use crate::scim::resource::validate;
use crate::scim::schema::ResourceKind;

/// Input: a filter. Parsing never panics, and a parsed filter printed back parses to an
/// equal filter (the printer is canonical).
pub fn filter(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_filter(text) else {
        return;
    };
    let printed = parsed.to_string();
    // The length bound is on what clients send: printing quotes and escapes bare words
    // (a control character becomes six bytes), so the canonical text may exceed it.
    if printed.len() > MAX_FILTER_LEN {
        return;
    }
    assert_eq!(
        parse_filter(&printed).as_ref(),
        Ok(&parsed),
        "{text:?} printed as {printed:?}"
    );
}

/// Input: a path, parsed as an attribute path and as a PATCH path. Parsing never panics,
/// and what parses prints back to text that parses to an equal path.
pub fn path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(parsed) = parse_attr_path(text) {
        let printed = parsed.to_string();
        assert_eq!(
            parse_attr_path(&printed).as_ref(),
            Ok(&parsed),
            "attribute path {text:?} printed as {printed:?}"
        );
    }
    if let Ok(parsed) = parse_patch_path(text) {
        let printed = parsed.to_string();
        // As for filters: the length bound is on input, printing may lengthen a filter.
        if printed.len() > MAX_FILTER_LEN {
            return;
        }
        assert_eq!(
            parse_patch_path(&printed).as_ref(),
            Ok(&parsed),
            "PATCH path {text:?} printed as {printed:?}"
        );
    }
}

/// Input: `<kind>\n<resource JSON><PatchOp JSON>` (two JSON values, any whitespace
/// between). The resource is taken as stored, whatever its shape: a replayed journal
/// export stores images as they are. Parsing and applying never panic; a group's request
/// splits into a member delta or not without panicking; the resource passed in is never
/// changed, and a request whose last operation fails fails as a whole.
pub fn patch(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (kind, rest) = kind_line(text);
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
    let (Some(Ok(Value::Object(doc))), Some(Ok(body))) = (values.next(), values.next()) else {
        return;
    };
    let Ok(ops) = patch::parse_request(&body) else {
        return;
    };
    if kind == ResourceKind::Group {
        let _ = patch::split_member_ops(&ops);
    }
    let snapshot = doc.clone();
    if let Ok(after) = patch::apply(kind, &doc, &ops) {
        // What the engine does next with a patched document.
        let _ = validate(kind, &after);
        assert!(serde_json::to_string(&after).is_ok());
    }
    assert_eq!(doc, snapshot, "apply changed its input");

    // `id` is read-only: appending a replace of it must fail the whole request.
    let mut failing = ops;
    failing.push(Operation {
        op: OpKind::Replace,
        path: parse_patch_path("id").ok(),
        value: Some(json!("x")),
    });
    assert!(
        patch::apply(kind, &doc, &failing).is_err(),
        "a request ending in a replace of id applied"
    );
    assert_eq!(doc, snapshot, "a failing apply changed its input");
}
