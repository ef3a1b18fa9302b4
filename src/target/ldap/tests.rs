//! LDAP target, without a directory: DN handling, cell values, the computed difference,
//! result codes → outcomes, settings validation, and a directory out of reach. The
//! converge against a real slapd is in `tests/it/ldap_target.rs`.

use std::collections::HashMap;
use std::time::Duration;

use ldap3::LdapResult;

use super::*;
use crate::config::Secret;
use crate::target::MemberSpec;

fn attr(name: &str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty,
        unique: false,
        create_only: false,
        keep_when_empty: false,
        dn_reference: false,
    }
}

fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> SearchEntry {
    SearchEntry {
        dn: dn.into(),
        attrs: attrs
            .iter()
            .map(|(n, vs)| (n.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect(),
        bin_attrs: HashMap::new(),
    }
}

fn settings(dir: &std::path::Path, urls: &[&str]) -> LdapSettings {
    LdapSettings {
        urls: urls.iter().map(|u| u.to_string()).collect(),
        bind_dn: "cn=admin,dc=example,dc=com".into(),
        bind_password: Secret::new("secret".into()),
        starttls: false,
        ca_file: None,
        client_cert: None,
        connect_timeout: Duration::from_secs(2),
        operation_timeout: Duration::from_secs(2),
        give_up_after: std::time::Duration::from_secs(120),
        pool_size: 2,
        links_path: dir.join("links.db"),
    }
}

fn users() -> EntrySpec {
    EntrySpec {
        object_classes: vec!["inetOrgPerson".into(), "top".into()],
        attributes: vec![attr("cn", ColumnType::Text), attr("mail", ColumnType::Text)],
        members: None,
        ..Default::default()
    }
}

#[test]
fn dns_split_at_the_first_unescaped_comma() {
    assert_eq!(
        dn::split_first("uid=a,ou=people,dc=x"),
        ("uid=a", Some("ou=people,dc=x"))
    );
    assert_eq!(
        dn::split_first("cn=Doe\\, John,ou=people,dc=x"),
        ("cn=Doe\\, John", Some("ou=people,dc=x"))
    );
    assert_eq!(
        dn::split_first("cn=a\\2cb\\\\,dc=x"),
        ("cn=a\\2cb\\\\", Some("dc=x"))
    );
    assert_eq!(
        dn::split_first("cn=\"quoted, value\",dc=x"),
        ("cn=\"quoted, value\"", Some("dc=x"))
    );
    assert_eq!(dn::split_first("dc=com"), ("dc=com", None));
    assert_eq!(dn::parent("dc=com"), None);
}

#[test]
fn dns_compare_as_the_directory_compares_them() {
    // Escapes in either form, case, spaces around separators, AVA order.
    assert!(dn::same(
        "cn=Doe\\, John,ou=People,dc=example,dc=com",
        "CN=doe\\2c john, ou=people,DC=Example,dc=com"
    ));
    assert!(dn::same("cn=a+uid=b,dc=x", "uid=B+cn=A,dc=x"));
    assert!(dn::same("cn=Zoë 李,dc=x", "cn=zoë\\20李,dc=x"));
    assert!(dn::same("cn=\\ lead,dc=x", "cn=lead,dc=x"));
    assert!(dn::same("cn=\\#hash,dc=x", "cn=\\23hash,dc=x"));
    assert!(dn::same("cn=q\\\"b\\\\s,dc=x", "cn=q\\22b\\5cs,dc=x"));
    assert!(!dn::same("cn=a,ou=people,dc=x", "cn=a,ou=staff,dc=x"));
    assert!(!dn::same("cn=a\\,b,dc=x", "cn=a,b,dc=x"));
    assert!(!dn::same("cn=a,dc=x", "cn=ab,dc=x"));
    // Not a DN: compared as lower-cased text.
    assert!(dn::same("not a dn", "NOT A DN"));
    assert!(!dn::same("not a dn", "cn=not a dn"));
}

#[test]
fn cells_become_attribute_values() {
    let text = attr("mail", ColumnType::Text);
    let boolean = attr("flag", ColumnType::Boolean);
    let int = attr("uidNumber", ColumnType::Integer);
    let ts = attr("stamp", ColumnType::Timestamp);
    assert_eq!(cell_values(&text, &Cell::Null), None);
    assert_eq!(cell_values(&text, &Cell::Text(String::new())), None);
    assert_eq!(
        cell_values(&text, &Cell::Text("a@x".into())),
        Some(vec!["a@x".into()])
    );
    assert_eq!(
        cell_values(&text, &Cell::Text(r#"["a@x","b@x","a@x",""]"#.into())),
        Some(vec!["a@x".into(), "b@x".into()])
    );
    assert_eq!(cell_values(&text, &Cell::Text("[]".into())), None);
    assert_eq!(
        cell_values(&text, &Cell::Text("[not json".into())),
        Some(vec!["[not json".into()])
    );
    assert_eq!(
        cell_values(&boolean, &Cell::Integer(1)),
        Some(vec!["TRUE".into()])
    );
    assert_eq!(
        cell_values(&boolean, &Cell::Integer(0)),
        Some(vec!["FALSE".into()])
    );
    assert_eq!(
        cell_values(&int, &Cell::Integer(-42)),
        Some(vec!["-42".into()])
    );
    assert_eq!(
        cell_values(&ts, &Cell::Text("2026-01-02T03:04:05.000Z".into())),
        Some(vec!["20260102030405Z".into()])
    );
    assert_eq!(
        cell_values(&ts, &Cell::Text("2026-01-02T03:04:05.120+01:00".into())),
        Some(vec!["20260102020405.120Z".into()])
    );
}

#[test]
fn the_difference_holds_only_what_differs() {
    let spec = EntrySpec {
        object_classes: vec!["inetOrgPerson".into(), "extensibleObject".into()],
        attributes: vec![
            attr("cn", ColumnType::Text),
            attr("mail", ColumnType::Text),
            ColumnSpec {
                create_only: true,
                ..attr("uid", ColumnType::Text)
            },
            ColumnSpec {
                keep_when_empty: true,
                dn_reference: false,
                ..attr("telephoneNumber", ColumnType::Text)
            },
            attr("description", ColumnType::Text),
        ],
        members: None,
        ..Default::default()
    };
    let cells = vec![
        ("cn".to_string(), Cell::Text("Alice".into())),
        ("mail".to_string(), Cell::Text(r#"["b@x","a@x"]"#.into())),
        ("uid".to_string(), Cell::Text("new".into())),
        ("telephoneNumber".to_string(), Cell::Null),
        ("description".to_string(), Cell::Null),
    ];
    let wanted = Wanted::new(
        &spec,
        checked_cells(ResourceKind::User, &spec, &cells)
            .ok()
            .unwrap(),
        None,
    );
    let same = entry(
        "uid=old,dc=x",
        &[
            ("objectClass", &["top", "INETORGPERSON", "extensibleObject"]),
            ("cn", &["Alice"]),
            ("mail", &["a@x", "b@x"]),
            ("uid", &["old"]),
            ("telephoneNumber", &["123"]),
        ],
    );
    assert!(wanted.diff(&same).is_empty(), "{:?}", wanted.diff(&same));

    let differs = entry(
        "uid=old,dc=x",
        &[
            ("objectClass", &["inetOrgPerson"]),
            ("CN", &["alice"]),
            ("mail", &["a@x"]),
            ("description", &["gone"]),
        ],
    );
    let mods = wanted.diff(&differs);
    let described: Vec<String> = mods
        .iter()
        .map(|m| match m {
            Mod::Add(a, v) => format!("add {a} {:?}", sorted(v)),
            Mod::Replace(a, v) => format!("replace {a} {:?}", sorted(v)),
            Mod::Delete(a, v) => format!("delete {a} {:?}", sorted(v)),
            Mod::Increment(a, _) => format!("increment {a}"),
        })
        .collect();
    assert_eq!(
        described,
        [
            "add objectClass [\"extensibleObject\"]",
            "replace cn [\"Alice\"]",
            "replace mail [\"a@x\", \"b@x\"]",
            // create_only, but the entry has no value yet.
            "replace uid [\"new\"]",
            "replace description []",
        ]
    );
}

fn sorted(v: &HashSet<String>) -> Vec<&String> {
    let mut v: Vec<&String> = v.iter().collect();
    v.sort();
    v
}

#[test]
fn references_compare_as_dns() {
    let spec = EntrySpec {
        attributes: vec![ColumnSpec {
            dn_reference: true,
            ..attr("manager", ColumnType::Text)
        }],
        ..users()
    };
    let resolved = vec![(
        &spec.attributes[0],
        Some(vec!["uid=Doe\\, J,dc=x".to_string()]),
    )];
    let wanted = Wanted::new(&spec, resolved, None);
    let stored = entry(
        "uid=r,dc=x",
        &[
            ("objectClass", &["inetOrgPerson", "top"]),
            ("manager", &["uid=doe\\2C j,DC=x"]),
        ],
    );
    assert!(
        wanted.diff(&stored).is_empty(),
        "{:?}",
        wanted.diff(&stored)
    );
    let other = entry(
        "uid=r,dc=x",
        &[
            ("objectClass", &["inetOrgPerson", "top"]),
            ("manager", &["uid=boss,dc=x"]),
        ],
    );
    assert_eq!(wanted.diff(&other).len(), 1);
}

#[test]
fn pending_references_are_kept_per_entry_and_attribute() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let links = Links::open(&dir.path().join("links.db")).expect("links open");
    links.set_pending("r1", "manager", "boss").unwrap();
    links.set_pending("r1", "manager", "boss2").unwrap();
    links.set_pending("r2", "manager", "boss").unwrap();
    links.set_pending("boss", "secretary", "r1").unwrap();
    let row = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        links.pending_involving("boss").unwrap(),
        [row("boss", "secretary", "r1"), row("r2", "manager", "boss")]
    );
    assert_eq!(
        links.pending_involving("boss2").unwrap(),
        [row("r1", "manager", "boss2")]
    );
    // Resolved only while it still names the same target.
    links.resolved_pending("r1", "manager", "boss").unwrap();
    assert_eq!(links.pending_involving("boss2").unwrap().len(), 1);
    links.resolved_pending("r1", "manager", "boss2").unwrap();
    assert!(links.pending_involving("boss2").unwrap().is_empty());
    links.clear_pending("r2", "manager").unwrap();
    links.clear_pending_of("boss").unwrap();
    assert!(links.pending_involving("boss").unwrap().is_empty());
}

#[test]
fn members_compare_as_dns_and_fall_back_to_the_placeholder() {
    let spec = EntrySpec {
        object_classes: vec!["groupOfNames".into()],
        attributes: vec![attr("cn", ColumnType::Text)],
        members: Some(MemberSpec {
            attribute: "member".into(),
            placeholder: Some("cn=placeholder,dc=x".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let wanted = Wanted::new(&spec, Vec::new(), Some(vec!["uid=Doe\\, J,dc=x".into()]));
    let stored = entry(
        "cn=g,dc=x",
        &[
            ("objectClass", &["groupOfNames"]),
            ("member", &["uid=doe\\2C j,DC=x"]),
        ],
    );
    assert!(wanted.diff(&stored).is_empty());
    let empty = Wanted::new(&spec, Vec::new(), Some(Vec::new()));
    assert_eq!(empty.members, Some(vec!["cn=placeholder,dc=x".to_string()]));
    assert_eq!(empty.diff(&stored).len(), 1);
    // A group added without a member list still gets the placeholder.
    let unknown = Wanted::new(&spec, Vec::new(), None);
    assert!(
        unknown
            .add_attrs()
            .iter()
            .any(|(a, v)| a == "member" && v.contains("cn=placeholder,dc=x"))
    );
    assert!(!unknown.read_attrs().iter().any(|a| a == "member"));
}

#[test]
fn cells_must_name_mapped_attributes_once() {
    let spec = users();
    let unknown = vec![("sn".to_string(), Cell::Text("x".into()))];
    assert!(matches!(
        checked_cells(ResourceKind::User, &spec, &unknown),
        Err(Fail::Reject(m)) if m.contains("'sn'")
    ));
    let twice = vec![
        ("cn".to_string(), Cell::Text("x".into())),
        ("CN".to_string(), Cell::Text("y".into())),
    ];
    assert!(matches!(
        checked_cells(ResourceKind::User, &spec, &twice),
        Err(Fail::Reject(m)) if m.contains("twice")
    ));
}

fn ldap_fail(rc: u32, text: &str) -> Fail {
    Fail::Ldap(OpError {
        op: "add",
        dn: "uid=a,dc=x".into(),
        error: Box::new(LdapError::LdapResult {
            result: LdapResult {
                rc,
                matched: String::new(),
                text: text.into(),
                refs: Vec::new(),
                ctrls: Vec::new(),
            },
        }),
    })
}

#[test]
fn result_codes_become_outcomes() {
    assert_eq!(
        verdict(ldap_fail(
            65,
            "object class 'inetOrgPerson' requires attribute 'sn'"
        )),
        Outcome::Rejected(
            "objectClassViolation: object class 'inetOrgPerson' requires attribute 'sn'".into()
        )
    );
    for rc in [16, 19, 20, 21, 34, 50, 64, 65, 66, 67, 68, 69] {
        assert!(
            matches!(verdict(ldap_fail(rc, "x")), Outcome::Rejected(_)),
            "rc {rc}"
        );
    }
    assert_eq!(
        verdict(ldap_fail(19, "")),
        Outcome::Rejected("constraintViolation (add uid=a,dc=x)".into())
    );
    for rc in [1, 17, 32, 49, 51, 52, 53, 80, 4711] {
        assert!(
            matches!(verdict(ldap_fail(rc, "x")), Outcome::Unavailable(_)),
            "rc {rc}"
        );
    }
    let io = Fail::Ldap(OpError {
        op: "modify",
        dn: "uid=a,dc=x".into(),
        error: Box::new(LdapError::Io {
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        }),
    });
    assert!(io.connection_lost());
    assert!(matches!(verdict(io), Outcome::Unavailable(_)));
    assert!(!ldap_fail(52, "").connection_lost());
}

#[test]
fn bad_settings_are_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let open = |s: LdapSettings, schema: LdapSchema| LdapTarget::open(s, schema).err();
    let schema = LdapSchema {
        base: "dc=x".into(),
        users: Some(users()),
        groups: None,
    };
    let e = open(settings(dir.path(), &[]), schema.clone()).expect("no URL");
    assert!(e.to_string().contains("no URL"), "{e}");
    let e = open(settings(dir.path(), &["http://x"]), schema.clone()).expect("bad scheme");
    assert!(e.to_string().contains("not an ldap"), "{e}");
    let mut with_ca = settings(dir.path(), &["ldaps://x"]);
    with_ca.ca_file = Some("/nonexistent/ca.pem".into());
    let e = open(with_ca, schema.clone()).expect("unreadable ca_file");
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let mut mapped_class = users();
    mapped_class
        .attributes
        .push(attr("objectclass", ColumnType::Text));
    let e = open(
        settings(dir.path(), &["ldap://127.0.0.1:1"]),
        LdapSchema {
            base: "dc=x".into(),
            users: Some(mapped_class),
            groups: None,
        },
    )
    .expect("objectClass mapped");
    assert!(e.to_string().contains("objectClass"), "{e}");
}

#[test]
fn a_directory_out_of_reach_opens_and_leaves_changes_pending() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: connection refused at once.
    let target = LdapTarget::open(
        settings(dir.path(), &["ldap://127.0.0.1:1", "ldap://127.0.0.1:1/"]),
        LdapSchema {
            base: "dc=x".into(),
            users: Some(users()),
            groups: None,
        },
    )
    .expect("an unreachable directory is not an error at open");
    let change = Change::Upsert {
        disabled: false,
        kind: ResourceKind::User,
        key: "u1".into(),
        dn: Some("uid=a,dc=x".into()),
        cells: vec![("cn".into(), Cell::Text("A".into()))],
        members: None,
        default_groups: Vec::new(),
        password: None,
    };
    match target.apply(&change) {
        Outcome::Unavailable(e) => {
            assert!(e.contains("127.0.0.1:1"), "{e}");
            assert!(!e.contains("secret"), "the password leaks: {e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(target.apply(&Change::Nothing), Outcome::Applied);
    assert_eq!(target.linked_dn("u1"), None);
    // Changes the target cannot take are rejected before connecting.
    let no_dn = Change::Upsert {
        disabled: false,
        kind: ResourceKind::User,
        key: "u1".into(),
        dn: None,
        cells: Vec::new(),
        members: None,
        default_groups: Vec::new(),
        password: None,
    };
    assert_eq!(
        target.apply(&no_dn),
        Outcome::Rejected("the mapping gives no DN".into())
    );
    // Removing what was never linked needs no directory.
    let remove = Change::Remove {
        kind: ResourceKind::User,
        key: "u1".into(),
    };
    assert_eq!(target.apply(&remove), Outcome::Applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_and_applying_from_async_code_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let target = LdapTarget::open(
        settings(dir.path(), &["ldap://127.0.0.1:1"]),
        LdapSchema {
            base: "dc=x".into(),
            users: Some(users()),
            groups: None,
        },
    )
    .expect("opens");
    let change = Change::Upsert {
        disabled: false,
        kind: ResourceKind::User,
        key: "u1".into(),
        dn: Some("uid=a,dc=x".into()),
        cells: Vec::new(),
        members: None,
        default_groups: Vec::new(),
        password: None,
    };
    assert!(matches!(target.apply(&change), Outcome::Unavailable(_)));
    drop(target);
}

#[test]
fn a_directory_that_does_not_answer_times_out() {
    let dir = tempfile::tempdir().unwrap();
    // Accepts connections and never answers (a hung server).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let mut s = settings(dir.path(), &[&url]);
    s.operation_timeout = Duration::from_millis(300);
    let started = std::time::Instant::now();
    let target = LdapTarget::open(
        s,
        LdapSchema {
            base: "dc=x".into(),
            users: Some(users()),
            groups: None,
        },
    )
    .expect("opens");
    let change = Change::Upsert {
        disabled: false,
        kind: ResourceKind::User,
        key: "u1".into(),
        dn: Some("uid=a,dc=x".into()),
        cells: Vec::new(),
        members: None,
        default_groups: Vec::new(),
        password: None,
    };
    match target.apply(&change) {
        Outcome::Unavailable(e) => assert!(e.contains("timeout"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn an_unexpected_answer_is_retried_then_given_up_while_other_outcomes_pass_through() {
    let stuck = Stuck::new(Duration::ZERO);
    let down = || Outcome::Unavailable("referral: ldap://elsewhere".into());
    // Twice retried (fewer than the minimum attempts), the third time rejected.
    assert_eq!(stuck.bound("u1", down(), true), down());
    assert_eq!(stuck.bound("u1", down(), true), down());
    match stuck.bound("u1", down(), true) {
        Outcome::Rejected(detail) => assert!(
            detail.starts_with("referral: ldap://elsewhere (the same unexpected answer 3 times")
                && detail.contains("reconcile"),
            "{detail}"
        ),
        other => panic!("not given up: {other:?}"),
    }
    // An outage (not an unexpected answer) is never given up, and clears the count.
    for _ in 0..10 {
        assert_eq!(stuck.bound("u2", down(), false), down());
    }
    assert_eq!(stuck.bound("u3", down(), true), down());
    assert_eq!(stuck.bound("u3", Outcome::Applied, false), Outcome::Applied);
    assert_eq!(stuck.bound("u3", down(), true), down());
    assert_eq!(stuck.bound("u3", down(), true), down());
    // Not before `give_up_after` has passed, however many attempts.
    let patient = Stuck::new(Duration::from_secs(3600));
    for _ in 0..20 {
        assert_eq!(patient.bound("u4", down(), true), down());
    }
}

#[test]
fn a_change_of_the_first_rdn_case_only_is_told_apart_from_spacing_and_escapes() {
    use super::dn::rdn_case_differs;
    assert!(rdn_case_differs(
        "CN=carol,OU=people,DC=x",
        "CN=Carol,OU=people,DC=x"
    ));
    assert!(rdn_case_differs(
        "cn=carol.new@example.com,ou=p",
        "cn=Carol.New@Example.com,ou=p"
    ));
    // The same value written otherwise: escapes, attribute type case, spaces, parents.
    assert!(!rdn_case_differs("CN=Doe\\, J,OU=p", "cn=Doe\\2c J,ou=P"));
    assert!(!rdn_case_differs("uid=john  doe,ou=p", "uid=john doe,ou=p"));
    assert!(!rdn_case_differs("uid=a+cn=B,ou=p", "cn=B+uid=a,ou=p"));
}

#[test]
fn an_rdn_with_edge_spaces_is_trimmed_where_389_ds_puts_it() {
    use super::dn::trim_first_rdn;
    assert_eq!(
        trim_first_rdn("cn=\\#Ops\\, R\\+D \\\"EU\\\"\\ ,ou=groups,dc=x").as_deref(),
        Some("cn=\\#Ops\\, R\\+D \\\"EU\\\",ou=groups,dc=x")
    );
    assert_eq!(
        trim_first_rdn("uid=\\ john\\ ,ou=p").as_deref(),
        Some("uid=john,ou=p")
    );
    assert_eq!(trim_first_rdn("uid=john,ou=p"), None);
}
