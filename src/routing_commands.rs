//! The commands that act on the routing file (`--config` / `CONFIG_FILE`)
//! before `serve` applies it: `route FIXTURE`, the dry run of routing, and
//! the routes' part of `check` (one line per route, each destination tried).
//!
//! Both print; neither posts anything. The decisions come from
//! `drone_discord::routes`, the code the relay will use, so what `route`
//! prints is what the service will do.
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use drone_discord::config::{self, Settings};
use drone_discord::discord::permissions;
use drone_discord::discord::rest::Rest;
use drone_discord::discord::webhook;
use drone_discord::drone::{self, Webhook};
use drone_discord::http::client::{Client, ClientOptions};
use drone_discord::routes::{
    self, Destination, MentionDecision, Miss, Plan, Route, Routing, Thread, When,
};
use drone_discord::text::controls_to_spaces;
use serde_json::Value;

use crate::cli_error::CliError;
use crate::commands::read_payload;

/// `route FIXTURE`: which routes the event matches and what each destination gets.
pub fn route(
    fixture: &Path,
    env_file: Option<&Path>,
    config_file: Option<&Path>,
) -> Result<(), CliError> {
    let mut s = Settings::load(env_file)?;
    if let Some(path) = config_file {
        s.set("CONFIG_FILE", path.display().to_string());
    }
    let (body, _) = read_payload(fixture)?;
    let what = fixture.display();
    let hook = drone::parse(&body)
        .map_err(|e| CliError::usage(&what, format!("not a Drone webhook: {e}")))?;
    let routing = match config::routing_file(&s) {
        Some(path) => routes::load(&path)?,
        None => Routing::default(),
    };
    let default_channel = s.get("DISCORD_CHANNEL_ID");
    println!("event: {}", describe_event(&hook));
    match drone_discord::render::render(&hook) {
        Some(msg) => println!(
            "message: {}",
            controls_to_spaces(msg["embeds"][0]["title"].as_str().unwrap_or("(no title)"))
        ),
        None => println!("message: none (this event/action is not shown in Discord)"),
    }
    if routing.routes.is_empty() {
        println!(
            "no [[route]]: every event goes to {}, live, as without a routing file",
            default_channel.map_or("DISCORD_CHANNEL_ID".to_string(), |c| format!("channel {c}"))
        );
        return Ok(());
    }
    let matched = routes::matching(&routing, &hook, default_channel);
    for r in &routing.routes {
        let head = format!("route {} (line {})", r.number, r.line);
        if let Err(miss) = routes::check_route(r, &hook) {
            println!("{head}: no match ({})", miss_reason(miss));
            continue;
        }
        let destination = r.destination.resolve(default_channel);
        match matched.iter().find(|m| m.destination == destination) {
            Some(m) if m.route.number != r.number => println!(
                "{head}: matches, but route {} decided for {destination}",
                m.route.number
            ),
            _ => {
                let p = routes::plan(r, &destination, &routing.users, &hook, None, false);
                println!("{head}: {destination}: {}", describe_plan(r, &hook, &p));
            }
        }
    }
    if matched.is_empty() {
        println!("not posted: no route matches this event");
    }
    Ok(())
}

fn miss_reason(miss: Miss) -> String {
    match miss {
        Miss::UnknownKind => "not a build, repo or user event".into(),
        other => format!("{} excludes it", other.key()),
    }
}

fn describe_event(hook: &Webhook) -> String {
    let mut out = format!("{} {}", hook.event, hook.action);
    if let Some(repo) = &hook.repo {
        out.push_str(&format!(", {}", repo.slug));
    }
    if let Some(b) = &hook.build {
        out.push_str(&format!(
            " #{}, {} on {:?}, {}",
            b.number,
            b.event,
            routes::branch_of(b),
            b.status
        ));
    }
    if let Some(u) = hook.user.as_ref().filter(|_| hook.event == "user") {
        out.push_str(&format!(", {}", u.login));
    }
    controls_to_spaces(&out)
}

fn describe_plan(r: &Route, hook: &Webhook, p: &Plan) -> String {
    if !p.posts {
        return format!("not posted (when = {})", r.when);
    }
    let how = match r.when {
        _ if hook.event != "build" => "posted (not a build: when, mention and thread do not apply)",
        When::Live => "posted live (created at build:created, edited as the build runs)",
        When::Finished => "posted once, at the final status",
        When::Failed => "posted, the build failed",
        When::Changed => "posted, the outcome changed (dry run: no previous outcome known)",
    };
    let ping = match (&p.mention, p.placement) {
        (
            MentionDecision::Ping {
                user_id,
                found_by,
                who,
            },
            Some(at),
        ) => {
            format!(
                "pings <@{user_id}> ({who}, by {found_by}) {}",
                at.describe()
            )
        }
        (MentionDecision::Unmapped { who }, _) => {
            format!("names {who} without a ping (no [users] entry)")
        }
        _ => "no ping".into(),
    };
    let thread = if p.thread { "a thread" } else { "no thread" };
    controls_to_spaces(&format!(
        "{how}; {ping}; {thread}; allowed_mentions {}",
        p.allowed_mentions
    ))
}

/// The routes' lines of `check`: the file, then one line per route with its
/// destination tried: a channel with the bot (`GET /channels/{id}`, and the
/// permissions the route needs there, `discord::permissions`), a webhook with
/// `GET /webhooks/{id}/{token}`. Nothing when no file is named.
pub fn check_routes(
    s: &Settings,
    rt: &tokio::runtime::Runtime,
    bot: Option<&Rest>,
    line: &mut dyn FnMut(bool, &str, String),
) {
    let Some(path) = config::routing_file(s) else {
        return;
    };
    let routing = match routes::load(&path) {
        Ok(r) => r,
        Err(e) => return line(false, "config", e.to_string()),
    };
    line(
        true,
        "config",
        format!(
            "{}: {} routes, {} users{}",
            path.display(),
            routing.routes.len(),
            routing.users.len(),
            if routing.routes.is_empty() {
                " (no routes: today's single channel)"
            } else {
                ""
            }
        ),
    );
    let default_channel = s.get("DISCORD_CHANNEL_ID");
    let client = Client::new(ClientOptions {
        extra_ca_file: s.get("SSL_CERT_FILE").map(Into::into),
        request_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    });
    // One call per channel however many routes name it, and one per server
    // for its roles and the bot's; the bot's id is asked once.
    let mut channels: HashMap<String, Result<Value, String>> = HashMap::new();
    let mut guilds: HashMap<String, Result<(Value, Value), String>> = HashMap::new();
    let mut bot_id = None;
    let mut channel = |id: &str| -> Result<Value, String> {
        channels
            .entry(id.to_string())
            .or_insert_with(|| match bot {
                None => Err("not checked: no working bot settings (see the discord line)".into()),
                Some(rest) => rt.block_on(rest.channel(id)).map_err(|e| e.to_string()),
            })
            .clone()
    };
    for r in &routing.routes {
        let (ok, destination) = match r.destination.resolve(default_channel) {
            Destination::Channel(id) => {
                let label = match r.destination {
                    Destination::Default => format!("channel {id} (DISCORD_CHANNEL_ID)"),
                    _ => format!("channel {id}"),
                };
                match channel(&id) {
                    Err(e) => (false, format!("{label}: {e}")),
                    Ok(ch) => {
                        let forum = permissions::is_forum(&ch);
                        let head = format!(
                            "{label} #{}{}",
                            ch["name"].as_str().unwrap_or("?"),
                            if forum {
                                " (a forum: one post per build)"
                            } else {
                                ""
                            }
                        );
                        let need = permissions::needed(forum, r.thread != Thread::Never);
                        match bot
                            .map(|rest| bot_permissions(rt, rest, &ch, &mut bot_id, &mut guilds))
                        {
                            Some(Ok(have)) => match permissions::missing(need, have) {
                                lack if lack.is_empty() => (true, head),
                                lack => {
                                    (false, format!("{head}: the bot lacks {}", lack.join(", ")))
                                }
                            },
                            Some(Err(e)) => (
                                false,
                                format!("{head}: cannot tell the bot's permissions: {e}"),
                            ),
                            None => (false, head),
                        }
                    }
                }
            }
            Destination::Default => (
                false,
                "DISCORD_CHANNEL_ID: not set, and the route names no channel or webhook".into(),
            ),
            Destination::Webhook(name) => match (routes::webhook_url(s, &name), &client) {
                (Err(e), _) => (false, format!("webhook {name}: {e}")),
                (Ok(None), _) => {
                    let (var, cred) = routes::webhook_sources(&name);
                    (
                        false,
                        format!("webhook {name}: no URL; set the credential {cred} or {var}"),
                    )
                }
                (Ok(Some(_)), Err(e)) => (false, format!("webhook {name}: {e}")),
                (Ok(Some(url)), Ok(client)) => match rt.block_on(webhook::get(client, &url)) {
                    Err(e) => (false, format!("webhook {name} {url}: {e}")),
                    Ok(info) => {
                        let head = format!(
                            "webhook {name} {url} ({:?}, posts in channel {})",
                            info.name, info.channel_id
                        );
                        // A webhook can post a forum's post (thread_name) but
                        // cannot start a thread from a message: only the
                        // bot can tell which the channel is.
                        match (r.thread, channel(&info.channel_id)) {
                            (Thread::Never, _) => (true, head),
                            (_, Ok(ch)) if permissions::is_forum(&ch) => {
                                (true, format!("{head}, a forum: one post per build"))
                            }
                            (t, found) => (
                                false,
                                format!(
                                    "{head}: thread = {:?}, but a webhook cannot start a thread from a message{}; \
                                     use a channel route or thread = \"never\"",
                                    t.word(),
                                    match found {
                                        Ok(_) => String::new(),
                                        Err(e) => format!(
                                            " (only a forum would do; channel {}: {e})",
                                            info.channel_id
                                        ),
                                    }
                                ),
                            ),
                        }
                    }
                },
            },
        };
        line(
            ok,
            &format!("route {}", r.number),
            controls_to_spaces(&format!("line {}: {destination}; {}", r.line, summary(r))),
        );
    }
}

/// The bot's permissions in `ch`, from its server's roles and the bot's
/// (asked once per server) and the channel's overwrites. A channel outside a
/// server has no roles to lack: everything.
fn bot_permissions(
    rt: &tokio::runtime::Runtime,
    rest: &Rest,
    ch: &Value,
    bot_id: &mut Option<Result<String, String>>,
    guilds: &mut HashMap<String, Result<(Value, Value), String>>,
) -> Result<u64, String> {
    let Some(guild_id) = ch["guild_id"].as_str() else {
        return Ok(u64::MAX);
    };
    let me = bot_id
        .get_or_insert_with(|| rt.block_on(rest.own_user_id()).map_err(|e| e.to_string()))
        .clone()?;
    let (guild, member) = guilds
        .entry(guild_id.to_string())
        .or_insert_with(|| {
            rt.block_on(rest.guild_and_member(guild_id, &me))
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)?;
    Ok(permissions::effective(guild, member, ch, &me))
}

/// A route's filters and modes, as one line's tail.
fn summary(r: &Route) -> String {
    let list = |name: &str, items: Option<Vec<String>>| {
        items.map(|v| format!("{name} {}; ", v.join(", ")))
    };
    let mut out = String::new();
    for part in [
        list(
            "repos",
            r.repos
                .as_ref()
                .map(|g| g.iter().map(|g| g.to_string()).collect()),
        ),
        list(
            "branches",
            r.branches
                .as_ref()
                .map(|g| g.iter().map(|g| g.to_string()).collect()),
        ),
        list(
            "events",
            r.events
                .as_ref()
                .map(|e| e.iter().map(|e| e.to_string()).collect()),
        ),
        list(
            "build_events",
            r.build_events
                .as_ref()
                .map(|e| e.iter().map(|e| e.to_string()).collect()),
        ),
    ]
    .into_iter()
    .flatten()
    {
        out.push_str(&part);
    }
    out.push_str(&format!(
        "when {}, mention {}, thread {}",
        r.when, r.mention, r.thread
    ));
    out
}
