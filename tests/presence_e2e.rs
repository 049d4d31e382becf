//! End-to-end: the real binary's presence against a fake Discord (REST) and
//! a fake gateway on loopback. The bot must identify with intents 0, keep
//! heartbeating, show "online, Watching Drone" only while `/health` is 200
//! (a really full tmpfs disk makes it 503), and close with 1000 on SIGTERM.
//! A refused token (close 4004) must stop the gateway for good without
//! touching webhook delivery or `/health`.
//!
//! The binary is driven with the blocking helpers in `common` (inside
//! `block_in_place`), the fakes with tokio.
mod support;

use serde_json::Value;
use std::time::Duration;
use support::binary::{start, wait_health, Service};
use support::builds::build_created;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::FakeDiscord;
use support::fake_gateway::{is_watching_drone, FakeConn, FakeGateway, Got};
use support::tmpfs::Tmpfs;
use tokio::task::block_in_place;

/// Generous wait for the binary's reactions (store probe 5 s + check 1 s).
const WAIT: Duration = Duration::from_secs(60);
/// Heartbeat interval the fake asks for: short, so frames keep flowing.
const BEAT_MS: u64 = 500;

/// The binary wired to both fakes, with a 1 s health-check interval.
fn start_with_fakes(
    state: &std::path::Path,
    rest: &FakeDiscord,
    gw: &FakeGateway,
    extra: &[(&str, &str)],
) -> Service {
    rest.set_token(TOKEN);
    let base = rest.base_url();
    let url = gw.url();
    let mut env = vec![
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", base.as_str()),
        ("DISCORD_GATEWAY_URL", url.as_str()),
        ("HEALTHCHECK_INTERVAL", "1"),
    ];
    env.extend_from_slice(extra);
    block_in_place(|| start(state, &[], &env))
}

/// Hello → Identify (checked: token, intents 0) → READY. Returns Identify's presence.
async fn establish(gw: &FakeGateway, conn: &mut FakeConn) -> Value {
    conn.hello(BEAT_MS);
    let identify = conn.expect_op(2).await;
    let d = &identify["d"];
    assert!(
        d["token"] == TOKEN,
        "Identify must carry the configured token"
    );
    assert_eq!(d["intents"], 0, "no privileged or other intents");
    conn.ready(1, "session-e2e", &gw.resume_url());
    d["presence"].clone()
}

/// What the client sent while we waited for a presence.
#[derive(Default)]
struct Seen {
    heartbeats: usize,
}

/// The next op 3 payload (`d`), counting heartbeats on the way.
async fn next_presence(conn: &mut FakeConn, seen: &mut Seen) -> Value {
    let result = tokio::time::timeout(WAIT, async {
        loop {
            match conn.recv().await {
                Got::Frame(v) if v["op"] == 3 => return v["d"].clone(),
                Got::Frame(v) if v["op"] == 1 => seen.heartbeats += 1,
                Got::Frame(v) => panic!("unexpected op {} while waiting for a presence", v["op"]),
                Got::Closed(code) => {
                    panic!("client closed with {code:?} while waiting for a presence")
                }
            }
        }
    })
    .await;
    result.expect("no presence update in time")
}

/// Presences until one satisfies `pred`; returns it.
async fn presence_until(
    conn: &mut FakeConn,
    seen: &mut Seen,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let p = next_presence(conn, seen).await;
        if pred(&p) {
            return p;
        }
    }
}

/// Healthy → full disk → unhealthy presence → freed → healthy; SIGTERM closes 1000.
async fn presence_follows_a_full_disk(
    test: &str,
    extra: &[(&str, &str)],
    check_unhealthy: impl Fn(&Value, &str),
) {
    let Some(disk) = Tmpfs::mount(test, 16) else {
        return;
    };
    let rest = FakeDiscord::start().await;
    let mut gw = FakeGateway::start().await;
    let svc = start_with_fakes(disk.path(), &rest, &gw, extra);
    let mut conn = gw.next_conn().await;
    assert!(
        conn.path.contains("v=10") && conn.path.contains("encoding=json"),
        "{}",
        conn.path
    );
    let initial = establish(&gw, &mut conn).await;
    let mut seen = Seen::default();
    if !is_watching_drone(&initial) {
        presence_until(&mut conn, &mut seen, is_watching_drone).await;
    }
    // Heartbeats go on while healthy.
    while seen.heartbeats < 2 {
        match conn.recv().await {
            Got::Frame(v) if v["op"] == 1 => seen.heartbeats += 1,
            Got::Frame(_) => {}
            Got::Closed(code) => panic!("client closed with {code:?}"),
        }
    }

    block_in_place(|| disk.fill());
    let filled_at = std::time::Instant::now();
    let unhealthy = presence_until(&mut conn, &mut seen, |p| p["status"] != "online").await;
    eprintln!(
        "measured: {test}: op 3 {} {:.1} s after the disk filled: {}",
        unhealthy["status"],
        filled_at.elapsed().as_secs_f64(),
        unhealthy["activities"]
    );
    check_unhealthy(&unhealthy, disk.path().to_str().unwrap_or("/"));
    assert_eq!(unhealthy["afk"], false);
    let (status, body) = block_in_place(|| svc.get("/health"));
    assert_eq!(status, 503, "the presence follows /health: {body}");

    block_in_place(|| disk.free());
    // (The reason may change while full, e.g. from the probe's words to a
    // failed commit's, each one a new op 3; online comes back once freed.)
    let freed_at = std::time::Instant::now();
    presence_until(&mut conn, &mut seen, is_watching_drone).await;
    eprintln!(
        "measured: {test}: online again {:.1} s after freeing",
        freed_at.elapsed().as_secs_f64()
    );
    assert!(seen.heartbeats >= 2, "heartbeats: {}", seen.heartbeats);
    assert_eq!(gw.connections(), 1, "one connection throughout");

    assert_eq!(
        block_in_place(|| svc.sigterm()),
        Some(0),
        "SIGTERM must exit cleanly"
    );
    assert_eq!(
        conn.expect_closed().await,
        Some(1000),
        "a clean shutdown closes the gateway with 1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_online_then_invisible_on_a_full_disk_then_online_and_closes_1000() {
    presence_follows_a_full_disk(
        "presence_is_online_then_invisible_on_a_full_disk_then_online_and_closes_1000",
        &[],
        |p, _| {
            assert_eq!(p["status"], "invisible", "{p}");
            assert_eq!(p["activities"], serde_json::json!([]), "{p}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_presence_dnd_shows_the_reason_as_custom_status() {
    presence_follows_a_full_disk(
        "unhealthy_presence_dnd_shows_the_reason_as_custom_status",
        &[("UNHEALTHY_PRESENCE", "dnd")],
        |p, state_dir| {
            assert_eq!(p["status"], "dnd", "{p}");
            let activity = &p["activities"][0];
            assert_eq!(activity["type"], 4, "custom status: {p}");
            let state = activity["state"].as_str().unwrap_or_default();
            assert!(
                state.starts_with("store: ") && state.contains("No space left"),
                "reason as custom status: {p}"
            );
            assert!(state.chars().count() <= 128, "{p}");
            assert!(
                !state.contains(state_dir),
                "the public custom status names a local path: {p}"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_close_4004_stops_the_gateway_but_not_the_service() {
    let state = tempfile::tempdir().expect("tempdir");
    let rest = FakeDiscord::start().await;
    let mut gw = FakeGateway::start().await;
    let svc = start_with_fakes(state.path(), &rest, &gw, &[]);
    let mut conn = gw.next_conn().await;
    conn.hello(BEAT_MS);
    conn.expect_op(2).await;
    conn.close(4004);
    conn.expect_closed().await;

    let v = block_in_place(|| {
        wait_health(&svc, WAIT, |_, v| {
            v["gateway"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("4004"))
        })
    });
    assert_eq!(
        v["status"], "ok",
        "a refused gateway token alone is not unhealthy: {v}"
    );
    assert_eq!(v["gateway"]["ok"], false, "{v}");

    // Webhooks still flow to Discord's REST API.
    let (status, body) = block_in_place(|| svc.post_signed(&build_created(700_001, 9_001), SECRET));
    assert_eq!(status, 200, "{body}");
    let posted = rest
        .wait_until(WAIT, |f| f.count("POST /channels/{id}/messages") >= 1)
        .await;
    assert!(
        posted,
        "the build message was not posted: {:?}",
        rest.calls()
    );

    // A few health-check periods later: still healthy, still no second connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = block_in_place(|| svc.get("/health"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("4004"), "{body}");
    assert_eq!(gw.connections(), 1, "4004 is fatal: no reconnect");
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
}
