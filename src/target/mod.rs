//! Targets: where identities land. A target *converges*: given the desired row for a
//! resource (computed by the mapping from the resource's full after-image), it makes its
//! storage match, touching only what differs, so applying the same change twice is a
//! no-op and a row removed by hand comes back on the next change.
//!
//! The mapping (pure) turns a journal record into a [`Change`]; a target applies it and
//! answers with an [`Outcome`]: applied, rejected (the target refuses the data: a
//! constraint, a missing required value — the provider gets a 400) or unavailable (the
//! target cannot be reached or written now — the record stays pending and is delivered
//! later).

pub mod ldap;
pub mod sqlite;

use crate::scim::schema::ResourceKind;

/// A value as the target stores it. Booleans are `Integer` 0/1; multi-valued columns are
/// `Text` holding a JSON array; timestamps are `Text` in RFC 3339 (UTC, milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Text(String),
    Integer(i64),
}

/// The declared type of a target column (SQLite: TEXT or INTEGER affinity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Integer,
    Boolean,
    Timestamp,
}

impl ColumnType {
    /// The SQL type name used in CREATE TABLE.
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text | ColumnType::Timestamp => "TEXT",
            ColumnType::Integer | ColumnType::Boolean => "INTEGER",
        }
    }
}

/// One mapped column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: String,
    pub ty: ColumnType,
    /// A UNIQUE index on the column (NULLs do not collide).
    pub unique: bool,
    /// Written when the row is inserted, never changed afterwards.
    pub create_only: bool,
    /// An absent value (Null) leaves the stored value as it is instead of clearing it.
    pub keep_when_empty: bool,
    /// The value is a SCIM id (e.g. `manager.value`) that the target writes as the DN of
    /// the linked entry (LDAP); left out until that resource is known to the target.
    pub dn_reference: bool,
}

/// One table of users or groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    /// The TEXT PRIMARY KEY column holding the SCIM id.
    pub key_column: String,
    pub columns: Vec<ColumnSpec>,
    /// When the delete policy archives: the TEXT column holding the archive time (NULL =
    /// not archived). Created by the target; purge deletes rows archived long enough ago.
    pub archive_column: Option<String>,
}

/// The membership table: one row per (group, member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipSpec {
    pub name: String,
    pub group_column: String,
    pub member_column: String,
    /// TEXT column: `scim` for memberships from the provider, `default` for default
    /// groups the mapping adds to new users. Converging a group touches only `scim` rows.
    pub origin_column: String,
}

/// Everything a target stores.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetSchema {
    pub users: Option<TableSpec>,
    pub groups: Option<TableSpec>,
    pub memberships: Option<MembershipSpec>,
}

impl TargetSchema {
    pub fn table(&self, kind: ResourceKind) -> Option<&TableSpec> {
        match kind {
            ResourceKind::User => self.users.as_ref(),
            ResourceKind::Group => self.groups.as_ref(),
        }
    }
}

/// What the mapping asks a target to do for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Make the row match `cells` (insert when missing). For groups, `members` says
    /// which member ids (`scim` memberships) the group has; for users, `default_groups`
    /// are group keys to add (`default` memberships) when the row is inserted.
    Upsert {
        kind: ResourceKind,
        key: String,
        /// The entry's distinguished name, for targets that name entries (LDAP);
        /// already RFC 4514-escaped. `None` for table targets.
        dn: Option<String>,
        cells: Vec<(String, Cell)>,
        members: Option<Members>,
        default_groups: Vec<String>,
        /// The resource is disabled (a user with `active: false`, or deleted under the
        /// disable policy): `cells` already hold the `on_disable` values; targets with
        /// disable behaviour beyond values (LDAP: flag bits, dropped memberships) apply it.
        disabled: bool,
        /// A new password the provider sent with this change (users, when the mapping
        /// writes passwords): written, never compared, never read back. `None` leaves the
        /// entry's password as it is.
        password: Option<Password>,
    },
    /// Remove the row and every membership it takes part in (deleted, or out of scope).
    Remove { kind: ResourceKind, key: String },
    /// Keep the row, set `cells` (e.g. disabled) and the archive time `at`, drop its
    /// memberships; purged once archived longer than the retention period.
    Archive {
        kind: ResourceKind,
        key: String,
        /// Where the entry goes (LDAP, with an archive OU); `None`: it stays where it is.
        dn: Option<String>,
        cells: Vec<(String, Cell)>,
        at: String,
    },
    /// Nothing to do (e.g. a resource outside the scope that the target never had).
    Nothing,
}

/// A password on its way to the directory: only [`Password::expose`] shows it; `Debug`
/// prints `Password(***)`, so a change in a log line or a panic message cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(text: String) -> Password {
        Password(text)
    }

    /// The cleartext. Call it only where the value is encoded for the directory.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Where and how the LDAP target writes a user's password (`mapping.users.password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordSpec {
    pub attribute: String,
    pub encoding: PasswordEncoding,
}

/// How a password becomes the attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordEncoding {
    /// The UTF-8 cleartext (`userPassword`): the directory hashes it (389-DS always;
    /// OpenLDAP with `ppolicy_hash_cleartext`).
    Text,
    /// Active Directory's `unicodePwd`: the password in double quotes, UTF-16LE.
    AdUnicodePwd,
}

impl PasswordEncoding {
    /// The encoding an attribute takes unless the mapping says otherwise.
    pub fn for_attribute(attribute: &str) -> PasswordEncoding {
        if attribute.eq_ignore_ascii_case("unicodePwd") {
            PasswordEncoding::AdUnicodePwd
        } else {
            PasswordEncoding::Text
        }
    }

    /// The attribute value for `password`.
    pub fn encode(self, password: &Password) -> Vec<u8> {
        match self {
            PasswordEncoding::Text => password.expose().as_bytes().to_vec(),
            PasswordEncoding::AdUnicodePwd => format!("\"{}\"", password.expose())
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        }
    }
}

/// The members a change gives a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// Exactly these member ids.
    All(Vec<String>),
    /// These ids join and these leave; the other members stay (a member delta: the
    /// target's work is proportional to the ids named, not to the group's size).
    Delta {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

/// How a target answered a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// The target refuses the data; the detail is the target's own diagnostic.
    Rejected(String),
    /// The target cannot be reached or written now; retry later.
    Unavailable(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target database {path}: {detail}")]
    Open { path: String, detail: String },
    /// A mapping change that would lose data (a column removed or retyped).
    #[error("{0}")]
    Destructive(String),
    #[error("target: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Changes for a delivery round that is still running: the records committed after the
/// round's own, in journal order, for a target that converges changes side by side and
/// would otherwise leave its connections idle until the next round
/// ([`Target::deliver_telling`]).
pub trait Feed: Sync {
    /// The change of the next record, if `accept` takes it, with its index in the round
    /// (the next after the round's changes and the ones fed before); waits up to `wait`
    /// for a record to arrive. `None`: none came, the round is full, or `accept` refused
    /// the change; after a refusal the feed stays closed and that record opens the next
    /// round (no record is converged before one ahead of it).
    fn next(
        &self,
        wait: std::time::Duration,
        accept: &mut dyn FnMut(&Change) -> bool,
    ) -> Option<(usize, Change)>;
}

/// A feed that never has anything (a round converged on its own).
pub struct NoFeed;

impl Feed for NoFeed {
    fn next(
        &self,
        _wait: std::time::Duration,
        _accept: &mut dyn FnMut(&Change) -> bool,
    ) -> Option<(usize, Change)> {
        None
    }
}

/// A target the delivery worker can converge changes into.
pub trait Target: Send + Sync {
    fn apply(&self, change: &Change) -> Outcome;
    /// Applies several changes in order, their outcomes in order; a target may commit
    /// them together. Once one is `Unavailable`, the ones after it are not applied (they
    /// are `Unavailable` too).
    fn apply_batch(&self, changes: &[Change]) -> Vec<Outcome> {
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            let outcome = match out.last() {
                Some(Outcome::Unavailable(e)) => Outcome::Unavailable(e.clone()),
                _ => self.apply(change),
            };
            out.push(outcome);
        }
        out
    }
    /// Applies a delivery round of `endpoint`: `changes` as [`Target::apply_batch`] does,
    /// `seqs[i]` the journal record of `changes[i]`. A target that keeps a delivery
    /// cursor ([`Target::delivered_through`]) records, with the changes and in the same
    /// commit, the last record it gave a verdict on, and may then commit without
    /// waiting for the disk: a tail lost in a crash is delivered again.
    fn deliver(&self, endpoint: &str, changes: &[Change], seqs: &[u64]) -> Vec<Outcome> {
        let _ = (endpoint, seqs);
        self.apply_batch(changes)
    }
    /// [`Target::deliver`], telling `told` the index and outcome of each change whose
    /// verdict is final (applied or rejected) as soon as the target can vouch for it: a
    /// directory once it answered; by default, a table target, after its commit (the rows
    /// must be visible to the applications reading them before anyone hears "applied").
    ///
    /// A target may also converge changes that arrive while the round runs: it takes
    /// them from `feed` (numbered after `changes`), and its outcomes then cover them too,
    /// in that order. By default it takes none.
    fn deliver_telling(
        &self,
        endpoint: &str,
        changes: &[Change],
        seqs: &[u64],
        told: &(dyn Fn(usize, &Outcome) + Sync),
        feed: &dyn Feed,
    ) -> Vec<Outcome> {
        let _ = feed;
        let out = self.deliver(endpoint, changes, seqs);
        for (i, outcome) in out.iter().enumerate() {
            if !matches!(outcome, Outcome::Unavailable(_)) {
                told(i, outcome);
            }
        }
        out
    }
    /// The last journal record of `endpoint` whose delivery this target holds durably
    /// (`None`: the target keeps no cursor, every verdict it gave is durable). At start
    /// the delivery worker delivers again the applied records after it.
    fn delivered_through(&self, endpoint: &str) -> Result<Option<u64>, TargetError> {
        let _ = endpoint;
        Ok(None)
    }
    /// What applying `change` would write, without writing anything (reconcile
    /// `--dry-run`, previews): human-readable lines (LDIF for a directory); empty when
    /// the target already matches. Err: the outcome applying it would have now (rejected,
    /// or the target is unavailable).
    fn plan(&self, change: &Change) -> Result<Vec<String>, Outcome>;
    /// The ids of the resources of `kind` the target holds (archived ones excluded).
    fn held(&self, kind: ResourceKind) -> Result<Vec<String>, TargetError>;
    /// Keys of rows archived before `before` (RFC 3339, fixed width), due for purging.
    fn archived_before(&self, kind: ResourceKind, before: &str)
    -> Result<Vec<String>, TargetError>;
    /// Why this target cannot be given a password now (`None`: it can, or it writes
    /// none): an LDAP connection without TLS.
    fn password_refusal(&self) -> Option<String> {
        None
    }
}

impl Target for sqlite::SqliteTarget {
    fn apply(&self, change: &Change) -> Outcome {
        sqlite::SqliteTarget::apply(self, change)
    }
    fn apply_batch(&self, changes: &[Change]) -> Vec<Outcome> {
        sqlite::SqliteTarget::apply_batch(self, changes)
    }
    fn deliver(&self, endpoint: &str, changes: &[Change], seqs: &[u64]) -> Vec<Outcome> {
        sqlite::SqliteTarget::deliver(self, endpoint, changes, seqs)
    }
    fn delivered_through(&self, endpoint: &str) -> Result<Option<u64>, TargetError> {
        sqlite::SqliteTarget::delivered_through(self, endpoint)
    }
    fn plan(&self, change: &Change) -> Result<Vec<String>, Outcome> {
        sqlite::SqliteTarget::plan(self, change)
    }
    fn held(&self, kind: ResourceKind) -> Result<Vec<String>, TargetError> {
        sqlite::SqliteTarget::held(self, kind)
    }
    fn archived_before(
        &self,
        kind: ResourceKind,
        before: &str,
    ) -> Result<Vec<String>, TargetError> {
        sqlite::SqliteTarget::archived_before(self, kind, before)
    }
}

/// What the LDAP target writes for one resource type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntrySpec {
    /// Object classes the entry must have (added if missing, never removed).
    pub object_classes: Vec<String>,
    /// The mapped attributes, by LDAP attribute name (the `cells` of a change use these).
    pub attributes: Vec<ColumnSpec>,
    /// For groups: how members are written.
    pub members: Option<MemberSpec>,
    /// Add the missing `ou=` (or other) entries above the DN before adding an entry.
    pub create_parents: bool,
    /// Mapped attributes identifying an existing entry to adopt on create (searched under
    /// the base when nothing is linked and nothing is at the DN).
    pub match_attrs: Vec<String>,
    pub on_existing: OnExisting,
    /// Bits set in an integer attribute while the resource is disabled, cleared while it
    /// is enabled (`userAccountControl: 2`): read, or-ed / and-not-ed, written when changed.
    pub disable_bits: Vec<(String, u64)>,
    /// The value a flag attribute of `disable_bits` gets when the entry is added (the
    /// bits then applied); without one the directory's default is read back after the add.
    pub initial_bits: Vec<(String, i64)>,
    /// A disabled user leaves every group this target manages, and rejoins when enabled.
    pub disable_drops_memberships: bool,
    /// Users: where the password the provider sends is written (over TLS only).
    pub password: Option<PasswordSpec>,
}

/// What happens when the mapping meets an entry it did not create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnExisting {
    /// Take the entry over and converge it.
    #[default]
    Adopt,
    /// Refuse the resource (SCIM 400): the entry belongs to somebody else.
    Conflict,
}

/// What a group's member values are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MemberValue {
    /// The member entries' DNs (`member`, `uniqueMember`).
    #[default]
    Dn,
    /// The value of this attribute of the member entries (`memberUid` holds `uid`s).
    Attribute(String),
}

/// How a group's members become attribute values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSpec {
    /// `member`, `uniqueMember` (values: member DNs) or `memberUid` (values: uids).
    pub attribute: String,
    pub value: MemberValue,
    /// A DN written when the group has no members, for schemas that require at least
    /// one (`groupOfNames`); removed again as soon as a real member exists.
    pub placeholder: Option<String>,
}

/// Everything the LDAP target writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LdapSchema {
    /// The base DN: where `match` searches for entries to adopt.
    pub base: String,
    pub users: Option<EntrySpec>,
    pub groups: Option<EntrySpec>,
}

/// How to reach and bind to the directory.
#[derive(Debug, Clone)]
pub struct LdapSettings {
    /// Tried in order (failover).
    pub urls: Vec<String>,
    pub bind_dn: String,
    pub bind_password: crate::config::Secret,
    /// Upgrade `ldap://` connections with StartTLS.
    pub starttls: bool,
    /// A PEM file of CA certificates to trust instead of the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate (PEM certificate chain and private key): the connection binds
    /// with SASL EXTERNAL, the directory mapping the certificate to an identity, instead
    /// of a simple bind.
    pub client_cert: Option<ClientCert>,
    pub connect_timeout: std::time::Duration,
    pub operation_timeout: std::time::Duration,
    /// How long a change the directory keeps answering with an unexpected result code
    /// (not a refusal, not busy/unavailable, not a lost connection) is retried before it
    /// is rejected, so the changes behind it are not blocked for ever.
    pub give_up_after: std::time::Duration,
    pub pool_size: usize,
    /// The small SQLite file mapping SCIM ids to entry DNs (renames, members, managers).
    pub links_path: std::path::PathBuf,
}

impl LdapSettings {
    /// The URLs a connection may use without TLS: `ldap://` (and `ldapi://`) ones when
    /// StartTLS is off. A password is never sent over them.
    pub fn plain_urls(&self) -> Vec<&str> {
        self.urls
            .iter()
            .map(String::as_str)
            .filter(|u| !u.to_ascii_lowercase().starts_with("ldaps://") && !self.starttls)
            .collect()
    }

    /// Why passwords cannot be written with these settings (`None`: every connection is
    /// encrypted). Said by check-config, logged at start, and given as the rejection of
    /// a request that carries a password.
    pub fn password_refusal(&self) -> Option<String> {
        let plain = self.plain_urls();
        (!plain.is_empty()).then(|| {
            format!(
                "scim-bridge sends passwords to the directory over TLS only, and {} {} not encrypted; use ldaps:// or set target.ldap.starttls: true",
                plain.join(", "),
                if plain.len() == 1 { "is" } else { "are" }
            )
        })
    }
}

/// A TLS client certificate: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
}

/// Opens the configured target (creating or migrating what it owns).
pub fn open(cfg: &crate::config::TargetConfig) -> Result<std::sync::Arc<dyn Target>, TargetError> {
    Ok(match &cfg.kind {
        crate::config::TargetKind::Sqlite { path } => std::sync::Arc::new(
            sqlite::SqliteTarget::open(path, cfg.mapping.schema.clone())?,
        ),
        crate::config::TargetKind::Ldap(settings) => std::sync::Arc::new(ldap::LdapTarget::open(
            (**settings).clone(),
            cfg.mapping.ldap.clone(),
        )?),
    })
}
