//! The one-shot commands behind the CLI (`send`, `check`, `render`, `queue` and its
//! `retry`/`purge`, `migrate`; `route` and the routes' part of `check` are in
//! `routing_commands.rs`) and the shared start-up helpers (logging, runtime).
//!
//! Each command prints its result on stdout and returns its failure, with
//! its context, as a [`CliError`]; `main` prints it and picks the exit code.
use crate::cli_error::CliError;
use drone_discord::config::{self, ConfigError, Settings, StoreConfig};
use drone_discord::discord::rest::Rest;
use drone_discord::drone_api::{DroneApi, DroneTuning};
use drone_discord::http::client::{Client, ClientOptions, Url};
use drone_discord::queue_admin::{self, Action};
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::{DeadSelection, Store};
use drone_discord::{drone, preview, render, signature};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Open the configured store and evaluate `$body` with `$store` bound to it
/// (an `EmbeddedStore` or, in builds with the feature, a `MongoStore`), so one
/// generic body serves every backend. An open failure is `Err`; callers name
/// the store with [`store_label`].
macro_rules! with_store {
    ($rt:expr, $cfg:expr, |$store:ident| $body:expr) => {
        match $cfg {
            StoreConfig::Embedded { dir } => match EmbeddedStore::open(&dir) {
                Ok($store) => Ok($rt.block_on($body)),
                Err(e) => Err(e),
            },
            #[cfg(feature = "mongodb")]
            StoreConfig::Mongo { uri, database } => {
                match $rt.block_on(drone_discord::store::mongo::MongoStore::connect(
                    uri.expose(),
                    &database,
                )) {
                    Ok($store) => Ok($rt.block_on($body)),
                    Err(e) => Err(e),
                }
            }
            #[cfg(not(feature = "mongodb"))]
            StoreConfig::Mongo { .. } => Err(drone_discord::store::StoreError::Config(
                "this build has no MongoDB support".into(),
            )),
        }
    };
}

/// Largest payload file `send`/`render` read.
const MAX_FIXTURE_BYTES: u64 = 8 * 1024 * 1024;

/// Logs to stderr; no timestamps of our own under journald (it stamps lines).
pub fn init_logging(filter: &str) -> Result<(), String> {
    drone_discord::logging::init(filter)
}

/// Most threads tokio's blocking pool may start (its default is 512, each
/// with its own stack and, under glibc, possibly its own malloc arena). Its
/// users at once, at most: the relay's deliveries (8, each reading the store
/// or resolving discord.com when it opens a connection), the relay's claim
/// and queue-figure reads (2), the store checks of health and the watchdog
/// (2, `statvfs`), the gateway's connect and identify ledger (1). 16 gives
/// each of them a thread even while DNS hangs for every delivery, so the
/// store checks never queue behind a stuck lookup; beyond that, work waits
/// for a free thread instead of starting one. Idle threads exit after 10 s.
const MAX_BLOCKING_THREADS: usize = 16;

/// The tokio runtime: two workers are plenty on a Pi (the webhook path is
/// short, and the store's writer is a thread of its own), and the blocking
/// pool is bounded by [`MAX_BLOCKING_THREADS`]. Failing to start it is the
/// machine's problem (threads, file descriptors), not the user's.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed("cannot start the async runtime", e))
}

/// A payload file named on the command line: one that cannot be read, or
/// is not JSON, is a usage error.
pub fn read_payload(path: &Path) -> Result<(Vec<u8>, serde_json::Value), CliError> {
    use std::io::Read;
    let what = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| CliError::usage(&what, format!("cannot open: {e}")))?;
    let mut buf = Vec::new();
    file.take(MAX_FIXTURE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| CliError::usage(&what, format!("cannot read: {e}")))?;
    if buf.len() as u64 > MAX_FIXTURE_BYTES {
        return Err(CliError::usage(&what, "larger than 8 MiB"));
    }
    let json = serde_json::from_slice(&buf)
        .map_err(|e| CliError::usage(&what, format!("not JSON: {e}")))?;
    Ok((buf, json))
}

/// `render FIXTURE [--html] [--out FILE]`: the message JSON the relay would
/// send, or (`--html`) the card the preview shows for it, as a page of its own.
pub fn render(path: &Path, html: bool, out: Option<&Path>) -> Result<(), CliError> {
    let (body, _) = read_payload(path)?;
    let what = path.display();
    let hook = drone::parse(&body)
        .map_err(|e| CliError::usage(&what, format!("not a Drone webhook: {e}")))?;
    let Some(msg) = render::render(&hook) else {
        return Err(CliError::failed(
            &what,
            format!(
                "event {:?} action {:?} is not shown in Discord",
                hook.event, hook.action
            ),
        ));
    };
    let text = if html {
        let meta = preview::CardMeta {
            id: "rendered",
            ..preview::CardMeta::default()
        };
        preview::standalone(&preview::card(&msg, &meta))
    } else {
        serde_json::to_string_pretty(&msg).map_err(|e| CliError::failed(&what, e))?
    };
    match out {
        None => println!("{text}"),
        Some(file) => std::fs::write(file, text + "\n")
            .map_err(|e| CliError::failed(format!("--out {}", file.display()), e))?,
    }
    Ok(())
}

/// `send FIXTURE --url URL`: sign like Drone (fresh Date, Digest, Signature) and POST.
pub fn send(path: &Path, url: &str, env_file: Option<&Path>) -> Result<(), CliError> {
    let settings = Settings::load(env_file)?;
    let secret = settings
        .secret("DRONE_WEBHOOK_SECRET", config::CRED_WEBHOOK_SECRET)?
        .ok_or_else(|| {
            ConfigError::new(
                "DRONE_WEBHOOK_SECRET",
                "not set; the payload must be signed with the server's secret",
            )
        })?;
    let (body, json) = read_payload(path)?;
    let event = json
        .get("event")
        .and_then(|e| e.as_str())
        .unwrap_or_default()
        .to_string();
    let target = Url::parse(url).map_err(|e| CliError::usage("--url", e))?;
    let signed = signature::sign(
        secret.expose().as_bytes(),
        "hmac-key",
        &body,
        SystemTime::now(),
    );
    let rt = runtime()?;
    let result = rt.block_on(async {
        let client = Client::new(ClientOptions {
            request_timeout: Duration::from_secs(70),
            ..ClientOptions::default()
        })?;
        let mut headers: Vec<(&str, &str)> = signed
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        headers.push(("Content-Type", "application/json"));
        headers.push(("X-Drone-Event", event.as_str()));
        client.request("POST", &target, &headers, Some(&body)).await
    });
    let resp = result.map_err(|e| CliError::failed(format!("send to {url}"), e))?;
    println!(
        "{} {}",
        resp.status,
        String::from_utf8_lossy(&resp.body).trim()
    );
    if !(200..300).contains(&resp.status) {
        return Err(CliError::failed(
            format!("send to {url}"),
            format!("answered {}", resp.status),
        ));
    }
    Ok(())
}

/// `check`: token (`GET /users/@me`), channel (`GET /channels/{id}`, and
/// `GET /channels/{id}/messages` for READ_MESSAGE_HISTORY), the routing file
/// and each route's destination, store, the Drone API token (`GET /api/user`).
pub fn check(env_file: Option<&Path>, config_file: Option<&Path>) -> Result<(), CliError> {
    let mut s = Settings::load(env_file)?;
    if let Some(path) = config_file {
        s.set("CONFIG_FILE", path.display().to_string());
    }
    let rt = runtime()?;
    let mut failed: Vec<String> = Vec::new();
    let mut line = |ok: bool, what: &str, detail: String| {
        if !ok && !failed.iter().any(|f| f == what) {
            failed.push(what.to_string());
        }
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    };
    let mut bot = None;

    match config::discord_config(&s) {
        Err(e) => line(false, "discord", e.to_string()),
        Ok(d) => {
            let rest = Rest::new(d.rest_config(
                s.get("SSL_CERT_FILE").map(Into::into),
                Duration::from_secs(20),
            ));
            match rest {
                Err(e) => line(false, "discord", e.to_string()),
                Ok(rest) => {
                    match rt.block_on(rest.current_user()) {
                        Ok(me) => line(
                            true,
                            "token",
                            format!(
                                "bot {} ({})",
                                me["username"].as_str().unwrap_or("?"),
                                me["id"].as_str().unwrap_or("?")
                            ),
                        ),
                        Err(e) => line(false, "token", e.to_string()),
                    }
                    match rt.block_on(rest.channel(&d.channel_id)) {
                        Ok(ch) => {
                            let name = format!(
                                "#{} ({})",
                                ch["name"].as_str().unwrap_or("?"),
                                d.channel_id
                            );
                            // READ_MESSAGE_HISTORY: how the relay finds a
                            // message whose create's answer was lost once
                            // Discord forgot the nonce (relay::reconcile).
                            // Without it Discord lists nothing, so an empty
                            // list cannot tell; a refusal can.
                            const WHY: &str = "READ_MESSAGE_HISTORY, which the relay needs to find a message whose create's answer was lost";
                            match rt.block_on(rest.recent_messages(&d.channel_id, 1)) {
                                Ok(list) if !list.is_empty() => line(
                                    true,
                                    "channel",
                                    format!("{name}; reads its messages (READ_MESSAGE_HISTORY)"),
                                ),
                                Ok(_) => line(
                                    true,
                                    "channel",
                                    format!("{name}; no messages visible: the channel is empty, or the bot lacks {WHY}"),
                                ),
                                Err(e) => line(
                                    false,
                                    "channel",
                                    format!("{name}: cannot read its messages ({WHY}): {e}"),
                                ),
                            }
                        }
                        Err(e) => line(false, "channel", format!("{}: {e}", d.channel_id)),
                    }
                    bot = Some(rest);
                }
            }
        }
    }
    crate::routing_commands::check_routes(&s, &rt, bot.as_ref(), &mut line);

    match config::store_config(&s).map(|cfg| (store_label(&cfg), cfg)) {
        Err(e) => line(false, "store", e.to_string()),
        Ok((label, cfg)) => match with_store!(rt, cfg, |store| async move {
            store.probe().await?;
            store.stats().await
        }) {
            Ok(Ok(st)) => line(
                true,
                "store",
                format!(
                    "writable; {} pending, {} dead letters",
                    st.pending, st.dead_letters
                ),
            ),
            Ok(Err(e)) => line(false, "store", e.to_string()),
            Err(e) => {
                // A running service holds the embedded store: ask it instead.
                let listen = service_addr(&s);
                match rt.block_on(from_service(&listen, "GET", "/health")) {
                    Ok((_, h)) => line(
                        h["store"]["ok"].as_bool().unwrap_or(false),
                        "store",
                        format!(
                            "held by the service on {listen}: {}; {} pending, {} dead letters",
                            h["store"]["detail"].as_str().unwrap_or("?"),
                            h["queue"]["pending"].as_u64().unwrap_or(0),
                            h["queue"]["dead_letters"].as_u64().unwrap_or(0)
                        ),
                    ),
                    Err(_) => line(false, "store", format!("{label}: {e}")),
                }
            }
        },
    }
    check_drone(&s, &rt, &mut line);
    if !failed.is_empty() {
        return Err(CliError::failed(
            "check",
            format!("{} failed", failed.join(", ")),
        ));
    }
    Ok(())
}

/// `check`'s Drone line: `GET {DRONE_SERVER}/api/user` tells whom the token
/// belongs to and whether it works; without a token, which features are
/// off. With neither `DRONE_SERVER` nor a token, no line: `check` prints
/// what it printed before the Drone API existed (the README says what is off).
fn check_drone(
    s: &Settings,
    rt: &tokio::runtime::Runtime,
    line: &mut dyn FnMut(bool, &str, String),
) {
    const OFF: &str = "the failed steps' logs and the Restart button are off";
    let d = match config::drone_api_config(s) {
        Err(e) => return line(false, "drone", e.to_string()),
        Ok(None) => return,
        Ok(Some(d)) => d,
    };
    let Some(token) = &d.token else {
        let why = "no token (DRONE_TOKEN, DRONE_TOKEN_FILE or the systemd credential drone-token)";
        return line(true, "drone", format!("{}: {why}: {OFF}", d.server));
    };
    let extra_ca = s.get("SSL_CERT_FILE").map(Into::into);
    let api = DroneApi::new(&d.server, token, extra_ca, DroneTuning::default());
    match api.map(|api| rt.block_on(async move { api.user().await })) {
        Ok(Ok(user)) => line(true, "drone", format!("{}: {}", d.server, user.describe())),
        Ok(Err(e)) | Err(e) => line(false, "drone", format!("{}: {e}; {OFF}", d.server)),
    }
}

/// `queue`: what is waiting and what was set aside. Reads the store directly
/// when no service holds it, else asks the running service over loopback.
pub fn queue(env_file: Option<&Path>, limit: usize) -> Result<(), CliError> {
    let s = Settings::load(env_file)?;
    let cfg = config::store_config(&s)?;
    let label = store_label(&cfg);
    let rt = runtime()?;
    let listing = with_store!(rt, cfg, |store| async move {
        Ok::<_, drone_discord::store::StoreError>((
            store.stats().await?,
            store.pending(limit).await?,
            store.dead_letters(limit).await?,
        ))
    });
    let (stats, pending, dead) = match listing {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => return Err(CliError::store(&e, format!("{label}: {e}"))),
        Err(open_err) => {
            // Most likely a running service holds the embedded store: ask it.
            let listen = service_addr(&s);
            return match rt.block_on(from_service(&listen, "GET", "/queue")) {
                Ok((_, v)) => {
                    print_queue_json(&v, limit);
                    Ok(())
                }
                Err(e) => Err(CliError::store(
                    &open_err,
                    format!(
                        "{label}: {open_err}; and no running service answered on {listen}: {e}"
                    ),
                )),
            };
        }
    };
    println!(
        "{} pending, {} dead letters",
        stats.pending, stats.dead_letters
    );
    for e in pending {
        println!(
            "pending  #{:<6} {:<24} {} {}",
            e.seq, e.key, e.event, e.action
        );
    }
    let now = drone_discord::store::now_ms();
    for d in dead {
        println!(
            "dead     #{:<6} {:<24} {} {} ({} ago): {}",
            d.event.seq,
            d.event.key,
            d.event.event,
            d.event.action,
            age(now, d.failed_ms),
            d.reason
        );
    }
    Ok(())
}

/// `queue retry|purge ID|all`: on the store directly when no service holds
/// it, else through the running service (`POST /queue/dead/…`, loopback).
pub fn queue_act(
    env_file: Option<&Path>,
    action: &str,
    target: Option<&str>,
) -> Result<(), CliError> {
    let action = Action::parse(action)
        .ok_or_else(|| CliError::usage("queue", format!("{action:?} is not retry or purge")))?;
    let which = target.and_then(DeadSelection::parse).ok_or_else(|| {
        CliError::usage(
            format!("queue {}", action.as_str()),
            "name a dead letter's id (see `drone-discord queue`) or all",
        )
    })?;
    let s = Settings::load(env_file)?;
    let cfg = config::store_config(&s)?;
    let label = store_label(&cfg);
    let rt = runtime()?;
    let direct = with_store!(rt, cfg, |store| async move {
        match action {
            Action::Retry => store.retry_dead(which).await,
            Action::Purge => store.purge_dead(which).await,
        }
    });
    let count = match direct {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return Err(CliError::store(&e, format!("{label}: {e}"))),
        Err(open_err) if drone_discord::store::embedded::is_held_elsewhere(&open_err) => {
            let listen = service_addr(&s);
            let path = queue_admin::path(action, which);
            let (status, v) = rt
                .block_on(from_service(&listen, "POST", &path))
                .map_err(|e| {
                    CliError::failed(
                        format!("queue {}", action.as_str()),
                        format!("{label} is held by a running service, which did not answer on {listen}: {e}"),
                    )
                })?;
            if status != 200 {
                let why = v["error"].as_str().unwrap_or("no reason given");
                return Err(CliError::failed(
                    format!("queue {} {which}", action.as_str()),
                    format!("the service on {listen} answered {status}: {why}"),
                ));
            }
            v[action.done()].as_u64().unwrap_or(0)
        }
        Err(e) => return Err(CliError::store(&e, format!("{label}: {e}"))),
    };
    if count == 0 && which != DeadSelection::All {
        return Err(CliError::failed(
            format!("queue {} {which}", action.as_str()),
            format!("no dead letter #{which}"),
        ));
    }
    println!("{} {count} dead letter(s)", action.done());
    Ok(())
}

/// How long ago `then_ms` was, in one rounded unit (`42 s`, `5 min`, `3 h`, `2 d`).
fn age(now_ms: u64, then_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7_199 => format!("{} min", s / 60),
        7_200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `migrate --from URI`: import the old Python service's build → message map
/// into the configured store, so running builds keep editing their message.
#[cfg(feature = "mongodb")]
pub fn migrate(
    env_file: Option<&Path>,
    from: &str,
    from_database: Option<&str>,
) -> Result<(), CliError> {
    let s = Settings::load(env_file)?;
    let from_database = from_database
        .or_else(|| s.get("MONGO_DATABASE"))
        .ok_or_else(|| {
            ConfigError::new(
                "--from-database",
                "not given and MONGO_DATABASE is not set; name the old service's database",
            )
        })?;
    let channel = s
        .get("DISCORD_CHANNEL_ID")
        .map(str::to_string)
        .ok_or_else(|| {
            ConfigError::new(
                "DISCORD_CHANNEL_ID",
                "not set; the old messages live in that channel",
            )
        })?;
    let cfg = config::store_config(&s)?;
    let label = store_label(&cfg);
    let rt = runtime()?;
    let from = from.to_string();
    let from_database = from_database.to_string();
    let result = with_store!(rt, cfg, |store| async move {
        drone_discord::migrate::import_from(&from, &from_database, &store, &channel).await
    });
    match result {
        Ok(Ok(report)) => {
            println!("migrate: {report}");
            for (doc, why) in &report.skips {
                println!("skipped {doc}: {why}");
            }
            Ok(())
        }
        // The old database (`--from`) or the target store: the error says which.
        Ok(Err(e)) => Err(CliError::store(&e, format!("migrate: {e}"))),
        Err(e) => Err(CliError::store(&e, format!("{label}: {e}"))),
    }
}

#[cfg(not(feature = "mongodb"))]
pub fn migrate(
    _env_file: Option<&Path>,
    _from: &str,
    _from_database: Option<&str>,
) -> Result<(), CliError> {
    Err(ConfigError::new(
        "migrate",
        "this build has no MongoDB support; use a build with --features mongodb",
    )
    .into())
}

/// `method` `path` on the service running on `listen` (loopback): the
/// status and the JSON body (`/health` answers 503 with a JSON report too,
/// so any JSON body counts).
async fn from_service(
    listen: &str,
    method: &str,
    path: &str,
) -> Result<(u16, serde_json::Value), String> {
    let client = Client::new(ClientOptions::default()).map_err(|e| e.to_string())?;
    let url = Url::parse(&format!("http://{listen}{path}")).map_err(|e| e.to_string())?;
    let body = (method == "POST").then_some(&[][..]);
    let resp = client
        .request(method, &url, &[], body)
        .await
        .map_err(|e| e.to_string())?;
    let v = serde_json::from_slice(&resp.body)
        .map_err(|_| format!("answered {} without JSON", resp.status))?;
    Ok((resp.status, v))
}

/// The configured store as the error lines name it (no URI: it may hold a password).
fn store_label(cfg: &StoreConfig) -> String {
    match cfg {
        StoreConfig::Embedded { dir } => dir.display().to_string(),
        StoreConfig::Mongo { database, .. } => format!("MongoDB database {database}"),
    }
}

/// Where the running service listens, as a loopback address.
fn service_addr(s: &Settings) -> String {
    s.get("LISTEN_ADDR")
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map(drone_discord::http::local_target)
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 5000)))
        .to_string()
}

fn print_queue_json(v: &serde_json::Value, limit: usize) {
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let t = |x: &serde_json::Value| x.as_str().unwrap_or("?").to_string();
    println!(
        "{} pending, {} dead letters (from the running service)",
        n(&v["pending"]),
        n(&v["dead_letters"])
    );
    for e in v["events"].as_array().into_iter().flatten().take(limit) {
        println!(
            "pending  #{:<6} {:<24} {} {}",
            n(&e["id"]),
            t(&e["key"]),
            t(&e["event"]),
            t(&e["action"])
        );
    }
    let now = drone_discord::store::now_ms();
    for d in v["dead"].as_array().into_iter().flatten().take(limit) {
        println!(
            "dead     #{:<6} {:<24} {} {} ({} ago): {}",
            n(&d["id"]),
            t(&d["key"]),
            t(&d["event"]),
            t(&d["action"]),
            age(now, n(&d["failed_ms"])),
            t(&d["reason"])
        );
    }
}
