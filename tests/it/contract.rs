//! The target contract: one suite of scenarios, written once, run against every target
//! through the real daemon over HTTP.
//!
//! A [`TargetUnderTest`] is a daemon plus its target — a SQLite database (read back with
//! rusqlite) or a throw-away directory server (read back with `ldapsearch`): OpenLDAP's
//! slapd and 389-DS with the inetOrgPerson/groupOfNames schema, a Samba AD DC with Active
//! Directory's `user`/`group` — all mapped from the same SCIM attributes, so the
//! target-neutral views ([`UserView`], [`GroupView`]) are comparable: what the SQLite rows
//! hold by SCIM id (memberships, `manager_id`), the directory entries hold by DN, and the
//! views translate both back to userNames.
//!
//! | view            | SQLite (`contract_users`, …)      | LDAP (`ou=people`, `ou=groups`)        | AD (`OU=people`, `OU=groups`)                |
//! |-----------------|-----------------------------------|----------------------------------------|----------------------------------------------|
//! | `user_name`     | `user_name`                       | `uid` (the DN is `uid={userName},…`)   | `userPrincipalName` (DN `CN={userName},…`)   |
//! | `full_name`     | `full_name` (Coalesce expression) | `cn` (the same expression)             | `description` (the same; `cn` is the RDN)    |
//! | `display_name`  | `display_name`                    | `displayName`                          | `displayName`                                |
//! | `given_name`    | `given_name`                      | `givenName`                            | `givenName`                                  |
//! | `family_name`   | `family_name` (default `-`)       | `sn` (default `-`: person needs it)    | `sn` (default `-`)                           |
//! | `mail`          | `mail` (required)                 | `mail` (required)                      | `mail` (required)                            |
//! | `enabled`       | `enabled` 1/0 (on_disable 0)      | `employeeType` TRUE/FALSE (on_disable) | bit 2 of `userAccountControl` clear/set      |
//! | `manager`       | `manager_id` → its row's userName | `manager` DN → its entry's `uid`       | `manager` DN → its `userPrincipalName`       |
//! | group `members` | membership rows → userNames       | `member` DNs → `uid`s (no placeholder) | `member` DNs → `userPrincipalName`s          |
//!
//! AD specifics ([`AD_MAPPING`]): an AD user is named by its `cn`, the RDN, which the
//! directory keeps equal to the DN, so the entry is `CN={userName}` (comparable with LDAP's
//! `uid={userName}`: lookups by DN, the same collisions) and the full name, which LDAP
//! keeps in `cn`, goes to `description`. Users and groups also get the `sAMAccountName`
//! AD requires (at most 20 characters, unique across both): `u-`/`g-` and the last 12 hex
//! digits of the SCIM id, never derived from a name, so a hostile name cannot trip it.
//! `memberOf` is AD's own and never read.
//!
//! Every write helper checks the status, then waits (at most 10 s) until the journal holds
//! no pending record: the daemon answers once the target has its verdict (up to 5 s), and
//! this barrier makes the reads that follow independent of that bound. "No write" is
//! observed with a write stamp: on SQLite, triggers (the kind the reading applications
//! install) log every INSERT/UPDATE/DELETE of the mapped tables; on a directory, the DN
//! and a stamp every write changes (slapd's `entryCSN`, 389-DS's `entryusn`, AD's
//! `uSNChanged`) of every entry — on AD those under `OU=people` and `OU=groups` only: the
//! admin's own binds update its account in `CN=Users`.
//!
//! Lookups by name are exact on SQLite and by DN on a directory, so there a name the
//! directory matches as equal (other case, other insignificant spaces) finds the same
//! entry; the view then shows the stored userName (`uid`, `userPrincipalName`), which the
//! scenarios compare with the name they sent.
//!
//! Test names: `contract::<target>::<scenario>` (`sqlite`, `ldap`, `ds389`, `samba`), e.g.
//! `cargo nextest run --test it contract::ldap::` runs the suite against OpenLDAP only.
//! The `samba` ones run one at a time (`.config/nextest.toml`: Samba's ports are fixed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::harness::{Daemon, Resp, SCIM_JSON, send};
use crate::slapd::{GROUPS_DN, PEOPLE_DN, Slapd};

/// userAccountControl's ACCOUNTDISABLE bit.
const ACCOUNTDISABLE: u32 = 2;
/// How long a write may stay pending in the journal before the test fails.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The SQLite target: one table per resource type and a membership table, mapping the
/// same SCIM attributes as [`LDAP_MAPPING`].
const SQLITE_MAPPING: &str = r#"
target:
  sqlite:
    path: ./directory.db
mapping:
  users:
    table: contract_users
    key: scim_id
    columns:
      user_name:
        source: userName
        required: true
      full_name:
        expr: 'Coalesce([displayName], Join(" ", [name.givenName], [name.familyName]), [userName])'
        required: true
      display_name:
        source: displayName
      given_name:
        source: name.givenName
      family_name:
        source: name.familyName
        default: "-"
      mail:
        source: 'emails[type eq "work"].value'
        required: true
      enabled:
        source: active
        type: boolean
        default: "true"
      manager_id:
        source: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value'
    on_disable:
      enabled: "false"
    on_delete: delete
  groups:
    table: contract_groups
    key: scim_id
    columns:
      name:
        source: displayName
        required: true
  memberships:
    table: contract_members
    group_column: group_id
    member_column: user_id
"#;

/// The LDAP target, like `examples/ldap-openldap.yaml`, with the attributes of
/// [`SQLITE_MAPPING`]. `@URL@`, `@BIND_DN@`, `@PASSWORD@` and `@BASE@` are filled in.
const LDAP_MAPPING: &str = r#"
target:
  ldap:
    urls:
      - value: @URL@
    bind_dn:
      value: @BIND_DN@
    bind_password:
      value: @PASSWORD@
    base:
      value: @BASE@
    pool_size: 2
    connect_timeout: 2s
    operation_timeout: 5s
mapping:
  users:
    dn: 'uid={userName},ou=people,{base}'
    object_classes: [inetOrgPerson, organizationalPerson, person, top]
    attributes:
      uid:
        source: userName
      cn:
        expr: 'Coalesce([displayName], Join(" ", [name.givenName], [name.familyName]), [userName])'
        required: true
      displayName:
        source: displayName
      givenName:
        source: name.givenName
      sn:
        source: name.familyName
        default: "-"
      mail:
        source: 'emails[type eq "work"].value'
        required: true
      employeeType:
        source: active
        type: boolean
        default: "true"
      manager:
        source: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value'
        reference: dn
    on_disable:
      employeeType: "false"
    on_delete: delete
  groups:
    dn: 'cn={displayName},ou=groups,{base}'
    object_classes: [groupOfNames, top]
    attributes:
      cn:
        source: displayName
    members:
      attribute: member
      placeholder: 'cn=placeholder,{base}'
"#;

/// The Active Directory target, like `examples/ldap-ad.yaml`, with the attributes of
/// [`SQLITE_MAPPING`] on AD's `user` and `group` (see the module doc for why the DN, the
/// full name and the logon names differ from the example). The placeholders are
/// [`LDAP_MAPPING`]'s.
const AD_MAPPING: &str = r#"
target:
  ldap:
    urls:
      - value: @URL@
    bind_dn:
      value: @BIND_DN@
    bind_password:
      value: @PASSWORD@
    base:
      value: @BASE@
    pool_size: 2
    connect_timeout: 2s
    operation_timeout: 5s
mapping:
  users:
    dn: 'CN={userName},OU=people,{base}'
    object_classes: [user]
    attributes:
      sAMAccountName:
        expr: 'Join("", "u-", Mid([id], 25, 12))'
        required: true
        create_only: true
      userPrincipalName:
        source: userName
      cn:
        source: userName
      description:
        expr: 'Coalesce([displayName], Join(" ", [name.givenName], [name.familyName]), [userName])'
        required: true
      displayName:
        source: displayName
      givenName:
        source: name.givenName
      sn:
        source: name.familyName
        default: "-"
      mail:
        source: 'emails[type eq "work"].value'
        required: true
      manager:
        source: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value'
        reference: dn
    on_disable:
      bits: { userAccountControl: 2 }
      initial: { userAccountControl: 544 }
    on_delete: delete
  groups:
    dn: 'CN={displayName},OU=groups,{base}'
    object_classes: [group]
    attributes:
      cn:
        source: displayName
      sAMAccountName:
        expr: 'Join("", "g-", Mid([id], 25, 12))'
        required: true
        create_only: true
    members:
      attribute: member
"#;

/// The directory schema a server's entries follow, and so the mapping the contract writes
/// with and how the views are read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// inetOrgPerson and groupOfNames (slapd, 389-DS): [`LDAP_MAPPING`].
    InetOrgPerson,
    /// Active Directory's `user` and `group` (a Samba AD DC): [`AD_MAPPING`].
    ActiveDirectory,
}

impl Schema {
    /// The daemon's `target:` and `mapping:`, with placeholders (see [`LDAP_MAPPING`]).
    fn mapping(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => LDAP_MAPPING,
            Schema::ActiveDirectory => AD_MAPPING,
        }
    }

    fn people_dn(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => PEOPLE_DN,
            Schema::ActiveDirectory => scim_bridge::samba::PEOPLE_DN,
        }
    }

    fn groups_dn(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => GROUPS_DN,
            Schema::ActiveDirectory => scim_bridge::samba::GROUPS_DN,
        }
    }

    /// The DN the mapping gives the user named `user_name`.
    fn user_dn(self, user_name: &str) -> String {
        let rdn = match self {
            Schema::InetOrgPerson => "uid",
            Schema::ActiveDirectory => "CN",
        };
        format!("{rdn}={},{}", ldap3::dn_escape(user_name), self.people_dn())
    }

    /// The DN the mapping gives the group named `name`.
    fn group_dn(self, name: &str) -> String {
        let rdn = match self {
            Schema::InetOrgPerson => "cn",
            Schema::ActiveDirectory => "CN",
        };
        format!("{rdn}={},{}", ldap3::dn_escape(name), self.groups_dn())
    }

    /// The filter for every user entry under [`Schema::people_dn`].
    fn users_filter(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => "(objectClass=inetOrgPerson)",
            Schema::ActiveDirectory => "(objectClass=user)",
        }
    }

    /// The filter for every group entry under [`Schema::groups_dn`].
    fn groups_filter(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => "(objectClass=groupOfNames)",
            Schema::ActiveDirectory => "(objectClass=group)",
        }
    }

    /// The attribute that holds the userName.
    fn user_name_attribute(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => "uid",
            Schema::ActiveDirectory => "userPrincipalName",
        }
    }

    /// The attributes a [`UserView`] is read from.
    fn user_attributes(self) -> &'static [&'static str] {
        match self {
            Schema::InetOrgPerson => &[
                "uid",
                "cn",
                "displayName",
                "givenName",
                "sn",
                "mail",
                "employeeType",
                "manager",
            ],
            Schema::ActiveDirectory => &[
                "userPrincipalName",
                "description",
                "displayName",
                "givenName",
                "sn",
                "mail",
                "userAccountControl",
                "manager",
            ],
        }
    }

    /// What identifies an entry whatever its name: the server-assigned UUID.
    fn identity_attribute(self) -> &'static str {
        match self {
            Schema::InetOrgPerson => "entryUUID",
            Schema::ActiveDirectory => "objectGUID",
        }
    }

    /// The subtrees whose entries' stamps make the write stamp: the whole base, except on
    /// AD, where every bind of the admin (the harness's reads) writes its logon data into
    /// its own account; the containers the mapping writes are enough there.
    fn stamp_bases(self, base: &str) -> Vec<String> {
        match self {
            Schema::InetOrgPerson => vec![base.to_string()],
            Schema::ActiveDirectory => {
                vec![self.people_dn().to_string(), self.groups_dn().to_string()]
            }
        }
    }
}

/// A user as the target holds it, in SCIM terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct UserView {
    /// The stored userName (several LDAP `uid` values are joined with ` | `).
    user_name: String,
    full_name: Option<String>,
    display_name: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    mail: Option<String>,
    enabled: Option<bool>,
    /// The manager's userName; `None` when there is no manager reference, or (SQLite) it
    /// names no row. A reference to something that is not a user shows as `<…>`.
    manager: Option<String>,
}

/// A group as the target holds it: its name and its members' userNames, sorted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupView {
    name: String,
    members: Vec<String>,
}

/// Everything in the target, in SCIM terms, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    users: Vec<UserView>,
    groups: Vec<GroupView>,
}

enum Backend {
    Sqlite {
        db: PathBuf,
    },
    /// A directory server (slapd, 389-DS or Samba AD: `slapd` for short).
    Ldap {
        slapd: Box<dyn Server>,
    },
}

/// A directory server the LDAP backend runs against: OpenLDAP's slapd or 389-DS, with
/// the same schema (inetOrgPerson, groupOfNames) and so the same mapping and views, or a
/// Samba AD DC with its own ([`Schema`]).
trait Server: Send + Sync {
    /// `contract::<name>::…`
    fn name(&self) -> &'static str;
    /// The schema its entries follow: the mapping and the views.
    fn schema(&self) -> Schema;
    fn url(&self) -> &str;
    fn admin_dn(&self) -> &str;
    fn admin_password(&self) -> &str;
    fn base(&self) -> &str;
    /// `ldapsearch -LLL` as the admin; `""` when the base does not exist.
    fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String;
    /// The operational attribute every write changes on the entry written.
    fn stamp_attribute(&self) -> &'static str;
}

/// The boxed server the backend holds, usable where a `&dyn Server` is expected.
impl Server for Box<dyn Server> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn schema(&self) -> Schema {
        (**self).schema()
    }
    fn url(&self) -> &str {
        (**self).url()
    }
    fn admin_dn(&self) -> &str {
        (**self).admin_dn()
    }
    fn admin_password(&self) -> &str {
        (**self).admin_password()
    }
    fn base(&self) -> &str {
        (**self).base()
    }
    fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        (**self).ldapsearch(base, filter, attrs)
    }
    fn stamp_attribute(&self) -> &'static str {
        (**self).stamp_attribute()
    }
}

impl Server for Slapd {
    fn name(&self) -> &'static str {
        "ldap"
    }
    fn schema(&self) -> Schema {
        Schema::InetOrgPerson
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn admin_dn(&self) -> &str {
        &self.admin_dn
    }
    fn admin_password(&self) -> &str {
        &self.admin_password
    }
    fn base(&self) -> &str {
        &self.base
    }
    fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        Slapd::ldapsearch(self, base, filter, attrs)
    }
    fn stamp_attribute(&self) -> &'static str {
        "entryCSN"
    }
}

impl Server for scim_bridge::dirsrv::DirSrv {
    fn name(&self) -> &'static str {
        "ds389"
    }
    fn schema(&self) -> Schema {
        Schema::InetOrgPerson
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn admin_dn(&self) -> &str {
        &self.admin_dn
    }
    fn admin_password(&self) -> &str {
        &self.admin_password
    }
    fn base(&self) -> &str {
        &self.base
    }
    fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        scim_bridge::dirsrv::DirSrv::ldapsearch(self, base, filter, attrs)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    /// The USN plugin's counter (the harness turns the plugin on).
    fn stamp_attribute(&self) -> &'static str {
        "entryusn"
    }
}

impl Server for scim_bridge::samba::SambaDc {
    fn name(&self) -> &'static str {
        "samba"
    }
    fn schema(&self) -> Schema {
        Schema::ActiveDirectory
    }
    fn url(&self) -> &str {
        &self.url
    }
    fn admin_dn(&self) -> &str {
        &self.admin_dn
    }
    fn admin_password(&self) -> &str {
        &self.admin_password
    }
    fn base(&self) -> &str {
        &self.base
    }
    fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        scim_bridge::samba::SambaDc::ldapsearch(self, base, filter, attrs)
            .unwrap_or_else(|e| panic!("{e}"))
    }
    /// The DC's update sequence number at the entry's last change (AD's own stamp).
    fn stamp_attribute(&self) -> &'static str {
        "uSNChanged"
    }
}

/// A daemon and the target it writes. Declared daemon first, so it is stopped before
/// its directory server.
struct TargetUnderTest {
    daemon: Daemon,
    backend: Backend,
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

/// A full user resource.
fn user_doc(user_name: &str, given: &str, family: &str, mail: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "displayName": format!("{given} {family}"),
        "name": {"givenName": given, "familyName": family},
        "emails": [{"type": "work", "value": mail, "primary": true}],
        "active": true
    })
}

/// A user resource with only what the mapping requires.
fn minimal_user(user_name: &str, mail: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "emails": [{"type": "work", "value": mail}]
    })
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// The view of a user created from [`user_doc`].
fn full_view(user_name: &str, given: &str, family: &str, mail: &str) -> UserView {
    UserView {
        user_name: user_name.into(),
        full_name: Some(format!("{given} {family}")),
        display_name: Some(format!("{given} {family}")),
        given_name: some(given),
        family_name: some(family),
        mail: some(mail),
        enabled: Some(true),
        manager: None,
    }
}

/// The view of a user created from [`minimal_user`].
fn minimal_view(user_name: &str, mail: &str) -> UserView {
    UserView {
        user_name: user_name.into(),
        full_name: some(user_name),
        family_name: some("-"),
        mail: some(mail),
        enabled: Some(true),
        ..UserView::default()
    }
}

fn group_view(name: &str, members: &[&str]) -> GroupView {
    let mut members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
    members.sort();
    GroupView {
        name: name.into(),
        members,
    }
}

/// `"text"` as a SCIM filter literal (a JSON string), URL-encoded for a query string.
fn filter_eq(attr: &str, value: &str) -> String {
    let filter = format!(
        "{attr} eq {}",
        serde_json::to_string(value).expect("a string")
    );
    form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

fn id_of(r: &Resp) -> String {
    r.body["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {}", r.text))
        .to_string()
}

impl TargetUnderTest {
    fn sqlite() -> TargetUnderTest {
        let daemon = Daemon::start_with(SQLITE_MAPPING);
        let db = daemon.dir().join("directory.db");
        let t = TargetUnderTest {
            daemon,
            backend: Backend::Sqlite { db },
        };
        t.install_write_log();
        t
    }

    fn ldap() -> TargetUnderTest {
        TargetUnderTest::on(Box::new(Slapd::start()))
    }

    fn ds389() -> TargetUnderTest {
        TargetUnderTest::on(Box::new(
            scim_bridge::dirsrv::DirSrv::start().unwrap_or_else(|e| panic!("{e}")),
        ))
    }

    fn samba() -> TargetUnderTest {
        TargetUnderTest::on(Box::new(
            scim_bridge::samba::SambaDc::start().unwrap_or_else(|e| panic!("{e}")),
        ))
    }

    fn on(server: Box<dyn Server>) -> TargetUnderTest {
        let yaml = server
            .schema()
            .mapping()
            .replace("@URL@", server.url())
            .replace("@BIND_DN@", server.admin_dn())
            .replace("@PASSWORD@", server.admin_password())
            .replace("@BASE@", server.base());
        TargetUnderTest {
            daemon: Daemon::start_with(&yaml),
            backend: Backend::Ldap { slapd: server },
        }
    }

    fn name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Ldap { slapd } => slapd.name(),
        }
    }

    // --- Writes over HTTP -------------------------------------------------------------

    /// Sends a request, checks its status, and waits until delivery has settled.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>, status: u16) -> Resp {
        let mut request = self.daemon.request(method.clone(), path);
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
        }
        let r = send(request).await;
        assert_eq!(
            r.status,
            status,
            "[{}] {method} {path} {}: expected {status}, got {}: {}",
            self.name(),
            body.map(Value::to_string).unwrap_or_default(),
            r.status,
            r.text
        );
        self.settled().await;
        r
    }

    async fn create_user(&self, doc: Value) -> String {
        id_of(&self.send(Method::POST, "/Users", Some(&doc), 201).await)
    }

    async fn put_user(&self, id: &str, doc: Value) -> Resp {
        self.send(Method::PUT, &format!("/Users/{id}"), Some(&doc), 200)
            .await
    }

    async fn patch_user(&self, id: &str, ops: Value) -> Resp {
        self.send(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(&patch(ops)),
            200,
        )
        .await
    }

    async fn delete_user(&self, id: &str) {
        self.send(Method::DELETE, &format!("/Users/{id}"), None, 204)
            .await;
    }

    async fn create_group(&self, name: &str, member_ids: &[&str]) -> String {
        let members: Vec<Value> = member_ids.iter().map(|id| json!({"value": id})).collect();
        let doc = json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members});
        id_of(&self.send(Method::POST, "/Groups", Some(&doc), 201).await)
    }

    async fn patch_group(&self, id: &str, ops: Value) {
        self.send(
            Method::PATCH,
            &format!("/Groups/{id}"),
            Some(&patch(ops)),
            204,
        )
        .await;
    }

    async fn delete_group(&self, id: &str) {
        self.send(Method::DELETE, &format!("/Groups/{id}"), None, 204)
            .await;
    }

    /// Restarts the daemon on the same state and target, and waits until it has settled.
    async fn restart(&mut self) {
        self.daemon.restart();
        self.settled().await;
    }

    /// Waits until the journal holds no pending record: every accepted change has been
    /// applied to (or rejected by) the target.
    async fn settled(&self) {
        let path = self.daemon.state_dir.join("state.db");
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let pending = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| {
                c.busy_timeout(Duration::from_secs(2))?;
                let mut stmt = c.prepare(
                    "SELECT seq, resource_id, delivery_detail FROM journal \
                     WHERE delivery = 'pending' ORDER BY seq",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(format!(
                        "#{} {} {:?}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?
                    ))
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            });
            match pending {
                Ok(rows) if rows.is_empty() => return,
                other if Instant::now() >= deadline => panic!(
                    "[{}] delivery did not settle within {SETTLE_TIMEOUT:?}: pending records \
                     (or the error reading the journal): {other:?}",
                    self.name()
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    // --- Observations -----------------------------------------------------------------

    /// The user stored under exactly this userName (LDAP: the entry at its DN).
    fn user(&self, user_name: &str) -> Option<UserView> {
        match &self.backend {
            Backend::Sqlite { .. } => {
                let mut rows = self.sqlite_users(Some(user_name));
                assert!(
                    rows.len() <= 1,
                    "[sqlite] several rows for {user_name:?}: {rows:?}"
                );
                rows.pop()
            }
            Backend::Ldap { slapd } => {
                let schema = slapd.schema();
                let dn = schema.user_dn(user_name);
                let entries = at_dn_or_trimmed(slapd, user_name, schema.user_attributes(), |n| {
                    schema.user_dn(n)
                });
                assert!(
                    entries.len() <= 1,
                    "[{}] several entries at {dn}: {entries:?}",
                    self.name()
                );
                entries.first().map(|e| self.ldap_user_view(slapd, e))
            }
        }
    }

    /// The user stored under this userName; fails the test when there is none.
    fn expect_user(&self, user_name: &str) -> UserView {
        self.user(user_name).unwrap_or_else(|| {
            panic!(
                "[{}] no user {user_name:?} in the target; it holds {:#?}",
                self.name(),
                self.users()
            )
        })
    }

    /// Every user, sorted.
    fn users(&self) -> Vec<UserView> {
        let mut users = match &self.backend {
            Backend::Sqlite { .. } => self.sqlite_users(None),
            Backend::Ldap { slapd } => {
                let schema = slapd.schema();
                ldap_search_under(
                    slapd,
                    schema.people_dn(),
                    schema.users_filter(),
                    schema.user_attributes(),
                )
                .iter()
                .map(|e| self.ldap_user_view(slapd, e))
                .collect()
            }
        };
        users.sort();
        users
    }

    fn user_count(&self) -> usize {
        self.users().len()
    }

    /// What identifies the stored row/entry whatever its name: the SCIM id key (SQLite),
    /// the `entryUUID` (LDAP), the `objectGUID` (AD).
    fn identity(&self, user_name: &str) -> Option<String> {
        match &self.backend {
            Backend::Sqlite { db } => {
                let conn = open_read_only(db);
                conn.query_row(
                    "SELECT scim_id FROM contract_users WHERE user_name = ?1",
                    [user_name],
                    |r| r.get(0),
                )
                .ok()
            }
            Backend::Ldap { slapd } => {
                let schema = slapd.schema();
                let attr = schema.identity_attribute();
                ldap_search(slapd, &schema.user_dn(user_name), &[attr])
                    .first()
                    .and_then(|e| e.one(attr))
            }
        }
    }

    /// The group stored under exactly this name (LDAP: the entry at its DN).
    fn group(&self, name: &str) -> Option<GroupView> {
        match &self.backend {
            Backend::Sqlite { .. } => {
                let mut rows = self.sqlite_groups(Some(name));
                assert!(
                    rows.len() <= 1,
                    "[sqlite] several rows for {name:?}: {rows:?}"
                );
                rows.pop()
            }
            Backend::Ldap { slapd } => {
                let schema = slapd.schema();
                at_dn_or_trimmed(slapd, name, &["cn", "member"], |n| schema.group_dn(n))
                    .first()
                    .map(|e| self.ldap_group_view(slapd, e))
            }
        }
    }

    fn expect_group(&self, name: &str) -> GroupView {
        self.group(name).unwrap_or_else(|| {
            panic!(
                "[{}] no group {name:?} in the target; it holds {:#?}",
                self.name(),
                self.groups()
            )
        })
    }

    /// Every group, sorted.
    fn groups(&self) -> Vec<GroupView> {
        let mut groups = match &self.backend {
            Backend::Sqlite { .. } => self.sqlite_groups(None),
            Backend::Ldap { slapd } => {
                let schema = slapd.schema();
                ldap_search_under(
                    slapd,
                    schema.groups_dn(),
                    schema.groups_filter(),
                    &["cn", "member"],
                )
                .iter()
                .map(|e| self.ldap_group_view(slapd, e))
                .collect()
            }
        };
        groups.sort();
        groups
    }

    fn group_count(&self) -> usize {
        self.groups().len()
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            users: self.users(),
            groups: self.groups(),
        }
    }

    /// Changes whenever the target is written (see the module doc).
    fn write_stamp(&self) -> String {
        match &self.backend {
            Backend::Sqlite { db } => {
                let conn = open_read_only(db);
                let n: i64 = conn
                    .query_row("SELECT count(*) FROM contract_writes", [], |r| r.get(0))
                    .expect("count the logged writes");
                format!("{n} writes")
            }
            Backend::Ldap { slapd } => {
                let stamp = slapd.stamp_attribute();
                let mut lines: Vec<String> = slapd
                    .schema()
                    .stamp_bases(slapd.base())
                    .iter()
                    .flat_map(|base| ldap_search_under(&**slapd, base, "(objectClass=*)", &[stamp]))
                    .map(|e| format!("{} @ {}", e.dn, e.values(stamp).join(",")))
                    .collect();
                lines.sort();
                lines.join("\n")
            }
        }
    }

    // --- SQLite -----------------------------------------------------------------------

    /// Triggers that log every write to the mapped tables into `contract_writes`, the way
    /// a reading application would watch them (the daemon leaves such objects alone).
    fn install_write_log(&self) {
        let Backend::Sqlite { db } = &self.backend else {
            return;
        };
        let conn = rusqlite::Connection::open(db).expect("open the target database");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        let mut sql = String::from(
            "CREATE TABLE contract_writes (n INTEGER PRIMARY KEY, tbl TEXT NOT NULL, op TEXT NOT NULL);\n",
        );
        for table in ["contract_users", "contract_groups", "contract_members"] {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                sql += &format!(
                    "CREATE TRIGGER {table}_{op}_logged AFTER {op} ON {table} BEGIN \
                     INSERT INTO contract_writes (tbl, op) VALUES ('{table}', '{op}'); END;\n"
                );
            }
        }
        conn.execute_batch(&sql).unwrap_or_else(|e| {
            panic!("install the write-log triggers (the daemon creates the tables at start): {e}")
        });
    }

    fn sqlite_users(&self, user_name: Option<&str>) -> Vec<UserView> {
        let Backend::Sqlite { db } = &self.backend else {
            unreachable!("a SQLite read on {}", self.name())
        };
        let conn = open_read_only(db);
        let sql = format!(
            "SELECT u.user_name, u.full_name, u.display_name, u.given_name, u.family_name, \
             u.mail, u.enabled, u.manager_id, m.user_name \
             FROM contract_users u LEFT JOIN contract_users m ON m.scim_id = u.manager_id {}",
            if user_name.is_some() {
                "WHERE u.user_name = ?1"
            } else {
                ""
            }
        );
        let mut stmt = conn.prepare(&sql).expect("prepare the users query");
        let params: Vec<&str> = user_name.into_iter().collect();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                let manager_id: Option<String> = r.get(7)?;
                let manager: Option<String> = r.get(8)?;
                Ok(UserView {
                    user_name: r.get(0)?,
                    full_name: r.get(1)?,
                    display_name: r.get(2)?,
                    given_name: r.get(3)?,
                    family_name: r.get(4)?,
                    mail: r.get(5)?,
                    enabled: r.get::<_, Option<i64>>(6)?.map(|v| v != 0),
                    // An id naming no row (e.g. a deleted manager) is no reference.
                    manager: manager_id.and(manager),
                })
            })
            .expect("query the users");
        rows.collect::<Result<Vec<_>, _>>().expect("read the users")
    }

    fn sqlite_groups(&self, name: Option<&str>) -> Vec<GroupView> {
        let Backend::Sqlite { db } = &self.backend else {
            unreachable!("a SQLite read on {}", self.name())
        };
        let conn = open_read_only(db);
        let sql = format!(
            "SELECT scim_id, name FROM contract_groups {}",
            if name.is_some() {
                "WHERE name = ?1"
            } else {
                ""
            }
        );
        let mut stmt = conn.prepare(&sql).expect("prepare the groups query");
        let params: Vec<&str> = name.into_iter().collect();
        let groups: Vec<(String, String)> = stmt
            .query_map(rusqlite::params_from_iter(params), |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("query the groups")
            .collect::<Result<_, _>>()
            .expect("read the groups");
        let mut members = conn
            .prepare(
                "SELECT m.user_id, u.user_name FROM contract_members m \
                 LEFT JOIN contract_users u ON u.scim_id = m.user_id WHERE m.group_id = ?1",
            )
            .expect("prepare the members query");
        groups
            .into_iter()
            .map(|(id, name)| {
                let mut names: Vec<String> = members
                    .query_map([&id], |r| {
                        let user_id: String = r.get(0)?;
                        let name: Option<String> = r.get(1)?;
                        Ok(name.unwrap_or_else(|| format!("<no user row {user_id}>")))
                    })
                    .expect("query the members")
                    .collect::<Result<_, _>>()
                    .expect("read the members");
                names.sort();
                GroupView {
                    name,
                    members: names,
                }
            })
            .collect()
    }

    // --- LDAP -------------------------------------------------------------------------

    fn ldap_user_view(&self, slapd: &dyn Server, e: &Entry) -> UserView {
        match slapd.schema() {
            Schema::InetOrgPerson => self.inet_org_person_view(slapd, e),
            Schema::ActiveDirectory => self.ad_user_view(slapd, e),
        }
    }

    fn inet_org_person_view(&self, slapd: &dyn Server, e: &Entry) -> UserView {
        UserView {
            user_name: e.values("uid").join(" | "),
            full_name: e.one("cn"),
            display_name: e.one("displayName"),
            given_name: e.one("givenName"),
            family_name: e.one("sn"),
            mail: e.one("mail"),
            enabled: e.one("employeeType").map(|v| match v.as_str() {
                "TRUE" => true,
                "FALSE" => false,
                other => panic!("[ldap] {}: employeeType {other:?} is not a boolean", e.dn),
            }),
            manager: e.one("manager").map(|dn| user_name_at(slapd, &dn)),
        }
    }

    /// An AD user: the full name in `description` (`cn` is the RDN, the userName), enabled
    /// while bit 2 (ACCOUNTDISABLE) of `userAccountControl` is clear.
    fn ad_user_view(&self, slapd: &dyn Server, e: &Entry) -> UserView {
        UserView {
            user_name: e.values("userPrincipalName").join(" | "),
            full_name: e.one("description"),
            display_name: e.one("displayName"),
            given_name: e.one("givenName"),
            family_name: e.one("sn"),
            mail: e.one("mail"),
            enabled: e.one("userAccountControl").map(|v| {
                let flags: u32 = v.parse().unwrap_or_else(|_| {
                    panic!(
                        "[{}] {}: userAccountControl {v:?} is not a number",
                        self.name(),
                        e.dn
                    )
                });
                flags & ACCOUNTDISABLE == 0
            }),
            manager: e.one("manager").map(|dn| user_name_at(slapd, &dn)),
        }
    }

    fn ldap_group_view(&self, slapd: &dyn Server, e: &Entry) -> GroupView {
        if slapd.schema() == Schema::ActiveDirectory {
            // An AD group may be empty: no placeholder.
            let mut members: Vec<String> = e
                .values("member")
                .iter()
                .map(|dn| user_name_at(slapd, dn))
                .collect();
            members.sort();
            return GroupView {
                name: e.values("cn").join(" | "),
                members,
            };
        }
        let placeholder = format!("cn=placeholder,{}", slapd.base());
        let mut members: Vec<String> = e
            .values("member")
            .iter()
            .filter(|dn| !dn.eq_ignore_ascii_case(&placeholder))
            .map(|dn| user_name_at(slapd, dn))
            .collect();
        members.sort();
        // groupOfNames needs a member: an empty group holds the placeholder, and only then.
        let holds_placeholder = e
            .values("member")
            .iter()
            .any(|dn| dn.eq_ignore_ascii_case(&placeholder));
        assert_eq!(
            holds_placeholder,
            members.is_empty(),
            "[ldap] {}: the placeholder is there exactly when there is no other member: {:?}",
            e.dn,
            e.values("member")
        );
        GroupView {
            name: e.values("cn").join(" | "),
            members,
        }
    }
}

fn open_read_only(db: &std::path::Path) -> rusqlite::Connection {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {} read-only: {e}", db.display()));
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// The userName (`uid`, `userPrincipalName`) of the entry at `dn` (a member or a
/// manager), or `<…>` when there is no such user entry.
fn user_name_at(slapd: &dyn Server, dn: &str) -> String {
    let attr = slapd.schema().user_name_attribute();
    match ldap_search(slapd, dn, &[attr]).first() {
        Some(e) if !e.values(attr).is_empty() => e.values(attr).join(" | "),
        Some(_) => format!("<no {attr} at {dn}>"),
        None => format!("<no entry at {dn}>"),
    }
}

/// One entry of `ldapsearch` output: its DN and attribute values (names lower-cased).
#[derive(Debug)]
struct Entry {
    dn: String,
    attrs: BTreeMap<String, Vec<String>>,
}

impl Entry {
    fn values(&self, attr: &str) -> Vec<String> {
        self.attrs
            .get(&attr.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a single-valued attribute (several are joined with ` | `, so a second
    /// value shows up in comparisons).
    fn one(&self, attr: &str) -> Option<String> {
        let values = self.values(attr);
        (!values.is_empty()).then(|| values.join(" | "))
    }
}

/// The entry at `dn` (and any below it), `[]` when there is none.
/// The entry named `name` at the DN `dn_of` gives it, or — when the name has leading or
/// trailing spaces and there is none — at the DN of the name without them: 389-DS drops
/// them from the RDN in a modifyDN (the bridge follows the entry there; the attribute
/// keeps them, and the view shows the attribute).
fn at_dn_or_trimmed(
    slapd: &dyn Server,
    name: &str,
    attrs: &[&str],
    dn_of: impl Fn(&str) -> String,
) -> Vec<Entry> {
    let found = ldap_search(slapd, &dn_of(name), attrs);
    let trimmed = name.trim_matches(' ');
    if found.is_empty() && trimmed != name {
        return ldap_search(slapd, &dn_of(trimmed), attrs);
    }
    found
}

fn ldap_search(slapd: &dyn Server, dn: &str, attrs: &[&str]) -> Vec<Entry> {
    parse_ldif(&slapd.ldapsearch(dn, "(objectClass=*)", attrs))
}

fn ldap_search_under(slapd: &dyn Server, base: &str, filter: &str, attrs: &[&str]) -> Vec<Entry> {
    parse_ldif(&slapd.ldapsearch(base, filter, attrs))
}

/// Parses `ldapsearch -LLL -o ldif-wrap=no` output (`attr: value`, `attr:: base64`),
/// skipping comment lines (AD's search result references come as `# refldap://…`).
fn parse_ldif(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let mut dn = None;
        let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in block
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let (name, rest) = line
                .split_once(':')
                .unwrap_or_else(|| panic!("not an LDIF line: {line:?}\n{text}"));
            let value = match rest.strip_prefix(':') {
                Some(b64) => base64_decode(b64.trim()),
                None => rest.strip_prefix(' ').unwrap_or(rest).to_string(),
            };
            if name.eq_ignore_ascii_case("dn") {
                dn = Some(value);
            } else {
                attrs
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .push(value);
            }
        }
        if let Some(dn) = dn {
            entries.push(Entry { dn, attrs });
        }
    }
    entries
}

/// Standard base64 (with padding) to UTF-8 text; a binary value (AD's `objectGUID`) as
/// `0x` and its bytes in hex.
fn base64_decode(text: &str) -> String {
    String::from_utf8(crate::harness::base64_bytes(text)).unwrap_or_else(|e| {
        let hex: String = e.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}")
    })
}

// --- Scenarios -------------------------------------------------------------------------

type Tut = TargetUnderTest;

async fn create_user_writes_one_entry_with_mapped_attributes(t: &mut Tut) {
    assert_eq!(t.user_count(), 0, "a fresh target");
    t.create_user(user_doc(
        "alice@example.com",
        "Alice",
        "Liddell",
        "alice@example.com",
    ))
    .await;
    assert_eq!(
        t.expect_user("alice@example.com"),
        full_view("alice@example.com", "Alice", "Liddell", "alice@example.com")
    );
    // Only what the mapping requires: defaults and the expression's fallbacks.
    t.create_user(minimal_user("bob", "bob@example.com")).await;
    assert_eq!(t.expect_user("bob"), minimal_view("bob", "bob@example.com"));
    // Created disabled: the on_disable value.
    t.create_user(json!({
        "schemas": [USER_SCHEMA], "userName": "carl", "active": false,
        "emails": [{"type": "work", "value": "carl@example.com"}]
    }))
    .await;
    assert_eq!(
        t.expect_user("carl"),
        UserView {
            enabled: Some(false),
            ..minimal_view("carl", "carl@example.com")
        }
    );
    assert_eq!(t.user_count(), 3, "{:#?}", t.users());
    assert_eq!(t.group_count(), 0);
}

async fn put_replaces_attributes_and_clears_the_ones_left_out(t: &mut Tut) {
    let boss = t
        .create_user(minimal_user("boss", "boss@example.com"))
        .await;
    let mut doc = user_doc("alice", "Alice", "Liddell", "alice@example.com");
    doc["schemas"] = json!([USER_SCHEMA, ENTERPRISE]);
    doc[ENTERPRISE] = json!({"manager": {"value": boss}});
    let id = t.create_user(doc).await;
    assert_eq!(
        t.expect_user("alice"),
        UserView {
            manager: some("boss"),
            ..full_view("alice", "Alice", "Liddell", "alice@example.com")
        }
    );
    // Everything replaced: new given name and mail, displayName, familyName and the
    // manager left out, disabled.
    t.put_user(
        &id,
        json!({
            "schemas": [USER_SCHEMA], "userName": "alice", "active": false,
            "name": {"givenName": "Alicia"},
            "emails": [{"type": "work", "value": "alicia@example.com"}]
        }),
    )
    .await;
    assert_eq!(
        t.expect_user("alice"),
        UserView {
            user_name: "alice".into(),
            full_name: some("Alicia"),
            display_name: None,
            given_name: some("Alicia"),
            family_name: some("-"),
            mail: some("alicia@example.com"),
            enabled: Some(false),
            manager: None,
        }
    );
    // And back: every attribute written again.
    let mut doc = user_doc("alice", "Alice", "Liddell", "alice@example.com");
    doc["schemas"] = json!([USER_SCHEMA, ENTERPRISE]);
    doc[ENTERPRISE] = json!({"manager": {"value": boss}});
    t.put_user(&id, doc).await;
    assert_eq!(
        t.expect_user("alice"),
        UserView {
            manager: some("boss"),
            ..full_view("alice", "Alice", "Liddell", "alice@example.com")
        }
    );
    assert_eq!(t.user_count(), 2, "{:#?}", t.users());
}

async fn entra_patch_replace_add_and_remove_change_attributes(t: &mut Tut) {
    let id = t
        .create_user(user_doc("alice", "Alice", "Liddell", "alice@example.com"))
        .await;
    // Entra's path-less replace: dotted keys, string booleans.
    t.patch_user(
        &id,
        json!([{"op": "Replace", "value": {
            "displayName": "Ally L.", "name.givenName": "Ally", "active": "False"
        }}]),
    )
    .await;
    assert_eq!(
        t.expect_user("alice"),
        UserView {
            full_name: some("Ally L."),
            display_name: some("Ally L."),
            given_name: some("Ally"),
            enabled: Some(false),
            ..full_view("alice", "Alice", "Liddell", "alice@example.com")
        },
        "after the path-less replace"
    );
    // Add with a path, including Entra's filtered email path.
    t.patch_user(
        &id,
        json!([
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "ally@example.com"},
            {"op": "Add", "path": "name.familyName", "value": "Hargreaves"}
        ]),
    )
    .await;
    assert_eq!(
        t.expect_user("alice"),
        UserView {
            user_name: "alice".into(),
            full_name: some("Ally L."),
            display_name: some("Ally L."),
            given_name: some("Ally"),
            family_name: some("Hargreaves"),
            mail: some("ally@example.com"),
            enabled: Some(false),
            manager: None,
        },
        "after the adds"
    );
    // Remove: the attribute is cleared and the expression falls back.
    t.patch_user(
        &id,
        json!([
            {"op": "Remove", "path": "displayName"},
            {"op": "Replace", "path": "active", "value": "True"}
        ]),
    )
    .await;
    assert_eq!(
        t.expect_user("alice"),
        UserView {
            user_name: "alice".into(),
            full_name: some("Ally Hargreaves"),
            display_name: None,
            given_name: some("Ally"),
            family_name: some("Hargreaves"),
            mail: some("ally@example.com"),
            enabled: Some(true),
            manager: None,
        },
        "after the remove"
    );
    t.patch_user(&id, json!([{"op": "Remove", "path": "name.givenName"}]))
        .await;
    let user = t.expect_user("alice");
    assert_eq!(
        (user.full_name.as_deref(), user.given_name.as_deref()),
        (Some("Hargreaves"), None),
        "{user:?}"
    );
    assert_eq!(t.user_count(), 1);
}

async fn renaming_a_user_keeps_the_same_entry_under_the_new_name(t: &mut Tut) {
    let id = t
        .create_user(user_doc(
            "carol@example.com",
            "Carol",
            "Danvers",
            "carol@example.com",
        ))
        .await;
    let identity = t.identity("carol@example.com");
    assert!(identity.is_some());
    // Entra's userName PATCH.
    t.patch_user(
        &id,
        json!([{"op": "Replace", "path": "userName", "value": "carol.new@example.com"}]),
    )
    .await;
    assert_eq!(
        t.expect_user("carol.new@example.com"),
        full_view(
            "carol.new@example.com",
            "Carol",
            "Danvers",
            "carol@example.com"
        )
    );
    assert_eq!(t.user("carol@example.com"), None);
    assert_eq!(t.user_count(), 1, "{:#?}", t.users());
    assert_eq!(
        t.identity("carol.new@example.com"),
        identity,
        "the same row/entry, renamed"
    );
    // A change of case only (Entra does this with UPNs).
    t.patch_user(
        &id,
        json!([{"op": "Replace", "path": "userName", "value": "Carol.New@Example.com"}]),
    )
    .await;
    assert_eq!(
        t.users(),
        vec![full_view(
            "Carol.New@Example.com",
            "Carol",
            "Danvers",
            "carol@example.com"
        )],
        "the case-only rename"
    );
    assert_eq!(t.identity("Carol.New@Example.com"), identity);
    // A rename by PUT, together with other changes.
    t.put_user(
        &id,
        user_doc("cdanvers", "Carol", "Danvers", "cd@example.com"),
    )
    .await;
    assert_eq!(
        t.users(),
        vec![full_view("cdanvers", "Carol", "Danvers", "cd@example.com")],
        "the rename by PUT"
    );
    assert_eq!(t.identity("cdanvers"), identity);
}

async fn creating_a_group_with_members_writes_the_members(t: &mut Tut) {
    let a = t.create_user(minimal_user("ann", "ann@example.com")).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    t.create_user(minimal_user("cat", "cat@example.com")).await;
    t.create_group("Engineering", &[&a, &b]).await;
    t.create_group("Empty", &[]).await;
    assert_eq!(
        t.groups(),
        vec![
            group_view("Empty", &[]),
            group_view("Engineering", &["ann", "ben"])
        ]
    );
    assert_eq!(t.user_count(), 3);
}

async fn patching_group_members_adds_and_removes_only_the_listed_ones(t: &mut Tut) {
    let a = t.create_user(minimal_user("ann", "ann@example.com")).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    let c = t.create_user(minimal_user("cat", "cat@example.com")).await;
    let g = t.create_group("Engineering", &[&a]).await;
    // Entra's add, several members in one value array.
    t.patch_group(
        &g,
        json!([{"op": "Add", "path": "members", "value": [{"value": b}, {"value": c}]}]),
    )
    .await;
    assert_eq!(
        t.expect_group("Engineering"),
        group_view("Engineering", &["ann", "ben", "cat"]),
        "after the add"
    );
    // Entra's remove by value array: only the listed member goes.
    t.patch_group(
        &g,
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": b}]}]),
    )
    .await;
    assert_eq!(
        t.expect_group("Engineering"),
        group_view("Engineering", &["ann", "cat"]),
        "after removing ben by value array"
    );
    // RFC 7644's remove by filter.
    t.patch_group(
        &g,
        json!([{"op": "Remove", "path": format!("members[value eq \"{a}\"]")}]),
    )
    .await;
    assert_eq!(
        t.expect_group("Engineering"),
        group_view("Engineering", &["cat"]),
        "after removing ann by filter"
    );
    // Replace the whole member list.
    t.patch_group(
        &g,
        json!([{"op": "Replace", "path": "members", "value": [{"value": a}, {"value": b}]}]),
    )
    .await;
    assert_eq!(
        t.expect_group("Engineering"),
        group_view("Engineering", &["ann", "ben"]),
        "after the replace"
    );
    // Removing every member by value array leaves an empty group.
    t.patch_group(
        &g,
        json!([{"op": "Remove", "path": "members", "value": [{"value": a}, {"value": b}]}]),
    )
    .await;
    assert_eq!(
        t.groups(),
        vec![group_view("Engineering", &[])],
        "after removing everyone"
    );
    assert_eq!(t.user_count(), 3, "members are not users");
}

async fn renaming_a_member_keeps_it_in_its_groups(t: &mut Tut) {
    let a = t
        .create_user(minimal_user("dave", "dave@example.com"))
        .await;
    let b = t
        .create_user(minimal_user("erin", "erin@example.com"))
        .await;
    t.create_group("Sales", &[&a, &b]).await;
    t.create_group("Everyone", &[&a]).await;
    t.patch_user(
        &a,
        json!([{"op": "Replace", "path": "userName", "value": "david"}]),
    )
    .await;
    assert_eq!(
        t.groups(),
        vec![
            group_view("Everyone", &["david"]),
            group_view("Sales", &["david", "erin"])
        ],
        "after renaming dave by PATCH"
    );
    t.put_user(&b, minimal_user("erin.b", "erin@example.com"))
        .await;
    assert_eq!(
        t.groups(),
        vec![
            group_view("Everyone", &["david"]),
            group_view("Sales", &["david", "erin.b"])
        ],
        "after renaming erin by PUT"
    );
    // Renamed back and forth: still a member, once.
    t.patch_user(
        &a,
        json!([{"op": "Replace", "path": "userName", "value": "dave"}]),
    )
    .await;
    assert_eq!(
        t.groups(),
        vec![
            group_view("Everyone", &["dave"]),
            group_view("Sales", &["dave", "erin.b"])
        ],
        "after renaming david back"
    );
    assert_eq!(t.user_count(), 2, "{:#?}", t.users());
}

async fn renaming_a_group_keeps_its_members(t: &mut Tut) {
    let a = t.create_user(minimal_user("ann", "ann@example.com")).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    let g = t.create_group("Ops", &[&a]).await;
    t.patch_group(
        &g,
        json!([{"op": "Replace", "path": "displayName", "value": "Operations"}]),
    )
    .await;
    assert_eq!(t.groups(), vec![group_view("Operations", &["ann"])]);
    assert_eq!(t.group("Ops"), None);
    t.patch_group(
        &g,
        json!([{"op": "Add", "path": "members", "value": [{"value": b}]}]),
    )
    .await;
    assert_eq!(
        t.groups(),
        vec![group_view("Operations", &["ann", "ben"])],
        "a member added after the rename"
    );
    // To a name that needs escaping in a DN, starting with '#' and ending with a space.
    let hostile = "#Ops, R+D \"EU\" ";
    t.patch_group(
        &g,
        json!([{"op": "Replace", "path": "displayName", "value": hostile}]),
    )
    .await;
    assert_eq!(
        t.groups(),
        vec![group_view(hostile, &["ann", "ben"])],
        "renamed to {hostile:?}"
    );
}

async fn deleting_a_user_removes_it_and_its_memberships(t: &mut Tut) {
    let a = t.create_user(minimal_user("ann", "ann@example.com")).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    t.create_group("Both", &[&a, &b]).await;
    t.create_group("OnlyAnn", &[&a]).await;
    t.delete_user(&a).await;
    assert_eq!(t.user("ann"), None);
    assert_eq!(t.users(), vec![minimal_view("ben", "ben@example.com")]);
    assert_eq!(
        t.groups(),
        vec![group_view("Both", &["ben"]), group_view("OnlyAnn", &[])],
        "the deleted user left its groups; the groups stay"
    );
    let r = t.daemon.get(&format!("/Users/{a}")).await;
    assert_eq!(r.status, 404, "{}", r.text);
}

async fn deleting_a_group_removes_it_and_leaves_its_members(t: &mut Tut) {
    let a = t.create_user(minimal_user("ann", "ann@example.com")).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    let g = t.create_group("Doomed", &[&a, &b]).await;
    t.create_group("Kept", &[&a]).await;
    let users = t.users();
    t.delete_group(&g).await;
    assert_eq!(t.group("Doomed"), None);
    assert_eq!(t.groups(), vec![group_view("Kept", &["ann"])]);
    assert_eq!(t.users(), users, "the members are untouched");
    // The name can be used again.
    t.create_group("Doomed", &[&b]).await;
    assert_eq!(t.expect_group("Doomed"), group_view("Doomed", &["ben"]));
}

async fn manager_reference_is_written_once_both_exist_and_follows_the_manager(t: &mut Tut) {
    // The manager exists before the report: set in the report's create.
    let boss = t
        .create_user(minimal_user("boss", "boss@example.com"))
        .await;
    let mut doc = minimal_user("report1", "r1@example.com");
    doc["schemas"] = json!([USER_SCHEMA, ENTERPRISE]);
    doc[ENTERPRISE] = json!({"manager": {"value": boss}});
    let r1 = t.create_user(doc).await;
    assert_eq!(
        t.expect_user("report1").manager,
        some("boss"),
        "set at create"
    );
    // The report exists before its manager (Entra creates users first, then links
    // managers): set by Entra's PATCH once the manager exists.
    let r2 = t
        .create_user(minimal_user("report2", "r2@example.com"))
        .await;
    assert_eq!(t.expect_user("report2").manager, None);
    let boss2 = t
        .create_user(minimal_user("boss2", "boss2@example.com"))
        .await;
    t.patch_user(
        &r2,
        json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": boss2}]),
    )
    .await;
    assert_eq!(
        t.expect_user("report2").manager,
        some("boss2"),
        "set by PATCH"
    );
    // The manager renamed: the reference follows.
    t.patch_user(
        &boss,
        json!([{"op": "Replace", "path": "userName", "value": "big.boss"}]),
    )
    .await;
    assert_eq!(
        t.expect_user("report1").manager,
        some("big.boss"),
        "after the manager's rename"
    );
    // Changed, removed, set again.
    t.patch_user(
        &r1,
        json!([{"op": "Replace", "path": format!("{ENTERPRISE}:manager"), "value": {"value": boss2}}]),
    )
    .await;
    assert_eq!(t.expect_user("report1").manager, some("boss2"));
    t.patch_user(
        &r1,
        json!([{"op": "Remove", "path": format!("{ENTERPRISE}:manager")}]),
    )
    .await;
    assert_eq!(t.expect_user("report1").manager, None);
    t.patch_user(
        &r1,
        json!([{"op": "Add", "path": "manager", "value": [{"value": boss}]}]),
    )
    .await;
    assert_eq!(
        t.expect_user("report1").manager,
        some("big.boss"),
        "set again (Entra's array shape)"
    );
    // The manager deleted: no reference to it is left.
    t.delete_user(&boss).await;
    assert_eq!(
        t.expect_user("report1").manager,
        None,
        "after the manager's deletion"
    );
    assert_eq!(t.expect_user("report2").manager, some("boss2"));
    assert_eq!(t.user_count(), 3, "{:#?}", t.users());
}

async fn replaying_the_same_request_changes_nothing(t: &mut Tut) {
    let doc = user_doc("alice", "Alice", "Liddell", "alice@example.com");
    let id = t.create_user(doc.clone()).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    let g = t.create_group("Team", &[&id]).await;

    // The same PUT twice: written once.
    let changed = user_doc("alice", "Alicia", "Liddell", "alicia@example.com");
    let stamp = t.write_stamp();
    let first = t.put_user(&id, changed.clone()).await;
    let after_first = (t.snapshot(), t.write_stamp());
    assert_ne!(after_first.1, stamp, "the first PUT writes");
    let second = t.put_user(&id, changed).await;
    assert_eq!(
        (t.snapshot(), t.write_stamp()),
        after_first,
        "the second, identical PUT writes nothing"
    );
    assert_eq!(first.body["userName"], second.body["userName"]);

    // The same user PATCH twice.
    let ops = json!([{"op": "Replace", "path": "displayName", "value": "A. L."}]);
    t.patch_user(&id, ops.clone()).await;
    let after_first = (t.snapshot(), t.write_stamp());
    t.patch_user(&id, ops).await;
    assert_eq!(
        (t.snapshot(), t.write_stamp()),
        after_first,
        "the second, identical user PATCH writes nothing"
    );

    // The same member PATCH twice.
    let add = json!([{"op": "Add", "path": "members", "value": [{"value": b}]}]);
    t.patch_group(&g, add.clone()).await;
    let after_first = (t.snapshot(), t.write_stamp());
    t.patch_group(&g, add).await;
    assert_eq!(
        (t.snapshot(), t.write_stamp()),
        after_first,
        "the second, identical member PATCH writes nothing"
    );
    assert_eq!(
        t.expect_group("Team"),
        group_view("Team", &["alice", "ben"])
    );

    // The same create twice: a conflict, nothing written.
    let before = (t.snapshot(), t.write_stamp());
    let r = t.send(Method::POST, "/Users", Some(&doc), 409).await;
    assert_eq!(r.body["scimType"], "uniqueness", "{}", r.text);
    assert_eq!((t.snapshot(), t.write_stamp()), before, "a replayed create");

    // The same delete twice: the second is a 404 and writes nothing.
    t.delete_user(&b).await;
    let before = (t.snapshot(), t.write_stamp());
    t.send(Method::DELETE, &format!("/Users/{b}"), None, 404)
        .await;
    assert_eq!((t.snapshot(), t.write_stamp()), before, "a replayed delete");
    assert_eq!(t.expect_group("Team"), group_view("Team", &["alice"]));
}

async fn restarting_the_daemon_keeps_the_state_and_new_writes_still_land(t: &mut Tut) {
    let boss = t
        .create_user(minimal_user("boss", "boss@example.com"))
        .await;
    let mut doc = user_doc("alice", "Alice", "Liddell", "alice@example.com");
    doc["schemas"] = json!([USER_SCHEMA, ENTERPRISE]);
    doc[ENTERPRISE] = json!({"manager": {"value": boss}});
    let a = t.create_user(doc).await;
    let g = t.create_group("Team", &[&a, &boss]).await;
    let before = (t.snapshot(), t.write_stamp());

    t.restart().await;
    assert_eq!(
        (t.snapshot(), t.write_stamp()),
        before,
        "a restart changes nothing and writes nothing"
    );

    // New writes land: a create, a rename (of a member and manager), a member change.
    let c = t.create_user(minimal_user("cat", "cat@example.com")).await;
    t.patch_user(
        &boss,
        json!([{"op": "Replace", "path": "userName", "value": "big.boss"}]),
    )
    .await;
    t.patch_group(
        &g,
        json!([
            {"op": "Add", "path": "members", "value": [{"value": c}]},
            {"op": "Remove", "path": "members", "value": [{"value": a}]}
        ]),
    )
    .await;
    assert_eq!(t.expect_user("cat"), minimal_view("cat", "cat@example.com"));
    assert_eq!(t.expect_user("alice").manager, some("big.boss"));
    assert_eq!(t.groups(), vec![group_view("Team", &["big.boss", "cat"])]);
    assert_eq!(t.user_count(), 3);

    // And survive another restart.
    let before = (t.snapshot(), t.write_stamp());
    t.restart().await;
    assert_eq!(
        (t.snapshot(), t.write_stamp()),
        before,
        "the second restart"
    );
}

async fn a_rejected_value_leaves_nothing_in_the_target(t: &mut Tut) {
    // The mapping requires a mail: a user without one is refused by the target.
    let stamp = t.write_stamp();
    let r = t
        .send(
            Method::POST,
            "/Users",
            Some(
                &json!({"schemas": [USER_SCHEMA], "userName": "nomail", "displayName": "No Mail"}),
            ),
            400,
        )
        .await;
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("mail")),
        "the diagnostic names the column: {}",
        r.text
    );
    assert_eq!(t.user("nomail"), None);
    assert_eq!(t.user_count(), 0);
    assert_eq!(t.write_stamp(), stamp, "nothing written");
    let found = t
        .daemon
        .get(&format!(
            "/Users?filter={}",
            filter_eq("userName", "nomail")
        ))
        .await;
    assert_eq!(
        found.body["totalResults"], 0,
        "the rejected create is not kept: {}",
        found.text
    );

    // A rejected update leaves the target (and the resource) as they were; so does a
    // rejected rename.
    let id = t
        .create_user(user_doc("alice", "Alice", "Liddell", "alice@example.com"))
        .await;
    let g = t.create_group("Team", &[&id]).await;
    let before = (t.snapshot(), t.write_stamp());
    for (what, method, body) in [
        (
            "PATCH removing the mail",
            Method::PATCH,
            patch(json!([{"op": "Remove", "path": "emails"}])),
        ),
        (
            "PATCH renaming and removing the mail",
            Method::PATCH,
            patch(json!([
                {"op": "Replace", "path": "userName", "value": "alice2"},
                {"op": "Remove", "path": "emails"}
            ])),
        ),
        (
            "PUT without a mail",
            Method::PUT,
            json!({"schemas": [USER_SCHEMA], "userName": "alice3", "displayName": "Renamed"}),
        ),
    ] {
        t.send(method, &format!("/Users/{id}"), Some(&body), 400)
            .await;
        assert_eq!(
            (t.snapshot(), t.write_stamp()),
            before,
            "after a rejected {what}"
        );
        let r = t.daemon.get(&format!("/Users/{id}")).await;
        assert_eq!(
            (
                r.body["userName"].as_str(),
                r.body["emails"][0]["value"].as_str()
            ),
            (Some("alice"), Some("alice@example.com")),
            "the resource after a rejected {what}: {}",
            r.text
        );
    }
    assert_eq!(t.user("alice2"), None);
    assert_eq!(t.user("alice3"), None);
    // The target still takes good writes.
    t.patch_user(
        &id,
        json!([{"op": "Replace", "path": "displayName", "value": "Alice L."}]),
    )
    .await;
    assert_eq!(t.expect_user("alice").display_name, some("Alice L."));
    assert_eq!(
        t.expect_group("Team"),
        group_view("Team", &["alice"]),
        "group id {g}"
    );
}

/// userNames that need escaping in DNs, filters or SQL, that carry control characters
/// (CR/LF: log injection), or that break naive code.
const HOSTILE_NAMES: &[&str] = &[
    "Doe, John",
    "a+b=c",
    "quote\"d",
    "back\\slash",
    "#hash",
    " leading space",
    "trailing space ",
    "semi;colon<angle>",
    "*)(uid=*",
    "Zoë Åström 李",
    "Cafe\u{301} (decomposed)",
    "o'brien@example.com",
    "Robert'); DROP TABLE contract_users;--",
    "x\" OR \"1\"=\"1",
    "50% _off_ [x]",
    "tab\tand\u{7}bell",
    "line\r\nbreak",
];

async fn hostile_user_names_round_trip_literally(t: &mut Tut) {
    let mut ids = Vec::new();
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        let mail = format!("h{i}@example.com");
        let id = t.create_user(minimal_user(name, &mail)).await;
        // GET by id and by filter return the name literally.
        let r = t.daemon.get(&format!("/Users/{id}")).await;
        assert_eq!(r.body["userName"].as_str(), Some(*name), "GET {}", r.text);
        let found = t
            .daemon
            .get(&format!("/Users?filter={}", filter_eq("userName", name)))
            .await;
        assert_eq!(
            (
                found.body["totalResults"].as_u64(),
                found.body["Resources"][0]["id"].as_str()
            ),
            (Some(1), Some(id.as_str())),
            "filter for {name:?}: {}",
            found.text
        );
        // The target holds it literally.
        assert_eq!(
            t.user(name),
            Some(minimal_view(name, &mail)),
            "{name:?}; the target holds {:#?}",
            t.users()
        );
        ids.push(id);
    }
    assert_eq!(t.user_count(), HOSTILE_NAMES.len());

    // All of them in a group; one manages another.
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let g = t.create_group("Hostile", &id_refs).await;
    assert_eq!(
        t.expect_group("Hostile"),
        group_view("Hostile", HOSTILE_NAMES)
    );
    t.patch_user(
        &ids[1],
        json!([{"op": "add", "path": format!("{ENTERPRISE}:manager"), "value": ids[0]}]),
    )
    .await;
    assert_eq!(
        t.expect_user(HOSTILE_NAMES[1]).manager,
        some(HOSTILE_NAMES[0])
    );

    // A hostile name renamed to another one: the membership and the reference follow.
    let mut members: Vec<&str> = HOSTILE_NAMES.to_vec();
    let renamed = "Doe, Jane + \"Q\" \\ #1";
    rename_hostile(t, &ids[0], HOSTILE_NAMES[0], renamed, &mut members).await;

    // Replayed PUTs of hostile users write nothing.
    let before = (t.snapshot(), t.write_stamp());
    for (i, name) in HOSTILE_NAMES.iter().enumerate().skip(1) {
        let mut doc = minimal_user(name, &format!("h{i}@example.com"));
        if i == 1 {
            doc["schemas"] = json!([USER_SCHEMA, ENTERPRISE]);
            doc[ENTERPRISE] = json!({"manager": {"value": ids[0]}});
        }
        t.put_user(&ids[i], doc).await;
    }
    assert_eq!(
        (t.snapshot(), t.write_stamp()),
        before,
        "PUTs of the same hostile users write nothing"
    );

    // Deleting one takes it out of the group.
    t.delete_user(&ids[2]).await;
    members.retain(|m| *m != HOSTILE_NAMES[2]);
    assert_eq!(
        t.expect_group("Hostile"),
        group_view("Hostile", &members),
        "group {g}"
    );
    assert_eq!(t.user(HOSTILE_NAMES[2]), None);

    // Renamed to names that start with '#' or a space, or end with a space.
    rename_hostile(t, &ids[0], renamed, "#Doe, Jane", &mut members).await;
    rename_hostile(t, &ids[0], "#Doe, Jane", " Doe, Jane", &mut members).await;
    rename_hostile(t, &ids[0], " Doe, Jane", "Jane Doe ", &mut members).await;
}

/// Renames the user `id` (`old`, the first user's manager, a member of "Hostile") to
/// `new`, and checks the entry, the manager reference and the group followed.
async fn rename_hostile(
    t: &mut Tut,
    id: &str,
    old: &str,
    new: &'static str,
    members: &mut Vec<&'static str>,
) {
    t.send(
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(&patch(
            json!([{"op": "Replace", "path": "userName", "value": new}]),
        )),
        200,
    )
    .await;
    assert_eq!(t.user(old), None, "{old:?} renamed to {new:?}");
    assert_eq!(
        t.user(new),
        Some(minimal_view(new, "h0@example.com")),
        "{old:?} renamed to {new:?}; the target holds {:#?}",
        t.users()
    );
    assert_eq!(
        t.expect_user(HOSTILE_NAMES[1]).manager.as_deref(),
        Some(new),
        "the manager reference after renaming {old:?} to {new:?}"
    );
    members.retain(|m| *m != old);
    members.push(new);
    assert_eq!(
        t.expect_group("Hostile"),
        group_view("Hostile", members),
        "the group after renaming {old:?} to {new:?}"
    );
}

/// userNames SCIM tells apart (its uniqueness ignores case only) but a directory's
/// `caseIgnoreMatch` does not: spaces at the ends are insignificant and runs of spaces
/// count as one, so all of these name the same DN as "john doe".
const SAME_NAME_TO_LDAP: &[&str] = &["john  doe", " john doe", "john doe "];

async fn creating_a_user_never_takes_over_another_users_entry(t: &mut Tut) {
    t.create_user(user_doc("john doe", "John", "Doe", "j1@example.com"))
        .await;
    let first = full_view("john doe", "John", "Doe", "j1@example.com");
    for (i, name) in SAME_NAME_TO_LDAP.iter().enumerate() {
        let mail = format!("j{}@example.com", i + 2);
        // The target may refuse the user (400) or keep it apart (201); never merge them.
        let r = t
            .daemon
            .post("/Users", &minimal_user(name, &mail).to_string())
            .await;
        t.settled().await;
        assert!(
            matches!(r.status, 201 | 400),
            "create {name:?}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            t.user("john doe"),
            Some(first.clone()),
            "after creating {name:?} (answered {}): the first user's entry is untouched; \
             the target holds {:#?}",
            r.status,
            t.users()
        );
        if r.status == 201 {
            assert_eq!(
                t.user(name),
                Some(minimal_view(name, &mail)),
                "{name:?} was accepted, so it has an entry of its own"
            );
            t.delete_user(&id_of(&r)).await;
            assert_eq!(
                t.user("john doe"),
                Some(first.clone()),
                "deleting {name:?} leaves the first user's entry"
            );
        }
        assert_eq!(t.users(), vec![first.clone()]);
    }
}

async fn creating_a_group_never_takes_over_another_groups_entry(t: &mut Tut) {
    let a = t.create_user(minimal_user("ann", "ann@example.com")).await;
    let b = t.create_user(minimal_user("ben", "ben@example.com")).await;
    t.create_group("team a", &[&a]).await;
    let first = group_view("team a", &["ann"]);
    for name in ["team  a", " team a", "team a "] {
        let doc =
            json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": [{"value": b}]});
        let r = t.daemon.post("/Groups", &doc.to_string()).await;
        t.settled().await;
        assert!(
            matches!(r.status, 201 | 400),
            "create {name:?}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            t.group("team a"),
            Some(first.clone()),
            "after creating {name:?} (answered {}): the first group's entry is untouched; \
             the target holds {:#?}",
            r.status,
            t.groups()
        );
        if r.status == 201 {
            assert_eq!(
                t.group(name),
                Some(group_view(name, &["ben"])),
                "{name:?} was accepted, so it has an entry of its own"
            );
            t.delete_group(&id_of(&r)).await;
        }
        assert_eq!(t.groups(), vec![first.clone()]);
    }
}

async fn renaming_a_user_never_takes_over_another_users_entry(t: &mut Tut) {
    t.create_user(user_doc("john doe", "John", "Doe", "j1@example.com"))
        .await;
    let first = full_view("john doe", "John", "Doe", "j1@example.com");
    let zed = t.create_user(minimal_user("zed", "zed@example.com")).await;
    let mut current = "zed";
    let names = SAME_NAME_TO_LDAP.iter();
    for name in names {
        // Refused (400) or renamed apart (200); never merged, and delivery goes on (a
        // record stuck pending fails the barrier).
        let r = t
            .daemon
            .patch(
                &format!("/Users/{zed}"),
                &patch(json!([{"op": "Replace", "path": "userName", "value": name}])).to_string(),
            )
            .await;
        t.settled().await;
        assert!(
            matches!(r.status, 200 | 400),
            "rename {current:?} to {name:?}: {} {}",
            r.status,
            r.text
        );
        assert_eq!(
            t.user("john doe"),
            Some(first.clone()),
            "after renaming {current:?} to {name:?} (answered {}): the first user's entry \
             is untouched; the target holds {:#?}",
            r.status,
            t.users()
        );
        if r.status == 200 {
            current = name;
        }
        assert_eq!(
            t.user(current),
            Some(minimal_view(current, "zed@example.com")),
            "the renamed (or refused) user keeps its own entry"
        );
        assert_eq!(t.user_count(), 2, "{:#?}", t.users());
    }
    // Later writes still land.
    t.create_user(minimal_user("after", "after@example.com"))
        .await;
    assert_eq!(
        t.user("after"),
        Some(minimal_view("after", "after@example.com"))
    );
}

/// One `#[tokio::test]` per scenario and target: `contract::sqlite::<scenario>`,
/// `contract::ldap::<scenario>`, `contract::ds389::<scenario>` and
/// `contract::samba::<scenario>`.
macro_rules! contract {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(&mut super::TargetUnderTest::sqlite()).await;
                }
            )*
        }
        mod ldap {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(&mut super::TargetUnderTest::ldap()).await;
                }
            )*
        }
        mod ds389 {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(&mut super::TargetUnderTest::ds389()).await;
                }
            )*
        }
        // Named `samba`: nextest runs `::samba::` tests one at a time (fixed ports).
        mod samba {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $scenario() {
                    super::$scenario(&mut super::TargetUnderTest::samba()).await;
                }
            )*
        }
    };
}

contract!(
    create_user_writes_one_entry_with_mapped_attributes,
    put_replaces_attributes_and_clears_the_ones_left_out,
    entra_patch_replace_add_and_remove_change_attributes,
    renaming_a_user_keeps_the_same_entry_under_the_new_name,
    creating_a_group_with_members_writes_the_members,
    patching_group_members_adds_and_removes_only_the_listed_ones,
    renaming_a_member_keeps_it_in_its_groups,
    renaming_a_group_keeps_its_members,
    deleting_a_user_removes_it_and_its_memberships,
    deleting_a_group_removes_it_and_leaves_its_members,
    manager_reference_is_written_once_both_exist_and_follows_the_manager,
    replaying_the_same_request_changes_nothing,
    restarting_the_daemon_keeps_the_state_and_new_writes_still_land,
    a_rejected_value_leaves_nothing_in_the_target,
    hostile_user_names_round_trip_literally,
    creating_a_user_never_takes_over_another_users_entry,
    creating_a_group_never_takes_over_another_groups_entry,
    renaming_a_user_never_takes_over_another_users_entry,
);

#[test]
fn ldif_is_parsed_with_base64_values() {
    let entries = parse_ldif(
        "dn: uid=a,ou=people,dc=example,dc=com\nuid: a\ncn: A\ncn: B\n\n\
         dn:: dWlkPVpvw6ssb3U9cGVvcGxl\nuid:: IHNwYWNlZCA=\n",
    );
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].values("CN"), vec!["A", "B"]);
    assert_eq!(entries[1].dn, "uid=Zoë,ou=people");
    assert_eq!(entries[1].one("uid").as_deref(), Some(" spaced "));
}
