//! Drives the real `drone-discord` binary for end-to-end tests: start it on a
//! free loopback port (it binds port 0 and logs the address), talk HTTP to it
//! over a plain socket, read its log, stop it with SIGTERM or SIGKILL.
#![allow(dead_code)]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub const SECRET: &str = "e2e-webhook-secret";
/// Shaped like a bot token; never valid anywhere.
pub const TOKEN: &str = "MTAwMDAwMDAwMDAwMDAwMDAw.Gtest0.e2e-test-token-not-a-real-token-000";
pub const CHANNEL: &str = "100000000000000001";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_drone-discord"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fixtures/drone").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn fixture_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fixtures/drone");
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("fixtures dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    v.sort();
    v
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
    let mut child = cmd.spawn().expect("spawn drone-discord");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening for Drone webhooks") {
                    if let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")) {
                        let _ = tx.send(addr.to_string());
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
    }
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!("service did not start; log:\n{}", log.lock().unwrap().join("\n"));
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
            let n = self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).count();
            if n >= count {
                return;
            }
            if Instant::now() > deadline {
                panic!("waited for {count}× {needle:?}, saw {n}; log:\n{}", self.log_text());
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
        self.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
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

/// A whole signed webhook request, `X-Drone-Event` taken from the body.
pub fn signed_request(body: &[u8], secret: &str, at: SystemTime) -> Vec<u8> {
    let headers = drone_discord::signature::sign(secret.as_bytes(), "hmac-key", body, at);
    request_with(body, &headers)
}

pub fn request_with(body: &[u8], headers: &[(String, String)]) -> Vec<u8> {
    let event = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_string))
        .unwrap_or_default();
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nX-Drone-Event: {event}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// One request on a fresh connection; reads to close. Returns (status,
/// headers with lower-case names, body).
pub fn http_full(addr: &str, raw: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(raw).expect("write request");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text.as_str(), ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

/// One request on a fresh connection; reads to close. Returns (status, body).
pub fn http(addr: &str, raw: &[u8]) -> (u16, String) {
    let (status, _headers, body) = http_full(addr, raw);
    (status, body)
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

/// A small tmpfs mounted on a fresh temporary directory, so a test can give
/// the binary a disk that really fills up. Unmounted (lazily, so a process
/// still holding files cannot block it) when dropped.
pub struct Tmpfs {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mount `size_mib` MiB of tmpfs, or `None` (after printing
    /// "skipping <test>: cannot mount tmpfs: <why>") when this machine will
    /// not let us, e.g. when not running as root.
    pub fn mount(test: &str, size_mib: u32) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}M,mode=0755"), "tmpfs"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(format!("{} {}", o.status, String::from_utf8_lossy(&o.stderr).trim())),
            Err(e) => Some(e.to_string()),
        };
        if let Some(why) = why {
            eprintln!("skipping {test}: cannot mount tmpfs: {why}");
            return None;
        }
        let filler = dir.path().join("filler");
        Some(Tmpfs { dir, filler })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Eat every free byte with a filler file (written until ENOSPC).
    /// Returns how many bytes it took.
    pub fn fill(&self) -> u64 {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("create filler");
        let chunk = vec![0xA5u8; 64 * 1024];
        let mut written = 0u64;
        let mut size = chunk.len();
        // Big chunks first, then smaller ones, so the last partial page goes too.
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => size /= 2,
                Err(e) => panic!("filling tmpfs: {e}"),
            }
        }
        let _ = f.sync_all();
        written
    }

    /// Give the space back.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove filler");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).stdin(Stdio::null()).status();
    }
}

/// Poll `/health` until `pred(status, json)` holds; panics with the last
/// answer and the log after `timeout`. Returns the matching body.
pub fn wait_health(svc: &Service, timeout: Duration, pred: impl Fn(u16, &serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = svc.get("/health");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        if pred(status, &v) {
            return v;
        }
        if Instant::now() > deadline {
            panic!("health never matched; last {status} {body}; log:\n{}", svc.log_text());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `build created` webhook for build `id` with build number `number`, so
/// each one renders as its own message naming `#number`.
pub fn build_created(id: u64, number: u64) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture("build_created.json")).expect("fixture is JSON");
    v["build"]["id"] = id.into();
    v["build"]["number"] = number.into();
    serde_json::to_vec(&v).expect("serialise")
}
