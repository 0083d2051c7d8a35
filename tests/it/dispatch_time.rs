//! The dispatcher's decisions on injected time: the retry schedule, Retry-After,
//! the pause after a refusal and expiry, with a scripted upstream and a manual
//! clock; and the rate limit on tokio's paused time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use smpp_broker::clock::{Clock, ManualClock};
use smpp_broker::config::StoreSettings;
use smpp_broker::dispatch::{throttled, Call, Dispatcher, Reply, SendOutcome, UpstreamHealth};
use smpp_broker::smpp::pdu::{Address, Sm};
use smpp_broker::smpp::submit::{from_submit_sm, AccountPolicy, SubmitTime};
use smpp_broker::store::Store;
use smpp_broker::Settings;
use testkit::db::{Db, OutboxRow, OutboxState};
use testkit::{eventually, PATIENCE};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const T0: i64 = 1_795_359_600_000;

/// An upstream that answers from a script and remembers what it was asked.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<SendOutcome>>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl Script {
    fn new(replies: impl IntoIterator<Item = SendOutcome>) -> Script {
        let script = Script::default();
        script.replies.lock().unwrap().extend(replies);
        script
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn service(&self) -> smpp_broker::dispatch::UpstreamService {
        let script = self.clone();
        let inner = tower::service_fn(move |call: Call| {
            let script = script.clone();
            async move {
                let Call::Send(message) = call else {
                    panic!("only sends are scripted")
                };
                script.calls.lock().unwrap().push(message.upstream_key());
                let reply = script
                    .replies
                    .lock()
                    .unwrap()
                    .pop_front()
                    .expect("a scripted reply");
                Ok::<_, Infallible>(Reply::Send(reply))
            }
        });
        throttled(inner, 1000.0, 4, Duration::from_secs(5))
    }
}

fn accepted(id: &str) -> SendOutcome {
    SendOutcome::Accepted {
        upstream_id: id.into(),
        state: "Pending".into(),
    }
}

struct Rig {
    store: Store,
    clock: ManualClock,
    health: Arc<UpstreamHealth>,
    dir: tempfile::TempDir,
    _stop: tokio_util::sync::DropGuard,
}

async fn rig(script: &Script) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let settings = Settings::from_toml(
        r#"
[[upstreams]]
name = "phone"
kind = "smsgate"
base_url = "http://127.0.0.1:9"
username = "u"
password = "p"
retry_schedule = ["5s", "1m"]
pause_cooldown = "60s"
"#,
        "test",
        std::iter::empty(),
    )
    .unwrap();
    let store = Store::open(
        &StoreSettings {
            path: dir.path().join("broker.db"),
            busy_timeout: Duration::from_secs(5),
        },
        smpp_broker::app::writer_limits(&Settings::default()),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let health = Arc::new(UpstreamHealth::default());
    let dispatcher = Dispatcher::new(
        &settings.upstreams[0],
        store.clone(),
        script.service(),
        Arc::new(clock.clone()),
        health.clone(),
        Arc::new(smpp_broker::metrics::Metrics::default()),
    );
    let stop = CancellationToken::new();
    tokio::spawn(dispatcher.run(stop.clone()));
    Rig {
        store,
        clock,
        health,
        dir,
        _stop: stop.drop_guard(),
    }
}

impl Rig {
    async fn submit(&self, text: &str, validity_ms: i64) -> String {
        let sm = Sm {
            dest: Address::new(1, 1, "4917600000"),
            short_message: Bytes::copy_from_slice(text.as_bytes()),
            ..Sm::default()
        };
        let account = AccountPolicy {
            system_id: "acme".into(),
            routes: smpp_broker::routing::AccountRoutes::only("phone"),
            alphabet: Default::default(),
        };
        let at = SubmitTime {
            now_ms: self.clock.now_ms(),
            default_validity_ms: validity_ms,
        };
        let message = from_submit_sm(&sm, &account, at).unwrap();
        self.store.submit(vec![message]).await.unwrap().remove(0)
    }

    /// The outbox row `id` as it is now.
    async fn row(&self, id: &str) -> OutboxRow {
        Db::at(self.dir.path()).outbox_row(id).await
    }

    /// Waits (a bounded time) for the row to reach `state`.
    async fn row_in(&self, id: &str, state: OutboxState) -> OutboxRow {
        eventually(PATIENCE, &format!("{id} becomes {state:?}"), || async {
            let row = self.row(id).await;
            if row.state == state {
                Ok(row)
            } else {
                Err(row)
            }
        })
        .await
    }

    /// Moves time on and lets the writer promote what became due.
    async fn advance(&self, ms: i64) {
        self.clock.advance_ms(ms);
        self.store.maintain().await.unwrap();
    }
}

#[tokio::test]
async fn retries_follow_the_schedule_retry_after_the_pause_and_expiry() {
    let script = Script::new([
        SendOutcome::Retry {
            after: None,
            reason: "HTTP 503: queue limits exceeded".into(),
        },
        SendOutcome::Retry {
            after: Some(Duration::from_secs(7)),
            reason: "HTTP 429".into(),
        },
        SendOutcome::Refused {
            status: 401,
            reason: "HTTP 401: Unauthorized".into(),
        },
    ]);
    let rig = rig(&script).await;
    let first = rig.submit("first", 48 * 3_600_000).await;

    // 503: the first wait of the schedule, 5 s ± 20 %.
    let OutboxRow {
        due_at: due,
        attempts,
        ..
    } = rig.row_in(&first, OutboxState::Retry).await;
    assert!((T0 + 4_000..=T0 + 6_000).contains(&due), "due {}", due - T0);
    assert_eq!(attempts, 1);
    rig.advance(due - T0 - 1).await;
    assert_eq!(
        rig.row(&first).await.state,
        OutboxState::Retry,
        "not before it is due"
    );
    rig.advance(1).await;

    // 429 with Retry-After: 7 s exactly, instead of the schedule's 1 min.
    let OutboxRow {
        due_at: due2,
        attempts,
        ..
    } = rig.row_in(&first, OutboxState::Retry).await;
    assert_eq!(due2, due + 7_000);
    assert_eq!(attempts, 2);
    rig.advance(7_000).await;

    // 401: paused; the message is back in the queue and not charged. (Right after
    // the promotion above it is queued too, so the pause is what to wait for.)
    let now = rig.clock.now_ms();
    let (until, reason) = eventually(PATIENCE, "the upstream paused after 3 calls", || async {
        rig.health
            .paused("phone", now)
            .filter(|_| script.calls().len() == 3)
    })
    .await;
    let attempts = rig.row_in(&first, OutboxState::Queued).await.attempts;
    assert_eq!(attempts, 2);
    assert_eq!(until, now + 60_000);
    assert_eq!(reason, "HTTP 401: Unauthorized");
    assert_eq!(script.calls().len(), 3);

    // Submitted during the pause: one valid for 48 h, one for only 30 s.
    let second = rig.submit("second", 48 * 3_600_000).await;
    let short_lived = rig.submit("short-lived", 30_000).await;
    script
        .replies
        .lock()
        .unwrap()
        .extend([accepted(&first), accepted(&second)]);
    rig.advance(59_999).await;
    assert!(rig.health.paused("phone", rig.clock.now_ms()).is_some());
    rig.advance(1).await;

    // The cool-down is over: both valid messages go, the expired one does not.
    rig.row_in(&first, OutboxState::Enroute).await;
    rig.row_in(&second, OutboxState::Enroute).await;
    let attempts = rig.row_in(&short_lived, OutboxState::Done).await.attempts;
    assert_eq!(attempts, 1);
    assert_eq!(
        script.calls(),
        [&first, &first, &first, &first, &second].map(String::clone)
    );
    let status = rig
        .store
        .query("acme", &short_lived, "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.smpp_state, 3, "EXPIRED");
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_spaces_requests_evenly() {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let instant = tower::service_fn(move |_: Call| {
        seen.lock().unwrap().push(tokio::time::Instant::now());
        async { Ok::<_, Infallible>(Reply::Send(accepted("x"))) }
    });
    let service = throttled(instant, 50.0, 8, Duration::from_secs(5));
    let mut calls = Vec::new();
    for _ in 0..201 {
        let service = service.clone();
        calls.push(tokio::spawn(service.oneshot(Call::Status("1".into()))));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let arrivals = arrivals.lock().unwrap();
    let span = *arrivals.last().unwrap() - arrivals[0];
    let rate = (arrivals.len() - 1) as f64 / span.as_secs_f64();
    assert!((rate - 50.0).abs() <= 50.0 * 0.05, "rate {rate:.2}/s");
    // Evenly: no two requests closer than the spacing.
    for pair in arrivals.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(20),
            "{:?}",
            pair[1] - pair[0]
        );
    }
}
