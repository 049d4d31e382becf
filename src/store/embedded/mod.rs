//! The default store: one redb file in the state directory, no server needed.
//!
//! This file is the [`EmbeddedStore`] itself: opening the directory, and the
//! [`Store`] methods, each of which is either a write handed to the writer
//! thread or a read on tokio's blocking pool. The parts live beside it:
//!
//! * [`group_commit`]: the one writer thread; every waiting write shares one
//!   fsync'ed commit.
//! * [`reopen`]: the shared database handle, reopened after an I/O error.
//! * [`compact`]: shrinking the file after a drain, while the writer is idle.
//! * [`tables`]: the redb tables and what each holds.
//! * [`queue`]: how appends, completions and replay pruning change the rows.
//! * [`message_map`]: the (key, destination) → message rows and the
//!   `changed` outcome records.
//! * [`retention`]: pruning old message ids and dead letters.
//! * [`dead_letters`]: the operator's retry and purge of dead letters.
//! * [`codec`]: the byte layout of stored records.
//! * [`migrations`]: the schema chain's steps, run on open.
//! * [`leases`]: the in-memory map of which worker delivers which key.
//! * [`headroom`]: the free-space and read-only check of the state
//!   directory (`statvfs`, no write).
//! * [`errors`]: redb errors mapped onto [`StoreError`].
//!
//! **Reads** (claim, message, pending, stats) run in read transactions on
//! tokio's blocking pool; redb gives them a consistent snapshot and they
//! never wait for the writer.
use crate::store::{
    Appended, Bounds, Claim, Completion, DeadLetter, DeadSelection, Event, MessageRef, NewEvent,
    OutcomeRecord, Result, Seq, Stats, Store, StoreError, Usage,
};
use codec::{decode_dead, decode_event, decode_message};
pub use errors::is_held_elsewhere;
use errors::{config_from, open_error, Ctx};
use group_commit::{Op, Reply, Writer};
use leases::{drop_lease, Leases};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use reopen::{Opener, Shared};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tables::META_LEASE_EPOCH;
use tables::{Tables, DEAD, EVENTS, MESSAGES, META, OUTCOMES};

pub(crate) mod codec;
mod compact;
mod dead_letters;
mod errors;
#[cfg(test)]
mod fixtures;
mod group_commit;
mod headroom;
mod leases;
mod message_map;
mod migrations;
mod queue;
mod reopen;
mod retention;
mod tables;

/// The database file inside the state directory.
pub const FILE_NAME: &str = "drone-discord.redb";

/// Longest a caller waits for a read or a write confirmation: a stalled disk
/// (a dying SD card) turns into `Unavailable` instead of a hung webhook.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

/// The embedded, single-process store. Not `Clone`: share it with `Arc`.
/// Dropping it stops the writer thread (after the writes already queued) and
/// closes the file, so the same directory can be opened again.
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    leases: Arc<Mutex<Leases>>,
    writer: Writer,
    /// [`OP_TIMEOUT`], shortened by tests.
    op_timeout: Duration,
}

/// redb's page cache. Its default is 1 GiB, which a burst fills and keeps
/// (730 MiB RSS after 93 000 webhooks): on a 512 MiB Pi that is an OOM kill.
/// The working set is small (the newest pages of the queue tables and the
/// B-tree roots); 4 MiB holds it, and a miss costs a read of a page the
/// kernel's page cache most likely still has.
pub const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The production opener: integrity is checked on every open, so a file
/// damaged outside redb is reported as corrupt instead of trusted (redb may
/// panic on a damaged file it trusts); the page cache is [`CACHE_BYTES`].
fn open_file(path: &Path) -> std::result::Result<Database, redb::DatabaseError> {
    Database::builder()
        .set_check_integrity_on_open(true)
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Open (or create) the store in `dir`, creating `dir` with mode 0700 when
    /// missing. A path that cannot hold the store (not a directory, no
    /// permission, read-only, already opened by another process) is a
    /// [`StoreError::Config`].
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_bounded(dir, Bounds::default())
    }

    /// [`open`](Self::open), with the queue's bounds and the retentions.
    pub fn open_bounded(dir: &Path, bounds: Bounds) -> Result<Self> {
        Self::open_with_bounds(dir, Box::new(open_file), bounds)
    }

    #[cfg(test)]
    fn open_with(dir: &Path, opener: Box<Opener>) -> Result<Self> {
        Self::open_with_bounds(dir, opener, Bounds::default())
    }

    fn open_with_bounds(dir: &Path, opener: Box<Opener>, bounds: Bounds) -> Result<Self> {
        let shown = dir.display().to_string();
        match std::fs::metadata(dir) {
            Ok(m) if !m.is_dir() => {
                return Err(StoreError::Config(format!(
                    "state directory {shown} exists but is not a directory"
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| {
                        StoreError::Config(format!("cannot create state directory {shown}: {e}"))
                    })?;
            }
            Err(e) => {
                return Err(StoreError::Config(format!(
                    "cannot use state directory {shown}: {e}"
                )))
            }
        }
        let path = dir.join(FILE_NAME);
        let file_shown = path.display().to_string();
        let db = opener(&path).map_err(|e| open_error(&file_shown, e))?;
        // The queue holds webhook bodies: readable by the service user only.
        if let Err(e) =
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        {
            tracing::warn!(path = %file_shown, error = %e, "could not restrict the store file to mode 0600");
        }
        let lease_epoch;
        // Create every table once so read transactions always find them,
        // migrate an older layout in the same transaction, and prove that the
        // file is writable right now.
        {
            let mut txn = db.begin_write().map_err(|e| open_error(&file_shown, e))?;
            txn.set_durability(redb::Durability::Immediate)
                .map_err(|e| open_error(&file_shown, e))?;
            {
                let mut t = Tables::open(&txn).map_err(|e| config_from(&file_shown, e))?;
                let from = migrations::migrate(&txn, &mut t).map_err(|e| match e {
                    StoreError::Config(m) => StoreError::Config(format!("{file_shown}: {m}")),
                    other => config_from(&file_shown, other),
                })?;
                if from != crate::store::schema::CURRENT {
                    // A migration step may rewrite event records (their keys
                    // grow): count the queue's bytes afresh below.
                    t.meta
                        .remove(queue::META_QUEUE_BYTES)
                        .ctx("reset queue_bytes")
                        .map_err(|e| config_from(&file_shown, e))?;
                }
                // Fencing tokens stay increasing across restarts (see leases).
                let epoch = t
                    .meta
                    .get(META_LEASE_EPOCH)
                    .ctx("read lease_epoch")
                    .map_err(|e| config_from(&file_shown, e))?;
                lease_epoch = epoch.map(|g| g.value()).unwrap_or(0).saturating_add(1);
                t.meta
                    .insert(META_LEASE_EPOCH, lease_epoch)
                    .ctx("write lease_epoch")
                    .map_err(|e| config_from(&file_shown, e))?;
                queue::ensure_queue_bytes(&mut t).map_err(|e| config_from(&file_shown, e))?;
                let mut kept = retention::RetentionTables::open(&txn)
                    .map_err(|e| config_from(&file_shown, e))?;
                kept.backfill(&mut t, crate::store::now_ms())
                    .map_err(|e| config_from(&file_shown, e))?;
                drop(kept);
                drop(t);
            }
            txn.commit().map_err(|e| match e.into() {
                // The migration and lease epoch make this commit write: on a
                // full disk that is transient (retry later), not configuration.
                redb::Error::Io(io) if io.raw_os_error() == Some(28) => {
                    StoreError::Unavailable(format!("cannot write {file_shown}: {io}"))
                }
                other => open_error(&file_shown, other),
            })?;
        }
        let shared = Arc::new(Shared {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            opener,
            batches: Default::default(),
            proof: Default::default(),
            bounds,
        });
        let leases = Arc::new(Mutex::new(Leases::new(lease_epoch)));
        let writer = Writer::start(Arc::clone(&shared), Arc::clone(&leases))?;
        tracing::info!(path = %file_shown, "embedded store open");
        Ok(EmbeddedStore {
            shared,
            leases,
            writer,
            op_timeout: OP_TIMEOUT,
        })
    }

    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Hand `op` to the writer and wait for its durable commit.
    async fn write(&self, op: Op) -> Result<Reply> {
        self.writer.write(op, self.op_timeout).await
    }

    async fn write_done(&self, op: Op) -> Result<()> {
        self.write(op).await.map(|_| ())
    }

    /// Run `f` on the lease map off the async threads: the writer holds
    /// the map through each commit, so on a stalled disk (a frozen or dying
    /// SD card) taking it blocks until the commit ends. On a runtime worker
    /// that wedged the whole service, `/health` included.
    async fn with_leases<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mutex<Leases>) -> T + Send + 'static,
    ) -> Result<T> {
        let leases = Arc::clone(&self.leases);
        tokio::task::spawn_blocking(move || f(&leases))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store lease task failed: {e}")))
    }

    /// [`headroom::check_headroom`] on the blocking pool: `statvfs` can
    /// hang on a stalled disk like any other file-system call.
    async fn headroom(&self) -> Result<()> {
        let dir = self
            .shared
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let task = tokio::task::spawn_blocking(move || headroom::check_headroom(&dir));
        match tokio::time::timeout(self.op_timeout, task).await {
            Ok(done) => {
                done.map_err(|e| StoreError::Unavailable(format!("space check failed: {e}")))?
            }
            Err(_) => Err(StoreError::Unavailable(format!(
                "space check took longer than {:?}",
                self.op_timeout
            ))),
        }
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        // The handle is taken on the blocking pool: during a compaction
        // ([`compact`]) it waits there for the writer, not on a runtime thread.
        let shared = Arc::clone(&self.shared);
        let task = tokio::task::spawn_blocking(move || f(&*shared.current()?));
        match tokio::time::timeout(self.op_timeout, task).await {
            Ok(done) => {
                done.map_err(|e| StoreError::Unavailable(format!("store read task failed: {e}")))?
            }
            Err(_) => Err(StoreError::Unavailable(format!(
                "store read took longer than {:?}",
                self.op_timeout
            ))),
        }
    }
}

impl Store for EmbeddedStore {
    async fn append(&self, ev: NewEvent) -> Result<Appended> {
        match self.write(Op::Append(ev)).await? {
            Reply::Appended(a) => Ok(a),
            Reply::Full(m) => Err(StoreError::Full(m)),
            Reply::Done | Reply::Count(_) | Reply::Imported(_) => Err(StoreError::Unavailable(
                "store writer answered an append oddly".into(),
            )),
        }
    }

    async fn retry_dead(&self, which: DeadSelection) -> Result<u64> {
        match self.write(Op::RetryDead(which)).await? {
            Reply::Count(n) => Ok(n),
            Reply::Full(m) => Err(StoreError::Full(m)),
            Reply::Appended(_) | Reply::Done | Reply::Imported(_) => Err(StoreError::Unavailable(
                "store writer answered a retry oddly".into(),
            )),
        }
    }

    async fn purge_dead(&self, which: DeadSelection) -> Result<u64> {
        match self.write(Op::PurgeDead(which)).await? {
            Reply::Count(n) => Ok(n),
            _ => Err(StoreError::Unavailable(
                "store writer answered a purge oddly".into(),
            )),
        }
    }

    async fn claim(&self, owner: &str, lease: Duration, max_keys: usize) -> Result<Vec<Claim>> {
        let leases = Arc::clone(&self.leases);
        let owner = owner.to_owned();
        let found = self
            .read(move |db| leases::claim(db, &leases, &owner, lease, max_keys))
            .await?;
        // An undecodable event would fail every claim forever (and flap the
        // store's health): move it aside as a dead letter, with the reason,
        // and deliver every other key. Its key is claimable again after.
        for bad in found.corrupt {
            tracing::error!(key = %bad.key, seq = bad.seq, reason = %bad.reason, "stored event cannot be decoded; moved to the dead letters");
            let reason = format!("stored event could not be decoded: {}", bad.reason);
            self.write_done(Op::SetAside {
                key: bad.key,
                seq: bad.seq,
                reason,
                now_ms: crate::store::now_ms(),
            })
            .await?;
        }
        Ok(found.claims)
    }

    async fn complete(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        done: Completion,
    ) -> Result<()> {
        self.write_done(Op::Complete {
            key: key.to_owned(),
            owner: owner.to_owned(),
            token,
            upto,
            done,
        })
        .await
    }

    async fn release(&self, key: &str, owner: &str, token: u64) -> Result<()> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.with_leases(move |leases| drop_lease(leases, &key, &owner, token))
            .await
    }

    async fn renew(&self, key: &str, owner: &str, token: u64, lease: Duration) -> Result<()> {
        let (key, owner) = (key.to_owned(), owner.to_owned());
        self.with_leases(move |leases| crate::sync::lock(leases).renew(&key, &owner, token, lease))
            .await?
    }

    async fn dead_letter(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        reason: &str,
        now_ms: u64,
    ) -> Result<()> {
        self.write_done(Op::DeadLetter {
            key: key.to_owned(),
            owner: owner.to_owned(),
            token,
            upto,
            reason: reason.to_owned(),
            now_ms,
        })
        .await
    }

    async fn message(&self, key: &str, dest: &str) -> Result<Option<MessageRef>> {
        let (key, dest) = (key.to_owned(), dest.to_owned());
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let messages = txn.open_table(MESSAGES).ctx("open messages")?;
            let found = messages
                .get((key.as_str(), dest.as_str()))
                .ctx("read message")?;
            found.map(|g| decode_message(&key, g.value())).transpose()
        })
        .await
    }

    async fn messages(&self, key: &str) -> Result<Vec<(String, MessageRef)>> {
        let key = key.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let messages = txn.open_table(MESSAGES).ctx("open messages")?;
            message_map::key_messages(&messages, &key)
        })
        .await
    }

    async fn put_message(
        &self,
        key: &str,
        dest: &str,
        owner: &str,
        token: u64,
        message: MessageRef,
    ) -> Result<()> {
        self.write_done(Op::PutMessage {
            key: key.to_owned(),
            dest: dest.to_owned(),
            owner: owner.to_owned(),
            token,
            message,
        })
        .await
    }

    async fn import_message(&self, key: &str, dest: &str, message: MessageRef) -> Result<bool> {
        match self
            .write(Op::ImportMessage {
                key: key.to_owned(),
                dest: dest.to_owned(),
                message,
            })
            .await?
        {
            Reply::Imported(stored) => Ok(stored),
            _ => Err(StoreError::Unavailable(
                "store writer answered an import oddly".into(),
            )),
        }
    }

    async fn outcome(&self, change_key: &str) -> Result<Option<OutcomeRecord>> {
        let change_key = change_key.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let outcomes = txn.open_table(OUTCOMES).ctx("open outcomes")?;
            let found = outcomes.get(change_key.as_str()).ctx("read outcome")?;
            Ok(found.map(|g| message_map::outcome_of(g.value())))
        })
        .await
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
            let pending = txn
                .open_table(EVENTS)
                .ctx("open events")?
                .len()
                .ctx("count events")?;
            let dead_letters = txn
                .open_table(DEAD)
                .ctx("open dead_letters")?
                .len()
                .ctx("count dead letters")?;
            Ok(Stats {
                pending,
                dead_letters,
            })
        })
        .await
    }

    async fn usage(&self) -> Result<Usage> {
        let bounds = self.shared.bounds;
        self.read(move |db| {
            let txn = db.begin_read().ctx("begin read")?;
            let events = txn
                .open_table(EVENTS)
                .ctx("open events")?
                .len()
                .ctx("count events")?;
            let meta = txn.open_table(META).ctx("open meta")?;
            let bytes = meta
                .get(queue::META_QUEUE_BYTES)
                .ctx("read queue_bytes")?
                .map(|g| g.value())
                .unwrap_or(0);
            Ok(Usage::of(events, bytes, &bounds))
        })
        .await
    }

    async fn probe(&self) -> Result<()> {
        self.headroom().await?;
        self.write_done(Op::Probe).await
    }

    /// Free space and a writable file system (`statvfs`, no write), then
    /// the last commit as proof; a probe commit only when that is missing,
    /// older than [`PROBE_EVERY`](crate::store::write_proof::PROBE_EVERY)
    /// or a failure. Idle, this writes nothing for hours.
    async fn writable(&self) -> Result<()> {
        self.headroom().await?;
        if self.shared.proof.is_fresh(std::time::Instant::now()) {
            return Ok(());
        }
        self.write_done(Op::Probe).await
    }

    /// One `stat` of the database file.
    fn file_bytes(&self) -> Option<u64> {
        std::fs::metadata(self.path()).ok().map(|m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ev, msg};
    use super::*;
    use std::process::Command;

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
            assert_eq!(
                s.append(ev(Some("build:1"), 10, None, b"one"))
                    .await
                    .unwrap(),
                Appended::Queued(1)
            );
            assert_eq!(
                s.append(ev(None, 11, None, b"two")).await.unwrap(),
                Appended::Queued(2)
            );
            assert_eq!(
                s.append(ev(Some("build:1"), 12, None, &[0, 255, 1]))
                    .await
                    .unwrap(),
                Appended::Queued(3)
            );
            assert!(s
                .import_message("build:1", "channel:111", msg("m1"))
                .await
                .unwrap());
        }
        let mode = std::fs::metadata(&state).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o700
        );
        let mode = std::fs::metadata(state.join(FILE_NAME))
            .unwrap()
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let s = EmbeddedStore::open(&state).unwrap();
        let pending = s.pending(10).await.unwrap();
        let got: Vec<(Seq, &str, &[u8])> = pending
            .iter()
            .map(|e| (e.seq, e.key.as_str(), e.body.as_slice()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "build:1", &b"one"[..]),
                (2, "event:2", &b"two"[..]),
                (3, "build:1", &[0, 255, 1][..])
            ]
        );
        assert_eq!(pending[0].received_ms, 10);
        assert_eq!(pending[0].event, "build");
        assert_eq!(pending[0].action, "updated");
        assert_eq!(
            s.message("build:1", "channel:111").await.unwrap(),
            Some(msg("m1"))
        );
        assert_eq!(s.message("build:2", "channel:111").await.unwrap(), None);
        assert_eq!(
            s.append(ev(None, 13, None, b"")).await.unwrap(),
            Appended::Queued(4)
        );
        assert_eq!(
            s.stats().await.unwrap(),
            Stats {
                pending: 4,
                dead_letters: 0
            }
        );
    }

    #[tokio::test]
    async fn seq_continues_after_everything_was_completed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.append(ev(Some("k"), 1, None, b"a")).await.unwrap();
            s.append(ev(Some("k"), 2, None, b"b")).await.unwrap();
            let c = s.claim("w", Duration::from_secs(60), 1).await.unwrap();
            s.complete("k", "w", c[0].token, 2, Completion::default())
                .await
                .unwrap();
            assert_eq!(s.stats().await.unwrap().pending, 0);
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        // Seqs are never reused, even when the queue was empty at shutdown.
        assert_eq!(
            s.append(ev(Some("k"), 3, None, b"c")).await.unwrap(),
            Appended::Queued(3)
        );
    }

    #[tokio::test]
    #[ignore = "helper: run by store_killed_mid_flight_reopens_with_its_data"]
    async fn crash_child() {
        let Some(dir) = std::env::var_os("DD_STORE_CRASH_DIR") else {
            return;
        };
        let s = EmbeddedStore::open(Path::new(&dir)).unwrap();
        for i in 0..20u64 {
            s.append(ev(
                Some("build:9"),
                i,
                Some(&format!("sig-{i}")),
                b"payload",
            ))
            .await
            .unwrap();
        }
        assert!(s
            .import_message("build:9", "channel:111", msg("m9"))
            .await
            .unwrap());
        std::process::abort();
    }

    #[tokio::test]
    async fn store_killed_mid_flight_reopens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let out = Command::new(exe)
            .args([
                "--exact",
                "store::embedded::tests::crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DD_STORE_CRASH_DIR", dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "the child must have died by abort");
        let s = EmbeddedStore::open(dir.path()).unwrap();
        let pending = s.pending(100).await.unwrap();
        assert_eq!(
            pending.len(),
            20,
            "every acknowledged append survives the crash"
        );
        assert_eq!(pending.last().map(|e| e.seq), Some(20));
        assert_eq!(
            s.message("build:9", "channel:111").await.unwrap(),
            Some(msg("m9"))
        );
        assert_eq!(
            s.append(ev(None, 0, Some("sig-3"), b"")).await.unwrap(),
            Appended::Duplicate(4)
        );
        assert_eq!(
            s.append(ev(None, 0, None, b"")).await.unwrap(),
            Appended::Queued(21)
        );
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
        let second = EmbeddedStore::open(dir.path());
        assert!(matches!(&second, Err(e) if is_held_elsewhere(e)));
        let m = config_msg(second);
        assert!(m.contains("another drone-discord"), "{m}");
        drop(_first);
        assert!(!is_held_elsewhere(&StoreError::Config("bad path".into())));
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
        let immutable = Command::new("chattr")
            .arg("+i")
            .arg(&file)
            .status()
            .is_ok_and(|s| s.success());
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
    async fn a_file_damaged_outside_redb_is_refused_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            for i in 0..50 {
                s.append(ev(Some("build:1"), i, None, &[42u8; 300]))
                    .await
                    .unwrap();
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
