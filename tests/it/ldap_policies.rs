//! The LDAP target's policies against a real slapd (`slapd::Slapd`, one per test):
//! parents created on demand, adoption of existing entries (at the DN, or found by `match`
//! attributes) and `on_existing: conflict`, the group flavours (`groupOfUniqueNames`,
//! `posixGroup` with `memberUid`), members listed before they exist, disable bits, disabled
//! users dropping their memberships, archive OUs and purging, and links files of an older
//! version. Changes are built by hand as the mapping would build them and applied with
//! `LdapTarget::apply`; the directory is read back as the admin.

use std::collections::HashMap;

use ldap3::{LdapConn, Scope, SearchEntry, dn_escape};
use scim_bridge::scim::schema::ResourceKind;
use scim_bridge::target::ldap::LdapTarget;
use scim_bridge::target::{
    Cell, Change, ColumnSpec, ColumnType, EntrySpec, LdapSchema, MemberSpec, MemberValue,
    OnExisting, Outcome, Target,
};

use crate::ldap_target::{group, group_dn, null, person, schema, settings, text, user, user_dn};
use crate::slapd::{BASE, PEOPLE_DN, Slapd};

/// The placeholder member of the groups (as in `ldap_target.rs`).
const PLACEHOLDER: &str = "cn=placeholder,dc=example,dc=com";
const DISABLED_OU: &str = "ou=disabled,dc=example,dc=com";
const ARCHIVE_OU: &str = "ou=archive,dc=example,dc=com";

/// A slapd and a directory for the links file; targets are opened with the schema each
/// test needs.
struct Fixture {
    ldap: Slapd,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            ldap: Slapd::start(),
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A target writing `schema` to the slapd, with the links file `ldap-links.db`.
    fn open(&self, schema: LdapSchema) -> LdapTarget {
        self.open_with_links(schema, "ldap-links.db")
    }

    fn open_with_links(&self, schema: LdapSchema, links: &str) -> LdapTarget {
        let mut settings = settings(&self.ldap, &self.dir, vec![self.ldap.url.clone()]);
        settings.links_path = self.dir.path().join(links);
        LdapTarget::open(settings, schema).expect("the target opens")
    }

    fn conn(&self) -> LdapConn {
        let mut conn = LdapConn::new(&self.ldap.url).expect("connect");
        conn.simple_bind(&self.ldap.admin_dn, &self.ldap.admin_password)
            .and_then(|r| r.success())
            .expect("bind");
        conn
    }

    /// The entry at `dn` (attribute names lower-cased, values sorted); `None`: none.
    fn entry(&self, dn: &str, attrs: &[&str]) -> Option<HashMap<String, Vec<String>>> {
        let result = self
            .conn()
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

    fn exists(&self, dn: &str) -> bool {
        self.entry(dn, &["1.1"]).is_some()
    }

    /// The values of `attr` of the entry at `dn`, sorted (panics when there is no entry).
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
        let uuid = self.values(dn, "entryUUID").concat();
        assert!(!uuid.is_empty(), "{dn} has no entryUUID");
        uuid
    }

    /// The DNs of the entries anywhere under the base matching `filter`.
    fn find(&self, filter: &str) -> Vec<String> {
        let (entries, _) = self
            .conn()
            .search(BASE, Scope::Subtree, filter, vec!["1.1"])
            .expect("search")
            .success()
            .expect("search succeeds");
        entries
            .into_iter()
            .map(|e| SearchEntry::construct(e).dn)
            .collect()
    }

    /// Whether the group at `group` lists `member` in `attr`, compared by the directory
    /// (as DNs for `member` and `uniqueMember`).
    fn lists(&self, group: &str, attr: &str, member: &str) -> bool {
        let filter = format!("({attr}={})", ldap3::ldap_escape(member));
        !self
            .ldap
            .ldapsearch(group, &filter, &["1.1"])
            .trim()
            .is_empty()
    }

    fn add_ou(&self, dn: &str) {
        let ou = dn
            .strip_prefix("ou=")
            .and_then(|rest| rest.split(',').next())
            .expect("an ou= DN");
        self.ldap.ldapadd(&format!(
            "dn: {dn}\nobjectClass: organizationalUnit\nou: {ou}\n"
        ));
    }

    /// An inetOrgPerson added by hand (not by the target).
    fn add_by_hand(&self, dn: &str, uid: &str, cn: &str, mail: &str) {
        self.ldap.ldapadd(&format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: Hand\nmail: {mail}\n"
        ));
    }
}

fn applied(target: &LdapTarget, change: &Change) {
    assert_eq!(
        Target::apply(target, change),
        Outcome::Applied,
        "{change:?}"
    );
}

/// The detail of a rejection (panics on any other outcome).
fn rejected(target: &LdapTarget, change: &Change) -> String {
    match Target::apply(target, change) {
        Outcome::Rejected(detail) => detail,
        other => panic!("expected a rejection of {change:?}, got {other:?}"),
    }
}

/// `person(key, uid)` with a mail.
fn mailed(key: &str, uid: &str, mail: &str) -> Change {
    with_cells(person(key, uid), vec![text("mail", mail)])
}

/// `change` with more cells.
fn with_cells(mut change: Change, more: Vec<(String, Cell)>) -> Change {
    if let Change::Upsert { cells, .. } = &mut change {
        cells.extend(more);
    }
    change
}

/// `change` at another DN.
fn at(mut change: Change, new_dn: &str) -> Change {
    if let Change::Upsert { dn, .. } = &mut change {
        *dn = Some(new_dn.to_string());
    }
    change
}

/// `change` disabled (`active: false`).
fn disabled(mut change: Change) -> Change {
    if let Change::Upsert { disabled, .. } = &mut change {
        *disabled = true;
    }
    change
}

fn remove_user(key: &str) -> Change {
    Change::Remove {
        kind: ResourceKind::User,
        key: key.into(),
    }
}

/// The test schema with its users' entry spec changed by `edit`.
fn users_with(edit: impl FnOnce(&mut EntrySpec)) -> LdapSchema {
    let mut schema = schema();
    edit(schema.users.as_mut().expect("users"));
    schema
}

fn column(name: &str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        ty,
        unique: false,
        create_only: false,
        keep_when_empty: false,
        dn_reference: false,
    }
}

// --- create_parents -------------------------------------------------------------------

const DEEP_PARENT: &str = "ou=new,ou=deeper,ou=people,dc=example,dc=com";

#[test]
fn create_parents_adds_the_missing_ous_above_a_new_entry() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.create_parents = true));
    let dn = format!("uid=deep,{DEEP_PARENT}");
    applied(&target, &at(person("id-deep", "deep"), &dn));
    for ou in [DEEP_PARENT, "ou=deeper,ou=people,dc=example,dc=com"] {
        let classes = f.values(ou, "objectClass");
        assert!(
            classes.iter().any(|c| c == "organizationalUnit"),
            "{ou}: {classes:?}"
        );
    }
    assert_eq!(f.values(DEEP_PARENT, "ou"), ["new"]);
    assert_eq!(f.values(&dn, "uid"), ["deep"]);
    assert_eq!(target.linked_dn("id-deep"), Some(dn.clone()));
    // Applying again (the parents are there now) changes nothing.
    let csn = f.csn(&dn);
    applied(&target, &at(person("id-deep", "deep"), &dn));
    assert_eq!(f.csn(&dn), csn);
}

#[test]
fn without_create_parents_a_missing_parent_is_rejected_naming_it() {
    let f = Fixture::new();
    let target = f.open(schema());
    let dn = format!("uid=deep,{DEEP_PARENT}");
    let detail = rejected(&target, &at(person("id-deep", "deep"), &dn));
    assert!(detail.contains("noSuchObject"), "{detail}");
    assert!(detail.contains(DEEP_PARENT), "{detail}");
    assert!(!f.exists("ou=deeper,ou=people,dc=example,dc=com"));
    assert_eq!(target.linked_dn("id-deep"), None);

    // A move under a missing parent: refused too, the entry stays where it was.
    applied(&target, &person("id-bob", "bob"));
    let moved = "uid=bob,ou=contractors,dc=example,dc=com";
    let detail = rejected(&target, &at(person("id-bob", "bob"), moved));
    assert!(detail.contains("noSuchObject"), "{detail}");
    assert!(
        detail.contains("ou=contractors,dc=example,dc=com"),
        "{detail}"
    );
    assert!(f.exists(&user_dn("bob")));
    assert!(!f.exists("ou=contractors,dc=example,dc=com"));
    assert_eq!(target.linked_dn("id-bob"), Some(user_dn("bob")));
}

#[test]
fn create_parents_creates_the_new_parent_of_a_move() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.create_parents = true));
    applied(&target, &person("id-bob", "bob"));
    let uuid = f.uuid(&user_dn("bob"));
    let parent = "ou=contractors,ou=external,dc=example,dc=com";
    let moved = format!("uid=bob,{parent}");
    applied(&target, &at(person("id-bob", "bob"), &moved));
    assert!(
        f.values(parent, "objectClass")
            .contains(&"organizationalUnit".to_string())
    );
    assert!(f.exists("ou=external,dc=example,dc=com"));
    assert!(!f.exists(&user_dn("bob")), "the old DN is gone");
    assert_eq!(f.uuid(&moved), uuid, "moved, not re-created");
    assert_eq!(target.linked_dn("id-bob"), Some(moved));
}

// --- adoption by match attributes ----------------------------------------------------

#[test]
fn an_entry_found_by_a_match_attribute_is_adopted_renamed_and_converged() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.match_attrs = vec!["mail".into()]));
    let legacy = format!("uid=legacy,{PEOPLE_DN}");
    f.add_by_hand(&legacy, "legacy", "Legacy Name", "alice@example.com");
    f.ldap.ldapmodify(&format!(
        "dn: {legacy}\nchangetype: modify\nadd: description\ndescription: by hand\n"
    ));
    let uuid = f.uuid(&legacy);

    applied(&target, &mailed("id-alice", "alice", "alice@example.com"));
    let dn = user_dn("alice");
    assert!(!f.exists(&legacy), "the adopted entry was renamed");
    assert_eq!(f.uuid(&dn), uuid, "adopted, not re-created");
    let entry = f
        .entry(&dn, &["objectClass", "uid", "cn", "sn", "description"])
        .expect("entry");
    assert_eq!(entry["uid"], ["alice"], "the old RDN value is gone");
    assert_eq!(entry["cn"], ["alice"]);
    assert_eq!(entry["sn"], ["alice"]);
    assert_eq!(entry["description"], ["by hand"], "not in the cells");
    assert!(entry["objectclass"].contains(&"top".to_string()));
    assert_eq!(
        f.find("(mail=alice@example.com)"),
        [dn.as_str()],
        "exactly one entry with that mail"
    );
    assert_eq!(target.linked_dn("id-alice"), Some(dn.clone()));
    // From now on it is linked: applying again writes nothing.
    let csn = f.csn(&dn);
    applied(&target, &mailed("id-alice", "alice", "alice@example.com"));
    assert_eq!(f.csn(&dn), csn);
}

#[test]
fn an_entry_found_by_a_match_attribute_anywhere_under_the_base_is_moved_to_the_dn() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.match_attrs = vec!["mail".into()]));
    f.add_ou("ou=imported,dc=example,dc=com");
    let legacy = "uid=a.liddell,ou=imported,dc=example,dc=com";
    f.add_by_hand(legacy, "a.liddell", "A. Liddell", "alice@example.com");
    let uuid = f.uuid(legacy);
    applied(&target, &mailed("id-alice", "alice", "alice@example.com"));
    assert!(!f.exists(legacy));
    assert_eq!(f.uuid(&user_dn("alice")), uuid);
    assert_eq!(target.linked_dn("id-alice"), Some(user_dn("alice")));
}

#[test]
fn two_entries_matching_the_same_value_are_rejected_as_ambiguous() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.match_attrs = vec!["mail".into()]));
    let (one, two) = (
        format!("uid=one,{PEOPLE_DN}"),
        format!("uid=two,{PEOPLE_DN}"),
    );
    f.add_by_hand(&one, "one", "One", "shared@example.com");
    f.add_by_hand(&two, "two", "Two", "shared@example.com");
    let (csn_one, csn_two) = (f.csn(&one), f.csn(&two));
    let detail = rejected(&target, &mailed("id-alice", "alice", "shared@example.com"));
    assert!(detail.contains("cannot choose"), "{detail}");
    assert_eq!((f.csn(&one), f.csn(&two)), (csn_one, csn_two), "untouched");
    assert!(!f.exists(&user_dn("alice")), "nothing added either");
    assert_eq!(target.linked_dn("id-alice"), None);
}

#[test]
fn match_values_are_escaped_in_the_search_filter() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.match_attrs = vec!["mail".into()]));
    let (h1, h2) = (format!("uid=h1,{PEOPLE_DN}"), format!("uid=h2,{PEOPLE_DN}"));
    f.add_by_hand(&h1, "h1", "H1", "h1@example.com");
    f.add_by_hand(&h2, "h2", "H2", "h2@example.com");
    let tricky = format!("uid=tricky,{PEOPLE_DN}");
    let tricky_mail = r"a*(b)\c@example.com";
    f.add_by_hand(&tricky, "tricky", "Tricky", tricky_mail);
    let uuids: Vec<String> = [&h1, &h2, &tricky].iter().map(|dn| f.uuid(dn)).collect();

    // Unescaped, `*` would match every entry with a mail, and `h*@…` both h1 and h2
    // (a presence or substring filter): either would be "ambiguous" or adopt a stranger.
    for (key, uid, mail) in [
        ("id-star", "star", "*"),
        ("id-prefix", "prefix", "h*@example.com"),
        ("id-paren", "paren", "*)(uid=*"),
        ("id-slash", "slash", r"\2a"),
    ] {
        applied(&target, &mailed(key, uid, mail));
        let dn = user_dn(uid);
        assert_eq!(f.values(&dn, "mail"), [mail], "a new entry for {mail:?}");
        assert!(!uuids.contains(&f.uuid(&dn)), "{mail:?} adopted a stranger");
    }
    for (dn, uid) in [(&h1, "h1"), (&h2, "h2"), (&tricky, "tricky")] {
        assert_eq!(f.values(dn, "uid"), [uid], "{dn} left alone");
    }
    // A value full of metacharacters still matches the entry holding exactly it.
    applied(&target, &mailed("id-tricky", "t", tricky_mail));
    assert!(!f.exists(&tricky));
    assert_eq!(f.uuid(&user_dn("t")), uuids[2]);
}

// --- on_existing, and entries of other resources -------------------------------------

#[test]
fn under_on_existing_conflict_an_entry_made_by_hand_at_the_dn_is_refused_and_left_alone() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.on_existing = OnExisting::Conflict));
    let dn = user_dn("alice");
    f.add_by_hand(&dn, "alice", "By Hand", "hand@example.com");
    let csn = f.csn(&dn);
    let detail = rejected(&target, &mailed("id-alice", "alice", "alice@example.com"));
    assert!(detail.contains("on_existing: conflict"), "{detail}");
    assert_eq!(f.csn(&dn), csn, "the hand entry was written");
    assert_eq!(f.values(&dn, "cn"), ["By Hand"]);
    assert_eq!(f.values(&dn, "mail"), ["hand@example.com"]);
    assert_eq!(target.linked_dn("id-alice"), None);
    // Still refused on the next attempt.
    let detail = rejected(&target, &mailed("id-alice", "alice", "alice@example.com"));
    assert!(detail.contains("on_existing: conflict"), "{detail}");
}

#[test]
fn under_on_existing_conflict_the_targets_own_entries_are_converged_again_also_after_a_rename() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.on_existing = OnExisting::Conflict));
    applied(&target, &mailed("id-bob", "bob", "bob@example.com"));
    applied(&target, &mailed("id-bob", "bob", "bob@example.com"));
    applied(&target, &mailed("id-bob", "bob", "robert@example.com"));
    assert_eq!(f.values(&user_dn("bob"), "mail"), ["robert@example.com"]);
    let uuid = f.uuid(&user_dn("bob"));
    applied(&target, &mailed("id-bob", "robert", "robert@example.com"));
    assert!(!f.exists(&user_dn("bob")));
    assert_eq!(f.uuid(&user_dn("robert")), uuid);
    applied(&target, &mailed("id-bob", "robert", "robert@example.com"));
    applied(&target, &mailed("id-bob", "robert", "r@example.com"));
    assert_eq!(f.values(&user_dn("robert"), "mail"), ["r@example.com"]);
    assert_eq!(target.linked_dn("id-bob"), Some(user_dn("robert")));
}

#[test]
fn under_on_existing_conflict_a_rejected_add_leaves_no_link_behind() {
    let f = Fixture::new();
    let schema = users_with(|u| u.on_existing = OnExisting::Conflict);
    let target = f.open(schema);
    // No sn: the directory refuses the add.
    let no_sn = user(
        "id-x",
        &user_dn("x"),
        vec![text("uid", "x"), text("cn", "X")],
    );
    let detail = rejected(&target, &no_sn);
    assert!(detail.starts_with("objectClassViolation"), "{detail}");
    assert!(!f.exists(&user_dn("x")));
    assert_eq!(
        target.linked_dn("id-x"),
        None,
        "a resource the directory refused has no entry to link"
    );
    assert!(target.held(ResourceKind::User).expect("held").is_empty());
    // A group listing it does not list a DN where there is no entry.
    applied(&target, &group("id-g", "staff", &["id-x"]));
    assert_eq!(f.values(&group_dn("staff"), "member"), [PLACEHOLDER]);
    // Someone else then makes an entry at that DN: it is still not the target's own.
    f.add_by_hand(&user_dn("x"), "x", "Someone Else", "else@example.com");
    let detail = rejected(&target, &with_cells(no_sn, vec![text("sn", "X")]));
    assert!(detail.contains("on_existing: conflict"), "{detail}");
    assert_eq!(f.values(&user_dn("x"), "cn"), ["Someone Else"]);
}

#[test]
fn an_entry_linked_to_another_resource_is_not_taken_by_a_second_one() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.match_attrs = vec!["mail".into()]));
    applied(&target, &mailed("id-a", "same", "same@example.com"));
    let dn = user_dn("same");
    let csn = f.csn(&dn);
    // Another user mapping to the same DN.
    let detail = rejected(&target, &mailed("id-b", "same", "b@example.com"));
    assert!(detail.contains("another resource"), "{detail}");
    assert!(detail.contains("id-a"), "{detail}");
    // Another user whose match attribute finds the first one's entry.
    let detail = rejected(&target, &mailed("id-c", "c", "same@example.com"));
    assert!(detail.contains("another resource"), "{detail}");
    assert_eq!(f.csn(&dn), csn, "the first user's entry was written");
    assert_eq!(f.values(&dn, "mail"), ["same@example.com"]);
    assert!(!f.exists(&user_dn("c")));
    assert_eq!(target.linked_dn("id-b"), None);
    assert_eq!(target.linked_dn("id-c"), None);
    assert_eq!(target.linked_dn("id-a"), Some(dn));
    applied(&target, &mailed("id-a", "same", "same@example.com"));
}

// --- group flavours ------------------------------------------------------------------

#[test]
fn group_of_unique_names_lists_member_dns_with_a_placeholder_and_follows_renames() {
    let f = Fixture::new();
    let mut schema = schema();
    schema.groups = Some(EntrySpec {
        object_classes: vec!["groupOfUniqueNames".into(), "top".into()],
        attributes: vec![column("cn", ColumnType::Text)],
        members: Some(MemberSpec {
            attribute: "uniqueMember".into(),
            value: MemberValue::Dn,
            placeholder: Some(PLACEHOLDER.into()),
        }),
        ..Default::default()
    });
    let target = f.open(schema);
    let g = group_dn("staff");
    applied(&target, &group("id-g", "staff", &["id-alice", "id-bob"]));
    assert_eq!(f.values(&g, "uniqueMember"), [PLACEHOLDER]);
    assert!(
        f.values(&g, "objectClass")
            .contains(&"groupOfUniqueNames".to_string())
    );

    applied(&target, &person("id-alice", "alice"));
    applied(&target, &person("id-bob", "bob"));
    applied(&target, &group("id-g", "staff", &["id-alice", "id-bob"]));
    assert_eq!(
        f.values(&g, "uniqueMember"),
        [user_dn("alice"), user_dn("bob")],
        "member DNs, the placeholder gone"
    );
    let csn = f.csn(&g);
    applied(&target, &group("id-g", "staff", &["id-alice", "id-bob"]));
    assert_eq!(f.csn(&g), csn, "converged: not written again");

    applied(&target, &person("id-alice", "alice.liddell"));
    assert!(f.lists(&g, "uniqueMember", &user_dn("alice.liddell")));
    assert!(!f.lists(&g, "uniqueMember", &user_dn("alice")));
    assert!(f.lists(&g, "uniqueMember", &user_dn("bob")));

    applied(&target, &remove_user("id-bob"));
    assert_eq!(f.values(&g, "uniqueMember"), [user_dn("alice.liddell")]);
    applied(&target, &remove_user("id-alice"));
    assert_eq!(
        f.values(&g, "uniqueMember"),
        [PLACEHOLDER],
        "the last member gives way to the placeholder"
    );
    applied(&target, &group("id-g", "staff", &[]));
    assert_eq!(f.values(&g, "uniqueMember"), [PLACEHOLDER]);
}

/// The test schema with posixGroup groups listing their members' uids in memberUid.
fn posix_schema() -> LdapSchema {
    let mut schema = schema();
    schema.groups = Some(EntrySpec {
        object_classes: vec!["posixGroup".into(), "top".into()],
        attributes: vec![
            column("cn", ColumnType::Text),
            column("gidNumber", ColumnType::Integer),
        ],
        members: Some(MemberSpec {
            attribute: "memberUid".into(),
            value: MemberValue::Attribute("uid".into()),
            placeholder: None,
        }),
        ..Default::default()
    });
    schema
}

fn posix_group(key: &str, cn: &str, gid: i64, members: &[&str]) -> Change {
    with_cells(
        group(key, cn, members),
        vec![("gidNumber".into(), Cell::Integer(gid))],
    )
}

#[test]
fn posix_groups_list_member_uids_follow_uid_renames_and_drop_removed_users() {
    let f = Fixture::new();
    let target = f.open(posix_schema());
    let g = group_dn("devs");
    applied(&target, &person("id-alice", "alice"));
    applied(&target, &person("id-bob", "bob"));
    applied(
        &target,
        &posix_group("id-g", "devs", 5000, &["id-alice", "id-bob"]),
    );
    let entry = f
        .entry(&g, &["objectClass", "gidNumber", "memberUid", "member"])
        .expect("group");
    assert!(entry["objectclass"].contains(&"posixGroup".to_string()));
    assert_eq!(entry["gidnumber"], ["5000"]);
    assert_eq!(entry["memberuid"], ["alice", "bob"], "uids, not DNs");
    assert!(!entry.contains_key("member"));
    let csn = f.csn(&g);
    applied(
        &target,
        &posix_group("id-g", "devs", 5000, &["id-alice", "id-bob"]),
    );
    assert_eq!(f.csn(&g), csn, "converged: not written again");

    // bob becomes robert: new DN, new uid.
    applied(&target, &person("id-bob", "robert"));
    assert_eq!(f.values(&g, "memberUid"), ["alice", "robert"]);
    let csn = f.csn(&g);
    applied(
        &target,
        &posix_group("id-g", "devs", 5000, &["id-alice", "id-bob"]),
    );
    assert_eq!(f.csn(&g), csn, "the rename left it converged");

    applied(&target, &remove_user("id-alice"));
    assert_eq!(f.values(&g, "memberUid"), ["robert"]);
    applied(&target, &remove_user("id-bob"));
    assert!(
        f.values(&g, "memberUid").is_empty(),
        "no placeholder: no value"
    );
    applied(
        &target,
        &posix_group("id-g", "devs", 5000, &["id-alice", "id-bob"]),
    );
    assert!(f.values(&g, "memberUid").is_empty());
}

#[test]
fn a_member_listed_before_it_exists_joins_its_groups_when_it_is_added() {
    let f = Fixture::new();
    let target = f.open(schema());
    let (staff, admins) = (group_dn("staff"), group_dn("admins"));
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &group("id-admins", "admins", &["id-carol"]));
    // admins no longer wants carol by the time she arrives.
    applied(&target, &group("id-admins", "admins", &[]));
    assert_eq!(f.values(&staff, "member"), [PLACEHOLDER]);

    applied(&target, &person("id-alice", "alice"));
    assert_eq!(
        f.values(&staff, "member"),
        [user_dn("alice")],
        "joined, the placeholder gone"
    );
    applied(&target, &person("id-bob", "bob"));
    assert_eq!(
        f.values(&staff, "member"),
        [user_dn("alice"), user_dn("bob")]
    );
    applied(&target, &person("id-carol", "carol"));
    assert_eq!(f.values(&admins, "member"), [PLACEHOLDER]);
    // The group is converged as it is: not written again.
    let csn = f.csn(&staff);
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    assert_eq!(f.csn(&staff), csn);
}

#[test]
fn a_member_listed_by_a_posix_group_before_it_exists_joins_with_its_uid() {
    let f = Fixture::new();
    let target = f.open(posix_schema());
    let g = group_dn("devs");
    applied(&target, &posix_group("id-g", "devs", 5000, &["id-alice"]));
    assert!(f.values(&g, "memberUid").is_empty());
    applied(&target, &person("id-alice", "alice"));
    assert_eq!(f.values(&g, "memberUid"), ["alice"]);
}

// --- disable bits --------------------------------------------------------------------

/// The test schema with shadowAccount users whose `shadowFlag` gets bit 2 while disabled
/// (and the implicit keep-when-empty column the config compiler adds for it).
fn flag_schema() -> LdapSchema {
    users_with(|u| {
        u.object_classes.push("shadowAccount".into());
        u.attributes.push(ColumnSpec {
            keep_when_empty: true,
            ..column("shadowFlag", ColumnType::Text)
        });
        u.disable_bits = vec![("shadowFlag".into(), 2)];
    })
}

/// `person` with a `shadowFlag` cell.
fn flagged(key: &str, uid: &str, flag: Cell) -> Change {
    with_cells(person(key, uid), vec![("shadowFlag".into(), flag)])
}

#[test]
fn a_user_created_disabled_gets_the_disable_bit_and_enabling_clears_it() {
    let f = Fixture::new();
    let target = f.open(flag_schema());
    let dn = user_dn("alice");
    applied(&target, &disabled(flagged("id-alice", "alice", Cell::Null)));
    assert_eq!(f.values(&dn, "shadowFlag"), ["2"]);
    assert!(
        f.values(&dn, "objectClass")
            .contains(&"shadowAccount".to_string())
    );
    applied(&target, &flagged("id-alice", "alice", Cell::Null));
    assert_eq!(f.values(&dn, "shadowFlag"), ["0"]);
    // A user created enabled gets no flag at all.
    applied(&target, &flagged("id-bob", "bob", Cell::Null));
    assert!(f.values(&user_dn("bob"), "shadowFlag").is_empty());
}

#[test]
fn the_disable_bit_is_or_ed_into_a_hand_set_value_and_cleared_again_never_toggled() {
    let f = Fixture::new();
    let target = f.open(flag_schema());
    let dn = user_dn("alice");
    let enabled = flagged("id-alice", "alice", Cell::Null);
    applied(&target, &enabled);
    f.ldap.ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: shadowFlag\nshadowFlag: 8\n"
    ));
    applied(&target, &disabled(enabled.clone()));
    assert_eq!(f.values(&dn, "shadowFlag"), ["10"]);
    let csn = f.csn(&dn);
    applied(&target, &disabled(enabled.clone()));
    assert_eq!(f.values(&dn, "shadowFlag"), ["10"], "set, not toggled");
    assert_eq!(f.csn(&dn), csn, "nothing to write");
    applied(&target, &enabled);
    assert_eq!(f.values(&dn, "shadowFlag"), ["8"]);
    let csn = f.csn(&dn);
    applied(&target, &enabled);
    assert_eq!(f.values(&dn, "shadowFlag"), ["8"]);
    assert_eq!(f.csn(&dn), csn);
}

#[test]
fn a_flag_mapped_to_a_constant_gets_the_disable_bit_on_top_of_it() {
    let f = Fixture::new();
    let target = f.open(flag_schema());
    let dn = user_dn("alice");
    applied(
        &target,
        &disabled(flagged("id-alice", "alice", Cell::Integer(512))),
    );
    assert_eq!(f.values(&dn, "shadowFlag"), ["514"]);
    applied(&target, &flagged("id-alice", "alice", Cell::Integer(512)));
    assert_eq!(f.values(&dn, "shadowFlag"), ["512"]);
    applied(
        &target,
        &disabled(flagged("id-alice", "alice", Cell::Text("512".into()))),
    );
    assert_eq!(f.values(&dn, "shadowFlag"), ["514"]);
    let csn = f.csn(&dn);
    applied(
        &target,
        &disabled(flagged("id-alice", "alice", Cell::Integer(512))),
    );
    assert_eq!(f.csn(&dn), csn, "converged: not written again");
    applied(
        &target,
        &flagged("id-alice", "alice", Cell::Text("512".into())),
    );
    assert_eq!(f.values(&dn, "shadowFlag"), ["512"]);
}

// --- disabled users dropping their memberships ---------------------------------------

fn disabled_dn(uid: &str) -> String {
    format!("uid={},{DISABLED_OU}", dn_escape(uid))
}

#[test]
fn a_disabled_user_moves_out_and_leaves_its_groups_and_rejoins_them_when_enabled() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| {
        u.create_parents = true;
        u.disable_drops_memberships = true;
    }));
    let (staff, admins) = (group_dn("staff"), group_dn("admins"));
    applied(&target, &person("id-alice", "alice"));
    applied(&target, &person("id-bob", "bob"));
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &group("id-admins", "admins", &["id-alice"]));
    let uuid = f.uuid(&user_dn("alice"));

    let off = disabled(at(person("id-alice", "alice"), &disabled_dn("alice")));
    applied(&target, &off);
    assert!(!f.exists(&user_dn("alice")));
    assert_eq!(f.uuid(&disabled_dn("alice")), uuid, "moved, not re-created");
    assert_eq!(target.linked_dn("id-alice"), Some(disabled_dn("alice")));
    assert_eq!(f.values(&staff, "member"), [user_dn("bob")]);
    assert_eq!(
        f.values(&admins, "member"),
        [PLACEHOLDER],
        "the last member gives way to the placeholder"
    );
    for g in [&staff, &admins] {
        assert!(!f.lists(g, "member", &disabled_dn("alice")), "{g}");
    }

    // The groups converged again while she is disabled do not list her; neither does
    // applying the disabled change again write a group.
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &group("id-admins", "admins", &["id-alice"]));
    assert_eq!(f.values(&staff, "member"), [user_dn("bob")]);
    assert_eq!(f.values(&admins, "member"), [PLACEHOLDER]);
    let csns = (f.csn(&staff), f.csn(&admins));
    applied(&target, &off);
    assert_eq!((f.csn(&staff), f.csn(&admins)), csns);

    // Enabled: back under ou=people, back in the groups that list her in SCIM.
    applied(&target, &person("id-alice", "alice"));
    assert!(!f.exists(&disabled_dn("alice")));
    assert_eq!(f.uuid(&user_dn("alice")), uuid);
    assert_eq!(target.linked_dn("id-alice"), Some(user_dn("alice")));
    assert_eq!(
        f.values(&staff, "member"),
        [user_dn("alice"), user_dn("bob")]
    );
    assert_eq!(f.values(&admins, "member"), [user_dn("alice")]);
    // Converged: the groups need no write.
    let csns = (f.csn(&staff), f.csn(&admins));
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &group("id-admins", "admins", &["id-alice"]));
    assert_eq!((f.csn(&staff), f.csn(&admins)), csns);
}

#[test]
fn a_user_disabled_in_place_leaves_its_groups_too() {
    let f = Fixture::new();
    let target = f.open(users_with(|u| u.disable_drops_memberships = true));
    let staff = group_dn("staff");
    applied(&target, &person("id-alice", "alice"));
    applied(&target, &person("id-bob", "bob"));
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &disabled(person("id-alice", "alice")));
    assert_eq!(f.values(&staff, "member"), [user_dn("bob")]);
    applied(&target, &person("id-alice", "alice"));
    assert_eq!(
        f.values(&staff, "member"),
        [user_dn("alice"), user_dn("bob")]
    );
}

// --- archive and purge ---------------------------------------------------------------

#[test]
fn an_archived_user_moves_to_the_archive_ou_leaves_its_groups_and_is_due_for_purging() {
    let f = Fixture::new();
    let target = f.open(schema());
    f.add_ou(ARCHIVE_OU);
    let (staff, admins) = (group_dn("staff"), group_dn("admins"));
    applied(&target, &person("id-alice", "alice"));
    applied(&target, &person("id-bob", "bob"));
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &group("id-admins", "admins", &["id-alice"]));
    let uuid = f.uuid(&user_dn("alice"));

    let archived = format!("uid=alice,{ARCHIVE_OU}");
    applied(
        &target,
        &Change::Archive {
            kind: ResourceKind::User,
            key: "id-alice".into(),
            dn: Some(archived.clone()),
            cells: vec![text("description", "archived"), null("mail")],
            at: "2026-01-01T00:00:00.000Z".into(),
        },
    );
    assert!(!f.exists(&user_dn("alice")));
    assert_eq!(f.uuid(&archived), uuid, "moved, not re-created");
    assert_eq!(f.values(&archived, "description"), ["archived"]);
    assert_eq!(target.linked_dn("id-alice"), Some(archived.clone()));
    assert_eq!(f.values(&staff, "member"), [user_dn("bob")]);
    assert_eq!(f.values(&admins, "member"), [PLACEHOLDER]);

    let due = |before: &str| {
        Target::archived_before(&target, ResourceKind::User, before).expect("archived_before")
    };
    assert_eq!(due("2026-02-01T00:00:00.000Z"), ["id-alice"]);
    assert!(due("2025-12-01T00:00:00.000Z").is_empty());
    assert!(
        Target::archived_before(&target, ResourceKind::Group, "2026-02-01T00:00:00.000Z")
            .expect("archived_before")
            .is_empty()
    );
    assert_eq!(target.held(ResourceKind::User).expect("held"), ["id-bob"]);

    // The groups converged again do not take the archived user back.
    applied(
        &target,
        &group("id-staff", "staff", &["id-alice", "id-bob"]),
    );
    applied(&target, &group("id-admins", "admins", &["id-alice"]));
    assert_eq!(f.values(&staff, "member"), [user_dn("bob")]);
    assert_eq!(f.values(&admins, "member"), [PLACEHOLDER]);

    // Purged: the entry is deleted and no longer due.
    applied(&target, &remove_user("id-alice"));
    assert!(!f.exists(&archived));
    assert!(due("2026-02-01T00:00:00.000Z").is_empty());
    assert_eq!(target.linked_dn("id-alice"), None);
    assert_eq!(f.values(&staff, "member"), [user_dn("bob")]);
}

// --- links files of an older version -------------------------------------------------

#[test]
fn a_links_file_of_the_first_version_is_migrated_and_its_links_still_work() {
    let f = Fixture::new();
    let old_dn = user_dn("old");
    f.ldap.ldapadd(&format!(
        "dn: {old_dn}\nobjectClass: inetOrgPerson\nuid: old\ncn: old\nsn: old\n"
    ));
    let uuid = f.uuid(&old_dn);
    {
        let conn = rusqlite::Connection::open(f.dir.path().join("ldap-links.db")).expect("create");
        conn.execute_batch(
            "CREATE TABLE links (kind TEXT NOT NULL, id TEXT PRIMARY KEY, dn TEXT NOT NULL);
             CREATE TABLE pending_refs (id TEXT NOT NULL, attribute TEXT NOT NULL,
                 target TEXT NOT NULL, PRIMARY KEY (id, attribute));",
        )
        .expect("old tables");
        conn.execute(
            "INSERT INTO links (kind, id, dn) VALUES ('User', 'id-old', ?1)",
            [&old_dn],
        )
        .expect("old link");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(version, 0);
    }
    let target = f.open(schema());
    assert_eq!(target.linked_dn("id-old"), Some(old_dn.clone()));
    assert_eq!(target.held(ResourceKind::User).expect("held"), ["id-old"]);

    applied(&target, &person("id-old", "renamed"));
    assert!(!f.exists(&old_dn), "renamed through the old link");
    assert_eq!(f.uuid(&user_dn("renamed")), uuid);
    assert_eq!(target.linked_dn("id-old"), Some(user_dn("renamed")));
    // The new tables work as well: a group wanting a member not there yet.
    applied(&target, &group("id-g", "staff", &["id-old", "id-new"]));
    applied(&target, &person("id-new", "new"));
    assert_eq!(
        f.values(&group_dn("staff"), "member"),
        [user_dn("new"), user_dn("renamed")]
    );
    drop(target);
    let conn = rusqlite::Connection::open(f.dir.path().join("ldap-links.db")).expect("reopen");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, 3, "migrated to the current version");
    // Opening it again (already migrated) is fine.
    let target = f.open(schema());
    assert_eq!(target.linked_dn("id-old"), Some(user_dn("renamed")));
}
