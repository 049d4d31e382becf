//! Where rendered messages go: the [`Sink`] trait the relay delivers
//! through, its Discord REST implementation, and [`DryRun`] for
//! `--dry-run` (log what would be sent, make up message ids). Tests plug in
//! scripted sinks of their own.
use crate::discord::rest::{Rest, RestError};
use serde_json::Value;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Replace an existing message; returns its id.
    fn edit(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
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
    async fn edit(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<String, RestError> {
        self.edit_message(channel_id, message_id, body).await
    }
}

/// `--dry-run`: log what would be sent, remember made-up message ids.
#[derive(Debug, Default)]
pub struct DryRun {
    next: AtomicU64,
}

impl Sink for DryRun {
    async fn create(&self, channel_id: &str, body: &Value) -> Result<String, RestError> {
        let id = format!("dry-run-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1);
        tracing::info!(channel = channel_id, message_id = %id, body = %body, "dry-run: would create message");
        Ok(id)
    }
    async fn edit(
        &self,
        channel_id: &str,
        message_id: &str,
        body: &Value,
    ) -> Result<String, RestError> {
        tracing::info!(channel = channel_id, message_id, body = %body, "dry-run: would edit message");
        Ok(message_id.to_string())
    }
}
