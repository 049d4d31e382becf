//! The service's Prometheus metrics: one process-wide [`Registry`] of
//! lock-free counters, written where each event happens and read by
//! `GET /metrics` (see `endpoints.rs`, and the README's "Metrics" section for
//! what each metric means).
//!
//! Every counter is an atomic with a fixed set of labels, declared here as
//! enums, so recording is one relaxed `fetch_add` (no lock, no allocation)
//! and the page has a fixed number of samples: its size is bounded whatever
//! the traffic. The registry is a `static`, so the places that count (the
//! HTTP server's hooks in `endpoints.rs`, the REST client, the relay, the
//! gateway driver, the store's commit proof) need no handle passed to them.
//!
//! The parts: [`histogram`] (fixed buckets of atomics), [`exposition`] (the
//! text format 0.0.4, by hand), [`page`] (every family, in order, with its
//! help text), [`process`] (resident memory).
use crate::discord::gateway::identify_ledger::IdentifyLedger;
use crate::discord::gateway::machine::Phase;
use crate::store::{now_ms, Claim};
use histogram::{Histogram, MICROS};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub mod exposition;
pub mod histogram;
pub mod page;
mod process;

pub use exposition::CONTENT_TYPE;

/// How the service answered a webhook (`POST /`), the `answer` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200, durably queued.
    Queued,
    /// 200, a replay of a webhook already queued.
    Duplicate,
    /// 200, an event this version does not handle.
    Ignored,
    /// 401: signature, digest or date wrong.
    Unauthorized,
    /// 400: not a Drone webhook, or not HTTP the server accepts.
    BadRequest,
    /// 413: larger than `MAX_BODY_BYTES`.
    TooLarge,
    /// 503: the queue is full or the store cannot write.
    Unavailable,
}

impl Answer {
    const ALL: [Answer; 7] = [
        Answer::Queued,
        Answer::Duplicate,
        Answer::Ignored,
        Answer::Unauthorized,
        Answer::BadRequest,
        Answer::TooLarge,
        Answer::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Answer::Queued => "queued",
            Answer::Duplicate => "duplicate",
            Answer::Ignored => "ignored",
            Answer::Unauthorized => "401",
            Answer::BadRequest => "400",
            Answer::TooLarge => "413",
            Answer::Unavailable => "503",
        }
    }

    /// The refusal a status stands for, if it is one this metric counts.
    pub fn of_refusal(status: u16) -> Option<Answer> {
        match status {
            401 => Some(Answer::Unauthorized),
            400 => Some(Answer::BadRequest),
            413 => Some(Answer::TooLarge),
            503 => Some(Answer::Unavailable),
            _ => None,
        }
    }
}

/// What a Discord REST call does, the `route` label. Only `create`,
/// `edit` and `other` (checks, `GET /gateway/bot`) are made today; the
/// others are declared so that dashboards need no change when they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Create,
    Edit,
    Thread,
    Upload,
    Interaction,
    Other,
}

impl RouteKind {
    const ALL: [RouteKind; 6] = [
        RouteKind::Create,
        RouteKind::Edit,
        RouteKind::Thread,
        RouteKind::Upload,
        RouteKind::Interaction,
        RouteKind::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            RouteKind::Create => "create",
            RouteKind::Edit => "edit",
            RouteKind::Thread => "thread",
            RouteKind::Upload => "upload",
            RouteKind::Interaction => "interaction",
            RouteKind::Other => "other",
        }
    }
}

/// The `class` label of a REST call: the answer's status class, or
/// `error` when there was no usable answer (network, TLS, timeout, or a
/// status outside 2xx/4xx/5xx).
const CLASSES: [&str; 4] = ["2xx", "4xx", "5xx", "error"];

fn class_of(status: Option<u16>) -> usize {
    match status {
        Some(200..=299) => 0,
        Some(400..=499) => 1,
        Some(500..=599) => 2,
        _ => 3,
    }
}

/// Whose limit a 429 was about, the `scope` label: Discord's
/// `X-RateLimit-Scope` (`user`, `global`, `shared`), or `cloudflare` for a
/// 429 that did not come from Discord's API (see `discord::ratelimit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitScope {
    User,
    Global,
    Shared,
    Cloudflare,
}

impl LimitScope {
    const ALL: [LimitScope; 4] = [
        LimitScope::User,
        LimitScope::Global,
        LimitScope::Shared,
        LimitScope::Cloudflare,
    ];

    fn label(self) -> &'static str {
        match self {
            LimitScope::User => "user",
            LimitScope::Global => "global",
            LimitScope::Shared => "shared",
            LimitScope::Cloudflare => "cloudflare",
        }
    }
}

/// The gateway's `state` label values: `off` until the gateway runs, then
/// its [`Phase`].
const GATEWAY_STATES: [&str; 8] = [
    "off",
    "disconnected",
    "connecting",
    "awaiting_hello",
    "identifying",
    "resuming",
    "active",
    "fatal",
];

fn state_index(phase: Phase) -> u8 {
    match phase {
        Phase::Disconnected => 1,
        Phase::Connecting => 2,
        Phase::AwaitingHello => 3,
        Phase::Identifying => 4,
        Phase::Resuming => 5,
        Phase::Active => 6,
        Phase::Fatal => 7,
    }
}

/// Webhook answer latency buckets, seconds: 1 ms to 10 s (an answer waits
/// for one fsync, a few ms on an SSD, tens to hundreds on an SD card).
const WEBHOOK_BUCKETS_US: &[u64] = &[
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, MICROS, 2_500_000,
    5_000_000, 10_000_000,
];

/// Accept-to-Discord latency buckets, seconds: 100 ms to 1 h (normally
/// under a second; minutes or hours while Discord is unreachable or refuses).
const DELIVERY_BUCKETS_US: &[u64] = &[
    100_000,
    250_000,
    500_000,
    MICROS,
    2_500_000,
    5_000_000,
    10_000_000,
    30_000_000,
    60_000_000,
    300_000_000,
    900_000_000,
    3_600_000_000,
];

/// Every metric the process keeps between scrapes.
#[derive(Debug)]
pub struct Registry {
    webhooks: [AtomicU64; Answer::ALL.len()],
    webhook_latency: Histogram,
    rest_calls: [[AtomicU64; CLASSES.len()]; RouteKind::ALL.len()],
    rate_limited: [AtomicU64; LimitScope::ALL.len()],
    messages_created: AtomicU64,
    messages_edited: AtomicU64,
    dead_letters: AtomicU64,
    delivery_latency: Histogram,
    gateway_state: AtomicU8,
    gateway_connects: AtomicU64,
    identify_ledger: OnceLock<Arc<Mutex<IdentifyLedger>>>,
    /// Unix µs of the store's last successful commit (0: none yet).
    last_commit_us: AtomicU64,
    /// Unix µs when `serve` started (0: not serving).
    start_us: AtomicU64,
}

static REGISTRY: Registry = Registry::new();

/// The process's registry.
pub fn global() -> &'static Registry {
    &REGISTRY
}

fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Registry {
    /// All zero (tests make their own; the service uses [`global`]).
    pub const fn new() -> Registry {
        Registry {
            webhooks: [const { AtomicU64::new(0) }; Answer::ALL.len()],
            webhook_latency: Histogram::new(WEBHOOK_BUCKETS_US),
            rest_calls: [const { [const { AtomicU64::new(0) }; CLASSES.len()] };
                RouteKind::ALL.len()],
            rate_limited: [const { AtomicU64::new(0) }; LimitScope::ALL.len()],
            messages_created: AtomicU64::new(0),
            messages_edited: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            delivery_latency: Histogram::new(DELIVERY_BUCKETS_US),
            gateway_state: AtomicU8::new(0),
            gateway_connects: AtomicU64::new(0),
            identify_ledger: OnceLock::new(),
            last_commit_us: AtomicU64::new(0),
            start_us: AtomicU64::new(0),
        }
    }

    /// A webhook was answered with `answer`.
    pub fn webhook(&self, answer: Answer) {
        self.webhooks[answer as usize].fetch_add(1, Relaxed);
    }

    /// How long a webhook's answer took, from its first byte to its last.
    pub fn webhook_answered(&self, took: Duration) {
        self.webhook_latency.observe(took);
    }

    /// A REST call to Discord got an answer with `status` (`None`: no answer).
    pub fn rest_call(&self, route: RouteKind, status: Option<u16>) {
        self.rest_calls[route as usize][class_of(status)].fetch_add(1, Relaxed);
    }

    /// Discord (or Cloudflare) answered 429.
    pub fn rate_limited(&self, scope: LimitScope) {
        self.rate_limited[scope as usize].fetch_add(1, Relaxed);
    }

    pub fn message_created(&self) {
        self.messages_created.fetch_add(1, Relaxed);
    }

    pub fn message_edited(&self) {
        self.messages_edited.fetch_add(1, Relaxed);
    }

    /// A delivery's events were moved aside as dead letters.
    pub fn dead_lettered(&self) {
        self.dead_letters.fetch_add(1, Relaxed);
    }

    /// Discord accepted the message showing `claim`: each of its events
    /// reached Discord this long after it was accepted (wall clock; a clock
    /// step backwards counts as 0).
    pub fn delivered(&self, claim: &Claim) {
        let now = now_ms();
        for e in &claim.events {
            let waited = Duration::from_millis(now.saturating_sub(e.received_ms));
            self.delivery_latency.observe(waited);
        }
    }

    /// Where the gateway connection stands now.
    pub fn gateway_phase(&self, phase: Phase) {
        self.gateway_state.store(state_index(phase), Relaxed);
    }

    /// The gateway scheduled a connection (its first one is not a reconnect).
    pub fn gateway_connect(&self) {
        self.gateway_connects.fetch_add(1, Relaxed);
    }

    /// The gateway's identify ledger, read at each scrape for the identifies
    /// of the last 24 h. The first one set stays (one gateway per process).
    pub fn watch_identify_ledger(&self, ledger: &Arc<Mutex<IdentifyLedger>>) {
        let _ = self.identify_ledger.set(Arc::clone(ledger));
    }

    /// The store committed a write successfully at `at`.
    pub fn committed(&self, at: SystemTime) {
        self.last_commit_us.store(unix_us(at), Relaxed);
    }

    /// `serve` started at `at`.
    pub fn started(&self, at: SystemTime) {
        self.start_us.store(unix_us(at), Relaxed);
    }

    /// Identifies in the ledger's 24 h window as of `now`; `None` without a
    /// gateway, or while the ledger is being written (the scrape never
    /// waits for the gateway's fsync).
    fn identifies_used(&self, now: SystemTime) -> Option<u64> {
        let ledger = match self.identify_ledger.get()?.try_lock() {
            Ok(ledger) => ledger,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(ledger.used(now) as u64)
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}
