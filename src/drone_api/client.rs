//! The Drone API client: the three calls this service makes (who the token
//! is, a step's log, restart a build) over the project's own HTTP client,
//! with TLS as the Discord REST client has it (`SSL_CERT_FILE` added to the
//! webpki roots).
//!
//! The token goes to `DRONE_SERVER` only: every URL is built from that base,
//! and the HTTP client follows no redirect (a 3xx is an error here). Every
//! call has a timeout and a body cap; a log is streamed into a
//! [`LogReader`] that keeps only its tail, so a huge log costs at most the
//! caller's `cap` plus one line.
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::log_reader::{LogReader, StepLog};
use super::{DroneError, DroneUser};
use crate::config::Secret;
use crate::drone::System;
use crate::http::client::{Client, ClientError, ClientOptions, ClientResponse, Streamed, Url};

/// Timeouts and caps; [`Default`] is production's, tests shorten them.
#[derive(Clone, Debug)]
pub struct DroneTuning {
    pub connect_timeout: Duration,
    /// `GET /api/user` and the restart.
    pub call_timeout: Duration,
    /// A whole log, however long.
    pub log_timeout: Duration,
    /// Largest log body read off the wire (only its tail is kept).
    pub max_log_wire_bytes: u64,
}

impl Default for DroneTuning {
    fn default() -> Self {
        DroneTuning {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(20),
            log_timeout: Duration::from_secs(120),
            max_log_wire_bytes: 256 << 20,
        }
    }
}

/// Largest answer kept whole (the user, the new build, an error).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A build Drone started for a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBuild {
    pub number: i64,
    pub status: String,
}

/// The client. Cheap to clone; `Debug` shows the server, never the token.
#[derive(Clone)]
pub struct DroneApi {
    client: Client,
    server: Url,
    authorization: String,
    tuning: DroneTuning,
}

impl fmt::Debug for DroneApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DroneApi")
            .field("server", &self.server.to_string())
            .finish_non_exhaustive()
    }
}

impl DroneApi {
    /// The client for `server` (a checked `DRONE_SERVER`) with `token`.
    pub fn new(
        server: &str,
        token: &Secret,
        extra_ca_file: Option<PathBuf>,
        tuning: DroneTuning,
    ) -> Result<DroneApi, DroneError> {
        let mut server = Url::parse(server)?;
        server
            .path_and_query
            .truncate(server.path_and_query.trim_end_matches('/').len());
        let client = Client::new(ClientOptions {
            extra_ca_file,
            connect_timeout: tuning.connect_timeout,
            request_timeout: tuning.log_timeout,
            max_response_bytes: MAX_ANSWER_BYTES,
        })?;
        Ok(DroneApi {
            client,
            server,
            authorization: format!("Bearer {}", token.expose()),
            tuning,
        })
    }

    /// `DRONE_SERVER`, as parsed.
    pub fn server(&self) -> &Url {
        &self.server
    }

    /// Whether a webhook from `system` is this server's (see [`super::serves`]).
    pub fn serves(&self, system: Option<&System>) -> bool {
        super::serves(&self.server, system)
    }

    /// `GET /api/user`: whom the token belongs to.
    pub async fn user(&self) -> Result<DroneUser, DroneError> {
        let resp = self.call("GET", &["user"], None).await?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        DroneUser::from_json(&v).ok_or_else(|| garbled("the user"))
    }

    /// `GET /api/repos/{namespace}/{name}/builds/{build}/logs/{stage}/{step}`:
    /// the step's log, at most `cap` bytes of its end. An empty log (Drone
    /// may not have stored it yet) is `Ok` with no lines.
    pub async fn step_log(
        &self,
        namespace: &str,
        name: &str,
        build: i64,
        stage: i64,
        step: i64,
        cap: usize,
    ) -> Result<StepLog, DroneError> {
        let (b, st, sp) = (build.to_string(), stage.to_string(), step.to_string());
        let path = ["repos", namespace, name, "builds", &b, "logs", &st, &sp];
        let mut reader = LogReader::new(cap);
        let mut problem = None;
        let mut sink = |piece: &[u8]| {
            reader.feed(piece).map_err(|e| {
                problem = Some(e);
                ClientError::Protocol(String::new())
            })
        };
        let streamed = Streamed {
            max_bytes: self.tuning.max_log_wire_bytes,
            sink: &mut sink,
        };
        let result = self.call("GET", &path, Some(streamed)).await;
        if let Some(e) = problem {
            return Err(DroneError::Other(e));
        }
        result?;
        reader.finish().map_err(DroneError::Other)
    }

    /// `POST /api/repos/{namespace}/{name}/builds/{build}`: restart the build
    /// (needs write access; Drone answers 404 without it). Each call starts a
    /// new build: callers make sure it is called once.
    pub async fn restart(
        &self,
        namespace: &str,
        name: &str,
        build: i64,
    ) -> Result<NewBuild, DroneError> {
        let b = build.to_string();
        let resp = self
            .call("POST", &["repos", namespace, name, "builds", &b], None)
            .await?;
        let v: Value = serde_json::from_slice(&resp.body).unwrap_or_default();
        match v["number"].as_i64() {
            Some(number) => Ok(NewBuild {
                number,
                status: v["status"].as_str().unwrap_or_default().to_string(),
            }),
            None => Err(garbled("the restarted build")),
        }
    }

    /// One call to `DRONE_SERVER/api/{segments}`; a non-2xx answer is an error.
    async fn call(
        &self,
        method: &str,
        segments: &[&str],
        streamed: Option<Streamed<'_>>,
    ) -> Result<ClientResponse, DroneError> {
        let url = self.url(segments)?;
        let headers = [
            ("Authorization", self.authorization.as_str()),
            ("Accept", "application/json"),
            (
                "User-Agent",
                concat!("drone-discord/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        let body = (method == "POST").then_some(&[][..]);
        let resp = match streamed {
            Some(mut s) => {
                self.client
                    .request_to(method, &url, &headers, body, Some(&mut s))
                    .await
            }
            None => {
                let call = self.client.request(method, &url, &headers, body);
                tokio::time::timeout(self.tuning.call_timeout, call)
                    .await
                    .unwrap_or(Err(ClientError::Timeout("request")))
            }
        }?;
        if !(200..300).contains(&resp.status) {
            return Err(DroneError::from_status(resp.status, &resp.body));
        }
        Ok(resp)
    }

    /// `DRONE_SERVER` + `/api/` + the segments, each percent-encoded (a
    /// repository name from a webhook cannot add a segment or a query).
    fn url(&self, segments: &[&str]) -> Result<Url, DroneError> {
        let mut url = self.server.clone();
        url.path_and_query.push_str("/api");
        for seg in segments {
            if seg.is_empty() || *seg == "." || *seg == ".." {
                return Err(DroneError::Other(format!(
                    "not a usable path segment: {seg:?}"
                )));
            }
            url.path_and_query.push('/');
            for b in seg.bytes() {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    url.path_and_query.push(b as char);
                } else {
                    url.path_and_query.push_str(&format!("%{b:02X}"));
                }
            }
        }
        Ok(url)
    }
}

fn garbled(what: &str) -> DroneError {
    DroneError::Other(format!("garbled answer from Drone: not {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_under_the_server_and_debug_hides_the_token() {
        let token = Secret::new("s3cr3t-token");
        let api = DroneApi::new(
            "https://drone.example.com/ci/",
            &token,
            None,
            DroneTuning::default(),
        )
        .unwrap();
        let url = api
            .url(&["repos", "Diesel-Net", "a b/../?x#", "builds", "7"])
            .unwrap();
        assert_eq!(url.host, "drone.example.com");
        assert_eq!(
            url.path_and_query,
            "/ci/api/repos/Diesel-Net/a%20b%2F..%2F%3Fx%23/builds/7"
        );
        assert!(api.url(&["repos", "..", "x"]).is_err());
        assert!(api.url(&["repos", "", "x"]).is_err());
        assert!(!format!("{api:?}").contains("s3cr3t"));
    }
}
