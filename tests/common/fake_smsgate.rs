//! A fake SMSGate (android-sms-gateway) REST server for integration tests.
//!
//! It imitates the 3rd-party API described in `docs/smsgate-api.md` (§1–§6)
//! closely enough for the broker's upstream adapter to be tested against it: the
//! three URL layouts ([`Mode`]), Basic auth, `POST /messages` validation and its
//! error bodies, message state/cancel, webhook registration, the inbox and the
//! device list. On top of that it offers fault injection on `POST /messages`
//! ([`Fault`], [`FakeSmsGate::push_faults`], [`FakeSmsGate::fail_every`]) and
//! inspection of everything that arrived ([`FakeSmsGate::accepted`], ...).
//!
//! Known simplifications (see also the notes on the items):
//! * phone validation is the regex `^\+[1-9][0-9]{6,14}$` instead of libphonenumber
//!   with region RU (so national formats the real server would normalise are 400s
//!   here, and "not mobile phone number" never happens);
//! * one account with exactly one device; no JWT, no `GET /messages` list, no
//!   settings/logs routes, no queue-limit bookkeeping (only the injected fault);
//! * once a message left `Pending`/`Cancelling`, cloud/private `GET`s hash the
//!   recipients (first 16 hex chars of SHA-256, computed with the SHA-256 of
//!   `rustls`' ring provider since `sha2` is no direct dependency) and drop the
//!   content; the real server's `hashedMessage` object is not imitated.
#![allow(dead_code)]

use smpp_broker::smpp::time::{civil_from_days, days_from_civil};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Default Basic-auth user name of [`FakeSmsGate::start`].
pub const USERNAME: &str = "user";
/// Default Basic-auth password of [`FakeSmsGate::start`].
pub const PASSWORD: &str = "secret-pass";

/// The body of the real server's 503 when a device's queue is full.
pub const QUEUE_LIMITS_MESSAGE: &str =
    "failed to enqueue message: queue limits exceeded: too many pending messages: 100 / 100";

/// Webhook events the real server accepts (OpenAPI enum).
const WEBHOOK_EVENTS: &[&str] = &[
    "sms:received",
    "sms:data-received",
    "sms:sent",
    "sms:delivered",
    "sms:failed",
    "sms:cancelled",
    "system:ping",
    "mms:received",
    "mms:downloaded",
    "app:started",
    "sms:batch:received",
    "sms:batch:data-received",
    "mms:batch:received",
    "mms:batch:downloaded",
];

/// Which SMSGate flavour to imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Public cloud: routes under `/3rdparty/v1`.
    Cloud,
    /// Private server: routes under `/api/3rdparty/v1`.
    Private,
    /// The phone's local server: no prefix, `/device` (singular), `/message` and
    /// `/webhook` aliases, 404s with an empty body, 400 (not 409) when cancelling a
    /// message that is not pending, phone numbers checked only "at send time".
    Local,
}

impl Mode {
    /// The path prefix of the 3rd-party API in this mode.
    pub fn prefix(self) -> &'static str {
        match self {
            Mode::Cloud => "/3rdparty/v1",
            Mode::Private => "/api/3rdparty/v1",
            Mode::Local => "",
        }
    }
}

/// A fault applied to one `POST /messages` request instead of (or around) the
/// normal handling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 503 with the real queue-limits body ([`QUEUE_LIMITS_MESSAGE`]).
    QueueLimits,
    /// 500 `{"message":"failed to handle request"}`.
    ServerError,
    /// 401 `{"message":"Unauthorized"}` even with the right credentials.
    Unauthorized,
    /// 429 `{"message":"Too Many Requests"}` with a `Retry-After` header.
    TooManyRequests { retry_after_secs: u64 },
    /// 400 `{"message": <the string>}`.
    BadRequest(String),
    /// Handle the request normally after this delay (`tokio::time::sleep`).
    Slow(Duration),
    /// Abort the connection without any response; nothing is stored.
    Reset,
    /// Handle the request normally (so a valid message is stored as accepted),
    /// then abort the connection without sending the answer.
    AcceptThenReset,
}

/// One message the fake accepted (answered, or would have answered, 202).
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The message id: the client's `id`, or a generated 21-char id.
    pub id: String,
    /// Whether `id` was generated by the fake (no `id` in the request).
    pub id_generated: bool,
    /// The device that took the message (always the fake's device id).
    pub device_id: String,
    /// `textMessage.text`, or the deprecated `message` field.
    pub text: Option<String>,
    /// `dataMessage.data` (base64, as sent).
    pub data: Option<String>,
    /// `dataMessage.port`.
    pub port: Option<u16>,
    pub phone_numbers: Vec<String>,
    /// As sent; `None` means omitted (the real server then defaults to `true`).
    pub with_delivery_report: Option<bool>,
    pub priority: Option<i8>,
    pub ttl: Option<u64>,
    pub valid_until: Option<String>,
    pub schedule_at: Option<String>,
    pub sim_number: Option<u8>,
    pub is_encrypted: bool,
    /// The `skipPhoneValidation` query parameter.
    pub skip_phone_validation: bool,
    /// The whole request body, for assertions on fields not listed above.
    pub body: Value,
    pub received_at: Instant,
}

/// A handle on a running fake server. Cheap to clone; the server stops when the
/// last clone is dropped (or when the test's runtime shuts down).
#[derive(Clone)]
pub struct FakeSmsGate {
    shared: Arc<Shared>,
    _server: Arc<ServerTask>,
}

struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FakeSmsGate {
    /// Starts a fake on `127.0.0.1:0` with user [`USERNAME`] and password [`PASSWORD`].
    pub async fn start(mode: Mode) -> FakeSmsGate {
        Self::start_with_credentials(mode, USERNAME, PASSWORD).await
    }

    /// Starts a fake on `127.0.0.1:0` with the given Basic-auth credentials.
    pub async fn start_with_credentials(mode: Mode, username: &str, password: &str) -> FakeSmsGate {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake smsgate: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake smsgate: local_addr");
        let now = rfc3339(SystemTime::now());
        let shared = Arc::new(Shared {
            mode,
            addr,
            device_id: nanoid(),
            username: username.to_owned(),
            password: password.to_owned(),
            device_created_at: now,
            state: Mutex::new(Inner::default()),
        });
        let app = router(shared.clone()).into_make_service_with_connect_info::<ConnHandle>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(KillableListener(listener), app).await;
        });
        FakeSmsGate {
            shared,
            _server: Arc::new(ServerTask(task)),
        }
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT` without the mode's prefix.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The API base URL including the mode's prefix, e.g.
    /// `http://127.0.0.1:PORT/3rdparty/v1` (Cloud) or `http://127.0.0.1:PORT` (Local).
    pub fn base_url(&self) -> String {
        format!("{}{}", self.root_url(), self.shared.mode.prefix())
    }

    /// The device-list URL: `{base}/devices`, or `{base}/device` in Local mode.
    pub fn devices_url(&self) -> String {
        match self.shared.mode {
            Mode::Local => format!("{}/device", self.base_url()),
            _ => format!("{}/devices", self.base_url()),
        }
    }

    pub fn device_id(&self) -> &str {
        &self.shared.device_id
    }

    pub fn username(&self) -> &str {
        &self.shared.username
    }

    pub fn password(&self) -> &str {
        &self.shared.password
    }

    /// Queues faults; each `POST /messages` request takes the next one, in order.
    /// A queued fault takes precedence over [`FakeSmsGate::fail_every`].
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) {
        self.shared.lock().faults.extend(faults);
    }

    /// From now on, every `n`-th `POST /messages` request (the n-th, 2n-th, ...
    /// counted from this call, queued-fault requests included) gets `fault`,
    /// unless a queued fault applies to it. Replaces an earlier `fail_every`.
    pub fn fail_every(&self, n: usize, fault: Fault) {
        assert!(n >= 1, "fail_every: n must be at least 1");
        self.shared.lock().every = Some(Every { n, fault, seen: 0 });
    }

    /// Drops the queued faults and the `fail_every` fault.
    pub fn clear_faults(&self) {
        let mut st = self.shared.lock();
        st.faults.clear();
        st.every = None;
    }

    /// How many queued faults have not been used yet.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Every accepted message, in arrival order.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.shared.lock().accepted.clone()
    }

    /// Every `POST /messages` request seen (faulted and rejected ones included).
    pub fn post_count(&self) -> usize {
        self.shared.lock().arrivals.len()
    }

    /// The arrival instant of every `POST /messages` request.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.shared.lock().arrivals.clone()
    }

    /// Moves message `id` (and all its recipients) to `state`, e.g. `Processed`,
    /// `Sent`, `Delivered`, `Failed`; `error` becomes each recipient's `error`.
    /// Records the state's timestamp in `states`. Panics if `id` is unknown.
    pub fn set_state(&self, id: &str, state: &str, error: Option<&str>) {
        let mut st = self.shared.lock();
        let msg = st
            .messages
            .iter_mut()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("fake smsgate: set_state: no message with id {id:?}"));
        msg.state = state.to_owned();
        for r in &mut msg.recipients {
            r.state = state.to_owned();
            r.error = error.map(str::to_owned);
        }
        msg.states
            .insert(state.to_owned(), Value::String(rfc3339(SystemTime::now())));
    }

    /// The current state name of message `id` (`Pending`, `Cancelled`, ...).
    pub fn state_of(&self, id: &str) -> Option<String> {
        let st = self.shared.lock();
        st.messages
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.state.clone())
    }

    /// The phone receives an SMS at `received_at_ms` (Unix ms); `GET /inbox` lists
    /// it from then on. Returns its id, `text:` and a signed decimal hash, as the
    /// app makes them.
    pub fn receive_sms(
        &self,
        sender: &str,
        recipient: &str,
        text: &str,
        received_at_ms: i64,
    ) -> String {
        let mut st = self.shared.lock();
        let hash = -1_000_003i32.wrapping_mul(st.inbox.len() as i32 + 1);
        let id = format!("text:{hash}");
        st.inbox.push(InboxEntry {
            id: id.clone(),
            sender: sender.to_owned(),
            recipient: recipient.to_owned(),
            text: text.to_owned(),
            received_at_ms,
        });
        id
    }

    /// The query strings of the `GET /inbox` requests so far.
    pub fn inbox_reads(&self) -> Vec<String> {
        self.shared.lock().inbox_reads.clone()
    }

    /// The registered webhooks, as the server would list them.
    pub fn webhooks(&self) -> Vec<Value> {
        self.shared.lock().webhooks.clone()
    }

    /// Waits until at least `n` messages were accepted, polling every 10 ms, and
    /// returns them all. Panics if that does not happen `within` the given time.
    pub async fn wait_for_accepted(&self, n: usize, within: Duration) -> Vec<Accepted> {
        let deadline = Instant::now() + within;
        loop {
            let accepted = self.accepted();
            if accepted.len() >= n {
                return accepted;
            }
            if Instant::now() >= deadline {
                panic!(
                    "fake smsgate: expected {n} accepted message(s) within {within:?}, got {} \
                     ({} POST /messages request(s) seen): {:?}",
                    accepted.len(),
                    self.post_count(),
                    accepted.iter().map(|a| &a.id).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Connection aborts.
//
// `Fault::Reset` needs the client to see a broken connection, not an HTTP answer.
// The server runs `axum::serve` over our own `Listener` whose connections are
// `KillableStream`s; the listener's address type is a `ConnHandle` sharing a kill
// switch with the stream, and handlers get it through `ConnectInfo<ConnHandle>`.
// A handler that wants to abort flips the switch (waking a pending read) and
// returns a response that is never sent: from then on every read/write on the
// stream fails, which makes hyper drop the connection, and since the stream was
// given SO_LINGER=0 (`set_zero_linger`) at that moment, the kernel answers the
// close with a TCP RST instead of a FIN.
// ---------------------------------------------------------------------------

struct KillableListener(TcpListener);

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
struct ConnHandle {
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

    fn kill(&self) {
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

struct KillableStream {
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

// ---------------------------------------------------------------------------
// Server state.
// ---------------------------------------------------------------------------

struct Shared {
    mode: Mode,
    addr: SocketAddr,
    device_id: String,
    username: String,
    password: String,
    device_created_at: String,
    state: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    faults: VecDeque<Fault>,
    every: Option<Every>,
    arrivals: Vec<Instant>,
    accepted: Vec<Accepted>,
    messages: Vec<StoredMessage>,
    webhooks: Vec<Value>,
    inbox: Vec<InboxEntry>,
    /// The query string of every `GET /inbox`.
    inbox_reads: Vec<String>,
}

/// An SMS the phone received, as `GET /inbox` lists it.
struct InboxEntry {
    id: String,
    sender: String,
    recipient: String,
    text: String,
    received_at_ms: i64,
}

struct Every {
    n: usize,
    fault: Fault,
    seen: usize,
}

struct StoredMessage {
    id: String,
    state: String,
    recipients: Vec<Recipient>,
    states: Map<String, Value>,
    text: Option<String>,
    data: Option<(String, u16)>,
    is_encrypted: bool,
}

struct Recipient {
    phone: String,
    state: String,
    error: Option<String>,
}

/// An error answer: status + `{"message": ...}` (empty body for Local 404s).
struct ApiError {
    status: StatusCode,
    message: String,
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageIn {
    id: Option<String>,
    device_id: Option<String>,
    message: Option<String>,
    text_message: Option<TextIn>,
    data_message: Option<DataIn>,
    phone_numbers: Option<Vec<String>>,
    is_encrypted: Option<bool>,
    sim_number: Option<u8>,
    with_delivery_report: Option<bool>,
    priority: Option<i8>,
    ttl: Option<u64>,
    valid_until: Option<String>,
    schedule_at: Option<String>,
}

#[derive(Deserialize)]
struct TextIn {
    text: String,
}

#[derive(Deserialize)]
struct DataIn {
    data: String,
    port: u16,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookIn {
    id: Option<String>,
    device_id: Option<String>,
    url: Option<String>,
    event: Option<String>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn json(&self, status: StatusCode, body: Value) -> Response {
        (status, Json(body)).into_response()
    }

    fn error(&self, e: ApiError) -> Response {
        if e.status == StatusCode::NOT_FOUND && self.mode == Mode::Local {
            return StatusCode::NOT_FOUND.into_response();
        }
        self.json(e.status, json!({ "message": e.message }))
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
            })
            .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
            .and_then(|raw| String::from_utf8(raw).ok())
            .is_some_and(|creds| {
                creds.split_once(':') == Some((self.username.as_str(), self.password.as_str()))
            });
        if ok {
            Ok(())
        } else {
            Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: "Unauthorized".to_owned(),
            })
        }
    }

    /// Counts a `POST /messages` request and picks its fault, if any.
    fn next_post_fault(&self) -> Option<Fault> {
        let mut st = self.lock();
        st.arrivals.push(Instant::now());
        let repeating = st.every.as_mut().and_then(|e| {
            e.seen += 1;
            (e.seen % e.n == 0).then(|| e.fault.clone())
        });
        st.faults.pop_front().or(repeating)
    }

    fn fault_response(&self, fault: &Fault) -> Response {
        let (status, message) = match fault {
            Fault::QueueLimits => (
                StatusCode::SERVICE_UNAVAILABLE,
                QUEUE_LIMITS_MESSAGE.to_owned(),
            ),
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to handle request".to_owned(),
            ),
            Fault::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized".to_owned()),
            Fault::TooManyRequests { retry_after_secs } => {
                let mut resp = self.json(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({ "message": "Too Many Requests" }),
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                return resp;
            }
            Fault::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            Fault::Slow(_) | Fault::Reset | Fault::AcceptThenReset => {
                unreachable!("handled by the caller")
            }
        };
        self.error(ApiError { status, message })
    }

    fn post_message(&self, headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> Response {
        match self.try_post_message(headers, query, body) {
            Ok(resp) => resp,
            Err(e) => self.error(e),
        }
    }

    fn try_post_message(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let skip_phone_validation = parse_skip_phone_validation(query)?;
        let raw: Value = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("failed to parse request: {e}")))?;
        let req: MessageIn = serde_json::from_value(raw.clone())
            .map_err(|e| bad_request(format!("failed to parse request: {e}")))?;

        // Content: exactly one of textMessage / dataMessage / message.
        let legacy = req.message.as_deref().filter(|m| !m.is_empty());
        let kinds = usize::from(req.text_message.is_some())
            + usize::from(req.data_message.is_some())
            + usize::from(legacy.is_some());
        if kinds != 1 {
            return Err(bad_request(
                "must specify exactly one of: textMessage or dataMessage",
            ));
        }
        let text = req
            .text_message
            .as_ref()
            .map(|t| t.text.clone())
            .or_else(|| legacy.map(str::to_owned));
        if let Some(t) = &text {
            let n = t.chars().count();
            if !(1..=65535).contains(&n) {
                return Err(bad_request(
                    "textMessage.text must be 1..65535 characters long",
                ));
            }
        }
        if let Some(d) = &req.data_message {
            let decodes = base64::engine::general_purpose::STANDARD
                .decode(&d.data)
                .is_ok();
            if !decodes || !(4..=65535).contains(&d.data.len()) {
                return Err(bad_request(
                    "dataMessage.data must be base64, 4..65535 characters long",
                ));
            }
        }

        // Recipients.
        let phones = req.phone_numbers.clone().unwrap_or_default();
        if !(1..=100).contains(&phones.len()) {
            return Err(bad_request("phoneNumbers must contain 1..100 items"));
        }
        if phones.iter().any(|p| !(1..=128).contains(&p.len())) {
            return Err(bad_request(
                "phoneNumbers items must be 1..128 characters long",
            ));
        }
        for (i, p) in phones.iter().enumerate() {
            if phones[..i].contains(p) {
                return Err(bad_request("phone numbers must be unique"));
            }
        }

        // Ids and scalars.
        let client_id = req.id.clone().filter(|s| !s.is_empty());
        if client_id.as_ref().is_some_and(|id| id.chars().count() > 36) {
            return Err(bad_request("id must be at most 36 characters long"));
        }
        let device_filter = req.device_id.clone().filter(|s| !s.is_empty());
        if device_filter
            .as_ref()
            .is_some_and(|d| d.chars().count() > 21)
        {
            return Err(bad_request("deviceId must be at most 21 characters long"));
        }
        if req.sim_number.is_some_and(|s| !(1..=3).contains(&s)) {
            return Err(bad_request("simNumber must be 1..3"));
        }

        // Validity and schedule.
        if req.ttl.is_some() && req.valid_until.is_some() {
            return Err(bad_request("ttl and validUntil are mutually exclusive"));
        }
        if req.ttl.is_some_and(|t| t < 5) {
            return Err(bad_request("ttl must be at least 5 seconds"));
        }
        let now_ms = unix_millis(SystemTime::now());
        let mut valid_until_ms = req.ttl.map(|t| now_ms + (t as i64) * 1000);
        if let Some(v) = &req.valid_until {
            let ms = parse_rfc3339(v)
                .ok_or_else(|| bad_request(format!("validUntil: invalid RFC3339 time {v:?}")))?;
            if self.mode == Mode::Local && ms <= now_ms {
                return Err(bad_request("message already expired"));
            }
            valid_until_ms = Some(ms);
        }
        if let Some(s) = &req.schedule_at {
            let ms = parse_rfc3339(s)
                .ok_or_else(|| bad_request(format!("scheduleAt: invalid RFC3339 time {s:?}")))?;
            if ms <= now_ms {
                return Err(bad_request("scheduleAt must be in the future"));
            }
            if valid_until_ms.is_some_and(|v| ms > v) {
                return Err(bad_request("scheduleAt must not be after validUntil"));
            }
        }

        // Phone validation (simplified: E.164 regex instead of libphonenumber).
        // The phone (Local mode) does not reject at POST time: it accepts the
        // message and fails the recipient when it tries to send it.
        let is_encrypted = req.is_encrypted.unwrap_or(false);
        let validate_phones = !skip_phone_validation && !is_encrypted;
        if validate_phones && self.mode != Mode::Local && phones.iter().any(|p| !looks_like_e164(p))
        {
            return Err(bad_request("invalid phone number"));
        }

        // Device selection: one account, one device.
        if device_filter.as_ref().is_some_and(|d| *d != self.device_id) {
            return Err(bad_request("failed to select device: record not found"));
        }

        let mut st = self.lock();
        let id = match &client_id {
            Some(id) => {
                if st.messages.iter().any(|m| m.id == *id) {
                    return Err(ApiError {
                        status: StatusCode::CONFLICT,
                        message: "message with the same ID already exists".to_owned(),
                    });
                }
                id.clone()
            }
            None => loop {
                let id = nanoid();
                if !st.messages.iter().any(|m| m.id == id) {
                    break id;
                }
            },
        };

        let mut states = Map::new();
        states.insert(
            "Pending".to_owned(),
            Value::String(rfc3339(SystemTime::now())),
        );
        let data = req.data_message.as_ref().map(|d| (d.data.clone(), d.port));
        let stored = StoredMessage {
            id: id.clone(),
            state: "Pending".to_owned(),
            recipients: phones
                .iter()
                .map(|p| Recipient {
                    phone: p.clone(),
                    state: "Pending".to_owned(),
                    error: None,
                })
                .collect(),
            states,
            text: text.clone(),
            data: data.clone(),
            is_encrypted,
        };
        let answer = self.state_json(&stored, false);
        st.messages.push(stored);
        if self.mode == Mode::Local && validate_phones {
            local_fail_invalid_recipients(st.messages.last_mut().expect("just pushed"));
        }
        st.accepted.push(Accepted {
            id: id.clone(),
            id_generated: client_id.is_none(),
            device_id: self.device_id.clone(),
            text,
            data: data.as_ref().map(|d| d.0.clone()),
            port: data.as_ref().map(|d| d.1),
            phone_numbers: phones,
            with_delivery_report: req.with_delivery_report,
            priority: req.priority,
            ttl: req.ttl,
            valid_until: req.valid_until.clone(),
            schedule_at: req.schedule_at.clone(),
            sim_number: req.sim_number,
            is_encrypted,
            skip_phone_validation,
            body: raw,
            received_at: Instant::now(),
        });
        drop(st);

        let mut resp = self.json(StatusCode::ACCEPTED, answer);
        let location = format!("{}/messages/{id}", self.mode.prefix());
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    /// The `MessageState` JSON. `for_get`: cloud/private `GET`s show hashed
    /// recipients once the message left Pending/Cancelling.
    fn state_json(&self, m: &StoredMessage, for_get: bool) -> Value {
        let hashed = for_get
            && self.mode != Mode::Local
            && !m.is_encrypted
            && !matches!(m.state.as_str(), "Pending" | "Cancelling");
        let recipients: Vec<Value> = m
            .recipients
            .iter()
            .map(|r| {
                let phone = if hashed {
                    sha256_hex(r.phone.as_bytes())[..16].to_owned()
                } else {
                    r.phone.clone()
                };
                let mut o = json!({ "phoneNumber": phone, "state": r.state });
                if let Some(e) = &r.error {
                    o["error"] = Value::String(e.clone());
                }
                o
            })
            .collect();
        let mut o = json!({
            "id": m.id,
            "deviceId": self.device_id,
            "state": m.state,
            "isHashed": hashed,
            "isEncrypted": m.is_encrypted,
            "recipients": recipients,
            "states": m.states,
        });
        if !hashed {
            if let Some(t) = &m.text {
                o["textMessage"] = json!({ "text": t });
            }
            if let Some((data, port)) = &m.data {
                o["dataMessage"] = json!({ "data": data, "port": port });
            }
        }
        o
    }

    fn get_message(&self, headers: &HeaderMap, id: &str) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let st = self.lock();
        let m = st
            .messages
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(message_not_found)?;
        Ok(self.json(StatusCode::OK, self.state_json(m, true)))
    }

    fn cancel_message(&self, headers: &HeaderMap, id: &str) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let mut st = self.lock();
        let m = st
            .messages
            .iter_mut()
            .find(|m| m.id == id)
            .ok_or_else(message_not_found)?;
        if m.state != "Pending" {
            return Err(ApiError {
                status: if self.mode == Mode::Local {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::CONFLICT
                },
                message: "message is not pending".to_owned(),
            });
        }
        m.state = "Cancelled".to_owned();
        for r in &mut m.recipients {
            r.state = "Cancelled".to_owned();
        }
        m.states.insert(
            "Cancelled".to_owned(),
            Value::String(rfc3339(SystemTime::now())),
        );
        Ok(self.json(StatusCode::OK, self.state_json(m, false)))
    }

    fn list_webhooks(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let list = self.lock().webhooks.clone();
        Ok(self.json(StatusCode::OK, Value::Array(list)))
    }

    fn upsert_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let req: WebhookIn = serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("failed to parse request: {e}")))?;
        let url = req.url.unwrap_or_default();
        let url_ok = url.starts_with("https://")
            || (self.mode == Mode::Local && url.starts_with("http://127.0.0.1"));
        if !url_ok {
            return Err(bad_request("url must start with https://"));
        }
        let event = req.event.unwrap_or_default();
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(bad_request(format!("invalid event {event:?}")));
        }
        let id = req.id.filter(|s| !s.is_empty()).unwrap_or_else(nanoid);
        if id.chars().count() > 36 {
            return Err(bad_request("id must be at most 36 characters long"));
        }
        let device_id = req.device_id.filter(|s| !s.is_empty());
        if self.mode != Mode::Local && device_id.as_ref().is_some_and(|d| *d != self.device_id) {
            return Err(bad_request("device not found"));
        }
        let hook = match self.mode {
            Mode::Local => json!({
                "id": id, "deviceId": null, "url": url, "event": event, "source": "Local",
            }),
            _ => {
                let mut o = json!({ "id": id, "url": url, "event": event });
                if let Some(d) = device_id {
                    o["deviceId"] = Value::String(d);
                }
                o
            }
        };
        let mut st = self.lock();
        match st.webhooks.iter_mut().find(|w| w["id"] == id.as_str()) {
            Some(existing) => *existing = hook.clone(),
            None => st.webhooks.push(hook.clone()),
        }
        Ok(self.json(StatusCode::CREATED, hook))
    }

    fn delete_webhook(&self, headers: &HeaderMap, id: &str) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let mut st = self.lock();
        let before = st.webhooks.len();
        st.webhooks.retain(|w| w["id"] != id);
        if st.webhooks.len() == before {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: "webhook not found".to_owned(),
            });
        }
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    /// `GET /inbox?type&from&to&limit&offset`: received messages in time order.
    fn inbox(
        &self,
        headers: &HeaderMap,
        query: &std::collections::HashMap<String, String>,
    ) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let bad = |message: &str| ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
        };
        let time = |key: &str, default: i64| match query.get(key) {
            None => Ok(default),
            Some(text) => {
                parse_rfc3339(text).ok_or_else(|| bad(&format!("Invalid {key} datetime")))
            }
        };
        let from = time("from", 0)?;
        let to = time("to", unix_millis(SystemTime::now()))?;
        let number = |key: &str, default: usize| {
            query.get(key).map_or(Ok(default), |v| {
                v.parse().map_err(|_| bad(&format!("bad {key}")))
            })
        };
        let (limit, offset) = (number("limit", 50)?, number("offset", 0)?);
        if !(1..=500).contains(&limit) {
            return Err(bad("limit must be between 1 and 500"));
        }
        let mut st = self.lock();
        let raw: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        st.inbox_reads.push(raw.join("&"));
        let wanted = query.get("type").is_none_or(|t| t == "SMS");
        let mut listed: Vec<&InboxEntry> = st
            .inbox
            .iter()
            .filter(|m| wanted && (from..=to).contains(&m.received_at_ms))
            .collect();
        listed.sort_by_key(|m| m.received_at_ms);
        let page: Vec<Value> = listed
            .iter()
            .skip(offset)
            .take(limit)
            .map(|m| {
                let at = UNIX_EPOCH + Duration::from_millis(m.received_at_ms as u64);
                json!({"id": m.id, "type": "SMS", "sender": m.sender, "recipient": m.recipient,
                    "simNumber": 1, "contentPreview": m.text, "createdAt": rfc3339(at)})
            })
            .collect();
        Ok(self.json(StatusCode::OK, json!(page)))
    }

    fn devices(&self, headers: &HeaderMap) -> Result<Response, ApiError> {
        self.authorize(headers)?;
        let device = json!({
            "id": self.device_id,
            "name": "Fake SMSGate phone",
            "createdAt": self.device_created_at,
            "updatedAt": self.device_created_at,
            "lastSeen": rfc3339(SystemTime::now()),
        });
        Ok(self.json(StatusCode::OK, json!([device])))
    }
}

fn message_not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "message not found".to_owned(),
    }
}

/// Local mode: what the phone does when it tries to send to a bad number.
fn local_fail_invalid_recipients(m: &mut StoredMessage) {
    let mut any_failed = false;
    for r in &mut m.recipients {
        if !looks_like_e164(&r.phone) {
            r.state = "Failed".to_owned();
            r.error = Some("sendSMS: Invalid phone number".to_owned());
            any_failed = true;
        }
    }
    if any_failed && m.recipients.iter().all(|r| r.state == "Failed") {
        m.state = "Failed".to_owned();
        m.states.insert(
            "Failed".to_owned(),
            Value::String(rfc3339(SystemTime::now())),
        );
    }
}

/// `skipPhoneValidation` as Go's `strconv.ParseBool` reads it.
fn parse_skip_phone_validation(query: Option<&str>) -> Result<bool, ApiError> {
    let mut skip = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != "skipPhoneValidation" {
            continue;
        }
        skip = match v {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
            other => {
                return Err(bad_request(format!(
                    "failed to parse query: skipPhoneValidation: invalid bool {other:?}"
                )))
            }
        };
    }
    Ok(skip)
}

/// `^\+[1-9][0-9]{6,14}$`
fn looks_like_e164(s: &str) -> bool {
    let b = s.as_bytes();
    (8..=16).contains(&b.len())
        && b[0] == b'+'
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

/// Lower-case hex SHA-256, using the ring provider `rustls` (a direct dependency)
/// exposes through its TLS 1.3 cipher suite.
fn sha256_hex(data: &[u8]) -> String {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("a TLS 1.3 suite");
    let digest = suite.common.hash_provider.hash(data);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A 21-char id from the nanoid alphabet `A-Za-z0-9_-`.
fn nanoid() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut rng = rand::thread_rng();
    (0..21)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`
fn rfc3339(t: SystemTime) -> String {
    let ms = unix_millis(t);
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) into Unix milliseconds.
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |at: usize, c: &[u8]| b.get(at).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, se) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i.min(start + 3)];
        frac_ms = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
    }
    let offset_secs = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let sign = if *c == b'+' { 1 } else { -1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs * 1000 + frac_ms)
}

// ---------------------------------------------------------------------------
// Routes.
// ---------------------------------------------------------------------------

type St = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    let p = shared.mode.prefix();
    let mut r: Router<Arc<Shared>> = Router::new()
        .route(&format!("{p}/messages"), post(post_message))
        .route(
            &format!("{p}/messages/{{id}}"),
            get(get_message).delete(cancel_message),
        )
        .route(
            &format!("{p}/webhooks"),
            get(list_webhooks).post(upsert_webhook),
        )
        .route(&format!("{p}/webhooks/{{id}}"), delete(delete_webhook))
        .route(&format!("{p}/inbox"), get(inbox));
    r = match shared.mode {
        Mode::Local => r
            .route("/device", get(devices))
            .route("/message", post(post_message))
            .route("/message/{id}", get(get_message).delete(cancel_message))
            .route("/webhook", get(list_webhooks).post(upsert_webhook))
            .route("/webhook/{id}", delete(delete_webhook)),
        Mode::Cloud | Mode::Private => r.route(&format!("{p}/devices"), get(devices)),
    };
    r.fallback(fallback).with_state(shared)
}

async fn post_message(
    State(s): St,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    match s.next_post_fault() {
        None => s.post_message(&headers, query.as_deref(), &body),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            s.post_message(&headers, query.as_deref(), &body)
        }
        Some(Fault::Reset) => {
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response() // never sent
        }
        Some(Fault::AcceptThenReset) => {
            let resp = s.post_message(&headers, query.as_deref(), &body);
            conn.kill();
            resp // never sent
        }
        Some(fault) => s.fault_response(&fault),
    }
}

async fn get_message(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.get_message(&headers, &id).unwrap_or_else(|e| s.error(e))
}

async fn cancel_message(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.cancel_message(&headers, &id)
        .unwrap_or_else(|e| s.error(e))
}

async fn list_webhooks(State(s): St, headers: HeaderMap) -> Response {
    s.list_webhooks(&headers).unwrap_or_else(|e| s.error(e))
}

async fn upsert_webhook(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    s.upsert_webhook(&headers, &body)
        .unwrap_or_else(|e| s.error(e))
}

async fn delete_webhook(State(s): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    s.delete_webhook(&headers, &id)
        .unwrap_or_else(|e| s.error(e))
}

async fn inbox(
    State(s): St,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    s.inbox(&headers, &query).unwrap_or_else(|e| s.error(e))
}

async fn devices(State(s): St, headers: HeaderMap) -> Response {
    s.devices(&headers).unwrap_or_else(|e| s.error(e))
}

async fn fallback(State(s): St) -> Response {
    s.error(ApiError {
        status: StatusCode::NOT_FOUND,
        message: "Not Found".to_owned(),
    })
}

impl FakeSmsGate {
    /// The accepted messages from the `start`th on, in arrival order: for a test
    /// that follows arrivals without copying the whole list each time.
    pub fn accepted_from(&self, start: usize) -> Vec<Accepted> {
        let st = self.shared.lock();
        st.accepted.get(start..).unwrap_or_default().to_vec()
    }

    /// How many messages were accepted so far.
    pub fn accepted_count(&self) -> usize {
        self.shared.lock().accepted.len()
    }
}
