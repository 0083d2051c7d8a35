//! Registering an smsgate upstream's webhooks when `http.public_url` is set
//! (docs/smsgate-api.md §3): in the background, retried until it succeeds or the
//! broker stops, so that an unreachable upstream does not hold up startup. On a
//! shared store the node that holds the upstream's lease registers them (each
//! node that takes the lease over does again: SMSGate keeps one per id).

use std::time::Duration;

use tracing::{info, warn};

use super::client::SmsGateClient;
use crate::config::UpstreamSettings;
use crate::store::{upstream_lease, Store};
use crate::tasks::Tasks;

/// Waits between failed attempts, in seconds; the last one repeats.
const RETRY_WAITS: [u64; 4] = [5, 30, 60, 300];

/// Registers an smsgate upstream's webhooks at `public_url`, retrying in the
/// background until it succeeds or the broker stops. Startup does not wait.
pub fn register_webhooks(
    settings: &UpstreamSettings,
    public_url: String,
    store: Store,
    tasks: &Tasks,
) {
    let upstream = settings.name.clone();
    let client = SmsGateClient::from_settings(settings);
    tasks.spawn_until_stopped(async move {
        let lease = upstream_lease(&upstream);
        while !store.holds(&lease) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for attempt in 0.. {
            match client.register_webhooks(&upstream, &public_url).await {
                Ok(ids) => {
                    info!(%upstream, url = %format!("{}/webhooks/{upstream}", public_url.trim_end_matches('/')),
                        ids = %ids.join(","), "webhooks registered");
                    return;
                }
                Err(err) => {
                    let wait = RETRY_WAITS[attempt.min(RETRY_WAITS.len() - 1)];
                    warn!(%upstream, error = %err, retry_in_s = wait, "webhook registration failed");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
            }
        }
    });
}
