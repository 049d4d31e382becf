//! Unit tests of the relay's scheduler: exact, with injected instants and
//! fixed jitter.
use super::*;

const MS: Duration = Duration::from_millis(1);
const S: Duration = Duration::from_secs(1);
const CH: &str = "100000000000000001";

fn cfg() -> SchedulerConfig {
    SchedulerConfig {
        max_in_flight: 2,
        poll_interval: 2 * S,
        base_backoff: 500 * MS,
        max_backoff: 60 * S,
        refusal_pause: 600 * S,
        stats_interval: S,
        probe_interval: S,
        drain: 5 * S,
        nonce_window: 60 * S,
    }
}

fn sched(t0: Instant) -> Scheduler {
    Scheduler::new(cfg(), vec![CH.to_string()], Jitter::fixed(0.0), t0)
}

/// Skip the stats refresh (and probes) to get the next scheduling decision.
fn decide(s: &mut Scheduler, now: Instant) -> Action {
    loop {
        match s.next(now) {
            Action::RefreshStats | Action::ProbeStore => continue,
            other => return other,
        }
    }
}

fn retry() -> Outcome {
    Outcome::Retry {
        after: Duration::ZERO,
        reason: "503".into(),
    }
}

fn refused(scope: Scope) -> Outcome {
    Outcome::Refused {
        scope,
        reason: "Discord answered 401".into(),
    }
}

#[test]
fn starts_with_stats_then_claims_the_free_slots() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    assert_eq!(s.next(t0), Action::RefreshStats);
    assert_eq!(s.next(t0), Action::Claim(2));
    // Claimed once; nothing new until a wake-up, a finish or the poll.
    assert_eq!(s.next(t0), Action::Wait(t0 + 2 * S));
    s.woke();
    assert_eq!(s.next(t0), Action::Claim(2));
    assert_eq!(
        decide(&mut s, t0 + 2 * S),
        Action::Claim(2),
        "the poll claims again"
    );
}

#[test]
fn slots_are_counted_and_freed() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    assert_eq!(s.admit("build:1", CH, t0), Admission::Deliver);
    assert_eq!(
        s.admit("build:1", CH, t0),
        Admission::Release,
        "already in flight: no second delivery"
    );
    assert_eq!(s.admit("build:2", CH, t0), Admission::Deliver);
    assert_eq!(
        s.admit("build:3", CH, t0),
        Admission::Release,
        "no free slot"
    );
    assert_eq!(s.in_flight(), 2);
    s.woke();
    assert!(
        matches!(decide(&mut s, t0), Action::Wait(_)),
        "full: nothing to claim"
    );
    assert_eq!(
        s.finished("build:1", &Outcome::Done, t0),
        Verdict::Delivered { resumed: false }
    );
    assert_eq!(s.in_flight(), 1);
    assert_eq!(decide(&mut s, t0), Action::Claim(1));
    assert_eq!(s.admit("build:3", CH, t0), Admission::Deliver);
}

#[test]
fn backoff_grows_from_base_and_is_capped() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..12 {
        assert_eq!(s.admit("build:1", CH, now), Admission::Deliver);
        match s.finished("build:1", &retry(), now) {
            Verdict::Retry { delay, .. } => {
                // Not a moment before the delay is over...
                assert_eq!(s.admit("build:1", CH, now + delay - MS), Admission::Release);
                delays.push(delay);
                now += delay;
            }
            other => panic!("{other:?}"),
        }
    }
    // Jitter 0: half the ceiling, doubling from 500 ms, capped at 60 s.
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(
        ms,
        [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000, 30000]
    );
    // With full jitter the wait reaches the cap but never passes it.
    let mut s = Scheduler::new(cfg(), vec![CH.into()], Jitter::fixed(0.999_999), t0);
    let mut last = Duration::ZERO;
    for _ in 0..40 {
        s.admit("k", CH, t0 + 3600 * S);
        if let Verdict::Retry { delay, .. } = s.finished("k", &retry(), t0) {
            assert!(delay <= 60 * S, "{delay:?}");
            last = delay;
        }
    }
    assert!(last >= 59 * S, "{last:?}");
    // A success forgets the count: the next failure starts small again.
    s.admit("k", CH, t0 + 3600 * S);
    s.finished("k", &Outcome::Done, t0 + 3600 * S);
    s.admit("k", CH, t0 + 3600 * S);
    assert!(matches!(
        s.finished("k", &retry(), t0 + 3600 * S),
        Verdict::Retry { attempt: 1, .. }
    ));
}

#[test]
fn discords_retry_after_wins_over_a_shorter_backoff() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    s.admit("build:1", CH, t0);
    let v = s.finished(
        "build:1",
        &Outcome::Retry {
            after: 7 * S,
            reason: "429".into(),
        },
        t0,
    );
    assert_eq!(
        v,
        Verdict::Retry {
            attempt: 1,
            delay: 7 * S
        }
    );
    assert_eq!(s.admit("build:1", CH, t0 + 6 * S), Admission::Release);
    assert_eq!(s.admit("build:1", CH, t0 + 7 * S), Admission::Deliver);
}

#[test]
fn wakes_when_the_first_backoff_ends() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    assert_eq!(decide(&mut s, t0), Action::Claim(2));
    s.admit("build:1", CH, t0);
    s.finished("build:1", &retry(), t0); // 250 ms
                                         // The finish asks for a claim (the freed slot), then it waits for the
                                         // backoff's end, well before the 2 s poll.
    assert_eq!(decide(&mut s, t0), Action::Claim(3));
    assert_eq!(s.admit("build:1", CH, t0), Admission::Release);
    assert_eq!(decide(&mut s, t0), Action::Wait(t0 + 250 * MS));
}

#[test]
fn keys_backing_off_never_hold_a_slot_so_healthy_ones_go_on() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    // Many builds keep failing (a message-specific 5xx, say).
    let failing: Vec<String> = (1..=20).map(|i| format!("build:{i}")).collect();
    for k in &failing {
        while s.admit(k, CH, t0) != Admission::Deliver {
            let busy: Vec<String> = s.in_flight.keys().cloned().collect();
            for b in busy {
                s.finished(&b, &retry(), t0);
            }
        }
    }
    for k in s.in_flight.keys().cloned().collect::<Vec<_>>() {
        s.finished(&k, &retry(), t0);
    }
    assert_eq!(s.in_flight(), 0);
    // The store hands keys out oldest first: the failing ones, then a new
    // healthy build. The scheduler asks for enough keys to reach it...
    let now = t0 + 100 * MS;
    assert_eq!(decide(&mut s, now), Action::Claim(2 + 20));
    // ...hands every backing-off key straight back...
    for k in &failing {
        assert_eq!(s.admit(k, CH, now), Admission::Release, "{k}");
    }
    // ...and delivers the healthy one.
    assert_eq!(s.admit("build:100", CH, now), Admission::Deliver);
    assert_eq!(s.in_flight(), 1);
}

#[test]
fn store_down_pauses_claims_probes_once_a_second_and_resumes() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    assert_eq!(s.next(t0), Action::RefreshStats);
    s.set_store_writable(false);
    assert_eq!(s.next(t0), Action::ProbeStore);
    // The probe failed: no claim, wait for the next probe.
    s.set_store_writable(false);
    assert_eq!(s.next(t0), Action::Wait(t0 + S));
    assert_eq!(
        s.admit("build:1", CH, t0),
        Admission::Release,
        "no deliveries while the store cannot write"
    );
    s.woke();
    assert_eq!(
        s.next(t0 + 500 * MS),
        Action::Wait(t0 + S),
        "a wake-up claims nothing, probes are rate limited"
    );
    assert_eq!(s.next(t0 + S), Action::RefreshStats);
    assert_eq!(s.next(t0 + S), Action::ProbeStore);
    // The probe wrote: claim at once.
    s.set_store_writable(true);
    assert_eq!(s.next(t0 + S), Action::Claim(2));
    assert_eq!(s.admit("build:1", CH, t0 + S), Admission::Deliver);
}

#[test]
fn a_store_failure_during_delivery_backs_off_and_pauses_claims_until_a_probe_writes() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    s.admit("build:1", CH, t0);
    let v = s.finished("build:1", &Outcome::StoreFailed("disk full".into()), t0);
    assert_eq!(
        v,
        Verdict::StoreFailed {
            attempt: 1,
            delay: 250 * MS
        }
    );
    assert_eq!(s.next(t0), Action::RefreshStats);
    assert_eq!(
        s.next(t0),
        Action::ProbeStore,
        "the store is probed before claiming again"
    );
    // The probe failed too (the driver reports what health knows).
    s.set_store_writable(false);
    assert_eq!(s.next(t0), Action::Wait(t0 + 250 * MS));
    assert_eq!(
        s.next(t0 + 250 * MS),
        Action::Wait(t0 + S),
        "no claims while the store is down"
    );
    assert_eq!(s.next(t0 + S), Action::RefreshStats);
    assert_eq!(s.next(t0 + S), Action::ProbeStore);
    s.set_store_writable(true);
    assert_eq!(s.next(t0 + S), Action::Claim(2));
    assert_eq!(
        s.admit("build:1", CH, t0 + S),
        Admission::Deliver,
        "its backoff is over"
    );
}

#[test]
fn token_refusal_pauses_everything_until_the_pause_ends_then_retries() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    s.admit("build:1", CH, t0);
    s.admit("build:2", CH, t0);
    let v = s.finished("build:1", &refused(Scope::Everything), t0 + S);
    assert_eq!(
        v,
        Verdict::Paused {
            scope: Scope::Everything,
            until: t0 + 601 * S
        }
    );
    assert!(s.is_refused(t0 + S));
    // The delivery already in flight succeeding does not lift the pause:
    // it was sent before the refusal.
    assert_eq!(
        s.finished("build:2", &Outcome::Done, t0 + 2 * S),
        Verdict::Delivered { resumed: false }
    );
    assert!(s.is_refused(t0 + 2 * S));
    // No claims during the pause; still wakes every poll interval (queue figures).
    assert_eq!(decide(&mut s, t0 + 2 * S), Action::Wait(t0 + 4 * S));
    assert_eq!(decide(&mut s, t0 + 600 * S), Action::Wait(t0 + 601 * S));
    assert_eq!(s.admit("build:3", CH, t0 + 600 * S), Admission::Release);
    // The pause ends (the driver's timer fires): a retry goes out; its
    // success lifts the refusal.
    s.woke();
    assert!(matches!(decide(&mut s, t0 + 601 * S), Action::Claim(_)));
    assert_eq!(s.admit("build:3", CH, t0 + 601 * S), Admission::Deliver);
    assert!(!s.is_refused(t0 + 601 * S));
    assert_eq!(
        s.finished("build:3", &Outcome::Done, t0 + 602 * S),
        Verdict::Delivered { resumed: true }
    );
    // Refused again later: a new pause, from then.
    s.admit("build:4", CH, t0 + 700 * S);
    let v = s.finished("build:4", &refused(Scope::Everything), t0 + 700 * S);
    assert_eq!(
        v,
        Verdict::Paused {
            scope: Scope::Everything,
            until: t0 + 1300 * S
        }
    );
}

#[test]
fn destination_refusal_pauses_that_destination_only() {
    let t0 = Instant::now();
    let (a, b) = ("100000000000000001", "100000000000000002");
    let mut s = Scheduler::new(cfg(), vec![a.into(), b.into()], Jitter::fixed(0.0), t0);
    s.admit("build:1", a, t0);
    let v = s.finished("build:1", &refused(Scope::Destination(a.into())), t0);
    assert_eq!(
        v,
        Verdict::Paused {
            scope: Scope::Destination(a.into()),
            until: t0 + 600 * S
        }
    );
    // The other destination still claims and delivers.
    assert!(matches!(decide(&mut s, t0), Action::Claim(_)));
    assert_eq!(s.admit("build:1", a, t0 + S), Admission::Release);
    assert_eq!(s.admit("build:2", b, t0 + S), Admission::Deliver);
    assert_eq!(
        s.finished("build:2", &Outcome::Done, t0 + S),
        Verdict::Delivered { resumed: false }
    );
    assert_eq!(s.admit("build:3", a, t0 + 599 * S), Admission::Release);
    assert_eq!(s.admit("build:3", a, t0 + 600 * S), Admission::Deliver);
    assert_eq!(
        s.finished("build:3", &Outcome::Done, t0 + 600 * S),
        Verdict::Delivered { resumed: true }
    );

    // With a single destination (today's setup), refusing it pauses all claims.
    let mut s = sched(t0);
    s.admit("build:1", CH, t0);
    s.finished("build:1", &refused(Scope::Destination(CH.into())), t0);
    assert_eq!(decide(&mut s, t0), Action::Wait(t0 + 2 * S));
    assert!(matches!(decide(&mut s, t0 + 600 * S), Action::Claim(_)));
}

#[test]
fn deadlines_depend_only_on_the_instants_given() {
    // The scheduler never reads a clock of its own, and no wall clock at
    // all, so a wall-clock step (NTP at boot, a ±1 h jump) cannot move a
    // backoff or a pause: the driver feeds it monotonic instants.
    let source = include_str!("../scheduler.rs");
    for forbidden in [
        concat!("System", "Time"),
        concat!("now", "_ms"),
        concat!("Instant::", "now"),
    ] {
        assert!(!source.contains(forbidden), "scheduler.rs uses {forbidden}");
    }
    let t0 = Instant::now() + 7200 * S;
    let mut s = sched(t0);
    s.admit("build:1", CH, t0);
    s.finished("build:1", &retry(), t0); // until t0 + 250 ms
    s.admit("build:2", CH, t0);
    s.finished("build:2", &refused(Scope::Everything), t0); // until t0 + 600 s
                                                            // An instant from before (a driver bug, or instants read out of order):
                                                            // no panic, and neither deadline moves.
    let earlier = t0 - 3600 * S;
    assert_eq!(s.admit("build:3", CH, earlier), Admission::Release);
    assert_eq!(
        decide(&mut s, earlier),
        Action::Wait(t0 + 250 * MS),
        "{s:?}"
    );
    assert!(s.is_refused(t0 + 599 * S));
    assert!(!s.is_refused(t0 + 600 * S));
    // Same inputs, same answers, whenever they are asked.
    let mut twin = sched(t0);
    twin.admit("build:1", CH, t0);
    assert_eq!(
        twin.finished("build:1", &retry(), t0),
        Verdict::Retry {
            attempt: 1,
            delay: 250 * MS
        }
    );
    // Extreme durations saturate instead of overflowing.
    let mut huge = Scheduler::new(
        SchedulerConfig {
            refusal_pause: Duration::MAX,
            poll_interval: Duration::MAX,
            ..cfg()
        },
        vec![CH.into()],
        Jitter::fixed(0.0),
        t0,
    );
    huge.admit("k", CH, t0);
    assert!(matches!(
        huge.finished("k", &refused(Scope::Everything), t0),
        Verdict::Paused { .. }
    ));
    assert!(huge.is_refused(t0 + 3600 * S));
}

#[test]
fn shutdown_stops_claims_and_gives_deliveries_in_flight_a_drain_deadline() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    assert_eq!(s.admit("build:1", CH, t0), Admission::Deliver);
    s.shutdown(t0 + S);
    assert_eq!(
        s.next(t0 + S),
        Action::Stop {
            drain_until: t0 + 6 * S
        }
    );
    // A second signal does not extend the deadline.
    s.shutdown(t0 + 2 * S);
    assert_eq!(
        s.next(t0 + 2 * S),
        Action::Stop {
            drain_until: t0 + 6 * S
        }
    );
    // Nothing new starts; a delivery finishing does not restart claims.
    assert_eq!(s.admit("build:2", CH, t0 + S), Admission::Release);
    s.finished("build:1", &Outcome::Done, t0 + 2 * S);
    s.woke();
    assert_eq!(
        s.next(t0 + 3 * S),
        Action::Stop {
            drain_until: t0 + 6 * S
        }
    );
}

/// Moved from `relay.rs` with the backoff into the scheduler: the first
/// delay is between half the base and the base, none exceeds the cap, and
/// late attempts reach at least half of it, whatever the jitter.
#[test]
fn backoff_grows_and_is_capped_with_random_jitter() {
    let t0 = Instant::now();
    let c = cfg();
    let mut s = Scheduler::new(c.clone(), vec![CH.into()], Jitter::random(), t0);
    let mut delays = Vec::new();
    for _ in 1..100 {
        s.admit("k", CH, t0 + 3600 * S);
        if let Verdict::Retry { delay, .. } = s.finished("k", &retry(), t0) {
            delays.push(delay);
        }
    }
    let d1 = delays[0];
    assert!(d1 >= c.base_backoff / 2 && d1 <= c.base_backoff, "{d1:?}");
    for (a, d) in delays.iter().enumerate() {
        assert!(*d <= c.max_backoff, "attempt {}: {d:?}", a + 1);
    }
    assert!(delays[29] >= c.max_backoff / 2);
}

#[test]
fn an_uncertain_create_is_trusted_for_the_nonce_window_from_its_admission() {
    let t0 = Instant::now();
    let mut s = sched(t0);
    assert_eq!(s.nonce_trusted_until("build:1"), None, "nothing sent yet");
    assert_eq!(s.admit("build:1", CH, t0), Admission::Deliver);
    s.create_uncertain("build:1");
    s.finished("build:1", &retry(), t0 + 5 * S);
    assert_eq!(
        s.nonce_trusted_until("build:1"),
        Some(t0 + 60 * S),
        "from the admission, not the finish"
    );
    // A later uncertain attempt does not move the window: Discord counts
    // from the first create with that nonce.
    assert_eq!(s.admit("build:1", CH, t0 + 30 * S), Admission::Deliver);
    s.create_uncertain("build:1");
    s.finished("build:1", &retry(), t0 + 31 * S);
    assert_eq!(s.nonce_trusted_until("build:1"), Some(t0 + 60 * S));
    // Delivered: forgotten.
    assert_eq!(s.admit("build:1", CH, t0 + 90 * S), Admission::Deliver);
    s.finished("build:1", &Outcome::Done, t0 + 91 * S);
    assert_eq!(s.nonce_trusted_until("build:1"), None);
    // Only a key in flight can be marked.
    s.create_uncertain("build:2");
    assert_eq!(s.nonce_trusted_until("build:2"), None);
}
