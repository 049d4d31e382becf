//! What one destination gets for one event: posted or not, who is pinged and
//! where the ping goes, and whether a thread is started. The one place the
//! `when`, `mention` and `thread` decisions are put together, for the dry
//! run (`drone-discord route`) now and the relay later.
//!
//! Where a ping goes depends on `when`, because Discord sends no notification
//! for a mention added by an edit (discord/discord-api-docs#1419):
//!
//! * `live`: the build message was posted long before the outcome, so the
//!   ping is a new message once the outcome is known: a reply to the build
//!   message, or the first post in its thread when one is started; on a
//!   webhook route (which cannot reply) a separate message;
//! * `finished`, `failed`, `changed`: the build message is created at the
//!   end, and carries the ping in its `content`.
//!
//! `thread`: `failed` starts one when the build ends `failure` or `error`,
//! `always` on every final status, `never` not at all.
use serde_json::Value;

use super::mention::{allowed_mentions, mention, MentionDecision};
use super::when::{delivers, BuildOrder, Record};
use super::{Destination, EventKind, Route, Thread, Users, When};
use crate::drone::{is_final, Webhook};

/// Where a ping is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A reply (`message_reference`) to the build message.
    Reply,
    /// The first post in the thread started from the build message.
    InThread,
    /// A message of its own after the build message (webhook routes).
    Separate,
    /// The build message's own `content`.
    InMessage,
}

impl Placement {
    pub fn describe(self) -> &'static str {
        match self {
            Placement::Reply => "in a reply to the build message",
            Placement::InThread => "in the build's thread",
            Placement::Separate => "in a message after the build message",
            Placement::InMessage => "in the build message",
        }
    }
}

/// One destination's share of one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Whether the event is posted (created or edited) at this destination.
    pub posts: bool,
    pub mention: MentionDecision,
    /// Where the ping goes; `None` when nobody is pinged.
    pub placement: Option<Placement>,
    /// Whether a thread is started from the build message.
    pub thread: bool,
    /// The `allowed_mentions` of the message that carries the ping (or of
    /// the build message, when there is no ping).
    pub allowed_mentions: Value,
}

/// What `route`'s destination gets for `hook`. For `changed`, `previous` is
/// the record of the build's key; `already_pinged` says whether this build
/// pinged at this destination before.
pub fn plan(
    route: &Route,
    destination: &Destination,
    users: &Users,
    hook: &Webhook,
    previous: Option<&Record>,
    already_pinged: bool,
) -> Plan {
    let quiet = |posts| Plan {
        posts,
        mention: MentionDecision::Nobody,
        placement: None,
        thread: false,
        allowed_mentions: allowed_mentions(&MentionDecision::Nobody),
    };
    let build = match (EventKind::from_word(&hook.event), hook.build.as_ref()) {
        (Some(EventKind::Build), Some(b)) => b,
        // Repository and user events have no outcome: posted as they come.
        _ => return quiet(true),
    };
    let order = BuildOrder {
        number: build.number,
        created: build.created,
    };
    if !delivers(route.when, &build.status, previous, order) {
        return quiet(false);
    }
    let thread = match route.thread {
        Thread::Never => false,
        Thread::Failed => matches!(build.status.as_str(), "failure" | "error"),
        Thread::Always => is_final(&build.status),
    };
    let decision = mention(route.mention, users, build, already_pinged);
    let placement = match (&decision, route.when) {
        (MentionDecision::Ping { .. }, When::Live) if thread => Some(Placement::InThread),
        (MentionDecision::Ping { .. }, When::Live) => match destination {
            Destination::Webhook(_) => Some(Placement::Separate),
            _ => Some(Placement::Reply),
        },
        (MentionDecision::Ping { .. }, _) => Some(Placement::InMessage),
        _ => None,
    };
    Plan {
        posts: true,
        allowed_mentions: allowed_mentions(&decision),
        mention: decision,
        placement,
        thread,
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use crate::drone;
    use serde_json::json;

    fn fixture(path: &str) -> Webhook {
        let full = format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
        drone::parse(&std::fs::read(&full).unwrap()).unwrap()
    }

    fn plan_of(file: &str, path: &str) -> Plan {
        let routing = parse(file).unwrap();
        let route = &routing.routes[0];
        plan(
            route,
            &route.destination,
            &routing.users,
            &fixture(path),
            None,
            false,
        )
    }

    const USERS: &str = "[users]\nanon = \"80351110224678912\"\n";

    #[test]
    fn live_failed_build_pings_in_a_reply() {
        let file = format!("{USERS}[[route]]\nmention = \"failed\"\n");
        let p = plan_of(&file, "drone/build_failure");
        assert!(p.posts && !p.thread);
        assert_eq!(p.placement, Some(Placement::Reply));
        assert_eq!(p.allowed_mentions, json!({"users": ["80351110224678912"]}));
        // Still running: posted (edited live), nobody pinged yet.
        let p = plan_of(&file, "drone/build_updated");
        assert!(p.posts);
        assert_eq!(p.mention, MentionDecision::Nobody);
        assert_eq!(p.allowed_mentions, json!({"parse": []}));
    }

    #[test]
    fn live_with_a_thread_pings_in_the_thread_and_webhooks_separately() {
        let file = format!("{USERS}[[route]]\nmention = \"failed\"\nthread = \"failed\"\n");
        let p = plan_of(&file, "drone/build_failure");
        assert!(p.thread);
        assert_eq!(p.placement, Some(Placement::InThread));
        let file = format!("{USERS}[[route]]\nwebhook = \"ops\"\nmention = \"always\"\n");
        let p = plan_of(&file, "drone/build_success");
        assert_eq!(p.placement, Some(Placement::Separate));
    }

    #[test]
    fn a_failed_route_carries_the_ping_in_its_message() {
        let file = format!("{USERS}[[route]]\nwhen = \"failed\"\nmention = \"failed\"\n");
        let p = plan_of(&file, "drone/build_failure");
        assert!(p.posts);
        assert_eq!(p.placement, Some(Placement::InMessage));
        for quiet in [
            "drone/build_success",
            "drone/build_created",
            "drone/build_killed",
        ] {
            let p = plan_of(&file, quiet);
            assert!(!p.posts, "{quiet}");
            assert_eq!(p.mention, MentionDecision::Nobody);
        }
    }

    #[test]
    fn finished_posts_final_statuses_only() {
        let file = "[[route]]\nwhen = \"finished\"\nthread = \"always\"\n";
        assert!(!plan_of(file, "drone/build_created").posts);
        assert!(!plan_of(file, "drone/build_updated").posts);
        let p = plan_of(file, "drone/build_killed");
        assert!(p.posts && p.thread);
    }

    #[test]
    fn changed_uses_the_previous_record() {
        use super::super::when::Outcome;
        let routing = parse("[[route]]\nwhen = \"changed\"\n").unwrap();
        let route = &routing.routes[0];
        let success = fixture("drone/build_success");
        let failure = fixture("drone/build_failure");
        let prev = |outcome, number| Record {
            outcome,
            build: BuildOrder { number, created: 0 },
        };
        let p = |hook: &Webhook, r: Option<&Record>| {
            plan(route, &route.destination, &routing.users, hook, r, false).posts
        };
        assert!(
            !p(&success, None),
            "a first build that passes is not a change"
        );
        assert!(p(&failure, None), "a first build that fails is");
        assert!(p(&success, Some(&prev(Outcome::Failing, 188))), "fixed");
        assert!(
            !p(&failure, Some(&prev(Outcome::Failing, 188))),
            "still failing"
        );
        assert!(
            !p(&success, Some(&prev(Outcome::Failing, 190))),
            "older, late"
        );
    }

    #[test]
    fn repo_and_user_events_are_posted_without_pings() {
        let file = format!("{USERS}[[route]]\nwhen = \"failed\"\nmention = \"always\"\n");
        for path in [
            "drone/repo_enabled",
            "drone/user_created",
            "drone/user_deleted",
        ] {
            let p = plan_of(&file, path);
            assert!(p.posts && !p.thread, "{path}");
            assert_eq!(p.allowed_mentions, json!({"parse": []}));
        }
    }
}
