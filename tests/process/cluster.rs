//! Two broker nodes on one PostgreSQL database (a throwaway cluster of
//! Debian's binaries, testkit/src/postgres.rs), each a child process: a node
//! killed with SIGKILL loses nothing acknowledged and sends nothing twice,
//! another node takes its upstream's dispatch over with the rate still
//! holding, and an account's max_sessions counts the sessions of both.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smpp_broker::smpp::pdu::tlv::tag;
use smpp_broker::smpp::pdu::{BindKind, Body, CommandStatus, MessageIdResp, Pdu};
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::postgres::TestPostgres;
use testkit::process::BrokerProcess;
use testkit::sms::{receive_receipts, sm};
use testkit::Esme;

use crate::launch;

/// A node misses three heartbeats before the others take its work over.
const HEARTBEAT: &str = "300ms";

/// A node's config: its ports on 127.0.0.1, the shared database, `rest`.
fn cluster_config(dir: &Path, url: &str, rest: &str) -> PathBuf {
    let path = dir.join("broker.toml");
    let text = format!(
        "[smpp]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\n\
         [store]\nurl = \"{url}\"\nheartbeat = \"{HEARTBEAT}\"\nmax_connections = 8\n{rest}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn node(config: &Path, node_id: &str) -> BrokerProcess {
    launch(config)
        .envs([("SMPP_BROKER__STORE__NODE_ID", node_id)])
        .spawn()
}

fn database() -> String {
    let cluster = TestPostgres::shared().unwrap_or_else(|err| panic!("{err}"));
    cluster.new_database().unwrap()
}

/// An upstream on `fake` and the account `acme` sending to it.
fn phone_and_acme(fake: &FakeSmsGate, upstream_keys: &str, account_keys: &str) -> String {
    format!(
        "{}[[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nupstream = \"phone\"\n\
         throughput = 1000000\n{account_keys}\n",
        fake.upstream_table("phone", upstream_keys)
    )
}

/// Submits `count` messages one after another, receipts requested; their
/// message_ids.
async fn submit_some(addr: std::net::SocketAddr, first: u32, count: u32) -> Vec<String> {
    let mut esme = Esme::connect(addr).await;
    esme.bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    let mut ids = Vec::new();
    for n in first..first + count {
        let mut message = sm(0, 0, format!("message {n}").as_bytes());
        message.registered_delivery = 1;
        let resp = esme.request(Body::SubmitSm(message)).await;
        assert_eq!(resp.command_status, CommandStatus::ESME_ROK, "{resp:?}");
        let Body::SubmitSmResp(r) = resp.body else {
            panic!("{resp:?}")
        };
        ids.push(r.message_id);
    }
    ids
}

/// How long after the phone took a message its report comes.
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// Posts `sms:delivered` for every message the fake accepted, to the nodes in
/// turn (one that is down is skipped: the webhook goes to another), until
/// `stop`; the ids whose report a node acknowledged with 200.
async fn report_delivered(
    fake: Arc<FakeSmsGate>,
    nodes: Arc<Mutex<Vec<Option<std::net::SocketAddr>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> HashSet<String> {
    let mut reported = HashSet::new();
    // Reported a second after the phone took them: a resend of a message whose
    // answer was lost meets 409 first.
    let mut seen: std::collections::HashMap<String, Instant> = Default::default();
    let mut turn = 0;
    loop {
        let done = stop.load(std::sync::atomic::Ordering::SeqCst);
        for accepted in fake.accepted() {
            let first = *seen.entry(accepted.id.clone()).or_insert_with(Instant::now);
            if reported.contains(&accepted.id) || (!done && first.elapsed() < REPORT_AFTER) {
                continue;
            }
            let body = serde_json::json!({"event": "sms:delivered", "payload": {"messageId": accepted.id}});
            let addrs: Vec<std::net::SocketAddr> =
                nodes.lock().unwrap().iter().flatten().copied().collect();
            for k in 0..addrs.len() {
                turn += 1;
                let addr = addrs[(turn + k) % addrs.len()];
                let status = try_post(addr, &body).await;
                if status == 200 {
                    reported.insert(accepted.id.clone());
                    break;
                }
            }
        }
        if done {
            return reported;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The webhook's status, or 0 when the node did not answer (it is down).
async fn try_post(addr: std::net::SocketAddr, body: &serde_json::Value) -> u16 {
    let sent = reqwest::Client::new()
        .post(format!("http://{addr}/webhooks/phone"))
        .timeout(Duration::from_secs(5))
        .body(body.to_string())
        .send()
        .await;
    sent.map(|resp| resp.status().as_u16()).unwrap_or(0)
}

/// The two-node SIGKILL test of issue 15: an ESME bound to node A submits with
/// receipts requested while an ESME bound as receiver to node B takes the
/// receipts; A is killed with SIGKILL while messages are on their way, and
/// restarted. Every acknowledged message reached the fake exactly once, and
/// every receipt reached B's receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_dispatch_loses_no_message_and_no_receipt() {
    const BEFORE: u32 = 60;
    const AFTER: u32 = 40;
    let fake = Arc::new(FakeSmsGate::start(Mode::Cloud).await);
    // Every seventh request is taken and never answered: resent, it meets 409.
    fake.fail_every(7, testkit::fake_smsgate::Fault::AcceptThenReset);
    let url = database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rest = phone_and_acme(
        &fake,
        "rate = 40\nmax_in_flight = 4\nretry_schedule = [\"200ms\"]\n\
        request_timeout = \"2s\"",
        "",
    );
    let config_a = cluster_config(dir_a.path(), &url, &rest);
    let config_b = cluster_config(dir_b.path(), &url, &rest);
    let a = node(&config_a, "a");
    let b = node(&config_b, "b");

    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = receive_receipts(b.addr, "acme", "acme1234", heard.clone());
    let nodes = Arc::new(Mutex::new(vec![Some(a.http_addr), Some(b.http_addr)]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reporter = tokio::spawn(report_delivered(fake.clone(), nodes.clone(), stop.clone()));

    let mut acknowledged = submit_some(a.addr, 1, BEFORE).await;
    // At 40/s the kill finds most messages waiting and some on the wire.
    fake.wait_for_accepted(10, Duration::from_secs(20)).await;
    nodes.lock().unwrap()[0] = None;
    tokio::task::spawn_blocking(move || a.kill9())
        .await
        .unwrap();
    let at_kill = fake.accepted_count();
    assert!(
        at_kill < BEFORE as usize,
        "the kill came mid-dispatch: {at_kill}"
    );

    let a = node(&config_a, "a");
    nodes.lock().unwrap()[0] = Some(a.http_addr);
    acknowledged.extend(submit_some(a.addr, BEFORE + 1, AFTER).await);
    let total = acknowledged.len();
    fake.wait_for_accepted(total, Duration::from_secs(60)).await;

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reported = reporter.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let expected: HashSet<&String> = acknowledged.iter().collect();
    loop {
        let got: HashSet<String> = heard.lock().unwrap().iter().cloned().collect();
        if expected.iter().all(|id| got.contains(*id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "receipts missing at node B's receiver: {:?}",
            expected
                .iter()
                .filter(|id| !got.contains(**id))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut arrived: Vec<String> = fake.accepted().into_iter().map(|a| a.id).collect();
    arrived.sort();
    let mut wanted = acknowledged.clone();
    wanted.sort();
    assert_eq!(
        arrived, wanted,
        "each acknowledged message reached the phone exactly once"
    );
    let heard = heard.lock().unwrap().clone();
    let repeated = heard.len() - heard.iter().collect::<HashSet<_>>().len();
    println!(
        "cluster SIGKILL: acknowledged {total}, at the phone before the kill {at_kill}, \
         POST requests {}, reports acknowledged {}, receipts heard at B {} ({repeated} repeated)",
        fake.post_count(),
        reported.len(),
        heard.len()
    );
    receiver.abort();
    drop((a, b));
}

/// The node that holds an upstream's dispatch is killed: another node takes
/// it over within a minute, and the upstream's rate holds across the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_takes_an_upstreams_dispatch_over_at_its_rate() {
    const RATE: usize = 20;
    const SENT: u32 = 120;
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let url = database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rest = phone_and_acme(&fake, &format!("rate = {RATE}\nmax_in_flight = 4"), "");
    let config_a = cluster_config(dir_a.path(), &url, &rest);
    let config_b = cluster_config(dir_b.path(), &url, &rest);
    let a = node(&config_a, "a");
    // A took the upstream's lease first; B starts beside it.
    wait_for_lease(a.http_addr, "upstream:phone").await;
    let b = node(&config_b, "b");
    // Submitted through B: the lease, not the session, decides who sends.
    let acknowledged = submit_some(b.addr, 1, SENT).await;
    fake.wait_for_accepted(30, Duration::from_secs(20)).await;
    let killed_at = tokio::time::Instant::now();
    tokio::task::spawn_blocking(move || a.kill9())
        .await
        .unwrap();
    let arrived = fake
        .wait_for_accepted(SENT as usize, Duration::from_secs(90))
        .await;
    let mut ids: Vec<String> = arrived.iter().map(|a| a.id.clone()).collect();
    ids.sort();
    let mut wanted = acknowledged.clone();
    wanted.sort();
    assert_eq!(ids, wanted, "each message reached the phone exactly once");

    let times = fake.arrivals();
    let resumed = times
        .iter()
        .find(|t| **t > killed_at)
        .map(|t| t.duration_since(killed_at))
        .expect("arrivals after the kill");
    assert!(
        resumed < Duration::from_secs(60),
        "taken over after {resumed:?}"
    );
    // In any second, at most the rate (and a request's slack at the edges).
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(
        busiest <= RATE + 2,
        "{busiest} requests in one second at rate {RATE}"
    );
    println!(
        "dispatch takeover: resumed {resumed:?} after the kill, busiest second {busiest} \
         requests at rate {RATE}"
    );
    drop(b);
}

/// Waits until the node at `http` holds `lease` (its /readyz says so).
async fn wait_for_lease(http: std::net::SocketAddr, lease: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = match reqwest::get(format!("http://{http}/readyz")).await {
            Ok(resp) => resp.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let ready: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let leases = &ready["node"]["leases"];
        if leases
            .as_array()
            .is_some_and(|held| held.iter().any(|l| l == lease))
        {
            return;
        }
        assert!(Instant::now() < deadline, "{lease} never held: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// max_sessions counts the sessions on every node; a webhook to either node
/// is taken; the receipt reaches the receiver on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_counts_both_nodes_and_either_takes_webhooks() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let url = database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rest = phone_and_acme(&fake, "rate = 100", "max_sessions = 2");
    let a = node(&cluster_config(dir_a.path(), &url, &rest), "a");
    let b = node(&cluster_config(dir_b.path(), &url, &rest), "b");

    let mut receiver = Esme::connect(a.addr).await;
    receiver
        .bind_ok(BindKind::Receiver, "acme", "acme1234")
        .await;
    let mut transmitter = Esme::connect(b.addr).await;
    transmitter
        .bind_ok(BindKind::Transmitter, "acme", "acme1234")
        .await;
    // A third session, on either node, is one too many.
    for addr in [a.addr, b.addr] {
        let mut third = Esme::connect(addr).await;
        let resp = third.bind(BindKind::Transmitter, "acme", "acme1234").await;
        assert_eq!(
            resp.command_status,
            CommandStatus::ESME_RBINDFAIL,
            "{resp:?}"
        );
    }

    let mut message = sm(0, 0, b"hello cluster");
    message.registered_delivery = 1;
    let resp = transmitter.request(Body::SubmitSm(message)).await;
    let Body::SubmitSmResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    fake.wait_for_accepted(1, Duration::from_secs(20)).await;
    // Reported to B, where the message was submitted; the receiver is on A.
    let body =
        serde_json::json!({"event": "sms:delivered", "payload": {"messageId": r.message_id}});
    assert_eq!(testkit::post_event(b.http_addr, "phone", &body).await, 200);
    let pdu = receiver
        .recv_within(Duration::from_secs(20))
        .await
        .expect("the receipt, through node A");
    let Body::DeliverSm(receipt) = pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!(
        receipt.tlvs.get_cstring(tag::RECEIPTED_MESSAGE_ID),
        Some(r.message_id.clone())
    );
    receiver
        .send(&Pdu::new(
            pdu.sequence_number,
            Body::DeliverSmResp(MessageIdResp::default()),
        ))
        .await;

    // The transmitter leaves B: its place is free on A at once.
    drop(transmitter);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut again = Esme::connect(a.addr).await;
        let resp = again.bind(BindKind::Transmitter, "acme", "acme1234").await;
        if resp.command_status == CommandStatus::ESME_ROK {
            break;
        }
        assert!(Instant::now() < deadline, "the freed place never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((a, b));
}

/// A receiver that leaves with a receipt unacknowledged: the receipt goes to
/// the other node's receiver at once, not when its node's claim (30 s) runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_left_unacknowledged_on_one_node_goes_to_the_other_at_once() {
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let url = database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rest = phone_and_acme(&fake, "rate = 100", "");
    let a = node(&cluster_config(dir_a.path(), &url, &rest), "a");
    let b = node(&cluster_config(dir_b.path(), &url, &rest), "b");

    // A receiver on A that reads and never answers.
    let mut silent = Esme::connect(a.addr).await;
    silent.bind_ok(BindKind::Receiver, "acme", "acme1234").await;
    let id = submit_some(a.addr, 1, 1).await.remove(0);
    fake.wait_for_accepted(1, Duration::from_secs(20)).await;
    let body = serde_json::json!({"event": "sms:delivered", "payload": {"messageId": id}});
    assert_eq!(try_post(a.http_addr, &body).await, 200);
    let pdu = silent
        .recv_within(Duration::from_secs(20))
        .await
        .expect("the receipt at A's receiver");
    assert!(matches!(pdu.body, Body::DeliverSm(_)), "{pdu:?}");

    // B's receiver does not get it while A's receiver holds it…
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let receiver = testkit::sms::receive_receipts(b.addr, "acme", "acme1234", heard.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        heard.lock().unwrap().is_empty(),
        "delivered by two nodes at once"
    );
    // …and gets it soon after that receiver leaves.
    let left = Instant::now();
    drop(silent);
    while !heard.lock().unwrap().contains(&id) {
        assert!(
            left.elapsed() < Duration::from_secs(10),
            "not handed over within 10 s of the receiver leaving"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("handed over {:?} after the receiver left", left.elapsed());
    receiver.abort();
    drop((a, b));
}
