//! Posting and editing through a webhook (a route with `webhook = "…"`):
//! `POST /webhooks/{id}/{token}?wait=true` and
//! `PATCH /webhooks/{id}/{token}/messages/{id}`, through the same rate
//! limiter as every other call, without the bot's `Authorization` header
//! (the token in the path authorizes), so they work on a client built
//! [`Rest::without_token`].
//!
//! Weaker than bot calls, by Discord's design: execution takes no nonce, so
//! after a lost answer one duplicate is possible; the window is kept small
//! with a short timeout (`RestTuning::webhook_execute_timeout`). `wait=true`
//! always: without it Discord answers 204 and a refused message fails
//! silently. Components are honoured only with `with_components=true`.
//!
//! The URL is a secret: routes, log lines and errors name the webhook only
//! by id, as [`WebhookUrl`]'s `Display` does (`…/webhooks/<id>/***`).
use serde_json::Value;

use super::ratelimit::Route;
use super::rest::{check_id, config_error, message_of, Rest, RestError};
use super::snowflake::is_snowflake;
use super::threads::thread_name;
use super::webhook::WebhookUrl;
use crate::http::client::Url;

/// Where a webhook's message landed (in a forum, `channel_id` is the new post's thread).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookMessage {
    pub channel_id: String,
    pub message_id: String,
}

/// `body` as a webhook takes it: no `nonce`/`enforce_nonce` (webhooks take
/// none), and `thread_name` (cut as for threads) when given.
fn webhook_body(body: &Value, thread: Option<&str>) -> Value {
    let mut body = body.clone();
    if let Value::Object(m) = &mut body {
        m.remove("nonce");
        m.remove("enforce_nonce");
        if let Some(name) = thread {
            m.insert("thread_name".into(), thread_name(name).into());
        }
    }
    body
}

/// The request URL: the webhook's URL, `suffix`, then the query of `pairs`
/// plus `with_components=true` when `body` has components. The error never
/// quotes the URL.
fn target(url: &WebhookUrl, suffix: &str, pairs: &[&str], body: &Value) -> Result<Url, RestError> {
    let mut text = format!("{}{suffix}", url.expose());
    let components = body.get("components").is_some_and(|c| !c.is_null());
    let with = components.then_some("with_components=true");
    for (i, pair) in pairs.iter().copied().chain(with).enumerate() {
        text.push(if i == 0 { '?' } else { '&' });
        text.push_str(pair);
    }
    Url::parse(&text).map_err(|_| config_error(format!("webhook {url}: not a valid URL")))
}

impl Rest {
    /// Execute the webhook with `body` (`thread_name` for a webhook to a
    /// forum); returns where the message landed.
    pub async fn execute_webhook(
        &self,
        url: &WebhookUrl,
        body: &Value,
        thread_name: Option<&str>,
    ) -> Result<WebhookMessage, RestError> {
        let body = webhook_body(body, thread_name);
        let target = target(url, "", &["wait=true"], &body)?;
        let route = Route::new("POST", "/webhooks/{id}/{token}", url.id());
        let bytes = self
            .call_at("POST", &route, &target, false, Some(&body), true)
            .await?;
        let (answer, message_id) = message_of(&route, &bytes)?;
        let channel_id = match answer.get("channel_id").and_then(Value::as_str) {
            Some(c) if is_snowflake(c) => c.to_string(),
            _ => {
                return Err(RestError::Malformed {
                    reason: format!("{}: the message has no channel_id", route.key),
                })
            }
        };
        crate::metrics::global().message_created();
        Ok(WebhookMessage {
            channel_id,
            message_id,
        })
    }

    /// Edit a message this webhook posted (`thread_id` when it is in a forum
    /// post's thread); returns the message id.
    pub async fn edit_webhook_message(
        &self,
        url: &WebhookUrl,
        message_id: &str,
        body: &Value,
        thread_id: Option<&str>,
    ) -> Result<String, RestError> {
        check_id("message id", message_id)?;
        let thread = match thread_id {
            Some(t) => {
                check_id("thread id", t)?;
                Some(format!("thread_id={t}"))
            }
            None => None,
        };
        let body = webhook_body(body, None);
        let pairs: Vec<&str> = thread.as_deref().into_iter().collect();
        let target = target(url, &format!("/messages/{message_id}"), &pairs, &body)?;
        let route = Route::new("PATCH", "/webhooks/{id}/{token}/messages/{id}", url.id());
        let bytes = self
            .call_at("PATCH", &route, &target, false, Some(&body), false)
            .await?;
        let (_, id) = message_of(&route, &bytes)?;
        crate::metrics::global().message_edited();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "http://127.0.0.1:9/api/webhooks/123456789012345678/Tok_en-1";

    #[test]
    fn bodies_lose_their_nonce_and_gain_a_thread_name() {
        let sent = json!({"content": "x", "nonce": "n", "enforce_nonce": true});
        assert_eq!(webhook_body(&sent, None), json!({"content": "x"}));
        assert_eq!(
            webhook_body(&sent, Some(" ❌ build ")),
            json!({"content": "x", "thread_name": "❌ build"})
        );
    }

    #[test]
    fn queries_ask_for_components_only_when_there_are_some() {
        let url = WebhookUrl::parse(URL).unwrap();
        let plain = target(&url, "", &["wait=true"], &json!({"content": "x"})).unwrap();
        assert!(
            plain.path_and_query.ends_with("/Tok_en-1?wait=true"),
            "{plain:?}"
        );
        let buttons = json!({"components": [{"type": 1, "components": []}]});
        let t = target(&url, "/messages/5", &[], &buttons).unwrap();
        assert!(t
            .path_and_query
            .ends_with("/Tok_en-1/messages/5?with_components=true"));
        let t = target(&url, "", &["wait=true", "thread_id=7"], &buttons).unwrap();
        assert!(t
            .path_and_query
            .ends_with("?wait=true&thread_id=7&with_components=true"));
    }
}
