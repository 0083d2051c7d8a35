//! The HTTP port's limits against clients that hold connections: a head that
//! never completes, a body that stalls, a body too large for a webhook, a
//! kept-alive connection left idle, and more connections than
//! http.max_connections. Raw TCP clients, a real broker on port 0.

use std::time::Duration;

use smpp_broker::config::HttpSettings;
use testkit::{TestBroker, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Timeouts long enough never to fire in a test unless it sets them short.
const NEVER: Duration = Duration::from_secs(600);

/// A test broker whose [http] limits `limits` sets, starting from timeouts that
/// never fire.
async fn broker_with(limits: impl Fn(&mut HttpSettings) + Send + Sync + 'static) -> TestBroker {
    TestBroker::builder()
        .edit(move |settings| {
            settings.http.header_read_timeout = NEVER;
            settings.http.body_read_timeout = NEVER;
            settings.http.idle_timeout = NEVER;
            limits(&mut settings.http);
            settings.validate().expect("valid limits");
        })
        .start()
        .await
}

async fn connect(broker: &TestBroker) -> TcpStream {
    TcpStream::connect(broker.http_addr()).await.unwrap()
}

async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n";

/// Reads until the broker closes the connection (EOF or reset); how long that
/// took and what came before. Panics when it stays open for `PATIENCE`.
async fn wait_closed(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(start + PATIENCE, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {PATIENCE:?}; received {:?}",
                String::from_utf8_lossy(&received)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (start.elapsed(), received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// One response: its status line and body.
async fn read_response(stream: &mut TcpStream) -> (String, String) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = String::from_utf8_lossy(&received).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            // An interim 100 Continue has no body and is followed by nothing yet.
            if body.len() >= length {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return (status, body[..length].to_owned());
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text:?}");
        received.extend_from_slice(&buf[..n]);
    }
}

/// A connection whose webhook request the broker is inside, reading its 2-byte
/// body (the 100 Continue says so), which the test sends when it likes.
async fn webhook_awaiting_its_body(broker: &TestBroker) -> TcpStream {
    let mut client = connect(broker).await;
    send(
        &mut client,
        b"POST /webhooks/phone HTTP/1.1\r\nHost: broker\r\nContent-Length: 2\r\n\
          Expect: 100-continue\r\n\r\n",
    )
    .await;
    let mut interim = [0u8; 25];
    tokio::time::timeout(PATIENCE, client.read_exact(&mut interim))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client
}

#[tokio::test]
async fn a_head_not_complete_within_header_read_timeout_is_closed() {
    let broker = broker_with(|http| http.header_read_timeout = Duration::from_secs(1)).await;
    let opened = Instant::now();
    let mut silent = connect(&broker).await;
    // A byte every 100 ms does not keep the connection: the head has 1 s in all.
    let mut trickling = connect(&broker).await;
    let head = b"GET /healthz HTTP/1.1\r\nHost: broker\r\nX-Slow: ".to_vec();
    let (mut reading, mut writing) = trickling.split();
    let trickle = async {
        for byte in head.iter().cycle() {
            if writing.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let closed = async {
        let start = Instant::now();
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(PATIENCE, reading.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the trickling connection is still open: {read:?}"
        );
        start.elapsed()
    };
    let trickled_for = tokio::select! {
        elapsed = closed => elapsed,
        _ = trickle => panic!("the trickle ended on its own"),
    };
    assert!(
        trickled_for >= Duration::from_millis(900),
        "{trickled_for:?}"
    );

    let (_, received) = wait_closed(&mut silent).await;
    assert!(received.is_empty(), "no answer to a head that never came");
    assert!(opened.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_the_connection_is_closed() {
    let broker = broker_with(|http| http.body_read_timeout = Duration::from_secs(1)).await;
    let mut client = connect(&broker).await;
    let start = Instant::now();
    send(
        &mut client,
        b"POST /webhooks/phone HTTP/1.1\r\nHost: broker\r\nContent-Length: 60000\r\n\r\n{\"event\":",
    )
    .await;
    let (status, body) = read_response(&mut client).await;
    assert!(status.starts_with("HTTP/1.1 408"), "{status} {body}");
    assert!(body.contains("http.body_read_timeout"), "{body}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    wait_closed(&mut client).await;
}

#[tokio::test]
async fn a_body_over_max_body_size_gets_413() {
    // The default limit: 64 KiB, a webhook is a few.
    let broker = broker_with(|_| {}).await;
    let url = format!("http://{}/webhooks/phone", broker.http_addr());
    let client = reqwest::Client::new();
    let post = |body: reqwest::Body| client.post(&url).body(body).send();

    let declared = post(vec![b' '; 65_537].into()).await.unwrap();
    assert_eq!(declared.status(), 413);
    assert!(declared
        .text()
        .await
        .unwrap()
        .contains("http.max_body_size"));

    // Without a Content-Length, counted as it arrives.
    let mut chunked = connect(&broker).await;
    let mut request =
        b"POST /webhooks/phone HTTP/1.1\r\nHost: broker\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    for _ in 0..9 {
        request.extend_from_slice(b"2000\r\n");
        request.extend_from_slice(&[b' '; 8 * 1024]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    send(&mut chunked, &request).await;
    let (status, _) = read_response(&mut chunked).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");

    // At the limit the body is read (and this upstream is unknown).
    let at_limit = post(vec![b' '; 65_536].into()).await.unwrap();
    assert_eq!(at_limit.status(), 404);
}

#[tokio::test]
async fn a_kept_alive_connection_without_a_request_for_idle_timeout_is_closed() {
    let broker = broker_with(|http| http.idle_timeout = Duration::from_secs(1)).await;
    let mut idle = connect(&broker).await;
    send(&mut idle, HEALTHZ).await;
    assert!(read_response(&mut idle).await.0.starts_with("HTTP/1.1 200"));

    // A connection used every 300 ms for 2 s is never idle that long: it stays.
    let mut busy = connect(&broker).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        send(&mut busy, HEALTHZ).await;
        assert!(read_response(&mut busy).await.0.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let (waited, received) = wait_closed(&mut idle).await;
    assert!(received.is_empty());
    assert!(start.elapsed() + waited >= Duration::from_millis(900));
}

#[tokio::test]
async fn at_max_connections_the_longest_waiting_connection_makes_room_for_healthz() {
    let broker = broker_with(|http| http.max_connections = 4).await;
    // Four slow clients, each stuck in its head, fill the cap.
    let mut slow = Vec::new();
    for _ in 0..4 {
        let mut client = connect(&broker).await;
        send(&mut client, b"GET /healthz HTTP/1.1\r\nHost: ").await;
        slow.push(client);
    }
    let mut health = connect(&broker).await;
    send(&mut health, HEALTHZ).await;
    let (status, body) = read_response(&mut health).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, "ok\n");

    // The first slow client made room; the others are served when they finish.
    let (_, received) = wait_closed(&mut slow[0]).await;
    assert!(received.is_empty());
    for client in &mut slow[1..] {
        send(client, b"broker\r\n\r\n").await;
        assert!(read_response(client).await.0.starts_with("HTTP/1.1 200"));
    }
}

#[tokio::test]
async fn at_max_connections_with_every_connection_inside_a_request_a_new_one_is_refused() {
    let broker = broker_with(|http| http.max_connections = 2).await;
    // Two webhooks whose bodies are awaited.
    let mut posting = Vec::new();
    for _ in 0..2 {
        posting.push(webhook_awaiting_its_body(&broker).await);
    }

    // Nothing to take the place of: the third is closed without an answer.
    let mut third = connect(&broker).await;
    let _ = third.write_all(HEALTHZ).await;
    let (_, received) = wait_closed(&mut third).await;
    assert!(
        received.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&received)
    );

    // The two in progress were not disturbed.
    for client in &mut posting {
        send(client, b"{}").await;
        assert!(read_response(client).await.0.starts_with("HTTP/1.1 404"));
    }
    // Now idle, they make room again.
    let mut health = connect(&broker).await;
    send(&mut health, HEALTHZ).await;
    assert!(read_response(&mut health)
        .await
        .0
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn shutdown_answers_a_request_in_progress_and_does_not_wait_for_slow_or_idle_clients() {
    let broker = broker_with(|_| {}).await;
    let mut slow = connect(&broker).await;
    send(&mut slow, b"GET /healthz HTTP/1.1\r\nHost: ").await;
    let mut idle = connect(&broker).await;
    send(&mut idle, HEALTHZ).await;
    assert!(read_response(&mut idle).await.0.starts_with("HTTP/1.1 200"));
    let mut posting = webhook_awaiting_its_body(&broker).await;

    let stopping = tokio::spawn(broker.broker.shutdown());
    wait_closed(&mut slow).await;
    wait_closed(&mut idle).await;
    // The webhook in progress still gets its answer, then the connection closes.
    send(&mut posting, b"{}").await;
    assert!(read_response(&mut posting)
        .await
        .0
        .starts_with("HTTP/1.1 404"));
    wait_closed(&mut posting).await;
    // Well before shutdown_timeout + response_timeout (20 s) would give up.
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stopped without waiting for the slow client")
        .unwrap();
}
