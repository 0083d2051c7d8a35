//! Messages smpplib submits: texts and long messages stored whole, and query_sm,
//! replace_sm and cancel_sm on waiting ones.

use std::collections::BTreeMap;

use testkit::db::OutboxState;

use crate::script::response_to;

use super::*;

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
