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

use crate::journal::record::{MemberDelta, Op};
use crate::scim::error::ScimError;
use crate::scim::resource::{fold, normalize_resource, validate};
use crate::scim::schema::{ENTERPRISE_URN, ResourceKind};
use crate::scim::{password, patch};
use crate::store::{ListQuery, NewRecord, Reader, Store, StoreError, Stored, WriteTx, etag};
use crate::target::Password;

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

/// Journals the changes of one write, in the write transaction that makes them.
struct Journal<'t, 'c> {
    tx: &'t WriteTx<'c>,
    actor: &'t Actor,
    /// The time every record of the write carries.
    time: String,
    /// The delivery state the records start in.
    delivery: &'static str,
}

impl<'t, 'c> Journal<'t, 'c> {
    fn new(tx: &'t WriteTx<'c>, actor: &'t Actor, delivery: &'static str) -> Self {
        Journal {
            tx,
            actor,
            time: now(),
            delivery,
        }
    }

    /// Journals a change with its complete image; returns its sequence number.
    fn record(
        &self,
        op: Op,
        before: Option<&Stored>,
        after: Option<&Stored>,
    ) -> Result<Option<u64>, EngineError> {
        self.append(op, before, after, None)
    }

    /// Journals a group's member delta (the image without members).
    fn delta(
        &self,
        before: &Stored,
        after: &Stored,
        delta: MemberDelta,
    ) -> Result<Option<u64>, EngineError> {
        self.append(Op::Patch, Some(before), Some(after), Some(delta))
    }

    fn append(
        &self,
        op: Op,
        before: Option<&Stored>,
        after: Option<&Stored>,
        member_delta: Option<MemberDelta>,
    ) -> Result<Option<u64>, EngineError> {
        let Some(subject) = after.or(before) else {
            return Ok(None);
        };
        let (seq, _) = self.tx.journal_append(
            NewRecord {
                time: self.time.clone(),
                endpoint: self.actor.endpoint.clone(),
                actor: self.actor.name.clone(),
                client: self.actor.client.clone(),
                request_id: self.actor.request_id.clone(),
                op,
                kind: subject.kind,
                id: subject.id.clone(),
                version_before: before.map(|b| b.version),
                version_after: after.map(|a| a.version),
                image: Value::Object(subject.doc.clone()),
                member_delta,
            },
            self.delivery,
        )?;
        Ok(Some(seq))
    }
}

/// What an update journals: its operation, and the password it sets, if any.
struct Edit {
    op: Op,
    password: Option<PasswordToSeal>,
}

/// A password on its way into the state store with its record.
struct PasswordToSeal {
    sealer: Arc<crate::passwords::Sealer>,
    password: Password,
}

impl PasswordToSeal {
    /// Keeps the password, sealed, beside journal record `seq` until it is delivered.
    fn keep(&self, tx: &WriteTx<'_>, seq: Option<u64>, id: &str) -> Result<(), EngineError> {
        let Some(seq) = seq else { return Ok(()) };
        let sealed = self
            .sealer
            .seal(seq, id, &self.password)
            .map_err(|e| EngineError::Task(e.to_string()))?;
        tx.secret_put(seq, &sealed)?;
        Ok(())
    }
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
    /// A group's member delta, when the change was one (`before` then has no members).
    pub delta: Option<MemberDelta>,
}

impl Written {
    /// A request that changed nothing: no new version, no record.
    fn unchanged(resource: Resource) -> Written {
        Written {
            resource,
            changed: false,
            seq: None,
            before: None,
            delta: None,
        }
    }
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
            return Err(not_itself(&id));
        }
        obj.remove("$ref");
        if let Some(kind) = known.get(&id) {
            obj.insert("type".into(), Value::String(kind.clone()));
            out.push(member);
            continue;
        }
        let kind = new_member_kind(r, group_id, &id)?;
        obj.insert("type".into(), Value::String(kind.name().into()));
        out.push(member);
    }
    if !out.is_empty() {
        doc.insert("members".into(), Value::Array(out));
    }
    Ok(())
}

fn not_itself(id: &str) -> EngineError {
    ScimError::invalid_value(format!(
        "members: a group cannot be a member of itself ('{id}')"
    ))
    .into()
}

/// The type of a resource about to become a member of `group_id`: it must exist, and a
/// group must not already contain `group_id` (nesting it would make a cycle).
fn new_member_kind(r: &Reader<'_>, group_id: &str, id: &str) -> Result<ResourceKind, EngineError> {
    let Some(kind) = r.kind_of(id)? else {
        return Err(ScimError::invalid_value(format!(
            "members: '{id}' is not the id of an existing User or Group"
        ))
        .into());
    };
    if kind == ResourceKind::Group && r.group_reaches(id, group_id)? {
        return Err(ScimError::invalid_value(format!(
            "members: group '{id}' already contains this group; nesting it here would make a cycle"
        ))
        .into());
    }
    Ok(kind)
}

/// The net member change of a group's member operations against its stored members,
/// checking each new member as `resolve_members` does: O(members named), whatever the
/// group's size.
fn net_delta(
    r: &Reader<'_>,
    group_id: &str,
    ops: Vec<patch::MemberOp>,
) -> Result<MemberDelta, EngineError> {
    use std::collections::{HashMap, HashSet};
    // Added members by id (None: added, then removed again by a later operation).
    let mut added: Vec<Option<Value>> = Vec::new();
    let mut added_at: HashMap<String, usize> = HashMap::new();
    // Removed ids, in order (a re-added one is taken out of the set, then of the order).
    let mut removed: Vec<String> = Vec::new();
    let mut removed_set: HashSet<String> = HashSet::new();
    for op in ops {
        match op {
            patch::MemberOp::Add(items) => {
                for mut member in items {
                    let Some(obj) = member.as_object_mut() else {
                        continue;
                    };
                    let Some(id) = obj.get("value").and_then(Value::as_str).map(str::to_string)
                    else {
                        continue;
                    };
                    if id == group_id {
                        return Err(not_itself(&id));
                    }
                    if removed_set.remove(&id) {
                        // Removed earlier in this request: it simply stays a member.
                        continue;
                    }
                    if added_at.get(&id).is_some_and(|&at| added[at].is_some())
                        || r.is_member(group_id, &id)?
                    {
                        continue;
                    }
                    let kind = new_member_kind(r, group_id, &id)?;
                    obj.remove("$ref");
                    obj.insert("type".into(), Value::String(kind.name().into()));
                    added_at.insert(id, added.len());
                    added.push(Some(member));
                }
            }
            patch::MemberOp::Remove(ids) => {
                for id in ids {
                    if let Some(at) = added_at.get(&id)
                        && added[*at].is_some()
                    {
                        added[*at] = None;
                        continue;
                    }
                    if !removed_set.contains(&id) && r.is_member(group_id, &id)? {
                        removed_set.insert(id.clone());
                        removed.push(id);
                    }
                }
            }
        }
    }
    removed.retain(|id| removed_set.remove(id));
    Ok(MemberDelta {
        added: added.into_iter().flatten().collect(),
        removed,
    })
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

    /// The password a request sets, sealed with the record when the mapping writes
    /// passwords; `None` when it sends none, or the mapping writes none (then it is
    /// dropped, as RFC 7643 allows a write-only attribute to be). Refused (400) when the
    /// mapping writes passwords over a connection without TLS.
    fn password_for(
        &self,
        kind: ResourceKind,
        sent: Option<String>,
    ) -> Result<Option<PasswordToSeal>, EngineError> {
        let Some(sent) = sent.filter(|_| kind == ResourceKind::User) else {
            return Ok(None);
        };
        let policy = self
            .delivery
            .as_ref()
            .map(|d| d.password_policy())
            .unwrap_or_default();
        match policy {
            delivery::PasswordPolicy::Ignore => Ok(None),
            delivery::PasswordPolicy::Refuse(reason) => {
                Err(ScimError::invalid_value(format!("password: not accepted: {reason}")).into())
            }
            delivery::PasswordPolicy::Deliver(sealer) => Ok(Some(PasswordToSeal {
                sealer,
                password: Password::new(sent),
            })),
        }
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
                self.revert(kind, id, &written, actor).await?;
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
        written: &Written,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        let id = id.to_string();
        let actor = actor.clone();
        let delivery = self.delivery_state();
        let before = written.before.clone();
        let after_version = written.changed.then_some(written.resource.stored.version);
        let delta = written.delta.clone();
        let seq = self
            .write(move |tx| {
                let r = tx.reader();
                let j = Journal::new(tx, &actor, delivery);
                let current = match delta {
                    Some(_) => r.get_without_members(kind, &id)?,
                    None => r.get(kind, &id)?,
                };
                match (before, current, delta) {
                    // A rejected member delta: the inverse delta, as a new version.
                    (Some(b), Some(cur), Some(delta)) if Some(cur.version) == after_version => {
                        let restored = finalize(
                            kind,
                            &id,
                            cur.version + 1,
                            &cur.created,
                            &j.time,
                            client_part(&b.doc),
                        );
                        let mut added = Vec::with_capacity(delta.removed.len());
                        for gone in &delta.removed {
                            // Still there to rejoin (it may have been deleted meanwhile).
                            if let Some(k) = r.kind_of(gone)? {
                                added.push(json!({"value": gone, "type": k.name()}));
                            }
                        }
                        let inverse = MemberDelta {
                            added,
                            removed: delta.added_ids().map(str::to_string).collect(),
                        };
                        tx.update_without_members(&restored, &actor.name)?;
                        tx.apply_member_delta(&id, &inverse)?;
                        j.delta(&cur, &restored, inverse)
                    }
                    // A rejected create: the resource goes again.
                    (None, Some(cur), _) if Some(cur.version) == after_version => {
                        tx.delete(&id)?;
                        j.record(Op::Delete, Some(&cur), None)
                    }
                    // A rejected update: the old content comes back, as a new version.
                    (Some(b), Some(cur), None) if Some(cur.version) == after_version => {
                        let restored = finalize(
                            kind,
                            &id,
                            cur.version + 1,
                            &cur.created,
                            &j.time,
                            client_part(&b.doc),
                        );
                        tx.update(&restored, &actor.name)?;
                        j.record(Op::Replace, Some(&cur), Some(&restored))
                    }
                    // A rejected delete: the resource is restored.
                    (Some(b), None, None) if after_version.is_none() => {
                        let restored = finalize(
                            kind,
                            &id,
                            b.version + 1,
                            &b.created,
                            &j.time,
                            client_part(&b.doc),
                        );
                        tx.insert(&restored, &actor.name)?;
                        j.record(Op::Create, None, Some(&restored))
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
        self.get_with(kind, id, true).await
    }

    /// A resource; a group with its `members` only when `members` is true (reading a
    /// large group without them costs nothing per member).
    pub async fn get_with(
        &self,
        kind: ResourceKind,
        id: &str,
        members: bool,
    ) -> Result<Resource, EngineError> {
        let id = id.to_string();
        self.blocking(move |store| {
            let found = store.read(|r| {
                let stored = if members {
                    r.get(kind, &id)?
                } else {
                    r.get_without_members(kind, &id)?
                };
                stored.map(|s| Self::with_groups(r, s)).transpose()
            })?;
            found.ok_or_else(|| not_found(kind, &id).into())
        })
        .await
    }

    pub async fn list(&self, query: ListQuery) -> Result<(usize, Vec<Resource>), EngineError> {
        self.list_with(query, true).await
    }

    /// A list query; groups come with their `members` only when `members` is true.
    pub async fn list_with(
        &self,
        query: ListQuery,
        members: bool,
    ) -> Result<(usize, Vec<Resource>), EngineError> {
        self.blocking(move |store| {
            Ok(store.read(|r| {
                let (total, page) = r.list_with(&query, members)?;
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
        let password = self.password_for(kind, password::from_body(&body)?)?;
        let actor_c = actor.clone();
        let delivery = self.delivery_state();
        let written = self
            .write(move |tx| {
                let actor = actor_c;
                let r = tx.reader();
                let j = Journal::new(tx, &actor, delivery);
                check_unique(&r, kind, &doc, None)?;
                // Time-ordered (RFC 9562 version 7): a new resource's id lands at the end
                // of the id indexes (state store, journal, target) instead of on a random
                // page, so a create rewrites fewer pages. It tells no more than `created`.
                let id = uuid::Uuid::now_v7().to_string();
                if kind == ResourceKind::Group {
                    resolve_members(&r, &id, &mut doc, None)?;
                }
                let stored = finalize(kind, &id, 1, &j.time, &j.time, doc);
                tx.insert(&stored, &actor.name)?;
                let seq = j.record(Op::Create, None, Some(&stored))?;
                if let Some(p) = &password {
                    p.keep(tx, seq, &id)?;
                }
                Ok(Written {
                    // New: in no group yet.
                    resource: Resource {
                        stored,
                        groups: Vec::new(),
                    },
                    changed: true,
                    seq,
                    before: None,
                    delta: None,
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
        let password = self.password_for(kind, password::from_body(&body)?)?;
        self.update_with(
            kind,
            id,
            if_match,
            actor,
            Edit {
                op: Op::Replace,
                password,
            },
            move |_| Ok(doc),
        )
        .await
    }

    /// PATCH: applies RFC 7644 operations atomically. A group PATCH that at most adds
    /// members or removes listed ones changes the members it names and nothing else, in
    /// time independent of the group's size (a member delta).
    pub async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: Value,
        if_match: Option<String>,
        actor: &Actor,
    ) -> Result<Written, EngineError> {
        let ops = patch::parse_request(&body)?;
        if kind == ResourceKind::Group
            && let Some((rest, member_ops)) = patch::split_member_ops(&ops)?
        {
            return self
                .patch_members(id, if_match, actor, rest, member_ops)
                .await;
        }
        let password = self.password_for(kind, password::from_patch(&ops)?)?;
        self.update_with(
            kind,
            id,
            if_match,
            actor,
            Edit {
                op: Op::Patch,
                password,
            },
            move |current| {
                let doc = patch::apply(kind, current, &ops)?;
                validate(kind, &doc)?;
                Ok(doc)
            },
        )
        .await
    }

    /// A group PATCH as a member delta plus the other operations on the group's document
    /// without members.
    async fn patch_members(
        &self,
        id: &str,
        if_match: Option<String>,
        actor: &Actor,
        rest: Vec<patch::Operation>,
        member_ops: Vec<patch::MemberOp>,
    ) -> Result<Written, EngineError> {
        const KIND: ResourceKind = ResourceKind::Group;
        let id_c = id.to_string();
        let actor_c = actor.clone();
        let delivery = self.delivery_state();
        let written = self
            .write(move |tx| {
                let (id, actor) = (id_c, actor_c);
                let r = tx.reader();
                let before = r
                    .get_without_members(KIND, &id)?
                    .ok_or_else(|| not_found(KIND, &id))?;
                check_if_match(if_match.as_deref(), &before)?;
                let current = client_part(&before.doc);
                let doc = if rest.is_empty() {
                    current.clone()
                } else {
                    let doc = patch::apply(KIND, &current, &rest)?;
                    validate(KIND, &doc)?;
                    doc
                };
                check_unique(&r, KIND, &doc, Some(&id))?;
                let delta = net_delta(&r, &id, member_ops)?;
                if doc == current && delta.is_empty() {
                    return Ok(Written::unchanged(Resource {
                        stored: before,
                        groups: Vec::new(),
                    }));
                }
                let j = Journal::new(tx, &actor, delivery);
                let after = finalize(KIND, &id, before.version + 1, &before.created, &j.time, doc);
                tx.update_without_members(&after, &actor.name)?;
                tx.apply_member_delta(&id, &delta)?;
                let seq = j.delta(&before, &after, delta.clone())?;
                Ok(Written {
                    resource: Resource {
                        stored: after,
                        groups: Vec::new(),
                    },
                    changed: true,
                    seq,
                    before: Some(before),
                    delta: Some(delta),
                })
            })
            .await?;
        self.settle(KIND, id, written, actor).await
    }

    async fn update_with(
        &self,
        kind: ResourceKind,
        id: &str,
        if_match: Option<String>,
        actor: &Actor,
        Edit { op, password }: Edit,
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
                // A new password is a change even when nothing stored changes: it gets a
                // version and a record (which names no password) to be delivered with.
                if doc == current && password.is_none() {
                    return Ok(Written::unchanged(Self::reread(tx, before)?));
                }
                let j = Journal::new(tx, &actor, delivery);
                let after = finalize(kind, &id, before.version + 1, &before.created, &j.time, doc);
                tx.update(&after, &actor.name)?;
                let seq = j.record(op, Some(&before), Some(&after))?;
                if let Some(p) = &password {
                    p.keep(tx, seq, &id)?;
                }
                Ok(Written {
                    resource: Self::reread(tx, after)?,
                    changed: true,
                    seq,
                    before: Some(before),
                    delta: None,
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
                let j = Journal::new(tx, &actor, delivery);
                for (group_id, _) in r.groups_of(&id)? {
                    // Out of each group it was in: a member delta, whatever the group's size.
                    let Some(group) = r.get_without_members(ResourceKind::Group, &group_id)? else {
                        continue;
                    };
                    let after = finalize(
                        ResourceKind::Group,
                        &group_id,
                        group.version + 1,
                        &group.created,
                        &j.time,
                        client_part(&group.doc),
                    );
                    let delta = MemberDelta {
                        added: Vec::new(),
                        removed: vec![id.clone()],
                    };
                    tx.update_without_members(&after, &actor.name)?;
                    tx.apply_member_delta(&group_id, &delta)?;
                    j.delta(&group, &after, delta)?;
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
                            &j.time,
                            doc,
                        );
                        tx.update(&after, &actor.name)?;
                        j.record(Op::Patch, Some(&managed), Some(&after))?;
                    }
                }
                tx.delete(&id)?;
                let seq = j.record(Op::Delete, Some(&before), None)?;
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
            delta: None,
        };
        self.settle(kind, id, written, actor).await.map(|_| ())
    }
}
