//! Drives the real `drone-discord` binary: start `serve` on a free loopback
//! port (it binds port 0 and logs the address), read its log, poll its
//! `/health`, stop it with SIGTERM or SIGKILL; run a one-shot command and
//! collect its exit code and output.
use super::credentials::SECRET;
use super::raw_http::http;
use super::webhook::signed_request;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The binary under test, built by cargo for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drone-discord"))
}

/// A running `drone-discord serve`.
pub struct Service {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Environment for a service with an embedded store in `state` and the
/// webhook secret set; `extra` adds or overrides variables.
pub fn start(state: &Path, args: &[&str], extra: &[(&str, &str)]) -> Service {
    spawn(serve_command(state, args, extra))
}

/// The `serve` command [`start`] runs (debug logs, stderr piped), for callers
/// that watch the process their own way (the benchmarks).
pub fn serve_command(state: &Path, args: &[&str], extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DRONE_WEBHOOK_SECRET", SECRET)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("STATE_DIR", state)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Spawns `cmd` (a `serve` with stderr piped) and waits until it logs its
/// listening address.
pub fn spawn(mut cmd: Command) -> Service {
    let mut child = cmd.spawn().expect("spawn drone-discord");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // Keep the line before announcing the address, so a test
                // that reads the log once `spawn` returns sees this line.
                let addr = line
                    .contains("listening for Drone webhooks")
                    .then(|| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix("addr="))
                            .map(str::to_string)
                    })
                    .flatten();
                log.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
    }
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "service did not start; log:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
    };
    Service { child, addr, log }
}

impl Service {
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until a log line contains `needle` `count` times (or panic with the log).
    pub fn wait_log(&self, needle: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(needle))
                .count();
            if n >= count {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited for {count}× {needle:?}, saw {n}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit code.
    pub fn sigterm(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit 30 s after SIGTERM; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn request(&self, raw: &[u8]) -> (u16, String) {
        http(&self.addr, raw)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.request(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    }

    /// POST `body` signed like Drone with `secret`.
    pub fn post_signed(&self, body: &[u8], secret: &str) -> (u16, String) {
        self.request(&signed_request(body, secret, SystemTime::now()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a one-shot subcommand with a clean environment; returns (code, stdout, stderr).
pub fn run_cmd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run drone-discord");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Poll `/health` until `pred(status, json)` holds; panics with the last
/// answer and the log after `timeout`. Returns the matching body.
pub fn wait_health(
    svc: &Service,
    timeout: Duration,
    pred: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = svc.get("/health");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        if pred(status, &v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "health never matched; last {status} {body}; log:\n{}",
                svc.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
