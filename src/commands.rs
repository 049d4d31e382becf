//! The one-shot commands behind the CLI (`send`, `check`, `render`, `queue`)
//! and the shared start-up helpers (logging, runtime).
use drone_discord::config::{self, ConfigError, Settings, StoreConfig};
use drone_discord::discord::rest::{Rest, RestConfig};
use drone_discord::http::client::{Client, ClientOptions, Url};
use drone_discord::store::embedded::EmbeddedStore;
use drone_discord::store::Store;
use drone_discord::{drone, render, signature};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

/// Largest payload file `send`/`render` read.
const MAX_FIXTURE_BYTES: u64 = 8 * 1024 * 1024;

/// Logs to stderr; no timestamps of our own under journald (it stamps lines).
pub fn init_logging(filter: &str) -> Result<(), String> {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let targets: Targets = filter.parse().map_err(|e| format!("{filter:?} is not a log filter: {e}"))?;
    use std::io::IsTerminal;
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let result = if journald {
        tracing_subscriber::registry().with(layer.without_time().with_ansi(false).with_filter(targets)).try_init()
    } else {
        tracing_subscriber::registry().with(layer.with_filter(targets)).try_init()
    };
    result.map_err(|e| e.to_string())
}

/// The tokio runtime: two workers are plenty on a Pi.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn read_payload(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| ConfigError::new(&what, format!("cannot open: {e}")))?;
    let mut buf = Vec::new();
    file.take(MAX_FIXTURE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ConfigError::new(&what, format!("cannot read: {e}")))?;
    if buf.len() as u64 > MAX_FIXTURE_BYTES {
        return Err(ConfigError::new(&what, "larger than 8 MiB"));
    }
    Ok(buf)
}

/// `render FIXTURE`: the message JSON the relay would send.
pub fn render(path: &Path) -> Result<ExitCode, ConfigError> {
    let body = read_payload(path)?;
    let what = path.display().to_string();
    let hook = drone::parse(&body).map_err(|e| ConfigError::new(&what, format!("not a Drone webhook: {e}")))?;
    match render::render(&hook) {
        Some(msg) => {
            let text = serde_json::to_string_pretty(&msg).map_err(|e| ConfigError::new(&what, e.to_string()))?;
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("drone-discord: {what}: event {:?} action {:?} is not shown in Discord", hook.event, hook.action);
            Ok(ExitCode::from(1))
        }
    }
}

/// `send FIXTURE --url URL`: sign like Drone (fresh Date, Digest, Signature) and POST.
pub fn send(path: &Path, url: &str, env_file: Option<&Path>) -> Result<ExitCode, ConfigError> {
    let settings = Settings::load(env_file)?;
    let secret = settings
        .secret("DRONE_WEBHOOK_SECRET", config::CRED_WEBHOOK_SECRET)?
        .ok_or_else(|| ConfigError::new("DRONE_WEBHOOK_SECRET", "not set; the payload must be signed with the server's secret"))?;
    let body = read_payload(path)?;
    let event = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_default();
    let target = Url::parse(url).map_err(|e| ConfigError::new("--url", e.to_string()))?;
    let signed = signature::sign(secret.expose().as_bytes(), "hmac-key", &body, SystemTime::now());
    let rt = runtime().map_err(|e| ConfigError::new("runtime", e))?;
    let result = rt.block_on(async {
        let client = Client::new(ClientOptions { request_timeout: Duration::from_secs(70), ..ClientOptions::default() })?;
        let mut headers: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        headers.push(("Content-Type", "application/json"));
        headers.push(("X-Drone-Event", event.as_str()));
        client.request("POST", &target, &headers, Some(&body)).await
    });
    match result {
        Ok(resp) => {
            println!("{} {}", resp.status, String::from_utf8_lossy(&resp.body).trim());
            Ok(if (200..300).contains(&resp.status) { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Err(e) => {
            eprintln!("drone-discord: send to {url} failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `check`: token (`GET /users/@me`), channel (`GET /channels/{id}`), store.
pub fn check(env_file: Option<&Path>) -> Result<ExitCode, ConfigError> {
    let s = Settings::load(env_file)?;
    let rt = runtime().map_err(|e| ConfigError::new("runtime", e))?;
    let mut failed = false;
    let mut line = |ok: bool, what: &str, detail: String| {
        failed |= !ok;
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    };

    match config::discord_config(&s) {
        Err(e) => line(false, "discord", e.to_string()),
        Ok(d) => {
            let rest = Rest::new(RestConfig {
                base_url: d.api_base.clone(),
                token: d.token.expose().to_string(),
                extra_ca_file: s.get("SSL_CERT_FILE").map(Into::into),
                connect_timeout: Duration::from_secs(10),
                request_timeout: Duration::from_secs(20),
            });
            match rest {
                Err(e) => line(false, "discord", e.to_string()),
                Ok(rest) => {
                    match rt.block_on(rest.current_user()) {
                        Ok(me) => line(
                            true,
                            "token",
                            format!("bot {} ({})", me["username"].as_str().unwrap_or("?"), me["id"].as_str().unwrap_or("?")),
                        ),
                        Err(e) => line(false, "token", e.to_string()),
                    }
                    match rt.block_on(rest.channel(&d.channel_id)) {
                        Ok(ch) => line(
                            true,
                            "channel",
                            format!("#{} ({})", ch["name"].as_str().unwrap_or("?"), d.channel_id),
                        ),
                        Err(e) => line(false, "channel", format!("{}: {e}", d.channel_id)),
                    }
                }
            }
        }
    }

    match config::store_config(&s) {
        Err(e) => line(false, "store", e.to_string()),
        Ok(StoreConfig::Embedded { dir }) => match EmbeddedStore::open(&dir) {
            Err(e) => line(false, "store", format!("{}: {e}", dir.display())),
            Ok(store) => match rt.block_on(async { store.probe().await?; store.stats().await }) {
                Ok(st) => line(
                    true,
                    "store",
                    format!("{} writable; {} pending, {} dead letters", dir.display(), st.pending, st.dead_letters),
                ),
                Err(e) => line(false, "store", format!("{}: {e}", dir.display())),
            },
        },
        Ok(StoreConfig::Mongo { .. }) => line(false, "store", "MongoDB checks need a build with --features mongodb".into()),
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `queue`: what is waiting and what was set aside. Reads the store directly
/// when no service holds it, else asks the running service over loopback.
pub fn queue(env_file: Option<&Path>, limit: usize) -> Result<ExitCode, ConfigError> {
    let s = Settings::load(env_file)?;
    let StoreConfig::Embedded { dir } = config::store_config(&s)? else {
        return Err(ConfigError::new("STORE", "`queue` for MongoDB needs a build with --features mongodb"));
    };
    let rt = runtime().map_err(|e| ConfigError::new("runtime", e))?;
    let store = match EmbeddedStore::open(&dir) {
        Ok(store) => store,
        Err(open_err) => {
            let listen = s.get("LISTEN_ADDR").unwrap_or("127.0.0.1:5000").replace("0.0.0.0", "127.0.0.1");
            return match rt.block_on(queue_from_service(&listen)) {
                Ok(v) => {
                    print_queue_json(&v, limit);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(ConfigError::new(
                    "STATE_DIR",
                    format!("{open_err}; and no running service answered on {listen}: {e}"),
                )),
            };
        }
    };
    let out = rt.block_on(async {
        let stats = store.stats().await?;
        let pending = store.pending(limit).await?;
        let dead = store.dead_letters(limit).await?;
        Ok::<_, drone_discord::store::StoreError>((stats, pending, dead))
    });
    let (stats, pending, dead) = out.map_err(|e| ConfigError::new("STATE_DIR", e.to_string()))?;
    println!("{} pending, {} dead letters ({})", stats.pending, stats.dead_letters, dir.display());
    for e in pending {
        println!("pending  #{:<6} {:<24} {} {}", e.seq, e.key, e.event, e.action);
    }
    for d in dead {
        println!("dead     #{:<6} {:<24} {} {}: {}", d.event.seq, d.event.key, d.event.event, d.event.action, d.reason);
    }
    Ok(ExitCode::SUCCESS)
}

async fn queue_from_service(listen: &str) -> Result<serde_json::Value, String> {
    let client = Client::new(ClientOptions::default()).map_err(|e| e.to_string())?;
    let url = Url::parse(&format!("http://{listen}/queue")).map_err(|e| e.to_string())?;
    let resp = client.request("GET", &url, &[], None).await.map_err(|e| e.to_string())?;
    if resp.status != 200 {
        return Err(format!("answered {}", resp.status));
    }
    serde_json::from_slice(&resp.body).map_err(|e| e.to_string())
}

fn print_queue_json(v: &serde_json::Value, limit: usize) {
    let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
    let t = |x: &serde_json::Value| x.as_str().unwrap_or("?").to_string();
    println!("{} pending, {} dead letters (from the running service)", n(&v["pending"]), n(&v["dead_letters"]));
    for e in v["events"].as_array().into_iter().flatten().take(limit) {
        println!("pending  #{:<6} {:<24} {} {}", n(&e["id"]), t(&e["key"]), t(&e["event"]), t(&e["action"]));
    }
    for d in v["dead"].as_array().into_iter().flatten().take(limit) {
        println!("dead     #{:<6} {:<24} {} {}: {}", n(&d["id"]), t(&d["key"]), t(&d["event"]), t(&d["action"]), t(&d["reason"]));
    }
}
