//! Scenario 1, crashes: a burst of events over many builds, with the fake
//! Discord's rate limit on, while the service is killed at random moments
//! and restarted each time: SIGKILL (nothing runs after it; only what was
//! committed survives) and SIGTERM (a clean stop that must also lose
//! nothing). A moment is one of: after a random number of webhooks
//! answered, after a random number of Discord calls, or after a random
//! delay, so kills land in intake, in delivery and in between.
use crate::common::{runtime, service_env, start_service, wait_delivered, wait_for, IN_FLIGHT};
use crate::support::binary::Service;
use crate::support::fake_discord::{EmulatedLimit, FakeDiscord};
use crate::support::faults::checker::{check, delivered, Bound};
use crate::support::faults::drone::{Drone, Plan};
use crate::support::faults::knobs::Knobs;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Signal {
    Kill,
    Term,
}

fn crashes(scenario: &'static str, signal: Signal) {
    let knobs = Knobs::from_env(scenario);
    let mut rng = knobs.rng();
    let builds = knobs.figure("FAULTS_BUILDS", 20, 100);
    let per_build = knobs.figure("FAULTS_EVENTS", 10, 10);
    let kills = knobs.figure("FAULTS_KILLS", 5, 20) as usize;
    let plan = Plan::new(&mut rng.fork(1), builds, per_build);
    let mut moments = rng.fork(2);

    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    // A slow Discord: 5 message writes per second on the channel.
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 5,
        window: Duration::from_secs(1),
    }));
    let state = tempfile::tempdir().expect("tempdir");
    let env = service_env(&fake);
    let drone = Arc::new(Drone::new(plan));
    let mut svc: Service = start_service(state.path(), &env);
    drone.set_addr(Some(svc.addr.clone()));
    let poster = {
        let drone = drone.clone();
        std::thread::spawn(move || drone.post_all())
    };

    let events = drone.plan.events();
    let mut log = Vec::new();
    for k in 1..=kills {
        // Pick the moment.
        let (what, deadline) = match moments.below(3) {
            0 => {
                let n = drone.accepted_count()
                    + moments.between(1, (events / kills).max(2) as u64) as usize;
                let until = || drone.accepted_count() >= n || drone.done();
                (format!("after webhook {n}"), wait_until(until))
            }
            1 => {
                let n = fake.calls().len() + moments.between(1, 12) as usize;
                let until = || fake.calls().len() >= n || delivered(&fake, &drone);
                (format!("after Discord call {n}"), wait_until(until))
            }
            _ => {
                let d = moments.millis(20, 1500);
                std::thread::sleep(d);
                (format!("{} ms after the start", d.as_millis()), true)
            }
        };
        drone.set_addr(None);
        let calls = fake.calls().len();
        match signal {
            Signal::Kill => svc.sigkill(),
            Signal::Term => {
                let code = svc.sigterm();
                assert_eq!(code, Some(0), "{scenario}: SIGTERM {k} must exit 0");
            }
        }
        log.push(format!(
            "{k}: {what}{} ({} answered, {calls} calls)",
            if deadline { "" } else { " (not reached)" },
            drone.accepted_count()
        ));
        svc = start_service(state.path(), &env);
        drone.set_addr(Some(svc.addr.clone()));
    }
    eprintln!(
        "faults: {scenario}: {kills} × {signal:?}: {}",
        log.join("; ")
    );
    wait_for("the poster", crate::common::DRAIN, || drone.done());
    poster.join().expect("poster thread");
    wait_delivered(&fake, &drone, &svc);

    let starts = kills + 1;
    let bound = Bound::new()
        .add(
            "one create or edit per event answered 200",
            drone.accepted_count(),
        )
        .add(
            &format!("{IN_FLIGHT} deliveries in flight repeated per stop"),
            kills * IN_FLIGHT,
        )
        .add(
            &format!("{IN_FLIGHT} calls per start before a bucket is known (429s)"),
            starts * IN_FLIGHT,
        )
        .limited(starts * IN_FLIGHT);
    check(scenario, &fake, &drone, &bound);
    eprintln!("faults: {scenario}: survived {kills} × {signal:?}");
    assert_eq!(svc.sigterm(), Some(0));
}

/// Wait (at most 20 s) until `cond`; whether it was reached.
fn wait_until(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn sigkill_at_random_moments_mid_burst_loses_nothing() {
    crashes("crashes-sigkill", Signal::Kill);
}

#[test]
fn sigterm_at_random_moments_mid_burst_loses_nothing() {
    crashes("crashes-sigterm", Signal::Term);
}
