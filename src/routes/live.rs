//! The routing `serve` applies now, swapped on `SIGHUP`.
//!
//! `serve` loads the routing file once at start (a bad file stops it, exit
//! code 2) and the credentials of every webhook the file names: credentials
//! are fixed while the service runs. `SIGHUP` (the unit's `ExecReload`)
//! reads the file again; a file that does not parse, or that names a webhook
//! whose credential was not loaded at start, keeps the routes in force and
//! says why (one log line, and `/health` until a good reload). The relay takes
//! the current [`Routing`] once per claim ([`Live::routing`]), so a reload
//! never changes the routes under a delivery that is running.
//!
//! Without a file, or with one that has no `[[route]]`, the routing is the
//! one route of today: every event to `DISCORD_CHANNEL_ID`, live.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::{Destination, Route, Routing};
use crate::config::{ConfigError, Settings};
use crate::discord::webhook::WebhookUrl;

/// The routing in force, its file, and the webhook credentials loaded at start.
#[derive(Debug)]
pub struct Live {
    file: Option<PathBuf>,
    webhooks: HashMap<String, WebhookUrl>,
    /// A bot token and `DISCORD_CHANNEL_ID` were set at start (routes
    /// naming channels, or none, need them).
    bot: bool,
    default_channel: bool,
    current: RwLock<(Arc<Routing>, Reload)>,
}

/// What `/health` says about the routing (no secrets, no paths).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reload {
    /// `[[route]]` entries in force (0: today's single channel).
    pub routes: usize,
    /// When the routes in force were loaded (Unix ms).
    pub reloaded_at_ms: u64,
    /// Why the last reload was refused, until a good one.
    pub error: Option<String>,
}

impl Live {
    /// Load the file `--config` / `CONFIG_FILE` names, if any, and the URL
    /// of every webhook it names (each must be set).
    pub fn start(s: &Settings) -> Result<Live, ConfigError> {
        let file = crate::config::routing_file(s);
        let routing = match &file {
            Some(path) => super::load(path)?,
            None => Routing::default(),
        };
        let mut webhooks = HashMap::new();
        for name in webhook_names(&routing) {
            let url = super::webhook_url(s, name)?.ok_or_else(|| {
                let (var, cred) = super::webhook_sources(name);
                ConfigError::new(
                    var.clone(),
                    format!("not set; the routing file names the webhook {name:?}: set {var} (or {var}_FILE, or the systemd credential {cred}) to its URL"),
                )
            })?;
            webhooks.insert(name.to_string(), url);
        }
        Ok(Live::new(file, webhooks, routing))
    }

    /// A live routing of `routing` (tests, and [`Live::start`]).
    pub fn new(
        file: Option<PathBuf>,
        webhooks: HashMap<String, WebhookUrl>,
        routing: Routing,
    ) -> Live {
        let reload = Reload {
            routes: routing.routes.len(),
            reloaded_at_ms: crate::store::now_ms(),
            error: None,
        };
        Live {
            file,
            webhooks,
            bot: true,
            default_channel: true,
            current: RwLock::new((Arc::new(effective(routing)), reload)),
        }
    }

    /// Whether a bot token and `DISCORD_CHANNEL_ID` are set (fixed while
    /// running): a reload whose routes need one that is not is refused.
    pub fn fix(&mut self, bot: bool, default_channel: bool) {
        self.bot = bot;
        self.default_channel = default_channel;
    }

    /// Why `r` cannot be applied with the credentials loaded at start.
    fn unusable(&self, r: &Routing) -> Option<String> {
        if let Some(name) = webhook_names(r).find(|n| !self.webhooks.contains_key(*n)) {
            return Some(format!(
                "the routing file names the webhook {name:?}, whose credential was not loaded at start (credentials change with a restart)"
            ));
        }
        let uses = |f: fn(&Destination) -> bool| {
            r.routes.is_empty() || r.routes.iter().any(|x| f(&x.destination))
        };
        if !self.bot && uses(|d| !matches!(d, Destination::Webhook(_))) {
            return Some("the routing file needs a bot (a route without webhook), and no bot token was set at start".into());
        }
        if !self.default_channel && uses(|d| *d == Destination::Default) {
            return Some("a route names neither channel nor webhook, and DISCORD_CHANNEL_ID was not set at start".into());
        }
        None
    }

    /// The routing to apply now (with its default route when the file has none).
    pub fn routing(&self) -> Arc<Routing> {
        crate::sync::read(&self.current).0.clone()
    }

    /// What `/health` shows: `None` without a routing file.
    pub fn report(&self) -> Option<Reload> {
        self.file.as_ref()?;
        Some(crate::sync::read(&self.current).1.clone())
    }

    /// The URL of the webhook `name`, loaded at start.
    pub fn webhook(&self, name: &str) -> Option<&WebhookUrl> {
        self.webhooks.get(name)
    }

    /// Read the file again (`SIGHUP`). On success the new routes are in
    /// force; otherwise the old ones stay and the reason is kept for
    /// `/health`. Either way the outcome is logged once.
    pub fn reload(&self) {
        let Some(path) = &self.file else {
            tracing::info!("SIGHUP: no routing file (--config / CONFIG_FILE); nothing to reload");
            return;
        };
        let loaded =
            super::load(path)
                .map_err(|e| e.to_string())
                .and_then(|r| match self.unusable(&r) {
                    Some(why) => Err(why),
                    None => Ok(r),
                });
        let mut current = crate::sync::write(&self.current);
        match loaded {
            Ok(routing) => {
                tracing::info!(routes = routing.routes.len(), "routing file reloaded");
                current.1 = Reload {
                    routes: routing.routes.len(),
                    reloaded_at_ms: crate::store::now_ms(),
                    error: None,
                };
                current.0 = Arc::new(effective(routing));
            }
            Err(why) => {
                tracing::error!(reason = %why, "routing file not reloaded; the routes in force stay");
                current.1.error = Some(why);
            }
        }
    }
}

/// The webhook names a routing uses.
fn webhook_names(r: &Routing) -> impl Iterator<Item = &str> {
    r.routes
        .iter()
        .filter_map(|route| match &route.destination {
            Destination::Webhook(name) => Some(name.as_str()),
            _ => None,
        })
}

/// A routing without `[[route]]` is today's single channel, live.
fn effective(mut routing: Routing) -> Routing {
    if routing.routes.is_empty() {
        routing.routes.push(Route::defaults(1, 0));
    }
    routing
}

#[cfg(test)]
mod tests {
    use super::super::When;
    use super::*;

    const URL: &str = "https://discord.com/api/webhooks/223456789012345678/secret-token_123";

    #[test]
    fn no_file_is_the_single_channel() {
        let live = Live::start(&Settings::from_pairs([("A", "1")])).unwrap();
        let r = live.routing();
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.routes[0].destination, Destination::Default);
        assert_eq!(r.routes[0].when, When::Live);
        assert!(live.report().is_none());
        live.reload();
        assert_eq!(live.routing().routes.len(), 1);
    }

    #[test]
    fn a_bad_reload_keeps_the_routes_and_says_why_until_a_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(
            &f,
            "[[route]]\nwebhook = \"ops\"\n[[route]]\nchannel = \"5\"\n",
        )
        .unwrap();
        let s = Settings::from_pairs([
            ("CONFIG_FILE", f.to_str().unwrap()),
            ("DISCORD_WEBHOOK_OPS", URL),
        ]);
        let live = Live::start(&s).unwrap();
        assert_eq!(live.routing().routes.len(), 2);
        assert_eq!(live.webhook("ops").unwrap().expose(), URL);
        assert_eq!(live.report().unwrap().routes, 2);

        std::fs::write(&f, "[[route]]\nwhen = \"soon\"\n").unwrap();
        live.reload();
        assert_eq!(live.routing().routes.len(), 2, "the old routes stay");
        let report = live.report().unwrap();
        let error = report.error.unwrap();
        assert!(error.contains("config.toml:2"), "{error}");
        assert_eq!(report.routes, 2);

        // A webhook whose credential was not loaded at start is refused too.
        std::fs::write(&f, "[[route]]\nwebhook = \"dev\"\n").unwrap();
        live.reload();
        let error = live.report().unwrap().error.unwrap();
        assert!(
            error.contains("\"dev\"") && !error.contains("secret-token"),
            "{error}"
        );
        assert_eq!(live.routing().routes.len(), 2);

        std::fs::write(&f, "[users]\nanon = \"1\"\n").unwrap();
        live.reload();
        let report = live.report().unwrap();
        assert_eq!((report.routes, report.error), (0, None));
        assert_eq!(live.routing().routes[0].destination, Destination::Default);
    }

    #[test]
    fn a_reload_may_not_need_a_bot_or_channel_that_was_not_there_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, "[[route]]\nwebhook = \"ops\"\n").unwrap();
        let s = Settings::from_pairs([
            ("CONFIG_FILE", f.to_str().unwrap()),
            ("DISCORD_WEBHOOK_OPS", URL),
        ]);
        let mut live = Live::start(&s).unwrap();
        live.fix(false, false);
        std::fs::write(&f, "[[route]]\nchannel = \"5\"\n").unwrap();
        live.reload();
        assert!(live
            .report()
            .unwrap()
            .error
            .unwrap()
            .contains("no bot token"));
        std::fs::write(&f, "[users]\n").unwrap();
        live.reload();
        assert!(
            live.report().unwrap().error.is_some(),
            "today's single channel needs the bot"
        );
        assert_eq!(
            live.routing().routes[0].destination,
            Destination::Webhook("ops".into())
        );
    }

    #[test]
    fn a_named_webhook_without_its_credential_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, "[[route]]\nwebhook = \"ops-team\"\n").unwrap();
        let s = Settings::from_pairs([("CONFIG_FILE", f.to_str().unwrap())]);
        let e = Live::start(&s).unwrap_err();
        assert_eq!(e.setting, "DISCORD_WEBHOOK_OPS_TEAM");
    }
}
