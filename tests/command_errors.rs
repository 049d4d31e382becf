//! The one-shot commands' failures, through the real binary: exit 1 when
//! the operation failed (network, store, a failed check), exit 2 for usage
//! and configuration errors, and always one line on stderr starting with
//! `drone-discord: ` that holds no secret.
mod support;

use support::binary::run_cmd;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::FakeDiscord;

fn fixture_path(name: &str) -> String {
    format!("{}/test/fixtures/drone/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A loopback address nothing listens on (bound, then released).
fn closed_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The failure line: exactly one, with the prefix, naming `needle`, no secret.
fn assert_one_line(err: &str, needle: &str) {
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(err.starts_with("drone-discord: "), "prefix missing: {err}");
    assert!(err.contains(needle), "{needle:?} not named: {err}");
    assert!(
        !err.contains(SECRET) && !err.contains(TOKEN),
        "secret leaked: {err}"
    );
}

#[test]
fn configuration_and_usage_errors_exit_2() {
    let f = fixture_path("build_created.json");
    // A missing setting.
    let (code, out, err) = run_cmd(
        &["send", &f, "--url", "http://127.0.0.1:9/"],
        &[("DISCORD_TOKEN", TOKEN)],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "configuration error: DRONE_WEBHOOK_SECRET");
    // A bad setting.
    let (code, out, err) = run_cmd(
        &["send", &f, "--url", "ftp://127.0.0.1:9/"],
        &[("DRONE_WEBHOOK_SECRET", SECRET)],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "--url");
    // A bad argument, and none at all.
    let (code, out, err) = run_cmd(&["send"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "fixture");
    let (code, out, err) = run_cmd(&["frobnicate"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "frobnicate");
    let (code, _, err) = run_cmd(&[], &[]);
    assert_eq!(code, 2, "{err}");
    assert_one_line(&err, "no command given");
    // Help is not an error.
    let (code, out, err) = run_cmd(&["--help"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("render"), "{out}");
}

#[test]
fn render_of_a_missing_or_non_json_file_exits_2() {
    let (code, out, err) = run_cmd(&["render", "/nonexistent/build.json"], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "/nonexistent/build.json: cannot open");

    let dir = tempfile::tempdir().unwrap();
    let not_json = dir.path().join("not.json");
    std::fs::write(&not_json, "build created\n").unwrap();
    let (code, out, err) = run_cmd(&["render", not_json.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "not JSON");

    // The same fixture rules hold for send.
    let (code, out, err) = run_cmd(
        &[
            "send",
            not_json.to_str().unwrap(),
            "--url",
            "http://127.0.0.1:9/",
        ],
        &[("DRONE_WEBHOOK_SECRET", SECRET)],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "not JSON");
}

#[test]
fn send_to_a_closed_port_exits_1() {
    let url = format!("http://{}/", closed_addr());
    let f = fixture_path("build_created.json");
    let (code, out, err) = run_cmd(
        &["send", &f, "--url", &url],
        &[("DRONE_WEBHOOK_SECRET", SECRET)],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_one_line(&err, &format!("send to {url}"));
}

#[test]
fn queue_on_a_store_path_that_is_not_a_directory_exits_2() {
    // The store calls a path that is a file a configuration error.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state");
    std::fs::write(&file, "").unwrap();
    let listen = closed_addr();
    let (code, out, err) = run_cmd(
        &["queue"],
        &[
            ("STATE_DIR", file.to_str().unwrap()),
            ("LISTEN_ADDR", &listen),
        ],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert_one_line(&err, "not a directory");
    assert!(
        err.contains(&listen),
        "the service it asked is named: {err}"
    );
}

/// Discord answers, the store cannot be opened and no service holds it:
/// the store line fails, the exit code is 1 and stderr names the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_with_a_store_that_cannot_be_opened_exits_1() {
    let fake = FakeDiscord::start().await;
    fake.set_token(TOKEN);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state");
    std::fs::write(&file, "").unwrap();
    let base = fake.base_url();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run_cmd(
            &["check"],
            &[
                ("DISCORD_TOKEN", TOKEN),
                ("DISCORD_CHANNEL_ID", CHANNEL),
                ("DISCORD_API_BASE_URL", &base),
                ("STATE_DIR", file.to_str().unwrap()),
                ("LISTEN_ADDR", &closed_addr()),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("ok   token:")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok   channel:")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL store:") && l.contains("not a directory")),
        "{out}"
    );
    assert_one_line(&err, "check: store failed");
    assert!(!out.contains(TOKEN), "token printed: {out}");
}
