//! Background checkpoints for the SQLite databases the daemon writes continuously (the
//! state store and the SQLite target).
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so
//! that commit waits for it (5 ms, the p99 of a steady write). Run on a connection of its
//! own instead, a PASSIVE checkpoint never blocks a writer, but under continuous writes
//! it never catches up either: frames appended while it copies are left for the next
//! one, the log is never restarted, and the `-wal` file grows without bound (160 MB after
//! 6,000 creates). So each pass is a PASSIVE checkpoint, which copies the bulk without
//! blocking anybody, followed, once the log has grown past [`RESTART_FRAMES`], by a
//! RESTART checkpoint: it holds writers back only while it copies the few frames
//! appended meanwhile, and makes the next writer start the log from its beginning. The
//! log thus stays within about one interval of writes, and `journal_size_limit`
//! ([`JOURNAL_SIZE_LIMIT`], set by the writing connection) truncates a file that grew
//! beyond that.

use std::sync::Weak;
use std::time::Duration;

use rusqlite::Connection;

/// Frames (pages) in the log after the passive pass beyond which the pass restarts it.
pub const RESTART_FRAMES: i64 = 256;
/// The size the writing connection truncates the `-wal` file back to after a restart.
pub const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// How long a RESTART pass waits for the writer and the readers (it holds writers back
/// meanwhile); on time-out it gives up until the next pass.
pub const RESTART_WAIT: Duration = Duration::from_millis(100);

/// The step of [`wait_finely`]'s busy handlers.
const BUSY_STEP: Duration = Duration::from_micros(100);

/// Sets `conn`'s busy handler to retry a locked database every 100 µs for at least 5 s
/// (or, with `briefly`, 100 ms: [`RESTART_WAIT`]). SQLite's own busy timeout sleeps 1,
/// 2, 5, 10 … 100 ms between tries, so a writer held back for a millisecond by a
/// checkpoint's RESTART slept for 20.
pub fn wait_finely(conn: &mut Connection, briefly: bool) -> rusqlite::Result<()> {
    fn patient(attempt: i32) -> bool {
        retry(attempt, Duration::from_secs(5))
    }
    fn brief(attempt: i32) -> bool {
        retry(attempt, RESTART_WAIT)
    }
    fn retry(attempt: i32, patience: Duration) -> bool {
        let tries = (patience.as_micros() / BUSY_STEP.as_micros()) as i32;
        if attempt >= tries {
            return false;
        }
        std::thread::sleep(BUSY_STEP);
        true
    }
    conn.busy_handler(Some(if briefly { brief } else { patient }))
}

/// One pass: PASSIVE, then RESTART when the log holds more than [`RESTART_FRAMES`] and
/// the passive pass copied all of it (when a reader's snapshot still needs old frames,
/// restarting would only wait for it). Returns the frames the log held after the
/// passive pass.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    let (log, copied): (i64, i64) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })?;
    if log > RESTART_FRAMES && copied == log {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(log)
}

/// Runs [`checkpoint`] on `conn` every `every` on a thread named `name`, until `alive`
/// can no longer be upgraded (its owner is gone). `what` names the database in warnings.
pub fn spawn_checkpoints(
    conn: Connection,
    every: Duration,
    alive: Weak<()>,
    name: &str,
    what: &'static str,
) -> std::io::Result<()> {
    conn.busy_timeout(RESTART_WAIT)
        .map_err(std::io::Error::other)?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            loop {
                std::thread::sleep(every);
                if alive.upgrade().is_none() {
                    return;
                }
                if let Err(e) = checkpoint(&conn) {
                    tracing::warn!(error = %e, database = what, "a background checkpoint failed; retrying");
                }
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("db")).expect("opens");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("WAL");
        conn
    }

    #[test]
    fn a_patient_connection_waits_for_a_lock_released_later_and_a_brief_one_gives_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let holder = open(&dir);
        holder
            .execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .expect("holds the write lock");
        let mut brief = open(&dir);
        wait_finely(&mut brief, true).expect("sets the handler");
        let started = std::time::Instant::now();
        let refused = brief.execute_batch("BEGIN IMMEDIATE");
        assert!(refused.is_err(), "the lock is still held");
        assert!(started.elapsed() >= RESTART_WAIT, "gave up too early");
        let mut patient = open(&dir);
        wait_finely(&mut patient, false).expect("sets the handler");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            holder.execute_batch("COMMIT").expect("releases");
        });
        patient
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT")
            .expect("waits for the lock, then writes");
        release.join().expect("the holder thread ends");
        let n: i64 = patient
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("counts");
        assert_eq!(n, 2);
    }
}
