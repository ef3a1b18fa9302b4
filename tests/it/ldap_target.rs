//! The LDAP target against a real slapd (`slapd::Slapd`, one per test): changes built by
//! hand, as the mapping would build them (DN values escaped with `ldap3::dn_escape`), applied
//! with `LdapTarget::apply`, and the directory read back as the admin. Users are
//! inetOrgPersons under ou=people, groups groupOfNames under ou=groups with a placeholder.
//!
//! "No write" is proven with `entryCSN`, which slapd changes (to the microsecond) on every
//! write to an entry.

use std::collections::HashMap;
use std::time::Duration;

use ldap3::{LdapConn, Scope, SearchEntry, dn_escape};
use scim_bridge::config::Secret;
use scim_bridge::scim::schema::ResourceKind;
use scim_bridge::target::ldap::LdapTarget;
use scim_bridge::target::{
    Cell, Change, ColumnSpec, ColumnType, EntrySpec, Feed, LdapSchema, LdapSettings, MemberSpec,
    Members, Outcome, Target,
};

use crate::slapd::{BASE, GROUPS_DN, PEOPLE_DN, Slapd};

const PLACEHOLDER: &str = "cn=placeholder,dc=example,dc=com";

fn attr(name: &str) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty: ColumnType::Text,
        unique: false,
        create_only: false,
        keep_when_empty: false,
        dn_reference: false,
    }
}

pub(crate) fn schema() -> LdapSchema {
    LdapSchema {
        users: Some(EntrySpec {
            object_classes: vec![
                "inetOrgPerson".into(),
                "organizationalPerson".into(),
                "person".into(),
                "top".into(),
            ],
            attributes: vec![
                attr("uid"),
                attr("cn"),
                attr("sn"),
                attr("mail"),
                ColumnSpec {
                    create_only: true,
                    ..attr("employeeNumber")
                },
                ColumnSpec {
                    keep_when_empty: true,
                    dn_reference: false,
                    ..attr("telephoneNumber")
                },
                attr("description"),
                ColumnSpec {
                    dn_reference: true,
                    ..attr("manager")
                },
            ],
            members: None,
            ..Default::default()
        }),
        groups: Some(EntrySpec {
            object_classes: vec!["groupOfNames".into(), "top".into()],
            attributes: vec![attr("cn"), attr("description")],
            members: Some(MemberSpec {
                attribute: "member".into(),
                placeholder: Some(PLACEHOLDER.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        base: BASE.to_string(),
    }
}

pub(crate) fn settings(ldap: &Slapd, dir: &tempfile::TempDir, urls: Vec<String>) -> LdapSettings {
    LdapSettings {
        urls,
        bind_dn: ldap.admin_dn.clone(),
        bind_password: Secret::new(ldap.admin_password.clone()),
        starttls: false,
        ca_file: None,
        client_cert: None,
        connect_timeout: Duration::from_secs(3),
        operation_timeout: Duration::from_secs(5),
        give_up_after: std::time::Duration::from_secs(120),
        pool_size: 2,
        links_path: dir.path().join("ldap-links.db"),
    }
}

/// A slapd, a links directory and a target writing to the slapd.
struct Fixture {
    target: LdapTarget,
    ldap: Slapd,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let ldap = Slapd::start();
        let dir = tempfile::tempdir().expect("temporary directory");
        let target = LdapTarget::open(settings(&ldap, &dir, vec![ldap.url.clone()]), schema())
            .expect("the target opens");
        Fixture {
            target,
            ldap,
            _dir: dir,
        }
    }

    fn apply(&self, change: &Change) -> Outcome {
        Target::apply(&self.target, change)
    }

    fn applied(&self, change: &Change) {
        assert_eq!(self.apply(change), Outcome::Applied, "{change:?}");
    }

    /// The entry at `dn` as the admin sees it (`attrs` may name operational attributes),
    /// attribute names lower-cased; `None` when there is none.
    fn entry(&self, dn: &str, attrs: &[&str]) -> Option<HashMap<String, Vec<String>>> {
        let mut conn = LdapConn::new(&self.ldap.url).expect("connect");
        conn.simple_bind(&self.ldap.admin_dn, &self.ldap.admin_password)
            .and_then(|r| r.success())
            .expect("bind");
        let result = conn
            .search(dn, Scope::Base, "(objectClass=*)", attrs.to_vec())
            .expect("search");
        if result.1.rc == 32 {
            return None;
        }
        let (entries, _) = result.success().expect("search succeeds");
        let entry = SearchEntry::construct(entries.into_iter().next()?);
        Some(
            entry
                .attrs
                .into_iter()
                .map(|(k, mut v)| {
                    v.sort();
                    (k.to_ascii_lowercase(), v)
                })
                .collect(),
        )
    }

    fn values(&self, dn: &str, attr: &str) -> Vec<String> {
        let entry = self
            .entry(dn, &[attr])
            .unwrap_or_else(|| panic!("no entry {dn}"));
        entry
            .get(&attr.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    fn csn(&self, dn: &str) -> String {
        let csn = self.values(dn, "entryCSN").concat();
        assert!(!csn.is_empty(), "{dn} has no entryCSN");
        csn
    }

    fn uuid(&self, dn: &str) -> String {
        self.values(dn, "entryUUID").concat()
    }

    /// The member DNs of a group, compared as DNs by the directory: whether `member` is
    /// one of them.
    fn lists(&self, group: &str, member: &str) -> bool {
        let filter = format!("(member={})", ldap3::ldap_escape(member));
        let ldif = self.ldap.ldapsearch(group, &filter, &["1.1"]);
        !ldif.trim().is_empty()
    }
}

pub(crate) fn user_dn(uid: &str) -> String {
    format!("uid={},{PEOPLE_DN}", dn_escape(uid))
}

pub(crate) fn group_dn(cn: &str) -> String {
    format!("cn={},{GROUPS_DN}", dn_escape(cn))
}

pub(crate) fn text(name: &str, value: &str) -> (String, Cell) {
    (name.to_string(), Cell::Text(value.to_string()))
}

pub(crate) fn null(name: &str) -> (String, Cell) {
    (name.to_string(), Cell::Null)
}

pub(crate) fn user(key: &str, dn: &str, cells: Vec<(String, Cell)>) -> Change {
    Change::Upsert {
        kind: ResourceKind::User,
        key: key.into(),
        dn: Some(dn.into()),
        cells,
        members: None,
        default_groups: Vec::new(),
        disabled: false,
        password: None,
    }
}

/// A user `uid` with the usual cells.
fn alice(uid: &str, mail: &str) -> Change {
    user(
        "id-alice",
        &user_dn(uid),
        vec![
            text("uid", uid),
            text("cn", "Alice Liddell"),
            text("sn", "Liddell"),
            text("mail", mail),
        ],
    )
}

pub(crate) fn person(key: &str, uid: &str) -> Change {
    user(
        key,
        &user_dn(uid),
        vec![text("uid", uid), text("cn", uid), text("sn", uid)],
    )
}

pub(crate) fn group(key: &str, cn: &str, members: &[&str]) -> Change {
    Change::Upsert {
        kind: ResourceKind::Group,
        key: key.into(),
        dn: Some(group_dn(cn)),
        cells: vec![text("cn", cn)],
        members: Some(Members::All(
            members.iter().map(|m| m.to_string()).collect(),
        )),
        default_groups: Vec::new(),
        disabled: false,
        password: None,
    }
}

#[test]
fn an_upsert_adds_the_entry_with_its_classes_and_values_and_links_it() {
    let f = Fixture::new();
    f.applied(&alice(
        "alice",
        r#"["alice@example.com","a.liddell@example.com"]"#,
    ));
    let dn = user_dn("alice");
    let entry = f
        .entry(
            &dn,
            &["objectClass", "uid", "cn", "sn", "mail", "description"],
        )
        .expect("the entry exists");
    assert_eq!(
        entry["objectclass"],
        ["inetOrgPerson", "organizationalPerson", "person", "top"]
    );
    assert_eq!(entry["uid"], ["alice"]);
    assert_eq!(entry["cn"], ["Alice Liddell"]);
    assert_eq!(entry["sn"], ["Liddell"]);
    assert_eq!(
        entry["mail"],
        ["a.liddell@example.com", "alice@example.com"]
    );
    assert!(
        !entry.contains_key("description"),
        "a Null cell is no attribute"
    );
    assert_eq!(f.target.linked_dn("id-alice"), Some(dn));
    assert_eq!(f.target.linked_dn("id-nobody"), None);
}

#[test]
fn applying_the_same_change_again_writes_nothing() {
    let f = Fixture::new();
    let change = alice("alice", r#"["b@example.com","a@example.com"]"#);
    f.applied(&change);
    f.applied(&group("id-g", "staff", &["id-alice"]));
    let dn = user_dn("alice");
    let (user_csn, group_csn) = (f.csn(&dn), f.csn(&group_dn("staff")));
    // Let a write, if any, get a visibly different CSN and modifyTimestamp.
    std::thread::sleep(Duration::from_millis(1100));
    f.applied(&change);
    f.applied(&group("id-g", "staff", &["id-alice"]));
    assert_eq!(f.csn(&dn), user_csn, "the user was written again");
    assert_eq!(
        f.csn(&group_dn("staff")),
        group_csn,
        "the group was written again"
    );
}

#[test]
fn a_changed_value_is_written_and_attributes_not_mapped_are_left_alone() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    let dn = user_dn("alice");
    // An attribute the mapping does not own, set by hand.
    f.ldap.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nadd: givenName\ngivenName: Alice\n"
    ));
    let before = f.csn(&dn);
    f.applied(&alice("alice", "alice@wonderland.example"));
    let entry = f
        .entry(&dn, &["cn", "sn", "mail", "givenName"])
        .expect("entry");
    assert_eq!(entry["mail"], ["alice@wonderland.example"]);
    assert_eq!(entry["cn"], ["Alice Liddell"]);
    assert_eq!(
        entry["givenname"],
        ["Alice"],
        "a hand-set attribute survives"
    );
    assert_ne!(f.csn(&dn), before);
    // An object class removed by hand comes back; the ones added by hand stay.
    f.ldap.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nadd: objectClass\nobjectClass: extensibleObject\n"
    ));
    f.applied(&alice("alice", "alice@wonderland.example"));
    assert!(
        f.values(&dn, "objectClass")
            .contains(&"extensibleObject".to_string())
    );
}

#[test]
fn create_only_attributes_are_written_once() {
    let f = Fixture::new();
    let dn = user_dn("bob");
    let with_number = |n: &str| {
        user(
            "id-bob",
            &dn,
            vec![
                text("uid", "bob"),
                text("cn", "Bob"),
                text("sn", "B"),
                text("employeeNumber", n),
            ],
        )
    };
    f.applied(&with_number("1001"));
    f.applied(&with_number("2002"));
    assert_eq!(f.values(&dn, "employeeNumber"), ["1001"]);
    // Once the entry has no value (removed by hand), the next change writes it.
    f.ldap.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\ndelete: employeeNumber\n"
    ));
    f.applied(&with_number("3003"));
    assert_eq!(f.values(&dn, "employeeNumber"), ["3003"]);
}

#[test]
fn an_absent_value_deletes_the_attribute_unless_it_is_kept_when_empty() {
    let f = Fixture::new();
    let dn = user_dn("carol");
    let carol = |phone: Cell, description: Cell| {
        user(
            "id-carol",
            &dn,
            vec![
                text("uid", "carol"),
                text("cn", "Carol"),
                text("sn", "C"),
                ("telephoneNumber".into(), phone),
                ("description".into(), description),
            ],
        )
    };
    f.applied(&carol(
        Cell::Text("+1 555 0100".into()),
        Cell::Text("temp".into()),
    ));
    f.applied(&carol(Cell::Null, Cell::Null));
    let entry = f
        .entry(&dn, &["telephoneNumber", "description"])
        .expect("entry");
    assert_eq!(entry["telephonenumber"], ["+1 555 0100"], "kept when empty");
    assert!(!entry.contains_key("description"), "deleted: {entry:?}");
}

#[test]
fn a_rename_moves_the_entry_and_fixes_the_groups_that_list_it() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&person("id-bob", "bob"));
    f.applied(&group("id-g1", "staff", &["id-alice", "id-bob"]));
    f.applied(&group("id-g2", "admins", &["id-alice"]));
    let old = user_dn("alice");
    let uuid = f.uuid(&old);

    f.applied(&alice("alice.liddell", "alice@example.com"));
    let new = user_dn("alice.liddell");
    assert!(f.entry(&old, &["1.1"]).is_none(), "the old DN is gone");
    assert_eq!(f.uuid(&new), uuid, "renamed, not re-created");
    assert_eq!(
        f.values(&new, "uid"),
        ["alice.liddell"],
        "old RDN value deleted"
    );
    assert_eq!(f.target.linked_dn("id-alice"), Some(new.clone()));
    for g in ["staff", "admins"] {
        assert!(f.lists(&group_dn(g), &new), "{g} lists the new DN");
        assert!(!f.lists(&group_dn(g), &old), "{g} still lists the old DN");
    }
    assert!(f.lists(&group_dn("staff"), &user_dn("bob")));
    // Converging the groups again changes nothing: they are already right.
    let csn = f.csn(&group_dn("staff"));
    f.applied(&group("id-g1", "staff", &["id-alice", "id-bob"]));
    assert_eq!(f.csn(&group_dn("staff")), csn);
}

/// The links file as a crash inside a rename leaves it: the link already at `to`
/// (written durably before the modifyDN), `from` remembered as the DN it moves from.
fn crash_mid_rename(f: &Fixture, key: &str, from: &str, to: &str) {
    let links = rusqlite::Connection::open(f._dir.path().join("ldap-links.db")).expect("links");
    let changed = links
        .execute(
            "UPDATE links SET dn = ?2, moving_from = ?3 WHERE id = ?1",
            [key, to, from],
        )
        .expect("update the link");
    assert_eq!(changed, 1);
}

fn entries_with_mail(f: &Fixture, mail: &str) -> usize {
    f.ldap
        .ldapsearch(PEOPLE_DN, &format!("(mail={mail})"), &["1.1"])
        .lines()
        .filter(|l| l.starts_with("dn:"))
        .count()
}

#[test]
fn a_rename_cut_short_before_the_modify_dn_is_finished_by_the_next_delivery() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&group("id-g1", "staff", &["id-alice"]));
    let (old, new) = (user_dn("alice"), user_dn("alice.liddell"));
    let uuid = f.uuid(&old);
    // The daemon died after linking the new DN and before the modifyDN.
    crash_mid_rename(&f, "id-alice", &old, &new);
    f.applied(&alice("alice.liddell", "alice@example.com"));
    assert_eq!(f.uuid(&new), uuid, "moved, not added again");
    assert!(f.entry(&old, &["1.1"]).is_none());
    assert_eq!(entries_with_mail(&f, "alice@example.com"), 1);
    assert!(f.lists(&group_dn("staff"), &new));
    assert!(!f.lists(&group_dn("staff"), &old));
    assert_eq!(f.target.linked_dn("id-alice"), Some(new));
}

#[test]
fn a_rename_cut_short_after_the_modify_dn_converges_without_a_second_entry() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&group("id-g1", "staff", &["id-alice"]));
    let (old, new) = (user_dn("alice"), user_dn("alice.liddell"));
    let uuid = f.uuid(&old);
    // The modifyDN reached the directory; the daemon died before the groups were fixed.
    f.ldap.ldapmodify(&format!(
        "dn: {old}\nchangetype: modrdn\nnewrdn: uid=alice.liddell\ndeleteoldrdn: 1\n"
    ));
    crash_mid_rename(&f, "id-alice", &old, &new);
    // Redelivery from the last mark: the record before the rename, then the rename.
    f.applied(&alice("alice", "alice@example.com"));
    assert_eq!(
        entries_with_mail(&f, "alice@example.com"),
        1,
        "no second entry"
    );
    assert_eq!(f.uuid(&old), uuid);
    f.applied(&alice("alice.liddell", "alice@example.com"));
    assert_eq!(entries_with_mail(&f, "alice@example.com"), 1);
    assert_eq!(f.uuid(&new), uuid);
    assert!(f.lists(&group_dn("staff"), &new), "the group follows");
    assert!(!f.lists(&group_dn("staff"), &old));
    // Deleting it removes it, wherever a cut-short rename left it.
    crash_mid_rename(&f, "id-alice", &new, &old);
    f.applied(&Change::Remove {
        kind: ResourceKind::User,
        key: "id-alice".into(),
    });
    assert_eq!(entries_with_mail(&f, "alice@example.com"), 0);
}

/// `person` with a `manager` reference cell (a SCIM id, or Null).
fn report(key: &str, uid: &str, manager: Option<&str>) -> Change {
    let mut change = person(key, uid);
    if let Change::Upsert { cells, .. } = &mut change {
        cells.push(match manager {
            Some(id) => text("manager", id),
            None => null("manager"),
        });
    }
    change
}

#[test]
fn a_manager_linked_first_is_written_as_its_dn() {
    let f = Fixture::new();
    f.applied(&person("id-boss", "boss"));
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    assert_eq!(f.values(&user_dn("rep"), "manager"), [user_dn("boss")]);
    // Applying again writes nothing, and neither does the manager's own upsert.
    let csn = f.csn(&user_dn("rep"));
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    f.applied(&person("id-boss", "boss"));
    assert_eq!(f.csn(&user_dn("rep")), csn);
}

#[test]
fn a_report_before_its_manager_gets_the_manager_once_it_is_linked() {
    let f = Fixture::new();
    let rep = user_dn("rep");
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    assert!(
        f.values(&rep, "manager").is_empty(),
        "left out while unknown"
    );
    // Applying the report again changes nothing while the manager is still unknown.
    let csn = f.csn(&rep);
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    assert_eq!(f.csn(&rep), csn);

    f.applied(&person("id-boss", "boss"));
    assert_eq!(f.values(&rep, "manager"), [user_dn("boss")]);
    // Resolved once: neither upsert writes the report again.
    let csn = f.csn(&rep);
    f.applied(&person("id-boss", "boss"));
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    assert_eq!(f.csn(&rep), csn);
}

#[test]
fn an_unknown_manager_leaves_the_current_value_and_a_null_one_clears_it() {
    let f = Fixture::new();
    let rep = user_dn("rep");
    f.applied(&person("id-boss", "boss"));
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    // A new manager not linked yet: the old value stays until it is.
    f.applied(&report("id-rep", "rep", Some("id-new-boss")));
    assert_eq!(f.values(&rep, "manager"), [user_dn("boss")]);
    // Cleared before the new manager arrives: the pending reference is forgotten too.
    f.applied(&report("id-rep", "rep", None));
    assert!(f.values(&rep, "manager").is_empty());
    f.applied(&person("id-new-boss", "new.boss"));
    assert!(
        f.values(&rep, "manager").is_empty(),
        "pending one forgotten"
    );
    f.applied(&report("id-rep", "rep", Some("id-new-boss")));
    assert_eq!(f.values(&rep, "manager"), [user_dn("new.boss")]);
}

#[test]
fn a_renamed_manager_is_followed_by_its_reports_and_a_removed_one_leaves_them() {
    let f = Fixture::new();
    f.applied(&person("id-boss", "boss"));
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    f.applied(&report("id-rep2", "rep2", Some("id-boss")));
    f.applied(&person("id-boss", "big.boss"));
    for r in ["rep", "rep2"] {
        assert_eq!(f.values(&user_dn(r), "manager"), [user_dn("big.boss")]);
    }
    // Re-applying the reports changes nothing: they are already right.
    let csn = f.csn(&user_dn("rep"));
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    assert_eq!(f.csn(&user_dn("rep")), csn);

    f.applied(&Change::Remove {
        kind: ResourceKind::User,
        key: "id-boss".into(),
    });
    for r in ["rep", "rep2"] {
        assert!(f.values(&user_dn(r), "manager").is_empty(), "{r}");
    }
    // The report converged again while its manager is gone: no manager, until it is back.
    f.applied(&report("id-rep", "rep", Some("id-boss")));
    assert!(f.values(&user_dn("rep"), "manager").is_empty());
    f.applied(&person("id-boss", "boss"));
    assert_eq!(f.values(&user_dn("rep"), "manager"), [user_dn("boss")]);
}

#[test]
fn a_new_user_joins_its_default_groups_and_an_update_does_not() {
    let f = Fixture::new();
    f.applied(&group("id-all", "everyone", &[]));
    f.applied(&person("id-bob", "bob"));
    f.applied(&group("id-staff", "staff", &["id-bob"]));
    // A group this target does not manage, holding only the placeholder.
    f.ldap.ldapadd(&format!(
        "dn: {}\nobjectClass: groupOfNames\ncn: by hand\nmember: {PLACEHOLDER}\n",
        group_dn("by hand")
    ));
    let with_defaults = |change: Change, groups: &[String]| match change {
        Change::Upsert {
            kind,
            key,
            dn,
            cells,
            members,
            ..
        } => Change::Upsert {
            kind,
            key,
            dn,
            cells,
            members,
            default_groups: groups.to_vec(),
            disabled: false,
            password: None,
        },
        other => other,
    };
    let defaults = [
        group_dn("everyone"),
        group_dn("staff"),
        group_dn("by hand"),
        group_dn("missing"),
    ];
    let alice_dn = user_dn("alice");
    f.applied(&with_defaults(
        alice("alice", "alice@example.com"),
        &defaults,
    ));
    assert_eq!(
        f.values(&group_dn("everyone"), "member"),
        [user_dn("alice")],
        "the placeholder gives way"
    );
    assert_eq!(f.values(&group_dn("by hand"), "member"), [user_dn("alice")]);
    assert!(f.lists(&group_dn("staff"), &alice_dn) && f.lists(&group_dn("staff"), &user_dn("bob")));
    assert!(f.entry(&group_dn("missing"), &["1.1"]).is_none());

    // Applying the change again, or updating the user, writes no group.
    let csns: Vec<String> = defaults[..3].iter().map(|g| f.csn(g)).collect();
    f.applied(&with_defaults(
        alice("alice", "alice@example.com"),
        &defaults,
    ));
    f.applied(&with_defaults(
        alice("alice", "alice@wonderland.example"),
        &defaults,
    ));
    assert_eq!(
        defaults[..3].iter().map(|g| f.csn(g)).collect::<Vec<_>>(),
        csns
    );

    // An existing user given default groups on an update does not join them.
    f.applied(&with_defaults(
        person("id-bob", "bob"),
        &[group_dn("everyone")],
    ));
    assert!(!f.lists(&group_dn("everyone"), &user_dn("bob")));

    // A managed group converged with its SCIM members keeps the default members.
    f.applied(&group("id-staff", "staff", &["id-bob"]));
    assert!(
        f.lists(&group_dn("staff"), &alice_dn) && f.lists(&group_dn("staff"), &user_dn("bob")),
        "the default member stays"
    );
    f.applied(&group("id-staff", "staff", &[]));
    assert_eq!(
        f.values(&group_dn("staff"), "member"),
        std::slice::from_ref(&alice_dn)
    );
}

#[test]
fn a_move_to_another_parent_keeps_the_entry_and_the_memberships() {
    let f = Fixture::new();
    f.ldap
        .ldapadd("dn: ou=staff,dc=example,dc=com\nobjectClass: organizationalUnit\nou: staff\n");
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&group("id-g", "staff", &["id-alice"]));
    let old = user_dn("alice");
    let uuid = f.uuid(&old);
    let moved = "uid=alice,ou=staff,dc=example,dc=com";
    let mut change = alice("alice", "alice@example.com");
    if let Change::Upsert { dn, .. } = &mut change {
        *dn = Some(moved.into());
    }
    f.applied(&change);
    assert!(f.entry(&old, &["1.1"]).is_none());
    assert_eq!(f.uuid(moved), uuid);
    assert!(f.lists(&group_dn("staff"), moved));
    assert!(!f.lists(&group_dn("staff"), &old));
    assert_eq!(f.target.linked_dn("id-alice").as_deref(), Some(moved));
}

#[test]
fn a_rename_onto_an_existing_entry_is_rejected() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&person("id-bob", "bob"));
    let outcome = f.apply(&alice("bob", "alice@example.com"));
    match outcome {
        Outcome::Rejected(detail) => {
            assert!(detail.starts_with("entryAlreadyExists"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.target.linked_dn("id-alice"), Some(user_dn("alice")));
}

#[test]
fn an_entry_already_at_the_dn_is_adopted() {
    let f = Fixture::new();
    let dn = user_dn("alice");
    f.ldap.ldapadd(&format!(
        "dn: {dn}\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: inetOrgPerson\nuid: alice\ncn: Old Name\nsn: Liddell\n\
         employeeNumber: 7\ndescription: by hand\n"
    ));
    let uuid = f.uuid(&dn);
    let mut change = alice("alice", "alice@example.com");
    if let Change::Upsert { cells, .. } = &mut change {
        cells.push(text("employeeNumber", "8"));
    }
    f.applied(&change);
    let entry = f
        .entry(
            &dn,
            &["objectClass", "cn", "mail", "employeeNumber", "description"],
        )
        .expect("entry");
    assert_eq!(f.uuid(&dn), uuid, "adopted, not re-created");
    assert_eq!(entry["cn"], ["Alice Liddell"]);
    assert_eq!(entry["mail"], ["alice@example.com"]);
    assert_eq!(
        entry["employeenumber"],
        ["7"],
        "create_only: the entry has one"
    );
    assert_eq!(
        entry["description"],
        ["by hand"],
        "not in the change's cells"
    );
    assert!(entry["objectclass"].contains(&"top".to_string()));
    assert_eq!(f.target.linked_dn("id-alice"), Some(dn));
}

#[test]
fn group_members_are_the_linked_dns_and_the_placeholder_stands_in_for_none() {
    let f = Fixture::new();
    let g = group_dn("staff");
    // A group converged before its members: the placeholder, members not linked left out.
    f.applied(&group("id-g", "staff", &["id-alice", "id-bob"]));
    assert_eq!(f.values(&g, "member"), [PLACEHOLDER]);
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&group("id-g", "staff", &["id-alice", "id-bob"]));
    assert_eq!(
        f.values(&g, "member"),
        [user_dn("alice")],
        "placeholder gone"
    );
    f.applied(&person("id-bob", "bob"));
    f.applied(&group("id-g", "staff", &["id-alice", "id-bob"]));
    assert!(f.lists(&g, &user_dn("alice")) && f.lists(&g, &user_dn("bob")));
    f.applied(&group("id-g", "staff", &[]));
    assert_eq!(f.values(&g, "member"), [PLACEHOLDER]);
}

/// A member delta of group `key` (what a journal record with `member_delta` maps to).
fn delta(key: &str, cn: &str, added: &[&str], removed: &[&str]) -> Change {
    let ids = |v: &[&str]| v.iter().map(|m| m.to_string()).collect();
    Change::Upsert {
        kind: ResourceKind::Group,
        key: key.into(),
        dn: Some(group_dn(cn)),
        cells: vec![text("cn", cn)],
        members: Some(Members::Delta {
            added: ids(added),
            removed: ids(removed),
        }),
        default_groups: Vec::new(),
        disabled: false,
        password: None,
    }
}

#[test]
fn a_member_delta_writes_only_the_values_it_names_and_keeps_the_placeholder_right() {
    let f = Fixture::new();
    let g = group_dn("staff");
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&person("id-bob", "bob"));
    f.applied(&person("id-carol", "carol"));
    f.applied(&group("id-g", "staff", &["id-carol"]));
    let before = f.csn(&user_dn("carol"));

    f.applied(&delta("id-g", "staff", &["id-alice", "id-bob"], &[]));
    let mut want = vec![user_dn("alice"), user_dn("bob"), user_dn("carol")];
    want.sort();
    assert_eq!(f.values(&g, "member"), want);
    assert_eq!(f.csn(&user_dn("carol")), before, "members are not touched");
    // Delivered twice (a retry): values already there are no error.
    f.applied(&delta("id-g", "staff", &["id-alice", "id-bob"], &[]));
    assert_eq!(f.values(&g, "member"), want);

    // A member an admin already took out by hand: removing it is no error either, and the
    // last member leaving brings the placeholder back.
    let mut admin = LdapConn::new(&f.ldap.url).expect("connect");
    admin
        .simple_bind(&f.ldap.admin_dn, &f.ldap.admin_password)
        .and_then(|r| r.success())
        .expect("bind");
    admin
        .modify(
            &g,
            vec![ldap3::Mod::Delete(
                "member".to_string(),
                std::collections::HashSet::from([user_dn("bob")]),
            )],
        )
        .and_then(|r| r.success())
        .expect("delete bob by hand");
    f.applied(&delta("id-g", "staff", &[], &["id-bob", "id-alice"]));
    assert_eq!(f.values(&g, "member"), [user_dn("carol")]);
    f.applied(&delta("id-g", "staff", &[], &["id-carol"]));
    assert_eq!(f.values(&g, "member"), [PLACEHOLDER]);

    // A member not in the directory yet joins when it arrives; the placeholder gives way.
    f.applied(&delta("id-g", "staff", &["id-dave"], &[]));
    assert_eq!(f.values(&g, "member"), [PLACEHOLDER]);
    f.applied(&person("id-dave", "dave"));
    assert_eq!(f.values(&g, "member"), [user_dn("dave")]);
    f.applied(&delta("id-g", "staff", &["id-alice"], &[]));
    let mut want = vec![user_dn("alice"), user_dn("dave")];
    want.sort();
    assert_eq!(f.values(&g, "member"), want, "no placeholder among members");
}

#[test]
fn a_batch_converges_in_order_and_its_links_are_on_disk_when_it_returns() {
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let open = || {
        LdapTarget::open(settings(&ldap, &dir, vec![ldap.url.clone()]), schema())
            .expect("the target opens")
    };
    let target = open();
    let batch = [
        alice("alice", "alice@example.com"),
        person("id-bob", "bob"),
        group("id-g", "staff", &["id-alice", "id-bob"]),
        // The same change again in the same batch: converged, nothing to write.
        person("id-bob", "bob"),
    ];
    let outcomes = Target::apply_batch(&target, &batch);
    assert_eq!(outcomes, vec![Outcome::Applied; 4]);
    drop(target);
    let reopened = open();
    assert_eq!(reopened.linked_dn("id-alice"), Some(user_dn("alice")));
    assert_eq!(reopened.linked_dn("id-g"), Some(group_dn("staff")));
    let mut f = Fixture {
        target: reopened,
        ldap,
        _dir: dir,
    };
    assert!(f.lists(&group_dn("staff"), &user_dn("bob")));
    // A batch after the directory went away: unavailable from the first change on.
    f.ldap.stop();
    let outcomes = Target::apply_batch(
        &f.target,
        &[person("id-carol", "carol"), person("id-dan", "dan")],
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Unavailable(_))),
        "{outcomes:?}"
    );
}

#[test]
fn new_users_of_a_batch_are_added_together_yet_two_at_one_dn_are_told_apart_in_order() {
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = LdapTarget::open(settings(&ldap, &dir, vec![ldap.url.clone()]), schema())
        .expect("the target opens");
    // Ten new users (added over the pool's connections at once, a wave per pool size),
    // a second resource at the DN of the fifth (never in the same wave: refused as the
    // one-by-one order refuses it), a group of them, and the first one changed again.
    let mut batch: Vec<Change> = (0..10)
        .map(|i| person(&format!("id-u{i}"), &format!("u{i}")))
        .collect();
    batch.insert(5, person("id-twin", "u4"));
    batch.push(group("id-g", "wave", &["id-u0", "id-u9"]));
    batch.push(user(
        "id-u0",
        &user_dn("u0"),
        vec![text("uid", "u0"), text("cn", "U Zero"), text("sn", "u0")],
    ));
    let outcomes = Target::apply_batch(&target, &batch);
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 5 {
            assert!(
                matches!(outcome, Outcome::Rejected(d) if d.contains("u4")),
                "the twin: {outcome:?}"
            );
        } else {
            assert_eq!(*outcome, Outcome::Applied, "change {i}");
        }
    }
    for i in 0..10 {
        assert_eq!(
            target.linked_dn(&format!("id-u{i}")),
            Some(user_dn(&format!("u{i}")))
        );
    }
    assert_eq!(target.linked_dn("id-twin"), None);
    let people = ldap.ldapsearch(
        &user_dn("u0").replacen("uid=u0,", "", 1),
        "(uid=*)",
        &["cn"],
    );
    assert_eq!(people.matches("dn: ").count(), 10, "{people}");
    assert!(people.contains("cn: U Zero"), "{people}");
    let members = ldap.ldapsearch(&group_dn("wave"), "(objectClass=*)", &["member"]);
    assert!(
        members.contains(&user_dn("u0")) && members.contains(&user_dn("u9")),
        "{members}"
    );
}

#[test]
fn a_user_created_and_renamed_in_one_batch_is_one_entry_at_the_new_name() {
    // A backlog after an outage holds the create and the rename of one user: both look
    // new (nothing linked yet), at distinct DNs, but they are one resource, so they are
    // converged in order, never added side by side.
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = LdapTarget::open(settings(&ldap, &dir, vec![ldap.url.clone()]), schema())
        .expect("the target opens");
    let batch = [
        person("id-r", "before"),
        person("id-r", "after"),
        person("id-a", "a0"),
        person("id-b", "b0"),
        person("id-c", "c0"),
    ];
    let outcomes = Target::apply_batch(&target, &batch);
    assert_eq!(outcomes, vec![Outcome::Applied; 5]);
    assert_eq!(target.linked_dn("id-r"), Some(user_dn("after")));
    let people = ldap.ldapsearch(
        &user_dn("a0").replacen("uid=a0,", "", 1),
        "(uid=*)",
        &["1.1"],
    );
    assert_eq!(people.matches("dn: ").count(), 4, "{people}");
    assert!(!people.contains(&user_dn("before")), "{people}");
}

/// Changes that arrive while a round runs, as the delivery worker hands them over: in
/// order, each only if the target accepts it; a refused one closes the feed.
struct Arriving {
    first_index: usize,
    left: std::sync::Mutex<std::collections::VecDeque<Change>>,
    handed: std::sync::Mutex<Vec<Change>>,
    refused: std::sync::Mutex<Option<Change>>,
}

impl Arriving {
    fn new(first_index: usize, changes: Vec<Change>) -> Arriving {
        Arriving {
            first_index,
            left: std::sync::Mutex::new(changes.into()),
            handed: std::sync::Mutex::new(Vec::new()),
            refused: std::sync::Mutex::new(None),
        }
    }
}

impl Feed for Arriving {
    fn next(
        &self,
        _wait: Duration,
        accept: &mut dyn FnMut(&Change) -> bool,
    ) -> Option<(usize, Change)> {
        let mut refused = self.refused.lock().expect("lock");
        if refused.is_some() {
            return None;
        }
        let change = self.left.lock().expect("lock").pop_front()?;
        if !accept(&change) {
            *refused = Some(change);
            return None;
        }
        let mut handed = self.handed.lock().expect("lock");
        handed.push(change.clone());
        Some((self.first_index + handed.len() - 1, change))
    }
}

#[test]
fn a_round_takes_arriving_new_users_until_one_depends_on_a_change_in_flight() {
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = LdapTarget::open(settings(&ldap, &dir, vec![ldap.url.clone()]), schema())
        .expect("the target opens");
    // The round's own: two new users. Arriving while it runs: two more new users, then a
    // second change of one of them (its rename: it may not go beside its add), then one
    // that no longer belongs to this round.
    let own = [person("id-a", "a"), person("id-b", "b")];
    let arriving = Arriving::new(
        own.len(),
        vec![
            person("id-c", "c"),
            person("id-d", "d"),
            person("id-c", "c2"),
            person("id-e", "e"),
        ],
    );
    let told = std::sync::Mutex::new(Vec::new());
    let outcomes = target.deliver_fed(
        &own,
        &|i, outcome| told.lock().expect("lock").push((i, outcome.clone())),
        &arriving,
    );
    assert_eq!(
        outcomes,
        vec![Outcome::Applied; 4],
        "the own two and the two fed"
    );
    assert_eq!(
        *arriving.handed.lock().expect("lock"),
        [person("id-c", "c"), person("id-d", "d")]
    );
    assert_eq!(
        *arriving.refused.lock().expect("lock"),
        Some(person("id-c", "c2")),
        "the rename waits for the next round"
    );
    assert_eq!(arriving.left.lock().expect("lock").len(), 1);
    let mut told = told.into_inner().expect("lock");
    told.sort_by_key(|(i, _)| *i);
    assert_eq!(
        told,
        (0..4).map(|i| (i, Outcome::Applied)).collect::<Vec<_>>(),
        "each applied change told once, by its index in the round"
    );
    for (key, uid) in [("id-a", "a"), ("id-b", "b"), ("id-c", "c"), ("id-d", "d")] {
        assert_eq!(target.linked_dn(key), Some(user_dn(uid)));
    }
    // A round whose own changes end with one that must go alone takes nothing arriving:
    // it would go before that one.
    let arriving = Arriving::new(2, vec![person("id-f", "f")]);
    let outcomes = target.deliver_fed(
        &[person("id-e", "e"), person("id-c", "c2")],
        &|_, _| {},
        &arriving,
    );
    assert_eq!(outcomes, vec![Outcome::Applied; 2]);
    assert!(arriving.handed.lock().expect("lock").is_empty());
    assert_eq!(target.linked_dn("id-c"), Some(user_dn("c2")));
    let people = ldap.ldapsearch(&user_dn("a").replacen("uid=a,", "", 1), "(uid=*)", &["1.1"]);
    assert_eq!(people.matches("dn: ").count(), 5, "{people}");
}

#[test]
fn a_removal_deletes_the_entry_and_takes_it_out_of_its_groups() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&person("id-bob", "bob"));
    f.applied(&group("id-g1", "staff", &["id-alice", "id-bob"]));
    f.applied(&group("id-g2", "admins", &["id-alice"]));
    let remove = Change::Remove {
        kind: ResourceKind::User,
        key: "id-alice".into(),
    };
    f.applied(&remove);
    assert!(f.entry(&user_dn("alice"), &["1.1"]).is_none());
    assert_eq!(f.values(&group_dn("staff"), "member"), [user_dn("bob")]);
    assert_eq!(
        f.values(&group_dn("admins"), "member"),
        [PLACEHOLDER],
        "the last member gives way to the placeholder"
    );
    assert_eq!(f.target.linked_dn("id-alice"), None);
    f.applied(&remove);

    // An entry deleted by hand: the removal still succeeds.
    f.ldap.ldapdelete(&user_dn("bob"));
    f.applied(&Change::Remove {
        kind: ResourceKind::User,
        key: "id-bob".into(),
    });
    assert_eq!(f.target.linked_dn("id-bob"), None);

    f.applied(&Change::Remove {
        kind: ResourceKind::Group,
        key: "id-g1".into(),
    });
    assert!(f.entry(&group_dn("staff"), &["1.1"]).is_none());
}

#[test]
fn an_archive_writes_its_cells_and_keeps_the_link() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    f.applied(&Change::Archive {
        dn: None,
        kind: ResourceKind::User,
        key: "id-alice".into(),
        cells: vec![text("description", "disabled"), null("mail")],
        at: "2026-01-01T00:00:00.000Z".into(),
    });
    let dn = user_dn("alice");
    let entry = f.entry(&dn, &["description", "mail", "cn"]).expect("kept");
    assert_eq!(entry["description"], ["disabled"]);
    assert!(!entry.contains_key("mail"));
    assert_eq!(entry["cn"], ["Alice Liddell"]);
    assert_eq!(f.target.linked_dn("id-alice"), Some(dn));
}

#[test]
fn the_directory_refusing_the_data_is_a_rejection_with_its_diagnostic() {
    let f = Fixture::new();
    let no_sn = user(
        "id-x",
        &user_dn("x"),
        vec![text("uid", "x"), text("cn", "X")],
    );
    match f.apply(&no_sn) {
        Outcome::Rejected(detail) => {
            assert!(detail.starts_with("objectClassViolation: "), "{detail}");
            assert!(detail.contains("'sn'"), "the server's text: {detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.target.linked_dn("id-x"), None);
    // A cell the mapping does not map is a mapping bug, refused before writing.
    let unmapped = user(
        "id-x",
        &user_dn("x"),
        vec![text("uid", "x"), text("title", "Boss")],
    );
    assert!(matches!(f.apply(&unmapped), Outcome::Rejected(_)));
    assert!(f.entry(&user_dn("x"), &["1.1"]).is_none());
}

#[test]
fn a_stopped_directory_is_unavailable_and_the_next_change_after_restart_applies() {
    let mut f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    // The pool keeps the connection; slapd goes away under it.
    f.ldap.stop();
    match f.apply(&alice("alice", "new@example.com")) {
        Outcome::Unavailable(detail) => assert!(!detail.is_empty()),
        other => panic!("{other:?}"),
    }
    f.ldap.start_again();
    f.applied(&alice("alice", "new@example.com"));
    assert_eq!(f.values(&user_dn("alice"), "mail"), ["new@example.com"]);

    // Restarted while the pool's connections sat idle: the first change after it applies.
    f.ldap.restart();
    f.applied(&alice("alice", "newer@example.com"));
    assert_eq!(f.values(&user_dn("alice"), "mail"), ["newer@example.com"]);
}

#[test]
fn the_urls_are_tried_in_order() {
    let ldap = Slapd::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    // Nothing listens on port 1: the second URL takes over.
    let urls = vec!["ldap://127.0.0.1:1".to_string(), ldap.url.clone()];
    let target = LdapTarget::open(settings(&ldap, &dir, urls), schema()).expect("opens");
    assert_eq!(
        target.apply(&alice("alice", "alice@example.com")),
        Outcome::Applied
    );
    let mut bad_password = settings(&ldap, &dir, vec![ldap.url.clone()]);
    bad_password.bind_password = Secret::new("wrong".into());
    let target = LdapTarget::open(bad_password, schema()).expect("opens");
    match target.apply(&alice("alice", "x@example.com")) {
        Outcome::Unavailable(detail) => {
            assert!(detail.contains("invalidCredentials"), "{detail}");
            assert!(!detail.contains("wrong"), "the password leaks: {detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn hostile_values_in_dns_round_trip() {
    let f = Fixture::new();
    let hostile = [
        "Doe, John",
        "a+b=c",
        "say \"hi\"",
        "back\\slash",
        "#hash",
        " padded ",
        "semi;colon<>",
        "Zoë 李 ☃",
    ];
    let mut keys = Vec::new();
    for (i, value) in hostile.iter().enumerate() {
        let key = format!("id-{i}");
        let dn = user_dn(value);
        f.applied(&user(
            &key,
            &dn,
            vec![text("uid", value), text("cn", value), text("sn", "S")],
        ));
        let entry = f
            .entry(&dn, &["uid", "cn"])
            .unwrap_or_else(|| panic!("{dn}"));
        assert_eq!(entry["cn"], [value.to_string()], "{dn}");
        assert_eq!(f.target.linked_dn(&key), Some(dn.clone()));
        keys.push(key);
    }
    let members: Vec<&str> = keys.iter().map(String::as_str).collect();
    f.applied(&group("id-g", "Ops, \"Tier\" #1", &members));
    let g = group_dn("Ops, \"Tier\" #1");
    for value in hostile {
        assert!(f.lists(&g, &user_dn(value)), "{value:?} is a member");
    }
    // Idempotent, though the directory writes these DNs back in its own form.
    let csns: Vec<String> = hostile.iter().map(|v| f.csn(&user_dn(v))).collect();
    let group_csn = f.csn(&g);
    std::thread::sleep(Duration::from_millis(1100));
    for (i, value) in hostile.iter().enumerate() {
        f.applied(&user(
            &keys[i],
            &user_dn(value),
            vec![text("uid", value), text("cn", value), text("sn", "S")],
        ));
    }
    f.applied(&group("id-g", "Ops, \"Tier\" #1", &members));
    let after: Vec<String> = hostile.iter().map(|v| f.csn(&user_dn(v))).collect();
    assert_eq!(after, csns);
    assert_eq!(f.csn(&g), group_csn);
    // Renaming one of them fixes the group; removing another takes it out.
    f.applied(&user(
        "id-0",
        &user_dn("Doe, Jane"),
        vec![
            text("uid", "Doe, Jane"),
            text("cn", "Doe, Jane"),
            text("sn", "S"),
        ],
    ));
    assert!(f.lists(&g, &user_dn("Doe, Jane")));
    assert!(!f.lists(&g, &user_dn("Doe, John")));
    f.applied(&Change::Remove {
        kind: ResourceKind::User,
        key: "id-3".into(),
    });
    assert!(!f.lists(&g, &user_dn("back\\slash")));
    assert!(f.lists(&g, &user_dn("#hash")));
}

#[test]
fn concurrent_changes_share_the_pool() {
    let f = Fixture::new();
    std::thread::scope(|scope| {
        for t in 0..6 {
            let f = &f;
            scope.spawn(move || {
                for i in 0..5 {
                    let uid = format!("user{t}-{i}");
                    f.applied(&person(&format!("id-{uid}"), &uid));
                }
            });
        }
    });
    let ldif = f
        .ldap
        .ldapsearch(PEOPLE_DN, "(objectClass=inetOrgPerson)", &["1.1"]);
    assert_eq!(ldif.matches("dn: ").count(), 30, "{ldif}");
}

/// The daemon opens its target from async code and may drop it there: the pool's
/// connections each run their own runtime, which must neither start nor stop on an async
/// thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_works_from_async_code() {
    let f = Fixture::new();
    f.applied(&alice("alice", "alice@example.com"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = LdapTarget::open(settings(&f.ldap, &dir, vec![f.ldap.url.clone()]), schema())
        .expect("opens on an async thread");
    assert_eq!(target.apply(&person("id-bob", "bob")), Outcome::Applied);
    drop(target);
    // (The harness's tools are processes: usable here, unlike a blocking LdapConn.)
    let ldif = f.ldap.ldapsearch(PEOPLE_DN, "(uid=bob)", &["1.1"]);
    assert!(ldif.contains(&user_dn("bob")), "{ldif}");
}
