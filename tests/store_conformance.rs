//! Runs the store conformance suite (`drone_discord::store::conformance`)
//! against every backend: the embedded store always, in a temporary
//! directory per case; MongoDB (feature `mongodb`) when `MONGODB_URI` is set.
use drone_discord::store::conformance::{self, Backend};
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::Result;

/// One temporary directory per case; `open(name)` opens `<tmp>/<name>`.
struct Embedded {
    dir: tempfile::TempDir,
}

impl Backend for Embedded {
    type S = EmbeddedStore;
    async fn open(&self, name: &str) -> Result<EmbeddedStore> {
        EmbeddedStore::open(&self.dir.path().join(name))
    }
}

fn embedded() -> Embedded {
    Embedded { dir: tempfile::tempdir().expect("create a temporary directory") }
}

macro_rules! embedded_cases {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    drone_discord::store::conformance::$case(&super::embedded()).await;
                }
            )*
        }
    };
}

embedded_cases!(
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
);

/// `run_all` in one store directory: proves the cases do not depend on
/// running alone (each still uses its own name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_all() {
    conformance::run_all(&embedded()).await;
}
