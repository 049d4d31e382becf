//! The connection pool: at most one idle kept-alive connection per origin.
//!
//! One is enough here: every caller makes one request at a time per origin
//! (the relay, the presence check), so a second idle connection would only
//! sit there. A pooled connection may have been closed by the server in the
//! meantime; the client finds out on use and retries once on a fresh one.
use std::collections::HashMap;
use std::sync::Mutex;

use super::Stream;

/// Idle connections by origin (`scheme://host[:port]`).
#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<String, Stream>>,
}

impl Pool {
    /// The idle connection to `origin`, if any; it leaves the pool.
    pub(super) fn take(&self, origin: &str) -> Option<Stream> {
        self.idle.lock().ok()?.remove(origin)
    }

    /// Keeps `stream` for the next request to `origin`, replacing any other.
    pub(super) fn put(&self, origin: String, stream: Stream) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.insert(origin, stream);
        }
    }
}
