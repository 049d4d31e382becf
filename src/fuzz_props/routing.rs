//! Property of the routing file's parser ([`crate::routes::parse`]):
//!
//! * it never panics, whatever the text;
//! * it is deterministic: the same text gives the same routes or error;
//! * an error names a line within the file (1 up to the last line);
//! * an accepted file's routes are numbered in file order, each on a line of
//!   the file and not before the one before (`route = [{..}, {..}]` puts
//!   two on one line); their channels are Discord ids,
//!   their webhook names valid; their globs compile again from their text, to
//!   the same glob, and a glob without `*` matches its own text (a repository
//!   in any case, a branch only as written).
use crate::discord::snowflake::is_snowflake;
use crate::routes::{parse, Case, Destination, Glob};

/// The property. Input: the file's text (invalid UTF-8 replaced).
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let first = parse(&text);
    assert_eq!(first, parse(&text), "parse is not deterministic");
    let last_line = 1 + text.matches('\n').count();
    let routing = match first {
        Err(e) => {
            assert!(
                (1..=last_line).contains(&e.line),
                "error on line {} of a {last_line}-line file: {e}",
                e.line
            );
            return;
        }
        Ok(r) => r,
    };
    let mut previous_line = 0;
    for (i, r) in routing.routes.iter().enumerate() {
        assert_eq!(r.number, i + 1, "routes numbered in file order");
        assert!(
            r.line >= previous_line.max(1) && r.line <= last_line,
            "route {} on line {} (previous {previous_line}, file {last_line})",
            r.number,
            r.line
        );
        previous_line = r.line;
        match &r.destination {
            Destination::Channel(id) => assert!(is_snowflake(id), "channel {id:?} accepted"),
            Destination::Webhook(name) => assert!(
                !name.is_empty()
                    && !name.starts_with('-')
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "webhook name {name:?} accepted"
            ),
            Destination::Default => {}
        }
        for (globs, case) in [
            (&r.repos, Case::Insensitive),
            (&r.branches, Case::Sensitive),
        ] {
            for g in globs.iter().flatten() {
                globs_hold(g, case);
            }
        }
    }
}

fn globs_hold(g: &Glob, case: Case) {
    let text = g.as_str();
    assert_eq!(
        Glob::new(text, case).as_ref(),
        Ok(g),
        "{text:?} does not compile again to the same glob"
    );
    if !text.contains('*') {
        assert!(g.matches(text), "{text:?} does not match itself");
        if case == Case::Insensitive {
            assert!(
                g.matches(&text.to_ascii_uppercase()),
                "{text:?} is case-sensitive on a repository"
            );
        }
    }
}
