//! The slowloris swarm of the hostile-LAN test and the Pi bounds benchmark:
//! 1 000 connections trickling headers (100 from each of 127.0.0.2..=11)
//! and 256 trickling bodies (127.0.0.12..=15; half unsigned, half signed
//! with the wrong key, each declaring a 1 MiB body), a byte per connection
//! every 200 ms until stopped.
use super::webhook::signed_request;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Longest a swarm connection waits to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// The head of a signed webhook for `body` (signed with `secret`), declaring
/// `content_length` and any `extra` header lines; no body follows.
pub fn signed_head(body: &[u8], secret: &str, content_length: usize, extra: &str) -> Vec<u8> {
    let raw = signed_request(body, secret, SystemTime::now());
    let text = String::from_utf8(raw).expect("utf-8 request");
    let (head, _) = text.split_once("\r\n\r\n").expect("a head");
    let head = head.replace(
        &format!("Content-Length: {}\r\n", body.len()),
        &format!("Content-Length: {content_length}\r\n{extra}"),
    );
    format!("{head}\r\n\r\n").into_bytes()
}

/// A connection to `addr` from the loopback address `127.0.0.<host>`.
pub fn connect_from(
    rt: &tokio::runtime::Runtime,
    host: u8,
    addr: SocketAddr,
) -> std::io::Result<TcpStream> {
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, host), 0)))?;
        let stream = tokio::time::timeout(CONNECT_WAIT, socket.connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        Ok(stream)
    })
}

/// A running swarm against one service.
pub struct Swarm {
    /// Connections opened, and refused while opening.
    pub opened: usize,
    pub refused: usize,
    stop: Arc<AtomicBool>,
    trickler: std::thread::JoinHandle<usize>,
}

impl Swarm {
    /// Open the swarm against `addr`; `body` is the webhook whose wrongly
    /// signed heads half of the slow bodies send.
    pub fn start(addr: SocketAddr, body: &[u8]) -> Swarm {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut swarm: Vec<TcpStream> = Vec::new();
        let mut refused = 0;
        for i in 0..1000 {
            match connect_from(&rt, 2 + (i / 100) as u8, addr) {
                Ok(mut s) => {
                    let _ = s.write_all(b"POST / HTTP/1.1\r\nHost: t\r\nX-Slow: ");
                    swarm.push(s);
                }
                Err(_) => refused += 1,
            }
        }
        for i in 0..256 {
            let head = if i % 2 == 0 {
                b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n".to_vec()
            } else {
                signed_head(body, "not-the-secret", 1024 * 1024, "")
            };
            match connect_from(&rt, 12 + (i / 64) as u8, addr) {
                Ok(mut s) => {
                    let _ = s.write_all(&head);
                    let _ = s.write_all(b"{");
                    swarm.push(s);
                }
                Err(_) => refused += 1,
            }
        }
        let opened = swarm.len();
        let stop = Arc::new(AtomicBool::new(false));
        let trickler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut open = swarm;
                while !stop.load(Ordering::SeqCst) {
                    open.retain_mut(|s| s.write_all(b"a").is_ok());
                    std::thread::sleep(Duration::from_millis(200));
                }
                open.len()
            })
        };
        Swarm {
            opened,
            refused,
            stop,
            trickler,
        }
    }

    /// Stop trickling; how many connections were still writable.
    pub fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.trickler.join().unwrap_or(0)
    }
}
