//! python-smpplib 2.2.4, a real and independent ESME, against the in-process broker.
//!
//! Each test starts the broker on 127.0.0.1:0, runs `tests/interop/smpplib_client.py
//! SCENARIO HOST PORT [ARG...]` (killed after 60 s) and asserts here on the JSON lines
//! the script prints: one per PDU smpplib sends (`send`) or reads (`recv`), one per
//! raw write (`send_raw`), one per answered request (`response`, with the request's
//! sequence number), plus the steps (`bound`, `bind_failed`, `unbound`, `closed`, ...).
//!
//! smpplib is taken from the Python environment when `import smpplib` works there
//! (CI pip-installs it); otherwise it is pip-installed once into
//! `CARGO_TARGET_TMPDIR/pydeps-smpplib-2.2.4` and put on PYTHONPATH. Without python3
//! or pip the tests fail, saying so.
//!
//! `SMPPLIB_TRANSCRIPT=1 cargo test --test interop smpplib -- --nocapture` prints every
//! transcript.
//!
//! smpplib quirks (docs/smpp34-checklist.md B5) shape the scenarios: its bind_* and
//! unbind read the
//! very next PDU as the response; it never answers a server-initiated unbind; it raises
//! on unknown TLVs (we keep that strict default); and it refuses to send PDUs its
//! client-side state machine forbids, so those are written to its socket directly.
//! It has no cancel_sm or replace_sm, and its read_pdu raises UnknownCommandError
//! on their responses, so the script writes and reads those raw.
//!
//! After a scenario the tests look at what the broker stored: through its Store
//! API, and (outbox rows and texts) through the sqlite3 CLI on a read-only
//! connection; without sqlite3 on PATH only that last check is skipped, with a note.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use testkit::db::OutboxState;
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::{eventually, TestBroker, TestBrokerBuilder, PATIENCE};

use crate::script::{response_to, Client, Event, Transcript};

/// The client under test, pinned.
const SMPPLIB: &str = "smpplib==2.2.4";

const ESME_ROK: i64 = 0x00;
const ESME_RINVCMDLEN: i64 = 0x02;
const ESME_RINVCMDID: i64 = 0x03;
const ESME_RINVBNDSTS: i64 = 0x04;
const ESME_RALYBND: i64 = 0x05;
const ESME_RINVMSGID: i64 = 0x0C;
const ESME_RBINDFAIL: i64 = 0x0D;
const ESME_RCANCELFAIL: i64 = 0x11;
const ESME_RREPLACEFAIL: i64 = 0x13;
const ESME_RTHROTTLED: i64 = 0x58;

/// query_sm_resp message_state values (SMPP 3.4 5.2.28).
const ENROUTE: i64 = 1;
const DELETED: i64 = 4;

// ---------------------------------------------------------------------------------
// Python and smpplib
// ---------------------------------------------------------------------------------

/// Where smpplib is importable from: the interpreter's own packages (None), or a
/// directory of ours to put on PYTHONPATH.
struct Python {
    pythonpath: Option<PathBuf>,
}

/// Finds or installs smpplib once per test binary; parallel tests wait for the first.
fn python() -> &'static Python {
    static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();
    match PYTHON.get_or_init(prepare_python) {
        Ok(python) => python,
        Err(message) => panic!("{message}"),
    }
}

fn prepare_python() -> Result<Python, String> {
    if imports_smpplib(None)? {
        return Ok(Python { pythonpath: None });
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pydeps-smpplib-2.2.4");
    if imports_smpplib(Some(&dir))? {
        return Ok(Python {
            pythonpath: Some(dir),
        });
    }
    // A partial install from an interrupted run would make pip complain.
    let _ = std::fs::remove_dir_all(&dir);
    let output = std::process::Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--target",
        ])
        .arg(&dir)
        .args([SMPPLIB, "six"])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run python3 -m pip: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "python-smpplib is not importable and `python3 -m pip install --target {} {SMPPLIB} six` \
             failed ({}). The smpplib interop tests need python3 with pip \
             (Debian: apt-get install python3 python3-pip) or `pip install {SMPPLIB}`.\n\
             pip stdout:\n{}\npip stderr:\n{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    if !imports_smpplib(Some(&dir))? {
        return Err(format!(
            "pip installed {SMPPLIB} into {} but `import smpplib, six` still fails there",
            dir.display()
        ));
    }
    Ok(Python {
        pythonpath: Some(dir),
    })
}

/// Whether `import smpplib, six` works (with `dir` in front of PYTHONPATH, if given).
/// Err when python3 itself cannot be run.
fn imports_smpplib(dir: Option<&Path>) -> Result<bool, String> {
    let mut command = std::process::Command::new("python3");
    command
        .args(["-c", "import smpplib, six"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(dir) = dir {
        command.env("PYTHONPATH", pythonpath_with(dir));
    }
    match command.status() {
        Ok(status) => Ok(status.success()),
        Err(err) => Err(format!(
            "cannot run python3 ({err}): the smpplib interop tests need Python 3 with pip on PATH \
             (Debian: apt-get install python3 python3-pip)"
        )),
    }
}

/// `dir` in front of the inherited PYTHONPATH.
fn pythonpath_with(dir: &Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).expect("PYTHONPATH entries without separators")
}

/// The scenarios of `tests/interop/smpplib_client.py`, with smpplib importable;
/// with `tls_ca`, every scenario connects over TLS trusting that certificate.
fn smpplib(tls_ca: Option<&Path>) -> Client {
    let mut env = vec![
        ("PYTHONUNBUFFERED", "1".into()),
        ("PYTHONDONTWRITEBYTECODE", "1".into()),
    ];
    if let Some(dir) = &python().pythonpath {
        env.push(("PYTHONPATH", pythonpath_with(dir)));
    }
    if let Some(ca) = tls_ca {
        env.push(("SMPPLIB_TLS_CA", ca.into()));
    }
    Client {
        name: "smpplib".to_string(),
        program: "python3",
        script: "tests/interop/smpplib_client.py",
        env,
        print_var: "SMPPLIB_TRANSCRIPT",
        quiet_stderr: false,
    }
}

/// Runs a scenario over plain TCP to its end.
async fn run(scenario: &str, addr: SocketAddr, args: &[&str]) -> Transcript {
    smpplib(None).run(scenario, addr, args).await
}

// ---------------------------------------------------------------------------------
// What the script printed
// ---------------------------------------------------------------------------------

/// What the smpplib script's transcript must show.
trait SmpplibTranscript {
    /// The first `name` event of `client` (the script names each connection).
    fn find_of(&self, name: &str, client: &str) -> Option<&Event>;

    /// The first `name` event of `client`.
    fn first_of(&self, name: &str, client: &str) -> &Event;

    /// Checks that each response echoes its request's sequence number.
    fn echoed<'a>(&self, found: Vec<&'a Event>) -> Vec<&'a Event>;

    /// All responses to requests named `request`, each checked to echo the
    /// request's sequence number.
    fn responses(&self, request: &str) -> Vec<&Event>;

    /// The single response to `request`, checked for command and status.
    fn response(&self, request: &str, command: &str, status: i64) -> &Event;

    /// The responses to requests the script labelled `label`, in order, each
    /// checked to echo its request's sequence number.
    fn responses_labelled(&self, label: &str) -> Vec<&Event>;

    /// The single response labelled `label`, checked for command and status.
    fn answer(&self, label: &str, command: &str, status: i64) -> &Event;

    /// A submit_sm_resp or data_sm_resp with status 0 and a message_id of 1 to 20
    /// decimal digits; returns the message_id.
    fn accepted<'a>(&self, event: &'a Event) -> &'a str;

    /// A query_sm_resp for `message_id` saying `state`, error_code 0; returns
    /// its final_date.
    fn queried(&self, label: &str, message_id: &str, state: i64) -> &str;

    /// A header-only cancel_sm_resp or replace_sm_resp (read raw by the script).
    fn header_only(&self, label: &str, command: &str, status: i64);

    /// A successful smpplib bind_* by `client`.
    fn assert_bound(&self, client: &str, kind: &str);

    /// smpplib's bind_* raised PDUError with `status`.
    fn assert_bind_failed(&self, client: &str, status: i64);

    /// smpplib's unbind() got unbind_resp with status 0.
    fn assert_unbound(&self, client: &str);

    /// The broker closed `client`'s connection (read saw EOF, no timeout).
    fn assert_closed(&self, client: &str) -> &Event;

    /// smpplib's own enquire_link (through its state checks) was answered.
    fn assert_enquire_links_answered(&self);
}

impl SmpplibTranscript for Transcript {
    fn find_of(&self, name: &str, client: &str) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| e.is(name) && e.opt_str("client") == Some(client))
    }

    fn first_of(&self, name: &str, client: &str) -> &Event {
        match self.find_of(name, client) {
            Some(event) => event,
            None => panic!("no {name:?} event for client {client:?}\n{self}"),
        }
    }

    fn echoed<'a>(&self, found: Vec<&'a Event>) -> Vec<&'a Event> {
        for event in &found {
            self.check(
                event.int("sequence") == event.int("request_sequence"),
                format_args!("the response echoes its request's sequence: {}", event.line),
            );
        }
        found
    }

    fn responses(&self, request: &str) -> Vec<&Event> {
        let found = self
            .all("response")
            .into_iter()
            .filter(|e| e.opt_str("request") == Some(request))
            .collect();
        self.echoed(found)
    }

    fn response(&self, request: &str, command: &str, status: i64) -> &Event {
        let event = self.only(
            self.responses(request),
            format_args!("response to {request}"),
        );
        self.check_answer(event, request, command, status);
        event
    }

    fn responses_labelled(&self, label: &str) -> Vec<&Event> {
        self.echoed(self.labelled("response", label))
    }

    fn answer(&self, label: &str, command: &str, status: i64) -> &Event {
        let found = self.responses_labelled(label);
        let event = self.only(found, format_args!("response labelled {label:?}"));
        self.check_answer(event, label, command, status);
        event
    }

    fn accepted<'a>(&self, event: &'a Event) -> &'a str {
        self.check(
            event.int("status") == ESME_ROK,
            format_args!("accepted: {}", event.line),
        );
        self.message_id(event)
    }

    fn queried(&self, label: &str, message_id: &str, state: i64) -> &str {
        let event = self.answer(label, "query_sm_resp", ESME_ROK);
        self.check(
            event.opt_str("message_id") == Some(message_id)
                && event.opt_int("message_state") == Some(state)
                && event.opt_int("error_code") == Some(0),
            format_args!(
                "{label:?}: message_id {message_id}, message_state {state}, error_code 0: {}",
                event.line
            ),
        );
        event.str("final_date")
    }

    fn header_only(&self, label: &str, command: &str, status: i64) {
        let event = self.answer(label, command, status);
        self.check(
            event.opt_int("body_length") == Some(0),
            format_args!("{command} has no body: {}", event.line),
        );
    }

    fn assert_bound(&self, client: &str, kind: &str) {
        self.check_bound(self.first_of("bound", client), kind);
    }

    fn assert_bind_failed(&self, client: &str, status: i64) {
        self.check(
            self.find_of("bound", client).is_none(),
            format_args!("{client} must not bind"),
        );
        let failed = self.first_of("bind_failed", client);
        self.check(
            failed.int("status") == status,
            format_args!("{client}'s bind fails with 0x{status:02X}: {}", failed.line),
        );
    }

    fn assert_unbound(&self, client: &str) {
        let unbound = self.first_of("unbound", client);
        self.check(
            unbound.str("command") == "unbind_resp" && unbound.int("status") == ESME_ROK,
            format_args!(
                "{client}'s unbind is answered by unbind_resp: {}",
                unbound.line
            ),
        );
    }

    fn assert_closed(&self, client: &str) -> &Event {
        self.check(
            self.find_of("still_open", client).is_none(),
            format_args!("the broker closes {client}'s connection"),
        );
        self.first_of("closed", client)
    }

    fn assert_enquire_links_answered(&self) {
        let answered = self.responses("enquire_link");
        self.check(!answered.is_empty(), "an enquire_link was sent");
        for event in answered {
            self.check(
                event.str("command") == "enquire_link_resp" && event.int("status") == ESME_ROK,
                format_args!(
                    "enquire_link answered with enquire_link_resp: {}",
                    event.line
                ),
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// What the broker stored
// ---------------------------------------------------------------------------------

/// One outbox row, as the parts of a message lead to it.
#[derive(Debug, Clone, PartialEq)]
struct OutboxRow {
    id: i64,
    state: OutboxState,
    text: String,
    data_coding: i64,
    last_error: Option<String>,
}

/// The outbox row each message_id leads to (None when it leads to none), read from
/// the broker's database as an operator would.
async fn outbox_rows(broker: &TestBroker) -> BTreeMap<String, Option<OutboxRow>> {
    type Joined = (
        i64,
        Option<i64>,
        Option<OutboxState>,
        Option<String>,
        Option<i64>,
        Option<String>,
    );
    let rows: Vec<Joined> = broker
        .db()
        .rows(
            "SELECT m.message_id, o.id, o.state, o.text, o.data_coding, o.last_error \
             FROM messages m LEFT JOIN outbox o ON o.id = m.outbox_id ORDER BY m.message_id",
        )
        .await;
    rows.into_iter()
        .map(|(message_id, id, state, text, data_coding, last_error)| {
            let row = id.map(|id| OutboxRow {
                id,
                state: state.expect("an outbox row has a state"),
                text: text.unwrap_or_default(),
                data_coding: data_coding.expect("an outbox row has a data_coding"),
                last_error,
            });
            (message_id.to_string(), row)
        })
        .collect()
}

async fn outbox_count(broker: &TestBroker) -> usize {
    let count: i64 = broker.db().scalar("SELECT count(*) FROM outbox").await;
    count.try_into().expect("a count")
}

/// The one outbox row every id in `ids` leads to.
fn the_row_of(rows: &BTreeMap<String, Option<OutboxRow>>, ids: &[&str]) -> OutboxRow {
    let found: Vec<&OutboxRow> = ids
        .iter()
        .map(|id| {
            rows.get(*id)
                .unwrap_or_else(|| panic!("message {id} has a messages row"))
                .as_ref()
                .unwrap_or_else(|| panic!("message {id} leads to an outbox row"))
        })
        .collect();
    assert!(
        found.iter().all(|row| *row == found[0]),
        "the ids {ids:?} all lead to one outbox row: {found:?}"
    );
    found[0].clone()
}

// ---------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------

/// bind_<kind> as demo; a submit (TX/TRX through smpplib's send_message; RX written
/// raw, since smpplib refuses); enquire_link; unbind; the broker closes.
async fn bind_submit_unbind(kind: &str) {
    let broker = TestBroker::builder().start().await;
    let t = run("bind", broker.addr(), &[kind]).await;
    t.assert_completed();
    t.assert_bound("esme", kind);
    if kind == "receiver" {
        t.response("submit_sm", "submit_sm_resp", ESME_RINVBNDSTS);
    } else {
        let id = t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
        broker.assert_stored(&[id], ENROUTE as u8).await;
    }
    t.assert_enquire_links_answered();
    t.assert_unbound("esme");
    t.assert_closed("esme");
    broker.wait_until_no_sessions("demo").await;
}

#[tokio::test]
async fn smpplib_binds_as_transmitter_submits_and_unbinds() {
    bind_submit_unbind("transmitter").await;
}

#[tokio::test]
async fn smpplib_binds_as_receiver_and_unbinds() {
    bind_submit_unbind("receiver").await;
}

#[tokio::test]
async fn smpplib_binds_as_transceiver_submits_and_unbinds() {
    bind_submit_unbind("transceiver").await;
}

#[tokio::test]
async fn smpplib_wrong_password_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let t = run(
        "bind_error",
        broker.addr(),
        &["transceiver", "demo", "wrong"],
    )
    .await;
    t.assert_completed();
    t.assert_bind_failed("esme", ESME_RBINDFAIL);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_disabled_bind_type_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let t = run(
        "bind_error",
        broker.addr(),
        &["transmitter", "rxonly", "rx"],
    )
    .await;
    t.assert_completed();
    t.assert_bind_failed("esme", ESME_RBINDFAIL);
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_too_many_sessions_is_rbindfail() {
    let broker = TestBroker::builder().start().await;
    let t = run("too_many_sessions", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("first", "transceiver");
    t.assert_bind_failed("second", ESME_RBINDFAIL);
    t.assert_closed("second");
    t.assert_unbound("first");
    t.assert_closed("first");
    t.assert_bound("third", "receiver");
    t.assert_unbound("third");
}

#[tokio::test]
async fn smpplib_bind_twice_is_ralybnd_and_the_session_stays_bound() {
    let broker = TestBroker::builder().start().await;
    let t = run("bind_twice", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transmitter");
    t.response("bind_receiver", "bind_receiver_resp", ESME_RALYBND);
    t.assert_enquire_links_answered();
    // Still bound as a transmitter: accepted (ESME_RINVBNDSTS would mean the bind
    // was lost).
    t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

#[tokio::test]
async fn smpplib_submit_before_bind_is_rinvbndsts() {
    let broker = TestBroker::builder().start().await;
    let t = run("submit_before_bind", broker.addr(), &[]).await;
    t.assert_completed();
    t.response("submit_sm", "submit_sm_resp", ESME_RINVBNDSTS);
    t.assert_enquire_links_answered();
    t.assert_bound("esme", "transmitter");
    t.assert_unbound("esme");
    t.assert_closed("esme");
}

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
async fn smpplib_binds_over_tls_trusting_the_broker_certificate() {
    let broker = TestBroker::builder().tls().start().await;
    let cert = broker.certificate().path.clone();
    let tls_addr = broker.tls_addr();
    let cert_arg = cert.to_str().expect("UTF-8 temp path");
    let t = run("tls", tls_addr, &[cert_arg]).await;
    t.assert_completed();
    t.first_of("connect_failed", "untrusted");
    t.check(
        t.find_of("bound", "untrusted").is_none(),
        "a client not trusting the certificate does not get through",
    );
    let tls_event = t.first_of("tls", "esme");
    t.check(
        tls_event.str("version").starts_with("TLSv1."),
        "a TLS session was negotiated",
    );
    t.assert_bound("esme", "transceiver");
    t.assert_enquire_links_answered();
    let id = t.accepted(t.response("submit_sm", "submit_sm_resp", ESME_ROK));
    broker.assert_stored(&[id], ENROUTE as u8).await;
    t.assert_unbound("esme");
    t.assert_closed("esme");
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

/// Issue 3 through smpplib's own text handling (`smpplib.gsm.make_parts`, one
/// send_message per part): GSM-7 with every extension character and @ (0x00),
/// UCS-2 with an emoji, ~400 GSM and ~200 UCS-2 characters in UDH parts (smpplib
/// cuts blindly: inside an ESC pair, inside a surrogate pair), the long GSM text in
/// SAR parts, and a data_sm. Every part gets its own message_id; once the client
/// is gone, the store knows every id as ENROUTE and the outbox holds one row per
/// message with the whole text.
#[tokio::test]
async fn smpplib_texts_and_long_messages_are_stored_whole() {
    texts_stored_whole(false).await;
}

/// The same over TLS.
#[tokio::test]
async fn smpplib_over_tls_texts_and_long_messages_are_stored_whole() {
    texts_stored_whole(true).await;
}

async fn texts_stored_whole(over_tls: bool) {
    let broker = start_broker(TestBroker::builder(), over_tls).await;
    let (addr, ca) = endpoint(&broker, over_tls);
    let t = smpplib(ca).run("texts", addr, &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");
    t.assert_unbound("esme");
    t.assert_closed("esme");
    broker.wait_until_no_sessions("demo").await;

    // label, data_coding, esm_class, parts (at least), what the text must contain
    let expected = [
        ("gsm7", 0, 0x00, 1.., "€{}[]~^\\|@"),
        ("ucs2", 8, 0x00, 1.., "😀"),
        ("long_gsm", 0, 0x40, 3.., "€"),
        ("long_ucs2", 8, 0x40, 3.., "😀"),
        ("long_sar", 0, 0x00, 3.., "€"),
        ("data_sm", 0, 0x00, 1.., "€"),
    ];
    let mut all_ids = Vec::new();
    let mut sent = Vec::new();
    for (label, data_coding, esm_class, min_parts, contains) in expected {
        let m = t.sent(label, data_coding, esm_class, min_parts, contains);
        let (text, parts) = (m.str("text"), m.int("parts"));
        let command = response_to(label);
        let responses = t.responses_labelled(label);
        t.check(
            responses.len() as i64 == parts
                && responses.iter().all(|e| e.str("command") == command),
            format_args!("{label}: one {command} per part"),
        );
        let ids: Vec<&str> = responses.iter().map(|e| t.accepted(e)).collect();
        all_ids.extend(ids.iter().copied());
        sent.push((label, text, data_coding, ids));
    }
    // smpplib's blind cuts fall where the script meant them to.
    t.check(
        t.message("long_gsm").str("first_part_tail").ends_with("1b"),
        "part 1 of long_gsm ends with the ESC of €",
    );
    t.check(
        t.message("long_ucs2").str("first_part_tail") == "d83d",
        "part 1 of long_ucs2 ends with the high surrogate of 😀",
    );
    t.check(
        t.message("long_gsm").str("text").chars().count() >= 390
            && t.message("long_ucs2").str("text").chars().count() >= 190,
        "about 400 GSM and 200 UCS-2 characters",
    );
    let distinct: std::collections::BTreeSet<&str> = all_ids.iter().copied().collect();
    t.check(
        distinct.len() == all_ids.len(),
        format_args!("every part has its own message_id: {all_ids:?}"),
    );

    broker.assert_stored(&all_ids, ENROUTE as u8).await;
    let rows = outbox_rows(&broker).await;
    let mut outbox_ids = std::collections::BTreeSet::new();
    for (label, text, data_coding, ids) in &sent {
        let row = the_row_of(&rows, ids);
        assert_eq!(&row.text, text, "{label}: the outbox holds the whole text");
        assert_eq!(row.data_coding, *data_coding, "{label}: {row:?}");
        assert_eq!(row.state, OutboxState::Queued, "{label}: {row:?}");
        outbox_ids.insert(row.id);
    }
    assert_eq!(outbox_ids.len(), sent.len(), "one outbox row per message");
    assert_eq!(outbox_count(&broker).await, sent.len(), "and no other");
}

/// query_sm (smpplib's query_message), replace_sm and cancel_sm (written and read
/// raw: smpplib 2.2.4 has neither) on waiting messages, and their refusals.
#[tokio::test]
async fn smpplib_query_replace_and_cancel_waiting_messages() {
    let broker = TestBroker::builder().start().await;
    let t = run("query_cancel_replace", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("esme", "transceiver");

    let kept = t.accepted(t.answer("submit kept", "submit_sm_resp", ESME_ROK));
    let doomed = t.accepted(t.answer("submit doomed", "submit_sm_resp", ESME_ROK));
    t.check(kept != doomed, "two messages, two message_ids");
    let waiting = t.queried("query kept", kept, ENROUTE);
    t.check(waiting.is_empty(), "no final_date while the message waits");
    t.answer("query unknown", "query_sm_resp", ESME_RINVMSGID);

    t.header_only("replace kept", "replace_sm_resp", ESME_ROK);
    let replaced = t
        .answer("replace kept", "replace_sm_resp", ESME_ROK)
        .str("text");
    t.check(
        t.queried("query kept after replace", kept, ENROUTE)
            .is_empty(),
        "still waiting after replace_sm",
    );

    t.header_only("cancel doomed", "cancel_sm_resp", ESME_ROK);
    let final_date = t.queried("query doomed", doomed, DELETED);
    t.check(
        final_date.len() == 16
            && final_date.ends_with("00+")
            && final_date[..13].bytes().all(|b| b.is_ascii_digit()),
        format_args!("final_date is an absolute time YYMMDDhhmmsst00+: {final_date:?}"),
    );
    t.header_only("cancel doomed again", "cancel_sm_resp", ESME_RCANCELFAIL);
    t.header_only("replace doomed", "replace_sm_resp", ESME_RREPLACEFAIL);
    t.header_only("cancel unknown", "cancel_sm_resp", ESME_RINVMSGID);
    t.header_only("replace unknown", "replace_sm_resp", ESME_RINVMSGID);

    // Cancelling part 2 of a long message cancels every part.
    let parts: Vec<&str> = t
        .responses_labelled("long")
        .iter()
        .map(|e| t.accepted(e))
        .collect();
    t.check(
        parts.len() as i64 == t.message("long").int("parts") && parts.len() >= 3,
        "every part of the long message answered",
    );
    t.header_only("cancel long part 2", "cancel_sm_resp", ESME_ROK);
    for (i, id) in parts.iter().enumerate() {
        t.queried(&format!("query long part {}", i + 1), id, DELETED);
    }
    t.assert_unbound("esme");
    t.assert_closed("esme");
    broker.wait_until_no_sessions("demo").await;

    broker.assert_stored(&[kept], ENROUTE as u8).await;
    let finals = broker.assert_stored(&[doomed], DELETED as u8).await;
    assert_eq!(
        final_date,
        smpp_broker::smpp::time::format_absolute(finals[0].expect("a final time")),
        "query_sm's final_date is the stored final time"
    );
    broker.assert_stored(&parts, DELETED as u8).await;
    let rows = outbox_rows(&broker).await;
    let row = the_row_of(&rows, &[kept]);
    assert_eq!(row.text, replaced, "replace_sm replaced the outbox text");
    assert_eq!(row.state, OutboxState::Queued, "{row:?}");
    let row = the_row_of(&rows, &[doomed]);
    assert_eq!(
        (row.state, row.last_error.as_deref()),
        (OutboxState::Done, Some("cancelled")),
        "{row:?}"
    );
    let row = the_row_of(&rows, &parts);
    assert_eq!(row.text, t.message("long").str("text"), "{row:?}");
    assert_eq!(
        (row.state, row.last_error.as_deref()),
        (OutboxState::Done, Some("cancelled")),
        "{row:?}"
    );
}

/// The events are read with serde_json from what the script's json.dumps writes:
/// ASCII only, other characters as \uXXXX and those beyond the BMP as surrogate
/// pairs. Every value comes back as it was.
#[test]
fn events_read_what_json_dumps_writes() {
    let text = "a\"b\\c\u{e9}\n\t€{}[]~^|@ Привет 你好 😀 \u{0}\u{7f}";
    let mut python = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\n\
             text = sys.stdin.buffer.read().decode('utf-8')\n\
             print(json.dumps({'event': 'recv', 'client': 'esme', 'n': -3, 'big': 2**40, \
             'ok': True, 'none': None, 'text': text}, sort_keys=True))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = python.stdin.take().expect("piped stdin");
        stdin.write_all(text.as_bytes()).expect("write to python3");
    }
    let output = python.wait_with_output().expect("python3 ends");
    assert!(output.status.success(), "{output:?}");
    let line = String::from_utf8(output.stdout).expect("UTF-8");
    let line = line.trim_end();
    assert!(
        line.is_ascii() && line.contains(r"\ud83d\ude00") && line.contains(r"\u0000"),
        "json.dumps escapes: {line}"
    );
    let event = Event::parse(line);
    assert!(event.is("recv"), "{event:?}");
    assert_eq!(event.line, line);
    assert_eq!(event.str("client"), "esme");
    assert_eq!(event.int("n"), -3);
    assert_eq!(event.int("big"), 1 << 40);
    assert_eq!(event.fields["ok"], serde_json::Value::Bool(true));
    assert_eq!(event.fields["none"], serde_json::Value::Null);
    assert_eq!(event.str("text"), text);
    assert_eq!(event.opt_int("text"), None, "a string is no integer");

    // A line that is no JSON object is kept, marked, and matched by nothing.
    let other = Event::parse("Traceback (most recent call last):");
    assert!(
        other.fields.is_empty() && other.name().is_empty(),
        "{other:?}"
    );
    assert!(other.line.ends_with(" Traceback (most recent call last):"));
    assert!(other.line.starts_with("(unparsed: "));
}

/// End to end with the sandbox: smpplib binds as transceiver, submits with
/// registered_delivery=1, gets the receipt for that message_id, and query_sm
/// agrees with it.
#[tokio::test]
async fn smpplib_gets_the_sandbox_receipt_and_query_sm_agrees() {
    sandbox_receipt(false).await;
}

/// The same over TLS.
#[tokio::test]
async fn smpplib_over_tls_gets_the_sandbox_receipt_and_query_sm_agrees() {
    sandbox_receipt(true).await;
}

/// A broker from `builder`, with a TLS listener too when `over_tls`.
async fn start_broker(builder: TestBrokerBuilder, over_tls: bool) -> TestBroker {
    if over_tls { builder.tls() } else { builder }.start().await
}

/// The address a scenario connects to, and the certificate it trusts over TLS.
fn endpoint(broker: &TestBroker, over_tls: bool) -> (SocketAddr, Option<&Path>) {
    if over_tls {
        (broker.tls_addr(), Some(broker.certificate().path.as_path()))
    } else {
        (broker.addr(), None)
    }
}

async fn sandbox_receipt(over_tls: bool) {
    let sandbox = TestBroker::builder().accounts(
        "[[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n\
         sent_after = \"50ms\"\ndelivered_after = \"200ms\"\n\
         [[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\n",
    );
    let broker = start_broker(sandbox, over_tls).await;
    let (addr, ca) = endpoint(&broker, over_tls);
    let t = smpplib(ca).run("receipt", addr, &[]).await;
    t.assert_completed();
    let id = t
        .accepted(t.answer("submit", "submit_sm_resp", ESME_ROK))
        .to_owned();
    let receipt = t.first_of("receipt", "esme");
    t.check(receipt.int("esm_class") == 4, "esm_class 0x04");
    t.check(
        receipt.str("receipted_message_id") == id,
        format_args!("the receipt names {id}: {}", receipt.line),
    );
    t.check(receipt.int("message_state") == 2, "DELIVERED");
    let short = receipt.str("short_message");
    t.check(
        short.starts_with(&format!("id:{id} sub:001 dlvrd:001 "))
            && short.contains(" stat:DELIVRD err:000 text:receipt please"),
        format_args!("Appendix B text: {short}"),
    );
    let final_date = t.queried("query after receipt", &id, 2);
    t.check(!final_date.is_empty(), "query_sm has the final date");
}

/// A long message from smpplib whose last part alone asks for a receipt, as Jasmin
/// 0.11 sends them: the phone is asked for a delivery report, and once it reports
/// the message delivered, the one receipt is the last part's.
#[tokio::test]
async fn smpplib_long_message_asking_on_its_last_part_gets_that_parts_receipt() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut script = smpplib(None).start("long_receipt", broker.addr(), &[]);
    let submitted = script.wait_for("submitted").await;
    assert_eq!(submitted.int("parts"), 3, "{submitted:?}");
    let (first, last) = (submitted.str("first"), submitted.str("last").to_owned());
    let accepted = fake.wait_for_accepted(1, PATIENCE).await;
    assert_eq!(
        accepted[0].id, first,
        "the set goes under its first part's id"
    );
    assert_eq!(
        accepted[0].with_delivery_report,
        Some(true),
        "a phone not asked for a report never reports DELIVRD"
    );
    broker.report_delivered(first).await;

    let t = script.finish().await;
    t.assert_completed();
    let receipt = t.only(t.all("receipt"), "receipt");
    t.check(
        receipt.str("receipted_message_id") == last,
        format_args!("the receipt names the last part {last}: {}", receipt.line),
    );
    t.check(
        receipt.str("short_message").contains(" stat:DELIVRD "),
        "DELIVRD",
    );
    // Every receipt a report stores is stored at once: once smpplib's answer has
    // removed the one it got, none is left for the parts that did not ask.
    eventually(
        PATIENCE,
        "no receipt left for the parts that did not ask",
        || async {
            match broker.db().deliveries_waiting().await {
                0 => Ok(()),
                left => Err(left),
            }
        },
    )
    .await;
}

/// Long incoming messages reach python-smpplib whole: the broker cuts them into UDH
/// segments and the client puts them back together, GSM 7-bit and UCS-2 alike.
#[tokio::test]
async fn smpplib_receives_long_incoming_messages_whole() {
    long_incoming_whole(false).await;
}

/// The same over TLS.
#[tokio::test]
async fn smpplib_over_tls_receives_long_incoming_messages_whole() {
    long_incoming_whole(true).await;
}

async fn long_incoming_whole(over_tls: bool) {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = start_broker(TestBroker::builder().upstream(&fake), over_tls).await;
    let (addr, ca) = endpoint(&broker, over_tls);
    let mut script = smpplib(ca).start("mo", addr, &["2"]);
    script.wait_for("listening").await;
    let gsm = "Long reply in GSM 7-bit with {braces} and 5€. ".repeat(8);
    let ucs2 = "Ответ на кириллице, длинный 😀 ".repeat(7);
    for (id, text) in [("m1", &gsm), ("m2", &ucs2)] {
        let event = serde_json::json!({"event": "sms:received", "payload": {
            "messageId": id, "message": text, "sender": "+4917611111111",
            "recipient": "+4915100000", "receivedAt": "2026-11-22T18:00:00.000Z"}});
        let status = broker.post_event("phone", &event).await;
        assert_eq!(status, 200);
    }
    let t = script.finish().await;
    t.assert_completed();
    let messages: Vec<&Event> = t.events.iter().filter(|e| e.is("mo")).collect();
    t.check(messages.len() == 2, "two whole messages");
    let octets = |e: &Event| hex_decode(e.str("octets_hex"));
    t.check(
        messages[0].int("data_coding") == 0
            && smpp_broker::text::gsm7::decode(&octets(messages[0])).as_deref()
                == Some(gsm.as_str()),
        "the GSM message whole",
    );
    t.check(
        messages[1].int("data_coding") == 8 && messages[1].str("text") == ucs2,
        "the UCS-2 message whole",
    );
    t.check(
        messages.iter().all(|m| m.str("source") == "4917611111111"),
        "from the sender",
    );
    let segments = t.count(|e| e.is("segment"));
    t.check(
        segments == 3 + 4,
        format_args!("3 GSM and 4 UCS-2 segments, not {segments}"),
    );
    t.check(
        t.events
            .iter()
            .filter(|e| e.is("segment"))
            .all(|e| match e.int("data_coding") {
                // Unpacked septets: a 6-octet UDH takes 7 of the 160.
                0 => e.int("octets") - 6 <= 153,
                _ => e.int("octets") <= 140,
            }),
        "each segment fits one SMS",
    );
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}
