//! The user and repository renderers: one compact embed for a user created or
//! deleted, and one for a repository enabled, disabled or deleted.
use super::embed::{drone_url, footer, iso8601, short_field, Embed};
use super::limits::AUTHOR_NAME_MAX;
use super::markdown::{escape_md, http_url, link_or_text, one_line, PLACEHOLDER};
use super::style::{GREEN, GREY};
use crate::drone::{User, Webhook};
use crate::text::truncate_chars as truncate;

pub(super) fn user_embed(hook: &Webhook, user: &User, created: bool) -> Embed {
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

/// What happened to a repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RepoChange {
    Enabled,
    Disabled,
    /// Removed from Drone: shown like `Disabled`, without a link to its
    /// Drone page, which is gone.
    Deleted,
}

pub(super) fn repo_embed(hook: &Webhook, change: RepoChange) -> Option<Embed> {
    let enabled = change == RepoChange::Enabled;
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
        title: match change {
            RepoChange::Enabled => "Repository enabled",
            RepoChange::Disabled => "Repository disabled",
            RepoChange::Deleted => "Repository deleted",
        }
        .to_owned(),
        url: match change {
            RepoChange::Deleted => None,
            _ => drone_url(hook.system.as_ref(), &slug),
        },
        color: Some(if enabled { GREEN } else { GREY }),
        author_name,
        author_icon,
        fields,
        footer: footer(hook.system.as_ref()),
        ..Embed::default()
    })
}

#[cfg(test)]
mod tests {
    use crate::render::limits::check_limits;
    use crate::render::render;
    use crate::render::style::GREY;
    use crate::render::testutil::{embed, field, fixture};

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

    #[test]
    fn repo_deleted_renders_like_disabled_without_the_gone_drone_page() {
        let mut hook = fixture("repo_disabled");
        let disabled = render(&hook).unwrap();
        hook.action = "deleted".into();
        let msg = render(&hook).unwrap();
        check_limits(&msg).unwrap();
        assert_eq!(embed(&msg)["title"], "Repository deleted");
        assert_eq!(embed(&msg)["color"], GREY);
        assert!(embed(&msg).get("url").is_none(), "{msg}");
        assert_eq!(embed(&msg)["fields"], embed(&disabled)["fields"]);
        assert_eq!(embed(&msg)["footer"], embed(&disabled)["footer"]);
    }
}
