//! State store specification: durability-relevant behaviour and index use.

use super::*;
use crate::scim::filter::parse_filter;
use serde_json::json;

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
