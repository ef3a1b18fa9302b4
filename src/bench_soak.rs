//! `scim-bridge bench soak`: a bounded soak run of the LDAP configuration with faults
//! injected on a schedule, ending with the checks that say nothing was lost.
//!
//! It starts a throw-away slapd and the daemon exactly as `bench --ldap` does (the
//! configuration's `target` and `mapping` replaced by `examples/ldap-openldap.yaml`'s, pointed
//! at the slapd), then, for `--seconds`, `--concurrency` client threads send a mix of every
//! operation Entra sends: user creates, GETs by id and by `userName` filter, pages of lists,
//! PATCHes (string booleans, add/remove of a phone number, replace of several attributes,
//! disable/enable through `active`), PUTs, renames (a new `userName`, hence a new DN), group
//! creates, member adds and removes in batches, group renames, and deletes of users and
//! groups.
//!
//! Each thread owns the resources it created (no two threads write one resource), and keeps
//! a model of what the daemon acknowledged: a 2xx makes the attempted state the resource's
//! known state. A write without an answer (the daemon was killed, the connection broke) or
//! answered 5xx (503 while the store is locked, …) has an uncertain outcome: its resource is
//! set aside, and at the end it must hold either the state before the write or the state
//! attempted, nothing else. Every GET by id during the run is compared with the model.
//!
//! Faults, one at a time, every `--fault-every` seconds, in this order (or `--faults`):
//! - `slapd-stop`: slapd SIGSTOPped for `--fault-seconds`, then SIGCONT (a hung directory);
//! - `store-lock`: the state database locked by this process (`BEGIN IMMEDIATE` held) for
//!   `--fault-seconds`: writes must get 503 after the store's busy wait, reads keep working;
//! - `daemon-kill`: the daemon SIGKILLed and started again at once on the same state
//!   directory and port (in-flight requests fail; acknowledged writes must survive);
//! - `slapd-kill`: slapd SIGKILLed, started again on the same port and database after
//!   `--fault-seconds`.
//!
//! For each fault it prints what the clients saw (requests, 503s, failures, latency), the
//! delivery backlog's peak and how long it took to drain after the fault, what the
//! daemon's metrics counted (target errors by code, 503s) and what its log said.
//!
//! At the end it waits until the delivery backlog is empty (`scim_delivery_pending` at
//! `/metrics`), checks every resource of the model over HTTP (acknowledged states exact,
//! uncertain ones one of their two states, no resource the model does not know), stops
//! the daemon, and runs the checks of the issue: `journal verify` intact, no record pending,
//! the state equal to a replay of the journal into an empty state directory (`journal
//! export` then `journal replay --file … --into store`, every stored resource compared),
//! and `reconcile --dry-run` finding no drift in the directory.
//!
//! Exit codes: 0 every check passed, 1 a check failed (the output says which and what
//! differs), 2 slapd or the daemon could not be started (or restarted by a fault).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use scim_bridge::config;
use scim_bridge::scim::schema::ResourceKind;
use scim_bridge::slapd::Slapd;
use scim_bridge::store::Store;
use serde_json::{Value, json};

use crate::bench_cli::{
    Conn, Daemon, Endpoint, GROUP_SCHEMAS, PATCH_SCHEMAS, Req, SendError, USER_SCHEMAS,
    form_encode, machine, mib, percentile_ms, random_hex, replace_sections, resource_id,
};

/// How often the delivery backlog is read from `/metrics`.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// How long the backlog may take to drain at the end (the worker backs off up to 30 s
/// while the directory is away).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// Requests answered up to this long after a fault ends still count as during it.
const FAULT_TAIL: Duration = Duration::from_secs(2);
/// Users a client creates at most before it deletes instead.
const MIN_USERS: usize = 10;
/// Members a group holds at most.
const MAX_MEMBERS: usize = 40;
/// Groups a client keeps at most.
const MAX_GROUPS: usize = 8;
/// Members added or removed per PATCH at most.
const MEMBER_BATCH: usize = 10;
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// `scim-bridge bench soak` options.
#[derive(clap::Args)]
pub struct SoakArgs {
    /// The daemon's configuration (auth, rate_limit, target and mapping replaced as by
    /// `bench --ldap`); default the embedded config.example.yaml.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// How long the traffic runs.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(2..=86_400))]
    seconds: u64,
    /// Connections (one client thread each).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// Seconds between the starts of two faults (the first starts after half of it);
    /// default a tenth of --seconds, at least 4.
    #[arg(long)]
    fault_every: Option<f64>,
    /// How long slapd stays stopped or down and the store locked; default half of
    /// --fault-every, at most 8.
    #[arg(long)]
    fault_seconds: Option<f64>,
    /// The faults, in the order they are injected, repeated (default:
    /// slapd-stop,store-lock,daemon-kill,slapd-kill).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// Live users each connection keeps at most (it deletes instead of creating beyond).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(20..=100_000))]
    users_per_connection: u64,
}

/// Runs the soak; see the module documentation for the exit codes.
pub fn run(args: SoakArgs) -> ExitCode {
    match soak(&args) {
        Ok(true) => {
            println!("soak: PASSED");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("soak: FAILED (see the checks above)");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("scim-bridge bench soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Operations and samples

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Op {
    CreateUser,
    GetById,
    GetByFilter,
    ListPage,
    PatchUser,
    DisableEnable,
    PutUser,
    RenameUser,
    DeleteUser,
    CreateGroup,
    AddMembers,
    RemoveMembers,
    RenameGroup,
    DeleteGroup,
}

impl Op {
    const ALL: [Op; 14] = [
        Op::CreateUser,
        Op::GetById,
        Op::GetByFilter,
        Op::ListPage,
        Op::PatchUser,
        Op::DisableEnable,
        Op::PutUser,
        Op::RenameUser,
        Op::DeleteUser,
        Op::CreateGroup,
        Op::AddMembers,
        Op::RemoveMembers,
        Op::RenameGroup,
        Op::DeleteGroup,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::CreateUser => "create user",
            Op::GetById => "get by id",
            Op::GetByFilter => "get by filter",
            Op::ListPage => "list page",
            Op::PatchUser => "patch user",
            Op::DisableEnable => "disable/enable",
            Op::PutUser => "put user",
            Op::RenameUser => "rename user",
            Op::DeleteUser => "delete user",
            Op::CreateGroup => "create group",
            Op::AddMembers => "add members",
            Op::RemoveMembers => "remove members",
            Op::RenameGroup => "rename group",
            Op::DeleteGroup => "delete group",
        }
    }

    fn is_read(self) -> bool {
        matches!(self, Op::GetById | Op::GetByFilter | Op::ListPage)
    }

    /// Relative weight in the mix.
    fn weight(self) -> u32 {
        match self {
            Op::CreateUser => 12,
            Op::GetById => 14,
            Op::GetByFilter => 12,
            Op::ListPage => 3,
            Op::PatchUser => 12,
            Op::DisableEnable => 6,
            Op::PutUser => 5,
            Op::RenameUser => 4,
            Op::DeleteUser => 6,
            Op::CreateGroup => 2,
            Op::AddMembers => 7,
            Op::RemoveMembers => 5,
            Op::RenameGroup => 1,
            Op::DeleteGroup => 1,
        }
    }
}

/// One request as the client saw it.
#[derive(Clone, Copy)]
struct Sample {
    /// Milliseconds since the start of the traffic, when it was sent.
    at_ms: u32,
    micros: u32,
    op: Op,
    /// 0: no response (connection refused, reset, timed out).
    status: u16,
}

/// The answer to a request.
enum Answer {
    /// A status; `retried`: the first attempt met a connection the server had closed and
    /// the request was sent again (a write may then have been done by the first attempt).
    Status {
        status: u16,
        retried: bool,
    },
    NoResponse,
}

// ---------------------------------------------------------------------------------------
// The model of what was acknowledged

#[derive(Clone, PartialEq, Debug)]
struct UserState {
    user_name: String,
    external_id: String,
    active: bool,
    display_name: String,
    given: String,
    family: String,
    title: Option<String>,
    department: Option<String>,
    phone: Option<String>,
}

#[derive(Clone, PartialEq, Debug)]
struct GroupState {
    display_name: String,
    external_id: String,
    members: BTreeSet<String>,
}

/// A resource of the model. `acked`: its state as the last acknowledged write left it
/// (`None`: not created yet, or deleted). `attempted`: while a write's outcome is
/// uncertain, the state that write asked for; the resource is then left alone until the
/// end, where it must be in one of the two.
struct Slot<T> {
    id: Option<String>,
    acked: Option<T>,
    attempted: Option<Option<T>>,
}

impl<T> Slot<T> {
    fn usable(&self) -> bool {
        self.id.is_some() && self.acked.is_some() && self.attempted.is_none()
    }
}

/// A group of the model, and the members whose presence is unknown (users whose delete
/// has an uncertain outcome: if it happened, they left the group).
struct GroupSlot {
    slot: Slot<GroupState>,
    optional: BTreeSet<String>,
}

/// One client's resources.
struct Model {
    prefix: String,
    users: Vec<Slot<UserState>>,
    groups: Vec<GroupSlot>,
    next_user: usize,
    next_group: usize,
    serial: u64,
}

impl Model {
    fn new(prefix: String) -> Model {
        Model {
            prefix,
            users: Vec::new(),
            groups: Vec::new(),
            next_user: 0,
            next_group: 0,
            serial: 0,
        }
    }

    fn usable_users(&self) -> Vec<usize> {
        (0..self.users.len())
            .filter(|&i| self.users[i].usable())
            .collect()
    }
    fn usable_groups(&self) -> Vec<usize> {
        (0..self.groups.len())
            .filter(|&i| self.groups[i].slot.usable())
            .collect()
    }

    /// A user `id` is gone (certainly or perhaps): out of every group's known members.
    fn user_gone(&mut self, id: &str, certain: bool) {
        for g in &mut self.groups {
            let mut was_member = false;
            if let Some(state) = g.slot.acked.as_mut() {
                was_member |= state.members.remove(id);
            }
            if let Some(Some(state)) = g.slot.attempted.as_mut() {
                was_member |= state.members.remove(id);
            }
            if was_member && !certain {
                g.optional.insert(id.to_owned());
            }
        }
    }
}

/// Something the model says cannot be.
type Violation = String;

// ---------------------------------------------------------------------------------------
// Clients

/// A small xorshift generator (the mix need not be cryptographic, only varied).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// What the client threads share.
struct Shared {
    started: Instant,
    deadline: Instant,
    stop: AtomicBool,
    max_users: usize,
}

/// What a client thread leaves: its model, its requests and what it found wrong.
struct ClientOutput {
    model: Model,
    samples: Vec<Sample>,
    violations: Vec<Violation>,
    unexpected: Vec<String>,
}

/// One client thread.
struct Client<'a> {
    shared: &'a Shared,
    conn: Conn,
    rng: Rng,
    model: Model,
    samples: Vec<Sample>,
    violations: Vec<Violation>,
    /// Answers that should not happen (4xx to a well-formed request, 500).
    unexpected: Vec<String>,
}

impl Client<'_> {
    fn send(&mut self, op: Op, req: &Req) -> Answer {
        let start = Instant::now();
        let at_ms = u32::try_from(start.duration_since(self.shared.started).as_millis())
            .unwrap_or(u32::MAX);
        let (answer, status) = match self.conn.try_send(req) {
            Ok(status) => (
                Answer::Status {
                    status,
                    retried: false,
                },
                status,
            ),
            Err(SendError::Stale(_)) => match self.conn.try_send(req) {
                Ok(status) => (
                    Answer::Status {
                        status,
                        retried: true,
                    },
                    status,
                ),
                Err(_) => (Answer::NoResponse, 0),
            },
            Err(SendError::Failed(_)) => (Answer::NoResponse, 0),
        };
        self.samples.push(Sample {
            at_ms,
            micros: u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX),
            op,
            status,
        });
        match status {
            // The daemon is away (killed, restarting): do not spin.
            0 => std::thread::sleep(Duration::from_millis(50)),
            // Retry-After: the provider backs off; a little here.
            503 => std::thread::sleep(Duration::from_millis(100)),
            _ => {}
        }
        answer
    }

    /// Notes an answer that should not happen, with the start of its body.
    fn unexpected(&mut self, op: Op, status: u16) {
        let body = String::from_utf8_lossy(&self.conn.body);
        let mut text = body.chars().take(300).collect::<String>();
        if text.len() < body.len() {
            text.push('…');
        }
        self.unexpected
            .push(format!("{}: answered {status}: {text}", op.name()));
    }

    /// Sends a write and classifies its outcome: `Some(true)` acknowledged (2xx),
    /// `Some(false)` refused for certain (a 4xx on the first attempt: nothing changed),
    /// `None` uncertain.
    fn write(&mut self, op: Op, req: &Req) -> Option<bool> {
        match self.send(op, req) {
            Answer::Status { status, .. } if (200..300).contains(&status) => Some(true),
            Answer::Status { status, retried } if (400..500).contains(&status) => {
                if retried {
                    // The first attempt may have done it (409 to its retried create).
                    None
                } else {
                    self.unexpected(op, status);
                    Some(false)
                }
            }
            Answer::Status { status, .. } => {
                if status != 503 {
                    self.unexpected(op, status);
                }
                None
            }
            Answer::NoResponse => None,
        }
    }

    fn run(&mut self) {
        let total: u32 = Op::ALL.iter().map(|op| op.weight()).sum();
        while !self.shared.stop.load(Ordering::Relaxed) && Instant::now() < self.shared.deadline {
            let mut pick = (self.rng.next() % u64::from(total)) as u32;
            let mut op = Op::CreateUser;
            for candidate in Op::ALL {
                if pick < candidate.weight() {
                    op = candidate;
                    break;
                }
                pick -= candidate.weight();
            }
            self.step(op);
        }
    }

    fn step(&mut self, op: Op) {
        let users = self.model.usable_users();
        let groups = self.model.usable_groups();
        let op = match op {
            _ if users.len() < MIN_USERS => Op::CreateUser,
            Op::CreateUser if users.len() >= self.shared.max_users => Op::DeleteUser,
            Op::CreateGroup if groups.len() >= MAX_GROUPS => Op::AddMembers,
            Op::AddMembers | Op::RemoveMembers | Op::RenameGroup | Op::DeleteGroup
                if groups.is_empty() =>
            {
                Op::CreateGroup
            }
            op => op,
        };
        let u = users.get(self.rng.below(users.len())).copied();
        let g = groups.get(self.rng.below(groups.len())).copied();
        match op {
            Op::CreateUser => self.create_user(),
            Op::GetById => match (self.rng.below(5), g) {
                (0, Some(g)) => self.get_group(g),
                _ => self.get_user(u.unwrap_or(0)),
            },
            Op::GetByFilter => self.get_by_filter(u.unwrap_or(0)),
            Op::ListPage => self.list_page(),
            Op::PatchUser | Op::DisableEnable | Op::PutUser | Op::RenameUser | Op::DeleteUser => {
                self.write_user(op, u.unwrap_or(0))
            }
            Op::CreateGroup => self.create_group(),
            Op::AddMembers | Op::RemoveMembers | Op::RenameGroup | Op::DeleteGroup => {
                if let Some(g) = g {
                    self.write_group(op, g);
                }
            }
        }
    }

    fn fresh(&mut self) -> u64 {
        self.model.serial += 1;
        self.model.serial
    }

    fn create_user(&mut self) {
        let n = self.model.next_user;
        self.model.next_user += 1;
        let name = format!("{}-u{n}@contoso.example", self.model.prefix);
        let state = UserState {
            user_name: name.clone(),
            external_id: format!("{}-ext-u{n}", self.model.prefix),
            active: true,
            display_name: format!("Given{n} Family{n}"),
            given: format!("Given{n}"),
            family: format!("Family{n}"),
            title: Some("Engineer".to_owned()),
            department: Some(format!("Dept {}", n % 7)),
            phone: None,
        };
        let body = json!({
            "schemas": serde_json::from_str::<Value>(USER_SCHEMAS).unwrap_or(Value::Null),
            "externalId": state.external_id,
            "userName": state.user_name,
            "active": true,
            "displayName": state.display_name,
            "emails": [{"primary": true, "type": "work", "value": state.user_name}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": state.display_name, "familyName": state.family, "givenName": state.given},
            "title": state.title,
            ENTERPRISE: {"department": state.department},
            "roles": []
        });
        let req = Req::post("/Users".to_owned(), body.to_string());
        let outcome = self.write(Op::CreateUser, &req);
        let id = outcome
            .filter(|&acked| acked)
            .and_then(|_| resource_id(&self.conn.body));
        match (outcome, id) {
            (Some(true), Some(id)) => self.model.users.push(Slot {
                id: Some(id),
                acked: Some(state),
                attempted: None,
            }),
            (Some(false), _) => {}
            (Some(true), None) => {
                self.violations
                    .push(format!("create user {name}: a 2xx without an id"));
            }
            (None, _) => self.model.users.push(Slot {
                id: None,
                acked: None,
                attempted: Some(Some(state)),
            }),
        }
    }

    fn create_group(&mut self) {
        let n = self.model.next_group;
        self.model.next_group += 1;
        let state = GroupState {
            display_name: format!("{}-g{n}", self.model.prefix),
            external_id: format!("{}-ext-g{n}", self.model.prefix),
            members: BTreeSet::new(),
        };
        let body = json!({
            "schemas": serde_json::from_str::<Value>(GROUP_SCHEMAS).unwrap_or(Value::Null),
            "externalId": state.external_id,
            "displayName": state.display_name,
            "meta": {"resourceType": "Group"}
        });
        let req = Req::post("/Groups".to_owned(), body.to_string());
        let outcome = self.write(Op::CreateGroup, &req);
        let id = outcome
            .filter(|&acked| acked)
            .and_then(|_| resource_id(&self.conn.body));
        let slot = match (outcome, id) {
            (Some(true), Some(id)) => Slot {
                id: Some(id),
                acked: Some(state),
                attempted: None,
            },
            (Some(false), _) => return,
            (Some(true), None) => {
                self.violations.push(format!(
                    "create group {}: a 2xx without an id",
                    state.display_name
                ));
                return;
            }
            (None, _) => Slot {
                id: None,
                acked: None,
                attempted: Some(Some(state)),
            },
        };
        self.model.groups.push(GroupSlot {
            slot,
            optional: BTreeSet::new(),
        });
    }

    fn get_user(&mut self, u: usize) {
        let Some(slot) = self.model.users.get(u).filter(|s| s.usable()) else {
            return;
        };
        let (id, state) = (slot.id.clone(), slot.acked.clone());
        let (Some(id), Some(state)) = (id, state) else {
            return;
        };
        if let Answer::Status { status, .. } =
            self.send(Op::GetById, &Req::get(format!("/Users/{id}")))
        {
            match status {
                200 => {
                    if let Err(why) = user_differs(&self.conn.body, &state) {
                        self.violations.push(format!(
                            "GET /Users/{id} during the run: {why} (the last acknowledged write says otherwise)"
                        ));
                    }
                }
                _ => self.unexpected(Op::GetById, status),
            }
        }
    }

    fn get_group(&mut self, g: usize) {
        let Some(gs) = self.model.groups.get(g).filter(|s| s.slot.usable()) else {
            return;
        };
        let (id, state, optional) = (
            gs.slot.id.clone(),
            gs.slot.acked.clone(),
            gs.optional.clone(),
        );
        let (Some(id), Some(state)) = (id, state) else {
            return;
        };
        if let Answer::Status { status, .. } =
            self.send(Op::GetById, &Req::get(format!("/Groups/{id}")))
        {
            match status {
                200 => {
                    if let Err(why) = group_differs(&self.conn.body, &state, &optional) {
                        self.violations.push(format!(
                            "GET /Groups/{id} during the run: {why} (the last acknowledged write says otherwise)"
                        ));
                    }
                }
                _ => self.unexpected(Op::GetById, status),
            }
        }
    }

    fn get_by_filter(&mut self, u: usize) {
        let Some(slot) = self.model.users.get(u).filter(|s| s.usable()) else {
            return;
        };
        let (Some(id), Some(user_name)) = (
            slot.id.clone(),
            slot.acked.as_ref().map(|s| s.user_name.clone()),
        ) else {
            return;
        };
        let path = format!(
            "/Users?filter=userName+eq+%22{}%22",
            form_encode(&user_name)
        );
        if let Answer::Status { status, .. } = self.send(Op::GetByFilter, &Req::get(path)) {
            match status {
                200 => {
                    let found = list_ids(&self.conn.body);
                    if found.as_deref() != Some(std::slice::from_ref(&id)) {
                        self.violations.push(format!(
                            "GET /Users?filter=userName eq \"{user_name}\" found {found:?}, not [{id}]"
                        ));
                    }
                }
                _ => self.unexpected(Op::GetByFilter, status),
            }
        }
    }

    fn list_page(&mut self) {
        let start = 1 + self.rng.below(200);
        let path = if self.rng.below(3) == 0 {
            format!("/Groups?excludedAttributes=members&startIndex={start}&count=20")
        } else {
            format!("/Users?startIndex={start}&count=50")
        };
        if let Answer::Status { status, .. } = self.send(Op::ListPage, &Req::get(path)) {
            match status {
                200 if list_ids(&self.conn.body).is_some() => {}
                200 => self
                    .violations
                    .push("a list page is not a ListResponse".to_owned()),
                _ => self.unexpected(Op::ListPage, status),
            }
        }
    }

    fn write_user(&mut self, op: Op, u: usize) {
        let Some(slot) = self.model.users.get(u).filter(|s| s.usable()) else {
            return;
        };
        let (Some(id), Some(before)) = (slot.id.clone(), slot.acked.clone()) else {
            return;
        };
        let k = self.fresh();
        let mut after = before.clone();
        let req = match op {
            Op::PatchUser => {
                let ops = match self.rng.below(4) {
                    0 => {
                        // Entra's default dialect: several Replaces, one with a string boolean.
                        after.title = Some(format!("Engineer {k}"));
                        after.display_name = format!("Display {k}");
                        after.given = format!("Given{k}");
                        json!([
                            {"op": "Replace", "path": "title", "value": after.title},
                            {"op": "Replace", "path": "displayName", "value": after.display_name},
                            {"op": "Replace", "path": "name.givenName", "value": after.given},
                            {"op": "Replace", "path": "active", "value": if after.active {"True"} else {"False"}}
                        ])
                    }
                    1 if before.phone.is_some() => {
                        after.phone = None;
                        json!([{"op": "Remove", "path": "phoneNumbers[type eq \"work\"]"}])
                    }
                    1 => {
                        after.phone = Some(format!("+1 555 {:07}", k % 10_000_000));
                        json!([{"op": "Add", "path": "phoneNumbers[type eq \"work\"].value", "value": after.phone}])
                    }
                    2 => {
                        after.department = Some(format!("Dept {k}"));
                        after.family = format!("Family{k}");
                        json!([
                            {"op": "Add", "path": format!("{ENTERPRISE}:department"), "value": after.department},
                            {"op": "Replace", "path": "name.familyName", "value": after.family}
                        ])
                    }
                    _ if before.title.is_some() => {
                        after.title = None;
                        json!([{"op": "Remove", "path": "title"}])
                    }
                    _ => {
                        after.title = Some(format!("Architect {k}"));
                        json!([{"op": "Replace", "path": "title", "value": after.title}])
                    }
                };
                patch_req("Users", &id, ops)
            }
            Op::DisableEnable => {
                after.active = !before.active;
                let value = if after.active { "True" } else { "False" };
                patch_req(
                    "Users",
                    &id,
                    json!([{"op": "Replace", "path": "active", "value": value}]),
                )
            }
            Op::RenameUser => {
                // A new userName, hence a new DN (uid={userName}): a modrdn in the directory.
                let stem = before
                    .user_name
                    .split(['@', '~'])
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                after.user_name = format!("{stem}~r{k}@contoso.example");
                patch_req(
                    "Users",
                    &id,
                    json!([
                        {"op": "Replace", "path": "userName", "value": after.user_name},
                        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": after.user_name}
                    ]),
                )
            }
            Op::PutUser => {
                after.title = Some(format!("Lead {k}"));
                after.display_name = format!("Put {k}");
                after.given = format!("Given{k}");
                after.family = format!("Family{k}");
                after.department = None;
                after.phone = None;
                after.active = self.rng.below(4) != 0;
                let body = json!({
                    "schemas": serde_json::from_str::<Value>(USER_SCHEMAS).unwrap_or(Value::Null),
                    "id": id,
                    "externalId": after.external_id,
                    "userName": after.user_name,
                    "active": after.active,
                    "displayName": after.display_name,
                    "emails": [{"primary": true, "type": "work", "value": after.user_name}],
                    "name": {"familyName": after.family, "givenName": after.given},
                    "title": after.title
                });
                Req::put(format!("/Users/{id}"), body.to_string())
            }
            _ => Req::delete(format!("/Users/{id}")),
        };
        let deleting = op == Op::DeleteUser;
        let outcome = self.write(op, &req);
        let slot = &mut self.model.users[u];
        match outcome {
            Some(true) if deleting => {
                slot.acked = None;
                self.model.user_gone(&id, true);
            }
            Some(true) => slot.acked = Some(after),
            Some(false) => {}
            None if deleting => {
                slot.attempted = Some(None);
                self.model.user_gone(&id, false);
            }
            None => slot.attempted = Some(Some(after)),
        }
    }

    fn write_group(&mut self, op: Op, g: usize) {
        let Some(gs) = self.model.groups.get(g).filter(|s| s.slot.usable()) else {
            return;
        };
        let (Some(id), Some(before)) = (gs.slot.id.clone(), gs.slot.acked.clone()) else {
            return;
        };
        let k = self.fresh();
        let mut after = before.clone();
        let req = match op {
            Op::AddMembers => {
                let candidates: Vec<String> = self
                    .model
                    .usable_users()
                    .into_iter()
                    .filter_map(|u| self.model.users[u].id.clone())
                    .filter(|id| !before.members.contains(id))
                    .collect();
                let room = MAX_MEMBERS.saturating_sub(before.members.len());
                let n = (1 + self.rng.below(MEMBER_BATCH))
                    .min(room)
                    .min(candidates.len());
                if n == 0 {
                    return;
                }
                let start = self.rng.below(candidates.len() - n + 1);
                let added = &candidates[start..start + n];
                after.members.extend(added.iter().cloned());
                let value: Vec<Value> = added.iter().map(|m| json!({"value": m})).collect();
                patch_req(
                    "Groups",
                    &id,
                    json!([{"op": "Add", "path": "members", "value": value}]),
                )
            }
            Op::RemoveMembers => {
                let members: Vec<String> = before.members.iter().cloned().collect();
                if members.is_empty() {
                    return;
                }
                let n = (1 + self.rng.below(MEMBER_BATCH)).min(members.len());
                let start = self.rng.below(members.len() - n + 1);
                let removed = &members[start..start + n];
                for m in removed {
                    after.members.remove(m);
                }
                if n == 1 {
                    // Entra's single-member form: a filter in the path.
                    patch_req(
                        "Groups",
                        &id,
                        json!([{"op": "Remove", "path": format!("members[value eq \"{}\"]", removed[0])}]),
                    )
                } else {
                    let value: Vec<Value> = removed.iter().map(|m| json!({"value": m})).collect();
                    patch_req(
                        "Groups",
                        &id,
                        json!([{"op": "Remove", "path": "members", "value": value}]),
                    )
                }
            }
            Op::RenameGroup => {
                let stem = before
                    .display_name
                    .split('~')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                after.display_name = format!("{stem}~r{k}");
                patch_req(
                    "Groups",
                    &id,
                    json!([{"op": "Replace", "path": "displayName", "value": after.display_name}]),
                )
            }
            _ => Req::delete(format!("/Groups/{id}")),
        };
        let deleting = op == Op::DeleteGroup;
        let outcome = self.write(op, &req);
        let slot = &mut self.model.groups[g].slot;
        match outcome {
            Some(true) if deleting => slot.acked = None,
            Some(true) => slot.acked = Some(after),
            Some(false) => {}
            None if deleting => slot.attempted = Some(None),
            None => slot.attempted = Some(Some(after)),
        }
    }
}

fn patch_req(kind: &str, id: &str, operations: Value) -> Req {
    let body = json!({
        "schemas": serde_json::from_str::<Value>(PATCH_SCHEMAS).unwrap_or(Value::Null),
        "Operations": operations
    });
    Req::patch(format!("/{kind}/{id}"), body.to_string())
}

/// The ids of a ListResponse's resources; `None` when the body is not one.
fn list_ids(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("totalResults")?.as_u64()?;
    let resources = match v.get("Resources") {
        Some(Value::Array(items)) => items.as_slice(),
        None => &[],
        Some(_) => return None,
    };
    resources
        .iter()
        .map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The `value` of the element of `attr` (an array) whose `type` is `work`.
fn work_value<'a>(doc: &'a Value, attr: &str) -> Option<&'a str> {
    doc.get(attr)?
        .as_array()?
        .iter()
        .find(|e| e.get("type").and_then(Value::as_str) == Some("work"))?
        .get("value")?
        .as_str()
}

/// `Err(what differs)` when the user resource in `body` is not `want`.
fn user_differs(body: &[u8], want: &UserState) -> Result<(), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let checks: [(&str, Option<String>, Option<String>); 9] = [
        (
            "userName",
            s(doc.get("userName")),
            Some(want.user_name.clone()),
        ),
        (
            "externalId",
            s(doc.get("externalId")),
            Some(want.external_id.clone()),
        ),
        (
            "active",
            doc.get("active").map(|v| v.to_string()),
            Some(want.active.to_string()),
        ),
        (
            "displayName",
            s(doc.get("displayName")),
            Some(want.display_name.clone()),
        ),
        (
            "name.givenName",
            s(doc.pointer("/name/givenName")),
            Some(want.given.clone()),
        ),
        (
            "name.familyName",
            s(doc.pointer("/name/familyName")),
            Some(want.family.clone()),
        ),
        ("title", s(doc.get("title")), want.title.clone()),
        (
            "department",
            s(doc.get(ENTERPRISE).and_then(|e| e.get("department"))),
            want.department.clone(),
        ),
        (
            "work phone",
            work_value(&doc, "phoneNumbers").map(str::to_owned),
            want.phone.clone(),
        ),
    ];
    for (name, got, wanted) in checks {
        if got != wanted {
            return Err(format!("{name} is {got:?}, not {wanted:?}"));
        }
    }
    let email = work_value(&doc, "emails");
    if email != Some(want.user_name.as_str()) {
        return Err(format!(
            "the work email is {email:?}, not {:?}",
            want.user_name
        ));
    }
    Ok(())
}

/// `Err(what differs)` when the group resource in `body` is not `want` (members in
/// `optional` may be there or not).
fn group_differs(
    body: &[u8],
    want: &GroupState,
    optional: &BTreeSet<String>,
) -> Result<(), String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let name = doc.get("displayName").and_then(Value::as_str);
    if name != Some(want.display_name.as_str()) {
        return Err(format!(
            "displayName is {name:?}, not {:?}",
            want.display_name
        ));
    }
    let ext = doc.get("externalId").and_then(Value::as_str);
    if ext != Some(want.external_id.as_str()) {
        return Err(format!("externalId is {ext:?}, not {:?}", want.external_id));
    }
    let members: BTreeSet<String> = doc
        .get("members")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|e| e.get("value").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<&String> = want
        .members
        .iter()
        .filter(|m| !members.contains(*m))
        .collect();
    let extra: Vec<&String> = members
        .iter()
        .filter(|m| !want.members.contains(*m) && !optional.contains(*m))
        .collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "members differ: {} missing (e.g. {:?}), {} not expected (e.g. {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Faults

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
enum FaultKind {
    SlapdStop,
    StoreLock,
    SlapdKill,
    DaemonKill,
}

impl FaultKind {
    /// The default order: the daemon is killed before slapd, so that with the default
    /// spacing the backlog of the slapd faults has drained before a daemon kill.
    const CYCLE: [FaultKind; 4] = [
        FaultKind::SlapdStop,
        FaultKind::StoreLock,
        FaultKind::DaemonKill,
        FaultKind::SlapdKill,
    ];

    fn name(self) -> &'static str {
        match self {
            FaultKind::SlapdStop => "slapd-stop",
            FaultKind::StoreLock => "store-lock",
            FaultKind::SlapdKill => "slapd-kill",
            FaultKind::DaemonKill => "daemon-kill",
        }
    }

    fn describe(self, seconds: f64) -> String {
        match self {
            FaultKind::SlapdStop => format!("slapd SIGSTOPped for {seconds:.1} s, then SIGCONT"),
            FaultKind::StoreLock => format!(
                "state database locked by another process (BEGIN IMMEDIATE) for {seconds:.1} s"
            ),
            FaultKind::SlapdKill => {
                format!(
                    "slapd SIGKILLed, started again after {seconds:.1} s (same port, same data)"
                )
            }
            FaultKind::DaemonKill => {
                "daemon SIGKILLed, started again at once (same state directory, same port)"
                    .to_owned()
            }
        }
    }

    /// Whether the directory is the one away (the backlog grows and must drain).
    fn directory(self) -> bool {
        matches!(self, FaultKind::SlapdStop | FaultKind::SlapdKill)
    }
}

/// One fault as it happened.
struct Fault {
    kind: FaultKind,
    /// Since the start of the traffic.
    start: Duration,
    end: Duration,
    /// What the injection itself measured (e.g. the daemon's restart time).
    note: String,
    /// The daemon's log length when the fault started.
    log_offset: u64,
}

/// The faults to inject: `(start, kind)`, each ending `fault_seconds` later (a daemon
/// kill at once), all over a second before the traffic stops.
fn schedule(
    cycle: &[FaultKind],
    seconds: f64,
    every: f64,
    fault_seconds: f64,
) -> Vec<(f64, FaultKind)> {
    let mut out = Vec::new();
    let mut at = every / 2.0;
    let mut i = 0;
    while let Some(&kind) = cycle.get(i % cycle.len().max(1)) {
        let lasts = if kind == FaultKind::DaemonKill {
            1.0
        } else {
            fault_seconds
        };
        if at + lasts + 1.0 > seconds {
            break;
        }
        out.push((at, kind));
        at += every;
        i += 1;
    }
    out
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        anyhow::bail!("kill -{sig} {pid} failed ({status})");
    }
    Ok(())
}

/// Sleeps until `at` after `started`, or returns false at once when `stop` is set.
fn sleep_until(started: Instant, at: Duration, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = started.elapsed();
        if now >= at {
            return true;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(50)));
    }
}

/// Injects one fault and restores the service; `Ok(note)`.
fn inject(
    kind: FaultKind,
    lasts: Duration,
    slapd: &mut Slapd,
    daemon: &mut Daemon,
    listen: SocketAddr,
) -> anyhow::Result<String> {
    match kind {
        FaultKind::SlapdStop => {
            let pid = slapd.pid().context("slapd is not running")?;
            signal(pid, "STOP")?;
            std::thread::sleep(lasts);
            signal(pid, "CONT")?;
            Ok(String::new())
        }
        FaultKind::SlapdKill => {
            let pid = slapd.pid().context("slapd is not running")?;
            signal(pid, "KILL")?;
            slapd.stop(); // reaps it
            std::thread::sleep(lasts);
            let started = Instant::now();
            slapd
                .start_again()
                .context("while starting slapd again after its SIGKILL")?;
            Ok(format!(
                "slapd answering again {:.2} s after its start",
                started.elapsed().as_secs_f64()
            ))
        }
        FaultKind::DaemonKill => {
            daemon.kill();
            let started = Instant::now();
            let mut attempt = 0;
            loop {
                attempt += 1;
                match daemon.start_again(listen) {
                    Ok(_) => break,
                    Err(e) if attempt < 5 => {
                        println!("  (daemon restart attempt {attempt} failed: {e:#}; retrying)");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e.context("while starting the daemon again")),
                }
            }
            Ok(format!(
                "daemon listening again {:.2} s after the kill (pid {})",
                started.elapsed().as_secs_f64(),
                daemon.pid
            ))
        }
        FaultKind::StoreLock => {
            let path = daemon.state_dir.join("state.db");
            let conn = rusqlite::Connection::open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            conn.busy_timeout(Duration::from_secs(10))?;
            let waited = Instant::now();
            conn.execute_batch("BEGIN IMMEDIATE")
                .with_context(|| format!("cannot lock {}", path.display()))?;
            let took = waited.elapsed();
            std::thread::sleep(lasts);
            conn.execute_batch("ROLLBACK")?;
            Ok(format!(
                "lock taken in {:.0} ms",
                took.as_secs_f64() * 1000.0
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// The daemon's metrics

/// The sum of the samples of `name` whose labels contain every `label="value"` of `with`.
fn metric_sum(text: &str, name: &str, with: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if !with.iter().all(|w| labels.contains(w)) {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// `code="…"` → count of `scim_target_errors_total`.
fn target_errors(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("scim_target_errors_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        let code = labels
            .split(',')
            .find_map(|l| l.strip_prefix("code=\""))
            .map(|c| c.trim_end_matches('"').to_owned())
            .unwrap_or_default();
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *out.entry(code).or_insert(0.0) += v;
        }
    }
    out
}

/// One read of `/metrics`.
#[derive(Clone)]
struct MetricsSample {
    at: Duration,
    /// `None`: the daemon did not answer.
    pending: Option<u64>,
    http_503: f64,
    target_errors: BTreeMap<String, f64>,
}

fn read_metrics(conn: &mut Conn, at: Duration) -> MetricsSample {
    let mut sample = MetricsSample {
        at,
        pending: None,
        http_503: 0.0,
        target_errors: BTreeMap::new(),
    };
    if let Ok(200) = conn.send(&Req::get("/metrics".to_owned())) {
        let text = String::from_utf8_lossy(&conn.body);
        sample.pending = metric_sum(&text, "scim_delivery_pending", &[]).map(|v| v as u64);
        sample.http_503 =
            metric_sum(&text, "scim_http_requests_total", &["status=\"503\""]).unwrap_or(0.0);
        sample.target_errors = target_errors(&text);
    }
    sample
}

// ---------------------------------------------------------------------------------------
// The run

fn soak(args: &SoakArgs) -> anyhow::Result<bool> {
    let seconds = args.seconds as f64;
    let every = args.fault_every.unwrap_or((seconds / 10.0).max(4.0));
    if !(every.is_finite() && every > 0.0) {
        anyhow::bail!("--fault-every {every}: must be a positive number of seconds");
    }
    let fault_seconds = args.fault_seconds.unwrap_or((every / 2.0).min(8.0));
    if !(fault_seconds.is_finite() && fault_seconds > 0.0) {
        anyhow::bail!("--fault-seconds {fault_seconds}: must be a positive number of seconds");
    }
    let cycle = if args.faults.is_empty() {
        FaultKind::CYCLE.to_vec()
    } else {
        args.faults.clone()
    };
    let plan = schedule(&cycle, seconds, every, fault_seconds);
    let run_id = random_hex(4).context("while reading random bytes from the system")?;

    let (text, mut source) = match &args.config {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            config::EMBEDDED_EXAMPLE.to_owned(),
            "config.example.yaml (embedded)".to_owned(),
        ),
    };
    let mut slapd = Slapd::start().context("while starting a throw-away slapd")?;
    let text = replace_sections(&text, &["target", "mapping"], &slapd.example_target_yaml());
    source += " with examples/ldap-openldap.yaml's target and mapping";
    let (mut daemon, endpoint) = Daemon::start(&text, source.clone(), None)?;
    let listen = endpoint.addr;
    let ops_endpoint = Arc::new(Endpoint {
        addr: endpoint.addr,
        host: endpoint.host.clone(),
        base_path: String::new(),
        token: endpoint.token.clone(),
    });
    let endpoint = Arc::new(endpoint);

    println!("scim-bridge bench soak {}", env!("CARGO_PKG_VERSION"));
    println!("machine: {}", machine());
    println!(
        "daemon: started by bench (pid {}) from {source} on http://{}{}, state {}",
        daemon.pid,
        endpoint.addr,
        endpoint.base_path,
        daemon.state_dir.display()
    );
    println!(
        "ldap: throw-away slapd (pid {}) on {}, base {}, mdb in {}",
        slapd
            .pid()
            .map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
        slapd.url,
        slapd.base,
        slapd.dir().display()
    );
    println!(
        "options: --seconds {} --concurrency {} --fault-every {every} --fault-seconds {fault_seconds} --users-per-connection {}",
        args.seconds, args.concurrency, args.users_per_connection
    );
    println!("faults planned: {}", plan.len());
    for (at, kind) in &plan {
        println!(
            "  t={at:>7.1} s  {:<11}  {}",
            kind.name(),
            kind.describe(fault_seconds)
        );
    }
    let _ = std::io::stdout().flush();

    // The traffic, the faults and the backlog sampler, all at once.
    let started = Instant::now();
    let shared = Shared {
        started,
        deadline: started + Duration::from_secs(args.seconds),
        stop: AtomicBool::new(false),
        max_users: args.users_per_connection as usize,
    };
    let metrics_log: Mutex<Vec<MetricsSample>> = Mutex::new(Vec::new());
    let sampler_stop = AtomicBool::new(false);
    // When the last client stopped (its last request answered), since `started`.
    let traffic_secs = Mutex::new(args.seconds as f64);
    let mut faults: Vec<Fault> = Vec::new();
    let mut fatal: Option<anyhow::Error> = None;
    let mut seeds = Vec::new();
    for _ in 0..args.concurrency {
        let hex = random_hex(8).context("while reading random bytes from the system")?;
        seeds.push(u64::from_str_radix(&hex, 16).unwrap_or(0x9E37_79B9_7F4A_7C15) | 1);
    }
    let outputs: Vec<ClientOutput> = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut conn = Conn::new(ops_endpoint.clone());
            while !sampler_stop.load(Ordering::Relaxed) {
                let sample = read_metrics(&mut conn, started.elapsed());
                metrics_log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(sample);
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        let clients: Vec<_> = seeds
            .iter()
            .enumerate()
            .map(|(w, &seed)| {
                let (shared, endpoint) = (&shared, endpoint.clone());
                let prefix = format!("soak-{run_id}-w{w}");
                scope.spawn(move || {
                    let mut client = Client {
                        shared,
                        conn: Conn::new(endpoint),
                        rng: Rng(seed),
                        model: Model::new(prefix),
                        samples: Vec::new(),
                        violations: Vec::new(),
                        unexpected: Vec::new(),
                    };
                    client.run();
                    ClientOutput {
                        model: client.model,
                        samples: client.samples,
                        violations: client.violations,
                        unexpected: client.unexpected,
                    }
                })
            })
            .collect();

        // The faults, on this thread.
        for (at, kind) in &plan {
            if !sleep_until(started, Duration::from_secs_f64(*at), &shared.stop) {
                break;
            }
            let log_offset = std::fs::metadata(&daemon.log).map_or(0, |m| m.len());
            let start = started.elapsed();
            println!(
                "fault at t={:.1} s: {} ({})",
                start.as_secs_f64(),
                kind.name(),
                kind.describe(fault_seconds)
            );
            let _ = std::io::stdout().flush();
            let result = inject(
                *kind,
                Duration::from_secs_f64(fault_seconds),
                &mut slapd,
                &mut daemon,
                listen,
            );
            let end = started.elapsed();
            match result {
                Ok(note) => {
                    println!(
                        "  restored at t={:.1} s{}",
                        end.as_secs_f64(),
                        if note.is_empty() {
                            String::new()
                        } else {
                            format!(": {note}")
                        }
                    );
                    faults.push(Fault {
                        kind: *kind,
                        start,
                        end,
                        note,
                        log_offset,
                    });
                }
                Err(e) => {
                    println!("  could not inject or restore it: {e:#}");
                    shared.stop.store(true, Ordering::Relaxed);
                    fatal = Some(e);
                    break;
                }
            }
            let _ = std::io::stdout().flush();
        }
        let mut outputs = Vec::new();
        for c in clients {
            match c.join() {
                Ok(out) => outputs.push(out),
                Err(_) => outputs.push(ClientOutput {
                    model: Model::new(String::new()),
                    samples: Vec::new(),
                    violations: vec!["a client thread panicked".to_owned()],
                    unexpected: Vec::new(),
                }),
            }
        }
        // The sampler keeps going through the drain below; stopped after.
        let traffic_end = started.elapsed();
        *traffic_secs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = traffic_end.as_secs_f64();
        println!(
            "traffic stopped at t={:.1} s; waiting for the delivery backlog to drain",
            traffic_end.as_secs_f64()
        );
        let _ = std::io::stdout().flush();
        let drain_started = Instant::now();
        loop {
            let last = metrics_log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last()
                .cloned();
            if let Some(s) = last
                && s.at > traffic_end
                && s.pending == Some(0)
            {
                break;
            }
            if drain_started.elapsed() > DRAIN_TIMEOUT || fatal.is_some() {
                break;
            }
            std::thread::sleep(SAMPLE_EVERY);
        }
        sampler_stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        outputs
    });
    if let Some(e) = fatal {
        daemon.stop();
        println!("daemon log kept: {}", daemon.log.display());
        return Err(e);
    }
    let traffic_secs = traffic_secs
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let metrics_log = metrics_log
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    let mut ok = true;
    let mut models = Vec::new();
    let mut samples = Vec::new();
    let mut violations = Vec::new();
    let mut unexpected = Vec::new();
    for out in outputs {
        models.push(out.model);
        samples.extend(out.samples);
        violations.extend(out.violations);
        unexpected.extend(out.unexpected);
    }
    samples.sort_by_key(|s| s.at_ms);

    print_operations(&samples, traffic_secs);
    let down = daemon_down_windows(&faults);
    print_faults(
        &faults,
        &samples,
        &metrics_log,
        &daemon.log,
        args.concurrency,
    );
    let peak = metrics_log
        .iter()
        .filter_map(|s| s.pending.map(|p| (p, s.at)))
        .max_by_key(|(p, _)| *p);
    match peak {
        Some((p, at)) => println!(
            "backlog peak: {p} records pending delivery (t={:.1} s)",
            at.as_secs_f64()
        ),
        None => println!("backlog peak: unknown (/metrics never answered)"),
    }
    println!(
        "daemon memory: peak RSS {} over every start (sampled every 100 ms)",
        mib(Some(
            daemon.peak_rss.load(std::sync::atomic::Ordering::Relaxed)
        ))
    );

    println!("final checks:");
    // Reads during the run.
    let failed_reads: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.op.is_read() && !(200..300).contains(&s.status))
        .filter(|s| {
            // A request in flight while the daemon was away (sent before its kill,
            // failed after) is expected to fail.
            let sent = Duration::from_millis(u64::from(s.at_ms));
            let failed = sent + Duration::from_micros(u64::from(s.micros));
            !(s.status == 0 && down.iter().any(|(a, b)| sent <= *b && failed >= *a))
        })
        .collect();
    let reads = samples.iter().filter(|s| s.op.is_read()).count();
    ok &= check(
        "reads served through every fault",
        failed_reads.is_empty(),
        if failed_reads.is_empty() {
            format!("{reads} reads, none failed but while the daemon was down")
        } else {
            let mut by: BTreeMap<u16, usize> = BTreeMap::new();
            for s in &failed_reads {
                *by.entry(s.status).or_default() += 1;
            }
            format!(
                "{} of {reads} reads failed outside the daemon's restarts: {}",
                failed_reads.len(),
                statuses_text(&by)
            )
        },
    );
    ok &= check(
        "no unexpected answer (4xx to a well-formed request, 500)",
        unexpected.is_empty(),
        if unexpected.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{}; first: {}",
                unexpected.len(),
                unexpected
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        },
    );
    ok &= check(
        "reads during the run matched the acknowledged writes",
        violations.is_empty(),
        if violations.is_empty() {
            "every GET by id and by filter did".to_owned()
        } else {
            format!(
                "{} did not; first: {}",
                violations.len(),
                violations
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | ")
            )
        },
    );
    let last = metrics_log.iter().rev().find(|s| s.pending.is_some());
    let drained = last.is_some_and(|s| s.pending == Some(0));
    ok &= check(
        "delivery backlog drained",
        drained,
        match last {
            Some(s) if drained => format!(
                "0 pending at t={:.1} s ({:.1} s after the traffic stopped)",
                s.at.as_secs_f64(),
                s.at.as_secs_f64() - traffic_secs
            ),
            Some(s) => format!(
                "{} still pending after {} s",
                s.pending.unwrap_or(0),
                DRAIN_TIMEOUT.as_secs()
            ),
            None => "/metrics never answered".to_owned(),
        },
    );

    // Every resource of the model, over HTTP.
    let mut conn = Conn::new(endpoint.clone());
    let final_state = check_models(&mut conn, &models);
    match &final_state {
        Ok(summary) => {
            ok &= check(
                "acknowledged writes are what GET returns",
                summary.problems.is_empty(),
                if summary.problems.is_empty() {
                    format!(
                        "{} users and {} groups as acknowledged ({} acknowledged deletes gone); {} uncertain outcomes: {} applied, {} not",
                        summary.users,
                        summary.groups,
                        summary.deleted,
                        summary.uncertain_applied + summary.uncertain_not,
                        summary.uncertain_applied,
                        summary.uncertain_not
                    )
                } else {
                    format!(
                        "{} problems; first: {}",
                        summary.problems.len(),
                        summary
                            .problems
                            .iter()
                            .take(3)
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" | ")
                    )
                },
            );
        }
        Err(e) => {
            ok &= check(
                "acknowledged writes are what GET returns",
                false,
                format!("{e:#}"),
            )
        }
    }

    daemon.stop();
    let state_dir = daemon.state_dir.clone();
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let work = daemon.temp.join("checks");
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    // journal verify
    let (code, out, err) = cli(&exe, &["journal", "verify", "--state-dir"], &state_dir, &[])?;
    ok &= check("journal verify", code == Some(0), first_line(&out, &err));
    // Nothing pending
    let (code, out, err) = cli(
        &exe,
        &["journal", "list", "--pending", "--state-dir"],
        &state_dir,
        &[],
    )?;
    let pending = out.lines().filter(|l| !l.trim().is_empty()).count();
    ok &= check(
        "no journal record pending delivery",
        code == Some(0) && pending == 0,
        if code == Some(0) {
            format!("{pending} pending (journal list --pending)")
        } else {
            first_line(&out, &err)
        },
    );
    // The state equals a replay of the journal.
    ok &= check_replay(&exe, &state_dir, &work);
    // reconcile --dry-run against the directory.
    let reconcile_config = work.join("reconcile.yaml");
    let state_yaml = format!(
        "state:\n  dir: {}\n",
        serde_json::to_string(&state_dir.display().to_string()).unwrap_or_default()
    );
    std::fs::write(
        &reconcile_config,
        replace_sections(&daemon.text, &["state"], &state_yaml),
    )
    .with_context(|| format!("cannot write {}", reconcile_config.display()))?;
    let (code, out, err) = cli(
        &exe,
        &["reconcile", "--dry-run", "--config"],
        &reconcile_config,
        &[],
    )?;
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains("resources compared"))
        .unwrap_or_default()
        .to_owned();
    let clean = code == Some(0);
    ok &= check(
        "reconcile --dry-run finds no drift in the directory",
        clean,
        if clean {
            summary
        } else {
            format!(
                "exit {code:?}: {summary}; first differences:\n{}",
                out.lines().take(20).collect::<Vec<_>>().join("\n")
                    + &err.lines().take(5).collect::<Vec<_>>().join("\n")
            )
        },
    );

    if ok {
        daemon.cleanup(true);
    } else {
        println!(
            "kept for inspection: {} (daemon log, state, checks)",
            daemon.temp.display()
        );
    }
    drop(slapd);
    Ok(ok)
}

/// Prints one final check; returns `passed`.
fn check(what: &str, passed: bool, detail: String) -> bool {
    println!(
        "  {} {what}: {detail}",
        if passed { "[ok]    " } else { "[FAILED]" }
    );
    passed
}

fn first_line(out: &str, err: &str) -> String {
    out.lines()
        .chain(err.lines())
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .to_owned()
}

/// Runs this program with `args` then `path` then `more`: exit code, stdout, stderr.
fn cli(
    exe: &Path,
    args: &[&str],
    path: &Path,
    more: &[&str],
) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = Command::new(exe)
        .args(args)
        .arg(path)
        .args(more)
        .env_remove("SCIM_BRIDGE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} {}", exe.display(), args.join(" ")))?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `journal export`, then `journal replay --file … --into store` into an empty state
/// directory, then every stored resource of both compared (id, version, document).
fn check_replay(exe: &Path, state_dir: &Path, work: &Path) -> bool {
    let what = "the state equals a replay of the journal";
    let run = || -> anyhow::Result<Result<String, String>> {
        let export = work.join("journal.jsonl");
        let file = std::fs::File::create(&export)
            .with_context(|| format!("cannot create {}", export.display()))?;
        let status = Command::new(exe)
            .args(["journal", "export", "--state-dir"])
            .arg(state_dir)
            .env_remove("SCIM_BRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::null())
            .status()
            .context("cannot run journal export")?;
        if !status.success() {
            return Ok(Err(format!("journal export failed ({status})")));
        }
        let rebuilt = work.join("replayed-state");
        let (code, out, err) = cli(
            exe,
            &["journal", "replay", "--into", "store", "--file"],
            &export,
            &["--state-dir", &rebuilt.display().to_string()],
        )?;
        if code != Some(0) {
            return Ok(Err(format!(
                "journal replay failed: {}",
                first_line(&out, &err)
            )));
        }
        let live = state_of(state_dir)?;
        let replayed = state_of(&rebuilt)?;
        if live == replayed {
            return Ok(Ok(format!(
                "{} resources identical (id, version, document); {}",
                live.len(),
                first_line(&out, &err)
            )));
        }
        let only_live: Vec<&String> = live.keys().filter(|k| !replayed.contains_key(*k)).collect();
        let only_replayed: Vec<&String> =
            replayed.keys().filter(|k| !live.contains_key(*k)).collect();
        let differ: Vec<&String> = live
            .iter()
            .filter(|(k, v)| replayed.get(*k).is_some_and(|r| r != *v))
            .map(|(k, _)| k)
            .collect();
        let mut detail = format!(
            "{} only in the state, {} only in the replay, {} differ",
            only_live.len(),
            only_replayed.len(),
            differ.len()
        );
        if let Some(id) = differ.first() {
            let _ = write!(
                detail,
                "; e.g. {id}: state {} vs replay {}",
                serde_json::to_string(&live[*id]).unwrap_or_default(),
                serde_json::to_string(&replayed[*id]).unwrap_or_default()
            );
        }
        if let Some(id) = only_live.first() {
            let _ = write!(detail, "; e.g. only in the state: {id}");
        }
        if let Some(id) = only_replayed.first() {
            let _ = write!(detail, "; e.g. only in the replay: {id}");
        }
        Ok(Err(detail))
    };
    match run() {
        Ok(Ok(detail)) => check(what, true, detail),
        Ok(Err(detail)) => check(what, false, detail),
        Err(e) => check(what, false, format!("{e:#}")),
    }
}

/// Every resource stored in a state directory: id → (version, document).
fn state_of(dir: &Path) -> anyhow::Result<BTreeMap<String, (i64, Value)>> {
    let store = Store::open(dir)
        .with_context(|| format!("while opening the state store in {}", dir.display()))?;
    let mut out = BTreeMap::new();
    for kind in ResourceKind::ALL {
        for page in store.pages(kind, 1000) {
            let page =
                page.with_context(|| format!("while listing the resources in {}", dir.display()))?;
            for s in page {
                out.insert(s.id.clone(), (s.version, Value::Object(s.doc)));
            }
        }
    }
    Ok(out)
}

/// What the final HTTP check of the models found.
#[derive(Default)]
struct FinalState {
    users: usize,
    groups: usize,
    deleted: usize,
    uncertain_applied: usize,
    uncertain_not: usize,
    problems: Vec<String>,
}

/// GETs the resource at `path`: `Ok(None)` on 404, the body on 200; retries 503s and
/// failed connections for a while.
fn fetch(conn: &mut Conn, path: String) -> anyhow::Result<Option<Vec<u8>>> {
    let req = Req::get(path.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match conn.send(&req) {
            Ok(200) => return Ok(Some(conn.body.clone())),
            Ok(404) => return Ok(None),
            Ok(status) if status != 503 || Instant::now() > deadline => {
                anyhow::bail!(
                    "GET {path} answered {status}: {}",
                    String::from_utf8_lossy(&conn.body)
                )
            }
            Err(e) if Instant::now() > deadline => anyhow::bail!("GET {path}: {e}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The id of the resource whose `attr` (userName, displayName) is `value`, if any.
fn find_by(conn: &mut Conn, kind: &str, attr: &str, value: &str) -> anyhow::Result<Option<String>> {
    let path = format!("/{kind}?filter={attr}+eq+%22{}%22", form_encode(value));
    let body = fetch(conn, path.clone())?.unwrap_or_default();
    let ids = list_ids(&body).with_context(|| format!("GET {path}: not a ListResponse"))?;
    match ids.as_slice() {
        [] => Ok(None),
        [id] => Ok(Some(id.clone())),
        _ => anyhow::bail!("GET {path}: {} resources", ids.len()),
    }
}

/// Sorts one resource's final state into `f`: deleted as acknowledged, one of the two
/// outcomes of a write whose answer was lost, or a problem. `matches` says whether the
/// resource is as a model state. `true`: it is there as acknowledged (the caller counts it).
fn judge<T>(
    f: &mut FinalState,
    kind: &str,
    id: &str,
    slot: &Slot<T>,
    matches: impl Fn(&Option<T>) -> Result<(), String>,
) -> bool {
    match &slot.attempted {
        None => match matches(&slot.acked) {
            Ok(()) if slot.acked.is_none() => f.deleted += 1,
            Ok(()) => return true,
            Err(why) => f.problems.push(format!(
                "{kind} {id}: {why}, but the last acknowledged write says otherwise"
            )),
        },
        Some(attempted) => {
            if matches(attempted).is_ok() {
                f.uncertain_applied += 1;
            } else if matches(&slot.acked).is_ok() {
                f.uncertain_not += 1;
            } else {
                f.problems.push(format!(
                    "{kind} {id}: neither its acknowledged state nor the one of the write whose outcome was uncertain ({})",
                    matches(&slot.acked).err().unwrap_or_default()
                ));
            }
        }
    }
    false
}

/// Checks every resource of every model over HTTP (see the module doc), and that the
/// daemon holds no user or group the models do not know.
fn check_models(conn: &mut Conn, models: &[Model]) -> anyhow::Result<FinalState> {
    let mut f = FinalState::default();
    let mut known_users = BTreeSet::new();
    let mut known_groups = BTreeSet::new();
    for m in models {
        for slot in &m.users {
            // An uncertain create: is it there?
            let id = match (&slot.id, &slot.attempted) {
                (Some(id), _) => Some(id.clone()),
                (None, Some(Some(state))) => find_by(conn, "Users", "userName", &state.user_name)?,
                (None, _) => None,
            };
            let Some(id) = id else {
                f.uncertain_not += 1;
                continue;
            };
            let body = fetch(conn, format!("/Users/{id}"))?;
            let matches = |want: &Option<UserState>| match (&body, want) {
                (None, None) => Ok(()),
                (Some(_), None) => Err("exists".to_owned()),
                (None, Some(_)) => Err("is gone".to_owned()),
                (Some(b), Some(w)) => user_differs(b, w),
            };
            if judge(&mut f, "user", &id, slot, matches) {
                f.users += 1;
            }
            if body.is_some() {
                known_users.insert(id);
            }
        }
        for gs in &m.groups {
            let slot = &gs.slot;
            let id = match (&slot.id, &slot.attempted) {
                (Some(id), _) => Some(id.clone()),
                (None, Some(Some(state))) => {
                    find_by(conn, "Groups", "displayName", &state.display_name)?
                }
                (None, _) => None,
            };
            let Some(id) = id else {
                f.uncertain_not += 1;
                continue;
            };
            let body = fetch(conn, format!("/Groups/{id}"))?;
            let matches = |want: &Option<GroupState>| match (&body, want) {
                (None, None) => Ok(()),
                (Some(_), None) => Err("exists".to_owned()),
                (None, Some(_)) => Err("is gone".to_owned()),
                (Some(b), Some(w)) => group_differs(b, w, &gs.optional),
            };
            if judge(&mut f, "group", &id, &gs.slot, matches) {
                f.groups += 1;
            }
            if body.is_some() {
                known_groups.insert(id);
            }
        }
    }
    // Nothing the models do not know.
    for (kind, known) in [("Users", &known_users), ("Groups", &known_groups)] {
        let mut start = 1;
        loop {
            let path = format!("/{kind}?startIndex={start}&count=500&attributes=id");
            let body = fetch(conn, path.clone())?.unwrap_or_default();
            let ids = list_ids(&body).with_context(|| format!("GET {path}: not a ListResponse"))?;
            if ids.is_empty() {
                break;
            }
            start += ids.len();
            for id in ids {
                if !known.contains(&id) {
                    f.problems.push(format!(
                        "{kind} {id} is stored, but no write the clients sent created it"
                    ));
                }
            }
        }
    }
    Ok(f)
}

// ---------------------------------------------------------------------------------------
// Figures

fn statuses_text(by: &BTreeMap<u16, usize>) -> String {
    by.iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("no answer: {n}")
            } else {
                format!("{s}: {n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_operations(samples: &[Sample], seconds: f64) {
    println!(
        "{:<15} {:>9} {:>8} {:>8} {:>8} {:>8}  statuses",
        "operation", "requests", "req/s", "p50 ms", "p99 ms", "max ms"
    );
    let mut all = Vec::with_capacity(samples.len());
    let mut all_by: BTreeMap<u16, usize> = BTreeMap::new();
    for op in Op::ALL {
        let mut lat: Vec<u32> = Vec::new();
        let mut by: BTreeMap<u16, usize> = BTreeMap::new();
        for s in samples.iter().filter(|s| s.op == op) {
            *by.entry(s.status).or_default() += 1;
            if s.status != 0 {
                lat.push(s.micros);
            }
        }
        let n: usize = by.values().sum();
        for (s, k) in &by {
            *all_by.entry(*s).or_default() += k;
        }
        all.extend_from_slice(&lat);
        lat.sort_unstable();
        println!(
            "{:<15} {:>9} {:>8.1} {:>8} {:>8} {:>8}  {}",
            op.name(),
            n,
            n as f64 / seconds.max(1e-9),
            percentile_ms(&lat, 0.5),
            percentile_ms(&lat, 0.99),
            percentile_ms(&lat, 1.0),
            statuses_text(&by)
        );
    }
    all.sort_unstable();
    println!(
        "{:<15} {:>9} {:>8.1} {:>8} {:>8} {:>8}  {}",
        "all",
        samples.len(),
        samples.len() as f64 / seconds.max(1e-9),
        percentile_ms(&all, 0.5),
        percentile_ms(&all, 0.99),
        percentile_ms(&all, 1.0),
        statuses_text(&all_by)
    );
}

/// When the daemon was not there: each daemon kill until a second after its restart.
fn daemon_down_windows(faults: &[Fault]) -> Vec<(Duration, Duration)> {
    faults
        .iter()
        .filter(|f| f.kind == FaultKind::DaemonKill)
        .map(|f| (f.start, f.end + Duration::from_secs(1)))
        .collect()
}

/// Per fault: what the clients saw, the backlog (drained: back to at most `in_flight`
/// records, the writes the clients can have in flight), the metrics and the log.
fn print_faults(
    faults: &[Fault],
    samples: &[Sample],
    metrics: &[MetricsSample],
    log: &Path,
    in_flight: u64,
) {
    println!("faults injected: {}", faults.len());
    let log_text = std::fs::read(log).unwrap_or_default();
    for (i, f) in faults.iter().enumerate() {
        let next = faults.get(i + 1).map(|n| n.start);
        let window_end = (f.end + FAULT_TAIL).min(next.unwrap_or(Duration::MAX));
        let in_window: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                let at = Duration::from_millis(u64::from(s.at_ms));
                at >= f.start && at < window_end
            })
            .collect();
        let writes: Vec<&&Sample> = in_window.iter().filter(|s| !s.op.is_read()).collect();
        let reads: Vec<&&Sample> = in_window.iter().filter(|s| s.op.is_read()).collect();
        let mut write_by: BTreeMap<u16, usize> = BTreeMap::new();
        let mut write_lat: Vec<u32> = Vec::new();
        for s in &writes {
            *write_by.entry(s.status).or_default() += 1;
            if s.status != 0 {
                write_lat.push(s.micros);
            }
        }
        write_lat.sort_unstable();
        let mut read_by: BTreeMap<u16, usize> = BTreeMap::new();
        let mut read_lat: Vec<u32> = Vec::new();
        for s in &reads {
            *read_by.entry(s.status).or_default() += 1;
            if s.status != 0 {
                read_lat.push(s.micros);
            }
        }
        read_lat.sort_unstable();
        println!(
            "#{} {} at t={:.1} s, lasted {:.1} s{}",
            i + 1,
            f.kind.name(),
            f.start.as_secs_f64(),
            (f.end - f.start).as_secs_f64(),
            if f.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.note)
            }
        );
        println!(
            "   writes during it (+{} s): {} ({}), latency p50/p99/max {}/{}/{} ms",
            FAULT_TAIL.as_secs(),
            writes.len(),
            statuses_text(&write_by),
            percentile_ms(&write_lat, 0.5),
            percentile_ms(&write_lat, 0.99),
            percentile_ms(&write_lat, 1.0)
        );
        println!(
            "   reads during it: {} ({}), latency p50/p99/max {}/{}/{} ms",
            reads.len(),
            statuses_text(&read_by),
            percentile_ms(&read_lat, 0.5),
            percentile_ms(&read_lat, 0.99),
            percentile_ms(&read_lat, 1.0)
        );
        // The backlog from the fault's start to the next fault's.
        let until = next.unwrap_or(Duration::MAX);
        let span: Vec<&MetricsSample> = metrics
            .iter()
            .filter(|m| m.at >= f.start && m.at < until)
            .collect();
        let peak = span.iter().filter_map(|m| m.pending).max();
        let drained = span
            .iter()
            .find(|m| m.at >= f.end && m.pending.is_some_and(|p| p <= in_flight))
            .map(|m| m.at - f.end);
        println!(
            "   backlog: peak {} pending; back to at most {in_flight} (the writes in flight): {}",
            peak.map_or_else(|| "unknown".to_owned(), |p| p.to_string()),
            match drained {
                Some(d) if f.kind.directory() =>
                    format!("{:.1} s after the directory returned", d.as_secs_f64()),
                Some(d) => format!("{:.1} s after the fault ended", d.as_secs_f64()),
                None if next.is_some() => "not before the next fault".to_owned(),
                None => "not before the traffic stopped".to_owned(),
            }
        );
        // What the metrics counted over the same span (a restarted daemon counts anew).
        let before = metrics
            .iter()
            .rev()
            .find(|m| m.at < f.start && m.pending.is_some());
        let after = span.iter().rev().find(|m| m.pending.is_some());
        if let (Some(b), Some(a)) = (before, after) {
            let mut counted = Vec::new();
            for (code, v) in &a.target_errors {
                let was = b.target_errors.get(code).copied().unwrap_or(0.0);
                if *v > was {
                    counted.push(format!("{code} +{}", v - was));
                }
            }
            if a.http_503 > b.http_503 {
                counted.push(format!("http 503 +{}", a.http_503 - b.http_503));
            }
            println!(
                "   metrics: {}",
                if counted.is_empty() {
                    "no target error or 503 counted".to_owned()
                } else {
                    format!(
                        "scim_target_errors_total by code / responses: {}",
                        counted.join(", ")
                    )
                }
            );
        }
        // What the log said, up to the next fault.
        let from = usize::try_from(f.log_offset)
            .unwrap_or(usize::MAX)
            .min(log_text.len());
        let to = faults
            .get(i + 1)
            .map_or(log_text.len(), |n| {
                usize::try_from(n.log_offset)
                    .unwrap_or(usize::MAX)
                    .min(log_text.len())
            })
            .max(from);
        let section = String::from_utf8_lossy(&log_text[from..to]);
        let noted: Vec<&str> = section
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        let mut distinct: Vec<String> = Vec::new();
        for line in &noted {
            let msg = log_message(line);
            if !distinct.contains(&msg) {
                distinct.push(msg);
            }
        }
        println!(
            "   log: {} warnings/errors{}",
            noted.len(),
            if distinct.is_empty() {
                String::new()
            } else {
                format!(
                    ", e.g. {}",
                    distinct
                        .iter()
                        .take(3)
                        .map(|m| format!("\"{m}\""))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );
    }
}

/// A log line without its timestamp and fields, cut short: `WARN target: message`.
fn log_message(line: &str) -> String {
    let at = line
        .find("WARN")
        .or_else(|| line.find("ERROR"))
        .unwrap_or(0);
    let text = &line[at..];
    let mut out: String = text.chars().take(140).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_cycles_through_every_fault_and_ends_before_the_traffic() {
        let plan = schedule(&FaultKind::CYCLE, 12.0, 2.0, 1.0);
        let kinds: Vec<FaultKind> = plan.iter().map(|(_, k)| *k).collect();
        for kind in FaultKind::CYCLE {
            assert!(kinds.contains(&kind), "{kinds:?}");
        }
        assert_eq!(plan[0].0, 1.0);
        assert!(plan.iter().all(|(at, _)| at + 2.0 <= 12.0), "{plan:?}");
        assert!(schedule(&FaultKind::CYCLE, 3.0, 10.0, 8.0).is_empty());
    }

    #[test]
    fn metrics_are_summed_by_name_and_labels() {
        let text = "# TYPE scim_delivery_pending gauge\nscim_delivery_pending{endpoint=\"default\"} 7\nscim_delivery_pending_x 3\nscim_http_requests_total{endpoint=\"Users\",method=\"POST\",status=\"503\"} 4\nscim_http_requests_total{endpoint=\"Users\",method=\"GET\",status=\"200\"} 9\nscim_target_errors_total{outcome=\"unavailable\",code=\"timeout\"} 2\n# EOF\n";
        assert_eq!(metric_sum(text, "scim_delivery_pending", &[]), Some(7.0));
        assert_eq!(
            metric_sum(text, "scim_http_requests_total", &["status=\"503\""]),
            Some(4.0)
        );
        assert_eq!(metric_sum(text, "scim_nothing", &[]), None);
        assert_eq!(target_errors(text).get("timeout"), Some(&2.0));
    }

    #[test]
    fn a_user_resource_is_compared_with_the_model() {
        let want = UserState {
            user_name: "a@b.c".into(),
            external_id: "x".into(),
            active: false,
            display_name: "A".into(),
            given: "G".into(),
            family: "F".into(),
            title: None,
            department: Some("D".into()),
            phone: None,
        };
        let body = json!({"userName": "a@b.c", "externalId": "x", "active": false,
            "displayName": "A", "name": {"givenName": "G", "familyName": "F"},
            ENTERPRISE: {"department": "D"},
            "emails": [{"type": "work", "value": "a@b.c"}]});
        assert_eq!(user_differs(body.to_string().as_bytes(), &want), Ok(()));
        let mut other = want.clone();
        other.title = Some("T".into());
        assert!(
            user_differs(body.to_string().as_bytes(), &other)
                .unwrap_err()
                .contains("title")
        );
    }
}
