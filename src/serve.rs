//! `drone-discord serve`: starts every task of the data flow in DESIGN.md and
//! stops them in order on SIGTERM/SIGINT.
//!
//! listener (ingest) → store ← relay → Discord; health is fed by all of them
//! and read by `/health`, the presence task and the systemd watchdog.
use crate::config::{Config, StoreConfig};
use crate::discord::rest::{Rest, RestConfig};
use crate::health::{Component, Health, Status};
use crate::http::{self, Limits};
use crate::ingest::Ingest;
use crate::relay::{self, DryRun, RelayConfig};
use crate::shutdown::{self, Shutdown};
use crate::signature::Verifier;
use crate::store::embedded::EmbeddedStore;
use crate::store::Store;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A start-up failure: the setting (if one is to blame) and what went wrong.
#[derive(Debug)]
pub struct StartError {
    pub setting: Option<&'static str>,
    pub message: String,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.setting {
            Some(s) => write!(f, "start-up failed: {s}: {}", self.message),
            None => write!(f, "start-up failed: {}", self.message),
        }
    }
}

impl std::error::Error for StartError {}

fn start_err(setting: Option<&'static str>, message: impl Into<String>) -> StartError {
    StartError { setting, message: message.into() }
}

/// Open the configured store and serve until a signal arrives.
pub async fn serve(cfg: Config) -> Result<(), StartError> {
    match cfg.store.clone() {
        StoreConfig::Embedded { dir } => {
            let store = EmbeddedStore::open(&dir).map_err(|e| start_err(Some("STATE_DIR"), e.to_string()))?;
            run(cfg, Arc::new(store)).await
        }
        #[cfg(feature = "mongodb")]
        StoreConfig::Mongo { uri, database } => {
            let store = crate::store::mongo::MongoStore::connect(uri.expose(), &database)
                .await
                .map_err(|e| start_err(Some("MONGODB_URI"), e.to_string()))?;
            run(cfg, Arc::new(store)).await
        }
        #[cfg(not(feature = "mongodb"))]
        StoreConfig::Mongo { .. } => Err(start_err(Some("MONGODB_URI"), "this build has no MongoDB support")),
    }
}

/// Serve with an open store until SIGTERM/SIGINT.
pub async fn run<S: Store>(cfg: Config, store: Arc<S>) -> Result<(), StartError> {
    let (trigger, shutdown) = shutdown::channel();
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received; shutting down");
        trigger.fire();
    });
    let result = run_until(cfg, store, shutdown).await;
    signals.abort();
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; stop with SIGKILL");
            std::future::pending::<()>().await
        }
    }
}

/// Serve with an open store until `shutdown` fires (tests call this directly).
pub async fn run_until<S: Store>(cfg: Config, store: Arc<S>, shutdown: Shutdown) -> Result<(), StartError> {
    let health = Arc::new(Health::new());
    let wake = Arc::new(Notify::new());

    // Prove the store can write before telling anyone we are ready.
    store.probe().await.map_err(|e| start_err(Some("STATE_DIR"), format!("store cannot write: {e}")))?;
    health.set(Component::Store, Status::ok("writable"));

    let listener = TcpListener::bind(cfg.listen_addr)
        .await
        .map_err(|e| start_err(Some("LISTEN_ADDR"), format!("cannot listen on {}: {e}", cfg.listen_addr)))?;
    let local = listener.local_addr().map_err(|e| start_err(Some("LISTEN_ADDR"), e.to_string()))?;
    health.set(Component::Listener, Status::ok(format!("listening on {local}")));
    tracing::info!(addr = %local, dry_run = cfg.dry_run, version = env!("CARGO_PKG_VERSION"), "listening for Drone webhooks");

    let verifier = Verifier::new(cfg.webhook_secret.expose().as_bytes().to_vec(), cfg.date_window);
    let ingest = Arc::new(Ingest::new(store.clone(), verifier, health.clone(), wake.clone()));
    let limits = Limits { max_body_bytes: cfg.max_body_bytes, ..Limits::default() };
    let server = tokio::spawn(http::serve(listener, ingest, limits, shutdown.clone()));

    let prober = tokio::spawn(probe_store(store.clone(), health.clone(), shutdown.clone()));

    let relay = match &cfg.discord {
        Some(d) => {
            let rest = Rest::new(RestConfig {
                base_url: d.api_base.clone(),
                token: d.token.expose().to_string(),
                extra_ca_file: cfg.extra_ca_file.clone(),
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(30),
            })
            .map_err(|e| start_err(Some("DISCORD_API_BASE_URL"), format!("{e:?}")))?;
            let rc = RelayConfig::new(d.channel_id.clone());
            tokio::spawn(relay::run(rc, store.clone(), Arc::new(rest), health.clone(), wake.clone(), shutdown.clone()))
        }
        None => {
            let rc = RelayConfig::new("dry-run");
            tokio::spawn(relay::run(rc, store.clone(), Arc::new(DryRun::default()), health.clone(), wake.clone(), shutdown.clone()))
        }
    };

    shutdown.wait().await;
    // Order: the listener stops accepting and finishes in-flight requests,
    // then the relay drains, then the store is closed by dropping it.
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "listener stopped with an error"),
        Err(e) => tracing::error!(error = %e, "listener task failed"),
    }
    let _ = relay.await;
    let _ = prober.await;
    tracing::info!("stopped");
    Ok(())
}

/// Every few seconds prove the store can still write; health follows.
async fn probe_store<S: Store>(store: Arc<S>, health: Arc<Health>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = every.tick() => {}
        }
        match tokio::time::timeout(Duration::from_secs(10), store.probe()).await {
            Ok(Ok(())) => health.set(Component::Store, Status::ok("writable")),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store cannot write");
                health.set(Component::Store, Status::failed(e.to_string()));
            }
            Err(_) => health.set(Component::Store, Status::failed("store write probe timed out")),
        }
    }
}
