//! What a failed build shows of its logs: which steps failed, and for each
//! an embed with the end of its log in a code block, headed by the stage and
//! step, the exit code and a link to the step in Drone; the name and size
//! budget of the whole log attached to it. Pure: posting it is the relay's.
use serde_json::{json, Value};

use super::{clean_log, neutralise_fences, StepLog};
use crate::drone::{Build, Stage, Step};
use crate::render::{status_style, DESCRIPTION_MAX, TITLE_MAX};
use crate::text::{controls_to_spaces, cut_chars_marked, truncate_chars};

/// Failed steps shown one message each; the rest are summed up in one line.
pub const MAX_EXCERPT_STEPS: usize = 5;
/// An excerpt is the last this many lines of a log, or
const EXCERPT_LINES: usize = 40;
/// ... the last this many characters, whichever is smaller.
const EXCERPT_CHARS: usize = 3500;

/// A step that failed, with its stage.
#[derive(Clone, Copy, Debug)]
pub struct FailedStep<'a> {
    pub stage: &'a Stage,
    pub step: &'a Step,
}

impl FailedStep<'_> {
    /// `stage › step`, one line.
    fn label(&self) -> String {
        let one = |s: &str| controls_to_spaces(s).trim().to_string();
        format!("{} › {}", one(&self.stage.name), one(&self.step.name))
    }
}

/// Every step whose status is failure or error, in stage and step order;
/// a step whose failure is ignored (`failure: ignore`) did not fail the build
/// and is left out. Show the first [`MAX_EXCERPT_STEPS`], sum up the rest
/// with [`more_steps_line`].
pub fn failed_steps(build: &Build) -> Vec<FailedStep<'_>> {
    build
        .stages
        .iter()
        .flat_map(|stage| {
            stage
                .steps
                .iter()
                .map(move |step| FailedStep { stage, step })
        })
        .filter(|f| matches!(f.step.status.as_str(), "failure" | "error") && !f.step.errignore)
        .collect()
}

/// The one line for the failed steps not shown, or `None` when all are.
pub fn more_steps_line(failed: &[FailedStep<'_>]) -> Option<String> {
    let rest = failed.get(MAX_EXCERPT_STEPS..).filter(|r| !r.is_empty())?;
    let names: Vec<String> = rest.iter().map(FailedStep::label).collect();
    let line = format!(
        "…and {} more failed steps: {}",
        rest.len(),
        names.join(", ")
    );
    Some(cut_chars_marked(&line, 1900))
}

/// The embed for one failed step: title `stage › step` linking to
/// `{link}/{slug}/{number}/{stage}/{step}` (when `link`, the webhook's
/// `system.link`, is http(s)), the exit code, and the log's end in a code
/// block that nothing in the log can break out of. Within Discord's limits.
pub fn excerpt_embed(
    link: &str,
    slug: &str,
    number: i64,
    failed: FailedStep<'_>,
    log: &StepLog,
) -> Value {
    let (text, shown) = excerpt(&log.text);
    let mut head = format!("Exit code {}", failed.step.exit_code);
    if log.lines > 0 {
        // Drone's lines are output lines, but one may hold several.
        let of = log.lines.max(shown as u64);
        head.push_str(&format!(" · the last {shown} of {of} lines"));
    }
    let description = format!("{head}\n```\n{text}\n```");
    let mut embed = json!({
        "title": truncate_chars(&failed.label(), TITLE_MAX),
        "description": description,
    });
    let link = link.trim_end_matches('/');
    let ok_link = (link.starts_with("https://") || link.starts_with("http://"))
        && !link
            .chars()
            .chain(slug.chars())
            .any(|c| c.is_whitespace() || c.is_control());
    if ok_link {
        let url = format!(
            "{link}/{slug}/{number}/{}/{}",
            failed.stage.number, failed.step.number
        );
        embed["url"] = Value::from(url.replace('(', "%28").replace(')', "%29"));
    }
    if let Some(color) = status_style(&failed.step.status).color {
        embed["color"] = Value::from(color);
    }
    debug_assert!(description.chars().count() <= DESCRIPTION_MAX);
    embed
}

/// The end of a log as shown: cleaned, the last [`EXCERPT_LINES`] lines or
/// [`EXCERPT_CHARS`] characters whichever is smaller (from a line start when
/// one is in reach), backticks neutralised. Returns it and its line count.
fn excerpt(log: &str) -> (String, usize) {
    let clean = clean_log(log);
    let clean = clean.trim_end();
    let from = clean
        .rmatch_indices('\n')
        .nth(EXCERPT_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    let mut text = neutralise_fences(clean.get(from..).unwrap_or_default());
    let chars = text.chars().count();
    if chars > EXCERPT_CHARS {
        let cut = text
            .char_indices()
            .nth(chars - EXCERPT_CHARS)
            .map_or(0, |(i, _)| i);
        let tail = text.get(cut..).unwrap_or_default();
        // Start at the next whole line, unless the tail is one line.
        let tail = match tail.find('\n') {
            Some(i) if i + 1 < tail.len() => &tail[i + 1..],
            _ => tail,
        };
        text = tail.to_string();
    }
    if text.trim().is_empty() {
        return ("(no output)".into(), 0);
    }
    let lines = text.lines().count();
    (text, lines)
}

/// The whole log's file name, `<stage>-<step>.log`, made of characters every
/// client keeps in a file name (others become `_`), at most 100 long.
pub fn attachment_name(stage: &str, step: &str) -> String {
    let part = |s: &str, fallback: &str| {
        let p: String = s
            .trim()
            .chars()
            .take(48)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if p.is_empty() {
            fallback.to_string()
        } else {
            p
        }
    };
    format!("{}-{}.log", part(stage, "stage"), part(step, "step"))
}

/// Bytes the next step's attached log may take: its fair share of what is
/// left of `total` (`DRONE_LOG_MAX_BYTES`) after `used`, with `steps_left`
/// steps (this one included) still to attach, so all together stay within
/// `total` and a short log leaves its share to the next.
pub fn attachment_cap(total: usize, used: usize, steps_left: usize) -> usize {
    total.saturating_sub(used) / steps_left.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::check_limits;

    fn step(number: i64, name: &str, status: &str) -> Step {
        Step {
            number,
            name: name.into(),
            status: status.into(),
            exit_code: if status == "success" { 0 } else { 2 },
            ..Step::default()
        }
    }

    fn build() -> Build {
        let mut ignored = step(3, "lint", "failure");
        ignored.errignore = true;
        let steps = vec![
            step(1, "clone", "success"),
            step(2, "test", "failure"),
            ignored,
        ];
        let many = (1..=6)
            .map(|n| step(n, &format!("e2e {n}"), "error"))
            .collect();
        Build {
            number: 189,
            stages: vec![
                Stage {
                    number: 1,
                    name: "build".into(),
                    steps,
                    ..Stage::default()
                },
                Stage {
                    number: 2,
                    name: "e2e".into(),
                    steps: many,
                    ..Stage::default()
                },
            ],
            ..Build::default()
        }
    }

    fn log(text: &str) -> StepLog {
        StepLog {
            text: text.into(),
            total_bytes: text.len() as u64,
            lines: text.lines().count() as u64,
        }
    }

    #[test]
    fn failed_steps_in_order_and_the_rest_in_one_line() {
        let b = build();
        let failed = failed_steps(&b);
        let names: Vec<String> = failed.iter().map(FailedStep::label).collect();
        assert_eq!(names[0], "build › test");
        assert_eq!(names.len(), 7);
        let more = more_steps_line(&failed).unwrap();
        assert_eq!(more, "…and 2 more failed steps: e2e › e2e 5, e2e › e2e 6");
        assert_eq!(more_steps_line(&failed[..5]), None);
    }

    #[test]
    fn the_excerpt_is_the_cleaned_end_in_a_code_block_that_cannot_be_broken() {
        let b = build();
        let f = failed_steps(&b)[0];
        let mut text = String::new();
        for i in 0..100 {
            text.push_str(&format!("\u{1b}[32mline {i}\u{1b}[0m\n"));
        }
        text.push_str("Downloading 10%\rDownloading 100%\r\n```\n@everyone ``` done\n\n");
        let e = excerpt_embed(
            "https://drone.example.com/",
            "Diesel-Net/plex",
            189,
            f,
            &log(&text),
        );
        assert_eq!(e["title"], "build › test");
        assert_eq!(
            e["url"],
            "https://drone.example.com/Diesel-Net/plex/189/1/2"
        );
        assert_eq!(e["color"], 0xE74C3C);
        let d = e["description"].as_str().unwrap();
        assert!(
            d.starts_with("Exit code 2 · the last 40 of 104 lines\n```\nline 63\n"),
            "{d}"
        );
        assert!(
            d.contains("line 99\nDownloading 100%\n`\u{200b}`\u{200b}`\n"),
            "{d}"
        );
        assert!(
            d.ends_with("@everyone `\u{200b}`\u{200b}` done\n```"),
            "{d}"
        );
        assert_eq!(d.matches("```").count(), 2, "{d}");
        assert!(!d.contains('\u{1b}') && !d.contains('\r'));
        check_limits(&json!({ "embeds": [e], "allowed_mentions": { "parse": [] } })).unwrap();
    }

    #[test]
    fn long_lines_are_cut_to_the_character_budget_from_a_line_start() {
        let b = build();
        let f = failed_steps(&b)[0];
        let text: String = (0..40)
            .map(|i| format!("{i:02} {}\n", "é".repeat(150)))
            .collect();
        let e = excerpt_embed("javascript:x", "a/b", 1, f, &log(&text));
        assert!(e.get("url").is_none());
        let d = e["description"].as_str().unwrap();
        let body = d.split("```\n").nth(1).unwrap();
        assert!(
            body.chars().count() <= EXCERPT_CHARS + 4,
            "{}",
            body.chars().count()
        );
        assert!(body.starts_with(|c: char| c.is_ascii_digit()) && body.contains("39 é"));
        let one = "x".repeat(10_000);
        let e = excerpt_embed("https://d", "a/b", 1, f, &log(&one));
        check_limits(&json!({ "embeds": [e], "allowed_mentions": { "parse": [] } })).unwrap();
        let e = excerpt_embed("https://d", "a/b", 1, f, &log(""));
        assert!(e["description"].as_str().unwrap().contains("(no output)"));
    }

    #[test]
    fn attachment_names_and_budget() {
        assert_eq!(attachment_name("build", "test"), "build-test.log");
        assert_eq!(
            attachment_name(" e2e/../x ", "Ünit tests"),
            "e2e____x-_nit_tests.log"
        );
        assert_eq!(attachment_name("", "\n"), "stage-step.log");
        assert!(attachment_name(&"a".repeat(300), &"b".repeat(300)).len() <= 101);
        assert_eq!(attachment_cap(8 << 20, 0, 4), 2 << 20);
        assert_eq!(attachment_cap(100, 10, 3), 30);
        assert_eq!(attachment_cap(100, 200, 1), 0);
        assert_eq!(attachment_cap(100, 0, 0), 100);
    }
}
