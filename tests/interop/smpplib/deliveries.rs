//! What the broker delivers to smpplib: receipts (sandbox and a real report) and
//! long incoming messages.

use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::{eventually, PATIENCE};

use super::*;

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
