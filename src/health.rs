//! One health state for the whole process, written by the parts that know
//! (store, relay/REST, gateway, listener) and read by `GET /health`, the
//! presence task and the systemd watchdog.
//!
//! Two questions are kept apart on purpose:
//! * [`Health::is_alive`]: the process can do its core job (store writable,
//!   listener accepting). Only this gates the systemd watchdog: restarting
//!   cannot fix a bad Discord token, so that must not cause a restart loop.
//! * [`Health::is_healthy`]: alive *and* Discord delivery is not refused
//!   (e.g. 401/403). This drives `/health`'s 200/503 and the bot's presence.
use crate::store::{Stats, Usage};
use serde::Serialize;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::watch;

/// The parts of the process that report into health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The durable store: can it write right now?
    Store,
    /// The webhook listener: bound and accepting?
    Listener,
    /// Discord REST delivery: refused (401/403, invalid-request budget) or fine?
    Discord,
    /// The gateway connection (informational: never makes the process unhealthy).
    Gateway,
}

/// The state of one component: `ok` plus a short human reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    pub ok: bool,
    pub detail: String,
}

impl Status {
    pub fn ok(detail: impl Into<String>) -> Self {
        Status {
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn failed(detail: impl Into<String>) -> Self {
        Status {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// What `GET /health` serialises.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// "ok" or "unhealthy".
    pub status: &'static str,
    pub healthy: bool,
    /// The first reason the process is unhealthy, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub version: &'static str,
    pub uptime_s: u64,
    pub store: Status,
    pub listener: Status,
    pub discord: Status,
    pub gateway: Status,
    /// The store's queue figures as last reported (the store's own type:
    /// health only relays them, so it keeps no copy of their definition).
    pub queue: Stats,
    /// The queue against its bounds; `full` means webhooks get 503.
    pub queue_usage: Usage,
    /// With a routing file: its routes in force, the last reload and its error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingReport>,
}

/// `/health`'s `routing`: the reload state and the events no route matched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RoutingReport {
    pub routes: usize,
    /// When the routes in force were loaded (Unix ms).
    pub reloaded_at_ms: u64,
    /// Why the last reload was refused, until a good one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Events that matched no route since start (not posted).
    pub unmatched: u64,
}

#[derive(Debug)]
struct State {
    store: Status,
    listener: Status,
    discord: Status,
    gateway: Status,
    queue: Stats,
    queue_usage: Usage,
    routing: Option<RoutingReport>,
}

/// Shared health state. Cheap to read; every change bumps a generation
/// counter that [`Health::subscribe`] exposes, so watchers (sd_notify STATUS=,
/// presence) react to changes instead of polling.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    state: Mutex<State>,
    generation: watch::Sender<u64>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        let (generation, _) = watch::channel(0);
        Health {
            started: Instant::now(),
            state: Mutex::new(State {
                store: Status::ok("starting"),
                listener: Status::failed("not bound yet"),
                discord: Status::ok("idle"),
                gateway: Status::ok("off"),
                queue: Stats::default(),
                queue_usage: Usage::default(),
                routing: None,
            }),
            generation,
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut guard = crate::sync::lock(&self.state);
        f(&mut guard)
    }

    /// Record a component's state; wakes subscribers only when it changed.
    pub fn set(&self, component: Component, status: Status) {
        let changed = self.with(|s| {
            let slot = match component {
                Component::Store => &mut s.store,
                Component::Listener => &mut s.listener,
                Component::Discord => &mut s.discord,
                Component::Gateway => &mut s.gateway,
            };
            if *slot == status {
                false
            } else {
                *slot = status;
                true
            }
        });
        if changed {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Record the store's queue figures; wakes subscribers only when they changed.
    pub fn set_queue(&self, queue: Stats) {
        let changed = self.with(|s| std::mem::replace(&mut s.queue, queue) != queue);
        if changed {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Record how full the queue is; wakes subscribers only when it turns
    /// full or stops being full (the figures change with every webhook).
    pub fn set_queue_usage(&self, usage: Usage) {
        let changed =
            self.with(|s| std::mem::replace(&mut s.queue_usage, usage).full != usage.full);
        if changed {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    /// Mark the queue full (an append was just refused), keeping the figures.
    pub fn set_queue_full(&self) {
        let usage = self.with(|s| Usage {
            full: true,
            ..s.queue_usage
        });
        self.set_queue_usage(usage);
    }

    /// Record the routing's reload state (`None`: no routing file).
    pub fn set_routing(&self, reload: Option<crate::routes::live::Reload>) {
        self.with(|s| {
            let unmatched = s.routing.as_ref().map_or(0, |r| r.unmatched);
            s.routing = reload.map(|r| RoutingReport {
                routes: r.routes,
                reloaded_at_ms: r.reloaded_at_ms,
                error: r.error,
                unmatched,
            });
        });
    }

    /// Count an event that matched no route (shown only with a routing file).
    pub fn count_unmatched(&self) {
        self.with(|s| {
            if let Some(r) = &mut s.routing {
                r.unmatched += 1;
            }
        });
    }

    pub fn get(&self, component: Component) -> Status {
        self.with(|s| match component {
            Component::Store => s.store.clone(),
            Component::Listener => s.listener.clone(),
            Component::Discord => s.discord.clone(),
            Component::Gateway => s.gateway.clone(),
        })
    }

    /// Store writable and listener accepting: what the watchdog pings for.
    pub fn is_alive(&self) -> bool {
        self.with(|s| s.store.ok && s.listener.ok)
    }

    /// Alive and Discord delivery not refused: what `/health` and presence report.
    pub fn is_healthy(&self) -> bool {
        self.with(|s| s.store.ok && s.listener.ok && s.discord.ok)
    }

    /// A receiver that changes whenever any part of the state changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn report(&self) -> Report {
        let uptime_s = self.uptime_s();
        self.with(|s| {
            let reason = [
                ("store", &s.store),
                ("listener", &s.listener),
                ("discord", &s.discord),
            ]
            .into_iter()
            .find(|(_, st)| !st.ok)
            .map(|(name, st)| format!("{name}: {}", st.detail));
            let healthy = reason.is_none();
            Report {
                status: if healthy { "ok" } else { "unhealthy" },
                healthy,
                reason,
                version: env!("CARGO_PKG_VERSION"),
                uptime_s,
                store: s.store.clone(),
                listener: s.listener.clone(),
                discord: s.discord.clone(),
                gateway: s.gateway.clone(),
                queue: s.queue,
                queue_usage: s.queue_usage,
                routing: s.routing.clone(),
            }
        })
    }

    /// One line for sd_notify `STATUS=`: queue depth and gateway state.
    pub fn status_line(&self) -> String {
        let r = self.report();
        let mut line = format!(
            "{}; queue {} pending, {} dead; gateway {}",
            r.status, r.queue.pending, r.queue.dead_letters, r.gateway.detail
        );
        if r.queue_usage.full {
            line.push_str("; queue FULL, webhooks refused");
        }
        if let Some(reason) = r.reason {
            line.push_str("; ");
            line.push_str(&reason);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_unhealthy_until_listener_binds() {
        let h = Health::new();
        assert!(!h.is_alive());
        h.set(Component::Listener, Status::ok("127.0.0.1:5000"));
        assert!(h.is_alive() && h.is_healthy());
        let r = h.report();
        assert_eq!(r.status, "ok");
        assert!(r.reason.is_none());
    }

    #[test]
    fn discord_refusal_is_unhealthy_but_alive() {
        let h = Health::new();
        h.set(Component::Listener, Status::ok("bound"));
        h.set(
            Component::Discord,
            Status::failed("401 Unauthorized: bad token"),
        );
        assert!(h.is_alive());
        assert!(!h.is_healthy());
        let r = h.report();
        assert_eq!(
            r.reason.as_deref(),
            Some("discord: 401 Unauthorized: bad token")
        );
        assert!(h.status_line().contains("401"));
    }

    #[test]
    fn gateway_never_makes_it_unhealthy() {
        let h = Health::new();
        h.set(Component::Listener, Status::ok("bound"));
        h.set(
            Component::Gateway,
            Status::failed("4004 authentication failed"),
        );
        assert!(h.is_healthy());
    }

    #[test]
    fn subscribers_wake_only_on_change() {
        let h = Health::new();
        let mut rx = h.subscribe();
        rx.borrow_and_update();
        h.set(Component::Store, Status::ok("starting")); // unchanged
        assert!(!rx.has_changed().unwrap());
        h.set_queue(Stats {
            pending: 3,
            dead_letters: 0,
        });
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        h.set_queue(Stats {
            pending: 3,
            dead_letters: 0,
        });
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn a_full_queue_shows_in_the_report_and_the_status_line() {
        let h = Health::new();
        let mut rx = h.subscribe();
        rx.borrow_and_update();
        h.set_queue_full();
        assert!(rx.has_changed().unwrap());
        assert!(h.report().queue_usage.full);
        assert!(
            h.status_line().contains("queue FULL"),
            "{}",
            h.status_line()
        );
        rx.borrow_and_update();
        h.set_queue_usage(Usage {
            events: 1,
            bytes: 10,
            full: true,
        });
        assert!(
            !rx.has_changed().unwrap(),
            "figures alone do not wake watchers"
        );
        h.set_queue_usage(Usage {
            events: 0,
            bytes: 0,
            full: false,
        });
        assert!(!h.status_line().contains("FULL"));
    }
}
