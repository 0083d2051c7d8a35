//! Nothing acknowledged is lost: the broker is killed with SIGKILL while submits are
//! in flight, restarted on the same database, and every message_id it handed out
//! is still known.

use std::collections::HashMap;

use bytes::Bytes;
use testkit::db::Db;
use testkit::process::write_config;

use crate::launch;
use smpp_broker::smpp::pdu::{Address, BindKind, Body, CommandStatus, Pdu, QuerySm, Sm};
use testkit::Esme;

const ACCOUNT: &str = "[[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\nthroughput = 1000000\n";

fn submit(n: u32) -> Body {
    Body::SubmitSm(Sm {
        source: Address::new(1, 1, "4915100000"),
        dest: Address::new(1, 1, format!("49176{n:07}")),
        short_message: Bytes::from(format!("message {n}")),
        ..Sm::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_submits_survive_sigkill() {
    const SENT: u32 = 2000;
    const KILL_AFTER: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), ACCOUNT);
    let broker = launch(&config).spawn();
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;

    // Everything goes out at once; the kill lands while later submits are in flight.
    for seq in 1..=SENT {
        esme.send(&Pdu::new(seq, submit(seq))).await;
    }
    let mut acknowledged: HashMap<String, u32> = HashMap::new();
    while acknowledged.len() < KILL_AFTER {
        let resp = esme.recv_some().await;
        // Beyond the session's in-flight window the broker throttles: not acknowledged.
        if resp.command_status == CommandStatus::ESME_RTHROTTLED {
            continue;
        }
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
        let Body::SubmitSmResp(r) = resp.body else {
            panic!("{resp:?}")
        };
        acknowledged.insert(r.message_id, resp.sequence_number);
    }
    broker.kill9();

    let broker = launch(&config).spawn();
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transceiver, "demo", "demo1234")
        .await;
    for (message_id, seq) in &acknowledged {
        let q = QuerySm {
            message_id: message_id.clone(),
            source: Address::new(1, 1, "4915100000"),
        };
        let resp = esme.request(Body::QuerySm(q)).await;
        assert!(
            resp.command_status.is_ok(),
            "message {seq} ({message_id}) was lost: {resp:?}"
        );
        let Body::QuerySmResp(r) = resp.body else {
            panic!("{resp:?}")
        };
        assert_eq!(r.message_state, 1, "still ENROUTE");
    }
    let stored: i64 = Db::at(dir.path())
        .scalar("SELECT count(*) FROM outbox WHERE text LIKE 'message %'")
        .await;
    let stored = usize::try_from(stored).unwrap();
    println!(
        "acknowledged before SIGKILL: {}, stored after restart: {stored}",
        acknowledged.len()
    );
    assert!(stored >= acknowledged.len());
}

/// A SIGKILL while the dispatcher is sending: after the restart every
/// acknowledged message reaches the upstream, and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_dispatch_loses_and_repeats_nothing() {
    use testkit::fake_smsgate::{FakeSmsGate, Mode};
    const SENT: u32 = 60;
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    // Every fifth request is taken but never answered: those must not come twice.
    fake.fail_every(5, testkit::fake_smsgate::Fault::AcceptThenReset);
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!(
        "[[upstreams]]\nname = \"phone\"\nkind = \"smsgate\"\nbase_url = \"{}\"\n\
         username = \"{}\"\npassword = \"{}\"\ndevice_id = \"{}\"\nrate = 20\n\
         max_in_flight = 4\nretry_schedule = [\"100ms\"]\n\
         [[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nupstream = \"phone\"\n",
        fake.base_url(),
        fake.username(),
        fake.password(),
        fake.device_id()
    );
    let config = write_config(dir.path(), &upstream);
    let broker = launch(&config).spawn();
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    use smpp_broker::text::gsm7;
    use testkit::sms::{sm, submit_ok, udh8};
    // (message_id, the text the upstream must receive)
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let gsm_text = "{curly} [square] ~tilde^ \\back|pipe €uro";
    let id = submit_ok(&mut esme, sm(0, 0, &gsm7::encode(gsm_text).unwrap())).await;
    acknowledged.push((id, gsm_text.into()));
    let emoji = "Grüße 😀 مرحبا";
    let ucs2: Vec<u8> = emoji.encode_utf16().flat_map(u16::to_be_bytes).collect();
    acknowledged.push((submit_ok(&mut esme, sm(8, 0, &ucs2)).await, emoji.into()));
    let first = submit_ok(
        &mut esme,
        sm(0, 0x40, &udh8(3, 2, 1, "Long messages survive, ")),
    )
    .await;
    submit_ok(&mut esme, sm(0, 0x40, &udh8(3, 2, 2, "in one piece."))).await;
    acknowledged.push((first, "Long messages survive, in one piece.".into()));
    for n in 4..=SENT {
        let resp = esme.request(submit(n)).await;
        let Body::SubmitSmResp(r) = resp.body else {
            panic!("{resp:?}")
        };
        acknowledged.push((r.message_id, format!("message {n}")));
    }
    // 20/s: a third of the way through, requests are on the wire.
    fake.wait_for_accepted(20, std::time::Duration::from_secs(10))
        .await;
    broker.kill9();
    let before_restart = fake.accepted().len();
    assert!(before_restart < SENT as usize, "the kill came mid-dispatch");

    let broker = launch(&config).spawn();
    let arrived = fake
        .wait_for_accepted(SENT as usize, std::time::Duration::from_secs(20))
        .await;
    let mut received: Vec<(String, String)> = arrived
        .iter()
        .map(|a| (a.id.clone(), a.text.clone().unwrap_or_default()))
        .collect();
    received.sort();
    let mut expected = acknowledged.clone();
    expected.sort();
    assert_eq!(
        received, expected,
        "each acknowledged message arrived exactly once, with its text"
    );
    assert!(
        fake.post_count() > SENT as usize,
        "resends met the 409 path"
    );
    println!(
        "acknowledged {SENT}, arrived before the kill {before_restart}, \
         arrived in all {}, POST requests {}",
        arrived.len(),
        fake.post_count()
    );
    drop(broker);
}

/// A SIGKILL after the webhook's 2xx and before any receiver took the receipt:
/// after the restart the receipt still arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_acknowledged_to_the_phone_survives_sigkill() {
    use smpp_broker::smpp::pdu::tlv::tag;
    use testkit::fake_smsgate::{FakeSmsGate, Mode};
    use testkit::sms::{sm, submit_ok};
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let dir = tempfile::tempdir().unwrap();
    let upstream = format!(
        "[[upstreams]]\nname = \"phone\"\nkind = \"smsgate\"\nbase_url = \"{}\"\n\
         username = \"{}\"\npassword = \"{}\"\nrate = 100\n\
         [[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nupstream = \"phone\"\n",
        fake.base_url(),
        fake.username(),
        fake.password(),
    );
    let config = write_config(dir.path(), &upstream);
    let broker = launch(&config).spawn();
    let mut transmitter = Esme::connect(broker.addr).await;
    transmitter
        .bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    let id = submit_ok(&mut transmitter, sm(0, 0, b"survive")).await;
    fake.wait_for_accepted(1, std::time::Duration::from_secs(10))
        .await;
    let body = serde_json::json!({"event": "sms:delivered", "payload": {"messageId": id}});
    // The broker may still be recording the 202: a report before it is fine too.
    assert_eq!(
        testkit::post_event(broker.http_addr, "phone", &body).await,
        200
    );
    broker.kill9();

    let broker = launch(&config).spawn();
    let mut receiver = Esme::connect(broker.addr).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;
    let pdu = receiver
        .recv_within(std::time::Duration::from_secs(10))
        .await
        .expect("the receipt after the restart");
    let Body::DeliverSm(receipt) = pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(
        receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID),
        Some(id)
    );
    assert_eq!(receipt.tlvs.get_u8(tag::MESSAGE_STATE), Some(2));
}

/// A SIGKILL while reports and acknowledgements go through the writer in
/// batches: an instant sandbox reports in batches, a receiver answers every
/// deliver_sm at once (its answers stored as sets), and the kill lands while
/// receipts stream. After the restart every acknowledged message still gets its
/// delivered receipt, and each message is final once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_inside_batched_reports_and_acknowledgements_loses_no_receipt() {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use testkit::sms::receive_receipts;
    const SENT: u32 = 1_500;
    const KILL_AT_RECEIPTS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let accounts = "[[upstreams]]\nname = \"instant\"\nkind = \"sandbox\"\nrate = 1000000\n\
        max_in_flight = 500\nsent_after = \"0s\"\ndelivered_after = \"0s\"\n\
        [[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nupstream = \"instant\"\n\
        throughput = 1000000\n";
    let config = write_config(dir.path(), accounts);

    // Receipted message_ids, as a receiver heard them (repeats allowed).
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();

    let broker = launch(&config).spawn();
    let first_receiver = receive_receipts(broker.addr, "acme", "acme1234", heard.clone());
    let mut transmitter = Esme::connect(broker.addr).await;
    transmitter
        .bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    // Submits go out 32 at a time (the session's window is larger); what the
    // broker acknowledged before the kill is what must come back.
    let (mut next, mut outstanding) = (1, 0);
    let mut acknowledged: HashSet<String> = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while heard.lock().unwrap().len() < KILL_AT_RECEIPTS {
        assert!(
            std::time::Instant::now() < deadline,
            "receipts did not flow"
        );
        while outstanding < 32 && next <= SENT {
            let Body::SubmitSm(mut sm) = submit(next) else {
                unreachable!()
            };
            sm.registered_delivery = 1;
            transmitter.send(&Pdu::new(next, Body::SubmitSm(sm))).await;
            (next, outstanding) = (next + 1, outstanding + 1);
        }
        if outstanding == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let resp = transmitter.recv_within(Duration::from_secs(20)).await;
        let Some(resp) = resp else {
            panic!("no answer")
        };
        outstanding -= 1;
        if let Body::SubmitSmResp(r) = resp.body {
            assert_eq!(resp.command_status, CommandStatus::ESME_ROK);
            acknowledged.insert(r.message_id);
        }
    }
    broker.kill9();
    // Answers already on their way to us were acknowledged too.
    while let Ok(Some(resp)) = transmitter.try_recv().await {
        if let Body::SubmitSmResp(r) = resp.body {
            if resp.command_status == CommandStatus::ESME_ROK {
                acknowledged.insert(r.message_id);
            }
        }
    }
    first_receiver.await.unwrap();
    let before = heard.lock().unwrap().len();
    assert!(
        before < acknowledged.len(),
        "the kill came while receipts streamed: {before} of {}",
        acknowledged.len()
    );

    let broker = launch(&config).spawn();
    let second_receiver = receive_receipts(broker.addr, "acme", "acme1234", heard.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let heard: HashSet<String> = heard.lock().unwrap().iter().cloned().collect();
            acknowledged.difference(&heard).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} acknowledged messages got no receipt",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(broker);
    second_receiver.abort();

    let messages = Db::at(dir.path()).messages().await;
    let delivered: HashSet<String> = messages
        .iter()
        .filter(|m| m.state == smpp_broker::store::MessageState::Delivered)
        .map(|m| m.message_id.to_string())
        .collect();
    assert_eq!(
        messages.len(),
        delivered.len(),
        "every message is final once"
    );
    assert!(acknowledged.is_subset(&delivered));
    let repeated = heard.lock().unwrap().len() - acknowledged.len();
    println!(
        "acknowledged {}, receipts heard before the kill {before}, repeated after it {repeated}",
        acknowledged.len()
    );
}
