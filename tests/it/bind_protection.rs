//! The failed-bind back-off against parallel binds, on tokio's paused clock:
//! sessions run over in-memory pipes with the peer address each test gives, and
//! every delay is observed at its exact configured moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smpp_broker::smpp::pdu::{Bind, BindKind, Body, CommandStatus, Pdu};
use smpp_broker::smpp::session::{run_session, SessionContext};
use testkit::{Esme, TestBroker};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::session_only;

/// A broker's session context with a 1 s failed-bind delay, at most 16 s.
fn context() -> Arc<SessionContext> {
    let (_dir, mut settings) = TestBroker::builder().settings();
    settings.smpp.failed_bind_delay = Duration::from_secs(1);
    settings.smpp.failed_bind_delay_max = Duration::from_secs(16);
    session_only::context(&settings, CancellationToken::new())
}

/// Binds as demo from `peer` on a session of its own; the status and when the
/// answer came, counted from `start`.
async fn bind_from(
    ctx: &Arc<SessionContext>,
    peer: &str,
    password: &str,
    start: Instant,
) -> (CommandStatus, Duration) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = peer.parse().unwrap();
    tokio::spawn(run_session(server, peer, "test", Arc::clone(ctx)));
    let mut esme = Esme::over(client);
    let bind = Bind {
        system_id: "demo".into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    esme.send(&Pdu::new(1, Body::Bind(BindKind::Transceiver, bind)))
        .await;
    let resp = esme
        .recv_within(Duration::from_secs(3600))
        .await
        .expect("the bind is answered");
    (resp.command_status, start.elapsed())
}

/// `count` binds from `ip`, each on its own session and port, all at once.
fn binds_from(
    ctx: &Arc<SessionContext>,
    ip: &str,
    count: u16,
    password: &'static str,
    start: Instant,
) -> Vec<tokio::task::JoinHandle<(CommandStatus, Duration)>> {
    (0..count)
        .map(|i| {
            let ctx = Arc::clone(ctx);
            let peer = format!("{ip}:{}", 40000 + i);
            tokio::spawn(async move { bind_from(&ctx, &peer, password, start).await })
        })
        .collect()
}

fn seconds(delays: &[Duration]) -> Vec<f64> {
    delays.iter().map(Duration::as_secs_f64).collect()
}

#[tokio::test(start_paused = true)]
async fn parallel_wrong_binds_from_one_address_wait_as_sequential_ones_do() {
    let ctx = context();
    let start = Instant::now();
    let mut answered = Vec::new();
    for attempt in binds_from(&ctx, "192.0.2.1", 10, "wrong", start) {
        let (status, at) = attempt.await.unwrap();
        assert_eq!(status, CommandStatus::ESME_RBINDFAIL);
        answered.push(at);
    }
    answered.sort();
    // Each attempt counts the ones ahead of it, failed or still in flight.
    assert_eq!(
        seconds(&answered),
        [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 16.0, 16.0, 16.0, 16.0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_correct_bind_from_another_address_is_not_held_back() {
    let ctx = context();
    let start = Instant::now();
    let attacks = binds_from(&ctx, "192.0.2.1", 10, "wrong", start);
    // Half a second in, while most of the attempts above wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, at) = bind_from(&ctx, "198.51.100.7:40000", "demo1234", start).await;
    assert_eq!(status, CommandStatus::ESME_ROK);
    assert_eq!(at, Duration::from_millis(500), "answered at once");
    for attack in attacks {
        attack.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn parallel_correct_binds_from_one_address_all_go_at_once() {
    let ctx = context();
    let start = Instant::now();
    for bind in binds_from(&ctx, "192.0.2.9", 5, "demo1234", start) {
        // Any that waited behind the first is released by its success.
        assert_eq!(
            bind.await.unwrap(),
            (CommandStatus::ESME_ROK, Duration::ZERO)
        );
    }
}
