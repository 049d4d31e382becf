//! The fault suite (`make faults`; a bounded version runs with every
//! `cargo test`): the real binary against the fake Discord while it is
//! killed, starved and flooded on purpose, with faults chosen by a seeded
//! generator. Every scenario prints its seed first; `FAULTS_SEED=<run seed>`
//! replays the same faults (which signal, when, which fault, which close
//! code), `FAULTS_SCALE=long` runs the longer local version (knobs:
//! `tests/support/faults/knobs.rs`). Each scenario ends with the one
//! invariant checker, `support::faults::checker::check`.
//!
//! Scenarios, one file each under `tests/faults/`: crashes (SIGKILL and
//! SIGTERM mid-burst), store faults (a full disk, a file system that turns
//! read-only, a write that stalls), Discord faults (refused, timeouts, 5xx,
//! 429 storms, lost answers), gateway faults (every close code, withheld
//! ACKs, op 7 and op 9, then a fatal code) and clock faults (the wall clock
//! steps by an hour). Power cuts are in the README: this machine has no
//! device mapper to cut power with.
mod support;

#[path = "faults/clock.rs"]
mod clock;
#[path = "faults/common.rs"]
mod common;
#[path = "faults/crashes.rs"]
mod crashes;
#[path = "faults/discord.rs"]
mod discord;
#[path = "faults/gateway.rs"]
mod gateway;
#[path = "faults/store.rs"]
mod store;

/// The same seed gives the same faults: the plan and the first draws of a
/// scenario's generator repeat exactly.
#[test]
fn the_same_seed_replays_the_same_faults() {
    use support::faults::drone::Plan;
    use support::faults::rng::Rng;
    let (mut a, mut b) = (Rng::new(0x5eed), Rng::new(0x5eed));
    assert_eq!(Plan::new(&mut a, 7, 5).order, Plan::new(&mut b, 7, 5).order);
    let (x, y): (Vec<u64>, Vec<u64>) = (0..50).map(|_| (a.below(1000), b.below(1000))).unzip();
    assert_eq!(x, y);
    assert_ne!(
        Plan::new(&mut Rng::new(1), 7, 5).order,
        Plan::new(&mut Rng::new(2), 7, 5).order
    );
}
