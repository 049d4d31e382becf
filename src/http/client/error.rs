//! Why a client request failed, in a form that is safe to log: messages
//! never contain request headers, which carry the bot token.
use std::fmt;
use std::io;

/// Why a request failed. Messages never contain request headers (tokens).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientError {
    Url(String),
    Connect(String),
    Tls(String),
    /// Which phase timed out: `"connect"` or `"request"`.
    Timeout(&'static str),
    Io(String),
    Protocol(String),
    TooLarge,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url(m) => write!(f, "bad URL: {m}"),
            ClientError::Connect(m) => write!(f, "connect failed: {m}"),
            ClientError::Tls(m) => write!(f, "TLS error: {m}"),
            ClientError::Timeout(phase) => write!(f, "{phase} timed out"),
            ClientError::Io(m) => write!(f, "I/O error: {m}"),
            ClientError::Protocol(m) => write!(f, "HTTP protocol error: {m}"),
            ClientError::TooLarge => write!(f, "response too large"),
        }
    }
}

impl std::error::Error for ClientError {}

pub(super) fn io_err(e: io::Error) -> ClientError {
    ClientError::Io(e.to_string())
}
