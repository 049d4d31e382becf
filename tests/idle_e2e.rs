//! End-to-end: an idle service does not write to its state directory.
//!
//! On a Pi the state directory is on an SD card, and small synced writes
//! are what wears one out. Idle (no webhooks, no deliveries, no gateway
//! identify) the store's health check and the systemd watchdog's liveness
//! check must therefore find out that the store can write without writing:
//! `statvfs` for a full or read-only disk, the last real commit as proof.
//!
//! The evidence is the state directory itself: the names, sizes and mtimes
//! of its files and the directory's own mtime (which any file created or
//! removed in it changes). A commit changes the database file's mtime, so a
//! probe commit or a scratch file every few seconds cannot pass. The
//! service first does real work (a webhook, delivered; the gateway's
//! identify), then stays idle for several store checks (every 5 s) and many
//! watchdog pings (every 0.5 s), each of which runs the liveness check.
mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use support::binary::{start, wait_health, Service};
use support::builds::build_created;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::FakeDiscord;
use support::fake_gateway::FakeGateway;
use support::watchdog::Watchdog;
use tokio::task::block_in_place;

/// WatchdogSec=1: a ping, each after a liveness check, every 0.5 s.
const WATCHDOG_1S: &str = "1000000";

/// Generous wait for anything the service should do on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);
/// How long the service is left idle: three store checks (every 5 s) and
/// then some. Not a timing assertion: a slower machine only checks less.
const IDLE: Duration = Duration::from_secs(16);
/// Longest wait for the real work's last write before the idle period.
const SETTLE: Duration = Duration::from_secs(10);
/// Watchdog pings that must arrive during the idle period (one per 0.5 s),
/// so the liveness check demonstrably ran.
const MIN_PINGS: usize = 10;

/// One entry of the state directory: name, size, mtime.
type Entry = (String, u64, SystemTime);

/// The directory's own mtime and every file in it, sorted by name.
fn snapshot(dir: &Path) -> (SystemTime, Vec<Entry>) {
    let own = std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .expect("state dir mtime");
    let mut entries: Vec<Entry> = std::fs::read_dir(dir)
        .expect("read state dir")
        .map(|e| {
            let e = e.expect("dir entry");
            let m = e.metadata().expect("metadata");
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().expect("mtime"),
            )
        })
        .collect();
    entries.sort();
    (own, entries)
}

/// The real work's last commit may land a moment after the evidence the
/// test waits for (`/health`'s queue figures are refreshed once a second):
/// wait (up to [`SETTLE`]) until the directory has stood still for a second.
/// This only picks the start of the idle period; a service that keeps
/// writing never settles and then fails the comparison that follows.
fn settled(state: &Path) -> (SystemTime, Vec<Entry>) {
    let deadline = Instant::now() + SETTLE;
    let mut last = snapshot(state);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let now = snapshot(state);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Settle, stay idle, snapshot again: nothing in the state directory may
/// have changed, and the watchdog must have pinged throughout.
fn assert_idle_writes_nothing(svc: &Service, state: &Path, dog: &Watchdog) {
    let before = settled(state);
    let pings_before = dog.pings();
    let started = Instant::now();
    dog.wait_pings(pings_before + MIN_PINGS, WAIT);
    std::thread::sleep(IDLE.saturating_sub(started.elapsed()));
    let after = snapshot(state);
    let (status, body) = svc.get("/health");
    assert_eq!(status, 200, "healthy throughout: {body}");
    assert_eq!(
        before, after,
        "an idle service changed its state directory (mtime of the directory, then name/size/mtime per file)"
    );
    eprintln!(
        "measured: {} watchdog pings, no change to {} files in {:.1} s idle",
        dog.pings() - pings_before,
        after.1.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn idle_dry_run_writes_nothing_to_the_state_dir() {
    let state = tempfile::tempdir().expect("tempdir");
    let dog = Watchdog::start();
    let svc = start(state.path(), &["--dry-run"], &dog.env(WATCHDOG_1S));
    // Real work first: one webhook, delivered (to the dry-run log).
    let (status, body) = svc.post_signed(&build_created(4_242, 42), SECRET);
    assert_eq!(status, 200, "{body}");
    svc.wait_log("dry-run: would create message", 1, WAIT);
    wait_health(&svc, WAIT, |s, v| s == 200 && v["queue"]["pending"] == 0);
    dog.wait_pings(1, WAIT);
    assert_idle_writes_nothing(&svc, state.path(), &dog);
    assert_eq!(svc.sigterm(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_with_the_gateway_connected_writes_nothing_to_the_state_dir() {
    let state = tempfile::tempdir().expect("tempdir");
    let dog = Watchdog::start();
    let rest = FakeDiscord::start().await;
    let mut gw = FakeGateway::start().await;
    rest.set_token(TOKEN);
    let (base, url) = (rest.base_url(), gw.url());
    let mut env = vec![
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", base.as_str()),
        ("DISCORD_GATEWAY_URL", url.as_str()),
        // The presence's own /health check, every second: no write either.
        ("HEALTHCHECK_INTERVAL", "1"),
    ];
    env.extend(dog.env(WATCHDOG_1S));
    let svc = block_in_place(|| start(state.path(), &[], &env));
    let mut conn = tokio::time::timeout(WAIT, gw.next_conn())
        .await
        .expect("the service connects to the gateway");
    // Heartbeats every 0.5 s, ACKed by the fake, throughout the idle period.
    conn.hello(500);
    tokio::time::timeout(WAIT, conn.expect_op(2))
        .await
        .expect("Identify");
    conn.ready(1, "session-idle", &gw.resume_url());
    block_in_place(|| {
        wait_health(&svc, WAIT, |s, v| {
            s == 200 && v["gateway"]["ok"] == true && v["gateway"]["detail"] == "connected"
        });
        dog.wait_pings(1, WAIT);
        assert_idle_writes_nothing(&svc, state.path(), &dog);
    });
    assert_eq!(
        gw.connections(),
        1,
        "one gateway connection throughout, no new identify"
    );
    assert_eq!(block_in_place(|| svc.sigterm()), Some(0));
}
