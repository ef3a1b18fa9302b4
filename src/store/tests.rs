//! State store specification: durability-relevant behaviour and index use.

use super::*;
use crate::scim::filter::parse_filter;
use serde_json::{Value, json};

fn user(id: &str, user_name: &str, seq: i64) -> Stored {
    let doc = json!({
        "id": id, "userName": user_name, "externalId": format!("ext-{seq}"),
        "schemas": [crate::scim::schema::USER_URN],
        "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00.000Z", "lastModified": "2026-01-01T00:00:00.000Z", "version": etag(1)}
    });
    Stored {
        kind: ResourceKind::User,
        id: id.into(),
        version: 1,
        created: "2026-01-01T00:00:00.000Z".into(),
        last_modified: "2026-01-01T00:00:00.000Z".into(),
        doc: doc.as_object().cloned().expect("object"),
    }
}

fn query(filter: &str) -> ListQuery {
    ListQuery {
        kind: Some(ResourceKind::User),
        filter: Some(parse_filter(filter).expect("parses")),
        sort_by: None,
        descending: false,
        start_index: 1,
        count: 100,
    }
}

#[test]
fn username_equality_with_100000_users_is_an_index_lookup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    store
        .write_blocking(move |tx| -> Result<(), StoreError> {
            for i in 0..100_000 {
                tx.insert(
                    &user(&format!("id-{i}"), &format!("User{i}@Example.com"), i),
                    "test",
                )?;
            }
            Ok(())
        })
        .expect("bulk insert");
    let q = query(r#"userName eq "user77777@example.COM""#);
    let plan = store.explain_list(&q).expect("explains");
    assert!(
        plan.contains("INDEX resources_unique_key (kind=? AND unique_key=?)"),
        "expected an index lookup, got:\n{plan}"
    );
    assert!(
        !plan.contains("SCAN"),
        "expected no table scan, got:\n{plan}"
    );
    let (total, found) = store.list(&q).expect("lists");
    assert_eq!(total, 1);
    assert_eq!(found[0].id, "id-77777");

    let plan = store
        .explain_list(&query(r#"externalId eq "ext-5""#))
        .expect("explains");
    assert!(
        plan.contains("INDEX resources_external_id (kind=? AND external_id=?)"),
        "{plan}"
    );
}

#[test]
fn non_indexed_filters_are_evaluated_by_scim_match() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    store
        .write_blocking(move |tx| -> Result<(), StoreError> {
            for i in 0..10 {
                tx.insert(&user(&format!("id-{i}"), &format!("u{i}"), i), "test")?;
            }
            Ok(())
        })
        .expect("insert");
    let (total, page) = store
        .list(&ListQuery {
            count: 2,
            start_index: 2,
            ..query(r#"userName sw "U" and not (userName eq "u0")"#)
        })
        .expect("lists");
    assert_eq!(total, 9);
    assert_eq!(
        page.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["id-2", "id-3"]
    );
}

#[test]
fn unique_index_refuses_a_duplicate_username_in_any_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    store
        .write_blocking(move |tx| tx.insert(&user("a", "Alice", 1), "t"))
        .expect("first");
    let err = store
        .write_blocking(move |tx| tx.insert(&user("b", "ALICE", 2), "t"))
        .expect_err("duplicate");
    assert!(matches!(err, StoreError::Duplicate { .. }), "{err}");
}

#[test]
fn resources_survive_reopening_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = user("a", "Alice", 1);
    {
        let store = Store::open(dir.path()).expect("opens");
        store
            .write_blocking({
                let o = original.clone();
                move |tx| tx.insert(&o, "t")
            })
            .expect("insert");
    }
    let store = Store::open(dir.path()).expect("reopens");
    assert_eq!(
        store.get(ResourceKind::User, "a").expect("reads"),
        Some(original)
    );
}

#[test]
fn a_failed_write_transaction_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    let result: Result<(), StoreError> = store.write_blocking(move |tx| {
        tx.insert(&user("a", "Alice", 1), "t")?;
        Err(StoreError::Corrupt {
            id: "x".into(),
            detail: "injected".into(),
        })
    });
    assert!(result.is_err());
    assert_eq!(store.get(ResourceKind::User, "a").expect("reads"), None);
}

fn record(i: u64) -> NewRecord {
    let u = user(&format!("id-{i}"), &format!("u{i}"), i as i64);
    NewRecord {
        time: format!("2026-01-01T00:00:{:02}.000Z", i % 60),
        endpoint: "default".into(),
        actor: "test".into(),
        client: None,
        request_id: None,
        op: crate::journal::record::Op::Create,
        kind: ResourceKind::User,
        id: u.id.clone(),
        version_before: None,
        version_after: Some(1),
        image: Value::Object(u.doc),
        member_delta: None,
    }
}

fn append(store: &Store, n: u64, delivery: &'static str) {
    store
        .write_blocking(move |tx| -> Result<(), StoreError> {
            for i in 0..n {
                tx.journal_append(record(i), delivery)?;
            }
            Ok(())
        })
        .expect("append");
}

#[test]
fn the_commit_listener_gets_the_pending_records_of_committed_jobs_only_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    let told: Arc<Mutex<Vec<u64>>> = Arc::default();
    let sink = told.clone();
    store.on_commit(move |records| {
        sink.lock()
            .expect("not poisoned")
            .extend(records.iter().map(|r| r.seq));
    });
    append(&store, 2, "pending");
    append(&store, 1, "none");
    // A job that appends and then fails rolls back alone: its record is never told.
    let failed = store.write_blocking(|tx| -> Result<(), StoreError> {
        tx.journal_append(record(9), "pending")?;
        Err(StoreError::Journal("refused after appending".into()))
    });
    assert!(failed.is_err());
    append(&store, 1, "pending");
    assert_eq!(*told.lock().expect("not poisoned"), [1, 2, 4]);
    let stored: Vec<u64> = store
        .read(|r| r.journal_pending(10))
        .expect("pending")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(stored, [1, 2, 4], "what was told is what the journal holds");
}

#[test]
fn under_continuous_writes_background_checkpoints_keep_the_log_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    store
        .checkpoint_in_background(std::time::Duration::from_millis(20))
        .expect("starts the checkpoints");
    // 3,000 commits of a record each write about 40 MB of log frames: without restarts
    // the log would hold all of them (a passive checkpoint never catches up).
    for i in 0..3000 {
        store
            .write_blocking(move |tx| -> Result<(), StoreError> {
                tx.journal_append(record(i), "none")?;
                Ok(())
            })
            .expect("append");
    }
    let wal = std::fs::metadata(dir.path().join("state.db-wal"))
        .expect("the log exists")
        .len();
    assert!(
        wal <= crate::wal::JOURNAL_SIZE_LIMIT as u64,
        "the log grew to {wal} bytes"
    );
}

#[test]
fn pending_deliveries_survive_a_restart_and_resume_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("opens");
        append(&store, 5, "pending");
        store
            .write_blocking(|tx| {
                tx.journal_mark(1, "applied", None)?;
                tx.journal_mark(2, "rejected", Some("objectClass violation"))
            })
            .expect("mark");
    }
    let store = Store::open(dir.path()).expect("reopens");
    let pending: Vec<u64> = store
        .read(|r| r.journal_pending(10))
        .expect("pending")
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(pending, [3, 4, 5]);
    let rejected = store
        .read(|r| r.journal_get(2))
        .expect("get")
        .expect("record 2");
    assert_eq!(rejected.delivery, "rejected");
    assert_eq!(
        rejected.delivery_detail.as_deref(),
        Some("objectClass violation")
    );
}

#[test]
fn retention_archives_then_drops_but_never_a_pending_record_and_the_chain_still_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    append(&store, 10, "none");
    store
        .write_blocking(|tx| tx.journal_mark(4, "pending", None))
        .expect("mark");
    let cfg = crate::config::JournalConfig {
        max_records: Some(2),
        ..Default::default()
    };
    let archive_dir = dir.path().join("archive");
    let summary =
        crate::journal::ops::archive(&store, &cfg, &archive_dir, time::OffsetDateTime::now_utc())
            .expect("archives");
    assert_eq!(
        summary.dropped, 3,
        "records 1..3 go; 4 is pending and everything after it stays"
    );
    assert_eq!(summary.base, 3);
    assert_eq!(summary.files, [archive_dir.join("journal-1-3.jsonl.gz")]);
    let report = store.read(|r| r.journal_verify()).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.first, report.records), (Some(4), 7));

    // Once 4 is delivered, the count limit applies in full.
    store
        .write_blocking(|tx| tx.journal_mark(4, "applied", None))
        .expect("mark");
    let summary =
        crate::journal::ops::archive(&store, &cfg, &archive_dir, time::OffsetDateTime::now_utc())
            .expect("archives");
    assert_eq!(summary.dropped, 5);
    let report = store.read(|r| r.journal_verify()).expect("verify");
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.first, report.records), (Some(9), 2));

    // The archives verify on their own and chain onto each other.
    for name in ["journal-1-3.jsonl.gz", "journal-4-8.jsonl.gz"] {
        let input = crate::journal::archive::open(&archive_dir.join(name)).expect("opens");
        let report = crate::journal::file::verify(input, false).expect("reads");
        assert!(report.damage.is_none(), "{name}: {:?}", report.damage);
    }
}

#[test]
fn retention_by_age_drops_only_older_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    append(&store, 6, "none");
    let cfg = crate::config::JournalConfig {
        max_age: Some(std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    // "now" is 00:01:03, so records stamped before 00:00:03 (seq 1..3) are older than 60 s.
    let now = time::macros::datetime!(2026-01-01 00:01:03 UTC);
    let summary =
        crate::journal::ops::archive(&store, &cfg, &dir.path().join("a"), now).expect("archives");
    assert_eq!(summary.dropped, 3);
}

#[test]
fn migration_4_moves_the_members_of_stored_groups_into_the_member_table_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // A state directory as schema 3 left it: members inside the group's body.
        let mut conn = Connection::open(dir.path().join("state.db")).expect("open");
        let tx = conn.transaction().expect("tx");
        tx.execute_batch(MIGRATION_1).expect("1");
        tx.execute_batch(MIGRATION_2).expect("2");
        tx.execute("INSERT INTO meta (key, value) VALUES ('origin', 'o')", [])
            .expect("origin");
        tx.execute_batch(&format!(
            "CREATE INDEX resources_manager ON resources({MANAGER_EXPR}) WHERE kind = 'User';"
        ))
        .expect("3");
        let body = json!({"id": "g", "displayName": "G", "schemas": [], "meta": {},
            "members": [{"value": "b", "type": "User"}, {"value": "a", "type": "User", "display": "A"}]});
        tx.execute(
            "INSERT INTO resources (kind, id, unique_key, version, created, last_modified, last_actor, body) \
             VALUES ('Group', 'g', 'g', 1, 't', 't', 'x', ?1)",
            [body.to_string()],
        )
        .expect("group");
        tx.execute_batch(
            "INSERT INTO members VALUES ('g', 'a'), ('g', 'b'); PRAGMA user_version = 3;",
        )
        .expect("rows");
        tx.commit().expect("commit");
    }
    let store = Store::open(dir.path()).expect("migrates");
    let group = store
        .get(ResourceKind::Group, "g")
        .expect("reads")
        .expect("there");
    assert_eq!(
        group.doc["members"],
        json!([{"type": "User", "value": "b"}, {"display": "A", "type": "User", "value": "a"}])
    );
    let bare = store
        .read(|r| r.get_without_members(ResourceKind::Group, "g"))
        .expect("reads")
        .expect("there");
    assert!(!bare.doc.contains_key("members"));
    assert_eq!(
        store.groups_of("a").expect("groups"),
        vec![("g".to_string(), Some("G".to_string()))]
    );
}

#[test]
fn a_member_delta_touches_only_the_rows_it_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    let mut g = user("g", "ignored", 1);
    g.kind = ResourceKind::Group;
    g.doc = json!({"displayName": "G", "members": [{"value": "a"}, {"value": "b"}]})
        .as_object()
        .cloned()
        .expect("object");
    store
        .write_blocking(move |tx| {
            tx.insert(&g, "t")?;
            tx.apply_member_delta(
                "g",
                &crate::journal::record::MemberDelta {
                    added: vec![json!({"value": "c", "type": "User"}), json!({"value": "a"})],
                    removed: vec!["b".into(), "zz".into()],
                },
            )
        })
        .expect("write");
    let ids: Vec<String> = store
        .read(|r| r.members_of("g"))
        .expect("members")
        .iter()
        .map(|m| m["value"].as_str().expect("value").to_string())
        .collect();
    assert_eq!(
        ids,
        ["a", "c"],
        "a stays where it was, c comes last, b goes"
    );
}

#[test]
fn the_startup_check_finds_an_edited_text_a_rehashed_one_a_wrong_copy_and_a_gap() {
    use crate::journal::record::{Damage, hash_text};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    append(&store, 6, "none");
    let intact = store.verify_at_start().expect("verify");
    assert!(intact.is_intact(), "{intact:?}");
    assert_eq!((intact.records, intact.last_intact), (6, Some(6)));
    let raw = Connection::open(dir.path().join("state.db")).expect("open");
    let damage = || store.verify_at_start().expect("verify").damage;
    let text_of = |seq: i64| -> String {
        raw.query_row("SELECT record FROM journal WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("text")
    };
    let original = text_of(4);
    let edited = original.replace("\"u3\"", "\"EDITED\"");
    assert_ne!(edited, original);

    // The text edited, its hash not: the hash no longer matches.
    raw.execute("UPDATE journal SET record = ?1 WHERE seq = 4", [&edited])
        .expect("edit");
    assert!(
        matches!(damage(), Some(Damage::BadHash { seq: 4, .. })),
        "{:?}",
        damage()
    );
    // Its hash recomputed too: the next record's link breaks.
    raw.execute(
        "UPDATE journal SET hash = ?1 WHERE seq = 4",
        [hash_text(&edited)],
    )
    .expect("rehash");
    assert!(
        matches!(damage(), Some(Damage::BrokenLink { seq: 5, .. })),
        "{:?}",
        damage()
    );
    raw.execute(
        "UPDATE journal SET record = ?1, hash = ?2 WHERE seq = 4",
        [&original, &hash_text(&original)],
    )
    .expect("restore");
    assert!(damage().is_none());

    // A copied column that disagrees with its record.
    raw.execute_batch("UPDATE journal SET actor = 'someone else' WHERE seq = 2")
        .expect("edit");
    assert!(
        matches!(damage(), Some(Damage::Mismatch { seq: 2, .. })),
        "{:?}",
        damage()
    );
    raw.execute_batch("UPDATE journal SET actor = 'test' WHERE seq = 2")
        .expect("restore");

    // A record removed: a gap.
    raw.execute_batch("DELETE FROM journal WHERE seq = 5")
        .expect("delete");
    assert!(
        matches!(
            damage(),
            Some(Damage::Gap {
                expected: 5,
                found: 6
            })
        ),
        "{:?}",
        damage()
    );
}

#[test]
fn a_bulk_load_gives_back_every_index_even_when_it_fails_and_an_open_rebuilds_lost_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let indexes = |conn: &Connection| -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    };
    let store = Store::open(dir.path()).expect("opens");
    assert!(store.is_empty().expect("empty"));
    let raw = Connection::open(dir.path().join("state.db")).expect("open");
    let all = indexes(&raw);
    assert_eq!(all.len(), 6, "{all:?}");
    let during = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = during.clone();
    let failed: Result<(), StoreError> = store.bulk_load(move |tx| {
        *seen.lock().expect("not poisoned") = indexes(tx.tx);
        seen.lock().expect("not poisoned").push(journal_mode(tx.tx));
        Err(StoreError::Journal("injected".into()))
    });
    assert!(matches!(failed, Err(StoreError::Journal(_))), "{failed:?}");
    assert_eq!(
        *during.lock().expect("not poisoned"),
        ["journal_pending", "resources_unique_key", "wal"],
        "only the unique index and the (empty) pending one stay during the load; another \
         connection holds the database, so the load stays in WAL mode"
    );
    assert_eq!(indexes(&raw), all, "still there after a failed load");
    drop(store);
    raw.execute_batch("DROP INDEX journal_pending; DROP INDEX members_by_member;")
        .expect("drop");
    let _store = Store::open(dir.path()).expect("reopens");
    assert_eq!(indexes(&raw), all, "an open builds the missing ones");
}

/// The journal mode `conn` sees its database in.
fn journal_mode(conn: &Connection) -> String {
    conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode")
}

#[test]
fn a_bulk_load_writes_in_rollback_journal_mode_and_leaves_the_store_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    // A read first, as a replay does: its pooled connection must not keep the load in WAL mode.
    assert!(store.is_empty().expect("empty"));
    let during = store
        .bulk_load(|tx| -> Result<String, StoreError> {
            for i in 0..1000 {
                tx.insert(
                    &user(&format!("u{i}"), &format!("user{i}@example.com"), i),
                    "test",
                )?;
            }
            Ok(journal_mode(tx.tx))
        })
        .expect("loads");
    assert_eq!(
        during, "delete",
        "the load writes each page once, into the database file"
    );
    let raw = Connection::open(dir.path().join("state.db")).expect("open");
    assert_eq!(journal_mode(&raw), "wal", "every later open sees WAL mode");
    assert!(
        !dir.path().join("state.db-journal").exists(),
        "committed: no journal left"
    );
    let count: i64 = raw
        .query_row("SELECT count(*) FROM resources", [], |r| r.get(0))
        .expect("count");
    assert_eq!(count, 1000);
    // The writer is back in WAL mode, at synchronous=FULL, and goes on writing.
    let (mode, synchronous) = store
        .write_blocking(|tx| -> Result<(String, i64), StoreError> {
            tx.insert(&user("after", "after@example.com", 1000), "test")?;
            Ok((
                journal_mode(tx.tx),
                tx.tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
            ))
        })
        .expect("writes");
    assert_eq!((mode.as_str(), synchronous), ("wal", 2));
    assert!(
        store
            .get(ResourceKind::User, "after")
            .expect("reads")
            .is_some()
    );
}

#[test]
fn a_failed_bulk_load_leaves_an_empty_store_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    let failed: Result<(), StoreError> = store.bulk_load(|tx| {
        for i in 0..1000 {
            tx.insert(
                &user(&format!("u{i}"), &format!("user{i}@example.com"), i),
                "test",
            )?;
        }
        Err(StoreError::Journal("injected".into()))
    });
    assert!(matches!(failed, Err(StoreError::Journal(_))), "{failed:?}");
    assert!(store.is_empty().expect("reads"));
    let raw = Connection::open(dir.path().join("state.db")).expect("open");
    assert_eq!(journal_mode(&raw), "wal");
    assert!(!dir.path().join("state.db-journal").exists());
    drop(store);
    assert!(
        Store::open(dir.path())
            .expect("reopens")
            .is_empty()
            .expect("reads")
    );
}

#[test]
fn a_crash_part_way_through_a_bulk_load_rolls_back_to_the_empty_store_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crashed = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    let empty_size = std::fs::metadata(dir.path().join("state.db"))
        .expect("size")
        .len();
    let (from, to) = (dir.path().to_path_buf(), crashed.path().to_path_buf());
    let copied: Result<(), StoreError> = store.bulk_load(move |tx| {
        // A small cache: pages spill into the database file before the commit.
        tx.tx.pragma_update(None, "cache_size", 20)?;
        for i in 0..3000 {
            tx.insert(
                &user(&format!("u{i}"), &format!("user{i}@example.com"), i),
                "test",
            )?;
        }
        // What a crash now leaves on disk (the files as the OS holds them).
        for name in ["state.db", "state.db-journal"] {
            std::fs::copy(from.join(name), to.join(name))
                .map_err(|e| StoreError::Journal(format!("copying {name}: {e}")))?;
        }
        Err(StoreError::Journal("stop here".into()))
    });
    assert!(
        matches!(copied, Err(StoreError::Journal(ref e)) if e == "stop here"),
        "{copied:?}"
    );
    let spilled = std::fs::metadata(crashed.path().join("state.db"))
        .expect("size")
        .len();
    assert!(
        spilled > empty_size,
        "the load wrote into the database file: {spilled} bytes"
    );
    let reopened = Store::open(crashed.path()).expect("the hot journal rolls back");
    assert!(reopened.is_empty().expect("reads"), "nothing of the load");
    let raw = Connection::open(crashed.path().join("state.db")).expect("open");
    assert_eq!(journal_mode(&raw), "wal");
    let check: String = raw
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    assert!(!crashed.path().join("state.db-journal").exists());
}

#[test]
fn pages_walk_every_resource_of_a_kind_in_list_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("opens");
    for i in 0..5 {
        store
            .write_blocking(move |tx| {
                tx.insert(&user(&format!("u{i}"), &format!("user{i}"), i), "t")
            })
            .expect("inserted");
    }
    let pages: Vec<Vec<String>> = store
        .pages(ResourceKind::User, 2)
        .map(|p| p.expect("a page").into_iter().map(|s| s.id).collect())
        .collect();
    assert_eq!(pages, [vec!["u0", "u1"], vec!["u2", "u3"], vec!["u4"]]);
    assert_eq!(store.pages(ResourceKind::Group, 2).count(), 0);
}
