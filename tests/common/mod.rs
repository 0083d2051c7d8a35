//! Shared test support: a broker on 127.0.0.1 port 0 with a temporary database,
//! and a minimal ESME built on our codec that speaks raw PDUs.
#![allow(dead_code)]

pub mod fake_smsgate;
pub mod logs;
pub mod messages;
pub mod process;
pub mod script;
pub mod upstream_broker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::{Bind, BindKind, Body, CommandStatus, Pdu};
use smpp_broker::{Broker, Settings};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The accounts every test broker has. `demo` allows every bind type; `rxonly`
/// only receivers; `single` one session at a time; `slow` 5 submits per second.
pub const ACCOUNTS: &str = r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
# These tests look at messages waiting in the outbox; the dispatcher tests
# configure their own upstreams.
hold = true

[[accounts]]
system_id = "demo"
password = "demo1234"
upstream = "sandbox"
max_sessions = 2000

[[accounts]]
system_id = "rxonly"
password = "rx"
upstream = "sandbox"
bind_types = ["receiver"]

[[accounts]]
system_id = "single"
password = "single"
upstream = "sandbox"
max_sessions = 1

[[accounts]]
system_id = "tiny"
password = "tiny"
upstream = "sandbox"
max_queued = 3

[[accounts]]
system_id = "slow"
password = "slow"
upstream = "sandbox"
throughput = 5
"#;

pub struct TestBroker {
    pub broker: Broker,
    pub dir: tempfile::TempDir,
}

/// A broker with a TLS listener whose self-signed "localhost" certificate is at
/// `cert_path` (PEM) and `cert_der`.
pub struct TlsTestBroker {
    pub broker: TestBroker,
    pub cert_path: PathBuf,
    pub cert_der: Vec<u8>,
    _certs: tempfile::TempDir,
}

pub async fn start_tls_broker(extra_smpp: &str) -> TlsTestBroker {
    let certs = tempfile::tempdir().expect("temp dir");
    let (cert_path, key_path, cert_der) = make_certificate(certs.path());
    let tls = format!(
        "[smpp.tls]\nbind = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    let broker = start_broker_with(extra_smpp, &tls).await;
    TlsTestBroker {
        broker,
        cert_path,
        cert_der,
        _certs: certs,
    }
}

impl TestBroker {
    pub fn addr(&self) -> SocketAddr {
        self.broker.smpp_addr()
    }
}

/// Builds settings for a test broker: loopback, port 0, a temporary database,
/// quick failed-bind back-off, plus `extra_smpp` lines inside `[smpp]` and
/// `extra` TOML after it.
pub fn test_settings(dir: &Path, extra_smpp: &str, extra: &str) -> Settings {
    let text = format!(
        r#"
[smpp]
bind = "127.0.0.1:0"
failed_bind_delay = "1ms"
failed_bind_delay_max = "10ms"
{extra_smpp}

{extra}

[http]
bind = "127.0.0.1:0"

[store]
path = "{db}"

{ACCOUNTS}
"#,
        db = dir.join("broker.db").display()
    );
    Settings::from_toml(&text, "test", std::iter::empty()).expect("test config is valid")
}

/// Asks the broker's store about each of demo's message_ids: known, with query_sm's
/// `state`, error_code 0, and a final time exactly when the state is final (not
/// ENROUTE, 1). Returns the final times.
pub async fn assert_stored(broker: &TestBroker, ids: &[&str], state: u8) -> Vec<Option<i64>> {
    let mut finals = Vec::new();
    for id in ids {
        let status = broker
            .broker
            .store()
            .query("demo", id, "")
            .await
            .expect("the store answers")
            .unwrap_or_else(|| panic!("the store knows message_id {id}"));
        assert_eq!(status.message_id, *id);
        assert_eq!(status.smpp_state, state, "message {id}: {status:?}");
        assert_eq!(status.error_code, 0, "message {id}: {status:?}");
        assert_eq!(
            status.final_at.is_some(),
            state != 1,
            "a final time only once final: {status:?}"
        );
        finals.push(status.final_at);
    }
    finals
}

/// POSTs an unsigned webhook event to the broker at `http_addr` for `upstream`;
/// returns the status code.
pub async fn post_event(http_addr: SocketAddr, upstream: &str, body: &serde_json::Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{http_addr}/webhooks/{upstream}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The broker's `GET /metrics` text.
/// The phone behind upstream `phone` reports `message_id` delivered (unsigned
/// webhooks: no signing_key).
pub async fn report_delivered(broker: &TestBroker, message_id: &str) {
    let body = serde_json::json!({"event": "sms:delivered", "payload": {"messageId": message_id,
        "deliveredAt": "2026-11-22T15:10:00.000Z"}});
    assert_eq!(
        post_event(broker.broker.http_addr(), "phone", &body).await,
        200
    );
}

pub async fn metrics_text(broker: &TestBroker) -> String {
    let url = format!("http://{}/metrics", broker.broker.http_addr());
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// Rows of a query on a test broker's database, each column as text (NULL as "").
pub async fn db_rows(dir: &Path, sql: &str) -> Vec<Vec<String>> {
    use sqlx::{Connection, Row, ValueRef};
    let url = format!("sqlite://{}?mode=ro", dir.join("broker.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open test database");
    let rows = sqlx::query(sql).fetch_all(&mut conn).await.expect("query");
    rows.iter()
        .map(|row| {
            (0..row.columns().len())
                .map(|i| {
                    let raw = row.try_get_raw(i).unwrap();
                    if raw.is_null() {
                        String::new()
                    } else if let Ok(text) = row.try_get::<String, _>(i) {
                        text
                    } else if let Ok(number) = row.try_get::<i64, _>(i) {
                        number.to_string()
                    } else {
                        format!("{:?}", row.try_get::<Vec<u8>, _>(i).unwrap_or_default())
                    }
                })
                .collect()
        })
        .collect()
}

pub async fn start_broker(extra_smpp: &str) -> TestBroker {
    start_broker_with(extra_smpp, "").await
}

/// A broker whose message times come from `clock`.
pub async fn start_broker_with_clock(
    clock: std::sync::Arc<dyn smpp_broker::clock::Clock>,
) -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = test_settings(dir.path(), "", "");
    let broker = Broker::start_with_clock(settings, clock)
        .await
        .expect("broker starts");
    TestBroker { broker, dir }
}

/// Stops the broker gracefully and starts a new one on the same database.
pub async fn restart(
    old: TestBroker,
    clock: std::sync::Arc<dyn smpp_broker::clock::Clock>,
) -> TestBroker {
    let TestBroker { broker, dir } = old;
    broker.shutdown().await;
    let settings = test_settings(dir.path(), "", "");
    let broker = Broker::start_with_clock(settings, clock)
        .await
        .expect("broker restarts");
    TestBroker { broker, dir }
}

pub async fn start_broker_with(extra_smpp: &str, extra: &str) -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = test_settings(dir.path(), extra_smpp, extra);
    let broker = Broker::start(settings).await.expect("broker starts");
    TestBroker { broker, dir }
}

/// Waits until the broker has let go of every session of `system_id` (a closed
/// connection is unregistered by its session task a moment after the close).
pub async fn wait_until_no_sessions(broker: &TestBroker, system_id: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !broker.broker.registry().sessions(system_id).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the broker still counts a session of {system_id}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A self-signed certificate for "localhost", written as PEM files into `dir`.
pub fn make_certificate(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path, cert.cert.der().to_vec())
}

/// A raw ESME over any stream.
pub struct Esme<S> {
    framed: Framed<S, SmppCodec>,
    next_sequence: u32,
}

impl Esme<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Esme<TcpStream> {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Esme::over(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Esme<S> {
    pub fn over(stream: S) -> Esme<S> {
        Esme {
            framed: Framed::new(stream, SmppCodec::new(1 << 20)),
            next_sequence: 1,
        }
    }

    pub fn next_sequence(&mut self) -> u32 {
        let seq = self.next_sequence;
        self.next_sequence += 1;
        seq
    }

    pub async fn send(&mut self, pdu: &Pdu) {
        self.framed.send(pdu).await.expect("send");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.expect("send raw");
        stream.flush().await.expect("flush");
    }

    /// The next PDU, or None when the broker closed the connection.
    pub async fn recv(&mut self) -> Option<Pdu> {
        self.recv_within(PATIENCE).await
    }

    /// Like `recv` with another limit (tests on paused time need long ones).
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Pdu> {
        let frame = tokio::time::timeout(limit, self.framed.next())
            .await
            .expect("broker answered in time");
        match frame {
            Some(Ok(Frame::Pdu(bytes))) => {
                Some(Pdu::decode(&bytes).expect("broker sent a valid PDU"))
            }
            Some(Ok(Frame::InvalidLength { command_length, .. })) => {
                panic!("broker sent command_length {command_length}")
            }
            Some(Err(_)) | None => None,
        }
    }

    pub async fn recv_some(&mut self) -> Pdu {
        self.recv().await.expect("a PDU, not a closed connection")
    }

    /// Sends a request and returns its response, answering what the broker asks
    /// in between: enquire_link, and deliver_sm (receipts), acknowledged as a real
    /// ESME would. Tests about receipts read them with `recv`.
    pub async fn request(&mut self, body: Body) -> Pdu {
        let seq = self.next_sequence();
        self.send(&Pdu::new(seq, body)).await;
        loop {
            let pdu = self.recv_some().await;
            if pdu.body == Body::EnquireLink {
                self.send(&Pdu::new(pdu.sequence_number, Body::EnquireLinkResp))
                    .await;
                continue;
            }
            if let Body::DeliverSm(_) = pdu.body {
                let ack = Body::DeliverSmResp(smpp_broker::smpp::pdu::MessageIdResp::default());
                self.send(&Pdu::new(pdu.sequence_number, ack)).await;
                continue;
            }
            assert_eq!(
                pdu.sequence_number, seq,
                "response echoes the sequence: {pdu:?}"
            );
            return pdu;
        }
    }

    pub async fn bind(&mut self, kind: BindKind, system_id: &str, password: &str) -> Pdu {
        self.bind_version(kind, system_id, password, 0x34).await
    }

    pub async fn bind_version(
        &mut self,
        kind: BindKind,
        system_id: &str,
        password: &str,
        version: u8,
    ) -> Pdu {
        let bind = Bind {
            system_id: system_id.into(),
            password: password.into(),
            interface_version: version,
            ..Bind::default()
        };
        self.request(Body::Bind(kind, bind)).await
    }

    pub async fn bind_ok(&mut self, kind: BindKind, system_id: &str, password: &str) {
        let resp = self.bind(kind, system_id, password).await;
        assert_eq!(
            resp.command_status,
            CommandStatus::ESME_ROK,
            "bind as {system_id}"
        );
    }

    /// Waits until the broker closes the connection, failing on any PDU but those allowed.
    pub async fn expect_closed(&mut self) {
        if let Some(pdu) = self.recv().await {
            panic!("expected the connection to close, got {pdu:?}");
        }
    }

    pub fn into_inner(self) -> S {
        self.framed.into_inner()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Esme<S> {
    /// Like `send`, but a broken connection is an answer (false), not a failure:
    /// for tests that kill the broker under a live session.
    pub async fn try_send(&mut self, pdu: &Pdu) -> bool {
        self.framed.send(pdu).await.is_ok()
    }
}

/// An operator's sqlite3 holding a write transaction on a test broker's database,
/// until [`release_write_lock`].
pub async fn hold_write_lock(dir: &Path) -> sqlx::SqliteConnection {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("broker.db").display());
    let mut intruder = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open test database");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut intruder)
        .await
        .expect("take the write lock");
    intruder
}

pub async fn release_write_lock(mut intruder: sqlx::SqliteConnection) {
    sqlx::query("ROLLBACK")
        .execute(&mut intruder)
        .await
        .expect("release the write lock");
}
