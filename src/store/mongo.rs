//! The MongoDB store (feature `mongodb`), for deployments that already run
//! MongoDB for the old Python service or want the queue off the Pi's SD card.
//!
//! Same contract as the embedded store (the conformance suite runs against
//! both), built from single-document atomic operations so it works on a
//! standalone server without transactions:
//!
//! * `events` `{_id: seq, key, event, action, received_ms, body}`, index
//!   `{key: 1, _id: 1}`; seqs come from `counters` `{_id: "seq", n}` via
//!   `$inc` (strictly increasing, gaps possible after a failed append).
//! * `replay` `{_id: replay key, seq, received_ms, at}`: `_id` makes the
//!   replay key unique (two concurrent appends → one insert wins, the other
//!   gets E11000 and answers `Duplicate`); a TTL index on `at` removes keys
//!   after [`REPLAY_RETENTION_MS`].
//! * `leases` `{_id: key, owner, token, expires_at}`: a claim takes a key with
//!   one upsert whose filter only matches an expired lease, so at most one
//!   owner can win it (the loser's upsert hits the unique `_id`). Expiry is
//!   the *server's* time: `expires_at` is set by an update pipeline to
//!   `$$NOW + lease` and compared with `$$NOW`, so instances with skewed or
//!   stepped clocks agree. `token` comes from `counters` `{_id:
//!   "lease_token"}` (`$inc`, strictly increasing); complete, dead-letter,
//!   release and renew match `{_id, owner, token}`, and a message written by
//!   `complete` carries `fence: token` and is only replaced by an equal or
//!   newer token, so a stale holder's late write is refused even when the new
//!   holder already finished.
//! * `messages` `{_id: {k: key, d: destination}, channel_id, message_id,
//!   status, …}`, index `{_id.k: 1, _id.d: 1}` (every destination of a key);
//!   schema 2 and older keyed them `{_id: key}` (the 2 → 3 step rewrites
//!   them),
//! * `outcomes` `{_id: change key, passing, number, created, at_ms}`: a
//!   `changed` route's last outcome, replaced only by a newer build's (an
//!   upsert whose filter matches an older record only; an equal or newer one
//!   makes it hit the unique `_id`, and it is left alone),
//!   `dead_letters` `{_id: seq, …event, reason, failed_ms}`, `counters`
//!   (seq, probe), `meta` `{_id: "schema", version}` (the schema version,
//!   see [`super::schema`]; migrated on connect by [`MongoStore::migrate`]).
//!
//! Multi-step writes are ordered so that a crash between the steps repeats
//! work instead of losing it: `complete` stores the messages and the outcome
//! record (both repeatable), then deletes the events, then the lease; `dead_letter` upserts the dead letters before
//! deleting exactly those events. All writes use `w: majority, j: true`.
//!
//! One difference from the embedded store: a seq is allocated before its
//! event is inserted, so two appends racing *for the same key* may become
//! visible out of seq order for a moment. Drone sends one build's webhooks
//! one after the other (each waits for our answer), so this needs a client
//! that sends updates of one build concurrently; the result is then at
//! worst an older state coalesced away, never a lost newer one.
use super::mongo_uri::redact_uri;
use super::schema::{self, Step, UNVERSIONED};
use super::{
    build_key_of_body, channel_dest, claim_has_room, fits, fits_all, full_message, legacy_build_id,
    legacy_key_of, Appended, Bounds, Claim, Completion, DeadLetter, DeadSelection, Event,
    MessageRef, NewEvent, OutcomeRecord, Result, Seq, Stats, Store, StoreError, UncertainCreate,
    Usage, MAX_CLAIM_EVENTS, REPLAY_RETENTION_MS,
};
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, DatabaseOptions, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use std::time::Duration;

pub use super::mongo_uri::uri_from_parts;

/// How long start-up waits for a reachable server before giving up.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the whole start-up check (ping, write, indexes) may take.
const START_UP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest one store operation may take (several round trips included).
pub const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Duplicate key.
const E_DUPLICATE_KEY: i32 = 11000;

/// The MongoDB store. Cheap to share by reference; holds a connection pool.
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    name: String,
    /// The queue's bounds and the retentions ([`MongoStore::with_bounds`]).
    bounds: Bounds,
    /// When retention last pruned (ms), so it runs at most every [`PRUNE_INTERVAL_MS`].
    last_prune_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// How often (at most) appends prune old messages and dead letters.
const PRUNE_INTERVAL_MS: u64 = 10 * 60 * 1000;

impl std::fmt::Debug for MongoStore {
    // The client's options hold the credentials: show only the database.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("database", &self.name)
            .finish_non_exhaustive()
    }
}

/// Database names MongoDB accepts (and that fit on one line in an error).
fn check_db_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > 63
        || name
            .chars()
            .any(|c| matches!(c, '/' | '\\' | '.' | ' ' | '"' | '$' | '\0') || c.is_control());
    if bad {
        return Err(StoreError::Config(format!(
            "MongoDB database name {name:?} is invalid (1-63 characters, none of / \\ . space \" $)"
        )));
    }
    Ok(())
}

fn is_duplicate_key(e: &MongoError) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == E_DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == E_DUPLICATE_KEY,
        _ => false,
    }
}

/// A driver error at run time; the message never carries the URI.
fn unavailable(what: &str, e: MongoError) -> StoreError {
    StoreError::Unavailable(format!("MongoDB {what}: {e}"))
}

/// A driver error at start-up: every one is fatal configuration, phrased
/// for the person reading the one line.
fn startup_error(uri: &str, db: &str, e: MongoError) -> StoreError {
    let shown = redact_uri(uri);
    let why = match e.kind.as_ref() {
        ErrorKind::ServerSelection { .. } => format!("cannot reach MongoDB at {shown}"),
        ErrorKind::Authentication { .. } => format!("MongoDB at {shown} refused the credentials"),
        ErrorKind::Command(c) if c.code == 13 || c.code == 18 => {
            format!("MongoDB user in {shown} may not use database {db:?}")
        }
        ErrorKind::InvalidArgument { .. } | ErrorKind::DnsResolve { .. } => {
            format!("bad MongoDB URI {shown}")
        }
        _ => format!("MongoDB at {shown} failed the start-up check"),
    };
    // The driver's own text names the cause (timeout, auth mechanism, …)
    // without the password; keep it, redacted once more for safety.
    let detail = redact_in(&e.to_string(), uri);
    StoreError::Config(format!("{why}: {detail}"))
}

/// Remove any password that appears in `uri` from `text`.
fn redact_in(text: &str, uri: &str) -> String {
    let password = uri
        .split_once("://")
        .and_then(|(_, rest)| rest.split(['/', '?']).next())
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(uri, &redact_uri(uri)).replace(p, "***"),
        None => text.replace(uri, &redact_uri(uri)),
    }
}

fn i64_of(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| StoreError::Corrupt(format!("{what} {v} does not fit MongoDB's int64")))
}

/// Read a non-negative integer field (stored as int64, tolerated as int32).
fn u64_field(d: &Document, field: &str, what: &str) -> Result<u64> {
    let v = match d.get(field) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "{what}: field {field} missing or not an integer"
            )))
        }
    };
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what}: field {field} is negative")))
}

fn str_field(d: &Document, field: &str, what: &str) -> Result<String> {
    match d.get(field) {
        Some(Bson::String(s)) => Ok(s.clone()),
        _ => Err(StoreError::Corrupt(format!(
            "{what}: field {field} missing or not a string"
        ))),
    }
}

fn event_doc(seq: Seq, key: &str, ev: &NewEvent) -> Result<Document> {
    Ok(doc! {
        "_id": i64_of(seq, "seq")?,
        "key": key,
        "event": &ev.event,
        "action": &ev.action,
        "received_ms": i64_of(ev.received_ms, "received_ms")?,
        "body": Binary { subtype: BinarySubtype::Generic, bytes: ev.body.clone() },
        // The body's length, summed for the queue's byte bound.
        "size": i64_of(ev.body.len() as u64, "size")?,
    })
}

fn decode_event(d: &Document) -> Result<Event> {
    let seq = u64_field(d, "_id", "event")?;
    let what = format!("event {seq}");
    let body = match d.get("body") {
        Some(Bson::Binary(b)) => b.bytes.clone(),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "{what}: field body missing or not binary"
            )))
        }
    };
    Ok(Event {
        seq,
        key: str_field(d, "key", &what)?,
        event: str_field(d, "event", &what)?,
        action: str_field(d, "action", &what)?,
        received_ms: u64_field(d, "received_ms", &what)?,
        body,
    })
}

/// The `_id` of `key`'s message at `dest`.
fn message_id(key: &str, dest: &str) -> Bson {
    Bson::Document(doc! { "k": key, "d": dest })
}

fn message_doc(key: &str, dest: &str, m: &MessageRef) -> Result<Document> {
    let mut d = doc! {
        "_id": message_id(key, dest),
        "channel_id": &m.channel_id,
        "message_id": &m.message_id,
        "status": &m.status,
    };
    if let Some(u) = &m.uncertain {
        d.insert(
            "uncertain",
            doc! {
                "channel_id": &u.channel_id,
                "generation": i64::from(u.generation),
                "since_ms": i64_of(u.since_ms, "since_ms")?,
            },
        );
    }
    if let Some(t) = &m.thread_id {
        d.insert("thread_id", t);
    }
    if m.pinged {
        d.insert("pinged", true);
    }
    Ok(d)
}

/// The optional `uncertain` sub-document of a message (see [`MessageRef::uncertain`]).
fn decode_uncertain(d: &Document, what: &str) -> Result<Option<UncertainCreate>> {
    let Some(u) = d.get("uncertain") else {
        return Ok(None);
    };
    let Some(u) = u.as_document() else {
        return Err(StoreError::Corrupt(format!(
            "{what}: uncertain is not a document"
        )));
    };
    let generation = u32::try_from(u64_field(u, "generation", what)?)
        .map_err(|_| StoreError::Corrupt(format!("{what}: generation out of range")))?;
    Ok(Some(UncertainCreate {
        channel_id: str_field(u, "channel_id", what)?,
        generation,
        since_ms: u64_field(u, "since_ms", what)?,
    }))
}

fn decode_message(key: &str, d: &Document) -> Result<MessageRef> {
    let what = format!("message for {key}");
    Ok(MessageRef {
        channel_id: str_field(d, "channel_id", &what)?,
        message_id: str_field(d, "message_id", &what)?,
        status: str_field(d, "status", &what)?,
        uncertain: decode_uncertain(d, &what)?,
        thread_id: match d.get("thread_id") {
            None => None,
            Some(_) => Some(str_field(d, "thread_id", &what)?),
        },
        pinged: match d.get("pinged") {
            None => false,
            Some(Bson::Boolean(b)) => *b,
            Some(_) => {
                return Err(StoreError::Corrupt(format!(
                    "{what}: pinged is not a boolean"
                )))
            }
        },
    })
}

fn decode_outcome(d: &Document, what: &str) -> Result<OutcomeRecord> {
    let int = |field: &str| match d.get(field) {
        Some(Bson::Int64(n)) => Ok(*n),
        Some(Bson::Int32(n)) => Ok(i64::from(*n)),
        _ => Err(StoreError::Corrupt(format!(
            "{what}: field {field} missing or not an integer"
        ))),
    };
    Ok(OutcomeRecord {
        passing: match d.get("passing") {
            Some(Bson::Boolean(b)) => *b,
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "{what}: passing missing or not a boolean"
                )))
            }
        },
        number: int("number")?,
        created: int("created")?,
        at_ms: u64_field(d, "at_ms", what)?,
    })
}

impl MongoStore {
    /// Connect to `uri`, use database `db`, check that the server answers and
    /// takes a journaled write, and create the indexes. Any failure is one
    /// [`StoreError::Config`] line (unreachable server, bad credentials, bad
    /// database name), with the password redacted.
    pub async fn connect(uri: &str, db: &str) -> Result<Self> {
        let limit = START_UP_TIMEOUT;
        match tokio::time::timeout(limit, Self::connect_inner(uri, db)).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Config(format!(
                "MongoDB at {} did not finish the start-up check within {limit:?}",
                redact_uri(uri)
            ))),
        }
    }

    async fn connect_inner(uri: &str, db: &str) -> Result<Self> {
        let store = Self::connect_read_only(uri, db).await?;
        store
            .write_probe()
            .await
            .map_err(|e| startup_error(uri, db, e))?;
        store
            .create_indexes()
            .await
            .map_err(|e| startup_error(uri, db, e))?;
        store.migrate().await?;
        tracing::info!(uri = %redact_uri(uri), database = db, "MongoDB store connected");
        Ok(store)
    }

    /// Connect and ping, without writing or creating indexes: for reading
    /// another database (the old service's, see `migrate`).
    pub async fn connect_read_only(uri: &str, db: &str) -> Result<Self> {
        check_db_name(db)?;
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| startup_error(uri, db, e))?;
        // Short timeouts so a wrong host fails start-up in seconds; a URI
        // that sets its own (serverSelectionTimeoutMS, connectTimeoutMS) wins.
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        options
            .app_name
            .get_or_insert_with(|| "drone-discord".into());
        let client = Client::with_options(options).map_err(|e| startup_error(uri, db, e))?;
        let wc = WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build();
        let database =
            client.database_with_options(db, DatabaseOptions::builder().write_concern(wc).build());
        database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| startup_error(uri, db, e))?;
        Ok(MongoStore {
            db: database,
            name: db.to_owned(),
            bounds: Bounds::default(),
            last_prune_ms: Default::default(),
        })
    }

    /// This store with the queue's bounds and the retentions.
    pub fn with_bounds(mut self, bounds: Bounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// A raw collection of this database.
    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// The database in use.
    pub fn database_name(&self) -> &str {
        &self.name
    }

    /// Drop the whole database (used by tests to clean up after themselves).
    pub async fn drop_database(&self) -> Result<()> {
        self.db
            .drop()
            .await
            .map_err(|e| unavailable("drop database", e))
    }

    fn events(&self) -> Collection<Document> {
        self.db.collection("events")
    }
    fn replay(&self) -> Collection<Document> {
        self.db.collection("replay")
    }
    fn leases(&self) -> Collection<Document> {
        self.db.collection("leases")
    }
    fn messages(&self) -> Collection<Document> {
        self.db.collection("messages")
    }
    fn outcomes(&self) -> Collection<Document> {
        self.db.collection("outcomes")
    }
    fn dead(&self) -> Collection<Document> {
        self.db.collection("dead_letters")
    }
    fn counters(&self) -> Collection<Document> {
        self.db.collection("counters")
    }
    fn meta(&self) -> Collection<Document> {
        self.db.collection("meta")
    }

    /// Run every schema step above the recorded version, recording each
    /// version right after its step finished (every step is idempotent, so a
    /// crash half-way repeats the step on the next connect).
    pub async fn migrate(&self) -> Result<()> {
        let found = self
            .meta()
            .find_one(doc! { "_id": "schema" })
            .await
            .map_err(|e| unavailable("read schema version", e))?;
        let from = found
            .map(|d| u64_field(&d, "version", "meta schema"))
            .transpose()?
            .unwrap_or(UNVERSIONED);
        for step in schema::steps_from(from)? {
            self.migrate_step(*step).await?;
            let version = i64_of(step.to(), "schema version")?;
            self.meta()
                .replace_one(
                    doc! { "_id": "schema" },
                    doc! { "_id": "schema", "version": version },
                )
                .upsert(true)
                .await
                .map_err(|e| unavailable("write schema version", e))?;
            tracing::info!(to = step.to(), what = step.what(), "store migrated");
        }
        Ok(())
    }

    async fn migrate_step(&self, step: Step) -> Result<()> {
        match step {
            Step::NamespacedKeys => self.namespace_keys().await,
            Step::MessagesPerDestination => self.messages_per_destination().await,
        }
    }

    /// 1 → 2 (see [`Step::NamespacedKeys`]). Messages move first, events
    /// second, so a repeat after a crash still finds each legacy message's
    /// events under the legacy key. Leases of the old release (wall-clock
    /// `expires_ms`, no fencing token) are dropped: the old release must be
    /// stopped before the upgrade, and a dropped lease is an expired one.
    async fn namespace_keys(&self) -> Result<()> {
        let legacy = self
            .find_all(
                self.events(),
                doc! { "key": { "$regex": "^build:[0-9]+$" } },
                usize::MAX,
                "read legacy events",
                decode_event,
            )
            .await?;
        let mut moved: std::collections::BTreeMap<String, String> = Default::default();
        let mut rekey = Vec::new();
        for ev in legacy {
            if legacy_build_id(&ev.key).is_none() {
                continue;
            }
            let Some(new) = build_key_of_body(&ev.body) else {
                continue;
            };
            moved.entry(ev.key.clone()).or_insert_with(|| new.clone());
            rekey.push((ev.seq, new));
        }
        for (old, new) in &moved {
            if let Some(d) = self
                .messages()
                .find_one(doc! { "_id": old })
                .await
                .map_err(|e| unavailable("read message", e))?
            {
                let mut fields = d;
                fields.remove("_id");
                self.insert_if_absent(Bson::String(new.clone()), fields)
                    .await?;
                self.messages()
                    .delete_one(doc! { "_id": old })
                    .await
                    .map_err(|e| unavailable("move message", e))?;
            }
        }
        for (seq, new) in rekey {
            self.events()
                .update_one(
                    doc! { "_id": i64_of(seq, "seq")? },
                    doc! { "$set": { "key": new } },
                )
                .await
                .map_err(|e| unavailable("rewrite event key", e))?;
        }
        self.leases()
            .delete_many(doc! {})
            .await
            .map_err(|e| unavailable("drop old leases", e))?;
        Ok(())
    }

    /// 2 → 3 (see [`Step::MessagesPerDestination`]): every message document
    /// keyed `{_id: key}` is copied (all its fields: the fence and the time
    /// for retention too) to `{_id: {k: key, d: "channel:<its channel>"}}`
    /// unless that exists, then deleted; repeatable after a crash.
    async fn messages_per_destination(&self) -> Result<()> {
        let old = self
            .find_all(
                self.messages(),
                doc! { "_id": { "$type": "string" } },
                usize::MAX,
                "read messages",
                |d| Ok(d.clone()),
            )
            .await?;
        for mut d in old {
            let Some(Bson::String(key)) = d.remove("_id") else {
                continue;
            };
            let m = match decode_message(&key, &d) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(key, error = %e, "migration: undecodable message dropped");
                    self.delete_message(Bson::String(key)).await?;
                    continue;
                }
            };
            let channel = match &m.uncertain {
                Some(u) if m.channel_id.is_empty() => &u.channel_id,
                _ => &m.channel_id,
            };
            self.insert_if_absent(message_id(&key, &channel_dest(channel)), d)
                .await?;
            self.delete_message(Bson::String(key)).await?;
        }
        Ok(())
    }

    async fn delete_message(&self, id: Bson) -> Result<()> {
        self.messages()
            .delete_one(doc! { "_id": id })
            .await
            .map_err(|e| unavailable("move message", e))?;
        Ok(())
    }

    /// Insert a message document `{_id: id, ...fields}` unless `id` exists;
    /// whether it did.
    async fn insert_if_absent(&self, id: Bson, fields: Document) -> Result<bool> {
        let r = self
            .messages()
            .update_one(doc! { "_id": id }, doc! { "$setOnInsert": fields })
            .upsert(true)
            .await
            .map_err(|e| unavailable("store message", e))?;
        Ok(r.upserted_id.is_some())
    }

    /// Store `m` for `key` at `dest` unless it has a message there; whether it stored it.
    async fn insert_message_if_absent(
        &self,
        key: &str,
        dest: &str,
        m: &MessageRef,
    ) -> Result<bool> {
        let mut fields = message_doc(key, dest, m)?;
        let id = fields.remove("_id").unwrap_or(Bson::Null);
        self.insert_if_absent(id, fields).await
    }

    /// See `embedded::migrations::adopt_legacy_message`: a namespaced build
    /// key without a message takes over its build id's legacy messages (at
    /// each destination) while they are not final.
    async fn adopt_legacy_message(&self, key: &str) -> Result<()> {
        let Some(legacy) = legacy_key_of(key) else {
            return Ok(());
        };
        if !self.op_messages(key).await?.is_empty() {
            return Ok(());
        }
        for (dest, m) in self.op_messages(&legacy).await? {
            if crate::drone::is_final(&m.status) {
                continue;
            }
            self.insert_message_if_absent(key, &dest, &m).await?;
            self.messages()
                .delete_one(doc! { "_id": message_id(&legacy, &dest), "message_id": &m.message_id })
                .await
                .map_err(|e| unavailable("adopt message", e))?;
            tracing::info!(key, from = %legacy, dest = %dest, "build message from before the upgrade adopted");
        }
        Ok(())
    }

    async fn write_probe(&self) -> std::result::Result<(), MongoError> {
        self.counters()
            .update_one(doc! { "_id": "probe" }, doc! { "$inc": { "n": 1i64 } })
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn create_indexes(&self) -> std::result::Result<(), MongoError> {
        self.events()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "key": 1, "_id": 1 })
                    .build(),
            )
            .await?;
        self.messages()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "_id.k": 1, "_id.d": 1 })
                    .build(),
            )
            .await?;
        let ttl = IndexOptions::builder()
            .expire_after(Duration::from_millis(REPLAY_RETENTION_MS))
            .build();
        self.replay()
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "at": 1 })
                    .options(ttl)
                    .build(),
            )
            .await?;
        Ok(())
    }

    async fn next_seq(&self) -> Result<Seq> {
        let d = self
            .counters()
            .find_one_and_update(doc! { "_id": "seq" }, doc! { "$inc": { "n": 1i64 } })
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(|e| unavailable("allocate seq", e))?
            .ok_or_else(|| {
                StoreError::Unavailable("MongoDB allocate seq: no counter returned".into())
            })?;
        u64_field(&d, "n", "counter seq")
    }

    /// Record `rk` for `seq`. `Ok(None)`: recorded; `Ok(Some(first))`: a live
    /// earlier record exists.
    async fn record_replay(&self, rk: &str, seq: Seq, received_ms: u64) -> Result<Option<Seq>> {
        let record = doc! {
            "_id": rk,
            "seq": i64_of(seq, "seq")?,
            "received_ms": i64_of(received_ms, "received_ms")?,
            "at": DateTime::from_millis(i64_of(received_ms, "received_ms")?),
        };
        for _ in 0..3 {
            match self.replay().insert_one(record.clone()).await {
                Ok(_) => return Ok(None),
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(unavailable("record replay key", e)),
            }
            let Some(seen) = self
                .replay()
                .find_one(doc! { "_id": rk })
                .await
                .map_err(|e| unavailable("read replay key", e))?
            else {
                continue; // removed by the TTL monitor in between: try again
            };
            let seen_ms = u64_field(&seen, "received_ms", "replay key")?;
            if received_ms.saturating_sub(seen_ms) < REPLAY_RETENTION_MS {
                return Ok(Some(u64_field(&seen, "seq", "replay key")?));
            }
            // Expired but not swept yet: take it over, unless someone else just did.
            let taken = self
                .replay()
                .replace_one(
                    doc! { "_id": rk, "received_ms": i64_of(seen_ms, "received_ms")? },
                    record.clone(),
                )
                .await
                .map_err(|e| unavailable("renew replay key", e))?;
            if taken.modified_count == 1 {
                return Ok(None);
            }
        }
        Err(StoreError::Unavailable(
            "MongoDB replay key kept changing; try again".into(),
        ))
    }

    /// `key`'s events with seq ≤ `upto`, oldest first, as many as one claim
    /// may carry ([`claim_has_room`]).
    async fn events_upto(&self, key: &str, upto: Seq) -> Result<Vec<Event>> {
        let upto = i64::try_from(upto).unwrap_or(i64::MAX);
        let mut cursor = self
            .events()
            .find(doc! { "key": key, "_id": { "$lte": upto } })
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(MAX_CLAIM_EVENTS).unwrap_or(i64::MAX))
            .await
            .map_err(|e| unavailable("read events", e))?;
        let mut out: Vec<Event> = Vec::new();
        let mut bytes = 0usize;
        while cursor
            .advance()
            .await
            .map_err(|e| unavailable("read events", e))?
        {
            let d = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(format!("event of {key}: {e}")))?;
            let ev = decode_event(&d)?;
            if !claim_has_room(out.len(), bytes, ev.body.len()) {
                break;
            }
            bytes += ev.body.len();
            out.push(ev);
        }
        Ok(out)
    }

    async fn delete_events(&self, key: &str, upto: Seq) -> Result<()> {
        let upto = i64::try_from(upto).unwrap_or(i64::MAX);
        self.events()
            .delete_many(doc! { "key": key, "_id": { "$lte": upto } })
            .await
            .map_err(|e| unavailable("delete events", e))?;
        Ok(())
    }

    async fn drop_lease(&self, key: &str, owner: &str, token: u64) -> Result<()> {
        self.leases()
            .delete_one(doc! { "_id": key, "owner": owner, "token": i64_of(token, "token")? })
            .await
            .map_err(|e| unavailable("drop lease", e))?;
        Ok(())
    }

    /// Take the lease on `key` if nobody holds a live one (by the server's
    /// clock); its fencing token when taken.
    async fn try_lease(&self, key: &str, owner: &str, lease_ms: i64) -> Result<Option<u64>> {
        let d = self
            .counters()
            .find_one_and_update(
                doc! { "_id": "lease_token" },
                doc! { "$inc": { "n": 1i64 } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
            .map_err(|e| unavailable("allocate lease token", e))?
            .ok_or_else(|| {
                StoreError::Unavailable("MongoDB allocate lease token: no counter returned".into())
            })?;
        let token = u64_field(&d, "n", "counter lease_token")?;
        let r = self
            .leases()
            .update_one(
                doc! { "_id": key, "$expr": { "$lte": [{ "$ifNull": ["$expires_at", DateTime::from_millis(0)] }, "$$NOW"] } },
                vec![doc! { "$set": {
                    "owner": owner,
                    "token": i64_of(token, "token")?,
                    "expires_at": { "$add": ["$$NOW", lease_ms] },
                } }],
            )
            .upsert(true)
            .await;
        match r {
            Ok(_) => Ok(Some(token)),
            Err(e) if is_duplicate_key(&e) => Ok(None),
            Err(e) => Err(unavailable("take lease", e)),
        }
    }

    async fn find_all<T>(
        &self,
        coll: Collection<Document>,
        filter: Document,
        limit: usize,
        what: &str,
        decode: impl Fn(&Document) -> Result<T>,
    ) -> Result<Vec<T>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cursor = coll
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(|e| unavailable(what, e))?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(|e| unavailable(what, e))? {
            let d = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))?;
            out.push(decode(&d)?);
        }
        Ok(out)
    }
}

/// The operations, without the time limit that [`Store`] adds.
impl MongoStore {
    async fn op_append(&self, ev: NewEvent) -> Result<Appended> {
        let usage = self.op_usage().await?;
        if !fits(usage.events, usage.bytes, ev.body.len(), &self.bounds) {
            // A replay is still a duplicate, full or not.
            if let Some(rk) = ev.replay_key.as_deref() {
                let seen = self
                    .replay()
                    .find_one(doc! { "_id": rk })
                    .await
                    .map_err(|e| unavailable("read replay key", e))?;
                if let Some(seen) = seen {
                    let seen_ms = u64_field(&seen, "received_ms", "replay key")?;
                    if ev.received_ms.saturating_sub(seen_ms) < REPLAY_RETENTION_MS {
                        return Ok(Appended::Duplicate(u64_field(&seen, "seq", "replay key")?));
                    }
                }
            }
            return Err(StoreError::Full(full_message(&self.bounds)));
        }
        // Before the replay key is taken, so a failure here leaves nothing behind.
        if let Some(key) = ev.key.as_deref() {
            self.adopt_legacy_message(key).await?;
        }
        let seq = self.next_seq().await?;
        if let Some(rk) = ev.replay_key.as_deref() {
            if let Some(first) = self.record_replay(rk, seq, ev.received_ms).await? {
                return Ok(Appended::Duplicate(first));
            }
        }
        let key = ev.key.clone().unwrap_or_else(|| format!("event:{seq}"));
        if let Err(e) = self.events().insert_one(event_doc(seq, &key, &ev)?).await {
            // Not stored: free the replay key so a retry is not refused.
            if let Some(rk) = ev.replay_key.as_deref() {
                let filter = doc! { "_id": rk, "seq": i64_of(seq, "seq")? };
                if let Err(e2) = self.replay().delete_one(filter).await {
                    tracing::warn!(error = %e2, seq, "could not free the replay key of a failed append");
                }
            }
            return Err(unavailable("insert event", e));
        }
        self.prune_retained(ev.received_ms).await;
        Ok(Appended::Queued(seq))
    }

    async fn op_claim(&self, owner: &str, lease: Duration, max_keys: usize) -> Result<Vec<Claim>> {
        if max_keys == 0 {
            return Ok(Vec::new());
        }
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        // Keys currently held (by the server's clock), so we do not even try them.
        let held: std::collections::HashSet<String> = self
            .find_all(self.leases(), doc! { "$expr": { "$gt": [{ "$ifNull": ["$expires_at", DateTime::from_millis(0)] }, "$$NOW"] } }, usize::MAX, "read leases", |d| {
                str_field(d, "_id", "lease")
            })
            .await?
            .into_iter()
            .collect();
        let mut cursor = self
            .events()
            .aggregate(vec![
                doc! { "$group": { "_id": "$key", "first": { "$min": "$_id" } } },
                doc! { "$sort": { "first": 1 } },
            ])
            .await
            .map_err(|e| unavailable("list pending keys", e))?;
        let mut claims = Vec::new();
        while claims.len() < max_keys
            && cursor
                .advance()
                .await
                .map_err(|e| unavailable("list pending keys", e))?
        {
            let d = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(format!("pending key: {e}")))?;
            let key = str_field(&d, "_id", "pending key")?;
            if held.contains(&key) {
                continue;
            }
            let Some(token) = self.try_lease(&key, owner, lease_ms).await? else {
                continue;
            };
            let events = match self.events_upto(&key, Seq::MAX).await {
                Err(StoreError::Corrupt(why)) => {
                    // One undecodable document must not stop every claim:
                    // move it aside and deliver the other keys.
                    tracing::error!(key = %key, reason = %why, "stored event cannot be decoded; moved to the dead letters");
                    self.set_aside_undecodable(&key).await?;
                    self.drop_lease(&key, owner, token).await?;
                    continue;
                }
                other => other?,
            };
            if events.is_empty() {
                self.drop_lease(&key, owner, token).await?;
                continue;
            }
            claims.push(Claim { key, events, token });
        }
        Ok(claims)
    }

    /// Move every event document of `key` that does not decode to the dead
    /// letters, its raw BSON as the body and the decoder's reason.
    async fn set_aside_undecodable(&self, key: &str) -> Result<()> {
        let docs = self
            .find_all(
                self.events(),
                doc! { "key": key },
                usize::MAX,
                "read events",
                |d| Ok(d.clone()),
            )
            .await?;
        for d in docs {
            let Err(StoreError::Corrupt(why)) = decode_event(&d) else {
                continue;
            };
            let Some(id) = d.get("_id").cloned() else {
                continue;
            };
            let raw = mongodb::bson::to_vec(&d).unwrap_or_default();
            let dead = doc! {
                "_id": id.clone(),
                "key": key,
                "event": "corrupt",
                "action": "",
                "received_ms": 0i64,
                "body": Binary { subtype: BinarySubtype::Generic, bytes: raw },
                "reason": format!("stored event could not be decoded: {why}"),
                "failed_ms": i64_of(super::now_ms(), "failed_ms")?,
            };
            self.dead()
                .replace_one(doc! { "_id": id.clone() }, dead)
                .upsert(true)
                .await
                .map_err(|e| unavailable("insert dead letter", e))?;
            self.events()
                .delete_one(doc! { "_id": id })
                .await
                .map_err(|e| unavailable("delete corrupt event", e))?;
        }
        Ok(())
    }

    /// `Fenced` unless `owner` holds the lease `token` on `key`.
    async fn check_lease(&self, key: &str, owner: &str, token: u64) -> Result<()> {
        let filter = doc! { "_id": key, "owner": owner, "token": i64_of(token, "token")? };
        match self
            .leases()
            .find_one(filter)
            .await
            .map_err(|e| unavailable("read lease", e))?
        {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced(format!(
                "{key}: lease {token} of {owner} is not held"
            ))),
        }
    }

    async fn op_complete(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        done: Completion,
    ) -> Result<()> {
        self.check_lease(key, owner, token).await?;
        for (dest, m) in &done.messages {
            self.put_fenced_message(key, dest, token, m).await?;
        }
        if let Some((change_key, rec)) = &done.outcome {
            self.put_outcome(change_key, rec).await?;
        }
        self.delete_events(key, upto).await?;
        self.drop_lease(key, owner, token).await
    }

    /// Store `rec` for `change_key` unless the stored record is from the
    /// same or a newer build.
    async fn put_outcome(&self, change_key: &str, rec: &OutcomeRecord) -> Result<()> {
        let (n, c) = (rec.number, rec.created);
        let filter = doc! { "_id": change_key, "$or": [
            { "number": { "$lt": n } },
            { "number": n, "created": { "$lt": c } },
        ] };
        let set = doc! { "$set": {
            "passing": rec.passing,
            "number": n,
            "created": c,
            "at_ms": i64_of(rec.at_ms, "at_ms")?,
        } };
        match self.outcomes().update_one(filter, set).upsert(true).await {
            Ok(_) => Ok(()),
            // The stored record is not older: it stays.
            Err(e) if is_duplicate_key(&e) => Ok(()),
            Err(e) => Err(unavailable("store outcome", e)),
        }
    }

    /// Store `m` for `key` at `dest` unless a newer lease's holder already wrote one.
    async fn put_fenced_message(
        &self,
        key: &str,
        dest: &str,
        token: u64,
        m: &MessageRef,
    ) -> Result<()> {
        let t = i64_of(token, "token")?;
        let mut d = message_doc(key, dest, m)?;
        d.insert("fence", t);
        // Its time, for retention.
        d.insert("updated_ms", i64_of(crate::store::now_ms(), "updated_ms")?);
        let filter = doc! { "_id": message_id(key, dest), "$or": [ { "fence": { "$exists": false } }, { "fence": { "$lte": t } } ] };
        match self.messages().replace_one(filter, d).upsert(true).await {
            Ok(_) => Ok(()),
            Err(e) if is_duplicate_key(&e) => Err(StoreError::Fenced(format!(
                "{key}: a newer lease than {token} already stored the message"
            ))),
            Err(e) => Err(unavailable("store message", e)),
        }
    }

    async fn op_release(&self, key: &str, owner: &str, token: u64) -> Result<()> {
        self.drop_lease(key, owner, token).await
    }

    async fn op_renew(&self, key: &str, owner: &str, token: u64, lease: Duration) -> Result<()> {
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let r = self
            .leases()
            .update_one(
                doc! { "_id": key, "owner": owner, "token": i64_of(token, "token")? },
                vec![doc! { "$set": { "expires_at": { "$add": ["$$NOW", lease_ms] } } }],
            )
            .await
            .map_err(|e| unavailable("renew lease", e))?;
        if r.matched_count == 0 {
            return Err(StoreError::Fenced(format!(
                "{key}: lease {token} of {owner} is not held"
            )));
        }
        Ok(())
    }

    async fn op_dead_letter(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        reason: &str,
        now_ms: u64,
    ) -> Result<()> {
        self.check_lease(key, owner, token).await?;
        // Delete exactly the events that were copied aside: an append whose
        // lower seq only became visible after the read stays pending instead
        // of vanishing without a dead letter.
        let mut moved = Vec::new();
        for ev in self.events_upto(key, upto).await? {
            let mut d = event_doc(
                ev.seq,
                &ev.key,
                &NewEvent {
                    key: None,
                    event: ev.event.clone(),
                    action: ev.action.clone(),
                    received_ms: ev.received_ms,
                    replay_key: None,
                    body: ev.body.clone(),
                },
            )?;
            d.insert("reason", reason);
            d.insert("failed_ms", i64_of(now_ms, "failed_ms")?);
            let id = i64_of(ev.seq, "seq")?;
            self.dead()
                .replace_one(doc! { "_id": id }, d)
                .upsert(true)
                .await
                .map_err(|e| unavailable("insert dead letter", e))?;
            moved.push(id);
        }
        if !moved.is_empty() {
            self.events()
                .delete_many(doc! { "_id": { "$in": moved } })
                .await
                .map_err(|e| unavailable("delete dead-lettered events", e))?;
        }
        self.drop_lease(key, owner, token).await
    }

    async fn op_message(&self, key: &str, dest: &str) -> Result<Option<MessageRef>> {
        let found = self
            .messages()
            .find_one(doc! { "_id": message_id(key, dest) })
            .await
            .map_err(|e| unavailable("read message", e))?;
        found.map(|d| decode_message(key, &d)).transpose()
    }

    async fn op_messages(&self, key: &str) -> Result<Vec<(String, MessageRef)>> {
        let mut cursor = self
            .messages()
            .find(doc! { "_id.k": key })
            .sort(doc! { "_id.k": 1, "_id.d": 1 })
            .await
            .map_err(|e| unavailable("read messages", e))?;
        let mut out = Vec::new();
        while cursor
            .advance()
            .await
            .map_err(|e| unavailable("read messages", e))?
        {
            let d = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(format!("message for {key}: {e}")))?;
            let dest = d
                .get_document("_id")
                .ok()
                .and_then(|id| id.get_str("d").ok())
                .ok_or_else(|| StoreError::Corrupt(format!("message for {key}: _id.d missing")))?
                .to_owned();
            out.push((dest, decode_message(key, &d)?));
        }
        Ok(out)
    }

    async fn op_outcome(&self, change_key: &str) -> Result<Option<OutcomeRecord>> {
        let found = self
            .outcomes()
            .find_one(doc! { "_id": change_key })
            .await
            .map_err(|e| unavailable("read outcome", e))?;
        found
            .map(|d| decode_outcome(&d, "outcome record"))
            .transpose()
    }

    /// Piggy-backed on an append, at most every [`PRUNE_INTERVAL_MS`]: remove
    /// messages not updated within their retention (documents without
    /// `updated_ms` are kept) and dead letters past theirs. A failure only
    /// logs: the append itself is done.
    async fn prune_retained(&self, now_ms: u64) {
        use std::sync::atomic::Ordering;
        let last = self.last_prune_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < PRUNE_INTERVAL_MS
            || self
                .last_prune_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let at = |ms: u64| i64::try_from(ms).unwrap_or(i64::MAX);
        let messages = at(now_ms.saturating_sub(self.bounds.message_retention_ms));
        if let Err(e) = self
            .messages()
            .delete_many(doc! { "updated_ms": { "$lt": messages } })
            .await
        {
            tracing::warn!(error = %e, "could not prune old messages");
        }
        if let Err(e) = self
            .outcomes()
            .delete_many(doc! { "at_ms": { "$lt": messages } })
            .await
        {
            tracing::warn!(error = %e, "could not prune old outcome records");
        }
        let dead = at(now_ms.saturating_sub(self.bounds.dead_letter_retention_ms));
        if let Err(e) = self
            .dead()
            .delete_many(doc! { "failed_ms": { "$lt": dead } })
            .await
        {
            tracing::warn!(error = %e, "could not prune old dead letters");
        }
    }

    async fn op_put_message(
        &self,
        key: &str,
        dest: &str,
        owner: &str,
        token: u64,
        message: MessageRef,
    ) -> Result<()> {
        self.check_lease(key, owner, token).await?;
        self.put_fenced_message(key, dest, token, &message).await
    }

    async fn op_pending(&self, limit: usize) -> Result<Vec<Event>> {
        self.find_all(
            self.events(),
            doc! {},
            limit,
            "read pending events",
            decode_event,
        )
        .await
    }

    async fn op_dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        self.find_all(self.dead(), doc! {}, limit, "read dead letters", |d| {
            let event = decode_event(d)?;
            let what = format!("dead letter {}", event.seq);
            Ok(DeadLetter {
                reason: str_field(d, "reason", &what)?,
                failed_ms: u64_field(d, "failed_ms", &what)?,
                event,
            })
        })
        .await
    }

    /// The selected dead letters as documents (`{_id}` or all, oldest first).
    async fn selected_dead(&self, which: DeadSelection) -> Result<Vec<Document>> {
        let filter = match which {
            DeadSelection::One(seq) => doc! { "_id": i64_of(seq, "seq")? },
            DeadSelection::All => doc! {},
        };
        self.find_all(self.dead(), filter, usize::MAX, "read dead letters", |d| {
            Ok(d.clone())
        })
        .await
    }

    /// Each selected dead letter becomes a new event (fresh seq) and is then
    /// deleted: a crash between the two repeats a delivery, never loses one.
    async fn op_retry_dead(&self, which: DeadSelection) -> Result<u64> {
        let mut events = Vec::new();
        for d in self.selected_dead(which).await? {
            match decode_event(&d) {
                Ok(e) => events.push(e),
                Err(e) if which == DeadSelection::All => {
                    tracing::warn!(error = %e, "dead letter cannot be decoded; left for purge");
                }
                Err(e) => return Err(e),
            }
        }
        let usage = self.op_usage().await?;
        let more: u64 = events.iter().map(|e| e.body.len() as u64).sum();
        if !fits_all(
            usage.events,
            usage.bytes,
            events.len() as u64,
            more,
            &self.bounds,
        ) {
            return Err(StoreError::Full(full_message(&self.bounds)));
        }
        for e in &events {
            let seq = self.next_seq().await?;
            let ev = NewEvent {
                key: None,
                event: e.event.clone(),
                action: e.action.clone(),
                received_ms: e.received_ms,
                replay_key: None,
                body: e.body.clone(),
            };
            self.events()
                .insert_one(event_doc(seq, &e.key, &ev)?)
                .await
                .map_err(|err| unavailable("insert retried event", err))?;
            self.dead()
                .delete_one(doc! { "_id": i64_of(e.seq, "seq")? })
                .await
                .map_err(|err| unavailable("delete retried dead letter", err))?;
        }
        Ok(events.len() as u64)
    }

    async fn op_purge_dead(&self, which: DeadSelection) -> Result<u64> {
        let filter = match which {
            DeadSelection::One(seq) => doc! { "_id": i64_of(seq, "seq")? },
            DeadSelection::All => doc! {},
        };
        let done = self
            .dead()
            .delete_many(filter)
            .await
            .map_err(|e| unavailable("purge dead letters", e))?;
        Ok(done.deleted_count)
    }

    async fn op_stats(&self) -> Result<Stats> {
        let pending = self
            .events()
            .count_documents(doc! {})
            .await
            .map_err(|e| unavailable("count events", e))?;
        let dead_letters = self
            .dead()
            .count_documents(doc! {})
            .await
            .map_err(|e| unavailable("count dead letters", e))?;
        Ok(Stats {
            pending,
            dead_letters,
        })
    }

    /// Pending events and their body bytes. The count is an index count; the
    /// bytes are summed by the server (events written before `size` existed
    /// count as 0).
    async fn op_usage(&self) -> Result<Usage> {
        let events = self
            .events()
            .count_documents(doc! {})
            .await
            .map_err(|e| unavailable("count events", e))?;
        let mut cursor = self
            .events()
            .aggregate(vec![
                doc! { "$group": { "_id": Bson::Null, "bytes": { "$sum": "$size" } } },
            ])
            .await
            .map_err(|e| unavailable("sum event sizes", e))?;
        let mut bytes = 0u64;
        if cursor
            .advance()
            .await
            .map_err(|e| unavailable("sum event sizes", e))?
        {
            let d = cursor
                .deserialize_current()
                .map_err(|e| StoreError::Corrupt(format!("event sizes: {e}")))?;
            bytes = match d.get("bytes") {
                Some(Bson::Int64(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Int32(n)) => u64::try_from(*n).unwrap_or(0),
                Some(Bson::Double(n)) if *n >= 0.0 => *n as u64,
                _ => 0,
            };
        }
        Ok(Usage::of(events, bytes, &self.bounds))
    }

    async fn op_probe(&self) -> Result<()> {
        self.write_probe()
            .await
            .map_err(|e| unavailable("probe write", e))
    }
}

impl Store for MongoStore {
    async fn append(&self, ev: NewEvent) -> Result<Appended> {
        within("append", self.op_append(ev)).await
    }

    async fn claim(&self, owner: &str, lease: Duration, max_keys: usize) -> Result<Vec<Claim>> {
        within("claim", self.op_claim(owner, lease, max_keys)).await
    }

    async fn complete(
        &self,
        key: &str,
        owner: &str,
        token: u64,
        upto: Seq,
        done: Completion,
    ) -> Result<()> {
        within("complete", self.op_complete(key, owner, token, upto, done)).await
    }

    async fn release(&self, key: &str, owner: &str, token: u64) -> Result<()> {
        within("release", self.op_release(key, owner, token)).await
    }

    async fn renew(&self, key: &str, owner: &str, token: u64, lease: Duration) -> Result<()> {
        within("renew", self.op_renew(key, owner, token, lease)).await
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
        within(
            "dead_letter",
            self.op_dead_letter(key, owner, token, upto, reason, now_ms),
        )
        .await
    }

    async fn message(&self, key: &str, dest: &str) -> Result<Option<MessageRef>> {
        within("message", self.op_message(key, dest)).await
    }

    async fn messages(&self, key: &str) -> Result<Vec<(String, MessageRef)>> {
        within("messages", self.op_messages(key)).await
    }

    async fn put_message(
        &self,
        key: &str,
        dest: &str,
        owner: &str,
        token: u64,
        message: MessageRef,
    ) -> Result<()> {
        within(
            "put_message",
            self.op_put_message(key, dest, owner, token, message),
        )
        .await
    }

    async fn import_message(&self, key: &str, dest: &str, message: MessageRef) -> Result<bool> {
        within(
            "import_message",
            self.insert_message_if_absent(key, dest, &message),
        )
        .await
    }

    async fn outcome(&self, change_key: &str) -> Result<Option<OutcomeRecord>> {
        within("outcome", self.op_outcome(change_key)).await
    }

    async fn pending(&self, limit: usize) -> Result<Vec<Event>> {
        within("pending", self.op_pending(limit)).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        within("dead_letters", self.op_dead_letters(limit)).await
    }

    async fn retry_dead(&self, which: DeadSelection) -> Result<u64> {
        within("retry_dead", self.op_retry_dead(which)).await
    }

    async fn purge_dead(&self, which: DeadSelection) -> Result<u64> {
        within("purge_dead", self.op_purge_dead(which)).await
    }

    async fn stats(&self) -> Result<Stats> {
        within("stats", self.op_stats()).await
    }

    async fn usage(&self) -> Result<Usage> {
        within("usage", self.op_usage()).await
    }

    async fn probe(&self) -> Result<()> {
        within("probe", self.op_probe()).await
    }
}

/// Bound one store operation by [`OP_TIMEOUT`]: a server that accepts but
/// never answers turns into `Unavailable`, not a hung webhook or relay.
async fn within<T>(what: &str, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    within_for(OP_TIMEOUT, what, op).await
}

async fn within_for<T>(
    limit: Duration,
    what: &str,
    op: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, op).await {
        Ok(r) => r,
        Err(_) => Err(StoreError::Unavailable(format!(
            "MongoDB {what} took longer than {limit:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_checked_before_connecting() {
        for bad in ["", "a.b", "a b", "a/b", "a$b", "a\"b", &"x".repeat(64)] {
            assert!(
                matches!(check_db_name(bad), Err(StoreError::Config(_))),
                "{bad:?} must be refused"
            );
        }
        for good in ["drone", "drone_discord", "Drone-Discord-2"] {
            assert!(check_db_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn events_round_trip_through_bson_and_bad_documents_are_corrupt() {
        let ev = NewEvent {
            key: None,
            event: "build".into(),
            action: "created".into(),
            received_ms: 1_700_000_000_123,
            replay_key: Some("sig".into()),
            body: vec![0, 1, 255],
        };
        let d = event_doc(7, "event:7", &ev).unwrap();
        let back = decode_event(&d).unwrap();
        assert_eq!(
            back,
            Event {
                seq: 7,
                key: "event:7".into(),
                event: "build".into(),
                action: "created".into(),
                received_ms: 1_700_000_000_123,
                body: vec![0, 1, 255],
            }
        );
        let mut bad = d.clone();
        bad.insert("received_ms", -1i64);
        assert!(matches!(decode_event(&bad), Err(StoreError::Corrupt(m)) if m.contains("event 7")));
        let mut bad = d;
        bad.insert("body", "text");
        assert!(matches!(decode_event(&bad), Err(StoreError::Corrupt(m)) if m.contains("body")));
        assert!(matches!(
            i64_of(u64::MAX, "seq"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn messages_round_trip_through_bson() {
        let m = MessageRef {
            channel_id: "1".into(),
            message_id: "2".into(),
            status: "success".into(),
            ..MessageRef::default()
        };
        assert_eq!(
            decode_message("build:1", &message_doc("build:1", "channel:1", &m).unwrap()).unwrap(),
            m
        );
        let threaded = MessageRef {
            thread_id: Some("3".into()),
            pinged: true,
            ..m.clone()
        };
        let d = message_doc("build:1", "webhook:ops", &threaded).unwrap();
        assert_eq!(decode_message("build:1", &d).unwrap(), threaded);
        assert_eq!(
            d.get_document("_id").unwrap(),
            &doc! { "k": "build:1", "d": "webhook:ops" }
        );
        assert!(
            matches!(decode_message("build:1", &doc! {}), Err(StoreError::Corrupt(m)) if m.contains("build:1"))
        );
    }

    /// Releases up to 0.1.0 stored an `updated_ms` (Int64) that nothing ever
    /// read; their documents must still decode.
    #[test]
    fn a_message_document_written_by_0_1_0_still_decodes() {
        let old = doc! {
            "_id": "build:2088",
            "channel_id": "111",
            "message_id": "1100000000000000001",
            "status": "success",
            "updated_ms": 1_700_000_000_123i64,
        };
        let m = MessageRef {
            channel_id: "111".into(),
            message_id: "1100000000000000001".into(),
            status: "success".into(),
            ..MessageRef::default()
        };
        assert_eq!(decode_message("build:2088", &old).unwrap(), m);
    }

    #[test]
    fn passwords_never_survive_into_error_text() {
        let uri = "mongodb://root:hunter2@db:27017/?authSource=admin";
        let text = format!("failed to connect to {uri}; password hunter2 rejected");
        let shown = redact_in(&text, uri);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("root:***@db:27017"), "{shown}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_one_config_line_without_the_password() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let uri = "mongodb://root:hunter2@127.0.0.1:1/?authSource=admin&serverSelectionTimeoutMS=200&directConnection=true";
        let err = MongoStore::connect(uri, "drone")
            .await
            .expect_err("nothing listens on port 1");
        let StoreError::Config(m) = err else {
            panic!("expected Config, got {err}")
        };
        assert!(
            m.starts_with("cannot reach MongoDB at mongodb://root:***@127.0.0.1:1"),
            "{m}"
        );
        assert!(!m.contains("hunter2"), "{m}");
        assert!(!m.contains('\n'), "one line: {m}");
    }

    #[tokio::test]
    async fn an_operation_that_never_finishes_is_unavailable() {
        let r: Result<()> =
            within_for(Duration::from_millis(50), "append", std::future::pending()).await;
        match r {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("append took longer"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        let r = within_for(Duration::from_secs(60), "probe", async { Ok(7) }).await;
        assert_eq!(r.ok(), Some(7));
    }

    /// A peer that accepts TCP but never speaks: start-up gives up with one
    /// Config line instead of hanging.
    #[tokio::test]
    async fn a_server_that_never_answers_fails_start_up() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let uri = format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=300&connectTimeoutMS=300&directConnection=true");
        let err = MongoStore::connect(&uri, "drone")
            .await
            .expect_err("a silent peer is not MongoDB");
        assert!(
            matches!(err, StoreError::Config(ref m) if m.contains("cannot reach")),
            "{err}"
        );
        silent.abort();
    }

    #[tokio::test]
    async fn a_malformed_uri_is_a_config_error_without_the_password() {
        let err = MongoStore::connect("mongodb://root:hunter2@", "drone")
            .await
            .expect_err("no host");
        let StoreError::Config(m) = err else {
            panic!("expected Config, got {err}")
        };
        assert!(!m.contains("hunter2"), "{m}");
        let err = MongoStore::connect("http://x", "drone")
            .await
            .expect_err("wrong scheme");
        assert!(matches!(err, StoreError::Config(_)), "{err}");
    }
}
