//! The dispatcher's decisions on injected time: the member's cool-down on the
//! retry schedule, Retry-After, the pause after a refusal and expiry, with a scripted upstream and a manual
//! clock; and the rate limit on tokio's paused time.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use smpp_broker::clock::{Clock, ManualClock};
use smpp_broker::config::StoreSettings;
use smpp_broker::dispatch::{
    throttled, Call, Member, Members, Reply, RouteDispatcher, SendOutcome, Unavailable,
};
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
    members: Arc<Members>,
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
        &StoreSettings::sqlite(dir.path().join("broker.db")),
        smpp_broker::store::WriterLimits::of(&Settings::default()),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let members = Arc::new(Members::new([Member::new(
        &settings.upstreams[0],
        script.service(),
    )]));
    let route = smpp_broker::routing::AccountRoutes::only("phone")
        .resolve("4917600000")
        .cloned()
        .unwrap();
    let dispatcher = RouteDispatcher::new(
        route,
        members.clone(),
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(smpp_broker::metrics::Metrics::default()),
    );
    let stop = CancellationToken::new();
    tokio::spawn(dispatcher.run(stop.clone(), CancellationToken::new()));
    Rig {
        store,
        clock,
        members,
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

    /// Why the phone takes nothing now, if so.
    fn unavailable(&self) -> Option<Unavailable> {
        self.members
            .get("phone")
            .unwrap()
            .unavailable(self.clock.now_ms())
    }

    /// Waits until the phone has been called `n` times and its answer stored:
    /// the message is back in the queue. Returns the row and why the phone
    /// takes nothing now.
    async fn after_call(
        &self,
        script: &Script,
        n: usize,
        id: &str,
    ) -> (OutboxRow, Option<Unavailable>) {
        eventually(PATIENCE, "the answer stored", || async {
            let row = self.row(id).await;
            (script.calls().len() == n
                && row.state == OutboxState::Queued
                && row.lease_until.is_none())
            .then(|| (row, self.unavailable()))
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

    // 503: the message was not taken, so it is free to go at once (to another
    // member, were there one) while the phone cools down for the first wait
    // of the schedule, 5 s ± 20 %.
    let (row, why) = rig.after_call(&script, 1, &first).await;
    assert_eq!((row.attempts, row.upstream), (1, None));
    let Some(Unavailable::CoolingDown { until, reason }) = why else {
        panic!("cooling down: {why:?}")
    };
    assert!(
        (T0 + 4_000..=T0 + 6_000).contains(&until),
        "until {}",
        until - T0
    );
    assert_eq!(reason, "HTTP 503: queue limits exceeded");
    rig.advance(until - T0 - 1).await;
    assert!(rig.unavailable().is_some(), "not before it is due");
    rig.advance(1).await;

    // 429 with Retry-After: 7 s exactly, instead of the schedule's 1 min.
    let (row, why) = rig.after_call(&script, 2, &first).await;
    assert_eq!(row.attempts, 2);
    let now = rig.clock.now_ms();
    assert!(matches!(why, Some(Unavailable::CoolingDown { until, .. }) if until == now + 7_000));
    rig.advance(7_000).await;

    // 401: paused; the message is back in the queue and not charged.
    let (row, why) = rig.after_call(&script, 3, &first).await;
    assert_eq!(row.attempts, 2);
    let now = rig.clock.now_ms();
    let Some(Unavailable::Paused { until, reason }) = why else {
        panic!("paused: {why:?}")
    };
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
    assert!(matches!(
        rig.unavailable(),
        Some(Unavailable::Paused { .. })
    ));
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
