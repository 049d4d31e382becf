//! Discord webhook URLs: a secret, parsed once, shown only as `…/webhooks/<id>/***`.
//!
//! A webhook URL (`https://discord.com/api/webhooks/<id>/<token>`) is all it
//! takes to post as that webhook, so it is a credential: it comes from the
//! credential `webhook-<name>` or `DISCORD_WEBHOOK_<NAME>` (see
//! `routes::webhook_url`), never from the routing file, and it never reaches
//! a log line, an error or `/health`. [`WebhookUrl`]'s `Display` and `Debug`
//! are the one way it is shown, and no error of [`WebhookUrl::parse`] or
//! [`get`] quotes it.
//!
//! [`get`] is `GET /webhooks/{id}/{token}`, which `check` uses to prove the
//! URL works. It needs no bot token: the token in the path is the
//! authorization, and Discord answers a wrong one with `401` code 50027
//! (Invalid Webhook Token) and an unknown id with `404` code 10015.
use std::fmt;

use crate::config::Secret;
use crate::discord::snowflake::is_snowflake;
use crate::http::client::{Client, Url};

/// A parsed webhook URL. Only [`WebhookUrl::expose`] gives the URL itself.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: Secret,
    id: String,
}

/// Longest token accepted (Discord's are 68 characters).
const MAX_TOKEN_LEN: usize = 128;

impl WebhookUrl {
    /// Check `text` as a webhook URL: `http(s)://host[:port][/prefix]/webhooks/<id>/<token>`
    /// (`http://` and any host, for tests and proxies, as `DISCORD_API_BASE_URL`
    /// allows), with no query or fragment. The error never quotes the URL.
    pub fn parse(text: &str) -> Result<WebhookUrl, String> {
        let text = text.trim();
        let rest = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .ok_or("is not an https:// URL (copy it from the channel's Integrations → Webhooks)")?;
        if text.contains(['?', '#']) || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("has a query, a fragment or spaces; give the plain webhook URL".into());
        }
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let (id, token) = match parts.as_slice() {
            [.., w, id, token] if *w == "webhooks" => (*id, *token),
            _ => return Err("does not end in /webhooks/<id>/<token>".into()),
        };
        if !is_snowflake(id) {
            return Err("has a webhook id that is not a Discord id".into());
        }
        if token.is_empty()
            || token.len() > MAX_TOKEN_LEN
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("has a token that is not a webhook token".into());
        }
        Url::parse(text.trim_end_matches('/')).map_err(|_| "is not a valid URL".to_string())?;
        Ok(WebhookUrl {
            url: Secret::new(text.trim_end_matches('/')),
            id: id.to_string(),
        })
    }

    /// The webhook's id (not a secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The URL itself, token included. Call sites are the requests.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "…/webhooks/{}/***", self.id)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({self})")
    }
}

/// What `GET /webhooks/{id}/{token}` tells about a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookInfo {
    pub name: String,
    pub channel_id: String,
}

/// `GET /webhooks/{id}/{token}`: whether the URL works, and where it posts.
/// The error names the status and Discord's code, never the URL.
pub async fn get(client: &Client, url: &WebhookUrl) -> Result<WebhookInfo, String> {
    let target = Url::parse(url.expose()).map_err(|_| "is not a valid URL".to_string())?;
    let user_agent = format!(
        "DiscordBot (https://github.com/drone-discord/drone-discord, {})",
        env!("CARGO_PKG_VERSION")
    );
    let headers = [
        ("User-Agent", user_agent.as_str()),
        ("Accept", "application/json"),
    ];
    let resp = client
        .request("GET", &target, &headers, None)
        .await
        .map_err(|e| e.to_string())?;
    let json: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .map(|s| crate::text::truncate_chars(s, 100))
    };
    if resp.status == 200 {
        return Ok(WebhookInfo {
            name: field("name").unwrap_or_default(),
            channel_id: field("channel_id").unwrap_or_default(),
        });
    }
    let code = json
        .as_ref()
        .and_then(|v| v.get("code"))
        .and_then(|c| c.as_u64());
    let message = field("message").unwrap_or_default();
    Err(match (resp.status, code) {
        (401, _) => format!(
            "Discord refused the webhook token (401, code {}: {message}); copy the URL again",
            code.unwrap_or(0)
        ),
        (404, _) => format!(
            "no such webhook (404, code {}: {message}); was it deleted?",
            code.unwrap_or(0)
        ),
        (status, Some(code)) => format!("Discord answered {status} (code {code}: {message})"),
        (status, None) => format!("Discord answered {status}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "aB3dE_f-9hIjKlMnOpQrStUvWxYz0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ012";

    #[test]
    fn discord_urls_parse_and_never_show_the_token() {
        for text in [
            format!("https://discord.com/api/webhooks/123456789012345678/{TOKEN}"),
            format!("https://discord.com/api/v10/webhooks/123456789012345678/{TOKEN}/"),
            format!("https://canary.discordapp.com/api/webhooks/123456789012345678/{TOKEN}"),
            format!("http://127.0.0.1:8080/webhooks/123456789012345678/{TOKEN}"),
            format!("  https://discord.com/api/webhooks/123456789012345678/{TOKEN}\n"),
        ] {
            let w = WebhookUrl::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(w.id(), "123456789012345678");
            assert_eq!(w.to_string(), "…/webhooks/123456789012345678/***");
            assert_eq!(
                format!("{w:?}"),
                "WebhookUrl(…/webhooks/123456789012345678/***)"
            );
            assert!(w.expose().ends_with(TOKEN), "{}", w.expose());
        }
    }

    #[test]
    fn bad_urls_are_refused_without_quoting_them() {
        for text in [
            format!("discord.com/api/webhooks/123456789012345678/{TOKEN}"),
            format!("ftp://discord.com/api/webhooks/123456789012345678/{TOKEN}"),
            format!("https://discord.com/api/webhooks/123456789012345678/{TOKEN}?wait=true"),
            format!("https://discord.com/api/webhooks/123456789012345678/{TOKEN}#x"),
            format!("https://discord.com/api/hooks/123456789012345678/{TOKEN}"),
            format!("https://discord.com/api/webhooks/12345678901234567a/{TOKEN}"),
            format!("https://discord.com/api/webhooks/123456789012345678/{TOKEN}/extra"),
            format!("https://discord.com/api/webhooks/123456789012345678/{TOKEN}!"),
            format!("https://discord.com/api/webhooks/123456789012345678/a {TOKEN}"),
            "https://discord.com/api/webhooks/123456789012345678/".to_string(),
            format!(
                "https://discord.com/api/webhooks/123456789012345678/{}",
                "a".repeat(200)
            ),
            format!("https://[::1/webhooks/123456789012345678/{TOKEN}"),
        ] {
            let e = WebhookUrl::parse(&text).unwrap_err();
            assert!(!e.contains(TOKEN) && !e.contains("discord.com"), "{e}");
        }
    }
}
