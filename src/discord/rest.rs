//! The Discord REST client: the handful of calls this bot makes (create and
//! edit a message, check the token, the channel and the gateway URL), with
//! Discord's rate limits applied before every call and its answers mapped to
//! errors the relay can act on (retry later, stop, or drop the event).
//!
//! The token lives only in the `Authorization` header; it is never logged,
//! never put into an error, and `Debug` redacts it.
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ratelimit::{Denied, Limited, RateLimitConfig, RateLimitGate, Route, EDIT_LIMIT_CODE};
use super::snowflake::is_snowflake;
use super::upload::{self, Attachment};
use crate::http::client::{Client, ClientError, ClientOptions, Url};
use crate::metrics::{self, LimitScope, RouteKind};

/// Longest Discord error message kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// What the REST client needs to know.
#[derive(Clone)]
pub struct RestConfig {
    /// e.g. `https://discord.com/api/v10`; `http://` is allowed (tests, local fakes).
    pub base_url: String,
    /// The bare bot token. A token pasted as `Bot <token>` is stripped once
    /// by the configuration ([`crate::config::discord_config`]); this client
    /// does not strip it again and refuses any whitespace.
    pub token: String,
    /// Extra trusted CAs (PEM), e.g. from `SSL_CERT_FILE`.
    pub extra_ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConfig")
            .field("base_url", &self.base_url)
            .field("token", &"<redacted>")
            .field("extra_ca_file", &self.extra_ca_file)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Knobs with sensible defaults; tests shorten them.
#[derive(Clone, Debug)]
pub struct RestTuning {
    /// After a 401, calls return [`RestError::Suspended`] for this long.
    pub unauthorized_cooldown: Duration,
    /// How many times one call is retried after a 429 before giving up.
    pub max_429_retries: u32,
    /// Rate-limit waits up to this long are slept through inside a call;
    /// longer ones come back as [`RestError::Transient`] with `retry_after`.
    pub max_rate_limit_wait: Duration,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
    /// The most a message's files may hold, summed ([`upload::encode`]).
    pub max_upload_bytes: usize,
    pub rate_limits: RateLimitConfig,
    /// The whole of one webhook execution (no nonce there: a lost answer
    /// can leave one duplicate, so the window stays short).
    pub webhook_execute_timeout: Duration,
}

impl Default for RestTuning {
    fn default() -> Self {
        RestTuning {
            unauthorized_cooldown: Duration::from_secs(600),
            max_429_retries: 3,
            max_rate_limit_wait: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
            max_upload_bytes: upload::DEFAULT_UPLOAD_CAP,
            rate_limits: RateLimitConfig::default(),
            webhook_execute_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a call did not succeed, sorted by what the caller should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestError {
    /// Network trouble, timeout, 5xx, or still rate limited: try again later.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// 401/403: the token or permissions are wrong — stop calling.
    Unauthorized { status: u16, message: String },
    /// 404 (e.g. code 10008 unknown message, 10003 unknown channel).
    NotFound { code: Option<u64>, message: String },
    /// Any other 4xx (status 0: refused locally, e.g. a malformed id): do not retry as is.
    Rejected {
        status: u16,
        code: Option<u64>,
        message: String,
    },
    /// The client refuses to call (invalid-request budget spent, or a recent 401).
    Suspended { reason: String },
    /// A 2xx whose body is not the message Discord sends (a proxy's HTML
    /// page, JSON without an `id`): the call may well have taken effect, so
    /// a create must not simply be repeated (the relay looks the message up).
    Malformed { reason: String },
}

impl RestError {
    /// The server's or limiter's hint for when to try again, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RestError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestError::Transient {
                reason,
                retry_after: Some(d),
            } => {
                write!(
                    f,
                    "temporary failure: {reason} (retry after {:.1}s)",
                    d.as_secs_f64()
                )
            }
            RestError::Transient {
                reason,
                retry_after: None,
            } => write!(f, "temporary failure: {reason}"),
            RestError::Unauthorized { status, message } => {
                write!(f, "unauthorized ({status}): {message}")
            }
            RestError::NotFound { code, message } => match code {
                Some(c) => write!(f, "not found (code {c}): {message}"),
                None => write!(f, "not found: {message}"),
            },
            RestError::Rejected {
                status,
                code,
                message,
            } => match code {
                Some(c) => write!(f, "rejected ({status}, code {c}): {message}"),
                None => write!(f, "rejected ({status}): {message}"),
            },
            RestError::Suspended { reason } => write!(f, "calls suspended: {reason}"),
            RestError::Malformed { reason } => write!(f, "malformed answer: {reason}"),
        }
    }
}

impl std::error::Error for RestError {}

/// `GET /gateway/bot`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct GatewayBot {
    pub url: String,
    #[serde(default)]
    pub shards: u32,
    pub session_start_limit: SessionStartLimit,
}

/// Identify budget from `GET /gateway/bot`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SessionStartLimit {
    pub total: u64,
    pub remaining: u64,
    /// Milliseconds until `remaining` resets.
    pub reset_after: u64,
    #[serde(default = "one")]
    pub max_concurrency: u64,
}

fn one() -> u64 {
    1
}

struct Inner {
    client: Client,
    base: Url,
    /// `Bot <token>`: the only place the token lives. None: a webhook-only
    /// setup, whose bot calls answer [`no_token`].
    authorization: Option<String>,
    user_agent: String,
    rate_limits: RateLimitGate,
    tuning: RestTuning,
    /// Set by a 401: no calls until then.
    suspended_until: Mutex<Option<Instant>>,
    /// The bot user's id, once `GET /users/@me` told it.
    user_id: Mutex<Option<String>>,
}

/// The Discord REST client. Cheap to clone (shared state inside).
#[derive(Clone)]
pub struct Rest {
    inner: Arc<Inner>,
}

impl fmt::Debug for Rest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rest")
            .field("base", &self.inner.base.to_string())
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// What a bot call answers on a client built [`Rest::without_token`].
fn no_token() -> RestError {
    config_error("no bot token is configured (DISCORD_TOKEN): only webhook routes can post".into())
}

pub(super) fn config_error(message: String) -> RestError {
    RestError::Rejected {
        status: 0,
        code: None,
        message,
    }
}

impl Rest {
    /// Build the client with default tuning.
    pub fn new(cfg: RestConfig) -> Result<Rest, RestError> {
        Self::with_tuning(cfg, RestTuning::default())
    }

    /// Build the client with explicit tuning (tests, or a cautious deployment).
    pub fn with_tuning(cfg: RestConfig, tuning: RestTuning) -> Result<Rest, RestError> {
        let token = cfg.token.as_str();
        if token.is_empty() || token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(config_error(
                "the Discord token is empty or contains whitespace/control characters".into(),
            ));
        }
        Self::build(&cfg, tuning, Some(format!("Bot {token}")))
    }

    /// A client without a bot token, for a setup with only webhook routes
    /// (`cfg.token` is ignored): webhook calls work, bot calls answer a
    /// [`RestError::Rejected`] saying there is no token.
    pub fn without_token(cfg: RestConfig, tuning: RestTuning) -> Result<Rest, RestError> {
        Self::build(&cfg, tuning, None)
    }

    fn build(
        cfg: &RestConfig,
        tuning: RestTuning,
        authorization: Option<String>,
    ) -> Result<Rest, RestError> {
        let base = Url::parse(cfg.base_url.trim_end_matches('/'))
            .map_err(|e| config_error(format!("DISCORD_API_BASE_URL: {e}")))?;
        if base.path_and_query.contains('?') {
            return Err(config_error(
                "DISCORD_API_BASE_URL must not have a query".into(),
            ));
        }
        let client = Client::new(ClientOptions {
            extra_ca_file: cfg.extra_ca_file.clone(),
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            max_response_bytes: tuning.max_response_bytes,
        })
        .map_err(|e| config_error(e.to_string()))?;
        Ok(Rest {
            inner: Arc::new(Inner {
                client,
                base,
                authorization,
                user_agent: format!(
                    "DiscordBot (https://github.com/drone-discord/drone-discord, {})",
                    env!("CARGO_PKG_VERSION")
                ),
                rate_limits: RateLimitGate::new(
                    tuning.rate_limits.clone(),
                    tuning.max_rate_limit_wait,
                ),
                tuning,
                suspended_until: Mutex::new(None),
                user_id: Mutex::new(None),
            }),
        })
    }

    /// Whether calls are refused because of a recent 401 (tests only).
    #[cfg(test)]
    fn is_suspended(&self) -> bool {
        self.check_suspended().is_err()
    }

    /// Lift a 401 suspension early (tests only: nothing in the service does;
    /// the suspension ends after `unauthorized_cooldown`).
    #[cfg(test)]
    fn resume(&self) {
        *crate::sync::lock(&self.inner.suspended_until) = None;
    }

    /// The underlying HTTP client (the gateway reuses its TLS config).
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// `POST /channels/{id}/messages`; returns the new message's id.
    pub async fn create_message(
        &self,
        channel_id: &str,
        body: &serde_json::Value,
    ) -> Result<String, RestError> {
        self.create_message_checked(channel_id, body)
            .await
            .map(|c| c.id)
    }

    /// [`Rest::create_message`], also telling whether the message Discord
    /// answered with shows `body` (see [`Created`]).
    pub async fn create_message_checked(
        &self,
        channel_id: &str,
        body: &serde_json::Value,
    ) -> Result<Created, RestError> {
        check_id("channel id", channel_id)?;
        let route = Route::new("POST", "/channels/{id}/messages", channel_id);
        let path = format!("/channels/{channel_id}/messages");
        let bytes = self.call("POST", &route, &path, Some(body)).await?;
        let (answer, id) = message_of(&route, &bytes)?;
        metrics::global().message_created();
        Ok(Created {
            id,
            shows_body: answer_shows(&answer, body),
        })
    }

    /// [`Rest::create_message`] with files attached: one `multipart/form-data`
    /// request ([`upload::encode`]) on the same route, limiter and error
    /// mapping. Too many or too big files are refused without calling.
    pub async fn create_message_with_files(
        &self,
        channel_id: &str,
        body: &serde_json::Value,
        files: &[Attachment],
    ) -> Result<String, RestError> {
        check_id("channel id", channel_id)?;
        let (ctype, form) = upload::encode(body, files, self.inner.tuning.max_upload_bytes)
            .map_err(config_error)?;
        let route = Route::new("POST", "/channels/{id}/messages", channel_id);
        let path = format!("/channels/{channel_id}/messages");
        let bytes = self
            .send("POST", &route, &path, Some((&form, &ctype)))
            .await?;
        let (_, id) = message_of(&route, &bytes)?;
        metrics::global().message_created();
        Ok(id)
    }

    /// `PATCH /channels/{id}/messages/{id}`; returns the message id.
    pub async fn edit_message(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &serde_json::Value,
    ) -> Result<String, RestError> {
        check_id("channel id", channel_id)?;
        check_id("message id", message_id)?;
        let route = Route::new("PATCH", "/channels/{id}/messages/{id}", channel_id);
        let path = format!("/channels/{channel_id}/messages/{message_id}");
        let bytes = self.call("PATCH", &route, &path, Some(body)).await?;
        let (_, id) = message_of(&route, &bytes)?;
        metrics::global().message_edited();
        Ok(id)
    }

    /// `GET /channels/{id}/messages?limit=n`: the channel's newest messages,
    /// newest first, `limit` clamped to Discord's 1–100. The body is bounded
    /// like every answer (`max_response_bytes`). Without
    /// READ_MESSAGE_HISTORY Discord answers an empty list, not an error.
    pub async fn recent_messages(
        &self,
        channel_id: &str,
        limit: u8,
    ) -> Result<Vec<serde_json::Value>, RestError> {
        check_id("channel id", channel_id)?;
        let limit = limit.clamp(1, 100);
        let route = Route::new("GET", "/channels/{id}/messages", channel_id);
        let path = format!("/channels/{channel_id}/messages?limit={limit}");
        match self.call_json("GET", &route, &path, None).await? {
            serde_json::Value::Array(list) => Ok(list),
            _ => Err(RestError::Transient {
                reason: format!(
                    "{} answered 2xx with something other than a list",
                    route.key
                ),
                retry_after: None,
            }),
        }
    }

    /// The bot user's id (`GET /users/@me`, asked once and remembered): the
    /// `author.id` of every message this bot posts.
    pub async fn own_user_id(&self) -> Result<String, RestError> {
        if let Some(id) = crate::sync::lock(&self.inner.user_id).clone() {
            return Ok(id);
        }
        let me = self.current_user().await?;
        let id = match me.get("id") {
            Some(serde_json::Value::String(id)) if is_snowflake(id) => id.clone(),
            _ => {
                return Err(RestError::Transient {
                    reason: "GET /users/@me answered without a user id".into(),
                    retry_after: None,
                })
            }
        };
        *crate::sync::lock(&self.inner.user_id) = Some(id.clone());
        Ok(id)
    }

    /// `POST /interactions/{id}/{token}/callback`: the first answer to a
    /// click, due within 3 s. The interaction token is a secret like a
    /// webhook's: it is in the path only, never in a log or an error.
    pub async fn interaction_callback(
        &self,
        interaction_id: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<(), RestError> {
        check_id("interaction id", interaction_id)?;
        check_interaction_token(token)?;
        let route = Route::new(
            "POST",
            "/interactions/{id}/{token}/callback",
            interaction_id,
        );
        let url = self.api_url(&format!("/interactions/{interaction_id}/{token}/callback"));
        // Not a bot call: the token in the path authorizes it, and a 401 here
        // must not suspend the bot's other calls.
        self.call_at("POST", &route, &url, false, Some(body), false)
            .await
            .map(drop)
    }

    /// `PATCH /webhooks/{application id}/{token}/messages/@original`: the
    /// answer that replaces a deferred one (within the token's 15 minutes).
    pub async fn edit_original_response(
        &self,
        application_id: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<(), RestError> {
        check_id("application id", application_id)?;
        check_interaction_token(token)?;
        let route = Route::new(
            "PATCH",
            "/webhooks/{id}/{token}/messages/@original",
            application_id,
        );
        let url = self.api_url(&format!(
            "/webhooks/{application_id}/{token}/messages/@original"
        ));
        self.call_at("PATCH", &route, &url, false, Some(body), false)
            .await
            .map(drop)
    }

    /// `GET /users/@me`: proves the token works.
    pub async fn current_user(&self) -> Result<serde_json::Value, RestError> {
        let route = Route::new("GET", "/users/@me", "");
        self.call_json("GET", &route, "/users/@me", None).await
    }

    /// `GET /channels/{id}`: proves the bot can see the channel.
    pub async fn channel(&self, channel_id: &str) -> Result<serde_json::Value, RestError> {
        check_id("channel id", channel_id)?;
        let route = Route::new("GET", "/channels/{id}", channel_id);
        self.call_json("GET", &route, &format!("/channels/{channel_id}"), None)
            .await
    }

    /// `GET /gateway/bot`: the gateway URL and the identify budget.
    pub async fn gateway_bot(&self) -> Result<GatewayBot, RestError> {
        let route = Route::new("GET", "/gateway/bot", "");
        let v = self.call_json("GET", &route, "/gateway/bot", None).await?;
        serde_json::from_value(v).map_err(|e| RestError::Transient {
            reason: format!("unexpected /gateway/bot response: {e}"),
            retry_after: None,
        })
    }

    async fn call_json(
        &self,
        method: &str,
        route: &Route,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, RestError> {
        let bytes = self.call(method, route, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|_| RestError::Transient {
            reason: format!("{} answered 2xx with a body that is not JSON", route.key),
            retry_after: None,
        })
    }

    fn check_suspended(&self) -> Result<(), RestError> {
        let mut guard = crate::sync::lock(&self.inner.suspended_until);
        match *guard {
            Some(until) if until > Instant::now() => Err(RestError::Suspended {
                reason: format!(
                    "Discord rejected the token (401); next try allowed in {}s",
                    until.saturating_duration_since(Instant::now()).as_secs()
                ),
            }),
            Some(_) => {
                *guard = None;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// One bot call to `path` under the API base: see [`Rest::call_at`].
    pub(super) async fn call(
        &self,
        method: &str,
        route: &Route,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Vec<u8>, RestError> {
        let url = self.api_url(path);
        self.call_at(method, route, &url, true, body, false).await
    }

    /// `path` under the API base.
    fn api_url(&self, path: &str) -> Url {
        let base = &self.inner.base;
        Url {
            path_and_query: format!("{}{path}", base.path_and_query.trim_end_matches('/')),
            ..base.clone()
        }
    }

    /// One logical call with a JSON body (or none): see [`Rest::send_at`].
    pub(super) async fn call_at(
        &self,
        method: &str,
        route: &Route,
        url: &Url,
        bot: bool,
        body: Option<&serde_json::Value>,
        short: bool,
    ) -> Result<Vec<u8>, RestError> {
        let payload = match body {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| config_error(format!("body: {e}")))?),
            None => None,
        };
        let typed = payload.as_deref().map(|p| (p, "application/json"));
        self.send_at(method, route, url, bot, typed, short).await
    }

    /// A bot call to `path` with a body already encoded, and its `Content-Type`.
    async fn send(
        &self,
        method: &str,
        route: &Route,
        path: &str,
        payload: Option<(&[u8], &str)>,
    ) -> Result<Vec<u8>, RestError> {
        let url = self.api_url(path);
        self.send_at(method, route, &url, true, payload, false)
            .await
    }

    /// One logical call: rate limits first, then the request, retrying on 429
    /// a bounded number of times. Returns the 2xx body. A `bot` call carries
    /// the `Authorization` header and honours (and starts) the 401
    /// suspension; a webhook or interaction call (`bot` false: its token is
    /// in `url`, which therefore never reaches a log line or an error) does
    /// neither. `short` bounds each attempt by `webhook_execute_timeout` as well.
    async fn send_at(
        &self,
        method: &str,
        route: &Route,
        url: &Url,
        bot: bool,
        payload: Option<(&[u8], &str)>,
        short: bool,
    ) -> Result<Vec<u8>, RestError> {
        let inner = &self.inner;
        let mut headers: Vec<(&str, &str)> = vec![
            ("User-Agent", inner.user_agent.as_str()),
            ("Accept", "application/json"),
        ];
        if bot {
            let auth = inner.authorization.as_deref().ok_or_else(no_token)?;
            headers.push(("Authorization", auth));
        }
        if let Some((_, ctype)) = payload {
            headers.push(("Content-Type", ctype));
        }
        let check_suspended = || if bot { self.check_suspended() } else { Ok(()) };
        let mut attempt = 0;
        loop {
            check_suspended()?;
            let permit = match inner.rate_limits.acquire(route).await {
                Ok(p) => p,
                Err(Denied::Wait(d)) => {
                    return Err(RestError::Transient {
                        reason: "rate limited".into(),
                        retry_after: Some(d),
                    });
                }
                Err(Denied::InvalidRequestBudget { retry_after }) => {
                    tracing::error!(
                        retry_after_s = retry_after.as_secs(),
                        "invalid-request budget spent; not calling Discord"
                    );
                    return Err(RestError::Suspended {
                        reason: format!(
                            "too many invalid requests (401/403/429) in 10 minutes; calls resume in {}s",
                            retry_after.as_secs()
                        ),
                    });
                }
            };
            // A 401 may have come back while this call waited for its lane:
            // then it must not go out either.
            if let Err(e) = check_suspended() {
                drop(permit);
                return Err(e);
            }
            let request = inner
                .client
                .request(method, url, &headers, payload.map(|p| p.0));
            // Duration::MAX: tokio's timeout then never fires.
            let limit = match short {
                true => inner.tuning.webhook_execute_timeout,
                false => Duration::MAX,
            };
            let resp = tokio::time::timeout(limit, request)
                .await
                .unwrap_or(Err(ClientError::Timeout("request")));
            let resp = match resp {
                Ok(r) => r,
                Err(e) => {
                    drop(permit);
                    metrics::global().rest_call(route_kind(route), None);
                    tracing::warn!(route = %route.key, error = %e, "Discord request failed");
                    return Err(RestError::Transient {
                        reason: e.to_string(),
                        retry_after: None,
                    });
                }
            };
            let limited = inner
                .rate_limits
                .update(route, &resp.headers, resp.status, &resp.body);
            drop(permit);
            metrics::global().rest_call(route_kind(route), Some(resp.status));
            tracing::debug!(method, route = %route.key, status = resp.status, "Discord call");
            let status = resp.status;
            if (200..300).contains(&status) {
                return Ok(resp.body);
            }
            let (code, message) = discord_error(&resp.body);
            match status {
                429 => {
                    metrics::global()
                        .rate_limited(limit_scope(resp.header("x-ratelimit-scope"), limited));
                    let retry_after = limited.map(|l| l.retry_after);
                    let cloudflare = limited.is_some_and(|l| l.cloudflare);
                    // 30046 is about this one message: it comes back to the
                    // caller at once as a retry of this message after
                    // `retry_after` (the limiter paused nothing for it).
                    let edit_limit = code == Some(EDIT_LIMIT_CODE);
                    if edit_limit || cloudflare || attempt >= inner.tuning.max_429_retries {
                        tracing::warn!(route = %route.key, code, cloudflare, attempt, "rate limited by Discord");
                        let reason = if edit_limit {
                            format!("edit limit for old messages (30046): {message}")
                        } else if cloudflare {
                            "rate limited by Cloudflare (429 that is not JSON or has no Via header)"
                                .to_string()
                        } else {
                            format!("still rate limited after {attempt} retries: {message}")
                        };
                        return Err(RestError::Transient {
                            reason,
                            retry_after,
                        });
                    }
                    attempt += 1;
                    tracing::info!(route = %route.key, attempt, retry_after_ms = retry_after.map(|d| d.as_millis() as u64), "429, retrying");
                }
                401 if !bot => return Err(RestError::Unauthorized { status, message }),
                401 => {
                    let until = Instant::now() + inner.tuning.unauthorized_cooldown;
                    *crate::sync::lock(&inner.suspended_until) = Some(until);
                    tracing::error!(route = %route.key, "Discord answered 401: token rejected; suspending calls");
                    return Err(RestError::Unauthorized { status, message });
                }
                403 => {
                    tracing::error!(route = %route.key, code, "Discord answered 403: missing access or permissions");
                    return Err(RestError::Unauthorized { status, message });
                }
                404 => return Err(RestError::NotFound { code, message }),
                500..=599 => {
                    let retry_after = resp
                        .header("retry-after")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(3600)));
                    return Err(RestError::Transient {
                        reason: format!("Discord answered {status}"),
                        retry_after,
                    });
                }
                _ => {
                    return Err(RestError::Rejected {
                        status,
                        code,
                        message,
                    })
                }
            }
        }
    }
}

/// What kind of call `route` is, for the metrics: the message writes by
/// their templates, everything else (the checks, `GET /gateway/bot`) `other`.
fn route_kind(route: &Route) -> RouteKind {
    match route.key.as_str() {
        "POST /channels/{id}/messages" => RouteKind::Create,
        "PATCH /channels/{id}/messages/{id}" => RouteKind::Edit,
        "POST /webhooks/{id}/{token}" => RouteKind::Create,
        "PATCH /webhooks/{id}/{token}/messages/{id}" => RouteKind::Edit,
        _ => RouteKind::Other,
    }
}

/// Whose limit a 429 was about: Cloudflare's when the limiter judged it so,
/// else Discord's `X-RateLimit-Scope`, else global or per-user by what the
/// limiter paused.
fn limit_scope(scope_header: Option<&str>, limited: Option<Limited>) -> LimitScope {
    match (scope_header.map(str::trim), limited) {
        (_, Some(l)) if l.cloudflare => LimitScope::Cloudflare,
        (Some(s), _) if s.eq_ignore_ascii_case("shared") => LimitScope::Shared,
        (Some(s), _) if s.eq_ignore_ascii_case("global") => LimitScope::Global,
        (Some(s), _) if s.eq_ignore_ascii_case("user") => LimitScope::User,
        (_, Some(l)) if l.global => LimitScope::Global,
        _ => LimitScope::User,
    }
}

/// Only a Discord id ([`is_snowflake`]) may reach a path; anything else is
/// refused without calling.
pub(super) fn check_id(what: &str, id: &str) -> Result<(), RestError> {
    if !is_snowflake(id) {
        return Err(config_error(format!("{what} is not a Discord snowflake")));
    }
    Ok(())
}

/// An interaction token may reach a path only if it cannot change the path.
fn check_interaction_token(token: &str) -> Result<(), RestError> {
    let plain = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if token.is_empty() || token.len() > 1000 || !plain {
        return Err(config_error("malformed interaction token".into()));
    }
    Ok(())
}

/// What a create returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    /// Whether the message shows the text that was sent. It does not when
    /// Discord matched the create's nonce (`enforce_nonce`) to an earlier
    /// attempt, one whose answer was lost or whose process died, and
    /// answered with that attempt's message, unchanged: it shows the state
    /// that attempt sent, not this one's.
    pub shows_body: bool,
}

/// Whether a create's answer shows the `content` and the embeds' titles and
/// descriptions that were sent (the text a newer state changes). Anything
/// Discord might normalise is left out; a false "no" costs one edit.
fn answer_shows(answer: &serde_json::Value, sent: &serde_json::Value) -> bool {
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if sent.get("content").is_some() && text(answer, "content") != text(sent, "content") {
        return false;
    }
    let Some(want) = sent.get("embeds").and_then(serde_json::Value::as_array) else {
        return true;
    };
    let have = answer
        .get("embeds")
        .and_then(serde_json::Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    have.len() == want.len()
        && want.iter().zip(have).all(|(w, h)| {
            ["title", "description"]
                .iter()
                .all(|k| w.get(*k).is_none() || text(w, k) == text(h, k))
        })
}

pub(super) fn message_id(v: &serde_json::Value) -> Result<String, RestError> {
    match v.get("id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 32 => Ok(s.clone()),
        Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
        _ => Err(RestError::Transient {
            reason: "Discord returned a message without an id".into(),
            retry_after: None,
        }),
    }
}

/// The message id in a create's or edit's 2xx body; a body that is not
/// JSON (a proxy's page) or has no id is [`RestError::Malformed`].
pub(super) fn message_of(
    route: &Route,
    body: &[u8],
) -> Result<(serde_json::Value, String), RestError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| RestError::Malformed {
        reason: format!("{} answered 2xx with a body that is not JSON", route.key),
    })?;
    let id = message_id(&v).map_err(|e| RestError::Malformed {
        reason: format!("{}: {e}", route.key),
    })?;
    Ok((v, id))
}

/// Discord's error JSON (`code`, `message`, optional `errors`), truncated;
/// a non-JSON body becomes a short printable excerpt.
fn discord_error(body: &[u8]) -> (Option<u64>, String) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v.is_object() => {
            let code = v.get("code").and_then(|c| c.as_u64());
            let mut message = v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("")
                .to_string();
            if let Some(errors) = v.get("errors") {
                message.push(' ');
                message.push_str(&errors.to_string());
            }
            (code, clean(&message))
        }
        _ => (None, clean(&String::from_utf8_lossy(body))),
    }
}

fn clean(s: &str) -> String {
    crate::text::controls_to_spaces(&crate::text::cut_chars_marked(s.trim(), MAX_MESSAGE_CHARS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_create_answered_with_an_earlier_message_is_told_apart() {
        let sent = serde_json::json!({"content": "", "embeds": [{"title": "#7", "description": "update 3"}], "nonce": "n"});
        let same = serde_json::json!({"id": "1", "content": "", "embeds": [{"type": "rich", "title": "#7", "description": "update 3", "color": 5}]});
        assert!(answer_shows(&same, &sent));
        let earlier = serde_json::json!({"id": "1", "content": "", "embeds": [{"title": "#7", "description": "update 0"}]});
        assert!(!answer_shows(&earlier, &sent));
        assert!(!answer_shows(&serde_json::json!({"id": "1"}), &sent));
        let text = serde_json::json!({"content": "hello"});
        assert!(answer_shows(
            &serde_json::json!({"id": "1", "content": "hello"}),
            &text
        ));
        assert!(!answer_shows(
            &serde_json::json!({"id": "1", "content": "bye"}),
            &text
        ));
    }

    fn cfg(token: &str) -> RestConfig {
        RestConfig {
            base_url: "http://127.0.0.1:9/api/v10".into(),
            token: token.into(),
            extra_ca_file: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn calls_and_429s_are_labelled_for_the_metrics() {
        let route = |m: &str, t: &str| route_kind(&Route::new(m, t, "1"));
        assert_eq!(route("POST", "/channels/{id}/messages"), RouteKind::Create);
        assert_eq!(
            route("PATCH", "/channels/{id}/messages/{id}"),
            RouteKind::Edit
        );
        assert_eq!(route("GET", "/gateway/bot"), RouteKind::Other);
        assert_eq!(route("GET", "/channels/{id}"), RouteKind::Other);

        let limited = |global, cloudflare| {
            Some(Limited {
                retry_after: Duration::from_secs(1),
                global,
                cloudflare,
            })
        };
        for (header, l, scope) in [
            (Some("user"), limited(false, false), LimitScope::User),
            (Some(" Shared "), limited(false, false), LimitScope::Shared),
            (Some("global"), limited(true, false), LimitScope::Global),
            (None, limited(true, false), LimitScope::Global),
            (None, limited(false, false), LimitScope::User),
            (None, None, LimitScope::User),
            (None, limited(true, true), LimitScope::Cloudflare),
            (Some("user"), limited(true, true), LimitScope::Cloudflare),
        ] {
            assert_eq!(limit_scope(header, l), scope, "{header:?} {l:?}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = cfg("super.secret.token");
        assert!(!format!("{c:?}").contains("super.secret"));
        let rest = Rest::new(c).unwrap();
        assert!(!format!("{rest:?}").contains("super.secret"));
    }

    #[test]
    fn rejects_bad_tokens_and_base_urls_without_echoing_the_token() {
        let err = Rest::new(cfg("abc\r\nX-Evil: 1")).unwrap_err();
        assert!(!err.to_string().contains("Evil"));
        assert!(Rest::new(cfg("")).is_err());
        let mut c = cfg("t");
        c.base_url = "discord.com/api".into();
        assert!(matches!(
            Rest::new(c),
            Err(RestError::Rejected { status: 0, .. })
        ));
        // The configuration strips a pasted "Bot " prefix (see config's
        // tests); here it is just a token with a space in it.
        assert!(matches!(
            Rest::new(cfg("Bot abc")),
            Err(RestError::Rejected { status: 0, .. })
        ));
    }

    #[test]
    fn parses_discord_error_bodies() {
        let (code, msg) = discord_error(br#"{"message":"Unknown Message","code":10008}"#);
        assert_eq!(code, Some(10008));
        assert_eq!(msg, "Unknown Message");
        let (code, msg) = discord_error(br#"{"code":50035,"message":"Invalid Form Body","errors":{"embeds":{"0":{"title":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH"}]}}}}}"#);
        assert_eq!(code, Some(50035));
        assert!(msg.starts_with("Invalid Form Body {"));
        assert!(msg.contains("BASE_TYPE_MAX_LENGTH"));
        let (code, msg) = discord_error(b"<html>\n error code: 1015 \n</html>");
        assert_eq!(code, None);
        assert_eq!(msg, "<html>  error code: 1015  </html>");
        let long = format!(r#"{{"message":"{}","code":1}}"#, "x".repeat(5000));
        let (_, msg) = discord_error(long.as_bytes());
        assert_eq!(msg.chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn message_ids_must_be_present() {
        assert_eq!(
            message_id(&serde_json::json!({"id": "123"})),
            Ok("123".to_string())
        );
        assert!(matches!(
            message_id(&serde_json::json!({})),
            Err(RestError::Transient { .. })
        ));
    }

    #[tokio::test]
    async fn refuses_non_snowflake_ids_without_calling() {
        let rest = Rest::new(cfg("t")).unwrap();
        let err = rest
            .create_message("../users/@me", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RestError::Rejected { status: 0, .. }),
            "{err:?}"
        );
        let err = rest
            .edit_message("1", "2?x=1", &serde_json::json!({}))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RestError::Rejected { status: 0, .. }),
            "{err:?}"
        );
        for id in ["0123", "18446744073709551616", ""] {
            let err = rest
                .edit_message("1", id, &serde_json::json!({}))
                .await
                .unwrap_err();
            assert!(
                matches!(err, RestError::Rejected { status: 0, .. }),
                "{id:?}: {err:?}"
            );
        }
    }

    /// A stand-in for Discord on loopback that answers every request 401 and
    /// counts the requests, so a test can tell whether a call went out.
    async fn always_unauthorized() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&chunk[..n]),
                        }
                    }
                    counted.fetch_add(1, SeqCst);
                    let body = r#"{"message":"401: Unauthorized","code":0}"#;
                    let answer = format!(
                        "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(answer.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (format!("http://{addr}/api/v10"), calls)
    }

    /// Moved here from `tests/rest_client.rs` when `is_suspended`/`resume`
    /// left the public API (nothing but this test used them).
    #[tokio::test]
    async fn resume_lifts_a_401_suspension_at_once() {
        let (base_url, calls) = always_unauthorized().await;
        let wrong = Rest::new(RestConfig {
            base_url,
            ..cfg("wrong-token")
        })
        .unwrap();
        let err = wrong.current_user().await.unwrap_err();
        assert!(
            matches!(err, RestError::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        let err = wrong.current_user().await.unwrap_err();
        assert!(matches!(err, RestError::Suspended { .. }), "{err:?}");
        assert_eq!(
            calls.load(SeqCst),
            1,
            "a suspended client must not call Discord"
        );
        assert!(wrong.is_suspended());
        // resume() lifts the suspension at once: the next call reaches Discord.
        wrong.resume();
        assert!(!wrong.is_suspended());
        let err = wrong.current_user().await.unwrap_err();
        assert!(
            matches!(err, RestError::Unauthorized { status: 401, .. }),
            "{err:?}"
        );
        assert_eq!(calls.load(SeqCst), 2);
    }

    #[test]
    fn gateway_bot_deserializes() {
        let v = serde_json::json!({"url":"wss://gateway.discord.gg","shards":1,
            "session_start_limit":{"total":1000,"remaining":999,"reset_after":14400000,"max_concurrency":1}});
        let g: GatewayBot = serde_json::from_value(v).unwrap();
        assert_eq!(g.url, "wss://gateway.discord.gg");
        assert_eq!(g.session_start_limit.remaining, 999);
    }
}
