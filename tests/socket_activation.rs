//! End-to-end: socket activation. The test holds the listening socket, as
//! systemd does for `drone-discord.socket`, and passes it to the binary as
//! fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`). A stream of signed webhooks runs
//! while the service is stopped with SIGTERM and started again on the same
//! socket: connections wait in the kernel's backlog, and every webhook gets
//! its 200.
mod support;

use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};
use support::binary::{bin, spawn, Service};
use support::credentials::SECRET;
use support::raw_http::http;
use support::webhook::signed_request;

/// How many webhooks the stream sends, and after how many answers the restart begins.
const WEBHOOKS: usize = 60;
const RESTART_AFTER: usize = 15;

/// `drone-discord serve --dry-run` with `listener` as its fd 3. `LISTEN_PID`
/// must be the binary's own pid, known only in the child: a shell sets it to
/// its `$$` and `exec`s the binary, which keeps the pid.
fn start_activated(state: &Path, listener: &TcpListener) -> Service {
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" serve --dry-run"#)
        .arg(bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DRONE_WEBHOOK_SECRET", SECRET)
        // Not used under socket activation: a port nobody can bind.
        .env("LISTEN_ADDR", "127.0.0.1:1")
        .env("LISTEN_FDS", "1")
        .env("STATE_DIR", state)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                // dup2 onto itself would keep FD_CLOEXEC: clear it instead.
                let flags = libc::fcntl(3, libc::F_GETFD);
                if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn(cmd)
}

#[test]
fn a_restart_under_socket_activation_loses_no_webhook() {
    let state = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let first = start_activated(state.path(), &listener);
    let first_log = first.log.clone();
    assert_eq!(
        first.addr, addr,
        "the service must use the passed socket, not LISTEN_ADDR"
    );
    assert!(
        first.log_text().contains("socket_activated=true"),
        "{}",
        first.log_text()
    );

    // The stream: one webhook after another, each on its own connection.
    let (answered_tx, answered_rx) = std::sync::mpsc::channel();
    let client = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            for n in 0..WEBHOOKS {
                let body = format!(
                    r#"{{"event":"build","action":"created","repo":{{"slug":"o/r","name":"r","namespace":"o"}},"build":{{"id":{},"number":{},"status":"running","event":"push","after":"abc"}}}}"#,
                    7000 + n,
                    n + 1
                );
                let (status, answer) = http(
                    &addr,
                    &signed_request(body.as_bytes(), SECRET, SystemTime::now()),
                );
                statuses.push((status, answer));
                let _ = answered_tx.send(n);
                std::thread::sleep(Duration::from_millis(20));
            }
            statuses
        })
    };

    // Mid-stream: SIGTERM, wait for the exit, start again on the same socket.
    for _ in 0..RESTART_AFTER {
        answered_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the stream stalled before the restart");
    }
    assert_eq!(first.sigterm(), Some(0), "SIGTERM must exit cleanly");
    let second = start_activated(state.path(), &listener);
    assert_eq!(second.addr, addr);

    let statuses = client.join().unwrap();
    assert_eq!(statuses.len(), WEBHOOKS);
    for (n, (status, answer)) in statuses.iter().enumerate() {
        assert_eq!(
            *status,
            200,
            "webhook {n} lost across the restart: {answer:?}; log:\n{}",
            second.log_text()
        );
    }
    // The second process served some of them: the restart really was mid-stream.
    assert!(
        second.log_text().contains("path=/ "),
        "no webhook reached the second process"
    );
    let served = |log: &[String]| log.iter().filter(|l| l.contains("path=/ ")).count();
    eprintln!(
        "socket activation: {WEBHOOKS} webhooks, SIGTERM after {RESTART_AFTER} answers; \
         first process served {}, second {}; all 200",
        served(&first_log.lock().unwrap()),
        served(&second.log.lock().unwrap())
    );
    assert_eq!(second.sigterm(), Some(0));
}
