//! A flood of refused submits is summed up in the log: the account's first
//! refusal at once, the rest in one line per 10 s with their count and reasons.

use std::time::Duration;

use smpp_broker::clock::ManualClock;
use smpp_broker::smpp::pdu::{Body, CommandStatus, Pdu};
use testkit::logs::Captured;
use testkit::sms::{bound, sm, submit_ok};
use testkit::{eventually, TestBroker, PATIENCE};

/// How many ERROR lines the SMPP side wrote (the store's own are not counted).
fn smpp_errors(logs: &Captured) -> usize {
    logs.lines()
        .iter()
        .filter(|line| line["level"] == "ERROR")
        .filter(|line| {
            line["target"]
                .as_str()
                .unwrap()
                .starts_with("smpp_broker::smpp")
        })
        .count()
}

/// The "requests refused" lines: (level, system_id, refused, reasons).
fn refusal_lines(logs: &Captured) -> Vec<(String, String, u64, String)> {
    logs.with_message("requests refused")
        .into_iter()
        .map(|line| {
            let field = |name: &str| line["fields"][name].as_str().unwrap_or("").to_owned();
            let refused = line["fields"]["refused"].as_u64().unwrap();
            let level = line["level"].as_str().unwrap().to_owned();
            (level, field("system_id"), refused, field("reasons"))
        })
        .collect()
}

/// Checks an ERROR line's account and count; its reasons.
fn expect_line<'a>(
    line: &'a (String, String, u64, String),
    system_id: &str,
    refused: u64,
) -> &'a str {
    let (level, id, count, reasons) = line;
    assert_eq!(
        (level.as_str(), id.as_str(), *count),
        ("ERROR", system_id, refused)
    );
    reasons
}

// A current-thread runtime: the broker's tasks log on this thread, into `logs`.
#[tokio::test]
async fn a_flood_of_refused_submits_is_one_line_per_account_per_10_seconds() {
    let (logs, _logging) = testkit::logs::capture();

    // A short busy_timeout, so a lock held elsewhere fails each write quickly.
    let clock = ManualClock::new(1_767_225_600_000);
    let broker = TestBroker::builder()
        .edit(|s| s.store.busy_timeout = Duration::from_millis(100))
        .clock(clock.clone())
        .start()
        .await;
    let mut esme = bound(&broker, "demo", "demo1234").await;
    submit_ok(&mut esme, sm(0, 0, b"before the fault")).await;

    // An operator's sqlite3 holding a write transaction while 20 submits come.
    let intruder = broker.db().hold_write_lock().await;
    for sequence in 100..120 {
        let submit = Body::SubmitSm(sm(0, 0, b"refused"));
        esme.send(&Pdu::new(sequence, submit)).await;
    }
    for _ in 0..20 {
        let resp = esme.recv_some().await;
        assert_eq!(resp.command_status, CommandStatus::ESME_RSYSERR, "{resp:?}");
    }
    intruder.release().await;

    assert_eq!(smpp_errors(&logs), 1, "not one line per refused submit");
    let lines = refusal_lines(&logs);
    assert_eq!(lines.len(), 1, "only the first refusal at once: {lines:?}");
    let reasons = expect_line(&lines[0], "demo", 1);
    assert!(reasons.starts_with("database error ("), "{reasons}");

    // Ten seconds on, one line sums up the other 19.
    clock.advance_ms(10_000);
    eventually(PATIENCE, "a summary line", || async {
        (refusal_lines(&logs).len() >= 2).then_some(())
    })
    .await;
    let lines = refusal_lines(&logs);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let reasons = expect_line(&lines[1], "demo", 19);
    assert!(reasons.ends_with(" x19"), "{reasons}");
}
