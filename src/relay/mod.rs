//! The relay: queued events → rendered messages → Discord, one message per build.
//!
//! It claims work from the store per key (one build, or one standalone
//! event), so events of one build are applied in order while different
//! builds proceed independently. A claim holds every pending event of its
//! key; since each Drone update carries the whole build, only the newest
//! state is sent (coalescing), and a final status is never replaced by a
//! stale running/pending one.
//!
//! Exactly one message per build: creates carry a nonce derived from the
//! Drone server, the build, the channel and the generation ([`nonce`]) with
//! `enforce_nonce`, so a create that reached Discord just before a
//! crash returns the same message when repeated; the message id is stored
//! before the events are marked done. Discord forgets nonces after a few
//! minutes, so a create's intent is stored before it goes out, and one whose
//! outcome is uncertain is repeated as is only within `nonce_window`; later
//! it is looked up in the channel first ([`reconcile`]).
//!
//! Failure policy (see README): network errors, timeouts, 5xx and lingering
//! 429s retry with capped exponential backoff and jitter, forever, the event
//! staying queued (a store failure after the call backs off the same way).
//! A key that is backing off never holds a delivery slot, so builds that
//! keep failing cannot starve the others. A refusal is scoped to what
//! Discord refused: 401 (the token) pauses all delivery and marks health
//! unhealthy, with a rare retry; a 403 or 404 on a create pauses that
//! destination (channel) the same way. A 403 on an edit concerns that
//! message only: a fresh message is posted, and if that is refused too the
//! build is set aside as a dead letter. 404 on an edit (the message was
//! deleted) posts a fresh message.
//! Any other 4xx moves the events aside as dead letters and the relay goes on.
//!
//! Routing (`routes`, reloaded on `SIGHUP`): each claim goes to every
//! destination its routes match, each with its own message (the store maps
//! (build, destination) → message), its own `when`, mention and thread.
//! Without a routing file that is the one channel `DISCORD_CHANNEL_ID`, live.
//!
//! The parts: [`scheduler`] decides what to do when (a pure state machine
//! fed `Instant`s), [`deliver`] delivers one claim, [`destination`] one
//! destination's share of it (with `create`, the exactly-once create,
//! [`thread`] and `webhook_route`), `combine` picks the failure that decides
//! a claim, [`nonce`] names each create, [`reconcile`] finds an uncertain
//! create's message, [`sink`] is where messages go, and [`run`] here is the
//! driver that moves claims, outcomes and time between the store, the sink
//! and the scheduler.
mod combine;
mod create;
pub mod deliver;
pub mod destination;
pub mod nonce;
pub mod reconcile;
pub mod scheduler;
pub mod sink;
pub mod thread;
mod webhook_route;

use crate::discord::threads::ChannelKind;
pub use nonce::nonce_for;
pub use sink::{DryRun, Sink};

use crate::health::{Component, Health, Status};
use crate::jitter::Jitter;
use crate::shutdown::Shutdown;
use crate::store::Store;
use deliver::{deliver, release, Notes, Outcome};
use scheduler::{Action, Admission, Scheduler, SchedulerConfig, Verdict};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The default of [`RelayConfig::nonce_window`]: a minute, well inside the
/// "few minutes" Discord remembers a nonce for.
pub const DEFAULT_NONCE_WINDOW: Duration = Duration::from_secs(60);

/// Relay tuning.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub channel_id: String,
    /// This instance's lease owner name (unique per process).
    pub owner: String,
    /// How long a claim is leased; a holder that dies frees its keys after this.
    pub lease: Duration,
    /// Keys delivered concurrently.
    pub max_in_flight: usize,
    /// Re-check the store this often even without a wake-up (other instances, retries).
    pub poll_interval: Duration,
    /// First retry delay after a transient failure; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long delivery pauses after Discord refused the token or channel.
    pub auth_pause: Duration,
    /// How long Discord is trusted to remember a create's nonce: within it a
    /// create with an uncertain outcome is repeated as is, after it the
    /// channel is searched first (`DISCORD_NONCE_WINDOW`; Discord says "a
    /// few minutes", so the default stays well inside).
    pub nonce_window: Duration,
    /// The routes in force (reloaded on `SIGHUP`) and the webhooks' URLs.
    pub routing: Arc<crate::routes::live::Live>,
    /// Each routed channel's kind, read once (bounded by the routes' count).
    kinds: Arc<std::sync::Mutex<HashMap<String, ChannelKind>>>,
    /// Whether a failed build's message gets a Restart button: only while
    /// someone answers the clicks (`crate::interactions`: an allow-list and
    /// a Drone API client that can restart).
    pub restart_buttons: bool,
}

impl RelayConfig {
    pub fn new(channel_id: impl Into<String>) -> Self {
        RelayConfig {
            channel_id: channel_id.into(),
            owner: instance_name(),
            lease: Duration::from_secs(300),
            max_in_flight: 8,
            poll_interval: Duration::from_secs(2),
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            auth_pause: Duration::from_secs(600),
            nonce_window: DEFAULT_NONCE_WINDOW,
            routing: Arc::new(crate::routes::live::Live::new(
                None,
                HashMap::new(),
                crate::routes::Routing::default(),
            )),
            kinds: Arc::default(),
            restart_buttons: false,
        }
    }

    /// The kind of `channel`, if it was read before.
    fn channel_kind(&self, channel: &str) -> Option<ChannelKind> {
        crate::sync::lock(&self.kinds).get(channel).copied()
    }

    fn remember_kind(&self, channel: &str, kind: ChannelKind) {
        crate::sync::lock(&self.kinds).insert(channel.to_string(), kind);
    }

    /// The scheduler's share of the tuning.
    fn scheduler_config(&self) -> SchedulerConfig {
        SchedulerConfig {
            max_in_flight: self.max_in_flight,
            poll_interval: self.poll_interval,
            base_backoff: self.base_backoff,
            max_backoff: self.max_backoff,
            refusal_pause: self.auth_pause,
            stats_interval: Duration::from_secs(1),
            probe_interval: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            nonce_window: self.nonce_window,
        }
    }
}

/// A process-unique lease owner name: host, pid and a random part.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let tag = (Jitter::random().sample() * f64::from(u32::MAX)) as u32;
    format!(
        "{}-{}-{tag:08x}",
        if host.is_empty() { "host" } else { &host },
        std::process::id()
    )
}

/// Run the relay until shutdown. Never returns early on errors: it reports
/// them to health and keeps the events queued.
pub async fn run<S: Store, K: Sink>(
    cfg: RelayConfig,
    store: Arc<S>,
    sink: Arc<K>,
    health: Arc<Health>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let cfg = Arc::new(cfg);
    let mut routing = cfg.routing.routing();
    let mut destinations = destination::destinations(&routing, &cfg.channel_id);
    let mut sched = Scheduler::new(
        cfg.scheduler_config(),
        destinations.clone(),
        Jitter::random(),
        Instant::now(),
    );
    let mut tasks: JoinSet<(Outcome, Notes)> = JoinSet::new();
    let mut keys: HashMap<tokio::task::Id, String> = HashMap::new();

    loop {
        if shutdown.is_triggered() {
            sched.shutdown(Instant::now());
        }
        // Health is the one authority on whether the store writes (ingest,
        // the prober and this loop all report into it).
        sched.set_store_writable(health.get(Component::Store).ok);
        match sched.next(Instant::now()) {
            Action::Stop { drain_until } => {
                drain(
                    &mut tasks,
                    &mut keys,
                    drain_until,
                    |key, (outcome, notes)| {
                        finished(&cfg, &health, &mut sched, &key, outcome, notes)
                    },
                )
                .await;
                return;
            }
            // Queue figures for /health and STATUS=.
            Action::RefreshStats => {
                match store.stats().await {
                    Ok(s) => health.set_queue(s),
                    Err(e) => tracing::warn!(error = %e, "cannot read queue figures"),
                }
                match store.usage().await {
                    Ok(u) => health.set_queue_usage(u),
                    Err(e) => tracing::warn!(error = %e, "cannot read the queue's fill"),
                }
            }
            // No deliveries while the store cannot write: their results
            // (message ids, completions) could not be recorded, so every
            // create would lean on Discord's short nonce window alone.
            // Probe it to resume on our own.
            Action::ProbeStore => {
                if let Ok(Ok(())) =
                    tokio::time::timeout(Duration::from_secs(10), store.probe()).await
                {
                    tracing::info!("store writes again; delivery resumes");
                    health.set(Component::Store, Status::ok("writable"));
                }
            }
            Action::Claim(n) => match store.claim(&cfg.owner, cfg.lease, n).await {
                Ok(claims) => {
                    let now = cfg.routing.routing();
                    if !Arc::ptr_eq(&now, &routing) {
                        routing = now;
                        destinations = destination::destinations(&routing, &cfg.channel_id);
                        sched.set_destinations(destinations.clone());
                    }
                    // With one destination a refused one holds its keys back
                    // (today's behaviour); with several, a delivery skips the
                    // refused ones and is retried for them.
                    let only = match destinations.as_slice() {
                        [one] => one.as_str(),
                        _ => "",
                    };
                    for claim in claims {
                        match sched.admit(&claim.key, only, Instant::now()) {
                            Admission::Deliver => {
                                let (cfg, store, sink) = (cfg.clone(), store.clone(), sink.clone());
                                let key = claim.key.clone();
                                let trusted = sched.nonce_trusted_until(&key);
                                let paused = sched.paused_destinations(Instant::now());
                                let handle = tasks.spawn(async move {
                                    deliver(&cfg, &*store, &*sink, claim, trusted, &paused).await
                                });
                                keys.insert(handle.id(), key);
                            }
                            Admission::Release => {
                                release(&cfg, &*store, &claim.key, claim.token).await
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim queued events");
                    health.set(Component::Store, Status::failed(e.to_string()));
                }
            },
            // Wait for something to do: a finished delivery, a new event, the
            // scheduler's next deadline (poll, end of a pause or backoff), or
            // shutdown.
            Action::Wait(until) => {
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => sched.shutdown(Instant::now()),
                    Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                        let (id, (outcome, notes)) = match joined {
                            Ok(r) => r,
                            Err(e) => {
                                tracing::error!(error = %e, "delivery task failed");
                                let reason = "delivery task failed".to_string();
                                (e.id(), (Outcome::Retry { after: Duration::ZERO, reason }, Notes::default()))
                            }
                        };
                        if let Some(key) = keys.remove(&id) {
                            finished(&cfg, &health, &mut sched, &key, outcome, notes);
                        }
                    }
                    _ = wake.notified() => sched.woke(),
                    _ = tokio::time::sleep_until(until.into()) => sched.woke(),
                }
            }
        }
    }
}

/// A delivery task ended: tell the scheduler, the logs and health.
fn finished(
    cfg: &RelayConfig,
    health: &Health,
    sched: &mut Scheduler,
    key: &str,
    outcome: Outcome,
    notes: Notes,
) {
    if notes.create_uncertain {
        sched.create_uncertain(key);
    }
    if notes.unmatched {
        health.count_unmatched();
    }
    let reached = sched.reached(key, &notes.reached);
    let mut verdict = sched.finished(key, &outcome, Instant::now());
    if let Verdict::Delivered { resumed } = &mut verdict {
        *resumed |= reached;
    }
    report(cfg, health, sched, key, outcome, verdict);
    if let Some(why) = notes.malformed {
        // Until a later delivery succeeds (that sets "delivering").
        tracing::warn!(key = %key, reason = %why, "Discord answered with a malformed 2xx");
        health.set(Component::Discord, Status::failed(format!(
            "Discord answered with a malformed 2xx ({why}); the message is looked up in the channel before anything is posted again"
        )));
    }
}

/// Tell the logs and health what became of a delivery.
fn report(
    cfg: &RelayConfig,
    health: &Health,
    sched: &Scheduler,
    key: &str,
    outcome: Outcome,
    verdict: Verdict,
) {
    match (outcome, verdict) {
        (Outcome::Done | Outcome::DeadLettered, Verdict::Delivered { resumed }) => {
            // A delivery answered before a refusal does not end it.
            if sched.is_refused(Instant::now()) {
                return;
            }
            if resumed || !health.get(Component::Discord).ok {
                tracing::info!("Discord accepts calls again");
            }
            health.set(Component::Discord, Status::ok("delivering"));
        }
        (Outcome::Retry { reason, .. }, Verdict::Retry { attempt, delay }) => {
            tracing::warn!(key = %key, attempt, retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery will be retried");
        }
        (Outcome::Refused { reason, .. }, Verdict::Paused { scope, .. }) => {
            tracing::error!(reason = %reason, scope = ?scope, pause_s = cfg.auth_pause.as_secs(), "Discord refuses our calls; delivery paused");
            health.set(Component::Discord, Status::failed(reason));
        }
        (Outcome::StoreFailed(e), _) => health.set(Component::Store, Status::failed(e)),
        (outcome, verdict) => tracing::debug!(key = %key, ?outcome, ?verdict, "delivery finished"),
    }
}

/// Shutdown: give in-flight deliveries until `until`, then leave the rest
/// queued (their leases expire; the next start picks them up). Each delivery
/// that finishes meanwhile is reported like any other, so health does not keep
/// a stale failure that the last deliveries already cleared.
async fn drain(
    tasks: &mut JoinSet<(Outcome, Notes)>,
    keys: &mut HashMap<tokio::task::Id, String>,
    until: Instant,
    mut finished: impl FnMut(String, (Outcome, Notes)),
) {
    let drained = tokio::time::timeout_at(until.into(), async {
        while let Some(joined) = tasks.join_next_with_id().await {
            if let Ok((id, outcome)) = joined {
                if let Some(key) = keys.remove(&id) {
                    finished(key, outcome);
                }
            }
        }
    });
    if drained.await.is_err() {
        tracing::info!(
            in_flight = tasks.len(),
            "stopping with deliveries in flight; they stay queued"
        );
        tasks.abort_all();
    }
}
