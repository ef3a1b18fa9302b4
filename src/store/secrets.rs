//! Sealed passwords waiting for delivery: the one thing the provider sends that the
//! journal must never hold (docs/passwords.md).
//!
//! A row is the password a journal record carried, sealed (AES-256-GCM, see
//! [`crate::passwords`]) and keyed by that record's sequence number. It is written in the
//! write transaction that journals the record, so a record and its password become durable
//! together, and deleted in the transaction that writes the record's delivery verdict, so
//! a password lives on disk only until the directory has it (or refused it). The table is
//! not part of the journal: `journal export`, `verify`, replay and archives never see it.

use rusqlite::params;

use super::{Reader, StoreError, WriteTx};

/// Migration 5: the table of sealed passwords.
pub(super) const MIGRATION_5: &str = "
CREATE TABLE secrets (
    seq    INTEGER PRIMARY KEY,  -- the journal record the password came with
    sealed BLOB NOT NULL         -- nonce || AES-256-GCM ciphertext and tag
);
";

impl WriteTx<'_> {
    /// Keeps the sealed password of journal record `seq` until it is delivered.
    pub fn secret_put(&self, seq: u64, sealed: &[u8]) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("INSERT OR REPLACE INTO secrets (seq, sealed) VALUES (?1, ?2)")?
            .execute(params![seq as i64, sealed])?;
        Ok(())
    }

    /// Forgets the passwords of the records `first..=last` (each has its verdict: the
    /// directory has the password, or refused it).
    pub fn secrets_forget_between(&self, first: u64, last: u64) -> Result<(), StoreError> {
        self.tx
            .prepare_cached("DELETE FROM secrets WHERE seq BETWEEN ?1 AND ?2")?
            .execute(params![first as i64, last as i64])?;
        Ok(())
    }
}

impl Reader<'_> {
    /// The sealed passwords of the records `first..=last`, in record order.
    pub fn secrets_between(
        &self,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, sealed FROM secrets WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map(params![first as i64, last as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// How many passwords wait for delivery.
    pub fn secrets_waiting(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM secrets", [], |r| r.get(0))?;
        Ok(n as u64)
    }
}
