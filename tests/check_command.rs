//! `drone-discord check` against the fake Discord over TLS: one line per
//! check, exit 0 when all pass, exit 1 naming what failed, no secret printed.
mod support;

use support::binary::run_cmd;
use support::credentials::{CHANNEL, TOKEN};
use support::fake_discord::{Canned, FakeDiscord};

async fn check(fake: &FakeDiscord, state: &std::path::Path) -> (i32, String, String) {
    let base = fake.base_url();
    let ca = fake.ca_file().expect("TLS fake has a CA file");
    let state = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        run_cmd(
            &["check"],
            &[
                ("DISCORD_TOKEN", TOKEN),
                ("DISCORD_CHANNEL_ID", CHANNEL),
                ("DISCORD_API_BASE_URL", &base),
                ("SSL_CERT_FILE", ca.to_str().unwrap()),
                ("STATE_DIR", state.to_str().unwrap()),
            ],
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_token_channel_and_store() {
    let fake = FakeDiscord::start_tls().await;
    fake.set_token(TOKEN);
    let state = tempfile::tempdir().unwrap();

    let (code, out, err) = check(&fake, state.path()).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ok   token:"), "{out}");
    assert!(
        lines[1].starts_with("ok   channel:") && lines[1].contains(CHANNEL),
        "{out}"
    );
    assert!(
        lines[2].starts_with("ok   store:") && lines[2].contains("writable"),
        "{out}"
    );
    assert_eq!(fake.count("GET /users/@me"), 1);
    assert_eq!(fake.count("GET /channels/{id}"), 1);

    // A refused token: the token line fails, the exit code says so, the token stays secret.
    fake.always(Canned::unauthorized());
    let (code, out, err) = check(&fake, state.path()).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL token:") && l.contains("401")),
        "{out}"
    );
    assert!(out.lines().any(|l| l.starts_with("ok   store:")), "{out}");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "token printed"
    );
}

/// While `serve` holds the embedded store, `check` asks the service instead
/// of reporting the file lock as a failure.
#[test]
fn check_asks_the_running_service_for_the_store() {
    let state = tempfile::tempdir().unwrap();
    let svc = support::binary::start(state.path(), &["--dry-run"], &[]);
    let (code, out, err) = run_cmd(
        &["check"],
        &[
            ("DISCORD_TOKEN", TOKEN),
            ("DISCORD_CHANNEL_ID", CHANNEL),
            // Nothing listens here: the Discord lines fail, the store line must not.
            ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
            ("STATE_DIR", state.path().to_str().unwrap()),
            ("LISTEN_ADDR", &svc.addr),
        ],
    );
    assert_eq!(code, 1, "the Discord checks fail: {out}{err}");
    let store_line = out
        .lines()
        .find(|l| l.contains("store:"))
        .unwrap_or_default();
    assert!(
        store_line.starts_with("ok   store: held by the service"),
        "{out}"
    );
    assert!(store_line.contains("writable"), "{out}");
    assert_eq!(svc.sigterm(), Some(0));
}
