//! The invariants every fault scenario ends with, checked in one place
//! ([`check`]) against what the fake Discord recorded and what the service
//! answered the [`Drone`]:
//!
//! 1. every webhook answered 200 is delivered: each build's message shows
//!    its last update, and each update was answered 200 (the poster moves on
//!    only then), so the last one shown covers every earlier one;
//! 2. no build has two build messages (messages are told apart by their
//!    create nonce, which names the build), and there is no stray message;
//! 3. every build ends showing its final state, and no version of its
//!    message went back to an earlier update;
//! 4. no request was one Discord would reject: no 4xx from the fake's own
//!    validation (scripted answers are the scenario's, not counted), and
//!    429s from the emulated rate limit only within [`Bound::limited`];
//! 5. the number of Discord calls stays within the scenario's [`Bound`],
//!    which is printed with its terms.
use super::drone::{Drone, HOST, REPO};
use crate::support::credentials::CHANNEL;
use crate::support::fake_discord::FakeDiscord;
use drone_discord::{drone, relay, render, store};
use serde_json::Value;
use std::collections::HashMap;

/// Message generations a build may have gone through (a fresh message after
/// a refused edit is the next generation); more than one *live* message is
/// still a failure.
const GENERATIONS: u32 = 4;

/// An upper bound on Discord calls, as a sum of named terms.
#[derive(Clone, Debug, Default)]
pub struct Bound {
    terms: Vec<(String, usize)>,
    /// 429s from the emulated rate limit allowed (a restarted process does
    /// not know a bucket's state until its first answer).
    pub limited: usize,
}

impl Bound {
    pub fn new() -> Bound {
        Bound::default()
    }

    /// Add a term: `n` calls for `why`.
    pub fn add(mut self, why: &str, n: usize) -> Bound {
        self.terms.push((why.to_string(), n));
        self
    }

    pub fn limited(mut self, n: usize) -> Bound {
        self.limited = n;
        self
    }

    pub fn total(&self) -> usize {
        self.terms.iter().map(|(_, n)| n).sum()
    }

    pub fn describe(&self) -> String {
        let terms: Vec<String> = self
            .terms
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        format!("{} = {}", self.total(), terms.join(" + "))
    }
}

/// The figures a scenario prints and the README quotes.
#[derive(Clone, Debug)]
pub struct Figures {
    pub builds: usize,
    pub events: usize,
    pub accepted: usize,
    pub refused: usize,
    pub lost: usize,
    pub calls: usize,
    pub bound: usize,
    pub limited: usize,
}

/// The build id whose message this nonce created, if any.
fn build_of_nonce(ids: &HashMap<String, i64>, nonce: &Value) -> Option<i64> {
    ids.get(nonce.as_str()?).copied()
}

/// The update number a message version shows (its description names it).
fn update_no(msg: &Value) -> Option<usize> {
    let d = msg["embeds"][0]["description"].as_str()?;
    d.rsplit("update ").next()?.trim().parse().ok()
}

/// Where a stored message differs from what `render` makes of `body`.
fn differs_from_render(msg: &Value, body: &[u8]) -> Option<String> {
    let hook = match drone::parse(body) {
        Ok(h) => h,
        Err(e) => return Some(e.to_string()),
    };
    let want = render::render(&hook)?;
    let obj = want.as_object()?;
    obj.iter().find_map(|(k, v)| {
        (msg.get(k) != Some(v)).then(|| {
            format!(
                "field {k}: want {v}, have {}",
                msg.get(k).unwrap_or(&Value::Null)
            )
        })
    })
}

/// Nonce → build id, for every generation a build of `drone`'s plan may reach.
fn nonces(drone: &Drone) -> HashMap<String, i64> {
    drone
        .plan
        .builds
        .iter()
        .flat_map(|&id| {
            let key = store::build_key(HOST, REPO, id);
            (0..GENERATIONS).map(move |g| (relay::nonce_for(HOST, &key, CHANNEL, g), id))
        })
        .collect()
}

/// Whether the burst looks delivered: every event answered 200 and every
/// build has a message showing its final update (what a scenario waits for
/// before it calls [`check`]).
pub fn delivered(fake: &FakeDiscord, drone: &Drone) -> bool {
    if !drone.done() {
        return false;
    }
    let by_nonce = nonces(drone);
    let messages = fake.messages();
    let mut shown: HashMap<i64, bool> = HashMap::new();
    for m in messages.values() {
        if let Some(b) = build_of_nonce(&by_nonce, &m["nonce"]) {
            let ok = differs_from_render(m, &drone.plan.last(b)).is_none();
            *shown.entry(b).or_default() |= ok;
        }
    }
    drone
        .plan
        .builds
        .iter()
        .all(|id| shown.get(id).copied().unwrap_or(false))
}

/// What is missing, for a scenario that timed out waiting for
/// [`delivered`]: per build not yet shown final, its messages and the
/// update each shows.
pub fn undelivered(fake: &FakeDiscord, drone: &Drone) -> Vec<String> {
    let by_nonce = nonces(drone);
    let messages = fake.messages();
    let mut out = Vec::new();
    for &id in &drone.plan.builds {
        let mine: Vec<(&String, &Value)> = messages
            .iter()
            .filter(|(_, m)| build_of_nonce(&by_nonce, &m["nonce"]) == Some(id))
            .collect();
        let last = drone.plan.last(id);
        if mine
            .iter()
            .any(|(_, m)| differs_from_render(m, &last).is_none())
        {
            continue;
        }
        let shows: Vec<String> = mine
            .iter()
            .map(|(mid, m)| format!("{mid} shows update {:?}", update_no(m)))
            .collect();
        let calls: Vec<String> = fake
            .calls()
            .iter()
            .filter(|c| {
                mine.iter().any(|(mid, _)| c.path.ends_with(mid.as_str()))
                    || c.body
                        .as_ref()
                        .is_some_and(|b| build_of_nonce(&by_nonce, &b["nonce"]) == Some(id))
            })
            .map(|c| {
                let n = c.body.as_ref().and_then(update_no);
                format!(
                    "{} update {n:?} → {} (processed {:?})",
                    c.method, c.status, c.processed
                )
            })
            .collect();
        out.push(format!("build {id}: {shows:?}; calls: {calls:?}"));
    }
    out
}

/// Check every invariant; panics naming the first one broken (and the
/// scenario and seed line printed before it). Prints and returns the figures.
pub fn check(scenario: &str, fake: &FakeDiscord, drone: &Drone, bound: &Bound) -> Figures {
    let unexpected = drone_discord::sync::lock(&drone.unexpected).clone();
    assert!(
        unexpected.is_empty(),
        "{scenario}: unexpected answers to webhooks: {unexpected:?}"
    );
    assert!(drone.done(), "{scenario}: not every event was answered 200");
    let plan = &drone.plan;
    let accepted = drone_discord::sync::lock(&drone.accepted).clone();
    for id in &plan.builds {
        let last = accepted
            .iter()
            .filter(|(b, _)| b == id)
            .map(|(_, n)| *n)
            .max();
        assert_eq!(
            last,
            Some(plan.per_build - 1),
            "{scenario}: build {id}'s final update was never answered 200"
        );
    }

    let by_nonce = nonces(drone);
    let messages = fake.messages();
    let mut by_build: HashMap<i64, Vec<String>> = HashMap::new();
    for (mid, m) in &messages {
        match build_of_nonce(&by_nonce, &m["nonce"]) {
            Some(b) => by_build.entry(b).or_default().push(mid.clone()),
            None => panic!("{scenario}: a message no build's nonce made: {m}"),
        }
    }
    for id in &plan.builds {
        let mids = by_build.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            mids.len(),
            1,
            "{scenario}: build {id} has {} build messages: {mids:?}",
            mids.len()
        );
        let mid = &mids[0];
        let msg = &messages[mid];
        if let Some(diff) = differs_from_render(msg, &plan.last(*id)) {
            panic!("{scenario}: build {id} does not show its final state: {diff}");
        }
        let seen: Vec<Option<usize>> = fake.history(mid).iter().map(update_no).collect();
        assert!(
            seen.iter().all(Option::is_some) && seen.windows(2).all(|w| w[0] <= w[1]),
            "{scenario}: build {id}'s message went back to an earlier update: {seen:?}"
        );
    }

    // What Discord would have refused.
    let calls = fake.calls();
    let rejected: Vec<String> = calls
        .iter()
        .filter(|c| {
            c.processed
                .is_some_and(|s| (400..500).contains(&s) && s != 429)
        })
        .map(|c| format!("{} → {:?} {:?}", c.route, c.processed, c.body))
        .collect();
    assert!(
        rejected.is_empty(),
        "{scenario}: {} requests Discord would reject: {rejected:?}",
        rejected.len()
    );
    let limited = calls.iter().filter(|c| c.processed == Some(429)).count();
    let total = calls.len();
    let figures = Figures {
        builds: plan.builds.len(),
        events: plan.events(),
        accepted: accepted.len(),
        refused: drone
            .tally
            .refused
            .load(std::sync::atomic::Ordering::SeqCst),
        lost: drone.tally.lost.load(std::sync::atomic::Ordering::SeqCst),
        calls: total,
        bound: bound.total(),
        limited,
    };
    eprintln!(
        "faults: {scenario}: checked {} events over {} builds ({} answers 200, {} refusals, {} lost connections); \
         {} Discord calls ({} creates, {} edits, {} other), bound {}; {} × 429 from the rate limit (allowed {})",
        figures.events,
        figures.builds,
        figures.accepted,
        figures.refused,
        figures.lost,
        total,
        calls.iter().filter(|c| c.method == "POST").count(),
        calls.iter().filter(|c| c.method == "PATCH").count(),
        calls.iter().filter(|c| c.method != "POST" && c.method != "PATCH").count(),
        bound.describe(),
        limited,
        bound.limited,
    );
    assert!(
        total <= bound.total(),
        "{scenario}: {total} Discord calls, more than the bound {}",
        bound.describe()
    );
    assert!(
        limited <= bound.limited,
        "{scenario}: {limited} calls hit the emulated rate limit, more than {}",
        bound.limited
    );
    figures
}
