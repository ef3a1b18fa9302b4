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
    pub rate_limit: Option<RawRateLimit>,
    pub endpoints: Option<Vec<RawEndpoint>>,
}

/// A further SCIM endpoint with its own tokens, mapping, target and state.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawEndpoint {
    pub name: Option<String>,
    pub base_path: Option<String>,
    pub state_dir: Option<String>,
    pub auth: Option<RawAuth>,
    pub target: Option<RawTarget>,
    pub mapping: Option<RawMapping>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub per_token: Option<RawRate>,
    pub per_client: Option<RawRate>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawRate {
    pub per_second: Option<String>,
    pub burst: Option<String>,
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
    pub give_up_after: Option<String>,
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
    /// LDAP users: where the SCIM `password` goes (`attribute:`, `encoding:`).
    pub password: Option<RawPassword>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawPassword {
    pub attribute: Option<String>,
    /// `text` (userPassword) or `ad-unicode` (unicodePwd); inferred from the attribute.
    pub encoding: Option<String>,
}

/// `on_disable:` maps attributes/columns to the values they take while disabled; for an
/// LDAP target the keys `set:` and `bits:` (maps) and `move_to:` and `remove_memberships:`
/// spell the rest of the policy out (sorted out in `mapping.rs`).
pub(super) type RawOnDisable = std::collections::BTreeMap<String, RawDisableEntry>;

/// One `on_disable:` entry: a value, or a map (`set:`, `bits:`).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawDisableEntry {
    Value(RawScalar),
    Map(std::collections::BTreeMap<String, RawScalar>),
}

/// A scalar of any YAML type, kept as text. Unlike a `String` field, it also reads
/// `true`/`12` inside an untagged enum (where serde buffers values by their YAML type).
pub(super) struct RawScalar(pub String);

impl<'de> Deserialize<'de> for RawScalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawScalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a value (text, number or true/false)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<RawScalar, E> {
                Ok(RawScalar(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
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
    pub trusted_proxies: Option<Vec<String>>,
    pub request_timeout: Option<String>,
    pub ready_max_pending: Option<String>,
    pub max_header_bytes: Option<String>,
    pub max_json_depth: Option<String>,
    pub max_filter_bytes: Option<String>,
    pub header_read_timeout: Option<String>,
    pub max_connections: Option<String>,
    pub max_connections_per_client: Option<String>,
    pub tls: Option<RawServerTls>,
    pub unix_socket: Option<String>,
}

/// Direct TLS on the listener (installs without a reverse proxy).
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServerTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
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
    pub jwt: Option<RawJwt>,
    pub oauth: Option<RawOAuth>,
}

/// An OAuth 2.0 token endpoint (client credentials grant) issuing short-lived bearer
/// tokens to the listed clients.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawOAuth {
    pub clients: Option<Vec<RawOAuthClient>>,
    pub token_lifetime: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawOAuthClient {
    pub client_id: Option<String>,
    pub secret: Option<RawSecret>,
    /// `sha256:<64 hex digits>` of the client secret, instead of `secret`.
    pub hash: Option<String>,
    /// The actor name; default the client id.
    pub name: Option<String>,
    pub read_only: Option<String>,
}

#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawToken {
    pub name: Option<String>,
    pub secret: Option<RawSecret>,
    /// `sha256:<64 hex digits>`, instead of `secret`.
    pub hash: Option<String>,
    pub read_only: Option<String>,
}

/// Bearer JWTs issued by Entra ID, verified with the keys of a JWKS file.
#[derive(Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawJwt {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub jwks_file: Option<String>,
    pub name: Option<String>,
    pub leeway: Option<String>,
    pub read_only: Option<String>,
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
