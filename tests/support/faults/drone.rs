//! Drone as the fault suite plays it: a burst of build events over many
//! builds (the [`Plan`], in a seeded order that keeps each build's events in
//! sequence), posted signed to whatever address the service has right now
//! ([`Drone::set_addr`]; none while it is down), and the ledger of what the
//! service answered.
//!
//! Drone itself never retries a webhook. The suite does, for one reason: it
//! checks that every build ends in its final state, so a build's next event
//! is posted only once the previous one was answered 200. A refusal (503
//! with `Retry-After`) or a connection that died before an answer is posted
//! again, newly signed; an answer that is neither is recorded as unexpected
//! and stops the poster, and the checker fails the scenario on it.
use crate::support::builds::build_update;
use crate::support::credentials::SECRET;
use crate::support::faults::rng::Rng;
use crate::support::fixtures::fixture_json;
use crate::support::raw_http::try_http_full;
use crate::support::webhook::signed_request;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// The Drone server of the fixtures (their `system.host`).
pub const HOST: &str = "drone.kiwi-labs.net";
/// The fixtures' repository id.
pub const REPO: i64 = 35;

/// The final status of build `id`: success, failure or killed.
pub fn final_status(id: i64) -> &'static str {
    ["success", "failure", "killed"][id.rem_euclid(3) as usize]
}

/// Update `n` of build `id` when it has `per_build` updates: pending first,
/// then running, the last one final. Each renders differently (the commit
/// message names the update).
pub fn body(id: i64, n: usize, per_build: usize) -> Vec<u8> {
    let status = if n + 1 >= per_build {
        final_status(id)
    } else if n == 0 {
        "pending"
    } else {
        "running"
    };
    let name = match status {
        "pending" => "build_created.json",
        "running" => "build_updated.json",
        "success" => "build_success.json",
        "failure" => "build_failure.json",
        _ => "build_killed.json",
    };
    build_update(&fixture_json(name), id, n, status, |_| n % 3)
}

/// Which events are posted, in which order.
#[derive(Clone, Debug)]
pub struct Plan {
    pub builds: Vec<i64>,
    pub per_build: usize,
    /// (build, update number), each build's updates in order.
    pub order: Vec<(i64, usize)>,
}

impl Plan {
    /// `builds` builds (ids 1..) of `per_build` updates each, interleaved
    /// at random.
    pub fn new(rng: &mut Rng, builds: u64, per_build: u64) -> Plan {
        let ids: Vec<i64> = (1..=builds as i64).collect();
        let per_build = per_build.max(1) as usize;
        let mut next = vec![0usize; ids.len()];
        let mut open: Vec<usize> = (0..ids.len()).collect();
        let mut order = Vec::with_capacity(ids.len() * per_build);
        while !open.is_empty() {
            let at = rng.below(open.len() as u64) as usize;
            let b = open[at];
            order.push((ids[b], next[b]));
            next[b] += 1;
            if next[b] == per_build {
                open.swap_remove(at);
            }
        }
        Plan {
            builds: ids,
            per_build,
            order,
        }
    }

    pub fn events(&self) -> usize {
        self.order.len()
    }

    pub fn body(&self, id: i64, n: usize) -> Vec<u8> {
        body(id, n, self.per_build)
    }

    /// The body every build must end showing.
    pub fn last(&self, id: i64) -> Vec<u8> {
        self.body(id, self.per_build - 1)
    }
}

/// Counters of what the service answered.
#[derive(Debug, Default)]
pub struct Tally {
    /// Events answered 200 (`queued` or `duplicate`).
    pub accepted: AtomicUsize,
    /// 503s with a usable `Retry-After` (posted again).
    pub refused: AtomicUsize,
    /// Connections refused, or closed before an answer (posted again).
    pub lost: AtomicUsize,
}

/// The poster. Shared between the scenario and the thread that posts.
pub struct Drone {
    pub plan: Plan,
    addr: Mutex<Option<String>>,
    next: AtomicUsize,
    hold: AtomicBool,
    /// The poster is waiting because of `hold`, with no post in hand.
    parked: AtomicBool,
    /// Seconds added to the signing clock (the clock scenario signs with the
    /// service's stepped clock, as a Drone on the same host would).
    offset_secs: AtomicI64,
    pub tally: Tally,
    /// (build, update) answered 200, in answer order.
    pub accepted: Mutex<Vec<(i64, usize)>>,
    /// Answers that were neither a 200, a refusal nor a lost connection.
    pub unexpected: Mutex<Vec<String>>,
}

impl Drone {
    pub fn new(plan: Plan) -> Drone {
        Drone {
            plan,
            addr: Mutex::new(None),
            next: AtomicUsize::new(0),
            hold: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            offset_secs: AtomicI64::new(0),
            tally: Tally::default(),
            accepted: Mutex::new(Vec::new()),
            unexpected: Mutex::new(Vec::new()),
        }
    }

    /// Where the service listens now (None while it is down).
    pub fn set_addr(&self, addr: Option<String>) {
        *drone_discord::sync::lock(&self.addr) = addr;
    }

    /// Stop posting after the event in hand (true) or go on (false).
    pub fn hold(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }

    /// Hold, and wait (at most 60 s) until the post in hand was answered.
    pub fn hold_and_wait(&self) {
        self.hold(true);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.parked.load(Ordering::SeqCst)
            && !self.done()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn set_clock_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::SeqCst);
    }

    /// Events answered 200 so far.
    pub fn accepted_count(&self) -> usize {
        self.tally.accepted.load(Ordering::SeqCst)
    }

    /// Whether every event of the plan was answered 200 (or the poster
    /// stopped on an unexpected answer).
    pub fn done(&self) -> bool {
        self.next.load(Ordering::SeqCst) >= self.plan.events() || self.failed()
    }

    pub fn failed(&self) -> bool {
        !drone_discord::sync::lock(&self.unexpected).is_empty()
    }

    fn signing_time(&self) -> SystemTime {
        let off = self.offset_secs.load(Ordering::SeqCst);
        let now = SystemTime::now();
        if off >= 0 {
            now + Duration::from_secs(off as u64)
        } else {
            now - Duration::from_secs(off.unsigned_abs())
        }
    }

    /// Post the whole plan (blocking; run it on a thread of its own).
    pub fn post_all(&self) {
        while !self.done() {
            if self.hold.load(Ordering::SeqCst) {
                self.parked.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            self.parked.store(false, Ordering::SeqCst);
            let i = self.next.load(Ordering::SeqCst);
            let (id, n) = self.plan.order[i];
            if self.post_until_accepted(id, n) {
                self.next.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// Post one event until it is answered 200; false if an unexpected
    /// answer stopped the poster.
    fn post_until_accepted(&self, id: i64, n: usize) -> bool {
        let body = self.plan.body(id, n);
        loop {
            let addr = drone_discord::sync::lock(&self.addr).clone();
            let Some(addr) = addr else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let raw = signed_request(&body, SECRET, self.signing_time());
            match try_http_full(&addr, &raw) {
                Ok((200, _, text))
                    if text.contains("\"queued\"") || text.contains("\"duplicate\"") =>
                {
                    self.tally.accepted.fetch_add(1, Ordering::SeqCst);
                    drone_discord::sync::lock(&self.accepted).push((id, n));
                    return true;
                }
                Ok((503, headers, text)) => {
                    let retry = headers
                        .iter()
                        .find(|(k, _)| k == "retry-after")
                        .and_then(|(_, v)| v.parse::<u64>().ok());
                    if retry.map_or(true, |s| s == 0) {
                        drone_discord::sync::lock(&self.unexpected).push(format!(
                            "503 without a usable Retry-After: {headers:?} {text}"
                        ));
                        return false;
                    }
                    self.tally.refused.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                }
                Ok((status, _, text)) => {
                    drone_discord::sync::lock(&self.unexpected)
                        .push(format!("build {id} update {n}: {status} {text}"));
                    return false;
                }
                Err(_) => {
                    self.tally.lost.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}
