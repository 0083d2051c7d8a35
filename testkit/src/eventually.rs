//! Waiting for something that should happen promptly, without sleeps that hope.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// How often [`eventually`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What one look of [`eventually`] found: done with a value, or not yet.
pub trait Probe<T> {
    /// The value once done; otherwise what was seen, for the failure message.
    fn done(self) -> Result<T, Option<String>>;
}

impl<T> Probe<T> for Option<T> {
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

/// `Err(seen)` is "not yet", and `seen` is shown if it never becomes `Ok`.
impl<T, E: Debug> Probe<T> for Result<T, E> {
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(format!("{seen:?}")))
    }
}

/// Looks (`probe`) until it is done, and returns its value; fails the test,
/// naming `what` and the last thing seen, when it is not done within `patience`.
/// The probe returns an `Option<T>`, or a `Result<T, E>` whose `Err` carries what
/// it saw. Runs on tokio's clock, so it also works with paused time.
pub async fn eventually<T, P, F, Fut>(patience: Duration, what: &str, mut probe: F) -> T
where
    P: Probe<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = P>,
{
    let deadline = Instant::now() + patience;
    loop {
        let seen = match probe().await.done() {
            Ok(value) => return value,
            Err(seen) => seen,
        };
        if Instant::now() >= deadline {
            match seen {
                Some(seen) => panic!("not within {patience:?}: {what}; last seen: {seen}"),
                None => panic!("not within {patience:?}: {what}"),
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn returns_the_value_once_the_probe_is_done() {
        let started = Instant::now();
        let mut looks = 0;
        let value = eventually(PATIENCE, "the third look", || {
            looks += 1;
            let now = looks;
            async move { (now == 3).then_some(now) }
        })
        .await;
        assert_eq!(value, 3);
        assert_eq!(started.elapsed(), 2 * POLL_INTERVAL);
    }

    #[tokio::test(start_paused = true)]
    #[should_panic(expected = "not within 1s: never; last seen: 7")]
    async fn fails_with_what_it_saw_last() {
        eventually(Duration::from_secs(1), "never", || async {
            Err::<(), _>(7)
        })
        .await;
    }
}
