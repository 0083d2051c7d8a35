//! The broker's background work: every task runs on one tracker and is told to
//! stop by one token, so that shutdown can cancel the token and then wait for the
//! tracker, knowing nothing else still runs (app.rs, `Broker::shutdown`).

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    /// The broker's shutdown: `stop` itself, or its parent for a generation.
    shutdown: CancellationToken,
    /// Of a generation: the broker's own tracker, which also tracks its tasks.
    parent: Option<TaskTracker>,
}

impl Default for Tasks {
    fn default() -> Tasks {
        let stop = CancellationToken::new();
        Tasks {
            tracker: TaskTracker::new(),
            shutdown: stop.clone(),
            stop,
            parent: None,
        }
    }
}

impl Tasks {
    /// Runs `task` on the tracker; it watches [`Tasks::stop_token`] itself.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.parent {
            Some(parent) => parent.spawn(self.tracker.track_future(task)),
            None => self.tracker.spawn(task),
        };
    }

    /// Runs `task` on the tracker, dropped where it waits once stop is asked.
    pub fn spawn_until_stopped<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        });
    }

    /// Tasks that can be stopped and waited for on their own (what a reload
    /// replaces), yet stop with these and are waited for by their shutdown.
    pub fn generation(&self) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            stop: self.stop.child_token(),
            shutdown: self.shutdown.clone(),
            parent: Some(self.tracker.clone()),
        }
    }

    /// Stops a generation's tasks and waits until they have ended.
    pub async fn stop_and_wait(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The broker's shutdown; for a generation, unlike its `stop_token`, not
    /// cancelled when only the generation stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_task_until_stopped_ends_when_stop_is_asked() {
        let tasks = Tasks::default();
        tasks.spawn_until_stopped(tokio::time::sleep(Duration::from_secs(3600)));
        tasks.tracker().close();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(tasks.tracker().len(), 1);
        tasks.stop_token().cancel();
        tasks.tracker().wait().await;
        assert!(tasks.tracker().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_generation_stops_alone_and_with_its_parent() {
        let tasks = Tasks::default();
        let first = tasks.generation();
        first.spawn_until_stopped(tokio::time::sleep(Duration::from_secs(3600)));
        let second = tasks.generation();
        second.spawn_until_stopped(tokio::time::sleep(Duration::from_secs(3600)));
        assert_eq!(tasks.tracker().len(), 2);
        first.stop_and_wait().await;
        assert_eq!(tasks.tracker().len(), 1);
        assert!(!second.stop_token().is_cancelled());
        tasks.stop_token().cancel();
        tasks.tracker().close();
        tasks.tracker().wait().await;
        assert!(second.tracker().is_empty());
    }
}
