//! The `drone-discord` command line: `serve`, `send`, `check`, `render`,
//! `route`, `queue`, `migrate`.
//!
//! Every command returns its failure to `main`, which prints it as one line
//! and exits with the code [`cli_error`] chooses (1 the operation failed,
//! 2 usage or configuration).
use argh::FromArgs;
use cli_error::CliError;
use drone_discord::config::{Config, ConfigError, Overrides, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

mod cli_error;
mod commands;
#[cfg(drone_discord_no_unwind_tables)]
mod no_backtrace;
mod routing_commands;

/// Drone CI webhooks to Discord: one message per build, edited live.
#[derive(FromArgs)]
struct Cli {
    /// print the version and exit
    #[argh(switch)]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
// Parsed once at start-up: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    Serve(ServeArgs),
    Send(SendArgs),
    Check(CheckArgs),
    Render(RenderArgs),
    Route(RouteArgs),
    Queue(QueueArgs),
    Migrate(MigrateArgs),
}

/// Run the service: accept Drone webhooks and deliver them to Discord.
#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
struct ServeArgs {
    /// read settings from this env file (e.g. the old service's .env); the environment wins over it
    #[argh(option)]
    env_file: Option<PathBuf>,
    /// the routing file (CONFIG_FILE): routes per repository and branch, reloaded on SIGHUP
    #[argh(option)]
    config: Option<String>,
    /// render and log messages instead of calling Discord (no token needed)
    #[argh(switch)]
    dry_run: bool,
    /// do not connect to the Discord gateway (no presence)
    #[argh(switch)]
    no_gateway: bool,
    /// listen address for webhooks and /health (LISTEN_ADDR, default 0.0.0.0:5000)
    #[argh(option)]
    listen: Option<String>,
    /// embedded store directory (STATE_DIR, default $STATE_DIRECTORY or ./data)
    #[argh(option)]
    state_dir: Option<String>,
    /// the Discord channel id (DISCORD_CHANNEL_ID)
    #[argh(option)]
    channel_id: Option<String>,
    /// the Discord REST base URL (DISCORD_API_BASE_URL)
    #[argh(option)]
    api_base: Option<String>,
    /// the Discord gateway URL (DISCORD_GATEWAY_URL; default: ask Discord)
    #[argh(option)]
    gateway_url: Option<String>,
    /// URL the presence task checks (HEALTHCHECK_URL; default this process's /health)
    #[argh(option)]
    healthcheck_url: Option<String>,
    /// seconds between presence health checks (HEALTHCHECK_INTERVAL, default 10)
    #[argh(option)]
    healthcheck_interval: Option<String>,
    /// presence while unhealthy: invisible (default) or dnd (UNHEALTHY_PRESENCE)
    #[argh(option)]
    unhealthy_presence: Option<String>,
    /// accepted clock skew of the signed Date in seconds, 0 disables (SIGNATURE_DATE_WINDOW, default 300)
    #[argh(option)]
    date_window: Option<String>,
    /// largest accepted webhook body in bytes (MAX_BODY_BYTES, default 1048576)
    #[argh(option)]
    max_body: Option<String>,
    /// log filter such as info or drone_discord=debug (RUST_LOG / LOG_LEVEL, default info)
    #[argh(option)]
    log: Option<String>,
}

/// Sign a payload exactly as Drone does and POST it (for testing a deployment).
#[derive(FromArgs)]
#[argh(subcommand, name = "send")]
struct SendArgs {
    /// the JSON payload to send (e.g. test/fixtures/drone/build_created.json)
    #[argh(positional)]
    fixture: PathBuf,
    /// where to send it (default http://localhost:5000/)
    #[argh(option, default = "String::from(\"http://localhost:5000/\")")]
    url: String,
    /// read DRONE_WEBHOOK_SECRET from this env file
    #[argh(option)]
    env_file: Option<PathBuf>,
}

/// Check the token, the channel, the routing file's routes and the store; one line per check.
#[derive(FromArgs)]
#[argh(subcommand, name = "check")]
struct CheckArgs {
    /// read settings from this env file
    #[argh(option)]
    env_file: Option<PathBuf>,
    /// the routing file (CONFIG_FILE)
    #[argh(option)]
    config: Option<PathBuf>,
}

/// Print which routes an event matches and what each destination would get (no Discord calls).
#[derive(FromArgs)]
#[argh(subcommand, name = "route")]
struct RouteArgs {
    /// the Drone webhook payload (JSON file)
    #[argh(positional)]
    fixture: PathBuf,
    /// the routing file (CONFIG_FILE)
    #[argh(option)]
    config: Option<PathBuf>,
    /// read settings (CONFIG_FILE, DISCORD_CHANNEL_ID) from this env file
    #[argh(option)]
    env_file: Option<PathBuf>,
}

/// Print the Discord message JSON a payload would produce (or, with --html, the card Discord would show).
#[derive(FromArgs)]
#[argh(subcommand, name = "render")]
struct RenderArgs {
    /// the Drone webhook payload (JSON file)
    #[argh(positional)]
    fixture: PathBuf,
    /// write the message as a standalone HTML page, rendered as Discord shows it
    #[argh(switch)]
    html: bool,
    /// write to this file instead of stdout
    #[argh(option)]
    out: Option<PathBuf>,
}

/// List queued events and dead letters; `queue retry ID|all` queues dead letters again, `queue purge ID|all` removes them.
#[derive(FromArgs)]
#[argh(subcommand, name = "queue")]
struct QueueArgs {
    /// nothing (list), or retry ID|all, or purge ID|all (dead letters)
    #[argh(positional)]
    action: Vec<String>,
    /// read settings from this env file
    #[argh(option)]
    env_file: Option<PathBuf>,
    /// how many of each to list (default 20)
    #[argh(option, default = "20")]
    limit: usize,
}

/// Import the old Python service's build → message map from its MongoDB.
#[derive(FromArgs)]
#[argh(subcommand, name = "migrate")]
struct MigrateArgs {
    /// the old service's MongoDB URI (e.g. mongodb://root:pw@mongo:27017/?authSource=admin)
    #[argh(option)]
    from: String,
    /// the old service's database (default: MONGO_DATABASE from the environment or --env-file)
    #[argh(option)]
    from_database: Option<String>,
    /// read settings (DISCORD_CHANNEL_ID, the target store) from this env file
    #[argh(option)]
    env_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    if cli.version {
        println!("drone-discord {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        return CliError::Usage(
            "no command given; try `drone-discord serve --dry-run` or `drone-discord --help`"
                .into(),
        )
        .report();
    };
    let result = match command {
        Command::Serve(a) => serve(a),
        Command::Send(a) => commands::send(&a.fixture, &a.url, a.env_file.as_deref()),
        Command::Check(a) => commands::check(a.env_file.as_deref(), a.config.as_deref()),
        Command::Render(a) => commands::render(&a.fixture, a.html, a.out.as_deref()),
        Command::Route(a) => {
            routing_commands::route(&a.fixture, a.env_file.as_deref(), a.config.as_deref())
        }
        Command::Queue(a) => match a.action.as_slice() {
            [] => commands::queue(a.env_file.as_deref(), a.limit),
            [action] => commands::queue_act(a.env_file.as_deref(), action, None),
            [action, target] => commands::queue_act(a.env_file.as_deref(), action, Some(target)),
            _ => Err(CliError::usage(
                "queue",
                "too many arguments; use retry|purge ID|all",
            )),
        },
        Command::Migrate(a) => {
            commands::migrate(a.env_file.as_deref(), &a.from, a.from_database.as_deref())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

/// The arguments, as `argh::from_env` parses them, except that a bad
/// argument is a usage error (exit 2, one line) rather than argh's exit 1.
fn parse_args() -> Result<Cli, ExitCode> {
    let mut args = Vec::new();
    for a in std::env::args_os().skip(1) {
        match a.into_string() {
            Ok(a) => args.push(a),
            Err(a) => {
                return Err(CliError::usage(
                    "arguments",
                    format!("{:?} is not UTF-8", a.to_string_lossy()),
                )
                .report())
            }
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Cli::from_args(&["drone-discord"], &args).map_err(|early| match early.status {
        Ok(()) => {
            println!("{}", early.output);
            ExitCode::SUCCESS
        }
        Err(()) => CliError::Usage(format!(
            "{}; run drone-discord --help for more information",
            early.output.trim_end()
        ))
        .report(),
    })
}

/// Settings → validated config → logging → runtime → service.
fn serve(a: ServeArgs) -> Result<(), CliError> {
    let mut s = Settings::load(a.env_file.as_deref())?;
    for (name, value) in [
        ("LISTEN_ADDR", a.listen),
        ("CONFIG_FILE", a.config),
        ("STATE_DIR", a.state_dir),
        ("DISCORD_CHANNEL_ID", a.channel_id),
        ("DISCORD_API_BASE_URL", a.api_base),
        ("DISCORD_GATEWAY_URL", a.gateway_url),
        ("HEALTHCHECK_URL", a.healthcheck_url),
        ("HEALTHCHECK_INTERVAL", a.healthcheck_interval),
        ("UNHEALTHY_PRESENCE", a.unhealthy_presence),
        ("SIGNATURE_DATE_WINDOW", a.date_window),
        ("MAX_BODY_BYTES", a.max_body),
        ("RUST_LOG", a.log),
    ] {
        if let Some(v) = value {
            s.set(name, v);
        }
    }
    let cfg = Config::from_settings(
        &s,
        &Overrides {
            dry_run: a.dry_run,
            no_gateway: a.no_gateway,
        },
    )?;
    commands::init_logging(&cfg.log_filter).map_err(|e| ConfigError::new("RUST_LOG", e))?;
    // Read and unset LISTEN_FDS/LISTEN_PID while the process has one thread.
    let _ = drone_discord::socket_activation::claim();
    let rt = commands::runtime()?;
    rt.block_on(drone_discord::service::run(cfg)).map_err(|e| {
        tracing::error!(error = %e, "start-up failed");
        // The service decides which start-up failures are passing (exit 1).
        match e.exit_code() {
            1 => CliError::Failed(e.to_string()),
            _ => CliError::Usage(e.to_string()),
        }
    })
}
