//! Routes across several upstreams, each a fake SMSGate phone: which member of
//! a pool carries each message (weights, sticky recipients, the fallback tier),
//! members that refuse, time out or reach their carrier limits, routes chosen
//! by destination prefix and account, and what /readyz and /metrics say about
//! the members. Throughout, every message reaches exactly one member, once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use smpp_broker::clock::ManualClock;
use smpp_broker::smpp::pdu::{Address, CommandStatus, Sm};
use smpp_broker::text::gsm7;
use testkit::db::OutboxState;
use testkit::fake_smsgate::{FakeSmsGate, Fault, Mode};
use testkit::sms::{bound, sm, submit_all, submit_ok, submit_status};
use testkit::{eventually, Esme, TestBroker, PATIENCE};
use tokio::net::TcpStream;

/// Keys every fake upstream gets unless a test gives its own: quick (so that
/// the tests are), quick retries, and a pause after a 401 that outlasts any
/// test.
const FAST: [(&str, &str); 3] = [
    ("rate", "1000"),
    ("retry_schedule", "[\"50ms\"]"),
    ("pause_cooldown", "\"60s\""),
];

/// `keys` (TOML lines) with the [`FAST`] keys they do not set.
fn with_fast(keys: &str) -> String {
    let set: Vec<&str> = keys
        .lines()
        .filter_map(|line| line.split('=').next())
        .map(str::trim)
        .collect();
    let mut text: String = FAST
        .iter()
        .filter(|(key, _)| !set.contains(key))
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
    text.push_str(keys);
    text
}

/// The account the tests submit as; it names no upstream: the routes apply.
const ACME: &str =
    "[[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nthroughput = 100000\n";

/// The three phones: upstreams `a`, `b` and `c`.
struct Phones {
    a: FakeSmsGate,
    b: FakeSmsGate,
    c: FakeSmsGate,
}

impl Phones {
    async fn start() -> Phones {
        Phones {
            a: FakeSmsGate::start(Mode::Cloud).await,
            b: FakeSmsGate::start(Mode::Cloud).await,
            c: FakeSmsGate::start(Mode::Cloud).await,
        }
    }

    fn all(&self) -> [(&'static str, &FakeSmsGate); 3] {
        [("a", &self.a), ("b", &self.b), ("c", &self.c)]
    }

    /// The `[[upstreams]]` tables, each with its own `keys` (a, b, c) and the
    /// [`FAST`] ones they do not set, then the account and `routes`.
    fn config(&self, keys: [&str; 3], routes: &str) -> String {
        let mut text = String::new();
        for ((name, fake), keys) in self.all().into_iter().zip(keys) {
            text.push_str(&fake.upstream_table(name, &with_fast(keys)));
        }
        text.push_str(ACME);
        text.push_str(routes);
        text
    }

    /// Every message id any phone accepted, with the phones that accepted it.
    fn holders(&self) -> BTreeMap<String, Vec<&'static str>> {
        let mut holders: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for (name, fake) in self.all() {
            for accepted in fake.accepted() {
                holders.entry(accepted.id).or_default().push(name);
            }
        }
        holders
    }

    /// Messages accepted by a, b and c.
    fn counts(&self) -> [usize; 3] {
        self.all().map(|(_, fake)| fake.accepted_count())
    }

    /// Waits until the phones accepted `n` messages in all and the broker
    /// recorded every answer (no outbox row waits or is out: the counts,
    /// metrics and rows are final); returns the holders.
    async fn until_accepted(
        &self,
        broker: &TestBroker,
        n: usize,
    ) -> BTreeMap<String, Vec<&'static str>> {
        let what = format!("the phones accept {n} messages and the broker records it");
        eventually(PATIENCE, &what, || async {
            let counts = self.counts();
            let outbox = broker.db().outbox().await;
            let open: Vec<_> = outbox
                .iter()
                .filter(|r| !matches!(r.state, OutboxState::Enroute | OutboxState::Done))
                .collect();
            if counts.iter().sum::<usize>() >= n && open.is_empty() {
                Ok(self.holders())
            } else {
                Err(format!(
                    "accepted {counts:?}, outbox rows not settled {open:?}"
                ))
            }
        })
        .await
    }
}

/// The one phone each of `ids` reached, failing on a message that reached
/// none or more than one (at one phone a message is stored once: a repeat is
/// answered 409 and not accepted again).
fn each_at_one(
    holders: &BTreeMap<String, Vec<&'static str>>,
    ids: &[String],
) -> BTreeMap<String, &'static str> {
    let expected: BTreeSet<&String> = ids.iter().collect();
    let arrived: BTreeSet<&String> = holders.keys().collect();
    assert_eq!(
        arrived, expected,
        "the phones hold exactly the messages submitted"
    );
    ids.iter()
        .map(|id| match holders[id].as_slice() {
            [one] => (id.clone(), *one),
            many => panic!("message {id} reached {many:?}"),
        })
        .collect()
}

/// A short message from acme's ESME to `dest` (international digits).
fn to(dest: &str, text: &str) -> Sm {
    let mut message = sm(0, 0, &gsm7::encode(text).expect("GSM 7-bit text"));
    message.dest = Address::new(1, 1, dest);
    message
}

async fn readyz(broker: &TestBroker) -> serde_json::Value {
    let url = format!("http://{}/readyz", broker.http_addr());
    reqwest::get(url)
        .await
        .expect("GET /readyz")
        .json()
        .await
        .expect("/readyz is JSON")
}

/// Waits until /readyz shows `upstream` in `state`; returns its entry.
async fn until_state(broker: &TestBroker, upstream: &str, state: &str) -> serde_json::Value {
    let what = format!("/readyz shows upstream {upstream} {state}");
    eventually(PATIENCE, &what, || async {
        let ready = readyz(broker).await;
        let entry = ready["upstreams"][upstream].clone();
        if entry["state"] == state {
            Ok(entry)
        } else {
            Err(ready)
        }
    })
    .await
}

fn assert_metric(text: &str, line: &str) {
    assert!(text.contains(line), "no {line:?} in\n{text}");
}

#[tokio::test]
async fn weights_share_the_messages_out_in_proportion() {
    let phones = Phones::start().await;
    let routes =
        "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\nweights = [2, 1, 1]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let messages = (0..300).map(|n| to(&format!("4917612{n:05}"), &format!("weighted {n}")));
    let ids = submit_all(&mut esme, messages).await;

    let holders = phones.until_accepted(&broker, ids.len()).await;
    let at = each_at_one(&holders, &ids);
    let [a, b, c] = phones.counts();
    println!("weights [2, 1, 1] over 300 messages: a {a}, b {b}, c {c}");
    // Smooth weighted round robin is exact while every member is healthy;
    // within 3 % of the 300 all the same.
    for (name, got, share) in [("a", a, 150), ("b", b, 75), ("c", c, 75)] {
        assert!(
            got.abs_diff(share) <= 9,
            "{name} took {got}, its share is {share}"
        );
    }

    // The store names the route and the member that took each message.
    for row in broker.db().outbox().await {
        let id = row.id.to_string();
        assert_eq!(row.state, OutboxState::Enroute, "{row:?}");
        assert_eq!(row.route, "all");
        assert_eq!(row.upstream.as_deref(), Some(at[&id]), "{row:?}");
    }
    let metrics = broker.metrics_text().await;
    for (name, got) in [("a", a), ("b", b), ("c", c)] {
        let line = format!("smpp_broker_routed_total{{route=\"all\",upstream=\"{name}\"}} {got}");
        assert_metric(&metrics, &line);
    }
}

#[tokio::test]
async fn sticky_keeps_each_recipient_on_one_member() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\nsticky = true\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // Five rounds over 30 recipients, each round its own batch.
    let mut ids = Vec::new();
    for round in 0..5 {
        let messages =
            (0..30).map(|r| to(&format!("4917699{r:05}"), &format!("round {round} to {r}")));
        ids.extend(submit_all(&mut esme, messages).await);
    }

    let holders = phones.until_accepted(&broker, ids.len()).await;
    each_at_one(&holders, &ids);
    // recipient → the members its messages reached
    let mut members: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    let mut messages: BTreeMap<String, usize> = BTreeMap::new();
    for (name, fake) in phones.all() {
        for accepted in fake.accepted() {
            let recipient = accepted.phone_numbers.concat();
            members.entry(recipient.clone()).or_default().insert(name);
            *messages.entry(recipient).or_default() += 1;
        }
    }
    assert_eq!(members.len(), 30, "{members:?}");
    for (recipient, at) in &members {
        assert_eq!(at.len(), 1, "{recipient}'s messages went to {at:?}");
        assert_eq!(messages[recipient], 5, "{recipient}");
    }
    let used: BTreeSet<&str> = members.values().flatten().copied().collect();
    println!(
        "sticky: recipients per member {:?}",
        phones.counts().map(|n| n / 5)
    );
    assert!(used.len() > 1, "every recipient on one member: {used:?}");
}

#[tokio::test]
async fn a_member_that_answers_401_is_paused_and_its_share_moves() {
    let phones = Phones::start().await;
    phones.a.fail_every(1, Fault::Unauthorized);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;

    // The round robin starts at a: the first message meets the 401, and goes
    // on to another member at once.
    let first = submit_ok(&mut esme, to("4917600001", "first")).await;
    phones.until_accepted(&broker, 1).await;
    assert_eq!(
        phones.a.post_count(),
        1,
        "the first message went to a first"
    );
    let paused = until_state(&broker, "a", "paused").await;
    let reason = paused["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("401"), "{paused}");
    assert!(paused["until_ms"].is_i64(), "{paused}");
    let row = broker.db().outbox_row(&first).await;
    assert_eq!(
        (row.state, row.attempts),
        (OutboxState::Enroute, 1),
        "the 401 cost no attempt"
    );

    let more = (0..59).map(|n| to(&format!("49176{n:05}"), &format!("after the pause {n}")));
    let mut ids = vec![first];
    ids.extend(submit_all(&mut esme, more).await);
    let holders = phones.until_accepted(&broker, ids.len()).await;
    each_at_one(&holders, &ids);
    let [a, b, c] = phones.counts();
    assert_eq!(a, 0, "a accepted nothing");
    assert_eq!(
        phones.a.post_count(),
        1,
        "a was sent nothing after its refusal"
    );
    assert!(
        b.abs_diff(c) <= 1,
        "b and c share a's part evenly: {b} and {c}"
    );
    assert_eq!(readyz(&broker).await["upstreams"]["b"]["state"], "sending");
    let metrics = broker.metrics_text().await;
    assert_metric(&metrics, "smpp_broker_upstream_paused{upstream=\"a\"} 1");
    assert_metric(&metrics, "smpp_broker_upstream_paused{upstream=\"b\"} 0");
}

/// 2026-12-15T23:50:00Z: ten minutes before the day turns in UTC, mid-month.
fn late_on_the_15th() -> i64 {
    "2026-12-15T23:50:00Z"
        .parse::<jiff::Timestamp>()
        .expect("a timestamp")
        .as_millisecond()
}

/// The stored part counts: (upstream, period, starts_at, parts).
async fn usage_counts(broker: &TestBroker) -> Vec<(String, String, i64, i64)> {
    broker
        .db()
        .rows(
            "SELECT upstream, period, starts_at, parts FROM upstream_usage_counts \
             ORDER BY upstream, period, starts_at",
        )
        .await
}

/// Submits one message and waits until a phone took it and the broker
/// recorded it; then a, b and c hold `expect` messages.
async fn send_one(
    phones: &Phones,
    broker: &TestBroker,
    esme: &mut Esme<TcpStream>,
    sent: &mut usize,
    text: &str,
    expect: [usize; 3],
) -> String {
    let id = submit_ok(esme, to("4917600002", text)).await;
    *sent += 1;
    phones.until_accepted(broker, *sent).await;
    assert_eq!(phones.counts(), expect, "after {text:?}");
    id
}

/// Waits until the metrics show `parts` left under a's daily limit.
async fn remaining(broker: &TestBroker, parts: u64) {
    let line =
        format!("smpp_broker_upstream_limit_remaining{{upstream=\"a\",period=\"day\"}} {parts}");
    broker.until_metric(&line).await;
}

#[tokio::test]
async fn a_member_over_its_daily_limit_is_skipped_until_the_day_turns() {
    let phones = Phones::start().await;
    let t0 = late_on_the_15th();
    let clock = ManualClock::new(t0);
    // a alone in the pool, b the fallback: whatever a cannot take goes to b.
    let routes = "[[routes]]\nname = \"limited\"\nupstreams = [\"a\"]\nfallback = [\"b\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(
            ["daily_limit = 3\nlimits_timezone = \"UTC\"\n", "", ""],
            routes,
        ))
        .clock(clock.clone())
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // 200 GSM characters: two SMS parts.
    let long_text = format!("long {}", "x".repeat(195));
    let mut sent = 0;

    remaining(&broker, 3).await;
    for (text, expect) in [("one", [1, 0, 0]), ("two", [2, 0, 0])] {
        send_one(&phones, &broker, &mut esme, &mut sent, text, expect).await;
    }
    remaining(&broker, 1).await;
    // Two parts do not fit in the one left: the fallback takes them.
    send_one(
        &phones,
        &broker,
        &mut esme,
        &mut sent,
        &long_text,
        [2, 1, 0],
    )
    .await;
    assert_eq!(readyz(&broker).await["upstreams"]["a"]["state"], "sending");
    send_one(&phones, &broker, &mut esme, &mut sent, "three", [3, 1, 0]).await;
    remaining(&broker, 0).await;
    let over = until_state(&broker, "a", "over_limit").await;
    let reason = over["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("daily_limit 3 reached; counts again from 2026-12-16T00:00:00"),
        "{over}"
    );
    for n in 0..3 {
        let text = format!("skipped {n}");
        send_one(&phones, &broker, &mut esme, &mut sent, &text, [3, 2 + n, 0]).await;
    }

    let day = t0 - 23 * 3_600_000 - 50 * 60_000;
    let month = day - 14 * 86_400_000;
    let next_day = day + 86_400_000;
    let stored = |rows: &[(&str, &str, i64, i64)]| -> Vec<(String, String, i64, i64)> {
        rows.iter()
            .map(|(u, p, s, n)| (u.to_string(), p.to_string(), *s, *n))
            .collect()
    };
    // b has no limit, and its parts are counted all the same: the long
    // message counts two.
    assert_eq!(
        usage_counts(&broker).await,
        stored(&[
            ("a", "day", day, 3),
            ("a", "month", month, 3),
            ("b", "day", day, 5),
            ("b", "month", month, 5),
        ])
    );
    let limits: Vec<(String, Option<i64>, Option<i64>, String)> = broker
        .db()
        .rows("SELECT upstream, daily_limit, monthly_limit, timezone FROM upstream_usage")
        .await;
    assert_eq!(limits[0], ("a".to_owned(), Some(3), None, "UTC".to_owned()));

    // Midnight in UTC: a counts from nothing again.
    clock.advance_ms(20 * 60_000);
    until_state(&broker, "a", "sending").await;
    remaining(&broker, 3).await;
    send_one(
        &phones,
        &broker,
        &mut esme,
        &mut sent,
        &long_text,
        [4, 4, 0],
    )
    .await;
    remaining(&broker, 1).await;
    send_one(&phones, &broker, &mut esme, &mut sent, "four", [5, 4, 0]).await;
    remaining(&broker, 0).await;
    send_one(&phones, &broker, &mut esme, &mut sent, "five", [5, 5, 0]).await;
    assert_eq!(
        usage_counts(&broker).await,
        stored(&[
            ("a", "day", day, 3),
            ("a", "day", next_day, 3),
            ("a", "month", month, 6),
            ("b", "day", day, 5),
            ("b", "day", next_day, 1),
            ("b", "month", month, 6),
        ])
    );
    let ids: Vec<String> = phones.holders().into_keys().collect();
    each_at_one(&phones.holders(), &ids);
}

#[tokio::test]
async fn the_fallback_takes_messages_only_while_no_pool_member_can() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"tiered\"\nupstreams = [\"a\", \"b\"]\nfallback = [\"c\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let batch = |from: usize| {
        (from..from + 20).map(|n| to(&format!("49176{n:05}"), &format!("tiered {n}")))
    };

    let mut ids = submit_all(&mut esme, batch(0)).await;
    phones.until_accepted(&broker, 20).await;
    assert_eq!(
        phones.counts(),
        [10, 10, 0],
        "the pool shares, the fallback waits"
    );

    // Both pool members refuse the broker: they are paused, c takes over.
    phones.a.fail_every(1, Fault::Unauthorized);
    phones.b.fail_every(1, Fault::Unauthorized);
    ids.extend(submit_all(&mut esme, batch(20)).await);
    let holders = phones.until_accepted(&broker, 40).await;
    each_at_one(&holders, &ids);
    assert_eq!(phones.counts(), [10, 10, 20]);
    let ready = readyz(&broker).await;
    for (name, state) in [("a", "paused"), ("b", "paused"), ("c", "sending")] {
        assert_eq!(ready["upstreams"][name]["state"], state, "{ready}");
    }
    let metrics = broker.metrics_text().await;
    assert_metric(
        &metrics,
        "smpp_broker_routed_total{route=\"tiered\",upstream=\"c\"} 20",
    );
}

#[tokio::test]
async fn routes_are_chosen_by_account_and_longest_prefix() {
    let phones = Phones::start().await;
    let routes = "\
[[accounts]]
system_id = \"shop\"
password = \"shop1234\"
throughput = 100000

[[routes]]
name = \"de\"
prefix = \"+49\"
upstreams = [\"a\"]

[[routes]]
name = \"de-mobile\"
prefix = \"+4917\"
upstreams = [\"b\"]

[[routes]]
name = \"shop-de\"
prefix = \"+49\"
accounts = [\"shop\"]
upstreams = [\"c\"]

[[routes]]
name = \"world\"
upstreams = [\"c\"]
";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut acme = bound(&broker, "acme", "acme1234").await;
    let mut shop = bound(&broker, "shop", "shop1234").await;
    // (account's message_id, the route and member expected)
    let mut expected = Vec::new();
    for (dest, route, member) in [
        // The longest prefix wins.
        ("4930123456", "de", "a"),
        ("4917612345", "de-mobile", "b"),
        // No prefix matches: the general route.
        ("33612345678", "world", "c"),
    ] {
        let id = submit_ok(&mut acme, to(dest, "from acme")).await;
        expected.push((id, dest, route, member));
    }
    for (dest, route, member) in [
        // The account's own +49 route comes before the general +4917.
        ("4917612345", "shop-de", "c"),
        ("4930123456", "shop-de", "c"),
        ("33612345678", "world", "c"),
    ] {
        let id = submit_ok(&mut shop, to(dest, "from shop")).await;
        expected.push((id, dest, route, member));
    }

    let ids: Vec<String> = expected.iter().map(|(id, ..)| id.clone()).collect();
    let holders = phones.until_accepted(&broker, ids.len()).await;
    let at = each_at_one(&holders, &ids);
    for (id, dest, route, member) in &expected {
        let row = broker.db().outbox_row(id).await;
        assert_eq!(
            (row.route.as_str(), row.upstream.as_deref(), at[id]),
            (*route, Some(*member), *member),
            "message {id} to {dest}"
        );
    }
    let metrics = broker.metrics_text().await;
    assert_metric(
        &metrics,
        "smpp_broker_routed_total{route=\"shop-de\",upstream=\"c\"} 2",
    );
    assert_metric(
        &metrics,
        "smpp_broker_routed_total{route=\"world\",upstream=\"c\"} 2",
    );
}

#[tokio::test]
async fn a_destination_no_route_takes_is_refused_and_nothing_is_stored() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    for dest in ["33612345678", "+33612345678", "1555123456"] {
        let status = submit_status(&mut esme, to(dest, "nowhere")).await;
        assert_eq!(status, CommandStatus::ESME_RINVDSTADR, "to {dest}");
    }
    assert!(broker.db().outbox().await.is_empty(), "no outbox row");
    assert!(broker.db().messages().await.is_empty(), "no message");

    let id = submit_ok(&mut esme, to("4930123456", "somewhere")).await;
    let holders = phones.until_accepted(&broker, 1).await;
    assert_eq!(each_at_one(&holders, std::slice::from_ref(&id))[&id], "a");
    assert_eq!(broker.db().outbox().await.len(), 1);
    assert_metric(
        &broker.metrics_text().await,
        "smpp_broker_submits_total{system_id=\"acme\",command=\"submit_sm\",command_status=\"ESME_RINVDSTADR\"} 3",
    );
}

#[tokio::test]
async fn a_timeout_at_one_member_never_sends_the_message_to_another() {
    let phones = Phones::start().await;
    // a's first three requests are answered after the request timed out.
    phones
        .a
        .push_faults(vec![Fault::Slow(Duration::from_millis(1500)); 3]);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let timeout = "request_timeout = \"300ms\"\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config([timeout, timeout, timeout], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let messages = (0..30).map(|n| to(&format!("49176{n:05}"), &format!("patient {n}")));
    let ids = submit_all(&mut esme, messages).await;

    phones.until_accepted(&broker, ids.len()).await;
    // A slow answer may still store its message when it ends: look once the
    // last request to a can no longer be sleeping.
    let last_at_a = *phones.a.arrivals().last().expect("a was sent something");
    tokio::time::sleep_until(last_at_a + Duration::from_millis(1600)).await;
    let at = each_at_one(&phones.holders(), &ids);

    // The messages whose first request timed out (two attempts): each went
    // back to a, and only to a.
    let rows = broker.db().outbox().await;
    let timed_out: Vec<_> = rows.iter().filter(|r| r.attempts > 1).collect();
    assert_eq!(timed_out.len(), 3, "{rows:?}");
    for row in &timed_out {
        let id = row.id.to_string();
        assert_eq!(
            (row.upstream.as_deref(), at[&id]),
            (Some("a"), "a"),
            "{row:?}"
        );
    }
    for row in &rows {
        assert_eq!(
            row.upstream.as_deref(),
            Some(at[&row.id.to_string()]),
            "{row:?}"
        );
    }
    assert!(phones.a.post_count() >= phones.a.accepted_count() + 3);
    assert_metric(
        &broker.metrics_text().await,
        "smpp_broker_upstream_responses_total{upstream=\"a\",class=\"transport_error\"} 3",
    );
}

/// A member that may hold a message (its answer was lost) and then refuses
/// the same message outright: the refusal is about that request, not the
/// earlier one, so the message must stay with the member, which knows its id.
/// The refusal keeps a away for a second (a 429's Retry-After, a 401's
/// pause): then a is asked again, answers 409, and the message is accepted
/// there; b and c are never to see it.
async fn refused_after_an_unknown_outcome(refusal: Fault) {
    let phones = Phones::start().await;
    // a stores the message but its answer is lost; the resend is refused.
    phones
        .a
        .push_faults([Fault::AcceptThenReset, refusal.clone()]);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["pause_cooldown = \"1s\"\n", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // The round robin starts at a.
    let id = submit_ok(&mut esme, to("4917600003", "taken, answer lost")).await;
    phones.until_accepted(&broker, 1).await;
    eventually(PATIENCE, "a is sent the message again", || async {
        (phones.a.pending_faults() == 0).then_some(())
    })
    .await;
    let row = eventually(PATIENCE, "the broker records an acceptance", || async {
        let row = broker.db().outbox_row(&id).await;
        if row.state == OutboxState::Enroute {
            Ok(row)
        } else {
            Err(row)
        }
    })
    .await;
    assert_eq!(
        phones.holders()[&id],
        ["a"],
        "{refusal:?} after a lost answer: message {id} must stay with a, which has it; \
         outbox row {row:?}"
    );
    assert_eq!(row.upstream.as_deref(), Some("a"), "{row:?}");
}

#[tokio::test]
async fn a_429_after_a_lost_answer_keeps_the_message_at_its_member() {
    refused_after_an_unknown_outcome(Fault::TooManyRequests {
        retry_after_secs: 1,
    })
    .await;
}

#[tokio::test]
async fn a_401_after_a_lost_answer_keeps_the_message_at_its_member() {
    refused_after_an_unknown_outcome(Fault::Unauthorized).await;
}

#[tokio::test]
async fn readyz_tells_why_a_member_takes_nothing() {
    let phones = Phones::start().await;
    phones.a.fail_every(1, Fault::Unauthorized);
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "daily_limit = 1\n", ""], routes))
        .start()
        .await;
    let ready = readyz(&broker).await;
    for name in ["a", "b", "c"] {
        assert_eq!(ready["upstreams"][name]["state"], "sending", "{ready}");
    }
    let mut esme = bound(&broker, "acme", "acme1234").await;
    // a refuses the first (and is paused), b takes the second, then c.
    let messages = (0..4).map(|n| to(&format!("49176{n:05}"), &format!("ready {n}")));
    let ids = submit_all(&mut esme, messages).await;
    let holders = phones.until_accepted(&broker, ids.len()).await;
    each_at_one(&holders, &ids);
    assert_eq!(phones.counts(), [0, 1, 3]);

    let ready = readyz(&broker).await;
    let a = &ready["upstreams"]["a"];
    assert_eq!(a["state"], "paused", "{ready}");
    assert!(
        a["reason"].as_str().unwrap_or_default().contains("401"),
        "{ready}"
    );
    let b = &ready["upstreams"]["b"];
    assert_eq!(b["state"], "over_limit", "{ready}");
    assert!(
        b["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("daily_limit 1 reached"),
        "{ready}"
    );
    assert_eq!(ready["upstreams"]["c"]["state"], "sending", "{ready}");
    assert_eq!(ready["store"], "ok");
}

/// Moves `clock` forward to `at` (Unix ms).
fn advance_to(clock: &ManualClock, at: &str) {
    let at = at
        .parse::<jiff::Timestamp>()
        .expect("a timestamp")
        .as_millisecond();
    let now = smpp_broker::clock::Clock::now_ms(clock);
    assert!(at >= now, "the clock only moves forward");
    clock.advance_ms(at - now);
}

/// The reason /readyz gives for `upstream` once it is over a limit.
async fn over_limit_reason(broker: &TestBroker, upstream: &str) -> String {
    let over = until_state(broker, upstream, "over_limit").await;
    over["reason"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn limits_turn_in_the_members_time_zone_and_the_month_outlasts_the_days() {
    let phones = Phones::start().await;
    // 23:50 in Berlin, 22:50 in UTC.
    let clock = ManualClock::new(0);
    advance_to(&clock, "2026-12-15T22:50:00Z");
    let routes = "[[routes]]\nname = \"limited\"\nupstreams = [\"a\"]\nfallback = [\"b\"]\n";
    let a = "daily_limit = 1\nmonthly_limit = 2\nlimits_timezone = \"Europe/Berlin\"\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config([a, "", ""], routes))
        .clock(clock.clone())
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let mut sent = 0;

    send_one(&phones, &broker, &mut esme, &mut sent, "one", [1, 0, 0]).await;
    let reason = over_limit_reason(&broker, "a").await;
    assert_eq!(
        reason,
        "daily_limit 1 reached; counts again from 2026-12-16T00:00:00+01:00[Europe/Berlin]"
    );
    send_one(&phones, &broker, &mut esme, &mut sent, "to b", [1, 1, 0]).await;

    // Midnight in Berlin, still the 15th in UTC: a new day for a.
    advance_to(&clock, "2026-12-15T23:10:00Z");
    until_state(&broker, "a", "sending").await;
    send_one(&phones, &broker, &mut esme, &mut sent, "two", [2, 1, 0]).await;
    let metrics = broker.metrics_text().await;
    assert_metric(
        &metrics,
        "smpp_broker_upstream_limit_remaining{upstream=\"a\",period=\"month\"} 0",
    );

    // The next day: the day's limit has room, the month's has none.
    advance_to(&clock, "2026-12-16T23:10:00Z");
    let reason = over_limit_reason(&broker, "a").await;
    assert_eq!(
        reason,
        "monthly_limit 2 reached; counts again from 2027-01-01T00:00:00+01:00[Europe/Berlin]"
    );
    broker
        .until_metric("smpp_broker_upstream_limit_remaining{upstream=\"a\",period=\"day\"} 1")
        .await;
    send_one(
        &phones,
        &broker,
        &mut esme,
        &mut sent,
        "to b again",
        [2, 2, 0],
    )
    .await;

    // The new year in Berlin.
    advance_to(&clock, "2026-12-31T23:10:00Z");
    until_state(&broker, "a", "sending").await;
    send_one(&phones, &broker, &mut esme, &mut sent, "three", [3, 2, 0]).await;

    let ms = |at: &str| at.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let a_counts: Vec<(String, String, i64, i64)> = usage_counts(&broker)
        .await
        .into_iter()
        .filter(|(upstream, ..)| upstream == "a")
        .collect();
    let expected = [
        ("day", "2026-12-14T23:00:00Z", 1),
        ("day", "2026-12-15T23:00:00Z", 1),
        ("day", "2026-12-31T23:00:00Z", 1),
        ("month", "2026-11-30T23:00:00Z", 2),
        ("month", "2026-12-31T23:00:00Z", 1),
    ]
    .map(|(period, starts, parts)| ("a".to_owned(), period.to_owned(), ms(starts), parts));
    assert_eq!(a_counts, expected);
}

#[tokio::test]
async fn the_parts_counted_today_survive_a_restart() {
    let phones = Phones::start().await;
    let clock = ManualClock::new(late_on_the_15th());
    let routes = "[[routes]]\nname = \"limited\"\nupstreams = [\"a\"]\nfallback = [\"b\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["daily_limit = 2\n", "", ""], routes))
        .clock(clock.clone())
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let mut sent = 0;
    send_one(&phones, &broker, &mut esme, &mut sent, "one", [1, 0, 0]).await;
    send_one(&phones, &broker, &mut esme, &mut sent, "two", [2, 0, 0]).await;
    drop(esme);

    let broker = broker.restart().await;
    assert_eq!(
        readyz(&broker).await["upstreams"]["a"]["state"],
        "over_limit",
        "the new instance read the day's count"
    );
    let mut esme = bound(&broker, "acme", "acme1234").await;
    send_one(&phones, &broker, &mut esme, &mut sent, "three", [2, 1, 0]).await;
    assert_metric(
        &broker.metrics_text().await,
        "smpp_broker_upstream_limit_remaining{upstream=\"a\",period=\"day\"} 0",
    );
}

#[tokio::test]
async fn sticky_moves_only_the_recipients_of_a_member_that_drops_out() {
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\nsticky = true\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let recipient = |r: usize| format!("4917688{r:05}");
    let round = |n: usize| (0..30).map(move |r| to(&recipient(r), &format!("round {n} to {r}")));
    // recipient (as the phones see it) → member, for the messages of one round
    let members_of = |ids: &[String]| -> BTreeMap<String, &'static str> {
        let wanted: BTreeSet<&String> = ids.iter().collect();
        let mut members = BTreeMap::new();
        for (name, fake) in phones.all() {
            for accepted in fake.accepted() {
                if wanted.contains(&accepted.id) {
                    members.insert(accepted.phone_numbers.concat(), name);
                }
            }
        }
        members
    };

    let first = submit_all(&mut esme, round(0)).await;
    phones.until_accepted(&broker, 30).await;
    let before = members_of(&first);
    assert!(
        before.values().any(|m| *m == "a"),
        "a has recipients: {before:?}"
    );

    // a refuses the broker: its recipients move, nobody else's does.
    phones.a.fail_every(1, Fault::Unauthorized);
    let second = submit_all(&mut esme, round(1)).await;
    let holders = phones.until_accepted(&broker, 60).await;
    let ids: Vec<String> = first.iter().chain(&second).cloned().collect();
    each_at_one(&holders, &ids);
    let after = members_of(&second);
    assert_eq!(after.len(), 30);
    for (recipient, was) in &before {
        let now = after[recipient];
        if *was == "a" {
            assert_ne!(now, "a", "{recipient}");
        } else {
            assert_eq!(now, *was, "{recipient} moved although {was} is up");
        }
    }
}

#[tokio::test]
async fn submit_multi_routes_each_destination_on_its_own() {
    use smpp_broker::smpp::pdu::{Body, MultiDest, SubmitMulti};
    let phones = Phones::start().await;
    let routes = "[[routes]]\nname = \"de\"\nprefix = \"+49\"\nupstreams = [\"a\"]\n\
                  [[routes]]\nname = \"fr\"\nprefix = \"+33\"\nupstreams = [\"b\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config(["", "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let multi = SubmitMulti {
        dests: ["4930123456", "1555123456", "33612345678"]
            .map(|d| MultiDest::Sme(Address::new(1, 1, d)))
            .to_vec(),
        sm: sm(0, 0, b"to many"),
    };
    let resp = esme.request(Body::SubmitMulti(multi)).await;
    assert!(resp.command_status.is_ok(), "{resp:?}");
    let Body::SubmitMultiResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.unsuccess.len(), 1, "{r:?}");
    assert_eq!(r.unsuccess[0].dest.addr, "1555123456");
    assert_eq!(
        r.unsuccess[0].error_status_code,
        CommandStatus::ESME_RINVDSTADR.0
    );
    let first: i64 = r.message_id.parse().expect("a numeric message_id");
    let ids = [first.to_string(), (first + 1).to_string()];
    let holders = phones.until_accepted(&broker, 2).await;
    let at = each_at_one(&holders, &ids);
    assert_eq!((at[&ids[0]], at[&ids[1]]), ("a", "b"));
    let routes: Vec<String> = broker
        .db()
        .outbox()
        .await
        .into_iter()
        .map(|r| r.route)
        .collect();
    assert_eq!(routes, ["de", "fr"]);
}

/// A broker with the pool [a, b, c] (the round robin starts at a), a's own
/// `a_keys`, and one message submitted; returns its id.
async fn one_message_through_the_pool(phones: &Phones, a_keys: &str) -> (TestBroker, String) {
    let routes = "[[routes]]\nname = \"all\"\nupstreams = [\"a\", \"b\", \"c\"]\n";
    let broker = TestBroker::builder()
        .accounts(&phones.config([a_keys, "", ""], routes))
        .start()
        .await;
    let mut esme = bound(&broker, "acme", "acme1234").await;
    let id = submit_ok(&mut esme, to("4917600004", "one message")).await;
    (broker, id)
}

#[tokio::test]
async fn a_503_moves_the_message_at_once_while_the_member_cools_down() {
    let phones = Phones::start().await;
    phones.a.push_faults([Fault::QueueLimits]);
    // a's cool-down outlasts the test.
    let (broker, id) = one_message_through_the_pool(&phones, "retry_schedule = [\"60s\"]\n").await;
    let holders = phones.until_accepted(&broker, 1).await;
    let at = each_at_one(&holders, std::slice::from_ref(&id))[&id];
    assert_ne!(at, "a");
    assert_eq!(phones.a.post_count(), 1);
    let row = broker.db().outbox_row(&id).await;
    assert_eq!(row.upstream.as_deref(), Some(at), "{row:?}");
    let cooling = until_state(&broker, "a", "cooling_down").await;
    let reason = cooling["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("HTTP 503"), "{cooling}");
    assert!(cooling["until_ms"].is_i64(), "{cooling}");
}

#[tokio::test]
async fn a_server_error_sends_the_message_back_to_the_same_member_only() {
    let phones = Phones::start().await;
    // A 500 may come after the message was stored: only a may be asked again.
    phones
        .a
        .push_faults([Fault::ServerError, Fault::ServerError]);
    let (broker, id) = one_message_through_the_pool(&phones, "").await;
    let holders = phones.until_accepted(&broker, 1).await;
    assert_eq!(each_at_one(&holders, std::slice::from_ref(&id))[&id], "a");
    assert_eq!(phones.a.post_count(), 3);
    assert_eq!(phones.b.post_count() + phones.c.post_count(), 0);
    let row = broker.db().outbox_row(&id).await;
    assert_eq!(
        (row.upstream.as_deref(), row.attempts),
        (Some("a"), 3),
        "{row:?}"
    );
}

#[tokio::test]
async fn a_final_rejection_is_not_tried_at_another_member() {
    let phones = Phones::start().await;
    phones
        .a
        .push_faults([Fault::BadRequest("invalid phone number".into())]);
    let (broker, id) = one_message_through_the_pool(&phones, "").await;
    let row = eventually(PATIENCE, "the message is rejected", || async {
        let row = broker.db().outbox_row(&id).await;
        if row.state == OutboxState::Done {
            Ok(row)
        } else {
            Err(row)
        }
    })
    .await;
    assert_eq!(
        row.last_error.as_deref(),
        Some("HTTP 400: invalid phone number")
    );
    assert_eq!(row.upstream.as_deref(), Some("a"), "{row:?}");
    let messages = broker.db().messages().await;
    assert_eq!(
        messages[0].state,
        smpp_broker::store::MessageState::Rejected
    );
    assert_eq!(phones.a.post_count(), 1);
    assert_eq!(phones.b.post_count() + phones.c.post_count(), 0);
    assert!(phones.holders().is_empty());
}
