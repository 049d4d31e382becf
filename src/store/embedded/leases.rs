//! Leases: which relay worker currently delivers which key.
//!
//! They live in memory. redb locks the file, so exactly one process owns the
//! queue, and a lease only has to keep the relay's own workers apart. After a
//! restart every lease is gone, which is exactly what a crash should do to
//! them (the work is redone; Discord edits are idempotent by design).
//!
//! A claim holds the lease map while it reads, so two claims cannot hand out
//! the same key; the writer drops a lease only after the commit that
//! completed (or dead-lettered) its key.
use super::errors::Ctx;
use super::queue::read_key_events;
use super::tables::{EVENTS, HEADS, KEY_SEQS};
use crate::store::{Claim, Result};
use crate::sync::lock;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug)]
pub(super) struct Lease {
    owner: String,
    expires_ms: u64,
}

/// Key → its current lease.
pub(super) type Leases = HashMap<String, Lease>;

/// Drop `owner`'s lease on `key` (someone else's lease is left alone).
pub(super) fn drop_lease(leases: &Mutex<Leases>, key: &str, owner: &str) {
    let mut map = lock(leases);
    if map.get(key).is_some_and(|l| l.owner == owner) {
        map.remove(key);
    }
}

/// Lease up to `max_keys` unleased keys with pending events, oldest
/// first-pending-event first (see [`Store::claim`](crate::store::Store::claim)).
pub(super) fn claim(
    db: &Database,
    leases: &Mutex<Leases>,
    owner: &str,
    lease_ms: u64,
    max_keys: usize,
    now_ms: u64,
) -> Result<Vec<Claim>> {
    if max_keys == 0 {
        return Ok(Vec::new());
    }
    // Hold the lease map while reading, so two claims cannot hand out the same
    // key, and so a completion (commit, then lease drop) is either fully
    // visible to this snapshot or its key is still leased.
    let mut map = lock(leases);
    map.retain(|_, l| l.expires_ms > now_ms);
    let txn = db.begin_read().ctx("begin read")?;
    let heads = txn.open_table(HEADS).ctx("open heads")?;
    let key_seqs = txn.open_table(KEY_SEQS).ctx("open key_seqs")?;
    let events = txn.open_table(EVENTS).ctx("open events")?;
    let mut claims = Vec::new();
    for item in heads.iter().ctx("scan heads")? {
        if claims.len() >= max_keys {
            break;
        }
        let (_, key) = item.ctx("scan heads")?;
        let key = key.value();
        if map.contains_key(key) {
            continue;
        }
        let evs = read_key_events(&key_seqs, &events, key)?;
        if !evs.is_empty() {
            claims.push(Claim { key: key.to_owned(), events: evs });
        }
    }
    let expires_ms = now_ms.saturating_add(lease_ms);
    for c in &claims {
        map.insert(c.key.clone(), Lease { owner: owner.to_owned(), expires_ms });
    }
    Ok(claims)
}
