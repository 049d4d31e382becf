//! Where rendered messages go: the [`Sink`] trait the relay delivers
//! through (messages, threads, forum posts, webhook messages), its Discord
//! REST implementation, and [`DryRun`] for `--dry-run` (log what would be
//! sent, make up ids, and keep the newest state of each message for
//! `GET /preview`). Tests plug in scripted sinks of their own.
use crate::discord::rest::{Rest, RestError};
use crate::discord::threads::ChannelKind;
use crate::discord::upload::Attachment;
use crate::discord::webhook::WebhookUrl;
use crate::discord::webhook_exec::WebhookMessage;
use crate::preview::Preview;
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Where rendered messages go.
pub trait Sink: Send + Sync + 'static {
    /// Post a new message; returns its id.
    fn create(
        &self,
        channel_id: &str,
        body: &Value,
    ) -> impl Future<Output = Result<String, RestError>> + Send;
    /// Post a new message; returns its id and whether Discord's answer
    /// shows `body` (false: Discord matched the nonce to an earlier attempt
    /// and answered with that attempt's message, see
    /// [`Created`](crate::discord::rest::Created)). A sink that cannot tell
    /// says it does.
    fn create_checked(
        &self,
        channel_id: &str,
        body: &Value,
    ) -> impl Future<Output = Result<(String, bool), RestError>> + Send {
        async move { self.create(channel_id, body).await.map(|id| (id, true)) }
    }
    /// Post a new message with `files` attached; returns its id. A sink
    /// that cannot upload refuses (status 0) without posting.
    fn create_with_files(
        &self,
        channel_id: &str,
        body: &Value,
        files: &[Attachment],
    ) -> impl Future<Output = Result<String, RestError>> + Send {
        let _ = (channel_id, body, files);
        async {
            Err(RestError::Rejected {
                status: 0,
                code: None,
                message: "this sink cannot upload files".into(),
            })
        }
    }
    /// Replace an existing message; returns its id.
    fn edit(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> impl Future<Output = Result<String, RestError>> + Send;
    /// The channel's newest messages (as Discord returns them), newest
    /// first, at most `limit`: where the relay looks for a message whose
    /// create had an uncertain outcome.
    fn recent_messages(
        &self,
        channel_id: &str,
        limit: u8,
    ) -> impl Future<Output = Result<Vec<Value>, RestError>> + Send;
    /// The id of the user this sink posts as (the `author.id` of its messages).
    fn own_user_id(&self) -> impl Future<Output = Result<String, RestError>> + Send;
    /// What kind of channel `channel_id` is (a forum takes posts, not messages).
    fn channel_kind(
        &self,
        channel_id: &str,
    ) -> impl Future<Output = Result<ChannelKind, RestError>> + Send;
    /// Start a thread named `name` under a message; returns the thread's id.
    fn start_thread(
        &self,
        channel_id: &str,
        message_id: &str,
        name: &str,
    ) -> impl Future<Output = Result<String, RestError>> + Send;
    /// A forum post named `name` whose first message is `body`; returns
    /// (thread id, starter message id). Edit it with [`Sink::edit`] on the thread.
    fn create_forum_post(
        &self,
        forum_id: &str,
        name: &str,
        body: &Value,
    ) -> impl Future<Output = Result<(String, String), RestError>> + Send;
    /// Post through a webhook (`thread_name`: a new post of a webhook to a forum).
    fn execute_webhook(
        &self,
        url: &WebhookUrl,
        body: &Value,
        thread_name: Option<&str>,
    ) -> impl Future<Output = Result<WebhookMessage, RestError>> + Send;
    /// Edit a webhook's message (`thread_id`: it is in a forum post's thread).
    fn edit_webhook_message(
        &self,
        url: &WebhookUrl,
        message_id: &str,
        body: &Value,
        thread_id: Option<&str>,
    ) -> impl Future<Output = Result<String, RestError>> + Send;
}

impl Sink for Rest {
    async fn create(&self, channel_id: &str, body: &Value) -> Result<String, RestError> {
        self.create_message(channel_id, body).await
    }
    async fn create_checked(
        &self,
        channel_id: &str,
        body: &Value,
    ) -> Result<(String, bool), RestError> {
        let c = self.create_message_checked(channel_id, body).await?;
        Ok((c.id, c.shows_body))
    }
    async fn create_with_files(
        &self,
        channel_id: &str,
        body: &Value,
        files: &[Attachment],
    ) -> Result<String, RestError> {
        self.create_message_with_files(channel_id, body, files)
            .await
    }
    async fn edit(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<String, RestError> {
        self.edit_message(channel_id, message_id, body).await
    }
    async fn recent_messages(&self, channel_id: &str, limit: u8) -> Result<Vec<Value>, RestError> {
        Rest::recent_messages(self, channel_id, limit).await
    }
    async fn own_user_id(&self) -> Result<String, RestError> {
        Rest::own_user_id(self).await
    }
    async fn channel_kind(&self, channel_id: &str) -> Result<ChannelKind, RestError> {
        Rest::channel_kind(self, channel_id).await
    }
    async fn start_thread(
        &self,
        channel: &str,
        message: &str,
        name: &str,
    ) -> Result<String, RestError> {
        Rest::start_thread(self, channel, message, name).await
    }
    async fn create_forum_post(
        &self,
        forum_id: &str,
        name: &str,
        body: &Value,
    ) -> Result<(String, String), RestError> {
        Rest::create_forum_post(self, forum_id, name, body).await
    }
    async fn execute_webhook(
        &self,
        url: &WebhookUrl,
        body: &Value,
        thread_name: Option<&str>,
    ) -> Result<WebhookMessage, RestError> {
        Rest::execute_webhook(self, url, body, thread_name).await
    }
    async fn edit_webhook_message(
        &self,
        url: &WebhookUrl,
        message_id: &str,
        body: &Value,
        thread_id: Option<&str>,
    ) -> Result<String, RestError> {
        Rest::edit_webhook_message(self, url, message_id, body, thread_id).await
    }
}

/// `--dry-run`: log what would be sent, remember made-up message ids, and
/// record each message's newest body on its [`Preview`] board (bounded: the
/// oldest messages are evicted, see `preview::PREVIEW_MAX_MESSAGES`).
#[derive(Debug, Default)]
pub struct DryRun {
    next: AtomicU64,
    preview: Arc<Preview>,
}

impl DryRun {
    /// A dry-run sink that records on `preview` (the board `GET /preview` shows).
    pub fn with_preview(preview: Arc<Preview>) -> Self {
        DryRun {
            next: AtomicU64::new(0),
            preview,
        }
    }

    /// A made-up id: `dry-run-<n>`.
    fn next_id(&self) -> String {
        format!("dry-run-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl Sink for DryRun {
    async fn create(&self, channel_id: &str, body: &Value) -> Result<String, RestError> {
        let id = self.next_id();
        tracing::info!(channel = channel_id, message_id = %id, body = %body, "dry-run: would create message");
        self.preview.record(channel_id, &id, body);
        Ok(id)
    }
    /// Logs each file's name and size, never its contents.
    async fn create_with_files(
        &self,
        channel_id: &str,
        body: &Value,
        files: &[Attachment],
    ) -> Result<String, RestError> {
        tracing::info!(channel = channel_id, ?files, "dry-run: would attach files");
        self.create(channel_id, body).await
    }
    async fn edit(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<String, RestError> {
        tracing::info!(channel = channel_id, message_id, body = %body, "dry-run: would edit message");
        self.preview.record(channel_id, message_id, body);
        Ok(message_id.to_string())
    }
    /// Nothing was posted, so there is nothing to find.
    async fn recent_messages(
        &self,
        _channel_id: &str,
        _limit: u8,
    ) -> Result<Vec<Value>, RestError> {
        Ok(Vec::new())
    }
    async fn own_user_id(&self) -> Result<String, RestError> {
        Ok("dry-run".into())
    }
    /// No channel is read: every channel is taken for a text channel.
    async fn channel_kind(&self, _channel_id: &str) -> Result<ChannelKind, RestError> {
        Ok(ChannelKind::Text)
    }
    /// As on Discord, the thread has its message's id.
    async fn start_thread(
        &self,
        channel: &str,
        message: &str,
        name: &str,
    ) -> Result<String, RestError> {
        tracing::info!(
            channel,
            message_id = message,
            name,
            "dry-run: would start thread"
        );
        Ok(message.to_string())
    }
    async fn create_forum_post(
        &self,
        forum_id: &str,
        name: &str,
        body: &Value,
    ) -> Result<(String, String), RestError> {
        let id = self.next_id();
        tracing::info!(channel = forum_id, message_id = %id, name, body = %body, "dry-run: would create forum post");
        self.preview.record(&id, &id, body);
        Ok((id.clone(), id))
    }
    async fn execute_webhook(
        &self,
        url: &WebhookUrl,
        body: &Value,
        thread_name: Option<&str>,
    ) -> Result<WebhookMessage, RestError> {
        let id = self.next_id();
        let channel = url.to_string();
        tracing::info!(webhook = %channel, message_id = %id, thread_name, body = %body, "dry-run: would execute webhook");
        self.preview.record(&channel, &id, body);
        Ok(WebhookMessage {
            channel_id: channel,
            message_id: id,
        })
    }
    async fn edit_webhook_message(
        &self,
        url: &WebhookUrl,
        message_id: &str,
        body: &Value,
        _thread_id: Option<&str>,
    ) -> Result<String, RestError> {
        let channel = url.to_string();
        tracing::info!(webhook = %channel, message_id, body = %body, "dry-run: would edit webhook message");
        self.preview.record(&channel, message_id, body);
        Ok(message_id.to_string())
    }
}
