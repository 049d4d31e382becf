//! The group-commit writer: one thread that makes every write durable.
//!
//! Every write must be durable (an fsync'ed redb commit) before its future
//! resolves, and a commit costs one or two fsyncs no matter how much it
//! carries. One dedicated writer thread therefore takes every write request
//! that is waiting, applies them all in one write transaction, commits once
//! and then answers each caller over a oneshot channel. Under load (64
//! webhooks at once) that turns 64 fsyncs into a few.
//!
//! When a shared commit fails, each request is retried alone, so only the
//! one that spoiled it (or every one, when the disk failed) gets the error.
//! After a failure that left the handle unusable, the writer reopens the
//! file before the next batch ([`super::reopen`]).
use super::codec::{encode_dead, encode_event};
use super::compact::{
    compact_if_worth_it, queue_is_empty, Compaction, IDLE_BEFORE_COMPACT, MIN_INTERVAL, RETRY_BUSY,
};
use super::dead_letters::{self, Retried};
use super::errors::Ctx;
use super::leases::Leases;
use super::message_map::{put_message, put_outcome};
use super::queue::{append, prune_replay, take_events, META_QUEUE_BYTES};
use super::reopen::Shared;
use super::retention::RetentionTables;
use super::tables::{Tables, META_NEXT_SEQ, META_PROBE};
use crate::store::{
    Appended, Bounds, Completion, DeadSelection, MessageRef, NewEvent, Result, Seq, StoreError,
};
use redb::{Database, Durability, ReadableTable};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most write requests folded into one commit.
const MAX_BATCH: usize = 512;
/// Stop adding requests to a commit once their payloads reach this size, so
/// a burst of large webhooks does not build one huge transaction in memory.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// One write the store asks for.
pub(super) enum Op {
    Append(NewEvent),
    Complete {
        key: String,
        owner: String,
        token: u64,
        upto: Seq,
        done: Completion,
    },
    DeadLetter {
        key: String,
        owner: String,
        token: u64,
        upto: Seq,
        reason: String,
        now_ms: u64,
    },
    PutMessage {
        key: String,
        dest: String,
        owner: String,
        token: u64,
        message: MessageRef,
    },
    /// Store a message unless the key has one (answers [`Reply::Imported`]).
    ImportMessage {
        key: String,
        dest: String,
        message: MessageRef,
    },
    /// Move a key's events up to an undecodable one to the dead letters
    /// (the undecodable one with its raw bytes as the body), unless the key
    /// is leased (someone delivers it: their claim decoded it after all).
    SetAside {
        key: String,
        seq: Seq,
        reason: String,
        now_ms: u64,
    },
    /// The operator queues dead letters again (`queue retry`).
    RetryDead(DeadSelection),
    /// The operator removes dead letters (`queue purge`).
    PurgeDead(DeadSelection),
    Probe,
}

impl Op {
    /// Payload bytes, for the batch size limit.
    fn size(&self) -> usize {
        match self {
            Op::Append(ev) => ev.body.len(),
            _ => 0,
        }
    }
}

/// What a committed [`Op`] answers.
pub(super) enum Reply {
    Appended(Appended),
    /// Whether an [`Op::ImportMessage`] stored its message.
    Imported(bool),
    /// The append was refused: the queue is at its bounds (the text says which).
    Full(String),
    /// How many dead letters a retry or purge moved.
    Count(u64),
    Done,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

/// The handle on the writer thread. Dropping it lets the thread finish what
/// is queued and joins it, so the file is closed when the drop returns.
pub(super) struct Writer {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Start the writer thread on `shared`; it drops leases in `leases` once
    /// the commit that completed their key is durable.
    pub(super) fn start(shared: Arc<Shared>, leases: Arc<Mutex<Leases>>) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(&shared, &rx, &leases))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store writer thread: {e}"))
            })?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queue `op` and wait at most `timeout` for its durable commit.
    pub(super) async fn write(&self, op: Op, timeout: Duration) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        let sender = self.tx.as_ref().ok_or_else(writer_gone)?;
        sender
            .send(Request { op, reply })
            .map_err(|_| writer_gone())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(answer) => answer.map_err(|_| writer_gone())?,
            // The write may still land later (a stalled disk); the caller
            // only learns that it was not confirmed in time.
            Err(_) => Err(StoreError::Unavailable(format!(
                "store write not confirmed within {timeout:?}"
            ))),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit;
        // joining it releases its handle on the file before we return.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("store writer thread panicked");
            }
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("store writer stopped".into())
}

/// The writer thread: take every waiting request (up to the batch limits),
/// commit them together, answer each caller, repeat until the channel closes.
fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<Request>, leases: &Mutex<Leases>) {
    let mut broken = false;
    // Set after a batch that drained the queue: compact when idle until then.
    let mut compact_due: Option<Instant> = None;
    let mut last_compaction: Option<Instant> = None;
    loop {
        let first = match compact_due {
            None => match rx.recv() {
                Ok(r) => r,
                Err(_) => break,
            },
            Some(due) => match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    compact_due = None;
                    if broken {
                        continue;
                    }
                    match compact_if_worth_it(shared) {
                        Compaction::Done { .. } => last_compaction = Some(Instant::now()),
                        Compaction::Busy => compact_due = Some(Instant::now() + RETRY_BUSY),
                        Compaction::NotNeeded => {}
                        Compaction::Failed => broken = true,
                    }
                    continue;
                }
            },
        };
        let mut bytes = first.op.size();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.op.size();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let ops: Vec<&Op> = batch.iter().map(|r| &r.op).collect();
        // Why the handle is missing, when a reopen just failed: the batch's
        // errors (and so /health) say that rather than "reopening".
        let mut reopen_failed: Option<String> = None;
        if broken {
            match shared.reopen() {
                Ok(()) => broken = false,
                Err(e) => {
                    tracing::warn!(error = %e, "store reopen failed");
                    reopen_failed = Some(match e {
                        StoreError::Unavailable(m) => m,
                        other => other.to_string(),
                    });
                }
            }
        }
        // The lease map is held from the fence check to the lease drop, so
        // no claim can take a key between its holder's check and its commit.
        let mut held = crate::sync::lock(leases);
        let results = match shared.current() {
            Ok(db) => {
                shared
                    .batches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                commit_batch(&db, &ops, &shared.bounds, &held)
            }
            Err(e) => {
                let why = reopen_failed.unwrap_or_else(|| e.to_string());
                ops.iter()
                    .map(|_| Err(StoreError::Unavailable(why.clone())))
                    .collect()
            }
        };
        shared.proof.record(&results);
        // redb refuses every later write on a handle that saw an I/O error:
        // reopen before the next batch (a full disk may have been cleaned up).
        if results
            .iter()
            .any(|r| matches!(r, Err(StoreError::Unavailable(_))))
        {
            broken = true;
        }
        // A batch that completed work and left the queue empty schedules a
        // compaction for when the writer has been idle a moment; any later
        // batch that leaves work pending cancels it.
        let finished = batch.iter().zip(&results).any(|(r, res)| {
            res.is_ok() && matches!(r.op, Op::Complete { .. } | Op::DeadLetter { .. })
        });
        if finished || compact_due.is_some() {
            compact_due = match shared.current() {
                Ok(db) if !broken && queue_is_empty(&db) => {
                    let idle = Instant::now() + IDLE_BEFORE_COMPACT;
                    Some(last_compaction.map_or(idle, |t| idle.max(t + MIN_INTERVAL)))
                }
                _ => None,
            };
        }
        for (req, result) in batch.into_iter().zip(results) {
            if result.is_ok() {
                match &req.op {
                    Op::Complete {
                        key, owner, token, ..
                    }
                    | Op::DeadLetter {
                        key, owner, token, ..
                    } => held.drop_lease(key, owner, *token),
                    _ => {}
                }
            }
            // The caller may have given up (dropped its future); the write
            // stands regardless, exactly as if it had waited.
            let _ = req.reply.send(result);
        }
        drop(held);
    }
}

/// Commit `ops` together; when that fails, retry each alone so only the
/// request that spoiled the shared transaction (or every one, when the disk
/// failed) gets an error.
fn commit_batch(
    db: &Database,
    ops: &[&Op],
    bounds: &Bounds,
    leases: &Leases,
) -> Vec<Result<Reply>> {
    match commit(db, ops, bounds, leases) {
        Ok(replies) => replies.into_iter().map(Ok).collect(),
        Err(e) if ops.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, requests = ops.len(), "group commit failed, retrying one by one");
            ops.iter()
                .map(|op| {
                    commit(db, std::slice::from_ref(op), bounds, leases)
                        .and_then(|r| r.into_iter().next().ok_or_else(writer_gone))
                })
                .collect()
        }
    }
}

/// Apply `ops` in one durable write transaction; a fenced op whose lease is
/// no longer its caller's fails the transaction (and alone, on the retry).
fn commit(db: &Database, ops: &[&Op], bounds: &Bounds, leases: &Leases) -> Result<Vec<Reply>> {
    let mut txn = db.begin_write().ctx("begin write")?;
    txn.set_durability(Durability::Immediate)
        .ctx("set durability")?;
    let mut replies = Vec::with_capacity(ops.len());
    {
        let mut t = Tables::open(&txn)?;
        let mut kept = RetentionTables::open(&txn)?;
        let now = crate::store::now_ms();
        let stored_next = t
            .meta
            .get(META_NEXT_SEQ)
            .ctx("read next_seq")?
            .map(|g| g.value());
        let mut next_seq = stored_next.unwrap_or(1).max(1);
        let stored_bytes = t
            .meta
            .get(META_QUEUE_BYTES)
            .ctx("read queue_bytes")?
            .map(|g| g.value());
        let mut bytes = stored_bytes.unwrap_or(0);
        let mut newest_ms = 0u64;
        for op in ops {
            let reply = match op {
                Op::Append(ev) => {
                    newest_ms = newest_ms.max(ev.received_ms);
                    match append(&mut t, ev, &mut next_seq, &mut bytes, bounds) {
                        // Refused before anything changed: the rest of the batch stands.
                        Err(StoreError::Full(m)) => Reply::Full(m),
                        other => Reply::Appended(other?),
                    }
                }
                Op::Complete {
                    key,
                    owner,
                    token,
                    upto,
                    done,
                } => {
                    leases.check(key, owner, *token)?;
                    take_events(&mut t, key, *upto, &mut bytes)?;
                    for (dest, m) in &done.messages {
                        put_message(&mut t, key, dest, m)?;
                    }
                    if !done.messages.is_empty() {
                        kept.touch(key, now)?;
                    }
                    if let Some((change_key, rec)) = &done.outcome {
                        put_outcome(&mut t, &mut kept, change_key, rec)?;
                    }
                    Reply::Done
                }
                Op::DeadLetter {
                    key,
                    owner,
                    token,
                    upto,
                    reason,
                    now_ms,
                } => {
                    leases.check(key, owner, *token)?;
                    newest_ms = newest_ms.max(*now_ms);
                    for (seq, blob) in take_events(&mut t, key, *upto, &mut bytes)? {
                        let dead = encode_dead(reason, *now_ms, &blob);
                        t.dead
                            .insert(seq, dead.as_slice())
                            .ctx("insert dead letter")?;
                    }
                    Reply::Done
                }
                Op::PutMessage {
                    key,
                    dest,
                    owner,
                    token,
                    message,
                } => {
                    leases.check(key, owner, *token)?;
                    put_message(&mut t, key, dest, message)?;
                    kept.touch(key, now)?;
                    Reply::Done
                }
                Op::ImportMessage { key, dest, message } => {
                    let known = t
                        .messages
                        .get((key.as_str(), dest.as_str()))
                        .ctx("read message")?
                        .is_some();
                    if !known {
                        put_message(&mut t, key, dest, message)?;
                        kept.touch(key, now)?;
                    }
                    Reply::Imported(!known)
                }
                Op::SetAside {
                    key,
                    seq,
                    reason,
                    now_ms,
                } => {
                    if !leases.is_leased(key) {
                        for (s, blob) in take_events(&mut t, key, *seq, &mut bytes)? {
                            let blob = if s == *seq {
                                encode_event(key, "corrupt", "", 0, &blob)
                            } else {
                                blob
                            };
                            let dead = encode_dead(reason, *now_ms, &blob);
                            t.dead
                                .insert(s, dead.as_slice())
                                .ctx("insert dead letter")?;
                        }
                    }
                    Reply::Done
                }
                Op::RetryDead(which) => {
                    match dead_letters::retry(&mut t, *which, &mut next_seq, &mut bytes, bounds)? {
                        Retried::Queued(n) => Reply::Count(n),
                        Retried::Full(m) => Reply::Full(m),
                    }
                }
                Op::PurgeDead(which) => Reply::Count(dead_letters::purge(&mut t, *which)?),
                Op::Probe => {
                    let n = t
                        .meta
                        .get(META_PROBE)
                        .ctx("read probe")?
                        .map(|g| g.value())
                        .unwrap_or(0);
                    t.meta
                        .insert(META_PROBE, n.wrapping_add(1))
                        .ctx("write probe")?;
                    Reply::Done
                }
            };
            replies.push(reply);
        }
        if stored_next != Some(next_seq) {
            t.meta
                .insert(META_NEXT_SEQ, next_seq)
                .ctx("write next_seq")?;
        }
        if stored_bytes != Some(bytes) {
            t.meta
                .insert(META_QUEUE_BYTES, bytes)
                .ctx("write queue_bytes")?;
        }
        if newest_ms > 0 {
            prune_replay(&mut t, newest_ms)?;
            // Retention rides on the same commits (real work, never a probe
            // alone) and judges by the same clock: the newest time the
            // callers handed in (receive time, failure time).
            kept.prune(&mut t, newest_ms, bounds)?;
        }
    }
    txn.commit().ctx("commit")?;
    Ok(replies)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{ev, DiskFaults};
    use super::super::{EmbeddedStore, OP_TIMEOUT};
    use crate::store::{Store, StoreError};
    use std::sync::Arc;
    use std::time::Duration;

    /// Found by the fault suite (a frozen file system): the writer holds the
    /// lease map through a commit that hangs on the disk, and a release took
    /// the map on the async thread itself, wedging the runtime (`/health`
    /// stopped answering). On a one-thread runtime, another task must run
    /// while a release waits for the map.
    #[tokio::test(flavor = "current_thread")]
    async fn a_release_during_a_stalled_commit_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = Arc::new(EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap());
        s.append(ev(Some("build:1"), 1, None, b"first"))
            .await
            .unwrap();
        faults.set_stalled(true);
        // If the runtime wedges, this thread ends the stall, so the test
        // fails instead of hanging.
        let rescue = faults.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            rescue.set_stalled(false);
        });
        let writer = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.append(ev(Some("build:2"), 2, None, b"slow")).await })
        };
        // Let the append reach the writer, which now hangs holding the map.
        while s.shared.batches.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
        let release = s.release("build:1", "nobody", 1);
        tokio::pin!(release);
        let ran_meanwhile = tokio::select! {
            biased;
            _ = &mut release => false,
            _ = tokio::time::sleep(Duration::from_millis(100)) => true,
        };
        faults.set_stalled(false);
        assert!(
            ran_meanwhile,
            "the release blocked the runtime's only thread"
        );
        release.await.unwrap();
        writer.await.unwrap().unwrap();
    }

    /// A stalled disk turns into `Unavailable` after [`OP_TIMEOUT`] instead
    /// of a caller that waits forever; the write itself lands once the disk
    /// moves again. The disk stalls until the test releases it, so the short
    /// timeout used here fires however slow the machine is.
    #[tokio::test]
    async fn a_stalled_disk_times_out_as_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let mut s = EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap();
        s.append(ev(Some("build:1"), 1, None, b"first"))
            .await
            .unwrap();

        // Only the stalled write meets the short limit.
        s.op_timeout = Duration::from_millis(200);
        faults.set_stalled(true);
        // Declared after the store, so it is dropped (unstalling the disk)
        // before the store joins its writer, even if an assertion fails.
        struct Unstall(DiskFaults);
        impl Drop for Unstall {
            fn drop(&mut self) {
                self.0.set_stalled(false);
            }
        }
        let _unstall = Unstall(faults.clone());
        match s.append(ev(Some("build:1"), 2, None, b"slow")).await {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("not confirmed"), "{m}"),
            other => panic!("expected Unavailable after the timeout, got {other:?}"),
        }
        faults.set_stalled(false);
        s.op_timeout = OP_TIMEOUT;

        s.probe().await.unwrap();
        let bodies: Vec<Vec<u8>> = s
            .pending(10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.body)
            .collect();
        assert_eq!(
            bodies,
            vec![b"first".to_vec(), b"slow".to_vec()],
            "the unconfirmed write still landed"
        );
    }

    /// Writes that arrive while a commit is in progress share the next one.
    /// The disk is stalled while they queue up, so the batching does not
    /// depend on timing: 64 appends take at most 2 commits, not 64.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_writes_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = Arc::new(EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap());
        let batches =
            |s: &EmbeddedStore| s.shared.batches.load(std::sync::atomic::Ordering::Relaxed);
        let before = batches(&s);
        faults.set_stalled(true);
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(
                    async move { s.append(ev(None, i, Some(&format!("sig-{i}")), b"x")).await },
                )
            })
            .collect();
        // On this single-threaded runtime one yield lets every task run up to
        // its wait for the writer, i.e. after it has queued its request.
        tokio::task::yield_now().await;
        faults.set_stalled(false);
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap().seq());
        }
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 64, "every append got its own seq");
        let used = batches(&s) - before;
        assert!(
            (1..=2).contains(&used),
            "64 waiting appends used {used} commits"
        );
    }

    /// `writable` commits nothing while the last commit is proof that the
    /// store writes; it probes when there is none yet, and after a failed
    /// commit until the disk takes writes again.
    #[tokio::test]
    async fn writable_trusts_the_last_commit_and_probes_only_without_proof() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap();
        let batches = || s.shared.batches.load(std::sync::atomic::Ordering::Relaxed);
        let start = batches();
        s.writable().await.unwrap();
        assert_eq!(
            batches(),
            start + 1,
            "no commit since open: one probe commit"
        );
        s.writable().await.unwrap();
        s.writable().await.unwrap();
        assert_eq!(
            batches(),
            start + 1,
            "the probe commit is proof: no more commits"
        );
        s.append(ev(Some("build:1"), 1, None, b"real"))
            .await
            .unwrap();
        let after_append = batches();
        s.writable().await.unwrap();
        assert_eq!(batches(), after_append, "a real commit is proof too");

        faults.set_full(true);
        assert!(s
            .append(ev(Some("build:1"), 2, None, b"lost"))
            .await
            .is_err());
        match s.writable().await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("after a failed commit writable must probe and fail, got {other:?}"),
        }
        faults.set_full(false);
        let before_recovery = batches();
        s.writable()
            .await
            .expect("recovers by itself once the disk takes writes");
        assert_eq!(
            batches(),
            before_recovery + 1,
            "recovery is noticed by one probe commit"
        );
        s.writable().await.unwrap();
        assert_eq!(batches(), before_recovery + 1, "and then trusted again");
    }
}
