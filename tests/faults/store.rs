//! Scenario 2, store faults, each during intake of a burst: the state
//! directory fills up (a small tmpfs, then freed); it turns read-only (an
//! ext4 error on a loop device, `errors=remount-ro`) and is repaired and
//! mounted writable again; a write stalls for longer than the store's
//! 30 s write timeout (`fsfreeze` on that ext4). In each: no 200 for an
//! event that was not stored (the checker: every 200 is delivered), a 503
//! with `Retry-After` meanwhile, `/health` names the store, and intake
//! resumes by itself, without a restart.
use crate::common::{
    health, runtime, service_env, start_service, wait_delivered, wait_for, IN_FLIGHT, WAIT,
};
use crate::support::fake_discord::FakeDiscord;
use crate::support::faults::checker::{check, Bound};
use crate::support::faults::drone::{Drone, Plan};
use crate::support::faults::knobs::Knobs;
use crate::support::loopfs::LoopFs;
use crate::support::tmpfs::Tmpfs;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// One store-fault scenario: the burst, `fault` once a random share of it
/// was answered, `heal` once `/health` named the store, then the checks.
struct Run {
    knobs: Knobs,
    fake: FakeDiscord,
    drone: Arc<Drone>,
    _rt: tokio::runtime::Runtime,
}

impl Run {
    fn new(scenario: &'static str) -> Run {
        let knobs = Knobs::from_env(scenario);
        let mut rng = knobs.rng();
        let builds = knobs.figure("FAULTS_BUILDS", 10, 40);
        let per_build = knobs.figure("FAULTS_EVENTS", 8, 10);
        let plan = Plan::new(&mut rng.fork(1), builds, per_build);
        let rt = runtime();
        let fake = rt.block_on(FakeDiscord::start());
        Run {
            knobs,
            fake,
            drone: Arc::new(Drone::new(plan)),
            _rt: rt,
        }
    }

    /// Run the burst on `dir` with `fault` and `heal`; returns what health
    /// said during the fault.
    fn go(&self, dir: &Path, fault: impl FnOnce(), heal: impl FnOnce()) {
        let scenario = self.knobs.scenario;
        let env = service_env(&self.fake);
        let svc = start_service(dir, &env);
        self.drone.set_addr(Some(svc.addr.clone()));
        let poster = {
            let drone = self.drone.clone();
            std::thread::spawn(move || drone.post_all())
        };
        let mut rng = self.knobs.rng().fork(2);
        let events = self.drone.plan.events() as u64;
        let at = rng.between(events / 5, events / 2) as usize;
        wait_for("the first part of the burst", WAIT, || {
            self.drone.accepted_count() >= at
        });
        let refused_before = self.drone.tally.refused.load(Ordering::SeqCst);
        fault();
        let t_fault = Instant::now();
        // Health names the store, and webhooks are refused meanwhile.
        let v = crate::support::binary::wait_health(&svc, WAIT, |s, v| {
            s == 503 && v["store"]["ok"] == false
        });
        let said = v["reason"].as_str().unwrap_or_default().to_string();
        assert!(
            said.starts_with("store"),
            "{scenario}: reason must name the store: {v}"
        );
        wait_for("a refused webhook", WAIT, || {
            self.drone.tally.refused.load(Ordering::SeqCst) > refused_before
        });
        let answered_in_fault = self.drone.accepted_count();
        let took = t_fault.elapsed();
        heal();
        let t_heal = Instant::now();
        crate::support::binary::wait_health(&svc, WAIT, |s, _| s == 200);
        let recovered = t_heal.elapsed();
        wait_for("the poster", crate::common::DRAIN, || self.drone.done());
        poster.join().expect("poster");
        wait_delivered(&self.fake, &self.drone, &svc);
        eprintln!(
            "faults: {scenario}: fault after {at} webhooks; /health said {said:?}, a webhook was refused \
             within {:.1} s ({answered_in_fault} answered by then); healthy again {:.1} s after the repair, \
             without a restart",
            took.as_secs_f64(),
            recovered.as_secs_f64()
        );
        // A delivery whose store write failed after its Discord call is
        // repeated once the store is back: at most the deliveries in flight.
        let bound = Bound::new()
            .add(
                "one create or edit per event answered 200",
                self.drone.accepted_count(),
            )
            .add("deliveries in flight repeated after the fault", IN_FLIGHT)
            .limited(IN_FLIGHT);
        check(scenario, &self.fake, &self.drone, &bound);
        let (_, h) = health(&svc);
        assert_eq!(h["queue"]["dead_letters"], 0, "{scenario}: {h}");
        assert_eq!(svc.sigterm(), Some(0));
    }
}

#[test]
fn state_dir_fills_up_during_intake_then_is_freed() {
    let run = Run::new("store-full");
    let Some(disk) = Tmpfs::mount("store-full", 16) else {
        return;
    };
    run.go(
        disk.path(),
        || {
            disk.fill();
        },
        || disk.free(),
    );
}

#[test]
fn state_dir_turns_read_only_then_is_repaired_and_writable() {
    let run = Run::new("store-read-only");
    let Some(disk) = LoopFs::mount("store-read-only", 64) else {
        return;
    };
    run.go(
        disk.path(),
        || disk.fail_read_only(),
        || disk.repair_and_remount(),
    );
}

#[test]
fn a_write_stalls_past_the_store_timeout_then_goes_through() {
    let run = Run::new("store-stall");
    let Some(disk) = LoopFs::mount("store-stall", 64) else {
        return;
    };
    run.go(disk.path(), || disk.freeze(), || disk.thaw());
}
