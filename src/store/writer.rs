//! The single writer: group commit.
//!
//! One thread owns the write connection. It takes every job that is waiting (up to a
//! batch limit), runs each inside its own savepoint of one transaction, commits once, and
//! only then answers the jobs. Concurrent requests thus share one fsync instead of paying
//! one each, and no job is answered before its changes (and their journal records) are
//! durable. A job that fails rolls back alone; a commit that fails (disk full, read-only)
//! fails the whole batch and leaves nothing of it behind.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{StoreError, WriteTx};

/// At most this many jobs share one commit: bounds the latency a large batch adds.
const MAX_BATCH: usize = 512;

type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
type Job = Box<dyn FnOnce(&WriteTx<'_>) -> (bool, Finish) + Send>;

pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("scim-bridge-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer { jobs: tx })
    }

    fn job<T, E>(
        f: impl FnOnce(&WriteTx<'_>) -> Result<T, E> + Send + 'static,
        reply: impl FnOnce(Result<T, E>) + Send + 'static,
    ) -> Job
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        Box::new(move |wtx: &WriteTx<'_>| {
            let result = f(wtx);
            let ok = result.is_ok();
            let finish: Finish = Box::new(move |commit_error: Option<&StoreError>| {
                let outcome = match (commit_error, result) {
                    (Some(e), Ok(_)) => Err(E::from(e.duplicate())),
                    (_, result) => result,
                };
                reply(outcome);
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
        if self.jobs.send(job).is_err() {
            return Err(StoreError::Writer("the writer thread has stopped".into()).into());
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Writer("the writer dropped a job".into()).into()))
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
        if self.jobs.send(job).is_err() {
            return Err(StoreError::Writer("the writer thread has stopped".into()).into());
        }
        rx.recv()
            .unwrap_or_else(|_| Err(StoreError::Writer("the writer dropped a job".into()).into()))
    }
}

fn run(mut conn: Connection, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch);
    }
}

fn run_batch(conn: &mut Connection, batch: Vec<Job>) {
    let size = batch.len();
    let mut finishes: Vec<Finish> = Vec::with_capacity(size);
    let started = std::time::Instant::now();
    let outcome = (|| -> Result<(), StoreError> {
        let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for job in batch {
            // On failure the jobs not yet run are dropped unanswered: their callers see
            // `StoreError::Writer`, a 503, like the jobs answered with the batch's error.
            let sp = tx.savepoint()?;
            let (ok, finish) = job(&WriteTx { tx: &sp });
            finishes.push(finish);
            if ok {
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
    match &outcome {
        Ok(()) => tracing::debug!(
            jobs = size,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "group commit"
        ),
        Err(e) => {
            tracing::error!(jobs = size, error = %e, "group commit failed; the batch was rolled back")
        }
    }
    let error = outcome.err();
    for finish in finishes {
        finish(error.as_ref());
    }
}
