//! A `$NOTIFY_SOCKET` that counts the service's `WATCHDOG=1` pings, so a test
//! or benchmark can run the real binary with systemd's watchdog on (each ping
//! follows a liveness check) and know how many checks ran; it also notes
//! when `READY=1` arrived (the benchmark's start-up time).
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Watchdog {
    _dir: tempfile::TempDir,
    path: String,
    pings: Arc<AtomicUsize>,
    ready: Arc<Mutex<Option<Instant>>>,
}

impl Watchdog {
    pub fn start() -> Watchdog {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind notify socket");
        let pings = Arc::new(AtomicUsize::new(0));
        let counted = pings.clone();
        let ready: Arc<Mutex<Option<Instant>>> = Arc::default();
        let noted = ready.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = socket.recv(&mut buf) {
                let mut lines = buf[..n].split(|b| *b == b'\n');
                if lines.clone().any(|l| l == b"READY=1") {
                    let mut at = noted.lock().unwrap_or_else(|p| p.into_inner());
                    at.get_or_insert_with(Instant::now);
                }
                if lines.any(|l| l == b"WATCHDOG=1") {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Watchdog {
            _dir: dir,
            path: path.to_string_lossy().into_owned(),
            pings,
            ready,
        }
    }

    /// The environment systemd would set for `WatchdogSec=` of
    /// `watchdog_usec` microseconds (the service pings every half of it).
    pub fn env(&self, watchdog_usec: &'static str) -> Vec<(&str, &str)> {
        vec![
            ("NOTIFY_SOCKET", self.path.as_str()),
            ("WATCHDOG_USEC", watchdog_usec),
        ]
    }

    /// When the first `READY=1` arrived, waiting at most `timeout` for it.
    pub fn wait_ready(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let at = *self.ready.lock().unwrap_or_else(|p| p.into_inner());
            if at.is_some() || Instant::now() > deadline {
                return at;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn pings(&self) -> usize {
        self.pings.load(Ordering::SeqCst)
    }

    /// Wait until `n` pings arrived (or panic after `timeout`).
    pub fn wait_pings(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pings() < n {
            assert!(
                Instant::now() < deadline,
                "only {} watchdog pings, waited for {n}",
                self.pings()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
