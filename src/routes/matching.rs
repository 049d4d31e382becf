//! Which routes an event matches, and which route decides for each destination.
//!
//! The rules (README, "Routing, mentions and threads"):
//!
//! * routes are tried in file order, and an event goes to every destination
//!   whose route matches; when several matching routes name the same
//!   destination, the first decides and the later ones are ignored for it, so
//!   one destination gets one message per build;
//! * a filter that does not apply to an event kind does not exclude it:
//!   `repos` applies to build and repo events, `branches` and `build_events`
//!   to builds only, and user events are filtered by `events` only;
//! * a tag build's branch is the tag name from `build.ref`
//!   (`refs/tags/<name>`; `target` is empty for GitHub tags), and a pull
//!   request's is its target branch, the one it merges into;
//! * a route without `channel` or `webhook` posts to `DISCORD_CHANNEL_ID`;
//! * an event that matches no route is not posted.
use super::{Destination, Route, Routing};
use crate::drone::{Build, Webhook};

/// One destination an event goes to, and the route that decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match<'r> {
    /// The destination, `Default` resolved to `DISCORD_CHANNEL_ID` when known.
    pub destination: Destination,
    pub route: &'r Route,
    /// Later matching routes to the same destination, ignored for it.
    pub shadowed: Vec<&'r Route>,
}

/// Why a route does not match an event: the first filter that excludes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Miss {
    /// Not a `build`, `repo` or `user` event.
    UnknownKind,
    Events,
    Repos,
    Branches,
    BuildEvents,
}

impl Miss {
    /// The key that excluded the event.
    pub fn key(self) -> &'static str {
        match self {
            Miss::UnknownKind => "event kind",
            Miss::Events => "events",
            Miss::Repos => "repos",
            Miss::Branches => "branches",
            Miss::BuildEvents => "build_events",
        }
    }
}

/// The destinations `hook` goes to, in the order of their deciding routes.
/// `default_channel` is `DISCORD_CHANNEL_ID` when set.
pub fn matching<'r>(
    routing: &'r Routing,
    hook: &Webhook,
    default_channel: Option<&str>,
) -> Vec<Match<'r>> {
    let mut out: Vec<Match<'r>> = Vec::new();
    for route in &routing.routes {
        if check(route, hook).is_err() {
            continue;
        }
        let destination = route.destination.resolve(default_channel);
        match out.iter_mut().find(|m| m.destination == destination) {
            Some(earlier) => earlier.shadowed.push(route),
            None => out.push(Match {
                destination,
                route,
                shadowed: Vec::new(),
            }),
        }
    }
    out
}

/// Whether `route`'s filters let `hook` through, or the first that does not.
pub fn check(route: &Route, hook: &Webhook) -> Result<(), Miss> {
    use super::EventKind;
    let kind = EventKind::from_word(&hook.event).ok_or(Miss::UnknownKind)?;
    if route.events.as_ref().is_some_and(|e| !e.contains(&kind)) {
        return Err(Miss::Events);
    }
    if kind == EventKind::User {
        return Ok(());
    }
    if let Some(repos) = &route.repos {
        let slug = hook.repo.as_ref().map_or("", |r| r.slug.as_str());
        if !repos.iter().any(|g| g.matches(slug)) {
            return Err(Miss::Repos);
        }
    }
    if kind == EventKind::Repo {
        return Ok(());
    }
    let build = hook.build.as_ref();
    if let Some(branches) = &route.branches {
        let branch = build.map_or("", branch_of);
        if !branches.iter().any(|g| g.matches(branch)) {
            return Err(Miss::Branches);
        }
    }
    if let Some(events) = &route.build_events {
        let event = build.map_or("", |b| b.event.as_str());
        if !events.iter().any(|e| e.word() == event) {
            return Err(Miss::BuildEvents);
        }
    }
    Ok(())
}

/// The branch or tag a build's `branches` filter sees: a tag's name from
/// `refs/tags/<name>`; else `target` (the pushed branch, or the branch a pull
/// request merges into; promotions and rollbacks carry their branch there);
/// else the branch from `refs/heads/<name>`.
pub fn branch_of(build: &Build) -> &str {
    if let Some(tag) = build.r#ref.strip_prefix("refs/tags/") {
        return tag;
    }
    if !build.target.is_empty() {
        return &build.target;
    }
    build.r#ref.strip_prefix("refs/heads/").unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;
    use crate::drone;

    fn fixture(path: &str) -> Webhook {
        let full = format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
        drone::parse(&bytes).unwrap()
    }

    /// The route numbers that decide, with their destinations.
    fn decided(file: &str, hook: &Webhook) -> Vec<(usize, String)> {
        let routing = parse(file).unwrap();
        matching(&routing, hook, Some("100"))
            .iter()
            .map(|m| (m.route.number, m.destination.to_string()))
            .collect()
    }

    #[test]
    fn no_routes_no_destinations() {
        assert!(decided("", &fixture("drone/build_created")).is_empty());
    }

    #[test]
    fn routes_by_repository_and_branch() {
        let file = r#"
[[route]]
channel = "201"
repos = ["Diesel-Net/*"]
branches = ["stable"]

[[route]]
channel = "202"
repos = ["octo-org/*"]
branches = ["main", "release/*"]

[[route]]
channel = "203"
repos = ["diesel-net/PLEX"]
"#;
        // Diesel-Net/plex, cron on stable: routes 1 and 3 (slug case ignored).
        assert_eq!(
            decided(file, &fixture("drone/build_failure")),
            [(1, "channel 201".into()), (3, "channel 203".into())]
        );
        // octo-org/hello-world push on main: route 2 only.
        assert_eq!(
            decided(file, &fixture("synthetic/event_push")),
            [(2, "channel 202".into())]
        );
        // A repo event: repos applies, branches does not exclude it.
        assert_eq!(
            decided(file, &fixture("drone/repo_enabled")),
            [(1, "channel 201".into()), (3, "channel 203".into())]
        );
        // A user event: neither repos nor branches apply.
        assert_eq!(
            decided(file, &fixture("drone/user_created")),
            [
                (1, "channel 201".into()),
                (2, "channel 202".into()),
                (3, "channel 203".into())
            ]
        );
    }

    #[test]
    fn the_first_matching_route_decides_per_destination() {
        let file = r#"
[[route]]
channel = "100"
when = "failed"
repos = ["nobody/*"]

[[route]]
channel = "100"
when = "finished"

[[route]]
when = "live"

[[route]]
webhook = "ops"

[[route]]
channel = "300"
"#;
        let routing = parse(file).unwrap();
        let hook = fixture("drone/build_success");
        let m = matching(&routing, &hook, Some("100"));
        // Route 1 does not match; route 2 decides for channel 100, and route 3
        // (DISCORD_CHANNEL_ID = 100) is the same destination, so it is ignored.
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].route.number, 2);
        assert_eq!(m[0].destination, Destination::Channel("100".into()));
        let shadowed: Vec<usize> = m[0].shadowed.iter().map(|r| r.number).collect();
        assert_eq!(shadowed, [3]);
        assert_eq!(m[1].destination, Destination::Webhook("ops".into()));
        assert_eq!(m[2].destination, Destination::Channel("300".into()));
        // Without DISCORD_CHANNEL_ID known, the default stays its own destination.
        let m = matching(&routing, &hook, None);
        assert_eq!(m.len(), 4);
        assert_eq!(m[1].destination, Destination::Default);
    }

    #[test]
    fn events_filter_every_kind() {
        let file = "[[route]]\nevents = [\"build\"]\n[[route]]\nchannel = \"2\"\nevents = [\"user\", \"repo\"]\n";
        assert_eq!(decided(file, &fixture("drone/build_killed"))[0].0, 1);
        assert_eq!(decided(file, &fixture("drone/user_deleted"))[0].0, 2);
        assert_eq!(decided(file, &fixture("drone/repo_disabled"))[0].0, 2);
        assert_eq!(decided(file, &fixture("synthetic/repo_deleted"))[0].0, 2);
    }

    #[test]
    fn build_events_apply_to_builds_only() {
        let file = "[[route]]\nbuild_events = [\"push\", \"tag\"]\n";
        assert_eq!(decided(file, &fixture("synthetic/event_push")).len(), 1);
        assert_eq!(decided(file, &fixture("synthetic/event_tag")).len(), 1);
        for e in ["cron", "custom", "promote", "rollback", "pull_request"] {
            assert!(
                decided(file, &fixture(&format!("synthetic/event_{e}"))).is_empty(),
                "{e}"
            );
        }
        assert_eq!(decided(file, &fixture("drone/repo_enabled")).len(), 1);
        assert_eq!(decided(file, &fixture("drone/user_created")).len(), 1);
    }

    #[test]
    fn tags_match_their_name_and_pull_requests_their_target() {
        let tag = fixture("synthetic/event_tag");
        assert_eq!(
            tag.build.as_ref().unwrap().target,
            "",
            "GitHub tags have no target"
        );
        assert_eq!(branch_of(tag.build.as_ref().unwrap()), "v1.4.0");
        assert_eq!(decided("[[route]]\nbranches = [\"v*\"]\n", &tag).len(), 1);
        assert!(decided("[[route]]\nbranches = [\"main\"]\n", &tag).is_empty());
        assert!(decided("[[route]]\nbranches = [\"refs/tags/*\"]\n", &tag).is_empty());

        let pr = fixture("synthetic/event_pull_request");
        let b = pr.build.as_ref().unwrap();
        assert_eq!(
            (b.source.as_str(), b.target.as_str()),
            ("feature/login", "main")
        );
        assert_eq!(branch_of(b), "main");
        assert_eq!(decided("[[route]]\nbranches = [\"main\"]\n", &pr).len(), 1);
        assert!(decided("[[route]]\nbranches = [\"feature/*\"]\n", &pr).is_empty());

        // The real (cron) fixtures: branch from target.
        let cron = fixture("drone/build_created");
        assert_eq!(branch_of(cron.build.as_ref().unwrap()), "stable");
        // Without target, the branch comes from refs/heads/.
        let mut b = cron.build.clone().unwrap();
        b.target.clear();
        assert_eq!(branch_of(&b), "stable");
        b.r#ref = "refs/pull/3/head".into();
        assert_eq!(branch_of(&b), "");
    }

    #[test]
    fn branches_are_case_sensitive_and_globbed() {
        let push = fixture("synthetic/event_push");
        assert!(decided("[[route]]\nbranches = [\"Main\"]\n", &push).is_empty());
        assert_eq!(decided("[[route]]\nbranches = [\"**\"]\n", &push).len(), 1);
        assert_eq!(
            decided("[[route]]\nbranches = [\"dev\", \"ma*\"]\n", &push).len(),
            1
        );
    }

    #[test]
    fn unknown_kinds_and_missing_objects_match_nothing_that_filters_them() {
        let unknown = fixture("synthetic/unknown_event");
        assert!(decided("[[route]]\n", &unknown).is_empty());
        // A build without repo or build objects: filters that need them exclude it.
        let bare = drone::parse(br#"{"event":"build","action":"created"}"#).unwrap();
        assert!(decided("[[route]]\nrepos = [\"*/*\"]\n", &bare).is_empty());
        assert!(decided("[[route]]\nbranches = [\"main\"]\n", &bare).is_empty());
        assert_eq!(decided("[[route]]\nbranches = [\"**\"]\n", &bare).len(), 1);
        let routing = parse("[[route]]\nrepos = [\"x/*\"]\n").unwrap();
        assert_eq!(check(&routing.routes[0], &bare), Err(Miss::Repos));
        assert_eq!(Miss::Repos.key(), "repos");
    }
}
