//! Routes across several upstreams, each a fake SMSGate phone: which member of
//! a pool carries each message (weights, sticky recipients, the fallback tier),
//! members that refuse, time out or reach their carrier limits, routes chosen
//! by destination prefix and account, and what /readyz and /metrics say about
//! the members. Throughout, every message reaches exactly one member, once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use smpp_broker::clock::ManualClock;
use smpp_broker::smpp::pdu::{Address, CommandStatus, Sm};
use smpp_broker::text::gsm7;
use testkit::db::OutboxState;
use testkit::fake_smsgate::{FakeSmsGate, Fault, Mode};
use testkit::sms::{bound, sm, submit_all, submit_ok, submit_status};
use testkit::{eventually, Esme, TestBroker, PATIENCE};
use tokio::net::TcpStream;

mod choice;
mod failures;
mod limits;

/// Keys every fake upstream gets unless a test gives its own: quick (so that
/// the tests are), quick retries, and a pause after a 401 that outlasts any
/// test.
const FAST: [(&str, &str); 3] = [
    ("rate", "1000"),
    ("retry_schedule", "[\"50ms\"]"),
    ("pause_cooldown", "\"60s\""),
];

/// `keys` (TOML lines) with the [`FAST`] keys they do not set.
fn with_fast(keys: &str) -> String {
    let set: Vec<&str> = keys
        .lines()
        .filter_map(|line| line.split('=').next())
        .map(str::trim)
        .collect();
    let mut text: String = FAST
        .iter()
        .filter(|(key, _)| !set.contains(key))
        .map(|(key, value)| format!("{key} = {value}\n"))
        .collect();
    text.push_str(keys);
    text
}

/// The account the tests submit as; it names no upstream: the routes apply.
const ACME: &str =
    "[[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nthroughput = 100000\n";

/// The three phones: upstreams `a`, `b` and `c`.
struct Phones {
    a: FakeSmsGate,
    b: FakeSmsGate,
    c: FakeSmsGate,
}

impl Phones {
    async fn start() -> Phones {
        Phones {
            a: FakeSmsGate::start(Mode::Cloud).await,
            b: FakeSmsGate::start(Mode::Cloud).await,
            c: FakeSmsGate::start(Mode::Cloud).await,
        }
    }

    fn all(&self) -> [(&'static str, &FakeSmsGate); 3] {
        [("a", &self.a), ("b", &self.b), ("c", &self.c)]
    }

    /// The `[[upstreams]]` tables, each with its own `keys` (a, b, c) and the
    /// [`FAST`] ones they do not set, then the account and `routes`.
    fn config(&self, keys: [&str; 3], routes: &str) -> String {
        let mut text = String::new();
        for ((name, fake), keys) in self.all().into_iter().zip(keys) {
            text.push_str(&fake.upstream_table(name, &with_fast(keys)));
        }
        text.push_str(ACME);
        text.push_str(routes);
        text
    }

    /// A broker with the phones' upstreams (`keys` as for [`Phones::config`])
    /// and `routes`.
    async fn broker(&self, keys: [&str; 3], routes: &str) -> TestBroker {
        TestBroker::builder()
            .accounts(&self.config(keys, routes))
            .start()
            .await
    }

    /// Every message id any phone accepted, with the phones that accepted it.
    fn holders(&self) -> BTreeMap<String, Vec<&'static str>> {
        let mut holders: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
        for (name, fake) in self.all() {
            for accepted in fake.accepted() {
                holders.entry(accepted.id).or_default().push(name);
            }
        }
        holders
    }

    /// Messages accepted by a, b and c.
    fn counts(&self) -> [usize; 3] {
        self.all().map(|(_, fake)| fake.accepted_count())
    }

    /// Waits until the phones accepted `n` messages in all and the broker
    /// recorded every answer (no outbox row waits or is out: the counts,
    /// metrics and rows are final); returns the holders.
    async fn until_accepted(
        &self,
        broker: &TestBroker,
        n: usize,
    ) -> BTreeMap<String, Vec<&'static str>> {
        let what = format!("the phones accept {n} messages and the broker records it");
        eventually(PATIENCE, &what, || async {
            let counts = self.counts();
            let outbox = broker.db().outbox().await;
            let open: Vec<_> = outbox
                .iter()
                .filter(|r| !matches!(r.state, OutboxState::Enroute | OutboxState::Done))
                .collect();
            if counts.iter().sum::<usize>() >= n && open.is_empty() {
                Ok(self.holders())
            } else {
                Err(format!(
                    "accepted {counts:?}, outbox rows not settled {open:?}"
                ))
            }
        })
        .await
    }
}

/// The one phone each of `ids` reached, failing on a message that reached
/// none or more than one (at one phone a message is stored once: a repeat is
/// answered 409 and not accepted again).
fn each_at_one(
    holders: &BTreeMap<String, Vec<&'static str>>,
    ids: &[String],
) -> BTreeMap<String, &'static str> {
    let expected: BTreeSet<&String> = ids.iter().collect();
    let arrived: BTreeSet<&String> = holders.keys().collect();
    assert_eq!(
        arrived, expected,
        "the phones hold exactly the messages submitted"
    );
    ids.iter()
        .map(|id| match holders[id].as_slice() {
            [one] => (id.clone(), *one),
            many => panic!("message {id} reached {many:?}"),
        })
        .collect()
}

/// A short message from acme's ESME to `dest` (international digits).
fn to(dest: &str, text: &str) -> Sm {
    let mut message = sm(0, 0, &gsm7::encode(text).expect("GSM 7-bit text"));
    message.dest = Address::new(1, 1, dest);
    message
}

async fn readyz(broker: &TestBroker) -> serde_json::Value {
    let url = format!("http://{}/readyz", broker.http_addr());
    reqwest::get(url)
        .await
        .expect("GET /readyz")
        .json()
        .await
        .expect("/readyz is JSON")
}

/// Waits until /readyz shows `upstream` in `state`; returns its entry.
async fn until_state(broker: &TestBroker, upstream: &str, state: &str) -> serde_json::Value {
    let what = format!("/readyz shows upstream {upstream} {state}");
    eventually(PATIENCE, &what, || async {
        let ready = readyz(broker).await;
        let entry = ready["upstreams"][upstream].clone();
        if entry["state"] == state {
            Ok(entry)
        } else {
            Err(ready)
        }
    })
    .await
}

fn assert_metric(text: &str, line: &str) {
    assert!(text.contains(line), "no {line:?} in\n{text}");
}
