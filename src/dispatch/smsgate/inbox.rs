//! Incoming messages by polling, for an smsgate upstream that no webhook can
//! reach (`http.public_url` unset): `GET /inbox` every `inbox_interval`, from where
//! the last read ended less an overlap (the phone's clock and ours may disagree),
//! stored together with the new cursor in one transaction. What the overlap reads
//! twice has the same dedupe key and is stored once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::api::{for_another_sim, incoming_key};
use super::client::{ApiError, InboxItem, SmsGateClient, INBOX_PAGE};
use crate::clock::Clock;
use crate::config::UpstreamSettings;
use crate::routing::IncomingRoutes;
use crate::store::{upstream_lease, Incoming, Store, StoreError};
use crate::text::Content;

/// Each read starts this much before the previous one ended.
const OVERLAP_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("reading the inbox failed: {0}")]
    Upstream(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct InboxPoller {
    upstream: String,
    client: SmsGateClient,
    store: Store,
    routes: Arc<IncomingRoutes>,
    clock: Arc<dyn Clock>,
    interval: Duration,
    /// The SIM the upstream is pinned to: SMS received on another are not its.
    sim_number: Option<u8>,
}

impl InboxPoller {
    pub fn new(
        settings: &UpstreamSettings,
        store: Store,
        routes: Arc<IncomingRoutes>,
        clock: Arc<dyn Clock>,
    ) -> InboxPoller {
        InboxPoller {
            upstream: settings.name.clone(),
            client: SmsGateClient::from_settings(settings),
            store,
            routes,
            clock,
            interval: settings.inbox_interval(),
            sim_number: settings.sim_number,
        }
    }

    pub async fn run(self, stop: CancellationToken) {
        info!(upstream = %self.upstream, interval = ?self.interval,
            "http.public_url not set: incoming messages are read from the upstream's inbox");
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            // One node of a cluster reads the inbox: the upstream's lease holder.
            if !self.store.holds(&upstream_lease(&self.upstream)) {
                continue;
            }
            match self.poll_once().await {
                Ok(news) => debug!(upstream = %self.upstream, news, "inbox read"),
                Err(err) => warn!(upstream = %self.upstream, error = %err,
                    "inbox not read; trying again at the next interval"),
            }
        }
    }

    /// Reads what arrived since the last read; returns how many messages were new.
    /// The very first read only marks where reading starts: what the phone
    /// received before the broker first polled is not fetched.
    pub async fn poll_once(&self) -> Result<usize, PollError> {
        let now = self.clock.now_ms();
        let Some((started_at, read_until)) = self.store.inbox_cursor(&self.upstream).await? else {
            self.store
                .record_inbox(&self.upstream, Vec::new(), now)
                .await?;
            return Ok(0);
        };
        let from = read_until
            .saturating_sub(OVERLAP_MS)
            .max(started_at)
            .min(now);
        let mut messages = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.client.inbox(from, now, offset).await?;
            let full = page.len() >= INBOX_PAGE;
            offset += page.len();
            messages.extend(page.into_iter().filter_map(|item| self.incoming(item)));
            if !full {
                break;
            }
        }
        Ok(self
            .store
            .record_inbox(&self.upstream, messages, now)
            .await?)
    }

    fn incoming(&self, item: InboxItem) -> Option<Incoming> {
        if for_another_sim(self.sim_number, item.sim_number) {
            return None;
        }
        let recipient = item.recipient.as_deref();
        let Some(system_id) = self.routes.route(&self.upstream, recipient) else {
            warn!(upstream = %self.upstream, "incoming message, but no account uses this upstream: dropped");
            return None;
        };
        let received_at = match &item.created_at {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Some(Incoming {
            system_id: system_id.to_owned(),
            dedupe_key: incoming_key(&self.upstream, &item.id, &item.sender, &received_at),
            source_addr: item.sender,
            dest_addr: item.recipient.unwrap_or_default(),
            content: Content::Text(item.content_preview),
        })
    }
}
