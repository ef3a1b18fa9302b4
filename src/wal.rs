//! Checkpoints for the SQLite databases the daemon writes continuously (the state store
//! and the SQLite target).
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, so
//! that commit waits for it: copying a thousand pages into the database and syncing it
//! took 5 ms, the p99 of a steady write. A PASSIVE checkpoint on a connection of its own
//! never blocks a writer, but under continuous writes it never finishes either: frames
//! appended while it copies are left for the next pass, the log is never restarted, and
//! the `-wal` file grows without bound (160 MB after 6,000 creates).
//!
//! So both run. A background thread checkpoints PASSIVE every quarter of a second and
//! copies the bulk; the writing connection keeps SQLite's automatic checkpoint at
//! [`AUTOCHECKPOINT_FRAMES`], which then finds most frames copied already and only
//! finishes the rest — with no writer appending meanwhile, so it completes and the next
//! write starts the log from its beginning. The log stays within a few megabytes, and
//! `journal_size_limit` ([`JOURNAL_SIZE_LIMIT`]) truncates a file that grew beyond that
//! (while a reading application held an old snapshot, say).

use std::sync::Weak;
use std::time::Duration;

use rusqlite::Connection;

/// The writing connection's automatic checkpoint threshold, in frames (SQLite's default).
pub const AUTOCHECKPOINT_FRAMES: i64 = 1000;
/// The size a checkpoint that restarts the log truncates the `-wal` file back to.
pub const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Prepared statements each connection keeps (rusqlite's default is 16: the writer, the
/// SQLite target and the links file use more per write, and an evicted statement is
/// parsed and planned again, 20–50 µs each).
pub const STATEMENT_CACHE: usize = 128;

/// Sets up the connection that writes `conn`'s database for [`spawn_checkpoints`]: the
/// automatic checkpoint at [`AUTOCHECKPOINT_FRAMES`], the log truncated to
/// [`JOURNAL_SIZE_LIMIT`].
pub fn writer_settings(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_FRAMES)?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
}

/// The step of [`wait_finely`]'s busy handlers.
const BUSY_STEP: Duration = Duration::from_micros(100);

/// How long [`wait_finely`]`(…, true)` waits.
pub const BRIEF_WAIT: Duration = Duration::from_millis(100);

/// Sets `conn`'s busy handler to retry a locked database every 100 µs for at least 5 s
/// (or, with `briefly`, 100 ms: [`BRIEF_WAIT`]). SQLite's own busy timeout sleeps 1, 2,
/// 5, 10 … 100 ms between tries, so a writer held back for a millisecond slept for 20.
pub fn wait_finely(conn: &mut Connection, briefly: bool) -> rusqlite::Result<()> {
    fn patient(attempt: i32) -> bool {
        retry(attempt, Duration::from_secs(5))
    }
    fn brief(attempt: i32) -> bool {
        retry(attempt, BRIEF_WAIT)
    }
    // Time, not a count of tries: each sleep lasts longer than its 100 µs (timer slack,
    // scheduling), so 50,000 tries waited 8 s and more instead of 5.
    fn retry(attempt: i32, patience: Duration) -> bool {
        thread_local! {
            static SINCE: std::cell::Cell<Option<std::time::Instant>> =
                const { std::cell::Cell::new(None) };
        }
        let now = std::time::Instant::now();
        let since = SINCE.with(|since| {
            if attempt == 0 || since.get().is_none() {
                since.set(Some(now));
            }
            since.get().unwrap_or(now)
        });
        if now.duration_since(since) >= patience {
            return false;
        }
        std::thread::sleep(BUSY_STEP);
        true
    }
    conn.busy_handler(Some(if briefly { brief } else { patient }))
}

/// One background pass: a PASSIVE checkpoint. Returns the frames in the log.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
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
    let mut conn = conn;
    wait_finely(&mut conn, true).map_err(std::io::Error::other)?;
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
        assert!(started.elapsed() >= BRIEF_WAIT, "gave up too early");
        assert!(
            started.elapsed() < BRIEF_WAIT * 5,
            "waited {:?}: the patience is a time, not a count of 100 µs sleeps",
            started.elapsed()
        );
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
