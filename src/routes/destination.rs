//! Where a route posts: a channel the bot posts in, a named Discord webhook,
//! or `DISCORD_CHANNEL_ID`; and where a named webhook's URL comes from.
//!
//! The routing file holds no secrets, so a webhook route names its webhook
//! (`webhook = "ops"`) and the URL comes from the credential `webhook-ops`
//! (systemd `LoadCredential=`) or the environment `DISCORD_WEBHOOK_OPS` (or
//! `DISCORD_WEBHOOK_OPS_FILE`), read by the same [`Settings::secret`] as
//! every other secret. Names are lowercase letters, digits and `-`, so each
//! maps to exactly one credential and one variable.
use std::fmt;

use crate::config::{ConfigError, Settings};
use crate::discord::webhook::WebhookUrl;

/// A route's destination, as the file names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A channel id (checked as a snowflake).
    Channel(String),
    /// A webhook's name; its URL is a credential ([`webhook_url`]).
    Webhook(String),
    /// No `channel` or `webhook`: `DISCORD_CHANNEL_ID`.
    Default,
}

impl Destination {
    /// `Default` made concrete: the channel `DISCORD_CHANNEL_ID` names, when
    /// known, so that a route naming that channel and one naming none are the
    /// same destination.
    pub fn resolve(&self, default_channel: Option<&str>) -> Destination {
        match (self, default_channel) {
            (Destination::Default, Some(id)) => Destination::Channel(id.to_string()),
            _ => self.clone(),
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Channel(id) => write!(f, "channel {id}"),
            Destination::Webhook(name) => write!(f, "webhook {name}"),
            Destination::Default => f.write_str("DISCORD_CHANNEL_ID"),
        }
    }
}

/// Longest webhook name.
const MAX_NAME_LEN: usize = 32;

/// A webhook name: 1–32 of `a-z`, `0-9`, `-`, starting with a letter or digit.
pub(super) fn check_webhook_name(name: &str) -> Result<(), String> {
    let ok = (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a webhook name (1-{MAX_NAME_LEN} lowercase letters, digits and -, \
             e.g. \"ops\"; its URL comes from the credential webhook-<name> or DISCORD_WEBHOOK_<NAME>)"
        ))
    }
}

/// The variable and the credential a webhook name reads: `ops-team` →
/// (`DISCORD_WEBHOOK_OPS_TEAM`, `webhook-ops-team`).
pub fn webhook_sources(name: &str) -> (String, String) {
    (
        format!(
            "DISCORD_WEBHOOK_{}",
            name.to_ascii_uppercase().replace('-', "_")
        ),
        format!("webhook-{name}"),
    )
}

/// The URL of the webhook named `name`, or `None` when neither its
/// credential nor its variable is set. A value that is not a webhook URL is
/// an error naming the variable, never quoting the value.
pub fn webhook_url(s: &Settings, name: &str) -> Result<Option<WebhookUrl>, ConfigError> {
    let (var, cred) = webhook_sources(name);
    match s.secret(&var, &cred)? {
        None => Ok(None),
        Some(secret) => WebhookUrl::parse(secret.expose())
            .map(Some)
            .map_err(|e| ConfigError::new(var, format!("the webhook URL {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://discord.com/api/webhooks/223456789012345678/secret-token_123";

    #[test]
    fn names() {
        for good in ["ops", "a", "ops-team", "team2", "2nd"] {
            assert!(check_webhook_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Ops",
            "ops_team",
            "ops team",
            "-ops",
            "ops/x",
            &"a".repeat(33),
        ] {
            let e = check_webhook_name(bad).unwrap_err();
            assert!(e.contains("is not a webhook name"), "{bad}: {e}");
        }
        assert_eq!(
            webhook_sources("ops-team"),
            ("DISCORD_WEBHOOK_OPS_TEAM".into(), "webhook-ops-team".into())
        );
    }

    #[test]
    fn the_url_comes_from_the_variable_or_the_credential() {
        let s = Settings::from_pairs([("DISCORD_WEBHOOK_OPS", URL)]);
        let w = webhook_url(&s, "ops").unwrap().unwrap();
        assert_eq!(w.expose(), URL);
        assert!(webhook_url(&s, "dev").unwrap().is_none());

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("webhook-ops"), format!("{URL}\n")).unwrap();
        let s = Settings::from_pairs([("CREDENTIALS_DIRECTORY", dir.path().to_str().unwrap())]);
        assert_eq!(webhook_url(&s, "ops").unwrap().unwrap().expose(), URL);

        let s =
            Settings::from_pairs([("DISCORD_WEBHOOK_OPS", "https://example.com/x?token=hunter2")]);
        let e = webhook_url(&s, "ops").unwrap_err();
        assert_eq!(e.setting, "DISCORD_WEBHOOK_OPS");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn default_resolves_to_the_channel_id() {
        let d = Destination::Default;
        assert_eq!(d.resolve(Some("5")), Destination::Channel("5".into()));
        assert_eq!(d.resolve(None), Destination::Default);
        let w = Destination::Webhook("ops".into());
        assert_eq!(w.resolve(Some("5")), w);
        assert_eq!(w.to_string(), "webhook ops");
        assert_eq!(Destination::Channel("7".into()).to_string(), "channel 7");
        assert_eq!(d.to_string(), "DISCORD_CHANNEL_ID");
    }
}
