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
    pub target: Option<RawTarget>,
    pub mapping: Option<RawMapping>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawTarget {
    pub sqlite: Option<RawSqliteTarget>,
    pub delivery: Option<String>,
    pub ldap: Option<RawLdapTarget>,
}

/// A setting given in the file, or taken from the environment or a file (like secrets).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawText {
    Plain(String),
    From(RawSecret),
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLdapTarget {
    pub urls: Option<Vec<RawText>>,
    pub bind_dn: Option<RawText>,
    pub bind_password: Option<RawSecret>,
    pub base: Option<RawText>,
    pub starttls: Option<String>,
    pub ca_file: Option<String>,
    pub client_cert: Option<RawClientCert>,
    pub connect_timeout: Option<String>,
    pub operation_timeout: Option<String>,
    pub pool_size: Option<String>,
}

/// A client certificate for TLS, used to bind with SASL EXTERNAL.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawClientCert {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawSqliteTarget {
    pub path: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMapping {
    pub users: Option<RawResourceMap>,
    pub groups: Option<RawResourceMap>,
    pub memberships: Option<RawMemberships>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawResourceMap {
    pub table: Option<String>,
    pub key: Option<String>,
    pub scope: Option<String>,
    pub columns: Option<std::collections::BTreeMap<String, RawColumn>>,
    pub default_groups: Option<Vec<String>>,
    pub on_disable: Option<RawOnDisable>,
    pub on_delete: Option<String>,
    pub purge_after: Option<String>,
    pub archive_column: Option<String>,
    /// LDAP: the entry's DN template, its object classes, attributes and members.
    pub dn: Option<String>,
    pub object_classes: Option<Vec<String>>,
    pub attributes: Option<std::collections::BTreeMap<String, RawColumn>>,
    pub members: Option<RawMembers>,
    pub create_parents: Option<String>,
    #[serde(rename = "match")]
    pub match_attrs: Option<Vec<String>>,
    pub on_existing: Option<String>,
    pub archive_to: Option<String>,
}

/// `on_disable:` either maps attributes/columns to the values they take while disabled,
/// or (LDAP) spells the policy out.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawOnDisable {
    Policy(RawDisablePolicy),
    Values(std::collections::BTreeMap<String, String>),
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawDisablePolicy {
    pub set: Option<std::collections::BTreeMap<String, String>>,
    pub bits: Option<std::collections::BTreeMap<String, String>>,
    pub move_to: Option<String>,
    pub remove_memberships: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMembers {
    pub attribute: Option<String>,
    pub value: Option<String>,
    pub placeholder: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawColumn {
    pub source: Option<String>,
    pub expr: Option<String>,
    pub value: Option<String>,
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub required: Option<String>,
    pub create_only: Option<String>,
    pub multi: Option<String>,
    pub unique: Option<String>,
    pub default: Option<String>,
    pub when_empty: Option<String>,
    /// LDAP: `dn` — the value is a SCIM id written as the linked entry's DN (manager).
    pub reference: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawMemberships {
    pub table: Option<String>,
    pub group_column: Option<String>,
    pub member_column: Option<String>,
    pub origin_column: Option<String>,
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
