//! Reloading the configuration while the broker runs (`POST /api/reload`;
//! SIGHUP does the same, tests/process/reload.rs): accounts change without
//! unbinding the sessions they need not, and a bad file changes nothing.

use std::time::Duration;

use smpp_broker::smpp::pdu::{BindKind, Body, CommandStatus};
use testkit::sms::sm;
use testkit::{Esme, TestBroker};

use super::console::{post, status};

const ACCOUNTS: &str = r#"
[[upstreams]]
name = "sandbox"
kind = "sandbox"
hold = true

[[accounts]]
system_id = "alpha"
password = "alpha1"
upstream = "sandbox"

[[accounts]]
system_id = "beta"
password = "beta1"
upstream = "sandbox"
"#;

/// Binds as `system_id` and returns the bind_resp's status.
async fn bind_status(broker: &TestBroker, system_id: &str, password: &str) -> CommandStatus {
    let mut esme = Esme::connect(broker.addr()).await;
    esme.bind(BindKind::Transceiver, system_id, password)
        .await
        .command_status
}

async fn reload(broker: &TestBroker) -> (u16, serde_json::Value) {
    let token = status(broker).await["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = format!("http://{}/api/reload", broker.admin_addr());
    assert_eq!(post(&url, None).await.0, 403, "the token is needed");
    let (code, body) = post(&url, Some(&token)).await;
    (code, serde_json::from_str(&body).expect(&body))
}

fn edit_config(broker: &TestBroker, edit: impl FnOnce(String) -> String) {
    let path = broker.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[tokio::test]
async fn a_reload_changes_accounts_and_upstreams_and_keeps_the_other_sessions_bound() {
    let broker = TestBroker::builder()
        .accounts(ACCOUNTS)
        .config_file()
        .start()
        .await;
    let mut alpha = Esme::connect(broker.addr()).await;
    alpha
        .bind_ok(BindKind::Transceiver, "alpha", "alpha1")
        .await;
    let mut beta = Esme::connect(broker.addr()).await;
    beta.bind_ok(BindKind::Transceiver, "beta", "beta1").await;
    assert_eq!(
        bind_status(&broker, "gamma", "gamma1").await,
        CommandStatus::ESME_RBINDFAIL
    );

    // beta's password changes, alpha may queue fewer messages (nothing its
    // session took at the bind), gamma and a second upstream are added.
    edit_config(&broker, |text| {
        text.replace("password = \"beta1\"", "password = \"beta2\"")
            .replace(
                "system_id = \"alpha\"",
                "system_id = \"alpha\"\nmax_queued = 1",
            )
            + "\n[[accounts]]\nsystem_id = \"gamma\"\npassword = \"gamma1\"\nupstream = \"spare\"\n\
               \n[[upstreams]]\nname = \"spare\"\nkind = \"sandbox\"\nhold = true\n"
    });
    let (code, answer) = reload(&broker).await;
    assert_eq!(code, 200, "{answer}");
    let changes = &answer["changes"];
    assert_eq!(changes["accounts_added"], serde_json::json!(["gamma"]));
    assert_eq!(
        changes["accounts_changed"],
        serde_json::json!(["alpha", "beta"])
    );
    assert_eq!(changes["accounts_removed"], serde_json::json!([]));
    assert_eq!(changes["sessions_unbound"], 1, "beta's only");
    assert_eq!(changes["dispatch_restarted"], true);
    assert_eq!(changes["restart_needed"], serde_json::json!([]));

    // beta's session binds again with the new password; alpha's stays bound
    // and follows its new limit at once.
    beta.expect_unbind_and_close(Duration::from_secs(10)).await;
    let first = alpha.request(Body::SubmitSm(sm(0, 0, b"one"))).await;
    assert_eq!(first.command_status, CommandStatus::ESME_ROK);
    let second = alpha.request(Body::SubmitSm(sm(0, 0, b"two"))).await;
    assert_eq!(second.command_status, CommandStatus::ESME_RMSGQFUL);
    assert_eq!(
        bind_status(&broker, "beta", "beta1").await,
        CommandStatus::ESME_RBINDFAIL
    );
    assert_eq!(
        bind_status(&broker, "beta", "beta2").await,
        CommandStatus::ESME_ROK
    );
    assert_eq!(
        bind_status(&broker, "gamma", "gamma1").await,
        CommandStatus::ESME_ROK
    );
    let now = status(&broker).await;
    let upstreams: Vec<&str> = now["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(upstreams, ["sandbox", "spare"]);
    let accounts: Vec<&str> = now["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["system_id"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["alpha", "beta", "gamma"]);

    // A file that does not validate changes nothing, and says which key.
    edit_config(&broker, |text| {
        text.replace("password = \"gamma1\"", "password = \"gamma2\"")
            + "\n[[accounts]]\nsystem_id = \"delta\"\npassword = \"delta1\"\nupstream = \"nowhere\"\n"
    });
    let (code, answer) = reload(&broker).await;
    assert_eq!(code, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("accounts[3].upstream") && error.contains("nothing was changed"),
        "{error}"
    );
    let last = &status(&broker).await["last_reload"];
    assert!(
        last["by"].as_str().unwrap().ends_with("(no login))"),
        "{last}"
    );
    assert!(last["error"]
        .as_str()
        .unwrap()
        .contains("accounts[3].upstream"));
    let page = reqwest::get(format!("http://{}/", broker.admin_addr()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("refused"), "{page}");
    assert!(
        page.contains("no upstream named &quot;nowhere&quot;"),
        "{page}"
    );
    assert_eq!(
        bind_status(&broker, "gamma", "gamma1").await,
        CommandStatus::ESME_ROK
    );
    assert_eq!(
        bind_status(&broker, "delta", "delta1").await,
        CommandStatus::ESME_RBINDFAIL
    );
    let link = alpha.request(Body::EnquireLink).await;
    assert_eq!(
        link.command_status,
        CommandStatus::ESME_ROK,
        "alpha stays bound"
    );
}

#[tokio::test]
async fn a_removed_account_is_unbound_and_a_changed_port_waits_for_a_restart() {
    let broker = TestBroker::builder()
        .accounts(ACCOUNTS)
        .config_file()
        .start()
        .await;
    let mut beta = Esme::connect(broker.addr()).await;
    beta.bind_ok(BindKind::Receiver, "beta", "beta1").await;
    edit_config(&broker, |text| {
        let at = text.rfind("[[accounts]]").unwrap();
        text[..at].replace("[smpp]\n", "[smpp]\nenquire_link_interval = \"45s\"\n")
    });
    let (code, answer) = reload(&broker).await;
    assert_eq!(code, 200, "{answer}");
    let changes = &answer["changes"];
    assert_eq!(changes["accounts_removed"], serde_json::json!(["beta"]));
    assert_eq!(changes["sessions_unbound"], 1);
    assert_eq!(changes["dispatch_restarted"], true, "beta's routing went");
    assert_eq!(changes["restart_needed"], serde_json::json!(["smpp"]));
    beta.expect_unbind_and_close(Duration::from_secs(10)).await;
    assert_eq!(
        bind_status(&broker, "beta", "beta1").await,
        CommandStatus::ESME_RBINDFAIL
    );
}

#[tokio::test]
async fn a_broker_started_without_a_file_has_nothing_to_reload() {
    let broker = TestBroker::builder().start().await;
    let (code, answer) = reload(&broker).await;
    assert_eq!(code, 422, "{answer}");
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("not from a file"));
}
