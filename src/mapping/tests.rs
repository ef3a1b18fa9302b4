//! Mapping specification, driven by the example configuration and Entra's request bodies.

use serde_json::{Value, json};

use crate::config::{self, ConfigError, Environment};
use crate::journal::record::{Op, Record, ZERO_HASH};
use crate::mapping::model::Mapping;
use crate::scim::resource::normalize_resource;
use crate::scim::schema::ResourceKind;
use crate::target::{Cell, Change, Members};

struct Env;
impl Environment for Env {
    fn var(&self, _: &str) -> Option<String> {
        Some("0123456789abcdef0123456789abcdef".into())
    }
    fn read_file(&self, _: &std::path::Path) -> std::io::Result<String> {
        Ok("0123456789abcdef0123456789abcdef".into())
    }
}

fn example() -> std::sync::Arc<Mapping> {
    match config::parse(config::EMBEDDED_EXAMPLE, "config.example.yaml", &Env) {
        Ok(c) => c.target.expect("the example has a target").mapping,
        Err(e) => panic!("{e}"),
    }
}

fn record(op: Op, kind: ResourceKind, body: Value) -> Record {
    let mut doc = normalize_resource(kind, &body).expect("normalizes");
    doc.insert("id".into(), json!("u-1"));
    Record {
        seq: 1,
        prev: ZERO_HASH.into(),
        time: "2026-11-23T10:00:00.000Z".into(),
        endpoint: "default".into(),
        actor: "entra".into(),
        client: None,
        request_id: None,
        op,
        kind: kind.name().into(),
        id: "u-1".into(),
        version_before: None,
        version_after: Some(1),
        image: Value::Object(doc),
        member_delta: None,
    }
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/entra/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

fn cells(change: Change) -> Vec<(String, Cell)> {
    match change {
        Change::Upsert { cells, .. } => cells,
        other => panic!("expected an upsert, got {other:?}"),
    }
}

fn cell<'a>(cells: &'a [(String, Cell)], name: &str) -> &'a Cell {
    &cells
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .1
}

fn text(s: &str) -> Cell {
    Cell::Text(s.into())
}

#[test]
fn entra_create_user_maps_to_the_example_columns() {
    let m = example();
    let change = m
        .change(&record(
            Op::Create,
            ResourceKind::User,
            fixture("1.1-create-user.json"),
        ))
        .expect("maps");
    let Change::Upsert { default_groups, .. } = &change else {
        panic!("upsert")
    };
    assert_eq!(default_groups, &["all-users".to_string()]);
    let c = cells(change);
    assert_eq!(
        cell(&c, "username"),
        &text("Test_User_00aa00aa-bb11-cc22-dd33-44ee44ee44ee")
    );
    assert_eq!(cell(&c, "enabled"), &Cell::Integer(1));
    assert_eq!(
        cell(&c, "email"),
        &text("Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com")
    );
    assert_eq!(cell(&c, "description"), &text("givenName familyName"));
    assert_eq!(cell(&c, "profession"), &Cell::Null);
    assert_eq!(
        cell(&c, "external_id"),
        &text("0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef")
    );
}

#[test]
fn display_name_wins_over_the_joined_names() {
    let c = cells(
        example()
            .change(&record(
                Op::Create,
                ResourceKind::User,
                fixture("1.1-create-user-example2.json"),
            ))
            .expect("maps"),
    );
    assert_eq!(cell(&c, "description"), &text("Joy Young"));
    assert_eq!(cell(&c, "email"), &text("jyoung@Contoso.com"));
}

#[test]
fn phones_take_the_value_of_their_type_one_per_type() {
    // Two work phones cannot coexist (one element per type, the later wins).
    let body = json!({"userName": "p", "emails": [{"type": "work", "value": "p@x"}], "phoneNumbers": [
        {"type": "work", "value": "w1"}, {"type": "work", "value": "w2"},
        {"type": "mobile", "value": "m1", "primary": true}
    ]});
    let c = cells(
        example()
            .change(&record(Op::Create, ResourceKind::User, body))
            .expect("maps"),
    );
    assert_eq!(cell(&c, "phone_work"), &text("w2"));
    assert_eq!(cell(&c, "phone_mobile"), &text("m1"));
}

#[test]
fn a_multi_valued_source_gives_the_primary_else_the_only_value_else_none() {
    use crate::mapping::source::SourcePath;
    let path = SourcePath::compile(ResourceKind::User, "phoneNumbers.value").expect("compiles");
    let doc = |phones: Value| {
        normalize_resource(
            ResourceKind::User,
            &json!({"userName": "x", "phoneNumbers": phones}),
        )
        .expect("doc")
    };
    let single = |phones: Value| path.single(ResourceKind::User, &doc(phones));
    use crate::mapping::expr::Value as V;
    assert_eq!(
        single(
            json!([{"type": "work", "value": "w"}, {"type": "mobile", "value": "m", "primary": true}])
        ),
        V::Str("m".into())
    );
    assert_eq!(
        single(json!([{"type": "work", "value": "w"}])),
        V::Str("w".into())
    );
    assert_eq!(
        single(json!([{"type": "work", "value": "w"}, {"type": "mobile", "value": "m"}])),
        V::Null
    );
}

#[test]
fn only_the_primary_work_email_is_the_email_column() {
    let body = json!({"userName": "e", "emails": [{"type": "work", "value": "w@x"}, {"type": "home", "value": "h@x", "primary": true}]});
    let c = cells(
        example()
            .change(&record(Op::Create, ResourceKind::User, body))
            .expect("maps"),
    );
    assert_eq!(cell(&c, "email"), &Cell::Null);
}

#[test]
fn users_without_a_work_email_are_out_of_scope_and_removed() {
    let change = example()
        .change(&record(
            Op::Patch,
            ResourceKind::User,
            json!({"userName": "x"}),
        ))
        .expect("maps");
    assert_eq!(
        change,
        Change::Remove {
            kind: ResourceKind::User,
            key: "u-1".into()
        }
    );
}

#[test]
fn a_disabled_user_gets_the_on_disable_values() {
    let mut body = fixture("1.1-create-user.json");
    body["active"] = json!("False");
    let c = cells(
        example()
            .change(&record(Op::Patch, ResourceKind::User, body))
            .expect("maps"),
    );
    assert_eq!(cell(&c, "enabled"), &Cell::Integer(0));
}

#[test]
fn a_deleted_user_is_archived_disabled_with_the_record_time() {
    let mut r = record(
        Op::Delete,
        ResourceKind::User,
        fixture("1.1-create-user.json"),
    );
    r.version_after = None;
    match example().change(&r).expect("maps") {
        Change::Archive { cells, at, .. } => {
            assert_eq!(at, "2026-11-23T10:00:00.000Z");
            assert_eq!(cells, vec![("enabled".to_string(), Cell::Integer(0))]);
        }
        other => panic!("expected archive, got {other:?}"),
    }
}

#[test]
fn groups_map_their_members_for_the_membership_table() {
    let body = json!({"displayName": "Sales", "members": [{"value": "a"}, {"value": "b"}]});
    match example()
        .change(&record(Op::Create, ResourceKind::Group, body))
        .expect("maps")
    {
        Change::Upsert { cells, members, .. } => {
            assert_eq!(cell(&cells, "name"), &text("Sales"));
            assert_eq!(
                members,
                Some(Members::All(vec!["a".to_string(), "b".to_string()]))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_required_value_is_a_rejection_naming_the_column() {
    let m = example();
    let mut r = record(Op::Create, ResourceKind::Group, json!({"displayName": "x"}));
    if let Value::Object(doc) = &mut r.image {
        doc.remove("displayName");
    }
    let err = m.change(&r).expect_err("rejected");
    assert!(
        err.contains("'name' is required") && err.contains("displayName"),
        "{err}"
    );
}

fn problems(mapping: &str) -> Vec<String> {
    let text = format!(
        "auth:\n  tokens:\n    - name: t\n      secret:\n        value: 0123456789abcdef0123\ntarget:\n  sqlite:\n    path: /tmp/x.db\nmapping:\n{mapping}"
    );
    match config::parse(&text, "c.yaml", &Env) {
        Err(ConfigError::Invalid(p)) => p.items.iter().map(|i| i.to_string()).collect(),
        Ok(_) => panic!("expected problems for:\n{text}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_mappings_are_reported_precisely_with_line_and_column() {
    let users =
        |col: &str| format!("  users:\n    table: t\n    columns:\n      c:\n        {col}\n");
    let p = problems(&users("expr: 'Jion(\" \", [name.givenName])'"));
    assert!(
        p[0].starts_with("14:15: mapping.users.columns.c.expr:")
            && p[0].contains("did you mean 'Join'"),
        "{p:?}"
    );
    let p = problems(&users("expr: 'Left([userName])'"));
    assert!(p[0].contains("Left"), "{p:?}");
    let p = problems(&users("expr: 'Not([userName])'"));
    assert!(p[0].contains("mapping.users.columns.c.expr"), "{p:?}");
    let p = problems(&users("source: nmae.givenName"));
    assert!(p[0].contains("did you mean 'name.givenName'"), "{p:?}");
    let p = problems(&users("source: userName\n        type: boolean"));
    assert!(p[0].contains("mapping.users.columns.c.type"), "{p:?}");
    let p = problems(
        "  users:\n    table: t\n    columns:\n      c:\n        source: userName\n    on_disable:\n      enabeld: \"false\"\n",
    );
    assert!(p[0].contains("unknown column 'enabeld'"), "{p:?}");
    let p = problems(
        "  users:\n    table: 'app users'\n    columns:\n      c:\n        source: userName\n",
    );
    assert!(p[0].contains("not a plain identifier"), "{p:?}");
    let p = problems(
        "  users:\n    table: t\n    scope: '[userName]'\n    columns:\n      c:\n        source: userName\n",
    );
    assert!(p[0].contains("scope must be a condition"), "{p:?}");
    let p = problems(
        "  users:\n    table: t\n    columns:\n      c:\n        source: userName\n        expr: '[userName]'\n",
    );
    assert!(p[0].contains("only one of"), "{p:?}");
}

#[test]
fn the_ldap_example_compiles_with_its_settings_from_the_environment() {
    struct LdapEnv;
    impl Environment for LdapEnv {
        fn var(&self, name: &str) -> Option<String> {
            Some(match name {
                "LDAP_URL" => "ldap://127.0.0.1:389".into(),
                "LDAP_BIND_DN" => "cn=admin,dc=example,dc=com".into(),
                "LDAP_BIND_PASSWORD" => "secret".into(),
                "LDAP_BASE_DN" => "dc=example,dc=com".into(),
                _ => "0123456789abcdef0123456789abcdef".into(),
            })
        }
        fn read_file(&self, _: &std::path::Path) -> std::io::Result<String> {
            Err(std::io::Error::other("no files here"))
        }
    }
    let yaml = include_str!("../../examples/ldap-openldap.yaml");
    let cfg = match config::parse(yaml, "examples/ldap-openldap.yaml", &LdapEnv) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let target = cfg.target.expect("target");
    let crate::config::TargetKind::Ldap(settings) = &target.kind else {
        panic!("ldap")
    };
    assert_eq!(settings.urls, ["ldap://127.0.0.1:389"]);
    assert_eq!(settings.bind_password.expose(), "secret");
    let users = target.mapping.ldap.users.as_ref().expect("users");
    assert!(users.object_classes.contains(&"inetOrgPerson".to_string()));
    let body = json!({"userName": "doe, j", "name": {"familyName": "Doe"}});
    match target
        .mapping
        .change(&record(Op::Create, ResourceKind::User, body))
        .expect("maps")
    {
        Change::Upsert { dn, cells, .. } => {
            assert_eq!(
                dn.as_deref(),
                Some("uid=doe\\, j,ou=people,dc=example,dc=com")
            );
            assert_eq!(cell(&cells, "cn"), &text("Doe"));
        }
        other => panic!("{other:?}"),
    }
}

/// An LDAP config (users and groups) with `users_extra` and `groups_extra` added to the
/// mappings.
fn ldap_config(users_extra: &str, groups_extra: &str) -> Result<config::Config, ConfigError> {
    let yaml = format!(
        "auth:
  tokens:
    - name: t
      secret: {{ value: 0123456789abcdef0123456789abcdef }}
target:
  ldap:
    urls: [ldap://127.0.0.1:389]
    base: dc=example,dc=com
mapping:
  users:
    dn: 'uid={{userName}},ou=people,{{base}}'
    object_classes: [inetOrgPerson, top]
    attributes:
      uid: {{ source: userName }}
      cn: {{ source: userName }}
      sn: {{ source: name.familyName, default: '-' }}
      mail: {{ source: 'emails[type eq \"work\"].value' }}
{users_extra}
  groups:
    dn: 'cn={{displayName}},ou=groups,{{base}}'
    object_classes: [posixGroup, top]
    attributes:
      cn: {{ source: displayName }}
      gidNumber: {{ value: '5000', type: integer }}
{groups_extra}"
    );
    config::parse(&yaml, "config.yaml", &Env)
}

fn mapping_of(cfg: Result<config::Config, ConfigError>) -> std::sync::Arc<Mapping> {
    match cfg {
        Ok(c) => c.target.expect("target").mapping,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn ldap_disable_and_delete_policies_compile_into_the_entry_spec_and_the_dns() {
    let mapping = mapping_of(ldap_config(
        "    create_parents: true
    match: [mail]
    on_existing: conflict
    on_disable:
      set: { pwdAccountLockedTime: '000001010000Z' }
      bits: { userAccountControl: 2 }
      move_to: 'ou=disabled,{base}'
      remove_memberships: true
    on_delete: archive
    archive_to: 'ou=archive,{base}'
    purge_after: 30d",
        "    members: { attribute: memberUid, value: uid }",
    ));
    let users = mapping.ldap.users.as_ref().expect("users");
    assert!(users.create_parents);
    assert_eq!(users.match_attrs, ["mail"]);
    assert_eq!(users.on_existing, crate::target::OnExisting::Conflict);
    assert_eq!(users.disable_bits, [("userAccountControl".to_string(), 2)]);
    assert!(users.disable_drops_memberships);
    // Attributes only the policy writes are owned by the mapping.
    for owned in ["pwdAccountLockedTime", "userAccountControl"] {
        assert!(
            users.attributes.iter().any(|a| a.name == owned),
            "{owned} is an attribute of the entries"
        );
    }
    let groups = mapping.ldap.groups.as_ref().expect("groups");
    let members = groups.members.as_ref().expect("members");
    assert_eq!(members.attribute, "memberUid");
    assert_eq!(
        members.value,
        crate::target::MemberValue::Attribute("uid".into())
    );

    let disabled = json!({"userName": "jdoe", "active": false});
    match mapping
        .change(&record(Op::Patch, ResourceKind::User, disabled.clone()))
        .expect("maps")
    {
        Change::Upsert {
            dn,
            cells,
            disabled,
            ..
        } => {
            assert!(disabled);
            assert_eq!(
                dn.as_deref(),
                Some("uid=jdoe,ou=disabled,dc=example,dc=com")
            );
            assert_eq!(cell(&cells, "pwdAccountLockedTime"), &text("000001010000Z"));
        }
        other => panic!("{other:?}"),
    }
    let enabled = json!({"userName": "jdoe", "active": true});
    match mapping
        .change(&record(Op::Patch, ResourceKind::User, enabled))
        .expect("maps")
    {
        Change::Upsert {
            dn,
            cells,
            disabled,
            ..
        } => {
            assert!(!disabled);
            assert_eq!(dn.as_deref(), Some("uid=jdoe,ou=people,dc=example,dc=com"));
            assert_eq!(cell(&cells, "pwdAccountLockedTime"), &Cell::Null);
        }
        other => panic!("{other:?}"),
    }
    match mapping
        .change(&record(Op::Delete, ResourceKind::User, disabled))
        .expect("maps")
    {
        Change::Archive { dn, .. } => {
            assert_eq!(dn.as_deref(), Some("uid=jdoe,ou=archive,dc=example,dc=com"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_ldap_policy_settings_are_each_reported_at_their_key() {
    let err = match ldap_config(
        "    match: [mial]
    on_existing: maybe
    on_disable:
      bits: { userAccountControl: two }
      set: 'x'",
        "    members: { attribute: memberUid, value: uidNumber }",
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for expected in [
        "mapping.users.match[0]: 'mial' is not a mapped attribute (did you mean 'mail'?)",
        "mapping.users.on_existing: 'maybe' is not adopt or conflict",
        "mapping.users.on_disable.bits.userAccountControl: 'two' is not a bit mask",
        "mapping.users.on_disable.set: 'set' takes a map",
        "mapping.groups.members.value: 'uidNumber' is not an attribute of mapping.users",
    ] {
        assert!(err.contains(expected), "{expected}\n---\n{err}");
    }
}

#[test]
fn ldap_only_disable_policies_are_refused_for_a_sqlite_target() {
    let yaml = config::EMBEDDED_EXAMPLE.replace(
        "      enabled: \"false\"\n",
        "      enabled: \"false\"\n      move_to: 'ou=disabled,dc=x'\n",
    );
    assert_ne!(yaml, config::EMBEDDED_EXAMPLE, "the example has on_disable");
    let err = match config::parse(&yaml, "config.yaml", &Env) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("on_disable.move_to: 'move_to' is for an LDAP target"),
        "{err}"
    );
}

#[test]
fn initial_flag_values_belong_to_the_bits_and_are_integers() {
    let mapping = mapping_of(ldap_config(
        "    on_disable:
      bits: { userAccountControl: 2 }
      initial: { userAccountControl: 544 }",
        "",
    ));
    let users = mapping.ldap.users.as_ref().expect("users");
    assert_eq!(
        users.initial_bits,
        [("userAccountControl".to_string(), 544)]
    );
    let err = match ldap_config(
        "    on_disable:
      bits: { userAccountControl: 2 }
      initial: { flags: 544, userAccountControl: lots }",
        "",
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for expected in [
        "mapping.users.on_disable.initial.flags: 'flags' is not under 'bits:'",
        "mapping.users.on_disable.initial.userAccountControl: 'lots' is not a non-negative integer",
    ] {
        assert!(err.contains(expected), "{expected}\n---\n{err}");
    }
}

#[test]
fn a_users_password_compiles_into_the_entry_spec_with_its_encoding() {
    let mapping = mapping_of(ldap_config("    password: { attribute: userPassword }", ""));
    let users = mapping.ldap.users.as_ref().expect("users");
    assert_eq!(
        users.password,
        Some(crate::target::PasswordSpec {
            attribute: "userPassword".into(),
            encoding: crate::target::PasswordEncoding::Text,
        })
    );
    let mapping = mapping_of(ldap_config("    password: { attribute: unicodePwd }", ""));
    let users = mapping.ldap.users.as_ref().expect("users");
    assert_eq!(
        users.password.as_ref().map(|p| p.encoding),
        Some(crate::target::PasswordEncoding::AdUnicodePwd)
    );
    // The password is written, not mapped: it is no attribute the target compares.
    assert!(!users.attributes.iter().any(|a| a.name == "unicodePwd"));
}

#[test]
fn a_misplaced_or_ambiguous_password_mapping_is_refused_at_its_line() {
    for (users, groups, expected) in [
        (
            "    password: { attribute: mail }",
            "",
            "config.yaml:18:28: mapping.users.password.attribute: 'mail' is also under mapping.users.attributes",
        ),
        (
            "    password: {}",
            "",
            "mapping.users.password: a password needs 'attribute:'",
        ),
        (
            "    password: { attribute: userPassword, encoding: md5 }",
            "",
            "mapping.users.password.encoding: 'md5' is not text or ad-unicode",
        ),
        (
            "",
            "    password: { attribute: userPassword }",
            "mapping.groups.password: only users have a password",
        ),
    ] {
        let err = match ldap_config(users, groups) {
            Ok(_) => panic!("accepted: {users}{groups}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expected), "{expected}\n---\n{err}");
    }
    let err = problems(
        "  users:\n    table: t\n    password: { attribute: userPassword }\n    columns:\n      c: { source: userName }\n",
    );
    assert!(
        err.iter().any(|p| p.starts_with(
            "12:5: mapping.users.password: passwords are written only to an LDAP directory"
        )),
        "{err:?}"
    );
}

#[test]
fn ad_unicode_pwd_is_the_quoted_password_in_utf16le() {
    let encoded = crate::target::PasswordEncoding::AdUnicodePwd
        .encode(&crate::target::Password::new("pä$".into()));
    assert_eq!(encoded, b"\"\0p\0\xe4\0$\0\"\0");
    let text =
        crate::target::PasswordEncoding::Text.encode(&crate::target::Password::new("pä$".into()));
    assert_eq!(text, "pä$".as_bytes());
    assert_eq!(
        format!("{:?}", crate::target::Password::new("hunter2".into())),
        "Password(***)"
    );
}
