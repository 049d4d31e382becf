//! Button clicks: the Restart button on a failed build's message (issue 14).
//!
//! A click arrives on the gateway as `INTERACTION_CREATE` (no intent
//! needed); the gateway driver hands it to a bounded queue ([`QUEUE`]; a
//! click that finds it full is dropped and logged) and [`run`] answers it
//! on its own path, never behind the relay's pauses or message rate-limit
//! waits, because Discord wants the first answer within 3 seconds:
//!
//! 1. at once `POST /interactions/{id}/{token}/callback` with type 5
//!    (deferred) and flags 64 (only the clicker sees the answer);
//! 2. the clicker must be on the allow-list ([`allow`]) and the button one
//!    this bot put on that message ([`button`]), else the answer says so
//!    and nothing is called;
//! 3. the [`Restarter`] (Drone's API) restarts the build, once: a second
//!    click, also one made while the first is in flight, gets the first
//!    one's answer (Drone starts a new build on every call);
//! 4. `PATCH /webhooks/{application id}/{token}/messages/@original` says
//!    where the new build is, or what Drone answered.
//!
//! The interaction token is a secret for 15 minutes: it goes into the two
//! paths and nowhere else. Which builds were restarted is kept in memory
//! only (a restart of the process forgets it).
pub mod allow;
pub mod button;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Semaphore};

use crate::discord::rest::Rest;
use crate::shutdown::Shutdown;
pub use allow::RestartAllow;

/// Clicks waiting to be answered; more are dropped (Discord shows the
/// clicker "This interaction failed").
pub const QUEUE: usize = 16;
/// Clicks answered at once.
const IN_FLIGHT: usize = 4;
/// Builds remembered as restarted; past this the memory starts over.
const REMEMBERED: usize = 512;
/// Interaction type of a button click (MESSAGE_COMPONENT).
const MESSAGE_COMPONENT: u64 = 3;

/// What a restart returns: the new build's URL, or Drone's error.
pub type RestartFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Restarts a Drone build (`POST /api/repos/{namespace}/{name}/builds/{number}`).
pub trait Restarter: Send + Sync + 'static {
    /// Restart build `number` of `repo` (`namespace/name`).
    fn restart<'a>(&'a self, repo: &'a str, number: u64) -> RestartFuture<'a>;
}

/// A build's restart, as far as this process knows.
#[derive(Clone)]
enum Restart {
    Running,
    Done(String),
}

/// Everything a click's answer needs.
pub struct Handler {
    pub rest: Rest,
    pub allow: RestartAllow,
    pub restarter: Arc<dyn Restarter>,
    restarts: Mutex<HashMap<String, Restart>>,
}

impl Handler {
    pub fn new(rest: Rest, allow: RestartAllow, restarter: Arc<dyn Restarter>) -> Arc<Handler> {
        Arc::new(Handler {
            rest,
            allow,
            restarter,
            restarts: Mutex::new(HashMap::new()),
        })
    }

    /// Answer one `INTERACTION_CREATE` payload (`d`).
    pub async fn handle(&self, d: &Value) {
        let text = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
        let (id, token, app) = (text("id"), text("token"), text("application_id"));
        if d.get("type").and_then(Value::as_u64) != Some(MESSAGE_COMPONENT) {
            tracing::debug!("ignoring an interaction that is not a button click");
            return;
        }
        let deferred = json!({ "type": 5, "data": { "flags": 64 } });
        if let Err(e) = self.rest.interaction_callback(id, token, &deferred).await {
            tracing::warn!(error = %e, "could not answer a click in time");
            return;
        }
        let answer = self.decide(d).await;
        let body = json!({ "content": answer, "allowed_mentions": { "parse": [] } });
        if let Err(e) = self.rest.edit_original_response(app, token, &body).await {
            tracing::warn!(error = %e, "could not edit the answer to a click");
        }
    }

    /// The text the clicker gets; restarts the build if they may.
    async fn decide(&self, d: &Value) -> String {
        let custom_id = d
            .get("data")
            .and_then(|x| x.get("custom_id"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let build = button::parse(custom_id).filter(|_| button::on_message(d, custom_id));
        let Some((repo, number)) = build else {
            tracing::warn!("refused a click on a button this bot did not make");
            return "This button is unknown; nothing was restarted.".into();
        };
        if !self.allow.permits(d) {
            tracing::info!(
                repo,
                number,
                "refused a restart: the clicker is not allowed"
            );
            return "You are not allowed to restart builds.".into();
        }
        {
            let mut restarts = crate::sync::lock(&self.restarts);
            match restarts.get(custom_id) {
                Some(Restart::Running) => return format!("{repo} #{number} is being restarted."),
                Some(Restart::Done(url)) => return format!("Already restarted: {url}"),
                None => {}
            }
            if restarts.len() >= REMEMBERED {
                restarts.clear();
            }
            restarts.insert(custom_id.to_string(), Restart::Running);
        }
        let outcome = self.restarter.restart(repo, number).await;
        let mut restarts = crate::sync::lock(&self.restarts);
        match outcome {
            Ok(url) => {
                tracing::info!(repo, number, "build restarted from Discord");
                restarts.insert(custom_id.to_string(), Restart::Done(url.clone()));
                format!("Restarted {repo} #{number}: {url}")
            }
            Err(e) => {
                restarts.remove(custom_id);
                tracing::warn!(repo, number, error = %e, "Drone refused a restart");
                format!(
                    "Drone did not restart {repo} #{number}: {}",
                    crate::text::cut_chars_marked(&e, 1500)
                )
            }
        }
    }
}

/// The queue the gateway driver feeds, and its receiving end for [`run`].
pub fn queue() -> (mpsc::Sender<Value>, mpsc::Receiver<Value>) {
    mpsc::channel(QUEUE)
}

/// Answer clicks from `clicks` until shutdown, a few at a time.
pub async fn run(handler: Arc<Handler>, mut clicks: mpsc::Receiver<Value>, shutdown: Shutdown) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let d = tokio::select! {
            _ = shutdown.wait() => return,
            d = clicks.recv() => match d { Some(d) => d, None => return },
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            handler.handle(&d).await;
            drop(slot);
        });
    }
}
