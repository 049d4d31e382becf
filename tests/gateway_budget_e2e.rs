//! End-to-end: the real binary's identify budget with `DISCORD_GATEWAY_URL`
//! set, against the fake gateway and the fake Discord REST API on loopback.
//!
//! A gateway that answers every Identify with op 9 false ("not resumable")
//! must not get more than one Identify per 5 s; the Identifies are written
//! to the identify ledger in `STATE_DIR`, which survives a restart and is
//! honoured by the next run (a full day's budget in it: no connection at
//! all, and `/health` says why and until when). Discord's
//! `session_start_limit` is still asked for and honoured with the URL
//! overridden. Only counts are asserted, never timings.
mod support;

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::binary::{start, wait_health, Service};
use support::credentials::{CHANNEL, TOKEN};
use support::fake_discord::{Canned, FakeDiscord};
use support::fake_gateway::{FakeConn, FakeGateway};
use tokio::task::block_in_place;

/// Generous wait for the binary's reactions on a loaded 2-core box.
const WAIT: Duration = Duration::from_secs(60);
const BEAT_MS: u64 = 1000;
/// The ledger's file name in `STATE_DIR` (documented in `identify_ledger.rs`).
const LEDGER: &str = "gateway-identify-ledger";
/// Discord's identify spacing (max_concurrency 1 per 5 s).
const SPACING: Duration = Duration::from_secs(5);

fn start_with_fakes(state: &Path, rest: &FakeDiscord, gw: &FakeGateway) -> Service {
    rest.set_token(TOKEN);
    let base = rest.base_url();
    let url = gw.url();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", base.as_str()),
        ("DISCORD_GATEWAY_URL", url.as_str()),
        ("HEALTHCHECK_INTERVAL", "1"),
    ];
    block_in_place(|| start(state, &[], &env))
}

/// Hello, wait for the Identify, answer op 9 false. Returns the Identify's token.
async fn identify_then_invalidate(conn: &mut FakeConn) -> String {
    conn.hello(BEAT_MS);
    let identify = conn.expect_op(2).await;
    conn.send(json!({"op": 9, "d": false, "s": null, "t": null}));
    identify["d"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The ledger's time lines (after its header line).
fn ledger_times(state: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(state.join(LEDGER)).expect("the identify ledger exists");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// At most one Identify per 5 s over `elapsed`, counted.
fn assert_spaced(identifies: usize, elapsed: Duration) {
    let allowed = 1 + (elapsed.as_secs_f64() / SPACING.as_secs_f64()).floor() as usize;
    assert!(
        identifies <= allowed,
        "{identifies} identifies in {:.1} s: more than one per 5 s",
        elapsed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op9_false_storm_keeps_the_identify_budget_across_restarts() {
    let state = tempfile::tempdir().expect("tempdir");
    let rest = FakeDiscord::start().await;
    let mut gw = FakeGateway::start().await;

    // Run 1: every Identify is answered with op 9 false.
    let began = Instant::now();
    let svc = start_with_fakes(state.path(), &rest, &gw);
    let mut identifies = 0;
    for _ in 0..4 {
        let mut conn = gw.next_conn().await;
        let token = identify_then_invalidate(&mut conn).await;
        assert_eq!(token, TOKEN);
        identifies += 1;
    }
    assert_spaced(identifies, began.elapsed());
    assert!(
        rest.count("GET /gateway/bot") >= 1,
        "session_start_limit is asked for even with the URL overridden"
    );
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
    let first_run = ledger_times(state.path());
    assert_eq!(
        first_run.len(),
        identifies,
        "one ledger entry per identify: {first_run:?}"
    );

    // Run 2, same STATE_DIR: the ledger is read, kept and extended.
    let began = Instant::now();
    let svc = start_with_fakes(state.path(), &rest, &gw);
    let mut conn = gw.next_conn().await;
    identify_then_invalidate(&mut conn).await;
    let mut conn = gw.next_conn().await;
    identify_then_invalidate(&mut conn).await;
    assert_spaced(2, began.elapsed());
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
    let second_run = ledger_times(state.path());
    assert_eq!(second_run.len(), identifies + 2, "{second_run:?}");
    assert_eq!(
        &second_run[..identifies],
        &first_run[..],
        "the first run's identifies survived the restart"
    );

    // Run 3: a ledger holding a whole day's budget (1000 identifies just
    // now) is honoured: no connection at all, and health says why.
    let text = std::fs::read_to_string(state.path().join(LEDGER)).expect("ledger");
    let header = text.lines().next().expect("header line").to_string();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let mut full = format!("{header}\n");
    for i in 0..1000u64 {
        full.push_str(&format!("{}\n", now_ms - 60_000 + i));
    }
    std::fs::write(state.path().join(LEDGER), full).expect("write ledger");
    let connections = gw.connections();
    let svc = start_with_fakes(state.path(), &rest, &gw);
    let v = block_in_place(|| {
        wait_health(&svc, WAIT, |_, v| {
            v["gateway"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("identify budget"))
        })
    });
    let detail = v["gateway"]["detail"].as_str().unwrap_or_default();
    eprintln!("measured: gateway detail with a full ledger: {detail}");
    assert!(
        detail.contains("1000 identifies in the last 24 h") && detail.contains("until"),
        "{v}"
    );
    assert_eq!(v["gateway"]["ok"], false, "{v}");
    assert_eq!(
        v["status"], "ok",
        "a waiting gateway alone is not unhealthy: {v}"
    );
    // A few health periods later, still no connection.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        gw.connections(),
        connections,
        "no identify while the day's budget is spent"
    );
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
    let after = std::fs::read_to_string(state.path().join(LEDGER)).expect("ledger");
    assert_eq!(after.lines().count(), 1001, "waiting writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_start_limit_is_honoured_with_the_gateway_url_overridden() {
    let state = tempfile::tempdir().expect("tempdir");
    let rest = FakeDiscord::start().await;
    let gw = FakeGateway::start().await;
    let spent = json!({ "url": "wss://gateway.invalid", "shards": 1,
        "session_start_limit": { "total": 1000, "remaining": 0, "reset_after": 3_600_000, "max_concurrency": 1 } });
    rest.push_for("GET", "/gateway/bot", 1, Canned::json(200, spent));
    let svc = start_with_fakes(state.path(), &rest, &gw);
    let v = block_in_place(|| {
        wait_health(&svc, WAIT, |_, v| {
            v["gateway"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("identify budget"))
        })
    });
    let detail = v["gateway"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("session_start_limit") && detail.contains("until"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        gw.connections(),
        0,
        "no identify with session_start_limit.remaining 0"
    );
    assert_eq!(rest.count("GET /gateway/bot"), 1);
    assert!(
        !state.path().join(LEDGER).exists(),
        "the ledger is written only when an identify goes out"
    );
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
}
