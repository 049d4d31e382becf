//! The Drone API client against the strict fake Drone over loopback: who
//! the token is, logs (stored arrays, JSON lines, flushed late, huge, noisy),
//! Drone's access rules (404 for no access, 401 for a guest), Restart, a slow,
//! garbled or redirecting server; and `check`'s Drone line through the binary.
mod support;

use std::time::Duration;

use drone_discord::config::Secret;
use drone_discord::drone::{Build, Stage, Step};
use drone_discord::drone_api::{
    excerpt_embed, failed_steps, DroneApi, DroneError, DroneTuning, LogReader, StepLog,
};
use support::binary::run_cmd;
use support::fake_drone::{FakeDrone, Unflushed};

const ADMIN: &str = "admin-token-0001";
const DEV: &str = "dev-token-0002";
const MACHINE: &str = "machine-token-0003";

/// A fake with an admin, a developer who can read `acme/app` and write
/// `acme/tool`, a machine user, and three repositories with build 7.
async fn fake(tls: bool) -> FakeDrone {
    let f = if tls {
        FakeDrone::start_tls().await
    } else {
        FakeDrone::start().await
    };
    f.add_user(ADMIN, "root", true, false);
    f.add_user(DEV, "dev", false, false);
    f.add_user(MACHINE, "ci-bot", false, true);
    f.add_repo("acme/app", "private", &["dev"], &[], &[7]);
    f.add_repo("acme/tool", "private", &[], &["dev"], &[7]);
    f.add_repo("acme/open", "public", &[], &[], &[7]);
    f
}

fn api(f: &FakeDrone, token: &str) -> DroneApi {
    api_tuned(f, token, DroneTuning::default())
}

fn api_tuned(f: &FakeDrone, token: &str, tuning: DroneTuning) -> DroneApi {
    DroneApi::new(&f.base_url(), &Secret::new(token), f.ca_file(), tuning).unwrap()
}

async fn log(api: &DroneApi, repo: &str, stage: i64, step: i64) -> Result<StepLog, DroneError> {
    let (ns, name) = repo.split_once('/').unwrap();
    api.step_log(ns, name, 7, stage, step, 1 << 20).await
}

#[tokio::test]
async fn the_token_s_user_over_tls_and_a_wrong_token_is_a_401() {
    let f = fake(true).await;
    let me = api(&f, ADMIN).user().await.unwrap();
    assert_eq!((me.login.as_str(), me.admin), ("root", true));
    assert_eq!(api(&f, "wrong").user().await, Err(DroneError::Unauthorized));
    let calls = f.calls();
    assert_eq!(calls[0].path, "/api/user");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some("Bearer admin-token-0001")
    );
}

#[tokio::test]
async fn logs_are_read_as_arrays_or_json_lines() {
    let f = fake(false).await;
    f.set_log_lines("acme/app", 7, 1, 2, &["+ make test\n", "FAIL: 1 test\n"]);
    let jsonl =
        b"{\"pos\":0,\"out\":\"one\\n\",\"time\":0}\n{\"pos\":1,\"out\":\"two\\n\",\"time\":1}\n";
    f.set_log("acme/app", 7, 1, 3, jsonl.to_vec());
    let dev = api(&f, DEV);
    let l = log(&dev, "acme/app", 1, 2).await.unwrap();
    assert_eq!(
        (l.text.as_str(), l.lines),
        ("+ make test\nFAIL: 1 test\n", 2)
    );
    assert_eq!(
        log(&dev, "acme/app", 1, 3).await.unwrap().text,
        "one\ntwo\n"
    );
    assert_eq!(f.calls()[0].path, "/api/repos/acme/app/builds/7/logs/1/2");
    // No such step, or no such build: 404.
    assert_eq!(log(&dev, "acme/app", 1, 9).await, Err(DroneError::NotFound));
    assert_eq!(
        dev.step_log("acme", "app", 8, 1, 2, 100).await,
        Err(DroneError::NotFound)
    );
}

#[tokio::test]
async fn a_log_flushed_late_arrives_after_empty_answers_or_404s() {
    let f = fake(false).await;
    f.set_log_lines("acme/app", 7, 1, 2, &["late\n"]);
    f.not_flushed_for("acme/app", 7, 1, 2, 2, Unflushed::Empty);
    f.set_log_lines("acme/app", 7, 1, 3, &["later\n"]);
    f.not_flushed_for("acme/app", 7, 1, 3, 2, Unflushed::NotFound);
    let dev = api(&f, DEV);
    for _ in 0..2 {
        assert!(log(&dev, "acme/app", 1, 2).await.unwrap().is_empty());
        assert_eq!(log(&dev, "acme/app", 1, 3).await, Err(DroneError::NotFound));
    }
    assert_eq!(log(&dev, "acme/app", 1, 2).await.unwrap().text, "late\n");
    assert_eq!(log(&dev, "acme/app", 1, 3).await.unwrap().text, "later\n");
}

#[tokio::test]
async fn access_is_drone_s_404_for_what_the_user_cannot_see() {
    let f = fake(false).await;
    for repo in ["acme/app", "acme/tool", "acme/open"] {
        f.set_log_lines(repo, 7, 1, 1, &["x\n"]);
    }
    let (admin, dev, machine, guest) = (
        api(&f, ADMIN),
        api(&f, DEV),
        api(&f, MACHINE),
        api(&f, "wrong"),
    );
    assert!(log(&admin, "acme/app", 1, 1).await.is_ok());
    assert!(log(&dev, "acme/tool", 1, 1).await.is_ok(), "a writer reads");
    assert_eq!(
        log(&machine, "acme/app", 1, 1).await,
        Err(DroneError::NotFound)
    );
    assert!(log(&machine, "acme/open", 1, 1).await.is_ok());
    assert_eq!(
        log(&admin, "acme/gone", 1, 1).await,
        Err(DroneError::NotFound)
    );
    // A wrong token is a guest: 401 for a private repository, a public one reads.
    assert_eq!(
        log(&guest, "acme/app", 1, 1).await,
        Err(DroneError::Unauthorized)
    );
    assert!(log(&guest, "acme/open", 1, 1).await.is_ok());
    f.deactivate(DEV);
    let e = log(&dev, "acme/app", 1, 1).await.unwrap_err();
    assert!(e.to_string().contains("403"), "{e}");
}

#[tokio::test]
async fn restart_needs_write_access_and_answers_the_new_build() {
    let f = fake(false).await;
    let new = api(&f, DEV).restart("acme", "tool", 7).await.unwrap();
    assert_eq!((new.number, new.status.as_str()), (8, "pending"));
    assert_eq!(
        api(&f, DEV).restart("acme", "app", 7).await,
        Err(DroneError::NotFound)
    );
    assert_eq!(
        api(&f, "wrong").restart("acme", "open", 7).await,
        Err(DroneError::Unauthorized)
    );
    assert_eq!(
        api(&f, ADMIN).restart("acme", "app", 99).await,
        Err(DroneError::NotFound)
    );
    assert_eq!(f.restarts(), [("acme/tool".to_string(), 7, 8)]);
    let posts: Vec<_> = f
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST")
        .collect();
    assert_eq!(posts[0].path, "/api/repos/acme/tool/builds/7");
    assert_eq!(
        posts.iter().map(|c| c.status).collect::<Vec<_>>(),
        [200, 404, 401, 404]
    );
}

#[tokio::test]
async fn a_huge_log_keeps_only_its_tail() {
    let f = fake(false).await;
    let lines: Vec<String> = (0..100_000)
        .map(|i| format!("line {i:06} {}\n", "x".repeat(64)))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    f.set_log_lines("acme/app", 7, 1, 2, &refs);
    let cap = 64 * 1024;
    let l = api(&f, DEV)
        .step_log("acme", "app", 7, 1, 2, cap)
        .await
        .unwrap();
    assert!(l.is_cut() && l.text.len() <= cap);
    assert!(l.text.starts_with("line ") && l.text.ends_with(&lines[99_999]));
    assert_eq!(l.lines, 100_000);
    assert_eq!(
        l.total_bytes,
        lines.iter().map(|l| l.len() as u64).sum::<u64>()
    );
}

#[tokio::test]
async fn noisy_logs_make_a_clean_excerpt_that_cannot_break_its_code_block() {
    let f = fake(false).await;
    let noisy = [
        "\u{1b}[1;32m+ npm test\u{1b}[0m\n",
        "progress  1%\rprogress 50%\rprogress 100%\r\n",
        "```\n",
        "@everyone look ``` here\n",
        "\u{1b}[31mexit status 1\u{1b}[0m\n",
    ];
    f.set_log_lines("acme/app", 7, 1, 2, &noisy);
    let l = log(&api(&f, DEV), "acme/app", 1, 2).await.unwrap();
    let build = Build {
        number: 7,
        stages: vec![Stage {
            number: 1,
            name: "default".into(),
            steps: vec![Step {
                number: 2,
                name: "test".into(),
                status: "failure".into(),
                exit_code: 1,
                ..Step::default()
            }],
            ..Stage::default()
        }],
        ..Build::default()
    };
    let e = excerpt_embed(
        "http://drone.test",
        "acme/app",
        7,
        failed_steps(&build)[0],
        &l,
    );
    let d = e["description"].as_str().unwrap();
    assert!(
        d.starts_with("Exit code 1 · the last 5 of 5 lines\n```\n+ npm test\nprogress 100%\n"),
        "{d}"
    );
    assert_eq!(d.matches("```").count(), 2, "{d}");
    assert!(!d.contains('\u{1b}') && !d.contains('\r'), "{d}");
    assert_eq!(e["url"], "http://drone.test/acme/app/7/1/2");
}

#[tokio::test]
async fn a_slow_or_garbled_server_is_an_error_and_a_redirect_is_not_followed() {
    let f = fake(false).await;
    f.set_log_lines("acme/app", 7, 1, 2, &["x\n"]);
    f.set_delay(Some(Duration::from_secs(3)));
    let short = DroneTuning {
        call_timeout: Duration::from_millis(300),
        log_timeout: Duration::from_millis(300),
        ..DroneTuning::default()
    };
    let slow = api_tuned(&f, DEV, short);
    assert!(matches!(slow.user().await, Err(DroneError::Unreachable(_))));
    assert!(matches!(
        log(&slow, "acme/app", 1, 2).await,
        Err(DroneError::Unreachable(_))
    ));
    f.set_delay(None);
    f.set_garbled(true);
    let e = log(&api(&f, DEV), "acme/app", 1, 2).await.unwrap_err();
    assert!(e.to_string().contains("garbled"), "{e}");
    assert!(api(&f, DEV)
        .user()
        .await
        .unwrap_err()
        .to_string()
        .contains("garbled"));
    f.set_garbled(false);

    let other = FakeDrone::start().await;
    other.add_user(DEV, "dev", false, false);
    f.set_redirect(Some(&format!("{}/api/user", other.base_url())));
    let e = api(&f, DEV).user().await.unwrap_err();
    assert!(e.to_string().contains("not followed"), "{e}");
    assert!(other.calls().is_empty(), "the token went to another server");
}

/// The log reader's memory is its cap however the log arrives.
#[test]
fn the_reader_s_bound_holds_piece_by_piece() {
    let mut r = LogReader::new(1000);
    for i in 0..10_000 {
        r.feed(format!("{{\"pos\":{i},\"out\":\"{}\\n\"}}\n", "y".repeat(99)).as_bytes())
            .unwrap();
    }
    let l = r.finish().unwrap();
    assert!(l.text.len() <= 1000 && l.total_bytes == 1_000_000);
}

fn check(extra: &[(&str, &str)]) -> (i32, String, String) {
    let state = tempfile::tempdir().unwrap();
    let mut env = vec![
        ("DISCORD_TOKEN", support::credentials::TOKEN),
        ("DISCORD_CHANNEL_ID", support::credentials::CHANNEL),
        // Nothing listens here: the Discord lines fail, quickly.
        ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
        ("STATE_DIR", state.path().to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    run_cmd(&["check"], &env)
}

fn drone_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.contains(" drone: "))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_whom_the_token_belongs_to_or_what_is_off() {
    let f = fake(true).await;
    let (server, ca) = (f.base_url(), f.ca_file().unwrap());
    let ca = ca.to_str().unwrap().to_string();
    let run = move |token: Option<&'static str>| {
        let (server, ca) = (server.clone(), ca.clone());
        tokio::task::spawn_blocking(move || {
            let mut env = vec![
                ("DRONE_SERVER", server.as_str()),
                ("SSL_CERT_FILE", ca.as_str()),
            ];
            env.extend(token.map(|t| ("DRONE_TOKEN", t)));
            check(&env)
        })
    };
    let (_, out, err) = run(Some(ADMIN)).await.unwrap();
    let line = drone_line(&out);
    assert!(
        line.starts_with("ok   drone: https://127.0.0.1:"),
        "{out}{err}"
    );
    assert!(line.contains("token of user root, an admin"), "{line}");
    let (_, out, _) = run(Some(DEV)).await.unwrap();
    assert!(
        drone_line(&out).contains("not an admin") && drone_line(&out).contains("404"),
        "{out}"
    );
    let (code, out, err) = run(Some("wrong")).await.unwrap();
    assert_eq!(code, 1);
    assert!(
        drone_line(&out).starts_with("FAIL drone:") && drone_line(&out).contains("401"),
        "{out}"
    );
    let (_, out, _) = run(None).await.unwrap();
    assert!(
        drone_line(&out).starts_with("ok   drone:") && drone_line(&out).contains("are off"),
        "{out}"
    );
    for text in [&out, &err] {
        assert!(
            !text.contains(ADMIN) && !text.contains("wrong"),
            "token printed: {text}"
        );
    }
    // Nothing configured: no line, as before the Drone API existed.
    let (_, out, err) = tokio::task::spawn_blocking(|| check(&[])).await.unwrap();
    assert_eq!(drone_line(&out), "", "{out}");
    assert!(!err.contains("DRONE"), "{err}");
    // A token without DRONE_SERVER is a configuration error naming it.
    let (code, out, _) = tokio::task::spawn_blocking(|| check(&[("DRONE_TOKEN", DEV)]))
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(
        drone_line(&out).starts_with("FAIL drone:") && drone_line(&out).contains("DRONE_SERVER"),
        "{out}"
    );
}
