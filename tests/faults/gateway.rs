//! Scenario 4, gateway faults, while a small burst is delivered: on each
//! connection the fake gateway does one thing at random: closes with a
//! close code (every non-fatal one Discord sends, and 1000/1001/1011),
//! withholds heartbeat ACKs (a zombie connection), sends op 7 (reconnect)
//! or op 9 (invalid session, resumable or not); every sixth session is left
//! stable for a minute first, which resets the client's reconnect backoff. The identify budget (at
//! most one per 5 s, every one in the ledger file) is never exceeded, the
//! service stays healthy throughout, and the presence ends "online,
//! Watching Drone". Then a fatal close code (4004, 4010–4014; CI picks one,
//! `long` tries each): the gateway stays stopped, and `/health` says so
//! while the service stays healthy.
use crate::common::{health, service_env, start_service, wait_delivered, WAIT};
use crate::support::binary::{wait_health, Service};
use crate::support::fake_discord::FakeDiscord;
use crate::support::fake_gateway::{is_watching_drone, FakeConn, FakeGateway, Got};
use crate::support::faults::checker::{check, Bound};
use crate::support::faults::drone::{Drone, Plan};
use crate::support::faults::knobs::Knobs;
use crate::support::faults::rng::Rng;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const BEAT_MS: u64 = 1000;
/// A client backing off after many failed connections can take a while.
const RECONNECT: Duration = Duration::from_secs(120);
/// After this many faulty rounds, one stable session ...
const CALM_EVERY: usize = 6;
/// ... this long (the gateway's `stable_after` is 60 s).
const STABLE: Duration = Duration::from_secs(62);
const LEDGER: &str = "gateway-identify-ledger";
/// Close codes after which a client may reconnect.
const NON_FATAL: [u16; 11] = [
    1000, 1001, 1011, 4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009,
];
const FATAL: [u16; 6] = [4004, 4010, 4011, 4012, 4013, 4014];

fn start_with_gateway(state: &Path, rest: &FakeDiscord, gw: &FakeGateway) -> Service {
    let mut env = service_env(rest);
    env.retain(|(k, _)| k != "NO_GATEWAY");
    env.push(("DISCORD_GATEWAY_URL".into(), gw.url()));
    tokio::task::block_in_place(|| start_service(state, &env))
}

/// Hello, then answer the client's Identify (READY, a new session) or
/// Resume (RESUMED if the session is valid; the fake itself answers op 9
/// otherwise, and the client may then identify on this connection).
/// Returns the presence an Identify carried, or None once the client closed.
async fn establish(
    conn: &mut FakeConn,
    gw: &FakeGateway,
    session: &mut u64,
    seq: &mut u64,
) -> Option<Option<Value>> {
    conn.hello(BEAT_MS);
    loop {
        match tokio::time::timeout(Duration::from_secs(30), conn.recv())
            .await
            .ok()?
        {
            Got::Frame(v) if v["op"] == 2 => {
                *session += 1;
                *seq += 1;
                conn.ready(*seq, &format!("fault-session-{session}"), &gw.resume_url());
                return Some(Some(v["d"]["presence"].clone()));
            }
            Got::Frame(v) if v["op"] == 6 => {
                let sid = v["d"]["session_id"].as_str().unwrap_or_default();
                if gw.session_valid(sid) == Some(true) {
                    *seq += 1;
                    conn.dispatch(*seq, "RESUMED");
                    return Some(None);
                }
                // The fake answered op 9 false; an Identify may follow here.
            }
            Got::Frame(_) => {}
            Got::Closed(_) => return None,
        }
    }
}

/// Frames until the client closes (or stops talking for 30 s).
async fn until_closed(conn: &mut FakeConn) {
    let _ = tokio::time::timeout(Duration::from_secs(30), conn.expect_closed()).await;
}

/// One fault on an established connection; its name.
async fn fault(conn: &mut FakeConn, rng: &mut Rng) -> String {
    match rng.below(5) {
        0 | 1 => {
            let code = *rng.pick(&NON_FATAL);
            conn.close(code);
            until_closed(conn).await;
            format!("close {code}")
        }
        2 => {
            conn.withhold_acks(true);
            until_closed(conn).await;
            "ACKs withheld".into()
        }
        3 => {
            conn.send(json!({"op": 7, "d": null, "s": null, "t": null}));
            until_closed(conn).await;
            "op 7".into()
        }
        _ => {
            let resumable = rng.chance(50);
            conn.send(json!({"op": 9, "d": resumable, "s": null, "t": null}));
            // The client reconnects, or identifies/resumes on this connection.
            let closed = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match conn.recv().await {
                        Got::Frame(v) if v["op"] == 2 || v["op"] == 6 => return false,
                        Got::Frame(_) => {}
                        Got::Closed(_) => return true,
                    }
                }
            })
            .await
            .unwrap_or(true);
            if !closed {
                // Answered on the same connection: end it to go on.
                conn.close(4000);
                until_closed(conn).await;
            }
            format!("op 9 {resumable}")
        }
    }
}

/// The ledger's Identify times (ms since the epoch), after its header line.
fn ledger_times(state: &Path) -> Vec<u64> {
    std::fs::read_to_string(state.join(LEDGER))
        .map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ledger_entries(state: &Path) -> usize {
    ledger_times(state).len()
}

/// Discord's identify spacing (`max_concurrency` 1 per 5 s), in ms.
const SPACING_MS: u64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_close_code_withheld_acks_op7_and_op9_keep_the_budget_and_the_service_healthy() {
    let knobs = Knobs::from_env("gateway");
    let mut rng = knobs.rng();
    let rounds = knobs.figure("FAULTS_ROUNDS", 5, 18) as usize;
    let plan = Plan::new(&mut rng.fork(1), knobs.figure("FAULTS_BUILDS", 5, 20), 4);
    let mut faults = rng.fork(2);
    let fatal: Vec<u16> = if knobs.long {
        FATAL.to_vec()
    } else {
        vec![*faults.pick(&FATAL)]
    };

    let state = tempfile::tempdir().expect("tempdir");
    let rest = FakeDiscord::start().await;
    let mut gw = FakeGateway::start().await;
    let svc = start_with_gateway(state.path(), &rest, &gw);
    let drone = Arc::new(Drone::new(plan));
    drone.set_addr(Some(svc.addr.clone()));
    let poster = {
        let drone = drone.clone();
        std::thread::spawn(move || drone.post_all())
    };

    let (mut session, mut seq) = (0u64, 0u64);
    let mut done = Vec::new();
    let mut unhealthy = Vec::new();
    for round in 1..=rounds {
        let mut conn = gw.next_conn_within(RECONNECT).await;
        if establish(&mut conn, &gw, &mut session, &mut seq)
            .await
            .is_none()
        {
            done.push("closed by the client before READY".to_string());
            continue;
        }
        if round % CALM_EVERY == 0 {
            // A session that lasts resets the client's reconnect backoff,
            // which otherwise grows to a minute after a run of faults.
            tokio::time::sleep(STABLE).await;
            done.push("a stable session".into());
        }
        done.push(fault(&mut conn, &mut faults).await);
        let (status, h) = tokio::task::block_in_place(|| health(&svc));
        if status != 200 {
            unhealthy.push(h.to_string());
        }
    }
    // Calm again: a fresh session (the last one is ended, so the client
    // identifies and shows its presence).
    for s in 1..=session {
        gw.invalidate_session(&format!("fault-session-{s}"));
    }
    let presence = loop {
        let mut conn = gw.next_conn_within(RECONNECT).await;
        if let Some(Some(p)) = establish(&mut conn, &gw, &mut session, &mut seq).await {
            // The Identify's presence, or the op 3 that follows it.
            if is_watching_drone(&p) {
                break (p, conn);
            }
            let got = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    match conn.recv().await {
                        Got::Frame(v) if v["op"] == 3 && is_watching_drone(&v["d"]) => {
                            return Some(v["d"].clone())
                        }
                        Got::Frame(_) => {}
                        Got::Closed(_) => return None,
                    }
                }
            })
            .await
            .ok()
            .flatten();
            if let Some(p) = got {
                break (p, conn);
            }
        }
    };
    let (p, mut conn) = presence;
    let identifies = gw.identifies();
    let per_5s = gw.max_identifies_per_5s();
    let ledger = ledger_entries(state.path());
    eprintln!(
        "faults: gateway: {rounds} rounds: {}; {identifies} identifies ({} resumes), at most {per_5s} arrived within any 5 s, {ledger} in the ledger; presence {}",
        done.join(", "),
        gw.resumes(),
        p["status"]
    );
    assert!(
        unhealthy.is_empty(),
        "gateway faults made the service unhealthy: {unhealthy:?}"
    );
    // The budget is the client's own decision, recorded in the ledger with
    // its time: consecutive Identifies at least 5 s apart. (The fake's
    // arrival times add the machine's scheduling delays, so they are only
    // printed above.)
    let times = ledger_times(state.path());
    let closest = times.windows(2).map(|w| w[1] - w[0]).min();
    eprintln!("faults: gateway: closest Identifies in the ledger: {closest:?} ms apart");
    assert!(
        closest.map_or(true, |c| c >= SPACING_MS),
        "Identifies closer than 5 s in the ledger: {times:?}"
    );
    assert_eq!(ledger, identifies, "every identify is in the ledger");

    // The burst went through regardless.
    tokio::task::block_in_place(|| {
        crate::common::wait_for("the poster", crate::common::DRAIN, || drone.done());
    });
    poster.join().expect("poster");
    tokio::task::block_in_place(|| wait_delivered(&rest, &drone, &svc));
    let bound = Bound::new()
        .add(
            "one create or edit per event answered 200",
            drone.accepted_count(),
        )
        .add("GET /gateway/bot per connection", gw.connections() + 1);
    check("gateway", &rest, &drone, &bound);

    // A fatal close code: the gateway stops for good, the service stays healthy.
    let mut svc = svc;
    for (i, code) in fatal.iter().enumerate() {
        if i > 0 {
            assert_eq!(tokio::task::block_in_place(|| svc.sigterm()), Some(0));
            svc = start_with_gateway(state.path(), &rest, &gw);
            conn = gw.next_conn_within(RECONNECT).await;
            establish(&mut conn, &gw, &mut session, &mut seq).await;
        }
        conn.close(*code);
        until_closed(&mut conn).await;
        let needle = code.to_string();
        let v = tokio::task::block_in_place(|| {
            wait_health(&svc, WAIT, |_, v| {
                v["gateway"]["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&needle))
            })
        });
        assert_eq!(
            v["status"], "ok",
            "a fatal gateway close alone is not unhealthy: {v}"
        );
        assert_eq!(v["gateway"]["ok"], false, "{v}");
        let again = gw.try_next_conn(Duration::from_secs(8)).await;
        assert!(again.is_none(), "close {code} is fatal: no reconnect");
        eprintln!(
            "faults: gateway: close {code}: stopped; /health gateway: {}",
            v["gateway"]["detail"]
        );
    }
    assert_eq!(tokio::task::block_in_place(|| svc.sigterm()), Some(0));
}
