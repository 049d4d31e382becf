//! Scenario 6, clock faults: the service's wall clock steps forward and back
//! by an hour, at random moments, while a burst is delivered under the fake
//! Discord's rate limit (whose `X-RateLimit-Reset` is an epoch time).
//!
//! The binary has no injectable clock, so the step is made with libfaketime
//! (`LD_PRELOAD`): it does not apply to the static Pi binary, but the test
//! binary cargo builds here is dynamically linked. The offset is read from
//! a file on every call (`FAKETIME_NO_CACHE=1`) and only the wall clock is
//! faked (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as an NTP step would. The
//! webhooks are signed on the service's clock (a Drone on the same host),
//! so the signature date window still passes; the step itself is checked
//! through the service's `Date` header before the burst.
use crate::common::{
    runtime, service_env, start_service, wait_delivered, wait_for, IN_FLIGHT, WAIT,
};
use crate::support::fake_discord::{EmulatedLimit, FakeDiscord};
use crate::support::faults::checker::{check, Bound};
use crate::support::faults::drone::{Drone, Plan};
use crate::support::faults::knobs::Knobs;
use crate::support::raw_http::http_full;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LIBFAKETIME: [&str; 3] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
];

fn libfaketime() -> Option<PathBuf> {
    LIBFAKETIME.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The offset the service's wall clock runs at.
fn set_offset(file: &Path, secs: i64) {
    std::fs::write(file, format!("{secs:+}\n")).expect("write the faketime file");
}

/// The service's clock, from its `Date` header, minus ours (seconds).
fn service_clock_offset(addr: &str) -> Option<i64> {
    let (_, headers, _) = http_full(
        addr,
        b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let date = headers.iter().find(|(k, _)| k == "date")?.1.clone();
    let theirs = drone_discord::httpdate::parse(&date)?;
    let ours = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    let theirs = theirs.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(theirs - ours)
}

#[test]
fn wall_clock_steps_an_hour_forward_and_back_during_deliveries() {
    let Some(lib) = libfaketime() else {
        eprintln!(
            "skipping clock faults: libfaketime not found (apt-get install faketime); looked in {LIBFAKETIME:?}"
        );
        return;
    };
    let knobs = Knobs::from_env("clock");
    let mut rng = knobs.rng();
    let plan = Plan::new(
        &mut rng.fork(1),
        knobs.figure("FAULTS_BUILDS", 10, 40),
        knobs.figure("FAULTS_EVENTS", 8, 10),
    );
    let steps = knobs.figure("FAULTS_ROUNDS", 4, 12) as usize;
    let mut moments = rng.fork(2);

    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 5,
        window: Duration::from_secs(1),
    }));
    let state = tempfile::tempdir().expect("tempdir");
    let clock_dir = tempfile::tempdir().expect("tempdir");
    let clock = clock_dir.path().join("offset");
    set_offset(&clock, 0);
    let mut env = service_env(&fake);
    env.extend([
        ("LD_PRELOAD".to_string(), lib.to_string_lossy().into_owned()),
        (
            "FAKETIME_TIMESTAMP_FILE".to_string(),
            clock.to_string_lossy().into_owned(),
        ),
        ("FAKETIME_NO_CACHE".to_string(), "1".to_string()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".to_string(), "1".to_string()),
    ]);
    let svc = start_service(state.path(), &env);

    // Does the step reach the service?
    set_offset(&clock, 3600);
    let seen = service_clock_offset(&svc.addr);
    if !seen.is_some_and(|s| (3500..3700).contains(&s)) {
        eprintln!("skipping clock faults: libfaketime did not step the service's clock (offset seen {seen:?})");
        return;
    }
    set_offset(&clock, 0);
    wait_for("the clock back", WAIT, || {
        service_clock_offset(&svc.addr).is_some_and(|s| s.abs() < 100)
    });

    let drone = Arc::new(Drone::new(plan));
    drone.set_addr(Some(svc.addr.clone()));
    let poster = {
        let drone = drone.clone();
        std::thread::spawn(move || drone.post_all())
    };
    wait_for("the first message", WAIT, || !fake.messages().is_empty());
    let mut offset = 0i64;
    let mut done = Vec::new();
    for _ in 0..steps {
        std::thread::sleep(moments.millis(200, 2000));
        // Forward or back by an hour, within ±2 h of the true time.
        let step = if offset >= 7200 || (offset > -7200 && moments.chance(50)) {
            -3600
        } else {
            3600
        };
        drone.hold_and_wait();
        offset += step;
        set_offset(&clock, offset);
        drone.set_clock_offset(offset);
        drone.hold(false);
        done.push(format!(
            "{step:+} s (now {offset:+} s) at call {}",
            fake.calls().len()
        ));
    }
    eprintln!("faults: clock: {steps} steps: {}", done.join(", "));
    wait_for("the poster", crate::common::DRAIN, || drone.done());
    poster.join().expect("poster");
    wait_delivered(&fake, &drone, &svc);
    let bound = Bound::new()
        .add(
            "one create or edit per event answered 200",
            drone.accepted_count(),
        )
        .add("calls before a bucket is known (429s)", IN_FLIGHT)
        .limited(IN_FLIGHT);
    check("clock", &fake, &drone, &bound);
    assert_eq!(svc.sigterm(), Some(0));
}
