//! `drone-discord route` and the routes' part of `check`, through the real
//! binary: the dry run of routing over the real fixtures, errors that name
//! the line and the key, each route's destination tried against the fake
//! Discord (channels with the bot, webhooks by their own token), and `serve`
//! refusing a file whose webhooks it has no URL for.
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::binary::run_cmd;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::FakeDiscord;

const FILE: &str = r#"[users]
anon = "80351110224678912"

[[route]]
channel = "200000000000000002"
repos = ["Diesel-Net/*"]
branches = ["stable", "release/*"]
mention = "failed"
thread = "failed"

[[route]]
webhook = "ops"
when = "changed"

[[route]]
repos = ["octo-org/*"]
when = "failed"
mention = "always"

[[route]]
channel = "200000000000000002"
"#;

fn fixture(path: &str) -> String {
    format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn route(config: &Path, fixture_path: &str) -> (i32, String, String) {
    run_cmd(
        &[
            "route",
            &fixture(fixture_path),
            "--config",
            config.to_str().unwrap(),
        ],
        &[("DISCORD_CHANNEL_ID", CHANNEL)],
    )
}

#[test]
fn route_prints_each_route_and_what_its_destination_gets() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), FILE);

    let (code, out, err) = route(&config, "drone/build_failure");
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(
        lines[0]
            .starts_with("event: build updated, Diesel-Net/plex #189, cron on \"stable\", failure"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("message: ") && lines[1].contains("Diesel-Net/plex"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("route 1 (line 4): channel 200000000000000002: posted live")
            && lines[2].contains(
                "pings <@80351110224678912> (anon, by author_login) in the build's thread"
            )
            && lines[2].contains("a thread;")
            && lines[2].ends_with(r#"allowed_mentions {"users":["80351110224678912"]}"#),
        "{out}"
    );
    assert!(
        lines[3].starts_with("route 2 (line 11): webhook ops: posted, the outcome changed"),
        "{out}"
    );
    assert_eq!(lines[4], "route 3 (line 15): no match (repos excludes it)");
    assert_eq!(
        lines[5],
        "route 4 (line 20): matches, but route 1 decided for channel 200000000000000002"
    );

    // A pull request into main of another repository: the route without a
    // channel posts to DISCORD_CHANNEL_ID, and an unmapped author is named, not pinged.
    let (code, out, _) = route(&config, "synthetic/event_pull_request");
    assert_eq!(code, 0);
    assert!(out.contains("on \"main\""), "the target branch: {out}");
    assert!(
        out.lines().any(|l| l.starts_with(&format!(
            "route 3 (line 15): channel {CHANNEL}: posted, the build failed"
        )) && l.contains("names octocat without a ping")
            && l.ends_with(r#"allowed_mentions {"parse":[]}"#)),
        "{out}"
    );

    // A success on a `failed` route is not posted; no route at all: not posted.
    let only_failed = write(dir.path(), "[[route]]\nwhen = \"failed\"\n");
    let (code, out, _) = route(&only_failed, "drone/build_success");
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "route 1 (line 1): channel {CHANNEL}: not posted (when = failed)"
        )),
        "{out}"
    );
    let nowhere = write(dir.path(), "[[route]]\nrepos = [\"nobody/*\"]\n");
    let (_, out, _) = route(&nowhere, "drone/build_success");
    assert!(
        out.trim_end()
            .ends_with("not posted: no route matches this event"),
        "{out}"
    );

    // No routes: today's single channel.
    let users_only = write(dir.path(), "[users]\nanon = \"1\"\n");
    let (code, out, _) = route(&users_only, "drone/build_success");
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "no [[route]]: every event goes to channel {CHANNEL}, live"
        )),
        "{out}"
    );
}

/// Each bad file is a configuration error (exit 2): one line naming the
/// file, the line and the key, from `route` and `check` alike.
#[test]
fn bad_files_name_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        (
            "[[route]]\nchannel = \"200000000000000002\"\nchanel = \"1\"\n",
            ":3: route 1: unknown key \"chanel\"",
        ),
        (
            "[users]\nanon = \"1\"\n\n[[route]]\nchannel = \"#builds\"\n",
            ":5: route 1: channel: \"#builds\" is not a Discord id",
        ),
        (
            "[[route]]\n[[route]]\nwhen = \"sometimes\"\n",
            ":3: route 2: when: \"sometimes\" is not one of: live, finished, failed, changed",
        ),
        (
            "[[route]]\nbuild_events = [\"push\", \"merge\"]\n",
            ":2: route 1: build_events: \"merge\" is not one of: push, pull_request",
        ),
    ] {
        let config = write(dir.path(), text);
        let (code, out, err) = route(&config, "drone/build_success");
        assert_eq!(code, 2, "{text:?}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("drone-discord: configuration error: ")
                && err.contains(&format!("config.toml{want}")),
            "{text:?}: {err}"
        );

        let (code, out, err) = run_cmd(
            &["check", "--config", config.to_str().unwrap()],
            &[
                ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
                ("STATE_DIR", dir.path().join("state").to_str().unwrap()),
            ],
        );
        assert_eq!(code, 1, "{out}{err}");
        let line = out
            .lines()
            .find(|l| l.contains(" config: "))
            .unwrap_or_default();
        assert!(
            line.starts_with("FAIL config: ") && line.contains(want),
            "{out}"
        );
    }
}

/// `check` with a routing file: one line per route, each destination tried:
/// channels with the bot (`GET /channels/{id}`, once per channel), webhooks
/// with `GET /webhooks/{id}/{token}` and no bot token; the URL never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_tries_every_route() {
    let fake = FakeDiscord::start_tls().await;
    fake.set_token(TOKEN);
    let ops = fake.add_webhook("300000000000000003", "ops");
    let dev = fake.add_webhook("300000000000000004", "dev");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        &format!(
            "{FILE}\n[[route]]\nwebhook = \"dev\"\n\n[[route]]\nwebhook = \"qa\"\n\n[[route]]\nwebhook = \"ops\"\nthread = \"always\"\n"
        ),
    );
    let base = fake.base_url();
    let ca = fake.ca_file().unwrap();
    let state = dir.path().join("state");
    let wrong_dev = format!("{dev}x");
    let run = {
        let config = config.clone();
        let ops = ops.clone();
        move || {
            run_cmd(
                &["check", "--config", config.to_str().unwrap()],
                &[
                    ("DISCORD_TOKEN", TOKEN),
                    ("DISCORD_CHANNEL_ID", CHANNEL),
                    ("DISCORD_API_BASE_URL", &base),
                    ("SSL_CERT_FILE", ca.to_str().unwrap()),
                    ("STATE_DIR", state.to_str().unwrap()),
                    ("DISCORD_WEBHOOK_OPS", &ops),
                    ("DISCORD_WEBHOOK_DEV", &wrong_dev),
                ],
            )
        }
    };
    let (code, out, err) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, 1, "routes 5-7 fail: {out}{err}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line: {out}"))
            .to_string()
    };
    assert!(
        line("config:").starts_with("ok   config: ")
            && line("config:").contains("7 routes, 1 users"),
        "{out}"
    );
    let r1 = line("route 1:");
    assert!(
        r1.starts_with("ok   route 1: line 4: channel 200000000000000002 #builds; repos Diesel-Net/*; branches stable, release/*; when live, mention failed, thread failed"),
        "{out}"
    );
    let r2 = line("route 2:");
    assert!(
        r2.starts_with("ok   route 2: line 11: webhook ops …/webhooks/")
            && r2.contains("/*** (\"ops\", posts in channel 300000000000000003)"),
        "{out}"
    );
    assert!(
        line("route 3:").starts_with(&format!(
            "ok   route 3: line 15: channel {CHANNEL} (DISCORD_CHANNEL_ID) #builds"
        )),
        "{out}"
    );
    assert!(
        line("route 4:").starts_with("ok   route 4: line 20: channel 200000000000000002 #builds"),
        "{out}"
    );
    let r5 = line("route 5:");
    assert!(
        r5.starts_with("FAIL route 5: ")
            && r5.contains("refused the webhook token (401, code 50027"),
        "{out}"
    );
    let r6 = line("route 6:");
    assert!(
        r6.starts_with("FAIL route 6: ")
            && r6.contains("no URL; set the credential webhook-qa or DISCORD_WEBHOOK_QA"),
        "{out}"
    );
    let r7 = line("route 7:");
    assert!(
        r7.starts_with("FAIL route 7: ") && r7.contains("cannot start a thread"),
        "{out}"
    );
    assert!(line("store:").starts_with("ok   store:"), "{out}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("route 5, route 6, route 7 failed"), "{err}");

    // Two channels, each read once, besides the bot's own channel line, and
    // route 7's webhook channel (a forum could take its posts as threads).
    assert_eq!(fake.count("GET /channels/{id}"), 4);
    // One server: its roles and the bot's, asked once.
    assert_eq!(fake.count("GET /guilds/{id}"), 1);
    assert_eq!(fake.count("GET /guilds/{id}/members/{id}"), 1);
    // Routes 2, 5 and 7: route 7's webhook is asked where it posts before
    // its thread is judged.
    assert_eq!(fake.count("GET /webhooks/{id}/{token}"), 3);
    for c in fake
        .calls()
        .iter()
        .filter(|c| c.path.starts_with("/webhooks/"))
    {
        assert!(
            c.header("authorization").is_none(),
            "no bot token on a webhook call"
        );
    }
    // The webhook URLs' tokens never reach the output.
    for url in [&ops, &dev] {
        let token = url.rsplit('/').next().unwrap();
        assert!(!out.contains(token) && !err.contains(token), "{out}{err}");
    }
}

/// `check` names, per route, what the bot lacks in the route's channel, from
/// the server's roles, the bot's roles and the channel's overwrites: the
/// thread permissions only when `thread` is on, none for a forum (a post is a
/// thread made with its first message); a webhook may keep `thread` only
/// when it posts in a forum. One call per channel however many routes name it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_the_permissions_each_route_lacks() {
    use drone_discord::discord::permissions::*;
    let fake = FakeDiscord::start_tls().await;
    fake.set_token(TOKEN);
    // @everyone may post, embed and read, not use threads; the bot's role
    // adds CREATE_PUBLIC_THREADS.
    let post = VIEW_CHANNEL | SEND_MESSAGES | EMBED_LINKS | READ_MESSAGE_HISTORY;
    let role = "400000000000000001";
    fake.set_roles(
        post,
        &[
            (role, CREATE_PUBLIC_THREADS),
            ("400000000000000002", 1 << 3),
        ],
        &[role],
    );
    // Channel 5: @everyone may not embed there.
    let no_embeds = format!(
        r#"[{{"id": "100000000000000042", "type": 0, "allow": "0", "deny": "{EMBED_LINKS}"}}]"#
    );
    fake.set_overwrites(
        "200000000000000005",
        serde_json::from_str(&no_embeds).unwrap(),
    );
    // Channel 7: the bot's own overwrite allows posting in threads.
    let bot = support::fake_discord::user_id_for(TOKEN);
    fake.set_overwrites(
        "200000000000000007",
        serde_json::json!([{"id": bot, "type": 1, "allow": SEND_MESSAGES_IN_THREADS.to_string(), "deny": "0"}]),
    );
    fake.set_channel_type("200000000000000006", 15);
    fake.set_channel_type("300000000000000003", 15);
    let ops = fake.add_webhook("300000000000000003", "ops");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        r#"[[route]]
channel = "200000000000000005"

[[route]]
channel = "200000000000000005"
when = "failed"

[[route]]
channel = "200000000000000002"
thread = "failed"

[[route]]
channel = "200000000000000006"
thread = "always"

[[route]]
channel = "200000000000000007"
thread = "always"

[[route]]
webhook = "ops"
thread = "failed"
"#,
    );
    let (base, ca) = (fake.base_url(), fake.ca_file().unwrap());
    let state = dir.path().join("state");
    let run = move || {
        run_cmd(
            &["check", "--config", config.to_str().unwrap()],
            &[
                ("DISCORD_TOKEN", TOKEN),
                ("DISCORD_CHANNEL_ID", CHANNEL),
                ("DISCORD_API_BASE_URL", &base),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("STATE_DIR", state.to_str().unwrap()),
                ("DISCORD_WEBHOOK_OPS", &ops),
            ],
        )
    };
    let (code, out, err) = tokio::task::spawn_blocking(run).await.unwrap();
    assert_eq!(code, 1, "routes 1-3 fail: {out}{err}");
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line: {out}"))
            .to_string()
    };
    for n in [1, 2] {
        assert!(
            line(&format!("route {n}:")).starts_with(&format!(
                "FAIL route {n}: line {}: channel 200000000000000005 #builds: the bot lacks EMBED_LINKS;",
                [1, 4][n - 1]
            )),
            "{out}"
        );
    }
    assert!(
        line("route 3:").starts_with(
            "FAIL route 3: line 8: channel 200000000000000002 #builds: the bot lacks SEND_MESSAGES_IN_THREADS;"
        ),
        "{out}"
    );
    assert!(
        line("route 4:").starts_with(
            "ok   route 4: line 12: channel 200000000000000006 #builds (a forum: one post per build);"
        ),
        "{out}"
    );
    assert!(
        line("route 5:").starts_with("ok   route 5: line 16: channel 200000000000000007 #builds;"),
        "{out}"
    );
    let r6 = line("route 6:");
    assert!(
        r6.starts_with("ok   route 6: line 20: webhook ops …/webhooks/")
            && r6.contains("posts in channel 300000000000000003), a forum: one post per build;"),
        "{out}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("route 1, route 2, route 3 failed"), "{err}");
    // The bot's channel line, then channels 5, 2, 6, 7 and the webhook's, once each.
    assert_eq!(fake.count("GET /channels/{id}"), 6);
    assert_eq!(fake.count("GET /guilds/{id}"), 1);

    // The same webhook in a text channel may not thread.
    fake.set_channel_type("300000000000000003", 0);
    let config = write(
        dir.path(),
        "[[route]]\nwebhook = \"ops\"\nthread = \"failed\"\n",
    );
    let (base, ca) = (fake.base_url(), fake.ca_file().unwrap());
    let state = dir.path().join("state");
    let ops = fake.add_webhook("300000000000000003", "ops");
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run_cmd(
            &["check", "--config", config.to_str().unwrap()],
            &[
                ("DISCORD_TOKEN", TOKEN),
                ("DISCORD_CHANNEL_ID", CHANNEL),
                ("DISCORD_API_BASE_URL", &base),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("STATE_DIR", state.to_str().unwrap()),
                ("DISCORD_WEBHOOK_OPS", &ops),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("FAIL route 1: ")
            && l.contains("cannot start a thread from a message")),
        "{out}"
    );
}

/// A setup whose routes are all webhook routes needs no bot token: `check`
/// says the bot's checks are skipped and tries the webhooks; a file with one
/// channel route still needs the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_without_a_token_when_every_route_is_a_webhook() {
    let fake = FakeDiscord::start_tls().await;
    let ops = fake.add_webhook("300000000000000003", "ops");
    let dir = tempfile::tempdir().unwrap();
    let webhooks_only = write(
        dir.path(),
        "[[route]]\nwebhook = \"ops\"\nwhen = \"failed\"\n",
    );
    let (base, ca) = (fake.base_url(), fake.ca_file().unwrap());
    let state = dir.path().join("state");
    let run = move |config: PathBuf| {
        run_cmd(
            &["check", "--config", config.to_str().unwrap()],
            &[
                ("DISCORD_API_BASE_URL", &base),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("STATE_DIR", state.to_str().unwrap()),
                ("DISCORD_WEBHOOK_OPS", &ops),
            ],
        )
    };
    let (code, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(webhooks_only)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("ok   discord: no DISCORD_TOKEN, and every route is a webhook route")
            && lines[0].contains("are skipped"),
        "{out}"
    );
    assert!(lines[1].starts_with("ok   config: "), "{out}");
    assert!(
        lines[2].starts_with("ok   route 1: line 1: webhook ops …/webhooks/"),
        "{out}"
    );
    assert!(lines[3].starts_with("ok   store: "), "{out}");
    assert_eq!(fake.count("GET /users/@me"), 0);
    assert_eq!(fake.count("GET /channels/{id}"), 0);

    let mixed = write(
        dir.path(),
        "[[route]]\nwebhook = \"ops\"\n[[route]]\nchannel = \"200000000000000002\"\n",
    );
    let (code, out, _) = tokio::task::spawn_blocking(move || run(mixed))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL discord: configuration error: DISCORD_TOKEN: not set")),
        "{out}"
    );
}

/// `serve` applies the routes, so it needs the URL of every webhook the
/// file names at start (credentials are fixed while it runs): one line, exit 2,
/// naming the variable.
#[test]
fn serve_needs_the_named_webhooks_and_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), FILE);
    let (code, out, err) = run_cmd(
        &["serve", "--dry-run", "--config", config.to_str().unwrap()],
        &[
            ("DRONE_WEBHOOK_SECRET", SECRET),
            ("STATE_DIR", dir.path().join("state").to_str().unwrap()),
            ("LISTEN_ADDR", "127.0.0.1:0"),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("drone-discord: configuration error: DISCORD_WEBHOOK_OPS: not set")
            && last.contains("webhook \"ops\""),
        "{err}"
    );
    // A bad file stops it too, naming the line.
    let bad = write(dir.path(), "[[route]]\nwhen = \"never\"\n");
    let (code, _, err) = run_cmd(
        &["serve", "--dry-run"],
        &[
            ("DRONE_WEBHOOK_SECRET", SECRET),
            ("CONFIG_FILE", bad.to_str().unwrap()),
            ("STATE_DIR", dir.path().join("state").to_str().unwrap()),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("config.toml:2: route 1: when: \"never\" is not one of"),
        "{err}"
    );
}

/// A setup whose routes are all webhook routes runs without a bot token:
/// `serve` starts and is healthy, opens no gateway (`/health` says why), and
/// neither the log nor `/health` shows the webhook's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_a_token_when_every_route_is_a_webhook() {
    let fake = FakeDiscord::start_tls().await;
    let ops = fake.add_webhook("300000000000000003", "ops");
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "[[route]]\nwebhook = \"ops\"\nwhen = \"failed\"\n",
    );
    let (base, ca) = (fake.base_url(), fake.ca_file().unwrap());
    let state = dir.path().join("state");
    let token = ops.rsplit('/').next().unwrap().to_string();
    let health = tokio::task::spawn_blocking(move || {
        let svc = support::binary::start(
            &state,
            &["--config", config.to_str().unwrap()],
            &[
                ("DISCORD_API_BASE_URL", &base),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("DISCORD_WEBHOOK_OPS", &ops),
            ],
        );
        let health = support::binary::wait_health(&svc, Duration::from_secs(30), |status, v| {
            status == 200 && v["healthy"] == true
        });
        let log = svc.log_text();
        assert_eq!(svc.sigterm(), Some(0), "{log}");
        (health, log)
    })
    .await
    .unwrap();
    let (health, log) = health;
    assert_eq!(
        health["gateway"]["detail"], "off: webhook routes only, no bot token",
        "{health}"
    );
    assert!(
        !health.to_string().contains(&token) && !log.contains(&token),
        "{log}"
    );
    assert_eq!(fake.count("GET /users/@me"), 0, "no bot call");
    assert_eq!(fake.count("GET /gateway/bot"), 0, "no gateway");
}
