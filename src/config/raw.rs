//! Stage one: the config file exactly as written, before any value is checked.
//!
//! Every leaf is an optional string, even the numbers and the address. That is deliberate:
//! serde stops at the first value it cannot convert, while validation (stage two, in
//! `validate.rs`) keeps going and reports every bad value in one run. The schema
//! (`deny_unknown_fields`, mappings vs lists) is still enforced here, so a misspelt key
//! never silently falls back to a default.
//!
//! None of these types implement `Debug`: `RawSecret::value` holds a literal secret.

use serde::Deserialize;

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    pub server: Option<RawServer>,
    pub state: Option<RawState>,
    pub auth: Option<RawAuth>,
    pub log: Option<RawLog>,
    pub journal: Option<RawJournal>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawJournal {
    pub archive_dir: Option<String>,
    pub max_age: Option<String>,
    pub max_records: Option<String>,
    pub max_bytes: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: Option<String>,
    pub base_path: Option<String>,
    pub public_url: Option<String>,
    pub max_body_bytes: Option<String>,
    pub page_size: Option<String>,
    pub max_page_size: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawState {
    pub dir: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawAuth {
    pub tokens: Option<Vec<RawToken>>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawToken {
    pub name: Option<String>,
    pub secret: Option<RawSecret>,
}

/// Where a token's secret comes from; exactly one of the three must be set.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSecret {
    pub env: Option<String>,
    pub file: Option<String>,
    pub value: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}
