//! Drone event → Discord message body.
//!
//! Pure functions: a [`Webhook`] goes in, the JSON body for Discord's create/edit
//! message endpoints comes out. Everything that came from Drone is untrusted
//! text, so Discord's embed limits are enforced *here*, in code points, after
//! trimming: each string is cut on a char boundary with `…`, and when the whole
//! embed would pass 6000 characters the least important stage fields are folded
//! into a "+N more stages" summary before the commit message is shortened.
//! [`check_limits`] validates any message against the same limits; tests and the
//! relay (as a last guard) use it.
use serde_json::{json, Map, Value};

use crate::drone::{is_final, Build, Kind, Stage, Step, System, User, Webhook, STATUSES};

/// Discord's limits (see DISCORD_API_NOTES.md, "Embed limits"), in code points.
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELDS_MAX: usize = 25;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
pub const FOOTER_MAX: usize = 2048;
pub const AUTHOR_NAME_MAX: usize = 256;
pub const EMBED_TOTAL_MAX: usize = 6000;
pub const EMBEDS_MAX: usize = 10;
pub const CONTENT_MAX: usize = 2000;
/// Not a documented Discord number; a sane cap so a huge URL can never be sent.
pub const URL_MAX: usize = 2048;

/// Shown instead of an empty name or value, which Discord rejects.
const PLACEHOLDER: &str = "—";
/// Cap for the small fixed fields (build, status, trigger, ...). Keeping them
/// small guarantees room for the commit message and the stage summary.
const SHORT_VALUE_MAX: usize = 300;
/// A step or stage name longer than this is cut: one line per step must stay readable.
const STEP_NAME_MAX: usize = 100;
/// The commit message keeps at least this much before stages are dropped for it.
const DESCRIPTION_FLOOR: usize = 1024;
/// Upper bound on the "+N more stages" field: name plus one count per status.
const SUMMARY_RESERVE: usize = 400;

const GREEN: u32 = 0x2ECC71;
const GREY: u32 = 0x95A5A6;

/// How one Drone status looks in Discord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusStyle {
    pub emoji: &'static str,
    pub label: String,
    /// `None` for statuses this version does not know: the embed then has no colour.
    pub color: Option<u32>,
}

/// Emoji, label and colour for a build/stage/step status.
pub fn status_style(status: &str) -> StatusStyle {
    let (emoji, label, color) = match status {
        "pending" => ("⏳", "Pending", 0x9E9E9E),
        "running" => ("🔄", "Running", 0x3498DB),
        "success" => ("✅", "Success", GREEN),
        "failure" => ("❌", "Failure", 0xE74C3C),
        "killed" => ("🛑", "Killed", 0x992D22),
        "error" => ("⚠️", "Error", 0xE67E22),
        "skipped" => ("⏭️", "Skipped", 0x7F8C8D),
        "blocked" => ("🚧", "Blocked (awaiting approval)", 0xF1C40F),
        "declined" => ("🚫", "Declined", 0x71368A),
        "waiting_on_dependencies" => ("🔗", "Waiting on dependencies", 0xBDC3C7),
        other => {
            let label = truncate(&one_line(other), 64);
            return StatusStyle {
                emoji: "❔",
                label: if label.is_empty() {
                    "Unknown".to_owned()
                } else {
                    label
                },
                color: None,
            };
        }
    };
    StatusStyle {
        emoji,
        label: label.to_owned(),
        color: Some(color),
    }
}

/// The Discord message body for a webhook, or `None` when this version does not
/// know the event/action, or the payload lacks the object the event is about
/// (a build event without `build`, a repo event without `repo`, ...).
pub fn render(hook: &Webhook) -> Option<Value> {
    let embed = match hook.kind()? {
        Kind::BuildCreated | Kind::BuildUpdated => build_embed(hook, hook.build.as_ref()?),
        Kind::UserCreated => user_embed(hook, hook.user.as_ref()?, true),
        Kind::UserDeleted => user_embed(hook, hook.user.as_ref()?, false),
        Kind::RepoEnabled => repo_embed(hook, true)?,
        Kind::RepoDisabled => repo_embed(hook, false)?,
    };
    Some(finish(embed))
}

// ---------------------------------------------------------------------------
// Embed model: plain Rust while we budget characters, JSON at the end.

#[derive(Debug, Clone, Default)]
struct Field {
    name: String,
    value: String,
    inline: bool,
}

impl Field {
    /// Cleans, trims, truncates and fills in placeholders, so a `Field` is always sendable.
    fn new(name: &str, value: &str, inline: bool) -> Field {
        Field {
            name: or_placeholder(truncate(&one_line(name), FIELD_NAME_MAX)),
            value: or_placeholder(truncate(&multi_line(value), FIELD_VALUE_MAX)),
            inline,
        }
    }

    fn chars(&self) -> usize {
        count(&self.name) + count(&self.value)
    }
}

#[derive(Debug, Clone, Default)]
struct Embed {
    title: String,
    url: Option<String>,
    description: String,
    color: Option<u32>,
    author_name: String,
    author_icon: Option<String>,
    fields: Vec<Field>,
    footer: String,
    timestamp: Option<String>,
}

impl Embed {
    /// Characters outside the description and fields (title, author, footer).
    fn frame_chars(&self) -> usize {
        count(&self.title) + count(&self.author_name) + count(&self.footer)
    }

    fn to_json(&self) -> Value {
        let mut e = Map::new();
        if !self.title.is_empty() {
            e.insert("title".into(), Value::from(self.title.clone()));
        }
        if let Some(url) = &self.url {
            e.insert("url".into(), Value::from(url.clone()));
        }
        if !self.description.is_empty() {
            e.insert("description".into(), Value::from(self.description.clone()));
        }
        if let Some(color) = self.color {
            e.insert("color".into(), Value::from(color));
        }
        if !self.author_name.is_empty() {
            let mut a = Map::new();
            a.insert("name".into(), Value::from(self.author_name.clone()));
            if let Some(icon) = &self.author_icon {
                a.insert("icon_url".into(), Value::from(icon.clone()));
            }
            e.insert("author".into(), Value::Object(a));
        }
        if !self.fields.is_empty() {
            let fields = self
                .fields
                .iter()
                .map(|f| json!({"name": f.name, "value": f.value, "inline": f.inline}))
                .collect();
            e.insert("fields".into(), Value::Array(fields));
        }
        if !self.footer.is_empty() {
            e.insert("footer".into(), json!({ "text": self.footer }));
        }
        if let Some(ts) = &self.timestamp {
            e.insert("timestamp".into(), Value::from(ts.clone()));
        }
        Value::Object(e)
    }
}

/// Wrap one embed into a message body and check it. The budgeting above makes a
/// failure impossible by construction; should it happen anyway, a bare embed is
/// sent instead of a message Discord would reject.
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

fn footer(system: Option<&System>) -> String {
    let version = system.map(|s| one_line(&s.version)).unwrap_or_default();
    if version.is_empty() {
        "Drone".to_owned()
    } else {
        truncate(&format!("Drone {version}"), 64)
    }
}

/// `<system.link>/<path>` when that is a usable http(s) URL.
fn drone_url(system: Option<&System>, path: &str) -> Option<String> {
    let base = system?.link.trim().trim_end_matches('/');
    if path.is_empty() {
        return None;
    }
    http_url(&format!("{base}/{path}"))
}

// ---------------------------------------------------------------------------
// Builds

fn build_embed(hook: &Webhook, build: &Build) -> Embed {
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

fn short_field(name: &str, value: &str) -> Field {
    let mut f = Field::new(name, value, true);
    f.value = or_placeholder(truncate(&f.value, SHORT_VALUE_MAX));
    f
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

// ---------------------------------------------------------------------------
// Users and repositories: one compact embed each.

fn user_embed(hook: &Webhook, user: &User, created: bool) -> Embed {
    let login = truncate(&one_line(&user.login), AUTHOR_NAME_MAX);
    let role = if user.machine {
        "machine"
    } else if user.admin {
        "admin"
    } else {
        "user"
    };
    let mut embed = Embed {
        title: if created {
            "User created"
        } else {
            "User deleted"
        }
        .to_owned(),
        color: Some(if created { GREEN } else { GREY }),
        author_icon: http_url(&user.avatar).filter(|_| !login.is_empty()),
        fields: vec![
            short_field("Login", &escape_md(&login)),
            short_field("Role", role),
        ],
        footer: footer(hook.system.as_ref()),
        timestamp: iso8601(if created { user.created } else { user.updated }),
        ..Embed::default()
    };
    embed.author_name = login;
    embed
}

fn repo_embed(hook: &Webhook, enabled: bool) -> Option<Embed> {
    let repo = hook.repo.as_ref()?;
    let slug = one_line(&repo.slug);
    let mut fields = vec![short_field(
        "Repository",
        &link_or_text(
            if slug.is_empty() { PLACEHOLDER } else { &slug },
            http_url(&repo.link).as_deref(),
        ),
    )];
    if !repo.default_branch.trim().is_empty() {
        fields.push(short_field(
            "Default branch",
            &escape_md(&one_line(&repo.default_branch)),
        ));
    }
    if !repo.visibility.trim().is_empty() {
        fields.push(short_field(
            "Visibility",
            &escape_md(&one_line(&repo.visibility)),
        ));
    }
    let (author_name, author_icon) = match &hook.user {
        Some(u) if !u.login.trim().is_empty() => (
            truncate(&one_line(&u.login), AUTHOR_NAME_MAX),
            http_url(&u.avatar),
        ),
        _ => (String::new(), None),
    };
    Some(Embed {
        title: if enabled {
            "Repository enabled"
        } else {
            "Repository disabled"
        }
        .to_owned(),
        url: drone_url(hook.system.as_ref(), &slug),
        color: Some(if enabled { GREEN } else { GREY }),
        author_name,
        author_icon,
        fields,
        footer: footer(hook.system.as_ref()),
        ..Embed::default()
    })
}

// ---------------------------------------------------------------------------
// Text helpers. Inputs are untrusted; outputs are trimmed and bounded.

fn count(s: &str) -> usize {
    s.chars().count()
}

/// Trim, then cut to at most `max` code points, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    if count(s) <= max {
        return s.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.truncate(out.trim_end().len());
    out.push('…');
    out
}

/// One line: control characters (newlines included) become spaces; trimmed.
fn one_line(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    mapped.trim().to_owned()
}

/// Several lines: `\r\n` → `\n`, other control characters except tab dropped; trimmed.
fn multi_line(s: &str) -> String {
    let mapped: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    mapped.trim().to_owned()
}

fn or_placeholder(s: String) -> String {
    if s.trim().is_empty() {
        PLACEHOLDER.to_owned()
    } else {
        s
    }
}

/// Escape the Markdown characters that would restyle a name shown in a field value.
fn escape_md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '<' | '>'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A URL Discord will accept in an embed: http(s), no whitespace, bounded.
fn http_url(s: &str) -> Option<String> {
    let s = s.trim();
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let scheme_len = if lower.starts_with("https://") {
        8
    } else if lower.starts_with("http://") {
        7
    } else {
        return None;
    };
    let ok = s.len() > scheme_len
        && s.len() <= URL_MAX
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| s.to_owned())
}

/// A URL made safe inside Markdown's `(...)`.
fn md_url(url: &str) -> String {
    url.replace('(', "%28").replace(')', "%29")
}

/// `[text](url)` when there is a URL and the link fits a short field; plain text otherwise.
fn link_or_text(text: &str, url: Option<&str>) -> String {
    let text = escape_md(&truncate(&one_line(text), 200));
    match url {
        Some(url) => {
            let link = format!("[{text}]({})", md_url(url));
            if count(&link) <= SHORT_VALUE_MAX {
                link
            } else {
                text
            }
        }
        None => text,
    }
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ`; `None` outside years 1970..=9999.
pub fn iso8601(ts: i64) -> Option<String> {
    if !(1..=253_402_300_799).contains(&ts) {
        return None;
    }
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    let (year, month, day) = crate::httpdate::civil_from_days(days);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

// ---------------------------------------------------------------------------
// Validation

/// Check a message body against Discord's documented limits and this project's
/// rules (no nulls, no empty names/values, http(s) URLs, mentions disabled).
/// Returns the first problem found.
pub fn check_limits(msg: &Value) -> Result<(), String> {
    let obj = msg.as_object().ok_or("message is not a JSON object")?;
    no_nulls(msg, "message")?;
    if let Some(nonce) = obj.get("nonce") {
        let n = match nonce {
            Value::String(s) => count(s),
            Value::Number(n) => n.to_string().len(),
            _ => return Err("nonce is neither a string nor a number".into()),
        };
        if n > 25 {
            return Err(format!("nonce has {n} chars > 25"));
        }
    }
    if let Some(content) = obj.get("content") {
        let c = content.as_str().ok_or("content is not a string")?;
        limit("content", c, CONTENT_MAX)?;
    }
    let parse = obj
        .get("allowed_mentions")
        .and_then(|m| m.get("parse"))
        .and_then(Value::as_array)
        .ok_or("allowed_mentions.parse missing")?;
    if !parse.is_empty() {
        return Err("allowed_mentions.parse must be empty".into());
    }
    let embeds = match obj.get("embeds") {
        None => &Vec::new(),
        Some(e) => e.as_array().ok_or("embeds is not an array")?,
    };
    if embeds.len() > EMBEDS_MAX {
        return Err(format!("{} embeds > {EMBEDS_MAX}", embeds.len()));
    }
    if embeds.is_empty() && obj.get("content").is_none() {
        return Err("message has neither embeds nor content".into());
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        total += check_embed(embed).map_err(|e| format!("embed {i}: {e}"))?;
    }
    if total > EMBED_TOTAL_MAX {
        return Err(format!("embeds total {total} chars > {EMBED_TOTAL_MAX}"));
    }
    Ok(())
}

/// Validates one embed; returns its character count toward the 6000 total.
fn check_embed(embed: &Value) -> Result<usize, String> {
    let e = embed.as_object().ok_or("not an object")?;
    let mut total = 0;
    total += opt_text(e.get("title"), "title", TITLE_MAX)?;
    total += opt_text(e.get("description"), "description", DESCRIPTION_MAX)?;
    opt_url(e.get("url"), "url")?;
    if let Some(color) = e.get("color") {
        let c = color
            .as_u64()
            .ok_or("color is not a non-negative integer")?;
        if c > 0xFF_FFFF {
            return Err(format!("color {c} > 0xFFFFFF"));
        }
    }
    if let Some(ts) = e.get("timestamp") {
        ts.as_str().ok_or("timestamp is not a string")?;
    }
    if let Some(author) = e.get("author") {
        total += req_text(author.get("name"), "author.name", AUTHOR_NAME_MAX)?;
        opt_url(author.get("icon_url"), "author.icon_url")?;
        opt_url(author.get("url"), "author.url")?;
    }
    if let Some(footer) = e.get("footer") {
        total += req_text(footer.get("text"), "footer.text", FOOTER_MAX)?;
        opt_url(footer.get("icon_url"), "footer.icon_url")?;
    }
    for key in ["thumbnail", "image"] {
        if let Some(media) = e.get(key) {
            opt_url(media.get("url"), key)?;
        }
    }
    if let Some(fields) = e.get("fields") {
        let fields = fields.as_array().ok_or("fields is not an array")?;
        if fields.len() > FIELDS_MAX {
            return Err(format!("{} fields > {FIELDS_MAX}", fields.len()));
        }
        for (i, f) in fields.iter().enumerate() {
            total += req_text(f.get("name"), &format!("field {i} name"), FIELD_NAME_MAX)?;
            total += req_text(f.get("value"), &format!("field {i} value"), FIELD_VALUE_MAX)?;
            if let Some(inline) = f.get("inline") {
                inline
                    .as_bool()
                    .ok_or(format!("field {i} inline is not a bool"))?;
            }
        }
    }
    if total == 0 && e.get("fields").is_none() {
        return Err("embed is empty".into());
    }
    Ok(total)
}

fn limit(what: &str, s: &str, max: usize) -> Result<usize, String> {
    let n = count(s.trim());
    if n > max {
        Err(format!("{what} has {n} chars > {max}"))
    } else {
        Ok(n)
    }
}

fn req_text(v: Option<&Value>, what: &str, max: usize) -> Result<usize, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or(format!("{what} missing or not a string"))?;
    if s.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    limit(what, s, max)
}

fn opt_text(v: Option<&Value>, what: &str, max: usize) -> Result<usize, String> {
    match v {
        None => Ok(0),
        Some(_) => req_text(v, what, max),
    }
}

fn opt_url(v: Option<&Value>, what: &str) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(v) => {
            let s = v.as_str().ok_or(format!("{what} is not a string"))?;
            http_url(s)
                .map(|_| ())
                .ok_or(format!("{what} is not an http(s) URL"))
        }
    }
}

fn no_nulls(v: &Value, path: &str) -> Result<(), String> {
    match v {
        Value::Null => Err(format!("{path} is null")),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .try_for_each(|(i, x)| no_nulls(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o
            .iter()
            .try_for_each(|(k, x)| no_nulls(x, &format!("{path}.{k}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::{parse, Repo, EVENTS};

    fn fixture(name: &str) -> Webhook {
        let path = format!(
            "{}/test/fixtures/drone/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
        parse(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn embed(msg: &Value) -> &Value {
        &msg["embeds"][0]
    }

    fn field<'a>(msg: &'a Value, name: &str) -> Option<&'a str> {
        embed(msg)["fields"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)?["value"]
            .as_str()
    }

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
    fn every_status_has_its_own_colour_and_emoji() {
        let styles: Vec<StatusStyle> = STATUSES.iter().map(|s| status_style(s)).collect();
        for (i, a) in styles.iter().enumerate() {
            assert!(a.color.is_some(), "{}", STATUSES[i]);
            assert!(!a.label.is_empty());
            for b in &styles[i + 1..] {
                assert_ne!(a.color, b.color, "{} / {}", a.label, b.label);
                assert_ne!(a.emoji, b.emoji, "{} / {}", a.label, b.label);
            }
        }
        let unknown = status_style("exploded\n");
        assert_eq!((unknown.color, unknown.label.as_str()), (None, "exploded"));
        assert_eq!(status_style("").label, "Unknown");
    }

    #[test]
    fn truncate_counts_code_points_and_marks_the_cut() {
        assert_eq!(truncate("  abc  ", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("ab  cd", 4), "ab…");
        assert_eq!(truncate("日本語テキスト", 4), "日本語…");
        assert_eq!(truncate("😀😀😀", 2).chars().count(), 2);
        assert_eq!(truncate("abc", 0), "");
        let cut = truncate(&"é".repeat(5000), 4096);
        assert_eq!(cut.chars().count(), 4096);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn durations_and_timestamps() {
        assert_eq!(duration(69), "1m 09s");
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(3723), "1h 02m 03s");
        assert_eq!(duration(-5), "0s");
        assert_eq!(
            iso8601(1_636_759_700).as_deref(),
            Some("2021-11-12T23:28:20Z")
        );
        assert_eq!(
            iso8601(951_782_400).as_deref(),
            Some("2000-02-29T00:00:00Z")
        );
        assert_eq!(
            iso8601(253_402_300_799).as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
        assert_eq!(iso8601(1).as_deref(), Some("1970-01-01T00:00:01Z"));
        assert_eq!(iso8601(0), None);
        assert_eq!(iso8601(i64::MAX), None);
        assert_eq!(iso8601(-1), None);
    }

    #[test]
    fn refs_and_urls() {
        assert_eq!(pull_number("refs/pull/42/head"), Some(42));
        assert_eq!(pull_number("refs/merge-requests/7/head"), Some(7));
        assert_eq!(pull_number("refs/pull/x/head"), None);
        assert_eq!(pull_number("refs/heads/main"), None);
        assert_eq!(short_ref("refs/heads/feature/x"), "feature/x");
        assert_eq!(short_ref("refs/tags/v1.2.3"), "v1.2.3");
        assert_eq!(http_url(" https://a.b/c "), Some("https://a.b/c".into()));
        assert_eq!(http_url("HTTP://a.b"), Some("HTTP://a.b".into()));
        for bad in [
            "",
            "https://",
            "javascript:alert(1)",
            "ftp://x",
            "https://a b",
            "ü",
        ] {
            assert_eq!(http_url(bad), None, "{bad:?}");
        }
        assert_eq!(md_url("https://x/a_(b)"), "https://x/a_%28b%29");
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

    #[test]
    fn user_and_repo_events_render_compact_embeds() {
        let msg = render(&fixture("user_created")).unwrap();
        check_limits(&msg).unwrap();
        assert_eq!(embed(&msg)["title"], "User created");
        assert_eq!(embed(&msg)["author"]["name"], "test");
        assert_eq!(field(&msg, "Role"), Some("user"));
        let msg = render(&fixture("user_deleted")).unwrap();
        assert_eq!(embed(&msg)["title"], "User deleted");
        assert_eq!(embed(&msg)["color"], GREY);
        let msg = render(&fixture("repo_enabled")).unwrap();
        check_limits(&msg).unwrap();
        assert_eq!(
            embed(&msg)["url"],
            "https://drone.kiwi-labs.net/Diesel-Net/plex"
        );
        assert_eq!(
            field(&msg, "Repository"),
            Some("[Diesel-Net/plex](https://github.com/Diesel-Net/plex)")
        );
        let msg = render(&fixture("repo_disabled")).unwrap();
        assert_eq!(embed(&msg)["title"], "Repository disabled");
        assert!(embed(&msg).get("author").is_none());
    }

    fn ok_msg() -> Value {
        json!({"embeds": [{"title": "t", "fields": [{"name": "n", "value": "v", "inline": true}]}],
               "allowed_mentions": {"parse": []}})
    }

    #[test]
    fn check_limits_rejects_each_violation() {
        check_limits(&ok_msg()).unwrap();
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "null colour",
                Box::new(|m| m["embeds"][0]["color"] = Value::Null),
            ),
            (
                "colour range",
                Box::new(|m| m["embeds"][0]["color"] = json!(0x1000000)),
            ),
            (
                "long title",
                Box::new(|m| m["embeds"][0]["title"] = json!("t".repeat(257))),
            ),
            (
                "empty value",
                Box::new(|m| m["embeds"][0]["fields"][0]["value"] = json!("  ")),
            ),
            (
                "numeric value",
                Box::new(|m| m["embeds"][0]["fields"][0]["value"] = json!(5)),
            ),
            (
                "long field name",
                Box::new(|m| m["embeds"][0]["fields"][0]["name"] = json!("n".repeat(257))),
            ),
            (
                "long field value",
                Box::new(|m| m["embeds"][0]["fields"][0]["value"] = json!("v".repeat(1025))),
            ),
            (
                "26 fields",
                Box::new(|m| {
                    m["embeds"][0]["fields"] = json!(vec![json!({"name":"n","value":"v"}); 26])
                }),
            ),
            (
                "bad url",
                Box::new(|m| m["embeds"][0]["url"] = json!("javascript:x")),
            ),
            ("empty url", Box::new(|m| m["embeds"][0]["url"] = json!(""))),
            (
                "long footer",
                Box::new(|m| m["embeds"][0]["footer"] = json!({"text": "f".repeat(2049)})),
            ),
            (
                "long author",
                Box::new(|m| m["embeds"][0]["author"] = json!({"name": "a".repeat(257)})),
            ),
            (
                "mentions",
                Box::new(|m| m["allowed_mentions"] = json!({"parse": ["everyone"]})),
            ),
            (
                "no mentions",
                Box::new(|m| {
                    m.as_object_mut().unwrap().remove("allowed_mentions");
                }),
            ),
            (
                "11 embeds",
                Box::new(|m| m["embeds"] = json!(vec![json!({"title": "t"}); 11])),
            ),
            ("empty embed", Box::new(|m| m["embeds"][0] = json!({}))),
            (
                "total",
                Box::new(|m| {
                    m["embeds"][0]["description"] = json!("d".repeat(4096));
                    m["embeds"][0]["fields"] =
                        json!(vec![json!({"name":"n","value":"v".repeat(1000)}); 2]);
                }),
            ),
            (
                "total over embeds",
                Box::new(|m| {
                    m["embeds"] = json!(vec![json!({"description": "d".repeat(4000)}); 2])
                }),
            ),
        ];
        for (what, mutate) in cases {
            let mut m = ok_msg();
            mutate(&mut m);
            assert!(check_limits(&m).is_err(), "{what} accepted");
        }
        // Counting is per code point after trimming, so exactly-at-limit passes.
        let mut m = ok_msg();
        m["embeds"][0]["title"] = json!(format!("  {}  ", "日".repeat(256)));
        check_limits(&m).unwrap();
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

    #[test]
    fn check_limits_accepts_the_relays_nonce_but_not_a_long_one() {
        let mut m = ok_msg();
        m["nonce"] = json!("b2088-v2");
        m["enforce_nonce"] = json!(true);
        check_limits(&m).unwrap();
        m["nonce"] = json!("n".repeat(26));
        assert!(check_limits(&m).is_err());
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
