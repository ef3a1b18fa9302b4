//! `check-config --online`'s library half: the LDAP mapping checked against the schema a
//! real OpenLDAP publishes (`cn=Subschema`; core, cosine, inetorgperson and nis loaded),
//! starting from `examples/ldap-openldap.yaml`'s mapping.

use scim_bridge::config::{self, Config, Environment};
use scim_bridge::target::ldap::subschema::{Finding, Severity, check_online, read_subschema};

use crate::slapd::Slapd;

const EXAMPLE: &str = include_str!("../../examples/ldap-openldap.yaml");

/// Nothing from the process environment: every setting is in the text.
struct NoEnv;

impl Environment for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
    fn read_file(&self, path: &std::path::Path) -> std::io::Result<String> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            path.display().to_string(),
        ))
    }
}

/// The example config pointed at `url` with these credentials, `edit`ed.
fn example_config(url: &str, bind_dn: &str, password: &str, edit: &[(&str, &str)]) -> Config {
    let mut text = EXAMPLE
        .replace(
            "env: SCIM_BRIDGE_TOKEN",
            "value: 0123456789abcdef0123456789abcdef",
        )
        .replace("- env: LDAP_URL", &format!("- value: {url}"))
        .replace("env: LDAP_BIND_DN", &format!("value: {bind_dn}"))
        .replace("env: LDAP_BIND_PASSWORD", &format!("value: {password}"))
        .replace("env: LDAP_BASE_DN", "value: dc=example,dc=com")
        .replace("connect_timeout: 5s", "connect_timeout: 2s")
        .replace("operation_timeout: 10s", "operation_timeout: 5s");
    for (from, to) in edit {
        assert!(text.contains(from), "the example no longer holds {from:?}");
        text = text.replace(from, to);
    }
    config::parse(&text, "examples/ldap-openldap.yaml", &NoEnv).unwrap_or_else(|e| panic!("{e}"))
}

fn config_for(slapd: &Slapd, edit: &[(&str, &str)]) -> Config {
    example_config(&slapd.url, &slapd.admin_dn, &slapd.admin_password, edit)
}

fn messages(findings: &[Finding]) -> Vec<String> {
    findings.iter().map(ToString::to_string).collect()
}

#[test]
fn online_check_finds_nothing_wrong_with_the_example_mapping() {
    let slapd = Slapd::start();
    let findings = check_online(&config_for(&slapd, &[])).expect("the directory is read");
    assert_eq!(messages(&findings), Vec::<String>::new());
}

#[test]
fn online_check_flags_an_object_class_the_directory_does_not_know() {
    let slapd = Slapd::start();
    let config = config_for(
        &slapd,
        &[(
            "object_classes: [inetOrgPerson,",
            "object_classes: [inetOrgPersn,",
        )],
    );
    let findings = check_online(&config).expect("the directory is read");
    assert_eq!(
        messages(&findings),
        [
            "error: users: object class 'inetOrgPersn' is not in the directory's schema (did you mean 'inetOrgPerson'?)"
        ]
    );
    assert!(findings[0].is_error());
}

#[test]
fn online_check_flags_an_attribute_the_directory_does_not_know() {
    let slapd = Slapd::start();
    let config = config_for(&slapd, &[("      title:\n", "      titel:\n")]);
    let findings = check_online(&config).expect("the directory is read");
    assert_eq!(
        messages(&findings),
        [
            "error: users: attribute 'titel' is not in the directory's schema (did you mean 'title'?)"
        ]
    );
}

#[test]
fn online_check_flags_an_attribute_the_entrys_classes_do_not_allow() {
    let slapd = Slapd::start();
    // Groups are groupOfNames: no mail.
    let config = config_for(
        &slapd,
        &[(
            "      cn:\n        source: displayName\n",
            "      cn:\n        source: displayName\n      mail:\n        source: displayName\n",
        )],
    );
    let findings = check_online(&config).expect("the directory is read");
    assert_eq!(
        messages(&findings),
        [
            "error: groups: attribute 'mail' is not allowed by the object classes 'groupOfNames', 'top' (nor their superclasses)"
        ]
    );
}

#[test]
fn online_check_flags_a_must_attribute_the_mapping_does_not_set() {
    let slapd = Slapd::start();
    // person (a superclass of inetOrgPerson) requires sn.
    let config = config_for(
        &slapd,
        &[(
            "      sn:                             # person requires sn\n        source: name.familyName\n        default: \"-\"\n",
            "",
        )],
    );
    let findings = check_online(&config).expect("the directory is read");
    assert_eq!(
        messages(&findings),
        [
            "error: users: 'sn' is required by object class 'person' but the mapping does not set it (map it under 'attributes:' or name the entry by it in 'dn:')"
        ]
    );
}

#[test]
fn online_check_flags_every_problem_of_a_mapping_at_once() {
    let slapd = Slapd::start();
    let config = config_for(
        &slapd,
        &[
            (
                "object_classes: [inetOrgPerson,",
                "object_classes: [inetOrgPersn,",
            ),
            ("      title:\n", "      titel:\n"),
            (
                "      cn:\n        source: displayName\n",
                "      cn:\n        source: displayName\n      mail:\n        source: displayName\n",
            ),
            (
                "      sn:                             # person requires sn\n        source: name.familyName\n        default: \"-\"\n",
                "",
            ),
        ],
    );
    let findings = check_online(&config).expect("the directory is read");
    let all = messages(&findings);
    for expected in [
        "error: users: object class 'inetOrgPersn' is not in the directory's schema (did you mean 'inetOrgPerson'?)",
        "error: users: attribute 'titel' is not in the directory's schema (did you mean 'title'?)",
        "error: users: 'sn' is required by object class 'person' but the mapping does not set it",
        "error: groups: attribute 'mail' is not allowed by the object classes 'groupOfNames', 'top'",
    ] {
        assert!(
            all.iter().any(|m| m.starts_with(expected)),
            "{expected:?} missing from {all:#?}"
        );
    }
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(findings.iter().all(|f| f.severity == Severity::Error));
}

#[test]
fn online_check_reports_a_directory_it_cannot_reach() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = example_config(
        &format!("ldap://127.0.0.1:{port}"),
        "cn=admin,dc=example,dc=com",
        "whatever",
        &[],
    );
    let error = check_online(&config).expect_err("nothing to read");
    assert!(error.contains("cannot connect"), "{error}");
    assert!(error.contains(&port.to_string()), "{error}");
}

#[test]
fn online_check_reports_a_bind_the_directory_refuses() {
    let slapd = Slapd::start();
    let config = example_config(&slapd.url, &slapd.admin_dn, "not-the-password", &[]);
    let error = check_online(&config).expect_err("the bind is refused");
    assert!(
        error.contains("bind as cn=admin,dc=example,dc=com"),
        "{error}"
    );
}

#[test]
fn online_check_needs_an_ldap_target() {
    let text = "auth:
  tokens:
    - name: entra
      secret:
        value: 0123456789abcdef0123456789abcdef
target:
  sqlite:
    path: ./directory.db
mapping:
  users:
    table: users
    columns:
      user_name:
        source: userName
";
    let config = config::parse(text, "sqlite.yaml", &NoEnv).unwrap_or_else(|e| panic!("{e}"));
    let error = check_online(&config).expect_err("not LDAP");
    assert!(error.contains("not an LDAP directory"), "{error}");
}

#[test]
fn online_read_of_openldaps_subschema_parses_every_definition() {
    let slapd = Slapd::start();
    let config = config_for(&slapd, &[]);
    let Some(config::TargetConfig {
        kind: config::TargetKind::Ldap(settings),
        ..
    }) = &config.target
    else {
        panic!("an LDAP target");
    };
    let (schema, errors) = read_subschema(settings).expect("the directory is read");
    assert_eq!(errors, vec![]);
    // Core, cosine, inetorgperson and nis, and slapd's own: dozens of each.
    assert!(
        schema.object_classes().len() > 50,
        "{}",
        schema.object_classes().len()
    );
    assert!(
        schema.attribute_types().len() > 200,
        "{}",
        schema.attribute_types().len()
    );
    assert!(schema.same_attribute("cn", "commonName"));
    let chain: Vec<&str> = schema
        .with_superclasses("inetOrgPerson")
        .iter()
        .map(|c| c.name())
        .collect();
    assert_eq!(
        chain,
        ["inetOrgPerson", "organizationalPerson", "person", "top"]
    );
}
