//! A webhook route's build message: executed with `wait=true`, edited by its
//! message id, through the webhook's own URL (no bot token needed).
//!
//! Weaker than a bot channel, by Discord's design: webhook execution takes no
//! nonce, and a webhook cannot read its channel to find a message whose
//! create answer was lost. So the intent is stored before the execute (an
//! uncertain create), and a lost answer is repeated only by the normal retry
//! after the relay's backoff: **at most one duplicate** message is possible
//! after a lost answer. A webhook cannot start a thread from a message or
//! reply, so its live ping is a separate message ([`separate`]). A webhook
//! to a forum channel makes one post per build (`thread_name`), edited in its
//! thread.
use serde_json::Value;

use super::deliver::{Ctx, Failure};
use super::sink::Sink;
use crate::discord::rest::RestError;
use crate::discord::webhook::WebhookUrl;
use crate::store::{now_ms, MessageRef, Store, UncertainCreate};

/// Discord's code for "a webhook to a forum channel needs a thread name or id".
const FORUM_NEEDS_THREAD: u64 = 220_001;

/// Where and how a webhook route's build message is posted.
pub(super) struct Post<'a> {
    /// The store's destination key.
    pub dest: &'a str,
    pub url: &'a WebhookUrl,
    /// The post's name when the webhook's channel is a forum.
    pub thread_name: String,
    /// The message carries the ping (`when` other than `live`).
    pub in_message: bool,
}

/// A webhook that refuses its token (401 50027) or access concerns that
/// destination only, never every delivery: both pause it like a refused channel.
fn refusal(e: RestError) -> RestError {
    match e {
        RestError::Unauthorized { message, .. } => RestError::Unauthorized {
            status: 403,
            message,
        },
        other => other,
    }
}

/// Edit the stored message, or execute the webhook for a fresh one (stored
/// right after; its intent before).
pub(super) async fn message<S: Store, K: Sink>(
    ctx: &mut Ctx<'_, S, K>,
    post: &Post<'_>,
    body: Value,
    stored: Option<MessageRef>,
) -> Result<MessageRef, Failure> {
    let (dest, url) = (post.dest, post.url);
    if let Some(m) = stored
        .as_ref()
        .filter(|m| m.uncertain.is_none() && !m.message_id.is_empty())
    {
        match ctx
            .sink
            .edit_webhook_message(url, &m.message_id, &body, m.thread_id.as_deref())
            .await
        {
            Ok(_) => return Ok(m.clone()),
            Err(RestError::NotFound { .. }) => {
                tracing::info!(key = %ctx.key, webhook = %url, "webhook message was deleted; posting a fresh one");
            }
            Err(e) => return Err(ctx.rest(refusal(e))),
        }
    }
    let pinged = stored.as_ref().is_some_and(|m| m.pinged);
    let intent = MessageRef {
        uncertain: Some(UncertainCreate {
            channel_id: String::new(),
            generation: 0,
            since_ms: now_ms(),
        }),
        pinged,
        ..MessageRef::default()
    };
    ctx.save(dest, &intent).await?;
    ctx.notes.create_uncertain = true;
    let posted = match ctx.sink.execute_webhook(url, &body, None).await {
        Err(RestError::Rejected {
            code: Some(FORUM_NEEDS_THREAD),
            ..
        }) => {
            let w = ctx
                .sink
                .execute_webhook(url, &body, Some(&post.thread_name))
                .await
                .map_err(|e| ctx.rest(refusal(e)))?;
            // In a forum, the message lives in the post's thread.
            let thread = Some(w.channel_id.clone());
            (w, thread)
        }
        Ok(w) => (w, None),
        Err(e) => return Err(ctx.rest(refusal(e))),
    };
    let (w, thread_id) = posted;
    let m = MessageRef {
        channel_id: w.channel_id,
        message_id: w.message_id,
        thread_id,
        pinged: pinged || post.in_message,
        ..MessageRef::default()
    };
    ctx.save(dest, &m).await?;
    ctx.notes.create_uncertain = false;
    Ok(m)
}

/// A live route's ping on a webhook: a message of its own after the build
/// message (in the channel: the execute takes no thread id).
pub(super) async fn separate<S: Store, K: Sink>(
    ctx: &mut Ctx<'_, S, K>,
    url: &WebhookUrl,
    body: &Value,
) -> Result<(), Failure> {
    ctx.sink
        .execute_webhook(url, body, None)
        .await
        .map(|_| ())
        .map_err(|e| ctx.rest(refusal(e)))
}
