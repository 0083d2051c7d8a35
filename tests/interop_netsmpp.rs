//! Net::SMPP (Perl, Debian's libnet-smpp-perl), a second independent ESME, against
//! the in-process broker.
//!
//! Each test starts the broker on 127.0.0.1:0 and runs `perl
//! tests/interop/netsmpp_client.pl SCENARIO HOST PORT [ARG...]` (killed after 60 s).
//! The script prints one JSON object per line: one per PDU Net::SMPP writes (`send`)
//! or reads (`recv`), one per answered request (`response`, with the script's
//! label), and the steps (`bound`, `submitted`, `receipt`, `segment`, `mo`,
//! `unbound`, `closed`, `done`, ...). The tests assert here on those lines and on
//! what the broker stored.
//!
//! Without Perl or Net::SMPP the tests fail and say what to install (`.ci/run`
//! installs libnet-smpp-perl). `NETSMPP_TRANSCRIPT=1 cargo test --test
//! interop_netsmpp -- --nocapture` prints every transcript.
//!
//! What Net::SMPP does that shapes the script: its synchronous requests read PDUs
//! until the response and drop whatever is not in its `handlers` table (by default
//! only enquire_link is), so the script installs handlers for deliver_sm and
//! unbind; it leaves TLVs as raw octets (a C-Octet String keeps its NUL) and warns
//! on stderr about tags it does not know, which the tests hold against the broker
//! by requiring an empty stderr; its deliver_sm_resp croaks without a message_id;
//! and it encodes no text, so the script uses Encode's gsm0338 and UTF-16BE.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use common::fake_smsgate::{FakeSmsGate, Mode};
use common::{start_broker, TestBroker, PATIENCE};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest a scenario script may run before it is killed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

const ESME_ROK: i64 = 0x00;
const ESME_RINVBNDSTS: i64 = 0x04;
const ESME_RBINDFAIL: i64 = 0x0D;

/// query_sm_resp and receipt message_state values (SMPP 3.4 5.2.28).
const ENROUTE: u8 = 1;
const DELIVERED: i64 = 2;

/// Net::SMPP's version, once per test binary; panics with what to install when
/// `perl -MNet::SMPP` fails.
fn net_smpp_version() -> &'static str {
    static VERSION: OnceLock<Result<String, String>> = OnceLock::new();
    let found = VERSION.get_or_init(|| {
        let output = std::process::Command::new("perl")
            .args(["-MNet::SMPP", "-e", "print $Net::SMPP::VERSION"])
            .stdin(Stdio::null())
            .output()
            .map_err(|err| {
                format!("cannot run perl ({err}): the Net::SMPP interop tests need Debian's perl")
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "Perl's Net::SMPP is not installed: the Net::SMPP interop tests need it \
                 (Debian: apt-get install libnet-smpp-perl; .ci/run installs it).\n\
                 perl said:\n{}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    match found {
        Ok(version) => version,
        Err(message) => panic!("{message}"),
    }
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/netsmpp_client.pl")
}

// ---------------------------------------------------------------------------------
// The events the script prints
// ---------------------------------------------------------------------------------

/// One JSON line of the script.
#[derive(Debug, Clone)]
struct Event {
    line: String,
    fields: serde_json::Map<String, Value>,
}

impl Event {
    fn parse(line: String) -> Event {
        let fields = match serde_json::from_str(&line) {
            Ok(Value::Object(fields)) => fields,
            // Not an event: kept in the transcript, matched by nothing.
            _ => serde_json::Map::new(),
        };
        Event { line, fields }
    }

    fn is(&self, name: &str) -> bool {
        self.fields.get("event").and_then(Value::as_str) == Some(name)
    }

    fn opt_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    fn opt_int(&self, key: &str) -> Option<i64> {
        self.fields.get(key).and_then(Value::as_i64)
    }

    fn str(&self, key: &str) -> &str {
        self.opt_str(key)
            .unwrap_or_else(|| panic!("no string {key:?} in {}", self.line))
    }

    fn int(&self, key: &str) -> i64 {
        self.opt_int(key)
            .unwrap_or_else(|| panic!("no integer {key:?} in {}", self.line))
    }
}

// ---------------------------------------------------------------------------------
// Running a scenario
// ---------------------------------------------------------------------------------

/// A running scenario script.
struct Script {
    scenario: String,
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
    events: Vec<Event>,
    deadline: Instant,
}

/// What a finished script printed, and how it ended (exit None: killed).
struct Transcript {
    scenario: String,
    events: Vec<Event>,
    stderr: String,
    exit: Option<i32>,
}

impl Script {
    fn start(scenario: &str, addr: SocketAddr, args: &[&str]) -> Script {
        net_smpp_version();
        let mut child = Command::new("perl")
            .arg(script_path())
            .arg(scenario)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start perl {}: {err}", script_path().display()));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text).await;
            text
        });
        Script {
            scenario: scenario.to_string(),
            child,
            stdout,
            stderr: Some(stderr),
            events: Vec::new(),
            deadline: Instant::now() + SCRIPT_LIMIT,
        }
    }

    async fn run(scenario: &str, addr: SocketAddr, args: &[&str]) -> Transcript {
        Script::start(scenario, addr, args).finish().await
    }

    /// The next line, or None at the end of the output or at the deadline.
    async fn next_event(&mut self) -> Option<Event> {
        match tokio::time::timeout_at(self.deadline, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => {
                let event = Event::parse(line);
                self.events.push(event.clone());
                Some(event)
            }
            _ => None,
        }
    }

    /// Reads events until one named `name`; fails with the transcript when the
    /// script ends or runs out of time first.
    async fn wait_for(&mut self, name: &str) -> Event {
        while let Some(event) = self.next_event().await {
            if event.is(name) {
                return event;
            }
        }
        let transcript = self.end().await;
        panic!("no {name:?} event\n{transcript}");
    }

    /// Reads the rest and waits for the exit (killing the script at the deadline).
    async fn finish(mut self) -> Transcript {
        while self.next_event().await.is_some() {}
        let transcript = self.end().await;
        if std::env::var_os("NETSMPP_TRANSCRIPT").is_some() {
            eprintln!("{transcript}");
        }
        transcript
    }

    async fn end(&mut self) -> Transcript {
        let exit = match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        let stderr = match self.stderr.take() {
            Some(task) => tokio::time::timeout(PATIENCE, task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
            None => String::new(),
        };
        Transcript {
            scenario: self.scenario.clone(),
            events: self.events.clone(),
            stderr,
            exit,
        }
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "--- Net::SMPP {} scenario {:?}: exit {:?} ---",
            net_smpp_version(),
            self.scenario,
            self.exit
        )?;
        for event in &self.events {
            writeln!(f, "  {}", event.line)?;
        }
        writeln!(f, "--- stderr ---\n{}--- end ---", self.stderr)
    }
}

impl Transcript {
    /// Fails with `what` and the whole transcript unless `ok`.
    fn check(&self, ok: bool, what: impl fmt::Display) {
        assert!(ok, "{what}\n{self}");
    }

    /// Exit 0 after "done", and nothing on stderr: Net::SMPP warns there about a
    /// TLV tag it does not know, a short read or an early EOF.
    fn assert_completed(&self) -> &Self {
        self.check(
            self.exit == Some(0) && self.events.iter().any(|e| e.is("done")),
            "the Net::SMPP script did not complete",
        );
        self.check(
            self.stderr.trim().is_empty(),
            "Net::SMPP printed nothing on stderr",
        );
        self
    }

    fn all(&self, name: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.is(name)).collect()
    }

    fn first(&self, name: &str) -> &Event {
        match self.events.iter().find(|e| e.is(name)) {
            Some(event) => event,
            None => panic!("no {name:?} event\n{self}"),
        }
    }

    /// The responses to the requests labelled `label`, each checked to be
    /// `command` with `status`.
    fn answers(&self, label: &str, command: &str, status: i64) -> Vec<&Event> {
        let found: Vec<&Event> = self
            .all("response")
            .into_iter()
            .filter(|e| e.opt_str("label") == Some(label))
            .collect();
        self.check(!found.is_empty(), format_args!("a response to {label:?}"));
        for event in &found {
            self.check(
                event.str("command") == command && event.int("status") == status,
                format_args!(
                    "{label:?} answered by {command}, status 0x{status:02X}: {}",
                    event.line
                ),
            );
        }
        found
    }

    /// The one response to `label`.
    fn answer(&self, label: &str, command: &str, status: i64) -> &Event {
        let found = self.answers(label, command, status);
        self.check(found.len() == 1, format_args!("one response to {label:?}"));
        found[0]
    }

    /// A message_id of 1 to 20 decimal digits in an accepted response.
    fn message_id<'a>(&self, event: &'a Event) -> &'a str {
        let id = event.opt_str("message_id").unwrap_or("");
        self.check(
            (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()),
            format_args!("a decimal message_id: {}", event.line),
        );
        id
    }

    /// The script's description of the message it labelled `label`.
    fn message(&self, label: &str) -> &Event {
        match self
            .all("message")
            .into_iter()
            .find(|e| e.opt_str("label") == Some(label))
        {
            Some(event) => event,
            None => panic!("no message {label:?}\n{self}"),
        }
    }

    /// Bound as `kind`: bind_<kind>_resp, status 0, system_id smpp-broker, and
    /// sc_interface_version 0x34 as Net::SMPP decoded the TLV.
    fn assert_bound(&self, kind: &str) {
        let bound = self.first("bound");
        self.check(
            bound.str("command") == format!("bind_{kind}_resp")
                && bound.int("status") == ESME_ROK
                && bound.str("system_id") == "smpp-broker"
                && bound.opt_int("sc_interface_version") == Some(0x34),
            format_args!("bound as {kind}: {}", bound.line),
        );
    }

    /// unbind answered by unbind_resp, then the broker closed the connection.
    fn assert_unbound_and_closed(&self) {
        let unbound = self.first("unbound");
        self.check(
            unbound.str("command") == "unbind_resp" && unbound.int("status") == ESME_ROK,
            format_args!("unbind answered: {}", unbound.line),
        );
        self.assert_closed();
    }

    fn assert_closed(&self) {
        self.check(
            self.all("still_open").is_empty() && self.all("data_before_close").is_empty(),
            "the broker closes the connection and sends nothing more",
        );
        self.first("closed");
    }

    /// Every PDU the broker sent and Net::SMPP read is one it knows, and every
    /// request of the broker's got its response with the same sequence number.
    fn assert_requests_answered(&self) {
        for recv in self.all("recv") {
            let command = recv.str("command");
            self.check(
                !command.starts_with("unknown"),
                format_args!("Net::SMPP knows every PDU: {}", recv.line),
            );
            if command.ends_with("_resp") || command == "generic_nack" {
                continue;
            }
            let response = format!("{command}_resp");
            let answered = self.events.iter().any(|e| {
                e.is("send")
                    && e.str("command") == response
                    && e.int("sequence") == recv.int("sequence")
                    && e.int("status") == ESME_ROK
            });
            self.check(answered, format_args!("Net::SMPP answered {}", recv.line));
        }
    }
}

// ---------------------------------------------------------------------------------
// What the broker stored
// ---------------------------------------------------------------------------------

/// For each stored message_id: the outbox row it belongs to (id, text, data_coding).
async fn outbox_of_messages(broker: &TestBroker) -> BTreeMap<String, (String, String, i64)> {
    let rows = common::db_rows(
        broker.dir.path(),
        "SELECT m.message_id, o.id, o.text, o.data_coding \
         FROM messages m JOIN outbox o ON o.id = m.outbox_id",
    )
    .await;
    rows.into_iter()
        .map(|r| {
            let data_coding = r[3].parse().expect("data_coding");
            (r[0].clone(), (r[1].clone(), r[2].clone(), data_coding))
        })
        .collect()
}

/// A count from the broker's database.
async fn count(broker: &TestBroker, sql: &str) -> usize {
    common::db_rows(broker.dir.path(), sql).await[0][0]
        .parse()
        .expect("a count")
}

/// Polls `sql` (a count) until it is `want`, failing after PATIENCE.
async fn wait_for_count(broker: &TestBroker, sql: &str, want: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = count(broker, sql).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{sql} stays {now}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn hex(octets: &[u8]) -> String {
    octets.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------
// Binding, submitting, unbinding
// ---------------------------------------------------------------------------------

/// bind_<kind> as demo, a submit_sm (Net::SMPP sends it whatever the bind, so a
/// receiver's is refused), enquire_link, unbind, and the broker closes.
async fn bind_submit_unbind(kind: &str) {
    let broker = start_broker("").await;
    let t = Script::run("bind", broker.addr(), &[kind]).await;
    t.assert_completed();
    t.assert_bound(kind);
    if kind == "receiver" {
        t.answer("submit", "submit_sm_resp", ESME_RINVBNDSTS);
    } else {
        let id = t.message_id(t.answer("submit", "submit_sm_resp", ESME_ROK));
        common::assert_stored(&broker, &[id], ENROUTE).await;
    }
    t.answer("ping", "enquire_link_resp", ESME_ROK);
    t.assert_unbound_and_closed();
    t.assert_requests_answered();
    common::wait_until_no_sessions(&broker, "demo").await;
}

#[tokio::test]
async fn netsmpp_binds_as_transceiver_submits_and_unbinds() {
    bind_submit_unbind("transceiver").await;
}

#[tokio::test]
async fn netsmpp_binds_as_transmitter_submits_and_unbinds() {
    bind_submit_unbind("transmitter").await;
}

#[tokio::test]
async fn netsmpp_binds_as_receiver_and_its_submit_is_rinvbndsts() {
    bind_submit_unbind("receiver").await;
}

#[tokio::test]
async fn netsmpp_wrong_password_is_rbindfail_and_the_broker_closes() {
    let broker = start_broker("").await;
    let t = Script::run(
        "bind_error",
        broker.addr(),
        &["transceiver", "demo", "wrong"],
    )
    .await;
    t.assert_completed();
    let failed = t.first("bind_failed");
    t.check(
        failed.str("command") == "bind_transceiver_resp" && failed.int("status") == ESME_RBINDFAIL,
        format_args!("ESME_RBINDFAIL: {}", failed.line),
    );
    t.assert_closed();
}

// ---------------------------------------------------------------------------------
// Texts
// ---------------------------------------------------------------------------------

/// GSM 03.38 (with extension characters and @ as 0x00), UCS-2 (Cyrillic and an
/// emoji as a surrogate pair), long GSM and UCS-2 texts that Net::SMPP's caller
/// cut into UDH parts (esm_class 0x40, 05 00 03 ref total seq), a long UCS-2 text
/// in submit_sm's message_payload and a GSM one in data_sm's: every part is
/// accepted with its own message_id, and each message is stored whole and
/// decoded, in one outbox row.
#[tokio::test]
async fn netsmpp_texts_and_long_messages_are_stored_whole() {
    let broker = start_broker("").await;
    let t = Script::run("texts", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("transceiver");
    t.assert_unbound_and_closed();
    t.assert_requests_answered();

    // label, data_coding, esm_class, parts, characters the text must have
    let expected: [(&str, i64, i64, i64, &str); 6] = [
        ("gsm7", 0, 0x00, 1, "€{}[]~^\\|@ΔΩ"),
        ("ucs2", 8, 0x00, 1, "Привет😀"),
        ("long_gsm", 0, 0x40, 3, "€{}[]"),
        ("long_ucs2", 8, 0x40, 3, "Привет😀"),
        ("payload", 8, 0x00, 1, "Привет😀"),
        ("data_sm", 0, 0x00, 1, "€[]@"),
    ];
    let stored = outbox_of_messages(&broker).await;
    let mut all_ids = Vec::new();
    let mut rows = std::collections::BTreeSet::new();
    for (label, data_coding, esm_class, parts, has) in expected {
        let m = t.message(label);
        let text = m.str("text");
        t.check(
            m.int("data_coding") == data_coding
                && m.int("esm_class") == esm_class
                && m.int("parts") == parts
                && has.chars().all(|c| text.contains(c)),
            format_args!(
                "{label}: data_coding {data_coding}, esm_class 0x{esm_class:02X}, {parts} \
                 parts, with {has:?}: {}",
                m.line
            ),
        );
        let command = if label == "data_sm" {
            "data_sm_resp"
        } else {
            "submit_sm_resp"
        };
        let ids: Vec<&str> = t
            .answers(label, command, ESME_ROK)
            .into_iter()
            .map(|e| t.message_id(e))
            .collect();
        assert_eq!(ids.len() as i64, parts, "{label}: one {command} a part");
        for id in &ids {
            let (row, stored_text, stored_coding) = stored
                .get(*id)
                .unwrap_or_else(|| panic!("{label}: message {id} is in an outbox row"));
            assert_eq!(row, ids[0], "{label}: every part in the first part's row");
            assert_eq!(stored_text, text, "{label}: stored whole and decoded");
            assert_eq!(*stored_coding, data_coding, "{label}");
        }
        rows.insert(ids[0].to_owned());
        all_ids.extend(ids);
    }
    let distinct: std::collections::BTreeSet<&&str> = all_ids.iter().collect();
    assert_eq!(
        distinct.len(),
        all_ids.len(),
        "a message_id a part: {all_ids:?}"
    );
    common::assert_stored(&broker, &all_ids, ENROUTE).await;
    assert_eq!(
        count(&broker, "SELECT count(*) FROM outbox").await,
        rows.len(),
        "one outbox row a message, and no other"
    );
}

// ---------------------------------------------------------------------------------
// Receipts and incoming messages, through the fake SMSGate
// ---------------------------------------------------------------------------------

/// The phone reports `message_id` delivered (unsigned webhook).
async fn post_delivered(broker: &TestBroker, message_id: &str) {
    let event = json!({"event": "sms:delivered", "payload": {
        "messageId": message_id, "deliveredAt": "2026-11-22T15:10:00.000Z"}});
    let status = common::post_event(broker.broker.http_addr(), "phone", &event).await;
    assert_eq!(status, 200, "the webhook is taken");
}

/// Net::SMPP submits with registered_delivery 1 and user_message_reference 4242;
/// once the phone has it and reports it delivered, the receipt reaches Net::SMPP as
/// deliver_sm (esm_class 0x04, the Appendix B text, the TLVs it knows by name), it
/// answers deliver_sm_resp and the broker lets the receipt go; query_sm says
/// DELIVERED.
#[tokio::test]
async fn netsmpp_gets_the_receipt_and_query_sm_agrees() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = common::upstream_broker::start(&fake, "").await;
    let mut script = Script::start("receipt", broker.addr(), &[]);
    let id = script
        .wait_for("submitted")
        .await
        .str("message_id")
        .to_owned();
    let accepted = fake.wait_for_accepted(1, PATIENCE).await;
    let text = script
        .events
        .iter()
        .find(|e| e.is("message"))
        .expect("the script said what it sent")
        .str("text")
        .to_owned();
    assert_eq!(
        accepted[0].text.as_deref(),
        Some(text.as_str()),
        "the phone got the text"
    );
    let enroute = format!("SELECT count(*) FROM outbox WHERE id = {id} AND state = 'enroute'");
    wait_for_count(&broker, &enroute, 1).await;
    post_delivered(&broker, &id).await;

    let t = script.finish().await;
    t.assert_completed();
    t.assert_bound("transceiver");
    t.check(
        t.message_id(t.answer("submit", "submit_sm_resp", ESME_ROK)) == id,
        "one id",
    );
    let receipts = t.all("receipt");
    t.check(receipts.len() == 1, "one receipt");
    let r = receipts[0];
    let first20: String = text.chars().take(20).collect();
    let short = r.str("short_message");
    t.check(
        r.int("esm_class") == 0x04 && r.int("data_coding") == 0,
        format_args!("esm_class 0x04, GSM text: {}", r.line),
    );
    t.check(
        short.starts_with(&format!("id:{id} sub:001 dlvrd:001 submit date:"))
            && short.contains(" done date:2611221510 ")
            && short.ends_with(&format!(" stat:DELIVRD err:000 text:{first20}")),
        format_args!("the Appendix B text: {short}"),
    );
    t.check(
        r.str("source_addr") == "4917612345"
            && r.str("destination_addr") == "4915112345"
            && r.str("ton_npi") == "1/1 > 1/1",
        format_args!("from the destination back to the source: {}", r.line),
    );
    t.check(
        r.str("receipted_message_id_hex") == hex(format!("{id}\0").as_bytes()),
        format_args!(
            "receipted_message_id is the C-Octet String {id}: {}",
            r.line
        ),
    );
    t.check(
        r.int("message_state") == DELIVERED
            && r.str("network_error_code_hex") == "030000"
            && r.int("user_message_reference") == 4242,
        format_args!(
            "message_state DELIVERED, no network error, our reference: {}",
            r.line
        ),
    );
    t.check(
        r.str("tlv_tags") == "0x001e,0x0204,0x0423,0x0427",
        format_args!("the receipt TLVs, all known to Net::SMPP: {}", r.line),
    );
    let query = t.answer("query", "query_sm_resp", ESME_ROK);
    t.check(
        query.str("message_id") == id
            && query.int("message_state") == DELIVERED
            && query.int("error_code") == 0
            && !query.str("final_date").is_empty(),
        format_args!("query_sm agrees: {}", query.line),
    );
    t.assert_unbound_and_closed();
    t.assert_requests_answered();
    wait_for_count(&broker, "SELECT count(*) FROM deliveries", 0).await;
}

/// Incoming messages reach Net::SMPP (bound as a receiver): a short one as one
/// deliver_sm with esm_class 0, long GSM and UCS-2 ones in UDH segments (esm_class
/// 0x40, 05 00 03 ref total seq) that the script puts back together; each text
/// whole, each segment within one SMS, and every delivery acknowledged.
#[tokio::test]
async fn netsmpp_receives_short_and_long_incoming_messages() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let broker = common::upstream_broker::start(&fake, "").await;
    let mut script = Script::start("mo", broker.addr(), &["3"]);
    script.wait_for("listening").await;
    let short = "Hi! See you at 5€ {ok}?".to_owned();
    let long_gsm = "A long reply in GSM 7-bit, with [brackets] and 5€. ".repeat(8);
    let long_ucs2 = "Длинный ответ по-русски 😀 ".repeat(8);
    for (id, text) in [("in-1", &short), ("in-2", &long_gsm), ("in-3", &long_ucs2)] {
        let event = json!({"event": "sms:received", "payload": {
            "messageId": id, "message": text, "sender": "+4917611111111",
            "recipient": "+4915100000", "receivedAt": "2026-11-22T18:00:00.000Z"}});
        let status = common::post_event(broker.broker.http_addr(), "phone", &event).await;
        assert_eq!(status, 200, "the webhook is taken");
    }
    let t = script.finish().await;
    t.assert_completed();
    t.assert_bound("receiver");
    t.assert_unbound_and_closed();
    t.assert_requests_answered();

    let mo = t.all("mo");
    t.check(mo.len() == 3, "three whole messages");
    for (text, data_coding, esm_class) in [
        (&short, 0, 0x00),
        (&long_gsm, 0, 0x40),
        (&long_ucs2, 8, 0x40),
    ] {
        let found: Vec<&&Event> = mo
            .iter()
            .filter(|e| e.opt_str("text") == Some(text))
            .collect();
        t.check(
            found.len() == 1,
            format_args!("received once, whole: {text:?}"),
        );
        let m = found[0];
        t.check(
            m.int("data_coding") == data_coding
                && m.int("esm_class") == esm_class
                && (m.int("parts") > 1) == (esm_class == 0x40)
                && m.str("source_addr") == "4917611111111",
            format_args!(
                "data_coding {data_coding}, esm_class 0x{esm_class:02X}: {}",
                m.line
            ),
        );
    }
    let segments = t.all("segment");
    let parts: i64 = mo
        .iter()
        .filter(|m| m.int("esm_class") == 0x40)
        .map(|m| m.int("parts"))
        .sum();
    t.check(
        segments.len() as i64 == parts,
        "every segment of the long ones, once",
    );
    for s in segments {
        let udh = format!(
            "050003{:02x}{:02x}{:02x}",
            s.int("reference"),
            s.int("total"),
            s.int("number")
        );
        let fits = match s.int("data_coding") {
            // Unpacked septets: 153 after the 6-octet UDH, which takes 7 of the 160.
            0 => s.int("octets") <= 6 + 153,
            _ => s.int("octets") <= 140,
        };
        t.check(
            s.str("udh_hex") == udh && fits,
            format_args!("an 8-bit reference UDH, within one SMS: {}", s.line),
        );
    }
    wait_for_count(&broker, "SELECT count(*) FROM deliveries", 0).await;
}

/// At shutdown the broker unbinds; Net::SMPP (through its handlers table) answers
/// unbind_resp, the broker closes, and shutdown does not wait out the 10 s
/// response_timeout it would spend on an unanswered unbind.
#[tokio::test]
async fn netsmpp_answers_the_brokers_unbind_at_shutdown() {
    let broker = start_broker("response_timeout = \"10s\"").await;
    let mut script = Script::start("server_unbind", broker.addr(), &[]);
    script.wait_for("listening").await;
    let started = Instant::now();
    let shutdown = tokio::spawn(broker.broker.shutdown());
    let t = script.finish().await;
    let finished = tokio::time::timeout(PATIENCE, shutdown).await;
    let took = started.elapsed();
    t.check(matches!(finished, Ok(Ok(()))), "Broker::shutdown completes");
    t.assert_completed();
    t.assert_bound("transceiver");
    t.check(
        t.all("recv")
            .iter()
            .filter(|e| e.str("command") == "unbind")
            .count()
            == 1,
        "Net::SMPP received the broker's unbind",
    );
    t.assert_requests_answered();
    t.assert_closed();
    t.check(
        took < Duration::from_secs(3),
        format_args!("shutdown took {took:?}: the answered unbind ends the session at once"),
    );
}
