//! `mention`: whether a build's author is pinged, who that is, and the
//! `allowed_mentions` that lets exactly that ping through.
//!
//! * `never` pings nobody; `failed` pings when the build ends `failure` or
//!   `error`; `always` on every final status.
//! * The author is looked up in `[users]` by `build.author_login`, then
//!   `build.sender`, then `build.author_email`. An author with no mapping is
//!   named in plain text and not pinged.
//! * At most one ping per build and destination: the caller says whether
//!   this build already pinged there (`already_pinged`); messages added later
//!   never ping.
//! * A ping carries `allowed_mentions: {"users": [<that id>]}` and nothing
//!   else (never roles, never `@everyone`); every other message carries
//!   `{"parse": []}`, so no text Drone sent can ping anyone.
use serde_json::{json, Value};

use super::{Mention, Users};
use crate::drone::{is_final, Build};

/// Who is pinged for one build event at one destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MentionDecision {
    /// Nobody: `never`, an outcome the mode does not ping for, a build still
    /// running, or a ping already sent.
    Nobody,
    /// Ping this Discord user, found by this build field.
    Ping {
        user_id: String,
        /// `author_login`, `sender` or `author_email`.
        found_by: &'static str,
        /// The value that was looked up.
        who: String,
    },
    /// The mode asks for a ping but `[users]` has no entry: name `who` in plain text.
    Unmapped { who: String },
}

/// The mention decision for `build` (its status now) on a route with `mode`.
pub fn mention(
    mode: Mention,
    users: &Users,
    build: &Build,
    already_pinged: bool,
) -> MentionDecision {
    let wanted = match mode {
        Mention::Never => false,
        Mention::Failed => matches!(build.status.as_str(), "failure" | "error"),
        Mention::Always => is_final(&build.status),
    };
    if !wanted || already_pinged {
        return MentionDecision::Nobody;
    }
    for (found_by, key) in [
        ("author_login", &build.author_login),
        ("sender", &build.sender),
        ("author_email", &build.author_email),
    ] {
        if let Some(id) = users.get(key) {
            return MentionDecision::Ping {
                user_id: id.to_string(),
                found_by,
                who: key.clone(),
            };
        }
    }
    let who = [
        &build.author_login,
        &build.sender,
        &build.author_name,
        &build.author_email,
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .cloned()
    .unwrap_or_else(|| "someone".to_string());
    MentionDecision::Unmapped { who }
}

/// The `allowed_mentions` of a message: the one user a ping is for, or none.
pub fn allowed_mentions(decision: &MentionDecision) -> Value {
    match decision {
        MentionDecision::Ping { user_id, .. } => json!({ "users": [user_id] }),
        _ => json!({ "parse": [] }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone;

    fn build(path: &str) -> Build {
        let full = format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
        drone::parse(&std::fs::read(&full).unwrap())
            .unwrap()
            .build
            .unwrap()
    }

    fn users(pairs: &[(&str, &str)]) -> Users {
        let mut u = Users::default();
        for (k, v) in pairs {
            assert!(u.insert(k, v));
        }
        u
    }

    #[test]
    fn failed_pings_on_failure_and_error_only() {
        let u = users(&[("anon", "80351110224678912")]);
        let failure = build("drone/build_failure");
        let d = mention(Mention::Failed, &u, &failure, false);
        assert_eq!(
            d,
            MentionDecision::Ping {
                user_id: "80351110224678912".into(),
                found_by: "author_login",
                who: "anon".into()
            }
        );
        assert_eq!(
            allowed_mentions(&d),
            json!({"users": ["80351110224678912"]})
        );
        let error = build("synthetic/status_error");
        let mapped = users(&[(&error.author_login, "2")]);
        assert!(matches!(
            mention(Mention::Failed, &mapped, &error, false),
            MentionDecision::Ping { user_id, .. } if user_id == "2"
        ));
        for quiet in [
            "drone/build_success",
            "drone/build_killed",
            "drone/build_created",
            "drone/build_updated",
        ] {
            let d = mention(Mention::Failed, &u, &build(quiet), false);
            assert_eq!(d, MentionDecision::Nobody, "{quiet}");
            assert_eq!(allowed_mentions(&d), json!({"parse": []}));
        }
    }

    #[test]
    fn always_pings_every_final_status_never_pings_none() {
        let u = users(&[("anon", "1")]);
        for (path, pinged) in [
            ("drone/build_success", true),
            ("drone/build_failure", true),
            ("drone/build_killed", true),
            ("synthetic/status_skipped", true),
            ("drone/build_created", false),
            ("drone/build_updated", false),
        ] {
            let b = build(path);
            let d = mention(
                Mention::Always,
                &users(&[(&b.author_login, "1")]),
                &b,
                false,
            );
            assert_eq!(matches!(d, MentionDecision::Ping { .. }), pinged, "{path}");
            assert_eq!(
                mention(Mention::Never, &u, &b, false),
                MentionDecision::Nobody
            );
        }
    }

    #[test]
    fn lookup_order_login_sender_email() {
        let mut b = build("synthetic/status_failure");
        b.author_login = "alice".into();
        b.sender = "bob".into();
        b.author_email = "carol@example.com".into();
        let found = |u: &Users| match mention(Mention::Failed, u, &b, false) {
            MentionDecision::Ping {
                user_id, found_by, ..
            } => (user_id, found_by),
            other => panic!("{other:?}"),
        };
        let all = users(&[("alice", "1"), ("bob", "2"), ("Carol@Example.com", "3")]);
        assert_eq!(found(&all), ("1".into(), "author_login"));
        assert_eq!(
            found(&users(&[("bob", "2"), ("carol@example.com", "3")])),
            ("2".into(), "sender")
        );
        assert_eq!(
            found(&users(&[("CAROL@example.com", "3")])),
            ("3".into(), "author_email")
        );
        // Logins compare without case.
        assert_eq!(
            found(&users(&[("ALICE", "9")])),
            ("9".into(), "author_login")
        );
    }

    #[test]
    fn unmapped_authors_are_named_not_pinged() {
        let b = build("drone/build_failure");
        let d = mention(Mention::Failed, &users(&[("someone-else", "1")]), &b, false);
        assert_eq!(d, MentionDecision::Unmapped { who: "anon".into() });
        assert_eq!(allowed_mentions(&d), json!({"parse": []}));
        // Empty fields never match an entry, and the name falls back in order.
        let mut b = b;
        b.author_login.clear();
        b.sender.clear();
        assert!(matches!(
            mention(Mention::Failed, &users(&[]), &b, false),
            MentionDecision::Unmapped { who } if who == b.author_name || who == b.author_email
        ));
        b.author_name.clear();
        b.author_email.clear();
        assert_eq!(
            mention(Mention::Failed, &users(&[]), &b, false),
            MentionDecision::Unmapped {
                who: "someone".into()
            }
        );
    }

    #[test]
    fn at_most_one_ping_per_build_and_destination() {
        let u = users(&[("anon", "1")]);
        let b = build("drone/build_failure");
        assert!(matches!(
            mention(Mention::Always, &u, &b, false),
            MentionDecision::Ping { .. }
        ));
        assert_eq!(
            mention(Mention::Always, &u, &b, true),
            MentionDecision::Nobody
        );
        assert_eq!(
            mention(Mention::Failed, &u, &b, true),
            MentionDecision::Nobody
        );
    }
}
