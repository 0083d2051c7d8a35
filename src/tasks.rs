//! The broker's background work: every task runs on one tracker and is told to
//! stop by one token, so that shutdown can cancel the token and then wait for the
//! tracker, knowing nothing else still runs (app.rs, `Broker::shutdown`).

use std::future::Future;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    /// Runs `task` on the tracker; it watches [`Tasks::stop_token`] itself.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Runs `task` on the tracker, dropped where it waits once stop is asked.
    pub fn spawn_until_stopped<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        });
    }

    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
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
}
