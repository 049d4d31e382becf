//! The relay's scheduling as a pure state machine: time comes in as
//! `Instant`s, decisions go out as values, nothing here does I/O or reads a
//! clock (like `discord::ratelimit` and `discord::gateway::machine`).
//!
//! The driver (`relay::run`) asks [`Scheduler::next`] what to do now
//! ([`Action`]: refresh the queue figures, probe the store, claim up to n
//! keys, wait until an instant, or stop), does it, and reports back: which
//! claimed keys it may deliver ([`Scheduler::admit`]), how each delivery
//! ended ([`Scheduler::finished`]), what the store says
//! ([`Scheduler::set_store_writable`]), that something woke it
//! ([`Scheduler::woke`]) and that shutdown began ([`Scheduler::shutdown`]).
//!
//! It owns:
//! * per-key backoff after a transient failure ([`ExponentialBackoff`]);
//! * the pauses: while the store cannot write, nothing is claimed and the
//!   store is probed once per `probe_interval`; when Discord refuses the token
//!   everything pauses, when it refuses a destination (channel) only that
//!   destination pauses, each for `refusal_pause`;
//! * slot accounting (at most `max_in_flight` deliveries) and starvation
//!   avoidance: keys that are backing off are claimed and handed straight
//!   back, so they never hold a slot and healthy keys behind them go on;
//! * when to refresh the queue figures and when to wake next;
//! * how long a create with an uncertain outcome may be repeated as is
//!   (Discord's nonce window, [`Scheduler::nonce_trusted_until`]).
//!
//! Because every deadline is an `Instant` handed in by the driver (the
//! monotonic clock), a step of the wall clock cannot shorten or stretch a
//! backoff or a pause.
use super::deliver::Outcome;
use crate::backoff::ExponentialBackoff;
use crate::jitter::Jitter;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The scheduler's tunables (see `RelayConfig` for the defaults).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Keys delivered concurrently.
    pub max_in_flight: usize,
    /// Claim at least this often even without a wake-up.
    pub poll_interval: Duration,
    /// First retry delay after a transient failure; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a refusal (token or destination) pauses delivery.
    pub refusal_pause: Duration,
    /// Queue figures are read at most this often.
    pub stats_interval: Duration,
    /// While the store cannot write, it is probed at most this often.
    pub probe_interval: Duration,
    /// At shutdown, deliveries in flight get this long to finish.
    pub drain: Duration,
    /// How long after a create with an uncertain outcome it may be repeated
    /// as is, trusting Discord to remember its nonce; later it is looked up
    /// first (`relay::reconcile`).
    pub nonce_window: Duration,
}

/// What the driver should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Read the store's queue figures for health.
    RefreshStats,
    /// The store cannot write: try a probe write, report it with
    /// [`Scheduler::set_store_writable`].
    ProbeStore,
    /// Claim up to this many keys and pass each to [`Scheduler::admit`].
    Claim(usize),
    /// Nothing to do before this instant, a wake-up, a finished delivery or shutdown.
    Wait(Instant),
    /// Shut down: let deliveries in flight finish until this instant, then stop.
    Stop { drain_until: Instant },
}

/// What to do with one claimed key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Deliver it now; it holds a slot until [`Scheduler::finished`].
    Deliver,
    /// Hand the lease back: backing off, paused, no free slot, or being
    /// delivered already (its delivery hands the lease back just before it
    /// reports, so a claim in between can see the key again).
    Release,
}

/// What a refusal pauses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The token is refused (401, or the client suspended itself): all delivery.
    Everything,
    /// One destination (channel id) is refused (403/404 on a create).
    Destination(String),
}

/// What [`Scheduler::finished`] made of an outcome, for logs and health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delivered or set aside. `resumed`: this lifted a refusal pause.
    Delivered { resumed: bool },
    /// Backing off: attempt number and the delay before the next one.
    Retry { attempt: u32, delay: Duration },
    /// The store failed; the key backs off like after a transient failure.
    StoreFailed { attempt: u32, delay: Duration },
    /// Paused `scope` until this instant.
    Paused { scope: Scope, until: Instant },
}

#[derive(Clone, Copy, Debug)]
struct KeyBackoff {
    attempts: u32,
    not_before: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Pause {
    since: Instant,
    until: Instant,
}

#[derive(Clone, Debug)]
struct Flight {
    admitted: Instant,
    destination: String,
}

/// The relay's scheduling state. See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    schedule: ExponentialBackoff,
    jitter: Jitter,
    destinations: Vec<String>,
    in_flight: HashMap<String, Flight>,
    backoffs: HashMap<String, KeyBackoff>,
    /// Keys whose create in this process had an uncertain outcome: when the
    /// first such delivery was admitted (the earliest the nonce was sent).
    uncertain: HashMap<String, Instant>,
    refused_all: Option<Pause>,
    refused: HashMap<String, Pause>,
    store_writable: bool,
    claim_due: bool,
    next_poll: Instant,
    next_stats: Instant,
    next_probe: Instant,
    stop_at: Option<Instant>,
}

/// `now + d`, saturating far in the future instead of panicking.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(now)
}

impl Scheduler {
    /// A scheduler for deliveries to `destinations` (channel ids), starting at `now`.
    pub fn new(
        cfg: SchedulerConfig,
        destinations: Vec<String>,
        jitter: Jitter,
        now: Instant,
    ) -> Self {
        Scheduler {
            schedule: ExponentialBackoff::new(cfg.base_backoff, cfg.max_backoff),
            next_poll: later(now, cfg.poll_interval),
            cfg,
            jitter,
            destinations,
            in_flight: HashMap::new(),
            backoffs: HashMap::new(),
            uncertain: HashMap::new(),
            refused_all: None,
            refused: HashMap::new(),
            store_writable: true,
            claim_due: true,
            next_stats: now,
            next_probe: now,
            stop_at: None,
        }
    }

    /// What to do now.
    pub fn next(&mut self, now: Instant) -> Action {
        if let Some(drain_until) = self.stop_at {
            return Action::Stop { drain_until };
        }
        if now >= self.next_stats {
            self.next_stats = later(now, self.cfg.stats_interval);
            return Action::RefreshStats;
        }
        if !self.store_writable && now >= self.next_probe {
            self.next_probe = later(now, self.cfg.probe_interval);
            return Action::ProbeStore;
        }
        if now >= self.next_poll {
            self.next_poll = later(now, self.cfg.poll_interval);
            self.claim_due = true;
        }
        if std::mem::take(&mut self.claim_due) {
            let budget = self.claim_budget(now);
            if budget > 0 {
                return Action::Claim(budget);
            }
        }
        Action::Wait(self.wake_at(now))
    }

    /// Something may have changed (a new event, a timer): claim again.
    pub fn woke(&mut self) {
        self.claim_due = true;
    }

    /// Whether the store can write, as health knows it. Turning writable
    /// again claims at once.
    pub fn set_store_writable(&mut self, writable: bool) {
        if writable && !self.store_writable {
            self.claim_due = true;
        }
        self.store_writable = writable;
    }

    /// Stop claiming; [`Scheduler::next`] answers [`Action::Stop`] from now on.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stop_at.is_none() {
            self.stop_at = Some(later(now, self.cfg.drain));
        }
    }

    /// Deliveries in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Whether a refusal pause is in force right now (any scope).
    pub fn is_refused(&self, now: Instant) -> bool {
        self.refused_all.is_some_and(|p| p.until > now)
            || self.refused.values().any(|p| p.until > now)
    }

    /// May claimed `key`, bound for `destination`, be delivered now?
    pub fn admit(&mut self, key: &str, destination: &str, now: Instant) -> Admission {
        if self.in_flight.contains_key(key)
            || self.stop_at.is_some()
            || self.paused(now)
            || self.destination_paused(destination, now)
            || self.in_flight.len() >= self.cfg.max_in_flight
            || self.backing_off(key, now)
        {
            return Admission::Release;
        }
        self.in_flight.insert(
            key.to_string(),
            Flight {
                admitted: now,
                destination: destination.to_string(),
            },
        );
        Admission::Deliver
    }

    /// The destinations a claim may go to (store keys), when routing changed
    /// them: claims stop while every one of them is refused.
    pub fn set_destinations(&mut self, destinations: Vec<String>) {
        self.destinations = destinations;
    }

    /// The destinations refused now: a delivery skips them.
    pub fn paused_destinations(&self, now: Instant) -> Vec<String> {
        self.refused
            .iter()
            .filter(|(_, p)| p.until > now)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// The delivery of `key`, still in flight, reached `destinations`: a
    /// refusal of theirs that began before it was admitted is over. Call
    /// before [`Scheduler::finished`].
    pub fn reached(&mut self, key: &str, destinations: &[String]) -> bool {
        let Some(admitted) = self.in_flight.get(key).map(|f| f.admitted) else {
            return false;
        };
        let before = self.refused.len();
        self.refused
            .retain(|d, p| !(destinations.contains(d) && admitted >= p.since));
        self.refused.len() < before
    }

    /// The delivery of `key`, still in flight, sent a create whose outcome
    /// is uncertain. Call before [`Scheduler::finished`].
    pub fn create_uncertain(&mut self, key: &str) {
        if let Some(f) = self.in_flight.get(key) {
            self.uncertain.entry(key.to_string()).or_insert(f.admitted);
        }
    }

    /// Until when a create of `key` may be repeated as is: Discord still
    /// remembers the nonce of the uncertain create this process sent. `None`
    /// (no such create in this process, e.g. after a restart): look it up
    /// first. Measured on the monotonic clock, from the admission of the
    /// delivery that first sent it, so no wall-clock step stretches it.
    pub fn nonce_trusted_until(&self, key: &str) -> Option<Instant> {
        self.uncertain
            .get(key)
            .map(|t| later(*t, self.cfg.nonce_window))
    }

    /// The delivery of `key` ended with `outcome`: free its slot, and back
    /// off, pause or resume accordingly.
    pub fn finished(&mut self, key: &str, outcome: &Outcome, now: Instant) -> Verdict {
        let flight = self.in_flight.remove(key);
        self.claim_due = true;
        match outcome {
            Outcome::Done | Outcome::DeadLettered => {
                self.backoffs.remove(key);
                self.uncertain.remove(key);
                // Fresh queue figures soon after a change.
                self.next_stats = self.next_stats.min(now);
                let mut resumed = false;
                if let Some(f) = flight {
                    // Only a delivery that started after a pause began proves
                    // the refusal is over; one already in flight does not.
                    if self.refused_all.is_some_and(|p| f.admitted >= p.since) {
                        self.refused_all = None;
                        resumed = true;
                    }
                    if self
                        .refused
                        .get(&f.destination)
                        .is_some_and(|p| f.admitted >= p.since)
                    {
                        self.refused.remove(&f.destination);
                        resumed = true;
                    }
                }
                Verdict::Delivered { resumed }
            }
            Outcome::Retry { after, .. } => {
                let (attempt, delay) = self.back_off(key, *after, now);
                Verdict::Retry { attempt, delay }
            }
            Outcome::StoreFailed(_) => {
                self.store_writable = false;
                // The Discord call may have been made already: an immediate
                // retry would repeat it in a tight loop.
                let (attempt, delay) = self.back_off(key, Duration::ZERO, now);
                Verdict::StoreFailed { attempt, delay }
            }
            Outcome::Refused { scope, .. } => {
                let pause = Pause {
                    since: now,
                    until: later(now, self.cfg.refusal_pause),
                };
                match scope {
                    Scope::Everything => self.refused_all = Some(pause),
                    Scope::Destination(d) => {
                        self.refused.insert(d.clone(), pause);
                    }
                }
                Verdict::Paused {
                    scope: scope.clone(),
                    until: pause.until,
                }
            }
        }
    }

    /// No claims at all: the store cannot write, the token is refused, or
    /// every destination is refused.
    fn paused(&self, now: Instant) -> bool {
        !self.store_writable
            || self.refused_all.is_some_and(|p| p.until > now)
            || (!self.destinations.is_empty()
                && self
                    .destinations
                    .iter()
                    .all(|d| self.destination_paused(d, now)))
    }

    fn destination_paused(&self, destination: &str, now: Instant) -> bool {
        self.refused.get(destination).is_some_and(|p| p.until > now)
    }

    fn backing_off(&self, key: &str, now: Instant) -> bool {
        self.backoffs.get(key).is_some_and(|b| b.not_before > now)
    }

    /// Keys to ask the store for: the free slots, plus the keys backing off
    /// (claims come oldest first, so those are handed back and must not
    /// crowd out the others).
    fn claim_budget(&self, now: Instant) -> usize {
        let free = self.cfg.max_in_flight.saturating_sub(self.in_flight.len());
        if free == 0 || self.paused(now) {
            return 0;
        }
        let backing_off = self
            .backoffs
            .iter()
            .filter(|(k, b)| b.not_before > now && !self.in_flight.contains_key(*k))
            .count();
        free + backing_off
    }

    /// The next instant something is due: the poll, a pause or backoff
    /// ending, a store probe.
    fn wake_at(&self, now: Instant) -> Instant {
        let mut at = self.next_poll;
        let pauses = self
            .refused_all
            .iter()
            .chain(self.refused.values())
            .map(|p| p.until);
        let backoffs = self.backoffs.values().map(|b| b.not_before);
        for t in pauses.chain(backoffs).filter(|t| *t > now) {
            at = at.min(t);
        }
        if !self.store_writable {
            at = at.min(self.next_probe);
        }
        at.max(now)
    }

    /// Count a failed attempt for `key` and schedule its next one (no sooner
    /// than `after`); returns the attempt number and the delay.
    fn back_off(&mut self, key: &str, after: Duration, now: Instant) -> (u32, Duration) {
        let b = self.backoffs.entry(key.to_string()).or_insert(KeyBackoff {
            attempts: 0,
            not_before: now,
        });
        b.attempts = b.attempts.saturating_add(1);
        let delay = after.max(self.schedule.delay(b.attempts, self.jitter.sample()));
        b.not_before = later(now, delay);
        (b.attempts, delay)
    }
}

#[cfg(test)]
mod tests;
