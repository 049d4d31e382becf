//! End-to-end tests of the gateway client against a fake gateway on loopback
//! (real websocket protocol, tiny heartbeat intervals, event-based waits),
//! and of the presence task against a tiny `/health` server.
mod support;

use drone_discord::discord::gateway::{self, GatewayConfig, Token, Tuning};
use drone_discord::health::{Component, Health};
use drone_discord::http::client::{Client, ClientOptions};
use drone_discord::presence::{self, OnlineStatus, Presence, UnhealthyMode};
use drone_discord::shutdown::{self, Trigger};
use serde_json::Value;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::fake_gateway::{FakeConn, FakeGateway, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const TOKEN: &str = "fake-token-for-tests";
const BEAT_MS: u64 = 150;

struct Running {
    task: JoinHandle<()>,
    presence: watch::Sender<Presence>,
    health: Arc<Health>,
    trigger: Trigger,
}

fn http_client() -> Client {
    Client::new(ClientOptions::default()).expect("client")
}

fn tuning() -> Tuning {
    Tuning {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        identify_spacing: Duration::from_millis(50),
        rate_limited_wait: Duration::from_millis(100),
        ..Tuning::default()
    }
}

fn start_client(fake: &FakeGateway) -> Running {
    start_client_with(fake, tuning())
}

fn start_client_with(fake: &FakeGateway, tuning: Tuning) -> Running {
    let cfg = GatewayConfig {
        url: fake.url(),
        token: Token::new(TOKEN),
        connector: Arc::new(http_client()),
        session_start_limit: None,
        identify_ledger: None,
        tuning,
        interactions: None,
    };
    let (presence, rx) = watch::channel(Presence::healthy());
    let health = Arc::new(Health::new());
    let (trigger, shutdown) = shutdown::channel();
    let task = tokio::spawn(gateway::run(cfg, rx, health.clone(), shutdown));
    Running {
        task,
        presence,
        health,
        trigger,
    }
}

/// Hello → Identify → READY on a fresh connection; returns the identify payload.
async fn establish(fake: &FakeGateway, conn: &mut FakeConn) -> Value {
    assert!(conn.path.starts_with("/?"), "base URL path: {}", conn.path);
    assert!(
        conn.path.contains("v=10") && conn.path.contains("encoding=json"),
        "{}",
        conn.path
    );
    conn.hello(BEAT_MS);
    let identify = conn.expect_op(2).await;
    conn.ready(1, "session-abc", &fake.resume_url());
    identify
}

/// The client's next connection resumes the session with `seq` on the resume URL.
async fn expect_resume(fake: &mut FakeGateway, seq: u64) -> FakeConn {
    let mut conn = fake.next_conn().await;
    assert!(
        conn.on_resume_url && conn.path.starts_with("/?"),
        "resume URL path: {}",
        conn.path
    );
    assert!(conn.path.contains("v=10&encoding=json"), "{}", conn.path);
    conn.hello(BEAT_MS);
    let resume = conn.expect_op(6).await;
    assert_eq!(resume["d"]["token"], TOKEN);
    assert_eq!(resume["d"]["session_id"], "session-abc");
    assert_eq!(resume["d"]["seq"], seq);
    conn
}

async fn wait_gateway_status(health: &Health, pred: impl Fn(&str, bool) -> bool) -> String {
    let mut rx = health.subscribe();
    let result = tokio::time::timeout(WAIT, async {
        loop {
            let s = health.get(Component::Gateway);
            if pred(&s.detail, s.ok) {
                return s.detail;
            }
            if rx.changed().await.is_err() {
                return s.detail;
            }
        }
    })
    .await;
    result.expect("gateway status did not reach the expected state")
}

async fn stop(client: Running) {
    client.trigger.fire();
    tokio::time::timeout(WAIT, client.task)
        .await
        .expect("run returns on shutdown")
        .expect("no panic");
}

#[tokio::test]
async fn identifies_then_heartbeats_with_acks_and_closes_1000_on_shutdown() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    let identify = establish(&fake, &mut conn).await;
    let d = &identify["d"];
    assert_eq!(d["token"], TOKEN);
    assert_eq!(d["intents"], 0);
    assert_eq!(d["properties"]["browser"], "drone-discord");
    assert_eq!(d["properties"]["device"], "drone-discord");
    assert_eq!(d["presence"]["status"], "online");
    assert_eq!(d["presence"]["activities"][0]["name"], "Drone");
    wait_gateway_status(&client.health, |d, ok| ok && d == "connected").await;
    conn.dispatch(2, "GUILD_CREATE");
    // Several beats, each ACKed by the fake, carrying the latest seq: no zombie close.
    let mut last = Value::Null;
    for _ in 0..4 {
        last = conn.expect_op(1).await;
    }
    assert_eq!(last["d"], 2);
    assert_eq!(fake.connections(), 1);
    stop(client).await;
    assert_eq!(conn.expect_closed().await, Some(1000));
}

#[tokio::test]
async fn withheld_acks_make_a_zombie_closed_non_1000_then_resumed() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    conn.dispatch(5, "GUILD_CREATE");
    conn.withhold_acks(true);
    let code = conn.expect_closed().await;
    assert!(
        code.is_some_and(|c| c != 1000 && c != 1001),
        "zombie close code {code:?}"
    );
    let conn = expect_resume(&mut fake, 5).await;
    conn.send(serde_json::json!({"op": 0, "s": 6, "t": "RESUMED", "d": {}}));
    wait_gateway_status(&client.health, |d, ok| ok && d == "connected").await;
    stop(client).await;
}

/// Any frame answers a heartbeat, as in twilight: ACKs that arrive later
/// than the next beat, behind dispatches, are no zombie.
#[tokio::test]
async fn slow_acks_behind_other_frames_are_no_zombie() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    // A long interval, so the test's answer to each beat is surely in time.
    conn.hello(1000);
    conn.expect_op(2).await;
    conn.ready(1, "session-abc", &fake.resume_url());
    wait_gateway_status(&client.health, |d, ok| ok && d == "connected").await;
    conn.delay_acks(Duration::from_millis(2500));
    for seq in 2..7 {
        conn.expect_op(1).await;
        conn.dispatch(seq, "TYPING_START");
    }
    assert_eq!(fake.connections(), 1, "no zombie reconnect");
    stop(client).await;
    assert_eq!(conn.expect_closed().await, Some(1000));
}

#[tokio::test]
async fn op7_reconnect_resumes() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    conn.dispatch(3, "GUILD_CREATE");
    conn.send(serde_json::json!({"op": 7, "d": null}));
    let code = conn.expect_closed().await;
    assert!(code.is_some_and(|c| c != 1000 && c != 1001), "{code:?}");
    expect_resume(&mut fake, 3).await;
    stop(client).await;
}

#[tokio::test]
async fn op9_true_resumes_and_op9_false_identifies_anew() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    conn.dispatch(4, "GUILD_CREATE");
    conn.send(serde_json::json!({"op": 9, "d": true}));
    conn.expect_closed().await;
    let mut conn = expect_resume(&mut fake, 4).await;
    // The resume fails: op 9 false → new session on the base URL after 1–5 s.
    conn.send(serde_json::json!({"op": 9, "d": false}));
    conn.expect_closed().await;
    let mut conn = fake.next_conn().await;
    assert!(
        conn.path.starts_with("/?"),
        "identify goes to the base URL: {}",
        conn.path
    );
    conn.hello(BEAT_MS);
    conn.expect_op(2).await;
    // Seq was reset by Identify: the first beat carries null.
    let beat = conn.expect_op(1).await;
    assert_eq!(beat["d"], Value::Null);
    stop(client).await;
}

#[tokio::test]
async fn server_close_4000_resumes() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    conn.dispatch(8, "GUILD_CREATE");
    // Once a beat carries seq 8 the client has processed the dispatch.
    while conn.expect_op(1).await["d"] != 8 {}
    conn.close(4000);
    expect_resume(&mut fake, 8).await;
    stop(client).await;
}

#[tokio::test]
async fn silent_server_hits_the_hello_timeout_and_client_retries() {
    let mut fake = FakeGateway::start().await;
    let client = start_client_with(
        &fake,
        Tuning {
            hello_timeout: Duration::from_millis(300),
            ..tuning()
        },
    );
    let mut conn = fake.next_conn().await; // never says Hello
    let code = conn.expect_closed().await;
    assert!(code.is_some_and(|c| c != 1000 && c != 1001), "{code:?}");
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    wait_gateway_status(&client.health, |d, ok| ok && d == "connected").await;
    stop(client).await;
}

#[tokio::test]
async fn close_4004_stops_for_good_and_says_why() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    conn.hello(BEAT_MS);
    conn.expect_op(2).await;
    conn.close(4004);
    // run() returns by itself: no reconnect loop.
    tokio::time::timeout(WAIT, client.task)
        .await
        .expect("run returns after a fatal close")
        .expect("no panic");
    let status = client.health.get(Component::Gateway);
    assert!(!status.ok);
    assert!(
        status.detail.contains("4004") && status.detail.contains("authentication"),
        "{}",
        status.detail
    );
    assert!(!status.detail.contains(TOKEN));
    // Give a would-be storm plenty of time, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(fake.connections(), 1);
    drop(client.trigger);
}

#[tokio::test]
async fn presence_flips_are_sent_as_op3() {
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    wait_gateway_status(&client.health, |d, ok| ok && d == "connected").await;
    client.presence.send_replace(Presence::unhealthy(
        UnhealthyMode::Dnd,
        "discord: 401 Unauthorized",
    ));
    let p = conn.expect_op(3).await;
    assert_eq!(p["d"]["status"], "dnd");
    assert_eq!(p["d"]["since"], Value::Null);
    assert_eq!(p["d"]["afk"], false);
    assert_eq!(p["d"]["activities"][0]["type"], 4);
    assert_eq!(
        p["d"]["activities"][0]["state"],
        "discord: 401 Unauthorized"
    );
    client.presence.send_replace(Presence::healthy());
    let p = conn.expect_op(3).await;
    assert_eq!(p["d"]["status"], "online");
    assert_eq!(p["d"]["activities"][0]["type"], 3);
    stop(client).await;
}

/// A `/health` endpoint whose status the test flips between 200 and 503.
async fn health_server(status: Arc<AtomicU16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let code = status.load(Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut read = 0;
                while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buf.len() {
                    match tcp.read(&mut buf[read..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => read += n,
                    }
                }
                let body = if code == 200 {
                    r#"{"status":"ok","healthy":true}"#.to_string()
                } else {
                    r#"{"status":"unhealthy","healthy":false,"reason":"store: disk full"}"#
                        .to_string()
                };
                let reply = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}/health")
}

#[tokio::test]
async fn presence_task_follows_health_and_reaches_the_gateway() {
    let status = Arc::new(AtomicU16::new(200));
    let url = health_server(status.clone()).await;
    let mut fake = FakeGateway::start().await;
    let client = start_client(&fake);
    let (presence_trigger, presence_shutdown) = shutdown::channel();
    let mut watcher = client.presence.subscribe();
    let presence_task = tokio::spawn(presence::run(
        url,
        Duration::from_millis(100),
        UnhealthyMode::Dnd,
        http_client(),
        client.presence.clone(),
        presence_shutdown,
    ));
    let mut conn = fake.next_conn().await;
    establish(&fake, &mut conn).await;
    wait_gateway_status(&client.health, |d, ok| ok && d == "connected").await;

    status.store(503, Ordering::SeqCst);
    let p = conn.expect_op(3).await;
    assert_eq!(p["d"]["status"], "dnd");
    assert_eq!(p["d"]["activities"][0]["state"], "store: disk full");
    assert_eq!(watcher.borrow_and_update().status, OnlineStatus::Dnd);

    status.store(200, Ordering::SeqCst);
    let p = conn.expect_op(3).await;
    assert_eq!(p["d"]["status"], "online");

    presence_trigger.fire();
    tokio::time::timeout(WAIT, presence_task)
        .await
        .expect("presence task stops")
        .expect("no panic");
    stop(client).await;
}
