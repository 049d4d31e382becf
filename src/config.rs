//! Configuration, read once at start-up and validated as a whole.
//!
//! Sources, strongest first: command-line flags, the process environment, an
//! env file given with `--env-file` (the old Python service's `.env` works as
//! is). Settings use the old service's variable names. Secrets may also come
//! from `NAME_FILE` (a path) or from systemd credentials in
//! `$CREDENTIALS_DIRECTORY`, so they need not sit in the environment.
//!
//! Any problem is a [`ConfigError`] whose `Display` is one line naming the
//! setting and how to fix it; `main` prints it and exits with code 2.
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::discord::snowflake::is_snowflake;

/// Largest env file or secret file we read.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself. Call sites are the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration problem: the setting's name and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub setting: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(setting: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {}: {}", self.setting, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// What the bot shows while the service is unhealthy.
pub use crate::presence::UnhealthyMode as UnhealthyPresence;

/// Where Discord messages go.
#[derive(Clone, Debug)]
pub struct DiscordConfig {
    /// The bare bot token: [`discord_config`] strips a pasted `Bot ` prefix,
    /// so the REST client and the gateway never see one.
    pub token: Secret,
    /// A bot token is set (false: webhook routes only; no gateway, no presence).
    pub bot: bool,
    /// `DISCORD_CHANNEL_ID`; empty when no route uses it.
    pub channel_id: String,
    pub api_base: String,
    /// Gateway URL override (`ws://` allowed for tests); `None` → ask `GET /gateway/bot`.
    pub gateway_url: Option<String>,
    /// How long Discord is trusted to remember a create's nonce
    /// (`DISCORD_NONCE_WINDOW`, seconds; see `RelayConfig::nonce_window`).
    pub nonce_window: Duration,
}

impl DiscordConfig {
    /// The REST client's settings for this bot; `request_timeout` bounds each call.
    pub fn rest_config(
        &self,
        extra_ca_file: Option<PathBuf>,
        request_timeout: Duration,
    ) -> crate::discord::rest::RestConfig {
        crate::discord::rest::RestConfig {
            base_url: self.api_base.clone(),
            token: self.token.expose().to_string(),
            extra_ca_file,
            connect_timeout: Duration::from_secs(10),
            request_timeout,
        }
    }
}

/// The Drone API (`DRONE_SERVER`, `DRONE_TOKEN`): where the failed steps'
/// logs and the Restart button come from. Without a token they are off.
#[derive(Clone, Debug)]
pub struct DroneApiConfig {
    /// The http(s) base URL, checked; the token is sent nowhere else.
    pub server: String,
    /// `DRONE_TOKEN`, `DRONE_TOKEN_FILE` or the systemd credential `drone-token`.
    pub token: Option<Secret>,
    /// Most bytes of log kept for all of a build's failed steps together
    /// (`DRONE_LOG_MAX_BYTES`, default 8 MiB, at most Discord's 10 MiB a file).
    pub log_max_bytes: usize,
}

/// Which store backs the queue.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// The embedded store in this directory.
    Embedded { dir: PathBuf },
    /// MongoDB at this URI (may hold a password), using this database.
    Mongo { uri: Secret, database: String },
}

/// Everything `serve` needs, validated.
#[derive(Clone, Debug)]
pub struct Config {
    pub webhook_secret: Secret,
    /// `None` in dry-run: events are rendered and logged, not sent; and in
    /// a webhook-only setup.
    pub discord: Option<DiscordConfig>,
    pub dry_run: bool,
    pub listen_addr: SocketAddr,
    pub store: StoreConfig,
    /// The state directory (`STATE_DIR`, else systemd's `$STATE_DIRECTORY`,
    /// else `./data`), whatever the store: the embedded store and the
    /// gateway's identify ledger live there.
    pub state_dir: PathBuf,
    /// Signature `Date` window; `None` disables the check.
    pub date_window: Option<Duration>,
    pub max_body_bytes: usize,
    /// What the presence task checks; `None` → this process's own `/health`.
    pub healthcheck_url: Option<String>,
    pub healthcheck_interval: Duration,
    pub gateway_enabled: bool,
    pub unhealthy_presence: UnhealthyPresence,
    /// Extra CA bundle for the REST/gateway TLS (`SSL_CERT_FILE`).
    pub extra_ca_file: Option<PathBuf>,
    /// Log filter, e.g. `info` or `drone_discord=debug,info`.
    pub log_filter: String,
    /// Queue bounds and retentions (`QUEUE_MAX_EVENTS`, `QUEUE_MAX_BYTES`,
    /// `MESSAGE_RETENTION_DAYS`, `DEAD_LETTER_RETENTION_DAYS`).
    pub store_bounds: crate::store::Bounds,
    /// The routing file's routes, reloaded on `SIGHUP`, and the webhook
    /// credentials it names (loaded once).
    pub routing: std::sync::Arc<crate::routes::live::Live>,
    /// Who besides loopback may read `/metrics` and `/preview` (`METRICS_ALLOW`, CIDRs).
    pub metrics_allow: crate::allow_list::AllowList,
    /// Where "is the clock synchronised?" comes from (`CLOCK_SYNC`, see `clock::sync_source`).
    pub clock_sync: crate::clock::SyncSource,
    /// The Drone API; `None` when neither `DRONE_SERVER` nor a token is set.
    pub drone_api: Option<DroneApiConfig>,
}

/// The merged key/value settings: env file, then the process environment,
/// then flags (each layer overrides the previous), plus the credentials dir.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    values: HashMap<String, String>,
    credentials_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings from an optional env file and the process environment.
    pub fn load(env_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        if let Some(path) = env_file {
            let text = read_small_file(path).map_err(|e| ConfigError::new("--env-file", e))?;
            for (k, v) in parse_env_file(&text).map_err(|e| ConfigError::new("--env-file", e))? {
                s.values.insert(k, v);
            }
        }
        for (k, v) in std::env::vars_os() {
            if let (Some(k), Some(v)) = (k.to_str(), v.to_str()) {
                s.values.insert(k.to_string(), v.to_string());
            }
        }
        s.credentials_dir = s
            .values
            .get("CREDENTIALS_DIRECTORY")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(s)
    }

    /// Settings from explicit pairs only (tests, `--env-file`-free callers).
    pub fn from_pairs<I, K, V>(pairs: I) -> Settings
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let values: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let credentials_dir = values
            .get("CREDENTIALS_DIRECTORY")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Settings {
            values,
            credentials_dir,
        }
    }

    /// Override a setting (flags do this with the setting's env name).
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_string(), value.into());
    }

    /// A non-empty plain setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A secret: `NAME`, else the file named by `NAME_FILE`, else the systemd
    /// credential `cred`. Setting both `NAME` and `NAME_FILE` is an error.
    pub fn secret(&self, name: &str, cred: &str) -> Result<Option<Secret>, ConfigError> {
        let file_var = format!("{name}_FILE");
        match (
            self.values.get(name).filter(|v| !v.is_empty()),
            self.get(&file_var),
        ) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                name,
                format!("both {name} and {file_var} are set; keep one"),
            )),
            (Some(v), None) => Ok(Some(Secret(v.clone()))),
            (None, Some(path)) => read_secret_file(Path::new(path))
                .map(Some)
                .map_err(|e| ConfigError::new(&file_var, e)),
            (None, None) => match &self.credentials_dir {
                Some(dir) => {
                    let path = dir.join(cred);
                    if path.exists() {
                        read_secret_file(&path).map(Some).map_err(|e| {
                            ConfigError::new(name, format!("systemd credential {cred}: {e}"))
                        })
                    } else {
                        Ok(None)
                    }
                }
                None => Ok(None),
            },
        }
    }

    fn parse<T: std::str::FromStr>(
        &self,
        name: &str,
        what: &str,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<T>()
                .map(Some)
                .map_err(|_| ConfigError::new(name, format!("{v:?} is not {what}"))),
        }
    }
}

/// Flags of `serve` that override settings (already mapped by `main`).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub dry_run: bool,
    pub no_gateway: bool,
}

/// Systemd credential names for the secrets.
pub const CRED_WEBHOOK_SECRET: &str = "drone-webhook-secret";
pub const CRED_DISCORD_TOKEN: &str = "discord-token";
pub const CRED_MONGODB_URI: &str = "mongodb-uri";
pub const CRED_DRONE_TOKEN: &str = "drone-token";

impl Config {
    /// Validate `settings` into a config for `serve`.
    pub fn from_settings(s: &Settings, o: &Overrides) -> Result<Config, ConfigError> {
        let webhook_secret = s
            .secret("DRONE_WEBHOOK_SECRET", CRED_WEBHOOK_SECRET)?
            .ok_or_else(|| {
                ConfigError::new(
                "DRONE_WEBHOOK_SECRET",
                "not set; set it to the same value as DRONE_WEBHOOK_SECRET on the Drone server \
                 (or DRONE_WEBHOOK_SECRET_FILE, or the systemd credential drone-webhook-secret)",
            )
            })?;
        if webhook_secret.expose().len() < 8 {
            return Err(ConfigError::new(
                "DRONE_WEBHOOK_SECRET",
                "shorter than 8 characters; use a long random value",
            ));
        }

        let dry_run = o.dry_run || parse_bool(s, "DRY_RUN")?.unwrap_or(false);
        let mut live = crate::routes::live::Live::start(s)?;
        let discord = if dry_run {
            None
        } else {
            Some(serve_discord(s, Needs::of(&live))?)
        };
        if let Some(d) = &discord {
            // Fixed while running: a reload may not need what is not there.
            live.fix(d.bot, !d.channel_id.is_empty());
        }
        let routing = std::sync::Arc::new(live);

        let listen_addr = s
            .parse::<SocketAddr>("LISTEN_ADDR", "an address like 0.0.0.0:5000")?
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5000)));

        let store = store_config(s)?;
        let state_dir = state_dir(s);

        let date_window =
            match s.parse::<u64>("SIGNATURE_DATE_WINDOW", "a number of seconds (0 disables)")? {
                None => Some(Duration::from_secs(300)),
                Some(0) => None,
                Some(n) => Some(Duration::from_secs(n)),
            };
        let max_body_bytes = s
            .parse::<usize>("MAX_BODY_BYTES", "a number of bytes")?
            .unwrap_or(1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_body_bytes) {
            return Err(ConfigError::new(
                "MAX_BODY_BYTES",
                "must be between 1024 and 67108864",
            ));
        }

        let healthcheck_url = s.get("HEALTHCHECK_URL").map(str::to_string);
        if let Some(url) = &healthcheck_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    "HEALTHCHECK_URL",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let interval = s
            .parse::<u64>("HEALTHCHECK_INTERVAL", "a number of seconds")?
            .unwrap_or(10);
        if !(1..=3600).contains(&interval) {
            return Err(ConfigError::new(
                "HEALTHCHECK_INTERVAL",
                "must be between 1 and 3600 seconds",
            ));
        }

        let gateway_enabled = !o.no_gateway
            && !parse_bool(s, "NO_GATEWAY")?.unwrap_or(false)
            && discord.as_ref().is_some_and(|d| d.bot);
        let unhealthy_presence = match s.get("UNHEALTHY_PRESENCE").unwrap_or("invisible") {
            "invisible" | "offline" => UnhealthyPresence::Invisible,
            "dnd" => UnhealthyPresence::Dnd,
            other => {
                return Err(ConfigError::new(
                    "UNHEALTHY_PRESENCE",
                    format!("{other:?} is not one of: invisible, dnd"),
                ))
            }
        };

        let extra_ca_file = s.get("SSL_CERT_FILE").map(PathBuf::from);
        if let Some(p) = &extra_ca_file {
            if !p.is_file() {
                return Err(ConfigError::new(
                    "SSL_CERT_FILE",
                    format!("{} is not a readable file", p.display()),
                ));
            }
        }
        let log_filter = s
            .get("RUST_LOG")
            .or_else(|| s.get("LOG_LEVEL"))
            .unwrap_or("info")
            .to_string();
        let store_bounds = store_bounds(s)?;
        let metrics_allow =
            crate::allow_list::AllowList::parse(s.get("METRICS_ALLOW").unwrap_or(""))
                .map_err(|e| ConfigError::new("METRICS_ALLOW", e))?;
        let clock_sync = crate::clock::SyncSource::parse(s.get("CLOCK_SYNC").unwrap_or("auto"))
            .map_err(|e| ConfigError::new("CLOCK_SYNC", e))?;
        let drone_api = drone_api_config(s)?;

        Ok(Config {
            webhook_secret,
            discord,
            dry_run,
            listen_addr,
            store,
            state_dir,
            date_window,
            max_body_bytes,
            healthcheck_url,
            healthcheck_interval: Duration::from_secs(interval),
            gateway_enabled,
            unhealthy_presence,
            extra_ca_file,
            log_filter,
            store_bounds,
            metrics_allow,
            clock_sync,
            routing,
            drone_api,
        })
    }
}

/// The routing file (`--config` / `CONFIG_FILE`), if one is named.
pub fn routing_file(s: &Settings) -> Option<PathBuf> {
    s.get("CONFIG_FILE").map(PathBuf::from)
}

/// `DISCORD_API_BASE_URL`, without a trailing `/`.
fn api_base(s: &Settings) -> Result<String, ConfigError> {
    let api_base = s
        .get("DISCORD_API_BASE_URL")
        .unwrap_or("https://discord.com/api/v10")
        .trim_end_matches('/')
        .to_string();
    if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
        return Err(ConfigError::new(
            "DISCORD_API_BASE_URL",
            format!("{api_base:?} is not an http(s):// URL"),
        ));
    }
    Ok(api_base)
}

/// A setup that needs no bot: no `DISCORD_TOKEN` (nor its file or
/// credential), and a routing file whose routes are all webhook routes.
/// Only then may the token be absent; otherwise its absence is an error.
pub fn webhook_only(s: &Settings) -> Result<bool, ConfigError> {
    if s.secret("DISCORD_TOKEN", CRED_DISCORD_TOKEN)?.is_some() {
        return Ok(false);
    }
    Ok(match routing_file(s) {
        Some(path) => crate::routes::load(&path)?.webhook_only(),
        None => false,
    })
}

/// The queue's bounds and the retentions, each within a range that keeps
/// the service working (a queue that cannot hold one webhook, or a retention
/// of less than a day, would be a typo).
pub fn store_bounds(s: &Settings) -> Result<crate::store::Bounds, ConfigError> {
    use crate::store::{Bounds, DAY_MS};
    let d = Bounds::default();
    let ranged =
        |name: &str, what: &str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            let v = s.parse::<u64>(name, what)?.unwrap_or(default);
            if !(min..=max).contains(&v) {
                return Err(ConfigError::new(
                    name,
                    format!("must be between {min} and {max}"),
                ));
            }
            Ok(v)
        };
    Ok(Bounds {
        max_events: ranged(
            "QUEUE_MAX_EVENTS",
            "a number of events",
            d.max_events,
            1,
            100_000_000,
        )?,
        max_bytes: ranged(
            "QUEUE_MAX_BYTES",
            "a number of bytes",
            d.max_bytes,
            64 * 1024,
            1 << 40,
        )?,
        message_retention_ms: ranged(
            "MESSAGE_RETENTION_DAYS",
            "a number of days",
            d.message_retention_ms / DAY_MS,
            1,
            36_500,
        )? * DAY_MS,
        dead_letter_retention_ms: ranged(
            "DEAD_LETTER_RETENTION_DAYS",
            "a number of days",
            d.dead_letter_retention_ms / DAY_MS,
            1,
            36_500,
        )? * DAY_MS,
    })
}

/// Token, channel and API base, all required outside dry-run.
///
/// The token may be pasted as `Bot <token>` (the form of the `Authorization`
/// header): that one prefix, exactly `Bot ` and only once, is stripped here,
/// the single place that does it; everything downstream gets the bare token.
/// What remains must look like a token: at least 20 characters, no
/// whitespace, no control characters.
///
/// The channel id must be a Discord id ([`is_snowflake`]: digits only, no
/// leading zero, fits in 64 bits).
pub fn discord_config(s: &Settings) -> Result<DiscordConfig, ConfigError> {
    serve_discord(s, Needs::default())
}

/// What the routes in force need of the Discord settings.
#[derive(Clone, Copy, Debug, Default)]
struct Needs {
    /// Every route is a webhook route: no bot token needed.
    no_bot: bool,
    /// No route uses `DISCORD_CHANNEL_ID`.
    no_channel: bool,
}

impl Needs {
    fn of(routing: &crate::routes::live::Live) -> Needs {
        use crate::routes::Destination;
        if !routing.report().is_some_and(|r| r.routes > 0) {
            return Needs::default();
        }
        let r = routing.routing();
        Needs {
            no_bot: r.webhook_only(),
            no_channel: r
                .routes
                .iter()
                .all(|x| x.destination != Destination::Default),
        }
    }
}

/// The Discord settings `serve` needs: the token unless every route is a
/// webhook route (then `bot` is false and the token empty), the channel id
/// unless no route uses it (then empty).
fn serve_discord(s: &Settings, needs: Needs) -> Result<DiscordConfig, ConfigError> {
    let token = match s.secret("DISCORD_TOKEN", CRED_DISCORD_TOKEN)? {
        Some(t) => t,
        None if needs.no_bot => Secret::new(""),
        None => return Err(ConfigError::new(
            "DISCORD_TOKEN",
            "not set; set the bot token (or DISCORD_TOKEN_FILE, or the systemd credential discord-token), \
             or run with --dry-run to log messages instead of sending them",
        )),
    };
    let bot = !token.expose().is_empty();
    let token = match token.expose().strip_prefix("Bot ") {
        Some(bare) => Secret::new(bare),
        None => token,
    };
    let t = token.expose();
    if bot && (t.len() < 20 || t.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(ConfigError::new(
            "DISCORD_TOKEN",
            "does not look like a bot token (no spaces; copy it from the Developer Portal)",
        ));
    }
    let channel_id = match s.get("DISCORD_CHANNEL_ID") {
        Some(c) => c.to_string(),
        None if needs.no_channel => String::new(),
        None => return Err(ConfigError::new(
            "DISCORD_CHANNEL_ID",
            "not set; set it to the channel's id (Developer Mode, right-click the channel, Copy Channel ID)",
        )),
    };
    if !(channel_id.is_empty() || is_snowflake(&channel_id)) {
        return Err(ConfigError::new(
            "DISCORD_CHANNEL_ID",
            format!("{channel_id:?} is not a Discord id (digits only, e.g. 123456789012345678)"),
        ));
    }
    let api_base = api_base(s)?;
    let gateway_url = s.get("DISCORD_GATEWAY_URL").map(str::to_string);
    if let Some(g) = &gateway_url {
        if !(g.starts_with("wss://") || g.starts_with("ws://")) {
            return Err(ConfigError::new(
                "DISCORD_GATEWAY_URL",
                format!("{g:?} is not a ws:// or wss:// URL"),
            ));
        }
    }
    // Discord remembers a nonce "for the past few minutes": trusting it
    // longer than 5 minutes would repeat creates it has forgotten.
    let nonce_window =
        match s.parse::<u64>("DISCORD_NONCE_WINDOW", "a number of seconds")? {
            None => crate::relay::DEFAULT_NONCE_WINDOW,
            Some(n) if n <= 300 => Duration::from_secs(n),
            Some(_) => return Err(ConfigError::new(
                "DISCORD_NONCE_WINDOW",
                "must be at most 300 seconds (Discord remembers a nonce for a few minutes only)",
            )),
        };
    Ok(DiscordConfig {
        token,
        bot,
        channel_id,
        api_base,
        gateway_url,
        nonce_window,
    })
}

/// The Drone API settings, or `None` when neither `DRONE_SERVER` nor a token
/// is set. A token needs `DRONE_SERVER`: it is sent to that server only.
pub fn drone_api_config(s: &Settings) -> Result<Option<DroneApiConfig>, ConfigError> {
    let token = s.secret("DRONE_TOKEN", CRED_DRONE_TOKEN)?;
    if let Some(t) = &token {
        if t.expose()
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(ConfigError::new(
                "DRONE_TOKEN",
                "contains whitespace or control characters; copy it from Drone's user settings",
            ));
        }
    }
    let Some(server) = s.get("DRONE_SERVER") else {
        return match token {
            None => Ok(None),
            Some(_) => Err(ConfigError::new(
                "DRONE_SERVER",
                "not set, but a Drone token is; set it to the Drone server's URL, \
                 e.g. https://drone.example.com (the token is sent there only)",
            )),
        };
    };
    // The value is not echoed: a pasted URL may carry a password.
    use crate::http::client::{Scheme, Url};
    let ok = Url::parse(server).is_ok_and(|u| {
        matches!(u.scheme, Scheme::Http | Scheme::Https) && !u.path_and_query.contains('?')
    });
    if !ok {
        return Err(ConfigError::new(
            "DRONE_SERVER",
            "is not an http:// or https:// URL without a query, e.g. https://drone.example.com",
        ));
    }
    let log_max_bytes = s
        .parse::<usize>("DRONE_LOG_MAX_BYTES", "a number of bytes")?
        .unwrap_or(8 << 20);
    if log_max_bytes > 10 << 20 {
        return Err(ConfigError::new(
            "DRONE_LOG_MAX_BYTES",
            "must be at most 10485760 (Discord's limit for one file)",
        ));
    }
    Ok(Some(DroneApiConfig {
        server: server.trim_end_matches('/').to_string(),
        token,
        log_max_bytes,
    }))
}

/// The embedded store unless MongoDB is asked for (`STORE`, `MONGODB_URI`, `MONGO_HOST`).
pub fn store_config(s: &Settings) -> Result<StoreConfig, ConfigError> {
    let mongo_uri = s.secret("MONGODB_URI", CRED_MONGODB_URI)?;
    let wants_mongo = match s.get("STORE") {
        Some("embedded") => false,
        Some("mongodb") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "STORE",
                format!("{other:?} is not one of: embedded, mongodb"),
            ))
        }
        None => mongo_uri.is_some() || s.get("MONGO_HOST").is_some(),
    };
    if !wants_mongo {
        return Ok(StoreConfig::Embedded { dir: state_dir(s) });
    }
    if !cfg!(feature = "mongodb") {
        let which = if mongo_uri.is_some() {
            "MONGODB_URI"
        } else if s.get("MONGO_HOST").is_some() {
            "MONGO_HOST"
        } else {
            "STORE"
        };
        return Err(ConfigError::new(
            which,
            "asks for MongoDB but this build has no MongoDB support; use a build with --features mongodb, \
             or set STORE=embedded to use the embedded store",
        ));
    }
    let database = s
        .get("MONGO_DATABASE")
        .unwrap_or("drone_discord")
        .to_string();
    if database.is_empty()
        || database.len() > 63
        || database.chars().any(|c| "/\\. \"$".contains(c))
    {
        return Err(ConfigError::new(
            "MONGO_DATABASE",
            format!("{database:?} is not a valid MongoDB database name"),
        ));
    }
    let uri = match mongo_uri {
        Some(u) => {
            if !(u.expose().starts_with("mongodb://") || u.expose().starts_with("mongodb+srv://")) {
                return Err(ConfigError::new(
                    "MONGODB_URI",
                    "must start with mongodb:// or mongodb+srv://",
                ));
            }
            u
        }
        None => {
            let host = s
                .get("MONGO_HOST")
                .ok_or_else(|| ConfigError::new("MONGO_HOST", "not set"))?;
            let port = s
                .parse::<u16>("MONGO_PORT", "a port number")?
                .unwrap_or(27017);
            let user = s.get("MONGO_INITDB_ROOT_USERNAME");
            let pass = s.secret("MONGO_INITDB_ROOT_PASSWORD", "mongo-password")?;
            Secret(crate::store::mongo_uri::uri_from_parts(
                host,
                Some(port),
                user,
                pass.as_ref().map(Secret::expose),
            ))
        }
    };
    Ok(StoreConfig::Mongo { uri, database })
}

/// `STATE_DIR`, else the first of systemd's `$STATE_DIRECTORY`, else `./data`.
fn state_dir(s: &Settings) -> PathBuf {
    let dir = s
        .get("STATE_DIR")
        .or_else(|| s.get("STATE_DIRECTORY").and_then(|d| d.split(':').next()))
        .unwrap_or("./data");
    PathBuf::from(dir)
}

fn parse_bool(s: &Settings, name: &str) -> Result<Option<bool>, ConfigError> {
    match s.get(name).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(None),
        Some("1" | "true" | "yes" | "on") => Ok(Some(true)),
        Some("0" | "false" | "no" | "off") => Ok(Some(false)),
        Some(other) => Err(ConfigError::new(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

pub(crate) fn read_small_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than {MAX_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(text)
}

/// A secret file's content, without its trailing newline.
fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let text = read_small_file(path)?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret(value))
}

/// Parse a dotenv-style file: `KEY=value`, `export KEY=value`, `#` comments,
/// blank lines, single- or double-quoted values (double quotes understand
/// `\n`, `\"`, `\\`), and ` #` trailing comments after unquoted values.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=value", i + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("line {}: {key:?} is not a variable name", i + 1));
        }
        let value = value.trim();
        let value = if let Some(rest) = value.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => v.push('\n'),
                        Some(other) => v.push(other),
                        None => break,
                    },
                    c => v.push(c),
                }
            }
            if !closed {
                return Err(format!("line {}: unterminated double quote", i + 1));
            }
            v
        } else if let Some(rest) = value.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_string(),
                None => return Err(format!("line {}: unterminated single quote", i + 1)),
            }
        } else {
            match value.find(" #") {
                Some(pos) => value[..pos].trim_end().to_string(),
                None => value.to_string(),
            }
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.GabcDE.abcdefghijklmnopqrstuvwxyz012345";

    fn base() -> Settings {
        Settings::from_pairs([
            ("DRONE_WEBHOOK_SECRET", "webhook-secret"),
            ("DISCORD_TOKEN", TOKEN),
            ("DISCORD_CHANNEL_ID", "123456789012345678"),
        ])
    }

    fn err(s: &Settings, o: &Overrides) -> ConfigError {
        match Config::from_settings(s, o) {
            Err(e) => e,
            Ok(_) => panic!("expected a configuration error"),
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_settings(&base(), &Overrides::default()).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(c.date_window, Some(Duration::from_secs(300)));
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert_eq!(c.healthcheck_interval, Duration::from_secs(10));
        assert!(c.gateway_enabled);
        let d = c.discord.unwrap();
        assert_eq!(d.api_base, "https://discord.com/api/v10");
        assert!(matches!(c.store, StoreConfig::Embedded { ref dir } if dir == Path::new("./data")));
        assert_eq!(c.store_bounds, crate::store::Bounds::default());
    }

    #[test]
    fn store_bounds_are_read() {
        let mut s = base();
        for (k, v) in [
            ("QUEUE_MAX_EVENTS", "3"),
            ("QUEUE_MAX_BYTES", "65536"),
            ("MESSAGE_RETENTION_DAYS", "2"),
            ("DEAD_LETTER_RETENTION_DAYS", "1"),
        ] {
            s.set(k, v);
        }
        let b = Config::from_settings(&s, &Overrides::default())
            .unwrap()
            .store_bounds;
        let day = crate::store::DAY_MS;
        assert_eq!(
            (
                b.max_events,
                b.max_bytes,
                b.message_retention_ms,
                b.dead_letter_retention_ms
            ),
            (3, 65536, 2 * day, day)
        );
    }

    #[test]
    fn metrics_allow_is_parsed_and_a_bad_value_names_the_setting() {
        let c = Config::from_settings(&base(), &Overrides::default()).unwrap();
        assert_eq!(
            c.metrics_allow,
            crate::allow_list::AllowList::loopback_only()
        );
        let mut s = base();
        s.set("METRICS_ALLOW", "192.168.1.0/24, fd00::/8");
        let allow = Config::from_settings(&s, &Overrides::default())
            .unwrap()
            .metrics_allow;
        assert!(allow.permits("192.168.1.9".parse().unwrap()));
        assert!(allow.permits("fd00::9".parse().unwrap()));
        assert!(!allow.permits("10.0.0.1".parse().unwrap()));
        s.set("METRICS_ALLOW", "192.168.1.1/24");
        let e = err(&s, &Overrides::default());
        assert_eq!(e.setting, "METRICS_ALLOW");
        let line = e.to_string();
        assert!(
            !line.contains('\n') && line.contains("192.168.1.0/24"),
            "{line}"
        );
    }

    #[test]
    fn missing_secret_names_the_setting() {
        let e = err(
            &Settings::from_pairs([("DISCORD_TOKEN", TOKEN)]),
            &Overrides::default(),
        );
        assert_eq!(e.setting, "DRONE_WEBHOOK_SECRET");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn token_required_unless_dry_run() {
        let s = Settings::from_pairs([("DRONE_WEBHOOK_SECRET", "webhook-secret")]);
        let e = err(&s, &Overrides::default());
        assert_eq!(e.setting, "DISCORD_TOKEN");
        assert!(e.problem.contains("--dry-run"));
        let c = Config::from_settings(
            &s,
            &Overrides {
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(c.discord.is_none() && c.dry_run && !c.gateway_enabled);
    }

    #[test]
    fn bad_values_are_named() {
        for (k, v) in [
            ("DISCORD_CHANNEL_ID", "general"),
            ("LISTEN_ADDR", "5000"),
            ("HEALTHCHECK_INTERVAL", "0"),
            ("HEALTHCHECK_URL", "localhost/health"),
            ("UNHEALTHY_PRESENCE", "away"),
            ("DISCORD_API_BASE_URL", "discord.com"),
            ("DISCORD_GATEWAY_URL", "https://gateway"),
            ("SIGNATURE_DATE_WINDOW", "-1"),
            ("MAX_BODY_BYTES", "10"),
            ("STORE", "postgres"),
            ("DRY_RUN", "maybe"),
            ("QUEUE_MAX_EVENTS", "0"),
            ("QUEUE_MAX_EVENTS", "lots"),
            ("QUEUE_MAX_BYTES", "100"),
            ("MESSAGE_RETENTION_DAYS", "0"),
            ("DEAD_LETTER_RETENTION_DAYS", "-3"),
        ] {
            let mut s = base();
            s.set(k, v);
            assert_eq!(err(&s, &Overrides::default()).setting, k, "{k}={v}");
        }
    }

    #[test]
    fn token_is_never_printed() {
        let c = Config::from_settings(&base(), &Overrides::default()).unwrap();
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains(TOKEN) && !dbg.contains("webhook-secret"),
            "{dbg}"
        );
        let mut s = base();
        s.set("DISCORD_TOKEN", format!("{TOKEN} {TOKEN}"));
        let e = err(&s, &Overrides::default());
        assert!(!e.to_string().contains(TOKEN));
    }

    #[test]
    fn the_nonce_window_defaults_to_a_minute_and_stays_inside_discords() {
        let window = |v: Option<&str>| {
            let mut s = base();
            if let Some(v) = v {
                s.set("DISCORD_NONCE_WINDOW", v);
            }
            discord_config(&s).map(|d| d.nonce_window)
        };
        assert_eq!(window(None).unwrap(), Duration::from_secs(60));
        assert_eq!(window(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(window(Some("300")).unwrap(), Duration::from_secs(300));
        for bad in ["301", "-1", "soon"] {
            assert_eq!(
                window(Some(bad)).unwrap_err().setting,
                "DISCORD_NONCE_WINDOW"
            );
        }
    }

    fn token_of(value: &str) -> Result<String, ConfigError> {
        let mut s = base();
        s.set("DISCORD_TOKEN", value);
        discord_config(&s).map(|d| d.token.expose().to_string())
    }

    #[test]
    fn a_pasted_bot_prefix_is_stripped_once() {
        // The REST client and the gateway used to strip it themselves; now
        // only this does, and they get the bare token.
        assert_eq!(token_of(&format!("Bot {TOKEN}")).unwrap(), TOKEN);
        assert_eq!(token_of(TOKEN).unwrap(), TOKEN);
        let mut s = base();
        s.set("DISCORD_TOKEN", format!("Bot {TOKEN}"));
        let d = Config::from_settings(&s, &Overrides::default())
            .unwrap()
            .discord
            .unwrap();
        assert_eq!(d.rest_config(None, Duration::from_secs(1)).token, TOKEN);
        // Once only, and only that exact spelling.
        assert_eq!(
            token_of(&format!("Bot Bot {TOKEN}")).unwrap_err().setting,
            "DISCORD_TOKEN"
        );
        assert_eq!(
            token_of(&format!("bot {TOKEN}")).unwrap_err().setting,
            "DISCORD_TOKEN"
        );
        assert_eq!(
            token_of(&format!("Bot  {TOKEN}")).unwrap_err().setting,
            "DISCORD_TOKEN"
        );
    }

    #[test]
    fn tokens_with_whitespace_or_control_characters_are_refused() {
        let (head, tail) = TOKEN.split_at(10);
        for bad in [
            format!("{head} {tail}"),
            format!("{head}\t{tail}"),
            format!("{head}\u{a0}{tail}"),
            format!("{head}\u{7f}{tail}"),
            format!("{TOKEN}\r\nX-Evil: 1"),
            format!(" {TOKEN}"),
            format!("Bot {TOKEN} "),
            "Bot short".to_string(),
        ] {
            let e = token_of(&bad).unwrap_err();
            assert_eq!(e.setting, "DISCORD_TOKEN", "{bad:?}");
            assert!(!e.to_string().contains(tail), "{e}");
        }
    }

    #[test]
    fn channel_id_follows_the_snowflake_rule() {
        for bad in [
            "0123456789012345678",
            "18446744073709551616",
            "+123456789012345678",
            "１２３",
        ] {
            let mut s = base();
            s.set("DISCORD_CHANNEL_ID", bad);
            let e = err(&s, &Overrides::default());
            assert_eq!(e.setting, "DISCORD_CHANNEL_ID", "{bad}");
            assert!(e.problem.contains("is not a Discord id"), "{e}");
        }
        let mut s = base();
        s.set("DISCORD_CHANNEL_ID", u64::MAX.to_string());
        assert!(Config::from_settings(&s, &Overrides::default()).is_ok());
    }

    #[test]
    fn secret_from_file_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "from-a-file-secret\n").unwrap();
        let s = Settings::from_pairs([("DRONE_WEBHOOK_SECRET_FILE", f.to_str().unwrap())]);
        assert_eq!(
            s.secret("DRONE_WEBHOOK_SECRET", CRED_WEBHOOK_SECRET)
                .unwrap()
                .unwrap()
                .expose(),
            "from-a-file-secret"
        );

        std::fs::write(dir.path().join(CRED_WEBHOOK_SECRET), "credential-secret").unwrap();
        let s = Settings::from_pairs([("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
        assert_eq!(
            s.secret("DRONE_WEBHOOK_SECRET", CRED_WEBHOOK_SECRET)
                .unwrap()
                .unwrap()
                .expose(),
            "credential-secret"
        );

        let s = Settings::from_pairs([
            ("DRONE_WEBHOOK_SECRET", "x"),
            ("DRONE_WEBHOOK_SECRET_FILE", "/nonexistent"),
        ]);
        assert!(s
            .secret("DRONE_WEBHOOK_SECRET", CRED_WEBHOOK_SECRET)
            .is_err());
        let s = Settings::from_pairs([("DRONE_WEBHOOK_SECRET_FILE", "/nonexistent/secret")]);
        assert_eq!(
            s.secret("DRONE_WEBHOOK_SECRET", CRED_WEBHOOK_SECRET)
                .unwrap_err()
                .setting,
            "DRONE_WEBHOOK_SECRET_FILE"
        );
    }

    #[test]
    fn drone_api_settings() {
        assert!(drone_api_config(&base()).unwrap().is_none());
        let with = |pairs: &[(&str, &str)]| drone_api_config(&Settings::from_pairs(pairs.to_vec()));
        let d = with(&[("DRONE_SERVER", "https://drone.example.com/")])
            .unwrap()
            .unwrap();
        assert_eq!(d.server, "https://drone.example.com");
        assert!(d.token.is_none());
        assert_eq!(d.log_max_bytes, 8 << 20);
        let d = with(&[
            ("DRONE_SERVER", "http://10.0.0.2:8080"),
            ("DRONE_TOKEN", "t0k3n"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(d.token.as_ref().map(Secret::expose), Some("t0k3n"));
        assert!(!format!("{d:?}").contains("t0k3n"));
        for (pairs, setting) in [
            (&[("DRONE_TOKEN", "t0k3n")][..], "DRONE_SERVER"),
            (&[("DRONE_SERVER", "drone.example.com")][..], "DRONE_SERVER"),
            (
                &[("DRONE_SERVER", "wss://drone.example.com")][..],
                "DRONE_SERVER",
            ),
            (&[("DRONE_SERVER", "https://d/?x=1")][..], "DRONE_SERVER"),
            (
                &[("DRONE_SERVER", "https://d"), ("DRONE_TOKEN", "a b")][..],
                "DRONE_TOKEN",
            ),
            (
                &[
                    ("DRONE_SERVER", "https://d"),
                    ("DRONE_LOG_MAX_BYTES", "20000000"),
                ][..],
                "DRONE_LOG_MAX_BYTES",
            ),
        ] {
            let e = with(pairs).unwrap_err();
            assert_eq!(e.setting, setting, "{pairs:?}: {e}");
            assert!(!e.to_string().contains("t0k3n"));
        }
        // The credential, as mongodb-uri is read.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CRED_DRONE_TOKEN), "from-credential\n").unwrap();
        let d = with(&[
            ("DRONE_SERVER", "https://d"),
            ("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap()),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            d.token.as_ref().map(Secret::expose),
            Some("from-credential")
        );
        let c = Config::from_settings(&base(), &Overrides::default()).unwrap();
        assert!(c.drone_api.is_none());
    }

    #[test]
    fn state_dir_from_systemd() {
        let mut s = base();
        s.set("STATE_DIRECTORY", "/var/lib/drone-discord:/var/lib/other");
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        assert!(
            matches!(c.store, StoreConfig::Embedded { ref dir } if dir == Path::new("/var/lib/drone-discord"))
        );
        s.set("STATE_DIR", "/srv/dd");
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        assert!(
            matches!(c.store, StoreConfig::Embedded { ref dir } if dir == Path::new("/srv/dd"))
        );
    }

    #[test]
    fn old_mongo_variables() {
        let mut s = base();
        s.set("MONGO_HOST", "mongo");
        let r = store_config(&s);
        if cfg!(feature = "mongodb") {
            assert!(matches!(r, Ok(StoreConfig::Mongo { .. })));
        } else {
            let e = r.unwrap_err();
            assert_eq!(e.setting, "MONGO_HOST");
            assert!(e.problem.contains("STORE=embedded"));
        }
        s.set("STORE", "embedded");
        assert!(matches!(store_config(&s), Ok(StoreConfig::Embedded { .. })));
    }

    #[test]
    fn env_file_syntax() {
        let text = "# comment\nexport A=1\nB = \"two words\\n\" \nC='single # kept'\nD=plain # trailing\n\nE=\n";
        let v = parse_env_file(text).unwrap();
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words\n".into()),
                ("C".into(), "single # kept".into()),
                ("D".into(), "plain".into()),
                ("E".into(), "".into()),
            ]
        );
        assert!(parse_env_file("no equals sign").is_err());
        assert!(parse_env_file("A=\"open").is_err());
        assert!(parse_env_file("BAD-NAME=1").is_err());
    }

    /// Only when every route is a webhook route may the token be absent:
    /// then there is no bot, no gateway; otherwise the token stays required.
    #[test]
    fn webhook_only_routes_need_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        let mut s = Settings::from_pairs([
            ("DRONE_WEBHOOK_SECRET", "webhook-secret"),
            ("CONFIG_FILE", f.to_str().unwrap()),
            (
                "DISCORD_WEBHOOK_OPS",
                "https://discord.com/api/webhooks/223456789012345678/secret-token_123",
            ),
        ]);
        std::fs::write(&f, "[[route]]\nwebhook = \"ops\"\n").unwrap();
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        let d = c.discord.as_ref().expect("a REST client for the webhooks");
        assert!(!d.bot && !c.dry_run && !c.gateway_enabled);
        assert_eq!(d.api_base, "https://discord.com/api/v10");
        std::fs::write(&f, "[[route]]\nwebhook = \"ops\"\n[[route]]\n").unwrap();
        assert_eq!(err(&s, &Overrides::default()).setting, "DISCORD_TOKEN");
        // With a token, webhook routes keep the bot (its presence).
        std::fs::write(&f, "[[route]]\nwebhook = \"ops\"\n").unwrap();
        s.set("DISCORD_TOKEN", TOKEN);
        s.set("DISCORD_CHANNEL_ID", "123456789012345678");
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        assert!(c.discord.as_ref().is_some_and(|d| d.bot) && c.gateway_enabled);
    }

    #[test]
    fn serve_loads_a_routing_file_with_routes_or_users_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        let mut s = base();
        s.set("CONFIG_FILE", f.to_str().unwrap());
        std::fs::write(&f, "[users]\nanon = \"1\"\n").unwrap();
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        assert_eq!(c.routing.report().unwrap().routes, 0);
        std::fs::write(&f, "[[route]]\nchannel = \"123456789012345678\"\n").unwrap();
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        assert_eq!(c.routing.report().unwrap().routes, 1);
        assert_eq!(
            c.routing.routing().routes[0].destination,
            crate::routes::Destination::Channel("123456789012345678".into())
        );
        std::fs::write(&f, "[[route]]\nwhen = \"soon\"\n").unwrap();
        assert!(err(&s, &Overrides::default())
            .setting
            .ends_with("config.toml:2"));
        std::fs::write(&f, "[[route]]\nwebhook = \"ops\"\n").unwrap();
        assert_eq!(
            err(&s, &Overrides::default()).setting,
            "DISCORD_WEBHOOK_OPS"
        );
        s.set(
            "CONFIG_FILE",
            dir.path().join("missing.toml").to_str().unwrap(),
        );
        assert_eq!(err(&s, &Overrides::default()).setting, "CONFIG_FILE");
    }

    #[test]
    fn routes_that_name_their_destinations_need_no_channel_id_and_webhooks_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        let url = "https://discord.com/api/webhooks/223456789012345678/secret-token_123";
        let mut s = Settings::from_pairs([
            ("DRONE_WEBHOOK_SECRET", "webhook-secret"),
            ("CONFIG_FILE", f.to_str().unwrap()),
            ("DISCORD_WEBHOOK_OPS", url),
        ]);
        std::fs::write(&f, "[[route]]\nwebhook = \"ops\"\n").unwrap();
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        let d = c.discord.unwrap();
        assert!(!d.bot && d.channel_id.is_empty() && !c.gateway_enabled);
        std::fs::write(&f, "[[route]]\nchannel = \"123456789012345678\"\n").unwrap();
        assert_eq!(err(&s, &Overrides::default()).setting, "DISCORD_TOKEN");
        s.set("DISCORD_TOKEN", TOKEN);
        let c = Config::from_settings(&s, &Overrides::default()).unwrap();
        assert!(c.discord.unwrap().bot);
        std::fs::write(&f, "[[route]]\nrepos = [\"a/*\"]\n").unwrap();
        assert_eq!(err(&s, &Overrides::default()).setting, "DISCORD_CHANNEL_ID");
    }

    #[test]
    fn env_file_is_weaker_than_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(".env");
        std::fs::write(&f, "DD_TEST_ONLY_IN_FILE=file\nPATH=from-file\n").unwrap();
        let s = Settings::load(Some(&f)).unwrap();
        assert_eq!(s.get("DD_TEST_ONLY_IN_FILE"), Some("file"));
        assert_ne!(s.get("PATH"), Some("from-file"));
    }
}
