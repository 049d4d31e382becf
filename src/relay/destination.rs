//! One destination's share of a claim: the build message at one channel (a
//! text channel's message, or a forum channel's post) or named webhook,
//! created or edited as its route's [`Plan`] says, then the follow-ups the
//! plan asks for: the thread ([`super::thread`]) and the ping.
//!
//! Each step's result is stored as soon as it succeeded (the message id, the
//! thread id, `pinged`), so a retry after any failure edits what exists and
//! never creates a second message, thread or ping. Where the ping goes:
//!
//! * `InMessage` (`when = finished | failed | changed`): `<@id>` in the build
//!   message's `content`, created at the end with `allowed_mentions`
//!   naming that user only;
//! * `Reply` (`live`): a new message with `message_reference` to the build
//!   message, with a nonce of its own so a repeat cannot double it;
//! * `InThread`: the thread's first post ([`super::thread`]);
//! * `Separate` (webhook routes): a plain message after the build message.
//!
//! Every other message carries `allowed_mentions: {"parse": []}`, and an
//! author with no `[users]` entry is named in plain text.
use serde_json::{json, Value};

use super::create::with_nonce;
use super::deliver::{Ctx, Failure};
use super::nonce::{nonce_for, replacement_generation};
use super::sink::Sink;
use super::{thread, webhook_route};
use crate::discord::rest::RestError;
use crate::discord::threads::ChannelKind;
use crate::drone::Webhook;
use crate::routes::{allowed_mentions, Destination, MentionDecision, Placement, Plan};
use crate::store::{MessageRef, Store};

/// Discord's code for "a thread has already been created for this message".
const THREAD_EXISTS: u64 = 160_004;

/// One destination of a claim, as routing decided it.
pub(super) struct Share<'a> {
    /// The store's destination key (`channel:<id>`, `webhook:<name>`).
    pub dest: String,
    pub destination: &'a Destination,
    pub plan: Plan,
    /// From a route in the routing file (not the built-in single channel):
    /// only then is the channel's kind looked up, so today's setup makes
    /// exactly today's calls.
    pub from_file: bool,
}

/// The store key of a destination.
pub fn dest_key(d: &Destination, default_channel: &str) -> String {
    match d {
        Destination::Channel(id) => crate::store::channel_dest(id),
        Destination::Webhook(name) => format!("webhook:{name}"),
        Destination::Default => crate::store::channel_dest(default_channel),
    }
}

/// Every destination `routing` can send to (store keys, in route order,
/// each once).
pub fn destinations(routing: &crate::routes::Routing, default_channel: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in &routing.routes {
        let d = dest_key(&r.destination, default_channel);
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// What the plan's mention puts in text: `<@id>`, or the unmapped author's name.
fn mention_text(plan: &Plan) -> Option<String> {
    match &plan.mention {
        MentionDecision::Ping { user_id, .. } => Some(format!("<@{user_id}>")),
        MentionDecision::Unmapped { who } => Some(crate::text::truncate_chars(
            &crate::text::controls_to_spaces(who),
            100,
        )),
        MentionDecision::Nobody => None,
    }
}

fn set(body: &mut Value, field: &str, v: Value) {
    if let Some(obj) = body.as_object_mut() {
        obj.insert(field.into(), v);
    }
}

/// The build message for this share: the rendered body, `allowed_mentions`,
/// and the ping or the unmapped author's name in `content` when they belong
/// in the message itself.
fn build_message(base: &Value, plan: &Plan) -> Value {
    let mut body = base.clone();
    let in_message = plan.placement == Some(Placement::InMessage);
    let unmapped = matches!(plan.mention, MentionDecision::Unmapped { .. });
    if in_message || unmapped {
        if let Some(text) = mention_text(plan) {
            set(&mut body, "content", Value::String(text));
        }
    }
    let mentions = if in_message {
        plan.allowed_mentions.clone()
    } else {
        allowed_mentions(&MentionDecision::Nobody)
    };
    set(&mut body, "allowed_mentions", mentions);
    body
}

impl<S: Store, K: Sink> Ctx<'_, S, K> {
    /// Deliver `share` of `hook` (rendered as `base`); `stored` is the key's
    /// message there. Returns the message to record at completion (`None`:
    /// nothing is posted there for this event).
    pub(super) async fn deliver_share(
        &mut self,
        share: &Share<'_>,
        hook: &Webhook,
        base: &Value,
        stored: Option<MessageRef>,
    ) -> Result<Option<MessageRef>, Failure> {
        if !share.plan.posts {
            return Ok(None);
        }
        let body = build_message(base, &share.plan);
        let mut m = match share.destination {
            Destination::Webhook(name) => {
                let Some(url) = self.cfg.routing.webhook(name) else {
                    // Names are checked at start and on reload: not reached.
                    return Err(Failure::Rest(RestError::NotFound {
                        code: None,
                        message: format!("webhook {name} has no URL loaded"),
                    }));
                };
                let in_message = share.plan.placement == Some(Placement::InMessage);
                let post = webhook_route::Post {
                    dest: &share.dest,
                    url,
                    thread_name: thread::name(hook),
                    in_message,
                };
                webhook_route::message(self, &post, body, stored).await?
            }
            Destination::Channel(channel) => {
                self.channel_message(share, hook, channel, body, stored)
                    .await?
            }
            Destination::Default => {
                let channel = self.cfg.channel_id.clone();
                self.channel_message(share, hook, &channel, body, stored)
                    .await?
            }
        };
        m.status = hook
            .build
            .as_ref()
            .map(|b| b.status.clone())
            .unwrap_or_default();
        self.follow_ups(share, hook, &mut m).await?;
        Ok(Some(m))
    }

    /// The build message in a bot channel: edit the stored one, or post it
    /// (a forum channel gets a post whose first message it is).
    async fn channel_message(
        &mut self,
        share: &Share<'_>,
        hook: &Webhook,
        channel: &str,
        mut body: Value,
        stored: Option<MessageRef>,
    ) -> Result<MessageRef, Failure> {
        let in_message = share.plan.placement == Some(Placement::InMessage);
        let fresh = |shown: super::create::Shown, old: Option<&MessageRef>| MessageRef {
            channel_id: shown.channel_id,
            message_id: shown.message_id,
            status: String::new(),
            uncertain: None,
            thread_id: None,
            // The ping in the message went out with it.
            pinged: old.is_some_and(|m| m.pinged) || in_message,
        };
        let dest = share.dest.as_str();
        let shown = match &stored {
            // A create of this key is uncertain: find its message, or repeat it.
            Some(
                m @ MessageRef {
                    uncertain: Some(u), ..
                },
            ) => {
                let replaces = Some(m).filter(|m| !m.message_id.is_empty());
                if self.forum(share, channel).await? {
                    // A forum post takes no nonce: repeated after the backoff
                    // (at most one duplicate, as for webhook routes).
                    return self
                        .forum_post(dest, channel, &body, hook, replaces, in_message)
                        .await;
                }
                let u = u.clone();
                let shown = self
                    .post(dest, channel, &mut body, u.generation, replaces, Some(&u))
                    .await?;
                fresh(shown, replaces)
            }
            Some(m) => match self.sink.edit(&m.channel_id, &m.message_id, &body).await {
                Ok(id) => {
                    return Ok(MessageRef {
                        message_id: id,
                        ..m.clone()
                    })
                }
                Err(RestError::NotFound { .. }) => {
                    tracing::info!(key = %self.key, message_id = %m.message_id, "message was deleted; posting a fresh one");
                    // A nonce of its own (derived from the deleted message, so a
                    // retry after a crash still cannot post twice).
                    let shown = self.replace(share, channel, &mut body, m).await?;
                    fresh(shown, Some(m))
                }
                // Discord refuses this edit (50001 Missing Access after the bot
                // lost an old message's channel, 50005 another author's message,
                // 50013): that concerns this message only. Post a fresh one; if
                // that is refused too, set the build aside.
                Err(RestError::Unauthorized {
                    status: 403,
                    message,
                }) => {
                    tracing::warn!(key = %self.key, message_id = %m.message_id, reason = %message, "Discord refuses to edit the message (403); posting a fresh one");
                    match self.replace(share, channel, &mut body, m).await {
                        Err(Failure::Rest(
                            e @ (RestError::Unauthorized { status: 403, .. }
                            | RestError::NotFound { .. }),
                        )) => {
                            return Err(Failure::DeadAndPause {
                                reason: format!(
                                    "Discord refused to edit message {} (403: {message}) and to post a fresh one in channel {channel}: {e}",
                                    m.message_id
                                ),
                                error: e,
                            })
                        }
                        other => fresh(other?, Some(m)),
                    }
                }
                Err(e) => return Err(self.rest(e)),
            },
            None if self.forum(share, channel).await? => {
                return self
                    .forum_post(dest, channel, &body, hook, None, in_message)
                    .await
            }
            None => {
                let shown = self.post(dest, channel, &mut body, 0, None, None).await?;
                fresh(shown, None)
            }
        };
        self.save(dest, &shown).await?;
        self.notes.create_uncertain = false;
        Ok(shown)
    }

    /// A fresh message replacing `old` (deleted, or no longer editable).
    async fn replace(
        &mut self,
        share: &Share<'_>,
        channel: &str,
        body: &mut Value,
        old: &MessageRef,
    ) -> Result<super::create::Shown, Failure> {
        let generation = replacement_generation(&old.message_id);
        self.post(&share.dest, channel, body, generation, Some(old), None)
            .await
    }

    /// Whether `channel` is a forum (looked up once per channel and process,
    /// and only for routes from the routing file).
    async fn forum(&mut self, share: &Share<'_>, channel: &str) -> Result<bool, Failure> {
        if !share.from_file {
            return Ok(false);
        }
        if let Some(kind) = self.cfg.channel_kind(channel) {
            return Ok(kind == ChannelKind::Forum);
        }
        let kind = self
            .sink
            .channel_kind(channel)
            .await
            .map_err(|e| self.rest(e))?;
        self.cfg.remember_kind(channel, kind);
        Ok(kind == ChannelKind::Forum)
    }

    /// A forum post whose first message is the build message; its thread is
    /// the channel the message is edited in. Stored before anything else.
    async fn forum_post(
        &mut self,
        dest: &str,
        forum: &str,
        body: &Value,
        hook: &Webhook,
        replaces: Option<&MessageRef>,
        in_message: bool,
    ) -> Result<MessageRef, Failure> {
        let intent = MessageRef {
            channel_id: forum.to_string(),
            uncertain: Some(crate::store::UncertainCreate {
                channel_id: forum.to_string(),
                generation: 0,
                since_ms: crate::store::now_ms(),
            }),
            pinged: replaces.is_some_and(|m| m.pinged),
            ..MessageRef::default()
        };
        self.save(dest, &intent).await?;
        self.notes.create_uncertain = true;
        let name = thread::name(hook);
        let (thread_id, message_id) = self
            .sink
            .create_forum_post(forum, &name, body)
            .await
            .map_err(|e| self.rest(e))?;
        let m = MessageRef {
            channel_id: thread_id.clone(),
            message_id,
            thread_id: Some(thread_id),
            pinged: intent.pinged || in_message,
            ..MessageRef::default()
        };
        self.save(dest, &m).await?;
        self.notes.create_uncertain = false;
        Ok(m)
    }

    /// After the build message: start the thread, post its first message,
    /// or reply with the ping, as the plan says and nothing stored says done.
    async fn follow_ups(
        &mut self,
        share: &Share<'_>,
        hook: &Webhook,
        m: &mut MessageRef,
    ) -> Result<(), Failure> {
        let plan = &share.plan;
        let is_webhook = matches!(share.destination, Destination::Webhook(_));
        if plan.thread && !is_webhook && m.thread_id.is_none() {
            let name = thread::name(hook);
            let id = match self
                .sink
                .start_thread(&m.channel_id, &m.message_id, &name)
                .await
            {
                Ok(id) => id,
                // Started by an attempt whose answer was lost: a thread
                // started from a message has the message's id.
                Err(RestError::Rejected {
                    code: Some(THREAD_EXISTS),
                    ..
                }) => m.message_id.clone(),
                Err(e) => return Err(self.rest(e)),
            };
            m.thread_id = Some(id);
            self.save(&share.dest, m).await?;
        }
        if m.pinged {
            return Ok(());
        }
        let mention = mention_text(plan);
        let ping = matches!(plan.mention, MentionDecision::Ping { .. });
        match (plan.thread, &m.thread_id, plan.placement) {
            (true, Some(thread_id), placement) if !is_webhook => {
                let Some(build) = hook.build.as_ref() else {
                    return Ok(());
                };
                // The ping is here only when it goes nowhere else.
                let here = ping && placement == Some(Placement::InThread);
                let text = thread::first_post(build, mention.as_deref().filter(|_| here));
                let mentions = if here {
                    plan.allowed_mentions.clone()
                } else {
                    allowed_mentions(&MentionDecision::Nobody)
                };
                let thread_id = thread_id.clone();
                let mut body = json!({ "content": text, "allowed_mentions": mentions });
                with_nonce(
                    &mut body,
                    nonce_for(self.server, self.key, &format!("thread:{thread_id}"), 0),
                );
                self.sink
                    .create(&thread_id, &body)
                    .await
                    .map_err(|e| self.rest(e))?;
            }
            (_, _, Some(Placement::Reply)) => {
                let Some(text) = mention.filter(|_| ping) else {
                    return Ok(());
                };
                let mut body = json!({
                    "content": text,
                    "allowed_mentions": plan.allowed_mentions,
                    "message_reference": { "message_id": m.message_id, "fail_if_not_exists": false },
                });
                with_nonce(
                    &mut body,
                    nonce_for(self.server, self.key, &format!("reply:{}", m.message_id), 0),
                );
                self.sink
                    .create(&m.channel_id, &body)
                    .await
                    .map_err(|e| self.rest(e))?;
            }
            (_, _, Some(Placement::Separate)) => {
                let (Some(text), Destination::Webhook(name)) =
                    (mention.filter(|_| ping), share.destination)
                else {
                    return Ok(());
                };
                let Some(url) = self.cfg.routing.webhook(name) else {
                    return Ok(());
                };
                let body = json!({ "content": text, "allowed_mentions": plan.allowed_mentions });
                webhook_route::separate(self, url, &body).await?;
            }
            _ => return Ok(()),
        }
        m.pinged = true;
        self.save(&share.dest, m).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{parse, plan};

    fn hook(path: &str) -> Webhook {
        let full = format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
        crate::drone::parse(&std::fs::read(&full).unwrap()).unwrap()
    }

    fn plan_of(file: &str, path: &str) -> Plan {
        let routing = parse(file).unwrap();
        let r = &routing.routes[0];
        plan(r, &r.destination, &routing.users, &hook(path), None, false)
    }

    #[test]
    fn the_ping_is_in_the_message_only_for_routes_that_post_at_the_end() {
        let users = "[users]\nanon = \"80351110224678912\"\n";
        let base = json!({"embeds": [{"title": "x"}]});
        let p = plan_of(
            &format!("{users}[[route]]\nwhen = \"failed\"\nmention = \"failed\"\n"),
            "drone/build_failure",
        );
        let m = build_message(&base, &p);
        assert_eq!(m["content"], "<@80351110224678912>");
        assert_eq!(
            m["allowed_mentions"],
            json!({"users": ["80351110224678912"]})
        );
        // Live: the build message pings nobody (the reply does).
        let p = plan_of(
            &format!("{users}[[route]]\nmention = \"failed\"\n"),
            "drone/build_failure",
        );
        let m = build_message(&base, &p);
        assert!(m.get("content").is_none());
        assert_eq!(m["allowed_mentions"], json!({"parse": []}));
        // Unmapped: named in plain text, nobody pinged.
        let p = plan_of(
            "[[route]]\nwhen = \"failed\"\nmention = \"failed\"\n",
            "drone/build_failure",
        );
        let m = build_message(&base, &p);
        assert!(!m["content"].as_str().unwrap().contains("<@"), "{m}");
        assert_eq!(m["allowed_mentions"], json!({"parse": []}));
    }

    #[test]
    fn destination_keys() {
        assert_eq!(
            dest_key(&Destination::Channel("5".into()), "9"),
            "channel:5"
        );
        assert_eq!(dest_key(&Destination::Default, "9"), "channel:9");
        assert_eq!(
            dest_key(&Destination::Webhook("ops".into()), "9"),
            "webhook:ops"
        );
    }
}
