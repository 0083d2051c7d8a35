//! Session timers on tokio's paused clock: a session runs over an in-memory pipe,
//! time advances only when every task is idle, so each timer fires at its exact
//! configured moment and the test takes no wall-clock time.

use std::time::Duration;

use smpp_broker::smpp::pdu::{BindKind, Body, Pdu};
use smpp_broker::smpp::session::run_session;
use testkit::{Esme, TestBroker};
use tokio::io::DuplexStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::session_only;

const LONG: Duration = Duration::from_secs(24 * 3600);

/// A session with the default timers (30 s init, 30 s enquire_link, 10 s response,
/// 5 min inactivity) unless `extra_smpp` says otherwise.
fn session(
    extra_smpp: &str,
) -> (
    Esme<DuplexStream>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    session_with_buffer(extra_smpp, 64 * 1024)
}

/// Like `session`, over a pipe that holds `buffer` bytes each way.
fn session_with_buffer(
    extra_smpp: &str,
    buffer: usize,
) -> (
    Esme<DuplexStream>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (_dir, settings) = TestBroker::builder().smpp(extra_smpp).settings();
    let shutdown = CancellationToken::new();
    let ctx = session_only::context(&settings, shutdown.clone());
    let (client, server) = tokio::io::duplex(buffer);
    let task = tokio::spawn(run_session(
        server,
        "127.0.0.1:40000".parse().unwrap(),
        "test",
        ctx,
    ));
    (Esme::over(client), shutdown, task)
}

async fn closed_at(esme: &mut Esme<DuplexStream>, start: Instant) -> Duration {
    assert!(esme.recv_within(LONG).await.is_none(), "expected a close");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn session_init_timer_closes_an_unbound_connection_at_30s() {
    let start = Instant::now();
    let (mut esme, _, task) = session("");
    assert_eq!(closed_at(&mut esme, start).await, Duration::from_secs(30));
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn enquire_link_goes_out_after_30s_idle_and_an_answer_keeps_the_link() {
    let (mut esme, _, _task) = session("");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let bound_at = Instant::now();
    let ping = esme.recv_within(LONG).await.unwrap();
    assert_eq!(ping.body, Body::EnquireLink);
    assert_eq!(bound_at.elapsed(), Duration::from_secs(30));
    esme.send(&Pdu::new(ping.sequence_number, Body::EnquireLinkResp))
        .await;
    let answered_at = Instant::now();
    let next = esme.recv_within(LONG).await.unwrap();
    assert_eq!(next.body, Body::EnquireLink);
    assert_eq!(answered_at.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn traffic_from_the_esme_postpones_the_enquire_link() {
    let (mut esme, _, _task) = session("");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let resp = esme.request(Body::EnquireLink).await;
    assert_eq!(resp.body, Body::EnquireLinkResp);
    let last_traffic = Instant::now();
    let ping = esme.recv_within(LONG).await.unwrap();
    assert_eq!(ping.body, Body::EnquireLink);
    assert_eq!(last_traffic.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_enquire_link_closes_after_the_response_timeout() {
    let (mut esme, _, task) = session("");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let ping = esme.recv_within(LONG).await.unwrap();
    assert_eq!(ping.body, Body::EnquireLink);
    let sent_at = Instant::now();
    assert_eq!(closed_at(&mut esme, sent_at).await, Duration::from_secs(10));
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn inactivity_timer_unbinds_after_five_minutes_of_silence() {
    let (mut esme, _, task) = session("enquire_link_interval = \"1h\"");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let bound_at = Instant::now();
    let unbind = esme.recv_within(LONG).await.unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    assert_eq!(bound_at.elapsed(), Duration::from_secs(300));
    // Not answered: closed when the unbind's response timer runs out.
    assert_eq!(
        closed_at(&mut esme, bound_at).await,
        Duration::from_secs(310)
    );
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_unbind_resp_up_to_the_response_timeout() {
    let (mut esme, shutdown, task) = session("");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let start = Instant::now();
    shutdown.cancel();
    let unbind = esme.recv_within(LONG).await.unwrap();
    assert_eq!(unbind.body, Body::Unbind);
    assert_eq!(start.elapsed(), Duration::ZERO, "unbind goes out at once");
    assert_eq!(closed_at(&mut esme, start).await, Duration::from_secs(10));
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn server_sequence_numbers_are_fresh_for_each_request() {
    let (mut esme, _, _task) = session("enquire_link_interval = \"1s\"");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let ping = esme.recv_within(LONG).await.unwrap();
        assert_eq!(ping.body, Body::EnquireLink);
        assert!((1..=0x7FFF_FFFF).contains(&ping.sequence_number));
        assert!(!seen.contains(&ping.sequence_number));
        seen.push(ping.sequence_number);
        esme.send(&Pdu::new(ping.sequence_number, Body::EnquireLinkResp))
            .await;
    }
}

#[tokio::test(start_paused = true)]
async fn crossing_unbinds_both_get_answered() {
    let (mut esme, shutdown, task) = session("");
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    shutdown.cancel();
    let ours = esme.recv_within(LONG).await.unwrap();
    assert_eq!(ours.body, Body::Unbind);
    // The ESME unbinds at the same moment instead of answering first.
    esme.send(&Pdu::new(7, Body::Unbind)).await;
    let resp = esme.recv_within(LONG).await.unwrap();
    assert_eq!(resp, Pdu::new(7, Body::UnbindResp));
    esme.expect_closed().await;
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_reading_is_closed_after_the_response_timeout() {
    let (logs, _logging) = testkit::logs::capture();
    let (mut esme, _, task) = session_with_buffer("", 4096);
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    // 400 enquire_link and not one response read: the answers fill the pipe
    // back (4 KiB) and the broker's write waits.
    for sequence in 100..500 {
        esme.send(&Pdu::new(sequence, Body::EnquireLink)).await;
    }
    let stalled_at = Instant::now();
    tokio::time::timeout(LONG, task)
        .await
        .expect("the session ends")
        .unwrap();
    assert_eq!(stalled_at.elapsed(), Duration::from_secs(10));
    let warned = logs.with_message(
        "a write to the peer did not complete within response_timeout (it stopped reading): closing the session",
    );
    assert_eq!(warned.len(), 1);
    assert_eq!(warned[0]["level"], "WARN");
    assert_eq!(warned[0]["fields"]["system_id"], "demo");
    assert_eq!(warned[0]["fields"]["peer"], "127.0.0.1:40000");
}
