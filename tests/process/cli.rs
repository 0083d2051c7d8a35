//! The smpp-broker binary: startup errors name the bad key, hash-password makes a
//! hash the broker accepts, and SIGTERM stops a running broker with exit code 0.

use std::io::Write;
use std::process::{Command, Stdio};

use testkit::process::write_config;

use crate::{launch, BIN};
use smpp_broker::smpp::pdu::{BindKind, Body};
use testkit::Esme;

/// Runs the binary with `args` and `--config config`, plus environment `env`; its
/// exit status and the stdout or stderr text it printed.
fn run(
    args: &[&str],
    config: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command.args(args);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let out = command.envs(env.iter().copied()).output().unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn a_bad_config_stops_startup_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[accounts]]\nsystem_id = \"a\"\npassword = \"pw\"\nupstream = \"nowhere\"\n",
    );
    let (ok, _, stderr) = run(&[], Some(&path), &[]);
    assert!(!ok);
    assert!(stderr.contains("accounts[0].upstream"), "{stderr}");

    let env = [
        ("SMPP_BROKER__ACCOUNTS__0__UPSTREAM", "sandbox"),
        ("SMPP_BROKER__SMPP__BIND", "not-an-address"),
    ];
    let (ok, _, stderr) = run(&[], Some(&path), &env);
    assert!(!ok);
    assert!(stderr.contains("smpp.bind"), "{stderr}");
}

#[test]
fn check_config_accepts_the_built_in_default() {
    let (ok, _, stderr) = run(&["check-config"], None, &[]);
    assert!(ok, "{stderr}");
}

#[test]
fn a_config_error_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[[accounts]]\nsystem_id = \"a\"\npassword = \"t0psecr3\"\nupstream = \"sandbox\"\nthroughput = -1\n",
    );
    let (ok, _, stderr) = run(&["check-config"], Some(&path), &[]);
    assert!(!ok);
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
    let broker = launch(&path).spawn();
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
    esme.expect_unbind_and_close(testkit::PATIENCE).await;
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
    let (ok, _, stderr) = run(&["migrate"], Some(&path), &[]);
    assert!(ok, "{stderr}");

    let broker = launch(&path).spawn();
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
    let (ok, table, stderr) = run(&["queues"], Some(&path), &[]);
    assert!(ok, "{stderr}");
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .expect("one row")
        .split_whitespace()
        .collect();
    assert_eq!(row, ["demo", "queued", "3"], "{table}");
    // By route and member (none yet: the sandbox is on hold), and each
    // upstream's parts against its limits.
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let lines: Vec<Vec<String>> = table.lines().map(words).collect();
    let routes = lines
        .iter()
        .position(|l| l.first().is_some_and(|w| w == "route"));
    let route_row = &lines[routes.expect("the route table") + 1];
    assert_eq!(route_row, &["sandbox", "-", "queued", "3"], "{table}");
    let usage = lines
        .iter()
        .position(|l| l.first().is_some_and(|w| w == "upstream"));
    let usage_row = &lines[usage.expect("the usage table") + 1];
    assert_eq!(
        usage_row,
        &["sandbox", "0", "-", "0", "-", "UTC"],
        "{table}"
    );
}

#[test]
fn a_fatal_startup_error_is_one_json_line_when_the_log_is_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "[log]\nformat = \"json\"\n[[accounts]]\nsystem_id = \"a\"\npassword = \"pw\"\nupstream = \"nowhere\"\n",
    );
    let (ok, _, stderr) = run(&[], Some(&path), &[]);
    assert!(!ok);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).expect(lines[0]);
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("accounts[0].upstream"),
        "{line}"
    );
}

/// The data folder belongs to another user (Docker made the bind-mounted
/// folder as root): startup says so in one line naming the path, the uid and
/// the fix, instead of SQLite's "unable to open database file".
#[test]
fn a_data_folder_the_broker_cannot_write_is_named_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = |path: &std::path::Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    open(dir.path(), 0o755);
    let binary = dir.path().join("smpp-broker");
    std::fs::copy(BIN, &binary).unwrap();
    open(&binary, 0o755);
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[smpp]\nbind = \"127.0.0.1:0\"\n[http]\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n\
             [store]\npath = \"{}\"\n[log]\nformat = \"json\"\n\
             [[upstreams]]\nname = \"sandbox\"\nkind = \"sandbox\"\n",
            data.join("broker.db").display()
        ),
    )
    .unwrap();
    open(&config, 0o644);
    // As root, the broker runs as another user (the container's mistake);
    // otherwise the folder is made read-only for this user.
    let root = rustix::process::geteuid().is_root();
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&binary);
        c
    } else {
        open(&data, 0o555);
        Command::new(&binary)
    };
    let out = command.arg("--config").arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let uid = if root {
        65534
    } else {
        rustix::process::geteuid().as_raw()
    };
    let fatal = stderr
        .lines()
        .find(|l| l.contains("\"level\":\"ERROR\""))
        .unwrap_or_else(|| panic!("a JSON error line in {stderr}"));
    let line: serde_json::Value = serde_json::from_str(fatal).unwrap();
    let error = line["error"].as_str().unwrap();
    assert_eq!(error.matches("chown").count(), 1, "said once: {error}");
    for wanted in [
        format!(
            "{} is not writable by this process (uid {uid}",
            data.display()
        ),
        format!("chown -R {uid} {}", data.display()),
    ] {
        assert!(error.contains(&wanted), "{wanted} in {error}");
    }
}
