//! Absolute URLs as the client needs them: a scheme (HTTP(S) for REST, WS(S)
//! for the gateway), a host, a port and a path, parsed strictly enough that
//! nothing in a configured URL can end up as an injected request line.
use std::fmt;

use super::ClientError;
use crate::text::cut_bytes_marked;

/// URL scheme: HTTP(S) for REST, WS(S) for the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
    Ws,
    Wss,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    /// Whether connections for this scheme use TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Scheme::Https | Scheme::Wss)
    }

    fn default_port(self) -> u16 {
        if self.is_tls() {
            443
        } else {
            80
        }
    }
}

/// A parsed absolute URL (no user info, no fragment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// Always starts with `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parse `scheme://host[:port][/path][?query]`. Fragments are dropped.
    pub fn parse(s: &str) -> Result<Url, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("{why}: {}", cut_bytes_marked(s, 200)));
        if s.len() > 8192 {
            return Err(ClientError::Url("URL longer than 8192 bytes".into()));
        }
        if s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("URL contains whitespace or control characters"));
        }
        let (scheme_str, rest) = s
            .split_once("://")
            .ok_or_else(|| bad("URL has no scheme"))?;
        let scheme = match scheme_str.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return Err(bad("unsupported URL scheme")),
        };
        let rest = rest.split('#').next().unwrap_or("");
        let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split_at);
        if authority.contains('@') {
            return Err(bad("URL user info is not supported"));
        }
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (h, p) = after
                .split_once(']')
                .ok_or_else(|| bad("unclosed IPv6 bracket"))?;
            let port = match p {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| bad("junk after IPv6 host"))?,
                ),
            };
            (h, port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("URL has no host"));
        }
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
        };
        let path_and_query = if tail.is_empty() {
            "/".to_string()
        } else if tail.starts_with('?') {
            format!("/{tail}")
        } else {
            tail.to_string()
        };
        Ok(Url {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path_and_query,
        })
    }

    /// `scheme://host[:port]` with the port left out when it is the default.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.host_header())
    }

    /// The value of the `Host` header: host (bracketed if IPv6) plus a
    /// non-default port.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.origin(), self.path_and_query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parses_common_forms() {
        let u = Url::parse("https://discord.com/api/v10").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.host, "discord.com");
        assert_eq!(u.port, 443);
        assert_eq!(u.path_and_query, "/api/v10");
        assert_eq!(u.origin(), "https://discord.com");

        let u = Url::parse("http://127.0.0.1:8080?x=1#frag").unwrap();
        assert_eq!(u.port, 8080);
        assert_eq!(u.path_and_query, "/?x=1");
        assert_eq!(u.origin(), "http://127.0.0.1:8080");

        let u = Url::parse("wss://gateway.discord.gg/?v=10&encoding=json").unwrap();
        assert_eq!(u.scheme, Scheme::Wss);
        assert_eq!(u.port, 443);
        assert_eq!(u.path_and_query, "/?v=10&encoding=json");

        let u = Url::parse("ws://[::1]:9000/gw").unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!(u.host_header(), "[::1]:9000");
    }

    #[test]
    fn url_rejects_bad_input() {
        for bad in [
            "discord.com/api",
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://host:99999/",
            "http://host:0/",
            "http://user@host/",
            "http://host/a b",
            "http://[::1/",
            "http://host/\r\nX: y",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(ClientError::Url(_))),
                "{bad} should be rejected"
            );
        }
    }
}
