//! Property of the Drone payload reader ([`crate::drone`]) together with the
//! renderer ([`crate::render`]): for every input the reader accepts, the
//! message rendered from it is within Discord's limits ([`check_limits`]),
//! and it is so already before the renderer's last-resort fallback, which
//! must never be needed. Webhooks built field by field from the fuzzer's
//! bytes (long, odd text in every field, many stages) also survive the
//! trip through JSON unchanged.
use super::input::Input;
use crate::drone::{self, Build, Repo, Stage, Step, User, Webhook, EVENTS, STATUSES};
use crate::render::{check_limits, render, render_unguarded};

/// Characters one generated text field holds at most.
const MAX_TEXT: usize = 12_000;
/// Drone's webhook events and actions (a few the renderer does not know among them).
const KINDS: [&str; 4] = ["build", "repo", "user", "system"];
const ACTIONS: [&str; 5] = ["created", "updated", "enabled", "disabled", "deleted"];

/// The property. Input: a payload as Drone would send it (starting with `{`,
/// so the fixtures are seeds as they are), or a byte that is not `{`
/// followed by the bytes that choose a webhook's fields.
pub fn check(data: &[u8]) {
    if data.first() == Some(&b'{') {
        if let Ok(hook) = drone::parse(data) {
            check_rendering(&hook);
        }
        return;
    }
    let mut input = Input::new(data.get(1..).unwrap_or_default());
    let hook = webhook(&mut input);
    let json = serde_json::to_vec(&hook).unwrap_or_default();
    match drone::parse(&json) {
        Ok(back) => assert_eq!(back, hook, "a webhook changed through JSON"),
        Err(e) => panic!("the reader refused a serialised webhook: {e}"),
    }
    check_rendering(&hook);
}

fn check_rendering(hook: &Webhook) {
    if let Some(msg) = render_unguarded(hook) {
        if let Err(why) = check_limits(&msg) {
            panic!("the renderer's budget failed ({why}); the fallback had to act");
        }
    }
    if let Some(msg) = render(hook) {
        if let Err(why) = check_limits(&msg) {
            panic!("a rendered message breaks Discord's limits: {why}");
        }
    }
}

/// A text field: fuzzer bytes, repeated up to [`MAX_TEXT`] characters.
fn text(input: &mut Input<'_>) -> String {
    let unit = input.short_string();
    let reps = match input.byte() {
        b @ 0xc0.. => usize::from(b - 0xbf) * 64,
        _ => 1,
    };
    let reps = reps.min(MAX_TEXT / unit.chars().count().max(1)).max(1);
    unit.repeat(reps)
}

fn pick(input: &mut Input<'_>, from: &[&str]) -> String {
    let b = usize::from(input.byte());
    match from.get(b) {
        Some(s) => (*s).to_owned(),
        None if b < 0xf0 => from
            .get(b % from.len().max(1))
            .copied()
            .unwrap_or("")
            .to_owned(),
        None => text(input),
    }
}

fn number(input: &mut Input<'_>) -> i64 {
    match input.byte() {
        0 => 0,
        1 => i64::MAX,
        2 => i64::MIN,
        3 => -1,
        _ => i64::from(input.u32()),
    }
}

fn webhook(input: &mut Input<'_>) -> Webhook {
    let flags = input.byte();
    Webhook {
        event: pick(input, &KINDS),
        action: pick(input, &ACTIONS),
        user: (flags & 1 != 0).then(|| User {
            id: number(input),
            login: text(input),
            email: text(input),
            avatar: text(input),
            admin: flags & 0x10 != 0,
            machine: flags & 0x20 != 0,
            active: flags & 0x40 != 0,
            created: number(input),
            updated: number(input),
        }),
        repo: (flags & 2 != 0).then(|| Repo {
            id: number(input),
            namespace: text(input),
            name: text(input),
            slug: text(input),
            link: text(input),
            default_branch: text(input),
            visibility: text(input),
            private: flags & 0x80 != 0,
            active: true,
            counter: number(input),
        }),
        build: (flags & 4 != 0).then(|| build(input)),
        system: None,
    }
}

fn build(input: &mut Input<'_>) -> Build {
    let mut b = Build {
        number: number(input),
        status: pick(input, &STATUSES),
        error: text(input),
        event: pick(input, &EVENTS),
        link: text(input),
        title: text(input),
        message: text(input),
        r#ref: text(input),
        source: text(input),
        target: text(input),
        author_login: text(input),
        author_name: text(input),
        author_avatar: text(input),
        sender: text(input),
        cron: text(input),
        trigger: text(input),
        deploy_to: text(input),
        started: number(input),
        finished: number(input),
        created: number(input),
        ..Build::default()
    };
    for _ in 0..input.byte() % 3 {
        b.params.insert(text(input), text(input));
    }
    let stages = match input.byte() {
        n @ 0xf0.. => usize::from(n - 0xef) * 10,
        n => usize::from(n % 8),
    };
    for i in 0..stages {
        if input.is_empty() && i > 0 {
            // Out of bytes: the rest of the stages are copies of the first.
            let first = b.stages.first().cloned().unwrap_or_default();
            b.stages.push(first);
            continue;
        }
        let mut stage = Stage {
            number: number(input),
            name: text(input),
            status: pick(input, &STATUSES),
            error: text(input),
            started: number(input),
            stopped: number(input),
            ..Stage::default()
        };
        for _ in 0..input.byte() % 6 {
            stage.steps.push(Step {
                name: text(input),
                status: pick(input, &STATUSES),
                exit_code: number(input),
                ..Step::default()
            });
        }
        b.stages.push(stage);
    }
    b
}
