//! One process owns a database: a second `serve` and `migrate` are refused while a
//! broker runs, `queues` reads beside it without changing anything, and a graceful
//! stop leaves everything in the database file itself.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use testkit::db::Db;
use testkit::process::write_config;
use testkit::sms::{sm, submit_ok};

use crate::{launch, BIN};
use smpp_broker::smpp::pdu::{BindKind, Body};
use testkit::Esme;

const ACCOUNT: &str = "[[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\nthroughput = 1000000\n";

/// Runs the binary to its end, giving up (and failing) after `limit`.
fn run_within(args: &[&str], config: &std::path::Path, limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("smpp-broker {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_broker_and_migrate_are_refused_while_queues_reads_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), ACCOUNT);
    let owner = launch(&config).spawn();
    let mut esme = Esme::connect(owner.addr).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    for n in 0..5 {
        submit_ok(&mut esme, sm(0, 0, format!("before {n}").as_bytes())).await;
    }
    let database = dir.path().join("broker.db").display().to_string();
    let pid = format!("PID {}", owner.child.id());

    // Ports are 0, so only the database stands between the two.
    let second = run_within(&["serve"], &config, Duration::from_secs(20));
    let stderr = text(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(stderr.contains(&database), "{stderr}");
    assert!(stderr.contains(&pid), "{stderr}");

    let migrate = run_within(&["migrate"], &config, Duration::from_secs(20));
    let stderr = text(&migrate.stderr);
    assert!(!migrate.status.success(), "{stderr}");
    assert!(stderr.contains(&pid), "{stderr}");

    let queues = run_within(&["queues"], &config, Duration::from_secs(20));
    assert!(queues.status.success(), "{}", text(&queues.stderr));
    let stdout = text(&queues.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["demo", "queued", "5"]),
        "{stdout}"
    );

    // The owner goes on as before.
    submit_ok(&mut esme, sm(0, 0, b"after")).await;
    drop(esme);
    owner.signal("-TERM");
    let (status, log) = owner.wait();
    assert!(status.success(), "{log}");

    // Once it has stopped, the database is free.
    let migrate = run_within(&["migrate"], &config, Duration::from_secs(20));
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_leaves_every_message_in_the_database_file() {
    const MESSAGES: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), ACCOUNT);
    let broker = launch(&config).spawn();
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    for n in 0..MESSAGES {
        let resp = esme
            .request(Body::SubmitSm(sm(0, 0, format!("m{n}").as_bytes())))
            .await;
        assert!(resp.command_status.is_ok(), "{resp:?}");
    }
    drop(esme);
    broker.signal("-TERM");
    let (status, log) = broker.wait();
    assert!(status.success(), "{log}");

    let wal = dir.path().join("broker.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the WAL was copied into the database file");
    // An operator's backup: the file alone, elsewhere.
    let backup = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.path().join("broker.db"),
        backup.path().join("broker.db"),
    )
    .unwrap();
    let stored: i64 = Db::at(backup.path())
        .scalar("SELECT count(*) FROM messages")
        .await;
    assert_eq!(stored, MESSAGES as i64);
}
