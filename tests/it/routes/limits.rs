//! Carrier limits: parts counted per day and month in the member's time zone,
//! a member over its limit skipped until the period turns, counts kept across
//! a restart.

use super::*;

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
