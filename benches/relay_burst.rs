//! Relay burst benchmark: how a burst of build updates drains into Discord
//! under Discord's per-channel rate limit (the scenario).
//!
//! 100 builds × 10 updates (created, 8 × running with changing step states,
//! final) are appended to the embedded store as fast as it commits them,
//! interleaved like concurrent builds, while the real relay and REST client
//! deliver them to the fake Discord on loopback, which emulates a limit of
//! 5 calls per 5 s per channel. Production relay settings. Prints a Markdown
//! table: Discord calls in total and per build, time to drain, 429s.
//!
//! Run: `cargo bench --bench relay_burst` (≥ 100 s at full size: 100 creates
//! at 1 call/s). Env: `BURST_BUILDS` (100), `BURST_UPDATES` (10, ≥ 2),
//! `BURST_LIMIT` (5 calls) per `BURST_WINDOW_S` (5 s); `BURST_TRACE=1` lists
//! every call the fake received (time, route, status) on stderr.
#[path = "../tests/support/mod.rs"]
mod support;

use drone_discord::discord::rest::Rest;
use drone_discord::health::Health;
use drone_discord::relay::{self, RelayConfig};
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::{legacy_build_key, now_ms, NewEvent, Store};
use drone_discord::{drone, render, shutdown};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::bench_env::env_or;
use support::builds::build_update;
use support::fake_discord::{EmulatedLimit, FakeDiscord};
use support::fixtures::fixture_json;
use tokio::sync::Notify;

const CHANNEL: &str = "100000000000000001";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("relay burst benchmark: skipped (not run by `cargo test`; run `cargo bench --bench relay_burst`)");
        return;
    }
    let builds = env_or("BURST_BUILDS", 100).max(1) as i64;
    let updates = env_or("BURST_UPDATES", 10).max(2) as usize;
    let limit = env_or("BURST_LIMIT", 5).max(1) as u32;
    let window = Duration::from_secs(env_or("BURST_WINDOW_S", 5).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(builds, updates, limit, window));
}

async fn run(builds: i64, updates: usize, limit: u32, window: Duration) {
    let fake = FakeDiscord::start().await;
    fake.set_rate_limit(Some(EmulatedLimit { limit, window }));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
    let rest = Rest::new(fake.rest_config()).expect("rest");
    let (health, wake) = (Arc::new(Health::new()), Arc::new(Notify::new()));
    let (trigger, stop) = shutdown::channel();
    let relay = tokio::spawn(relay::run(
        RelayConfig::new(CHANNEL),
        store.clone(),
        Arc::new(rest),
        health,
        wake.clone(),
        stop,
    ));

    let template_created = fixture_json("build_created.json");
    let template_updated = fixture_json("build_updated.json");
    let finals = ["success", "failure", "killed"];
    let last_body = |id: i64| {
        body(
            &template_updated,
            id,
            updates - 1,
            updates,
            finals[(id % 3) as usize],
        )
    };

    let started = Instant::now();
    for n in 0..updates {
        for id in 1..=builds {
            let (status, action, tpl) = match n {
                0 => ("pending", "created", &template_created),
                n if n + 1 == updates => (finals[(id % 3) as usize], "updated", &template_updated),
                _ => ("running", "updated", &template_updated),
            };
            let ev = NewEvent {
                key: Some(legacy_build_key(id)),
                event: "build".into(),
                action: action.into(),
                received_ms: now_ms(),
                replay_key: None,
                body: body(tpl, id, n, updates, status),
            };
            store.append(ev).await.expect("append");
            wake.notify_one();
        }
    }
    let queued = started.elapsed();

    // Drained: nothing pending and every build's message shows its final state.
    let wanted: HashMap<String, Value> = (1..=builds)
        .map(|id| {
            let hook = drone::parse(&last_body(id)).expect("parse");
            let host = hook
                .system
                .as_ref()
                .map(|s| s.host.clone())
                .unwrap_or_default();
            let nonce = relay::nonce_for(&host, &legacy_build_key(id), CHANNEL, 0);
            (nonce, render::render(&hook).expect("render"))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3600);
    loop {
        let pending = store.stats().await.map(|s| s.pending).unwrap_or(u64::MAX);
        if pending == 0 && all_final(&fake, &wanted) {
            break;
        }
        assert!(Instant::now() < deadline, "not drained after an hour");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = started.elapsed();
    trigger.fire();
    let _ = relay.await;

    // Attribute every call to a build: creates by nonce, edits by message id.
    let owner: HashMap<String, String> = fake
        .messages()
        .into_iter()
        .filter_map(|(id, m)| Some((id, m["nonce"].as_str()?.to_string())))
        .collect();
    let mut per_build: HashMap<String, usize> = HashMap::new();
    let calls = fake.calls();
    for c in &calls {
        let b = match c.method.as_str() {
            "POST" => c
                .body
                .as_ref()
                .and_then(|b| b["nonce"].as_str())
                .map(str::to_string),
            "PATCH" => c
                .path
                .rsplit('/')
                .next()
                .and_then(|m| owner.get(m))
                .cloned(),
            _ => None,
        };
        if let Some(b) = b {
            *per_build.entry(b).or_default() += 1;
        }
    }
    if std::env::var_os("BURST_TRACE").is_some() {
        for c in &calls {
            let t = c.at.duration_since(started).as_secs_f64();
            eprintln!("{t:8.3}s {} {} → {}", c.method, c.path, c.status);
        }
    }
    let events = builds as usize * updates;
    let max = per_build.values().copied().max().unwrap_or(0);
    let mean = per_build.values().sum::<usize>() as f64 / builds as f64;
    let messages = fake.messages().len();

    println!(
        "drone-discord relay burst: {builds} builds × {updates} updates, fake Discord limit {limit} calls / {} s per channel, production relay settings",
        window.as_secs()
    );
    println!("| events | builds | messages | Discord calls | calls/build mean | calls/build max | 429s | queued in s | drained in s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {events} | {builds} | {messages} | {} | {mean:.2} | {max} | {} | {:.1} | {:.1} |",
        calls.len(),
        fake.count_status(429),
        queued.as_secs_f64(),
        drained.as_secs_f64()
    );
    // The floor: the fewest calls that show every build's final state is one
    // create per build, and the fewest seconds are those calls at the limit.
    let floor_calls = builds as f64;
    let floor_s = (floor_calls / f64::from(limit)).ceil() * window.as_secs_f64();
    println!(
        "floor: {floor_calls:.0} calls (one create per build), {floor_s:.0} s at {limit} calls / {} s; ratio to it: calls {:.2}, drain time {:.2}",
        window.as_secs(),
        calls.len() as f64 / floor_calls,
        drained.as_secs_f64() / floor_s
    );
}

/// Update `n` of `updates` for build `id`: step states advance with `n`.
fn body(template: &Value, id: i64, n: usize, updates: usize, status: &str) -> Vec<u8> {
    build_update(template, id, n, status, |steps| n * steps.max(1) / updates)
}

fn all_final(fake: &FakeDiscord, wanted: &HashMap<String, Value>) -> bool {
    let msgs = fake.messages();
    let mut shown = 0;
    for m in msgs.values() {
        let Some(want) = m["nonce"].as_str().and_then(|n| wanted.get(n)) else {
            continue;
        };
        let ok = want
            .as_object()
            .is_some_and(|w| w.iter().all(|(k, v)| m.get(k) == Some(v)));
        if !ok {
            return false;
        }
        shown += 1;
    }
    shown == wanted.len()
}
