//! The routing file applied by `serve`, through the real binary against the
//! strict fake Discord: routes by repository and branch reach their
//! channels, and a build matching two routes to one channel gets one
//! message; `failed` posts nothing for a success; `changed` posts broken and
//! fixed, not still failing, and ignores killed builds; `finished` makes one
//! call per build; a live failed build gets a reply pinging exactly the
//! mapped user; a `failed` route's message carries the ping; an unmapped
//! author is not pinged; a thread opens under a failed build's message with
//! the failing steps; a webhook route creates with `wait=true` then edits; a
//! forum channel gets one post per build; `SIGHUP` with a bad file keeps the
//! old routes and `/health` says why.
//!
//! Waits are event-based (the fake's records, `/health`) with generous
//! timeouts; nothing asserts on how long anything took.
mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;
use support::binary::Service;
use support::builds::build_update;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::FakeDiscord;
use support::fixtures::fixture_json;

const LONG: Duration = Duration::from_secs(120);
const TWO: &str = "200000000000000002";
const THREE: &str = "200000000000000003";
const FOUR: &str = "200000000000000004";
/// The Discord user `anon` (the fixtures' author) is mapped to.
const ANON_ID: &str = "80351110224678912";
const USERS: &str = "[users]\nanon = \"80351110224678912\"\n\n";

/// Build `id` (number `id`) with `status`, from the real fixtures, changed by `tweak`.
fn build(id: i64, status: &str, tweak: impl Fn(&mut Value)) -> Vec<u8> {
    let name = match status {
        "pending" => "build_created.json",
        "running" => "build_updated.json",
        "success" => "build_success.json",
        "killed" => "build_killed.json",
        _ => "build_failure.json",
    };
    let body = build_update(&fixture_json(name), id, 0, status, |_| 1);
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    tweak(&mut v);
    serde_json::to_vec(&v).unwrap()
}

fn same(_: &mut Value) {}

fn repo(slug: &'static str) -> impl Fn(&mut Value) {
    move |v| {
        v["repo"]["slug"] = slug.into();
        v["repo"]["name"] = slug.rsplit('/').next().unwrap().into();
    }
}

fn author(login: &'static str) -> impl Fn(&mut Value) {
    move |v| {
        v["build"]["author_login"] = login.into();
        v["build"]["sender"] = login.into();
        v["build"]["author_email"] = format!("{login}@example.com").into();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The service with a routing file holding `config`, a bot token and
/// `DISCORD_CHANNEL_ID`, and `extra`.
fn start(fake: &FakeDiscord, dir: &Path, config: &str, extra: &[(&str, &str)]) -> Service {
    fake.set_token(TOKEN);
    let mut env = vec![("DISCORD_TOKEN", TOKEN), ("DISCORD_CHANNEL_ID", CHANNEL)];
    env.extend_from_slice(extra);
    start_with(fake, dir, config, &env)
}

/// The service with a routing file holding `config`, the fake's URL and `env` only.
fn start_with(fake: &FakeDiscord, dir: &Path, config: &str, env: &[(&str, &str)]) -> Service {
    let file = dir.join("config.toml");
    std::fs::write(&file, config).unwrap();
    let base = fake.base_url();
    let mut all = vec![
        ("DISCORD_API_BASE_URL", base.as_str()),
        ("NO_GATEWAY", "true"),
        ("CONFIG_FILE", file.to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    support::binary::start(&dir.join("state"), &[], &all)
}

fn post(svc: &Service, body: &[u8]) {
    let (status, answer) = svc.post_signed(body, SECRET);
    assert_eq!(status, 200, "{answer}");
}

fn health(svc: &Service) -> Value {
    let (_, body) = svc.get("/health");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait::wait_for(what, LONG, cond)
}

/// Every accepted webhook delivered (the figures lag up to a second, so
/// callers also wait for what they expect on Discord).
fn drained(svc: &Service) {
    wait_for("an empty queue", || health(svc)["queue"]["pending"] == 0);
}

/// Post `body` and wait until the queue is empty again: the next build's
/// `changed` decision sees this one's outcome.
fn post_and_drain(svc: &Service, body: &[u8]) {
    post(svc, body);
    std::thread::sleep(Duration::from_millis(1200));
    drained(svc);
}

/// The messages in `channel`, oldest first.
fn in_channel(fake: &FakeDiscord, channel: &str) -> Vec<Value> {
    let mut out: Vec<Value> = fake
        .messages()
        .into_values()
        .filter(|m| m["channel_id"] == channel)
        .collect();
    out.sort_by_key(|m| m["id"].as_str().unwrap_or("").parse::<u64>().unwrap_or(0));
    out
}

/// Message creates (bodies) sent to `channel`.
fn creates(fake: &FakeDiscord, channel: &str) -> Vec<Value> {
    let path = format!("/channels/{channel}/messages");
    fake.calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == path)
        .filter_map(|c| c.body)
        .collect()
}

fn edits(fake: &FakeDiscord) -> usize {
    fake.count("PATCH /channels/{id}/messages/{id}")
}

/// The build number a rendered message shows (`#189` in its title).
fn shows_build(m: &Value, number: i64) -> bool {
    m.to_string().contains(&format!("#{number}"))
}

fn sighup(svc: &Service) {
    let pid = svc.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

// ---------------------------------------------------------------------------

/// Routes by repository (case-insensitively) and branch reach their
/// channels; a build matched by two routes naming one channel gets one
/// message there (the first route decides); an event no route matches is not
/// posted and `/health` counts it.
#[test]
fn routes_by_repository_and_branch_reach_their_channels() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"[[route]]
channel = "{TWO}"
repos = ["diesel-net/*"]
branches = ["stable", "release/*"]

[[route]]
channel = "{THREE}"
repos = ["octo-org/*"]

[[route]]
channel = "{TWO}"
repos = ["Diesel-Net/*"]
when = "failed"

[[route]]
channel = "{FOUR}"
branches = ["main"]
"#
    );
    let svc = start(&fake, dir.path(), &config, &[]);
    post(&svc, &build(1, "pending", same));
    post(&svc, &build(1, "running", same));
    post(&svc, &build(1, "failure", same));
    post(&svc, &build(2, "success", repo("octo-org/tools")));
    // Matches no route: another repository on a branch no route names.
    post(
        &svc,
        &build(3, "success", |v| {
            repo("else/where")(v);
            v["build"]["target"] = "dev".into();
            v["build"]["ref"] = "refs/heads/dev".into();
        }),
    );
    wait_for("both channels' messages", || {
        let two = in_channel(&fake, TWO);
        two.len() == 1
            && two[0].to_string().contains("Failure")
            && in_channel(&fake, THREE).len() == 1
    });
    wait_for("the unmatched event counted", || {
        health(&svc)["routing"]["unmatched"].as_u64() == Some(1)
    });
    drained(&svc);
    assert_eq!(
        in_channel(&fake, TWO).len(),
        1,
        "one message per build and channel"
    );
    assert_eq!(creates(&fake, TWO).len(), 1);
    assert!(shows_build(&in_channel(&fake, THREE)[0], 2));
    assert!(in_channel(&fake, FOUR).is_empty());
    assert!(
        in_channel(&fake, CHANNEL).is_empty(),
        "DISCORD_CHANNEL_ID is not a route here"
    );
    assert!(svc.log_text().contains("no route matches the event"));
    let h = health(&svc);
    assert_eq!(h["routing"]["routes"], 4, "{h}");
    assert!(h["routing"].get("error").is_none(), "{h}");
}

/// `failed` posts nothing for a success; for a failure its one message
/// carries the ping itself (`content` and `allowed_mentions` naming exactly
/// the mapped user); an author without a mapping is named, not pinged.
#[test]
fn failed_routes_post_failures_only_and_carry_the_ping() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("{USERS}[[route]]\nchannel = \"{TWO}\"\nwhen = \"failed\"\nmention = \"failed\"\n");
    let svc = start(&fake, dir.path(), &config, &[]);
    post(&svc, &build(1, "pending", same));
    post(&svc, &build(1, "success", same));
    post_and_drain(&svc, &build(2, "running", same));
    assert!(
        creates(&fake, TWO).is_empty() && edits(&fake) == 0,
        "nothing for a success or a running build: {:?}",
        fake.calls().iter().map(|c| &c.route).collect::<Vec<_>>()
    );

    post(&svc, &build(2, "failure", same));
    wait_for("the failure's message", || creates(&fake, TWO).len() == 1);
    let create = &creates(&fake, TWO)[0];
    assert_eq!(create["content"], format!("<@{ANON_ID}>"));
    assert_eq!(create["allowed_mentions"], json!({"users": [ANON_ID]}));

    post(&svc, &build(3, "failure", author("stranger")));
    wait_for("the unmapped author's message", || {
        creates(&fake, TWO).len() == 2
    });
    let create = &creates(&fake, TWO)[1];
    assert!(
        create["content"]
            .as_str()
            .unwrap_or("")
            .contains("stranger"),
        "{create}"
    );
    assert!(!create.to_string().contains("<@"), "{create}");
    assert_eq!(create["allowed_mentions"], json!({"parse": []}));
    drained(&svc);
    assert_eq!(creates(&fake, TWO).len(), 2, "no second message or ping");
    assert_eq!(edits(&fake), 0);
}

/// `changed`: a first passing build posts nothing, broken posts, still
/// failing does not, killed is ignored (and leaves the record), fixed posts.
#[test]
fn changed_posts_broken_and_fixed_only() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[[route]]\nchannel = \"{TWO}\"\nwhen = \"changed\"\n");
    let svc = start(&fake, dir.path(), &config, &[]);
    for (id, status) in [
        (10, "success"),
        (11, "failure"),
        (12, "failure"),
        (13, "killed"),
        (14, "success"),
        (15, "success"),
    ] {
        post_and_drain(&svc, &build(id, status, same));
    }
    wait_for("two messages", || in_channel(&fake, TWO).len() >= 2);
    let posted = in_channel(&fake, TWO);
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(shows_build(&posted[0], 11), "broken: {}", posted[0]);
    assert!(shows_build(&posted[1], 14), "fixed: {}", posted[1]);
}

/// `finished`: one call per build, the create at its final status.
#[test]
fn finished_makes_one_call_per_build() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[[route]]\nchannel = \"{TWO}\"\nwhen = \"finished\"\n");
    let svc = start(&fake, dir.path(), &config, &[]);
    post_and_drain(&svc, &build(1, "pending", same));
    post_and_drain(&svc, &build(1, "running", same));
    post(&svc, &build(1, "success", same));
    wait_for("the build's message", || in_channel(&fake, TWO).len() == 1);
    drained(&svc);
    let message_calls: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.path.contains("/messages"))
        .map(|c| c.route)
        .collect();
    assert_eq!(
        message_calls,
        vec!["POST /channels/{id}/messages".to_string()]
    );
    assert!(in_channel(&fake, TWO)[0].to_string().contains("Success"));
}

/// A live route with `mention = "failed"`: the build message pings nobody;
/// once the build fails, a reply to it pings exactly the mapped user, once.
#[test]
fn a_live_failed_build_gets_a_reply_that_pings_the_author() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{USERS}[[route]]\nchannel = \"{TWO}\"\nmention = \"failed\"\n");
    let svc = start(&fake, dir.path(), &config, &[]);
    post_and_drain(&svc, &build(1, "pending", same));
    wait_for("the build message", || in_channel(&fake, TWO).len() == 1);
    let first = creates(&fake, TWO).remove(0);
    assert_eq!(first["allowed_mentions"], json!({"parse": []}));
    let build_message = in_channel(&fake, TWO)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    post(&svc, &build(1, "failure", same));
    wait_for("the reply", || creates(&fake, TWO).len() == 2);
    drained(&svc);
    let all = creates(&fake, TWO);
    assert_eq!(all.len(), 2, "one reply: {all:?}");
    let reply = &all[1];
    assert_eq!(reply["message_reference"]["message_id"], build_message);
    assert_eq!(reply["allowed_mentions"], json!({"users": [ANON_ID]}));
    assert!(reply["content"]
        .as_str()
        .unwrap()
        .contains(&format!("<@{ANON_ID}>")));
    // The build message itself was edited to the failure, pinging nobody.
    let edit = fake
        .calls()
        .into_iter()
        .rev()
        .find(|c| c.method == "PATCH")
        .and_then(|c| c.body)
        .expect("an edit");
    assert_eq!(edit["allowed_mentions"], json!({"parse": []}));
}

/// `SIGHUP` with a bad file keeps the routes in force and `/health` says
/// why; a good file then takes over.
#[test]
fn sighup_with_a_bad_file_keeps_the_old_routes() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let svc = start(
        &fake,
        dir.path(),
        &format!("[[route]]\nchannel = \"{TWO}\"\n"),
        &[],
    );
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        format!("[[route]]\nchannel = \"{TWO}\"\nwhen = \"sometimes\"\n"),
    )
    .unwrap();
    sighup(&svc);
    let h = support::binary::wait_health(&svc, LONG, |_, h| h["routing"]["error"].is_string());
    let error = h["routing"]["error"].as_str().unwrap();
    assert!(error.contains("config.toml:3"), "{error}");
    assert_eq!(h["routing"]["routes"], 1);
    svc.wait_log("routing file not reloaded", 1, LONG);
    post(&svc, &build(1, "success", same));
    wait_for("the old route's message", || {
        in_channel(&fake, TWO).len() == 1
    });

    std::fs::write(
        &file,
        format!("[[route]]\nchannel = \"{THREE}\"\n[[route]]\nchannel = \"{FOUR}\"\n"),
    )
    .unwrap();
    sighup(&svc);
    support::binary::wait_health(&svc, LONG, |_, h| {
        h["routing"]["routes"] == 2 && h["routing"].get("error").is_none()
    });
    post(&svc, &build(2, "success", same));
    wait_for("the new routes' messages", || {
        in_channel(&fake, THREE).len() == 1 && in_channel(&fake, FOUR).len() == 1
    });
    drained(&svc);
    assert_eq!(in_channel(&fake, TWO).len(), 1);
}

/// A failed build's stage: the first step passed, the second failed after 12 s.
fn failing_steps(v: &mut Value) {
    let stage = &mut v["build"]["stages"][0];
    stage["status"] = "failure".into();
    stage["stopped"] = (stage["started"].as_i64().unwrap_or(0) + 69).into();
    let started = stage["started"].as_i64().unwrap_or(0);
    stage["steps"][0]["status"] = "success".into();
    let step = &mut stage["steps"][1];
    step["status"] = "failure".into();
    step["started"] = (started + 5).into();
    step["stopped"] = (started + 17).into();
}

/// `thread = "failed"` with a live mention: a thread opens under the failed
/// build's message, its first post lists the failing step with its duration
/// and pings the author (so no reply in the channel); a repeat of the final
/// update starts no second thread and pings nobody again.
#[test]
fn a_thread_opens_under_a_failed_builds_message_with_the_failing_steps() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{USERS}[[route]]\nchannel = \"{TWO}\"\nmention = \"failed\"\nthread = \"failed\"\n"
    );
    let svc = start(&fake, dir.path(), &config, &[]);
    post_and_drain(&svc, &build(7, "running", same));
    wait_for("the build message", || in_channel(&fake, TWO).len() == 1);
    let message = in_channel(&fake, TWO)[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    post(&svc, &build(7, "failure", failing_steps));
    wait_for("the thread's first post", || {
        fake.channel_messages(&message).len() == 1
    });
    let thread = fake
        .thread(&message)
        .expect("a thread under the build message");
    assert_eq!(thread.parent, TWO);
    assert_eq!(thread.name, "❌ Diesel-Net/plex #7");
    let first = &fake.channel_messages(&message)[0];
    let content = first["content"].as_str().unwrap();
    assert!(content.contains("Update plex server(s) (12s)"), "{content}");
    assert!(content.contains(&format!("<@{ANON_ID}>")), "{content}");
    assert_eq!(first["allowed_mentions"], json!({"users": [ANON_ID]}));
    // Again: the same final state edits, and nothing else happens.
    post_and_drain(&svc, &build(7, "failure", failing_steps));
    assert_eq!(fake.threads().len(), 1);
    assert_eq!(fake.channel_messages(&message).len(), 1);
    assert_eq!(
        creates(&fake, TWO).len(),
        1,
        "no reply: the ping is in the thread"
    );
}

/// A webhook route: the first message is an execution with `wait=true`
/// (no nonce), later states edit it by its id. With webhook routes only, no
/// bot token (nor DISCORD_CHANNEL_ID) is needed, and `/health` says the
/// gateway is off.
#[test]
fn a_webhook_route_creates_with_wait_then_edits() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    let dir = tempfile::tempdir().unwrap();
    let url = fake.add_webhook(THREE, "ops");
    let svc = start_with(
        &fake,
        dir.path(),
        "[[route]]\nwebhook = \"ops\"\n",
        &[("DISCORD_WEBHOOK_OPS", url.as_str())],
    );
    let h = health(&svc);
    assert!(
        h["gateway"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("webhook routes only"),
        "{h}"
    );
    post_and_drain(&svc, &build(1, "pending", same));
    post_and_drain(&svc, &build(1, "running", same));
    post(&svc, &build(1, "success", same));
    wait_for("the webhook's message edited to the success", || {
        let m = in_channel(&fake, THREE);
        m.len() == 1 && m[0].to_string().contains("Success")
    });
    drained(&svc);
    let calls: Vec<_> = fake
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/webhooks/"))
        .collect();
    assert_eq!(calls[0].method, "POST");
    assert!(calls[0].query.contains("wait=true"), "{:?}", calls[0].query);
    assert!(calls.len() >= 2 && calls[1..].iter().all(|c| c.method == "PATCH"));
    assert!(fake.webhook_nonces().is_empty(), "no nonce on a webhook");
    for c in &calls {
        assert!(c.header("authorization").is_none());
    }
    let token = url.rsplit('/').next().unwrap();
    assert!(
        !svc.log_text().contains(token),
        "the webhook's token never reaches the log"
    );
}

/// A forum channel gets one post per build: the build message is the post's
/// first message, edited live in the post's thread.
#[test]
fn a_forum_channel_gets_one_post_per_build() {
    let rt = runtime();
    let fake = rt.block_on(FakeDiscord::start());
    fake.set_channel_type(FOUR, 15);
    let dir = tempfile::tempdir().unwrap();
    let svc = start(
        &fake,
        dir.path(),
        &format!("[[route]]\nchannel = \"{FOUR}\"\n"),
        &[],
    );
    for id in [1, 2] {
        post_and_drain(&svc, &build(id, "pending", same));
        post_and_drain(&svc, &build(id, "running", same));
        post(&svc, &build(id, "success", same));
    }
    wait_for("two posts, each edited to its success", || {
        let threads = fake.threads();
        threads.len() == 2
            && threads.keys().all(|t| {
                let m = fake.channel_messages(t);
                m.len() == 1 && m[0].to_string().contains("Success")
            })
    });
    drained(&svc);
    let posts = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path == format!("/channels/{FOUR}/threads"))
        .count();
    assert_eq!(posts, 2);
    assert!(
        creates(&fake, FOUR).is_empty(),
        "a forum takes posts, not messages"
    );
    let names: Vec<String> = fake.threads().into_values().map(|t| t.name).collect();
    assert!(
        names.iter().all(|n| n.contains("Diesel-Net/plex #")),
        "{names:?}"
    );
    assert!(fake.threads().values().all(|t| t.parent == FOUR));
}
