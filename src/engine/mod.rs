//! The resource engine: the one place that orders the steps of a write.
//!
//! load current state → check preconditions → apply POST/PUT/PATCH (pure `scim` code) →
//! validate (schema, uniqueness, member references) → commit in one store transaction.
//! Every write runs inside the store's single write transaction, so two requests never
//! interleave on one resource and a failing request changes nothing. Handlers call only
//! this module; they never touch the store.

use std::sync::Arc;

use serde_json::{Map, Value, json};

pub mod delivery;

use crate::journal::record::Op;
use crate::scim::error::ScimError;
use crate::scim::patch;
use crate::scim::resource::{fold, normalize_resource, validate};
use crate::scim::schema::{ENTERPRISE_URN, ResourceKind};
use crate::store::{ListQuery, NewRecord, Reader, Store, StoreError, Stored, WriteTx, etag};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Scim(#[from] ScimError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a worker task failed: {0}")]
    Task(String),
}

/// Who asks for a change: the name of the bearer token, the request id the logs carry,
/// and the client's address. All three go into the journal record.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    /// The endpoint the change came in on (its journal records name it).
    pub endpoint: String,
    pub request_id: Option<String>,
    pub client: Option<String>,
}

impl Actor {
    /// An operator tool acting without a request (`journal replay`, tests).
    pub fn tool(name: &str) -> Actor {
        Actor {
            name: name.into(),
            endpoint: DEFAULT_ENDPOINT.into(),
            request_id: None,
            client: None,
        }
    }
}

/// The endpoint (tenant) name journal records carry; one endpoint per daemon for now.
pub const DEFAULT_ENDPOINT: &str = "default";

/// Journals one change in the write transaction that makes it.
fn journal(
    tx: &WriteTx<'_>,
    actor: &Actor,
    op: Op,
    before: Option<&Stored>,
    after: Option<&Stored>,
    time: &str,
    delivery: &str,
) -> Result<Option<u64>, EngineError> {
    let Some(subject) = after.or(before) else {
        return Ok(None);
    };
    let (record, _) = tx.journal_append(
        NewRecord {
            time: time.to_string(),
            endpoint: actor.endpoint.clone(),
            actor: actor.name.clone(),
            client: actor.client.clone(),
            request_id: actor.request_id.clone(),
            op,
            kind: subject.kind,
            id: subject.id.clone(),
            version_before: before.map(|b| b.version),
            version_after: after.map(|a| a.version),
            image: Value::Object(subject.doc.clone()),
        },
        delivery,
    )?;
    Ok(Some(record.seq))
}

/// A resource as read, with the groups a user belongs to (the read-only `groups`).
#[derive(Debug, Clone)]
pub struct Resource {
    pub stored: Stored,
    pub groups: Vec<(String, Option<String>)>,
}

/// What a write produced.
#[derive(Debug, Clone)]
pub struct Written {
    pub resource: Resource,
    /// False when the request changed nothing (no new version was written).
    pub changed: bool,
    /// The journal record of the change itself (not of changes it caused elsewhere).
    pub seq: Option<u64>,
    /// The resource before the change, to revert to if the target rejects it.
    pub before: Option<Stored>,
}

/// How long a write waits for the target's verdict before answering with the record
/// still pending (the target is slow or down; delivery continues in the background).
pub const DELIVERY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Engine {
    store: Arc<Store>,
    delivery: Option<Arc<delivery::Delivery>>,
    /// Answer 503 instead of 2xx when a write's delivery cannot complete now.
    sync_delivery: bool,
}

fn now() -> String {
    crate::journal::timestamp(time::OffsetDateTime::now_utc())
}

/// Strips the server-owned parts of a stored document, leaving what clients write.
fn client_part(doc: &Map<String, Value>) -> Map<String, Value> {
    let mut out = doc.clone();
    for key in ["id", "meta", "schemas"] {
        out.remove(key);
    }
    out
}

/// Adds `id`, `schemas` and `meta` (all but `location`, which depends on the request).
fn finalize(
    kind: ResourceKind,
    id: &str,
    version: i64,
    created: &str,
    modified: &str,
    mut doc: Map<String, Value>,
) -> Stored {
    let mut schemas = vec![Value::String(kind.schema_urn().into())];
    if doc.contains_key(ENTERPRISE_URN) {
        schemas.push(Value::String(ENTERPRISE_URN.into()));
    }
    doc.insert("schemas".into(), Value::Array(schemas));
    doc.insert("id".into(), Value::String(id.into()));
    doc.insert(
        "meta".into(),
        json!({
            "resourceType": kind.name(),
            "created": created,
            "lastModified": modified,
            "version": etag(version),
        }),
    );
    Stored {
        kind,
        id: id.into(),
        version,
        created: created.into(),
        last_modified: modified.into(),
        doc,
    }
}

/// `If-Match` (RFC 7232 §3.1, weak comparison as SCIM uses weak tags).
fn check_if_match(if_match: Option<&str>, current: &Stored) -> Result<(), ScimError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    if etag_matches(header, &current.etag()) {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(format!(
            "If-Match {header} does not match the current version {}",
            current.etag()
        )))
    }
}

/// Weak comparison of an `If-Match` / `If-None-Match` list (or `*`) with an entity tag.
pub fn etag_matches(header: &str, current: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || strip(t) == strip(current))
}

fn not_found(kind: ResourceKind, id: &str) -> ScimError {
    ScimError::not_found(format!("{} {id} not found", kind.name()))
}

fn check_unique(
    r: &Reader<'_>,
    kind: ResourceKind,
    doc: &Map<String, Value>,
    own_id: Option<&str>,
) -> Result<(), EngineError> {
    let attr = kind.unique_attr();
    let value = doc.get(attr).and_then(Value::as_str).unwrap_or_default();
    match r.id_by_unique_key(kind, &fold(value))? {
        Some(other) if Some(other.as_str()) != own_id => Err(ScimError::uniqueness(format!(
            "{attr} '{value}' is already taken by another {}",
            kind.name()
        ))
        .into()),
        _ => Ok(()),
    }
}

/// Checks a group's member references and records each member's type; drops duplicates.
/// Members the group already had (`before`) were checked when they were added, so only
/// new ids cost a lookup: adding k members to a large group is O(k) queries.
fn resolve_members(
    r: &Reader<'_>,
    group_id: &str,
    doc: &mut Map<String, Value>,
    before: Option<&Stored>,
) -> Result<(), EngineError> {
    let known: std::collections::HashMap<String, String> = before
        .and_then(|b| b.doc.get("members"))
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|x| {
                    Some((
                        x.get("value")?.as_str()?.to_string(),
                        x.get("type")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let Some(Value::Array(members)) = doc.remove("members") else {
        return Ok(());
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(members.len());
    for mut member in members {
        let Some(obj) = member.as_object_mut() else {
            continue;
        };
        let Some(id) = obj.get("value").and_then(Value::as_str).map(str::to_string) else {
            return Err(ScimError::invalid_value(
                "members: every member needs a 'value' (the member's id)",
            )
            .into());
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        if id == group_id {
            return Err(ScimError::invalid_value(format!(
                "members: a group cannot be a member of itself ('{id}')"
            ))
            .into());
        }
        obj.remove("$ref");
        if let Some(kind) = known.get(&id) {
            obj.insert("type".into(), Value::String(kind.clone()));
            out.push(member);
            continue;
        }
        let Some(kind) = r.kind_of(&id)? else {
            return Err(ScimError::invalid_value(format!(
                "members: '{id}' is not the id of an existing User or Group"
            ))
            .into());
        };
        if kind == ResourceKind::Group && r.group_reaches(&id, group_id)? {
            return Err(ScimError::invalid_value(format!(
                "members: group '{id}' already contains this group; nesting it here would make a cycle"
            ))
            .into());
        }
        obj.insert("type".into(), Value::String(kind.name().into()));
        out.push(member);
    }
    if !out.is_empty() {
        doc.insert("members".into(), Value::Array(out));
    }
    Ok(())
}

impl Engine {
    pub fn new(store: Arc<Store>) -> Engine {
        Engine {
            store,
            delivery: None,
            sync_delivery: false,
        }
    }

    /// Delivers every accepted change to a target, through the journal.
    pub fn with_delivery(mut self, delivery: Arc<delivery::Delivery>, sync: bool) -> Engine {
        self.delivery = Some(delivery);
        self.sync_delivery = sync;
        self
    }

    pub fn delivery(&self) -> Option<&Arc<delivery::Delivery>> {
        self.delivery.as_ref()
    }

    /// The delivery state new journal records start in.
    fn delivery_state(&self) -> &'static str {
        if self.delivery.is_some() {
            "pending"
        } else {
            "none"
        }
    }

    /// Waits for the target's verdict on a write; on rejection, reverts it and answers
    /// 400 with the target's diagnostic (DESIGN invariant 6).
    async fn settle(
        &self,
        kind: ResourceKind,
        id: &str,
        written: Written,
        actor: &Actor,
    ) -> Result<Written, EngineError> {
        let (Some(d), Some(seq)) = (&self.delivery, written.seq) else {
            return Ok(written);
        };
        d.notify();
        match d.wait(seq, DELIVERY_WAIT).await {
            Some(crate::target::Outcome::Rejected(detail)) => {
                self.revert(
                    kind,
                    id,
                    written.before.clone(),
                    written.changed.then_some(written.resource.stored.version),
                    actor,
                )
                .await?;
                Err(ScimError::invalid_value(format!(
                    "the target rejected the change: {detail}; the resource was left as it was"
                ))
                .into())
            }
            None if self.sync_delivery => Err(ScimError::unavailable(
                "the target cannot be written right now; the change is kept and will be delivered, retry later to confirm",
            )
            .into()),
            _ => Ok(written),
        }
    }

    /// Puts a resource back as it was before a rejected change, as a new journaled change
    /// (so the state still equals a replay of the journal).
    async fn revert(
        &self,
        kind: ResourceKind,
        id: &str,
        before: Option<Stored>,
        after_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        let id = id.to_string();
        let actor = actor.clone();
        let delivery = self.delivery_state();
        let seq = self
            .write(move |tx| {
                let r = tx.reader();
                let current = r.get(kind, &id)?;
                let t = now();
                match (before, current) {
                    // A rejected create: the resource goes again.
                    (None, Some(cur)) if Some(cur.version) == after_version => {
                        tx.delete(&id)?;
                        journal(tx, &actor, Op::Delete, Some(&cur), None, &t, delivery)
                    }
                    // A rejected update: the old content comes back, as a new version.
                    (Some(b), Some(cur)) if Some(cur.version) == after_version => {
                        let restored = finalize(
                            kind,
                            &id,
                            cur.version + 1,
                            &cur.created,
                            &t,
                            client_part(&b.doc),
                        );
                        tx.update(&restored, &cur, &actor.name)?;
                        journal(
                            tx,
                            &actor,
                            Op::Replace,
                            Some(&cur),
                            Some(&restored),
                            &t,
                            delivery,
                        )
                    }
                    // A rejected delete: the resource is restored.
                    (Some(b), None) if after_version.is_none() => {
                        let restored = finalize(
                            kind,
                            &id,
                            b.version + 1,
                            &b.created,
                            &t,
                            client_part(&b.doc),
                        );
                        tx.insert(&restored, &actor.name)?;
                        journal(tx, &actor, Op::Create, None, Some(&restored), &t, delivery)
                    }
                    // Changed again meanwhile: the newer change stands.
                    _ => Ok(None),
                }
            })
            .await?;
        if let (Some(d), Some(_)) = (&self.delivery, seq) {
            d.notify();
        }
        Ok(())
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
    }

    fn with_groups(r: &Reader<'_>, stored: Stored) -> Result<Resource, StoreError> {
        let groups = if stored.kind == ResourceKind::User {
            r.groups_of(&stored.id)?
        } else {
            Vec::new()
        };
        Ok(Resource { stored, groups })
    }

    pub async fn get(&self, kind: ResourceKind, id: &str) -> Result<Resource, EngineError> {
        let id = id.to_string();
        self.blocking(move |store| {
            let found = store.read(|r| {
                r.get(kind, &id)?
                    .map(|s| Self::with_groups(r, s))
                    .transpose()
            })?;
            found.ok_or_else(|| not_found(kind, &id).into())
        })
        .await
    }

    pub async fn list(&self, query: ListQuery) -> Result<(usize, Vec<Resource>), EngineError> {
        self.blocking(move |store| {
            Ok(store.read(|r| {
                let (total, page) = r.list(&query)?;
                let page = page
                    .into_iter()
                    .map(|s| Self::with_groups(r, s))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((total, page))
            })?)
        })
        .await
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, EngineError> + Send + 'static,
    ) -> Result<T, EngineError> {
        self.store.write(f).await
    }

    fn reread(tx: &WriteTx<'_>, stored: Stored) -> Result<Resource, EngineError> {
        Ok(Self::with_groups(&tx.reader(), stored)?)
    }

    /// POST: creates a resource with a server-assigned id.
    pub async fn create(
        &self,
        kind: ResourceKind,
        body: Value,
        actor: &Actor,
    ) -> Result<Written, EngineError> {
        let mut doc = normalize_resource(kind, &body)?;
        validate(kind, &doc)?;
        let actor_c = actor.clone();
        let delivery = self.delivery_state();
        let written = self
            .write(move |tx| {
                let actor = actor_c;
                let r = tx.reader();
                check_unique(&r, kind, &doc, None)?;
                let id = uuid::Uuid::new_v4().to_string();
                if kind == ResourceKind::Group {
                    resolve_members(&r, &id, &mut doc, None)?;
                }
                let t = now();
                let stored = finalize(kind, &id, 1, &t, &t, doc);
                tx.insert(&stored, &actor.name)?;
                let seq = journal(tx, &actor, Op::Create, None, Some(&stored), &t, delivery)?;
                Ok(Written {
                    resource: Self::reread(tx, stored)?,
                    changed: true,
                    seq,
                    before: None,
                })
            })
            .await?;
        let id = written.resource.stored.id.clone();
        self.settle(kind, &id, written, actor).await
    }

    /// PUT: replaces every client-writable attribute.
    pub async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: Value,
        if_match: Option<String>,
        actor: &Actor,
    ) -> Result<Written, EngineError> {
        let doc = normalize_resource(kind, &body)?;
        validate(kind, &doc)?;
        self.update_with(kind, id, if_match, actor, Op::Replace, move |_| Ok(doc))
            .await
    }

    /// PATCH: applies RFC 7644 operations atomically.
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: Value,
        if_match: Option<String>,
        actor: &Actor,
    ) -> Result<Written, EngineError> {
        let ops = patch::parse_request(&body)?;
        self.update_with(kind, id, if_match, actor, Op::Patch, move |current| {
            let doc = patch::apply(kind, current, &ops)?;
            validate(kind, &doc)?;
            Ok(doc)
        })
        .await
    }

    async fn update_with(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<String>,
        actor: &Actor,
        op: Op,
        change: impl FnOnce(&Map<String, Value>) -> Result<Map<String, Value>, ScimError>
        + Send
        + 'static,
    ) -> Result<Written, EngineError> {
        let id_c = id.to_string();
        let actor_c = actor.clone();
        let delivery = self.delivery_state();
        let written = self
            .write(move |tx| {
                let (id, actor) = (id_c, actor_c);
                let r = tx.reader();
                let before = r.get(kind, &id)?.ok_or_else(|| not_found(kind, &id))?;
                check_if_match(if_match.as_deref(), &before)?;
                let current = client_part(&before.doc);
                let mut doc = change(&current)?;
                check_unique(&r, kind, &doc, Some(&id))?;
                if kind == ResourceKind::Group {
                    resolve_members(&r, &id, &mut doc, Some(&before))?;
                }
                if doc == current {
                    return Ok(Written {
                        resource: Self::reread(tx, before)?,
                        changed: false,
                        seq: None,
                        before: None,
                    });
                }
                let t = now();
                let after = finalize(kind, &id, before.version + 1, &before.created, &t, doc);
                tx.update(&after, &before, &actor.name)?;
                let seq = journal(tx, &actor, op, Some(&before), Some(&after), &t, delivery)?;
                Ok(Written {
                    resource: Self::reread(tx, after)?,
                    changed: true,
                    seq,
                    before: Some(before),
                })
            })
            .await?;
        self.settle(kind, id, written, actor).await
    }

    /// DELETE: removes the resource and its memberships in every group.
    pub async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<String>,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        let id_c = id.to_string();
        let actor_c = actor.clone();
        let delivery = self.delivery_state();
        let (seq, before) = self
            .write(move |tx| {
                let (id, actor) = (id_c, actor_c);
                let r = tx.reader();
                let before = r.get(kind, &id)?.ok_or_else(|| not_found(kind, &id))?;
                check_if_match(if_match.as_deref(), &before)?;
                let t = now();
                for (group_id, _) in r.groups_of(&id)? {
                    let Some(group) = r.get(ResourceKind::Group, &group_id)? else {
                        continue;
                    };
                    let mut doc = client_part(&group.doc);
                    if let Some(Value::Array(members)) = doc.get_mut("members") {
                        members.retain(|m| {
                            m.get("value").and_then(Value::as_str) != Some(id.as_str())
                        });
                        if members.is_empty() {
                            doc.remove("members");
                        }
                    }
                    let after = finalize(
                        ResourceKind::Group,
                        &group_id,
                        group.version + 1,
                        &group.created,
                        &t,
                        doc,
                    );
                    tx.update(&after, &group, &actor.name)?;
                    journal(
                        tx,
                        &actor,
                        Op::Patch,
                        Some(&group),
                        Some(&after),
                        &t,
                        delivery,
                    )?;
                }
                if kind == ResourceKind::User {
                    // Referential integrity for `manager`, as for group members: the users
                    // this one managed lose the reference (journaled like any change).
                    for managed_id in r.users_managed_by(&id)? {
                        let Some(managed) = r.get(ResourceKind::User, &managed_id)? else {
                            continue;
                        };
                        let mut doc = client_part(&managed.doc);
                        if let Some(Value::Object(ext)) = doc.get_mut(ENTERPRISE_URN) {
                            ext.remove("manager");
                            if ext.is_empty() {
                                doc.remove(ENTERPRISE_URN);
                            }
                        }
                        let after = finalize(
                            ResourceKind::User,
                            &managed_id,
                            managed.version + 1,
                            &managed.created,
                            &t,
                            doc,
                        );
                        tx.update(&after, &managed, &actor.name)?;
                        journal(
                            tx,
                            &actor,
                            Op::Patch,
                            Some(&managed),
                            Some(&after),
                            &t,
                            delivery,
                        )?;
                    }
                }
                tx.delete(&id)?;
                let seq = journal(tx, &actor, Op::Delete, Some(&before), None, &t, delivery)?;
                Ok((seq, before))
            })
            .await?;
        let resource = Resource {
            stored: before.clone(),
            groups: Vec::new(),
        };
        let written = Written {
            resource,
            changed: false,
            seq,
            before: Some(before),
        };
        self.settle(kind, id, written, actor).await.map(|_| ())
    }
}
