//! Exactly one message per build, through the real binary against the
//! strict fake Discord, in the cases where a kinder Discord would hide a
//! duplicate: a create whose answer is lost followed by an outage longer
//! than the nonce window, a malformed 2xx on the create, the wall clock
//! stepping ±1 h while deliveries are in flight, a corrupt stored record,
//! and stores written by the previous releases.
//!
//! Waits are event-based (the fake's records, `/health`) with generous
//! timeouts; the few sleeps only let time pass (an outage, a clock step),
//! nothing asserts on how long anything took.
mod support;

use drone_discord::relay::reconcile;
use drone_discord::{drone, render};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::builds::build_update;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::{EmulatedLimit, FakeDiscord, Fault};
use support::fixtures::fixture_json;

const LONG: Duration = Duration::from_secs(120);

/// Update `n` of build `id` with `status`, from the real fixtures (the
/// commit message carries `n`, so versions can be told apart).
fn body(id: i64, n: usize, status: &str) -> Vec<u8> {
    let name = match status {
        "pending" => "build_created.json",
        "running" => "build_updated.json",
        "success" => "build_success.json",
        "failure" => "build_failure.json",
        other => panic!("no fixture for {other}"),
    };
    build_update(&fixture_json(name), id, n, status, |_| n % 3)
}

/// What the relay renders for `body`.
fn rendered(body: &[u8]) -> Value {
    let hook = drone::parse(body).expect("fixture parses");
    render::render(&hook).expect("fixture renders")
}

/// The build link a message of `body` carries (its marker).
fn link(body: &[u8]) -> String {
    reconcile::marker(&rendered(body))
        .expect("build messages have a link")
        .to_string()
}

/// The ids of the messages in the fake that show the build of `body`.
fn messages_of(fake: &FakeDiscord, body: &[u8]) -> Vec<String> {
    let want = link(body);
    fake.messages()
        .into_iter()
        .filter(|(_, m)| reconcile::marker(m) == Some(want.as_str()))
        .map(|(id, _)| id)
        .collect()
}

/// Whether message `id` shows what `body` renders to.
fn shows(fake: &FakeDiscord, id: &str, body: &[u8]) -> bool {
    let Some(msg) = fake.message(id) else {
        return false;
    };
    let want = rendered(body);
    want.as_object()
        .is_some_and(|o| o.iter().all(|(k, v)| msg.get(k) == Some(v)))
}

/// Exactly one message for the build of `last`, showing `last`.
fn assert_one_final(fake: &FakeDiscord, last: &[u8]) {
    let ids = messages_of(fake, last);
    assert_eq!(
        ids.len(),
        1,
        "one message per build: {ids:?}; calls {:?}",
        routes(fake)
    );
    assert!(
        shows(fake, &ids[0], last),
        "the message shows the final state: {:?}",
        fake.message(&ids[0])
    );
}

fn routes(fake: &FakeDiscord) -> Vec<(String, u16)> {
    fake.calls()
        .into_iter()
        .map(|c| (c.route, c.status))
        .collect()
}

/// Creates Discord processed (whatever answer, if any, got back).
fn processed_creates(fake: &FakeDiscord) -> usize {
    fake.calls()
        .iter()
        .filter(|c| c.method == "POST" && c.processed == Some(200))
        .count()
}

fn env(fake: &FakeDiscord, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    fake.set_token(TOKEN);
    let mut env = vec![
        ("DISCORD_TOKEN", TOKEN.to_string()),
        ("DISCORD_CHANNEL_ID", CHANNEL.to_string()),
        ("DISCORD_API_BASE_URL", fake.base_url()),
        ("NO_GATEWAY", "true".to_string()),
    ];
    env.extend(extra.iter().cloned());
    env
}

fn start(state: &Path, env: &[(&'static str, String)]) -> support::binary::Service {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    support::binary::start(state, &[], &env)
}

fn post(svc: &support::binary::Service, body: &[u8]) {
    let (status, answer) = svc.post_signed(body, SECRET);
    assert_eq!(status, 200, "{answer}");
}

fn health(svc: &support::binary::Service) -> Value {
    let (_, body) = svc.get("/health");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait::wait_for(what, LONG, cond)
}

fn drained(svc: &support::binary::Service) {
    wait_for("an empty queue", || health(svc)["queue"]["pending"] == 0);
}

/// Wait until some message of the build of `last` shows `last` (the queue
/// figures in /health lag by up to a second, so they cannot tell alone).
fn wait_final(fake: &FakeDiscord, last: &[u8]) {
    wait_for("the final state on Discord", || {
        messages_of(fake, last)
            .iter()
            .any(|id| shows(fake, id, last))
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Discord unreachable: every request (any route) is dropped unanswered,
/// unprocessed, until `clear_script`.
fn unreachable(fake: &FakeDiscord) {
    fake.push_fault(100_000, Fault::Drop);
}

// ---------------------------------------------------------------------------

/// A create is processed but its answer is lost; then Discord is unreachable
/// for longer than the nonce window (the binary trusts nonces for 1 s, the
/// fake then forgets them). The relay finds its message in the channel
/// instead of posting a second one, and edits it to the final state.
#[test]
fn lost_create_answer_then_an_outage_longer_than_the_nonce_window_posts_once() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.push_fault_for("POST", "/channels/", 1, Fault::ProcessThenDrop);
    unreachable(&fake);
    let state = tempfile::tempdir().expect("tempdir");
    let svc = start(
        state.path(),
        &env(&fake, &[("DISCORD_NONCE_WINDOW", "1".into())]),
    );
    post(&svc, &body(7, 0, "pending"));
    wait_for("the lost create and a dropped retry", || {
        fake.calls().len() >= 2
    });
    assert_eq!(fake.messages().len(), 1, "the create was processed");
    // Longer than the nonce window, on both sides.
    std::thread::sleep(Duration::from_secs(2));
    fake.forget_nonces();
    fake.clear_script();
    post(&svc, &body(7, 1, "running"));
    post(&svc, &body(7, 2, "success"));
    wait_final(&fake, &body(7, 2, "success"));
    drained(&svc);
    assert_one_final(&fake, &body(7, 2, "success"));
    assert_eq!(processed_creates(&fake), 1, "{:?}", routes(&fake));
    assert!(
        fake.count("GET /channels/{id}/messages") >= 1,
        "the channel was searched: {:?}",
        routes(&fake)
    );
    assert_eq!(health(&svc)["discord"]["ok"], true);
    assert_eq!(svc.sigterm(), Some(0));
}

/// The create is processed but answered 200 with an HTML page (a proxy in
/// the way). /health says so (without secrets) while Discord stays away;
/// the message is found and adopted, not posted again, and /health clears.
#[test]
fn a_malformed_2xx_on_the_create_posts_once_and_health_reports_it() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.push_fault_for("POST", "/channels/", 1, Fault::process_then_html());
    unreachable(&fake);
    let state = tempfile::tempdir().expect("tempdir");
    let svc = start(
        state.path(),
        &env(&fake, &[("DISCORD_NONCE_WINDOW", "0".into())]),
    );
    post(&svc, &body(8, 0, "pending"));
    let (status, h) = {
        let mut last = (0, Value::Null);
        wait_for("/health naming the malformed answer", || {
            let (s, b) = svc.get("/health");
            last = (s, serde_json::from_str(&b).unwrap_or(Value::Null));
            last.1["reason"]
                .as_str()
                .is_some_and(|r| r.contains("malformed"))
        });
        last
    };
    assert_eq!(status, 503, "{h}");
    let text = h.to_string();
    assert!(!text.contains(TOKEN) && !text.contains(SECRET), "{text}");
    assert_eq!(fake.messages().len(), 1, "the create was processed");
    fake.forget_nonces();
    fake.clear_script();
    post(&svc, &body(8, 1, "success"));
    wait_final(&fake, &body(8, 1, "success"));
    drained(&svc);
    assert_one_final(&fake, &body(8, 1, "success"));
    assert_eq!(processed_creates(&fake), 1, "{:?}", routes(&fake));
    wait_for("/health to clear", || health(&svc)["healthy"] == true);
    assert_eq!(svc.sigterm(), Some(0));
}

/// The wall clock steps +1 h, back, and -1 h while deliveries are queued
/// and in flight (a slow, rate-limited Discord): still one message per
/// build, each in its final state, every version in event order.
#[test]
fn wall_clock_steps_while_delivering_change_nothing() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 3,
        window: Duration::from_secs(1),
    }));
    let state = tempfile::tempdir().expect("tempdir");
    let clock = state.path().join("clock-offset");
    std::fs::write(&clock, "0").expect("write clock offset");
    let svc = start(
        state.path(),
        &env(
            &fake,
            &[
                (
                    drone_discord::clock::TEST_OFFSET_FILE_ENV,
                    clock.display().to_string(),
                ),
                // The test's webhooks carry the real time; the service's
                // clock is the one that steps.
                ("SIGNATURE_DATE_WINDOW", "0".into()),
                ("DISCORD_NONCE_WINDOW", "0".into()),
            ],
        ),
    );
    let builds = [(21i64, "success"), (22, "failure"), (23, "success")];
    let steps = ["3600", "0", "-3600"];
    for (n, step) in steps.iter().enumerate() {
        for (id, last) in builds {
            let status = if n == 0 {
                "pending"
            } else if n == 1 {
                "running"
            } else {
                last
            };
            post(&svc, &body(id, n, status));
        }
        // Step while these are being delivered.
        std::fs::write(&clock, step).expect("step the clock");
        std::thread::sleep(Duration::from_millis(300));
    }
    for (id, last) in builds {
        wait_final(&fake, &body(id, 2, last));
    }
    drained(&svc);
    for (id, last) in builds {
        let final_body = body(id, 2, last);
        assert_one_final(&fake, &final_body);
        let ids = messages_of(&fake, &final_body);
        let versions: Vec<Option<usize>> = fake
            .history(&ids[0])
            .iter()
            .map(|m| {
                m["embeds"][0]["description"]
                    .as_str()
                    .and_then(|d| d.rsplit("update ").next())
                    .and_then(|n| n.trim().parse().ok())
            })
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "build {id}: versions in event order: {versions:?}"
        );
    }
    assert_eq!(
        processed_creates(&fake),
        builds.len(),
        "{:?}",
        routes(&fake)
    );
    let h = health(&svc);
    assert_eq!(h["queue"]["dead_letters"], 0, "{h}");
    assert_eq!(svc.sigterm(), Some(0));
}

/// One stored event is garbage: it is set aside as a dead letter with the
/// reason (said once in the log, counted in /health), and every other
/// build is delivered; the store stays healthy throughout.
#[test]
fn a_corrupt_record_is_set_aside_and_every_other_build_is_delivered() {
    use drone_discord::store::embedded::{EmbeddedStore, FILE_NAME};
    use drone_discord::store::{build_key, NewEvent, Store};
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let state = tempfile::tempdir().expect("tempdir");
    let ids = [31i64, 32, 33];
    let mut seqs = Vec::new();
    rt.block_on(async {
        let store = EmbeddedStore::open(state.path()).expect("store");
        for id in ids {
            let b = body(id, 0, "pending");
            let appended = store
                .append(NewEvent {
                    key: Some(build_key("drone.kiwi-labs.net", 35, id)),
                    event: "build".into(),
                    action: "created".into(),
                    received_ms: drone_discord::store::now_ms(),
                    replay_key: None,
                    body: b,
                })
                .await
                .expect("append");
            seqs.push(appended.seq());
        }
    });
    {
        // Damage build 32's event in place: a truncated record.
        const EVENTS: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("events");
        let db = redb::Database::open(state.path().join(FILE_NAME)).expect("open redb");
        let txn = db.begin_write().expect("write");
        txn.open_table(EVENTS)
            .expect("events")
            .insert(seqs[1], &[1u8, 1, 2][..])
            .expect("insert");
        txn.commit().expect("commit");
    }
    let svc = start(state.path(), &env(&fake, &[]));
    let mut store_flapped = false;
    wait_for("both good builds delivered", || {
        store_flapped |= health(&svc)["store"]["ok"] == false;
        ids.iter()
            .filter(|id| **id != 32)
            .all(|id| messages_of(&fake, &body(*id, 0, "pending")).len() == 1)
    });
    drained(&svc);
    for id in [31, 33] {
        assert_one_final(&fake, &body(id, 0, "pending"));
    }
    assert!(messages_of(&fake, &body(32, 0, "pending")).is_empty());
    let h = health(&svc);
    assert_eq!(h["queue"]["dead_letters"], 1, "{h}");
    assert_eq!(h["healthy"], true, "{h}");
    assert!(!store_flapped, "the store never turned unhealthy");
    let log = svc.log_text();
    assert_eq!(
        log.matches("cannot be decoded").count(),
        1,
        "said once: {log}"
    );
    assert_eq!(svc.sigterm(), Some(0));
}

/// The real binary on a copy of a store written by release 0.1.0
/// (`test/fixtures/store/0.1.0.redb`): it migrates it and keeps editing the
/// builds' existing messages; no build already posted gets a new one.
#[test]
fn a_store_from_the_previous_release_keeps_editing_its_messages() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test/fixtures/store/0.1.0.redb"
        ),
        state.path().join(drone_discord::store::embedded::FILE_NAME),
    )
    .expect("copy the fixture");
    let env = env(&fake, &[]);
    let bot = json!({ "id": fake.bot_user_id(), "username": "fake-bot", "bot": true });
    // The messages release 0.1.0 posted (ids from the fixture's README).
    for (id, status) in [
        ("2088", "pending"),
        ("2087", "running"),
        ("2000", "success"),
    ] {
        let b = body(id.parse().expect("id"), 0, status_fixture(status));
        fake.seed_message_with_id(
            &format!("11000000000000{id:0>5}"),
            "111",
            bot.clone(),
            rendered(&b),
        );
    }
    let svc = start(state.path(), &env);
    // The pending update of build 2088 edits its existing message.
    let m2088 = "1100000000000002088";
    let running = serde_json::to_vec(&fixture_json("build_updated.json")).expect("json");
    wait_for("build 2088's message edited", || {
        shows(&fake, m2088, &running)
    });
    // New updates of builds posted by 0.1.0 edit their messages too.
    let done = serde_json::to_vec(&fixture_json("build_success.json")).expect("json");
    post(&svc, &done);
    let mut later = fixture_json("build_updated.json");
    later["build"]["id"] = 2087.into();
    later["build"]["number"] = 2087.into();
    let later = serde_json::to_vec(&later).expect("json");
    post(&svc, &later);
    wait_for("both builds' messages edited", || {
        shows(&fake, m2088, &done) && shows(&fake, "1100000000000002087", &later)
    });
    drained(&svc);
    // The only create is the queued user event (it never had a message).
    let creates: Vec<Value> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST")
        .filter_map(|c| c.body)
        .collect();
    assert_eq!(creates.len(), 1, "{:?}", routes(&fake));
    assert!(
        creates[0]["embeds"][0]["title"]
            .as_str()
            .is_some_and(|t| t.contains("User")),
        "{}",
        creates[0]
    );
    assert_eq!(svc.sigterm(), Some(0));
}

/// The real binary on a copy of a store written by the release before the
/// per-destination message map (`test/fixtures/store/schema2.redb`, schema
/// 2): it delivers the store's pending events by editing the builds'
/// existing messages, and finds the message of the create whose answer was
/// lost. That store's messages are in channel `111`, not this service's
/// `DISCORD_CHANNEL_ID`: a build's message stored under another destination
/// is still edited where it is, never posted again.
#[test]
fn a_store_from_before_the_per_destination_map_keeps_editing_its_messages() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let state = tempfile::tempdir().expect("tempdir");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/test/fixtures/store/schema2.redb"
        ),
        state.path().join(drone_discord::store::embedded::FILE_NAME),
    )
    .expect("copy the fixture");
    assert_ne!(CHANNEL, "111", "the stored messages are at another channel");
    let env = env(&fake, &[]);
    let bot = json!({ "id": fake.bot_user_id(), "username": "fake-bot", "bot": true });
    // What the fixture's writer stored (its README): a fixture webhook with
    // the build's id and number.
    let hook = |file: &str, id: i64| {
        let mut v = fixture_json(file);
        v["build"]["id"] = id.into();
        v["build"]["number"] = id.into();
        serde_json::to_vec(&v).expect("json")
    };
    // The messages the previous release posted, with the ids it stored.
    for (id, file) in [
        (2088, "build_created.json"),
        (2087, "build_updated.json"),
        (2000, "build_success.json"),
    ] {
        fake.seed_message_with_id(
            &format!("11000000000000{id:0>5}"),
            "111",
            bot.clone(),
            rendered(&hook(file, id)),
        );
    }
    // Build 2089's create reached Discord; its answer did not.
    let m2089 = fake.seed_message(
        "111",
        bot.clone(),
        rendered(&hook("build_created.json", 2089)),
    );
    let svc = start(state.path(), &env);
    // The two pending events edit their builds' messages.
    let m2088 = "1100000000000002088";
    let (updated, created) = (
        hook("build_updated.json", 2088),
        hook("build_created.json", 2089),
    );
    wait_for("the pending events delivered", || {
        shows(&fake, m2088, &updated) && shows(&fake, &m2089, &created)
    });
    // New updates of builds the previous release posted edit their messages.
    let (done, later) = (body(2088, 1, "success"), body(2087, 1, "running"));
    post(&svc, &done);
    post(&svc, &later);
    wait_final(&fake, &done);
    wait_final(&fake, &later);
    drained(&svc);
    for last in [&done, &later, &created] {
        assert_one_final(&fake, last);
    }
    let calls = routes(&fake);
    assert!(
        fake.calls().iter().all(|c| c.method != "POST"),
        "no build that had a message is posted again: {calls:?}"
    );
    assert!(
        fake.calls()
            .iter()
            .filter(|c| c.method == "PATCH")
            .all(|c| c.path.starts_with("/channels/111/")),
        "edited where the messages are: {calls:?}"
    );
    assert_eq!(svc.sigterm(), Some(0));
}

/// A status the build fixtures have a file for (0.1.0's messages only need
/// to exist; their content is replaced by the first edit).
fn status_fixture(status: &str) -> &str {
    match status {
        "pending" | "running" | "success" => status,
        _ => "pending",
    }
}
