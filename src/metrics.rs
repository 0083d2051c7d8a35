//! Prometheus metrics, served on `GET /metrics`. Names are stable: dashboards
//! and alerts depend on them.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::smpp::pdu::BindKind;
use crate::store::{DropReason, Store, WriterStep, WriterTime};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub upstream: String,
    /// accepted | duplicate | rejected | refused | retry | transport_error
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub upstream: String,
    pub event: String,
    /// stored | ignored | refused | failed
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub system_id: String,
    /// receipt | incoming
    pub kind: String,
    /// acknowledged | retried
    pub outcome: String,
}

type HistogramFamily = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub upstream_paused: Family<UpstreamLabels, Gauge>,
    pub upstream_responses: Family<ResponseLabels, Counter>,
    pub upstream_request_seconds: HistogramFamily,
    pub dispatch_latency_seconds: HistogramFamily,
    pub webhook_events: Family<WebhookLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub deliveries_waiting: Family<AccountLabels, Gauge>,
    pub deliveries_dropped: Family<DropLabels, Counter>,
    pub sessions: Family<SessionLabels, Gauge>,
    pub submits: Family<SubmitLabels, Counter>,
    pub queue_depth: Family<QueueLabels, Gauge>,
    pub routed: Family<RoutedLabels, Counter>,
    pub store_wal_bytes: Gauge,
    pub store_writer_seconds: Family<StepLabels, Counter<f64, AtomicU64>>,
    pub store_transactions: Counter,
    pub node_info: Family<NodeLabels, Gauge>,
    pub node_leases: Family<LeaseLabels, Gauge>,
    pub upstream_limit_remaining: Family<LimitLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodeLabels {
    /// This node's name on a shared PostgreSQL store; empty on SQLite.
    pub node_id: String,
    /// sqlite | postgresql
    pub store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseLabels {
    /// maintenance, or upstream:<name>
    pub lease: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// submit | claim | dispatch | reports | deliveries | commit | other
    pub step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoutedLabels {
    pub route: String,
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    pub upstream: String,
    /// day | month
    pub period: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub system_id: String,
    /// transmitter | receiver | transceiver
    pub bind_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubmitLabels {
    /// Empty for a submit before any bind.
    pub system_id: String,
    /// submit_sm | submit_multi | data_sm
    pub command: String,
    /// ESME_ROK, ESME_RTHROTTLED, … (or the hex value of an unnamed one)
    pub command_status: String,
}

/// The outbox states of messages not yet final, as `queue_depth` labels them.
const QUEUE_STATES: [&str; 5] = ["scheduled", "queued", "retry", "sending", "enroute"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub route: String,
    /// scheduled | queued | retry | sending | enroute
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub system_id: String,
    /// over_limit | expired
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccountLabels {
    pub system_id: String,
}

fn latency_histogram() -> Histogram {
    // 5 ms … about 3 h: from an instant upstream to a phone that was offline.
    Histogram::new(exponential_buckets(0.005, 3.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("smpp_broker");
        let upstream_paused = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_paused",
            "1 while the upstream refuses the broker (401/403) and is sent nothing",
            upstream_paused.clone(),
        );
        let upstream_responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "upstream_responses",
            "Answers to send requests by class",
            upstream_responses.clone(),
        );
        let upstream_request_seconds = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_request_seconds",
            "Duration of requests to the upstream, throttling included",
            upstream_request_seconds.clone(),
        );
        let dispatch_latency_seconds = HistogramFamily::new_with_constructor(latency_histogram);
        registry.register(
            "dispatch_latency_seconds",
            "From submit_sm accepted to the upstream taking the message",
            dispatch_latency_seconds.clone(),
        );
        let webhook_events = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_events",
            "Webhook requests by upstream, event and outcome",
            webhook_events.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "deliver_sm of receipts and incoming messages, by whether the ESME acknowledged it",
            deliveries.clone(),
        );
        let deliveries_waiting = Family::<AccountLabels, Gauge>::default();
        registry.register(
            "deliveries_waiting",
            "Receipts and incoming messages stored for an account, not yet acknowledged",
            deliveries_waiting.clone(),
        );
        let deliveries_dropped = Family::<DropLabels, Counter>::default();
        registry.register(
            "deliveries_dropped",
            "Receipts and incoming messages dropped before an ESME acknowledged them: \
             over the account's max_undelivered, or kept past undelivered_retention",
            deliveries_dropped.clone(),
        );
        let sessions = Family::<SessionLabels, Gauge>::default();
        registry.register(
            "sessions",
            "Bound SMPP sessions by account and bind type",
            sessions.clone(),
        );
        let submits = Family::<SubmitLabels, Counter>::default();
        registry.register(
            "submits",
            "Answers to submit_sm, submit_multi and data_sm by command_status",
            submits.clone(),
        );
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Messages not yet final by route and outbox state: scheduled (for later), \
             queued (ready to send), retry (waiting to be sent again), sending (a \
             request is out), enroute (the upstream has it, no final state yet)",
            queue_depth.clone(),
        );
        let routed = Family::<RoutedLabels, Counter>::default();
        registry.register(
            "routed",
            "Messages an upstream took, by the route they came by and the upstream (the \
             pool member or fallback) that took them",
            routed.clone(),
        );
        let upstream_limit_remaining = Family::<LimitLabels, Gauge>::default();
        registry.register(
            "upstream_limit_remaining",
            "SMS parts an upstream may still take today (period=day) or this month \
             (period=month) under its daily_limit and monthly_limit, counting those on \
             their way; only for the limits that are set",
            upstream_limit_remaining.clone(),
        );
        let store_wal_bytes = Gauge::default();
        registry.register(
            "store_wal_bytes",
            "Size of the database's write-ahead log not yet checkpointed into the database \
             file, in bytes (read at scrape time)",
            store_wal_bytes.clone(),
        );
        let store_writer_seconds = Family::<StepLabels, Counter<f64, AtomicU64>>::default();
        registry.register(
            "store_writer_seconds",
            "Time the store's single writer spent in its transactions, by step (submit, \
             claim, dispatch, reports, deliveries, commit: BEGIN and COMMIT, other); \
             the steps' rates summed near 1 mean the writer is saturated",
            store_writer_seconds.clone(),
        );
        let store_transactions = Counter::default();
        registry.register(
            "store_transactions",
            "Transactions the store's writer committed",
            store_transactions.clone(),
        );
        let node_info = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "node_info",
            "1, labelled with this node's name on a shared store and the store's kind",
            node_info.clone(),
        );
        let node_leases = Family::<LeaseLabels, Gauge>::default();
        registry.register(
            "node_leases",
            "1 for each lease this node holds (on a shared store): it does that work",
            node_leases.clone(),
        );
        Metrics {
            node_info,
            node_leases,
            registry,
            routed,
            store_wal_bytes,
            store_writer_seconds,
            store_transactions,
            upstream_limit_remaining,
            sessions,
            submits,
            queue_depth,
            deliveries_dropped,
            deliveries_waiting,
            webhook_events,
            deliveries,
            upstream_paused,
            upstream_responses,
            upstream_request_seconds,
            dispatch_latency_seconds,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    pub fn response(&self, upstream: &str, class: &str) {
        self.upstream_responses
            .get_or_create(&ResponseLabels {
                upstream: upstream.to_owned(),
                class: class.to_owned(),
            })
            .inc();
    }

    pub fn routed(&self, route: &str, upstream: &str) {
        self.routed
            .get_or_create(&RoutedLabels {
                route: route.to_owned(),
                upstream: upstream.to_owned(),
            })
            .inc();
    }

    pub fn limit_remaining(&self, upstream: &str, period: &str, parts: u64) {
        self.upstream_limit_remaining
            .get_or_create(&LimitLabels {
                upstream: upstream.to_owned(),
                period: period.to_owned(),
            })
            .set(parts.min(i64::MAX as u64) as i64);
    }

    pub fn webhook(&self, upstream: &str, event: &str, outcome: &str) {
        self.webhook_events
            .get_or_create(&WebhookLabels {
                upstream: upstream.to_owned(),
                event: event.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A deliver_sm answered: `kind` is `receipt` or `incoming`.
    pub fn delivery(&self, system_id: &str, kind: &str, acknowledged: bool) {
        let outcome = if acknowledged {
            "acknowledged"
        } else {
            "retried"
        };
        self.deliveries
            .get_or_create(&DeliveryLabels {
                system_id: system_id.to_owned(),
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Which node this is, on which store, and the leases it holds.
    fn node(&self, store: &Store) {
        self.node_info.clear();
        self.node_leases.clear();
        let labels = match store.cluster() {
            None => NodeLabels {
                node_id: String::new(),
                store: "sqlite".to_owned(),
            },
            Some(cluster) => {
                for lease in cluster.held() {
                    self.node_leases
                        .get_or_create(&LeaseLabels { lease })
                        .set(1);
                }
                NodeLabels {
                    node_id: cluster.node_id().to_owned(),
                    store: "postgresql".to_owned(),
                }
            }
        };
        self.node_info.get_or_create(&labels).set(1);
    }

    /// Brings the writer's counters up to the store's running totals.
    fn writer_time(&self, time: &WriterTime) {
        for step in WriterStep::ALL {
            let labels = StepLabels {
                step: step.as_str().to_owned(),
            };
            let counter = self.store_writer_seconds.get_or_create(&labels);
            let more = time.seconds(step) - counter.get();
            if more > 0.0 {
                counter.inc_by(more);
            }
        }
        let more = time
            .transactions()
            .saturating_sub(self.store_transactions.get());
        self.store_transactions.inc_by(more);
    }

    /// Fills the gauges that are read at scrape time rather than kept up to date:
    /// deliveries waiting and dropped per account (the table is small, bounded
    /// per account), bound sessions per account and bind type (`bound`, as the
    /// session registry counts them), and the queue per route and state. Every
    /// configured account and route has its series, 0 when nothing waits, so
    /// that an alert reads 0 rather than no data. A read that fails leaves its
    /// gauges as they were.
    pub async fn refresh(
        &self,
        store: &Store,
        bound: &HashMap<(String, BindKind), usize>,
        accounts: &[String],
        routes: &[String],
    ) {
        self.node(store);
        if let Ok(waiting) = store.waiting_deliveries().await {
            self.deliveries_waiting.clear();
            for system_id in accounts {
                let labels = AccountLabels {
                    system_id: system_id.clone(),
                };
                self.deliveries_waiting.get_or_create(&labels).set(0);
            }
            for account in waiting {
                self.deliveries_waiting
                    .get_or_create(&AccountLabels {
                        system_id: account.system_id,
                    })
                    .set(account.waiting);
            }
        }
        self.dropped(store.dropped_deliveries());
        let wal = store.wal_bytes();
        self.store_wal_bytes.set(wal.min(i64::MAX as u64) as i64);
        self.writer_time(&store.writer_time());
        for system_id in accounts {
            for kind in [
                BindKind::Transmitter,
                BindKind::Receiver,
                BindKind::Transceiver,
            ] {
                let count = bound.get(&(system_id.clone(), kind)).copied().unwrap_or(0);
                let labels = SessionLabels {
                    system_id: system_id.clone(),
                    bind_type: kind.name().to_owned(),
                };
                self.sessions.get_or_create(&labels).set(count as i64);
            }
        }
        if let Ok(open) = store.open_outbox().await {
            self.queue_depth.clear();
            for route in routes {
                for state in QUEUE_STATES {
                    let labels = QueueLabels {
                        route: route.clone(),
                        state: state.to_owned(),
                    };
                    self.queue_depth.get_or_create(&labels).set(0);
                }
            }
            for (route, queue_state, count) in open {
                let labels = QueueLabels {
                    route,
                    state: queue_state,
                };
                self.queue_depth.get_or_create(&labels).set(count);
            }
        }
    }

    /// Brings `deliveries_dropped_total` up to the store's counts (read at scrape
    /// time; the counts only grow).
    pub fn dropped(&self, counts: Vec<(String, DropReason, u64)>) {
        for (system_id, reason, count) in counts {
            let counter = self.deliveries_dropped.get_or_create(&DropLabels {
                system_id,
                reason: reason.as_str().to_owned(),
            });
            counter.inc_by(count.saturating_sub(counter.get()));
        }
    }

    /// The counter of `smpp_broker_submits_total` for a response of `command`
    /// (submit_sm_resp, submit_multi_resp, data_sm_resp) with `status`; None for
    /// other responses. Sessions keep the counters they used, so the labels are
    /// built once per session, not per submit.
    pub fn submit_counter(
        &self,
        system_id: &str,
        command: crate::smpp::pdu::CommandId,
        status: crate::smpp::pdu::CommandStatus,
    ) -> Option<Counter> {
        use crate::smpp::pdu::CommandId;
        let command = match command {
            CommandId::SubmitSmResp => "submit_sm",
            CommandId::SubmitMultiResp => "submit_multi",
            CommandId::DataSmResp => "data_sm",
            _ => return None,
        };
        let labels = SubmitLabels {
            system_id: system_id.to_owned(),
            command: command.to_owned(),
            command_status: status.label(),
        };
        Some(self.submits.get_or_create(&labels).clone())
    }

    pub fn upstream(upstream: &str) -> UpstreamLabels {
        UpstreamLabels {
            upstream: upstream.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_stable_names() {
        let metrics = Metrics::default();
        metrics.response("phone", "accepted");
        metrics
            .upstream_paused
            .get_or_create(&Metrics::upstream("phone"))
            .set(1);
        metrics
            .dispatch_latency_seconds
            .get_or_create(&Metrics::upstream("phone"))
            .observe(0.2);
        let text = metrics.render();
        assert!(text.contains(
            "smpp_broker_upstream_responses_total{upstream=\"phone\",class=\"accepted\"} 1"
        ));
        assert!(text.contains("smpp_broker_upstream_paused{upstream=\"phone\"} 1"));
        assert!(text.contains("# TYPE smpp_broker_dispatch_latency_seconds histogram"));
        assert!(text.contains("smpp_broker_dispatch_latency_seconds_count{upstream=\"phone\"} 1"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn dropped_deliveries_follow_the_store_counts() {
        use crate::store::DropReason::{Expired, OverLimit};
        let metrics = Metrics::default();
        metrics.dropped(vec![("acme".into(), OverLimit, 2)]);
        metrics.dropped(vec![
            ("acme".into(), OverLimit, 5),
            ("acme".into(), Expired, 1),
        ]);
        let text = metrics.render();
        assert!(text.contains(
            "smpp_broker_deliveries_dropped_total{system_id=\"acme\",reason=\"over_limit\"} 5"
        ));
        assert!(text.contains(
            "smpp_broker_deliveries_dropped_total{system_id=\"acme\",reason=\"expired\"} 1"
        ));
    }
}
