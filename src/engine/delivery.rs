//! Delivery: the journal's pending records converged into the target, strictly in
//! journal order, by one worker thread.
//!
//! A write request, once its transaction is durable, waits (bounded) for its own record:
//! applied → 2xx; rejected (the target refuses the data) → the engine reverts the change
//! and answers 400 with the target's diagnostic; not delivered in time (the target is
//! down) → the record stays pending, the request gets its 2xx, and the worker delivers it
//! when the target returns. Every verdict is written to the record's `delivery` column,
//! the durable cursor: after a restart the worker resumes at the first pending record.
//!
//! Observability: every attempt counts in `scim_deliveries_total` (and failures in
//! `scim_target_errors_total`); [`Delivery::backlog`] reads the pending count and the
//! oldest pending record's age for readiness and the backlog gauges, which the worker
//! also refreshes at most once a second.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::journal::record::Record;
use crate::mapping::model::Mapping;
use crate::metrics::{self, FailureSource};
use crate::passwords::Sealer;
use crate::store::{Store, StoreError};
use crate::target::Change;

/// A record of a round: the change for the target, or the verdict without it.
type Planned = Result<Change, (Outcome, FailureSource)>;
use crate::target::{Feed, Outcome, Target};

/// Records fetched per round.
const BATCH: usize = 256;
/// How long a round takes records committed after it started (see [`RoundFeed`]) at
/// most: their verdicts are written when the round ends.
const FEED_FOR: Duration = Duration::from_millis(100);
/// Committed records kept in memory for the worker at most (see `offered`); beyond, the
/// worker reads them from the journal.
const OFFERED_MAX: usize = 1024;
/// Back-off bounds while the target is unavailable. A retry costs one connection
/// attempt, so the bound is short: a directory that returns gets its backlog within 5 s
/// (with 30 s, an 8 s outage was drained only 22 s after it ended; bench soak).
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often the worker refreshes the backlog gauges at most.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// The records waiting for delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub pending: u64,
    /// How long the oldest pending record has waited (`None`: nothing pending).
    pub oldest_age: Option<Duration>,
}

pub struct Delivery {
    /// The endpoint whose journal this worker delivers (metrics, purge records).
    endpoint: String,
    store: Arc<Store>,
    /// The mapping and the target it writes, replaced together by a reload; the worker
    /// takes both for each record.
    current: std::sync::RwLock<(Arc<Mapping>, Arc<dyn Target>)>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Outcome>>>,
    /// Verdicts told but not yet written to the journal (see `round`): a request that
    /// starts waiting in between finds its verdict here.
    unmarked: Arc<Mutex<HashMap<u64, Outcome>>>,
    /// The last record whose verdict is told (its mark written or queued in `marks`):
    /// rounds fetch pending records after it, so a record whose mark is not written yet is
    /// not delivered twice.
    told_through: std::sync::atomic::AtomicU64,
    /// The verdicts told and not yet written to the journal.
    marks: Arc<MarkQueue>,
    /// Pending records the store handed over as they committed (`Store::on_commit`),
    /// by sequence number: a round that finds the next records here takes them instead
    /// of reading and parsing them back from the journal.
    offered: Mutex<std::collections::BTreeMap<u64, Record>>,
    /// Signalled when records are offered (for a round taking more, see [`RoundFeed`]).
    offered_cv: Condvar,
    wake: (Mutex<bool>, Condvar),
    /// The last unavailability, for logs and readiness (None when delivering fine).
    pub last_error: Mutex<Option<String>>,
    /// Seals the passwords of records (and opens them for delivery); made once the
    /// mapping writes passwords.
    sealer: std::sync::OnceLock<Arc<Sealer>>,
}

/// What a write does with a `password` its request carries.
#[derive(Clone, Debug, Default)]
pub enum PasswordPolicy {
    /// The mapping writes no password: accepted and dropped, as RFC 7643 allows.
    #[default]
    Ignore,
    /// The mapping writes passwords, but not every connection to the directory is
    /// encrypted: a request with a password is refused (400) with this reason.
    Refuse(String),
    /// Sealed into the state store with the record, and delivered with it.
    Deliver(Arc<Sealer>),
}

/// Whether `mapping` writes users' passwords.
fn maps_passwords(mapping: &Mapping) -> bool {
    mapping
        .ldap
        .users
        .as_ref()
        .is_some_and(|u| u.password.is_some())
}

impl Delivery {
    /// Starts the worker thread of the default endpoint.
    pub fn start(
        store: Arc<Store>,
        mapping: Arc<Mapping>,
        target: Arc<dyn Target>,
    ) -> std::io::Result<Arc<Delivery>> {
        Delivery::start_for(crate::engine::DEFAULT_ENDPOINT, store, mapping, target)
    }

    /// Starts the worker thread of `endpoint`.
    pub fn start_for(
        endpoint: &str,
        store: Arc<Store>,
        mapping: Arc<Mapping>,
        target: Arc<dyn Target>,
    ) -> std::io::Result<Arc<Delivery>> {
        redeliver_lost_tail(endpoint, &store, target.as_ref())?;
        let d = Arc::new(Delivery {
            endpoint: endpoint.to_string(),
            store,
            current: std::sync::RwLock::new((mapping, target)),
            waiters: Mutex::new(HashMap::new()),
            unmarked: Arc::new(Mutex::new(HashMap::new())),
            told_through: std::sync::atomic::AtomicU64::new(0),
            marks: Arc::new(MarkQueue::default()),
            offered: Mutex::new(std::collections::BTreeMap::new()),
            offered_cv: Condvar::new(),
            wake: (Mutex::new(true), Condvar::new()),
            last_error: Mutex::new(None),
            sealer: std::sync::OnceLock::new(),
        });
        d.open_sealer().map_err(std::io::Error::other)?;
        let offer_to = Arc::downgrade(&d);
        d.store.on_commit(move |records| {
            if let Some(d) = offer_to.upgrade() {
                d.offer(records);
            }
        });
        let worker = d.clone();
        std::thread::Builder::new()
            .name("scim-bridge-delivery".into())
            .spawn(move || worker.run())?;
        Ok(d)
    }

    /// The mapping and target in use.
    fn current(&self) -> (Arc<Mapping>, Arc<dyn Target>) {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn mapping(&self) -> Arc<Mapping> {
        self.current().0
    }

    /// Replaces the mapping and the target (a configuration reload); records after the
    /// one being delivered go through the new ones.
    pub fn replace(&self, mapping: Arc<Mapping>, target: Arc<dyn Target>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (mapping, target);
        if let Err(e) = self.open_sealer() {
            tracing::error!(error = %e, "the mapping writes passwords, but their key cannot be opened; requests with a password are refused");
        }
        self.notify();
    }

    /// Makes the sealer when the mapping writes passwords (its key file in the state
    /// directory, created on first use).
    fn open_sealer(&self) -> Result<(), crate::passwords::PasswordError> {
        if self.sealer.get().is_some() || !maps_passwords(&self.mapping()) {
            return Ok(());
        }
        let dir = self
            .store
            .path()
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."));
        let sealer = Arc::new(Sealer::open_or_create(dir)?);
        let _ = self.sealer.set(sealer);
        Ok(())
    }

    /// What a write does with a password, under the current mapping and target.
    pub fn password_policy(&self) -> PasswordPolicy {
        let (mapping, target) = self.current();
        if !maps_passwords(&mapping) {
            return PasswordPolicy::Ignore;
        }
        if let Some(reason) = target.password_refusal() {
            return PasswordPolicy::Refuse(reason);
        }
        match self.sealer.get() {
            Some(sealer) => PasswordPolicy::Deliver(sealer.clone()),
            None => PasswordPolicy::Refuse(
                "the key that protects passwords until delivery cannot be opened (see the log)"
                    .into(),
            ),
        }
    }

    /// Puts the sealed passwords of the records in `planned` into their changes. A
    /// password that does not open (the key file was replaced) is left out, and said.
    fn add_passwords(
        &self,
        mapping: &Mapping,
        planned: &mut [(u64, Planned)],
    ) -> Result<(), StoreError> {
        let (Some(sealer), Some(first), Some(last)) = (
            self.sealer.get().filter(|_| maps_passwords(mapping)),
            planned.first().map(|p| p.0),
            planned.last().map(|p| p.0),
        ) else {
            return Ok(());
        };
        let sealed = self.store.read(|r| r.secrets_between(first, last))?;
        for (seq, bytes) in sealed {
            let Some((_, Ok(Change::Upsert { key, password, .. }))) =
                planned.iter_mut().find(|(s, _)| *s == seq)
            else {
                continue;
            };
            match sealer.open(seq, key, &bytes) {
                Ok(p) => *password = Some(p),
                Err(e) => {
                    tracing::error!(seq, resource = %key, error = %e, "the password of a record cannot be opened; the record is delivered without it");
                }
            }
        }
        Ok(())
    }

    /// Tells the worker that new records are pending.
    pub fn notify(&self) {
        let (flag, cv) = &self.wake;
        *flag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_one();
    }

    /// Waits up to `timeout` for the verdict on record `seq`; `None`: still pending.
    pub async fn wait(&self, seq: u64, timeout: Duration) -> Option<Outcome> {
        if self.target_down() {
            // The target is known to be unreachable: answer at once (the record stays
            // pending) instead of holding every provider request for the full timeout.
            self.notify();
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(seq, tx);
        // The worker may have delivered it before we registered: its verdict is in
        // `unmarked` until written, then in the journal.
        let told = self
            .unmarked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&seq)
            .cloned();
        if told.is_some() {
            self.forget(seq);
            return told;
        }
        // Not in `unmarked`: either not told yet (the worker will find the waiter
        // registered above) or told and its mark written since; only the latter needs
        // the journal, and then `told_through` has reached it (a write just committed
        // is almost always the former, and skips the read).
        let maybe_marked = seq <= self.told_through.load(std::sync::atomic::Ordering::SeqCst);
        if maybe_marked && let Ok(Some(row)) = self.store.read(|r| r.journal_get(seq)) {
            let done = match row.delivery.as_str() {
                "applied" => Some(Outcome::Applied),
                "rejected" => Some(Outcome::Rejected(row.delivery_detail.unwrap_or_default())),
                _ => None,
            };
            if done.is_some() {
                self.forget(seq);
                return done;
            }
        }
        self.notify();
        let outcome = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        self.forget(seq);
        outcome
    }

    /// Reads the backlog (a blocking store read: call it off the async threads) and
    /// updates the `scim_delivery_pending` and `scim_delivery_oldest_pending_seconds` gauges.
    pub fn backlog(&self) -> Result<Backlog, StoreError> {
        let (pending, oldest) = self.store.read(|r| r.journal_backlog())?;
        let oldest_age = oldest.map(|time| {
            time::OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339)
                .ok()
                .and_then(|t| Duration::try_from(time::OffsetDateTime::now_utc() - t).ok())
                .unwrap_or(Duration::ZERO)
        });
        metrics::delivery_backlog(&self.endpoint, pending, oldest_age);
        Ok(Backlog {
            pending,
            oldest_age,
        })
    }

    /// The class of the last unavailability (`connect`, `timeout`, an LDAP result code
    /// name, see [`metrics::error_code`]); `None` while delivering fine. Unlike the error
    /// text, it names no entry, so it may be shown without authentication (`/readyz`).
    pub fn last_error_code(&self) -> Option<&'static str> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_deref()
            .map(metrics::error_code)
    }

    /// Whether the last delivery attempt found the target unavailable.
    pub fn target_down(&self) -> bool {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Keeps committed pending records for the worker (up to `OFFERED_MAX`; the ones
    /// beyond are left to the journal).
    fn offer(&self, records: Vec<Record>) {
        let mut offered = self
            .offered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for record in records {
            if offered.len() >= OFFERED_MAX {
                break;
            }
            offered.insert(record.seq, record);
        }
        drop(offered);
        self.offered_cv.notify_all();
    }

    /// The records right after `after`, from memory, when the next one was offered: a
    /// contiguous run of sequence numbers, so none is skipped. `None`: read the journal.
    /// Forgets the offered records at or before `after` (told already).
    fn take_offered(&self, after: u64) -> Option<Vec<(u64, Result<Record, String>)>> {
        let mut offered = self
            .offered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(entry) = offered.first_entry() {
            if *entry.key() > after {
                break;
            }
            entry.remove();
        }
        let mut next = after + 1;
        let mut run = Vec::new();
        while run.len() < BATCH {
            match offered.first_entry() {
                Some(entry) if *entry.key() == next => {
                    run.push((next, Ok(entry.remove())));
                    next += 1;
                }
                _ => break,
            }
        }
        (!run.is_empty()).then_some(run)
    }

    fn forget(&self, seq: u64) {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&seq);
    }

    /// Keeps the verdict of `seq` until its mark is written (for a request that starts
    /// waiting in between), then tells the waiting request, if any.
    fn told(&self, seq: u64, outcome: &Outcome) {
        self.unmarked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(seq, outcome.clone());
        self.tell(seq, outcome);
    }

    fn tell(&self, seq: u64, outcome: &Outcome) {
        let waiter = self
            .waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&seq);
        if let Some(tx) = waiter {
            let _ = tx.send(outcome.clone());
        }
    }

    fn sleep_until_woken(&self, timeout: Duration) {
        let (flag, cv) = &self.wake;
        let mut woken = flag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*woken {
            woken = cv
                .wait_timeout(woken, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        *woken = false;
    }

    fn run(self: Arc<Self>) {
        let mut backoff = BACKOFF_MIN;
        let mut gauges_at: Option<Instant> = None;
        loop {
            let progress = self.round();
            if gauges_at.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
                if let Err(e) = self.backlog() {
                    tracing::debug!(error = %e, "cannot read the delivery backlog");
                }
                gauges_at = Some(Instant::now());
            }
            match progress {
                Ok(Progress::Idle) => {
                    backoff = BACKOFF_MIN;
                    self.sleep_until_woken(Duration::from_secs(5));
                }
                Ok(Progress::More) => backoff = BACKOFF_MIN,
                Ok(Progress::TargetDown(e)) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "target unavailable; records stay pending");
                    *self
                        .last_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => {
                    tracing::error!(error = %e, "delivery cannot read or mark the journal; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Submits a store job that writes every queued verdict (see [`MarkQueue`]), without
    /// waiting for it. A verdict is forgotten from `unmarked` once written; one whose write
    /// fails stays queued (and told), and the next job writes it.
    fn write_marks(&self) -> Result<(), StoreError> {
        let queue = self.marks.clone();
        let written: Arc<Mutex<Marks>> = Arc::default();
        let job_queue = self.marks.clone();
        let job_written = written.clone();
        let unmarked = self.unmarked.clone();
        self.store.write_detached(
            move |tx| -> Result<(), StoreError> {
                let marks = job_queue.take();
                let (Some((&first, _)), Some((&last, _))) =
                    (marks.first_key_value(), marks.last_key_value())
                else {
                    return Ok(());
                };
                let wrote = (|| {
                    for (seq, (status, detail)) in &marks {
                        tx.journal_mark(*seq, status, detail.as_deref())?;
                    }
                    // A password lives on disk only until its record has a verdict.
                    tx.secrets_forget_between(first, last)
                })();
                match wrote {
                    Ok(()) => {
                        *job_written
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = marks;
                        Ok(())
                    }
                    Err(e) => {
                        // Back at once: a job after this one in the same commit writes them.
                        job_queue.give_back(marks);
                        Err(e)
                    }
                }
            },
            move |outcome| {
                let marks = std::mem::take(
                    &mut *written
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                );
                match outcome {
                    Ok(()) => {
                        let mut unmarked = unmarked
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        for seq in marks.keys() {
                            unmarked.remove(seq);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot write delivery verdicts; they are written with the next ones");
                        queue.give_back(marks);
                    }
                }
            },
        )
    }

    /// Delivers up to one batch, in order, stopping at the first unavailability.
    fn round(&self) -> Result<Progress, StoreError> {
        use std::sync::atomic::Ordering;
        let after = self.told_through.load(Ordering::SeqCst);
        let rows = match self.take_offered(after) {
            Some(run) => run,
            None => self
                .store
                .read(|r| r.journal_pending_after(after, BATCH))?
                .into_iter()
                .map(|row| (row.seq, row.record().map_err(|e| e.to_string())))
                .collect(),
        };
        let (mapping, target) = self.current();
        if rows.is_empty() {
            if !self.marks.is_empty() {
                // Verdicts whose write failed, and no round since to write them with.
                self.write_marks()?;
            }
            return Ok(Progress::Idle);
        }
        // Verdicts are told to the waiting requests at once and written to the journal
        // together at the end of the round (one commit instead of one per record), without
        // waiting for that commit: the next round starts after the last record told. A
        // crash in between only re-delivers those records: converging is idempotent.
        let mut marks: Vec<(u64, Mark)> = Vec::new();
        let mut down = None;
        // The changes of the round go to the target together (one commit where the
        // target can); records that do not map are rejected without it.
        let mut planned: Vec<(u64, Planned)> = rows
            .into_iter()
            .map(|(seq, record)| {
                let planned = match record {
                    Ok(record) => mapping
                        .change(&record)
                        .map_err(|detail| (Outcome::Rejected(detail), FailureSource::Mapping)),
                    Err(e) => Err((Outcome::Rejected(e), FailureSource::Record)),
                };
                (seq, planned)
            })
            .collect();
        self.add_passwords(&mapping, &mut planned)?;
        let changes: Vec<Change> = planned
            .iter()
            .filter_map(|(_, p)| p.as_ref().ok().cloned())
            .collect();
        let seqs: Vec<u64> = planned
            .iter()
            .filter(|(_, p)| p.is_ok())
            .map(|(seq, _)| *seq)
            .collect();
        // Each verdict reaches its waiting request as soon as the target vouches for it
        // (a directory: once it answered, before the round's end), and again below.
        let feed = RoundFeed {
            delivery: self,
            mapping: &mapping,
            state: Mutex::new(FeedState {
                next_seq: planned.last().map_or(after + 1, |(seq, _)| seq + 1),
                fed: Vec::new(),
                closed: false,
            }),
            records: planned.len(),
            first_index: changes.len(),
            indexed: Mutex::new(Vec::new()),
            until: Instant::now() + FEED_FOR,
        };
        let outcomes = target.deliver_telling(
            &self.endpoint,
            &changes,
            &seqs,
            &|i, outcome| {
                if let Some(seq) = seqs.get(i).copied().or_else(|| feed.seq_of(i)) {
                    self.told(seq, outcome);
                }
            },
            &feed,
        );
        planned.extend(feed.into_fed());
        let mut applied = outcomes.into_iter();
        for (seq, planned) in planned {
            let (outcome, source) = match planned {
                Ok(_) => match applied.next() {
                    Some(outcome) => (outcome, FailureSource::Target),
                    None => (
                        Outcome::Unavailable(
                            "the target answered fewer outcomes than changes".into(),
                        ),
                        FailureSource::Target,
                    ),
                },
                Err(failed) => failed,
            };
            metrics::delivery(&outcome, source);
            match &outcome {
                Outcome::Applied => marks.push((seq, ("applied", None))),
                Outcome::Rejected(detail) => {
                    tracing::warn!(seq, detail = %detail, "target rejected a record");
                    marks.push((seq, ("rejected", Some(detail.clone()))));
                }
                Outcome::Unavailable(e) => {
                    // Told early as applied, then the target could not keep it (its
                    // commit failed): delivered again, so no verdict is kept for it.
                    self.unmarked
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&seq);
                    down = Some(e.clone());
                    break;
                }
            }
            *self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            self.told(seq, &outcome);
        }
        if let Some(&(last, _)) = marks.last() {
            self.told_through.fetch_max(last, Ordering::SeqCst);
            self.marks.push(marks);
            self.write_marks()?;
        }
        Ok(match down {
            Some(e) => Progress::TargetDown(e),
            None => Progress::More,
        })
    }
}

impl Delivery {
    /// Appends a `purge` record (pending) for every target row archived before its
    /// mapping's `purge_after`; the worker then removes the rows. Returns how many.
    pub fn journal_purges(
        &self,
        store: &Store,
        now: time::OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let mut due = Vec::new();
        let (mapping, target) = self.current();
        for map in [mapping.users.as_ref(), mapping.groups.as_ref()]
            .into_iter()
            .flatten()
        {
            let Some(after) = map.purge_after else {
                continue;
            };
            let before = crate::journal::timestamp(now - after);
            for key in target
                .archived_before(map.kind, &before)
                .map_err(|e| StoreError::Journal(e.to_string()))?
            {
                due.push((map.kind, key));
            }
        }
        let n = due.len();
        if n == 0 {
            return Ok(0);
        }
        let time = crate::journal::timestamp(now);
        let endpoint = self.endpoint.clone();
        store.write_blocking(move |tx| -> Result<(), StoreError> {
            for (kind, key) in due {
                tx.journal_append(
                    crate::store::NewRecord {
                        time: time.clone(),
                        endpoint: endpoint.clone(),
                        actor: "retention".into(),
                        client: None,
                        request_id: None,
                        op: crate::journal::record::Op::Purge,
                        kind,
                        id: key.clone(),
                        version_before: None,
                        version_after: None,
                        image: serde_json::json!({"id": key}),
                        member_delta: None,
                    },
                    "pending",
                )?;
            }
            Ok(())
        })?;
        self.notify();
        Ok(n)
    }
}

/// When the target keeps a delivery cursor behind records marked applied (a crash of
/// the machine lost its last commits), marks those records pending again, so the worker
/// delivers them again (converging is idempotent).
fn redeliver_lost_tail(endpoint: &str, store: &Store, target: &dyn Target) -> std::io::Result<()> {
    let through = match target.delivered_through(endpoint) {
        Ok(Some(through)) => through,
        Ok(None) => return Ok(()),
        Err(e) => {
            tracing::warn!(endpoint, error = %e, "cannot read the target's delivery cursor; delivering from the journal's marks");
            return Ok(());
        }
    };
    let again = store
        .write_blocking(move |tx| tx.journal_redeliver_after(through))
        .map_err(std::io::Error::other)?;
    if again > 0 {
        tracing::warn!(
            endpoint,
            through,
            records = again,
            "the target lost its last deliveries (its cursor is behind the journal); delivering them again"
        );
    }
    Ok(())
}

enum Progress {
    Idle,
    More,
    TargetDown(String),
}

/// A record's verdict as the journal keeps it: `applied` or `rejected`, with the detail.
type Mark = (&'static str, Option<String>);
type Marks = std::collections::BTreeMap<u64, Mark>;

/// Verdicts told and not yet written to the journal, by record. The store job that writes
/// them takes every one queued when it runs, and a write that fails gives them back at
/// once, so a record is never marked while one before it is not: after a crash, the
/// records delivered again are a tail of the journal, in order, and never an older
/// record after a newer one of the same resource (which would undo the newer in the
/// target). A verdict whose write failed is not delivered again (the target has it): it
/// waits here for the next write.
#[derive(Default)]
struct MarkQueue(Mutex<Marks>);

impl MarkQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, marks: Vec<(u64, Mark)>) {
        self.lock().extend(marks);
    }

    fn take(&self) -> Marks {
        std::mem::take(&mut *self.lock())
    }

    fn give_back(&self, marks: Marks) {
        self.lock().extend(marks);
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The records committed while a round runs, handed to a target that converges changes
/// side by side ([`Feed`]): each as the change its mapping makes, in journal order, from
/// the offered records only (the journal is not read), for at most [`FEED_FOR`] and up to
/// [`BATCH`] records a round. A record the mapping rejects is kept with its verdict; a
/// change the target does not accept goes back to the offered records and closes the
/// feed, so it opens the next round.
struct RoundFeed<'a> {
    delivery: &'a Delivery,
    mapping: &'a Mapping,
    state: Mutex<FeedState>,
    until: Instant,
    /// The round's own records.
    records: usize,
    /// The index of the first change fed: the round's own changes come first.
    first_index: usize,
    /// The record of each change fed, by index from `first_index` (apart from `state`,
    /// which a feeding worker holds while it waits, so that telling never waits).
    indexed: Mutex<Vec<u64>>,
}

struct FeedState {
    /// The record that would come next.
    next_seq: u64,
    /// The records fed, in journal order.
    fed: Vec<(u64, Planned)>,
    closed: bool,
}

impl RoundFeed<'_> {
    /// The record whose change was handed over with index `i`.
    fn seq_of(&self, i: usize) -> Option<u64> {
        let indexed = self
            .indexed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        indexed.get(i.checked_sub(self.first_index)?).copied()
    }

    /// The records fed, in journal order, to be marked with the round's own.
    fn into_fed(self) -> Vec<(u64, Planned)> {
        self.state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fed
    }

    /// The record `seq` once offered, waiting until `deadline` at most.
    fn offered(&self, seq: u64, deadline: Instant) -> Option<Record> {
        let mut offered = self
            .delivery
            .offered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(record) = offered.remove(&seq) {
                return Some(record);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            offered = self
                .delivery
                .offered_cv
                .wait_timeout(offered, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

impl Feed for RoundFeed<'_> {
    fn next(
        &self,
        wait: Duration,
        accept: &mut dyn FnMut(&Change) -> bool,
    ) -> Option<(usize, Change)> {
        // Taken before the lock: workers waiting in turn for it wait together.
        let deadline = (Instant::now() + wait).min(self.until);
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if state.closed || self.records + state.fed.len() >= BATCH {
                return None;
            }
            let seq = state.next_seq;
            let record = self.offered(seq, deadline)?;
            let mut planned = vec![(
                seq,
                self.mapping
                    .change(&record)
                    .map_err(|detail| (Outcome::Rejected(detail), FailureSource::Mapping)),
            )];
            if let Err(e) = self.delivery.add_passwords(self.mapping, &mut planned) {
                tracing::debug!(error = %e, "cannot read a fed record's password; it waits for the next round");
                state.closed = true;
            }
            let (_, planned) = planned.pop()?;
            match planned {
                Ok(change) if !state.closed && accept(&change) => {
                    let mut indexed = self
                        .indexed
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    let index = self.first_index + indexed.len();
                    indexed.push(seq);
                    state.next_seq += 1;
                    state.fed.push((seq, Ok(change.clone())));
                    metrics::delivery_fed();
                    return Some((index, change));
                }
                Ok(_) => {
                    state.closed = true;
                    self.delivery
                        .offered
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(seq, record);
                    return None;
                }
                Err(rejected) => {
                    state.next_seq += 1;
                    state.fed.push((seq, Err(rejected)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MarkQueue;

    fn applied(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, super::Mark)> {
        seqs.map(|seq| (seq, ("applied", None))).collect()
    }

    #[test]
    fn verdicts_whose_write_failed_are_written_with_the_next_ones_in_journal_order() {
        let queue = MarkQueue::default();
        queue.push(applied(1..=256));
        let first_write = queue.take();
        // The next round's verdicts are queued while the first write is under way...
        queue.push(applied(257..=300));
        // ...and that write fails: the next one takes both, oldest first.
        queue.give_back(first_write);
        let next = queue.take();
        assert_eq!(
            next.keys().copied().collect::<Vec<_>>(),
            (1..=300).collect::<Vec<_>>()
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_write_takes_nothing_a_write_before_it_already_took() {
        let queue = MarkQueue::default();
        queue.push(applied(1..=10));
        let first = queue.take();
        queue.push(applied(11..=12));
        let second = queue.take();
        assert_eq!(first.len(), 10);
        assert_eq!(second.keys().copied().collect::<Vec<_>>(), [11, 12]);
    }
}
