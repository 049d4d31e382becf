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
//! build with `enforce_nonce`, so a create that reached Discord just before a
//! crash returns the same message when repeated; the message id is stored
//! before the events are marked done.
//!
//! Failure policy (see README): network errors, timeouts, 5xx and lingering
//! 429s retry with capped exponential backoff and jitter, forever, the event
//! staying queued (a store failure after the call backs off the same way).
//! A key that is backing off never holds a delivery slot, so builds that
//! keep failing cannot starve the others. 401/403 (and an unknown channel)
//! stop all calls and mark health unhealthy, with a rare retry. 404 on an
//! edit posts a fresh message.
//! Any other 4xx moves the events aside as dead letters and the relay goes on.
use crate::backoff::ExponentialBackoff;
use crate::discord::rest::{Rest, RestError};
use crate::drone::{self, Webhook};
use crate::health::{Component, Health, Status};
use crate::jitter::Jitter;
use crate::render;
use crate::shutdown::Shutdown;
use crate::store::{now_ms, Claim, Event, MessageRef, Store, StoreError};
use crate::sync::lock;
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Where rendered messages go.
pub trait Sink: Send + Sync + 'static {
    /// Post a new message; returns its id.
    fn create(&self, channel_id: &str, body: &Value) -> impl Future<Output = Result<String, RestError>> + Send;
    /// Replace an existing message; returns its id.
    fn edit(&self, channel_id: &str, message_id: &str, body: &Value)
        -> impl Future<Output = Result<String, RestError>> + Send;
}

impl Sink for Rest {
    async fn create(&self, channel_id: &str, body: &Value) -> Result<String, RestError> {
        self.create_message(channel_id, body).await
    }
    async fn edit(&self, channel_id: &str, message_id: &str, body: &Value) -> Result<String, RestError> {
        self.edit_message(channel_id, message_id, body).await
    }
}

/// `--dry-run`: log what would be sent, remember made-up message ids.
#[derive(Debug, Default)]
pub struct DryRun {
    next: AtomicU64,
}

impl Sink for DryRun {
    async fn create(&self, channel_id: &str, body: &Value) -> Result<String, RestError> {
        let id = format!("dry-run-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        tracing::info!(channel = channel_id, message_id = %id, body = %body, "dry-run: would create message");
        Ok(id)
    }
    async fn edit(&self, channel_id: &str, message_id: &str, body: &Value) -> Result<String, RestError> {
        tracing::info!(channel = channel_id, message_id, body = %body, "dry-run: would edit message");
        Ok(message_id.to_string())
    }
}

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
    /// How long all delivery pauses after Discord refused the token or channel.
    pub auth_pause: Duration,
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
        }
    }
}

/// A process-unique lease owner name: host, pid and a random part.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let tag = (Jitter::random().sample() * f64::from(u32::MAX)) as u32;
    format!("{}-{}-{tag:08x}", if host.is_empty() { "host" } else { &host }, std::process::id())
}

/// What became of one claim.
#[derive(Debug)]
enum Outcome {
    /// Delivered (or nothing needed sending); events completed.
    Done,
    /// Could not deliver now; released for a retry after this delay.
    Retry { after: Duration, reason: String },
    /// Discord refuses us (token/permissions/channel): pause everything.
    Refused { reason: String },
    /// Discord rejected the message for good; events moved aside.
    DeadLettered,
    /// The store failed; released (if it could be) and retried later.
    StoreFailed(String),
}

/// Per-key retry state kept in memory.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    attempts: u32,
    not_before: Instant,
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
    let mut tasks: JoinSet<(String, Outcome)> = JoinSet::new();
    let backoffs: Arc<Mutex<HashMap<String, Backoff>>> = Arc::default();
    let mut paused_until: Option<Instant> = None;
    let mut last_stats = Instant::now() - Duration::from_secs(60);
    let mut last_store_probe = Instant::now() - Duration::from_secs(60);
    let mut rng = Jitter::random();

    loop {
        if shutdown.is_triggered() {
            break;
        }
        // Queue figures for /health and STATUS=, at most once a second.
        if last_stats.elapsed() >= Duration::from_secs(1) {
            last_stats = Instant::now();
            match store.stats().await {
                Ok(s) => health.set_queue(s),
                Err(e) => tracing::warn!(error = %e, "cannot read queue figures"),
            }
        }

        let now = Instant::now();
        // No new deliveries while the store cannot write: their results
        // (message ids, completions) could not be recorded, so every create
        // would lean on Discord's short nonce window alone. While paused for
        // that, probe the store (at most once a second) to resume on our own.
        let mut store_down = !health.get(Component::Store).ok;
        if store_down && last_store_probe.elapsed() >= Duration::from_secs(1) {
            last_store_probe = Instant::now();
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(10), store.probe()).await {
                tracing::info!("store writes again; delivery resumes");
                health.set(Component::Store, Status::ok("writable"));
                store_down = false;
            }
        }
        let paused = store_down || paused_until.is_some_and(|t| t > now);
        let free = cfg.max_in_flight.saturating_sub(tasks.len());
        let mut claimed = 0;
        if !paused && free > 0 {
            // Claims come oldest first, so keys still backing off are claimed
            // too and handed straight back: otherwise a few builds that keep
            // failing would hold every slot and starve all the others.
            let backing_off = lock(&backoffs).values().filter(|b| b.not_before > now).count();
            match store.claim(&cfg.owner, cfg.lease, free + backing_off).await {
                Ok(claims) => {
                    for claim in claims {
                        if claimed >= free || backoff_remaining(&backoffs, &claim.key).is_some() {
                            release(&cfg, &*store, &claim.key, claim.token).await;
                            continue;
                        }
                        claimed += 1;
                        let (cfg, store, sink) = (cfg.clone(), store.clone(), sink.clone());
                        tasks.spawn(async move {
                            let key = claim.key.clone();
                            (key, deliver(&cfg, &*store, &*sink, claim).await)
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim queued events");
                    health.set(Component::Store, Status::failed(e.to_string()));
                }
            }
        }

        // Wait for something to do: a finished delivery, a new event, the
        // poll tick, the end of a pause, or shutdown.
        // While paused, still wake every poll interval: nothing is claimed,
        // but the queue figures in /health must not freeze for the whole pause.
        let tick = match paused_until {
            Some(t) if t > Instant::now() => (t - Instant::now()).min(cfg.poll_interval),
            _ => cfg.poll_interval,
        };
        // ... and wake when the next key's backoff ends.
        let tick = next_retry(&backoffs).map_or(tick, |d| d.min(tick));
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let (key, outcome) = match joined {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "delivery task failed");
                        continue;
                    }
                };
                match outcome {
                    Outcome::Done | Outcome::DeadLettered => {
                        lock(&backoffs).remove(&key);
                        if paused_until.take().is_some() || !health.get(Component::Discord).ok {
                            tracing::info!("Discord accepts calls again");
                        }
                        health.set(Component::Discord, Status::ok("delivering"));
                        last_stats = Instant::now() - Duration::from_secs(60);
                    }
                    Outcome::Retry { after, reason } => {
                        let (attempt, delay) = back_off(&cfg, &backoffs, &key, after, &mut rng);
                        tracing::warn!(key = %key, attempt, retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery will be retried");
                    }
                    Outcome::Refused { reason } => {
                        tracing::error!(reason = %reason, pause_s = cfg.auth_pause.as_secs(), "Discord refuses our calls; delivery paused");
                        health.set(Component::Discord, Status::failed(reason));
                        paused_until = Some(Instant::now() + cfg.auth_pause);
                    }
                    Outcome::StoreFailed(e) => {
                        health.set(Component::Store, Status::failed(e));
                        // Back off as after a transient failure: the Discord
                        // call may already have been made, and an immediate
                        // retry would repeat it in a tight loop.
                        back_off(&cfg, &backoffs, &key, Duration::ZERO, &mut rng);
                    }
                }
            }
            _ = wake.notified(), if claimed == 0 => {}
            _ = tokio::time::sleep(tick), if claimed == 0 => {}
            else => {}
        }
    }

    // Shutdown: give in-flight deliveries a moment, then leave the rest queued
    // (their leases expire; the next start picks them up).
    let drain = tokio::time::timeout(Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    });
    if drain.await.is_err() {
        tracing::info!(in_flight = tasks.len(), "stopping with deliveries in flight; they stay queued");
        tasks.abort_all();
    }
}

fn backoff_remaining(backoffs: &Mutex<HashMap<String, Backoff>>, key: &str) -> Option<Duration> {
    let map = lock(backoffs);
    let b = map.get(key)?;
    let now = Instant::now();
    (b.not_before > now).then(|| b.not_before - now)
}

/// Count a failed attempt for `key` and schedule its next one (no sooner
/// than `after`); returns the attempt number and the delay.
fn back_off(
    cfg: &RelayConfig,
    backoffs: &Mutex<HashMap<String, Backoff>>,
    key: &str,
    after: Duration,
    rng: &mut Jitter,
) -> (u32, Duration) {
    let mut map = lock(backoffs);
    let b = map.entry(key.to_string()).or_insert(Backoff { attempts: 0, not_before: Instant::now() });
    b.attempts = b.attempts.saturating_add(1);
    let delay = after.max(backoff_delay(cfg, b.attempts, rng));
    b.not_before = Instant::now() + delay;
    (b.attempts, delay)
}

/// Time until the earliest pending backoff ends, if any key is backing off.
fn next_retry(backoffs: &Mutex<HashMap<String, Backoff>>) -> Option<Duration> {
    let now = Instant::now();
    lock(backoffs).values().filter(|b| b.not_before > now).map(|b| b.not_before - now).min()
}

/// The relay's step of the shared schedule ([`ExponentialBackoff`]).
fn backoff_delay(cfg: &RelayConfig, attempts: u32, rng: &mut Jitter) -> Duration {
    ExponentialBackoff::new(cfg.base_backoff, cfg.max_backoff).delay(attempts, rng.sample())
}

/// A small stable hash (FNV-1a), for nonces derived from a message id.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}


/// The decoded events of a claim that can be shown, with the seqs of any that cannot.
struct Decoded {
    hooks: Vec<(Event, Webhook)>,
    undecodable: Vec<(u64, String)>,
}

fn decode(claim: &Claim) -> Decoded {
    let mut d = Decoded { hooks: Vec::new(), undecodable: Vec::new() };
    for ev in &claim.events {
        match drone::parse(&ev.body) {
            Ok(h) => d.hooks.push((ev.clone(), h)),
            Err(e) => d.undecodable.push((ev.seq, e.to_string())),
        }
    }
    d
}

/// Pick the event whose state to show: the newest, unless that would move a
/// final status back to a non-final one (a late, stale update).
fn choose<'a>(hooks: &'a [(Event, Webhook)], shown: Option<&MessageRef>) -> Option<&'a Webhook> {
    let newest = &hooks.last()?.1;
    let newest_status = newest.build.as_ref().map(|b| b.status.as_str()).unwrap_or("");
    if drone::is_final(newest_status) {
        return Some(newest);
    }
    // The newest is not final: prefer a final one from this claim, if any.
    if let Some((_, h)) = hooks.iter().rev().find(|(_, h)| h.build.as_ref().is_some_and(|b| drone::is_final(&b.status))) {
        return Some(h);
    }
    // Nor may it undo a final state already shown.
    if shown.is_some_and(|m| drone::is_final(&m.status)) {
        return None;
    }
    Some(newest)
}

/// Nonce for a create: ≤ 25 chars, stable for the key, different per fresh attempt.
///
/// A legacy key `build:<id>` gives `build<id>`; a key that names its Drone
/// server (`build:<host>:<repo>:<id>`) gives `build<id>h<hash of host and
/// repo>`, so two servers' builds with one id never share a nonce; when that
/// would not fit, the whole key is hashed.
fn nonce_for(key: &str, generation: u32) -> String {
    let suffix = if generation == 0 { String::new() } else { format!("r{generation}") };
    let base = match crate::store::legacy_key_of(key) {
        Some(legacy) => {
            let id = legacy.trim_start_matches("build:");
            let server = key.trim_start_matches("build:").trim_end_matches(id);
            format!("build{id}h{:08x}", fnv1a(server.as_bytes()))
        }
        None => key.chars().filter(|c| c.is_ascii_alphanumeric()).collect(),
    };
    if base.len() + suffix.len() <= 25 {
        return base + &suffix;
    }
    let h = fnv1a(key.as_bytes());
    let h2 = fnv1a(format!("{key}#").as_bytes());
    format!("k{h:08x}{h2:08x}{suffix}")
}

async fn deliver<S: Store, K: Sink>(cfg: &RelayConfig, store: &S, sink: &K, claim: Claim) -> Outcome {
    let key = claim.key.clone();
    let token = claim.token;
    let upto = claim.upto();
    let decoded = decode(&claim);

    // An undecodable event cannot ever be shown: set it aside (with everything
    // before it of this key, as dead letters work up to a seq) and go on.
    if let Some((seq, err)) = decoded.undecodable.first() {
        let reason = format!("stored event {seq} is not a Drone webhook: {err}");
        return finish_dead(cfg, store, &key, token, upto, &reason).await;
    }

    let shown = match store.message(&key).await {
        Ok(m) => m,
        Err(e) => return release_after_store_error(cfg, store, &key, token, e).await,
    };
    let Some(hook) = choose(&decoded.hooks, shown.as_ref()) else {
        tracing::debug!(key = %key, "only stale updates after a final status; nothing to send");
        return complete(cfg, store, &key, token, upto, None).await;
    };
    let Some(mut body) = render::render(hook) else {
        // Ingest only queues kinds it knows; an unknown one here came from an
        // older/newer version's queue. Nothing to show.
        tracing::warn!(key = %key, event = %hook.event, action = %hook.action, "no rendering for queued event; dropped");
        return complete(cfg, store, &key, token, upto, None).await;
    };
    let status = hook.build.as_ref().map(|b| b.status.clone()).unwrap_or_default();

    let result = match &shown {
        Some(m) => match sink.edit(&m.channel_id, &m.message_id, &body).await {
            Err(RestError::NotFound { .. }) => {
                tracing::info!(key = %key, message_id = %m.message_id, "message was deleted; posting a fresh one");
                // A nonce of its own (derived from the deleted message, so a
                // retry after a crash still cannot post twice).
                create(sink, cfg, &key, &mut body, 1 + fnv1a(m.message_id.as_bytes()) % 9999).await
            }
            other => other.map(|id| (id, false)),
        },
        None => create(sink, cfg, &key, &mut body, 0).await,
    };

    match result {
        Ok((message_id, created)) => {
            let m = MessageRef {
                channel_id: shown.as_ref().filter(|_| !created).map(|m| m.channel_id.clone()).unwrap_or_else(|| cfg.channel_id.clone()),
                message_id,
                status,
            };
            if created {
                // Remember the message before anything else can fail, so a
                // later retry edits it instead of posting a second one.
                if let Err(e) = store.put_message(&key, m.clone()).await {
                    return release_after_store_error(cfg, store, &key, token, e).await;
                }
            }
            complete(cfg, store, &key, token, upto, Some(m)).await
        }
        Err(RestError::Transient { reason, retry_after }) => {
            release(cfg, store, &key, token).await;
            Outcome::Retry { after: retry_after.unwrap_or_default(), reason }
        }
        Err(RestError::Unauthorized { status, message }) => {
            release(cfg, store, &key, token).await;
            Outcome::Refused { reason: format!("Discord answered {status}: {message}") }
        }
        Err(RestError::Suspended { reason }) => {
            release(cfg, store, &key, token).await;
            Outcome::Refused { reason }
        }
        Err(RestError::NotFound { code, message }) => {
            // On a create this is the channel itself (10003): a setup problem,
            // not a bad message, so pause instead of dead-lettering everything.
            release(cfg, store, &key, token).await;
            Outcome::Refused {
                reason: format!("channel {} not found ({}): {message}", cfg.channel_id, code.unwrap_or(0)),
            }
        }
        Err(RestError::Rejected { status, code, message }) => {
            let reason = format!("Discord rejected the message: {status} code {} {message}", code.unwrap_or(0));
            tracing::error!(key = %key, reason = %reason, "moving events aside as dead letters");
            finish_dead(cfg, store, &key, token, upto, &reason).await
        }
    }
}

async fn create<K: Sink>(sink: &K, cfg: &RelayConfig, key: &str, body: &mut Value, generation: u32) -> Result<(String, bool), RestError> {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("nonce".into(), Value::String(nonce_for(key, generation)));
        obj.insert("enforce_nonce".into(), Value::Bool(true));
    }
    sink.create(&cfg.channel_id, body).await.map(|id| (id, true))
}

async fn complete<S: Store>(cfg: &RelayConfig, store: &S, key: &str, token: u64, upto: u64, m: Option<MessageRef>) -> Outcome {
    match store.complete(key, &cfg.owner, token, upto, m).await {
        Ok(()) => Outcome::Done,
        Err(e) => release_after_store_error(cfg, store, key, token, e).await,
    }
}

async fn finish_dead<S: Store>(cfg: &RelayConfig, store: &S, key: &str, token: u64, upto: u64, reason: &str) -> Outcome {
    match store.dead_letter(key, &cfg.owner, token, upto, reason, now_ms()).await {
        Ok(()) => Outcome::DeadLettered,
        Err(e) => release_after_store_error(cfg, store, key, token, e).await,
    }
}

async fn release<S: Store>(cfg: &RelayConfig, store: &S, key: &str, token: u64) {
    if let Err(e) = store.release(key, &cfg.owner, token).await {
        tracing::warn!(key = %key, error = %e, "cannot release lease; it will expire");
    }
}

async fn release_after_store_error<S: Store>(cfg: &RelayConfig, store: &S, key: &str, token: u64, e: StoreError) -> Outcome {
    if let StoreError::Fenced(m) = &e {
        // Our lease expired and another delivery owns the key: the store
        // refused our write and changed nothing. Not a store failure.
        tracing::warn!(key = %key, reason = %m, "lease lost during delivery; the new holder delivers");
        return Outcome::Retry { after: Duration::ZERO, reason: e.to_string() };
    }
    tracing::error!(key = %key, error = %e, "store failed during delivery; will retry");
    release(cfg, store, key, token).await;
    Outcome::StoreFailed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_short_stable_and_varies_by_generation() {
        let k = "build:9223372036854775807";
        assert_eq!(nonce_for(k, 0), "build9223372036854775807");
        assert!(nonce_for(k, 0).len() <= 25);
        assert_ne!(nonce_for(k, 0), nonce_for(k, 3));
        assert!(nonce_for(k, 999).len() <= 25);
        assert_eq!(nonce_for("event:12", 0), "event12");
        let a = nonce_for("build:drone.a:1:2088", 0);
        let b = nonce_for("build:drone.b:1:2088", 0);
        assert!(a.starts_with("build2088h") && a.len() <= 25, "{a}");
        assert_ne!(a, b, "two Drone servers never share a nonce");
        assert!(nonce_for("build:h:1:9223372036854775807", 9999).len() <= 25);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let cfg = RelayConfig::new("1");
        let mut rng = Jitter::random();
        let d1 = backoff_delay(&cfg, 1, &mut rng);
        assert!(d1 >= cfg.base_backoff / 2 && d1 <= cfg.base_backoff);
        for a in 1..100 {
            let d = backoff_delay(&cfg, a, &mut rng);
            assert!(d <= cfg.max_backoff, "attempt {a}: {d:?}");
        }
        assert!(backoff_delay(&cfg, 30, &mut rng) >= cfg.max_backoff / 2);
    }
}
