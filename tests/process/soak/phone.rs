//! The soak's phone: it delivers what the fake accepted and reports each delivery
//! by webhook until the broker commits it.

use std::collections::VecDeque;

use futures::StreamExt;

use super::*;

/// What the phone did.
#[derive(Default)]
pub(super) struct Phone {
    /// Messages whose sms:delivered webhook the broker answered with a 2xx.
    pub(super) reported: HashSet<String>,
    /// POSTs that got no 2xx and were repeated, by what they got instead: a
    /// status code, or "no answer" (the broker was down or restarting).
    pub(super) repeated_posts: std::collections::BTreeMap<String, usize>,
}

/// How long the phone takes to deliver the `index`th message it took. Most take a
/// while, so that after a kill the broker sends again (and meets 409) before the
/// report comes; every fourth is delivered at once, so that its report may come
/// before the broker recorded the 202.
fn delivery_time(index: usize) -> Duration {
    if index.is_multiple_of(4) {
        Duration::ZERO
    } else {
        Duration::from_millis(400)
    }
}

/// The phone: everything the fake accepted is delivered (see `delivery_time`),
/// and reported to the current instance by an sms:delivered webhook, again and
/// again until a 2xx says the broker committed it.
pub(super) async fn phone(fake: FakeSmsGate, addrs: watch::Receiver<Addrs>, shared: Arc<Shared>) {
    let quit = &shared.quit;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut seen = 0;
    // (when the phone will have delivered it, the message)
    let mut in_transit: Vec<(Instant, String)> = Vec::new();
    let mut to_report: VecDeque<String> = VecDeque::new();
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !quit.is_cancelled() {
        for message in fake.accepted_from(seen) {
            in_transit.push((Instant::now() + delivery_time(seen), message.id));
            seen += 1;
        }
        let now = Instant::now();
        let (delivered, later) = in_transit.drain(..).partition(|(at, _)| *at <= now);
        in_transit = later;
        for (_, id) in delivered {
            fake.set_state(&id, "Delivered", None);
            to_report.push_back(id);
        }
        let http = addrs.borrow().http;
        let batch: Vec<String> = to_report.drain(..).collect();
        let posts = batch.into_iter().map(|id| {
            let client = client.clone();
            async move {
                let delivered_at = smpp_broker::time::format_rfc3339(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis() as i64,
                );
                let body = serde_json::json!({"event": "sms:delivered",
                    "payload": {"messageId": id, "deliveredAt": delivered_at}});
                let answer = client
                    .post(format!("http://{http}/webhooks/phone"))
                    .body(body.to_string())
                    .send()
                    .await;
                let refusal = match answer {
                    Ok(a) if a.status().is_success() => None,
                    Ok(a) => Some(a.status().as_u16().to_string()),
                    Err(_) => Some("no answer".to_owned()),
                };
                (id, refusal)
            }
        });
        let mut answers = futures::stream::iter(posts).buffer_unordered(PHONE_PARALLEL);
        while let Some((id, refusal)) = answers.next().await {
            if let Some(refusal) = refusal {
                *shared
                    .phone
                    .lock()
                    .unwrap()
                    .repeated_posts
                    .entry(refusal)
                    .or_default() += 1;
                to_report.push_back(id);
            } else {
                shared.phone.lock().unwrap().reported.insert(id);
                shared.events.webhook_answered.notify_waiters();
            }
        }
        tokio::select! {
            _ = quit.cancelled() => return,
            _ = ticker.tick() => {}
        }
    }
}
