//! End-to-end: the service's own loopback health checks (the presence
//! task's `GET /health` every `HEALTHCHECK_INTERVAL`, the watchdog's
//! loopback connect before each `WATCHDOG=1`) are not logged at info;
//! journald on an SD card is another writer. One line per real request stays.
mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::binary::start;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::fixtures::fixture;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn self_checks_stay_out_of_the_info_log() {
    let state = tempfile::tempdir().unwrap();
    // A notify socket that counts WATCHDOG=1 pings (each follows a loopback connect).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let pings = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let pings = pings.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) if buf[..n].windows(10).any(|w| w == b"WATCHDOG=1") => {
                        pings.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
            }
        });
    }
    let notify = path.to_str().unwrap().to_string();
    // Discord unreachable: the presence checker still polls /health every second.
    let svc = start(
        state.path(),
        &[],
        &[
            ("DISCORD_TOKEN", TOKEN),
            ("DISCORD_CHANNEL_ID", CHANNEL),
            ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
            ("DISCORD_GATEWAY_URL", "ws://127.0.0.1:9/"),
            ("HEALTHCHECK_INTERVAL", "1"),
            ("NOTIFY_SOCKET", notify.as_str()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    // A few self-checks of each kind (logged at debug: RUST_LOG=debug).
    svc.wait_log("path=/health", 3, WAIT);
    let deadline = Instant::now() + WAIT;
    while pings.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "no watchdog pings; log:\n{}",
            svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // One real request.
    let (status, body) = svc.post_signed(&fixture("user_created.json"), SECRET);
    assert_eq!(status, 200, "{body}");
    svc.wait_log("path=/ ", 1, WAIT);

    let log = svc.log_text();
    let info: Vec<&str> = log.lines().filter(|l| l.contains(" INFO ")).collect();
    let requests: Vec<&&str> = info.iter().filter(|l| l.contains("peer=")).collect();
    assert_eq!(
        requests.len(),
        1,
        "one info line per real request, none per self-check:\n{log}"
    );
    assert!(
        requests[0].contains("path=/ ") && requests[0].contains("status=200"),
        "{}",
        requests[0]
    );
    assert!(
        !info.iter().any(|l| l.contains("/health")),
        "a health check logged at info:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(" DEBUG ") && l.contains("path=/health")),
        "the self-checks must still be there at debug:\n{log}"
    );
    assert_eq!(svc.sigterm(), Some(0));
}
