//! The default store: one redb file in the state directory, no server needed.
//!
//! Why it looks the way it does:
//!
//! * **Group commit.** Every write must be durable (an fsync'ed redb commit)
//!   before its future resolves, and a commit costs one or two fsyncs no
//!   matter how much it carries. One dedicated writer thread therefore takes
//!   every write request that is waiting, applies them all in one write
//!   transaction, commits once and then answers each caller over a oneshot
//!   channel. Under load (64 webhooks at once) that turns 64 fsyncs into a few.
//! * **Reads** (claim, message, pending, stats) run in read transactions on
//!   tokio's blocking pool; redb gives them a consistent snapshot and they
//!   never wait for the writer.
//! * **Leases live in memory.** redb locks the file, so exactly one process
//!   owns the queue; a lease only has to keep the relay's own workers apart.
//!   After a restart every lease is gone, which is exactly what a crash should
//!   do to them (the work is redone; Discord edits are idempotent by design).
//!
//! Tables:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `events` | seq | encoded event (key, event, action, received_ms, body) |
//! | `key_seqs` | (key, seq) | () — per-key order |
//! | `heads` | oldest pending seq of a key | key — claim order |
//! | `replay` | replay key | (seq, received_ms) |
//! | `replay_by_time` | (received_ms, replay key) | () — pruning order |
//! | `messages` | key | JSON [`MessageRef`] |
//! | `dead_letters` | seq | encoded reason, failed_ms and event |
//! | `meta` | name | u64 (`next_seq`, `probe`) |
use super::{
    Appended, Claim, DeadLetter, Event, MessageRef, NewEvent, Result, Seq, Stats, Store, StoreError,
    REPLAY_RETENTION_MS,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, WriteTransaction};
use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// The database file inside the state directory.
pub const FILE_NAME: &str = "drone-discord.redb";

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const KEY_SEQS: TableDefinition<(&str, u64), ()> = TableDefinition::new("key_seqs");
const HEADS: TableDefinition<u64, &str> = TableDefinition::new("heads");
const REPLAY: TableDefinition<&str, (u64, u64)> = TableDefinition::new("replay");
const REPLAY_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("replay_by_time");
const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_NEXT_SEQ: &str = "next_seq";
const META_PROBE: &str = "probe";

/// Most write requests folded into one commit.
const MAX_BATCH: usize = 512;
/// Stop adding requests to a commit once their payloads reach this size, so
/// a burst of large webhooks does not build one huge transaction in memory.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Most expired replay keys removed per commit, so pruning never makes one
/// commit slow; a backlog drains over the following commits.
const PRUNE_PER_COMMIT: usize = 64;
/// Version byte in front of every encoded event / dead letter.
const ENCODING_V1: u8 = 1;
/// Longest a caller waits for a read or a write confirmation: a stalled disk
/// (a dying SD card) turns into `Unavailable` instead of a hung webhook.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long (in 10 ms steps) a reopen waits for in-flight reads.
const REOPEN_WAIT_STEPS: u32 = 500;

/// The embedded, single-process store. Not `Clone`: share it with `Arc`.
/// Dropping it stops the writer thread (after the writes already queued) and
/// closes the file, so the same directory can be opened again.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    leases: Arc<Mutex<Leases>>,
    writer: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// [`OP_TIMEOUT`], shortened by tests.
    op_timeout: Duration,
}

/// How the database file is opened (a seam for tests that inject I/O errors).
type Opener = dyn Fn(&Path) -> std::result::Result<Database, redb::DatabaseError> + Send + Sync;

/// The open database, shared by the writer thread and the readers. After an
/// I/O error redb refuses all further work on that handle ("previous I/O
/// error"), so the writer closes and reopens it; meanwhile the slot is empty
/// and readers report [`StoreError::Unavailable`].
struct Shared {
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    opener: Box<Opener>,
    /// Write batches handled by the writer (one commit each when all goes well).
    batches: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn current(&self) -> Result<Arc<Database>> {
        let slot = self.db.read().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .map(Arc::clone)
            .ok_or_else(|| StoreError::Unavailable("store is reopening after an I/O error".into()))
    }

    /// Close the failed handle (once in-flight reads let go of it) and open
    /// the file again.
    fn reopen(&self) -> Result<()> {
        let old = self.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut old) = old {
            let mut waited = 0;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if waited < REOPEN_WAIT_STEPS => {
                        old = still_shared;
                        waited += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(still_shared) => {
                        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(still_shared);
                        return Err(StoreError::Unavailable("store reopen: reads still hold the old handle".into()));
                    }
                }
            }
        }
        let shown = self.path.display().to_string();
        let db = (self.opener)(&self.path).map_err(|e| db_error(&format!("reopen {shown}"), e))?;
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
        tracing::info!(path = %shown, "embedded store reopened after an I/O error");
        Ok(())
    }
}

/// The production opener: integrity is checked on every open, so a file
/// damaged outside redb is reported as corrupt instead of trusted (redb may
/// panic on a damaged file it trusts).
fn open_file(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    Database::builder().set_check_integrity_on_open(true).create(path)
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.shared.path).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Lease {
    owner: String,
    expires_ms: u64,
}

type Leases = HashMap<String, Lease>;

fn lock(leases: &Mutex<Leases>) -> MutexGuard<'_, Leases> {
    // A panic while holding the lock cannot leave the map half-updated in a
    // way that matters (single inserts/removes), so poisoning is ignored.
    leases.lock().unwrap_or_else(|p| p.into_inner())
}

/// Drop `owner`'s lease on `key` (someone else's lease is left alone).
fn drop_lease(leases: &Mutex<Leases>, key: &str, owner: &str) {
    let mut map = lock(leases);
    if map.get(key).is_some_and(|l| l.owner == owner) {
        map.remove(key);
    }
}

enum Op {
    Append(NewEvent),
    Complete { key: String, owner: String, upto: Seq, message: Option<MessageRef> },
    DeadLetter { key: String, owner: String, upto: Seq, reason: String, now_ms: u64 },
    PutMessage { key: String, message: MessageRef },
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

enum Reply {
    Appended(Appended),
    Done,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

impl EmbeddedStore {
    /// Open (or create) the store in `dir`, creating `dir` with mode 0700 when
    /// missing. A path that cannot hold the store (not a directory, no
    /// permission, read-only, already opened by another process) is a
    /// [`StoreError::Config`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Box::new(open_file))
    }

    fn open_with(dir: &Path, opener: Box<Opener>) -> Result<Self> {
        let shown = dir.display().to_string();
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(StoreError::Config(format!("state directory {shown} exists but is not a directory")))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| StoreError::Config(format!("cannot create state directory {shown}: {e}")))?;
            }
            Err(e) => return Err(StoreError::Config(format!("cannot use state directory {shown}: {e}"))),
        }
        let path = dir.join(FILE_NAME);
        let file_shown = path.display().to_string();
        let db = opener(&path).map_err(|e| open_error(&file_shown, e))?;
        // The queue holds webhook bodies: readable by the service user only.
        if let Err(e) = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)) {
            tracing::warn!(path = %file_shown, error = %e, "could not restrict the store file to mode 0600");
        }
        // Create every table once so read transactions always find them, and
        // prove that the file is writable right now.
        {
            let txn = db.begin_write().map_err(|e| open_error(&file_shown, e))?;
            {
                let t = Tables::open(&txn).map_err(|e| config_from(&file_shown, e))?;
                drop(t);
            }
            txn.commit().map_err(|e| open_error(&file_shown, e))?;
        }
        let shared = Arc::new(Shared { db: RwLock::new(Some(Arc::new(db))), path, opener, batches: Default::default() });
        let leases = Arc::new(Mutex::new(Leases::new()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            let leases = Arc::clone(&leases);
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer_loop(&shared, &rx, &leases))
                .map_err(|e| StoreError::Unavailable(format!("cannot start the store writer thread: {e}")))?
        };
        tracing::info!(path = %file_shown, "embedded store open");
        Ok(EmbeddedStore { shared, leases, writer: Some(tx), thread: Some(thread), op_timeout: OP_TIMEOUT })
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    async fn write(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        let sender = self.writer.as_ref().ok_or_else(writer_gone)?;
        sender.send(Request { op, reply }).map_err(|_| writer_gone())?;
        match tokio::time::timeout(self.op_timeout, rx).await {
            Ok(answer) => answer.map_err(|_| writer_gone())?,
            // The write may still land later (a stalled disk); the caller
            // only learns that it was not confirmed in time.
            Err(_) => Err(StoreError::Unavailable(format!("store write not confirmed within {:?}", self.op_timeout))),
        }
    }

    async fn write_done(&self, op: Op) -> Result<()> {
        self.write(op).await.map(|_| ())
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = self.shared.current()?;
        let task = tokio::task::spawn_blocking(move || f(&db));
        match tokio::time::timeout(self.op_timeout, task).await {
            Ok(done) => done.map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))?,
            Err(_) => Err(StoreError::Unavailable(format!("store read took longer than {:?}", self.op_timeout))),
        }
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and exit;
        // joining it releases its handle on the file before we return.
        drop(self.writer.take());
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

// ---------------------------------------------------------------------------
// Error mapping

/// A redb error at run time: corruption is [`StoreError::Corrupt`], the rest
/// (I/O, full disk, a previous I/O failure) is [`StoreError::Unavailable`].
fn db_error(what: &str, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(m) => StoreError::Corrupt(format!("{what}: {m}")),
        other => StoreError::Unavailable(format!("{what}: {other}")),
    }
}

/// A redb error while opening: a bad path, permission or lock is configuration.
fn open_error(file: &str, e: impl Into<redb::Error>) -> StoreError {
    config_from(file, db_error("", e))
}

fn config_from(file: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("{file}{m}")),
        StoreError::Unavailable(m) | StoreError::Config(m) => {
            let hint = if m.contains("already open") || m.contains("lock") {
                " (is another drone-discord running on this state directory?)"
            } else {
                ""
            };
            StoreError::Config(format!("cannot open {file}{m}{hint}"))
        }
    }
}

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T, E: Into<redb::Error>> Ctx<T> for std::result::Result<T, E> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| db_error(what, e))
    }
}

// ---------------------------------------------------------------------------
// Encoding: [version][received_ms u64][key][event][action] body…, strings as
// u32 length + UTF-8. Dead letters: [version][failed_ms u64][reason] event….

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings here are keys and Drone's event/action names; far below 4 GiB.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn encode_event(key: &str, event: &str, action: &str, received_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 12 + key.len() + event.len() + action.len() + body.len());
    out.push(ENCODING_V1);
    out.extend_from_slice(&received_ms.to_le_bytes());
    put_str(&mut out, key);
    put_str(&mut out, event);
    put_str(&mut out, action);
    out.extend_from_slice(body);
    out
}

fn encode_dead(reason: &str, failed_ms: u64, event_blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + reason.len() + event_blob.len());
    out.push(ENCODING_V1);
    out.extend_from_slice(&failed_ms.to_le_bytes());
    put_str(&mut out, reason);
    out.extend_from_slice(event_blob);
    out
}

/// Reads an encoded record; every failure names the record.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, detail: &str) -> StoreError {
        StoreError::Corrupt(format!("{}: {detail}", self.what))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(self.corrupt("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn version(&mut self) -> Result<()> {
        match self.take(1)? {
            [ENCODING_V1] => Ok(()),
            _ => Err(self.corrupt("unknown encoding version")),
        }
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b.try_into().map_err(|_| self.corrupt("truncated"))?;
        Ok(u64::from_le_bytes(arr))
    }

    fn string(&mut self) -> Result<String> {
        let b = self.take(4)?;
        let arr: [u8; 4] = b.try_into().map_err(|_| self.corrupt("truncated"))?;
        let len = usize::try_from(u32::from_le_bytes(arr)).map_err(|_| self.corrupt("bad length"))?;
        let s = self.take(len)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.corrupt("invalid UTF-8"))
    }

    fn rest(self) -> &'a [u8] {
        self.buf
    }
}

fn decode_event(seq: Seq, blob: &[u8]) -> Result<Event> {
    let what = format!("event {seq}");
    let mut r = Reader { buf: blob, what: &what };
    r.version()?;
    let received_ms = r.u64()?;
    let key = r.string()?;
    let event = r.string()?;
    let action = r.string()?;
    let body = r.rest().to_vec();
    Ok(Event { seq, key, event, action, received_ms, body })
}

fn decode_dead(seq: Seq, blob: &[u8]) -> Result<DeadLetter> {
    let what = format!("dead letter {seq}");
    let mut r = Reader { buf: blob, what: &what };
    r.version()?;
    let failed_ms = r.u64()?;
    let reason = r.string()?;
    let event = decode_event(seq, r.rest()).map_err(|e| match e {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!("dead letter {seq}: {m}")),
        other => other,
    })?;
    Ok(DeadLetter { event, reason, failed_ms })
}

fn decode_message(key: &str, blob: &[u8]) -> Result<MessageRef> {
    serde_json::from_slice(blob).map_err(|e| StoreError::Corrupt(format!("message for {key}: {e}")))
}

// ---------------------------------------------------------------------------
// The writer thread

struct Tables<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    key_seqs: redb::Table<'t, (&'static str, u64), ()>,
    heads: redb::Table<'t, u64, &'static str>,
    replay: redb::Table<'t, &'static str, (u64, u64)>,
    replay_by_time: redb::Table<'t, (u64, &'static str), ()>,
    messages: redb::Table<'t, &'static str, &'static [u8]>,
    dead: redb::Table<'t, u64, &'static [u8]>,
    meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self> {
        Ok(Tables {
            events: txn.open_table(EVENTS).ctx("open events")?,
            key_seqs: txn.open_table(KEY_SEQS).ctx("open key_seqs")?,
            heads: txn.open_table(HEADS).ctx("open heads")?,
            replay: txn.open_table(REPLAY).ctx("open replay")?,
            replay_by_time: txn.open_table(REPLAY_BY_TIME).ctx("open replay_by_time")?,
            messages: txn.open_table(MESSAGES).ctx("open messages")?,
            dead: txn.open_table(DEAD).ctx("open dead_letters")?,
            meta: txn.open_table(META).ctx("open meta")?,
        })
    }
}

fn writer_loop(shared: &Shared, rx: &mpsc::Receiver<Request>, leases: &Mutex<Leases>) {
    let mut broken = false;
    while let Ok(first) = rx.recv() {
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
        if broken {
            match shared.reopen() {
                Ok(()) => broken = false,
                Err(e) => tracing::warn!(error = %e, "store reopen failed"),
            }
        }
        let results = match shared.current() {
            Ok(db) => {
                shared.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                commit_batch(&db, &ops)
            }
            Err(e) => ops.iter().map(|_| Err(StoreError::Unavailable(e.to_string()))).collect(),
        };
        // redb refuses every later write on a handle that saw an I/O error:
        // reopen before the next batch (a full disk may have been cleaned up).
        if results.iter().any(|r| matches!(r, Err(StoreError::Unavailable(_)))) {
            broken = true;
        }
        for (req, result) in batch.into_iter().zip(results) {
            if result.is_ok() {
                match &req.op {
                    Op::Complete { key, owner, .. } | Op::DeadLetter { key, owner, .. } => {
                        drop_lease(leases, key, owner)
                    }
                    _ => {}
                }
            }
            // The caller may have given up (dropped its future); the write
            // stands regardless, exactly as if it had waited.
            let _ = req.reply.send(result);
        }
    }
}

/// Commit `ops` together; when that fails, retry each alone so only the
/// request that spoiled the shared transaction (or every one, when the disk
/// failed) gets an error.
fn commit_batch(db: &Database, ops: &[&Op]) -> Vec<Result<Reply>> {
    match commit(db, ops) {
        Ok(replies) => replies.into_iter().map(Ok).collect(),
        Err(e) if ops.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, requests = ops.len(), "group commit failed, retrying one by one");
            ops.iter()
                .map(|op| commit(db, std::slice::from_ref(op)).and_then(|r| r.into_iter().next().ok_or_else(writer_gone)))
                .collect()
        }
    }
}

/// Apply `ops` in one durable write transaction.
fn commit(db: &Database, ops: &[&Op]) -> Result<Vec<Reply>> {
    let mut txn = db.begin_write().ctx("begin write")?;
    txn.set_durability(Durability::Immediate).ctx("set durability")?;
    let mut replies = Vec::with_capacity(ops.len());
    {
        let mut t = Tables::open(&txn)?;
        let stored_next = t.meta.get(META_NEXT_SEQ).ctx("read next_seq")?.map(|g| g.value());
        let mut next_seq = stored_next.unwrap_or(1).max(1);
        let mut newest_ms = 0u64;
        for op in ops {
            let reply = match op {
                Op::Append(ev) => {
                    newest_ms = newest_ms.max(ev.received_ms);
                    Reply::Appended(append(&mut t, ev, &mut next_seq)?)
                }
                Op::Complete { key, upto, message, .. } => {
                    take_events(&mut t, key, *upto)?;
                    if let Some(m) = message {
                        put_message(&mut t, key, m)?;
                    }
                    Reply::Done
                }
                Op::DeadLetter { key, upto, reason, now_ms, .. } => {
                    for (seq, blob) in take_events(&mut t, key, *upto)? {
                        let dead = encode_dead(reason, *now_ms, &blob);
                        t.dead.insert(seq, dead.as_slice()).ctx("insert dead letter")?;
                    }
                    Reply::Done
                }
                Op::PutMessage { key, message } => {
                    put_message(&mut t, key, message)?;
                    Reply::Done
                }
                Op::Probe => {
                    let n = t.meta.get(META_PROBE).ctx("read probe")?.map(|g| g.value()).unwrap_or(0);
                    t.meta.insert(META_PROBE, n.wrapping_add(1)).ctx("write probe")?;
                    Reply::Done
                }
            };
            replies.push(reply);
        }
        if stored_next != Some(next_seq) {
            t.meta.insert(META_NEXT_SEQ, next_seq).ctx("write next_seq")?;
        }
        if newest_ms > 0 {
            prune_replay(&mut t, newest_ms)?;
        }
    }
    txn.commit().ctx("commit")?;
    Ok(replies)
}

fn append(t: &mut Tables<'_>, ev: &NewEvent, next_seq: &mut Seq) -> Result<Appended> {
    if let Some(rk) = ev.replay_key.as_deref() {
        let seen = t.replay.get(rk).ctx("read replay key")?.map(|g| g.value());
        if let Some((seq, seen_ms)) = seen {
            if ev.received_ms.saturating_sub(seen_ms) < REPLAY_RETENTION_MS {
                return Ok(Appended::Duplicate(seq));
            }
            // Expired but not pruned yet: forget it and accept the event.
            t.replay_by_time.remove((seen_ms, rk)).ctx("remove replay key")?;
        }
    }
    let seq = *next_seq;
    *next_seq = seq.checked_add(1).ok_or_else(|| StoreError::Corrupt("meta next_seq: exhausted".into()))?;
    let key = match &ev.key {
        Some(k) => k.clone(),
        None => format!("event:{seq}"),
    };
    let blob = encode_event(&key, &ev.event, &ev.action, ev.received_ms, &ev.body);
    t.events.insert(seq, blob.as_slice()).ctx("insert event")?;
    let had_pending = first_seq(&t.key_seqs, &key)?.is_some();
    t.key_seqs.insert((key.as_str(), seq), ()).ctx("insert key index")?;
    if !had_pending {
        t.heads.insert(seq, key.as_str()).ctx("insert head")?;
    }
    if let Some(rk) = ev.replay_key.as_deref() {
        t.replay.insert(rk, (seq, ev.received_ms)).ctx("insert replay key")?;
        t.replay_by_time.insert((ev.received_ms, rk), ()).ctx("insert replay time")?;
    }
    Ok(Appended::Queued(seq))
}

fn put_message(t: &mut Tables<'_>, key: &str, m: &MessageRef) -> Result<()> {
    let json = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt(format!("message for {key}: {e}")))?;
    t.messages.insert(key, json.as_slice()).ctx("insert message")?;
    Ok(())
}

/// Oldest pending seq of `key`.
fn first_seq(key_seqs: &impl ReadableTable<(&'static str, u64), ()>, key: &str) -> Result<Option<Seq>> {
    let mut range = key_seqs.range((key, 0u64)..=(key, u64::MAX)).ctx("scan key index")?;
    match range.next() {
        Some(item) => {
            let (k, _) = item.ctx("scan key index")?;
            Ok(Some(k.value().1))
        }
        None => Ok(None),
    }
}

/// Remove `key`'s events with seq ≤ `upto`; returns them (seq, encoded).
fn take_events(t: &mut Tables<'_>, key: &str, upto: Seq) -> Result<Vec<(Seq, Vec<u8>)>> {
    let mut seqs = Vec::new();
    for item in t.key_seqs.range((key, 0u64)..=(key, upto)).ctx("scan key index")? {
        let (k, _) = item.ctx("scan key index")?;
        seqs.push(k.value().1);
    }
    let Some(&old_head) = seqs.first() else { return Ok(Vec::new()) };
    let mut taken = Vec::with_capacity(seqs.len());
    for seq in seqs {
        t.key_seqs.remove((key, seq)).ctx("remove key index")?;
        let blob = t.events.remove(seq).ctx("remove event")?.map(|g| g.value().to_vec());
        match blob {
            Some(b) => taken.push((seq, b)),
            None => tracing::warn!(seq, key, "key index pointed at a missing event; dropped the index entry"),
        }
    }
    t.heads.remove(old_head).ctx("remove head")?;
    if let Some(next) = first_seq(&t.key_seqs, key)? {
        t.heads.insert(next, key).ctx("insert head")?;
    }
    Ok(taken)
}

/// Forget a bounded number of replay keys older than the retention window.
fn prune_replay(t: &mut Tables<'_>, now_ms: u64) -> Result<()> {
    let cutoff = now_ms.saturating_sub(REPLAY_RETENTION_MS);
    let mut expired = Vec::new();
    for item in t.replay_by_time.range::<(u64, &str)>(..).ctx("scan replay keys")? {
        if expired.len() >= PRUNE_PER_COMMIT {
            break;
        }
        let (k, _) = item.ctx("scan replay keys")?;
        let (ms, rk) = k.value();
        if ms >= cutoff {
            break;
        }
        expired.push((ms, rk.to_owned()));
    }
    for (ms, rk) in expired {
        t.replay_by_time.remove((ms, rk.as_str())).ctx("prune replay time")?;
        let current = t.replay.get(rk.as_str()).ctx("read replay key")?.map(|g| g.value());
        if current.is_some_and(|(_, seen)| seen == ms) {
            t.replay.remove(rk.as_str()).ctx("prune replay key")?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Reads

fn read_key_events(
    key_seqs: &impl ReadableTable<(&'static str, u64), ()>,
    events: &impl ReadableTable<u64, &'static [u8]>,
    key: &str,
) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for item in key_seqs.range((key, 0u64)..=(key, u64::MAX)).ctx("scan key index")? {
        let (k, _) = item.ctx("scan key index")?;
        let seq = k.value().1;
        if let Some(blob) = events.get(seq).ctx("read event")? {
            out.push(decode_event(seq, blob.value())?);
        }
    }
    Ok(out)
}

fn claim_blocking(
    db: &Database,
    leases: &Mutex<Leases>,
    owner: &str,
    lease_ms: u64,
    max_keys: usize,
    now_ms: u64,
) -> Result<Vec<Claim>> {
    if max_keys == 0 {
        return Ok(Vec::new());
    }
    // Hold the lease map while reading, so two claims cannot hand out the same
    // key, and so a completion (commit, then lease drop) is either fully
    // visible to this snapshot or its key is still leased.
    let mut map = lock(leases);
    map.retain(|_, l| l.expires_ms > now_ms);
    let txn = db.begin_read().ctx("begin read")?;
    let heads = txn.open_table(HEADS).ctx("open heads")?;
    let key_seqs = txn.open_table(KEY_SEQS).ctx("open key_seqs")?;
    let events = txn.open_table(EVENTS).ctx("open events")?;
    let mut claims = Vec::new();
    for item in heads.iter().ctx("scan heads")? {
        if claims.len() >= max_keys {
            break;
        }
        let (_, key) = item.ctx("scan heads")?;
        let key = key.value();
        if map.contains_key(key) {
            continue;
        }
        let evs = read_key_events(&key_seqs, &events, key)?;
        if !evs.is_empty() {
            claims.push(Claim { key: key.to_owned(), events: evs });
        }
    }
    let expires_ms = now_ms.saturating_add(lease_ms);
    for c in &claims {
        map.insert(c.key.clone(), Lease { owner: owner.to_owned(), expires_ms });
    }
    Ok(claims)
}

impl Store for EmbeddedStore {
    async fn append(&self, ev: NewEvent) -> Result<Appended> {
        match self.write(Op::Append(ev)).await? {
            Reply::Appended(a) => Ok(a),
            Reply::Done => Err(StoreError::Unavailable("store writer answered an append oddly".into())),
        }
    }

    async fn claim(&self, owner: &str, lease: Duration, max_keys: usize, now_ms: u64) -> Result<Vec<Claim>> {
        let leases = Arc::clone(&self.leases);
        let owner = owner.to_owned();
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        self.read(move |db| claim_blocking(db, &leases, &owner, lease_ms, max_keys, now_ms)).await
    }

    async fn complete(&self, key: &str, owner: &str, upto: Seq, message: Option<MessageRef>) -> Result<()> {
        self.write_done(Op::Complete { key: key.to_owned(), owner: owner.to_owned(), upto, message }).await
    }

    async fn release(&self, key: &str, owner: &str) -> Result<()> {
        drop_lease(&self.leases, key, owner);
        Ok(())
    }

    async fn dead_letter(&self, key: &str, owner: &str, upto: Seq, reason: &str, now_ms: u64) -> Result<()> {
        self.write_done(Op::DeadLetter {
            key: key.to_owned(),
            owner: owner.to_owned(),
            upto,
            reason: reason.to_owned(),
            now_ms,
        })
        .await
    }

    async fn message(&self, key: &str) -> Result<Option<MessageRef>> {
        let key = key.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let messages = txn.open_table(MESSAGES).ctx("open messages")?;
            let found = messages.get(key.as_str()).ctx("read message")?;
            found.map(|g| decode_message(&key, g.value())).transpose()
        })
        .await
    }

    async fn put_message(&self, key: &str, message: MessageRef) -> Result<()> {
        self.write_done(Op::PutMessage { key: key.to_owned(), message }).await
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Event>> {
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let events = txn.open_table(EVENTS).ctx("open events")?;
            let mut out = Vec::new();
            for item in events.iter().ctx("scan events")?.take(limit) {
                let (seq, blob) = item.ctx("scan events")?;
                out.push(decode_event(seq.value(), blob.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let dead = txn.open_table(DEAD).ctx("open dead_letters")?;
            let mut out = Vec::new();
            for item in dead.iter().ctx("scan dead letters")?.take(limit) {
                let (seq, blob) = item.ctx("scan dead letters")?;
                out.push(decode_dead(seq.value(), blob.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn stats(&self) -> Result<Stats> {
        self.read(|db| {
            let txn = db.begin_read().ctx("begin read")?;
            let pending = txn.open_table(EVENTS).ctx("open events")?.len().ctx("count events")?;
            let dead_letters = txn.open_table(DEAD).ctx("open dead_letters")?.len().ctx("count dead letters")?;
            Ok(Stats { pending, dead_letters })
        })
        .await
    }

    async fn probe(&self) -> Result<()> {
        self.write_done(Op::Probe).await?;
        let dir = self.shared.path.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::task::spawn_blocking(move || check_headroom(&dir))
            .await
            .map_err(|e| StoreError::Unavailable(format!("space probe failed: {e}")))?
    }
}

/// Free space the probe insists on in the state directory: room for a few
/// typical webhooks (a Drone build webhook is 2–5 KiB) plus redb's growth.
const HEADROOM_BYTES: usize = 64 * 1024;
/// The scratch file of [`check_headroom`], removed right after the write.
const HEADROOM_FILE: &str = ".drone-discord-space-probe";

/// A full disk must show up in health even while redb still has free pages
/// inside its file (its own probe commit then succeeds): reserve
/// [`HEADROOM_BYTES`] in a scratch file and delete it again. No fsync, so on
/// a delayed-allocation file system this normally never reaches the device.
fn check_headroom(dir: &Path) -> Result<()> {
    use std::io::Write;
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let path = dir.join(HEADROOM_FILE);
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(&vec![0u8; HEADROOM_BYTES]));
    let removed = std::fs::remove_file(&path);
    // No path in the text: it may end up as the bot's public custom status.
    written.map_err(|e| StoreError::Unavailable(format!("no room to write in STATE_DIR: {e}")))?;
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::Unavailable(format!("cannot remove {HEADROOM_FILE} in STATE_DIR: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn ev(key: Option<&str>, received_ms: u64, replay: Option<&str>, body: &[u8]) -> NewEvent {
        NewEvent {
            key: key.map(str::to_owned),
            event: "build".into(),
            action: "updated".into(),
            received_ms,
            replay_key: replay.map(str::to_owned),
            body: body.to_vec(),
        }
    }

    fn msg(id: &str) -> MessageRef {
        MessageRef { channel_id: "c1".into(), message_id: id.into(), status: "running".into(), updated_ms: 7 }
    }

    fn config_msg(r: Result<EmbeddedStore>) -> String {
        match r {
            Err(StoreError::Config(m)) => m,
            Err(other) => panic!("expected a configuration error, got {other}"),
            Ok(_) => panic!("expected a configuration error, the store opened"),
        }
    }

    #[tokio::test]
    async fn write_drop_reopen_reads_back_and_seq_continues() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        {
            let s = EmbeddedStore::open(&state).unwrap();
            assert_eq!(s.append(ev(Some("build:1"), 10, None, b"one")).await.unwrap(), Appended::Queued(1));
            assert_eq!(s.append(ev(None, 11, None, b"two")).await.unwrap(), Appended::Queued(2));
            assert_eq!(s.append(ev(Some("build:1"), 12, None, &[0, 255, 1])).await.unwrap(), Appended::Queued(3));
            s.put_message("build:1", msg("m1")).await.unwrap();
        }
        let mode = std::fs::metadata(&state).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o700);
        let mode = std::fs::metadata(state.join(FILE_NAME)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        let s = EmbeddedStore::open(&state).unwrap();
        let pending = s.pending(10).await.unwrap();
        let got: Vec<(Seq, &str, &[u8])> = pending.iter().map(|e| (e.seq, e.key.as_str(), e.body.as_slice())).collect();
        assert_eq!(got, vec![(1, "build:1", &b"one"[..]), (2, "event:2", &b"two"[..]), (3, "build:1", &[0, 255, 1][..])]);
        assert_eq!(pending[0].received_ms, 10);
        assert_eq!(pending[0].event, "build");
        assert_eq!(pending[0].action, "updated");
        assert_eq!(s.message("build:1").await.unwrap(), Some(msg("m1")));
        assert_eq!(s.message("build:2").await.unwrap(), None);
        assert_eq!(s.append(ev(None, 13, None, b"")).await.unwrap(), Appended::Queued(4));
        assert_eq!(s.stats().await.unwrap(), Stats { pending: 4, dead_letters: 0 });
    }

    #[tokio::test]
    async fn seq_continues_after_everything_was_completed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.append(ev(Some("k"), 1, None, b"a")).await.unwrap();
            s.append(ev(Some("k"), 2, None, b"b")).await.unwrap();
            s.complete("k", "w", 2, None).await.unwrap();
            assert_eq!(s.stats().await.unwrap().pending, 0);
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        // Seqs are never reused, even when the queue was empty at shutdown.
        assert_eq!(s.append(ev(Some("k"), 3, None, b"c")).await.unwrap(), Appended::Queued(3));
    }

    #[tokio::test]
    async fn replay_key_is_refused_within_retention_and_accepted_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let t0 = 1_000_000;
        assert_eq!(s.append(ev(None, t0, Some("sig-a"), b"x")).await.unwrap(), Appended::Queued(1));
        assert_eq!(s.append(ev(None, t0 + 5, Some("sig-a"), b"x")).await.unwrap(), Appended::Duplicate(1));
        assert_eq!(s.append(ev(None, t0 + 5, Some("sig-b"), b"y")).await.unwrap(), Appended::Queued(2));
        assert_eq!(s.stats().await.unwrap().pending, 2);
        // A duplicate stays a duplicate across a restart.
        drop(s);
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(
            s.append(ev(None, t0 + REPLAY_RETENTION_MS - 1, Some("sig-a"), b"x")).await.unwrap(),
            Appended::Duplicate(1)
        );
        assert_eq!(
            s.append(ev(None, t0 + REPLAY_RETENTION_MS, Some("sig-a"), b"x")).await.unwrap(),
            Appended::Queued(3)
        );
        assert_eq!(s.stats().await.unwrap().pending, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_with_one_replay_key_store_exactly_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let tasks: Vec<_> = (0..48)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.append(ev(None, 100 + i, Some("same-signature"), b"x")).await })
            })
            .collect();
        let mut queued = Vec::new();
        let mut dups = Vec::new();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Appended::Queued(q) => queued.push(q),
                Appended::Duplicate(d) => dups.push(d),
            }
        }
        assert_eq!(queued.len(), 1, "exactly one append may win");
        assert_eq!(dups.len(), 47);
        assert!(dups.iter().all(|d| *d == queued[0]), "duplicates name the first seq");
        assert_eq!(s.stats().await.unwrap().pending, 1);
    }

    #[tokio::test]
    async fn expired_replay_keys_are_pruned_in_bounded_steps() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let n = PRUNE_PER_COMMIT as u64 + 10;
        for i in 0..n {
            s.append(ev(None, 1 + i, Some(&format!("old-{i}")), b"")).await.unwrap();
        }
        let count = |s: &EmbeddedStore| {
            let txn = s.shared.current().unwrap().begin_read().unwrap();
            let a = txn.open_table(REPLAY).unwrap().len().unwrap();
            let b = txn.open_table(REPLAY_BY_TIME).unwrap().len().unwrap();
            (a, b)
        };
        assert_eq!(count(&s), (n, n));
        let later = REPLAY_RETENTION_MS + 1_000;
        s.append(ev(None, later, Some("new-1"), b"")).await.unwrap();
        // One commit prunes at most PRUNE_PER_COMMIT; the rest goes next time.
        assert_eq!(count(&s), (n + 1 - PRUNE_PER_COMMIT as u64, n + 1 - PRUNE_PER_COMMIT as u64));
        s.append(ev(None, later, Some("new-2"), b"")).await.unwrap();
        assert_eq!(count(&s), (2, 2));
        // A pruned key is accepted again.
        assert!(matches!(s.append(ev(None, later, Some("old-0"), b"")).await.unwrap(), Appended::Queued(_)));
    }

    /// Runs only as the child of `store_killed_mid_flight_reopens_with_its_data`:
    /// writes, then aborts the process without closing anything.
    #[tokio::test]
    #[ignore = "helper: run by store_killed_mid_flight_reopens_with_its_data"]
    async fn crash_child() {
        let Some(dir) = std::env::var_os("DD_STORE_CRASH_DIR") else { return };
        let s = EmbeddedStore::open(Path::new(&dir)).unwrap();
        for i in 0..20u64 {
            s.append(ev(Some("build:9"), i, Some(&format!("sig-{i}")), b"payload")).await.unwrap();
        }
        s.put_message("build:9", msg("m9")).await.unwrap();
        std::process::abort();
    }

    #[tokio::test]
    async fn store_killed_mid_flight_reopens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args(["--exact", "store::embedded::tests::crash_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env("DD_STORE_CRASH_DIR", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child must have died by abort");
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let pending = s.pending(100).await.unwrap();
        assert_eq!(pending.len(), 20, "every acknowledged append survives the crash");
        assert_eq!(pending.last().map(|e| e.seq), Some(20));
        assert_eq!(s.message("build:9").await.unwrap(), Some(msg("m9")));
        assert_eq!(s.append(ev(None, 0, Some("sig-3"), b"")).await.unwrap(), Appended::Duplicate(4));
        assert_eq!(s.append(ev(None, 0, None, b"")).await.unwrap(), Appended::Queued(21));
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let m = config_msg(EmbeddedStore::open(&file));
        assert!(m.contains("not a directory"), "{m}");
        // ... and a directory below a file cannot be created.
        let m = config_msg(EmbeddedStore::open(&file.join("sub")));
        assert!(m.contains("not-a-dir"), "{m}");
    }

    #[test]
    fn a_directory_where_the_database_file_should_be_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        let m = config_msg(EmbeddedStore::open(dir.path()));
        assert!(m.contains(FILE_NAME), "{m}");
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedStore::open(dir.path()).unwrap();
        let m = config_msg(EmbeddedStore::open(dir.path()));
        assert!(m.contains("another drone-discord"), "{m}");
    }

    /// Root ignores permission bits, so "read-only" is made with the ext4
    /// immutable flag (`chattr +i`), which binds root too. Where chattr is
    /// missing or the file system has no such flag, the test says so and
    /// falls back to permission bits, which only bind non-root users.
    #[test]
    fn a_read_only_database_file_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedStore::open(dir.path()).unwrap());
        let file = dir.path().join(FILE_NAME);
        let immutable = Command::new("chattr").arg("+i").arg(&file).status().is_ok_and(|s| s.success());
        if !immutable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
            if std::fs::OpenOptions::new().append(true).open(&file).is_ok() {
                eprintln!("skipping read-only check: chattr +i unavailable and this user can write a 0400 file");
                return;
            }
        }
        let result = EmbeddedStore::open(dir.path());
        if immutable {
            let _ = Command::new("chattr").arg("-i").arg(&file).status();
        }
        let m = config_msg(result);
        assert!(m.contains(FILE_NAME), "{m}");
    }

    #[tokio::test]
    async fn undecodable_records_are_reported_as_corrupt_naming_the_record() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.append(ev(Some("build:1"), 1, None, b"ok")).await.unwrap();
            s.put_message("build:1", msg("m")).await.unwrap();
            let txn = s.shared.current().unwrap().begin_write().unwrap();
            {
                txn.open_table(EVENTS).unwrap().insert(1, &[ENCODING_V1, 1, 2][..]).unwrap();
                txn.open_table(MESSAGES).unwrap().insert("build:1", &b"{not json"[..]).unwrap();
                txn.open_table(DEAD).unwrap().insert(5, &[9u8][..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let is_corrupt = |r: std::result::Result<(), StoreError>, needle: &str| match r {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected Corrupt naming {needle}, got {other:?}"),
        };
        is_corrupt(s.pending(10).await.map(drop), "event 1");
        is_corrupt(s.claim("w", Duration::from_secs(9), 5, 0).await.map(drop), "event 1");
        is_corrupt(s.message("build:1").await.map(drop), "message for build:1");
        is_corrupt(s.dead_letters(10).await.map(drop), "dead letter 5");
    }

    /// A file backend whose writes and syncs fail with ENOSPC while `full` is
    /// set, and hang while `stalled` is set.
    #[derive(Debug)]
    struct FlakyDisk {
        inner: redb::backends::FileBackend,
        full: Arc<std::sync::atomic::AtomicBool>,
        stalled: Arc<std::sync::atomic::AtomicBool>,
    }

    #[derive(Clone, Default)]
    struct DiskFaults {
        full: Arc<std::sync::atomic::AtomicBool>,
        stalled: Arc<std::sync::atomic::AtomicBool>,
    }

    impl DiskFaults {
        fn opener(&self) -> Box<Opener> {
            let faults = self.clone();
            Box::new(move |path: &Path| {
                let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
                let inner = redb::backends::FileBackend::new(file)?;
                Database::builder().set_check_integrity_on_open(true).create_with_backend(FlakyDisk {
                    inner,
                    full: Arc::clone(&faults.full),
                    stalled: Arc::clone(&faults.stalled),
                })
            })
        }

        fn set_full(&self, on: bool) {
            self.full.store(on, std::sync::atomic::Ordering::SeqCst);
        }

        fn set_stalled(&self, on: bool) {
            self.stalled.store(on, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl FlakyDisk {
        fn check(&self) -> std::io::Result<()> {
            while self.stalled.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                Err(std::io::Error::from_raw_os_error(28))
            } else {
                Ok(())
            }
        }
    }

    impl redb::StorageBackend for FlakyDisk {
        fn len(&self) -> std::io::Result<u64> {
            self.inner.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
            self.inner.read(offset, out)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.check()?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            self.check()?;
            self.inner.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
            self.check()?;
            self.inner.write(offset, data)
        }
        fn close(&self) -> std::io::Result<()> {
            self.inner.close()
        }
        fn try_lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> std::result::Result<bool, redb::BackendError> {
            self.inner.try_lock_range(start, end)
        }
        fn try_lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> std::result::Result<bool, redb::BackendError> {
            self.inner.try_lock_shared_range(start, end)
        }
        fn lock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> std::result::Result<(), redb::BackendError> {
            self.inner.lock_range(start, end)
        }
        fn lock_shared_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> std::result::Result<(), redb::BackendError> {
            self.inner.lock_shared_range(start, end)
        }
        fn unlock_range(
            &self,
            start: std::ops::Bound<u64>,
            end: std::ops::Bound<u64>,
        ) -> std::result::Result<(), redb::BackendError> {
            self.inner.unlock_range(start, end)
        }
    }

    #[tokio::test]
    async fn a_full_disk_is_unavailable_and_the_store_recovers_when_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap();
        assert_eq!(s.append(ev(Some("build:1"), 1, Some("sig-1"), b"kept")).await.unwrap(), Appended::Queued(1));

        faults.set_full(true);
        let unavailable = |r: Result<()>, what: &str| match r {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("{what}: expected Unavailable on a full disk, got {other:?}"),
        };
        unavailable(s.append(ev(Some("build:1"), 2, Some("sig-2"), b"lost")).await.map(drop), "append");
        unavailable(s.probe().await, "probe");
        unavailable(s.put_message("build:1", msg("m")).await, "put_message");

        faults.set_full(false);
        s.probe().await.expect("the store recovers by itself once the disk has room again");
        let pending = s.pending(10).await.unwrap();
        assert_eq!(pending.iter().map(|e| e.body.as_slice()).collect::<Vec<_>>(), vec![&b"kept"[..]]);
        // The refused append left nothing behind: its replay key is free.
        assert_eq!(s.append(ev(Some("build:1"), 3, Some("sig-2"), b"again")).await.unwrap(), Appended::Queued(2));
        assert_eq!(s.append(ev(Some("build:1"), 4, Some("sig-1"), b"")).await.unwrap(), Appended::Duplicate(1));
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
        s.append(ev(Some("build:1"), 1, None, b"first")).await.unwrap();

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
        let bodies: Vec<Vec<u8>> = s.pending(10).await.unwrap().into_iter().map(|e| e.body).collect();
        assert_eq!(bodies, vec![b"first".to_vec(), b"slow".to_vec()], "the unconfirmed write still landed");
    }

    /// Writes that arrive while a commit is in progress share the next one.
    /// The disk is stalled while they queue up, so the batching does not
    /// depend on timing: 64 appends take at most 2 commits, not 64.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_writes_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::default();
        let s = Arc::new(EmbeddedStore::open_with(dir.path(), faults.opener()).unwrap());
        let batches = |s: &EmbeddedStore| s.shared.batches.load(std::sync::atomic::Ordering::Relaxed);
        let before = batches(&s);
        faults.set_stalled(true);
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.append(ev(None, i, Some(&format!("sig-{i}")), b"x")).await })
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
        assert!((1..=2).contains(&used), "64 waiting appends used {used} commits");
    }

    #[tokio::test]
    async fn a_file_damaged_outside_redb_is_refused_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            for i in 0..50 {
                s.append(ev(Some("build:1"), i, None, &[42u8; 300])).await.unwrap();
            }
        }
        let file = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&file).unwrap();
        // Keep the header, scribble over every page after it.
        for b in bytes.iter_mut().skip(4096) {
            *b ^= 0xA5;
        }
        std::fs::write(&file, &bytes).unwrap();
        match EmbeddedStore::open(dir.path()) {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(FILE_NAME), "{m}"),
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("a scribbled-over file must not open"),
        }
        // Not a redb file at all.
        std::fs::write(&file, b"this is not a database, just text in the way").unwrap();
        assert!(EmbeddedStore::open(dir.path()).is_err());
    }

    #[test]
    fn decoding_never_panics_on_truncated_input() {
        let blob = encode_event("build:1", "build", "created", 42, b"body");
        for cut in 0..blob.len() {
            let r = decode_event(1, &blob[..cut]);
            // Only a cut inside the body is still a (shorter) valid event.
            let header = blob.len() - 4;
            assert_eq!(r.is_ok(), cut >= header, "cut {cut}");
        }
        let e = decode_event(1, &blob).unwrap();
        assert_eq!((e.key.as_str(), e.action.as_str(), e.received_ms, e.body.as_slice()), ("build:1", "created", 42, &b"body"[..]));
        let dead = encode_dead("HTTP 400", 77, &blob);
        let d = decode_dead(3, &dead).unwrap();
        assert_eq!((d.reason.as_str(), d.failed_ms, d.event.seq), ("HTTP 400", 77, 3));
        let mut bad_len = blob.clone();
        bad_len[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode_event(1, &bad_len), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn headroom_probe_leaves_nothing_behind_and_fails_where_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        check_headroom(dir.path()).unwrap();
        assert!(!dir.path().join(HEADROOM_FILE).exists());
        let gone = dir.path().join("missing");
        match check_headroom(&gone) {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("no room to write"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod manual {
    //! Checks that need a prepared machine; run by hand, see each test.
    use super::*;

    /// A full disk at run time is `Unavailable`, never a panic. Prepare a
    /// tiny file system and point the test at it, e.g. as root:
    /// `mkdir /tmp/full && mount -t tmpfs -o size=2m tmpfs /tmp/full &&
    /// DD_STORE_SMALL_FS=/tmp/full cargo test --lib enospc -- --ignored`.
    #[tokio::test]
    #[ignore = "needs a small file system in DD_STORE_SMALL_FS"]
    async fn enospc_is_unavailable() {
        let Some(dir) = std::env::var_os("DD_STORE_SMALL_FS") else {
            eprintln!("skipping: DD_STORE_SMALL_FS not set");
            return;
        };
        let s = EmbeddedStore::open(&Path::new(&dir).join("state")).unwrap();
        let body = vec![7u8; 64 * 1024];
        let mut first_err = None;
        for i in 0..1_000u64 {
            let ev = NewEvent {
                key: None,
                event: "build".into(),
                action: "created".into(),
                received_ms: i,
                replay_key: None,
                body: body.clone(),
            };
            if let Err(e) = s.append(ev).await {
                first_err = Some(e);
                break;
            }
        }
        let e = first_err.expect("the small file system never filled up");
        eprintln!("append on a full disk: {e}");
        assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        let p = s.probe().await;
        eprintln!("probe on a full disk: {p:?}");
        assert!(matches!(p, Err(StoreError::Unavailable(_))), "{p:?}");
    }
}
