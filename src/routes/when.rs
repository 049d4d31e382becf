//! `when`: which of a build's events a route posts, and the "changed" record.
//!
//! * `live`: every event: the message is created at `build:created` and
//!   edited as the build runs (today's behaviour);
//! * `finished`: one message, when the build reaches a final status;
//! * `failed`: a message only when the build ends `failure` or `error`;
//! * `changed`: a message when the build's outcome differs from the previous
//!   outcome of the same Drone server, repository, build event and branch or
//!   tag ([`ChangeKey`]; so pull requests are kept apart from pushes).
//!
//! Outcomes are passing (`success`) and failing (`failure`, `error`); killed,
//! skipped and declined builds are neither: they post nothing and leave the
//! record as it was. The first build of a branch counts as changed only when
//! it fails. A build that finishes after a newer one has already finished
//! (by [`BuildOrder`]: build number, then creation time) neither posts nor
//! changes the record.
//!
//! Only the decisions live here, as pure functions of the previous record;
//! keeping the record (in the store, pruned with the message retention) is
//! the relay's, which must write the new record together with the post.
//! `when` is about builds: repository and user events have no outcome and are
//! posted as they come, on every route they match.
use crate::drone::{is_final, Webhook};
use crate::store::{OutcomeRecord, MAX_CHANGE_KEY};

/// A final build's outcome, for `changed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Passing,
    Failing,
}

/// The outcome of a build status: `None` for killed, skipped, declined and
/// every status that is not final.
pub fn outcome(status: &str) -> Option<Outcome> {
    match status {
        "success" => Some(Outcome::Passing),
        "failure" | "error" => Some(Outcome::Failing),
        _ => None,
    }
}

/// Which of two builds of one key is newer: build number first (Drone
/// numbers a repository's builds in order), creation time for equal numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BuildOrder {
    pub number: i64,
    pub created: i64,
}

/// What is kept per [`ChangeKey`]: the last outcome and the build it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Record {
    pub outcome: Outcome,
    pub build: BuildOrder,
}

impl Record {
    /// The record as the store keeps it, written at `at_ms` (wall clock, for
    /// retention only).
    pub fn stored_at(self, at_ms: u64) -> OutcomeRecord {
        OutcomeRecord {
            passing: self.outcome == Outcome::Passing,
            number: self.build.number,
            created: self.build.created,
            at_ms,
        }
    }
}

impl From<OutcomeRecord> for Record {
    fn from(r: OutcomeRecord) -> Record {
        Record {
            outcome: if r.passing {
                Outcome::Passing
            } else {
                Outcome::Failing
            },
            build: BuildOrder {
                number: r.number,
                created: r.created,
            },
        }
    }
}

/// What a record is kept per: Drone server, repository (slug, lowercased:
/// forges ignore its case), build event and branch or tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeKey {
    pub server: String,
    pub repo: String,
    pub build_event: String,
    pub branch: String,
}

impl ChangeKey {
    /// The key of a build event, `None` for other events.
    pub fn of(hook: &Webhook) -> Option<ChangeKey> {
        let build = hook.build.as_ref()?;
        let server = hook
            .system
            .as_ref()
            .map(|s| if s.link.is_empty() { &s.host } else { &s.link })
            .map_or(String::new(), |s| s.trim_end_matches('/').to_string());
        Some(ChangeKey {
            server,
            repo: hook
                .repo
                .as_ref()
                .map_or(String::new(), |r| r.slug.to_lowercase()),
            build_event: build.event.clone(),
            branch: super::branch_of(build).to_string(),
        })
    }

    /// The key the store keeps this record under: the four parts joined by
    /// U+001F (so exactly three of them), or, when a part contains U+001F or
    /// the whole would be longer than [`MAX_CHANGE_KEY`], `sha256:` and the
    /// hex digest of the length-prefixed parts (no U+001F at all). Either
    /// way two different keys never share a store key.
    pub fn store_key(&self) -> String {
        const SEP: char = '\u{1f}';
        let parts = [&self.server, &self.repo, &self.build_event, &self.branch];
        let joined = parts.map(|p| p.as_str()).join("\u{1f}");
        if joined.len() <= MAX_CHANGE_KEY && !parts.iter().any(|p| p.contains(SEP)) {
            return joined;
        }
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        for p in parts {
            h.update(&(p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let mut out = String::from("sha256:");
        for b in h.finish().as_ref() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

/// The `changed` decision for one build event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Changed {
    /// Whether this event is posted.
    pub post: bool,
    /// The record to keep from now on; `None` leaves the previous one.
    pub record: Option<Record>,
}

const UNCHANGED: Changed = Changed {
    post: false,
    record: None,
};

/// The `changed` decision: `previous` is the record of the build's key,
/// `build` this build's place in the order, `status` its status now.
pub fn changed(previous: Option<&Record>, build: BuildOrder, status: &str) -> Changed {
    let Some(now) = outcome(status) else {
        return UNCHANGED;
    };
    let record = Some(Record {
        outcome: now,
        build,
    });
    match previous {
        None => Changed {
            post: now == Outcome::Failing,
            record,
        },
        // The same build again, or an older one finishing late.
        Some(prev) if build <= prev.build => UNCHANGED,
        Some(prev) => Changed {
            post: prev.outcome != now,
            record,
        },
    }
}

/// Whether a route with this `when` posts this status of a build. For
/// `changed`, `previous` and `build` are as for [`changed`]; the others
/// ignore them.
pub fn delivers(
    when: super::When,
    status: &str,
    previous: Option<&Record>,
    build: BuildOrder,
) -> bool {
    use super::When;
    match when {
        When::Live => true,
        When::Finished => is_final(status),
        When::Failed => outcome(status) == Some(Outcome::Failing),
        When::Changed => changed(previous, build, status).post,
    }
}

#[cfg(test)]
mod tests {
    use super::super::When;
    use super::*;
    use crate::drone::{self, STATUSES};

    fn fixture(path: &str) -> Webhook {
        let full = format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
        drone::parse(&std::fs::read(&full).unwrap()).unwrap()
    }

    fn order(number: i64) -> BuildOrder {
        BuildOrder {
            number,
            created: 1_700_000_000 + number,
        }
    }

    fn rec(outcome: Outcome, number: i64) -> Record {
        Record {
            outcome,
            build: order(number),
        }
    }

    #[test]
    fn outcomes() {
        assert_eq!(outcome("success"), Some(Outcome::Passing));
        assert_eq!(outcome("failure"), Some(Outcome::Failing));
        assert_eq!(outcome("error"), Some(Outcome::Failing));
        for s in [
            "killed", "skipped", "declined", "running", "pending", "blocked", "",
        ] {
            assert_eq!(outcome(s), None, "{s}");
        }
    }

    #[test]
    fn live_finished_failed_over_every_status() {
        for status in STATUSES {
            assert!(delivers(When::Live, status, None, order(1)), "{status}");
            assert_eq!(
                delivers(When::Finished, status, None, order(1)),
                is_final(status),
                "{status}"
            );
            assert_eq!(
                delivers(When::Failed, status, None, order(1)),
                matches!(status, "failure" | "error"),
                "{status}"
            );
        }
    }

    #[test]
    fn the_real_fixtures() {
        let of = |name: &str| fixture(&format!("drone/{name}")).build.unwrap().status;
        let (created, running, success, failure, killed) = (
            of("build_created"),
            of("build_updated"),
            of("build_success"),
            of("build_failure"),
            of("build_killed"),
        );
        let d = |when, s: &str| delivers(when, s, None, order(189));
        assert!(d(When::Live, &created) && d(When::Live, &running) && d(When::Live, &killed));
        assert!(!d(When::Finished, &created) && !d(When::Finished, &running));
        assert!(d(When::Finished, &success) && d(When::Finished, &killed));
        assert!(
            !d(When::Failed, &success) && d(When::Failed, &failure) && !d(When::Failed, &killed)
        );
        // First build of the branch: changed only when it fails.
        assert!(!d(When::Changed, &success) && d(When::Changed, &failure));
        assert!(!d(When::Changed, &killed) && !d(When::Changed, &running));
    }

    #[test]
    fn broken_fixed_and_still_failing() {
        // The sequence of the issue's end-to-end test: pass, broken, still failing, killed, fixed.
        let mut record: Option<Record> = None;
        let mut posted = Vec::new();
        for (number, status) in [
            (1, "success"),
            (2, "failure"),
            (3, "error"),
            (4, "killed"),
            (5, "success"),
            (6, "success"),
        ] {
            let c = changed(record.as_ref(), order(number), status);
            if c.post {
                posted.push(number);
            }
            if let Some(r) = c.record {
                record = Some(r);
            }
        }
        assert_eq!(posted, [2, 5], "broken (2) and fixed (5) only");
        assert_eq!(record, Some(rec(Outcome::Passing, 6)));
    }

    #[test]
    fn killed_skipped_and_declined_leave_the_record() {
        let prev = rec(Outcome::Failing, 7);
        for status in ["killed", "skipped", "declined", "running", "pending"] {
            assert_eq!(
                changed(Some(&prev), order(8), status),
                Changed {
                    post: false,
                    record: None
                },
                "{status}"
            );
            assert_eq!(changed(None, order(8), status).record, None, "{status}");
        }
    }

    #[test]
    fn the_first_build_counts_only_when_it_fails() {
        let pass = changed(None, order(1), "success");
        assert!(!pass.post);
        assert_eq!(pass.record, Some(rec(Outcome::Passing, 1)));
        let fail = changed(None, order(1), "error");
        assert!(fail.post);
        assert_eq!(fail.record, Some(rec(Outcome::Failing, 1)));
    }

    #[test]
    fn an_older_build_finishing_late_changes_nothing() {
        // Build 11 passed after 10 failed; then build 9 fails late.
        let prev = rec(Outcome::Passing, 11);
        let late = changed(Some(&prev), order(9), "failure");
        assert_eq!(
            late,
            Changed {
                post: false,
                record: None
            }
        );
        // The same build's final status seen again is not a change either.
        assert_eq!(changed(Some(&prev), order(11), "failure"), late);
        // Equal numbers: creation time decides (a newer build with a reused number).
        let newer = BuildOrder {
            number: 11,
            created: prev.build.created + 1,
        };
        assert!(changed(Some(&prev), newer, "failure").post);
    }

    #[test]
    fn store_keys_are_bounded_and_unambiguous() {
        let key = |server: &str, repo: &str, event: &str, branch: &str| ChangeKey {
            server: server.into(),
            repo: repo.into(),
            build_event: event.into(),
            branch: branch.into(),
        };
        let plain = key("https://drone.example.com", "octo/hello", "push", "main");
        assert_eq!(
            plain.store_key(),
            "https://drone.example.com\u{1f}octo/hello\u{1f}push\u{1f}main"
        );
        // A separator inside a part cannot make two keys collide.
        let a = key("s", "r\u{1f}push", "main", "x");
        let b = key("s", "r", "push\u{1f}main", "x");
        assert_ne!(a.store_key(), b.store_key());
        assert!(a.store_key().starts_with("sha256:"));
        // A long branch is hashed to a bounded key.
        let long = key("s", "r", "push", &"b".repeat(MAX_CHANGE_KEY));
        let hashed = long.store_key();
        assert_eq!(hashed.len(), "sha256:".len() + 64);
        assert_ne!(hashed, key("s", "r", "push", "b").store_key());
        assert!(!hashed.contains('\u{1f}'));
    }

    #[test]
    fn records_round_trip_through_the_store_form() {
        for r in [rec(Outcome::Passing, 3), rec(Outcome::Failing, 4)] {
            let stored = r.stored_at(42);
            assert_eq!(stored.at_ms, 42);
            assert_eq!(Record::from(stored), r);
        }
        assert!(rec(Outcome::Passing, 3).stored_at(1).passing);
    }

    #[test]
    fn keys_keep_pull_requests_apart_from_pushes() {
        let push = ChangeKey::of(&fixture("synthetic/event_push")).unwrap();
        let pr = ChangeKey::of(&fixture("synthetic/event_pull_request")).unwrap();
        assert_eq!(push.repo, "octo-org/hello-world");
        assert_eq!((push.branch.as_str(), pr.branch.as_str()), ("main", "main"));
        assert_ne!(push, pr, "same branch, different build event");
        let tag = ChangeKey::of(&fixture("synthetic/event_tag")).unwrap();
        assert_eq!(tag.branch, "v1.4.0");
        let cron = ChangeKey::of(&fixture("drone/build_failure")).unwrap();
        assert_eq!(
            (
                cron.repo.as_str(),
                cron.build_event.as_str(),
                cron.branch.as_str()
            ),
            ("diesel-net/plex", "cron", "stable")
        );
        assert!(!cron.server.is_empty());
        assert!(ChangeKey::of(&fixture("drone/repo_enabled")).is_none());
    }
}
