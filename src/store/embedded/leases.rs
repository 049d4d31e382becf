//! Leases: which relay worker currently delivers which key, and the fencing
//! token that proves it.
//!
//! They live in memory. redb locks the file, so exactly one process owns the
//! queue, and a lease only has to keep the relay's own workers apart. After a
//! restart every lease is gone, which is exactly what a crash should do to
//! them (the work is redone; Discord edits are idempotent by design).
//!
//! **Time.** A lease is measured on the monotonic clock ([`Instant`]), never
//! on the wall clock: an NTP step of the Pi's clock at boot (or a ±1 h jump)
//! neither frees a lease early nor keeps it forever.
//!
//! **Fencing.** Every claim gets a token, strictly increasing across all
//! keys and across restarts (`lease_epoch` in `meta` is bumped on every open
//! and forms the token's high 32 bits). Complete, dead-letter, release and
//! renew name the token; the writer checks it under the lease map's lock in
//! the same step as the commit, so a holder whose lease expired and was
//! claimed again is refused ([`StoreError::Fenced`]) and changes nothing,
//! whatever it was about to store. An expired lease nobody claimed again is
//! still its holder's: no other delivery overlapped it.
//!
//! A claim holds the lease map while it reads, so two claims cannot hand out
//! the same key; the writer drops a lease only after the commit that
//! completed (or dead-lettered) its key.
use super::codec::decode_event;
use super::errors::Ctx;
use super::tables::{EVENTS, HEADS, KEY_SEQS};
use crate::store::{claim_has_room, Claim, Event, Result, Seq, StoreError};
use crate::sync::lock;
use redb::{Database, ReadableDatabase, ReadableTable};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Lease {
    owner: String,
    token: u64,
    expires: Instant,
}

/// Key → its current lease, and the next token to hand out.
#[derive(Debug)]
pub(super) struct Leases {
    map: HashMap<String, Lease>,
    next_token: u64,
}

impl Leases {
    /// Leases for a process that opened the file for the `epoch`-th time.
    pub(super) fn new(epoch: u64) -> Self {
        Leases {
            map: HashMap::new(),
            next_token: (epoch << 32) | 1,
        }
    }

    /// Whether `owner` with `token` holds `key` (expired but not claimed
    /// again counts); else the refusal to return.
    pub(super) fn check(&self, key: &str, owner: &str, token: u64) -> Result<()> {
        match self.map.get(key) {
            Some(l) if l.owner == owner && l.token == token => Ok(()),
            Some(l) => Err(StoreError::Fenced(format!(
                "{key}: lease {token} of {owner} was superseded by lease {} of {}",
                l.token, l.owner
            ))),
            None => Err(StoreError::Fenced(format!(
                "{key}: lease {token} of {owner} is not held"
            ))),
        }
    }

    /// Whether anyone holds a lease on `key` that has not expired.
    pub(super) fn is_leased(&self, key: &str) -> bool {
        self.map
            .get(key)
            .is_some_and(|l| l.expires > Instant::now())
    }

    /// Drop `owner`'s lease `token` on `key` (someone else's is left alone).
    pub(super) fn drop_lease(&mut self, key: &str, owner: &str, token: u64) {
        if self.check(key, owner, token).is_ok() {
            self.map.remove(key);
        }
    }

    /// Extend a held lease to `lease` from now.
    pub(super) fn renew(
        &mut self,
        key: &str,
        owner: &str,
        token: u64,
        lease: Duration,
    ) -> Result<()> {
        self.check(key, owner, token)?;
        if let Some(l) = self.map.get_mut(key) {
            l.expires = Instant::now() + lease;
        }
        Ok(())
    }
}

/// Drop `owner`'s lease `token` on `key` (someone else's lease is left alone).
pub(super) fn drop_lease(leases: &Mutex<Leases>, key: &str, owner: &str, token: u64) {
    lock(leases).drop_lease(key, owner, token);
}

/// A stored event that cannot be decoded: its key, seq and why.
#[derive(Debug)]
pub(super) struct CorruptEvent {
    pub(super) key: String,
    pub(super) seq: Seq,
    pub(super) reason: String,
}

/// What a claim found: the leased keys, and the keys skipped (not leased)
/// because one of their events cannot be decoded, for the store to move
/// aside so that they never block a claim again.
#[derive(Debug, Default)]
pub(super) struct Claimed {
    pub(super) claims: Vec<Claim>,
    pub(super) corrupt: Vec<CorruptEvent>,
}

/// The oldest pending events of `key`, in seq order, as many as one claim
/// may carry ([`claim_has_room`]), or the first one that cannot be decoded.
fn key_events(
    key_seqs: &impl ReadableTable<(&'static str, u64), ()>,
    events: &impl ReadableTable<u64, &'static [u8]>,
    key: &str,
) -> Result<std::result::Result<Vec<Event>, CorruptEvent>> {
    let mut out: Vec<Event> = Vec::new();
    let mut bytes = 0usize;
    for item in key_seqs
        .range((key, 0u64)..=(key, u64::MAX))
        .ctx("scan key index")?
    {
        let (k, _) = item.ctx("scan key index")?;
        let seq = k.value().1;
        if let Some(blob) = events.get(seq).ctx("read event")? {
            if !claim_has_room(out.len(), bytes, blob.value().len()) {
                break;
            }
            match decode_event(seq, blob.value()) {
                Ok(ev) => {
                    bytes += ev.body.len();
                    out.push(ev)
                }
                Err(StoreError::Corrupt(reason)) => {
                    return Ok(Err(CorruptEvent {
                        key: key.to_owned(),
                        seq,
                        reason,
                    }))
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Ok(out))
}

/// Lease up to `max_keys` unleased keys with pending events, oldest
/// first-pending-event first (see [`Store::claim`](crate::store::Store::claim)).
/// A key with an undecodable event is skipped and reported in
/// [`Claimed::corrupt`] instead of failing the whole claim.
pub(super) fn claim(
    db: &Database,
    leases: &Mutex<Leases>,
    owner: &str,
    lease: Duration,
    max_keys: usize,
) -> Result<Claimed> {
    let mut found = Claimed::default();
    if max_keys == 0 {
        return Ok(found);
    }
    // Hold the lease map while reading, so two claims cannot hand out the same
    // key, and so a completion (commit, then lease drop) is either fully
    // visible to this snapshot or its key is still leased.
    let mut guard = lock(leases);
    let now = Instant::now();
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
        if guard.map.get(key).is_some_and(|l| l.expires > now) {
            continue;
        }
        match key_events(&key_seqs, &events, key)? {
            Ok(evs) if !evs.is_empty() => claims.push(Claim {
                key: key.to_owned(),
                events: evs,
                token: 0,
            }),
            Ok(_) => {}
            Err(bad) => found.corrupt.push(bad),
        }
    }
    let expires = now + lease;
    for c in &mut claims {
        c.token = guard.next_token;
        guard.next_token = guard.next_token.saturating_add(1);
        guard.map.insert(
            c.key.clone(),
            Lease {
                owner: owner.to_owned(),
                token: c.token,
                expires,
            },
        );
    }
    found.claims = claims;
    Ok(found)
}
