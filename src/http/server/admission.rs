//! Who gets a connection slot, and who gives theirs up.
//!
//! A flood of slow connections must not lock Drone out, and Drone sends each
//! webhook once. So a full table does not refuse the newcomer; it evicts
//! someone who has proved nothing yet:
//!
//! * At most `max_connections` connections are open at a time (256).
//! * A connection becomes *trusted* once a request head on it passed the
//!   handler's head check (a valid webhook signature, see
//!   [`HeadCheck::Trusted`](crate::http::HeadCheck)). A trusted connection is
//!   never evicted and does not count against its peer's limit; Drone's
//!   connections are trusted after their first header block.
//! * Every other connection (still sending its headers, reading an unsigned
//!   request, lingering after an error, idle after an unsigned request) is
//!   evictable, except while its handler runs.
//! * One peer IP holds at most `max_untrusted_per_peer` untrusted connections
//!   (64); its next one evicts that peer's oldest evictable connection.
//! * When the table is full, a new connection evicts the oldest evictable
//!   connection of anyone. Only when nothing is evictable does it get a short
//!   503 and a close; at most [`MAX_REJECTING`] are being turned away at
//!   once, beyond that they are dropped without an answer, so that a flood
//!   cannot buy itself unbounded 503 writers.
//!
//! A slowloris swarm therefore churns among its own connections: a new
//! connection is the last to be evicted, and Drone's finishes its headers
//! within milliseconds, after which it is trusted. Memory stays bounded by
//! the table: an evicted connection is dropped at once.
use super::linger::{linger_close, LINGER_BYTES};
use super::write_all;
use crate::http::response;
use crate::http::{Response, ServerLimits};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Connections being turned away with a 503 at the same time; beyond this
/// they are dropped without an answer.
const MAX_REJECTING: usize = 64;
/// At most one warning about evictions per this long (each is logged at debug).
const EVICTION_WARN_EVERY: Duration = Duration::from_secs(60);

/// The decision for one new connection. The slot and the permit free their
/// place when dropped, so they go with the connection's task.
pub(super) enum Admission {
    /// Serve it.
    Serve(Slot),
    /// Answer 503 and close ([`reject_overloaded`]).
    Reject(OwnedSemaphorePermit),
    /// Close it without a word.
    Drop,
}

/// The connection table of one listener.
pub(super) struct Gate {
    table: Arc<Table>,
    rejecting: Arc<Semaphore>,
}

struct Table {
    max: usize,
    per_peer: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Keyed by admission order: the first entry is the oldest.
    entries: BTreeMap<u64, Entry>,
    next_id: u64,
    evicted_since_warning: u64,
    last_warning: Option<Instant>,
}

struct Entry {
    ip: IpAddr,
    trusted: bool,
    /// Its handler is running: never cut a request off halfway.
    busy: bool,
    evict: Arc<Notify>,
}

impl Entry {
    fn evictable(&self) -> bool {
        !self.trusted && !self.busy
    }
}

impl Table {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave the map inconsistent; keep serving.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Evicts the oldest evictable entry that `which` selects; false if none.
    fn evict_oldest(&mut self, which: impl Fn(&Entry) -> bool) -> bool {
        let Some(id) = self
            .entries
            .iter()
            .find(|(_, e)| e.evictable() && which(e))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(entry) = self.entries.remove(&id) {
            entry.evict.notify_one();
            tracing::debug!(ip = %entry.ip, "evicted an untrusted connection to make room");
        }
        self.evicted_since_warning += 1;
        let now = Instant::now();
        if self
            .last_warning
            .map_or(true, |at| now.duration_since(at) >= EVICTION_WARN_EVERY)
        {
            tracing::warn!(
                evicted = self.evicted_since_warning,
                "connection table under pressure; evicting untrusted connections"
            );
            self.evicted_since_warning = 0;
            self.last_warning = Some(now);
        }
        true
    }
}

impl Gate {
    pub(super) fn new(limits: &ServerLimits) -> Self {
        Gate {
            table: Arc::new(Table {
                max: limits.max_connections.max(1),
                per_peer: limits.max_untrusted_per_peer.max(1),
                inner: Mutex::new(Inner::default()),
            }),
            rejecting: Arc::new(Semaphore::new(MAX_REJECTING)),
        }
    }

    /// Decides what happens to a connection from `ip` that was just accepted.
    pub(super) fn admit(&self, ip: IpAddr) -> Admission {
        let admitted = {
            let mut inner = self.table.lock();
            let untrusted_here = inner
                .entries
                .values()
                .filter(|e| e.ip == ip && !e.trusted)
                .count();
            let peer_ok =
                untrusted_here < self.table.per_peer || inner.evict_oldest(|e| e.ip == ip);
            let room =
                peer_ok && (inner.entries.len() < self.table.max || inner.evict_oldest(|_| true));
            if room {
                let id = inner.next_id;
                inner.next_id += 1;
                let evict = Arc::new(Notify::new());
                inner.entries.insert(
                    id,
                    Entry {
                        ip,
                        trusted: false,
                        busy: false,
                        evict: Arc::clone(&evict),
                    },
                );
                Some(Slot {
                    table: Some(Arc::clone(&self.table)),
                    id,
                    evict,
                })
            } else {
                None
            }
        };
        if let Some(slot) = admitted {
            return Admission::Serve(slot);
        }
        match Arc::clone(&self.rejecting).try_acquire_owned() {
            Ok(permit) => Admission::Reject(permit),
            Err(_) => Admission::Drop,
        }
    }

    /// Connections in the table (for the tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.lock().entries.len()
    }
}

/// One connection's place in the table; frees it when dropped.
pub struct Slot {
    /// `None` for a connection served outside any table (tests, one-offs).
    table: Option<Arc<Table>>,
    id: u64,
    evict: Arc<Notify>,
}

impl Slot {
    /// A slot in no table: never evicted.
    pub(super) fn detached() -> Self {
        Slot {
            table: None,
            id: 0,
            evict: Arc::new(Notify::new()),
        }
    }

    /// Resolves when the table evicts this connection.
    pub(super) async fn evicted(&self) {
        self.evict.notified().await
    }

    /// Runs `change` on this entry; false if it was evicted already.
    fn update(&self, change: impl FnOnce(&mut Entry)) -> bool {
        let Some(table) = &self.table else {
            return true;
        };
        match table.lock().entries.get_mut(&self.id) {
            Some(entry) => {
                change(entry);
                true
            }
            None => false,
        }
    }

    /// The connection proved who is on the other end: never evict it.
    pub(super) fn trust(&self) {
        self.update(|e| e.trusted = true);
    }

    /// Its handler is about to run; false if the connection was evicted
    /// already (then it must close instead).
    pub(super) fn begin_handling(&self) -> bool {
        self.update(|e| e.busy = true)
    }

    pub(super) fn end_handling(&self) {
        self.update(|e| e.busy = false);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(table) = &self.table {
            table.lock().entries.remove(&self.id);
        }
    }
}

/// The short answer for a connection when nothing can be evicted.
pub(super) async fn reject_overloaded<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    write_timeout: Duration,
) {
    let resp = Response::error(503, "too many connections");
    let bytes = response::encode(&resp, false, false, SystemTime::now());
    if write_all(&mut stream, &bytes, write_timeout).await.is_ok() {
        linger_close(&mut stream, LINGER_BYTES).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(max: usize, per_peer: usize) -> Gate {
        Gate::new(&ServerLimits {
            max_connections: max,
            max_untrusted_per_peer: per_peer,
            ..ServerLimits::default()
        })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn serve(gate: &Gate, from: IpAddr) -> Slot {
        match gate.admit(from) {
            Admission::Serve(slot) => slot,
            _ => panic!("not served"),
        }
    }

    /// True when the slot's eviction has been signalled.
    async fn was_evicted(slot: &Slot) -> bool {
        tokio::time::timeout(Duration::from_millis(1), slot.evicted())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_full_table_evicts_the_oldest_untrusted_connection() {
        let gate = gate(3, 10);
        let oldest = serve(&gate, ip(2));
        let trusted = serve(&gate, ip(3));
        trusted.trust();
        let busy = serve(&gate, ip(4));
        assert!(busy.begin_handling());
        // Full: the oldest evictable one goes; the trusted and the busy stay.
        let newcomer = serve(&gate, ip(5));
        assert!(was_evicted(&oldest).await);
        assert!(
            !oldest.begin_handling(),
            "an evicted slot must not start a handler"
        );
        assert!(!was_evicted(&trusted).await && !was_evicted(&busy).await);
        assert_eq!(gate.len(), 3);
        // Now only the newcomer is evictable; then nobody is.
        let next = serve(&gate, ip(6));
        assert!(was_evicted(&newcomer).await);
        assert!(next.begin_handling());
        assert!(matches!(gate.admit(ip(7)), Admission::Reject(_)));
        // A finished handler makes its connection evictable again.
        next.end_handling();
        let _last = serve(&gate, ip(7));
        assert!(was_evicted(&next).await);
        drop(oldest);
        assert_eq!(gate.len(), 3);
    }

    #[tokio::test]
    async fn one_peer_evicts_its_own_untrusted_connections_first() {
        let gate = gate(100, 2);
        let other = serve(&gate, ip(9));
        let first = serve(&gate, ip(2));
        let trusted = serve(&gate, ip(2));
        trusted.trust();
        let second = serve(&gate, ip(2));
        // The third untrusted one from 127.0.0.2 evicts that peer's oldest only.
        let _third = serve(&gate, ip(2));
        assert!(was_evicted(&first).await);
        assert!(!was_evicted(&second).await);
        assert!(!was_evicted(&other).await && !was_evicted(&trusted).await);
        assert_eq!(gate.len(), 4);
    }
}
