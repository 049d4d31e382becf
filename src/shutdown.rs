//! Graceful shutdown as one small explicit type (in the style of mini-redis):
//! `main` owns the [`Trigger`]; every task gets a cloned [`Shutdown`] and
//! selects on [`Shutdown::wait`] at its await points.
use tokio::sync::watch;

/// Held by whoever decides to stop (the signal handler in `main`, or a test).
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// Handed to every long-running task.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// A connected trigger/listener pair.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    /// Ask every task to stop. Idempotent.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }

    /// A listener for a task started after the trigger was created.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.tx.subscribe(),
        }
    }
}

impl Shutdown {
    /// True once shutdown has been requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has been requested (immediately if it already was).
    /// If the trigger is dropped without firing, this also resolves: nobody can
    /// stop us any more, so treat it as a stop.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_resolves_after_fire_and_for_late_listeners() {
        let (trigger, shutdown) = channel();
        assert!(!shutdown.is_triggered());
        let waiter = tokio::spawn({
            let s = shutdown.clone();
            async move { s.wait().await }
        });
        trigger.fire();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
        // A listener subscribed after the fact sees the stop at once.
        trigger.subscribe().wait().await;
    }

    #[tokio::test]
    async fn dropped_trigger_counts_as_stop() {
        let (trigger, shutdown) = channel();
        drop(trigger);
        shutdown.wait().await;
    }
}
