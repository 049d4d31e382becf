//! Drone CI global-webhook payload types.
//!
//! Drone posts one JSON document per event (`user`, `repo` or `build`, each with
//! an action). These types mirror the fields this service uses. Drone versions
//! differ in which fields they send, so every field is optional in practice:
//! a missing field or an explicit `null` becomes the type's default, and fields
//! we do not know are ignored. Parsing never panics; malformed JSON is an `Err`.
//! [`parse`] reads them with one table-driven visitor (drone/decode.rs), which
//! is much smaller in the binary than a derived `Deserialize` per struct.
use std::collections::BTreeMap;

use serde::Serialize;

mod decode;

/// One webhook delivery from Drone.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Webhook {
    /// `user`, `repo` or `build`.
    pub event: String,
    /// `created`, `updated`, `deleted`, `enabled` or `disabled`.
    pub action: String,
    pub user: Option<User>,
    pub repo: Option<Repo>,
    pub build: Option<Build>,
    pub system: Option<System>,
}

/// A Drone user (the actor for user/repo events, also sent with builds).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub email: String,
    pub avatar: String,
    pub admin: bool,
    pub machine: bool,
    pub active: bool,
    pub created: i64,
    pub updated: i64,
}

/// A repository as Drone knows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Repo {
    pub id: i64,
    pub namespace: String,
    pub name: String,
    /// `namespace/name`.
    pub slug: String,
    /// Web page of the repository at the SCM (GitHub, Gitea, ...).
    pub link: String,
    pub default_branch: String,
    pub visibility: String,
    pub private: bool,
    pub active: bool,
    pub counter: i64,
}

/// A build: the unit that gets one Discord message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Build {
    pub id: i64,
    pub repo_id: i64,
    pub number: i64,
    pub parent: i64,
    /// See [`is_final`] and the status list there.
    pub status: String,
    pub error: String,
    /// push, pull_request, tag, promote, rollback, cron, custom.
    pub event: String,
    pub action: String,
    /// Link to the commit / compare / PR page at the SCM.
    pub link: String,
    pub timestamp: i64,
    pub title: String,
    pub message: String,
    pub before: String,
    pub after: String,
    pub r#ref: String,
    pub source_repo: String,
    pub source: String,
    pub target: String,
    pub author_login: String,
    pub author_name: String,
    pub author_email: String,
    pub author_avatar: String,
    pub sender: String,
    /// Cron job name for `cron` builds.
    pub cron: String,
    /// `@hook`, `@cron`, or the login of whoever started the build.
    pub trigger: String,
    /// Promote/rollback target environment.
    pub deploy_to: String,
    pub deploy_id: i64,
    pub params: BTreeMap<String, String>,
    pub started: i64,
    pub finished: i64,
    pub created: i64,
    pub updated: i64,
    pub version: i64,
    pub stages: Vec<Stage>,
}

/// One pipeline of a build.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stage {
    pub id: i64,
    pub number: i64,
    pub name: String,
    pub kind: String,
    pub r#type: String,
    pub status: String,
    pub error: String,
    pub errignore: bool,
    pub exit_code: i64,
    pub machine: String,
    pub os: String,
    pub arch: String,
    pub started: i64,
    pub stopped: i64,
    pub created: i64,
    pub updated: i64,
    pub steps: Vec<Step>,
}

/// One step of a stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Step {
    pub id: i64,
    pub number: i64,
    pub name: String,
    pub status: String,
    pub error: String,
    pub errignore: bool,
    pub exit_code: i64,
    pub started: i64,
    pub stopped: i64,
}

/// The Drone server that sent the hook.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct System {
    pub proto: String,
    pub host: String,
    /// Base URL of the Drone UI, e.g. `https://drone.example.com`.
    pub link: String,
    pub version: String,
}

/// The (event, action) pairs this version understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    UserCreated,
    UserDeleted,
    RepoEnabled,
    RepoDisabled,
    /// Removed from Drone (`DELETE /api/repos/{owner}/{name}?remove=true`).
    RepoDeleted,
    BuildCreated,
    BuildUpdated,
}

impl Webhook {
    /// What this hook is about, or `None` for an event/action this version does not know.
    pub fn kind(&self) -> Option<Kind> {
        match (self.event.as_str(), self.action.as_str()) {
            ("user", "created") => Some(Kind::UserCreated),
            ("user", "deleted") => Some(Kind::UserDeleted),
            ("repo", "enabled") => Some(Kind::RepoEnabled),
            ("repo", "disabled") => Some(Kind::RepoDisabled),
            ("repo", "deleted") => Some(Kind::RepoDeleted),
            ("build", "created") => Some(Kind::BuildCreated),
            ("build", "updated") => Some(Kind::BuildUpdated),
            _ => None,
        }
    }
}

/// Parse a webhook body. Errors (not panics) on malformed JSON, wrongly typed
/// fields, or a top level that is not a JSON object (serde would otherwise
/// accept `[]` as a struct written as a sequence).
pub fn parse(body: &[u8]) -> Result<Webhook, serde_json::Error> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(serde::de::Error::custom(
            "webhook body is not a JSON object",
        ));
    }
    decode::webhook(body)
}

/// Every build/stage/step status Drone uses (drone `core/status.go`).
pub const STATUSES: [&str; 10] = [
    "skipped",
    "blocked",
    "declined",
    "waiting_on_dependencies",
    "pending",
    "running",
    "success",
    "failure",
    "killed",
    "error",
];

/// Every build event Drone uses (drone `core/event.go`). Only tests need the
/// list (the renderer shows any event), so it is not part of the library.
#[cfg(any(test, feature = "test-support"))]
pub(crate) const EVENTS: [&str; 7] = [
    "push",
    "pull_request",
    "tag",
    "promote",
    "rollback",
    "cron",
    "custom",
];

/// True for statuses a build never leaves: a later update must not overwrite them.
pub fn is_final(status: &str) -> bool {
    matches!(
        status,
        "success" | "failure" | "killed" | "error" | "declined" | "skipped"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/test/fixtures/drone/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    /// Moved from `tests/render_golden.rs` when [`EVENTS`] left the library:
    /// every build event has a synthetic fixture, and it is what its name says.
    #[test]
    fn every_build_event_has_a_synthetic_fixture() {
        let synthetic =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test/fixtures/synthetic");
        for e in EVENTS {
            let path = synthetic.join(format!("event_{e}.json"));
            assert!(path.is_file(), "no fixture for event {e}");
            let hook = parse(&std::fs::read(&path).unwrap()).unwrap();
            assert_eq!(hook.build.unwrap().event, e);
        }
    }

    #[test]
    fn every_fixture_parses_to_a_known_kind() {
        let cases = [
            ("build_created", Kind::BuildCreated),
            ("build_updated", Kind::BuildUpdated),
            ("build_success", Kind::BuildUpdated),
            ("build_failure", Kind::BuildUpdated),
            ("build_killed", Kind::BuildUpdated),
            ("repo_enabled", Kind::RepoEnabled),
            ("repo_disabled", Kind::RepoDisabled),
            ("user_created", Kind::UserCreated),
            ("user_deleted", Kind::UserDeleted),
        ];
        for (name, kind) in cases {
            let hook = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(hook.kind(), Some(kind), "{name}");
        }
    }

    #[test]
    fn build_fields_are_read() {
        let hook = parse(&fixture("build_killed")).unwrap();
        let build = hook.build.as_ref().unwrap();
        assert_eq!(build.id, 2088);
        assert_eq!(build.number, 189);
        assert_eq!(build.status, "killed");
        assert_eq!(build.trigger, "@cron");
        assert_eq!(build.cron, "daily_updates");
        assert_eq!(build.r#ref, "refs/heads/stable");
        assert_eq!(build.finished, 1636759700);
        assert_eq!(build.stages.len(), 1);
        assert_eq!(build.stages[0].steps.len(), 2);
        assert_eq!(build.stages[0].steps[1].name, "Update plex server(s)");
        assert_eq!(hook.repo.as_ref().unwrap().slug, "Diesel-Net/plex");
        assert_eq!(hook.system.as_ref().unwrap().version, "2.4.0");
    }

    #[test]
    fn missing_and_null_fields_default() {
        let hook = parse(br#"{"event":"build","action":"updated","build":{"id":7,"stages":null,"params":null,"message":null,"deploy_to":"prod"}}"#).unwrap();
        assert_eq!(hook.kind(), Some(Kind::BuildUpdated));
        let build = hook.build.unwrap();
        assert_eq!(build.id, 7);
        assert_eq!(build.deploy_to, "prod");
        assert!(build.stages.is_empty());
        assert!(build.params.is_empty());
        assert_eq!(build.message, "");
        assert!(hook.repo.is_none() && hook.system.is_none() && hook.user.is_none());

        let empty = parse(b"{}").unwrap();
        assert_eq!(empty.kind(), None);
        assert_eq!(
            parse(br#"{"event":null,"action":null,"build":null}"#).unwrap(),
            Webhook::default()
        );
    }

    #[test]
    fn repo_deleted_is_known() {
        let hook = parse(br#"{"event":"repo","action":"deleted","repo":{"slug":"o/r"}}"#).unwrap();
        assert_eq!(hook.kind(), Some(Kind::RepoDeleted));
    }

    #[test]
    fn unknown_event_or_action_has_no_kind() {
        for body in [
            &br#"{"event":"build","action":"deleted"}"#[..],
            br#"{"event":"secret","action":"created"}"#,
            br#"{"event":"Build","action":"created"}"#,
        ] {
            assert_eq!(parse(body).unwrap().kind(), None);
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"\xff\xfe",
            br#"{"build":{"id":"seven"}}"#,
            br#"{"build":{"stages":[{"steps":{}}]}}"#,
        ] {
            assert!(parse(body).is_err(), "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn final_statuses() {
        let finals: Vec<&str> = STATUSES.iter().copied().filter(|s| is_final(s)).collect();
        assert_eq!(
            finals,
            ["skipped", "declined", "success", "failure", "killed", "error"]
        );
        assert!(!is_final("running"));
        assert!(!is_final(""));
        assert!(!is_final("SUCCESS"));
    }
}
