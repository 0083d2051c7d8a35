//! Crash and soak: steady load from one ESME through the broker to a fake SMSGate,
//! whose "phone" reports every message delivered by webhook, while the broker is
//! SIGKILLed and restarted on the same database three times. At the end every
//! acknowledged submit reached the upstream exactly once, and every receipt reached
//! the ESME at least once.
//!
//! The counts are written straight to stderr, past the test harness's capture, so
//! that a plain `cargo test` (as CI runs it) shows them too.

mod esme;
mod ledger;
mod phone;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testkit::db::Db;
use testkit::eventually;
use testkit::fake_smsgate::{FakeSmsGate, Mode};
use testkit::process::{write_config, BrokerProcess};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::launch;

use esme::esme;
use ledger::{verify, Ledger};
use phone::{phone, Phone};

const KILLS: usize = 3;
/// What each kill waits for, once its instance did its share: it lands right after
/// the instance promised something.
const MOMENTS: [Moment; KILLS] = [
    Moment::UpstreamTook,
    Moment::WebhookAnswered,
    Moment::SubmitAcknowledged,
];
/// Submits outstanding at once on the ESME's session.
const WINDOW: usize = 16;
/// One submit per tick while the window has room: about 125 a second.
const PACE: Duration = Duration::from_millis(8);
/// The ESME answers receipts in batches this far apart, as a busy client would:
/// a kill usually finds some delivered and not yet acknowledged.
const RECEIPT_ACKS_EVERY: Duration = Duration::from_millis(40);
/// What each broker instance does before it is killed (and the last one before
/// the load stops), counted from its start: new acknowledged submits, new
/// messages at the fake, new distinct receipts at the ESME.
const PER_INSTANCE: Progress = Progress {
    acknowledged: 250,
    accepted: 150,
    receipts: 100,
};
/// How long a kill may wait for its moment.
const MOMENT_DEADLINE: Duration = Duration::from_secs(5);
/// How long one instance may take to make that progress.
const INSTANCE_DEADLINE: Duration = Duration::from_secs(20);
/// How long everything may take to settle once the load stopped.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// How long the ESME keeps trying to reach the next broker.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(20);
/// How long one broker may take from exec to listening.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Concurrent webhook POSTs of the phone.
const PHONE_PARALLEL: usize = 8;
const POLL: Duration = Duration::from_millis(20);

#[derive(Clone, Copy, Debug)]
enum Moment {
    /// The fake has just taken a message: its 202 is on the way back, or has
    /// just arrived and is not yet recorded.
    UpstreamTook,
    /// The broker has just answered an sms:delivered webhook with a 2xx, which
    /// says the report is committed.
    WebhookAnswered,
    /// The ESME has just got a submit_sm_resp OK, which says the message is
    /// committed; receipts it has not answered yet are out too.
    SubmitAcknowledged,
}

/// What the test, the ESME task and the phone task share.
#[derive(Default)]
struct Shared {
    ledger: Mutex<Ledger>,
    phone: Mutex<Phone>,
    events: Events,
    /// Cleared when the load stops.
    submitting: AtomicBool,
    /// The end of the ESME and phone tasks.
    quit: CancellationToken,
}

/// Wake-ups for the kills: the ESME's acknowledgements and the phone's 2xx.
#[derive(Default)]
struct Events {
    acknowledged: tokio::sync::Notify,
    webhook_answered: tokio::sync::Notify,
}

impl Events {
    /// Returns as soon as `moment` happens (after this call began).
    async fn next(&self, moment: Moment, fake: &FakeSmsGate) {
        match moment {
            Moment::UpstreamTook => {
                let before = fake.accepted_count();
                while fake.accepted_count() == before {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Moment::WebhookAnswered => self.webhook_answered.notified().await,
            Moment::SubmitAcknowledged => self.acknowledged.notified().await,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addrs {
    smpp: SocketAddr,
    http: SocketAddr,
}

#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    acknowledged: usize,
    accepted: usize,
    receipts: usize,
}

impl Progress {
    fn since(self, start: Progress) -> Progress {
        Progress {
            acknowledged: self.acknowledged - start.acknowledged,
            accepted: self.accepted - start.accepted,
            receipts: self.receipts - start.receipts,
        }
    }

    fn covers(self, goal: Progress) -> bool {
        self.acknowledged >= goal.acknowledged
            && self.accepted >= goal.accepted
            && self.receipts >= goal.receipts
    }
}

fn upstream_toml(fake: &FakeSmsGate) -> String {
    format!(
        "[[upstreams]]\nname = \"phone\"\nkind = \"smsgate\"\nbase_url = \"{}\"\n\
         username = \"{}\"\npassword = \"{}\"\ndevice_id = \"{}\"\nrate = 1000\n\
         max_in_flight = 8\nretry_schedule = [\"50ms\"]\npause_cooldown = \"300ms\"\n\
         [[accounts]]\nsystem_id = \"acme\"\npassword = \"acme1234\"\nupstream = \"phone\"\n\
         throughput = 100000\n",
        fake.base_url(),
        fake.username(),
        fake.password(),
        fake.device_id()
    )
}

/// The run's broker, its database and the logs of the instances killed so far.
/// On a failure the directory is kept with every instance's log in it.
struct Run {
    config: PathBuf,
    dir: Option<tempfile::TempDir>,
    broker: Option<BrokerProcess>,
    logs: Vec<String>,
}

impl Run {
    async fn start(&mut self) -> Addrs {
        let config = self.config.clone();
        let spawn = tokio::task::spawn_blocking(move || launch(&config).spawn());
        let broker = tokio::time::timeout(START_DEADLINE, spawn)
            .await
            .unwrap_or_else(|_| panic!("the broker did not listen within {START_DEADLINE:?}"))
            .expect("the broker starts");
        let addrs = Addrs {
            smpp: broker.addr,
            http: broker.http_addr,
        };
        self.broker = Some(broker);
        addrs
    }

    /// SIGKILL at once (no `kill` process to start), and the instance's log
    /// once it is gone.
    async fn kill9(&mut self) {
        let mut broker = self.broker.take().expect("a broker runs");
        broker.child.kill().expect("SIGKILL");
        let (status, log) = tokio::task::spawn_blocking(move || broker.wait())
            .await
            .unwrap();
        assert!(!status.success(), "SIGKILL ended the broker: {status:?}");
        self.logs.push(log);
    }

    fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(mut broker) = self.broker.take() {
            let _ = broker.child.kill();
            self.logs.push(broker.wait().1);
        }
        let dir = self.dir.take().unwrap().keep();
        for (i, log) in self.logs.iter().enumerate() {
            let _ = std::fs::write(dir.join(format!("broker-{}.log", i + 1)), log);
        }
        say(&format!(
            "soak: the database and the log of each broker instance are kept in {}",
            dir.display()
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sigkills_under_load_lose_and_repeat_nothing() {
    let began = Instant::now();
    let fake = FakeSmsGate::start(Mode::Cloud).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &upstream_toml(&fake));
    let mut run = Run {
        config,
        dir: Some(dir),
        broker: None,
        logs: Vec::new(),
    };
    let (addrs_tx, addrs_rx) = watch::channel(run.start().await);
    let shared = Arc::new(Shared {
        submitting: AtomicBool::new(true),
        ..Shared::default()
    });
    let esme_task = tokio::spawn(esme(addrs_rx.clone(), shared.clone()));
    let phone_task = tokio::spawn(phone(fake.clone(), addrs_rx, shared.clone()));
    let progress = || {
        let ledger = shared.ledger.lock().unwrap();
        Progress {
            acknowledged: ledger.acknowledged.len(),
            accepted: fake.accepted_count(),
            receipts: ledger.receipts.len(),
        }
    };

    // Each instance takes its share of the load, then dies without warning.
    let mut kill_times = Vec::new();
    for kill in 1..=KILLS + 1 {
        let start = progress();
        let what = format!("instance {kill} makes {PER_INSTANCE:?} of progress");
        eventually(INSTANCE_DEADLINE, &what, || async {
            esme_is_well(&shared.ledger, &esme_task);
            let made = progress().since(start);
            if made.covers(PER_INSTANCE) {
                Ok(())
            } else {
                Err(made)
            }
        })
        .await;
        if kill > KILLS {
            break;
        }
        let moment = MOMENTS[kill - 1];
        tokio::time::timeout(MOMENT_DEADLINE, shared.events.next(moment, &fake))
            .await
            .unwrap_or_else(|_| panic!("no {moment:?} within {MOMENT_DEADLINE:?}"));
        run.kill9().await;
        let at = began.elapsed();
        let now = progress();
        let pending = shared.ledger.lock().unwrap().pending;
        say(&format!(
            "soak: SIGKILL {kill} at {:.1}s, just after {moment:?}: acknowledged {}, \
             at the upstream {}, receipts {}, submits unanswered {pending}",
            at.as_secs_f64(),
            now.acknowledged,
            now.accepted,
            now.receipts
        ));
        kill_times.push(at);
        addrs_tx.send(run.start().await).unwrap();
    }

    // The load stops; everything in flight settles on the last instance.
    shared.submitting.store(false, Ordering::SeqCst);
    let load_stopped = began.elapsed();
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let unsettled = loop {
        esme_is_well(&shared.ledger, &esme_task);
        let waiting = waiting_for(&shared, &fake, run.dir()).await;
        if waiting.is_empty() {
            break None;
        }
        if Instant::now() >= deadline {
            break Some(format!(
                "not settled {SETTLE_DEADLINE:?} after the load stopped: {}",
                waiting.join("; ")
            ));
        }
        tokio::time::sleep(POLL).await;
    };
    shared.quit.cancel();
    esme_task.await.unwrap();
    phone_task.await.unwrap();

    let ledger = shared.ledger.lock().unwrap();
    let phone_log = shared.phone.lock().unwrap();
    let accepted = fake.accepted();
    let mut report = verify(&ledger, &accepted);
    report.failures.splice(0..0, unsettled);
    let repeated_receipts: usize = ledger.receipts.values().map(|c| c.len() - 1).sum();
    let repeated_later = ledger
        .receipts
        .values()
        .filter(|c| c.iter().any(|&conn| conn != c[0]))
        .count();
    say(&format!(
        "soak: {KILLS} SIGKILLs at {}; load stopped at {:.1}s, settled at {:.1}s\n\
         soak: submitted {}, acknowledged {}, refused {}, in flight at a kill {} \
         (of which reached the upstream {})\n\
         soak: at the upstream {} (POST requests {}), acknowledged there exactly once {}, \
         duplicates {}\n\
         soak: sms:delivered webhooks committed {} (POSTs repeated {}: {})\n\
         soak: receipts (deliver_sm) {}, distinct {}, for acknowledged submits {}, \
         repeated {} ({} messages' receipts came again on a later connection), \
         left unacknowledged by a kill {}; ESME connections {}",
        kill_times
            .iter()
            .map(|t| format!("{:.1}s", t.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        load_stopped.as_secs_f64(),
        began.elapsed().as_secs_f64(),
        ledger.submitted,
        ledger.acknowledged.len(),
        ledger.refused.len(),
        ledger.unanswered.len(),
        report.unanswered_arrived,
        accepted.len(),
        fake.post_count(),
        report.acknowledged_once,
        report.duplicates,
        phone_log.reported.len(),
        phone_log.repeated_posts.values().sum::<usize>(),
        phone_log
            .repeated_posts
            .iter()
            .map(|(why, n)| format!("{why}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        ledger.deliver_sms,
        ledger.receipts.len(),
        report.acknowledged_with_receipt,
        repeated_receipts,
        repeated_later,
        ledger.unacknowledged_receipts,
        ledger.connections,
    ));
    assert!(
        report.failures.is_empty(),
        "{} failure(s):\n{}{}",
        report.failures.len(),
        report.failures[..report.failures.len().min(20)].join("\n"),
        if report.failures.len() > 20 {
            "\n…"
        } else {
            ""
        }
    );
    assert_eq!(kill_times.len(), KILLS);
    assert_eq!(ledger.connections, KILLS + 1, "one session per instance");
}

/// Writes past the harness's output capture (see the module comment).
fn say(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Fails the test at once when the ESME task saw something wrong or ended.
fn esme_is_well(ledger: &Mutex<Ledger>, task: &tokio::task::JoinHandle<()>) {
    if let Some(problem) = &ledger.lock().unwrap().problem {
        panic!("ESME: {problem}");
    }
    assert!(!task.is_finished(), "the ESME task ended early");
}

/// What the end still waits for; empty once settled.
async fn waiting_for(shared: &Shared, fake: &FakeSmsGate, dir: &std::path::Path) -> Vec<String> {
    let at_upstream: HashSet<String> = fake.accepted().into_iter().map(|a| a.id).collect();
    let mut waiting = Vec::new();
    {
        let ledger = shared.ledger.lock().unwrap();
        if ledger.pending > 0 {
            waiting.push(format!("{} submits unanswered", ledger.pending));
        }
        let mut lacking = |what: &str, ids: Vec<&String>| {
            if !ids.is_empty() {
                let some = &ids[..ids.len().min(5)];
                waiting.push(format!("{} acknowledged {what}, e.g. {some:?}", ids.len()));
            }
        };
        let acknowledged = || ledger.acknowledged.keys();
        lacking(
            "not at the upstream",
            acknowledged()
                .filter(|id| !at_upstream.contains(*id))
                .collect(),
        );
        lacking(
            "without a receipt",
            acknowledged()
                .filter(|id| !ledger.receipts.contains_key(*id))
                .collect(),
        );
    }
    let unreported = at_upstream
        .difference(&shared.phone.lock().unwrap().reported)
        .count();
    if unreported > 0 {
        waiting.push(format!(
            "{unreported} deliveries not yet reported by webhook"
        ));
    }
    // Nothing left in the broker that could still go out again.
    let rows: Vec<(i64, i64)> = Db::at(dir)
        .rows(
            "SELECT (SELECT count(*) FROM outbox WHERE state != 'done'), \
             (SELECT count(*) FROM deliveries)",
        )
        .await;
    let (outbox, deliveries) = rows[0];
    if outbox != 0 {
        waiting.push(format!("{outbox} outbox rows not done"));
    }
    if deliveries != 0 {
        waiting.push(format!("{deliveries} deliveries not acknowledged"));
    }
    waiting
}
