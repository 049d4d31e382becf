//! The operator's dead-letter actions over loopback, for `drone-discord
//! queue retry|purge ID|all` while the running service holds the store:
//! `POST /queue/dead/{ID|all}/retry` and `POST /queue/dead/{ID|all}/purge`.
//!
//! The routing (and the loopback-only rule) is in `endpoints`; this file is
//! what the two paths mean and answer. When no service runs, the command
//! acts on the store directly with the same [`Store`] calls.
use crate::http::Response;
use crate::store::{DeadSelection, Store, StoreError};
use serde_json::json;
use tokio::sync::Notify;

/// The path prefix of the actions.
pub const PREFIX: &str = "/queue/dead/";

/// What the operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Queue dead letters again.
    Retry,
    /// Remove dead letters for good.
    Purge,
}

impl Action {
    /// `retry` or `purge`.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "retry" => Some(Action::Retry),
            "purge" => Some(Action::Purge),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Purge => "purge",
        }
    }

    /// The past tense the answers and the command print.
    pub fn done(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Purge => "purged",
        }
    }
}

/// The path for `action` on `which`.
pub fn path(action: Action, which: DeadSelection) -> String {
    format!("{PREFIX}{which}/{}", action.as_str())
}

/// `{ID|all}/{retry|purge}` after [`PREFIX`], or `None`.
fn parse_path(path: &str) -> Option<(DeadSelection, Action)> {
    let rest = path.strip_prefix(PREFIX)?;
    let (which, action) = rest.split_once('/')?;
    Some((DeadSelection::parse(which)?, Action::parse(action)?))
}

/// Do what `path` asks on `store`; a retry wakes the relay.
pub async fn handle<S: Store>(store: &S, relay_wake: &Notify, path: &str) -> Response {
    let Some((which, action)) = parse_path(path) else {
        return Response::error(404, "use POST /queue/dead/{ID|all}/{retry|purge}");
    };
    let result = match action {
        Action::Retry => store.retry_dead(which).await,
        Action::Purge => store.purge_dead(which).await,
    };
    match result {
        Ok(0) if which != DeadSelection::All => {
            Response::error(404, &format!("no dead letter #{which}"))
        }
        Ok(n) => {
            if action == Action::Retry && n > 0 {
                relay_wake.notify_one();
            }
            tracing::info!(action = action.as_str(), which = %which, count = n, "dead letters {}", action.done());
            Response::json(200, &json!({ action.done(): n }))
        }
        Err(StoreError::Full(m)) => {
            Response::error(503, &format!("not retried: {m}")).with_header("Retry-After", "60")
        }
        Err(e) => Response::error(503, &format!("store: {e}")).with_header("Retry-After", "30"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip() {
        for (action, which) in [
            (Action::Retry, DeadSelection::One(12)),
            (Action::Purge, DeadSelection::All),
        ] {
            assert_eq!(parse_path(&path(action, which)), Some((which, action)));
        }
        assert_eq!(
            path(Action::Retry, DeadSelection::One(7)),
            "/queue/dead/7/retry"
        );
        for bad in [
            "/queue/dead/",
            "/queue/dead/7",
            "/queue/dead/7/delete",
            "/queue/dead/-1/retry",
            "/queue/dead/ALL/purge",
            "/queue/dead/7/retry/x",
            "/queue/dead/99999999999999999999999/retry",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }
}
