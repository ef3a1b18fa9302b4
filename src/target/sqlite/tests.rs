//! SQLite target specification: converging, archiving, memberships, errors, migration,
//! concurrency with reading applications, quoting. Every test uses a real database file.

use super::*;
use crate::target::{ColumnType, Members};

const JAN: &str = "2026-01-01T00:00:00.000Z";
const FEB: &str = "2026-02-01T00:00:00.000Z";
const MAR: &str = "2026-03-01T00:00:00.000Z";

impl SqliteTarget {
    /// Rows inserted, updated or deleted through this target since it was opened.
    fn total_changes(&self) -> u64 {
        self.conn().total_changes()
    }

    fn set_busy_timeout(&self, timeout: Duration) {
        self.conn()
            .busy_timeout(timeout)
            .expect("sets the busy timeout");
    }
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

fn users_table() -> TableSpec {
    TableSpec {
        name: "app_users".into(),
        key_column: "scim_id".into(),
        columns: vec![
            ColumnSpec {
                unique: true,
                ..column("user_name", ColumnType::Text)
            },
            ColumnSpec {
                unique: true,
                ..column("email", ColumnType::Text)
            },
            column("display_name", ColumnType::Text),
            column("active", ColumnType::Boolean),
            ColumnSpec {
                create_only: true,
                ..column("created_at", ColumnType::Timestamp)
            },
            ColumnSpec {
                keep_when_empty: true,
                dn_reference: false,
                ..column("phone", ColumnType::Text)
            },
        ],
        archive_column: Some("archived_at".into()),
    }
}

fn groups_table() -> TableSpec {
    TableSpec {
        name: "app_groups".into(),
        key_column: "scim_id".into(),
        columns: vec![column("name", ColumnType::Text)],
        archive_column: Some("archived_at".into()),
    }
}

fn schema() -> TargetSchema {
    TargetSchema {
        users: Some(users_table()),
        groups: Some(groups_table()),
        memberships: Some(MembershipSpec {
            name: "app_members".into(),
            group_column: "group_id".into(),
            member_column: "member_id".into(),
            origin_column: "origin".into(),
        }),
    }
}

fn db(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("target.db")
}

fn open(dir: &tempfile::TempDir) -> SqliteTarget {
    SqliteTarget::open(&db(dir), schema()).expect("opens")
}

/// Another application's connection to the same database.
fn reader(dir: &tempfile::TempDir) -> Connection {
    Connection::open(db(dir)).expect("a second connection opens")
}

fn text(s: &str) -> Cell {
    Cell::Text(s.into())
}

/// The change the mapping makes for a user, with the default group `everyone`.
fn user(key: &str, name: &str) -> Change {
    Change::Upsert {
        disabled: false,
        kind: ResourceKind::User,
        key: key.into(),
        dn: None,
        cells: vec![
            ("user_name".into(), text(name)),
            ("email".into(), text(&format!("{name}@example.com"))),
            ("display_name".into(), text(&name.to_uppercase())),
            ("active".into(), Cell::Integer(1)),
            ("created_at".into(), text(JAN)),
            ("phone".into(), Cell::Null),
        ],
        members: None,
        default_groups: vec!["everyone".into()],
        password: None,
    }
}

/// `change` with the cell of `column` replaced (or added).
fn with(mut change: Change, column: &str, cell: Cell) -> Change {
    if let Change::Upsert { cells, .. } | Change::Archive { cells, .. } = &mut change {
        match cells.iter_mut().find(|(n, _)| n == column) {
            Some(slot) => slot.1 = cell,
            None => cells.push((column.into(), cell)),
        }
    }
    change
}

fn group(key: &str, name: &str, members: &[&str]) -> Change {
    Change::Upsert {
        disabled: false,
        kind: ResourceKind::Group,
        key: key.into(),
        dn: None,
        cells: vec![("name".into(), text(name))],
        members: Some(Members::All(
            members.iter().map(|m| m.to_string()).collect(),
        )),
        default_groups: Vec::new(),
        password: None,
    }
}

fn archive(kind: ResourceKind, key: &str, at: &str) -> Change {
    Change::Archive {
        dn: None,
        kind,
        key: key.into(),
        cells: match kind {
            ResourceKind::User => vec![("active".into(), Cell::Integer(0))],
            ResourceKind::Group => Vec::new(),
        },
        at: at.into(),
    }
}

fn remove(kind: ResourceKind, key: &str) -> Change {
    Change::Remove {
        kind,
        key: key.into(),
    }
}

fn cell(target: &SqliteTarget, kind: ResourceKind, key: &str, column: &str) -> Cell {
    let row = target
        .read_row(kind, key)
        .expect("reads")
        .expect("the row exists");
    row.into_iter()
        .find(|(name, _)| name == column)
        .map(|(_, c)| c)
        .expect("the column exists")
}

fn memberships(target: &SqliteTarget) -> Vec<(String, String, String)> {
    target.memberships().expect("reads memberships")
}

fn membership(group: &str, member: &str, origin: &str) -> (String, String, String) {
    (group.into(), member.into(), origin.into())
}

fn applied(target: &SqliteTarget, change: &Change) {
    assert_eq!(target.apply(change), Outcome::Applied, "{change:?}");
}

/// The declared columns of a table, as another application sees them.
fn db_columns(conn: &Connection, table: &str) -> Vec<(String, String)> {
    let mut stmt = conn
        .prepare("SELECT name, type FROM pragma_table_info(?1)")
        .expect("prepares");
    stmt.query_map([table], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("queries")
        .collect::<Result<_, _>>()
        .expect("reads")
}

/// Every table and index with its DDL (NULL for SQLite's own primary key indexes).
fn schema_objects(conn: &Connection) -> Vec<(String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master ORDER BY name")
        .expect("prepares");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("queries")
        .collect::<Result<_, _>>()
        .expect("reads")
}

fn destructive(result: Result<SqliteTarget, TargetError>) -> String {
    match result {
        Err(TargetError::Destructive(message)) => message,
        Err(other) => panic!("expected a refused migration, got {other:?}"),
        Ok(_) => panic!("expected a refused migration, the target opened"),
    }
}

// --- the tables ------------------------------------------------------------------------

#[test]
fn the_target_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<SqliteTarget>();
}

#[test]
fn open_creates_the_documented_tables_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _target = open(&dir);
    let conn = reader(&dir);
    let sql = |name: &str| -> String {
        conn.query_row(
            "SELECT sql FROM sqlite_master WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .expect("the object exists")
    };
    assert_eq!(
        sql("app_users"),
        r#"CREATE TABLE "app_users" ("scim_id" TEXT PRIMARY KEY NOT NULL, "user_name" TEXT, "email" TEXT, "display_name" TEXT, "active" INTEGER, "created_at" TEXT, "phone" TEXT, "archived_at" TEXT)"#
    );
    assert_eq!(
        sql("app_users_email_unique"),
        r#"CREATE UNIQUE INDEX "app_users_email_unique" ON "app_users" ("email")"#
    );
    assert_eq!(
        sql("app_members"),
        r#"CREATE TABLE "app_members" ("group_id" TEXT NOT NULL, "member_id" TEXT NOT NULL, "origin" TEXT NOT NULL, PRIMARY KEY ("group_id", "member_id"))"#
    );
    assert_eq!(
        sql("app_members_member_id_index"),
        r#"CREATE INDEX "app_members_member_id_index" ON "app_members" ("member_id")"#
    );
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("reads the journal mode");
    assert_eq!(mode, "wal");
}

#[test]
fn a_background_thread_checkpoints_commits_into_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    // The database file alone, read without its write-ahead log, shows the row once a
    // checkpoint has copied it there: nothing else writes after the commit.
    let in_main_file = || -> bool {
        let uri = format!("file:{}?immutable=1", db(&dir).display());
        let conn = Connection::open_with_flags(
            uri,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )
        .expect("opens the database file read-only");
        conn.query_row(
            "SELECT count(*) FROM app_users WHERE scim_id = 'u1'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0)
            == 1
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !in_main_file() {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reopening_with_the_same_schema_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    drop(target);
    let before = schema_objects(&reader(&dir));
    let target = open(&dir);
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "user_name"),
        text("ada")
    );
    assert_eq!(schema_objects(&reader(&dir)), before);
}

#[test]
fn a_schema_with_an_empty_name_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = schema();
    if let Some(users) = &mut bad.users {
        users.columns[2].name = String::new();
    }
    match SqliteTarget::open(&db(&dir), bad) {
        Err(TargetError::Open { detail, .. }) => {
            assert!(
                detail.contains("a column name of table app_users is empty"),
                "{detail}"
            )
        }
        other => panic!("expected an invalid schema, got {:?}", other.err()),
    }
    let mut bad = schema();
    if let Some(m) = &mut bad.memberships {
        m.origin_column = " ".into();
    }
    assert!(matches!(
        SqliteTarget::open(&db(&dir), bad),
        Err(TargetError::Open { .. })
    ));
}

#[test]
fn a_table_named_like_the_delivery_cursor_table_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = schema();
    if let Some(groups) = &mut bad.groups {
        groups.name = "SCIM_BRIDGE_DELIVERY".into();
    }
    match SqliteTarget::open(&db(&dir), bad) {
        Err(TargetError::Open { detail, .. }) => {
            assert!(detail.contains("delivery cursor table"), "{detail}")
        }
        other => panic!("expected an invalid schema, got {:?}", other.err()),
    }
}

#[test]
fn a_schema_naming_a_column_twice_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad = schema();
    if let Some(users) = &mut bad.users {
        users.columns.push(column("EMAIL", ColumnType::Text));
    }
    match SqliteTarget::open(&db(&dir), bad) {
        Err(TargetError::Open { detail, .. }) => {
            assert!(detail.contains("'EMAIL' is named twice"), "{detail}")
        }
        other => panic!("expected an invalid schema, got {:?}", other.err()),
    }
}

// --- converging ------------------------------------------------------------------------

#[test]
fn an_upsert_of_a_new_user_inserts_every_cell_and_its_default_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    assert_eq!(
        target.read_row(ResourceKind::User, "u1").expect("reads"),
        Some(vec![
            ("scim_id".into(), text("u1")),
            ("user_name".into(), text("ada")),
            ("email".into(), text("ada@example.com")),
            ("display_name".into(), text("ADA")),
            ("active".into(), Cell::Integer(1)),
            ("created_at".into(), text(JAN)),
            ("phone".into(), Cell::Null),
            ("archived_at".into(), Cell::Null),
        ])
    );
    assert_eq!(
        memberships(&target),
        vec![membership("everyone", "u1", "default")]
    );
}

#[test]
fn applying_the_same_upsert_twice_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    let change = user("u1", "ada");
    applied(&target, &change);
    applied(&target, &group("g1", "staff", &["u1"]));
    let row = target.read_row(ResourceKind::User, "u1").expect("reads");
    let changes = target.total_changes();
    applied(&target, &change);
    applied(&target, &group("g1", "staff", &["u1"]));
    assert_eq!(
        target.total_changes(),
        changes,
        "no row was inserted, updated or deleted"
    );
    assert_eq!(
        target.read_row(ResourceKind::User, "u1").expect("reads"),
        row
    );
}

#[test]
fn values_the_column_affinity_converts_still_compare_equal() {
    // An INTEGER column stores the text "1" as 1, a TEXT column the integer 7 as "7":
    // comparing as SQLite stores them keeps converging idempotent.
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    let change = with(
        with(user("u1", "ada"), "active", text("1")),
        "display_name",
        Cell::Integer(7),
    );
    applied(&target, &change);
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "active"),
        Cell::Integer(1)
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "display_name"),
        text("7")
    );
    let changes = target.total_changes();
    applied(&target, &change);
    assert_eq!(target.total_changes(), changes);
}

#[test]
fn an_update_writes_only_the_columns_that_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    // A reading application's triggers record which columns each UPDATE sets.
    let conn = reader(&dir);
    conn.execute_batch("CREATE TABLE audit (col TEXT)")
        .expect("creates the audit table");
    for col in [
        "user_name",
        "email",
        "display_name",
        "active",
        "created_at",
        "phone",
        "archived_at",
    ] {
        conn.execute_batch(&format!(
            "CREATE TRIGGER audit_{col} AFTER UPDATE OF {col} ON app_users BEGIN INSERT INTO audit VALUES ('{col}'); END"
        ))
        .expect("creates a trigger");
    }
    applied(
        &target,
        &with(user("u1", "ada"), "display_name", text("Ada Lovelace")),
    );
    let mut stmt = conn.prepare("SELECT col FROM audit").expect("prepares");
    let set: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("queries")
        .collect::<Result<_, _>>()
        .expect("reads");
    assert_eq!(set, vec!["display_name".to_string()]);
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "display_name"),
        text("Ada Lovelace")
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "email"),
        text("ada@example.com")
    );
}

#[test]
fn create_only_columns_are_written_on_insert_and_kept_on_update() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    applied(
        &target,
        &with(
            with(user("u1", "ada"), "created_at", text(MAR)),
            "active",
            Cell::Integer(0),
        ),
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "created_at"),
        text(JAN)
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "active"),
        Cell::Integer(0)
    );
}

#[test]
fn an_absent_value_keeps_a_keep_when_empty_column_and_clears_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &with(user("u1", "ada"), "phone", text("555-0100")));
    let absent = with(
        with(user("u1", "ada"), "phone", Cell::Null),
        "display_name",
        Cell::Null,
    );
    applied(&target, &absent);
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "phone"),
        text("555-0100")
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "display_name"),
        Cell::Null
    );
    applied(&target, &with(user("u1", "ada"), "phone", text("555-0199")));
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "phone"),
        text("555-0199")
    );
}

#[test]
fn nothing_is_applied_without_touching_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    let changes = target.total_changes();
    applied(&target, &Change::Nothing);
    assert_eq!(target.total_changes(), changes);
}

// --- archiving and purging -------------------------------------------------------------

#[test]
fn archiving_sets_the_cells_and_time_and_drops_memberships_and_an_upsert_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    applied(&target, &group("g1", "staff", &["u1"]));
    applied(&target, &archive(ResourceKind::User, "u1", FEB));
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "archived_at"),
        text(FEB)
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "active"),
        Cell::Integer(0)
    );
    assert_eq!(memberships(&target), Vec::new());

    applied(&target, &user("u1", "ada"));
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "archived_at"),
        Cell::Null
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "active"),
        Cell::Integer(1)
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "created_at"),
        text(JAN)
    );
    // The default group comes back with the user; the provider re-sends the others.
    assert_eq!(
        memberships(&target),
        vec![membership("everyone", "u1", "default")]
    );
}

#[test]
fn archiving_create_only_columns_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    let change = with(
        archive(ResourceKind::User, "u1", FEB),
        "created_at",
        text(MAR),
    );
    applied(&target, &change);
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "created_at"),
        text(JAN)
    );
}

#[test]
fn archiving_twice_keeps_the_first_archive_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    applied(&target, &archive(ResourceKind::User, "u1", FEB));
    let changes = target.total_changes();
    applied(&target, &archive(ResourceKind::User, "u1", MAR));
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "archived_at"),
        text(FEB)
    );
    assert_eq!(
        target.total_changes(),
        changes,
        "the second archive wrote nothing"
    );
    // An earlier time (a replayed record) moves the clock back, never forward.
    applied(&target, &archive(ResourceKind::User, "u1", JAN));
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "archived_at"),
        text(JAN)
    );
}

#[test]
fn archiving_a_missing_row_is_applied_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &archive(ResourceKind::User, "ghost", FEB));
    assert_eq!(
        target.read_row(ResourceKind::User, "ghost").expect("reads"),
        None
    );
    assert_eq!(target.total_changes(), 0);
}

#[test]
fn archiving_into_a_table_without_an_archive_column_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = schema();
    if let Some(groups) = &mut s.groups {
        groups.archive_column = None;
    }
    let target = SqliteTarget::open(&db(&dir), s).expect("opens");
    applied(&target, &group("g1", "staff", &[]));
    match target.apply(&archive(ResourceKind::Group, "g1", FEB)) {
        Outcome::Rejected(detail) => assert!(
            detail.contains("table app_groups has no archive column"),
            "{detail}"
        ),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn purge_removes_only_rows_archived_before_the_cutoff_with_their_memberships() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    for (key, name) in [("u1", "ada"), ("u2", "bob"), ("u3", "cy")] {
        applied(&target, &user(key, name));
    }
    applied(&target, &archive(ResourceKind::User, "u1", JAN));
    applied(&target, &archive(ResourceKind::User, "u2", MAR));
    // The provider may still list an archived user as a member.
    applied(&target, &group("g1", "staff", &["u1", "u2", "u3"]));

    assert_eq!(
        target
            .archived_before(ResourceKind::User, FEB)
            .expect("lists"),
        vec!["u1".to_string()]
    );
    assert_eq!(
        target
            .purge_archived(ResourceKind::User, FEB)
            .expect("purges"),
        vec!["u1".to_string()]
    );
    assert_eq!(
        target.read_row(ResourceKind::User, "u1").expect("reads"),
        None
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u2", "archived_at"),
        text(MAR)
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u3", "archived_at"),
        Cell::Null
    );
    assert_eq!(
        memberships(&target),
        vec![
            membership("everyone", "u3", "default"),
            membership("g1", "u2", "scim"),
            membership("g1", "u3", "scim"),
        ]
    );
    assert_eq!(
        target
            .purge_archived(ResourceKind::User, FEB)
            .expect("purges"),
        Vec::<String>::new()
    );
    assert_eq!(
        target
            .purge_archived(ResourceKind::Group, FEB)
            .expect("purges"),
        Vec::<String>::new()
    );
}

// --- memberships -----------------------------------------------------------------------

#[test]
fn a_groups_scim_members_converge_to_the_providers_list_and_default_rows_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    let with_default = |key: &str, name: &str| {
        let mut change = user(key, name);
        if let Change::Upsert { default_groups, .. } = &mut change {
            *default_groups = vec!["g1".into()];
        }
        change
    };
    applied(&target, &with_default("u3", "cy"));

    applied(&target, &group("g1", "staff", &["u1", "u2"]));
    assert_eq!(
        memberships(&target),
        vec![
            membership("g1", "u1", "scim"),
            membership("g1", "u2", "scim"),
            membership("g1", "u3", "default")
        ]
    );
    applied(&target, &group("g1", "staff", &["u2", "u4", "u4"]));
    assert_eq!(
        memberships(&target),
        vec![
            membership("g1", "u2", "scim"),
            membership("g1", "u3", "default"),
            membership("g1", "u4", "scim")
        ]
    );
    // A default member the provider also lists stays a default membership.
    applied(&target, &group("g1", "staff", &["u3"]));
    assert_eq!(
        memberships(&target),
        vec![membership("g1", "u3", "default")]
    );
    applied(&target, &group("g1", "staff", &[]));
    assert_eq!(
        memberships(&target),
        vec![membership("g1", "u3", "default")]
    );
}

#[test]
fn an_upsert_without_a_member_list_leaves_memberships_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &group("g1", "staff", &["u1"]));
    let mut rename = group("g1", "team", &[]);
    if let Change::Upsert { members, .. } = &mut rename {
        *members = None;
    }
    applied(&target, &rename);
    assert_eq!(
        cell(&target, ResourceKind::Group, "g1", "name"),
        text("team")
    );
    assert_eq!(memberships(&target), vec![membership("g1", "u1", "scim")]);
}

#[test]
fn remove_deletes_the_row_and_every_membership_it_takes_part_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    applied(&target, &user("u2", "bob"));
    applied(&target, &group("g1", "staff", &["u1", "u2"]));
    applied(&target, &group("g2", "all", &["g1", "u2"]));

    applied(&target, &remove(ResourceKind::User, "u1"));
    assert_eq!(
        target.read_row(ResourceKind::User, "u1").expect("reads"),
        None
    );
    assert_eq!(
        memberships(&target),
        vec![
            membership("everyone", "u2", "default"),
            membership("g1", "u2", "scim"),
            membership("g2", "g1", "scim"),
            membership("g2", "u2", "scim"),
        ]
    );
    applied(&target, &remove(ResourceKind::Group, "g1"));
    assert_eq!(
        target.read_row(ResourceKind::Group, "g1").expect("reads"),
        None
    );
    assert_eq!(
        memberships(&target),
        vec![
            membership("everyone", "u2", "default"),
            membership("g2", "u2", "scim")
        ]
    );
    let changes = target.total_changes();
    applied(&target, &remove(ResourceKind::Group, "g1"));
    applied(&target, &remove(ResourceKind::User, "never-there"));
    assert_eq!(target.total_changes(), changes);
}

// --- rejections and unavailability -----------------------------------------------------

#[test]
fn a_unique_violation_is_rejected_with_sqlites_message_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    let taken = with(user("u2", "bob"), "email", text("ada@example.com"));
    assert_eq!(
        target.apply(&taken),
        Outcome::Rejected("UNIQUE constraint failed: app_users.email".into())
    );
    assert_eq!(
        target.read_row(ResourceKind::User, "u2").expect("reads"),
        None
    );
    assert_eq!(
        memberships(&target),
        vec![membership("everyone", "u1", "default")]
    );

    applied(&target, &user("u2", "bob"));
    assert!(matches!(target.apply(&taken), Outcome::Rejected(_)));
    assert_eq!(
        cell(&target, ResourceKind::User, "u2", "email"),
        text("bob@example.com")
    );
}

#[test]
fn a_rejected_change_rolls_back_what_it_already_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &group("g1", "staff", &["u1"]));
    // A reading application refuses some memberships; the group row is written first.
    reader(&dir)
        .execute_batch(
            "CREATE TRIGGER no_boom BEFORE INSERT ON app_members WHEN NEW.member_id = 'boom'
             BEGIN SELECT RAISE(ABORT, 'boom is not welcome'); END",
        )
        .expect("creates the trigger");
    assert_eq!(
        target.apply(&group("g1", "team", &["u2", "boom"])),
        Outcome::Rejected("boom is not welcome".into())
    );
    assert_eq!(
        cell(&target, ResourceKind::Group, "g1", "name"),
        text("staff")
    );
    assert_eq!(memberships(&target), vec![membership("g1", "u1", "scim")]);
}

#[test]
fn a_cell_naming_an_unmapped_column_is_rejected_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    let bad = with(user("u1", "ada"), "nickname", text("countess"));
    match target.apply(&bad) {
        Outcome::Rejected(detail) => {
            assert_eq!(
                detail,
                "column 'nickname' is not a mapped column of table app_users"
            )
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(
        target.read_row(ResourceKind::User, "u1").expect("reads"),
        None
    );
    assert_eq!(memberships(&target), Vec::new());
    assert_eq!(target.total_changes(), 0);
}

#[test]
fn a_change_for_a_kind_without_a_table_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = SqliteTarget::open(
        &db(&dir),
        TargetSchema {
            users: Some(users_table()),
            ..TargetSchema::default()
        },
    )
    .expect("opens");
    assert!(matches!(
        target.apply(&group("g1", "staff", &[])),
        Outcome::Rejected(_)
    ));
    assert_eq!(
        target.read_row(ResourceKind::Group, "g1").expect("reads"),
        None
    );
    assert_eq!(target.memberships().expect("reads"), Vec::new());
}

#[test]
fn a_database_locked_by_another_writer_is_unavailable_until_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    target.set_busy_timeout(Duration::from_millis(50));
    let other = reader(&dir);
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("takes the write lock");
    match target.apply(&user("u1", "ada")) {
        Outcome::Unavailable(detail) => assert!(detail.contains("locked"), "{detail}"),
        outcome => panic!("expected unavailable, got {outcome:?}"),
    }
    other.execute_batch("COMMIT").expect("releases the lock");
    applied(&target, &user("u1", "ada"));
}

#[test]
fn a_delivery_round_records_its_last_record_as_the_endpoints_cursor_in_the_same_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    assert_eq!(target.delivered_through("default").expect("reads"), None);
    let round = [user("u1", "ada"), user("u2", "ada")];
    let outcomes = target.deliver("default", &round, &[7, 9]);
    assert_eq!(outcomes[0], Outcome::Applied);
    assert!(
        matches!(outcomes[1], Outcome::Rejected(_)),
        "a unique violation is a verdict too: {outcomes:?}"
    );
    assert_eq!(target.delivered_through("default").expect("reads"), Some(9));
    assert_eq!(target.delivered_through("other").expect("reads"), None);
    target.deliver("default", &[user("u3", "bob")], &[12]);
    assert_eq!(
        target.delivered_through("default").expect("reads"),
        Some(12)
    );
    let sync: i64 = target
        .conn()
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .expect("reads the setting");
    assert_eq!(
        sync, 2,
        "writes outside delivery rounds stay synchronous=FULL"
    );
}

#[test]
fn a_delivery_round_that_cannot_commit_leaves_the_cursor_where_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    target.deliver("default", &[user("u1", "ada")], &[3]);
    target.set_busy_timeout(Duration::from_millis(50));
    let other = reader(&dir);
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("takes the write lock");
    let outcomes = target.deliver("default", &[user("u2", "bob")], &[4]);
    assert!(
        matches!(outcomes[0], Outcome::Unavailable(_)),
        "{outcomes:?}"
    );
    other.execute_batch("COMMIT").expect("releases the lock");
    assert_eq!(target.delivered_through("default").expect("reads"), Some(3));
    assert_eq!(
        target.read_row(ResourceKind::User, "u2").expect("reads"),
        None
    );
}

#[test]
fn another_process_reading_does_not_block_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(&target, &user("u1", "ada"));
    let other = reader(&dir);
    let count = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM app_users", [], |r| r.get(0))
            .expect("counts")
    };
    other
        .execute_batch("BEGIN")
        .expect("begins a read transaction");
    assert_eq!(count(&other), 1);
    // Without WAL this write would wait for the reader, then give up as unavailable.
    let started = std::time::Instant::now();
    applied(&target, &user("u2", "bob"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the write did not wait for the reader"
    );
    assert_eq!(count(&other), 1, "the reader keeps its snapshot");
    other
        .execute_batch("COMMIT")
        .expect("ends the read transaction");
    assert_eq!(count(&other), 2);
}

// --- migration -------------------------------------------------------------------------

#[test]
fn a_new_column_is_added_with_its_unique_index_and_existing_rows_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    applied(&open(&dir), &user("u1", "ada"));
    let mut grown = schema();
    if let Some(users) = &mut grown.users {
        users.columns.push(ColumnSpec {
            unique: true,
            ..column("employee_no", ColumnType::Integer)
        });
    }
    let target = SqliteTarget::open(&db(&dir), grown).expect("opens with the new column");
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "user_name"),
        text("ada")
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "employee_no"),
        Cell::Null
    );
    applied(
        &target,
        &with(user("u1", "ada"), "employee_no", Cell::Integer(42)),
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "employee_no"),
        Cell::Integer(42)
    );
    assert!(matches!(
        target.apply(&with(user("u2", "bob"), "employee_no", Cell::Integer(42))),
        Outcome::Rejected(detail) if detail == "UNIQUE constraint failed: app_users.employee_no"
    ));
}

#[test]
fn a_removed_column_is_refused_and_the_database_is_left_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    applied(
        &open(&dir),
        &with(user("u1", "ada"), "phone", text("555-0100")),
    );
    let mut shrunk = schema();
    if let Some(users) = &mut shrunk.users {
        users.columns.retain(|c| c.name != "phone");
        // An additive change in the same mapping must not be applied either.
        users.columns.push(column("department", ColumnType::Text));
    }
    let message = destructive(SqliteTarget::open(&db(&dir), shrunk));
    assert_eq!(
        message,
        "table app_users: column 'phone' exists in the database but not in the mapping; removing it would lose \
         data — add it back to the mapping, or drop it yourself: ALTER TABLE \"app_users\" DROP COLUMN \"phone\""
    );
    let columns = db_columns(&reader(&dir), "app_users");
    assert!(columns.iter().any(|(name, _)| name == "phone"));
    assert!(!columns.iter().any(|(name, _)| name == "department"));
    let target = open(&dir);
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "phone"),
        text("555-0100")
    );
}

#[test]
fn a_type_change_is_refused_naming_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let mut retyped = schema();
    if let Some(users) = &mut retyped.users {
        users.columns[3].ty = ColumnType::Text; // active: boolean → text
    }
    if let Some(groups) = &mut retyped.groups {
        groups.columns[0].ty = ColumnType::Integer; // name: text → integer
    }
    let message = destructive(SqliteTarget::open(&db(&dir), retyped));
    assert!(
        message.contains(
            "table app_users: column 'active' is declared INTEGER in the database but TEXT in the mapping"
        ),
        "{message}"
    );
    assert!(message.contains("back to integer or boolean"), "{message}");
    assert!(
        message.contains("table app_groups: column 'name' is declared TEXT in the database but INTEGER in the mapping"),
        "{message}"
    );
}

#[test]
fn a_type_change_within_the_same_sql_type_is_not_a_migration() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let mut same = schema();
    if let Some(users) = &mut same.users {
        users.columns[3].ty = ColumnType::Integer; // active: boolean → integer, both INTEGER
        users.columns[4].ty = ColumnType::Text; // created_at: timestamp → text, both TEXT
    }
    assert!(SqliteTarget::open(&db(&dir), same).is_ok());
}

#[test]
fn a_different_key_column_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let mut rekeyed = schema();
    if let Some(users) = &mut rekeyed.users {
        users.key_column = "id".into();
    }
    let message = destructive(SqliteTarget::open(&db(&dir), rekeyed));
    assert!(
        message.starts_with(
            "table app_users: the key column is 'scim_id' in the database but 'id' in the mapping; \
             the key of existing rows cannot be changed in place — set the mapping's key back to 'scim_id'"
        ),
        "{message}"
    );
}

#[test]
fn a_column_no_longer_unique_loses_its_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(&dir));
    let mut relaxed = schema();
    if let Some(users) = &mut relaxed.users {
        users.columns[1].unique = false; // email
    }
    let target = SqliteTarget::open(&db(&dir), relaxed).expect("opens");
    let indexes: i64 = reader(&dir)
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = 'app_users_email_unique'",
            [],
            |r| r.get(0),
        )
        .expect("counts");
    assert_eq!(indexes, 0);
    applied(&target, &user("u1", "ada"));
    applied(
        &target,
        &with(user("u2", "bob"), "email", text("ada@example.com")),
    );
}

#[test]
fn a_new_unique_index_over_duplicates_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = open(&dir);
    applied(
        &target,
        &with(user("u1", "ada"), "display_name", text("Twin")),
    );
    applied(
        &target,
        &with(user("u2", "bob"), "display_name", text("Twin")),
    );
    drop(target);
    let mut stricter = schema();
    if let Some(users) = &mut stricter.users {
        users.columns[2].unique = true; // display_name
        users.columns.push(column("department", ColumnType::Text));
    }
    match SqliteTarget::open(&db(&dir), stricter) {
        Err(TargetError::Open { detail, .. }) => {
            assert!(
                detail.contains("column 'display_name' cannot be made unique"),
                "{detail}"
            )
        }
        other => panic!("expected a refused open, got {:?}", other.err()),
    }
    let columns = db_columns(&reader(&dir), "app_users");
    assert!(!columns.iter().any(|(name, _)| name == "department"));
}

// --- quoting ---------------------------------------------------------------------------

#[test]
fn names_with_spaces_and_quotes_are_quoted_as_identifiers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let odd = TargetSchema {
        users: Some(TableSpec {
            name: "app \"users\"; DROP TABLE x; --".into(),
            key_column: "scim id".into(),
            columns: vec![
                ColumnSpec {
                    unique: true,
                    ..column("e-mail \"primary\"", ColumnType::Text)
                },
                column("it's", ColumnType::Boolean),
            ],
            archive_column: Some("archived \"at\"".into()),
        }),
        groups: None,
        memberships: Some(MembershipSpec {
            name: "group members".into(),
            group_column: "the \"group\"".into(),
            member_column: "member id".into(),
            origin_column: "from".into(),
        }),
    };
    let target = SqliteTarget::open(&db(&dir), odd.clone()).expect("opens");
    let change = Change::Upsert {
        disabled: false,
        kind: ResourceKind::User,
        key: "u1".into(),
        dn: None,
        cells: vec![
            ("e-mail \"primary\"".into(), text("ada@example.com")),
            ("it's".into(), Cell::Integer(1)),
        ],
        members: None,
        default_groups: vec!["everyone".into()],
        password: None,
    };
    applied(&target, &change);
    applied(
        &target,
        &Change::Archive {
            dn: None,
            kind: ResourceKind::User,
            key: "u1".into(),
            cells: vec![("it's".into(), Cell::Integer(0))],
            at: FEB.into(),
        },
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "u1", "archived \"at\""),
        text(FEB)
    );
    applied(&target, &change);
    assert_eq!(
        target.read_row(ResourceKind::User, "u1").expect("reads"),
        Some(vec![
            ("scim id".into(), text("u1")),
            ("e-mail \"primary\"".into(), text("ada@example.com")),
            ("it's".into(), Cell::Integer(1)),
            ("archived \"at\"".into(), Cell::Null),
        ])
    );
    assert_eq!(
        memberships(&target),
        vec![membership("everyone", "u1", "default")]
    );
    drop(target);
    let target = SqliteTarget::open(&db(&dir), odd).expect("reopens without a migration");
    applied(&target, &change);
    let email: String = reader(&dir)
        .query_row(
            r#"SELECT "e-mail ""primary""" FROM "app ""users""; DROP TABLE x; --" WHERE "scim id" = 'u1'"#,
            [],
            |r| r.get(0),
        )
        .expect("another application reads the row");
    assert_eq!(email, "ada@example.com");
}

#[test]
fn changes_naming_their_columns_in_another_order_write_each_value_to_its_column() {
    // The statements are kept by set of columns (in the table's order); a change whose
    // cells come in another order must not reuse a statement with another binding.
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = open(&dir);
    applied(&target, &user("id-a", "alice"));
    let mut reversed = user("id-b", "bob");
    if let Change::Upsert { cells, .. } = &mut reversed {
        cells.reverse();
    }
    applied(&target, &reversed);
    let mut fewer = user("id-c", "carol");
    if let Change::Upsert { cells, .. } = &mut fewer {
        cells.retain(|(name, _)| name != "display_name");
    }
    applied(&target, &fewer);
    for (key, name) in [("id-a", "alice"), ("id-b", "bob"), ("id-c", "carol")] {
        let user = ResourceKind::User;
        assert_eq!(cell(&target, user, key, "user_name"), text(name));
        assert_eq!(
            cell(&target, user, key, "email"),
            text(&format!("{name}@example.com"))
        );
        assert_eq!(cell(&target, user, key, "active"), Cell::Integer(1));
    }
    assert_eq!(
        cell(&target, ResourceKind::User, "id-b", "display_name"),
        text("BOB")
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "id-c", "display_name"),
        Cell::Null
    );
    // Changed again, in the other order: only the differing column is updated.
    let mut renamed = with(user("id-b", "bob"), "display_name", text("Robert"));
    if let Change::Upsert { cells, .. } = &mut renamed {
        cells.reverse();
    }
    applied(&target, &renamed);
    assert_eq!(
        cell(&target, ResourceKind::User, "id-b", "display_name"),
        text("Robert")
    );
    assert_eq!(
        cell(&target, ResourceKind::User, "id-b", "user_name"),
        text("bob")
    );
}

#[test]
fn a_column_set_is_a_mask_only_in_the_tables_order() {
    let table = users_table();
    let spec = |name: &str| {
        table
            .columns
            .iter()
            .find(|c| c.name == name)
            .expect("a column of the table")
    };
    let (a, b) = (text("a"), text("b"));
    let in_order = [(spec("user_name"), &a), (spec("display_name"), &b)];
    assert_eq!(column_mask(&table, &in_order), Some(0b101));
    let reversed = [(spec("display_name"), &b), (spec("user_name"), &a)];
    assert_eq!(column_mask(&table, &reversed), None);
    assert_eq!(column_mask(&table, &[]), Some(0));
}
