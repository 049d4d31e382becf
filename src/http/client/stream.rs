//! A connected byte stream, plain TCP or TLS over TCP, and how one is opened
//! (TCP connect, then a TLS handshake with SNI for `https`/`wss`). REST
//! requests run over it, and the gateway's websocket takes it whole.
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{ClientError, Url};
use crate::text::cut_bytes_marked;

/// A connected byte stream: plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::Plain(_) => f.write_str("Stream::Plain"),
            Stream::Tls(_) => f.write_str("Stream::Tls"),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Stream {
    /// Connects to `url`'s host and port, with TLS when its scheme asks for it.
    pub(super) async fn open(tls: &TlsConnector, url: &Url) -> Result<Stream, ClientError> {
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| ClientError::Connect(format!("{}: {e}", url.origin())))?;
        let _ = tcp.set_nodelay(true);
        if !url.scheme.is_tls() {
            return Ok(Stream::Plain(tcp));
        }
        let name = ServerName::try_from(url.host.clone()).map_err(|_| {
            ClientError::Url(format!(
                "invalid TLS server name: {}",
                cut_bytes_marked(&url.host, 200)
            ))
        })?;
        match tls.connect(name, tcp).await {
            Ok(s) => Ok(Stream::Tls(Box::new(s))),
            Err(e) => {
                let is_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
                if is_tls {
                    Err(ClientError::Tls(format!("{}: {e}", url.origin())))
                } else {
                    Err(ClientError::Connect(format!(
                        "{}: TLS handshake: {e}",
                        url.origin()
                    )))
                }
            }
        }
    }
}
