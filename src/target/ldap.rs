//! The LDAP target: directory entries kept converged with the users and groups the
//! provider pushes (design: `docs/ldap-target.md`).
//!
//! Owns the entries it creates or adopts — one per SCIM resource, at the DN the mapping
//! computes — and, in them, only the object classes and attributes the [`LdapSchema`]
//! names: other attributes, other entries and the tree above are left alone. Edges: the
//! delivery worker calls [`LdapTarget::apply`] with changes computed by the mapping (which
//! also computes and RFC 4514-escapes the DN); tests and reconcile read
//! [`LdapTarget::linked_dn`].
//!
//! # Links
//!
//! A small SQLite file next to the state (`LdapSettings::links_path`, see `links.rs`)
//! maps each SCIM id to the DN its entry was last converged to. It is how a rename finds
//! the old entry, how a group's member ids become member DNs and how references become
//! DNs. It also remembers the pending references (below).
//!
//! # Converging an `Upsert`
//!
//! 1. Find the entry: the linked DN if that entry still exists, else the entry already at
//!    the desired DN, else (nothing linked) one found by the `match` attributes — a
//!    subtree search under the base for `(&(objectClass=<first class>)(|(mail=…)…))` with
//!    the wanted values, RFC 4515-escaped; two found is a rejection. Every read is a
//!    base-scope search for the object classes, the mapped attributes and the member
//!    attribute. An entry found that is linked to another resource is refused; one not
//!    linked at all is adopted (`on_existing: adopt`, logged) or refused
//!    (`on_existing: conflict`, which links the id before its own add so that a retry
//!    recognises the entry it added; the link is dropped when the add fails).
//! 2. None → one `add` with the object classes and every non-empty value (for a group, the
//!    member values, or the placeholder when there are none). A missing parent
//!    (`noSuchObject`) is created first with `create_parents` (`ou`/`o`/`l`/`dc` entries,
//!    their own missing parents first), else the change is rejected naming it. An
//!    `entryAlreadyExists` answer (an entry the read could not see, or a concurrent add)
//!    re-reads: an entry that is there now is claimed and converged like any other;
//!    otherwise the change is rejected.
//! 3. At another DN (compared as DNs, see `dn.rs`) → `modifyDN`: new RDN = the first RDN
//!    of the desired DN, the old RDN's values deleted, `newSuperior` when the parent
//!    differs (created first with `create_parents`); the entry is then read again.
//! 4. One `modify` with only the differences — object classes missing are added (never
//!    removed); per mapped attribute: `create_only` ones are skipped once the entry has a
//!    value, an absent value (`Null`) leaves a `keep_when_empty` attribute alone and
//!    deletes any other, a value set that differs (compared as sets, values exactly) is
//!    replaced; a group's member DNs (compared as DNs) are replaced when they differ. When
//!    nothing differs, no `modify` is sent: applying a change twice writes once.
//! 5. When the entry was linked at another DN (renamed or moved): the groups that list the
//!    old DN list the new one instead, and so do the reference attributes holding it
//!    (below). Then the link is recorded, and the pending references it completes are
//!    written.
//!
//! Cell values: `Text` is one value, or several when the attribute is `Text`-typed and the
//! text is a JSON array of strings (how the mapping writes multi-valued attributes); an
//! empty text, or an empty array, is no value (LDAP has no empty directory strings).
//! `Integer` is written in decimal, booleans as `TRUE`/`FALSE`; a `Timestamp` in RFC 3339
//! is written as a GeneralizedTime (`20260101000000Z`, milliseconds kept when not zero).
//!
//! Group members are the member values of the member ids — their linked DNs (`member`,
//! `uniqueMember`), or the value of a user attribute (`memberUid` lists `uid`s, recorded in
//! the links file as the user is converged) — plus the users that joined the group as
//! their default group (remembered in the links file: LDAP has no membership origin).
//! Disabled users whose policy drops memberships and archived entries are left out. A
//! member not converged yet has no link and is left out; the group's SCIM member ids are
//! remembered, and the member joins (below) when it is first linked.
//!
//! # Disabled users
//!
//! A change for a disabled user carries `disabled` (its cells already hold the
//! `on_disable` values and its DN the `move_to` parent, both from the mapping). The
//! target adds the flag bits (`disable_bits`: the mapped value, else the entry's, or-ed
//! with the mask; cleared with and-not when enabled, so re-applying never toggles) and,
//! with `disable_drops_memberships`, removes the user from every managed group and marks
//! the link disabled. When it is enabled again, it rejoins the groups whose SCIM members
//! include it.
//!
//! # References (`dn_reference`, e.g. `manager`)
//!
//! The cell of a reference attribute holds a SCIM id (only the first value counts); the
//! entry gets the DN linked to it (compared as DNs). An id not linked yet (Entra creates
//! users before it sets their managers): the attribute is left out of the change — a
//! value the entry has stays — and a pending reference (entry id, attribute, target id)
//! is stored in the links file. At the end of every upsert, the pending references naming
//! the entry just linked, or held by it and naming a linked entry, are written (one
//! `modify` replacing the attribute) and forgotten; a referencing entry that is gone or
//! refuses the value drops its pending reference (logged). A reference cell that is
//! `Null` clears the attribute (unless `keep_when_empty`) and forgets a pending reference.
//! Renames and removals fix the reference attributes holding the old DN like group
//! members (below): one one-level search `(<attribute>=<old DN>)` per parent of the
//! linked entries of each kind mapping the attribute; old value replaced by the new one,
//! or deleted on removal.
//!
//! # Default groups
//!
//! A user's `default_groups` (group DNs) are joined when this target links the user for
//! the first time — the entry was added, or adopted — never on later updates, together
//! with the managed groups whose SCIM members include it: the user's member value is
//! added to each group's member attribute (the groups' `members.attribute`, `member` by
//! default) and the placeholder, if the group holds it, deleted. A group listing the user
//! already is not written; one that does not exist, or refuses the member, is logged (a
//! warning) and skipped. Joining happens before the link is recorded, so a change
//! interrupted in between joins them on its retry. Default memberships are remembered, so
//! a managed group converged later with its SCIM members keeps them.
//!
//! # Renames, removals and the groups that list an entry
//!
//! When an entry's DN changes, or it is removed, the groups converged by this target that
//! list it as a member are fixed: for each parent of the linked group DNs (usually one
//! `ou=groups`), one one-level search with the filter `(member=<old DN>)` (RFC 4515-escaped;
//! the directory matches it as a DN, whatever the form it stores), and for each linked
//! group found one `modify` deleting the old value and adding the new one (or, on removal,
//! the placeholder when it was the last member). Groups this target does not manage are not
//! touched (that is the directory's referential-integrity overlay's business). The fix runs
//! whenever the link differs from the DN reached, so a fix interrupted by an outage is
//! completed by the retry.
//!
//! # Other changes
//!
//! * `Remove`: the groups listing the entry and the references holding it are fixed as
//!   above, the entry deleted (one already gone is fine), the link and the pending
//!   references it holds dropped (those naming it stay: it may come back). Nothing linked: nothing to do.
//! * `Archive`: the cells (the disabled state, references resolved, flag bits set) are
//!   converged on the linked entry like step 4, after moving it to the change's DN (the
//!   archive OU) when it has one; the entry leaves its groups, references follow it, and
//!   the link is kept with the archive time: [`Target::archived_before`] lists it once the
//!   retention is over, and the purge's `Remove` deletes it.
//! * `Nothing`: applied.
//!
//! # Outcomes
//!
//! Success → `Applied`. The directory refusing the data (result codes 16, 19, 20, 21, 34,
//! 50, 64–69) → `Rejected("<code name>: <the server's diagnostic>")`. The directory out of
//! reach (no URL connects, I/O errors, timeouts) or answering 51 busy, 52 unavailable, 53
//! unwillingToPerform, 80 other, or any code not listed (logged as an error) →
//! `Unavailable`: the delivery worker retries with back-off. A connection that failed is
//! discarded; when it was an idle one that had died (the directory restarted), the idle
//! ones are discarded too and the change is retried once at once on a fresh connection —
//! safe, since converging is idempotent.
//!
//! # Plans
//!
//! [`LdapTarget::plan`] runs the same reads without writing (nothing in the directory,
//! nothing in the links file) and answers the LDIF of what converging would send: the
//! add, the modRDN, the modify (`reconcile --dry-run`, `mapping preview`).

mod dn;
pub mod ldif;
mod links;
mod pool;
pub use pool::entries_only;
pub mod subschema;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use ldap3::{LdapError, Mod, SearchEntry};

use self::dn::DnKey;
use self::links::{Link, Links};
use self::pool::{NO_SUCH_OBJECT, OpError, Pool, Session, outside_runtime};
use super::{
    Cell, Change, ColumnSpec, ColumnType, EntrySpec, Feed, LdapSchema, LdapSettings, MemberSpec,
    MemberValue, Members, NoFeed, OnExisting, Outcome, Password, PasswordSpec, Target, TargetError,
};
use crate::scim::schema::ResourceKind;

const OBJECT_CLASS: &str = "objectClass";
/// How long a worker of a wave with nothing left waits for the feed to hand over a new
/// record before it stops (see [`LdapTarget::apply_together`]): longer than a waiting
/// request takes, once told, to send its next write and have it committed, so that under
/// steady load the pool's connections stay busy.
const FEED_WAIT: std::time::Duration = std::time::Duration::from_millis(5);
/// `entryAlreadyExists`: on an add, retried as a converge of the entry that is there.
const ENTRY_ALREADY_EXISTS: u32 = 68;
/// A modify deletes a value the entry does not have.
const NO_SUCH_ATTRIBUTE: u32 = 16;
/// A modify adds a value the entry has already.
const ATTRIBUTE_OR_VALUE_EXISTS: u32 = 20;
/// A modify would leave a required attribute without values (the last `member`).
const OBJECT_CLASS_VIOLATION: u32 = 65;

/// The LDAP target: a pool of bound directory connections and the links file.
pub struct LdapTarget {
    schema: LdapSchema,
    pool: Pool,
    links: Links,
    /// Why no password may be sent (a connection without TLS); `None`: they may.
    password_refusal: Option<String>,
    /// Changes the directory keeps answering with an unexpected result code.
    stuck: Stuck,
}

/// The resources whose change the directory answered with an unexpected result code, since
/// when and how often: retried (the records behind wait, in order) until `give_up_after`
/// has passed and at least [`Stuck::MIN_ATTEMPTS`] attempts were made, then rejected.
struct Stuck {
    give_up_after: std::time::Duration,
    seen: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

impl Stuck {
    const MIN_ATTEMPTS: u32 = 3;

    fn new(give_up_after: std::time::Duration) -> Stuck {
        Stuck {
            give_up_after,
            seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The outcome to report for `key`'s change: `outcome`, unless it is the unexpected
    /// answer (`unexpected`) that has now lasted long enough to give up (a rejection).
    fn bound(&self, key: &str, outcome: Outcome, unexpected: bool) -> Outcome {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !unexpected {
            seen.remove(key);
            return outcome;
        }
        let Outcome::Unavailable(detail) = outcome else {
            seen.remove(key);
            return outcome;
        };
        let (attempts, since) = seen
            .entry(key.to_string())
            .or_insert((0, std::time::Instant::now()));
        *attempts += 1;
        let lasted = since.elapsed();
        if *attempts < Self::MIN_ATTEMPTS || lasted < self.give_up_after {
            return Outcome::Unavailable(detail);
        }
        let attempts = *attempts;
        seen.remove(key);
        tracing::error!(resource = %key, attempts, seconds = lasted.as_secs(), detail = %detail, "the directory keeps giving an unexpected answer; the change is given up (rejected) so the ones after it are delivered");
        Outcome::Rejected(format!(
            "{detail} (the same unexpected answer {attempts} times over {} s: given up; `scim-bridge reconcile` converges the entry once the directory takes it)",
            lasted.as_secs()
        ))
    }
}

/// The resource a change is about.
fn change_key(change: &Change) -> Option<&str> {
    match change {
        Change::Upsert { key, .. } | Change::Remove { key, .. } | Change::Archive { key, .. } => {
            Some(key)
        }
        Change::Nothing => None,
    }
}

/// Why a change was not applied, before it becomes an [`Outcome`].
enum Fail {
    /// The change itself is wrong for this target (e.g. an unmapped attribute).
    Reject(String),
    /// No connection could be opened.
    Connect(String),
    Ldap(OpError),
    Links(rusqlite::Error),
    /// The entry disappeared between two operations of the same change.
    Vanished(String),
}

impl From<OpError> for Fail {
    fn from(e: OpError) -> Fail {
        Fail::Ldap(e)
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Fail {
        Fail::Links(e)
    }
}

impl Fail {
    /// The connection itself failed (no LDAP answer): a reused connection may just have
    /// died while idle.
    fn connection_lost(&self) -> bool {
        matches!(self, Fail::Ldap(e) if e.rc().is_none())
    }

    /// The directory answered, with a code that is neither a refusal of the data nor
    /// busy/unavailable (a referral, noSuchObject in the middle of a change, an unknown
    /// attribute type, …), or an entry vanished mid-change: retrying may not help.
    fn unexpected_answer(&self) -> bool {
        match self {
            Fail::Vanished(_) => true,
            Fail::Ldap(e) => e
                .rc()
                .is_some_and(|rc| !refused(rc) && !matches!(rc, 0 | 51 | 52 | 53 | 80)),
            _ => false,
        }
    }
}

/// The mapped attributes a change gives, with their values (`None`: no value).
type Attributes<'a> = Vec<(&'a ColumnSpec, Option<Vec<String>>)>;

/// What an entry should look like, as far as the change says.
struct Wanted<'a> {
    object_classes: &'a [String],
    attributes: Attributes<'a>,
    /// How the entries of this kind list members (groups).
    member_spec: Option<&'a MemberSpec>,
    /// The member DNs, the placeholder included when due; `None`: this change does not
    /// converge members (a new entry still gets the placeholder).
    members: Option<Vec<String>>,
}

impl<'a> Wanted<'a> {
    fn new(
        spec: &'a EntrySpec,
        attributes: Attributes<'a>,
        members: Option<Vec<String>>,
    ) -> Wanted<'a> {
        let member_spec = spec.members.as_ref();
        let members = match (member_spec, members) {
            (Some(m), Some(mut dns)) => {
                if dns.is_empty() {
                    dns.extend(m.placeholder.iter().cloned());
                }
                Some(dns)
            }
            _ => None,
        };
        Wanted {
            object_classes: &spec.object_classes,
            attributes,
            member_spec,
            members,
        }
    }

    /// The member attribute, when this change converges members.
    fn member_attr(&self) -> Option<&'a str> {
        self.members
            .as_ref()
            .and(self.member_spec)
            .map(|m| m.attribute.as_str())
    }

    /// The attributes to read from an existing entry to compare it.
    fn read_attrs(&self) -> Vec<String> {
        std::iter::once(OBJECT_CLASS)
            .chain(self.attributes.iter().map(|(spec, _)| spec.name.as_str()))
            .chain(self.member_attr())
            .map(str::to_string)
            .collect()
    }

    /// Sets (disabled) or clears (enabled) the `bits` in their attributes: the mapped
    /// value, else the entry's, is the base; no base and enabled: left alone.
    fn apply_bits(&mut self, entry: Option<&SearchEntry>, spec: &EntrySpec, disabled: bool) {
        for (attr, mask) in &spec.disable_bits {
            let Some(slot) = self
                .attributes
                .iter_mut()
                .find(|(spec, _)| spec.name.eq_ignore_ascii_case(attr))
            else {
                continue;
            };
            let initial = || {
                spec.initial_bits
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(attr))
                    .map(|(_, n)| n.to_string())
            };
            let current = match (&slot.1, entry) {
                (Some(values), _) => values.first().cloned(),
                (None, Some(e)) => values_of(e, attr).into_iter().next(),
                // A new entry: the configured starting value, if any.
                (None, None) => initial(),
            };
            let base = match current.as_deref().map(str::trim) {
                None => None,
                Some(text) => match text.parse::<i64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        tracing::warn!(attribute = %attr, value = %text, "a flag attribute does not hold an integer; left alone");
                        continue;
                    }
                },
            };
            let mask = i64::try_from(*mask).unwrap_or(i64::MAX);
            let value = match (base, disabled) {
                (Some(n), true) => Some(n | mask),
                (Some(n), false) => Some(n & !mask),
                (None, true) => Some(mask),
                (None, false) => None,
            };
            if let Some(v) = value {
                slot.1 = Some(vec![v.to_string()]);
            }
        }
    }

    /// Whether the member values are DNs (compared as DNs) rather than plain values.
    fn members_are_dns(&self) -> bool {
        self.member_spec.is_none_or(|m| m.value == MemberValue::Dn)
    }

    /// The attributes of a new entry: object classes, then every attribute with a value.
    fn add_attrs(&self) -> Vec<(String, HashSet<String>)> {
        let mut attrs = Vec::new();
        if !self.object_classes.is_empty() {
            attrs.push((
                OBJECT_CLASS.to_string(),
                self.object_classes.iter().cloned().collect(),
            ));
        }
        for (spec, values) in &self.attributes {
            if let Some(values) = values {
                attrs.push((spec.name.clone(), values.iter().cloned().collect()));
            }
        }
        if let Some(m) = self.member_spec {
            let values: HashSet<String> = match &self.members {
                Some(dns) => dns.iter().cloned().collect(),
                None => m.placeholder.iter().cloned().collect(),
            };
            if !values.is_empty() {
                attrs.push((m.attribute.clone(), values));
            }
        }
        attrs
    }

    /// The one modification that makes `entry` match (empty: it matches already).
    fn diff(&self, entry: &SearchEntry) -> Vec<Mod<String>> {
        let mut mods = Vec::new();
        let have: HashSet<String> = values_of(entry, OBJECT_CLASS)
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let missing: HashSet<String> = self
            .object_classes
            .iter()
            .filter(|c| !have.contains(&c.to_ascii_lowercase()))
            .cloned()
            .collect();
        if !missing.is_empty() {
            mods.push(Mod::Add(OBJECT_CLASS.to_string(), missing));
        }
        for (spec, wanted) in &self.attributes {
            let have = values_of(entry, &spec.name);
            if spec.create_only && !have.is_empty() {
                continue;
            }
            match wanted {
                None if spec.keep_when_empty || have.is_empty() => {}
                None => mods.push(Mod::Replace(spec.name.clone(), HashSet::new())),
                Some(wanted) if spec.dn_reference => {
                    let want: HashSet<DnKey> = wanted.iter().map(|v| DnKey::of(v)).collect();
                    if want != have.iter().map(|v| DnKey::of(v)).collect() {
                        mods.push(Mod::Replace(
                            spec.name.clone(),
                            wanted.iter().cloned().collect(),
                        ));
                    }
                }
                Some(wanted) => {
                    let wanted: HashSet<String> = wanted.iter().cloned().collect();
                    if wanted != have.into_iter().collect::<HashSet<String>>() {
                        mods.push(Mod::Replace(spec.name.clone(), wanted));
                    }
                }
            }
        }
        if let (Some(attr), Some(wanted)) = (self.member_attr(), &self.members) {
            let differs = if self.members_are_dns() {
                let have: HashSet<DnKey> = values_of(entry, attr)
                    .iter()
                    .map(|v| DnKey::of(v))
                    .collect();
                have != wanted.iter().map(|v| DnKey::of(v)).collect()
            } else {
                let have: HashSet<String> = values_of(entry, attr).into_iter().collect();
                have != wanted.iter().cloned().collect()
            };
            if differs {
                mods.push(Mod::Replace(
                    attr.to_string(),
                    wanted.iter().cloned().collect(),
                ));
            }
        }
        mods
    }
}

/// The names in `attrs`, borrowed (as the session's searches take them).
fn refs(attrs: &[String]) -> Vec<&str> {
    attrs.iter().map(String::as_str).collect()
}

/// The values of `attr` in `entry` (attribute names compared case-insensitively; values
/// that are not UTF-8 read lossily).
fn values_of(entry: &SearchEntry, attr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, values) in &entry.attrs {
        if name.eq_ignore_ascii_case(attr) {
            out.extend(values.iter().cloned());
        }
    }
    for (name, values) in &entry.bin_attrs {
        if name.eq_ignore_ascii_case(attr) {
            out.extend(
                values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            );
        }
    }
    out
}

/// The attribute values of a cell (see the module doc); `None`: no value.
fn cell_values(spec: &ColumnSpec, cell: &Cell) -> Option<Vec<String>> {
    let values = match cell {
        Cell::Null => return None,
        Cell::Integer(i) if spec.ty == ColumnType::Boolean => {
            vec![if *i != 0 { "TRUE" } else { "FALSE" }.to_string()]
        }
        Cell::Integer(i) => vec![i.to_string()],
        Cell::Text(text) => match spec.ty {
            ColumnType::Text if text.starts_with('[') => {
                match serde_json::from_str::<Vec<String>>(text) {
                    Ok(list) => {
                        let mut seen = HashSet::new();
                        list.into_iter()
                            .filter(|v| !v.is_empty() && seen.insert(v.clone()))
                            .collect()
                    }
                    Err(_) => vec![text.clone()],
                }
            }
            ColumnType::Boolean => vec![
                match text.to_ascii_lowercase().as_str() {
                    "1" | "true" => "TRUE",
                    "0" | "false" => "FALSE",
                    _ => text,
                }
                .to_string(),
            ],
            ColumnType::Timestamp => vec![generalized_time(text).unwrap_or_else(|| text.clone())],
            _ => vec![text.clone()],
        },
    };
    let values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
    (!values.is_empty()).then_some(values)
}

/// An RFC 3339 timestamp as an LDAP GeneralizedTime in UTC; `None` when it is not one.
fn generalized_time(text: &str) -> Option<String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()?
        .to_offset(time::UtcOffset::UTC);
    let whole = at
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .ok()?;
    Some(match at.millisecond() {
        0 => format!("{whole}Z"),
        ms => format!("{whole}.{ms:03}Z"),
    })
}

/// The name of an LDAP result code (RFC 4511 appendix A).
fn code_name(rc: u32) -> &'static str {
    match rc {
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        33 => "aliasProblem",
        34 => "invalidDNSyntax",
        36 => "aliasDereferencingProblem",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        54 => "loopDetect",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "unknown",
    }
}

/// Result codes with which the directory refuses the data (a rejection, not an outage).
fn refused(rc: u32) -> bool {
    matches!(rc, 16 | 19 | 20 | 21 | 34 | 50 | 64..=69)
}

/// The outcome of a failed change (the table in `docs/ldap-target.md`).
fn verdict(fail: Fail) -> Outcome {
    match fail {
        Fail::Reject(detail) => Outcome::Rejected(detail),
        Fail::Connect(detail) => Outcome::Unavailable(detail),
        Fail::Vanished(dn) => {
            Outcome::Unavailable(format!("the entry {dn} disappeared while being converged"))
        }
        Fail::Links(e) => {
            tracing::error!(error = %e, "the LDAP links file cannot be read or written; the change will be retried");
            Outcome::Unavailable(format!("the LDAP links file: {e}"))
        }
        Fail::Ldap(OpError { op, dn, error }) => match *error {
            LdapError::LdapResult { result } => {
                let name = code_name(result.rc);
                let detail = if result.text.is_empty() {
                    format!("{name} ({op} {dn})")
                } else {
                    format!("{name}: {}", result.text)
                };
                match result.rc {
                    rc if refused(rc) => {
                        tracing::debug!(op, dn = %dn, rc = result.rc, "the directory refuses the change");
                        Outcome::Rejected(detail)
                    }
                    51 | 52 | 53 | 80 => Outcome::Unavailable(format!("{op} {dn}: {detail}")),
                    rc => {
                        tracing::error!(op, dn = %dn, rc, detail = %detail, "unexpected answer from the LDAP directory; the change will be retried");
                        Outcome::Unavailable(format!("{op} {dn}: rc {rc} {detail}"))
                    }
                }
            }
            error => Outcome::Unavailable(format!("{op} {dn}: {error}")),
        },
    }
}

/// Refuses settings and schemas this target cannot work with.
fn validate(settings: &LdapSettings, schema: &LdapSchema) -> Result<(), TargetError> {
    let open_error = |path: &str, detail: String| TargetError::Open {
        path: path.to_string(),
        detail,
    };
    if settings.urls.is_empty() {
        return Err(open_error(
            "ldap",
            "the LDAP target has no URL (e.g. ldaps://ldap.example.com)".into(),
        ));
    }
    for url in &settings.urls {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("ldap://") || lower.starts_with("ldaps://")) {
            return Err(open_error(
                url,
                "not an ldap:// or ldaps:// URL (the scheme is not supported)".into(),
            ));
        }
    }
    if settings.pool_size == 0 {
        return Err(open_error("ldap", "pool_size must be at least 1".into()));
    }
    for (kind, spec) in [
        (ResourceKind::User, &schema.users),
        (ResourceKind::Group, &schema.groups),
    ] {
        let Some(spec) = spec else { continue };
        let what =
            |detail: String| open_error("ldap", format!("{} entries: {detail}", kind.name()));
        let member = spec.members.as_ref().map(|m| m.attribute.as_str());
        if member == Some("") {
            return Err(what("the member attribute has no name".into()));
        }
        let mut seen = HashSet::new();
        for attr in &spec.attributes {
            let lower = attr.name.to_ascii_lowercase();
            if attr.name.is_empty() {
                return Err(what("an attribute has no name".into()));
            }
            if lower == "objectclass" {
                return Err(what(
                    "objectClass is not a mapped attribute (list object classes instead)".into(),
                ));
            }
            if member.is_some_and(|m| m.eq_ignore_ascii_case(&attr.name)) {
                return Err(what(format!(
                    "{} is the member attribute and cannot be mapped too",
                    attr.name
                )));
            }
            if !seen.insert(lower) {
                return Err(what(format!("attribute {} is mapped twice", attr.name)));
            }
        }
    }
    Ok(())
}

impl LdapTarget {
    /// Validates the settings, opens (creating) the links file and checks that the
    /// directory can be connected to and bound to. A directory out of reach is only
    /// logged (a warning): changes stay pending until it is back. Bad settings — no URL, a
    /// scheme other than `ldap://`/`ldaps://`, TLS files that cannot be read (CA, client certificate and key), a schema
    /// mapping `objectClass` or an attribute twice — are [`TargetError::Open`].
    pub fn open(settings: LdapSettings, schema: LdapSchema) -> Result<LdapTarget, TargetError> {
        validate(&settings, &schema)?;
        let links = Links::open(&settings.links_path)?;
        let target = LdapTarget {
            pool: Pool::new(&settings)?,
            schema,
            links,
            password_refusal: settings.password_refusal(),
            stuck: Stuck::new(settings.give_up_after),
        };
        match outside_runtime(|| target.pool.session().map(drop)) {
            Ok(()) => tracing::info!(urls = ?settings.urls, "the LDAP directory is reachable"),
            Err(e) => {
                tracing::warn!(error = %e, "the LDAP directory cannot be reached now; changes stay pending until it can")
            }
        }
        Ok(target)
    }

    /// A target for previews: the links file is only read (an empty one when the daemon
    /// has none yet) and no connection is opened until [`Self::plan`] is called.
    pub fn open_for_preview(
        settings: LdapSettings,
        schema: LdapSchema,
    ) -> Result<LdapTarget, TargetError> {
        validate(&settings, &schema)?;
        Ok(LdapTarget {
            links: Links::open_read_only(&settings.links_path)?,
            pool: Pool::new(&settings)?,
            schema,
            password_refusal: settings.password_refusal(),
            stuck: Stuck::new(settings.give_up_after),
        })
    }

    /// The LDIF of the entry an upsert describes, as an add would write it (references
    /// and members not linked yet left out). Err: the change cannot be written.
    pub fn entry_ldif(&self, change: &Change) -> Result<String, String> {
        let Change::Upsert {
            kind,
            key,
            dn,
            cells,
            members,
            disabled,
            ..
        } = change
        else {
            return Err("the change is not an upsert: no entry to show".into());
        };
        let fail = |f: Fail| match verdict(f) {
            Outcome::Rejected(d) | Outcome::Unavailable(d) => d,
            Outcome::Applied => String::new(),
        };
        let spec = self.spec(*kind).map_err(fail)?;
        let dn = dn.as_deref().ok_or("the mapping gives no DN")?;
        let member_values = self
            .all_member_values(spec, dn, members.as_ref())
            .map_err(fail)?;
        let cells = checked_cells(*kind, spec, cells).map_err(fail)?;
        let attributes = self.resolve_refs(key, cells, false).map_err(fail)?;
        let mut wanted = Wanted::new(spec, attributes, member_values);
        wanted.apply_bits(None, spec, *disabled);
        Ok(ldif::add(dn, &wanted.add_attrs()))
    }

    /// The DN currently linked to the SCIM id `id` (the entry it was last converged to).
    pub fn linked_dn(&self, id: &str) -> Option<String> {
        match self.links.get(id) {
            Ok(dn) => dn,
            Err(e) => {
                tracing::error!(error = %e, "the LDAP links file cannot be read");
                None
            }
        }
    }

    /// What applying `change` would send, as LDIF, without writing anything (neither the
    /// directory nor the links file): the add, the modRDN and the modify of an upsert or
    /// archive, the delete of a removal. Empty when the entry already matches. References
    /// and members not linked yet are left out, as the converge leaves them out.
    pub fn plan(&self, change: &Change) -> Result<Vec<String>, Outcome> {
        if matches!(change, Change::Nothing) {
            return Ok(Vec::new());
        }
        outside_runtime(|| {
            self.precheck(change).map_err(verdict)?;
            let mut session = self.pool.session().map_err(Outcome::Unavailable)?;
            let result = self.plan_with(&mut session, change).map_err(verdict);
            if matches!(result, Err(Outcome::Unavailable(_))) {
                session.discard();
            }
            result
        })
    }

    fn plan_with(&self, s: &mut Session<'_>, change: &Change) -> Result<Vec<String>, Fail> {
        let (kind, key, dn, cells, members, disabled) = match change {
            Change::Nothing => return Ok(Vec::new()),
            Change::Remove { key, .. } => {
                let Some(link) = self.links.link(key)? else {
                    return Ok(Vec::new());
                };
                return Ok(match s.read(&link.dn, &[OBJECT_CLASS])? {
                    Some(entry) => vec![ldif::delete(&entry.dn)],
                    None => Vec::new(),
                });
            }
            Change::Upsert {
                kind,
                key,
                dn,
                cells,
                members,
                disabled,
                ..
            } => (*kind, key, dn.clone(), cells, members.as_ref(), *disabled),
            Change::Archive {
                kind,
                key,
                dn,
                cells,
                ..
            } => {
                let Some(link) = self.links.link(key)? else {
                    return Ok(Vec::new());
                };
                (
                    *kind,
                    key,
                    Some(dn.clone().unwrap_or(link.dn)),
                    cells,
                    None,
                    true,
                )
            }
        };
        let spec = self.spec(kind)?;
        let Some(dn) = dn else {
            return Err(Fail::Reject("the mapping gives no DN".into()));
        };
        let member_values = self.all_member_values(spec, &dn, members)?;
        let attributes = self.resolve_refs(key, checked_cells(kind, spec, cells)?, false)?;
        let mut wanted = Wanted::new(spec, attributes, member_values);
        let attrs = wanted.read_attrs();
        let adopt = matches!(change, Change::Upsert { .. });
        let (_, entry) = self.find_entry(s, key, &dn, spec, &wanted, &attrs, adopt, false)?;
        wanted.apply_bits(entry.as_ref(), spec, disabled);
        // A password is written, never shown: the plan says that it would be.
        let password_line = match (change, &spec.password) {
            (
                Change::Upsert {
                    password: Some(_), ..
                },
                Some(how),
            ) => Some(format!(
                "# {dn}: replace {} (a new password, not shown)",
                how.attribute
            )),
            _ => None,
        };
        let Some(entry) = entry else {
            return Ok(match change {
                Change::Upsert { .. } => std::iter::once(ldif::add(&dn, &wanted.add_attrs()))
                    .chain(password_line)
                    .collect(),
                _ => Vec::new(),
            });
        };
        let mut out = Vec::new();
        if !dn::same(&entry.dn, &dn) {
            let (rdn, parent) = dn::split_first(&dn);
            let new_parent = parent
                .filter(|p| dn::parent(&entry.dn).is_none_or(|old| DnKey::of(old) != DnKey::of(p)));
            out.push(ldif::modrdn(&entry.dn, rdn, new_parent));
        }
        let mods = wanted.diff(&entry);
        if !mods.is_empty() {
            out.push(ldif::modify(&dn, &mods));
        }
        if let (Some(m), Some(Members::Delta { added, removed })) = (&spec.members, members) {
            let (add, delete) = self.delta_values(&dn, added, removed)?;
            let mut mods = Vec::new();
            if !add.is_empty() {
                mods.push(Mod::Add(m.attribute.clone(), add.into_iter().collect()));
            }
            if !delete.is_empty() {
                mods.push(Mod::Delete(
                    m.attribute.clone(),
                    delete.into_iter().collect(),
                ));
            }
            if !mods.is_empty() {
                out.push(ldif::modify(&dn, &mods));
            }
        }
        out.extend(password_line);
        Ok(out)
    }

    /// The resources this target holds entries for (not archived), by kind, sorted.
    pub fn held(&self, kind: ResourceKind) -> Result<Vec<String>, TargetError> {
        Ok(self.links.held(kind)?)
    }

    /// Converges one change (see the module doc). Idempotent: applying it again sends no
    /// write. May block up to the connect and operation timeouts (per URL and operation);
    /// runs off the async runtime on its own when called from it.
    pub fn apply(&self, change: &Change) -> Outcome {
        if matches!(change, Change::Nothing) {
            return Outcome::Applied;
        }
        outside_runtime(|| self.apply_blocking(change))
    }

    /// Converges changes in order, as [`apply`](Self::apply) would one by one, with the
    /// links file's writes of the whole batch in one transaction: one fsync per batch
    /// instead of one or more per entry. Should that commit fail, every change is reported
    /// unavailable and delivered again (converging is idempotent).
    pub fn apply_batch(&self, changes: &[Change]) -> Vec<Outcome> {
        self.deliver_fed(changes, &|_, _| {}, &NoFeed)
    }

    /// [`apply_batch`](Self::apply_batch), telling `told` each applied or rejected
    /// outcome as soon as the directory gave it, before the batch's links commit: the
    /// directory has the change then, and should that commit fail, the change is delivered
    /// again (idempotently) without anyone having been told something untrue. Also
    /// converges the changes `feed` hands over while the round runs, when every change
    /// left of the round is an independent new user (see [`Self::wave`]): the pool's
    /// connections then never wait for the round's end, nor the waiting requests for each
    /// other. Outcomes cover `changes`, then the fed ones.
    pub fn deliver_fed(
        &self,
        changes: &[Change],
        told: &(dyn Fn(usize, &Outcome) + Sync),
        feed: &dyn Feed,
    ) -> Vec<Outcome> {
        outside_runtime(|| {
            if let Err(e) = self.links.begin_batch() {
                let outcome = verdict(Fail::from(e));
                return changes.iter().map(|_| outcome.clone()).collect();
            }
            let mut out: Vec<Outcome> = Vec::with_capacity(changes.len());
            while out.len() < changes.len() {
                let rest = &changes[out.len()..];
                let outcomes = match out.last() {
                    Some(Outcome::Unavailable(e)) => vec![Outcome::Unavailable(e.clone())],
                    _ => {
                        let (n, claims) = self.wave(rest);
                        if n == rest.len() && self.pool.size() > 1 {
                            self.apply_together(rest, claims, out.len(), told, Some(feed))
                        } else if n > 1 {
                            self.apply_together(&rest[..n], claims, out.len(), told, None)
                        } else {
                            let outcome = match &rest[0] {
                                Change::Nothing => Outcome::Applied,
                                change => self.apply_blocking(change),
                            };
                            if !matches!(outcome, Outcome::Unavailable(_)) {
                                told(out.len(), &outcome);
                            }
                            vec![outcome]
                        }
                    }
                };
                for outcome in outcomes {
                    // After an unavailable change nothing counts as done: the ones after
                    // it (applied beside it in a wave, or not tried) are delivered again.
                    out.push(match out.last() {
                        Some(Outcome::Unavailable(e)) => Outcome::Unavailable(e.clone()),
                        _ => outcome,
                    });
                }
            }
            if let Err(e) = self.links.end_batch() {
                let outcome = verdict(Fail::from(e));
                return out.iter().map(|_| outcome.clone()).collect();
            }
            out
        })
    }

    /// Converges independent `changes` (see [`Self::wave`]; `claims` are what they take)
    /// with one worker per pooled connection, each taking the next change as soon as it
    /// is done (the directory's queue never runs dry between them), then the ones `feed`
    /// hands over that are independent of all of them, until it has none for
    /// [`FEED_WAIT`]. `changes[0]` is the round's change `base`. An applied change is
    /// told at once; a rejected one once every change before it is known to be done (a
    /// change after an unavailable one is delivered again, and may be applied then).
    /// Once one is unavailable, the ones not started are not tried.
    fn apply_together(
        &self,
        changes: &[Change],
        claims: Claims,
        base: usize,
        told: &(dyn Fn(usize, &Outcome) + Sync),
        feed: Option<&dyn Feed>,
    ) -> Vec<Outcome> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let next = AtomicUsize::new(0);
        let down = AtomicBool::new(false);
        let claims = std::sync::Mutex::new(claims);
        // Without a feed there is no more work than `changes`.
        let workers = match feed {
            Some(_) => self.pool.size().max(1),
            None => self.pool.size().min(changes.len()).max(1),
        };
        let mut done: Vec<(usize, Outcome)> = std::thread::scope(|scope| {
            let running: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        while !down.load(Ordering::SeqCst) {
                            let i = next.fetch_add(1, Ordering::SeqCst);
                            let fed;
                            let (i, change) = match changes.get(i) {
                                Some(change) => (i, change),
                                None => {
                                    let Some(feed) = feed else {
                                        break;
                                    };
                                    let mut accept = |change: &Change| {
                                        let mut claims = claims
                                            .lock()
                                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                                        self.independent_new_user(change, &mut claims)
                                    };
                                    match feed.next(FEED_WAIT, &mut accept) {
                                        Some((index, change)) => {
                                            fed = change;
                                            (index - base, &fed)
                                        }
                                        None => break,
                                    }
                                }
                            };
                            let outcome = self.apply_blocking(change);
                            match outcome {
                                Outcome::Applied => told(base + i, &outcome),
                                Outcome::Unavailable(_) => down.store(true, Ordering::SeqCst),
                                Outcome::Rejected(_) => {}
                            }
                            mine.push((i, outcome));
                        }
                        mine
                    })
                })
                .collect();
            running
                .into_iter()
                .flat_map(|t| t.join().unwrap_or_default())
                .collect()
        });
        done.sort_by_key(|(i, _)| *i);
        let tried = done.last().map_or(0, |(i, _)| i + 1).max(changes.len());
        let mut out: Vec<Outcome> = Vec::with_capacity(tried);
        for (i, outcome) in done {
            if i != out.len() || matches!(out.last(), Some(Outcome::Unavailable(_))) {
                break;
            }
            if matches!(outcome, Outcome::Rejected(_)) {
                told(base + i, &outcome);
            }
            out.push(outcome);
        }
        while out.len() < tried {
            out.push(Outcome::Unavailable(
                "not tried: a change before it could not be delivered".into(),
            ));
        }
        out
    }

    /// How many of the leading `changes` may be converged at once (at most a round; 0
    /// when the first may not), and what they take. slapd and 389-DS serialise their
    /// writes but overlap the rest (parsing, indexing, the network), so adds sent together
    /// go faster than one after another. Only changes whose order cannot matter go
    /// together: new users (nothing linked yet), each of another resource at another DN,
    /// that reference no other entry (no manager set, no default groups), under
    /// `on_existing: adopt` without `match` (no search that another add of the wave could
    /// change the answer of).
    fn wave(&self, changes: &[Change]) -> (usize, Claims) {
        let limit = if self.pool.size() > 1 {
            changes.len()
        } else {
            1
        };
        let mut claims = Claims::default();
        let mut n = 0;
        while n < limit && self.independent_new_user(&changes[n], &mut claims) {
            n += 1;
        }
        (n, claims)
    }

    /// Whether `change` adds a new user that references nothing, of a resource and at a
    /// DN no change in `claims` takes (which then takes both).
    fn independent_new_user(&self, change: &Change, claims: &mut Claims) -> bool {
        let Change::Upsert {
            kind: ResourceKind::User,
            key,
            dn: Some(dn),
            cells,
            members: None,
            default_groups,
            ..
        } = change
        else {
            return false;
        };
        let Some(spec) = self.schema.users.as_ref() else {
            return false;
        };
        let references = spec.attributes.iter().filter(|a| a.dn_reference).any(|a| {
            cells
                .iter()
                .any(|(name, cell)| name.eq_ignore_ascii_case(&a.name) && *cell != Cell::Null)
        });
        let dn = DnKey::of(dn);
        let independent = default_groups.is_empty()
            && !references
            && spec.on_existing == OnExisting::Adopt
            && spec.match_attrs.is_empty()
            && !claims.keys.contains(key)
            && !claims.dns.contains(&dn)
            && matches!(self.links.get(key), Ok(None));
        if independent {
            claims.keys.insert(key.clone());
            claims.dns.insert(dn);
        }
        independent
    }

    fn apply_blocking(&self, change: &Change) -> Outcome {
        let (outcome, unexpected) = self.apply_once(change);
        match change_key(change) {
            Some(key) => self.stuck.bound(key, outcome, unexpected),
            None => outcome,
        }
    }

    /// Applies `change`; also says whether it failed on an unexpected answer.
    fn apply_once(&self, change: &Change) -> (Outcome, bool) {
        match self.precheck(change) {
            Ok(true) => {}
            Ok(false) => return (Outcome::Applied, false),
            Err(fail) => return (verdict(fail), false),
        }
        let mut retried = false;
        loop {
            let mut session = match self.pool.session() {
                Ok(session) => session,
                Err(e) => return (verdict(Fail::Connect(e)), false),
            };
            let fail = match self.converge(&mut session, change) {
                Ok(()) => return (Outcome::Applied, false),
                Err(fail) => fail,
            };
            let ldap = matches!(fail, Fail::Ldap(_));
            let stale = session.reused && fail.connection_lost();
            let unexpected = fail.unexpected_answer();
            let outcome = verdict(fail);
            if ldap && matches!(outcome, Outcome::Unavailable(_)) {
                // Whatever failed, this connection is not trusted again.
                session.discard();
                if stale && !retried {
                    // It died while idle (the directory restarted): so did the others.
                    tracing::debug!(detail = ?outcome, "an idle LDAP connection was dead; retrying on a fresh one");
                    self.pool.flush_idle();
                    retried = true;
                    continue;
                }
            }
            return (outcome, unexpected);
        }
    }

    /// Checks what can be checked without the directory: a change the target cannot take
    /// is rejected even while the directory is out of reach. False: nothing to do (a
    /// removal or archive of a resource that was never linked).
    fn precheck(&self, change: &Change) -> Result<bool, Fail> {
        match change {
            Change::Nothing => Ok(false),
            Change::Upsert {
                kind,
                dn,
                cells,
                password,
                ..
            } => {
                let spec = self.spec(*kind)?;
                if dn.is_none() {
                    return Err(Fail::Reject("the mapping gives no DN".into()));
                }
                checked_cells(*kind, spec, cells)?;
                if password.is_some()
                    && spec.password.is_some()
                    && let Some(refusal) = &self.password_refusal
                {
                    return Err(Fail::Reject(refusal.clone()));
                }
                Ok(true)
            }
            Change::Remove { key, .. } => Ok(self.links.get(key)?.is_some()),
            Change::Archive {
                kind, key, cells, ..
            } => {
                checked_cells(*kind, self.spec(*kind)?, cells)?;
                Ok(self.links.get(key)?.is_some())
            }
        }
    }

    fn spec(&self, kind: ResourceKind) -> Result<&EntrySpec, Fail> {
        match kind {
            ResourceKind::User => self.schema.users.as_ref(),
            ResourceKind::Group => self.schema.groups.as_ref(),
        }
        .ok_or_else(|| {
            Fail::Reject(format!(
                "the LDAP target writes no entries for {} resources",
                kind.name()
            ))
        })
    }

    fn converge(&self, s: &mut Session<'_>, change: &Change) -> Result<(), Fail> {
        match change {
            Change::Nothing => Ok(()),
            Change::Upsert {
                kind,
                key,
                dn,
                cells,
                members,
                default_groups,
                disabled,
                password,
            } => {
                let spec = self.spec(*kind)?;
                let Some(dn) = dn else {
                    return Err(Fail::Reject("the mapping gives no DN".into()));
                };
                let member_values = self.all_member_values(spec, dn, members.as_ref())?;
                let attributes =
                    self.resolve_refs(key, checked_cells(*kind, spec, cells)?, true)?;
                let mut wanted = Wanted::new(spec, attributes, member_values);
                let default_groups = match kind {
                    ResourceKind::User => default_groups.as_slice(),
                    ResourceKind::Group => &[],
                };
                self.upsert(
                    s,
                    Upsert {
                        kind: *kind,
                        key,
                        dn,
                        spec,
                        default_groups,
                        disabled: *disabled,
                    },
                    &mut wanted,
                )?;
                if let (Some(password), Some(how)) = (password, &spec.password) {
                    self.set_password(s, dn, how, password)?;
                }
                match (&spec.members, members) {
                    (Some(_), Some(Members::All(ids))) => self.links.set_wanted(key, ids)?,
                    (Some(_), Some(Members::Delta { added, removed })) => {
                        self.apply_member_delta(s, dn, added, removed)?;
                        self.links.change_wanted(key, added, removed)?;
                        if !removed.is_empty() {
                            self.placeholder_when_empty(s, key, dn)?;
                        }
                    }
                    _ => {}
                }
                Ok(())
            }
            Change::Remove { key, .. } => self.remove(s, key),
            Change::Archive {
                kind,
                key,
                dn,
                cells,
                at,
            } => {
                let spec = self.spec(*kind)?;
                let attributes =
                    self.resolve_refs(key, checked_cells(*kind, spec, cells)?, true)?;
                let mut wanted = Wanted::new(spec, attributes, None);
                let Some(link) = self.links.link(key)? else {
                    return Ok(());
                };
                let old_value = self.member_value(link.previous_dn(), link.value.as_deref());
                let Some(mut entry) = self.read_linked(s, &link, &wanted.read_attrs())? else {
                    // The entry was removed by hand: nothing to keep; purged in due course.
                    self.links
                        .set_state(key, link.value.as_deref(), true, Some(at))?;
                    return Ok(());
                };
                wanted.apply_bits(Some(&entry), spec, true);
                let target = dn.as_deref().unwrap_or(&link.dn);
                if !dn::same(&entry.dn, target) {
                    entry = self.move_entry(
                        s,
                        spec,
                        *kind,
                        key,
                        &entry.dn,
                        target,
                        &wanted.read_attrs(),
                    )?;
                }
                let mods = wanted.diff(&entry);
                if !mods.is_empty() {
                    s.modify(target, mods)?;
                }
                if let Some(old) = &old_value {
                    self.fix_groups(s, old, None)?;
                }
                if !dn::same(link.previous_dn(), target) {
                    self.fix_refs(s, link.previous_dn(), Some(target))?;
                }
                self.links.set(*kind, key, target)?;
                self.links
                    .set_state(key, link.value.as_deref(), true, Some(at))?;
                self.links.end_move(key)?;
                Ok(())
            }
        }
    }

    fn upsert(
        &self,
        s: &mut Session<'_>,
        u: Upsert<'_>,
        wanted: &mut Wanted<'_>,
    ) -> Result<(), Fail> {
        let Upsert {
            kind,
            key,
            dn,
            spec,
            default_groups,
            disabled,
        } = u;
        let attrs = wanted.read_attrs();
        let (link, entry) = self.find_entry(s, key, dn, spec, wanted, &attrs, true, true)?;
        // (`find_entry` does not look at the DN of a resource it has no link for: the add
        // below finds out, and an entry there is then read and claimed as it would be.)
        let unflagged = wanted.attributes.clone();
        wanted.apply_bits(entry.as_ref(), spec, disabled);
        let entry = match entry {
            Some(entry) => Some(entry),
            None => {
                // Under `conflict`, linked first: a retry after a crash then finds its own
                // entry, not a conflict. Dropped again when the add fails.
                let pre_linked = spec.on_existing == OnExisting::Conflict && link.is_none();
                if pre_linked {
                    self.links.set_fresh(kind, key, dn)?;
                    self.links.sync_now()?;
                }
                let added = match self.add(s, spec, dn, wanted.add_attrs()) {
                    // Flag bits the new entry got from the directory (AD makes a user
                    // without a password 546: disabled) are converged right away, as on
                    // any later change: read, changed, written back — unless the mapping
                    // gave their starting value (`on_disable.initial`) and the add carried it.
                    Ok(())
                        if spec.disable_bits.iter().any(|(a, _)| {
                            !spec
                                .initial_bits
                                .iter()
                                .any(|(i, _)| i.eq_ignore_ascii_case(a))
                        }) =>
                    {
                        match s.read(dn, &refs(&attrs))? {
                            Some(entry) => {
                                wanted.attributes = unflagged.clone();
                                wanted.apply_bits(Some(&entry), spec, disabled);
                                Ok(Some(entry))
                            }
                            None => Ok(None),
                        }
                    }
                    Ok(()) => Ok(None),
                    Err(Fail::Ldap(e)) if e.rc() == Some(ENTRY_ALREADY_EXISTS) && pre_linked => {
                        Err(Fail::Reject(format!(
                            "entryAlreadyExists: {dn} exists and was not created by scim-bridge (on_existing: conflict)"
                        )))
                    }
                    Err(Fail::Ldap(e)) if e.rc() == Some(ENTRY_ALREADY_EXISTS) => {
                        match s.read(dn, &refs(&attrs))? {
                            // Added meanwhile, or there but not readable before.
                            Some(entry) => match self.claim(key, spec, &entry.dn) {
                                Ok(()) => {
                                    wanted.attributes = unflagged;
                                    wanted.apply_bits(Some(&entry), spec, disabled);
                                    Ok(Some(entry))
                                }
                                Err(e) => Err(e),
                            },
                            None => Err(Fail::Ldap(e)),
                        }
                    }
                    Err(e) => Err(e),
                };
                match added {
                    Ok(entry) => entry,
                    Err(e) => {
                        if pre_linked {
                            self.links.remove(key)?;
                        }
                        return Err(e);
                    }
                }
            }
        };
        let mut reached = None;
        let landed: String;
        let mut dn = dn;
        if let Some(mut entry) = entry {
            if !dn::same(&entry.dn, dn) {
                entry = self.move_entry(s, spec, kind, key, &entry.dn, dn, &attrs)?;
            } else if dn::rdn_case_differs(&entry.dn, dn) {
                // A change of case only: AD refuses to modify a naming attribute and wants
                // a modifyDN; a directory that refuses the modifyDN (the same DN to it)
                // gets the attribute's new value by the modify below, as before.
                match self.move_entry(s, spec, kind, key, &entry.dn, dn, &attrs) {
                    Ok(renamed) => entry = renamed,
                    Err(Fail::Ldap(e)) if e.rc().is_some() => {
                        tracing::debug!(
                            dn,
                            rc = e.rc(),
                            "a case-only modifyDN was refused; the attribute is modified instead"
                        );
                    }
                    Err(e) => return Err(e),
                }
            }
            // 389-DS drops leading and trailing spaces of the new RDN value in a modifyDN
            // (`uid=john doe\ ` lands at `uid=john doe`): from here on, the entry is
            // where the directory put it (the same DN to this target, so no rename loop).
            if let Some(trimmed) = dn::trim_first_rdn(dn)
                && dn::first_rdn(&entry.dn) == dn::first_rdn(&trimmed)
            {
                landed = entry.dn.clone();
                dn = &landed;
            }
            let mods = wanted.diff(&entry);
            if !mods.is_empty() {
                s.modify(dn, mods)?;
            }
            reached = Some(entry);
        }
        // The value groups list for this entry, as it is now.
        let value = match self.member_spec().map(|m| &m.value) {
            Some(MemberValue::Attribute(attr)) if kind == ResourceKind::User => {
                let mapped = wanted
                    .attributes
                    .iter()
                    .find(|(a, _)| a.name.eq_ignore_ascii_case(attr));
                let kept = reached
                    .as_ref()
                    .filter(|_| mapped.is_some_and(|(a, _)| a.create_only))
                    .and_then(|e| values_of(e, attr).into_iter().next());
                kept.or_else(|| mapped.and_then(|(_, v)| v.as_ref()?.first().cloned()))
            }
            _ => None,
        };
        let new_value = self.member_value(dn, value.as_deref());
        let drops = disabled && spec.disable_drops_memberships;
        let first = link.as_ref().is_none_or(|l| l.fresh);
        if let Some(link) = &link {
            let old_value = self.member_value(link.previous_dn(), link.value.as_deref());
            if let Some(old) = &old_value {
                match &new_value {
                    _ if drops => self.fix_groups(s, old, None)?,
                    Some(new) if !self.same_member(old, new) => {
                        self.fix_groups(s, old, Some(new))?
                    }
                    _ => {}
                }
            }
            if !dn::same(link.previous_dn(), dn) {
                self.fix_refs(s, link.previous_dn(), Some(dn))?;
            }
        }
        if drops && let Some(new) = &new_value {
            // Also the groups a previous attempt, or a hand edit, left it in.
            self.fix_groups(s, new, None)?;
        }
        if let Some(value) = new_value.as_deref().filter(|_| !drops) {
            let rejoin = first || link.as_ref().is_some_and(|l| l.disabled);
            if rejoin {
                let mut groups = Vec::new();
                for group in self.links.groups_wanting(key)? {
                    if let Some(g) = self.links.link(&group)?
                        && g.archived.is_none()
                    {
                        groups.push(g.dn);
                    }
                }
                if first {
                    for group in default_groups {
                        self.links.add_default(key, group)?;
                    }
                    groups.extend(default_groups.iter().cloned());
                }
                self.join_groups(s, value, &groups)?;
            }
        }
        self.links.set(kind, key, dn)?;
        self.links.set_state(key, value.as_deref(), drops, None)?;
        self.links.end_move(key)?;
        self.resolve_pending(s, key)?;
        Ok(())
    }

    /// The link of `key` and its entry: the linked one if it still exists, else the one at
    /// `dn` (claimed), else — nothing linked and `adopt` — one found by the `match`
    /// attributes (claimed). `add_first`: the caller adds the entry when none is found
    /// and handles `entryAlreadyExists`, so a resource with no link and no `match` is not
    /// looked up at all.
    #[allow(clippy::too_many_arguments)]
    fn find_entry(
        &self,
        s: &mut Session<'_>,
        key: &str,
        dn: &str,
        spec: &EntrySpec,
        wanted: &Wanted<'_>,
        attrs: &[String],
        adopt: bool,
        add_first: bool,
    ) -> Result<(Option<Link>, Option<SearchEntry>), Fail> {
        let link = self.links.link(key)?;
        if add_first && link.is_none() && spec.match_attrs.is_empty() {
            // A resource never converged, in an upsert: adding is the way to find out
            // whether its DN is taken (one round trip, not two); see `upsert`.
            return Ok((None, None));
        }
        let mut entry = match &link {
            Some(link) => self.read_linked(s, link, attrs)?,
            None => None,
        };
        if entry.is_none()
            && let Some(found) = s.read(dn, &refs(attrs))?
        {
            self.claim(key, spec, &found.dn)?;
            entry = Some(found);
        }
        if entry.is_none() && link.is_none() && adopt {
            entry = self.find_match(s, key, spec, wanted, attrs)?;
        }
        Ok((link, entry))
    }

    /// Refuses to take the entry at `found` for `key` when another resource's entry is
    /// there, or when the mapping does not adopt entries it did not create.
    fn claim(&self, key: &str, spec: &EntrySpec, found: &str) -> Result<(), Fail> {
        match self.links.id_at(found)? {
            Some(owner) if owner == key => Ok(()),
            Some(owner) => Err(Fail::Reject(format!(
                "entryAlreadyExists: {found} is the entry of another resource ({owner})"
            ))),
            None if spec.on_existing == OnExisting::Conflict => Err(Fail::Reject(format!(
                "entryAlreadyExists: {found} exists and was not created by scim-bridge (on_existing: conflict)"
            ))),
            None => {
                tracing::info!(id = %key, dn = %found, "adopting an existing directory entry");
                Ok(())
            }
        }
    }

    /// The entry to adopt found by the `match` attributes (their first wanted values,
    /// any of them matching, among entries of the first object class), if any.
    fn find_match(
        &self,
        s: &mut Session<'_>,
        key: &str,
        spec: &EntrySpec,
        wanted: &Wanted<'_>,
        attrs: &[String],
    ) -> Result<Option<SearchEntry>, Fail> {
        let mut parts = Vec::new();
        for name in &spec.match_attrs {
            let value = wanted
                .attributes
                .iter()
                .find(|(a, _)| a.name.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.as_ref()?.first());
            if let Some(value) = value {
                parts.push(format!("({name}={})", ldap3::ldap_escape(value)));
            }
        }
        if parts.is_empty() {
            return Ok(None);
        }
        let any = if parts.len() == 1 {
            parts.remove(0)
        } else {
            format!("(|{})", parts.concat())
        };
        let filter = match spec.object_classes.first() {
            Some(class) => format!("(&(objectClass={}){any})", ldap3::ldap_escape(class)),
            None => any,
        };
        let mut found = s.subtree(&self.schema.base, &filter, &refs(attrs))?;
        match found.len() {
            0 => Ok(None),
            1 => {
                let entry = found.remove(0);
                self.claim(key, spec, &entry.dn)?;
                Ok(Some(entry))
            }
            n => Err(Fail::Reject(format!(
                "constraintViolation: {n} entries match {filter} under {}; cannot choose one to adopt",
                self.schema.base
            ))),
        }
    }

    /// Writes a new password into the entry at `dn` (after it was converged): one replace
    /// of the password attribute, over an encrypted connection (checked before). The
    /// directory hashes it; a password its policy refuses (AD answers
    /// unwillingToPerform or constraintViolation) rejects the change.
    fn set_password(
        &self,
        s: &mut Session<'_>,
        dn: &str,
        how: &PasswordSpec,
        password: &Password,
    ) -> Result<(), Fail> {
        if let Some(refusal) = &self.password_refusal {
            return Err(Fail::Reject(refusal.clone()));
        }
        let value = how.encoding.encode(password);
        match s.replace_secret(dn, &how.attribute, value) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.rc(), Some(19 | 53)) => {
                let text = e.server_text().unwrap_or_default();
                Err(Fail::Reject(format!(
                    "the directory refused the password of {dn}{}{text}",
                    if text.is_empty() { "" } else { ": " }
                )))
            }
            Err(e) => Err(Fail::Ldap(e)),
        }
    }

    /// Adds the entry, creating missing parents first when the mapping says so.
    fn add(
        &self,
        s: &mut Session<'_>,
        spec: &EntrySpec,
        dn: &str,
        attrs: Vec<(String, HashSet<String>)>,
    ) -> Result<(), Fail> {
        match s.add(dn, attrs.clone()) {
            Err(e) if e.rc() == Some(NO_SUCH_OBJECT) => {
                let parent = dn::parent(dn).unwrap_or_default();
                if !spec.create_parents {
                    return Err(Fail::Reject(format!(
                        "noSuchObject: the parent entry {parent} does not exist (create it, or set create_parents: true)"
                    )));
                }
                self.ensure_parent(s, parent, 0)?;
                s.add(dn, attrs).map_err(Fail::Ldap)
            }
            other => other.map_err(Fail::Ldap),
        }
    }

    /// Moves or renames the entry at `from` to `to` (new parents created when the mapping
    /// says so) and reads it again.
    /// The entry `link` names: at its DN, or — a rename in progress when the daemon
    /// stopped — still at the DN it was moving from.
    fn read_linked(
        &self,
        s: &mut Session<'_>,
        link: &Link,
        attrs: &[String],
    ) -> Result<Option<SearchEntry>, Fail> {
        if let Some(entry) = s.read(&link.dn, &refs(attrs))? {
            return Ok(Some(entry));
        }
        match &link.moving_from {
            Some(from) => Ok(s.read(from, &refs(attrs))?),
            None => Ok(None),
        }
    }

    /// Renames `key`'s entry from `from` to `to`, linking it to `to` durably first (see
    /// `links::MOVING_FROM`): a crash right after the modifyDN must not leave the link at
    /// the old DN, where a redelivery would add a second entry.
    #[allow(clippy::too_many_arguments)]
    fn move_entry(
        &self,
        s: &mut Session<'_>,
        spec: &EntrySpec,
        kind: ResourceKind,
        key: &str,
        from: &str,
        to: &str,
        attrs: &[String],
    ) -> Result<SearchEntry, Fail> {
        self.links.begin_move(kind, key, from, to)?;
        match self.rename(s, spec, from, to, attrs) {
            Ok(entry) => Ok(entry),
            Err(e) => {
                self.links.undo_move(kind, key, from)?;
                Err(e)
            }
        }
    }

    fn rename(
        &self,
        s: &mut Session<'_>,
        spec: &EntrySpec,
        from: &str,
        to: &str,
        attrs: &[String],
    ) -> Result<SearchEntry, Fail> {
        let (rdn, parent) = dn::split_first(to);
        let new_parent =
            parent.filter(|p| dn::parent(from).is_none_or(|old| DnKey::of(old) != DnKey::of(p)));
        // The new name with spaces around its value is the same DN as the name without
        // them, yet 389-DS checks only the spaced one for a collision and then drops the
        // spaces: the entry would land on another one's name. Taken is taken.
        if let Some(trimmed) = dn::trim_first_rdn(to)
            && !dn::same(&trimmed, from)
            && s.read(&trimmed, &["1.1"])?.is_some()
        {
            return Err(Fail::Reject(format!(
                "entryAlreadyExists: {trimmed} exists, and {to} is the same name"
            )));
        }
        match s.rename(from, rdn, new_parent) {
            Err(e) if e.rc() == Some(NO_SUCH_OBJECT) && new_parent.is_some() => {
                let parent = new_parent.unwrap_or_default();
                if !spec.create_parents {
                    return Err(Fail::Reject(format!(
                        "noSuchObject: the new parent entry {parent} does not exist (create it, or set create_parents: true)"
                    )));
                }
                self.ensure_parent(s, parent, 0)?;
                s.rename(from, rdn, new_parent)?;
            }
            other => other?,
        }
        if let Some(entry) = s.read(to, &refs(attrs))? {
            return Ok(entry);
        }
        // 389-DS dropped the edge spaces of the new RDN value: the entry is there.
        match dn::trim_first_rdn(to) {
            Some(trimmed) => s.read(&trimmed, &refs(attrs))?,
            None => None,
        }
        .ok_or_else(|| Fail::Vanished(to.to_string()))
    }

    /// Adds the container entry `dn` (`ou`, `o`, `l` or `dc` named), its missing parents
    /// first. One already there is fine.
    fn ensure_parent(&self, s: &mut Session<'_>, dn: &str, depth: usize) -> Result<(), Fail> {
        let avas = dn::first_rdn(dn).unwrap_or_default();
        let [(ty, value)] = avas.as_slice() else {
            return Err(Fail::Reject(format!(
                "noSuchObject: cannot create the parent entry {dn} (not a single-valued RDN)"
            )));
        };
        let class = match ty.as_str() {
            "ou" => "organizationalUnit",
            "o" => "organization",
            "l" => "locality",
            "dc" => "domain",
            _ => {
                return Err(Fail::Reject(format!(
                    "noSuchObject: the parent entry {dn} does not exist and create_parents creates ou=, o=, l= and dc= entries only"
                )));
            }
        };
        let attrs = vec![
            (
                OBJECT_CLASS.to_string(),
                HashSet::from([class.to_string(), "top".to_string()]),
            ),
            (ty.clone(), HashSet::from([value.clone()])),
        ];
        match s.add(dn, attrs.clone()) {
            Ok(()) => {
                tracing::info!(dn = %dn, "created a missing parent entry");
                Ok(())
            }
            Err(e) if e.rc() == Some(ENTRY_ALREADY_EXISTS) => Ok(()),
            Err(e) if e.rc() == Some(NO_SUCH_OBJECT) && depth < 16 => {
                let Some(parent) = dn::parent(dn) else {
                    return Err(e.into());
                };
                self.ensure_parent(s, parent, depth + 1)?;
                match s.add(dn, attrs) {
                    Ok(()) => {
                        tracing::info!(dn = %dn, "created a missing parent entry");
                        Ok(())
                    }
                    Err(e) if e.rc() == Some(ENTRY_ALREADY_EXISTS) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// How groups list their members.
    fn member_spec(&self) -> Option<&MemberSpec> {
        self.schema.groups.as_ref().and_then(|g| g.members.as_ref())
    }

    /// The value groups list for an entry at `dn` whose member value is `value`: the DN,
    /// or the value when groups list an attribute (`None` when it has none).
    fn member_value(&self, dn: &str, value: Option<&str>) -> Option<String> {
        match self.member_spec().map(|m| &m.value) {
            Some(MemberValue::Attribute(_)) => value.map(str::to_string),
            _ => Some(dn.to_string()),
        }
    }

    /// Whether two member values name the same member.
    fn same_member(&self, a: &str, b: &str) -> bool {
        match self.member_spec().map(|m| &m.value) {
            Some(MemberValue::Attribute(_)) => a == b,
            _ => dn::same(a, b),
        }
    }

    /// Adds the member value `value` to the groups at the DNs `groups` (default groups,
    /// groups that want it): to the groups' member attribute, dropping the placeholder. A
    /// group listing it already is left alone; a group that does not exist, or refuses
    /// the member, is logged and skipped.
    fn join_groups(&self, s: &mut Session<'_>, value: &str, groups: &[String]) -> Result<(), Fail> {
        let members = self.member_spec();
        let attr = members.map_or("member", |m| m.attribute.as_str());
        let placeholder = members.and_then(|m| m.placeholder.as_deref());
        let mut done: Vec<&str> = Vec::new();
        for group in groups {
            if done.iter().any(|d| dn::same(d, group)) {
                continue;
            }
            done.push(group);
            let Some(entry) = s.read(group, &[attr])? else {
                tracing::warn!(group = %group, member = %value, "a group to join does not exist; skipped");
                continue;
            };
            let values = values_of(&entry, attr);
            if values.iter().any(|v| self.same_member(v, value)) {
                continue;
            }
            let mut mods = vec![Mod::Add(
                attr.to_string(),
                HashSet::from([value.to_string()]),
            )];
            if let Some(placeholder) = placeholder {
                let held: HashSet<String> = values
                    .iter()
                    .filter(|v| dn::same(v, placeholder))
                    .cloned()
                    .collect();
                if !held.is_empty() {
                    mods.push(Mod::Delete(attr.to_string(), held));
                }
            }
            match s.modify(&entry.dn, mods) {
                Ok(()) => {}
                Err(e) if e.rc().is_some_and(refused) || e.rc() == Some(NO_SUCH_OBJECT) => {
                    tracing::warn!(group = %group, member = %value, error = %e.error, "a group refuses a member; skipped");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn remove(&self, s: &mut Session<'_>, key: &str) -> Result<(), Fail> {
        let Some(link) = self.links.link(key)? else {
            return Ok(());
        };
        // Both DNs of a rename cut short by a crash: the entry is at one of them.
        for dn in std::iter::once(&link.dn).chain(link.moving_from.as_ref()) {
            if let Some(value) = self.member_value(dn, link.value.as_deref()) {
                self.fix_groups(s, &value, None)?;
            }
            self.fix_refs(s, dn, None)?;
            s.delete(dn)?;
        }
        self.links.remove(key)?;
        self.links.clear_pending_of(key)?;
        Ok(())
    }

    /// Replaces the SCIM ids of reference attributes (`dn_reference`) with the linked DNs.
    /// A reference not linked yet is left out of the change (the entry keeps what it has)
    /// and remembered as pending for the entry of `key`; a resolved or absent one forgets
    /// any pending one. Only the first id of a reference counts.
    fn resolve_refs<'a>(
        &self,
        key: &str,
        attributes: Attributes<'a>,
        record: bool,
    ) -> Result<Attributes<'a>, Fail> {
        let mut out = Vec::with_capacity(attributes.len());
        for (spec, values) in attributes {
            if !spec.dn_reference {
                out.push((spec, values));
                continue;
            }
            let Some(target) = values.as_ref().and_then(|ids| ids.first()) else {
                if record {
                    self.links.clear_pending(key, &spec.name)?;
                }
                out.push((spec, None));
                continue;
            };
            if values.as_ref().is_some_and(|ids| ids.len() > 1) {
                tracing::warn!(id = %key, attribute = %spec.name, "a reference holds several ids; only the first is written");
            }
            match self.links.get(target)? {
                Some(dn) => {
                    if record {
                        self.links.clear_pending(key, &spec.name)?;
                    }
                    out.push((spec, Some(vec![dn])));
                }
                None if record => {
                    tracing::debug!(id = %key, attribute = %spec.name, target = %target, "reference not in the directory yet; written when it is");
                    self.links.set_pending(key, &spec.name, target)?;
                }
                None => {}
            }
        }
        Ok(out)
    }

    /// Writes the pending references that `key`, now linked, completes: those naming it,
    /// and those it holds whose target is linked (converged meanwhile). A referencing
    /// entry gone, or refusing the value, drops the pending reference (logged).
    fn resolve_pending(&self, s: &mut Session<'_>, key: &str) -> Result<(), Fail> {
        for (id, attr, target) in self.links.pending_involving(key)? {
            let (Some(entry), Some(dn)) = (self.links.get(&id)?, self.links.get(&target)?) else {
                continue;
            };
            match s.modify(
                &entry,
                vec![Mod::Replace(attr.clone(), HashSet::from([dn]))],
            ) {
                Ok(()) => {}
                Err(e) if e.rc() == Some(NO_SUCH_OBJECT) => {
                    tracing::debug!(dn = %entry, "the entry holding a pending reference is gone");
                }
                Err(e) if e.rc().is_some_and(refused) => {
                    tracing::warn!(dn = %entry, attribute = %attr, target = %target, "the directory refuses a pending reference; dropped");
                }
                Err(e) => return Err(e.into()),
            }
            self.links.resolved_pending(&id, &attr, &target)?;
        }
        Ok(())
    }

    /// Makes the linked entries whose reference attributes hold `old` hold `new` instead
    /// (a rename or move), or no longer hold it (`None`: a removal). Like
    /// [`Self::fix_groups`]: one one-level search per parent of the linked entries of a
    /// kind and reference attribute.
    fn fix_refs(&self, s: &mut Session<'_>, old: &str, new: Option<&str>) -> Result<(), Fail> {
        let old_key = DnKey::of(old);
        for (kind, spec) in [
            (ResourceKind::User, &self.schema.users),
            (ResourceKind::Group, &self.schema.groups),
        ] {
            let Some(spec) = spec else { continue };
            let refs: Vec<&str> = spec
                .attributes
                .iter()
                .filter(|a| a.dn_reference)
                .map(|a| a.name.as_str())
                .collect();
            if refs.is_empty() {
                continue;
            }
            let parents = self.links.parents_of(kind)?;
            for attr in refs {
                let filter = format!("({attr}={})", ldap3::ldap_escape(old));
                for parent in &parents {
                    for entry in s.children(parent, &filter, &[attr])? {
                        if !self.links.is_linked_dn(&entry.dn)? {
                            continue;
                        }
                        let values = values_of(&entry, attr);
                        let mut mods = vec![Mod::Delete(
                            attr.to_string(),
                            HashSet::from([old.to_string()]),
                        )];
                        if let Some(new) = new {
                            let new_key = DnKey::of(new);
                            if !values
                                .iter()
                                .any(|v| DnKey::of(v) != old_key && DnKey::of(v) == new_key)
                            {
                                mods.push(Mod::Add(
                                    attr.to_string(),
                                    HashSet::from([new.to_string()]),
                                ));
                            }
                        }
                        s.modify(&entry.dn, mods)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The member values (linked DNs, or member attribute values) of member ids, in
    /// order, without duplicates. Ids not linked yet are left out (they join when they
    /// are linked), and so are disabled users whose policy drops memberships and archived
    /// entries.
    fn member_values(&self, ids: &[String]) -> Result<Vec<String>, Fail> {
        let mut values: Vec<String> = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(link) = self.links.link(id)? else {
                tracing::debug!(member = %id, "member not in the directory yet; added when it is");
                continue;
            };
            if link.disabled || link.archived.is_some() {
                continue;
            }
            if let Some(value) = self.member_value(&link.dn, link.value.as_deref())
                && !values.iter().any(|v| self.same_member(v, &value))
            {
                values.push(value);
            }
        }
        Ok(values)
    }

    /// The member values a change gives the group at `dn` as a whole (`None`: the change
    /// does not converge the member list: no members mapped, or a member delta).
    fn all_member_values(
        &self,
        spec: &EntrySpec,
        dn: &str,
        members: Option<&Members>,
    ) -> Result<Option<Vec<String>>, Fail> {
        match (&spec.members, members) {
            (Some(_), Some(Members::All(ids))) => Ok(Some(self.group_members(dn, ids)?)),
            _ => Ok(None),
        }
    }

    /// The member values a delta adds to and deletes from the group at `dn`: added ids
    /// that are linked (and neither disabled with dropped memberships nor archived),
    /// removed ids that are linked and did not join the group as their default group.
    fn delta_values(
        &self,
        dn: &str,
        added: &[String],
        removed: &[String],
    ) -> Result<(Vec<String>, Vec<String>), Fail> {
        let add = self.member_values(added)?;
        let mut delete = Vec::with_capacity(removed.len());
        for id in removed {
            let Some(link) = self.links.link(id)? else {
                continue;
            };
            if self.links.is_default(id, dn)? {
                continue;
            }
            if let Some(value) = self.member_value(&link.dn, link.value.as_deref()) {
                delete.push(value);
            }
        }
        Ok((add, delete))
    }

    /// Adds and deletes the member values of a delta at the group `dn` with one modify
    /// each, whatever the group's size: O(ids named). A value that is already there (or
    /// already gone) is not an error: the values are then written one by one, skipping
    /// those. The placeholder leaves when a member arrives and comes back when the last
    /// one leaves (the directory refuses an empty member attribute: objectClassViolation).
    fn apply_member_delta(
        &self,
        s: &mut Session<'_>,
        dn: &str,
        added: &[String],
        removed: &[String],
    ) -> Result<(), Fail> {
        let Some(spec) = self.member_spec() else {
            return Ok(());
        };
        let attr = spec.attribute.as_str();
        let placeholder = spec.placeholder.as_deref();
        let (add, delete) = self.delta_values(dn, added, removed)?;
        if !add.is_empty() {
            self.modify_values(s, dn, attr, &add, true)?;
            if let Some(p) = placeholder
                && !add.iter().any(|v| self.same_member(v, p))
            {
                self.modify_values(s, dn, attr, &[p.to_string()], false)?;
            }
        }
        if !delete.is_empty() {
            let values: HashSet<String> = delete.iter().cloned().collect();
            match s.modify(dn, vec![Mod::Delete(attr.to_string(), values.clone())]) {
                Ok(()) => {}
                Err(e) if e.rc() == Some(OBJECT_CLASS_VIOLATION) && placeholder.is_some() => {
                    let p = placeholder.unwrap_or_default().to_string();
                    s.modify(
                        dn,
                        vec![
                            Mod::Add(attr.to_string(), HashSet::from([p])),
                            Mod::Delete(attr.to_string(), values),
                        ],
                    )?;
                }
                Err(e) if e.rc() == Some(NO_SUCH_ATTRIBUTE) => {
                    self.modify_values(s, dn, attr, &delete, false)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// After members left the group `key` at `dn`: the placeholder when none is left,
    /// also where the directory allows an empty member attribute (389-DS's groupOfNames)
    /// and so never refused the last delete — a group looks the same on every directory.
    fn placeholder_when_empty(&self, s: &mut Session<'_>, key: &str, dn: &str) -> Result<(), Fail> {
        let Some(spec) = self.member_spec() else {
            return Ok(());
        };
        let Some(p) = spec.placeholder.as_deref() else {
            return Ok(());
        };
        if self.links.wants_a_linked_member(key)? || !self.links.default_members(dn)?.is_empty() {
            return Ok(());
        }
        self.modify_values(s, dn, &spec.attribute, &[p.to_string()], true)
    }

    /// Adds (or deletes) `values` of `attr` at `dn` in one modify; when the directory
    /// says some are there already (or not there), one modify per value, skipping those.
    fn modify_values(
        &self,
        s: &mut Session<'_>,
        dn: &str,
        attr: &str,
        values: &[String],
        add: bool,
    ) -> Result<(), Fail> {
        let benign = if add {
            ATTRIBUTE_OR_VALUE_EXISTS
        } else {
            NO_SUCH_ATTRIBUTE
        };
        let make = |values: HashSet<String>| {
            if add {
                Mod::Add(attr.to_string(), values)
            } else {
                Mod::Delete(attr.to_string(), values)
            }
        };
        let all: HashSet<String> = values.iter().cloned().collect();
        match s.modify(dn, vec![make(all)]) {
            Ok(()) => return Ok(()),
            Err(e) if e.rc() == Some(benign) && values.len() > 1 => {}
            Err(e) if e.rc() == Some(benign) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for value in values {
            match s.modify(dn, vec![make(HashSet::from([value.clone()]))]) {
                Ok(()) => {}
                Err(e) if e.rc() == Some(benign) => {}
                Err(e) if !add && e.rc() == Some(OBJECT_CLASS_VIOLATION) => {
                    // The last value: the placeholder takes its place when there is one.
                    let Some(p) = self.member_spec().and_then(|m| m.placeholder.clone()) else {
                        return Err(e.into());
                    };
                    s.modify(
                        dn,
                        vec![
                            Mod::Add(attr.to_string(), HashSet::from([p])),
                            Mod::Delete(attr.to_string(), HashSet::from([value.clone()])),
                        ],
                    )?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The member values of the group at `dn`: those of its SCIM members, then those of
    /// the users that joined it as their default group (LDAP has no membership origin:
    /// they are kept by remembering them).
    fn group_members(&self, dn: &str, ids: &[String]) -> Result<Vec<String>, Fail> {
        let defaults = self.links.default_members(dn)?;
        if defaults.is_empty() {
            return self.member_values(ids);
        }
        let mut all = ids.to_vec();
        all.extend(defaults);
        self.member_values(&all)
    }

    /// Makes the linked groups that list the member value `old` list `new` instead (a
    /// rename or move), or no longer list it (`None`: a removal; the placeholder comes
    /// back when it was the last member). See the module doc.
    fn fix_groups(&self, s: &mut Session<'_>, old: &str, new: Option<&str>) -> Result<(), Fail> {
        let Some(members) = self.member_spec() else {
            return Ok(());
        };
        let attr = members.attribute.as_str();
        let filter = format!("({attr}={})", ldap3::ldap_escape(old));
        for parent in self.links.parents_of(ResourceKind::Group)? {
            for group in s.children(&parent, &filter, &[attr])? {
                if !self.links.is_linked_dn(&group.dn)? {
                    continue;
                }
                let values = values_of(&group, attr);
                let held: HashSet<String> = values
                    .iter()
                    .filter(|v| self.same_member(v, old))
                    .cloned()
                    .collect();
                if held.is_empty() {
                    continue;
                }
                let others: Vec<&String> = values
                    .iter()
                    .filter(|v| !self.same_member(v, old))
                    .collect();
                let mut mods = vec![Mod::Delete(attr.to_string(), held)];
                let replacement = match new {
                    Some(new) => (!others.iter().any(|v| self.same_member(v, new))).then_some(new),
                    None if others.is_empty() => members.placeholder.as_deref(),
                    None => None,
                };
                if let Some(value) = replacement {
                    mods.push(Mod::Add(
                        attr.to_string(),
                        HashSet::from([value.to_string()]),
                    ));
                }
                s.modify(&group.dn, mods)?;
            }
        }
        Ok(())
    }
}

/// The resources and DNs the changes of a wave take: no two changes of a wave are of one
/// resource or at one DN.
#[derive(Default)]
struct Claims {
    keys: HashSet<String>,
    dns: HashSet<DnKey>,
}

/// One upsert, as `converge` hands it over.
struct Upsert<'a> {
    kind: ResourceKind,
    key: &'a str,
    dn: &'a str,
    spec: &'a EntrySpec,
    default_groups: &'a [String],
    disabled: bool,
}

/// The cells of a change matched with their attribute specs, as attribute values.
/// Rejects a cell naming an attribute the entries do not map (a mapping bug) or naming
/// one twice.
fn checked_cells<'a>(
    kind: ResourceKind,
    spec: &'a EntrySpec,
    cells: &[(String, Cell)],
) -> Result<Attributes<'a>, Fail> {
    let mut out: Attributes<'a> = Vec::with_capacity(cells.len());
    for (name, cell) in cells {
        let Some(attr) = spec
            .attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
        else {
            return Err(Fail::Reject(format!(
                "attribute '{name}' is not a mapped attribute of the {} entries",
                kind.name()
            )));
        };
        if out.iter().any(|(a, _)| a.name == attr.name) {
            return Err(Fail::Reject(format!(
                "attribute '{name}' of the {} entries is given twice",
                kind.name()
            )));
        }
        out.push((attr, cell_values(attr, cell)));
    }
    Ok(out)
}

impl Target for LdapTarget {
    fn apply(&self, change: &Change) -> Outcome {
        LdapTarget::apply(self, change)
    }
    fn apply_batch(&self, changes: &[Change]) -> Vec<Outcome> {
        LdapTarget::apply_batch(self, changes)
    }
    fn deliver_telling(
        &self,
        _endpoint: &str,
        changes: &[Change],
        _seqs: &[u64],
        told: &(dyn Fn(usize, &Outcome) + Sync),
        feed: &dyn Feed,
    ) -> Vec<Outcome> {
        LdapTarget::deliver_fed(self, changes, told, feed)
    }
    fn plan(&self, change: &Change) -> Result<Vec<String>, Outcome> {
        LdapTarget::plan(self, change)
    }
    fn held(&self, kind: ResourceKind) -> Result<Vec<String>, TargetError> {
        LdapTarget::held(self, kind)
    }

    /// Entries archived (`on_delete: archive`) before `before`, from the links file.
    fn archived_before(
        &self,
        kind: ResourceKind,
        before: &str,
    ) -> Result<Vec<String>, TargetError> {
        Ok(self.links.archived_before(kind, before)?)
    }
    fn password_refusal(&self) -> Option<String> {
        self.password_refusal.clone()
    }
}
