//! The globs of the routing file (`repos`, `branches`), matched by hand.
//!
//! A pattern is split into `/`-separated parts, and so is the text:
//!
//! * `*` matches any run of characters within one part (never a `/`), the
//!   empty run included: `Diesel-Net/*` matches `Diesel-Net/plex`, not
//!   `Diesel-Net/a/b`;
//! * `**` as a whole part matches zero or more whole parts: `release/**`
//!   matches `release`, `release/1.2` and `release/1.2/hotfix`; `**` alone
//!   matches everything, the empty text included;
//! * every other character matches itself.
//!
//! Repository slugs compare case-insensitively (GitHub, Gitea and GitLab treat
//! `Diesel-Net/Plex` and `diesel-net/plex` as one repository); branches and tags
//! compare exactly, as git does.
//!
//! Written here rather than taken from a crate: `globset` (the maintained
//! standard) brings `regex-automata` and `aho-corasick` into a binary that must
//! stay under 2 MiB, for two wildcards; `glob`/`wildmatch` match file paths
//! (`?`, `[...]`, their own `**` rules) rather than these rules.
//!
//! `?`, `[`, `]` and `\` are refused when the file is read: none can occur in
//! a branch, tag or repository name, so a pattern holding one was written for
//! another glob dialect, and silently matching it literally would surprise.
//! A `**` that is not a whole part (`a**`, `**b`) is refused for the same reason.
use std::fmt;

/// A checked pattern, ready to match.
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as written (for messages).
    source: String,
    parts: Vec<Part>,
    case_insensitive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    /// `**`: zero or more whole parts.
    AnyParts,
    /// One part: literal runs separated by `*` (a part without `*` is one run).
    Runs(Vec<String>),
}

/// Whether the text is a repository slug (case-insensitive) or a branch/tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Insensitive,
    Sensitive,
}

impl Glob {
    /// Check and compile `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str, case: Case) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches nothing; leave the key out to match all".into());
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| matches!(c, '?' | '[' | ']' | '\\'))
        {
            return Err(format!(
                "{pattern:?}: {c:?} is not supported (only * within a part and ** across parts)"
            ));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "{pattern:?}: {c:?} cannot occur in a repository, branch or tag name"
            ));
        }
        let case_insensitive = case == Case::Insensitive;
        let folded = if case_insensitive {
            pattern.to_lowercase()
        } else {
            pattern.to_string()
        };
        let mut parts = Vec::new();
        for part in folded.split('/') {
            if part == "**" {
                // `**/**` is the same as `**`.
                if parts.last() != Some(&Part::AnyParts) {
                    parts.push(Part::AnyParts);
                }
            } else if part.contains("**") {
                return Err(format!(
                    "{pattern:?}: ** must be a whole part (as in release/**); * matches within a part"
                ));
            } else {
                parts.push(Part::Runs(part.split('*').map(str::to_string).collect()));
            }
        }
        Ok(Glob {
            source: pattern.to_string(),
            parts,
            case_insensitive,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let folded;
        let text = if self.case_insensitive {
            folded = text.to_lowercase();
            folded.as_str()
        } else {
            text
        };
        let texts: Vec<&str> = text.split('/').collect();
        match_parts(&self.parts, &texts)
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.source)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Parts against parts. `**` tries every number of parts it could swallow;
/// consecutive `**` were merged, so the work is bounded by patterns × parts
/// per `**` (patterns and names are short).
fn match_parts(pattern: &[Part], text: &[&str]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((Part::AnyParts, rest)) => {
            (0..=text.len()).any(|skip| match_parts(rest, &text[skip..]))
        }
        Some((Part::Runs(runs), rest)) => match text.split_first() {
            Some((first, more)) => match_runs(runs, first) && match_parts(rest, more),
            None => false,
        },
    }
}

/// One part: `runs` are the literal pieces between `*`s. The first must start
/// the text, the last must end it, the middle ones are found left to right
/// (taking each at its first occurrence is enough: a later one only leaves
/// less room for the rest).
fn match_runs(runs: &[String], text: &str) -> bool {
    match runs {
        [] => text.is_empty(),
        [only] => text == only,
        [first, middle @ .., last] => {
            if text.len() < first.len() + last.len()
                || !text.starts_with(first.as_str())
                || !text.ends_with(last.as_str())
            {
                return false;
            }
            let mut rest = &text[first.len()..text.len() - last.len()];
            for run in middle {
                match rest.find(run.as_str()) {
                    Some(at) => rest = &rest[at + run.len()..],
                    None => return false,
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branch(p: &str) -> Glob {
        Glob::new(p, Case::Sensitive).unwrap()
    }

    fn repo(p: &str) -> Glob {
        Glob::new(p, Case::Insensitive).unwrap()
    }

    #[test]
    fn literals_match_exactly() {
        assert!(branch("main").matches("main"));
        assert!(!branch("main").matches("main2"));
        assert!(!branch("main").matches("mai"));
        assert!(!branch("main").matches(""));
        assert!(!branch("main").matches("main/x"));
        assert!(branch("release/1.2").matches("release/1.2"));
        assert!(!branch("release/1.2").matches("release/1.3"));
    }

    #[test]
    fn star_stays_within_one_part() {
        let g = branch("release/*");
        assert!(g.matches("release/1.2"));
        assert!(g.matches("release/"));
        assert!(!g.matches("release/1.2/hotfix"));
        assert!(!g.matches("release"));
        assert!(!g.matches("releases/1.2"));
        assert!(branch("*").matches("main"));
        assert!(branch("*").matches(""));
        assert!(!branch("*").matches("feature/x"));
        assert!(repo("Diesel-Net/*").matches("Diesel-Net/plex"));
        assert!(!repo("Diesel-Net/*").matches("Other/plex"));
        assert!(!repo("*").matches("Diesel-Net/plex"));
    }

    #[test]
    fn star_inside_a_part() {
        let g = branch("feature-*-fix");
        assert!(g.matches("feature-login-fix"));
        assert!(g.matches("feature--fix"));
        assert!(!g.matches("feature-fix"), "the runs may not overlap");
        assert!(!g.matches("feature-a/b-fix"));
        let g = branch("v*.*.*");
        assert!(g.matches("v1.4.0"));
        assert!(g.matches("v10.0.12"));
        assert!(!g.matches("v1.4"));
        assert!(!g.matches("1.4.0"));
        assert!(branch("*-rc*").matches("1.0-rc2"));
        assert!(branch("a*b*c").matches("abc"));
        assert!(branch("a*b*c").matches("axxbyyc"));
        assert!(!branch("a*b*c").matches("axxcyyb"));
    }

    #[test]
    fn double_star_crosses_parts() {
        let g = branch("release/**");
        assert!(g.matches("release"));
        assert!(g.matches("release/1.2"));
        assert!(g.matches("release/1.2/hotfix"));
        assert!(!g.matches("releases/1.2"));
        let g = branch("**");
        assert!(g.matches(""));
        assert!(g.matches("main"));
        assert!(g.matches("a/b/c"));
        let g = branch("**/fix");
        assert!(g.matches("fix"));
        assert!(g.matches("feature/login/fix"));
        assert!(!g.matches("feature/fix/login"));
        let g = branch("a/**/z");
        assert!(g.matches("a/z"));
        assert!(g.matches("a/b/c/z"));
        assert!(!g.matches("a/b/c"));
        let g = repo("**/plex");
        assert!(g.matches("Diesel-Net/plex"));
        assert!(g.matches("group/sub/plex"));
        let g = branch("a/**/**/z");
        assert!(g.matches("a/z") && g.matches("a/1/2/3/z"));
        let g = branch("**/*-hotfix/**");
        assert!(g.matches("x/1.2-hotfix/y/z"));
        assert!(g.matches("1.2-hotfix"));
        assert!(!g.matches("x/1.2-hotfixes/y"));
    }

    #[test]
    fn repositories_ignore_case_branches_do_not() {
        assert!(repo("diesel-net/PLEX").matches("Diesel-Net/plex"));
        assert!(repo("Diesel-Net/*").matches("DIESEL-NET/Plex"));
        assert!(!branch("Main").matches("main"));
        assert!(!branch("release/*").matches("Release/1"));
        // Non-ASCII letters fold too.
        assert!(repo("ÄRGER/*").matches("ärger/x"));
    }

    #[test]
    fn unicode_is_matched_by_character() {
        assert!(branch("fix-*-ü").matches("fix-ß-ü"));
        assert!(branch("*é").matches("café"));
        assert!(!branch("*é").matches("cafe"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (p, why) in [
            ("", "empty"),
            ("release/?", "'?'"),
            ("[ab]", "'['"),
            ("a]", "']'"),
            ("a\\b", "'\\\\'"),
            ("main ", "' '"),
            ("ma\tin", "'\\t'"),
            ("a**", "whole part"),
            ("**b/c", "whole part"),
            ("a/***", "whole part"),
        ] {
            let e = Glob::new(p, Case::Sensitive).unwrap_err();
            assert!(e.contains(why), "{p:?}: {e}");
        }
    }

    #[test]
    fn the_source_is_kept_for_messages() {
        let g = repo("Diesel-Net/*");
        assert_eq!(g.as_str(), "Diesel-Net/*");
        assert_eq!(g.to_string(), "Diesel-Net/*");
        assert_eq!(format!("{g:?}"), "Glob(\"Diesel-Net/*\")");
    }

    #[test]
    fn many_double_stars_stay_cheap() {
        // Merged `**`s and short-circuiting keep this instant.
        let g = branch("**/".repeat(50).trim_end_matches('/'));
        assert!(g.matches(&"a/".repeat(200)));
        let g = branch("**/x/".repeat(20).trim_end_matches('/'));
        assert!(!g.matches(&"a/".repeat(40)));
    }
}
