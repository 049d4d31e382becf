//! The build renderer: one embed per build, with its status, trigger, event,
//! commit, duration and one field per stage (its steps one line each). When the
//! embed would pass Discord's 6000-character total, the least important stages
//! fold into a "+N more stages" field before the commit message is shortened.
use super::embed::{drone_url, footer, iso8601, short_field, Embed, Field, SHORT_VALUE_MAX};
use super::limits::{
    count, AUTHOR_NAME_MAX, DESCRIPTION_MAX, EMBED_TOTAL_MAX, FIELDS_MAX, FIELD_VALUE_MAX,
    TITLE_MAX,
};
use super::markdown::{escape_md, http_url, link_or_text, md_url, multi_line, one_line};
use super::style::status_style;
use crate::drone::{is_final, Build, Stage, Step, Webhook, STATUSES};
use crate::text::truncate_chars as truncate;

/// A step or stage name longer than this is cut: one line per step must stay readable.
const STEP_NAME_MAX: usize = 100;
/// The commit message keeps at least this much before stages are dropped for it.
const DESCRIPTION_FLOOR: usize = 1024;
/// Upper bound on the "+N more stages" field: name plus one count per status.
const SUMMARY_RESERVE: usize = 400;

pub(super) fn build_embed(hook: &Webhook, build: &Build) -> Embed {
    let system = hook.system.as_ref();
    let slug = hook
        .repo
        .as_ref()
        .map(|r| {
            if !r.slug.trim().is_empty() {
                one_line(&r.slug)
            } else if !r.name.trim().is_empty() {
                one_line(format!("{}/{}", r.namespace, r.name).trim_start_matches('/'))
            } else {
                String::new()
            }
        })
        .unwrap_or_default();
    let status = status_style(&build.status);
    let build_url =
        drone_url(system, &format!("{slug}/{}", build.number)).filter(|_| !slug.is_empty());

    let shown_slug = if slug.is_empty() {
        "unknown repository"
    } else {
        &slug
    };
    let mut embed = Embed {
        title: truncate(&format!("{shown_slug} #{}", build.number), TITLE_MAX),
        url: build_url.clone(),
        color: status.color,
        author_name: truncate(
            &one_line(if build.author_name.trim().is_empty() {
                &build.author_login
            } else {
                &build.author_name
            }),
            AUTHOR_NAME_MAX,
        ),
        author_icon: http_url(&build.author_avatar),
        footer: footer(system),
        timestamp: [build.finished, build.started, build.created]
            .into_iter()
            .find(|t| *t > 0)
            .and_then(iso8601),
        ..Embed::default()
    };
    if embed.author_name.is_empty() {
        embed.author_icon = None;
    }

    let mut fixed = vec![
        short_field(
            "Build",
            &link_or_text(&format!("#{}", build.number), build_url.as_deref()),
        ),
        short_field("Status", &format!("{} {}", status.emoji, status.label)),
        short_field("Trigger", &trigger_text(build)),
        short_field("Event", &event_text(build)),
    ];
    if !slug.is_empty() {
        let repo_link = hook.repo.as_ref().and_then(|r| http_url(&r.link));
        fixed.push(short_field(
            "Repository",
            &link_or_text(&slug, repo_link.as_deref()),
        ));
    }
    if let Some(commit) = commit_text(build) {
        fixed.push(short_field("Commit", &commit));
    }
    if is_final(&build.status) && build.started > 0 && build.finished >= build.started {
        fixed.push(short_field(
            "Duration",
            &duration(build.finished - build.started),
        ));
    }
    if !build.error.trim().is_empty() {
        let mut f = short_field("Error", &escape_md(&multi_line(&build.error)));
        f.inline = false;
        fixed.push(f);
    }

    let message = multi_line(&build.message);
    let (stage_fields, summary) = fit_stages(&build.stages, &embed, &fixed, count(&message));
    let used = embed.frame_chars()
        + fixed
            .iter()
            .chain(&stage_fields)
            .chain(&summary)
            .map(Field::chars)
            .sum::<usize>();
    let budget = DESCRIPTION_MAX.min(EMBED_TOTAL_MAX.saturating_sub(used));
    embed.description = truncate(&message, budget);
    embed.fields = fixed;
    embed.fields.extend(stage_fields);
    embed.fields.extend(summary);
    embed
}

/// Choose which stages get a field of their own. Failed, then running stages are
/// kept first; shown stages stay in pipeline order; the rest are counted in one
/// "+N more stages" field. Stages are dropped until the commit message keeps at
/// least [`DESCRIPTION_FLOOR`] characters (or all of itself, if shorter).
fn fit_stages(
    stages: &[Stage],
    frame: &Embed,
    fixed: &[Field],
    message_chars: usize,
) -> (Vec<Field>, Option<Field>) {
    let slots = FIELDS_MAX.saturating_sub(fixed.len());
    let rank = |s: &Stage| match s.status.as_str() {
        "failure" | "error" | "killed" => 0,
        "running" => 1,
        "blocked" | "declined" => 2,
        _ => 3,
    };
    // Priority order: by rank, then pipeline order.
    let mut order: Vec<usize> = (0..stages.len()).collect();
    order.sort_by_key(|&i| (stages.get(i).map_or(3, rank), i));
    let mut keep = if stages.len() <= slots {
        stages.len()
    } else {
        slots.saturating_sub(1)
    };
    // Only stages that can be shown are rendered: a payload may carry thousands.
    let candidates: Vec<(usize, Field)> = order
        .iter()
        .take(keep)
        .filter_map(|&i| Some((i, stage_field(stages.get(i)?))))
        .collect();
    let fixed_chars = frame.frame_chars() + fixed.iter().map(Field::chars).sum::<usize>();
    let wanted_description = message_chars.min(DESCRIPTION_FLOOR);
    let mut used = fixed_chars + candidates.iter().map(|(_, f)| f.chars()).sum::<usize>();
    loop {
        let summary = if keep < stages.len() {
            SUMMARY_RESERVE
        } else {
            0
        };
        if keep == 0 || used + summary + wanted_description <= EMBED_TOTAL_MAX {
            break;
        }
        keep -= 1;
        used -= candidates.get(keep).map_or(0, |(_, f)| f.chars());
    }
    let mut shown: Vec<(usize, Field)> = candidates.into_iter().take(keep).collect();
    shown.sort_unstable_by_key(|(i, _)| *i);
    let hidden: Vec<&Stage> = order
        .iter()
        .skip(keep)
        .filter_map(|&i| stages.get(i))
        .collect();
    let summary = (!hidden.is_empty()).then(|| summary_field(&hidden));
    (shown.into_iter().map(|(_, f)| f).collect(), summary)
}

fn stage_field(stage: &Stage) -> Field {
    let style = status_style(&stage.status);
    let name = one_line(&stage.name);
    let name = if name.is_empty() {
        format!("stage {}", stage.number)
    } else {
        truncate(&name, STEP_NAME_MAX)
    };
    let mut lines: Vec<String> = Vec::new();
    if !stage.error.trim().is_empty() {
        lines.push(format!(
            "⚠️ {}",
            escape_md(&truncate(&one_line(&stage.error), 200))
        ));
    }
    lines.extend(stage.steps.iter().map(step_line));
    if lines.is_empty() {
        lines.push(format!("{} {}", style.emoji, style.label));
    }
    Field::new(
        &format!("{} {}", style.emoji, name),
        &join_lines_within(&lines, FIELD_VALUE_MAX),
        true,
    )
}

fn step_line(step: &Step) -> String {
    let style = status_style(&step.status);
    let name = one_line(&step.name);
    let name = if name.is_empty() {
        format!("step {}", step.number)
    } else {
        truncate(&name, STEP_NAME_MAX)
    };
    let mut line = format!("{} {}", style.emoji, escape_md(&name));
    if step.exit_code != 0 && matches!(step.status.as_str(), "failure" | "error" | "killed") {
        line.push_str(&format!(" (exit {})", step.exit_code));
    }
    line
}

/// Whole lines up to `max` chars; lines that do not fit become "… +N more".
fn join_lines_within(lines: &[String], max: usize) -> String {
    let mut out = String::new();
    let mut used = 0;
    for (i, line) in lines.iter().enumerate() {
        let sep = usize::from(!out.is_empty());
        let rest = lines.len() - i - 1;
        // Room for this line plus, if more follow, the "… +N more" line.
        let tail = if rest > 0 { 16 } else { 0 };
        let len = count(line);
        if used + sep + len + tail > max {
            let more = format!("… +{} more", lines.len() - i);
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&more);
            return out;
        }
        if sep == 1 {
            out.push('\n');
        }
        out.push_str(line);
        used += sep + len;
    }
    out
}

fn summary_field(hidden: &[&Stage]) -> Field {
    let mut parts: Vec<String> = STATUSES
        .iter()
        .filter_map(|status| {
            let n = hidden.iter().filter(|s| s.status == *status).count();
            (n > 0).then(|| format!("{} {n}", status_style(status).emoji))
        })
        .collect();
    let unknown = hidden
        .iter()
        .filter(|s| !STATUSES.contains(&s.status.as_str()))
        .count();
    if unknown > 0 {
        parts.push(format!("❔ {unknown}"));
    }
    let noun = if hidden.len() == 1 { "stage" } else { "stages" };
    Field::new(
        &format!("+{} more {noun}", hidden.len()),
        &parts.join(" · "),
        false,
    )
}

fn trigger_text(build: &Build) -> String {
    match build.trigger.trim() {
        "@hook" => "webhook".to_owned(),
        "@cron" => {
            let cron = one_line(&build.cron);
            if cron.is_empty() {
                "cron".to_owned()
            } else {
                format!("cron: {}", escape_md(&cron))
            }
        }
        other => escape_md(&one_line(other)),
    }
}

fn event_text(build: &Build) -> String {
    let with = |label: &str, detail: &str| {
        let detail = one_line(detail);
        if detail.is_empty() {
            label.to_owned()
        } else {
            format!("{label} {}", escape_md(&detail))
        }
    };
    match build.event.trim() {
        "push" => "push".to_owned(),
        "pull_request" => match pull_number(&build.r#ref) {
            Some(n) => format!("pull request #{n}"),
            None => "pull request".to_owned(),
        },
        "tag" => with(
            "tag",
            build
                .r#ref
                .trim()
                .strip_prefix("refs/tags/")
                .unwrap_or(&build.target),
        ),
        "promote" => with("promote →", &build.deploy_to),
        "rollback" => with("rollback →", &build.deploy_to),
        "cron" => with("cron", &build.cron),
        "custom" => "custom".to_owned(),
        other => escape_md(&one_line(other)),
    }
}

/// `refs/pull/12/head` (GitHub, Gitea), `refs/merge-requests/12/head` (GitLab),
/// `refs/pull-requests/12/from` (Bitbucket) → 12.
fn pull_number(r: &str) -> Option<u64> {
    let rest = ["refs/pull/", "refs/merge-requests/", "refs/pull-requests/"]
        .iter()
        .find_map(|p| r.trim().strip_prefix(p))?;
    rest.split('/').next()?.parse().ok()
}

/// Branch or tag name for a ref, as people say it.
fn short_ref(r: &str) -> String {
    let r = r.trim();
    if let Some(n) = pull_number(r) {
        return format!("#{n}");
    }
    let short = ["refs/heads/", "refs/tags/"]
        .iter()
        .find_map(|p| r.strip_prefix(p))
        .unwrap_or(r);
    one_line(short)
}

/// "[`cd82028`](link) · stable": short sha linked to the SCM page, then the ref.
fn commit_text(build: &Build) -> Option<String> {
    let sha: String = build.after.trim().chars().take(7).collect();
    let sha_ok = !sha.is_empty() && sha.chars().all(|c| c.is_ascii_alphanumeric());
    let reference = short_ref(&build.r#ref);
    let mut out = String::new();
    if sha_ok {
        let code = format!("`{sha}`");
        out = match http_url(&build.link) {
            Some(url) => format!("[{code}]({})", md_url(&url)),
            None => code,
        };
    }
    if !reference.is_empty() {
        if !out.is_empty() {
            out.push_str(" · ");
        }
        out.push_str(&escape_md(&truncate(&reference, 120)));
    }
    // A link that would be cut is useless: fall back to the plain sha.
    if count(&out) > SHORT_VALUE_MAX && sha_ok {
        out = format!("`{sha}` · {}", escape_md(&truncate(&reference, 120)));
    }
    (!out.is_empty()).then_some(out)
}

/// `1m 09s`, `2h 03m 04s`, `42s`.
pub fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::{Repo, System, EVENTS};
    use crate::render::limits::check_limits;
    use crate::render::markdown::PLACEHOLDER;
    use crate::render::render;
    use crate::render::style::GREEN;
    use crate::render::testutil::{embed, field, fixture};
    use serde_json::json;

    fn build_hook(build: Build) -> Webhook {
        Webhook {
            event: "build".into(),
            action: "updated".into(),
            repo: Some(Repo {
                slug: "octo/cat".into(),
                link: "https://git.example/octo/cat".into(),
                ..Repo::default()
            }),
            system: Some(System {
                link: "https://drone.example/".into(),
                version: "2.4.0".into(),
                ..System::default()
            }),
            build: Some(build),
            ..Webhook::default()
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration(69), "1m 09s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(3723), "1h 02m 03s");
        assert_eq!(duration(-5), "0s");
    }
    #[test]
    fn refs() {
        assert_eq!(pull_number("refs/pull/42/head"), Some(42));
        assert_eq!(pull_number("refs/merge-requests/7/head"), Some(7));
        assert_eq!(pull_number("refs/pull/x/head"), None);
        assert_eq!(pull_number("refs/heads/main"), None);
        assert_eq!(short_ref("refs/heads/feature/x"), "feature/x");
        assert_eq!(short_ref("refs/tags/v1.2.3"), "v1.2.3");
    }

    #[test]
    fn finished_build_fixture_renders_the_essentials() {
        let msg = render(&fixture("build_success")).unwrap();
        check_limits(&msg).unwrap();
        let e = embed(&msg);
        assert_eq!(e["title"], "Diesel-Net/plex #189");
        assert_eq!(e["url"], "https://drone.kiwi-labs.net/Diesel-Net/plex/189");
        assert_eq!(e["color"], GREEN);
        assert_eq!(e["timestamp"], "2021-11-12T23:28:20Z");
        assert_eq!(e["footer"]["text"], "Drone 2.4.0");
        assert_eq!(e["author"]["name"], "Anonymou");
        assert!(e["description"]
            .as_str()
            .unwrap()
            .starts_with("Merge pull request #7"));
        assert_eq!(field(&msg, "Status"), Some("✅ Success"));
        assert_eq!(field(&msg, "Trigger"), Some("cron: daily\\_updates"));
        assert_eq!(field(&msg, "Event"), Some("cron daily\\_updates"));
        assert_eq!(field(&msg, "Duration"), Some("1m 09s"));
        assert_eq!(
            field(&msg, "Commit"),
            Some("[`cd82028`](https://github.com/Diesel-Net/plex/commit/cd82028ba955cbd0cbe580dfbc0065d0b499a501) · stable")
        );
        assert_eq!(
            field(&msg, "🔄 daily updates pipeline"),
            Some("🔄 clone\n⏳ Update plex server(s)")
        );
        assert_eq!(msg["allowed_mentions"], json!({"parse": []}));
        assert!(msg.get("nonce").is_none());
    }

    #[test]
    fn running_build_has_no_duration() {
        let msg = render(&fixture("build_updated")).unwrap();
        assert_eq!(field(&msg, "Duration"), None);
        assert_eq!(field(&msg, "Status"), Some("🔄 Running"));
    }

    #[test]
    fn every_event_kind_is_described() {
        let expect = [
            ("push", "refs/heads/main", "", "push"),
            ("pull_request", "refs/pull/12/head", "", "pull request #12"),
            ("tag", "refs/tags/v1.0", "", "tag v1.0"),
            (
                "promote",
                "refs/heads/main",
                "production",
                "promote → production",
            ),
            (
                "rollback",
                "refs/heads/main",
                "staging",
                "rollback → staging",
            ),
            ("cron", "refs/heads/main", "", "cron nightly"),
            ("custom", "refs/heads/main", "", "custom"),
        ];
        assert_eq!(expect.map(|e| e.0), EVENTS);
        for (event, r, deploy_to, text) in expect {
            let hook = build_hook(Build {
                event: event.into(),
                r#ref: r.into(),
                deploy_to: deploy_to.into(),
                cron: "nightly".into(),
                ..Build::default()
            });
            let msg = render(&hook).unwrap();
            assert_eq!(field(&msg, "Event"), Some(text), "{event}");
        }
    }

    #[test]
    fn triggers() {
        for (trigger, cron, text) in [
            ("@hook", "", "webhook"),
            ("@cron", "nightly", "cron: nightly"),
            ("@cron", "", "cron"),
            ("octocat", "", "octocat"),
            ("", "", PLACEHOLDER),
        ] {
            let hook = build_hook(Build {
                trigger: trigger.into(),
                cron: cron.into(),
                ..Build::default()
            });
            assert_eq!(field(&render(&hook).unwrap(), "Trigger"), Some(text));
        }
    }

    #[test]
    fn huge_commit_message_is_cut_to_fit() {
        let hook = build_hook(Build {
            message: "x".repeat(10_000),
            status: "running".into(),
            ..Build::default()
        });
        let msg = render(&hook).unwrap();
        check_limits(&msg).unwrap();
        let d = embed(&msg)["description"].as_str().unwrap();
        assert_eq!(d.chars().count(), DESCRIPTION_MAX);
        assert!(d.ends_with('…'));
    }

    fn stage(n: i64, status: &str, steps: usize) -> Stage {
        Stage {
            number: n,
            name: format!("pipeline-{n}-{}", "p".repeat(40)),
            status: status.into(),
            steps: (0..steps)
                .map(|i| Step {
                    number: i as i64 + 1,
                    name: format!("step-{i}-{}", "s".repeat(60)),
                    status: status.into(),
                    exit_code: i64::from(status == "failure"),
                    ..Step::default()
                })
                .collect(),
            ..Stage::default()
        }
    }

    #[test]
    fn many_stages_fold_into_a_summary_keeping_the_failed_one() {
        let mut stages: Vec<Stage> = (1..=40).map(|n| stage(n, "success", 12)).collect();
        stages[37] = stage(38, "failure", 3);
        let hook = build_hook(Build {
            status: "failure".into(),
            message: "m".repeat(10_000),
            stages,
            ..Build::default()
        });
        let msg = render(&hook).unwrap();
        check_limits(&msg).unwrap();
        let fields = embed(&msg)["fields"].as_array().unwrap();
        assert!(fields.len() <= FIELDS_MAX);
        let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
        assert!(
            names.iter().any(|n| n.starts_with("❌ pipeline-38")),
            "{names:?}"
        );
        let summary = names.iter().find(|n| n.starts_with('+')).unwrap();
        assert!(summary.ends_with("more stages"), "{summary}");
        let hidden: usize = summary[1..].split(' ').next().unwrap().parse().unwrap();
        let shown = names.iter().filter(|n| n.contains("pipeline-")).count();
        assert_eq!(hidden + shown, 40);
        // The commit message kept at least its floor.
        let d = embed(&msg)["description"].as_str().unwrap();
        assert!(
            d.chars().count() >= DESCRIPTION_FLOOR,
            "{}",
            d.chars().count()
        );
        // Shown stages stay in pipeline order.
        let numbers: Vec<u32> = names
            .iter()
            .filter_map(|n| n.split("pipeline-").nth(1)?.split('-').next()?.parse().ok())
            .collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    }

    #[test]
    fn summary_never_exceeds_its_reserve() {
        let mut hidden: Vec<Stage> = Vec::new();
        for status in STATUSES.iter().chain(&["weird"]) {
            hidden.extend((0..1000).map(|_| Stage {
                status: (*status).into(),
                ..Stage::default()
            }));
        }
        let refs: Vec<&Stage> = hidden.iter().collect();
        let f = summary_field(&refs);
        assert_eq!(f.name, "+11000 more stages");
        assert!(
            f.value.contains("✅ 1000") && f.value.contains("❔ 1000"),
            "{}",
            f.value
        );
        assert!(f.chars() <= SUMMARY_RESERVE);
    }

    #[test]
    fn step_lines_fold_into_more() {
        let s = stage(1, "failure", 40);
        let f = stage_field(&s);
        assert!(f.value.chars().count() <= FIELD_VALUE_MAX);
        assert!(
            f.value.lines().last().unwrap().starts_with("… +"),
            "{}",
            f.value
        );
        assert!(f.value.starts_with("❌ step-0-"));
        assert!(f.value.lines().next().unwrap().ends_with("(exit 1)"));
    }

    #[test]
    fn mentions_are_never_parsed_and_markdown_in_names_is_escaped() {
        let hook = build_hook(Build {
            message: "@everyone <@&123> look".into(),
            stages: vec![Stage {
                name: "s".into(),
                steps: vec![Step {
                    name: "*bold* [x](https://evil)".into(),
                    status: "success".into(),
                    ..Step::default()
                }],
                ..Stage::default()
            }],
            ..Build::default()
        });
        let msg = render(&hook).unwrap();
        assert_eq!(msg["allowed_mentions"]["parse"], json!([]));
        let stage = embed(&msg)["fields"].as_array().unwrap().last().unwrap();
        assert_eq!(stage["value"], "✅ \\*bold\\* \\[x\\](https://evil)");
    }
}
