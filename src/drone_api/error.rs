//! Why a Drone API call failed, in the four kinds the callers act on: the
//! token refused (401), not found (404, which Drone also answers for "no
//! access", and for a log not stored yet), the server unreachable, anything
//! else. Messages never hold the token.
use std::fmt;

use crate::http::client::ClientError;
use crate::text::{controls_to_spaces, cut_chars_marked};

/// A failed Drone API call. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DroneError {
    /// 401: no token, a wrong or a revoked one (Drone treats them as a guest).
    Unauthorized,
    /// 404: the token's user cannot see the repository (Drone hides it, and
    /// answers 404 for Restart without write access), it does not exist, or
    /// (for a log) Drone has not stored it yet.
    NotFound,
    /// Connect, TLS, timeout or I/O: the server could not be reached.
    Unreachable(String),
    /// Any other answer (status and Drone's message), a redirect (never
    /// followed: the token goes to `DRONE_SERVER` only), or a garbled body.
    Other(String),
}

impl DroneError {
    /// The error for a non-2xx answer, with Drone's `{"message": …}` when it has one.
    pub(super) fn from_status(status: u16, body: &[u8]) -> DroneError {
        match status {
            401 => DroneError::Unauthorized,
            404 => DroneError::NotFound,
            300..=399 => DroneError::Other(format!(
                "Drone answered {status}, a redirect; not followed (the token goes to DRONE_SERVER \
                 only): set DRONE_SERVER to the URL it redirects to"
            )),
            _ => {
                let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                let message = v["message"].as_str().unwrap_or("no message");
                let message = cut_chars_marked(&controls_to_spaces(message), 200);
                DroneError::Other(format!("Drone answered {status}: {message}"))
            }
        }
    }
}

impl From<ClientError> for DroneError {
    fn from(e: ClientError) -> DroneError {
        match e {
            ClientError::Connect(_)
            | ClientError::Tls(_)
            | ClientError::Timeout(_)
            | ClientError::Io(_) => DroneError::Unreachable(e.to_string()),
            ClientError::TooLarge => DroneError::Other("Drone's answer is too large".into()),
            ClientError::Url(_) | ClientError::Protocol(_) => DroneError::Other(e.to_string()),
        }
    }
}

impl fmt::Display for DroneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DroneError::Unauthorized => f.write_str(
                "Drone refused the token (401): set DRONE_TOKEN to a valid token of a Drone user",
            ),
            DroneError::NotFound => f.write_str(
                "Drone answered 404: the token's user has no access to the repository (Drone \
                 answers 404, not 403), or it is not there (yet: a log Drone has not stored)",
            ),
            DroneError::Unreachable(e) => write!(f, "Drone cannot be reached: {e}"),
            DroneError::Other(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for DroneError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_kinds_callers_act_on() {
        assert_eq!(DroneError::from_status(401, b""), DroneError::Unauthorized);
        assert_eq!(DroneError::from_status(404, b"{}"), DroneError::NotFound);
        let e = DroneError::from_status(403, br#"{"message":"Forbidden\nx"}"#);
        assert_eq!(e.to_string(), "Drone answered 403: Forbidden x");
        assert!(DroneError::from_status(302, b"")
            .to_string()
            .contains("not followed"));
        assert!(DroneError::from_status(502, b"<html>")
            .to_string()
            .contains("no message"));
        let e = DroneError::from(ClientError::Timeout("request"));
        assert!(matches!(e, DroneError::Unreachable(_)), "{e:?}");
        let e = DroneError::NotFound.to_string();
        assert!(e.contains("no access") && e.contains("not there"), "{e}");
    }
}
