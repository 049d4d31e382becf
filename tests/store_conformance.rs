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
    Embedded { dir: tempfile::tempdir().expect("create a temporary directory") }
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
                Some(Mongo { uri, prefix: format!("ddt{}x{nanos:08x}", std::process::id()) })
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
            Ok(MongoStore::connect(&self.uri, &self.db(name)).await?.with_bounds(bounds))
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
    coalescing_and_partial_complete,
    message_map,
    dead_letters,
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
    let first = drone_discord::migrate::import_from(&uri, &db, &store, "42").await.expect("import");
    assert_eq!((first.read, first.imported, first.already_present, first.skipped), (3, 2, 0, 1), "{first}");
    let m = store.message("build:2088").await.expect("read").expect("imported");
    assert_eq!((m.channel_id.as_str(), m.message_id.as_str(), m.status.as_str()), ("42", "1100000000000000001", "running"));
    let again = drone_discord::migrate::import_from(&uri, &db, &store, "42").await.expect("import again");
    assert_eq!((again.read, again.imported, again.already_present, again.skipped), (3, 0, 2, 1), "{again}");
    let _ = old.drop_database().await;
}
