//! End-to-end: `drone-discord queue` lists dead letters (id, key, reason,
//! age), and `queue retry ID|all` / `queue purge ID|all` act on them, both
//! through the running service that holds the store (loopback
//! `POST /queue/dead/…`) and directly on the store when no service runs.
//! Exit codes: 0 done, 1 the operation failed (no such dead letter), 2 usage.
//!
//! Dead letters are made the honest way: the fake Discord answers a
//! create with 400, which the relay sets aside for good.
mod support;

use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};
use support::binary::{run_cmd, start, wait_health, Service};
use support::builds::build_created;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fake_discord::{Canned, FakeDiscord};
use tokio::task::block_in_place;

const WAIT: Duration = Duration::from_secs(60);

fn queue(state: &Path, listen: &str, args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["queue"];
    argv.extend_from_slice(args);
    let state = state.to_str().expect("utf-8 path");
    run_cmd(&argv, &[("STATE_DIR", state), ("LISTEN_ADDR", listen)])
}

/// The ids of the dead letters `queue` lists.
fn dead_ids(listing: &str) -> Vec<u64> {
    listing
        .lines()
        .filter_map(|l| l.strip_prefix("dead     #"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn refuse_creates(fake: &FakeDiscord, n: usize) {
    fake.push_for(
        "POST",
        "/channels/",
        n,
        Canned::json(400, json!({"message": "Invalid Form Body", "code": 50035})),
    );
}

fn start_against(state: &Path, fake: &FakeDiscord) -> Service {
    let base = fake.base_url();
    start(
        state,
        &[],
        &[
            ("DISCORD_TOKEN", TOKEN),
            ("DISCORD_CHANNEL_ID", CHANNEL),
            ("DISCORD_API_BASE_URL", base.as_str()),
            ("NO_GATEWAY", "true"),
        ],
    )
}

fn wait_dead(svc: &Service, n: u64) {
    wait_health(svc, WAIT, |_, v| {
        v["queue"]["dead_letters"] == n && v["queue"]["pending"] == 0
    });
}

fn wait_messages(fake: &FakeDiscord, n: usize) {
    let deadline = Instant::now() + WAIT;
    while fake.messages().len() < n {
        assert!(Instant::now() < deadline, "{n} message(s) never created");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_and_purged_with_and_without_a_service() {
    let state = tempfile::tempdir().expect("tempdir");
    let fake = FakeDiscord::start().await;
    fake.set_token(TOKEN);
    refuse_creates(&fake, 3);
    block_in_place(|| {
        // Through the running service, which holds the store.
        let svc = start_against(state.path(), &fake);
        for id in 1..=3 {
            let (status, body) = svc.post_signed(&build_created(id, id), SECRET);
            assert_eq!(status, 200, "{body}");
        }
        wait_dead(&svc, 3);
        let (code, out, err) = queue(state.path(), &svc.addr, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("(from the running service)"), "{out}");
        assert!(
            out.contains("Invalid Form Body"),
            "the reason is listed: {out}"
        );
        assert!(out.contains(" s ago)"), "the age is listed: {out}");
        let ids = dead_ids(&out);
        assert_eq!(ids.len(), 3, "{out}");

        let (code, out, err) = queue(state.path(), &svc.addr, &["retry", &ids[0].to_string()]);
        assert_eq!((code, out.trim()), (0, "retried 1 dead letter(s)"), "{err}");
        wait_messages(&fake, 1);
        wait_dead(&svc, 2);

        let (code, _, err) = queue(state.path(), &svc.addr, &["retry", &ids[0].to_string()]);
        assert_eq!(code, 1, "no longer a dead letter: {err}");
        assert!(
            err.contains(&format!("no dead letter #{}", ids[0])),
            "{err}"
        );
        let (code, out, err) = queue(state.path(), &svc.addr, &["purge", &ids[1].to_string()]);
        assert_eq!((code, out.trim()), (0, "purged 1 dead letter(s)"), "{err}");
        wait_dead(&svc, 1);

        for usage in [
            &["retry"][..],
            &["purge", "some"],
            &["again", "all"],
            &["retry", "1", "2"],
        ] {
            let (code, _, err) = queue(state.path(), &svc.addr, usage);
            assert_eq!(code, 2, "{usage:?}: {err}");
        }
        assert_eq!(svc.sigterm(), Some(0));

        // Directly on the store: no service runs.
        let nobody = "127.0.0.1:9";
        let (code, out, err) = queue(state.path(), nobody, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains("running service"), "{out}");
        assert_eq!(dead_ids(&out), vec![ids[2]], "{out}");
        let (code, out, err) = queue(state.path(), nobody, &["retry", "all"]);
        assert_eq!((code, out.trim()), (0, "retried 1 dead letter(s)"), "{err}");
        let (code, out, _) = queue(state.path(), nobody, &[]);
        assert_eq!(code, 0);
        assert!(out.starts_with("1 pending, 0 dead letters"), "{out}");
        let (code, _, err) = queue(state.path(), nobody, &["purge", "12345"]);
        assert_eq!(code, 1, "{err}");

        // The service delivers what was queued again while it was down.
        let svc = start_against(state.path(), &fake);
        wait_messages(&fake, 2);
        wait_dead(&svc, 0);
        let (code, out, err) = queue(state.path(), &svc.addr, &["purge", "all"]);
        assert_eq!((code, out.trim()), (0, "purged 0 dead letter(s)"), "{err}");
        assert_eq!(svc.sigterm(), Some(0));
    });
}
