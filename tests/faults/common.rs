//! What every fault scenario does the same way: a tokio runtime for the
//! fakes, the binary's environment against the fake Discord, polling, and
//! waiting for a burst to be delivered.
use crate::support::binary::{start, Service};
use crate::support::credentials::{CHANNEL, TOKEN};
use crate::support::fake_discord::FakeDiscord;
use crate::support::faults::checker::{delivered, undelivered};
use crate::support::faults::drone::Drone;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Generous wait for a burst to drain on a loaded 2-core machine.
pub const DRAIN: Duration = Duration::from_secs(300);
/// Generous wait for one reaction of the service.
pub const WAIT: Duration = Duration::from_secs(90);
/// Deliveries the relay runs at once (`RelayConfig::max_in_flight`): at
/// most this many calls are in flight when the process dies.
pub const IN_FLIGHT: usize = 8;

/// A small runtime for the fakes; the scenario itself blocks on threads.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The binary's environment against `fake` (told to accept the binary's
/// test token), without a gateway unless the scenario adds one.
pub fn service_env(fake: &FakeDiscord) -> Vec<(String, String)> {
    fake.set_token(TOKEN);
    vec![
        ("DISCORD_TOKEN".into(), TOKEN.into()),
        ("DISCORD_CHANNEL_ID".into(), CHANNEL.into()),
        ("DISCORD_API_BASE_URL".into(), fake.base_url()),
        ("NO_GATEWAY".into(), "true".into()),
        ("HEALTHCHECK_INTERVAL".into(), "1".into()),
    ]
}

/// `serve` with `env`, logging at info (debug logs of a 1 000-event burst
/// only cost time here).
pub fn start_service(state: &Path, env: &[(String, String)]) -> Service {
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
        env.push(("RUST_LOG", "info"));
    }
    start(state, &[], &env)
}

pub fn health(svc: &Service) -> (u16, Value) {
    let (status, body) = svc.get("/health");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Poll `cond` every 50 ms; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until every event was answered 200, every build shows its final
/// update and the service's queue is empty.
pub fn wait_delivered(fake: &FakeDiscord, drone: &Drone, svc: &Service) {
    let deadline = Instant::now() + DRAIN;
    while !delivered(fake, drone) {
        if Instant::now() > deadline {
            let (_, queue) = svc.get("/queue");
            panic!(
                "timed out waiting for every build shown in its final state; missing: {:?}\n\
                 health: {}\nqueue: {queue}\nlog tail:\n{}",
                undelivered(fake, drone),
                health(svc).1,
                tail(&svc.log_text(), 60)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for("an empty queue", WAIT, || {
        health(svc).1["queue"]["pending"] == 0
    });
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
