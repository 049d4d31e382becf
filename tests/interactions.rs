//! Restart-button clicks, at the library level: the real gateway client
//! (against the fake gateway) hands `INTERACTION_CREATE` to the real
//! interaction handler, which answers the fake Discord and calls a
//! scripted Restarter. Not through the binary: the binary has no Drone API
//! client to restart with yet, so it shows no Restart button and has no
//! handler to drive (issue 14's Drone side wires one in).
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use drone_discord::discord::gateway::{self, GatewayConfig, Token};
use drone_discord::discord::rest::Rest;
use drone_discord::health::Health;
use drone_discord::http::client::{Client, ClientOptions};
use drone_discord::interactions::{self, button, Handler, RestartAllow, RestartFuture, Restarter};
use drone_discord::presence::Presence;
use drone_discord::shutdown::{self, Trigger};
use serde_json::{json, Value};
use support::fake_discord::FakeDiscord;
use support::fake_gateway::{FakeConn, FakeGateway};
use tokio::sync::watch;

const CH: &str = "222";
const ROLE: &str = "500000000000000001";
const USER: &str = "80351110224678912";
const WAIT: Duration = Duration::from_secs(10);

/// Drone as a script: counts restarts, answers a new build's URL or an error.
struct Scripted {
    calls: AtomicUsize,
    answer: Result<String, String>,
    /// Held until released, to click again while a restart is in flight.
    gate: tokio::sync::Semaphore,
}

impl Restarter for Scripted {
    fn restart<'a>(&'a self, repo: &'a str, number: u64) -> RestartFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let _ = self.gate.acquire().await;
            self.answer
                .clone()
                .map(|u| format!("{u} ({repo} #{number} restarted)"))
        })
    }
}

struct Rig {
    fake: FakeDiscord,
    conn: FakeConn,
    drone: Arc<Scripted>,
    message: Value,
    custom_id: String,
    seq: u64,
    _stop: Trigger,
    _gateway: (watch::Sender<Presence>, Arc<Health>),
}

async fn rig(answer: Result<&str, &str>, open: bool) -> Rig {
    let fake = FakeDiscord::start().await;
    let rest = Rest::new(fake.rest_config()).expect("rest");
    // A failed build's message with its Restart button, as the relay posts it.
    let hook = drone_discord::drone::parse(&support::fixtures::fixture("build_failure.json"))
        .expect("fixture");
    let mut body = drone_discord::render::render(&hook).expect("rendered");
    button::add_for_failure(&mut body, &hook);
    let id = rest.create_message(CH, &body).await.expect("posted");
    let message = fake.message(&id).expect("stored");
    let custom_id = message["components"][0]["components"][1]["custom_id"]
        .as_str()
        .expect("a Restart button")
        .to_string();

    let drone = Arc::new(Scripted {
        calls: AtomicUsize::new(0),
        answer: answer.map(str::to_string).map_err(str::to_string),
        gate: tokio::sync::Semaphore::new(if open { 1000 } else { 0 }),
    });
    let allow = RestartAllow {
        roles: vec![ROLE.into()],
        users: vec![USER.into()],
    };
    let handler = Handler::new(rest, allow, drone.clone());
    let (clicks, queue) = interactions::queue();
    let (stop, shutdown) = shutdown::channel();
    tokio::spawn(interactions::run(handler, queue, shutdown.clone()));

    let mut gw = FakeGateway::start().await;
    let mut cfg = GatewayConfig::new(
        gw.url(),
        Token::new("gateway-token"),
        Arc::new(Client::new(ClientOptions::default()).expect("client")),
    );
    cfg.interactions = Some(clicks);
    let (presence, rx) = watch::channel(Presence::healthy());
    let health = Arc::new(Health::new());
    tokio::spawn(gateway::run(cfg, rx, health.clone(), shutdown));
    let mut conn = gw.next_conn().await;
    conn.hello(10_000);
    conn.expect_op(2).await;
    conn.ready(1, "session-1", &gw.resume_url());
    Rig {
        fake,
        conn,
        drone,
        message,
        custom_id,
        seq: 1,
        _stop: stop,
        _gateway: (presence, health),
    }
}

impl Rig {
    /// Deliver a click over the gateway; returns the interaction id.
    fn click(&mut self, custom_id: &str, user: &str, roles: Option<&[&str]>) -> String {
        let d = self
            .fake
            .click(custom_id, user, roles, self.message.clone());
        self.seq += 1;
        self.conn
            .send(json!({ "op": 0, "s": self.seq, "t": "INTERACTION_CREATE", "d": d }));
        d["id"].as_str().expect("id").to_string()
    }

    /// The interaction's final answer (the last edit of @original).
    async fn answer(&self, id: &str) -> String {
        let answered = self
            .fake
            .wait_until(WAIT, |f| {
                f.interaction(id).is_some_and(|i| !i.edits.is_empty())
            })
            .await;
        assert!(answered, "no answer to interaction {id}");
        let i = self.fake.interaction(id).expect("interaction");
        assert_eq!(
            i.callback,
            Some(json!({ "type": 5, "data": { "flags": 64 } })),
            "deferred, ephemeral"
        );
        i.edits.last().expect("an edit")["content"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

#[tokio::test]
async fn an_allowed_click_restarts_once_and_links_the_new_build() {
    let mut rig = rig(Ok("https://drone.example/a/b/190"), true).await;
    let first = rig.click(&rig.custom_id.clone(), "7", Some(&["9", ROLE]));
    let text = rig.answer(&first).await;
    assert!(text.contains("https://drone.example/a/b/190"), "{text}");
    assert_eq!(rig.drone.calls.load(Ordering::SeqCst), 1);
    // A second click (the user allow-list, in a DM this time) gets the same
    // link, and Drone is not called again.
    let second = rig.click(&rig.custom_id.clone(), USER, None);
    let text = rig.answer(&second).await;
    assert!(
        text.starts_with("Already restarted: https://drone.example/a/b/190"),
        "{text}"
    );
    assert_eq!(rig.drone.calls.load(Ordering::SeqCst), 1);
    // The interaction token goes into the two paths only, never a body or a header.
    for call in rig.fake.calls() {
        let seen = format!("{:?} {:?}", call.body, call.headers);
        assert!(!seen.contains("tok-en"), "{}: {seen}", call.route);
    }
}

#[tokio::test]
async fn a_click_while_the_restart_is_in_flight_does_not_call_drone_again() {
    let mut rig = rig(Ok("https://drone.example/a/b/190"), false).await;
    let first = rig.click(&rig.custom_id.clone(), USER, Some(&[]));
    let started = rig
        .fake
        .wait_until(WAIT, |f| {
            f.interaction(&first).is_some_and(|i| i.callback.is_some())
        })
        .await;
    assert!(started);
    let second = rig.click(&rig.custom_id.clone(), USER, Some(&[]));
    let text = rig.answer(&second).await;
    assert!(text.contains("is being restarted"), "{text}");
    rig.drone.gate.add_permits(1);
    let text = rig.answer(&first).await;
    assert!(text.contains("https://drone.example/a/b/190"), "{text}");
    assert_eq!(rig.drone.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_click_by_someone_not_allowed_calls_nothing() {
    let mut rig = rig(Ok("https://drone.example/a/b/190"), true).await;
    let id = rig.click(&rig.custom_id.clone(), "7", Some(&["9"]));
    assert_eq!(
        rig.answer(&id).await,
        "You are not allowed to restart builds."
    );
    let id = rig.click(&rig.custom_id.clone(), ROLE, None);
    assert_eq!(
        rig.answer(&id).await,
        "You are not allowed to restart builds."
    );
    assert_eq!(rig.drone.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_forged_custom_id_is_refused() {
    let mut rig = rig(Ok("https://drone.example/a/b/190"), true).await;
    // Another build's id, not on this message, even from an allowed user.
    for forged in ["restart:1:Diesel-Net/other", "restart:zz", "open"] {
        let id = rig.click(forged, USER, None);
        let text = rig.answer(&id).await;
        assert!(text.contains("unknown"), "{forged}: {text}");
    }
    assert_eq!(rig.drone.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn drones_error_is_shown_and_a_later_click_may_try_again() {
    let mut rig = rig(Err("403 Forbidden: write access needed"), true).await;
    let id = rig.click(&rig.custom_id.clone(), USER, None);
    let text = rig.answer(&id).await;
    assert!(
        text.contains("403 Forbidden: write access needed"),
        "{text}"
    );
    let id = rig.click(&rig.custom_id.clone(), USER, None);
    rig.answer(&id).await;
    assert_eq!(
        rig.drone.calls.load(Ordering::SeqCst),
        2,
        "a failed restart is not remembered"
    );
}
