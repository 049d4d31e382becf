//! Routing for teams: which destinations an event goes to, and what each gets.
//!
//! The routing file (`--config PATH` / `CONFIG_FILE`, TOML) holds a `[users]`
//! map (Drone login or commit e-mail → Discord user id, for mentions) and
//! `[[route]]` entries (a channel or a named webhook, filters on repository,
//! branch and event, and the `when`, `mention` and `thread` modes). Without a
//! file, or with one that has no `[[route]]`, behaviour is exactly the single
//! channel of `DISCORD_CHANNEL_ID`, live.
//!
//! Everything here is pure: the file's text goes in and a [`Routing`] comes
//! out; a [`Routing`] and a decoded Drone event go in and the destinations,
//! each with the route that decided it and that route's decisions, come out.
//! The parts:
//!
//! * `config`: reading the TOML (unknown keys and bad values are errors
//!   naming the line and the key);
//! * `glob`: `*` within a part, `**` across parts;
//! * `matching`: the routing rules (file order, first match per destination);
//! * `when`: `live | finished | failed | changed` and the "changed" record;
//! * `mention`: who to ping, and the `allowed_mentions` that says so;
//! * `plan`: what one destination gets for one event (the dry run prints it);
//! * `destination`: channels and named webhooks, and the webhook's credential;
//! * `live`: the routing `serve` applies now, swapped on `SIGHUP`.
//!
//! `serve`'s relay applies these decisions (`relay::destination`); `check`
//! and `route` show them.
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use crate::config::ConfigError;

mod config;
mod destination;
mod glob;
pub mod live;
mod matching;
mod mention;
mod plan;
mod when;

pub use config::parse;
pub use destination::{webhook_sources, webhook_url, Destination};
pub use glob::{Case, Glob};
pub use matching::{branch_of, check as check_route, matching, Match, Miss};
pub use mention::{allowed_mentions, mention, MentionDecision};
pub use plan::{plan, Placement, Plan};
pub use when::{changed, delivers, outcome, BuildOrder, ChangeKey, Changed, Outcome, Record};

/// A routing file, checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    pub users: Users,
    /// In file order: the order routes are tried in.
    pub routes: Vec<Route>,
    /// `[drone]`: who may press Restart.
    pub restart: crate::interactions::RestartAllow,
}

impl Routing {
    /// Every route posts through a webhook, and there is one: a setup that
    /// needs no bot (no token, no presence).
    pub fn webhook_only(&self) -> bool {
        !self.routes.is_empty()
            && self
                .routes
                .iter()
                .all(|r| matches!(r.destination, Destination::Webhook(_)))
    }
}

/// One `[[route]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// 1-based position in the file (`route 2`).
    pub number: usize,
    /// The line of its `[[route]]` header.
    pub line: usize,
    pub destination: Destination,
    /// Globs on the repository slug; `None` matches every repository.
    pub repos: Option<Vec<Glob>>,
    /// Globs on the branch or tag; `None` matches every branch.
    pub branches: Option<Vec<Glob>>,
    /// Drone webhook kinds; `None` matches every kind.
    pub events: Option<Vec<EventKind>>,
    /// Build events; `None` matches every build event.
    pub build_events: Option<Vec<BuildEvent>>,
    pub when: When,
    pub mention: Mention,
    pub thread: Thread,
}

impl Route {
    /// A route with every default: all events to `DISCORD_CHANNEL_ID`, live,
    /// no mention, no thread (what a `[[route]]` with no keys means, and the
    /// built-in route without a file).
    pub fn defaults(number: usize, line: usize) -> Route {
        Route {
            number,
            line,
            destination: Destination::Default,
            repos: None,
            branches: None,
            events: None,
            build_events: None,
            when: When::Live,
            mention: Mention::Never,
            thread: Thread::Never,
        }
    }
}

/// `[users]`: Drone login or commit e-mail → Discord user id. Keys compare
/// case-insensitively (forges' logins and e-mail addresses do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    ids: HashMap<String, String>,
}

impl Users {
    /// Add one mapping; `false` when a key that differs only in case is there.
    pub fn insert(&mut self, key: &str, id: &str) -> bool {
        self.ids
            .insert(key.to_lowercase(), id.to_string())
            .is_none()
    }

    /// The Discord user id for a login or e-mail, if mapped.
    pub fn get(&self, key: &str) -> Option<&str> {
        if key.is_empty() {
            return None;
        }
        self.ids.get(&key.to_lowercase()).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Keyword enums of the file: their spelling, and the list for error messages.
macro_rules! keywords {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every spelling, in the order the README lists them.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn from_word(word: &str) -> Option<$name> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }

            pub fn word(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.word())
            }
        }
    };
}

keywords!(
    /// Drone's webhook kinds (`events`).
    EventKind { Build = "build", Repo = "repo", User = "user" }
);
keywords!(
    /// Drone's build events (`build_events`; drone `core/event.go`).
    BuildEvent {
        Push = "push",
        PullRequest = "pull_request",
        Tag = "tag",
        Promote = "promote",
        Rollback = "rollback",
        Cron = "cron",
        Custom = "custom",
    }
);
keywords!(
    /// When a build is posted (`when`).
    When { Live = "live", Finished = "finished", Failed = "failed", Changed = "changed" }
);
keywords!(
    /// Whether the build's author is pinged (`mention`).
    Mention { Never = "never", Failed = "failed", Always = "always" }
);
keywords!(
    /// Whether a thread is started from the build message (`thread`).
    Thread { Never = "never", Failed = "failed", Always = "always" }
);

/// Read and check the routing file at `path` (at most 64 KiB, as every file
/// the settings name; fifty repositories' routes fit many times over). Errors name the file and the
/// line (`configuration error: /etc/drone-discord/config.toml:7: route 2: ...`).
pub fn load(path: &Path) -> Result<Routing, ConfigError> {
    let what = path.display().to_string();
    let text =
        crate::config::read_small_file(path).map_err(|e| ConfigError::new("CONFIG_FILE", e))?;
    parse(&text).map_err(|e| ConfigError::new(format!("{what}:{}", e.line), e.problem))
}

/// A problem in the routing file: its line (1-based) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

impl std::error::Error for FileError {}
