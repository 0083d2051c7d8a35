//! SIGHUP reads the configuration file again, as `POST /api/reload` does
//! (tests/it/reload.rs): an added account binds without a restart, a bound
//! session of an unchanged account stays bound, and a bad file is refused in
//! the log with the key named.

use smpp_broker::smpp::pdu::{BindKind, Body, CommandStatus};
use testkit::eventually::PATIENCE;
use testkit::process::write_config;
use testkit::Esme;

use crate::launch;

const ALPHA: &str =
    "[[accounts]]\nsystem_id = \"alpha\"\npassword = \"alpha1\"\nupstream = \"sandbox\"\n";
const BETA: &str =
    "[[accounts]]\nsystem_id = \"beta\"\npassword = \"beta1\"\nupstream = \"sandbox\"\n";

async fn binds(addr: std::net::SocketAddr, system_id: &str, password: &str) -> bool {
    let mut esme = Esme::connect(addr).await;
    esme.bind(BindKind::Transmitter, system_id, password)
        .await
        .command_status
        == CommandStatus::ESME_ROK
}

#[tokio::test]
async fn sighup_reloads_accounts_and_a_bad_file_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), ALPHA);
    let broker = launch(&path).spawn();
    let mut alpha = Esme::connect(broker.addr).await;
    alpha
        .bind_ok(BindKind::Transceiver, "alpha", "alpha1")
        .await;
    assert!(!binds(broker.addr, "beta", "beta1").await);

    write_config(dir.path(), &format!("{ALPHA}{BETA}"));
    broker.signal("-HUP");
    let reloaded = broker.next_line_with("configuration reload", PATIENCE);
    assert!(reloaded.contains("configuration reloaded"), "{reloaded}");
    assert!(reloaded.contains("beta"), "{reloaded}");
    assert!(binds(broker.addr, "beta", "beta1").await);

    write_config(
        dir.path(),
        &format!("{ALPHA}[[accounts]]\nsystem_id = \"beta\"\npassword = \"beta1\"\nmax_sessions = \"many\"\nupstream = \"sandbox\"\n"),
    );
    broker.signal("-HUP");
    let refused = broker.next_line_with("configuration reload", PATIENCE);
    assert!(
        refused.contains("configuration reload refused"),
        "{refused}"
    );
    assert!(refused.contains("accounts[1].max_sessions"), "{refused}");
    assert!(refused.contains("SIGHUP"), "{refused}");
    assert!(
        binds(broker.addr, "beta", "beta1").await,
        "beta is still there"
    );
    let link = alpha.request(Body::EnquireLink).await;
    assert_eq!(
        link.command_status,
        CommandStatus::ESME_ROK,
        "alpha stays bound"
    );
}
