//! Delivery end to end: the real relay and REST client (or the real binary)
//! against the fake Discord over loopback HTTP and TLS. Proves one message
//! per build edited in event order, the failure policy (429s, 5xx, refused
//! connections, 401, a deleted message, an unknown channel, a failing store),
//! no duplicate after a SIGKILL mid-burst or a lost create answer (nonce),
//! no starvation by builds that keep failing, and coalescing under an
//! emulated per-channel rate limit.
//!
//! Waits are event-based (the fake's records, the store's queue) with
//! generous timeouts. Timing assertions are only lower bounds ("waited at
//! least as long as Discord said"); "no storm" checks cap a call count over
//! a period, which a slow machine can only make smaller.
mod support;

use support::wait::wait_for;

use drone_discord::discord::rest::{Rest, RestConfig, RestTuning};
use drone_discord::health::{Component, Health, Status};
use drone_discord::relay::{self, RelayConfig};
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::{self, legacy_build_key as build_key, NewEvent, Store};
use drone_discord::{drone, render, shutdown};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::builds::build_update;
use support::fake_discord::{Canned, EmulatedLimit, FakeDiscord, Fault};
use support::fixtures::fixture_json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

const CHANNEL: &str = support::credentials::CHANNEL;
const LONG: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Events

/// Update number `n` of build `id` with `status`, from the real fixtures:
/// `build_created.json` for pending, `build_updated.json` for running, and
/// the matching final fixture otherwise. The commit message carries the
/// update number so every version of a message can be told apart.
fn build_body(id: i64, n: usize, status: &str) -> Vec<u8> {
    let name = match status {
        "pending" => "build_created.json",
        "running" => "build_updated.json",
        "success" => "build_success.json",
        "failure" => "build_failure.json",
        "killed" => "build_killed.json",
        other => panic!("no fixture for {other}"),
    };
    build_update(&fixture_json(name), id, n, status, |_| n % 3)
}

/// The status sequence of a build with `updates` events ending in `last`.
fn statuses(updates: usize, last: &str) -> Vec<&str> {
    let mut s = vec!["pending"];
    s.extend(std::iter::repeat("running").take(updates.saturating_sub(2)));
    s.push(last);
    s
}

fn new_event(id: i64, body: Vec<u8>) -> NewEvent {
    let action = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["action"].as_str().map(str::to_string))
        .unwrap_or_default();
    NewEvent {
        key: Some(build_key(id)),
        event: "build".into(),
        action,
        received_ms: store::now_ms(),
        replay_key: None,
        body,
    }
}

/// The update number shown in a message version (from its description).
fn update_no(msg: &Value) -> Option<usize> {
    let d = msg["embeds"][0]["description"].as_str()?;
    d.rsplit("update ").next()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------
// What the fake saw

/// The Drone server of the fixtures (their `system.host`).
const HOST: &str = "drone.kiwi-labs.net";

/// The nonce the relay uses for a build's first create.
fn nonce(id: i64) -> String {
    relay::nonce_for(HOST, &build_key(id), CHANNEL, 0)
}

/// The build whose first create carries nonce `n` (nonces are hashes, so
/// this looks them up among the build ids these tests use, under either key).
fn build_of_nonce(n: &str) -> Option<i64> {
    static BY_NONCE: std::sync::OnceLock<HashMap<String, i64>> = std::sync::OnceLock::new();
    BY_NONCE
        .get_or_init(|| {
            // Events queued here carry the legacy key; the binary's ingest
            // keys a build by its server (the fixtures' repo is 35).
            (0..=1000)
                .flat_map(|id| {
                    let served =
                        relay::nonce_for(HOST, &store::build_key(HOST, 35, id), CHANNEL, 0);
                    [(nonce(id), id), (served, id)]
                })
                .collect()
        })
        .get(n)
        .copied()
}

/// Build id → ids of the messages created for it (found by nonce).
fn messages_by_build(fake: &FakeDiscord) -> HashMap<i64, Vec<String>> {
    let mut out: HashMap<i64, Vec<String>> = HashMap::new();
    for (id, m) in fake.messages() {
        let n = m["nonce"].as_str().unwrap_or_default();
        if let Some(b) = build_of_nonce(n) {
            out.entry(b).or_default().push(id);
        }
    }
    out
}

/// Whether build `id` has exactly one message and it shows `last` rendered.
fn shows(fake: &FakeDiscord, id: i64, last: &[u8]) -> bool {
    let by = messages_by_build(fake);
    let Some([mid]) = by.get(&id).map(Vec::as_slice) else {
        return false;
    };
    let Some(msg) = fake.message(mid) else {
        return false;
    };
    matches_render(&msg, last).is_ok()
}

/// Compare a stored message with what `render` makes of `body`.
fn matches_render(msg: &Value, body: &[u8]) -> Result<(), String> {
    let hook = drone::parse(body).map_err(|e| e.to_string())?;
    let want = render::render(&hook).ok_or("no rendering")?;
    let obj = want.as_object().ok_or("render is not an object")?;
    for (k, v) in obj {
        if msg.get(k) != Some(v) {
            return Err(format!(
                "field {k}: want {v}, have {}",
                msg.get(k).unwrap_or(&Value::Null)
            ));
        }
    }
    Ok(())
}

/// Calls that reached a handler (2xx), per build: (creates, edits).
fn calls_per_build(fake: &FakeDiscord) -> BTreeMap<i64, (usize, usize)> {
    let by_msg: HashMap<String, i64> = messages_by_build(fake)
        .into_iter()
        .flat_map(|(b, ids)| ids.into_iter().map(move |m| (m, b)))
        .collect();
    let mut out: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for c in fake.calls() {
        if c.status != 200 {
            continue;
        }
        if c.method == "POST" {
            if let Some(b) = c
                .body
                .as_ref()
                .and_then(|b| b["nonce"].as_str())
                .and_then(build_of_nonce)
            {
                out.entry(b).or_default().0 += 1;
            }
        } else if c.method == "PATCH" {
            if let Some(b) = c.path.rsplit('/').next().and_then(|m| by_msg.get(m)) {
                out.entry(*b).or_default().1 += 1;
            }
        }
    }
    out
}

/// Every version of a build's message shows a strictly later update than the one before.
fn assert_history_in_order(fake: &FakeDiscord, id: i64, last_n: usize) {
    let by = messages_by_build(fake);
    let mids = by
        .get(&id)
        .unwrap_or_else(|| panic!("build {id} has no message"));
    assert_eq!(mids.len(), 1, "build {id}: one message, got {mids:?}");
    let seen: Vec<Option<usize>> = fake.history(&mids[0]).iter().map(update_no).collect();
    assert!(
        seen.iter().all(Option::is_some),
        "build {id}: unreadable versions {seen:?}"
    );
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "build {id}: versions out of event order: {seen:?}"
    );
    assert_eq!(
        seen.last().copied().flatten(),
        Some(last_n),
        "build {id}: final version {seen:?}"
    );
}

// ---------------------------------------------------------------------------
// In-process rig: embedded store + real relay + real REST client → fake

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<EmbeddedStore>,
    fake: FakeDiscord,
    health: Arc<Health>,
    wake: Arc<Notify>,
    trigger: Option<shutdown::Trigger>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn relay_config() -> RelayConfig {
    let mut c = RelayConfig::new(CHANNEL);
    c.base_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(500);
    c.poll_interval = Duration::from_millis(100);
    c
}

impl Rig {
    async fn start(fake: FakeDiscord) -> Rig {
        Self::start_with(fake, fake_rest_config).await
    }

    async fn start_with(
        fake: FakeDiscord,
        rest_cfg: impl FnOnce(&FakeDiscord) -> RestConfig,
    ) -> Rig {
        let rest = Rest::new(rest_cfg(&fake)).expect("rest client");
        Self::start_full(fake, rest, relay_config()).await
    }

    async fn start_full(fake: FakeDiscord, rest: Rest, cfg: RelayConfig) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EmbeddedStore::open(dir.path()).expect("store"));
        let health = Arc::new(Health::new());
        health.set(Component::Listener, Status::ok("test"));
        health.set(Component::Store, Status::ok("test"));
        let wake = Arc::new(Notify::new());
        let (trigger, stop) = shutdown::channel();
        let task = tokio::spawn(relay::run(
            cfg,
            store.clone(),
            Arc::new(rest),
            health.clone(),
            wake.clone(),
            stop,
        ));
        Rig {
            _dir: dir,
            store,
            fake,
            health,
            wake,
            trigger: Some(trigger),
            task: Some(task),
        }
    }

    async fn push(&self, id: i64, body: Vec<u8>) {
        self.store
            .append(new_event(id, body))
            .await
            .expect("append");
        self.wake.notify_one();
    }

    async fn pending(&self) -> u64 {
        self.store.stats().await.expect("stats").pending
    }

    /// Wait until nothing is pending (or fail with what the fake saw).
    async fn drained(&self) {
        let deadline = Instant::now() + LONG;
        while self.pending().await > 0 {
            assert!(
                Instant::now() < deadline,
                "queue never drained; {} calls",
                self.fake.calls().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) -> Self {
        if let Some(t) = self.trigger.take() {
            t.fire();
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(LONG, task)
                .await
                .expect("relay stops")
                .expect("relay task");
        }
        self
    }
}

fn fake_rest_config(fake: &FakeDiscord) -> RestConfig {
    fake.rest_config()
}

// ---------------------------------------------------------------------------
// 1. Fixture sequences: one POST, then PATCHes of the same message.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_sequences_post_once_then_patch_the_same_message_over_tls() {
    let fake = FakeDiscord::start_tls().await;
    assert!(fake.base_url().starts_with("https://"));
    let rig = Rig::start(fake).await;
    let finals = [(1i64, "success"), (2, "failure"), (3, "killed")];
    let steps = ["pending", "running", "final"];
    for (n, step) in steps.iter().enumerate() {
        for (id, last) in finals {
            let status = if *step == "final" { last } else { step };
            rig.push(id, build_body(id, n, status)).await;
        }
        // One step at a time, so every state is sent (no coalescing).
        rig.drained().await;
    }
    let rig = rig.stop().await;
    let fake = &rig.fake;
    assert_eq!(
        fake.count("POST /channels/{id}/messages"),
        3,
        "{:?}",
        fake.calls()
    );
    assert_eq!(fake.count("PATCH /channels/{id}/messages/{id}"), 6);
    for (id, last) in finals {
        let by = messages_by_build(fake);
        let mid = &by[&id][0];
        let patches: Vec<_> = fake
            .calls()
            .into_iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with(&format!("/{mid}")))
            .collect();
        assert_eq!(patches.len(), 2, "build {id}");
        assert!(patches
            .iter()
            .all(|c| c.path == format!("/channels/{CHANNEL}/messages/{mid}")));
        // The create carries the nonce; edits never do.
        let post = fake.calls().into_iter().find(|c| {
            c.method == "POST" && c.body.as_ref().is_some_and(|b| b["nonce"] == nonce(id))
        });
        assert_eq!(
            post.and_then(|c| c.body)
                .map(|b| b["enforce_nonce"].clone()),
            Some(Value::Bool(true))
        );
        assert!(patches
            .iter()
            .all(|c| c.body.as_ref().is_some_and(|b| b.get("nonce").is_none())));
        assert_history_in_order(fake, id, 2);
        let msg = fake.message(mid).expect("message");
        matches_render(&msg, &build_body(id, 2, last))
            .unwrap_or_else(|e| panic!("build {id}: {e}"));
        let stored = rig
            .store
            .message(&build_key(id), &store::channel_dest(CHANNEL))
            .await
            .expect("store")
            .expect("message remembered");
        assert_eq!(
            (stored.message_id.as_str(), stored.status.as_str()),
            (mid.as_str(), last)
        );
    }
    assert!(rig.health.report().healthy);
}

// ---------------------------------------------------------------------------
// 2. Rate limits: waits as told, nothing dropped.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_and_nothing_is_dropped() {
    let fake = FakeDiscord::start().await;
    // A route 429 with retry_after 1 s on the first create.
    fake.push_for("POST", "/channels/", 1, Canned::rate_limited(1.0, false));
    let rig = Rig::start(fake).await;
    rig.push(1, build_body(1, 0, "pending")).await;
    rig.drained().await;
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 2, "one 429, one retry: {calls:?}");
    assert_eq!((calls[0].status, calls[1].status), (429, 200));
    let waited = calls[1].at.duration_since(calls[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, told 1 s"
    );

    // A global 429 on the next call, whatever it is.
    rig.fake.push(Canned::rate_limited(0.8, true));
    rig.push(1, build_body(1, 1, "running")).await;
    rig.drained().await;
    let calls = rig.fake.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert_eq!((calls[2].status, calls[3].status), (429, 200));
    let waited = calls[3].at.duration_since(calls[2].at);
    assert!(
        waited >= Duration::from_millis(750),
        "retried after {waited:?}, told 0.8 s globally"
    );

    // Bucket exhaustion: 2 calls per second per channel, 6 builds × 3 updates.
    rig.fake.set_rate_limit(Some(EmulatedLimit {
        limit: 2,
        window: Duration::from_secs(1),
    }));
    for n in 0..3 {
        for id in 10..16 {
            rig.push(id, build_body(id, n, statuses(3, "success")[n]))
                .await;
        }
    }
    rig.push(1, build_body(1, 2, "failure")).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    for id in 10..16 {
        assert!(
            shows(fake, id, &build_body(id, 2, "success")),
            "build {id} not final: {:?}",
            messages_by_build(fake)
        );
    }
    assert!(shows(fake, 1, &build_body(1, 2, "failure")));
    assert_eq!(rig.store.stats().await.expect("stats").dead_letters, 0);
    for id in 10..16 {
        assert_history_in_order(fake, id, 2);
    }
    // The client reads X-RateLimit-Remaining/Reset-After and waits on its
    // own; a 429 only happens while it learns that POST and PATCH share the
    // channel's bucket (one per route at most, with some slack).
    let limited = fake
        .calls()
        .iter()
        .skip(4)
        .filter(|c| c.status == 429)
        .count();
    assert!(
        limited <= 4,
        "{limited} × 429 under a limit the client was told about"
    );
}

// ---------------------------------------------------------------------------
// 3. Outage, then recovery: everything delivered, in order.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_then_recovery_delivers_every_build_in_event_order() {
    let fake = FakeDiscord::start().await;
    let rig = Rig::start(fake).await;
    let builds = 1..=4i64;
    for id in builds.clone() {
        rig.push(id, build_body(id, 0, "pending")).await;
    }
    rig.drained().await;
    let before = rig.fake.calls().len();
    assert_eq!(before, 4);

    // Down: connections dropped for 2 s, then three 500s and three 503s.
    rig.fake.refuse_for(Duration::from_secs(2));
    rig.fake.push_n(3, Canned::status(500));
    rig.fake.push_n(3, Canned::status(503));
    for n in 1..=5 {
        for id in builds.clone() {
            rig.push(id, build_body(id, n, "running")).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    for id in builds.clone() {
        rig.push(
            id,
            build_body(id, 6, if id % 2 == 0 { "success" } else { "failure" }),
        )
        .await;
    }
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    for id in builds {
        assert_history_in_order(fake, id, 6);
        let last = build_body(id, 6, if id % 2 == 0 { "success" } else { "failure" });
        assert!(shows(fake, id, &last), "build {id} not in its final state");
    }
    assert_eq!(
        fake.count_status(500),
        3,
        "the scripted 500s were all served"
    );
    assert_eq!(fake.count_status(503), 3);
    assert!(fake.connections() > 1, "the outage forced reconnects");
    assert_eq!(rig.store.stats().await.expect("stats").dead_letters, 0);
    assert!(rig.health.report().healthy, "{:?}", rig.health.report());
}

// ---------------------------------------------------------------------------
// 3a. Builds that keep failing must not starve the others.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_that_keep_failing_do_not_starve_other_builds() {
    let fake = FakeDiscord::start().await;
    let rig = Rig::start(fake).await;
    let stuck = 1..=8i64; // as many as the relay delivers at once
    for id in stuck.clone() {
        rig.push(id, build_body(id, 0, "pending")).await;
    }
    rig.drained().await;
    // Every edit of these messages fails from now on (say, Discord's 30046
    // edit limit for old messages, or a message-specific 5xx).
    for mid in rig.fake.message_ids() {
        rig.fake.push_for(
            "PATCH",
            &format!("/channels/{CHANNEL}/messages/{mid}"),
            1_000_000,
            Canned::status(500),
        );
    }
    for id in stuck.clone() {
        rig.push(id, build_body(id, 1, "running")).await;
    }
    // Let them fail a few times each, then a new build arrives.
    assert!(
        rig.fake
            .wait_until(LONG, |f| f.count_status(500) >= 16)
            .await
    );
    rig.push(100, build_body(100, 0, "pending")).await;
    let shown = rig
        .fake
        .wait_until(Duration::from_secs(60), |f| {
            shows(f, 100, &build_body(100, 0, "pending"))
        })
        .await;
    let failures = rig.fake.count_status(500);
    let rig = rig.stop().await;
    assert!(
        shown,
        "build 100 never delivered while 8 other builds kept failing ({failures} × 500)"
    );
    assert_eq!(
        rig.store.stats().await.expect("stats").pending,
        8,
        "the stuck ones stay queued"
    );
}

// ---------------------------------------------------------------------------
// 3d. The store fails after Discord said yes: back off, don't hammer Discord.

/// The embedded store, except that `complete` fails while `failing` is set
/// (a full disk right after the Discord call).
struct FlakyStore {
    inner: EmbeddedStore,
    failing: std::sync::atomic::AtomicBool,
}

impl Store for FlakyStore {
    async fn append(&self, ev: NewEvent) -> store::Result<store::Appended> {
        self.inner.append(ev).await
    }
    async fn claim(
        &self,
        owner: &str,
        lease: Duration,
        max_keys: usize,
    ) -> store::Result<Vec<store::Claim>> {
        self.inner.claim(owner, lease, max_keys).await
    }
    async fn complete(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: store::Seq,
        done: store::Completion,
    ) -> store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(store::StoreError::Unavailable("disk full (test)".into()));
        }
        self.inner.complete(key, owner, token, upto, done).await
    }
    async fn release(&self, key: &str, owner: &str, token: u64) -> store::Result<()> {
        self.inner.release(key, owner, token).await
    }
    async fn renew(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        lease: Duration,
    ) -> store::Result<()> {
        self.inner.renew(key, owner, token, lease).await
    }
    async fn dead_letter(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: store::Seq,
        reason: &str,
        now_ms: u64,
    ) -> store::Result<()> {
        self.inner
            .dead_letter(key, owner, token, upto, reason, now_ms)
            .await
    }
    async fn message(&self, key: &str, dest: &str) -> store::Result<Option<store::MessageRef>> {
        self.inner.message(key, dest).await
    }
    async fn messages(&self, key: &str) -> store::Result<Vec<(String, store::MessageRef)>> {
        self.inner.messages(key).await
    }
    async fn put_message(
        &self,
        key: &str,
        dest: &str,
        owner: &str,
        token: u64,
        message: store::MessageRef,
    ) -> store::Result<()> {
        self.inner
            .put_message(key, dest, owner, token, message)
            .await
    }
    async fn import_message(
        &self,
        key: &str,
        dest: &str,
        message: store::MessageRef,
    ) -> store::Result<bool> {
        self.inner.import_message(key, dest, message).await
    }
    async fn outcome(&self, change_key: &str) -> store::Result<Option<store::OutcomeRecord>> {
        self.inner.outcome(change_key).await
    }
    async fn pending(&self, limit: usize) -> store::Result<Vec<store::Event>> {
        self.inner.pending(limit).await
    }
    async fn dead_letters(&self, limit: usize) -> store::Result<Vec<store::DeadLetter>> {
        self.inner.dead_letters(limit).await
    }
    async fn retry_dead(&self, which: store::DeadSelection) -> store::Result<u64> {
        self.inner.retry_dead(which).await
    }
    async fn purge_dead(&self, which: store::DeadSelection) -> store::Result<u64> {
        self.inner.purge_dead(which).await
    }
    async fn stats(&self) -> store::Result<store::Stats> {
        self.inner.stats().await
    }
    async fn usage(&self) -> store::Result<store::Usage> {
        self.inner.usage().await
    }
    async fn probe(&self) -> store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(store::StoreError::Unavailable("injected: disk full".into()));
        }
        self.inner.probe().await
    }
}

/// A relay against `fake` over a store that fails (writes and probe) until
/// `failing` is cleared; `health` is the relay's health state.
struct FlakyRig {
    _dir: tempfile::TempDir,
    store: Arc<FlakyStore>,
    wake: Arc<Notify>,
    trigger: shutdown::Trigger,
    relay: tokio::task::JoinHandle<()>,
}

fn flaky_rig(fake: &FakeDiscord, health: Arc<Health>) -> FlakyRig {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FlakyStore {
        inner: EmbeddedStore::open(dir.path()).expect("store"),
        failing: std::sync::atomic::AtomicBool::new(true),
    });
    let wake = Arc::new(Notify::new());
    let (trigger, stop) = shutdown::channel();
    let rest = Rest::new(fake.rest_config()).expect("rest");
    let relay = tokio::spawn(relay::run(
        relay_config(),
        store.clone(),
        Arc::new(rest),
        health,
        wake.clone(),
        stop,
    ));
    FlakyRig {
        _dir: dir,
        store,
        wake,
        trigger,
        relay,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_after_delivery_back_off_instead_of_hammering_discord() {
    let fake = FakeDiscord::start().await;
    let health = Arc::new(Health::new());
    let FlakyRig {
        _dir,
        store,
        wake,
        trigger,
        relay,
    } = flaky_rig(&fake, health.clone());
    store
        .append(new_event(1, build_body(1, 0, "pending")))
        .await
        .expect("append");
    wake.notify_one();
    assert!(fake.wait_for_calls(1, LONG).await);
    // Two seconds of a store that cannot complete: a few retries, not a storm.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = fake.calls().len();
    assert!(!health.get(Component::Store).ok, "health names the store");
    store.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + LONG;
    while store.stats().await.expect("stats").pending > 0 {
        assert!(Instant::now() < deadline, "never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.fire();
    tokio::time::timeout(LONG, relay)
        .await
        .expect("relay stops")
        .expect("relay task");
    assert!(
        during <= 20,
        "{during} Discord calls in 2 s while the store failed: retries must back off"
    );
    assert_eq!(fake.messages().len(), 1, "still one message");
    assert!(shows(&fake, 1, &build_body(1, 0, "pending")));
}

// ---------------------------------------------------------------------------
// 3b. Someone deleted the message: a fresh one, and later edits follow it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_message_is_replaced_and_later_edits_go_to_the_new_one() {
    let fake = FakeDiscord::start().await;
    let rig = Rig::start(fake).await;
    rig.push(9, build_body(9, 0, "pending")).await;
    rig.drained().await;
    let first = rig.fake.message_ids();
    assert_eq!(first.len(), 1);
    // Discord's answer for an edit of a deleted message.
    rig.fake.push_for(
        "PATCH",
        "/channels/",
        1,
        Canned::json(
            404,
            serde_json::json!({ "message": "Unknown Message", "code": 10008 }),
        ),
    );
    rig.push(9, build_body(9, 1, "running")).await;
    rig.drained().await;
    rig.push(9, build_body(9, 2, "success")).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    let ids = fake.message_ids();
    assert_eq!(ids.len(), 2, "one fresh message: {:?}", fake.calls());
    let fresh = &ids[1];
    let stored = rig
        .store
        .message(&build_key(9), &store::channel_dest(CHANNEL))
        .await
        .expect("store")
        .expect("message");
    assert_eq!(
        &stored.message_id, fresh,
        "the store follows the fresh message"
    );
    let nonce_fresh = fake
        .message(fresh)
        .map(|m| m["nonce"].clone())
        .unwrap_or_default();
    assert!(
        nonce_fresh
            .as_str()
            .is_some_and(|n| n != nonce(9) && n.len() <= 25),
        "{nonce_fresh}"
    );
    let last = fake.calls().last().cloned().expect("calls");
    assert_eq!(
        (last.method.as_str(), last.path.ends_with(fresh.as_str())),
        ("PATCH", true)
    );
    let msg = fake.message(fresh).expect("fresh message");
    matches_render(&msg, &build_body(9, 2, "success")).unwrap_or_else(|e| panic!("{e}"));
    let seen: Vec<_> = fake.history(fresh).iter().map(update_no).collect();
    assert_eq!(seen, vec![Some(1), Some(2)]);
}

// ---------------------------------------------------------------------------
// 3e. Discord refuses one message's edit (403): that build only.

/// Discord's answer when the bot may no longer edit a message (it lost the
/// old message's channel).
fn missing_access() -> Canned {
    Canned::json(
        403,
        serde_json::json!({ "message": "Missing Access", "code": 50001 }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_refused_with_403_posts_a_fresh_message_and_other_builds_keep_flowing() {
    let fake = FakeDiscord::start().await;
    let rig = Rig::start(fake).await;
    let builds = 1..=3i64;
    for id in builds.clone() {
        rig.push(id, build_body(id, 0, "pending")).await;
    }
    rig.drained().await;
    let refused = messages_by_build(&rig.fake)[&2][0].clone();
    // Every edit of build 2's message is refused from now on.
    rig.fake.push_for(
        "PATCH",
        &format!("/channels/{CHANNEL}/messages/{refused}"),
        1_000_000,
        missing_access(),
    );
    for n in 1..=2 {
        for id in builds.clone() {
            rig.push(
                id,
                build_body(id, n, if n == 2 { "success" } else { "running" }),
            )
            .await;
        }
        rig.drained().await;
    }
    let rig = rig.stop().await;
    let fake = &rig.fake;
    // The other builds kept their one message and reached their final state.
    for id in [1, 3] {
        assert_history_in_order(fake, id, 2);
        assert!(shows(fake, id, &build_body(id, 2, "success")), "build {id}");
    }
    // Build 2 got one fresh message, with a nonce of its own, which the store
    // follows and which shows the final state.
    let stored = rig
        .store
        .message(&build_key(2), &store::channel_dest(CHANNEL))
        .await
        .expect("store")
        .expect("message");
    assert_ne!(
        stored.message_id, refused,
        "the store follows the fresh message"
    );
    assert_eq!(
        fake.messages().len(),
        4,
        "exactly one fresh message: {:?}",
        fake.calls()
    );
    let fresh = fake.message(&stored.message_id).expect("fresh message");
    assert!(
        fresh["nonce"]
            .as_str()
            .is_some_and(|n| n != nonce(2) && n.len() <= 25),
        "{}",
        fresh["nonce"]
    );
    matches_render(&fresh, &build_body(2, 2, "success")).unwrap_or_else(|e| panic!("{e}"));
    assert!(fake.count_status(403) >= 1);
    // Nothing set aside, and an edit refusal is not a health problem.
    assert_eq!(rig.store.stats().await.expect("stats").dead_letters, 0);
    assert!(rig.health.report().healthy, "{:?}", rig.health.report());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_and_fresh_create_refused_set_the_build_aside_and_the_others_are_delivered() {
    let fake = FakeDiscord::start().await;
    let mut cfg = relay_config();
    // A refused create pauses the channel; keep that pause short here.
    cfg.auth_pause = Duration::from_millis(500);
    let rest = Rest::new(fake.rest_config()).expect("rest");
    let rig = Rig::start_full(fake, rest, cfg).await;
    let builds = 1..=3i64;
    for id in builds.clone() {
        rig.push(id, build_body(id, 0, "pending")).await;
    }
    rig.drained().await;
    let refused = messages_by_build(&rig.fake)[&2][0].clone();
    rig.fake.push_for(
        "PATCH",
        &format!("/channels/{CHANNEL}/messages/{refused}"),
        1_000_000,
        missing_access(),
    );
    // The only create from now on is build 2's fresh message: refused too.
    rig.fake.push_for("POST", "/channels/", 1, missing_access());
    for id in builds.clone() {
        rig.push(id, build_body(id, 1, "success")).await;
    }
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    for id in [1, 3] {
        assert!(shows(fake, id, &build_body(id, 1, "success")), "build {id}");
    }
    let dead = rig.store.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].event.key, build_key(2));
    assert!(
        dead[0].reason.contains("403") && dead[0].reason.contains(&refused),
        "{}",
        dead[0].reason
    );
    assert_eq!(fake.messages().len(), 3, "no fresh message was posted");
    assert_eq!(rig.store.stats().await.expect("stats").pending, 0);
}

// ---------------------------------------------------------------------------
// 3c. The channel is gone (404 on create): pause and say so; drop nothing.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_pauses_delivery_and_keeps_the_events() {
    let fake = FakeDiscord::start().await;
    fake.always(Canned::json(
        404,
        serde_json::json!({ "message": "Unknown Channel", "code": 10003 }),
    ));
    let mut cfg = relay_config();
    cfg.auth_pause = Duration::from_secs(3600);
    let rest = Rest::new(fake.rest_config()).expect("rest");
    let rig = Rig::start_full(fake, rest, cfg).await;
    for id in 1..=4 {
        rig.push(id, build_body(id, 0, "pending")).await;
    }
    let deadline = Instant::now() + LONG;
    while rig.health.get(Component::Discord).ok || rig.fake.calls().is_empty() {
        assert!(Instant::now() < deadline, "health never turned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reason = rig.health.report().reason.unwrap_or_default();
    assert!(
        reason.contains(CHANNEL) && reason.contains("10003"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rig = rig.stop().await;
    let stats = rig.store.stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.dead_letters),
        (4, 0),
        "kept, not dead-lettered"
    );
    let calls = rig.fake.calls().len();
    assert!(
        calls <= 4,
        "{calls} calls against a missing channel: no build may be retried during the pause"
    );
}

// ---------------------------------------------------------------------------
// 4. 401 via the real binary: stop, say why, no call storm.

/// Env for the binary talking to `fake` (which is told to accept the
/// binary's token-shaped test token), with no gateway.
fn discord_env(fake: &FakeDiscord) -> Vec<(&'static str, String)> {
    fake.set_token(support::credentials::TOKEN);
    vec![
        ("DISCORD_TOKEN", support::credentials::TOKEN.to_string()),
        ("DISCORD_CHANNEL_ID", CHANNEL.to_string()),
        ("DISCORD_API_BASE_URL", fake.base_url()),
        ("NO_GATEWAY", "true".to_string()),
    ]
}

fn start_bin(state: &std::path::Path, env: &[(&'static str, String)]) -> support::binary::Service {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    support::binary::start(state, &[], &env)
}

fn health_json(svc: &support::binary::Service) -> (u16, Value) {
    let (status, body) = svc.get("/health");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn unauthorized_stops_delivery_turns_health_503_and_makes_no_storm() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.always(Canned::unauthorized());
    let state = tempfile::tempdir().expect("tempdir");
    let svc = start_bin(state.path(), &discord_env(&fake));
    for id in 1..=5 {
        let (s, b) = svc.post_signed(&build_body(id, 0, "pending"), support::credentials::SECRET);
        assert_eq!(s, 200, "{b}");
    }
    wait_for("/health 503 naming 401", LONG, || {
        let (s, h) = health_json(&svc);
        s == 503 && h["reason"].as_str().is_some_and(|r| r.contains("401"))
    });
    let (_, h) = health_json(&svc);
    assert_eq!(h["discord"]["ok"], false, "{h}");
    // Give a storm every chance: 3 s more, then count.
    std::thread::sleep(Duration::from_secs(3));
    let calls = fake.calls().len();
    assert!(
        (1..=2).contains(&calls),
        "{calls} calls after a 401; want 1–2: {:?}",
        fake.calls().iter().map(|c| &c.route).collect::<Vec<_>>()
    );
    let (_, h) = health_json(&svc);
    assert_eq!(h["queue"]["pending"], 5, "nothing lost: {h}");
    let log = svc.log_text();
    assert!(
        !log.contains(support::credentials::TOKEN),
        "token reached the log"
    );
    assert_eq!(svc.sigterm(), Some(0));
}

/// After the token is fixed, the rare retry finds out, health turns back and
/// everything queued meanwhile is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_401_the_rare_retry_recovers_once_the_token_works() {
    let fake = FakeDiscord::start().await;
    let tuning = RestTuning {
        unauthorized_cooldown: Duration::from_millis(500),
        ..RestTuning::default()
    };
    let rest = Rest::with_tuning(fake.rest_config(), tuning).expect("rest");
    // The client has the token the operator configured; Discord refuses it.
    fake.set_token("not-the-client-token");
    let mut cfg = relay_config();
    cfg.auth_pause = Duration::from_secs(1);
    let rig = Rig::start_full(fake, rest, cfg).await;
    for id in 1..=3 {
        rig.push(id, build_body(id, 0, "pending")).await;
    }
    let deadline = Instant::now() + LONG;
    while rig.health.get(Component::Discord).ok || rig.fake.calls().is_empty() {
        assert!(Instant::now() < deadline, "health never turned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(rig
        .health
        .report()
        .reason
        .unwrap_or_default()
        .contains("401"));
    // The operator fixes the token (here: the fake starts accepting it).
    rig.fake.set_token(support::fake_discord::TEST_TOKEN);
    for id in 1..=3 {
        rig.push(id, build_body(id, 1, "success")).await;
    }
    rig.drained().await;
    let rig = rig.stop().await;
    for id in 1..=3 {
        assert!(
            shows(&rig.fake, id, &build_body(id, 1, "success")),
            "build {id}"
        );
    }
    assert!(rig.health.get(Component::Discord).ok, "health recovered");
    let unauthorized = rig.fake.count_status(401);
    assert!(
        (1..=3).contains(&unauthorized),
        "{unauthorized} × 401: a rare retry, not a storm"
    );
}

// ---------------------------------------------------------------------------
// 5. SIGKILL mid-burst, restart: every build final, one message each.

#[test]
fn sigkill_mid_burst_then_restart_leaves_one_final_message_per_build() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    // A slow Discord: 5 calls per second on the channel.
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 5,
        window: Duration::from_secs(1),
    }));
    let state = tempfile::tempdir().expect("tempdir");
    let env = discord_env(&fake);
    let svc = start_bin(state.path(), &env);
    let builds = 1..=30i64;
    let last = |id: i64| if id % 3 == 0 { "failure" } else { "success" };
    for n in 0..4 {
        for id in builds.clone() {
            let status = statuses(4, last(id))[n];
            let (s, b) = svc.post_signed(&build_body(id, n, status), support::credentials::SECRET);
            assert_eq!(s, 200, "{b}");
        }
    }
    // Kill once delivery is under way but far from done.
    wait_for("a few messages", LONG, || fake.messages().len() >= 5);
    svc.sigkill();
    let at_kill = fake.messages().len();
    eprintln!(
        "killed with {at_kill} messages, {} calls",
        fake.calls().len()
    );

    let svc = start_bin(state.path(), &env);
    wait_for(
        "every build in its final state",
        Duration::from_secs(240),
        || {
            builds
                .clone()
                .all(|id| shows(&fake, id, &build_body(id, 3, last(id))))
        },
    );
    wait_for("an empty queue", LONG, || {
        health_json(&svc).1["queue"]["pending"] == 0
    });
    let by = messages_by_build(&fake);
    assert_eq!(
        fake.messages().len(),
        30,
        "one message per build, no strays: {by:?}"
    );
    for id in builds.clone() {
        assert_eq!(by.get(&id).map(Vec::len), Some(1), "build {id}: {by:?}");
        assert_history_in_order(&fake, id, 3);
    }
    let (_, h) = health_json(&svc);
    assert_eq!(h["queue"]["dead_letters"], 0, "{h}");
    let per = calls_per_build(&fake);
    eprintln!(
        "2xx calls per build (creates, edits): {per:?}; 429s: {}",
        fake.count_status(429)
    );
    assert_eq!(svc.sigterm(), Some(0));
}

// ---------------------------------------------------------------------------
// 5a. The binary over TLS, trusting the fake's CA through SSL_CERT_FILE.

#[test]
fn binary_delivers_over_tls_trusting_ssl_cert_file() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start_tls());
    let state = tempfile::tempdir().expect("tempdir");
    let mut env = discord_env(&fake);
    let ca = fake.ca_file().expect("TLS fake has a CA file");
    env.push(("SSL_CERT_FILE", ca.to_string_lossy().into_owned()));
    let svc = start_bin(state.path(), &env);
    for (n, status) in ["pending", "running", "success"].into_iter().enumerate() {
        let (s, b) = svc.post_signed(&build_body(5, n, status), support::credentials::SECRET);
        assert_eq!(s, 200, "{b}");
        // One state at a time: each must reach Discord before the next.
        wait_for("the update in Discord", LONG, || {
            messages_by_build(&fake)
                .get(&5)
                .and_then(|ids| ids.first())
                .is_some_and(|id| fake.history(id).len() > n)
        });
    }
    assert_eq!(fake.count("POST /channels/{id}/messages"), 1);
    assert_eq!(fake.count("PATCH /channels/{id}/messages/{id}"), 2);
    assert_history_in_order(&fake, 5, 2);
    assert!(shows(&fake, 5, &build_body(5, 2, "success")));
    assert_eq!(svc.sigterm(), Some(0));
}

// ---------------------------------------------------------------------------
// 5c. SIGTERM while deliveries wait out a long rate limit: a clean, prompt
//     exit, and everything still queued is delivered after a restart.

#[test]
fn sigterm_while_waiting_out_a_rate_limit_exits_cleanly_and_loses_nothing() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    // One call per 20 s: the second call must wait inside the client.
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 1,
        window: Duration::from_secs(20),
    }));
    let state = tempfile::tempdir().expect("tempdir");
    let env = discord_env(&fake);
    let svc = start_bin(state.path(), &env);
    for id in 1..=3 {
        let (s, b) = svc.post_signed(&build_body(id, 0, "pending"), support::credentials::SECRET);
        assert_eq!(s, 200, "{b}");
    }
    wait_for("the first message", LONG, || fake.messages().len() == 1);
    // The others are now waiting for the window to reset.
    assert_eq!(svc.sigterm(), Some(0), "SIGTERM must exit cleanly");
    let after_stop = fake.calls().len();

    fake.set_rate_limit(None);
    let svc = start_bin(state.path(), &env);
    wait_for("all three builds shown", LONG, || {
        (1..=3).all(|id| shows(&fake, id, &build_body(id, 0, "pending")))
    });
    wait_for("an empty queue", LONG, || {
        health_json(&svc).1["queue"]["pending"] == 0
    });
    assert_eq!(fake.messages().len(), 3, "{:?}", messages_by_build(&fake));
    eprintln!(
        "{after_stop} calls before the stop, {} in all",
        fake.calls().len()
    );
    assert_eq!(svc.sigterm(), Some(0));
}

// ---------------------------------------------------------------------------
// 5b. A create that reached Discord but whose answer was lost: the retry
//     carries the same nonce, so Discord returns the first message.

/// A loopback proxy to `upstream`. The first `lose` connections whose first
/// request is a POST get it forwarded, but the answer is swallowed and the
/// connection closed: the message exists, the client never learns its id.
async fn lossy_proxy(upstream: SocketAddr, lose: usize) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(lose));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let left = left.clone();
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let mut first = vec![0u8; 64 * 1024];
                let n = match tokio::time::timeout(LONG, client.read(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => return,
                };
                let head = first.get(..n).unwrap_or_default();
                if server.write_all(head).await.is_err() {
                    return;
                }
                let lose_it = head.starts_with(b"POST ")
                    && left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                        .is_ok();
                if !lose_it {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                // Forward the rest of the request; hang up once the answer starts.
                let (mut cr, _cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let mut answer = [0u8; 1];
                tokio::select! {
                    _ = tokio::io::copy(&mut cr, &mut sw) => {}
                    _ = tokio::time::timeout(LONG, sr.read(&mut answer)) => {}
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_answer_is_retried_with_the_same_nonce_and_posts_once() {
    let fake = FakeDiscord::start().await;
    let proxy = lossy_proxy(fake.addr(), 2).await;
    let rig = Rig::start_with(fake, |f| RestConfig {
        base_url: format!("http://{proxy}/api/v10"),
        ..f.rest_config()
    })
    .await;
    rig.push(7, build_body(7, 0, "pending")).await;
    rig.drained().await;
    rig.push(7, build_body(7, 1, "success")).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    assert_eq!(
        fake.count("POST /channels/{id}/messages"),
        3,
        "two lost answers, then one seen: {:?}",
        fake.calls()
    );
    assert!(fake
        .calls()
        .iter()
        .filter(|c| c.method == "POST")
        .all(|c| c.body.as_ref().is_some_and(|b| b["nonce"] == nonce(7))));
    assert_eq!(fake.messages().len(), 1, "the nonce kept it to one message");
    assert_history_in_order(fake, 7, 1);
    assert!(shows(fake, 7, &build_body(7, 1, "success")));
}

/// Found by the fault suite (SIGKILL mid-burst): a create reached Discord,
/// its answer was lost, and by the retry the build had moved on. Discord
/// answers the retry's nonce with the first message, unchanged, showing the
/// older state; the relay must still bring it to the newest one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_answered_with_its_nonces_earlier_message_is_edited_to_the_newest_state() {
    let fake = FakeDiscord::start().await;
    fake.push_fault_for("POST", "/channels/", 1, Fault::ProcessThenDrop);
    let rest = Rest::new(fake.rest_config()).expect("rest");
    // A retry well after the next event is queued.
    let mut cfg = relay_config();
    cfg.base_backoff = Duration::from_secs(6);
    let rig = Rig::start_full(fake, rest, cfg).await;
    rig.push(8, build_body(8, 0, "pending")).await;
    assert!(
        rig.fake.wait_until(LONG, |f| f.messages().len() == 1).await,
        "the first create reached Discord"
    );
    rig.push(8, build_body(8, 1, "success")).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    assert_eq!(
        fake.count("POST /channels/{id}/messages"),
        2,
        "{:?}",
        fake.calls()
    );
    assert_eq!(fake.messages().len(), 1, "the nonce kept it to one message");
    assert!(
        shows(fake, 8, &build_body(8, 1, "success")),
        "the build must end showing its final state: {:?}",
        fake.messages()
    );
}

// ---------------------------------------------------------------------------
// 6. A scaled-down burst under an emulated limit: coalescing happens.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_under_a_rate_limit_coalesces_and_ends_final() {
    let fake = FakeDiscord::start().await;
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 5,
        window: Duration::from_secs(1),
    }));
    let rig = Rig::start(fake).await;
    let (builds, updates) = (12i64, 6usize);
    let last = |id: i64| ["success", "failure", "killed"][(id % 3) as usize];
    for n in 0..updates {
        for id in 1..=builds {
            rig.push(id, build_body(id, n, statuses(updates, last(id))[n]))
                .await;
        }
    }
    rig.drained().await;
    let rig = rig.stop().await;
    let fake = &rig.fake;
    for id in 1..=builds {
        assert!(
            shows(fake, id, &build_body(id, updates - 1, last(id))),
            "build {id} not final"
        );
        assert_history_in_order(fake, id, updates - 1);
    }
    let per = calls_per_build(fake);
    let accepted: usize = per.values().map(|(c, e)| c + e).sum();
    let events = builds as usize * updates;
    eprintln!(
        "{events} events → {accepted} accepted calls ({} total, {} × 429); per build: {per:?}",
        fake.calls().len(),
        fake.count_status(429)
    );
    assert!(
        per.values().all(|(c, _)| *c == 1),
        "one create per build: {per:?}"
    );
    assert!(
        accepted < events,
        "no coalescing: {accepted} calls for {events} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_discord_calls_while_the_store_cannot_write_then_resume_on_its_own() {
    let fake = FakeDiscord::start().await;
    // The store is known to be failing (as ingest or the probe reports it).
    let health = Arc::new(Health::new());
    health.set(
        Component::Store,
        drone_discord::health::Status::failed("No space left on device"),
    );
    let FlakyRig {
        _dir,
        store,
        wake,
        trigger,
        relay,
    } = flaky_rig(&fake, health.clone());
    store
        .append(new_event(2, build_body(2, 0, "pending")))
        .await
        .expect("append");
    wake.notify_one();
    // Several poll intervals and probes: nothing may reach Discord, whose
    // answer (the message id) could not be recorded.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        fake.calls().len(),
        0,
        "called Discord while the store could not write"
    );
    assert!(!health.get(Component::Store).ok);
    // Space is back: the relay's own probe notices, and delivery resumes
    // without anyone else marking the store healthy.
    store.failing.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + LONG;
    while store.stats().await.expect("stats").pending > 0 {
        assert!(Instant::now() < deadline, "never resumed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    trigger.fire();
    tokio::time::timeout(LONG, relay)
        .await
        .expect("relay stops")
        .expect("relay task");
    assert!(health.get(Component::Store).ok);
    assert_eq!(fake.messages().len(), 1);
}

// ---------------------------------------------------------------------------
// Keys name their Drone server.

/// Two Drone servers on one bot send the same build id: each build gets its
/// own message and ends in its own final state (with `build:<id>` keys the
/// second server's build edited the first one's message).
#[test]
fn two_drone_hosts_with_the_same_build_id_get_two_messages() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let state = tempfile::tempdir().expect("tempdir");
    let env = discord_env(&fake);
    let svc = start_bin(state.path(), &env);
    let on_host = |host: &str, body: Vec<u8>| {
        let mut v: Value = serde_json::from_slice(&body).expect("fixture json");
        v["system"]["host"] = Value::String(host.into());
        serde_json::to_vec(&v).expect("json")
    };
    let finals = [
        ("drone-a.example.com", "success"),
        ("drone-b.example.com", "failure"),
    ];
    for n in 0..3 {
        for (host, last) in finals {
            let status = statuses(3, last)[n];
            let (s, b) = svc.post_signed(
                &on_host(host, build_body(77, n, status)),
                support::credentials::SECRET,
            );
            assert_eq!(s, 200, "{b}");
        }
    }
    // /health's queue figure is refreshed by the relay, so under load it can
    // still read 0 from before these posts: wait for what Discord shows.
    let shows_finals = || {
        let messages = fake.messages();
        finals.iter().all(|(host, last)| {
            let want = on_host(host, build_body(77, 2, last));
            messages
                .iter()
                .any(|(_, m)| matches_render(m, &want).is_ok())
        })
    };
    wait_for("both servers' final states", LONG, || {
        shows_finals() && health_json(&svc).1["queue"]["pending"] == 0
    });
    let messages = fake.messages();
    assert_eq!(
        messages.len(),
        2,
        "one message per server's build 77: {:?}",
        fake.calls()
    );
    let mut shown: Vec<bool> = finals
        .iter()
        .map(|(host, last)| {
            let want = on_host(host, build_body(77, 2, last));
            messages
                .iter()
                .any(|(_, m)| matches_render(m, &want).is_ok())
        })
        .collect();
    shown.dedup();
    assert_eq!(
        shown,
        vec![true],
        "each server's build shows its own final state"
    );
    let (_, h) = health_json(&svc);
    assert_eq!(h["queue"]["dead_letters"], 0, "{h}");
    assert_eq!(svc.sigterm(), Some(0));
}

/// With restart buttons on, a failed build's message carries Restart next to
/// "Open in Drone" (Discord accepts both); a passing build's has the link only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_buttons_go_on_failed_builds_only_when_enabled() {
    let fake = FakeDiscord::start().await;
    let rest = Rest::new(fake_rest_config(&fake)).expect("rest client");
    let mut cfg = relay_config();
    cfg.restart_buttons = true;
    let rig = Rig::start_full(fake, rest, cfg).await;
    rig.push(1, build_body(1, 0, "failure")).await;
    rig.push(2, build_body(2, 0, "success")).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let by = messages_by_build(&rig.fake);
    let buttons = |id: i64| {
        let msg = rig.fake.message(&by[&id][0]).expect("message");
        let row = msg["components"][0]["components"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        row.iter()
            .map(|b| b["label"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(buttons(1), ["Open in Drone", "Restart"]);
    assert_eq!(buttons(2), ["Open in Drone"]);
}
