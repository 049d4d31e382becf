//! The fakes are as strict as Discord: each rule the fake Discord (REST) and
//! the fake gateway enforce is driven here over the wire (raw HTTP/1.1 on a
//! plain TcpStream, a raw websocket client), and the fake must refuse or
//! forget exactly as Discord would. Tests of the product rely on these rules
//! to fail for the reasons real Discord would make them fail (issue 11).
mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::fake_discord::{user_id_for, Canned, EmulatedLimit, FakeDiscord, Fault, TEST_TOKEN};
use support::fake_gateway::{FakeConn, FakeGateway, Got, WAIT};
use support::raw_http::http_full;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

// ---------------------------------------------------------------------------
// Raw HTTP

/// One answer as it came off the wire.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Exactly these bytes on a fresh connection (the blocking helper runs off
/// the runtime, so the fake keeps serving); `None` when the fake closed the
/// connection without answering.
async fn send_raw(fake: &FakeDiscord, raw: String) -> Option<Answer> {
    let addr = fake.addr().to_string();
    let (status, headers, body) =
        tokio::task::spawn_blocking(move || http_full(&addr, raw.as_bytes()))
            .await
            .expect("the request thread");
    (status != 0).then_some(Answer {
        status,
        headers,
        body,
    })
}

/// One request with Discord's headers (`Connection: close`).
async fn call(
    fake: &FakeDiscord,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<Answer> {
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} /api/v10{path} HTTP/1.1\r\nHost: discord.test\r\nAuthorization: Bot {token}\r\n\
         User-Agent: DiscordBot (https://example.test, 1)\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_raw(fake, req).await
}

async fn post(fake: &FakeDiscord, channel: &str, body: Value) -> Answer {
    call(
        fake,
        TEST_TOKEN,
        "POST",
        &format!("/channels/{channel}/messages"),
        Some(&body),
    )
    .await
    .expect("an answer")
}

async fn patch(fake: &FakeDiscord, channel: &str, id: &str, body: Value) -> Answer {
    call(
        fake,
        TEST_TOKEN,
        "PATCH",
        &format!("/channels/{channel}/messages/{id}"),
        Some(&body),
    )
    .await
    .expect("an answer")
}

async fn get(fake: &FakeDiscord, path: &str) -> Answer {
    call(fake, TEST_TOKEN, "GET", path, None)
        .await
        .expect("an answer")
}

fn id_of(a: &Answer) -> String {
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["id"].as_str().expect("a message id").to_string()
}

/// A 400 50035 whose `errors` tree has `code` at `path`.
fn assert_form_error(a: &Answer, path: &[&str], code: &str) {
    let v = a.json();
    assert_eq!(a.status, 400, "{v}");
    assert_eq!(v["code"], 50035, "{v}");
    assert_eq!(v["message"], "Invalid Form Body", "{v}");
    let mut node = &v["errors"];
    for seg in path {
        node = &node[*seg];
    }
    let codes: Vec<&str> = node["_errors"]
        .as_array()
        .map(|l| l.iter().filter_map(|e| e["code"].as_str()).collect())
        .unwrap_or_default();
    assert!(codes.contains(&code), "no {code} at {path:?}: {v}");
}

fn assert_empty_message(a: &Answer) {
    let v = a.json();
    assert_eq!((a.status, v["code"].clone()), (400, json!(50006)), "{v}");
    assert_eq!(v["message"], "Cannot send an empty message");
}

const CH: &str = "222";
const OTHER_CH: &str = "333";

// ---------------------------------------------------------------------------
// REST: nonces

#[tokio::test]
async fn a_nonce_is_remembered_within_the_window_then_forgotten() {
    let fake = FakeDiscord::start().await;
    fake.set_nonce_window(Duration::from_millis(300));
    let body = json!({ "content": "build 1", "nonce": "n-1", "enforce_nonce": true });
    let first = id_of(&post(&fake, CH, body.clone()).await);
    assert_eq!(
        id_of(&post(&fake, CH, body.clone()).await),
        first,
        "within the window: the same message"
    );
    assert_eq!(fake.messages().len(), 1);
    // Past the window, Discord has forgotten the nonce: a second message.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = id_of(&post(&fake, CH, body.clone()).await);
    assert_ne!(second, first);
    assert_eq!(fake.messages().len(), 2);
    // forget_nonces() is the same outage without the wait.
    fake.set_nonce_window(Duration::from_secs(120));
    fake.forget_nonces();
    assert_ne!(id_of(&post(&fake, CH, body).await), second);
    assert_eq!(fake.messages().len(), 3);
}

#[test]
fn the_default_nonce_window_is_two_minutes() {
    assert_eq!(
        support::fake_discord::DEFAULT_NONCE_WINDOW,
        Duration::from_secs(120)
    );
}

#[tokio::test]
async fn nonces_are_per_author_across_channels_not_per_channel() {
    let fake = FakeDiscord::start().await;
    let body = json!({ "content": "x", "nonce": "shared", "enforce_nonce": true });
    let first = post(&fake, CH, body.clone()).await;
    let id = id_of(&first);
    // The same author in another channel gets the first message back.
    let again = post(&fake, OTHER_CH, body.clone()).await;
    assert_eq!(id_of(&again), id);
    assert_eq!(again.json()["channel_id"], CH);
    assert_eq!(fake.messages().len(), 1);
    // Another bot (token) with the same nonce is another author: a new message.
    fake.add_token("second-bot-token");
    let other = call(
        &fake,
        "second-bot-token",
        "POST",
        &format!("/channels/{CH}/messages"),
        Some(&body),
    )
    .await
    .expect("an answer");
    assert_ne!(id_of(&other), id);
    assert_eq!(
        other.json()["author"]["id"],
        user_id_for("second-bot-token")
    );
    assert_eq!(fake.messages().len(), 2);
    // Without enforce_nonce the nonce is not checked.
    let loose = json!({ "content": "x", "nonce": "shared" });
    assert_ne!(id_of(&post(&fake, CH, loose).await), id);
}

#[tokio::test]
async fn a_nonce_longer_than_25_characters_is_refused() {
    let fake = FakeDiscord::start().await;
    let ok = "n".repeat(25);
    let long = "n".repeat(26);
    id_of(
        &post(
            &fake,
            CH,
            json!({ "content": "x", "nonce": ok, "enforce_nonce": true }),
        )
        .await,
    );
    let refused = post(
        &fake,
        CH,
        json!({ "content": "x", "nonce": long, "enforce_nonce": true }),
    )
    .await;
    assert_form_error(&refused, &["nonce"], "BASE_TYPE_MAX_LENGTH");
    assert_eq!(fake.messages().len(), 1);
}

// ---------------------------------------------------------------------------
// REST: bodies

#[tokio::test]
async fn an_empty_message_is_refused_with_50006() {
    let fake = FakeDiscord::start().await;
    for body in [
        json!({}),
        json!({ "content": "" }),
        json!({ "content": "   \n " }),
        json!({ "embeds": [] }),
        json!({ "content": null, "embeds": null, "components": [] }),
        json!({ "allowed_mentions": { "parse": [] }, "nonce": "x", "enforce_nonce": true }),
    ] {
        assert_empty_message(&post(&fake, CH, body).await);
    }
    let no_body = call(
        &fake,
        TEST_TOKEN,
        "POST",
        &format!("/channels/{CH}/messages"),
        None,
    )
    .await
    .expect("answer");
    assert_empty_message(&no_body);
    assert!(fake.messages().is_empty());
    // Anything to show is enough.
    id_of(&post(&fake, CH, json!({ "embeds": [{ "title": "t" }] })).await);
    id_of(
        &post(
            &fake,
            CH,
            json!({ "components": [{ "type": 1, "components": [] }] }),
        )
        .await,
    );
    id_of(&post(&fake, CH, json!({ "sticker_ids": ["1"] })).await);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused() {
    let fake = FakeDiscord::start().await;
    let req = format!(
        "POST /api/v10/channels/{CH}/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bot {TEST_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{oops"
    );
    let a = send_raw(&fake, req).await.expect("an answer");
    assert_eq!(
        (a.status, a.json()["code"].clone()),
        (400, json!(50109)),
        "{}",
        a.body
    );
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn embed_limits_are_checked_in_trimmed_code_points() {
    let fake = FakeDiscord::start().await;
    let s = |n: usize| "a".repeat(n);
    let field = |name: String, value: String| json!({ "name": name, "value": value });
    // Over each limit by one → 400 50035 at that part.
    let cases: Vec<(Value, Vec<&str>, &str)> = vec![
        (
            json!({ "content": s(2001) }),
            vec!["content"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "title": s(257) }] }),
            vec!["embeds", "0", "title"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "description": s(4097) }] }),
            vec!["embeds", "0", "description"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "fields": vec![field(s(1), s(1)); 26] }] }),
            vec!["embeds", "0", "fields"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "fields": [field(s(257), s(1))] }] }),
            vec!["embeds", "0", "fields", "0", "name"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "fields": [field(s(1), s(1025))] }] }),
            vec!["embeds", "0", "fields", "0", "value"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "footer": { "text": s(2049) } }] }),
            vec!["embeds", "0", "footer", "text"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": [{ "author": { "name": s(257) } }] }),
            vec!["embeds", "0", "author", "name"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({ "embeds": vec![json!({ "title": "t" }); 11] }),
            vec!["embeds"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        // Empty or missing field names and values are invalid.
        (
            json!({ "embeds": [{ "fields": [field("  ".into(), s(1))] }] }),
            vec!["embeds", "0", "fields", "0", "name"],
            "BASE_TYPE_REQUIRED",
        ),
        (
            json!({ "embeds": [{ "fields": [{ "name": "n" }] }] }),
            vec!["embeds", "0", "fields", "0", "value"],
            "BASE_TYPE_REQUIRED",
        ),
        // 6000 in total over all embeds.
        (
            json!({ "embeds": [{ "description": s(3000) }, { "description": s(3000), "title": "x" }] }),
            vec!["embeds"],
            "MAX_EMBED_SIZE_EXCEEDED",
        ),
    ];
    for (body, path, code) in cases {
        assert_form_error(&post(&fake, CH, body).await, &path, code);
    }
    assert!(fake.messages().is_empty(), "nothing refused was stored");
    // At each limit: accepted. Whitespace around does not count; code points
    // count, not bytes.
    let padded = format!("  {}  \n", s(256));
    let at_limits = json!({
        "content": "é".repeat(2000),
        "embeds": [{
            "title": padded,
            "description": "🚀".repeat(2000),
            "fields": vec![field(s(1), s(1)); 25],
            "footer": { "text": s(1000) },
            "author": { "name": s(256) },
        }],
    });
    id_of(&post(&fake, CH, at_limits).await);
    let total_6000 = json!({ "embeds": [{ "description": s(4096) }, { "description": s(1904) }] });
    id_of(&post(&fake, CH, total_6000).await);
}

#[tokio::test]
async fn edits_are_checked_like_creates() {
    let fake = FakeDiscord::start().await;
    let id = id_of(
        &post(
            &fake,
            CH,
            json!({ "content": "running", "embeds": [{ "title": "build" }] }),
        )
        .await,
    );
    assert_form_error(
        &patch(
            &fake,
            CH,
            &id,
            json!({ "embeds": [{ "title": "a".repeat(257) }] }),
        )
        .await,
        &["embeds", "0", "title"],
        "BASE_TYPE_MAX_LENGTH",
    );
    assert_form_error(
        &patch(&fake, CH, &id, json!({ "content": "a".repeat(2001) })).await,
        &["content"],
        "BASE_TYPE_MAX_LENGTH",
    );
    // Clearing everything leaves an empty message.
    assert_empty_message(&patch(&fake, CH, &id, json!({ "content": null, "embeds": [] })).await);
    assert_eq!(fake.history(&id).len(), 1, "refused edits change nothing");
    // Clearing one part while another remains is fine.
    let ok = patch(&fake, CH, &id, json!({ "content": null })).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["embeds"][0]["title"], "build");
    assert!(ok.json()["edited_timestamp"].is_string());
}

#[tokio::test]
async fn only_the_author_may_edit_and_inaccessible_channels_are_403() {
    let fake = FakeDiscord::start().await;
    let theirs = fake.seed_message(
        CH,
        json!({ "id": "42", "username": "alice" }),
        json!({ "content": "hi" }),
    );
    let refused = patch(&fake, CH, &theirs, json!({ "content": "mine now" })).await;
    assert_eq!(
        (refused.status, refused.json()["code"].clone()),
        (403, json!(50005))
    );
    let id = id_of(&post(&fake, CH, json!({ "content": "x" })).await);
    fake.set_channel_access(CH, false);
    for a in [
        post(&fake, CH, json!({ "content": "x" })).await,
        patch(&fake, CH, &id, json!({ "content": "y" })).await,
        get(&fake, &format!("/channels/{CH}/messages")).await,
    ] {
        assert_eq!(
            (a.status, a.json()["code"].clone()),
            (403, json!(50001)),
            "{}",
            a.json()
        );
        assert_eq!(a.json()["message"], "Missing Access");
    }
    id_of(&post(&fake, OTHER_CH, json!({ "content": "x" })).await);
    fake.set_channel_access(CH, true);
    id_of(&post(&fake, CH, json!({ "content": "x" })).await);
}

// ---------------------------------------------------------------------------
// REST: rate limits

const RL_HEADERS: [&str; 5] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Reset-After",
    "X-RateLimit-Bucket",
];

fn assert_rl_headers(a: &Answer) {
    for h in RL_HEADERS {
        assert!(
            a.header(h).is_some(),
            "{h} missing on a {}: {:?}",
            a.status,
            a.headers
        );
    }
}

#[tokio::test]
async fn limits_are_per_bucket_and_channel_and_bucket_ids_do_not_name_the_channel() {
    let fake = FakeDiscord::start().await;
    fake.set_rate_limit(Some(EmulatedLimit {
        limit: 2,
        window: Duration::from_secs(30),
    }));
    let a1 = post(&fake, CH, json!({ "content": "1" })).await;
    let id = id_of(&a1);
    // POST and PATCH share the message-write bucket of the channel.
    let a2 = patch(&fake, CH, &id, json!({ "content": "2" })).await;
    assert_eq!(a2.status, 200);
    assert_eq!(a2.header("X-RateLimit-Remaining"), Some("0"));
    let a3 = post(&fake, CH, json!({ "content": "3" })).await;
    assert_eq!(a3.status, 429);
    assert_eq!(a3.json()["global"], false);
    assert!(a3.json()["retry_after"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(a3.header("X-RateLimit-Scope"), Some("user"));
    // Another channel has its own window in the same bucket.
    let b1 = post(&fake, OTHER_CH, json!({ "content": "1" })).await;
    assert_eq!(b1.status, 200);
    let bucket = a1.header("X-RateLimit-Bucket").expect("bucket");
    assert_eq!(
        b1.header("X-RateLimit-Bucket"),
        Some(bucket),
        "one bucket id for every channel"
    );
    assert!(
        !bucket.contains(CH) && !bucket.contains(OTHER_CH),
        "bucket id {bucket} names a channel"
    );
    // Reading the channel is another bucket, with its own window.
    let read = get(&fake, &format!("/channels/{CH}/messages?limit=1")).await;
    assert_eq!(read.status, 200);
    assert_ne!(read.header("X-RateLimit-Bucket"), Some(bucket));
    for a in [&a1, &a2, &a3, &b1, &read] {
        assert_rl_headers(a);
    }
}

#[tokio::test]
async fn every_answer_of_a_limited_route_carries_the_headers_by_default() {
    let fake = FakeDiscord::start().await;
    let answers = [
        post(&fake, CH, json!({ "content": "x" })).await,
        post(&fake, CH, json!({})).await,
        post(
            &fake,
            CH,
            json!({ "embeds": [{ "title": "a".repeat(300) }] }),
        )
        .await,
        patch(&fake, CH, "999", json!({ "content": "x" })).await,
        get(&fake, &format!("/channels/{CH}")).await,
        get(&fake, &format!("/channels/{CH}/messages")).await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, vec![200, 400, 400, 404, 200, 200]);
    for a in &answers {
        assert_rl_headers(a);
    }
    // Turned off: a Discord that sends none.
    fake.set_rate_limit(None);
    let bare = post(&fake, CH, json!({ "content": "x" })).await;
    assert!(bare.header("X-RateLimit-Bucket").is_none());
}

// ---------------------------------------------------------------------------
// REST: faults

#[tokio::test]
async fn process_then_drop_creates_the_message_and_loses_the_answer() {
    let fake = FakeDiscord::start().await;
    fake.push_fault_for("POST", "/channels/", 1, Fault::ProcessThenDrop);
    let body = json!({ "content": "x", "nonce": "lost-1", "enforce_nonce": true });
    let lost = call(
        &fake,
        TEST_TOKEN,
        "POST",
        &format!("/channels/{CH}/messages"),
        Some(&body),
    )
    .await;
    assert!(lost.is_none(), "the connection closed without an answer");
    assert_eq!(fake.messages().len(), 1, "the message exists anyway");
    let c = &fake.calls()[0];
    assert_eq!((c.status, c.processed), (0, Some(200)));
    // A retry within the nonce window finds it.
    let retry = post(&fake, CH, body).await;
    assert_eq!(Some(id_of(&retry)), fake.message_ids().first().cloned());
    assert_eq!(fake.messages().len(), 1);
    // Fault::Drop loses the request before it is handled.
    fake.push_fault(1, Fault::Drop);
    assert!(call(
        &fake,
        TEST_TOKEN,
        "POST",
        &format!("/channels/{CH}/messages"),
        Some(&json!({ "content": "y" }))
    )
    .await
    .is_none());
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(fake.calls()[2].processed, None);
}

#[tokio::test]
async fn a_200_html_page_with_or_without_the_message_created() {
    let fake = FakeDiscord::start().await;
    // A proxy answered in Discord's place: nothing created.
    fake.push(Canned::html(200));
    let page = post(&fake, CH, json!({ "content": "x" })).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("Content-Type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(
        serde_json::from_str::<Value>(&page.body).is_err(),
        "not JSON"
    );
    assert!(fake.messages().is_empty());
    // Discord processed it, the proxy mangled the answer: the message exists.
    fake.push_fault_for("POST", "/channels/", 1, Fault::process_then_html());
    let page = post(&fake, CH, json!({ "content": "x" })).await;
    assert_eq!(page.status, 200);
    assert!(
        serde_json::from_str::<Value>(&page.body).is_err(),
        "not JSON"
    );
    assert_eq!(fake.messages().len(), 1);
    // Any answer can stand in: a 200 without an id.
    fake.push_fault_for(
        "POST",
        "/channels/",
        1,
        Fault::ProcessThenAnswer(Canned::json(200, json!({}))),
    );
    assert_eq!(
        post(&fake, CH, json!({ "content": "x" })).await.json(),
        json!({})
    );
    assert_eq!(fake.messages().len(), 2);
}

// ---------------------------------------------------------------------------
// REST: reading the channel, the bot user

#[tokio::test]
async fn channel_reads_are_newest_first_with_authors_and_without_nonces() {
    let fake = FakeDiscord::start().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let body = json!({ "content": format!("m{i}"), "nonce": format!("n{i}"), "enforce_nonce": true,
            "embeds": [{ "title": format!("build {i}"), "url": format!("https://drone.test/r/{i}") }],
            "allowed_mentions": { "parse": [] } });
        ids.push(id_of(&post(&fake, CH, body).await));
    }
    let theirs = fake.seed_message(
        CH,
        json!({ "id": "42", "username": "alice" }),
        json!({ "content": "hello" }),
    );
    id_of(&post(&fake, OTHER_CH, json!({ "content": "elsewhere" })).await);

    let all = get(&fake, &format!("/channels/{CH}/messages")).await.json();
    let got: Vec<&str> = all
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.push(&theirs);
    want.reverse();
    assert_eq!(got, want, "newest first, this channel only");

    let me = get(&fake, "/users/@me").await.json();
    assert_eq!(me["bot"], true);
    assert_eq!(me["id"], fake.bot_user_id());
    let newest_bot = &all[1];
    assert_eq!(
        newest_bot["author"]["id"], me["id"],
        "the author id is the bot user's"
    );
    assert_eq!(newest_bot["author"]["username"], me["username"]);
    assert_eq!(newest_bot["author"]["bot"], true);
    assert_eq!(newest_bot["channel_id"], CH);
    assert_eq!(newest_bot["content"], "m3");
    assert_eq!(newest_bot["embeds"][0]["url"], "https://drone.test/r/3");
    assert!(
        newest_bot["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with("+00:00") && t.len() == 32),
        "{newest_bot}"
    );
    assert!(
        newest_bot.get("nonce").is_none(),
        "reads carry no nonce: {newest_bot}"
    );
    assert!(newest_bot.get("allowed_mentions").is_none());
    assert_eq!(all[0]["author"]["id"], "42");

    let page = |q: String| {
        let fake = &fake;
        async move {
            let v = get(fake, &format!("/channels/{CH}/messages?{q}"))
                .await
                .json();
            v.as_array()
                .expect("list")
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        page("limit=2".into()).await,
        vec![theirs.clone(), ids[3].clone()]
    );
    assert_eq!(
        page(format!("limit=2&before={}", ids[3])).await,
        vec![ids[2].clone(), ids[1].clone()]
    );
    assert_eq!(
        page(format!("after={}&limit=2", ids[0])).await,
        vec![ids[2].clone(), ids[1].clone()]
    );
    for q in ["limit=0", "limit=101", "limit=x", "before=abc"] {
        let a = get(&fake, &format!("/channels/{CH}/messages?{q}")).await;
        assert_eq!(
            (a.status, a.json()["code"].clone()),
            (400, json!(50035)),
            "{q}: {}",
            a.json()
        );
    }
    let both = get(
        &fake,
        &format!("/channels/{CH}/messages?before={}&after={}", ids[3], ids[0]),
    )
    .await;
    assert_eq!(
        both.status, 400,
        "before/after/around are mutually exclusive"
    );
}

#[tokio::test]
async fn channel_reads_default_to_50_and_allow_100() {
    let fake = FakeDiscord::start().await;
    fake.set_rate_limit(None);
    for i in 0..120 {
        fake.seed_message(
            CH,
            json!({ "id": "42", "username": "alice" }),
            json!({ "content": format!("{i}") }),
        );
    }
    let n = |q: &'static str| {
        let fake = &fake;
        async move {
            get(fake, &format!("/channels/{CH}/messages{q}"))
                .await
                .json()
                .as_array()
                .map_or(0, Vec::len)
        }
    };
    assert_eq!(n("").await, 50);
    assert_eq!(n("?limit=100").await, 100);
    assert_eq!(n("?limit=1").await, 1);
}

#[tokio::test]
async fn without_read_message_history_a_channel_read_returns_nothing() {
    let fake = FakeDiscord::start().await;
    id_of(&post(&fake, CH, json!({ "content": "x" })).await);
    fake.set_read_history(false);
    let a = get(&fake, &format!("/channels/{CH}/messages?limit=10")).await;
    assert_eq!((a.status, a.json()), (200, json!([])));
    fake.set_read_history(true);
    assert_eq!(
        get(&fake, &format!("/channels/{CH}/messages"))
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test]
async fn each_token_is_one_stable_bot_user() {
    let fake = FakeDiscord::start().await;
    fake.add_token("other-token");
    let me = get(&fake, "/users/@me").await.json();
    assert_eq!(
        get(&fake, "/users/@me").await.json()["id"],
        me["id"],
        "stable"
    );
    assert_eq!(me["id"], user_id_for(TEST_TOKEN));
    let other = call(&fake, "other-token", "GET", "/users/@me", None)
        .await
        .expect("answer")
        .json();
    assert_ne!(other["id"], me["id"]);
    let m = post(&fake, CH, json!({ "content": "x" })).await.json();
    assert_eq!(m["author"]["id"], me["id"]);
    assert_eq!(
        call(&fake, "nope", "GET", "/users/@me", None)
            .await
            .expect("answer")
            .status,
        401
    );
}

// ---------------------------------------------------------------------------
// Gateway

type Ws = WebSocketStream<TcpStream>;

/// A raw websocket client on `url` + `path_and_query`.
async fn ws_connect(url: &str, path_and_query: &str) -> Ws {
    let host = url.strip_prefix("ws://").expect("ws:// URL");
    let tcp = TcpStream::connect(host)
        .await
        .expect("connect to the fake gateway");
    let (ws, _) = tokio_tungstenite::client_async(format!("{url}{path_and_query}"), tcp)
        .await
        .expect("websocket handshake");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).await.expect("send");
}

fn identify() -> Value {
    json!({ "op": 2, "d": { "token": "t", "intents": 0, "properties": { "os": "linux", "browser": "x", "device": "x" } } })
}

fn heartbeat() -> Value {
    json!({ "op": 1, "d": null })
}

/// What the client got next: a JSON frame, or the close code.
enum In {
    Json(Value),
    Close(Option<u16>),
}

async fn next_in(ws: &mut Ws) -> In {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the fake sent something in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                return In::Json(serde_json::from_str(t.as_str()).unwrap_or(Value::Null))
            }
            Some(Ok(Message::Close(f))) => return In::Close(f.map(|f| u16::from(f.code))),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return In::Close(None),
        }
    }
}

async fn expect_json(ws: &mut Ws) -> Value {
    match next_in(ws).await {
        In::Json(v) => v,
        In::Close(code) => panic!("expected a frame, the fake closed with {code:?}"),
    }
}

/// Skip frames until the fake closes; its code.
async fn expect_close(ws: &mut Ws) -> Option<u16> {
    loop {
        if let In::Close(code) = next_in(ws).await {
            return code;
        }
    }
}

/// Connect to the base URL, identify and get READY for `session`.
async fn identified(gw: &mut FakeGateway, session: &str) -> (Ws, FakeConn) {
    let mut ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    let mut conn = gw.next_conn().await;
    send(&mut ws, identify()).await;
    conn.expect_op(2).await;
    conn.ready(1, session, &gw.resume_url());
    let ready = expect_json(&mut ws).await;
    assert_eq!(ready["t"], "READY");
    (ws, conn)
}

#[tokio::test]
async fn more_than_the_send_limit_in_the_window_closes_4008() {
    let mut gw = FakeGateway::start().await;
    // Discord's own limit: 120 in 60 s. The 120th is fine, the 121st is not.
    let mut ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    let conn = gw.next_conn().await;
    send(&mut ws, identify()).await;
    for _ in 0..119 {
        send(&mut ws, heartbeat()).await;
    }
    for _ in 0..119 {
        assert_eq!(expect_json(&mut ws).await["op"], 11);
    }
    assert!(gw.closes().is_empty(), "120 payloads are allowed");
    send(&mut ws, heartbeat()).await;
    assert_eq!(expect_close(&mut ws).await, Some(4008));
    assert_eq!(conn.closed_by_fake(), Some(4008));
    // A settable limit provokes it quickly.
    gw.set_send_limit(3, Duration::from_secs(60));
    let mut ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    let _conn = gw.next_conn().await;
    for _ in 0..4 {
        send(&mut ws, heartbeat()).await;
    }
    assert_eq!(expect_close(&mut ws).await, Some(4008));
    assert_eq!(gw.closes(), vec![4008, 4008]);
}

#[tokio::test]
async fn a_payload_over_4096_bytes_or_not_json_closes_4002() {
    let mut gw = FakeGateway::start().await;
    let mut ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    let _conn = gw.next_conn().await;
    // Exactly 4096 bytes (JSON padded with spaces) is fine.
    let beat = heartbeat().to_string();
    let at_limit = format!("{beat}{}", " ".repeat(4096 - beat.len()));
    ws.send(Message::text(at_limit)).await.expect("send");
    assert_eq!(expect_json(&mut ws).await["op"], 11);
    let over = format!("{beat}{}", " ".repeat(4097 - beat.len()));
    ws.send(Message::text(over)).await.expect("send");
    assert_eq!(expect_close(&mut ws).await, Some(4002));

    let mut ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    let _conn = gw.next_conn().await;
    ws.send(Message::text("{not json")).await.expect("send");
    assert_eq!(expect_close(&mut ws).await, Some(4002));
}

#[tokio::test]
async fn anything_but_heartbeat_identify_or_resume_before_identify_closes_4003() {
    let mut gw = FakeGateway::start().await;
    let mut ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    let _conn = gw.next_conn().await;
    send(&mut ws, heartbeat()).await;
    assert_eq!(
        expect_json(&mut ws).await["op"],
        11,
        "heartbeats are allowed before Identify"
    );
    let presence = json!({ "op": 3, "d": { "since": null, "activities": [], "status": "online", "afk": false } });
    send(&mut ws, presence.clone()).await;
    assert_eq!(expect_close(&mut ws).await, Some(4003));
    // After Identify the same presence is fine; an unknown op is 4001.
    let (mut ws, _conn) = identified(&mut gw, "s-4003").await;
    send(&mut ws, presence).await;
    send(&mut ws, heartbeat()).await;
    assert_eq!(expect_json(&mut ws).await["op"], 11, "presence accepted");
    send(&mut ws, json!({ "op": 42, "d": null })).await;
    assert_eq!(expect_close(&mut ws).await, Some(4001));
}

#[tokio::test]
async fn a_second_identify_on_one_connection_closes_4005() {
    let mut gw = FakeGateway::start().await;
    let (mut ws, conn) = identified(&mut gw, "s-4005").await;
    send(&mut ws, identify()).await;
    assert_eq!(expect_close(&mut ws).await, Some(4005));
    assert_eq!(conn.closed_by_fake(), Some(4005));
    assert_eq!(gw.identifies(), 1, "the refused one is not an identify");
}

#[tokio::test]
async fn a_session_closed_with_1000_or_1001_cannot_be_resumed() {
    for code in [1000u16, 1001] {
        let mut gw = FakeGateway::start().await;
        let session = format!("s-{code}");
        let (mut ws, mut conn) = identified(&mut gw, &session).await;
        assert_eq!(gw.session_valid(&session), Some(true));
        ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        }))
        .await
        .expect("close");
        assert!(matches!(conn.recv().await, Got::Closed(Some(c)) if c == code));
        assert_eq!(gw.session_valid(&session), Some(false));
        let mut ws = ws_connect(&gw.resume_url(), "/?v=10&encoding=json").await;
        let _conn = gw.next_conn().await;
        send(
            &mut ws,
            json!({ "op": 6, "d": { "token": "t", "session_id": session, "seq": 1 } }),
        )
        .await;
        assert_eq!(expect_json(&mut ws).await, json!({ "op": 9, "d": false }));
    }
}

#[tokio::test]
async fn a_session_dropped_or_closed_4000_can_be_resumed_on_the_pathless_resume_url() {
    let mut gw = FakeGateway::start().await;
    let resume_url = gw.resume_url();
    let authority = resume_url.strip_prefix("ws://").expect("ws://");
    assert!(
        !authority.contains('/') && !authority.contains('?'),
        "resume URL has no path: {resume_url}"
    );
    let (mut ws, mut conn) = identified(&mut gw, "s-keep").await;
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 4000u16.into(),
        reason: "zombie".into(),
    }))
    .await
    .expect("close");
    assert!(matches!(conn.recv().await, Got::Closed(Some(4000))));
    assert_eq!(gw.session_valid("s-keep"), Some(true));
    // The client appends /?v=10&encoding=json to the resume URL.
    let mut ws = ws_connect(&resume_url, "/?v=10&encoding=json").await;
    let mut conn = gw.next_conn().await;
    assert!(conn.on_resume_url);
    assert_eq!(conn.path, "/?v=10&encoding=json");
    send(
        &mut ws,
        json!({ "op": 6, "d": { "token": "t", "session_id": "s-keep", "seq": 1 } }),
    )
    .await;
    assert_eq!(conn.expect_op(6).await["d"]["session_id"], "s-keep");
    conn.send(json!({ "op": 0, "s": 2, "t": "RESUMED", "d": {} }));
    assert_eq!(
        expect_json(&mut ws).await["t"],
        "RESUMED",
        "no op 9 for a live session"
    );
    // Resumed counts as authenticated: a presence is fine; resumes are not identifies.
    send(&mut ws, json!({ "op": 3, "d": { "since": null, "activities": [], "status": "idle", "afk": false } })).await;
    send(&mut ws, heartbeat()).await;
    assert_eq!(expect_json(&mut ws).await["op"], 11);
    assert_eq!((gw.identifies(), gw.resumes()), (1, 1));
    // A session nobody READY'd is not resumable either.
    let mut ws = ws_connect(&resume_url, "/?v=10&encoding=json").await;
    let _conn = gw.next_conn().await;
    send(
        &mut ws,
        json!({ "op": 6, "d": { "token": "t", "session_id": "never", "seq": 1 } }),
    )
    .await;
    assert_eq!(expect_json(&mut ws).await, json!({ "op": 9, "d": false }));
    // The base URL is another listener.
    let _ws = ws_connect(&gw.url(), "/?v=10&encoding=json").await;
    assert!(!gw.next_conn().await.on_resume_url);
}

#[tokio::test]
async fn server_closes_4007_and_4009_and_op9_false_end_the_session() {
    let mut gw = FakeGateway::start().await;
    for (i, how) in ["4007", "4009", "op9"].into_iter().enumerate() {
        let session = format!("s-{i}");
        let (mut ws, conn) = identified(&mut gw, &session).await;
        match how {
            "op9" => conn.send(json!({ "op": 9, "d": false })),
            code => conn.close(code.parse().expect("code")),
        }
        let _ = next_in(&mut ws).await;
        assert_eq!(gw.session_valid(&session), Some(false), "{how}");
    }
    // gw.invalidate_session is the same, for a session that timed out.
    let (_ws, _conn) = identified(&mut gw, "s-timeout").await;
    gw.invalidate_session("s-timeout");
    assert_eq!(gw.session_valid("s-timeout"), Some(false));
}

#[tokio::test]
async fn acks_can_be_delayed() {
    let mut gw = FakeGateway::start().await;
    let (mut ws, mut conn) = identified(&mut gw, "s-ack").await;
    // The ACK comes after a dispatch the fake sends later.
    conn.delay_acks(Duration::from_secs(2));
    send(&mut ws, heartbeat()).await;
    conn.expect_op(1).await;
    conn.dispatch(2, "GUILD_CREATE");
    assert_eq!(
        expect_json(&mut ws).await["t"],
        "GUILD_CREATE",
        "the dispatch overtakes the delayed ACK"
    );
    assert_eq!(expect_json(&mut ws).await["op"], 11, "the ACK still comes");
    // The fake-wide setting applies to new connections' heartbeats.
    gw.set_ack_delay(Duration::from_secs(2));
    let (mut ws, mut conn) = identified(&mut gw, "s-ack-2").await;
    send(&mut ws, heartbeat()).await;
    conn.expect_op(1).await;
    conn.dispatch(2, "GUILD_CREATE");
    assert_eq!(expect_json(&mut ws).await["t"], "GUILD_CREATE");
    assert_eq!(expect_json(&mut ws).await["op"], 11);
    // Withholding still wins over delaying.
    conn.withhold_acks(true);
    send(&mut ws, heartbeat()).await;
    conn.expect_op(1).await;
    conn.dispatch(3, "TYPING_START");
    assert_eq!(expect_json(&mut ws).await["t"], "TYPING_START");
}

#[tokio::test]
async fn identifies_are_counted_in_total_and_per_5_seconds() {
    let mut gw = FakeGateway::start().await;
    let mut keep = Vec::new();
    for i in 0..3 {
        keep.push(identified(&mut gw, &format!("s-count-{i}")).await);
    }
    assert_eq!(gw.identifies(), 3);
    assert_eq!(gw.identify_times().len(), 3);
    assert_eq!(
        gw.max_identifies_per_5s(),
        3,
        "three identifies in well under 5 s"
    );
    assert_eq!(gw.max_identifies_within(Duration::from_secs(5)), 3);
    assert_eq!(gw.resumes(), 0);
}

/// `GET /webhooks/{id}/{token}` needs no bot token (the path's token is the
/// authorization), and refuses as Discord does: a wrong token is 401 50027,
/// an unknown webhook 404 10015.
#[tokio::test]
async fn webhooks_are_authorized_by_their_token_only() {
    let fake = FakeDiscord::start().await;
    let url = fake.add_webhook("300000000000000003", "ops");
    let path = url
        .split("/api/v10")
        .nth(1)
        .expect("the webhook path")
        .to_string();
    let (id, token) = {
        let mut parts = path.trim_start_matches("/webhooks/").splitn(2, '/');
        (
            parts.next().unwrap().to_string(),
            parts.next().unwrap().to_string(),
        )
    };
    let raw = |path: &str| {
        format!(
            "GET /api/v10{path} HTTP/1.1\r\nHost: discord.test\r\nUser-Agent: DiscordBot (https://example.test, 1)\r\n\
             Connection: close\r\n\r\n"
        )
    };
    let ok = send_raw(&fake, raw(&path)).await.expect("an answer");
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["id"], json!(id));
    assert_eq!(ok.json()["channel_id"], json!("300000000000000003"));
    assert_eq!(ok.json()["name"], json!("ops"));

    let wrong = send_raw(&fake, raw(&format!("/webhooks/{id}/{token}x")))
        .await
        .expect("an answer");
    assert_eq!(
        (wrong.status, wrong.json()["code"].clone()),
        (401, json!(50027))
    );
    let unknown = send_raw(&fake, raw(&format!("/webhooks/1{id}/{token}")))
        .await
        .expect("an answer");
    assert_eq!(
        (unknown.status, unknown.json()["code"].clone()),
        (404, json!(10015))
    );
    // A bot token does not stand in for the webhook's.
    let with_bot = call(
        &fake,
        TEST_TOKEN,
        "GET",
        &format!("/webhooks/{id}/nope"),
        None,
    )
    .await
    .expect("an answer");
    assert_eq!(with_bot.status, 401);
    assert_eq!(fake.count("GET /webhooks/{id}/{token}"), 4);
}

// ---------------------------------------------------------------------------
// REST: channel types, threads, forums, replies, mentions, webhooks (issue 13)

async fn post_path(fake: &FakeDiscord, path: &str, body: Value) -> Answer {
    call(fake, TEST_TOKEN, "POST", path, Some(&body))
        .await
        .expect("an answer")
}

fn assert_code(a: &Answer, status: u16, code: u64) {
    let v = a.json();
    assert_eq!((a.status, v["code"].clone()), (status, json!(code)), "{v}");
}

#[tokio::test]
async fn channels_answer_their_type_and_unknown_ones_are_404() {
    let fake = FakeDiscord::start().await;
    let text = get(&fake, &format!("/channels/{CH}")).await;
    assert_eq!((text.status, text.json()["type"].clone()), (200, json!(0)));
    assert!(text.json()["guild_id"].is_string(), "{}", text.body);
    for kind in [5, 15, 16] {
        fake.set_channel_type(CH, kind);
        assert_eq!(
            get(&fake, &format!("/channels/{CH}")).await.json()["type"],
            kind
        );
    }
    fake.remove_channel(OTHER_CH);
    assert_code(
        &get(&fake, &format!("/channels/{OTHER_CH}")).await,
        404,
        10003,
    );
    assert_code(
        &post(&fake, OTHER_CH, json!({"content": "x"})).await,
        404,
        10003,
    );
    fake.set_channel_access("444", false);
    assert_code(&get(&fake, "/channels/444").await, 403, 50001);
}

#[tokio::test]
async fn a_thread_starts_once_from_a_message_of_that_channel_with_a_valid_name() {
    let fake = FakeDiscord::start().await;
    let mid = id_of(&post(&fake, CH, json!({"content": "build #1 failed"})).await);
    let path = format!("/channels/{CH}/messages/{mid}/threads");
    let thread =
        |name: Value, minutes: u64| json!({"name": name, "auto_archive_duration": minutes});
    for name in [json!("   "), json!("x".repeat(101))] {
        let a = post_path(&fake, &path, thread(name, 1440)).await;
        assert_form_error(&a, &["name"], "BASE_TYPE_BAD_LENGTH");
    }
    let a = post_path(&fake, &path, json!({"auto_archive_duration": 60})).await;
    assert_form_error(&a, &["name"], "BASE_TYPE_REQUIRED");
    let a = post_path(&fake, &path, thread(json!("ok"), 30)).await;
    assert_form_error(&a, &["auto_archive_duration"], "BASE_TYPE_CHOICES");
    let missing = format!("/channels/{CH}/messages/{}1/threads", mid);
    assert_code(
        &post_path(&fake, &missing, thread(json!("ok"), 60)).await,
        404,
        10008,
    );
    let elsewhere = format!("/channels/{OTHER_CH}/messages/{mid}/threads");
    assert_code(
        &post_path(&fake, &elsewhere, thread(json!("ok"), 60)).await,
        404,
        10008,
    );

    let name = format!("  ❌ {}  ", "é".repeat(98));
    let ok = post_path(&fake, &path, thread(json!(name), 1440)).await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    assert_eq!(
        (ok.json()["id"].clone(), ok.json()["type"].clone()),
        (json!(mid), json!(11))
    );
    assert_eq!(ok.json()["parent_id"], json!(CH));
    let again = post_path(&fake, &path, thread(json!("again"), 1440)).await;
    assert_code(&again, 400, 160004);

    let t = fake.thread(&mid).expect("the thread");
    assert_eq!((t.parent.as_str(), t.name.as_str()), (CH, name.trim()));
    assert_eq!(t.auto_archive_duration, 1440);
    id_of(&post(&fake, &mid, json!({"content": "failing steps"})).await);
    assert_eq!(fake.channel_messages(&mid).len(), 1);
    assert_eq!(
        get(&fake, &format!("/channels/{mid}")).await.json()["type"],
        11
    );
}

#[tokio::test]
async fn forums_take_posts_and_refuse_plain_messages() {
    let fake = FakeDiscord::start().await;
    fake.set_channel_type(CH, 15);
    assert_code(&post(&fake, CH, json!({"content": "x"})).await, 400, 40058);
    let path = format!("/channels/{CH}/threads");
    let a = post_path(&fake, &path, json!({"name": "build #1"})).await;
    assert_form_error(&a, &["message"], "BASE_TYPE_REQUIRED");
    let a = post_path(
        &fake,
        &path,
        json!({"name": "", "message": {"content": "x"}}),
    )
    .await;
    assert_form_error(&a, &["name"], "BASE_TYPE_BAD_LENGTH");
    let a = post_path(&fake, &path, json!({"name": "#1", "message": {}})).await;
    assert_empty_message(&a);

    let ok = post_path(
        &fake,
        &path,
        json!({"name": "#1", "auto_archive_duration": 1440, "message": {"content": "running"}}),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let thread = ok.json()["id"].as_str().expect("thread id").to_string();
    assert_eq!(ok.json()["message"]["id"], json!(thread));
    assert_eq!(ok.json()["message"]["channel_id"], json!(thread));
    assert_eq!(fake.thread(&thread).expect("post").parent, CH);
    let edited = patch(&fake, &thread, &thread, json!({"content": "passed"})).await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(fake.channel_messages(&thread)[0]["content"], "passed");

    let text = post_path(
        &fake,
        &format!("/channels/{OTHER_CH}/threads"),
        json!({"name": "#1", "message": {"content": "x"}}),
    )
    .await;
    assert_code(&text, 400, 50024);
}

#[tokio::test]
async fn a_reply_must_reference_a_message_in_its_channel_unless_told_not_to_fail() {
    let fake = FakeDiscord::start().await;
    let mid = id_of(&post(&fake, CH, json!({"content": "build"})).await);
    let other = id_of(&post(&fake, OTHER_CH, json!({"content": "elsewhere"})).await);
    let reply =
        |id: &str| json!({"content": "<@1> broke it", "message_reference": {"message_id": id}});
    let ok = post(&fake, CH, reply(&mid)).await;
    let rid = id_of(&ok);
    assert_eq!(ok.json()["type"], 19);
    assert_eq!(ok.json()["message_reference"]["message_id"], json!(mid));
    assert_eq!(
        fake.message(&rid).expect("reply")["message_reference"]["channel_id"],
        json!(CH)
    );
    for missing in [format!("{mid}9"), other] {
        let a = post(&fake, CH, reply(&missing)).await;
        assert_form_error(
            &a,
            &["message_reference"],
            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
        );
    }
    let lenient = json!({"content": "x", "message_reference": {"message_id": format!("{mid}9"), "fail_if_not_exists": false}});
    let a = post(&fake, CH, lenient).await;
    let id = id_of(&a);
    assert!(a.json().get("message_reference").is_none(), "{}", a.body);
    assert_eq!(fake.message(&id).expect("posted")["type"], Value::Null);
}

#[tokio::test]
async fn allowed_mentions_must_have_discords_shape() {
    let fake = FakeDiscord::start().await;
    let user = "80351110224678912";
    for ok in [
        json!({"parse": []}),
        json!({"users": [user]}),
        json!({"parse": ["roles"], "users": [user], "replied_user": false}),
    ] {
        let a = post(&fake, CH, json!({"content": "x", "allowed_mentions": ok})).await;
        let id = id_of(&a);
        assert_eq!(fake.message(&id).expect("stored")["allowed_mentions"], ok);
    }
    let refused = [
        (
            json!({"parse": ["users"], "users": [user]}),
            vec![],
            "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
        ),
        (
            json!({"parse": ["roles"], "roles": ["1"]}),
            vec![],
            "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
        ),
        (
            json!({"parse": ["channels"]}),
            vec!["parse", "0"],
            "BASE_TYPE_CHOICES",
        ),
        (json!({"parse": "users"}), vec!["parse"], "BASE_TYPE_LIST"),
        (
            json!({"users": vec![user; 101]}),
            vec!["users"],
            "BASE_TYPE_MAX_LENGTH",
        ),
        (
            json!({"users": ["@everyone"]}),
            vec!["users", "0"],
            "NUMBER_TYPE_COERCE",
        ),
        (
            json!({"replied_user": "yes"}),
            vec!["replied_user"],
            "BASE_TYPE_BOOLEAN",
        ),
        (json!({"user": [user]}), vec!["user"], "UNKNOWN_FIELD"),
        (json!(["users"]), vec![], "DICT_TYPE_CONVERT"),
    ];
    let mid = id_of(&post(&fake, CH, json!({"content": "x"})).await);
    for (mentions, path, code) in refused {
        let path: Vec<&str> = std::iter::once("allowed_mentions").chain(path).collect();
        let a = post(
            &fake,
            CH,
            json!({"content": "x", "allowed_mentions": mentions}),
        )
        .await;
        assert_form_error(&a, &path, code);
        let a = patch(&fake, CH, &mid, json!({"allowed_mentions": mentions})).await;
        assert_form_error(&a, &path, code);
    }
}

/// The path (under `/api/v10`) of a webhook URL the fake made.
fn webhook_path(url: &str) -> String {
    url.split("/api/v10")
        .nth(1)
        .expect("the webhook path")
        .to_string()
}

#[tokio::test]
async fn webhook_execution_and_edits_are_checked_as_discord_does() {
    let fake = FakeDiscord::start().await;
    let hook = webhook_path(&fake.add_webhook(CH, "ops"));
    let id = hook.split('/').nth(2).expect("webhook id").to_string();
    assert_code(
        &post_path(
            &fake,
            &format!("{hook}x?wait=true"),
            json!({"content": "x"}),
        )
        .await,
        401,
        50027,
    );
    assert_code(
        &post_path(
            &fake,
            &format!("/webhooks/1{id}/t?wait=true"),
            json!({"content": "x"}),
        )
        .await,
        404,
        10015,
    );

    let silent = post_path(&fake, &hook, json!({"content": "no wait"})).await;
    assert_eq!((silent.status, silent.body.as_str()), (204, ""));
    assert_code(&post_path(&fake, &hook, json!({})).await, 400, 50006);

    let buttons = json!([{"type": 1, "components": [{"type": 2, "style": 5, "label": "Open", "url": "https://drone.test/1"}]}]);
    let body = json!({"content": "build", "nonce": "n1", "components": buttons});
    let a = post_path(&fake, &format!("{hook}?wait=true"), body.clone()).await;
    let mid = id_of(&a);
    assert_eq!(
        (
            a.json()["channel_id"].clone(),
            a.json()["author"]["id"].clone()
        ),
        (json!(CH), json!(id))
    );
    assert_eq!(fake.webhook_nonces(), vec![json!("n1")]);
    assert_eq!(fake.ignored_components(), vec![mid.clone()]);
    assert!(fake.message(&mid).expect("stored").get("nonce").is_none());
    assert_eq!(a.json()["components"], json!([]));
    let kept = post_path(
        &fake,
        &format!("{hook}?wait=true&with_components=true"),
        body,
    )
    .await;
    assert_eq!(kept.json()["components"], buttons, "{}", kept.body);

    let named = json!({"content": "x", "thread_name": "build #1"});
    assert_code(
        &post_path(&fake, &format!("{hook}?wait=true"), named).await,
        400,
        220003,
    );
    let bad = json!({"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}});
    let a = post_path(&fake, &format!("{hook}?wait=true"), bad).await;
    assert_form_error(
        &a,
        &["allowed_mentions"],
        "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
    );

    let edit = |m: &str, q: &str| format!("{hook}/messages/{m}{q}");
    let e = call(
        &fake,
        TEST_TOKEN,
        "PATCH",
        &edit(&mid, ""),
        Some(&json!({"content": "passed"})),
    )
    .await
    .expect("an answer");
    assert_eq!(e.status, 200, "{}", e.body);
    assert_eq!(fake.message(&mid).expect("edited")["content"], "passed");
    let bots = id_of(&post(&fake, CH, json!({"content": "the bot's"})).await);
    let e = call(
        &fake,
        TEST_TOKEN,
        "PATCH",
        &edit(&bots, ""),
        Some(&json!({"content": "x"})),
    )
    .await
    .expect("an answer");
    assert_code(&e, 404, 10008);
    let e = call(
        &fake,
        TEST_TOKEN,
        "PATCH",
        &format!("{hook}x/messages/{mid}"),
        Some(&json!({"content": "x"})),
    )
    .await
    .expect("an answer");
    assert_code(&e, 401, 50027);
}

#[tokio::test]
async fn a_webhook_to_a_forum_needs_a_thread_name_or_id() {
    let fake = FakeDiscord::start().await;
    fake.set_channel_type(CH, 15);
    let hook = webhook_path(&fake.add_webhook(CH, "ops"));
    let wait = format!("{hook}?wait=true");
    assert_code(
        &post_path(&fake, &wait, json!({"content": "x"})).await,
        400,
        220001,
    );
    let a = post_path(&fake, &wait, json!({"content": "x", "thread_name": " "})).await;
    assert_form_error(&a, &["thread_name"], "BASE_TYPE_BAD_LENGTH");
    let a = post_path(
        &fake,
        &wait,
        json!({"content": "running", "thread_name": "build #1"}),
    )
    .await;
    let mid = id_of(&a);
    assert_eq!(
        a.json()["channel_id"],
        json!(mid),
        "the post's thread has the message's id"
    );
    assert_eq!(fake.thread(&mid).expect("post").name, "build #1");
    let both = post_path(
        &fake,
        &format!("{wait}&thread_id={mid}"),
        json!({"content": "x", "thread_name": "y"}),
    )
    .await;
    assert_code(&both, 400, 220002);
    let into = post_path(
        &fake,
        &format!("{wait}&thread_id={mid}"),
        json!({"content": "more"}),
    )
    .await;
    assert_eq!(into.json()["channel_id"], json!(mid), "{}", into.body);
    let e = call(
        &fake,
        TEST_TOKEN,
        "PATCH",
        &format!("{hook}/messages/{mid}"),
        Some(&json!({"content": "passed"})),
    )
    .await
    .expect("an answer");
    assert_code(&e, 404, 10008);
    let e = call(
        &fake,
        TEST_TOKEN,
        "PATCH",
        &format!("{hook}/messages/{mid}?thread_id={mid}"),
        Some(&json!({"content": "passed"})),
    )
    .await
    .expect("an answer");
    assert_eq!(e.status, 200, "{}", e.body);
}

// ---------------------------------------------------------------------------
// Multipart uploads

/// A raw multipart create with `parts` (name, filename, content) under
/// `boundary`.
async fn post_multipart(
    fake: &FakeDiscord,
    boundary: &str,
    parts: &[(&str, Option<&str>, String)],
) -> Answer {
    let mut body = String::new();
    for (name, filename, content) in parts {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""
        ));
        if let Some(f) = filename {
            body.push_str(&format!("; filename=\"{f}\""));
        }
        body.push_str(&format!("\r\n\r\n{content}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let req = format!(
        "POST /api/v10/channels/222/messages HTTP/1.1\r\nHost: discord.test\r\nAuthorization: Bot {TEST_TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    send_raw(fake, req).await.expect("an answer")
}

#[tokio::test]
async fn multipart_uploads_are_parsed_strictly() {
    let fake = FakeDiscord::start().await;
    let payload = |files: &[(u64, &str)]| {
        let listed: Vec<Value> = files
            .iter()
            .map(|(id, f)| json!({"id": id, "filename": f}))
            .collect();
        json!({"content": "log", "attachments": listed}).to_string()
    };
    // Well formed: stored with the file, which tests can read.
    let ok = post_multipart(
        &fake,
        "b0",
        &[
            ("payload_json", None, payload(&[(0, "a.log")])),
            ("files[0]", Some("a.log"), "the log".into()),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let files = fake.files(&id_of(&ok));
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].bytes, b"the log");

    let refused = [
        // No payload_json.
        vec![("files[0]", Some("a.log"), "x".to_string())],
        // A file without a filename.
        vec![
            ("payload_json", None, payload(&[(0, "a.log")])),
            ("files[0]", None, "x".into()),
        ],
        // attachments do not name the file.
        vec![
            ("payload_json", None, payload(&[(1, "a.log")])),
            ("files[0]", Some("a.log"), "x".into()),
        ],
        vec![
            ("payload_json", None, payload(&[])),
            ("files[0]", Some("a.log"), "x".into()),
        ],
        // An unknown part name.
        vec![
            ("payload_json", None, payload(&[])),
            ("file", Some("a.log"), "x".into()),
        ],
        // payload_json that is not JSON.
        vec![("payload_json", None, "{".into())],
    ];
    for parts in refused {
        let a = post_multipart(&fake, "b1", &parts).await;
        assert_eq!(a.status, 400, "{parts:?}: {}", a.body);
    }
    // Eleven files.
    let names: Vec<String> = (0..11).map(|n| format!("files[{n}]")).collect();
    let listed: Vec<(u64, &str)> = (0..11).map(|n| (n, "f.log")).collect();
    let mut parts = vec![("payload_json", None, payload(&listed))];
    parts.extend(
        names
            .iter()
            .map(|n| (n.as_str(), Some("f.log"), "x".to_string())),
    );
    assert_eq!(post_multipart(&fake, "b2", &parts).await.status, 400);
    // A wrong boundary in the header.
    let a = post_multipart(&fake, "b3", &[("payload_json", None, payload(&[]))]).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let raw = "POST /api/v10/channels/222/messages HTTP/1.1\r\nHost: d\r\nAuthorization: Bot test-token\r\n\
        Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 17\r\nConnection: close\r\n\r\n--b3\r\n\r\nx\r\n--b3--";
    assert_eq!(
        send_raw(&fake, raw.into()).await.expect("answer").status,
        400
    );
    // One byte over 10 MiB in one file: 413 40005.
    let big = "x".repeat(10 * 1024 * 1024 + 1);
    let a = post_multipart(
        &fake,
        "b4",
        &[
            ("payload_json", None, payload(&[(0, "big.log")])),
            ("files[0]", Some("big.log"), big),
        ],
    )
    .await;
    assert_eq!(a.status, 413);
    assert_eq!(a.json()["code"], 40005);
    assert_eq!(a.json()["message"], "Request entity too large");
    assert_eq!(
        fake.messages().len(),
        2,
        "only the well-formed creates stored a message"
    );
}

// ---------------------------------------------------------------------------
// Components

#[tokio::test]
async fn buttons_are_checked_as_discord_checks_them() {
    let fake = FakeDiscord::start().await;
    let with = |rows: Value| json!({ "content": "build", "components": rows });
    let link = |url: &str| json!({ "type": 2, "style": 5, "label": "Open in Drone", "url": url });
    let row = |buttons: Vec<Value>| json!({ "type": 1, "components": buttons });
    let restart = |id: &str| json!({ "type": 2, "style": 4, "label": "Restart", "custom_id": id });
    let ok = post(
        &fake,
        "222",
        with(json!([row(vec![
            link("https://d.example/1"),
            restart("r:1")
        ])])),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let refused = [
        // Six rows; six buttons in a row; a row that is not type 1.
        (
            with(json!(vec![row(vec![restart("a")]); 6])),
            vec!["components"],
        ),
        (
            with(json!([row((0..6)
                .map(|n| restart(&n.to_string()))
                .collect())])),
            vec!["components", "0", "components"],
        ),
        (
            with(json!([{ "type": 2, "components": [restart("a")] }])),
            vec!["components", "0"],
        ),
        // A link button without a url, with a custom_id, or with a non-http url.
        (
            with(json!([row(vec![
                json!({ "type": 2, "style": 5, "label": "x" })
            ])])),
            vec!["components", "0", "components", "0", "url"],
        ),
        (
            with(json!([row(vec![
                json!({ "type": 2, "style": 5, "label": "x", "url": "https://d.example", "custom_id": "c" })
            ])])),
            vec!["components", "0", "components", "0", "custom_id"],
        ),
        (
            with(json!([row(vec![link("javascript:alert(1)")])])),
            vec!["components", "0", "components", "0", "url"],
        ),
        // A label over 80; a custom_id over 100 or missing; a duplicate custom_id; a url on style 4.
        (
            with(json!([row(vec![
                json!({ "type": 2, "style": 5, "label": "x".repeat(81), "url": "https://d.example" })
            ])])),
            vec!["components", "0", "components", "0", "label"],
        ),
        (
            with(json!([row(vec![restart(&"x".repeat(101))])])),
            vec!["components", "0", "components", "0", "custom_id"],
        ),
        (
            with(json!([row(vec![
                json!({ "type": 2, "style": 1, "label": "x" })
            ])])),
            vec!["components", "0", "components", "0", "custom_id"],
        ),
        (
            with(json!([row(vec![restart("a"), restart("a")])])),
            vec!["components", "0", "components", "1", "custom_id"],
        ),
        (
            with(json!([row(vec![
                json!({ "type": 2, "style": 4, "label": "x", "custom_id": "c", "url": "https://d.example" })
            ])])),
            vec!["components", "0", "components", "0", "url"],
        ),
    ];
    for (body, path) in refused {
        let a = post(&fake, "222", body.clone()).await;
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        let mut node = &a.json()["errors"];
        for seg in &path {
            node = &node[*seg];
        }
        assert!(
            node.get("_errors").is_some(),
            "{body}: no error at {path:?}: {}",
            a.body
        );
    }
    assert_eq!(fake.messages().len(), 1);
}

// ---------------------------------------------------------------------------
// Interactions

#[tokio::test]
async fn interaction_callbacks_are_due_within_3_s_and_only_once() {
    let fake = FakeDiscord::start().await;
    let callback = |id: &str, token: &str, body: Value| {
        let body = body.to_string();
        format!(
            "POST /api/v10/interactions/{id}/{token}/callback HTTP/1.1\r\nHost: d\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let original = |app: &str, token: &str, body: Value| {
        let body = body.to_string();
        format!(
            "PATCH /api/v10/webhooks/{app}/{token}/messages/@original HTTP/1.1\r\nHost: d\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let d = fake.click("c", "1", None, json!({ "channel_id": "222" }));
    let (id, token, app) = (
        d["id"].as_str().unwrap(),
        d["token"].as_str().unwrap(),
        d["application_id"].as_str().unwrap(),
    );
    let deferred = json!({ "type": 5, "data": { "flags": 64 } });
    // The original response cannot be edited before the callback.
    let early = send_raw(&fake, original(app, token, json!({ "content": "x" })))
        .await
        .unwrap();
    assert_eq!(
        (early.status, early.json()["code"].as_u64()),
        (404, Some(10015))
    );
    // A wrong token, a bad type or bad flags are refused (and do not count).
    let wrong = send_raw(&fake, callback(id, "not-the-token", deferred.clone()))
        .await
        .unwrap();
    assert_eq!(
        (wrong.status, wrong.json()["code"].as_u64()),
        (404, Some(10062))
    );
    for bad in [
        json!({ "type": 1 }),
        json!({ "type": 5, "data": { "flags": 65 } }),
    ] {
        assert_eq!(
            send_raw(&fake, callback(id, token, bad))
                .await
                .unwrap()
                .status,
            400
        );
    }
    let ok = send_raw(&fake, callback(id, token, deferred.clone()))
        .await
        .unwrap();
    assert_eq!(ok.status, 204, "{}", ok.body);
    let again = send_raw(&fake, callback(id, token, deferred.clone()))
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.json()["code"].as_u64()),
        (400, Some(40060))
    );
    let edit = send_raw(&fake, original(app, token, json!({ "content": "done" })))
        .await
        .unwrap();
    assert_eq!(edit.status, 200, "{}", edit.body);
    let empty = send_raw(&fake, original(app, token, json!({ "content": "" })))
        .await
        .unwrap();
    assert_eq!(empty.status, 400);
    assert_eq!(
        fake.interaction(id).unwrap().edits,
        vec![json!({ "content": "done" })]
    );

    // Past the 3 s, the interaction is unknown.
    let late = fake.click("c", "1", Some(&["2"]), json!({}));
    assert_eq!(late["member"]["roles"], json!(["2"]));
    let late_id = late["id"].as_str().unwrap();
    fake.age_interaction(late_id, Duration::from_millis(3001));
    let a = send_raw(
        &fake,
        callback(late_id, late["token"].as_str().unwrap(), deferred),
    )
    .await
    .unwrap();
    assert_eq!((a.status, a.json()["code"].as_u64()), (404, Some(10062)));
}
