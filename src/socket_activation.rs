//! systemd socket activation (`sd_listen_fds`) without libsystemd.
//!
//! With `drone-discord.socket` enabled, systemd owns the listening socket and
//! hands it to each new process as file descriptor 3, announced by
//! `LISTEN_FDS=1` and `LISTEN_PID=<our pid>`. Connections that arrive while
//! the service restarts wait in the kernel's backlog instead of being
//! refused, and Drone never retries a refused webhook.
//!
//! As `sd_listen_fds(1)` does: the variables count only when `LISTEN_PID` is
//! this process; all three (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`) are
//! removed from the environment so that children do not inherit them; the
//! passed descriptors get `FD_CLOEXEC`. Descriptor 3 must be a listening TCP
//! socket; further ones are not used.
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;
/// More than this many passed descriptors is not a systemd we understand.
const MAX_FDS: usize = 64;

static CLAIMED: OnceLock<Result<Option<RawFd>, String>> = OnceLock::new();
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Reads and removes the variables once per process and checks descriptor
/// 3. Call it while the process has one thread (`main` does, before the
/// runtime starts); later calls return the same answer.
pub fn claim() -> Result<Option<RawFd>, String> {
    CLAIMED.get_or_init(claim_from_env).clone()
}

/// The listening socket systemd passed, if any; it can be taken once.
pub fn listener() -> Result<Option<std::net::TcpListener>, String> {
    let Some(fd) = claim()? else {
        return Ok(None);
    };
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err("the socket passed by systemd is already in use".into());
    }
    // SAFETY: the protocol gives us descriptor 3; `claim` checked that it is
    // an open listening TCP socket, and TAKEN makes this the one owner.
    Ok(Some(unsafe { std::net::TcpListener::from_raw_fd(fd) }))
}

fn claim_from_env() -> Result<Option<RawFd>, String> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let count = passed_fds(pid.as_deref(), fds.as_deref(), std::process::id())?;
    if count == 0 {
        return Ok(None);
    }
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count as RawFd {
        set_cloexec(fd)?;
    }
    check_listening_tcp(LISTEN_FDS_START)?;
    if count > 1 {
        tracing::warn!(
            count,
            "systemd passed more than one socket; using the first (fd 3)"
        );
    }
    Ok(Some(LISTEN_FDS_START))
}

/// How many descriptors the variables pass to process `own_pid` (0: none,
/// or they are meant for another process).
pub fn passed_fds(pid: Option<&str>, fds: Option<&str>, own_pid: u32) -> Result<usize, String> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(0);
    };
    match pid.trim().parse::<u32>() {
        Ok(p) if p == own_pid => {}
        Ok(_) => return Ok(0),
        Err(_) => return Err("LISTEN_PID is not a process id".into()),
    }
    match fds.trim().parse::<usize>() {
        Ok(n) if n <= MAX_FDS => Ok(n),
        _ => Err("LISTEN_FDS is not a small number".into()),
    }
}

fn set_cloexec(fd: RawFd) -> Result<(), String> {
    // SAFETY: fcntl on a descriptor number only reads and sets its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(format!(
            "fd {fd} passed by systemd is not open: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(format!(
            "cannot set FD_CLOEXEC on fd {fd}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn socket_option(fd: RawFd, name: libc::c_int) -> Result<libc::c_int, String> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(format!(
            "fd {fd} passed by systemd is not a socket: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(value)
}

/// Descriptor `fd` is a listening IPv4 or IPv6 stream socket.
fn check_listening_tcp(fd: RawFd) -> Result<(), String> {
    let domain = socket_option(fd, libc::SO_DOMAIN)?;
    let kind = socket_option(fd, libc::SO_TYPE)?;
    let listening = socket_option(fd, libc::SO_ACCEPTCONN)?;
    if !matches!(domain, libc::AF_INET | libc::AF_INET6) || kind != libc::SOCK_STREAM {
        return Err(format!(
            "fd {fd} passed by systemd is not a TCP socket (use ListenStream= with a port)"
        ));
    }
    if listening != 1 {
        return Err(format!("fd {fd} passed by systemd is not listening"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_count_only_for_this_process() {
        assert_eq!(passed_fds(None, None, 42), Ok(0));
        assert_eq!(passed_fds(Some("42"), None, 42), Ok(0));
        assert_eq!(passed_fds(Some("42"), Some("1"), 42), Ok(1));
        assert_eq!(passed_fds(Some(" 42 "), Some("2"), 42), Ok(2));
        // Meant for a parent or a sibling: not ours.
        assert_eq!(passed_fds(Some("41"), Some("1"), 42), Ok(0));
        assert_eq!(passed_fds(Some("42"), Some("0"), 42), Ok(0));
        assert!(passed_fds(Some("x"), Some("1"), 42).is_err());
        assert!(passed_fds(Some("42"), Some("-1"), 42).is_err());
        assert!(passed_fds(Some("42"), Some("100000"), 42).is_err());
    }

    #[test]
    fn only_a_listening_tcp_socket_is_accepted() {
        use std::os::fd::AsRawFd;
        let listening = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(check_listening_tcp(listening.as_raw_fd()), Ok(()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(check_listening_tcp(udp.as_raw_fd()).is_err());
        let connected = std::net::TcpStream::connect(listening.local_addr().unwrap()).unwrap();
        assert!(check_listening_tcp(connected.as_raw_fd()).is_err());
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(check_listening_tcp(file.as_raw_fd()).is_err());
    }
}
