//! One behavioural test suite that every [`Store`] backend must pass.
//!
//! The relay and ingest are written against the [`Store`] contract, not
//! against a backend, so the contract is pinned down here once and run
//! against each backend (`tests/store_conformance.rs`: the embedded store in a
//! temporary directory, MongoDB when `MONGODB_URI` is set).
//!
//! This is test support code: a failed expectation panics with a message that
//! says which rule was broken. Every case opens its own store through
//! [`Backend::open`] with its own name, so cases are isolated from each other
//! (a fresh directory, or a fresh MongoDB database, per case) and may run in
//! parallel.
use super::{
    build_key, channel_dest, Appended, Bounds, Claim, Completion, DeadSelection, MessageRef,
    NewEvent, OutcomeRecord, Result, Seq, Stats, Store, MAX_CLAIM_BYTES, MAX_CLAIM_EVENTS,
};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Opens the store under test.
pub trait Backend: Send + Sync {
    type S: Store;
    /// Open (or, after the previous handle was dropped, reopen) the store
    /// called `name`. Different names must not share any data; the same name
    /// must find what an earlier handle wrote.
    fn open(&self, name: &str) -> impl Future<Output = Result<Self::S>> + Send;
    /// [`open`](Backend::open), with these queue bounds and retentions.
    fn open_bounded(
        &self,
        name: &str,
        bounds: Bounds,
    ) -> impl Future<Output = Result<Self::S>> + Send;
}

/// Every case, in a fixed order, each in its own store.
pub async fn run_all<B: Backend>(b: &B) {
    reopen_keeps_everything(b).await;
    unkeyed_events_get_their_own_key(b).await;
    queue_order_per_key(b).await;
    claim_follows_oldest_pending_event(b).await;
    claim_is_exclusive_until_released(b).await;
    leases_expire_by_now_ms(b).await;
    stale_holders_are_fenced(b).await;
    coalescing_and_partial_complete(b).await;
    message_map(b).await;
    messages_per_destination(b).await;
    outcome_records_are_conditional(b).await;
    put_message_is_fenced(b).await;
    renew_extends_a_lease(b).await;
    uncertain_creates_are_kept(b).await;
    dead_letters(b).await;
    dead_letters_are_retried_and_purged(b).await;
    replay_dedupe(b).await;
    concurrent_writers(b).await;
    stats_and_limits(b).await;
    probe_writes(b).await;
    claims_are_bounded(b).await;
    a_full_queue_refuses_and_keeps_what_it_has(b).await;
}

/// The destination the single-destination cases use.
const D: &str = "channel:111";

/// A completion that stores `m` at [`D`].
fn done_with(m: MessageRef) -> Completion {
    Completion {
        messages: vec![(D.to_owned(), m)],
        outcome: None,
    }
}

/// Panics unless `r` is [`super::StoreError::Fenced`].
fn fenced(r: Result<()>, what: &str) {
    match r {
        Err(super::StoreError::Fenced(_)) => {}
        other => panic!("{what}: expected Fenced, got {other:?}"),
    }
}

const LEASE: Duration = Duration::from_secs(60);
/// A lease the cases outwait (a sleep longer than it, never a timing assertion).
const SHORT_LEASE: Duration = Duration::from_millis(300);
const T0: u64 = 1_700_000_000_000;

fn ok<T>(r: Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: {e}"),
    }
}

async fn open<B: Backend>(b: &B, name: &str) -> B::S {
    ok(b.open(name).await, "open store")
}

fn new_event(key: Option<&str>, action: &str, n: u64, replay: Option<&str>) -> NewEvent {
    NewEvent {
        key: key.map(str::to_owned),
        event: if key.is_some() {
            "build".into()
        } else {
            "user".into()
        },
        action: action.into(),
        received_ms: T0 + n,
        replay_key: replay.map(str::to_owned),
        body: format!("{{\"n\":{n}}}").into_bytes(),
    }
}

async fn append<S: Store>(s: &S, key: Option<&str>, n: u64) -> Seq {
    match ok(s.append(new_event(key, "updated", n, None)).await, "append") {
        Appended::Queued(seq) => seq,
        Appended::Duplicate(seq) => panic!("append without replay key reported duplicate of {seq}"),
    }
}

fn message(id: &str, status: &str) -> MessageRef {
    MessageRef {
        channel_id: "111".into(),
        message_id: id.into(),
        status: status.into(),
        ..MessageRef::default()
    }
}

fn keys(claims: &[Claim]) -> Vec<&str> {
    claims.iter().map(|c| c.key.as_str()).collect()
}

fn seqs(c: &Claim) -> Vec<Seq> {
    c.events.iter().map(|e| e.seq).collect()
}

async fn claim<S: Store>(s: &S, owner: &str, max: usize) -> Vec<Claim> {
    ok(s.claim(owner, LEASE, max).await, "claim")
}

/// The token of `key`'s claim in `claims`.
fn token(claims: &[Claim], key: &str) -> u64 {
    match claims.iter().find(|c| c.key == key) {
        Some(c) => c.token,
        None => panic!("no claim for {key} in {:?}", keys(claims)),
    }
}

/// Events, messages, dead letters and the seq counter survive a reopen.
pub async fn reopen_keeps_everything<B: Backend>(b: &B) {
    let name = "reopen_keeps_everything";
    let k1 = build_key("drone.test", 7, 1);
    let (before, seq_a, seq_b) = {
        let s = open(b, name).await;
        let seq_a = append(&s, Some(&k1), 1).await;
        let seq_b = append(&s, None, 2).await;
        append(&s, Some("build:2"), 3).await;
        let c = ok(s.claim("w", SHORT_LEASE, 10).await, "claim");
        assert_eq!(keys(&c).len(), 3);
        ok(
            s.put_message(&k1, D, "w", token(&c, &k1), message("m1", "running"))
                .await,
            "put_message",
        );
        ok(
            s.dead_letter(
                "build:2",
                "w",
                token(&c, "build:2"),
                Seq::MAX,
                "HTTP 400",
                T0 + 9,
            )
            .await,
            "dead_letter",
        );
        let pending = ok(s.pending(10).await, "pending");
        (pending, seq_a, seq_b)
    };
    assert!(seq_b > seq_a, "seqs increase");
    let s = open(b, name).await;
    assert_eq!(
        ok(s.pending(10).await, "pending"),
        before,
        "pending events identical after reopen"
    );
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].body, b"{\"n\":1}".to_vec());
    assert_eq!(before[0].received_ms, T0 + 1);
    assert_eq!(
        (before[0].event.as_str(), before[0].action.as_str()),
        ("build", "updated")
    );
    assert_eq!(
        ok(s.message(&k1, D).await, "message"),
        Some(message("m1", "running"))
    );
    let dead = ok(s.dead_letters(10).await, "dead_letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].reason.as_str(),
            dead[0].failed_ms,
            dead[0].event.key.as_str()
        ),
        ("HTTP 400", T0 + 9, "build:2")
    );
    assert_eq!(
        ok(s.stats().await, "stats"),
        Stats {
            pending: 2,
            dead_letters: 1
        }
    );
    let next = append(&s, None, 4).await;
    assert!(
        next > dead[0].event.seq && next > seq_b,
        "seq continues after reopen ({next})"
    );
    // Leases do not outlive the process/handle that took them... or, for a
    // shared backend, expire: either way a claim after the lease is usable.
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
    let c = claim(&s, "w2", 10).await;
    assert_eq!(
        keys(&c),
        vec![
            k1.as_str(),
            &format!("event:{seq_b}"),
            &format!("event:{next}")
        ]
    );
}

/// Events without a key are queued under `event:<seq>`, each on its own.
pub async fn unkeyed_events_get_their_own_key<B: Backend>(b: &B) {
    let s = open(b, "unkeyed_events_get_their_own_key").await;
    let a = append(&s, None, 1).await;
    let c = append(&s, None, 2).await;
    let claims = claim(&s, "w", 10).await;
    assert_eq!(
        keys(&claims),
        vec![format!("event:{a}"), format!("event:{c}")]
    );
    assert!(claims.iter().all(|c| c.events.len() == 1));
    assert_eq!(claims[0].events[0].key, format!("event:{a}"));
}

/// Each key's events come back in append order, keys ordered by their oldest event.
pub async fn queue_order_per_key<B: Backend>(b: &B) {
    let s = open(b, "queue_order_per_key").await;
    let mut want: Vec<(&str, Vec<Seq>)> = vec![
        ("build:1", vec![]),
        ("build:2", vec![]),
        ("build:3", vec![]),
    ];
    for (i, k) in [0usize, 1, 0, 2, 1, 0].into_iter().enumerate() {
        let seq = append(&s, Some(want[k].0), i as u64).await;
        want[k].1.push(seq);
    }
    let claims = claim(&s, "w", 10).await;
    let got: Vec<(&str, Vec<Seq>)> = claims.iter().map(|c| (c.key.as_str(), seqs(c))).collect();
    assert_eq!(
        got, want,
        "claims ordered by oldest pending event, events in seq order"
    );
    for c in &claims {
        assert!(
            c.events.iter().all(|e| e.key == c.key),
            "every event carries its key"
        );
        assert_eq!(c.upto(), *seqs(c).last().unwrap_or(&0));
    }
    let pending: Vec<Seq> = ok(s.pending(100).await, "pending")
        .iter()
        .map(|e| e.seq)
        .collect();
    let mut sorted = pending.clone();
    sorted.sort_unstable();
    assert_eq!(pending, sorted, "pending lists oldest first");
    assert_eq!(pending.len(), 6);
}

/// After the oldest event of a key is completed, the key's place in the
/// claim order moves to its next event; `max_keys` is respected.
pub async fn claim_follows_oldest_pending_event<B: Backend>(b: &B) {
    let s = open(b, "claim_follows_oldest_pending_event").await;
    let a1 = append(&s, Some("A"), 1).await;
    append(&s, Some("B"), 2).await;
    append(&s, Some("A"), 3).await;
    append(&s, Some("C"), 4).await;
    let first = claim(&s, "w", 1).await;
    assert_eq!(
        keys(&first),
        vec!["A"],
        "max_keys = 1 gives the oldest key only"
    );
    ok(
        s.complete("A", "w", token(&first, "A"), a1, Completion::default())
            .await,
        "complete",
    );
    let next = claim(&s, "w", 2).await;
    assert_eq!(
        keys(&next),
        vec!["B", "A"],
        "A now waits behind B's older event"
    );
    assert!(
        claim(&s, "w", 0).await.is_empty(),
        "max_keys = 0 claims nothing"
    );
}

/// A claimed key is not handed out again until released or completed, to
/// anyone (its owner included); other keys still are.
pub async fn claim_is_exclusive_until_released<B: Backend>(b: &B) {
    let s = open(b, "claim_is_exclusive_until_released").await;
    append(&s, Some("A"), 1).await;
    let b1 = append(&s, Some("B"), 2).await;
    let a = claim(&s, "w1", 1).await;
    assert_eq!(keys(&a), vec!["A"]);
    let bc = claim(&s, "w2", 10).await;
    assert_eq!(keys(&bc), vec!["B"], "A is leased to w1");
    assert!(
        claim(&s, "w1", 10).await.is_empty(),
        "leased keys are skipped for their owner too"
    );
    ok(
        s.release("A", "w2", token(&a, "A")).await,
        "release by a stranger",
    );
    assert!(
        claim(&s, "w3", 10).await.is_empty(),
        "a release by another owner does not free the key"
    );
    ok(
        s.release("A", "w1", token(&a, "A") + 1).await,
        "release with a wrong token",
    );
    assert!(
        claim(&s, "w3", 10).await.is_empty(),
        "a release with another token does not free the key"
    );
    ok(s.release("A", "w1", token(&a, "A")).await, "release");
    assert_eq!(
        keys(&claim(&s, "w3", 10).await),
        vec!["A"],
        "released key is claimable"
    );
    ok(
        s.complete("B", "w2", token(&bc, "B"), b1, Completion::default())
            .await,
        "complete",
    );
    append(&s, Some("B"), 3).await;
    assert_eq!(
        keys(&claim(&s, "w1", 10).await),
        vec!["B"],
        "complete drops the lease"
    );
}

/// A lease holds for its duration by the store's clock, is taken over after
/// it expired (with a newer token), and the old holder can no longer free,
/// renew, complete or dead-letter the key.
pub async fn leases_expire_by_now_ms<B: Backend>(b: &B) {
    let s = open(b, "leases_expire_by_now_ms").await;
    append(&s, Some("A"), 1).await;
    let short = SHORT_LEASE;
    let first = ok(s.claim("w1", short, 10).await, "claim");
    assert_eq!(keys(&first), vec!["A"]);
    assert!(claim(&s, "w2", 10).await.is_empty(), "lease still held");
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let again = claim(&s, "w2", 10).await;
    assert_eq!(keys(&again), vec!["A"], "expired lease is taken over");
    assert!(
        again[0].token > first[0].token,
        "a later claim of a key carries a larger token"
    );
    assert!(claim(&s, "w1", 10).await.is_empty(), "the new lease holds");
    // The old owner's late release must not free the new owner's lease.
    ok(s.release("A", "w1", first[0].token).await, "stale release");
    assert!(
        claim(&s, "w3", 10).await.is_empty(),
        "stale release ignored"
    );
    assert!(
        matches!(
            s.renew("A", "w1", first[0].token, LEASE).await,
            Err(super::StoreError::Fenced(_))
        ),
        "stale renew refused"
    );
    ok(
        s.renew("A", "w2", again[0].token, LEASE).await,
        "renew by the holder",
    );
}

/// Fencing: a holder whose lease expired and was claimed again is refused on
/// complete and dead-letter, and changes nothing; in particular its stale
/// message status never replaces the final one the new holder stored, in
/// whichever order the two finish. Nothing here reads the wall clock, so a
/// wall-clock step (±1 h) cannot change the outcome.
pub async fn stale_holders_are_fenced<B: Backend>(b: &B) {
    let s = open(b, "stale_holders_are_fenced").await;
    let k = build_key("drone.test", 7, 5);
    let seq = append(&s, Some(&k), 1).await;
    let short = SHORT_LEASE;
    let stale = ok(s.claim("w1", short, 10).await, "claim");
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    let fresh = claim(&s, "w2", 10).await;
    assert_eq!(keys(&fresh), vec![k.as_str()]);
    let fenced = |r: Result<()>, what: &str| match r {
        Err(super::StoreError::Fenced(_)) => {}
        other => panic!("{what}: expected Fenced, got {other:?}"),
    };
    // The stale holder tries first: refused, nothing changes.
    fenced(
        s.complete(
            &k,
            "w1",
            stale[0].token,
            seq,
            done_with(message("m1", "running")),
        )
        .await,
        "stale complete",
    );
    fenced(
        s.dead_letter(&k, "w1", stale[0].token, seq, "stale", T0)
            .await,
        "stale dead_letter",
    );
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        None,
        "a refused complete stores no message"
    );
    assert_eq!(
        ok(s.stats().await, "stats"),
        Stats {
            pending: 1,
            dead_letters: 0
        }
    );
    // The new holder finishes; the stale one's late complete is refused.
    ok(
        s.complete(
            &k,
            "w2",
            fresh[0].token,
            seq,
            done_with(message("m1", "success")),
        )
        .await,
        "complete",
    );
    fenced(
        s.complete(
            &k,
            "w1",
            stale[0].token,
            seq,
            done_with(message("m1", "running")),
        )
        .await,
        "late stale complete",
    );
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        Some(message("m1", "success")),
        "the final status stays"
    );
    // A complete without any lease is refused too.
    fenced(
        s.complete("build:404", "w", 1, Seq::MAX, Completion::default())
            .await,
        "complete without a lease",
    );
}

/// Several events of one key come back together; events appended after a
/// claim wait for the next claim; `complete(upto)` removes only `≤ upto`.
pub async fn coalescing_and_partial_complete<B: Backend>(b: &B) {
    let s = open(b, "coalescing_and_partial_complete").await;
    let k = build_key("drone.test", 7, 42);
    let mut first = Vec::new();
    for n in 0..3 {
        first.push(append(&s, Some(&k), n).await);
    }
    let c = claim(&s, "w", 10).await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        seqs(&c[0]),
        first,
        "all pending events of the key, in order"
    );
    let bodies: Vec<&[u8]> = c[0].events.iter().map(|e| e.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"{\"n\":0}"[..], b"{\"n\":1}", b"{\"n\":2}"]);
    let late = append(&s, Some(&k), 3).await;
    assert!(claim(&s, "w2", 10).await.is_empty(), "key still leased");
    ok(
        s.complete(&k, "w", c[0].token, c[0].upto(), Completion::default())
            .await,
        "complete",
    );
    assert_eq!(
        ok(s.stats().await, "stats").pending,
        1,
        "only events ≤ upto removed"
    );
    let c2 = claim(&s, "w", 10).await;
    assert_eq!(c2.len(), 1);
    assert_eq!(
        seqs(&c2[0]),
        vec![late],
        "the late event is picked up by the next claim"
    );
    // complete with an upto below everything pending removes nothing (and
    // drops the lease).
    ok(
        s.complete(&k, "w", c2[0].token, first[0], Completion::default())
            .await,
        "complete below",
    );
    assert_eq!(ok(s.stats().await, "stats").pending, 1);
    // complete beyond everything pending removes what there is; a key
    // without a lease cannot be completed at all (see stale_holders_are_fenced).
    let c3 = claim(&s, "w", 10).await;
    assert_eq!(seqs(&c3[0]), vec![late]);
    ok(
        s.complete(&k, "w", c3[0].token, Seq::MAX, Completion::default())
            .await,
        "complete all",
    );
    assert_eq!(ok(s.stats().await, "stats").pending, 0);
}

/// put/get/overwrite of the key → message map; `complete` with a message
/// stores it; all of it survives a reopen.
pub async fn message_map<B: Backend>(b: &B) {
    let name = "message_map";
    {
        let s = open(b, name).await;
        assert_eq!(ok(s.message("build:1", D).await, "message"), None);
        let seq1 = append(&s, Some("build:1"), 0).await;
        let c1 = claim(&s, "w", 10).await;
        let t1 = token(&c1, "build:1");
        ok(
            s.put_message("build:1", D, "w", t1, message("m1", "pending"))
                .await,
            "put",
        );
        assert_eq!(
            ok(s.message("build:1", D).await, "message"),
            Some(message("m1", "pending"))
        );
        ok(
            s.put_message("build:1", D, "w", t1, message("m1", "running"))
                .await,
            "overwrite",
        );
        assert_eq!(
            ok(s.message("build:1", D).await, "message"),
            Some(message("m1", "running"))
        );
        ok(
            s.complete("build:1", "w", t1, seq1, Completion::default())
                .await,
            "complete without a message keeps the stored one",
        );
        let seq = append(&s, Some("build:2"), 1).await;
        let c = claim(&s, "w", 10).await;
        ok(
            s.complete(
                "build:2",
                "w",
                token(&c, "build:2"),
                seq,
                done_with(message("m2", "success")),
            )
            .await,
            "complete with message",
        );
        assert_eq!(ok(s.stats().await, "stats").pending, 0);
    }
    let s = open(b, name).await;
    assert_eq!(
        ok(s.message("build:1", D).await, "message"),
        Some(message("m1", "running"))
    );
    assert_eq!(
        ok(s.message("build:2", D).await, "message"),
        Some(message("m2", "success"))
    );
    assert_eq!(ok(s.message("build:3", D).await, "message"), None);
}

/// A key's messages at different destinations are independent: each is
/// read, written, imported and completed on its own; `messages` lists them
/// in destination order and nothing of another key (even one whose key
/// starts with this one); `complete` stores several at once, and a fenced
/// `complete` none of them.
pub async fn messages_per_destination<B: Backend>(b: &B) {
    let name = "messages_per_destination";
    let (k, k10) = (
        build_key("drone.test", 7, 1),
        build_key("drone.test", 7, 10),
    );
    let (ch1, ch3, hook) = (channel_dest("1"), channel_dest("3"), "webhook:ops");
    let threaded = MessageRef {
        thread_id: Some("t1".into()),
        pinged: true,
        ..message("w1", "failure")
    };
    {
        let s = open(b, name).await;
        append(&s, Some(&k), 1).await;
        append(&s, Some(&k10), 2).await;
        let c = claim(&s, "w", 10).await;
        let (t, t10) = (token(&c, &k), token(&c, &k10));
        assert_eq!(ok(s.messages(&k).await, "messages"), vec![]);
        ok(
            s.put_message(&k, &ch1, "w", t, message("m1", "running"))
                .await,
            "put at channel 1",
        );
        ok(
            s.put_message(&k, hook, "w", t, threaded.clone()).await,
            "put at a webhook",
        );
        ok(
            s.put_message(&k10, &ch1, "w", t10, message("m10", "running"))
                .await,
            "put of another key",
        );
        assert_eq!(
            ok(s.message(&k, &ch1).await, "message"),
            Some(message("m1", "running"))
        );
        assert_eq!(
            ok(s.message(&k, hook).await, "message"),
            Some(threaded.clone())
        );
        assert_eq!(
            ok(s.message(&k, &ch3).await, "message"),
            None,
            "no message at channel 3"
        );
        // A stale holder's complete stores none of its messages.
        fenced(
            s.complete(
                &k,
                "w-stale",
                t,
                Seq::MAX,
                Completion {
                    messages: vec![(ch3.clone(), message("m-stale", "success"))],
                    outcome: None,
                },
            )
            .await,
            "stale complete with messages",
        );
        assert_eq!(
            ok(s.message(&k, &ch3).await, "message"),
            None,
            "fenced: nothing stored"
        );
        ok(
            s.complete(
                &k,
                "w",
                t,
                Seq::MAX,
                Completion {
                    messages: vec![
                        (ch1.clone(), message("m1", "success")),
                        (ch3.clone(), message("m3", "success")),
                    ],
                    outcome: None,
                },
            )
            .await,
            "complete with two messages",
        );
        // Import: never over a known message, per destination.
        assert!(
            !ok(
                s.import_message(&k, &ch1, message("m-old", "pending"))
                    .await,
                "import"
            ),
            "a known destination is not imported over"
        );
        assert!(
            ok(
                s.import_message(&k, "channel:9", message("m9", "pending"))
                    .await,
                "import"
            ),
            "an unknown destination of a known key is imported"
        );
    }
    let s = open(b, name).await;
    assert_eq!(
        ok(s.messages(&k).await, "messages"),
        vec![
            (ch1.clone(), message("m1", "success")),
            (ch3.clone(), message("m3", "success")),
            ("channel:9".to_owned(), message("m9", "pending")),
            (hook.to_owned(), threaded),
        ],
        "every destination of the key, in destination order, after a reopen"
    );
    assert_eq!(
        ok(s.messages(&k10).await, "messages"),
        vec![(ch1, message("m10", "running"))]
    );
}

/// `complete` writes a `changed` outcome record only when it is newer than
/// the stored one (build number, then creation time); an equal or older one
/// leaves it, and a fenced complete writes none.
pub async fn outcome_records_are_conditional<B: Backend>(b: &B) {
    let name = "outcome_records_are_conditional";
    let rec = |passing, number, created, at_ms| OutcomeRecord {
        passing,
        number,
        created,
        at_ms,
    };
    let ck = "https://drone.test\u{1f}octo/hello\u{1f}push\u{1f}main";
    let other = "https://drone.test\u{1f}octo/hello\u{1f}pull_request\u{1f}main";
    {
        let s = open(b, name).await;
        assert_eq!(ok(s.outcome(ck).await, "outcome"), None);
        let mut n = 0;
        let mut write = |r: OutcomeRecord| {
            n += 1;
            let (s, key) = (&s, build_key("drone.test", 7, n));
            async move {
                append(s, Some(&key), n as u64).await;
                let c = claim(s, "w", 10).await;
                let done = Completion {
                    messages: vec![],
                    outcome: Some((ck.to_owned(), r)),
                };
                ok(
                    s.complete(&key, "w", token(&c, &key), Seq::MAX, done).await,
                    "complete with an outcome",
                );
                ok(s.outcome(ck).await, "outcome")
            }
        };
        let first = rec(false, 5, 100, T0);
        assert_eq!(
            write(first).await,
            Some(first),
            "the first record is stored"
        );
        assert_eq!(
            write(rec(true, 4, 200, T0 + 1)).await,
            Some(first),
            "an older build is ignored"
        );
        assert_eq!(
            write(rec(true, 5, 100, T0 + 2)).await,
            Some(first),
            "the same build is ignored"
        );
        let reused = rec(true, 5, 101, T0 + 3);
        assert_eq!(
            write(reused).await,
            Some(reused),
            "same number, created later: newer"
        );
        let newer = rec(false, 6, 50, T0 + 4);
        assert_eq!(write(newer).await, Some(newer), "a higher number is newer");
        // A stale holder's complete writes no record.
        let k = build_key("drone.test", 8, 1);
        append(&s, Some(&k), 99).await;
        let c = claim(&s, "w", 10).await;
        let done = Completion {
            messages: vec![],
            outcome: Some((ck.to_owned(), rec(true, 9, 0, T0))),
        };
        fenced(
            s.complete(&k, "w-stale", token(&c, &k), Seq::MAX, done)
                .await,
            "stale complete with an outcome",
        );
        assert_eq!(
            ok(s.outcome(ck).await, "outcome"),
            Some(newer),
            "fenced: unchanged"
        );
        assert_eq!(
            ok(s.outcome(other).await, "outcome"),
            None,
            "other keys are apart"
        );
    }
    let s = open(b, name).await;
    assert_eq!(
        ok(s.outcome(ck).await, "outcome"),
        Some(rec(false, 6, 50, T0 + 4)),
        "kept across a reopen"
    );
}

/// `put_message` is fenced like `complete`: a holder whose lease expired
/// and was claimed again cannot overwrite what the new holder stored (nor
/// store anything first), and a key nobody holds cannot be written at all.
/// `import_message` never replaces a known message.
pub async fn put_message_is_fenced<B: Backend>(b: &B) {
    let s = open(b, "put_message_is_fenced").await;
    let k = build_key("drone.test", 7, 9);
    append(&s, Some(&k), 1).await;
    let stale = ok(s.claim("w1", SHORT_LEASE, 10).await, "claim");
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
    let fresh = claim(&s, "w2", 10).await;
    assert_eq!(keys(&fresh), vec![k.as_str()]);
    let fenced = |r: Result<()>, what: &str| match r {
        Err(super::StoreError::Fenced(_)) => {}
        other => panic!("{what}: expected Fenced, got {other:?}"),
    };
    fenced(
        s.put_message(&k, D, "w1", stale[0].token, message("m-stale", "running"))
            .await,
        "stale put_message before the holder wrote",
    );
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        None,
        "nothing stored"
    );
    ok(
        s.put_message(&k, D, "w2", fresh[0].token, message("m1", "success"))
            .await,
        "put_message by the holder",
    );
    fenced(
        s.put_message(&k, D, "w1", stale[0].token, message("m-stale", "running"))
            .await,
        "stale put_message after the holder wrote",
    );
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        Some(message("m1", "success")),
        "the holder's message stays"
    );
    fenced(
        s.put_message("build:404", D, "w", 1, message("m", "running"))
            .await,
        "put_message without a lease",
    );
    assert!(
        !ok(
            s.import_message(&k, D, message("m-old", "pending")).await,
            "import"
        ),
        "import over a known message stores nothing"
    );
    assert!(ok(
        s.import_message("build:new", D, message("m2", "pending"))
            .await,
        "import"
    ));
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        Some(message("m1", "success"))
    );
    assert_eq!(
        ok(s.message("build:new", D).await, "message"),
        Some(message("m2", "pending"))
    );
}

/// A renewed lease holds past its first expiry (by the store's clock), so a
/// long delivery keeps its key; the holder can still complete it after.
pub async fn renew_extends_a_lease<B: Backend>(b: &B) {
    let s = open(b, "renew_extends_a_lease").await;
    let seq = append(&s, Some("A"), 1).await;
    let c = ok(s.claim("w1", SHORT_LEASE, 10).await, "claim");
    assert_eq!(keys(&c), vec!["A"]);
    for _ in 0..3 {
        tokio::time::sleep(SHORT_LEASE / 2).await;
        ok(s.renew("A", "w1", c[0].token, LEASE).await, "renew");
    }
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
    assert!(
        claim(&s, "w2", 10).await.is_empty(),
        "a renewed lease is not taken over after its first expiry"
    );
    ok(
        s.complete("A", "w1", c[0].token, seq, Completion::default())
            .await,
        "the holder completes",
    );
    assert_eq!(ok(s.stats().await, "stats").pending, 0);
}

/// A message with an uncertain create (written before the create goes out)
/// reads back as written, survives a reopen, and is cleared by the next
/// `put_message`.
pub async fn uncertain_creates_are_kept<B: Backend>(b: &B) {
    let name = "uncertain_creates_are_kept";
    let k = build_key("drone.test", 7, 11);
    let pending_create = MessageRef {
        channel_id: "111".into(),
        message_id: String::new(),
        status: "pending".into(),
        uncertain: Some(super::UncertainCreate {
            channel_id: "111".into(),
            generation: 7,
            since_ms: T0,
        }),
        ..MessageRef::default()
    };
    let first = {
        let s = open(b, name).await;
        append(&s, Some(&k), 1).await;
        let c = ok(s.claim("w", SHORT_LEASE, 10).await, "claim");
        ok(
            s.put_message(&k, D, "w", c[0].token, pending_create.clone())
                .await,
            "put the intent",
        );
        assert_eq!(
            ok(s.message(&k, D).await, "message"),
            Some(pending_create.clone())
        );
        c[0].token
    };
    let s = open(b, name).await;
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        Some(pending_create.clone()),
        "the intent survives a reopen"
    );
    tokio::time::sleep(SHORT_LEASE + Duration::from_millis(200)).await;
    let c = claim(&s, "w2", 10).await;
    let t = token(&c, &k);
    assert!(t > first, "a later claim carries a larger token");
    ok(
        s.put_message(&k, D, "w2", t, message("m1", "pending"))
            .await,
        "the outcome replaces the intent",
    );
    assert_eq!(
        ok(s.message(&k, D).await, "message"),
        Some(message("m1", "pending"))
    );
}

/// Dead-lettered events are moved aside with their reason, are no longer
/// pending or claimable, are counted, and survive a reopen.
pub async fn dead_letters<B: Backend>(b: &B) {
    let name = "dead_letters";
    {
        let s = open(b, name).await;
        let a1 = append(&s, Some("A"), 1).await;
        let b1 = append(&s, Some("B"), 2).await;
        let a2 = append(&s, Some("A"), 3).await;
        let a3 = append(&s, Some("A"), 4).await;
        let c = claim(&s, "w", 10).await;
        assert_eq!(keys(&c), vec!["A", "B"]);
        ok(
            s.dead_letter(
                "A",
                "w",
                token(&c, "A"),
                a2,
                "HTTP 400: embed too long",
                T0 + 77,
            )
            .await,
            "dead_letter",
        );
        assert_eq!(
            ok(s.stats().await, "stats"),
            Stats {
                pending: 2,
                dead_letters: 2
            }
        );
        let pending: Vec<Seq> = ok(s.pending(10).await, "pending")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(pending, vec![b1, a3], "dead letters are no longer pending");
        let dead = ok(s.dead_letters(10).await, "dead_letters");
        let got: Vec<(Seq, &str, &str, u64)> = dead
            .iter()
            .map(|d| {
                (
                    d.event.seq,
                    d.event.key.as_str(),
                    d.reason.as_str(),
                    d.failed_ms,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (a1, "A", "HTTP 400: embed too long", T0 + 77),
                (a2, "A", "HTTP 400: embed too long", T0 + 77)
            ]
        );
        assert_eq!(dead[0].event.body, b"{\"n\":1}".to_vec());
        let again = claim(&s, "w2", 10).await;
        assert_eq!(
            keys(&again),
            vec!["A"],
            "dead_letter drops the lease; the rest of A is claimable"
        );
        assert_eq!(seqs(&again[0]), vec![a3]);
        assert_eq!(
            ok(s.dead_letters(1).await, "dead_letters").len(),
            1,
            "limit respected"
        );
    }
    let s = open(b, name).await;
    assert_eq!(
        ok(s.stats().await, "stats"),
        Stats {
            pending: 2,
            dead_letters: 2
        }
    );
    assert_eq!(ok(s.dead_letters(10).await, "dead_letters").len(), 2);
}

/// Dead letters the operator retries are pending again as new events of
/// their key (after everything pending), once; purged ones are gone; a
/// retry that does not fit below the bounds changes nothing.
pub async fn dead_letters_are_retried_and_purged<B: Backend>(b: &B) {
    use super::StoreError;
    let bounds = Bounds {
        max_events: 4,
        ..Bounds::default()
    };
    let s = ok(
        b.open_bounded("dead_letters_retried", bounds).await,
        "open bounded",
    );
    let a1 = append(&s, Some("A"), 1).await;
    let b1 = append(&s, Some("B"), 2).await;
    let c1 = append(&s, Some("C"), 3).await;
    let c = claim(&s, "w", 10).await;
    for (key, upto) in [("A", a1), ("B", b1), ("C", c1)] {
        ok(
            s.dead_letter(key, "w", token(&c, key), upto, "HTTP 400", T0 + 9)
                .await,
            "dead_letter",
        );
    }
    let a2 = append(&s, Some("A"), 4).await;

    assert_eq!(
        ok(
            s.retry_dead(DeadSelection::One(a2)).await,
            "retry a pending id"
        ),
        0,
        "an id that is not a dead letter retries nothing"
    );
    assert_eq!(
        ok(s.retry_dead(DeadSelection::One(a1)).await, "retry one"),
        1
    );
    let pending = ok(s.pending(10).await, "pending");
    let got: Vec<(&str, &[u8], u64)> = pending
        .iter()
        .map(|e| (e.key.as_str(), e.body.as_slice(), e.received_ms))
        .collect();
    assert_eq!(
        got,
        vec![
            ("A", &b"{\"n\":4}"[..], T0 + 4),
            ("A", &b"{\"n\":1}"[..], T0 + 1)
        ],
        "the retried event is queued after what is pending, as it was"
    );
    assert!(pending[1].seq > a2, "a fresh seq");
    assert_eq!(
        ok(s.stats().await, "stats"),
        Stats {
            pending: 2,
            dead_letters: 2
        }
    );
    assert_eq!(ok(s.retry_dead(DeadSelection::One(a1)).await, "again"), 0);

    // Two left, room for two more events: `all` fits exactly once.
    append(&s, None, 5).await;
    match s.retry_dead(DeadSelection::All).await {
        Err(StoreError::Full(_)) => {}
        other => panic!("a retry past the bound must be Full, got {other:?}"),
    }
    assert_eq!(
        ok(s.stats().await, "stats"),
        Stats {
            pending: 3,
            dead_letters: 2
        },
        "a refused retry changes nothing"
    );
    assert_eq!(
        ok(s.purge_dead(DeadSelection::One(b1)).await, "purge one"),
        1
    );
    assert_eq!(ok(s.purge_dead(DeadSelection::One(b1)).await, "again"), 0);
    assert_eq!(ok(s.retry_dead(DeadSelection::All).await, "retry all"), 1);
    let keys_pending: Vec<String> = ok(s.pending(10).await, "pending")
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys_pending.last().map(String::as_str), Some("C"));
    assert_eq!(ok(s.stats().await, "stats").dead_letters, 0);

    let c = claim(&s, "w", 10).await;
    let seq_of_c = c
        .iter()
        .find(|c| c.key == "C")
        .map(|c| c.upto())
        .unwrap_or(0);
    ok(
        s.dead_letter("C", "w", token(&c, "C"), seq_of_c, "again", T0 + 10)
            .await,
        "dead_letter",
    );
    assert_eq!(ok(s.purge_dead(DeadSelection::All).await, "purge all"), 1);
    assert_eq!(ok(s.stats().await, "stats").dead_letters, 0);
    assert_eq!(
        ok(s.purge_dead(DeadSelection::All).await, "nothing left"),
        0
    );
}

/// A replayed webhook (same replay key) stores nothing and names the first seq.
pub async fn replay_dedupe<B: Backend>(b: &B) {
    let name = "replay_dedupe";
    let first = {
        let s = open(b, name).await;
        let first = ok(
            s.append(new_event(Some("build:1"), "created", 1, Some("sig-1")))
                .await,
            "append",
        );
        let Appended::Queued(seq) = first else {
            panic!("first append must be queued, got {first:?}")
        };
        let again = ok(
            s.append(new_event(Some("build:1"), "created", 2, Some("sig-1")))
                .await,
            "replay",
        );
        assert_eq!(again, Appended::Duplicate(seq));
        let other = ok(
            s.append(new_event(Some("build:1"), "created", 3, Some("sig-2")))
                .await,
            "append",
        );
        assert!(
            matches!(other, Appended::Queued(o) if o > seq),
            "another key is queued: {other:?}"
        );
        assert_eq!(
            ok(s.stats().await, "stats").pending,
            2,
            "the replay stored nothing"
        );
        seq
    };
    let s = open(b, name).await;
    let after = ok(
        s.append(new_event(None, "created", 4, Some("sig-1"))).await,
        "replay after reopen",
    );
    assert_eq!(
        after,
        Appended::Duplicate(first),
        "replay keys survive a reopen"
    );
    // Concurrent appends of one replay key: exactly one is queued.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.append(new_event(None, "created", 10 + i, Some("sig-race")))
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(ok(
            t.await
                .map_err(|e| super::StoreError::Unavailable(e.to_string()))
                .and_then(|r| r),
            "race",
        ));
    }
    let queued: Vec<Seq> = results
        .iter()
        .filter(|r| matches!(r, Appended::Queued(_)))
        .map(|r| r.seq())
        .collect();
    assert_eq!(
        queued.len(),
        1,
        "exactly one of the racing appends is queued: {results:?}"
    );
    assert!(
        results.iter().all(|r| r.seq() == queued[0]),
        "duplicates name the winner's seq"
    );
    assert_eq!(ok(s.stats().await, "stats").pending, 3);
}

/// Many tasks appending at once: every seq distinct, nothing lost, per-key
/// order equals seq order.
pub async fn concurrent_writers<B: Backend>(b: &B) {
    let s = Arc::new(open(b, "concurrent_writers").await);
    const TASKS: u64 = 32;
    const EACH: u64 = 5;
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..EACH {
                    let key = if t % 2 == 0 {
                        Some(build_key("drone.test", 7, (t % 4) as i64))
                    } else {
                        None
                    };
                    let r = s
                        .append(new_event(key.as_deref(), "updated", t * 100 + i, None))
                        .await?;
                    seqs.push(r.seq());
                }
                Ok::<_, super::StoreError>(seqs)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let seqs = ok(
            t.await
                .map_err(|e| super::StoreError::Unavailable(e.to_string()))
                .and_then(|r| r),
            "writer",
        );
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one writer's seqs increase: {seqs:?}"
        );
        all.extend(seqs);
    }
    let distinct: HashSet<Seq> = all.iter().copied().collect();
    assert_eq!(distinct.len() as u64, TASKS * EACH, "all seqs distinct");
    assert_eq!(
        ok(s.stats().await, "stats").pending,
        TASKS * EACH,
        "none lost"
    );
    let claims = claim(&*s, "w", 1000).await;
    let total: usize = claims.iter().map(|c| c.events.len()).sum();
    assert_eq!(total as u64, TASKS * EACH);
    for c in &claims {
        let q = seqs(c);
        assert!(
            q.windows(2).all(|w| w[0] < w[1]),
            "key {} in seq order",
            c.key
        );
    }
    assert_eq!(
        claims
            .iter()
            .filter(|c| c.key.starts_with("build:"))
            .count(),
        2,
        "two build keys (0 and 2)"
    );
}

/// Counts and list limits.
pub async fn stats_and_limits<B: Backend>(b: &B) {
    let s = open(b, "stats_and_limits").await;
    assert_eq!(ok(s.stats().await, "stats"), Stats::default());
    assert!(ok(s.pending(10).await, "pending").is_empty());
    assert!(ok(s.dead_letters(10).await, "dead").is_empty());
    assert!(claim(&s, "w", 10).await.is_empty());
    for n in 0..5 {
        append(&s, None, n).await;
    }
    assert_eq!(
        ok(s.stats().await, "stats"),
        Stats {
            pending: 5,
            dead_letters: 0
        }
    );
    let two = ok(s.pending(2).await, "pending");
    assert_eq!(two.len(), 2);
    let all = ok(s.pending(10).await, "pending");
    assert_eq!(two[..], all[..2], "the limit keeps the oldest");
    assert!(ok(s.pending(0).await, "pending").is_empty());
}

/// `probe` and `writable` succeed on a healthy store and do not touch the queue.
pub async fn probe_writes<B: Backend>(b: &B) {
    let s = open(b, "probe_writes").await;
    ok(s.probe().await, "probe");
    ok(s.probe().await, "probe twice");
    ok(s.writable().await, "writable");
    assert_eq!(ok(s.stats().await, "stats"), Stats::default());
}

/// A claim carries at most [`MAX_CLAIM_EVENTS`] events and
/// [`MAX_CLAIM_BYTES`] body bytes (but always one event); the rest of the
/// key comes with the next claim, in order.
pub async fn claims_are_bounded<B: Backend>(b: &B) {
    let s = open(b, "claims_are_bounded").await;
    let k = build_key("drone.test", 7, 7);
    let total = MAX_CLAIM_EVENTS as u64 + 6;
    for n in 0..total {
        append(&s, Some(&k), n).await;
    }
    let c = claim(&s, "w", 10).await;
    assert_eq!(c.len(), 1);
    assert_eq!(
        c[0].events.len(),
        MAX_CLAIM_EVENTS,
        "a claim stops at MAX_CLAIM_EVENTS"
    );
    ok(
        s.complete(&k, "w", c[0].token, c[0].upto(), Completion::default())
            .await,
        "complete",
    );
    let rest = claim(&s, "w", 10).await;
    assert_eq!(
        rest[0].events.len(),
        6,
        "the rest comes with the next claim"
    );
    assert!(rest[0].events[0].seq > c[0].upto(), "in seq order");
    ok(
        s.complete(
            &k,
            "w",
            rest[0].token,
            rest[0].upto(),
            Completion::default(),
        )
        .await,
        "complete",
    );

    // Bodies larger than half the byte bound: one per claim; one larger
    // than the whole bound still goes out, alone.
    let big = build_key("drone.test", 7, 8);
    for size in [
        MAX_CLAIM_BYTES / 2 + 1,
        MAX_CLAIM_BYTES / 2 + 1,
        MAX_CLAIM_BYTES + 1,
    ] {
        let ev = NewEvent {
            body: vec![b'x'; size],
            ..new_event(Some(&big), "updated", 0, None)
        };
        ok(s.append(ev).await, "append big");
    }
    for want in [
        MAX_CLAIM_BYTES / 2 + 1,
        MAX_CLAIM_BYTES / 2 + 1,
        MAX_CLAIM_BYTES + 1,
    ] {
        let c = claim(&s, "w", 10).await;
        let sizes: Vec<usize> = c[0].events.iter().map(|e| e.body.len()).collect();
        assert_eq!(sizes, vec![want], "one big event per claim");
        ok(
            s.complete(&big, "w", c[0].token, c[0].upto(), Completion::default())
                .await,
            "complete big",
        );
    }
    assert_eq!(ok(s.stats().await, "stats").pending, 0);
}

/// Past either bound (events, bytes) `append` answers `Full` and stores
/// nothing; a replay is still a duplicate; everything accepted stays and is
/// claimed; once drained, appends are taken again.
pub async fn a_full_queue_refuses_and_keeps_what_it_has<B: Backend>(b: &B) {
    use super::StoreError;
    let bounds = Bounds {
        max_events: 3,
        ..Bounds::default()
    };
    let s = ok(
        b.open_bounded("full_queue_events", bounds).await,
        "open bounded",
    );
    let is_full = |r: Result<Appended>, what: &str| match r {
        Err(StoreError::Full(_)) => {}
        other => panic!("{what}: expected Full, got {other:?}"),
    };
    let first = ok(
        s.append(new_event(Some("build:1"), "updated", 0, Some("sig-0")))
            .await,
        "append",
    )
    .seq();
    append(&s, Some("build:1"), 1).await;
    append(&s, None, 2).await;
    let u = ok(s.usage().await, "usage");
    assert_eq!((u.events, u.full), (3, true), "{u:?}");
    is_full(
        s.append(new_event(Some("build:1"), "updated", 3, None))
            .await,
        "fourth event",
    );
    assert_eq!(
        ok(
            s.append(new_event(Some("build:1"), "updated", 0, Some("sig-0")))
                .await,
            "replay"
        ),
        Appended::Duplicate(first),
        "a replay is a duplicate even when full"
    );
    assert_eq!(
        ok(s.stats().await, "stats").pending,
        3,
        "nothing accepted was dropped"
    );
    let c = claim(&s, "w", 10).await;
    assert_eq!(c.iter().map(|c| c.events.len()).sum::<usize>(), 3);
    for c in &c {
        ok(
            s.complete(&c.key, "w", c.token, c.upto(), Completion::default())
                .await,
            "complete",
        );
    }
    assert!(!ok(s.usage().await, "usage").full);
    append(&s, None, 4).await;

    let bounds = Bounds {
        max_bytes: 1000,
        ..Bounds::default()
    };
    let s = ok(
        b.open_bounded("full_queue_bytes", bounds).await,
        "open bounded",
    );
    let big = |n: u64| NewEvent {
        body: vec![b'x'; 400],
        ..new_event(None, "updated", n, None)
    };
    ok(s.append(big(0)).await, "400 bytes");
    ok(s.append(big(1)).await, "800 bytes");
    is_full(s.append(big(2)).await, "past the byte bound");
    let u = ok(s.usage().await, "usage");
    assert_eq!(u.events, 2);
    assert!(u.bytes >= 800, "{u:?}");
    assert_eq!(ok(s.stats().await, "stats").pending, 2);
}
