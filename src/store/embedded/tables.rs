//! The redb tables of the embedded store: their names, key and value types,
//! and the write-side handle that opens all of them in one transaction.
//!
//! Kept apart so the file layout is readable in one place. The layout is
//! versioned (`schema_version` in `meta`, see [`crate::store::schema`]); each
//! migration step is in [`super::migrations`].
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `events` | seq | encoded event (key, event, action, received_ms, body) |
//! | `key_seqs` | (key, seq) | () — per-key order |
//! | `heads` | oldest pending seq of a key | key — claim order |
//! | `replay` | replay key | (seq, received_ms) |
//! | `replay_by_time` | (received_ms, replay key) | () — pruning order |
//! | `dest_messages` | (key, destination) | JSON [`MessageRef`](crate::store::MessageRef) |
//! | `outcomes` | change key | (passing, number, created, at_ms): an [`OutcomeRecord`](crate::store::OutcomeRecord) |
//! | `dead_letters` | seq | encoded reason, failed_ms and event |
//! | `meta` | name | u64 (`schema_version`, `lease_epoch`, `next_seq`, `probe`) |
//!
//! Schema 2 and older kept one message per key in `messages` (key → JSON);
//! the 2 → 3 step moves it into `dest_messages` and deletes it
//! ([`super::migrations`]). The encodings are in [`super::codec`].
use super::errors::Ctx;
use crate::store::Result;
use redb::{TableDefinition, WriteTransaction};

pub(super) const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
pub(super) const KEY_SEQS: TableDefinition<(&str, u64), ()> = TableDefinition::new("key_seqs");
pub(super) const HEADS: TableDefinition<u64, &str> = TableDefinition::new("heads");
pub(super) const REPLAY: TableDefinition<&str, (u64, u64)> = TableDefinition::new("replay");
pub(super) const REPLAY_BY_TIME: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("replay_by_time");
/// Schema ≤ 2's key → message table, read only by the migrations.
pub(super) const LEGACY_MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
pub(super) const MESSAGES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("dest_messages");
/// An outcome record: (passing, number, created, at_ms).
pub(super) type OutcomeRow = (bool, i64, i64, u64);
pub(super) const OUTCOMES: TableDefinition<&str, OutcomeRow> = TableDefinition::new("outcomes");
pub(super) const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// `meta` entry: the schema version the file was migrated to.
pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
/// `meta` entry: how often the file was opened; the high bits of every
/// fencing token (see `leases`).
pub(super) const META_LEASE_EPOCH: &str = "lease_epoch";
/// `meta` entry: the next seq to hand out (never reused, even after a drain).
pub(super) const META_NEXT_SEQ: &str = "next_seq";
/// `meta` entry: a counter the probe commit bumps.
pub(super) const META_PROBE: &str = "probe";

/// Every table, opened for writing in one transaction.
pub(super) struct Tables<'t> {
    pub(super) events: redb::Table<'t, u64, &'static [u8]>,
    pub(super) key_seqs: redb::Table<'t, (&'static str, u64), ()>,
    pub(super) heads: redb::Table<'t, u64, &'static str>,
    pub(super) replay: redb::Table<'t, &'static str, (u64, u64)>,
    pub(super) replay_by_time: redb::Table<'t, (u64, &'static str), ()>,
    pub(super) messages: redb::Table<'t, (&'static str, &'static str), &'static [u8]>,
    pub(super) outcomes: redb::Table<'t, &'static str, OutcomeRow>,
    pub(super) dead: redb::Table<'t, u64, &'static [u8]>,
    pub(super) meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    /// Open (creating when missing) every table in `txn`.
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(Tables {
            events: txn.open_table(EVENTS).ctx("open events")?,
            key_seqs: txn.open_table(KEY_SEQS).ctx("open key_seqs")?,
            heads: txn.open_table(HEADS).ctx("open heads")?,
            replay: txn.open_table(REPLAY).ctx("open replay")?,
            replay_by_time: txn.open_table(REPLAY_BY_TIME).ctx("open replay_by_time")?,
            messages: txn.open_table(MESSAGES).ctx("open dest_messages")?,
            outcomes: txn.open_table(OUTCOMES).ctx("open outcomes")?,
            dead: txn.open_table(DEAD).ctx("open dead_letters")?,
            meta: txn.open_table(META).ctx("open meta")?,
        })
    }
}
