//! A receiver that stops reading: once the socket buffers are full, the broker's
//! writes wait at most response_timeout, then the session is closed and its
//! max_sessions slot is free again.

use smpp_broker::smpp::pdu::{BindKind, CommandStatus};
use smpp_broker::store::Incoming;
use smpp_broker::text::Content;
use smpp_broker::text::LongIncoming;
use testkit::{Esme, TestBroker};
use tokio::net::{TcpSocket, TcpStream};

/// A connection that buffers as little as the kernel allows on its side.
async fn connect_with_small_buffers(addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stops_reading_is_dropped_and_frees_its_slot() {
    let broker = TestBroker::builder()
        .smpp("response_timeout = \"1s\"\ndeliver_window = 1000")
        .edit(|settings| {
            for account in &mut settings.accounts {
                // Each incoming message in one deliver_sm (message_payload).
                account.long_incoming = LongIncoming::MessagePayload;
            }
        })
        .start()
        .await;
    // 100 incoming 8-bit messages of 60 KB each, all in the window at once: twice
    // what the socket buffers of both ends hold (the sender's grows to 4 MiB).
    let data = vec![0x5A; 60_000];
    let stored = (0..100).map(|i| {
        broker.broker.store().record_incoming(Incoming {
            system_id: "single".into(),
            source_addr: "6505551212".into(),
            dest_addr: "4915100000".into(),
            content: Content::Binary(data.clone()),
            dedupe_key: format!("stalled-{i}"),
        })
    });
    for new in futures::future::join_all(stored).await {
        assert!(new.expect("stored"));
    }

    let mut stalled = Esme::over(connect_with_small_buffers(broker.addr()).await);
    stalled
        .bind_ok(BindKind::Transceiver, "single", "single")
        .await;
    // From here on it reads nothing; the broker fills the buffers, its write
    // waits response_timeout, and it gives the session up.
    broker.wait_until_no_sessions("single").await;

    let mut next = Esme::connect(broker.addr()).await;
    let resp = next.bind(BindKind::Transceiver, "single", "single").await;
    assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
    drop(stalled);
}
