//! A bound smpplib session: malformed PDUs, enquire_link both ways, inactivity,
//! the broker's unbind at shutdown, and throttling.

use std::time::Duration;

use super::*;

#[tokio::test]
async fn smpplib_unknown_command_id_gets_generic_nack_and_the_session_goes_on() {
    let broker = TestBroker::builder().start().await;
    let t = run("unknown_command", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    let nack = t.response("unknown", "generic_nack", ESME_RINVCMDID);
    t.check(nack.int("sequence") == 77, "the nack echoes sequence 77");
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_truncated_body_gets_rinvcmdlen_and_the_session_goes_on() {
    let broker = TestBroker::builder().start().await;
    let t = run("truncated_body", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    t.response("truncated submit_sm", "submit_sm_resp", ESME_RINVCMDLEN);
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_oversized_command_length_gets_generic_nack_then_close() {
    let broker = TestBroker::builder().start().await;
    let t = run("oversized_length", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    let nack = t.response("oversized", "generic_nack", ESME_RINVCMDLEN);
    t.check(nack.int("sequence") == 9, "the nack echoes sequence 9");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_enquire_link_both_ways() {
    // The broker pings every 300 ms and gives up 1 s after an unanswered ping:
    // three pings answered by smpplib's read_once keep the session alive.
    let broker = TestBroker::builder()
        .smpp("enquire_link_interval = \"300ms\"\nresponse_timeout = \"1s\"")
        .start()
        .await;
    let t = run("enquire_link", broker.addr(), &["3"]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    t.assert_enquire_links_answered();
    let pings: Vec<&Event> = t
        .events
        .iter()
        .filter(|e| e.is("recv") && e.str("command") == "enquire_link")
        .collect();
    t.check(
        pings.len() >= 3,
        "smpplib received the broker's enquire_links",
    );
    for ping in &pings {
        let sequence = ping.int("sequence");
        t.check(
            (1..=0x7FFF_FFFF).contains(&sequence),
            format_args!("server sequence numbers are 1..=0x7FFFFFFF: {}", ping.line),
        );
        t.check(
            t.count(|e| {
                e.is("send")
                    && e.str("command") == "enquire_link_resp"
                    && e.int("sequence") == sequence
                    && e.int("status") == ESME_ROK
            }) == 1,
            format_args!("smpplib answered the ping with sequence {sequence}"),
        );
    }
    t.response("unbind", "unbind_resp", ESME_ROK);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_inactivity_gets_an_unbind_then_the_connection_closes() {
    let broker = TestBroker::builder().smpp("enquire_link_interval = \"1h\"\ninactivity_timeout = \"300ms\"\nresponse_timeout = \"300ms\"").start()
    .await;
    let t = run("inactivity", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    let unbinds = t.count(|e| e.is("recv") && e.str("command") == "unbind");
    t.check(unbinds == 1, "smpplib received one unbind from the broker");
    t.check(
        t.count(|e| e.is("send") && e.str("command") == "unbind_resp") == 0,
        "smpplib 2.2.4 does not answer a server unbind",
    );
    let closed = t.assert_closed("esme");
    t.check(
        closed.int("after_ms") < 5_000,
        "closed after inactivity_timeout + response_timeout, not much later",
    );
    broker.wait_until_no_sessions("demo").await;
}

#[tokio::test]
async fn smpplib_server_unbind_at_shutdown_unanswered_still_closes_and_shutdown_completes() {
    let broker = TestBroker::builder()
        .smpp("response_timeout = \"300ms\"")
        .start()
        .await;
    let (t, took) = smpplib(None)
        .start("server_unbind", broker.addr(), &[])
        .finish_under_shutdown(broker.broker)
        .await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    t.check(
        t.count(|e| e.is("recv") && e.str("command") == "unbind") == 1,
        "smpplib received the broker's unbind",
    );
    t.check(
        t.count(|e| e.is("send") && e.str("command") == "unbind_resp") == 0,
        "smpplib 2.2.4 does not answer a server unbind",
    );
    t.assert_closed("esme");
    // Had the broker waited for the unanswered unbind until shutdown_timeout (10 s),
    // this would take longer; response_timeout (300 ms) is what bounds it.
    t.check(
        took < Duration::from_secs(5),
        format_args!(
            "shutdown took {took:?}: the unanswered unbind is bounded by response_timeout"
        ),
    );
}

#[tokio::test]
async fn smpplib_submits_above_the_account_rate_are_throttled() {
    let broker = TestBroker::builder().start().await;
    let t = run("throttle", broker.addr(), &["20"]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    let responses = t.responses("submit_sm");
    t.check(responses.len() == 20, "every submit_sm is answered");
    let throttled = responses
        .iter()
        .filter(|e| e.int("status") == ESME_RTHROTTLED)
        .count();
    // Anything not throttled must be accepted with a message_id.
    let admitted: Vec<&str> = responses
        .iter()
        .filter(|e| e.int("status") != ESME_RTHROTTLED)
        .map(|e| t.accepted(e))
        .collect();
    let admitted = admitted.len();
    t.check(
        admitted >= 5,
        format_args!("the first second's budget is admitted ({admitted})"),
    );
    t.check(
        throttled >= 10,
        format_args!("the excess is throttled ({throttled})"),
    );
    t.assert_unbound("esme");
}
