//! systemd integration without libsystemd: `sd_notify` datagrams to
//! `$NOTIFY_SOCKET`, and a supervisor task that turns the process's health
//! into `READY=1`, `STATUS=…`, `WATCHDOG=1` and `STOPPING=1`.
//!
//! The point of the watchdog is that systemd restarts us when we are wedged,
//! so a ping must mean "really alive", not merely "a timer fired". Each ping
//! therefore needs all three of:
//! * the runtime answers (the supervisor loop itself got scheduled),
//! * [`Health::is_alive`] (store writable, listener accepting),
//! * the caller's async probe (the service's: the store's write check, which
//!   writes nothing while idle, and a loopback connect to the listener),
//!   finished within one ping interval.
//!
//! While any of them fails the pings stop, so systemd restarts us after
//! `WatchdogSec`. A refused Discord token does not stop them: a restart cannot
//! fix that (see `health.rs`).
use crate::health::Health;
use crate::shutdown::Shutdown;
use std::future::Future;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// How often the supervisor checks liveness (for `READY=1` and `STATUS=`)
/// when systemd asked for no watchdog.
const CHECK_WITHOUT_WATCHDOG: Duration = Duration::from_secs(10);
/// Longest `STATUS=` text sent; systemd shows it in `systemctl status`.
const MAX_STATUS: usize = 512;
/// Longest `$NOTIFY_SOCKET` accepted (a Unix socket path is at most 108 bytes).
const MAX_SOCKET_ADDR: usize = 256;

/// Sends sd_notify messages. Disabled (every call a no-op) when
/// `$NOTIFY_SOCKET` is unset, i.e. when not started by systemd with
/// `Type=notify`. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Inner {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket) and
    /// the watchdog settings (see [`Notifier::watchdog_interval`]).
    pub fn from_env() -> io::Result<Notifier> {
        let watchdog = Self::watchdog_interval();
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(Notifier {
                inner: None,
                watchdog,
            }),
            Some(addr) => {
                let addr = addr.into_string().map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not UTF-8")
                })?;
                Ok(Self::for_socket(&addr)?.with_watchdog(watchdog))
            }
        }
    }

    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// Send to this socket address: `/path` or `@abstract-name`. No watchdog
    /// interval is set; add one with [`Notifier::with_watchdog`].
    pub fn for_socket(addr: &str) -> io::Result<Notifier> {
        if addr.len() > MAX_SOCKET_ADDR {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET too long",
            ));
        }
        let addr = if let Some(name) = addr.strip_prefix('@') {
            SocketAddr::from_abstract_name(name.as_bytes())?
        } else if addr.starts_with('/') {
            SocketAddr::from_pathname(addr)?
        } else {
            // e.g. "vsock:…", which systemd uses for VMs; not needed on a Pi.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "NOTIFY_SOCKET must be an absolute path or @abstract name",
            ));
        };
        let socket = UnixDatagram::unbound()?;
        // A datagram send never waits for the receiver; if systemd's queue is
        // full we get WouldBlock instead of stalling the runtime.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            inner: Some(Arc::new(Inner { socket, addr })),
            watchdog: None,
        })
    }

    /// Set the interval at which [`supervise`] pings `WATCHDOG=1` (`None`: no pings).
    pub fn with_watchdog(mut self, interval: Option<Duration>) -> Notifier {
        self.watchdog = interval;
        self
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The ping interval in use (see [`Notifier::watchdog_interval`]).
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Send one message, e.g. `"READY=1"`, `"STATUS=…"`, `"WATCHDOG=1"`,
    /// `"STOPPING=1"` (several may be joined with `\n`). `Ok` when disabled.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let sent = inner.socket.send_to_addr(state.as_bytes(), &inner.addr)?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short sd_notify datagram",
            ));
        }
        Ok(())
    }

    /// Half of `$WATCHDOG_USEC` (systemd's advice), or `None` if the watchdog
    /// is off or `$WATCHDOG_PID` names another process.
    pub fn watchdog_interval() -> Option<Duration> {
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        watchdog_interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
    }
}

fn watchdog_interval_from(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// One line for `STATUS=`: no newlines (they would start a new assignment)
/// and bounded in length.
fn status_message(health: &Health, probe_failure: Option<&str>) -> String {
    let mut line = health.status_line();
    if let Some(why) = probe_failure {
        line.push_str("; liveness probe failing: ");
        line.push_str(why);
    }
    let mut line = crate::text::controls_to_spaces(&crate::text::cut_chars(&line, MAX_STATUS));
    line.insert_str(0, "STATUS=");
    line
}

/// Keep systemd informed until `shutdown` fires. Call it once start-up is done.
///
/// * `STATUS=` at start and whenever the health state (or the probe verdict)
///   changes.
/// * `READY=1` the first time the process is alive (so a process that never
///   gets its store or listener working never reports ready and systemd's
///   start timeout applies).
/// * `WATCHDOG=1` every [`Notifier::watchdog`] interval while alive — see the
///   module docs; `probe` must finish within one interval or it counts as failed.
/// * `STOPPING=1` when `shutdown` fires, then returns.
///
/// With a disabled notifier it just waits for shutdown.
pub async fn supervise<P, F>(notifier: Notifier, health: Arc<Health>, shutdown: Shutdown, probe: P)
where
    P: Fn() -> F,
    F: Future<Output = Result<(), String>>,
{
    if !notifier.is_enabled() {
        shutdown.wait().await;
        return;
    }
    // Whether the datagram went out: the socket is non-blocking, so a full
    // queue loses it (WouldBlock) and READY=1 / STATUS= must be sent again.
    let send = |msg: &str| match notifier.notify(msg) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(%error, "sd_notify failed");
            false
        }
    };
    let period = notifier
        .watchdog()
        .unwrap_or(CHECK_WITHOUT_WATCHDOG)
        .max(Duration::from_millis(1)); // interval() panics on zero
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut generation = health.subscribe();
    generation.borrow_and_update();
    let mut health_open = true;

    let mut probe_failure: Option<String> = None;
    let mut last_status = status_message(&health, None);
    if !send(&last_status) {
        last_status.clear();
    }
    let mut ready = false;

    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            changed = generation.changed(), if health_open => {
                if changed.is_err() {
                    health_open = false;
                }
            }
            _ = ticks.tick() => {
                let verdict = tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    r = tokio::time::timeout(period, probe()) => r,
                };
                let failure = match verdict {
                    Ok(Ok(())) => None,
                    Ok(Err(why)) => Some(why),
                    Err(_) => Some("timed out".to_owned()),
                };
                if failure != probe_failure {
                    match &failure {
                        Some(why) => tracing::warn!(reason = %why, "liveness probe failing; watchdog pings paused"),
                        None => tracing::info!("liveness probe passing again"),
                    }
                    probe_failure = failure;
                }
                if probe_failure.is_none() && health.is_alive() {
                    if !ready {
                        ready = send("READY=1");
                    }
                    if notifier.watchdog().is_some() {
                        send("WATCHDOG=1");
                    }
                }
            }
        }
        let status = status_message(&health, probe_failure.as_deref());
        if status != last_status && send(&status) {
            last_status = status;
        }
    }
    send("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Component, Status};
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::Mutex;

    #[test]
    fn watchdog_interval_rules() {
        assert_eq!(
            watchdog_interval_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval_from(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval_from(Some("30000000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval_from(None, Some("7"), 7), None);
        assert_eq!(watchdog_interval_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("-5"), None, 7), None);
        assert_eq!(watchdog_interval_from(Some("soon"), None, 7), None);
        assert_eq!(
            watchdog_interval_from(Some("1"), None, 7),
            Some(Duration::from_millis(1))
        );
    }

    #[test]
    fn refuses_odd_socket_addresses() {
        assert!(Notifier::for_socket("vsock:2:1234").is_err());
        assert!(Notifier::for_socket("relative/path").is_err());
        assert!(Notifier::for_socket(&format!("/{}", "x".repeat(300))).is_err());
        assert!(!Notifier::disabled().is_enabled());
        assert!(Notifier::disabled().notify("READY=1").is_ok());
    }

    #[test]
    fn sends_to_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let n = Notifier::for_socket(path.to_str().unwrap()).unwrap();
        assert!(n.is_enabled());
        for msg in ["READY=1", "STATUS=ok; queue 0 pending", "STOPPING=1"] {
            n.notify(msg).unwrap();
            let mut buf = [0u8; 256];
            let len = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..len], msg.as_bytes());
        }
        drop(rx);
        assert!(
            n.notify("WATCHDOG=1").is_err(),
            "nobody listening must be an error, not a panic"
        );
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "drone-discord-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
            .unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let n = Notifier::for_socket(&format!("@{name}")).unwrap();
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[test]
    fn status_lines_are_one_bounded_line() {
        let h = Health::new();
        h.set(Component::Discord, Status::failed("bad\nWATCHDOG=1"));
        let s = status_message(&h, Some(&"y".repeat(2000)));
        assert!(s.starts_with("STATUS=") && !s.contains('\n'));
        assert!(s.len() <= "STATUS=".len() + MAX_STATUS);
    }

    /// A receiving socket in a tempdir plus a task that collects every message.
    struct Collector {
        _dir: tempfile::TempDir,
        path: String,
        got: Arc<Mutex<Vec<String>>>,
    }

    impl Collector {
        fn start() -> Collector {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("notify").to_str().unwrap().to_owned();
            let rx = tokio::net::UnixDatagram::bind(&path).unwrap();
            let got: Arc<Mutex<Vec<String>>> = Arc::default();
            let sink = got.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(len) = rx.recv(&mut buf).await {
                    sink.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..len]).into_owned());
                }
            });
            Collector {
                _dir: dir,
                path,
                got,
            }
        }

        fn all(&self) -> Vec<String> {
            self.got.lock().unwrap().clone()
        }

        fn count(&self, msg: &str) -> usize {
            self.all().iter().filter(|m| *m == msg).count()
        }

        /// Wait (virtual time) until STOPPING=1 arrived: everything before it is in.
        async fn until_stopping(&self) -> Vec<String> {
            for _ in 0..10_000 {
                if self.all().iter().any(|m| m == "STOPPING=1") {
                    return self.all();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("no STOPPING=1; got {:?}", self.all());
        }
    }

    fn alive_health() -> Arc<Health> {
        let h = Arc::new(Health::new());
        h.set(Component::Listener, Status::ok("127.0.0.1:5000"));
        h
    }

    const TICK: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn ready_status_watchdog_cadence_and_stopping() {
        let c = Collector::start();
        let health = alive_health();
        let (trigger, shutdown) = crate::shutdown::channel();
        let notifier = Notifier::for_socket(&c.path)
            .unwrap()
            .with_watchdog(Some(TICK));
        let task = tokio::spawn(supervise(notifier, health.clone(), shutdown, || async {
            Ok(())
        }));

        // Ticks at 0, 10, …, 50 s: six pings in 55 s.
        tokio::time::sleep(TICK * 5 + TICK / 2).await;
        health.set_queue(crate::store::Stats {
            pending: 4,
            dead_letters: 1,
        });
        tokio::time::sleep(TICK / 4).await;
        trigger.fire();
        task.await.unwrap();

        let got = c.until_stopping().await;
        assert!(got[0].starts_with("STATUS=ok"), "{got:?}");
        assert_eq!(got[1], "READY=1");
        assert_eq!(c.count("READY=1"), 1);
        assert_eq!(c.count("WATCHDOG=1"), 6, "{got:?}");
        assert!(
            got.iter()
                .any(|m| m.starts_with("STATUS=") && m.contains("4 pending, 1 dead")),
            "{got:?}"
        );
        assert_eq!(got.last().map(String::as_str), Some("STOPPING=1"));
    }

    #[tokio::test(start_paused = true)]
    async fn pings_stop_while_the_probe_fails_and_resume() {
        let c = Collector::start();
        let health = alive_health();
        let (trigger, shutdown) = crate::shutdown::channel();
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        let probe = move || {
            let fail = flag.load(Ordering::SeqCst);
            async move {
                if fail {
                    Err("store write failed".to_owned())
                } else {
                    Ok(())
                }
            }
        };
        let notifier = Notifier::for_socket(&c.path)
            .unwrap()
            .with_watchdog(Some(TICK));
        let task = tokio::spawn(supervise(notifier, health.clone(), shutdown, probe));

        tokio::time::sleep(TICK * 2 + TICK / 2).await; // pings at 0, 10, 20
        assert_eq!(c.count("WATCHDOG=1"), 3);
        failing.store(true, Ordering::SeqCst);
        tokio::time::sleep(TICK * 3).await; // ticks at 30, 40, 50 fail
        assert_eq!(c.count("WATCHDOG=1"), 3, "{:?}", c.all());
        assert!(c
            .all()
            .iter()
            .any(|m| m.contains("liveness probe failing: store write failed")));
        failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(TICK * 2).await; // pings at 60, 70
        assert_eq!(c.count("WATCHDOG=1"), 5, "{:?}", c.all());

        // Health saying "not alive" (store not writable) also stops the pings.
        health.set(Component::Store, Status::failed("disk full"));
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(c.count("WATCHDOG=1"), 5);
        trigger.fire();
        task.await.unwrap();
        let got = c.until_stopping().await;
        assert!(got.iter().any(|m| m.contains("disk full")), "{got:?}");
        // The status went back to plain "ok" between the failures.
        let probe_msgs: Vec<_> = got.iter().filter(|m| m.starts_with("STATUS=")).collect();
        assert!(probe_msgs.len() >= 3, "{probe_msgs:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_counts_as_failed() {
        let c = Collector::start();
        let (trigger, shutdown) = crate::shutdown::channel();
        let notifier = Notifier::for_socket(&c.path)
            .unwrap()
            .with_watchdog(Some(TICK));
        let task = tokio::spawn(supervise(notifier, alive_health(), shutdown, || {
            std::future::pending()
        }));
        tokio::time::sleep(TICK * 4).await;
        trigger.fire();
        task.await.unwrap();
        let got = c.until_stopping().await;
        assert_eq!(c.count("WATCHDOG=1"), 0);
        assert_eq!(c.count("READY=1"), 0);
        assert!(
            got.iter()
                .any(|m| m.contains("liveness probe failing: timed out")),
            "{got:?}"
        );
    }

    /// Every datagram waiting on a non-blocking receiver.
    fn drain(rx: &UnixDatagram) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(len) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        got
    }

    #[tokio::test(start_paused = true)]
    async fn ready_and_status_lost_to_a_full_socket_are_sent_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        rx.set_nonblocking(true).unwrap();
        let notifier = Notifier::for_socket(path.to_str().unwrap())
            .unwrap()
            .with_watchdog(Some(TICK));
        // Fill the receiver's queue: the next sends fail with WouldBlock.
        let mut queued = 0;
        while notifier.notify("X").is_ok() {
            queued += 1;
            assert!(queued < 100_000, "the socket never filled up");
        }
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(supervise(notifier, alive_health(), shutdown, || async {
            Ok(())
        }));
        tokio::time::sleep(TICK / 2).await; // the tick at 0 s could not send
        let lost = drain(&rx);
        assert!(lost.iter().all(|m| m == "X"), "{lost:?}");
        tokio::time::sleep(TICK).await; // the tick at 10 s can
        trigger.fire();
        task.await.unwrap();
        let got = drain(&rx);
        assert_eq!(got.iter().filter(|m| *m == "READY=1").count(), 1, "{got:?}");
        assert!(got.iter().any(|m| m.starts_with("STATUS=ok")), "{got:?}");
        assert_eq!(
            got.last().map(String::as_str),
            Some("STOPPING=1"),
            "{got:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn not_ready_until_alive() {
        let c = Collector::start();
        let health = Arc::new(Health::new()); // listener not bound yet
        let (trigger, shutdown) = crate::shutdown::channel();
        let notifier = Notifier::for_socket(&c.path)
            .unwrap()
            .with_watchdog(Some(TICK));
        let task = tokio::spawn(supervise(notifier, health.clone(), shutdown, || async {
            Ok(())
        }));
        tokio::time::sleep(TICK * 2 + TICK / 2).await;
        assert_eq!(c.count("READY=1"), 0);
        assert_eq!(c.count("WATCHDOG=1"), 0);
        health.set(Component::Listener, Status::ok("bound"));
        tokio::time::sleep(TICK).await;
        assert_eq!(c.count("READY=1"), 1);
        assert_eq!(c.count("WATCHDOG=1"), 1);
        trigger.fire();
        task.await.unwrap();
        c.until_stopping().await;
    }

    #[tokio::test]
    async fn disabled_notifier_just_waits_for_shutdown() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let task = tokio::spawn(supervise(
            Notifier::disabled(),
            alive_health(),
            shutdown,
            || async { Ok(()) },
        ));
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .unwrap()
            .unwrap();
    }
}
