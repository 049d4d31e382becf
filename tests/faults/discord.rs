//! Scenario 3, Discord faults, one after the other while a burst is being
//! delivered: connection refused (nothing listens), timeouts (connections
//! accepted, never answered, past the client's 30 s request timeout), 5xx,
//! 429 storms with rate-limit headers and without, answers lost after the
//! work was done, then Discord is back. Everything must be delivered, and
//! the calls made in each phase must stay within what the relay's backoff
//! allows (each phase lasts until it answered a few calls, as the backoff
//! grows; `src/backoff.rs`: per key, the wait before retry n is at least
//! half of min(60 s, 0.5 s · 2^(n−1)); the REST client repeats a call after
//! a 429 at most 3 times): printed per phase.
use crate::common::{
    runtime, service_env, start_service, wait_delivered, wait_for, IN_FLIGHT, WAIT,
};
use crate::support::fake_discord::{Canned, FakeDiscord, Fault};
use crate::support::faults::checker::{check, Bound};
use crate::support::faults::drone::{Drone, Plan};
use crate::support::faults::knobs::Knobs;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The relay's backoff (`RelayConfig::new`): first step and cap.
const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(60);
/// Calls one delivery attempt may make when every answer is a 429
/// (`RestTuning::max_429_retries` + 1).
const CALLS_PER_ATTEMPT_429: usize = 4;

/// Attempts one key can make within `t` of its first failure: the first at
/// once, retry n after at least half of min(CAP, BASE · 2^(n−1)).
fn attempts_within(t: Duration) -> usize {
    let mut elapsed = Duration::ZERO;
    let mut n = 1usize;
    loop {
        let ceiling = BASE.saturating_mul(1u32 << (n - 1).min(20)).min(CAP);
        elapsed += ceiling / 2;
        if elapsed > t {
            return n;
        }
        n += 1;
    }
}

/// A phase goes on until it saw this many calls, or for at most
/// a while (CI 30 s, long 90 s).
const PHASE_CALLS: usize = 3;

struct Phase {
    name: String,
    length: Duration,
    calls_per_attempt: usize,
}

#[test]
fn refused_timeouts_5xx_429_storms_and_lost_answers_then_everything_is_delivered() {
    let knobs = Knobs::from_env("discord-outage");
    let mut rng = knobs.rng();
    let builds = knobs.figure("FAULTS_BUILDS", 10, 40);
    let per_build = knobs.figure("FAULTS_EVENTS", 6, 10);
    let plan = Plan::new(&mut rng.fork(1), builds, per_build);
    let mut faults = rng.fork(2);
    let short = |ci: u64, long: u64| Duration::from_secs(if knobs.long { long } else { ci });

    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let state = tempfile::tempdir().expect("tempdir");
    let env = service_env(&fake);
    let svc = start_service(state.path(), &env);
    let drone = Arc::new(Drone::new(plan));
    drone.set_addr(Some(svc.addr.clone()));
    let poster = {
        let drone = drone.clone();
        std::thread::spawn(move || drone.post_all())
    };
    // The outage begins once delivery has: most of the burst is still to go.
    wait_for("the first message", WAIT, || !fake.messages().is_empty());

    let code_5xx = *faults.pick(&[500u16, 502, 503, 504]);
    let retry_after = faults.between(5, 30) as f64 / 10.0;
    let global = faults.chance(50);
    let phases = [
        Phase {
            name: "connection refused".into(),
            length: short(4, 15),
            calls_per_attempt: 1,
        },
        // The client gives up on a call after 30 s: one timeout at least.
        Phase {
            name: "timeouts (accepted, never answered)".into(),
            length: short(32, 65),
            calls_per_attempt: 1,
        },
        Phase {
            name: format!("{code_5xx}s"),
            length: short(4, 15),
            calls_per_attempt: 1,
        },
        Phase {
            name: format!("429 storm with headers (retry_after {retry_after} s, global {global})"),
            length: short(5, 15),
            calls_per_attempt: CALLS_PER_ATTEMPT_429,
        },
        Phase {
            name: format!("429 storm without headers (retry_after {retry_after} s)"),
            length: short(5, 15),
            calls_per_attempt: CALLS_PER_ATTEMPT_429,
        },
        Phase {
            name: "answers lost after the work was done".into(),
            length: short(4, 15),
            calls_per_attempt: 1,
        },
    ];
    let began = Instant::now();
    let keys = drone.plan.builds.len();
    let mut report = Vec::new();
    for (i, phase) in phases.iter().enumerate() {
        fake.clear_script();
        match i {
            0 => fake.stop_listening(),
            1 => {
                rt.block_on(fake.listen_again());
                fake.always_fault(Fault::Stall);
            }
            2 => fake.always(Canned::status(code_5xx)),
            3 => fake.always(Canned::rate_limited(retry_after, global)),
            4 => fake.always(Canned::json(
                429,
                json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": false }),
            )),
            _ => fake.always_fault(Fault::ProcessThenDrop),
        }
        let from = began.elapsed();
        let calls_before = fake.calls().len();
        std::thread::sleep(phase.length);
        // Backoff grows through the outage: a phase lasts until its fault
        // answered a few calls (refused connections are never recorded).
        let until = Instant::now() + short(30, 90);
        while i > 0 && fake.calls().len() - calls_before < PHASE_CALLS && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        let to = began.elapsed();
        let calls = fake.calls().len() - calls_before;
        // Per key: the attempts that can start within the phase, at most
        // those of a key whose first failure opens it (later gaps are longer).
        let allowed = keys * attempts_within(to - from) * phase.calls_per_attempt;
        report.push(format!(
            "{}: {:.0}–{:.0} s, {calls} calls (backoff allows {allowed})",
            phase.name,
            from.as_secs_f64(),
            to.as_secs_f64()
        ));
        assert!(
            calls <= allowed,
            "{}: {calls} calls, more than the backoff allows ({allowed})",
            phase.name
        );
    }
    fake.clear_script();
    let outage = began.elapsed();
    // Over the whole outage: per key, the attempts since its first failure.
    let allowed_total = keys * attempts_within(outage) * CALLS_PER_ATTEMPT_429;
    eprintln!(
        "faults: discord-outage: {} keys, {:.0} s of outage: {}; the backoff allows {allowed_total} in all",
        keys,
        outage.as_secs_f64(),
        report.join("; ")
    );
    wait_for("the poster", crate::common::DRAIN, || drone.done());
    poster.join().expect("poster");
    let t_back = Instant::now();
    wait_delivered(&fake, &drone, &svc);
    eprintln!(
        "faults: discord-outage: delivered {:.1} s after Discord came back",
        t_back.elapsed().as_secs_f64()
    );
    let bound = Bound::new()
        .add(
            "one create or edit per event answered 200",
            drone.accepted_count(),
        )
        .add("calls the backoff allows during the outage", allowed_total)
        .add("deliveries in flight when it ended", IN_FLIGHT)
        .limited(IN_FLIGHT);
    check("discord-outage", &fake, &drone, &bound);
    assert_eq!(svc.sigterm(), Some(0));
}
