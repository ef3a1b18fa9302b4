//! Shapes stored resources into response documents: `meta.location`, `$ref`s, the
//! read-only `groups` of a user, `members: []` for an empty group, then the projection.

use serde_json::{Map, Value, json};

use crate::engine::Resource;
use crate::scim::resource::Projection;
use crate::scim::schema::{ENTERPRISE_URN, ResourceKind};

pub fn resource(res: &Resource, base: &str, projection: &Projection) -> Value {
    let stored = &res.stored;
    let kind = stored.kind;
    let mut doc: Map<String, Value> = stored.doc.clone();
    if let Some(Value::Object(meta)) = doc.get_mut("meta") {
        meta.insert(
            "location".into(),
            Value::String(format!("{base}/{}/{}", kind.endpoint(), stored.id)),
        );
    }
    match kind {
        ResourceKind::Group => {
            let members = match doc.remove("members") {
                Some(Value::Array(mut members)) => {
                    for m in members.iter_mut().filter_map(Value::as_object_mut) {
                        let endpoint = match m.get("type").and_then(Value::as_str) {
                            Some("Group") => "Groups",
                            _ => "Users",
                        };
                        if let Some(id) = m.get("value").and_then(Value::as_str) {
                            let r = format!("{base}/{endpoint}/{id}");
                            m.insert("$ref".into(), Value::String(r));
                        }
                    }
                    members
                }
                _ => Vec::new(),
            };
            doc.insert("members".into(), Value::Array(members));
        }
        ResourceKind::User => {
            if let Some(Value::Object(manager)) = doc
                .get_mut(ENTERPRISE_URN)
                .and_then(|e| e.get_mut("manager"))
                && let Some(id) = manager.get("value").and_then(Value::as_str)
            {
                let r = format!("{base}/Users/{id}");
                manager.insert("$ref".into(), Value::String(r));
            }
            if !res.groups.is_empty() {
                let groups: Vec<Value> = res
                    .groups
                    .iter()
                    .map(|(id, display)| {
                        let mut g = json!({"value": id, "$ref": format!("{base}/Groups/{id}"), "type": "direct"});
                        if let (Some(d), Some(obj)) = (display, g.as_object_mut()) {
                            obj.insert("display".into(), Value::String(d.clone()));
                        }
                        g
                    })
                    .collect();
                doc.insert("groups".into(), Value::Array(groups));
            }
        }
    }
    projection.apply(kind, &mut doc);
    Value::Object(doc)
}
