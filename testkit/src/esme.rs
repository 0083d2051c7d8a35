//! A minimal ESME built on the broker's own codec that speaks raw PDUs over any
//! stream. Tests use the methods that fail the test on anything unexpected;
//! smpp-bench uses the `try_` ones, which return errors instead.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use smpp_broker::smpp::codec::{Frame, SmppCodec};
use smpp_broker::smpp::pdu::{Bind, BindKind, Body, CommandStatus, MessageIdResp, Pdu};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use crate::PATIENCE;

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum EsmeError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("broker sent command_length {0}")]
    InvalidLength(u32),
    #[error("broker sent an undecodable PDU: {0:?}")]
    Undecodable(smpp_broker::smpp::pdu::DecodeError),
    #[error("broker closed the connection")]
    Closed,
}

/// A raw ESME over any stream.
pub struct Esme<S> {
    framed: Framed<S, SmppCodec>,
    next_sequence: u32,
}

impl Esme<TcpStream> {
    pub async fn connect(addr: SocketAddr) -> Esme<TcpStream> {
        Esme::try_connect(addr).await.expect("connect")
    }

    pub async fn try_connect(addr: SocketAddr) -> Result<Esme<TcpStream>, EsmeError> {
        Ok(Esme::over(TcpStream::connect(addr).await?))
    }

    /// This end's address: the peer the broker sees.
    pub fn local_addr(&self) -> SocketAddr {
        self.framed
            .get_ref()
            .local_addr()
            .expect("a connected socket has an address")
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

    /// Like `send`, but a broken connection is an answer, not a failure: for
    /// tests that kill the broker under a live session, and for the benchmarks.
    pub async fn try_send(&mut self, pdu: &Pdu) -> Result<(), EsmeError> {
        Ok(self.framed.send(pdu).await?)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let stream = self.framed.get_mut();
        stream.write_all(bytes).await.expect("send raw");
        stream.flush().await.expect("flush");
    }

    /// The next PDU, `Ok(None)` when the broker closed the connection; waits as
    /// long as it takes.
    pub async fn try_recv(&mut self) -> Result<Option<Pdu>, EsmeError> {
        match self.framed.next().await {
            Some(Ok(Frame::Pdu(bytes))) => Pdu::decode(&bytes)
                .map(Some)
                .map_err(EsmeError::Undecodable),
            Some(Ok(Frame::InvalidLength { command_length, .. })) => {
                Err(EsmeError::InvalidLength(command_length))
            }
            Some(Err(err)) => Err(err.into()),
            None => Ok(None),
        }
    }

    /// The next PDU, or None when the broker closed (or reset) the connection.
    pub async fn recv(&mut self) -> Option<Pdu> {
        self.recv_within(PATIENCE).await
    }

    /// Like `recv` with another limit (tests on paused time need long ones).
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Pdu> {
        let next = tokio::time::timeout(limit, self.try_recv())
            .await
            .expect("broker answered in time");
        match next {
            Ok(pdu) => pdu,
            Err(EsmeError::Io(_)) => None,
            Err(EsmeError::Undecodable(err)) => panic!("broker sent a valid PDU: {err:?}"),
            Err(err) => panic!("{err}"),
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
            if let Some(answer) = routine_answer(&pdu) {
                self.send(&answer).await;
                continue;
            }
            assert_eq!(
                pdu.sequence_number, seq,
                "response echoes the sequence: {pdu:?}"
            );
            return pdu;
        }
    }

    /// Sends a bind and returns the broker's answer, whatever its status.
    pub async fn try_bind(
        &mut self,
        kind: BindKind,
        system_id: &str,
        password: &str,
    ) -> Result<Pdu, EsmeError> {
        let seq = self.next_sequence();
        self.try_send(&Pdu::new(seq, bind_body(kind, system_id, password, 0x34)))
            .await?;
        self.try_recv().await?.ok_or(EsmeError::Closed)
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
        self.request(bind_body(kind, system_id, password, version))
            .await
    }

    pub async fn bind_ok(&mut self, kind: BindKind, system_id: &str, password: &str) {
        let resp = self.bind(kind, system_id, password).await;
        assert_eq!(
            resp.command_status,
            CommandStatus::ESME_ROK,
            "bind as {system_id}"
        );
    }

    /// Waits until the broker closes the connection, failing on any PDU.
    pub async fn expect_closed(&mut self) {
        if let Some(pdu) = self.recv().await {
            panic!("expected the connection to close, got {pdu:?}");
        }
    }

    /// The broker unbinds this session: its `unbind` comes within `limit`, is
    /// answered, and the broker closes the connection.
    pub async fn expect_unbind_and_close(&mut self, limit: Duration) {
        let unbind = self.recv_within(limit).await.expect("the broker's unbind");
        assert_eq!(unbind.body, Body::Unbind, "{unbind:?}");
        self.send(&Pdu::new(unbind.sequence_number, Body::UnbindResp))
            .await;
        self.expect_closed().await;
    }

    pub fn into_inner(self) -> S {
        self.framed.into_inner()
    }
}

/// What a real ESME answers at once to a request from the broker that is not
/// the response it waits for: enquire_link and deliver_sm.
fn routine_answer(pdu: &Pdu) -> Option<Pdu> {
    let answer = match pdu.body {
        Body::EnquireLink => Body::EnquireLinkResp,
        Body::DeliverSm(_) => Body::DeliverSmResp(MessageIdResp::default()),
        _ => return None,
    };
    Some(Pdu::new(pdu.sequence_number, answer))
}

fn bind_body(kind: BindKind, system_id: &str, password: &str, version: u8) -> Body {
    let bind = Bind {
        system_id: system_id.into(),
        password: password.into(),
        interface_version: version,
        ..Bind::default()
    };
    Body::Bind(kind, bind)
}
