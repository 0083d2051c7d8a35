//! The smpp-broker binary: startup errors name the bad key, hash-password makes a
//! hash the broker accepts, and SIGTERM stops a running broker with exit code 0.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::process::{write_config, BrokerProcess, BIN};
use common::Esme;
use smpp_broker::smpp::pdu::{BindKind, Body};

#[test]
fn a_bad_config_stops_startup_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[accounts]]\nsystem_id = \"a\"\npassword = \"pw\"\nupstream = \"nowhere\"\n",
    );
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("accounts[0].upstream"), "{stderr}");

    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env("SMPP_BROKER__ACCOUNTS__0__UPSTREAM", "sandbox")
        .env("SMPP_BROKER__SMPP__BIND", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("smpp.bind"), "{stderr}");
}

#[test]
fn check_config_accepts_the_built_in_default() {
    let out = Command::new(BIN).arg("check-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_config_error_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[accounts]]\nsystem_id = \"a\"\npassword = \"t0psecr3\"\nupstream = \"sandbox\"\nthroughput = -1\n",
    );
    let out = Command::new(BIN)
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("accounts[0].throughput"), "{stderr}");
    assert!(!stderr.contains("t0psecr3"), "{stderr}");
}

#[tokio::test]
async fn hash_password_output_binds_and_sigterm_exits_zero() {
    let mut hasher = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    hasher.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = hasher.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        &format!(
            "[[accounts]]\nsystem_id = \"hashed\"\npassword_hash = \"{hash}\"\nupstream = \"sandbox\"\n"
        ),
    );
    let broker = BrokerProcess::spawn(&path);
    let addr = broker.addr;

    let mut esme = Esme::connect(addr).await;
    esme.bind_ok(BindKind::Transceiver, "hashed", "s3cret")
        .await;
    let wrong = Esme::connect(addr)
        .await
        .bind(BindKind::Transceiver, "hashed", "s3creT")
        .await;
    assert!(!wrong.command_status.is_ok());

    broker.signal("-TERM");
    // The bound session is unbound by the broker on its way out.
    let unbind = esme.recv_some().await;
    assert_eq!(unbind.body, Body::Unbind);
    esme.send(&smpp_broker::smpp::pdu::Pdu::new(
        unbind.sequence_number,
        Body::UnbindResp,
    ))
    .await;
    esme.expect_closed().await;
    let (exit, log) = tokio::task::spawn_blocking(move || broker.wait())
        .await
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        log.contains("bind attempt") && log.contains("bind refused"),
        "every bind is logged"
    );
    assert!(!log.contains("s3cret"), "no password in the log");
}

#[tokio::test]
async fn migrate_and_queues_read_the_same_database_as_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[accounts]]\nsystem_id = \"demo\"\npassword = \"demo1234\"\nupstream = \"sandbox\"\n",
    );
    let out = Command::new(BIN)
        .arg("migrate")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let broker = BrokerProcess::spawn(&path);
    let mut esme = Esme::connect(broker.addr).await;
    esme.bind_ok(BindKind::Transmitter, "demo", "demo1234")
        .await;
    for _ in 0..3 {
        let sm = smpp_broker::smpp::pdu::Sm {
            dest: smpp_broker::smpp::pdu::Address::new(1, 1, "4917600000"),
            short_message: bytes::Bytes::from_static(b"hi"),
            ..Default::default()
        };
        assert!(esme
            .request(Body::SubmitSm(sm))
            .await
            .command_status
            .is_ok());
    }
    let out = Command::new(BIN)
        .arg("queues")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("one row")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["demo", "queued", "3"], "{table}");
}
