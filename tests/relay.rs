//! The relay against the real embedded store and a scripted in-memory sink:
//! ordering, coalescing, no regression of final states, one message per
//! build, and the failure policy (retry, pause on 401, 404 → fresh message,
//! other 4xx → dead letter). The HTTP side is covered in relay_discord.rs.
mod support;

use drone_discord::discord::rest::RestError;
use drone_discord::discord::threads::ChannelKind;
use drone_discord::discord::webhook::WebhookUrl;
use drone_discord::discord::webhook_exec::WebhookMessage;
use drone_discord::health::{Component, Health};
use drone_discord::relay::{self, RelayConfig, Sink};
use drone_discord::shutdown;
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::{NewEvent, Store};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::fixtures::fixture_json;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
struct Call {
    edit_of: Option<String>,
    body: Value,
}

/// Records calls; answers from a script first, then with success.
#[derive(Default)]
struct ScriptedSink {
    calls: Mutex<Vec<Call>>,
    script: Mutex<VecDeque<Result<(), RestError>>>,
    next: Mutex<u64>,
}

impl ScriptedSink {
    fn then(&self, r: Result<(), RestError>) {
        self.script.lock().unwrap().push_back(r);
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn answer(&self, edit_of: Option<&str>, body: &Value) -> Result<String, RestError> {
        self.calls.lock().unwrap().push(Call {
            edit_of: edit_of.map(str::to_string),
            body: body.clone(),
        });
        if let Some(r) = self.script.lock().unwrap().pop_front() {
            r?;
        }
        match edit_of {
            Some(id) => Ok(id.to_string()),
            None => {
                let mut n = self.next.lock().unwrap();
                *n += 1;
                Ok(format!("m{n}"))
            }
        }
    }
}

impl Sink for ScriptedSink {
    async fn create(&self, _channel: &str, body: &Value) -> Result<String, RestError> {
        self.answer(None, body)
    }
    async fn edit(
        &self,
        _channel: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<String, RestError> {
        self.answer(Some(message_id), body)
    }
    /// No create is ever uncertain here long enough to be looked up (the
    /// scripted failures are retried within the nonce window).
    async fn recent_messages(&self, _channel: &str, _limit: u8) -> Result<Vec<Value>, RestError> {
        Ok(Vec::new())
    }
    async fn own_user_id(&self) -> Result<String, RestError> {
        Ok("1".into())
    }
    async fn channel_kind(&self, _channel: &str) -> Result<ChannelKind, RestError> {
        Ok(ChannelKind::Text)
    }
    /// As on Discord, the thread has its message's id.
    async fn start_thread(&self, _c: &str, message: &str, _n: &str) -> Result<String, RestError> {
        Ok(message.to_string())
    }
    async fn create_forum_post(
        &self,
        _forum: &str,
        _name: &str,
        body: &Value,
    ) -> Result<(String, String), RestError> {
        let id = self.answer(None, body)?;
        Ok((id.clone(), id))
    }
    async fn execute_webhook(
        &self,
        url: &WebhookUrl,
        body: &Value,
        _thread_name: Option<&str>,
    ) -> Result<WebhookMessage, RestError> {
        Ok(WebhookMessage {
            channel_id: url.id().to_string(),
            message_id: self.answer(None, body)?,
        })
    }
    async fn edit_webhook_message(
        &self,
        _url: &WebhookUrl,
        message_id: &str,
        body: &Value,
        _thread_id: Option<&str>,
    ) -> Result<String, RestError> {
        self.answer(Some(message_id), body)
    }
}

/// A build event for build `id` with `status`, from the fixtures.
fn build_event(id: i64, action: &str, status: &str) -> NewEvent {
    let mut v = fixture_json(if action == "created" {
        "build_created.json"
    } else {
        "build_updated.json"
    });
    v["build"]["id"] = id.into();
    v["build"]["status"] = status.into();
    if drone_discord::drone::is_final(status) {
        v["build"]["finished"] = (v["build"]["started"].as_i64().unwrap_or(0) + 69).into();
    }
    NewEvent {
        key: Some(drone_discord::store::legacy_build_key(id)),
        event: "build".into(),
        action: action.into(),
        received_ms: drone_discord::store::now_ms(),
        replay_key: None,
        body: serde_json::to_vec(&v).unwrap(),
    }
}

fn other_event(name: &str) -> NewEvent {
    let v = fixture_json(name);
    NewEvent {
        key: None,
        event: v["event"].as_str().unwrap().into(),
        action: v["action"].as_str().unwrap().into(),
        received_ms: drone_discord::store::now_ms(),
        replay_key: None,
        body: serde_json::to_vec(&v).unwrap(),
    }
}

struct Rig {
    _dir: tempfile::TempDir,
    store: Arc<EmbeddedStore>,
    sink: Arc<ScriptedSink>,
    health: Arc<Health>,
    wake: Arc<Notify>,
    trigger: Option<shutdown::Trigger>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Where the relay of [`config`] posts, as the store names it.
const DEST: &str = "channel:100000000000000001";

fn config() -> RelayConfig {
    let mut c = RelayConfig::new("100000000000000001");
    c.base_backoff = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(40);
    c.poll_interval = Duration::from_millis(50);
    c
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let health = Arc::new(Health::new());
        health.set(
            Component::Listener,
            drone_discord::health::Status::ok("test"),
        );
        Rig {
            _dir: dir,
            store,
            sink: Arc::new(ScriptedSink::default()),
            health,
            wake: Arc::new(Notify::new()),
            trigger: None,
            task: None,
        }
    }

    fn start(&mut self, cfg: RelayConfig) {
        let (trigger, stop) = shutdown::channel();
        self.task = Some(tokio::spawn(relay::run(
            cfg,
            self.store.clone(),
            self.sink.clone(),
            self.health.clone(),
            self.wake.clone(),
            stop,
        )));
        self.trigger = Some(trigger);
    }

    async fn push(&self, ev: NewEvent) {
        self.store.append(ev).await.unwrap();
        self.wake.notify_one();
    }

    /// Wait (generously) until nothing is pending.
    async fn drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.store.stats().await.unwrap().pending > 0 {
            assert!(
                Instant::now() < deadline,
                "queue never drained; calls: {:?}",
                self.sink.calls().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn calls_reach(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.sink.calls().len() < n {
            assert!(
                Instant::now() < deadline,
                "expected {n} calls, saw {}",
                self.sink.calls().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn stop(mut self) -> Self {
        if let Some(t) = self.trigger.take() {
            t.fire();
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("relay stops")
                .unwrap();
        }
        self
    }
}

fn text(v: &Value) -> String {
    v.to_string().to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_updates_coalesce_into_one_create_with_the_newest_state() {
    let mut rig = Rig::new();
    rig.push(build_event(7, "created", "pending")).await;
    rig.push(build_event(7, "updated", "running")).await;
    rig.push(build_event(7, "updated", "success")).await;
    rig.start(config());
    rig.drained().await;
    let rig = rig.stop().await;
    let calls = rig.sink.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].edit_of.is_none());
    assert!(
        text(&calls[0].body).contains("success"),
        "{}",
        calls[0].body
    );
    assert_eq!(calls[0].body["enforce_nonce"], true);
    assert!(calls[0].body["nonce"]
        .as_str()
        .is_some_and(|n| !n.is_empty() && n.len() <= 25));
    assert_eq!(
        calls[0].body["allowed_mentions"]["parse"],
        serde_json::json!([])
    );
    let m = rig
        .store
        .message("build:7", DEST)
        .await
        .unwrap()
        .expect("message remembered");
    assert_eq!(
        (m.message_id.as_str(), m.status.as_str()),
        ("m1", "success")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_per_build_edited_in_order_and_final_never_regresses() {
    let mut rig = Rig::new();
    rig.start(config());
    rig.push(build_event(8, "created", "pending")).await;
    rig.calls_reach(1).await;
    rig.drained().await;
    rig.push(build_event(8, "updated", "running")).await;
    rig.calls_reach(2).await;
    rig.drained().await;
    rig.push(build_event(8, "updated", "failure")).await;
    rig.calls_reach(3).await;
    rig.drained().await;
    // A late, stale "running" after the final state: no call at all.
    rig.push(build_event(8, "updated", "running")).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let calls = rig.sink.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[0].edit_of.is_none());
    assert_eq!(calls[1].edit_of.as_deref(), Some("m1"));
    assert_eq!(calls[2].edit_of.as_deref(), Some("m1"));
    assert!(text(&calls[1].body).contains("running"));
    assert!(text(&calls[2].body).contains("failure"));
    assert_eq!(
        rig.store
            .message("build:8", DEST)
            .await
            .unwrap()
            .unwrap()
            .status,
        "failure"
    );
}

/// A backlog longer than one claim ([`MAX_CLAIM_EVENTS`]) is delivered over
/// several claims, and a final status in an earlier claim is not undone by
/// stale updates that only come with a later claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_status_survives_stale_updates_in_a_later_claim() {
    use drone_discord::store::MAX_CLAIM_EVENTS;
    let mut rig = Rig::new();
    rig.push(build_event(9, "created", "pending")).await;
    for _ in 1..MAX_CLAIM_EVENTS - 1 {
        rig.push(build_event(9, "updated", "running")).await;
    }
    rig.push(build_event(9, "updated", "success")).await;
    // The next claim holds only stale updates.
    for _ in 0..5 {
        rig.push(build_event(9, "updated", "running")).await;
    }
    rig.start(config());
    rig.drained().await;
    let rig = rig.stop().await;
    let calls = rig.sink.calls();
    assert_eq!(
        calls.len(),
        1,
        "one create for the first claim, nothing for the stale rest: {calls:?}"
    );
    assert!(
        text(&calls[0].body).contains("success"),
        "{}",
        calls[0].body
    );
    assert_eq!(
        rig.store
            .message("build:9", DEST)
            .await
            .unwrap()
            .unwrap()
            .status,
        "success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_before_created_creates_and_other_events_each_get_a_message() {
    let mut rig = Rig::new();
    rig.push(build_event(9, "updated", "running")).await;
    rig.push(other_event("user_created.json")).await;
    rig.push(other_event("repo_enabled.json")).await;
    rig.start(config());
    rig.drained().await;
    let rig = rig.stop().await;
    let calls = rig.sink.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.edit_of.is_none()));
    let nonces: std::collections::HashSet<_> =
        calls.iter().map(|c| c.body["nonce"].to_string()).collect();
    assert_eq!(nonces.len(), 3, "each message its own nonce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_retry_until_delivered() {
    let mut rig = Rig::new();
    for _ in 0..4 {
        rig.sink.then(Err(RestError::Transient {
            reason: "503 Service Unavailable".into(),
            retry_after: None,
        }));
    }
    rig.push(build_event(10, "created", "pending")).await;
    rig.start(config());
    rig.drained().await;
    let rig = rig.stop().await;
    let calls = rig.sink.calls();
    assert_eq!(calls.len(), 5, "4 failures then success: {calls:?}");
    assert!(calls.iter().all(|c| c.edit_of.is_none()));
    // The same nonce on every attempt, so Discord can never post it twice.
    assert!(calls
        .windows(2)
        .all(|w| w[0].body["nonce"] == w[1].body["nonce"]));
    assert!(rig.store.message("build:10", DEST).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_pauses_all_delivery_and_reports_why() {
    let mut rig = Rig::new();
    rig.sink.then(Err(RestError::Unauthorized {
        status: 401,
        message: "401: Unauthorized".into(),
    }));
    for id in 20..30 {
        rig.push(build_event(id, "created", "pending")).await;
    }
    let mut cfg = config();
    cfg.max_in_flight = 1;
    cfg.auth_pause = Duration::from_secs(3600);
    rig.start(cfg);
    rig.calls_reach(1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rig.health.get(Component::Discord).ok {
        assert!(Instant::now() < deadline, "health never turned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a storm every chance to happen, then count.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rig = rig.stop().await;
    assert_eq!(rig.sink.calls().len(), 1, "no calls while paused");
    let h = rig.health.report();
    assert!(!h.healthy);
    assert!(h.reason.unwrap_or_default().contains("401"));
    assert_eq!(rig.store.stats().await.unwrap().pending, 10, "nothing lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_message_is_set_aside_and_does_not_block_others() {
    let mut rig = Rig::new();
    rig.sink.then(Err(RestError::Rejected {
        status: 400,
        code: Some(50035),
        message: "Invalid Form Body".into(),
    }));
    let mut cfg = config();
    cfg.max_in_flight = 1;
    rig.push(build_event(30, "created", "pending")).await;
    rig.push(build_event(31, "created", "pending")).await;
    rig.start(cfg);
    rig.drained().await;
    let rig = rig.stop().await;
    assert_eq!(rig.sink.calls().len(), 2);
    let dead = rig.store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.key, "build:30");
    assert!(dead[0].reason.contains("50035"), "{}", dead[0].reason);
    assert!(rig.store.message("build:31", DEST).await.unwrap().is_some());
    assert_eq!(rig.store.stats().await.unwrap().dead_letters, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_message_gets_a_fresh_one() {
    let mut rig = Rig::new();
    rig.start(config());
    rig.push(build_event(40, "created", "pending")).await;
    rig.calls_reach(1).await;
    rig.drained().await;
    rig.sink.then(Err(RestError::NotFound {
        code: Some(10008),
        message: "Unknown Message".into(),
    }));
    rig.push(build_event(40, "updated", "running")).await;
    rig.calls_reach(3).await;
    rig.drained().await;
    let rig = rig.stop().await;
    let calls = rig.sink.calls();
    assert_eq!(calls[1].edit_of.as_deref(), Some("m1"));
    assert!(calls[2].edit_of.is_none(), "a fresh message after the 404");
    assert_ne!(
        calls[2].body["nonce"], calls[0].body["nonce"],
        "fresh message needs its own nonce"
    );
    assert_eq!(
        rig.store
            .message("build:40", DEST)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        "m2"
    );
}
