//! The Discord REST client against the fake Discord over real loopback HTTP/1.1
//! (and TLS with a test CA): the calls, the error mapping, rate limits,
//! 401 suspension and keep-alive reuse.
mod support;

use std::time::Duration;

use drone_discord::discord::ratelimit::RateLimitConfig;
use drone_discord::discord::rest::{Rest, RestError, RestTuning};
use serde_json::json;
use support::fake_discord::{Canned, EmulatedLimit, FakeDiscord};

const CH: &str = "222";

fn rest(fake: &FakeDiscord) -> Rest {
    Rest::new(fake.rest_config()).expect("rest client")
}

fn rest_tuned(fake: &FakeDiscord, tuning: RestTuning) -> Rest {
    Rest::with_tuning(fake.rest_config(), tuning).expect("rest client")
}

async fn create_then_edit(fake: &FakeDiscord, rest: &Rest) {
    let id = rest
        .create_message(CH, &json!({ "content": "build #1 running" }))
        .await
        .expect("create");
    let edited = rest
        .edit_message(CH, &id, &json!({ "content": "build #1 passed" }))
        .await
        .expect("edit");
    assert_eq!(edited, id);
    let msg = fake.message(&id).expect("stored message");
    assert_eq!(msg["content"], "build #1 passed");
    assert_eq!(msg["channel_id"], CH);
    assert_eq!(fake.count("POST /channels/{id}/messages"), 1);
    assert_eq!(fake.count("PATCH /channels/{id}/messages/{id}"), 1);
}

#[tokio::test]
async fn create_and_edit_over_plain_http_with_discord_headers() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    create_then_edit(&fake, &rest).await;
    let calls = fake.calls();
    let first = calls.first().expect("a call");
    assert_eq!(first.header("authorization"), Some("Bot test-token"));
    let ua = first.header("user-agent").unwrap_or("");
    assert!(
        ua.starts_with("DiscordBot (https://github.com/drone-discord/drone-discord, "),
        "{ua}"
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(
        first.body.as_ref().map(|b| b["content"].clone()),
        Some(json!("build #1 running"))
    );
}

#[tokio::test]
async fn create_and_edit_over_tls_with_the_test_ca() {
    let fake = FakeDiscord::start_tls().await;
    assert!(fake.base_url().starts_with("https://"));
    let rest = rest(&fake);
    create_then_edit(&fake, &rest).await;
}

#[tokio::test]
async fn tls_without_the_test_ca_is_refused() {
    let fake = FakeDiscord::start_tls().await;
    let mut cfg = fake.rest_config();
    cfg.extra_ca_file = None;
    let rest = Rest::new(cfg).expect("rest client");
    let err = rest.current_user().await.unwrap_err();
    match err {
        RestError::Transient { reason, .. } => assert!(reason.contains("TLS"), "{reason}"),
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn keep_alive_connection_is_reused() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let id = rest
        .create_message(CH, &json!({ "content": "a" }))
        .await
        .expect("create");
    for i in 0..4 {
        rest.edit_message(CH, &id, &json!({ "content": format!("edit {i}") }))
            .await
            .expect("edit");
    }
    assert_eq!(fake.calls().len(), 5);
    assert_eq!(fake.connections(), 1);
}

#[tokio::test]
async fn nonce_with_enforce_nonce_returns_the_same_message() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let body = json!({ "content": "x", "nonce": "build-42", "enforce_nonce": true });
    let a = rest.create_message(CH, &body).await.expect("first");
    let b = rest.create_message(CH, &body).await.expect("second");
    assert_eq!(a, b);
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn per_route_429_waits_retry_after_then_succeeds() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.push(Canned::rate_limited(0.5, false));
    let id = rest
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .expect("create after 429");
    assert!(fake.message(&id).is_some());
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    let (first, second) = (&calls[0], &calls[1]);
    assert_eq!(first.status, 429);
    assert_eq!(second.status, 200);
    // Loose lower bound: the client waited for retry_after (0.5 s) before retrying.
    assert!(second.at.duration_since(first.at) >= Duration::from_millis(450));
}

#[tokio::test]
async fn global_429_pauses_other_routes_too() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.push(Canned::rate_limited(0.5, true));
    rest.current_user()
        .await
        .expect("current user after global 429");
    rest.channel(CH).await.expect("channel");
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_millis(450));
}

#[tokio::test]
async fn bucket_headers_make_the_client_wait_instead_of_hitting_429() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 2,
        window: Duration::from_secs(1),
    }));
    for i in 0..3 {
        rest.create_message(CH, &json!({ "content": format!("m{i}") }))
            .await
            .expect("create");
    }
    assert_eq!(
        fake.count_status(429),
        0,
        "the client should have waited for the bucket reset"
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls[2].at.duration_since(calls[0].at) >= Duration::from_millis(800));
}

#[tokio::test]
async fn repeated_429_gives_up_as_transient_after_bounded_retries() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.always(Canned::rate_limited(0.05, false));
    let err = rest
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RestError::Transient {
                retry_after: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        fake.calls().len(),
        1 + RestTuning::default().max_429_retries as usize
    );
}

#[tokio::test]
async fn edit_limit_30046_is_transient_without_retrying() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let id = rest
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .expect("create");
    let body = json!({ "message": "Maximum number of edits to messages older than 1 hour reached. Try again later.",
        "code": 30046, "retry_after": 120.0, "global": false });
    fake.push_for(
        "PATCH",
        "/channels/",
        1,
        Canned::json(429, body)
            .header("X-RateLimit-Bucket", "edits")
            .header("X-RateLimit-Limit", "5")
            .header("X-RateLimit-Remaining", "4")
            .header("X-RateLimit-Reset-After", "1")
            .header("X-RateLimit-Scope", "user"),
    );
    let err = rest
        .edit_message(CH, &id, &json!({ "content": "y" }))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(120)), "{err:?}");
    assert_eq!(fake.count("PATCH /channels/{id}/messages/{id}"), 1);
}

/// A JSON 429 with `Via` (the fake adds it, as Discord's front end does) but
/// without any `X-RateLimit-*` header is an ordinary limit: the call waits its
/// `retry_after` and succeeds, nothing else is paused.
#[tokio::test]
async fn json_429_without_rate_limit_headers_is_an_ordinary_limit() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let body =
        json!({ "message": "You are being rate limited.", "retry_after": 0.05, "global": false });
    fake.push(Canned::json(429, body));
    let id = rest
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .expect("create after an ordinary 429");
    assert!(fake.message(&id).is_some());
    rest.current_user()
        .await
        .expect("another route is not paused");
    let statuses: Vec<u16> = fake.calls().iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![429, 200, 200]);
}

/// 30046 without rate-limit headers is neither a ban nor a pause: the edit
/// comes back as a retry of that message with its `retry_after`, and the
/// next edit and create go out at once.
#[tokio::test]
async fn edit_limit_30046_without_headers_pauses_nothing_else() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let old = rest
        .create_message(CH, &json!({ "content": "old" }))
        .await
        .expect("create");
    let body = json!({ "message": "Maximum number of edits to messages older than 1 hour reached. Try again later.",
        "code": 30046, "retry_after": 300.0, "global": false });
    fake.push_for("PATCH", "/channels/", 1, Canned::json(429, body));
    let err = rest
        .edit_message(CH, &old, &json!({ "content": "y" }))
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(300)), "{err:?}");
    let other = rest
        .create_message(CH, &json!({ "content": "new" }))
        .await
        .expect("creates go on");
    rest.edit_message(CH, &other, &json!({ "content": "edited" }))
        .await
        .expect("edits of other messages go on");
    assert_eq!(fake.count("PATCH /channels/{id}/messages/{id}"), 2);
}

#[tokio::test]
async fn cloudflare_ban_pauses_all_calls_without_reaching_discord() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.push(Canned::cloudflare_ban());
    let err = rest.current_user().await.unwrap_err();
    assert!(
        err.retry_after()
            .is_some_and(|d| d >= Duration::from_secs(60)),
        "{err:?}"
    );
    let err = rest
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.push_n(2, Canned::status(503));
    for _ in 0..2 {
        let err = rest
            .create_message(CH, &json!({ "content": "x" }))
            .await
            .unwrap_err();
        assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
    }
    rest.create_message(CH, &json!({ "content": "x" }))
        .await
        .expect("recovers");
    assert_eq!(fake.calls().len(), 3);
}

#[tokio::test]
async fn refused_connections_are_transient_and_recover() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.refuse_connections(true);
    let err = rest.current_user().await.unwrap_err();
    assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
    fake.refuse_connections(false);
    rest.current_user().await.expect("works again");
    assert_eq!(fake.calls().len(), 1);
}

#[tokio::test]
async fn slow_response_times_out_as_transient() {
    let fake = FakeDiscord::start().await;
    let mut cfg = fake.rest_config();
    cfg.request_timeout = Duration::from_millis(300);
    let rest = Rest::new(cfg).expect("rest");
    fake.push(Canned::json(200, json!({ "id": "1" })).delayed(Duration::from_secs(3)));
    let err = rest.current_user().await.unwrap_err();
    match err {
        RestError::Transient { reason, .. } => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected Transient, got {other:?}"),
    }
}

#[tokio::test]
async fn unauthorized_then_suspended_without_further_calls() {
    let fake = FakeDiscord::start().await;
    let mut cfg = fake.rest_config();
    cfg.token = "wrong-token".into();
    let wrong = Rest::new(cfg).expect("rest");
    let err = wrong.current_user().await.unwrap_err();
    assert!(
        matches!(err, RestError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("wrong-token"));
    let err = wrong
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Suspended { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-token"));
    assert_eq!(
        fake.calls().len(),
        1,
        "a suspended client must not call Discord"
    );
    // (That resume() lifts the suspension at once is a unit test in rest.rs.)
    // The right token is unaffected (separate client).
    rest(&fake).current_user().await.expect("right token works");
}

#[tokio::test]
async fn unauthorized_suspension_ends_after_the_cool_down() {
    let fake = FakeDiscord::start().await;
    fake.always(Canned::unauthorized());
    let rest = rest_tuned(
        &fake,
        RestTuning {
            unauthorized_cooldown: Duration::from_millis(200),
            ..RestTuning::default()
        },
    );
    assert!(matches!(
        rest.current_user().await,
        Err(RestError::Unauthorized { status: 401, .. })
    ));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(matches!(
        rest.current_user().await,
        Err(RestError::Unauthorized { status: 401, .. })
    ));
    assert_eq!(
        fake.calls().len(),
        2,
        "after the cool-down the client calls again"
    );
}

#[tokio::test]
async fn forbidden_is_unauthorized_but_does_not_suspend() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.push(Canned::json(
        403,
        json!({ "message": "Missing Permissions", "code": 50013 }),
    ));
    let err = rest
        .create_message(CH, &json!({ "content": "x" }))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RestError::Unauthorized {
            status: 403,
            message: "Missing Permissions".into()
        }
    );
    rest.create_message(CH, &json!({ "content": "x" }))
        .await
        .expect("next call goes out");
}

#[tokio::test]
async fn invalid_request_budget_suspends_all_calls() {
    let fake = FakeDiscord::start().await;
    let tuning = RestTuning {
        rate_limits: RateLimitConfig {
            invalid_budget: 3,
            ..RateLimitConfig::default()
        },
        ..RestTuning::default()
    };
    let rest = rest_tuned(&fake, tuning);
    fake.always(Canned::status(403));
    for _ in 0..3 {
        let err = rest.channel(CH).await.unwrap_err();
        assert!(
            matches!(err, RestError::Unauthorized { status: 403, .. }),
            "{err:?}"
        );
    }
    let err = rest.current_user().await.unwrap_err();
    assert!(matches!(err, RestError::Suspended { .. }), "{err:?}");
    assert_eq!(fake.calls().len(), 3);
}

#[tokio::test]
async fn unknown_message_is_not_found_with_code() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let err = rest
        .edit_message(CH, "999", &json!({ "content": "x" }))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RestError::NotFound {
            code: Some(10008),
            message: "Unknown Message".into()
        }
    );
}

#[tokio::test]
async fn bad_request_is_rejected_with_discords_message() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.push(Canned::json(
        400,
        json!({ "code": 50035, "message": "Invalid Form Body",
            "errors": { "embeds": { "0": { "title": { "_errors": [{ "code": "BASE_TYPE_MAX_LENGTH" }] } } } } }),
    ));
    let err = rest
        .create_message(CH, &json!({ "embeds": [{ "title": "x" }] }))
        .await
        .unwrap_err();
    match err {
        RestError::Rejected {
            status: 400,
            code: Some(50035),
            message,
        } => {
            assert!(message.starts_with("Invalid Form Body"), "{message}");
            assert!(message.contains("BASE_TYPE_MAX_LENGTH"), "{message}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn gateway_bot_is_parsed() {
    let fake = FakeDiscord::start().await;
    fake.set_gateway_url("wss://gateway.example.test");
    let rest = rest(&fake);
    let gw = rest.gateway_bot().await.expect("gateway_bot");
    assert_eq!(gw.url, "wss://gateway.example.test");
    assert_eq!(gw.shards, 1);
    assert_eq!(gw.session_start_limit.remaining, 999);
    assert_eq!(gw.session_start_limit.max_concurrency, 1);
}

#[tokio::test]
async fn current_user_and_channel_checks() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let me = rest.current_user().await.expect("me");
    assert_eq!(me["bot"], true);
    let ch = rest.channel(CH).await.expect("channel");
    assert_eq!(ch["id"], CH);
    assert_eq!(fake.count("GET /users/@me"), 1);
    assert_eq!(fake.count("GET /channels/{id}"), 1);
}

#[tokio::test]
async fn edits_are_recorded_in_order() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let id = rest
        .create_message(CH, &json!({ "content": "pending" }))
        .await
        .expect("create");
    rest.edit_message(CH, &id, &json!({ "content": "running" }))
        .await
        .expect("edit 1");
    rest.edit_message(CH, &id, &json!({ "content": "success" }))
        .await
        .expect("edit 2");
    let contents: Vec<_> = fake
        .history(&id)
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(
        contents,
        vec![json!("pending"), json!("running"), json!("success")]
    );
}

#[tokio::test]
async fn outage_that_heals_by_itself() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    fake.refuse_for(Duration::from_secs(3));
    let err = rest.current_user().await.unwrap_err();
    assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
    tokio::time::sleep(Duration::from_millis(3100)).await;
    rest.current_user().await.expect("healed");
}

#[tokio::test]
async fn raw_wss_connect_speaks_tls_with_sni() {
    use drone_discord::http::client::Url;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let fake = FakeDiscord::start_tls().await;
    let rest = rest(&fake);
    let url = Url::parse(&format!(
        "wss://localhost:{}/?v=10&encoding=json",
        fake.addr().port()
    ))
    .expect("url");
    let mut stream = rest.client().connect(&url).await.expect("TLS connect");
    let req = format!(
        "GET /api/v10/users/@me HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bot {}\r\nConnection: close\r\n\r\n",
        support::fake_discord::TEST_TOKEN
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("no hang")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("fake-bot"));
}

#[test]
fn rest_futures_and_stream_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync_static<T: Send + Sync + 'static>() {}
    assert_send_sync_static::<Rest>();
    assert_send_sync_static::<drone_discord::http::client::Client>();
    fn assert_stream<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static>() {}
    assert_stream::<drone_discord::http::client::Stream>();
    let rest = Rest::new(drone_discord::discord::rest::RestConfig {
        base_url: "http://127.0.0.1:9/api/v10".into(),
        token: "t".into(),
        extra_ca_file: None,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
    })
    .expect("rest");
    let body = json!({});
    let fut = rest.create_message(CH, &body);
    assert_send(&fut);
    let fut2 = rest.gateway_bot();
    assert_send(&fut2);
}

#[tokio::test]
async fn emulated_limit_answers_429_to_a_client_that_did_not_know_and_it_recovers() {
    let fake = FakeDiscord::start().await;
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 2,
        window: Duration::from_secs(3),
    }));
    let a = rest(&fake);
    for _ in 0..2 {
        a.create_message(CH, &json!({ "content": "a" }))
            .await
            .expect("a");
    }
    // A second client has not seen the bucket headers: it gets one 429, waits, retries.
    let b = rest(&fake);
    b.create_message(CH, &json!({ "content": "b" }))
        .await
        .expect("b after 429");
    assert_eq!(fake.count_status(429), 1);
    let limited = fake
        .calls()
        .into_iter()
        .find(|c| c.status == 429)
        .expect("a 429 call");
    assert_eq!(limited.path, format!("/channels/{CH}/messages"));
    assert_eq!(fake.messages().len(), 3);
}

// ---------------------------------------------------------------------------
// Threads, forums, replies and webhooks (issue 13)

use drone_discord::discord::threads::ChannelKind;
use drone_discord::discord::webhook::WebhookUrl;

#[tokio::test]
async fn threads_forum_posts_and_replies_through_the_client() {
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    const FORUM: &str = "555";
    fake.set_channel_type(FORUM, 15);
    assert_eq!(rest.channel_kind(CH).await, Ok(ChannelKind::Text));
    assert_eq!(rest.channel_kind(FORUM).await, Ok(ChannelKind::Forum));
    fake.set_channel_type("556", 5);
    assert_eq!(rest.channel_kind("556").await, Ok(ChannelKind::Other(5)));

    let mid = rest
        .create_message(CH, &json!({"content": "build #1 failed"}))
        .await
        .expect("create");
    let long = format!("❌ {}", "x".repeat(150));
    let thread = rest.start_thread(CH, &mid, &long).await.expect("thread");
    assert_eq!(thread, mid, "a thread has its message's id");
    let t = fake.thread(&thread).expect("recorded");
    assert_eq!(
        (t.name.chars().count(), t.auto_archive_duration),
        (100, 1440)
    );
    let again = rest.start_thread(CH, &mid, "again").await.unwrap_err();
    assert!(
        matches!(
            again,
            RestError::Rejected {
                status: 400,
                code: Some(160004),
                ..
            }
        ),
        "{again:?}"
    );
    let other = rest
        .create_message(CH, &json!({"content": "x"}))
        .await
        .expect("create");
    let blank = rest.start_thread(CH, &other, "   ").await.unwrap_err();
    assert!(
        matches!(
            blank,
            RestError::Rejected {
                status: 400,
                code: Some(50035),
                ..
            }
        ),
        "{blank:?}"
    );
    rest.create_message(&thread, &json!({"content": "failing steps"}))
        .await
        .expect("a post in the thread");

    let reply = json!({"content": "<@1>", "allowed_mentions": {"users": ["1"]},
        "message_reference": {"message_id": mid, "fail_if_not_exists": false}});
    let rid = rest.create_message(CH, &reply).await.expect("reply");
    let stored = fake.message(&rid).expect("stored reply");
    assert_eq!(
        (
            stored["type"].clone(),
            stored["message_reference"]["message_id"].clone()
        ),
        (json!(19), json!(mid))
    );

    let (post, starter) = rest
        .create_forum_post(FORUM, "❌ build #1", &json!({"content": "running"}))
        .await
        .expect("forum post");
    assert_eq!(post, starter);
    assert_eq!(fake.thread(&post).expect("post").parent, FORUM);
    rest.edit_message(&post, &starter, &json!({"content": "failed"}))
        .await
        .expect("edit in the post's thread");
    assert_eq!(fake.channel_messages(&post)[0]["content"], "failed");
    assert_eq!(fake.count("POST /channels/{id}/threads"), 1);
}

#[tokio::test]
async fn webhooks_execute_and_edit_without_a_bot_token_and_never_show_theirs() {
    let fake = FakeDiscord::start().await;
    let text = fake.add_webhook(CH, "ops");
    let token = text.rsplit('/').next().expect("token").to_string();
    let url = WebhookUrl::parse(&text).expect("webhook URL");
    let rest = Rest::without_token(fake.rest_config(), RestTuning::default()).expect("rest");
    let err = rest.current_user().await.unwrap_err();
    assert!(
        matches!(err, RestError::Rejected { status: 0, .. }),
        "{err:?}"
    );
    assert_eq!(
        fake.calls().len(),
        0,
        "a bot call without a token is not sent"
    );

    let buttons = json!([{"type": 1, "components": [{"type": 2, "style": 5, "label": "Open", "url": "https://drone.test/1"}]}]);
    let body =
        json!({"content": "build #1", "nonce": "n", "enforce_nonce": true, "components": buttons});
    let m = rest
        .execute_webhook(&url, &body, None)
        .await
        .expect("execute");
    assert_eq!(m.channel_id, CH);
    assert!(
        fake.webhook_nonces().is_empty(),
        "no nonce is sent to a webhook"
    );
    assert!(
        fake.ignored_components().is_empty(),
        "with_components was asked for"
    );
    let edited = rest
        .edit_webhook_message(&url, &m.message_id, &json!({"content": "passed"}), None)
        .await
        .expect("edit");
    assert_eq!(edited, m.message_id);
    assert_eq!(
        fake.message(&m.message_id).expect("stored")["content"],
        "passed"
    );
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.header("authorization").is_none()));
    assert_eq!(calls[0].query, "wait=true&with_components=true");
    assert_eq!(calls[0].route, "POST /webhooks/{id}/{token}");
    assert_eq!(calls[1].query, "");

    const FORUM: &str = "555";
    fake.set_channel_type(FORUM, 15);
    let forum = WebhookUrl::parse(&fake.add_webhook(FORUM, "posts")).expect("url");
    let post = rest
        .execute_webhook(&forum, &json!({"content": "running"}), Some("❌ build #2"))
        .await
        .expect("forum post");
    assert_eq!(post.channel_id, post.message_id, "a new post's thread");
    rest.edit_webhook_message(
        &forum,
        &post.message_id,
        &json!({"content": "failed"}),
        Some(&post.channel_id),
    )
    .await
    .expect("edit in the post");
    assert_eq!(
        fake.calls().last().expect("a call").query,
        format!("thread_id={}", post.channel_id)
    );

    // Wrong token and unknown webhook: Discord's codes, never the token.
    let wrong = WebhookUrl::parse(&format!("{text}x")).expect("url");
    let err = rest
        .execute_webhook(&wrong, &json!({"content": "x"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RestError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(&token), "{err}");
    let (head, _) = text.split_once("/webhooks/").expect("path");
    let unknown =
        WebhookUrl::parse(&format!("{head}/webhooks/1{}/{token}", url.id())).expect("url");
    let err = rest
        .edit_webhook_message(&unknown, &m.message_id, &json!({"content": "x"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            RestError::NotFound {
                code: Some(10015),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(&token), "{err}");
}

#[tokio::test]
async fn a_webhook_401_does_not_suspend_the_bot_and_execute_times_out_early() {
    let fake = FakeDiscord::start().await;
    let rest = rest_tuned(
        &fake,
        RestTuning {
            webhook_execute_timeout: Duration::from_millis(300),
            ..RestTuning::default()
        },
    );
    let text = fake.add_webhook(CH, "ops");
    let wrong = WebhookUrl::parse(&format!("{text}x")).expect("url");
    let err = rest
        .execute_webhook(&wrong, &json!({"content": "x"}), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RestError::Unauthorized { status: 401, .. }),
        "{err:?}"
    );
    rest.create_message(CH, &json!({"content": "the bot still posts"}))
        .await
        .expect("no suspension from a webhook's 401");

    let url = WebhookUrl::parse(&text).expect("url");
    fake.push_for(
        "POST",
        "/webhooks/",
        1,
        Canned::status(200).delayed(Duration::from_secs(5)),
    );
    let err = rest
        .execute_webhook(&url, &json!({"content": "x"}), None)
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
    assert!(!err.to_string().contains(url.expose()), "{err}");
}

#[tokio::test]
async fn a_message_with_files_goes_as_multipart_on_the_create_route() {
    use drone_discord::discord::upload::Attachment;
    let fake = FakeDiscord::start().await;
    let rest = rest(&fake);
    let files = [
        Attachment::new("build-test.log", b"line 1\nline 2\n".to_vec()),
        Attachment::new("build-lint.log", vec![0, 159, 146, 150]),
    ];
    let body =
        json!({ "embeds": [{ "title": "test failed" }], "allowed_mentions": { "parse": [] } });
    let id = rest
        .create_message_with_files(CH, &body, &files)
        .await
        .expect("create with files");
    let got = fake.files(&id);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].index, got[0].filename.as_str()),
        (0, "build-test.log")
    );
    assert_eq!(got[0].bytes, b"line 1\nline 2\n");
    assert_eq!(got[1].bytes, vec![0, 159, 146, 150]);
    let msg = fake.message(&id).expect("stored");
    assert_eq!(msg["embeds"][0]["title"], "test failed");
    assert_eq!(msg["attachments"][1]["filename"], "build-lint.log");
    assert_eq!(msg["attachments"][1]["size"], 4);
    assert_eq!(fake.count("POST /channels/{id}/messages"), 1);
    let call = fake.calls().pop().expect("the call");
    let ctype = call.header("content-type").unwrap_or("");
    assert!(
        ctype.starts_with("multipart/form-data; boundary="),
        "{ctype}"
    );
    assert_eq!(call.header("authorization"), Some("Bot test-token"));
    assert_eq!(call.body.expect("payload_json")["attachments"][0]["id"], 0);
}

#[tokio::test]
async fn too_many_or_too_big_files_are_refused_without_calling() {
    use drone_discord::discord::upload::Attachment;
    let fake = FakeDiscord::start().await;
    let rest = rest_tuned(
        &fake,
        RestTuning {
            max_upload_bytes: 1000,
            ..RestTuning::default()
        },
    );
    let body = json!({ "content": "logs" });
    let eleven = vec![Attachment::new("a.log", b"x".to_vec()); 11];
    let over_cap = [Attachment::new("a.log", vec![b'x'; 1001])];
    for files in [&eleven[..], &over_cap[..]] {
        let err = rest
            .create_message_with_files(CH, &body, files)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RestError::Rejected { status: 0, .. }),
            "{err:?}"
        );
    }
    assert!(fake.calls().is_empty(), "nothing may reach Discord");
    // Within the cap it goes out, and Discord's errors map as for JSON calls.
    fake.push(Canned::status(503));
    let err = rest
        .create_message_with_files(CH, &body, &over_cap[..0])
        .await
        .unwrap_err();
    assert!(matches!(err, RestError::Transient { .. }), "{err:?}");
}
