//! End-to-end: a wrong clock at boot loses nothing.
//!
//! A Pi without a real-time clock boots with a stale time until NTP syncs.
//! The real binary is told where "synchronised" comes from
//! (`CLOCK_SYNC=file:PATH`, the injectable clock status), and runs with
//! `adjtimex`/`clock_adjtime` failing with EPERM, as `ProtectClock=yes`
//! makes them in the unit's sandbox, so the detection cannot lean on them.
//!
//! 1. Synchronised: a webhook is real work and stores the time in the
//!    state directory (`last-known-time`).
//! 2. The stored time is then moved ten days ahead of the host clock: as if
//!    the service had last run ten days "later" and the Pi now booted with a
//!    clock ten days behind. Unsynchronised, a webhook signed after the
//!    stored time (minus the window) is accepted although it is ten days
//!    away from the system clock; a second copy is a duplicate; one signed
//!    at the host's "now" (inside the window of the system clock, but older
//!    than the known time) is refused. The rule is logged once, and nothing
//!    done while unsynchronised changes the stored time.
//! 3. Synchronised again: the system clock's window applies.
mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::binary::{serve_command, spawn};
use support::builds::build_created;
use support::credentials::SECRET;
use support::raw_http::http;
use support::webhook::signed_request;

const WAIT: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);
const LOG_LINE: &str = "system clock not synchronised";

/// The stored time, once the file exists (the write follows the 200 on
/// the blocking pool).
fn wait_known_time(path: &Path) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Some(ms) = text.lines().nth(1).and_then(|l| l.parse().ok()) {
                return ms;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no last-known-time file after real work"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// `ProtectClock=yes`'s system-call side in the child: `adjtimex` and
/// `clock_adjtime` fail with EPERM (a seccomp filter; the unit's other
/// restrictions do not matter here).
fn deny_clock_syscalls(cmd: &mut std::process::Command) {
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec,
    // on data built before the fork.
    let filter: Vec<libc::sock_filter> = {
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8| libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt,
            jf: 0,
            k,
        };
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        vec![
            // Load the system call number (offset 0 of seccomp_data).
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jeq(libc::SYS_adjtimex as u32, 2),
            jeq(libc::SYS_clock_adjtime as u32, 1),
            stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
            stmt(libc::BPF_RET | libc::BPF_K, eperm),
        ]
    };
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn start(state: &Path, flag: &Path) -> support::binary::Service {
    let sync = format!("file:{}", flag.display());
    let mut cmd = serve_command(state, &["--dry-run"], &[("CLOCK_SYNC", &sync)]);
    deny_clock_syscalls(&mut cmd);
    spawn(cmd)
}

#[test]
fn an_unsynchronised_clock_judges_dates_by_the_last_known_time() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let flag = dir.path().join("clock-synchronised");
    let known_file = state.join("last-known-time");

    // 1. Synchronised: real work stores the time.
    std::fs::write(&flag, b"").unwrap();
    let svc = start(&state, &flag);
    let before = unix_ms(SystemTime::now());
    let (status, body) = svc.post_signed(&build_created(1, 1), SECRET);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("queued"), "{body}");
    let stored = wait_known_time(&known_file);
    assert!(stored >= before, "the time of the real work is stored");
    assert_eq!(svc.sigterm(), Some(0));

    // 2. Ten days "later", booted with the clock ten days behind, before NTP.
    let known = SystemTime::now() + 10 * DAY;
    std::fs::write(
        &known_file,
        format!("drone-discord last known time v1\n{}\n", unix_ms(known)),
    )
    .unwrap();
    std::fs::remove_file(&flag).unwrap();
    let svc = start(&state, &flag);

    let after_known = signed_request(&build_created(2, 2), SECRET, known + DAY);
    let (status, body) = http(&svc.addr, &after_known);
    assert_eq!(status, 200, "signed after the known time: {body}");
    assert!(body.contains("queued"), "{body}");
    let (status, body) = http(&svc.addr, &after_known);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("duplicate"),
        "the replay store still refuses a second copy: {body}"
    );
    let at_window_edge = signed_request(
        &build_created(3, 3),
        SECRET,
        known - Duration::from_secs(250),
    );
    let (status, body) = http(&svc.addr, &at_window_edge);
    assert_eq!(
        status, 200,
        "within the window before the known time: {body}"
    );

    let stale = signed_request(&build_created(4, 4), SECRET, SystemTime::now());
    let (status, body) = http(&svc.addr, &stale);
    assert_eq!(
        status, 401,
        "older than the known time, though inside the system clock's window: {body}"
    );
    assert!(body.contains("last time known"), "{body}");

    let log = svc.log_text();
    assert_eq!(log.matches(LOG_LINE).count(), 1, "logged once:\n{log}");
    assert_eq!(
        wait_known_time(&known_file),
        unix_ms(known),
        "work while unsynchronised does not store the (untrusted) time"
    );

    // 3. NTP has synchronised: the system clock's window applies again.
    std::fs::write(&flag, b"").unwrap();
    let far = signed_request(&build_created(5, 5), SECRET, known + DAY);
    let (status, body) = http(&svc.addr, &far);
    assert_eq!(status, 401, "ten days off a synchronised clock: {body}");
    assert!(body.contains("out of window"), "{body}");
    let (status, body) = svc.post_signed(&build_created(6, 6), SECRET);
    assert_eq!(status, 200, "{body}");
    // Real work while synchronised replaces the stored time from the future.
    let deadline = Instant::now() + WAIT;
    while wait_known_time(&known_file) >= unix_ms(known) {
        assert!(
            Instant::now() < deadline,
            "the stored time was not refreshed by real work"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(svc.sigterm(), Some(0));
}
