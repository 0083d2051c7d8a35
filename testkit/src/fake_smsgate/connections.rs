//! Connection aborts.
//!
//! `Fault::Reset` needs the client to see a broken connection, not an HTTP answer.
//! The server runs `axum::serve` over our own `Listener` whose connections are
//! `KillableStream`s; the listener's address type is a `ConnHandle` sharing a kill
//! switch with the stream, and handlers get it through `ConnectInfo<ConnHandle>`.
//! A handler that wants to abort flips the switch (waking a pending read) and
//! returns a response that is never sent: from then on every read/write on the
//! stream fails, which makes hyper drop the connection, and since the stream was
//! given SO_LINGER=0 (`set_zero_linger`) at that moment, the kernel answers the
//! close with a TCP RST instead of a FIN.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

pub(super) struct KillableListener(pub(super) TcpListener);

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (KillableStream, ConnHandle) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handle = ConnHandle::new(peer);
                    let io = KillableStream {
                        inner: stream,
                        handle: handle.clone(),
                        lingered: false,
                    };
                    return (io, handle);
                }
                // Like axum's own listener: back off on accept errors (EMFILE, ...).
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<ConnHandle> {
        Ok(ConnHandle::new(self.0.local_addr()?))
    }
}

#[derive(Clone)]
pub(super) struct ConnHandle {
    peer: SocketAddr,
    switch: Arc<KillSwitch>,
}

#[derive(Default)]
struct KillSwitch {
    killed: AtomicBool,
    read_waker: Mutex<Option<Waker>>,
}

impl ConnHandle {
    fn new(peer: SocketAddr) -> Self {
        ConnHandle {
            peer,
            switch: Arc::new(KillSwitch::default()),
        }
    }

    pub(super) fn kill(&self) {
        self.switch.killed.store(true, Ordering::SeqCst);
        let waker = self.switch.read_waker.lock().unwrap().take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

// `axum::serve` wants `Debug` addresses (it logs them).
impl std::fmt::Debug for ConnHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnHandle")
            .field("peer", &self.peer)
            .field("killed", &self.switch.killed.load(Ordering::SeqCst))
            .finish()
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub(super) struct KillableStream {
    inner: TcpStream,
    handle: ConnHandle,
    lingered: bool,
}

impl KillableStream {
    /// True once the connection was killed; arms SO_LINGER=0 the first time.
    fn killed(&mut self) -> bool {
        if !self.handle.switch.killed.load(Ordering::SeqCst) {
            return false;
        }
        if !self.lingered {
            self.lingered = true;
            let _ = self.inner.set_zero_linger();
        }
        true
    }
}

fn reset_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "fake smsgate: connection killed",
    )
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        *this.handle.switch.read_waker.lock().unwrap() = Some(cx.waker().clone());
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
