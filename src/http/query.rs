//! List and projection parameters, from a query string (form-encoded: `+` is a space,
//! `%22` a quote, as Entra sends them) or from a `POST /.search` body. Parameter names
//! match case-insensitively; unknown parameters (Entra's `aadOptscim062020`) are ignored.

use serde_json::Value;

use crate::http::Settings;
use crate::http::error::ApiError;
use crate::scim::error::ScimError;
use crate::scim::eval;
use crate::scim::filter::{Filter, parse_filter};
use crate::scim::path::{AttrPath, parse_attr_path};
use crate::scim::resource::Projection;
use crate::scim::schema::ResourceKind;
use crate::store::ListQuery;

#[derive(Debug, Clone)]
pub struct ListParams {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    pub start_index: usize,
    pub count: usize,
    pub projection: Projection,
}

#[derive(Default)]
struct Raw {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded: Option<String>,
}

impl Raw {
    /// The field a parameter name fills (names match case-insensitively; unknown → None).
    fn slot(&mut self, key: &str) -> Option<&mut Option<String>> {
        Some(match key.to_ascii_lowercase().as_str() {
            "filter" => &mut self.filter,
            "sortby" => &mut self.sort_by,
            "sortorder" => &mut self.sort_order,
            "startindex" => &mut self.start_index,
            "count" => &mut self.count,
            "attributes" => &mut self.attributes,
            "excludedattributes" => &mut self.excluded,
            _ => return None,
        })
    }
}

impl ListParams {
    pub fn from_query(
        query: Option<&str>,
        kind: Option<ResourceKind>,
        settings: &Settings,
    ) -> Result<ListParams, ApiError> {
        let mut raw = Raw::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if let Some(slot) = raw.slot(&key) {
                *slot = Some(value.into_owned());
            }
        }
        Self::build(raw, kind, settings)
    }

    pub fn from_search_body(
        body: &Value,
        kind: Option<ResourceKind>,
        settings: &Settings,
    ) -> Result<ListParams, ApiError> {
        let Value::Object(obj) = body else {
            return Err(ScimError::invalid_syntax("a SearchRequest must be a JSON object").into());
        };
        let mut raw = Raw::default();
        for (key, value) in obj {
            let text = match value {
                Value::Null => continue,
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                other => {
                    return Err(ScimError::invalid_value(format!(
                        "{key}: {other} is not a string or number"
                    ))
                    .into());
                }
            };
            if let Some(slot) = raw.slot(key) {
                *slot = Some(text);
            }
        }
        Self::build(raw, kind, settings)
    }

    fn build(
        raw: Raw,
        kind: Option<ResourceKind>,
        settings: &Settings,
    ) -> Result<ListParams, ApiError> {
        let filter = match raw.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) if text.len() > settings.max_filter_bytes => {
                return Err(ScimError::invalid_filter(format!(
                    "the filter is {} bytes long; at most {} are accepted (server.max_filter_bytes)",
                    text.len(),
                    settings.max_filter_bytes
                ))
                .into());
            }
            Some(text) => {
                let f = parse_filter(text).map_err(|e| {
                    ScimError::invalid_filter(format!("filter '{}': {e}", clip(text)))
                })?;
                let kinds = kind
                    .map(|k| vec![k])
                    .unwrap_or_else(|| ResourceKind::ALL.to_vec());
                for k in kinds {
                    eval::check(k, &f)?;
                }
                Some(f)
            }
        };
        let sort_by =
            match raw.sort_by.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(text) => Some(parse_attr_path(text).map_err(|e| {
                    ScimError::invalid_value(format!("sortBy '{}': {e}", clip(text)))
                })?),
            };
        let descending = match raw.sort_order.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(s) if s.eq_ignore_ascii_case("ascending") => false,
            Some(s) if s.eq_ignore_ascii_case("descending") => true,
            Some(s) => {
                return Err(ScimError::invalid_value(format!(
                    "sortOrder '{}': expected ascending or descending",
                    clip(s)
                ))
                .into());
            }
        };
        // RFC 7644 §3.4.2.4: startIndex below 1 is read as 1, a negative count as 0.
        let start_index = match raw.start_index.as_deref().map(str::trim) {
            None | Some("") => 1,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| {
                    ScimError::invalid_value(format!("startIndex '{}' is not an integer", clip(s)))
                })?
                .clamp(1, i64::from(u32::MAX)) as usize,
        };
        let count = match raw.count.as_deref().map(str::trim) {
            None | Some("") => settings.page_size,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| {
                    ScimError::invalid_value(format!("count '{}' is not an integer", clip(s)))
                })?
                .clamp(0, settings.max_page_size as i64) as usize,
        };
        let projection = Projection::parse(raw.attributes.as_deref(), raw.excluded.as_deref())?;
        Ok(ListParams {
            filter,
            sort_by,
            descending,
            start_index,
            count,
            projection,
        })
    }

    pub fn into_query(self, kind: Option<ResourceKind>) -> ListQuery {
        ListQuery {
            kind,
            filter: self.filter,
            sort_by: self.sort_by,
            descending: self.descending,
            start_index: self.start_index,
            count: self.count,
        }
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 80 {
        format!("{}...", s.chars().take(77).collect::<String>())
    } else {
        s.to_string()
    }
}
