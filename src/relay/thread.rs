//! A build's thread: its name, its first post (the failing stages and steps
//! with their durations, then the mention when one is due), and starting it
//! from the build message so that a retry never starts a second one.
//!
//! The order of writes makes a retry safe: the thread's id is stored right
//! after the thread exists (a retry posts into it); its first post carries a
//! nonce of its own (a repeat within Discord's nonce memory returns the same
//! post), and `pinged` is stored right after it, marking the build's final
//! notice at this destination as done (the thread is started at a final
//! status only, so no later ping can be due there).
use std::fmt::Write as _;

use crate::drone::{Build, Webhook};
use crate::render::{duration, status_style};

/// Longest thread name Discord takes, in code points.
pub const NAME_MAX: usize = 100;

/// Longest first post: Discord's `content` limit.
const CONTENT_MAX: usize = 2000;

/// `❌ Diesel-Net/plex #189`: the build's status, repository and number, at
/// most 100 code points.
pub fn name(hook: &Webhook) -> String {
    let (status, number) = hook
        .build
        .as_ref()
        .map_or(("", 0), |b| (b.status.as_str(), b.number));
    let slug = hook.repo.as_ref().map_or("", |r| r.slug.as_str());
    let text = format!("{} {} #{number}", status_style(status).emoji, slug.trim());
    crate::text::truncate_chars(&crate::text::controls_to_spaces(&text), NAME_MAX)
}

fn failing(status: &str) -> bool {
    matches!(status, "failure" | "error")
}

/// `stopped - started`, when both are known.
fn took(started: i64, stopped: i64) -> String {
    if started > 0 && stopped >= started {
        format!(" ({})", duration(stopped - started))
    } else {
        String::new()
    }
}

/// The thread's first post: each failing stage with its failing steps and
/// their durations (plain text, one line each), then `mention` (a `<@id>`
/// or an author's name) when given; at most 2000 code points.
pub fn first_post(build: &Build, mention: Option<&str>) -> String {
    let mut out = String::new();
    for stage in build.stages.iter().filter(|s| failing(&s.status)) {
        let _ = writeln!(
            out,
            "{} stage {}{}",
            status_style(&stage.status).emoji,
            one_line(&stage.name),
            took(stage.started, stage.stopped)
        );
        for step in stage
            .steps
            .iter()
            .filter(|s| failing(&s.status) && !s.errignore)
        {
            let _ = writeln!(
                out,
                "- {} {}{}",
                status_style(&step.status).emoji,
                one_line(&step.name),
                took(step.started, step.stopped)
            );
        }
    }
    if out.is_empty() {
        let style = status_style(&build.status);
        let _ = writeln!(out, "{} {}", style.emoji, style.label);
    }
    if let Some(m) = mention {
        out.push_str(m);
    }
    crate::text::truncate_chars(&out, CONTENT_MAX)
}

/// A name from the payload on one line, without Markdown that could change
/// the post (a step called `**x**` reads as it is).
fn one_line(s: &str) -> String {
    let flat = crate::text::controls_to_spaces(s);
    let mut out = String::with_capacity(flat.len());
    for c in crate::text::truncate_chars(&flat, 100).chars() {
        if matches!(
            c,
            '*' | '_' | '`' | '~' | '|' | '>' | '#' | '[' | ']' | '\\'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone;

    fn hook(path: &str) -> Webhook {
        let full = format!("{}/test/fixtures/{path}.json", env!("CARGO_MANIFEST_DIR"));
        drone::parse(&std::fs::read(&full).unwrap()).unwrap()
    }

    #[test]
    fn names_say_status_repository_and_number_within_100() {
        let h = hook("drone/build_failure");
        let b = h.build.as_ref().unwrap();
        let slug = &h.repo.as_ref().unwrap().slug;
        assert_eq!(name(&h), format!("❌ {slug} #{}", b.number));
        let mut long = h.clone();
        long.repo.as_mut().unwrap().slug = format!("org/{}\nx", "r".repeat(200));
        let n = name(&long);
        assert_eq!(n.chars().count(), NAME_MAX);
        assert!(n.ends_with('…') && !n.contains('\n'), "{n}");
    }

    #[test]
    fn the_first_post_lists_failing_stages_and_steps_with_durations() {
        let mut h = hook("drone/build_failure");
        let b = h.build.as_mut().unwrap();
        b.stages.truncate(1);
        let stage = &mut b.stages[0];
        stage.name = "default".into();
        stage.status = "failure".into();
        (stage.started, stage.stopped) = (100, 169);
        stage.steps.truncate(2);
        stage.steps[0].name = "clone".into();
        stage.steps[0].status = "success".into();
        stage.steps[1].name = "test_*x*".into();
        stage.steps[1].status = "failure".into();
        stage.steps[1].errignore = false;
        (stage.steps[1].started, stage.steps[1].stopped) = (110, 122);
        let post = first_post(b, Some("<@80351110224678912>"));
        assert_eq!(
            post,
            "❌ stage default (1m 09s)\n- ❌ test\\_\\*x\\* (12s)\n<@80351110224678912>"
        );
        // Nothing failing (a killed build's thread): the status alone.
        b.status = "killed".into();
        b.stages.clear();
        assert_eq!(first_post(b, None), "🛑 Killed");
    }

    #[test]
    fn the_first_post_fits_discord() {
        let mut h = hook("drone/build_failure");
        let b = h.build.as_mut().unwrap();
        let stage = b.stages[0].clone();
        b.stages = vec![stage; 100];
        for s in &mut b.stages {
            s.status = "error".into();
            s.name = "x".repeat(300);
        }
        assert!(first_post(b, None).chars().count() <= 2000);
    }
}
