//! Drone event → Discord message body.
//!
//! Pure functions: a [`Webhook`] goes in, the JSON body for Discord's
//! create/edit message endpoints comes out. Everything that came from Drone is
//! untrusted text, so Discord's embed limits are enforced *here*, in code
//! points, after trimming: each string is cut on a char boundary with `…`, and
//! when the whole embed would pass 6000 characters the least important stage
//! fields are folded into a "+N more stages" summary before the commit message
//! is shortened.
//!
//! This file is the entry point ([`render`]) and the final assembly; the parts
//! live beside it:
//!
//! * `style`: emoji, label and colour per Drone status;
//! * `embed`: the embed model with its character budget and JSON conversion;
//! * `build`: the build renderer (stages, steps, trigger, event, commit);
//! * `components`: the buttons under a build message (Open in Drone, Restart);
//! * `user_and_repo`: the user and repository renderers;
//! * `markdown`: untrusted text made safe for an embed (cutting to length is
//!   [`crate::text`]'s);
//! * `limits`: Discord's limits and [`check_limits`], which validates any
//!   message against them. `finish` (below) runs it on every rendering as a last
//!   guard; the relay does not call it, it sends what [`render`] returns.
use serde_json::{json, Value};

use crate::drone::{Kind, Webhook};
use crate::text::truncate_chars as truncate;

mod build;
pub mod components;
mod embed;
mod limits;
mod markdown;
mod style;
#[cfg(test)]
mod testutil;
mod user_and_repo;

pub use build::duration;
pub use embed::iso8601;
pub use limits::{
    check_limits, AUTHOR_NAME_MAX, CONTENT_MAX, DESCRIPTION_MAX, EMBEDS_MAX, EMBED_TOTAL_MAX,
    FIELDS_MAX, FIELD_NAME_MAX, FIELD_VALUE_MAX, FOOTER_MAX, TITLE_MAX, URL_MAX,
};
pub use style::{status_style, StatusStyle};

use build::build_embed;
use embed::Embed;
use markdown::{http_url, one_line, or_placeholder};
use user_and_repo::{repo_embed, user_embed, RepoChange};

/// The Discord message body for a webhook, or `None` when this version does not
/// know the event/action, or the payload lacks the object the event is about
/// (a build event without `build`, a repo event without `repo`, ...).
pub fn render(hook: &Webhook) -> Option<Value> {
    let embed = embed_for(hook)?;
    let rows = build_link(hook, &embed).and_then(|u| components::build_rows(&u));
    let mut msg = finish(embed);
    if let (Some(rows), Some(m)) = (rows, msg.as_object_mut()) {
        m.insert("components".into(), rows);
    }
    Some(msg)
}

/// A build message's Drone page (its embed's URL, always http(s)): where
/// the "Open in Drone" button goes.
fn build_link(hook: &Webhook, embed: &Embed) -> Option<String> {
    let build = matches!(hook.kind()?, Kind::BuildCreated | Kind::BuildUpdated);
    embed.url.clone().filter(|_| build)
}

/// The message as the renderers build it, without [`finish`]'s fallback: the
/// fuzz properties check that the budgeting alone keeps every message within
/// Discord's limits, so the fallback never has to act.
#[cfg(any(test, feature = "test-support"))]
pub(crate) fn render_unguarded(hook: &Webhook) -> Option<Value> {
    Some(message(embed_for(hook)?.to_json()))
}

/// The one embed a webhook renders as, before the last guard.
fn embed_for(hook: &Webhook) -> Option<Embed> {
    Some(match hook.kind()? {
        Kind::BuildCreated | Kind::BuildUpdated => build_embed(hook, hook.build.as_ref()?),
        Kind::UserCreated => user_embed(hook, hook.user.as_ref()?, true),
        Kind::UserDeleted => user_embed(hook, hook.user.as_ref()?, false),
        Kind::RepoEnabled => repo_embed(hook, RepoChange::Enabled)?,
        Kind::RepoDisabled => repo_embed(hook, RepoChange::Disabled)?,
        Kind::RepoDeleted => repo_embed(hook, RepoChange::Deleted)?,
    })
}

/// Wrap one embed into a message body and check it. The renderers' budgeting
/// makes a failure impossible by construction; should it happen anyway, a bare
/// embed is sent instead of a message Discord would reject.
fn finish(embed: Embed) -> Value {
    let msg = message(embed.to_json());
    match check_limits(&msg) {
        Ok(()) => msg,
        Err(reason) => {
            tracing::error!(%reason, "rendered message broke Discord limits; sending a bare embed");
            let title = or_placeholder(truncate(&one_line(&embed.title), TITLE_MAX));
            let bare = Embed {
                title,
                url: embed.url.as_deref().and_then(http_url),
                color: embed.color.filter(|c| *c <= 0xFF_FFFF),
                footer: truncate(&one_line(&embed.footer), FOOTER_MAX),
                timestamp: embed.timestamp,
                ..Embed::default()
            };
            message(bare.to_json())
        }
    }
}

fn message(embed: Value) -> Value {
    json!({ "embeds": [embed], "allowed_mentions": { "parse": [] } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::{parse, Build, Repo, Stage, Step, System, EVENTS, STATUSES};
    use embed::Field;
    use testutil::{embed, fixture};

    #[test]
    fn unknown_kinds_and_missing_subjects_render_nothing() {
        let mut hook = fixture("build_success");
        hook.action = "deleted".into();
        assert_eq!(render(&hook), None);
        let mut hook = fixture("build_success");
        hook.build = None;
        assert_eq!(render(&hook), None);
        let mut hook = fixture("repo_enabled");
        hook.repo = None;
        assert_eq!(render(&hook), None);
        assert_eq!(render(&Webhook::default()), None);
    }

    #[test]
    fn a_broken_embed_falls_back_to_a_valid_bare_one() {
        let broken = Embed {
            title: format!("{}\n", "t".repeat(300)),
            url: Some("javascript:alert(1)".into()),
            description: "d".repeat(5000),
            color: Some(0x2ECC71),
            fields: vec![Field::new("n", "v", true); 30],
            footer: "Drone".into(),
            ..Embed::default()
        };
        let msg = finish(broken);
        check_limits(&msg).unwrap();
        let e = embed(&msg);
        assert_eq!(e["title"].as_str().unwrap().chars().count(), TITLE_MAX);
        assert!(e.get("fields").is_none() && e.get("url").is_none());
        assert_eq!(e["color"], 0x2ECC71);
    }

    /// xorshift64*: deterministic, no `rand` crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len() as u64) as usize]
        }
        fn text(&mut self, max: u64) -> String {
            const PIECES: [&str; 16] = [
                "a",
                "Z",
                " ",
                "\n",
                "\r\n",
                "\t",
                "\u{0}",
                "é",
                "e\u{301}",
                "日本",
                "😀",
                "👩‍👩‍👧",
                "*_`[]()|~<>",
                "@everyone",
                "https://x.y/(z)",
                "\u{200b}",
            ];
            let len = match self.below(4) {
                0 => 0,
                1 => self.below(20),
                2 => self.below(400),
                _ => self.below(max),
            };
            (0..len).map(|_| self.pick(&PIECES)).collect()
        }
        fn status(&mut self) -> String {
            let mut all: Vec<&str> = STATUSES.to_vec();
            all.push("");
            all.push("weird");
            self.pick(&all).to_owned()
        }
    }

    fn random_hook(r: &mut Rng) -> Webhook {
        let stages = (0..r.below(60))
            .map(|n| Stage {
                number: n as i64,
                name: r.text(600),
                status: r.status(),
                error: r.text(300),
                steps: (0..r.below(40))
                    .map(|i| Step {
                        number: i as i64,
                        name: r.text(300),
                        status: r.status(),
                        exit_code: r.next() as i64,
                        ..Step::default()
                    })
                    .collect(),
                ..Stage::default()
            })
            .collect();
        let urls = [
            "",
            "https://a.b/c",
            "http://x",
            "javascript:1",
            "https://a b",
            "https://x/(((",
        ];
        let long_url = format!("https://x/{}", "a".repeat(3000));
        Webhook {
            event: "build".into(),
            action: r.pick(&["created", "updated"]).into(),
            repo: (r.below(4) > 0).then(|| Repo {
                slug: r.text(400),
                link: if r.below(5) == 0 {
                    long_url.clone()
                } else {
                    r.pick(&urls).into()
                },
                ..Repo::default()
            }),
            system: (r.below(4) > 0).then(|| System {
                link: r.pick(&urls).into(),
                version: r.text(3000),
                ..System::default()
            }),
            build: Some(Build {
                number: r.next() as i64,
                status: r.status(),
                event: r.pick(&EVENTS).into(),
                trigger: r.pick(&["@hook", "@cron", "", "x"]).to_owned() + &r.text(500),
                cron: r.text(500),
                deploy_to: r.text(500),
                r#ref: r
                    .pick(&["refs/pull/", "refs/tags/", "refs/heads/", ""])
                    .to_owned()
                    + &r.text(500),
                after: r.text(50),
                link: r.pick(&urls).into(),
                message: r.text(12_000),
                error: r.text(2000),
                author_name: r.text(600),
                author_login: r.text(50),
                author_avatar: r.pick(&urls).into(),
                started: r.next() as i64,
                finished: r.next() as i64,
                stages,
                ..Build::default()
            }),
            ..Webhook::default()
        }
    }

    #[test]
    fn random_builds_always_fit_discord_limits() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..300 {
            let hook = random_hook(&mut r);
            let msg = render(&hook).unwrap_or_else(|| panic!("case {i}: no message"));
            if let Err(e) = check_limits(&msg) {
                panic!("case {i}: {e}");
            }
            // The fallback is for bugs only: real renders keep their fields.
            assert!(
                embed(&msg).get("fields").is_some(),
                "case {i} fell back to a bare embed"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic_the_parser_or_renderer() {
        let mut r = Rng(42);
        let base = std::fs::read(format!(
            "{}/test/fixtures/drone/build_success.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        for _ in 0..2000 {
            let mut body = base.clone();
            for _ in 0..=r.below(8) {
                if body.is_empty() {
                    break;
                }
                let at = r.below(body.len() as u64) as usize;
                match r.below(3) {
                    0 => body[at] = r.next() as u8,
                    1 => {
                        body.remove(at);
                    }
                    _ => body.truncate(at),
                }
            }
            if let Ok(hook) = parse(&body) {
                if let Some(msg) = render(&hook) {
                    check_limits(&msg).unwrap();
                }
            }
        }
    }
}
