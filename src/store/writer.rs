//! The single writer: group commit.
//!
//! One thread owns the write connection. It takes every job that is waiting (up to a
//! batch limit), runs each inside its own savepoint of one transaction, commits once, and
//! only then answers the jobs. Concurrent requests thus share one fsync instead of paying
//! one each, and no job is answered before its changes (and their journal records) are
//! durable. A job that fails rolls back alone; a commit that fails (disk full, read-only)
//! fails the whole batch and leaves nothing of it behind.
//!
//! The writer keeps its own health for readiness ([`WriterHealth`]: the thread runs, the
//! last commit succeeded) and records `scim_journal_append_seconds` (submission to
//! commit, per job) and `scim_journal_batch_size` (jobs per commit).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Instant;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{StoreError, WriteTx};
use crate::journal::record::Record;

/// At most this many jobs share one commit: bounds the latency a large batch adds.
const MAX_BATCH: usize = 512;

type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// A job's reply, sent exactly once: with the job's outcome, or — when the job is dropped
/// without running (its batch's transaction could not begin: the database locked by
/// another process, the disk failing) — with an error when it is dropped. A detached job's
/// caller (delivery's verdicts) must hear of the failure to deliver its records again;
/// silence left them pending until a restart.
struct OnceReply<T, E: From<StoreError>> {
    reply: Option<ReplyFn<T, E>>,
}

type ReplyFn<T, E> = Box<dyn FnOnce(Result<T, E>) + Send>;

impl<T, E: From<StoreError>> OnceReply<T, E> {
    fn new(reply: impl FnOnce(Result<T, E>) + Send + 'static) -> Self {
        OnceReply {
            reply: Some(Box::new(reply)),
        }
    }

    fn send(mut self, outcome: Result<T, E>) {
        if let Some(reply) = self.reply.take() {
            reply(outcome);
        }
    }
}

impl<T, E: From<StoreError>> Drop for OnceReply<T, E> {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            reply(Err(E::from(StoreError::Writer(
                "the write was not run: its group commit could not begin (see the log)".into(),
            ))));
        }
    }
}
/// Told the committed `pending` records of each batch (see `Store::on_commit`).
pub(super) type Listener = Box<dyn Fn(Vec<Record>) + Send + Sync>;
type SharedListener = Arc<std::sync::RwLock<Option<Listener>>>;
type Job = Box<dyn FnOnce(&WriteTx<'_>) -> (bool, Finish) + Send>;
/// A task that needs the connection to itself, outside any transaction (see
/// `Writer::submit_alone`).
type Alone = Box<dyn FnOnce(&mut Connection) + Send>;

/// What the writer thread is handed.
enum Work {
    /// A job for the next group-commit batch.
    Job(Queued),
    /// Runs between batches, alone.
    Alone(Alone),
}

/// A job with the time it was handed to the writer.
struct Queued {
    job: Job,
    submitted: Instant,
    /// Whether the job's caller needs its commit on disk (see `Store::write_detached`).
    durable: bool,
}

/// Whether the writer can make changes durable now, as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterHealth {
    /// The writer thread is running (it stops only if a job panics).
    pub running: bool,
    /// The last group commit succeeded (true before the first one). A failed commit
    /// (disk full, read-only, IO error) is retried by the next write.
    pub last_commit_ok: bool,
}

/// The writer thread's health, shared with the store.
struct Health {
    running: AtomicBool,
    last_commit_ok: AtomicBool,
}

/// Marks the writer stopped when its thread ends, normally or by a panic.
struct StopGuard(Arc<Health>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

pub(super) struct Writer {
    jobs: mpsc::Sender<Work>,
    health: Arc<Health>,
    listener: SharedListener,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Work>();
        let health = Arc::new(Health {
            running: AtomicBool::new(true),
            last_commit_ok: AtomicBool::new(true),
        });
        let shared = health.clone();
        let listener: SharedListener = Arc::new(std::sync::RwLock::new(None));
        let told = listener.clone();
        thread::Builder::new()
            .name("scim-bridge-writer".into())
            .spawn(move || run(conn, rx, shared, told))
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            jobs: tx,
            health,
            listener,
        })
    }

    pub(super) fn on_commit(&self, listener: Listener) {
        *self
            .listener
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(listener);
    }

    pub(super) fn health(&self) -> WriterHealth {
        WriterHealth {
            running: self.health.running.load(Ordering::SeqCst),
            last_commit_ok: self.health.last_commit_ok.load(Ordering::SeqCst),
        }
    }

    fn send(&self, job: Job, durable: bool) -> Result<(), StoreError> {
        let queued = Queued {
            job,
            submitted: Instant::now(),
            durable,
        };
        self.jobs
            .send(Work::Job(queued))
            .map_err(|_| StoreError::Writer("the writer thread has stopped".into()))
    }

    fn job<T, E>(
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        reply: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> Job
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let reply = OnceReply::new(reply);
        Box::new(move |wtx: &WriteTx<'_>| {
            let result = f(wtx);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error: Option<&StoreError>| {
                let outcome = match (commit_error, result) {
                    (Some(e), Ok(_)) => Err(E::from(e.duplicate())),
                    (_, result) => result,
                };
                reply.send(outcome);
            });
            (ok, finish)
        })
    }

    pub(super) async fn submit<T, E>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job = Self::job(f, move |r| {
            let _ = tx.send(r);
        });
        self.send(job, true)?;
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Writer("the writer dropped a job".into()).into()))
    }

    pub(super) fn submit_detached<T, E>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        done: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> Result<(), StoreError>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.send(Self::job(f, done), false)
    }

    pub(super) fn submit_blocking<T, E>(
        &self,
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job = Self::job(f, move |r| {
            let _ = tx.send(r);
        });
        self.send(job, true)?;
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Writer("the writer dropped a job".into()).into()))
    }

    /// Runs `task` on the writer thread with the write connection to itself, between two
    /// batches and outside any transaction (what only a connection without a transaction
    /// may do, such as changing `journal_mode`: see `Store::bulk_load`). Blocks until it
    /// is done; must not run on an async runtime thread. The task starts at
    /// `synchronous=FULL` and must leave the connection as it found it: in WAL mode, no
    /// transaction open.
    pub(super) fn submit_alone<T: Send + 'static>(
        &self,
        task: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let alone: Alone = Box::new(move |conn| {
            let _ = tx.send(task(conn));
        });
        self.jobs
            .send(Work::Alone(alone))
            .map_err(|_| StoreError::Writer("the writer thread has stopped".into()))?;
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Writer("the writer dropped a task".into())))
    }
}

fn run(
    mut conn: Connection,
    jobs: mpsc::Receiver<Work>,
    health: Arc<Health>,
    listener: SharedListener,
) {
    let _stopped = StopGuard(health.clone());
    // Whether the connection may still be at `synchronous=NORMAL` (see `run_batch`).
    let mut sync_relaxed = false;
    // A task that arrived while a batch was gathered: it runs after that batch, in order.
    let mut next: Option<Work> = None;
    loop {
        let first = match next.take() {
            Some(work) => work,
            None => match jobs.recv() {
                Ok(work) => work,
                Err(_) => return,
            },
        };
        let first = match first {
            Work::Job(job) => job,
            Work::Alone(task) => {
                if sync_relaxed && conn.pragma_update(None, "synchronous", "FULL").is_ok() {
                    sync_relaxed = false;
                }
                task(&mut conn);
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(Work::Job(job)) => batch.push(job),
                Ok(alone) => {
                    next = Some(alone);
                    break;
                }
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch, &health, &listener, &mut sync_relaxed);
    }
}

/// Runs and commits one batch, records its health and metrics, then answers its jobs.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<Queued>,
    health: &Health,
    listener: &SharedListener,
    sync_relaxed: &mut bool,
) {
    let size = batch.len();
    let mut appended: Vec<Record> = Vec::new();
    let mut finishes: Vec<Finish> = Vec::with_capacity(size);
    let mut submitted: Vec<Instant> = Vec::with_capacity(size);
    let started = Instant::now();
    // A batch of relaxed jobs only (delivery verdicts) need not wait for the disk.
    let relaxed = batch.iter().all(|q| !q.durable);
    let outcome = (|| -> Result<(), StoreError> {
        if relaxed {
            *sync_relaxed = true;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
        } else if *sync_relaxed {
            // Left relaxed by a batch that could not set it back.
            conn.pragma_update(None, "synchronous", "FULL")?;
            *sync_relaxed = false;
        }
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for Queued {
            job, submitted: at, ..
        } in batch
        {
            submitted.push(at);
            // On failure the jobs not yet run are dropped unanswered: their callers see
            // `StoreError::Writer`, a 503, like the jobs answered with the batch's error.
            let sp = tx.savepoint()?;
            let wtx = WriteTx {
                tx: &sp,
                appended: Default::default(),
            };
            let (ok, finish) = job(&wtx);
            finishes.push(finish);
            if ok {
                appended.append(&mut wtx.appended.into_inner());
                sp.commit()?;
            }
            // else: dropping the savepoint rolls this job back alone.
        }
        tx.commit()?;
        Ok(())
    })();
    if outcome.is_err() && !conn.is_autocommit() {
        // A failed COMMIT can leave the transaction open; close it so the next batch starts clean.
        let _ = conn.execute_batch("ROLLBACK");
    }
    if relaxed && conn.pragma_update(None, "synchronous", "FULL").is_ok() {
        *sync_relaxed = false;
    }
    // (Still relaxed: the next durable batch sets it back first, or fails.)
    match &outcome {
        Ok(()) => {
            let committed = Instant::now();
            crate::metrics::journal_commit(
                size,
                submitted.iter().map(|at| committed.duration_since(*at)),
            );
            tracing::debug!(
                jobs = size,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "group commit"
            )
        }
        Err(e) => {
            crate::metrics::journal_commit(size, []);
            tracing::error!(jobs = size, error = %e, "group commit failed; the batch was rolled back")
        }
    }
    let error = outcome.err();
    crate::metrics::journal_commit_outcome(error.is_none());
    if error.is_none() && !appended.is_empty() {
        let listener = listener
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(listener) = listener.as_ref() {
            listener(appended);
        }
    }
    // Before the answers: a caller told of the failure then sees it in the health too.
    health
        .last_commit_ok
        .store(error.is_none(), Ordering::SeqCst);
    for finish in finishes {
        finish(error.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::{Store, StoreError};

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open the store");
        (dir, store)
    }

    #[test]
    fn a_job_dropped_before_it_runs_still_answers_with_an_error() {
        // What happens to the jobs of a batch whose transaction cannot begin.
        let (tx, rx) = std::sync::mpsc::channel();
        let job = super::Writer::job(
            |_: &crate::store::WriteTx<'_>| -> Result<(), StoreError> { Ok(()) },
            move |r: Result<(), StoreError>| {
                let _ = tx.send(r.map_err(|e| e.to_string()));
            },
        );
        drop(job);
        let answer = rx
            .recv_timeout(Duration::from_secs(1))
            .expect("the reply is sent when the job is dropped");
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.contains("could not begin")),
            "{answer:?}"
        );
    }

    #[test]
    fn a_failed_commit_shows_in_the_health_until_a_commit_succeeds() {
        let (_dir, store) = open();
        assert!(store.writer_health().running && store.writer_health().last_commit_ok);
        // A deferred foreign key is checked at COMMIT: the job succeeds, the commit fails.
        let failed = store.write_blocking(|tx| -> Result<(), StoreError> {
            tx.tx.execute_batch(
                "CREATE TABLE p (id INTEGER PRIMARY KEY);
                 CREATE TABLE c (pid INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED);
                 INSERT INTO c VALUES (1);",
            )?;
            Ok(())
        });
        assert!(failed.is_err(), "{failed:?}");
        let health = store.writer_health();
        assert!(health.running && !health.last_commit_ok, "{health:?}");
        store
            .write_blocking(|tx| tx.meta_set("probe", "1"))
            .expect("a write after the failure");
        assert!(store.writer_health().last_commit_ok);
    }

    /// The connection's `synchronous` setting as a job sees it (1 NORMAL, 2 FULL).
    fn synchronous(tx: &crate::store::WriteTx<'_>) -> Result<i64, StoreError> {
        Ok(tx.tx.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
    }

    #[test]
    fn a_batch_of_detached_writes_alone_commits_relaxed_and_the_next_write_is_durable_again() {
        let (_dir, store) = open();
        let (seen_tx, seen) = std::sync::mpsc::channel();
        store
            .write_detached(synchronous, move |r: Result<i64, StoreError>| {
                let _ = seen_tx.send(r.expect("the detached write commits"));
            })
            .expect("submitted");
        let detached = seen
            .recv_timeout(Duration::from_secs(10))
            .expect("the detached write is done");
        assert_eq!(detached, 1, "a batch of detached writes alone is NORMAL");
        let durable = store.write_blocking(synchronous).expect("commits");
        assert_eq!(durable, 2, "an ordinary write is FULL again");
    }

    #[test]
    fn a_stopped_writer_shows_in_the_health() {
        let (_dir, store) = open();
        let result = store.write_blocking(|_| -> Result<(), StoreError> {
            panic!("a job panics (this panic is expected by the test)")
        });
        assert!(result.is_err());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while store.writer_health().running {
            assert!(std::time::Instant::now() < deadline, "still running");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(matches!(
            store.write_blocking(|tx| tx.meta_set("probe", "1")),
            Err(StoreError::Writer(_))
        ));
    }
}
