//! Pi bounds benchmark: the figures a Raspberry Pi cares about, measured on
//! the real release binary from outside, as an operator would.
//!
//! 1. `serve --dry-run` with a systemd watchdog (`WatchdogSec=30`, as the
//!    unit sets it): RSS idle, then bytes written (`/proc/PID/io` `wchar`,
//!    `syscw`, `write_bytes`) and syncs (`strace -c` on fsync, fdatasync and
//!    sync_file_range, when strace is installed) over an idle period, as
//!    per-hour rates, plus whether the state directory changed at all.
//! 2. A burst of signed, distinct ~5 KiB `build:updated` webhooks at 64
//!    keep-alive connections into the same service: RSS peak (`VmHWM`), RSS
//!    after the queue drained, the state directory's size after the drain.
//!    The same burst into a service that delivers to the fake Discord
//!    (REST, no gateway): RSS peak and after its drain.
//! 3. A further service whose Discord is unreachable (delivery stalled), fed
//!    the same burst: RSS with every event pending.
//! 4. Start-up, exec to `READY=1`: with an empty store (1), with the burst's
//!    builds' message ids stored (2b's state directory) and with every event
//!    pending (3's).
//! 5. A signed webhook's latency (one connection each, as Drone sends)
//!    without and during the slowloris swarm of `tests/hostile_lan.rs`
//!    (`support::swarm`: 1 000 slow heads, 256 slow bodies), and RSS then.
//! 6. CPU time (user + system) over an idle period with the gateway
//!    connected to the fake (heartbeats every 41.25 s, as Discord's).
//!
//! Run: `make bench` or `cargo bench --bench pi_bounds`. Env:
//! `PI_BENCH_EVENTS` (webhooks per burst, 100000), `PI_BENCH_IDLE_S` (idle
//! period, 600), `PI_BENCH_CONNS` (64), `PI_BENCH_SWARM_HOOKS` (timed
//! webhooks, 50), `PI_BENCH_GATEWAY_IDLE_S` (idle period with the gateway,
//! 600), `PI_BENCH_LEGS` (a comma list of `dry-run` (1 and 2's dry-run
//! burst), `fake-discord` (2's fake Discord burst), `pending` (3), `swarm`
//! (5), `gateway` (6); default all; 4's start-ups run with their legs).
//! Prints a Markdown table; in 3 the queue's bound is raised to hold the
//! whole burst.
#[path = "../tests/support/mod.rs"]
mod support;

use support::bench_env::env_or;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use support::credentials::SECRET;
use support::fixtures::fixture_json;
use support::watchdog::Watchdog;

const MIB: f64 = 1024.0 * 1024.0;

/// The unit's `WatchdogSec=30`: a liveness check and a ping every 15 s.
const WATCHDOG_30S: &str = "30000000";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("pi bounds benchmark: skipped (not run by `cargo test`; run `make bench` or `cargo bench --bench pi_bounds`)");
        return;
    }
    let events = env_or("PI_BENCH_EVENTS", 100_000);
    let idle = Duration::from_secs(env_or("PI_BENCH_IDLE_S", 600).max(1));
    let conns = env_or("PI_BENCH_CONNS", 64).max(1) as usize;
    let legs = std::env::var("PI_BENCH_LEGS").unwrap_or_default();
    let leg = |name: &str| legs.is_empty() || legs.split(',').any(|l| l.trim() == name);
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| {
        eprintln!("  {what}: {value}");
        rows.push((what.to_owned(), value));
    };
    println!(
        "drone-discord Pi bounds: release binary, {events} signed ~5 KiB build webhooks at {conns} connections, {} s idle",
        idle.as_secs()
    );

    if leg("dry-run") {
        // 1. Idle.
        let state = tempfile::tempdir().expect("tempdir");
        let dog = Watchdog::start();
        let (svc, took) = start_until_ready(state.path(), &["--dry-run"], &[], &dog);
        row("start-up: exec to READY=1, empty store", secs(took));
        svc.wait_health(|v| v["status"] == "ok");
        std::thread::sleep(Duration::from_secs(2));
        let m = svc.mem();
        row(
            "RSS idle (after start)",
            format!("{:.1} MiB (VmHWM {:.1} MiB)", m.rss, m.hwm),
        );
        let before = (svc.io(), dir_snapshot(state.path()), dog.pings());
        let syncs = strace_syncs(svc.pid(), idle);
        let after = (svc.io(), dir_snapshot(state.path()), dog.pings());
        let per_hour = |d: u64| d as f64 * 3600.0 / idle.as_secs_f64();
        let io = |k: &str| after.0.get(k).saturating_sub(before.0.get(k));
        row(
            "idle: bytes written by all write calls (wchar: files, sockets, logs, eventfd wake-ups)",
            format!(
                "{} B in {} s = {:.0} B/h",
                io("wchar"),
                idle.as_secs(),
                per_hour(io("wchar"))
            ),
        );
        row(
            "idle: write syscalls (syscw)",
            format!("{} = {:.0}/h", io("syscw"), per_hour(io("syscw"))),
        );
        row(
            "idle: bytes sent to the block layer (write_bytes; 0 on tmpfs)",
            format!("{:.0} B/h", per_hour(io("write_bytes"))),
        );
        row(
            "idle: syncs (fsync, fdatasync, sync_file_range)",
            match syncs {
                Ok(n) => format!("{n} in {} s = {:.1}/h", idle.as_secs(), per_hour(n)),
                Err(why) => format!("not measured: {why}"),
            },
        );
        row(
            "idle: state directory changed",
            format!(
                "{} ({} watchdog pings, each after a liveness check)",
                if before.1 == after.1 { "no" } else { "yes" },
                after.2 - before.2
            ),
        );

        // 2. Burst and drain, dry-run.
        let burst = Burst::run(&svc.addr, events, conns, 1, &svc);
        row(
            "burst (dry-run)",
            format!(
                "{} x 200, {} x 503, {} other in {:.1} s",
                burst.ok,
                burst.busy,
                burst.other,
                burst.took.as_secs_f64()
            ),
        );
        row(
            "RSS peak during the burst (dry-run)",
            format!(
                "{:.1} MiB (sampled {:.1} MiB)",
                svc.mem().hwm,
                burst.peak_rss
            ),
        );
        svc.wait_health(|v| v["queue"]["pending"] == 0);
        std::thread::sleep(Duration::from_secs(5));
        let m = svc.mem();
        row(
            "RSS after the drain (dry-run)",
            format!("{:.1} MiB (VmHWM {:.1} MiB)", m.rss, m.hwm),
        );
        row(
            "state directory after the drain",
            format!("{:.1} MiB", dir_bytes(state.path()) as f64 / MIB),
        );
        svc.stop();
    }

    if leg("fake-discord") {
        // 2b. The same burst delivered to the fake Discord (REST only, no gateway).
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt.block_on(support::fake_discord::FakeDiscord::start());
        fake.set_token(support::credentials::TOKEN);
        let base = fake.base_url();
        let env = [
            ("DISCORD_TOKEN", support::credentials::TOKEN),
            ("DISCORD_CHANNEL_ID", support::credentials::CHANNEL),
            ("DISCORD_API_BASE_URL", base.as_str()),
        ];
        let state = tempfile::tempdir().expect("tempdir");
        let svc = Svc::start(state.path(), &["--no-gateway"], &env);
        svc.wait_health(|v| v["status"] == "ok");
        let burst = Burst::run(&svc.addr, events, conns, 3, &svc);
        row(
            "burst (fake Discord)",
            format!(
                "{} x 200, {} x 503, {} other in {:.1} s",
                burst.ok,
                burst.busy,
                burst.other,
                burst.took.as_secs_f64()
            ),
        );
        let drain_started = Instant::now();
        svc.wait_health(|v| v["queue"]["pending"] == 0);
        let drained_in = drain_started.elapsed();
        std::thread::sleep(Duration::from_secs(5));
        let m = svc.mem();
        row(
            "RSS peak / after the drain (fake Discord)",
            format!(
                "{:.1} MiB / {:.1} MiB (drained {:.1} s after the burst)",
                m.hwm,
                m.rss,
                drained_in.as_secs_f64()
            ),
        );
        svc.stop();
        drop(fake);
        drop(rt);
        let dog = Watchdog::start();
        let (svc, took) = start_until_ready(state.path(), &["--dry-run"], &[], &dog);
        row(
            &format!(
                "start-up: exec to READY=1, {} builds' message ids stored",
                burst.ok
            ),
            secs(took),
        );
        svc.stop();
    }

    if leg("pending") {
        // 3. Delivery stalled: Discord unreachable, every event stays pending.
        // The queue's bound is raised to hold the whole burst (the default,
        // 256 MiB, holds about 50 000 of these 5 KiB webhooks), so that the
        // figure is memory with `events` pending, as the budget states it.
        let state = tempfile::tempdir().expect("tempdir");
        let max_events = events.max(1).to_string();
        let max_bytes = (events.max(1) * 8 * 1024).to_string();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = format!("http://{}", closed.local_addr().expect("addr"));
        drop(closed); // connections to it are now refused
        let env = [
            ("DISCORD_TOKEN", support::credentials::TOKEN),
            ("DISCORD_CHANNEL_ID", support::credentials::CHANNEL),
            ("DISCORD_API_BASE_URL", api.as_str()),
            ("QUEUE_MAX_EVENTS", max_events.as_str()),
            ("QUEUE_MAX_BYTES", max_bytes.as_str()),
        ];
        let svc = Svc::start(state.path(), &["--no-gateway"], &env);
        svc.wait_health(|v| v["store"]["ok"] == true);
        let burst = Burst::run(&svc.addr, events, conns, 2, &svc);
        let v = svc.wait_health(|v| {
            v["queue"]["pending"]
                .as_u64()
                .is_some_and(|p| p >= burst.ok)
        });
        std::thread::sleep(Duration::from_secs(5));
        let m = svc.mem();
        row(
            "RSS with every event pending (delivery stalled)",
            format!(
                "{:.1} MiB (VmHWM {:.1} MiB; {} pending; {} x 503)",
                m.rss, m.hwm, v["queue"]["pending"], burst.busy
            ),
        );
        row(
            "state directory with every event pending",
            format!("{:.1} MiB", dir_bytes(state.path()) as f64 / MIB),
        );
        svc.stop();
        let dog = Watchdog::start();
        let (svc, took) = start_until_ready(state.path(), &["--no-gateway"], &env, &dog);
        row(
            &format!("start-up: exec to READY=1, {} events pending", burst.ok),
            secs(took),
        );
        svc.stop();
    }

    if leg("swarm") {
        // 4. A signed webhook's latency during the slowloris swarm.
        drone_discord::rlimit::raise_open_files();
        let state = tempfile::tempdir().expect("tempdir");
        let svc = Svc::start(state.path(), &["--dry-run"], &[]);
        svc.wait_health(|v| v["status"] == "ok");
        let template = fixture_json("build_updated.json");
        let hooks = env_or("PI_BENCH_SWARM_HOOKS", 50).max(1);
        let quiet = latencies(&svc.addr, &template, 7_000_000, hooks);
        row(
            "signed webhook latency, no swarm (median / max)",
            quiet.summary(),
        );
        let addr: std::net::SocketAddr = svc.addr.parse().expect("addr");
        let swarm =
            support::swarm::Swarm::start(addr, &support::fixtures::fixture("build_created.json"));
        let during = latencies(&svc.addr, &template, 8_000_000, hooks);
        let m = svc.mem();
        let still = (swarm.opened, swarm.refused);
        let writable = swarm.stop();
        row(
            "signed webhook latency during the swarm (1 000 slow heads + 256 slow bodies; median / max)",
            format!(
                "{} ({} connections opened, {} refused, {writable} still open at the end)",
                during.summary(),
                still.0,
                still.1
            ),
        );
        row(
            "RSS during the swarm",
            format!("{:.1} MiB (VmHWM {:.1} MiB)", m.rss, m.hwm),
        );
        svc.stop();
    }

    if leg("gateway") {
        // 5. CPU time idle with the gateway connected to the fake.
        let gateway_idle = Duration::from_secs(env_or("PI_BENCH_GATEWAY_IDLE_S", 600).max(1));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = rt.block_on(support::fake_discord::FakeDiscord::start());
        fake.set_token(support::credentials::TOKEN);
        let mut gw = rt.block_on(support::fake_gateway::FakeGateway::start());
        let (base, url) = (fake.base_url(), gw.url());
        let env = [
            ("DISCORD_TOKEN", support::credentials::TOKEN),
            ("DISCORD_CHANNEL_ID", support::credentials::CHANNEL),
            ("DISCORD_API_BASE_URL", base.as_str()),
            ("DISCORD_GATEWAY_URL", url.as_str()),
        ];
        let state = tempfile::tempdir().expect("tempdir");
        let svc = Svc::start(state.path(), &[], &env);
        let conn = rt.block_on(async {
            let mut conn = gw.next_conn().await;
            // Discord's heartbeat interval.
            conn.hello(41_250);
            conn.expect_op(2).await;
            conn.ready(1, "session-bench", &gw.resume_url());
            conn
        });
        svc.wait_health(|v| v["gateway"]["detail"] == "connected");
        let cpu_before = svc.cpu();
        std::thread::sleep(gateway_idle);
        let used = svc.cpu().saturating_sub(cpu_before);
        row(
            &format!(
                "CPU time idle with the gateway connected, over {} s",
                gateway_idle.as_secs()
            ),
            format!(
                "{:.2} s ({:.2} s per 10 minutes; {} gateway connection(s))",
                used.as_secs_f64(),
                used.as_secs_f64() * 600.0 / gateway_idle.as_secs_f64(),
                gw.connections()
            ),
        );
        svc.stop();
        drop(conn);
        drop(fake);
        drop(rt);
    }

    println!("| figure | value |");
    println!("|---|---|");
    for (what, value) in rows {
        println!("| {what} | {value} |");
    }
}

/// Start a service reporting to `dog` (`WatchdogSec=30`) and time it from
/// exec to `READY=1`.
fn start_until_ready(
    state: &Path,
    args: &[&str],
    extra: &[(&str, &str)],
    dog: &Watchdog,
) -> (Svc, Duration) {
    let env: Vec<(&str, &str)> = extra.iter().copied().chain(dog.env(WATCHDOG_30S)).collect();
    let t0 = Instant::now();
    let svc = Svc::start(state, args, &env);
    let ready = dog
        .wait_ready(Duration::from_secs(600))
        .expect("READY=1 within 10 minutes");
    (svc, ready.saturating_duration_since(t0))
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

/// Sorted answer times of signed webhooks sent one after another.
struct Latencies(Vec<Duration>);

impl Latencies {
    fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        match (self.0.get(self.0.len() / 2), self.0.last()) {
            (Some(mid), Some(max)) => format!(
                "{:.1} ms / {:.1} ms over {} webhooks",
                ms(*mid),
                ms(*max),
                self.0.len()
            ),
            _ => "no webhook answered 200".into(),
        }
    }
}

/// `n` signed webhooks (distinct builds from `first_id`), each on a new
/// connection as Drone sends them; the time to each one's 200.
fn latencies(addr: &str, template: &serde_json::Value, first_id: u64, n: u64) -> Latencies {
    let mut times = Vec::new();
    // read_response reads into the buffer's length (and doubles it when full).
    let mut buf = vec![0u8; 16 * 1024];
    for i in 0..n {
        let req = signed_update(template, first_id + i);
        let t0 = Instant::now();
        let ok = TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(60)))?;
            s.write_all(&req)?;
            read_response(&mut s, &mut buf)
        });
        if let Ok((200, _)) = ok {
            times.push(t0.elapsed());
        }
    }
    times.sort();
    Latencies(times)
}

/// A running `drone-discord serve` started from this benchmark.
struct Svc {
    child: Child,
    addr: String,
}

struct Mem {
    rss: f64,
    hwm: f64,
}

#[derive(Default)]
struct Io(Vec<(String, u64)>);

impl Io {
    fn get(&self, k: &str) -> u64 {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }
}

impl Svc {
    fn start(state: &Path, args: &[&str], extra: &[(&str, &str)]) -> Svc {
        // Info, not debug: the burst must not be slowed by its own logging.
        let env: Vec<(&str, &str)> = [("RUST_LOG", "warn,drone_discord=info")]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let mut cmd = support::binary::serve_command(state, args, &env);
        let mut child = cmd.spawn().expect("spawn drone-discord");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        // Read (and drop) the log so the service never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut shown = 0;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening for Drone webhooks") {
                    if let Some(a) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("addr="))
                    {
                        let _ = tx.send(a.to_string());
                    }
                }
                if line.contains("ERROR") && shown < 5 {
                    shown += 1;
                    eprintln!("service: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("service did not start");
        Svc { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.pid())).unwrap_or_default()
    }

    fn mem(&self) -> Mem {
        let status = self.proc_file("status");
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Mem {
            rss: kb("VmRSS:") / 1024.0,
            hwm: kb("VmHWM:") / 1024.0,
        }
    }

    /// User plus system CPU time so far (`/proc/PID/stat`).
    fn cpu(&self) -> Duration {
        let stat = self.proc_file("stat");
        // Fields after the command name (which may hold spaces): utime is
        // the 12th and stime the 13th of them, in clock ticks.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(ticks * 1000 / hz)
    }

    fn io(&self) -> Io {
        Io(self
            .proc_file("io")
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_owned(), v.trim().parse().ok()?))
            })
            .collect())
    }

    fn health(&self) -> Option<serde_json::Value> {
        let raw = "GET /health HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        s.write_all(raw.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        serde_json::from_str(out.split_once("\r\n\r\n")?.1).ok()
    }

    /// Poll `/health` until `pred` holds (at most 30 minutes).
    fn wait_health(&self, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            if let Some(v) = self.health() {
                if pred(&v) {
                    return v;
                }
                assert!(
                    Instant::now() < deadline,
                    "gave up waiting; last /health: {v}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Syncs the process makes during `period`, counted by `strace -c`.
fn strace_syncs(pid: u32, period: Duration) -> Result<u64, String> {
    let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let spawned = Command::new("strace")
        .args([
            "-f",
            "-c",
            "-e",
            "trace=fsync,fdatasync,sync_file_range",
            "-o",
        ])
        .arg(out.path())
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut strace = match spawned {
        Ok(c) => c,
        Err(e) => {
            std::thread::sleep(period);
            return Err(format!("strace: {e} (apt-get install strace)"));
        }
    };
    std::thread::sleep(period);
    let _ = Command::new("kill")
        .arg("-INT")
        .arg(strace.id().to_string())
        .status();
    let _ = strace.wait();
    let text = std::fs::read_to_string(out.path()).map_err(|e| e.to_string())?;
    if text.contains("Operation not permitted") {
        return Err("strace may not attach here (ptrace not permitted)".into());
    }
    // `strace -c` rows: % time, seconds, usecs/call, calls, [errors,] syscall.
    Ok(text
        .lines()
        .filter(|l| {
            ["fsync", "fdatasync", "sync_file_range"]
                .iter()
                .any(|s| l.trim_end().ends_with(s))
        })
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum())
}

/// Names, sizes and mtimes of the directory's files, and its own mtime.
fn dir_snapshot(dir: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
    let mut v = vec![(
        ".".to_owned(),
        0,
        std::fs::metadata(dir).and_then(|m| m.modified()).ok(),
    )];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().ok();
            v.push((
                e.file_name().to_string_lossy().into_owned(),
                m.as_ref().map_or(0, |m| m.len()),
                m.and_then(|m| m.modified().ok()),
            ));
        }
    }
    v.sort();
    v
}

/// Bytes the directory's files take on disk (allocated blocks).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

/// The result of one burst.
struct Burst {
    ok: u64,
    busy: u64,
    other: u64,
    took: Duration,
    /// Highest VmRSS seen while sampling every 50 ms.
    peak_rss: f64,
}

impl Burst {
    /// `events` signed, distinct build webhooks over `conns` keep-alive
    /// connections; `salt` keeps build ids distinct between bursts.
    fn run(addr: &str, events: u64, conns: usize, salt: u64, svc: &Svc) -> Burst {
        let template = fixture_json("build_updated.json");
        let next = Arc::new(AtomicU64::new(0));
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let sampler = {
            let (done, pid) = (done.clone(), svc.pid());
            std::thread::spawn(move || {
                let mut peak = 0f64;
                while !done.load(Ordering::SeqCst) {
                    let s =
                        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                    if let Some(kb) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                    {
                        peak = peak.max(kb / 1024.0);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                peak
            })
        };
        let clients: Vec<_> = (0..conns)
            .map(|_| {
                let (addr, template, next, counts) = (
                    addr.to_owned(),
                    template.clone(),
                    next.clone(),
                    counts.clone(),
                );
                std::thread::spawn(move || {
                    let mut conn: Option<TcpStream> = None;
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= events {
                            return;
                        }
                        let raw = signed_update(&template, 10_000_000 * salt + i);
                        let status = loop {
                            let s = match conn.as_mut() {
                                Some(s) => s,
                                None => {
                                    let s = TcpStream::connect(&addr).expect("connect");
                                    s.set_nodelay(true).ok();
                                    conn.insert(s)
                                }
                            };
                            match s.write_all(&raw).and_then(|_| read_response(s, &mut buf)) {
                                Ok((status, close)) => {
                                    if close {
                                        conn = None;
                                    }
                                    break status;
                                }
                                // The server closed a keep-alive connection: reconnect, resend.
                                Err(_) => conn = None,
                            }
                        };
                        let slot = match status {
                            200 => 0,
                            503 => 1,
                            _ => 2,
                        };
                        counts[slot].fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for c in clients {
            let _ = c.join();
        }
        let took = started.elapsed();
        done.store(true, Ordering::SeqCst);
        let peak_rss = sampler.join().unwrap_or(0.0);
        Burst {
            ok: counts[0].load(Ordering::SeqCst),
            busy: counts[1].load(Ordering::SeqCst),
            other: counts[2].load(Ordering::SeqCst),
            took,
            peak_rss,
        }
    }
}

/// A signed keep-alive `build:updated` webhook for build `id` (~5 KiB: the
/// fixture, padded to 5 KiB should it ever shrink).
fn signed_update(template: &serde_json::Value, id: u64) -> Vec<u8> {
    let mut v = template.clone();
    v["build"]["id"] = (id as i64 + 1).into();
    v["build"]["number"] = (id as i64 + 1).into();
    let body0 = serde_json::to_vec(&v).expect("json");
    if body0.len() < 5 * 1024 {
        let msg = v["build"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        v["build"]["message"] = format!("{msg}\n{}", "x".repeat(5 * 1024 - body0.len())).into();
    }
    let body = serde_json::to_vec(&v).expect("json");
    let mut head = format!(
        "POST / HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nX-Drone-Event: build\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, val) in
        drone_discord::signature::sign(SECRET.as_bytes(), "hmac-key", &body, SystemTime::now())
    {
        head.push_str(&format!("{k}: {val}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(&body);
    raw
}

/// Read one response (head + Content-Length body): its status and whether
/// the server closes the connection after it.
fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let mut filled = 0;
    loop {
        let n = s.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = resp.parse(&buf[..filled]) {
            let header = |name: &str| {
                resp.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| h.value.to_vec())
            };
            let len = header("content-length")
                .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
            let status = resp.code.unwrap_or(0);
            while filled < head + len {
                let n = s.read(&mut buf[filled..])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                filled += n;
            }
            return Ok((status, close));
        }
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
}
