//! Which webhooks the Drone API serves: only those from `DRONE_SERVER`'s own
//! Drone. A webhook names its server in `system.host` (Drone's
//! `DRONE_SERVER_HOST`, maybe with a port); one from any other server gets
//! no logs and no Restart, so the token is never used for another server's
//! builds.
use crate::drone::System;
use crate::http::client::Url;

/// Whether a webhook from `system` comes from the Drone at `server`: the
/// same host name (case-insensitive) and, when `system.host` names a port,
/// the same port. The scheme is not compared: Drone's `DRONE_SERVER_PROTO`
/// says how browsers reach it, which may differ from how this host does.
pub fn serves(server: &Url, system: Option<&System>) -> bool {
    let Some(host) = system.map(|s| s.host.trim()).filter(|h| !h.is_empty()) else {
        return false;
    };
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) => {
            (n, p.parse::<u16>().ok())
        }
        _ => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case(&server.host) && port.map_or(true, |p| p == server.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(host: &str) -> System {
        System {
            host: host.into(),
            ..System::default()
        }
    }

    #[test]
    fn only_the_configured_server_is_served() {
        let server = Url::parse("https://Drone.Example.com").unwrap();
        assert!(serves(&server, Some(&sys("drone.example.com"))));
        assert!(serves(&server, Some(&sys("DRONE.example.com:443"))));
        assert!(!serves(&server, Some(&sys("drone.example.com:8443"))));
        assert!(!serves(&server, Some(&sys("other.example.com"))));
        assert!(!serves(&server, Some(&sys("drone.example.com.evil"))));
        assert!(!serves(&server, Some(&sys(""))));
        assert!(!serves(&server, None));
        let lan = Url::parse("http://10.0.0.2:8080/").unwrap();
        assert!(serves(&lan, Some(&sys("10.0.0.2:8080"))));
        assert!(serves(&lan, Some(&sys("10.0.0.2"))));
        assert!(!serves(&lan, Some(&sys("10.0.0.2:80"))));
        let v6 = Url::parse("http://[fd00::2]:8080/").unwrap();
        assert!(serves(&v6, Some(&sys("[fd00::2]:8080"))));
    }
}
