//! Reading the routing file: TOML text → a checked [`Routing`].
//!
//! The `toml` crate parses the text into its spanned tree (`DeTable`: every
//! key and value with its byte range), and this file walks that tree by hand
//! instead of deriving `Deserialize`: the derive's code is larger in the
//! binary, and walking the tree lets every error name the line of the key or
//! value it is about (`route 2: when: "sometimes" is not one of: live, ...`),
//! which serde's messages do not do for values checked after parsing (ids,
//! globs, keywords). Unknown keys are errors, so a typo (`chanel`) is never
//! silently a route to the default channel.
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::destination::{check_webhook_name, Destination};
use super::glob::{Case, Glob};
use super::{BuildEvent, EventKind, FileError, Mention, Route, Routing, Thread, Users, When};
use crate::discord::snowflake::is_snowflake;

/// The keys a `[[route]]` may have, in the README's order.
const ROUTE_KEYS: [&str; 9] = [
    "channel",
    "webhook",
    "repos",
    "branches",
    "events",
    "build_events",
    "when",
    "mention",
    "thread",
];

/// Parse and check a routing file's text.
pub fn parse(text: &str) -> Result<Routing, FileError> {
    let doc = DeTable::parse(text).map_err(|e| FileError {
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        problem: format!("not valid TOML: {}", e.message()),
    })?;
    let at = Lines { text };
    let mut routing = Routing::default();
    for (key, value) in in_file_order(doc.get_ref()) {
        match key.get_ref().as_ref() {
            "users" => routing.users = users(&at, value)?,
            "route" => routing.routes = routes(&at, value)?,
            "drone" => routing.restart = drone(&at, value)?,
            other => {
                return Err(at.error(
                    key,
                    format!(
                        "unknown key {other:?}; the file holds [users], [drone] and [[route]] only"
                    ),
                ))
            }
        }
    }
    Ok(routing)
}

/// Byte offsets → line numbers, for errors.
struct Lines<'t> {
    text: &'t str,
}

impl Lines<'_> {
    fn error<T>(&self, at: &Spanned<T>, problem: String) -> FileError {
        FileError {
            line: line_of(self.text, at.span().start),
            problem,
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    1 + text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

/// A table's entries in the order they appear in the file (the map keeps
/// them sorted by key), so the first problem reported is the first in the file.
fn in_file_order<'a, 'i>(table: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<Entry> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

fn users(at: &Lines, value: &Spanned<DeValue>) -> Result<Users, FileError> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(at.error(
            value,
            "users: must be a table: [users] then lines like octocat = \"80351110224678912\""
                .into(),
        ));
    };
    let mut users = Users::default();
    for (key, id) in in_file_order(table) {
        let name = key.get_ref().as_ref();
        let what = format!("[users] {name:?}");
        if name.trim().is_empty() {
            return Err(at.error(key, "[users]: an empty login or e-mail".into()));
        }
        let id_text = match id.get_ref() {
            DeValue::String(s) => s.as_ref(),
            DeValue::Integer(_) => {
                return Err(at.error(
                    id,
                    format!(
                        "{what}: write the Discord user id in quotes, e.g. \"80351110224678912\""
                    ),
                ))
            }
            _ => return Err(at.error(id, format!("{what}: must be a Discord user id in quotes"))),
        };
        if !is_snowflake(id_text) {
            return Err(at.error(
                id,
                format!(
                    "{what}: {id_text:?} is not a Discord id (digits only, e.g. 80351110224678912)"
                ),
            ));
        }
        if !users.insert(name, id_text) {
            return Err(at.error(
                key,
                format!("{what}: given twice (logins and e-mails compare without case)"),
            ));
        }
    }
    Ok(users)
}

/// `[drone]`: `restart_roles` and `restart_users`, lists of Discord ids.
fn drone(
    at: &Lines,
    value: &Spanned<DeValue>,
) -> Result<crate::interactions::RestartAllow, FileError> {
    let DeValue::Table(table) = value.get_ref() else {
        return Err(at.error(
            value,
            "drone: must be a table: [drone] then restart_roles = [...]".into(),
        ));
    };
    let mut allow = crate::interactions::RestartAllow::default();
    let snowflake = |s: &str| {
        if is_snowflake(s) {
            Ok(s.to_string())
        } else {
            Err(format!(
                "{s:?} is not a Discord id (digits only, e.g. 80351110224678912)"
            ))
        }
    };
    for (key, v) in in_file_order(table) {
        match key.get_ref().as_ref() {
            "restart_roles" => allow.roles = list(at, v, "[drone] restart_roles", snowflake)?,
            "restart_users" => allow.users = list(at, v, "[drone] restart_users", snowflake)?,
            other => {
                return Err(at.error(
                    key,
                    format!(
                        "[drone]: unknown key {other:?}; known keys: restart_roles, restart_users"
                    ),
                ))
            }
        }
    }
    Ok(allow)
}

fn routes(at: &Lines, value: &Spanned<DeValue>) -> Result<Vec<Route>, FileError> {
    let DeValue::Array(list) = value.get_ref() else {
        return Err(at.error(
            value,
            "route: write [[route]] (double brackets), once per route".into(),
        ));
    };
    let mut routes = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let number = i + 1;
        let DeValue::Table(table) = item.get_ref() else {
            return Err(at.error(item, format!("route {number}: must be a table ([[route]])")));
        };
        routes.push(route(at, number, item, table)?);
    }
    Ok(routes)
}

fn route(
    at: &Lines,
    number: usize,
    item: &Spanned<DeValue>,
    table: &DeTable,
) -> Result<Route, FileError> {
    let mut r = Route::defaults(number, line_of(at.text, item.span().start));
    let mut destination_key: Option<&str> = None;
    for (key, value) in in_file_order(table) {
        let name = key.get_ref().as_ref();
        let ctx = format!("route {number}: {name}");
        match name {
            "channel" | "webhook" => {
                if let Some(first) = destination_key {
                    return Err(at.error(
                        key,
                        format!(
                            "route {number}: has both {first} and {name}; a route posts to one"
                        ),
                    ));
                }
                let text = string(at, value, &ctx)?;
                r.destination = if name == "channel" {
                    if !is_snowflake(text) {
                        return Err(at.error(
                            value,
                            format!("{ctx}: {text:?} is not a Discord id (digits only, e.g. 123456789012345678)"),
                        ));
                    }
                    Destination::Channel(text.to_string())
                } else {
                    check_webhook_name(text).map_err(|e| at.error(value, format!("{ctx}: {e}")))?;
                    Destination::Webhook(text.to_string())
                };
                destination_key = Some(if name == "channel" {
                    "channel"
                } else {
                    "webhook"
                });
            }
            "repos" => {
                r.repos = Some(list(at, value, &ctx, |s| Glob::new(s, Case::Insensitive))?);
            }
            "branches" => {
                r.branches = Some(list(at, value, &ctx, |s| Glob::new(s, Case::Sensitive))?);
            }
            "events" => {
                r.events = Some(list(
                    at,
                    value,
                    &ctx,
                    keyword(EventKind::from_word, EventKind::WORDS),
                )?)
            }
            "build_events" => {
                r.build_events = Some(list(
                    at,
                    value,
                    &ctx,
                    keyword(BuildEvent::from_word, BuildEvent::WORDS),
                )?)
            }
            "when" => r.when = one(at, value, &ctx, keyword(When::from_word, When::WORDS))?,
            "mention" => {
                r.mention = one(at, value, &ctx, keyword(Mention::from_word, Mention::WORDS))?
            }
            "thread" => r.thread = one(at, value, &ctx, keyword(Thread::from_word, Thread::WORDS))?,
            other => {
                return Err(at.error(
                    key,
                    format!(
                        "route {number}: unknown key {other:?}; a route has: {}",
                        ROUTE_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    Ok(r)
}

/// A checker for one keyword enum: the word, or why it is not one.
fn keyword<T>(
    from_word: fn(&str) -> Option<T>,
    words: &'static [&'static str],
) -> impl Fn(&str) -> Result<T, String> {
    move |s| from_word(s).ok_or_else(|| format!("{s:?} is not one of: {}", words.join(", ")))
}

fn string<'v>(at: &Lines, value: &'v Spanned<DeValue>, ctx: &str) -> Result<&'v str, FileError> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.as_ref()),
        _ => Err(at.error(value, format!("{ctx}: must be a string in quotes"))),
    }
}

fn one<T>(
    at: &Lines,
    value: &Spanned<DeValue>,
    ctx: &str,
    check: impl Fn(&str) -> Result<T, String>,
) -> Result<T, FileError> {
    let s = string(at, value, ctx)?;
    check(s).map_err(|e| at.error(value, format!("{ctx}: {e}")))
}

/// A non-empty list of strings, each checked.
fn list<T>(
    at: &Lines,
    value: &Spanned<DeValue>,
    ctx: &str,
    check: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, FileError> {
    let DeValue::Array(items) = value.get_ref() else {
        return Err(at.error(
            value,
            format!("{ctx}: must be a list in brackets, e.g. [\"a\", \"b\"]"),
        ));
    };
    if items.iter().next().is_none() {
        return Err(at.error(
            value,
            format!("{ctx}: an empty list matches nothing; leave the key out to match all"),
        ));
    }
    items
        .iter()
        .map(|item| one(at, item, ctx, &check))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[users]                             # Drone login or commit e-mail -> Discord user id
octocat = "80351110224678912"
"octocat@example.com" = "80351110224678912"

[[route]]
channel = "123456789012345678"
repos = ["Diesel-Net/*"]
branches = ["main", "release/*"]
events = ["build", "repo", "user"]
build_events = ["push", "pull_request", "tag", "promote", "rollback", "cron", "custom"]
when = "live"
mention = "failed"
thread = "failed"

[[route]]
webhook = "ops"
when = "changed"

[[route]]
"#;

    fn err(text: &str) -> FileError {
        match parse(text) {
            Err(e) => e,
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn the_issue_example_parses() {
        let r = parse(EXAMPLE).unwrap();
        assert_eq!(r.users.len(), 2);
        assert_eq!(r.users.get("OctoCat"), Some("80351110224678912"));
        assert_eq!(
            r.users.get("octocat@EXAMPLE.com"),
            Some("80351110224678912")
        );
        assert_eq!(r.routes.len(), 3);
        let first = &r.routes[0];
        assert_eq!((first.number, first.line), (1, 6));
        assert_eq!(
            first.destination,
            Destination::Channel("123456789012345678".into())
        );
        let repos: Vec<&str> = first.repos.iter().flatten().map(Glob::as_str).collect();
        assert_eq!(repos, ["Diesel-Net/*"]);
        let branches: Vec<&str> = first.branches.iter().flatten().map(Glob::as_str).collect();
        assert_eq!(branches, ["main", "release/*"]);
        assert_eq!(
            first.events.as_deref(),
            Some(&[EventKind::Build, EventKind::Repo, EventKind::User][..])
        );
        assert_eq!(first.build_events.as_ref().map(Vec::len), Some(7));
        assert_eq!(
            (first.when, first.mention, first.thread),
            (When::Live, Mention::Failed, Thread::Failed)
        );
        let second = &r.routes[1];
        assert_eq!((second.number, second.line), (2, 16));
        assert_eq!(second.destination, Destination::Webhook("ops".into()));
        assert_eq!(second.when, When::Changed);
        assert!(second.repos.is_none() && second.branches.is_none());
        assert!(second.events.is_none() && second.build_events.is_none());
        // An empty route: everything, to DISCORD_CHANNEL_ID, live, no mention, no thread.
        let third = &r.routes[2];
        assert_eq!(third.line, 20);
        assert_eq!(third.destination, Destination::Default);
        assert_eq!(
            (third.when, third.mention, third.thread),
            (When::Live, Mention::Never, Thread::Never)
        );
    }

    #[test]
    fn empty_files_and_users_only_have_no_routes() {
        assert_eq!(parse("").unwrap(), Routing::default());
        assert_eq!(parse("# nothing\n\n").unwrap(), Routing::default());
        let r = parse("[users]\nanon = \"1\"\n").unwrap();
        assert!(r.routes.is_empty());
        assert_eq!(r.users.get("anon"), Some("1"));
    }

    #[test]
    fn unknown_keys_name_their_line_and_key() {
        let e = err("[[route]]\nchannel = \"123456789012345678\"\nchanel = \"1\"\n");
        assert_eq!(e.line, 3);
        assert!(e.problem.contains("route 1: unknown key \"chanel\""), "{e}");
        assert!(e.problem.contains("channel, webhook, repos"), "{e}");
        let e = err("[[route]]\n[[route]]\nwhen = \"live\"\nrepo = [\"x\"]\n");
        assert_eq!(e.line, 4);
        assert!(
            e.problem.starts_with("route 2: unknown key \"repo\""),
            "{e}"
        );
        let e = err("[user]\nanon = \"1\"\n");
        assert_eq!(e.line, 1);
        assert!(e.problem.contains("unknown key \"user\""), "{e}");
        let e = err("verbose = true\n");
        assert_eq!(e.line, 1);
        // The first problem in the file is the one reported, whatever the key order.
        let e = err("[[route]]\nzzz = 1\naaa = 2\n");
        assert_eq!(e.line, 2);
        assert!(e.problem.contains("\"zzz\""), "{e}");
    }

    #[test]
    fn bad_values_name_their_line_and_key() {
        for (text, line, want) in [
            (
                "[[route]]\nchannel = \"general\"\n",
                2,
                "route 1: channel: \"general\" is not a Discord id",
            ),
            (
                "[[route]]\nchannel = 123456789012345678\n",
                2,
                "route 1: channel: must be a string in quotes",
            ),
            (
                "[[route]]\n\nwhen = \"sometimes\"\n",
                3,
                "route 1: when: \"sometimes\" is not one of: live, finished, failed, changed",
            ),
            (
                "[[route]]\nmention = \"loud\"\n",
                2,
                "route 1: mention: \"loud\" is not one of: never, failed, always",
            ),
            (
                "[[route]]\nthread = true\n",
                2,
                "route 1: thread: must be a string",
            ),
            (
                "[[route]]\nevents = [\"build\", \"deploy\"]\n",
                2,
                "route 1: events: \"deploy\" is not one of: build, repo, user",
            ),
            (
                "[[route]]\nbuild_events = [\"pr\"]\n",
                2,
                "\"pr\" is not one of: push, pull_request, tag",
            ),
            (
                "[[route]]\nrepos = \"Diesel-Net/*\"\n",
                2,
                "route 1: repos: must be a list in brackets",
            ),
            (
                "[[route]]\nrepos = []\n",
                2,
                "route 1: repos: an empty list matches nothing",
            ),
            (
                "[[route]]\nbranches = [\n  \"main\",\n  \"release/?\",\n]\n",
                4,
                "route 1: branches: \"release/?\": '?' is not supported",
            ),
            (
                "[[route]]\nbranches = [\"a**\"]\n",
                2,
                "** must be a whole part",
            ),
            (
                "[[route]]\nchannel = \"1\"\nwebhook = \"ops\"\n",
                3,
                "route 1: has both channel and webhook",
            ),
            (
                "[[route]]\nwebhook = \"Ops Team\"\n",
                2,
                "route 1: webhook: \"Ops Team\"",
            ),
            (
                "[users]\noctocat = \"8035x\"\n",
                2,
                "[users] \"octocat\": \"8035x\" is not a Discord id",
            ),
            (
                "[users]\noctocat = 80351110224678912\n",
                2,
                "write the Discord user id in quotes",
            ),
            (
                "[users]\nOctoCat = \"1\"\noctocat = \"2\"\n",
                3,
                "given twice",
            ),
            ("users = 3\n", 1, "users: must be a table"),
            (
                "[route]\nchannel = \"1\"\n",
                1,
                "write [[route]] (double brackets)",
            ),
        ] {
            let e = err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.problem.contains(want), "{text:?}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_drone_table_lists_who_may_restart() {
        let r = parse("[drone]\nrestart_roles = [\"500000000000000001\"]\nrestart_users = [\"80351110224678912\"]\n").unwrap();
        assert_eq!(r.restart.roles, ["500000000000000001"]);
        assert_eq!(r.restart.users, ["80351110224678912"]);
        assert!(r.routes.is_empty());
        assert!(!parse("").unwrap().restart.is_configured());
        for (text, line, want) in [
            (
                "[drone]\nrestart_role = [\"1\"]\n",
                2,
                "[drone]: unknown key \"restart_role\"",
            ),
            (
                "[drone]\n\nrestart_users = [\"alice\"]\n",
                3,
                "\"alice\" is not a Discord id",
            ),
            ("[drone]\nrestart_users = \"1\"\n", 2, "must be a list"),
            ("[drone]\nrestart_roles = []\n", 2, "an empty list"),
            ("[drone]\nrestart_roles = [1]\n", 2, "must be a string"),
            ("drone = 1\n", 1, "drone: must be a table"),
        ] {
            let e = err(text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.problem.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn toml_syntax_errors_name_their_line() {
        let e = err("[[route]]\nchannel = \"1\"\nwhen = live\n");
        assert_eq!(e.line, 3, "{e}");
        assert!(e.problem.starts_with("not valid TOML"), "{e}");
        let e = err("[[route]]\nchannel = \"1\"\nchannel = \"2\"\n");
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn inline_route_arrays_work_too() {
        let r = parse("route = [{ channel = \"5\" }, { when = \"failed\" }]\n").unwrap();
        assert_eq!(r.routes.len(), 2);
        assert_eq!(r.routes[1].when, When::Failed);
        let e = err("route = [{ channel = \"5\" }, 3]\n");
        assert!(e.problem.contains("route 2: must be a table"), "{e}");
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for text in [
            "[[route]",
            "[[route]]\nrepos = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
            "\u{0}",
            "[[route]]\nchannel = \"\u{7f}\"\n",
            "a.b.c = 1",
            "[users]\n\"\" = \"1\"\n",
            "[[route]]\nwhen = \"live\"\n[route.x]\n",
        ] {
            let _ = parse(text);
        }
    }
}
