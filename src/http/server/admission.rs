//! Who gets a connection slot.
//!
//! Today one rule: at most `max_connections` connections are served at a
//! time. Beyond that a connection gets a short 503 and is closed, and at most
//! [`MAX_REJECTING`] are being turned away at once; past that they are
//! dropped without an answer, so that a flood cannot buy itself unbounded
//! 503 writers. Per-peer limits belong here too.
use super::linger::linger_close;
use super::write_all;
use crate::http::response;
use crate::http::{Response, ServerLimits};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections being turned away with a 503 at the same time; beyond this
/// they are dropped without an answer.
const MAX_REJECTING: usize = 64;

/// The decision for one new connection. The permits free their slot when
/// dropped, so they go with the connection's task.
pub(super) enum Admission {
    /// Serve it.
    Serve(OwnedSemaphorePermit),
    /// Answer 503 and close ([`reject_overloaded`]).
    Reject(OwnedSemaphorePermit),
    /// Close it without a word.
    Drop,
}

/// The connection slots of one listener.
pub(super) struct Gate {
    slots: Arc<Semaphore>,
    rejecting: Arc<Semaphore>,
}

impl Gate {
    pub(super) fn new(limits: &ServerLimits) -> Self {
        Gate {
            slots: Arc::new(Semaphore::new(
                limits.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            rejecting: Arc::new(Semaphore::new(MAX_REJECTING)),
        }
    }

    /// Decides what happens to a connection that was just accepted.
    pub(super) fn admit(&self) -> Admission {
        if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
            return Admission::Serve(slot);
        }
        match Arc::clone(&self.rejecting).try_acquire_owned() {
            Ok(permit) => Admission::Reject(permit),
            Err(_) => Admission::Drop,
        }
    }
}

/// The short answer for a connection over `max_connections`.
pub(super) async fn reject_overloaded<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    write_timeout: Duration,
) {
    let resp = Response::error(503, "too many connections");
    let bytes = response::encode(&resp, false, false, SystemTime::now());
    if write_all(&mut stream, &bytes, write_timeout).await.is_ok() {
        linger_close(&mut stream).await;
    }
}
