//! Runs the store conformance suite (`drone_discord::store::conformance`)
//! against every backend: the embedded store always, in a temporary
//! directory per case; MongoDB (feature `mongodb`) when `MONGODB_URI` is set.
use drone_discord::store::conformance::{self, Backend};
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::{Bounds, Result};

/// One temporary directory per case; `open(name)` opens `<tmp>/<name>`.
struct Embedded {
    dir: tempfile::TempDir,
}

impl Backend for Embedded {
    type S = EmbeddedStore;
    async fn open(&self, name: &str) -> Result<EmbeddedStore> {
        EmbeddedStore::open(&self.dir.path().join(name))
    }
    async fn open_bounded(&self, name: &str, bounds: Bounds) -> Result<EmbeddedStore> {
        EmbeddedStore::open_bounded(&self.dir.path().join(name), bounds)
    }
}

fn embedded() -> Embedded {
    Embedded {
        dir: tempfile::tempdir().expect("create a temporary directory"),
    }
}

/// One test per conformance case, for the embedded store and (feature
/// `mongodb`) for MongoDB.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    drone_discord::store::conformance::$case(&super::embedded()).await;
                }
            )*
        }

        #[cfg(feature = "mongodb")]
        mod mongo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(b) = super::mongo_backend::from_env() else { return };
                    drone_discord::store::conformance::$case(&b).await;
                    b.cleanup(stringify!($case)).await;
                }
            )*
        }
    };
}

/// MongoDB, when `MONGODB_URI` points at a server: every case gets a fresh
/// database named `<run prefix>_<case>`, dropped when the case passes.
#[cfg(feature = "mongodb")]
mod mongo_backend {
    use drone_discord::store::conformance::Backend;
    use drone_discord::store::mongo::MongoStore;
    use drone_discord::store::{Bounds, Result};

    pub struct Mongo {
        uri: String,
        prefix: String,
    }

    pub fn from_env() -> Option<Mongo> {
        match std::env::var("MONGODB_URI") {
            Ok(uri) if !uri.is_empty() => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                Some(Mongo {
                    uri,
                    prefix: format!("ddt{}x{nanos:08x}", std::process::id()),
                })
            }
            _ => {
                eprintln!("skipping MongoDB conformance: MONGODB_URI not set");
                None
            }
        }
    }

    impl Mongo {
        fn db(&self, name: &str) -> String {
            // MongoDB database names stay below 64 bytes.
            let mut db = format!("{}_{name}", self.prefix);
            db.truncate(63);
            db
        }

        pub async fn cleanup(&self, name: &str) {
            if let Ok(s) = MongoStore::connect(&self.uri, &self.db(name)).await {
                let _ = s.drop_database().await;
            }
        }
    }

    impl Backend for Mongo {
        type S = MongoStore;
        async fn open(&self, name: &str) -> Result<MongoStore> {
            MongoStore::connect(&self.uri, &self.db(name)).await
        }
        async fn open_bounded(&self, name: &str, bounds: Bounds) -> Result<MongoStore> {
            Ok(MongoStore::connect(&self.uri, &self.db(name))
                .await?
                .with_bounds(bounds))
        }
    }
}

cases!(
    reopen_keeps_everything,
    unkeyed_events_get_their_own_key,
    queue_order_per_key,
    claim_follows_oldest_pending_event,
    claim_is_exclusive_until_released,
    leases_expire_by_now_ms,
    stale_holders_are_fenced,
    coalescing_and_partial_complete,
    message_map,
    messages_per_destination,
    outcome_records_are_conditional,
    put_message_is_fenced,
    renew_extends_a_lease,
    uncertain_creates_are_kept,
    dead_letters,
    dead_letters_are_retried_and_purged,
    replay_dedupe,
    concurrent_writers,
    stats_and_limits,
    probe_writes,
    claims_are_bounded,
    a_full_queue_refuses_and_keeps_what_it_has,
);

/// `run_all` in one store directory: proves the cases do not depend on
/// running alone (each still uses its own name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_all() {
    conformance::run_all(&embedded()).await;
}

/// The import of the old service's `build` collection, read over the wire
/// (MongoDB when `MONGODB_URI` is set), into the embedded store.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_migrate_imports_the_old_build_collection() {
    use drone_discord::store::mongo::MongoStore;
    use drone_discord::store::Store;
    use mongodb::bson::doc;
    let Ok(uri) = std::env::var("MONGODB_URI") else {
        eprintln!("skipping MongoDB migration test: MONGODB_URI not set");
        return;
    };
    let db = format!("ddt{}_old_service", std::process::id());
    let old = MongoStore::connect(&uri, &db).await.expect("connect");
    old.collection("build")
        .insert_many(vec![
            doc! { "id": 2088i64, "status": "running", "messageId": "1100000000000000001", "data": { "updated": 1_621_129_500i64 } },
            doc! { "id": 2089i64, "status": "success", "messageId": "1100000000000000002", "data": {} },
            doc! { "id": 2090i64, "status": "pending" },
        ])
        .await
        .expect("seed the old collection");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("open");
    let first = drone_discord::migrate::import_from(&uri, &db, &store, "42")
        .await
        .expect("import");
    assert_eq!(
        (
            first.read,
            first.imported,
            first.already_present,
            first.skipped
        ),
        (3, 2, 0, 1),
        "{first}"
    );
    let m = store
        .message("build:2088", "channel:42")
        .await
        .expect("read")
        .expect("imported");
    assert_eq!(
        (
            m.channel_id.as_str(),
            m.message_id.as_str(),
            m.status.as_str()
        ),
        ("42", "1100000000000000001", "running")
    );
    let again = drone_discord::migrate::import_from(&uri, &db, &store, "42")
        .await
        .expect("import again");
    assert_eq!(
        (
            again.read,
            again.imported,
            again.already_present,
            again.skipped
        ),
        (3, 0, 2, 1),
        "{again}"
    );
    let _ = old.drop_database().await;
}

/// A MongoDB database as 0.1.0 left it (no `meta` schema document, keys
/// `build:<id>`, leases with wall-clock `expires_ms`) is migrated on connect:
/// pending events take their server's key, their message follows them, a
/// running build's message waits for its next webhook, leases are dropped.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_database_written_by_0_1_0_is_migrated_on_connect() {
    use drone_discord::store::mongo::MongoStore;
    use drone_discord::store::Store;
    use mongodb::bson::{doc, spec::BinarySubtype, Binary};
    let Ok(uri) = std::env::var("MONGODB_URI") else {
        eprintln!("skipping MongoDB schema migration test: MONGODB_URI not set");
        return;
    };
    let db = format!("ddt{}_schema_0_1_0", std::process::id());
    let old = MongoStore::connect_read_only(&uri, &db)
        .await
        .expect("connect");
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/test/fixtures/drone/build_updated.json"
    ))
    .expect("fixture");
    old.collection("events")
        .insert_one(doc! { "_id": 2i64, "key": "build:2088", "event": "build", "action": "updated", "received_ms": 1i64,
            "body": Binary { subtype: BinarySubtype::Generic, bytes: body } })
        .await
        .expect("seed events");
    old.collection("counters")
        .insert_one(doc! { "_id": "seq", "n": 2i64 })
        .await
        .expect("seed counter");
    for (id, mid, status) in [
        ("build:2088", "m2088", "pending"),
        ("build:2087", "m2087", "running"),
        ("build:2000", "m2000", "success"),
    ] {
        old.collection("messages")
            .insert_one(doc! { "_id": id, "channel_id": "111", "message_id": mid, "status": status, "updated_ms": 1i64 })
            .await
            .expect("seed messages");
    }
    old.collection("leases")
        .insert_one(doc! { "_id": "build:2088", "owner": "old", "expires_ms": i64::MAX })
        .await
        .expect("seed lease");
    let s = MongoStore::connect(&uri, &db)
        .await
        .expect("connect and migrate");
    let k = "build:drone.kiwi-labs.net:35:2088";
    let pending = s.pending(10).await.expect("pending");
    assert_eq!(
        pending.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        vec![k]
    );
    assert_eq!(
        s.message(k, "channel:111")
            .await
            .expect("read")
            .map(|m| m.message_id),
        Some("m2088".into())
    );
    assert_eq!(
        s.message("build:2088", "channel:111").await.expect("read"),
        None
    );
    assert_eq!(
        s.message("build:2087", "channel:111")
            .await
            .expect("read")
            .map(|m| m.status),
        Some("running".into())
    );
    let meta = s
        .collection("meta")
        .find_one(doc! { "_id": "schema" })
        .await
        .expect("read meta")
        .expect("schema recorded");
    assert_eq!(
        meta.get_i64("version").ok(),
        Some(drone_discord::store::schema::CURRENT as i64)
    );
    assert_eq!(
        s.collection("leases")
            .count_documents(doc! {})
            .await
            .expect("count"),
        0,
        "old leases dropped"
    );
    drop(s);
    // Connecting again changes nothing.
    let s = MongoStore::connect(&uri, &db).await.expect("reconnect");
    assert_eq!(
        s.message(k, "channel:111")
            .await
            .expect("read")
            .map(|m| m.message_id),
        Some("m2088".into())
    );
    // The running build's next webhook adopts its message; the finished one's never.
    let mut next = drone_discord::store::NewEvent {
        key: Some("build:drone.kiwi-labs.net:35:2087".into()),
        event: "build".into(),
        action: "updated".into(),
        received_ms: 2,
        replay_key: None,
        body: b"{}".to_vec(),
    };
    s.append(next.clone()).await.expect("append");
    assert_eq!(
        s.message("build:drone.kiwi-labs.net:35:2087", "channel:111")
            .await
            .expect("read")
            .map(|m| m.message_id),
        Some("m2087".into())
    );
    next.key = Some("build:drone.kiwi-labs.net:35:2000".into());
    s.append(next).await.expect("append");
    assert_eq!(
        s.message("build:drone.kiwi-labs.net:35:2000", "channel:111")
            .await
            .expect("read"),
        None
    );
    let _ = s.drop_database().await;
}

/// MongoDB: one event document that does not decode is moved to the dead
/// letters by a claim, and every other key is claimed.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_a_corrupt_event_is_moved_aside_and_every_other_key_is_claimed() {
    use drone_discord::store::mongo::MongoStore;
    use drone_discord::store::Store;
    use mongodb::bson::doc;
    let Ok(uri) = std::env::var("MONGODB_URI") else {
        eprintln!("skipping MongoDB corrupt-record test: MONGODB_URI not set");
        return;
    };
    let db = format!("ddt{}_corrupt", std::process::id());
    let s = MongoStore::connect(&uri, &db).await.expect("connect");
    for key in ["A", "B"] {
        let ev = drone_discord::store::NewEvent {
            key: Some(key.into()),
            event: "build".into(),
            action: "updated".into(),
            received_ms: 1,
            replay_key: None,
            body: b"{}".to_vec(),
        };
        s.append(ev).await.expect("append");
    }
    s.collection("events")
        .insert_one(doc! { "_id": 99i64, "key": "C", "body": "not binary" })
        .await
        .expect("seed");
    let c = s
        .claim("w", std::time::Duration::from_secs(60), 10)
        .await
        .expect("claim");
    assert_eq!(
        c.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        vec!["A", "B"]
    );
    let dead = s.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event.key, "C");
    assert!(
        dead[0].reason.contains("could not be decoded"),
        "{}",
        dead[0].reason
    );
    let _ = s.drop_database().await;
}
