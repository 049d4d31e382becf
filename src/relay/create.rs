//! Creating a destination's build message exactly once: its intent is stored
//! before the create goes out, the create carries a nonce naming the build,
//! the channel and the generation, and a create whose outcome is uncertain is
//! repeated as is only while Discord still remembers its nonce; later the
//! channel is searched first ([`super::reconcile`]) and a message found there
//! is adopted.
use super::deliver::{Ctx, Failure};
use super::nonce::nonce_for;
use super::reconcile;
use super::sink::Sink;
use crate::discord::rest::RestError;
use crate::store::{now_ms, MessageRef, Store, UncertainCreate};
use serde_json::Value;
use std::time::Instant;

/// The message a create posted (or adopted): stored before completing.
pub(super) struct Shown {
    pub channel_id: String,
    pub message_id: String,
}

/// Add a create's nonce to `body`.
pub(super) fn with_nonce(body: &mut Value, nonce: String) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("nonce".into(), Value::String(nonce));
        obj.insert("enforce_nonce".into(), Value::Bool(true));
    }
}

impl<S: Store, K: Sink> Ctx<'_, S, K> {
    /// Record `m` as the key's message at `dest` (fenced by the lease).
    pub(super) async fn save(&self, dest: &str, m: &MessageRef) -> Result<(), Failure> {
        self.store
            .put_message(self.key, dest, &self.cfg.owner, self.token, m.clone())
            .await
            .map_err(Failure::Store)
    }

    /// Post a fresh message for the key in `channel` (destination `dest`),
    /// the first (generation 0) or one that replaces `replaces`, so that at
    /// most one ever exists:
    ///
    /// * a first attempt stores its intent (an uncertain create) before the
    ///   create goes out, so no crash or lost answer can hide it;
    /// * a repeat (`pending`: the stored intent) goes out as is only while
    ///   Discord still remembers its nonce; later the channel is searched
    ///   first and a message found there is adopted (edited, then stored).
    pub(super) async fn post(
        &mut self,
        dest: &str,
        channel: &str,
        body: &mut Value,
        generation: u32,
        replaces: Option<&MessageRef>,
        pending: Option<&UncertainCreate>,
    ) -> Result<Shown, Failure> {
        match pending {
            Some(u) => {
                let trusted = self
                    .nonce_trusted_until
                    .is_some_and(|until| Instant::now() < until);
                if !trusted {
                    if let Some(found) = self.look_up(body, u, replaces).await? {
                        return Ok(found);
                    }
                }
            }
            None => {
                let intent = MessageRef {
                    channel_id: replaces
                        .map_or_else(|| channel.to_string(), |m| m.channel_id.clone()),
                    message_id: replaces.map(|m| m.message_id.clone()).unwrap_or_default(),
                    status: replaces.map(|m| m.status.clone()).unwrap_or_default(),
                    uncertain: Some(UncertainCreate {
                        channel_id: channel.to_string(),
                        generation,
                        since_ms: now_ms(),
                    }),
                    thread_id: None,
                    pinged: replaces.is_some_and(|m| m.pinged),
                };
                self.save(dest, &intent).await?;
            }
        }
        with_nonce(body, nonce_for(self.server, self.key, channel, generation));
        self.notes.create_uncertain = true;
        match self.sink.create_checked(channel, body).await {
            Ok((id, shows_body)) => {
                if !shows_body {
                    // Discord answered with the message an earlier attempt of
                    // this create made (the same nonce, after a lost answer or
                    // a crash): it shows that attempt's state. Bring it to this
                    // one before the events are completed, or the build would
                    // stay shown out of date. Should the edit fail, the create
                    // stays uncertain and the next attempt gets the same
                    // answer (or, past the nonce window, finds the message).
                    tracing::info!(key = %self.key, message_id = %id, "create answered with its nonce's earlier message; editing it to the newest state");
                    let mut edit = body.clone();
                    if let Some(obj) = edit.as_object_mut() {
                        obj.remove("nonce");
                        obj.remove("enforce_nonce");
                    }
                    if let Err(e) = self.sink.edit(channel, &id, &edit).await {
                        return Err(self.rest(e));
                    }
                }
                Ok(Shown {
                    channel_id: channel.to_string(),
                    message_id: id,
                })
            }
            Err(e) => {
                if !matches!(e, RestError::Transient { .. } | RestError::Malformed { .. }) {
                    // Refused: nothing was created.
                    self.notes.create_uncertain = false;
                }
                Err(self.rest(e))
            }
        }
    }

    /// A REST failure, noting a malformed 2xx for `/health`.
    pub(super) fn rest(&mut self, e: RestError) -> Failure {
        if let RestError::Malformed { reason } = &e {
            self.notes.malformed = Some(reason.clone());
        }
        Failure::Rest(e)
    }

    /// Search the channel of the uncertain create `u` for the bot's own
    /// message of this build; found, edit it to `body` and adopt it.
    async fn look_up(
        &mut self,
        body: &Value,
        u: &UncertainCreate,
        replaces: Option<&MessageRef>,
    ) -> Result<Option<Shown>, Failure> {
        let Some(mark) = reconcile::marker(body) else {
            tracing::warn!(key = %self.key, "a create's outcome is uncertain and its message has no link to find it by; repeating it with the same nonce");
            return Ok(None);
        };
        let bot = self.sink.own_user_id().await?;
        let recent = self
            .sink
            .recent_messages(&u.channel_id, reconcile::LOOKBACK)
            .await?;
        let except = replaces.map(|m| m.message_id.as_str());
        let Some(found) = reconcile::find_own(&recent, &bot, mark, except) else {
            tracing::info!(key = %self.key, channel = %u.channel_id, "the uncertain create left no message; creating it again");
            return Ok(None);
        };
        tracing::info!(key = %self.key, message_id = %found, "the uncertain create's message was found in the channel; adopting it");
        match self.sink.edit(&u.channel_id, found, body).await {
            Ok(id) => Ok(Some(Shown {
                channel_id: u.channel_id.clone(),
                message_id: id,
            })),
            // Gone or not editable since the read: post a fresh one instead.
            Err(RestError::NotFound { .. } | RestError::Unauthorized { status: 403, .. }) => {
                Ok(None)
            }
            Err(e) => Err(self.rest(e)),
        }
    }
}
