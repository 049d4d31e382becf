//! The service behind `drone-discord serve`: starts every task of the data
//! flow in ARCHITECTURE.md and stops them in order on SIGTERM/SIGINT.
//!
//! listener (endpoints) → store ← relay → Discord; health is fed by all of them
//! and read by `/health`, the presence task and the systemd watchdog.
use crate::clock::Clock;
use crate::config::{Config, DiscordConfig, StoreConfig};
use crate::discord::gateway::{self, GatewayConfig, Token};
use crate::discord::rest::{Rest, RestError};
use crate::endpoints::Endpoints;
use crate::health::{Component, Health, Status};
use crate::http::{self, ServerLimits};
use crate::presence::{self, Presence};
use crate::preview::Preview;
use crate::relay::{self, DryRun, RelayConfig};
use crate::shutdown::{self, Shutdown};
use crate::signature::Verifier;
use crate::store::embedded::EmbeddedStore;
use crate::store::{Store, StoreError};
use crate::systemd::{self, Notifier};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};

/// A start-up failure: the setting (if one is to blame) and what went wrong.
#[derive(Debug)]
pub struct StartError {
    pub setting: Option<&'static str>,
    pub message: String,
    /// The environment, not the configuration, is at fault (a full disk, an
    /// I/O error): trying again later can succeed. `main` exits 1 for these
    /// and 2 for configuration errors, and the unit restarts only the former.
    pub transient: bool,
}

impl StartError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        if self.transient {
            1
        } else {
            2
        }
    }
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
    StartError {
        setting,
        message: message.into(),
        transient: false,
    }
}

/// A store failure at start-up: bad configuration (exit 2) or a passing
/// condition such as a full disk (exit 1, worth a restart later).
fn store_start_err(setting: &'static str, e: StoreError) -> StartError {
    let transient = matches!(e, StoreError::Unavailable(_));
    StartError {
        setting: Some(setting),
        message: e.to_string(),
        transient,
    }
}

/// Open the configured store and run until SIGTERM/SIGINT.
pub async fn run(cfg: Config) -> Result<(), StartError> {
    crate::rlimit::raise_open_files();
    match cfg.store.clone() {
        StoreConfig::Embedded { dir } => {
            let store = EmbeddedStore::open_bounded(&dir, cfg.store_bounds)
                .map_err(|e| store_start_err("STATE_DIR", e))?;
            run_until_signal(cfg, Arc::new(store)).await
        }
        #[cfg(feature = "mongodb")]
        StoreConfig::Mongo { uri, database } => {
            let store = crate::store::mongo::MongoStore::connect(uri.expose(), &database)
                .await
                .map_err(|e| start_err(Some("MONGODB_URI"), e.to_string()))?
                .with_bounds(cfg.store_bounds);
            run_until_signal(cfg, Arc::new(store)).await
        }
        #[cfg(not(feature = "mongodb"))]
        StoreConfig::Mongo { .. } => Err(start_err(
            Some("MONGODB_URI"),
            "this build has no MongoDB support",
        )),
    }
}

/// Run with an open store until SIGTERM/SIGINT.
async fn run_until_signal<S: Store>(cfg: Config, store: Arc<S>) -> Result<(), StartError> {
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
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
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

/// `SIGHUP` (the unit's `ExecReload`) reloads the routing file; `/health`
/// shows the outcome. The handler is installed before the service says it
/// listens (without one the signal would end the process).
fn reload_on_sighup(
    routing: Arc<crate::routes::live::Live>,
    health: Arc<Health>,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let hup = signal(SignalKind::hangup());
    tokio::spawn(async move {
        let Ok(mut hup) = hup else {
            tracing::warn!("cannot install the SIGHUP handler; the routing file is not reloaded");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = hup.recv() => {
                    routing.reload();
                    health.set_routing(routing.report());
                }
            }
        }
    })
}

/// Run with an open store until `shutdown` fires (tests call this directly).
pub async fn run_until<S: Store>(
    cfg: Config,
    store: Arc<S>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let health = Arc::new(Health::new());
    let wake = Arc::new(Notify::new());
    crate::metrics::global().started(std::time::SystemTime::now());

    // Settings are checked before anything listens.
    let discord = match &cfg.discord {
        Some(d) => {
            let rc = d.rest_config(cfg.extra_ca_file.clone(), Duration::from_secs(30));
            let rest = if d.bot {
                Rest::new(rc)
            } else {
                // Webhook routes only: no bot, so no gateway and no presence.
                health.set(
                    Component::Gateway,
                    Status::ok("off: webhook routes only, no bot token"),
                );
                Rest::without_token(rc, crate::discord::rest::RestTuning::default())
            }
            .map_err(|e| start_err(Some("DISCORD_API_BASE_URL"), e.to_string()))?;
            Some((d, rest))
        }
        None => None,
    };
    health.set_routing(cfg.routing.report());
    let reloader = reload_on_sighup(cfg.routing.clone(), health.clone(), shutdown.clone());

    // Prove the store can write before telling anyone we are ready.
    store
        .probe()
        .await
        .map_err(|e| store_start_err("STATE_DIR", e))?;
    health.set(Component::Store, Status::ok("writable"));

    // Under socket activation systemd owns the socket (drone-discord.socket)
    // and LISTEN_ADDR is not used; connections wait in its backlog across restarts.
    let (listener, activated) =
        match crate::socket_activation::listener().map_err(|e| start_err(Some("LISTEN_FDS"), e))? {
            Some(inherited) => {
                let listener = inherited
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(inherited))
                    .map_err(|e| {
                        start_err(
                            Some("LISTEN_FDS"),
                            format!("cannot use the socket passed by systemd: {e}"),
                        )
                    })?;
                (listener, true)
            }
            None => {
                let listener = TcpListener::bind(cfg.listen_addr).await.map_err(|e| {
                    start_err(
                        Some("LISTEN_ADDR"),
                        format!("cannot listen on {}: {e}", cfg.listen_addr),
                    )
                })?;
                (listener, false)
            }
        };
    let local = listener
        .local_addr()
        .map_err(|e| start_err(Some("LISTEN_ADDR"), e.to_string()))?;
    health.set(
        Component::Listener,
        Status::ok(format!("listening on {local}")),
    );
    tracing::info!(addr = %local, socket_activated = activated, dry_run = cfg.dry_run, version = env!("CARGO_PKG_VERSION"), "listening for Drone webhooks");

    // Dates are judged by the last known time while the clock is not
    // synchronised (a Pi without RTC at boot); start-up does not wait for NTP.
    let clock = Arc::new(Clock::open(&cfg.state_dir, cfg.clock_sync.clone()));
    let verifier = Verifier::new(
        cfg.webhook_secret.expose().as_bytes().to_vec(),
        cfg.date_window,
    )
    .with_clock(clock.clone());
    // Dry-run: what the sink would have sent, for `GET /preview`.
    let preview = discord.is_none().then(|| Arc::new(Preview::default()));
    let endpoints = Arc::new(
        Endpoints::new(store.clone(), verifier, health.clone(), wake.clone())
            .with_preview(preview.clone())
            .with_allow_list(cfg.metrics_allow.clone()),
    );
    let limits = ServerLimits {
        max_body_bytes: cfg.max_body_bytes,
        ..ServerLimits::default()
    };
    let server = tokio::spawn(http::server::listen(
        listener,
        endpoints,
        limits,
        shutdown.clone(),
    ));

    let prober = tokio::spawn(watch_store(store.clone(), health.clone(), shutdown.clone()));

    let mut background = vec![prober, reloader];
    let relay = match discord {
        Some((d, rest)) => {
            if cfg.gateway_enabled {
                background.extend(start_presence(
                    &cfg,
                    d,
                    &rest,
                    local,
                    health.clone(),
                    shutdown.clone(),
                ));
            }
            let mut rc = RelayConfig::new(d.channel_id.clone());
            rc.nonce_window = d.nonce_window;
            rc.routing = cfg.routing.clone();
            tokio::spawn(relay::run(
                rc,
                store.clone(),
                Arc::new(rest),
                health.clone(),
                wake.clone(),
                shutdown.clone(),
            ))
        }
        None => {
            let mut rc = RelayConfig::new("dry-run");
            rc.routing = cfg.routing.clone();
            tokio::spawn(relay::run(
                rc,
                store.clone(),
                Arc::new(DryRun::with_preview(preview.unwrap_or_default())),
                health.clone(),
                wake.clone(),
                shutdown.clone(),
            ))
        }
    };

    // systemd: READY once alive, STATUS on changes, WATCHDOG only while the
    // runtime answers, the store can write and the listener accepts.
    let notifier = Notifier::from_env().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "NOTIFY_SOCKET unusable; not talking to systemd");
        Notifier::disabled()
    });
    background.push(tokio::spawn({
        let (store, health, shutdown) = (store.clone(), health.clone(), shutdown.clone());
        async move {
            systemd::supervise(notifier, health, shutdown, move || {
                liveness(store.clone(), local)
            })
            .await;
        }
    }));

    shutdown.wait().await;
    // Order: the listener stops accepting and finishes in-flight requests,
    // then the relay drains, then the store is closed by dropping it.
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "listener stopped with an error"),
        Err(e) => tracing::error!(error = %e, "listener task failed"),
    }
    let _ = relay.await;
    for task in background {
        let _ = task.await;
    }
    clock.save_at_shutdown();
    tracing::info!("stopped");
    Ok(())
}

/// The watchdog's question: can the store write, does the listener accept?
/// Writes nothing while idle: [`Store::writable`] is a `statvfs` plus the
/// store's last commit as proof (see `store/write_proof.rs`).
async fn liveness<S: Store>(store: Arc<S>, listener: SocketAddr) -> Result<(), String> {
    store.writable().await.map_err(|e| format!("store: {e}"))?;
    let target = http::local_target(listener);
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(target),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("listener does not accept: {e}")),
        Err(_) => Err("listener does not accept: connect timed out".into()),
    }
}

/// Presence: a health-check task publishes the desired presence; the gateway
/// task keeps the bot connected and shows it.
fn start_presence(
    cfg: &Config,
    d: &DiscordConfig,
    rest: &Rest,
    local: SocketAddr,
    health: Arc<Health>,
    shutdown: Shutdown,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mode = cfg.unhealthy_presence;
    let (tx, rx) = watch::channel(Presence::unhealthy(mode, "starting"));
    let check_url = cfg
        .healthcheck_url
        .clone()
        .unwrap_or_else(|| presence::default_check_url(local));
    let checker = tokio::spawn(presence::run(
        check_url,
        cfg.healthcheck_interval,
        mode,
        rest.client().clone(),
        tx,
        shutdown.clone(),
    ));
    let gateway = tokio::spawn({
        let (rest, token, url) = (
            rest.clone(),
            d.token.expose().to_string(),
            d.gateway_url.clone(),
        );
        let ledger = cfg.state_dir.join(gateway::identify_ledger::FILE_NAME);
        async move {
            health.set(Component::Gateway, Status::ok("connecting"));
            let (url, limit) = match url {
                // The override (tests, proxies) moves the socket, not the
                // token's identify budget: still ask Discord for that, once.
                Some(u) => (u, session_start_limit(&rest, &shutdown).await),
                None => match gateway_url(&rest, &health, &shutdown).await {
                    Some(found) => found,
                    None => return,
                },
            };
            let mut gw =
                GatewayConfig::new(url, Token::new(&token), Arc::new(rest.client().clone()));
            gw.session_start_limit = limit;
            gw.identify_ledger = Some(ledger);
            gateway::run(gw, rx, health, shutdown).await;
        }
    });
    vec![checker, gateway]
}

/// `GET /gateway/bot`, retried with backoff until it answers; `None` when the
/// token is refused (the gateway stays off and health says why) or on shutdown.
async fn gateway_url(
    rest: &Rest,
    health: &Health,
    shutdown: &Shutdown,
) -> Option<(String, Option<gateway::SessionStartLimit>)> {
    let mut delay = Duration::from_secs(1);
    loop {
        match rest.gateway_bot().await {
            Ok(bot) => return Some((bot.url.clone(), Some((&bot.session_start_limit).into()))),
            Err(RestError::Unauthorized { status, .. }) => {
                let why =
                    format!("stopped: GET /gateway/bot answered {status}; check DISCORD_TOKEN");
                tracing::error!(reason = %why, "gateway off");
                health.set(Component::Gateway, Status::failed(why));
                return None;
            }
            Err(e) => {
                let why = e.to_string();
                tracing::warn!(error = %why, retry_in_s = delay.as_secs(), "cannot get the gateway URL");
                health.set(
                    Component::Gateway,
                    Status::failed(format!("no gateway URL yet: {why}")),
                );
            }
        }
        tokio::select! {
            _ = shutdown.wait() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(300));
    }
}

/// With `DISCORD_GATEWAY_URL` set: `GET /gateway/bot` once, for its
/// `session_start_limit` only. Without an answer the gateway starts anyway;
/// the identify ledger's spacing and daily cap still apply.
async fn session_start_limit(
    rest: &Rest,
    shutdown: &Shutdown,
) -> Option<gateway::SessionStartLimit> {
    let asked = tokio::select! {
        _ = shutdown.wait() => return None,
        r = tokio::time::timeout(Duration::from_secs(30), rest.gateway_bot()) => r,
    };
    match asked {
        Ok(Ok(bot)) => Some((&bot.session_start_limit).into()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "no session_start_limit from GET /gateway/bot; the local identify caps apply");
            None
        }
        Err(_) => {
            tracing::warn!("GET /gateway/bot timed out; the local identify caps apply");
            None
        }
    }
}

/// Every few seconds ask the store whether it can still write; health
/// follows. A full or read-only disk shows within one period; idle, this
/// writes nothing ([`Store::writable`]: `statvfs` and the last commit as
/// proof, a probe commit only after hours without one or after a failure).
async fn watch_store<S: Store>(store: Arc<S>, health: Arc<Health>, shutdown: Shutdown) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = every.tick() => {}
        }
        match tokio::time::timeout(Duration::from_secs(10), store.writable()).await {
            Ok(Ok(())) => health.set(Component::Store, Status::ok("writable")),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store cannot write");
                health.set(Component::Store, Status::failed(e.to_string()));
            }
            Err(_) => health.set(Component::Store, Status::failed("store check timed out")),
        }
    }
}
