//! End-to-end: `serve --dry-run` keeps what it would have posted for
//! `GET /preview` (one card per message, edited in place), only with
//! `--dry-run`; `render --html` writes the same card as a page of its own.
//! What a browser makes of the page is `scripts/preview-check.sh`'s (headless
//! chromium); this checks the HTTP side through the real binary.
mod support;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::binary::{run_cmd, start, Service};
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fixtures::{fixture, fixture_names};
use support::raw_http::http_full;

fn hostile() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fixtures/preview/hostile_commit.json");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn messages(svc: &Service, since: u64) -> Value {
    let (status, body) = svc.get(&format!("/preview/messages?since={since}"));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Waits (bounded) until nothing is pending and the board holds `n` messages.
fn wait_for_cards(svc: &Service, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, queue) = svc.get("/queue");
        let pending = serde_json::from_str::<Value>(&queue)
            .ok()
            .and_then(|q| q["pending"].as_u64());
        let board = messages(svc, 0);
        if pending == Some(0) && board["ids"].as_array().map(Vec::len) == Some(n) {
            return board;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} cards: {board}\nqueue {queue}\nlog:\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn html_of<'a>(board: &'a Value, title: &str) -> Vec<&'a str> {
    board["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["html"].as_str())
        .filter(|h| h.contains(title))
        .collect()
}

#[test]
fn dry_run_shows_one_card_per_message_edited_in_place() {
    let state = tempfile::tempdir().unwrap();
    let svc = start(state.path(), &["--dry-run"], &[]);
    for name in fixture_names() {
        let (status, body) = svc.post_signed(&fixture(name.as_str()), SECRET);
        assert_eq!(status, 200, "{name}: {body}");
    }
    // Nine fixtures, five messages: the five build events are one build.
    let board = wait_for_cards(&svc, 5);
    let build = html_of(&board, "Diesel-Net/plex #189");
    assert_eq!(build.len(), 1, "{board}");
    assert!(
        build[0].contains("✅ Success") && build[0].contains("(edited)"),
        "{}",
        build[0]
    );
    for title in [
        "Repository enabled",
        "Repository disabled",
        "User created",
        "User deleted",
    ] {
        assert_eq!(html_of(&board, title).len(), 1, "{title}: {board}");
    }
    // Asking again from the current version: nothing changed.
    let version = board["version"].as_u64().unwrap();
    assert_eq!(messages(&svc, version)["messages"], serde_json::json!([]));

    let (status, body) = svc.post_signed(&hostile(), SECRET);
    assert_eq!(status, 200, "{body}");
    wait_for_cards(&svc, 6);
    let changed = messages(&svc, version);
    let cards = changed["messages"].as_array().unwrap();
    assert_eq!(cards.len(), 1, "only the new card is sent: {changed}");
    let html = cards[0]["html"].as_str().unwrap();
    assert!(
        html.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"),
        "{html}"
    );
    for bad in [
        "<script",
        "<img src=x",
        "<svg",
        "href=\"javascript:",
        "href=\"data:",
        "<b ",
    ] {
        assert!(!html.contains(bad), "{bad} in {html}");
    }

    let get = b"GET /preview HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let (status, headers, page) = http_full(&svc.addr, get);
    assert_eq!(status, 200);
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("text/html; charset=utf-8"));
    let csp = header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        page.contains("/preview/messages?since="),
        "the page polls for its cards"
    );
    assert_eq!(svc.sigterm(), Some(0));
}

#[test]
fn without_dry_run_there_is_no_preview() {
    let state = tempfile::tempdir().unwrap();
    let env = [
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
        ("NO_GATEWAY", "true"),
    ];
    let svc = start(state.path(), &[], &env);
    for path in ["/preview", "/preview/messages"] {
        let (status, body) = svc.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("--dry-run"), "{body}");
    }
}

#[test]
fn render_html_writes_the_card_as_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fixtures/drone/build_success.json");
    let fixture = fixture.to_str().unwrap();
    let out = dir.path().join("card.html");
    let (code, stdout, err) = run_cmd(
        &["render", fixture, "--html", "--out", out.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    let page = std::fs::read_to_string(&out).unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    assert!(page.contains(
        "<div class=\"title\"><a href=\"https://drone.kiwi-labs.net/Diesel-Net/plex/189\""
    ));
    assert!(
        page.contains("grid-column:1/5") && !page.contains("<script"),
        "{page}"
    );

    let (code, stdout, err) = run_cmd(&["render", fixture, "--html"], &[]);
    assert_eq!((code, stdout.trim_end()), (0, page.trim_end()), "{err}");

    let (code, _, err) = run_cmd(
        &[
            "render",
            fixture,
            "--html",
            "--out",
            "/nonexistent/dir/x.html",
        ],
        &[],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("drone-discord: --out /nonexistent/dir/x.html"),
        "{err}"
    );
}
