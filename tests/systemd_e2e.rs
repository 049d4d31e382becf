//! End-to-end: the real binary talks sd_notify to a datagram socket the test
//! owns (as systemd would with `Type=notify` and `WatchdogSec=1`), so the
//! whole path is checked: READY=1 only once the listener answers, STATUS=
//! with queue depth and reasons, WATCHDOG=1 every half interval while alive
//! and none while the disk is full, STOPPING=1 on SIGTERM.
//!
//! Waits are event-based with generous timeouts; assertions count messages.
mod support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::binary::{start, Service};
use support::builds::build_created;
use support::credentials::{CHANNEL, SECRET, TOKEN};
use support::raw_http::http;
use support::tmpfs::Tmpfs;

/// Generous wait for anything the binary should do on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);
/// systemd's `WatchdogSec=1`: the binary pings every 0.5 s.
const WATCHDOG_USEC: &str = "1000000";

/// The receiving end of `$NOTIFY_SOCKET`: a thread that records every
/// datagram and, the moment READY=1 arrives, asks the service's `/health`.
struct NotifySocket {
    env: String,
    got: Arc<Mutex<Vec<String>>>,
    /// The service's address, set once the test knows it.
    addr: Arc<OnceLock<String>>,
    /// `/health`'s status code asked right when READY=1 arrived.
    health_at_ready: Arc<Mutex<Option<u16>>>,
    stop: Arc<AtomicBool>,
    _dir: Option<tempfile::TempDir>,
}

impl NotifySocket {
    /// A socket file in a fresh temporary directory.
    fn path() -> NotifySocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        Self::run(
            socket,
            path.to_str().expect("utf-8 path").to_string(),
            Some(dir),
        )
    }

    /// An abstract socket (`@name`), as systemd uses for some services.
    fn abstract_name() -> NotifySocket {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "drone-discord-e2e-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract notify socket");
        Self::run(socket, format!("@{name}"), None)
    }

    fn run(socket: UnixDatagram, env: String, dir: Option<tempfile::TempDir>) -> NotifySocket {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let got: Arc<Mutex<Vec<String>>> = Arc::default();
        let addr: Arc<OnceLock<String>> = Arc::default();
        let health_at_ready: Arc<Mutex<Option<u16>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let (got, addr, health_at_ready, stop) = (
                got.clone(),
                addr.clone(),
                health_at_ready.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let Ok(len) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let msg = String::from_utf8_lossy(&buf[..len]).into_owned();
                    let ready = msg == "READY=1";
                    got.lock().unwrap().push(msg);
                    if ready {
                        // Ask on another thread so this one keeps draining the
                        // socket (its queue is short; senders get EAGAIN).
                        let (addr, health_at_ready) = (addr.clone(), health_at_ready.clone());
                        std::thread::spawn(move || {
                            // The address line is logged before READY=1 can be
                            // sent; wait only for the test to hand it over.
                            let deadline = Instant::now() + WAIT;
                            while addr.get().is_none() && Instant::now() < deadline {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            if let Some(a) = addr.get() {
                                let req =
                                    b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                                *health_at_ready.lock().unwrap() = Some(http(a, req).0);
                            }
                        });
                    }
                }
            });
        }
        NotifySocket {
            env,
            got,
            addr,
            health_at_ready,
            stop,
            _dir: dir,
        }
    }

    fn all(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, msg: &str) -> usize {
        self.all().iter().filter(|m| *m == msg).count()
    }

    fn statuses(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|m| m.starts_with("STATUS="))
            .collect()
    }

    /// Wait until `pred` holds over everything received so far.
    fn wait(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !pred(&self.all()) {
            assert!(
                Instant::now() < deadline,
                "waited for {what}; got {:#?}",
                self.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_count(&self, msg: &str, n: usize) {
        self.wait(&format!("{n}× {msg}"), |all| {
            all.iter().filter(|m| *m == msg).count() >= n
        });
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn notify_env(sock: &NotifySocket) -> Vec<(&str, &str)> {
    vec![
        ("NOTIFY_SOCKET", sock.env.as_str()),
        ("WATCHDOG_USEC", WATCHDOG_USEC),
    ]
}

/// READY=1 once (with `/health` already answering), watchdog pings repeating,
/// then STOPPING=1 as the last word on SIGTERM and exit 0.
fn ready_pings_and_stopping(sock: &NotifySocket, svc: Service) {
    sock.wait_count("READY=1", 1);
    sock.wait("/health asked at READY=1", |_| {
        sock.health_at_ready.lock().unwrap().is_some()
    });
    assert_eq!(
        *sock.health_at_ready.lock().unwrap(),
        Some(200),
        "/health when READY=1 arrived"
    );
    sock.wait_count("WATCHDOG=1", 4);
    let first = sock.all();
    let ready_at = first.iter().position(|m| m == "READY=1");
    let first_ping = first.iter().position(|m| m == "WATCHDOG=1");
    assert!(
        first[0].starts_with("STATUS="),
        "STATUS= comes first: {first:?}"
    );
    assert!(
        ready_at < first_ping,
        "READY=1 before the first ping: {first:?}"
    );

    assert_eq!(svc.sigterm(), Some(0), "SIGTERM must exit cleanly");
    sock.wait_count("STOPPING=1", 1);
    let all = sock.all();
    assert_eq!(
        all.last().map(String::as_str),
        Some("STOPPING=1"),
        "{all:?}"
    );
    assert_eq!(sock.count("READY=1"), 1, "{all:?}");
    assert_eq!(sock.count("STOPPING=1"), 1, "{all:?}");
}

#[test]
fn notify_socket_path_ready_status_with_queue_depth_watchdog_and_stopping() {
    let state = tempfile::tempdir().expect("tempdir");
    let sock = NotifySocket::path();
    // Discord unreachable (a closed loopback port): accepted events stay
    // pending, so STATUS= has a queue depth to show.
    let mut env = notify_env(&sock);
    env.extend([
        ("DISCORD_TOKEN", TOKEN),
        ("DISCORD_CHANNEL_ID", CHANNEL),
        ("DISCORD_API_BASE_URL", "http://127.0.0.1:9/api/v10"),
        ("NO_GATEWAY", "true"),
    ]);
    let svc = start(state.path(), &[], &env);
    sock.addr.set(svc.addr.clone()).expect("address set once");
    for n in 1..=2 {
        let (status, body) = svc.post_signed(&build_created(800_000 + n, 8_000 + n), SECRET);
        assert_eq!(status, 200, "{body}");
    }
    sock.wait("STATUS= with 2 pending", |all| {
        all.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("queue 2 pending, 0 dead"))
    });
    for s in sock.statuses() {
        assert!(
            s.contains(" pending, ") && s.contains(" dead"),
            "every STATUS= shows the queue: {s}"
        );
        assert!(!s.contains('\n'), "{s:?}");
    }
    assert!(
        !sock.all().concat().contains(TOKEN),
        "the token reached sd_notify"
    );
    ready_pings_and_stopping(&sock, svc);
}

#[test]
fn abstract_notify_socket_ready_watchdog_and_stopping() {
    let state = tempfile::tempdir().expect("tempdir");
    let sock = NotifySocket::abstract_name();
    let svc = start(state.path(), &["--dry-run"], &notify_env(&sock));
    sock.addr.set(svc.addr.clone()).expect("address set once");
    ready_pings_and_stopping(&sock, svc);
    assert!(
        sock.statuses()
            .iter()
            .any(|s| s.starts_with("STATUS=ok; queue 0 pending, 0 dead")),
        "{:?}",
        sock.all()
    );
}

#[test]
fn full_disk_pauses_watchdog_pings_with_a_reason_and_they_resume_when_freed() {
    let Some(disk) = Tmpfs::mount(
        "full_disk_pauses_watchdog_pings_with_a_reason_and_they_resume_when_freed",
        16,
    ) else {
        return;
    };
    let sock = NotifySocket::path();
    let svc = start(disk.path(), &["--dry-run"], &notify_env(&sock));
    sock.addr.set(svc.addr.clone()).expect("address set once");
    sock.wait_count("READY=1", 1);
    sock.wait_count("WATCHDOG=1", 3);

    disk.fill();
    let full = "No space left on device";
    sock.wait("STATUS= naming the full disk", |all| {
        all.iter()
            .any(|m| m.starts_with("STATUS=unhealthy") && m.contains("store") && m.contains(full))
    });
    // Let a tick that was already past its probe finish, then count: no ping
    // for eight watchdog periods (four of systemd's WatchdogSec=1).
    std::thread::sleep(Duration::from_secs(1));
    let paused_at = sock.count("WATCHDOG=1");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        sock.count("WATCHDOG=1"),
        paused_at,
        "pings went on with a full disk: {:#?}",
        sock.all()
    );
    let (status, body) = svc.get("/health");
    assert_eq!(status, 503, "{body}");

    disk.free();
    sock.wait_count("WATCHDOG=1", paused_at + 3);
    let statuses = sock.statuses();
    assert!(
        statuses.last().is_some_and(|s| s.starts_with("STATUS=ok")),
        "STATUS= back to ok once freed: {statuses:#?}"
    );
    assert_eq!(
        sock.count("READY=1"),
        1,
        "READY=1 is sent once, not again after recovery"
    );
    assert_eq!(svc.sigterm(), Some(0));
    sock.wait_count("STOPPING=1", 1);
    assert_eq!(sock.all().last().map(String::as_str), Some("STOPPING=1"));
}
