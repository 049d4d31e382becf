//! The HTTP server: the accept loop, and where each of its concerns lives.
//!
//! [`listen`] accepts connections and asks `admission` whether each may be
//! served (up to `max_connections`; when full, the oldest untrusted
//! connection is evicted, and only when none is evictable does the new one
//! get a short 503 and a close). An
//! admitted connection runs [`request_loop`] (`connection`): wait for a
//! request, read it with [`RequestReader`](crate::http::request::RequestReader),
//! answer `100 Continue` when asked, call the [`Handler`], write the
//! response, and decide whether to keep the connection. Protocol errors get
//! their status and a lingering close (`linger`).
//! On shutdown it stops accepting, lets in-flight requests finish (at most
//! [`SHUTDOWN_GRACE`]), closes idle connections at once, and returns.
//!
//! The tests here drive the server as a whole, through a socket or an
//! in-memory pipe.
use super::{Handler, ServerLimits};
use crate::shutdown::Shutdown;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::timeout;

mod admission;
mod connection;
mod linger;

use admission::{reject_overloaded, Admission, Gate};
pub use connection::request_loop;
use connection::serve_in_slot;

/// How long shutdown waits for in-flight requests before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause after a failed `accept` (e.g. EMFILE) so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve `handler` on `listener` until `shutdown` fires, then stop accepting,
/// let in-flight requests finish (bounded), and return.
pub async fn listen<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: ServerLimits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    accept_loop(listener, handler, limits, shutdown, SHUTDOWN_GRACE).await
}

/// Where connections come from: a TCP listener in production, a fake in the
/// tests that need accept errors on demand.
trait Accept: Send {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Accept for TcpListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = TcpListener::accept(self).await?;
        // Responses go out in one write; do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        // On a dual-stack socket (socket activation's `ListenStream=5000`)
        // IPv4 peers arrive as ::ffff:a.b.c.d; name them as IPv4 so that
        // loopback checks and per-peer limits see one address per host.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        Ok((stream, peer))
    }
}

/// [`listen`] over any [`Accept`], with the shutdown grace period as a parameter.
async fn accept_loop<A: Accept, H: Handler>(
    mut listener: A,
    handler: Arc<H>,
    limits: ServerLimits,
    shutdown: Shutdown,
    grace: Duration,
) -> io::Result<()> {
    let gate = Gate::new(&limits);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                log_task_end(done);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed; backing off");
                tokio::select! {
                    _ = shutdown.wait() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        match gate.admit(peer.ip()) {
            Admission::Serve(slot) => {
                let handler = Arc::clone(&handler);
                let limits = limits.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    serve_in_slot(stream, peer, handler.as_ref(), &limits, &shutdown, &slot).await;
                    drop(slot);
                });
            }
            Admission::Reject(permit) => {
                tracing::info!(%peer, status = 503, "connection table full of trusted or busy connections; turning connection away");
                let write_timeout = limits.write_timeout;
                tokio::spawn(async move {
                    reject_overloaded(stream, write_timeout).await;
                    drop(permit);
                });
            }
            Admission::Drop => {
                tracing::warn!(%peer, "connection limit reached; dropping connection")
            }
        }
    }
    drop(listener);
    let in_flight = connections.len();
    tracing::info!(in_flight, "listener stopped; finishing in-flight requests");
    let drained = timeout(grace, async {
        while let Some(done) = connections.join_next().await {
            log_task_end(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = connections.len(),
            "shutdown grace period over; dropping connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        if error.is_panic() {
            tracing::error!("connection task panicked");
        }
    }
}

async fn write_all<S: AsyncWrite + Unpin>(
    io: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> io::Result<()> {
    match timeout(limit, async {
        io.write_all(bytes).await?;
        io.flush().await
    })
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Request, Response};
    use crate::shutdown::{self, Trigger};
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::io::DuplexStream;
    use tokio::sync::Notify;
    use tokio::task::JoinHandle;
    use tokio::time::Instant;

    /// Echoes the request back; `/slow` waits until released.
    #[derive(Default)]
    struct Echo {
        slow_started: Notify,
        slow_release: Notify,
    }

    impl Handler for Echo {
        async fn handle(&self, req: Request, _peer: SocketAddr) -> Response {
            if req.path() == "/slow" {
                self.slow_started.notify_one();
                self.slow_release.notified().await;
            }
            let mut body = format!("{} {} ", req.method, req.target).into_bytes();
            body.extend_from_slice(&req.body);
            Response {
                status: 200,
                headers: vec![("X-Echo".into(), "1".into())],
                body,
                log_note: None,
            }
            .with_log_note("echo")
        }

        /// `/refuse` is refused from its head (401), `/anon…` is accepted
        /// untrusted (evictable), everything else is trusted.
        fn check_head(
            &self,
            head: &crate::http::request::Head,
            _peer: SocketAddr,
        ) -> crate::http::HeadCheck {
            use crate::http::HeadCheck;
            match head.path() {
                "/refuse" => HeadCheck::Refuse(Response::error(401, "refused at the head")),
                p if p.starts_with("/anon") => HeadCheck::Accept,
                _ => HeadCheck::Trusted,
            }
        }
    }

    /// A parsed response as a test client sees it.
    #[derive(Debug)]
    struct Answer {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Answer {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A raw HTTP client over any stream, keeping unread bytes between responses.
    struct Client<S> {
        io: S,
        buf: Vec<u8>,
    }

    const WAIT: Duration = Duration::from_secs(120);

    impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
        fn new(io: S) -> Self {
            Client {
                io,
                buf: Vec::new(),
            }
        }

        async fn send(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.unwrap();
        }

        /// The next response; `None` if the server closed first.
        async fn answer(&mut self, head_only: bool) -> Option<Answer> {
            timeout(WAIT, self.answer_inner(head_only))
                .await
                .expect("no answer in time")
        }

        async fn answer_inner(&mut self, head_only: bool) -> Option<Answer> {
            loop {
                let mut fields = [httparse::EMPTY_HEADER; 32];
                let mut parsed = httparse::Response::new(&mut fields);
                if let httparse::Status::Complete(n) = parsed.parse(&self.buf).unwrap() {
                    let status = parsed.code.unwrap();
                    let headers: Vec<(String, String)> = parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8(h.value.to_vec()).unwrap(),
                            )
                        })
                        .collect();
                    let len: usize = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().unwrap());
                    let len = if head_only || status == 100 { 0 } else { len };
                    while self.buf.len() < n + len {
                        if self.fill().await == 0 {
                            return None;
                        }
                    }
                    let body = self.buf[n..n + len].to_vec();
                    self.buf.drain(..n + len);
                    return Some(Answer {
                        status,
                        headers,
                        body,
                    });
                }
                if self.fill().await == 0 {
                    return None;
                }
            }
        }

        async fn fill(&mut self) -> usize {
            let mut chunk = [0u8; 4096];
            let n = self.io.read(&mut chunk).await.unwrap_or(0);
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        /// True when the server closes without sending anything more.
        async fn closed_silently(&mut self) -> bool {
            timeout(WAIT, async { while self.fill().await > 0 {} })
                .await
                .expect("connection not closed in time");
            self.buf.is_empty()
        }
    }

    fn small_limits() -> ServerLimits {
        ServerLimits {
            max_body_bytes: 1024,
            max_header_bytes: 1024,
            max_headers: 16,
            ..ServerLimits::default()
        }
    }

    struct Running {
        addr: SocketAddr,
        trigger: Trigger,
        handler: Arc<Echo>,
        task: JoinHandle<io::Result<()>>,
    }

    async fn start(limits: ServerLimits) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = shutdown::channel();
        let handler = Arc::new(Echo::default());
        let task = tokio::spawn(listen(listener, Arc::clone(&handler), limits, shutdown));
        Running {
            addr,
            trigger,
            handler,
            task,
        }
    }

    async fn connect(addr: SocketAddr) -> Client<TcpStream> {
        Client::new(TcpStream::connect(addr).await.unwrap())
    }

    /// One connection served over an in-memory pipe (for the paused clock).
    fn pipe(limits: ServerLimits) -> (Client<DuplexStream>, Trigger, JoinHandle<()>) {
        pipe_with_capacity(limits, 64 * 1024)
    }

    fn pipe_with_capacity(
        limits: ServerLimits,
        capacity: usize,
    ) -> (Client<DuplexStream>, Trigger, JoinHandle<()>) {
        let (client, server) = tokio::io::duplex(capacity);
        let (trigger, shutdown) = shutdown::channel();
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let task = tokio::spawn(async move {
            request_loop(server, peer, &Echo::default(), &limits, &shutdown).await;
        });
        (Client::new(client), trigger, task)
    }

    #[tokio::test]
    async fn keep_alive_serves_two_requests_on_one_connection() {
        let server = start(small_limits()).await;
        let mut c = connect(server.addr).await;
        c.send(b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n").await;
        let first = c.answer(false).await.unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(first.body, b"GET /one ");
        assert_eq!(first.header("connection"), Some("keep-alive"));
        assert_eq!(first.header("x-echo"), Some("1"));
        assert!(first.header("date").is_some_and(|d| d.ends_with(" GMT")));
        c.send(b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
            .await;
        let second = c.answer(false).await.unwrap();
        assert_eq!(second.body, b"POST /two abc");
        // HEAD: same headers, no body.
        c.send(b"HEAD /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .await;
        let third = c.answer(true).await.unwrap();
        assert_eq!(third.header("content-length"), Some("12"));
        assert_eq!(third.header("connection"), Some("close"));
        assert!(c.closed_silently().await, "HEAD response carried a body");
        // Hang up like a real client would; otherwise the server lingers for our FIN.
        drop(c);
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn pipelined_get_and_post_in_one_write() {
        let server = start(small_limits()).await;
        let mut c = connect(server.addr).await;
        c.send(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody").await;
        assert_eq!(c.answer(false).await.unwrap().body, b"GET /a ");
        assert_eq!(c.answer(false).await.unwrap().body, b"POST /b body");
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn http10_closes_unless_keep_alive_is_asked_for() {
        let server = start(small_limits()).await;
        let mut c = connect(server.addr).await;
        c.send(b"GET /old HTTP/1.0\r\n\r\n").await;
        let answer = c.answer(false).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(c.closed_silently().await);
        drop(c);

        let mut c = connect(server.addr).await;
        c.send(b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .await;
        assert_eq!(
            c.answer(false).await.unwrap().header("connection"),
            Some("keep-alive")
        );
        c.send(b"GET /again HTTP/1.0\r\n\r\n").await;
        assert_eq!(c.answer(false).await.unwrap().body, b"GET /again ");
        drop(c);
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn max_requests_per_connection_then_close() {
        let server = start(ServerLimits {
            max_requests_per_connection: 2,
            ..small_limits()
        })
        .await;
        let mut c = connect(server.addr).await;
        c.send(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n")
            .await;
        assert_eq!(
            c.answer(false).await.unwrap().header("connection"),
            Some("keep-alive")
        );
        assert_eq!(
            c.answer(false).await.unwrap().header("connection"),
            Some("close")
        );
        assert!(c.closed_silently().await);
        drop(c);
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn expect_100_continue_handshake() {
        let server = start(small_limits()).await;
        let mut c = connect(server.addr).await;
        c.send(
            b"POST /hook HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await;
        // The client sends nothing more until it sees the 100.
        let interim = c.answer(false).await.unwrap();
        assert_eq!(interim.status, 100);
        c.send(b"hello").await;
        let answer = c.answer(false).await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"POST /hook hello"[..])
        );

        // Over the limit: 413 straight away, no 100, connection closed.
        let mut c = connect(server.addr).await;
        c.send(b"POST /hook HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n").await;
        let answer = c.answer(false).await.unwrap();
        assert_eq!(answer.status, 413);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(c.closed_silently().await);
        drop(c);
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    /// Sends `request` on a fresh connection; expects `status`, a JSON error and a close.
    async fn expect_refusal(addr: SocketAddr, request: &[u8], status: u16) {
        let mut c = connect(addr).await;
        c.send(request).await;
        let answer = c.answer(false).await.unwrap();
        assert_eq!(
            answer.status,
            status,
            "{}",
            String::from_utf8_lossy(request)
        );
        assert_eq!(answer.header("connection"), Some("close"));
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert!(json["error"].is_string());
        assert!(c.closed_silently().await);
    }

    #[tokio::test]
    async fn protocol_errors_over_a_socket_get_their_status_and_close() {
        let server = start(small_limits()).await;
        let addr = server.addr;
        expect_refusal(
            addr,
            b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
            413,
        )
        .await;
        let mut chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            chunked.extend_from_slice(b"200\r\n");
            chunked.extend_from_slice(&[b'x'; 0x200]);
            chunked.extend_from_slice(b"\r\n");
        }
        expect_refusal(addr, &chunked, 413).await;
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend_from_slice(&[b'a'; 2000]);
        big.extend_from_slice(b"\r\n\r\n");
        expect_refusal(addr, &big, 431).await;
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..20 {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        expect_refusal(addr, &many, 431).await;
        expect_refusal(addr, b"POST / HTTP/1.1\r\n\r\n", 411).await;
        expect_refusal(
            addr,
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            400,
        )
        .await;
        expect_refusal(
            addr,
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        )
        .await;
        expect_refusal(
            addr,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            400,
        )
        .await;
        expect_refusal(
            addr,
            b"POST / HTTP/1.1\r\nTransfer-Encoding: br\r\n\r\n",
            501,
        )
        .await;
        expect_refusal(addr, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505).await;
        expect_refusal(addr, b"NOT A REQUEST\r\n\r\n", 400).await;
        expect_refusal(addr, b"GET / HTTP/1.1\r\nExpect: later\r\n\r\n", 417).await;
        // The server is still fine afterwards.
        let mut c = connect(addr).await;
        c.send(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nT: 1\r\n\r\n").await;
        assert_eq!(c.answer(false).await.unwrap().body, b"POST / abc");
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn slowloris_gets_408_and_close() {
        let (mut c, _trigger, task) = pipe(ServerLimits {
            header_timeout: Duration::from_secs(5),
            ..small_limits()
        });
        c.send(b"G").await;
        // The clock jumps ahead while everyone waits; the one byte never becomes a request.
        let answer = c.answer(false).await.unwrap();
        assert_eq!(answer.status, 408);
        assert_eq!(answer.header("connection"), Some("close"));
        drop(c);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn silent_connection_gets_408() {
        let (mut c, _trigger, task) = pipe(small_limits());
        assert_eq!(c.answer(false).await.unwrap().status, 408);
        drop(c);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_body_gets_408() {
        let (mut c, _trigger, task) = pipe(ServerLimits {
            body_timeout: Duration::from_secs(30),
            ..small_limits()
        });
        c.send(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
            .await;
        assert_eq!(c.answer(false).await.unwrap().status, 408);
        drop(c);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keep_alive_connection_closes_silently() {
        let (mut c, _trigger, task) = pipe(ServerLimits {
            idle_timeout: Duration::from_secs(30),
            ..small_limits()
        });
        c.send(b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(c.answer(false).await.unwrap().status, 200);
        let before = Instant::now();
        assert!(
            c.closed_silently().await,
            "idle close must not send a response"
        );
        // Paused clock: exactly the idle timeout of virtual time went by, not the header timeout.
        assert!(before.elapsed() >= Duration::from_secs(30));
        assert!(before.elapsed() < small_limits().header_timeout + Duration::from_secs(30));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn connection_cap_turns_the_third_away_with_503() {
        let server = start(ServerLimits {
            max_connections: 2,
            ..small_limits()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = connect(server.addr).await;
            c.send(b"GET / HTTP/1.1\r\n\r\n").await;
            assert_eq!(c.answer(false).await.unwrap().status, 200);
            held.push(c);
        }
        let mut third = connect(server.addr).await;
        let answer = third.answer(false).await.unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(third.closed_silently().await);
        // Once a slot frees up, new connections are served again.
        drop(held.pop());
        let served = timeout(WAIT, async {
            loop {
                let mut c = connect(server.addr).await;
                c.send(b"GET / HTTP/1.1\r\n\r\n").await;
                match c.answer(false).await {
                    Some(a) if a.status == 200 => break,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        assert!(served.is_ok(), "freed slot was never reused");
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_full_table_evicts_an_untrusted_connection_for_the_newcomer() {
        let server = start(ServerLimits {
            max_connections: 2,
            ..small_limits()
        })
        .await;
        // One trusted keep-alive connection, one that never finishes its head.
        let mut trusted = connect(server.addr).await;
        trusted.send(b"GET /t HTTP/1.1\r\n\r\n").await;
        assert_eq!(trusted.answer(false).await.unwrap().status, 200);
        let mut slow = connect(server.addr).await;
        slow.send(b"GET /anon HTTP/1.1\r\nX-Slow: ").await;
        // The table is full; the newcomer is served and the slow one is gone.
        let mut newcomer = connect(server.addr).await;
        newcomer.send(b"GET /anon2 HTTP/1.1\r\n\r\n").await;
        assert_eq!(newcomer.answer(false).await.unwrap().status, 200);
        assert!(
            slow.closed_silently().await,
            "the slowloris was not evicted"
        );
        // The trusted connection still works.
        trusted.send(b"GET /t2 HTTP/1.1\r\n\r\n").await;
        assert_eq!(trusted.answer(false).await.unwrap().body, b"GET /t2 ");
        drop((trusted, newcomer));
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_refused_head_is_answered_before_the_body_and_before_100_continue() {
        let server = start(small_limits()).await;
        let mut c = connect(server.addr).await;
        c.send(b"POST /refuse HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n")
            .await;
        let answer = c.answer(false).await.unwrap();
        assert_eq!(answer.status, 401);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(c.closed_silently().await);
        server.trigger.fire();
        server.task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn graceful_shutdown_finishes_in_flight_request() {
        let server = start(small_limits()).await;
        // An idle keep-alive connection: must be closed at once on shutdown.
        let mut idle = connect(server.addr).await;
        idle.send(b"GET / HTTP/1.1\r\n\r\n").await;
        assert_eq!(idle.answer(false).await.unwrap().status, 200);
        // A request whose handler is still running when shutdown fires.
        let mut busy = connect(server.addr).await;
        busy.send(b"POST /slow HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
            .await;
        timeout(WAIT, server.handler.slow_started.notified())
            .await
            .unwrap();
        server.trigger.fire();
        assert!(idle.closed_silently().await);
        // The listener is gone once the accept loop has seen the signal; listen()
        // itself must still be waiting for the slow request.
        assert!(!server.task.is_finished());
        server.handler.slow_release.notify_one();
        let answer = busy.answer(false).await.unwrap();
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"POST /slow hi"[..])
        );
        assert_eq!(answer.header("connection"), Some("close"));
        drop(busy);
        timeout(WAIT, server.task).await.unwrap().unwrap().unwrap();
    }

    /// An acceptor whose every `accept` fails, as under EMFILE.
    struct Exhausted {
        calls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Accept for Exhausted {
        type Stream = DuplexStream;

        async fn accept(&mut self) -> io::Result<(DuplexStream, SocketAddr)> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(io::Error::from_raw_os_error(24))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn accept_errors_back_off_instead_of_spinning() {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (trigger, shutdown) = shutdown::channel();
        let acceptor = Exhausted {
            calls: Arc::clone(&calls),
        };
        let task = tokio::spawn(accept_loop(
            acceptor,
            Arc::new(Echo::default()),
            small_limits(),
            shutdown,
            SHUTDOWN_GRACE,
        ));
        // One virtual second: about one attempt per ACCEPT_BACKOFF, not millions.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let attempts = calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (5..=12).contains(&attempts),
            "{attempts} accept attempts in one second"
        );
        // And shutdown still gets through while backing off.
        trigger.fire();
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_grace_is_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = shutdown::channel();
        let handler = Arc::new(Echo::default());
        let grace = Duration::from_millis(200);
        let task = tokio::spawn(accept_loop(
            listener,
            Arc::clone(&handler),
            small_limits(),
            shutdown,
            grace,
        ));
        let mut stuck = connect(addr).await;
        stuck.send(b"GET /slow HTTP/1.1\r\n\r\n").await;
        timeout(WAIT, handler.slow_started.notified())
            .await
            .unwrap();
        trigger.fire();
        // The handler is never released: listen() must give up on it and return.
        timeout(WAIT, task).await.unwrap().unwrap().unwrap();
        assert!(
            stuck.closed_silently().await,
            "an abandoned request must not be answered"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn client_that_never_reads_hits_the_write_timeout() {
        // A 16-byte pipe: the response cannot be written while nobody reads.
        let limits = ServerLimits {
            write_timeout: Duration::from_secs(5),
            ..small_limits()
        };
        let (mut c, _trigger, task) = pipe_with_capacity(limits, 16);
        c.send(b"GET /x HTTP/1.1\r\n\r\n").await;
        timeout(WAIT, task)
            .await
            .expect("write timeout did not end the connection")
            .unwrap();
        // What got through is a cut-off response, then the end of the stream.
        assert!(c.answer(false).await.is_none());
        assert_eq!(c.buf, b"HTTP/1.1 200 OK\r");
    }
}
