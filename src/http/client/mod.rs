//! A small HTTP/1.1 client over TCP or tokio-rustls, so that talking to Discord
//! (REST and the gateway's TLS socket) needs no hyper/reqwest stack on the Pi.
//!
//! It does exactly what this project needs and bounds everything it reads:
//! one request at a time per call, a pool of one idle kept-alive connection per
//! origin, bodies by `Content-Length`, chunked or read-to-close (size-limited),
//! 1xx interim responses skipped, timeouts on connect and on the whole request.
//! TLS uses rustls with the ring provider, webpki-roots plus an optional extra
//! PEM bundle (`SSL_CERT_FILE`, or a test CA).
//!
//! [`Client::request`] (one exchange, and the retry on a stale pooled
//! connection) lives here; each part it is made of has its own file: `url`
//! (parsing), `tls` (trust roots), `stream` (TCP or TLS connect), `pool`
//! (idle connections), `request_head` (what is written), `response` (what is
//! read), and `error`. Chunked bodies are decoded by [`crate::http::chunked`],
//! the decoder the server uses too, here in its lenient mode.
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsConnector;

mod error;
mod pool;
mod request_head;
pub(crate) mod response;
mod stream;
mod tls;
mod url;

pub use error::ClientError;
pub use response::{ClientResponse, Streamed};
pub use stream::Stream;
pub use url::{Scheme, Url};

use error::io_err;
use pool::Pool;
use request_head::build_request_head;
use response::{read_response_to, Reader};
use tls::build_tls_config;

/// Client-wide settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Extra PEM bundle of trusted CAs, added to the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// The whole request: connect, send, and receive the full response.
    pub request_timeout: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            extra_ca_file: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

struct Inner {
    opts: ClientOptions,
    tls: TlsConnector,
    pool: Pool,
}

/// The HTTP client. Cheap to clone; clones share the TLS config and pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Build the client and its TLS configuration (reads `extra_ca_file`).
    pub fn new(opts: ClientOptions) -> Result<Client, ClientError> {
        let tls = build_tls_config(opts.extra_ca_file.as_deref())?;
        Ok(Client {
            inner: Arc::new(Inner {
                opts,
                tls: TlsConnector::from(Arc::new(tls)),
                pool: Pool::default(),
            }),
        })
    }

    /// One request; reuses a kept-alive connection to the same origin when it
    /// can, and retries once on a stale pooled connection (only if nothing of
    /// the response was read). `headers` must not include Host/Content-Length.
    pub async fn request(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<ClientResponse, ClientError> {
        self.request_to(method, url, headers, body, None).await
    }

    /// [`Client::request`], with a 2xx body handed to `streamed` piece by
    /// piece instead of kept in the response (whose `body` is then empty).
    pub async fn request_to(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        mut streamed: Option<&mut Streamed<'_>>,
    ) -> Result<ClientResponse, ClientError> {
        let head = build_request_head(method, url, headers, body)?;
        let timeout = self.inner.opts.request_timeout;
        let call = self.request_inner(method, url, &head, body, &mut streamed);
        match tokio::time::timeout(timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("request")),
        }
    }

    async fn request_inner(
        &self,
        method: &str,
        url: &Url,
        head: &[u8],
        body: Option<&[u8]>,
        streamed: &mut Option<&mut Streamed<'_>>,
    ) -> Result<ClientResponse, ClientError> {
        let origin = url.origin();
        let pooled = self.inner.pool.take(&origin);
        if let Some(mut stream) = pooled {
            match self
                .exchange(&mut stream, method, head, body, streamed)
                .await
            {
                Ok((resp, reusable)) => {
                    if reusable {
                        self.inner.pool.put(origin, stream);
                    }
                    return Ok(resp);
                }
                Err((err, any_read)) => {
                    if any_read {
                        return Err(err);
                    }
                    tracing::debug!(origin = %origin, error = %err, "stale pooled connection, reconnecting");
                }
            }
        }
        let mut stream = self.connect(url).await?;
        match self
            .exchange(&mut stream, method, head, body, streamed)
            .await
        {
            Ok((resp, reusable)) => {
                if reusable {
                    self.inner.pool.put(origin, stream);
                }
                Ok(resp)
            }
            Err((err, _)) => Err(err),
        }
    }

    /// Send one request on `stream` and read its response. On error, says
    /// whether any response byte had been read.
    async fn exchange(
        &self,
        stream: &mut Stream,
        method: &str,
        head: &[u8],
        body: Option<&[u8]>,
        streamed: &mut Option<&mut Streamed<'_>>,
    ) -> Result<(ClientResponse, bool), (ClientError, bool)> {
        let write = async {
            stream.write_all(head).await?;
            if let Some(b) = body {
                stream.write_all(b).await?;
            }
            stream.flush().await
        };
        write.await.map_err(|e| (io_err(e), false))?;
        let mut reader = Reader::new(stream);
        let max = self.inner.opts.max_response_bytes;
        let out = read_response_to(&mut reader, method, max, streamed.as_deref_mut()).await;
        let any = reader.any_read();
        out.map_err(|e| (e, any))
    }

    /// A raw connected stream (TCP for http/ws, TLS with SNI for https/wss),
    /// for the websocket gateway. Bounded by the connect timeout.
    pub async fn connect(&self, url: &Url) -> Result<Stream, ClientError> {
        let timeout = self.inner.opts.connect_timeout;
        match tokio::time::timeout(timeout, Stream::open(&self.inner.tls, url)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout("connect")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A loopback server that answers `per_conn` requests per connection
    /// with a tiny 200, then closes; counts accepted connections.
    async fn tiny_server(per_conn: usize) -> (Url, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut served = 0;
                    let mut chunk = [0u8; 1024];
                    while served < per_conn {
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..i + 4);
                            served += 1;
                            let body = format!("n{served}");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if sock.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Close after the quota: the client's pooled connection goes stale.
                });
            }
        });
        (Url::parse(&format!("http://{addr}/x")).unwrap(), conns)
    }

    #[tokio::test]
    async fn reuses_kept_alive_connection() {
        let (url, conns) = tiny_server(100).await;
        let client = Client::new(ClientOptions::default()).unwrap();
        for _ in 0..3 {
            let r = client.request("GET", &url, &[], None).await.unwrap();
            assert_eq!(r.status, 200);
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_once_on_stale_pooled_connection() {
        let (url, conns) = tiny_server(1).await;
        let client = Client::new(ClientOptions::default()).unwrap();
        let first = client.request("GET", &url, &[], None).await.unwrap();
        assert_eq!(first.body, b"n1");
        // Give the server time to close its side.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = client.request("GET", &url, &[], None).await.unwrap();
        assert_eq!(second.body, b"n1");
        assert_eq!(conns.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn connect_refused_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::new(ClientOptions::default()).unwrap();
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let err = client.request("GET", &url, &[], None).await.unwrap_err();
        assert!(matches!(err, ClientError::Connect(_)), "{err:?}");
    }

    #[tokio::test]
    async fn whole_request_times_out_when_server_stalls() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let opts = ClientOptions {
            request_timeout: Duration::from_millis(300),
            ..ClientOptions::default()
        };
        let client = Client::new(opts).unwrap();
        let url = Url::parse(&format!("http://{addr}/")).unwrap();
        let err = client.request("GET", &url, &[], None).await.unwrap_err();
        assert_eq!(err, ClientError::Timeout("request"));
    }
}
