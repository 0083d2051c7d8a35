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
//! interop netsmpp -- --nocapture` prints every transcript.
//!
//! What Net::SMPP does that shapes the script: its synchronous requests read PDUs
//! until the response and drop whatever is not in its `handlers` table (by default
//! only enquire_link is), so the script installs handlers for deliver_sm and
//! unbind; it leaves TLVs as raw octets (a C-Octet String keeps its NUL) and warns
//! on stderr about tags it does not know, which the tests hold against the broker
//! by requiring an empty stderr; its deliver_sm_resp croaks without a message_id;
//! and it encodes no text, so the script uses Encode's gsm0338 and UTF-16BE.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::json;
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::{eventually, TestBroker, PATIENCE};

use crate::script::{response_to, Client, Event, Transcript};

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

/// The scenarios of `tests/interop/netsmpp_client.pl`, once Net::SMPP is there.
/// Net::SMPP warns on stderr about a TLV tag it does not know, a short read or an
/// early EOF, so a completed scenario must have left stderr empty.
fn netsmpp() -> Client {
    Client {
        name: format!("Net::SMPP {}", net_smpp_version()),
        program: "perl",
        script: "tests/interop/netsmpp_client.pl",
        env: Vec::new(),
        print_var: "NETSMPP_TRANSCRIPT",
        quiet_stderr: true,
    }
}

// ---------------------------------------------------------------------------------
// What the script printed
// ---------------------------------------------------------------------------------

/// What the Net::SMPP script's transcript must show.
trait NetSmppTranscript {
    /// The responses to the requests labelled `label`, each checked to be
    /// `command` with `status`.
    fn answers(&self, label: &str, command: &str, status: i64) -> Vec<&Event>;

    /// The one response to `label`.
    fn answer(&self, label: &str, command: &str, status: i64) -> &Event;

    /// Bound as `kind`: bind_<kind>_resp, status 0, system_id smpp-broker, and
    /// sc_interface_version 0x34 as Net::SMPP decoded the TLV.
    fn assert_bound(&self, kind: &str);

    /// unbind answered by unbind_resp, then the broker closed the connection.
    fn assert_unbound_and_closed(&self);

    /// The broker closed the connection and sent nothing more.
    fn assert_closed(&self);

    /// Every PDU the broker sent and Net::SMPP read is one it knows, and every
    /// request of the broker's got its response with the same sequence number.
    fn assert_requests_answered(&self);
}

impl NetSmppTranscript for Transcript {
    fn answers(&self, label: &str, command: &str, status: i64) -> Vec<&Event> {
        let found = self.labelled("response", label);
        self.check(!found.is_empty(), format_args!("a response to {label:?}"));
        for event in &found {
            self.check_answer(event, label, command, status);
        }
        found
    }

    fn answer(&self, label: &str, command: &str, status: i64) -> &Event {
        let found = self.answers(label, command, status);
        self.only(found, format_args!("response to {label:?}"))
    }

    fn assert_bound(&self, kind: &str) {
        self.check_bound(self.first("bound"), kind);
    }

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
    let rows: Vec<(i64, i64, Option<String>, i64)> = broker
        .db()
        .rows(
            "SELECT m.message_id, o.id, o.text, o.data_coding \
             FROM messages m JOIN outbox o ON o.id = m.outbox_id",
        )
        .await;
    rows.into_iter()
        .map(|(message_id, outbox_id, text, data_coding)| {
            let row = (outbox_id.to_string(), text.unwrap_or_default(), data_coding);
            (message_id.to_string(), row)
        })
        .collect()
}

/// A count from the broker's database.
async fn count(broker: &TestBroker, sql: &str) -> usize {
    let count: i64 = broker.db().scalar(sql).await;
    count.try_into().expect("a count")
}

/// Polls `sql` (a count) until it is `want`, failing after PATIENCE.
async fn wait_for_count(broker: &TestBroker, sql: &str, want: usize) {
    eventually(PATIENCE, &format!("{sql} is {want}"), || async {
        match count(broker, sql).await {
            now if now == want => Ok(()),
            now => Err(now),
        }
    })
    .await
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
    let broker = TestBroker::builder().start().await;
    let t = netsmpp().run("bind", broker.addr(), &[kind]).await;
    t.assert_completed();
    t.assert_bound(kind);
    if kind == "receiver" {
        t.answer("submit", "submit_sm_resp", ESME_RINVBNDSTS);
    } else {
        let id = t.message_id(t.answer("submit", "submit_sm_resp", ESME_ROK));
        broker.assert_stored(&[id], ENROUTE).await;
    }
    t.answer("ping", "enquire_link_resp", ESME_ROK);
    t.assert_unbound_and_closed();
    t.assert_requests_answered();
    broker.wait_until_no_sessions("demo").await;
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
    let broker = TestBroker::builder().start().await;
    let t = netsmpp()
        .run(
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
    let broker = TestBroker::builder().start().await;
    let t = netsmpp().run("texts", broker.addr(), &[]).await;
    t.assert_completed();
    t.assert_bound("transceiver");
    t.assert_unbound_and_closed();
    t.assert_requests_answered();

    // label, data_coding, esm_class, parts, characters the text must have
    let expected = [
        ("gsm7", 0, 0x00, 1..=1, "€{}[]~^\\|@ΔΩ"),
        ("ucs2", 8, 0x00, 1..=1, "Привет😀"),
        ("long_gsm", 0, 0x40, 3..=3, "€{}[]"),
        ("long_ucs2", 8, 0x40, 3..=3, "Привет😀"),
        ("payload", 8, 0x00, 1..=1, "Привет😀"),
        ("data_sm", 0, 0x00, 1..=1, "€[]@"),
    ];
    let stored = outbox_of_messages(&broker).await;
    let mut all_ids = Vec::new();
    let mut rows = std::collections::BTreeSet::new();
    for (label, data_coding, esm_class, parts, has) in expected {
        let m = t.sent(label, data_coding, esm_class, parts, has);
        let (text, parts) = (m.str("text"), m.int("parts"));
        let command = response_to(label);
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
    broker.assert_stored(&all_ids, ENROUTE).await;
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
    let status = broker.post_event("phone", &event).await;
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
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut script = netsmpp().start("receipt", broker.addr(), &[]);
    let id = script
        .wait_for("submitted")
        .await
        .str("message_id")
        .to_owned();
    let accepted = fake.wait_for_accepted(1, PATIENCE).await;
    let text = script
        .events()
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
    let broker = TestBroker::builder().upstream(&fake).start().await;
    let mut script = netsmpp().start("mo", broker.addr(), &["3"]);
    script.wait_for("listening").await;
    let short = "Hi! See you at 5€ {ok}?".to_owned();
    let long_gsm = "A long reply in GSM 7-bit, with [brackets] and 5€. ".repeat(8);
    let long_ucs2 = "Длинный ответ по-русски 😀 ".repeat(8);
    for (id, text) in [("in-1", &short), ("in-2", &long_gsm), ("in-3", &long_ucs2)] {
        let event = json!({"event": "sms:received", "payload": {
            "messageId": id, "message": text, "sender": "+4917611111111",
            "recipient": "+4915100000", "receivedAt": "2026-11-22T18:00:00.000Z"}});
        let status = broker.post_event("phone", &event).await;
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
    let broker = TestBroker::builder()
        .smpp("response_timeout = \"10s\"")
        .start()
        .await;
    let (t, took) = netsmpp()
        .start("server_unbind", broker.addr(), &[])
        .finish_under_shutdown(broker.broker)
        .await;
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
