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
