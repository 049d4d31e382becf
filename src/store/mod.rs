//! The durable queue and the (build, destination) → Discord message map.
//!
//! Ingest appends verified events and answers Drone only after
//! [`Store::append`] returned (the event is durably committed). The relay
//! claims work per *key* (one build, or one standalone event), delivers it,
//! and then completes, releases or dead-letters it. Every backend (the
//! embedded default, MongoDB behind the `mongodb` feature) implements
//! [`Store`] and must pass the same conformance suite in `conformance`
//! (test support: compiled for tests and with the `test-support` feature
//! only, never into a release build).
//!
//! Keys: [`build_key`] (`build:<drone host>:<repo id>:<build id>`) for build
//! events, so every event of one build is applied in order and coalesced;
//! `event:<seq>` (assigned by the store when [`NewEvent::key`] is `None`) for
//! user and repo events. A key has one message per destination ([`channel_dest`]:
//! `channel:<id>`, or `webhook:<name>`), and a `changed` route's last outcome
//! per change key is kept beside them ([`OutcomeRecord`]). The store's layout
//! is versioned and migrated on open (see [`schema`]).
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod embedded;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod mongo_uri;
pub mod schema;
pub mod write_proof;

/// Queue position, assigned by the store, strictly increasing.
pub type Seq = u64;

/// How long the store remembers replay keys (signatures) to refuse a replayed
/// webhook a second event. Far longer than any sensible `Date` window.
pub const REPLAY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// Most events one [`Claim`] carries. The rest of the key's events are
/// claimed next turn; coalescing still works because every Drone update
/// carries the whole build, and the stored message status keeps a final
/// status from being overwritten by a stale update across claims.
pub const MAX_CLAIM_EVENTS: usize = 64;
/// Most body bytes one [`Claim`] carries (at least one event is always
/// claimed, whatever its size), so a claim's memory is bounded.
pub const MAX_CLAIM_BYTES: usize = 1024 * 1024;

/// An event as ingest hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Ordering key; `None` → the store assigns `event:<seq>`.
    pub key: Option<String>,
    /// Drone's `event` (`build`, `repo`, `user`).
    pub event: String,
    /// Drone's `action` (`created`, `updated`, ...).
    pub action: String,
    /// Wall-clock receive time, ms since the Unix epoch.
    pub received_ms: u64,
    /// Replay key (the request's signature). A second append with the same
    /// key within [`REPLAY_RETENTION_MS`] is answered [`Appended::Duplicate`]
    /// and stores nothing.
    pub replay_key: Option<String>,
    /// The raw, verified request body.
    pub body: Vec<u8>,
}

/// A queued event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: Seq,
    pub key: String,
    pub event: String,
    pub action: String,
    pub received_ms: u64,
    pub body: Vec<u8>,
}

/// Outcome of [`Store::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// Durably queued under this sequence number.
    Queued(Seq),
    /// Same replay key seen before: nothing new stored; the first event's seq.
    Duplicate(Seq),
}

impl Appended {
    pub fn seq(self) -> Seq {
        match self {
            Appended::Queued(s) | Appended::Duplicate(s) => s,
        }
    }
}

/// The Discord message that represents a key at one destination (one build →
/// one message per destination).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub channel_id: String,
    pub message_id: String,
    /// Drone build status last shown in the message (for the rule that a
    /// final status never regresses to running/pending).
    pub status: String,
    /// A create for this key that was sent (or about to be) and whose outcome
    /// is not known yet: written before the create goes out and cleared when
    /// its message id is stored, so it survives a crash, a lost answer, a
    /// malformed 2xx or a store failure after the create. `message_id` is
    /// then the message the create replaces, or empty. The relay looks for
    /// the message in the channel before it creates again (see
    /// `relay::reconcile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<UncertainCreate>,
    /// The thread started from this message (for a forum post: the post's
    /// thread, which is the channel the message lives in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// This build already pinged someone at this destination (at most one
    /// ping per build and destination).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinged: bool,
}

/// What [`Store::complete`] stores besides removing the events: every
/// message a delivery settled (destination → message), and a `changed`
/// route's new outcome record (change key → record), written only when it is
/// newer than the stored one. `Completion::default()` stores nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    pub messages: Vec<(String, MessageRef)>,
    pub outcome: Option<(String, OutcomeRecord)>,
}

/// The last outcome of a change key (server, repository, build event, branch;
/// see `routes::ChangeKey::store_key`), for `when = "changed"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// Success (`true`) or failure/error (`false`).
    pub passing: bool,
    /// The build it came from: its number, then its creation time, order builds.
    pub number: i64,
    pub created: i64,
    /// Wall-clock ms when it was written, for retention only.
    pub at_ms: u64,
}

impl OutcomeRecord {
    /// Whether this record comes from a newer build than `stored` (by
    /// `(number, created)`); an equal or older one never replaces it.
    pub fn newer_than(&self, stored: &OutcomeRecord) -> bool {
        (self.number, self.created) > (stored.number, stored.created)
    }
}

/// Longest change key the store keeps as it is; a longer one is stored under
/// its SHA-256 (`routes::ChangeKey::store_key`), so a hostile webhook's
/// repository or branch name cannot grow the store's keys without bound.
pub const MAX_CHANGE_KEY: usize = 512;

/// A create whose outcome is not known (see [`MessageRef::uncertain`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncertainCreate {
    /// Where the create went.
    pub channel_id: String,
    /// The generation of its nonce (`relay::nonce`), so a repeat reuses it.
    pub generation: u32,
    /// Wall-clock ms when it was first sent: for people reading the store,
    /// never for timing (a clock step must not matter).
    pub since_ms: u64,
}

/// A unit of relay work: the oldest pending events of one key, in seq order,
/// at most [`MAX_CLAIM_EVENTS`] / [`MAX_CLAIM_BYTES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: String,
    pub events: Vec<Event>,
    /// Fencing token of this claim's lease: strictly increasing per key (over
    /// every claim the store ever handed out). `complete`, `release`,
    /// `dead_letter` and `renew` name it; a holder whose lease was claimed
    /// again since is refused with [`StoreError::Fenced`].
    pub token: u64,
}

impl Claim {
    /// The newest seq in the claim (what `complete`/`dead_letter` take as `upto`).
    pub fn upto(&self) -> Seq {
        self.events.last().map(|e| e.seq).unwrap_or(0)
    }
}

/// An event Discord refused for good (a 4xx other than auth/404/429), kept aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event: Event,
    pub reason: String,
    pub failed_ms: u64,
}

/// Which dead letters an operator's retry or purge acts on
/// (`drone-discord queue retry|purge ID|all`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadSelection {
    /// The dead letter with this id (its event's seq).
    One(Seq),
    All,
}

impl DeadSelection {
    /// `all` or a dead letter's id.
    pub fn parse(s: &str) -> Option<DeadSelection> {
        match s {
            "all" => Some(DeadSelection::All),
            id if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                id.parse().ok().map(DeadSelection::One)
            }
            _ => None,
        }
    }
}

impl std::fmt::Display for DeadSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadSelection::One(seq) => write!(f, "{seq}"),
            DeadSelection::All => f.write_str("all"),
        }
    }
}

/// Whether `n` more events of `bytes` body bytes in all fit below `b`.
pub fn fits_all(events: u64, bytes: u64, n: u64, more_bytes: u64, b: &Bounds) -> bool {
    events.saturating_add(n) <= b.max_events && bytes.saturating_add(more_bytes) <= b.max_bytes
}

/// What the store may hold: the queue's bounds, past which [`Store::append`]
/// answers [`StoreError::Full`], and how long delivered builds' message ids
/// and dead letters are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Most pending events (`QUEUE_MAX_EVENTS`).
    pub max_events: u64,
    /// Most pending body bytes (`QUEUE_MAX_BYTES`).
    pub max_bytes: u64,
    /// A build's message id is forgotten this long after its last update
    /// (`MESSAGE_RETENTION_DAYS`); a later update then posts a new message.
    pub message_retention_ms: u64,
    /// A dead letter is removed this long after it was set aside
    /// (`DEAD_LETTER_RETENTION_DAYS`).
    pub dead_letter_retention_ms: u64,
}

/// One day in ms, the unit of the retention settings.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

impl Default for Bounds {
    /// Defaults that suit an SD card: 100 000 events / 256 MiB (a day of a
    /// busy Drone, at 2–5 KiB a webhook, with Discord unreachable), message
    /// ids for 90 days, dead letters for 30.
    fn default() -> Self {
        Bounds {
            max_events: 100_000,
            max_bytes: 256 * 1024 * 1024,
            message_retention_ms: 90 * DAY_MS,
            dead_letter_retention_ms: 30 * DAY_MS,
        }
    }
}

/// How full the queue is, against its [`Bounds`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Pending events.
    pub events: u64,
    /// Pending body bytes.
    pub bytes: u64,
    /// At or past either bound: appends are refused with [`StoreError::Full`].
    pub full: bool,
}

impl Usage {
    /// The figures, with `full` judged against `b`.
    pub fn of(events: u64, bytes: u64, b: &Bounds) -> Usage {
        Usage {
            events,
            bytes,
            full: events >= b.max_events || bytes >= b.max_bytes,
        }
    }
}

/// Whether one more event of `body_len` bytes fits below `b`.
pub fn fits(events: u64, bytes: u64, body_len: usize, b: &Bounds) -> bool {
    events < b.max_events && bytes.saturating_add(body_len as u64) <= b.max_bytes
}

/// The text of [`StoreError::Full`].
pub fn full_message(b: &Bounds) -> String {
    format!(
        "queue is full (bounds: {} events, {} bytes)",
        b.max_events, b.max_bytes
    )
}

/// Queue figures for `/health`, `STATUS=` and `drone-discord queue`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Events accepted and not yet delivered.
    pub pending: u64,
    /// Events moved aside after Discord rejected them (see `drone-discord queue`).
    pub dead_letters: u64,
}

/// Why a store call failed.
#[derive(Debug)]
pub enum StoreError {
    /// Cannot read or write now (I/O error, full disk, server unreachable).
    /// Ingest answers 503 so Drone knows the event was not taken.
    Unavailable(String),
    /// Stored data could not be decoded; the message says which record.
    Corrupt(String),
    /// Bad configuration (path, URI, credentials); fatal at start-up.
    Config(String),
    /// The queue is at its [`Bounds`]: nothing was stored. Ingest answers
    /// 503 with `Retry-After`; everything already accepted stays queued.
    Full(String),
    /// The caller's lease on the key is no longer its own (it expired and
    /// another claim took the key, or it was never held): nothing changed.
    /// Not a store failure: another delivery owns the key now.
    Fenced(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Corrupt(m) => write!(f, "store data corrupt: {m}"),
            StoreError::Config(m) => write!(f, "store configuration: {m}"),
            StoreError::Full(m) => write!(f, "store full: {m}"),
            StoreError::Fenced(m) => write!(f, "lease lost: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

/// A durable event queue plus the (key, destination) → message map. All methods are safe to
/// call concurrently; every write is durable when its future resolves `Ok`.
pub trait Store: Send + Sync + 'static {
    /// Durably queue `ev` (or report it as a replay). Resolves only after the
    /// write is committed to stable storage. With the queue at its
    /// [`Bounds`], stores nothing and answers [`StoreError::Full`] (a replay
    /// is still answered [`Appended::Duplicate`]).
    fn append(&self, ev: NewEvent) -> impl Future<Output = Result<Appended>> + Send;

    /// Lease up to `max_keys` keys with pending events that nobody holds (no
    /// lease, or an expired one), oldest first-pending-event first, for
    /// `lease` on behalf of `owner`. Each claim carries the oldest pending
    /// events of its key in seq order, bounded by [`MAX_CLAIM_EVENTS`] and
    /// [`MAX_CLAIM_BYTES`] (never fewer than one), and a fresh fencing token.
    /// Keys leased by anyone, `owner` included, are skipped until released,
    /// completed or expired. Expiry is measured by the store's clock, never
    /// the caller's wall clock (embedded: monotonic; MongoDB: the server's
    /// `$$NOW`).
    fn claim(
        &self,
        owner: &str,
        lease: Duration,
        max_keys: usize,
    ) -> impl Future<Output = Result<Vec<Claim>>> + Send;

    /// Atomically: remove `key`'s events with seq ≤ `upto`, store every
    /// message of `done` as the key's message at its destination, store
    /// `done.outcome` only if it is newer than the stored record of its change
    /// key ([`OutcomeRecord::newer_than`]; an equal or older one leaves the
    /// stored one), and drop the lease. Refused with [`StoreError::Fenced`],
    /// changing nothing, unless `owner` still holds the lease `token` on `key`.
    fn complete(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        done: Completion,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Drop the lease `token` on `key` without completing (retry later). A
    /// lease that is no longer the caller's is left alone (`Ok`).
    fn release(
        &self,
        key: &str,
        owner: &str,
        token: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Extend the lease `token` on `key` to `lease` from now (the store's
    /// clock), for a delivery that takes longer than expected. `Fenced` when
    /// the lease is no longer the caller's.
    fn renew(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        lease: Duration,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Atomically move `key`'s events with seq ≤ `upto` to the dead letters
    /// with `reason`, and drop the lease; fenced like [`Store::complete`].
    fn dead_letter(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        reason: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The message that represents `key` at destination `dest`, if one was posted.
    fn message(
        &self,
        key: &str,
        dest: &str,
    ) -> impl Future<Output = Result<Option<MessageRef>>> + Send;

    /// Every destination's message of `key`, in destination order (one
    /// range scan).
    fn messages(&self, key: &str)
        -> impl Future<Output = Result<Vec<(String, MessageRef)>>> + Send;

    /// Record (durably) the message for `key` at `dest` without touching the
    /// queue: called before a create is sent (its intent, see
    /// [`MessageRef::uncertain`]) and right after it succeeded, before
    /// anything else can fail. Fenced like [`Store::complete`]: refused with
    /// [`StoreError::Fenced`], changing nothing, unless `owner` still holds
    /// the lease `token` on `key`, so a stale holder cannot overwrite what
    /// the current one stored.
    fn put_message(
        &self,
        key: &str,
        dest: &str,
        owner: &str,
        token: u64,
        message: MessageRef,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Record `message` for `key` at `dest` unless it already has one there
    /// (`Ok(false)` then, and nothing changes). Not fenced: for `migrate`,
    /// which imports the old service's map and never replaces a message
    /// already known.
    fn import_message(
        &self,
        key: &str,
        dest: &str,
        message: MessageRef,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// The last outcome stored for `change_key` (see [`Store::complete`]).
    fn outcome(
        &self,
        change_key: &str,
    ) -> impl Future<Output = Result<Option<OutcomeRecord>>> + Send;

    /// Pending events, oldest first, at most `limit`.
    fn pending(&self, limit: usize) -> impl Future<Output = Result<Vec<Event>>> + Send;

    /// Dead letters, oldest first, at most `limit`.
    fn dead_letters(&self, limit: usize) -> impl Future<Output = Result<Vec<DeadLetter>>> + Send;

    /// Queue the selected dead letters again, each as a new event of its
    /// key (a fresh seq, after everything pending; body, event, action and
    /// receive time as they were), and remove them from the dead letters, in
    /// one step. Answers how many; a selected id that is not a dead letter
    /// is `Ok(0)`. When they do not all fit below the queue's [`Bounds`]:
    /// [`StoreError::Full`], nothing changed.
    fn retry_dead(&self, which: DeadSelection) -> impl Future<Output = Result<u64>> + Send;

    /// Remove the selected dead letters for good; answers how many.
    fn purge_dead(&self, which: DeadSelection) -> impl Future<Output = Result<u64>> + Send;

    /// Pending and dead-letter counts.
    fn stats(&self) -> impl Future<Output = Result<Stats>> + Send;

    /// How full the queue is against its [`Bounds`]; O(1) (health asks
    /// every second).
    fn usage(&self) -> impl Future<Output = Result<Usage>> + Send;

    /// Prove that a durable write works right now (start-up, `check`, and
    /// the relay while it waits for a failed store to recover).
    fn probe(&self) -> impl Future<Output = Result<()>> + Send;

    /// Whether writes can be expected to work, for health and the systemd
    /// watchdog, without writing when the evidence suffices: the embedded
    /// store checks free space with `statvfs` and counts its last real
    /// commit as proof, probing only per [`write_proof`]'s rules. The
    /// default is a [`Store::probe`], for a backend whose writes do not go
    /// to the local disk.
    fn writable(&self) -> impl Future<Output = Result<()>> + Send {
        self.probe()
    }

    /// The size of the store's file on this machine, for `/metrics`; `None`
    /// for a backend that keeps no local file.
    fn file_bytes(&self) -> Option<u64> {
        None
    }
}

/// Whether a claim that already holds `count` events of `bytes` body bytes
/// may take one more of `next` bytes (the first event is always taken).
pub fn claim_has_room(count: usize, bytes: usize, next: usize) -> bool {
    count == 0 || (count < MAX_CLAIM_EVENTS && bytes.saturating_add(next) <= MAX_CLAIM_BYTES)
}

/// Wall-clock time in ms since the Unix epoch ([`crate::clock`]): the unit
/// of the timestamps the store keeps (received, failed); never used for leases.
pub fn now_ms() -> u64 {
    crate::clock::now_ms()
}

/// Ordering key for a build event: `build:<host>:<repo id>:<build id>`.
///
/// A Drone build id is unique only within one Drone server's database, so the
/// key names the server (`system.host` of the webhook, lower-cased, as Drone
/// sends it, port included) and the repository (which also tells two builds
/// apart after a Drone database reset that re-created the repository under a
/// new id). An empty host (a webhook without `system`) is kept empty.
pub fn build_key(host: &str, repo_id: i64, build_id: i64) -> String {
    format!(
        "build:{}:{repo_id}:{build_id}",
        host.trim().to_ascii_lowercase()
    )
}

/// The destination key of a bot channel: `channel:<snowflake>` (a webhook
/// route's is `webhook:<name>`).
pub fn channel_dest(channel_id: &str) -> String {
    format!("channel:{channel_id}")
}

/// The key releases up to 0.1.0 used for a build: `build:<build id>`, which
/// does not say which Drone server the build belongs to. Still written by
/// `migrate` (the old Python service kept no host either).
pub fn legacy_build_key(build_id: i64) -> String {
    format!("build:{build_id}")
}

/// The Drone build id of a legacy key (`build:<digits>`), else `None`.
pub fn legacy_build_id(key: &str) -> Option<i64> {
    let id = key.strip_prefix("build:")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// The legacy key of the same build id as a namespaced build key, else `None`.
pub fn legacy_key_of(key: &str) -> Option<String> {
    let rest = key.strip_prefix("build:")?;
    let (_, id) = rest.rsplit_once(':')?;
    legacy_build_id(&format!("build:{id}"))?;
    Some(format!("build:{id}"))
}

/// The namespaced key of a legacy-keyed build event, from the webhook body it
/// carries (`None`: not a build webhook, so it keeps its key).
pub fn build_key_of_body(body: &[u8]) -> Option<String> {
    let hook = crate::drone::parse(body).ok()?;
    let build = hook.build.as_ref().filter(|b| b.id > 0)?;
    let host = hook.system.as_ref().map(|s| s.host.as_str()).unwrap_or("");
    Some(build_key(host, build.repo_id, build.id))
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn build_keys_name_the_server_and_the_repository() {
        assert_eq!(
            build_key("Drone.Example.com:8080", 35, 2088),
            "build:drone.example.com:8080:35:2088"
        );
        assert_eq!(build_key("", 1, 2), "build::1:2");
        assert_ne!(build_key("a", 1, 7), build_key("b", 1, 7));
        assert_eq!(legacy_build_key(2088), "build:2088");
        assert_eq!(legacy_build_id("build:2088"), Some(2088));
        for not_legacy in ["build:", "build:x1", "build:a:1:2", "event:3", "build:-1"] {
            assert_eq!(legacy_build_id(not_legacy), None, "{not_legacy}");
        }
        assert_eq!(
            legacy_key_of("build:drone.example.com:8080:35:2088").as_deref(),
            Some("build:2088")
        );
        assert_eq!(legacy_key_of("event:3"), None);
        assert_eq!(
            legacy_key_of("build:2088"),
            None,
            "a legacy key has no legacy key"
        );
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test/fixtures/drone/build_updated.json"
        ))
        .unwrap();
        assert_eq!(
            build_key_of_body(&body).as_deref(),
            Some("build:drone.kiwi-labs.net:35:2088")
        );
        assert_eq!(build_key_of_body(b"{not json"), None);
    }
}
